//! DKIM signatures as a receiver checks them: messages sent by the worker to a real SMTP server
//! on loopback, verified by an independent implementation (Debian's python3-dkim), with an
//! RSA-2048 key (PKCS#8), an Ed25519 key (RFC 8463), and both at once; a message changed on the
//! way fails. Keys are made by the `openssl` command, as docs/deliverability.md says.

use std::path::{Path, PathBuf};
use std::process::Command;

use iria_news::processes::messages::dkim::{DkimKey, DkimSigner};
use iria_news::processes::messages::DKIM_SIGNED_HEADERS;
use mail_parser::MimeHeaders;

use crate::helpers::{spawn_app_with, AppOptions, Backend, Received, TestApp};
use crate::on_both_backends;

const SUBJECT: &str = "Sécurité — Україна, 安全: the week";

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A 2048-bit RSA key in PKCS#8 PEM (`BEGIN PRIVATE KEY`) and its DNS record.
fn rsa_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("rsa.pem");
    let path = key.to_str().expect("path");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path,
    ]);
    let pem = std::fs::read_to_string(&key).expect("read key");
    assert!(pem.contains("BEGIN PRIVATE KEY"), "PKCS#8: {pem:.40}");
    let public = openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"]);
    (key, format!("v=DKIM1; k=rsa; p={}", b64(&public)))
}

/// An Ed25519 key in PKCS#8 PEM, the base64 of its raw 32-byte seed (the older format), and
/// its DNS record (RFC 8463: the raw public key).
fn ed25519_key(dir: &Path) -> (PathBuf, String, String) {
    let key = dir.join("ed25519.pem");
    let path = key.to_str().expect("path");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path]);
    let private = openssl(&["pkey", "-in", path, "-outform", "DER"]);
    let public = openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"]);
    let seed = b64(&private[private.len() - 32..]);
    let record = format!(
        "v=DKIM1; k=ed25519; p={}",
        b64(&public[public.len() - 32..])
    );
    (key, seed, record)
}

/// Runs python3-dkim on `message`: every signature must verify, each against the record of its
/// selector. Returns whether they did, and what it printed.
fn verify_every(message: &[u8], records: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.eml");
    std::fs::write(&path, message).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/dkim_verify.py");
    let mut command = Command::new("/usr/bin/python3");
    command.arg(script).arg("--every").arg(&path);
    for (selector, record) in records {
        command.arg(selector).arg(record);
    }
    let out = command.output().expect("run python3-dkim");
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), printed)
}

/// The `DKIM-Signature` fields of a message, unfolded.
fn signature_fields(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = &text[..text.find("\r\n\r\n").expect("separator")];
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push_str(line);
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
        .into_iter()
        .filter(|f| f.to_ascii_lowercase().starts_with("dkim-signature:"))
        .collect()
}

/// The message with a line added at the start of its body (before the first MIME part).
fn body_tampered(raw: &[u8]) -> Vec<u8> {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("separator")
        + 4;
    [&raw[..at], b"Added on the way.\r\n", &raw[at..]].concat()
}

/// The message with List-Unsubscribe pointing elsewhere.
fn unsubscribe_tampered(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).to_string();
    let at = text.find("List-Unsubscribe: <").expect("List-Unsubscribe") + 19;
    let end = at + text[at..].find('>').expect("end of the address");
    let tampered = format!("{}https://evil.example/u{}", &text[..at], &text[end..]);
    assert_ne!(tampered, text);
    tampered.into_bytes()
}

async fn app_with_keys(backend: Backend, keys: Vec<(&'static str, String)>) -> Option<TestApp> {
    let mut env = vec![
        ("IRIA_BASE_URL", "https://news.iria.test".to_string()),
        ("IRIA_DKIM_DOMAIN", "iria.test".to_string()),
    ];
    env.extend(keys);
    spawn_app_with(
        backend,
        AppOptions {
            env,
            ..Default::default()
        },
    )
    .await
}

/// An issue with an HTML and a text part that are hard on canonicalisation: non-ASCII subject
/// and text, lines far over 998 bytes, runs of spaces, trailing white space and empty lines at
/// the end of the text. Returns the copy the reader received.
async fn send_awkward_issue(app: &TestApp) -> Received {
    app.add_subscribers("reader", 1, |_| (Some("Zoë Reader".into()), String::new()));
    let long_word = "Україна".repeat(300);
    let html = format!(
        "<h1>Sécurité — Україна, 安全</h1><p>{long_word}</p><p>{}</p>\
         <p>Analysis of <a href=\"https://iria.example/x\">the coalition</a>.</p>",
        "Kyiv and Tbilisi ".repeat(200)
    );
    let text = format!(
        "Sécurité — Україна, 安全\n\nA line with trailing spaces   \nA tab\tinside and at the end\t\n\
         {long_word}\nKyiv    and     Tbilisi\n\n\n\n"
    );
    let draft = iria_news::stores::issues::Draft {
        kind: iria_news::stores::issues::Kind::Announcement,
        subject: SUBJECT.to_string(),
        preheader: String::new(),
        body_html: html,
        body_text: Some(text),
        topics: Vec::new(),
        period_key: None,
        idempotency_key: None,
    };
    iria_news::processes::compose::create_and_queue(&mut app.conn(), &app.settings, &draft)
        .expect("queue issue");
    let mail = app.wait_for_mail_to("reader00000@example.org", 1).await;
    // What the reader sees: both parts, the words as written.
    let parsed = mail.parsed();
    assert_eq!(parsed.subject(), Some(SUBJECT));
    let parts: Vec<String> = parsed
        .parts
        .iter()
        .filter_map(|p| p.content_type())
        .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")))
        .collect();
    assert!(parts.contains(&"text/plain".to_string()), "{parts:?}");
    assert!(parts.contains(&"text/html".to_string()), "{parts:?}");
    // The HTML part keeps its line of some 8,000 bytes (the text part is wrapped when composed).
    let html = mail.html();
    let longest = html.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest > 998,
        "a line over 998 bytes before encoding: {longest}"
    );
    assert!(html.contains(&long_word), "the long line arrives whole");
    let text = mail.text();
    assert!(text.contains("Kyiv    and     Tbilisi"), "{text}");
    assert!(text.contains("Україна, 安全"), "{text}");
    assert!(mail.html().contains("安全"));
    mail
}

async fn rsa_signed_issue_verifies_and_changes_fail(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, record) = rsa_key(dir.path());
    let keys = vec![
        ("IRIA_DKIM_SELECTOR", "rsa2026".to_string()),
        ("IRIA_DKIM_KEY_FILE", key.display().to_string()),
    ];
    let Some(app) = app_with_keys(backend, keys).await else {
        return;
    };
    let mail = send_awkward_issue(&app).await;
    let fields = signature_fields(&mail.raw);
    assert_eq!(fields.len(), 1, "{fields:?}");
    let field = fields[0].replace([' ', '\t'], "");
    assert!(field.contains("a=rsa-sha256;"), "{field}");
    assert!(field.contains("c=relaxed/relaxed;"), "{field}");
    assert!(field.contains("s=rsa2026;") && field.contains("d=iria.test;"));
    assert!(
        field.contains("content-type"),
        "Content-Type is signed: {field}"
    );
    assert!(!field.contains(";l="), "no body length tag: {field}");
    let records = [("rsa2026", record.as_str())];
    let (ok, printed) = verify_every(&mail.raw, &records);
    assert!(ok, "python3-dkim: {printed}");
    let (ok, printed) = verify_every(&body_tampered(&mail.raw), &records);
    assert!(!ok, "a changed body still verifies: {printed}");
    let (ok, printed) = verify_every(&unsubscribe_tampered(&mail.raw), &records);
    assert!(!ok, "a changed List-Unsubscribe still verifies: {printed}");
}
on_both_backends!(
    rsa_signed_issue_verifies_and_changes_fail,
    super::rsa_signed_issue_verifies_and_changes_fail
);

/// The Ed25519 key alone, in the base64 format documented before PEM keys were read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_signed_issue_verifies_and_changes_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, seed, record) = ed25519_key(dir.path());
    let seed_file = dir.path().join("ed25519.b64");
    std::fs::write(&seed_file, format!("{seed}\n")).expect("write");
    let keys = vec![
        ("IRIA_DKIM_SELECTOR", "ed2026".to_string()),
        ("IRIA_DKIM_KEY_FILE", seed_file.display().to_string()),
    ];
    let Some(app) = app_with_keys(Backend::Sqlite, keys).await else {
        return;
    };
    let mail = send_awkward_issue(&app).await;
    let fields = signature_fields(&mail.raw);
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert!(fields[0].contains("a=ed25519-sha256;"), "{}", fields[0]);
    let records = [("ed2026", record.as_str())];
    let (ok, printed) = verify_every(&mail.raw, &records);
    assert!(ok, "python3-dkim: {printed}");
    let (ok, printed) = verify_every(&body_tampered(&mail.raw), &records);
    assert!(!ok, "a changed body still verifies: {printed}");
    let (ok, printed) = verify_every(&unsubscribe_tampered(&mail.raw), &records);
    assert!(!ok, "a changed List-Unsubscribe still verifies: {printed}");
}

/// RSA and Ed25519 keys together: two signatures on each message (an issue, and a
/// confirmation, which has no list headers), each verifying against its own record.
async fn both_keys_sign_every_message_twice(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rsa, rsa_record) = rsa_key(dir.path());
    let (ed, _, ed_record) = ed25519_key(dir.path());
    let keys = vec![
        ("IRIA_DKIM_SELECTOR", "rsa2026".to_string()),
        ("IRIA_DKIM_KEY_FILE", rsa.display().to_string()),
        ("IRIA_DKIM_ED25519_SELECTOR", "ed2026".to_string()),
        ("IRIA_DKIM_ED25519_KEY_FILE", ed.display().to_string()),
    ];
    let Some(app) = app_with_keys(backend, keys).await else {
        return;
    };
    let records = [
        ("rsa2026", rsa_record.as_str()),
        ("ed2026", ed_record.as_str()),
    ];
    let issue = send_awkward_issue(&app).await;
    app.sign_up("new.reader@example.org").await;
    let confirmation = app.wait_for_mail_to("new.reader@example.org", 1).await;
    for mail in [&issue, &confirmation] {
        let fields = signature_fields(&mail.raw);
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert!(fields
            .iter()
            .any(|f| f.contains("a=rsa-sha256;") && f.contains("s=rsa2026;")));
        assert!(fields
            .iter()
            .any(|f| f.contains("a=ed25519-sha256;") && f.contains("s=ed2026;")));
        let (ok, printed) = verify_every(&mail.raw, &records);
        assert!(ok, "python3-dkim: {printed}");
        assert_eq!(printed.matches("verified").count(), 2, "{printed}");
        let (ok, printed) = verify_every(&body_tampered(&mail.raw), &records);
        assert!(!ok, "a changed body still verifies: {printed}");
        assert_eq!(printed.matches("failed").count(), 2, "both fail: {printed}");
    }
    let (ok, printed) = verify_every(&unsubscribe_tampered(&issue.raw), &records);
    assert!(!ok, "a changed List-Unsubscribe still verifies: {printed}");
    assert_eq!(printed.matches("failed").count(), 2, "both fail: {printed}");
}
on_both_backends!(
    both_keys_sign_every_message_twice,
    super::both_keys_sign_every_message_twice
);

/// The signer on bytes written by hand, where nothing re-encodes them: 8-bit UTF-8, a 2,000-byte
/// line, tabs and runs of spaces, white space at line ends, empty lines at the end, a folded
/// Subject, and a body without its last CRLF.
#[test]
fn hand_written_messages_with_awkward_white_space_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rsa, rsa_record) = rsa_key(dir.path());
    let (ed, _, ed_record) = ed25519_key(dir.path());
    let key = |path: &Path, selector: &str| {
        DkimKey::parse(&std::fs::read(path).expect("key"), "iria.test", selector).expect("key")
    };
    let signer = DkimSigner::new(
        vec![key(&rsa, "rsa2026"), key(&ed, "ed2026")],
        DKIM_SIGNED_HEADERS,
    );
    let records = [
        ("rsa2026", rsa_record.as_str()),
        ("ed2026", ed_record.as_str()),
    ];
    let long = "安全".repeat(340);
    let head = "From: IRIA News <news@iria.test>\r\nTo: reader@example.org\r\n\
                Subject:   Sécurité\r\n\t —  Україна \r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\
                MIME-Version: 1.0\r\nContent-Type: text/plain;\r\n charset=utf-8\r\n\
                Content-Transfer-Encoding: 8bit\r\n\r\n";
    let bodies = [
        format!(
            "Hello  \t world \r\n\t indented\r\none space at the end \r\n{long}\r\n\r\n  \r\n\r\n"
        ),
        format!("No last line end  {long}"),
        String::new(),
        "\r\n\r\n".to_string(),
    ];
    for body in bodies {
        let message = format!("{head}{body}");
        let signed = signer
            .sign(message.as_bytes(), 1_764_547_200)
            .expect("sign");
        let (ok, printed) = verify_every(&signed, &records);
        let start: String = body.chars().take(40).collect();
        assert!(ok, "body {start:?}: {printed}");
        let tampered = [&signed[..], b"More text.\r\n"].concat();
        let (ok, printed) = verify_every(&tampered, &records);
        assert!(!ok, "an appended line still verifies: {printed}");
        // Over-signed: a second Subject or From added above the signed one breaks it.
        for added in [
            "Subject: Urgent: confirm your account\r\n",
            "From: evil@example.net\r\n",
        ] {
            let tampered = [added.as_bytes(), &signed[..]].concat();
            let (ok, printed) = verify_every(&tampered, &records);
            assert!(!ok, "{added:?} added above still verifies: {printed}");
        }
    }
}

/// A key file that is not a usable key stops start-up with an error naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_file_stops_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rsa, _) = rsa_key(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").expect("write");
    let cases = [
        (
            vec![("IRIA_DKIM_KEY_FILE", garbage.display().to_string())],
            "IRIA_DKIM_KEY_FILE",
        ),
        (
            vec![
                ("IRIA_DKIM_KEY_FILE", rsa.display().to_string()),
                ("IRIA_DKIM_ED25519_SELECTOR", "ed2026".to_string()),
                ("IRIA_DKIM_ED25519_KEY_FILE", rsa.display().to_string()),
            ],
            "not an Ed25519 key",
        ),
    ];
    for (keys, expected) in cases {
        let db = crate::helpers::TestDb::create(Backend::Sqlite).expect("sqlite");
        let mut env: std::collections::BTreeMap<String, String> = [
            ("IRIA_DATABASE_URL", db.url.clone()),
            ("IRIA_SMTP_URL", "smtp://127.0.0.1:9".to_string()),
            (
                "IRIA_SECRET_KEY",
                "test-secret-key-of-at-least-32-bytes!!".into(),
            ),
            ("IRIA_DKIM_DOMAIN", "iria.test".into()),
            ("IRIA_DKIM_SELECTOR", "rsa2026".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(keys.into_iter().map(|(k, v)| (k.to_string(), v)));
        let settings = iria_news::foundation::config::Settings::from_sources(None, &env)
            .expect("settings parse");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let Err(e) =
            iria_news::startup::server::Application::build_with_listener(settings, listener)
        else {
            panic!("started with a bad key ({expected})");
        };
        let message = format!("{e:#}");
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
}
