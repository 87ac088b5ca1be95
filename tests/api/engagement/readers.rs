//! Personal mode and the reader: what the sign-up and preferences pages say, the reader's clicks
//! in their data download, erasure (the rows go, the counts stay), the console's last click, and
//! the inactive filter ("no click in the last N digests") in the console and the API.

use std::time::Duration;

use diesel::prelude::*;
use iria_news::foundation::db::schema::{digests, issues};
use iria_news::foundation::links::{Purpose, RecipientToken};

use super::support::{
    age_deliveries, app_in_mode, click, click_rows, counters, send_issue, tracked_links, BROWSER,
};
use crate::console::log_in;
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

/// What the pages say in `personal` mode, and only then.
const PER_READER: &str = "recorded for each reader";

/// Sends an issue to every confirmed reader as one digest does: the issue is queued, then
/// attached to a new `digests` row (`sent`), and every copy is waited for. Returns the issue.
pub async fn send_digest(app: &TestApp, period_key: &str) -> i64 {
    let queued = app.queue_issue(&format!("Digest {period_key}"), super::support::ISSUE_HTML);
    let now = chrono::Utc::now().naive_utc();
    let mut conn = app.conn();
    let digest_id: i64 = diesel::insert_into(digests::table)
        .values((
            digests::period_key.eq(period_key),
            digests::cutoff.eq(now),
            digests::articles.eq(1),
            digests::created_at.eq(now),
            digests::outcome.eq("sent"),
        ))
        .returning(digests::id)
        .get_result(&mut conn)
        .expect("digest row");
    diesel::update(issues::table.find(queued.issue_id))
        .set(issues::digest_id.eq(Some(digest_id)))
        .execute(&mut conn)
        .expect("attach the issue to its digest");
    app.wait_issue_done(queued.issue_id, Duration::from_secs(30))
        .await;
    queued.issue_id
}

/// The copy of `issue_id` received by `email`, its HTML part.
pub fn copy_html(app: &TestApp, email: &str, subject: &str) -> String {
    app.received_by(email)
        .into_iter()
        .find(|m| m.parsed().subject().unwrap_or_default() == subject)
        .unwrap_or_else(|| panic!("{email} received {subject:?}"))
        .html()
}

fn preferences_path(app: &TestApp, subscriber_id: i64) -> String {
    let token =
        RecipientToken::new(subscriber_id, 0).sign(Purpose::Preferences, app.settings.secret());
    format!("/preferences/{token}")
}

async fn consent_text_says_so_only_in_personal_mode(backend: Backend) {
    for mode in ["personal", "anonymous", "off"] {
        let Some(app) = app_in_mode(backend, mode, vec![]).await else {
            return;
        };
        let signup = app.get("/").await.text().await.expect("sign-up page");
        let (id, _) = app.add_confirmed("consent", 1)[0].clone();
        let prefs = app.get(&preferences_path(&app, id)).await;
        assert_eq!(prefs.status(), 200, "{mode}");
        let prefs = prefs.text().await.expect("preferences page");
        let personal = mode == "personal";
        assert_eq!(
            signup.contains(PER_READER),
            personal,
            "sign-up page, {mode}"
        );
        assert_eq!(
            prefs.contains(PER_READER),
            personal,
            "preferences page, {mode}"
        );
        if personal {
            for page in [&signup, &prefs] {
                assert!(
                    page.contains("erasing your data there deletes them"),
                    "{mode}"
                );
                assert!(page.contains("still want the"), "what for, {mode}");
            }
        }
        if mode == "anonymous" {
            assert!(signup.contains("without recording who clicked"));
        }
        if mode == "off" {
            assert!(!signup.contains("click"), "off: nothing about clicks");
            assert!(!prefs.contains("click"), "off: nothing about clicks");
        }
    }
}
on_both_backends!(
    consent_text_says_so_only_in_personal_mode,
    super::consent_text_says_so_only_in_personal_mode
);

/// (reader clicks, machine clicks) counted without a reader for the link to `url`.
fn counted(app: &TestApp, issue_id: i64, url: &str) -> (i64, i64) {
    counters(app, issue_id)
        .into_iter()
        .find(|(_, u, _, _)| u == url)
        .map(|(_, _, reader, machine)| (reader, machine))
        .unwrap_or_else(|| panic!("a link to {url}"))
}

const ONE: &str = "https://ir-ia.com/one?a=1&b=2";
const TWO: &str = "https://ir-ia.com/two";

async fn download_holds_the_clicks_and_erasure_keeps_the_counts(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "mine", 2).await;
    age_deliveries(&app, issue_id, 3600);
    // send_issue's readers: mine00000@example.org and mine00001@example.org.
    let reader_email = "mine00000@example.org";
    let reader = app.subscriber_id(reader_email);
    let other = app.subscriber_id("mine00001@example.org");
    // In each copy: one, two, three, two, then the hidden link.
    let mine = tracked_links(&copies[0].html());
    let theirs = tracked_links(&copies[1].html());
    for (link, url) in [(&mine[0], ONE), (&mine[1], TWO)] {
        let (status, location) = click(&app, link, BROWSER).await;
        assert_eq!((status, location.as_deref()), (302, Some(url)));
    }
    let (status, _) = click(&app, &theirs[0], BROWSER).await;
    assert_eq!(status, 302);
    app.flush_clicks().await;
    let rows = click_rows(&app, issue_id);
    assert_eq!(rows.len(), 3, "one row per click: {rows:?}");
    assert!(rows.iter().all(|(_, _, machine)| !machine), "{rows:?}");

    // The reader's download holds their two clicks, and only theirs.
    let link = app
        .data_link(&preferences_path(&app, reader), reader_email)
        .await;
    let download = app
        .client
        .post(format!("{link}/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    let data: serde_json::Value = download.json().await.expect("JSON");
    let clicks = data["clicks"].as_array().expect("clicks in the download");
    let urls: Vec<&str> = clicks.iter().filter_map(|c| c["url"].as_str()).collect();
    assert_eq!(urls, vec![ONE, TWO], "{data:#}");
    for c in clicks {
        assert_eq!(c["issue_id"], issue_id);
        assert_eq!(c["counted_as_machine"], false);
        assert!(c["clicked_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    // The console shows the reader's last click.
    let console = log_in(&app, true).await;
    let page = console
        .get(&format!("/admin/subscribers/{reader}"))
        .await
        .text()
        .await
        .expect("subscriber page");
    let at = page.find("id=\"last-click\">").expect("a last click") + 16;
    assert!(
        page[at..].starts_with("20"),
        "a date: {}",
        &page[at..at + 30]
    );
    let never = console
        .get(&format!("/admin/subscribers/{}", other + 100))
        .await;
    assert_eq!(never.status(), 404);

    // Erasure: the reader's rows go, their clicks stay in the link counts, the other reader's
    // rows stay as they were.
    assert_eq!(counted(&app, issue_id, ONE), (0, 0));
    let erased = console
        .post(&format!("/admin/subscribers/{reader}/erase"), &[])
        .await;
    assert_eq!(erased.status(), 303);
    let rows = click_rows(&app, issue_id);
    assert_eq!(
        rows.len(),
        1,
        "only the other reader's row is left: {rows:?}"
    );
    assert_eq!(counted(&app, issue_id, ONE), (1, 0));
    assert_eq!(counted(&app, issue_id, TWO), (1, 0));
    let other_copy: i64 = {
        use iria_news::foundation::db::schema::deliveries;
        deliveries::table
            .filter(deliveries::issue_id.eq(issue_id))
            .filter(deliveries::subscriber_id.eq(other))
            .select(deliveries::id)
            .first(&mut app.conn())
            .expect("the other copy")
    };
    assert_eq!(rows[0].0, other_copy, "the row left is the other reader's");
    let clicks_on_one = counted(&app, issue_id, ONE).0
        + rows.iter().filter(|(_, p, m)| !m && *p == 1).count() as i64;
    assert_eq!(
        clicks_on_one, 2,
        "the editors' total for the first link is unchanged"
    );
}
on_both_backends!(
    download_holds_the_clicks_and_erasure_keeps_the_counts,
    super::download_holds_the_clicks_and_erasure_keeps_the_counts
);

/// The addresses of an API subscriber list.
fn emails_of(list: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["email"].as_str().expect("email").to_string())
        .collect();
    out.sort();
    out
}

async fn api_list(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/api/v1/subscribers?{query}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v1/subscribers")
}

/// Two digests to readers a, b and c, and a third reader d who joined between them. a clicks a
/// link of the second; b's only click comes in the first seconds after delivery (a mail
/// scanner's); c clicks nothing. Returns the readers' addresses.
pub async fn two_digests_and_their_readers(app: &TestApp, prefix: &str) -> [String; 4] {
    let first = app.add_confirmed(&format!("{prefix}-a"), 3);
    send_digest(app, &format!("{prefix}-1")).await;
    let late = app.add_confirmed(&format!("{prefix}-d"), 1);
    let second = send_digest(app, &format!("{prefix}-2")).await;
    let subject = format!("Digest {prefix}-2");
    let (a, b, c, d) = (&first[0].1, &first[1].1, &first[2].1, &late[0].1);
    for email in [a, b, c, d] {
        app.wait_for_mail_with_subject(email, &subject, 1).await;
    }
    // Seconds after delivery: a machine's click, whoever it names.
    let (status, _) = click(
        app,
        &tracked_links(&copy_html(app, b, &subject))[0],
        BROWSER,
    )
    .await;
    assert_eq!(status, 302);
    app.flush_clicks().await;
    age_deliveries(app, second, 3600);
    let (status, _) = click(
        app,
        &tracked_links(&copy_html(app, a, &subject))[1],
        BROWSER,
    )
    .await;
    assert_eq!(status, 302);
    app.flush_clicks().await;
    let rows = click_rows(app, second);
    assert_eq!(
        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        vec![true, false],
        "b's click a machine's, a's a reader's: {rows:?}"
    );
    [a.clone(), b.clone(), c.clone(), d.clone()]
}

async fn inactive_filter_in_the_console_and_the_api(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let [a, b, c, d] = two_digests_and_their_readers(&app, "idle").await;
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "tests").expect("token");

    let list = |n: u32| {
        let (app, token) = (&app, &token);
        async move {
            let response = api_list(app, token, &format!("inactive_digests={n}")).await;
            assert_eq!(response.status(), 200, "N = {n}");
            let body: serde_json::Value = response.json().await.expect("JSON");
            (body["total"].as_i64().expect("total"), emails_of(&body))
        }
    };
    // The last two digests: a clicked, d joined after the first; b and c did not click.
    assert_eq!(list(2).await, (2, vec![b.clone(), c.clone()]));
    // The last one: d received it and did not click either.
    let mut last = vec![b.clone(), c.clone(), d.clone()];
    last.sort();
    assert_eq!(list(1).await, (3, last));
    // Only two digests went out: nobody was sent three.
    assert_eq!(list(3).await, (0, vec![]));
    // The filter narrows the others, and they narrow it.
    let response = api_list(&app, &token, "inactive_digests=2&q=idle-a00002").await;
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(emails_of(&body), vec![c.clone()]);
    for bad in ["0", "53"] {
        let response = api_list(&app, &token, &format!("inactive_digests={bad}")).await;
        assert_eq!(response.status(), 400, "inactive_digests={bad}");
    }

    // A reader who unsubscribes is no longer in the segment.
    let console = log_in(&app, true).await;
    let page = console
        .get("/admin/subscribers?inactive=2")
        .await
        .text()
        .await
        .expect("list");
    assert!(page.contains("2 subscriber(s)"), "{page}");
    for (email, listed) in [(&a, false), (&b, true), (&c, true), (&d, false)] {
        assert_eq!(
            page.contains(email.as_str()),
            listed,
            "{email} in the console's list"
        );
    }
    assert!(
        page.contains("id=\"inactive\""),
        "the filter's field in personal mode"
    );
    assert!(page.contains("/admin/repermission?inactive=2"));
    let csv = console
        .get("/admin/subscribers/export.csv?inactive=2")
        .await
        .text()
        .await
        .expect("CSV");
    assert_eq!(csv.lines().count(), 3, "header and two readers: {csv}");
    iria_news::stores::subscriptions::records::unsubscribe(
        &mut app.conn(),
        app.subscriber_id(&c),
        "test",
    )
    .expect("unsubscribe");
    assert_eq!(list(2).await, (1, vec![b.clone()]));
}
on_both_backends!(
    inactive_filter_in_the_console_and_the_api,
    super::inactive_filter_in_the_console_and_the_api
);

async fn inactive_filter_is_refused_outside_personal_mode(backend: Backend) {
    for mode in ["anonymous", "off"] {
        let Some(app) = app_in_mode(backend, mode, vec![]).await else {
            return;
        };
        app.add_confirmed("refused", 2);
        let token = iria_news::stores::api_tokens::create(&mut app.conn(), "tests").expect("token");
        let response = api_list(&app, &token, "inactive_digests=2").await;
        assert_eq!(response.status(), 400, "{mode}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{mode}"
        );
        let problem: serde_json::Value = response.json().await.expect("problem details");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains("IRIA_CLICK_TRACKING=personal"), "{detail}");
        // Without the filter, the list is as ever.
        let response = api_list(&app, &token, "").await;
        assert_eq!(response.status(), 200);

        let console = log_in(&app, true).await;
        let response = console.get("/admin/subscribers?inactive=2").await;
        assert_eq!(response.status(), 400, "{mode}");
        let page = response.text().await.expect("page");
        assert!(page.contains("IRIA_CLICK_TRACKING=personal"), "{page}");
        assert!(
            !page.contains("id=\"inactive\""),
            "no filter field outside personal mode"
        );
        let form = console
            .post(
                "/admin/repermission",
                &[("inactive_digests", "2"), ("days", "7")],
            )
            .await;
        assert_eq!(form.status(), 400, "{mode}: re-permission refused");
        assert!(form
            .text()
            .await
            .expect("page")
            .contains("IRIA_CLICK_TRACKING=personal"));
        assert_eq!(app.count_deliveries(), 0, "{mode}: nothing queued");
    }
}
on_both_backends!(
    inactive_filter_is_refused_outside_personal_mode,
    super::inactive_filter_is_refused_outside_personal_mode
);

/// A digest sent before the switch to `personal` (here in `anonymous` mode, through the same
/// composing as ever) left no click rows: it does not count. Asking for more digests than were
/// sent in `personal` mode selects nobody, and the console says why.
async fn digests_sent_in_another_mode_do_not_count(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let readers = app.add_confirmed("mixed", 2);
    let (a, b) = (&readers[0].1, &readers[1].1);
    // The first digest, composed and queued while clicks were anonymous.
    let mut anonymous = app.settings.clone();
    anonymous.click_tracking = iria_news::foundation::config::ClickTracking::Anonymous;
    let draft = iria_news::stores::issues::Draft {
        kind: iria_news::stores::issues::Kind::Announcement,
        subject: "Digest mixed-1".into(),
        preheader: String::new(),
        body_html: super::support::ISSUE_HTML.into(),
        body_text: None,
        topics: Vec::new(),
        period_key: None,
        idempotency_key: None,
    };
    let first =
        iria_news::processes::compose::create_and_queue(&mut app.conn(), &anonymous, &draft)
            .expect("queue the anonymous issue");
    let now = chrono::Utc::now().naive_utc();
    let digest_id: i64 = diesel::insert_into(digests::table)
        .values((
            digests::period_key.eq("mixed-1"),
            digests::cutoff.eq(now),
            digests::articles.eq(1),
            digests::created_at.eq(now),
            digests::outcome.eq("sent"),
        ))
        .returning(digests::id)
        .get_result(&mut app.conn())
        .expect("digest row");
    diesel::update(issues::table.find(first.issue_id))
        .set(issues::digest_id.eq(Some(digest_id)))
        .execute(&mut app.conn())
        .expect("attach the issue to its digest");
    app.wait_issue_done(first.issue_id, Duration::from_secs(30))
        .await;
    // The second in personal mode: a clicks, b does not.
    let second = send_digest(&app, "mixed-2").await;
    app.wait_for_mail_with_subject(a, "Digest mixed-2", 1).await;
    age_deliveries(&app, second, 3600);
    let (status, _) = click(
        &app,
        &tracked_links(&copy_html(&app, a, "Digest mixed-2"))[1],
        BROWSER,
    )
    .await;
    assert_eq!(status, 302);
    app.flush_clicks().await;

    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "tests").expect("token");
    let list = |n: u32| {
        let (app, token) = (&app, &token);
        async move {
            let response = api_list(app, token, &format!("inactive_digests={n}")).await;
            assert_eq!(response.status(), 200, "N = {n}");
            let body: serde_json::Value = response.json().await.expect("JSON");
            emails_of(&body)
        }
    };
    assert_eq!(list(1).await, vec![b.clone()], "the personal digest: b");
    assert_eq!(
        list(2).await,
        Vec::<String>::new(),
        "one digest went out with per-reader clicks: b's clicks on the first are unknown"
    );
    let console = log_in(&app, true).await;
    let page = console
        .get("/admin/subscribers?inactive=2")
        .await
        .text()
        .await
        .expect("list");
    assert!(
        page.contains("Only 1 digest(s) were sent with per-reader clicks"),
        "{page}"
    );
    let page = console
        .get("/admin/repermission?inactive=2")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("id=\"segment\">0<"), "{page}");
    assert!(
        page.contains("Only 1 digest(s) were sent with per-reader clicks"),
        "{page}"
    );
    let page = console
        .get("/admin/repermission?inactive=1")
        .await
        .text()
        .await
        .expect("page");
    assert!(!page.contains("too-few-digests"), "{page}");
}
on_both_backends!(
    digests_sent_in_another_mode_do_not_count,
    super::digests_sent_in_another_mode_do_not_count
);
