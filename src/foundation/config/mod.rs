//! Configuration: built-in defaults, overridden by `iria-news.toml` (or the file named by
//! `IRIA_CONFIG`), overridden by `IRIA_*` environment variables.
//!
//! Every setting is parsed into its type here, once; a bad value is a one-line error that names
//! the setting, so the rest of the program never re-checks configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

mod parse;
pub mod proxies;

use parse::{
    bad, parse_allowed_origins, parse_base_url, parse_bool, parse_bounce_address, parse_feed_url,
    parse_from, parse_listen, parse_secret_key, parse_topics, parse_unsubscribe_mailto, Values,
};
pub use parse::{env_name, ConfigError};
pub use proxies::TrustedProxies;

/// Every setting the program reads: (name without the `IRIA_` prefix, lower case, as written in
/// the TOML file; the built-in default, if any; what it means). The configuration reference in
/// the README is written from this table.
pub const SETTINGS: &[(&str, Option<&str>, &str)] = &[
    ("database_url", Some("sqlite://iria-news.db"), "sqlite://PATH or postgres://..."),
    ("smtp_url", Some("file://outbox"), "smtp://[user:pass@]host:port, smtps://..., or file://DIR"),
    ("listen", Some("127.0.0.1:8080"), "address to bind"),
    ("base_url", Some("http://127.0.0.1:8080"), "public URL used in links inside emails"),
    ("from", Some("IRIA News <news@localhost>"), "From address of every message"),
    ("secret_key", None, "key for signed tokens and cookies (at least 32 bytes)"),
    ("digest_schedule", Some("0 0 8 * * Mon"), "when the weekly digest runs (cron)"),
    ("timezone", Some("UTC"), "time zone of the digest schedule"),
    ("feed_url", None, "the site's RSS/Atom feed, polled for new articles"),
    ("feed_poll_minutes", Some("15"), "how often the feed is polled"),
    ("signup_per_ip_per_hour", Some("30"), "sign-ups accepted from one IP address per hour"),
    ("signup_per_address_per_hour", Some("3"), "sign-ups for one address per hour"),
    ("site_name", Some("IRIA News"), "name of the newsletter, shown on pages and in emails"),
    (
        "site_intro",
        Some("Analysis of security, defence, terrorism and foreign affairs from IRIA - International Relations Insights & Analysis, in your inbox every week."),
        "introduction shown on the sign-up page",
    ),
    (
        "topics",
        Some("Middle East,US,Europe,Asia,Africa,Defense,Terrorism,Foreign Affairs,Analysis"),
        "comma-separated topics a subscriber can choose",
    ),
    ("confirmation_ttl_hours", Some("48"), "hours a confirmation link stays valid"),
    ("trusted_proxies", None, "proxies in front: a number of hops (1) or networks (10.0.0.0/8,127.0.0.1); the client IP is the first address from the right of X-Forwarded-For that is not one"),
    ("trust_forwarded_for", Some("false"), "deprecated: true means trusted_proxies = 1"),
    ("db_pool_size", Some("16"), "database connections per process"),
    ("delivery_concurrency", Some("8"), "messages in flight at once per process (SMTP connections)"),
    ("delivery_batch_size", Some("64"), "deliveries a worker claims at a time"),
    ("delivery_max_attempts", Some("8"), "attempts before a delivery is given up as failed"),
    ("delivery_retry_base_ms", Some("30000"), "first retry delay; doubles with each attempt"),
    ("delivery_lease_seconds", Some("300"), "how long a claimed delivery is reserved for its worker"),
    ("delivery_poll_ms", Some("1000"), "how often an idle worker looks for due deliveries"),
    ("smtp_timeout_seconds", Some("30"), "SMTP command timeout"),
    ("delivery_rate_per_second", Some("0"), "messages per second per process at most; 0: no ceiling"),
    ("delivery_domain_rate_per_second", Some("0"), "messages per second to one recipient domain; 0: no ceiling"),
    ("bounce_address", None, "envelope sender (VERP), e.g. bounces+{token}@example.org"),
    ("log_format", Some("text"), "text or json"),
    ("unsubscribe_mailto", None, "an address for mailto: unsubscribes in List-Unsubscribe"),
    ("dkim_domain", None, "DKIM: the signing domain (d=)"),
    ("dkim_selector", None, "DKIM: the selector (s=)"),
    ("dkim_key_file", None, "DKIM: the private key file (RSA or Ed25519, PEM in PKCS#1 or PKCS#8)"),
    ("dkim_ed25519_selector", None, "DKIM: the selector of a second, Ed25519 signature (RFC 8463)"),
    ("dkim_ed25519_key_file", None, "DKIM: the Ed25519 private key file of the second signature"),
    ("http_workers", Some("0"), "HTTP worker threads; 0 means one per CPU core"),
    // The site that embeds the sign-up form.
    ("allowed_origins", None, "comma-separated origins of the site that may embed the form (return_to, CORS)"),
    // Webhooks.
    ("webhook_retry_base_ms", Some("5000"), "first retry of a webhook post; doubles with each attempt, for up to 24 hours"),
    ("webhook_delivery", Some("true"), "whether this process posts webhook events (false: other processes do)"),
    // CSV imports.
    ("import_worker", Some("true"), "whether this process runs CSV import jobs (false: other processes do)"),
    ("import_lease_seconds", Some("60"), "how long a claimed import job is reserved for its process"),
    // Engagement.
    ("click_tracking", Some("anonymous"), "off, anonymous (clicks per issue and link) or personal (clicks per reader)"),
    ("open_tracking", Some("false"), "a 1x1 image per copy, counted as opens (unreliable)"),
    // Editors' accounts and API trust.
    ("require_2fa", None, "editors must enrol a second factor (default: true when base_url is https)"),
    ("metrics_listen", None, "a second address serving /metrics without a token (e.g. 127.0.0.1:9090)"),
    ("audit_retention_days", Some("400"), "days the audit log keeps its entries"),
];

/// Where the database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://iria-news.db".into());
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Url::parse(raw).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
            Ok(Self::Postgres(raw.to_string()))
        } else {
            Err(format!(
                "expected sqlite://PATH or postgres://..., got {raw:?}"
            ))
        }
    }
}

/// Where messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpUrl {
    /// Write each message as an `.eml` file into this folder.
    File(PathBuf),
    /// An SMTP server.
    Smtp {
        host: String,
        port: u16,
        /// `smtps://`: TLS from the first byte; otherwise STARTTLS when the server offers it.
        implicit_tls: bool,
        credentials: Option<(String, String)>,
    },
}

impl SmtpUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(dir) = raw.strip_prefix("file://") {
            if dir.is_empty() {
                return Err("file:// needs a folder, e.g. file://outbox".into());
            }
            return Ok(Self::File(PathBuf::from(dir)));
        }
        let url = Url::parse(raw).map_err(|e| format!("not a valid URL ({e}): {raw:?}"))?;
        let implicit_tls = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => {
                return Err(format!(
                    "unknown scheme {other:?}: use smtp://, smtps:// or file://"
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("no host in {raw:?}"))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = url.port().unwrap_or(if implicit_tls { 465 } else { 587 });
        let credentials = if url.username().is_empty() {
            None
        } else {
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((decode(url.username()), decode(url.password().unwrap_or(""))))
        };
        Ok(Self::Smtp {
            host,
            port,
            implicit_tls,
            credentials,
        })
    }
}

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The parsed configuration of one process.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub smtp_url: SmtpUrl,
    pub listen: SocketAddr,
    pub base_url: Url,
    pub from: Mailbox,
    /// `None` until [`crate::foundation::secrets::ensure_secret_key`] fills it in.
    pub secret_key: Option<Vec<u8>>,
    pub digest_schedule: String,
    pub timezone: String,
    pub feed_url: Option<Url>,
    pub feed_poll: Duration,
    /// `digest_schedule` in `timezone`, parsed.
    pub schedule: crate::foundation::schedule::Schedule,
    pub signup_per_ip_per_hour: u32,
    pub signup_per_address_per_hour: u32,
    pub site_name: String,
    pub site_intro: String,
    pub topics: Vec<String>,
    pub confirmation_ttl: Duration,
    /// The proxies in front, which say who the client is in `X-Forwarded-For`.
    pub trusted_proxies: TrustedProxies,
    pub db_pool_size: u32,
    pub delivery: DeliverySettings,
    pub log_format: LogFormat,
    pub http_workers: usize,
    pub unsubscribe_mailto: Option<String>,
    pub dkim: Option<DkimSettings>,
    /// Origins of the site that embeds the sign-up form: where a sign-up may send the reader
    /// back to (`return_to`), and which pages may read its JSON answer (CORS). Empty: neither.
    pub allowed_origins: Vec<url::Origin>,
    /// The wait before a webhook post's first retry; it doubles with each attempt (with jitter).
    pub webhook_retry_base: Duration,
    /// Whether this process posts webhook events; the events are recorded whatever this says.
    pub webhook_delivery: bool,
    /// Whether this process runs the CSV import jobs editors upload; the jobs wait in the
    /// database whatever this says.
    pub import_worker: bool,
    /// How long a claimed import job stays reserved for its process; renewed at every chunk, so
    /// a job whose process died is taken up again after at most this long.
    pub import_lease: Duration,
    /// How clicks on an issue's links are counted.
    pub click_tracking: ClickTracking,
    /// Whether each copy carries a 1×1 image whose loading is counted as an open.
    pub open_tracking: bool,
    /// Whether an editor without a second factor must enrol one before anything else.
    pub require_2fa: bool,
    /// A second address serving `/metrics` without a token (for a scraper on a private network).
    pub metrics_listen: Option<SocketAddr>,
    /// How long the audit log keeps its entries.
    pub audit_retention_days: u32,
}

/// How clicks on the links of an issue are counted (`IRIA_CLICK_TRACKING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClickTracking {
    /// Links go straight to their address; nothing is counted.
    Off,
    /// Clicks are counted per issue and link; nothing ties a click to a reader.
    Anonymous,
    /// Clicks are recorded per delivered copy, so per reader.
    Personal,
}

impl ClickTracking {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "off" | "false" => Ok(Self::Off),
            "anonymous" => Ok(Self::Anonymous),
            "personal" => Ok(Self::Personal),
            other => Err(format!(
                "expected off, anonymous or personal, got {other:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Anonymous => "anonymous",
            Self::Personal => "personal",
        }
    }
}

/// DKIM signing, when all three settings are given.
#[derive(Clone, Debug)]
pub struct DkimSettings {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
    /// A second signature with an Ed25519 key, beside the first (RFC 8463 dual signing).
    pub ed25519: Option<DkimSecondKey>,
}

/// The selector and key file of the second DKIM signature.
#[derive(Clone, Debug)]
pub struct DkimSecondKey {
    pub selector: String,
    pub key_file: PathBuf,
}

/// How the delivery workers behave.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    pub concurrency: usize,
    pub batch_size: i64,
    pub max_attempts: i32,
    pub retry_base: Duration,
    pub lease: Duration,
    pub poll: Duration,
    pub smtp_timeout: Duration,
    pub rate_per_second: u32,
    pub domain_rate_per_second: u32,
    /// The envelope sender with `{token}` where each delivery's VERP token goes.
    pub bounce_address: Option<String>,
}

impl Settings {
    /// Reads the configuration the way the binary does: the TOML file named by `IRIA_CONFIG` (which
    /// must exist) or `./iria-news.toml` (if it exists), then the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let file = match env.get("IRIA_CONFIG") {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("iria-news.toml")).filter(|p| p.exists()),
        };
        Self::from_sources(file.as_deref(), &env)
    }

    /// Builds the configuration from a TOML file (optional) and a map of environment variables;
    /// the environment wins. Tests call this directly instead of changing the process environment.
    pub fn from_sources(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<String, String> = SETTINGS
            .iter()
            .filter_map(|(k, d, _)| d.map(|d| (k.to_string(), d.to_string())))
            .collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError(format!("{}: {}", path.display(), e.message()))
            })?;
            for (key, value) in table {
                if !SETTINGS.iter().any(|(k, _, _)| *k == key) {
                    return Err(ConfigError(format!(
                        "{}: unknown setting {key:?}",
                        path.display()
                    )));
                }
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                values.insert(key, value);
            }
        }
        for (key, _, _) in SETTINGS {
            if let Some(v) = env.get(&env_name(key)) {
                values.insert(key.to_string(), v.clone());
            }
        }
        Self::from_values(&values)
    }

    fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let v = Values(values);
        // The fields are checked in the order written: of several bad settings, the first is
        // the one reported.
        Ok(Settings {
            database_url: DatabaseUrl::parse(v.required("database_url")?)
                .map_err(|e| bad("database_url", e))?,
            smtp_url: SmtpUrl::parse(v.required("smtp_url")?).map_err(|e| bad("smtp_url", e))?,
            listen: parse_listen(&v)?,
            base_url: parse_base_url(&v)?,
            from: parse_from(&v)?,
            secret_key: parse_secret_key(&v)?,
            feed_url: parse_feed_url(&v)?,
            topics: parse_topics(&v)?,
            unsubscribe_mailto: parse_unsubscribe_mailto(&v)?,
            dkim: parse_dkim(&v)?,
            log_format: parse_log_format(&v)?,
            trusted_proxies: parse_trusted_proxies(&v)?,
            digest_schedule: v.required("digest_schedule")?.to_string(),
            timezone: v.required("timezone")?.to_string(),
            feed_poll: Duration::from_secs(v.number("feed_poll_minutes", 1u64)? * 60),
            schedule: crate::foundation::schedule::Schedule::parse(
                v.required("digest_schedule")?,
                v.required("timezone")?,
            )
            .map_err(ConfigError)?,
            signup_per_ip_per_hour: v.number("signup_per_ip_per_hour", 1u32)?,
            signup_per_address_per_hour: v.number("signup_per_address_per_hour", 1u32)?,
            site_name: v.required("site_name")?.to_string(),
            site_intro: v.required("site_intro")?.to_string(),
            confirmation_ttl: {
                let hours = v.number("confirmation_ttl_hours", 1u64)?;
                Duration::from_secs(hours * 3600)
            },
            db_pool_size: v.number("db_pool_size", 1u32)?,
            delivery: parse_delivery(&v)?,
            http_workers: v.number("http_workers", 0u32)? as usize,
            allowed_origins: parse_allowed_origins(&v)?,
            webhook_retry_base: Duration::from_millis(v.number("webhook_retry_base_ms", 1u64)?),
            webhook_delivery: parse_bool(&v, "webhook_delivery")?,
            import_worker: parse_bool(&v, "import_worker")?,
            import_lease: Duration::from_secs(v.number("import_lease_seconds", 1u64)?),
            click_tracking: ClickTracking::parse(v.required("click_tracking")?)
                .map_err(|e| bad("click_tracking", e))?,
            open_tracking: parse_bool(&v, "open_tracking")?,
            require_2fa: parse_require_2fa(&v)?,
            metrics_listen: match v.get("metrics_listen") {
                None => None,
                Some(raw) => Some(raw.trim().parse().map_err(|e| {
                    bad(
                        "metrics_listen",
                        format!("expected HOST:PORT, got {raw:?} ({e})"),
                    )
                })?),
            },
            audit_retention_days: v.number("audit_retention_days", 1u32)?,
        })
    }

    /// The secret key; present once start-up has called [`crate::foundation::secrets::ensure_secret_key`].
    pub fn secret(&self) -> &[u8] {
        self.secret_key.as_deref().unwrap_or_default()
    }

    /// An absolute link under the base URL.
    pub fn link(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.base_url.as_str().trim_end_matches('/'),
            path_and_query
        )
    }
}

/// `IRIA_TRUSTED_PROXIES`, or the deprecated `IRIA_TRUST_FORWARDED_FOR=true`, which meant one
/// proxy (it took the leftmost hop, which a client can write; it now means one hop, read from
/// the right). When both are set, `IRIA_TRUSTED_PROXIES` counts.
fn parse_trusted_proxies(v: &Values) -> Result<TrustedProxies, ConfigError> {
    let legacy = parse_bool(v, "trust_forwarded_for")?;
    match v.get("trusted_proxies") {
        Some(raw) => TrustedProxies::parse(raw).map_err(|e| bad("trusted_proxies", e)),
        None if legacy => Ok(TrustedProxies::Hops(1)),
        None => Ok(TrustedProxies::None),
    }
}

/// `IRIA_REQUIRE_2FA`; when unset, true exactly when the console is served over https.
fn parse_require_2fa(v: &Values) -> Result<bool, ConfigError> {
    match v.get("require_2fa") {
        Some(_) => parse_bool(v, "require_2fa"),
        None => Ok(parse_base_url(v)?.scheme() == "https"),
    }
}

/// The three DKIM settings, all or none; the two of a second, Ed25519 signature, both or none,
/// and only with the three.
fn parse_dkim(v: &Values) -> Result<Option<DkimSettings>, ConfigError> {
    let first = match (v.get("dkim_domain"), v.get("dkim_selector"), v.get("dkim_key_file")) {
        (None, None, None) => None,
        (Some(domain), Some(selector), Some(key_file)) => Some(DkimSettings {
            domain: domain.to_string(),
            selector: selector.to_string(),
            key_file: PathBuf::from(key_file),
            ed25519: None,
        }),
        _ => return Err(ConfigError(
            "IRIA_DKIM_DOMAIN, IRIA_DKIM_SELECTOR and IRIA_DKIM_KEY_FILE go together: set all three or none"
                .into(),
        )),
    };
    let second = match (v.get("dkim_ed25519_selector"), v.get("dkim_ed25519_key_file")) {
        (None, None) => None,
        (Some(selector), Some(key_file)) => Some(DkimSecondKey {
            selector: selector.to_string(),
            key_file: PathBuf::from(key_file),
        }),
        _ => return Err(ConfigError(
            "IRIA_DKIM_ED25519_SELECTOR and IRIA_DKIM_ED25519_KEY_FILE go together: set both or neither"
                .into(),
        )),
    };
    match (first, second) {
        (first, None) => Ok(first),
        (None, Some(_)) => Err(ConfigError(
            "IRIA_DKIM_ED25519_SELECTOR and IRIA_DKIM_ED25519_KEY_FILE add a second signature: \
             they need IRIA_DKIM_DOMAIN, IRIA_DKIM_SELECTOR and IRIA_DKIM_KEY_FILE"
                .into(),
        )),
        (Some(first), Some(second)) if second.selector == first.selector => Err(ConfigError(
            "IRIA_DKIM_ED25519_SELECTOR must differ from IRIA_DKIM_SELECTOR: each key has its own DNS record"
                .into(),
        )),
        (Some(mut first), second) => {
            first.ed25519 = second;
            Ok(Some(first))
        }
    }
}

fn parse_log_format(v: &Values) -> Result<LogFormat, ConfigError> {
    match v.required("log_format")? {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(bad(
            "log_format",
            format!("expected text or json, got {other:?}"),
        )),
    }
}

fn parse_delivery(v: &Values) -> Result<DeliverySettings, ConfigError> {
    Ok(DeliverySettings {
        concurrency: v.number("delivery_concurrency", 1u32)? as usize,
        batch_size: i64::from(v.number("delivery_batch_size", 1u32)?),
        max_attempts: v.number("delivery_max_attempts", 1u32)?.min(1000) as i32,
        retry_base: Duration::from_millis(v.number("delivery_retry_base_ms", 1u64)?),
        lease: Duration::from_secs(v.number("delivery_lease_seconds", 5u64)?),
        poll: Duration::from_millis(v.number("delivery_poll_ms", 1u64)?),
        smtp_timeout: Duration::from_secs(v.number("smtp_timeout_seconds", 1u64)?),
        rate_per_second: v.number("delivery_rate_per_second", 0u32)?,
        domain_rate_per_second: v.number("delivery_domain_rate_per_second", 0u32)?,
        bounce_address: parse_bounce_address(v)?,
    })
}

#[cfg(test)]
mod tests;
