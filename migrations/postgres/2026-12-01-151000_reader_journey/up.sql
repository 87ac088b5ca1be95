-- The reader's journey: why a digest period is closed, the welcome email, and two new kinds of
-- message in the ledger.

-- 'sent': a digest went out; 'empty': a run found no new article; 'skipped': an editor skipped
-- the period. A manual run may take over an empty period (a fresh installation's first week), never
-- a skipped one. Earlier rows did not say which: those without articles count as skipped, so they
-- keep behaving as they did.
ALTER TABLE digests ADD COLUMN outcome TEXT NOT NULL DEFAULT 'sent' CHECK (outcome IN ('sent', 'empty', 'skipped'));
UPDATE digests SET outcome = 'skipped' WHERE articles = 0;

-- The email a reader gets once confirmed, as the editors wrote it; no row: the built-in text.
CREATE TABLE welcome_message (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    enabled INTEGER NOT NULL DEFAULT 1,
    subject TEXT NOT NULL,
    -- Markdown
    body TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    updated_by TEXT
);

-- The welcome email, and the note to a confirmed address that signs up again.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('confirmation', 'issue', 'welcome', 'already_subscribed'));
