-- The console at a million subscribers (issue H3).
--
-- Substring search over addresses and names (`LIKE '%term%'`) through trigram indexes: the
-- address is stored lower-case and indexed as it is, the name through `lower(name)`, the
-- expression the search filters on. pg_trgm is a trusted extension (PostgreSQL 13 and later):
-- a database owner may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX subscribers_email_trgm ON subscribers USING gin (email gin_trgm_ops);
CREATE INDEX subscribers_name_trgm ON subscribers USING gin (lower(name) gin_trgm_ops);
-- The dashboard's chart counts sign-ups and unsubscribes per day over the last 90 days.
CREATE INDEX subscribers_created_at ON subscribers (created_at);
CREATE INDEX subscribers_unsubscribed_at ON subscribers (unsubscribed_at)
    WHERE unsubscribed_at IS NOT NULL;
