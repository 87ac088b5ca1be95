//! A status few readers hold (bounced, complained): every page of it, alone or with a topic or a
//! search term, is the page a plain reading of the rows gives; on SQLite it is read from the
//! index of live statuses and topics, not by walking the list newest first (which read every
//! reader when they were few), while a page of a common status still walks the list.

use diesel::prelude::*;
use iria_news::foundation::db::schema::subscribers;
use iria_news::foundation::db::DbConnection;
use iria_news::stores::subscriptions::directory;

use crate::helpers::Backend;
use crate::on_both_backends;
use crate::search_trigram::{like_scan, page_ids, seeded, sqlite_plan, statements_of};

/// The live readers with `status` (and `topic`, and `term`, when given), newest first, read
/// plainly.
fn plain(
    conn: &mut DbConnection,
    status: &str,
    topic: Option<&str>,
    term: Option<&str>,
) -> Vec<i64> {
    let rows: Vec<(i64, String)> = subscribers::table
        .filter(subscribers::erased_at.is_null())
        .filter(subscribers::status.eq(status))
        .order(subscribers::id.desc())
        .select((subscribers::id, subscribers::topics))
        .load(conn)
        .expect("rows");
    let found = term.map(|t| like_scan(conn, t));
    rows.into_iter()
        .filter(|(_, topics)| topic.is_none_or(|t| topics.split(',').any(|x| x == t)))
        .map(|(id, _)| id)
        .filter(|id| found.as_ref().is_none_or(|f| f.contains(id)))
        .collect()
}

fn page(
    conn: &mut DbConnection,
    status: &str,
    topic: Option<&str>,
    term: Option<&str>,
    window: directory::Window,
) -> Vec<i64> {
    let filter = directory::Filter {
        text: term.unwrap_or_default().into(),
        status: Some(status.into()),
        topic: topic.map(str::to_string),
        ..Default::default()
    };
    page_ids(conn, &filter, 20, window)
}

/// 30,000 readers; 120 bounced among the oldest 12,000 (one in a hundred), a third of them
/// reading "Terrorism", some erased; one in ten unsubscribed; the rest (27,000) confirmed.
async fn a_rare_statuses_pages_are_the_plain_pages(backend: Backend) {
    let Some((_db, mut conn)) = seeded(
        backend,
        30_000,
        "UPDATE subscribers SET status = 'unsubscribed' WHERE id % 10 = 0; \
         UPDATE subscribers SET status = 'bounced' WHERE id <= 12000 AND id % 100 = 7; \
         UPDATE subscribers SET topics = 'Defence,Terrorism' WHERE id % 3 = 0",
        (1_007..12_000).step_by(1_500),
    ) else {
        return;
    };
    let bounced = plain(&mut conn, "bounced", None, None);
    assert!(bounced.len() > 100, "{} bounced", bounced.len());
    use directory::Window::{After, Before, Offset};
    let from = |ids: &[i64], at: usize| ids[at..(at + 20).min(ids.len())].to_vec();
    for (topic, term) in [
        (None, None),
        (Some("Terrorism"), None),
        (None, Some("reader1")),
        (Some("Terrorism"), Some("example")),
    ] {
        let all = plain(&mut conn, "bounced", topic, term);
        assert!(all.len() > 20, "{topic:?} {term:?}: {} rows", all.len());
        let before = all[all.len() / 2];
        let after = all[all.len() - 5];
        let first_newer = all.iter().rposition(|&id| id > after).expect("newer");
        for (window, want) in [
            (Offset(0), from(&all, 0)),
            (Offset(20), from(&all, 20)),
            (Offset(all.len() as i64 - 7), from(&all, all.len() - 7)),
            (Before(before), from(&all, all.len() / 2 + 1)),
            (
                After(after),
                all[first_newer.saturating_sub(19)..=first_newer].to_vec(),
            ),
        ] {
            assert_eq!(
                page(&mut conn, "bounced", topic, term, window),
                want,
                "{topic:?} {term:?} {window:?}"
            );
        }
    }
    // A common status (more than the 10,000 readers a count reads) is read as before.
    let confirmed = plain(&mut conn, "confirmed", None, None);
    assert!(confirmed.len() > 10_000);
    assert_eq!(
        page(&mut conn, "confirmed", None, None, Offset(0)),
        from(&confirmed, 0)
    );
    if backend == Backend::Sqlite {
        // The statement that reads the page (the one with ORDER BY and a LIMIT of 20).
        let plan_of = |conn: &mut DbConnection, status: &str| {
            let (_, ran) = statements_of(conn, |conn| page(conn, status, None, None, Offset(0)));
            let read: Vec<&String> = ran.iter().filter(|sql| sql.contains("ORDER BY")).collect();
            assert_eq!(read.len(), 1, "{ran:#?}");
            sqlite_plan(conn, read[0])
        };
        let rare = plan_of(&mut conn, "bounced");
        assert!(
            rare.contains("subscribers_live_status_topics (status=?)")
                && !rare.contains("SCAN subscribers"),
            "a rare status is read from its index:\n{rare}"
        );
        let common = plan_of(&mut conn, "confirmed");
        assert!(
            !common.contains("subscribers_live_status_topics") && !common.contains("TEMP B-TREE"),
            "a common status walks the list newest first:\n{common}"
        );
    }
}

on_both_backends!(
    a_rare_statuses_pages_are_the_plain_pages,
    super::a_rare_statuses_pages_are_the_plain_pages
);
