//! The preferences page reached from every message: name and topics, and the one-time link it
//! mails for download and erasure.

use iria_news::foundation::links::{Purpose, RecipientToken};

use crate::helpers::{form, spawn_app, Backend, TestApp};
use crate::on_both_backends;

fn link(app: &TestApp, id: i64) -> String {
    format!(
        "/preferences/{}",
        RecipientToken::new(id, 0).sign(Purpose::Preferences, app.settings.secret())
    )
}

async fn preferences_change_name_and_topics_and_keep_bad_input(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let page = app.get(&link(&app, people[0].0)).await;
    assert_eq!(page.status(), 200);
    let body = page.text().await.expect("body");
    assert!(body.contains("reader00000@example.org"));
    assert!(body.contains(r#"value="Middle East""#));

    let post = |body: String| {
        app.client
            .post(format!("{}{}", app.address, link(&app, people[0].0)))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let saved = post(form(&[
        ("name", "Ada Lovelace"),
        ("topics", "Europe"),
        ("topics", "Terrorism"),
    ]))
    .await
    .expect("POST");
    assert_eq!(saved.status(), 200);
    assert!(saved
        .text()
        .await
        .expect("body")
        .contains("Your preferences are saved"));
    assert_eq!(
        app.subscriber("reader00000@example.org"),
        Some((
            "confirmed".into(),
            Some("Ada Lovelace".into()),
            "Europe,Terrorism".into()
        ))
    );

    // Unknown topic, oversized name: 400, what was typed is kept, nothing changes.
    let bad = post(form(&[("name", "Grace"), ("topics", "Mars")]))
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
    let body = bad.text().await.expect("body");
    assert!(body.contains("not one of our topics") && body.contains(r#"value="Grace""#));
    let long = "L".repeat(300);
    let bad = post(form(&[("name", &long), ("topics", "Asia")]))
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
    let body = bad.text().await.expect("body");
    assert!(
        body.contains("at most 256")
            && body.contains(&long)
            && body.contains(r#"value="Asia" checked"#)
    );
    assert_eq!(
        app.subscriber("reader00000@example.org"),
        Some((
            "confirmed".into(),
            Some("Ada Lovelace".into()),
            "Europe,Terrorism".into()
        ))
    );
}
on_both_backends!(
    preferences_change_name_and_topics_and_keep_bad_input,
    super::preferences_change_name_and_topics_and_keep_bad_input
);

async fn download_my_data_holds_everything_including_consent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.post_subscriptions(form(&[
        ("email", "me@example.org"),
        ("name", "Me"),
        ("source", "footer"),
    ]))
    .await;
    let mail = app.wait_for_mail_to("me@example.org", 1).await;
    app.confirm(&mail.confirmation_link()).await;
    let id = app.subscriber_id("me@example.org");
    let data_link = app.data_link(&link(&app, id), "me@example.org").await;
    let response = app
        .client
        .post(format!("{data_link}/download"))
        .send()
        .await
        .expect("POST download");
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("attachment")));
    let data: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(data["subscriber"]["email"], "me@example.org");
    assert_eq!(data["subscriber"]["status"], "confirmed");
    assert_eq!(data["consents"][0]["form_source"], "footer");
    assert_eq!(data["consents"][0]["ip"], "127.0.0.1");
    assert!(data["consents"][0]["confirmed_at"].is_string());
    assert_eq!(data["messages"][0]["kind"], "confirmation");
    assert_eq!(data["messages"][0]["status"], "sent");
}
on_both_backends!(
    download_my_data_holds_everything_including_consent,
    super::download_my_data_holds_everything_including_consent
);

async fn erase_my_data_keeps_only_a_hash_and_a_fresh_signup_works(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.post_subscriptions(form(&[
        ("email", "gone@example.org"),
        ("name", "Gone Soon"),
    ]))
    .await;
    let mail = app.wait_for_mail_to("gone@example.org", 1).await;
    app.confirm(&mail.confirmation_link()).await;
    let id = app.subscriber_id("gone@example.org");
    let erase_url = format!(
        "{}/erase",
        app.data_link(&link(&app, id), "gone@example.org").await
    );
    let unticked = app
        .client
        .post(&erase_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("POST");
    assert_eq!(unticked.status(), 400);
    assert!(
        app.subscriber("gone@example.org").is_some(),
        "nothing erased without the box ticked"
    );

    let erased = app
        .client
        .post(&erase_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("confirm=yes")
        .send()
        .await
        .expect("POST");
    assert_eq!(erased.status(), 200);
    assert_eq!(
        app.subscriber("gone@example.org"),
        None,
        "the address is gone"
    );
    let marker = iria_news::stores::subscriptions::records::erased_marker(
        app.settings.secret(),
        id,
        "gone@example.org",
    );
    let (status, name, topics) = app.subscriber(&marker).expect("the hash is kept");
    assert_eq!(
        (status.as_str(), name, topics.as_str()),
        ("unsubscribed", None, "")
    );
    assert_eq!(app.count_consents(), 0, "consent records erased");
    // A link from an old message now says the data is gone.
    assert_eq!(app.get(&link(&app, id)).await.status(), 410);
    // An issue sent now does not reach the hash.
    app.add_confirmed("other", 1);
    let queued = app.queue_issue("After the erasure", "<p>News</p>");
    assert_eq!(queued.recipients, 1);
    // Signing up afresh works and needs a fresh confirmation.
    app.post_subscriptions(form(&[("email", "gone@example.org")]))
        .await;
    // The second confirmation (the first one's welcome may come before or after it).
    let again = app
        .wait_for_mail_with_subject("gone@example.org", "Confirm your subscription", 2)
        .await;
    assert_eq!(
        app.subscriber("gone@example.org").map(|s| s.0).as_deref(),
        Some("pending")
    );
    assert_eq!(app.confirm(&again.confirmation_link()).await.status(), 200);
    assert_eq!(
        app.subscriber("gone@example.org").map(|s| s.0).as_deref(),
        Some("confirmed")
    );
}
on_both_backends!(
    erase_my_data_keeps_only_a_hash_and_a_fresh_signup_works,
    super::erase_my_data_keeps_only_a_hash_and_a_fresh_signup_works
);
