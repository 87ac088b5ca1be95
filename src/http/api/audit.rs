//! `/api/v1/audit`: the audit log, for a token with the admin scope `audit:read`; and
//! [`note`], what the API's handlers leave in it.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{bad_query, paging, run, token_name, utc, Answer};
use crate::http::state::AppState;
use crate::stores::audit::{self, Entry, Filter};

/// Notes in the audit log what the request's token did (after it was done). A failure to write
/// is logged, not answered: the action has happened.
pub async fn note(state: &AppState, req: &HttpRequest, action: &'static str, detail: String) {
    let entry =
        Entry::new(token_name(req), state.client_ip(req).to_string(), action).detail(detail);
    let written = run(state, move |conn| Ok(audit::record(conn, &entry)?)).await;
    if let Err(error) = written {
        tracing::error!(%error, action, "writing the audit log failed");
    }
}

/// Filters and paging of the audit log.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who, exactly as listed: `editor NAME`, `token NAME`, `operator`, or a name tried at a
    /// failed login.
    #[param(max_length = 200)]
    pub actor: Option<String>,
    /// One action, exactly as listed (`login`, `issue sent`, `subscriber erased`, …).
    #[param(max_length = 64)]
    pub action: Option<String>,
    /// From this time on (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// At most this many (1 to 500; 50 when absent).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Skip this many.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<i64>,
}

/// One thing done.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `editor NAME`, `token NAME`, `operator` (the command line), or the name tried at a failed
    /// login.
    pub actor: String,
    /// The client's address (empty for the command line).
    pub ip: String,
    pub action: String,
    /// What was done to what: an issue's id and subject, an address a test copy went to, a
    /// subscriber's id (never an erased reader's address).
    pub detail: String,
}

/// Entries, the latest first.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntry>,
}

/// The audit log: who did what, when, from where; the latest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = ["audit:read"])), params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, description = "Invalid query", body = super::Problem, content_type = "application/problem+json"), (status = 401, body = super::Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = super::Problem, content_type = "application/problem+json")))]
pub async fn list_audit(state: web::Data<AppState>, q: web::Query<AuditQuery>) -> Answer {
    let q = q.into_inner();
    let (limit, offset) = paging(q.limit, q.offset)?;
    let text = |s: Option<String>, max: usize, field: &str| match s.filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > max => {
            Err(bad_query(&format!("{field}: at most {max} characters")))
        }
        other => Ok(other),
    };
    // No stored entry holds a NUL (it is dropped when written; PostgreSQL text cannot hold one).
    let nul = |s: &Option<String>| s.as_ref().is_some_and(|s| s.contains('\0'));
    if nul(&q.actor) || nul(&q.action) {
        return Ok(HttpResponse::Ok().json(AuditList { items: Vec::new() }));
    }
    let filter = Filter {
        actor: text(q.actor, 200, "actor")?,
        action: text(q.action, 64, "action")?,
        since: q.since.map(|t| t.naive_utc()),
        until: q.until.map(|t| t.naive_utc()),
    };
    let rows = run(&state, move |conn| {
        Ok(audit::list(conn, &filter, limit, offset)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(AuditList {
        items: rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: utc(r.at),
                actor: r.entry.actor,
                ip: r.entry.ip,
                action: r.entry.action,
                detail: r.entry.detail,
            })
            .collect(),
    }))
}
