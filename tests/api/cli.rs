//! The `iria-news` binary as a user runs it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{form, read_messages};

fn iria_news() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iria-news"));
    for (key, _) in std::env::vars() {
        if key.starts_with("IRIA_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// With no configuration at all, `iria-news` serves the page on 127.0.0.1:8080, takes a sign-up
/// and leaves the confirmation as an `.eml` file in `outbox/`.
#[tokio::test]
async fn with_no_configuration_a_signup_leaves_an_eml_in_the_outbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = iria_news()
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iria-news");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        match client.get("http://127.0.0.1:8080/").send().await {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("iria-news did not start on 127.0.0.1:8080: {e}"),
        }
    };
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("body")
        .contains("Subscribe to IRIA News"));
    let response = client
        .post("http://127.0.0.1:8080/subscriptions")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("email", "first@example.org")]))
        .send()
        .await
        .expect("sign up");
    assert_eq!(response.status(), 200);
    let outbox = dir.path().join("outbox");
    let mails = crate::helpers::wait_for_messages(
        || read_messages(&outbox, "eml"),
        1,
        Duration::from_secs(10),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mails.len(), 1, "one .eml in outbox/");
    assert_eq!(mails[0].to(), "first@example.org");
    assert!(mails[0]
        .confirmation_link()
        .starts_with("http://127.0.0.1:8080/subscriptions/confirm?token="));
    assert!(dir.path().join("iria-news.db").exists());
    assert!(
        dir.path().join("iria-news.db.secret").exists(),
        "the generated key is kept beside the database"
    );
}

/// A bad setting or an unreachable database: a non-zero exit and one line that says what.
#[test]
fn bad_configuration_is_one_line_and_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (key, value, says) in [
        ("IRIA_LISTEN", "not-an-address", "IRIA_LISTEN"),
        ("IRIA_SMTP_URL", "gopher://x", "IRIA_SMTP_URL"),
        (
            "IRIA_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
            "connecting to the database",
        ),
    ] {
        let out = iria_news()
            .arg("migrate")
            .current_dir(dir.path())
            .env(key, value)
            .env("IRIA_SECRET_KEY", "k".repeat(32))
            .output()
            .expect("run");
        assert!(!out.status.success(), "{key}={value} exited 0");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{key}: {stderr}");
        assert!(lines[0].contains(says), "{key}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `migrate` on a fresh SQLite file applies the migrations and says so; again, it has nothing to do.
#[test]
fn migrate_applies_then_is_up_to_date() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = || {
        iria_news()
            .arg("migrate")
            .current_dir(dir.path())
            .output()
            .expect("run")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let said = String::from_utf8_lossy(&first.stdout).to_string();
    let applied: u32 = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(said.starts_with("applied ") && applied > 0, "{said}");
    let second = run();
    assert!(String::from_utf8_lossy(&second.stdout).starts_with("applied 0 migration"));
}

/// `iria-news send` queues an editor's issue to every confirmed subscriber; `--wait` delivers it
/// from the same process. Bad input: a one-line error, nothing queued.
#[test]
fn send_queues_an_issue_and_wait_delivers_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        iria_news()
            .args(args)
            .current_dir(dir.path())
            .env("IRIA_BASE_URL", "https://news.iria.test")
            .output()
            .expect("run")
    };
    assert!(run(&["migrate"]).status.success());
    let url = format!("sqlite://{}", dir.path().join("iria-news.db").display());
    let manager = iria_news::foundation::db::Manager::new(
        iria_news::foundation::config::DatabaseUrl::parse(&url).expect("url"),
    );
    {
        use diesel::prelude::*;
        use iria_news::foundation::db::schema::subscribers;
        let now = chrono::Utc::now().naive_utc();
        for (email, status) in [
            ("a@example.org", "confirmed"),
            ("b@example.org", "confirmed"),
            ("c@example.org", "pending"),
        ] {
            diesel::insert_into(subscribers::table)
                .values((
                    subscribers::email.eq(email),
                    subscribers::status.eq(status),
                    subscribers::topics.eq(""),
                    subscribers::created_at.eq(now),
                    subscribers::updated_at.eq(now),
                ))
                .execute(&mut manager.open().expect("open"))
                .expect("insert");
        }
    }
    std::fs::write(
        dir.path().join("issue.html"),
        "<h1>Special report</h1><p>On the coalition.</p>",
    )
    .expect("write");
    let missing = run(&["send", "--subject", "S", "--html-file", "nope.html"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("reading nope.html"));
    let unknown = run(&[
        "send",
        "--subject",
        "S",
        "--html-file",
        "issue.html",
        "--topics",
        "Mars",
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown topic"));

    let sent = run(&[
        "send",
        "--subject",
        "Special report",
        "--html-file",
        "issue.html",
        "--wait",
        "--idempotency-key",
        "k1",
    ]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let said = String::from_utf8_lossy(&sent.stdout);
    assert!(said.contains("queued to 2 subscriber(s)"), "{said}");
    assert!(said.contains("sent 2, failed 0"), "{said}");
    let mails = read_messages(&dir.path().join("outbox"), "eml");
    assert_eq!(mails.len(), 2);
    let mut to: Vec<String> = mails.iter().map(|m| m.to()).collect();
    to.sort();
    assert_eq!(to, vec!["a@example.org", "b@example.org"]);
    assert!(mails[0].text().contains("Special report"));

    // The same key again: nothing new.
    let again = run(&[
        "send",
        "--subject",
        "Special report",
        "--html-file",
        "issue.html",
        "--wait",
        "--idempotency-key",
        "k1",
    ]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing new queued"));
    assert_eq!(read_messages(&dir.path().join("outbox"), "eml").len(), 2);
}

/// `iria-news admin create-user NAME --password-stdin` makes an editor whose password verifies
/// (argon2id); a taken name, a short password or a bad name is a one-line error.
#[test]
fn admin_create_user_makes_an_editor() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let create = |name: &str, password: &str| {
        let mut child = iria_news()
            .args(["admin", "create-user", name, "--password-stdin"])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    };
    let made = create("ada", "correct horse battery staple");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for (name, password, says) in [
        ("ada", "another long password", "exists already"),
        ("bob", "short", "at least 12"),
        ("bad name!", "a long enough password", "editor name"),
    ] {
        let out = create(name, password);
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
    let url = format!("sqlite://{}", dir.path().join("iria-news.db").display());
    let manager = iria_news::foundation::db::Manager::new(
        iria_news::foundation::config::DatabaseUrl::parse(&url).expect("url"),
    );
    let mut conn = manager.open().expect("open");
    assert!(
        iria_news::stores::editors::verify(&mut conn, "ada", "correct horse battery staple")
            .expect("verify")
    );
    assert!(
        !iria_news::stores::editors::verify(&mut conn, "ada", "wrong password here")
            .expect("verify")
    );
    assert!(!iria_news::stores::editors::verify(
        &mut conn,
        "nobody",
        "correct horse battery staple"
    )
    .expect("verify"));
    let stored: String = {
        use diesel::prelude::*;
        iria_news::foundation::db::schema::editors::table
            .select(iria_news::foundation::db::schema::editors::password_hash)
            .first(&mut conn)
            .expect("hash")
    };
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}
