//! Rate limits counted in the database, so that every process sees the same count: today the
//! sign-ups from one client IP (`IRIA_SIGNUP_PER_IP_PER_HOUR`).
//!
//! Each key keeps one row with the generic cell rate algorithm's "theoretical arrival time"
//! (TAT), the algorithm the in-memory limiter used before: `limit` requests in a row, then one
//! more each `window / limit`. Admitting a request moves the TAT on by `window / limit` and is
//! refused when the TAT would end up more than `window` ahead of now. Both the decision and the
//! count are one `INSERT … ON CONFLICT DO UPDATE … WHERE` statement: PostgreSQL locks the row
//! for the update, SQLite has one writer at a time, so two requests (in one process or in
//! several) can never both take the last place, and a sign-up costs one statement more.
//!
//! A busy key (many requests a second from one address, as behind a large network's proxy or
//! from a flood) would make every request of every process wait on that one row. [`Credits`]
//! lets a process take several places of a busy key in one statement and hand them out itself
//! for at most a second, and remember a refusal for as long (at most the key's interval): the
//! database still counts every place before it is used, so the limit holds across processes
//! exactly as before; a place taken and not used within its second (each new grant starts a new
//! one) is lost, which can only refuse early, never admit more. Requests of one process that find
//! no place at the same moment each ask for a chunk, so a burst can take more places than it
//! uses. Keys with a limit under 200 an hour (the default is 30) are never taken more than one
//! place at a time; their refusals are repeated for a second too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::foundation::db::schema::rate_limits;
use crate::foundation::db::DbConnection;

/// The statement that admits a request or refuses it (affects one row, or none), for a key at
/// `now` with the `interval` between two requests at the steady rate and the `window`, all in
/// milliseconds:
///
/// ```sql
/// INSERT INTO rate_limits (key, tat) VALUES (key, now + interval)
/// ON CONFLICT (key) DO UPDATE SET tat = max(rate_limits.tat, now) + interval
/// WHERE max(rate_limits.tat, now) + interval - now <= window
/// ```
///
/// (`max` written as `CASE`, which both backends spell alike.) A query type of its own rather
/// than `sql_query`, so that diesel prepares it once per connection: a `sql_query` is parsed and
/// planned anew each time, on every sign-up.
struct Admit<'a> {
    key: &'a str,
    now: i64,
    interval: i64,
    window: i64,
}

impl diesel::query_builder::QueryId for Admit<'_> {
    type QueryId = Admit<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> diesel::query_builder::QueryFragment<DB> for Admit<'_>
where
    DB: diesel::backend::Backend,
    str: diesel::serialize::ToSql<Text, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        let later = |out: &mut diesel::query_builder::AstPass<'_, 'b, DB>| -> QueryResult<()> {
            out.push_sql("(CASE WHEN rate_limits.tat > ");
            out.push_bind_param::<BigInt, _>(&self.now)?;
            out.push_sql(" THEN rate_limits.tat ELSE ");
            out.push_bind_param::<BigInt, _>(&self.now)?;
            out.push_sql(" END) + ");
            out.push_bind_param::<BigInt, _>(&self.interval)
        };
        out.push_sql("INSERT INTO rate_limits (key, tat) VALUES (");
        out.push_bind_param::<Text, _>(self.key)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(" + ");
        out.push_bind_param::<BigInt, _>(&self.interval)?;
        out.push_sql(") ON CONFLICT (key) DO UPDATE SET tat = ");
        later(&mut out)?;
        out.push_sql(" WHERE ");
        later(&mut out)?;
        out.push_sql(" - ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(" <= ");
        out.push_bind_param::<BigInt, _>(&self.window)
    }
}

impl<Conn> diesel::RunQueryDsl<Conn> for Admit<'_> {}

/// Takes `places` places for `key` at once, or none, as `places` requests at the same moment
/// would: at most `limit` requests per `window`, in the sense above. `true`: admitted (and
/// counted); `false`: refused, nothing counted.
fn take(
    conn: &mut DbConnection,
    key: &str,
    limit: u32,
    window: Duration,
    now_ms: i64,
    places: u32,
) -> QueryResult<bool> {
    let (window_ms, interval_ms) = window_and_interval(limit, window);
    let statement = Admit {
        key,
        now: now_ms,
        interval: interval_ms.saturating_mul(i64::from(places.max(1))),
        window: window_ms,
    };
    let changed = match conn {
        DbConnection::Pg(pg) => statement.execute(pg)?,
        DbConnection::Sqlite(lite) => statement.execute(lite)?,
    };
    Ok(changed == 1)
}

/// The window and the interval between two requests at the steady rate, in milliseconds.
fn window_and_interval(limit: u32, window: Duration) -> (i64, i64) {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4);
    (window_ms, (window_ms / i64::from(limit.max(1))).max(1))
}

/// How long a process hands out places it took ahead, or repeats a refusal, by itself.
const CREDIT_MS: i64 = 1_000;
/// The most places taken ahead in one statement.
const MAX_CHUNK: u32 = 64;
/// Keys remembered; past this, the expired ones are forgotten (and all, if that is not enough).
const MAX_KEYS: usize = 50_000;

/// What this process knows of a key for the next moment (see the module's notes).
#[derive(Clone, Copy, Debug)]
struct Credit {
    /// Places taken from the database and not yet handed out.
    left: u32,
    /// Until when `left` may be handed out; past it they are lost.
    until_ms: i64,
    /// How many places the next statement takes: doubled each time the last ones ran out
    /// within their second.
    chunk: u32,
    /// A refusal repeated without asking the database until then.
    refused_until_ms: i64,
}

/// Places of busy keys taken ahead, shared by the requests of one process.
#[derive(Debug, Default)]
pub struct Credits {
    keys: Mutex<HashMap<String, Credit>>,
}

/// What the process can decide alone.
enum Local {
    Admit,
    Refuse,
    /// Ask the database for this many places.
    Ask(u32),
}

impl Credits {
    /// Admits or refuses a request for `key` (at most `limit` per `window`, see the module's
    /// notes), from this process's places taken ahead when it has some, else from the database.
    pub fn admit(
        &self,
        conn: &mut DbConnection,
        key: &str,
        limit: u32,
        window: Duration,
        now_ms: i64,
    ) -> QueryResult<bool> {
        let most = (limit / 200).clamp(1, MAX_CHUNK);
        let want = match self.local(key, now_ms, most) {
            Local::Admit => return Ok(true),
            Local::Refuse => return Ok(false),
            Local::Ask(places) => places,
        };
        // Several places, or else one: near the limit a chunk may not fit where one still does.
        let mut granted = 0;
        if want > 1 && take(conn, key, limit, window, now_ms, want)? {
            granted = want;
        } else if take(conn, key, limit, window, now_ms, 1)? {
            granted = 1;
        }
        let (_, interval_ms) = window_and_interval(limit, window);
        self.keep(key, now_ms, granted, interval_ms);
        Ok(granted > 0)
    }

    fn local(&self, key: &str, now_ms: i64, most: u32) -> Local {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let Some(credit) = keys.get_mut(key) else {
            return Local::Ask(1);
        };
        let busy = credit.until_ms > now_ms;
        if busy && credit.left > 0 {
            credit.left -= 1;
            return Local::Admit;
        }
        if credit.refused_until_ms > now_ms {
            return Local::Refuse;
        }
        if busy {
            // The last places ran out within their second.
            return Local::Ask(credit.chunk.saturating_mul(2).min(most));
        }
        // Quiet for a second: back to one place at a time.
        keys.remove(key);
        Local::Ask(1)
    }

    /// Keeps what the database granted: `granted` places, one of them used by the request at hand
    /// (none: a refusal, repeated for a moment). Requests of this process that asked at the same
    /// time add up their places.
    fn keep(&self, key: &str, now_ms: i64, granted: u32, interval_ms: i64) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_KEYS {
            keys.retain(|_, c| c.until_ms > now_ms || c.refused_until_ms > now_ms);
            if keys.len() >= MAX_KEYS / 2 {
                // A flood of distinct keys: forget them all (a place lost refuses early only).
                keys.clear();
            }
        }
        let credit = keys.entry(key.to_string()).or_insert(Credit {
            left: 0,
            until_ms: now_ms,
            chunk: 1,
            refused_until_ms: 0,
        });
        if credit.until_ms <= now_ms {
            credit.left = 0;
        }
        if granted == 0 {
            credit.refused_until_ms = now_ms + interval_ms.min(CREDIT_MS);
            credit.chunk = 1;
        } else {
            credit.left += granted - 1;
            credit.until_ms = now_ms + CREDIT_MS;
            credit.chunk = credit.chunk.max(granted);
            credit.refused_until_ms = 0;
        }
    }
}

/// Forgets the keys whose TAT has passed: they are as good as new, and the table stays small.
pub fn forget_idle(conn: &mut DbConnection, now_ms: i64) -> QueryResult<usize> {
    diesel::delete(rate_limits::table.filter(rate_limits::tat.lt(now_ms))).execute(conn)
}

/// The current time as the limits count it: milliseconds since 1970.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foundation::config::DatabaseUrl;
    use crate::foundation::db;

    /// One connection to a fresh in-memory SQLite database with the schema.
    fn database() -> db::PooledConnection {
        let url = DatabaseUrl::parse("sqlite://:memory:").expect("url");
        let pool = db::pool(&url, 1);
        let mut conn = pool.get().expect("connection");
        db::migrate(&mut conn).expect("migrations");
        conn
    }

    fn tat(conn: &mut DbConnection, key: &str) -> Option<i64> {
        rate_limits::table
            .filter(rate_limits::key.eq(key))
            .select(rate_limits::tat)
            .first(conn)
            .optional()
            .expect("tat")
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_busy_key_takes_places_ahead_and_never_more_than_its_limit() {
        let mut conn = database();
        let credits = Credits::default();
        // 2,000 an hour: at most 10 places taken at once; 1.8 s between two at the steady rate.
        let (limit, now) = (2_000, 1_000_000_000);
        let mut admitted = 0;
        let mut tats = Vec::new();
        for _ in 0..2_100 {
            if credits
                .admit(&mut conn, "k", limit, HOUR, now)
                .expect("admit")
            {
                admitted += 1;
            }
            tats.push(tat(&mut conn, "k"));
        }
        // All at one instant: exactly the limit, whatever the chunks.
        assert_eq!(admitted, 2_000);
        // The database counted every place: its TAT is a full window ahead.
        assert_eq!(tat(&mut conn, "k"), Some(now + 3_600_000));
        // Places were taken several at a time: the TAT moved fewer times than requests admitted.
        tats.dedup();
        assert!(tats.len() < 400, "{} moves", tats.len());
    }

    #[test]
    fn a_small_limit_takes_one_place_at_a_time_and_a_refusal_is_repeated_a_second() {
        let mut conn = database();
        let credits = Credits::default();
        let now = 1_000_000_000;
        for _ in 0..30 {
            assert!(credits
                .admit(&mut conn, "ip", 30, HOUR, now)
                .expect("admit"));
        }
        // One place a statement: the TAT is exactly 30 intervals ahead, nothing held locally.
        assert_eq!(tat(&mut conn, "ip"), Some(now + 30 * 120_000));
        assert!(!credits
            .admit(&mut conn, "ip", 30, HOUR, now)
            .expect("refused"));
        // Two minutes later (one interval) the database would admit again, but within the second
        // the refusal is repeated without asking; after it, the database is asked and admits.
        let later = now + 120_000;
        assert!(!credits
            .admit(&mut conn, "ip", 30, HOUR, now + 999)
            .expect("kept"));
        assert!(credits
            .admit(&mut conn, "ip", 30, HOUR, later)
            .expect("admit"));
        // Another key is not affected by the first one's refusal.
        assert!(credits
            .admit(&mut conn, "other", 30, HOUR, now)
            .expect("admit"));
    }

    #[test]
    fn places_not_used_within_their_second_are_lost_not_reused() {
        let mut conn = database();
        let credits = Credits::default();
        let (limit, now) = (20_000, 1_000_000_000);
        // Warm the key up until places are taken ahead.
        for _ in 0..50 {
            assert!(credits
                .admit(&mut conn, "k", limit, HOUR, now)
                .expect("admit"));
        }
        let counted = tat(&mut conn, "k").expect("row");
        let held = credits.keys.lock().expect("lock")["k"].left;
        assert!(held > 0, "places held ahead");
        // After the second, the next request goes to the database again (one place).
        let later = now + CREDIT_MS + 1;
        assert!(credits
            .admit(&mut conn, "k", limit, HOUR, later)
            .expect("admit"));
        assert_eq!(tat(&mut conn, "k"), Some(counted + 180));
        assert_eq!(credits.keys.lock().expect("lock")["k"].left, 0);
    }
}
