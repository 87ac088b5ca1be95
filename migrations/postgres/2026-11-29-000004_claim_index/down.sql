DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (priority, next_attempt_at) WHERE status = 'queued';
