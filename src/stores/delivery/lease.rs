//! Workers' side of the ledger: claiming due deliveries under a lease, renewing and releasing
//! leases, and recording how each attempt ended.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

use crate::foundation::db::schema::deliveries;
use crate::foundation::db::{self, DbConnection};
use crate::foundation::message_ids::MessageIds;

use super::kinds::Status;

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
/// The Message-ID is set here too, in the same transaction ([`MessageIds::message_id`], which
/// carries an HMAC of the delivery): the same for every attempt of a delivery, so a copy sent
/// twice (a crash mid-send) can be recognised as one, and a bounce quoting it proves which
/// delivery it is about.
pub fn claim(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
    ids: &MessageIds,
) -> QueryResult<Vec<Claimed>> {
    db::write_transaction(conn, |conn| {
        commit_without_flush(conn)?;
        let mut claimed = claim_rows(conn, owner, now, lease_until, limit)?;
        let mut unset: Vec<(i64, String)> = Vec::new();
        for row in &mut claimed {
            let message_id = ids.message_id(row.id);
            if row.message_id.as_deref() != Some(message_id.as_str()) {
                unset.push((row.id, message_id.clone()));
                row.message_id = Some(message_id);
            }
        }
        set_message_ids(conn, &unset)?;
        Ok(claimed)
    })
}

/// The claiming statement (see [`claim`]), inside the caller's transaction.
fn claim_rows(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Claimed>> {
    const RETURNING: &str =
        "RETURNING id, kind, issue_id, subscriber_id, attempts, payload, message_id";
    match conn {
        DbConnection::Pg(pg) => diesel::sql_query(format!(
            "UPDATE deliveries SET status = 'sending', lease_until = $1, lease_owner = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= $3 \
             ORDER BY priority, next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) {RETURNING}"
        ))
        .bind::<Timestamp, _>(lease_until)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .load(pg),
        DbConnection::Sqlite(lite) => diesel::sql_query(format!(
            "UPDATE deliveries SET status = 'sending', lease_until = ?, lease_owner = ?, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= ? \
             ORDER BY priority, next_attempt_at, id LIMIT ?) {RETURNING}"
        ))
        .bind::<Timestamp, _>(lease_until)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .load(lite),
    }
}

/// Stores the Message-IDs of deliveries claimed for the first time: one statement on
/// PostgreSQL, one prepared update a row on SQLite (inside the claim's transaction either way).
fn set_message_ids(conn: &mut DbConnection, rows: &[(i64, String)]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    match conn {
        DbConnection::Pg(pg) => {
            let (ids, message_ids): (Vec<i64>, Vec<String>) = rows.iter().cloned().unzip();
            diesel::sql_query(
                "UPDATE deliveries SET message_id = v.message_id \
                 FROM unnest($1, $2) AS v(id, message_id) WHERE deliveries.id = v.id",
            )
            .bind::<Array<BigInt>, _>(ids)
            .bind::<Array<Text>, _>(message_ids)
            .execute(pg)?;
        }
        DbConnection::Sqlite(_) => {
            for (id, message_id) in rows {
                diesel::update(deliveries::table.filter(deliveries::id.eq(id)))
                    .set(deliveries::message_id.eq(message_id))
                    .execute(conn)?;
            }
        }
    }
    Ok(())
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
/// ran out (and whose rows another worker took) changes nothing. Returns the subscribers whose
/// address bounced, for the caller to suppress in the same transaction (the ledger does not
/// change subscribers).
pub fn record(
    conn: &mut DbConnection,
    owner: &str,
    outcomes: &[(Claimed, Outcome)],
) -> Result<Vec<i64>, db::DbError> {
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
            .set(ended(Status::Sent, None, now))
            .execute(conn)?;
        }
        let mut bounced = Vec::new();
        for (claimed, outcome) in outcomes {
            let changed = record_one(conn, owner, claimed.id, outcome, now)?;
            if changed > 0 && matches!(outcome, Outcome::Bounced { .. }) {
                bounced.push(claimed.subscriber_id);
            }
        }
        Ok(bounced)
    })
}

/// The columns of a delivery that has ended: its status, when, the last error, and no payload or
/// lease any more.
#[allow(clippy::type_complexity)]
fn ended(
    status: Status,
    error: Option<&str>,
    now: NaiveDateTime,
) -> (
    diesel::dsl::Eq<deliveries::status, &'static str>,
    diesel::dsl::Eq<deliveries::finished_at, Option<NaiveDateTime>>,
    diesel::dsl::Eq<deliveries::last_error, Option<String>>,
    diesel::dsl::Eq<deliveries::payload, Option<String>>,
    diesel::dsl::Eq<deliveries::lease_until, Option<NaiveDateTime>>,
) {
    (
        deliveries::status.eq(status.as_str()),
        deliveries::finished_at.eq(Some(now)),
        deliveries::last_error.eq(error.map(str::to_string)),
        deliveries::payload.eq(None::<String>),
        deliveries::lease_until.eq(None::<NaiveDateTime>),
    )
}

/// Records one outcome other than `Sent` (those are recorded together); returns the rows changed
/// (0 when the lease was lost).
fn record_one(
    conn: &mut DbConnection,
    owner: &str,
    id: i64,
    outcome: &Outcome,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let row = deliveries::table
        .filter(deliveries::id.eq(id))
        .filter(deliveries::status.eq(Status::Sending.as_str()))
        .filter(deliveries::lease_owner.eq(owner));
    match outcome {
        Outcome::Sent => Ok(0),
        Outcome::Retry { at, error } => diesel::update(row)
            .set((
                deliveries::status.eq(Status::Queued.as_str()),
                deliveries::next_attempt_at.eq(at),
                deliveries::last_error.eq(error),
                deliveries::lease_until.eq(None::<NaiveDateTime>),
                deliveries::lease_owner.eq(None::<String>),
            ))
            .execute(conn),
        Outcome::Failed { error } => diesel::update(row)
            .set(ended(Status::Failed, Some(error), now))
            .execute(conn),
        Outcome::Bounced { error } => diesel::update(row)
            .set(ended(Status::Bounced, Some(error), now))
            .execute(conn),
        Outcome::Skipped { reason } => diesel::update(row)
            .set(ended(Status::Skipped, Some(reason), now))
            .execute(conn),
        Outcome::Released => diesel::update(row)
            .set((
                deliveries::status.eq(Status::Queued.as_str()),
                deliveries::lease_until.eq(None::<NaiveDateTime>),
                deliveries::lease_owner.eq(None::<String>),
                deliveries::attempts.eq(deliveries::attempts - 1),
            ))
            .execute(conn),
        Outcome::Deferred { at, reason } => diesel::update(row)
            .set((
                deliveries::status.eq(Status::Queued.as_str()),
                deliveries::next_attempt_at.eq(at),
                deliveries::last_error.eq(reason),
                deliveries::lease_until.eq(None::<NaiveDateTime>),
                deliveries::lease_owner.eq(None::<String>),
                deliveries::attempts.eq(deliveries::attempts - 1),
            ))
            .execute(conn),
    }
}

/// Inside a transaction of the delivery worker's own (a claim, outcomes recorded): on PostgreSQL
/// the commit does not wait for the WAL to reach the disk (`synchronous_commit = off`, this
/// transaction only). A worker commits hundreds of times a second; waiting for a flush each time
/// would bound it by the disk, not the wire. What it risks is bounded and never a lost message:
/// a crash of the database server itself (not of a worker) can forget the last fraction of a
/// second of claims and outcomes, whose messages then go out once more when their leases run
/// out. SQLite: nothing to do (WAL with `synchronous = NORMAL` already commits without a flush).
pub fn commit_without_flush(conn: &mut DbConnection) -> QueryResult<()> {
    if let DbConnection::Pg(pg) = conn {
        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(pg)?;
    }
    Ok(())
}
