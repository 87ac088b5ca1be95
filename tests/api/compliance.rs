//! What every newsletter message and the unsubscribe endpoints must satisfy: items 1 to 14 of the
//! product's email checklist, each test named after its item and the rule it checks.
//! Messages are received by a real SMTP server on loopback and parsed by `mail-parser`, an
//! independent MIME parser. The base URL is a public https one, as in production; links are
//! pointed back at the test server to follow them.

use std::time::Duration;

use diesel::prelude::*;
use iria_news::foundation::db::schema::subscribers;
use iria_news::foundation::links::{today, Purpose, RecipientToken};
use mail_parser::{HeaderName, MimeHeaders};

use crate::helpers::{spawn_app_with, AppOptions, Backend, Received, TestApp};
use crate::on_both_backends;

const BASE: &str = "https://news.iria.test";

async fn app(backend: Backend, extra: Vec<(&'static str, String)>) -> Option<TestApp> {
    let mut env = vec![
        ("IRIA_BASE_URL", BASE.to_string()),
        (
            "IRIA_UNSUBSCRIBE_MAILTO",
            "unsubscribe@iria.test".to_string(),
        ),
    ];
    env.extend(extra);
    spawn_app_with(
        backend,
        AppOptions {
            env,
            ..Default::default()
        },
    )
    .await
}

/// One confirmed reader, one issue, the message they received.
async fn one_message(
    backend: Backend,
    name: Option<&str>,
    subject: &str,
    html: &str,
) -> Option<(TestApp, Received)> {
    let app = app(backend, vec![]).await?;
    let name = name.map(str::to_string);
    app.add_subscribers("reader", 1, |_| (name.clone(), String::new()));
    app.queue_issue(subject, html);
    let mail = app.wait_for_mail_to("reader00000@example.org", 1).await;
    Some((app, mail))
}

const BODY: &str =
    "<h1>This week</h1><p>Analysis of <a href=\"https://iria.example/x\">the coalition</a>.</p>";

/// The raw header section of a message.
fn raw_headers(mail: &Received) -> String {
    let raw = String::from_utf8_lossy(&mail.raw);
    let end = raw
        .find("\r\n\r\n")
        .or_else(|| raw.find("\n\n"))
        .expect("a header section");
    raw[..end].to_string()
}

/// Unfolded headers with this name, as sent.
fn header_values(mail: &Received, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in raw_headers(mail).split("\r\n").flat_map(|l| l.split('\n')) {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                current = Some(v.trim().to_string());
            }
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
    out
}

/// The https URI of the List-Unsubscribe header.
fn unsubscribe_uri(mail: &Received) -> String {
    let header = header_values(mail, "List-Unsubscribe")
        .pop()
        .expect("List-Unsubscribe");
    let start = header.find("<https://").expect("an https URI") + 1;
    header[start..]
        .split('>')
        .next()
        .expect("closing >")
        .to_string()
}

fn status_of(app: &TestApp, email: &str) -> String {
    app.subscriber(email).expect("subscriber").0
}

async fn line_01_exactly_one_list_unsubscribe_with_one_https_uri(backend: Backend) {
    let Some((_app, mail)) = one_message(backend, None, "IRIA News this week", BODY).await else {
        return;
    };
    let values = header_values(&mail, "List-Unsubscribe");
    assert_eq!(values.len(), 1, "exactly one List-Unsubscribe: {values:?}");
    let uris: Vec<&str> = values[0].split(',').map(str::trim).collect();
    let https: Vec<&&str> = uris.iter().filter(|u| u.starts_with("<https://")).collect();
    assert_eq!(https.len(), 1, "{values:?}");
    assert!(
        uris[0].starts_with(&format!("<{BASE}/unsubscribe/")),
        "the https URI comes first: {values:?}"
    );
    assert!(
        uris.iter()
            .all(|u| u.starts_with("<https://") || u.starts_with("<mailto:")),
        "{values:?}"
    );
    assert!(
        uris.iter()
            .any(|u| u.starts_with("<mailto:unsubscribe@iria.test?")),
        "mailto when configured"
    );
}
on_both_backends!(
    line_01_exactly_one_list_unsubscribe_with_one_https_uri,
    super::line_01_exactly_one_list_unsubscribe_with_one_https_uri
);

async fn line_02_list_unsubscribe_post_one_click(backend: Backend) {
    let Some((_app, mail)) = one_message(backend, None, "IRIA News this week", BODY).await else {
        return;
    };
    assert_eq!(
        header_values(&mail, "List-Unsubscribe-Post"),
        vec!["List-Unsubscribe=One-Click".to_string()]
    );
}
on_both_backends!(
    line_02_list_unsubscribe_post_one_click,
    super::line_02_list_unsubscribe_post_one_click
);

/// A throw-away RSA key and its DNS TXT record.
fn dkim_key(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let key = dir.join("dkim.pem");
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl genrsa");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .expect("openssl rsa -pubout");
    use base64::Engine;
    let p = base64::engine::general_purpose::STANDARD.encode(public.stdout);
    (key, format!("v=DKIM1; k=rsa; p={p}"))
}

fn dkim_verifies(message: &[u8], record: &str) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.eml");
    std::fs::write(&path, message).expect("write");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/dkim_verify.py");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(&path)
        .arg(record)
        .output()
        .expect("run python3-dkim");
    out.status.success()
}

/// Line 3, and the DKIM tests of the unsubscribe issue: the signature covers the list headers,
/// verifies with an independent implementation (python3-dkim), and fails once List-Unsubscribe
/// is altered.
async fn line_03_dkim_signature_covers_list_headers_and_verifies(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, record) = dkim_key(dir.path());
    let Some(app) = app(
        backend,
        vec![
            ("IRIA_DKIM_DOMAIN", "iria.test".into()),
            ("IRIA_DKIM_SELECTOR", "news2026".into()),
            ("IRIA_DKIM_KEY_FILE", key.display().to_string()),
        ],
    )
    .await
    else {
        return;
    };
    app.add_subscribers("reader", 1, |_| (Some("Zoë Reader".into()), String::new()));
    app.queue_issue("IRIA News: l'analyse de la semaine", BODY);
    let mail = app.wait_for_mail_to("reader00000@example.org", 1).await;
    let signature = header_values(&mail, "DKIM-Signature")
        .pop()
        .expect("a DKIM-Signature");
    let tags: Vec<(String, String)> = signature
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect();
    let tag = |k: &str| {
        tags.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(tag("d"), "iria.test");
    assert_eq!(tag("s"), "news2026");
    let signed: Vec<String> = tag("h")
        .split(':')
        .map(|h| h.to_ascii_lowercase())
        .collect();
    for required in [
        "from",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(
            signed.iter().any(|h| h == required),
            "h= lacks {required}: {signed:?}"
        );
    }
    assert!(
        dkim_verifies(&mail.raw, &record),
        "python3-dkim does not verify the signature"
    );
    let raw = String::from_utf8_lossy(&mail.raw).to_string();
    let uri = unsubscribe_uri(&mail);
    let tampered = raw.replacen(&uri, "https://evil.example/unsubscribe/x", 1);
    assert_ne!(tampered, raw);
    assert!(
        !dkim_verifies(tampered.as_bytes(), &record),
        "an altered List-Unsubscribe still verifies"
    );
}
on_both_backends!(
    line_03_dkim_signature_covers_list_headers_and_verifies,
    super::line_03_dkim_signature_covers_list_headers_and_verifies
);

async fn line_04_multipart_alternative_text_first_html_last(backend: Backend) {
    let Some((_app, mail)) = one_message(backend, None, "IRIA News this week", BODY).await else {
        return;
    };
    let parsed = mail.parsed();
    let ct = parsed.content_type().expect("Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    let parts: Vec<String> = parsed
        .parts
        .iter()
        .skip(1)
        .filter_map(|p| {
            p.content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        })
        .collect();
    assert_eq!(parts, vec!["text/plain", "text/html"]);
}
on_both_backends!(
    line_04_multipart_alternative_text_first_html_last,
    super::line_04_multipart_alternative_text_first_html_last
);

async fn line_05_html_and_text_carry_the_headers_unsubscribe_link(backend: Backend) {
    let Some((_app, mail)) = one_message(backend, None, "IRIA News this week", BODY).await else {
        return;
    };
    let uri = unsubscribe_uri(&mail);
    let text = mail.text();
    let html = mail.html();
    assert!(
        text.contains(&format!("Unsubscribe: {uri}")),
        "text part: {text}"
    );
    assert!(
        html.contains(&format!("<a href=\"{uri}\"")),
        "HTML part lacks the link"
    );
    assert!(
        html.contains(">Unsubscribe</a>"),
        "the link is visible as 'Unsubscribe'"
    );
    assert!(
        html.contains("/preferences/") && text.contains("/preferences/"),
        "a preferences link in both"
    );
}
on_both_backends!(
    line_05_html_and_text_carry_the_headers_unsubscribe_link,
    super::line_05_html_and_text_carry_the_headers_unsubscribe_link
);

async fn line_06_message_id_date_list_id_auto_submitted_no_return_path(backend: Backend) {
    let Some((_app, mail)) = one_message(backend, None, "IRIA News this week", BODY).await else {
        return;
    };
    let parsed = mail.parsed();
    assert!(parsed.message_id().is_some_and(|m| m.contains('@')));
    assert!(parsed.date().is_some());
    let list_id = header_values(&mail, "List-Id");
    assert_eq!(list_id.len(), 1);
    assert!(
        list_id[0].starts_with("IRIA News <") && list_id[0].ends_with('>'),
        "{list_id:?}"
    );
    let id = list_id[0]
        .trim_start_matches("IRIA News <")
        .trim_end_matches('>');
    assert!(
        id.contains('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
        "{id}"
    );
    assert_eq!(
        header_values(&mail, "Auto-Submitted"),
        vec!["auto-generated".to_string()]
    );
    assert!(header_values(&mail, "Return-Path").is_empty());
    assert!(parsed
        .header(HeaderName::Other("Return-Path".into()))
        .is_none());
}
on_both_backends!(
    line_06_message_id_date_list_id_auto_submitted_no_return_path,
    super::line_06_message_id_date_list_id_auto_submitted_no_return_path
);

async fn line_07_short_lines_ascii_headers_encoded_words(backend: Backend) {
    let subject = "Ημερήσια ανάλυση: l'Irak et la coalition — 安全保障";
    let long_word = "x".repeat(3000);
    let body = format!("<p>{long_word}</p><p>{}</p>", "Ω ".repeat(2000));
    let Some((_app, mail)) = one_message(backend, Some("Zoë Ωmega"), subject, &body).await else {
        return;
    };
    for line in mail.raw.split(|b| *b == b'\n') {
        assert!(line.len() <= 1000, "a line of {} octets", line.len());
    }
    assert!(raw_headers(&mail).is_ascii(), "headers are ASCII");
    assert!(
        raw_headers(&mail).contains("=?utf-8?"),
        "non-ASCII is RFC 2047 encoded"
    );
    let parsed = mail.parsed();
    assert_eq!(parsed.subject(), Some(subject));
    let name = parsed
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.name())
        .map(str::to_string);
    assert_eq!(name.as_deref(), Some("Zoë Ωmega"));
}
on_both_backends!(
    line_07_short_lines_ascii_headers_encoded_words,
    super::line_07_short_lines_ascii_headers_encoded_words
);

/// Line 8, and the header-injection test: CR/LF and NUL in names and subjects, and very long
/// words, make well-formed messages with no extra header.
async fn line_08_crlf_in_name_or_subject_adds_no_header(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    // (PostgreSQL cannot store NUL in text; the subject below carries one.)
    let evil_name = format!(
        "x\r\nBcc: victim@example.org\r\nX-Evil: 1\t\u{2028}{}",
        "w".repeat(300)
    );
    // Straight into the database, past the form's own checks, to test the message builder.
    let now = chrono::Utc::now().naive_utc();
    diesel::insert_into(subscribers::table)
        .values((
            subscribers::email.eq("evil@example.org"),
            subscribers::name.eq(Some(evil_name.clone())),
            subscribers::status.eq("confirmed"),
            subscribers::topics.eq(""),
            subscribers::created_at.eq(now),
            subscribers::updated_at.eq(now),
        ))
        .execute(&mut app.conn())
        .expect("insert");
    app.queue_issue(
        &format!(
            "Hello\r\nBcc: victim@example.org\r\nX-Evil: 2\0 {}",
            "y".repeat(150)
        ),
        BODY,
    );
    let mail = app.wait_for_mail_to("evil@example.org", 1).await;
    assert_eq!(
        mail.rcpt_tos,
        vec!["evil@example.org".to_string()],
        "one envelope recipient"
    );
    let headers = raw_headers(&mail);
    for line in headers.split("\r\n") {
        assert!(
            !line.starts_with("Bcc") && !line.starts_with("X-Evil"),
            "injected header: {line}"
        );
    }
    assert!(!headers.contains('\0'));
    for line in mail.raw.split(|b| *b == b'\n') {
        assert!(line.len() <= 1000);
    }
    let parsed = mail.parsed();
    assert!(parsed.bcc().is_none());
    assert_eq!(parsed.to().map(|t| t.iter().count()), Some(1));
    assert!(
        parsed
            .subject()
            .is_some_and(|s| s.starts_with("Hello Bcc: victim@example.org")),
        "{:?}",
        parsed.subject()
    );
    assert!(app.received_by("victim@example.org").is_empty());
}
on_both_backends!(
    line_08_crlf_in_name_or_subject_adds_no_header,
    super::line_08_crlf_in_name_or_subject_adds_no_header
);

async fn line_09_html_small_inlined_no_script_600px_preheader(backend: Backend) {
    let body = "<h2>Iraq</h2><p>Text <script>alert(1)</script><img src=x onerror=alert(2)></p>\
                <table width=\"900\"><tr><td>wide</td></tr></table><iframe src=\"https://x\"></iframe>";
    let Some((_app, mail)) = one_message(backend, None, "IRIA News this week", body).await else {
        return;
    };
    let html = mail.html();
    assert!(html.len() < 102 * 1024, "{} bytes", html.len());
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script") && !lower.contains("onerror") && !lower.contains("<iframe"));
    assert!(lower.contains("max-width: 600px"), "a 600 px frame");
    for width in lower.split("width=\"").skip(1) {
        let value: String = width.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(px) = value.parse::<u32>() {
            assert!(px <= 600, "an element {px} px wide");
        }
    }
    assert!(
        lower.contains("<td class=\"masthead\" style=\""),
        "CSS inlined into style attributes"
    );
    let preheader = html
        .split("mso-hide:all;\">")
        .nth(1)
        .and_then(|s| s.split("</div>").next())
        .unwrap_or("");
    assert!(preheader.trim().len() > 5, "a preheader: {preheader:?}");
}
on_both_backends!(
    line_09_html_small_inlined_no_script_600px_preheader,
    super::line_09_html_small_inlined_no_script_600px_preheader
);

async fn line_10_one_click_post_either_encoding_no_cookie_200_no_location(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    app.add_confirmed("reader", 2);
    app.queue_issue("IRIA News this week", BODY);
    let first = app.wait_for_mail_to("reader00000@example.org", 1).await;
    let second = app.wait_for_mail_to("reader00001@example.org", 1).await;

    let urlencoded = app
        .client
        .post(app.local(&unsubscribe_uri(&first)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST");
    let multipart_body = "--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b0undary--\r\n";
    let multipart = app
        .client
        .post(app.local(&unsubscribe_uri(&second)))
        .header("Content-Type", "multipart/form-data; boundary=b0undary")
        .body(multipart_body)
        .send()
        .await
        .expect("POST");
    for (who, response) in [
        ("reader00000@example.org", urlencoded),
        ("reader00001@example.org", multipart),
    ] {
        assert_eq!(response.status(), 200, "{who}");
        assert!(response.headers().get("location").is_none());
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(
            status_of(&app, who),
            "unsubscribed",
            "{who} unsubscribed at once"
        );
    }
}
on_both_backends!(
    line_10_one_click_post_either_encoding_no_cookie_200_no_location,
    super::line_10_one_click_post_either_encoding_no_cookie_200_no_location
);

async fn line_11_get_unsubscribe_changes_nothing(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    app.add_confirmed("reader", 1);
    app.queue_issue("IRIA News this week", BODY);
    let mail = app.wait_for_mail_to("reader00000@example.org", 1).await;
    let link = app.local(&unsubscribe_uri(&mail));
    for _ in 0..3 {
        let page = app.get(&link).await;
        assert_eq!(page.status(), 200);
        let body = page.text().await.expect("body");
        assert!(
            body.contains("<form method=\"post\""),
            "a page with a button"
        );
        assert!(body.contains("reader00000@example.org"));
    }
    assert_eq!(status_of(&app, "reader00000@example.org"), "confirmed");
    // The page's button does unsubscribe.
    let button = app
        .client
        .post(&link)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST");
    assert_eq!(button.status(), 200);
    assert_eq!(status_of(&app, "reader00000@example.org"), "unsubscribed");
}
on_both_backends!(
    line_11_get_unsubscribe_changes_nothing,
    super::line_11_get_unsubscribe_changes_nothing
);

async fn line_12_forged_truncated_altered_tokens_get_4xx_and_change_nothing(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    let people = app.add_confirmed("reader", 2);
    let secret = app.settings.secret().to_vec();
    let good = RecipientToken::new(people[0].0, 1).sign(Purpose::Unsubscribe, &secret);
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut moved = engine.decode(&good).expect("decode");
    // The same token with the other subscriber's id: replayed for another subscriber.
    moved[1..9].copy_from_slice(&people[1].0.to_be_bytes());
    let mut flipped = good.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let bad = vec![
        RecipientToken::new(people[0].0, 1).sign(
            Purpose::Unsubscribe,
            b"a forged key that is not the server's",
        ),
        good[..good.len() - 5].to_string(),
        String::from_utf8(flipped).expect("ascii"),
        engine.encode(&moved),
        "garbage".to_string(),
        "%00%0d%0a".to_string(),
        "A".repeat(5000),
        RecipientToken {
            issued_day: today() - 1000,
            ..RecipientToken::new(people[0].0, 1)
        }
        .sign(Purpose::Unsubscribe, &secret),
    ];
    for token in bad {
        for method in ["GET", "POST"] {
            let url = format!("{}/unsubscribe/{token}", app.address);
            let response = match method {
                "GET" => app.client.get(&url).send().await,
                _ => {
                    app.client
                        .post(&url)
                        .body("List-Unsubscribe=One-Click")
                        .send()
                        .await
                }
            }
            .expect("request");
            let status = response.status().as_u16();
            assert!((400..500).contains(&status), "{method} {token}: {status}");
        }
        let prefs = app
            .get(&format!("/preferences/{token}"))
            .await
            .status()
            .as_u16();
        assert!((400..500).contains(&prefs), "preferences {token}: {prefs}");
    }
    assert_eq!(status_of(&app, &people[0].1), "confirmed");
    assert_eq!(status_of(&app, &people[1].1), "confirmed");
}
on_both_backends!(
    line_12_forged_truncated_altered_tokens_get_4xx_and_change_nothing,
    super::line_12_forged_truncated_altered_tokens_get_4xx_and_change_nothing
);

async fn line_13_unsubscribe_tokens_work_for_at_least_60_days(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    let people = app.add_confirmed("reader", 1);
    let secret = app.settings.secret().to_vec();
    // A link from a message sent 61 days ago.
    let old = RecipientToken {
        issued_day: today() - 61,
        ..RecipientToken::new(people[0].0, 1)
    }
    .sign(Purpose::Unsubscribe, &secret);
    let response = app
        .client
        .post(format!("{}/unsubscribe/{old}", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    assert_eq!(status_of(&app, &people[0].1), "unsubscribed");
}
on_both_backends!(
    line_13_unsubscribe_tokens_work_for_at_least_60_days,
    super::line_13_unsubscribe_tokens_work_for_at_least_60_days
);

/// Line 14, and the unsubscribe issue's test: a reader who unsubscribes while an issue to 1,000
/// subscribers is going out receives nothing more from it.
async fn line_14_unsubscribed_during_a_send_gets_nothing_more(backend: Backend) {
    let Some(app) = app(
        backend,
        vec![
            ("IRIA_DELIVERY_CONCURRENCY", "2".into()),
            ("IRIA_DELIVERY_BATCH_SIZE", "20".into()),
        ],
    )
    .await
    else {
        return;
    };
    let people = app.add_confirmed("reader", 1000);
    let queued = app.queue_issue("IRIA News this week", BODY);
    assert_eq!(queued.recipients, 1000);
    // The send is under way...
    app.smtp().wait_for(30, Duration::from_secs(30)).await;
    // ...when the last readers in the queue leave, one by one-click, one through the page.
    let secret = app.settings.secret().to_vec();
    let leaving = [&people[999], &people[998]];
    for (id, _) in leaving {
        let token = RecipientToken::new(*id, queued.issue_id).sign(Purpose::Unsubscribe, &secret);
        let response = app
            .client
            .post(format!("{}/unsubscribe/{token}", app.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 200);
    }
    let sent_before = app.smtp().received().len();
    assert!(
        sent_before < 990,
        "the send was still under way ({sent_before} sent)"
    );
    app.wait_issue_done(queued.issue_id, Duration::from_secs(120))
        .await;
    for (_, email) in leaving {
        assert!(
            app.received_by(email).is_empty(),
            "{email} received the issue after leaving"
        );
    }
    let statuses = app.delivery_statuses(queued.issue_id);
    for (email, status) in &statuses {
        let left = leaving.iter().any(|(_, e)| e == email);
        assert_eq!(status, if left { "skipped" } else { "sent" }, "{email}");
    }
    let received = app.smtp().received();
    assert_eq!(received.len(), 998, "everyone else got it, once");
    let mut recipients: Vec<String> = received.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 998, "no one got it twice");
}
on_both_backends!(
    line_14_unsubscribed_during_a_send_gets_nothing_more,
    super::line_14_unsubscribed_during_a_send_gets_nothing_more
);
