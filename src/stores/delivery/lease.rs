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
    /// Where the row stood in the queue's order (see [`DueKey`]).
    pub priority: i32,
    pub next_attempt_at: NaiveDateTime,
}

impl Claimed {
    /// The row's place in the queue's order.
    pub fn due_key(&self) -> DueKey {
        DueKey {
            priority: self.priority,
            next_attempt_at: self.next_attempt_at,
            id: self.id,
        }
    }
}

/// A place in the queue's order (priority, due time, id): a claim given one reads the queue from
/// just after it.
///
/// Why: on PostgreSQL the claim reads the partial index `deliveries_due` in order, and the
/// entries of rows already claimed stay in it, dead, until vacuum removes them. A million-copy
/// send walked past every copy sent so far on each claim: 0.1 ms at the start, 15 ms half-way
/// (2,500 index pages after 500,000 copies). Claiming from after the last batch's last row skips
/// them. What such a claim does not see: a confirmation (ahead of bulk mail), which
/// [`ClaimFrom::AheadThenAfter`] looks for, and a row put back in the queue behind that place (a
/// lease run out, a worker stopping), which a claim from the start finds (see
/// `processes::worker`'s schedule for how often each is made).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueKey {
    pub priority: i32,
    pub next_attempt_at: NaiveDateTime,
    pub id: i64,
}

/// Where a claim reads the queue from (PostgreSQL; SQLite always reads it from its start, as it
/// removes an index entry with its row's change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimFrom {
    /// From its start: walks the index entries of every row claimed since vacuum last came.
    Start,
    /// From just after a place.
    After(DueKey),
    /// The rows of a higher priority than the place's (confirmations queued during a bulk
    /// send), read from the start of the queue, whose part before the place's priority holds
    /// few rows; then, for the rest of the batch, from just after the place.
    AheadThenAfter(DueKey),
}

/// Claims up to `limit` due deliveries for `owner` until `lease_until`, confirmations first.
///
/// PostgreSQL: `FOR UPDATE SKIP LOCKED` lets several workers claim from one queue at once, each
/// passing over the rows another is claiming. SQLite: the claim runs in one `BEGIN IMMEDIATE`
/// transaction, which holds the database's single write lock, so two claims never overlap.
/// The attempt is counted at the claim, so a worker killed mid-send still uses up an attempt.
/// Each claimed delivery comes with its Message-ID ([`MessageIds::message_id`], which carries an
/// HMAC of the delivery): the same for every attempt of a delivery, so a copy sent twice (a crash
/// mid-send) can be recognised as one, and a bounce quoting it proves which delivery it is
/// about. Being a function of the delivery's id, it is stored only with the outcome of an
/// attempt that may have reached the server (sent, retried, failed, bounced: [`record`]), in the
/// row version written then anyway: storing it at the claim wrote one more version of every row.
pub fn claim(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
    from: ClaimFrom,
    ids: &MessageIds,
) -> QueryResult<Vec<Claimed>> {
    let from = match conn {
        DbConnection::Pg(_) => from,
        DbConnection::Sqlite(_) => ClaimFrom::Start,
    };
    let mut claimed = db::write_transaction(conn, |conn| {
        claim_settings(conn)?;
        let window = Window { now, lease_until };
        match from {
            ClaimFrom::Start => claim_rows(conn, owner, window, limit, None, None),
            ClaimFrom::After(key) => claim_rows(conn, owner, window, limit, Some(key), None),
            ClaimFrom::AheadThenAfter(key) => {
                let mut rows = claim_rows(conn, owner, window, limit, None, Some(key.priority))?;
                let rest = limit - rows.len() as i64;
                if rest > 0 {
                    rows.extend(claim_rows(conn, owner, window, rest, Some(key), None)?);
                }
                Ok(rows)
            }
        }
    })?;
    for row in &mut claimed {
        row.message_id = Some(ids.message_id(row.id));
    }
    Ok(claimed)
}

/// A claim's time and the end of its lease.
#[derive(Clone, Copy)]
struct Window {
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
}

/// The claiming statement (see [`claim`]), inside the caller's transaction: the rows after
/// `after` and, given `below`, of a priority under it. Both are used on PostgreSQL only.
fn claim_rows(
    conn: &mut DbConnection,
    owner: &str,
    Window { now, lease_until }: Window,
    limit: i64,
    after: Option<DueKey>,
    below: Option<i32>,
) -> QueryResult<Vec<Claimed>> {
    const RETURNING: &str = "RETURNING id, kind, issue_id, subscriber_id, attempts, payload, \
         message_id, priority, next_attempt_at";
    // The floor (-1, now, 0) is before every row: priorities are not negative.
    let floor = after.unwrap_or(DueKey {
        priority: -1,
        next_attempt_at: now,
        id: 0,
    });
    match conn {
        DbConnection::Pg(pg) => diesel::sql_query(format!(
            "UPDATE deliveries SET status = 'sending', lease_until = $1, lease_owner = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= $3 \
             AND (priority, next_attempt_at, id) > ($5, $6, $7) AND priority < $8 \
             ORDER BY priority, next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) {RETURNING}"
        ))
        .bind::<Timestamp, _>(lease_until)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .bind::<diesel::sql_types::Integer, _>(floor.priority)
        .bind::<Timestamp, _>(floor.next_attempt_at)
        .bind::<BigInt, _>(floor.id)
        .bind::<diesel::sql_types::Integer, _>(below.unwrap_or(i32::MAX))
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

/// Puts back in the queue the deliveries whose lease has run out: their worker died or hung.
///
/// On PostgreSQL a row another transaction holds is passed over (`SKIP LOCKED`): it is being
/// written by its worker's recorder or claimed away at that moment, and waiting for it while
/// holding the others could deadlock with a recorder taking the same rows in another order.
pub fn release_expired_leases(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    if let DbConnection::Pg(pg) = conn {
        return diesel::sql_query(
            "UPDATE deliveries SET status = 'queued', lease_until = NULL, lease_owner = NULL \
             WHERE id IN (SELECT id FROM deliveries WHERE status = 'sending' AND lease_until < $1 \
             FOR UPDATE SKIP LOCKED)",
        )
        .bind::<Timestamp, _>(now)
        .execute(pg);
    }
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
///
/// On PostgreSQL the rows the worker's recorder is writing at that moment are passed over (`SKIP
/// LOCKED`; their delivery is ending, and the next renewal, a third of a lease later, takes any
/// whose write failed). Waiting for them instead deadlocked with the recorder, which locks the
/// same rows in another order: seen once in a million-copy send, the recorder's write lost.
pub fn renew_leases(
    conn: &mut DbConnection,
    owner: &str,
    lease_until: NaiveDateTime,
) -> QueryResult<usize> {
    if let DbConnection::Pg(pg) = conn {
        return diesel::sql_query(
            "UPDATE deliveries SET lease_until = $1 WHERE id IN (SELECT id FROM deliveries \
             WHERE status = 'sending' AND lease_owner = $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind::<Timestamp, _>(lease_until)
        .bind::<Text, _>(owner)
        .execute(pg);
    }
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
/// statement on PostgreSQL (one prepared update a row on SQLite); the others one by one. Each
/// outcome of an attempt that may have reached the server (sent, retried, failed, bounced)
/// stores the delivery's Message-ID. Each update names the lease owner, so a worker whose lease
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
        let sent: Vec<&Claimed> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Sent))
            .map(|(c, _)| c)
            .collect();
        record_sent(conn, owner, &sent, now)?;
        let mut bounced = Vec::new();
        for (claimed, outcome) in outcomes {
            let changed = record_one(conn, owner, claimed, outcome, now)?;
            if changed > 0 && matches!(outcome, Outcome::Bounced { .. }) {
                bounced.push(claimed.subscriber_id);
            }
        }
        Ok(bounced)
    })
}

/// Records a group of outcomes that are all [`Outcome::Sent`] (nearly every group a busy worker
/// writes) in one statement, which is its own transaction, committed without waiting for a flush
/// (see [`commit_without_flush`]): one round trip to the database instead of six (begin, the
/// setting, a savepoint, the update, its release, commit), which took a quarter of the
/// database's time in a 100,000-copy send. Returns `false`, having written nothing, when the
/// group holds another outcome, or on SQLite: the caller then uses [`record`].
pub fn record_only_sent(
    conn: &mut DbConnection,
    owner: &str,
    outcomes: &[(Claimed, Outcome)],
) -> QueryResult<bool> {
    let all_sent = outcomes.iter().all(|(_, o)| matches!(o, Outcome::Sent));
    if !matches!(conn, DbConnection::Pg(_)) || outcomes.is_empty() || !all_sent {
        return Ok(false);
    }
    let sent: Vec<&Claimed> = outcomes.iter().map(|(c, _)| c).collect();
    record_sent(conn, owner, &sent, db::now())?;
    Ok(true)
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

/// Records the sent deliveries and their Message-IDs: one statement on PostgreSQL, one prepared
/// update a row on SQLite.
fn record_sent(
    conn: &mut DbConnection,
    owner: &str,
    sent: &[&Claimed],
    now: NaiveDateTime,
) -> QueryResult<()> {
    if sent.is_empty() {
        return Ok(());
    }
    match conn {
        DbConnection::Pg(pg) => {
            RecordSent {
                now,
                ids: sent.iter().map(|c| c.id).collect(),
                message_ids: sent.iter().map(|c| c.message_id.clone()).collect(),
                owner,
            }
            .execute(pg)?;
        }
        DbConnection::Sqlite(_) => {
            for claimed in sent {
                diesel::update(
                    deliveries::table
                        .filter(deliveries::id.eq(claimed.id))
                        .filter(deliveries::status.eq(Status::Sending.as_str()))
                        .filter(deliveries::lease_owner.eq(owner)),
                )
                .set((
                    ended(Status::Sent, None, now),
                    deliveries::message_id.eq(claimed.message_id.as_deref()),
                ))
                .execute(conn)?;
            }
        }
    }
    Ok(())
}

/// The statement of [`record_sent`] and [`record_only_sent`] on PostgreSQL: the columns of
/// [`ended`] and each row's Message-ID, for the rows this worker still holds. A query type of its own so that diesel
/// prepares it once per connection (a `sql_query` is parsed and planned each time).
struct RecordSent<'a> {
    now: NaiveDateTime,
    ids: Vec<i64>,
    message_ids: Vec<Option<String>>,
    owner: &'a str,
}

impl diesel::query_builder::QueryId for RecordSent<'_> {
    type QueryId = RecordSent<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RecordSent<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        // The one-row `flush` sets `synchronous_commit` off for the statement's transaction
        // (its own, in `record_only_sent`; the caller's, already so, in `record`): evaluated
        // once, before the commit that reads it.
        out.push_sql(
            "WITH flush AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) \
             UPDATE deliveries SET status = 'sent', finished_at = ",
        );
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(
            ", last_error = NULL, payload = NULL, lease_until = NULL, message_id = v.message_id \
             FROM flush, unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<diesel::sql_types::Nullable<Text>>, _>(&self.message_ids)?;
        out.push_sql(
            ") AS v(id, message_id) WHERE deliveries.id = v.id \
             AND deliveries.status = 'sending' AND deliveries.lease_owner = ",
        );
        out.push_bind_param::<Text, _>(self.owner)
    }
}

impl diesel::RunQueryDsl<diesel::PgConnection> for RecordSent<'_> {}

/// Records one outcome other than `Sent` (those are recorded together); returns the rows changed
/// (0 when the lease was lost).
fn record_one(
    conn: &mut DbConnection,
    owner: &str,
    claimed: &Claimed,
    outcome: &Outcome,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    // What may have reached the server keeps the Message-ID it carried.
    let message_id = deliveries::message_id.eq(claimed.message_id.as_deref());
    let row = deliveries::table
        .filter(deliveries::id.eq(claimed.id))
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
                message_id,
            ))
            .execute(conn),
        Outcome::Failed { error } => diesel::update(row)
            .set((ended(Status::Failed, Some(error), now), message_id))
            .execute(conn),
        Outcome::Bounced { error } => diesel::update(row)
            .set((ended(Status::Bounced, Some(error), now), message_id))
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
    set_locally(conn, &[("synchronous_commit", "off")])
}

/// The claim's transaction on PostgreSQL: the commit does not wait for a flush (see
/// [`commit_without_flush`]), and the claim reads the queue in the order of its index
/// (`deliveries_due`) and stops after `limit` rows. A queue table's statistics are always out of
/// date (it can grow from nothing to a million rows between two analyses), and with the row count
/// underestimated the planner chose to fetch every due row and sort them, tens of milliseconds a
/// claim with 20,000 queued confirmations and seconds with a million queued copies. Sorts and
/// bitmap scans are ruled out for this transaction only, whose one statement is the claim: a
/// statement added to it would inherit these settings.
fn claim_settings(conn: &mut DbConnection) -> QueryResult<()> {
    set_locally(
        conn,
        &[
            ("synchronous_commit", "off"),
            ("enable_sort", "off"),
            ("enable_bitmapscan", "off"),
        ],
    )
}

/// `SET LOCAL` of each setting, in one statement (PostgreSQL; nothing on SQLite).
fn set_locally(conn: &mut DbConnection, settings: &[(&str, &str)]) -> QueryResult<()> {
    if let DbConnection::Pg(pg) = conn {
        let calls: Vec<String> = settings
            .iter()
            .map(|(name, value)| format!("set_config('{name}', '{value}', true)"))
            .collect();
        diesel::sql_query(format!("SELECT {}", calls.join(", "))).execute(pg)?;
    }
    Ok(())
}
