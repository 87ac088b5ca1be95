//! What each command of the `iria-news` binary does, once its arguments are parsed (`main.rs`
//! parses them). Every command returns an error of one line for `main` to print.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::foundation::access::{Role, Scope};
use crate::foundation::config::Settings;
use crate::foundation::db::{self, Pool};
use crate::processes::compose::{self, Announcement, Door};
use crate::processes::mail::Mailer;
use crate::processes::messages::dkim_signer;
use crate::processes::webhooks::WebhookWorker;
use crate::processes::worker::Worker;
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

/// `worker`: delivery and webhooks only, until SIGTERM finishes what is in flight.
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
    worker.run(stopped).await;
    if let Some(webhooks) = webhooks {
        let _ = webhooks.await;
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
/// bar on a terminal, otherwise a plain line a second (logs, CI).
async fn deliver_and_report(
    settings: &Arc<Settings>,
    pool: &Pool,
    queued: Queued,
) -> anyhow::Result<()> {
    let worker = new_worker(settings, pool)?;
    let issue_id = queued.issue_id;
    let sending = Instant::now();
    let mut last_report: Option<Instant> = None;
    let bar = progress_bar(queued.recipients as u64, "sending");
    loop {
        // Two batches at once, as the worker does: one sends while the other waits on the
        // database; the leases are renewed meanwhile.
        let both = async { tokio::join!(worker.run_once(), worker.run_once()) };
        let (a, b) = tokio::select! {
            done = both => done,
            _ = worker.keep_leases() => unreachable!("renewing leases never ends"),
        };
        let claimed = a.context("delivering")? + b.context("delivering")?;
        let report_due = last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if claimed > 0 && !report_due {
            continue;
        }
        let progress = db::run(pool, move |conn| {
            Ok(delivery::progress_of(conn, &[issue_id])?)
        })
        .await
        .context("reading progress")?;
        let p = Progress::of(issue_id, &progress);
        let line = format!(
            "issue {issue_id}: sent {}, failed {}, bounced {}, skipped {}, waiting {} ({:.1} s)",
            p.sent,
            p.failed,
            p.bounced,
            p.skipped,
            p.waiting(),
            sending.elapsed().as_secs_f64()
        );
        if let Some(bar) = &bar {
            bar.set_position((p.sent + p.failed + p.bounced + p.skipped) as u64);
            if p.waiting() == 0 {
                bar.finish_and_clear();
                println!("{line}");
            }
        } else if report_due || p.waiting() == 0 {
            println!("{line}");
        }
        if report_due {
            last_report = Some(Instant::now());
        }
        if p.waiting() == 0 {
            return Ok(());
        }
        if claimed == 0 {
            tokio::time::sleep(settings.delivery.poll.min(Duration::from_millis(200))).await;
        }
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

/// `digest run [--dry-run] [--force]`: this period's digest, once per period.
pub async fn run_digest(settings: &Settings, dry_run: bool, force: bool) -> anyhow::Result<()> {
    let pool = ready_pool(settings, 2)?;
    let mut key = settings.schedule.period_key(chrono::Utc::now());
    if force {
        key = format!(
            "{key}:forced:{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f")
        );
    }
    let s = settings.clone();
    let outcome = db::run(&pool, move |conn| {
        Ok(digest::run(conn, &s, &key, db::now(), dry_run))
    })
    .await??;
    if matches!(outcome, digest::Outcome::Queued { .. }) {
        let mut conn = pool.get().context("connecting to the database")?;
        operator_did(&mut conn, "digest run", format!("{outcome}"))?;
    }
    println!("{outcome}");
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
