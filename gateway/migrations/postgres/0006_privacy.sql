-- Privacy operations. The data map: which system received which customer's
-- identity (fields as bits: 1 id, 2 email, 4 name), folded in from the
-- proxy's in-memory aggregate in batches.
CREATE TABLE data_map (
    customer_id TEXT NOT NULL,
    system      TEXT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    fields      BIGINT NOT NULL,
    PRIMARY KEY (customer_id, system)
);
CREATE INDEX data_map_system ON data_map (system);
CREATE TABLE data_map_purposes (
    customer_id TEXT NOT NULL,
    system      TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    PRIMARY KEY (customer_id, system, purpose)
);

-- Requests (erasure, export): a durable job, one task per system. Steps and
-- tasks are leased to one node at a time; rev guards every write.
CREATE TABLE privacy_jobs (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    state             TEXT NOT NULL,
    step              TEXT NOT NULL,
    subject           TEXT,
    requested_by      TEXT NOT NULL,
    channel           TEXT NOT NULL,
    verification      TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    deadline_at       BIGINT NOT NULL,
    completed_at      BIGINT,
    next_run_at       BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_until       BIGINT NOT NULL DEFAULT 0,
    report            TEXT,
    export_expires_at BIGINT
);
CREATE INDEX privacy_jobs_customer ON privacy_jobs (customer_id);
CREATE INDEX privacy_jobs_due ON privacy_jobs (next_run_at);
CREATE TABLE privacy_tasks (
    job_id          TEXT NOT NULL,
    system          TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    rev             BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_attempt_at BIGINT,
    answered_at     BIGINT,
    detail          TEXT,
    PRIMARY KEY (job_id, system)
);
CREATE INDEX privacy_tasks_due ON privacy_tasks (next_attempt_at);
CREATE TABLE privacy_audit (
    id      BIGSERIAL PRIMARY KEY,
    job_id  TEXT NOT NULL,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    what    TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX privacy_audit_job ON privacy_audit (job_id);

-- Legal holds: a system keeps categories of a customer's data until a date
-- (system set), or an operator pauses the customer's erasure (system NULL).
CREATE TABLE privacy_holds (
    id             TEXT PRIMARY KEY,
    customer_id    TEXT NOT NULL,
    job_id         TEXT,
    system         TEXT,
    categories     TEXT NOT NULL,
    reason         TEXT NOT NULL,
    legal_basis    TEXT,
    until          BIGINT,
    placed_by      TEXT NOT NULL,
    placed_at      BIGINT NOT NULL,
    released_at    BIGINT,
    release_reason TEXT
);
CREATE INDEX privacy_holds_customer ON privacy_holds (customer_id);

-- What is left of an erased customer: keyed hashes of their identities, so
-- a later sign-in is known as previously erased.
CREATE TABLE tombstones (
    hash      TEXT PRIMARY KEY,
    job_id    TEXT NOT NULL,
    erased_at BIGINT NOT NULL
);
