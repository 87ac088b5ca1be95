DROP INDEX deliveries_issue_status;
CREATE INDEX deliveries_issue_status ON deliveries (issue_id, status);
