DROP TABLE feed_state;
ALTER TABLE issues DROP COLUMN audience_topics;
ALTER TABLE issues DROP COLUMN digest_id;
DROP TABLE digests;
DROP TABLE articles;
