//! The article store: the site's articles, imported from its RSS/Atom feed or pushed by its CMS.
//! The only module that writes `articles` and `feed_state`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::{articles, feed_state};
use crate::foundation::db::{self, DbConnection};

/// Where an article came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Feed,
    Api,
    Admin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Feed => "feed",
            Source::Api => "api",
            Source::Admin => "admin",
        }
    }
}

/// An article as it comes in, already checked: a link, a title, a date.
#[derive(Clone, Debug, PartialEq)]
pub struct NewArticle {
    /// The feed's guid or the CMS's id; the link when there is none.
    pub guid: String,
    pub link: String,
    pub title: String,
    pub summary: String,
    /// Sanitised HTML.
    pub body: String,
    pub author: Option<String>,
    pub categories: Vec<String>,
    pub image_url: Option<String>,
    pub image_credit: Option<String>,
    pub published_at: NaiveDateTime,
}

/// An article as stored.
#[derive(Clone, Debug, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = articles)]
pub struct Article {
    pub id: i64,
    pub guid: String,
    pub link: String,
    pub title: String,
    pub summary: String,
    pub body: String,
    pub author: Option<String>,
    pub categories: String,
    pub image_url: Option<String>,
    pub image_credit: Option<String>,
    pub published_at: NaiveDateTime,
    pub source: String,
    pub excluded: i32,
    pub digest_id: Option<i64>,
}

impl Article {
    pub fn category_list(&self) -> Vec<&str> {
        self.categories
            .split(',')
            .filter(|c| !c.is_empty())
            .collect()
    }
}

/// The deepest nesting of elements kept. Building the tree of deeply nested markup costs time
/// that grows with the square of the depth (100,000 nested `div`s took 96 s of CPU); real
/// articles nest a few dozen levels at most.
pub const MAX_HTML_DEPTH: usize = 200;

/// Sanitises an article's HTML (scripts, handlers, frames and forms go). Markup nested deeper
/// than [`MAX_HTML_DEPTH`] is flattened first: its tags are dropped and its text kept, in time
/// linear in its length.
pub fn sanitize(html: &str) -> String {
    if nesting_depth(html) > MAX_HTML_DEPTH {
        return ammonia::clean(&strip_tags(html));
    }
    ammonia::clean(html)
}

/// Elements that have no end tag, or whose end tag may be left out (the next one closes them):
/// they do not nest, so they are not counted.
const NOT_NESTING: &[&str] = &[
    "area", "base", "br", "col", "dd", "dt", "embed", "hr", "img", "input", "li", "link", "meta",
    "option", "p", "param", "source", "td", "th", "tr", "track", "wbr",
];

/// The deepest element nesting of some HTML, estimated in one pass the way an HTML parser would
/// build it, erring on the deep side: a start tag opens an element even when written `<div/>`
/// (HTML ignores the slash, except inside `svg` and `math`); an end tag closes one only when an
/// element of its name is open (a stray `</x>` closes nothing). Comments and doctypes do not count.
fn nesting_depth(html: &str) -> usize {
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let (mut depth, mut deepest, mut foreign) = (0usize, 0usize, 0usize);
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        rest = &rest[end..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if name.is_empty() || NOT_NESTING.contains(&name.as_str()) {
            continue;
        }
        let is_foreign_root = name == "svg" || name == "math";
        if closing {
            if let Some(n) = open.get_mut(&name).filter(|n| **n > 0) {
                *n -= 1;
                depth = depth.saturating_sub(1);
                if is_foreign_root {
                    foreign = foreign.saturating_sub(1);
                }
            }
            continue;
        }
        if foreign > 0 && tag.ends_with('/') {
            continue; // `<path/>` in an SVG really is closed
        }
        *open.entry(name).or_insert(0) += 1;
        depth += 1;
        deepest = deepest.max(depth);
        if is_foreign_root {
            foreign += 1;
        }
    }
    deepest
}

/// The text of some HTML without its tags (entities are left for the sanitiser to read).
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = match rest[at..].find('>') {
            Some(end) => &rest[at + end + 1..],
            None => "",
        };
        out.push(' ');
    }
    out.push_str(rest);
    out
}

/// Plain text of some HTML, white space collapsed, at most `max` characters (cut at a word).
pub fn plain_text(html: &str, max: usize) -> String {
    let flat;
    let html = if nesting_depth(html) > MAX_HTML_DEPTH {
        flat = strip_tags(html);
        flat.as_str()
    } else {
        html
    };
    let text = html2text::from_read(html.as_bytes(), 10_000).unwrap_or_default();
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.starts_with('[') || !w.ends_with(']'))
        .collect();
    shorten(&words.join(" "), max)
}

/// `text` cut at a word boundary to at most `max` characters, with an ellipsis when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    let at_word = cut.rfind(' ').map(|i| &cut[..i]).unwrap_or(&cut);
    format!("{}…", at_word.trim_end_matches([',', '.', ';', ':']))
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Stores articles: a new guid is added; a known one is updated when something changed. An
/// update never clears `digest_id`, so an edited article is not sent again.
pub fn upsert(
    conn: &mut DbConnection,
    items: &[NewArticle],
    source: Source,
) -> QueryResult<Imported> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        let mut result = Imported::default();
        for a in items {
            let categories = a.categories.join(",");
            // What a feed or the CMS may change; the same columns for a new article and an edit.
            let content = (
                articles::link.eq(&a.link),
                articles::title.eq(&a.title),
                articles::summary.eq(&a.summary),
                articles::body.eq(&a.body),
                articles::author.eq(&a.author),
                articles::categories.eq(&categories),
                articles::image_url.eq(&a.image_url),
                articles::image_credit.eq(&a.image_credit),
                articles::updated_at.eq(now),
            );
            let existing: Option<(i64, String, String, String, String)> = articles::table
                .filter(articles::guid.eq(&a.guid))
                .select((
                    articles::id,
                    articles::title,
                    articles::summary,
                    articles::body,
                    articles::link,
                ))
                .first(conn)
                .optional()?;
            match existing {
                None => {
                    diesel::insert_into(articles::table)
                        .values((
                            content,
                            articles::guid.eq(&a.guid),
                            articles::published_at.eq(a.published_at),
                            articles::source.eq(source.as_str()),
                            articles::created_at.eq(now),
                        ))
                        .execute(conn)?;
                    result.new += 1;
                }
                Some((id, title, summary, body, link))
                    if title != a.title
                        || summary != a.summary
                        || body != a.body
                        || link != a.link =>
                {
                    diesel::update(articles::table.find(id))
                        .set(content)
                        .execute(conn)?;
                    result.updated += 1;
                }
                Some(_) => result.unchanged += 1,
            }
        }
        Ok(result)
    })
}

/// The articles no digest has carried, published after `after` (if given) and up to `until`,
/// newest first, editors' exclusions left out.
pub fn undigested(
    conn: &mut DbConnection,
    after: Option<NaiveDateTime>,
    until: NaiveDateTime,
) -> QueryResult<Vec<Article>> {
    let mut query = articles::table
        .filter(articles::digest_id.is_null())
        .filter(articles::excluded.eq(0))
        .filter(articles::published_at.le(until))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(articles::published_at.gt(after));
    }
    query
        .order(articles::published_at.desc())
        .select(Article::as_select())
        .load(conn)
}

/// Marks articles as carried by a digest.
pub fn mark_digested(conn: &mut DbConnection, ids: &[i64], digest_id: i64) -> QueryResult<usize> {
    diesel::update(articles::table.filter(articles::id.eq_any(ids)))
        .set(articles::digest_id.eq(Some(digest_id)))
        .execute(conn)
}

/// The articles a digest carried, newest first.
pub fn of_digest(conn: &mut DbConnection, digest_id: i64) -> QueryResult<Vec<Article>> {
    articles::table
        .filter(articles::digest_id.eq(Some(digest_id)))
        .order(articles::published_at.desc())
        .select(Article::as_select())
        .load(conn)
}

/// Keeps an article out of the digest (an editor's choice).
pub fn set_excluded(conn: &mut DbConnection, id: i64, excluded: bool) -> QueryResult<usize> {
    diesel::update(articles::table.find(id))
        .set(articles::excluded.eq(i32::from(excluded)))
        .execute(conn)
}

/// One article.
pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Article>> {
    articles::table
        .find(id)
        .select(Article::as_select())
        .first(conn)
        .optional()
}

/// The latest articles by publication, newest first.
pub fn latest(conn: &mut DbConnection, limit: i64, offset: i64) -> QueryResult<Vec<Article>> {
    articles::table
        .order((articles::published_at.desc(), articles::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(Article::as_select())
        .load(conn)
}

/// How many articles there are.
pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    articles::table.count().get_result(conn)
}

/// An editor's edit: every field but the guid, the source and whether a digest carried it.
/// `false` when there is no such article.
pub fn update(conn: &mut DbConnection, id: i64, a: &NewArticle) -> QueryResult<bool> {
    Ok(diesel::update(articles::table.find(id))
        .set((
            articles::link.eq(&a.link),
            articles::title.eq(&a.title),
            articles::summary.eq(&a.summary),
            articles::body.eq(&a.body),
            articles::author.eq(&a.author),
            articles::categories.eq(a.categories.join(",")),
            articles::image_url.eq(&a.image_url),
            articles::image_credit.eq(&a.image_credit),
            articles::published_at.eq(a.published_at),
            articles::updated_at.eq(db::now()),
        ))
        .execute(conn)?
        == 1)
}

/// The validators of a feed's last good fetch (`ETag`, `Last-Modified`), for a conditional GET.
pub fn feed_validators(
    conn: &mut DbConnection,
    url: &str,
) -> QueryResult<Option<(Option<String>, Option<String>)>> {
    feed_state::table
        .find(url)
        .select((feed_state::etag, feed_state::last_modified))
        .first(conn)
        .optional()
}

/// Records a good fetch of a feed: its validators, the time, and no error.
pub fn save_feed_state(
    conn: &mut DbConnection,
    url: &str,
    etag: Option<String>,
    last_modified: Option<String>,
) -> QueryResult<()> {
    let now = Some(db::now());
    let error: Option<String> = None;
    let changed = diesel::update(feed_state::table.find(url))
        .set((
            feed_state::etag.eq(&etag),
            feed_state::last_modified.eq(&last_modified),
            feed_state::polled_at.eq(now),
            feed_state::last_error.eq(&error),
        ))
        .execute(conn)?;
    if changed == 0 {
        diesel::insert_into(feed_state::table)
            .values((
                feed_state::url.eq(url),
                feed_state::etag.eq(&etag),
                feed_state::last_modified.eq(&last_modified),
                feed_state::polled_at.eq(now),
                feed_state::last_error.eq(&error),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Records a failed poll of a feed; the last good state stays.
pub fn record_feed_error(conn: &mut DbConnection, url: &str, message: &str) -> QueryResult<usize> {
    diesel::update(feed_state::table.find(url))
        .set((
            feed_state::last_error.eq(Some(message)),
            feed_state::polled_at.eq(Some(db::now())),
        ))
        .execute(conn)
}
