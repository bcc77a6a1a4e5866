-- What each system sent for an export request, in chunks as it arrived
-- (never held whole in memory), until the export expires.
CREATE TABLE privacy_export_parts (
    job_id TEXT NOT NULL,
    system TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    chunk  TEXT NOT NULL,
    PRIMARY KEY (job_id, system, seq)
);
