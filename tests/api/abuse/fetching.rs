//! Issue 12, "Fetching and parsing": the feed fetch streams with its 20 MB limit, follows at most
//! three redirects and never to loopback, private, link-local or metadata addresses unless the
//! configured URL names one; deeply nested HTML is flattened before sanitising; feed images are
//! web URLs only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iria_news::processes::feed::{self, Fetched};
use iria_news::stores::articles::{plain_text, sanitize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FEED: &str = r#"<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>IRIA</title>
<item><title>One</title><link>https://iria.example/one</link><pubDate>Thu, 26 Nov 2026 10:00:00 GMT</pubDate></item>
</channel></rss>"#;

/// What a test server does with each request: the answer for the request's path.
type Answer = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

enum Reply {
    Redirect(String),
    Feed,
    /// A chunked body that never ends (until the client goes away).
    Endless,
    /// Headers announcing this many bytes, then a little.
    Declared(u64),
}

/// A loopback HTTP server; counts requests and bytes written.
struct Server {
    port: u16,
    requests: Arc<AtomicUsize>,
    written: Arc<AtomicUsize>,
}

async fn server(answer: Answer) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let (r, w) = (requests.clone(), written.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let (answer, r, w) = (answer.clone(), r.clone(), w.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                r.fetch_add(1, Ordering::SeqCst);
                match answer(&path) {
                    Reply::Redirect(to) => {
                        let _ = socket
                            .write_all(format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                            .await;
                    }
                    Reply::Feed => {
                        let _ = socket
                            .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{FEED}", FEED.len()).as_bytes())
                            .await;
                    }
                    Reply::Declared(n) => {
                        let _ = socket
                            .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n<rss>").as_bytes())
                            .await;
                    }
                    Reply::Endless => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                            .await;
                        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                        while socket.write_all(chunk.as_bytes()).await.is_ok() {
                            w.fetch_add(64 * 1024, Ordering::SeqCst);
                        }
                    }
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    Server {
        port,
        requests,
        written,
    }
}

fn error_of(result: anyhow::Result<Fetched>) -> String {
    match result {
        Ok(_) => panic!("the fetch was expected to be refused"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn feed_redirect_to_a_loopback_name_is_refused() {
    let inner = server(Arc::new(|_| Reply::Feed)).await;
    let target = format!("http://localhost:{}/feed", inner.port);
    let outer = server(Arc::new(move |_| Reply::Redirect(target.clone()))).await;
    let error =
        error_of(feed::fetch(&format!("http://127.0.0.1:{}/feed", outer.port), None, None).await);
    assert!(
        error.contains("localhost") && error.contains("private"),
        "{error}"
    );
    assert_eq!(
        inner.requests.load(Ordering::SeqCst),
        0,
        "nothing reached the private host"
    );
}

#[tokio::test]
async fn feed_redirect_to_the_metadata_address_or_another_loopback_ip_is_refused() {
    for target in [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]:9/feed".to_string(),
        "http://10.0.0.1/feed".to_string(),
        "http://127.0.0.2:9/feed".to_string(),
    ] {
        let t = target.clone();
        let outer = server(Arc::new(move |_| Reply::Redirect(t.clone()))).await;
        let started = Instant::now();
        let error = error_of(
            feed::fetch(&format!("http://127.0.0.1:{}/feed", outer.port), None, None).await,
        );
        assert!(error.contains("was refused"), "{target}: {error}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused before connecting"
        );
    }
}

/// The configured loopback host is let through on its own port only: a redirect to another
/// service on the same host is refused.
#[tokio::test]
async fn a_redirect_to_another_port_of_the_configured_private_host_is_refused() {
    let inner = server(Arc::new(|_| Reply::Feed)).await;
    let target = format!("http://127.0.0.1:{}/feed", inner.port);
    let outer = server(Arc::new(move |_| Reply::Redirect(target.clone()))).await;
    let error =
        error_of(feed::fetch(&format!("http://127.0.0.1:{}/feed", outer.port), None, None).await);
    assert!(error.contains("was refused"), "{error}");
    assert_eq!(
        inner.requests.load(Ordering::SeqCst),
        0,
        "nothing reached the other port"
    );
    // A configured name that resolves to loopback (`localhost`) is the operator's own network.
    let direct = feed::fetch(&format!("http://localhost:{}/feed", inner.port), None, None)
        .await
        .expect("the configured private host itself is fetched");
    assert!(matches!(direct, Fetched::Body { .. }));
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let outer = server(Arc::new(|_| Reply::Redirect("file:///etc/passwd".into()))).await;
    let error =
        error_of(feed::fetch(&format!("http://127.0.0.1:{}/feed", outer.port), None, None).await);
    // Not followed: the redirect itself is the answer, and an answer that is not a feed.
    assert!(error.contains("HTTP 302"), "{error}");
}

#[tokio::test]
async fn feed_follows_three_redirects_and_no_more() {
    // /hop/N redirects to /hop/N-1; /hop/0 is the feed. All on the configured host.
    let s = server(Arc::new(|path: &str| {
        let n: u32 = path.trim_start_matches("/hop/").parse().unwrap_or(0);
        if n == 0 {
            Reply::Feed
        } else {
            Reply::Redirect(format!("/hop/{}", n - 1))
        }
    }))
    .await;
    let three = feed::fetch(&format!("http://127.0.0.1:{}/hop/3", s.port), None, None)
        .await
        .expect("three redirects are followed");
    match three {
        Fetched::Body { bytes, .. } => assert_eq!(bytes, FEED.as_bytes()),
        Fetched::NotModified => panic!("a body was expected"),
    }
    let error =
        error_of(feed::fetch(&format!("http://127.0.0.1:{}/hop/4", s.port), None, None).await);
    assert!(error.contains("more than 3 redirects"), "{error}");
}

#[tokio::test]
async fn a_feed_past_20_mb_is_refused_while_streaming() {
    let endless = server(Arc::new(|_| Reply::Endless)).await;
    let error = error_of(
        feed::fetch(
            &format!("http://127.0.0.1:{}/feed", endless.port),
            None,
            None,
        )
        .await,
    );
    assert!(error.contains("larger than 20 MB"), "{error}");
    // The client stopped reading soon after 20 MB (socket buffers hold a few MB more).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = endless.written.load(Ordering::SeqCst);
    assert!(
        sent < 40 * 1024 * 1024,
        "the server could write {sent} bytes"
    );

    let declared = server(Arc::new(|_| Reply::Declared(400 * 1024 * 1024))).await;
    let error = error_of(
        feed::fetch(
            &format!("http://127.0.0.1:{}/feed", declared.port),
            None,
            None,
        )
        .await,
    );
    assert!(error.contains("larger than 20 MB"), "{error}");
}

#[test]
fn feed_images_keep_web_urls_only() {
    let item = |n: u32, url: &str| {
        format!(
            r#"<item><title>Item {n}</title><link>https://iria.example/{n}</link><pubDate>Thu, 26 Nov 2026 10:00:00 GMT</pubDate><media:content url="{url}" medium="image"/></item>"#
        )
    };
    let xml = format!(
        r#"<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>IRIA</title>{}{}{}{}</channel></rss>"#,
        item(1, "https://iria.example/a.jpg"),
        item(2, "javascript:alert(1)"),
        item(3, "data:image/png;base64,AAAA"),
        item(4, "file:///etc/passwd"),
    );
    let parsed = feed::parse(xml.as_bytes()).expect("a feed");
    let images: Vec<Option<String>> = parsed
        .articles
        .iter()
        .map(|a| a.image_url.clone())
        .collect();
    assert_eq!(
        images,
        vec![
            Some("https://iria.example/a.jpg".to_string()),
            None,
            None,
            None
        ]
    );
}

#[test]
fn deeply_nested_html_is_flattened_before_sanitising() {
    let depth = 100_000;
    let html = format!(
        "{}deep text{}",
        "<div>".repeat(depth),
        "</div>".repeat(depth)
    );
    let clean = sanitize(&html);
    assert!(clean.contains("deep text"), "the text is kept");
    assert!(!clean.contains("<div"), "the nesting is gone");
    assert_eq!(plain_text(&html, 100), "deep text");
    // Written so that a naive count of tags sees no depth: self-closed non-void elements (HTML
    // ignores the slash) and stray end tags (which close nothing).
    for trick in ["<div/>", "<div class=a/>", "<div></x>", "<span></p>"] {
        let html = format!("{}tricky text", trick.repeat(depth));
        let clean = sanitize(&html);
        assert!(clean.contains("tricky text"), "{trick}: the text is kept");
        assert!(
            !clean.contains("<div") && !clean.contains("<span"),
            "{trick}: flattened"
        );
    }
    // An ordinary article keeps its structure, an inline SVG's self-closed shapes included.
    let icon = format!(
        "<svg>{}</svg><p>after the icon</p>",
        "<path d=\"M0 0\"/>".repeat(500)
    );
    assert!(
        sanitize(&icon).contains("<p>after the icon</p>"),
        "an SVG's shapes do not nest"
    );
    let normal = format!(
        "{}<p>kept <em>as is</em></p>{}",
        "<div>".repeat(50),
        "</div>".repeat(50)
    );
    let clean = sanitize(&normal);
    assert!(
        clean.contains("<em>as is</em>") && clean.matches("<div>").count() == 50,
        "{clean}"
    );
    // Scripts are still removed from flattened content.
    let hostile = format!(
        "{}<script>alert(1)</script>x{}",
        "<b>".repeat(5000),
        "</b>".repeat(5000)
    );
    assert!(!sanitize(&hostile).contains("script"));
}
