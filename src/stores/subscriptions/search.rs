//! The subscriber list's search and filters: on PostgreSQL a substring search is answered from
//! pg_trgm's trigram indexes, on SQLite from an FTS5 table with the trigram tokenizer (see the
//! migration `search_trigram`); either way a row is found exactly when a plain `LIKE` finds it.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::foundation::db::schema::subscribers;
use crate::foundation::db::{self, DbConnection};
use crate::stores::engagement;

/// What the list is narrowed to.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Part of an address or a name.
    pub text: String,
    pub status: Option<String>,
    pub topic: Option<String>,
    /// Only the readers with no click in the last N digests (`personal` click tracking; see
    /// [`engagement::inactive_condition`]).
    pub inactive_digests: Option<u32>,
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

type Boxed<'a> = subscribers::BoxedQuery<'a, db::MultiBackend>;

/// The shortest search term the trigram index can look up; shorter ones scan with LIKE.
pub const MIN_INDEXED_TERM: usize = 3;

/// The most matches a list counts; past it a list says "more than".
pub const COUNT_CAP: i64 = 10_000;

/// The most matches a list counts for a search term too short for the trigram index
/// ([`MIN_INDEXED_TERM`]): those are found by reading the table, and counting 10,000 matches of
/// a common pair of characters read a quarter of a million rows (160 ms at a million).
pub const SCAN_COUNT_CAP: i64 = 1_000;

/// The count cap of a filter: [`SCAN_COUNT_CAP`] for a search term shorter than
/// [`MIN_INDEXED_TERM`], [`COUNT_CAP`] otherwise.
pub fn count_cap(filter: &Filter) -> i64 {
    let term = search_term(filter);
    if !term.is_empty() && term.chars().count() < MIN_INDEXED_TERM {
        SCAN_COUNT_CAP
    } else {
        COUNT_CAP
    }
}

/// The search text as matched: no control characters (they cannot be in an address or a name,
/// and PostgreSQL refuses NUL), trimmed, lower-cased.
fn search_term(filter: &Filter) -> String {
    let text: String = filter.text.chars().filter(|c| !c.is_control()).collect();
    text.trim().to_lowercase()
}

/// Whether the filter searches for a text.
pub(crate) fn has_term(filter: &Filter) -> bool {
    !search_term(filter).is_empty()
}

/// An FTS5 query matching `term` as one phrase: with the trigram tokenizer, the rows whose
/// address or name holds it as a substring, in any case.
fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

#[derive(QueryableByName)]
struct RowId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rowid: i64,
}

/// What the FTS5 index listed of a search term's matches (SQLite; see [`candidates`]).
enum Listed {
    /// Nothing: PostgreSQL, no term, or a term too short for the index. Every row is read and
    /// checked.
    Nothing,
    /// Only these ids can match: every match of the term (at most [`COUNT_CAP`] of them), or
    /// those of [`Listed::Newest`] a page is first looked for among.
    Only(Vec<i64>),
    /// The newest [`COUNT_CAP`] + 1 matches of a term with more: they hold every match at least
    /// as new as the oldest of them (see [`Candidates::newest`]).
    Newest(Vec<i64>),
}

/// What narrows a filter's query before it runs: on SQLite, the FTS5 index's ids for the search
/// term (see [`candidates`]).
pub(crate) struct Candidates {
    listed: Listed,
    sqlite: bool,
}

/// On SQLite, for a term of [`MIN_INDEXED_TERM`] characters or more: the ids whose address or
/// name holds it, from the FTS5 trigram index, when there are at most [`COUNT_CAP`] of them,
/// and the newest [`COUNT_CAP`] + 1 of them when there are more (too many to narrow a count or
/// an export to). None on PostgreSQL, whose planner reads its trigram indexes itself, or for a
/// term too short for the index.
pub(crate) fn candidates(conn: &mut DbConnection, filter: &Filter) -> QueryResult<Candidates> {
    let term = search_term(filter);
    let DbConnection::Sqlite(c) = conn else {
        return Ok(Candidates::unlisted(conn));
    };
    if term.chars().count() < MIN_INDEXED_TERM {
        return Ok(Candidates::unlisted(conn));
    }
    let ids: Vec<RowId> = diesel::sql_query(
        "SELECT rowid FROM subscribers_search WHERE subscribers_search MATCH ? \
         ORDER BY rowid DESC LIMIT ?",
    )
    .bind::<Text, _>(fts_phrase(&term))
    .bind::<diesel::sql_types::BigInt, _>(COUNT_CAP + 1)
    .load(c)?;
    let ids: Vec<i64> = ids.into_iter().map(|r| r.rowid).collect();
    let listed = if ids.len() as i64 <= COUNT_CAP {
        Listed::Only(ids)
    } else {
        Listed::Newest(ids)
    };
    Ok(Candidates {
        listed,
        sqlite: true,
    })
}

impl Candidates {
    /// Whether counting `filter` on SQLite reads every live row for its search term: a term
    /// the index did not list the matches of (too short, or too common).
    pub(crate) fn scans_for_term(&self, filter: &Filter) -> bool {
        self.sqlite && !matches!(self.listed, Listed::Only(_)) && !search_term(filter).is_empty()
    }

    /// No ids: every row is read and checked (the index did not list the term's matches).
    pub(crate) fn unlisted(conn: &DbConnection) -> Self {
        Candidates {
            listed: Listed::Nothing,
            sqlite: matches!(conn, DbConnection::Sqlite(_)),
        }
    }

    /// For a term with more matches than the index lists: the newest of its matches in the
    /// index older than `below` (all when none), at most `take` of them, as candidates. Every
    /// row that matches, is older than `below` and at least as new as the oldest of them is
    /// among them (whatever LIKE finds, the trigram index finds, and the index's newest matches
    /// were listed), so a page of them, newest first, that comes back full is the page the
    /// whole table gives; one that does not must be read from the table. Reading the table
    /// newest first finds a page of a term in every row at once, but one of a term that only
    /// older readers hold after reading every newer reader.
    pub(crate) fn newest(&self, below: Option<i64>, take: usize) -> Option<Candidates> {
        // Newest first: the ids older than `below` start where the first of them is.
        let Listed::Newest(newest) = &self.listed else {
            return None;
        };
        let from = below.map_or(0, |b| newest.partition_point(|&id| id >= b));
        let ids: Vec<i64> = newest[from..].iter().take(take).copied().collect();
        (!ids.is_empty()).then_some(Candidates {
            listed: Listed::Only(ids),
            sqlite: self.sqlite,
        })
    }
}

/// What a filtered query is for: SQLite chooses differently for each (see [`filtered`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Rows in the order of their ids (a page, an export).
    Rows,
    /// Every row that matches, found first and put in order after: on SQLite a status is then
    /// looked up in the index of live statuses and topics (a page of a status few readers hold,
    /// see [`super::directory::search`]).
    Sorted,
    /// A count of the matches.
    Count,
    /// A count of the matches among a range of ids, every row of it read: SQLite walks the
    /// table itself through the range rather than the index of live ids, which would cost a
    /// seek into the table for each row (see [`super::directory::count_part`]).
    Range,
}

/// The rows not erased.
fn live(candidates: &Candidates, reading: Reading) -> Boxed<'static> {
    // A unary `+` keeps SQLite's planner from the index of live ids (it holds no more than
    // whether a row is erased): reading a range of it, SQLite then seeks each row in the table,
    // twice the work of walking the table's own pages through the range (a quarter of the time
    // of a count that reads every row for a term, at a million rows).
    if candidates.sqlite && reading == Reading::Range {
        subscribers::table
            .filter(sql::<diesel::sql_types::Bool>(
                "+subscribers.erased_at IS NULL",
            ))
            .into_boxed()
    } else {
        subscribers::table
            .filter(subscribers::erased_at.is_null())
            .into_boxed()
    }
}

/// `query` narrowed to the rows whose address or name holds the filter's search term (see
/// [`filtered`]).
fn with_term(
    mut query: Boxed<'static>,
    filter: &Filter,
    candidates: &Candidates,
) -> Boxed<'static> {
    let term = search_term(filter);
    if !term.is_empty() {
        let pattern = format!("%{}%", escape_like(&term));
        // The term is lower case. PostgreSQL's LIKE tells cases apart, so the name is lowered
        // first (addresses are stored lower case). SQLite's LIKE folds ASCII letters and its
        // `lower` lowers nothing else, so there the name is compared as it is: the same rows,
        // without a lowered copy of every name the count reads.
        let name = if candidates.sqlite {
            "name"
        } else {
            "lower(name)"
        };
        query = query.filter(
            subscribers::email
                .like(pattern.clone())
                .escape('\\')
                .nullable()
                .or(sql::<diesel::sql_types::Nullable<Text>>(name)
                    .like(pattern)
                    .escape('\\')),
        );
        if let Listed::Only(ids) = &candidates.listed {
            query = query.filter(subscribers::id.eq_any(ids.clone()));
        }
    }
    query
}

/// The filtered list. On PostgreSQL the search's LIKE is answered from the trigram indexes; on
/// SQLite, given the FTS5 index's `candidates`, only those rows are read, each checked with the
/// same LIKE (so that both backends find exactly what a plain scan would). `reading` says whether
/// the rows are read in order or counted: SQLite is steered to a different index for each.
pub(crate) fn filtered(
    filter: &Filter,
    candidates: &Candidates,
    reading: Reading,
) -> Boxed<'static> {
    let mut query = with_term(live(candidates, reading), filter, candidates);
    if let Some(status) = &filter.status {
        // A count reads the matches from the index of live statuses and topics (migration
        // `live_status_topics`). SQLite would read a page's rows through it too, then sort
        // every match by id (360 ms for a page of a third of a million readers); a unary `+`
        // keeps its planner from that index, so a page is read newest first and stops when
        // full, as before the index. Not for a status few readers hold ([`Reading::Sorted`]):
        // walking the list for it read every reader (235 ms for 50 bounced of a million).
        query = if candidates.sqlite && reading == Reading::Rows {
            query.filter(
                sql::<diesel::sql_types::Bool>("+subscribers.status = ")
                    .bind::<Text, _>(status.clone()),
            )
        } else {
            query.filter(subscribers::status.eq(status.clone()))
        };
    }
    if let Some(topic) = &filter.topic {
        // The stored list is comma-separated: the topic is the whole list, its first, its last
        // or a middle name. Four conditions on the column itself rather than one LIKE on
        // `',' || topics || ','`, so that the planner estimates them from the column's
        // statistics: it took the wrapped form for a rare match and sorted the whole list to
        // show a page of a third of a million readers.
        // A name never holds a comma: "A,B" names no topic and matches no reader.
        if topic.contains(',') {
            query = query.filter(diesel::IntoSql::into_sql::<diesel::sql_types::Bool>(false));
        }
        // SQLite's LIKE folds the case of each character it compares: at a million readers
        // the four of them took longer than reading the index they were applied to. A search
        // for the name itself first (`instr`, a plain comparison of bytes) lets only the rows
        // that hold it reach them.
        if candidates.sqlite {
            query = query.filter(
                sql::<diesel::sql_types::Bool>("instr(subscribers.topics, ")
                    .bind::<Text, _>(topic.clone())
                    .sql(") > 0"),
            );
        }
        let t = escape_like(topic);
        query = query.filter(
            subscribers::topics
                .eq(topic.clone())
                .or(subscribers::topics.like(format!("{t},%")).escape('\\'))
                .or(subscribers::topics.like(format!("%,{t}")).escape('\\'))
                .or(subscribers::topics.like(format!("%,{t},%")).escape('\\')),
        );
    }
    if let Some(n) = filter.inactive_digests {
        query = query.filter(engagement::inactive_condition(n));
    }
    query
}
