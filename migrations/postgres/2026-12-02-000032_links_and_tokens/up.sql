-- Links and tokens: a reader's one-time link to download or erase their data, and its message
-- in the ledger.

-- Only the SHA-256 of a data link's token is stored; the ledger keeps the nonce it is derived
-- from with the secret key (until the message is sent), never the token.
CREATE TABLE data_links (
    id BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX data_links_subscriber_time ON data_links (subscriber_id, created_at);

ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('confirmation', 'issue', 'welcome', 'already_subscribed', 'data_link'));
