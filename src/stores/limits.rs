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

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::foundation::db::schema::rate_limits;
use crate::foundation::db::DbConnection;

/// The statement that admits a request or refuses it (affects one row, or none). `$1` key,
/// `$2` now, `$3` the interval between two requests at the steady rate, `$4` the window; all
/// in milliseconds. `CASE` rather than `GREATEST`/`MAX`, which the two backends spell apart.
const ADMIT: &str = "INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3) \
     ON CONFLICT (key) DO UPDATE \
     SET tat = (CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END) + $3 \
     WHERE (CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END) + $3 - $2 <= $4";

/// Takes one place for `key` if it has one left: at most `limit` requests per `window`, in the
/// sense above. `true`: admitted (and counted); `false`: refused, nothing counted.
pub fn admit(
    conn: &mut DbConnection,
    key: &str,
    limit: u32,
    window: Duration,
    now_ms: i64,
) -> QueryResult<bool> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4);
    let interval_ms = (window_ms / i64::from(limit.max(1))).max(1);
    // SQLite numbers its parameters `?1`, `?2`…, PostgreSQL `$1`, `$2`…: the same order.
    let sql = match conn {
        DbConnection::Pg(_) => ADMIT.to_string(),
        DbConnection::Sqlite(_) => ADMIT.replace('$', "?"),
    };
    let query = diesel::sql_query(sql)
        .bind::<Text, _>(key)
        .bind::<BigInt, _>(now_ms)
        .bind::<BigInt, _>(interval_ms)
        .bind::<BigInt, _>(window_ms);
    let changed = match conn {
        DbConnection::Pg(pg) => query.execute(pg)?,
        DbConnection::Sqlite(lite) => query.execute(lite)?,
    };
    Ok(changed == 1)
}

/// Forgets the keys whose TAT has passed: they are as good as new, and the table stays small.
pub fn forget_idle(conn: &mut DbConnection, now_ms: i64) -> QueryResult<usize> {
    diesel::delete(rate_limits::table.filter(rate_limits::tat.lt(now_ms))).execute(conn)
}

/// The current time as the limits count it: milliseconds since 1970.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
