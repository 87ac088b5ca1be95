//! Double opt-in sign-up: the only module that changes a subscriber's status.
//!
//! A sign-up records the consent, issues a confirmation token and queues the confirmation email,
//! all in one transaction: either the person is on file with a message on its way, or nothing
//! happened. The email itself is sent later by the delivery worker, never inside the request.

pub mod data_links;
pub mod directory;
pub mod import;
pub mod records;
pub mod repermission;
pub mod search;
pub mod tokens;
mod topic_lists;

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use diesel::prelude::*;

use crate::foundation::db::schema::{confirmation_tokens, consents, subscribers};
use crate::foundation::db::{self, DbConnection, DbError};
use crate::foundation::domain::{SubscriberEmail, SubscriberName, SubscriberStatus, Topics};
use crate::stores::{delivery, webhooks, welcome};

/// The version of the consent text shown beside the sign-up button; stored with each consent so
/// that what a person agreed to can be shown later. Change it whenever that text changes.
pub const CONSENT_TEXT_VERSION: &str = "2026-11-29";

/// A sign-up as it arrives from the form, already parsed.
#[derive(Clone, Debug)]
pub struct NewSignup {
    pub email: SubscriberEmail,
    pub name: Option<SubscriberName>,
    pub topics: Topics,
    /// Where the request came from, for the consent record.
    pub ip: String,
    pub user_agent: String,
    /// Which form: the sign-up page, or a box on an article page.
    pub source: String,
}

/// Why a sign-up was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("too many sign-ups for this address in the last hour")]
    TooManyForAddress,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for SignupError {
    fn from(e: diesel::result::Error) -> Self {
        SignupError::Db(DbError::Query(e))
    }
}

/// Takes a sign-up. The outcome is deliberately not told to the caller: the page answers the same
/// for a new, pending, confirmed or unsubscribed address, so that the form reveals nothing.
///
/// - new address: a `pending` subscriber, a consent record, a token and a confirmation email;
/// - `pending`: the old token is revoked and a new one sent;
/// - `unsubscribed`, `bounced`, `complained`: a fresh consent and a confirmation; the status,
///   name and topics change only once the link is followed;
/// - `confirmed`: the consent is recorded, and a note with the reader's preferences link is
///   queued (at most one a day).
///
/// At most `per_address_per_hour` sign-ups of one address are taken per hour, whatever its state,
/// however many arrive at once: see the lock in `sign_up_once`.
///
/// The name given is kept with the consent and becomes the subscriber's only when the link is
/// followed: a new subscriber's row has none until then.
///
/// `secret` (`IRIA_SECRET_KEY`) derives the link's token from the nonce queued with the email
/// (see [`tokens`]): neither table holds the token itself.
pub fn sign_up(
    conn: &mut DbConnection,
    signup: &NewSignup,
    per_address_per_hour: u32,
    token_ttl: std::time::Duration,
    secret: &[u8],
) -> Result<(), SignupError> {
    if let DbConnection::Pg(pg) = conn {
        if first_sign_up_on_postgres(pg, signup, token_ttl, secret)? {
            return Ok(());
        }
    }
    // Two first sign-ups of one address at the same moment: the second insert meets the unique
    // index; trying again finds the row the other one made.
    match sign_up_once(conn, signup, per_address_per_hour, token_ttl, secret) {
        Err(SignupError::Db(DbError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )))) => sign_up_once(conn, signup, per_address_per_hour, token_ttl, secret),
        other => other,
    }
}

/// The common case on PostgreSQL, a first sign-up, in one statement and one round trip instead
/// of a transaction of seven: the subscriber, the consent, the token and the queued
/// confirmation are inserted together by one statement (atomic like a transaction); its last
/// part, the confirmation's row, is written by the ledger ([`delivery::push_confirmation_insert`]). When the
/// address is already on file, `ON CONFLICT DO NOTHING` inserts nothing and this returns false:
/// the general path below then handles every other state, on both backends. The rows written
/// are the same as the general path's for a new address, column for column (the tests run both).
fn first_sign_up_on_postgres(
    pg: &mut diesel::PgConnection,
    signup: &NewSignup,
    token_ttl: std::time::Duration,
    secret: &[u8],
) -> Result<bool, SignupError> {
    let now = db::now();
    let (payload, token) = tokens::ConfirmationToken::issue(secret);
    let queued = FirstSignUp {
        signup,
        now,
        expires_at: now + to_chrono(token_ttl),
        token_hash: token.hash(),
        payload: &payload,
        name: signup.name.as_ref().map(SubscriberName::as_str),
        topics: signup.topics.to_stored(),
    }
    .execute(pg)?;
    Ok(queued == 1)
}

/// The statement of [`first_sign_up_on_postgres`]. A query type of its own (rather than
/// `sql_query`) so that diesel prepares it once per connection and caches it: a `sql_query` is
/// prepared anew each time, which costs a second round trip and a fresh plan.
struct FirstSignUp<'a> {
    signup: &'a NewSignup,
    now: NaiveDateTime,
    expires_at: NaiveDateTime,
    token_hash: String,
    /// The nonce queued with the email, from which the worker derives the link's token.
    payload: &'a str,
    name: Option<&'a str>,
    topics: String,
}

impl diesel::query_builder::QueryId for FirstSignUp<'_> {
    type QueryId = FirstSignUp<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for FirstSignUp<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Nullable, Text, Timestamp};
        let s = self.signup;
        out.push_sql(
            "WITH s AS (INSERT INTO subscribers (email, name, status, topics, created_at, updated_at) VALUES (",
        );
        out.push_bind_param::<Text, _>(s.email.as_str())?;
        // No name until the address is confirmed: the consent keeps it till then.
        out.push_sql(", NULL, 'pending', ");
        out.push_bind_param::<Text, _>(&self.topics)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(
            ") ON CONFLICT (email) DO NOTHING RETURNING id), \
             c AS (INSERT INTO consents (subscriber_id, requested_at, ip, user_agent, source, \
             consent_text_version, name, topics) SELECT id, ",
        );
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        for value in [&s.ip, &s.user_agent, &s.source] {
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(value)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(CONSENT_TEXT_VERSION)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.name)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.topics)?;
        out.push_sql(
            " FROM s RETURNING id, subscriber_id), \
             t AS (INSERT INTO confirmation_tokens (subscriber_id, consent_id, token_hash, created_at, \
             expires_at) SELECT subscriber_id, id, ",
        );
        out.push_bind_param::<Text, _>(&self.token_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.expires_at)?;
        out.push_sql(" FROM c) ");
        // The ledger writes its own row: the statement's last part is the ledger's.
        delivery::push_confirmation_insert(&mut out, "s", self.payload, &self.now)
    }
}

impl diesel::RunQueryDsl<diesel::PgConnection> for FirstSignUp<'_> {}

fn sign_up_once(
    conn: &mut DbConnection,
    signup: &NewSignup,
    per_address_per_hour: u32,
    token_ttl: std::time::Duration,
    secret: &[u8],
) -> Result<(), SignupError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        let (subscriber_id, status) = find_or_add(conn, signup, per_address_per_hour, now)?;
        let consent_id: i64 = diesel::insert_into(consents::table)
            .values((
                consents::subscriber_id.eq(subscriber_id),
                consents::requested_at.eq(now),
                consents::ip.eq(&signup.ip),
                consents::user_agent.eq(&signup.user_agent),
                consents::source.eq(&signup.source),
                consents::consent_text_version.eq(CONSENT_TEXT_VERSION),
                consents::name.eq(signup.name.as_ref().map(SubscriberName::as_str)),
                consents::topics.eq(signup.topics.to_stored()),
            ))
            .returning(consents::id)
            .get_result(conn)?;
        if status == SubscriberStatus::Confirmed {
            // Someone (perhaps the reader, who forgot) asked again: the reader gets their
            // preferences link rather than silence, at most once a day. The page answers the
            // same either way.
            delivery::queue_already_subscribed(conn, subscriber_id, now)?;
            return Ok(());
        }
        revoke_tokens(conn, subscriber_id, now)?;
        let (payload, token) = tokens::ConfirmationToken::issue(secret);
        diesel::insert_into(confirmation_tokens::table)
            .values((
                confirmation_tokens::subscriber_id.eq(subscriber_id),
                confirmation_tokens::consent_id.eq(consent_id),
                confirmation_tokens::token_hash.eq(token.hash()),
                confirmation_tokens::created_at.eq(now),
                confirmation_tokens::expires_at.eq(now + to_chrono(token_ttl)),
            ))
            .execute(conn)?;
        delivery::queue_confirmation(conn, subscriber_id, &payload, now)?;
        Ok(())
    })
}

/// The subscriber with the sign-up's address, locked for the rest of the transaction, and its
/// status; or a new pending one. Refuses a sign-up past the per-address limit.
fn find_or_add(
    conn: &mut DbConnection,
    signup: &NewSignup,
    per_address_per_hour: u32,
    now: NaiveDateTime,
) -> Result<(i64, SubscriberStatus), SignupError> {
    let query = subscribers::table
        .filter(subscribers::email.eq(signup.email.as_str()))
        .select((subscribers::id, subscribers::status));
    let existing: Option<(i64, String)> = match &mut *conn {
        // The row stays locked until the transaction ends: sign-ups of one address queue
        // here, and each counts the consents of those before it (under READ COMMITTED the
        // count below is a statement after the wait, so it sees them). Without the lock,
        // parallel sign-ups all counted the same rows and all passed the limit. SQLite's
        // write transaction holds its one write lock from the start: nothing to add.
        DbConnection::Pg(pg) => query.for_update().first(pg).optional()?,
        DbConnection::Sqlite(lite) => query.first(lite).optional()?,
    };
    match existing {
        Some((id, status)) => {
            let since = now - ChronoDuration::hours(1);
            let recent: i64 = consents::table
                .filter(consents::subscriber_id.eq(id))
                .filter(consents::requested_at.gt(since))
                .count()
                .get_result(conn)?;
            if recent >= i64::from(per_address_per_hour) {
                return Err(SignupError::TooManyForAddress);
            }
            Ok((
                id,
                SubscriberStatus::parse(&status).unwrap_or(SubscriberStatus::Pending),
            ))
        }
        None => {
            let id: i64 = diesel::insert_into(subscribers::table)
                .values((
                    subscribers::email.eq(signup.email.as_str()),
                    // No name until the address is confirmed: the consent keeps it, and
                    // `confirm` applies it. So nothing a stranger types reaches the
                    // subscriber's row (or any message) before the address owner agrees.
                    subscribers::name.eq(None::<&str>),
                    subscribers::status.eq(SubscriberStatus::Pending.as_str()),
                    subscribers::topics.eq(signup.topics.to_stored()),
                    subscribers::created_at.eq(now),
                    subscribers::updated_at.eq(now),
                ))
                .returning(subscribers::id)
                .get_result(conn)?;
            Ok((id, SubscriberStatus::Pending))
        }
    }
}

fn revoke_tokens(
    conn: &mut DbConnection,
    subscriber_id: i64,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        confirmation_tokens::table
            .filter(confirmation_tokens::subscriber_id.eq(subscriber_id))
            .filter(confirmation_tokens::used_at.is_null())
            .filter(confirmation_tokens::revoked_at.is_null()),
    )
    .set(confirmation_tokens::revoked_at.eq(now))
    .execute(conn)
}

fn to_chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::hours(48))
}

/// Why a confirmation link did not work; each gets its own page offering to sign up again.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("this confirmation link is not one we sent")]
    Unknown,
    #[error("this confirmation link has already been used")]
    Used,
    #[error("a newer confirmation link has been sent")]
    Superseded,
    #[error("this confirmation link has expired")]
    Expired,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ConfirmError {
    fn from(e: diesel::result::Error) -> Self {
        ConfirmError::Db(DbError::Query(e))
    }
}

/// id, subscriber, consent, expiry, use and revocation of a confirmation token.
type TokenRow = (
    i64,
    i64,
    i64,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// The confirmation token's row, if it could confirm now: its id, subscriber and consent.
/// Otherwise why not. Changes nothing.
fn usable_token(
    conn: &mut DbConnection,
    token: &tokens::ConfirmationToken,
    now: NaiveDateTime,
) -> Result<(i64, i64, i64), ConfirmError> {
    let row: Option<TokenRow> = confirmation_tokens::table
        .filter(confirmation_tokens::token_hash.eq(token.hash()))
        .select((
            confirmation_tokens::id,
            confirmation_tokens::subscriber_id,
            confirmation_tokens::consent_id,
            confirmation_tokens::expires_at,
            confirmation_tokens::used_at,
            confirmation_tokens::revoked_at,
        ))
        .first(conn)
        .optional()?;
    let Some((token_id, subscriber_id, consent_id, expires_at, used_at, revoked_at)) = row else {
        return Err(ConfirmError::Unknown);
    };
    if used_at.is_some() {
        return Err(ConfirmError::Used);
    }
    if revoked_at.is_some() {
        return Err(ConfirmError::Superseded);
    }
    if expires_at <= now {
        return Err(ConfirmError::Expired);
    }
    Ok((token_id, subscriber_id, consent_id))
}

/// What confirming with a link records: the name and topics given with its sign-up (which
/// anyone may have typed: the page shows them before the button).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToConfirm {
    pub name: Option<String>,
    pub topics: Topics,
}

/// Whether a confirmation link would confirm if its button were pressed now, and what it would
/// record, without using it: the page a link opens (which mail scanners fetch too) asks this,
/// and changes nothing.
pub fn check(
    conn: &mut DbConnection,
    token: &tokens::ConfirmationToken,
) -> Result<ToConfirm, ConfirmError> {
    let (_, _, consent_id) = usable_token(conn, token, db::now())?;
    let (name, topics): (Option<String>, String) = consents::table
        .find(consent_id)
        .select((consents::name, consents::topics))
        .first(conn)?;
    Ok(ToConfirm {
        name,
        topics: Topics::from_stored(&topics),
    })
}

/// Whether confirming takes the name given with the sign-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameChoice {
    /// The sign-up's name becomes the subscriber's (none if it had none).
    Given,
    /// The page's "Confirm without this name": the subscriber keeps the name they had, which
    /// only they could have set (a new subscriber has none).
    Discard,
}

/// Confirms with the token of a confirmation link (the button on the page the link opens): the
/// token is spent, the consent gets its confirmation time and IP, the subscriber becomes
/// `confirmed` and takes the name (unless `name` says [`NameChoice::Discard`]) and topics of
/// that consent, the welcome email is queued
/// (unless the editors turned it off, or the reader was welcomed before), and the webhooks hear
/// `subscriber.confirmed` (unless they were confirmed already), all in one transaction. Returns
/// the subscriber's address.
pub fn confirm(
    conn: &mut DbConnection,
    token: &tokens::ConfirmationToken,
    ip: &str,
    name_choice: NameChoice,
) -> Result<String, ConfirmError> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        let (token_id, subscriber_id, consent_id) = usable_token(conn, token, now)?;
        diesel::update(confirmation_tokens::table.find(token_id))
            .set(confirmation_tokens::used_at.eq(now))
            .execute(conn)?;
        diesel::update(consents::table.find(consent_id))
            .set((
                consents::confirmed_at.eq(now),
                consents::confirmed_ip.eq(ip),
            ))
            .execute(conn)?;
        let before: String = subscribers::table
            .find(subscriber_id)
            .select(subscribers::status)
            .first(conn)?;
        // The name and topics confirmed are those of the sign-up whose link was followed.
        let (given, topics): (Option<String>, String) = consents::table
            .find(consent_id)
            .select((consents::name, consents::topics))
            .first(conn)?;
        // The row's name was set by its owner (a confirmation or the preferences page), never
        // by a sign-up: discarding the sign-up's name keeps it.
        let name = match name_choice {
            NameChoice::Given => given,
            NameChoice::Discard => subscribers::table
                .find(subscriber_id)
                .select(subscribers::name)
                .first(conn)?,
        };
        diesel::update(subscribers::table.find(subscriber_id))
            .set((
                subscribers::status.eq(SubscriberStatus::Confirmed.as_str()),
                subscribers::name.eq(name),
                subscribers::topics.eq(topics),
                subscribers::confirmed_at.eq(now),
                subscribers::unsubscribed_at.eq(None::<NaiveDateTime>),
                subscribers::updated_at.eq(now),
            ))
            .execute(conn)?;
        revoke_tokens(conn, subscriber_id, now)?;
        if before != SubscriberStatus::Confirmed.as_str() {
            webhooks::emit_subscriber(conn, webhooks::Event::SubscriberConfirmed, subscriber_id)?;
        }
        // After the subscriber's row was updated: on PostgreSQL its lock orders two
        // confirmations of one reader, so the welcome is queued once.
        if welcome::enabled(conn)? {
            delivery::queue_welcome(conn, subscriber_id, now)?;
        }
        let email: String = subscribers::table
            .find(subscriber_id)
            .select(subscribers::email)
            .first(conn)?;
        Ok(email)
    })
}

/// Suppresses an address: `Bounced` (a hard bounce) or `Complained` (reported as spam). It is
/// never mailed again unless it signs up afresh. A subscriber whose status changes here is
/// reported to the webhooks (`subscriber.bounced`, `subscriber.complained`) in the caller's
/// transaction; one already in that status changes nothing and is not reported again.
pub fn suppress(
    conn: &mut DbConnection,
    subscriber_id: i64,
    status: SubscriberStatus,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let changed = diesel::update(
        subscribers::table
            .find(subscriber_id)
            .filter(subscribers::status.ne(status.as_str())),
    )
    .set((
        subscribers::status.eq(status.as_str()),
        subscribers::updated_at.eq(now),
    ))
    .execute(conn)?;
    let event = match status {
        SubscriberStatus::Bounced => Some(webhooks::Event::SubscriberBounced),
        SubscriberStatus::Complained => Some(webhooks::Event::SubscriberComplained),
        _ => None,
    };
    if let (Some(event), true) = (event, changed > 0) {
        webhooks::emit_subscriber(conn, event, subscriber_id)?;
    }
    Ok(changed)
}

/// Subscribers by status (for `/metrics` and the dashboard).
pub fn counts_by_status(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    subscribers::table
        .group_by(subscribers::status)
        .select((subscribers::status, diesel::dsl::count_star()))
        .load(conn)
}

/// Confirmed subscribers grouped by their stored choice of topics (empty: all), with how many
/// chose each; the digest makes one issue per group.
pub fn confirmed_by_topics(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    subscribers::table
        .filter(subscribers::status.eq(SubscriberStatus::Confirmed.as_str()))
        .group_by(subscribers::topics)
        .select((subscribers::topics, diesel::dsl::count_star()))
        .order(subscribers::topics)
        .load(conn)
}

/// A subscriber's status, as stored.
pub fn status_of(conn: &mut DbConnection, id: i64) -> QueryResult<Option<String>> {
    subscribers::table
        .find(id)
        .select(subscribers::status)
        .first(conn)
        .optional()
}

/// Who a message goes to.
#[derive(Clone, Debug, Queryable)]
pub struct Recipient {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: String,
}

/// The recipients with these ids.
pub fn recipients(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Recipient>> {
    subscribers::table
        .filter(subscribers::id.eq_any(ids))
        .select((
            subscribers::id,
            subscribers::email,
            subscribers::name,
            subscribers::status,
        ))
        .load(conn)
}

/// Of these confirmation tokens, the ones a link could still confirm with now (not used, not
/// superseded, not expired): a confirmation email whose link is dead is not worth sending.
pub fn live_tokens(conn: &mut DbConnection, tokens: &[&str]) -> QueryResult<Vec<String>> {
    // A batch of newsletter copies has no token: no query.
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let hashes: Vec<String> = tokens
        .iter()
        .filter_map(|t| tokens::ConfirmationToken::parse(t))
        .map(|t| t.hash())
        .collect();
    confirmation_tokens::table
        .filter(confirmation_tokens::token_hash.eq_any(&hashes))
        .filter(confirmation_tokens::used_at.is_null())
        .filter(confirmation_tokens::revoked_at.is_null())
        .filter(confirmation_tokens::expires_at.gt(db::now()))
        .select(confirmation_tokens::token_hash)
        .load(conn)
}
