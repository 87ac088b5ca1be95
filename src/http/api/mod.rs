//! The editors' JSON API under `/api/v1`: subscribers, articles, issues, the digest and webhooks,
//! behind bearer tokens.
//!
//! Every route is declared once in [`routes::ROUTES`] (which registers it and lets the tests walk
//! the table) and described by [`openapi::ApiDoc`], served at `/api/v1/openapi.json`; a test
//! checks that the two list the same routes. Errors are RFC 9457 problem details, extractor
//! errors included. Each resource has a file of its own; this file holds what they all share
//! and imports none of them, so that their `super::` imports go one way only.

pub mod articles;
pub mod audit;
pub mod bounces;
pub mod digest;
pub mod engagement;
pub mod issues;
pub mod openapi;
pub mod routes;
pub mod subscribers;
pub mod webhooks;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::foundation::access::{Grant, Scope};
use crate::foundation::db::{self, DbError};
use crate::http::state::AppState;
use crate::stores::api_tokens;

/// An RFC 9457 problem details response.
pub fn problem(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    crate::http::pages::problem_details(status, title, detail, serde_json::Map::new())
}

/// The credentials of an `Authorization` header of the `Bearer` scheme, whose name is
/// case-insensitive (RFC 9110 §11.1): `bearer`, `BEARER` and `Bearer` alike.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// A 403 for a token without the scope an operation needs; the problem names the scope.
pub fn out_of_scope(token: &str, scope: Scope) -> HttpResponse {
    let mut extra = serde_json::Map::new();
    extra.insert(
        "scope".into(),
        serde_json::Value::String(scope.as_str().into()),
    );
    crate::http::pages::problem_details(
        StatusCode::FORBIDDEN,
        "Outside the token's scopes",
        &format!(
            "This operation needs the `{scope}` scope, which the token {token:?} does not have. \
             An admin can make a token with it: `iria-news admin create-token NAME --scope {scope}`."
        ),
        extra,
    )
}

/// The 403 to answer with unless the request's token holds `scope` (for what one route does
/// beyond its table scope, such as sending an issue while creating it); `None` when it does.
pub fn refused_scope(req: &HttpRequest, scope: Scope) -> Option<HttpResponse> {
    let allowed = req
        .extensions()
        .get::<Grant>()
        .is_some_and(|grant| grant.allows(scope));
    if allowed {
        return None;
    }
    let name = req
        .extensions()
        .get::<TokenName>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    Some(out_of_scope(&name, scope))
}

/// Checks the `Authorization: Bearer …` header; `Err` is the 401 (or 503) to answer with.
pub async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
) -> Result<api_tokens::Verified, HttpResponse> {
    let unauthorized = || {
        let mut response = problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "This API needs an `Authorization: Bearer <token>` header with a token made by \
             `iria-news admin create-token NAME --scope S[,S…]` (unknown, revoked and expired \
             tokens are refused alike).",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    };
    let Some(raw) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials)
        .filter(|t| !t.is_empty() && t.len() <= 200)
        .map(str::to_string)
    else {
        return Err(unauthorized());
    };
    match db::run(&state.pool, move |conn| Ok(api_tokens::verify(conn, &raw)?)).await {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(unauthorized()),
        Err(e) if e.is_unavailable() => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "The database cannot be reached; try again shortly.",
        )),
        Err(e) => {
            tracing::error!(error = %e, "checking an API token failed");
            Err(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "See the server log.",
            ))
        }
    }
}

/// The name of the token a request was made with.
#[derive(Clone, Debug)]
pub struct TokenName(pub String);

/// "token NAME", as records of who did what name an API client.
fn token_name(req: &HttpRequest) -> String {
    format!(
        "token {}",
        req.extensions()
            .get::<TokenName>()
            .map(|t| t.0.clone())
            .unwrap_or_default()
    )
}

/// An RFC 9457 problem details body.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("{title}: {detail}")]
    Bad {
        status: StatusCode,
        title: String,
        detail: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ApiError {
    /// A refusal with its own status and title.
    fn bad(status: StatusCode, title: &str, detail: &str) -> Self {
        ApiError::Bad {
            status,
            title: title.into(),
            detail: detail.into(),
        }
    }

    /// A 422: the request was understood, but a field's value cannot be taken.
    fn invalid(detail: impl Into<String>) -> Self {
        ApiError::Bad {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            title: "Invalid input".into(),
            detail: detail.into(),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::Db(DbError::Query(e))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Bad { status, .. } => *status,
            ApiError::Db(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::NotFound => problem(StatusCode::NOT_FOUND, "Not found", "No such resource."),
            ApiError::Bad {
                status,
                title,
                detail,
            } => problem(*status, title, detail),
            ApiError::Db(e) if e.is_unavailable() => {
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable",
                    "The database cannot be reached; try again shortly.",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
                r
            }
            ApiError::Db(e) => {
                tracing::error!(error = %e, "an API call failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "See the server log.",
                )
            }
        }
    }
}

/// An API handler's answer: its errors become problem details.
type Answer = Result<HttpResponse, ApiError>;

/// Runs a query on the pool, its errors as the API reports them.
async fn run<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut db::DbConnection) -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    Ok(db::run(&state.pool, f).await?)
}

/// A stored time (UTC, without a zone) as the API shows it: RFC 3339 with its offset.
fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// A numeric id from a path; anything else names nothing (404, like an unknown id).
fn id_of(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound)
}

/// Topics as stored (comma-separated) as the API shows them: a list.
fn topics_of(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Paging.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many (1 to 500; 50 when absent).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Skip this many.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<i64>,
}

/// The largest offset a page may start at.
const MAX_OFFSET: i64 = 1_000_000_000;

/// A 400 for a query string that parsed but asks for what cannot be given.
fn bad_query(detail: &str) -> ApiError {
    ApiError::bad(StatusCode::BAD_REQUEST, "Invalid query", detail)
}

/// The page asked for, as (limit, offset), with the defaults filled in.
fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    if !(1..=500).contains(&limit) {
        return Err(bad_query("limit: 1 to 500"));
    }
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(bad_query("offset: 0 to 1000000000"));
    }
    Ok((limit, offset))
}
