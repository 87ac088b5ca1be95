//! Workers' side of the webhook outbox: claiming due deliveries under a lease, and recording how
//! each attempt went. The same scheme as the email ledger (`stores::delivery`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use super::events::Status;
use crate::foundation::db::schema::{webhook_deliveries, webhook_endpoints};
use crate::foundation::db::{self, DbConnection, DbError};

/// A webhook delivery a worker holds the lease of.
#[derive(Clone, Debug, QueryableByName)]
#[diesel(table_name = webhook_deliveries)]
pub struct Claimed {
    pub id: i64,
    pub event_id: String,
    pub endpoint_id: i64,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// The body; `None` when it was wiped (its subscriber erased) after the claim.
    pub payload: Option<String>,
    pub created_at: NaiveDateTime,
}

/// Claims up to `limit` due deliveries of enabled endpoints for `owner` until `lease_until`,
/// oldest first.
///
/// PostgreSQL: `FOR UPDATE SKIP LOCKED` lets several workers share the outbox, each passing over
/// the rows another is claiming. SQLite: one `BEGIN IMMEDIATE` transaction holds the database's
/// single write lock, so two claims never overlap. The attempt is counted at the claim, so a
/// worker killed mid-post still uses one up.
pub fn claim(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Claimed>> {
    const RETURNING: &str = "RETURNING id, event_id, endpoint_id, attempts, payload, created_at";
    match conn {
        DbConnection::Pg(pg) => diesel::sql_query(format!(
            "UPDATE webhook_deliveries SET status = 'sending', lease_until = $1, lease_owner = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d WHERE d.status = 'queued' \
             AND d.next_attempt_at <= $3 \
             AND d.endpoint_id IN (SELECT e.id FROM webhook_endpoints e WHERE e.enabled) \
             ORDER BY d.next_attempt_at, d.id LIMIT $4 FOR UPDATE OF d SKIP LOCKED) {RETURNING}"
        ))
        .bind::<Timestamp, _>(lease_until)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .load(pg),
        DbConnection::Sqlite(_) => db::write_transaction(conn, |conn| {
            let DbConnection::Sqlite(lite) = conn else {
                unreachable!("matched as SQLite above")
            };
            diesel::sql_query(format!(
                "UPDATE webhook_deliveries SET status = 'sending', lease_until = ?, lease_owner = ?, \
                 attempts = attempts + 1 \
                 WHERE id IN (SELECT d.id FROM webhook_deliveries d WHERE d.status = 'queued' \
                 AND d.next_attempt_at <= ? \
                 AND d.endpoint_id IN (SELECT e.id FROM webhook_endpoints e WHERE e.enabled) \
                 ORDER BY d.next_attempt_at, d.id LIMIT ?) {RETURNING}"
            ))
            .bind::<Timestamp, _>(lease_until)
            .bind::<Text, _>(owner)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(limit)
            .load(lite)
        }),
    }
}

/// Where a claimed delivery goes, and the secret that signs it.
#[derive(Clone, Debug, Queryable)]
pub struct Target {
    pub id: i64,
    pub url: String,
    pub secret: String,
}

/// The endpoints with these ids.
pub fn targets(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Target>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::id.eq_any(ids))
        .select((
            webhook_endpoints::id,
            webhook_endpoints::url,
            webhook_endpoints::secret,
        ))
        .load(conn)
}

/// Puts back in the queue the deliveries whose lease has run out: their worker died or hung.
pub fn release_expired_leases(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::status.eq(Status::Sending.as_str()))
            .filter(webhook_deliveries::lease_until.lt(now)),
    )
    .set((
        webhook_deliveries::status.eq(Status::Queued.as_str()),
        webhook_deliveries::lease_until.eq(None::<NaiveDateTime>),
        webhook_deliveries::lease_owner.eq(None::<String>),
    ))
    .execute(conn)
}

/// Puts back in the queue, due at once and the attempt not counted, what `owner` still holds
/// (a worker stopping).
pub fn release_owned(conn: &mut DbConnection, owner: &str) -> QueryResult<usize> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::status.eq(Status::Sending.as_str()))
            .filter(webhook_deliveries::lease_owner.eq(owner)),
    )
    .set((
        webhook_deliveries::status.eq(Status::Queued.as_str()),
        webhook_deliveries::lease_until.eq(None::<NaiveDateTime>),
        webhook_deliveries::lease_owner.eq(None::<String>),
        webhook_deliveries::attempts.eq(webhook_deliveries::attempts - 1),
    ))
    .execute(conn)
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this 2xx status.
    Delivered { status: u16 },
    /// Not delivered; try again at `at`. `status` when the endpoint answered.
    Retry {
        at: NaiveDateTime,
        status: Option<u16>,
        error: String,
    },
    /// Not delivered, and no more attempts.
    Failed { status: Option<u16>, error: String },
    /// Nothing to send any more (the body was wiped).
    Skipped { reason: String },
}

/// Records how each attempt of a batch ended, in one transaction. Each update names the lease
/// owner, so a worker whose lease ran out (and whose rows another took) changes nothing. A
/// delivery that has ended keeps no body.
pub fn record(
    conn: &mut DbConnection,
    owner: &str,
    outcomes: &[(Claimed, Outcome)],
) -> Result<(), DbError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        for (claimed, outcome) in outcomes {
            let row = webhook_deliveries::table
                .filter(webhook_deliveries::id.eq(claimed.id))
                .filter(webhook_deliveries::status.eq(Status::Sending.as_str()))
                .filter(webhook_deliveries::lease_owner.eq(owner));
            let (status, http, error, next) = match outcome {
                Outcome::Delivered { status } => (Status::Delivered, Some(*status), None, None),
                Outcome::Retry { at, status, error } => {
                    (Status::Queued, *status, Some(error), Some(*at))
                }
                Outcome::Failed { status, error } => (Status::Failed, *status, Some(error), None),
                Outcome::Skipped { reason } => (Status::Skipped, None, Some(reason), None),
            };
            let attempt = (
                webhook_deliveries::status.eq(status.as_str()),
                webhook_deliveries::last_attempt_at.eq(Some(now)),
                webhook_deliveries::last_status.eq(http.map(i32::from)),
                webhook_deliveries::last_error.eq(error),
                webhook_deliveries::lease_until.eq(None::<NaiveDateTime>),
                webhook_deliveries::lease_owner.eq(None::<String>),
            );
            match next {
                Some(at) => diesel::update(row)
                    .set((attempt, webhook_deliveries::next_attempt_at.eq(at)))
                    .execute(conn)?,
                None => diesel::update(row)
                    .set((
                        attempt,
                        webhook_deliveries::finished_at.eq(Some(now)),
                        webhook_deliveries::payload.eq(None::<String>),
                    ))
                    .execute(conn)?,
            };
        }
        Ok(())
    })
}
