//! The record of digest periods: which period's digest was made (or skipped), when, with how
//! many articles. The only writer of `digests`; the digest itself is built by
//! `processes::digest`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::digests;
use crate::foundation::db::DbConnection;

/// A digest period, as the archive and the console list it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = digests)]
pub struct Archived {
    pub id: i64,
    pub period_key: String,
    pub cutoff: NaiveDateTime,
    pub articles: i32,
    pub created_at: NaiveDateTime,
}

/// Records a period's digest; `None` when the period was recorded already (by another instance
/// a moment ago: the period's key is unique, so one of them wins).
pub fn record_period(
    conn: &mut DbConnection,
    period_key: &str,
    cutoff: NaiveDateTime,
    articles: i32,
    now: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    let recorded = diesel::insert_into(digests::table)
        .values((
            digests::period_key.eq(period_key),
            digests::cutoff.eq(cutoff),
            digests::articles.eq(articles),
            digests::created_at.eq(now),
        ))
        .returning(digests::id)
        .get_result(conn);
    match recorded {
        Ok(id) => Ok(Some(id)),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The cut-off of the latest digest that carried articles.
pub fn previous_cutoff(conn: &mut DbConnection) -> QueryResult<Option<NaiveDateTime>> {
    digests::table
        .filter(digests::articles.gt(0))
        .select(diesel::dsl::max(digests::cutoff))
        .first(conn)
}

/// The digests made so far (those with articles), newest first.
pub fn archive(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Archived>> {
    digests::table
        .filter(digests::articles.gt(0))
        .order(digests::id.desc())
        .limit(limit)
        .select(Archived::as_select())
        .load(conn)
}

/// One digest period.
pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Archived>> {
    digests::table
        .find(id)
        .select(Archived::as_select())
        .first(conn)
        .optional()
}

/// Marks a period as done without sending anything (an editor skipped it): its run then finds it
/// done. The articles wait for the next digest. `false` when the period was done already.
pub fn skip(conn: &mut DbConnection, period_key: &str, now: NaiveDateTime) -> QueryResult<bool> {
    Ok(record_period(conn, period_key, now, 0, now)?.is_some())
}

/// Whether a period's digest was made (or skipped) already.
pub fn is_done(conn: &mut DbConnection, period_key: &str) -> QueryResult<bool> {
    use diesel::dsl::{exists, select};
    select(exists(
        digests::table.filter(digests::period_key.eq(period_key)),
    ))
    .get_result(conn)
}

/// Every digest run, sent or not (none to send, or skipped), newest first.
pub fn history(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Archived>> {
    digests::table
        .order(digests::id.desc())
        .limit(limit)
        .select(Archived::as_select())
        .load(conn)
}
