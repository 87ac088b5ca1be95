//! Sign-up and double opt-in: items 15 to 20 of the product's email checklist, each test named
//! after its item and the rule it checks, on each backend.

use base64::Engine;
use diesel::prelude::*;
use iria_news::foundation::db::schema::{confirmation_tokens, consents, deliveries, subscribers};
use sha2::{Digest, Sha256};

use crate::helpers::{form, spawn_app, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

/// The token in a confirmation link.
fn token_of(link: &str) -> String {
    link.split("token=")
        .nth(1)
        .expect("token in link")
        .to_string()
}

async fn confirm_first_link(app: &TestApp, email: &str) {
    let mail = app.wait_for_mail_to(email, 1).await;
    assert_eq!(app.confirm(&mail.confirmation_link()).await.status(), 200);
}

/// Checklist line 15: `POST /subscriptions` answers identically (status and body) for a new, pending, confirmed
/// and unsubscribed address.
async fn line_15_same_answer_for_new_pending_confirmed_and_unsubscribed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Each address is in its state before the measured sign-up.
    app.sign_up("pending@example.org").await;
    app.sign_up("confirmed@example.org").await;
    confirm_first_link(&app, "confirmed@example.org").await;
    app.sign_up("left@example.org").await;
    confirm_first_link(&app, "left@example.org").await;
    let id = app.subscriber_id("left@example.org");
    assert!(
        iria_news::stores::subscriptions::records::unsubscribe(&mut app.conn(), id, "test")
            .expect("unsubscribe")
    );
    assert_eq!(
        app.subscriber("pending@example.org")
            .map(|s| s.0)
            .as_deref(),
        Some("pending")
    );
    assert_eq!(
        app.subscriber("confirmed@example.org")
            .map(|s| s.0)
            .as_deref(),
        Some("confirmed")
    );
    assert_eq!(
        app.subscriber("left@example.org").map(|s| s.0).as_deref(),
        Some("unsubscribed")
    );

    let mut answers = Vec::new();
    for email in [
        "new@example.org",
        "pending@example.org",
        "confirmed@example.org",
        "left@example.org",
    ] {
        // The same request id for each, since the server echoes it: every other header must match.
        let response = app
            .client
            .post(format!("{}/subscriptions", app.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", "iria-news-tests/1.0")
            .header("X-Request-Id", "line-15")
            .body(form(&[("email", email)]))
            .send()
            .await
            .expect("POST /subscriptions");
        let status = response.status();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != "date")
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        answers.push((email, status, headers, response.text().await.expect("body")));
    }
    for (email, status, headers, body) in &answers[1..] {
        assert_eq!(*status, answers[0].1, "status for {email}");
        assert_eq!(*headers, answers[0].2, "headers for {email}");
        assert_eq!(*body, answers[0].3, "body for {email}");
    }
    assert_eq!(answers[0].1, 200);
}
on_both_backends!(
    line_15_same_answer_for_new_pending_confirmed_and_unsubscribed,
    super::line_15_same_answer_for_new_pending_confirmed_and_unsubscribed
);

/// Checklist line 16: Confirmation tokens carry ≥ 128 bits from a CSPRNG, are stored hashed, single use,
/// expiring.
async fn line_16_tokens_are_long_hashed_single_use_and_expiring(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.sign_up("a@example.org").await;
    let link = app
        .wait_for_mail_to("a@example.org", 1)
        .await
        .confirmation_link();
    let token = token_of(&link);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token)
        .expect("base64url token");
    assert!(bytes.len() * 8 >= 128, "{} bits", bytes.len() * 8);

    // Stored hashed: the database holds the SHA-256 and nowhere the token itself.
    let hashes: Vec<String> = confirmation_tokens::table
        .select(confirmation_tokens::token_hash)
        .load(&mut app.conn())
        .expect("tokens");
    assert_eq!(hashes, vec![hex::encode(Sha256::digest(token.as_bytes()))]);
    // The server has the message before the worker records it as sent: wait for the record.
    let recorded = std::time::Instant::now();
    while recorded.elapsed() < std::time::Duration::from_secs(10) {
        let statuses: Vec<String> = deliveries::table
            .select(deliveries::status)
            .load(&mut app.conn())
            .expect("deliveries");
        if statuses.iter().all(|s| s == "sent") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let payloads: Vec<Option<String>> = deliveries::table
        .select(deliveries::payload)
        .load(&mut app.conn())
        .expect("deliveries");
    assert_eq!(
        payloads,
        vec![None],
        "the token is wiped from the ledger once sent"
    );

    // Two sign-ups never share a token (a CSPRNG, not a counter or a clock).
    app.sign_up("b@example.org").await;
    let other = token_of(
        &app.wait_for_mail_to("b@example.org", 1)
            .await
            .confirmation_link(),
    );
    assert_ne!(other, token);

    // Single use.
    assert_eq!(app.confirm(&link).await.status(), 200);
    let again = app.get(&link).await;
    assert_eq!(again.status(), 410);
    assert!(
        again.text().await.expect("body").contains(r#"href="/""#),
        "offers to sign up again"
    );

    // Expiring: a link past its time is refused and confirms nothing.
    let past = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(1);
    diesel::update(confirmation_tokens::table)
        .filter(confirmation_tokens::token_hash.eq(hex::encode(Sha256::digest(other.as_bytes()))))
        .set(confirmation_tokens::expires_at.eq(past))
        .execute(&mut app.conn())
        .expect("age the token");
    let expired = app
        .get(&format!("/subscriptions/confirm?token={other}"))
        .await;
    assert_eq!(expired.status(), 410);
    assert!(expired.text().await.expect("body").contains("expired"));
    assert_eq!(
        app.subscriber("b@example.org").map(|s| s.0).as_deref(),
        Some("pending")
    );

    // Unknown and malformed tokens.
    let unknown = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    assert_eq!(
        app.get(&format!("/subscriptions/confirm?token={unknown}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/subscriptions/confirm?token=abc").await.status(),
        400
    );
    assert_eq!(app.get("/subscriptions/confirm").await.status(), 400);
}
on_both_backends!(
    line_16_tokens_are_long_hashed_single_use_and_expiring,
    super::line_16_tokens_are_long_hashed_single_use_and_expiring
);

/// Checklist line 17: Signing up again while pending replaces the old token; an unsubscribed address must
/// confirm again (fresh consent record).
async fn line_17_pending_signup_replaces_token_and_unsubscribed_must_confirm_again(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.sign_up("p@example.org").await;
    let first = app
        .wait_for_mail_to("p@example.org", 1)
        .await
        .confirmation_link();
    app.post_subscriptions(form(&[("email", "p@example.org"), ("name", "Second Try")]))
        .await;
    let second = app
        .wait_for_mail_to("p@example.org", 2)
        .await
        .confirmation_link();
    assert_ne!(first, second);
    assert_eq!(
        app.confirm(&first).await.status(),
        410,
        "the old link no longer works"
    );
    assert_eq!(
        app.subscriber("p@example.org").map(|s| s.0).as_deref(),
        Some("pending")
    );
    assert_eq!(app.confirm(&second).await.status(), 200);
    assert_eq!(
        app.subscriber("p@example.org"),
        Some(("confirmed".into(), Some("Second Try".into()), String::new()))
    );

    // Unsubscribe, then sign up again: still unsubscribed until the new link is followed.
    let id = app.subscriber_id("p@example.org");
    iria_news::stores::subscriptions::records::unsubscribe(&mut app.conn(), id, "test")
        .expect("unsubscribe");
    let consents_before = app.count_consents();
    app.post_subscriptions(form(&[("email", "p@example.org"), ("topics", "Asia")]))
        .await;
    assert_eq!(
        app.count_consents(),
        consents_before + 1,
        "a fresh consent record"
    );
    // The third confirmation (the welcome of the second may come before or after it).
    let third = app
        .wait_for_mail_with_subject("p@example.org", "Confirm your subscription", 3)
        .await
        .confirmation_link();
    assert_eq!(
        app.subscriber("p@example.org").map(|s| s.0).as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(app.confirm(&third).await.status(), 200);
    assert_eq!(
        app.subscriber("p@example.org"),
        Some(("confirmed".into(), None, "Asia".into()))
    );
    let confirmed: Vec<Option<chrono::NaiveDateTime>> = consents::table
        .filter(consents::subscriber_id.eq(id))
        .order(consents::id)
        .select(consents::confirmed_at)
        .load(&mut app.conn())
        .expect("consents");
    assert_eq!(confirmed.len(), 3);
    assert!(
        confirmed[0].is_none(),
        "the superseded sign-up was never confirmed"
    );
    assert!(confirmed[1].is_some() && confirmed[2].is_some());
}
on_both_backends!(
    line_17_pending_signup_replaces_token_and_unsubscribed_must_confirm_again,
    super::line_17_pending_signup_replaces_token_and_unsubscribed_must_confirm_again
);

/// Checklist line 18: Per-IP and per-address limits answer 429 past a threshold (subscription bombing).
async fn line_18_per_ip_and_per_address_limits_answer_429(backend: Backend) {
    let options = AppOptions {
        env: vec![
            ("IRIA_SIGNUP_PER_ADDRESS_PER_HOUR", "2".into()),
            ("IRIA_SIGNUP_PER_IP_PER_HOUR", "5".into()),
        ],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    // Per address: two sign-ups of one address, then 429, and no third email.
    assert_eq!(app.sign_up("victim@example.org").await.status(), 200);
    assert_eq!(app.sign_up("victim@example.org").await.status(), 200);
    let third = app.sign_up("victim@example.org").await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    assert!(third
        .text()
        .await
        .expect("body")
        .contains("Too many sign-ups"));
    // Per IP: five sign-ups in all from this client (the refused one counts), then 429 whatever
    // the address.
    assert_eq!(app.sign_up("x1@example.org").await.status(), 200);
    assert_eq!(app.sign_up("x2@example.org").await.status(), 200);
    assert_eq!(app.sign_up("x3@example.org").await.status(), 429);
    assert_eq!(app.subscriber("x3@example.org"), None);
    app.wait_for_mail_to("x1@example.org", 1).await;
    let confirmations: i64 = deliveries::table
        .inner_join(subscribers::table)
        .filter(subscribers::email.eq("victim@example.org"))
        .count()
        .get_result(&mut app.conn())
        .expect("count");
    assert_eq!(confirmations, 2, "the refused sign-up queued no email");
}
on_both_backends!(
    line_18_per_ip_and_per_address_limits_answer_429,
    super::line_18_per_ip_and_per_address_limits_answer_429
);

/// Checklist line 19: The consent record holds time, IP, user agent, form source and consent-text version,
/// plus the confirmation time and IP; it survives unsubscribe.
async fn line_19_consent_record_is_complete_and_survives_unsubscribe(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let before = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(1);
    app.post_subscriptions(form(&[
        ("email", "c@example.org"),
        ("source", "iria-article-footer"),
    ]))
    .await;
    confirm_first_link(&app, "c@example.org").await;
    let id = app.subscriber_id("c@example.org");
    iria_news::stores::subscriptions::records::unsubscribe(&mut app.conn(), id, "test")
        .expect("unsubscribe");

    type Row = (
        chrono::NaiveDateTime,
        String,
        String,
        String,
        String,
        Option<chrono::NaiveDateTime>,
        Option<String>,
    );
    let rows: Vec<Row> = consents::table
        .filter(consents::subscriber_id.eq(id))
        .select((
            consents::requested_at,
            consents::ip,
            consents::user_agent,
            consents::source,
            consents::consent_text_version,
            consents::confirmed_at,
            consents::confirmed_ip,
        ))
        .load(&mut app.conn())
        .expect("consents");
    assert_eq!(rows.len(), 1, "the consent survives unsubscribe");
    let (at, ip, ua, source, version, confirmed_at, confirmed_ip) = rows[0].clone();
    assert!(at >= before);
    assert_eq!(ip, "127.0.0.1");
    assert_eq!(ua, "iria-news-tests/1.0");
    assert_eq!(source, "iria-article-footer");
    assert_eq!(
        version,
        iria_news::stores::subscriptions::CONSENT_TEXT_VERSION
    );
    assert!(confirmed_at.is_some_and(|c| c >= at));
    assert_eq!(confirmed_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        app.subscriber("c@example.org").map(|s| s.0).as_deref(),
        Some("unsubscribed")
    );
}
on_both_backends!(
    line_19_consent_record_is_complete_and_survives_unsubscribe,
    super::line_19_consent_record_is_complete_and_survives_unsubscribe
);

/// Checklist line 20: Invalid email, oversized fields and missing fields → 400 with a page that says what is
/// wrong and keeps what the person typed.
async fn line_20_invalid_input_gets_400_saying_what_is_wrong_and_keeping_input(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let long_name = "N".repeat(257);
    // (form fields, what the page must say, what it must keep)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("email", "not-an-address"), ("name", "Ada")],
            "needs an @",
            vec![r#"value="not-an-address""#, r#"value="Ada""#],
        ),
        (
            vec![("name", "Ada")],
            "Please enter your email address",
            vec![r#"value="Ada""#],
        ),
        (
            vec![("email", ""), ("name", "")],
            "Please enter your email address",
            vec![],
        ),
        (
            vec![("email", "ada@example.org"), ("name", &long_name)],
            "at most 256 characters",
            vec![r#"value="ada@example.org""#],
        ),
        (
            vec![("email", "ada@example"), ("topics", "Europe")],
            "full domain",
            vec![r#"value="ada@example""#, r#"value="Europe" checked"#],
        ),
        (
            vec![("email", "ada@example.org"), ("topics", "Mars")],
            "not one of our topics",
            vec![r#"value="ada@example.org""#],
        ),
    ];
    for (fields, says, keeps) in cases {
        let response = app.post_subscriptions(form(&fields)).await;
        assert_eq!(response.status(), 400, "{fields:?}");
        let body = response.text().await.expect("body");
        assert!(
            body.contains(says),
            "{fields:?}: page does not say {says:?}"
        );
        assert!(body.contains("Please check the form"));
        assert!(body.contains(r#"aria-invalid="true""#) || says.contains("topics"));
        for kept in keeps {
            assert!(body.contains(kept), "{fields:?}: page does not keep {kept}");
        }
    }
    assert_eq!(app.count_subscribers(), 0, "nothing stored");
    assert_eq!(app.count_deliveries(), 0, "nothing queued");
}
on_both_backends!(
    line_20_invalid_input_gets_400_saying_what_is_wrong_and_keeping_input,
    super::line_20_invalid_input_gets_400_saying_what_is_wrong_and_keeping_input
);
