//! Clicks and opens, off the request path: `GET /r/{token}` looks its address up (in memory
//! after the first time: an issue's links never change), answers at once, and hands the click
//! to this process's recorder, which writes what came in once a second (or every
//! [`FLUSH_AT`] clicks) in one transaction (see [`crate::stores::engagement::record`]). Stopping
//! (SIGTERM) writes what is left; a SIGKILL loses at most the last second's clicks.
//!
//! Machines are told apart here, before anything is written (the rules, and what each cannot
//! catch, are in `docs/engagement.md`):
//! - a user agent of a known link scanner or bot;
//! - [`BURST_LINKS`] or more different links of one copy (`personal`), or of one issue from one
//!   client address (`anonymous`; the address is held in memory for two seconds, never
//!   written), within one second: all of them, including those already written, are a
//!   machine's;
//! - and in the store: the hidden link, a copy whose hidden link was clicked, a click within
//!   seconds of the copy's delivery.
//!
//! `HEAD` redirects and counts nothing (its handler does not call this).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDateTime;
use tokio::sync::{mpsc, oneshot, watch};

use crate::foundation::config::{ClickTracking, Settings};
use crate::foundation::db::{self, Pool};
use crate::foundation::tracking::{Tracked, TRAP_POSITION};
use crate::stores::engagement::{self, Click};

/// Clicks written at most this long after they happen.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A batch this large is written at once.
pub const FLUSH_AT: usize = 5_000;
/// This many different links of one copy (or of one issue from one address) within
/// [`BURST_WINDOW_MS`] are a machine's.
pub const BURST_LINKS: usize = 3;
pub const BURST_WINDOW_MS: i64 = 1_000;
/// Clicks held when the database cannot take them; beyond this the oldest go (and are logged).
const MAX_PENDING: usize = 200_000;
/// Addresses kept in memory for the redirect.
const CACHE_ENTRIES: usize = 100_000;

/// Parts of user agents that link scanners, previewers and bots send. A person's browser sends
/// none of them.
const MACHINE_AGENTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "scanner",
    "preview",
    "headless",
    "python",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "axios",
    "node-fetch",
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "trendmicro",
    "forcepoint",
    "messagelabs",
    "symantec",
    "sophos",
    "fortinet",
    "fortiguard",
    "ironport",
    "cisco",
    "zscaler",
    "checkpoint",
    "virustotal",
    "microsoft office",
    "ms-office",
    "outlook-ios",
    "googleimageproxy",
    "yahoomailproxy",
];

/// Whether a user agent is a known machine's. No user agent at all is one too.
pub fn is_machine_agent(user_agent: Option<&str>) -> bool {
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    let lower = agent.to_ascii_lowercase();
    MACHINE_AGENTS.iter().any(|m| lower.contains(m))
}

/// One request on a tracked link or open image.
#[derive(Clone, Debug)]
pub struct Hit {
    pub tracked: Tracked,
    pub at: NaiveDateTime,
    /// Its user agent is a machine's.
    pub machine_agent: bool,
    /// The client's address key (IPv6 by /64), for the burst rule in `anonymous` mode only; held
    /// in memory, never written.
    pub client: String,
}

enum Message {
    Hit(Hit),
    Flush(oneshot::Sender<()>),
}

/// What `/r/` and `/o/` need: the token checker, the links seen so far, and the way to the
/// recorder.
pub struct Tracking {
    pub signer: crate::foundation::tracking::Signer,
    pub mode: ClickTracking,
    cache: Mutex<HashMap<(i64, i32), Arc<str>>>,
    sender: mpsc::Sender<Message>,
    receiver: Mutex<Option<mpsc::Receiver<Message>>>,
}

impl Tracking {
    pub fn new(settings: &Settings) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_PENDING);
        Self {
            signer: crate::foundation::tracking::Signer::new(settings.secret()),
            mode: settings.click_tracking,
            cache: Mutex::new(HashMap::new()),
            sender,
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// The address a tracked link leads to, from memory or the database; `None` when the issue
    /// has no link there.
    pub async fn url(
        &self,
        pool: &Pool,
        issue_id: i64,
        position: i32,
    ) -> Result<Option<Arc<str>>, db::DbError> {
        if let Some(url) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&(issue_id, position)).cloned())
        {
            return Ok(Some(url));
        }
        let found = db::run(pool, move |conn| {
            Ok(engagement::url_at(conn, issue_id, position)?)
        })
        .await?;
        let Some(url) = found else {
            return Ok(None);
        };
        let url: Arc<str> = Arc::from(url);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert((issue_id, position), url.clone());
        }
        Ok(Some(url))
    }

    /// Hands a click to the recorder; with click tracking off nothing is counted. Never waits:
    /// when the recorder is that far behind, the click is dropped (and logged).
    pub fn record(&self, hit: Hit) {
        if self.mode == ClickTracking::Off {
            return;
        }
        if self.sender.try_send(Message::Hit(hit)).is_err() {
            tracing::warn!("click recorder full or stopped; a click was not counted");
        }
    }

    /// Writes every click handed over so far (for tests and for stopping).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Starts the recorder (once); it writes what is left and ends when `stop` turns true.
    pub fn spawn_recorder(
        &self,
        pool: Pool,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let receiver = self.receiver.lock().ok()?.take()?;
        let recorder = Recorder {
            pool,
            mode: self.mode,
            pending: Vec::new(),
            recent: HashMap::new(),
            failing: false,
        };
        Some(tokio::spawn(recorder.run(receiver, stop)))
    }
}

/// Where a click of a burst window stands.
#[derive(Clone, Copy, Debug)]
enum Seen {
    /// Still in `pending`, at this index.
    Pending(usize),
    /// Written as a person's (so a burst must move it).
    WrittenAsReader,
    /// Written as a machine's, or moved already.
    Settled,
}

/// A burst window's key: the issue, the copy (`personal`) or the client's address key
/// (`anonymous`).
type WindowKey = (i64, Option<i64>, String);

struct Recorder {
    pool: Pool,
    mode: ClickTracking,
    pending: Vec<Click>,
    /// The burst windows: per copy (or issue and address), the recent clicks.
    recent: HashMap<WindowKey, Vec<(i32, NaiveDateTime, Seen)>>,
    /// The last write failed (the database is down): wait for the tick.
    failing: bool,
}

impl Recorder {
    async fn run(mut self, mut receiver: mpsc::Receiver<Message>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(Message::Hit(hit)) => {
                        self.take(hit);
                        // While the database fails, only the tick tries again.
                        if self.pending.len() >= FLUSH_AT && !self.failing {
                            self.write().await;
                        }
                    }
                    Some(Message::Flush(done)) => {
                        let mut waiting = vec![done];
                        while let Ok(message) = receiver.try_recv() {
                            match message {
                                Message::Hit(hit) => self.take(hit),
                                Message::Flush(other) => waiting.push(other),
                            }
                        }
                        self.write().await;
                        for done in waiting {
                            let _ = done.send(());
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.write().await,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        receiver.close();
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Hit(hit) => self.take(hit),
                Message::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
        self.write().await;
        if !self.pending.is_empty() {
            tracing::warn!(clicks = self.pending.len(), "clicks not written at stop");
        }
    }

    /// Adds a click to the batch, applying the burst rule.
    fn take(&mut self, hit: Hit) {
        let t = hit.tracked;
        let delivery_id = match self.mode {
            ClickTracking::Personal => t.delivery_id,
            _ => None,
        };
        let index = self.pending.len();
        self.pending.push(Click {
            issue_id: t.issue_id,
            position: t.position,
            delivery_id,
            at: hit.at,
            machine: hit.machine_agent,
            reclassify: false,
        });
        if t.position <= TRAP_POSITION {
            return;
        }
        let client = if delivery_id.is_some() {
            String::new()
        } else {
            hit.client
        };
        let window = self
            .recent
            .entry((t.issue_id, delivery_id, client))
            .or_default();
        window.retain(|(_, at, _)| (hit.at - *at).num_milliseconds() < BURST_WINDOW_MS);
        window.push((t.position, hit.at, Seen::Pending(index)));
        let mut positions: Vec<i32> = window.iter().map(|(p, _, _)| *p).collect();
        positions.sort_unstable();
        positions.dedup();
        if positions.len() < BURST_LINKS {
            return;
        }
        let mut corrections = Vec::new();
        for (position, at, seen) in window.iter_mut() {
            match *seen {
                Seen::Pending(i) => {
                    if let Some(click) = self.pending.get_mut(i) {
                        click.machine = true;
                    }
                }
                Seen::WrittenAsReader => corrections.push(Click {
                    issue_id: t.issue_id,
                    position: *position,
                    delivery_id,
                    at: *at,
                    machine: true,
                    reclassify: true,
                }),
                Seen::Settled => {}
            }
            if !matches!(seen, Seen::Pending(_)) {
                *seen = Seen::Settled;
            }
        }
        self.pending.extend(corrections);
    }

    /// Writes the batch; on failure keeps it for the next tick (at most [`MAX_PENDING`]).
    async fn write(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let written = {
            let batch = batch.clone();
            db::run(&self.pool, move |conn| {
                Ok(engagement::record(conn, &batch)?)
            })
            .await
        };
        self.failing = written.is_err();
        match written {
            Ok(_) => {
                // What was pending is written now: as a person's, or settled.
                for window in self.recent.values_mut() {
                    for (_, _, seen) in window.iter_mut() {
                        if let Seen::Pending(i) = *seen {
                            *seen = match batch.get(i) {
                                Some(click) if !click.machine => Seen::WrittenAsReader,
                                _ => Seen::Settled,
                            };
                        }
                    }
                }
                let now = db::now();
                self.recent.retain(|_, window| {
                    window
                        .retain(|(_, at, _)| (now - *at).num_milliseconds() < 2 * BURST_WINDOW_MS);
                    !window.is_empty()
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, clicks = batch.len(), "writing clicks failed; trying again");
                let mut batch = batch;
                if batch.len() > MAX_PENDING {
                    let dropped = batch.len() - MAX_PENDING;
                    batch.drain(..dropped);
                    // The windows' indexes pointed into what was dropped: start them afresh.
                    self.recent.clear();
                    tracing::warn!(dropped, "clicks dropped while the database was unavailable");
                }
                // The windows' indexes still point into the same batch, which stays first.
                batch.append(&mut self.pending);
                self.pending = batch;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_and_libraries_are_machines_browsers_are_not() {
        for machine in [
            None,
            Some(""),
            Some("curl/8.5.0"),
            Some("Mozilla/5.0 (compatible; Googlebot/2.1)"),
            Some("Barracuda Sentinel (EE)"),
            Some("python-requests/2.31.0"),
        ] {
            assert!(is_machine_agent(machine), "{machine:?}");
        }
        for person in [
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        ] {
            assert!(!is_machine_agent(Some(person)), "{person}");
        }
    }
}
