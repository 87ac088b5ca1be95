//! The events webhooks report, and the outbox they are written to.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use rand::RngCore;
use serde_json::json;

use crate::foundation::db::schema::{subscribers, webhook_deliveries, webhook_endpoints};
use crate::foundation::db::{self, DbConnection};

/// What happened, as a webhook names it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[schema(as = WebhookEvent)]
pub enum Event {
    /// A subscriber followed their confirmation link (or was added with consent held).
    #[serde(rename = "subscriber.confirmed")]
    SubscriberConfirmed,
    /// A subscriber left (a link, one-click, the console or the API).
    #[serde(rename = "subscriber.unsubscribed")]
    SubscriberUnsubscribed,
    /// A subscriber's address bounced for good; nothing more is sent to it.
    #[serde(rename = "subscriber.bounced")]
    SubscriberBounced,
    /// A subscriber reported a message as spam; nothing more is sent to them.
    #[serde(rename = "subscriber.complained")]
    SubscriberComplained,
    /// An issue was handed to the delivery queue, one copy per recipient.
    #[serde(rename = "issue.sent")]
    IssueSent,
}

impl Event {
    /// Every event, in the order the console lists them.
    pub const ALL: [Event; 5] = [
        Event::SubscriberConfirmed,
        Event::SubscriberUnsubscribed,
        Event::SubscriberBounced,
        Event::SubscriberComplained,
        Event::IssueSent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::SubscriberConfirmed => "subscriber.confirmed",
            Event::SubscriberUnsubscribed => "subscriber.unsubscribed",
            Event::SubscriberBounced => "subscriber.bounced",
            Event::SubscriberComplained => "subscriber.complained",
            Event::IssueSent => "issue.sent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Events as a form or a request names them: each known, at least one, duplicates dropped.
pub fn parse_events<S: AsRef<str>>(names: &[S]) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for name in names {
        let name = name.as_ref();
        let event = Event::parse(name).ok_or_else(|| {
            let shown: String = name.chars().take(40).collect();
            format!(
                "events: unknown event {shown:?}; the events are {}",
                Event::ALL.map(Event::as_str).join(", ")
            )
        })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        return Err("events: choose at least one event".into());
    }
    Ok(events)
}

/// Where a webhook delivery stands, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its (next) attempt.
    Queued,
    /// Being posted by a worker that holds its lease.
    Sending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up: no 2xx within a day of attempts.
    Failed,
    /// Not sent: its subscriber was erased before it went.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// The enabled endpoints that want `event`.
fn endpoints_wanting(conn: &mut DbConnection, event: Event) -> QueryResult<Vec<i64>> {
    let enabled: Vec<(i64, String)> = webhook_endpoints::table
        .filter(webhook_endpoints::enabled.eq(true))
        .select((webhook_endpoints::id, webhook_endpoints::events))
        .load(conn)?;
    Ok(enabled
        .into_iter()
        .filter(|(_, events)| events.split(',').any(|e| e == event.as_str()))
        .map(|(id, _)| id)
        .collect())
}

/// Whether any enabled endpoint wants `event`: a bulk change (an import) asks once, then emits
/// per subscriber only when someone listens.
pub fn wanted(conn: &mut DbConnection, event: Event) -> QueryResult<bool> {
    Ok(!endpoints_wanting(conn, event)?.is_empty())
}

/// Records `event` for every enabled endpoint that wants it, in the caller's transaction, and
/// returns how many rows that made (0 when nobody listens: then nothing else is done). `data` is
/// the body's `data`; `subscriber_id` names whom it is about, so that an erasure can wipe it.
pub fn emit(
    conn: &mut DbConnection,
    event: Event,
    subscriber_id: Option<i64>,
    data: serde_json::Value,
) -> QueryResult<usize> {
    let endpoints = endpoints_wanting(conn, event)?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    queue(conn, event, &endpoints, subscriber_id, data)
}

/// Records a subscriber event with the subscriber's id, address and status as they now stand
/// (call it after the change). Nothing for an erased subscriber: their address is gone.
pub fn emit_subscriber(
    conn: &mut DbConnection,
    event: Event,
    subscriber_id: i64,
) -> QueryResult<usize> {
    let endpoints = endpoints_wanting(conn, event)?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    let found: Option<(String, String, Option<NaiveDateTime>)> = subscribers::table
        .find(subscriber_id)
        .select((
            subscribers::email,
            subscribers::status,
            subscribers::erased_at,
        ))
        .first(conn)
        .optional()?;
    let Some((email, status, None)) = found else {
        return Ok(0);
    };
    let data = json!({"subscriber_id": subscriber_id, "email": email, "status": status});
    queue(conn, event, &endpoints, Some(subscriber_id), data)
}

/// One row per endpoint, each with the same body: the event's id, type, time and data.
fn queue(
    conn: &mut DbConnection,
    event: Event,
    endpoints: &[i64],
    subscriber_id: Option<i64>,
    data: serde_json::Value,
) -> QueryResult<usize> {
    let now = db::now();
    let event_id = new_event_id();
    let body = json!({
        "id": event_id,
        "type": event.as_str(),
        "created_at": now.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": data,
    })
    .to_string();
    let mut made = 0;
    for endpoint in endpoints {
        made += diesel::insert_into(webhook_deliveries::table)
            .values((
                webhook_deliveries::event_id.eq(&event_id),
                webhook_deliveries::event_type.eq(event.as_str()),
                webhook_deliveries::endpoint_id.eq(endpoint),
                webhook_deliveries::subscriber_id.eq(subscriber_id),
                webhook_deliveries::status.eq(Status::Queued.as_str()),
                webhook_deliveries::attempts.eq(0),
                webhook_deliveries::next_attempt_at.eq(now),
                webhook_deliveries::payload.eq(Some(&body)),
                webhook_deliveries::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(made)
}

/// `evt_` and 32 hex digits: unique without asking the database.
fn new_event_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("evt_{}", hex::encode(bytes))
}

/// An erased subscriber's events that have not gone yet are not sent, and every stored body
/// about them is wiped (GDPR Art. 17). What a receiver already got cannot be taken back.
pub fn forget_subscriber(conn: &mut DbConnection, subscriber_id: i64) -> QueryResult<usize> {
    let about =
        || webhook_deliveries::table.filter(webhook_deliveries::subscriber_id.eq(subscriber_id));
    let skipped =
        diesel::update(about().filter(webhook_deliveries::status.eq(Status::Queued.as_str())))
            .set((
                webhook_deliveries::status.eq(Status::Skipped.as_str()),
                webhook_deliveries::last_error.eq(Some("the subscriber was erased")),
                webhook_deliveries::finished_at.eq(Some(db::now())),
            ))
            .execute(conn)?;
    diesel::update(about())
        .set(webhook_deliveries::payload.eq(None::<String>))
        .execute(conn)?;
    Ok(skipped)
}

/// The events about a subscriber posted or to be posted, for their copy of their data (GDPR
/// Art. 15: who their data was disclosed to): which event, when, to which host, how it went.
pub fn history_of(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> QueryResult<Vec<serde_json::Value>> {
    let rows: Vec<(String, NaiveDateTime, String, String)> = webhook_deliveries::table
        .inner_join(webhook_endpoints::table)
        .filter(webhook_deliveries::subscriber_id.eq(subscriber_id))
        .order(webhook_deliveries::id)
        .select((
            webhook_deliveries::event_type,
            webhook_deliveries::created_at,
            webhook_deliveries::status,
            webhook_endpoints::url,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(event, at, status, url)| {
            // The host only: a path or query may hold the receiver's own secrets.
            let host = url::Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string));
            json!({
                "event": event,
                "created_at": at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "receiver": host,
                "status": status,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_as_the_documents_say() {
        for e in Event::ALL {
            assert_eq!(Event::parse(e.as_str()), Some(e));
            assert_eq!(
                serde_json::to_value(e).expect("json"),
                serde_json::json!(e.as_str())
            );
        }
        assert_eq!(
            parse_events(&["issue.sent", "issue.sent"]),
            Ok(vec![Event::IssueSent])
        );
        assert!(parse_events::<&str>(&[]).is_err());
        assert!(parse_events(&["subscriber.created"])
            .expect_err("unknown")
            .contains("subscriber.created"));
    }
}
