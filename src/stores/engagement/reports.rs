//! Engagement reports: what the console and the API show of an issue's clicks, read from the
//! links' counters (clicks that name no reader) and the click rows (`personal` mode) together,
//! so that a reader's erasure, which folds their rows into the counters, changes no total.
//!
//! - reader clicks: the counters' `clicks` of the issue's own links (positions 1..) and the rows
//!   there that are not a machine's;
//! - machine clicks: the counters' `machine_clicks` of the hidden link and the issue's links, and
//!   the rows found to be a machine's (every click on the hidden link is one);
//! - unique clickers (`personal` only): the copies with a reader click;
//! - opens (open tracking only): the open image's counter and rows that are not a machine's;
//! - the click rate: unique clickers per copy delivered in `personal` mode, reader clicks per copy
//!   delivered otherwise.

use std::collections::HashMap;

use diesel::dsl::{count, count_star, exists};
use diesel::prelude::*;

use crate::foundation::config::{ClickTracking, Settings};
use crate::foundation::db::schema::{articles, clicks, deliveries, issue_links, issues};
use crate::foundation::db::DbConnection;
use crate::foundation::tracking::{OPEN_POSITION, TRAP_POSITION};

/// What a report shows under the site's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    /// Unique clickers (clicks are recorded per copy).
    pub unique: bool,
    /// Opens (open tracking is on).
    pub opens: bool,
}

impl Shown {
    pub fn of(settings: &Settings) -> Self {
        Self {
            unique: settings.click_tracking == ClickTracking::Personal,
            opens: settings.open_tracking,
        }
    }
}

/// One link of an issue (positions 1..) with its reader clicks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkReport {
    pub position: i32,
    pub url: String,
    pub article_id: Option<i64>,
    pub clicks: i64,
    pub unique_clickers: Option<i64>,
}

/// One issue's engagement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssueReport {
    pub issue_id: i64,
    /// Copies delivered (`sent`).
    pub delivered: i64,
    pub clicks: i64,
    pub machine_clicks: i64,
    pub unique_clickers: Option<i64>,
    pub opens: Option<i64>,
    /// The issue's links in order (not the hidden link, not the open image).
    pub links: Vec<LinkReport>,
    /// Whether its links were tracked at all (composed with click tracking on).
    pub tracked: bool,
}

impl IssueReport {
    /// Unique clickers (or, without them, reader clicks) per copy delivered; `None` before any
    /// copy is delivered.
    pub fn click_rate(&self) -> Option<f64> {
        (self.delivered > 0)
            .then(|| self.unique_clickers.unwrap_or(self.clicks) as f64 / self.delivered as f64)
    }
}

/// Counts of click rows: (issue, position, machine) → rows.
type RowCounts = HashMap<(i64, i32, bool), i64>;
/// Distinct copies with a reader click: by issue, and by issue and position.
type Uniques = (HashMap<i64, i64>, HashMap<(i64, i32), i64>);

/// The engagement of these issues, in their order (an unknown id gives an empty report).
pub fn reports_of(
    conn: &mut DbConnection,
    issue_ids: &[i64],
    shown: Shown,
) -> QueryResult<Vec<IssueReport>> {
    let delivered = delivered_counts(conn, issue_ids)?;
    reports_given(conn, issue_ids, shown, delivered)
}

/// Copies delivered (sent) of each issue: a read of every sent copy, about 100 ms at half a
/// million.
fn delivered_counts(conn: &mut DbConnection, issue_ids: &[i64]) -> QueryResult<HashMap<i64, i64>> {
    Ok(deliveries::table
        .filter(deliveries::issue_id.eq_any(issue_ids))
        .filter(deliveries::status.eq("sent"))
        .group_by(deliveries::issue_id)
        .select((deliveries::issue_id, count_star()))
        .load::<(Option<i64>, i64)>(conn)?
        .into_iter()
        .filter_map(|(id, n)| Some((id?, n)))
        .collect())
}

/// [`reports_of`] with the copies delivered counted already.
fn reports_given(
    conn: &mut DbConnection,
    issue_ids: &[i64],
    shown: Shown,
    delivered: HashMap<i64, i64>,
) -> QueryResult<Vec<IssueReport>> {
    let links: Vec<LinkRow> = issue_links::table
        .filter(issue_links::issue_id.eq_any(issue_ids))
        .order((issue_links::issue_id, issue_links::position))
        .select((
            issue_links::issue_id,
            issue_links::position,
            issue_links::url,
            issue_links::article_id,
            issue_links::clicks,
            issue_links::machine_clicks,
        ))
        .load(conn)?;
    let rows = row_counts(conn, issue_ids)?;
    let (unique, unique_by_link) = if shown.unique {
        uniques(conn, issue_ids)?
    } else {
        Default::default()
    };
    let found = Found {
        delivered,
        links,
        rows,
        unique,
        unique_by_link,
    };
    Ok(issue_ids
        .iter()
        .map(|&id| found.report(id, shown))
        .collect())
}

/// What [`reports_of`] read, to be folded into each issue's report.
struct Found {
    delivered: HashMap<i64, i64>,
    links: Vec<LinkRow>,
    rows: RowCounts,
    unique: HashMap<i64, i64>,
    unique_by_link: HashMap<(i64, i32), i64>,
}

/// A link's row: (issue, position, url, article, clicks, machine clicks).
type LinkRow = (i64, i32, String, Option<i64>, i64, i64);

impl Found {
    fn report(&self, id: i64, shown: Shown) -> IssueReport {
        let rows_at = |position: i32, machine: bool| {
            self.rows
                .get(&(id, position, machine))
                .copied()
                .unwrap_or(0)
        };
        let mut report = IssueReport {
            issue_id: id,
            delivered: self.delivered.get(&id).copied().unwrap_or(0),
            unique_clickers: shown
                .unique
                .then(|| self.unique.get(&id).copied().unwrap_or(0)),
            opens: shown.opens.then_some(0),
            ..Default::default()
        };
        for (_, position, url, article_id, counted, machine) in
            self.links.iter().filter(|l| l.0 == id).cloned()
        {
            report.tracked = true;
            if position == OPEN_POSITION {
                report.opens = report.opens.map(|o| o + counted + rows_at(position, false));
                continue;
            }
            // Every click on the hidden link is a machine's, however it was counted.
            let (reader, by_machine) = if position == TRAP_POSITION {
                (
                    0,
                    machine + rows_at(position, true) + counted + rows_at(position, false),
                )
            } else {
                (
                    counted + rows_at(position, false),
                    machine + rows_at(position, true),
                )
            };
            report.clicks += reader;
            report.machine_clicks += by_machine;
            if position > TRAP_POSITION {
                report.links.push(LinkReport {
                    position,
                    url,
                    article_id,
                    clicks: reader,
                    unique_clickers: shown.unique.then(|| {
                        self.unique_by_link
                            .get(&(id, position))
                            .copied()
                            .unwrap_or(0)
                    }),
                });
            }
        }
        report
    }
}

/// One issue's engagement; `None` when there is no such issue. `delivered`: its copies sent,
/// when the caller counted them already (the issue's page, from its progress), else counted here.
pub fn report_of(
    conn: &mut DbConnection,
    issue_id: i64,
    shown: Shown,
    delivered: Option<i64>,
) -> QueryResult<Option<IssueReport>> {
    let known: Option<i64> = issues::table
        .find(issue_id)
        .select(issues::id)
        .first(conn)
        .optional()?;
    if known.is_none() {
        return Ok(None);
    }
    let delivered = match delivered {
        Some(n) => HashMap::from([(issue_id, n)]),
        None => delivered_counts(conn, &[issue_id])?,
    };
    Ok(reports_given(conn, &[issue_id], shown, delivered)?.pop())
}

fn row_counts(conn: &mut DbConnection, issue_ids: &[i64]) -> QueryResult<RowCounts> {
    let rows: Vec<(i64, i32, bool, i64)> = clicks::table
        .filter(clicks::issue_id.eq_any(issue_ids))
        .group_by((clicks::issue_id, clicks::position, clicks::machine))
        .select((
            clicks::issue_id,
            clicks::position,
            clicks::machine,
            count_star(),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(issue, position, machine, n)| ((issue, position, machine), n))
        .collect())
}

fn uniques(conn: &mut DbConnection, issue_ids: &[i64]) -> QueryResult<Uniques> {
    let readers = || {
        clicks::table
            .filter(clicks::issue_id.eq_any(issue_ids))
            .filter(clicks::machine.eq(false))
            .filter(clicks::position.gt(TRAP_POSITION))
    };
    let by_issue: Vec<(i64, i64)> = readers()
        .group_by(clicks::issue_id)
        .select((
            clicks::issue_id,
            count(clicks::delivery_id).aggregate_distinct(),
        ))
        .load(conn)?;
    let by_link: Vec<(i64, i32, i64)> = readers()
        .group_by((clicks::issue_id, clicks::position))
        .select((
            clicks::issue_id,
            clicks::position,
            count(clicks::delivery_id).aggregate_distinct(),
        ))
        .load(conn)?;
    Ok((
        by_issue.into_iter().collect(),
        by_link
            .into_iter()
            .map(|(issue, position, n)| ((issue, position), n))
            .collect(),
    ))
}

/// The digest an issue is one audience's copy of, if any.
pub fn digest_of(conn: &mut DbConnection, issue_id: i64) -> QueryResult<Option<i64>> {
    Ok(issues::table
        .find(issue_id)
        .select(issues::digest_id)
        .first::<Option<i64>>(conn)
        .optional()?
        .flatten())
}

/// The last `n` issues with a delivered copy, oldest first, with their subjects and reports.
pub fn recent(
    conn: &mut DbConnection,
    n: i64,
    shown: Shown,
) -> QueryResult<Vec<(String, IssueReport)>> {
    let mut latest: Vec<(i64, String)> = issues::table
        .filter(exists(
            deliveries::table
                .filter(deliveries::issue_id.eq(issues::id.nullable()))
                .filter(deliveries::status.eq("sent")),
        ))
        .order(issues::id.desc())
        .limit(n)
        .select((issues::id, issues::subject))
        .load(conn)?;
    latest.reverse();
    let ids: Vec<i64> = latest.iter().map(|(id, _)| *id).collect();
    let reports = reports_of(conn, &ids, shown)?;
    Ok(latest
        .into_iter()
        .map(|(_, subject)| subject)
        .zip(reports)
        .collect())
}

/// One topic audience of a digest: the topics it was made for (empty: every topic) and its
/// issue's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceReport {
    pub topics: String,
    pub report: IssueReport,
}

/// One article of a digest (or of all digests): its reader clicks across the audiences' issues
/// that carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArticleReport {
    pub article_id: i64,
    pub title: String,
    pub url: String,
    pub clicks: i64,
    pub unique_clickers: Option<i64>,
    /// How many of the issues carried it.
    pub issues: usize,
}

/// A digest's engagement per audience and per article, from its issues as
/// `stores::issues::of_digest` lists them: (issue, topics).
pub fn digest_report(
    conn: &mut DbConnection,
    audiences: &[(i64, String)],
    shown: Shown,
) -> QueryResult<(Vec<AudienceReport>, Vec<ArticleReport>)> {
    let ids: Vec<i64> = audiences.iter().map(|(id, _)| *id).collect();
    let reports = reports_of(conn, &ids, shown)?;
    let mut by_article: Vec<ArticleReport> = Vec::new();
    for link in reports.iter().flat_map(|r| &r.links) {
        let Some(article_id) = link.article_id else {
            continue;
        };
        let at = match by_article.iter().position(|a| a.article_id == article_id) {
            Some(at) => at,
            None => {
                by_article.push(ArticleReport {
                    article_id,
                    title: String::new(),
                    url: link.url.clone(),
                    clicks: 0,
                    unique_clickers: shown.unique.then_some(0),
                    issues: 0,
                });
                by_article.len() - 1
            }
        };
        let article = &mut by_article[at];
        article.clicks += link.clicks;
        // Each issue holds an address once, and copies of different issues are different
        // readers' deliveries: the sum is exact.
        article.unique_clickers = article
            .unique_clickers
            .map(|u| u + link.unique_clickers.unwrap_or(0));
        article.issues += 1;
    }
    let article_ids: Vec<i64> = by_article.iter().map(|a| a.article_id).collect();
    let titles: HashMap<i64, String> = articles::table
        .filter(articles::id.eq_any(&article_ids))
        .select((articles::id, articles::title))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect();
    for article in &mut by_article {
        article.title = titles.get(&article.article_id).cloned().unwrap_or_default();
    }
    let audiences = audiences
        .iter()
        .zip(reports)
        .map(|((_, topics), report)| AudienceReport {
            topics: topics.clone(),
            report,
        })
        .collect();
    Ok((audiences, by_article))
}

/// Each of these articles' reader clicks across every digest issue that carried it.
pub fn article_clicks(
    conn: &mut DbConnection,
    article_ids: &[i64],
) -> QueryResult<HashMap<i64, i64>> {
    let links: Vec<(i64, i32, Option<i64>, i64)> = issue_links::table
        .filter(issue_links::article_id.eq_any(article_ids))
        .filter(issue_links::position.gt(TRAP_POSITION))
        .select((
            issue_links::issue_id,
            issue_links::position,
            issue_links::article_id,
            issue_links::clicks,
        ))
        .load(conn)?;
    let mut issue_ids: Vec<i64> = links.iter().map(|l| l.0).collect();
    issue_ids.sort_unstable();
    issue_ids.dedup();
    let mut rows: RowCounts = HashMap::new();
    for chunk in issue_ids.chunks(5000) {
        rows.extend(row_counts(conn, chunk)?);
    }
    let mut out: HashMap<i64, i64> = article_ids.iter().map(|id| (*id, 0)).collect();
    for (issue_id, position, article_id, counted) in links {
        let Some(article_id) = article_id else {
            continue;
        };
        let reader = counted + rows.get(&(issue_id, position, false)).copied().unwrap_or(0);
        *out.entry(article_id).or_default() += reader;
    }
    Ok(out)
}
