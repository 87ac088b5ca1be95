//! Scoped API tokens over the API's route table: every route with a scope refuses a token that
//! holds every other scope (403 naming the scope, nothing done) and lets in one holding just that
//! scope; tokens made before scopes keep full access; expired and revoked tokens are refused.

use diesel::prelude::*;
use iria_news::foundation::access::Scope;
use iria_news::foundation::db::schema::{api_tokens, issues};
use iria_news::stores::api_tokens as tokens;

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

/// A token named `name` holding `scopes`.
pub fn token_with(app: &TestApp, name: &str, scopes: &[Scope]) -> String {
    tokens::create_scoped(&mut app.conn(), name, scopes, None, None).expect("token")
}

/// Calls the API with a bearer token (if any) and a JSON body (if any).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut request = app
        .client
        .request(method, format!("{}{}", app.address, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// Asserts a 403 problem naming `scope`.
pub async fn assert_refused_for(response: reqwest::Response, scope: Scope, what: &str) {
    assert_eq!(response.status(), 403, "{what}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let body: serde_json::Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], 403, "{what}: {body}");
    assert_eq!(body["scope"], scope.as_str(), "{what}: {body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(scope.as_str())),
        "{what}: {body}"
    );
}

/// A route's path with its `{id}` filled in with an id that exists where one is at hand.
fn concrete(path: &str, subscriber: i64, issue: i64) -> String {
    if path.starts_with("/api/v1/subscribers/") {
        path.replace("{id}", &subscriber.to_string())
    } else if path.starts_with("/api/v1/issues/") {
        path.replace("{id}", &issue.to_string())
    } else {
        path.replace("{id}", "1")
    }
}

/// A harmless body for a route: empty JSON (refused as invalid at worst).
fn body_for(method: &str) -> Option<serde_json::Value> {
    matches!(method, "post" | "patch").then(|| serde_json::json!({}))
}

fn issue_count(app: &TestApp) -> i64 {
    issues::table
        .count()
        .get_result(&mut app.conn())
        .expect("count")
}

async fn every_scoped_route_refuses_the_other_scopes_and_takes_its_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let queued = app.queue_issue("Queued already", "<p>x</p>");
    let (subscriber, issue) = (people[0].0, queued.issue_id);
    let routes = iria_news::http::api::routes::ROUTES;
    let mut checked = Vec::new();
    for (method, path, scope) in routes {
        let Some(scope) = scope else { continue };
        let path = concrete(path, subscriber, issue);
        let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| s != scope).collect();
        let all_but = token_with(&app, "all-but", &others);
        let response = call(&app, method, &path, Some(&all_but), body_for(method)).await;
        assert_refused_for(
            response,
            *scope,
            &format!("{method} {path} without {scope}"),
        )
        .await;
        checked.push(*scope);
    }
    // Nothing was done by the refused requests: the subscriber and the issue are as they were.
    assert_eq!(app.count_subscribers(), 1);
    assert_eq!(
        app.subscriber(&people[0].1).expect("still there").0,
        "confirmed"
    );
    assert_eq!(issue_count(&app), 1);
    for (method, path, scope) in routes {
        let Some(scope) = scope else { continue };
        let path = concrete(path, subscriber, issue);
        let own = token_with(&app, "own", &[*scope]);
        let response = call(&app, method, &path, Some(&own), body_for(method)).await;
        let status = response.status().as_u16();
        assert!(
            status != 401 && status != 403 && status < 500,
            "{method} {path} with just {scope}: {status}"
        );
    }
    for scope in Scope::ALL {
        if scope == Scope::MetricsRead || scope == Scope::AuditRead {
            continue; // /metrics is not under /api/v1; the audit route is added by its own part
        }
        assert!(
            checked.contains(&scope),
            "no route of the table needs {scope}"
        );
    }
}
on_both_backends!(
    every_scoped_route_refuses_the_other_scopes_and_takes_its_own,
    super::every_scoped_route_refuses_the_other_scopes_and_takes_its_own
);

async fn legacy_tokens_keep_full_access_and_expired_or_revoked_ones_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // A token made before scopes: its scopes column is NULL.
    let legacy = tokens::create(&mut app.conn(), "legacy").expect("token");
    diesel::update(api_tokens::table.filter(api_tokens::name.eq("legacy")))
        .set(api_tokens::scopes.eq(None::<String>))
        .execute(&mut app.conn())
        .expect("clear the scopes");
    let listed = tokens::list(&mut app.conn()).expect("list");
    assert_eq!(
        listed[0].grant,
        iria_news::foundation::access::Grant::Legacy
    );
    for (method, path, scope) in iria_news::http::api::routes::ROUTES {
        if scope.is_none() {
            continue;
        }
        let path = path.replace("{id}", "1");
        let response = call(&app, method, &path, Some(&legacy), body_for(method)).await;
        let status = response.status().as_u16();
        assert!(
            status != 401 && status != 403 && status < 500,
            "{method} {path} with a legacy token: {status}"
        );
    }

    // An expired token: 401, as an unknown one; one that expires later works.
    let past = iria_news::foundation::db::now() - chrono::Duration::minutes(1);
    let future = iria_news::foundation::db::now() + chrono::Duration::days(1);
    let read = [Scope::IssuesRead];
    let expired =
        tokens::create_scoped(&mut app.conn(), "expired", &read, Some(past), None).expect("token");
    let current = tokens::create_scoped(&mut app.conn(), "current", &read, Some(future), None)
        .expect("token");
    let response = call(&app, "get", "/api/v1/issues", Some(&expired), None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = call(&app, "get", "/api/v1/issues", Some(&current), None).await;
    assert_eq!(response.status(), 200);

    // A revoked token: 401 from then on.
    let revocable = token_with(&app, "revocable", &read);
    let response = call(&app, "get", "/api/v1/issues", Some(&revocable), None).await;
    assert_eq!(response.status(), 200);
    let id = tokens::list(&mut app.conn())
        .expect("list")
        .into_iter()
        .find(|t| t.name == "revocable")
        .expect("listed")
        .id;
    assert_eq!(
        tokens::revoke(&mut app.conn(), id)
            .expect("revoke")
            .as_deref(),
        Some("revocable")
    );
    let response = call(&app, "get", "/api/v1/issues", Some(&revocable), None).await;
    assert_eq!(response.status(), 401);
}
on_both_backends!(
    legacy_tokens_keep_full_access_and_expired_or_revoked_ones_are_refused,
    super::legacy_tokens_keep_full_access_and_expired_or_revoked_ones_are_refused
);

async fn sending_while_creating_an_issue_needs_issues_send(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.add_confirmed("reader", 1);
    let write = token_with(&app, "writer", &[Scope::IssuesWrite]);
    let issue = |send: bool| serde_json::json!({"subject": "This week", "body": "Hello **readers**", "send": send});
    let response = call(
        &app,
        "post",
        "/api/v1/issues",
        Some(&write),
        Some(issue(true)),
    )
    .await;
    assert_refused_for(response, Scope::IssuesSend, "send=true with issues:write").await;
    let scheduled = serde_json::json!({
        "subject": "Later", "body": "Hello", "send_at": "2099-01-01T08:00:00Z"
    });
    let response = call(
        &app,
        "post",
        "/api/v1/issues",
        Some(&write),
        Some(scheduled),
    )
    .await;
    assert_refused_for(response, Scope::IssuesSend, "send_at with issues:write").await;
    assert_eq!(issue_count(&app), 0, "a refused send makes no issue");
    assert_eq!(app.count_deliveries(), 0);
    // A draft is within issues:write.
    let response = call(
        &app,
        "post",
        "/api/v1/issues",
        Some(&write),
        Some(issue(false)),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(issue_count(&app), 1);
    assert_eq!(app.count_deliveries(), 0);
    // Sending needs both.
    let both = token_with(&app, "sender", &[Scope::IssuesWrite, Scope::IssuesSend]);
    let response = call(
        &app,
        "post",
        "/api/v1/issues",
        Some(&both),
        Some(issue(true)),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(issue_count(&app), 2);
}
on_both_backends!(
    sending_while_creating_an_issue_needs_issues_send,
    super::sending_while_creating_an_issue_needs_issues_send
);
