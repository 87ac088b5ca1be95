//! The message of each claimed delivery, and the one-time links (confirmation, data link) that
//! some of them carry.
//!
//! A one-time link's token is not in the ledger: its row keeps a nonce, and the token is derived
//! from it here with the secret key (see [`crate::stores::subscriptions::tokens`]). A link that no
//! longer works (used, superseded, expired) is not worth sending: its delivery is skipped.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::foundation::config::Settings;
use crate::foundation::db::DbConnection;
use crate::foundation::domain::SubscriberStatus;
use crate::processes::messages::dkim::DkimSigner;
use crate::processes::messages::{self, IssueContent, Outgoing};
use crate::stores::delivery::{Claimed, Kind, Outcome};
use crate::stores::subscriptions::tokens::ConfirmationToken;
use crate::stores::subscriptions::{self, data_links, repermission, Recipient};
use crate::stores::welcome::Welcome;

/// What one delivery's message is made of.
#[derive(Clone, Copy)]
pub struct Content<'a> {
    /// A confirmation's or data link's token, when its link still works.
    pub link_token: Option<&'a str>,
    pub issue: Option<&'a IssueContent>,
    pub welcome: Option<&'a Welcome>,
}

/// The tokens of the batch's one-time links that still work, by delivery id: derived from each
/// payload with the secret key, then checked against the stored hashes. A confirmation queued
/// before nonces carries its token in the payload, and is read as such.
pub fn live_link_tokens(
    conn: &mut DbConnection,
    secret: &[u8],
    deliveries: &[Claimed],
) -> diesel::QueryResult<HashMap<i64, String>> {
    let mut confirmations: Vec<(i64, String)> = Vec::new();
    let mut data: Vec<(i64, String)> = Vec::new();
    for claimed in deliveries {
        let Some(payload) = claimed.payload.as_deref() else {
            continue;
        };
        if claimed.kind == Kind::Confirmation.as_str() {
            if let Some(token) = ConfirmationToken::from_payload(secret, payload) {
                confirmations.push((claimed.id, token.as_str().to_string()));
            }
        } else if claimed.kind == Kind::DataLink.as_str() {
            if let Some(token) = data_links::token_of_payload(secret, payload) {
                data.push((claimed.id, token));
            }
        }
    }
    let confirmation_tokens: Vec<&str> = confirmations.iter().map(|(_, t)| t.as_str()).collect();
    let mut live = subscriptions::live_tokens(conn, &confirmation_tokens)?;
    let data_tokens: Vec<String> = data.iter().map(|(_, t)| t.clone()).collect();
    live.extend(data_links::live(conn, &data_tokens)?);
    Ok(confirmations
        .into_iter()
        .chain(data)
        .filter(|(_, token)| {
            let hash = subscriptions::tokens::hash_of(token);
            live.contains(&hash)
        })
        .collect())
}

/// One delivery's message to build and sign, with everything it needs owned, so that the work
/// can move to another thread.
pub struct Job {
    pub settings: Arc<Settings>,
    pub dkim: Option<Arc<DkimSigner>>,
    pub claimed: Claimed,
    pub recipient: Recipient,
    pub link_token: Option<String>,
    pub issue: Option<Arc<IssueContent>>,
    pub welcome: Option<Welcome>,
}

/// How many messages are built at once: two per core. With one per core, a core stood idle
/// each time a built message was handed back and the next job handed over (a blocking thread
/// woken, the sending task woken): a fifth of the CPU was idle during a signed send, the
/// signatures waiting. With two, the second job runs meanwhile: 7 to 10 % more signed messages
/// a second (bench/README.md). More than two per core only take turns on the cores.
pub fn builders() -> Arc<Semaphore> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Arc::new(Semaphore::new(cores.saturating_mul(2)))
}

impl Job {
    /// Builds and signs the message on one of the runtime's blocking threads, so that the
    /// messages in flight are signed on every core at once, as many at a time as `builders`
    /// allows. Building runs library code on stored data: a panic there costs this one
    /// delivery, not the worker.
    pub async fn run(self, builders: &Semaphore) -> Result<Outgoing, Outcome> {
        let Ok(_turn) = builders.acquire().await else {
            return Err(Outcome::Released);
        };
        let built = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build()))
        })
        .await;
        match built {
            Ok(Ok(result)) => result,
            // The runtime is shutting down: nothing was sent, the delivery goes back.
            Err(e) if e.is_cancelled() => Err(Outcome::Released),
            Ok(Err(_)) | Err(_) => Err(Outcome::Failed {
                error: "building the message failed (a bug: see the log)".into(),
            }),
        }
    }

    fn build(&self) -> Result<Outgoing, Outcome> {
        let content = Content {
            link_token: self.link_token.as_deref(),
            issue: self.issue.as_deref(),
            welcome: self.welcome.as_ref(),
        };
        build(
            &self.settings,
            self.dkim.as_deref(),
            &self.claimed,
            &self.recipient,
            content,
        )
    }
}

/// The message for a claimed delivery, or the outcome when there is nothing to send.
pub fn build(
    settings: &Settings,
    dkim: Option<&DkimSigner>,
    claimed: &Claimed,
    recipient: &Recipient,
    content: Content<'_>,
) -> Result<Outgoing, Outcome> {
    let to = messages::Addressee {
        delivery_id: claimed.id,
        message_id: claimed.message_id.as_deref().unwrap_or_default(),
        subscriber_id: recipient.id,
        email: &recipient.email,
        name: recipient.name.as_deref(),
    };
    let kind = claimed.kind.as_str();
    if kind == Kind::Confirmation.as_str() {
        let Some(token) = content.link_token else {
            let reason = "confirmation link used, superseded or expired".into();
            return Err(Outcome::Skipped { reason });
        };
        return messages::confirmation(settings, &to, token, dkim).map_err(unbuilt);
    }
    // Asked for by the reader from the preferences page: one who left may still want their
    // data, or it erased. Not to an address that bounced or complained since it was asked for.
    if kind == Kind::DataLink.as_str() {
        if !data_links::may_mail(&recipient.status) {
            return Err(Outcome::Skipped {
                reason: format!("subscriber is {}", recipient.status),
            });
        }
        let Some(token) = content.link_token else {
            let reason = "data link used or expired".into();
            return Err(Outcome::Skipped { reason });
        };
        return messages::data_link(settings, &to, token, dkim).map_err(unbuilt);
    }
    // Everything else goes to confirmed readers only: one who left after it was queued
    // gets nothing more.
    if recipient.status != SubscriberStatus::Confirmed.as_str() {
        return Err(Outcome::Skipped {
            reason: format!("subscriber is {}", recipient.status),
        });
    }
    let built = match kind {
        "issue" => {
            let Some(issue) = content.issue else {
                return Err(Outcome::Failed {
                    error: "the issue is no longer on file".into(),
                });
            };
            messages::newsletter(settings, &to, issue, dkim)
        }
        "welcome" => match content.welcome {
            Some(w) if w.enabled => messages::welcome(settings, &to, w, dkim),
            _ => {
                let reason = "the welcome email was turned off".into();
                return Err(Outcome::Skipped { reason });
            }
        },
        "already_subscribed" => messages::already_subscribed(settings, &to, dkim),
        "repermission" => return repermission(settings, dkim, claimed, &to),
        other => {
            return Err(Outcome::Failed {
                error: format!("no sender for deliveries of kind {other:?}"),
            });
        }
    };
    built.map_err(unbuilt)
}

/// "Still want it?" of a re-permission campaign, unless its deadline has passed (the reader is
/// about to be unsubscribed, or was: asking now would be a false promise).
fn repermission(
    settings: &Settings,
    dkim: Option<&DkimSigner>,
    claimed: &Claimed,
    to: &messages::Addressee,
) -> Result<Outgoing, Outcome> {
    let Some((campaign_id, deadline)) = claimed
        .payload
        .as_deref()
        .and_then(repermission::parse_payload)
    else {
        return Err(Outcome::Failed {
            error: "the re-permission message names no campaign".into(),
        });
    };
    if deadline <= crate::foundation::db::now() {
        let reason = "the re-permission deadline has passed".into();
        return Err(Outcome::Skipped { reason });
    }
    messages::repermission(settings, to, campaign_id, deadline, dkim).map_err(unbuilt)
}

/// A message that could not be written: that delivery fails, for good.
fn unbuilt(e: anyhow::Error) -> Outcome {
    Outcome::Failed {
        error: format!("could not build the message: {e}"),
    }
}
