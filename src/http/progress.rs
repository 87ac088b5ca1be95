//! Issues' delivery counts as the console and the API show them, kept for a while when counting
//! them was slow.
//!
//! Counting an issue's copies by status reads every one of them: about 700 ms for a million
//! copies while they are being sent (their rows change too fast for an index-only count). The
//! issue's page refreshes itself every 5 seconds during a send, and every editor watching it
//! would have spent a third of a core on counting alone. A count that took longer than
//! [`SLOW`] is kept for twenty times what it took (14 s at a million), so that counting costs
//! at most a twentieth of a core whoever watches; a quick count (an issue of a few thousand
//! copies) is never kept, and shows every change at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::QueryResult;

use crate::foundation::db::DbConnection;
use crate::stores::delivery;

/// Counts that took longer than this are kept.
pub const SLOW: Duration = Duration::from_millis(50);

/// How many times what a count took it is kept.
const KEEP_FACTOR: u32 = 20;

/// A kept count is kept at least this long.
const MIN_KEEP: Duration = Duration::from_secs(1);

/// How long a count that took `took` stays good enough to show: twenty times what it took, at
/// least a second (the console's kept counts, and `send --wait`'s progress line).
pub fn keep_for(took: Duration) -> Duration {
    (took * KEEP_FACTOR).max(MIN_KEEP)
}

/// Issues kept at most; past it, the ones whose time is up are dropped.
const MAX_KEPT: usize = 256;

/// Rows of [`delivery::progress_of`]: (issue, status, how many).
type Counts = Vec<(Option<i64>, String, i64)>;

struct Kept {
    until: Instant,
    rows: Counts,
}

/// The kept counts, by issue, and how slow a count must be to be kept.
pub struct ProgressCache {
    kept: Mutex<HashMap<i64, Kept>>,
    slow: Duration,
}

impl Default for ProgressCache {
    fn default() -> Self {
        Self::keeping_from(SLOW)
    }
}

impl ProgressCache {
    /// A cache keeping the counts that took `slow` or longer.
    pub fn keeping_from(slow: Duration) -> Self {
        Self {
            kept: Mutex::new(HashMap::new()),
            slow,
        }
    }

    /// [`delivery::progress_of`] for `issue_ids`, from the kept counts where they still hold.
    pub fn progress_of(&self, conn: &mut DbConnection, issue_ids: &[i64]) -> QueryResult<Counts> {
        let mut out = Vec::new();
        let mut stale = Vec::new();
        // A poisoned lock (a panic while it was held) keeps nothing: every count is read.
        if let Ok(kept) = self.kept.lock() {
            let now = Instant::now();
            for id in issue_ids {
                match kept.get(id) {
                    Some(k) if k.until > now => out.extend(k.rows.iter().cloned()),
                    _ => stale.push(*id),
                }
            }
        } else {
            stale.extend_from_slice(issue_ids);
        }
        if stale.is_empty() {
            return Ok(out);
        }
        let started = Instant::now();
        let rows = delivery::progress_of(conn, &stale)?;
        let took = started.elapsed();
        if let (true, Ok(mut kept)) = (took >= self.slow, self.kept.lock()) {
            let until = Instant::now() + keep_for(took);
            if kept.len() >= MAX_KEPT {
                let now = Instant::now();
                kept.retain(|_, k| k.until > now);
            }
            if kept.len() < MAX_KEPT {
                for id in &stale {
                    let own = rows.iter().filter(|r| r.0 == Some(*id)).cloned().collect();
                    kept.insert(*id, Kept { until, rows: own });
                }
            }
        }
        out.extend(rows);
        Ok(out)
    }
}
