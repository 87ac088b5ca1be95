//! `POST /api/v1/bounces`: an MTA's pipe posts a bounce or a complaint, raw.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{problem, Problem};
use crate::foundation::db::{self, DbError};
use crate::http::state::AppState;
use crate::processes::bounces::{self, parse, VerpCheck};
use crate::processes::messages::message_id_suffix;

/// Report a bounce (RFC 3464 DSN) or a complaint (RFC 5965 ARF), as the raw message.
#[utoipa::path(post, path = "/api/v1/bounces", tag = "deliverability",
    request_body(content((String = "message/rfc822"), (String = "text/plain"))),
    responses((status = 200, description = "Applied", body = Object), (status = 202, description = "A report about nobody of ours", body = Object),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn receive_bounce(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let suffix = message_id_suffix(&state.settings);
    let verp = VerpCheck {
        secret: state.settings.secret().to_vec(),
    };
    let Some(report) = parse(&body, &suffix, Some(&verp)) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not a report",
            "The body is neither a delivery status notification (RFC 3464) nor an abuse report (RFC 5965).",
        );
    };
    let r = report.clone();
    let outcome = db::run(&state.pool, move |conn| {
        bounces::apply(conn, &r).map_err(DbError::from)
    })
    .await;
    match outcome {
        Ok(Some(subscriber_status)) => HttpResponse::Ok().json(json!({
            "kind": format!("{:?}", report.kind),
            "recipient": report.recipient,
            "delivery": report.delivery_id,
            "status": report.status,
            "subscriber_status": subscriber_status,
        })),
        Ok(None) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unknown recipient",
            "The report names no delivery or subscriber of ours.",
        ),
        Err(e) if e.is_unavailable() => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "Try again shortly.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "recording a bounce failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "See the server log.",
            )
        }
    }
}
