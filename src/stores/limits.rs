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
    let statement = Admit {
        key,
        now: now_ms,
        interval: interval_ms,
        window: window_ms,
    };
    let changed = match conn {
        DbConnection::Pg(pg) => statement.execute(pg)?,
        DbConnection::Sqlite(lite) => statement.execute(lite)?,
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
