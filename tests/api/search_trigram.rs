//! The console's subscriber search through the trigram index (pg_trgm on PostgreSQL, FTS5's
//! trigram tokenizer on SQLite) finds exactly what a plain `LIKE` scan finds, keeps up with
//! subscribers added, renamed and erased after the index was built, and on PostgreSQL is answered
//! from the index.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use iria_news::foundation::db::schema::subscribers;
use iria_news::foundation::db::{self, DbConnection};
use iria_news::foundation::domain::{SubscriberEmail, SubscriberName, Topics};
use iria_news::stores::subscriptions::{directory, records};

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

/// Addresses (as stored: lower-case) and names chosen to trip a search: LIKE's wildcards `%` and
/// `_` as plain characters, near misses where a wildcard would match, upper case, non-ASCII in
/// both, a double quote and a backslash (FTS5's and LIKE's escapes), no name at all.
const ROWS: &[(&str, Option<&str>)] = &[
    ("ann%ie@example.org", Some("Annie Percent")),
    ("annxie@example.org", Some("Annie Near-Miss")),
    ("under_score@example.org", Some("Under Score")),
    ("underxscore@example.org", Some("Under X Score")),
    ("josé@example.org", Some("José Álvarez")),
    ("zoë.müller@example.de", Some("Zoë Müller")),
    ("élodie@example.fr", Some("ÉLODIE Durand")),
    ("upper@example.org", Some("MIXED Case NAME")),
    ("ab@cd.org", None),
    ("x.y@example.com", None),
    ("quoted@example.net", Some("The \"Analyst\"")),
    ("back@example.net", Some("back\\slash")),
    ("reader42@iria.example", Some("Reader Forty-Two")),
];

/// Terms of every length: 1 and 2 characters (LIKE alone on SQLite), wildcards, upper case,
/// non-ASCII, across the @, quotes and backslashes, nothing at all.
const TERMS: &[&str] = &[
    "%",
    "_",
    "n%i",
    "r_s",
    "ANN",
    "é",
    "zo",
    "ë",
    "ü",
    "müll",
    "e@ex",
    "r@example.d",
    "42@iria",
    "élodie d",
    "ÉLODIE D",
    "MIXED",
    "case na",
    "\"analyst\"",
    "\"",
    "\\",
    "k\\s",
    "example",
    "o",
    "ex",
    "nothing-like-it",
    " score ",
];

/// What a plain LIKE scan finds, computed here from the rows: the term, trimmed and lower-cased,
/// in the address or in the name as the backend's `lower()` and `LIKE` fold it (SQLite's fold
/// ASCII letters only; PostgreSQL's, under the test databases' UTF-8 locale, every letter).
fn expected(backend: Backend, rows: &[(i64, String, Option<String>)], term: &str) -> Vec<i64> {
    let term = term.trim().to_lowercase();
    let fold = |s: &str| match backend {
        Backend::Sqlite => s.to_ascii_lowercase(),
        Backend::Postgres => s.to_lowercase(),
    };
    let mut ids: Vec<i64> = rows
        .iter()
        .filter(|(_, email, name)| {
            fold(email).contains(&term) || name.as_deref().is_some_and(|n| fold(n).contains(&term))
        })
        .map(|(id, _, _)| *id)
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The plain LIKE scan itself, over the table with no index involved, newest first.
pub(crate) fn like_scan(conn: &mut DbConnection, term: &str) -> Vec<i64> {
    let escaped = term
        .trim()
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("%{escaped}%");
    let sql = "SELECT id FROM subscribers WHERE erased_at IS NULL AND (email LIKE $1 ESCAPE '\\' \
               OR lower(name) LIKE $1 ESCAPE '\\') ORDER BY id DESC";
    let rows: Vec<Id> = match conn {
        DbConnection::Pg(c) => diesel::sql_query(sql)
            .bind::<Text, _>(&pattern)
            .load(c)
            .expect("LIKE scan"),
        DbConnection::Sqlite(c) => diesel::sql_query(sql.replace("$1", "?1"))
            .bind::<Text, _>(&pattern)
            .load(c)
            .expect("LIKE scan"),
    };
    rows.into_iter().map(|r| r.id).collect()
}

/// What the console's search finds (every page of it), newest first.
fn search(conn: &mut DbConnection, term: &str) -> Vec<i64> {
    let filter = directory::Filter {
        text: term.to_string(),
        ..Default::default()
    };
    let found =
        directory::search(conn, &filter, 1000, directory::Window::Offset(0)).expect("search");
    let counted = directory::count(conn, &filter).expect("count");
    assert_eq!(
        counted,
        found.len() as i64,
        "count and list agree for {term:?}"
    );
    found.into_iter().map(|r| r.id).collect()
}

fn insert(conn: &mut DbConnection, email: &str, name: Option<&str>) -> i64 {
    let now = db::now();
    diesel::insert_into(subscribers::table)
        .values((
            subscribers::email.eq(email),
            subscribers::name.eq(name),
            subscribers::status.eq("confirmed"),
            subscribers::topics.eq(""),
            subscribers::created_at.eq(now),
            subscribers::updated_at.eq(now),
            subscribers::confirmed_at.eq(Some(now)),
        ))
        .returning(subscribers::id)
        .get_result(conn)
        .expect("insert")
}

/// An article for the coming digest, published an hour ago.
fn add_article(conn: &mut DbConnection, n: usize) {
    let article = iria_news::stores::articles::NewArticle {
        guid: format!("guid-{n}"),
        link: format!("https://iria.example/2026/12/article-{n}/"),
        title: format!("Article {n}"),
        summary: format!("Summary of article {n}."),
        body: format!("<p>Body of article {n}.</p>"),
        author: None,
        categories: vec!["Europe".into()],
        image_url: None,
        image_credit: None,
        published_at: db::now() - chrono::Duration::hours(1),
    };
    iria_news::stores::articles::upsert(conn, &[article], iria_news::stores::articles::Source::Api)
        .expect("article");
}

fn all_rows(conn: &mut DbConnection) -> Vec<(i64, String, Option<String>)> {
    subscribers::table
        .filter(subscribers::erased_at.is_null())
        .select((subscribers::id, subscribers::email, subscribers::name))
        .load(conn)
        .expect("rows")
}

/// Every term finds what the plain LIKE scan finds, computed from the rows and run as SQL.
fn assert_same_as_like(backend: Backend, conn: &mut DbConnection, terms: &[&str]) {
    let rows = all_rows(conn);
    for term in terms {
        let want = expected(backend, &rows, term);
        assert_eq!(
            like_scan(conn, term),
            want,
            "the plain LIKE scan for {term:?}"
        );
        assert_eq!(search(conn, term), want, "the search for {term:?}");
    }
}

async fn trigram_search_finds_what_like_finds(backend: Backend) {
    let Some(test_db) = TestDb::create(backend) else {
        return;
    };
    let mut conn = test_db.connect();
    db::migrate(&mut conn).expect("migrate");
    for (email, name) in ROWS {
        insert(&mut conn, email, *name);
    }
    assert_same_as_like(backend, &mut conn, TERMS);
    // Terms that must find something, so that the comparison above is not of empty sets.
    for (term, n) in [
        ("n%i", 1),
        ("r_s", 1),
        ("müll", 1),
        ("\"analyst\"", 1),
        ("k\\s", 1),
    ] {
        assert_eq!(search(&mut conn, term).len(), n, "{term:?}");
    }
    assert!(search(&mut conn, "e@ex").len() >= 3, "a term across the @");

    // Added after the index was built: found.
    let env: std::collections::BTreeMap<String, String> = [
        ("IRIA_DATABASE_URL", test_db.url.as_str()),
        (
            "IRIA_SECRET_KEY",
            "search-test-secret-key-of-32-bytes-or-more",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings =
        iria_news::foundation::config::Settings::from_sources(None, &env).expect("settings");
    let options = directory::ImportOptions {
        consent_held: true,
        source: "test".into(),
        editor: "alice".into(),
    };
    let email = SubscriberEmail::parse("Late.Comer@Example.NET").expect("email");
    let name = SubscriberName::parse("Nadia Latecomer").expect("name");
    let added = directory::add(
        &mut conn,
        &settings,
        email,
        name,
        Topics::default(),
        &options,
    )
    .expect("add");
    let directory::Added::Confirmed(late) = added else {
        panic!("added as confirmed: {added:?}");
    };
    assert_eq!(search(&mut conn, "LATE.COM"), vec![late]);
    assert_eq!(search(&mut conn, "latecomer"), vec![late]);

    // Renamed: found by the new name, no longer by the old.
    let renamed = SubscriberName::parse("Nadia Ortega").expect("name");
    records::update_preferences(&mut conn, late, renamed.as_ref(), &Topics::default())
        .expect("rename");
    assert_eq!(search(&mut conn, "ortega"), vec![late]);
    assert!(
        search(&mut conn, "latecomer").is_empty(),
        "the old name is gone"
    );
    if let DbConnection::Sqlite(c) = &mut conn {
        // The FTS5 index itself followed the rename (the search above checks with LIKE too).
        let fts = |c: &mut diesel::SqliteConnection, phrase: &str| -> Vec<i64> {
            diesel::sql_query(
                "SELECT rowid AS id FROM subscribers_search WHERE subscribers_search MATCH ?",
            )
            .bind::<Text, _>(phrase)
            .load::<Id>(c)
            .expect("fts")
            .into_iter()
            .map(|r| r.id)
            .collect()
        };
        assert_eq!(fts(c, "\"ORTEGA\""), vec![late]);
        assert!(fts(c, "\"latecomer\"").is_empty());
    }

    // Erased: found by nothing it was.
    let erased = directory::search(
        &mut conn,
        &directory::Filter {
            text: "ann%ie".into(),
            ..Default::default()
        },
        10,
        directory::Window::Offset(0),
    )
    .expect("search")[0]
        .id;
    assert!(records::erase(&mut conn, erased, settings.secret()).expect("erase"));
    assert!(search(&mut conn, "ann%ie").is_empty());
    assert!(search(&mut conn, "annie percent").is_empty());
    assert!(search(&mut conn, "late.comer").contains(&late));
    assert_same_as_like(backend, &mut conn, TERMS);

    if backend == Backend::Postgres {
        assert_uses_trigram_index(&mut conn);
    }
}

/// How many times this transaction scanned the index named.
fn scans_of(conn: &mut DbConnection, index: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Scans {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let DbConnection::Pg(c) = conn else {
        unreachable!("PostgreSQL only")
    };
    diesel::sql_query("SELECT pg_stat_get_xact_numscans($1::regclass) AS n")
        .bind::<Text, _>(index)
        .get_result::<Scans>(c)
        .expect("scans")
        .n
}

/// With sequential scans made dear (the table is small here; at a million rows the planner
/// picks the index by itself for a rare term), the search's own statement reads the trigram
/// indexes, and EXPLAIN of the same condition shows them. The indexes of live ids and of live
/// statuses and topics are dropped for the while, in a transaction rolled back after: on a table
/// this small the planner reads all of it through one of them (they hold exactly the rows not
/// erased) rather than sequentially.
fn assert_uses_trigram_index(conn: &mut DbConnection) {
    conn.batch_execute(
        "BEGIN; SET LOCAL enable_seqscan = off; DROP INDEX subscribers_live_ids; \
         DROP INDEX subscribers_live_status_topics",
    )
    .expect("begin");
    let before = scans_of(conn, "subscribers_email_trgm");
    let found = search(conn, "müll");
    assert_eq!(found.len(), 1);
    let after = scans_of(conn, "subscribers_email_trgm");
    assert!(
        after > before,
        "the search read subscribers_email_trgm ({before} scans before, {after} after)"
    );
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let DbConnection::Pg(c) = conn else {
        unreachable!("PostgreSQL only")
    };
    let plan: Vec<Line> = diesel::sql_query(
        "EXPLAIN SELECT id FROM subscribers WHERE erased_at IS NULL AND \
         (email LIKE '%müll%' ESCAPE '\\' OR lower(name) LIKE '%müll%' ESCAPE '\\') \
         ORDER BY id DESC LIMIT 50",
    )
    .load(c)
    .expect("explain");
    let plan: Vec<String> = plan.into_iter().map(|l| l.line).collect();
    let plan = plan.join("\n");
    for index in ["subscribers_email_trgm", "subscribers_name_trgm"] {
        assert!(plan.contains(index), "EXPLAIN names {index}:\n{plan}");
    }
    assert!(!plan.contains("Seq Scan"), "no sequential scan:\n{plan}");
    conn.batch_execute("ROLLBACK").expect("rollback");
}

on_both_backends!(
    trigram_search_finds_what_like_finds,
    super::trigram_search_finds_what_like_finds
);

/// A migrated database of `n` readers (see [`seed`]), then the statements of `narrow` run (empty:
/// none) and the readers of `erased` erased; `None` where the backend cannot be had. The
/// database lives as long as the [`TestDb`].
pub(crate) fn seeded(
    backend: Backend,
    n: i64,
    narrow: &str,
    erased: impl IntoIterator<Item = i64>,
) -> Option<(TestDb, DbConnection)> {
    let test_db = TestDb::create(backend)?;
    let mut conn = test_db.connect();
    db::migrate(&mut conn).expect("migrate");
    seed(&mut conn, n);
    if !narrow.is_empty() {
        conn.batch_execute(narrow).expect("narrow");
    }
    for id in erased {
        records::erase(&mut conn, id, b"test-secret").expect("erase");
    }
    Some((test_db, conn))
}

/// The ids of a page of the console's list, as `directory::search` reads it.
pub(crate) fn page_ids(
    conn: &mut DbConnection,
    filter: &directory::Filter,
    limit: i64,
    window: directory::Window,
) -> Vec<i64> {
    directory::search(conn, filter, limit, window)
        .expect("page")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Seeds `n` confirmed subscribers `readerN@example.org` in one statement.
pub(crate) fn seed(conn: &mut DbConnection, n: i64) {
    let sql = match conn {
        DbConnection::Pg(_) => format!(
            "INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at) \
             SELECT 'reader' || g || '@example.org', 'Reader ' || g, 'confirmed', '', now(), now(), now() \
             FROM generate_series(1, {n}) g"
        ),
        DbConnection::Sqlite(_) => format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n}) \
             INSERT INTO subscribers (email, name, status, topics, created_at, updated_at, confirmed_at) \
             SELECT 'reader' || n || '@example.org', 'Reader ' || n, 'confirmed', '', \
             strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now'), \
             strftime('%Y-%m-%d %H:%M:%f', 'now') FROM g"
        ),
    };
    conn.batch_execute(&sql).expect("seed");
}

/// With 100,000 subscribers the list counts up to 10,000 and says "more than", its Next link
/// pages by id, a search still counts exactly, and the dashboard's figures are counted once a
/// minute (a sign-up in between shows at the next count, and the page says when it counted).
async fn a_large_list_is_counted_up_to_the_cap(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app(backend).await else {
        return;
    };
    let console = crate::console::log_in(&app, true).await;
    seed(&mut app.conn(), 100_000);
    let body = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.text().await.expect("body")
    };
    let list = body(console.get("/admin/subscribers").await).await;
    assert!(
        list.contains("More than 10000</span> subscribers match"),
        "{list}"
    );
    assert!(
        list.contains("reader100000@example.org"),
        "the newest first"
    );
    let next = list
        .split("before=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a Next link paging by id");
    assert_eq!(next, (100_000 - 49).to_string(), "the last id of page 1");
    let page2 = body(
        console
            .get(&format!("/admin/subscribers?page=2&before={next}"))
            .await,
    )
    .await;
    assert!(
        page2.contains("reader99950@example.org"),
        "page 2 starts where 1 ended"
    );
    assert!(!page2.contains("reader99951@example.org"));
    // Page 3, then its Previous link: by id too (no offset), and it shows page 2 again.
    let next = page2
        .split("before=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("page 2's Next link");
    let page3 = body(
        console
            .get(&format!("/admin/subscribers?page=3&before={next}"))
            .await,
    )
    .await;
    assert!(page3.contains("reader99900@example.org"), "page 3's first");
    let previous = page3
        .split("\">Previous</a>")
        .next()
        .and_then(|head| head.rsplit("href=\"").next())
        .expect("a Previous link")
        .replace("&amp;", "&");
    assert!(
        previous.contains("page=2") && previous.contains("after=99900"),
        "{previous}"
    );
    let back = body(console.get(&previous).await).await;
    assert!(back.contains("reader99950@example.org"), "page 2's first");
    assert!(back.contains("reader99901@example.org"), "page 2's last");
    assert!(!back.contains("reader99900@example.org"));
    assert!(!back.contains("reader99951@example.org"));
    assert!(
        back.find("reader99950@").expect("first") < back.find("reader99901@").expect("last"),
        "newest first"
    );

    // A term too short for the trigram index is counted up to 1,000 only.
    let short = body(console.get("/admin/subscribers?q=42").await).await;
    assert!(
        short.contains("More than 1000</span> subscribers match"),
        "{short}"
    );

    // reader4242, reader42420 to reader42429.
    let found = body(console.get("/admin/subscribers?q=READER4242").await).await;
    assert!(found.contains("11 subscriber(s)"), "{found}");

    let dashboard = body(console.get("/admin").await).await;
    assert!(
        dashboard.contains("<dd id=\"count-confirmed\">100000</dd>"),
        "{dashboard}"
    );
    assert!(
        dashboard.contains("id=\"figures-cached\""),
        "the page says the figures are kept"
    );
    // The digest page: the readers grouped by topics are counted at most once a minute too,
    // and the page says so; the articles are read at each view.
    add_article(&mut app.conn(), 1);
    let digest = body(console.get("/admin/digest").await).await;
    assert!(digest.contains("1 article(s) so far"), "{digest}");
    assert!(digest.contains("<td class=\"num\">100000</td>"), "{digest}");
    assert!(digest.contains("id=\"readers-counted\""), "{digest}");
    insert(&mut app.conn(), "one-more@example.org", None);
    add_article(&mut app.conn(), 2);
    let digest = body(console.get("/admin/digest").await).await;
    assert!(digest.contains("2 article(s) so far"), "{digest}");
    assert!(
        digest.contains("<td class=\"num\">100000</td>"),
        "readers counted at most once a minute"
    );
    let again = body(console.get("/admin").await).await;
    assert!(
        again.contains("<dd id=\"count-confirmed\">100000</dd>"),
        "counted at most once a minute"
    );
    // The list itself is never kept: the new subscriber is on it at once.
    let list = body(console.get("/admin/subscribers").await).await;
    assert!(list.contains("one-more@example.org"));
}

on_both_backends!(
    a_large_list_is_counted_up_to_the_cap,
    super::a_large_list_is_counted_up_to_the_cap
);

/// The topic filter finds the readers whose list of topics holds the topic as a whole name, in
/// any place of the list, and no one whose topic merely contains it or matches it as a pattern.
async fn a_topic_filter_matches_whole_names(backend: Backend) {
    let Some(test_db) = TestDb::create(backend) else {
        return;
    };
    let mut conn = test_db.connect();
    db::migrate(&mut conn).expect("migrate");
    let mut with_topics = |email: &str, topics: &str| {
        let id = insert(&mut conn, email, None);
        diesel::update(subscribers::table.find(id))
            .set(subscribers::topics.eq(topics))
            .execute(&mut conn)
            .expect("topics");
        id
    };
    let only = with_topics("only@example.org", "Terrorism");
    let first = with_topics("first@example.org", "Terrorism,Defence");
    let last = with_topics("last@example.org", "Defence,Terrorism");
    let middle = with_topics("middle@example.org", "Defence,Terrorism,Diplomacy");
    for (email, topics) in [
        ("prefix@example.org", "Counter-Terrorism"),
        ("suffix@example.org", "Terrorism Studies"),
        ("near@example.org", "Defence,Counter-Terrorism,Diplomacy"),
        ("other@example.org", "Defence"),
        ("all@example.org", ""),
    ] {
        with_topics(email, topics);
    }
    let found = |conn: &mut DbConnection, topic: &str| -> Vec<i64> {
        let filter = directory::Filter {
            topic: Some(topic.into()),
            ..Default::default()
        };
        let rows =
            directory::search(conn, &filter, 100, directory::Window::Offset(0)).expect("search");
        assert_eq!(
            directory::count(conn, &filter).expect("count"),
            rows.len() as i64
        );
        rows.into_iter().map(|r| r.id).collect()
    };
    assert_eq!(
        found(&mut conn, "Terrorism"),
        vec![middle, last, first, only]
    );
    assert!(found(&mut conn, "Terror_sm").is_empty(), "_ is no wildcard");
    assert!(found(&mut conn, "%").is_empty(), "% is no wildcard");
    assert!(found(&mut conn, "Defence,Terrorism").is_empty(), "one name");
}

on_both_backends!(
    a_topic_filter_matches_whole_names,
    super::a_topic_filter_matches_whole_names
);

/// The ids of a page of the list as a plain `OFFSET` over the table gives them.
fn plain_page(conn: &mut DbConnection, status: Option<&str>, offset: i64) -> Vec<i64> {
    let mut query = subscribers::table
        .filter(subscribers::erased_at.is_null())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(subscribers::status.eq(status.to_string()));
    }
    query
        .select(subscribers::id)
        .order(subscribers::id.desc())
        .limit(50)
        .offset(offset)
        .load(conn)
        .expect("plain page")
}

/// A page deep in the list (its ids read first from the index of live ids, then its rows) holds
/// exactly the rows a plain OFFSET over the table gives, around the depth where the list changes
/// its way of reading, with erased and unsubscribed readers among the rows skipped.
async fn a_deep_page_is_the_plain_offsets_page(backend: Backend) {
    let Some((_db, mut conn)) = seeded(
        backend,
        3_000,
        "UPDATE subscribers SET status = 'unsubscribed' WHERE id > 2400 AND id < 2600",
        (7..3_000).step_by(97),
    ) else {
        return;
    };
    for status in [None, Some("confirmed"), Some("unsubscribed")] {
        let filter = directory::Filter {
            status: status.map(str::to_string),
            ..Default::default()
        };
        for offset in [0, 950, 999, 1_000, 1_001, 1_500, 2_890, 2_950, 5_000] {
            let page = page_ids(&mut conn, &filter, 50, directory::Window::Offset(offset));
            let want = plain_page(&mut conn, status, offset);
            assert_eq!(page, want, "status {status:?}, offset {offset}");
            if offset == 1_000 && status.is_none() {
                assert_eq!(page.len(), 50, "a full page");
            }
        }
    }
}

on_both_backends!(
    a_deep_page_is_the_plain_offsets_page,
    super::a_deep_page_is_the_plain_offsets_page
);

/// The plan SQLite gives `sql` (EXPLAIN QUERY PLAN), one step a line.
pub(crate) fn sqlite_plan(conn: &mut DbConnection, sql: &str) -> String {
    #[derive(QueryableByName)]
    struct Step {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    let DbConnection::Sqlite(c) = conn else {
        unreachable!("SQLite only")
    };
    let steps: Vec<Step> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
        .load(c)
        .expect("explain");
    steps
        .into_iter()
        .map(|s| s.detail)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A status and topic filter's exact count (the API's `total`) reads the index of live statuses
/// and topics rather than the table, while a page of the same filter, of a status more than
/// 10,000 readers hold, still reads the table newest first (SQLite read it through that index
/// and sorted every match; a rare status is, see `rare_status.rs`); both find what a plain
/// reading of the rows finds.
async fn a_status_and_topic_count_reads_its_index(backend: Backend) {
    let Some((_db, mut conn)) = seeded(
        backend,
        12_000,
        "UPDATE subscribers SET topics = 'Terrorism' WHERE id % 3 = 0; \
         UPDATE subscribers SET topics = 'Defence,Terrorism' WHERE id % 7 = 0; \
         UPDATE subscribers SET status = 'unsubscribed' WHERE id % 10 = 0",
        (5..12_000).step_by(1_000),
    ) else {
        return;
    };
    let (status, topic) = ("confirmed", "Terrorism");
    let expected: Vec<i64> = subscribers::table
        .filter(subscribers::erased_at.is_null())
        .filter(subscribers::status.eq(status))
        .select((subscribers::id, subscribers::topics))
        .order(subscribers::id.desc())
        .load::<(i64, String)>(&mut conn)
        .expect("rows")
        .into_iter()
        .filter(|(_, topics)| topics.split(',').any(|t| t == topic))
        .map(|(id, _)| id)
        .collect();
    assert!(expected.len() > 500, "{} matches", expected.len());
    let filter = directory::Filter {
        status: Some(status.into()),
        topic: Some(topic.into()),
        ..Default::default()
    };
    let page = page_ids(&mut conn, &filter, 50, directory::Window::Offset(100));
    assert_eq!(page, expected[100..150]);
    match backend {
        Backend::Postgres => {
            // Sequential scans made dear, and the index of live ids out of the way, as in
            // `assert_uses_trigram_index`: the table is too small for the planner to prefer an
            // index by itself (at a million rows it does).
            conn.batch_execute(
                "BEGIN; SET LOCAL enable_seqscan = off; DROP INDEX subscribers_live_ids",
            )
            .expect("begin");
            let before = scans_of(&mut conn, "subscribers_live_status_topics");
            let total = directory::count_all(&mut conn, &filter).expect("count");
            let after = scans_of(&mut conn, "subscribers_live_status_topics");
            conn.batch_execute("ROLLBACK").expect("rollback");
            assert_eq!(total, expected.len() as i64);
            assert!(
                after > before,
                "the count read subscribers_live_status_topics"
            );
        }
        Backend::Sqlite => {
            // The statements the store runs, as SQLite receives them (parameters unbound in
            // the plan: SQLite plans an equality or a call the same whatever its value), planned
            // as in a deployment: without statistics (nothing runs ANALYZE on SQLite), SQLite
            // plans alike for 3,000 rows and for a million.
            let (total, ran) = statements_of(&mut conn, |conn| {
                directory::count_all(conn, &filter).expect("count")
            });
            assert_eq!(total, expected.len() as i64);
            let count = only(&ran, "COUNT(");
            let count = sqlite_plan(&mut conn, &count);
            assert!(
                count.contains("COVERING INDEX subscribers_live_status_topics"),
                "the count reads the index alone:\n{count}"
            );
            let (_, ran) = statements_of(&mut conn, |conn| {
                directory::search(conn, &filter, 50, directory::Window::Offset(100)).expect("page")
            });
            let page = only(&ran, "ORDER BY");
            let page = sqlite_plan(&mut conn, &page);
            assert!(
                !page.contains("subscribers_live_status_topics") && !page.contains("TEMP B-TREE"),
                "the page reads the table newest first and sorts nothing:\n{page}"
            );
        }
    }
}

/// What `run` returns, and the SQL of every statement it ran on `conn`, as diesel hands it to
/// the database (`?` or `$n` for each parameter).
pub(crate) fn statements_of<T>(
    conn: &mut DbConnection,
    run: impl FnOnce(&mut DbConnection) -> T,
) -> (T, Vec<String>) {
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let text = query.to_string();
            let sql = text.split(" -- binds: ").next().unwrap_or_default();
            record.lock().expect("statements").push(sql.to_string());
        }
    });
    let result = run(conn);
    conn.set_instrumentation(None::<Box<dyn Instrumentation>>);
    let ran = seen.lock().expect("statements").clone();
    (result, ran)
}

/// The one statement of `ran` on the subscribers that holds `marker`.
pub(crate) fn only(ran: &[String], marker: &str) -> String {
    let found: Vec<&String> = ran
        .iter()
        .filter(|sql| sql.contains("`subscribers`") && sql.contains(marker))
        .collect();
    assert_eq!(found.len(), 1, "one statement with {marker}: {ran:#?}");
    found[0].clone()
}

on_both_backends!(
    a_status_and_topic_count_reads_its_index,
    super::a_status_and_topic_count_reads_its_index
);

/// On SQLite a topic filter's exact count is reckoned per distinct topic list (walked in the
/// index, the filter checked on one reader of each list): it equals the number of rows a page of
/// the same filter lists, with or without a status, for lists that hold the topic first, last,
/// in the middle, as part of another name or in another case, and past the most lists walked
/// (then SQLite counts plainly). No statement of a walked count reads the table whole.
async fn a_topic_count_by_lists_is_what_the_rows_hold(backend: Backend) {
    let Some((_db, mut conn)) = seeded(
        backend,
        30_000,
        "UPDATE subscribers SET topics = 'Terrorism' WHERE id % 3 = 0; \
         UPDATE subscribers SET topics = 'Defence,Terrorism' WHERE id % 7 = 0; \
         UPDATE subscribers SET topics = 'Terrorism,Defence' WHERE id % 11 = 0; \
         UPDATE subscribers SET topics = 'Defence,Terrorism,Europe' WHERE id % 13 = 0; \
         UPDATE subscribers SET topics = 'terrorism' WHERE id % 17 = 0; \
         UPDATE subscribers SET topics = 'Counter-Terrorism' WHERE id % 19 = 0; \
         UPDATE subscribers SET topics = 'Terrorismus,Defence' WHERE id % 23 = 0; \
         UPDATE subscribers SET topics = 'Defence' WHERE id % 29 = 0; \
         UPDATE subscribers SET status = 'unsubscribed' WHERE id % 10 = 0; \
         UPDATE subscribers SET status = 'pending' WHERE id % 31 = 0",
        (4..3_000).step_by(150),
    ) else {
        return;
    };
    let filters = [
        (Some("confirmed"), "Terrorism"),
        (None, "Terrorism"),
        (Some("unsubscribed"), "Defence"),
        (None, "Europe"),
        (Some("pending"), "Terrorism"),
        (None, "Nothing"),
        (Some("bounced"), "Terrorism"),
    ];
    let check = |conn: &mut DbConnection, walked: &dyn Fn(Option<&str>) -> bool| {
        for (status, topic) in filters {
            let filter = directory::Filter {
                status: status.map(str::to_string),
                topic: Some(topic.into()),
                ..Default::default()
            };
            let rows = directory::search(conn, &filter, 50_000, directory::Window::Offset(0))
                .expect("rows");
            // What a reader of the code expects of a topic filter, on these lists.
            let named = rows
                .iter()
                .filter(|r| r.topics.split(',').any(|t| t == topic))
                .count();
            assert_eq!(
                named,
                rows.len(),
                "{status:?} {topic}: every row names the topic"
            );
            let (total, ran) = match conn {
                DbConnection::Sqlite(_) => statements_of(conn, |conn| {
                    directory::count_all(conn, &filter).expect("count")
                }),
                DbConnection::Pg(_) => {
                    (directory::count_all(conn, &filter).expect("count"), vec![])
                }
            };
            assert_eq!(total, rows.len() as i64, "{status:?} {topic}");
            // The console's count stops past its cap.
            let capped = directory::count(conn, &filter).expect("capped count");
            let cap = directory::count_cap(&filter);
            assert_eq!(capped, total.min(cap + 1), "{status:?} {topic}: capped");
            if matches!(conn, DbConnection::Sqlite(_)) {
                // A plain count checks the topic on every reader it reads.
                let walk = !ran
                    .iter()
                    .any(|sql| sql.contains("COUNT(") && sql.contains("instr("));
                assert_eq!(walk, walked(status), "{status:?} {topic}: {ran:#?}");
                let scans: Vec<String> = ran
                    .iter()
                    .map(|sql| sqlite_plan(conn, sql))
                    .filter(|plan| plan.contains("SCAN subscribers"))
                    .collect();
                assert!(
                    !walk || scans.is_empty(),
                    "{status:?} {topic}: {ran:#?}\n{scans:#?}"
                );
                // The lists are checked on their readers, found by id (not among every reader of
                // the status in the index).
                let checks: Vec<&String> = ran
                    .iter()
                    .filter(|sql| sql.contains("`subscribers`.`id` IN ("))
                    .collect();
                if walk {
                    // No reader is bounced: nothing to check.
                    let want = usize::from(status != Some("bounced"));
                    assert_eq!(checks.len(), want, "{status:?} {topic}: {ran:#?}");
                }
                for check in checks {
                    let plan = sqlite_plan(conn, check);
                    assert!(plan.contains("INTEGER PRIMARY KEY"), "{check}\n{plan}");
                }
            }
        }
    };
    check(&mut conn, &|_| true);
    // More distinct lists among the confirmed readers than a walk takes: their counts (and
    // those of every status at once) are the plain ones.
    conn.batch_execute(&format!(
        "UPDATE subscribers SET topics = 'Terrorism,Reader ' || id WHERE id <= {}",
        directory::MOST_TOPIC_LISTS + 50
    ))
    .expect("many lists");
    check(&mut conn, &|status| {
        status.is_some_and(|s| s != "confirmed")
    });
}

on_both_backends!(
    a_topic_count_by_lists_is_what_the_rows_hold,
    super::a_topic_count_by_lists_is_what_the_rows_hold
);
