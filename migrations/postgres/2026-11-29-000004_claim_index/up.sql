-- The claim orders due deliveries by (priority, next_attempt_at, id); with id in the index the
-- first rows come straight from it, instead of a sort of the whole queue at every claim.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (priority, next_attempt_at, id) WHERE status = 'queued';
