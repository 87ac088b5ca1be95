-- The console at a million subscribers (issue H3).
--
-- Substring search over addresses and names through an FTS5 index with the trigram tokenizer
-- (SQLite 3.34 and later), an external-content table over `subscribers` kept in step by the
-- triggers below. A search term of 3 characters or more is looked up there with MATCH, then
-- checked with the same LIKE as before; shorter terms scan with LIKE alone.
CREATE VIRTUAL TABLE subscribers_search USING fts5(
    email, name, content = 'subscribers', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO subscribers_search (subscribers_search) VALUES ('rebuild');

CREATE TRIGGER subscribers_search_insert AFTER INSERT ON subscribers BEGIN
    INSERT INTO subscribers_search (rowid, email, name) VALUES (new.id, new.email, new.name);
END;
CREATE TRIGGER subscribers_search_delete AFTER DELETE ON subscribers BEGIN
    INSERT INTO subscribers_search (subscribers_search, rowid, email, name)
        VALUES ('delete', old.id, old.email, old.name);
END;
CREATE TRIGGER subscribers_search_update AFTER UPDATE OF email, name ON subscribers BEGIN
    INSERT INTO subscribers_search (subscribers_search, rowid, email, name)
        VALUES ('delete', old.id, old.email, old.name);
    INSERT INTO subscribers_search (rowid, email, name) VALUES (new.id, new.email, new.name);
END;

-- The dashboard's chart counts sign-ups and unsubscribes per day over the last 90 days.
CREATE INDEX subscribers_created_at ON subscribers (created_at);
CREATE INDEX subscribers_unsubscribed_at ON subscribers (unsubscribed_at)
    WHERE unsubscribed_at IS NOT NULL;
