DROP INDEX subscribers_live_ids;
