//! The delivery ledger: the only module that writes `deliveries`.
//!
//! Every message this program sends is first a row here, written in the same transaction as the
//! change that calls for it, then claimed by a worker with a lease, sent, and recorded. A worker
//! that dies leaves leases that expire and are claimed again, so nothing is lost; at most the
//! messages in flight at that moment can go twice.

pub mod worker;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};
use diesel::IntoSql;

use crate::db::schema::deliveries;
use crate::db::{self, DbConnection};

/// Confirmation emails go ahead of bulk sends: the person is waiting for them.
pub const PRIORITY_CONFIRMATION: i32 = 0;
/// Newsletter issues.
pub const PRIORITY_BULK: i32 = 10;

/// What kind of message a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Confirmation,
    Issue,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Confirmation => "confirmation",
            Kind::Issue => "issue",
        }
    }
}

/// A delivery's status, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Sending,
    Sent,
    Failed,
    Bounced,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Bounced => "bounced",
            Status::Skipped => "skipped",
        }
    }
}

/// Queues the confirmation email of a sign-up. `token` is the only copy of the link's secret
/// outside the email; it is wiped from the row once the delivery has ended.
pub fn queue_confirmation(
    conn: &mut DbConnection,
    subscriber_id: i64,
    token: &str,
    now: NaiveDateTime,
) -> QueryResult<i64> {
    diesel::insert_into(deliveries::table)
        .values((
            deliveries::kind.eq(Kind::Confirmation.as_str()),
            deliveries::subscriber_id.eq(subscriber_id),
            deliveries::priority.eq(PRIORITY_CONFIRMATION),
            deliveries::status.eq(Status::Queued.as_str()),
            deliveries::next_attempt_at.eq(now),
            deliveries::payload.eq(token),
            deliveries::created_at.eq(now),
        ))
        .returning(deliveries::id)
        .get_result(conn)
}

/// A delivery a worker holds the lease of.
#[derive(Clone, Debug, QueryableByName)]
#[diesel(table_name = deliveries)]
pub struct Claimed {
    pub id: i64,
    pub kind: String,
    pub issue_id: Option<i64>,
    pub subscriber_id: i64,
    pub attempts: i32,
    pub payload: Option<String>,
    pub message_id: Option<String>,
}

/// Claims up to `limit` due deliveries for `owner` until `lease_until`, confirmations first.
///
/// PostgreSQL: `FOR UPDATE SKIP LOCKED` lets several workers claim from one queue at once, each
/// passing over the rows another is claiming. SQLite: the claim runs in one `BEGIN IMMEDIATE`
/// transaction, which holds the database's single write lock, so two claims never overlap.
/// The attempt is counted at the claim, so a worker killed mid-send still uses up an attempt.
/// The Message-ID is set here too, `<d{id}{message_id_suffix}`: the same for every attempt of
/// a delivery, so a copy sent twice (a crash mid-send) can be recognised as one.
pub fn claim(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
    message_id_suffix: &str,
) -> QueryResult<Vec<Claimed>> {
    const RETURNING: &str =
        "RETURNING id, kind, issue_id, subscriber_id, attempts, payload, message_id";
    match conn {
        DbConnection::Pg(pg) => diesel::sql_query(format!(
            "UPDATE deliveries SET status = 'sending', lease_until = $1, lease_owner = $2, \
             attempts = attempts + 1, message_id = '<d' || id || $5 \
             WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= $3 \
             ORDER BY priority, next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) {RETURNING}"
        ))
        .bind::<Timestamp, _>(lease_until)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .bind::<Text, _>(message_id_suffix)
        .load(pg),
        DbConnection::Sqlite(_) => db::write_transaction(conn, |conn| {
            let DbConnection::Sqlite(lite) = conn else {
                unreachable!("matched as SQLite above")
            };
            diesel::sql_query(format!(
                "UPDATE deliveries SET status = 'sending', lease_until = ?, lease_owner = ?, \
                 attempts = attempts + 1, message_id = '<d' || id || ? \
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= ? \
                 ORDER BY priority, next_attempt_at, id LIMIT ?) {RETURNING}"
            ))
            .bind::<Timestamp, _>(lease_until)
            .bind::<Text, _>(owner)
            .bind::<Text, _>(message_id_suffix)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(limit)
            .load(lite)
        }),
    }
}

/// Puts back in the queue the deliveries whose lease has run out: their worker died or hung.
pub fn release_expired_leases(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        deliveries::table
            .filter(deliveries::status.eq(Status::Sending.as_str()))
            .filter(deliveries::lease_until.lt(now)),
    )
    .set((
        deliveries::status.eq(Status::Queued.as_str()),
        deliveries::lease_until.eq(None::<NaiveDateTime>),
        deliveries::lease_owner.eq(None::<String>),
    ))
    .execute(conn)
}

/// Extends the leases `owner` holds: a live worker keeps its claimed rows however long a slow
/// server makes a batch last; only a dead worker's leases run out.
pub fn renew_leases(
    conn: &mut DbConnection,
    owner: &str,
    lease_until: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        deliveries::table
            .filter(deliveries::status.eq(Status::Sending.as_str()))
            .filter(deliveries::lease_owner.eq(owner)),
    )
    .set(deliveries::lease_until.eq(Some(lease_until)))
    .execute(conn)
}

/// Puts back in the queue, due at once, the deliveries `owner` still holds (a worker stopping).
pub fn release_owned(conn: &mut DbConnection, owner: &str) -> QueryResult<usize> {
    diesel::update(
        deliveries::table
            .filter(deliveries::status.eq(Status::Sending.as_str()))
            .filter(deliveries::lease_owner.eq(owner)),
    )
    .set((
        deliveries::status.eq(Status::Queued.as_str()),
        deliveries::lease_until.eq(None::<NaiveDateTime>),
        deliveries::lease_owner.eq(None::<String>),
        deliveries::attempts.eq(deliveries::attempts - 1),
    ))
    .execute(conn)
}

/// How one claimed delivery ended this time.
#[derive(Clone, Debug)]
pub enum Outcome {
    Sent,
    /// Try again at `at`.
    Retry {
        at: NaiveDateTime,
        error: String,
    },
    /// Given up: a 5xx reply, or too many attempts.
    Failed {
        error: String,
    },
    /// The address does not exist (5.1.x): the subscriber is suppressed too.
    Bounced {
        error: String,
    },
    /// Nothing to send any more (the subscriber left, the link was superseded).
    Skipped {
        reason: String,
    },
    /// Not tried: the worker is stopping. Back in the queue as it was, the attempt not counted.
    Released,
    /// Not tried: the recipient's domain asked us to slow down. Back in the queue until `at`,
    /// the attempt not counted.
    Deferred {
        at: NaiveDateTime,
        reason: String,
    },
}

/// Records the outcomes of a batch in one transaction: the sent ones, the great majority, in one
/// statement; the others one by one. Each update names the lease owner, so a worker whose lease
/// ran out (and whose rows another worker took) changes nothing.
pub fn record(
    conn: &mut DbConnection,
    owner: &str,
    outcomes: &[(Claimed, Outcome)],
) -> Result<(), db::DbError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        let sent: Vec<i64> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Sent))
            .map(|(c, _)| c.id)
            .collect();
        if !sent.is_empty() {
            diesel::update(
                deliveries::table
                    .filter(deliveries::id.eq_any(&sent))
                    .filter(deliveries::status.eq(Status::Sending.as_str()))
                    .filter(deliveries::lease_owner.eq(owner)),
            )
            .set((
                deliveries::status.eq(Status::Sent.as_str()),
                deliveries::finished_at.eq(Some(now)),
                deliveries::last_error.eq(None::<String>),
                deliveries::payload.eq(None::<String>),
                deliveries::lease_until.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
        }
        for (claimed, outcome) in outcomes {
            let row = deliveries::table
                .filter(deliveries::id.eq(claimed.id))
                .filter(deliveries::status.eq(Status::Sending.as_str()))
                .filter(deliveries::lease_owner.eq(owner));
            let ended = |status: Status, error: Option<&str>| {
                (
                    deliveries::status.eq(status.as_str()),
                    deliveries::finished_at.eq(Some(now)),
                    deliveries::last_error.eq(error.map(str::to_string)),
                    deliveries::payload.eq(None::<String>),
                    deliveries::lease_until.eq(None::<NaiveDateTime>),
                )
            };
            match outcome {
                Outcome::Sent => {}
                Outcome::Retry { at, error } => {
                    diesel::update(row)
                        .set((
                            deliveries::status.eq(Status::Queued.as_str()),
                            deliveries::next_attempt_at.eq(at),
                            deliveries::last_error.eq(error),
                            deliveries::lease_until.eq(None::<NaiveDateTime>),
                            deliveries::lease_owner.eq(None::<String>),
                        ))
                        .execute(conn)?;
                }
                Outcome::Failed { error } => {
                    diesel::update(row)
                        .set(ended(Status::Failed, Some(error)))
                        .execute(conn)?;
                }
                Outcome::Bounced { error } => {
                    let changed = diesel::update(row)
                        .set(ended(Status::Bounced, Some(error)))
                        .execute(conn)?;
                    if changed > 0 {
                        crate::subscriptions::suppress(
                            conn,
                            claimed.subscriber_id,
                            crate::subscriptions::Status::Bounced,
                            now,
                        )?;
                    }
                }
                Outcome::Released => {
                    diesel::update(row)
                        .set((
                            deliveries::status.eq(Status::Queued.as_str()),
                            deliveries::lease_until.eq(None::<NaiveDateTime>),
                            deliveries::lease_owner.eq(None::<String>),
                            deliveries::attempts.eq(deliveries::attempts - 1),
                        ))
                        .execute(conn)?;
                }
                Outcome::Deferred { at, reason } => {
                    diesel::update(row)
                        .set((
                            deliveries::status.eq(Status::Queued.as_str()),
                            deliveries::next_attempt_at.eq(at),
                            deliveries::last_error.eq(reason),
                            deliveries::lease_until.eq(None::<NaiveDateTime>),
                            deliveries::lease_owner.eq(None::<String>),
                            deliveries::attempts.eq(deliveries::attempts - 1),
                        ))
                        .execute(conn)?;
                }
                Outcome::Skipped { reason } => {
                    diesel::update(row)
                        .set(ended(Status::Skipped, Some(reason)))
                        .execute(conn)?;
                }
            }
        }
        Ok(())
    })
}

/// Counts of deliveries by status (for tests, health and the dashboard).
pub fn counts_by_status(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    deliveries::table
        .group_by(deliveries::status)
        .select((deliveries::status, diesel::dsl::count_star()))
        .load(conn)
}

/// Queues an issue for every confirmed subscriber (or, when `topics` is not empty, for those who
/// chose one of them or chose none, which means all), in one `INSERT … SELECT`. Queueing twice
/// adds nobody twice: (issue, subscriber) is unique. Returns how many were queued.
pub fn queue_issue(
    conn: &mut DbConnection,
    issue_id: i64,
    topics: &[String],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    use crate::db::schema::subscribers;
    use diesel::dsl::sql;
    let mut audience = subscribers::table
        .filter(subscribers::status.eq(crate::subscriptions::Status::Confirmed.as_str()))
        .into_boxed();
    if !topics.is_empty() {
        // Topics are stored comma-separated; ",a,b," LIKE "%,a,%" finds a whole name.
        let mut wanted = Box::new(subscribers::topics.eq(""))
            as Box<
                dyn BoxableExpression<
                    subscribers::table,
                    db::MultiBackend,
                    SqlType = diesel::sql_types::Bool,
                >,
            >;
        for topic in topics {
            let pattern = format!("%,{topic},%");
            wanted = Box::new(wanted.or(sql::<Text>("',' || topics || ','").like(pattern)));
        }
        audience = audience.filter(wanted);
    }
    queue_audience(conn, issue_id, audience, now)
}

/// Confirmed subscribers, as a query the audience filters narrow down.
type Audience<'a> = crate::db::schema::subscribers::BoxedQuery<'a, db::MultiBackend>;

/// Inserts one queued delivery of the issue for each subscriber of `audience`, in one statement.
fn queue_audience(
    conn: &mut DbConnection,
    issue_id: i64,
    audience: Audience<'_>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    use crate::db::schema::subscribers;
    use diesel::sql_types::{Integer, Nullable};
    let rows = audience.select((
        Kind::Issue.as_str().into_sql::<Text>(),
        Some(issue_id).into_sql::<Nullable<BigInt>>(),
        subscribers::id,
        PRIORITY_BULK.into_sql::<Integer>(),
        Status::Queued.as_str().into_sql::<Text>(),
        now.into_sql::<Timestamp>(),
        now.into_sql::<Timestamp>(),
    ));
    diesel::insert_into(deliveries::table)
        .values(rows)
        .into_columns((
            deliveries::kind,
            deliveries::issue_id,
            deliveries::subscriber_id,
            deliveries::priority,
            deliveries::status,
            deliveries::next_attempt_at,
            deliveries::created_at,
        ))
        .execute(conn)
}

/// Skips whatever is still queued for a subscriber (they left); returns how many.
pub fn skip_queued_for(
    conn: &mut DbConnection,
    subscriber_id: i64,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        deliveries::table
            .filter(deliveries::subscriber_id.eq(subscriber_id))
            .filter(deliveries::status.eq(Status::Queued.as_str())),
    )
    .set((
        deliveries::status.eq(Status::Skipped.as_str()),
        deliveries::last_error.eq(reason),
        deliveries::finished_at.eq(Some(db::now())),
        deliveries::payload.eq(None::<String>),
    ))
    .execute(conn)
}

/// For an erasure: skips what is queued and wipes every secret kept for the subscriber. The rows
/// stay (without personal data) so that an issue's counts still add up.
pub fn forget_subscriber(conn: &mut DbConnection, subscriber_id: i64) -> QueryResult<usize> {
    skip_queued_for(conn, subscriber_id, "subscriber erased")?;
    diesel::update(deliveries::table.filter(deliveries::subscriber_id.eq(subscriber_id)))
        .set((
            deliveries::payload.eq(None::<String>),
            deliveries::last_error.eq(None::<String>),
        ))
        .execute(conn)
}

/// Every message sent or queued to a subscriber, for their data export.
pub fn history_of(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> QueryResult<Vec<serde_json::Value>> {
    use crate::db::schema::issues;
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

/// Applies a bounce or complaint report (see [`crate::api::bounces`]): a hard bounce marks the
/// delivery `bounced` and suppresses the subscriber; a complaint marks the subscriber
/// `complained`; either skips whatever is still queued for them. Returns the subscriber's status
/// afterwards, or `None` when the report names nobody of ours.
pub fn apply_report(
    conn: &mut DbConnection,
    report: &crate::api::bounces::Report,
) -> QueryResult<Option<String>> {
    use crate::api::bounces::ReportKind;
    use crate::db::schema::subscribers;
    db::write_transaction(conn, |conn| {
        let by_delivery: Option<i64> = match report.delivery_id {
            Some(id) => deliveries::table
                .find(id)
                .select(deliveries::subscriber_id)
                .first(conn)
                .optional()?,
            None => None,
        };
        let subscriber_id = match (by_delivery, &report.recipient) {
            (Some(id), _) => Some(id),
            (None, Some(email)) => subscribers::table
                .filter(subscribers::email.eq(email))
                .select(subscribers::id)
                .first(conn)
                .optional()?,
            (None, None) => None,
        };
        let Some(subscriber_id) = subscriber_id else {
            return Ok(None);
        };
        let now = db::now();
        match report.kind {
            ReportKind::HardBounce => {
                if let (Some(id), Some(_)) = (report.delivery_id, by_delivery) {
                    let detail = format!(
                        "bounced later: {}",
                        report.status.as_deref().unwrap_or("5.0.0")
                    );
                    diesel::update(deliveries::table.find(id))
                        .set((
                            deliveries::status.eq(Status::Bounced.as_str()),
                            deliveries::last_error.eq(detail),
                            deliveries::finished_at.eq(Some(now)),
                        ))
                        .execute(conn)?;
                }
                crate::subscriptions::suppress(
                    conn,
                    subscriber_id,
                    crate::subscriptions::Status::Bounced,
                    now,
                )?;
                skip_queued_for(conn, subscriber_id, "address bounced")?;
            }
            ReportKind::Complaint => {
                crate::subscriptions::suppress(
                    conn,
                    subscriber_id,
                    crate::subscriptions::Status::Complained,
                    now,
                )?;
                skip_queued_for(conn, subscriber_id, "complaint")?;
            }
            ReportKind::SoftBounce => {}
        }
        subscribers::table
            .find(subscriber_id)
            .select(subscribers::status)
            .first(conn)
            .optional()
    })
}

/// Queues a digest issue for the confirmed subscribers whose chosen topics are exactly
/// `stored_topics` (the digest was made for that choice), in one `INSERT … SELECT`.
pub fn queue_issue_for_exact_topics(
    conn: &mut DbConnection,
    issue_id: i64,
    stored_topics: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    use crate::db::schema::subscribers;
    let audience = subscribers::table
        .filter(subscribers::status.eq(crate::subscriptions::Status::Confirmed.as_str()))
        .filter(subscribers::topics.eq(stored_topics))
        .into_boxed();
    queue_audience(conn, issue_id, audience, now)
}

/// Queues again an issue's deliveries that failed for good (the SMTP server kept refusing them),
/// from their first attempt; returns how many. Bounced and skipped ones stay as they are: those
/// addresses must not be mailed.
pub fn retry_failed(conn: &mut DbConnection, issue_id: i64) -> QueryResult<usize> {
    let now = db::now();
    diesel::update(
        deliveries::table
            .filter(deliveries::issue_id.eq(issue_id))
            .filter(deliveries::status.eq(Status::Failed.as_str())),
    )
    .set((
        deliveries::status.eq(Status::Queued.as_str()),
        deliveries::attempts.eq(0),
        deliveries::next_attempt_at.eq(now),
        deliveries::last_error.eq(None::<String>),
        deliveries::finished_at.eq(None::<NaiveDateTime>),
        deliveries::lease_until.eq(None::<NaiveDateTime>),
        deliveries::lease_owner.eq(None::<String>),
    ))
    .execute(conn)
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

/// An issue's recipients, optionally of one status, by address.
pub fn recipients_of_issue(
    conn: &mut DbConnection,
    issue_id: i64,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<IssueRecipient>> {
    use crate::db::schema::subscribers;
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
