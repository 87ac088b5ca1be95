-- Rate limits every process sees (the per-IP sign-up limit): one row per key, holding the
-- key's "theoretical arrival time" of the generic cell rate algorithm, in milliseconds since
-- 1970. One INSERT ... ON CONFLICT DO UPDATE ... WHERE admits a request or refuses it, so two
-- processes (or two requests in one) cannot both take the last place.
--
-- UNLOGGED: its writes skip the write-ahead log, so a sign-up's counter update does not wait for
-- a WAL flush of its own (it cost a third of the sign-up rate). A crash empties the table, which
-- forgets at most an hour of counts: harmless for a rate limit.
CREATE UNLOGGED TABLE rate_limits (
    key TEXT PRIMARY KEY NOT NULL,
    tat BIGINT NOT NULL
);
