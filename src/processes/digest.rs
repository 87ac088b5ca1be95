//! The weekly digest: the articles published since the previous digest's cut-off and never in an
//! earlier digest, rendered into one issue per distinct choice of topics, queued to the readers
//! who made that choice. One digest per period, whatever the number of instances or reruns: the
//! period's key is unique in `digests`.

use askama::Template;
use chrono::{Datelike, NaiveDateTime};
use diesel::prelude::*;

use crate::foundation::config::Settings;
use crate::foundation::db::{self, DbConnection};
use crate::processes::compose;
use crate::stores::articles::{self, shorten, Article};
use crate::stores::digests::{self, Archived};
use crate::stores::issues::{self, Composed, Draft, IssueError, Kind};
use crate::stores::subscriptions;

/// Articles shown in full (image, summary); the rest of a large digest are listed by title.
pub const FULL_ARTICLES: usize = 15;
/// Articles listed at all; past this, a "more on the site" link.
pub const LISTED_ARTICLES: usize = 40;
/// How far before the previous digest's cut-off a late article is still taken.
pub const LOOKBACK_DAYS: i64 = 7;
/// The longest summary in a digest.
pub const SUMMARY_CHARS: usize = 320;

/// One audience: the readers who chose exactly these topics (empty: all topics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audience {
    pub topics: String,
    pub subscribers: i64,
    /// Indexes into the plan's articles.
    pub articles: Vec<usize>,
}

/// What a digest run would send.
#[derive(Clone, Debug)]
pub struct Plan {
    pub period_key: String,
    pub cutoff: NaiveDateTime,
    pub articles: Vec<Article>,
    pub audiences: Vec<Audience>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This period's digest exists already (another instance, or a rerun): nothing sent.
    AlreadyDone { period_key: String },
    /// No article since the last digest: no digest.
    NoArticles,
    /// Queued: (issue, recipients) per audience that had articles.
    Queued {
        digest_id: i64,
        articles: usize,
        issues: Vec<(i64, usize)>,
    },
    /// `--dry-run`: what would go out.
    DryRun {
        articles: usize,
        audiences: Vec<(String, i64, usize)>,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::AlreadyDone { period_key } => write!(
                f,
                "the digest of period {period_key} was made already; nothing sent"
            ),
            Outcome::NoArticles => write!(f, "no new articles since the last digest; no digest"),
            Outcome::Queued {
                digest_id,
                articles,
                issues,
            } => {
                let recipients: usize = issues.iter().map(|(_, n)| n).sum();
                write!(f, "digest {digest_id}: {articles} article(s) in {} issue(s), queued to {recipients} subscriber(s)", issues.len())
            }
            Outcome::DryRun {
                articles,
                audiences,
            } => {
                write!(f, "would send {articles} article(s):")?;
                for (topics, readers, count) in audiences {
                    let who = if topics.is_empty() {
                        "all topics".to_string()
                    } else {
                        topics.replace(',', ", ")
                    };
                    write!(
                        f,
                        "\n  {readers} subscriber(s) choosing {who}: {count} article(s)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Whether an article belongs to a reader's topics (none chosen: all).
fn matches(article: &Article, topics: &str) -> bool {
    if topics.is_empty() {
        return true;
    }
    let wanted: Vec<String> = topics.split(',').map(str::to_lowercase).collect();
    article
        .category_list()
        .iter()
        .any(|c| wanted.contains(&c.to_lowercase()))
}

/// Works out this period's digest without writing anything.
pub fn plan(conn: &mut DbConnection, period_key: &str, now: NaiveDateTime) -> QueryResult<Plan> {
    // The window opens at the previous digest's cut-off, less a week of grace for articles that
    // reached the store late (a feed polled after the digest, a CMS push back-dated): an article
    // goes out once, whenever it arrives, unless it is older than that. The first digest looks
    // back a week, so that importing a feed's whole history does not send it all.
    let previous = digests::previous_cutoff(conn)?;
    let after = previous.unwrap_or(now) - chrono::Duration::days(LOOKBACK_DAYS);
    let articles = articles::undigested(conn, Some(after), now)?;
    let groups = subscriptions::confirmed_by_topics(conn)?;
    let audiences = groups
        .into_iter()
        .map(|(topics, subscribers)| {
            let picked = (0..articles.len())
                .filter(|i| matches(&articles[*i], &topics))
                .collect();
            Audience {
                topics,
                subscribers,
                articles: picked,
            }
        })
        .collect();
    Ok(Plan {
        period_key: period_key.to_string(),
        cutoff: now,
        articles,
        audiences,
    })
}

/// Makes and queues this period's digest (or, with `dry_run`, says what it would send).
pub fn run(
    conn: &mut DbConnection,
    settings: &Settings,
    period_key: &str,
    now: NaiveDateTime,
    dry_run: bool,
) -> Result<Outcome, IssueError> {
    let already_done = || Outcome::AlreadyDone {
        period_key: period_key.to_string(),
    };
    if digests::is_done(conn, period_key)? {
        return Ok(already_done());
    }
    let plan = plan(conn, period_key, now)?;
    if plan.articles.is_empty() {
        if !dry_run {
            // The period is done all the same: a restart later in the week sends nothing.
            digests::record_period(conn, period_key, plan.cutoff, 0, now)?;
        }
        return Ok(Outcome::NoArticles);
    }
    if dry_run {
        let audiences = plan
            .audiences
            .iter()
            .map(|a| (a.topics.clone(), a.subscribers, a.articles.len()))
            .collect();
        return Ok(Outcome::DryRun {
            articles: plan.articles.len(),
            audiences,
        });
    }
    // Compose outside the transaction (CSS inlining is the slow part), write inside it.
    let mut composed: Vec<(String, Composed)> = Vec::new();
    for audience in plan.audiences.iter().filter(|a| !a.articles.is_empty()) {
        let picked: Vec<&Article> = audience
            .articles
            .iter()
            .map(|i| &plan.articles[*i])
            .collect();
        let issue = compose::compose(settings, &draft(settings, &picked, now)?)?;
        composed.push((audience.topics.clone(), issue));
    }
    let inserted = db::write_transaction(conn, |conn| {
        let articles = plan.articles.len() as i32;
        // `None`: another instance made this period's digest a moment ago.
        let Some(digest_id) = digests::record_period(conn, period_key, plan.cutoff, articles, now)?
        else {
            return Ok(None);
        };
        let mut queued = Vec::new();
        for (topics, issue) in &composed {
            queued.push(issues::create_digest_issue(
                conn, issue, topics, digest_id, now,
            )?);
        }
        let ids: Vec<i64> = plan.articles.iter().map(|a| a.id).collect();
        articles::mark_digested(conn, &ids, digest_id)?;
        Ok::<_, IssueError>(Some((digest_id, queued)))
    })?;
    Ok(match inserted {
        None => already_done(),
        Some((digest_id, issues)) => Outcome::Queued {
            digest_id,
            articles: plan.articles.len(),
            issues,
        },
    })
}

/// "IRIA News, week of 23 November 2026: 5 new articles".
pub fn subject(settings: &Settings, count: usize, now: NaiveDateTime) -> String {
    // The week the articles are from: the one before the day of sending.
    let day = (now - chrono::Duration::days(1)).date();
    let monday = day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let noun = if count == 1 {
        "new article"
    } else {
        "new articles"
    };
    format!(
        "{}, week of {}: {count} {noun}",
        settings.site_name,
        monday.format("%-d %B %Y")
    )
}

/// One article as the digest shows it.
pub struct Item<'a> {
    pub title: &'a str,
    pub link: &'a str,
    pub date: String,
    pub categories: String,
    pub author: Option<&'a str>,
    pub summary: String,
    pub image_url: Option<&'a str>,
    pub image_credit: Option<&'a str>,
}

impl<'a> Item<'a> {
    pub fn of(a: &'a Article) -> Self {
        Item {
            title: &a.title,
            link: &a.link,
            date: a.published_at.format("%-d %B %Y").to_string(),
            categories: a.category_list().join(", "),
            author: a.author.as_deref(),
            summary: shorten(&a.summary, SUMMARY_CHARS),
            image_url: a.image_url.as_deref(),
            image_credit: a.image_credit.as_deref(),
        }
    }
}

/// The body of a digest email (inside the issue layout).
#[derive(Template)]
#[template(path = "emails/digest_body.html")]
pub struct DigestBody<'a> {
    pub full: &'a [Item<'a>],
    pub listed: &'a [Item<'a>],
    pub more: usize,
    pub site_url: &'a str,
}

/// The text of a digest email.
#[derive(Template)]
#[template(path = "emails/digest_body.txt")]
pub struct DigestText<'a> {
    pub full: &'a [Item<'a>],
    pub listed: &'a [Item<'a>],
    pub more: usize,
    pub site_url: &'a str,
}

/// The issue draft of a digest of these articles.
pub fn draft(
    settings: &Settings,
    picked: &[&Article],
    now: NaiveDateTime,
) -> Result<Draft, IssueError> {
    let items: Vec<Item> = picked.iter().map(|a| Item::of(a)).collect();
    let split = items.len().min(FULL_ARTICLES);
    let end = items.len().min(LISTED_ARTICLES);
    let (full, rest) = items.split_at(split);
    let listed = &rest[..end - split];
    let more = items.len() - end;
    let site_url = settings.link("/archive");
    let body = DigestBody {
        full,
        listed,
        more,
        site_url: &site_url,
    }
    .render()
    .map_err(|e| IssueError::Render(e.to_string()))?;
    let text = DigestText {
        full,
        listed,
        more,
        site_url: &site_url,
    }
    .render()
    .map_err(|e| IssueError::Render(e.to_string()))?;
    let preheader = picked
        .iter()
        .take(3)
        .map(|a| a.title.as_str())
        .collect::<Vec<_>>()
        .join(" · ");
    Ok(Draft {
        kind: Kind::Digest,
        subject: subject(settings, picked.len(), now),
        preheader,
        body_html: body,
        body_text: Some(text),
        topics: Vec::new(),
        period_key: None,
        idempotency_key: None,
    })
}

/// The digest that would go out now to a reader of all topics, composed (for previews).
pub fn preview(
    conn: &mut DbConnection,
    settings: &Settings,
    now: NaiveDateTime,
) -> Result<Option<Composed>, IssueError> {
    let plan = plan(conn, "preview", now)?;
    if plan.articles.is_empty() {
        return Ok(None);
    }
    let all: Vec<&Article> = plan.articles.iter().collect();
    Ok(Some(compose::compose(
        settings,
        &draft(settings, &all, now)?,
    )?))
}

/// One archived digest and its articles.
pub fn archived(conn: &mut DbConnection, id: i64) -> QueryResult<Option<(Archived, Vec<Article>)>> {
    let Some(d) = digests::find(conn, id)? else {
        return Ok(None);
    };
    let list = articles::of_digest(conn, id)?;
    Ok(Some((d, list)))
}
