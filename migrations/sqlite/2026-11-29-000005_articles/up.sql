-- Articles of the site, imported from its feed or pushed by its CMS, and the weekly digests.
CREATE TABLE articles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- the feed's guid, or the link when there is none: one article, however often it is seen
    guid TEXT NOT NULL UNIQUE,
    link TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    -- sanitised HTML
    body TEXT NOT NULL DEFAULT '',
    author TEXT,
    -- comma-separated
    categories TEXT NOT NULL DEFAULT '',
    image_url TEXT,
    image_credit TEXT,
    published_at TIMESTAMP NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('feed', 'api', 'admin')),
    -- an editor kept it out of the digest
    excluded INTEGER NOT NULL DEFAULT 0,
    -- the digest that carried it: an article goes out once, even if edited later
    digest_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX articles_undigested ON articles (published_at) WHERE digest_id IS NULL;

-- One row per digest period, whatever the number of instances: the unique key is the guard.
CREATE TABLE digests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    period_key TEXT NOT NULL UNIQUE,
    -- articles published up to this time were considered
    cutoff TIMESTAMP NOT NULL,
    articles INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);

ALTER TABLE issues ADD COLUMN digest_id BIGINT;
-- the topics a digest issue was made for (its audience's exact choice)
ALTER TABLE issues ADD COLUMN audience_topics TEXT;

-- What the last poll of a feed learned, for conditional GET.
CREATE TABLE feed_state (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    polled_at TIMESTAMP,
    last_error TEXT
);
