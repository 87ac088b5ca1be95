//! Engagement in the console: an issue's figures (and, for a digest, each topic audience's and
//! each article's) on its page and as CSV, and the dashboard's chart of the last issues' click
//! rates. The figures are `stores::engagement`'s reports; what each counts is said there.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::{path_id, query, Answer, Fault};
use crate::foundation::config::Settings;
use crate::foundation::db::{DbConnection, DbError};
use crate::http::state::AppState;
use crate::stores::engagement::{self, ArticleReport, AudienceReport, IssueReport, Shown};

/// Issues the dashboard's click rate chart covers.
pub const RATE_CHART_ISSUES: i64 = 12;

/// An issue's engagement as its page shows it.
pub struct Engagement {
    pub shown: Shown,
    pub report: IssueReport,
    /// A digest's topic audiences (its issues), this one among them; empty for an announcement.
    pub audiences: Vec<AudienceReport>,
    /// A digest's articles with their clicks across its audiences.
    pub articles: Vec<ArticleReport>,
}

impl Engagement {
    /// The engagement of an issue; `None` when there is no such issue. `delivered`: its copies
    /// sent, when the caller counted them already.
    pub fn load(
        conn: &mut DbConnection,
        settings: &Settings,
        issue_id: i64,
        delivered: Option<i64>,
    ) -> Result<Option<Self>, DbError> {
        let shown = Shown::of(settings);
        let Some(report) = engagement::report_of(conn, issue_id, shown, delivered)? else {
            return Ok(None);
        };
        let (audiences, articles) = match engagement::digest_of(conn, issue_id)? {
            Some(digest_id) => {
                let issues = crate::stores::issues::of_digest(conn, digest_id)?;
                engagement::digest_report(conn, &issues, shown)?
            }
            None => Default::default(),
        };
        Ok(Some(Self {
            shown,
            report,
            audiences,
            articles,
        }))
    }
}

/// A click rate as a percentage with one decimal ("12.5%"), or a dash before any delivery.
pub fn percent(report: &IssueReport) -> String {
    report
        .click_rate()
        .map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "—".to_string())
}

/// A digest audience's topics as a person reads them.
pub fn audience(topics: &str) -> String {
    if topics.is_empty() {
        "every topic".to_string()
    } else {
        topics.replace(',', ", ")
    }
}

use crate::stores::subscriptions::directory::cell;

fn opt(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

/// The columns of the CSV: one row for the issue, one per link, and for a digest one per
/// audience and one per article; a column that does not apply to a row is empty.
pub const CSV_HEADER: [&str; 13] = [
    "row",
    "issue_id",
    "audience",
    "position",
    "url",
    "article_id",
    "article",
    "delivered",
    "clicks",
    "machine_clicks",
    "unique_clickers",
    "opens",
    "click_rate",
];

/// One issue's (or audience's) figures as a CSV row.
fn totals_row(kind: &str, topics: &str, r: &IssueReport) -> [String; 13] {
    [
        kind.to_string(),
        r.issue_id.to_string(),
        cell(topics),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        r.delivered.to_string(),
        r.clicks.to_string(),
        r.machine_clicks.to_string(),
        opt(r.unique_clickers),
        opt(r.opens),
        r.click_rate()
            .map(|x| format!("{x:.4}"))
            .unwrap_or_default(),
    ]
}

/// The engagement as CSV, with a header row.
pub fn to_csv(e: &Engagement) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_HEADER)?;
    out.write_record(totals_row("issue", "", &e.report))?;
    for l in &e.report.links {
        out.write_record([
            "link".to_string(),
            e.report.issue_id.to_string(),
            String::new(),
            l.position.to_string(),
            cell(&l.url),
            opt(l.article_id),
            String::new(),
            String::new(),
            l.clicks.to_string(),
            String::new(),
            opt(l.unique_clickers),
            String::new(),
            String::new(),
        ])?;
    }
    for a in &e.audiences {
        out.write_record(totals_row("audience", &audience(&a.topics), &a.report))?;
    }
    for a in &e.articles {
        out.write_record([
            "article".to_string(),
            String::new(),
            String::new(),
            String::new(),
            cell(&a.url),
            a.article_id.to_string(),
            cell(&a.title),
            String::new(),
            a.clicks.to_string(),
            String::new(),
            opt(a.unique_clickers),
            String::new(),
            String::new(),
        ])?;
    }
    out.into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// `GET /admin/issues/{id}/engagement.csv`: the issue page's figures as CSV.
pub async fn csv(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = path_id(&path)?;
    let settings = state.settings.clone();
    let found = query(&state, move |conn| {
        Engagement::load(conn, &settings, id, None)
    })
    .await?;
    let e = found.ok_or(Fault::NotFound)?;
    let body = to_csv(&e).map_err(|e| Fault::Internal(format!("writing the CSV: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"issue-{id}-engagement.csv\""),
        ))
        .body(body))
}

/// One bar of the click rate chart.
pub struct RateBar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    pub issue_id: i64,
    /// "Subject: 12.5%".
    pub label: String,
    pub percent: String,
}

/// The dashboard's chart of the last issues' click rates, as SVG bars, oldest on the left.
pub struct RateChart {
    pub width: i64,
    pub height: i64,
    pub bars: Vec<RateBar>,
    /// The rate at the top of the chart.
    pub top: String,
    /// What the rate is: unique clickers or reader clicks per copy delivered.
    pub per: &'static str,
}

impl RateChart {
    /// The last [`RATE_CHART_ISSUES`] issues with a delivered copy.
    pub fn load(conn: &mut DbConnection, settings: &Settings) -> Result<Self, DbError> {
        let shown = Shown::of(settings);
        let recent = engagement::recent(conn, RATE_CHART_ISSUES, shown)?;
        Ok(Self::draw(&recent, shown))
    }

    pub fn draw(issues: &[(String, IssueReport)], shown: Shown) -> Self {
        let (width, height) = (720i64, 160i64);
        let rates: Vec<f64> = issues
            .iter()
            .map(|(_, r)| r.click_rate().unwrap_or(0.0))
            .collect();
        // The top: the highest rate rounded up to a tenth (at least 10 %).
        let max = rates.iter().copied().fold(0.0f64, f64::max);
        let top = ((max * 10.0).ceil() / 10.0).max(0.1);
        let slot = width / RATE_CHART_ISSUES;
        let bars = issues
            .iter()
            .zip(&rates)
            .enumerate()
            .map(|(i, ((subject, report), rate))| {
                let h = ((rate / top) * (height - 20) as f64).round() as i64;
                let percent = percent(report);
                RateBar {
                    x: i as i64 * slot + 4,
                    y: height - 1 - h,
                    width: slot - 8,
                    height: h,
                    issue_id: report.issue_id,
                    label: format!("{subject}: {percent}"),
                    percent,
                }
            })
            .collect();
        Self {
            width,
            height,
            bars,
            top: format!("{:.0}%", top * 100.0),
            per: if shown.unique {
                "unique clickers per copy delivered"
            } else {
                "reader clicks per copy delivered"
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: i64, delivered: i64, clicks: i64) -> IssueReport {
        IssueReport {
            issue_id: id,
            delivered,
            clicks,
            tracked: true,
            ..Default::default()
        }
    }

    const ANONYMOUS: Shown = Shown {
        unique: false,
        opens: false,
    };

    #[test]
    fn the_rate_is_a_dash_before_any_delivery_and_a_percentage_after() {
        assert_eq!(percent(&report(1, 0, 0)), "—");
        assert_eq!(percent(&report(1, 3, 1)), "33.3%");
        let mut personal = report(1, 4, 9);
        personal.unique_clickers = Some(1);
        assert_eq!(percent(&personal), "25.0%", "unique clickers, not clicks");
    }

    #[test]
    fn the_chart_scales_its_bars_to_the_highest_rate_oldest_first() {
        let issues = vec![
            ("first".to_string(), report(1, 10, 1)),
            ("second".to_string(), report(2, 10, 4)),
            ("third".to_string(), report(3, 0, 0)),
        ];
        let chart = RateChart::draw(&issues, ANONYMOUS);
        assert_eq!(chart.top, "40%");
        let heights: Vec<i64> = chart.bars.iter().map(|b| b.height).collect();
        let full = chart.height - 20;
        assert_eq!(heights, vec![full / 4, full, 0]);
        assert!(chart.bars[0].x < chart.bars[1].x);
        assert_eq!(chart.bars[1].label, "second: 40.0%");
        assert!(chart
            .bars
            .iter()
            .all(|b| b.y + b.height == chart.height - 1 && b.x + b.width <= chart.width));
        assert!(RateChart::draw(&[], ANONYMOUS).bars.is_empty());
    }

    #[test]
    fn the_csv_has_its_header_and_keeps_formulas_out() {
        let mut r = report(7, 2, 1);
        r.links.push(engagement::LinkReport {
            position: 1,
            url: "=HYPERLINK(\"x\")".into(),
            article_id: None,
            clicks: 1,
            unique_clickers: None,
        });
        let e = Engagement {
            shown: ANONYMOUS,
            report: r,
            audiences: vec![],
            articles: vec![],
        };
        let csv = String::from_utf8(to_csv(&e).expect("csv")).expect("utf-8");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(lines[1], "issue,7,,,,,,2,1,0,,,0.5000");
        assert_eq!(lines[2], "link,7,,1,\"'=HYPERLINK(\"\"x\"\")\",,,,1,,,,");
    }
}
