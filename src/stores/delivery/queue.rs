//! Putting messages in the ledger: a confirmation, a welcome, an issue to its audience; and taking
//! them out again (a subscriber who left, an erasure, a retry of the failed).

use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::AstPass;
use diesel::sql_types::{BigInt, Integer, Text, Timestamp};
use diesel::IntoSql;

use super::kinds::{Kind, Status, PRIORITY_BULK, PRIORITY_CONFIRMATION};
use crate::foundation::db::schema::deliveries;
use crate::foundation::db::{self, DbConnection};

/// Queues the confirmation email of a sign-up. `payload` is the nonce the worker derives the
/// link's token from with the secret key (never the token itself); it is wiped from the row once
/// the delivery has ended.
pub fn queue_confirmation(
    conn: &mut DbConnection,
    subscriber_id: i64,
    payload: &str,
    now: NaiveDateTime,
) -> QueryResult<i64> {
    queue_one_time_link(conn, Kind::Confirmation, subscriber_id, payload, now)
}

/// Queues a reader's data link (download or erase, asked for on the preferences page). As for a
/// confirmation, `payload` is a nonce, not the link's token.
pub fn queue_data_link(
    conn: &mut DbConnection,
    subscriber_id: i64,
    payload: &str,
    now: NaiveDateTime,
) -> QueryResult<i64> {
    queue_one_time_link(conn, Kind::DataLink, subscriber_id, payload, now)
}

/// A message carrying a one-time link, ahead of bulk sends: the reader is waiting for it.
fn queue_one_time_link(
    conn: &mut DbConnection,
    kind: Kind,
    subscriber_id: i64,
    payload: &str,
    now: NaiveDateTime,
) -> QueryResult<i64> {
    diesel::insert_into(deliveries::table)
        .values((
            deliveries::kind.eq(kind.as_str()),
            deliveries::subscriber_id.eq(subscriber_id),
            deliveries::priority.eq(PRIORITY_CONFIRMATION),
            deliveries::status.eq(Status::Queued.as_str()),
            deliveries::next_attempt_at.eq(now),
            deliveries::payload.eq(payload),
            deliveries::created_at.eq(now),
        ))
        .returning(deliveries::id)
        .get_result(conn)
}

/// Queues a re-permission message to each of `subscriber_ids` (a campaign's readers), as bulk
/// mail; `payload` names the campaign. Returns how many were queued.
pub fn queue_repermission(
    conn: &mut DbConnection,
    subscriber_ids: &[i64],
    payload: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let mut queued = 0;
    for chunk in subscriber_ids.chunks(1000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|id| {
                (
                    deliveries::kind.eq(Kind::Repermission.as_str()),
                    deliveries::subscriber_id.eq(*id),
                    deliveries::priority.eq(PRIORITY_BULK),
                    deliveries::status.eq(Status::Queued.as_str()),
                    deliveries::next_attempt_at.eq(now),
                    deliveries::payload.eq(payload),
                    deliveries::created_at.eq(now),
                )
            })
            .collect();
        let insert = diesel::insert_into(deliveries::table).values(rows);
        queued += match conn {
            DbConnection::Pg(pg) => insert.execute(pg)?,
            DbConnection::Sqlite(lite) => insert.execute(lite)?,
        };
    }
    Ok(queued)
}

/// Queues the welcome email of a reader who has just confirmed, unless one was queued for them
/// before (confirming again after leaving does not welcome them twice); `true` when queued.
/// Called inside the confirmation's transaction, after the subscriber's row was updated: on
/// PostgreSQL that row's lock makes a second confirmation at the same moment wait, and then see
/// this one's welcome.
pub fn queue_welcome(
    conn: &mut DbConnection,
    subscriber_id: i64,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    queue_notice(conn, subscriber_id, Kind::Welcome, None, now)
}

/// Queues the note to a confirmed address that signed up again (its preferences link), unless
/// one was queued in the last day: a form posted over and over sends one a day at most.
/// `true` when queued.
pub fn queue_already_subscribed(
    conn: &mut DbConnection,
    subscriber_id: i64,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let since = now - chrono::Duration::days(1);
    queue_notice(
        conn,
        subscriber_id,
        Kind::AlreadySubscribed,
        Some(since),
        now,
    )
}

/// Queues a message of `kind` to one subscriber unless one of that kind was queued for them
/// (since `since`, or ever).
fn queue_notice(
    conn: &mut DbConnection,
    subscriber_id: i64,
    kind: Kind,
    since: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let mut earlier = deliveries::table
        .filter(deliveries::subscriber_id.eq(subscriber_id))
        .filter(deliveries::kind.eq(kind.as_str()))
        .select(deliveries::id)
        .into_boxed::<db::MultiBackend>();
    if let Some(since) = since {
        earlier = earlier.filter(deliveries::created_at.gt(since));
    }
    if earlier.first::<i64>(conn).optional()?.is_some() {
        return Ok(false);
    }
    diesel::insert_into(deliveries::table)
        .values((
            deliveries::kind.eq(kind.as_str()),
            deliveries::subscriber_id.eq(subscriber_id),
            // The reader is waiting for it, as for a confirmation.
            deliveries::priority.eq(PRIORITY_CONFIRMATION),
            deliveries::status.eq(Status::Queued.as_str()),
            deliveries::next_attempt_at.eq(now),
            deliveries::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

/// The confirmation's row as the last part of a PostgreSQL statement that made the subscriber in
/// the CTE `subscribers_cte` (a column `id`): `INSERT INTO deliveries … SELECT … FROM
/// subscribers_cte`. The same row as [`queue_confirmation`]'s, so a sign-up can be one statement
/// (one round trip) while only the ledger writes its table.
pub fn push_confirmation_insert<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
    subscribers_cte: &'static str,
    payload: &'b str,
    now: &'b NaiveDateTime,
) -> QueryResult<()> {
    out.push_sql(
        "INSERT INTO deliveries (kind, subscriber_id, priority, status, next_attempt_at, \
         payload, created_at) SELECT ",
    );
    out.push_bind_param::<Text, _>(Kind::Confirmation.as_str())?;
    out.push_sql(", id, ");
    out.push_bind_param::<Integer, _>(&PRIORITY_CONFIRMATION)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, _>(Status::Queued.as_str())?;
    out.push_sql(", ");
    out.push_bind_param::<Timestamp, _>(now)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, _>(payload)?;
    out.push_sql(", ");
    out.push_bind_param::<Timestamp, _>(now)?;
    out.push_sql(" FROM ");
    out.push_sql(subscribers_cte);
    Ok(())
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
    use crate::foundation::db::schema::subscribers;
    use diesel::dsl::sql;
    let mut audience = subscribers::table
        .filter(
            subscribers::status.eq(crate::foundation::domain::SubscriberStatus::Confirmed.as_str()),
        )
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
    let queued = queue_audience(conn, issue_id, audience, now)?;
    analyse_if_large(conn, queued)?;
    Ok(queued)
}

/// Confirmed subscribers, as a query the audience filters narrow down.
type Audience<'a> = crate::foundation::db::schema::subscribers::BoxedQuery<'a, db::MultiBackend>;

/// Inserts one queued delivery of the issue for each subscriber of `audience`, in one statement.
fn queue_audience(
    conn: &mut DbConnection,
    issue_id: i64,
    audience: Audience<'_>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    use crate::foundation::db::schema::subscribers;
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
    let queued = diesel::insert_into(deliveries::table)
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
        .execute(conn)?;
    Ok(queued)
}

/// Copies queued in one transaction from which the ledger's statistics are refreshed at once.
const ANALYZE_FROM: usize = 50_000;

/// After `queued` copies were queued in the caller's transaction: refreshes the ledger's
/// statistics (see [`refresh_statistics`]) when they are [`ANALYZE_FROM`] or more. Called once
/// per queueing transaction: by [`queue_issue`] itself, and by a digest after all its audiences
/// ([`queue_issue_for_exact_topics`] does not), whose million copies may come in groups of
/// thousands, none large alone.
pub fn analyse_if_large(conn: &mut DbConnection, queued: usize) -> QueryResult<()> {
    if queued >= ANALYZE_FROM {
        refresh_statistics(conn)?;
    }
    Ok(())
}

/// Refreshes PostgreSQL's statistics of the ledger, inside the queueing transaction (its own
/// rows count; the statistics commit or roll back with them). Right after an issue is queued to
/// a million readers the statistics still describe the ledger without them until autovacuum
/// analyses it, a minute or more later; meanwhile the planner, expecting thousands of copies per
/// reader, read a reader's history by scanning the whole ledger backwards (300 ms) and an issue's
/// recipients by sorting all of them (800 ms), against 2 ms and under 1 ms once analysed. The
/// ANALYZE samples 30,000 rows whatever the size: about 0.3 s at a million copies.
fn refresh_statistics(conn: &mut DbConnection) -> QueryResult<()> {
    if let DbConnection::Pg(pg) = conn {
        diesel::sql_query("ANALYZE deliveries").execute(pg)?;
    }
    Ok(())
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

/// Queues a digest issue for the confirmed subscribers whose chosen topics are exactly
/// `stored_topics` (the digest was made for that choice), in one `INSERT … SELECT`. The caller
/// calls [`analyse_if_large`] once with the digest's total.
pub fn queue_issue_for_exact_topics(
    conn: &mut DbConnection,
    issue_id: i64,
    stored_topics: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    use crate::foundation::db::schema::subscribers;
    let audience = subscribers::table
        .filter(
            subscribers::status.eq(crate::foundation::domain::SubscriberStatus::Confirmed.as_str()),
        )
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

/// Marks a delivery `bounced` after the fact: the MTA accepted it, then a bounce report came.
pub fn mark_bounced(
    conn: &mut DbConnection,
    id: i64,
    detail: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(deliveries::table.find(id))
        .set((
            deliveries::status.eq(Status::Bounced.as_str()),
            deliveries::last_error.eq(detail),
            deliveries::finished_at.eq(Some(now)),
        ))
        .execute(conn)
}
