//! The sign-up box on the site's pages (issue 15): `return_to` back to the site, the JSON answer
//! for a script, CORS for the site's origins only, the console page with the HTML to copy, and
//! the whole journey in a real browser from a page served by another origin ([`in_browser`]).

mod in_browser;

use crate::helpers::{form, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

/// The site's origin in these tests (never contacted: the browser is not involved here).
pub const SITE: &str = "https://www.ir-ia.test";

/// An app whose site is [`SITE`] (plus `extra` origins).
async fn app_for_site(backend: Backend, extra: &[&str]) -> Option<TestApp> {
    let origins = std::iter::once(SITE)
        .chain(extra.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    spawn_app_with(
        backend,
        AppOptions {
            env: vec![("IRIA_ALLOWED_ORIGINS", origins)],
            ..Default::default()
        },
    )
    .await
}

/// Posts a form to `/subscriptions` with extra headers.
async fn post(
    app: &TestApp,
    content_type: &str,
    headers: &[(&str, &str)],
    body: String,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/subscriptions", app.address))
        .header("Content-Type", content_type)
        .header("User-Agent", "iria-news-tests/1.0");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(body)
        .send()
        .await
        .expect("POST /subscriptions")
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
/// What Chromium sends with a form post.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header").to_string())
}

async fn return_to_an_allowed_origin_goes_back_there(backend: Backend) {
    let Some(app) = app_for_site(backend, &[]).await else {
        return;
    };
    let page = format!("{SITE}/2024/08/us-iraq-defense-chiefs/?p=7");
    let response = app
        .post_subscriptions(form(&[
            ("email", "Reader@Example.org"),
            ("source", "site-box"),
            ("return_to", &page),
        ]))
        .await;
    assert_eq!(response.status(), 303);
    let back = format!("{page}&subscribed=1");
    assert_eq!(
        header(&response, "location").as_deref(),
        Some(back.as_str())
    );
    assert_eq!(
        app.subscriber("reader@example.org").map(|s| s.0).as_deref(),
        Some("pending")
    );
    assert_eq!(app.count_deliveries(), 1, "the confirmation is queued");
    let mail = app.wait_for_mail_to("reader@example.org", 1).await;
    assert!(mail.confirmation_link().starts_with(&app.address));

    // An address already confirmed, and a bot, are sent back just the same.
    app.add_confirmed("known", 1);
    let known = app
        .post_subscriptions(form(&[
            ("email", "known00000@example.org"),
            ("return_to", &page),
        ]))
        .await;
    assert_eq!(known.status(), 303);
    assert_eq!(header(&known, "location").as_deref(), Some(back.as_str()));
    let bot = app
        .post_subscriptions(form(&[
            ("email", "bot@example.org"),
            ("website", "http://spam.example"),
            ("return_to", &page),
        ]))
        .await;
    assert_eq!(bot.status(), 303);
    assert_eq!(header(&bot, "location").as_deref(), Some(back.as_str()));
    assert_eq!(app.subscriber("bot@example.org"), None);

    // A page without a query gets one; an old `subscribed` gives way.
    let response = app
        .post_subscriptions(form(&[
            ("email", "second@example.org"),
            ("return_to", &format!("{SITE}/?subscribed=0")),
        ]))
        .await;
    assert_eq!(
        header(&response, "location"),
        Some(format!("{SITE}/?subscribed=1"))
    );
}
on_both_backends!(
    return_to_an_allowed_origin_goes_back_there,
    super::return_to_an_allowed_origin_goes_back_there
);

async fn return_to_anywhere_else_is_ignored(backend: Backend) {
    let Some(app) = app_for_site(backend, &[]).await else {
        return;
    };
    let too_long = format!("{SITE}/{}", "a".repeat(2001));
    let refused = [
        "https://evil.example/",
        "https://www.ir-ia.test.evil.example/",
        "http://www.ir-ia.test/",
        "https://www.ir-ia.test:8443/",
        "/2024/08/article/",
        "//evil.example/",
        "javascript:alert(document.cookie)",
        "https://www.ir-ia.test/\r\nSet-Cookie: a=b",
        "https://www.ir-ia.test@evil.example/",
        too_long.as_str(),
    ];
    for (i, return_to) in refused.iter().enumerate() {
        let email = format!("reader{i}@example.org");
        let response = app
            .post_subscriptions(form(&[("email", &email), ("return_to", return_to)]))
            .await;
        assert_eq!(response.status(), 200, "{return_to:?}");
        assert_eq!(header(&response, "location"), None, "{return_to:?}");
        let body = response.text().await.expect("body");
        assert!(body.contains("Check your inbox"), "{return_to:?}");
        assert_eq!(
            app.subscriber(&email).map(|s| s.0).as_deref(),
            Some("pending"),
            "the sign-up itself is taken"
        );
    }

    // Without IRIA_ALLOWED_ORIGINS, no return_to is followed.
    let Some(plain) = spawn_app_with(backend, AppOptions::default()).await else {
        return;
    };
    let response = plain
        .post_subscriptions(form(&[
            ("email", "a@example.org"),
            ("return_to", &format!("{SITE}/")),
        ]))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "location"), None);
}
on_both_backends!(
    return_to_anywhere_else_is_ignored,
    super::return_to_anywhere_else_is_ignored
);

async fn a_mistake_shows_the_form_and_keeps_the_way_back(backend: Backend) {
    let Some(app) = app_for_site(backend, &[]).await else {
        return;
    };
    let page = format!("{SITE}/about/");
    let response = app
        .post_subscriptions(form(&[
            ("email", "ada@localhost"),
            ("source", "site-box"),
            ("return_to", &page),
        ]))
        .await;
    assert_eq!(response.status(), 400, "errors are unchanged");
    // Our form page may send the reader back to the site once the mistake is fixed: Chromium
    // applies `form-action` to the redirect after a post.
    let policy = header(&response, "content-security-policy").expect("a CSP");
    assert!(
        policy.contains(&format!("form-action 'self' {SITE}")),
        "{policy}"
    );
    let body = response.text().await.expect("body");
    assert!(
        body.contains("must be a full domain"),
        "the mistake is said"
    );
    assert!(
        body.contains(&format!(
            r#"<input type="hidden" name="return_to" value="{page}">"#
        )),
        "the next try goes back to the site"
    );
    assert!(body.contains(r#"name="source" value="site-box""#));
    assert_eq!(app.count_subscribers(), 0);

    // A return_to that would not be followed is not carried along either.
    let response = app
        .post_subscriptions(form(&[
            ("email", "ada@localhost"),
            ("return_to", "https://evil.example/"),
        ]))
        .await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.expect("body");
    assert!(!body.contains("name=\"return_to\""), "{body}");
    assert!(!body.contains("evil.example"));
}
on_both_backends!(
    a_mistake_shows_the_form_and_keeps_the_way_back,
    super::a_mistake_shows_the_form_and_keeps_the_way_back
);

async fn json_sign_up_answers_202_the_same_for_every_address(backend: Backend) {
    let Some(app) = app_for_site(backend, &[]).await else {
        return;
    };
    app.add_confirmed("known", 1);
    let accept = [("Accept", "application/json")];
    let answers = [
        // A new address, as the site's script sends it (a form body; no preflight needed).
        post(
            &app,
            FORM,
            &accept,
            form(&[
                ("email", "New@Example.org"),
                ("topics", "Europe"),
                ("return_to", &format!("{SITE}/")),
            ]),
        )
        .await,
        // The same address again, while it is pending.
        post(&app, FORM, &accept, form(&[("email", "new@example.org")])).await,
        // An address already confirmed.
        post(
            &app,
            FORM,
            &accept,
            form(&[("email", "known00000@example.org")]),
        )
        .await,
        // A JSON body.
        post(
            &app,
            JSON,
            &accept,
            serde_json::json!({
                "email": "json@example.org",
                "name": "Jay Son",
                "topics": ["Asia", "Defense"],
                "source": "site-box-script",
            })
            .to_string(),
        )
        .await,
        // The script's Accept header in another form.
        post(
            &app,
            JSON,
            &[("Accept", "application/json, text/plain, */*")],
            serde_json::json!({"email": "axios@example.org"}).to_string(),
        )
        .await,
    ];
    let mut bodies = Vec::new();
    for response in answers {
        assert_eq!(response.status(), 202);
        assert_eq!(
            header(&response, "location"),
            None,
            "no redirect for a script"
        );
        assert!(
            header(&response, "content-type").is_some_and(|t| t.starts_with("application/json"))
        );
        bodies.push(response.text().await.expect("body"));
    }
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "identical answers: {bodies:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&bodies[0]).expect("JSON");
    assert_eq!(json, serde_json::json!({"status": "confirmation_sent"}));

    assert_eq!(
        app.subscriber("new@example.org"),
        Some(("pending".into(), None, "Europe".into()))
    );
    // The name waits with the consent until the address is confirmed.
    assert_eq!(
        app.subscriber("json@example.org"),
        Some(("pending".into(), None, "Asia,Defense".into()))
    );
    assert_eq!(
        app.consent_name("json@example.org").as_deref(),
        Some("Jay Son")
    );
    assert_eq!(
        app.subscriber("known00000@example.org")
            .map(|s| s.0)
            .as_deref(),
        Some("confirmed"),
        "a confirmed subscriber stays confirmed"
    );
    let mail = app.wait_for_mail_to("json@example.org", 1).await;
    assert!(mail.confirmation_link().starts_with(&app.address));
    let source: String = {
        use diesel::prelude::*;
        use iria_news::foundation::db::schema::{consents, subscribers};
        consents::table
            .inner_join(subscribers::table)
            .filter(subscribers::email.eq("json@example.org"))
            .select(consents::source)
            .first(&mut app.conn())
            .expect("consent")
    };
    assert_eq!(source, "site-box-script");
}
on_both_backends!(
    json_sign_up_answers_202_the_same_for_every_address,
    super::json_sign_up_answers_202_the_same_for_every_address
);

/// The body of a problem details answer, after checking its media type and status member.
async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let json: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(json["status"], status);
    assert!(json["title"].as_str().is_some_and(|t| !t.is_empty()));
    json
}

async fn json_refusals_are_problem_details(backend: Backend) {
    let Some(app) = app_for_site(backend, &[]).await else {
        return;
    };
    let accept = [("Accept", "application/json")];
    let bad = problem(
        post(&app, FORM, &accept, form(&[("email", "not an address")])).await,
        400,
    )
    .await;
    assert_eq!(bad["errors"][0]["field"], "email", "{bad}");
    assert!(bad["detail"].as_str().is_some_and(|d| !d.is_empty()));
    let topic = problem(
        post(
            &app,
            JSON,
            &accept,
            serde_json::json!({"email": "t@example.org", "topics": ["Gardening"]}).to_string(),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(topic["errors"][0]["field"], "topics", "{topic}");
    let unreadable = problem(post(&app, JSON, &accept, "{\"email\": ".into()).await, 400).await;
    assert!(unreadable["detail"]
        .as_str()
        .is_some_and(|d| d.contains("JSON")));
    problem(
        post(&app, "text/plain", &accept, "email=x".into()).await,
        415,
    )
    .await;
    // A JSON body from a caller that does not ask for JSON is not the form (as before: 415).
    let page = post(
        &app,
        JSON,
        &[("Accept", BROWSER_ACCEPT)],
        serde_json::json!({"email": "a@example.org"}).to_string(),
    )
    .await;
    assert_eq!(page.status(), 415);
    assert!(header(&page, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert_eq!(app.count_subscribers(), 0, "nothing stored");

    // A browser's form post still gets the page (unchanged).
    let page = post(
        &app,
        FORM,
        &[("Accept", BROWSER_ACCEPT)],
        form(&[("email", "not an address")]),
    )
    .await;
    assert_eq!(page.status(), 400);
    assert!(header(&page, "content-type").is_some_and(|t| t.starts_with("text/html")));

    // Past the per-address limit (3 an hour): 429, in JSON, with the time to wait.
    for _ in 0..3 {
        let ok = post(&app, FORM, &accept, form(&[("email", "many@example.org")])).await;
        assert_eq!(ok.status(), 202);
    }
    let response = post(&app, FORM, &accept, form(&[("email", "many@example.org")])).await;
    assert_eq!(header(&response, "retry-after").as_deref(), Some("3600"));
    problem(response, 429).await;
}
on_both_backends!(
    json_refusals_are_problem_details,
    super::json_refusals_are_problem_details
);

/// `OPTIONS` as a browser sends it before a cross-origin post with a JSON body.
async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, format!("{}{path}", app.address))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,accept")
        .send()
        .await
        .expect("OPTIONS")
}

fn cors_headers(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn cors_answers_the_sites_origins_only(backend: Backend) {
    let Some(app) = app_for_site(backend, &["http://127.0.0.1:8081"]).await else {
        return;
    };
    // The site's preflight: allowed, for POST with Content-Type and Accept, for a while.
    let response = preflight(&app, "/subscriptions", SITE).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(SITE)
    );
    assert_eq!(
        header(&response, "access-control-allow-methods").as_deref(),
        Some("POST")
    );
    let allowed_headers = header(&response, "access-control-allow-headers")
        .expect("Access-Control-Allow-Headers")
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("content-type") && allowed_headers.contains("accept"));
    assert!(header(&response, "access-control-max-age")
        .and_then(|a| a.parse::<u32>().ok())
        .is_some_and(|a| a > 0));
    assert!(header(&response, "vary").is_some_and(|v| v.contains("Origin")));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
    let second = preflight(&app, "/subscriptions", "http://127.0.0.1:8081").await;
    assert_eq!(
        header(&second, "access-control-allow-origin").as_deref(),
        Some("http://127.0.0.1:8081")
    );

    // Another origin's preflight: no CORS header at all, so its browser sends nothing.
    for foreign in [
        "https://evil.example",
        "http://www.ir-ia.test",
        "https://www.ir-ia.test.evil.example",
        "null",
    ] {
        let response = preflight(&app, "/subscriptions", foreign).await;
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "{foreign}");
    }

    // The post itself: the site's page can read the answer, another's cannot.
    let json = [("Accept", "application/json"), ("Origin", SITE)];
    let response = post(&app, FORM, &json, form(&[("email", "a@example.org")])).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(SITE)
    );
    assert!(header(&response, "vary").is_some_and(|v| v.contains("Origin")));
    let refused = post(
        &app,
        FORM,
        &[("Accept", "application/json"), ("Origin", SITE)],
        form(&[("email", "bad")]),
    )
    .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        header(&refused, "access-control-allow-origin").as_deref(),
        Some(SITE),
        "the site's script can read what is wrong"
    );
    let foreign = [
        ("Accept", "application/json"),
        ("Origin", "https://evil.example"),
    ];
    let response = post(&app, FORM, &foreign, form(&[("email", "b@example.org")])).await;
    assert_eq!(response.status(), 202, "the sign-up itself is the same");
    assert_eq!(cors_headers(&response), Vec::<String>::new());

    // Only /subscriptions: not the console, not the API, not the confirmation.
    for path in [
        "/admin/login",
        "/api/v1/subscribers",
        "/subscriptions/confirm",
    ] {
        let response = preflight(&app, path, SITE).await;
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "{path}");
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .header("Origin", SITE)
            .send()
            .await
            .expect("GET");
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "{path}");
    }

    // Without IRIA_ALLOWED_ORIGINS, nobody gets CORS.
    let Some(plain) = spawn_app_with(backend, AppOptions::default()).await else {
        return;
    };
    let response = preflight(&plain, "/subscriptions", SITE).await;
    assert_eq!(cors_headers(&response), Vec::<String>::new());
}
on_both_backends!(
    cors_answers_the_sites_origins_only,
    super::cors_answers_the_sites_origins_only
);

/// The text of the `<textarea id="{id}">` of a page, its character references decoded as a
/// browser shows it.
pub fn textarea(html: &str, id: &str) -> String {
    let open = format!("<textarea id=\"{id}\"");
    let start = html.find(&open).expect("the textarea");
    let start = start + html[start..].find('>').expect("end of the tag") + 1;
    let end = start + html[start..].find("</textarea>").expect("its end");
    decode_references(&html[start..end])
}

/// `&lt;`, `&#60;`, `&#x3C;` and the like made characters again.
fn decode_references(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..end];
        let decoded = match name {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name
                .strip_prefix("#x")
                .or(name.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

async fn the_console_shows_the_form_to_copy(backend: Backend) {
    let Some(app) = app_for_site(backend, &[]).await else {
        return;
    };
    let console = crate::console::log_in(&app, true).await;
    let response = console.get("/admin/signup-form").await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.expect("body");
    assert!(
        page.contains(r#"<a href="/admin/signup-form" aria-current="page">Sign-up form</a>"#),
        "in the navigation"
    );
    assert!(!page.contains("id=\"origins-off\""));
    let plain = textarea(&page, "snippet-plain");
    assert!(
        plain.contains(&format!(
            r#"<form id="iria-signup" class="iria-signup" method="post" action="{}/subscriptions">"#,
            app.address
        )),
        "{plain}"
    );
    assert!(plain.contains(r#"<input type="email" id="iria-signup-email" name="email" required"#));
    assert!(plain.contains(r#"name="name""#));
    for topic in ["Middle East", "Europe", "Foreign Affairs"] {
        assert!(
            plain.contains(&format!(
                r#"<input type="checkbox" name="topics" value="{topic}">"#
            )),
            "{topic}"
        );
    }
    assert!(plain.contains(r#"<input type="hidden" name="source" value="site-box">"#));
    assert!(
        plain.contains(&format!(
            r#"<input type="hidden" name="return_to" value="{SITE}/">"#
        )),
        "return_to defaults to the first allowed origin"
    );
    assert!(!plain.contains("<script"), "no script needed");
    let script = textarea(&page, "snippet-script");
    assert!(script.contains(&format!(r#"action="{}/subscriptions""#, app.address)));
    assert!(script.contains("fetch(form.action"));
    assert!(script.contains(r#""Accept": "application/json""#));

    // The editor names the page to come back to.
    let chosen = format!("{SITE}/thank-you/?from=box&x=<b>");
    let url = format!(
        "/admin/signup-form?{}",
        form(&[("return_to", &chosen), ("source", "footer")])
    );
    let page = console.get(&url).await.text().await.expect("body");
    let plain = textarea(&page, "snippet-plain");
    let marker = r#"name="return_to" value=""#;
    let value = plain
        .find(marker)
        .map(|at| &plain[at + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .expect("a return_to field");
    assert!(
        !value.contains('<'),
        "escaped inside the HTML to copy: {value}"
    );
    assert_eq!(decode_references(value), chosen);

    assert!(plain.contains(r#"name="source" value="footer""#));
    assert!(!page.contains("id=\"return-to-warning\""));
    let page = console
        .get("/admin/signup-form?return_to=https%3A%2F%2Fevil.example%2F")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("id=\"return-to-warning\""),
        "a foreign page is flagged"
    );

    // Without IRIA_ALLOWED_ORIGINS: a note that return_to and CORS are off, and no return_to.
    let Some(plain_app) = spawn_app_with(backend, AppOptions::default()).await else {
        return;
    };
    let console = crate::console::log_in(&plain_app, true).await;
    let page = console
        .get("/admin/signup-form")
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("id=\"origins-off\""));
    assert!(page.contains("<code>IRIA_ALLOWED_ORIGINS</code> is not set"));
    let plain = textarea(&page, "snippet-plain");
    assert!(plain.contains(&format!(r#"action="{}/subscriptions""#, plain_app.address)));
    assert!(!plain.contains("return_to"), "{plain}");
}
on_both_backends!(
    the_console_shows_the_form_to_copy,
    super::the_console_shows_the_form_to_copy
);
