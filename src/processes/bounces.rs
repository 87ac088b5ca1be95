//! Bounces (RFC 3464 DSN) and complaints (RFC 5965 ARF) as an MTA's pipe posts them, raw
//! (`POST /api/v1/bounces`): parsed here, then applied to the ledger and the subscriber. The
//! recipient is found by the VERP token of the envelope sender, else by our Message-ID in the
//! returned message, else by the address the report names.

use diesel::QueryResult;

use crate::foundation::db::{self, DbConnection};
use crate::foundation::domain::SubscriberStatus;
use crate::stores::{delivery, subscriptions};

/// What a report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// The failed or complaining address, as the report gives it.
    pub recipient: Option<String>,
    /// The delivery the report is about, when the report lets us tell.
    pub delivery_id: Option<i64>,
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
pub fn parse(raw: &[u8], message_id_suffix: &str, verp: Option<&VerpCheck>) -> Option<Report> {
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
    let delivery_id = verp
        .and_then(|check| fields.iter().find_map(|(_, v)| check.delivery_in(v)))
        .or_else(|| {
            fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("Message-ID"))
                .find_map(|(_, v)| delivery_of_message_id(v, message_id_suffix))
        });
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
        status,
    })
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

/// `<d42.abcdef@example.org>` → 42, when the suffix is this installation's.
fn delivery_of_message_id(value: &str, suffix: &str) -> Option<i64> {
    let start = value.find("<d")?;
    let rest = &value[start + 2..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !rest[digits.len()..].starts_with(suffix) {
        return None;
    }
    digits.parse().ok()
}

/// Checks VERP tokens of this installation.
pub struct VerpCheck {
    pub secret: Vec<u8>,
}

impl VerpCheck {
    /// The delivery named by a VERP token anywhere in `text` (`…+d42-0123abcd@…`).
    pub fn delivery_in(&self, text: &str) -> Option<i64> {
        text.match_indices("+d").find_map(|(i, _)| {
            let rest = &text[i + 2..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let mac: String = rest[digits.len()..]
                .strip_prefix('-')?
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect();
            let id: i64 = digits.parse().ok()?;
            (crate::processes::messages::verp_token(&self.secret, id) == format!("d{id}-{mac}"))
                .then_some(id)
        })
    }
}

/// Applies a report: a hard bounce marks the delivery `bounced` and suppresses the subscriber; a
/// complaint marks the subscriber `complained`; either skips whatever is still queued for them.
/// One transaction. Returns the subscriber's status afterwards, or `None` when the report names
/// nobody of ours.
pub fn apply(conn: &mut DbConnection, report: &Report) -> QueryResult<Option<String>> {
    db::write_transaction(conn, |conn| {
        let by_delivery = match report.delivery_id {
            Some(id) => delivery::subscriber_of(conn, id)?,
            None => None,
        };
        let subscriber_id = match (by_delivery, &report.recipient) {
            (Some(id), _) => Some(id),
            (None, Some(email)) => subscriptions::id_of_address(conn, email)?,
            (None, None) => None,
        };
        let Some(subscriber_id) = subscriber_id else {
            return Ok(None);
        };
        let now = db::now();
        match report.kind {
            ReportKind::HardBounce => {
                if let (Some(id), Some(_)) = (report.delivery_id, by_delivery) {
                    let detail = format!(
                        "bounced later: {}",
                        report.status.as_deref().unwrap_or("5.0.0")
                    );
                    delivery::mark_bounced(conn, id, &detail, now)?;
                }
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
