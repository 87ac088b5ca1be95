//! The delivery worker: claims due deliveries, sends them with several messages in flight, and
//! records what happened. It runs inside `serve` and alone in `iria-news worker`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use rand::Rng;
use tokio::sync::{watch, Notify};

mod build;
mod recorder;
mod schedule;

use crate::processes::messages::dkim::DkimSigner;
use crate::stores::delivery::{self, Claimed, Kind, Outcome};
use build::Content;
use recorder::Recorder;
use schedule::ClaimSchedule;

use crate::foundation::db::{self, DbError, Pool};
use crate::foundation::{config::Settings, message_ids::MessageIds};
use crate::processes::mail::{Mailer, SendError};
use crate::processes::messages::IssueContent;
use crate::processes::throttle::Throttle;
use crate::stores::subscriptions::{self, Recipient};
use crate::stores::welcome::{self, Welcome};
use crate::stores::{engagement, issues};

/// Batches a worker has under way at once.
pub const PIPELINES: usize = 2;

/// How much of a lease a worker leaves unused, for clocks and slow statements.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// How long a woken worker waits for more work before claiming.
const WAKE_COALESCE: Duration = Duration::from_millis(10);

/// One delivery worker of this process.
pub struct Worker {
    pub settings: Arc<Settings>,
    pub pool: Pool,
    pub mailer: Mailer,
    /// Woken when something was queued in this process, so a confirmation leaves at once instead
    /// of at the next poll.
    pub wake: Arc<Notify>,
    /// Names this worker's leases in the ledger.
    pub owner: String,
    message_ids: MessageIds,
    dkim: Option<Arc<DkimSigner>>,
    /// Issues do not change once queued; each is read from the database once.
    issues: Mutex<HashMap<i64, Arc<IssueContent>>>,
    throttle: Throttle,
    /// Turns true when the worker is to stop: messages not yet started are handed back.
    stop: watch::Receiver<bool>,
    /// When the last renewal of this worker's leases that succeeded was started.
    renewed_at: Mutex<Option<Instant>>,
    /// Where the next claim reads the queue from, and when it releases expired leases.
    schedule: ClaimSchedule,
    /// Where SMTP replies are counted (the web app's `/metrics` in `serve`).
    pub metrics: Arc<crate::foundation::metrics::Metrics>,
    /// Writes the outcomes to the ledger, grouped.
    recorder: Recorder,
    /// Turns to build a message: one per core.
    builders: Arc<tokio::sync::Semaphore>,
}

/// One claim: the deliveries, and what sending them needs from the database.
struct ClaimedBatch {
    deliveries: Vec<Claimed>,
    recipients: Vec<Recipient>,
    /// The tokens of the batch's one-time links that still work, by delivery.
    links: HashMap<i64, String>,
    /// The batch's issues that were not in the cache.
    new_issues: Vec<IssueContent>,
    /// The welcome email as it stands now, when the batch has one to send.
    welcome: Option<Welcome>,
}

impl Worker {
    /// A worker named after this host and process, unique among the workers sharing a database.
    pub fn new(
        settings: Arc<Settings>,
        pool: Pool,
        mailer: Mailer,
        wake: Arc<Notify>,
        dkim: Option<DkimSigner>,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let owner = format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        let message_ids = MessageIds::new(&settings);
        let throttle = Throttle::new(
            settings.delivery.rate_per_second,
            settings.delivery.domain_rate_per_second,
        );
        let group_target = settings.delivery.concurrency;
        // Never changes unless `run` is given a real one.
        let (_, stop) = watch::channel(false);
        Self {
            settings,
            pool,
            mailer,
            wake,
            owner,
            message_ids,
            dkim: dkim.map(Arc::new),
            issues: Mutex::new(HashMap::new()),
            throttle,
            stop,
            renewed_at: Mutex::new(None),
            schedule: ClaimSchedule::default(),
            metrics: Default::default(),
            recorder: Recorder::new(group_target),
            builders: build::builders(),
        }
    }

    /// Runs until `shutdown` turns true: then it stops claiming, finishes the batch in hand and
    /// hands back any lease it still holds.
    pub async fn run(mut self, shutdown: watch::Receiver<bool>) {
        self.stop = shutdown.clone();
        tracing::info!(owner = %self.owner, "delivery worker started");
        // Two batch loops: while one waits on the database (claim, record), the other sends.
        let batches = futures_util::future::join_all(
            (0..PIPELINES).map(|_| self.batch_loop(shutdown.clone())),
        );
        tokio::select! {
            _ = batches => {}
            _ = self.keep_leases() => {}
        }
        let owner = self.owner.clone();
        match db::run(&self.pool, move |conn| {
            Ok(delivery::release_owned(conn, &owner)?)
        })
        .await
        {
            Ok(n) if n > 0 => {
                tracing::info!(released = n, "delivery worker handed back its leases")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not hand back leases; they will expire"),
        }
        tracing::info!(owner = %self.owner, "delivery worker stopped");
    }

    /// Renews this worker's leases every third of the lease time, for as long as it runs (until
    /// the future is dropped).
    pub async fn keep_leases(&self) {
        let lease = self.settings.delivery.lease;
        loop {
            tokio::time::sleep(lease / 3).await;
            let owner = self.owner.clone();
            let until = db::now()
                + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5));
            let started = Instant::now();
            match db::run(&self.pool, move |conn| {
                Ok(delivery::renew_leases(conn, &owner, until)?)
            })
            .await
            {
                Ok(_) => {
                    if let Ok(mut at) = self.renewed_at.lock() {
                        *at = Some(started);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not renew the delivery leases"),
            }
        }
    }

    /// Whether the leases of a batch claimed at `claimed_at` surely still hold: the claim or the
    /// last successful renewal was less than the lease time ago, with a margin.
    fn lease_held(&self, claimed_at: Instant) -> bool {
        let renewed = self.renewed_at.lock().ok().and_then(|at| *at);
        let since = renewed.map_or(claimed_at, |r| r.max(claimed_at));
        since.elapsed() + LEASE_MARGIN < self.settings.delivery.lease
    }

    /// Claims, sends and records batches until told to stop; idles when there is nothing due.
    async fn batch_loop(&self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            match self.run_once().await {
                Ok(claimed) if claimed as i64 >= self.settings.delivery.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, "delivery worker cannot reach the database; retrying");
                    }
                }
            }
            let idle = self.settings.delivery.poll * failures.clamp(1, 5);
            tokio::select! {
                _ = self.wake.notified() => {
                    // Sign-ups come in bursts: gather what a few milliseconds bring, so that a
                    // busy sign-up page costs one claim per burst, not one per sign-up.
                    tokio::time::sleep(WAKE_COALESCE.min(self.settings.delivery.poll)).await;
                }
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Claims one batch, sends it and records the outcomes. Returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, DbError> {
        let known = self.cached_issue_ids();
        let claimed_at = Instant::now();
        let ClaimedBatch {
            deliveries,
            recipients,
            links,
            new_issues,
            welcome,
        } = self.claim(known).await?;
        let issue_map = self.cache_issues(new_issues);
        if deliveries.is_empty() {
            return Ok(0);
        }
        let claimed = deliveries.len();
        let outcomes = self
            .send_batch(
                deliveries,
                Context {
                    recipients,
                    links: &links,
                    issue_map: &issue_map,
                    welcome: welcome.as_ref(),
                },
                claimed_at,
            )
            .await;
        let sent = outcomes.iter().filter(|(sent, _)| *sent).count();
        let unrecorded = outcomes.iter().filter(|(_, written)| !*written).count();
        tracing::debug!(claimed, sent, unrecorded, "delivery batch done");
        if unrecorded > 0 {
            return Err(DbError::Unavailable(format!(
                "{unrecorded} outcomes of a batch could not be recorded; their leases will expire"
            )));
        }
        Ok(claimed)
    }

    /// The issues already read, which a claim need not read again.
    fn cached_issue_ids(&self) -> Vec<i64> {
        self.issues
            .lock()
            .map(|c| c.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Claims the due deliveries and reads what sending them needs, in one trip to the
    /// database's thread.
    async fn claim(&self, known: Vec<i64>) -> Result<ClaimedBatch, DbError> {
        let owner = self.owner.clone();
        let lease = chrono::Duration::from_std(self.settings.delivery.lease)
            .unwrap_or(chrono::Duration::minutes(5));
        let limit = self.settings.delivery.batch_size;
        let msg_ids = self.message_ids.clone();
        let settings = self.settings.clone();
        let release = self
            .schedule
            .release_due(self.settings.delivery.lease, Instant::now());
        let from = self.schedule.claim_from(release, Instant::now());
        let batch = db::run(&self.pool, move |conn| {
            let now = db::now();
            if release {
                delivery::release_expired_leases(conn, now)?;
            }
            let deliveries =
                delivery::claim(conn, &owner, now, now + lease, limit, from, &msg_ids)?;
            let ids: Vec<i64> = deliveries.iter().map(|c| c.subscriber_id).collect();
            let recipients = subscriptions::recipients(conn, &ids)?;
            let links = build::live_link_tokens(conn, settings.secret(), &deliveries)?;
            let mut wanted: Vec<i64> = deliveries
                .iter()
                .filter_map(|c| c.issue_id)
                .filter(|i| !known.contains(i))
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            let new_issues = if wanted.is_empty() {
                Vec::new()
            } else {
                // Encoded once per issue, here on the blocking thread.
                let urls = engagement::urls_of(conn, &wanted)?;
                issues::contents(conn, &wanted)?
                    .into_iter()
                    .map(|content| {
                        let links = urls.get(&content.id).map(Vec::as_slice).unwrap_or(&[]);
                        IssueContent::tracked(&settings, content, links)
                    })
                    .collect()
            };
            // Read at each claim, not cached: an editor's change applies to the next welcome.
            let welcome = if deliveries.iter().any(|c| c.kind == Kind::Welcome.as_str()) {
                Some(welcome::current(conn, &settings)?)
            } else {
                None
            };
            Ok(ClaimedBatch {
                deliveries,
                recipients,
                links,
                new_issues,
                welcome,
            })
        })
        .await?;
        self.schedule.claimed_up_to(&batch.deliveries, limit);
        Ok(batch)
    }

    /// Adds newly read issues to the cache; returns every issue known, for this batch.
    fn cache_issues(&self, new_issues: Vec<IssueContent>) -> HashMap<i64, Arc<IssueContent>> {
        match self.issues.lock() {
            Ok(mut cache) => {
                for issue in new_issues {
                    cache.insert(issue.id, Arc::new(issue));
                }
                cache.clone()
            }
            Err(_) => new_issues
                .into_iter()
                .map(|i| (i.id, Arc::new(i)))
                .collect(),
        }
    }

    /// Sends a claimed batch with up to `delivery_concurrency` messages in flight, and records
    /// each outcome as soon as it is known (see [`Recorder`]): a worker killed
    /// mid-batch has left unrecorded only the messages that were on a connection, in the write
    /// under way, or accepted during it (they go in the next write). Returns, for each delivery,
    /// whether it was sent and whether its outcome was written.
    async fn send_batch(
        &self,
        batch: Vec<Claimed>,
        context: Context<'_>,
        claimed_at: Instant,
    ) -> Vec<(bool, bool)> {
        let recipients: HashMap<i64, Recipient> =
            context.recipients.into_iter().map(|r| (r.id, r)).collect();
        let welcome = context.welcome;
        let concurrency = self.settings.delivery.concurrency.max(1);
        stream::iter(batch)
            .map(|c| {
                let recipient = recipients.get(&c.subscriber_id);
                let issue = c.issue_id.and_then(|i| context.issue_map.get(&i)).cloned();
                let link_token = context.links.get(&c.id).map(String::as_str);
                async move {
                    // Stopping: what has not started goes back to the queue untouched.
                    // A lease that may have run out (renewals failing: the database is away)
                    // might be another worker's now: better not send than send twice.
                    let outcome = if *self.stop.borrow() || !self.lease_held(claimed_at) {
                        Outcome::Released
                    } else {
                        let content = Content {
                            link_token,
                            issue: issue.as_deref(),
                            welcome,
                        };
                        self.deliver(&c, recipient, content, claimed_at).await
                    };
                    (c, outcome)
                }
            })
            // Twice the connections: one message is built while another is on the wire.
            .buffer_unordered(concurrency * 2)
            // Each outcome goes to the recorder as soon as it is known, and the slot it held
            // takes the next message at once: when a message's slot also waited for its write,
            // a slow write (12.6 ms at p99, against 0.7 ms at the median) filled every slot
            // with written-out messages and the connections stood idle meanwhile.
            .map(|(c, outcome)| async move {
                let sent = matches!(outcome, Outcome::Sent);
                let written = self
                    .recorder
                    .record(&self.pool, &self.owner, c, outcome)
                    .await;
                (sent, written)
            })
            .buffer_unordered(usize::MAX)
            .collect()
            .await
    }

    async fn deliver(
        &self,
        claimed: &Claimed,
        recipient: Option<&Recipient>,
        content: Content<'_>,
        claimed_at: Instant,
    ) -> Outcome {
        let Some(recipient) = recipient else {
            return Outcome::Skipped {
                reason: "subscriber no longer on file".into(),
            };
        };
        // Built and signed on a blocking thread (see `build::Job::run`); the issue is the
        // cache's own copy, shared, not copied.
        let issue = content.issue.map(|issue| {
            let cached = self
                .issues
                .lock()
                .ok()
                .and_then(|c| c.get(&issue.id).cloned());
            cached.unwrap_or_else(|| Arc::new(issue.clone()))
        });
        let job = build::Job {
            settings: self.settings.clone(),
            dkim: self.dkim.clone(),
            claimed: claimed.clone(),
            recipient: recipient.clone(),
            link_token: content.link_token.map(str::to_string),
            issue,
            welcome: content.welcome.cloned(),
        };
        let message = match job.run(&self.builders).await {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        let domain = recipient
            .email
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(until) = self.throttle.slowed_until(&domain) {
            return Outcome::Deferred {
                at: at_instant(until),
                reason: format!("{domain} asked us to slow down"),
            };
        }
        if !self.turn(&domain).await {
            return Outcome::Released;
        }
        // Checked again after the waits (building, the domain's turn): still ours, not stopping.
        if *self.stop.borrow() || !self.lease_held(claimed_at) {
            return Outcome::Released;
        }
        let sent = self.mailer.send(&message.envelope, &message.bytes).await;
        self.metrics.observe_smtp(match &sent {
            Ok(()) => Some(250),
            Err(e) => e.code,
        });
        match sent {
            Ok(()) => Outcome::Sent,
            Err(e) if matches!(e.code, Some(421) | Some(454)) => {
                let until = self.throttle.slow_down(&domain);
                tracing::info!(%domain, reply = %e.detail, "the receiving server asked us to slow down");
                Outcome::Deferred {
                    at: at_instant(until),
                    reason: format!("{} {}", e.code.unwrap_or(0), e.detail),
                }
            }
            Err(e) => self.after_failure(claimed, e),
        }
    }

    /// Waits for a turn within the rate ceilings; false when the worker is told to stop first.
    /// Under a low ceiling a turn can be many seconds away, for each message in flight: a stop
    /// does not wait for them (SIGTERM took 30 s at one message a second, past the 10 s a
    /// container runtime grants before SIGKILL), and the message goes back unsent.
    async fn turn(&self, domain: &str) -> bool {
        let mut stop = self.stop.clone();
        let stopping = async move {
            // A worker never given a shutdown signal has no sender: it never stops here.
            if stop.wait_for(|stopping| *stopping).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = self.throttle.wait_turn(domain) => true,
            () = stopping => false,
        }
    }

    /// Decides what a failed send becomes: 5xx ends it (a 5.1.x bounce suppresses the address),
    /// anything else is retried with exponential backoff and jitter until the attempts run out.
    fn after_failure(&self, claimed: &Claimed, e: SendError) -> Outcome {
        let error = match e.code {
            Some(code) => format!("{code} {}", e.detail),
            None => e.detail.clone(),
        };
        if e.is_hard_bounce() {
            return Outcome::Bounced { error };
        }
        if e.permanent {
            return Outcome::Failed { error };
        }
        if claimed.attempts >= self.settings.delivery.max_attempts {
            return Outcome::Failed {
                error: format!("gave up after {} attempts: {error}", claimed.attempts),
            };
        }
        let delay = backoff(self.settings.delivery.retry_base, claimed.attempts);
        let at =
            db::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
        tracing::info!(delivery = claimed.id, attempts = claimed.attempts, retry_in_ms = delay.as_millis() as u64, %error, "send failed; will retry");
        Outcome::Retry { at, error }
    }
}

/// What a batch's messages are made of, read at the claim.
struct Context<'a> {
    recipients: Vec<Recipient>,
    /// The tokens of the batch's one-time links that still work, by delivery.
    links: &'a HashMap<i64, String>,
    issue_map: &'a HashMap<i64, Arc<IssueContent>>,
    welcome: Option<&'a Welcome>,
}

/// A monotonic instant as a ledger time.
fn at_instant(until: Instant) -> chrono::NaiveDateTime {
    let wait = until.saturating_duration_since(Instant::now());
    db::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1))
}

/// The wait before attempt `attempts + 1`: `base · 2^(attempts-1)`, at most six hours, with
/// "equal jitter" (between half and all of it) so that retries of a batch spread out.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let exp = attempts.saturating_sub(1).clamp(0, 20) as u32;
    let full = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(Duration::from_secs(6 * 3600));
    let half = full / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(30);
        for attempts in 1..40 {
            let d = backoff(base, attempts);
            let full = base
                .saturating_mul(2u32.saturating_pow((attempts - 1).min(20) as u32))
                .min(Duration::from_secs(6 * 3600));
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempts}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }
}
