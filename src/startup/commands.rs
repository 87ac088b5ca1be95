//! What each command of the `iria-news` binary does, once its arguments are parsed (`main.rs`
//! parses them). Every command returns an error of one line for `main` to print.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::foundation::access::{Role, Scope};
use crate::foundation::config::Settings;
use crate::foundation::db::{self, Pool};
use crate::processes::imports::ImportRunner;
use crate::processes::webhooks::WebhookWorker;
use crate::processes::{digest, feed};
use crate::startup::server::Application;
use crate::startup::tasks::{spawn_webhooks, stop_signal};
use crate::stores::issues::{Queued, PREFERENCES_MARK, UNSUBSCRIBE_MARK, VIEW_MARK};
use crate::stores::{api_tokens, audit, editors};

mod send;
mod support;
use send::deliver_and_report;
pub use send::{send, SendRequest};
use support::{new_worker, operator_did, ready_pool, spinner};

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
