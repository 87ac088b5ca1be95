//! Issue 14, throttles that hold: login failures, current-password checks and second-factor
//! codes share one atomic counter per account and per client address, under concurrent
//! requests; a locked account does not stop a session already open, nor a login from a device
//! the editor has logged in from before.

use diesel::prelude::*;
use futures_util::future::join_all;
use iria_news::foundation::db::schema::{audit_log, login_failures};

use super::two_factor::{code_for, password_step};
use crate::console::{log_in, login_form, session_cookie, EDITOR, PASSWORD};
use crate::helpers::{form, spawn_app, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

fn failures_of(app: &TestApp, key: &str) -> i64 {
    login_failures::table
        .filter(login_failures::key.eq(key))
        .count()
        .get_result(&mut app.conn())
        .expect("failures")
}

fn audit_count(app: &TestApp, action: &str) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .count()
        .get_result(&mut app.conn())
        .expect("audit rows")
}

/// A login attempt from a fresh login page, from `ip` (behind the trusted proxy) when given,
/// with a known device's cookie when given.
async fn attempt(
    app: &TestApp,
    password: &str,
    ip: Option<&str>,
    device: Option<&str>,
) -> reqwest::Response {
    let (cookie, csrf) = login_form(app).await;
    let cookie = match device {
        Some(device) => format!("{cookie}; {device}"),
        None => cookie,
    };
    let mut request = app
        .client
        .post(format!("{}/admin/login", app.address))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded");
    if let Some(ip) = ip {
        request = request.header("X-Forwarded-For", ip);
    }
    request
        .body(form(&[
            ("csrf", &csrf),
            ("name", EDITOR),
            ("password", password),
            ("next", "/admin"),
        ]))
        .send()
        .await
        .expect("POST /admin/login")
}

/// 30 wrong current passwords at once on POST /admin/password: at most five are checked, the
/// rest refused unchecked (429); the account is then locked for logins too, while the session
/// that made the attempts goes on.
async fn concurrent_password_checks_are_counted_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    let tries = (0..30).map(|i| {
        let console = &console;
        async move {
            let wrong = format!("wrong password {i}");
            console
                .post(
                    "/admin/password",
                    &[
                        ("current", &wrong),
                        ("new", "a new long password"),
                        ("repeat", "a new long password"),
                    ],
                )
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(tries).await;
    let checked = statuses.iter().filter(|s| **s == 400).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 30, "{statuses:?}");
    assert_eq!(checked, 5, "passwords checked of 5 allowed: {statuses:?}");
    assert_eq!(failures_of(&app, &format!("name:{EDITOR}")), checked as i64);
    assert_eq!(audit_count(&app, "password check failed"), checked as i64);
    // The right current password is not checked either now.
    let right = console
        .post(
            "/admin/password",
            &[
                ("current", PASSWORD),
                ("new", "a new long password"),
                ("repeat", "a new long password"),
            ],
        )
        .await;
    assert_eq!(right.status(), 429);
    // The shared counter: the account is locked for logins too.
    assert_eq!(attempt(&app, PASSWORD, None, None).await.status(), 429);
    // The session already open goes on working.
    assert_eq!(console.get("/admin").await.status(), 200);
    assert_eq!(console.get("/admin/issues").await.status(), 200);
}
on_both_backends!(
    concurrent_password_checks_are_counted_once,
    super::concurrent_password_checks_are_counted_once
);

/// Wrong logins and wrong current passwords at once share the one counter: five checks in all.
async fn logins_and_password_changes_share_the_counter(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    let changes = (0..15).map(|i| {
        let console = &console;
        async move {
            let wrong = format!("wrong password {i}");
            let pairs = [
                ("current", wrong.as_str()),
                ("new", "a new long password"),
                ("repeat", "a new long password"),
            ];
            console
                .post("/admin/password", &pairs)
                .await
                .status()
                .as_u16()
        }
    });
    let logins = (0..15).map(|i| {
        let app = &app;
        async move {
            let wrong = format!("wrong login {i}");
            attempt(app, &wrong, None, None).await.status().as_u16()
        }
    });
    let (changes, logins) = tokio::join!(join_all(changes), join_all(logins));
    let checked = changes.iter().filter(|s| **s == 400).count()
        + logins.iter().filter(|s| **s == 401).count();
    let refused = changes.iter().chain(&logins).filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 30, "{changes:?} {logins:?}");
    assert_eq!(
        checked, 5,
        "passwords checked of 5 allowed: {changes:?} {logins:?}"
    );
    assert_eq!(failures_of(&app, &format!("name:{EDITOR}")), checked as i64);
}
on_both_backends!(
    logins_and_password_changes_share_the_counter,
    super::logins_and_password_changes_share_the_counter
);

/// Someone elsewhere fails five logins to the editor's name: the name is locked for everyone
/// but the browser the editor logged in from before (its known-device cookie).
async fn a_known_device_logs_in_while_the_name_is_locked(backend: Backend) {
    let options = AppOptions {
        env: vec![("IRIA_TRUSTED_PROXIES", "1".into())],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("create");
    let home = "198.51.100.7";
    let first = attempt(&app, PASSWORD, Some(home), None).await;
    assert_eq!(first.status(), 303);
    let device = first
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("iria_device="))
        .expect("a known-device cookie after a full login")
        .to_string();
    let attributes = device.to_ascii_lowercase();
    assert!(attributes.contains("httponly"), "{device}");
    assert!(attributes.contains("samesite=strict"), "{device}");
    assert!(attributes.contains("path=/admin"), "{device}");
    assert!(attributes.contains("max-age="), "{device}");
    let device = device.split(';').next().expect("pair").to_string();

    let attacker = "203.0.113.66";
    for _ in 0..5 {
        let wrong = attempt(&app, "a guess", Some(attacker), None).await;
        assert_eq!(wrong.status(), 401);
    }
    assert_eq!(
        attempt(&app, PASSWORD, Some(attacker), None).await.status(),
        429
    );
    // Locked from any other address without the cookie, even with the password.
    assert_eq!(
        attempt(&app, PASSWORD, Some("192.0.2.44"), None)
            .await
            .status(),
        429
    );
    // A forged device cookie is no key.
    let forged = attempt(&app, PASSWORD, Some(home), Some("iria_device=forged")).await;
    assert_eq!(forged.status(), 429);
    // The editor's own browser gets in, from another address too.
    let known = attempt(&app, PASSWORD, Some("192.0.2.45"), Some(&device)).await;
    assert_eq!(known.status(), 303, "the known device logs in");
    assert_eq!(known.headers()["location"], "/admin");
    let cookie = session_cookie(&known).expect("a session");
    let dashboard = app
        .client
        .get(format!("{}/admin", app.address))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(dashboard.status(), 200);
    // The device's cookie does not unlock the name for the attacker.
    assert_eq!(
        attempt(&app, PASSWORD, Some(attacker), None).await.status(),
        429
    );
    // An office's shared address that has failed 20 times (other people's guesses) is locked,
    // but not for the browser this editor uses there.
    let office = "192.0.2.46";
    let key = format!("ip:{}", iria_news::foundation::net::limit_key(office));
    for _ in 0..20 {
        diesel::insert_into(login_failures::table)
            .values((
                login_failures::key.eq(&key),
                login_failures::failed_at.eq(iria_news::foundation::db::now()),
            ))
            .execute(&mut app.conn())
            .expect("a failure from the office");
    }
    assert_eq!(
        attempt(&app, PASSWORD, Some(office), None).await.status(),
        429,
        "the office's address is locked"
    );
    let at_the_office = attempt(&app, PASSWORD, Some(office), Some(&device)).await;
    assert_eq!(at_the_office.status(), 303, "the known device is not");
}
on_both_backends!(
    a_known_device_logs_in_while_the_name_is_locked,
    super::a_known_device_logs_in_while_the_name_is_locked
);

/// Wrong second-factor codes count with the password failures: five wrong codes lock the
/// account (a right password does not buy fresh guesses), and codes sent at once are checked no
/// more than the limit allows.
async fn wrong_codes_lock_the_account(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("create");
    let secret = iria_news::stores::editors::second_factor::new_secret();
    let editor = iria_news::stores::editors::by_name(&mut app.conn(), EDITOR)
        .expect("query")
        .expect("the editor");
    let codes = iria_news::stores::editors::second_factor::confirm(
        &mut app.conn(),
        app.settings.secret(),
        editor.id,
        &secret,
        &code_for(&secret, 0),
    )
    .expect("confirm");
    assert!(codes.is_some(), "enrolled");
    let step = "/admin/login/code";
    let (mut browser, to) = password_step(&app).await;
    assert_eq!(to, step);
    let (_, _, page) = browser.get(step).await;
    let csrf = crate::console::csrf_of(&page);
    let cookie = browser.cookie.clone();
    let tries = (0..12).map(|i| {
        let (app, cookie, csrf) = (&app, cookie.clone(), csrf.clone());
        async move {
            let code = format!("{:06}", 100_000 + i);
            app.client
                .post(format!("{}{step}", app.address))
                .header("Cookie", cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&[("csrf", &csrf), ("code", &code)]))
                .send()
                .await
                .expect("POST")
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(tries).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 12, "{statuses:?}");
    assert_eq!(checked, 5, "codes checked of 5 allowed: {statuses:?}");
    assert_eq!(audit_count(&app, "login code failed"), checked as i64);
    // Whatever is sent now, the right code included, is refused unchecked ...
    let (status, _, _) = browser
        .submit(step, step, &[("code", &code_for(&secret, 1))])
        .await;
    assert_eq!(status, 429);
    // ... and so is the password: a known password buys no fresh guesses at the code.
    assert_eq!(attempt(&app, PASSWORD, None, None).await.status(), 429);
}
on_both_backends!(
    wrong_codes_lock_the_account,
    super::wrong_codes_lock_the_account
);
