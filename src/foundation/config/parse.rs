//! Reading settings from the merged values of every source: the helpers each setting's parser
//! uses, and the parsers of the settings that need no type of the parent module. A bad value is
//! a one-line error naming the setting as it is written in the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lettre::message::Mailbox;
use url::Url;

/// A bad setting, said in one line.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// `database_url` → `IRIA_DATABASE_URL`.
pub fn env_name(key: &str) -> String {
    format!("IRIA_{}", key.to_ascii_uppercase())
}

/// The merged values of every source, read one setting at a time.
pub(super) struct Values<'a>(pub(super) &'a BTreeMap<String, String>);

impl<'a> Values<'a> {
    /// A setting's value, trimmed; `None` when it is unset or blank.
    pub(super) fn get(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    pub(super) fn required(&self, key: &str) -> Result<&'a str, ConfigError> {
        self.get(key)
            .ok_or_else(|| ConfigError(format!("{} is empty", env_name(key))))
    }

    /// A whole number of at least `min`.
    pub(super) fn number<T>(&self, key: &str, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let raw = self.required(key)?;
        let n: T = raw
            .parse()
            .map_err(|_| bad(key, format!("expected a whole number, got {raw:?}")))?;
        if n < min {
            return Err(bad(key, format!("must be at least {min}, got {raw}")));
        }
        Ok(n)
    }
}

/// An error about one setting, named as in the environment.
pub(super) fn bad(key: &str, why: String) -> ConfigError {
    ConfigError(format!("{}: {why}", env_name(key)))
}

pub(super) fn parse_listen(v: &Values) -> Result<SocketAddr, ConfigError> {
    let raw = v.required("listen")?;
    let why = || format!("expected HOST:PORT such as 127.0.0.1:8080, got {raw:?}");
    raw.parse().map_err(|_| bad("listen", why()))
}

pub(super) fn parse_base_url(v: &Values) -> Result<Url, ConfigError> {
    let raw = v.required("base_url")?;
    Url::parse(raw.trim_end_matches('/'))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| bad("base_url", format!("expected an http(s) URL, got {raw:?}")))
}

pub(super) fn parse_from(v: &Values) -> Result<Mailbox, ConfigError> {
    let raw = v.required("from")?;
    raw.parse()
        .map_err(|e| bad("from", format!("not a mail address ({e}): {raw:?}")))
}

pub(super) fn parse_secret_key(v: &Values) -> Result<Option<Vec<u8>>, ConfigError> {
    match v.get("secret_key") {
        None => Ok(None),
        Some(k) if k.len() < 32 => Err(bad(
            "secret_key",
            format!("must be at least 32 bytes, got {}", k.len()),
        )),
        Some(k) => Ok(Some(k.as_bytes().to_vec())),
    }
}

pub(super) fn parse_feed_url(v: &Values) -> Result<Option<Url>, ConfigError> {
    v.get("feed_url")
        .map(|raw| Url::parse(raw).map_err(|e| bad("feed_url", format!("{e}: {raw:?}"))))
        .transpose()
}

pub(super) fn parse_topics(v: &Values) -> Result<Vec<String>, ConfigError> {
    let topics: Vec<String> = v
        .required("topics")?
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.iter().any(|t| t.chars().count() > 64) {
        return Err(bad("topics", "a topic is longer than 64 characters".into()));
    }
    Ok(topics)
}

pub(super) fn parse_unsubscribe_mailto(v: &Values) -> Result<Option<String>, ConfigError> {
    let Some(raw) = v.get("unsubscribe_mailto") else {
        return Ok(None);
    };
    let address: lettre::Address = raw
        .parse()
        .map_err(|_| bad("unsubscribe_mailto", format!("not a mail address: {raw:?}")))?;
    Ok(Some(address.to_string()))
}

pub(super) fn parse_bool(v: &Values, key: &str) -> Result<bool, ConfigError> {
    match v.required(key)? {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(bad(key, format!("expected true or false, got {other:?}"))),
    }
}

/// The VERP envelope sender: a mail address once `{token}` is filled in, and it must have one.
pub(super) fn parse_bounce_address(v: &Values) -> Result<Option<String>, ConfigError> {
    let Some(raw) = v.get("bounce_address") else {
        return Ok(None);
    };
    let probe = raw.replace("{token}", "d1-abc");
    probe
        .parse::<lettre::Address>()
        .map_err(|_| bad("bounce_address", format!("not a mail address: {raw:?}")))?;
    if !raw.contains("{token}") {
        return Err(bad(
            "bounce_address",
            format!("must contain {{token}}: {raw:?}"),
        ));
    }
    Ok(Some(raw.to_string()))
}

/// `IRIA_ALLOWED_ORIGINS`: each entry an origin, `scheme://host[:port]` (a lone trailing `/` is
/// forgiven: it is what a browser's address bar shows), nothing more. A path would suggest that
/// only part of a site is allowed, which an origin check cannot enforce, so it is refused.
pub(super) fn parse_allowed_origins(v: &Values) -> Result<Vec<url::Origin>, ConfigError> {
    let Some(raw) = v.get("allowed_origins") else {
        return Ok(Vec::new());
    };
    let mut origins = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let why = || {
            format!(
                "expected origins such as https://www.ir-ia.com (scheme://host[:port], no path), \
                 got {entry:?}"
            )
        };
        let url = Url::parse(entry).map_err(|_| bad("allowed_origins", why()))?;
        let bare = entry.strip_suffix('/').unwrap_or(entry);
        let is_origin = matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && !bare.ends_with('/')
            && !bare.contains(['?', '#']);
        if !is_origin {
            return Err(bad("allowed_origins", why()));
        }
        let origin = url.origin();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}
