//! When digests run: `IRIA_DIGEST_SCHEDULE` (cron, seconds first) in `IRIA_TIMEZONE`.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: cron::Schedule,
    tz: Tz,
}

impl Schedule {
    /// Parses the two settings; the error names the one that is wrong.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, String> {
        let cron = cron::Schedule::from_str(expression).map_err(|e| {
            let why: Vec<String> = e.to_string().split_whitespace().filter(|w| *w != "^").map(str::to_string).collect();
            format!(
                "IRIA_DIGEST_SCHEDULE: not a cron expression (sec min hour day month weekday): {expression:?}: {}",
                why.join(" ")
            )
        })?;
        let tz = Tz::from_str(timezone)
            .map_err(|_| format!("IRIA_TIMEZONE: unknown time zone {timezone:?}"))?;
        Ok(Self { cron, tz })
    }

    /// The latest scheduled time at or before `now`.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz) + chrono::Duration::seconds(1);
        self.cron
            .after(&local)
            .next_back()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The next scheduled time after `now`.
    pub fn next(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&now.with_timezone(&self.tz))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The key of the period a time belongs to: the scheduled time that opened it. Every instance
    /// and every rerun in the period computes the same key.
    pub fn period_key(&self, now: DateTime<Utc>) -> String {
        match self.latest(now) {
            Some(t) => format!("digest:{}", t.format("%Y-%m-%dT%H:%M:%SZ")),
            None => format!("digest:{}", now.format("%Y-%m-%d")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn monday_eight_in_paris() {
        let s = Schedule::parse("0 0 8 * * Mon", "Europe/Paris").expect("parse");
        // Wednesday 25 November 2026, 12:00 UTC.
        let now = Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("time");
        // Monday 23 November, 08:00 in Paris = 07:00 UTC.
        assert_eq!(
            s.latest(now),
            Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).single()
        );
        assert_eq!(
            s.next(now),
            Utc.with_ymd_and_hms(2026, 11, 30, 7, 0, 0).single()
        );
        assert_eq!(s.period_key(now), "digest:2026-11-23T07:00:00Z");
        // Exactly at the scheduled time, the new period has begun.
        let at = Utc
            .with_ymd_and_hms(2026, 11, 30, 7, 0, 0)
            .single()
            .expect("time");
        assert_eq!(s.period_key(at), "digest:2026-11-30T07:00:00Z");
        // After downtime spanning several periods, there is one key: the latest.
        let later = Utc
            .with_ymd_and_hms(2026, 12, 20, 9, 0, 0)
            .single()
            .expect("time");
        assert_eq!(s.period_key(later), "digest:2026-12-14T07:00:00Z");
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(Schedule::parse("every monday", "UTC")
            .unwrap_err()
            .contains("IRIA_DIGEST_SCHEDULE"));
        assert!(Schedule::parse("0 0 8 * * Mon", "Mars/Olympus")
            .unwrap_err()
            .contains("IRIA_TIMEZONE"));
    }
}
