//! `POST /api/v1/bounces`: an MTA's pipe posts a bounce or a complaint, raw.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{problem, Problem};
use crate::foundation::db::{self, DbError};
use crate::foundation::message_ids::MessageIds;
use crate::http::state::AppState;
use crate::processes::bounces::{self, parse};

/// Report a bounce (RFC 3464 DSN) or a complaint (RFC 5965 ARF), as the raw message. It acts
/// only when it proves the message it answers (a VERP token or Message-ID of ours, with its
/// HMAC); any other report is logged and answered 202, changing nothing.
#[utoipa::path(post, path = "/api/v1/bounces", tag = "deliverability", security(("bearer" = ["bounces:write"])),
    request_body(content((String = "message/rfc822"), (String = "text/plain"))),
    responses((status = 200, description = "Applied", body = Object), (status = 202, description = "A report that proves no message of ours: nothing changed", body = Object),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn receive_bounce(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let ids = MessageIds::new(&state.settings);
    let Some(report) = parse(&body, &ids) else {
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
            "applied": true,
            "recipient": report.recipient,
            "delivery": report.delivery_id,
            "status": report.status,
            "subscriber_status": subscriber_status,
        })),
        Ok(None) => {
            let reason = report
                .unproved
                .unwrap_or("the delivery it proves has no subscriber any more");
            tracing::warn!(
                kind = ?report.kind,
                recipient = report.recipient.as_deref().unwrap_or("-"),
                reason,
                "bounce report ignored"
            );
            HttpResponse::Accepted().json(json!({
                "kind": format!("{:?}", report.kind),
                "applied": false,
                "reason": reason,
            }))
        }
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
