//! Server-side sessions (issue 14): logout ends the session (a copied cookie is refused), the
//! sessions page lists an editor's sessions with their address and browser and ends any of them,
//! an admin ends anyone's, a password change ends the others, and no session outlives 2 hours
//! idle or 12 hours in all.

use diesel::prelude::*;
use iria_news::foundation::db::schema::editor_sessions;

use super::accounts::{audit_details, get_as, id_of, log_in_as, refused, ALICE, SECRET};
use crate::console::{log_in, Console, EDITOR, PASSWORD};
use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

/// The ids of an editor's sessions, oldest first.
fn session_ids(app: &TestApp, name: &str) -> Vec<i64> {
    editor_sessions::table
        .filter(editor_sessions::editor_id.eq(id_of(app, name)))
        .order(editor_sessions::id.asc())
        .select(editor_sessions::id)
        .load(&mut app.conn())
        .expect("sessions")
}

on_both_backends!(
    logout_refuses_the_copied_cookie,
    super::logout_refuses_the_copied_cookie
);
async fn logout_refuses_the_copied_cookie(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    // A copy of the cookie, as a thief would keep it.
    let copy = Console {
        app: &app,
        cookie: console.cookie.clone(),
        csrf: console.csrf.clone(),
    };
    assert_eq!(copy.get("/admin").await.status(), 200);
    let out = console.post("/admin/logout", &[]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/admin/login");
    assert!(
        refused(&copy).await,
        "the copied cookie is refused after the logout"
    );
    assert!(
        session_ids(&app, EDITOR).is_empty(),
        "the session's row is gone"
    );
}

on_both_backends!(
    the_sessions_page_lists_and_ends_sessions,
    super::the_sessions_page_lists_and_ends_sessions
);
async fn the_sessions_page_lists_and_ends_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("admin");
    let laptop = log_in_as(&app, EDITOR, PASSWORD, "Laptop Firefox 1.0").await;
    let phone = log_in_as(&app, EDITOR, PASSWORD, "Phone Safari 2.0").await;
    let page = get_as(&laptop, "/admin/sessions", "Laptop Firefox 1.0").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    let own = &html[html.find("id=\"own-sessions\"").expect("own sessions")..];
    let own = &own[..own.find("</table>").expect("table end")];
    assert_eq!(own.matches("<tr id=\"session-").count(), 2, "{own}");
    assert!(own.contains("Laptop Firefox 1.0") && own.contains("Phone Safari 2.0"));
    assert_eq!(own.matches("<td>127.0.0.1</td>").count(), 2, "{own}");
    assert_eq!(own.matches("this session").count(), 1, "{own}");
    let [laptop_id, phone_id] = session_ids(&app, EDITOR)[..] else {
        panic!("two sessions");
    };
    let this_row = &own[own
        .find(&format!("id=\"session-{laptop_id}\""))
        .expect("row")..];
    let this_row = &this_row[..this_row.find("</tr>").expect("row end")];
    assert!(this_row.contains("this session") && this_row.contains("Laptop Firefox"));

    // The other one, ended from this page: its cookie is refused; this one goes on.
    let ended = laptop
        .post(&format!("/admin/sessions/{phone_id}/end"), &[])
        .await;
    assert_eq!(ended.status(), 303);
    assert_eq!(ended.headers()["location"], "/admin/sessions?notice=ended");
    assert!(
        refused(&phone).await,
        "the ended session's cookie is refused"
    );
    assert!(!refused(&laptop).await);
    assert_eq!(session_ids(&app, EDITOR), vec![laptop_id]);

    // An author sees only their own sessions, and cannot end someone else's.
    iria_news::stores::editors::create_with_role(
        &mut app.conn(),
        ALICE,
        SECRET,
        Some(iria_news::foundation::access::Role::Author),
    )
    .expect("alice");
    let alice = log_in_as(&app, ALICE, SECRET, "Alice browser").await;
    let html = alice
        .get("/admin/sessions")
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("Alice browser"));
    assert!(
        !html.contains("Laptop Firefox"),
        "an author sees only their own"
    );
    assert!(!html.contains("other-sessions"));
    let theirs = alice
        .post(&format!("/admin/sessions/{laptop_id}/end"), &[])
        .await;
    assert_eq!(theirs.status(), 404);
    assert!(
        !refused(&laptop).await,
        "an author cannot end an admin's session"
    );

    // The admin sees everyone's and ends alice's.
    let html = laptop
        .get("/admin/sessions")
        .await
        .text()
        .await
        .expect("body");
    let others = &html[html.find("id=\"other-sessions\"").expect("everyone's")..];
    assert!(others.contains("<td>alice</td>"), "{others}");
    let [alice_id] = session_ids(&app, ALICE)[..] else {
        panic!("one session of alice");
    };
    let ended = laptop
        .post(&format!("/admin/sessions/{alice_id}/end"), &[])
        .await;
    assert_eq!(ended.status(), 303);
    assert!(refused(&alice).await, "the admin ended alice's session");
    let rows = audit_details(&app, "session ended");
    let by = format!("editor {EDITOR}");
    assert!(
        rows.contains(&(by.clone(), format!("session {alice_id} of alice"))),
        "{rows:?}"
    );
    assert!(
        rows.contains(&(by.clone(), format!("session {phone_id} of {EDITOR}"))),
        "{rows:?}"
    );

    // Ending this session logs out.
    let out = laptop
        .post(&format!("/admin/sessions/{laptop_id}/end"), &[])
        .await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/admin/login");
    assert!(refused(&laptop).await);
}

on_both_backends!(
    a_password_change_ends_the_other_sessions,
    super::a_password_change_ends_the_other_sessions
);
async fn a_password_change_ends_the_other_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("admin");
    let here = log_in_as(&app, EDITOR, PASSWORD, "Here").await;
    let there = log_in_as(&app, EDITOR, PASSWORD, "There").await;
    let elsewhere = log_in_as(&app, EDITOR, PASSWORD, "Elsewhere").await;
    let changed = here
        .post(
            "/admin/password",
            &[
                ("current", PASSWORD),
                ("new", "a brand new passphrase"),
                ("repeat", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert!(
        refused(&there).await,
        "another session ends at a password change"
    );
    assert!(refused(&elsewhere).await);
    assert!(
        !refused(&here).await,
        "the session the change was made from goes on"
    );
    assert_eq!(session_ids(&app, EDITOR).len(), 1);
}

on_both_backends!(
    sessions_end_after_two_idle_hours_or_twelve_in_all,
    super::sessions_end_after_two_idle_hours_or_twelve_in_all
);
async fn sessions_end_after_two_idle_hours_or_twelve_in_all(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("admin");
    let now = iria_news::foundation::db::now();
    let set_back = |id: i64, created: chrono::Duration, seen: chrono::Duration| {
        diesel::update(editor_sessions::table.find(id))
            .set((
                editor_sessions::created_at.eq(now - created),
                editor_sessions::last_seen_at.eq(now - seen),
            ))
            .execute(&mut app.conn())
            .expect("set the session back");
    };
    let minutes = chrono::Duration::minutes;
    let hours = chrono::Duration::hours;

    // Idle for 1 h 50: still live; the request counts as a new one.
    let a = log_in_as(&app, EDITOR, PASSWORD, "A").await;
    let a_id = *session_ids(&app, EDITOR).last().expect("a");
    set_back(a_id, hours(3), minutes(110));
    assert!(!refused(&a).await, "110 minutes idle is within the limit");
    // Idle for 2 h 1: ended.
    set_back(a_id, hours(3), minutes(121));
    assert!(
        refused(&a).await,
        "a session idle for more than 2 hours ends"
    );
    assert!(
        !session_ids(&app, EDITOR).contains(&a_id),
        "and its row goes"
    );

    // In use all along, but logged in 11 h 50 ago: live; 12 h 1 ago: ended.
    let b = log_in_as(&app, EDITOR, PASSWORD, "B").await;
    let b_id = *session_ids(&app, EDITOR).last().expect("b");
    set_back(b_id, minutes(11 * 60 + 50), minutes(1));
    assert!(
        !refused(&b).await,
        "11 h 50 after the login is within the limit"
    );
    set_back(b_id, minutes(12 * 60 + 1), minutes(1));
    assert!(refused(&b).await, "no session lives past 12 hours");
    assert!(session_ids(&app, EDITOR).is_empty());
}
