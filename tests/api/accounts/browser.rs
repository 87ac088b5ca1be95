//! In a real browser (headless Chromium, see `tests/api/browser.rs`), with a second factor
//! required: an admin enrols, makes an author in the console and logs out; the author enrols,
//! logs in again with a TOTP code computed here, drafts an issue, is offered no way to send it,
//! and a send forced into the page is refused. Screenshots in
//! `target/e2e-screenshots/an_admin_makes_an_author_who_drafts_but_cannot_send/`.

use std::panic::AssertUnwindSafe;

use diesel::prelude::*;
use futures_util::FutureExt;
use iria_news::foundation::db::schema::{deliveries, editors, issues};

use super::two_factor::fresh_code;
use crate::browser::Browser;
use crate::helpers::{spawn_app_with, AppOptions, Backend, TestApp};

const NAME: &str = "an_admin_makes_an_author_who_drafts_but_cannot_send";
const ADMIN: &str = "chief";
const ADMIN_PASSWORD: &str = "the chief's long password";
const AUTHOR: &str = "amira";
const AUTHOR_PASSWORD: &str = "amira's first password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_makes_an_author_who_drafts_but_cannot_send() {
    let options = AppOptions {
        env: vec![("IRIA_REQUIRE_2FA", "true".into())],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, options).await else {
        return;
    };
    let Some(browser) = Browser::start(NAME).await else {
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

/// Types a name and password into the login page and sends it; returns the path reached.
async fn password_step(app: &TestApp, browser: &Browser, name: &str, password: &str) -> String {
    browser.goto(&format!("{}/admin/login", app.address)).await;
    browser.type_into("input[name=name]", name).await;
    browser.type_into("input[name=password]", password).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for_path("past the password", |p| p != "/admin/login")
        .await
}

/// On the enrolment page: reads the key shown beside the QR code, answers with its code, and
/// returns the key and the step of the code used.
async fn enrol(browser: &Browser) -> (String, i64) {
    let qr = browser.rendered_html("#qr").await;
    assert!(
        qr.contains("<svg"),
        "the QR code is drawn on the server: {qr:.200}"
    );
    let secret: String = browser
        .text("#secret")
        .await
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut used = 0;
    let code = fresh_code(&secret, &mut used).await;
    browser.type_into("#code", &code).await;
    browser.click("#enrol button[type=submit]").await;
    let codes = browser.text("#recovery-codes").await;
    assert_eq!(
        codes.lines().filter(|l| !l.trim().is_empty()).count(),
        10,
        "ten recovery codes are shown once enrolled: {codes}"
    );
    (secret, used)
}

async fn log_out(browser: &Browser) {
    browser.click("form[action='/admin/logout'] button").await;
    browser
        .wait_for_path("the login page", |p| p == "/admin/login")
        .await;
}

async fn flow(app: &TestApp, browser: &Browser) {
    // a. The first account is the admin; with a second factor required it enrols first.
    iria_news::stores::editors::create(&mut app.conn(), ADMIN, ADMIN_PASSWORD).expect("admin");
    let to = password_step(app, browser, ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(to, "/admin/2fa/enrol", "enrolment before anything else");
    browser.screenshot("admin-enrols").await;
    enrol(browser).await;

    // b. The admin makes an author in the console.
    browser
        .goto(&format!("{}/admin/accounts", app.address))
        .await;
    browser.type_into("#name", AUTHOR).await;
    browser.type_into("#password", AUTHOR_PASSWORD).await;
    browser.select("#new-role", "author").await;
    browser.click("#new-account button[type=submit]").await;
    browser.screenshot("author-made").await;
    let role: String = editors::table
        .filter(editors::name.eq(AUTHOR))
        .select(editors::role)
        .first(&mut app.conn())
        .expect("the author's account");
    assert_eq!(role, "author");
    assert!(browser.text("body").await.contains(AUTHOR));
    log_out(browser).await;

    // c. The author enrols at the first login, logs out, and logs in with a TOTP code.
    let to = password_step(app, browser, AUTHOR, AUTHOR_PASSWORD).await;
    assert_eq!(to, "/admin/2fa/enrol");
    let (secret, mut used) = enrol(browser).await;
    browser.goto(&format!("{}/admin", app.address)).await;
    log_out(browser).await;
    let to = password_step(app, browser, AUTHOR, AUTHOR_PASSWORD).await;
    assert_eq!(to, "/admin/login/code", "the second step asks for a code");
    browser.screenshot("code-asked").await;
    let code = fresh_code(&secret, &mut used).await;
    browser.type_into("#code", &code).await;
    browser.click("#login-code button[type=submit]").await;
    browser
        .wait_for_path("the console", |p| p == "/admin")
        .await;
    let nav = browser.rendered_html("nav.console-nav").await;
    assert!(
        !nav.contains("/admin/subscribers") && !nav.contains("/admin/accounts"),
        "an author's navigation offers neither subscribers nor accounts: {nav}"
    );

    // d. The author drafts an issue.
    browser
        .goto(&format!("{}/admin/issues/new", app.address))
        .await;
    browser
        .type_into("#subject", "Sahel: the juntas' new alliance")
        .await;
    browser
        .type_into("#body", "A first draft for the editors to send.")
        .await;
    browser.click("button[value=draft]").await;
    browser.screenshot("draft-saved").await;
    let statuses: Vec<(i64, String)> = issues::table
        .select((issues::id, issues::status))
        .load(&mut app.conn())
        .expect("issues");
    assert_eq!(statuses.len(), 1, "one issue: {statuses:?}");
    assert_eq!(statuses[0].1, "draft");

    // e. No button sends or schedules it; a send forced into the compose form is refused.
    browser
        .goto(&format!("{}/admin/issues/new", app.address))
        .await;
    let form = browser.rendered_html("#compose").await;
    assert!(
        !form.contains("value=\"send\"") && !form.contains("value=\"schedule\""),
        "the author's compose form offers no send: {form:.400}"
    );
    browser.type_into("#subject", "Sent anyway?").await;
    browser.type_into("#body", "This must not go out.").await;
    browser
        .client
        .execute(
            "const b = document.createElement('button'); b.type = 'submit'; b.name = 'action'; \
             b.value = 'send'; b.id = 'forced'; document.getElementById('compose').appendChild(b);",
            vec![],
        )
        .await
        .expect("add a send button");
    browser.click("#forced").await;
    browser.screenshot("send-refused").await;
    let refused = browser.text("body").await;
    assert!(
        refused.contains("Not for your role"),
        "the forced send is refused: {refused:.300}"
    );
    let queued: i64 = deliveries::table
        .count()
        .get_result(&mut app.conn())
        .expect("deliveries");
    assert_eq!(queued, 0, "nothing was queued");
    let drafts: Vec<String> = issues::table
        .select(issues::status)
        .load(&mut app.conn())
        .expect("issues");
    assert_eq!(drafts, vec!["draft".to_string()], "still only the draft");
}
