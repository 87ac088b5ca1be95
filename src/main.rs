//! The `iria-news` command.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
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
        Command::Worker => {
            let settings = Arc::new(settings);
            let pool = db::pool(&settings.database_url, settings.db_pool_size);
            {
                let mut conn = pool.get().context("connecting to the database")?;
                db::migrate(&mut conn)?;
            }
            let mailer = Mailer::from_settings(&settings)?;
            let worker = Worker::new(settings, pool, mailer, Default::default());
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
