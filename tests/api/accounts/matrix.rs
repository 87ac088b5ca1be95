//! The role matrix over the console's route table: an author, an editor and an admin each open
//! every route of `iria_news::http::admin::routes::ROUTES` (whatever the table holds when the
//! test runs); a role below the route's gets 403, a role at or above it is let through (not 403,
//! not sent to the login page). And an author can draft but not send.

use diesel::prelude::*;
use iria_news::foundation::access::Role;
use iria_news::foundation::db::schema::{deliveries, issues};
use iria_news::stores::{articles, editors};

use crate::console::{csrf_of, login_form, session_cookie, Console, PASSWORD};
use crate::helpers::{form, spawn_app, Backend, TestApp};
use crate::on_both_backends;

/// Makes an account of `role` named `name`.
pub fn make_account(app: &TestApp, name: &str, role: Role) {
    editors::create_with_role(&mut app.conn(), name, PASSWORD, Some(role)).expect("account");
}

/// Logs `name` in (with [`PASSWORD`]); the console with its session cookie and CSRF token.
pub async fn log_in_as<'a>(app: &'a TestApp, name: &str) -> Console<'a> {
    let (cookie, csrf) = login_form(app).await;
    let response = app
        .client
        .post(format!("{}/admin/login", app.address))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", &csrf),
            ("name", name),
            ("password", PASSWORD),
            ("next", "/admin"),
        ]))
        .send()
        .await
        .expect("POST /admin/login");
    assert_eq!(response.status(), 303, "{name}: login refused");
    assert_eq!(response.headers()["location"], "/admin", "{name}");
    let cookie = session_cookie(&response).expect("a session cookie after the login");
    let mut console = Console {
        app,
        cookie,
        csrf: String::new(),
    };
    let dashboard = console.get("/admin").await;
    assert_eq!(dashboard.status(), 200, "{name}: the dashboard");
    console.csrf = csrf_of(&dashboard.text().await.expect("body"));
    console
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Real ids for the `{id}` of GET routes, by the path's section; POSTs get an id that names
/// nothing, so that no request of the walk changes anything (an allowed role gets 404).
struct Ids {
    issue: i64,
    subscriber: i64,
    article: i64,
    account: i64,
}

impl Ids {
    fn fill(&self, method: &str, path: &str) -> String {
        if !path.contains("{id}") {
            return path.to_string();
        }
        let id = if method != "get" {
            999_999
        } else if path.starts_with("/admin/issues/") {
            self.issue
        } else if path.starts_with("/admin/subscribers/") {
            self.subscriber
        } else if path.starts_with("/admin/articles/") {
            self.article
        } else if path.starts_with("/admin/accounts/") {
            self.account
        } else {
            999_999
        };
        path.replace("{id}", &id.to_string())
    }
}

fn an_article(app: &TestApp) -> i64 {
    let article = articles::NewArticle {
        guid: "matrix-1".to_string(),
        link: "https://iria.test/articles/matrix".to_string(),
        title: "Matrix".to_string(),
        summary: "The summary.".to_string(),
        body: "<p>Body.</p>".to_string(),
        author: None,
        categories: vec!["Europe".to_string()],
        image_url: None,
        image_credit: None,
        published_at: chrono::Utc::now().naive_utc(),
    };
    let mut conn = app.conn();
    articles::upsert(&mut conn, &[article], articles::Source::Api).expect("article");
    articles::latest(&mut conn, 1, 0).expect("latest")[0].id
}

fn is_console_route_walked(method: &str, path: &str) -> bool {
    // The login and its steps are open to visitors, the logout ends the session.
    !(path.starts_with("/admin/login") || (method == "post" && path == "/admin/logout"))
}

async fn every_console_route_answers_each_role_as_the_table_says(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    make_account(&app, "admin1", Role::Admin);
    make_account(&app, "editor1", Role::Editor);
    make_account(&app, "author1", Role::Author);
    let ids = Ids {
        issue: app.queue_issue("For the matrix", "<p>x</p>").issue_id,
        subscriber: app.add_confirmed("reader", 1)[0].0,
        article: an_article(&app),
        account: editors::by_name(&mut app.conn(), "author1")
            .expect("query")
            .expect("author")
            .id,
    };
    let names = [
        (Role::Author, "author1"),
        (Role::Editor, "editor1"),
        (Role::Admin, "admin1"),
    ];
    let mut consoles = Vec::new();
    for (role, name) in names {
        consoles.push((role, name, log_in_as(&app, name).await));
    }
    let routes = iria_news::http::admin::routes::ROUTES;
    assert!(routes.len() >= 40, "the table: {}", routes.len());
    let mut walked = 0;
    for (method, pattern, least) in routes {
        if !is_console_route_walked(method, pattern) {
            continue;
        }
        let path = ids.fill(method, pattern);
        for (role, name, console) in consoles.iter_mut() {
            let response = match *method {
                "get" => console.get(&path).await,
                "post" => console.post(&path, &[]).await,
                other => panic!("{other} {pattern}: the console has GET and POST only"),
            };
            let status = response.status().as_u16();
            let to = location(&response);
            let what = format!("{method} {path} as {name} ({role}; the route needs {least})");
            if role.allows(*least) {
                assert_ne!(status, 403, "{what}");
                assert!(status < 500, "{what}: {status}");
                assert!(!to.starts_with("/admin/login"), "{what}: sent to {to}");
            } else {
                assert_eq!(status, 403, "{what}");
                let body = response.text().await.expect("body");
                assert!(body.contains("Not for your role"), "{what}: {body}");
            }
            // A POST of the walk may end the session (e.g. ending one's sessions): log in again
            // so that the next route is tried with a session.
            if *method == "post" {
                let alive = console.get("/admin").await;
                if location(&alive).starts_with("/admin/login") {
                    *console = log_in_as(&app, name).await;
                }
            }
        }
        walked += 1;
    }
    assert!(walked >= 40, "walked {walked} routes");
}
on_both_backends!(
    every_console_route_answers_each_role_as_the_table_says,
    super::every_console_route_answers_each_role_as_the_table_says
);

fn issue_count(app: &TestApp) -> i64 {
    issues::table
        .count()
        .get_result(&mut app.conn())
        .expect("count")
}

fn delivery_count(app: &TestApp) -> i64 {
    deliveries::table
        .count()
        .get_result(&mut app.conn())
        .expect("count")
}

async fn an_author_drafts_but_cannot_send(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.add_confirmed("reader", 2);
    make_account(&app, "admin1", Role::Admin);
    make_account(&app, "author1", Role::Author);
    let author = log_in_as(&app, "author1").await;
    let fields = |action: &'static str, key: &'static str| {
        [
            ("subject", "From the author"),
            ("body", "Hello **readers**"),
            ("action", action),
            ("idempotency_key", key),
        ]
    };
    for (action, key) in [("send", "k-send"), ("schedule", "k-schedule")] {
        let mut pairs = fields(action, key).to_vec();
        if action == "schedule" {
            pairs.push(("send_at", "2099-01-01T08:00"));
        }
        let response = author.post("/admin/issues", &pairs).await;
        assert_eq!(response.status(), 403, "{action} as an author");
        assert_eq!(issue_count(&app), 0, "{action}: no issue made");
        assert_eq!(delivery_count(&app), 0, "{action}: nothing queued");
    }
    let response = author
        .post("/admin/issues", &fields("draft", "k-draft"))
        .await;
    assert!(
        [200, 303].contains(&response.status().as_u16()),
        "draft: {}",
        response.status()
    );
    assert_eq!(issue_count(&app), 1, "the draft is kept");
    assert_eq!(delivery_count(&app), 0, "a draft sends nothing");
    let status: String = issues::table
        .select(issues::status)
        .first(&mut app.conn())
        .expect("status");
    assert_eq!(status, "draft");
    // Nor can the author send the draft from its page.
    let id: i64 = issues::table
        .select(issues::id)
        .first(&mut app.conn())
        .expect("id");
    let response = author.post(&format!("/admin/issues/{id}/send"), &[]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(delivery_count(&app), 0);
}
on_both_backends!(
    an_author_drafts_but_cannot_send,
    super::an_author_drafts_but_cannot_send
);
