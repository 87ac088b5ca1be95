//! What the engagement tests share: an app in a chosen click tracking mode, an issue delivered
//! to readers, and the tracked links of a received copy.

use std::time::Duration;

use diesel::prelude::*;
use iria_news::foundation::db::schema::{clicks, issue_links};

use crate::helpers::{spawn_app_with, AppOptions, Backend, Received, TestApp};

/// A person's browser, as `/r/` sees it.
pub const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36";

/// An app with `IRIA_CLICK_TRACKING=mode` (and more settings).
pub async fn app_in_mode(
    backend: Backend,
    mode: &str,
    env: Vec<(&'static str, String)>,
) -> Option<TestApp> {
    let mut env = env;
    env.push(("IRIA_CLICK_TRACKING", mode.to_string()));
    spawn_app_with(
        backend,
        AppOptions {
            env,
            ..Default::default()
        },
    )
    .await
}

/// The body of the test issue: three links, one of them twice.
pub const ISSUE_HTML: &str = "<p>Read <a href=\"https://ir-ia.com/one?a=1&amp;b=2\">one</a>, \
     <a href=\"https://ir-ia.com/two\">two</a> and \
     <a href=\"https://ir-ia.com/three\">three</a>; again <a href=\"https://ir-ia.com/two\">two</a>.</p>";

/// Queues the test issue to `n` new confirmed readers and waits for every copy; returns the
/// issue's id and the copies received, one per reader, in the readers' order.
pub async fn send_issue(app: &TestApp, prefix: &str, n: usize) -> (i64, Vec<Received>) {
    let readers = app.add_confirmed(prefix, n);
    let queued = app.queue_issue("Engagement test", ISSUE_HTML);
    app.wait_issue_done(queued.issue_id, Duration::from_secs(30))
        .await;
    let mut copies = Vec::new();
    for (_, email) in &readers {
        copies.push(app.wait_for_mail_to(email, 1).await);
    }
    (queued.issue_id, copies)
}

/// The `/r/` links of a part, in order of appearance (repeats kept).
pub fn tracked_links(part: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = part;
    while let Some(at) = rest.find("/r/") {
        let start = rest[..at].rfind("http").unwrap_or(at);
        let end = rest[at..]
            .find(|c: char| c == '"' || c == '<' || c.is_whitespace())
            .map_or(rest.len(), |e| at + e);
        out.push(rest[start..end].to_string());
        rest = &rest[end..];
    }
    out
}

/// Follows a tracked link once as `user_agent`; returns the status and `Location`.
pub async fn click(app: &TestApp, link: &str, user_agent: &str) -> (u16, Option<String>) {
    let response = app
        .client
        .get(app.local(link))
        .header("User-Agent", user_agent)
        .send()
        .await
        .expect("GET /r/");
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ASCII Location").to_string());
    (response.status().as_u16(), location)
}

/// (reader clicks, machine clicks) counted without a reader, per position of the issue.
pub fn counters(app: &TestApp, issue_id: i64) -> Vec<(i32, String, i64, i64)> {
    issue_links::table
        .filter(issue_links::issue_id.eq(issue_id))
        .order(issue_links::position)
        .select((
            issue_links::position,
            issue_links::url,
            issue_links::clicks,
            issue_links::machine_clicks,
        ))
        .load(&mut app.conn())
        .expect("issue_links")
}

/// The clicks recorded per copy: (delivery, position, machine), in order.
pub fn click_rows(app: &TestApp, issue_id: i64) -> Vec<(i64, i32, bool)> {
    clicks::table
        .filter(clicks::issue_id.eq(issue_id))
        .order(clicks::id)
        .select((clicks::delivery_id, clicks::position, clicks::machine))
        .load(&mut app.conn())
        .expect("clicks")
}

/// Makes a copy's delivery look `seconds` old, so that clicks on it are past the first seconds
/// in which only machines click.
pub fn age_deliveries(app: &TestApp, issue_id: i64, seconds: i64) {
    use iria_news::foundation::db::schema::deliveries;
    let then = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(seconds);
    diesel::update(deliveries::table.filter(deliveries::issue_id.eq(issue_id)))
        .set(deliveries::finished_at.eq(Some(then)))
        .execute(&mut app.conn())
        .expect("age deliveries");
}
