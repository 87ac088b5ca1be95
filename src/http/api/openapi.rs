//! The OpenAPI document of `/api/v1`, served at `/api/v1/openapi.json`. It names every
//! resource's handlers; none of them imports it.

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use super::{articles, audit, bounces, digest, engagement, issues, subscribers, webhooks, Problem};
use crate::foundation::domain::SubscriberStatus;
use crate::http::state::AppState;

/// Bearer tokens, made with `iria-news admin create-token NAME --scope S[,S…]` or in the console.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "IRIA News API", version = "1", description = "Subscribers, articles, issues, the weekly digest and the webhooks of IRIA News. Every route but this document needs `Authorization: Bearer <token>` with a token holding the operation's scope (named in its `security` and its description; 403 problem details naming the scope outside it); tokens are made by `iria-news admin create-token NAME --scope S[,S…]` or by an admin in the console. Errors are RFC 9457 problem details."),
    paths(
        subscribers::list_subscribers, subscribers::create_subscriber, subscribers::get_subscriber,
        subscribers::erase_subscriber, subscribers::unsubscribe_subscriber,
        articles::list_articles, articles::push_article, articles::get_article, articles::patch_article,
        issues::list_issues, issues::create_issue, issues::get_issue, issues::send_issue,
        engagement::get_issue_engagement,
        digest::digest_preview, digest::digest_run, bounces::receive_bounce, openapi,
        webhooks::list_webhooks, webhooks::create_webhook, webhooks::get_webhook,
        webhooks::delete_webhook,
        audit::list_audit,
    ),
    components(schemas(Problem, SubscriberStatus)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// This document, with the site's topics filled in where a topic is asked for.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(&state.settings.topics))
}

/// The OpenAPI document of this installation: [`ApiDoc`] with the configured topics as the
/// allowed values of every topic.
pub fn document(topics: &[String]) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let allowed = serde_json::json!(topics);
    for schema in ["NewIssue", "NewSubscriber"] {
        if let Some(items) = doc.pointer_mut(&format!(
            "/components/schemas/{schema}/properties/topics/items"
        )) {
            items["enum"] = allowed.clone();
        }
    }
    name_scopes(&mut doc);
    if let Some(params) = doc.pointer_mut("/paths/~1api~1v1~1subscribers/get/parameters") {
        for p in params.as_array_mut().into_iter().flatten() {
            if p["name"] == "topic" {
                p["schema"] = serde_json::json!({"type": "string", "enum": allowed});
            }
        }
    }
    doc
}

/// Each operation's description ends with the scope its token needs, as its `security`
/// requirement names it (the `security` of each `#[utoipa::path]`, which a test compares with
/// the route table's).
fn name_scopes(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
    {
        let scope = operation
            .pointer("/security/0/bearer/0")
            .and_then(|s| s.as_str())
            .map(str::to_string);
        let Some(scope) = scope else { continue };
        let said = operation
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .trim_end()
            .to_string();
        let line = format!("Scope: `{scope}`.");
        let description = if said.is_empty() {
            line
        } else {
            format!("{said}\n\n{line}")
        };
        operation["description"] = serde_json::Value::String(description);
    }
}
