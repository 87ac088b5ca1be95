//! Where a worker's claims read the queue from, and when they first put back the deliveries
//! whose lease ran out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stores::delivery::{ClaimFrom, Claimed, DueKey};

/// How often a worker's claim looks ahead of its place in the queue (see [`DueKey`]) for rows of
/// a higher priority: the most a confirmation queued during a bulk send waits for a claim to see
/// it.
pub(super) const AHEAD_EVERY: Duration = Duration::from_millis(250);

/// The longest a worker leaves expired leases unreleased.
const RELEASE_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// Where a worker's claims read the queue from, and when it last released expired leases.
#[derive(Default)]
pub(super) struct ClaimSchedule {
    floor: Mutex<Floor>,
    /// When this worker last put back in the queue the deliveries of leases run out.
    released_at: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Floor {
    /// The last row of the last full batch; `None`: from the start.
    after: Option<DueKey>,
    /// When a claim last looked ahead of the place.
    ahead_at: Option<Instant>,
}

impl ClaimSchedule {
    /// Where this claim reads the queue from: from the start when there is no last full batch,
    /// or when this claim has just put rows back in the queue (`released`: expired leases, whose
    /// rows may lie behind the place; every tenth of a lease at most, see [`Self::release_due`]);
    /// else ahead of the place then after it when that was last done [`AHEAD_EVERY`] ago or more;
    /// else after the place.
    ///
    /// Reading from the start at each look ahead, four times a second, walked the index entries
    /// of every copy sent so far: 15 ms a claim half-way through a million copies.
    pub(super) fn claim_from(&self, released: bool, now: Instant) -> ClaimFrom {
        let Ok(mut floor) = self.floor.lock() else {
            return ClaimFrom::Start;
        };
        let ahead_due = floor
            .ahead_at
            .is_none_or(|t| now.saturating_duration_since(t) >= AHEAD_EVERY);
        match floor.after {
            None => {
                floor.ahead_at = Some(now);
                ClaimFrom::Start
            }
            Some(_) if released => {
                floor.ahead_at = Some(now);
                ClaimFrom::Start
            }
            Some(key) if ahead_due => {
                floor.ahead_at = Some(now);
                ClaimFrom::AheadThenAfter(key)
            }
            Some(key) => ClaimFrom::After(key),
        }
    }

    /// Moves the claims' starting place past a full batch; a short batch (the end of what is
    /// due, or of what lies after the place) sends the next claim back to the start.
    pub(super) fn claimed_up_to(&self, batch: &[Claimed], limit: i64) {
        let Ok(mut floor) = self.floor.lock() else {
            return;
        };
        if (batch.len() as i64) < limit {
            floor.after = None;
            return;
        }
        let last = batch.iter().map(Claimed::due_key).max();
        floor.after = floor.after.max(last);
    }

    /// Whether this claim is to put back first the deliveries whose lease ran out: every tenth
    /// of a lease, at most every 5 seconds, rather than at every claim (the statement walks the
    /// index of leases from its oldest entries, and those of the copies sent long ago are only
    /// removed by vacuum: at a million copies, a few milliseconds a claim for nothing).
    pub(super) fn release_due(&self, lease: Duration, now: Instant) -> bool {
        let every = (lease / 10).min(RELEASE_AT_MOST_EVERY);
        let Ok(mut last) = self.released_at.lock() else {
            return true;
        };
        if last.is_some_and(|t| now.saturating_duration_since(t) < every) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(id: i64, priority: i32, minute: u32) -> Claimed {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
            .and_then(|d| d.and_hms_opt(12, minute, 0))
            .expect("a date");
        Claimed {
            id,
            subscriber_id: id,
            kind: "issue".into(),
            issue_id: Some(1),
            attempts: 1,
            payload: None,
            message_id: Some(format!("<{id}@test>")),
            priority,
            next_attempt_at: at,
        }
    }

    #[test]
    fn a_full_batch_moves_the_floor_past_its_last_row_and_a_short_one_resets_it() {
        let s = ClaimSchedule::default();
        let t0 = Instant::now();
        assert_eq!(
            s.claim_from(false, t0),
            ClaimFrom::Start,
            "the first claim reads from the start"
        );
        let batch = vec![claimed(7, 1, 0), claimed(3, 1, 5), claimed(9, 0, 9)];
        s.claimed_up_to(&batch, 3);
        let ClaimFrom::After(floor) = s.claim_from(false, t0 + Duration::from_millis(10)) else {
            panic!("a full batch moves the floor");
        };
        assert_eq!(
            (floor.priority, floor.id),
            (1, 3),
            "the last row in the queue's order: priority, then due time"
        );
        s.claimed_up_to(&batch[..2], 3);
        assert_eq!(
            s.claim_from(false, t0 + Duration::from_millis(20)),
            ClaimFrom::Start,
            "a short batch ends the queue: back to the start"
        );
    }

    #[test]
    fn the_claim_looks_ahead_every_quarter_second_and_reads_from_the_start_after_a_release() {
        let s = ClaimSchedule::default();
        let t0 = Instant::now();
        assert_eq!(s.claim_from(false, t0), ClaimFrom::Start);
        s.claimed_up_to(&[claimed(1, 1, 0), claimed(2, 1, 1)], 2);
        let after = |from: ClaimFrom| match from {
            ClaimFrom::After(k) | ClaimFrom::AheadThenAfter(k) => Some(k.id),
            ClaimFrom::Start => None,
        };
        let half = s.claim_from(false, t0 + AHEAD_EVERY / 2);
        assert!(matches!(half, ClaimFrom::After(_)), "{half:?}");
        let quarter = s.claim_from(false, t0 + AHEAD_EVERY);
        assert!(
            matches!(quarter, ClaimFrom::AheadThenAfter(_)),
            "{quarter:?}"
        );
        assert_eq!(after(quarter), Some(2), "ahead, then on from the floor");
        let next = s.claim_from(false, t0 + AHEAD_EVERY * 5 / 4);
        assert!(matches!(next, ClaimFrom::After(_)), "{next:?}");
        assert_eq!(
            s.claim_from(true, t0 + AHEAD_EVERY * 3 / 2),
            ClaimFrom::Start,
            "rows put back by this claim may lie behind the floor"
        );
        assert_eq!(
            after(s.claim_from(false, t0 + AHEAD_EVERY * 7 / 4)),
            Some(2),
            "the floor is kept across a read from the start"
        );
    }

    #[test]
    fn the_floor_never_moves_back() {
        let s = ClaimSchedule::default();
        let t0 = Instant::now();
        s.claimed_up_to(&[claimed(5, 1, 30), claimed(6, 1, 31)], 2);
        s.claimed_up_to(&[claimed(1, 1, 0), claimed(2, 1, 1)], 2);
        let ClaimFrom::AheadThenAfter(floor) = s.claim_from(false, t0) else {
            panic!("the first claim with a floor looks ahead");
        };
        assert_eq!(
            floor.id, 6,
            "the other pipeline's earlier batch does not pull the floor back"
        );
    }

    #[test]
    fn expired_leases_are_released_every_tenth_of_a_lease_at_most_every_five_seconds() {
        let s = ClaimSchedule::default();
        let t0 = Instant::now();
        let lease = Duration::from_secs(10);
        assert!(s.release_due(lease, t0));
        assert!(!s.release_due(lease, t0 + Duration::from_millis(900)));
        assert!(s.release_due(lease, t0 + Duration::from_secs(1)));
        let long = Duration::from_secs(300);
        let s = ClaimSchedule::default();
        assert!(s.release_due(long, t0));
        assert!(!s.release_due(long, t0 + Duration::from_millis(4_900)));
        assert!(s.release_due(long, t0 + Duration::from_secs(5)));
    }
}
