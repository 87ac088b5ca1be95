//! Webhooks (issue 15): endpoints added through the API and the console; each event posted to a
//! real HTTP server on loopback that the test starts, signed with the endpoint's secret (the
//! test checks the signature itself, with hmac and sha2); a receiver that is down gets each
//! event once it is back, exactly once; an erased subscriber's queued events are wiped.

mod receiver;

use std::time::{Duration, Instant};

use diesel::prelude::*;
use iria_news::foundation::db::schema::webhook_deliveries;
use serde_json::{json, Value};

use receiver::{check_envelope, signed_with, Hook, Receiver};

use crate::console::log_in;
use crate::helpers::{form, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

fn token(app: &TestApp) -> String {
    iria_news::stores::api_tokens::create(&mut app.conn(), "tests").expect("token")
}

async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

async fn add_endpoint(app: &TestApp, token: &str, url: &str, events: &[&str]) -> (i64, String) {
    let made = api(
        app,
        reqwest::Method::POST,
        "/api/v1/webhooks",
        token,
        Some(json!({"url": url, "events": events, "description": "the CRM"})),
    )
    .await;
    assert_eq!(made.status(), 201);
    let location = made.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let made: Value = made.json().await.expect("json");
    let id = made["id"].as_i64().expect("id");
    assert_eq!(location, format!("/api/v1/webhooks/{id}"));
    assert_eq!(made["url"], url);
    assert_eq!(made["enabled"], true);
    let secret = made["secret"]
        .as_str()
        .expect("the secret, once")
        .to_string();
    (id, secret)
}

async fn app_with_fast_retries(backend: Backend) -> Option<TestApp> {
    spawn_app_with(
        backend,
        AppOptions {
            env: vec![("IRIA_WEBHOOK_RETRY_BASE_MS", "100".into())],
            ..Default::default()
        },
    )
    .await
}

/// Adds a subscriber through the API with consent held (as an editor does after a conference);
/// the API answers 201 with their id.
async fn add_with_consent(app: &TestApp, token: &str, email: &str) -> i64 {
    let added = api(
        app,
        reqwest::Method::POST,
        "/api/v1/subscribers",
        token,
        Some(json!({"email": email, "consent": "held", "source": "conference"})),
    )
    .await;
    assert_eq!(added.status(), 201);
    added.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id")
}

/// Signs up through the form and follows the link of the confirmation email (its page, then
/// its button).
async fn sign_up_and_confirm(app: &TestApp, email: &str) -> i64 {
    app.sign_up(email).await;
    let link = app.wait_for_mail_to(email, 1).await.confirmation_link();
    assert_eq!(app.confirm(&link).await.status(), 200);
    assert_eq!(app.subscriber(email).expect("on file").0, "confirmed");
    app.subscriber_id(email)
}

/// The http(s) URI of a message's `List-Unsubscribe`.
fn one_click_link(mail: &crate::helpers::Received) -> String {
    let parsed = mail.parsed();
    let header = parsed
        .header_raw("List-Unsubscribe")
        .expect("List-Unsubscribe")
        .replace(['\r', '\n', ' ', '\t'], "");
    let start = header.find("<http").expect("an http(s) URI") + 1;
    header[start..].split('>').next().expect(">").to_string()
}

/// The preferences link in a message's text part.
fn preferences_link(mail: &crate::helpers::Received) -> String {
    let text = mail.text();
    let at = text.find("/preferences/").expect("a preferences link");
    let start = text[..at].rfind("http").expect("its start");
    text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != ')')
        .collect()
}

/// Bad input to `POST /api/v1/webhooks`: a clear problem each time (what is stored is checked
/// by the caller).
async fn refuses_bad_endpoints(app: &TestApp, token: &str, url: &str) {
    for (body, says) in [
        (
            json!({"url": "ftp://example.org/", "events": ["issue.sent"]}),
            "http",
        ),
        (json!({"url": url, "events": []}), "at least one"),
        (
            json!({"url": url, "events": ["subscriber.created"]}),
            "unknown variant",
        ),
    ] {
        let refused = api(
            app,
            reqwest::Method::POST,
            "/api/v1/webhooks",
            token,
            Some(body),
        )
        .await;
        assert_eq!(refused.status(), 422);
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
        assert!(refused.text().await.expect("body").contains(says));
    }
}

/// Posts a hard bounce (DSN) for one address and a complaint (ARF) for another, as an MTA's
/// pipe does; each quotes the headers of the copy of `subject` that address received (its
/// Message-ID proves which copy the report is about).
async fn post_reports(app: &TestApp, token: &str, subject: &str, bounced: &str, complained: &str) {
    let message_id = |mail: crate::helpers::Received| {
        format!("<{}>", mail.parsed().message_id().expect("Message-ID"))
    };
    let bounced_id = message_id(app.wait_for_mail_with_subject(bounced, subject, 1).await);
    let complained_id = message_id(app.wait_for_mail_with_subject(complained, subject, 1).await);
    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@iria.test\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThe mailbox is gone.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
         Final-Recipient: rfc822; {bounced}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
         --b\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: {bounced}\r\nMessage-ID: {bounced_id}\r\n\r\n--b--\r\n"
    );
    let arf = format!(
        "From: fbl@mailbox.example\r\nTo: abuse@iria.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n\
         --f\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
         --f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n\
         Original-Rcpt-To: {complained}\r\n\r\n\
         --f\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: {complained}\r\nMessage-ID: {complained_id}\r\n\r\n--f--\r\n"
    );
    for report in [dsn, arf] {
        let posted = app
            .client
            .post(format!("{}/api/v1/bounces", app.address))
            .bearer_auth(token)
            .body(report)
            .send()
            .await
            .expect("POST");
        assert_eq!(posted.status(), 200);
    }
}

async fn events_reach_the_endpoints_that_want_them_signed(backend: Backend) {
    let Some(app) = app_with_fast_retries(backend).await else {
        return;
    };
    let token = token(&app);
    let crm = Receiver::start(0, 200).await;
    let archive = Receiver::start(0, 200).await;
    let all = [
        "subscriber.confirmed",
        "subscriber.unsubscribed",
        "subscriber.bounced",
        "subscriber.complained",
        "issue.sent",
    ];
    let (crm_id, crm_secret) = add_endpoint(&app, &token, &crm.url("/iria"), &all).await;
    let (archive_id, archive_secret) =
        add_endpoint(&app, &token, &archive.url("/issues"), &["issue.sent"]).await;
    assert_ne!(crm_secret, archive_secret);
    assert_eq!(crm_secret.len(), "whsec_".len() + 44, "32 bytes in base64");
    // Bad input: a clear problem each time, and nothing stored (the list holds two).
    refuses_bad_endpoints(&app, &token, &crm.url("/x")).await;
    let listed = api(&app, reqwest::Method::GET, "/api/v1/webhooks", &token, None).await;
    let listed = listed.text().await.expect("body");
    assert!(
        !listed.contains(&crm_secret),
        "the secret is shown once only"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&listed).expect("json")["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // A reader signs up and confirms: subscriber.confirmed, to the CRM only.
    let reader = sign_up_and_confirm(&app, "reader@example.org").await;
    let got = crm.wait_delivered(1).await;
    check_envelope(&crm_secret, &got[0]);
    assert_eq!(got[0].path, "/iria");
    assert_eq!(
        got[0].json()["data"],
        json!({"subscriber_id": reader, "email": "reader@example.org", "status": "confirmed"})
    );
    assert_eq!(got[0].kind(), "subscriber.confirmed");

    // Two more, added by an editor with consent held; one will bounce, one will complain.
    let mut ids = Vec::new();
    for email in ["gone@example.org", "angry@example.org"] {
        ids.push(add_with_consent(&app, &token, email).await);
    }
    crm.wait_delivered(3).await;

    // An issue to the three of them: issue.sent, to both endpoints, with one event id.
    let draft = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/issues",
        &token,
        Some(json!({"subject": "Hormuz: the week's brief", "body": "Shipping resumed."})),
    )
    .await;
    let issue = draft.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    let sent = api(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/issues/{issue}/send"),
        &token,
        None,
    )
    .await;
    assert_eq!(sent.status(), 200);
    let on_archive = archive.wait_delivered(1).await;
    check_envelope(&archive_secret, &on_archive[0]);
    assert_eq!(on_archive[0].kind(), "issue.sent");
    assert_eq!(
        on_archive[0].json()["data"],
        json!({"issue_id": issue, "kind": "announcement", "subject": "Hormuz: the week's brief", "recipients": 3})
    );
    let on_crm = crm.wait_delivered(4).await;
    assert_eq!(on_crm[3].kind(), "issue.sent");
    assert_eq!(
        on_crm[3].header("webhook-id"),
        on_archive[0].header("webhook-id")
    );

    // The reader leaves by the one-click link of the issue they received.
    let mail = app.wait_for_mail_to("reader@example.org", 2).await;
    let left = app
        .client
        .post(app.local(&one_click_link(&mail)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST");
    assert_eq!(left.status(), 200);
    let on_crm = crm.wait_delivered(5).await;
    assert_eq!(on_crm[4].kind(), "subscriber.unsubscribed");
    assert_eq!(on_crm[4].json()["data"]["status"], "unsubscribed");
    assert_eq!(on_crm[4].json()["data"]["subscriber_id"], reader);
    // Their copy of their data says which receiver got what about them.
    let data_link = app
        .data_link(&preferences_link(&mail), "reader@example.org")
        .await;
    let data: Value = app
        .client
        .post(format!("{data_link}/download"))
        .send()
        .await
        .expect("POST download")
        .json()
        .await
        .expect("json");
    let shared: Vec<(String, String)> = data["shared_by_webhook"]
        .as_array()
        .expect("shared_by_webhook")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").into(),
                e["receiver"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        shared,
        [
            ("subscriber.confirmed".into(), "127.0.0.1".into()),
            ("subscriber.unsubscribed".into(), "127.0.0.1".into())
        ],
        "{data}"
    );

    // A bounce report and a complaint, as the MTA posts them.
    post_reports(
        &app,
        &token,
        "Hormuz",
        "gone@example.org",
        "angry@example.org",
    )
    .await;
    let on_crm = crm.wait_delivered(7).await;
    let last: Vec<(String, Value)> = on_crm[5..]
        .iter()
        .map(|h| (h.kind(), h.json()["data"].clone()))
        .collect();
    assert!(
        last.contains(&(
            "subscriber.bounced".into(),
            json!({"subscriber_id": ids[0], "email": "gone@example.org", "status": "bounced"})
        )),
        "{last:?}"
    );
    assert!(
        last.contains(&(
            "subscriber.complained".into(),
            json!({"subscriber_id": ids[1], "email": "angry@example.org", "status": "complained"})
        )),
        "{last:?}"
    );

    // Nothing more comes: each event once, every one signed, the archive only the issue.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let on_crm = crm.hooks();
    assert_eq!(on_crm.len(), 7, "{on_crm:?}");
    let kinds: Vec<String> = on_crm.iter().map(Hook::kind).collect();
    for kind in all {
        let n = kinds.iter().filter(|k| *k == kind).count();
        assert_eq!(
            n,
            if kind == "subscriber.confirmed" { 3 } else { 1 },
            "{kind}: {kinds:?}"
        );
    }
    let mut event_ids: Vec<&str> = on_crm.iter().map(|h| h.header("webhook-id")).collect();
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 7, "one id per event");
    for hook in &on_crm {
        check_envelope(&crm_secret, hook);
    }
    assert_eq!(
        archive.hooks().len(),
        1,
        "the archive wants issue.sent only"
    );

    // The API shows each delivery: delivered at the first attempt, with the endpoint's 200.
    let detail: Value = api(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/webhooks/{crm_id}"),
        &token,
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    let attempts = detail["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 7);
    for a in attempts {
        assert_eq!(a["status"], "delivered", "{a}");
        assert_eq!(a["http_status"], 200);
        assert_eq!(a["attempts"], 1);
        assert_eq!(a["next_attempt_at"], Value::Null);
    }
    assert_eq!(detail["events"], json!(all));
    // Deleted: gone from the list, and its page with it.
    let deleted = api(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/webhooks/{archive_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    let gone = api(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/webhooks/{archive_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(gone.status(), 404);
}
on_both_backends!(
    events_reach_the_endpoints_that_want_them_signed,
    super::events_reach_the_endpoints_that_want_them_signed
);

/// A port nothing listens on (a listener bound and closed again).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The endpoint's deliveries as the API shows them.
async fn attempts(app: &TestApp, token: &str, id: i64) -> Vec<Value> {
    let detail: Value = api(
        app,
        reqwest::Method::GET,
        &format!("/api/v1/webhooks/{id}"),
        token,
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    detail["attempts"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most 20 s) until `ok` holds of the endpoint's deliveries.
async fn wait_attempts(
    app: &TestApp,
    token: &str,
    id: i64,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = attempts(app, token, id).await;
        if ok(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "not reached within 20 s: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_receiver_that_is_down_gets_each_event_once_it_is_back(backend: Backend) {
    let Some(app) = app_with_fast_retries(backend).await else {
        return;
    };
    let token = token(&app);
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (id, secret) = add_endpoint(&app, &token, &url, &["subscriber.confirmed"]).await;
    let people = ["first@example.org", "second@example.org"];
    for email in people {
        add_with_consent(&app, &token, email).await;
    }
    // The port is closed: each event is tried, fails, and waits for its next attempt.
    let failing = wait_attempts(&app, &token, id, |a| {
        a.len() == 2 && a.iter().all(|a| a["attempts"].as_i64() >= Some(2))
    })
    .await;
    for a in &failing {
        assert!(
            a["error"].as_str().is_some_and(|e| e.contains("connect")),
            "{a}"
        );
        assert_eq!(a["http_status"], Value::Null);
    }
    // The console shows it too: the error, the attempt number and a next retry.
    let console = log_in(&app, true).await;
    let page = console.get(&format!("/admin/webhooks/{id}")).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(page.contains("could not connect"), "{page}");
    assert!(page.contains("subscriber.confirmed"));

    // Up, but answering 503: still not delivered, and the status is recorded.
    let receiver = Receiver::start(port, 503).await;
    wait_attempts(&app, &token, id, |a| {
        a.iter()
            .all(|a| a["http_status"] == 503 && a["status"] == "queued")
    })
    .await;
    let page = console
        .get(&format!("/admin/webhooks/{id}"))
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("HTTP 503"), "{page}");
    assert!(receiver.delivered().is_empty());

    // Back for good: each event arrives once.
    receiver.answer_with(200);
    let got = receiver.wait_delivered(2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 2, "exactly once each: {delivered:?}");
    let emails: Vec<String> = got
        .iter()
        .map(|h| h.json()["data"]["email"].as_str().unwrap_or("").to_string())
        .collect();
    for email in people {
        assert!(emails.contains(&email.to_string()), "{emails:?}");
    }
    for hook in &delivered {
        check_envelope(&secret, hook);
    }
    // Every attempt of one event carried its one id, each attempt signed afresh.
    for hook in receiver.hooks() {
        let same: Vec<&Hook> = delivered
            .iter()
            .filter(|d| d.header("webhook-id") == hook.header("webhook-id"))
            .collect();
        assert_eq!(same.len(), 1, "{hook:?}");
        assert_eq!(same[0].body, hook.body);
        assert!(signed_with(&secret, &hook));
    }
    let done = attempts(&app, &token, id).await;
    for a in &done {
        assert_eq!(a["status"], "delivered", "{a}");
        assert_eq!(a["http_status"], 200);
        assert!(
            a["attempts"].as_i64() >= Some(4),
            "two refused, one 503, one 200: {a}"
        );
    }
    // A delivered event keeps no body.
    let bodies: Vec<Option<String>> = webhook_deliveries::table
        .select(webhook_deliveries::payload)
        .load(&mut app.conn())
        .expect("payloads");
    assert!(bodies.iter().all(Option::is_none), "{bodies:?}");
}
on_both_backends!(
    a_receiver_that_is_down_gets_each_event_once_it_is_back,
    super::a_receiver_that_is_down_gets_each_event_once_it_is_back
);

async fn an_erased_subscribers_queued_events_are_wiped_and_not_sent(backend: Backend) {
    let Some(app) = app_with_fast_retries(backend).await else {
        return;
    };
    let token = token(&app);
    let port = closed_port();
    let (id, _) = add_endpoint(
        &app,
        &token,
        &format!("http://127.0.0.1:{port}/hooks"),
        &["subscriber.confirmed", "subscriber.unsubscribed"],
    )
    .await;
    let subscriber = add_with_consent(&app, &token, "private@example.org").await;
    wait_attempts(&app, &token, id, |a| {
        a.len() == 1 && a[0]["attempts"].as_i64() >= Some(1)
    })
    .await;
    let stored: Vec<Option<String>> = webhook_deliveries::table
        .select(webhook_deliveries::payload)
        .load(&mut app.conn())
        .expect("payloads");
    assert!(stored[0]
        .as_deref()
        .is_some_and(|p| p.contains("private@example.org")));
    // Erased while the receiver is down: the queued event goes nowhere, its body is wiped.
    let erased = api(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/subscribers/{subscriber}"),
        &token,
        None,
    )
    .await;
    assert_eq!(erased.status(), 204);
    let receiver = Receiver::start(port, 200).await;
    let done = wait_attempts(&app, &token, id, |a| {
        a.iter().all(|a| a["status"] == "skipped")
    })
    .await;
    assert_eq!(done.len(), 1, "the erasure itself posts nothing: {done:?}");
    assert_eq!(done[0]["error"], "the subscriber was erased");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(receiver.hooks().is_empty(), "{:?}", receiver.hooks());
    let stored: Vec<Option<String>> = webhook_deliveries::table
        .select(webhook_deliveries::payload)
        .load(&mut app.conn())
        .expect("payloads");
    assert_eq!(stored, vec![None]);
}
on_both_backends!(
    an_erased_subscribers_queued_events_are_wiped_and_not_sent,
    super::an_erased_subscribers_queued_events_are_wiped_and_not_sent
);

/// The secret shown on the page after the form.
fn secret_on(page: &str) -> String {
    let at = page
        .find("<code id=\"secret\">")
        .expect("the secret is shown")
        + "<code id=\"secret\">".len();
    page[at..].split('<').next().expect("end").to_string()
}

async fn the_console_adds_an_endpoint_and_shows_its_deliveries(backend: Backend) {
    let Some(app) = app_with_fast_retries(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    let receiver = Receiver::start(0, 200).await;
    let page = console.get("/admin/webhooks").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(
        page.contains("href=\"/admin/webhooks\" aria-current=\"page\""),
        "in the navigation"
    );
    assert!(page.contains("No endpoint yet."));
    // Refused with the reason, nothing stored.
    let url = receiver.url("/console");
    for (pairs, says) in [
        (
            vec![("url", "ftp://example.org/"), ("events", "issue.sent")],
            "only http:// and https://",
        ),
        (vec![("url", url.as_str())], "choose at least one event"),
    ] {
        let refused = console.post("/admin/webhooks", &pairs).await;
        assert_eq!(refused.status(), 400);
        assert!(refused.text().await.expect("body").contains(says));
    }
    let without_csrf = console
        .post_raw(
            "/admin/webhooks",
            form(&[("url", &url), ("events", "issue.sent")]),
        )
        .await;
    assert_eq!(without_csrf.status(), 403);
    assert!(iria_news::stores::webhooks::list(&mut app.conn())
        .expect("list")
        .is_empty());

    let made = console
        .post(
            "/admin/webhooks",
            &[
                ("url", &url),
                ("description", "Our CRM"),
                ("events", "subscriber.confirmed"),
                ("events", "issue.sent"),
            ],
        )
        .await;
    assert_eq!(made.status(), 200);
    let made = made.text().await.expect("body");
    let secret = secret_on(&made);
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoints = iria_news::stores::webhooks::list(&mut app.conn()).expect("list");
    assert_eq!(endpoints.len(), 1);
    let id = endpoints[0].id;
    assert_eq!(endpoints[0].created_by.as_deref(), Some("editor editor"));
    let again = console
        .get(&format!("/admin/webhooks/{id}"))
        .await
        .text()
        .await
        .expect("body");
    assert!(!again.contains(&secret), "the secret is shown once");

    // A reader confirms: the receiver gets it, signed with the secret the page showed.
    sign_up_and_confirm(&app, "reader@example.org").await;
    let got = receiver.wait_delivered(1).await;
    check_envelope(&secret, &got[0]);
    assert_eq!(got[0].kind(), "subscriber.confirmed");
    let page = console
        .get(&format!("/admin/webhooks/{id}"))
        .await
        .text()
        .await
        .expect("body");
    let table = &page[page.find("id=\"attempts\"").expect("the attempts table")..];
    for shown in [
        "subscriber.confirmed",
        "delivered",
        "HTTP 200",
        got[0].header("webhook-id"),
    ] {
        assert!(table.contains(shown), "{shown} not in {table}");
    }

    // Disabled: a second reader's confirmation is not posted to it.
    let off = console
        .post(
            &format!("/admin/webhooks/{id}/enable"),
            &[("enabled", "no")],
        )
        .await;
    assert_eq!(off.status(), 303);
    let page = console
        .get(&format!("/admin/webhooks/{id}"))
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("<dd id=\"state\">disabled</dd>"));
    sign_up_and_confirm(&app, "second@example.org").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.hooks().len(), 1);
    // Deleted: gone from the list.
    let deleted = console
        .post(&format!("/admin/webhooks/{id}/delete"), &[])
        .await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(
        deleted.headers()["location"],
        "/admin/webhooks?notice=deleted"
    );
    let list = console
        .get("/admin/webhooks")
        .await
        .text()
        .await
        .expect("body");
    assert!(!list.contains(&url));
    assert_eq!(
        console.get(&format!("/admin/webhooks/{id}")).await.status(),
        404
    );
}
on_both_backends!(
    the_console_adds_an_endpoint_and_shows_its_deliveries,
    super::the_console_adds_an_endpoint_and_shows_its_deliveries
);

/// `iria-news worker` posts webhooks too, and SIGTERM lets the post in flight finish and be
/// recorded before the process exits.
async fn sigterm_lets_the_post_in_flight_finish(backend: Backend) {
    use iria_news::stores::webhooks::{self, EndpointUrl, Event, NewEndpoint};
    let Some(db) = crate::helpers::TestDb::create(backend) else {
        return;
    };
    iria_news::foundation::db::migrate(&mut db.connect()).expect("migrate");
    let receiver = Receiver::start(0, 200).await;
    receiver.answer_after(Duration::from_secs(2));
    let new = NewEndpoint {
        url: EndpointUrl::parse(&receiver.url("/slow")).expect("url"),
        events: vec![Event::IssueSent],
        description: String::new(),
        enabled: true,
        created_by: "tests".into(),
    };
    let mut conn = db.connect();
    let (endpoint, secret) = webhooks::create(&mut conn, &new).expect("endpoint");
    let made =
        webhooks::emit(&mut conn, Event::IssueSent, None, json!({"issue_id": 1})).expect("emit");
    assert_eq!(made, 1);
    let outbox = tempfile::tempdir().expect("dir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iria-news"));
    cmd.arg("worker")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("IRIA_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .env("IRIA_DATABASE_URL", &db.url)
        .env(
            "IRIA_SMTP_URL",
            format!("file://{}", outbox.path().display()),
        )
        .env("IRIA_SECRET_KEY", "test-secret-key-of-at-least-32-bytes!!")
        .env("IRIA_DELIVERY_POLL_MS", "100")
        .spawn()
        .expect("start iria-news worker");
    // The post is in flight (the receiver has it and takes 2 s to answer) when SIGTERM comes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.hooks().is_empty() {
        assert!(Instant::now() < deadline, "the worker posted nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1);
    assert!(signed_with(&secret, &hooks[0]));
    let recorded = webhooks::attempts_of(&mut db.connect(), endpoint.id, 10).expect("attempts");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].status, "delivered", "recorded before the exit");
    assert_eq!(recorded[0].last_status, Some(200));
    assert_eq!(recorded[0].attempts, 1);
}
on_both_backends!(
    sigterm_lets_the_post_in_flight_finish,
    super::sigterm_lets_the_post_in_flight_finish
);
