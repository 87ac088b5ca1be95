//! SQLite's exact count of a topic filter, reckoned per topic list rather than per reader.
//!
//! Readers share few distinct topic lists (a list is some of the site's few topics), and the
//! index of live statuses and topics (migration `live_status_topics`) keeps each list's readers
//! side by side. Checking the topic on each of its entries (900,000 confirmed readers at a
//! million) took 100 to 120 ms. Here the distinct lists are walked instead, one index seek each;
//! the filter is checked once per list, on one reader who holds it, with the very condition a
//! page uses ([`filtered`]); and the readers of the lists that pass are counted from the index.
//! With more distinct lists than [`MOST_LISTS`], the count is left to the plain reading.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::search::{filtered, has_term, Candidates, Filter, Reading};
use crate::foundation::db::schema::subscribers;
use crate::foundation::db::DbConnection;

/// The most distinct topic lists walked: past it, the lists are too many for a walk to be
/// quicker than checking every reader.
pub const MOST_LISTS: i64 = 200;

#[derive(QueryableByName)]
struct Status {
    #[diesel(sql_type = Text)]
    status: String,
}

#[derive(QueryableByName)]
struct List {
    /// One live reader of this status who holds the list.
    #[diesel(sql_type = BigInt)]
    reader: i64,
}

/// The statuses of the live readers, each read with one seek of the index.
const STATUSES: &str = "WITH RECURSIVE s(v) AS ( \
     SELECT (SELECT min(status) FROM subscribers WHERE erased_at IS NULL) \
     UNION ALL \
     SELECT (SELECT min(status) FROM subscribers WHERE erased_at IS NULL AND status > s.v) \
     FROM s WHERE s.v IS NOT NULL) \
     SELECT v AS status FROM s WHERE v IS NOT NULL";

/// The distinct topic lists of the live readers of one status (`?1`), at most `?2` of them,
/// each as one of its readers: every step is a seek of the index.
const LISTS: &str = "WITH RECURSIVE l(v) AS ( \
     SELECT (SELECT min(topics) FROM subscribers WHERE erased_at IS NULL AND status = ?1) \
     UNION ALL \
     SELECT (SELECT min(topics) FROM subscribers \
             WHERE erased_at IS NULL AND status = ?1 AND topics > l.v) \
     FROM l WHERE l.v IS NOT NULL LIMIT ?2) \
     SELECT (SELECT id FROM subscribers \
             WHERE erased_at IS NULL AND status = ?1 AND topics = l.v LIMIT 1) AS reader \
     FROM l WHERE v IS NOT NULL";

/// The exact number of live readers matching `filter`, reckoned per topic list, when that is
/// how SQLite counts it fastest: a topic filter, with no search term and no engagement filter
/// (whose conditions depend on more than a reader's status and topics), and at most
/// [`MOST_LISTS`] distinct lists per status. `None` otherwise: the caller counts plainly.
/// With `cap`, counting stops past it (at `cap` + 1), as the console's count does.
pub(crate) fn count(
    conn: &mut DbConnection,
    filter: &Filter,
    cap: Option<i64>,
) -> QueryResult<Option<i64>> {
    if !matches!(conn, DbConnection::Sqlite(_))
        || filter.topic.is_none()
        || has_term(filter)
        || filter.inactive_digests.is_some()
    {
        return Ok(None);
    }
    // One snapshot for the walk and the counts.
    conn.transaction(|conn| match readers_of_lists(conn, filter)? {
        Some(readers) => Ok(Some(count_passing(conn, filter, readers, cap)?)),
        None => Ok(None),
    })
}

/// One live reader of each distinct topic list of each status of the filter (each status
/// there is, without one); `None` when a status has more than [`MOST_LISTS`] lists.
fn readers_of_lists(conn: &mut DbConnection, filter: &Filter) -> QueryResult<Option<Vec<i64>>> {
    let DbConnection::Sqlite(c) = conn else {
        return Ok(None);
    };
    let statuses = match &filter.status {
        Some(status) => vec![status.clone()],
        None => diesel::sql_query(STATUSES)
            .load::<Status>(c)?
            .into_iter()
            .map(|s| s.status)
            .collect(),
    };
    let mut readers = Vec::new();
    for status in statuses {
        let lists: Vec<List> = diesel::sql_query(LISTS)
            .bind::<Text, _>(&status)
            .bind::<BigInt, _>(MOST_LISTS + 1)
            .load(c)?;
        if lists.len() as i64 > MOST_LISTS {
            return Ok(None);
        }
        readers.extend(lists.into_iter().map(|l| l.reader));
    }
    Ok(Some(readers))
}

/// The readers of the lists whose reader (one of each) passes the filter, counted from the
/// index, up to `cap` + 1 when there is a cap.
fn count_passing(
    conn: &mut DbConnection,
    filter: &Filter,
    readers: Vec<i64>,
    cap: Option<i64>,
) -> QueryResult<i64> {
    if readers.is_empty() {
        return Ok(0);
    }
    // The readers were found by their status: without it, the check reads them by id
    // (with it, SQLite read every entry of the status in the index).
    let topic_only = Filter {
        status: None,
        ..filter.clone()
    };
    // The lists whose reader passes the filter, by status: the same condition as a page's.
    let passing: Vec<(String, String)> =
        filtered(&topic_only, &Candidates::unlisted(conn), Reading::Count)
            .filter(subscribers::id.eq_any(readers))
            .select((subscribers::status, subscribers::topics))
            .load(conn)?;
    let mut by_status: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (status, topics) in passing {
        by_status.entry(status).or_default().push(topics);
    }
    let mut total = 0;
    for (status, lists) in by_status {
        let readers = subscribers::table
            .filter(subscribers::erased_at.is_null())
            .filter(subscribers::status.eq(status))
            .filter(subscribers::topics.eq_any(lists));
        total += match cap {
            None => readers.count().get_result::<i64>(conn)?,
            Some(cap) => {
                let left = cap + 1 - total;
                if left <= 0 {
                    break;
                }
                readers
                    .select(subscribers::id)
                    .limit(left)
                    .load::<i64>(conn)?
                    .len() as i64
            }
        };
    }
    Ok(total)
}
