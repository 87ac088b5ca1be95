//! End to end in a real browser (headless Chromium, see `browser.rs`): a visitor signs up and
//! confirms from the email; an editor logs in to the console, previews and sends an issue; the
//! subscriber receives it. A screenshot after each page, in
//! `target/e2e-screenshots/signup_to_sent_issue/`.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::browser::Browser;
use crate::helpers::{spawn_app, Backend, TestApp};

const READER: &str = "ada.reader@example.org";
const EDITOR: &str = "editor";
const EDITOR_PASSWORD: &str = "correct horse battery";
const SUBJECT: &str = "IRIA News: the spring briefing";
/// A phrase of the body that both the preview's text version and the sent text part carry.
const PHRASE: &str = "The spring briefing on maritime security is out";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_to_sent_issue() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start("signup_to_sent_issue").await else {
        return;
    };
    // On a failed step: keep a picture and the HTML of where the browser was, then fail.
    let outcome = AssertUnwindSafe(flow(&app, &browser)).catch_unwind().await;
    if let Err(panic) = outcome {
        browser.save_failure().await;
        browser.close().await;
        std::panic::resume_unwind(panic);
    }
    browser.close().await;
}

async fn flow(app: &TestApp, browser: &Browser) {
    // a. The visitor signs up on the front page.
    browser.goto(&format!("{}/", app.address)).await;
    browser.find("form[action='/subscriptions']").await;
    browser.screenshot("signup-form").await;
    browser.type_into("input[name=email]", READER).await;
    browser.type_into("input[name=name]", "Ada Reader").await;
    browser.screenshot("signup-filled").await;
    browser
        .click("form[action='/subscriptions'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/subscriptions");
    assert_eq!(browser.text("h1").await, "Check your inbox");
    browser.screenshot("signup-thanks").await;
    assert_eq!(app.subscriber(READER).expect("a subscriber").0, "pending");

    // b. The confirmation email arrives; its link, opened in the browser, shows a page with one
    // button (opening it changes nothing: mail scanners open links too); the button confirms.
    let confirmation = app.wait_for_mail_to(READER, 1).await;
    let link = app.local(&confirmation.confirmation_link());
    browser.goto(&link).await;
    assert_eq!(browser.text("h1").await, "Confirm your subscription");
    browser.screenshot("confirm-page").await;
    assert_eq!(app.subscriber(READER).expect("a subscriber").0, "pending");
    browser
        .click("form[action='/subscriptions/confirm'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/subscriptions/confirm");
    assert_eq!(browser.text("h1").await, "You are subscribed");
    browser.screenshot("confirmed").await;
    assert_eq!(app.subscriber(READER).expect("a subscriber").0, "confirmed");

    // c. An editor's account.
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, EDITOR_PASSWORD)
        .expect("editor account");

    // d. The console asks for a login first, and lands on the dashboard after it.
    browser.goto(&format!("{}/admin", app.address)).await;
    browser
        .wait_for_path("/admin/login", |p| p == "/admin/login")
        .await;
    browser.find("input[name=name]").await;
    browser.screenshot("login-form").await;
    browser.type_into("input[name=name]", EDITOR).await;
    browser
        .type_into("input[name=password]", EDITOR_PASSWORD)
        .await;
    browser.click("button[type=submit]").await;
    browser.wait_for_path("/admin", |p| p == "/admin").await;
    let heading = browser.text("h1").await;
    assert!(
        heading.contains("Dashboard"),
        "dashboard heading: {heading:?}"
    );
    browser.screenshot("dashboard").await;

    // e. Compose, preview, send.
    browser.click("a[href='/admin/issues/new']").await;
    assert_eq!(browser.path().await, "/admin/issues/new");
    browser.find("input[name=subject]").await;
    browser.screenshot("compose").await;
    browser.type_into("input[name=subject]", SUBJECT).await;
    let body = format!(
        "## Spring briefing\n\n{PHRASE}, with notes on three straits.\n\n\
         - The Baltic\n- The Strait of Hormuz\n\nRead it on our site."
    );
    browser.type_into("textarea[name=body]", &body).await;
    browser.select("select[name=format]", "markdown").await;
    browser.screenshot("compose-filled").await;
    browser.click("button[name=action][value=preview]").await;
    let preview_html = browser.rendered_html("#preview").await;
    assert!(
        preview_html.contains("<h2") && preview_html.contains("<li"),
        "the Markdown rendered to HTML in the preview: {preview_html}"
    );
    let preview_text = browser.text("#preview-text").await;
    assert!(
        squash(&preview_text).contains(PHRASE),
        "the text version in the preview: {preview_text:?}"
    );
    let kept = browser
        .find("input[name=subject]")
        .await
        .prop("value")
        .await
        .expect("the subject field's value");
    assert_eq!(
        kept.as_deref(),
        Some(SUBJECT),
        "the preview page keeps the subject"
    );
    browser.screenshot("preview").await;
    browser.click("button[name=action][value=send]").await;
    let issue_path = browser
        .wait_for_path("/admin/issues/<id>", |p| {
            p.strip_prefix("/admin/issues/")
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .await;
    let heading = browser.text("h1").await;
    assert!(
        heading.contains(SUBJECT),
        "the issue page's heading: {heading:?}"
    );
    browser.screenshot("issue-page").await;

    // f. The subscriber receives the issue.
    // After the confirmation and the welcome email.
    let issue = app.wait_for_mail_with_subject(READER, SUBJECT, 1).await;
    let parsed = issue.parsed();
    assert_eq!(parsed.subject(), Some(SUBJECT));
    let text = issue.text();
    assert!(
        squash(&text).contains(PHRASE),
        "the issue's text part: {text}"
    );
    let unsubscribe = parsed.header_raw("List-Unsubscribe").unwrap_or_default();
    assert!(
        !unsubscribe.trim().is_empty(),
        "the issue has a List-Unsubscribe header"
    );

    // g. The issue page counts the delivery as sent (the worker may still be writing it down).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sent = browser.text("#sent").await;
        if sent.trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{issue_path} still shows {sent:?} sent after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser
            .client
            .refresh()
            .await
            .expect("reload the issue page");
    }
    browser.screenshot("issue-sent").await;
}

/// `text` with each run of white space made one space (a text version may wrap lines anywhere).
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
