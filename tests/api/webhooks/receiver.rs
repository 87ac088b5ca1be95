//! The receiving end of the webhook tests: a small HTTP server on loopback that records what it
//! gets, and a signature check written independently of the code under test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver got, and the status it answered with.
#[derive(Clone, Debug)]
pub struct Hook {
    pub path: String,
    /// Names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub answered: u16,
}

impl Hook {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }

    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or("").to_string()
    }
}

/// A webhook receiver: a small HTTP/1.1 server on a loopback port that records every request
/// and answers each with the status it is set to.
pub struct Receiver {
    pub port: u16,
    hooks: Arc<Mutex<Vec<Hook>>>,
    status: Arc<AtomicU16>,
    /// How long it takes to answer, in milliseconds.
    delay: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `port` (0: any free one), answering `status`.
    pub async fn start(port: u16, status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().expect("addr").port();
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let delay = Arc::new(AtomicU64::new(0));
        let (h, s, d) = (hooks.clone(), status.clone(), delay.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, h.clone(), s.clone(), d.clone()));
            }
        });
        Self {
            port,
            hooks,
            status,
            delay,
            task,
        }
    }

    /// Answers each request this long after reading it (it is recorded at once).
    pub fn answer_after(&self, delay: Duration) {
        self.delay.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().expect("lock").clone()
    }

    /// The requests it answered with 2xx: the events delivered.
    pub fn delivered(&self) -> Vec<Hook> {
        self.hooks()
            .into_iter()
            .filter(|h| (200..300).contains(&h.answered))
            .collect()
    }

    /// Waits (at most 20 s) until `n` events were delivered; returns them all.
    pub async fn wait_delivered(&self, n: usize) -> Vec<Hook> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} event(s) delivered within 20 s, {n} expected: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (headers, then `Content-Length` bytes), records it and answers.
async fn answer(
    mut stream: tokio::net::TcpStream,
    hooks: Arc<Mutex<Vec<Hook>>>,
    status: Arc<AtomicU16>,
    delay: Arc<AtomicU64>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let answered = status.load(Ordering::SeqCst);
    hooks.lock().expect("lock").push(Hook {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        answered,
    });
    tokio::time::sleep(Duration::from_millis(delay.load(Ordering::SeqCst))).await;
    let reply =
        format!("HTTP/1.1 {answered} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Whether the hook's `webhook-signature` is the HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed
/// with `secret` (Standard Webhooks), computed here independently of the code under test.
pub fn signed_with(secret: &str, hook: &Hook) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(
        format!(
            "{}.{}.{}",
            hook.header("webhook-id"),
            hook.header("webhook-timestamp"),
            hook.body
        )
        .as_bytes(),
    );
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    hook.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// A secret that is not the endpoint's, of the same form.
pub fn another_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Checks what every delivered hook must be: a signed JSON POST whose body names the event it
/// is, sent within the last minutes.
pub fn check_envelope(secret: &str, hook: &Hook) {
    assert!(signed_with(secret, hook), "bad signature: {hook:?}");
    assert!(
        !signed_with(&another_secret(), hook),
        "another secret must not verify"
    );
    assert_eq!(hook.header("content-type"), "application/json");
    let body = hook.json();
    assert_eq!(body["id"], hook.header("webhook-id"), "{body}");
    assert!(hook.header("webhook-id").starts_with("evt_"));
    let sent: i64 = hook.header("webhook-timestamp").parse().expect("unix time");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 300);
    let created = body["created_at"].as_str().expect("created_at");
    chrono::DateTime::parse_from_rfc3339(created).expect("RFC 3339");
}
