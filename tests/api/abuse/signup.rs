//! Issue 12, "Sign-up and confirmation": the public sign-up cannot be bent by whoever sends it.
//! Names refuse bidi controls and invisible characters and take effect only once confirmed;
//! a confirmation link's GET changes nothing (mail scanners fetch it), its button confirms;
//! the per-address, per-IP and login limits hold under parallel requests and across processes;
//! a client behind a proxy cannot choose its IP by prepending an `X-Forwarded-For` hop;
//! addresses at IP addresses are refused.

use std::time::Duration;

use diesel::prelude::*;
use futures_util::future::join_all;
use iria_news::foundation::db::schema::{confirmation_tokens, consents, deliveries, subscribers};
use serde_json::{json, Value};

use crate::helpers::{form, spawn_app, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

async fn app_with(backend: Backend, env: Vec<(&'static str, String)>) -> Option<TestApp> {
    spawn_app_with(
        backend,
        AppOptions {
            env,
            ..Default::default()
        },
    )
    .await
}

/// A sign-up posted from behind a proxy that appended `forwarded_for` as it saw it.
async fn sign_up_forwarded(app: &TestApp, email: &str, forwarded_for: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/subscriptions", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Forwarded-For", forwarded_for)
        .body(form(&[("email", email)]))
        .send()
        .await
        .expect("POST /subscriptions")
}

/// A JSON sign-up, as the site's script sends it.
async fn sign_up_json(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/subscriptions", app.address))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /subscriptions (JSON)")
}

/// The consent IPs recorded for this address, oldest first.
fn consent_ips(app: &TestApp, email: &str) -> Vec<String> {
    consents::table
        .inner_join(subscribers::table)
        .filter(subscribers::email.eq(email))
        .order(consents::id)
        .select(consents::ip)
        .load(&mut app.conn())
        .expect("consents")
}

/// Waits until the ledger has nothing queued or being sent (15 s at most), then returns how
/// many messages the SMTP server got for `email` (`None`: for anyone).
async fn settled_mail_count(app: &TestApp, email: Option<&str>) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let open: i64 = deliveries::table
            .filter(deliveries::status.eq_any(["queued", "sending"]))
            .count()
            .get_result(&mut app.conn())
            .expect("count");
        if open == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} deliveries still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server may hold a message the worker has just recorded as sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    match email {
        Some(email) => app.received_by(email).len(),
        None => app.smtp().received().len(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Names: no bidi controls or invisible characters, at every door; and no name before consent.

const SNEAKY_NAMES: [&str; 6] = [
    "Ada \u{202E}moc.evil",
    "Ada\u{2066}visit evil.example\u{2069}",
    "A\u{200B}da",
    "Ada\u{200D}",
    "\u{FEFF}Ada",
    "Ada\u{2060}Lovelace",
];

async fn names_with_bidi_controls_or_zero_width_characters_are_refused_at_every_door(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for name in SNEAKY_NAMES {
        // The form: 400, the form again with the name's error, what was typed kept.
        let page = app
            .post_subscriptions(form(&[("email", "a@example.org"), ("name", name)]))
            .await;
        assert_eq!(page.status(), 400, "{name:?}");
        let body = page.text().await.expect("body");
        assert!(body.contains(r#"id="name-error""#), "{name:?}: {body}");
        assert!(body.contains("invisible characters"), "{name:?}");
        assert!(body.contains("a@example.org"), "the address typed is kept");

        // The JSON sign-up: 400 problem details naming the field.
        let json = sign_up_json(&app, json!({"email": "a@example.org", "name": name})).await;
        assert_eq!(json.status(), 400, "{name:?}");
        let problem: Value = json.json().await.expect("problem details");
        assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
    }
    assert_eq!(app.count_subscribers(), 0, "nothing stored");
    assert_eq!(app.count_consents(), 0, "nothing stored");
    assert_eq!(app.count_deliveries(), 0, "nothing queued");

    // The API: refused with its problem details, nothing stored.
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "abuse").expect("token");
    let api = app
        .client
        .post(format!("{}/api/v1/subscribers", app.address))
        .bearer_auth(&token)
        .json(
            &json!({"email": "b@example.org", "name": SNEAKY_NAMES[0], "consent": "held",
                      "source": "test"}),
        )
        .send()
        .await
        .expect("POST /api/v1/subscribers");
    assert!(api.status().is_client_error(), "{}", api.status());
    let detail = api.text().await.expect("body");
    assert!(detail.contains("invisible characters"), "{detail}");
    assert_eq!(app.count_subscribers(), 0, "nothing stored");

    // The preferences page: 400, the name on file unchanged.
    let people = app.add_subscribers("reader", 1, |_| (Some("Ada".into()), String::new()));
    let (id, email) = people[0].clone();
    let link = format!(
        "{}/preferences/{}",
        app.address,
        iria_news::foundation::links::RecipientToken::new(id, 0).sign(
            iria_news::foundation::links::Purpose::Preferences,
            app.settings.secret()
        )
    );
    for name in SNEAKY_NAMES {
        let saved = app
            .client
            .post(&link)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("name", name)]))
            .send()
            .await
            .expect("POST preferences");
        assert_eq!(saved.status(), 400, "{name:?}");
        assert!(saved
            .text()
            .await
            .expect("body")
            .contains("invisible characters"));
    }
    assert_eq!(
        app.subscriber(&email).and_then(|s| s.1).as_deref(),
        Some("Ada")
    );
}
on_both_backends!(
    names_with_bidi_controls_or_zero_width_characters_are_refused_at_every_door,
    super::names_with_bidi_controls_or_zero_width_characters_are_refused_at_every_door
);

/// The subscriber's row and its consent's name and topics, as stored.
type Stored = (String, Option<String>, String, Option<String>, String);

fn stored(app: &TestApp, email: &str) -> Stored {
    let (status, name, topics) = app.subscriber(email).expect("on file");
    let (consent_name, consent_topics): (Option<String>, String) = consents::table
        .inner_join(subscribers::table)
        .filter(subscribers::email.eq(email))
        .order(consents::id.desc())
        .select((consents::name, consents::topics))
        .first(&mut app.conn())
        .expect("consent");
    (status, name, topics, consent_name, consent_topics)
}

/// On PostgreSQL a first sign-up takes the one-statement fast path, on SQLite the general path:
/// both leave the same rows, and neither puts the name a stranger typed on the subscriber.
async fn a_pending_subscriber_carries_no_name_until_confirmed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let spam = "Win a prize at https://spam.example/claim";
    let response = app
        .post_subscriptions(form(&[
            ("email", "victim@example.org"),
            ("name", spam),
            ("topics", "Asia"),
        ]))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        stored(&app, "victim@example.org"),
        (
            "pending".into(),
            None,
            "Asia".into(),
            Some(spam.into()),
            "Asia".into()
        ),
        "the name waits on the consent"
    );
    // Whatever the confirmation says, it names nothing the form was given.
    let mail = app.wait_for_mail_to("victim@example.org", 1).await;
    assert!(
        !String::from_utf8_lossy(&mail.raw).contains("spam.example"),
        "the confirmation carries the submitted name"
    );

    // The general path for an address on file (a second sign-up, another name): still none.
    app.post_subscriptions(form(&[("email", "victim@example.org"), ("name", "Ada")]))
        .await;
    let second = app
        .wait_for_mail_with_subject("victim@example.org", "Confirm", 2)
        .await;
    assert_eq!(
        stored(&app, "victim@example.org"),
        (
            "pending".into(),
            None,
            "Asia".into(),
            Some("Ada".into()),
            String::new()
        )
    );
    // Confirmed: the name and topics of the sign-up whose link was followed.
    assert_eq!(app.confirm(&second.confirmation_link()).await.status(), 200);
    assert_eq!(
        app.subscriber("victim@example.org"),
        Some(("confirmed".into(), Some("Ada".into()), String::new()))
    );
}
on_both_backends!(
    a_pending_subscriber_carries_no_name_until_confirmed,
    super::a_pending_subscriber_carries_no_name_until_confirmed
);

// ---------------------------------------------------------------------------------------------
// 2. The confirmation link: GET shows a button and changes nothing; POST confirms.

fn token_used(app: &TestApp) -> Vec<bool> {
    confirmation_tokens::table
        .order(confirmation_tokens::id)
        .select(confirmation_tokens::used_at)
        .load::<Option<chrono::NaiveDateTime>>(&mut app.conn())
        .expect("tokens")
        .into_iter()
        .map(|u| u.is_some())
        .collect()
}

async fn a_link_scanner_opening_the_confirmation_link_confirms_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.sign_up("reader@example.org").await;
    let link = app
        .wait_for_mail_to("reader@example.org", 1)
        .await
        .confirmation_link();
    let token = link.split("token=").nth(1).expect("token").to_string();
    // A mail scanner, a link preview and the reader's own click: three GETs.
    for agent in [
        "Mozilla/5.0 (compatible; SafeLinks)",
        "Slackbot-LinkExpanding",
        "Mozilla/5.0",
    ] {
        let page = app
            .client
            .get(&link)
            .header("User-Agent", agent)
            .send()
            .await
            .expect("GET");
        assert_eq!(page.status(), 200);
        let headers = page.headers().clone();
        assert!(headers.get("set-cookie").is_none(), "no cookie");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let body = page.text().await.expect("body");
        assert!(body.contains(r#"<form method="post" action="/subscriptions/confirm">"#));
        assert!(body.contains(&format!(r#"name="token" value="{token}""#)));
        assert!(body.contains("Confirm my subscription"));
        assert_eq!(body.matches("<button").count(), 1, "one button on the page");
    }
    assert_eq!(
        app.subscriber("reader@example.org").map(|s| s.0).as_deref(),
        Some("pending"),
        "opening the link confirmed the sign-up"
    );
    assert_eq!(token_used(&app), vec![false], "the token is not spent");
    let confirmed_at: Vec<Option<chrono::NaiveDateTime>> = consents::table
        .select(consents::confirmed_at)
        .load(&mut app.conn())
        .expect("consents");
    assert_eq!(confirmed_at, vec![None]);

    // The button: confirmed, no cookie, no-store.
    let pressed = app
        .client
        .post(format!("{}/subscriptions/confirm", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("token", &token)]))
        .send()
        .await
        .expect("POST");
    assert_eq!(pressed.status(), 200);
    assert!(pressed.headers().get("set-cookie").is_none());
    assert_eq!(pressed.headers()["cache-control"], "no-store");
    assert!(pressed
        .text()
        .await
        .expect("body")
        .contains("You are subscribed"));
    assert_eq!(
        app.subscriber("reader@example.org").map(|s| s.0).as_deref(),
        Some("confirmed")
    );
    assert_eq!(token_used(&app), vec![true]);

    // Used: both the page and the button say so.
    let page = app.get(&link).await;
    assert_eq!(page.status(), 410);
    assert!(page
        .text()
        .await
        .expect("body")
        .contains("already been used"));
    let again = app
        .client
        .post(format!("{}/subscriptions/confirm", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("token", &token)]))
        .send()
        .await
        .expect("POST");
    assert_eq!(again.status(), 410);
}
on_both_backends!(
    a_link_scanner_opening_the_confirmation_link_confirms_nothing,
    super::a_link_scanner_opening_the_confirmation_link_confirms_nothing
);

async fn post_token(app: &TestApp, body: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/subscriptions/confirm", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /subscriptions/confirm")
}

async fn unknown_superseded_expired_and_broken_confirmation_tokens_keep_their_4xx_pages(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Superseded: a second sign-up while pending.
    app.sign_up("p@example.org").await;
    let first = app
        .wait_for_mail_to("p@example.org", 1)
        .await
        .confirmation_link();
    app.sign_up("p@example.org").await;
    let second = app
        .wait_for_mail_to("p@example.org", 2)
        .await
        .confirmation_link();
    let first_token = first.split("token=").nth(1).expect("token");
    let page = app.get(&first).await;
    assert_eq!(page.status(), 410);
    assert!(page.text().await.expect("body").contains("newer link"));
    assert_eq!(
        post_token(&app, &form(&[("token", first_token)]))
            .await
            .status(),
        410
    );

    // Expired: the page says so before anyone presses anything, and the button too.
    let past = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(1);
    diesel::update(confirmation_tokens::table.filter(confirmation_tokens::revoked_at.is_null()))
        .set(confirmation_tokens::expires_at.eq(past))
        .execute(&mut app.conn())
        .expect("age the token");
    let page = app.get(&second).await;
    assert_eq!(page.status(), 410);
    let body = page.text().await.expect("body");
    assert!(body.contains("expired"));
    assert!(body.contains(r#"href="/""#), "offers to sign up again");
    let second_token = second.split("token=").nth(1).expect("token");
    assert_eq!(
        post_token(&app, &form(&[("token", second_token)]))
            .await
            .status(),
        410
    );

    // Unknown, cut short, missing.
    let unknown = "A".repeat(42) + "E";
    assert_eq!(
        app.get(&format!("/subscriptions/confirm?token={unknown}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        post_token(&app, &form(&[("token", &unknown)]))
            .await
            .status(),
        404
    );
    assert_eq!(post_token(&app, "token=abc").await.status(), 400);
    assert_eq!(post_token(&app, "").await.status(), 400);
    assert_eq!(
        app.subscriber("p@example.org").map(|s| s.0).as_deref(),
        Some("pending"),
        "nothing confirmed"
    );
}
on_both_backends!(
    unknown_superseded_expired_and_broken_confirmation_tokens_keep_their_4xx_pages,
    super::unknown_superseded_expired_and_broken_confirmation_tokens_keep_their_4xx_pages
);

// ---------------------------------------------------------------------------------------------
// 3. Limits that races cannot beat.

async fn thirty_parallel_sign_ups_of_one_address_get_three_accepted_and_three_mails(
    backend: Backend,
) {
    let Some(app) = app_with(
        backend,
        vec![("IRIA_SIGNUP_PER_IP_PER_HOUR", "1000".into())],
    )
    .await
    else {
        return;
    };
    let email = "bombed@example.org";
    let answers = join_all((0..30).map(|_| app.sign_up(email))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (accepted, refused),
        (3, 27),
        "the limit is 3 an hour: {statuses:?}"
    );
    assert_eq!(app.count_consents(), 3);
    assert_eq!(app.count_deliveries(), 3);
    // Each accepted sign-up replaces the one before's link, and a confirmation whose link is
    // dead by the time it is sent is not sent: one to three arrive, never more.
    let mails = settled_mail_count(&app, Some(email)).await;
    assert!(
        (1..=3).contains(&mails),
        "{mails} confirmation emails received"
    );
}
on_both_backends!(
    thirty_parallel_sign_ups_of_one_address_get_three_accepted_and_three_mails,
    super::thirty_parallel_sign_ups_of_one_address_get_three_accepted_and_three_mails
);

async fn thirty_parallel_sign_ups_from_one_ip_stop_at_the_per_ip_limit(backend: Backend) {
    let Some(app) = app_with(backend, vec![("IRIA_SIGNUP_PER_IP_PER_HOUR", "5".into())]).await
    else {
        return;
    };
    let emails: Vec<String> = (0..30).map(|i| format!("r{i}@example.org")).collect();
    let answers = join_all(emails.iter().map(|e| app.sign_up(e))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((accepted, refused), (5, 25), "{statuses:?}");
    assert!(answers
        .iter()
        .filter(|r| r.status() == 429)
        .all(|r| r.headers().contains_key("retry-after")));
    assert_eq!(app.count_subscribers(), 5);
    assert_eq!(
        settled_mail_count(&app, None).await,
        5,
        "confirmation emails received"
    );
}
on_both_backends!(
    thirty_parallel_sign_ups_from_one_ip_stop_at_the_per_ip_limit,
    super::thirty_parallel_sign_ups_from_one_ip_stop_at_the_per_ip_limit
);

/// Two app instances on one database with this per-IP limit: the second runs against the first
/// one's database (its own, made by the helper, stays unused).
async fn two_instances(backend: Backend, per_ip: &str) -> Option<(TestApp, TestApp)> {
    let env = || vec![("IRIA_SIGNUP_PER_IP_PER_HOUR", per_ip.to_string())];
    let first = app_with(backend, env()).await?;
    let second = spawn_app_with(
        backend,
        AppOptions {
            env: env(),
            database_url: Some(first.db.url.clone()),
            ..Default::default()
        },
    )
    .await?;
    Some((first, second))
}

/// Two app processes' worth of state (two `Application`s, each its own pool) on one database:
/// the per-IP limit is the database's, so it is shared.
async fn the_per_ip_limit_holds_across_two_app_instances_on_one_database(backend: Backend) {
    let Some((first, second)) = two_instances(backend, "4").await else {
        return;
    };
    let emails: Vec<String> = (0..12).map(|i| format!("x{i}@example.org")).collect();
    let answers = join_all(emails.iter().enumerate().map(|(i, e)| {
        let app = if i % 2 == 0 { &first } else { &second };
        app.sign_up(e)
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "4 an hour from one IP, whichever instance answers: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 8);
    assert_eq!(first.count_subscribers(), 4);
}
on_both_backends!(
    the_per_ip_limit_holds_across_two_app_instances_on_one_database,
    super::the_per_ip_limit_holds_across_two_app_instances_on_one_database
);

/// A busy address under a high limit (1,000 an hour: each process takes up to five places at
/// once and hands them out itself, see `stores::limits::Credits`), sign-ups sixteen at a time
/// spread over two instances: never more than the limit (and the places freed as time passes) is
/// admitted, and at most the places the two processes still hold are lost.
async fn a_busy_address_never_gets_more_than_its_limit_across_two_instances(backend: Backend) {
    use futures_util::StreamExt;
    let Some((first, second)) = two_instances(backend, "1000").await else {
        return;
    };
    let emails: Vec<String> = (0..1100).map(|i| format!("busy{i}@example.org")).collect();
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(emails.iter().enumerate())
        .map(|(i, e)| {
            let app = if i % 2 == 0 { &first } else { &second };
            async move { app.sign_up(e).await.status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(accepted + refused, 1100, "only 200 or 429");
    // One more place every 3.6 s (an hour / 1,000) as time passes.
    let freed = (started.elapsed().as_millis() / 3600) as usize + 1;
    assert!(
        (992..=1000 + freed).contains(&accepted),
        "{accepted} admitted under a limit of 1,000 (+{freed} freed meanwhile; few places lost \
         in the processes)"
    );
    assert_eq!(first.count_subscribers(), accepted as i64);
}
on_both_backends!(
    a_busy_address_never_gets_more_than_its_limit_across_two_instances,
    super::a_busy_address_never_gets_more_than_its_limit_across_two_instances
);

async fn forty_parallel_wrong_logins_check_at_most_five_passwords(backend: Backend) {
    // As many connections as production's default (PostgreSQL; SQLite takes at most 4), so that
    // many attempts really run at once.
    let Some(app) = app_with(backend, vec![("IRIA_DB_POOL_SIZE", "16".into())]).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), "editor", "correct horse battery")
        .expect("editor");
    let (cookie, csrf) = crate::console::login_form(&app).await;
    let attempt = |i: usize| {
        app.client
            .post(format!("{}/admin/login", app.address))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("csrf", csrf.as_str()),
                ("name", "editor"),
                ("password", &format!("wrong guess {i}")),
            ]))
            .send()
    };
    let answers = join_all((0..40).map(attempt)).await;
    let mut checked = 0;
    let mut locked = 0;
    for answer in answers {
        let answer = answer.expect("POST /admin/login");
        let status = answer.status().as_u16();
        let body = answer.text().await.expect("body");
        match status {
            401 if body.contains("do not match") => checked += 1,
            429 if body.contains("Too many failed logins") => locked += 1,
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    assert!(checked <= 5, "{checked} passwords checked, the limit is 5");
    assert_eq!(checked + locked, 40);
    // The right password is refused too now: the account is locked for the window.
    let right = app
        .client
        .post(format!("{}/admin/login", app.address))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", csrf.as_str()),
            ("name", "editor"),
            ("password", "correct horse battery"),
        ]))
        .send()
        .await
        .expect("POST");
    assert_eq!(right.status(), 429);
}
on_both_backends!(
    forty_parallel_wrong_logins_check_at_most_five_passwords,
    super::forty_parallel_wrong_logins_check_at_most_five_passwords
);

async fn thirty_parallel_wrong_logins_from_one_ip_check_at_most_twenty_passwords(backend: Backend) {
    let Some(app) = app_with(backend, vec![("IRIA_DB_POOL_SIZE", "16".into())]).await else {
        return;
    };
    let (cookie, csrf) = crate::console::login_form(&app).await;
    // Thirty names, so no account reaches its own limit: only the address's (20) can stop them.
    let attempt = |i: usize| {
        app.client
            .post(format!("{}/admin/login", app.address))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("csrf", csrf.as_str()),
                ("name", &format!("guess{i}")),
                ("password", "wrong guess"),
            ]))
            .send()
    };
    let answers = join_all((0..30).map(attempt)).await;
    let statuses: Vec<u16> = answers
        .into_iter()
        .map(|a| a.expect("POST /admin/login").status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert!(checked <= 20, "{checked} passwords checked: {statuses:?}");
    assert_eq!(checked + locked, 30, "{statuses:?}");
}
on_both_backends!(
    thirty_parallel_wrong_logins_from_one_ip_check_at_most_twenty_passwords,
    super::thirty_parallel_wrong_logins_from_one_ip_check_at_most_twenty_passwords
);

async fn a_right_password_takes_back_its_reserved_attempt(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Six right logins in a row: each reserves an attempt and takes it back, so none is
    // refused (were reservations kept, the sixth would be).
    for _ in 0..6 {
        crate::console::log_in(&app, !app_has_editor(&app)).await;
    }
    let left: i64 = iria_news::foundation::db::schema::login_failures::table
        .count()
        .get_result(&mut app.conn())
        .expect("count");
    assert_eq!(left, 0, "no failure left behind by a success");
}
on_both_backends!(
    a_right_password_takes_back_its_reserved_attempt,
    super::a_right_password_takes_back_its_reserved_attempt
);

fn app_has_editor(app: &TestApp) -> bool {
    iria_news::foundation::db::schema::editors::table
        .count()
        .get_result::<i64>(&mut app.conn())
        .expect("count")
        > 0
}

// ---------------------------------------------------------------------------------------------
// 4. X-Forwarded-For: read from the right, past the trusted proxies only.

async fn a_client_cannot_choose_its_ip_by_prepending_a_forwarded_for_hop(backend: Backend) {
    for setting in [
        ("IRIA_TRUSTED_PROXIES", "1"),
        ("IRIA_TRUSTED_PROXIES", "127.0.0.1/32,10.0.0.0/8"),
        // The deprecated switch now means one hop, read from the right.
        ("IRIA_TRUST_FORWARDED_FOR", "true"),
    ] {
        let Some(app) = app_with(
            backend,
            vec![
                (setting.0, setting.1.into()),
                ("IRIA_SIGNUP_PER_IP_PER_HOUR", "2".into()),
            ],
        )
        .await
        else {
            return;
        };
        // Our proxy (the test client, on 127.0.0.1) appended the client's real address,
        // 203.0.113.9; everything left of it is the client's own invention, a new one each time.
        let mut statuses = Vec::new();
        for i in 0..4 {
            let forged = format!("198.18.0.{i}, 10.0.0.{i}");
            let response = sign_up_forwarded(
                &app,
                &format!("c{i}@example.org"),
                &format!("{forged}, 203.0.113.9"),
            )
            .await;
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, vec![200, 200, 429, 429], "{setting:?}");
        assert_eq!(
            consent_ips(&app, "c0@example.org"),
            vec!["203.0.113.9".to_string()],
            "{setting:?}: the consent records the address our proxy saw"
        );
        // Another client behind the same proxy has its own count.
        let other = sign_up_forwarded(&app, "d@example.org", "203.0.113.10").await;
        assert_eq!(other.status(), 200, "{setting:?}");
        assert_eq!(consent_ips(&app, "d@example.org"), vec!["203.0.113.10"]);

        // The confirmation's IP is read the same way.
        let link = app
            .wait_for_mail_to("c0@example.org", 1)
            .await
            .confirmation_link();
        let token = link.split("token=").nth(1).expect("token");
        let pressed = app
            .client
            .post(format!("{}/subscriptions/confirm", app.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Forwarded-For", "192.0.2.66, 203.0.113.9")
            .body(form(&[("token", token)]))
            .send()
            .await
            .expect("POST");
        assert_eq!(pressed.status(), 200);
        let confirmed_ip: Option<String> = consents::table
            .inner_join(subscribers::table)
            .filter(subscribers::email.eq("c0@example.org"))
            .select(consents::confirmed_ip)
            .first(&mut app.conn())
            .expect("consent");
        assert_eq!(confirmed_ip.as_deref(), Some("203.0.113.9"), "{setting:?}");
    }
}
on_both_backends!(
    a_client_cannot_choose_its_ip_by_prepending_a_forwarded_for_hop,
    super::a_client_cannot_choose_its_ip_by_prepending_a_forwarded_for_hop
);

async fn without_trusted_proxies_forwarded_for_is_ignored(backend: Backend) {
    let Some(app) = app_with(backend, vec![]).await else {
        return;
    };
    let response = sign_up_forwarded(&app, "e@example.org", "203.0.113.9").await;
    assert_eq!(response.status(), 200);
    assert_eq!(consent_ips(&app, "e@example.org"), vec!["127.0.0.1"]);
}
on_both_backends!(
    without_trusted_proxies_forwarded_for_is_ignored,
    super::without_trusted_proxies_forwarded_for_is_ignored
);

// ---------------------------------------------------------------------------------------------
// 5. Addresses at IP addresses.

async fn addresses_at_ip_literal_domains_are_refused_with_400(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for email in ["user@[127.0.0.1]", "user@127.0.0.1", "user@[IPv6:::1]"] {
        let page = app.post_subscriptions(form(&[("email", email)])).await;
        assert_eq!(page.status(), 400, "{email}");
        let body = page.text().await.expect("body");
        assert!(body.contains(r#"id="email-error""#), "{email}: {body}");
        assert!(body.contains("not at an IP address"), "{email}");

        let json = sign_up_json(&app, json!({ "email": email })).await;
        assert_eq!(json.status(), 400, "{email}");
        let problem: Value = json.json().await.expect("problem details");
        assert_eq!(problem["errors"][0]["field"], "email", "{problem}");
    }
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "abuse").expect("token");
    let api = app
        .client
        .post(format!("{}/api/v1/subscribers", app.address))
        .bearer_auth(&token)
        .json(&json!({"email": "user@[127.0.0.1]", "consent": "held", "source": "test"}))
        .send()
        .await
        .expect("POST /api/v1/subscribers");
    assert!(api.status().is_client_error(), "{}", api.status());
    assert_eq!(app.count_subscribers(), 0);
    let queued: i64 = deliveries::table
        .count()
        .get_result(&mut app.conn())
        .expect("count");
    assert_eq!(queued, 0);
}
on_both_backends!(
    addresses_at_ip_literal_domains_are_refused_with_400,
    super::addresses_at_ip_literal_domains_are_refused_with_400
);

// ---------------------------------------------------------------------------------------------
// 6. A stranger's name on the owner's confirmation: shown before the button, and refusable.

const STRANGER_NAME: &str = "Win at <b>spam.example</b> & more";
/// As the page shows it: HTML-escaped (numeric references, as askama writes them).
const STRANGER_NAME_ESCAPED: &str = "Win at &#60;b&#62;spam.example&#60;/b&#62; &#38; more";

/// Alice signs up; Mallory signs her address up again with a name of his own, which supersedes
/// Alice's link, so the newest link (the one Alice follows) carries Mallory's name.
async fn mallory_renames_alices_sign_up(app: &TestApp, email: &str) -> String {
    app.sign_up(email).await;
    app.wait_for_mail_to(email, 1).await;
    let mallory = app
        .post_subscriptions(form(&[
            ("email", email),
            ("name", STRANGER_NAME),
            ("topics", "Asia"),
        ]))
        .await;
    assert_eq!(mallory.status(), 200);
    app.wait_for_mail_to(email, 2).await.confirmation_link()
}

async fn confirm_without_the_name(app: &TestApp, link: &str) -> reqwest::Response {
    let token = link.split("token=").nth(1).expect("token");
    post_token(app, &form(&[("token", token), ("name", "discard")])).await
}

/// The confirmation page says what confirming records, the name (escaped) and the topics,
/// before anything is pressed; its GET changes nothing; and the box "Confirm without this name"
/// beside its one button confirms without the name, so the welcome email carries none of it.
async fn a_strangers_name_is_shown_on_the_confirmation_page_and_can_be_discarded(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let email = "alice@example.org";
    let link = mallory_renames_alices_sign_up(&app, email).await;
    let page = app.get(&link).await;
    assert_eq!(page.status(), 200);
    let body = page.text().await.expect("body");
    assert!(body.contains(STRANGER_NAME_ESCAPED), "{body}");
    assert!(!body.contains("<b>spam"), "the name is escaped: {body}");
    assert!(body.contains("Asia"), "the topics are shown: {body}");
    assert!(body.contains("change both later"), "{body}");
    assert!(body.contains("Confirm my subscription"), "{body}");
    assert!(body.contains("Confirm without this name"), "{body}");
    assert!(
        body.contains(r#"type="checkbox" name="name" value="discard""#),
        "{body}"
    );
    assert_eq!(
        body.matches("<button").count(),
        1,
        "one button, as the contract says"
    );
    assert_eq!(body.matches("<form").count(), 1, "{body}");
    assert_eq!(
        app.subscriber(email),
        Some(("pending".into(), None, String::new())),
        "the page changed nothing"
    );
    assert_eq!(token_used(&app), vec![false, false]);

    let pressed = confirm_without_the_name(&app, &link).await;
    assert_eq!(pressed.status(), 200);
    assert_eq!(
        app.subscriber(email),
        Some(("confirmed".into(), None, "Asia".into())),
        "confirmed, without the name"
    );
    let welcome = app.wait_for_mail_with_subject(email, "Welcome to", 1).await;
    let parsed = welcome.parsed();
    let to = parsed.to().and_then(|a| a.first()).expect("a To address");
    assert_eq!(to.address(), Some(email));
    assert_eq!(to.name(), None, "no display name in To");
    let raw = String::from_utf8_lossy(&welcome.raw).to_string();
    for text in [raw, welcome.text(), welcome.html()] {
        assert!(!text.contains("spam.example"), "{text}");
        assert!(!text.contains("Win at"), "{text}");
    }
}
on_both_backends!(
    a_strangers_name_is_shown_on_the_confirmation_page_and_can_be_discarded,
    super::a_strangers_name_is_shown_on_the_confirmation_page_and_can_be_discarded
);

/// A reader who had confirmed a name of their own, left, and is signed up again by a stranger
/// with another name: confirming without the stranger's name keeps theirs. A sign-up with no
/// name shows "no name" and offers one button.
async fn discarding_a_strangers_name_keeps_the_readers_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_subscribers("ada", 1, |_| (Some("Ada Lovelace".into()), String::new()));
    let email = people[0].1.clone();
    diesel::update(subscribers::table.filter(subscribers::email.eq(&email)))
        .set(subscribers::status.eq("unsubscribed"))
        .execute(&mut app.conn())
        .expect("unsubscribe");
    app.sign_up(&email).await;
    let plain = app.wait_for_mail_to(&email, 1).await.confirmation_link();
    let body = app.get(&plain).await.text().await.expect("body");
    assert!(body.contains("no name"), "{body}");
    assert_eq!(body.matches("<button").count(), 1, "{body}");

    let mallory = app
        .post_subscriptions(form(&[("email", &email), ("name", STRANGER_NAME)]))
        .await;
    assert_eq!(mallory.status(), 200);
    let link = app.wait_for_mail_to(&email, 2).await.confirmation_link();
    let body = app.get(&link).await.text().await.expect("body");
    assert!(body.contains(STRANGER_NAME_ESCAPED), "{body}");
    assert!(
        !body.contains("Lovelace"),
        "the page shows nothing of the reader: {body}"
    );
    assert_eq!(confirm_without_the_name(&app, &link).await.status(), 200);
    assert_eq!(
        app.subscriber(&email),
        Some((
            "confirmed".into(),
            Some("Ada Lovelace".into()),
            String::new()
        ))
    );
}
on_both_backends!(
    discarding_a_strangers_name_keeps_the_readers_own,
    super::discarding_a_strangers_name_keeps_the_readers_own
);
