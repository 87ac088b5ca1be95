//! The dashboard: subscribers by status, sign-ups and unsubscribes over 90 days, the next
//! digest, the last issues and how far each has gone out.

use actix_web::{web, HttpRequest};
use askama::Template;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use diesel::prelude::*;

use super::{query, Answer, Chrome};
use crate::foundation::db::{DbConnection, DbError};
use crate::http::pages::html;
use crate::http::progress::ProgressCache;
use crate::http::state::AppState;

/// Days the chart covers.
pub const CHART_DAYS: i64 = 90;

/// An issue with its deliveries counted by status.
pub struct IssueProgress {
    pub summary: crate::stores::issues::Summary,
    pub counts: crate::stores::delivery::Progress,
}

impl IssueProgress {
    pub fn of(
        summary: crate::stores::issues::Summary,
        counts: &[(Option<i64>, String, i64)],
    ) -> Self {
        Self {
            counts: crate::stores::delivery::Progress::of(summary.id, counts),
            summary,
        }
    }
}

/// The last `n` issues with their progress.
pub fn last_issues(
    conn: &mut DbConnection,
    progress: &ProgressCache,
    n: i64,
    offset: i64,
) -> Result<Vec<IssueProgress>, DbError> {
    let latest = crate::stores::issues::latest(conn, n, offset)?;
    let ids: Vec<i64> = latest.iter().map(|s| s.id).collect();
    let counts = progress.progress_of(conn, &ids)?;
    Ok(latest
        .into_iter()
        .map(|s| IssueProgress::of(s, &counts))
        .collect())
}

#[derive(QueryableByName)]
struct DayCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    day: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Events per day since `since` for a timestamp column of `subscribers`.
fn per_day(
    conn: &mut DbConnection,
    column: &str,
    since: chrono::NaiveDateTime,
) -> QueryResult<Vec<(NaiveDate, i64)>> {
    // Only the two fixed column names below reach this string.
    let rows: Vec<DayCount> = match conn {
        DbConnection::Pg(c) => diesel::sql_query(format!(
            "SELECT to_char(d, 'YYYY-MM-DD') AS day, n FROM (SELECT {column}::date AS d, \
             count(*) AS n FROM subscribers WHERE {column} >= $1 GROUP BY 1) AS days"
        ))
        .bind::<diesel::sql_types::Timestamp, _>(since)
        .load(c)?,
        DbConnection::Sqlite(c) => diesel::sql_query(format!(
            "SELECT strftime('%Y-%m-%d', {column}) AS day, count(*) AS n FROM subscribers \
             WHERE {column} >= ? GROUP BY 1"
        ))
        .bind::<diesel::sql_types::Timestamp, _>(since)
        .load(c)?,
    };
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((NaiveDate::parse_from_str(&r.day, "%Y-%m-%d").ok()?, r.n)))
        .collect())
}

/// The dashboard's chart: sign-ups and unsubscribes per day, as SVG polyline points.
pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub signups: String,
    pub unsubscribes: String,
    pub max: i64,
    pub total_signups: i64,
    pub total_unsubscribes: i64,
    pub first_day: String,
    pub last_day: String,
}

impl Chart {
    pub fn draw(
        today: NaiveDate,
        signups: &[(NaiveDate, i64)],
        unsubscribes: &[(NaiveDate, i64)],
    ) -> Self {
        let (width, height) = (720i64, 160i64);
        let first = today - chrono::Duration::days(CHART_DAYS - 1);
        let series = |events: &[(NaiveDate, i64)]| -> Vec<i64> {
            (0..CHART_DAYS)
                .map(|i| {
                    let day = first + chrono::Duration::days(i);
                    events
                        .iter()
                        .filter(|(d, _)| *d == day)
                        .map(|(_, n)| n)
                        .sum()
                })
                .collect()
        };
        let (s, u) = (series(signups), series(unsubscribes));
        let max = s.iter().chain(u.iter()).copied().max().unwrap_or(0).max(1);
        let points = |values: &[i64]| -> String {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = i as i64 * (width - 1) / (CHART_DAYS - 1);
                    let y = height - 1 - v * (height - 10) / max;
                    format!("{x},{y}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        Self {
            width,
            height,
            signups: points(&s),
            unsubscribes: points(&u),
            max,
            total_signups: s.iter().sum(),
            total_unsubscribes: u.iter().sum(),
            first_day: first.format("%-d %b").to_string(),
            last_day: today.format("%-d %b").to_string(),
        }
    }
}

struct NextDigest {
    at: String,
    articles: Vec<String>,
    recipients: i64,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    figures: Arc<Figures>,
    /// The last issues' click rates, beside `chart`.
    rates: super::engagement::RateChart,
    issues: Vec<IssueProgress>,
}

/// With at least this many subscribers the dashboard's figures are counted at most once a
/// [`FIGURES_TTL`]: counting a million rows on every view is what made the dashboard slow.
pub const CACHE_FROM_SUBSCRIBERS: i64 = 100_000;
/// How long counted figures are shown again (with at least [`CACHE_FROM_SUBSCRIBERS`]).
pub const FIGURES_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The dashboard's figures about subscribers, which read the whole table.
struct Figures {
    by_status: Vec<(String, i64)>,
    chart: Chart,
    next_digest: Option<NextDigest>,
    /// Readers unsubscribed as inactive by re-permission (they did not answer in time).
    inactive_unsubscribed: i64,
    /// When they were counted, when they are shown again ("as of"); `None`: counted now.
    cached_at: Option<String>,
}

/// Counts the dashboard's figures.
fn count_figures(
    conn: &mut DbConnection,
    next_at: Option<chrono::DateTime<Utc>>,
    tz: &str,
) -> Result<Figures, DbError> {
    let mut by_status = crate::stores::subscriptions::counts_by_status(conn)?;
    let order = [
        "confirmed",
        "pending",
        "unsubscribed",
        "bounced",
        "complained",
    ];
    by_status.sort_by_key(|(s, _)| order.iter().position(|o| o == s).unwrap_or(order.len()));
    let now = crate::foundation::db::now();
    let since =
        (now.date() - chrono::Duration::days(CHART_DAYS - 1)).and_time(chrono::NaiveTime::MIN);
    let chart = Chart::draw(
        now.date(),
        &per_day(conn, "created_at", since)?,
        &per_day(conn, "unsubscribed_at", since)?,
    );
    let next_digest = match next_at {
        Some(at) => {
            let plan = crate::processes::digest::plan(conn, "preview", now)?;
            let local = at.with_timezone(&tz.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC));
            Some(NextDigest {
                at: local.format("%A %-d %B %Y, %H:%M %Z").to_string(),
                recipients: plan
                    .audiences
                    .iter()
                    .filter(|a| !a.articles.is_empty())
                    .map(|a| a.subscribers)
                    .sum(),
                articles: plan.articles.into_iter().map(|a| a.title).collect(),
            })
        }
        None => None,
    };
    let inactive_unsubscribed =
        crate::stores::subscriptions::repermission::unsubscribed_as_inactive(conn)?;
    Ok(Figures {
        by_status,
        chart,
        next_digest,
        inactive_unsubscribed,
        cached_at: None,
    })
}

/// The figures counted less than [`FIGURES_TTL`] ago, if the last count was kept.
fn kept_figures(state: &AppState) -> Option<Arc<Figures>> {
    let kept = state.figures.0.lock().ok()?;
    let (at, figures) = kept.as_ref()?;
    if at.elapsed() > FIGURES_TTL {
        return None;
    }
    figures.clone().downcast::<Figures>().ok()
}

/// Keeps these figures when the table is large enough for counting it to cost.
fn keep_figures(state: &AppState, mut figures: Figures) -> Arc<Figures> {
    let total: i64 = figures.by_status.iter().map(|(_, n)| n).sum();
    if total < CACHE_FROM_SUBSCRIBERS {
        return Arc::new(figures);
    }
    let counted = Utc::now().format("%H:%M:%S UTC").to_string();
    figures.cached_at = Some(counted);
    let figures = Arc::new(figures);
    if let Ok(mut kept) = state.figures.0.lock() {
        *kept = Some((std::time::Instant::now(), figures.clone()));
    }
    figures
}

/// `GET /admin`.
pub async fn page(state: web::Data<AppState>, req: HttpRequest) -> Answer {
    let next_at = state.settings.schedule.next(Utc::now());
    let tz = state.settings.timezone.clone();
    let settings = state.settings.clone();
    let kept = kept_figures(&state);
    let need_count = kept.is_none();
    let progress = state.progress.clone();
    let (counted, issues, rates) = query(&state, move |conn| {
        let counted = match need_count {
            true => Some(count_figures(conn, next_at, &tz)?),
            false => None,
        };
        let issues = last_issues(conn, &progress, 10, 0)?;
        let rates = super::engagement::RateChart::load(conn, &settings)?;
        Ok((counted, issues, rates))
    })
    .await?;
    let figures = match (kept, counted) {
        (Some(kept), _) => kept,
        (None, Some(counted)) => keep_figures(&state, counted),
        (None, None) => return Err(super::Fault::Db(DbError::Other("no figures".into()))),
    };
    Ok(html(
        actix_web::http::StatusCode::OK,
        &DashboardPage {
            chrome: Chrome::new(&state, &req, "dashboard"),
            figures,
            rates,
            issues,
        },
    ))
}

/// The issues of these digests with their progress: (digest, issue).
pub fn issues_of_digests(
    conn: &mut DbConnection,
    progress: &ProgressCache,
    digest_ids: &[i64],
) -> Result<Vec<(i64, IssueProgress)>, DbError> {
    use crate::foundation::db::schema::issues;
    let rows: Vec<(Option<i64>, crate::stores::issues::Summary)> = issues::table
        .filter(issues::digest_id.eq_any(digest_ids))
        .order(issues::id)
        .select((
            issues::digest_id,
            crate::stores::issues::Summary::as_select(),
        ))
        .load(conn)?;
    let issue_ids: Vec<i64> = rows.iter().map(|(_, s)| s.id).collect();
    let counts = progress.progress_of(conn, &issue_ids)?;
    Ok(rows
        .into_iter()
        .filter_map(|(digest_id, summary)| Some((digest_id?, IssueProgress::of(summary, &counts))))
        .collect())
}
