DELETE FROM deliveries WHERE kind = 'data_link';
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('confirmation', 'issue', 'welcome', 'already_subscribed'));
DROP TABLE data_links;
