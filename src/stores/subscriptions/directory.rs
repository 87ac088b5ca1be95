//! The subscriber list as editors see it: search and filters, one subscriber's consents and
//! messages, a CSV export, and one subscriber added on an editor's word (the CSV import is
//! [`super::import`]).

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::records::SubscriberRecord;
use super::search::{candidates, filtered, has_term, Candidates, Reading};
pub use super::search::{count_cap, Filter, COUNT_CAP, MIN_INDEXED_TERM, SCAN_COUNT_CAP};
pub use super::topic_lists::MOST_LISTS as MOST_TOPIC_LISTS;
use super::NewSignup;
use crate::foundation::db::schema::{consents, deliveries, issues, subscribers};
use crate::foundation::db::{self, DbConnection, DbError};
use crate::foundation::domain::SubscriberStatus;
use crate::foundation::domain::{SubscriberEmail, SubscriberName, Topics};

/// Which page of the list: `Offset(n)` skips `n` rows; `Before(id)` is the page of rows older
/// than `id` (the Next link's), `After(id)` the page of rows just newer than `id` (the Previous
/// link's): keyset paging, as fast deep in a million rows as on the first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Offset(i64),
    Before(i64),
    After(i64),
}

/// From this offset on, a page's ids are found first and its rows read after.
const DEEP_OFFSET: i64 = 1_000;

/// PostgreSQL: how many live rows past where a page starts (its offset, or the id it is older
/// than) a page of a search term is first looked for among, newest first.
const WALKED_FIRST: i64 = 5_000;

/// Which rows a page is read from, and how.
#[derive(Clone, Copy)]
enum Scope {
    /// Every row the filter finds, newest first: the planner chooses how.
    All,
    /// Only the rows with an id of at least this one (PostgreSQL's first look, see
    /// [`walked_first`]).
    From(i64),
    /// Every row the filter finds, all of them found before they are put in order: PostgreSQL's
    /// second look (the matches from the trigram indexes, then the newest of them), and SQLite's
    /// page of a rare status (see [`rare_status`]).
    Sorted,
}

/// A page of the (filtered) list, newest first.
pub fn search(
    conn: &mut DbConnection,
    filter: &Filter,
    limit: i64,
    window: Window,
) -> QueryResult<Vec<SubscriberRecord>> {
    let candidates = candidates(conn, filter)?;
    // SQLite, a status few readers hold (bounced, complained): its readers from the index of
    // live statuses and topics, put in order. Walking the list for them read every reader.
    if rare_status(conn, filter)? {
        return page(conn, filter, &candidates, limit, window, Scope::Sorted);
    }
    // Where a page starts: the id its rows are older than, and how many rows it skips. The
    // rows after an id are read as they are: those nearest it may be older than any looked at
    // first.
    let (below, skipped) = match window {
        Window::Offset(n) => (None, n),
        Window::Before(id) => (Some(id), 0),
        Window::After(_) => return page(conn, filter, &candidates, limit, window, Scope::All),
    };
    // Not with the inactive readers' filter, whose condition reads each reader's deliveries and
    // clicks: reading every match of a common term would check it on all of them, and the
    // newest readers, too new to have been sent the last digests, would always miss the first
    // look.
    if matches!(conn, DbConnection::Pg(_)) && has_term(filter) && filter.inactive_digests.is_none()
    {
        let walked = (below, skipped.saturating_add(WALKED_FIRST));
        return walked_first(conn, filter, &candidates, (limit, window), walked);
    }
    let reach = skipped.saturating_add(limit);
    // SQLite, a term in more rows than the index lists: the page among its newest matches, when
    // they hold a whole one. Twice as many of them as the page reaches to, for the rows that
    // another filter or the exact match leaves out.
    let take = usize::try_from(reach.saturating_mul(2)).unwrap_or(usize::MAX);
    if let Some(newest) = candidates.newest(below, take) {
        let rows = page(conn, filter, &newest, limit, window, Scope::All)?;
        if rows.len() as i64 == limit {
            return Ok(rows);
        }
    }
    page(conn, filter, &candidates, limit, window, Scope::All)
}

/// PostgreSQL, a page of a search term (not the rows after an id). The planner reads a term it
/// expects in many rows by walking the list newest first, which finds a page of a term in every
/// row at once, but walks every newer reader first when only older readers hold it (a bulk
/// import of one domain long ago, say: 200 ms and more at a million). So the page is first
/// looked for among the [`WALKED_FIRST`] live rows past where it starts; when they do not hold
/// it, the term is rare among the newest readers, and the page is read from every match the
/// trigram indexes give, put in order (their number, not the table's, is the cost). `walked`:
/// the id the rows looked at first are older than, and how many of them.
fn walked_first(
    conn: &mut DbConnection,
    filter: &Filter,
    candidates: &Candidates,
    (limit, window): (i64, Window),
    (below, walked): (Option<i64>, i64),
) -> QueryResult<Vec<SubscriberRecord>> {
    let mut nth = subscribers::table
        .filter(subscribers::erased_at.is_null())
        .select(subscribers::id)
        .order(subscribers::id.desc())
        .offset(walked)
        .limit(1)
        .into_boxed();
    if let Some(id) = below {
        nth = nth.filter(subscribers::id.lt(id));
    }
    let Some(bound) = nth.first::<i64>(conn).optional()? else {
        // Fewer rows than that: walking them is the first look.
        return page(conn, filter, candidates, limit, window, Scope::All);
    };
    let rows = page(conn, filter, candidates, limit, window, Scope::From(bound))?;
    if rows.len() as i64 == limit {
        return Ok(rows);
    }
    page(conn, filter, candidates, limit, window, Scope::Sorted)
}

/// SQLite: whether the filter's status is held by at most [`COUNT_CAP`] live readers, counted
/// in the index of live statuses and topics (reading at most that many of its entries).
/// PostgreSQL's planner knows from its statistics.
fn rare_status(conn: &mut DbConnection, filter: &Filter) -> QueryResult<bool> {
    let (DbConnection::Sqlite(_), Some(status)) = (&*conn, &filter.status) else {
        return Ok(false);
    };
    // Whether a reader past the cap exists: the entries before it are stepped over in the
    // index, not returned.
    let past_cap: Option<i64> = subscribers::table
        .filter(subscribers::erased_at.is_null())
        .filter(subscribers::status.eq(status))
        .select(subscribers::id)
        .offset(COUNT_CAP)
        .first(conn)
        .optional()?;
    Ok(past_cap.is_none())
}

/// A page of the rows `filter` and `candidates` find, within `scope`.
fn page(
    conn: &mut DbConnection,
    filter: &Filter,
    candidates: &Candidates,
    limit: i64,
    window: Window,
    scope: Scope,
) -> QueryResult<Vec<SubscriberRecord>> {
    let matching = || {
        let reading = match scope {
            Scope::Sorted => Reading::Sorted,
            Scope::All | Scope::From(_) => Reading::Rows,
        };
        let query = filtered(filter, candidates, reading).limit(limit);
        match scope {
            Scope::All => query.order(subscribers::id.desc()),
            Scope::From(id) => query
                .filter(subscribers::id.ge(id))
                .order(subscribers::id.desc()),
            // Put in order by a sum, not the id itself, so that the planner cannot take the
            // rows in the order of the index of ids, checking each.
            Scope::Sorted => query.order(sql::<BigInt>("subscribers.id + 0").desc()),
        }
    };
    let query = match window {
        // Deep in the list, the rows skipped are read from the index of live ids alone
        // (migration `live_subscriber_ids`), and only the page's rows from the table.
        Window::Offset(n) if n >= DEEP_OFFSET => {
            let page: Vec<i64> = matching().select(subscribers::id).offset(n).load(conn)?;
            subscribers::table
                .into_boxed()
                .filter(subscribers::id.eq_any(page))
                .order(subscribers::id.desc())
        }
        Window::Offset(n) => matching().offset(n),
        Window::Before(id) => matching().filter(subscribers::id.lt(id)),
        Window::After(id) => {
            let newer = matching().filter(subscribers::id.gt(id));
            match scope {
                Scope::Sorted => newer.order(sql::<BigInt>("subscribers.id + 0").asc()),
                Scope::All | Scope::From(_) => newer.order(subscribers::id.asc()),
            }
        }
    };
    let mut rows = query.select(SubscriberRecord::as_select()).load(conn)?;
    if matches!(window, Window::After(_)) {
        rows.reverse();
    }
    Ok(rows)
}

/// How many match the filter, counted up to [`count_cap`] + 1: a number past the cap means
/// "more than the cap" (counting a million rows on every view of a list is what made the list
/// slow).
pub fn count(conn: &mut DbConnection, filter: &Filter) -> QueryResult<i64> {
    // A topic's readers are counted by list: read in the index's order, the readers of every
    // other list of the status came first, each checked (600,000 before the first match).
    if let Some(n) = super::topic_lists::count(conn, filter, Some(count_cap(filter)))? {
        return Ok(n);
    }
    let candidates = candidates(conn, filter)?;
    let ids: Vec<i64> = filtered(filter, &candidates, Reading::Count)
        .select(subscribers::id)
        .limit(count_cap(filter) + 1)
        .load(conn)?;
    Ok(ids.len() as i64)
}

/// How many match the filter, all of them (an export's audit line).
pub fn count_all(conn: &mut DbConnection, filter: &Filter) -> QueryResult<i64> {
    let candidates = candidates(conn, filter)?;
    count_of(conn, filter, &candidates)
}

fn count_of(conn: &mut DbConnection, filter: &Filter, candidates: &Candidates) -> QueryResult<i64> {
    if let Some(n) = super::topic_lists::count(conn, filter, None)? {
        return Ok(n);
    }
    filtered(filter, candidates, Reading::Count)
        .count()
        .get_result(conn)
}

/// A part of the ids, both ends included, that an exact count can be split into.
pub type IdRange = (i64, i64);

/// An exact count, or the parts to count it in, each on a connection of its own, at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Counting {
    Counted(i64),
    /// To be counted with [`count_part`], then added up.
    Parts(Vec<IdRange>),
}

/// Counts what matches `filter` exactly, or says how to split the count: on SQLite, a search
/// term that the index does not list the matches of (too short, or too common) is counted by
/// reading every row, and SQLite reads with one thread (300 ms for a term in each of a million
/// rows on a slow core), so two halves of the ids are read at once. PostgreSQL spreads a large
/// count over its parallel workers itself; without a term SQLite counts from an index, faster
/// than either half from the table.
pub fn count_or_split(conn: &mut DbConnection, filter: &Filter) -> QueryResult<Counting> {
    let candidates = candidates(conn, filter)?;
    if !candidates.scans_for_term(filter) {
        return Ok(Counting::Counted(count_of(conn, filter, &candidates)?));
    }
    // Each alone: SQLite reads the first or last id of the table's tree at once, but both in
    // one statement by reading an index whole.
    let low: Option<i64> = subscribers::table
        .select(diesel::dsl::min(subscribers::id))
        .get_result(conn)?;
    let high: Option<i64> = subscribers::table
        .select(diesel::dsl::max(subscribers::id))
        .get_result(conn)?;
    let middle = match (low, high) {
        (Some(low), Some(high)) => low + (high - low) / 2,
        _ => return Ok(Counting::Counted(0)),
    };
    Ok(Counting::Parts(vec![
        (i64::MIN, middle),
        (middle + 1, i64::MAX),
    ]))
}

/// How many match the filter among the ids of `part`, every row of it read (a part of
/// [`count_or_split`]).
pub fn count_part(conn: &mut DbConnection, filter: &Filter, part: IdRange) -> QueryResult<i64> {
    let candidates = Candidates::unlisted(conn);
    filtered(filter, &candidates, Reading::Range)
        .filter(subscribers::id.between(part.0, part.1))
        .count()
        .get_result(conn)
}

/// One consent record (a sign-up, an import), as the subscriber's page lists them.
#[derive(Clone, Debug, Queryable, serde::Serialize)]
pub struct ConsentRow {
    pub requested_at: NaiveDateTime,
    pub source: String,
    pub ip: String,
    pub user_agent: String,
    pub consent_text_version: String,
    pub topics: String,
    pub confirmed_at: Option<NaiveDateTime>,
}

/// A subscriber's consent records, oldest first.
pub fn consents_of(conn: &mut DbConnection, subscriber_id: i64) -> QueryResult<Vec<ConsentRow>> {
    consents::table
        .filter(consents::subscriber_id.eq(subscriber_id))
        .order(consents::id)
        .select((
            consents::requested_at,
            consents::source,
            consents::ip,
            consents::user_agent,
            consents::consent_text_version,
            consents::topics,
            consents::confirmed_at,
        ))
        .load(conn)
}

/// One message to a subscriber.
#[derive(Clone, Debug, Queryable, serde::Serialize)]
pub struct DeliveryRow {
    pub kind: String,
    pub issue_id: Option<i64>,
    pub subject: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
}

/// The latest messages to a subscriber, newest first.
pub fn deliveries_of(
    conn: &mut DbConnection,
    subscriber_id: i64,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    deliveries::table
        .left_join(issues::table)
        .filter(deliveries::subscriber_id.eq(subscriber_id))
        .order(deliveries::id.desc())
        .limit(limit)
        .select((
            deliveries::kind,
            deliveries::issue_id,
            issues::subject.nullable(),
            deliveries::status,
            deliveries::attempts,
            deliveries::created_at,
            deliveries::finished_at,
            deliveries::last_error,
        ))
        .load(conn)
}

/// A cell as a spreadsheet may open it: text that a spreadsheet would run as a formula (even
/// after leading spaces) gets a leading apostrophe.
pub fn cell(text: &str) -> String {
    if text
        .trim_start_matches(' ')
        .starts_with(['=', '+', '-', '@', '\t', '\r'])
    {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn iso(t: Option<NaiveDateTime>) -> String {
    t.map(|t| {
        t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
    .unwrap_or_default()
}

/// Every subscriber (not erased) as CSV: the file an import takes back.
pub fn export_csv(conn: &mut DbConnection, filter: &Filter) -> Result<Vec<u8>, DbError> {
    let candidates = candidates(conn, filter)?;
    let rows = filtered(filter, &candidates, Reading::Rows)
        .order(subscribers::id)
        .select(SubscriberRecord::as_select())
        .load::<SubscriberRecord>(conn)?;
    let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 96 + 128));
    let written = (|| -> Result<Vec<u8>, csv::Error> {
        out.write_record([
            "email",
            "name",
            "status",
            "topics",
            "created_at",
            "confirmed_at",
            "unsubscribed_at",
        ])?;
        for r in &rows {
            out.write_record([
                cell(&r.email),
                cell(r.name.as_deref().unwrap_or("")),
                r.status.clone(),
                r.topics.replace(',', ";"),
                iso(Some(r.created_at)),
                iso(r.confirmed_at),
                iso(r.unsubscribed_at),
            ])?;
        }
        out.into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))
    })();
    written.map_err(|e| DbError::Other(format!("writing the CSV: {e}")))
}

/// How an import is to treat its addresses.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The editor holds consent already (kept with `source`): imported as confirmed, no email.
    /// Otherwise each new address gets a confirmation email and stays pending until it confirms.
    pub consent_held: bool,
    /// Where the list and its consent come from, e.g. "2025 conference sign-up sheet".
    pub source: String,
    pub editor: String,
}

/// What [`add`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    /// Added as confirmed (consent held): the new subscriber's id.
    Confirmed(i64),
    /// Added as pending; a confirmation email is queued.
    Invited(i64),
    /// On file already, left as it was: (id, status, address).
    Existing(i64, String, String),
}

/// Adds one subscriber on an editor's word (an import row, an API call). An address on file is
/// left as it is: adding never resubscribes someone who left.
pub fn add(
    conn: &mut DbConnection,
    settings: &crate::foundation::config::Settings,
    email: SubscriberEmail,
    name: Option<SubscriberName>,
    topics: Topics,
    options: &ImportOptions,
) -> Result<Added, DbError> {
    let existing: Option<(i64, String)> = subscribers::table
        .filter(subscribers::email.eq(email.as_str()))
        .select((subscribers::id, subscribers::status))
        .first(conn)
        .optional()?;
    if let Some((id, status)) = existing {
        return Ok(Added::Existing(id, status, email.as_str().to_string()));
    }
    let source = format!("import: {}", options.source);
    if options.consent_held {
        add_confirmed(
            conn,
            &email,
            name.as_ref(),
            &topics,
            &source,
            &options.editor,
        )?;
    } else {
        let signup = NewSignup {
            email: email.clone(),
            name,
            topics,
            ip: String::new(),
            user_agent: format!("imported by editor {}", options.editor),
            source,
        };
        let ttl = settings.confirmation_ttl;
        super::sign_up(conn, &signup, u32::MAX, ttl, settings.secret()).map_err(|e| match e {
            super::SignupError::Db(e) => e,
            other => DbError::Other(other.to_string()),
        })?;
    }
    let id: i64 = subscribers::table
        .filter(subscribers::email.eq(email.as_str()))
        .select(subscribers::id)
        .first(conn)?;
    Ok(if options.consent_held {
        Added::Confirmed(id)
    } else {
        Added::Invited(id)
    })
}

/// A new subscriber whose consent the editors hold: confirmed at once, with a consent record
/// saying where the consent comes from and who imported it, and `subscriber.confirmed` for the
/// webhooks.
fn add_confirmed(
    conn: &mut DbConnection,
    email: &SubscriberEmail,
    name: Option<&SubscriberName>,
    topics: &Topics,
    source: &str,
    editor: &str,
) -> Result<(), DbError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        let id: i64 = diesel::insert_into(subscribers::table)
            .values((
                subscribers::email.eq(email.as_str()),
                subscribers::name.eq(name.map(SubscriberName::as_str)),
                subscribers::status.eq(SubscriberStatus::Confirmed.as_str()),
                subscribers::topics.eq(topics.to_stored()),
                subscribers::created_at.eq(now),
                subscribers::updated_at.eq(now),
                subscribers::confirmed_at.eq(Some(now)),
            ))
            .returning(subscribers::id)
            .get_result(conn)?;
        diesel::insert_into(consents::table)
            .values((
                consents::subscriber_id.eq(id),
                consents::requested_at.eq(now),
                consents::ip.eq(""),
                consents::user_agent.eq(format!("imported by editor {editor}")),
                consents::source.eq(source),
                consents::consent_text_version.eq("held by the editors"),
                consents::name.eq(name.map(SubscriberName::as_str)),
                consents::topics.eq(topics.to_stored()),
                consents::confirmed_at.eq(Some(now)),
            ))
            .execute(conn)?;
        crate::stores::webhooks::emit_subscriber(
            conn,
            crate::stores::webhooks::Event::SubscriberConfirmed,
            id,
        )?;
        Ok(())
    })
}
