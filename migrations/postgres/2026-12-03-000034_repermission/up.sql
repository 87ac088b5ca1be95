-- Re-permission: an editor asks the inactive readers (no reader click in the last N digests,
-- `personal` click tracking) whether they still want the newsletter; those who do not answer
-- by the deadline are unsubscribed with the reason `inactive`.
CREATE TABLE repermission_campaigns (
    id BIGSERIAL PRIMARY KEY,
    -- the "no click in the last N digests" the segment was taken with
    inactive_digests INTEGER NOT NULL,
    days INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    deadline TIMESTAMP NOT NULL,
    created_by TEXT,
    recipients INTEGER NOT NULL DEFAULT 0
);

-- One row per reader asked: `waiting` until they answer (`kept`), or the deadline passes
-- (`unsubscribed`), or they left some other way meanwhile (`left`).
CREATE TABLE repermission_requests (
    campaign_id BIGINT NOT NULL REFERENCES repermission_campaigns (id) ON DELETE CASCADE,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('waiting', 'kept', 'unsubscribed', 'left')),
    answered_at TIMESTAMP,
    PRIMARY KEY (campaign_id, subscriber_id)
);
CREATE INDEX repermission_requests_waiting ON repermission_requests (campaign_id) WHERE status = 'waiting';
CREATE INDEX repermission_requests_subscriber ON repermission_requests (subscriber_id);

-- The re-permission message in the ledger.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('confirmation', 'issue', 'welcome', 'already_subscribed', 'data_link', 'repermission'));
