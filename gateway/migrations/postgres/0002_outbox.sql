-- Durable outbox: an event is written in the same transaction as the change
-- it reports, then delivered to every subscribed webhook, retried with
-- backoff until each has it (or attempts run out).
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    done_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;

-- Which webhooks already have an event (so a retry skips them).
CREATE TABLE outbox_delivered (
    event_id     TEXT NOT NULL,
    webhook      TEXT NOT NULL,
    delivered_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, webhook)
);
