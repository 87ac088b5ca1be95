//! Outgoing mail: the transport (an SMTP server through a connection pool, or `.eml` files in a
//! folder) and the shape of an SMTP failure as the delivery ledger needs it.

use std::time::Duration;

use anyhow::Context;
use std::sync::{Arc, Mutex};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::foundation::config::{Settings, SmtpUrl};

mod session;

/// Where messages go, chosen by `IRIA_SMTP_URL`.
#[derive(Clone)]
pub enum Mailer {
    Smtp(Arc<SmtpPool>),
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

    fn from_smtp(e: &lettre::transport::smtp::Error) -> Self {
        SendError {
            permanent: e.is_permanent(),
            code: e.status().map(u16::from),
            detail: one_line(&e.to_string()),
        }
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
                let tls = TlsParameters::new(host.clone())
                    .with_context(|| format!("setting up TLS for {host}"))?;
                // EHLO with this host's name.
                let hello = ClientId::default();
                Ok(Mailer::Smtp(Arc::new(SmtpPool {
                    host: host.clone(),
                    port: *port,
                    implicit_tls: *implicit_tls,
                    tls,
                    credentials: credentials
                        .as_ref()
                        .map(|(u, p)| Credentials::new(u.clone(), p.clone())),
                    timeout: settings.delivery.smtp_timeout,
                    hello,
                    idle: Mutex::new(Vec::new()),
                    permits: Semaphore::new(settings.delivery.concurrency.max(1)),
                })))
            }
        }
    }

    /// Sends one message: `bytes` as they are (signed already), to the envelope's recipients.
    pub async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(pool) => pool.send(envelope, bytes).await,
            Mailer::File(transport) => transport
                .send_raw(envelope, bytes)
                .await
                .map(|_| ())
                .map_err(|e| SendError {
                    permanent: false,
                    code: None,
                    detail: one_line(&e.to_string()),
                }),
        }
    }
}

/// SMTP connections kept open between messages, at most `concurrency` at once.
///
/// lettre's own pooled transport writes a message's final `CRLF.CRLF` as a separate small packet
/// on a socket with Nagle's algorithm on; the kernel then holds it until the server's delayed
/// ACK, about 40 ms, which caps each connection at some 25 messages a second. The connections
/// here are opened by us with `TCP_NODELAY` and handed to lettre's SMTP client.
pub struct SmtpPool {
    host: String,
    port: u16,
    implicit_tls: bool,
    tls: TlsParameters,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    /// Open connections not in use, each with whether its server offers PIPELINING.
    idle: Mutex<Vec<(AsyncSmtpConnection, bool)>>,
    permits: Semaphore,
}

impl SmtpPool {
    async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendError> {
        let _permit = self.permits.acquire().await.map_err(|_| SendError {
            permanent: false,
            code: None,
            detail: "the SMTP pool is closed".into(),
        })?;
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let (mut conn, pipelining) = match reused {
            Some((conn, pipelining)) if !conn.has_broken() => (conn, pipelining),
            _ => self.connect().await?,
        };
        let sent = tokio::time::timeout(
            self.timeout * 4,
            session::send(&mut conn, envelope, bytes, pipelining),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push((conn, pipelining));
                }
                Ok(())
            }
            // A failed transaction may leave replies unread: the connection is dropped.
            Ok(Err(session::Failure::Smtp(e))) => Err(SendError::from_smtp(&e)),
            Ok(Err(session::Failure::Unsendable(why))) => Err(SendError {
                permanent: true,
                code: None,
                detail: why.to_string(),
            }),
            Err(_) => Err(SendError {
                permanent: false,
                code: None,
                detail: "the SMTP server did not answer in time".into(),
            }),
        }
    }

    /// Opens a connection: TCP with `TCP_NODELAY`, then TLS (implicit, or STARTTLS when the
    /// server offers it), then AUTH when credentials are configured.
    async fn connect(&self) -> Result<(AsyncSmtpConnection, bool), SendError> {
        use lettre::transport::smtp::authentication::Mechanism;
        let local = |detail: String| SendError {
            permanent: false,
            code: None,
            detail,
        };
        let smtp = |e: lettre::transport::smtp::Error| SendError::from_smtp(&e);
        let tcp = tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            local(format!(
                "connecting to {}:{} timed out",
                self.host, self.port
            ))
        })?
        .map_err(|e| local(format!("connecting to {}:{}: {e}", self.host, self.port)))?;
        // Without it, each message's last packet waits for the server's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let mut conn = if self.implicit_tls {
            let connector = native_tls::TlsConnector::new()
                .map(tokio_native_tls::TlsConnector::from)
                .map_err(|e| local(format!("setting up TLS: {e}")))?;
            let tls = connector
                .connect(&self.host, tcp)
                .await
                .map_err(|e| local(format!("TLS with {}: {e}", self.host)))?;
            AsyncSmtpConnection::connect_with_transport(Box::new(TlsStream(tls)), &self.hello)
                .await
                .map_err(smtp)?
        } else {
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(smtp)?;
            if conn.can_starttls() {
                conn.starttls(self.tls.clone(), &self.hello)
                    .await
                    .map_err(smtp)?;
            }
            conn
        };
        // lettre keeps only the extensions it uses from its EHLO; ask again to learn whether
        // the server takes pipelined commands (before AUTH, which a new EHLO might reset).
        let reply = conn
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map_err(smtp)?;
        let pipelining = session::offers_pipelining(reply.message());
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(smtp)?;
        }
        Ok((conn, pipelining))
    }
}

/// A TLS stream (implicit TLS, `smtps://`) as lettre's SMTP client takes it.
#[derive(Debug)]
struct TlsStream(tokio_native_tls::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().get_ref().get_ref().peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn one_line(s: &str) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(500).collect()
}
