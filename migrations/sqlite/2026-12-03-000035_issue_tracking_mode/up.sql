-- The click tracking mode in force when an issue was composed and queued (`off`, `anonymous`,
-- `personal`; NULL for issues from before this column, or composed with tracking off). The
-- inactive filter counts only the digests sent in `personal` mode: only their clicks name a
-- reader.
ALTER TABLE issues ADD COLUMN click_tracking TEXT;

-- A reader asked by two campaigns at once (two starts at the same moment) who answered one
-- was left waiting in the other. Existing cases: a reader who kept one campaign keeps the
-- others; of any other waiting duplicates only the oldest campaign's request stays waiting.
UPDATE repermission_requests SET status = 'kept', answered_at = (
    SELECT MAX(k.answered_at) FROM repermission_requests k
    WHERE k.subscriber_id = repermission_requests.subscriber_id AND k.status = 'kept')
WHERE status = 'waiting' AND EXISTS (
    SELECT 1 FROM repermission_requests k
    WHERE k.subscriber_id = repermission_requests.subscriber_id AND k.status = 'kept');

-- `not_asked`: the deadline passed but the reader's message was never delivered (failed,
-- skipped, still queued): they leave the campaign without being unsubscribed. SQLite cannot
-- change a CHECK constraint: the table is rebuilt with every row and index it had.
CREATE TABLE repermission_requests_new (
    campaign_id BIGINT NOT NULL REFERENCES repermission_campaigns (id) ON DELETE CASCADE,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('waiting', 'kept', 'unsubscribed', 'left', 'not_asked')),
    answered_at TIMESTAMP,
    PRIMARY KEY (campaign_id, subscriber_id)
);
INSERT INTO repermission_requests_new (campaign_id, subscriber_id, status, answered_at)
SELECT campaign_id, subscriber_id, status, answered_at FROM repermission_requests;
DROP TABLE repermission_requests;
ALTER TABLE repermission_requests_new RENAME TO repermission_requests;
UPDATE repermission_requests SET status = 'not_asked'
WHERE status = 'waiting' AND EXISTS (
    SELECT 1 FROM repermission_requests o
    WHERE o.subscriber_id = repermission_requests.subscriber_id AND o.status = 'waiting'
    AND o.campaign_id < repermission_requests.campaign_id);
CREATE INDEX repermission_requests_waiting ON repermission_requests (campaign_id) WHERE status = 'waiting';
CREATE INDEX repermission_requests_subscriber ON repermission_requests (subscriber_id);

-- One waiting request per reader, whatever starts run at the same moment.
CREATE UNIQUE INDEX repermission_requests_one_waiting ON repermission_requests (subscriber_id)
    WHERE status = 'waiting';
