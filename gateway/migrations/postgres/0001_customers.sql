-- Customers and the external identities that map to them.
CREATE TABLE customers (
    id             TEXT PRIMARY KEY,
    email          TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    name           TEXT,
    status         TEXT NOT NULL DEFAULT 'active',
    created_at     BIGINT NOT NULL
);

-- One row per (issuer, subject): a provider login, a bearer token's subject.
CREATE TABLE identities (
    issuer       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    customer_id  TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);

CREATE INDEX identities_by_customer ON identities (customer_id);
