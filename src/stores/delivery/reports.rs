//! What the ledger tells: counts, an issue's progress and recipients, a subscriber's messages.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::deliveries;
use crate::foundation::db::{self, DbConnection};

use super::kinds::Status;

/// Counts of deliveries by status (for tests, health and the dashboard).
pub fn counts_by_status(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    deliveries::table
        .group_by(deliveries::status)
        .select((deliveries::status, diesel::dsl::count_star()))
        .load(conn)
}

/// How many deliveries are due now (the queue's depth, for `/metrics`).
pub fn due_now(conn: &mut DbConnection) -> QueryResult<i64> {
    deliveries::table
        .filter(deliveries::status.eq(Status::Queued.as_str()))
        .filter(deliveries::next_attempt_at.le(db::now()))
        .count()
        .get_result(conn)
}

/// Every message sent or queued to a subscriber, for their data export.
pub fn history_of(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> QueryResult<Vec<serde_json::Value>> {
    use crate::foundation::db::schema::issues;
    type Row = (
        String,
        Option<String>,
        String,
        i32,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<String>,
    );
    let rows: Vec<Row> = deliveries::table
        .left_join(issues::table)
        .filter(deliveries::subscriber_id.eq(subscriber_id))
        .order(deliveries::id)
        .select((
            deliveries::kind,
            issues::subject.nullable(),
            deliveries::status,
            deliveries::attempts,
            deliveries::created_at,
            deliveries::finished_at,
            deliveries::message_id,
        ))
        .load(conn)?;
    let iso = |t: NaiveDateTime| {
        t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    Ok(rows
        .into_iter()
        .map(
            |(kind, subject, status, attempts, created, finished, message_id)| {
                serde_json::json!({
                    "kind": kind,
                    "subject": subject,
                    "status": status,
                    "attempts": attempts,
                    "queued_at": iso(created),
                    "finished_at": finished.map(iso),
                    "message_id": message_id,
                })
            },
        )
        .collect())
}

/// How an issue's deliveries stand: counts by status.
pub fn issue_progress(conn: &mut DbConnection, issue_id: i64) -> QueryResult<Vec<(String, i64)>> {
    deliveries::table
        .filter(deliveries::issue_id.eq(issue_id))
        .group_by(deliveries::status)
        .select((deliveries::status, diesel::dsl::count_star()))
        .load(conn)
}

/// An issue's deliveries by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub bounced: i64,
    pub skipped: i64,
}

impl Progress {
    /// One issue's counts out of [`progress_of`]'s rows.
    pub fn of(issue_id: i64, counts: &[(Option<i64>, String, i64)]) -> Self {
        let mut p = Self::default();
        for (issue, status, n) in counts {
            if *issue != Some(issue_id) {
                continue;
            }
            match status.as_str() {
                "queued" => p.queued += n,
                "sending" => p.sending += n,
                "sent" => p.sent += n,
                "failed" => p.failed += n,
                "bounced" => p.bounced += n,
                "skipped" => p.skipped += n,
                _ => {}
            }
        }
        p
    }

    /// Not done yet: queued or being sent.
    pub fn waiting(&self) -> i64 {
        self.queued + self.sending
    }

    /// Share of the deliveries done with (sent, failed, bounced or skipped), in percent.
    pub fn percent_done(&self) -> i64 {
        let total = self.waiting() + self.sent + self.failed + self.bounced + self.skipped;
        if total == 0 {
            return 0;
        }
        (total - self.waiting()) * 100 / total
    }
}

/// Counts by status of several issues' deliveries: (issue, status, count).
pub fn progress_of(
    conn: &mut DbConnection,
    issue_ids: &[i64],
) -> QueryResult<Vec<(Option<i64>, String, i64)>> {
    deliveries::table
        .filter(deliveries::issue_id.eq_any(issue_ids))
        .group_by((deliveries::issue_id, deliveries::status))
        .select((
            deliveries::issue_id,
            deliveries::status,
            diesel::dsl::count_star(),
        ))
        .load(conn)
}

/// Whether any copy of the issue is still queued or being sent. Answered from the first live
/// entry of the issue's index range, where [`progress_of`] reads every row of the issue: at a
/// million copies, well under a millisecond against about 700.
pub fn any_waiting(conn: &mut DbConnection, issue_id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        deliveries::table
            .filter(deliveries::issue_id.eq(issue_id))
            .filter(deliveries::status.eq_any([Status::Queued.as_str(), Status::Sending.as_str()])),
    ))
    .get_result(conn)
}

/// One recipient of an issue, as the issue's page lists them.
#[derive(Clone, Debug, Queryable, serde::Serialize)]
pub struct IssueRecipient {
    pub subscriber_id: i64,
    pub email: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub finished_at: Option<NaiveDateTime>,
}

/// How many addresses, in address order, [`recipients_of_issue`] first looks among on SQLite,
/// for an issue to more readers than that.
const FIRST_ADDRESSES: i64 = 50_000;

/// An issue's recipients, optionally of one status, by address.
///
/// On SQLite, for an issue to more than [`FIRST_ADDRESSES`] readers, the page is first looked
/// for among the first [`FIRST_ADDRESSES`] addresses: SQLite joined every copy of the issue to
/// its subscriber and sorted them all by address (130 ms for an issue to a million), where
/// walking the addresses in order and stopping at a full page takes well under a millisecond.
/// The recipients up to an address are the first of all of them, so a page found there is the
/// page; a page not filled there is read as before. A smaller issue is always read as before:
/// sorting its copies is quick, and walking 50,000 addresses for a few of them is not.
pub fn recipients_of_issue(
    conn: &mut DbConnection,
    issue_id: i64,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<IssueRecipient>> {
    use crate::foundation::db::schema::{issues, subscribers};
    if let DbConnection::Sqlite(c) = conn {
        let copies: Option<i32> = issues::table
            .find(issue_id)
            .select(issues::recipients)
            .first(c)
            .optional()?;
        if copies.is_some_and(|n| i64::from(n) > FIRST_ADDRESSES) {
            let last: Option<String> = subscribers::table
                .select(subscribers::email)
                .order(subscribers::email)
                .offset(FIRST_ADDRESSES - 1)
                .first(c)
                .optional()?;
            if let Some(last) = last {
                let page = recipients_up_to(c, issue_id, status, &last, limit, offset)?;
                if page.len() as i64 == limit {
                    return Ok(page);
                }
            }
        }
    }
    let mut query = deliveries::table
        .inner_join(subscribers::table)
        .filter(deliveries::issue_id.eq(issue_id))
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(deliveries::status.eq(status.to_string()));
    }
    query
        .order(subscribers::email)
        .limit(limit)
        .offset(offset)
        .select((
            deliveries::subscriber_id,
            subscribers::email,
            deliveries::status,
            deliveries::attempts,
            deliveries::last_error,
            deliveries::finished_at,
        ))
        .load(conn)
}

/// One row of [`recipients_up_to`].
#[derive(QueryableByName)]
struct RecipientRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    subscriber_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamp>)]
    finished_at: Option<NaiveDateTime>,
}

/// On SQLite, a page of an issue's recipients by address among the addresses up to `last`. The
/// `CROSS JOIN` keeps SQLite walking the addresses in order and looking up each one's copy,
/// whatever its statistics say (nothing updates them as copies are queued: without them it read
/// every copy of the issue and sorted them, 100 ms at a million).
fn recipients_up_to(
    c: &mut diesel::SqliteConnection,
    issue_id: i64,
    status: Option<&str>,
    last: &str,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<IssueRecipient>> {
    use diesel::sql_types::{BigInt, Text};
    let rows: Vec<RecipientRow> = diesel::sql_query(
        "SELECT d.subscriber_id, s.email, d.status, d.attempts, d.last_error, d.finished_at \
         FROM subscribers s CROSS JOIN deliveries d \
         WHERE d.subscriber_id = s.id AND d.issue_id = ? AND s.email <= ? \
         AND (? IS NULL OR d.status = ?) ORDER BY s.email LIMIT ? OFFSET ?",
    )
    .bind::<BigInt, _>(issue_id)
    .bind::<Text, _>(last)
    .bind::<diesel::sql_types::Nullable<Text>, _>(status)
    .bind::<diesel::sql_types::Nullable<Text>, _>(status)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .load(c)?;
    Ok(rows
        .into_iter()
        .map(|r| IssueRecipient {
            subscriber_id: r.subscriber_id,
            email: r.email,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error,
            finished_at: r.finished_at,
        })
        .collect())
}

/// The subscriber a delivery went to, if there is such a delivery.
pub fn subscriber_of(conn: &mut DbConnection, delivery_id: i64) -> QueryResult<Option<i64>> {
    deliveries::table
        .find(delivery_id)
        .select(deliveries::subscriber_id)
        .first(conn)
        .optional()
}
