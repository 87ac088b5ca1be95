//! The JSON API under `/api/v1`, behind bearer tokens. Errors are RFC 9457 problem details.

pub mod bounces;
pub mod tokens;
pub mod v1;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::db;
use crate::web::AppState;

/// The routes of `/api/v1`, behind the token check.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(v1::scope());
}

/// An RFC 9457 problem details response.
pub fn problem(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "type": "about:blank",
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        }))
}

/// Checks the `Authorization: Bearer …` header; `Err` is the 401 (or 503) to answer with.
pub async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<String, HttpResponse> {
    let unauthorized = || {
        let mut response = problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "This API needs an `Authorization: Bearer <token>` header with a token made by \
             `iria-news admin create-token NAME`.",
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
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200)
        .map(str::to_string)
    else {
        return Err(unauthorized());
    };
    match db::run(&state.pool, move |conn| Ok(tokens::verify(conn, &raw)?)).await {
        Ok(Some(name)) => Ok(name),
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
