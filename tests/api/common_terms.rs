//! A search term in more rows than the trigram index lists (10,000), held only by older
//! readers: every page of it, newest first, is the page a plain `LIKE` over the table gives,
//! whether it lies among the term's newest matches in the index or past them; on SQLite a page
//! among them is read from them, by id, not by walking every newer reader; on PostgreSQL a page
//! the newest rows do not hold is read from the term's matches.

use diesel::prelude::*;
use iria_news::foundation::db::schema::subscribers;
use iria_news::foundation::db::DbConnection;
use iria_news::stores::subscriptions::directory;

use crate::helpers::Backend;
use crate::on_both_backends;
use crate::search_trigram::{only, page_ids, seeded, sqlite_plan, statements_of};

/// What else a page is narrowed to.
#[derive(Clone, Copy, Debug)]
enum Also {
    Nothing,
    Status(&'static str),
    Topic(&'static str),
}

/// The live readers whose address or name holds `term`, narrowed as `also` says, newest first:
/// the plain LIKE scan over every row.
fn plain(conn: &mut DbConnection, term: &str, also: Also) -> Vec<i64> {
    let all = crate::search_trigram::like_scan(conn, term);
    let rows: Vec<(i64, String, String)> = subscribers::table
        .select((subscribers::id, subscribers::status, subscribers::topics))
        .load(conn)
        .expect("rows");
    let with: Vec<i64> = rows
        .into_iter()
        .filter(|(_, status, topics)| match also {
            Also::Nothing => true,
            Also::Status(s) => status == s,
            Also::Topic(t) => topics.split(',').any(|x| x == t),
        })
        .map(|(id, _, _)| id)
        .collect();
    all.into_iter().filter(|id| with.contains(id)).collect()
}

fn page(conn: &mut DbConnection, term: &str, also: Also, window: directory::Window) -> Vec<i64> {
    let filter = directory::Filter {
        text: term.into(),
        status: match also {
            Also::Status(s) => Some(s.into()),
            _ => None,
        },
        topic: match also {
            Also::Topic(t) => Some(t.into()),
            _ => None,
        },
        ..Default::default()
    };
    page_ids(conn, &filter, 50, window)
}

/// 24,000 readers; the first 12,000 renamed "Bulk Import N" (so "bulk import" is in 12,000
/// names, none of the newer half), one in a thousand of them unsubscribed and one in a thousand
/// reading "Europe", twelve erased, and a few newer names the index folds to the term and LIKE
/// does not (a Kelvin sign for the K).
async fn a_common_terms_pages_are_the_plain_pages(backend: Backend) {
    let Some((_db, mut conn)) = seeded(
        backend,
        24_000,
        "UPDATE subscribers SET name = 'Bulk Import ' || id WHERE id <= 12000; \
         UPDATE subscribers SET status = 'unsubscribed' WHERE id <= 12000 AND id % 1000 = 0; \
         UPDATE subscribers SET topics = 'Europe' WHERE id <= 12000 AND id % 1000 = 500; \
         UPDATE subscribers SET name = 'Bul\u{212A} Import' WHERE id IN (12001, 12500, 23999)",
        (7..12_000).step_by(1_000),
    ) else {
        return;
    };
    let term = "bulk import";
    let all = plain(&mut conn, term, Also::Nothing);
    // And on PostgreSQL, whose lower() may fold the Kelvin sign, the three newer ones.
    assert!(all.len() >= 12_000 - 12, "{} matches", all.len());
    let unsubscribed = plain(&mut conn, term, Also::Status("unsubscribed"));
    let europe = plain(&mut conn, term, Also::Topic("Europe"));
    use directory::Window::{After, Before, Offset};
    let newest_first = |ids: &[i64], from: usize| ids[from..(from + 50).min(ids.len())].to_vec();
    for (window, also, want) in [
        (Offset(0), Also::Nothing, newest_first(&all, 0)),
        (Offset(120), Also::Nothing, newest_first(&all, 120)),
        // Deep: the page's ids first, its rows after.
        (Offset(5_000), Also::Nothing, newest_first(&all, 5_000)),
        // Past the index's newest matches: read from the table.
        (Offset(9_980), Also::Nothing, newest_first(&all, 9_980)),
        (Offset(11_970), Also::Nothing, newest_first(&all, 11_970)),
        (Before(6_000), Also::Nothing, {
            let from = all.iter().position(|&id| id < 6_000).expect("older");
            newest_first(&all, from)
        }),
        // Older than every one of the index's newest matches: read from the table.
        (Before(100), Also::Nothing, {
            let from = all.iter().position(|&id| id < 100).expect("older");
            newest_first(&all, from)
        }),
        (After(100), Also::Nothing, {
            let to = all.iter().rposition(|&id| id > 100).expect("newer");
            all[to + 1 - 50..=to].to_vec()
        }),
        // A status few readers hold: read through its index.
        (
            Offset(0),
            Also::Status("unsubscribed"),
            newest_first(&unsubscribed, 0),
        ),
        // Too few among the newest matches for a page: read from the table.
        (Offset(0), Also::Topic("Europe"), newest_first(&europe, 0)),
    ] {
        assert_eq!(
            page(&mut conn, term, also, window),
            want,
            "{window:?} {also:?}"
        );
    }
    if backend == Backend::Sqlite {
        // The first page is read from the index's newest matches by id, in one statement.
        let (_, ran) = statements_of(&mut conn, |conn| page(conn, term, Also::Nothing, Offset(0)));
        let read = only(&ran, "ORDER BY");
        let plan = sqlite_plan(&mut conn, &read);
        assert!(
            plan.contains("INTEGER PRIMARY KEY (rowid=?)") && !plan.contains("SCAN subscribers"),
            "{plan}"
        );
        let reads = |ran: &[String]| {
            ran.iter()
                .filter(|sql| sql.contains("FROM `subscribers`") && sql.contains("ORDER BY"))
                .count()
        };
        // A page the newest matches cannot fill is read again from the table.
        let (_, ran) = statements_of(&mut conn, |conn| {
            page(conn, term, Also::Topic("Europe"), Offset(0))
        });
        assert_eq!(reads(&ran), 2, "{ran:#?}");
        // A status few readers hold is read once, through its index (tests/api/rare_status.rs).
        let (_, ran) = statements_of(&mut conn, |conn| {
            page(conn, term, Also::Status("unsubscribed"), Offset(0))
        });
        assert_eq!(reads(&ran), 1, "{ran:#?}");
    }
    if backend == Backend::Postgres {
        // The page reads of a statement: a first look among the rows past where the page
        // starts (bounded below by an id), then, when it came back short, every match put in
        // order by a sum (so that the planner cannot walk the index of ids, checking each row).
        let reads = |ran: &[String]| -> Vec<&'static str> {
            ran.iter()
                .filter(|sql| sql.contains("FROM \"subscribers\"") && sql.contains("LIKE"))
                .map(|sql| {
                    if sql.contains("subscribers.id + 0") {
                        "sorted"
                    } else if sql.contains("\"subscribers\".\"id\" >= $") {
                        "first look"
                    } else {
                        "walk"
                    }
                })
                .collect()
        };
        // Only the older half holds the term: the first look finds none of it, then the page
        // is read from the matches.
        let (_, ran) = statements_of(&mut conn, |conn| page(conn, term, Also::Nothing, Offset(0)));
        assert_eq!(reads(&ran), ["first look", "sorted"], "{ran:#?}");
        // Among the first look's rows: nothing more.
        let (_, ran) = statements_of(&mut conn, |conn| {
            page(conn, term, Also::Nothing, Before(6_000))
        });
        assert_eq!(reads(&ran), ["first look"], "{ran:#?}");
        // A term in every address is found in the first look.
        let (rows, ran) = statements_of(&mut conn, |conn| {
            page(conn, "example", Also::Nothing, Offset(0))
        });
        assert_eq!(
            rows,
            newest_first(&plain(&mut conn, "example", Also::Nothing), 0)
        );
        assert_eq!(reads(&ran), ["first look"], "{ran:#?}");
        // The rows after an id are read as they are.
        let (_, ran) = statements_of(&mut conn, |conn| {
            page(conn, term, Also::Nothing, After(100))
        });
        assert_eq!(reads(&ran), ["walk"], "{ran:#?}");
    }
}

on_both_backends!(
    a_common_terms_pages_are_the_plain_pages,
    super::a_common_terms_pages_are_the_plain_pages
);
