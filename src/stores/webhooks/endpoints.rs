//! The endpoints: where events are posted, with the secret that signs them.

use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use rand::RngCore;

use super::events::{Event, Status};
use crate::foundation::db::schema::{webhook_deliveries, webhook_endpoints};
use crate::foundation::db::{self, DbConnection, DbError};

/// The longest endpoint URL taken, in characters.
pub const MAX_URL_CHARS: usize = 2000;
/// The longest description of an endpoint, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// An endpoint's URL: `http://` or `https://` (written so, in lower case), with a host and no
/// user name or password in it (a receiver knows us by the signature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > MAX_URL_CHARS {
            return Err(format!("url: at most {MAX_URL_CHARS} characters"));
        }
        if !(raw.starts_with("http://") || raw.starts_with("https://")) {
            return Err("url: only http:// and https:// URLs can receive webhooks".into());
        }
        let url = url::Url::parse(raw).map_err(|e| format!("url: not a valid URL ({e})"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("url: the URL needs a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "url: leave the user name and password out; the receiver checks the signature"
                    .into(),
            );
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An endpoint to add.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub url: EndpointUrl,
    /// At least one (see [`super::parse_events`]).
    pub events: Vec<Event>,
    /// A note for the administrators: what receives these events.
    pub description: String,
    pub enabled: bool,
    /// Who added it: an editor, or `token NAME` through the API.
    pub created_by: String,
}

/// An endpoint as the console and the API show it; its secret is never read back.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    /// Comma-separated; see [`Endpoint::event_list`].
    pub events: String,
    pub description: String,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
    pub created_by: Option<String>,
}

impl Endpoint {
    /// The events it wants.
    pub fn event_list(&self) -> Vec<Event> {
        self.events.split(',').filter_map(Event::parse).collect()
    }

    /// Whether it wants `event` (for the console's checkboxes).
    pub fn wants(&self, event: &Event) -> bool {
        self.event_list().contains(event)
    }
}

/// A fresh signing secret as Standard Webhooks writes one: `whsec_` and the base64 of 32 random
/// bytes.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Adds an endpoint with a new secret; returns it and the secret, which is shown this once.
pub fn create(conn: &mut DbConnection, new: &NewEndpoint) -> QueryResult<(Endpoint, String)> {
    let secret = new_secret();
    let events: Vec<&str> = new.events.iter().map(|e| e.as_str()).collect();
    let id: i64 = diesel::insert_into(webhook_endpoints::table)
        .values((
            webhook_endpoints::url.eq(new.url.as_str()),
            webhook_endpoints::secret.eq(&secret),
            webhook_endpoints::events.eq(events.join(",")),
            webhook_endpoints::description.eq(&new.description),
            webhook_endpoints::enabled.eq(new.enabled),
            webhook_endpoints::created_at.eq(db::now()),
            webhook_endpoints::created_by.eq(Some(&new.created_by)),
        ))
        .returning(webhook_endpoints::id)
        .get_result(conn)?;
    let endpoint = webhook_endpoints::table
        .find(id)
        .select(Endpoint::as_select())
        .first(conn)?;
    Ok((endpoint, secret))
}

/// Every endpoint, oldest first.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Endpoint>> {
    webhook_endpoints::table
        .order(webhook_endpoints::id)
        .select(Endpoint::as_select())
        .load(conn)
}

/// The endpoint with this id, if any.
pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Endpoint>> {
    webhook_endpoints::table
        .find(id)
        .select(Endpoint::as_select())
        .first(conn)
        .optional()
}

/// Turns an endpoint on or off; `false` when there is no such endpoint. A disabled endpoint gets
/// no new events, and those already queued for it wait until it is enabled again.
pub fn set_enabled(conn: &mut DbConnection, id: i64, enabled: bool) -> QueryResult<bool> {
    Ok(diesel::update(webhook_endpoints::table.find(id))
        .set(webhook_endpoints::enabled.eq(enabled))
        .execute(conn)?
        == 1)
}

/// Deletes an endpoint and its deliveries (sent or not), in one transaction; `false` when there
/// is no such endpoint.
pub fn delete(conn: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    db::write_transaction(conn, |conn| {
        diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::endpoint_id.eq(id)))
            .execute(conn)?;
        Ok(diesel::delete(webhook_endpoints::table.find(id)).execute(conn)? == 1)
    })
}

/// One event for one endpoint, and how its attempts went so far.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct Attempt {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    /// queued, sending, delivered, failed or skipped.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    pub last_attempt_at: Option<NaiveDateTime>,
    /// The HTTP status of the last attempt, when the endpoint answered.
    pub last_status: Option<i32>,
    /// Why the last attempt did not succeed.
    pub last_error: Option<String>,
    /// When the next attempt is due (meaningful while queued).
    pub next_attempt_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

impl Attempt {
    /// The next attempt's time, while one is to come.
    pub fn next_retry(&self) -> Option<NaiveDateTime> {
        (self.status == Status::Queued.as_str() && self.attempts > 0)
            .then_some(self.next_attempt_at)
    }
}

/// An endpoint's latest events, newest first.
pub fn attempts_of(
    conn: &mut DbConnection,
    endpoint_id: i64,
    limit: i64,
) -> QueryResult<Vec<Attempt>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .select(Attempt::as_select())
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host() {
        for good in [
            "http://127.0.0.1:9000/hooks",
            "https://crm.example.org/iria?x=1",
        ] {
            assert!(EndpointUrl::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://example.org/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "HTTP://EXAMPLE.ORG/",
            " https://example.org/",
            "https://",
            "https://user:pw@example.org/",
            "example.org/hooks",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad:?} was taken");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_URL_CHARS));
        assert!(EndpointUrl::parse(&long).is_err());
    }

    #[test]
    fn secrets_are_32_random_bytes_in_base64() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        let raw = a.strip_prefix("whsec_").expect("prefix");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64");
        assert_eq!(bytes.len(), 32);
    }
}
