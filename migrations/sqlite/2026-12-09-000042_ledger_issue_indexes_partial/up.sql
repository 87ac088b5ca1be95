-- Every confirmation, welcome and data link is a row of the ledger without an issue, written three
-- times (queued, sending, sent). The count of an issue's copies by status needs only rows of an
-- issue; every query that reads it names one (`issue_id = …`, which implies the condition).
-- The rule that a reader gets an issue once stays the table's own constraint here: SQLite would
-- rebuild the ledger to change it (PostgreSQL's index is partial too).
DROP INDEX deliveries_issue_status;
CREATE INDEX deliveries_issue_status ON deliveries (issue_id, status) WHERE issue_id IS NOT NULL;
