//! What every handler can reach: the application state. This module imports no handler, so
//! every handler can import it without tying itself to the others.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
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
    /// Wakes this process's delivery worker when a message was queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// For the console's test copies, which go out at once, outside the ledger.
    pub mailer: Mailer,
    /// The public digest preview, built at most once a minute whoever asks.
    pub preview: PreviewCache,
    /// The dashboard's figures, kept a minute when counting them means reading many rows.
    pub figures: FiguresCache,
    /// The digest page's count of readers by their choice of topics, kept likewise.
    pub audiences: FiguresCache,
    /// Issues' delivery counts, kept a while when counting them was slow.
    pub progress: Arc<crate::http::progress::ProgressCache>,
    /// Tracked links and opens: the token checker, the links' addresses, the click recorder.
    pub tracking: Arc<crate::processes::clicks::Tracking>,
    /// Sign-ups per client IP: places of busy addresses taken ahead (see `stores::limits`),
    /// shared by the server's workers.
    pub signup_credits: Arc<crate::stores::limits::Credits>,
}

/// How long a built digest preview is served before it is built again.
pub const PREVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The last digest preview built (its HTML, or `None` when there was no digest to preview) and
/// when. The lock is held while one request builds it, so that a crowd of requests builds it once.
#[derive(Default)]
pub struct PreviewCache(pub tokio::sync::Mutex<Option<(std::time::Instant, Option<String>)>>);

/// Figures a page counted (which ones is the page's business, hence `Any`) and when: a page
/// that counts a large table shows them again for a while rather than counting on every view.
#[derive(Default)]
pub struct FiguresCache(
    pub std::sync::Mutex<Option<(std::time::Instant, Arc<dyn std::any::Any + Send + Sync>)>>,
);

impl AppState {
    /// The client's IP: the connection's peer, or, behind the proxies `IRIA_TRUSTED_PROXIES`
    /// names, the first `X-Forwarded-For` address from the right that is not one of them (see
    /// [`crate::foundation::config::TrustedProxies::client_ip`]).
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let proxies = &self.settings.trusted_proxies;
        if proxies.is_none() {
            return peer;
        }
        // Read hop by hop: a hop that is not ASCII is unreadable and stops the walk where it
        // stands, but only there. (Read as one value, a client's own non-ASCII hop would make the
        // whole header unreadable, the proxy's appended hop with it, and the proxy's address
        // would be taken for the client's.)
        let forwarded: Vec<String> = req
            .headers()
            .get_all("x-forwarded-for")
            .map(|v| {
                v.as_bytes()
                    .split(|b| *b == b',')
                    .map(|hop| {
                        std::str::from_utf8(hop)
                            .ok()
                            .filter(|h| h.is_ascii())
                            .unwrap_or("?")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        let forwarded: Vec<&str> = forwarded.iter().map(String::as_str).collect();
        proxies.client_ip(peer, &forwarded)
    }
}
