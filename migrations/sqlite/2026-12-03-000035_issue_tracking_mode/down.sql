DROP INDEX repermission_requests_one_waiting;
CREATE TABLE repermission_requests_old (
    campaign_id BIGINT NOT NULL REFERENCES repermission_campaigns (id) ON DELETE CASCADE,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('waiting', 'kept', 'unsubscribed', 'left')),
    answered_at TIMESTAMP,
    PRIMARY KEY (campaign_id, subscriber_id)
);
INSERT INTO repermission_requests_old (campaign_id, subscriber_id, status, answered_at)
SELECT campaign_id, subscriber_id, CASE status WHEN 'not_asked' THEN 'left' ELSE status END,
    answered_at FROM repermission_requests;
DROP TABLE repermission_requests;
ALTER TABLE repermission_requests_old RENAME TO repermission_requests;
CREATE INDEX repermission_requests_waiting ON repermission_requests (campaign_id) WHERE status = 'waiting';
CREATE INDEX repermission_requests_subscriber ON repermission_requests (subscriber_id);
ALTER TABLE issues DROP COLUMN click_tracking;
