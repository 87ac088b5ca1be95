//! The `iria-news` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iria_news::foundation::config::Settings;
use iria_news::foundation::{logging, secrets};
use iria_news::startup::commands;

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
    /// Web application, delivery worker and webhook worker in one process (the default); migrates first.
    Serve,
    /// Delivery and webhook workers only; run several against one PostgreSQL to scale out.
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
    /// The subscriber list.
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
}

#[derive(Subcommand)]
enum SubscribersCommand {
    /// Queue a CSV file of subscribers as an import job, as the console's import form does
    /// (`email`, optionally `name` and `topics` separated by `;`).
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Where these addresses come from (kept with each consent record).
        #[arg(long)]
        source: String,
        /// The editors hold their consent: add them as confirmed, no email. Otherwise each new
        /// address gets a confirmation email.
        #[arg(long)]
        consent_held: bool,
        /// Import it from this process too, and report how it went.
        #[arg(long)]
        wait: bool,
    },
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
        /// Deliver from this process and wait until every copy has ended, instead of leaving
        /// the sending to a running `serve` or `worker`.
        #[arg(long)]
        wait: bool,
    },
    /// Print the digest HTML (or text) that would be sent now.
    Preview {
        #[arg(long)]
        text: bool,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make a bearer token for the JSON API (the site's CMS, the MTA's bounce pipe), limited to
    /// its scopes; it is shown once and only its hash is kept. Making one with a name in use
    /// replaces that token.
    CreateToken {
        /// Who uses the token, e.g. "cms" or "mta".
        name: String,
        /// What it may do, comma-separated: articles:read, articles:write, bounces:write,
        /// subscribers:read, subscribers:write, issues:read, issues:write, issues:send,
        /// digest:run, metrics:read, webhooks:write, audit:read.
        #[arg(long, required = true)]
        scope: String,
        /// The token stops working this many days from now.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Remove an editor's second factor (they enrol again at their next login).
    #[command(name = "reset-2fa")]
    Reset2fa {
        /// The editor's login name.
        name: String,
    },
    /// Make an editor account (argon2id hash of the password).
    CreateUser {
        /// The editor's login name.
        name: String,
        /// author (drafts, previews, test copies), editor (also sends, schedules, manages
        /// subscribers and articles) or admin (also accounts, tokens, webhooks, settings).
        /// Default: admin for the first account, editor for later ones.
        #[arg(long)]
        role: Option<String>,
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
    logging::init(settings.log_format);
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
        Command::Serve => commands::serve(settings).await,
        Command::Worker => commands::worker(settings).await,
        Command::Migrate => commands::migrate(&settings),
        Command::Send(args) => {
            let request = commands::SendRequest {
                subject: args.subject,
                preheader: args.preheader,
                html_file: &args.html_file,
                text_file: args.text_file.as_deref(),
                topics: args.topics,
                idempotency_key: args.idempotency_key,
                wait: args.wait,
            };
            commands::send(request, settings).await
        }
        Command::Articles(ArticlesCommand::Import { source }) => {
            commands::import_articles(&settings, &source).await
        }
        Command::Subscribers(SubscribersCommand::Import {
            file,
            source,
            consent_held,
            wait,
        }) => {
            let request = commands::SubscriberImport {
                file: &file,
                source,
                consent_held,
                wait,
            };
            commands::import_subscribers(settings, request).await
        }
        Command::Digest(DigestCommand::Run {
            dry_run,
            force,
            wait,
        }) => commands::run_digest(settings, dry_run, force, wait).await,
        Command::Digest(DigestCommand::Preview { text }) => {
            commands::preview_digest(&settings, text).await
        }
        Command::Admin(AdminCommand::CreateUser {
            name,
            role,
            password_stdin,
        }) => commands::create_user(&settings, &name, role.as_deref(), password_stdin),
        Command::Admin(AdminCommand::CreateToken {
            name,
            scope,
            expires_days,
        }) => commands::create_token(&settings, &name, &scope, expires_days),
        Command::Admin(AdminCommand::Reset2fa { name }) => commands::reset_2fa(&settings, &name),
    }
}
