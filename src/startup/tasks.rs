//! The background tasks of `serve`: the digest scheduler, scheduled issues, the feed poller, the
//! rate limits' clean-up, re-permission deadlines, the audit log's retention and the webhook worker; and the signal that stops the process.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use chrono::Utc;
use tokio::sync::{watch, Notify};

use crate::foundation::config::Settings;
use crate::foundation::db::{self, Pool};
use crate::foundation::schedule::Schedule;
use crate::http::state::AppState;
use crate::processes::webhooks::WebhookWorker;
use crate::processes::{digest, feed};
use crate::stores::editors::sessions;
use crate::stores::subscriptions::repermission;
use crate::stores::{audit, issues, limits};

/// Starts every background task of a `serve` process; each runs until the process stops.
pub fn spawn_background(state: &web::Data<AppState>, settings: &Arc<Settings>) {
    // Forget rate-limit keys that are as good as new, so that their table stays small.
    let pool = state.pool.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let forgotten = db::run(&pool, |conn| {
                Ok(limits::forget_idle(conn, limits::now_ms())?)
            })
            .await;
            if let Err(error) = forgotten {
                tracing::warn!(%error, "forgetting idle rate-limit keys failed");
            }
        }
    });
    tokio::spawn(digest_forever(
        settings.clone(),
        state.pool.clone(),
        settings.schedule.clone(),
    ));
    tokio::spawn(repermission_forever(state.pool.clone()));
    tokio::spawn(retention_forever(
        state.pool.clone(),
        settings.audit_retention_days,
    ));
    tokio::spawn(scheduled_issues_forever(
        state.pool.clone(),
        state.wake.clone(),
    ));
    if let Some(url) = &settings.feed_url {
        tokio::spawn(feed_forever(
            state.pool.clone(),
            url.to_string(),
            settings.feed_poll,
        ));
    }
}

/// Runs the digest at every scheduled time until the process stops, and once at start when the
/// current period's digest is missing (a run missed while the app was down happens once, not
/// once per missed period: only the latest period is looked at). A period it finds without
/// articles is closed to it, not to an editor: see [`digest::Trigger`].
pub async fn digest_forever(settings: Arc<Settings>, pool: Pool, schedule: Schedule) {
    // At start: the current period's digest, if the period has begun and its digest is missing.
    let mut first = schedule.latest(Utc::now()).is_some();
    loop {
        if !first {
            let now = Utc::now();
            let Some(next) = schedule.next(now) else {
                tracing::warn!("the digest schedule has no next time; the scheduler stops");
                return;
            };
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::time::sleep(wait + std::time::Duration::from_millis(500)).await;
        }
        first = false;
        let key = schedule.period_key(Utc::now());
        let s = settings.clone();
        let result = db::run(&pool, move |conn| {
            let outcome = digest::run_scheduled(conn, &s, &key, db::now());
            if let Ok(queued @ digest::Outcome::Queued { .. }) = &outcome {
                let entry = audit::Entry::new("scheduler", "", "digest run");
                audit::record(conn, &entry.detail(queued.to_string()))?;
            }
            Ok(outcome)
        })
        .await;
        match result {
            Ok(Ok(outcome)) => tracing::info!(%outcome, "digest run"),
            Ok(Err(e)) => tracing::error!(error = %e, "the digest run failed"),
            Err(e) => {
                tracing::warn!(error = %e, "the digest run could not reach the database; next time")
            }
        }
    }
}

/// Queues scheduled issues when their time comes, every 15 seconds, until the process stops.
pub async fn scheduled_issues_forever(pool: Pool, wake: Arc<Notify>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        match db::run(&pool, |conn| Ok(issues::queue_due(conn, db::now())?)).await {
            Ok(queued) if !queued.is_empty() => {
                for q in &queued {
                    tracing::info!(
                        issue = q.issue_id,
                        recipients = q.recipients,
                        "scheduled issue queued"
                    );
                }
                wake.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checking for scheduled issues failed; next time"),
        }
    }
}

/// How often the re-permission deadlines are looked at.
const REPERMISSION_EVERY: Duration = Duration::from_secs(5);

/// Unsubscribes, with the reason `inactive`, the readers who did not answer a re-permission
/// message in time, every few seconds until the process stops. Several processes may run it:
/// each reader is unsubscribed once (see [`repermission::expire`]).
pub async fn repermission_forever(pool: Pool) {
    let mut tick = tokio::time::interval(REPERMISSION_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match db::run(&pool, |conn| repermission::expire(conn, db::now())).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(unsubscribed = n, "inactive readers unsubscribed"),
            Err(e) => tracing::warn!(error = %e, "re-permission deadlines: next time"),
        }
    }
}

/// How often old audit entries and ended sessions are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Deletes audit entries older than `IRIA_AUDIT_RETENTION_DAYS` and sessions past their idle or
/// absolute end: at start, then once an hour, until the process stops.
pub async fn retention_forever(pool: Pool, days: u32) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let purged = db::run(&pool, move |conn| {
            Ok((audit::purge(conn, days)?, sessions::purge_expired(conn)?))
        })
        .await;
        match purged {
            Ok((0, 0)) => {}
            Ok((entries, ended)) => {
                tracing::info!(
                    entries,
                    sessions = ended,
                    "old audit entries and ended sessions deleted"
                )
            }
            Err(e) => tracing::warn!(error = %e, "deleting old audit entries: next time"),
        }
    }
}

/// Polls `url` every `every` until the process stops. Failures are logged and retried at the
/// next turn.
pub async fn feed_forever(pool: Pool, url: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match feed::poll(&pool, &url).await {
            Ok(r) if r.not_modified => tracing::debug!(%url, "feed not modified"),
            Ok(r) => {
                tracing::info!(%url, new = r.imported.new, updated = r.imported.updated, skipped = r.skipped.len(), "feed polled")
            }
            Err(e) => {
                tracing::warn!(%url, error = %format!("{e:#}"), "feed poll failed; keeping the last state")
            }
        }
    }
}

/// Starts a webhook worker (in `serve` and in `iria-news worker`); it stops when `shutdown`
/// turns true, once its posts in flight are done.
pub fn spawn_webhooks(
    worker: WebhookWorker,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(worker.run(shutdown))
}

/// Resolves at the first SIGINT or SIGTERM.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
