//! The CSV import runner (in `serve` and `iria-news worker`): claims a queued job, or one whose
//! process died (its lease ran out), and imports it chunk by chunk from its next unimported row.
//!
//! Each chunk of [`CHUNK_ROWS`] rows is one transaction: the job's lease is checked and renewed
//! (the job must still stand where this process left it), the chunk's subscribers are added,
//! and the job's counters move past the chunk. A process killed at any point has either
//! committed a chunk whole or not at all, so the next one resumes at the first row not imported,
//! and no row is counted or imported twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{watch, Notify};

use crate::foundation::config::Settings;
use crate::foundation::db::{self, DbConnection, DbError, Pool};
use crate::stores::audit;
use crate::stores::imports::{self, Counters, Job};
use crate::stores::subscriptions::directory::ImportOptions;
use crate::stores::subscriptions::import::{self as rows, ImportRow, Row, Rows};

/// Rows per transaction.
pub const CHUNK_ROWS: usize = 5_000;

/// How often an idle runner looks for a job.
const POLL: Duration = Duration::from_secs(1);

/// How many times a chunk that failed is tried again before its job is marked failed.
const CHUNK_ATTEMPTS: u32 = 3;

/// How a job this process took ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ran {
    /// Imported to its end: the job's counters.
    Done(i64),
    /// Given up after its chunk failed [`CHUNK_ATTEMPTS`] times.
    Failed(i64, String),
    /// Another process holds it now (this one's lease ran out).
    Lost(i64),
    /// Handed back to the queue because this process is stopping.
    Released(i64),
}

/// Imports the jobs in the queue, one at a time.
#[derive(Clone)]
pub struct ImportRunner {
    settings: Arc<Settings>,
    pool: Pool,
    owner: String,
    /// Wakes this process's delivery worker when an import queued confirmation emails.
    wake: Option<Arc<Notify>>,
}

impl ImportRunner {
    pub fn new(settings: Arc<Settings>, pool: Pool, wake: Option<Arc<Notify>>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let owner = format!(
            "imports:{host}:{}:{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        Self {
            settings,
            pool,
            owner,
            wake,
        }
    }

    /// Runs until `shutdown` turns true: a job under way is handed back after its chunk in hand.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let stop = Arc::new(AtomicBool::new(false));
        loop {
            if *shutdown.borrow() {
                return;
            }
            let runner = self.clone();
            let flag = stop.clone();
            let mut job = tokio::task::spawn_blocking(move || runner.run_one(&flag));
            let result = tokio::select! {
                result = &mut job => result,
                _ = shutdown.changed() => {
                    stop.store(true, Ordering::SeqCst);
                    let _ = job.await;
                    return;
                }
            };
            let ran = match result {
                Ok(Ok(ran)) => ran,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "import jobs: the database did not answer; next time");
                    None
                }
                Err(error) => {
                    tracing::error!(%error, "import jobs: the import task failed");
                    None
                }
            };
            if ran.is_none() {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Claims one job and imports it to its end (blocking: call it off the async threads).
    /// `None` when no job was waiting.
    pub fn run_one(&self, stop: &AtomicBool) -> Result<Option<Ran>, DbError> {
        let mut conn = self.pool.get()?;
        let now = db::now();
        let Some((job, data)) = imports::claim(&mut conn, &self.owner, now, self.lease_until())?
        else {
            return Ok(None);
        };
        tracing::info!(
            job = job.id,
            rows = job.rows_total,
            from = job.rows_done,
            "import job started"
        );
        let ran = self.import(&mut conn, &job, &data, stop)?;
        match &ran {
            Ran::Done(id) => tracing::info!(job = id, "import job done"),
            Ran::Failed(id, why) => tracing::error!(job = id, %why, "import job failed"),
            Ran::Lost(id) => tracing::warn!(job = id, "import job taken over by another process"),
            Ran::Released(id) => tracing::info!(job = id, "import job handed back"),
        }
        Ok(Some(ran))
    }

    fn lease_until(&self) -> chrono::NaiveDateTime {
        let lease = chrono::Duration::from_std(self.settings.import_lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        db::now() + lease
    }

    /// The job's rows from where it stands, chunk by chunk, then its end.
    fn import(
        &self,
        conn: &mut DbConnection,
        job: &Job,
        data: &[u8],
        stop: &AtomicBool,
    ) -> Result<Ran, DbError> {
        let options = ImportOptions {
            consent_held: job.consent_held,
            source: job.source.clone(),
            editor: job.created_by.clone(),
        };
        let mut reader = Rows::new(data, &self.settings.topics);
        reader.skip_rows(u64::try_from(job.rows_done).unwrap_or(0));
        let mut counters = Counters::of(job);
        loop {
            if stop.load(Ordering::SeqCst) {
                imports::release(conn, job.id, &self.owner)?;
                return Ok(Ran::Released(job.id));
            }
            let chunk = reader.take_rows(CHUNK_ROWS);
            if chunk.is_empty() {
                break;
            }
            let mut attempt = 0;
            let next = loop {
                attempt += 1;
                match self.write_chunk(conn, job.id, &chunk, &counters, &options) {
                    Ok(next) => break next,
                    Err(e) if attempt < CHUNK_ATTEMPTS => {
                        tracing::warn!(job = job.id, error = %e, "import chunk failed; again");
                        std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                    }
                    Err(e) => {
                        let why = format!("row {}: {e}", counters.rows_done + 1);
                        self.end(conn, job, &counters, Some(&why))?;
                        return Ok(Ran::Failed(job.id, why));
                    }
                }
            };
            let Some(next) = next else {
                return Ok(Ran::Lost(job.id));
            };
            if !job.consent_held && next.rows_imported > counters.rows_imported {
                if let Some(wake) = &self.wake {
                    wake.notify_waiters();
                }
            }
            counters = next;
        }
        if self.end(conn, job, &counters, None)? {
            Ok(Ran::Done(job.id))
        } else {
            Ok(Ran::Lost(job.id))
        }
    }

    /// One chunk in one transaction: the lease held from where the job stands, the good rows
    /// added, the counters moved past the chunk. `None` when the job is not this process's any
    /// more (nothing written).
    fn write_chunk(
        &self,
        conn: &mut DbConnection,
        id: i64,
        chunk: &[Row],
        counters: &Counters,
        options: &ImportOptions,
    ) -> Result<Option<Counters>, DbError> {
        let lease_until = self.lease_until();
        db::write_transaction(conn, |conn| {
            if !imports::hold(conn, id, &self.owner, counters.rows_done, lease_until)? {
                return Ok(None);
            }
            let mut next = counters.clone();
            let mut good: Vec<ImportRow> = Vec::with_capacity(chunk.len());
            for row in chunk {
                match row {
                    Row::Good(r) => good.push(r.clone()),
                    Row::Bad(line, why) => next.reject(*line, why),
                }
            }
            let written = rows::write_chunk(conn, &self.settings, &good, options)?;
            next.rows_imported += written.imported as i64;
            for (line, email, status) in &written.existing {
                next.on_file(*line, email, status);
            }
            next.rows_done += chunk.len() as i64;
            imports::record_chunk(conn, id, &next)?;
            Ok(Some(next))
        })
    }

    /// Marks the job done (or failed) with its audit entry, in one transaction; `false` when the
    /// job is not this process's any more.
    fn end(
        &self,
        conn: &mut DbConnection,
        job: &Job,
        counters: &Counters,
        failure: Option<&str>,
    ) -> Result<bool, DbError> {
        db::write_transaction(conn, |conn| {
            if !imports::finish(conn, job.id, &self.owner, failure)? {
                return Ok(false);
            }
            let (confirmed, invited) = if job.consent_held {
                (counters.rows_imported, 0)
            } else {
                (0, counters.rows_imported)
            };
            let mut detail = format!(
                "{} rows accepted ({confirmed} confirmed, {invited} invited), {} already on file, \
                 {} refused (import job {}, {})",
                counters.rows_imported,
                counters.rows_existing,
                counters.rows_rejected,
                job.id,
                job.file_name
            );
            if let Some(why) = failure {
                detail.push_str(&format!("; failed at {why}"));
            }
            // The command line's jobs are "command line"; the console's name their editor.
            let actor = if job.created_by == "command line" {
                job.created_by.clone()
            } else {
                format!("editor {}", job.created_by)
            };
            let entry = audit::Entry::new(actor, job.created_ip.as_str(), "subscribers imported");
            audit::record(conn, &entry.detail(detail))?;
            Ok(true)
        })
    }
}

/// An upload to import.
pub struct Upload<'a> {
    pub file_name: &'a str,
    pub data: &'a [u8],
    pub options: &'a ImportOptions,
    /// Where it came from: the editor's address, or empty (the command line).
    pub ip: &'a str,
}

/// What became of an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued as this job, with this many rows.
    Job { id: i64, rows: i64 },
    /// No data row in the file.
    Empty,
    /// More rows than [`rows::MAX_IMPORT_ROWS`]: this many.
    TooManyRows(u64),
}

/// Counts an upload's rows and queues it as a job (the runner imports it); the console's form
/// and `iria-news import` both come here.
pub fn enqueue(conn: &mut DbConnection, upload: &Upload) -> Result<Enqueued, DbError> {
    let rows = rows::count_rows(upload.data);
    if rows == 0 {
        return Ok(Enqueued::Empty);
    }
    if rows > rows::MAX_IMPORT_ROWS as u64 {
        return Ok(Enqueued::TooManyRows(rows));
    }
    let rows = rows as i64;
    let name: String = (upload.file_name.chars())
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let id = imports::create(
        conn,
        &imports::NewJob {
            file_name: &name,
            data: upload.data,
            consent_held: upload.options.consent_held,
            source: &upload.options.source,
            created_by: &upload.options.editor,
            created_ip: upload.ip,
            rows_total: rows,
        },
    )?;
    Ok(Enqueued::Job { id, rows })
}
