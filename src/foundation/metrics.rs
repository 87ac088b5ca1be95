//! The metrics registry of one process: request and SMTP counters and the HTTP latency
//! histogram, rendered in Prometheus' text format for `/metrics` (served by
//! `http::public::ops`, counted by `http::middleware` and the delivery worker).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
    /// Counts one answered request under its route pattern.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
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
