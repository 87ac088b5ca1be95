//! `/api/v1/digest`: what the coming digest holds, and making it now.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::articles::ArticleOut;
use super::{run, Answer, ApiError, Problem};
use crate::foundation::db::{self, DbError};
use crate::http::state::AppState;
use crate::processes::digest::{self, Outcome};
use crate::stores::digests;
use crate::stores::issues::IssueError;

/// The coming digest.
#[derive(Serialize, ToSchema)]
pub struct DigestPreview {
    /// When it is scheduled, if the schedule has a next time.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Whether it was made (or skipped) already.
    pub done: bool,
    pub articles: Vec<ArticleOut>,
    /// As a reader of all topics gets it; absent when there is no article.
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// What the coming digest holds, as a reader of all topics would get it now.
#[utoipa::path(get, path = "/api/v1/digest/preview", tag = "digest", security(("bearer" = ["issues:read"])),
    responses((status = 200, body = DigestPreview), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json")))]
pub async fn digest_preview(state: web::Data<AppState>) -> Answer {
    let settings = state.settings.clone();
    let next = settings.schedule.next(Utc::now());
    let key = next.map(|n| settings.schedule.period_key(n));
    let (plan, composed, done) = run(&state, move |conn| {
        let now = db::now();
        let plan = digest::plan(conn, "preview", now)?;
        let composed = digest::preview(conn, &settings, now).map_err(db_error)?;
        let done = match &key {
            Some(k) => digests::is_done(conn, k)?,
            None => false,
        };
        Ok((plan, composed, done))
    })
    .await?;
    Ok(HttpResponse::Ok().json(DigestPreview {
        scheduled_for: next,
        done,
        articles: plan.articles.into_iter().map(ArticleOut::from).collect(),
        subject: composed.as_ref().map(|c| c.subject.clone()),
        html: composed.as_ref().map(|c| c.html.clone()),
        text: composed.map(|c| c.text),
    }))
}

/// Options of a digest run.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Say what would be sent; send nothing.
    pub dry_run: Option<bool>,
}

/// What a digest run did.
#[derive(Serialize, ToSchema)]
pub struct DigestRun {
    /// queued, already_done, no_articles or dry_run.
    pub outcome: String,
    pub period_key: String,
    pub articles: usize,
    /// The issues queued, one per audience.
    pub issues: Vec<QueuedIssue>,
    /// In words.
    pub summary: String,
}

/// One issue a digest run queued.
#[derive(Serialize, ToSchema)]
pub struct QueuedIssue {
    pub issue_id: i64,
    pub recipients: usize,
}

/// Make and send the coming digest now (its scheduled run then finds it done: once a week).
#[utoipa::path(post, path = "/api/v1/digest/run", tag = "digest", security(("bearer" = ["digest:run"])), params(RunQuery),
    responses((status = 200, body = DigestRun), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn digest_run(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<RunQuery>,
) -> Answer {
    let settings = state.settings.clone();
    let Some(next) = settings.schedule.next(Utc::now()) else {
        return Err(ApiError::bad(
            StatusCode::CONFLICT,
            "No schedule",
            "The digest schedule has no next time.",
        ));
    };
    let key = settings.schedule.period_key(next);
    let dry_run = q.dry_run.unwrap_or(false);
    let period_key = key.clone();
    let outcome = run(&state, move |conn| {
        digest::run(conn, &settings, &key, db::now(), dry_run).map_err(db_error)
    })
    .await?;
    let summary = outcome.to_string();
    if !dry_run {
        super::audit::note(&state, &req, "digest run", summary.clone()).await;
    }
    let (name, articles, issues) = match outcome {
        Outcome::Queued {
            articles, issues, ..
        } => {
            state.wake.notify_waiters();
            let issues = issues
                .into_iter()
                .map(|(issue_id, recipients)| QueuedIssue {
                    issue_id,
                    recipients,
                })
                .collect();
            ("queued", articles, issues)
        }
        Outcome::AlreadyDone { .. } => ("already_done", 0, vec![]),
        Outcome::NoArticles => ("no_articles", 0, vec![]),
        Outcome::DryRun { articles, .. } => ("dry_run", articles, vec![]),
    };
    Ok(HttpResponse::Ok().json(DigestRun {
        outcome: name.into(),
        period_key,
        articles,
        issues,
        summary,
    }))
}

/// A digest that cannot be made as an error of the query that tried: a database fault keeps its
/// kind (so an outage stays a 503), anything else is reported as it is.
fn db_error(e: IssueError) -> DbError {
    match e {
        IssueError::Db(e) => e,
        other => DbError::Other(other.to_string()),
    }
}
