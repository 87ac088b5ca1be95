//! The weekly digest: the articles published since the previous digest's cut-off and never in an
//! earlier digest, rendered into one issue per distinct choice of topics, queued to the readers
//! who made that choice. One digest per period, whatever the number of instances or reruns: the
//! period's key is unique in `digests`. A period the scheduler found empty stays open to a manual
//! run; one an editor skipped does not.

use askama::Template;
use chrono::{Datelike, NaiveDateTime};
use diesel::prelude::*;

use crate::foundation::config::Settings;
use crate::foundation::db::{self, DbConnection};
use crate::foundation::schedule::Schedule;
use crate::processes::compose;
use crate::stores::articles::{self, shorten, Article};
use crate::stores::delivery;
use crate::stores::digests::{self, Archived, PeriodState};
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

/// Who asked for a run: it decides whether a period a scheduled run found empty is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The scheduler, at the scheduled time or at start-up. A period it found empty stays closed
    /// to it, so a restart later in the week sends nothing mid-week.
    Schedule,
    /// An editor ("Send it now"), the API or `iria-news digest run`: sends in a period a scheduled
    /// run found empty (a fresh installation's first week, articles imported since), never in one
    /// an editor skipped.
    Manual,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This period's digest exists already (another instance, or a rerun), or an editor skipped
    /// the period: nothing sent.
    AlreadyDone {
        period_key: String,
        /// An editor skipped it (rather than a digest having gone out).
        skipped: bool,
        /// When the next period opens, in words ("Monday 7 December 2026 at 08:00 (UTC)").
        next_period: Option<String>,
    },
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
            Outcome::AlreadyDone {
                period_key,
                skipped,
                next_period,
            } => {
                let why = if *skipped {
                    " (an editor skipped it)"
                } else {
                    ""
                };
                write!(
                    f,
                    "the digest of period {period_key} was made already{why}; nothing sent"
                )?;
                if let Some(next) = next_period {
                    write!(f, "; the next period opens on {next}")?;
                }
                write!(f, "; `iria-news digest run --force` makes one now anyway")
            }
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
    let groups = subscriptions::confirmed_by_topics(conn)?;
    plan_for(conn, period_key, now, groups)
}

/// [`plan`] for readers already counted by their choice of topics
/// ([`subscriptions::confirmed_by_topics`]): a page that shows the plan may count them less often
/// than it reads the articles.
pub fn plan_for(
    conn: &mut DbConnection,
    period_key: &str,
    now: NaiveDateTime,
    groups: Vec<(String, i64)>,
) -> QueryResult<Plan> {
    // The window opens at the previous digest's cut-off, less a week of grace for articles that
    // reached the store late (a feed polled after the digest, a CMS push back-dated): an article
    // goes out once, whenever it arrives, unless it is older than that. The first digest looks
    // back a week, so that importing a feed's whole history does not send it all.
    let previous = digests::previous_cutoff(conn)?;
    let after = previous.unwrap_or(now) - chrono::Duration::days(LOOKBACK_DAYS);
    let articles = articles::undigested(conn, Some(after), now)?;
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

/// Makes and queues this period's digest (or, with `dry_run`, says what it would send), as an
/// editor, the API or the command line asks for it ([`Trigger::Manual`]).
pub fn run(
    conn: &mut DbConnection,
    settings: &Settings,
    period_key: &str,
    now: NaiveDateTime,
    dry_run: bool,
) -> Result<Outcome, IssueError> {
    run_as(conn, settings, period_key, now, dry_run, Trigger::Manual)
}

/// The scheduler's run of this period's digest ([`Trigger::Schedule`]).
pub fn run_scheduled(
    conn: &mut DbConnection,
    settings: &Settings,
    period_key: &str,
    now: NaiveDateTime,
) -> Result<Outcome, IssueError> {
    run_as(conn, settings, period_key, now, false, Trigger::Schedule)
}

/// The outcome of a run that found its period closed.
fn already_done(
    settings: &Settings,
    period_key: &str,
    skipped: bool,
    now: NaiveDateTime,
) -> Outcome {
    let schedule = &settings.schedule;
    // The period after this one: after its start when it has not begun yet (the console's
    // coming period), else after now.
    let from =
        Schedule::period_start(period_key).map_or(now.and_utc(), |start| start.max(now.and_utc()));
    Outcome::AlreadyDone {
        period_key: period_key.to_string(),
        skipped,
        next_period: schedule.next(from).map(|t| schedule.local_time(t)),
    }
}

/// Makes and queues this period's digest, once per period, as `trigger` may.
pub fn run_as(
    conn: &mut DbConnection,
    settings: &Settings,
    period_key: &str,
    now: NaiveDateTime,
    dry_run: bool,
    trigger: Trigger,
) -> Result<Outcome, IssueError> {
    let state = digests::state_of(conn, period_key)?;
    let open = match state {
        None => true,
        Some(PeriodState::Empty) => trigger == Trigger::Manual,
        Some(PeriodState::Sent | PeriodState::Skipped) => false,
    };
    if !open {
        let skipped = state == Some(PeriodState::Skipped);
        return Ok(already_done(settings, period_key, skipped, now));
    }
    let plan = plan(conn, period_key, now)?;
    if plan.articles.is_empty() {
        // The scheduler closes the period all the same: a restart later in the week sends
        // nothing. A manual run closes nothing, so that a "send now" with nothing to send does
        // not keep the coming digest from its scheduled time.
        if !dry_run && trigger == Trigger::Schedule && state.is_none() {
            digests::record_empty(conn, period_key, now)?;
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
    queue(conn, settings, &plan, now, trigger)
}

/// Composes the plan's issues and queues them, recording the period as sent, in one transaction.
fn queue(
    conn: &mut DbConnection,
    settings: &Settings,
    plan: &Plan,
    now: NaiveDateTime,
    trigger: Trigger,
) -> Result<Outcome, IssueError> {
    // Compose outside the transaction (CSS inlining is the slow part), write inside it.
    let mut composed: Vec<(String, Composed)> = Vec::new();
    for audience in plan.audiences.iter().filter(|a| !a.articles.is_empty()) {
        let picked: Vec<&Article> = audience
            .articles
            .iter()
            .map(|i| &plan.articles[*i])
            .collect();
        let mut issue = compose::compose(settings, &draft(settings, &picked, now)?)?;
        // Each article's link is known as that article's, for the articles page.
        for link in &mut issue.links.links {
            link.article_id = picked.iter().find(|a| a.link == link.url).map(|a| a.id);
        }
        composed.push((audience.topics.clone(), issue));
    }
    let period_key = plan.period_key.as_str();
    let inserted = db::write_transaction(conn, |conn| {
        let articles = plan.articles.len() as i32;
        let over_empty = trigger == Trigger::Manual;
        // `None`: another instance made this period's digest a moment ago.
        let Some(digest_id) =
            digests::record_sent(conn, period_key, plan.cutoff, articles, now, over_empty)?
        else {
            return Ok(None);
        };
        let mut queued = Vec::new();
        for (topics, issue) in &composed {
            queued.push(issues::create_digest_issue(
                conn, issue, topics, digest_id, now,
            )?);
        }
        delivery::analyse_if_large(conn, queued.iter().map(|(_, copies)| copies).sum())?;
        let ids: Vec<i64> = plan.articles.iter().map(|a| a.id).collect();
        articles::mark_digested(conn, &ids, digest_id)?;
        Ok::<_, IssueError>(Some((digest_id, queued)))
    })?;
    Ok(match inserted {
        None => {
            let skipped = digests::state_of(conn, period_key)? == Some(PeriodState::Skipped);
            already_done(settings, period_key, skipped, now)
        }
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
    let mut composed = compose::compose(settings, &draft(settings, &all, now)?)?;
    // A preview is read, not sent: its links are the plain addresses, and no hidden link.
    let urls: Vec<String> = composed.links.links.iter().map(|l| l.url.clone()).collect();
    composed.html = crate::processes::tracked_links::untracked(&composed.html, &urls, true);
    composed.text = crate::processes::tracked_links::untracked(&composed.text, &urls, false);
    composed.links = Default::default();
    Ok(Some(composed))
}

/// One archived digest and its articles.
pub fn archived(conn: &mut DbConnection, id: i64) -> QueryResult<Option<(Archived, Vec<Article>)>> {
    let Some(d) = digests::find(conn, id)? else {
        return Ok(None);
    };
    let list = articles::of_digest(conn, id)?;
    Ok(Some((d, list)))
}
