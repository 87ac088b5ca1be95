//! What each command of the `iria-news` binary does, once its arguments are parsed (`main.rs`
//! parses them). Every command returns an error of one line for `main` to print.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Notify;

use crate::foundation::access::{Role, Scope};
use crate::foundation::config::Settings;
use crate::foundation::db::{self, DbError, Pool};
use crate::processes::compose::{self, Announcement, Door};
use crate::processes::imports::ImportRunner;
use crate::processes::mail::Mailer;
use crate::processes::messages::dkim_signer;
use crate::processes::webhooks::WebhookWorker;
use crate::processes::worker::{Worker, PIPELINES};
use crate::processes::{digest, feed};
use crate::startup::server::Application;
use crate::startup::tasks::{spawn_webhooks, stop_signal};
use crate::stores::delivery::Progress;
use crate::stores::issues::{Queued, PREFERENCES_MARK, UNSUBSCRIBE_MARK, VIEW_MARK};
use crate::stores::{api_tokens, audit, delivery, editors};

/// `serve`: the web application, the background tasks and a delivery worker, until a signal.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings)?;
    tracing::info!(port = app.port(), "serving");
    app.run_until_stopped().await
}

/// `worker`: delivery, webhooks and CSV imports only, until SIGTERM finishes what is in flight.
pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let pool = ready_pool(&settings, settings.db_pool_size)?;
    let worker = new_worker(&settings, &pool)?;
    let webhooks = if settings.webhook_delivery {
        Some(WebhookWorker::new(&settings, pool.clone())?)
    } else {
        None
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: finishing the deliveries and webhook posts in flight");
        let _ = stop.send(true);
    });
    let webhooks = webhooks.map(|w| spawn_webhooks(w, stopped.clone()));
    let imports = settings.import_worker.then(|| {
        let runner = ImportRunner::new(settings.clone(), pool.clone(), None);
        tokio::spawn(runner.run(stopped.clone()))
    });
    worker.run(stopped).await;
    if let Some(webhooks) = webhooks {
        let _ = webhooks.await;
    }
    if let Some(imports) = imports {
        let _ = imports.await;
    }
    Ok(())
}

/// `migrate`: applies pending migrations.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = db::pool(&settings.database_url, 1);
    let mut conn = pool.get().context("connecting to the database")?;
    let applied = db::migrate(&mut conn)?;
    crate::startup::server::upgrade_data(&mut conn, settings)?;
    println!("applied {applied} migration(s); the database is up to date");
    Ok(())
}

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
async fn deliver_and_report(
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
        // counts are read again after twenty times what the last one took (at least a second),
        // and when a claim found nothing, only whether any copy still waits (one index entry).
        let mut pause = Duration::from_secs(1);
        loop {
            let nudged = tokio::select! {
                _ = tokio::time::sleep(pause) => false,
                _ = nudge.notified() => true,
            };
            if nudged && !done.load(Ordering::Relaxed) {
                match db::run(pool, move |conn| Ok(delivery::any_waiting(conn, issue_id)?)).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        done.store(true, Ordering::Relaxed);
                        return Err(anyhow::Error::from(e).context("reading progress"));
                    }
                }
            }
            let counted_at = Instant::now();
            let progress = db::run(pool, move |conn| {
                Ok(delivery::progress_of(conn, &[issue_id])?)
            })
            .await;
            pause = (counted_at.elapsed() * 20).max(Duration::from_secs(1));
            let p = match progress {
                Ok(progress) => Progress::of(issue_id, &progress),
                Err(e) => {
                    done.store(true, Ordering::Relaxed);
                    return Err(anyhow::Error::from(e).context("reading progress"));
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

/// `articles import SOURCE`: imports a feed from a URL or a file and says what it found.
pub async fn import_articles(settings: &Settings, source: &str) -> anyhow::Result<()> {
    let pool = ready_pool(settings, 2)?;
    let spin = spinner(&format!("importing {source}"));
    let report = feed::import(&pool, source).await;
    if let Some(s) = spin {
        s.finish_and_clear();
    }
    let report = report?;
    if report.not_modified {
        println!("{source}: not modified since the last import; nothing new");
    } else {
        let i = report.imported;
        println!(
            "{} new, {} updated, {} unchanged",
            i.new, i.updated, i.unchanged
        );
    }
    for why in &report.skipped {
        println!("skipped {why}");
    }
    Ok(())
}

/// What `subscribers import` is asked to do.
pub struct SubscriberImport<'a> {
    pub file: &'a Path,
    pub source: String,
    pub consent_held: bool,
    pub wait: bool,
}

/// `subscribers import FILE --source S [--consent-held] [--wait]`: queues the file as an import
/// job, as the console's form does (a running `serve` or `worker` imports it); with `--wait`
/// this process imports it too and reports how it went.
pub async fn import_subscribers(
    settings: Settings,
    request: SubscriberImport<'_>,
) -> anyhow::Result<()> {
    use crate::processes::imports::{self, Enqueued, Upload};
    let settings = Arc::new(settings);
    let pool = ready_pool(&settings, 2)?;
    let data = std::fs::read(request.file)
        .with_context(|| format!("reading {}", request.file.display()))?;
    let file_name = (request.file.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let source = request.source.trim().to_string();
    anyhow::ensure!(
        !source.is_empty(),
        "--source: say where these addresses come from"
    );
    let options = crate::stores::subscriptions::directory::ImportOptions {
        consent_held: request.consent_held,
        source,
        editor: "command line".into(),
    };
    let enqueued = db::run(&pool, move |conn| {
        imports::enqueue(
            conn,
            &Upload {
                file_name: &file_name,
                data: &data,
                options: &options,
                ip: "",
            },
        )
    })
    .await?;
    let (id, rows) = match enqueued {
        Enqueued::Job { id, rows } => (id, rows),
        Enqueued::Empty => anyhow::bail!("{}: no rows to import", request.file.display()),
        Enqueued::TooManyRows(n) => anyhow::bail!(
            "{}: {n} rows; an import takes at most {}",
            request.file.display(),
            crate::stores::subscriptions::import::MAX_IMPORT_ROWS
        ),
    };
    let entry = audit::Entry::new("command line", "", "subscribers import queued").detail(format!(
        "import job {id}: {}, {rows} rows",
        request.file.display()
    ));
    db::run(&pool, move |conn| Ok(audit::record(conn, &entry)?)).await?;
    println!("import job {id}: {rows} rows queued");
    if !request.wait {
        println!("a running `iria-news serve` or `iria-news worker` imports it");
        return Ok(());
    }
    wait_for_import(settings, pool, id).await
}

/// Runs the import runner in this process until job `id` ends, and reports how it went.
async fn wait_for_import(settings: Arc<Settings>, pool: Pool, id: i64) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(ImportRunner::new(settings.clone(), pool.clone(), None).run(stopped));
    let started = Instant::now();
    let job = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let job = db::run(&pool, move |conn| {
            Ok(crate::stores::imports::find(conn, id)?)
        })
        .await?
        .context("the import job is gone")?;
        if !job.is_open() {
            break job;
        }
    };
    let _ = stop.send(true);
    let _ = runner.await;
    println!(
        "import job {id} {} in {:.1} s: {} rows, {} imported, {} already on file, {} refused",
        job.status,
        started.elapsed().as_secs_f64(),
        job.rows_done,
        job.rows_imported,
        job.rows_existing,
        job.rows_rejected
    );
    for (line, why) in job.error_lines().iter().take(20) {
        println!("line {line}: {why}");
    }
    anyhow::ensure!(
        job.status == "done",
        "the import failed: {}",
        job.failure.unwrap_or_default()
    );
    Ok(())
}

/// `digest run [--dry-run] [--force] [--wait]`: this period's digest, once per period; with
/// `wait`, delivered from here.
pub async fn run_digest(
    settings: Settings,
    dry_run: bool,
    force: bool,
    wait: bool,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let pool = ready_pool(&settings, settings.db_pool_size)?;
    let mut key = settings.schedule.period_key(chrono::Utc::now());
    if force {
        key = format!(
            "{key}:forced:{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f")
        );
    }
    let s = settings.clone();
    let started = Instant::now();
    let outcome = db::run(&pool, move |conn| {
        Ok(digest::run(conn, &s, &key, db::now(), dry_run))
    })
    .await??;
    let queue_ms = started.elapsed().as_millis();
    let digest::Outcome::Queued { issues, .. } = &outcome else {
        println!("{outcome}");
        return Ok(());
    };
    let mut conn = pool.get().context("connecting to the database")?;
    operator_did(&mut conn, "digest run", format!("{outcome}"))?;
    drop(conn);
    println!("{outcome} in {queue_ms} ms");
    if wait {
        for &(issue_id, recipients) in issues {
            let queued = Queued {
                issue_id,
                recipients,
                created: true,
            };
            deliver_and_report(&settings, &pool, queued).await?;
        }
    }
    Ok(())
}

/// `digest preview [--text]`: the digest that would go out now, on standard output.
pub async fn preview_digest(settings: &Settings, text: bool) -> anyhow::Result<()> {
    let pool = ready_pool(settings, 2)?;
    let s = settings.clone();
    match db::run(&pool, move |conn| Ok(digest::preview(conn, &s, db::now()))).await?? {
        Some(c) if text => print!(
            "{}",
            c.text
                .replace(UNSUBSCRIBE_MARK, "<unsubscribe link>")
                .replace(PREFERENCES_MARK, "<preferences link>")
                .replace(VIEW_MARK, "<web copy link>")
        ),
        Some(c) => print!("{}", c.html),
        None => eprintln!("no new articles since the last digest; nothing would be sent"),
    }
    Ok(())
}

/// `admin create-user NAME [--role ROLE]`: an editor account; the password from standard input
/// or asked for twice. Without a role: admin for the first account, editor for later ones.
pub fn create_user(
    settings: &Settings,
    name: &str,
    role: Option<&str>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let role = role
        .map(Role::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password(format!("Password for {name}: "))
            .context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            anyhow::bail!("the two passwords differ");
        }
        first
    };
    let pool = ready_pool(settings, 1)?;
    let mut conn = pool.get().context("connecting to the database")?;
    let role = editors::create_with_role(&mut conn, name, &password, role)?;
    operator_did(&mut conn, "account created", format!("{name} ({role})"))?;
    println!("editor {name:?} created ({role})");
    Ok(())
}

/// `admin reset-2fa NAME`: removes an editor's second factor; they enrol again at next login.
pub fn reset_2fa(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let pool = ready_pool(settings, 1)?;
    let mut conn = pool.get().context("connecting to the database")?;
    editors::reset_second_factor(&mut conn, name)?;
    operator_did(&mut conn, "second factor reset", name.to_string())?;
    println!("second factor of {name:?} removed; they enrol again at their next login");
    Ok(())
}

/// Notes in the audit log what the operator did on the command line.
fn operator_did(conn: &mut db::DbConnection, action: &str, detail: String) -> anyhow::Result<()> {
    audit::record(
        conn,
        &audit::Entry::new("operator", "", action).detail(detail),
    )
    .context("writing the audit log")
}

/// `admin create-token NAME --scope S[,S…] [--expires-days N]`: a bearer token for the API,
/// limited to its scopes, printed once.
pub fn create_token(
    settings: &Settings,
    name: &str,
    scopes: &str,
    expires_days: Option<u32>,
) -> anyhow::Result<()> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        anyhow::bail!("a token name is 1 to 64 printable characters");
    }
    let scopes = Scope::parse_list(scopes).map_err(anyhow::Error::msg)?;
    let expires_at = match expires_days {
        Some(0) => anyhow::bail!("--expires-days is at least 1"),
        Some(days) => Some(db::now() + chrono::Duration::days(i64::from(days))),
        None => None,
    };
    let pool = ready_pool(settings, 1)?;
    let mut conn = pool.get().context("connecting to the database")?;
    let token = api_tokens::create_scoped(&mut conn, name, &scopes, expires_at, Some("operator"))
        .context("storing the token")?;
    let scopes = Scope::join(&scopes);
    operator_did(&mut conn, "token created", format!("{name} ({scopes})"))?;
    println!("{token}");
    eprintln!("API token {name:?} made with {scopes}; it is shown only this once");
    Ok(())
}

/// A pool of `size` connections on a migrated database.
fn ready_pool(settings: &Settings, size: u32) -> anyhow::Result<Pool> {
    let pool = db::pool(&settings.database_url, size);
    let mut conn = pool.get().context("connecting to the database")?;
    db::migrate(&mut conn)?;
    crate::startup::server::upgrade_data(&mut conn, settings)?;
    Ok(pool)
}

/// A delivery worker of this process, with its own SMTP pool and DKIM key.
fn new_worker(settings: &Arc<Settings>, pool: &Pool) -> anyhow::Result<Worker> {
    let mailer = Mailer::from_settings(settings)?;
    let dkim = dkim_signer(settings)?;
    Ok(Worker::new(
        settings.clone(),
        pool.clone(),
        mailer,
        Default::default(),
        dkim,
    ))
}

/// A progress bar of `len` steps when standard output is a terminal; `None` otherwise, and the
/// caller prints plain lines.
fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({per_sec}, {eta})")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    Some(bar)
}

/// A spinner while `what` runs, on a terminal only.
fn spinner(what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}
