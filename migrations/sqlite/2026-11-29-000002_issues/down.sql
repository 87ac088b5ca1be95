DROP INDEX deliveries_issue_status;
ALTER TABLE subscribers DROP COLUMN erased_at;
ALTER TABLE subscribers DROP COLUMN unsubscribed_via;
DROP TABLE issues;
