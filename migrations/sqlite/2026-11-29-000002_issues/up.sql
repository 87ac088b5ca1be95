-- Newsletter issues (an editor's announcement, a weekly digest) and how subscribers left.
CREATE TABLE issues (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('announcement', 'digest')),
    subject TEXT NOT NULL,
    preheader TEXT NOT NULL DEFAULT '',
    -- the finished HTML and text, with markers where each recipient's links go
    html TEXT NOT NULL,
    text TEXT NOT NULL,
    -- audience: comma-separated topics, empty for every confirmed subscriber
    topics TEXT NOT NULL DEFAULT '',
    -- one digest per period, whatever the number of instances
    period_key TEXT UNIQUE,
    -- an editor's double click or reload sends once
    idempotency_key TEXT UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('draft', 'queued', 'cancelled')),
    recipients INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    queued_at TIMESTAMP
);

ALTER TABLE subscribers ADD COLUMN unsubscribed_via TEXT;
ALTER TABLE subscribers ADD COLUMN erased_at TIMESTAMP;

CREATE INDEX deliveries_issue_status ON deliveries (issue_id, status);
