-- Failure counters and blocks for abuse throttling, shared by whoever uses
-- this store (one node for the embedded store).
CREATE TABLE throttle (
    key        TEXT PRIMARY KEY,
    count      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
