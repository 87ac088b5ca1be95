//! No spelling of a route escapes its row of the table: actix routes a percent-encoded path
//! (`/admin/%61ccounts`) to the same handler as the plain one, so the role and scope guards must
//! read it the same way. An author and a token with one scope try every route they may not use,
//! with one letter of the path percent-encoded, and are refused as on the plain path.

use iria_news::foundation::access::{Role, Scope};

use super::matrix::{log_in_as, make_account};
use super::scopes::{assert_refused_for, call, token_with};
use crate::helpers::{spawn_app, Backend};
use crate::on_both_backends;

/// The path with the first letter of its last literal segment written as `%XX`.
fn encoded(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.iter().rposition(|s| {
        !s.is_empty() && !s.starts_with('{') && s.chars().any(|c| c.is_ascii_alphabetic())
    })?;
    // "/admin" and "/api/v1" alone: their first segment is the scope's, not a route's.
    if last <= 2 && (path == "/admin" || path.starts_with("/api/v1") && last == 2) {
        return None;
    }
    let segment = segments[last];
    let at = segment.find(|c: char| c.is_ascii_alphabetic())?;
    let letter = segment.as_bytes()[at];
    let spelled = format!("{}%{:02X}{}", &segment[..at], letter, &segment[at + 1..]);
    let mut out = segments.clone();
    out[last] = &spelled;
    Some(out.join("/").replace("{id}", "1"))
}

on_both_backends!(
    encoded_paths_are_guarded_like_plain_ones,
    super::encoded_paths_are_guarded_like_plain_ones
);
async fn encoded_paths_are_guarded_like_plain_ones(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    make_account(&app, "chief", Role::Admin);
    make_account(&app, "writer", Role::Author);
    let author = log_in_as(&app, "writer").await;
    let mut tried = 0;
    for (method, path, role) in iria_news::http::admin::routes::ROUTES {
        if *role == Role::Author {
            continue;
        }
        let Some(spelled) = encoded(path) else {
            continue;
        };
        assert_ne!(spelled, path.replace("{id}", "1"));
        let response = match *method {
            "get" => author.get(&spelled).await,
            _ => {
                author
                    .post(&spelled, &[("role", "admin"), ("name", "intruder")])
                    .await
            }
        };
        assert_eq!(
            response.status(),
            403,
            "{method} {spelled} (the row {path}, {role:?}) as an author"
        );
        tried += 1;
    }
    assert!(tried >= 20, "only {tried} console routes tried");
    // Nothing was made or changed by those posts: still two accounts, the author an author.
    let accounts = iria_news::stores::editors::accounts(&mut app.conn()).expect("accounts");
    assert_eq!(accounts.len(), 2);
    assert!(accounts
        .iter()
        .any(|a| a.editor.name == "writer" && a.editor.role == Role::Author));

    let bounces = token_with(&app, "mta", &[Scope::BouncesWrite]);
    let mut tried = 0;
    for (method, path, scope) in iria_news::http::api::routes::ROUTES {
        let Some(scope) = scope.filter(|s| *s != Scope::BouncesWrite) else {
            continue;
        };
        let Some(spelled) = encoded(path) else {
            continue;
        };
        let body = matches!(*method, "post" | "patch").then(|| serde_json::json!({}));
        let response = call(&app, method, &spelled, Some(&bounces), body).await;
        assert_refused_for(response, scope, &format!("{method} {spelled}")).await;
        tried += 1;
    }
    assert!(tried >= 15, "only {tried} API routes tried");
    // A path no route matches is 404 to a valid token, whatever its spelling.
    let response = call(&app, "get", "/api/v1/%6eowhere", Some(&bounces), None).await;
    assert_eq!(response.status(), 404);
}

#[test]
fn one_letter_is_encoded() {
    assert_eq!(
        encoded("/admin/issues/{id}/send").as_deref(),
        Some("/admin/issues/1/%73end")
    );
    assert_eq!(
        encoded("/api/v1/subscribers").as_deref(),
        Some("/api/v1/%73ubscribers")
    );
    assert_eq!(encoded("/admin"), None);
}
