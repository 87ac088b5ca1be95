//! The worker's recorder: writes each outcome to the ledger as soon as it is known, grouped with
//! the outcomes that arrive meanwhile (group commit).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use crate::foundation::db::{self, DbError, Pool};
use crate::foundation::domain::SubscriberStatus;
use crate::stores::delivery::{self, Claimed, Outcome};
use crate::stores::subscriptions;

/// How long the recorder waits for more outcomes to write with the first (see
/// [`Recorder::gather`]): what the server accepted is in the ledger this much and a write later.
const GROUP_WAIT: Duration = Duration::from_millis(1);

/// The group the recorder waits for (or the worker's connections, when fewer): a larger one
/// would hold accepted messages unrecorded longer.
const GROUP_TARGET: usize = 4;

/// An outcome not yet in the ledger, and the sender that learns whether writing it succeeded.
type Unrecorded = ((Claimed, Outcome), oneshot::Sender<bool>);

/// One worker's outcomes on their way to the ledger.
pub struct Recorder {
    /// Outcomes waiting to be written, each with whom to tell when it is.
    unrecorded: Mutex<Vec<Unrecorded>>,
    /// Held by whoever is writing outcomes: one write at a time, and every outcome that arrives
    /// meanwhile goes into the next one.
    writing: tokio::sync::Mutex<()>,
    /// Told each time an outcome joins `unrecorded`.
    arrived: Notify,
    /// The group [`Self::gather`] waits for.
    target: usize,
}

impl Recorder {
    /// A recorder for a worker with `connections` SMTP connections.
    pub fn new(connections: usize) -> Self {
        Recorder {
            unrecorded: Mutex::new(Vec::new()),
            writing: tokio::sync::Mutex::new(()),
            arrived: Notify::new(),
            target: GROUP_TARGET.min(connections.max(1)),
        }
    }

    /// Writes one outcome of `owner`'s to the ledger, grouped with whatever other outcomes arrive
    /// while a write is under way or within [`GROUP_WAIT`] of the first (group commit): each
    /// accepted message is recorded within a millisecond and a write's time, not at the end of
    /// its batch, and a busy worker still writes several outcomes per statement. Returns whether
    /// the outcome was written.
    pub async fn record(
        &self,
        pool: &Pool,
        owner: &str,
        claimed: Claimed,
        outcome: Outcome,
    ) -> bool {
        let (tx, mut rx) = oneshot::channel();
        match self.unrecorded.lock() {
            Ok(mut pending) => pending.push(((claimed, outcome), tx)),
            Err(_) => return false,
        }
        self.arrived.notify_one();
        let _writing = self.writing.lock().await;
        // An earlier writer may have taken this outcome along.
        if let Ok(written) = rx.try_recv() {
            return written;
        }
        self.gather().await;
        let group: Vec<Unrecorded> = match self.unrecorded.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return false,
        };
        let (outcomes, tellers): (Vec<(Claimed, Outcome)>, Vec<oneshot::Sender<bool>>) =
            group.into_iter().unzip();
        let owner = owner.to_string();
        let count = outcomes.len();
        let written = match db::run(pool, move |conn| write(conn, &owner, &outcomes)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, outcomes = count, "could not record delivery outcomes; their leases will expire and they will be tried again");
                false
            }
        };
        for teller in tellers {
            let _ = teller.send(written);
        }
        rx.try_recv().unwrap_or(written)
    }

    /// Waits, at most [`GROUP_WAIT`], for a group of `target` outcomes to write together.
    /// Written one at a time, the outcomes of a busy worker took a statement and a commit each:
    /// 60,000 statements for 100,000 copies (PostgreSQL, 8 connections), 22,000 with this wait.
    async fn gather(&self) {
        let deadline = tokio::time::Instant::now() + GROUP_WAIT;
        loop {
            let pending = self.unrecorded.lock().map_or(self.target, |p| p.len());
            if pending >= self.target {
                return;
            }
            if tokio::time::timeout_at(deadline, self.arrived.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Records a group of outcomes and suppresses the addresses that bounced, in one transaction (in
/// one statement when all were sent, the common case: see [`delivery::record_only_sent`]).
fn write(
    conn: &mut db::DbConnection,
    owner: &str,
    outcomes: &[(Claimed, Outcome)],
) -> Result<(), DbError> {
    if delivery::record_only_sent(conn, owner, outcomes)? {
        return Ok(());
    }
    db::write_transaction(conn, |conn| {
        delivery::commit_without_flush(conn)?;
        let now = db::now();
        for subscriber_id in delivery::record(conn, owner, outcomes)? {
            subscriptions::suppress(conn, subscriber_id, SubscriberStatus::Bounced, now)?;
        }
        Ok(())
    })
}
