//! The webhook worker: claims due webhook deliveries, posts each event's JSON, signed as Standard
//! Webhooks does, and records how it went. 2xx is delivered; anything else (another status, a
//! redirect, no answer within 10 s) is tried again with exponential backoff and jitter, for up to
//! 24 hours after the event, so a receiver that was down gets every event once it is back. It
//! runs inside `serve` and in `iria-news worker`.

use std::time::Duration;

use base64::Engine;
use chrono::NaiveDateTime;
use futures_util::stream::{self, StreamExt};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::watch;

use crate::foundation::config::Settings;
use crate::foundation::db::{self, DbError, Pool};
use crate::processes::worker::backoff;
use crate::stores::webhooks::{self, Claimed, Outcome, Target};

/// How long one post may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long after its event a post is still tried.
pub const GIVE_UP_AFTER_HOURS: i64 = 24;
/// Deliveries claimed at a time.
const BATCH: i64 = 16;
/// Posts in flight at once.
const CONCURRENCY: usize = 8;
/// How long a claim is reserved: two rounds of posts at most (16 / 8 × 10 s), with room to spare.
const LEASE: Duration = Duration::from_secs(120);

/// The `webhook-signature` of a body: `v1,` and the base64 of HMAC-SHA256 over
/// `{id}.{timestamp}.{body}`, keyed with the secret's bytes (the base64 after `whsec_`).
/// `None` when the secret is not of that form.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// One webhook worker of this process.
pub struct WebhookWorker {
    pool: Pool,
    client: reqwest::Client,
    /// Names this worker's leases in the outbox.
    owner: String,
    retry_base: Duration,
    poll: Duration,
}

impl WebhookWorker {
    /// A worker with its own HTTP client (no redirects followed, 10 s per post).
    pub fn new(settings: &Settings, pool: Pool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("IRIA-News-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let owner = format!(
            "webhooks:{host}:{}:{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        Ok(Self {
            pool,
            client,
            owner,
            retry_base: settings.webhook_retry_base,
            poll: settings.delivery.poll,
        })
    }

    /// Runs until `shutdown` turns true: then it finishes the posts in flight, hands back any
    /// lease it still holds, and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, "webhook worker started");
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            match self.run_once().await {
                Ok(claimed) if claimed as i64 >= BATCH => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, "webhook worker cannot reach the database; retrying");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll * failures.clamp(1, 5)) => {}
                _ = shutdown.changed() => {}
            }
        }
        let owner = self.owner.clone();
        match db::run(&self.pool, move |conn| {
            Ok(webhooks::release_owned(conn, &owner)?)
        })
        .await
        {
            Ok(n) if n > 0 => tracing::info!(released = n, "webhook worker handed back its leases"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not hand back webhook leases; they will expire")
            }
        }
        tracing::info!(owner = %self.owner, "webhook worker stopped");
    }

    /// Claims one batch, posts it and records the outcomes. Returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, DbError> {
        let owner = self.owner.clone();
        let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::minutes(2));
        let (claimed, targets) = db::run(&self.pool, move |conn| {
            let now = db::now();
            webhooks::release_expired_leases(conn, now)?;
            let claimed = webhooks::claim(conn, &owner, now, now + lease, BATCH)?;
            let mut ids: Vec<i64> = claimed.iter().map(|c| c.endpoint_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let targets = if ids.is_empty() {
                Vec::new()
            } else {
                webhooks::targets(conn, &ids)?
            };
            Ok((claimed, targets))
        })
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let count = claimed.len();
        let outcomes: Vec<(Claimed, Outcome)> = stream::iter(claimed)
            .map(|c| {
                let target = targets.iter().find(|t| t.id == c.endpoint_id).cloned();
                async move {
                    let outcome = self.attempt(&c, target).await;
                    (c, outcome)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let owner = self.owner.clone();
        db::run(&self.pool, move |conn| {
            webhooks::record(conn, &owner, &outcomes)
        })
        .await?;
        Ok(count)
    }

    /// Posts one delivery and says how it ended.
    async fn attempt(&self, claimed: &Claimed, target: Option<Target>) -> Outcome {
        let Some(target) = target else {
            return Outcome::Skipped {
                reason: "the endpoint was deleted".into(),
            };
        };
        // Only an erasure wipes the body of a delivery that has not ended.
        let Some(body) = claimed.payload.as_deref() else {
            return Outcome::Skipped {
                reason: "the subscriber was erased".into(),
            };
        };
        let timestamp = chrono::Utc::now().timestamp();
        let Some(signature) = sign(&target.secret, &claimed.event_id, timestamp, body) else {
            return Outcome::Failed {
                status: None,
                error: "the endpoint's secret is not a whsec_ base64 secret".into(),
            };
        };
        let sent = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &claimed.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .send()
            .await;
        let (status, error) = match sent {
            Ok(response) if response.status().is_success() => {
                return Outcome::Delivered {
                    status: response.status().as_u16(),
                }
            }
            Ok(response) => {
                let status = response.status();
                (Some(status.as_u16()), format!("HTTP {status}"))
            }
            Err(e) => (None, describe(&e)),
        };
        tracing::info!(webhook = claimed.id, endpoint = target.id, attempts = claimed.attempts, %error, "webhook post failed");
        self.after_failure(claimed, status, error)
    }

    /// A retry after the backoff, unless that falls past the event's day of attempts.
    fn after_failure(&self, claimed: &Claimed, status: Option<u16>, error: String) -> Outcome {
        let delay = backoff(self.retry_base, claimed.attempts);
        let at: NaiveDateTime =
            db::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(6));
        if at > claimed.created_at + chrono::Duration::hours(GIVE_UP_AFTER_HOURS) {
            return Outcome::Failed {
                status,
                error: format!(
                    "gave up after {} attempts over {GIVE_UP_AFTER_HOURS} hours: {error}",
                    claimed.attempts
                ),
            };
        }
        Outcome::Retry { at, status, error }
    }
}

/// A failed request in one line: what went wrong, with its innermost cause (e.g. "connection
/// refused").
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer within 10 s"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{what}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The vector published with the Standard Webhooks reference libraries: a receiver using
        // one of them accepts what we sign.
        assert_eq!(
            sign(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            )
            .as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("whsec_not base64!", "id", 1, "{}"), None);
    }
}
