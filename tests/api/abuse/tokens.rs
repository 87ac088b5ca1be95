//! Issue 12, "Links and tokens": what each link in a message can open, what a copy of the
//! database gives away, and what the confirmation email says.
//!
//! - The confirmation carries nothing the submitter chose (no name in To, no "Hello <name>").
//! - No confirmation or data-link token at rest: the ledger keeps a nonce, the token tables a
//!   hash, and neither gives the emailed token without the secret key.
//! - Tokens are scoped: the `List-Unsubscribe` token only unsubscribes, the body's preferences
//!   link opens preferences, data download and erasure take a one-time link mailed to the address
//!   (an hour, once, at most three an hour and five a day, never to a bounced or complained
//!   address); tokens of the first version (the header's and the body's alike) only unsubscribe.
//! - The erasure marker is keyed (HMAC), and old plain-hash markers are converted at start-up.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use iria_news::foundation::db::schema::{confirmation_tokens, data_links, deliveries, subscribers};
use sha2::{Digest, Sha256};

use crate::helpers::{form, spawn_app, spawn_app_with, AppOptions, Backend, Received, SmtpServer};
use crate::helpers::{TestApp, TestDb};
use crate::on_both_backends;

const SPAM_NAME: &str = "Win a prize at http://spam.example";

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Follows a confirmation link as a reader does: opens it, and presses the page's button when
/// the page asks for one (`POST /subscriptions/confirm`); asserts the address ends confirmed.
async fn follow_confirmation(app: &TestApp, link: &str, email: &str) {
    let opened = app.get(link).await;
    assert!(opened.status().is_success(), "{link}: {}", opened.status());
    if app.subscriber(email).map(|s| s.0).as_deref() == Some("pending") {
        let token = link.split("token=").nth(1).expect("a token in the link");
        let pressed = app
            .client
            .post(format!("{}/subscriptions/confirm", app.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("token", token)]))
            .send()
            .await
            .expect("POST confirm");
        assert!(pressed.status().is_success(), "{}", pressed.status());
    }
    assert_eq!(
        app.subscriber(email).map(|s| s.0).as_deref(),
        Some("confirmed")
    );
}

/// Every column of every `deliveries`, `confirmation_tokens` and `data_links` row of a
/// subscriber, as text: what a copy of the database holds about their links.
fn dump_link_tables(db: &TestDb, subscriber_id: i64) -> Vec<String> {
    type DeliveryRow = (
        i64,
        String,
        Option<i64>,
        i64,
        i32,
        String,
        i32,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        NaiveDateTime,
        Option<NaiveDateTime>,
    );
    type TokenRow = (
        i64,
        i64,
        i64,
        String,
        NaiveDateTime,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<NaiveDateTime>,
    );
    type DataLinkRow = (
        i64,
        i64,
        String,
        NaiveDateTime,
        NaiveDateTime,
        Option<NaiveDateTime>,
    );
    let mut conn = db.connect();
    let d: Vec<DeliveryRow> = deliveries::table
        .filter(deliveries::subscriber_id.eq(subscriber_id))
        .load(&mut conn)
        .expect("deliveries");
    let t: Vec<TokenRow> = confirmation_tokens::table
        .filter(confirmation_tokens::subscriber_id.eq(subscriber_id))
        .load(&mut conn)
        .expect("confirmation_tokens");
    let l: Vec<DataLinkRow> = data_links::table
        .filter(data_links::subscriber_id.eq(subscriber_id))
        .load(&mut conn)
        .expect("data_links");
    let mut values = Vec::new();
    for r in d {
        values.extend([r.1, r.9.unwrap_or_default(), r.10.unwrap_or_default()]);
        values.extend([r.11.unwrap_or_default(), r.12.unwrap_or_default()]);
    }
    for r in t {
        values.push(r.3);
    }
    for r in l {
        values.push(r.2);
    }
    values.retain(|v| !v.is_empty());
    values
}

/// The stored values hold neither `token` nor anything whose SHA-256 is the stored hash of it
/// (the token itself under another name), whole or in any `:`-separated piece.
fn assert_token_not_at_rest(values: &[String], token: &str) {
    let token_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .expect("a base64url token");
    let hash = sha256_hex(token);
    assert!(
        values.iter().any(|v| v == &hash),
        "the token's SHA-256 is what is stored: {values:?}"
    );
    for value in values {
        assert!(!value.contains(token), "the token is stored: {value}");
        assert!(
            !value.contains(&hex::encode(&token_bytes)),
            "the token is stored in hex: {value}"
        );
        for piece in std::iter::once(value.as_str()).chain(value.split(':')) {
            if piece != hash {
                assert_ne!(
                    sha256_hex(piece),
                    hash,
                    "{value} is the token under another name"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The confirmation carries no text chosen by the submitter.
// ---------------------------------------------------------------------------------------------

async fn form_name_is_not_echoed_in_the_confirmation(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let email = "victim@example.org";
    let response = app
        .post_subscriptions(form(&[("email", email), ("name", SPAM_NAME)]))
        .await;
    assert_eq!(response.status(), 200);
    let mail = app.wait_for_mail_to(email, 1).await;
    let parsed = mail.parsed();
    let to = parsed.to().and_then(|a| a.first()).expect("a To address");
    assert_eq!(to.address(), Some(email));
    assert_eq!(to.name(), None, "no display name in To");
    let raw_to = parsed.header_raw("To").unwrap_or_default().to_string();
    let raw = String::from_utf8_lossy(&mail.raw).to_string();
    for (what, text) in [
        ("To", raw_to),
        ("text", mail.text()),
        ("HTML", mail.html()),
        ("raw message", raw),
    ] {
        for part in ["spam.example", "Win a prize"] {
            assert!(!text.contains(part), "{what} carries {part:?}: {text}");
        }
    }
    // Once confirmed, the name given with the sign-up is the reader's own.
    follow_confirmation(&app, &mail.confirmation_link(), email).await;
}
on_both_backends!(
    form_name_is_not_echoed_in_the_confirmation,
    super::form_name_is_not_echoed_in_the_confirmation
);

// ---------------------------------------------------------------------------------------------
// 2. No plaintext confirmation token at rest.
// ---------------------------------------------------------------------------------------------

/// Waits until the subscriber's confirmation has been tried at least once (the SMTP server is
/// down), so that its row is what the ledger keeps while a message waits.
async fn wait_for_an_attempt(app: &TestApp, subscriber_id: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attempts: Vec<i32> = deliveries::table
            .filter(deliveries::subscriber_id.eq(subscriber_id))
            .select(deliveries::attempts)
            .load(&mut app.conn())
            .expect("attempts");
        if attempts.iter().any(|a| *a > 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the confirmation was never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An app whose SMTP server is down until the test starts one on `port`.
async fn app_with_smtp_down(backend: Backend, port: u16) -> Option<TestApp> {
    let options = AppOptions {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        env: vec![
            ("IRIA_DELIVERY_RETRY_BASE_MS", "100".into()),
            ("IRIA_DELIVERY_MAX_ATTEMPTS", "40".into()),
        ],
        ..Default::default()
    };
    spawn_app_with(backend, options).await
}

/// Waits for the `n`-th message to `email` at a server started by the test.
async fn wait_for_mail_at(server: &SmtpServer, email: &str, n: usize) -> Received {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<Received> = server
            .received()
            .into_iter()
            .filter(|m| m.rcpt_tos.iter().any(|r| r == email))
            .collect();
        if got.len() >= n {
            return got[n - 1].clone();
        }
        assert!(Instant::now() < deadline, "no message #{n} for {email}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_database_copy_holds_no_confirmation_token(backend: Backend) {
    let port = free_port();
    let Some(app) = app_with_smtp_down(backend, port).await else {
        return;
    };
    let email = "dumped@example.org";
    assert_eq!(app.sign_up(email).await.status(), 200);
    let id = app.subscriber_id(email);
    wait_for_an_attempt(&app, id).await;
    // What a copy of the database taken now holds, while the confirmation waits to be sent.
    let at_rest = dump_link_tables(&app.db, id);
    let server = SmtpServer::start_with(port, &[]);
    let mail = wait_for_mail_at(&server, email, 1).await;
    let link = mail.confirmation_link();
    let token = link.split("token=").nth(1).expect("a token").to_string();
    assert_token_not_at_rest(&at_rest, &token);
    // The emailed link still confirms.
    let app = TestApp {
        smtp: Some(server),
        ..app
    };
    follow_confirmation(&app, &link, email).await;
}
on_both_backends!(
    a_database_copy_holds_no_confirmation_token,
    super::a_database_copy_holds_no_confirmation_token
);

/// A confirmation queued by an earlier version (its payload the token itself, the token table
/// its SHA-256) is still sent with that token, and its link confirms.
async fn a_confirmation_queued_before_the_upgrade_is_still_sent(backend: Backend) {
    let port = free_port();
    let Some(app) = app_with_smtp_down(backend, port).await else {
        return;
    };
    let email = "queued-long-ago@example.org";
    assert_eq!(app.sign_up(email).await.status(), 200);
    let id = app.subscriber_id(email);
    wait_for_an_attempt(&app, id).await;
    // Rewrite the rows as the earlier version wrote them.
    let old_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let mut conn = app.conn();
    diesel::update(confirmation_tokens::table.filter(confirmation_tokens::subscriber_id.eq(id)))
        .set(confirmation_tokens::token_hash.eq(sha256_hex(&old_token)))
        .execute(&mut conn)
        .expect("old token hash");
    diesel::update(deliveries::table.filter(deliveries::subscriber_id.eq(id)))
        .set(deliveries::payload.eq(Some(old_token.clone())))
        .execute(&mut conn)
        .expect("old payload");
    let server = SmtpServer::start_with(port, &[]);
    let mail = wait_for_mail_at(&server, email, 1).await;
    let link = mail.confirmation_link();
    assert!(link.ends_with(&format!("token={old_token}")), "{link}");
    let app = TestApp {
        smtp: Some(server),
        ..app
    };
    follow_confirmation(&app, &link, email).await;
}
on_both_backends!(
    a_confirmation_queued_before_the_upgrade_is_still_sent,
    super::a_confirmation_queued_before_the_upgrade_is_still_sent
);

// ---------------------------------------------------------------------------------------------
// 3. Tokens scoped by purpose.
// ---------------------------------------------------------------------------------------------

/// A reader's copy of an issue: (the List-Unsubscribe token, the body's preferences link path).
async fn issue_links(app: &TestApp, email: &str) -> (String, String) {
    let queued = app.queue_issue("IRIA News this week", "<p>This week's analysis.</p>");
    assert!(queued.recipients >= 1);
    let mail = app
        .wait_for_mail_with_subject(email, "IRIA News this week", 1)
        .await;
    let header = mail
        .parsed()
        .header_raw("List-Unsubscribe")
        .expect("List-Unsubscribe")
        .replace(['\r', '\n', ' ', '\t'], "");
    let start = header.find("/unsubscribe/").expect("an unsubscribe URI") + "/unsubscribe/".len();
    let header_token: String = header[start..].chars().take_while(|c| *c != '>').collect();
    let text = mail.text();
    let at = text.find("/preferences/").expect("a preferences link");
    let preferences: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != ')')
        .collect();
    assert!(
        mail.html()
            .contains(&format!("/unsubscribe/{header_token}"))
            && text.contains(&format!("/unsubscribe/{header_token}")),
        "the visible unsubscribe links use the header's token"
    );
    (header_token, preferences)
}

async fn post(app: &TestApp, path: &str, body: &str) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("POST")
}

fn is_4xx(status: reqwest::StatusCode) -> bool {
    status.is_client_error()
}

fn data_link_count(app: &TestApp, id: i64) -> i64 {
    deliveries::table
        .filter(deliveries::subscriber_id.eq(id))
        .filter(deliveries::kind.eq("data_link"))
        .count()
        .get_result(&mut app.conn())
        .expect("count")
}

async fn header_token_only_unsubscribes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let (token, _) = issue_links(&app, &email).await;
    let prefs = app.get(&format!("/preferences/{token}")).await;
    assert_eq!(prefs.status(), 403);
    let page = prefs.text().await.expect("body");
    assert!(
        !page.contains(&email),
        "the page shows nothing of the reader"
    );
    let renamed = post(&app, &format!("/preferences/{token}"), "name=Mallory").await;
    assert_eq!(renamed.status(), 403);
    let data = app.get(&format!("/preferences/{token}/data")).await;
    assert!(is_4xx(data.status()), "{}", data.status());
    assert!(!data.text().await.expect("body").contains("\"consents\""));
    let erase = post(&app, &format!("/preferences/{token}/erase"), "confirm=yes").await;
    assert!(is_4xx(erase.status()), "{}", erase.status());
    let asked = post(&app, &format!("/preferences/{token}/data-link"), "").await;
    assert!(is_4xx(asked.status()), "{}", asked.status());
    assert_eq!(data_link_count(&app, id), 0, "no data link was queued");
    assert_eq!(
        app.subscriber(&email),
        Some(("confirmed".into(), None, String::new())),
        "nothing changed"
    );
    // What it is for: the page (which changes nothing) and the one-click POST.
    unsubscribes_and_leads_nowhere_else(&app, &token, &email).await;
}

/// The unsubscribe page of `token` offers no way to the preferences page, and the one-click POST
/// unsubscribes `email`.
async fn unsubscribes_and_leads_nowhere_else(app: &TestApp, token: &str, email: &str) {
    let page = app.get(&format!("/unsubscribe/{token}")).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(!page.contains(&format!("/preferences/{token}")), "{page}");
    let left = post(
        app,
        &format!("/unsubscribe/{token}"),
        "List-Unsubscribe=One-Click",
    )
    .await;
    assert_eq!(left.status(), 200);
    assert_eq!(
        app.subscriber(email).map(|s| s.0).as_deref(),
        Some("unsubscribed")
    );
}
on_both_backends!(
    header_token_only_unsubscribes,
    super::header_token_only_unsubscribes
);

async fn body_preferences_link_cannot_download_or_erase(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let (_, preferences) = issue_links(&app, &email).await;
    let page = app.get(&preferences).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(page.contains("Email me a link to download or erase my data"));
    assert!(!page.contains(&format!("{preferences}/data\"")), "{page}");
    let data = app.get(&format!("{preferences}/data")).await;
    assert_eq!(data.status(), 403);
    assert!(!data.text().await.expect("body").contains("\"consents\""));
    let erase = post(&app, &format!("{preferences}/erase"), "confirm=yes").await;
    assert_eq!(erase.status(), 403);
    assert_eq!(app.subscriber_id(&email), id, "not erased");
    let token = preferences.trim_start_matches("/preferences/");
    for path in [
        format!("/my-data/{token}"),
        format!("/my-data/{token}/download"),
        format!("/my-data/{token}/erase"),
    ] {
        let status = if path.ends_with(token) {
            app.get(&path).await.status()
        } else {
            post(&app, &path, "confirm=yes").await.status()
        };
        assert!(is_4xx(status), "{path}: {status}");
    }
    // It does what it is for: name, topics, and leaving from the page's button.
    let saved = post(
        &app,
        &preferences,
        &form(&[("name", "Ada"), ("topics", "Europe")]),
    )
    .await;
    assert_eq!(saved.status(), 200);
    let left = post(
        &app,
        &preferences.replacen("/preferences/", "/unsubscribe/", 1),
        "List-Unsubscribe=One-Click",
    )
    .await;
    assert_eq!(left.status(), 200);
    assert_eq!(
        app.subscriber(&email),
        Some(("unsubscribed".into(), Some("Ada".into()), "Europe".into()))
    );
}
on_both_backends!(
    body_preferences_link_cannot_download_or_erase,
    super::body_preferences_link_cannot_download_or_erase
);

async fn emailed_data_link_works_once_for_an_hour(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let (_, preferences) = issue_links(&app, &email).await;

    let link = app.data_link(&preferences, &email).await;
    let mail = app
        .wait_for_mail_with_subject(&email, "download or erase", 1)
        .await;
    assert_eq!(mail.to(), email);
    assert_eq!(
        mail.parsed()
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.name()),
        None
    );
    let token = link.rsplit('/').next().expect("a token").to_string();
    assert_token_not_at_rest(&dump_link_tables(&app.db, id), &token);
    // Opening it twice (a link scanner, then the reader) uses nothing up.
    for _ in 0..2 {
        let page = app.get(&link).await;
        assert_eq!(page.status(), 200);
        assert!(page
            .text()
            .await
            .expect("body")
            .contains("Download my data"));
    }
    let path = link.replacen(&app.address, "", 1);
    let download = post(&app, &format!("{path}/download"), "").await;
    assert_eq!(download.status(), 200);
    let data: serde_json::Value = download.json().await.expect("JSON");
    assert_eq!(data["subscriber"]["email"], email.as_str());
    // Used: it works no more, for either button.
    assert_eq!(
        post(&app, &format!("{path}/download"), "").await.status(),
        410
    );
    assert_eq!(
        post(&app, &format!("{path}/erase"), "confirm=yes")
            .await
            .status(),
        410
    );
    assert_eq!(app.get(&path).await.status(), 410);
    assert_eq!(app.subscriber_id(&email), id, "not erased");

    // A second link, an hour later: expired.
    let second = app.data_link(&preferences, &email).await;
    let second_path = second.replacen(&app.address, "", 1);
    let second_token = second_path.rsplit('/').next().expect("token").to_string();
    let an_hour_ago = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(61);
    diesel::update(data_links::table.filter(data_links::token_hash.eq(sha256_hex(&second_token))))
        .set((
            data_links::created_at.eq(an_hour_ago),
            data_links::expires_at.eq(an_hour_ago + chrono::Duration::minutes(60)),
        ))
        .execute(&mut app.conn())
        .expect("age the link");
    assert_eq!(app.get(&second_path).await.status(), 410);
    assert_eq!(
        post(&app, &format!("{second_path}/download"), "")
            .await
            .status(),
        410
    );
    assert_eq!(
        post(&app, &format!("{second_path}/erase"), "confirm=yes")
            .await
            .status(),
        410
    );

    // A third: erasure needs the box ticked (without it the link is not used up), then erases.
    let third = app.data_link(&preferences, &email).await;
    let third_path = third.replacen(&app.address, "", 1);
    assert_eq!(
        post(&app, &format!("{third_path}/erase"), "")
            .await
            .status(),
        400
    );
    assert_eq!(
        post(&app, &format!("{third_path}/erase"), "confirm=yes")
            .await
            .status(),
        200
    );
    assert_eq!(app.subscriber(&email), None, "the address is gone");
    assert_eq!(
        app.get(&third_path).await.status(),
        404,
        "its link went with it"
    );
    assert_eq!(app.get(&preferences).await.status(), 410);
    // The keyed marker: recognisable with the key and the address, not with a hash of it.
    let stored: String = subscribers::table
        .find(id)
        .select(subscribers::email)
        .first(&mut app.conn())
        .expect("row");
    assert_eq!(
        stored,
        iria_news::stores::subscriptions::records::erased_marker(app.settings.secret(), id, &email)
    );
    assert!(!stored.contains(&sha256_hex(&email)), "{stored}");
}
on_both_backends!(
    emailed_data_link_works_once_for_an_hour,
    super::emailed_data_link_works_once_for_an_hour
);

/// Pressing the button again and again, even all at once, mails at most three links an hour.
async fn data_link_button_cannot_flood_a_mailbox(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let (_, preferences) = issue_links(&app, &email).await;
    let button = format!("{preferences}/data-link");
    let presses = (0..8).map(|_| post(&app, &button, ""));
    let statuses: Vec<u16> = futures_util::future::join_all(presses)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(data_link_count(&app, id), 3);
    app.wait_for_mail_with_subject(&email, "download or erase", 3)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let links = app
        .received_by(&email)
        .iter()
        .filter(|m| {
            m.parsed()
                .subject()
                .unwrap_or_default()
                .contains("download or erase")
        })
        .count();
    assert_eq!(links, 3);
}
on_both_backends!(
    data_link_button_cannot_flood_a_mailbox,
    super::data_link_button_cannot_flood_a_mailbox
);

/// Makes the subscriber's data links look `hours` older than they are.
fn age_data_links(app: &TestApp, id: i64, hours: i64) {
    let mut conn = app.conn();
    let rows: Vec<(i64, NaiveDateTime)> = data_links::table
        .filter(data_links::subscriber_id.eq(id))
        .select((data_links::id, data_links::created_at))
        .load(&mut conn)
        .expect("data links");
    for (row, created_at) in rows {
        diesel::update(data_links::table.find(row))
            .set(data_links::created_at.eq(created_at - chrono::Duration::hours(hours)))
            .execute(&mut conn)
            .expect("age a data link");
    }
}

/// Three links an hour would still be 72 a day: at most five are mailed in a day, then the
/// button answers 429 and says to come back tomorrow.
async fn data_link_button_mails_at_most_five_links_a_day(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let (_, preferences) = issue_links(&app, &email).await;
    let button = format!("{preferences}/data-link");
    for _ in 0..3 {
        assert_eq!(post(&app, &button, "").await.status(), 200);
    }
    assert_eq!(post(&app, &button, "").await.status(), 429);
    // Two hours later: the hourly limit is past, the daily one is not.
    age_data_links(&app, id, 2);
    assert_eq!(post(&app, &button, "").await.status(), 200);
    assert_eq!(post(&app, &button, "").await.status(), 200);
    let refused = post(&app, &button, "").await;
    assert_eq!(refused.status(), 429);
    let page = refused.text().await.expect("body");
    assert!(page.contains("today"), "{page}");
    assert!(page.contains("tomorrow"), "{page}");
    assert_eq!(data_link_count(&app, id), 5);
    // A day later the reader may ask again.
    age_data_links(&app, id, 23);
    assert_eq!(post(&app, &button, "").await.status(), 200);
    assert_eq!(data_link_count(&app, id), 6);
}
on_both_backends!(
    data_link_button_mails_at_most_five_links_a_day,
    super::data_link_button_mails_at_most_five_links_a_day
);

fn set_status(app: &TestApp, id: i64, status: &str) {
    diesel::update(subscribers::table.find(id))
        .set(subscribers::status.eq(status))
        .execute(&mut app.conn())
        .expect("set the status");
}

/// An address that bounced or reported us as spam is not mailed a data link: the button
/// answers with a page saying so, and nothing is queued.
async fn data_link_button_mails_no_bounced_or_complained_address(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 2);
    for ((id, email), status) in people.into_iter().zip(["bounced", "complained"]) {
        set_status(&app, id, status);
        let token = iria_news::foundation::links::RecipientToken::new(id, 0).sign(
            iria_news::foundation::links::Purpose::Preferences,
            app.settings.secret(),
        );
        let refused = post(&app, &format!("/preferences/{token}/data-link"), "").await;
        assert_eq!(refused.status(), 409, "{status}");
        let page = refused.text().await.expect("body");
        assert!(page.contains("cannot email"), "{status}: {page}");
        assert!(!page.contains("Check your inbox"), "{status}: {page}");
        assert_eq!(data_link_count(&app, id), 0, "{status}");
        assert_eq!(app.subscriber(&email).map(|s| s.0).as_deref(), Some(status));
    }
}
on_both_backends!(
    data_link_button_mails_no_bounced_or_complained_address,
    super::data_link_button_mails_no_bounced_or_complained_address
);

/// A data link asked for before the address bounced is not sent once it has: the worker skips
/// it.
async fn a_data_link_queued_before_a_complaint_is_not_sent(backend: Backend) {
    let port = free_port();
    let Some(app) = app_with_smtp_down(backend, port).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let token = iria_news::foundation::links::RecipientToken::new(id, 0).sign(
        iria_news::foundation::links::Purpose::Preferences,
        app.settings.secret(),
    );
    let pressed = post(&app, &format!("/preferences/{token}/data-link"), "").await;
    assert_eq!(pressed.status(), 200);
    wait_for_an_attempt(&app, id).await;
    set_status(&app, id, "complained");
    let server = SmtpServer::start_with(port, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status: String = deliveries::table
            .filter(deliveries::subscriber_id.eq(id))
            .select(deliveries::status)
            .first(&mut app.conn())
            .expect("the data link's delivery");
        if status != "queued" && status != "sending" {
            break status;
        }
        assert!(Instant::now() < deadline, "never tried again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, "skipped");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server
            .received()
            .iter()
            .all(|m| !m.rcpt_tos.iter().any(|r| r == &email)),
        "a data link went to a complained address"
    );
}
on_both_backends!(
    a_data_link_queued_before_a_complaint_is_not_sent,
    super::a_data_link_queued_before_a_complaint_is_not_sent
);

/// A token as the first version signed it: version 1, one token for header and body.
fn version_1_token(secret: &[u8], subscriber_id: i64, issue_id: i64, day: u32) -> String {
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&subscriber_id.to_be_bytes());
    bytes.extend_from_slice(&issue_id.to_be_bytes());
    bytes.extend_from_slice(&day.to_be_bytes());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("key");
    mac.update(b"iria-news recipient link");
    mac.update(&bytes);
    bytes.extend_from_slice(&mac.finalize().into_bytes()[..16]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn tokens_of_one_purpose_fail_for_another(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let (unsubscribe, preferences) = issue_links(&app, &email).await;
    let preferences_token = preferences.trim_start_matches("/preferences/").to_string();
    let data_link = app.data_link(&preferences, &email).await;
    let data_token = data_link.rsplit('/').next().expect("token").to_string();
    let view = iria_news::processes::messages::view_url(&app.settings, 1);
    let view_token = view.rsplit('/').next().expect("token").to_string();

    // A data link opens neither the preferences page nor unsubscribes.
    assert_eq!(
        app.get(&format!("/preferences/{data_token}"))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get(&format!("/unsubscribe/{data_token}"))
            .await
            .status(),
        400
    );
    let one_click = format!("/unsubscribe/{data_token}");
    let one_click = post(&app, &one_click, "List-Unsubscribe=One-Click").await;
    assert_eq!(one_click.status(), 400);
    // Recipient and web-copy tokens are no data links.
    for token in [&unsubscribe, &preferences_token, &view_token] {
        assert_eq!(app.get(&format!("/my-data/{token}")).await.status(), 404);
        let erase = post(&app, &format!("/my-data/{token}/erase"), "confirm=yes").await;
        assert_eq!(erase.status(), 404);
    }
    // The web copy's token is no recipient token.
    assert_eq!(
        app.get(&format!("/preferences/{view_token}"))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get(&format!("/unsubscribe/{view_token}"))
            .await
            .status(),
        400
    );
    // The header's token is no preferences token.
    assert_eq!(
        app.get(&format!("/preferences/{unsubscribe}"))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.subscriber(&email).map(|s| s.0).as_deref(),
        Some("confirmed")
    );

    // Tokens of the first version, in readers' mailboxes for 400 days (and in the
    // `List-Unsubscribe` header mailbox providers keep): unsubscribe only, never preferences
    // or data.
    let today = (chrono::Utc::now().timestamp() / 86_400) as u32;
    let old = version_1_token(app.settings.secret(), id, 1, today - 300);
    assert_eq!(app.get(&format!("/preferences/{old}")).await.status(), 403);
    assert_eq!(
        app.get(&format!("/preferences/{old}/data")).await.status(),
        403
    );
    assert_eq!(
        post(&app, &format!("/preferences/{old}/erase"), "confirm=yes")
            .await
            .status(),
        403
    );
    assert_eq!(app.get(&format!("/my-data/{old}")).await.status(), 404);
    assert_eq!(app.subscriber_id(&email), id, "not erased");
    let too_old = version_1_token(app.settings.secret(), id, 1, today - 401);
    assert_eq!(
        app.get(&format!("/unsubscribe/{too_old}")).await.status(),
        410
    );
    unsubscribes_and_leads_nowhere_else(&app, &old, &email).await;
}
on_both_backends!(
    tokens_of_one_purpose_fail_for_another,
    super::tokens_of_one_purpose_fail_for_another
);

/// A token of the first version sat in the `List-Unsubscribe` header of every message sent
/// before purposes existed, which mailbox providers keep: it unsubscribes (page and one-click)
/// and opens nothing else. Its preferences page answers 403 and says where to go instead;
/// changing the name or asking for a data link with it changes nothing.
async fn a_version_1_token_only_unsubscribes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let (id, email) = people[0].clone();
    let today = (chrono::Utc::now().timestamp() / 86_400) as u32;
    let old = version_1_token(app.settings.secret(), id, 3, today - 30);

    let page = app.get(&format!("/preferences/{old}")).await;
    assert_eq!(page.status(), 403);
    let body = page.text().await.expect("body");
    assert!(
        !body.contains(&email),
        "the page shows nothing of the reader"
    );
    assert!(body.contains("Manage preferences"), "{body}");
    assert!(body.contains("newer email"), "{body}");
    assert!(body.contains("sign up again"), "{body}");
    assert!(
        !body.contains(r#"action="/preferences/"#),
        "no preferences form"
    );

    let renamed = post(&app, &format!("/preferences/{old}"), "name=Mallory").await;
    assert_eq!(renamed.status(), 403);
    let pressed = post(&app, &format!("/preferences/{old}/data-link"), "").await;
    assert_eq!(pressed.status(), 403);
    assert_eq!(data_link_count(&app, id), 0, "no data link queued");
    assert_eq!(
        app.subscriber(&email),
        Some(("confirmed".into(), None, String::new())),
        "nothing changed"
    );

    // Its unsubscribe page offers no way to the preferences page, and it unsubscribes, one click.
    unsubscribes_and_leads_nowhere_else(&app, &old, &email).await;
}
on_both_backends!(
    a_version_1_token_only_unsubscribes,
    super::a_version_1_token_only_unsubscribes
);

// ---------------------------------------------------------------------------------------------
// 4. The erasure marker.
// ---------------------------------------------------------------------------------------------

/// A marker of the first versions, `erased:{id}:{sha256(address)}`, which anyone can test an
/// address against, is converted at start-up into the keyed one for the same address.
async fn old_erasure_markers_become_keyed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("gone", 2);
    let now = chrono::Utc::now().naive_utc();
    let mut conn = app.conn();
    for (id, email) in &people {
        diesel::update(subscribers::table.find(*id))
            .set((
                subscribers::email.eq(format!("erased:{id}:{}", sha256_hex(email))),
                subscribers::status.eq("unsubscribed"),
                subscribers::erased_at.eq(Some(now)),
            ))
            .execute(&mut conn)
            .expect("an old marker");
    }
    // What `serve`, `worker` and `migrate` run after the migrations.
    iria_news::startup::server::upgrade_data(&mut conn, &app.settings).expect("upgrade");
    iria_news::startup::server::upgrade_data(&mut conn, &app.settings).expect("twice is fine");
    for (id, email) in &people {
        let stored: String = subscribers::table
            .find(*id)
            .select(subscribers::email)
            .first(&mut conn)
            .expect("row");
        assert!(!stored.contains(&sha256_hex(email)), "{stored}");
        assert_eq!(
            stored,
            iria_news::stores::subscriptions::records::erased_marker(
                app.settings.secret(),
                *id,
                email
            )
        );
    }
}
on_both_backends!(
    old_erasure_markers_become_keyed,
    super::old_erasure_markers_become_keyed
);
