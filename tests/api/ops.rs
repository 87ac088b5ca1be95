//! What operators rely on: metrics, readiness, security headers on every page, JSON logs with a
//! request id, a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{form, spawn_app, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

/// Scrapes `/metrics` as a scraper does: with a token holding `metrics:read` (issue 14: never
/// anonymously on the public listener).
async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let token = iria_news::stores::api_tokens::create_scoped(
        &mut app.conn(),
        "scraper",
        &[iria_news::foundation::access::Scope::MetricsRead],
        None,
        None,
    )
    .expect("token");
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let body = response.text().await.expect("body");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn metrics_parse_and_move_after_a_signup_and_a_send(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let before = scrape(&app).await;
    assert_eq!(value(&before, "iria_messages_sent_total", None), 0.0);
    app.post_subscriptions(form(&[("email", "m@example.org")]))
        .await;
    app.wait_for_mail_to("m@example.org", 1).await;
    app.add_confirmed("reader", 3);
    let queued = app.queue_issue("IRIA News this week", "<p>News</p>");
    app.wait_issue_done(queued.issue_id, Duration::from_secs(30))
        .await;
    let after = scrape(&app).await;
    assert_eq!(
        value(&after, "iria_messages_sent_total", None),
        4.0,
        "the confirmation and three copies"
    );
    assert_eq!(
        value(&after, "iria_smtp_replies_total", Some(("class", "2xx"))),
        4.0
    );
    assert_eq!(
        value(
            &after,
            "iria_http_requests_total",
            Some(("route", "/subscriptions"))
        ),
        1.0
    );
    assert_eq!(
        value(&after, "iria_subscribers", Some(("status", "pending"))),
        1.0
    );
    assert_eq!(
        value(&after, "iria_subscribers", Some(("status", "confirmed"))),
        3.0
    );
    assert_eq!(
        value(&after, "iria_deliveries", Some(("status", "sent"))),
        4.0
    );
    assert_eq!(value(&after, "iria_queue_depth", None), 0.0);
    let histogram = after.samples.iter().find(|s| {
        s.metric == "iria_http_request_duration_seconds"
            && s.labels.get("route") == Some("/subscriptions")
    });
    assert!(histogram.is_some(), "latency by route");
    assert!(
        after
            .samples
            .iter()
            .all(|s| !s.labels.values().any(|v| v.contains("token"))),
        "no tokens in labels"
    );
}
on_both_backends!(
    metrics_parse_and_move_after_a_signup_and_a_send,
    super::metrics_parse_and_move_after_a_signup_and_a_send
);

/// Every route of the application, and one that is not: security headers everywhere, no cookie
/// anywhere, HSTS when the base URL is https.
async fn security_headers_on_every_page(backend: Backend) {
    let options = AppOptions {
        env: vec![("IRIA_BASE_URL", "https://news.iria.test".into())],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let token = iria_news::foundation::links::RecipientToken::new(people[0].0, 0).sign(
        iria_news::foundation::links::Purpose::Preferences,
        app.settings.secret(),
    );
    let urlencoded = "application/x-www-form-urlencoded";
    let requests: Vec<(&str, String, Option<&str>)> = vec![
        ("GET", "/".into(), None),
        (
            "POST",
            "/subscriptions".into(),
            Some("email=a%40example.org"),
        ),
        ("GET", "/subscriptions/confirm?token=x".into(), None),
        ("POST", "/subscriptions/confirm".into(), Some("token=x")),
        ("GET", format!("/unsubscribe/{token}"), None),
        ("GET", format!("/preferences/{token}"), None),
        ("POST", format!("/preferences/{token}"), Some("name=A")),
        ("GET", format!("/preferences/{token}/data"), None),
        ("POST", format!("/preferences/{token}/erase"), Some("")),
        ("POST", format!("/preferences/{token}/data-link"), Some("")),
        ("GET", "/my-data/x".into(), None),
        ("POST", "/my-data/x/download".into(), Some("")),
        ("POST", "/my-data/x/erase".into(), Some("confirm=yes")),
        ("GET", "/digest/preview".into(), None),
        ("GET", "/archive".into(), None),
        ("GET", "/archive/feed.atom".into(), None),
        ("GET", "/archive/1".into(), None),
        ("POST", "/api/v1/articles".into(), Some("{}")),
        ("POST", "/api/v1/bounces".into(), Some("x")),
        ("GET", "/health".into(), None),
        ("GET", "/ready".into(), None),
        ("GET", "/metrics".into(), None),
        ("GET", "/assets/site.css".into(), None),
        ("GET", "/no/such/page".into(), None),
        (
            "POST",
            format!("/unsubscribe/{token}"),
            Some("List-Unsubscribe=One-Click"),
        ),
    ];
    for (method, path, body) in requests {
        let url = format!("{}{path}", app.address);
        let response = match body {
            None => app.client.get(&url).send().await,
            Some(b) => {
                app.client
                    .post(&url)
                    .header("Content-Type", urlencoded)
                    .body(b.to_string())
                    .send()
                    .await
            }
        }
        .expect("request");
        let h = response.headers();
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let csp = get("content-security-policy");
        assert!(
            csp.contains("script-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{method} {path}: CSP {csp:?}"
        );
        assert_eq!(get("x-content-type-options"), "nosniff", "{method} {path}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{method} {path}");
        assert!(
            get("strict-transport-security").starts_with("max-age="),
            "{method} {path}: HSTS on https"
        );
        assert!(
            h.get("set-cookie").is_none(),
            "{method} {path} sets a cookie"
        );
        assert!(
            !get("x-request-id").is_empty(),
            "{method} {path}: a request id"
        );
        assert!(
            response.status().as_u16() < 500,
            "{method} {path}: {}",
            response.status()
        );
    }
}
on_both_backends!(
    security_headers_on_every_page,
    super::security_headers_on_every_page
);

#[tokio::test]
async fn no_hsts_over_plain_http_and_ready_reports_migrations() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let response = app.get("/ready").await;
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.expect("json");
    assert_eq!(json["migrations"], "current");
}

/// `IRIA_LOG_FORMAT=json`: every line is JSON, and the lines of a request carry its id; SIGTERM
/// stops `serve` cleanly.
#[tokio::test]
async fn json_logs_carry_the_request_id_and_sigterm_stops_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iria-news"));
    for (key, _) in std::env::vars() {
        if key.starts_with("IRIA_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .arg("serve")
        .current_dir(dir.path())
        .env("IRIA_LOG_FORMAT", "json")
        .env("IRIA_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = client
        .post(format!("http://127.0.0.1:{port}/subscriptions"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Request-Id", "req-4242-test")
        .body("email=not-an-address")
        .send()
        .await
        .expect("POST");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-4242-test")
    );
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}");
    let stderr = child.stderr.take().expect("stderr");
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    let request_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"route\":\"/subscriptions\""))
        .collect();
    assert!(
        !request_lines.is_empty(),
        "the request was logged: {lines:?}"
    );
    assert!(
        request_lines.iter().all(|l| l.contains("req-4242-test")),
        "{request_lines:?}"
    );
}
