-- Browser sessions, keyed by the SHA-256 of the cookie value (never the value).
CREATE TABLE sessions (
    id_hash        TEXT PRIMARY KEY,
    customer_id    TEXT NOT NULL,
    email          TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    name           TEXT,
    provider       TEXT NOT NULL,
    csrf           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_seen      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX sessions_by_customer ON sessions (customer_id);
