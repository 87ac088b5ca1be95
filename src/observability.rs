//! What an operator watches: `/metrics` in Prometheus' text format, a request id on every
//! request's log lines (and in its `X-Request-Id` header), `/ready`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use futures_util::future::LocalBoxFuture;
use tracing::Instrument;

/// Upper bounds of the HTTP latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The counters of one process. Gauges (subscribers, deliveries, queue depth) are read from the
/// database at each scrape instead, so that every process reports the same truth.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    smtp_replies: Mutex<BTreeMap<&'static str, u64>>,
    sent: AtomicU64,
}

impl Metrics {
    fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.to_string(), status)).or_insert(0) += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_string()).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// One SMTP exchange ended: `code` is the reply (None: the connection failed).
    pub fn observe_smtp(&self, code: Option<u16>) {
        let class = match code {
            Some(200..=299) => "2xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
            None => "network",
        };
        if let Ok(mut m) = self.smtp_replies.lock() {
            *m.entry(class).or_insert(0) += 1;
        }
        if class == "2xx" {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text format, this process's counters and the database's gauges.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP iria_subscribers Subscribers by status.\n# TYPE iria_subscribers gauge"
        );
        for (status, n) in &gauges.subscribers {
            let _ = writeln!(out, "iria_subscribers{{status=\"{}\"}} {n}", escape(status));
        }
        let _ = writeln!(out, "# HELP iria_deliveries Deliveries in the ledger by status.\n# TYPE iria_deliveries gauge");
        for (status, n) in &gauges.deliveries {
            let _ = writeln!(out, "iria_deliveries{{status=\"{}\"}} {n}", escape(status));
        }
        let _ = writeln!(
            out,
            "# HELP iria_queue_depth Deliveries queued and due now.\n# TYPE iria_queue_depth gauge\niria_queue_depth {}",
            gauges.queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP iria_messages_sent_total Messages accepted by the SMTP server (or written to the outbox) by this process.\n# TYPE iria_messages_sent_total counter\niria_messages_sent_total {}",
            self.sent.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP iria_smtp_replies_total SMTP exchanges by reply class.\n# TYPE iria_smtp_replies_total counter");
        if let Ok(m) = self.smtp_replies.lock() {
            for (class, n) in m.iter() {
                let _ = writeln!(out, "iria_smtp_replies_total{{class=\"{class}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP iria_http_requests_total HTTP requests by route and status.\n# TYPE iria_http_requests_total counter");
        if let Ok(r) = self.requests.lock() {
            for ((route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "iria_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP iria_http_request_duration_seconds HTTP latency by route.\n# TYPE iria_http_request_duration_seconds histogram"
        );
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                let route = escape(route);
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "iria_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(
                    out,
                    "iria_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "iria_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "iria_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What the database says at a scrape.
#[derive(Default)]
pub struct Gauges {
    pub subscribers: Vec<(String, i64)>,
    pub deliveries: Vec<(String, i64)>,
    pub queue_depth: i64,
}

/// Reads the gauges.
pub fn gauges(conn: &mut crate::db::DbConnection) -> diesel::QueryResult<Gauges> {
    use crate::db::schema::{deliveries, subscribers};
    use diesel::prelude::*;
    let subscribers = subscribers::table
        .group_by(subscribers::status)
        .select((subscribers::status, diesel::dsl::count_star()))
        .load(conn)?;
    let deliveries = crate::delivery::counts_by_status(conn)?;
    let queue_depth = deliveries::table
        .filter(deliveries::status.eq("queued"))
        .filter(deliveries::next_attempt_at.le(crate::db::now()))
        .count()
        .get_result(conn)?;
    Ok(Gauges {
        subscribers,
        deliveries,
        queue_depth,
    })
}

/// Gives every request an id (the caller's `X-Request-Id` when it is sane, else a new one),
/// puts it on every log line written while the request is handled and in the response, logs the
/// request, and counts it in the metrics under its route pattern.
pub struct RequestTelemetry {
    pub metrics: std::sync::Arc<Metrics>,
}

impl<S, B> Transform<S, ServiceRequest> for RequestTelemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestTelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestTelemetryService {
            service,
            metrics: self.metrics.clone(),
        }))
    }
}

pub struct RequestTelemetryService<S> {
    service: S,
    metrics: std::sync::Arc<Metrics>,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl<S, B> Service<ServiceRequest> for RequestTelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let request_id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .map(str::to_string)
            .unwrap_or_else(|| {
                use rand::Rng;
                format!("{:016x}", rand::thread_rng().gen::<u64>())
            });
        // The route's pattern, not the path: tokens in paths must not become label values.
        let route = req
            .match_pattern()
            .unwrap_or_else(|| "(unmatched)".to_string());
        let method = req.method().to_string();
        let span =
            tracing::info_span!("request", request_id = %request_id, %method, route = %route);
        let future = self.service.call(req);
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let response = future.await;
                let seconds = started.elapsed().as_secs_f64();
                let status = match &response {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => e.as_response_error().status_code().as_u16(),
                };
                metrics.observe_request(&route, status, seconds);
                let micros = (seconds * 1e6) as u64;
                if status >= 500 {
                    tracing::warn!(status, micros, "request");
                } else {
                    tracing::info!(status, micros, "request");
                }
                response.map(|mut r| {
                    if let Ok(v) = HeaderValue::from_str(&request_id) {
                        r.headers_mut().insert(REQUEST_ID.clone(), v);
                    }
                    r
                })
            }
            .instrument(span),
        )
    }
}
