//! The `iria-news` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use iria_news::config::Settings;
use iria_news::delivery::worker::Worker;
use iria_news::mail::Mailer;
use iria_news::web::Application;
use iria_news::{db, secrets, telemetry};

#[derive(Parser)]
#[command(
    name = "iria-news",
    version,
    about = "IRIA News: newsletter sign-up, digest and sending"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Web application and delivery worker in one process (the default); migrates first.
    Serve,
    /// Delivery workers only; run several against one PostgreSQL to scale out.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Queue an editor's issue to every confirmed subscriber.
    Send(SendArgs),
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The article store.
    #[command(subcommand)]
    Articles(ArticlesCommand),
    /// The weekly digest.
    #[command(subcommand)]
    Digest(DigestCommand),
}

#[derive(Subcommand)]
enum ArticlesCommand {
    /// Import articles from an RSS 2.0 or Atom feed, given as a URL or a file path.
    Import {
        /// The feed's URL or file.
        source: String,
    },
}

#[derive(Subcommand)]
enum DigestCommand {
    /// Build this period's digest and queue it (once per period).
    Run {
        /// Say what would go out; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Make a digest now even if this period has one.
        #[arg(long)]
        force: bool,
    },
    /// Print the digest HTML (or text) that would be sent now.
    Preview {
        #[arg(long)]
        text: bool,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make a bearer token for the JSON API (the site's CMS, the MTA's bounce pipe); it is shown
    /// once and only its hash is kept. Making one with a name in use replaces that token.
    CreateToken {
        /// Who uses the token, e.g. "cms" or "mta".
        name: String,
    },
    /// Make an editor account (argon2id hash of the password).
    CreateUser {
        /// The editor's login name.
        name: String,
        /// Read the password from standard input (one line) instead of asking for it.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(clap::Args)]
struct SendArgs {
    /// The subject line.
    #[arg(long)]
    subject: String,
    /// The body, as HTML (sanitised; laid out in the newsletter's template).
    #[arg(long)]
    html_file: PathBuf,
    /// The text version; derived from the HTML when not given.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// The line mail programs show after the subject.
    #[arg(long, default_value = "")]
    preheader: String,
    /// Only subscribers who chose one of these topics (or none); comma-separated.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Sending twice with the same key queues once.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Deliver from this process and wait until every copy has ended (sent, failed, bounced or
    /// skipped), instead of leaving the sending to a running `serve` or `worker`.
    #[arg(long)]
    wait: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: {}",
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the context first: "connecting to the database: ..."
            if std::env::var("RUST_LOG").is_ok_and(|v| v.contains("debug")) {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {}", one_line(&e));
            }
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| {
            c.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(": ")
}

async fn run(command: Command, mut settings: Settings) -> anyhow::Result<()> {
    secrets::ensure_secret_key(&mut settings)?;
    match command {
        Command::Serve => {
            let app = Application::build(settings)?;
            tracing::info!(port = app.port(), "serving");
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let pool = db::pool(&settings.database_url, 1);
            let mut conn = pool.get().context("connecting to the database")?;
            let applied = db::migrate(&mut conn)?;
            println!("applied {applied} migration(s); the database is up to date");
            Ok(())
        }
        Command::Send(args) => send(args, settings).await,
        Command::Articles(ArticlesCommand::Import { source }) => {
            let pool = ready_pool(&settings)?;
            let spin = spinner(&format!("importing {source}"));
            let report = iria_news::articles::feed::import(&pool, &source).await;
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
        Command::Digest(DigestCommand::Run { dry_run, force }) => {
            let pool = ready_pool(&settings)?;
            let mut key = settings.schedule.period_key(chrono::Utc::now());
            if force {
                key = format!(
                    "{key}:forced:{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f")
                );
            }
            let s = settings.clone();
            let outcome = db::run(&pool, move |conn| {
                Ok(iria_news::digest::run(conn, &s, &key, db::now(), dry_run))
            })
            .await??;
            println!("{outcome}");
            Ok(())
        }
        Command::Digest(DigestCommand::Preview { text }) => {
            let pool = ready_pool(&settings)?;
            let s = settings.clone();
            match db::run(&pool, move |conn| {
                Ok(iria_news::digest::preview(conn, &s, db::now()))
            })
            .await??
            {
                Some(c) if text => print!(
                    "{}",
                    c.text
                        .replace(iria_news::issues::UNSUBSCRIBE_MARK, "<unsubscribe link>")
                        .replace(iria_news::issues::PREFERENCES_MARK, "<preferences link>")
                ),
                Some(c) => print!("{}", c.html),
                None => eprintln!("no new articles since the last digest; nothing would be sent"),
            }
            Ok(())
        }
        Command::Admin(AdminCommand::CreateUser {
            name,
            password_stdin,
        }) => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                let first = rpassword::prompt_password(format!("Password for {name}: "))
                    .context("reading the password")?;
                let again =
                    rpassword::prompt_password("Again: ").context("reading the password")?;
                if first != again {
                    anyhow::bail!("the two passwords differ");
                }
                first
            };
            let pool = db::pool(&settings.database_url, 1);
            let mut conn = pool.get().context("connecting to the database")?;
            db::migrate(&mut conn)?;
            iria_news::editors::create(&mut conn, &name, &password)?;
            println!("editor {name:?} created");
            Ok(())
        }
        Command::Admin(AdminCommand::CreateToken { name }) => {
            let name = name.trim().to_string();
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                anyhow::bail!("a token name is 1 to 64 printable characters");
            }
            let pool = db::pool(&settings.database_url, 1);
            let mut conn = pool.get().context("connecting to the database")?;
            db::migrate(&mut conn)?;
            let token =
                iria_news::api::tokens::create(&mut conn, &name).context("storing the token")?;
            println!("{token}");
            eprintln!("API token {name:?} made; it is shown only this once");
            Ok(())
        }
        Command::Worker => {
            let settings = Arc::new(settings);
            let pool = db::pool(&settings.database_url, settings.db_pool_size);
            {
                let mut conn = pool.get().context("connecting to the database")?;
                db::migrate(&mut conn)?;
            }
            let mailer = Mailer::from_settings(&settings)?;
            let dkim = iria_news::messages::dkim_config(&settings)?;
            let worker = Worker::new(settings, pool, mailer, Default::default(), dkim);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                telemetry::stop_signal().await;
                tracing::info!("stopping: finishing the deliveries in flight");
                let _ = stop.send(true);
            });
            worker.run(stopped).await;
            Ok(())
        }
    }
}

async fn send(args: SendArgs, settings: Settings) -> anyhow::Result<()> {
    use iria_news::issues::{self, Draft, Kind};
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let unknown: Vec<&String> = args
        .topics
        .iter()
        .filter(|t| !settings.topics.contains(t))
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "unknown topic(s) {unknown:?}; the topics are {:?}",
            settings.topics
        );
    }
    let draft = Draft {
        kind: Kind::Announcement,
        subject: args.subject.clone(),
        preheader: args.preheader.clone(),
        body_html: read(&args.html_file)?,
        body_text: args.text_file.as_ref().map(read).transpose()?,
        topics: args.topics.clone(),
        period_key: None,
        idempotency_key: args.idempotency_key.clone(),
    };
    let settings = Arc::new(settings);
    let pool = db::pool(&settings.database_url, settings.db_pool_size);
    {
        let mut conn = pool.get().context("connecting to the database")?;
        db::migrate(&mut conn)?;
    }
    let s = settings.clone();
    let started = std::time::Instant::now();
    let queued = db::run(&pool, move |conn| {
        Ok(issues::create_and_queue(conn, &s, &draft))
    })
    .await??;
    let queue_ms = started.elapsed().as_millis();
    if queued.created {
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
    if !args.wait {
        println!("a running `iria-news serve` or `iria-news worker` delivers it");
        return Ok(());
    }
    let mailer = Mailer::from_settings(&settings)?;
    let dkim = iria_news::messages::dkim_config(&settings)?;
    let worker = Worker::new(
        settings.clone(),
        pool.clone(),
        mailer,
        Default::default(),
        dkim,
    );
    let issue_id = queued.issue_id;
    let sending = std::time::Instant::now();
    let mut last_report: Option<std::time::Instant> = None;
    // A progress bar on a terminal; plain lines, one a second, otherwise (logs, CI).
    let bar = progress_bar(queued.recipients as u64, "sending");
    loop {
        // Two batches at once, as the worker does: one sends while the other waits on the database;
        // the leases are renewed meanwhile.
        let both = async { tokio::join!(worker.run_once(), worker.run_once()) };
        let (a, b) = tokio::select! {
            done = both => done,
            _ = worker.keep_leases() => unreachable!("renewing leases never ends"),
        };
        let claimed = a.context("delivering")? + b.context("delivering")?;
        let report_due =
            last_report.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
        if claimed > 0 && !report_due {
            continue;
        }
        let progress = db::run(&pool, move |conn| {
            Ok(iria_news::delivery::issue_progress(conn, issue_id)?)
        })
        .await
        .context("reading progress")?;
        let count = |s: &str| {
            progress
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, n)| *n)
                .unwrap_or(0)
        };
        let pending = count("queued") + count("sending");
        let line = format!(
            "issue {issue_id}: sent {}, failed {}, bounced {}, skipped {}, waiting {pending} ({:.1} s)",
            count("sent"),
            count("failed"),
            count("bounced"),
            count("skipped"),
            sending.elapsed().as_secs_f64()
        );
        if let Some(bar) = &bar {
            bar.set_position(
                (count("sent") + count("failed") + count("bounced") + count("skipped")) as u64,
            );
            if pending == 0 {
                bar.finish_and_clear();
                println!("{line}");
            }
        } else if report_due || pending == 0 {
            println!("{line}");
        }
        if report_due {
            last_report = Some(std::time::Instant::now());
        }
        if pending == 0 {
            return Ok(());
        }
        if claimed == 0 {
            tokio::time::sleep(
                settings
                    .delivery
                    .poll
                    .min(std::time::Duration::from_millis(200)),
            )
            .await;
        }
    }
}

/// A pool on a migrated database, for the commands that use it once.
fn ready_pool(settings: &Settings) -> anyhow::Result<db::Pool> {
    let pool = db::pool(&settings.database_url, 2);
    let mut conn = pool.get().context("connecting to the database")?;
    db::migrate(&mut conn)?;
    Ok(pool)
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
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}
