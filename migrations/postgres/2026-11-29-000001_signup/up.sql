-- Subscribers, their consent records, confirmation tokens and the delivery ledger.
CREATE TABLE subscribers (
    id BIGSERIAL PRIMARY KEY,
    -- normalised address: trimmed, domain lower-cased and in ASCII (punycode)
    email TEXT NOT NULL UNIQUE,
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed', 'bounced', 'complained')),
    -- chosen topics, comma-separated; empty means every topic
    topics TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    confirmed_at TIMESTAMP,
    unsubscribed_at TIMESTAMP
);

-- One row per sign-up form submitted: the consent record (GDPR Art. 7). Never deleted on
-- unsubscribe, so the history of consent survives it.
CREATE TABLE consents (
    id BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    requested_at TIMESTAMP NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    source TEXT NOT NULL,
    consent_text_version TEXT NOT NULL,
    -- the name and topics this sign-up asked for; applied to the subscriber on confirmation
    name TEXT,
    topics TEXT NOT NULL DEFAULT '',
    confirmed_at TIMESTAMP,
    confirmed_ip TEXT
);
CREATE INDEX consents_subscriber_time ON consents (subscriber_id, requested_at);

-- Only the SHA-256 of a confirmation token is stored.
CREATE TABLE confirmation_tokens (
    id BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    consent_id BIGINT NOT NULL REFERENCES consents (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX confirmation_tokens_subscriber ON confirmation_tokens (subscriber_id);

-- The delivery ledger: one row per message to one subscriber.
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('confirmation', 'issue')),
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
    -- what the message needs that is not stored elsewhere (a confirmation's token); wiped once
    -- the delivery has ended
    payload TEXT,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    UNIQUE (issue_id, subscriber_id)
);
CREATE INDEX deliveries_due ON deliveries (priority, next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);
