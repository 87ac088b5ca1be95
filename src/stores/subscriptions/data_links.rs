//! One-time links to download or erase a reader's data.
//!
//! No link in a newsletter reaches a reader's data: the token in `List-Unsubscribe` is seen by
//! mailbox providers, and a forwarded issue carries the preferences link. A reader who wants
//! their data (or it erased) presses a button on the preferences page, and a fresh link is mailed
//! to the address: valid [`VALID_MINUTES`] minutes, once, at most [`PER_HOUR`] asked for per hour
//! and [`PER_DAY`] per day (anyone holding a preferences link can press the button, which must
//! not flood a mailbox), and never to an address that bounced or reported us as spam. As for
//! confirmations, only the link token's SHA-256 is stored here and only a nonce in the ledger
//! (see [`super::tokens`]).

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use diesel::prelude::*;

use super::records::{self, SubscriberRecord};
use super::tokens::{self, LinkPurpose};
use crate::foundation::db::schema::data_links;
use crate::foundation::db::{self, DbConnection, DbError};
use crate::foundation::domain::SubscriberStatus;
use crate::stores::delivery;

/// How long a data link works.
pub const VALID_MINUTES: i64 = 60;

/// How many data links one subscriber may ask for in an hour.
pub const PER_HOUR: i64 = 3;

/// How many data links one subscriber may ask for in a day (24 hours).
pub const PER_DAY: i64 = 5;

/// Whether a data link may be mailed to a subscriber of this status: not to an address that
/// bounced or reported us as spam (mailing it hurts the sender's standing, and its owner may
/// not be the one pressing the button). The worker asks again before it sends.
pub fn may_mail(status: &str) -> bool {
    !matches!(
        SubscriberStatus::parse(status),
        Some(SubscriberStatus::Bounced | SubscriberStatus::Complained)
    )
}

/// Why no data link was sent.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{PER_HOUR} links were asked for in the last hour")]
    TooMany,
    #[error("{PER_DAY} links were asked for in the last day")]
    TooManyToday,
    #[error("this address bounced or reported us as spam: no mail goes to it")]
    Suppressed,
    #[error("this subscription is erased or gone")]
    Gone,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for RequestError {
    fn from(e: diesel::result::Error) -> Self {
        RequestError::Db(DbError::Query(e))
    }
}

/// Why a data link does not work.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not one we sent")]
    Unknown,
    #[error("this link has been used")]
    Used,
    #[error("this link has expired")]
    Expired,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for LinkError {
    fn from(e: diesel::result::Error) -> Self {
        LinkError::Db(DbError::Query(e))
    }
}

/// Queues a data link to the subscriber's address, unless [`PER_HOUR`] were asked for in the
/// last hour or [`PER_DAY`] in the last day, or the address may not be mailed ([`may_mail`]).
/// On PostgreSQL the subscriber's row is locked first, so that presses at the same
/// moment are counted one after the other (SQLite's write transaction does that by itself).
pub fn request(
    conn: &mut DbConnection,
    subscriber_id: i64,
    secret: &[u8],
) -> Result<(), RequestError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        records::lock(conn, subscriber_id)?;
        match records::find(conn, subscriber_id)? {
            Some(record) if record.is_erased() => return Err(RequestError::Gone),
            Some(record) if !may_mail(&record.status) => return Err(RequestError::Suppressed),
            Some(_) => {}
            None => return Err(RequestError::Gone),
        }
        let asked_since = |conn: &mut DbConnection, hours: i64| -> QueryResult<i64> {
            data_links::table
                .filter(data_links::subscriber_id.eq(subscriber_id))
                .filter(data_links::created_at.gt(now - ChronoDuration::hours(hours)))
                .count()
                .get_result(conn)
        };
        if asked_since(conn, 1)? >= PER_HOUR {
            return Err(RequestError::TooMany);
        }
        if asked_since(conn, 24)? >= PER_DAY {
            return Err(RequestError::TooManyToday);
        }
        let (payload, token) = tokens::seal(secret, LinkPurpose::DataLink);
        diesel::insert_into(data_links::table)
            .values((
                data_links::subscriber_id.eq(subscriber_id),
                data_links::token_hash.eq(tokens::hash_of(&token)),
                data_links::created_at.eq(now),
                data_links::expires_at.eq(now + ChronoDuration::minutes(VALID_MINUTES)),
            ))
            .execute(conn)?;
        delivery::queue_data_link(conn, subscriber_id, &payload, now)?;
        Ok(())
    })
}

/// The token of a queued data link's payload (the worker writes it into the message).
pub fn token_of_payload(secret: &[u8], payload: &str) -> Option<String> {
    tokens::unseal(secret, LinkPurpose::DataLink, payload)
}

/// Of these link tokens, the hashes of those that still work (a link already dead is not worth
/// sending).
pub fn live(conn: &mut DbConnection, tokens: &[String]) -> QueryResult<Vec<String>> {
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let hashes: Vec<String> = tokens.iter().map(|t| tokens::hash_of(t)).collect();
    data_links::table
        .filter(data_links::token_hash.eq_any(&hashes))
        .filter(data_links::used_at.is_null())
        .filter(data_links::expires_at.gt(db::now()))
        .select(data_links::token_hash)
        .load(conn)
}

/// id, subscriber, expiry and use of a data link.
type LinkRow = (i64, i64, NaiveDateTime, Option<NaiveDateTime>);

fn find_live(conn: &mut DbConnection, raw: &str) -> Result<LinkRow, LinkError> {
    if !tokens::well_formed(raw) {
        return Err(LinkError::Unknown);
    }
    let row: Option<LinkRow> = data_links::table
        .filter(data_links::token_hash.eq(tokens::hash_of(raw)))
        .select((
            data_links::id,
            data_links::subscriber_id,
            data_links::expires_at,
            data_links::used_at,
        ))
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Err(LinkError::Unknown);
    };
    if row.3.is_some() {
        return Err(LinkError::Used);
    }
    if row.2 <= db::now() {
        return Err(LinkError::Expired);
    }
    Ok(row)
}

/// The subscriber a working link is for, without using it up (the page a link opens: a link
/// scanner's GET must not spend it).
pub fn check(conn: &mut DbConnection, raw: &str) -> Result<SubscriberRecord, LinkError> {
    let (_, subscriber_id, _, _) = find_live(conn, raw)?;
    match records::find(conn, subscriber_id)? {
        Some(record) if !record.is_erased() => Ok(record),
        _ => Err(LinkError::Unknown),
    }
}

/// Uses the link up; the subscriber it was for. Only one caller can: the update is conditional
/// on the link being unused.
fn spend(conn: &mut DbConnection, raw: &str) -> Result<i64, LinkError> {
    let (id, subscriber_id, _, _) = find_live(conn, raw)?;
    let spent = diesel::update(
        data_links::table
            .find(id)
            .filter(data_links::used_at.is_null()),
    )
    .set(data_links::used_at.eq(Some(db::now())))
    .execute(conn)?;
    if spent == 0 {
        return Err(LinkError::Used);
    }
    Ok(subscriber_id)
}

/// Uses the link and returns everything stored about its subscriber ([`records::export`]).
pub fn download(conn: &mut DbConnection, raw: &str) -> Result<serde_json::Value, LinkError> {
    db::write_transaction(conn, |conn| {
        let subscriber_id = spend(conn, raw)?;
        records::export(conn, subscriber_id)?.ok_or(LinkError::Unknown)
    })
}

/// Uses the link and erases its subscriber's data ([`records::erase`]), in one transaction.
pub fn erase(conn: &mut DbConnection, raw: &str, secret: &[u8]) -> Result<(), LinkError> {
    db::write_transaction(conn, |conn| {
        let subscriber_id = spend(conn, raw)?;
        records::erase(conn, subscriber_id, secret)?;
        Ok(())
    })
}
