-- Rate limits every process sees (the per-IP sign-up limit): one row per key, holding the
-- key's "theoretical arrival time" of the generic cell rate algorithm, in milliseconds since
-- 1970. One INSERT ... ON CONFLICT DO UPDATE ... WHERE admits a request or refuses it, so two
-- processes (or two requests in one) cannot both take the last place.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY NOT NULL,
    tat BIGINT NOT NULL
);
