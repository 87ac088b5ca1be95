//! Re-permission, end to end: an editor asks the inactive readers whether they still want the
//! newsletter; one answers with the button's POST and stays, one does not and is unsubscribed
//! as `inactive` once the deadline has passed (by the background task); a GET of the button's
//! page changes nothing; the dashboard counts them.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use iria_news::foundation::db::schema::{
    deliveries, repermission_campaigns, repermission_requests, subscribers,
};
use iria_news::stores::subscriptions::repermission;

use super::readers::two_digests_and_their_readers;
use super::support::app_in_mode;
use crate::console::log_in;
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

const SUBJECT: &str = "Still want IRIA News?";

/// (status, unsubscribed_via) of a reader.
fn standing(app: &TestApp, email: &str) -> (String, Option<String>) {
    subscribers::table
        .filter(subscribers::email.eq(email))
        .select((subscribers::status, subscribers::unsubscribed_via))
        .first(&mut app.conn())
        .expect("subscriber")
}

/// The "Keep me subscribed" link of the re-permission message to `email`, pointed at the test's
/// server.
async fn keep_link(app: &TestApp, email: &str) -> String {
    let mail = app.wait_for_mail_with_subject(email, SUBJECT, 1).await;
    let text = mail.text();
    let at = text.find("/keep/").expect("a keep link in the text part");
    let start = text[..at].rfind("http").expect("the link's start");
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')' && *c != '>')
        .collect();
    assert!(mail.html().contains("Keep me subscribed"));
    let raw = String::from_utf8_lossy(&mail.raw).to_string();
    for header in ["List-Unsubscribe:", "List-Unsubscribe-Post:", "List-Id:"] {
        assert!(raw.contains(header), "the message lacks {header}");
    }
    assert!(raw.contains("Feedback-ID:") && raw.contains("repermission"));
    app.local(&link)
}

async fn repermission_end_to_end(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    // a clicked, b and c did not, d joined after the first digest.
    let [a, b, c, d] = two_digests_and_their_readers(&app, "ask").await;
    let console = log_in(&app, true).await;
    let page = console
        .get("/admin/repermission?inactive=2")
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("id=\"segment\">2<"),
        "two readers to ask: {page}"
    );
    for (days, n) in [("0", "2"), ("7", "0"), ("7", "x")] {
        let refused = console
            .post(
                "/admin/repermission",
                &[("inactive_digests", n), ("days", days)],
            )
            .await;
        assert_eq!(refused.status(), 400, "days {days}, N {n}");
    }
    let sent = console
        .post(
            "/admin/repermission",
            &[("inactive_digests", "2"), ("days", "7")],
        )
        .await;
    assert_eq!(sent.status(), 303);
    let keep_b = keep_link(&app, &b).await;
    let keep_c = keep_link(&app, &c).await;
    // Sent to the inactive only.
    let asked: Vec<i64> = deliveries::table
        .filter(deliveries::kind.eq("repermission"))
        .select(deliveries::subscriber_id)
        .order(deliveries::subscriber_id)
        .load(&mut app.conn())
        .expect("deliveries");
    assert_eq!(asked, vec![app.subscriber_id(&b), app.subscriber_id(&c)]);
    for email in [&a, &d] {
        assert!(
            !app.received_by(email)
                .iter()
                .any(|m| m.parsed().subject().unwrap_or_default() == SUBJECT),
            "{email} was asked"
        );
    }
    // Asking again now asks nobody twice.
    let again = console
        .post(
            "/admin/repermission",
            &[("inactive_digests", "2"), ("days", "7")],
        )
        .await;
    assert_eq!(again.status(), 303);
    assert!(again.headers()["location"]
        .to_str()
        .expect("location")
        .contains("sent=0"));

    // A GET (a link scanner, or the reader opening the page) changes nothing.
    for link in [&keep_b, &keep_c] {
        let page = app.get(link).await;
        assert_eq!(page.status(), 200);
        let body = page.text().await.expect("page");
        assert!(body.contains("method=\"post\""), "{body}");
    }
    // b answers.
    let kept = app.client.post(&keep_b).send().await.expect("POST keep");
    assert_eq!(kept.status(), 200);
    assert!(kept
        .text()
        .await
        .expect("page")
        .contains("still subscribed"));
    let twice = app.client.post(&keep_b).send().await.expect("POST keep");
    assert_eq!(twice.status(), 200, "pressing twice is fine");
    // A forged or altered token keeps nobody.
    let forged = format!("{}A", &keep_c[..keep_c.len() - 1]);
    let forged = if forged == keep_c {
        format!("{}B", &keep_c[..keep_c.len() - 1])
    } else {
        forged
    };
    let response = app.client.post(&forged).send().await.expect("POST forged");
    assert_eq!(response.status(), 404);

    // Nobody is unsubscribed before the deadline.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for email in [&a, &b, &c, &d] {
        assert_eq!(standing(&app, email).0, "confirmed", "{email}");
    }
    // The deadline passes (now: after c's message was delivered, so c was asked): the
    // background task unsubscribes c, who did not answer.
    let past = chrono::Utc::now().naive_utc();
    diesel::update(repermission_campaigns::table)
        .set(repermission_campaigns::deadline.eq(past))
        .execute(&mut app.conn())
        .expect("move the deadline");
    let deadline = Instant::now() + Duration::from_secs(20);
    while standing(&app, &c).0 != "unsubscribed" {
        assert!(Instant::now() < deadline, "c was not unsubscribed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        standing(&app, &c),
        ("unsubscribed".to_string(), Some("inactive".to_string()))
    );
    for email in [&a, &b, &d] {
        assert_eq!(standing(&app, email).0, "confirmed", "{email} stays");
    }
    // Too late to answer now; running the expiry again changes nothing.
    let late = app.client.post(&keep_c).send().await.expect("POST keep");
    assert_eq!(late.status(), 410);
    assert_eq!(standing(&app, &c).0, "unsubscribed");
    let again = iria_news::stores::subscriptions::repermission::expire(
        &mut app.conn(),
        chrono::Utc::now().naive_utc(),
    )
    .expect("expire");
    assert_eq!(again, 0, "each reader is unsubscribed once");

    // The dashboard counts them.
    let dashboard = console.get("/admin").await.text().await.expect("dashboard");
    assert!(
        dashboard.contains("id=\"count-inactive\"><a href=\"/admin/repermission\">1<"),
        "{dashboard}"
    );
    let page = console
        .get("/admin/repermission")
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains(">1</td><td class=\"num\">1</td>"),
        "kept 1, unsubscribed 1: {page}"
    );
}
on_both_backends!(repermission_end_to_end, super::repermission_end_to_end);

/// The statuses of the re-permission requests of `email`, by campaign.
fn requests_of(app: &TestApp, email: &str) -> Vec<String> {
    repermission_requests::table
        .filter(repermission_requests::subscriber_id.eq(app.subscriber_id(email)))
        .order(repermission_requests::campaign_id)
        .select(repermission_requests::status)
        .load(&mut app.conn())
        .expect("requests")
}

/// A reader whose message never reached them (its delivery failed) is not unsubscribed at the
/// deadline: they were never asked. One whose message was delivered and who did not answer is.
async fn undelivered_message_does_not_unsubscribe(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let [a, b, c, d] = two_digests_and_their_readers(&app, "fail").await;
    // Queued for an hour from now, so that the worker leaves them until the test says.
    let later = chrono::Utc::now().naive_utc() + chrono::Duration::hours(1);
    let campaign = repermission::start(&mut app.conn(), 2, 7, None, later).expect("start");
    assert_eq!(campaign.recipients, 2, "b and c are asked");
    let now = chrono::Utc::now().naive_utc();
    // c's message fails for good (as a refused address would); b's goes out.
    diesel::update(
        deliveries::table
            .filter(deliveries::kind.eq("repermission"))
            .filter(deliveries::subscriber_id.eq(app.subscriber_id(&c))),
    )
    .set((
        deliveries::status.eq("failed"),
        deliveries::finished_at.eq(Some(now)),
        deliveries::last_error.eq(Some("550 no such mailbox")),
    ))
    .execute(&mut app.conn())
    .expect("c's message fails");
    diesel::update(
        deliveries::table
            .filter(deliveries::kind.eq("repermission"))
            .filter(deliveries::subscriber_id.eq(app.subscriber_id(&b))),
    )
    .set(deliveries::next_attempt_at.eq(now))
    .execute(&mut app.conn())
    .expect("b's message is due");
    keep_link(&app, &b).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: String = deliveries::table
            .filter(deliveries::kind.eq("repermission"))
            .filter(deliveries::subscriber_id.eq(app.subscriber_id(&b)))
            .select(deliveries::status)
            .first(&mut app.conn())
            .expect("b's delivery");
        if status == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "b's delivery stays {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The deadline passes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let past = chrono::Utc::now().naive_utc();
    diesel::update(repermission_campaigns::table)
        .set(repermission_campaigns::deadline.eq(past))
        .execute(&mut app.conn())
        .expect("move the deadline");
    repermission::expire(&mut app.conn(), chrono::Utc::now().naive_utc()).expect("expire");
    assert_eq!(
        standing(&app, &b),
        ("unsubscribed".to_string(), Some("inactive".to_string())),
        "b was asked and did not answer"
    );
    assert_eq!(standing(&app, &c).0, "confirmed", "c was never asked");
    assert_eq!(requests_of(&app, &c), vec!["not_asked".to_string()]);
    for email in [&a, &d] {
        assert_eq!(standing(&app, email).0, "confirmed", "{email}");
    }
    let console = log_in(&app, true).await;
    let page = console
        .get("/admin/repermission")
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains(
            "<td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">1</td></tr>"
        ),
        "unsubscribed 1, left 0, not asked 1: {page}"
    );
}
on_both_backends!(
    undelivered_message_does_not_unsubscribe,
    super::undelivered_message_does_not_unsubscribe
);

/// Two starts at the same moment (a double click; on PostgreSQL both transactions look for
/// waiting readers before either writes) ask each inactive reader once, and one answer keeps
/// them whichever campaign's link they press.
async fn concurrent_starts_ask_each_reader_once(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let [_, b, c, _] = two_digests_and_their_readers(&app, "twice").await;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let (mut conn, barrier) = (app.conn(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                repermission::start(&mut conn, 2, 7, None, chrono::Utc::now().naive_utc())
                    .expect("start")
            })
        })
        .collect();
    let campaigns: Vec<_> = starts
        .into_iter()
        .map(|t| t.join().expect("a start"))
        .collect();
    assert_eq!(
        campaigns.iter().map(|c| c.recipients).sum::<i32>(),
        2,
        "b and c asked once between the two campaigns: {campaigns:?}"
    );
    for email in [&b, &c] {
        assert_eq!(
            requests_of(&app, email),
            vec!["waiting".to_string()],
            "{email}"
        );
        let messages: i64 = deliveries::table
            .filter(deliveries::kind.eq("repermission"))
            .filter(deliveries::subscriber_id.eq(app.subscriber_id(email)))
            .count()
            .get_result(&mut app.conn())
            .expect("deliveries");
        assert_eq!(messages, 1, "{email} gets one message");
    }
    // b answers: nothing of b's is left waiting for the expiry.
    let keep_b = keep_link(&app, &b).await;
    let kept = app.client.post(&keep_b).send().await.expect("POST keep");
    assert_eq!(kept.status(), 200);
    assert_eq!(requests_of(&app, &b), vec!["kept".to_string()]);
}
on_both_backends!(
    concurrent_starts_ask_each_reader_once,
    super::concurrent_starts_ask_each_reader_once
);
