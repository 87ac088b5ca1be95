//! Articles and the weekly digest: feed import, polling with conditional GET, the push API, and
//! digests received by a real SMTP server.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use iria_news::foundation::db::schema::{articles as articles_table, feed_state};
use iria_news::processes::digest::{self, Outcome};
use iria_news::processes::feed;
use iria_news::stores::articles::{self, NewArticle, Source};

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

type ArticleRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn article(app: &TestApp, link: &str) -> Option<ArticleRow> {
    articles_table::table
        .filter(articles_table::link.eq(link))
        .select((
            articles_table::title,
            articles_table::author,
            articles_table::categories,
            articles_table::image_url,
            articles_table::image_credit,
            articles_table::body,
            articles_table::summary,
        ))
        .first(&mut app.conn())
        .optional()
        .expect("article")
}

async fn a_wordpress_feed_imports_fully_and_malformed_items_are_reported(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let parsed = feed::parse(&fixture("wordpress.xml")).expect("parse");
    assert_eq!(parsed.articles.len(), 3, "three good items");
    assert_eq!(parsed.skipped.len(), 2, "{:?}", parsed.skipped);
    assert!(parsed.skipped.iter().any(|s| s.contains("no usable date")));
    assert!(parsed.skipped.iter().any(|s| s.contains("no link")));
    let done = articles::upsert(&mut app.conn(), &parsed.articles, Source::Feed).expect("store");
    assert_eq!(done.new, 3);

    let (title, author, categories, image, credit, body, summary) = article(
        &app,
        "https://iria.example/2026/11/us-iraqi-defense-chiefs/",
    )
    .expect("imported");
    assert!(title.starts_with("US and Iraqi defense chiefs meet"));
    assert_eq!(author.as_deref(), Some("IRIA News Desk"), "dc:creator");
    assert_eq!(
        categories, "Middle East,US,Defense",
        "every category element"
    );
    assert_eq!(
        image.as_deref(),
        Some("https://iria.example/wp-content/uploads/2026/11/mosul.jpg"),
        "media:content"
    );
    assert_eq!(credit.as_deref(), Some("Reuters"), "media:credit");
    assert!(body.contains("Lloyd Austin"), "content:encoded");
    assert!(
        !body.contains("<script") && !body.contains("onclick"),
        "sanitised: {body}"
    );
    assert!(summary.starts_with("U.S. Secretary of Defense"));
    let (_, author, _, image, _, _, _) = article(
        &app,
        "https://iria.example/2026/11/europe-defence-spending/",
    )
    .expect("imported");
    assert_eq!(author.as_deref(), Some("Anna Weber"));
    assert_eq!(
        image.as_deref(),
        Some("https://iria.example/wp-content/uploads/2026/11/summit.jpg"),
        "enclosure"
    );
    let (_, _, _, _, _, _, summary) =
        article(&app, "https://iria.example/2026/11/sahel/").expect("no guid: by link");
    assert!(!summary.contains("evil"), "{summary}");

    // Again: nothing new. Edited: updated in place.
    let again = articles::upsert(&mut app.conn(), &parsed.articles, Source::Feed).expect("store");
    assert_eq!((again.new, again.updated, again.unchanged), (0, 0, 3));
    let mut edited = parsed.articles.clone();
    edited[1].title = "Europe's defence spending after the summit (updated)".into();
    let after = articles::upsert(&mut app.conn(), &edited, Source::Feed).expect("store");
    assert_eq!((after.new, after.updated), (0, 1));
}
on_both_backends!(
    a_wordpress_feed_imports_fully_and_malformed_items_are_reported,
    super::a_wordpress_feed_imports_fully_and_malformed_items_are_reported
);

#[test]
fn an_atom_feed_imports_and_undated_entries_are_skipped() {
    let parsed = feed::parse(&fixture("atom.xml")).expect("parse");
    assert_eq!(parsed.articles.len(), 2, "{:?}", parsed.skipped);
    let red_sea = &parsed.articles[0];
    assert_eq!(red_sea.guid, "tag:iria.example,2026:1101");
    assert_eq!(red_sea.author.as_deref(), Some("Omar Haddad"));
    assert_eq!(red_sea.categories, vec!["Analysis", "Middle East"]);
    assert!(!red_sea.body.contains("script"));
    assert_eq!(
        parsed.articles[1].published_at.to_string(),
        "2026-11-25 07:00:00",
        "updated when no published"
    );
    assert!(feed::parse(b"<html>not a feed</html>").is_err());
}

/// A feed server on loopback: serves `wordpress.xml` with an ETag, answers 304 to a matching
/// If-None-Match, and 500 while `failing` is set.
struct FeedServer {
    url: String,
    requests: Arc<AtomicUsize>,
    conditional: Arc<Mutex<Vec<Option<String>>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

async fn feed_server() -> FeedServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/feed/", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let conditional = Arc::new(Mutex::new(Vec::new()));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, c, f) = (requests.clone(), conditional.clone(), failing.clone());
    let body = fixture("wordpress.xml");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            r.fetch_add(1, Ordering::SeqCst);
            let inm = request
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("if-none-match:"))
                .map(|l| {
                    l.split_once(':')
                        .map(|(_, v)| v.trim().to_string())
                        .unwrap_or_default()
                });
            c.lock().expect("lock").push(inm.clone());
            let response = if f.load(Ordering::SeqCst) {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
            } else if inm.as_deref() == Some("\"v1\"") {
                b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\nconnection: close\r\n\r\n".to_vec()
            } else {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\netag: \"v1\"\r\nlast-modified: Thu, 26 Nov 2026 10:00:00 GMT\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            };
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        }
    });
    FeedServer {
        url,
        requests,
        conditional,
        failing,
    }
}

async fn polling_uses_conditional_get_and_a_failing_feed_keeps_its_state(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let server = feed_server().await;
    let pool = iria_news::foundation::db::pool(&app.settings.database_url, 2);
    let first = feed::poll(&pool, &server.url).await.expect("poll");
    assert_eq!(first.imported.new, 3);
    let second = feed::poll(&pool, &server.url).await.expect("poll");
    assert!(second.not_modified, "304 handled");
    assert_eq!(
        server.conditional.lock().expect("lock").clone(),
        vec![None, Some("\"v1\"".into())]
    );
    server.failing.store(true, Ordering::SeqCst);
    let failed = feed::poll(&pool, &server.url).await;
    assert!(failed.is_err());
    let (etag, error): (Option<String>, Option<String>) = feed_state::table
        .find(&server.url)
        .select((feed_state::etag, feed_state::last_error))
        .first(&mut app.conn())
        .expect("state");
    assert_eq!(
        etag.as_deref(),
        Some("\"v1\""),
        "the last good state is kept"
    );
    assert!(
        error.is_some_and(|e| e.contains("500")),
        "the failure is recorded"
    );
    server.failing.store(false, Ordering::SeqCst);
    assert!(
        feed::poll(&pool, &server.url)
            .await
            .expect("poll")
            .not_modified
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 4);
    let count: i64 = articles_table::table
        .count()
        .get_result(&mut app.conn())
        .expect("count");
    assert_eq!(count, 3);
}
on_both_backends!(
    polling_uses_conditional_get_and_a_failing_feed_keeps_its_state,
    super::polling_uses_conditional_get_and_a_failing_feed_keeps_its_state
);

pub(crate) fn new_article(n: usize, categories: &[&str]) -> NewArticle {
    NewArticle {
        guid: format!("guid-{n}"),
        link: format!("https://iria.example/2026/11/article-{n}/"),
        title: format!("Article number {n} on {}", categories.join(" and ")),
        summary: format!("Summary of article {n}. ").repeat(30),
        body: format!("<p>Body of article {n}.</p>"),
        author: Some("IRIA Desk".into()),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        image_url: Some(format!("https://iria.example/img/{n}.jpg")),
        image_credit: Some("Reuters".into()),
        published_at: chrono::Utc::now().naive_utc() - chrono::Duration::hours(n as i64 + 1),
    }
}

fn run_digest(app: &TestApp, key: &str) -> Outcome {
    digest::run(
        &mut app.conn(),
        &app.settings,
        key,
        chrono::Utc::now().naive_utc(),
        false,
    )
    .expect("digest run")
}

/// The digest test of the digest issue: readers with different topics each get only theirs (and
/// none when nothing matches); twice in one period sends once; no new article sends nothing; an
/// edited article is not sent again.
async fn the_digest_reaches_each_reader_with_only_their_topics_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.add_subscribers("all", 1, |_| (None, String::new()));
    app.add_subscribers("europe", 2, |_| (None, "Europe".into()));
    app.add_subscribers("asia", 1, |_| (None, "Asia".into()));
    app.add_subscribers("mideast", 1, |_| (None, "Middle East,Defense".into()));
    let items = vec![
        new_article(1, &["Europe", "Defense"]),
        new_article(2, &["Middle East"]),
        new_article(3, &["Africa", "Terrorism"]),
    ];
    articles::upsert(&mut app.conn(), &items, Source::Api).expect("articles");

    let outcome = run_digest(&app, "digest:2026-11-30T07:00:00Z");
    let Outcome::Queued {
        articles: n,
        issues,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(*n, 3);
    assert_eq!(
        issues.iter().map(|(_, r)| r).sum::<usize>(),
        4,
        "the Asia reader gets no message"
    );

    let all = app.wait_for_mail_to("all00000@example.org", 1).await;
    let europe = app.wait_for_mail_to("europe00001@example.org", 1).await;
    let mideast = app.wait_for_mail_to("mideast00000@example.org", 1).await;
    // The links are tracked: where each one leads is asked of the app.
    let (all_links, europe_links, mideast_links) = (
        app.link_targets(&all.html()).await,
        app.link_targets(&europe.html()).await,
        app.link_targets(&mideast.html()).await,
    );
    let has =
        |links: &[String], n: usize| links.iter().any(|l| l.contains(&format!("article-{n}/")));
    assert!(has(&all_links, 1) && has(&all_links, 2) && has(&all_links, 3));
    assert!(has(&europe_links, 1) && !has(&europe_links, 2) && !has(&europe_links, 3));
    assert!(has(&mideast_links, 1) && has(&mideast_links, 2) && !has(&mideast_links, 3));
    assert_eq!(
        all.parsed()
            .subject()
            .map(|s| s.to_string())
            .unwrap_or_default()
            .split(": ")
            .last(),
        Some("3 new articles")
    );
    assert!(europe
        .parsed()
        .subject()
        .is_some_and(|s| s.contains("week of") && s.ends_with("1 new article")));
    // The text part's "Read on" link is tracked too, and leads to the article.
    let text = all.text();
    assert!(text.contains("Article number 2"));
    let read_on: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Read on: "))
        .collect();
    assert_eq!(read_on.len(), 3, "{text}");
    assert!(read_on.iter().all(|l| l.contains("/r/")), "{read_on:?}");
    assert!(app
        .link_targets(&read_on.join("\n"))
        .await
        .contains(&"https://iria.example/2026/11/article-2/".to_string()));
    assert!(all.html().contains("Image: Reuters"), "image credit");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.received_by("asia00000@example.org").is_empty());

    // Twice in one period: once.
    assert!(matches!(
        run_digest(&app, "digest:2026-11-30T07:00:00Z"),
        Outcome::AlreadyDone { .. }
    ));
    // Next period with no new article: nothing.
    assert_eq!(
        run_digest(&app, "digest:2026-12-07T07:00:00Z"),
        Outcome::NoArticles
    );
    // An edited article is updated but not sent again.
    let mut edited = items[0].clone();
    edited.title = "Article number 1, corrected".into();
    assert_eq!(
        articles::upsert(&mut app.conn(), &[edited], Source::Api)
            .expect("edit")
            .updated,
        1
    );
    assert_eq!(
        run_digest(&app, "digest:2026-12-14T07:00:00Z"),
        Outcome::NoArticles
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.smtp().received().len(), 4, "four messages in all");
}
on_both_backends!(
    the_digest_reaches_each_reader_with_only_their_topics_once,
    super::the_digest_reaches_each_reader_with_only_their_topics_once
);

async fn a_digest_of_fifty_articles_stays_under_102_kb(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.add_confirmed("reader", 1);
    let items: Vec<NewArticle> = (0..50).map(|n| new_article(n, &["Analysis"])).collect();
    articles::upsert(&mut app.conn(), &items, Source::Feed).expect("articles");
    assert!(matches!(
        run_digest(&app, "digest:fifty"),
        Outcome::Queued { articles: 50, .. }
    ));
    let mail = app.wait_for_mail_to("reader00000@example.org", 1).await;
    let html = mail.html();
    assert!(html.len() < 102 * 1024, "{} bytes", html.len());
    assert!(
        html.contains("more on the site"),
        "past the limit, a link to the site"
    );
    assert!(html.contains("max-width: 600px"));
}
on_both_backends!(
    a_digest_of_fifty_articles_stays_under_102_kb,
    super::a_digest_of_fifty_articles_stays_under_102_kb
);

async fn articles_can_be_pushed_by_the_cms_and_the_archive_shows_digests(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "cms").expect("token");
    let url = format!("{}/api/v1/articles", app.address);
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let body = serde_json::json!({
        "guid": "cms-1", "link": "https://iria.example/2026/11/pushed/", "title": "Pushed by the CMS",
        "summary": "From the CMS.", "categories": ["Europe"], "published_at": yesterday,
        "body": "<p>Text</p><script>x()</script>"
    });
    assert_eq!(
        app.client
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("post")
            .status(),
        401
    );
    let created = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let again = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 200);
    let bad = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"link": "javascript:alert(1)", "title": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 422);
    let garbage = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(garbage.status(), 400);
    let (_, _, _, _, _, body_stored, _) =
        article(&app, "https://iria.example/2026/11/pushed/").expect("stored");
    assert!(!body_stored.contains("script"));

    app.add_confirmed("reader", 1);
    assert!(matches!(
        run_digest(&app, "digest:archive"),
        Outcome::Queued { .. }
    ));
    let archive = app.get("/archive").await.text().await.expect("body");
    assert!(archive.contains("Digest of") && archive.contains("1 article"));
    let atom = app.get("/archive/feed.atom").await;
    assert_eq!(
        atom.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/atom+xml; charset=utf-8")
    );
    let xml = atom.text().await.expect("body");
    assert!(xml.contains("<entry>") && xml.contains("/archive/1"));
    assert!(app
        .get("/archive/1")
        .await
        .text()
        .await
        .expect("body")
        .contains("Pushed by the CMS"));
    // Nothing new now: the preview says so.
    assert!(app
        .get("/digest/preview")
        .await
        .text()
        .await
        .expect("body")
        .contains("No digest to preview"));
}
on_both_backends!(
    articles_can_be_pushed_by_the_cms_and_the_archive_shows_digests,
    super::articles_can_be_pushed_by_the_cms_and_the_archive_shows_digests
);

/// The digest's rendering, snapshot-tested so that layout changes are reviewed.
#[test]
fn digest_rendering_snapshot() {
    let env: std::collections::BTreeMap<String, String> = [
        ("IRIA_SECRET_KEY", "snapshot-secret-key-of-32-bytes-or-more"),
        ("IRIA_BASE_URL", "https://news.iria.example"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings =
        iria_news::foundation::config::Settings::from_sources(None, &env).expect("settings");
    let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
        .and_then(|d| d.and_hms_opt(8, 0, 0))
        .expect("time");
    let list: Vec<iria_news::stores::articles::Article> = (1..=3)
        .map(|n| iria_news::stores::articles::Article {
            id: n,
            guid: format!("g{n}"),
            link: format!("https://iria.example/a{n}/"),
            title: format!("Article {n}"),
            summary: format!("Summary {n}."),
            body: String::new(),
            author: (n != 2).then(|| "IRIA Desk".to_string()),
            categories: "Europe,Defense".into(),
            image_url: (n == 1).then(|| "https://iria.example/1.jpg".to_string()),
            image_credit: (n == 1).then(|| "Reuters".to_string()),
            published_at: at - chrono::Duration::days(n),
            source: "feed".into(),
            excluded: 0,
            digest_id: None,
        })
        .collect();
    let refs: Vec<&iria_news::stores::articles::Article> = list.iter().collect();
    let draft = digest::draft(&settings, &refs, at).expect("draft");
    assert_eq!(
        draft.subject,
        "IRIA News, week of 23 November 2026: 3 new articles"
    );
    let composed = iria_news::processes::compose::compose(&settings, &draft).expect("compose");
    insta::assert_snapshot!("digest_html", composed.html);
    insta::assert_snapshot!("digest_text", composed.text);
}
