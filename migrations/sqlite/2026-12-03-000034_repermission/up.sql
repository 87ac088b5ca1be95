-- Re-permission: an editor asks the inactive readers (no reader click in the last N digests,
-- `personal` click tracking) whether they still want the newsletter; those who do not answer
-- by the deadline are unsubscribed with the reason `inactive`.
CREATE TABLE repermission_campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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

-- The re-permission message in the ledger. SQLite cannot change a CHECK constraint: the ledger
-- is rebuilt with every column, row and index it had (as in 000032).
CREATE TABLE deliveries_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('confirmation', 'issue', 'welcome', 'already_subscribed', 'data_link', 'repermission')),
    issue_id BIGINT,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    -- lower goes first: confirmations ahead of bulk sends
    priority INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'bounced', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_until TIMESTAMP,
    lease_owner TEXT,
    last_error TEXT,
    message_id TEXT,
    -- what the message needs that is not stored elsewhere (the nonce a one-time link's token is
    -- derived from with the secret key; from older versions, a confirmation's token); wiped once
    -- the delivery has ended
    payload TEXT,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    UNIQUE (issue_id, subscriber_id)
);
INSERT INTO deliveries_new (id, kind, issue_id, subscriber_id, priority, status, attempts,
    next_attempt_at, lease_until, lease_owner, last_error, message_id, payload, created_at,
    finished_at)
SELECT id, kind, issue_id, subscriber_id, priority, status, attempts, next_attempt_at,
    lease_until, lease_owner, last_error, message_id, payload, created_at, finished_at
FROM deliveries;
-- Ids keep counting from where they were (a Message-ID is made of one): the new table takes the
-- old one's sequence.
DELETE FROM sqlite_sequence WHERE name = 'deliveries_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'deliveries_new', seq FROM sqlite_sequence WHERE name = 'deliveries';
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (priority, next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);
CREATE INDEX deliveries_issue_status ON deliveries (issue_id, status);
