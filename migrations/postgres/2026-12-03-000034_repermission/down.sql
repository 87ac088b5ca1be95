DELETE FROM deliveries WHERE kind = 'repermission';
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('confirmation', 'issue', 'welcome', 'already_subscribed', 'data_link'));
DROP TABLE repermission_requests;
DROP TABLE repermission_campaigns;
