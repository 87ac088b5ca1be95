//! API tokens made by an admin in the console (shown once, listed without the token, working
//! within their scopes, revoked) and by `iria-news admin create-token NAME --scope …`.

use std::process::Command;

use diesel::prelude::*;
use iria_news::foundation::access::{Role, Scope};
use iria_news::foundation::db::schema::api_tokens;
use iria_news::stores::{api_tokens as tokens, audit};

use super::matrix::{log_in_as, make_account};
use super::scopes::{assert_refused_for, call};
use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

/// The token shown on the answer to the form.
fn shown_token(html: &str) -> String {
    let at = html
        .find("<code id=\"new-token\">")
        .expect("the new token is shown");
    let rest = &html[at + "<code id=\"new-token\">".len()..];
    rest[..rest.find('<').expect("end of the token")].to_string()
}

fn audit_rows(app: &TestApp, action: &str) -> Vec<audit::Recorded> {
    let filter = audit::Filter {
        action: Some(action.to_string()),
        ..Default::default()
    };
    audit::list(&mut app.conn(), &filter, 50, 0).expect("audit")
}

async fn an_admin_makes_lists_and_revokes_a_token_in_the_console(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    make_account(&app, "boss", Role::Admin);
    make_account(&app, "writer", Role::Editor);
    let admin = log_in_as(&app, "boss").await;

    // A token made before scopes is marked as such.
    tokens::create(&mut app.conn(), "old-cms").expect("token");
    diesel::update(api_tokens::table.filter(api_tokens::name.eq("old-cms")))
        .set(api_tokens::scopes.eq(None::<String>))
        .execute(&mut app.conn())
        .expect("clear the scopes");
    let page = admin.get("/admin/tokens").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(html.contains("old-cms"), "{html}");
    assert!(html.contains("full access — made before scopes"), "{html}");
    for scope in Scope::ALL {
        assert!(
            html.contains(&format!("value=\"{}\"", scope.as_str())),
            "a box for {scope}"
        );
        // (up to an apostrophe, which the page escapes)
        let meaning = scope.meaning().split('\'').next().unwrap_or_default();
        assert!(html.contains(meaning), "what {scope} means");
    }

    // A form without a scope is refused and makes nothing.
    let response = admin
        .post("/admin/tokens", &[("name", "empty"), ("expires_days", "")])
        .await;
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("tick at least one"));
    assert_eq!(tokens::list(&mut app.conn()).expect("list").len(), 1);

    // Made: shown once on the answer.
    let response = admin
        .post(
            "/admin/tokens",
            &[
                ("name", "cms"),
                ("scopes", "articles:write"),
                ("scopes", "issues:read"),
                ("expires_days", "30"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token = shown_token(&response.text().await.expect("body"));
    assert!(token.starts_with("iria_") && token.len() > 40, "{token}");
    let listed = admin.get("/admin/tokens").await.text().await.expect("body");
    assert!(!listed.contains(&token), "the list never shows the token");
    assert!(listed.contains("articles:write, issues:read"), "{listed}");
    assert!(listed.contains("by boss"), "{listed}");
    let cms = tokens::list(&mut app.conn())
        .expect("list")
        .into_iter()
        .find(|t| t.name == "cms")
        .expect("cms listed");
    let days = (cms.expires_at.expect("an expiry") - cms.created_at).num_days();
    assert!((29..=30).contains(&days), "{days}");
    let created = audit_rows(&app, "token created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].entry.actor, "editor boss");
    assert!(
        created[0].entry.detail.contains("cms")
            && created[0]
                .entry
                .detail
                .contains("articles:write,issues:read"),
        "{:?}",
        created[0]
    );

    // It works within its scopes, and only there.
    let response = call(&app, "get", "/api/v1/issues", Some(&token), None).await;
    assert_eq!(response.status(), 200);
    let response = call(&app, "get", "/api/v1/subscribers", Some(&token), None).await;
    assert_refused_for(response, Scope::SubscribersRead, "the cms token").await;

    // An editor (not an admin) cannot see or make tokens.
    let editor = log_in_as(&app, "writer").await;
    assert_eq!(editor.get("/admin/tokens").await.status(), 403);
    let response = editor
        .post(
            "/admin/tokens",
            &[("name", "mine"), ("scopes", "issues:send")],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(tokens::list(&mut app.conn())
        .expect("list")
        .iter()
        .all(|t| t.name != "mine"));

    // Revoked: refused from then on.
    let response = admin
        .post(&format!("/admin/tokens/{}/revoke", cms.id), &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/admin/tokens?notice=revoked"
    );
    let response = call(&app, "get", "/api/v1/issues", Some(&token), None).await;
    assert_eq!(response.status(), 401);
    let listed = admin.get("/admin/tokens").await.text().await.expect("body");
    assert!(!listed.contains(">cms<"), "{listed}");
    let revoked = audit_rows(&app, "token revoked");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].entry.actor, "editor boss");
    assert_eq!(revoked[0].entry.detail, "cms");
    // Revoking it again: nothing to revoke.
    let response = admin
        .post(&format!("/admin/tokens/{}/revoke", cms.id), &[])
        .await;
    assert_eq!(response.status(), 404);
}
on_both_backends!(
    an_admin_makes_lists_and_revokes_a_token_in_the_console,
    super::an_admin_makes_lists_and_revokes_a_token_in_the_console
);

/// `iria-news admin create-token` against the app's database, as the operator runs it.
fn create_token(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iria-news"));
    for (key, _) in std::env::vars() {
        if key.starts_with("IRIA_") {
            cmd.env_remove(key);
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    cmd.current_dir(dir.path())
        .env("IRIA_DATABASE_URL", &app.db.url)
        .env("IRIA_SECRET_KEY", "test-secret-key-of-at-least-32-bytes!!")
        .args(["admin", "create-token"])
        .args(args)
        .output()
        .expect("run iria-news")
}

async fn the_command_line_makes_a_scoped_token_and_refuses_unknown_scopes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.add_confirmed("reader", 2);
    let out = create_token(&app, &["reader-tool", "--scope", "subscribers:read"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("iria_"), "{token}");
    let response = call(&app, "get", "/api/v1/subscribers", Some(&token), None).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2), "{body}");
    let new = serde_json::json!({"email": "new@example.org"});
    let response = call(&app, "post", "/api/v1/subscribers", Some(&token), Some(new)).await;
    assert_refused_for(response, Scope::SubscribersWrite, "a read-only token").await;
    assert_eq!(app.count_subscribers(), 2);
    let made = audit_rows(&app, "token created");
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].entry.actor, "operator");

    // An unknown scope: a one-line error naming it, and no token.
    let out = create_token(&app, &["bad", "--scope", "subscribers:read,everything"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("unknown scope") && stderr.contains("everything"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(tokens::list(&mut app.conn())
        .expect("list")
        .iter()
        .all(|t| t.name != "bad"));
}
on_both_backends!(
    the_command_line_makes_a_scoped_token_and_refuses_unknown_scopes,
    super::the_command_line_makes_a_scoped_token_and_refuses_unknown_scopes
);
