//! `/api/v1/issues/{id}/engagement`: an issue's delivered copies, reader and machine clicks,
//! unique clickers (`personal` mode only), opens (open tracking only) and each link's clicks.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{id_of, run, Answer, ApiError, Problem};
use crate::http::state::AppState;
use crate::stores::engagement::{self, IssueReport, Shown};

/// One link of the issue, in the order of the issue.
#[derive(Serialize, ToSchema)]
pub struct LinkEngagement {
    pub url: String,
    /// Reader clicks (machines' not counted).
    #[schema(minimum = 0)]
    pub clicks: i64,
    /// Copies with a reader click on this link; null unless click tracking is `personal`.
    #[schema(required = true, minimum = 0)]
    pub unique_clickers: Option<i64>,
}

/// An issue's engagement.
#[derive(Serialize, ToSchema)]
pub struct Engagement {
    pub issue_id: i64,
    /// Copies delivered.
    #[schema(minimum = 0)]
    pub delivered: i64,
    /// Reader clicks on the issue's links.
    #[schema(minimum = 0)]
    pub clicks: i64,
    /// Clicks found to be a machine's (the hidden link, scanners, the first seconds, bursts).
    #[schema(minimum = 0)]
    pub machine_clicks: i64,
    /// Copies with a reader click; null unless click tracking is `personal`.
    #[schema(required = true, minimum = 0)]
    pub unique_clickers: Option<i64>,
    /// Opens (unreliable: Apple Mail and Gmail fetch images for the reader); null unless open
    /// tracking is on.
    #[schema(required = true, minimum = 0)]
    pub opens: Option<i64>,
    pub links: Vec<LinkEngagement>,
}

impl Engagement {
    fn of(report: IssueReport) -> Self {
        Self {
            issue_id: report.issue_id,
            delivered: report.delivered,
            clicks: report.clicks,
            machine_clicks: report.machine_clicks,
            unique_clickers: report.unique_clickers,
            opens: report.opens,
            links: report
                .links
                .into_iter()
                .map(|l| LinkEngagement {
                    url: l.url,
                    clicks: l.clicks,
                    unique_clickers: l.unique_clickers,
                })
                .collect(),
        }
    }
}

/// What readers clicked in one issue.
#[utoipa::path(get, path = "/api/v1/issues/{id}/engagement", tag = "issues", security(("bearer" = ["issues:read"])), params(("id" = i64, Path)),
    responses((status = 200, body = Engagement), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_issue_engagement(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    let shown = Shown::of(&state.settings);
    let report = run(&state, move |conn| {
        Ok(engagement::report_of(conn, id, shown, None)?)
    })
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(Engagement::of(report)))
}
