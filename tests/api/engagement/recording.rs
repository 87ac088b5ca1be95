//! Clicks are written off the request path: a SIGTERM writes what is in memory, and a database
//! that goes away loses no click and stops no redirect already known.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::engagement::support::*;
use crate::faults::CuttableRelay;
use crate::helpers::{spawn_app_with, AppOptions, Backend, TestDb};
use crate::on_both_backends;

/// `serve` (the binary) takes 60 clicks and is stopped with SIGTERM at once: all 60 are written.
async fn sigterm_writes_the_clicks_in_memory(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "term", 1).await;
    age_deliveries(&app, issue_id, 3600);
    let link = tracked_links(&copies[0].html())[0].clone();
    let token = link.rsplit('/').next().expect("token").to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let outbox = tempfile::tempdir().expect("outbox");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iria-news"));
    for (key, _) in std::env::vars() {
        if key.starts_with("IRIA_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .arg("serve")
        .env("IRIA_DATABASE_URL", &app.db.url)
        .env("IRIA_SECRET_KEY", "test-secret-key-of-at-least-32-bytes!!")
        .env("IRIA_LISTEN", format!("127.0.0.1:{port}"))
        .env("IRIA_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env(
            "IRIA_SMTP_URL",
            format!("file://{}", outbox.path().display()),
        )
        .env("IRIA_CLICK_TRACKING", "anonymous")
        .env("IRIA_DIGEST_SCHEDULE", "0 0 8 1 1 * 2099")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..60 {
        let response = client
            .get(format!("http://127.0.0.1:{port}/r/{token}"))
            .header("User-Agent", BROWSER)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 302);
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success(), "serve exits 0");
    let total: i64 = counters(&app, issue_id).iter().map(|c| c.2).sum();
    assert_eq!(total, 60, "clicks lost at SIGTERM");
}
on_both_backends!(
    sigterm_writes_the_clicks_in_memory,
    super::sigterm_writes_the_clicks_in_memory
);

/// PostgreSQL goes away: a link already followed keeps redirecting, its clicks are held and
/// written once the database is back. (The embedded SQLite file cannot go away like this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_survive_a_database_outage() {
    let Some(db) = TestDb::create(Backend::Postgres) else {
        return;
    };
    let mut direct = url::Url::parse(&db.url).expect("url");
    let target = format!(
        "{}:{}",
        direct.host_str().unwrap_or("127.0.0.1"),
        direct.port().unwrap_or(5432)
    );
    let relay = CuttableRelay::start(target).await;
    direct.set_port(Some(relay.port)).expect("port");
    let Some(app) = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            db: Some(db),
            database_url: Some(direct.to_string()),
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "outage", 1).await;
    age_deliveries(&app, issue_id, 3600);
    let link = tracked_links(&copies[0].html())[0].clone();
    assert_eq!(click(&app, &link, BROWSER).await.0, 302);
    app.flush_clicks().await;
    relay.cut();
    for _ in 0..5 {
        let (status, location) = click(&app, &link, BROWSER).await;
        assert_eq!(
            status, 302,
            "a known link stops redirecting when the database is down"
        );
        assert_eq!(location.as_deref(), Some("https://ir-ia.com/one?a=1&b=2"));
    }
    // A write is tried, fails, and the clicks are kept.
    app.flush_clicks().await;
    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        app.flush_clicks().await;
        let total: i64 = counters(&app, issue_id).iter().map(|c| c.2).sum();
        if total == 6 {
            break;
        }
        assert!(total < 6, "counted twice: {total}");
        assert!(
            Instant::now() < deadline,
            "clicks lost in the outage: {total} of 6"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
