//! Accounts in the console (issue 14): an admin adds an author and an editor, changes a role,
//! disables an account (its open session is refused at once, its login too), enables it again,
//! resets its second factor; the last admin keeps the role; other roles get 403.

// The part of issue 14 about accounts, in the module of the whole issue's tests.
#![allow(clippy::module_inception)]

use diesel::prelude::*;
use iria_news::foundation::access::Role;
use iria_news::foundation::db::schema::editors;
use iria_news::stores::audit::{self, Filter};
use iria_news::stores::editors as accounts_store;

use crate::console::{csrf_of, log_in, login_form, session_cookie, Console, EDITOR};
use crate::helpers::{form, spawn_app, Backend, TestApp};
use crate::on_both_backends;

pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
pub const SECRET: &str = "a long enough secret 1";

/// Logs in as `name` from a browser named `agent`; the console of that session.
pub async fn log_in_as<'a>(
    app: &'a TestApp,
    name: &str,
    password: &str,
    agent: &str,
) -> Console<'a> {
    let response = post_login_as(app, name, password, agent).await;
    assert_eq!(response.status(), 303, "the login of {name} is refused");
    let cookie = session_cookie(&response).expect("a session cookie after the login");
    let mut console = Console {
        app,
        cookie,
        csrf: String::new(),
    };
    let page = get_as(&console, "/admin/sessions", agent).await;
    assert_eq!(page.status(), 200, "{name} signed in");
    console.csrf = csrf_of(&page.text().await.expect("body"));
    console
}

/// Posts the login form as `name` from a browser named `agent`.
pub async fn post_login_as(
    app: &TestApp,
    name: &str,
    password: &str,
    agent: &str,
) -> reqwest::Response {
    let (cookie, csrf) = login_form(app).await;
    app.client
        .post(format!("{}/admin/login", app.address))
        .header("Cookie", &cookie)
        .header("User-Agent", agent)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", &csrf),
            ("name", name),
            ("password", password),
            ("next", "/admin"),
        ]))
        .send()
        .await
        .expect("POST /admin/login")
}

/// A GET with this console's cookie from a browser named `agent`.
pub async fn get_as(console: &Console<'_>, path: &str, agent: &str) -> reqwest::Response {
    console
        .app
        .client
        .get(format!("{}{path}", console.app.address))
        .header("Cookie", &console.cookie)
        .header("User-Agent", agent)
        .send()
        .await
        .expect("GET")
}

/// Whether a console's cookie is refused (a 303 to the login page).
pub async fn refused(console: &Console<'_>) -> bool {
    let r = console.get("/admin").await;
    r.status() == 303
        && r.headers()["location"]
            .to_str()
            .expect("location")
            .starts_with("/admin/login")
}

pub fn id_of(app: &TestApp, name: &str) -> i64 {
    editors::table
        .filter(editors::name.eq(name))
        .select(editors::id)
        .first(&mut app.conn())
        .expect("the account")
}

fn account(app: &TestApp, name: &str) -> accounts_store::Account {
    accounts_store::account(&mut app.conn(), id_of(app, name))
        .expect("query")
        .expect("the account")
}

/// The details of the audit rows of one action, the latest first.
pub fn audit_details(app: &TestApp, action: &str) -> Vec<(String, String)> {
    let filter = Filter {
        action: Some(action.into()),
        ..Filter::default()
    };
    audit::list(&mut app.conn(), &filter, 100, 0)
        .expect("audit")
        .into_iter()
        .map(|r| (r.entry.actor, r.entry.detail))
        .collect()
}

on_both_backends!(an_admin_manages_accounts, super::an_admin_manages_accounts);
async fn an_admin_manages_accounts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // The first account is the admin.
    let admin = log_in(&app, true).await;
    let page = admin.get("/admin/accounts").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(
        html.contains(&format!("<td>{EDITOR}</td><td>admin</td><td>no</td>")),
        "{html}"
    );

    // An author and an editor, added in the console.
    for (name, role) in [(ALICE, "author"), (BOB, "editor")] {
        let made = admin
            .post(
                "/admin/accounts",
                &[("name", name), ("password", SECRET), ("role", role)],
            )
            .await;
        assert_eq!(made.status(), 303, "{name} added");
        assert_eq!(made.headers()["location"], "/admin/accounts?notice=created");
    }
    let html = admin
        .get("/admin/accounts")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        html.contains("<td>alice</td><td>author</td><td>no</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td>bob</td><td>editor</td><td>no</td>"),
        "{html}"
    );
    assert_eq!(account(&app, ALICE).editor.role, Role::Author);
    assert_eq!(account(&app, BOB).editor.role, Role::Editor);
    // Errors are shown on the page, and nothing is made.
    let short = admin
        .post(
            "/admin/accounts",
            &[("name", "carol"), ("password", "short"), ("role", "editor")],
        )
        .await;
    assert_eq!(short.status(), 400);
    assert!(short
        .text()
        .await
        .expect("body")
        .contains("at least 12 characters"));
    let twice = admin
        .post(
            "/admin/accounts",
            &[("name", ALICE), ("password", SECRET), ("role", "admin")],
        )
        .await;
    assert_eq!(twice.status(), 409);
    assert!(twice.text().await.expect("body").contains("exists already"));
    assert_eq!(account(&app, ALICE).editor.role, Role::Author, "unchanged");
    let count: i64 = editors::table
        .count()
        .get_result(&mut app.conn())
        .expect("count");
    assert_eq!(count, 3);

    // Neither the author nor the editor may manage accounts.
    let alice = log_in_as(&app, ALICE, SECRET, "Alice's browser").await;
    let bob = log_in_as(&app, BOB, SECRET, "Bob's browser").await;
    let alice_id = id_of(&app, ALICE).to_string();
    for console in [&alice, &bob] {
        assert_eq!(console.get("/admin/accounts").await.status(), 403);
        for action in ["role", "disable", "enable", "reset-2fa"] {
            let r = console
                .post(
                    &format!("/admin/accounts/{alice_id}/{action}"),
                    &[("role", "admin")],
                )
                .await;
            assert_eq!(r.status(), 403, "{action} by a non-admin");
        }
        let r = console
            .post(
                "/admin/accounts",
                &[("name", "mallory"), ("password", SECRET), ("role", "admin")],
            )
            .await;
        assert_eq!(r.status(), 403);
    }
    assert_eq!(account(&app, ALICE).editor.role, Role::Author);
    assert!(account(&app, ALICE).disabled_at.is_none());

    // The admin makes alice an editor.
    let promoted = admin
        .post(
            &format!("/admin/accounts/{alice_id}/role"),
            &[("role", "editor")],
        )
        .await;
    assert_eq!(promoted.status(), 303);
    assert_eq!(account(&app, ALICE).editor.role, Role::Editor);
    assert_eq!(
        alice.get("/admin/subscribers").await.status(),
        200,
        "the new role counts in the open session"
    );

    // Disabling bob ends his open session at once, and refuses his logins.
    let bob_id = id_of(&app, BOB).to_string();
    assert!(!refused(&bob).await);
    let disabled = admin
        .post(&format!("/admin/accounts/{bob_id}/disable"), &[])
        .await;
    assert_eq!(disabled.status(), 303);
    assert!(
        refused(&bob).await,
        "a disabled account's session is refused"
    );
    assert!(account(&app, BOB).disabled_at.is_some());
    let html = admin
        .get("/admin/accounts")
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("<strong>disabled</strong>"), "{html}");
    let login = post_login_as(&app, BOB, SECRET, "Bob's browser").await;
    assert_eq!(login.status(), 401, "a disabled account cannot log in");
    // Enabled again: the login works.
    let enabled = admin
        .post(&format!("/admin/accounts/{bob_id}/enable"), &[])
        .await;
    assert_eq!(enabled.status(), 303);
    assert!(account(&app, BOB).disabled_at.is_none());
    let bob = log_in_as(&app, BOB, SECRET, "Bob's browser").await;

    // A second factor (as enrolment leaves it), reset by the admin: it goes, and so do bob's
    // sessions.
    diesel::update(editors::table.filter(editors::name.eq(BOB)))
        .set((
            editors::totp_secret.eq(Some("JBSWY3DPEHPK3PXP")),
            editors::totp_enrolled_at.eq(Some(chrono::Utc::now().naive_utc())),
        ))
        .execute(&mut app.conn())
        .expect("enrol");
    let html = admin
        .get("/admin/accounts")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        html.contains("<td>bob</td><td>editor</td><td>yes</td>"),
        "{html}"
    );
    let reset = admin
        .post(&format!("/admin/accounts/{bob_id}/reset-2fa"), &[])
        .await;
    assert_eq!(reset.status(), 303);
    let (secret, enrolled): (Option<String>, Option<chrono::NaiveDateTime>) = editors::table
        .filter(editors::name.eq(BOB))
        .select((editors::totp_secret, editors::totp_enrolled_at))
        .first(&mut app.conn())
        .expect("bob");
    assert_eq!((secret, enrolled), (None, None));
    assert!(
        refused(&bob).await,
        "a reset second factor ends the sessions"
    );
    let html = admin
        .get("/admin/accounts")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        html.contains("<td>bob</td><td>editor</td><td>no</td>"),
        "{html}"
    );

    // The last admin can neither be demoted nor disabled.
    let admin_id = id_of(&app, EDITOR).to_string();
    let demoted = admin
        .post(
            &format!("/admin/accounts/{admin_id}/role"),
            &[("role", "editor")],
        )
        .await;
    assert_eq!(demoted.status(), 409);
    assert!(demoted
        .text()
        .await
        .expect("body")
        .contains("The last active admin cannot lose the admin role or be disabled."));
    let off = admin
        .post(&format!("/admin/accounts/{admin_id}/disable"), &[])
        .await;
    assert_eq!(off.status(), 409);
    assert_eq!(account(&app, EDITOR).editor.role, Role::Admin);
    assert!(account(&app, EDITOR).disabled_at.is_none());
    assert!(!refused(&admin).await);
    // With a second admin, the first may step down.
    let up = admin
        .post(
            &format!("/admin/accounts/{alice_id}/role"),
            &[("role", "admin")],
        )
        .await;
    assert_eq!(up.status(), 303);
    let down = admin
        .post(
            &format!("/admin/accounts/{admin_id}/role"),
            &[("role", "author")],
        )
        .await;
    assert_eq!(down.status(), 303);
    assert_eq!(account(&app, EDITOR).editor.role, Role::Author);
    assert_eq!(admin.get("/admin/accounts").await.status(), 403);

    // Each change left its row, naming the admin and the account.
    let by = format!("editor {EDITOR}");
    let created = audit_details(&app, "account created");
    assert!(
        created.contains(&(by.clone(), "alice as author".into())),
        "{created:?}"
    );
    assert!(
        created.contains(&(by.clone(), "bob as editor".into())),
        "{created:?}"
    );
    assert_eq!(
        created.len(),
        2,
        "refused creations leave no row: {created:?}"
    );
    let roles = audit_details(&app, "role changed");
    for change in [
        "alice: author → editor",
        "alice: editor → admin",
        "editor: admin → author",
    ] {
        assert!(roles.contains(&(by.clone(), change.into())), "{roles:?}");
    }
    assert_eq!(roles.len(), 3, "refused changes leave no row: {roles:?}");
    assert_eq!(
        audit_details(&app, "account disabled"),
        vec![(by.clone(), "bob".into())]
    );
    assert_eq!(
        audit_details(&app, "account enabled"),
        vec![(by.clone(), "bob".into())]
    );
    assert_eq!(
        audit_details(&app, "second factor reset"),
        vec![(by.clone(), "bob".into())]
    );
}

/// Two admins demoting (or disabling) each other at the same moment on PostgreSQL: one change
/// wins, the other is refused as the last admin's; the console is never left without an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_demoting_each_other_at_once_leave_one() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    for name in [ALICE, BOB] {
        accounts_store::create_with_role(&mut app.conn(), name, SECRET, Some(Role::Admin))
            .expect("admin");
    }
    let admins = |app: &TestApp| -> i64 {
        editors::table
            .filter(editors::role.eq("admin"))
            .filter(editors::disabled_at.is_null())
            .count()
            .get_result(&mut app.conn())
            .expect("count")
    };
    for round in 0..25 {
        for name in [ALICE, BOB] {
            accounts_store::set_disabled(&mut app.conn(), name, false).expect("enable");
            diesel::update(editors::table.filter(editors::name.eq(name)))
                .set(editors::role.eq("admin"))
                .execute(&mut app.conn())
                .expect("admin again");
        }
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let changes = [(ALICE, BOB), (BOB, ALICE)].map(|(_, other)| {
            let (barrier, mut conn) = (barrier.clone(), app.conn());
            std::thread::spawn(move || {
                barrier.wait();
                // Odd rounds disable instead of demoting: both paths keep an admin.
                if round % 2 == 0 {
                    accounts_store::set_role(&mut conn, other, Role::Editor).is_ok()
                } else {
                    accounts_store::set_disabled(&mut conn, other, true).is_ok()
                }
            })
        });
        let won: Vec<bool> = changes
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(admins(&app), 1, "round {round}: {won:?}");
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
    }
}
