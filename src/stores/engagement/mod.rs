//! Engagement: each issue's links, stored once per issue in order when it is composed, and the
//! clicks (and opens) on them. The only writer of `issue_links` and `clicks`.
//!
//! In `anonymous` mode a click adds one to its link's counter and nothing else is kept. In
//! `personal` mode it is a row naming the delivered copy (and so the reader), which the reader's
//! data download shows and erasure folds back into the anonymous counters. Whether a click was a
//! person's or a machine's is decided before it is written (see `processes::clicks` and
//! [`record`]); a click on a copy's hidden link makes all of that copy's clicks a machine's.
//!
//! A low store: the issues store calls it to keep an issue's links in the issue's transaction,
//! and the subscriptions store to forget a reader.

mod reports;
pub use reports::{
    article_clicks, digest_of, digest_report, recent, report_of, reports_of, ArticleReport,
    AudienceReport, IssueReport, LinkReport, Shown,
};

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::{clicks, deliveries, issue_links, subscribers};
use crate::foundation::db::DbConnection;
use crate::foundation::tracking::{OPEN_POSITION, TRAP_POSITION};

mod counters;
mod readers;
pub use readers::{
    forget_subscriber, history_of, inactive_condition, inactive_ids, last_click_at,
    personal_digests, ReaderClick, MAX_INACTIVE_DIGESTS, PERSONAL,
};

/// A click this soon after its copy was delivered is a machine's: a person has not opened the
/// message yet, a mail scanner has.
pub const MACHINE_SECONDS_AFTER_DELIVERY: i64 = 10;

/// One link of a composed issue, at the position of its place in [`Links`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueLink {
    pub url: String,
    /// The article the link leads to (a digest's).
    pub article_id: Option<i64>,
}

/// The links of a composed issue, in order: the first is the hidden link (position 0), then the
/// issue's own links (1..). Empty when the issue was composed with click tracking off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    pub links: Vec<IssueLink>,
    /// Whether the HTML part carries the open image.
    pub open_image: bool,
    /// The click tracking mode the issue was composed in (`anonymous`, `personal`); `None` with
    /// tracking off. The issues store keeps it on the issue (`issues.click_tracking`).
    pub mode: Option<String>,
}

/// Stores the links of a new issue (inside the issue's transaction).
pub fn store_links(conn: &mut DbConnection, issue_id: i64, links: &Links) -> QueryResult<usize> {
    let mut rows: Vec<_> = links
        .links
        .iter()
        .enumerate()
        .map(|(position, link)| {
            (
                issue_links::issue_id.eq(issue_id),
                issue_links::position.eq(position as i32),
                issue_links::url.eq(link.url.as_str()),
                issue_links::article_id.eq(link.article_id),
            )
        })
        .collect();
    if links.open_image {
        rows.push((
            issue_links::issue_id.eq(issue_id),
            issue_links::position.eq(OPEN_POSITION),
            issue_links::url.eq(""),
            issue_links::article_id.eq(None),
        ));
    }
    let mut written = 0;
    // SQLite takes at most 32,766 bound values a statement: 4 a row.
    for chunk in rows.chunks(1000) {
        let insert = diesel::insert_into(issue_links::table).values(chunk);
        // A multi-row insert is written for each backend (the connection type of both cannot).
        written += match conn {
            DbConnection::Pg(pg) => insert.execute(pg)?,
            DbConnection::Sqlite(lite) => insert.execute(lite)?,
        };
    }
    Ok(written)
}

/// The addresses of these issues' links, by issue, indexed by position (0: the hidden link).
pub fn urls_of(
    conn: &mut DbConnection,
    issue_ids: &[i64],
) -> QueryResult<HashMap<i64, Vec<String>>> {
    let rows: Vec<(i64, i32, String)> = issue_links::table
        .filter(issue_links::issue_id.eq_any(issue_ids))
        .filter(issue_links::position.ge(TRAP_POSITION))
        .order((issue_links::issue_id, issue_links::position))
        .select((
            issue_links::issue_id,
            issue_links::position,
            issue_links::url,
        ))
        .load(conn)?;
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for (issue_id, position, url) in rows {
        let urls = out.entry(issue_id).or_default();
        // Positions are dense from 0; a gap (never written) would shift the rest.
        while urls.len() < position as usize {
            urls.push(String::new());
        }
        urls.push(url);
    }
    Ok(out)
}

/// Where a tracked link leads: the address stored for this issue and position.
pub fn url_at(
    conn: &mut DbConnection,
    issue_id: i64,
    position: i32,
) -> QueryResult<Option<String>> {
    issue_links::table
        .find((issue_id, position))
        .select(issue_links::url)
        .first(conn)
        .optional()
}

/// Whether this issue has an open image (so its opens are counted).
pub fn has_open_image(conn: &mut DbConnection, issue_id: i64) -> QueryResult<bool> {
    Ok(url_at(conn, issue_id, OPEN_POSITION)?.is_some())
}

/// One click (or open) as the recorder hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Click {
    pub issue_id: i64,
    pub position: i32,
    /// The delivered copy, when clicks are recorded per reader.
    pub delivery_id: Option<i64>,
    pub at: NaiveDateTime,
    /// Found to be a machine's before it got here (its user agent, a burst of links).
    pub machine: bool,
    /// An earlier click of this copy (or address), already written as a person's, that a later
    /// one showed to be a machine's: moved from the reader clicks to the machine clicks.
    pub reclassify: bool,
}

/// What one [`record`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub reader: usize,
    pub machine: usize,
}

/// Writes a batch of clicks in one transaction. Clicks naming a copy (`personal` mode) become
/// rows, unless their reader has been erased (or the copy is unknown): those, like every click
/// naming none, only add to their link's counters. A click on the hidden link, a click on a copy
/// whose hidden link was clicked, and a click within [`MACHINE_SECONDS_AFTER_DELIVERY`] of the
/// copy's delivery are a machine's.
pub fn record(conn: &mut DbConnection, batch: &[Click]) -> QueryResult<Recorded> {
    crate::foundation::db::write_transaction(conn, |conn| record_in(conn, batch))
}

/// The copies of a batch still tied to a reader (with when each was delivered), and those whose
/// hidden link was clicked already.
type Copies = (HashMap<i64, Option<NaiveDateTime>>, HashSet<i64>);

fn copies_of(conn: &mut DbConnection, batch: &[Click]) -> QueryResult<Copies> {
    let mut ids: Vec<i64> = batch.iter().filter_map(|c| c.delivery_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut copies: HashMap<i64, Option<NaiveDateTime>> = HashMap::new();
    let mut trapped: HashSet<i64> = HashSet::new();
    for chunk in ids.chunks(5000) {
        let query = deliveries::table
            .inner_join(subscribers::table)
            .filter(deliveries::id.eq_any(chunk))
            .filter(subscribers::erased_at.is_null())
            .select((deliveries::id, deliveries::finished_at));
        // On PostgreSQL the readers' rows are held until the clicks are written, so that an
        // erasure (which locks its reader first) either sees these rows or is seen to have
        // happened. (SQLite's writers take turns.)
        let rows: Vec<(i64, Option<NaiveDateTime>)> = match conn {
            DbConnection::Pg(pg) => query.for_share().load(pg)?,
            DbConnection::Sqlite(_) => query.load(conn)?,
        };
        copies.extend(rows);
        let hit: Vec<i64> = clicks::table
            .filter(clicks::delivery_id.eq_any(chunk))
            .filter(clicks::position.eq(TRAP_POSITION))
            .select(clicks::delivery_id)
            .load(conn)?;
        trapped.extend(hit);
    }
    Ok((copies, trapped))
}

fn record_in(conn: &mut DbConnection, batch: &[Click]) -> QueryResult<Recorded> {
    let (copies, mut trapped) = copies_of(conn, batch)?;
    let mut counters: HashMap<(i64, i32), (i64, i64)> = HashMap::new();
    let mut rows: Vec<NewClick> = Vec::new();
    let mut done = Recorded::default();
    for click in batch {
        let copy = click.delivery_id.filter(|d| copies.contains_key(d));
        let Some(delivery_id) = copy else {
            let entry = counters
                .entry((click.issue_id, click.position))
                .or_default();
            if click.reclassify {
                entry.0 -= 1;
                entry.1 += 1;
            } else if click.machine || click.position == TRAP_POSITION {
                entry.1 += 1;
                done.machine += 1;
            } else {
                entry.0 += 1;
                done.reader += 1;
            }
            continue;
        };
        if click.reclassify {
            diesel::update(
                clicks::table
                    .filter(clicks::delivery_id.eq(delivery_id))
                    .filter(clicks::position.eq(click.position))
                    .filter(clicks::clicked_at.ge(click.at - chrono::Duration::seconds(1))),
            )
            .set(clicks::machine.eq(true))
            .execute(conn)?;
            continue;
        }
        if click.position == TRAP_POSITION && trapped.insert(delivery_id) {
            // Every click of this copy, before and after, was a machine's.
            diesel::update(clicks::table.filter(clicks::delivery_id.eq(delivery_id)))
                .set(clicks::machine.eq(true))
                .execute(conn)?;
            for row in rows.iter_mut().filter(|r| r.delivery_id == delivery_id) {
                row.machine = true;
            }
        }
        // A copy not yet recorded as sent was sent a moment ago: its worker records a batch at a
        // time.
        let too_soon = copies[&delivery_id].is_none_or(|delivered| {
            (click.at - delivered).num_seconds() < MACHINE_SECONDS_AFTER_DELIVERY
        });
        let machine = click.machine
            || click.position == TRAP_POSITION
            || trapped.contains(&delivery_id)
            || too_soon;
        rows.push(NewClick {
            delivery_id,
            issue_id: click.issue_id,
            position: click.position,
            clicked_at: click.at,
            machine,
        });
    }
    write(conn, &rows, counters, &mut done)?;
    Ok(done)
}

/// Inserts the click rows and adds to the links' counters.
fn write(
    conn: &mut DbConnection,
    rows: &[NewClick],
    counters: HashMap<(i64, i32), (i64, i64)>,
    done: &mut Recorded,
) -> QueryResult<()> {
    for row in rows {
        if row.machine {
            done.machine += 1;
        } else {
            done.reader += 1;
        }
    }
    for chunk in rows.chunks(2000) {
        let insert = diesel::insert_into(clicks::table).values(chunk);
        match conn {
            DbConnection::Pg(pg) => insert.execute(pg)?,
            DbConnection::Sqlite(lite) => insert.execute(lite)?,
        };
    }
    for ((issue_id, position), (reader, machine)) in counters {
        counters::add(conn, issue_id, position, reader, machine)?;
    }
    Ok(())
}

#[derive(Insertable, Debug)]
#[diesel(table_name = clicks)]
struct NewClick {
    delivery_id: i64,
    issue_id: i64,
    position: i32,
    clicked_at: NaiveDateTime,
    machine: bool,
}
