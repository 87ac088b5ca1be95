//! The route table of `/api/v1` and its scope: the token check in front of every route but the
//! document, and problem details for what no handler answers (extractor errors, 404, 405).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use super::{
    articles, audit, bounces, digest, engagement, issues, openapi, problem, subscribers, webhooks,
    ApiError, TokenName,
};
use crate::foundation::access::Scope;
use crate::foundation::access::Scope::*;
use crate::http::route_paths::path_matches;
use crate::http::state::AppState;

/// The routes of `/api/v1`, behind the token check.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(scope());
}

/// Declares the API's routes: the table the tests walk and the function that registers it.
macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path [$scope:expr] ),* $(,)?) => {
        /// Every route of the API: (method, path, the scope its token needs; `None`: no token).
        pub const ROUTES: &[(&str, &str, Option<Scope>)] = &[ $( (stringify!($method), concat!("/api/v1", $path), $scope) ),* ];

        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }
    };
}

route_table! {
    get "/openapi.json" => openapi::openapi [None],
    get "/subscribers" => subscribers::list_subscribers [Some(SubscribersRead)],
    post "/subscribers" => subscribers::create_subscriber [Some(SubscribersWrite)],
    get "/subscribers/{id}" => subscribers::get_subscriber [Some(SubscribersRead)],
    delete "/subscribers/{id}" => subscribers::erase_subscriber [Some(SubscribersWrite)],
    post "/subscribers/{id}/unsubscribe" => subscribers::unsubscribe_subscriber [Some(SubscribersWrite)],
    get "/articles" => articles::list_articles [Some(ArticlesRead)],
    post "/articles" => articles::push_article [Some(ArticlesWrite)],
    get "/articles/{id}" => articles::get_article [Some(ArticlesRead)],
    patch "/articles/{id}" => articles::patch_article [Some(ArticlesWrite)],
    get "/issues" => issues::list_issues [Some(IssuesRead)],
    post "/issues" => issues::create_issue [Some(IssuesWrite)],
    get "/issues/{id}" => issues::get_issue [Some(IssuesRead)],
    post "/issues/{id}/send" => issues::send_issue [Some(IssuesSend)],
    get "/issues/{id}/engagement" => engagement::get_issue_engagement [Some(IssuesRead)],
    get "/digest/preview" => digest::digest_preview [Some(IssuesRead)],
    post "/digest/run" => digest::digest_run [Some(DigestRun)],
    post "/bounces" => bounces::receive_bounce [Some(BouncesWrite)],
    get "/webhooks" => webhooks::list_webhooks [Some(WebhooksWrite)],
    post "/webhooks" => webhooks::create_webhook [Some(WebhooksWrite)],
    get "/webhooks/{id}" => webhooks::get_webhook [Some(WebhooksWrite)],
    delete "/webhooks/{id}" => webhooks::delete_webhook [Some(WebhooksWrite)],
    get "/audit" => audit::list_audit [Some(AuditRead)],
}

/// The scope a request's route needs: `Some(None)` for a route open without a token, `None` when
/// no route matches (the answer is then 404 or 405, to a valid token only).
pub fn scope_needed(method: &str, path: &str) -> Option<Option<Scope>> {
    ROUTES
        .iter()
        .find(|(m, pattern, _)| m.eq_ignore_ascii_case(method) && path_matches(pattern, path))
        .map(|(_, _, scope)| *scope)
}

/// The `/api/v1` scope: its routes behind the token check, problem details for every error.
fn scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/api/v1")
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::bad(StatusCode::BAD_REQUEST, "Invalid query", &e.to_string()).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
        .app_data(
            web::JsonConfig::default()
                .limit(crate::http::state::MAX_BODY_BYTES)
                .error_handler(|e, _| {
                    let status = match &e {
                        actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                        | actix_web::error::JsonPayloadError::Overflow { .. } => {
                            StatusCode::PAYLOAD_TOO_LARGE
                        }
                        actix_web::error::JsonPayloadError::ContentType => {
                            StatusCode::UNSUPPORTED_MEDIA_TYPE
                        }
                        actix_web::error::JsonPayloadError::Deserialize(d) if d.is_data() => {
                            StatusCode::UNPROCESSABLE_ENTITY
                        }
                        _ => StatusCode::BAD_REQUEST,
                    };
                    ApiError::bad(status, "Invalid body", &e.to_string()).into()
                }),
        )
        .configure(register)
        .default_service(web::to(unrouted))
        .wrap(actix_web::middleware::from_fn(require_token))
}

/// No route took the request: 405 with `Allow` when the path is known with other methods, 404
/// otherwise.
async fn unrouted(req: HttpRequest) -> HttpResponse {
    let allowed: Vec<String> = ROUTES
        .iter()
        .filter(|(_, pattern, _)| path_matches(pattern, req.match_info().as_str()))
        .map(|(method, _, _)| method.to_uppercase())
        .collect();
    if allowed.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such route in this API; see /api/v1/openapi.json.",
        );
    }
    let mut response = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        &format!("This route takes {}.", allowed.join(", ")),
    );
    if let Ok(value) = header::HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Lets a request through with a valid token holding the route's scope, noting its name for the
/// records of who did what; answers a missing or unknown token with the 401 (or 503) of
/// [`super::authenticate`], and a token without the route's scope with a 403 naming it.
async fn require_token(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    // The path as actix routes it: percent-decoded (`/api/v1/%73ubscribers` is
    // `/api/v1/subscribers`), so that no spelling of a route escapes its row of the table.
    let path = req.match_info().as_str().to_string();
    let needed = scope_needed(req.method().as_str(), &path);
    if needed == Some(None) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError("no state"));
    };
    match super::authenticate(&state, req.request()).await {
        Ok(token) => {
            match needed {
                Some(Some(scope)) if !token.grant.allows(scope) => {
                    return Ok(req.into_response(super::out_of_scope(&token.name, scope)));
                }
                Some(_) => {}
                // No row of the table: answered here (404 or 405), fail closed.
                None => {
                    let answer = unrouted(req.request().clone()).await;
                    return Ok(req.into_response(answer));
                }
            }
            req.extensions_mut().insert(TokenName(token.name));
            req.extensions_mut().insert(token.grant);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(response) => Ok(req.into_response(response)),
    }
}
