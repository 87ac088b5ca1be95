//! What a subscriber can do from the links in a message: leave, change preferences, take a copy
//! of their data, or have it erased.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::foundation::db::schema::{confirmation_tokens, consents, data_links, subscribers};
use crate::foundation::db::{self, DbConnection, DbError};
use crate::foundation::domain::SubscriberStatus;
use crate::foundation::domain::{SubscriberName, Topics};
use crate::stores::{audit, delivery, engagement, webhooks};

/// A subscriber as the preferences page shows it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = subscribers)]
pub struct SubscriberRecord {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: String,
    pub topics: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub confirmed_at: Option<NaiveDateTime>,
    pub unsubscribed_at: Option<NaiveDateTime>,
    pub unsubscribed_via: Option<String>,
    pub erased_at: Option<NaiveDateTime>,
}

impl SubscriberRecord {
    pub fn is_subscribed(&self) -> bool {
        self.status == SubscriberStatus::Confirmed.as_str()
    }

    /// Confirmed or still waiting for confirmation: an editor may unsubscribe them.
    pub fn can_unsubscribe(&self) -> bool {
        matches!(
            SubscriberStatus::parse(&self.status),
            Some(SubscriberStatus::Confirmed | SubscriberStatus::Pending)
        )
    }

    pub fn is_erased(&self) -> bool {
        self.erased_at.is_some()
    }
}

/// The subscriber with this id, if any.
pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<SubscriberRecord>> {
    subscribers::table
        .find(id)
        .select(SubscriberRecord::as_select())
        .first(conn)
        .optional()
}

/// Unsubscribes at once and skips whatever is still queued for the subscriber, in one
/// transaction: from the moment this returns, no worker sends them anything more, not even the
/// rest of a digest already being sent. `via` says how (kept for the editors). Unsubscribing twice changes nothing more.
/// The consent records stay: they prove what was agreed and when. The webhooks hear of it
/// (`subscriber.unsubscribed`) in the same transaction.
pub fn unsubscribe(
    conn: &mut DbConnection,
    subscriber_id: i64,
    via: &str,
) -> Result<bool, DbError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        let changed = diesel::update(
            subscribers::table
                .find(subscriber_id)
                .filter(subscribers::status.ne(SubscriberStatus::Unsubscribed.as_str())),
        )
        .set((
            subscribers::status.eq(SubscriberStatus::Unsubscribed.as_str()),
            subscribers::unsubscribed_at.eq(Some(now)),
            subscribers::unsubscribed_via.eq(Some(via)),
            subscribers::updated_at.eq(now),
        ))
        .execute(conn)?;
        delivery::skip_queued_for(conn, subscriber_id, "unsubscribed")?;
        if changed > 0 {
            webhooks::emit_subscriber(
                conn,
                webhooks::Event::SubscriberUnsubscribed,
                subscriber_id,
            )?;
        }
        Ok(changed > 0)
    })
}

/// Saves a confirmed subscriber's name and topics.
pub fn update_preferences(
    conn: &mut DbConnection,
    subscriber_id: i64,
    name: Option<&SubscriberName>,
    topics: &Topics,
) -> QueryResult<usize> {
    diesel::update(subscribers::table.find(subscriber_id))
        .set((
            subscribers::name.eq(name.map(SubscriberName::as_str)),
            subscribers::topics.eq(topics.to_stored()),
            subscribers::updated_at.eq(db::now()),
        ))
        .execute(conn)
}

/// Everything stored about a subscriber, as JSON (GDPR Art. 15 and 20): the subscription, every
/// consent record, every message sent or queued to them, the webhook events about them (to which
/// receiver), and their clicks on the links of the emails (`personal` click tracking).
pub fn export(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> QueryResult<Option<serde_json::Value>> {
    let Some(s) = find(conn, subscriber_id)? else {
        return Ok(None);
    };
    let consents = consents_json(conn, subscriber_id)?;
    let deliveries = delivery::history_of(conn, subscriber_id)?;
    let webhook_events = webhooks::history_of(conn, subscriber_id)?;
    let clicks: Vec<serde_json::Value> = engagement::history_of(conn, subscriber_id)?
        .into_iter()
        .map(|c| {
            json!({
                "issue_id": c.issue_id,
                "what": c.what,
                "url": c.url,
                "clicked_at": iso(c.clicked_at),
                "counted_as_machine": c.machine,
            })
        })
        .collect();
    Ok(Some(json!({
        "subscriber": {
            "email": s.email,
            "name": s.name,
            "status": s.status,
            "topics": Topics::from_stored(&s.topics).as_slice(),
            "created_at": iso(s.created_at),
            "confirmed_at": s.confirmed_at.map(iso),
            "unsubscribed_at": s.unsubscribed_at.map(iso),
            "unsubscribed_via": s.unsubscribed_via,
        },
        "consents": consents,
        "messages": deliveries,
        "shared_by_webhook": webhook_events,
        "clicks": clicks,
    })))
}

/// A subscriber's consent records, as the data download shows them.
fn consents_json(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> QueryResult<Vec<serde_json::Value>> {
    type ConsentRow = (
        NaiveDateTime,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        Option<NaiveDateTime>,
        Option<String>,
    );
    let consent_rows: Vec<ConsentRow> = consents::table
        .filter(consents::subscriber_id.eq(subscriber_id))
        .order(consents::id)
        .select((
            consents::requested_at,
            consents::ip,
            consents::user_agent,
            consents::source,
            consents::consent_text_version,
            consents::name,
            consents::topics,
            consents::confirmed_at,
            consents::confirmed_ip,
        ))
        .load(conn)?;
    Ok(consent_rows
        .into_iter()
        .map(
            |(at, ip, ua, source, version, name, topics, confirmed_at, confirmed_ip)| {
                json!({
                    "signed_up_at": iso(at),
                    "ip": ip,
                    "user_agent": ua,
                    "form_source": source,
                    "consent_text_version": version,
                    "name_given": name,
                    "topics_chosen": Topics::from_stored(&topics).as_slice(),
                    "confirmed_at": confirmed_at.map(iso),
                    "confirmed_ip": confirmed_ip,
                })
            },
        )
        .collect())
}

fn iso(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The stored form of an erased address: `erased:{id}:k{hmac}`, an HMAC-SHA256 with the secret
/// key of the address's SHA-256. Whoever has the key and the address can recognise it (and keep it
/// from being mailed); a copy of the database cannot be turned back into addresses by hashing a
/// list of them, as a plain hash could. With the row's id, so that an address signed up again and
/// erased again does not meet its first erasure. The HMAC is over the address's SHA-256 so that
/// markers made before the key was used (`erased:{id}:{sha256}`) can be converted without the
/// address: see [`upgrade_erased_markers`].
pub fn erased_marker(secret: &[u8], subscriber_id: i64, email: &str) -> String {
    marker_of_digest(
        secret,
        subscriber_id,
        &hex::encode(Sha256::digest(email.as_bytes())),
    )
}

const MARKER_PREFIX: &str = "erased:";

fn marker_of_digest(secret: &[u8], subscriber_id: i64, sha256_hex: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"iria-news erased address\n");
    mac.update(sha256_hex.as_bytes());
    let tag = hex::encode(mac.finalize().into_bytes());
    format!("{MARKER_PREFIX}{subscriber_id}:k{tag}")
}

/// Converts the erasure markers of the first versions, `erased:{id}:{sha256 of the address}`
/// (which anyone can test an address against), to keyed ones. Runs at start-up after the
/// migrations; a marker already converted is left alone, so running it again changes nothing.
/// Returns how many were converted.
pub fn upgrade_erased_markers(conn: &mut DbConnection, secret: &[u8]) -> QueryResult<usize> {
    let old: Vec<(i64, String)> = subscribers::table
        .filter(subscribers::erased_at.is_not_null())
        .filter(subscribers::email.like(format!("{MARKER_PREFIX}%")))
        .filter(subscribers::email.not_like(format!("{MARKER_PREFIX}%:k%")))
        .select((subscribers::id, subscribers::email))
        .load(conn)?;
    let mut converted = 0;
    for (id, email) in old {
        let digest = email.rsplit(':').next().unwrap_or_default();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        converted += diesel::update(subscribers::table.find(id))
            .set(subscribers::email.eq(marker_of_digest(secret, id, digest)))
            .execute(conn)?;
    }
    Ok(converted)
}

/// Locks a subscriber's row until the transaction ends (PostgreSQL; SQLite's writers take
/// turns anyway).
pub(crate) fn lock(conn: &mut DbConnection, subscriber_id: i64) -> QueryResult<()> {
    if let DbConnection::Pg(pg) = conn {
        subscribers::table
            .find(subscriber_id)
            .select(subscribers::id)
            .for_update()
            .first::<i64>(pg)
            .optional()?;
    }
    Ok(())
}

/// Erases a subscriber's personal data (GDPR Art. 17): name, topics and consent records go, the
/// address is replaced by its keyed hash ([`erased_marker`], `secret` is `IRIA_SECRET_KEY`),
/// queued messages and webhook events are skipped and confirmation and data-link secrets wiped;
/// the reader's clicks are folded into the anonymous counts and deleted.
/// The row stays, unsubscribed, so the ledger keeps its counts and the address is never mailed
/// again; signing up afresh makes a new subscriber.
pub fn erase(conn: &mut DbConnection, subscriber_id: i64, secret: &[u8]) -> Result<bool, DbError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        // On PostgreSQL the reader's row is locked first, so that clicks being written for them
        // now are either written before (and forgotten below) or see the erasure.
        lock(conn, subscriber_id)?;
        let Some(record) = find(conn, subscriber_id)? else {
            return Ok(false);
        };
        if record.is_erased() {
            return Ok(true);
        }
        diesel::delete(consents::table.filter(consents::subscriber_id.eq(subscriber_id)))
            .execute(conn)?;
        diesel::delete(
            confirmation_tokens::table.filter(confirmation_tokens::subscriber_id.eq(subscriber_id)),
        )
        .execute(conn)?;
        diesel::delete(data_links::table.filter(data_links::subscriber_id.eq(subscriber_id)))
            .execute(conn)?;
        engagement::forget_subscriber(conn, subscriber_id)?;
        delivery::forget_subscriber(conn, subscriber_id)?;
        webhooks::forget_subscriber(conn, subscriber_id)?;
        audit::forget_address(conn, &record.email)?;
        diesel::update(subscribers::table.find(subscriber_id))
            .set((
                subscribers::email.eq(erased_marker(secret, subscriber_id, &record.email)),
                subscribers::name.eq(None::<String>),
                subscribers::topics.eq(""),
                subscribers::status.eq(SubscriberStatus::Unsubscribed.as_str()),
                subscribers::unsubscribed_at.eq(record.unsubscribed_at.unwrap_or(now)),
                subscribers::unsubscribed_via.eq(Some("erased")),
                subscribers::erased_at.eq(Some(now)),
                subscribers::updated_at.eq(now),
            ))
            .execute(conn)?;
        Ok(true)
    })
}
