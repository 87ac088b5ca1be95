//! CSV import jobs: an editor's upload kept until a worker has imported it, where the import
//! stands, and the lease of the process running it.
//!
//! A job is `queued` at the upload, `running` while a process holds its lease (renewed with every
//! chunk), then `done` or `failed`. Its counters move only in [`record_chunk`], which the runner
//! calls in the same transaction as the chunk's subscribers, and only from the row count it
//! expects and under its own lease: a process that lost its lease, or died mid-chunk, leaves the
//! job exactly where its last committed chunk put it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::import_jobs;
use crate::foundation::db::{self, DbConnection};

/// How many bad rows (and rows on file already) a job keeps to show, with their line numbers.
pub const KEPT_LINES: usize = 100;

/// A job as the console shows it (without its file).
#[derive(Clone, Debug, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = import_jobs)]
pub struct Job {
    pub id: i64,
    pub file_name: String,
    pub consent_held: bool,
    pub source: String,
    pub status: String,
    pub rows_total: i64,
    pub rows_done: i64,
    pub rows_imported: i64,
    pub rows_existing: i64,
    pub rows_rejected: i64,
    /// The first [`KEPT_LINES`] bad rows, `line<TAB>why` each.
    pub errors: String,
    /// The first [`KEPT_LINES`] rows on file already, `line<TAB>address<TAB>status` each.
    pub existing: String,
    pub failure: Option<String>,
    pub created_by: String,
    /// Where the upload came from (the audit entry at its end names it).
    pub created_ip: String,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
}

impl Job {
    /// Whether a worker has yet to finish it.
    pub fn is_open(&self) -> bool {
        self.status == "queued" || self.status == "running"
    }

    /// The bad rows kept: (line, why).
    pub fn error_lines(&self) -> Vec<(String, String)> {
        (self.errors.lines())
            .filter_map(|l| l.split_once('\t'))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The rows on file kept: (line, address, status).
    pub fn existing_lines(&self) -> Vec<(String, String, String)> {
        (self.existing.lines())
            .filter_map(|l| {
                let mut parts = l.splitn(3, '\t');
                Some((
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                ))
            })
            .collect()
    }
}

/// An upload to import.
pub struct NewJob<'a> {
    pub file_name: &'a str,
    pub data: &'a [u8],
    pub consent_held: bool,
    pub source: &'a str,
    pub created_by: &'a str,
    pub created_ip: &'a str,
    pub rows_total: i64,
}

/// Stores an upload as a queued job; returns its id.
pub fn create(conn: &mut DbConnection, job: &NewJob) -> QueryResult<i64> {
    diesel::insert_into(import_jobs::table)
        .values((
            import_jobs::file_name.eq(job.file_name),
            import_jobs::data.eq(job.data),
            import_jobs::consent_held.eq(job.consent_held),
            import_jobs::source.eq(job.source),
            import_jobs::status.eq("queued"),
            import_jobs::rows_total.eq(job.rows_total),
            import_jobs::created_by.eq(job.created_by),
            import_jobs::created_ip.eq(job.created_ip),
            import_jobs::created_at.eq(db::now()),
        ))
        .returning(import_jobs::id)
        .get_result(conn)
}

/// One job.
pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Job>> {
    import_jobs::table
        .find(id)
        .select(Job::as_select())
        .first(conn)
        .optional()
}

/// The latest jobs, newest first.
pub fn recent(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Job>> {
    import_jobs::table
        .order(import_jobs::id.desc())
        .limit(limit)
        .select(Job::as_select())
        .load(conn)
}

/// Takes the oldest job that is queued or whose lease ran out, for `owner` until `lease_until`:
/// the job and its file. The update names the state it saw, so that of two processes claiming
/// at once only one gets the job.
pub fn claim(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<Option<(Job, Vec<u8>)>> {
    let claimable = import_jobs::status.eq("queued").or(import_jobs::status
        .eq("running")
        .and(import_jobs::lease_until.lt(now)));
    let candidate: Option<i64> = import_jobs::table
        .filter(claimable)
        .order(import_jobs::id)
        .select(import_jobs::id)
        .first(conn)
        .optional()?;
    let Some(id) = candidate else {
        return Ok(None);
    };
    let taken = diesel::update(import_jobs::table.find(id).filter(claimable))
        .set((
            import_jobs::status.eq("running"),
            import_jobs::lease_owner.eq(owner),
            import_jobs::lease_until.eq(lease_until),
        ))
        .execute(conn)?;
    if taken == 0 {
        return Ok(None);
    }
    diesel::update(
        import_jobs::table
            .find(id)
            .filter(import_jobs::started_at.is_null()),
    )
    .set(import_jobs::started_at.eq(Some(now)))
    .execute(conn)?;
    let (job, data) = import_jobs::table
        .find(id)
        .select((Job::as_select(), import_jobs::data))
        .first(conn)?;
    Ok(Some((job, data)))
}

/// Renews `owner`'s lease on a job that still stands at `rows_done`; `false` when the lease is
/// lost or the job moved (another process has it). Called first in a chunk's transaction: on
/// PostgreSQL it also locks the row until the chunk commits.
pub fn hold(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    rows_done: i64,
    lease_until: NaiveDateTime,
) -> QueryResult<bool> {
    let updated = diesel::update(
        import_jobs::table
            .find(id)
            .filter(import_jobs::status.eq("running"))
            .filter(import_jobs::lease_owner.eq(owner))
            .filter(import_jobs::rows_done.eq(rows_done)),
    )
    .set(import_jobs::lease_until.eq(lease_until))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Where a job stands after a chunk: the counters and the kept lines as they now are.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub rows_done: i64,
    pub rows_imported: i64,
    pub rows_existing: i64,
    pub rows_rejected: i64,
    pub errors: String,
    pub existing: String,
}

impl Counters {
    /// The counters of a job as read.
    pub fn of(job: &Job) -> Self {
        Counters {
            rows_done: job.rows_done,
            rows_imported: job.rows_imported,
            rows_existing: job.rows_existing,
            rows_rejected: job.rows_rejected,
            errors: job.errors.clone(),
            existing: job.existing.clone(),
        }
    }

    /// Counts a bad row, keeping it while fewer than [`KEPT_LINES`] are kept.
    pub fn reject(&mut self, line: u64, why: &str) {
        if (self.rows_rejected as usize) < KEPT_LINES {
            let why: String = why.chars().filter(|c| !c.is_control()).take(300).collect();
            self.errors.push_str(&format!("{line}\t{why}\n"));
        }
        self.rows_rejected += 1;
    }

    /// Counts a row on file already, keeping it while fewer than [`KEPT_LINES`] are kept.
    pub fn on_file(&mut self, line: u64, email: &str, status: &str) {
        if (self.rows_existing as usize) < KEPT_LINES {
            self.existing
                .push_str(&format!("{line}\t{email}\t{status}\n"));
        }
        self.rows_existing += 1;
    }
}

/// Writes a chunk's counters, in the chunk's transaction, after [`hold`] said the job is ours.
pub fn record_chunk(conn: &mut DbConnection, id: i64, counters: &Counters) -> QueryResult<()> {
    diesel::update(import_jobs::table.find(id))
        .set((
            import_jobs::rows_done.eq(counters.rows_done),
            import_jobs::rows_imported.eq(counters.rows_imported),
            import_jobs::rows_existing.eq(counters.rows_existing),
            import_jobs::rows_rejected.eq(counters.rows_rejected),
            import_jobs::errors.eq(&counters.errors),
            import_jobs::existing.eq(&counters.existing),
        ))
        .execute(conn)?;
    Ok(())
}

/// Ends `owner`'s job: `done` (its file is let go: the addresses are in the list now), or
/// `failed` with why. `false` when the job is not `owner`'s any more.
pub fn finish(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    failure: Option<&str>,
) -> QueryResult<bool> {
    let status = if failure.is_some() { "failed" } else { "done" };
    let job = import_jobs::table
        .find(id)
        .filter(import_jobs::status.eq("running"))
        .filter(import_jobs::lease_owner.eq(owner));
    let ended = (
        import_jobs::status.eq(status),
        import_jobs::failure.eq(failure),
        import_jobs::finished_at.eq(Some(db::now())),
        import_jobs::lease_owner.eq(None::<String>),
        import_jobs::lease_until.eq(None::<NaiveDateTime>),
    );
    // The file is emptied once every row is in; a failed job keeps it, so that the rows after
    // the failure are not lost with it.
    let updated = if failure.is_some() {
        diesel::update(job).set(ended).execute(conn)?
    } else {
        diesel::update(job)
            .set((ended, import_jobs::data.eq(Vec::<u8>::new())))
            .execute(conn)?
    };
    Ok(updated == 1)
}

/// Hands a job back to the queue (its process is stopping): another takes it up at once, from
/// where it stands.
pub fn release(conn: &mut DbConnection, id: i64, owner: &str) -> QueryResult<bool> {
    let updated = diesel::update(
        import_jobs::table
            .find(id)
            .filter(import_jobs::status.eq("running"))
            .filter(import_jobs::lease_owner.eq(owner)),
    )
    .set((
        import_jobs::status.eq("queued"),
        import_jobs::lease_owner.eq(None::<String>),
        import_jobs::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}
