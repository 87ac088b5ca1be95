-- Engagement: each issue's links, stored once per issue in order, and the clicks on them.
--
-- Position 1.. are the links of the issue's parts in order of first appearance; position 0 is
-- the hidden link no person sees (a click on it is a machine's); position -1 is the open image
-- (when open tracking is on). The counters hold the clicks that name no reader: every click in
-- `anonymous` mode, and those of readers since erased.
CREATE TABLE issue_links (
    issue_id BIGINT NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    url TEXT NOT NULL,
    article_id BIGINT,
    clicks BIGINT NOT NULL DEFAULT 0,
    machine_clicks BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, position)
);
CREATE INDEX issue_links_article ON issue_links (article_id) WHERE article_id IS NOT NULL;

-- `personal` mode only: one row per click (or open) of one delivered copy.
CREATE TABLE clicks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id BIGINT NOT NULL,
    issue_id BIGINT NOT NULL,
    position INTEGER NOT NULL,
    clicked_at TIMESTAMP NOT NULL,
    machine BOOLEAN NOT NULL
);
CREATE INDEX clicks_issue ON clicks (issue_id, position);
CREATE INDEX clicks_delivery ON clicks (delivery_id);
