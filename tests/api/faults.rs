//! Bad input and faults: a clear 4xx and nothing stored half-way for the first; for the second
//! (SMTP down, database down) the sign-up survives and the app recovers.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener as AsyncListener, TcpStream};

use crate::helpers::{form, spawn_app, spawn_app_with, AppOptions, Backend, SmtpServer, TestDb};
use crate::on_both_backends;

async fn bad_input_gets_a_clear_4xx_and_stores_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let url = format!("{}/subscriptions", app.address);
    let raw = |content_type: &'static str, body: Vec<u8>| {
        app.client
            .post(&url)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(&str, reqwest::Response, u16)> = vec![
        (
            "JSON instead of a form",
            raw("application/json", br#"{"email":"a@example.org"}"#.to_vec())
                .await
                .expect("send"),
            415,
        ),
        (
            "multipart",
            raw("multipart/form-data; boundary=x", b"--x--".to_vec())
                .await
                .expect("send"),
            415,
        ),
        (
            "no content type",
            app.client
                .post(&url)
                .body("email=a%40example.org")
                .send()
                .await
                .expect("send"),
            415,
        ),
        (
            "broken percent-encoding",
            raw(
                "application/x-www-form-urlencoded",
                b"email=%E0%A4%A&name=%%%".to_vec(),
            )
            .await
            .expect("send"),
            400,
        ),
        (
            "invalid UTF-8",
            raw(
                "application/x-www-form-urlencoded",
                b"email=\xff\xfe@example.org".to_vec(),
            )
            .await
            .expect("send"),
            400,
        ),
        (
            "garbage",
            raw(
                "application/x-www-form-urlencoded",
                b"\x00\x01\x02&&&===".to_vec(),
            )
            .await
            .expect("send"),
            400,
        ),
        (
            "CR/LF in the name",
            app.post_subscriptions(form(&[
                ("email", "a@example.org"),
                ("name", "x\r\nBcc: victim@example.org"),
            ]))
            .await,
            400,
        ),
        (
            "CR/LF in the address",
            app.post_subscriptions(form(&[(
                "email",
                "a@example.org\r\nBcc: victim@example.org",
            )]))
            .await,
            400,
        ),
        (
            "NUL in the name",
            app.post_subscriptions(form(&[("email", "a@example.org"), ("name", "a\0b")]))
                .await,
            400,
        ),
        (
            "name of 257 characters",
            app.post_subscriptions(form(&[
                ("email", "a@example.org"),
                ("name", &"é".repeat(257)),
            ]))
            .await,
            400,
        ),
        (
            "SQL as the address",
            app.post_subscriptions(form(&[(
                "email",
                "x'); DROP TABLE subscribers; --@example.org",
            )]))
            .await,
            400,
        ),
        (
            "body over 64 KB",
            app.post_subscriptions(form(&[
                ("email", "a@example.org"),
                ("name", &"n".repeat(70 * 1024)),
            ]))
            .await,
            413,
        ),
    ];
    for (what, response, expected) in cases {
        assert_eq!(response.status().as_u16(), expected, "{what}");
    }
    assert_eq!(app.count_subscribers(), 0, "nothing stored");
    assert_eq!(app.count_consents(), 0, "nothing stored");
    assert_eq!(app.count_deliveries(), 0, "nothing queued");

    // Unusual but valid input is taken and stored as typed.
    let sql_name = "Robert'); DROP TABLE subscribers;--";
    for (email, name, stored_email) in [
        (
            "leser@bücher.example",
            "Jürgen Müller",
            "leser@xn--bcher-kva.example",
        ),
        ("ali@example.org", "علي الحسن", "ali@example.org"),
        ("li@example.org", "李小龍 🐉", "li@example.org"),
        ("bobby@example.org", sql_name, "bobby@example.org"),
    ] {
        let response = app
            .post_subscriptions(form(&[("email", email), ("name", name)]))
            .await;
        assert_eq!(response.status(), 200, "{email}");
        // Kept with the consent until the address is confirmed.
        assert_eq!(app.consent_name(stored_email).as_deref(), Some(name));
    }
    // The punycode address receives its confirmation, to the bare address (the name is the
    // submitter's text until confirmed); once confirmed, the name is intact.
    let mail = app.wait_for_mail_to("leser@xn--bcher-kva.example", 1).await;
    assert_eq!(mail.to(), "leser@xn--bcher-kva.example");
    let parsed = mail.parsed();
    let to_name = parsed
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.name())
        .map(|n| n.to_string());
    assert_eq!(to_name, None);
    assert_eq!(app.confirm(&mail.confirmation_link()).await.status(), 200);
    assert_eq!(
        app.subscriber("leser@xn--bcher-kva.example")
            .and_then(|s| s.1)
            .as_deref(),
        Some("Jürgen Müller")
    );
    assert_eq!(app.count_subscribers(), 4);
}
on_both_backends!(
    bad_input_gets_a_clear_4xx_and_stores_nothing,
    super::bad_input_gets_a_clear_4xx_and_stores_nothing
);

/// The SMTP server is down when the person signs up: the sign-up succeeds at once, and the
/// confirmation goes out once the server is back.
async fn smtp_down_at_signup_then_back(backend: Backend) {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let options = AppOptions {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let started = Instant::now();
    let response = app.sign_up("patient@example.org").await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the request does not wait for SMTP"
    );
    // Let a few attempts fail against the closed port.
    tokio::time::sleep(Duration::from_millis(800)).await;
    use diesel::prelude::*;
    use iria_news::foundation::db::schema::deliveries;
    let (status, attempts, error): (String, i32, Option<String>) = deliveries::table
        .select((
            deliveries::status,
            deliveries::attempts,
            deliveries::last_error,
        ))
        .first(&mut app.conn())
        .expect("delivery");
    assert_eq!(status, "queued", "waiting for another attempt");
    assert!(attempts >= 1);
    assert!(error.is_some());

    let server = SmtpServer::start_with(port, &[]);
    let got = server.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(
        got.len(),
        1,
        "the confirmation arrived once the server was back"
    );
    assert_eq!(got[0].to(), "patient@example.org");
    assert_eq!(app.confirm(&got[0].confirmation_link()).await.status(), 200);
    assert_eq!(
        app.subscriber("patient@example.org")
            .map(|s| s.0)
            .as_deref(),
        Some("confirmed")
    );
}
on_both_backends!(
    smtp_down_at_signup_then_back,
    super::smtp_down_at_signup_then_back
);

/// A TCP relay between the app and PostgreSQL that the test can cut: while cut, it closes every
/// connection, open or new, as a crashed or unreachable database server would.
pub(crate) struct CuttableRelay {
    pub(crate) port: u16,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl CuttableRelay {
    pub(crate) async fn start(target: String) -> Self {
        let listener = AsyncListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            up,
            generation,
        }
    }

    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The database goes away while the app runs: pages answer 503 (no panic, nothing half-stored),
/// and once it is back the app serves again without a restart. PostgreSQL only: the embedded
/// SQLite database is a file inside the process and cannot be "down" in the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_gives_503_and_the_app_recovers() {
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
    let options = AppOptions {
        db: Some(db),
        database_url: Some(direct.to_string()),
        ..Default::default()
    };
    let Some(app) = spawn_app_with(Backend::Postgres, options).await else {
        return;
    };
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.sign_up("before@example.org").await.status(), 200);

    relay.cut();
    let health = app.get("/health").await;
    assert_eq!(health.status(), 503);
    let signup = app.sign_up("during@example.org").await;
    assert_eq!(signup.status(), 503);
    assert!(signup.headers().contains_key("retry-after"));
    assert!(signup
        .text()
        .await
        .expect("body")
        .contains("Nothing you sent was stored"));
    assert_eq!(
        app.get("/").await.status(),
        200,
        "the sign-up page itself needs no database"
    );

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.get("/health").await.status() != 200 {
        assert!(Instant::now() < deadline, "the app did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.sign_up("after@example.org").await.status(), 200);
    app.wait_for_mail_to("after@example.org", 1).await;
    assert_eq!(app.subscriber("during@example.org"), None);
}
