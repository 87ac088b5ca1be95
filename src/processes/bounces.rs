//! Bounces (RFC 3464 DSN) and complaints (RFC 5965 ARF) as an MTA's pipe posts them, raw
//! (`POST /api/v1/bounces`): parsed here, then applied to the ledger and the subscriber.
//!
//! Anyone can mail a report to the bounce address, so a report acts only when it proves which
//! message it answers: the VERP token of the envelope sender it was sent to, or the Message-ID of
//! the returned message, both carrying an HMAC of the delivery
//! ([`crate::foundation::message_ids`]). It then acts on that delivery's subscriber, whatever
//! address the report names. An address alone (`Final-Recipient`, `Original-Rcpt-To`), a
//! Message-ID without a valid HMAC, or two different deliveries in one report prove nothing: the
//! report is logged and changes nothing.

use diesel::QueryResult;

use crate::foundation::db::{self, DbConnection};
use crate::foundation::domain::SubscriberStatus;
use crate::foundation::message_ids::MessageIds;
use crate::stores::{delivery, subscriptions};

/// What a report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// The failed or complaining address, as the report gives it: shown, never acted on.
    pub recipient: Option<String>,
    /// The delivery the report proves it is about (by a genuine VERP token or Message-ID);
    /// `None` when it proves none, or more than one.
    pub delivery_id: Option<i64>,
    /// Why the report proves no delivery, when it does not.
    pub unproved: Option<&'static str>,
    /// The DSN's status code (e.g. `5.1.1`).
    pub status: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// A permanent failure: the address is suppressed.
    HardBounce,
    /// A temporary failure or a delay: nothing to do.
    SoftBounce,
    /// The reader marked a message as spam.
    Complaint,
}

/// Reads a raw DSN or ARF report. `None` when it is neither.
pub fn parse(raw: &[u8], ids: &MessageIds) -> Option<Report> {
    let message = mail_parser::MessageParser::default().parse(raw)?;
    // Every part's text, decoded: the machine-readable parts hold "Name: value" lines.
    let mut texts: Vec<String> = Vec::new();
    texts.push(String::from_utf8_lossy(raw).into_owned());
    for part in &message.parts {
        texts.push(String::from_utf8_lossy(part.contents()).into_owned());
    }
    let fields: Vec<(String, String)> = texts.iter().flat_map(|t| unfolded_fields(t)).collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let address_of = |v: String| {
        let v = v
            .rsplit(';')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(|c| c == '<' || c == '>');
        Some(v.to_ascii_lowercase()).filter(|a| a.contains('@'))
    };
    let (delivery_id, unproved) = proved_delivery(&texts, ids);
    if let Some(feedback) = field("Feedback-Type") {
        let recipient = field("Original-Rcpt-To")
            .and_then(address_of)
            .or_else(|| field("Removal-Recipient").and_then(address_of));
        let kind = if feedback.trim().eq_ignore_ascii_case("abuse")
            || feedback.trim().eq_ignore_ascii_case("fraud")
        {
            ReportKind::Complaint
        } else {
            ReportKind::SoftBounce
        };
        return Some(Report {
            kind,
            recipient,
            delivery_id,
            unproved,
            status: None,
        });
    }
    let action = field("Action")?;
    let status = field("Status").map(|s| s.split_whitespace().next().unwrap_or("").to_string());
    let recipient = field("Final-Recipient")
        .and_then(address_of)
        .or_else(|| field("Original-Recipient").and_then(address_of));
    let permanent = action.trim().eq_ignore_ascii_case("failed")
        && status.as_deref().is_some_and(|s| s.starts_with('5'));
    let kind = if permanent {
        ReportKind::HardBounce
    } else {
        ReportKind::SoftBounce
    };
    Some(Report {
        kind,
        recipient,
        delivery_id,
        unproved,
        status,
    })
}

/// The one delivery the texts prove, by genuine VERP tokens or Message-IDs; else why not.
fn proved_delivery(texts: &[String], ids: &MessageIds) -> (Option<i64>, Option<&'static str>) {
    let mut proved: Vec<i64> = texts.iter().flat_map(|t| ids.proved_in(t)).collect();
    proved.sort_unstable();
    proved.dedup();
    match proved.as_slice() {
        [one] => (Some(*one), None),
        [] => (
            None,
            Some("no VERP token or Message-ID of ours with a valid HMAC"),
        ),
        _ => (None, Some("it names more than one of our deliveries")),
    }
}

/// "Name: value" lines of a header-like text, continuation lines joined.
fn unfolded_fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if (line.starts_with(' ') || line.starts_with('\t')) && !out.is_empty() {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            if !name.is_empty()
                && name.len() < 40
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                out.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
    out
}

/// Applies a report: a hard bounce marks the delivery `bounced` and suppresses the subscriber; a
/// complaint marks the subscriber `complained`; either skips whatever is still queued for them.
/// One transaction. Only the subscriber of the proved delivery is touched, whatever address the
/// report names. Returns the subscriber's status afterwards, or `None` when the report proves no
/// delivery of ours (or its subscriber is gone): then nothing changed.
pub fn apply(conn: &mut DbConnection, report: &Report) -> QueryResult<Option<String>> {
    let Some(delivery_id) = report.delivery_id else {
        return Ok(None);
    };
    db::write_transaction(conn, |conn| {
        let Some(subscriber_id) = delivery::subscriber_of(conn, delivery_id)? else {
            return Ok(None);
        };
        let now = db::now();
        match report.kind {
            ReportKind::HardBounce => {
                let detail = format!(
                    "bounced later: {}",
                    report.status.as_deref().unwrap_or("5.0.0")
                );
                delivery::mark_bounced(conn, delivery_id, &detail, now)?;
                subscriptions::suppress(conn, subscriber_id, SubscriberStatus::Bounced, now)?;
                delivery::skip_queued_for(conn, subscriber_id, "address bounced")?;
            }
            ReportKind::Complaint => {
                subscriptions::suppress(conn, subscriber_id, SubscriberStatus::Complained, now)?;
                delivery::skip_queued_for(conn, subscriber_id, "complaint")?;
            }
            ReportKind::SoftBounce => {}
        }
        subscriptions::status_of(conn, subscriber_id)
    })
}
