DROP INDEX repermission_requests_one_waiting;
UPDATE repermission_requests SET status = 'left' WHERE status = 'not_asked';
ALTER TABLE repermission_requests DROP CONSTRAINT repermission_requests_status_check;
ALTER TABLE repermission_requests ADD CONSTRAINT repermission_requests_status_check
    CHECK (status IN ('waiting', 'kept', 'unsubscribed', 'left'));
ALTER TABLE issues DROP COLUMN click_tracking;
