//! The modes: `off` rewrites nothing, `anonymous` keeps nothing that names a reader, `personal`
//! names the copy; the mode at the click decides what is kept. Opens only when asked for, and the
//! `Feedback-ID` of every newsletter message.

use diesel::prelude::*;
use iria_news::foundation::db::schema::{clicks, issue_links};

use crate::engagement::support::*;
use crate::helpers::{spawn_app_with, AppOptions, Backend};
use crate::on_both_backends;

/// `off`: the copies carry the plain addresses, no `/r/` link, no hidden link, no open image,
/// and nothing is stored.
async fn off_rewrites_nothing(backend: Backend) {
    let Some(app) = app_in_mode(backend, "off", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "off", 1).await;
    let html = copies[0].html();
    let text = copies[0].text();
    assert!(
        html.contains("href=\"https://ir-ia.com/one?a=1&amp;b=2\""),
        "{html}"
    );
    assert!(text.contains("https://ir-ia.com/two"), "{text}");
    assert!(!html.contains("/r/") && !text.contains("/r/"));
    assert!(!html.contains("/o/") && !html.contains("aria-hidden=\"true\" tabindex"));
    let stored: i64 = issue_links::table
        .filter(issue_links::issue_id.eq(issue_id))
        .count()
        .get_result(&mut app.conn())
        .expect("count");
    assert_eq!(stored, 0);
}
on_both_backends!(off_rewrites_nothing, super::off_rewrites_nothing);

/// `anonymous`: the text part's links are tracked too, every copy's links are the same, and the
/// database holds counters only: no click row, nothing with a delivery, an address or a time.
async fn anonymous_stores_nothing_that_names_a_reader(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "nameless", 2).await;
    age_deliveries(&app, issue_id, 3600);
    let text_links = tracked_links(&copies[0].text());
    assert!(text_links.len() >= 3, "{}", copies[0].text());
    assert_eq!(text_links, tracked_links(&copies[1].text()));
    for link in &text_links[..3] {
        assert_eq!(click(&app, link, BROWSER).await.0, 302);
        // Apart, so that this is not a burst.
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    }
    app.flush_clicks().await;
    let total: i64 = counters(&app, issue_id).iter().map(|c| c.2).sum();
    assert_eq!(total, 3);
    let rows: i64 = clicks::table
        .count()
        .get_result(&mut app.conn())
        .expect("count");
    assert_eq!(rows, 0, "anonymous mode wrote a click row");
    // The token of an anonymous link names no delivery: it is the same in every copy, and is
    // shorter than a personal one.
    let token = text_links[0].rsplit('/').next().expect("token");
    assert_eq!(token.len(), 34, "{token}");
}
on_both_backends!(
    anonymous_stores_nothing_that_names_a_reader,
    super::anonymous_stores_nothing_that_names_a_reader
);

/// A personal link clicked after the operator switched to `anonymous` only adds to the counter;
/// after a switch to `off` it still redirects and counts nothing.
async fn the_mode_at_the_click_decides_what_is_kept(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "switch", 1).await;
    age_deliveries(&app, issue_id, 3600);
    let link = tracked_links(&copies[0].html())[0].clone();
    let token = link.rsplit('/').next().expect("token").to_string();
    for (mode, expected) in [("anonymous", 1), ("off", 1)] {
        let mut env = vec![("IRIA_CLICK_TRACKING", mode.to_string())];
        env.push(("IRIA_DELIVERY_POLL_MS", "60000".to_string()));
        let Some(other) = spawn_app_with(
            backend,
            AppOptions {
                env,
                db: None,
                database_url: Some(app.db.url.clone()),
                ..Default::default()
            },
        )
        .await
        else {
            return;
        };
        let response = other
            .client
            .get(format!("{}/r/{token}", other.address))
            .header("User-Agent", BROWSER)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 302, "{mode}");
        other.flush_clicks().await;
        let total: i64 = counters(&app, issue_id).iter().map(|c| c.2).sum();
        assert_eq!(total, expected, "{mode}");
        assert!(
            click_rows(&app, issue_id).is_empty(),
            "{mode}: a row names the reader"
        );
    }
}
on_both_backends!(
    the_mode_at_the_click_decides_what_is_kept,
    super::the_mode_at_the_click_decides_what_is_kept
);

/// Opens are off by default (no image); with `IRIA_OPEN_TRACKING=true` each copy carries a 1×1
/// image whose loading counts one open.
async fn opens_only_when_asked_for(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (_, copies) = send_issue(&app, "noopen", 1).await;
    assert!(
        !copies[0].html().contains("/o/"),
        "an open image by default"
    );
    let Some(app) = app_in_mode(
        backend,
        "anonymous",
        vec![("IRIA_OPEN_TRACKING", "true".to_string())],
    )
    .await
    else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "open", 1).await;
    let html = copies[0].html();
    let start = html.find("/o/").expect("an open image");
    let src_start = html[..start].rfind('"').expect("src") + 1;
    let src_end = start + html[start..].find('"').expect("end");
    let image = &html[src_start..src_end];
    assert!(html[..src_start].ends_with("src=\""), "the image's src");
    let response = app
        .client
        .get(app.local(image))
        .header("User-Agent", BROWSER)
        .send()
        .await
        .expect("GET /o/");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/gif")
    );
    assert_eq!(response.bytes().await.expect("body").len(), 43);
    app.flush_clicks().await;
    let opens: Vec<i64> = counters(&app, issue_id)
        .into_iter()
        .filter(|c| c.0 == -1)
        .map(|c| c.2 + c.3)
        .collect();
    assert_eq!(opens, [1]);
}
on_both_backends!(opens_only_when_asked_for, super::opens_only_when_asked_for);

/// Every newsletter message carries `Feedback-ID: kind:audience:sender`.
async fn every_newsletter_message_has_a_feedback_id(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (_, copies) = send_issue(&app, "feedback", 1).await;
    let raw = String::from_utf8_lossy(&copies[0].raw).to_string();
    assert!(
        raw.contains("Feedback-ID: announcement:all:iria-news\r\n"),
        "{}",
        &raw[..raw.find("\r\n\r\n").unwrap_or(raw.len())]
    );
}
on_both_backends!(
    every_newsletter_message_has_a_feedback_id,
    super::every_newsletter_message_has_a_feedback_id
);
