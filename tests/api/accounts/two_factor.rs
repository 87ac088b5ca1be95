//! Issue 14, the second factor: enrolment with a QR code and the secret shown, a login with a
//! TOTP code the test computes, a wrong and a reused code refused, recovery codes used once,
//! forced enrolment with `IRIA_REQUIRE_2FA`, and a reset after which the editor enrols again.

use diesel::prelude::*;
use iria_news::foundation::db::schema::audit_log;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::console::{csrf_of, login_form, session_cookie, EDITOR, PASSWORD};
use crate::helpers::{form, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

/// The code an authenticator app shows for a base32 secret, `offset` steps from now.
pub fn code_for(secret: &str, offset: i64) -> String {
    let bytes = Secret::Encoded(secret.to_string())
        .to_bytes()
        .expect("a base32 secret");
    let totp = TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new());
    let now = chrono::Utc::now().timestamp() + offset * 30;
    totp.generate(u64::try_from(now).expect("a time after 1970"))
}

fn current_step() -> i64 {
    chrono::Utc::now().timestamp() / 30
}

/// The code of the earliest step after `used` that the server accepts now (waiting for the next
/// step when `used` is the latest one accepted); `used` becomes that step.
pub async fn fresh_code(secret: &str, used: &mut i64) -> String {
    while current_step() < *used {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let step = (*used + 1).max(current_step());
    *used = step;
    code_for(secret, step - current_step())
}

/// A six-digit code that is none of the codes of the secret within two steps of now.
fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = (-2..=2).map(|o| code_for(secret, o)).collect();
    (0..1000)
        .map(|n| format!("{:06}", n * 997 % 1_000_000))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

/// A browser: its console cookie follows every Set-Cookie.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub cookie: String,
}

impl<'a> Browser<'a> {
    fn keep(&mut self, response: &reqwest::Response) {
        if let Some(cookie) = session_cookie(response) {
            self.cookie = cookie;
        }
    }

    pub async fn get(&mut self, path: &str) -> (reqwest::StatusCode, String, String) {
        let response = self
            .app
            .client
            .get(format!("{}{path}", self.app.address))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .expect("GET");
        self.keep(&response);
        let status = response.status();
        let location = location(&response);
        (status, location, response.text().await.expect("body"))
    }

    /// Opens `page`, then posts its form (with its CSRF token) to `action`.
    pub async fn submit(
        &mut self,
        page: &str,
        action: &str,
        pairs: &[(&str, &str)],
    ) -> (reqwest::StatusCode, String, String) {
        let (status, _, html) = self.get(page).await;
        assert_eq!(status, 200, "{page} opens");
        let csrf = csrf_of(&html);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(pairs);
        let response = self
            .app
            .client
            .post(format!("{}{action}", self.app.address))
            .header("Cookie", &self.cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&all))
            .send()
            .await
            .expect("POST");
        self.keep(&response);
        let status = response.status();
        let location = location(&response);
        (status, location, response.text().await.expect("body"))
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Logs in with the password; returns the browser and where the login sent it.
pub async fn password_step(app: &TestApp) -> (Browser<'_>, String) {
    let (cookie, csrf) = login_form(app).await;
    let response = app
        .client
        .post(format!("{}/admin/login", app.address))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", &csrf),
            ("name", EDITOR),
            ("password", PASSWORD),
            ("next", "/admin"),
        ]))
        .send()
        .await
        .expect("POST /admin/login");
    assert_eq!(response.status(), 303, "the password is right");
    let to = location(&response);
    let cookie = session_cookie(&response).expect("a session cookie");
    (Browser { app, cookie }, to)
}

/// The text of the element with the given id (`id="…">TEXT<`).
fn text_of(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('<').expect("end")].to_string()
}

/// The recovery codes of a codes page.
fn recovery_codes(html: &str) -> Vec<String> {
    let list = &html[html.find("id=\"recovery-codes\"").expect("the codes")..];
    let list = &list[..list.find("</ol>").expect("end of the list")];
    list.split("<code>")
        .skip(1)
        .map(|c| c[..c.find("</code>").expect("end")].to_string())
        .collect()
}

/// Enrols from the enrolment page with a code the test computes; returns the secret, the
/// recovery codes shown, the code used and its step.
async fn enrol(browser: &mut Browser<'_>) -> (String, Vec<String>, String, i64) {
    let (status, _, page) = browser.get("/admin/2fa/enrol").await;
    assert_eq!(status, 200);
    assert!(page.contains("<svg"), "a QR code drawn as SVG");
    assert!(!page.contains("<script"), "no script");
    let secret = text_of(&page, "secret");
    assert!(secret.len() >= 32, "a 160-bit secret in base32: {secret}");
    let wrong = wrong_code(&secret);
    let (status, _, again) = browser
        .submit("/admin/2fa/enrol", "/admin/2fa/enrol", &[("code", &wrong)])
        .await;
    assert_eq!(status, 400, "a wrong code does not enrol");
    assert_eq!(
        text_of(&again, "secret"),
        secret,
        "the same secret is offered again"
    );
    let step = current_step();
    let code = code_for(&secret, 0);
    let (status, _, shown) = browser
        .submit("/admin/2fa/enrol", "/admin/2fa/enrol", &[("code", &code)])
        .await;
    assert_eq!(status, 200, "{shown}");
    let codes = recovery_codes(&shown);
    assert_eq!(codes.len(), 10, "ten recovery codes: {codes:?}");
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    (secret, codes, code, step)
}

fn audit_count(app: &TestApp, action: &str) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .count()
        .get_result(&mut app.conn())
        .expect("audit rows")
}

async fn enrolment_and_login_with_codes(backend: Backend) {
    let Some(app) = spawn_app_with(backend, AppOptions::default()).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("create");
    let (mut browser, to) = password_step(&app).await;
    assert_eq!(
        to, "/admin",
        "no second factor yet, none required: straight in"
    );
    let (status, _, page) = browser.get("/admin/2fa").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"not-enrolled\""));
    let (secret, codes, enrolled_with, mut used) = enrol(&mut browser).await;
    assert_eq!(audit_count(&app, "second factor enrolled"), 1);
    let (_, _, page) = browser.get("/admin/2fa").await;
    assert_eq!(text_of(&page, "codes-left"), "10");
    // The secret is not kept in the clear.
    let stored: Option<String> = iria_news::foundation::db::schema::editors::table
        .select(iria_news::foundation::db::schema::editors::totp_secret)
        .first(&mut app.conn())
        .expect("secret");
    assert!(!stored.expect("kept").contains(&secret));

    // The next login asks for a code; nothing else opens meanwhile.
    let (mut login, to) = password_step(&app).await;
    assert_eq!(to, "/admin/login/code");
    let (status, to, _) = login.get("/admin/subscribers").await;
    assert_eq!((status.as_u16(), to.as_str()), (303, "/admin/login/code"));
    let step = "/admin/login/code";
    let (status, _, page) = login
        .submit(step, step, &[("code", &wrong_code(&secret))])
        .await;
    assert_eq!(status, 401, "a wrong code");
    assert!(page.contains("not right"));
    let (status, _, _) = login.submit(step, step, &[("code", &enrolled_with)]).await;
    assert_eq!(
        status, 401,
        "the code used at enrolment is not accepted again"
    );
    let code = fresh_code(&secret, &mut used).await;
    let (status, to, _) = login.submit(step, step, &[("code", &code)]).await;
    assert_eq!((status.as_u16(), to.as_str()), (303, "/admin"));
    assert_eq!(login.get("/admin").await.0, 200);
    assert_eq!(audit_count(&app, "login code failed"), 2);

    // A recovery code works once.
    let (mut rescue, _) = password_step(&app).await;
    let (status, to, _) = rescue.submit(step, step, &[("code", &codes[0])]).await;
    assert_eq!((status.as_u16(), to.as_str()), (303, "/admin"));
    assert_eq!(audit_count(&app, "recovery code used"), 1);
    let (mut again, _) = password_step(&app).await;
    let (status, _, _) = again.submit(step, step, &[("code", &codes[0])]).await;
    assert_eq!(status, 401, "a recovery code works once");
    let (_, _, page) = rescue.get("/admin/2fa").await;
    assert_eq!(text_of(&page, "codes-left"), "9");

    // The login's code cannot serve again, on another page either.
    let (status, _, _) = rescue
        .submit(
            "/admin/2fa",
            "/admin/2fa/recovery-codes",
            &[("code", &code)],
        )
        .await;
    assert_eq!(status, 400, "a used code does not make new recovery codes");
    // New recovery codes: the old ones stop working.
    let code = fresh_code(&secret, &mut used).await;
    let (status, _, shown) = rescue
        .submit(
            "/admin/2fa",
            "/admin/2fa/recovery-codes",
            &[("code", &code)],
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    let fresh = recovery_codes(&shown);
    assert_eq!(fresh.len(), 10);
    assert_eq!(audit_count(&app, "recovery codes regenerated"), 1);
    let (status, _, _) = again.submit(step, step, &[("code", &codes[1])]).await;
    assert_eq!(status, 401, "an old recovery code no longer works");
    let (status, to, _) = again.submit(step, step, &[("code", &fresh[3])]).await;
    assert_eq!((status.as_u16(), to.as_str()), (303, "/admin"));

    // Removing it needs the password and a code.
    let (status, _, _) = rescue
        .submit(
            "/admin/2fa",
            "/admin/2fa/remove",
            &[("password", "not the password"), ("code", "123456")],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(audit_count(&app, "password check failed"), 1);
    let (status, to, _) = rescue
        .submit(
            "/admin/2fa",
            "/admin/2fa/remove",
            &[("password", PASSWORD), ("code", &wrong_code(&secret))],
        )
        .await;
    assert_eq!((status.as_u16(), to.as_str()), (400, ""));
    assert_eq!(audit_count(&app, "second factor removed"), 0);
    let code = fresh_code(&secret, &mut used).await;
    let (status, to, _) = rescue
        .submit(
            "/admin/2fa",
            "/admin/2fa/remove",
            &[("password", PASSWORD), ("code", &code)],
        )
        .await;
    assert_eq!(
        (status.as_u16(), to.as_str()),
        (303, "/admin/2fa?notice=removed")
    );
    assert_eq!(audit_count(&app, "second factor removed"), 1);
    let (_, _, page) = rescue.get("/admin/2fa").await;
    assert!(page.contains("id=\"not-enrolled\""));
    assert_eq!(again.get("/admin").await.0, 303, "the other sessions ended");
    let (_, to) = password_step(&app).await;
    assert_eq!(to, "/admin", "no code asked any more");
}
on_both_backends!(
    enrolment_and_login_with_codes,
    super::enrolment_and_login_with_codes
);

async fn forced_enrolment_and_reset(backend: Backend) {
    let options = AppOptions {
        env: vec![("IRIA_REQUIRE_2FA", "true".into())],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD).expect("create");
    let (mut browser, to) = password_step(&app).await;
    assert_eq!(to, "/admin/2fa/enrol", "enrolment comes first");
    for path in ["/admin", "/admin/issues", "/admin/2fa", "/admin/login/code"] {
        let (status, to, _) = browser.get(path).await;
        assert_eq!(
            (status.as_u16(), to.as_str()),
            (303, "/admin/2fa/enrol"),
            "{path} before enrolment"
        );
    }
    let (first_secret, ..) = enrol(&mut browser).await;
    assert_eq!(
        browser.get("/admin").await.0,
        200,
        "enrolled: the console opens"
    );
    let (status, _, _) = browser
        .submit(
            "/admin/2fa",
            "/admin/2fa/remove",
            &[
                ("password", PASSWORD),
                ("code", &code_for(&first_secret, 1)),
            ],
        )
        .await;
    assert_eq!(
        status, 403,
        "the factor cannot be removed while it is required"
    );

    // The operator resets it: the session ends, and the editor enrols again at the next login.
    iria_news::stores::editors::reset_second_factor(&mut app.conn(), EDITOR).expect("reset");
    let (status, to, _) = browser.get("/admin").await;
    assert_eq!(
        (status.as_u16(), to.as_str()),
        (303, "/admin/login?next=%2Fadmin")
    );
    let (mut browser, to) = password_step(&app).await;
    assert_eq!(to, "/admin/2fa/enrol");
    let (second_secret, ..) = enrol(&mut browser).await;
    assert_ne!(first_secret, second_secret, "a new secret");
    assert_eq!(browser.get("/admin").await.0, 200);
    let (mut next, to) = password_step(&app).await;
    assert_eq!(to, "/admin/login/code");
    let (status, _, _) = next
        .submit(
            "/admin/login/code",
            "/admin/login/code",
            &[("code", &code_for(&first_secret, 1))],
        )
        .await;
    assert_eq!(status, 401, "the old secret's codes are refused");
}
on_both_backends!(
    forced_enrolment_and_reset,
    super::forced_enrolment_and_reset
);
