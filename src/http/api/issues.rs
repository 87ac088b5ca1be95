//! `/api/v1/issues`: the latest issues, a new one (a draft, scheduled or sent at once), one
//! issue with its progress, and sending a draft.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{id_of, paging, run, token_name, topics_of, utc, Answer, ApiError, PageQuery, Problem};
use crate::foundation::access::Scope;
use crate::http::state::AppState;
use crate::processes::compose::{self, Announcement, Door};
use crate::stores::issues::{self, IssueError, When};

/// An issue: an editor's announcement or a digest.
#[derive(Serialize, ToSchema)]
pub struct Issue {
    pub id: i64,
    /// announcement or digest.
    pub kind: String,
    pub subject: String,
    /// draft (see `send_at`) or queued.
    pub status: String,
    /// Recipients queued so far.
    pub recipients: i32,
    /// The audience's topics; empty means everyone.
    pub topics: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    /// When a scheduled draft goes out.
    pub send_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub progress: crate::stores::delivery::Progress,
}

impl Issue {
    fn of(s: issues::Summary, counts: &[(Option<i64>, String, i64)]) -> Self {
        let progress = crate::stores::delivery::Progress::of(s.id, counts);
        Self {
            id: s.id,
            kind: s.kind,
            subject: s.subject,
            status: s.status,
            recipients: s.recipients,
            topics: topics_of(&s.topics),
            created_at: utc(s.created_at),
            queued_at: s.queued_at.map(utc),
            send_at: s.send_at.map(utc),
            created_by: s.created_by,
            progress,
        }
    }
}

/// A page of issues, newest first.
#[derive(Serialize, ToSchema)]
pub struct IssueList {
    pub items: Vec<Issue>,
}

/// The latest issues.
#[utoipa::path(get, path = "/api/v1/issues", tag = "issues", security(("bearer" = ["issues:read"])), params(PageQuery),
    responses((status = 200, body = IssueList), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json")))]
pub async fn list_issues(state: web::Data<AppState>, q: web::Query<PageQuery>) -> Answer {
    let (limit, offset) = paging(q.limit, q.offset)?;
    let progress = state.progress.clone();
    let items = run(&state, move |conn| {
        let latest = issues::latest(conn, limit, offset)?;
        let ids: Vec<i64> = latest.iter().map(|s| s.id).collect();
        let counts = progress.progress_of(conn, &ids)?;
        Ok(latest.into_iter().map(|s| Issue::of(s, &counts)).collect())
    })
    .await?;
    Ok(HttpResponse::Ok().json(IssueList { items }))
}

/// The body's format.
#[derive(Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Markdown,
    Html,
}

/// A new issue. With an `Idempotency-Key` header, sending the same request again returns the
/// issue the first one made and sends nothing more.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIssue {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub subject: String,
    #[serde(default)]
    pub preheader: String,
    /// Markdown or HTML (see `format`); sanitised either way.
    #[schema(min_length = 1, max_length = 60000)]
    pub body: String,
    #[serde(default)]
    pub format: Format,
    /// Of the site's topics; empty or absent means everyone.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Send now (true) or keep as a draft (false, the default) unless `send_at` is given.
    #[serde(default)]
    pub send: bool,
    /// Send at this time (RFC 3339, in the future): the issue waits as a scheduled draft.
    pub send_at: Option<DateTime<Utc>>,
}

/// Create an issue: a draft, a scheduled draft, or sent at once.
///
/// A draft needs `issues:write`; sending or scheduling it (`send` true, or `send_at`) needs
/// `issues:send` as well (403 naming `issues:send` without it, and nothing is made).
#[utoipa::path(post, path = "/api/v1/issues", tag = "issues", security(("bearer" = ["issues:write"])), request_body = NewIssue,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeated request return the first one's issue")),
    responses((status = 201, body = Issue), (status = 200, description = "The issue an earlier request with this Idempotency-Key made", body = Issue),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_issue(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewIssue>,
) -> Answer {
    let body = body.into_inner();
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let when = match (body.send_at, body.send) {
        (Some(at), _) if at <= Utc::now() => {
            return Err(ApiError::invalid("send_at: the time is in the past"))
        }
        (Some(at), _) => When::At(at.naive_utc()),
        (None, true) => When::Now,
        (None, false) => When::Later,
    };
    if !matches!(when, When::Later) {
        if let Some(refused) = super::refused_scope(&req, Scope::IssuesSend) {
            return Ok(refused);
        }
    }
    let draft = Announcement {
        subject: body.subject,
        preheader: body.preheader,
        body: body.body,
        markdown: body.format == Format::Markdown,
        text: None,
        topics: body.topics,
        idempotency_key: key,
    }
    .into_draft(&state.settings, Door::Api)
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    let by = token_name(&req);
    let subject = draft.subject.clone();
    let settings = state.settings.clone();
    let made = run(&state, move |conn| {
        Ok(compose::create(conn, &settings, &draft, when, Some(&by)))
    })
    .await?;
    let queued = match made {
        Ok(q) => q,
        Err(IssueError::Db(e)) => return Err(ApiError::Db(e)),
        Err(e) => return Err(ApiError::invalid(e.to_string())),
    };
    if queued.created && when == When::Now {
        state.wake.notify_waiters();
    }
    if queued.created {
        let id = queued.issue_id;
        let noted = match when {
            When::Now => Some((
                "issue sent",
                format!("issue {id} {subject:?} to {} recipients", queued.recipients),
            )),
            When::At(at) => Some((
                "issue scheduled",
                format!(
                    "issue {id} {subject:?} for {}",
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
            )),
            When::Later => None,
        };
        if let Some((action, detail)) = noted {
            super::audit::note(&state, &req, action, detail).await;
        }
    }
    let issue = issue(&state, queued.issue_id).await?;
    Ok(if queued.created {
        HttpResponse::Created().json(issue)
    } else {
        HttpResponse::Ok().json(issue)
    })
}

async fn issue(state: &AppState, id: i64) -> Result<Issue, ApiError> {
    let progress = state.progress.clone();
    let (summary, counts) = run(state, move |conn| {
        Ok((
            issues::summary(conn, id)?,
            progress.progress_of(conn, &[id])?,
        ))
    })
    .await?;
    Ok(Issue::of(summary.ok_or(ApiError::NotFound)?, &counts))
}

/// One issue and how far it has gone out.
#[utoipa::path(get, path = "/api/v1/issues/{id}", tag = "issues", security(("bearer" = ["issues:read"])), params(("id" = i64, Path)),
    responses((status = 200, body = Issue), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_issue(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    Ok(HttpResponse::Ok().json(issue(&state, id).await?))
}

/// Send a draft (or a scheduled one) now. A second call does nothing more (409).
#[utoipa::path(post, path = "/api/v1/issues/{id}/send", tag = "issues", security(("bearer" = ["issues:send"])), params(("id" = i64, Path)),
    responses((status = 200, body = Issue), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn send_issue(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = id_of(&path)?;
    // send_draft takes only a draft, in one update: the check and the send cannot be split.
    let queued = run(&state, move |conn| Ok(issues::send_draft(conn, id)?)).await?;
    // Unknown (404) or not a draft (409): `issue` tells which.
    let current = issue(&state, id).await?;
    let Some(queued) = queued else {
        return Err(ApiError::bad(
            StatusCode::CONFLICT,
            "Not a draft",
            "This issue is queued already; nothing more was sent.",
        ));
    };
    state.wake.notify_waiters();
    let detail = format!(
        "issue {id} {:?} to {} recipients",
        current.subject, queued.recipients
    );
    super::audit::note(&state, &req, "issue sent", detail).await;
    Ok(HttpResponse::Ok().json(current))
}
