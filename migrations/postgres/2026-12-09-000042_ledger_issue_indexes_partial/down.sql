DROP INDEX deliveries_issue_status;
CREATE INDEX deliveries_issue_status ON deliveries (issue_id, status);
DROP INDEX deliveries_issue_subscriber;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_issue_id_subscriber_id_key UNIQUE (issue_id, subscriber_id);
