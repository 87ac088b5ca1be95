//! The reader's whole journey (issue 15): a fresh installation's first digest, the welcome email,
//! the note to a confirmed address that signs up again, and every issue readable on the web.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use iria_news::foundation::db::schema::{deliveries, digests};
use iria_news::foundation::links::{Purpose, RecipientToken};
use iria_news::stores::articles::{self, NewArticle, Source};

use crate::console::log_in;
use crate::helpers::{spawn_app_with, AppOptions, Backend, Received, TestApp};
use crate::on_both_backends;

/// A schedule whose current period has begun, so that `serve`'s scheduler runs at start.
const EVERY_MONDAY: &str = "0 0 8 * * Mon";

/// The app of these tests: `serve`'s scheduler on `schedule`, in Paris.
async fn app_with_schedule(backend: Backend, schedule: &str) -> Option<TestApp> {
    spawn_app_with(
        backend,
        AppOptions {
            env: vec![
                ("IRIA_DIGEST_SCHEDULE", schedule.to_string()),
                ("IRIA_TIMEZONE", "Europe/Paris".to_string()),
            ],
            ..Default::default()
        },
    )
    .await
}

/// Runs the `iria-news` binary against the test's database, as an operator on the same server
/// would (same settings, another process).
async fn iria_news(app: &TestApp, dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iria-news"));
    for (key, _) in std::env::vars() {
        if key.starts_with("IRIA_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .env("IRIA_DATABASE_URL", &app.db.url)
        .env("IRIA_SMTP_URL", app.smtp().url())
        .env("IRIA_BASE_URL", &app.address)
        .env(
            "IRIA_SECRET_KEY",
            String::from_utf8(app.settings.secret().to_vec()).expect("a text key"),
        )
        .env("IRIA_FROM", "IRIA News <news@iria.test>")
        .env("IRIA_DIGEST_SCHEDULE", &app.settings.digest_schedule)
        .env("IRIA_TIMEZONE", &app.settings.timezone);
    let out: Output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run iria-news");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "iria-news {args:?} panicked: {stderr}"
    );
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// `tests/fixtures/wordpress.xml` with its good items published in the last hours (the first
/// digest looks back a week), written into `dir`.
fn recent_feed(dir: &Path) -> String {
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wordpress.xml"),
    )
    .expect("fixture");
    let mut feed = String::new();
    let mut rest = fixture.as_str();
    let mut n = 0;
    while let Some(at) = rest.find("<pubDate>") {
        let end = at + rest[at..].find("</pubDate>").expect("closed");
        let date = &rest[at + "<pubDate>".len()..end];
        feed.push_str(&rest[..at + "<pubDate>".len()]);
        // The broken date stays broken: that item is still reported and skipped.
        if chrono::DateTime::parse_from_rfc2822(date).is_ok() {
            n += 1;
            let when = chrono::Utc::now() - chrono::Duration::hours(n);
            feed.push_str(&when.to_rfc2822());
        } else {
            feed.push_str(date);
        }
        rest = &rest[end..];
    }
    feed.push_str(rest);
    let path = dir.join("feed.xml");
    std::fs::write(&path, feed).expect("write the feed");
    path.display().to_string()
}

/// Waits (15 s at most) for the scheduler's run at start to close the current period.
async fn wait_for_period(app: &TestApp, key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let outcome: Option<String> = digests::table
            .filter(digests::period_key.eq(key))
            .select(digests::outcome)
            .first(&mut app.conn())
            .optional()
            .expect("digests");
        if let Some(outcome) = outcome {
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not run at start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The subject of a received message.
fn subject(m: &Received) -> String {
    m.parsed().subject().unwrap_or_default().to_string()
}

/// Waits (15 s at most) for a message to `email` whose subject contains `part`.
async fn wait_for_subject(app: &TestApp, email: &str, part: &str) -> Received {
    app.wait_for_mail_with_subject(email, part, 1).await
}

/// Signs an address up through the form and follows the link in its confirmation.
async fn sign_up_and_confirm(app: &TestApp, email: &str) {
    assert_eq!(app.sign_up(email).await.status(), 200);
    let link = wait_for_subject(app, email, "Confirm your subscription")
        .await
        .confirmation_link();
    assert_eq!(app.confirm(&link).await.status(), 200);
}

/// The token of a message's List-Unsubscribe link: the reader's own.
fn recipient_token(m: &Received) -> String {
    let header = m
        .parsed()
        .header_raw("List-Unsubscribe")
        .unwrap_or_default()
        .to_string();
    let start = header.find("/unsubscribe/").expect("an unsubscribe link") + "/unsubscribe/".len();
    header[start..].chars().take_while(|c| *c != '>').collect()
}

/// The token of the preferences link in a message's text part.
fn preferences_token(text: &str) -> String {
    let start = text.find("/preferences/").expect("a preferences link") + "/preferences/".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// How many messages of a kind the ledger holds for an address.
fn ledger_count(app: &TestApp, email: &str, kind: &str) -> i64 {
    deliveries::table
        .filter(deliveries::subscriber_id.eq(app.subscriber_id(email)))
        .filter(deliveries::kind.eq(kind))
        .count()
        .get_result(&mut app.conn())
        .expect("count")
}

/// The fresh installation, as an operator sets it up: `serve` starts (its scheduler runs at
/// once, finds no article, closes the period as empty), a reader signs up, the site's feed is
/// imported, and `iria-news digest run` sends the first digest now rather than next week. A
/// second run says the period is done, when the next one opens, and that `--force` exists.
async fn a_fresh_installation_sends_its_first_digest_when_asked(backend: Backend) {
    let Some(app) = app_with_schedule(backend, EVERY_MONDAY).await else {
        return;
    };
    let key = app.settings.schedule.period_key(chrono::Utc::now());
    assert_eq!(wait_for_period(&app, &key).await, "empty");
    sign_up_and_confirm(&app, "first.reader@example.org").await;

    let dir = tempfile::tempdir().expect("temp dir");
    let feed = recent_feed(dir.path());
    let (ok, said) = iria_news(&app, dir.path(), &["articles", "import", &feed]).await;
    assert!(ok && said.contains("3 new"), "{said}");
    let (ok, said) = iria_news(&app, dir.path(), &["digest", "run"]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains("3 article(s)") && said.contains("queued to 1 subscriber(s)"),
        "{said}"
    );
    let digest = wait_for_subject(&app, "first.reader@example.org", "3 new articles").await;
    assert!(app
        .link_targets(&digest.html())
        .await
        .iter()
        .any(|l| l == "https://iria.example/2026/11/europe-defence-spending/"));

    let (ok, said) = iria_news(&app, dir.path(), &["digest", "run"]).await;
    assert!(ok, "{said}");
    assert!(said.contains("was made already; nothing sent"), "{said}");
    assert!(said.contains("the next period opens on Monday "), "{said}");
    assert!(
        said.contains("(Europe/Paris)") && said.contains("--force"),
        "{said}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let digests_received = app
        .received_by("first.reader@example.org")
        .iter()
        .filter(|m| subject(m).contains("new articles"))
        .count();
    assert_eq!(digests_received, 1, "one digest");
}
on_both_backends!(
    a_fresh_installation_sends_its_first_digest_when_asked,
    super::a_fresh_installation_sends_its_first_digest_when_asked
);

/// The same first week from the console: "Send it now" with nothing to send sends nothing and
/// closes nothing; once the feed is in, "Send it now" sends. The API then finds it done.
async fn the_console_sends_the_first_digest_once_there_are_articles(backend: Backend) {
    let Some(app) = app_with_schedule(backend, EVERY_MONDAY).await else {
        return;
    };
    let key = app.settings.schedule.period_key(chrono::Utc::now());
    assert_eq!(wait_for_period(&app, &key).await, "empty");
    let readers = app.add_confirmed("reader", 1);
    let console = log_in(&app, true).await;
    let empty = console.post("/admin/digest/send", &[]).await;
    assert_eq!(empty.headers()["location"], "/admin/digest?notice=empty");

    let dir = tempfile::tempdir().expect("temp dir");
    let feed = recent_feed(dir.path());
    let (ok, said) = iria_news(&app, dir.path(), &["articles", "import", &feed]).await;
    assert!(ok, "{said}");
    let sent = console.post("/admin/digest/send", &[]).await;
    assert_eq!(sent.headers()["location"], "/admin/digest?notice=queued");
    wait_for_subject(&app, &readers[0].1, "3 new articles").await;

    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "ops").expect("token");
    let run: serde_json::Value = app
        .client
        .post(format!("{}/api/v1/digest/run", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    assert_eq!(run["outcome"], "already_done", "{run}");
    let summary = run["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("nothing sent") && summary.contains("next period opens"),
        "{summary}"
    );
}
on_both_backends!(
    the_console_sends_the_first_digest_once_there_are_articles,
    super::the_console_sends_the_first_digest_once_there_are_articles
);

/// "Skip this week" stays a skip: "Send it now", the API and `digest run` send nothing in a
/// skipped period (the command says an editor skipped it); `--force` still can.
async fn a_skipped_week_stays_skipped_unless_forced(backend: Backend) {
    let Some(app) = app_with_schedule(backend, EVERY_MONDAY).await else {
        return;
    };
    let key = app.settings.schedule.period_key(chrono::Utc::now());
    assert_eq!(wait_for_period(&app, &key).await, "empty");
    let readers = app.add_confirmed("reader", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let feed = recent_feed(dir.path());
    assert!(
        iria_news(&app, dir.path(), &["articles", "import", &feed])
            .await
            .0
    );

    // The coming digest, skipped from the console.
    let console = log_in(&app, true).await;
    let skipped = console.post("/admin/digest/skip", &[]).await;
    assert_eq!(
        skipped.headers()["location"],
        "/admin/digest?notice=skipped"
    );
    let again = console.post("/admin/digest/send", &[]).await;
    assert_eq!(again.headers()["location"], "/admin/digest?notice=done");
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "ops").expect("token");
    let run: serde_json::Value = app
        .client
        .post(format!("{}/api/v1/digest/run", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    assert_eq!(run["outcome"], "already_done", "{run}");

    // This week's, closed as empty by the scheduler, skipped by an editor: the command sends
    // nothing either.
    assert!(iria_news::stores::digests::skip(
        &mut app.conn(),
        &key,
        chrono::Utc::now().naive_utc()
    )
    .expect("skip"));
    let (ok, said) = iria_news(&app, dir.path(), &["digest", "run"]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains("an editor skipped it") && said.contains("nothing sent"),
        "{said}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(app.received_by(&readers[0].1).is_empty(), "nothing sent");

    let (ok, said) = iria_news(&app, dir.path(), &["digest", "run", "--force"]).await;
    assert!(ok && said.contains("queued to 1 subscriber(s)"), "{said}");
    wait_for_subject(&app, &readers[0].1, "3 new articles").await;
}
on_both_backends!(
    a_skipped_week_stays_skipped_unless_forced,
    super::a_skipped_week_stays_skipped_unless_forced
);

/// A reader who confirms is welcomed once, with the list headers and their own links; the
/// default text says when the digest comes. Editors rewrite it in the console (preview, save)
/// and can turn it off.
async fn a_confirmed_reader_is_welcomed_once(backend: Backend) {
    // Mondays of 2099: the schedule in words without a run at start.
    let Some(app) = app_with_schedule(backend, "0 0 8 * * Mon 2099").await else {
        return;
    };
    sign_up_and_confirm(&app, "ada@example.org").await;
    let welcome = wait_for_subject(&app, "ada@example.org", "Welcome to IRIA News").await;
    let text = welcome.text();
    // The text part wraps its lines anywhere.
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("It comes every Monday at 08:00 (Europe/Paris)."),
        "{text}"
    );
    assert!(welcome
        .html()
        .contains("every Monday at 08:00 (Europe/Paris)"));
    assert!(!text.contains("View in your browser") && !text.contains("%%IRIA_"));
    let parsed = welcome.parsed();
    assert!(parsed
        .header_raw("List-Id")
        .is_some_and(|v| v.contains("IRIA News")));
    assert_eq!(
        parsed.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );
    let token = recipient_token(&welcome);
    let named = RecipientToken::verify(&token, Purpose::Unsubscribe, app.settings.secret())
        .expect("a valid token");
    assert_eq!(named.subscriber_id, app.subscriber_id("ada@example.org"));
    assert!(welcome.html().contains(&format!("/unsubscribe/{token}")));
    // The body's preferences link has a token of its own (the header's only unsubscribes).
    let preferences = preferences_token(&text);
    let named = RecipientToken::verify(&preferences, Purpose::Preferences, app.settings.secret())
        .expect("a valid preferences token");
    assert_eq!(named.subscriber_id, app.subscriber_id("ada@example.org"));
    assert_eq!(
        app.get(&format!("/preferences/{preferences}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get(&format!("/preferences/{token}")).await.status(),
        403
    );

    // Leaving and confirming again: still one welcome.
    let id = app.subscriber_id("ada@example.org");
    iria_news::stores::subscriptions::records::unsubscribe(&mut app.conn(), id, "test")
        .expect("unsubscribe");
    assert_eq!(app.sign_up("ada@example.org").await.status(), 200);
    let second = app
        .wait_for_mail_with_subject("ada@example.org", "Confirm", 2)
        .await;
    assert_eq!(app.confirm(&second.confirmation_link()).await.status(), 200);
    assert_eq!(app.confirm(&second.confirmation_link()).await.status(), 410);
    assert_eq!(ledger_count(&app, "ada@example.org", "welcome"), 1);

    // The editors' own text: previewed, saved, sent to the next reader.
    let console = log_in(&app, true).await;
    let page = console.get("/admin/welcome").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(page.contains("Preview: Welcome to IRIA News"), "{page}");
    assert!(page.contains("every Monday at 08:00 (Europe/Paris)"));
    let body = "Welcome aboard.\n\nThe digest comes **every Monday**.";
    let preview = console
        .post(
            "/admin/welcome",
            &[
                ("enabled", "on"),
                ("subject", "Glad you are here"),
                ("body", body),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(preview.status(), 200);
    // The Markdown rendered, in the preview frame's (escaped) document.
    let shown = preview.text().await.expect("body");
    assert!(shown.contains("&#60;strong&#62;every Monday&#60;/strong&#62;"));
    let empty = console
        .post(
            "/admin/welcome",
            &[("subject", " "), ("body", body), ("action", "save")],
        )
        .await;
    assert_eq!(empty.status(), 400, "an empty subject is refused");
    let saved = console
        .post(
            "/admin/welcome",
            &[
                ("enabled", "on"),
                ("subject", "Glad you are here"),
                ("body", body),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(saved.headers()["location"], "/admin/welcome?notice=saved");
    assert!(console
        .get("/admin/welcome")
        .await
        .text()
        .await
        .expect("body")
        .contains("Saved by editor"));
    sign_up_and_confirm(&app, "bob@example.org").await;
    let edited = wait_for_subject(&app, "bob@example.org", "Glad you are here").await;
    assert!(edited.html().contains("<strong>every Monday</strong>"));

    // Turned off: the next reader is not welcomed.
    let off = console
        .post(
            "/admin/welcome",
            &[
                ("subject", "Glad you are here"),
                ("body", body),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(off.status(), 303);
    sign_up_and_confirm(&app, "cy@example.org").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ledger_count(&app, "cy@example.org", "welcome"), 0);
    assert_eq!(
        app.received_by("cy@example.org").len(),
        1,
        "only the confirmation"
    );
}
on_both_backends!(
    a_confirmed_reader_is_welcomed_once,
    super::a_confirmed_reader_is_welcomed_once
);

/// A confirmed address that signs up again gets its preferences link (once a day), while the
/// page answers exactly as for a new address; the per-address limit still holds.
async fn signing_up_again_sends_the_preferences_link_once_a_day(backend: Backend) {
    let Some(app) = app_with_schedule(backend, "0 0 8 * * Mon 2099").await else {
        return;
    };
    let reader = app.add_confirmed("reader", 1)[0].1.clone();
    let new = app.sign_up("new@example.org").await;
    let (new_status, new_body) = (new.status(), new.text().await.expect("body"));
    let again = app.sign_up(&reader).await;
    assert_eq!(again.status(), new_status);
    assert_eq!(again.text().await.expect("body"), new_body);

    let note = wait_for_subject(&app, &reader, "already subscribed").await;
    let token = recipient_token(&note);
    let named = RecipientToken::verify(&token, Purpose::Unsubscribe, app.settings.secret())
        .expect("a valid token");
    assert_eq!(named.subscriber_id, app.subscriber_id(&reader));
    let text = note.text();
    let preferences = preferences_token(&text);
    let named = RecipientToken::verify(&preferences, Purpose::Preferences, app.settings.secret())
        .expect("a valid preferences token");
    assert_eq!(named.subscriber_id, app.subscriber_id(&reader));
    assert!(text.contains("Unsubscribe"), "{text}");
    assert_eq!(
        app.get(&format!("/preferences/{preferences}"))
            .await
            .status(),
        200
    );

    // Again the same day: the same answer, no second note.
    let third = app.sign_up(&reader).await;
    assert_eq!(third.status(), new_status);
    assert_eq!(third.text().await.expect("body"), new_body);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ledger_count(&app, &reader, "already_subscribed"), 1);
    assert_eq!(app.received_by(&reader).len(), 1);
    // The per-address limit (3 an hour) holds for confirmed addresses too.
    assert_eq!(app.sign_up(&reader).await.status(), 200);
    assert_eq!(app.sign_up(&reader).await.status(), 429);
}
on_both_backends!(
    signing_up_again_sends_the_preferences_link_once_a_day,
    super::signing_up_again_sends_the_preferences_link_once_a_day
);

/// The "View in your browser" link at the top of a message's HTML and text parts (the same).
fn view_links(m: &Received) -> (String, String) {
    let html = m.html();
    let at = html
        .find(">View in your browser</a>")
        .expect("a view link in the HTML");
    let href = html[..at].rfind("href=\"").expect("its href") + "href=\"".len();
    let in_html = html[href..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string();
    let text = m.text();
    let line = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("View in your browser: "))
        .expect("the text part starts with the view link");
    (in_html, line.trim().to_string())
}

/// Follows a message's web copy link and checks the page: the issue as sent, nothing of the
/// reader, public caching, the site's security headers. Returns the page.
async fn check_web_copy(app: &TestApp, m: &Received) -> String {
    let (in_html, in_text) = view_links(m);
    assert_eq!(in_html, in_text, "one link in both parts");
    assert!(
        in_html.starts_with(&format!("{}/view/", app.address)),
        "{in_html}"
    );
    let response = app.get(&in_html).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let cache = headers["cache-control"].to_str().expect("ascii");
    assert!(
        cache.contains("public") && !cache.contains("no-store"),
        "{cache}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.contains_key("content-security-policy"));
    let page = response.text().await.expect("body");
    let token = recipient_token(m);
    assert!(
        !page.contains(&token),
        "the reader's token is not on the page"
    );
    assert!(!page.contains("/unsubscribe/") && !page.contains("/preferences/"));
    assert!(!page.contains("%%IRIA_") && !page.contains("View in your browser"));
    assert!(page.contains("Subscribe to IRIA News"));

    // Altered anywhere, or a reader's token instead: not found.
    let view_token = in_html.rsplit('/').next().unwrap_or_default().to_string();
    let mut chars: Vec<char> = view_token.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let altered: String = chars.into_iter().collect();
    assert_eq!(app.get(&format!("/view/{altered}")).await.status(), 404);
    assert_eq!(app.get(&format!("/view/{token}")).await.status(), 404);
    assert_eq!(app.get("/view/nonsense").await.status(), 404);
    page
}

/// Every issue and every digest carries a link to its web copy, which shows the issue with the
/// reader's links taken out; the archive links to it too.
async fn every_issue_and_digest_can_be_read_on_the_web(backend: Backend) {
    let Some(app) = app_with_schedule(backend, "0 0 8 * * Mon 2099").await else {
        return;
    };
    let readers = app.add_confirmed("reader", 1);
    let reader = &readers[0].1;
    app.queue_issue(
        "A special report",
        "<h1>On the coalition</h1><p>What changed.</p>",
    );
    let issue = wait_for_subject(&app, reader, "A special report").await;
    let page = check_web_copy(&app, &issue).await;
    assert!(page.contains("On the coalition") && page.contains("What changed."));

    let items: Vec<NewArticle> = (1..=2)
        .map(|n| NewArticle {
            guid: format!("web-{n}"),
            link: format!("https://iria.example/2026/12/web-{n}/"),
            title: format!("Web article {n}"),
            summary: "A summary.".into(),
            body: "<p>Body.</p>".into(),
            author: None,
            categories: vec!["Europe".into()],
            image_url: None,
            image_credit: None,
            published_at: chrono::Utc::now().naive_utc() - chrono::Duration::hours(n),
        })
        .collect();
    articles::upsert(&mut app.conn(), &items, Source::Api).expect("articles");
    let outcome = iria_news::processes::digest::run(
        &mut app.conn(),
        &app.settings,
        "digest:web",
        chrono::Utc::now().naive_utc(),
        false,
    )
    .expect("digest");
    let iria_news::processes::digest::Outcome::Queued { digest_id, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let digest = wait_for_subject(&app, reader, "2 new articles").await;
    let page = check_web_copy(&app, &digest).await;
    assert!(page.contains("Web article 1") && page.contains("Web article 2"));

    let archived = app
        .get(&format!("/archive/{digest_id}"))
        .await
        .text()
        .await
        .expect("body");
    let (in_html, _) = view_links(&digest);
    let path = in_html.replacen(&app.address, "", 1);
    assert!(archived.contains(&format!("href=\"{path}\"")), "{archived}");
}
on_both_backends!(
    every_issue_and_digest_can_be_read_on_the_web,
    super::every_issue_and_digest_can_be_read_on_the_web
);
