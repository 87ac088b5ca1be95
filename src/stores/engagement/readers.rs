//! One reader's clicks (`personal` mode): their history for the data download, their last
//! click for the console, forgetting them at erasure, and the inactive segment ("no click in the
//! last N digests") that re-permission is sent to.
//!
//! Forgetting a reader folds their click rows into the anonymous counters of `issue_links` and
//! deletes the rows: the editors' totals stay, and nothing left names the reader.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use crate::foundation::db::schema::{clicks, deliveries, issue_links, subscribers};
use crate::foundation::db::DbConnection;
use crate::foundation::tracking::{OPEN_POSITION, TRAP_POSITION};

/// The most digests the inactive filter looks back over.
pub const MAX_INACTIVE_DIGESTS: u32 = 52;

/// One click (or open) of a reader, as their data download shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReaderClick {
    pub issue_id: i64,
    /// `link` (one of the issue's links), `open` (the open image) or `hidden link` (the link no
    /// person sees, which marks a copy's clicks as a machine's).
    pub what: &'static str,
    /// Where the link leads (`None` for an open).
    pub url: Option<String>,
    pub clicked_at: NaiveDateTime,
    /// Counted as a machine's (a mail scanner's), not the reader's.
    pub machine: bool,
}

/// The ids of this reader's delivered copies, as a subquery.
type Copies = diesel::dsl::Select<
    diesel::dsl::Filter<deliveries::table, diesel::dsl::Eq<deliveries::subscriber_id, i64>>,
    deliveries::id,
>;

fn copies_of(subscriber_id: i64) -> Copies {
    deliveries::table
        .filter(deliveries::subscriber_id.eq(subscriber_id))
        .select(deliveries::id)
}

/// The reader's clicks, oldest first, with the address of each link.
pub fn history_of(conn: &mut DbConnection, subscriber_id: i64) -> QueryResult<Vec<ReaderClick>> {
    let rows: Vec<(i64, i32, NaiveDateTime, bool)> = clicks::table
        .filter(clicks::delivery_id.eq_any(copies_of(subscriber_id)))
        .order(clicks::id)
        .select((
            clicks::issue_id,
            clicks::position,
            clicks::clicked_at,
            clicks::machine,
        ))
        .load(conn)?;
    let mut issue_ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    issue_ids.sort_unstable();
    issue_ids.dedup();
    let urls: HashMap<(i64, i32), String> = issue_links::table
        .filter(issue_links::issue_id.eq_any(&issue_ids))
        .filter(issue_links::position.ge(1))
        .select((
            issue_links::issue_id,
            issue_links::position,
            issue_links::url,
        ))
        .load::<(i64, i32, String)>(conn)?
        .into_iter()
        .map(|(issue, position, url)| ((issue, position), url))
        .collect();
    Ok(rows
        .into_iter()
        .map(|(issue_id, position, clicked_at, machine)| {
            let what = match position {
                OPEN_POSITION => "open",
                TRAP_POSITION => "hidden link",
                _ => "link",
            };
            let url = urls.get(&(issue_id, position)).cloned();
            ReaderClick {
                issue_id,
                what,
                url,
                clicked_at,
                machine,
            }
        })
        .collect())
}

/// When the reader last clicked a link of an issue (a reader's click, not a machine's).
pub fn last_click_at(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> QueryResult<Option<NaiveDateTime>> {
    clicks::table
        .filter(clicks::delivery_id.eq_any(copies_of(subscriber_id)))
        .filter(clicks::machine.eq(false))
        .filter(clicks::position.ge(1))
        .select(diesel::dsl::max(clicks::clicked_at))
        .first(conn)
}

/// Forgets the reader's clicks (erasure, inside its transaction): each row is added to its
/// link's anonymous counters (reader or machine), then the rows are deleted. Returns how many
/// rows went.
pub fn forget_subscriber(conn: &mut DbConnection, subscriber_id: i64) -> QueryResult<usize> {
    // Exactly the rows deleted are added to the counters.
    let rows: Vec<(i64, i32, bool)> =
        diesel::delete(clicks::table.filter(clicks::delivery_id.eq_any(copies_of(subscriber_id))))
            .returning((clicks::issue_id, clicks::position, clicks::machine))
            .get_results(conn)?;
    // Ordered, so that concurrent erasures update the counters in the same order.
    let mut counts: BTreeMap<(i64, i32), (i64, i64)> = BTreeMap::new();
    for (issue_id, position, machine) in &rows {
        let entry = counts.entry((*issue_id, *position)).or_default();
        if *machine {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
    for ((issue_id, position), (reader, machine)) in counts {
        super::counters::add(conn, issue_id, position, reader, machine)?;
    }
    Ok(rows.len())
}

/// How `issues.click_tracking` names the mode whose clicks name a reader.
pub const PERSONAL: &str = "personal";

/// The digests sent in `personal` mode (whose issues were composed and queued with
/// `IRIA_CLICK_TRACKING=personal`), as SQL: only their clicks name a reader.
const PERSONAL_DIGESTS: &str = "SELECT g.id FROM digests g WHERE EXISTS (SELECT 1 FROM issues x \
     WHERE x.digest_id = g.id AND x.click_tracking = 'personal')";

/// The last `n` digests sent in `personal` mode, as SQL.
fn last_digests(n: u32) -> String {
    format!("{PERSONAL_DIGESTS} ORDER BY g.id DESC LIMIT {n}")
}

/// How many digests were sent in `personal` mode (the most the inactive filter can look back
/// over: asking for more selects nobody).
pub fn personal_digests(conn: &mut DbConnection) -> QueryResult<i64> {
    use diesel::sql_types::BigInt;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count =
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM ({PERSONAL_DIGESTS}) p"))
            .get_result(conn)?;
    Ok(count.n)
}

/// The inactive readers as a condition on `subscribers`: confirmed readers who were sent
/// (delivered, status `sent`) a copy of each of the last `n` digests sent in `personal` mode and
/// clicked none of their links as a reader (machine clicks, the hidden link and opens do not
/// count). Digests sent in `anonymous` or `off` mode are not counted: their clicks name nobody.
/// A reader who joined since (fewer than `n` of them received) is not inactive; nor is anyone
/// while fewer than `n` such digests have gone out. `n` is a number, written into the SQL as one.
pub fn inactive_condition(n: u32) -> SqlLiteral<Bool> {
    let last = last_digests(n);
    sql::<Bool>(&format!(
        "(subscribers.status = 'confirmed' AND subscribers.id IN (\
            SELECT d.subscriber_id FROM deliveries d JOIN issues i ON i.id = d.issue_id \
            WHERE d.status = 'sent' AND i.click_tracking = '{PERSONAL}' \
            AND i.digest_id IN ({last}) \
            GROUP BY d.subscriber_id HAVING COUNT(DISTINCT i.digest_id) = {n}) \
         AND NOT EXISTS (\
            SELECT 1 FROM clicks c JOIN deliveries d ON d.id = c.delivery_id \
            JOIN issues i ON i.id = c.issue_id \
            WHERE d.subscriber_id = subscribers.id AND NOT c.machine AND c.position >= 1 \
            AND i.digest_id IN ({last})))"
    ))
}

/// The ids of the inactive readers (see [`inactive_condition`]), not erased, in order.
pub fn inactive_ids(conn: &mut DbConnection, n: u32) -> QueryResult<Vec<i64>> {
    subscribers::table
        .filter(subscribers::erased_at.is_null())
        .filter(inactive_condition(n))
        .order(subscribers::id)
        .select(subscribers::id)
        .load(conn)
}
