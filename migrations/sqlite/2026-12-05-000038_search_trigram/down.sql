DROP INDEX IF EXISTS subscribers_unsubscribed_at;
DROP INDEX IF EXISTS subscribers_created_at;
DROP TRIGGER IF EXISTS subscribers_search_update;
DROP TRIGGER IF EXISTS subscribers_search_delete;
DROP TRIGGER IF EXISTS subscribers_search_insert;
DROP TABLE IF EXISTS subscribers_search;
