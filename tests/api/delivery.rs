//! The delivery engine under faults: a misbehaving SMTP server, a worker killed mid-send, two
//! workers on one queue, a worker told to stop, bounces and complaints reported later.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use iria_news::foundation::config::Settings;
use iria_news::foundation::db::schema::{deliveries, subscribers};

use crate::helpers::{
    form, spawn_app_with, spawn_worker as worker, AppOptions, Backend, Received, SmtpServer, TestDb,
};
use crate::on_both_backends;

const ISSUE: &str = "<h1>IRIA News</h1><p>This week's analysis.</p>";

/// A free loopback port, for a server started later.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Every (delivery status, attempts) of an issue, by address.
fn ledger(db: &TestDb, issue_id: i64) -> HashMap<String, (String, i32)> {
    deliveries::table
        .inner_join(subscribers::table)
        .filter(deliveries::issue_id.eq(issue_id))
        .select((subscribers::email, deliveries::status, deliveries::attempts))
        .load::<(String, String, i32)>(&mut db.connect())
        .expect("ledger")
        .into_iter()
        .map(|(e, s, a)| (e, (s, a)))
        .collect()
}

/// How many copies each address received.
fn copies(received: &[Received]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in received {
        for r in &m.rcpt_tos {
            *out.entry(r.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// The delivery tests of the delivery issue: 451 to a share of messages, 550 5.1.1 to chosen
/// addresses, dropped connections, and a server down at first. Every deliverable message arrives
/// exactly once; the 550 addresses are bounced at the first attempt and never retried.
async fn faulty_smtp_every_deliverable_message_arrives_once(backend: Backend) {
    faulty_smtp(backend, &[]).await
}
on_both_backends!(
    faulty_smtp_every_deliverable_message_arrives_once,
    super::faulty_smtp_every_deliverable_message_arrives_once
);

/// The same faults from a server that does not take pipelined commands: each command waits for
/// its reply.
async fn faulty_smtp_without_pipelining_every_message_arrives_once(backend: Backend) {
    faulty_smtp(backend, &["--no-pipelining"]).await
}
on_both_backends!(
    faulty_smtp_without_pipelining_every_message_arrives_once,
    super::faulty_smtp_without_pipelining_every_message_arrives_once
);

async fn faulty_smtp(backend: Backend, server_options: &[&str]) {
    let port = free_port();
    let options = AppOptions {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        env: vec![
            ("IRIA_DELIVERY_MAX_ATTEMPTS", "40".into()),
            ("IRIA_DELIVERY_RETRY_BASE_MS", "50".into()),
            ("IRIA_DELIVERY_CONCURRENCY", "4".into()),
            ("IRIA_DELIVERY_BATCH_SIZE", "25".into()),
        ],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let people = app.add_confirmed("reader", 200);
    let bad = [people[17].1.clone(), people[123].1.clone()];
    let queued = app.queue_issue("IRIA News this week", ISSUE);
    // Down for a while: nothing listens yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = SmtpServer::start_with(
        port,
        &[
            "--reject-rcpt",
            &bad[0],
            "--reject-rcpt",
            &bad[1],
            "--tempfail-every",
            "5",
            "--drop-every",
            "7",
        ]
        .iter()
        .chain(server_options)
        .copied()
        .collect::<Vec<_>>(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = ledger(&app.db, queued.issue_id)
            .values()
            .filter(|(s, _)| s == "queued" || s == "sending")
            .count();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} deliveries still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = copies(&server.received());
    let book = ledger(&app.db, queued.issue_id);
    let rejected: Vec<String> = std::fs::read_to_string(server.dir.path().join("rejected.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for (_, email) in &people {
        let (status, attempts) = &book[email];
        if bad.contains(email) {
            assert_eq!(status, "bounced", "{email}");
            // Attempts before the 550 may have met a dropped connection; after it, none.
            let refusals = rejected.iter().filter(|r| *r == email).count();
            assert_eq!(
                refusals, 1,
                "{email}: a 550 is never retried (attempts {attempts})"
            );
            assert_eq!(
                app.subscriber(email).map(|s| s.0).as_deref(),
                Some("bounced")
            );
            assert_eq!(received.get(email), None);
        } else {
            assert_eq!(status, "sent", "{email}");
            assert_eq!(
                received.get(email),
                Some(&1),
                "{email} got exactly one copy"
            );
        }
    }
    let retried = book.values().filter(|(_, a)| *a > 1).count();
    assert!(retried > 20, "the faults made retries ({retried})");
    // The ledger keeps the Message-ID each sent copy carried, retried ones included (it is
    // written with the outcome, not at the claim).
    let stored: HashMap<String, Option<String>> = deliveries::table
        .inner_join(subscribers::table)
        .filter(deliveries::issue_id.eq(queued.issue_id))
        .filter(deliveries::status.eq("sent"))
        .select((subscribers::email, deliveries::message_id))
        .load(&mut app.db.connect())
        .expect("message ids")
        .into_iter()
        .collect();
    assert_eq!(stored.len(), people.len() - bad.len());
    for message in server.received() {
        let carried = message
            .parsed()
            .message_id()
            .expect("Message-ID")
            .to_string();
        let to = message.rcpt_tos[0].clone();
        assert_eq!(
            stored[&to].as_deref(),
            Some(format!("<{carried}>").as_str()),
            "{to}"
        );
    }
}

/// An announcement to every confirmed reader, as an editor writes one.
fn announcement(subject: &str) -> iria_news::stores::issues::Draft {
    iria_news::stores::issues::Draft {
        kind: iria_news::stores::issues::Kind::Announcement,
        subject: subject.into(),
        preheader: String::new(),
        body_html: ISSUE.into(),
        body_text: None,
        topics: Vec::new(),
        period_key: None,
        idempotency_key: None,
    }
}

/// A database with `n` confirmed subscribers and an issue queued to them, as `iria-news send`
/// leaves it, plus the settings a worker process will get.
fn queued_issue(
    backend: Backend,
    n: usize,
    smtp: &SmtpServer,
    extra: &[(&str, &str)],
) -> Option<(TestDb, BTreeMap<String, String>, i64)> {
    let db = TestDb::create(backend)?;
    iria_news::foundation::db::migrate(&mut db.connect()).expect("migrate");
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("IRIA_DATABASE_URL", db.url.as_str()),
        ("IRIA_SMTP_URL", &smtp.url()),
        ("IRIA_SECRET_KEY", "test-secret-key-of-at-least-32-bytes!!"),
        ("IRIA_FROM", "IRIA News <news@iria.test>"),
        ("IRIA_BASE_URL", "https://news.iria.test"),
        ("IRIA_DELIVERY_POLL_MS", "100"),
        ("IRIA_DELIVERY_LEASE_SECONDS", "8"),
        ("IRIA_DELIVERY_BATCH_SIZE", "50"),
        ("IRIA_DELIVERY_CONCURRENCY", "8"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_sources(None, &env).expect("settings");
    let now = chrono::Utc::now().naive_utc();
    let mut conn = db.connect();
    iria_news::foundation::db::write_transaction(&mut conn, |conn| {
        for i in 0..n {
            diesel::insert_into(subscribers::table)
                .values((
                    subscribers::email.eq(format!("r{i:05}@example.org")),
                    subscribers::status.eq("confirmed"),
                    subscribers::topics.eq(""),
                    subscribers::created_at.eq(now),
                    subscribers::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .expect("subscribers");
    let draft = announcement("IRIA News this week");
    let queued = iria_news::processes::compose::create_and_queue(&mut conn, &settings, &draft)
        .expect("queue");
    assert_eq!(queued.recipients, n);
    Some((db, env, queued.issue_id))
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn wait_done(db: &TestDb, issue_id: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let open = ledger(db, issue_id)
            .values()
            .filter(|(s, _)| s == "queued" || s == "sending")
            .count();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} deliveries still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The crash test: two workers share the queue of an issue to 4,000; three times, one of them is
/// SIGKILLed mid-send and a new one started in its place. Everyone gets the issue, and each kill
/// sends again no more than the worker's `IRIA_DELIVERY_CONCURRENCY`, as the issue asks: what a
/// kill sends twice is what was on the killed worker's connections plus what the server accepted
/// during the outcome write under way (a group commit: up to a millisecond gathering, then the
/// write), where recording at the end of each batch sent up to two batches again (141
/// duplicates in this test).
async fn worker_killed_mid_send_loses_nothing(backend: Backend) {
    const KILLS: usize = 3;
    const READERS: usize = 4000;
    let smtp = SmtpServer::start();
    let Some((db, env, issue_id)) = queued_issue(backend, READERS, &smtp, &[]) else {
        return;
    };
    let mut workers = [worker(&env), worker(&env)];
    for kill in 0..KILLS {
        let mark = smtp.received().len() + 600;
        smtp.wait_for(mark, Duration::from_secs(60)).await;
        let victim = &mut workers[kill % 2];
        signal(victim, "KILL");
        let _ = victim.wait();
        let at_kill = smtp.received().len();
        assert!(
            at_kill < READERS,
            "kill {kill} came mid-send ({at_kill} sent)"
        );
        *victim = worker(&env);
    }
    wait_done(&db, issue_id, Duration::from_secs(180)).await;
    for w in &mut workers {
        signal(w, "TERM");
        let _ = w.wait();
    }
    let book = ledger(&db, issue_id);
    assert!(
        book.values().all(|(s, _)| s == "sent"),
        "every delivery ends sent"
    );
    let got = copies(&smtp.received());
    assert_eq!(got.len(), READERS, "every subscriber received the issue");
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    let concurrency: usize = env["IRIA_DELIVERY_CONCURRENCY"]
        .parse()
        .expect("concurrency");
    eprintln!("{duplicates} duplicates after {KILLS} kills (bound {concurrency} a kill)");
    assert!(
        duplicates <= KILLS * concurrency,
        "{duplicates} duplicates after {KILLS} kills: more than the {concurrency} messages a \
         worker has on its connections, per kill"
    );
}
on_both_backends!(
    worker_killed_mid_send_loses_nothing,
    super::worker_killed_mid_send_loses_nothing
);

/// Two workers on one PostgreSQL queue: no subscriber receives two copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_postgres_send_each_copy_once() {
    let smtp = SmtpServer::start();
    let Some((db, env, issue_id)) = queued_issue(
        Backend::Postgres,
        3000,
        &smtp,
        &[("IRIA_DELIVERY_BATCH_SIZE", "20")],
    ) else {
        return;
    };
    let mut a = worker(&env);
    let mut b = worker(&env);
    wait_done(&db, issue_id, Duration::from_secs(180)).await;
    signal(&a, "TERM");
    signal(&b, "TERM");
    let _ = (a.wait(), b.wait());
    let got = copies(&smtp.received());
    assert_eq!(got.len(), 3000);
    assert!(got.values().all(|n| *n == 1), "someone received two copies");
    let owners: Vec<Option<String>> = deliveries::table
        .filter(deliveries::issue_id.eq(issue_id))
        .select(deliveries::lease_owner)
        .distinct()
        .load(&mut db.connect())
        .expect("owners");
    assert_eq!(owners.len(), 2, "both workers took part: {owners:?}");
}

/// SIGTERM mid-send: the worker stops claiming, finishes what is in flight, hands back the rest
/// and exits 0; a worker started later sends the rest, and nobody gets two copies.
async fn sigterm_mid_send_exits_cleanly_and_loses_nothing(backend: Backend) {
    let smtp = SmtpServer::start();
    let Some((db, env, issue_id)) = queued_issue(
        backend,
        2000,
        &smtp,
        &[("IRIA_DELIVERY_LEASE_SECONDS", "300")],
    ) else {
        return;
    };
    let mut first = worker(&env);
    smtp.wait_for(300, Duration::from_secs(60)).await;
    signal(&first, "TERM");
    let started = Instant::now();
    let status = first.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let book = ledger(&db, issue_id);
    assert_eq!(
        book.values().filter(|(s, _)| s == "sending").count(),
        0,
        "no lease left behind"
    );
    let sent = book.values().filter(|(s, _)| s == "sent").count();
    assert!(sent < 2000, "stopped mid-send");
    assert_eq!(
        sent,
        copies(&smtp.received()).len(),
        "the ledger says exactly who got it"
    );
    // With a lease of 300 s, only handed-back rows can be sent now.
    let mut second = worker(&env);
    wait_done(&db, issue_id, Duration::from_secs(120)).await;
    signal(&second, "TERM");
    let _ = second.wait();
    let got = copies(&smtp.received());
    assert_eq!(got.len(), 2000);
    assert!(
        got.values().all(|n| *n == 1),
        "a graceful stop sends nothing twice"
    );
}
on_both_backends!(
    sigterm_mid_send_exits_cleanly_and_loses_nothing,
    super::sigterm_mid_send_exits_cleanly_and_loses_nothing
);

/// SIGTERM under a low rate ceiling (`IRIA_DELIVERY_RATE_PER_SECOND=1`): the messages waiting for
/// their turn go back at once instead of each waiting a second more, so the worker exits well
/// inside the 10 s a container runtime grants before SIGKILL, leaves no lease behind, and the
/// ledger says exactly who got a copy.
async fn sigterm_under_a_rate_ceiling_does_not_wait_for_turns(backend: Backend) {
    let smtp = SmtpServer::start();
    let Some((db, env, issue_id)) = queued_issue(
        backend,
        100,
        &smtp,
        &[
            ("IRIA_DELIVERY_RATE_PER_SECOND", "1"),
            ("IRIA_DELIVERY_LEASE_SECONDS", "300"),
        ],
    ) else {
        return;
    };
    let mut first = worker(&env);
    smtp.wait_for(2, Duration::from_secs(30)).await;
    signal(&first, "TERM");
    let started = Instant::now();
    let status = first.wait().expect("wait");
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(5),
        "the worker took {took:?} to stop (16 messages in flight wait a second each otherwise)"
    );
    let book = ledger(&db, issue_id);
    assert_eq!(
        book.values().filter(|(s, _)| s == "sending").count(),
        0,
        "no lease left behind"
    );
    let sent = book.values().filter(|(s, _)| s == "sent").count();
    assert!(sent < 20, "stopped early: {sent} sent");
    assert_eq!(
        sent,
        copies(&smtp.received()).len(),
        "the ledger says who got it"
    );
}
on_both_backends!(
    sigterm_under_a_rate_ceiling_does_not_wait_for_turns,
    super::sigterm_under_a_rate_ceiling_does_not_wait_for_turns
);

/// Confirmation emails go ahead of bulk sends: a sign-up during a large send is confirmed
/// long before the send ends.
async fn confirmations_go_ahead_of_bulk(backend: Backend) {
    let options = AppOptions {
        env: vec![
            ("IRIA_DELIVERY_CONCURRENCY", "1".into()),
            ("IRIA_DELIVERY_BATCH_SIZE", "10".into()),
        ],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    app.add_confirmed("reader", 600);
    let queued = app.queue_issue("IRIA News this week", ISSUE);
    app.smtp().wait_for(20, Duration::from_secs(30)).await;
    app.post_subscriptions(form(&[("email", "newcomer@example.org")]))
        .await;
    app.wait_for_mail_to("newcomer@example.org", 1).await;
    let open = app
        .delivery_statuses(queued.issue_id)
        .iter()
        .filter(|(_, s)| s == "queued")
        .count();
    assert!(
        open > 300,
        "the confirmation waited for the bulk send ({open} still queued)"
    );
}
on_both_backends!(
    confirmations_go_ahead_of_bulk,
    super::confirmations_go_ahead_of_bulk
);

/// With `IRIA_BOUNCE_ADDRESS`, the envelope sender names the delivery (VERP); a late bounce
/// posted to `/api/v1/bounces` finds it by that alone. A complaint (ARF) quoting the copy's
/// Message-ID marks the subscriber (an address alone proves nothing: tests/api/abuse/bounces.rs).
/// Without a token: 401; not a report: 422.
async fn bounces_and_complaints_reported_later(backend: Backend) {
    let options = AppOptions {
        env: vec![("IRIA_BOUNCE_ADDRESS", "bounces+{token}@iria.test".into())],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let people = app.add_confirmed("reader", 3);
    let queued = app.queue_issue("IRIA News this week", ISSUE);
    app.smtp().wait_for(3, Duration::from_secs(20)).await;
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "mta").expect("token");
    let envelope_from = |email: &str| -> String {
        let dir = app.smtp().dir.path();
        let mut found = String::new();
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(entry.path()).expect("read"))
                        .expect("json");
                if v["rcpt_tos"][0] == email {
                    found = v["mail_from"].as_str().unwrap_or("").to_string();
                }
            }
        }
        found
    };
    let verp = envelope_from(&people[0].1);
    assert!(
        verp.starts_with("bounces+d") && verp.ends_with("@iria.test"),
        "{verp}"
    );

    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: {verp}\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThe mailbox is gone.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
         Final-Recipient: rfc822; someone-else@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
    );
    let post = |body: String, auth: Option<&str>| {
        let mut request = app
            .client
            .post(format!("{}/api/v1/bounces", app.address))
            .body(body);
        if let Some(t) = auth {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    let unauthorized = post(dsn.clone(), None).await.expect("POST");
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        post(dsn.clone(), Some("iria_wrong"))
            .await
            .expect("POST")
            .status(),
        401
    );
    assert_eq!(
        app.subscriber(&people[0].1).map(|s| s.0).as_deref(),
        Some("confirmed")
    );

    let accepted = post(dsn, Some(&token)).await.expect("POST");
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        app.subscriber(&people[0].1).map(|s| s.0).as_deref(),
        Some("bounced"),
        "found by VERP alone"
    );
    let statuses: HashMap<String, String> =
        app.delivery_statuses(queued.issue_id).into_iter().collect();
    assert_eq!(statuses[&people[0].1], "bounced");

    let complained_copy = app.wait_for_mail_to(&people[1].1, 1).await;
    let complained_of = complained_copy
        .parsed()
        .message_id()
        .expect("Message-ID")
        .to_string();
    let arf = format!(
        "From: fbl@mailbox.example\r\nTo: abuse@iria.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n\
         --f\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
         --f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n\
         Original-Rcpt-To: {}\r\n\r\n--f\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@iria.test\r\nTo: {}\r\nMessage-ID: <{}>\r\n\r\n--f--\r\n",
        people[1].1, people[1].1, complained_of
    );
    assert_eq!(post(arf, Some(&token)).await.expect("POST").status(), 200);
    assert_eq!(
        app.subscriber(&people[1].1).map(|s| s.0).as_deref(),
        Some("complained")
    );

    let garbage = post("hello, not a report".into(), Some(&token))
        .await
        .expect("POST");
    assert_eq!(garbage.status(), 422);
    assert_eq!(
        garbage
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(
        app.subscriber(&people[2].1).map(|s| s.0).as_deref(),
        Some("confirmed")
    );
}
on_both_backends!(
    bounces_and_complaints_reported_later,
    super::bounces_and_complaints_reported_later
);

/// On PostgreSQL the ledger has no foreign key to subscribers (its per-row lock was most of the
/// time of queueing a million copies); in its place, a subscriber who has deliveries cannot be
/// deleted by hand, only erased, and one who has none still can be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_in_the_ledger_cannot_be_deleted_only_erased() {
    use diesel::connection::SimpleConnection;
    use iria_news::foundation::db::{self, DbConnection};
    let Some(test_db) = TestDb::create(Backend::Postgres) else {
        return;
    };
    let mut conn = test_db.connect();
    db::migrate(&mut conn).expect("migrate");
    let now = db::now();
    let mut reader = |email: &str| -> i64 {
        diesel::insert_into(subscribers::table)
            .values((
                subscribers::email.eq(email),
                subscribers::status.eq("pending"),
                subscribers::created_at.eq(now),
                subscribers::updated_at.eq(now),
            ))
            .returning(subscribers::id)
            .get_result(&mut conn)
            .expect("subscriber")
    };
    let mailed = reader("mailed@example.org");
    let never = reader("never@example.org");
    iria_news::stores::delivery::queue_confirmation(&mut conn, mailed, "nonce", now)
        .expect("queue");
    let DbConnection::Pg(pg) = &mut conn else {
        unreachable!("a PostgreSQL database")
    };
    let refused = pg
        .batch_execute(&format!("DELETE FROM subscribers WHERE id = {mailed}"))
        .expect_err("a subscriber with deliveries is not deleted");
    assert!(
        refused.to_string().contains("erase the subscriber"),
        "{refused}"
    );
    let kept: i64 = deliveries::table
        .filter(deliveries::subscriber_id.eq(mailed))
        .count()
        .get_result(pg)
        .expect("count");
    assert_eq!(kept, 1, "the ledger's row is still there");
    pg.batch_execute(&format!("DELETE FROM subscribers WHERE id = {never}"))
        .expect("a subscriber without deliveries is deleted");
    let left: Vec<i64> = subscribers::table
        .select(subscribers::id)
        .load(pg)
        .expect("subscribers");
    assert_eq!(left, vec![mailed]);
}

/// The console's and the API's delivery counts: a count that was slow is kept for a while (an
/// editor watching a million-copy send does not recount every 5 seconds), a quick one shows
/// every change at once, and a kept one is read again once its time is up.
async fn issue_counts_are_kept_only_when_counting_was_slow(backend: Backend) {
    use iria_news::http::progress::ProgressCache;
    let smtp = SmtpServer::start();
    let Some((db, _, issue_id)) = queued_issue(backend, 5, &smtp, &[]) else {
        return;
    };
    let mut conn = db.connect();
    let mut queued = |cache: &ProgressCache| -> i64 {
        cache
            .progress_of(&mut conn, &[issue_id])
            .expect("progress")
            .iter()
            .filter(|(issue, status, _)| *issue == Some(issue_id) && status == "queued")
            .map(|(_, _, n)| n)
            .sum()
    };
    // Every count is slow to this one.
    let keeping = ProgressCache::keeping_from(Duration::ZERO);
    let quick = ProgressCache::default();
    assert_eq!(queued(&keeping), 5);
    assert_eq!(queued(&quick), 5);
    let first: i64 = subscribers::table
        .select(subscribers::id)
        .order(subscribers::id)
        .first(&mut db.connect())
        .expect("a reader");
    let skipped = iria_news::stores::delivery::skip_queued_for(&mut db.connect(), first, "left")
        .expect("skip");
    assert_eq!(skipped, 1);
    assert_eq!(queued(&keeping), 5, "the slow count is kept");
    assert_eq!(queued(&quick), 4, "a count of five rows is never kept");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        queued(&keeping),
        4,
        "a count kept a second at most when it took milliseconds"
    );
}

on_both_backends!(
    issue_counts_are_kept_only_when_counting_was_slow,
    super::issue_counts_are_kept_only_when_counting_was_slow
);
