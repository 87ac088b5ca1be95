//! The CSV import: reading a file row by row (each bad row reported with its line number), and
//! writing a chunk of good rows at once. The job that drives it (where it stands, in which
//! transaction each chunk goes) is `processes::imports`; the job's row is `stores::imports`.

use std::collections::HashSet;

use diesel::prelude::*;

use super::directory::{self, Added, ImportOptions};
use crate::foundation::config::Settings;
use crate::foundation::db::schema::{consents, subscribers};
use crate::foundation::db::{self, DbConnection, DbError};
use crate::foundation::domain::{SubscriberEmail, SubscriberName, SubscriberStatus, Topics};
use crate::stores::webhooks;

/// The most rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 1_000_000;

/// Rows per INSERT statement: under SQLite's limit of bound variables (9 columns × 1,000).
const ROWS_PER_STATEMENT: usize = 1_000;

/// Which columns of an import hold what.
#[derive(Clone, Copy, Debug)]
struct Columns {
    email: usize,
    name: Option<usize>,
    topics: Option<usize>,
}

impl Default for Columns {
    /// A file without a header row: email, name and topics in that order.
    fn default() -> Self {
        Columns {
            email: 0,
            name: Some(1),
            topics: Some(2),
        }
    }
}

impl Columns {
    /// The columns a header row names; `None` when the row names no email column, so that it
    /// is data rather than a header.
    fn from_header(record: &csv::StringRecord) -> Option<Self> {
        let lower: Vec<String> = record.iter().map(|f| f.to_lowercase()).collect();
        let email = lower
            .iter()
            .position(|f| f == "email" || f == "e-mail" || f == "email address")?;
        Some(Columns {
            email,
            name: lower.iter().position(|f| f == "name"),
            topics: lower.iter().position(|f| f == "topics"),
        })
    }
}

/// A row that passed every check, waiting to be added.
#[derive(Clone, Debug)]
pub struct ImportRow {
    pub line: u64,
    pub email: SubscriberEmail,
    pub name: Option<SubscriberName>,
    pub topics: Topics,
}

/// One data row of a file: good, or why not (with its line number).
#[derive(Clone, Debug)]
pub enum Row {
    Good(ImportRow),
    Bad(u64, String),
}

/// The data rows of a file, in order: the header row (a first row naming `email`) and empty rows
/// are not rows. The same file always yields the same rows, so that a job resumed after its
/// process died can skip the ones it imported ([`Rows::skip_rows`]): an address seen in the rows
/// skipped still makes a later copy "appears earlier in the file".
pub struct Rows<'a> {
    data: &'a [u8],
    reader: csv::Reader<&'a [u8]>,
    record: csv::StringRecord,
    columns: Columns,
    index: u64,
    seen: HashSet<String>,
    known_topics: &'a [String],
}

impl<'a> Rows<'a> {
    /// Reads a header row naming `email` (and optionally `name`, `topics`) or no header and the
    /// columns in that order; topics separated by `;`.
    pub fn new(data: &'a [u8], known_topics: &'a [String]) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(data);
        Rows {
            data,
            reader,
            record: csv::StringRecord::new(),
            columns: Columns::default(),
            index: 0,
            seen: HashSet::new(),
            known_topics,
        }
    }

    /// Passes over the first `n` rows (imported already), remembering their addresses.
    pub fn skip_rows(&mut self, n: u64) {
        for _ in 0..n {
            if self.next().is_none() {
                return;
            }
        }
    }

    /// The blank lines a record's position counts from (the reader passes over them, and gives
    /// the line of the first): so that a row is reported at its own line.
    fn blank_lines_at(&self, byte: u64) -> u64 {
        let start = usize::try_from(byte).unwrap_or(usize::MAX);
        let rest = self.data.get(start..).unwrap_or_default();
        (rest.iter())
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .filter(|b| **b == b'\n')
            .count() as u64
    }

    /// The next `n` rows at most.
    pub fn take_rows(&mut self, n: usize) -> Vec<Row> {
        self.by_ref().take(n).collect()
    }
}

impl Iterator for Rows<'_> {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        loop {
            let index = self.index;
            let read = self.reader.read_record(&mut self.record);
            self.index += 1;
            match read {
                Ok(false) => return None,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(index + 1);
                    // An I/O error cannot happen on bytes in memory; a bad record is one row.
                    return Some(Row::Bad(line, format!("not readable as CSV: {e}")));
                }
                Ok(true) => {}
            }
            let line = match self.record.position() {
                Some(p) => p.line() + self.blank_lines_at(p.byte()),
                None => index + 1,
            };
            if index == 0 {
                if let Some(header) = Columns::from_header(&self.record) {
                    self.columns = header;
                    continue;
                }
            }
            if self.record.iter().all(str::is_empty) {
                continue;
            }
            let row = match parse_row(&self.record, self.columns, self.known_topics) {
                Err(why) => Row::Bad(line, why),
                Ok((email, _, _)) if !self.seen.insert(email.as_str().to_string()) => {
                    Row::Bad(line, format!("{email}: appears earlier in the file"))
                }
                Ok((email, name, topics)) => Row::Good(ImportRow {
                    line,
                    email,
                    name,
                    topics,
                }),
            };
            return Some(row);
        }
    }
}

/// How many data rows a file has (what a job's progress counts to).
pub fn count_rows(data: &[u8]) -> u64 {
    Rows::new(data, &[]).count() as u64
}

/// One data row's address, name and topics, or why the row cannot be imported.
fn parse_row(
    record: &csv::StringRecord,
    columns: Columns,
    known_topics: &[String],
) -> Result<(SubscriberEmail, Option<SubscriberName>, Topics), String> {
    let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("");
    let email = SubscriberEmail::parse(field(Some(columns.email))).map_err(|why| {
        let shown: String = field(Some(columns.email)).chars().take(80).collect();
        format!("{shown:?}: {why}")
    })?;
    let name =
        SubscriberName::parse(field(columns.name)).map_err(|why| format!("{email}: {why}"))?;
    let chosen: Vec<String> = field(columns.topics)
        .split([';', '|', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let topics = Topics::parse(&chosen, known_topics).map_err(|why| format!("{email}: {why}"))?;
    Ok((email, name, topics))
}

/// What writing a chunk did.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// New subscribers (confirmed, or pending with a confirmation email queued).
    pub imported: u64,
    /// Addresses on file already, left as they were: (line, address, status).
    pub existing: Vec<(u64, String, String)>,
}

/// Adds a chunk of good rows, in the caller's transaction. Addresses on file are left as they
/// are (an import never resubscribes someone who left). With consent held the rows go in a few
/// multi-row statements; otherwise each new address is signed up (a pending subscriber, a
/// token and a confirmation email), one at a time.
pub fn write_chunk(
    conn: &mut DbConnection,
    settings: &Settings,
    rows: &[ImportRow],
    options: &ImportOptions,
) -> Result<Written, DbError> {
    if options.consent_held {
        let mut written = Written::default();
        for part in rows.chunks(ROWS_PER_STATEMENT) {
            add_confirmed_rows(conn, part, options, &mut written)?;
        }
        return Ok(written);
    }
    let mut written = Written::default();
    for row in rows {
        let added = directory::add(
            conn,
            settings,
            row.email.clone(),
            row.name.clone(),
            row.topics.clone(),
            options,
        )?;
        match added {
            Added::Existing(_, status, email) => written.existing.push((row.line, email, status)),
            Added::Confirmed(_) | Added::Invited(_) => written.imported += 1,
        }
    }
    Ok(written)
}

/// Up to [`ROWS_PER_STATEMENT`] rows as confirmed subscribers: one INSERT … ON CONFLICT DO
/// NOTHING for the subscribers, one for their consent records, and `subscriber.confirmed` for
/// each when a webhook listens. The rows left out were on file: their statuses are looked up.
fn add_confirmed_rows(
    conn: &mut DbConnection,
    rows: &[ImportRow],
    options: &ImportOptions,
    written: &mut Written,
) -> Result<(), DbError> {
    let now = db::now();
    let confirmed = SubscriberStatus::Confirmed.as_str();
    let values: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                subscribers::email.eq(r.email.as_str()),
                subscribers::name.eq(r.name.as_ref().map(SubscriberName::as_str)),
                subscribers::status.eq(confirmed),
                subscribers::topics.eq(r.topics.to_stored()),
                subscribers::created_at.eq(now),
                subscribers::updated_at.eq(now),
                subscribers::confirmed_at.eq(Some(now)),
            )
        })
        .collect();
    let insert = diesel::insert_into(subscribers::table)
        .values(values)
        .on_conflict_do_nothing()
        .returning((subscribers::id, subscribers::email));
    let inserted: Vec<(i64, String)> = match conn {
        DbConnection::Pg(pg) => insert.get_results(pg)?,
        DbConnection::Sqlite(lite) => insert.get_results(lite)?,
    };
    let ids: std::collections::HashMap<&str, i64> =
        inserted.iter().map(|(id, e)| (e.as_str(), *id)).collect();
    let source = format!("import: {}", options.source);
    let user_agent = format!("imported by editor {}", options.editor);
    let consents: Vec<_> = rows
        .iter()
        .filter_map(|r| Some((ids.get(r.email.as_str())?, r)))
        .map(|(id, r)| {
            (
                consents::subscriber_id.eq(*id),
                consents::requested_at.eq(now),
                consents::ip.eq(""),
                consents::user_agent.eq(&user_agent),
                consents::source.eq(&source),
                consents::consent_text_version.eq("held by the editors"),
                consents::name.eq(r.name.as_ref().map(SubscriberName::as_str)),
                consents::topics.eq(r.topics.to_stored()),
                consents::confirmed_at.eq(Some(now)),
            )
        })
        .collect();
    if !consents.is_empty() {
        let insert = diesel::insert_into(consents::table).values(consents);
        match conn {
            DbConnection::Pg(pg) => insert.execute(pg)?,
            DbConnection::Sqlite(lite) => insert.execute(lite)?,
        };
    }
    let event = webhooks::Event::SubscriberConfirmed;
    if !inserted.is_empty() && webhooks::wanted(conn, event)? {
        for (id, _) in &inserted {
            webhooks::emit_subscriber(conn, event, *id)?;
        }
    }
    written.imported += inserted.len() as u64;
    let left: Vec<&ImportRow> = rows
        .iter()
        .filter(|r| !ids.contains_key(r.email.as_str()))
        .collect();
    on_file(conn, &left, written)
}

/// Notes the rows whose address was on file already, with its status.
fn on_file(
    conn: &mut DbConnection,
    left: &[&ImportRow],
    written: &mut Written,
) -> Result<(), DbError> {
    if left.is_empty() {
        return Ok(());
    }
    let statuses: std::collections::HashMap<String, String> = subscribers::table
        .filter(subscribers::email.eq_any(left.iter().map(|r| r.email.as_str())))
        .select((subscribers::email, subscribers::status))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    for r in left {
        let status = statuses.get(r.email.as_str()).cloned().unwrap_or_default();
        (written.existing).push((r.line, r.email.as_str().to_string(), status));
    }
    Ok(())
}
