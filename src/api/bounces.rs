//! `POST /api/v1/bounces`: a bounce (RFC 3464 DSN) or a complaint (RFC 5965 ARF) as an MTA's
//! pipe posts it, raw. The recipient is found by the VERP token of the envelope sender, else by
//! our Message-ID in the returned message, else by the address the report names.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::problem;
use crate::db::{self, DbError};
use crate::delivery;
use crate::web::AppState;

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
            (crate::messages::verp_token(&self.secret, id) == format!("d{id}-{mac}")).then_some(id)
        })
    }
}

/// `POST /api/v1/bounces`.
pub async fn receive(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let suffix = crate::messages::message_id_suffix(&state.settings);
    let verp = VerpCheck {
        secret: state.settings.secret().to_vec(),
    };
    let Some(report) = parse(&body, &suffix, Some(&verp)) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not a report",
            "The body is neither a delivery status notification (RFC 3464) nor an abuse report (RFC 5965).",
        );
    };
    let r = report.clone();
    let outcome = db::run(&state.pool, move |conn| {
        delivery::apply_report(conn, &r).map_err(DbError::from)
    })
    .await;
    match outcome {
        Ok(Some(subscriber_status)) => HttpResponse::Ok().json(json!({
            "kind": format!("{:?}", report.kind),
            "recipient": report.recipient,
            "delivery": report.delivery_id,
            "status": report.status,
            "subscriber_status": subscriber_status,
        })),
        Ok(None) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unknown recipient",
            "The report names no delivery or subscriber of ours.",
        ),
        Err(e) if e.is_unavailable() => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "Try again shortly.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "recording a bounce failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "See the server log.",
            )
        }
    }
}
