//! The JSON API (issue 6): every route behind its token, the OpenAPI document against the live
//! routes, schemathesis throwing valid and malformed input at them, and the API's own flows.

use std::process::Command;
use std::time::Duration;

use crate::helpers::{spawn_app, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

fn token(app: &TestApp) -> String {
    iria_news::stores::api_tokens::create(&mut app.conn(), "tests").expect("token")
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
}

async fn call(
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

on_both_backends!(
    every_api_route_answers_401_without_a_token,
    super::every_api_route_answers_401_without_a_token
);
async fn every_api_route_answers_401_without_a_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let routes = iria_news::http::api::routes::ROUTES;
    assert!(routes.len() >= 15);
    for (method, path, scope) in routes {
        if scope.is_none() {
            continue;
        }
        for token in [None, Some("iria_not-a-real-token")] {
            let response = call(&app, method, &concrete(path), token, None).await;
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
    }
    assert_eq!(app.count_subscribers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_live_routes() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc: serde_json::Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    let mut table: Vec<(String, String)> = iria_news::http::api::routes::ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    table.sort();
    assert_eq!(documented, table, "the document and the route table differ");
    // The topics of this installation are the allowed values.
    let allowed =
        &doc["components"]["schemas"]["NewIssue"]["properties"]["topics"]["items"]["enum"];
    assert_eq!(allowed, &serde_json::json!(app.settings.topics));
    // Each documented route is live: with a token, none answers 404 or 405 at its path.
    let token = token(&app);
    for (method, path) in &table {
        if method != "get" {
            continue;
        }
        let response = call(&app, method, &concrete(path), Some(&token), None).await;
        assert!(
            response.status() == 200 || response.status() == 404 && path.contains("{id}"),
            "{method} {path}: {}",
            response.status()
        );
    }
    // A known path with another method: 405 with Allow; an unknown path: 404, both problems.
    let wrong = call(&app, "put", "/api/v1/issues", Some(&token), None).await;
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "GET, POST");
    let unknown = call(&app, "get", "/api/v1/nothing-here", Some(&token), None).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
}

/// Issue 14: every operation names the scope of the route table, in its `security` requirement
/// and its description, and documents the 403 outside it; the document itself needs no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_names_the_scope_of_the_route_table() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc: serde_json::Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    for (method, path, scope) in iria_news::http::api::routes::ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        let what = format!("{method} {path}");
        let Some(scope) = scope else {
            assert_eq!(op["security"], serde_json::json!([{}]), "{what}: no token");
            continue;
        };
        assert_eq!(
            op["security"],
            serde_json::json!([{"bearer": [scope.as_str()]}]),
            "{what}: the table says {scope}"
        );
        let description = op["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(&format!("Scope: `{scope}`.")),
            "{what}: {description:?}"
        );
        assert_eq!(
            op["responses"]["403"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{what}: the 403 outside the scope"
        );
    }
    let create = doc["paths"]["/api/v1/issues"]["post"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(create.contains("`issues:send`"), "{create}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// Where schemathesis is: `IRIA_TEST_SCHEMATHESIS`, else on the PATH.
fn schemathesis() -> Option<String> {
    let candidate =
        std::env::var("IRIA_TEST_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_string());
    let runs = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "schemathesis is not installed (CI must run this test): pip install schemathesis"
    );
    eprintln!("SKIPPED: schemathesis is not installed");
    None
}

on_both_backends!(
    schemathesis_finds_no_server_error_and_no_mismatch,
    super::schemathesis_finds_no_server_error_and_no_mismatch
);
async fn schemathesis_finds_no_server_error_and_no_mismatch(backend: Backend) {
    let Some(st) = schemathesis() else {
        return;
    };
    // The endpoints schemathesis makes name random hosts: nothing is posted to them.
    let options = AppOptions {
        env: vec![("IRIA_WEBHOOK_DELIVERY", "false".to_string())],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let token = token(&app);
    let url = format!("{}/api/v1/openapi.json", app.address);
    let auth = format!("Authorization: Bearer {token}");
    // Every check, configured by tests/support/schemathesis.toml (which says why one is off).
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/schemathesis.toml"
    );
    // Its working folder: it keeps a cache of what it found there.
    let workdir = tempfile::tempdir().expect("temp dir");
    let cwd = workdir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(cwd)
            .args([
                "--config-file",
                config,
                "run",
                &url,
                "-H",
                &auth,
                "--max-examples",
                "40",
                "--seed",
                "20261130",
                // One worker: with the seed fixed, a run then goes the same way each time.
                "--workers",
                "1",
                "--no-color",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    // Long lines (generated bodies) are cut, so that a failure stays readable.
    let report: String = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .lines()
    .map(|l| l.chars().take(300).collect::<String>())
    .collect::<Vec<_>>()
    .join("\n");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(!report.contains("Server error"), "{report}");
    // Every operation of the document was tested (the webhooks' four and the audit log among them).
    assert!(
        report.contains("22/22") && report.contains("Tested: 22"),
        "{report}"
    );
}

on_both_backends!(
    api_issue_create_send_and_status,
    super::api_issue_create_send_and_status
);
async fn api_issue_create_send_and_status(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = token(&app);
    let readers = app.add_confirmed("reader", 2);
    let issue = serde_json::json!({
        "subject": "Hormuz: the week's brief",
        "body": "Shipping through **Hormuz** resumed.",
    });
    // A draft first; the same Idempotency-Key again returns it (200), nothing new.
    let made = app
        .client
        .post(format!("{}/api/v1/issues", app.address))
        .bearer_auth(&token)
        .header("Idempotency-Key", "brief-1")
        .json(&issue)
        .send()
        .await
        .expect("POST");
    assert_eq!(made.status(), 201);
    let made: serde_json::Value = made.json().await.expect("json");
    assert_eq!(made["status"], "draft");
    let id = made["id"].as_i64().expect("id");
    let again = app
        .client
        .post(format!("{}/api/v1/issues", app.address))
        .bearer_auth(&token)
        .header("Idempotency-Key", "brief-1")
        .json(&issue)
        .send()
        .await
        .expect("POST");
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<serde_json::Value>().await.expect("json")["id"],
        id
    );
    // Send it; a second send is a conflict and sends nothing more.
    let sent = call(
        &app,
        "post",
        &format!("/api/v1/issues/{id}/send"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(sent.status(), 200);
    let sent: serde_json::Value = sent.json().await.expect("json");
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["recipients"], 2);
    let twice = call(
        &app,
        "post",
        &format!("/api/v1/issues/{id}/send"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(twice.status(), 409);
    app.wait_issue_done(id, Duration::from_secs(20)).await;
    let status: serde_json::Value = call(
        &app,
        "get",
        &format!("/api/v1/issues/{id}"),
        Some(&token),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(status["progress"]["sent"], 2, "{status}");
    for (_, email) in &readers {
        let got = app.received_by(email);
        assert_eq!(got.len(), 1);
        assert!(got[0].html().contains("<strong>Hormuz</strong>"));
    }
    // Bad input: a clear problem, nothing made.
    let bad = call(
        &app,
        "post",
        "/api/v1/issues",
        Some(&token),
        Some(serde_json::json!({"subject": "x", "body": "y", "topics": ["Astrology"]})),
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.expect("body").contains("Astrology"));
    let not_json = app
        .client
        .post(format!("{}/api/v1/issues", app.address))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        not_json.headers()["content-type"],
        "application/problem+json"
    );
}

on_both_backends!(
    api_subscribers_and_articles,
    super::api_subscribers_and_articles
);
async fn api_subscribers_and_articles(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = token(&app);
    let added = call(
        &app,
        "post",
        "/api/v1/subscribers",
        Some(&token),
        Some(serde_json::json!({
            "email": "Analyst@Example.org",
            "name": "An Analyst",
            "topics": ["Terrorism"],
            "consent": "held",
            "source": "Paper form, Vienna conference",
        })),
    )
    .await;
    assert_eq!(added.status(), 201);
    let added: serde_json::Value = added.json().await.expect("json");
    assert_eq!(added["status"], "confirmed");
    assert_eq!(added["email"], "analyst@example.org");
    assert_eq!(
        added["consents"][0]["source"],
        "import: Paper form, Vienna conference"
    );
    let id = added["id"].as_i64().expect("id");
    let again = call(
        &app,
        "post",
        "/api/v1/subscribers",
        Some(&token),
        Some(serde_json::json!({"email": "analyst@example.org", "source": "again"})),
    )
    .await;
    assert_eq!(again.status(), 409);
    let list: serde_json::Value = call(
        &app,
        "get",
        "/api/v1/subscribers?topic=Terrorism&status=confirmed",
        Some(&token),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(list["total"], 1);
    // Erase, sign up again, erase again: each erasure stands on its own.
    for round in 0..2 {
        let erased = call(
            &app,
            "delete",
            &format!("/api/v1/subscribers/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(erased.status(), 204, "round {round}");
        assert!(app.subscriber("analyst@example.org").is_none());
        let gone = call(
            &app,
            "get",
            &format!("/api/v1/subscribers/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(gone.status(), 410, "an erased subscriber is gone");
        if round == 0 {
            let back = call(
                &app,
                "post",
                "/api/v1/subscribers",
                Some(&token),
                Some(serde_json::json!({"email": "analyst@example.org", "source": "again", "consent": "held"})),
            )
            .await;
            assert_eq!(back.status(), 201);
            let new_id = back.json::<serde_json::Value>().await.expect("json")["id"]
                .as_i64()
                .expect("id");
            assert_ne!(new_id, id);
            let erased = call(
                &app,
                "delete",
                &format!("/api/v1/subscribers/{new_id}"),
                Some(&token),
                None,
            )
            .await;
            assert_eq!(erased.status(), 204);
        }
    }
    // Articles: push, list, exclude.
    let pushed = call(
        &app,
        "post",
        "/api/v1/articles",
        Some(&token),
        Some(serde_json::json!({"link": "https://iria.example/a", "title": "A title"})),
    )
    .await;
    assert_eq!(pushed.status(), 201);
    let list: serde_json::Value = call(&app, "get", "/api/v1/articles", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    let article = list["items"][0]["id"].as_i64().expect("id");
    let patched: serde_json::Value = call(
        &app,
        "patch",
        &format!("/api/v1/articles/{article}"),
        Some(&token),
        Some(serde_json::json!({"excluded": true})),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(patched["excluded"], true);
    let preview: serde_json::Value =
        call(&app, "get", "/api/v1/digest/preview", Some(&token), None)
            .await
            .json()
            .await
            .expect("json");
    assert_eq!(
        preview["articles"],
        serde_json::json!([]),
        "the excluded one is out"
    );
    let run: serde_json::Value = call(&app, "post", "/api/v1/digest/run", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(run["outcome"], "no_articles");
}
