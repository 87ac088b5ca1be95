DELETE FROM deliveries WHERE kind IN ('welcome', 'already_subscribed');
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check CHECK (kind IN ('confirmation', 'issue'));
DROP TABLE welcome_message;
ALTER TABLE digests DROP COLUMN outcome;
