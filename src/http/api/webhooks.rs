//! `/api/v1/webhooks`: the endpoints events are posted to: list, add (the signing secret is in
//! that answer only), one endpoint with its latest deliveries, delete.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{id_of, run, token_name, utc, Answer, ApiError, Problem};
use crate::http::state::AppState;
use crate::stores::webhooks::{
    self, EndpointUrl, Event, NewEndpoint, MAX_DESCRIPTION_CHARS, MAX_URL_CHARS,
};

/// How many of an endpoint's latest deliveries its page shows.
const RECENT: i64 = 50;

/// An endpoint events are posted to.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: i64,
    pub url: String,
    /// The events it receives.
    pub events: Vec<Event>,
    pub description: String,
    /// A disabled endpoint receives nothing; what was queued for it waits.
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

impl From<webhooks::Endpoint> for WebhookEndpoint {
    fn from(e: webhooks::Endpoint) -> Self {
        Self {
            id: e.id,
            events: e.event_list(),
            url: e.url,
            description: e.description,
            enabled: e.enabled,
            created_at: utc(e.created_at),
            created_by: e.created_by,
        }
    }
}

/// Every endpoint.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookEndpoint>,
}

/// An endpoint just added, with its signing secret: shown this once, never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_` and the base64 of 32 random bytes; the key of the HMAC in `webhook-signature`.
    pub secret: String,
}

/// One event for one endpoint and how its attempts went.
#[derive(Serialize, ToSchema)]
pub struct WebhookAttempt {
    /// The event's id, sent as `webhook-id` and as `id` in the body.
    pub event_id: String,
    pub event: String,
    /// queued, sending, delivered, failed or skipped.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, when the endpoint answered.
    pub http_status: Option<i32>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When the next attempt is due, while one is to come.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<webhooks::Attempt> for WebhookAttempt {
    fn from(a: webhooks::Attempt) -> Self {
        Self {
            next_attempt_at: a.next_retry().map(utc),
            event_id: a.event_id,
            event: a.event_type,
            status: a.status,
            attempts: a.attempts,
            last_attempt_at: a.last_attempt_at.map(utc),
            http_status: a.last_status,
            error: a.last_error,
            created_at: utc(a.created_at),
            finished_at: a.finished_at.map(utc),
        }
    }
}

/// An endpoint with its latest deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct WebhookDetail {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    pub attempts: Vec<WebhookAttempt>,
}

/// An endpoint to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where to post: `http://` or `https://`, with no user name or password.
    #[schema(max_length = 2000, pattern = r"^https?://")]
    pub url: String,
    /// The events it is to receive.
    #[schema(min_items = 1)]
    pub events: Vec<Event>,
    /// What receives these events, for the administrators.
    #[schema(max_length = 200)]
    pub description: Option<String>,
    /// `false` to add it switched off; `true` when absent.
    pub enabled: Option<bool>,
}

/// Every webhook endpoint (without secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = ["webhooks:write"])),
    responses((status = 200, body = WebhookList), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json")))]
pub async fn list_webhooks(state: web::Data<AppState>) -> Answer {
    let rows = run(&state, |conn| Ok(webhooks::list(conn)?)).await?;
    Ok(HttpResponse::Ok().json(WebhookList {
        items: rows.into_iter().map(WebhookEndpoint::from).collect(),
    }))
}

/// Add an endpoint. The answer carries its signing secret, shown this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = ["webhooks:write"])), request_body = NewWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewWebhook>,
) -> Answer {
    let body = body.into_inner();
    let url = EndpointUrl::parse(&body.url).map_err(ApiError::invalid)?;
    let mut events: Vec<Event> = Vec::new();
    for event in body.events {
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        return Err(ApiError::invalid("events: choose at least one event"));
    }
    let description = body.description.unwrap_or_default();
    // PostgreSQL's text cannot hold a NUL (an insert fails): refused as invalid, as elsewhere.
    if description.contains('\0') {
        return Err(ApiError::invalid("description: holds a NUL character"));
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    let new = NewEndpoint {
        url,
        events,
        description,
        enabled: body.enabled.unwrap_or(true),
        created_by: token_name(&req),
    };
    let (endpoint, secret) = run(&state, move |conn| Ok(webhooks::create(conn, &new)?)).await?;
    let location = format!("/api/v1/webhooks/{}", endpoint.id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(CreatedWebhook {
            endpoint: endpoint.into(),
            secret,
        }))
}

/// One endpoint with its latest deliveries (50), newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = ["webhooks:write"])), params(("id" = i64, Path)),
    responses((status = 200, body = WebhookDetail), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_webhook(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    let (endpoint, attempts) = run(&state, move |conn| {
        let Some(endpoint) = webhooks::find(conn, id)? else {
            return Ok(None);
        };
        Ok(Some((endpoint, webhooks::attempts_of(conn, id, RECENT)?)))
    })
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(WebhookDetail {
        endpoint: endpoint.into(),
        attempts: attempts.into_iter().map(WebhookAttempt::from).collect(),
    }))
}

/// Delete an endpoint, with what was queued for it and the record of its deliveries.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = ["webhooks:write"])), params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_webhook(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    if run(&state, move |conn| webhooks::delete(conn, id)).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

// The schema's limits on `NewWebhook` are written as literals; this keeps them the store's.
const _: () = assert!(MAX_URL_CHARS == 2000 && MAX_DESCRIPTION_CHARS == 200);
