//! What every integration test stands on: a fresh database of either backend, a real SMTP server
//! on loopback, and the real application started in-process on port 0.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use iria_news::foundation::config::{DatabaseUrl, Settings};
use iria_news::foundation::db::schema::{consents, deliveries, subscribers};
use iria_news::foundation::db::{DbConnection, Manager};
use iria_news::startup::server::Application;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body on each backend: `mod NAME { fn sqlite(); fn postgres(); }`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body($crate::helpers::Backend::Postgres).await
            }
        }
    };
}

/// The PostgreSQL server the tests create their databases on. Over loopback without TLS: libpq's
/// TLS sets up OpenSSL with an exit handler, the likeliest cause of the one run of the suite seen to
/// end in SIGSEGV after every test had passed (threads of the apps the tests started were still
/// using their connections while the process exited).
pub fn postgres_admin_url() -> String {
    std::env::var("IRIA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres?sslmode=disable".to_string())
}

/// A database of its own for one test: a fresh SQLite file, or a PostgreSQL database created for
/// it and dropped after.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// `None` when PostgreSQL does not answer and `CI` is unset (the test then says it was
    /// skipped). With `CI` set, a missing PostgreSQL fails the test.
    pub fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                Some(Self {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match PgConnection::establish(&admin) {
                    Ok(c) => c,
                    Err(e) if std::env::var_os("CI").is_none() => {
                        eprintln!("SKIPPED: no PostgreSQL at {admin} ({e}); set CI=1 to make this a failure");
                        return None;
                    }
                    Err(e) => panic!("CI is set and PostgreSQL at {admin} does not answer: {e}"),
                };
                let name = format!("iria_test_{}", random_suffix());
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create database");
                let mut url = url::Url::parse(&admin).expect("admin url");
                url.set_path(&name);
                Some(Self {
                    url: url.to_string(),
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }

    /// A connection of the application's own type, for looking at what it stored.
    pub fn connect(&self) -> DbConnection {
        Manager::new(DatabaseUrl::parse(&self.url).expect("db url"))
            .open()
            .expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = PgConnection::establish(&postgres_admin_url()) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

pub fn random_suffix() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// A real SMTP server (aiosmtpd) on a loopback port, writing what it receives into a folder.
pub struct SmtpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    _stdin: ChildStdin,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_with(0, &[])
    }

    /// On a given port (0: any free one), with fault options (see `tests/support/smtp_server.py`).
    pub fn start_with(port: u16, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg("--dir")
            .arg(dir.path())
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test SMTP server (Debian's python3-aiosmtpd)");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read READY");
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the test SMTP server did not start: {line:?}"));
        Self {
            port,
            dir,
            child,
            _stdin: stdin,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        read_messages(self.dir.path(), "eml")
    }

    /// Waits until at least `n` messages arrived (at most `timeout`), and returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        wait_for_messages(|| self.received(), n, timeout).await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub raw: Vec<u8>,
    pub rcpt_tos: Vec<String>,
}

impl Received {
    /// Parsed by an independent MIME parser (`mail-parser`), not by the code under test.
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("a parseable message")
    }

    pub fn text(&self) -> String {
        self.parsed()
            .body_text(0)
            .expect("a text part")
            .into_owned()
    }

    pub fn html(&self) -> String {
        self.parsed()
            .body_html(0)
            .expect("an HTML part")
            .into_owned()
    }

    /// The `To` address.
    pub fn to(&self) -> String {
        let parsed = self.parsed();
        parsed
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .expect("a To address")
            .to_string()
    }

    /// The confirmation link in the text part.
    pub fn confirmation_link(&self) -> String {
        let text = self.text();
        let start = text.find("http").expect("a link in the text part");
        let link: String = text[start..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        assert!(
            link.contains("/subscriptions/confirm?token="),
            "not a confirmation link: {link}"
        );
        link
    }
}

pub fn read_messages(dir: &Path, extension: &str) -> Vec<Received> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == extension));
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let raw = std::fs::read(&path).expect("read message");
            let envelope = std::fs::read_to_string(path.with_extension("json")).unwrap_or_default();
            let rcpt_tos = serde_json::from_str::<serde_json::Value>(&envelope)
                .ok()
                .and_then(|v| v.get("rcpt_tos").cloned())
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            Received { raw, rcpt_tos }
        })
        .collect()
}

pub async fn wait_for_messages(
    read: impl Fn() -> Vec<Received>,
    n: usize,
    timeout: Duration,
) -> Vec<Received> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = read();
        if got.len() >= n || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The application under test, running in-process on its own port and database.
pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub smtp: Option<SmtpServer>,
    /// The app's click recorder, to write the clicks made so far ([`TestApp::flush_clicks`]).
    pub tracking: std::sync::Arc<iria_news::processes::clicks::Tracking>,
}

/// Options of [`spawn_app`].
#[derive(Default)]
pub struct AppOptions {
    /// `None`: a real SMTP server is started for the test.
    pub smtp_url: Option<String>,
    pub env: Vec<(&'static str, String)>,
    /// A database made beforehand (`None`: a fresh one of the backend).
    pub db: Option<TestDb>,
    /// The URL the app is to use for `db`, when it differs from the direct one (a relay).
    pub database_url: Option<String>,
}

/// Starts the real application on port 0 against a fresh database of `backend`, with a real
/// SMTP server. `None` when the backend is not available (see [`TestDb::create`]).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, AppOptions::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: AppOptions) -> Option<TestApp> {
    let db = match options.db {
        Some(db) => db,
        None => TestDb::create(backend)?,
    };
    let (smtp, smtp_url) = match options.smtp_url {
        Some(url) => (None, url),
        None => {
            let server = SmtpServer::start();
            let url = server.url();
            (Some(server), url)
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let address = format!("http://127.0.0.1:{port}");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "IRIA_DATABASE_URL".into(),
        options.database_url.unwrap_or_else(|| db.url.clone()),
    );
    env.insert("IRIA_SMTP_URL".into(), smtp_url);
    env.insert("IRIA_BASE_URL".into(), address.clone());
    env.insert("IRIA_LISTEN".into(), format!("127.0.0.1:{port}"));
    env.insert(
        "IRIA_SECRET_KEY".into(),
        "test-secret-key-of-at-least-32-bytes!!".into(),
    );
    env.insert("IRIA_FROM".into(), "IRIA News <news@iria.test>".into());
    env.insert("IRIA_HTTP_WORKERS".into(), "1".into());
    env.insert("IRIA_DB_POOL_SIZE".into(), "4".into());
    env.insert("IRIA_DELIVERY_POLL_MS".into(), "100".into());
    env.insert("IRIA_DELIVERY_RETRY_BASE_MS".into(), "200".into());
    env.insert("IRIA_SMTP_TIMEOUT_SECONDS".into(), "5".into());
    // The tests run digests themselves; the scheduler's first time is far away.
    env.insert("IRIA_DIGEST_SCHEDULE".into(), "0 0 8 1 1 * 2099".into());
    for (k, v) in options.env {
        env.insert(k.to_string(), v);
    }
    let settings = Settings::from_sources(None, &env).expect("test settings");
    let app = Application::build_with_listener(settings.clone(), listener).expect("build app");
    let tracking = app.tracking();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Some(TestApp {
        address,
        db,
        client,
        settings,
        smtp,
        tracking,
    })
}

/// A sign-up as the form sends it.
pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl TestApp {
    pub fn smtp(&self) -> &SmtpServer {
        self.smtp.as_ref().expect("this app has a test SMTP server")
    }

    /// Posts the sign-up form with this urlencoded body.
    pub async fn post_subscriptions(&self, body: impl Into<String>) -> reqwest::Response {
        self.client
            .post(format!("{}/subscriptions", self.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", "iria-news-tests/1.0")
            .body(body.into())
            .send()
            .await
            .expect("POST /subscriptions")
    }

    pub async fn sign_up(&self, email: &str) -> reqwest::Response {
        self.post_subscriptions(form(&[("email", email)])).await
    }

    pub async fn get(&self, path_or_url: &str) -> reqwest::Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.address, path_or_url)
        };
        self.client.get(url).send().await.expect("GET")
    }

    pub fn conn(&self) -> DbConnection {
        self.db.connect()
    }

    /// Follows a confirmation link as a reader does: opens the page the link leads to (which
    /// changes nothing), checks that it offers the one button that posts the link's token, and
    /// presses it. Returns the button's answer, or the page's when the page is not the button's
    /// (a used, superseded, expired or unknown link keeps its 4xx page).
    pub async fn confirm(&self, link: &str) -> reqwest::Response {
        let page = self.get(link).await;
        if page.status() != 200 {
            return page;
        }
        let token = link
            .split("token=")
            .nth(1)
            .and_then(|t| t.split('&').next())
            .expect("a token in the confirmation link")
            .to_string();
        let body = page.text().await.expect("the confirmation page");
        assert!(
            body.contains(r#"<form method="post" action="/subscriptions/confirm">"#)
                && body.contains(&format!(r#"name="token" value="{token}""#))
                && body.contains("Confirm my subscription"),
            "the confirmation page offers one button posting the token: {body}"
        );
        self.client
            .post(format!("{}/subscriptions/confirm", self.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("token", &token)]))
            .send()
            .await
            .expect("POST /subscriptions/confirm")
    }

    /// (status, name, topics) of the subscriber with this stored address.
    pub fn subscriber(&self, email: &str) -> Option<(String, Option<String>, String)> {
        subscribers::table
            .filter(subscribers::email.eq(email))
            .select((subscribers::status, subscribers::name, subscribers::topics))
            .first(&mut self.conn())
            .optional()
            .expect("query subscriber")
    }

    /// The name given with the latest sign-up of this stored address (its consent record), which
    /// becomes the subscriber's once the address is confirmed.
    pub fn consent_name(&self, email: &str) -> Option<String> {
        consents::table
            .inner_join(subscribers::table)
            .filter(subscribers::email.eq(email))
            .order(consents::id.desc())
            .select(consents::name)
            .first::<Option<String>>(&mut self.conn())
            .expect("a consent of this address")
    }

    pub fn subscriber_id(&self, email: &str) -> i64 {
        subscribers::table
            .filter(subscribers::email.eq(email))
            .select(subscribers::id)
            .first(&mut self.conn())
            .expect("subscriber id")
    }

    pub fn count_subscribers(&self) -> i64 {
        subscribers::table
            .count()
            .get_result(&mut self.conn())
            .expect("count")
    }

    pub fn count_consents(&self) -> i64 {
        consents::table
            .count()
            .get_result(&mut self.conn())
            .expect("count")
    }

    pub fn count_deliveries(&self) -> i64 {
        deliveries::table
            .count()
            .get_result(&mut self.conn())
            .expect("count")
    }

    /// Messages received for this address so far.
    pub fn received_by(&self, email: &str) -> Vec<Received> {
        self.smtp()
            .received()
            .into_iter()
            .filter(|m| m.rcpt_tos.iter().any(|r| r == email))
            .collect()
    }

    /// Waits for the `n`-th message to this address and returns it.
    pub async fn wait_for_mail_to(&self, email: &str, n: usize) -> Received {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received_by(email);
            if got.len() >= n {
                return got[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no message #{n} for {email} within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl TestApp {
    /// Waits for the `n`-th message to this address whose subject contains `part`, whatever
    /// arrived between (a welcome email, a note): messages queued close together may arrive in
    /// either order.
    pub async fn wait_for_mail_with_subject(&self, email: &str, part: &str, n: usize) -> Received {
        let deadline = Instant::now() + Duration::from_secs(15);
        let subject = |m: &Received| m.parsed().subject().unwrap_or_default().to_string();
        loop {
            let got = self.received_by(email);
            if let Some(m) = got.iter().filter(|m| subject(m).contains(part)).nth(n - 1) {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no message #{n} for {email} with {part:?} in its subject within 15 s; got {:?}",
                got.iter().map(subject).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl TestApp {
    /// Adds `n` confirmed subscribers straight into the database; returns (id, address) in order.
    pub fn add_confirmed(&self, prefix: &str, n: usize) -> Vec<(i64, String)> {
        self.add_subscribers(prefix, n, |_| (None, String::new()))
    }

    /// Adds `n` confirmed subscribers; `extra(i)` gives the i-th one's name and topics.
    pub fn add_subscribers(
        &self,
        prefix: &str,
        n: usize,
        extra: impl Fn(usize) -> (Option<String>, String),
    ) -> Vec<(i64, String)> {
        let now = chrono::Utc::now().naive_utc();
        let mut conn = self.conn();
        iria_news::foundation::db::write_transaction(&mut conn, |conn| {
            for i in 0..n {
                let (name, topics) = extra(i);
                diesel::insert_into(subscribers::table)
                    .values((
                        subscribers::email.eq(format!("{prefix}{i:05}@example.org")),
                        subscribers::name.eq(name),
                        subscribers::status.eq("confirmed"),
                        subscribers::topics.eq(topics),
                        subscribers::created_at.eq(now),
                        subscribers::updated_at.eq(now),
                        subscribers::confirmed_at.eq(Some(now)),
                    ))
                    .execute(conn)?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .expect("insert subscribers");
        subscribers::table
            .filter(subscribers::email.like(format!("{prefix}%")))
            .order(subscribers::id)
            .select((subscribers::id, subscribers::email))
            .load(&mut conn)
            .expect("load subscribers")
    }

    /// Queues an editor's issue (as `iria-news send` does) for the app's worker to deliver.
    pub fn queue_issue(&self, subject: &str, html: &str) -> iria_news::stores::issues::Queued {
        let draft = iria_news::stores::issues::Draft {
            kind: iria_news::stores::issues::Kind::Announcement,
            subject: subject.to_string(),
            preheader: String::new(),
            body_html: html.to_string(),
            body_text: None,
            topics: Vec::new(),
            period_key: None,
            idempotency_key: None,
        };
        iria_news::processes::compose::create_and_queue(&mut self.conn(), &self.settings, &draft)
            .expect("queue issue")
    }

    /// Where each tracked link (`/r/…`) of a part leads, asked with `HEAD` (which counts no
    /// click); the part's other links as they are. In order of appearance.
    pub async fn link_targets(&self, part: &str) -> Vec<String> {
        let mut targets = Vec::new();
        let mut rest = part;
        while let Some(at) = rest.find("http") {
            let end = rest[at..]
                .find(|c: char| c == '"' || c == '<' || c == '>' || c.is_whitespace())
                .map_or(rest.len(), |e| at + e);
            let link = &rest[at..end];
            if link.contains("/r/") {
                let response = self
                    .client
                    .head(self.local(link))
                    .send()
                    .await
                    .expect("HEAD a tracked link");
                assert_eq!(response.status(), 302, "{link}");
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .expect("a Location");
                targets.push(location.to_string());
            } else {
                targets.push(link.replace("&amp;", "&"));
            }
            rest = &rest[end..];
        }
        targets
    }

    /// Writes the clicks the app has taken so far (the recorder writes once a second otherwise).
    pub async fn flush_clicks(&self) {
        self.tracking.flush().await;
    }

    /// A link from an email, pointed at this test's server (the emails may name a public https
    /// base URL).
    pub fn local(&self, link: &str) -> String {
        let base = self.settings.base_url.as_str().trim_end_matches('/');
        link.replacen(base, &self.address, 1)
    }

    /// The status of each of an issue's deliveries, by subscriber address.
    pub fn delivery_statuses(&self, issue_id: i64) -> Vec<(String, String)> {
        deliveries::table
            .inner_join(subscribers::table)
            .filter(deliveries::issue_id.eq(issue_id))
            .select((subscribers::email, deliveries::status))
            .load(&mut self.conn())
            .expect("deliveries")
    }

    /// Waits until no delivery of the issue is queued or being sent.
    pub async fn wait_issue_done(&self, issue_id: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let open = self
                .delivery_statuses(issue_id)
                .iter()
                .filter(|(_, s)| s == "queued" || s == "sending")
                .count();
            if open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "issue {issue_id}: {open} deliveries still open"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl TestApp {
    /// Presses "Email me a link to download or erase my data" on the preferences page at
    /// `preferences` (a path or a link) and returns the one-time link mailed to `email`, pointed
    /// at this test's server.
    pub async fn data_link(&self, preferences: &str, email: &str) -> String {
        let subject = "download or erase";
        let before = self
            .received_by(email)
            .iter()
            .filter(|m| m.parsed().subject().unwrap_or_default().contains(subject))
            .count();
        let path = self.local(preferences).replacen(&self.address, "", 1);
        let pressed = self
            .client
            .post(format!("{}{path}/data-link", self.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .expect("POST data-link");
        assert_eq!(pressed.status(), 200, "asking for a data link");
        let mail = self
            .wait_for_mail_with_subject(email, subject, before + 1)
            .await;
        let text = mail.text();
        let at = text
            .find("/my-data/")
            .expect("a data link in the text part");
        let start = text[..at].rfind("http").expect("the link's start");
        let link: String = text[start..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        self.local(&link)
    }
}

/// `iria-news worker` as a child process with exactly this environment (no `IRIA_` variable of
/// the test's own), its output discarded.
pub fn spawn_worker<K: AsRef<std::ffi::OsStr>>(env: &BTreeMap<K, String>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iria-news"));
    cmd.arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("IRIA_") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.spawn().expect("start iria-news worker")
}
