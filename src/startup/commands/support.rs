//! What the commands share: a migrated pool, a worker of this process, the audit line of an
//! operator's action, and the terminal's progress bars.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::foundation::config::Settings;
use crate::foundation::db::{self, Pool};
use crate::processes::mail::Mailer;
use crate::processes::messages::dkim_signer;
use crate::processes::worker::Worker;
use crate::stores::audit;

/// Notes in the audit log what the operator did on the command line.
pub(super) fn operator_did(
    conn: &mut db::DbConnection,
    action: &str,
    detail: String,
) -> anyhow::Result<()> {
    audit::record(
        conn,
        &audit::Entry::new("operator", "", action).detail(detail),
    )
    .context("writing the audit log")
}

/// A pool of `size` connections on a migrated database.
pub(super) fn ready_pool(settings: &Settings, size: u32) -> anyhow::Result<Pool> {
    let pool = db::pool(&settings.database_url, size);
    let mut conn = pool.get().context("connecting to the database")?;
    db::migrate(&mut conn)?;
    crate::startup::server::upgrade_data(&mut conn, settings)?;
    Ok(pool)
}

/// A delivery worker of this process, with its own SMTP pool and DKIM key.
pub(super) fn new_worker(settings: &Arc<Settings>, pool: &Pool) -> anyhow::Result<Worker> {
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
pub(super) fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
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
pub(super) fn spinner(what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}
