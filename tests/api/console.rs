//! The editor console (issue 6): login and sessions, the guard over every route of the table,
//! CSRF, compose and send with an idempotency key, scheduling, subscribers, CSV import and
//! export, articles, the digest page.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use iria_news::foundation::db::schema::{consents, issues, subscribers};

use crate::helpers::{form, spawn_app, Backend, TestApp};
use crate::on_both_backends;

pub const EDITOR: &str = "editor";
pub const PASSWORD: &str = "correct horse battery";

/// A signed-in editor's cookie and CSRF token.
pub struct Console<'a> {
    pub app: &'a TestApp,
    pub cookie: String,
    pub csrf: String,
}

/// The `iria_admin=…` pair of a response's Set-Cookie, if any.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("iria_admin="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a CSRF field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end of the value")].to_string()
}

/// Makes the account when asked, opens the login page and logs in.
pub async fn log_in(app: &TestApp, create: bool) -> Console<'_> {
    if create {
        iria_news::stores::editors::create(&mut app.conn(), EDITOR, PASSWORD)
            .expect("create editor");
    }
    let response = post_login(app, "/admin").await;
    assert_eq!(response.status(), 303, "login refused");
    assert_eq!(response.headers()["location"], "/admin");
    let cookie = session_cookie(&response).expect("a session cookie after the login");
    let mut console = Console {
        app,
        cookie,
        csrf: String::new(),
    };
    let dashboard = console.get("/admin").await;
    assert_eq!(dashboard.status(), 200);
    console.csrf = csrf_of(&dashboard.text().await.expect("body"));
    console
}

/// Opens the login page and logs in as [`EDITOR`], asking to go to `next` afterwards.
pub async fn post_login(app: &TestApp, next: &str) -> reqwest::Response {
    let (cookie, csrf) = login_form(app).await;
    app.client
        .post(format!("{}/admin/login", app.address))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", &csrf),
            ("name", EDITOR),
            ("password", PASSWORD),
            ("next", next),
        ]))
        .send()
        .await
        .expect("POST /admin/login")
}

/// The login page's session cookie and CSRF token.
pub async fn login_form(app: &TestApp) -> (String, String) {
    let page = app.get("/admin/login").await;
    assert_eq!(page.status(), 200);
    let cookie = session_cookie(&page).expect("the login page sets a session cookie");
    let csrf = csrf_of(&page.text().await.expect("body"));
    (cookie, csrf)
}

impl Console<'_> {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .get(format!("{}{path}", self.app.address))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    /// Posts a form with this session's CSRF token added.
    pub async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(pairs);
        self.post_raw(path, form(&all)).await
    }

    /// Uploads a CSV to the import form, as the browser sends it.
    pub async fn import_csv(&self, csv: &str, source: &str, consent: &str) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(csv.as_bytes().to_vec())
                    .file_name("list.csv")
                    .mime_str("text/csv")
                    .expect("mime"),
            )
            .text("source", source.to_string())
            .text("consent", consent.to_string());
        self.app
            .client
            .post(format!(
                "{}/admin/subscribers/import?csrf={}",
                self.app.address, self.csrf
            ))
            .header("Cookie", &self.cookie)
            .multipart(form)
            .send()
            .await
            .expect("import")
    }

    /// Uploads a CSV to the import form, which answers at once with a 303 to the import's
    /// page; waits for the import to end (the app's runner imports it) and returns that page.
    pub async fn import_and_wait(&self, csv: &str, source: &str, consent: &str) -> String {
        let response = self.import_csv(csv, source, consent).await;
        assert_eq!(
            response.status(),
            303,
            "the upload goes to the import's page"
        );
        let location = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert!(location.starts_with("/admin/imports/"), "{location}");
        self.wait_for_import(&location, Duration::from_secs(120))
            .await
    }

    /// Reads an import's page until it stops refreshing itself (the job is done or failed).
    pub async fn wait_for_import(&self, location: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let page = self.get(location).await;
            assert_eq!(page.status(), 200);
            let page = page.text().await.expect("body");
            if !page.contains("http-equiv=\"refresh\"") {
                return page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the import did not end: {}",
                &page[..3000.min(page.len())]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn post_raw(&self, path: &str, body: String) -> reqwest::Response {
        self.app
            .client
            .post(format!("{}{path}", self.app.address))
            .header("Cookie", &self.cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST")
    }
}

/// A path of the table with its `{id}` filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
}

fn issue_count(app: &TestApp) -> i64 {
    issues::table
        .count()
        .get_result(&mut app.conn())
        .expect("count issues")
}

on_both_backends!(
    every_console_route_redirects_to_login_without_a_session,
    super::every_console_route_redirects_to_login_without_a_session
);
async fn every_console_route_redirects_to_login_without_a_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    assert!(
        iria_news::http::admin::routes::ROUTES.len() >= 25,
        "the table lists the console"
    );
    for (method, path, _) in iria_news::http::admin::routes::ROUTES {
        if path.starts_with("/admin/login") {
            continue;
        }
        let url = format!("{}{}", app.address, concrete(path));
        let response = match *method {
            "get" => app.client.get(&url).send().await,
            "post" => {
                app.client
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body("csrf=x")
                    .send()
                    .await
            }
            other => panic!("a method the test does not know: {other}"),
        }
        .expect("request");
        assert_eq!(response.status(), 303, "{method} {path} without a session");
        let location = response.headers()["location"].to_str().expect("location");
        assert!(
            location.starts_with("/admin/login"),
            "{method} {path} goes to {location}"
        );
    }
    // A session cookie that is not ours is no session either.
    let forged = app
        .client
        .get(format!("{}/admin", app.address))
        .header("Cookie", "iria_admin=forged-value")
        .send()
        .await
        .expect("GET");
    assert_eq!(forged.status(), 303);
    // Nothing was made by all those posts.
    assert_eq!(issue_count(&app), 0);
}

on_both_backends!(
    a_post_without_its_csrf_token_is_refused,
    super::a_post_without_its_csrf_token_is_refused
);
async fn a_post_without_its_csrf_token_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    app.add_confirmed("reader", 1);
    let posts: Vec<&str> = iria_news::http::admin::routes::ROUTES
        .iter()
        .filter(|(m, _, _)| *m == "post")
        .map(|(_, path, _)| *path)
        .collect();
    assert!(posts.len() >= 10);
    for path in posts {
        let path = concrete(path);
        // No token, then a wrong one: 403 both times.
        for body in [
            form(&[("subject", "Hello"), ("body", "Hi"), ("action", "send")]),
            form(&[
                ("csrf", "not-the-token"),
                ("subject", "Hello"),
                ("body", "Hi"),
                ("action", "send"),
            ]),
        ] {
            let response = console.post_raw(&path, body).await;
            assert_eq!(response.status(), 403, "POST {path} without its CSRF token");
        }
    }
    assert_eq!(issue_count(&app), 0, "no issue made without a token");
    let (_, status, _) = (
        (),
        app.subscriber("reader00000@example.org").expect("reader").0,
        (),
    );
    assert_eq!(status, "confirmed", "nobody unsubscribed without a token");
    // The login form needs its token too.
    let (cookie, _) = login_form(&app).await;
    let response = app
        .client
        .post(format!("{}/admin/login", app.address))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("name", EDITOR), ("password", PASSWORD)]))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 403);
    // With the token, the same post works.
    let response = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Hello"),
                ("body", "Hi"),
                ("action", "draft"),
                ("idempotency_key", "k1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(issue_count(&app), 1);
}

on_both_backends!(
    the_same_idempotency_key_twice_sends_once,
    super::the_same_idempotency_key_twice_sends_once
);
async fn the_same_idempotency_key_twice_sends_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    let readers = app.add_confirmed("reader", 3);
    let compose = console.get("/admin/issues/new").await;
    let page = compose.text().await.expect("body");
    let key_at = page
        .find("name=\"idempotency_key\" value=\"")
        .expect("the form carries an idempotency key");
    let key: String = page[key_at + 30..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    assert!(key.len() >= 32, "a random key: {key}");
    let fields = [
        ("subject", "Sanctions: what changed this week"),
        ("body", "# Sanctions\n\nThe **new** package, explained."),
        ("format", "markdown"),
        ("idempotency_key", key.as_str()),
        ("action", "send"),
    ];
    // A double click: two posts at once, then a reload of the post.
    let (a, b) = tokio::join!(
        console.post("/admin/issues", &fields),
        console.post("/admin/issues", &fields)
    );
    let c = console.post("/admin/issues", &fields).await;
    let locations: Vec<String> = [a, b, c]
        .iter()
        .map(|r| {
            assert_eq!(r.status(), 303);
            r.headers()["location"]
                .to_str()
                .expect("location")
                .to_string()
        })
        .collect();
    assert!(
        locations.iter().all(|l| l == &locations[0]),
        "{locations:?}"
    );
    assert_eq!(issue_count(&app), 1);
    let issue_id: i64 = locations[0]
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("issue id");
    app.wait_issue_done(issue_id, Duration::from_secs(20)).await;
    for (_, email) in &readers {
        let got = app.received_by(email);
        assert_eq!(got.len(), 1, "{email} got {} copies", got.len());
        assert_eq!(
            got[0].parsed().subject(),
            Some("Sanctions: what changed this week")
        );
        assert!(got[0].html().contains("<strong>new</strong>"));
    }
    // The issue's page shows them as sent.
    let page = console
        .get(&format!("/admin/issues/{issue_id}"))
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("<dd id=\"sent\">3</dd>"), "{page}");
    assert!(page.contains("reader00000@example.org"));
}

on_both_backends!(
    login_sessions_and_passwords,
    super::login_sessions_and_passwords
);
async fn login_sessions_and_passwords(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let first = log_in(&app, true).await;
    // The cookie: not readable by scripts, not sent cross-site, only to the console.
    let (cookie_page, _) = {
        let page = app.get("/admin/login").await;
        let header = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("iria_admin="))
            .expect("cookie")
            .to_string();
        (header, ())
    };
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(
            cookie_page.contains(flag),
            "{flag} missing in {cookie_page}"
        );
    }
    // The session cookie is encrypted: the editor's id is not in it in clear.
    assert!(!first.cookie.contains("editor"));
    // Wrong password, unknown name: the same refusal.
    let (cookie, csrf) = login_form(&app).await;
    let attempt = |name: &'static str, password: &'static str| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        let app = &app;
        async move {
            app.client
                .post(format!("{}/admin/login", app.address))
                .header("Cookie", cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("csrf", &csrf),
                    ("name", name),
                    ("password", password),
                ]))
                .send()
                .await
                .expect("POST")
        }
    };
    let wrong = attempt(EDITOR, "not the password").await;
    let unknown = attempt("nobody", "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let (wrong, unknown) = (
        wrong.text().await.expect("body"),
        unknown.text().await.expect("body"),
    );
    assert!(wrong.contains("do not match"));
    assert!(unknown.contains("do not match"));
    // Unknown names cost as much as known ones (the hash is checked either way): medians of 3.
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        attempt("someone-else", "x").await;
        unknown_times.push(t.elapsed());
        let t = Instant::now();
        iria_news::stores::editors::verify(&mut app.conn(), EDITOR, "x").expect("verify");
        known_times.push(t.elapsed());
    }
    known_times.sort();
    unknown_times.sort();
    assert!(
        unknown_times[1] * 3 >= known_times[1],
        "an unknown name answered in {:?}, a known one is checked in {:?}",
        unknown_times[1],
        known_times[1]
    );
    // Five failures on the account (counting the one above): locked, even with the password.
    for _ in 0..4 {
        attempt(EDITOR, "still wrong").await;
    }
    let locked = attempt(EDITOR, PASSWORD).await;
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
    // The existing session goes on.
    assert_eq!(first.get("/admin").await.status(), 200);
    // Changing the password ends the other sessions; this one goes on.
    diesel::delete(iria_news::foundation::db::schema::login_failures::table)
        .execute(&mut app.conn())
        .expect("clear failures");
    let second = log_in(&app, false).await;
    let short = first
        .post(
            "/admin/password",
            &[("current", PASSWORD), ("new", "short"), ("repeat", "short")],
        )
        .await;
    assert_eq!(short.status(), 400);
    let changed = first
        .post(
            "/admin/password",
            &[
                ("current", PASSWORD),
                ("new", "a much longer new password"),
                ("repeat", "a much longer new password"),
            ],
        )
        .await;
    assert_eq!(changed.status(), 200);
    let renewed = session_cookie(&changed).expect("the changing session gets a new cookie");
    assert_eq!(
        second.get("/admin").await.status(),
        303,
        "the other session ended"
    );
    let first = Console {
        app: &app,
        cookie: renewed,
        csrf: first.csrf.clone(),
    };
    assert_eq!(first.get("/admin").await.status(), 200);
    // Logging out ends the session: its cookie is cleared.
    let out = first.post("/admin/logout", &[]).await;
    assert_eq!(out.status(), 303);
    let cleared = out
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("iria_admin=;") || v.contains("Max-Age=0"));
    assert!(cleared, "the logout clears the cookie");
}

on_both_backends!(
    compose_preview_test_and_schedule,
    super::compose_preview_test_and_schedule
);
async fn compose_preview_test_and_schedule(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    app.add_subscribers("reader", 2, |i| {
        (
            None,
            if i == 0 {
                "Terrorism".into()
            } else {
                String::new()
            },
        )
    });
    app.add_subscribers("other", 1, |_| (None, "Defense".into()));
    // Malformed and unsafe HTML is sanitised, never sent broken.
    let body = "<h2>Unclosed <b>bold<script>alert(1)</script><p onclick=\"x()\">Para <a href=\"javascript:evil()\">link</a>";
    let preview = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Weekly note"),
                ("body", body),
                ("format", "html"),
                ("action", "preview"),
                ("idempotency_key", "p1"),
            ],
        )
        .await;
    assert_eq!(preview.status(), 200);
    let page = preview.text().await.expect("body");
    // The preview (the form below it keeps what the editor typed, escaped).
    let shown = &page
        [page.find("id=\"preview\"").expect("preview")..page.find("id=\"compose\"").expect("form")];
    assert!(shown.contains("id=\"preview-text\""));
    assert!(shown.contains("Unclosed"), "{shown}");
    assert!(!shown.contains("alert(1)"), "the script is gone: {shown}");
    assert!(!shown.contains("javascript:evil"));
    assert!(!shown.contains("onclick"));
    // Every tag opened in the body is closed in the HTML sent.
    let srcdoc = shown
        .split("srcdoc=\"")
        .nth(1)
        .expect("srcdoc")
        .split('"')
        .next()
        .expect("end");
    let html = srcdoc
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    for tag in ["b", "h2", "p", "a"] {
        assert_eq!(
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count(),
            html.matches(&format!("</{tag}>")).count(),
            "<{tag}> balanced in {html}"
        );
    }
    assert_eq!(issue_count(&app), 0, "a preview stores nothing");
    // A test copy to one address, at once.
    let test = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Weekly note"),
                ("body", "Hello *readers*"),
                ("action", "test"),
                ("test_address", "desk@iria.test"),
                ("idempotency_key", "t1"),
            ],
        )
        .await;
    assert_eq!(test.status(), 200);
    let copy = app.wait_for_mail_to("desk@iria.test", 1).await;
    assert_eq!(copy.parsed().subject(), Some("[Test] Weekly note"));
    assert!(copy.html().contains("<em>readers</em>"));
    assert_eq!(issue_count(&app), 0, "a test copy stores nothing");
    // A bad test address is an error on the page.
    let bad = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Weekly note"),
                ("body", "Hello"),
                ("action", "test"),
                ("test_address", "not an address"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 400);
    // Empty subject: refused, the body is kept in the form.
    let empty = console
        .post(
            "/admin/issues",
            &[("subject", " "), ("body", "Keep me"), ("action", "send")],
        )
        .await;
    assert_eq!(empty.status(), 400);
    assert!(empty.text().await.expect("body").contains("Keep me"));
    // Scheduled for later, to one topic: nothing goes until the time comes.
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M");
    let scheduled = console
        .post(
            "/admin/issues",
            &[
                ("subject", "Terrorism brief"),
                ("body", "For the terrorism desk."),
                ("topics", "Terrorism"),
                ("send_at", &later.to_string()),
                ("action", "schedule"),
                ("idempotency_key", "s1"),
            ],
        )
        .await;
    assert_eq!(scheduled.status(), 303);
    let (id, status, send_at): (i64, String, Option<chrono::NaiveDateTime>) = issues::table
        .select((issues::id, issues::status, issues::send_at))
        .first(&mut app.conn())
        .expect("issue");
    assert_eq!(status, "draft");
    assert!(send_at.is_some());
    assert_eq!(
        app.count_deliveries(),
        0,
        "nothing queued before its time (a test copy is not in the ledger)"
    );
    // The time comes (the check the server runs every 15 s, run here with a later clock).
    let queued = iria_news::stores::issues::queue_due(
        &mut app.conn(),
        chrono::Utc::now().naive_utc() + chrono::Duration::days(3),
    )
    .expect("queue due");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].issue_id, id);
    // The topic's reader and the one who chose no topic (all); not the defence reader.
    assert_eq!(queued[0].recipients, 2);
    // Sending it again from its page does nothing more.
    let again = console.post(&format!("/admin/issues/{id}/send"), &[]).await;
    assert_eq!(again.status(), 303);
    assert!(again.headers()["location"]
        .to_str()
        .expect("location")
        .ends_with("not-draft"));
    app.wait_issue_done(id, Duration::from_secs(20)).await;
    assert_eq!(app.received_by("other00000@example.org").len(), 0);
    assert_eq!(app.received_by("reader00000@example.org").len(), 1);
}

on_both_backends!(
    csv_import_reports_bad_rows_and_keeps_good_ones,
    super::csv_import_reports_bad_rows_and_keeps_good_ones
);
async fn csv_import_reports_bad_rows_and_keeps_good_ones(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    app.add_confirmed("known", 1);
    // An address that left must not come back through an import.
    let left = app.add_confirmed("left", 1);
    iria_news::stores::subscriptions::records::unsubscribe(&mut app.conn(), left[0].0, "test")
        .expect("unsubscribe");
    let csv = "email,name,topics\n\
               ada@example.org,Ada Lovelace,Terrorism;Defense\n\
               not-an-address,Bob,\n\
               known00000@example.org,Known,\n\
               left00000@example.org,Left,\n\
               carl@example.org,Carl,Astrology\n\
               \"dora@example.org\",\"Dora, the explorer\",\n\
               ada@example.org,Ada again,\n";
    let sheet = "Conference sign-up sheet, Brussels 2026";
    let report = console.import_and_wait(csv, sheet, "held").await;
    assert!(report.contains("data-status=\"done\""), "{report}");
    assert!(
        report.contains("<span id=\"confirmed\">2</span>"),
        "{report}"
    );
    assert!(
        report.contains("<span id=\"existing\">2</span>"),
        "{report}"
    );
    assert!(
        report.contains("<span id=\"rejected\">3</span>"),
        "{report}"
    );
    for (line, what) in [
        (3, "not-an-address"),
        (6, "Astrology"),
        (8, "earlier in the file"),
    ] {
        assert!(
            report.contains(&format!("<td class=\"num\">{line}</td><td>")) && report.contains(what),
            "line {line} ({what}) reported: {report}"
        );
    }
    let (status, name, topics) = app.subscriber("ada@example.org").expect("ada imported");
    assert_eq!(status, "confirmed");
    assert_eq!(name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(topics, "Defense,Terrorism");
    assert_eq!(
        app.subscriber("dora@example.org").expect("dora").0,
        "confirmed"
    );
    assert_eq!(
        app.subscriber("left00000@example.org").expect("left").0,
        "unsubscribed"
    );
    let source: String = consents::table
        .inner_join(subscribers::table)
        .filter(subscribers::email.eq("ada@example.org"))
        .select(consents::source)
        .first(&mut app.conn())
        .expect("consent");
    assert_eq!(source, "import: Conference sign-up sheet, Brussels 2026");
    assert!(
        app.received_by("ada@example.org").is_empty(),
        "consent held: no email"
    );
    // Without consent held: pending, and a confirmation email goes out.
    let report = console
        .import_and_wait("erin@example.org\n", sheet, "confirm")
        .await;
    assert!(report.contains("<span id=\"invited\">1</span>"), "{report}");
    assert_eq!(
        app.subscriber("erin@example.org").expect("erin").0,
        "pending"
    );
    let mail = app.wait_for_mail_to("erin@example.org", 1).await;
    assert!(mail
        .confirmation_link()
        .contains("/subscriptions/confirm?token="));
    // Too large: 413, nothing imported.
    let big = "x@example.org\n".repeat(iria_news::http::admin::MAX_IMPORT_BYTES / 14 + 1024);
    let before = app.count_subscribers();
    let response = console.import_csv(&big, sheet, "held").await;
    assert_eq!(response.status(), 413);
    assert_eq!(app.count_subscribers(), before);
    // The export has everyone, formulas defused.
    iria_news::stores::subscriptions::records::update_preferences(
        &mut app.conn(),
        app.subscriber_id("dora@example.org"),
        iria_news::foundation::domain::SubscriberName::parse("=HYPERLINK(\"x\")")
            .expect("name")
            .as_ref(),
        &iria_news::foundation::domain::Topics::default(),
    )
    .expect("rename");
    let export = console.get("/admin/subscribers/export.csv").await;
    assert_eq!(export.status(), 200);
    assert!(export.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/csv"));
    let text = export.text().await.expect("csv");
    assert!(text.starts_with("email,name,status,topics"));
    assert!(text.contains("ada@example.org,Ada Lovelace,confirmed,Defense;Terrorism"));
    assert!(text.contains("'=HYPERLINK"), "{text}");
    // Search and filters.
    let found = console
        .get("/admin/subscribers?q=lovelace&status=confirmed&topic=Defense")
        .await
        .text()
        .await
        .expect("body");
    assert!(found.contains("ada@example.org"));
    assert!(!found.contains("dora@example.org"));
    assert!(found.contains("1 subscriber(s)"));
}

on_both_backends!(
    subscriber_record_unsubscribe_and_erase,
    super::subscriber_record_unsubscribe_and_erase
);
async fn subscriber_record_unsubscribe_and_erase(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    app.sign_up("reader@example.org").await;
    let id = app.subscriber_id("reader@example.org");
    let page = console
        .get(&format!("/admin/subscribers/{id}"))
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("reader@example.org"));
    assert!(
        page.contains("iria-news-tests/1.0"),
        "the consent record is shown"
    );
    let out = console
        .post(&format!("/admin/subscribers/{id}/unsubscribe"), &[])
        .await;
    assert_eq!(out.status(), 303);
    assert_eq!(
        app.subscriber("reader@example.org").expect("row").0,
        "unsubscribed"
    );
    let erased = console
        .post(&format!("/admin/subscribers/{id}/erase"), &[])
        .await;
    assert_eq!(erased.status(), 303);
    assert!(
        app.subscriber("reader@example.org").is_none(),
        "the address is gone"
    );
    assert_eq!(console.get("/admin/subscribers/999999").await.status(), 404);
    assert_eq!(console.get("/admin/subscribers/abc").await.status(), 404);
}

on_both_backends!(
    articles_and_the_digest_page,
    super::articles_and_the_digest_page
);
async fn articles_and_the_digest_page(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    let readers = app.add_confirmed("reader", 2);
    let made = console
        .post(
            "/admin/articles",
            &[
                ("title", "Sahel: the new coalition"),
                ("link", "https://iria.example/sahel"),
                ("summary", "What the coalition changes."),
                ("categories", "Terrorism, Africa"),
            ],
        )
        .await;
    assert_eq!(made.status(), 303);
    let location = made.headers()["location"]
        .to_str()
        .expect("loc")
        .to_string();
    let bad = console
        .post(
            "/admin/articles",
            &[("title", "No link"), ("link", "ftp://x"), ("summary", "x")],
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("body").contains("No link"));
    let second = console
        .post(
            "/admin/articles",
            &[
                ("title", "Leave me out"),
                ("link", "https://iria.example/out"),
            ],
        )
        .await;
    let second_id = second.headers()["location"]
        .to_str()
        .expect("loc")
        .trim_start_matches("/admin/articles/")
        .trim_end_matches("?notice=saved")
        .to_string();
    let excluded = console
        .post(
            &format!("/admin/articles/{second_id}/exclude"),
            &[("excluded", "yes")],
        )
        .await;
    assert_eq!(excluded.status(), 303);
    // Edit the first one's title.
    let path = location.trim_end_matches("?notice=saved");
    let edited = console
        .post(
            path,
            &[
                ("title", "Sahel: the coalition, a month on"),
                ("link", "https://iria.example/sahel"),
                ("categories", "Terrorism"),
            ],
        )
        .await;
    assert_eq!(edited.status(), 303);
    let list = console
        .get("/admin/articles")
        .await
        .text()
        .await
        .expect("body");
    assert!(list.contains("Sahel: the coalition, a month on"));
    assert!(list.contains("excluded"));
    // The digest page shows what would go out; send it now, then again: once.
    let page = console
        .get("/admin/digest")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("Sahel: the coalition, a month on"));
    assert!(!page.contains("Leave me out"));
    let sent = console.post("/admin/digest/send", &[]).await;
    assert_eq!(sent.headers()["location"], "/admin/digest?notice=queued");
    let again = console.post("/admin/digest/send", &[]).await;
    assert_eq!(again.headers()["location"], "/admin/digest?notice=done");
    for (_, email) in &readers {
        let mail = app.wait_for_mail_to(email, 1).await;
        assert!(mail.text().contains("Sahel: the coalition, a month on"));
        assert!(!mail.text().contains("Leave me out"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.received_by(&readers[0].1).len(), 1, "one digest");
    let page = console
        .get("/admin/digest")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("made or skipped already"));
    let dashboard = console.get("/admin").await.text().await.expect("body");
    assert!(dashboard.contains("<svg class=\"chart\""));
    assert!(dashboard.contains("<dd id=\"count-confirmed\">2</dd>"));
    assert!(dashboard.contains("week of"), "the digest issue is listed");
}

on_both_backends!(
    resend_to_the_failed_from_the_issue_page,
    super::resend_to_the_failed_from_the_issue_page
);
async fn resend_to_the_failed_from_the_issue_page(backend: Backend) {
    use iria_news::foundation::db::schema::deliveries;
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    let readers = app.add_confirmed("reader", 3);
    let queued = app.queue_issue("Resend me", "<p>Twice if need be</p>");
    app.wait_issue_done(queued.issue_id, Duration::from_secs(20))
        .await;
    // Say the SMTP server had refused one of them for good (as the worker records it).
    let failed_id = readers[1].0;
    diesel::update(
        deliveries::table
            .filter(deliveries::issue_id.eq(queued.issue_id))
            .filter(deliveries::subscriber_id.eq(failed_id)),
    )
    .set((
        deliveries::status.eq("failed"),
        deliveries::last_error.eq(Some("550 mailbox unavailable")),
    ))
    .execute(&mut app.conn())
    .expect("mark failed");
    let page = console
        .get(&format!("/admin/issues/{}?status=failed", queued.issue_id))
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("<dd id=\"failed\">1</dd>"));
    assert!(page.contains(&readers[1].1), "the failed one is listed");
    assert!(
        !page.contains(&readers[0].1),
        "only the failed ones are listed"
    );
    assert!(page.contains("550 mailbox unavailable"));
    assert!(page.contains("Resend to the 1 failed"));
    let retried = console
        .post(&format!("/admin/issues/{}/retry", queued.issue_id), &[])
        .await;
    assert_eq!(retried.status(), 303);
    app.wait_issue_done(queued.issue_id, Duration::from_secs(20))
        .await;
    assert_eq!(app.received_by(&readers[1].1).len(), 2, "sent again");
    assert_eq!(app.received_by(&readers[0].1).len(), 1, "the others once");
    let statuses = app.delivery_statuses(queued.issue_id);
    assert!(statuses.iter().all(|(_, s)| s == "sent"), "{statuses:?}");
}

on_both_backends!(
    a_large_import_lands_whole,
    super::a_large_import_lands_whole
);
async fn a_large_import_lands_whole(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    // More rows than one write transaction takes, with bad rows in between.
    let mut csv = String::from("email,name\n");
    for i in 0..1_234 {
        if i % 100 == 7 {
            csv.push_str("broken-row\n");
        }
        csv.push_str(&format!("bulk{i:05}@example.org,Reader {i}\n"));
    }
    let report = console
        .import_and_wait(&csv, "2025 print subscribers", "held")
        .await;
    assert!(
        report.contains("<span id=\"confirmed\">1234</span>"),
        "{}",
        &report[..2000.min(report.len())]
    );
    assert!(report.contains("<span id=\"rejected\">13</span>"));
    assert_eq!(app.count_subscribers(), 1_234);
    assert_eq!(app.count_consents(), 1_234);
}
