//! The sending pace of a delivery worker: a global messages-per-second ceiling, one per
//! recipient domain, and the domains that asked us to slow down (421/454) waited out.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The sending pace of this process: a global messages-per-second ceiling, one per recipient
/// domain, and domains that asked us to slow down (421/454) waited out.
pub struct Throttle {
    global: Option<DefaultDirectRateLimiter>,
    per_domain: Option<DefaultKeyedRateLimiter<String>>,
    /// Domain → (no sending before, the penalty that got us there).
    slowed: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl Throttle {
    /// `global` and `per_domain` messages a second; 0: no ceiling.
    pub fn new(global: u32, per_domain: u32) -> Self {
        Self {
            global: NonZeroU32::new(global).map(|n| RateLimiter::direct(Quota::per_second(n))),
            per_domain: NonZeroU32::new(per_domain)
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            slowed: Mutex::new(HashMap::new()),
        }
    }

    /// When a domain that told us to slow down may be tried again, if not yet.
    pub fn slowed_until(&self, domain: &str) -> Option<Instant> {
        let slowed = self.slowed.lock().ok()?;
        slowed
            .get(domain)
            .map(|(until, _)| *until)
            .filter(|until| *until > Instant::now())
    }

    /// A 421/454 from a domain: no more to it for a while, twice as long each time in a row
    /// (from 30 s up to an hour).
    pub fn slow_down(&self, domain: &str) -> Instant {
        let now = Instant::now();
        let Ok(mut slowed) = self.slowed.lock() else {
            return now + Duration::from_secs(30);
        };
        let penalty = match slowed.get(domain) {
            Some((until, previous)) if *until + *previous * 2 > now => {
                (*previous * 2).min(Duration::from_secs(3600))
            }
            _ => Duration::from_secs(30),
        };
        slowed.insert(domain.to_string(), (now + penalty, penalty));
        now + penalty
    }

    /// Waits for a turn within the global and the domain's ceilings.
    pub async fn wait_turn(&self, domain: &str) {
        if let Some(global) = &self.global {
            global.until_ready().await;
        }
        if let Some(per_domain) = &self.per_domain {
            per_domain.until_key_ready(&domain.to_string()).await;
        }
    }
}
