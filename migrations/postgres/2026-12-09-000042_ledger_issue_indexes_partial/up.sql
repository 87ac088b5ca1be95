-- Every confirmation, welcome and data link is a row of the ledger without an issue, and each is
-- written three times (queued, sending, sent); `status` is in the ledger's indexes, so each write
-- is a new tuple in every index. Two of those indexes serve only rows of an issue: the count of
-- an issue's copies by status and the rule that a reader gets an issue once. Restricted to rows
-- of an issue, they skip 6 of the 14 index insertions of such a row, the kind a busy sign-up page
-- writes. Every query that reads them names an issue (`issue_id = …`), which implies the
-- condition, and a unique index never compared rows without an issue anyway: the rule is the same.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_issue_id_subscriber_id_key;
CREATE UNIQUE INDEX deliveries_issue_subscriber ON deliveries (issue_id, subscriber_id)
    WHERE issue_id IS NOT NULL;
DROP INDEX deliveries_issue_status;
CREATE INDEX deliveries_issue_status ON deliveries (issue_id, status) WHERE issue_id IS NOT NULL;
