//! The site's sign-up box in a real browser (headless Chromium, see `browser.rs`): an editor
//! copies the HTML from the console; a page of the site, served by another origin (a small HTTP
//! server on another loopback port), holds it; a reader signs up there, makes a mistake, fixes it
//! on our page and lands back on the site's page with `subscribed=1`; the confirmation arrives. The
//! script version keeps a second reader on the page and shows our answer, which only CORS lets
//! it read. Screenshots in `target/e2e-screenshots/embedded_signup_from_another_origin/`.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::browser::{Browser, PAGE_TIMEOUT};
use crate::helpers::{spawn_app_with, AppOptions, Backend, TestApp};

const READER: &str = "ada.reader@example.org";
const SCRIPT_READER: &str = "grace.reader@example.org";
const EDITOR: &str = "editor";
const EDITOR_PASSWORD: &str = "correct horse battery";
const ARTICLE: &str = "/2024/08/us-iraq-defense-chiefs/";
const SCRIPT_ARTICLE: &str = "/2024/09/isis-resurgence/";

/// The site: a few pages on a loopback port of their own, another origin than the app's.
struct Site {
    origin: String,
    pages: Arc<Mutex<BTreeMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Site {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the site's port");
        let port = listener.local_addr().expect("the site's address").port();
        let pages: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let served = pages.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, served.clone()));
            }
        });
        Self {
            origin: format!("http://127.0.0.1:{port}"),
            pages,
            task,
        }
    }

    /// Publishes an article page with the sign-up box at its foot, as the site's theme does.
    fn publish(&self, path: &str, title: &str, signup_box: &str) {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{title} - IRIA</title></head><body>\
             <header><p>IRIA - International Relations Insights &amp; Analysis</p></header>\
             <article><h1 id=\"article-title\">{title}</h1>\
             <p>Despite the proclaimed defeat of ISIS territory in 2019, the threat remains.</p>\
             </article>\
             <aside class=\"widget\"><h2>Subscribe to IRIA News</h2>\n{signup_box}\n</aside>\
             <footer><p>Copyright 2014-2025 IRIA</p></footer></body></html>"
        );
        self.pages
            .lock()
            .expect("the site's pages")
            .insert(path.to_string(), html);
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one request: the page at its path (the query does not matter), or 404.
async fn serve(mut stream: tokio::net::TcpStream, pages: Arc<Mutex<BTreeMap<String, String>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let page = pages.lock().expect("the site's pages").get(path).cloned();
    let (status, body) = match page {
        Some(html) => ("200 OK", html),
        None => ("404 Not Found", "<h1>Not found</h1>".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_signup_from_another_origin() {
    let site = Site::start().await;
    let options = AppOptions {
        env: vec![("IRIA_ALLOWED_ORIGINS", site.origin.clone())],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    let Some(browser) = Browser::start("embedded_signup_from_another_origin").await else {
        return;
    };
    let outcome = AssertUnwindSafe(flow(&app, &site, &browser))
        .catch_unwind()
        .await;
    if let Err(panic) = outcome {
        browser.save_failure().await;
        browser.close().await;
        std::panic::resume_unwind(panic);
    }
    browser.close().await;
}

async fn flow(app: &TestApp, site: &Site, browser: &Browser) {
    let (plain, script) = copy_from_console(app, site, browser).await;
    site.publish(ARTICLE, "US and Iraqi defense chiefs meet", &plain);
    site.publish(SCRIPT_ARTICLE, "ISIS resurgence", &script);

    // a. A reader on an article of the site, with a typo our check catches and the browser's
    // does not.
    let article = format!("{}{ARTICLE}", site.origin);
    browser.goto(&article).await;
    browser.find("aside #iria-signup").await;
    browser
        .type_into("#iria-signup-email", "ada@localhost")
        .await;
    browser.screenshot("site-article-with-box").await;
    browser.click("#iria-signup button[type=submit]").await;
    let here = url(browser).await;
    assert_eq!(
        here,
        format!("{}/subscriptions", app.address),
        "on our page"
    );
    let error = browser.text("#email-error").await;
    assert!(
        error.contains("full domain"),
        "the mistake is said: {error:?}"
    );
    browser.screenshot("our-form-with-the-mistake").await;
    assert_eq!(app.count_subscribers(), 0);

    // b. Fixed on our page, the sign-up sends the reader back to the article.
    browser.type_into("input[name=email]", READER).await;
    browser
        .click("form[action='/subscriptions'] button[type=submit]")
        .await;
    let back = wait_for_url(browser, |u| u.starts_with(&article)).await;
    assert_eq!(back, format!("{article}?subscribed=1"));
    assert_eq!(
        browser.text("#article-title").await,
        "US and Iraqi defense chiefs meet"
    );
    browser.screenshot("back-on-the-site-subscribed").await;
    let (status, _, _) = app.subscriber(READER).expect("a subscriber");
    assert_eq!(status, "pending");
    let mail = app.wait_for_mail_to(READER, 1).await;
    assert!(mail.confirmation_link().starts_with(&app.address));

    // c. The script version: the reader stays on the page and reads our answer there.
    let article = format!("{}{SCRIPT_ARTICLE}", site.origin);
    browser.goto(&article).await;
    browser.type_into("#iria-signup-email", SCRIPT_READER).await;
    browser
        .find("#iria-signup input[name=topics][value='Terrorism']")
        .await
        .click()
        .await
        .expect("tick a topic");
    browser
        .find("#iria-signup button[type=submit]")
        .await
        .click()
        .await
        .expect("click Subscribe");
    let deadline = Instant::now() + PAGE_TIMEOUT;
    let shown = loop {
        let shown = browser.text(".iria-signup-status").await;
        if shown.contains("Check your inbox") || Instant::now() >= deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        shown.contains("Check your inbox"),
        "the page read our answer: {shown:?}"
    );
    assert_eq!(url(browser).await, article, "still on the article");
    browser.screenshot("script-version-answered").await;
    let (status, _, topics) = app.subscriber(SCRIPT_READER).expect("a subscriber");
    assert_eq!((status.as_str(), topics.as_str()), ("pending", "Terrorism"));
    app.wait_for_mail_to(SCRIPT_READER, 1).await;
}

/// An editor logs in, names the article to come back to, and copies both versions of the box.
async fn copy_from_console(app: &TestApp, site: &Site, browser: &Browser) -> (String, String) {
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, EDITOR_PASSWORD)
        .expect("editor account");
    browser
        .goto(&format!("{}/admin/signup-form", app.address))
        .await;
    browser
        .wait_for_path("/admin/login", |p| p == "/admin/login")
        .await;
    browser.type_into("input[name=name]", EDITOR).await;
    browser
        .type_into("input[name=password]", EDITOR_PASSWORD)
        .await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for_path("/admin", |p| p.starts_with("/admin"))
        .await;
    browser.click("a[href='/admin/signup-form']").await;
    let suggested = field(browser, "#return_to").await;
    assert_eq!(suggested, format!("{}/", site.origin), "the site's origin");
    browser
        .type_into("#return_to", &format!("{}{ARTICLE}", site.origin))
        .await;
    browser
        .click("form[action='/admin/signup-form'] button[type=submit]")
        .await;
    browser.screenshot("console-signup-form").await;
    let plain = field(browser, "#snippet-plain").await;
    let script = field(browser, "#snippet-script").await;
    assert!(plain.contains(&format!("action=\"{}/subscriptions\"", app.address)));
    assert!(plain.contains(&format!("value=\"{}{ARTICLE}\"", site.origin)));
    assert!(script.contains("<script>"));
    (plain, script)
}

/// The value of a form field (a `<textarea>`'s text as the browser holds it).
async fn field(browser: &Browser, css: &str) -> String {
    browser
        .find(css)
        .await
        .prop("value")
        .await
        .unwrap_or_else(|e| panic!("value of {css}: {e}"))
        .unwrap_or_default()
}

async fn url(browser: &Browser) -> String {
    browser
        .client
        .current_url()
        .await
        .expect("the current URL")
        .to_string()
}

/// Waits (at most [`PAGE_TIMEOUT`]) until the whole URL satisfies `ok`; returns it.
async fn wait_for_url(browser: &Browser, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let now = url(browser).await;
        if ok(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the browser did not get there within {PAGE_TIMEOUT:?}; it is at {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
