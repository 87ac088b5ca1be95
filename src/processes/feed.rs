//! Importing the site's RSS 2.0 or Atom feed (parsed by `feed-rs`): from a file, from a URL, and
//! by polling `IRIA_FEED_URL` with conditional GET (ETag / Last-Modified).

use std::time::Duration;

use anyhow::Context;
use feed_rs::model::Entry;

use crate::foundation::db::{self, Pool};
use crate::processes::fetch_guard;
use crate::stores::articles::{self, plain_text, sanitize, shorten, Imported, NewArticle, Source};

/// The longest summary kept.
const SUMMARY_CHARS: usize = 600;

/// A feed read: the usable articles, and why the others were left out.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub articles: Vec<NewArticle>,
    pub skipped: Vec<String>,
}

/// Reads a feed. Items without a link, a title or a usable date are skipped, each with its reason;
/// bodies and summaries are sanitised.
pub fn parse(bytes: &[u8]) -> anyhow::Result<Parsed> {
    let feed = feed_rs::parser::parse(bytes).context("not an RSS or Atom feed")?;
    let mut parsed = Parsed::default();
    for (n, entry) in feed.entries.into_iter().enumerate() {
        match article(entry, n) {
            Ok(article) => parsed.articles.push(article),
            Err(skipped) => parsed.skipped.push(skipped),
        }
    }
    Ok(parsed)
}

/// The `n`th (from 0) entry of a feed as an article, or why it is skipped.
fn article(entry: Entry, n: usize) -> Result<NewArticle, String> {
    let title = entry
        .title
        .as_ref()
        .map(|t| plain_text(&t.content, 300))
        .unwrap_or_default();
    let label = if title.is_empty() {
        format!("item {}", n + 1)
    } else {
        format!("{title:?}")
    };
    let Some(link) = web_link(&entry) else {
        return Err(format!("{label}: no link"));
    };
    if title.is_empty() {
        return Err(format!("{label}: no title"));
    }
    let Some(published) = entry.published.or(entry.updated) else {
        return Err(format!("{label}: no usable date"));
    };
    let body = entry
        .content
        .as_ref()
        .and_then(|c| c.body.as_deref())
        .map(sanitize)
        .unwrap_or_default();
    let summary_source = entry
        .summary
        .as_ref()
        .map(|s| s.content.as_str())
        .unwrap_or(body.as_str());
    let summary = plain_text(&sanitize(summary_source), SUMMARY_CHARS);
    let author = entry
        .authors
        .first()
        .map(|p| shorten(p.name.trim(), 200))
        .filter(|a| !a.is_empty());
    let image = image(&entry);
    let guid = if entry.id.trim().is_empty() {
        link.clone()
    } else {
        entry.id.trim().to_string()
    };
    Ok(NewArticle {
        guid: shorten(&guid, 1000),
        link,
        title,
        summary,
        body,
        author,
        categories: categories(&entry),
        image_url: image.as_ref().map(|(u, _)| u.clone()),
        image_credit: image.and_then(|(_, c)| c),
        published_at: published.naive_utc(),
    })
}

/// The entry's page on the web: its first alternate (or untyped) link, if it is http(s).
fn web_link(entry: &Entry) -> Option<String> {
    entry
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .map(|l| l.href.trim().to_string())
        .filter(|h| h.starts_with("http://") || h.starts_with("https://"))
}

/// The entry's categories, without duplicates, at most 20; a comma would split one when the
/// categories are stored as a list, so it becomes a space.
fn categories(entry: &Entry) -> Vec<String> {
    let mut categories: Vec<String> = Vec::new();
    for c in &entry.categories {
        let name = c
            .label
            .as_deref()
            .unwrap_or(&c.term)
            .replace(',', " ")
            .trim()
            .to_string();
        if !name.is_empty() && !categories.contains(&name) && categories.len() < 20 {
            categories.push(shorten(&name, 64));
        }
    }
    categories
}

/// The entry's first image (media content of an image type, or of no stated type), with its
/// credit if one is given.
fn image(entry: &Entry) -> Option<(String, Option<String>)> {
    entry.media.iter().find_map(|m| {
        let url = m.content.iter().find_map(|c| {
            let is_image = c.content_type.as_ref().is_none_or(|t| t.ty() == "image");
            // Only a web image: a `javascript:`, `data:` or `file:` URL would end in the digest.
            let web = |u: &&url::Url| u.scheme() == "https" || u.scheme() == "http";
            c.url
                .as_ref()
                .filter(|_| is_image)
                .filter(web)
                .map(|u| u.to_string())
        })?;
        let credit = m.credits.first().map(|c| shorten(c.entity.trim(), 200));
        Some((url, credit))
    })
}

/// What one fetch found.
pub enum Fetched {
    /// 304: nothing new since the last poll.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// The largest feed read; a longer body is refused as soon as it passes this size, without
/// keeping the rest.
pub const MAX_FEED_BYTES: usize = 20 * 1024 * 1024;

/// GETs a feed, conditionally when an ETag or Last-Modified is known. The body is read as a
/// stream and refused past [`MAX_FEED_BYTES`]; at most [`fetch_guard::MAX_REDIRECTS`] redirects are followed,
/// and neither a redirect nor a host name may lead to a loopback, private, link-local or
/// metadata address, unless the configured URL itself names one (a feed on the operator's own
/// network), in which case only that host is let through.
pub async fn fetch(
    url: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> anyhow::Result<Fetched> {
    let parsed = url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    let trusted = fetch_guard::Trusted::of(&parsed).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("iria-news/", env!("CARGO_PKG_VERSION")))
        // A proxy would resolve names where this process cannot check them.
        .no_proxy()
        .redirect(fetch_guard::redirects(trusted.clone()))
        .dns_resolver(std::sync::Arc::new(fetch_guard::Resolver { trusted }))
        .build()
        .context("setting up the HTTP client")?;
    let mut request = client.get(url);
    if let Some(etag) = etag {
        request = request.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = last_modified {
        request = request.header(reqwest::header::IF_MODIFIED_SINCE, lm);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("fetching {url}: {}", fetch_guard::explain(&e)))?;
    if response.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !response.status().is_success() {
        anyhow::bail!("fetching {url}: HTTP {}", response.status());
    }
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let too_large = || anyhow::anyhow!("{url}: the feed is larger than 20 MB");
    if response
        .content_length()
        .is_some_and(|n| n > MAX_FEED_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        if bytes.len() + chunk.len() > MAX_FEED_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched::Body {
        bytes,
        etag,
        last_modified,
    })
}

/// What a poll or an import did, for the command line and the log.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub not_modified: bool,
    pub imported: Imported,
    pub skipped: Vec<String>,
}

/// Imports from a URL (conditional GET, state kept) or a file path.
pub async fn import(pool: &Pool, source: &str) -> anyhow::Result<Report> {
    if source.starts_with("http://") || source.starts_with("https://") {
        return poll(pool, source).await;
    }
    let bytes = std::fs::read(source).with_context(|| format!("reading {source}"))?;
    let parsed = parse(&bytes).with_context(|| source.to_string())?;
    store(pool, parsed).await
}

async fn store(pool: &Pool, parsed: Parsed) -> anyhow::Result<Report> {
    let Parsed { articles, skipped } = parsed;
    let imported = db::run(pool, move |conn| {
        Ok(articles::upsert(conn, &articles, Source::Feed)?)
    })
    .await
    .context("storing articles")?;
    Ok(Report {
        not_modified: false,
        imported,
        skipped,
    })
}

/// One poll of a feed URL. A failure (network, HTTP error, a broken feed) keeps the last good
/// state and is recorded with the feed; the next poll tries again.
pub async fn poll(pool: &Pool, url: &str) -> anyhow::Result<Report> {
    let key = url.to_string();
    let state: Option<(Option<String>, Option<String>)> =
        db::run(pool, move |conn| Ok(articles::feed_validators(conn, &key)?)).await?;
    let (etag, last_modified) = state.unwrap_or_default();
    let outcome = async {
        match fetch(url, etag.as_deref(), last_modified.as_deref()).await? {
            Fetched::NotModified => Ok((
                Report {
                    not_modified: true,
                    ..Default::default()
                },
                etag.clone(),
                last_modified.clone(),
            )),
            Fetched::Body {
                bytes,
                etag,
                last_modified,
            } => {
                let parsed = parse(&bytes).with_context(|| url.to_string())?;
                Ok((store(pool, parsed).await?, etag, last_modified))
            }
        }
    }
    .await;
    let key = url.to_string();
    match outcome {
        Ok((report, etag, last_modified)) => {
            db::run(pool, move |conn| {
                Ok(articles::save_feed_state(conn, &key, etag, last_modified)?)
            })
            .await?;
            Ok(report)
        }
        Err(e) => {
            let message = format!("{e:#}");
            let _ = db::run(pool, move |conn| {
                Ok(articles::record_feed_error(conn, &key, &message)?)
            })
            .await;
            Err(e)
        }
    }
}
