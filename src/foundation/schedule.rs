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

    /// When the period of a key made by [`Self::period_key`] opened; `None` for any other key (a
    /// forced run's, a test's).
    pub fn period_start(period_key: &str) -> Option<DateTime<Utc>> {
        let at = period_key.strip_prefix("digest:")?;
        DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// A time as readers and editors read it: "Monday 7 December 2026 at 08:00 (Europe/Paris)".
    pub fn local_time(&self, t: DateTime<Utc>) -> String {
        format!(
            "{} ({})",
            t.with_timezone(&self.tz).format("%A %-d %B %Y at %H:%M"),
            self.tz.name()
        )
    }

    /// The schedule in words, for readers: "every Monday at 08:00 (Europe/Paris)", "every day at
    /// 07:30 (UTC)", or, when the times follow no weekly or daily pattern, the next one.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let next: Vec<DateTime<Tz>> = self
            .cron
            .after(&now.with_timezone(&self.tz))
            .take(5)
            .collect();
        let Some(first) = next.first() else {
            return "whenever the editors send it".to_string();
        };
        let clock = first.format("%H:%M").to_string();
        let same_clock = next.iter().all(|t| t.format("%H:%M").to_string() == clock);
        let gaps: Vec<i64> = next
            .windows(2)
            .map(|w| (w[1].date_naive() - w[0].date_naive()).num_days())
            .collect();
        let tz = self.tz.name();
        if next.len() > 1 && same_clock && gaps.iter().all(|d| *d == 7) {
            format!("every {} at {clock} ({tz})", first.format("%A"))
        } else if next.len() > 1 && same_clock && gaps.iter().all(|d| *d == 1) {
            format!("every day at {clock} ({tz})")
        } else {
            format!("next on {}", self.local_time(first.with_timezone(&Utc)))
        }
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
    fn the_schedule_in_words() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("time");
        let weekly = Schedule::parse("0 0 8 * * Mon", "Europe/Paris").expect("parse");
        // Across the change to winter time and back, still Monday 08:00 in Paris.
        assert_eq!(weekly.describe(now), "every Monday at 08:00 (Europe/Paris)");
        let daily = Schedule::parse("0 30 7 * * *", "UTC").expect("parse");
        assert_eq!(daily.describe(now), "every day at 07:30 (UTC)");
        let once = Schedule::parse("0 0 8 1 1 * 2099", "UTC").expect("parse");
        assert_eq!(
            once.describe(now),
            "next on Thursday 1 January 2099 at 08:00 (UTC)"
        );
        let start = Schedule::period_start("digest:2026-11-23T07:00:00Z").expect("a period key");
        assert_eq!(
            weekly.local_time(start),
            "Monday 23 November 2026 at 08:00 (Europe/Paris)"
        );
        assert_eq!(Schedule::period_start("digest:fifty"), None);
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
