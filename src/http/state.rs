//! What every handler can reach: the application state. This module imports no handler, so
//! every handler can import it without tying itself to the others.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use governor::DefaultKeyedRateLimiter;
use tokio::sync::Notify;

use crate::foundation::config::Settings;
use crate::foundation::db::Pool;
use crate::foundation::metrics::Metrics;
use crate::processes::mail::Mailer;

/// The largest request body any route accepts; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: Pool,
    /// Sign-ups per client IP; kept in memory, so with several `serve` processes each counts its
    /// own (the per-address limit is counted in the database and holds across processes).
    pub signup_ip_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Wakes this process's delivery worker when a message was queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// For the console's test copies, which go out at once, outside the ledger.
    pub mailer: Mailer,
    /// The public digest preview, built at most once a minute whoever asks.
    pub preview: PreviewCache,
}

/// How long a built digest preview is served before it is built again.
pub const PREVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The last digest preview built (its HTML, or `None` when there was no digest to preview) and
/// when. The lock is held while one request builds it, so that a crowd of requests builds it once.
#[derive(Default)]
pub struct PreviewCache(pub tokio::sync::Mutex<Option<(std::time::Instant, Option<String>)>>);

impl AppState {
    /// The client's IP: the peer, or the first `X-Forwarded-For` hop when configured to trust a
    /// proxy in front.
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if !self.settings.trust_forwarded_for {
            return peer;
        }
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(peer)
    }
}
