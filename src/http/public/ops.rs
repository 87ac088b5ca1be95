//! The operator's endpoints: `/health`, `/ready`, `/metrics`, and the site's stylesheet.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::foundation::access::Scope;
use crate::foundation::db::{self, DbConnection};
use crate::foundation::metrics::Gauges;
use crate::http::state::AppState;
use crate::stores::{delivery, subscriptions};

/// `GET /health`: 200 when the database answers, 503 otherwise.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let answer = db::run(&state.pool, |conn| {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("SELECT 1").map_err(db::DbError::from)
    })
    .await;
    match answer {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok", "database": "up"})),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable", "database": "down"}))
        }
    }
}

/// `GET /ready`: 200 when the database answers and every migration is applied, 503 otherwise.
pub async fn readiness(state: web::Data<AppState>) -> HttpResponse {
    let answer = db::run(&state.pool, |conn| Ok(db::migrations_current(conn))).await;
    match answer {
        Ok(true) => HttpResponse::Ok().json(
            serde_json::json!({"status": "ready", "database": "up", "migrations": "current"}),
        ),
        Ok(false) => HttpResponse::ServiceUnavailable().json(
            serde_json::json!({"status": "not ready", "database": "up", "migrations": "pending"}),
        ),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "not ready", "database": "down"})),
    }
}

/// `GET /metrics` on the public listener: Prometheus' text format, to a bearer token holding
/// `metrics:read` only (401 without a valid token, 403 naming the scope without it). Never
/// anonymous here: an anonymous scraper uses `IRIA_METRICS_LISTEN` (see [`open_metrics`]).
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match crate::http::api::authenticate(&state, &req).await {
        Ok(token) if token.grant.allows(Scope::MetricsRead) => open_metrics(state).await,
        Ok(token) => crate::http::api::out_of_scope(&token.name, Scope::MetricsRead),
        Err(refused) => refused,
    }
}

/// `GET /metrics` on the `IRIA_METRICS_LISTEN` address, which serves nothing else: no token.
pub async fn open_metrics(state: web::Data<AppState>) -> HttpResponse {
    let gauges = db::run(&state.pool, |conn| Ok(gauges(conn)?))
        .await
        .unwrap_or_default();
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(state.metrics.render(&gauges))
}

/// Reads the gauges: subscribers and deliveries by status, and the deliveries due now.
fn gauges(conn: &mut DbConnection) -> diesel::QueryResult<Gauges> {
    Ok(Gauges {
        subscribers: subscriptions::counts_by_status(conn)?,
        deliveries: delivery::counts_by_status(conn)?,
        queue_depth: delivery::due_now(conn)?,
    })
}

/// `GET /assets/site.css`.
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../../templates/site.css"))
}
