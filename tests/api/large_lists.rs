//! Lists of an issue's recipients as large as a newsroom's audience: a page found by walking the
//! addresses in order (SQLite) is the page a plain join and sort gives, whether it lies among the
//! first addresses or past them, for a large issue and a small one.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use iria_news::foundation::db::schema::{deliveries, subscribers};
use iria_news::foundation::db::{self, DbConnection};
use iria_news::stores::delivery;

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

/// 60,000 subscribers `readerN@example.org`; issue 1 to eleven in twelve of them (55,000, more
/// than the first addresses looked among; every other one sent; 45,834 of them among the first
/// 50,000 addresses), issue 2 to the 60 of them whose number ends in 999.
fn seed(conn: &mut DbConnection) {
    let (series, now) = match conn {
        DbConnection::Pg(_) => ("generate_series(1, 60000) AS g(n)", "now()"),
        DbConnection::Sqlite(_) => (
            "(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 60000) \
             SELECT n FROM g) AS g",
            "strftime('%Y-%m-%d %H:%M:%f', 'now')",
        ),
    };
    conn.batch_execute(&format!(
        "INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at) \
         SELECT 'reader' || n || '@example.org', NULL, 'confirmed', '', {now}, {now}, {now} FROM {series}; \
         INSERT INTO issues (kind, subject, html, text, status, recipients, created_at) VALUES \
           ('announcement', 'Large', '<p>x</p>', 'x', 'queued', 55000, {now}), \
           ('announcement', 'Small', '<p>x</p>', 'x', 'queued', 60, {now}); \
         INSERT INTO deliveries (kind, issue_id, subscriber_id, priority, status, next_attempt_at, created_at) \
         SELECT 'issue', 1, id, 10, CASE WHEN id % 2 = 0 THEN 'sent' ELSE 'queued' END, {now}, {now} \
         FROM subscribers WHERE id % 12 <> 0; \
         INSERT INTO deliveries (kind, issue_id, subscriber_id, priority, status, next_attempt_at, created_at) \
         SELECT 'issue', 2, id, 10, 'queued', {now}, {now} FROM subscribers WHERE id % 1000 = 999"
    ))
    .expect("seed");
}

/// Every recipient of the issue (of the status), by address, as one plain join and sort gives
/// them: (subscriber, address).
fn plain(conn: &mut DbConnection, issue: i64, status: Option<&str>) -> Vec<(i64, String)> {
    let mut query = deliveries::table
        .inner_join(subscribers::table)
        .filter(deliveries::issue_id.eq(issue))
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(deliveries::status.eq(status.to_string()));
    }
    query
        .order(subscribers::email)
        .select((deliveries::subscriber_id, subscribers::email))
        .load(conn)
        .expect("plain")
}

async fn a_page_of_recipients_is_the_plain_sorts_page(backend: Backend) {
    let Some(test_db) = TestDb::create(backend) else {
        return;
    };
    let mut conn = test_db.connect();
    db::migrate(&mut conn).expect("migrate");
    seed(&mut conn);
    for (issue, status, offsets) in [
        (1, None, &[0, 500, 30_000, 45_500, 54_900][..]),
        (1, Some("sent"), &[0, 16_000, 24_900][..]),
        (2, None, &[0, 10][..]),
    ] {
        let all = plain(&mut conn, issue, status);
        for &offset in offsets {
            let page: Vec<(i64, String)> =
                delivery::recipients_of_issue(&mut conn, issue, status, 500, offset)
                    .expect("recipients")
                    .into_iter()
                    .map(|r| (r.subscriber_id, r.email))
                    .collect();
            let end = (offset as usize + 500).min(all.len());
            let want = all.get(offset as usize..end).unwrap_or_default();
            assert_eq!(
                page, want,
                "issue {issue}, status {status:?}, offset {offset}"
            );
            assert!(
                !page.is_empty(),
                "issue {issue}, offset {offset}: some rows"
            );
        }
    }
}

on_both_backends!(
    a_page_of_recipients_is_the_plain_sorts_page,
    super::a_page_of_recipients_is_the_plain_sorts_page
);
