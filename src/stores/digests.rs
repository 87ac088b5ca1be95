//! The record of digest periods: which period's digest was sent, found nothing to send, or was
//! skipped, when, with how many articles. The only writer of `digests`; the digest itself is built
//! by `processes::digest`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::digests;
use crate::foundation::db::DbConnection;

/// Why a period is closed, as stored in `digests.outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodState {
    /// A digest went out.
    Sent,
    /// A scheduled run found no new article. Closed for the scheduler (a restart later in the
    /// week sends nothing mid-week), open to an editor's or an operator's run.
    Empty,
    /// An editor skipped it: nothing goes out in it unless forced.
    Skipped,
}

impl PeriodState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodState::Sent => "sent",
            PeriodState::Empty => "empty",
            PeriodState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sent" => PeriodState::Sent,
            "empty" => PeriodState::Empty,
            "skipped" => PeriodState::Skipped,
            _ => return None,
        })
    }
}

/// A digest period, as the archive and the console list it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = digests)]
pub struct Archived {
    pub id: i64,
    pub period_key: String,
    pub cutoff: NaiveDateTime,
    pub articles: i32,
    pub created_at: NaiveDateTime,
    /// `sent`, `empty` or `skipped` (see [`PeriodState`]).
    pub outcome: String,
}

/// Whether the insert met the period's unique key: another instance recorded it a moment ago.
fn taken<T>(inserted: QueryResult<T>) -> QueryResult<Option<T>> {
    match inserted {
        Ok(v) => Ok(Some(v)),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(None),
        Err(e) => Err(e),
    }
}

fn insert(
    conn: &mut DbConnection,
    period_key: &str,
    cutoff: NaiveDateTime,
    articles: i32,
    state: PeriodState,
    now: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    taken(
        diesel::insert_into(digests::table)
            .values((
                digests::period_key.eq(period_key),
                digests::cutoff.eq(cutoff),
                digests::articles.eq(articles),
                digests::created_at.eq(now),
                digests::outcome.eq(state.as_str()),
            ))
            .returning(digests::id)
            .get_result(conn),
    )
}

/// How a period stands: `None` while nothing closed it.
pub fn state_of(conn: &mut DbConnection, period_key: &str) -> QueryResult<Option<PeriodState>> {
    let stored: Option<String> = digests::table
        .filter(digests::period_key.eq(period_key))
        .select(digests::outcome)
        .first(conn)
        .optional()?;
    // An unknown word in the column (written by a newer version) is taken as the strictest.
    Ok(stored.map(|s| PeriodState::parse(&s).unwrap_or(PeriodState::Skipped)))
}

/// Records a period's digest as sent, inside the digest's transaction; `None` when the period is
/// closed already (by another instance a moment ago: the period's key is unique, so one of them
/// wins). With `over_empty`, a period closed as [`PeriodState::Empty`] is taken over: its row
/// becomes the digest's. The update is conditional on the row still being empty, so two runs
/// taking it over at once send once.
pub fn record_sent(
    conn: &mut DbConnection,
    period_key: &str,
    cutoff: NaiveDateTime,
    articles: i32,
    now: NaiveDateTime,
    over_empty: bool,
) -> QueryResult<Option<i64>> {
    // Looked at first: a failed insert would end a PostgreSQL transaction.
    match state_of(conn, period_key)? {
        None => insert(conn, period_key, cutoff, articles, PeriodState::Sent, now),
        Some(PeriodState::Empty) if over_empty => diesel::update(
            digests::table
                .filter(digests::period_key.eq(period_key))
                .filter(digests::outcome.eq(PeriodState::Empty.as_str())),
        )
        .set((
            digests::cutoff.eq(cutoff),
            digests::articles.eq(articles),
            digests::created_at.eq(now),
            digests::outcome.eq(PeriodState::Sent.as_str()),
        ))
        .returning(digests::id)
        .get_result(conn)
        .optional(),
        Some(_) => Ok(None),
    }
}

/// Records that a scheduled run found no article in the period (so that a restart later in the
/// period does not send mid-period). `false` when the period was closed already.
pub fn record_empty(
    conn: &mut DbConnection,
    period_key: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    Ok(insert(conn, period_key, now, 0, PeriodState::Empty, now)?.is_some())
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

/// Marks a period as skipped by an editor: nothing goes out in it, whoever runs it, unless forced.
/// The articles wait for the next digest. A period a scheduled run found empty becomes skipped
/// too. `false` when the period was sent or skipped already.
pub fn skip(conn: &mut DbConnection, period_key: &str, now: NaiveDateTime) -> QueryResult<bool> {
    let emptied = diesel::update(
        digests::table
            .filter(digests::period_key.eq(period_key))
            .filter(digests::outcome.eq(PeriodState::Empty.as_str())),
    )
    .set((
        digests::outcome.eq(PeriodState::Skipped.as_str()),
        digests::created_at.eq(now),
    ))
    .execute(conn)?;
    if emptied > 0 {
        return Ok(true);
    }
    Ok(insert(conn, period_key, now, 0, PeriodState::Skipped, now)?.is_some())
}

/// Whether a period's digest was sent or skipped already (a period a scheduled run found empty
/// is still open to an editor).
pub fn is_done(conn: &mut DbConnection, period_key: &str) -> QueryResult<bool> {
    Ok(state_of(conn, period_key)?.is_some_and(|s| s != PeriodState::Empty))
}

/// Every digest run, sent or not (none to send, or skipped), newest first.
pub fn history(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Archived>> {
    digests::table
        .order(digests::id.desc())
        .limit(limit)
        .select(Archived::as_select())
        .load(conn)
}
