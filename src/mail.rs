//! Outgoing mail: the transport (an SMTP server through a connection pool, or `.eml` files in a
//! folder) and the shape of an SMTP failure as the delivery ledger needs it.

use std::time::Duration;

use anyhow::Context;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Settings, SmtpUrl};

/// Where messages go, chosen by `IRIA_SMTP_URL`.
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// How a send failed: worth trying again later (4xx, timeouts, dropped or refused connections)
/// or final (5xx).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub permanent: bool,
    /// The SMTP reply code, when the server gave one.
    pub code: Option<u16>,
    /// The server's words or the local failure, for the ledger's `last_error`.
    pub detail: String,
}

impl SendError {
    /// A hard bounce: the mailbox does not exist (5.1.x), so the address must never be mailed
    /// again.
    pub fn is_hard_bounce(&self) -> bool {
        self.permanent
            && self
                .detail
                .split_whitespace()
                .any(|w| w.starts_with("5.1."))
    }
}

impl Mailer {
    /// Builds the transport. Nothing is connected yet: an SMTP server that is down shows up as
    /// transient send failures, which the delivery worker retries.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        match &settings.smtp_url {
            SmtpUrl::File(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the outbox folder {}", dir.display()))?;
                Ok(Mailer::File(AsyncFileTransport::new(dir)))
            }
            SmtpUrl::Smtp {
                host,
                port,
                implicit_tls,
                credentials,
            } => {
                let tls_parameters = TlsParameters::new(host.clone())
                    .with_context(|| format!("setting up TLS for {host}"))?;
                let tls = if *implicit_tls {
                    Tls::Wrapper(tls_parameters)
                } else {
                    Tls::Opportunistic(tls_parameters)
                };
                let connections = settings.delivery.concurrency.max(1) as u32;
                let mut builder =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
                        .port(*port)
                        .tls(tls)
                        .timeout(Some(settings.delivery.smtp_timeout))
                        .pool_config(
                            PoolConfig::new()
                                .max_size(connections)
                                .min_idle(0)
                                .idle_timeout(Duration::from_secs(30)),
                        );
                if let Some((user, pass)) = credentials {
                    builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
                }
                Ok(Mailer::Smtp(builder.build()))
            }
        }
    }

    /// Sends one message.
    pub async fn send(&self, message: &Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(transport) => {
                transport
                    .send(message.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let code = e.status().map(u16::from);
                        SendError {
                            permanent: e.is_permanent(),
                            code,
                            detail: one_line(&e.to_string()),
                        }
                    })
            }
            Mailer::File(transport) => {
                transport
                    .send(message.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| SendError {
                        permanent: false,
                        code: None,
                        detail: one_line(&e.to_string()),
                    })
            }
        }
    }
}

fn one_line(s: &str) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(500).collect()
}
