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

/// 30,000 subscribers `readerN@example.org` named "Reader N", every 7th erased (in both halves
/// of the ids), as the API's list counts them: its `total` for a search is counted in two
/// halves at once on SQLite; either way it is what a plain count of the same LIKE gives.
async fn a_searchs_total_is_the_plain_count(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app(backend).await else {
        return;
    };
    let (series, now) = match &mut app.conn() {
        DbConnection::Pg(_) => ("generate_series(1, 30000) AS g(n)", "now()"),
        DbConnection::Sqlite(_) => (
            "(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 30000) \
             SELECT n FROM g) AS g",
            "strftime('%Y-%m-%d %H:%M:%f', 'now')",
        ),
    };
    app.conn()
        .batch_execute(&format!(
            "INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at, erased_at) \
             SELECT 'reader' || n || '@example.org', 'Reader ' || n, 'confirmed', '', {now}, {now}, {now}, \
             CASE WHEN n % 7 = 0 THEN {now} END FROM {series}; \
             INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at) \
             VALUES ('emile1@iria.test', 'Émile Zola', 'confirmed', '', {now}, {now}, {now}), \
             ('emile2@iria.test', 'émile zola', 'confirmed', '', {now}, {now}, {now}), \
             ('emile3@iria.test', 'ÉMILE ZOLA', 'confirmed', '', {now}, {now}, {now})"
        ))
        .expect("seed");
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "tests").expect("token");
    // In every row (more matches than the index lists: counted by reading the rows), in about a
    // thousand (listed by the index), too short for the index, in none.
    for (term, like) in [
        ("example", "%example%"),
        ("reader12", "%reader12%"),
        ("r 2", "%r 2%"),
        ("2", "%2%"),
        ("nobody-here", "%nobody-here%"),
        // In the names alone, in another case (in more rows than the index lists; too short).
        ("reader ", "%reader %"),
        ("é", "%é%"),
        ("zola", "%zola%"),
    ] {
        let plain: i64 = subscribers::table
            .filter(subscribers::erased_at.is_null())
            .filter(
                subscribers::email
                    .like(like)
                    .nullable()
                    .or(
                        diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(
                            "lower(name)",
                        )
                        .like(like),
                    ),
            )
            .count()
            .get_result(&mut app.conn())
            .expect("plain count");
        let list: serde_json::Value = app
            .client
            .get(format!(
                "{}/api/v1/subscribers?q={}&limit=5",
                app.address,
                term.replace(' ', "%20").replace('é', "%C3%A9")
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert_eq!(list["total"], plain, "{term:?}: {list}");
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(5.min(plain as usize))
        );
    }
    // A term in every row is counted in two halves that tile the ids, on SQLite; a rare one
    // from the index's list; on PostgreSQL either at once.
    use iria_news::stores::subscriptions::directory::{self, Counting};
    let parts = |text: &str| {
        let filter = directory::Filter {
            text: text.into(),
            ..Default::default()
        };
        directory::count_or_split(&mut app.conn(), &filter).expect("count")
    };
    let every = 30_000 - 30_000 / 7;
    match backend {
        Backend::Sqlite => {
            assert_eq!(
                parts("example"),
                Counting::Parts(vec![(i64::MIN, 15_002), (15_003, i64::MAX)])
            );
            assert_eq!(parts("reader29999@"), Counting::Counted(1));
            // A part walks the table's own pages through its range, with or without a
            // status, rather than an index of the live rows with a seek into the table for
            // each of them.
            for status in [None, Some("confirmed".to_string())] {
                let filter = directory::Filter {
                    text: "example".into(),
                    status,
                    ..Default::default()
                };
                let (counted, ran) = crate::search_trigram::statements_of(&mut app.conn(), |c| {
                    directory::count_part(c, &filter, (15_003, i64::MAX)).expect("part")
                });
                assert_eq!(
                    counted,
                    (15_003..=30_000).filter(|n| n % 7 != 0).count() as i64
                );
                let count = crate::search_trigram::only(&ran, "COUNT(");
                let plan = crate::search_trigram::sqlite_plan(&mut app.conn(), &count);
                assert!(
                    plan.contains("INTEGER PRIMARY KEY") && !plan.contains("INDEX"),
                    "{count}\n{plan}"
                );
            }
        }
        Backend::Postgres => assert_eq!(parts("example"), Counting::Counted(every)),
    }
}

on_both_backends!(
    a_searchs_total_is_the_plain_count,
    super::a_searchs_total_is_the_plain_count
);
