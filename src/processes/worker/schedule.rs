//! When a worker's claims read the queue from its start, and when they first put back the
//! deliveries whose lease ran out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stores::delivery::{Claimed, DueKey};

/// How often a worker reads the queue from its start rather than from after its last batch (see
/// [`DueKey`]): the most a confirmation queued during a bulk send, or a row put back behind the
/// last batch, waits for a claim to see it.
pub(super) const FULL_CLAIM_EVERY: Duration = Duration::from_millis(250);

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
    /// When a claim last read the queue from its start.
    full_at: Option<Instant>,
}

impl ClaimSchedule {
    /// Where this claim reads the queue from: after the last full batch, or from the start
    /// when that was [`FULL_CLAIM_EVERY`] ago or more (or there is no last full batch).
    pub(super) fn claim_from(&self, now: Instant) -> Option<DueKey> {
        let Ok(mut floor) = self.floor.lock() else {
            return None;
        };
        if floor.after.is_none()
            || floor
                .full_at
                .is_none_or(|t| now.saturating_duration_since(t) >= FULL_CLAIM_EVERY)
        {
            floor.full_at = Some(now);
            return None;
        }
        floor.after
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
            s.claim_from(t0),
            None,
            "the first claim reads from the start"
        );
        let batch = vec![claimed(7, 1, 0), claimed(3, 1, 5), claimed(9, 0, 9)];
        s.claimed_up_to(&batch, 3);
        let floor = s.claim_from(t0 + Duration::from_millis(10));
        assert_eq!(
            floor.map(|k| (k.priority, k.id)),
            Some((1, 3)),
            "the last row in the queue's order: priority, then due time"
        );
        s.claimed_up_to(&batch[..2], 3);
        assert_eq!(
            s.claim_from(t0 + Duration::from_millis(20)),
            None,
            "a short batch ends the queue: back to the start"
        );
    }

    #[test]
    fn the_queue_is_read_from_its_start_every_quarter_second() {
        let s = ClaimSchedule::default();
        let t0 = Instant::now();
        assert_eq!(s.claim_from(t0), None);
        s.claimed_up_to(&[claimed(1, 1, 0), claimed(2, 1, 1)], 2);
        assert!(s.claim_from(t0 + FULL_CLAIM_EVERY / 2).is_some());
        assert_eq!(s.claim_from(t0 + FULL_CLAIM_EVERY), None);
        assert!(
            s.claim_from(t0 + FULL_CLAIM_EVERY * 3 / 2).is_some(),
            "the floor is kept across a full read"
        );
    }

    #[test]
    fn the_floor_never_moves_back() {
        let s = ClaimSchedule::default();
        let t0 = Instant::now();
        s.claimed_up_to(&[claimed(5, 1, 30), claimed(6, 1, 31)], 2);
        s.claimed_up_to(&[claimed(1, 1, 0), claimed(2, 1, 1)], 2);
        assert_eq!(s.claim_from(t0), None);
        assert_eq!(
            s.claim_from(t0 + Duration::from_millis(1)).map(|k| k.id),
            Some(6),
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
