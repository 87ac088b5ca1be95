DROP INDEX IF EXISTS subscribers_unsubscribed_at;
DROP INDEX IF EXISTS subscribers_created_at;
DROP INDEX IF EXISTS subscribers_name_trgm;
DROP INDEX IF EXISTS subscribers_email_trgm;
-- The extension stays: something else may use it.
