//! The ledger's statistics after a large queueing (PostgreSQL): the planner must know of the new
//! copies at once, not a minute later when autovacuum analyses the table, or a reader's page and
//! an issue's page scan the whole ledger.

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Double, Text};
use iria_news::foundation::config::Settings;
use iria_news::foundation::db::{self, DbConnection};
use iria_news::stores::articles::{self, Source};

use crate::digest::new_article;
use crate::helpers::{Backend, TestDb};

#[derive(QueryableByName)]
struct Estimate {
    #[diesel(sql_type = Double)]
    rows: f64,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// A migrated PostgreSQL database holding the readers `readers` inserts, and settings for it.
fn database_with(readers: &str) -> Option<(TestDb, DbConnection, Settings)> {
    let test_db = TestDb::create(Backend::Postgres)?;
    let mut conn = test_db.connect();
    db::migrate(&mut conn).expect("migrate");
    let DbConnection::Pg(pg) = &mut conn else {
        unreachable!("a PostgreSQL database")
    };
    pg.batch_execute(readers).expect("readers");
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("IRIA_DATABASE_URL", test_db.url.as_str()),
        ("IRIA_SECRET_KEY", "test-secret-key-of-at-least-32-bytes!!"),
        ("IRIA_BASE_URL", "https://news.iria.test"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_sources(None, &env).expect("settings");
    Some((test_db, conn, settings))
}

/// What the planner believes of the ledger: about `copies` rows, and a reader's history read
/// from the reader's index.
fn assert_analysed(conn: &mut DbConnection, copies: f64) {
    let DbConnection::Pg(pg) = conn else {
        unreachable!("a PostgreSQL database")
    };
    let estimate: Estimate = diesel::sql_query(
        "SELECT reltuples::float8 AS rows FROM pg_class WHERE relname = 'deliveries'",
    )
    .get_result(pg)
    .expect("estimate");
    assert!(
        (copies * 0.8..=copies * 1.2).contains(&estimate.rows),
        "the planner believes the ledger holds {} rows, not about {copies}",
        estimate.rows
    );
    let plan: Vec<PlanLine> = diesel::sql_query(
        "EXPLAIN SELECT id FROM deliveries WHERE subscriber_id = 4242 ORDER BY id DESC LIMIT 20",
    )
    .load(pg)
    .expect("plan");
    let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
    assert!(
        plan.iter().any(|l| l.contains("deliveries_subscriber")),
        "a reader's history is read from the reader's index:\n{}",
        plan.join("\n")
    );
}

/// Right after an issue is queued to tens of thousands of readers, the ledger's statistics
/// describe it already: the planner reads a reader's history from the reader's index instead of
/// scanning the whole ledger backwards (300 ms at a million copies, before autovacuum came by a
/// minute later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_queueing_leaves_the_ledger_analysed() {
    let Some((_db, mut conn, settings)) = database_with(
        "INSERT INTO subscribers (email, status, topics, created_at, updated_at)
         SELECT 'r' || g || '@example.org', 'confirmed', '', now(), now()
         FROM generate_series(1, 60000) g",
    ) else {
        return;
    };
    let draft = iria_news::stores::issues::Draft {
        kind: iria_news::stores::issues::Kind::Announcement,
        subject: "To every reader".into(),
        preheader: String::new(),
        body_html: "<p>This week's analysis.</p>".into(),
        body_text: None,
        topics: Vec::new(),
        period_key: None,
        idempotency_key: None,
    };
    let queued = iria_news::processes::compose::create_and_queue(&mut conn, &settings, &draft)
        .expect("queue");
    assert_eq!(queued.recipients, 60_000);
    assert_analysed(&mut conn, 60_000.0);
}

/// A digest queued to 60,000 readers in three groups of 20,000 (readers of Europe, of Asia, of
/// both), none large alone: the ledger is analysed once the digest is queued, as after one issue
/// to all of them. Analysing after each large group instead left this one unanalysed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_queued_in_groups_leaves_the_ledger_analysed() {
    let Some((_db, mut conn, settings)) = database_with(
        "INSERT INTO subscribers (email, status, topics, created_at, updated_at)
         SELECT 'r' || g || '@example.org', 'confirmed',
                (ARRAY['Europe', 'Asia', 'Asia,Europe'])[g % 3 + 1], now(), now()
         FROM generate_series(1, 60000) g",
    ) else {
        return;
    };
    articles::upsert(
        &mut conn,
        &[new_article(1, &["Europe"]), new_article(2, &["Asia"])],
        Source::Api,
    )
    .expect("articles");
    let outcome = iria_news::processes::digest::run(
        &mut conn,
        &settings,
        "digest:2026-11-30T07:00:00Z",
        chrono::Utc::now().naive_utc(),
        false,
    )
    .expect("digest");
    let iria_news::processes::digest::Outcome::Queued { issues, .. } = outcome else {
        panic!("the digest was not queued: {outcome:?}");
    };
    let copies: Vec<usize> = issues.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        copies.len(),
        3,
        "one issue per choice of topics: {copies:?}"
    );
    assert!(copies.iter().all(|n| *n == 20_000), "{copies:?}");
    assert_analysed(&mut conn, 60_000.0);
}
