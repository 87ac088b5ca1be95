//! In a real browser (headless Chromium, see `tests/api/browser.rs`): a reader opens a received
//! digest and clicks an article; the editor, logged into the console, sees the click on the
//! issue's page. Screenshots in `target/e2e-screenshots/a_readers_click_shows_on_the_issue_page/`.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::reports::{link_to, send_digest};
use crate::browser::Browser;
use crate::console::{EDITOR, PASSWORD};
use crate::engagement::support::{app_in_mode, BROWSER};
use crate::helpers::{Backend, TestApp};

const NAME: &str = "a_readers_click_shows_on_the_issue_page";
const READER: &str = "reader00000@example.org";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_click_shows_on_the_issue_page() {
    let Some(app) = app_in_mode(Backend::Sqlite, "anonymous", vec![]).await else {
        return;
    };
    // A person's browser, not one that names itself headless (a machine's user agent).
    let Some(browser) = Browser::start_as(NAME, Some(BROWSER)).await else {
        return;
    };
    let outcome = AssertUnwindSafe(flow(&app, &browser)).catch_unwind().await;
    if let Err(panic) = outcome {
        browser.save_failure().await;
        browser.close().await;
        std::panic::resume_unwind(panic);
    }
    browser.close().await;
}

async fn flow(app: &TestApp, browser: &Browser) {
    // a. A digest of two articles reaches the reader; the articles live on this test's server,
    // so that the click lands on a real page.
    app.add_subscribers("reader", 1, |_| (None, String::new()));
    let first = format!("{}/archive?article=1", app.address);
    let second = format!("{}/archive?article=2", app.address);
    let items = [
        article(1, &first, "The Baltic after the cable cuts"),
        article(2, &second, "Hormuz: tanker traffic resumes"),
    ];
    let issues = send_digest(app, &items).await;
    assert_eq!(issues.len(), 1, "{issues:?}");
    let issue_id = issues[0].0;
    let copy = app.wait_for_mail_to(READER, 1).await;
    let link = link_to(app, &copy, &second).await;

    // b. The reader opens the message's HTML and clicks the second article.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("digest.html");
    std::fs::write(&file, copy.html()).expect("write the message");
    browser.goto(&format!("file://{}", file.display())).await;
    browser.find(&format!("a[href='{link}']")).await;
    browser.screenshot("digest-received").await;
    browser.click(&format!("a[href='{link}']")).await;
    browser.wait_for_path("/archive", |p| p == "/archive").await;
    let landed = browser
        .client
        .current_url()
        .await
        .expect("the URL")
        .to_string();
    assert_eq!(landed, second, "the click led to the article");
    browser.screenshot("article").await;

    // c. The editor logs in and opens the issue's page.
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("editor");
    browser
        .goto(&format!("{}/admin/issues/{issue_id}", app.address))
        .await;
    browser
        .wait_for_path("/admin/login", |p| p == "/admin/login")
        .await;
    browser.type_into("input[name=name]", EDITOR).await;
    browser.type_into("input[name=password]", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for_path("the console", |p| {
            p.starts_with("/admin") && p != "/admin/login"
        })
        .await;
    let issue_page = format!("/admin/issues/{issue_id}");
    if browser.path().await != issue_page {
        browser.goto(&format!("{}{issue_page}", app.address)).await;
    }

    // d. The click is there (the recorder writes once a second): one reader click, on the second
    // article, and no machine's.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clicks = browser.text("#reader-clicks").await;
        if clicks.trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the issue page still shows {clicks:?} reader clicks after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.client.refresh().await.expect("reload");
    }
    assert_eq!(browser.text("#machine-clicks").await.trim(), "0");
    assert_eq!(browser.text("#delivered").await.trim(), "1");
    assert_eq!(browser.text("#click-rate").await.trim(), "100.0%");
    let articles = browser
        .text("#articles")
        .await
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        articles.contains("Hormuz: tanker traffic resumes 1")
            && articles.contains("The Baltic after the cable cuts 0"),
        "the per-article table: {articles:?}"
    );
    browser.screenshot("issue-page-with-the-click").await;
}

fn article(n: usize, link: &str, title: &str) -> iria_news::stores::articles::NewArticle {
    iria_news::stores::articles::NewArticle {
        guid: format!("browser-{n}"),
        link: link.to_string(),
        title: title.to_string(),
        summary: format!("{title}: the summary."),
        body: format!("<p>{title}.</p>"),
        author: None,
        categories: vec!["Europe".to_string()],
        image_url: None,
        image_credit: None,
        published_at: chrono::Utc::now().naive_utc() - chrono::Duration::hours(n as i64),
    }
}
