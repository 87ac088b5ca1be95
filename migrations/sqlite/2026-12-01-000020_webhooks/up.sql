-- Webhooks: the endpoints the administrators added, and a ledger of what is to be posted to
-- them, one row per (event, endpoint), written in the same transaction as the change the event
-- reports (an outbox).
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    -- `whsec_` and the base64 of 32 random bytes: kept as is, since every post is signed with it
    secret TEXT NOT NULL,
    -- the events it wants, comma-separated
    events TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL,
    created_by TEXT
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- the event's id, sent as `webhook-id`: the same for every endpoint and every attempt
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    endpoint_id BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- whom the event is about, so that erasing a subscriber can wipe what is still queued
    subscriber_id BIGINT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'delivered', 'failed', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_until TIMESTAMP,
    lease_owner TEXT,
    last_attempt_at TIMESTAMP,
    -- the HTTP status of the last attempt, or the error when there was no answer
    last_status INTEGER,
    last_error TEXT,
    -- the JSON body, byte for byte the same at each attempt; wiped once the delivery has ended
    payload TEXT,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_subscriber ON webhook_deliveries (subscriber_id) WHERE subscriber_id IS NOT NULL;
