//! The audit log (issue 14): the rows each console and API action leaves (send, schedule, test
//! copy with its address, digest run and skip, export, import, erasure without the address,
//! unsubscribe), the console page and its filters, `GET /api/v1/audit` behind `audit:read`, and
//! the retention that deletes old rows.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use iria_news::foundation::access::{Role, Scope};
use iria_news::foundation::db::schema::{audit_log, subscribers};
use iria_news::stores::api_tokens;
use iria_news::stores::audit::{self, Entry, Filter};

use super::accounts::{audit_details, log_in_as, ALICE, SECRET};
use crate::console::{log_in, EDITOR};
use crate::helpers::{spawn_app, spawn_app_with, AppOptions, Backend, TestApp, TestDb};
use crate::on_both_backends;

/// Every row of the log, as (actor, ip, action, detail).
fn all_rows(app: &TestApp) -> Vec<(String, String, String, String)> {
    audit::list(&mut app.conn(), &Filter::default(), 1000, 0)
        .expect("audit")
        .into_iter()
        .map(|r| (r.entry.actor, r.entry.ip, r.entry.action, r.entry.detail))
        .collect()
}

fn email_of(app: &TestApp, id: i64) -> String {
    subscribers::table
        .find(id)
        .select(subscribers::email)
        .first::<String>(&mut app.conn())
        .expect("subscriber")
}

on_both_backends!(
    console_actions_leave_their_rows,
    super::console_actions_leave_their_rows
);
async fn console_actions_leave_their_rows(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    let by = format!("editor {EDITOR}");

    // An import: the rows it accepted.
    let imported = console
        .import_and_wait(
            "email,name\nfirst.reader@example.org,First\nsecond.reader@example.org,Second\nnot-an-address,X\n",
            "2026 conference sheet",
            "held",
        )
        .await;
    assert!(imported.contains("data-status=\"done\""), "{imported}");
    let rows = audit_details(&app, "subscribers import queued");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, by);
    assert!(rows[0].1.contains("3 rows"), "{rows:?}");
    let rows = audit_details(&app, "subscribers imported");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, by);
    assert!(rows[0].1.starts_with("2 rows accepted"), "{rows:?}");
    assert!(rows[0].1.contains("1 refused"), "{rows:?}");

    // An export: how many rows.
    let export = console.get("/admin/subscribers/export.csv").await;
    assert_eq!(export.status(), 200);
    assert_eq!(
        audit_details(&app, "subscribers exported"),
        vec![(by.clone(), "2 rows".to_string())]
    );

    // A test copy: to which address.
    let test = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Weekly note"),
                ("body", "Hello *readers*"),
                ("action", "test"),
                ("test_address", "desk@iria.test"),
            ],
        )
        .await;
    assert_eq!(test.status(), 200);
    let rows = audit_details(&app, "test copy sent");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1.contains("desk@iria.test"), "{rows:?}");

    // A send and a schedule: the issue, its subject, recipients or time.
    let sent = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Sanctions explained"),
                ("body", "The new package."),
                ("idempotency_key", "send-1"),
                ("action", "send"),
            ],
        )
        .await;
    assert_eq!(sent.status(), 303);
    let issue_id = sent.headers()["location"]
        .to_str()
        .expect("location")
        .trim_start_matches("/admin/issues/")
        .to_string();
    assert_eq!(
        audit_details(&app, "issue sent"),
        vec![(
            by.clone(),
            format!("issue {issue_id} \"Sanctions explained\" to 2 recipients")
        )]
    );
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    let scheduled = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Terrorism brief"),
                ("body", "For the desk."),
                ("send_at", &later.format("%Y-%m-%dT%H:%M").to_string()),
                ("idempotency_key", "schedule-1"),
                ("action", "schedule"),
            ],
        )
        .await;
    assert_eq!(scheduled.status(), 303);
    let rows = audit_details(&app, "issue scheduled");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].1.contains("\"Terrorism brief\" for "), "{rows:?}");
    // A draft kept for later is no send.
    let draft = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Just a draft"),
                ("body", "Later."),
                ("idempotency_key", "draft-1"),
                ("action", "draft"),
            ],
        )
        .await;
    assert_eq!(draft.status(), 303);
    assert_eq!(audit_details(&app, "issue sent").len(), 1);
    assert_eq!(audit_details(&app, "issue scheduled").len(), 1);

    // The digest: skipped, then run (which finds it done).
    assert_eq!(console.post("/admin/digest/skip", &[]).await.status(), 303);
    let skipped = audit_details(&app, "digest skipped");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].1.starts_with("the digest of period "),
        "{skipped:?}"
    );
    assert_eq!(console.post("/admin/digest/send", &[]).await.status(), 303);
    assert_eq!(audit_details(&app, "digest run").len(), 1);

    // Unsubscribe and erasure, by id; the erased reader's address is nowhere in the log.
    let ids: Vec<(i64, String)> = subscribers::table
        .order(subscribers::id)
        .select((subscribers::id, subscribers::email))
        .load(&mut app.conn())
        .expect("subscribers");
    let (first, second) = (ids[0].0, ids[1].0);
    let out = console
        .post(&format!("/admin/subscribers/{second}/unsubscribe"), &[])
        .await;
    assert_eq!(out.status(), 303);
    assert_eq!(
        audit_details(&app, "subscriber unsubscribed"),
        vec![(by.clone(), format!("subscriber {second}"))]
    );
    // A test copy once went to the reader's own address: the erasure takes it out of that row.
    let to_reader = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Weekly note"),
                ("body", "Hello"),
                ("action", "test"),
                ("test_address", "First.Reader@example.org"),
            ],
        )
        .await;
    assert_eq!(to_reader.status(), 200);
    let copies = audit_details(&app, "test copy sent");
    assert!(
        copies
            .iter()
            .any(|(_, d)| d.to_ascii_lowercase().contains("first.reader@example.org")),
        "{copies:?}"
    );
    let erased = console
        .post(&format!("/admin/subscribers/{first}/erase"), &[])
        .await;
    assert_eq!(erased.status(), 303);
    assert_eq!(ids[0].1, "first.reader@example.org");
    assert!(!email_of(&app, first).contains("first.reader"), "erased");
    assert_eq!(
        audit_details(&app, "subscriber erased"),
        vec![(by.clone(), format!("subscriber {first}"))]
    );
    let rows = all_rows(&app);
    assert!(
        rows.iter()
            .all(|(a, _, _, d)| !a.contains("first.reader") && !d.contains("first.reader")),
        "the log keeps no erased address: {rows:?}"
    );
    let copies = audit_details(&app, "test copy sent");
    assert_eq!(copies.len(), 2, "the test copy's row stays: {copies:?}");
    assert!(
        copies[..]
            .iter()
            .any(|(_, d)| d.contains(iria_news::stores::audit::ERASED_ADDRESS)),
        "{copies:?}"
    );
    // Every row of the console names the editor and the address the request came from.
    for (actor, ip, action, _) in &rows {
        if action != "login" {
            assert_eq!(
                (actor.as_str(), ip.as_str()),
                (by.as_str(), "127.0.0.1"),
                "{action}"
            );
        }
    }

    // The console page (admins): filters by action, by dates; 403 for other roles.
    let page = console.get("/admin/audit?action=issue+sent").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(html.contains("Sanctions explained"), "{html}");
    assert!(!html.contains("subscriber erased") && !html.contains("Terrorism brief"));
    let page = console
        .get(&format!(
            "/admin/audit?actor=editor+{EDITOR}&action=subscriber+erased"
        ))
        .await;
    let html = page.text().await.expect("body");
    assert!(html.contains(&format!("subscriber {first}")));
    assert!(!html.contains("Sanctions explained"));
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today + chrono::Duration::days(1);
    let page = console
        .get(&format!("/admin/audit?from={today}&to={today}"))
        .await;
    let html = page.text().await.expect("body");
    assert!(html.contains("Sanctions explained") && html.contains("subscriber erased"));
    let page = console.get(&format!("/admin/audit?from={tomorrow}")).await;
    let html = page.text().await.expect("body");
    assert!(html.contains("Nothing matches.") && !html.contains("Sanctions explained"));
    let bad = console.get("/admin/audit?from=last+week").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("body").contains("YYYY-MM-DD"));
    // Paging: 50 a page, the latest first.
    for i in 0..60 {
        audit::record(
            &mut app.conn(),
            &Entry::new("operator", "", "paging").detail(format!("entry {i:02}")),
        )
        .expect("record");
    }
    let html = console
        .get("/admin/audit?action=paging")
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("entry 59") && html.contains("entry 10") && !html.contains("entry 09"));
    assert!(html.contains("page=2"), "a link to the next page");
    let html = console
        .get("/admin/audit?action=paging&page=2")
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("entry 09") && html.contains("entry 00") && !html.contains("entry 10"));

    iria_news::stores::editors::create_with_role(
        &mut app.conn(),
        ALICE,
        SECRET,
        Some(Role::Editor),
    )
    .expect("alice");
    let alice = log_in_as(&app, ALICE, SECRET, "Alice browser").await;
    assert_eq!(alice.get("/admin/audit").await.status(), 403);
}

async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("API request")
}

on_both_backends!(
    api_actions_leave_their_rows_and_the_log_needs_audit_read,
    super::api_actions_leave_their_rows_and_the_log_needs_audit_read
);
async fn api_actions_leave_their_rows_and_the_log_needs_audit_read(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let readers = app.add_confirmed("reader", 2);
    let cms = api_tokens::create(&mut app.conn(), "cms").expect("token");
    let by = "token cms".to_string();
    let post = reqwest::Method::POST;

    let sent = api(
        &app,
        post.clone(),
        "/api/v1/issues",
        &cms,
        Some(serde_json::json!({"subject": "Briefing", "body": "Now.", "send": true})),
    )
    .await;
    assert_eq!(sent.status(), 201);
    let sent_id = sent.json::<serde_json::Value>().await.expect("json")["id"].clone();
    let at = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let scheduled = api(
        &app,
        post.clone(),
        "/api/v1/issues",
        &cms,
        Some(serde_json::json!({"subject": "Tomorrow", "body": "Later.", "send_at": at})),
    )
    .await;
    assert_eq!(scheduled.status(), 201);
    let draft = api(
        &app,
        post.clone(),
        "/api/v1/issues",
        &cms,
        Some(serde_json::json!({"subject": "Draft", "body": "Some day."})),
    )
    .await;
    assert_eq!(draft.status(), 201);
    let draft_id = draft.json::<serde_json::Value>().await.expect("json")["id"].clone();
    let send_draft = api(
        &app,
        post.clone(),
        &format!("/api/v1/issues/{draft_id}/send"),
        &cms,
        None,
    )
    .await;
    assert_eq!(send_draft.status(), 200);
    let run = api(&app, post.clone(), "/api/v1/digest/run", &cms, None).await;
    assert_eq!(run.status(), 200);
    let dry = api(
        &app,
        post.clone(),
        "/api/v1/digest/run?dry_run=true",
        &cms,
        None,
    )
    .await;
    assert_eq!(dry.status(), 200);
    let (first, first_email) = readers[0].clone();
    let (second, _) = readers[1].clone();
    let out = api(
        &app,
        post.clone(),
        &format!("/api/v1/subscribers/{second}/unsubscribe"),
        &cms,
        None,
    )
    .await;
    assert_eq!(out.status(), 200);
    let erased = api(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/subscribers/{first}"),
        &cms,
        None,
    )
    .await;
    assert_eq!(erased.status(), 204);

    let sent_rows = audit_details(&app, "issue sent");
    assert!(
        sent_rows.contains(&(
            by.clone(),
            format!("issue {sent_id} \"Briefing\" to 2 recipients")
        )),
        "{sent_rows:?}"
    );
    assert!(
        sent_rows.contains(&(
            by.clone(),
            format!("issue {draft_id} \"Draft\" to 2 recipients")
        )),
        "{sent_rows:?}"
    );
    assert_eq!(
        sent_rows.len(),
        2,
        "the draft itself is no send: {sent_rows:?}"
    );
    let scheduled_rows = audit_details(&app, "issue scheduled");
    assert_eq!(scheduled_rows.len(), 1);
    assert!(
        scheduled_rows[0].1.contains("\"Tomorrow\" for "),
        "{scheduled_rows:?}"
    );
    assert_eq!(
        audit_details(&app, "digest run").len(),
        1,
        "a dry run sends nothing and is not noted"
    );
    assert_eq!(
        audit_details(&app, "subscriber unsubscribed"),
        vec![(by.clone(), format!("subscriber {second}"))]
    );
    assert_eq!(
        audit_details(&app, "subscriber erased"),
        vec![(by.clone(), format!("subscriber {first}"))]
    );
    let rows = all_rows(&app);
    assert!(
        rows.iter()
            .all(|(a, _, _, d)| !a.contains(&first_email) && !d.contains(&first_email)),
        "the log keeps no erased address: {rows:?}"
    );
    assert!(
        rows.iter().all(|(_, ip, _, _)| ip == "127.0.0.1"),
        "{rows:?}"
    );

    // The log over the API: only with audit:read.
    let reader = api_tokens::create_scoped(
        &mut app.conn(),
        "reporting",
        &[Scope::IssuesRead, Scope::SubscribersRead],
        None,
        None,
    )
    .expect("token");
    let refused = api(&app, reqwest::Method::GET, "/api/v1/audit", &reader, None).await;
    assert_eq!(refused.status(), 403);
    let problem: serde_json::Value = refused.json().await.expect("problem");
    assert_eq!(problem["scope"], "audit:read", "{problem}");
    let anonymous = app.get("/api/v1/audit").await;
    assert_eq!(anonymous.status(), 401);
    let auditor =
        api_tokens::create_scoped(&mut app.conn(), "auditor", &[Scope::AuditRead], None, None)
            .expect("token");
    let get = |query: String| {
        let (app, auditor) = (&app, auditor.clone());
        async move {
            let r = api(
                app,
                reqwest::Method::GET,
                &format!("/api/v1/audit{query}"),
                &auditor,
                None,
            )
            .await;
            assert_eq!(r.status(), 200, "{query}");
            r.json::<serde_json::Value>().await.expect("json")["items"]
                .as_array()
                .expect("items")
                .clone()
        }
    };
    let everything = get(String::new()).await;
    assert_eq!(everything.len(), rows.len());
    let latest = &everything[0];
    assert_eq!(latest["action"], "subscriber erased");
    assert_eq!(latest["actor"], "token cms");
    assert_eq!(latest["ip"], "127.0.0.1");
    assert_eq!(latest["detail"], format!("subscriber {first}"));
    assert!(
        latest["at"].as_str().expect("at").ends_with('Z'),
        "{latest}"
    );
    let sends = get("?action=issue%20sent".into()).await;
    assert_eq!(sends.len(), 2);
    assert!(sends.iter().all(|e| e["action"] == "issue sent"));
    assert_eq!(get("?actor=token%20cms&limit=1".into()).await.len(), 1);
    assert_eq!(get("?actor=token%20other".into()).await.len(), 0);
    let offset = get("?offset=1".into()).await;
    assert_eq!(offset[0]["id"], everything[1]["id"]);
    let future = url::form_urlencoded::byte_serialize(
        (chrono::Utc::now() + chrono::Duration::hours(1))
            .to_rfc3339()
            .as_bytes(),
    )
    .collect::<String>();
    assert_eq!(get(format!("?since={future}")).await.len(), 0);
    assert_eq!(get(format!("?until={future}")).await.len(), rows.len());
    let bad = api(
        &app,
        reqwest::Method::GET,
        "/api/v1/audit?limit=0",
        &auditor,
        None,
    )
    .await;
    assert_eq!(bad.status(), 400);
}

on_both_backends!(
    old_rows_go_after_the_retention,
    super::old_rows_go_after_the_retention
);
async fn old_rows_go_after_the_retention(backend: Backend) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    {
        let mut conn = db.connect();
        iria_news::foundation::db::migrate(&mut conn).expect("migrate");
        let now = iria_news::foundation::db::now();
        for (detail, age) in [("old", 31), ("recent", 29)] {
            audit::record(
                &mut conn,
                &Entry::new("operator", "", "retention test").detail(detail),
            )
            .expect("record");
            diesel::update(audit_log::table.filter(audit_log::detail.eq(detail)))
                .set(audit_log::at.eq(now - chrono::Duration::days(age)))
                .execute(&mut conn)
                .expect("set back");
        }
    }
    let Some(app) = spawn_app_with(
        backend,
        AppOptions {
            db: Some(db),
            env: vec![("IRIA_AUDIT_RETENTION_DAYS", "30".into())],
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let details = || -> Vec<String> {
        audit_details(&app, "retention test")
            .into_iter()
            .map(|(_, d)| d)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while details().len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        details(),
        vec!["recent".to_string()],
        "a row older than IRIA_AUDIT_RETENTION_DAYS goes, a younger one stays"
    );
}
