//! A real browser for the end-to-end tests: Debian's headless Chromium, driven through its
//! chromedriver with `fantoccini`. Each [`Browser`] starts a chromedriver of its own on a free
//! loopback port and ends it (and the Chromium under it) when dropped.
//!
//! Screenshots go to `target/e2e-screenshots/<test name>/NN-<step>.png` (the CI keeps them as an
//! artefact); chromedriver's log goes next to them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

/// How long a page may take to show what a test waits for.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Debian's Chromium (`apt-get install chromium`); `IRIA_TEST_CHROMIUM` overrides it.
fn chromium_path() -> PathBuf {
    std::env::var_os("IRIA_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Debian's chromedriver (`apt-get install chromium-driver`); `IRIA_TEST_CHROMEDRIVER` overrides
/// it.
fn chromedriver_path() -> PathBuf {
    std::env::var_os("IRIA_TEST_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// Where the screenshots of all end-to-end tests go: `$CARGO_TARGET_DIR/e2e-screenshots`, or
/// `target/e2e-screenshots` of this package.
pub fn screenshot_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        // A relative target dir is relative to where cargo ran: the package, for these tests.
        Some(dir) if !dir.is_empty() => manifest.join(dir),
        _ => manifest.join("target"),
    };
    target.join("e2e-screenshots")
}

/// A headless Chromium with the chromedriver that drives it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_url: String,
    session_id: Option<String>,
    shots: PathBuf,
    counter: AtomicUsize,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for the test `test_name` (the screenshot
    /// folder's name). `None` when Chromium or chromedriver is not installed and `CI` is unset
    /// (the test then says it was skipped); with `CI` set that is a failure, never a skip.
    pub async fn start(test_name: &str) -> Option<Self> {
        Self::start_as(test_name, None).await
    }

    /// [`Browser::start`], sending `user_agent` instead of headless Chromium's own (which names
    /// it "HeadlessChrome", as a machine's does).
    pub async fn start_as(test_name: &str, user_agent: Option<&str>) -> Option<Self> {
        let (chromium, chromedriver) = (chromium_path(), chromedriver_path());
        let missing: Vec<String> = [&chromium, &chromedriver]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            let what = missing.join(" and ");
            if std::env::var_os("CI").is_none() {
                eprintln!(
                    "SKIPPED: no {what} (apt-get install chromium chromium-driver); \
                     set CI=1 to make this a failure"
                );
                return None;
            }
            panic!(
                "CI is set and {what} is missing: the end-to-end tests need Debian's chromium \
                 and chromium-driver (.ci/run installs them)"
            );
        }

        let shots = screenshot_root().join(test_name);
        // Only this run's pictures: a stale 07-*.png from an earlier run would mislead.
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots)
            .unwrap_or_else(|e| panic!("create {}: {e}", shots.display()));

        let (driver, driver_url) =
            start_chromedriver(&chromedriver, &shots.join("chromedriver.log"));
        let mut args = vec![
            "--headless=new".to_string(),
            // The tests run as root, where Chromium's sandbox cannot start.
            "--no-sandbox".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--window-size=1280,1024".to_string(),
            "--disable-gpu".to_string(),
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--lang=en-US".to_string(),
        ];
        if let Some(agent) = user_agent {
            args.push(format!("--user-agent={agent}"));
        }
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium.display().to_string(),
                "args": args,
            }),
        );
        // Should connecting fail, the guard still ends chromedriver; the `Browser` owns it after.
        let mut guard = DriverGuard(Some(driver));
        let client = ClientBuilder::native()
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver at {driver_url} did not start a headless Chromium: {e} \
                     (see {})",
                    shots.join("chromedriver.log").display()
                )
            });
        let session_id = client.session_id().await.ok().flatten();
        let driver = guard.0.take().expect("the chromedriver process");
        Some(Self {
            client,
            driver,
            driver_url,
            session_id,
            shots,
            counter: AtomicUsize::new(0),
        })
    }

    /// Saves a screenshot of the page as `NN-<name>.png` in this test's folder; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let path = self.shots.join(format!("{n:02}-{}.png", file_safe(name)));
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// After a failed step: a screenshot and the page's HTML (`NN-FAILED.png`, `NN-FAILED.html`),
    /// as far as the browser still answers. Never panics.
    pub async fn save_failure(&self) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("(no URL: {e})"));
        eprintln!("the browser was at {url}");
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{n:02}-FAILED.png")), png);
        }
        if let Ok(html) = self.client.source().await {
            let _ = std::fs::write(
                self.shots.join(format!("{n:02}-FAILED.html")),
                format!("<!-- {url} -->\n{html}"),
            );
        }
        eprintln!("screenshots in {}", self.shots.display());
    }

    /// Opens this URL and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The current URL's path (`/admin/login`).
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .path()
            .to_string()
    }

    /// Waits (at most [`PAGE_TIMEOUT`]) until the current path satisfies `ok`; returns it.
    pub async fn wait_for_path(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let path = self.path().await;
            if ok(&path) {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "the browser did not reach {what} within {PAGE_TIMEOUT:?}; it is at {path}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element this CSS selector finds, waiting for it (at most [`PAGE_TIMEOUT`]).
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let path = self.path().await;
                panic!("no element {css:?} on {path} within {PAGE_TIMEOUT:?}: {e}")
            }
        }
    }

    /// The visible text of the element this CSS selector finds (waiting for it).
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// The HTML the element this CSS selector finds shows (waiting for it): an `<iframe>`'s
    /// `srcdoc` (a preview in a sandboxed frame), any other element's inner HTML.
    pub async fn rendered_html(&self, css: &str) -> String {
        let element = self.find(css).await;
        let tag = element
            .tag_name()
            .await
            .unwrap_or_else(|e| panic!("tag of {css:?}: {e}"));
        let html = if tag.eq_ignore_ascii_case("iframe") {
            element.prop("srcdoc").await
        } else {
            element.html(true).await.map(Some)
        };
        html.unwrap_or_else(|e| panic!("HTML of {css:?}: {e}"))
            .unwrap_or_default()
    }

    /// Types `text` into the field this CSS selector finds, as a person would (after emptying
    /// it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css:?}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css:?}: {e}"));
    }

    /// Chooses the option with this value in the `<select>` this CSS selector finds.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choose {value:?} in {css:?}: {e}"));
    }

    /// Clicks the element this CSS selector finds and, when that submits a form or follows a
    /// link, waits for the next page to load.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        // A marker on the old page's window: gone once the next page has replaced it.
        let _ = self
            .client
            .execute("window.__iriaOldPage = true;", Vec::new())
            .await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let state = self
                .client
                .execute(
                    "return [window.__iriaOldPage === true, document.readyState];",
                    Vec::new(),
                )
                .await;
            match state {
                Ok(v) if v[0] == false && v[1] == "complete" => return,
                // The page is being replaced: scripts may fail for a moment.
                _ if Instant::now() >= deadline => {
                    let path = self.path().await;
                    panic!("clicking {css:?} on {path} led to no new page within {PAGE_TIMEOUT:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Ends the browser session (Chromium quits) and chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        if client.close().await.is_ok() {
            self.session_id = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Without `close` (a panic on the way), end the session by hand so that Chromium does not
        // outlive chromedriver.
        if let Some(id) = self.session_id.take() {
            delete_session(&self.driver_url, &id);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Kills a chromedriver that never made it into a [`Browser`].
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts chromedriver on a free loopback port and waits until it is ready; returns it and its
/// URL.
fn start_chromedriver(path: &Path, log: &Path) -> (Child, String) {
    let mut last_error = String::new();
    // A free port can be taken by someone else before chromedriver binds it: try a few.
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("chromedriver's state") {
                last_error = format!("chromedriver on port {port} exited: {status}");
                break;
            }
            if driver_ready(port) {
                return (child, url);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_error = format!("chromedriver on port {port} did not answer within 10 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{last_error} (see {})", log.display());
}

/// Whether chromedriver on this port says it is ready (`GET /status`).
fn driver_ready(port: u16) -> bool {
    http_request(port, "GET", "/status")
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .is_some_and(|v| v["value"]["ready"] == true)
}

/// Ends a WebDriver session synchronously (usable in `Drop`, also while panicking).
fn delete_session(driver_url: &str, session_id: &str) {
    let port = driver_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let _ = http_request(port, "DELETE", &format!("/session/{session_id}"));
}

/// A minimal blocking HTTP/1.1 request to chromedriver on loopback; the body of the answer.
/// (chromedriver refuses HTTP/1.0 and keeps the connection open after answering, so the body is
/// read by its `Content-Length`.)
fn http_request(port: u16, method: &str, path: &str) -> Option<String> {
    let timeout = Duration::from_secs(10);
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

/// `name` with everything but letters, digits, `-` and `_` made `-`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
