//! `send`: queues an editor's issue and, with `--wait`, delivers it from this process while
//! reporting progress.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Notify;

use super::support::{new_worker, operator_did, progress_bar, ready_pool};
use crate::foundation::config::Settings;
use crate::foundation::db::{self, DbError, Pool};
use crate::processes::compose::{self, Announcement, Door};
use crate::processes::worker::PIPELINES;
use crate::stores::delivery::{self, Progress};
use crate::stores::issues::Queued;

/// What `send` was asked to send.
pub struct SendRequest<'a> {
    pub subject: String,
    pub preheader: String,
    pub html_file: &'a Path,
    pub text_file: Option<&'a Path>,
    pub topics: Vec<String>,
    pub idempotency_key: Option<String>,
    /// Deliver from this process and report progress until every copy has ended.
    pub wait: bool,
}

/// `send`: queues an editor's issue to its audience; with `wait`, delivers it from here.
pub async fn send(request: SendRequest<'_>, settings: Settings) -> anyhow::Result<()> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let draft = Announcement {
        subject: request.subject,
        preheader: request.preheader,
        body: read(request.html_file)?,
        markdown: false,
        text: request.text_file.map(read).transpose()?,
        topics: request.topics,
        idempotency_key: request.idempotency_key,
    }
    .into_draft(&settings, Door::CommandLine)?;
    let settings = Arc::new(settings);
    let pool = ready_pool(&settings, settings.db_pool_size)?;
    let s = settings.clone();
    let started = Instant::now();
    let queued = db::run(&pool, move |conn| {
        Ok(compose::create_and_queue(conn, &s, &draft))
    })
    .await??;
    let queue_ms = started.elapsed().as_millis();
    if queued.created {
        let mut conn = pool.get().context("connecting to the database")?;
        operator_did(
            &mut conn,
            "issue sent",
            format!(
                "issue {} to {} subscriber(s), from the command line",
                queued.issue_id, queued.recipients
            ),
        )?;
        println!(
            "issue {}: queued to {} subscriber(s) in {queue_ms} ms",
            queued.issue_id, queued.recipients
        );
    } else {
        println!(
            "issue {}: already queued with this key to {} subscriber(s); nothing new queued",
            queued.issue_id, queued.recipients
        );
    }
    if !request.wait {
        println!("a running `iria-news serve` or `iria-news worker` delivers it");
        return Ok(());
    }
    deliver_and_report(&settings, &pool, queued).await
}

/// Delivers from this process until every copy of the issue has ended, reporting progress: a
/// bar on a terminal, otherwise a plain line a second (logs, CI); past a few tens of thousands
/// of copies, less often (see the counting pause below).
pub(super) async fn deliver_and_report(
    settings: &Arc<Settings>,
    pool: &Pool,
    queued: Queued,
) -> anyhow::Result<()> {
    let worker = new_worker(settings, pool)?;
    let issue_id = queued.issue_id;
    let sending_since = Instant::now();
    let bar = progress_bar(queued.recipients as u64, "sending");
    let done = AtomicBool::new(false);
    let failed: Mutex<Option<DbError>> = Mutex::new(None);
    // Set when a claim found nothing: the end may have come, read the progress now.
    let nudge = Notify::new();
    // Two batches at once, as the worker does: a new one starts as soon as either ends, so that
    // one sends while the other waits on the database.
    let sending = stream::iter(0..)
        .take_while(|_| std::future::ready(!done.load(Ordering::Relaxed)))
        .map(|_| async {
            let claimed = worker.run_once().await;
            match &claimed {
                Ok(0) => {
                    nudge.notify_one();
                    tokio::time::sleep(settings.delivery.poll.min(Duration::from_millis(200)))
                        .await;
                }
                Ok(_) => {}
                Err(_) => done.store(true, Ordering::Relaxed),
            }
            claimed
        })
        .buffer_unordered(PIPELINES)
        .for_each(|claimed| {
            if let (Err(e), Ok(mut first)) = (claimed, failed.lock()) {
                first.get_or_insert(e);
            }
            std::future::ready(())
        });
    let reporting = async {
        let mut last_report: Option<Instant> = None;
        // Counting an issue's copies by status reads every one of them: about 700 ms at a
        // million, which taken every second was a third of a core the send did not have. The
        // counts are read again after twenty times what the last one took (at least a second:
        // `http::progress::keep_for`),
        // and when a claim found nothing, only whether any copy still waits (one index entry).
        let mut pause = Duration::from_secs(1);
        loop {
            let nudged = tokio::select! {
                _ = tokio::time::sleep(pause) => false,
                _ = nudge.notified() => true,
            };
            let nudged = nudged && !done.load(Ordering::Relaxed);
            let p = match read_progress(pool, issue_id, nudged).await {
                Ok(Some((p, took))) => {
                    pause = crate::http::progress::keep_for(took);
                    p
                }
                Ok(None) => continue,
                Err(e) => {
                    done.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            };
            show_progress(issue_id, &p, bar.as_ref(), &mut last_report, sending_since);
            if p.waiting() == 0 || done.load(Ordering::Relaxed) {
                done.store(true, Ordering::Relaxed);
                return Ok(());
            }
        }
    };
    let (_, reported) = tokio::select! {
        both = async { tokio::join!(sending, reporting) } => both,
        _ = worker.keep_leases() => unreachable!("renewing leases never ends"),
    };
    if let Some(e) = failed.lock().ok().and_then(|mut f| f.take()) {
        return Err(anyhow::Error::from(e).context("delivering"));
    }
    reported
}

/// Counts the issue's copies by status, and how long that took; after a nudge, first whether
/// any copy still waits, and `None` if one does (the count would say nothing new).
async fn read_progress(
    pool: &Pool,
    issue_id: i64,
    nudged: bool,
) -> anyhow::Result<Option<(Progress, Duration)>> {
    let reading = |e: DbError| anyhow::Error::from(e).context("reading progress");
    if nudged
        && db::run(pool, move |conn| Ok(delivery::any_waiting(conn, issue_id)?))
            .await
            .map_err(reading)?
    {
        return Ok(None);
    }
    let counted_at = Instant::now();
    let progress = db::run(pool, move |conn| {
        Ok(delivery::progress_of(conn, &[issue_id])?)
    })
    .await
    .map_err(reading)?;
    Ok(Some((
        Progress::of(issue_id, &progress),
        counted_at.elapsed(),
    )))
}

/// Prints a progress line (at most once a second, and at the end) or moves the bar.
fn show_progress(
    issue_id: i64,
    p: &Progress,
    bar: Option<&indicatif::ProgressBar>,
    last_report: &mut Option<Instant>,
    since: Instant,
) {
    let line = format!(
        "issue {issue_id}: sent {}, failed {}, bounced {}, skipped {}, waiting {} ({:.1} s)",
        p.sent,
        p.failed,
        p.bounced,
        p.skipped,
        p.waiting(),
        since.elapsed().as_secs_f64()
    );
    let report_due = last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
    if let Some(bar) = bar {
        bar.set_position((p.sent + p.failed + p.bounced + p.skipped) as u64);
        if p.waiting() == 0 {
            bar.finish_and_clear();
            println!("{line}");
        }
    } else if report_due || p.waiting() == 0 {
        println!("{line}");
    }
    if report_due {
        *last_report = Some(Instant::now());
    }
}
