//! Re-permission: an editor asks the inactive readers (no reader click in the last N digests,
//! `personal` click tracking only) whether they still want the newsletter. Each is sent a
//! message with a "Keep me subscribed" button; those who do not press it within the chosen
//! number of days are unsubscribed with the reason `inactive` ([`expire`], run by a background
//! task). The only writer of `repermission_campaigns` and `repermission_requests`.
//!
//! [`expire`] is safe to run in several processes at once: a request leaves `waiting` by a
//! conditional update, and only the process whose update changed the row unsubscribes the reader.

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use diesel::prelude::*;

use super::records;
use crate::foundation::db::schema::{
    deliveries, repermission_campaigns, repermission_requests, subscribers,
};
use crate::foundation::db::{self, DbConnection, DbError};
use crate::foundation::domain::SubscriberStatus;
use crate::stores::{delivery, engagement};

/// How an unsubscription by re-permission is recorded in `subscribers.unsubscribed_via`.
pub const VIA_INACTIVE: &str = "inactive";
/// The most days an editor may give readers to answer.
pub const MAX_DAYS: u32 = 90;

const WAITING: &str = "waiting";
const KEPT: &str = "kept";
const UNSUBSCRIBED: &str = "unsubscribed";
const LEFT: &str = "left";
const NOT_ASKED: &str = "not_asked";

/// A campaign, as the console lists it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = repermission_campaigns)]
pub struct Campaign {
    pub id: i64,
    pub inactive_digests: i32,
    pub days: i32,
    pub created_at: NaiveDateTime,
    pub deadline: NaiveDateTime,
    pub created_by: Option<String>,
    pub recipients: i32,
}

/// What became of a campaign's readers so far.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub waiting: i64,
    pub kept: i64,
    pub unsubscribed: i64,
    pub left: i64,
    /// The deadline passed before their message was delivered (it failed, was skipped or was
    /// still queued): they stay subscribed.
    pub not_asked: i64,
}

/// The delivery payload of a campaign's message: the campaign and its deadline (seconds since
/// 1970), so that the worker needs no look-up to write it.
pub fn payload(campaign_id: i64, deadline: NaiveDateTime) -> String {
    format!("{campaign_id} {}", deadline.and_utc().timestamp())
}

/// The campaign and deadline a payload names.
pub fn parse_payload(payload: &str) -> Option<(i64, NaiveDateTime)> {
    let (id, at) = payload.split_once(' ')?;
    let deadline = chrono::DateTime::from_timestamp(at.parse().ok()?, 0)?.naive_utc();
    Some((id.parse().ok()?, deadline))
}

/// Starts a campaign: the readers inactive over the last `inactive_digests` digests (and not
/// already waiting to answer another campaign) are asked, with `days` to answer; one message
/// each is queued in the same transaction.
pub fn start(
    conn: &mut DbConnection,
    inactive_digests: u32,
    days: u32,
    created_by: Option<&str>,
    now: NaiveDateTime,
) -> Result<Campaign, DbError> {
    db::write_transaction(conn, |conn| {
        let waiting: std::collections::HashSet<i64> = repermission_requests::table
            .filter(repermission_requests::status.eq(WAITING))
            .select(repermission_requests::subscriber_id)
            .load::<i64>(conn)?
            .into_iter()
            .collect();
        let readers: Vec<i64> = engagement::inactive_ids(conn, inactive_digests)?
            .into_iter()
            .filter(|id| !waiting.contains(id))
            .collect();
        let deadline = now + ChronoDuration::days(i64::from(days));
        let id: i64 = diesel::insert_into(repermission_campaigns::table)
            .values((
                repermission_campaigns::inactive_digests.eq(inactive_digests as i32),
                repermission_campaigns::days.eq(days as i32),
                repermission_campaigns::created_at.eq(now),
                repermission_campaigns::deadline.eq(deadline),
                repermission_campaigns::created_by.eq(created_by),
            ))
            .returning(repermission_campaigns::id)
            .get_result(conn)?;
        // A reader already waiting in another campaign (started at the same moment, which the
        // look-up above could not see yet) is skipped: one waiting request per reader (a unique
        // index), and a message only to those this campaign asks.
        let mut asked: Vec<i64> = Vec::with_capacity(readers.len());
        for chunk in readers.chunks(1000) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|subscriber_id| {
                    (
                        repermission_requests::campaign_id.eq(id),
                        repermission_requests::subscriber_id.eq(*subscriber_id),
                        repermission_requests::status.eq(WAITING),
                    )
                })
                .collect();
            let insert = diesel::insert_into(repermission_requests::table)
                .values(rows)
                .on_conflict_do_nothing()
                .returning(repermission_requests::subscriber_id);
            asked.extend(match conn {
                DbConnection::Pg(pg) => insert.get_results::<i64>(pg)?,
                DbConnection::Sqlite(lite) => insert.get_results::<i64>(lite)?,
            });
        }
        asked.sort_unstable();
        diesel::update(repermission_campaigns::table.find(id))
            .set(repermission_campaigns::recipients.eq(asked.len() as i32))
            .execute(conn)?;
        delivery::queue_repermission(conn, &asked, &payload(id, deadline), now)?;
        Ok(repermission_campaigns::table
            .find(id)
            .select(Campaign::as_select())
            .first(conn)?)
    })
}

/// Where one reader's request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Still to answer, before the deadline.
    Waiting { deadline: NaiveDateTime },
    /// Answered: they stay.
    Kept,
    /// The deadline passed (or they were unsubscribed as inactive).
    TooLate,
    /// They left (unsubscribed, bounced, erased) meanwhile.
    Left,
    /// No such request: not a campaign of ours, or not this reader's.
    Unknown,
}

fn standing_in(
    conn: &mut DbConnection,
    campaign_id: i64,
    subscriber_id: i64,
    now: NaiveDateTime,
) -> QueryResult<Standing> {
    let row: Option<(String, NaiveDateTime, String)> = repermission_requests::table
        .inner_join(repermission_campaigns::table)
        .inner_join(subscribers::table)
        .filter(repermission_requests::campaign_id.eq(campaign_id))
        .filter(repermission_requests::subscriber_id.eq(subscriber_id))
        .select((
            repermission_requests::status,
            repermission_campaigns::deadline,
            subscribers::status,
        ))
        .first(conn)
        .optional()?;
    let Some((status, deadline, subscriber)) = row else {
        return Ok(Standing::Unknown);
    };
    Ok(match status.as_str() {
        KEPT => Standing::Kept,
        UNSUBSCRIBED => Standing::TooLate,
        LEFT | NOT_ASKED => Standing::Left,
        _ if subscriber != SubscriberStatus::Confirmed.as_str() => Standing::Left,
        _ if deadline <= now => Standing::TooLate,
        _ => Standing::Waiting { deadline },
    })
}

/// Where a reader's request stands (the page behind the button; changes nothing).
pub fn standing(
    conn: &mut DbConnection,
    campaign_id: i64,
    subscriber_id: i64,
    now: NaiveDateTime,
) -> QueryResult<Standing> {
    standing_in(conn, campaign_id, subscriber_id, now)
}

/// The reader pressed "Keep me subscribed" (the POST): a waiting request before its deadline
/// becomes `kept`, and so does any other waiting request of theirs (asked by two campaigns, one
/// answer is enough). Returns the standing before the answer (`Waiting` when this answer kept them;
/// pressing again answers `Kept`).
pub fn keep(
    conn: &mut DbConnection,
    campaign_id: i64,
    subscriber_id: i64,
    now: NaiveDateTime,
) -> Result<Standing, DbError> {
    db::write_transaction(conn, |conn| {
        let standing = standing_in(conn, campaign_id, subscriber_id, now)?;
        if let Standing::Waiting { .. } = standing {
            let changed = diesel::update(
                repermission_requests::table
                    .find((campaign_id, subscriber_id))
                    .filter(repermission_requests::status.eq(WAITING)),
            )
            .set((
                repermission_requests::status.eq(KEPT),
                repermission_requests::answered_at.eq(Some(now)),
            ))
            .execute(conn)?;
            diesel::update(
                repermission_requests::table
                    .filter(repermission_requests::subscriber_id.eq(subscriber_id))
                    .filter(repermission_requests::status.eq(WAITING)),
            )
            .set((
                repermission_requests::status.eq(KEPT),
                repermission_requests::answered_at.eq(Some(now)),
            ))
            .execute(conn)?;
            if changed == 0 {
                // Another request (or the expiry) got there first.
                return Ok(standing_in(conn, campaign_id, subscriber_id, now)?);
            }
        }
        Ok(standing)
    })
}

/// Unsubscribes, with the reason [`VIA_INACTIVE`], every reader whose campaign's deadline has
/// passed without an answer although their message was delivered (status `sent`) before it;
/// one whose message was not (it failed, was skipped, or was still queued) was never asked and
/// is only marked `not_asked`; one who left meanwhile is only marked `left`. Returns how many
/// were unsubscribed. Idempotent, and safe with several processes (see the module's note).
pub fn expire(conn: &mut DbConnection, now: NaiveDateTime) -> Result<usize, DbError> {
    let mut unsubscribed = 0;
    loop {
        let due: Vec<(i64, i64)> = repermission_requests::table
            .inner_join(repermission_campaigns::table)
            .filter(repermission_requests::status.eq(WAITING))
            .filter(repermission_campaigns::deadline.le(now))
            .select((
                repermission_requests::campaign_id,
                repermission_requests::subscriber_id,
            ))
            .limit(500)
            .load(conn)?;
        if due.is_empty() {
            return Ok(unsubscribed);
        }
        for (campaign_id, subscriber_id) in due {
            if expire_one(conn, campaign_id, subscriber_id)? {
                unsubscribed += 1;
            }
        }
    }
}

fn expire_one(
    conn: &mut DbConnection,
    campaign_id: i64,
    subscriber_id: i64,
) -> Result<bool, DbError> {
    db::write_transaction(conn, |conn| {
        let status: Option<String> = subscribers::table
            .find(subscriber_id)
            .select(subscribers::status)
            .first(conn)
            .optional()?;
        let confirmed = status.as_deref() == Some(SubscriberStatus::Confirmed.as_str());
        let asked = confirmed && was_asked(conn, campaign_id, subscriber_id)?;
        let to = match (confirmed, asked) {
            (false, _) => LEFT,
            (true, false) => NOT_ASKED,
            (true, true) => UNSUBSCRIBED,
        };
        let changed = diesel::update(
            repermission_requests::table
                .find((campaign_id, subscriber_id))
                .filter(repermission_requests::status.eq(WAITING)),
        )
        .set(repermission_requests::status.eq(to))
        .execute(conn)?;
        if changed == 0 || !asked {
            return Ok(false);
        }
        records::unsubscribe(conn, subscriber_id, VIA_INACTIVE)
    })
}

/// Whether the campaign's message reached the reader before its deadline: their re-permission
/// delivery (queued by [`start`] at the campaign's `created_at`) was sent by then.
fn was_asked(conn: &mut DbConnection, campaign_id: i64, subscriber_id: i64) -> QueryResult<bool> {
    let (created_at, deadline): (NaiveDateTime, NaiveDateTime) = repermission_campaigns::table
        .find(campaign_id)
        .select((
            repermission_campaigns::created_at,
            repermission_campaigns::deadline,
        ))
        .first(conn)?;
    let sent: i64 = deliveries::table
        .filter(deliveries::kind.eq(delivery::Kind::Repermission.as_str()))
        .filter(deliveries::subscriber_id.eq(subscriber_id))
        .filter(deliveries::created_at.eq(created_at))
        .filter(deliveries::status.eq(delivery::Status::Sent.as_str()))
        .filter(deliveries::finished_at.le(deadline))
        .count()
        .get_result(conn)?;
    Ok(sent > 0)
}

/// How many readers were unsubscribed as inactive by re-permission, ever.
pub fn unsubscribed_as_inactive(conn: &mut DbConnection) -> QueryResult<i64> {
    repermission_requests::table
        .filter(repermission_requests::status.eq(UNSUBSCRIBED))
        .count()
        .get_result(conn)
}

/// The latest campaigns, newest first, with what became of their readers.
pub fn recent(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<(Campaign, Tally)>> {
    let campaigns: Vec<Campaign> = repermission_campaigns::table
        .order(repermission_campaigns::id.desc())
        .limit(limit)
        .select(Campaign::as_select())
        .load(conn)?;
    let ids: Vec<i64> = campaigns.iter().map(|c| c.id).collect();
    let counts: Vec<(i64, String, i64)> = repermission_requests::table
        .filter(repermission_requests::campaign_id.eq_any(&ids))
        .group_by((
            repermission_requests::campaign_id,
            repermission_requests::status,
        ))
        .select((
            repermission_requests::campaign_id,
            repermission_requests::status,
            diesel::dsl::count_star(),
        ))
        .load(conn)?;
    Ok(campaigns
        .into_iter()
        .map(|c| {
            let mut tally = Tally::default();
            for (_, status, n) in counts.iter().filter(|(id, _, _)| *id == c.id) {
                match status.as_str() {
                    WAITING => tally.waiting = *n,
                    KEPT => tally.kept = *n,
                    UNSUBSCRIBED => tally.unsubscribed = *n,
                    NOT_ASKED => tally.not_asked = *n,
                    _ => tally.left += *n,
                }
            }
            (c, tally)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let deadline = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .expect("time")
            .naive_utc();
        assert_eq!(parse_payload(&payload(7, deadline)), Some((7, deadline)));
        assert_eq!(parse_payload("7"), None);
        assert_eq!(parse_payload("x 1"), None);
    }
}
