-- The consent ledger: one append-only record per grant or withdrawal,
-- chained per customer (each holds the hash of the previous), so the
-- current state is derived, never stored, and an edit is detectable.
CREATE TABLE consent_records (
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    purpose     TEXT NOT NULL,
    version     BIGINT NOT NULL,
    text_hash   TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    channel     TEXT NOT NULL,
    method      TEXT NOT NULL,
    user_agent  TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (customer_id, seq)
);

-- Records are never changed in place.
CREATE TRIGGER consent_records_append_only BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent records are append-only');
END;
