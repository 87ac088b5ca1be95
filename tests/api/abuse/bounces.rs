//! Bounce and complaint reports (`POST /api/v1/bounces`) act only when they prove which message
//! of ours they answer: a VERP token or a Message-ID carrying an HMAC of the delivery. Anyone can
//! mail a report to the bounce address, so a report that names an address, a sequential
//! Message-ID or a made-up token is answered 202 and changes nothing (issue 12, "Bounces").

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::helpers::{spawn_app_with, AppOptions, Backend, Received, TestApp};
use crate::on_both_backends;

const ISSUE: &str = "<p>The week in international relations.</p>";

/// Three confirmed readers, an issue delivered to each, a bearer token for the MTA's pipe.
struct Sent {
    app: TestApp,
    token: String,
    issue_id: i64,
    /// (address, the message they received)
    readers: Vec<(String, Received)>,
}

async fn three_readers_received_an_issue(backend: Backend) -> Option<Sent> {
    let options = AppOptions {
        env: vec![(
            "IRIA_BOUNCE_ADDRESS",
            "bounces+{token}@bounces.iria.test".into(),
        )],
        ..Default::default()
    };
    let app = spawn_app_with(backend, options).await?;
    let people = app.add_confirmed("reader", 3);
    let queued = app.queue_issue("IRIA News this week", ISSUE);
    app.smtp().wait_for(3, Duration::from_secs(20)).await;
    app.wait_issue_done(queued.issue_id, Duration::from_secs(10))
        .await;
    let mut readers = Vec::new();
    for (_, email) in &people {
        let mail = app.wait_for_mail_to(email, 1).await;
        readers.push((email.clone(), mail));
    }
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "mta").expect("token");
    Some(Sent {
        app,
        token,
        issue_id: queued.issue_id,
        readers,
    })
}

impl Sent {
    async fn post(&self, report: String) -> (u16, serde_json::Value) {
        let answer = self
            .app
            .client
            .post(format!("{}/api/v1/bounces", self.app.address))
            .bearer_auth(&self.token)
            .header("Content-Type", "message/rfc822")
            .body(report)
            .send()
            .await
            .expect("POST /api/v1/bounces");
        let status = answer.status().as_u16();
        let body = answer.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Every reader's status, and every delivery of the issue's.
    fn statuses(&self) -> Vec<(String, String, String)> {
        let deliveries: std::collections::HashMap<String, String> = self
            .app
            .delivery_statuses(self.issue_id)
            .into_iter()
            .collect();
        self.readers
            .iter()
            .map(|(email, _)| {
                let status = self.app.subscriber(email).map(|s| s.0).unwrap_or_default();
                (email.clone(), status, deliveries[email].clone())
            })
            .collect()
    }

    fn untouched(&self) -> Vec<(String, String, String)> {
        self.readers
            .iter()
            .map(|(email, _)| (email.clone(), "confirmed".into(), "sent".into()))
            .collect()
    }
}

/// The Message-ID header of a message as received, `<…>`.
fn message_id_of(mail: &Received) -> String {
    let id = mail
        .parsed()
        .message_id()
        .expect("a Message-ID")
        .to_string();
    format!("<{id}>")
}

/// The envelope sender the test SMTP server saw for this message.
fn envelope_sender_of(app: &TestApp, email: &str) -> String {
    let dir = app.smtp().dir.path();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
            (v["rcpt_tos"][0] == email).then(|| v["mail_from"].as_str().unwrap_or("").to_string())
        })
        .next()
        .expect("an envelope for this address")
}

/// A DSN (RFC 3464) as a mail server sends it: sent to `to`, about `final_recipient`, with the
/// returned message's headers (`returned`) when given.
fn dsn(to: &str, final_recipient: &str, returned: Option<&str>) -> String {
    let returned = returned
        .map(|headers| format!("--b\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n\r\n"))
        .unwrap_or_default();
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThe mailbox is gone.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
         Final-Recipient: rfc822; {final_recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
         {returned}--b--\r\n"
    )
}

/// An ARF complaint (RFC 5965) naming `original_rcpt_to`, quoting the complained-of message's
/// headers (`quoted`).
fn arf(original_rcpt_to: &str, quoted: &str) -> String {
    format!(
        "From: fbl@mailbox.example\r\nTo: abuse@iria.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n\
         --f\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
         --f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\n\
         Version: 1\r\nOriginal-Rcpt-To: {original_rcpt_to}\r\n\r\n\
         --f\r\nContent-Type: text/rfc822-headers\r\n\r\n{quoted}\r\n\r\n--f--\r\n"
    )
}

/// The Message-ID the ledger gave delivery `id` before this fix: `<d{id}.{installation}@…>`,
/// sequential, with a suffix every message carries.
fn old_sequential_message_id(app: &TestApp, id: i64) -> String {
    let installation = hex::encode(&Sha256::digest(app.settings.secret())[..6]);
    format!("<d{id}.{installation}@iria.test>")
}

/// The delivery id in a genuine Message-ID `<d42.…@…>`.
fn delivery_in(message_id: &str) -> i64 {
    message_id
        .trim_start_matches("<d")
        .split('.')
        .next()
        .and_then(|d| d.parse().ok())
        .expect("a delivery id in the Message-ID")
}

/// Each forgery from the attack review, and a few more, is answered 202 and changes nothing:
/// every reader stays confirmed, every copy stays `sent`.
async fn forged_bounce_reports_suppress_nobody(backend: Backend) {
    let Some(sent) = three_readers_received_an_issue(backend).await else {
        return;
    };
    let (a, b, c) = (
        sent.readers[0].0.clone(),
        sent.readers[1].0.clone(),
        sent.readers[2].0.clone(),
    );
    let genuine_a = message_id_of(&sent.readers[0].1);
    let id_a = delivery_in(&genuine_a);
    let verp_a = envelope_sender_of(&sent.app, &a);
    let mac_a = verp_a
        .split('-')
        .nth(1)
        .and_then(|r| r.split('@').next())
        .expect("a VERP MAC")
        .to_string();
    let forgeries = [
        (
            "a DSN naming only a Message-ID in the old sequential form",
            dsn(
                "bounces@iria.test",
                "nobody@example.net",
                Some(&format!(
                    "Message-ID: {}",
                    old_sequential_message_id(&sent.app, id_a)
                )),
            ),
        ),
        (
            "a DSN naming a plain Final-Recipient",
            dsn("bounces@iria.test", &b, None),
        ),
        (
            "an ARF naming only Original-Rcpt-To",
            arf(&c, &format!("From: news@iria.test\r\nTo: {c}")),
        ),
        (
            "a Message-ID of ours with a made-up MAC",
            dsn(
                "bounces@iria.test",
                &a,
                Some(&format!(
                    "Message-ID: <d{id_a}.{}@iria.test>",
                    "0".repeat(20)
                )),
            ),
        ),
        (
            "a genuine Message-ID's MAC on the next delivery",
            dsn(
                "bounces@iria.test",
                &b,
                Some(&format!(
                    "Message-ID: {}",
                    genuine_a.replace(&format!("<d{id_a}."), &format!("<d{}.", id_a + 1))
                )),
            ),
        ),
        (
            "a genuine Message-ID cut to 32 bits",
            dsn(
                "bounces@iria.test",
                &a,
                Some(&format!(
                    "Message-ID: {}@iria.test>",
                    &genuine_a[..genuine_a.find('.').expect(".") + 9]
                )),
            ),
        ),
        (
            "a VERP address whose MAC is another delivery's",
            dsn(
                &format!("bounces+d{}-{mac_a}@bounces.iria.test", id_a + 1),
                &b,
                None,
            ),
        ),
        (
            "a VERP address in the old 32-bit form",
            dsn(
                &format!("bounces+d{id_a}-{}@bounces.iria.test", &mac_a[..8]),
                &a,
                None,
            ),
        ),
    ];
    for (what, report) in forgeries {
        let (status, body) = sent.post(report).await;
        assert_eq!(status, 202, "{what}: {body}");
        assert_eq!(body["applied"], false, "{what}: {body}");
        assert_eq!(sent.statuses(), sent.untouched(), "{what}");
    }
}
on_both_backends!(
    forged_bounce_reports_suppress_nobody,
    super::forged_bounce_reports_suppress_nobody
);

/// A DSN that returns a genuine message's headers (its Message-ID, as the reader's server
/// received it) bounces that reader and no other, even when it names another reader's address;
/// one sent to a genuine VERP address does the same for its reader. A report proving two
/// deliveries at once changes nothing.
async fn genuine_bounce_reports_bounce_exactly_their_reader(backend: Backend) {
    let Some(sent) = three_readers_received_an_issue(backend).await else {
        return;
    };
    let (a, b, c) = (
        sent.readers[0].0.clone(),
        sent.readers[1].0.clone(),
        sent.readers[2].0.clone(),
    );
    let genuine_a = message_id_of(&sent.readers[0].1);
    let genuine_c = message_id_of(&sent.readers[2].1);

    // Two proofs that disagree: nothing.
    let both = dsn(
        "bounces@iria.test",
        &a,
        Some(&format!(
            "Message-ID: {genuine_a}\r\nReferences: {genuine_c}"
        )),
    );
    let (status, body) = sent.post(both).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(sent.statuses(), sent.untouched());

    // A's Message-ID, naming C's address: A bounces, C does not.
    let returned = format!("From: news@iria.test\r\nTo: {a}\r\nMessage-ID: {genuine_a}");
    let (status, body) = sent
        .post(dsn("bounces@iria.test", &c, Some(&returned)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true);
    assert_eq!(body["subscriber_status"], "bounced");
    let mut expected = sent.untouched();
    expected[0] = (a.clone(), "bounced".into(), "bounced".into());
    assert_eq!(sent.statuses(), expected);

    // B's VERP address (the envelope sender of B's copy), naming C's address: B bounces.
    let verp_b = envelope_sender_of(&sent.app, &b);
    assert!(verp_b.starts_with("bounces+d"), "{verp_b}");
    let (status, body) = sent.post(dsn(&verp_b, &c, None)).await;
    assert_eq!(status, 200, "{body}");
    expected[1] = (b.clone(), "bounced".into(), "bounced".into());
    assert_eq!(sent.statuses(), expected, "C is untouched");
}
on_both_backends!(
    genuine_bounce_reports_bounce_exactly_their_reader,
    super::genuine_bounce_reports_bounce_exactly_their_reader
);

/// An ARF complaint quoting a genuine message's headers marks that reader `complained` (and no
/// one the report names besides).
async fn complaint_quoting_a_genuine_message_marks_its_reader_complained(backend: Backend) {
    let Some(sent) = three_readers_received_an_issue(backend).await else {
        return;
    };
    let (a, b) = (sent.readers[0].0.clone(), sent.readers[1].0.clone());
    let genuine_b = message_id_of(&sent.readers[1].1);
    let quoted = format!(
        "From: IRIA News <news@iria.test>\r\nTo: {b}\r\nSubject: IRIA News this week\r\nMessage-ID: {genuine_b}"
    );
    let (status, body) = sent.post(arf(&a, &quoted)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subscriber_status"], "complained");
    let mut expected = sent.untouched();
    expected[1] = (b.clone(), "complained".into(), "sent".into());
    assert_eq!(sent.statuses(), expected);
}
on_both_backends!(
    complaint_quoting_a_genuine_message_marks_its_reader_complained,
    super::complaint_quoting_a_genuine_message_marks_its_reader_complained
);

/// Every copy's Message-ID carries an 80-bit MAC, `<d{id}.{20 hex}@{From domain}>`, and is the
/// one the ledger stored for the delivery.
async fn message_ids_carry_a_mac_and_match_the_ledger(backend: Backend) {
    let Some(sent) = three_readers_received_an_issue(backend).await else {
        return;
    };
    use diesel::prelude::*;
    use iria_news::foundation::db::schema::deliveries;
    for (_, mail) in &sent.readers {
        let id = message_id_of(mail);
        let (head, domain) = id.split_once('@').expect("@");
        assert_eq!(domain, "iria.test>");
        let (delivery, mac) = head.split_once('.').expect(".");
        assert!(delivery.starts_with("<d"), "{id}");
        assert_eq!(mac.len(), 20, "{id}");
        assert!(mac.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        let stored: Option<String> = deliveries::table
            .find(delivery_in(&id))
            .select(deliveries::message_id)
            .first(&mut sent.app.conn())
            .expect("delivery");
        assert_eq!(stored.as_deref(), Some(id.as_str()));
    }
}
on_both_backends!(
    message_ids_carry_a_mac_and_match_the_ledger,
    super::message_ids_carry_a_mac_and_match_the_ledger
);
