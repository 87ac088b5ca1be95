//! Middleware every response goes through: request ids, logging and metrics of each request,
//! and the security headers.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::HttpMessage;
use futures_util::future::LocalBoxFuture;
use tracing::Instrument;

use crate::foundation::config::Settings;
use crate::foundation::metrics::Metrics;

/// The headers every response carries: no script from anywhere (the pages have none), no
/// framing, no referrer (links carry tokens), no sniffing; HSTS when served over https.
///
/// Forms post to this site only, with one exception: the sign-up form shown again after a
/// mistake may, once fixed, be redirected back to the site's page it came from (`return_to`), and
/// Chromium applies `form-action` to that redirect too, so the site's origins
/// (`IRIA_ALLOWED_ORIGINS`) are named there. The policy governs our pages only: a form on the
/// site's own pages posting here is the site's policy's business, and nothing here refuses it.
pub fn security_headers(settings: &Settings) -> actix_web::middleware::DefaultHeaders {
    let form_action: String = std::iter::once("'self'".to_string())
        .chain(
            settings
                .allowed_origins
                .iter()
                .map(|o| o.ascii_serialization()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let policy = format!(
        "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' https: data:; frame-ancestors 'none'; base-uri 'none'; \
         form-action {form_action}"
    );
    let mut headers = actix_web::middleware::DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, policy))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"));
    if settings.base_url.scheme() == "https" {
        headers = headers.add((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ));
    }
    headers
}

/// Marks a request that came as `HEAD` (it is routed as a `GET`): a handler that counts
/// something, such as a tracked link, can tell and leave it uncounted.
#[derive(Clone, Copy, Debug)]
pub struct HeadRequest;

/// `HEAD` on every `GET` route, and `Cache-Control: no-store` on every response that does not say
/// otherwise.
///
/// A `HEAD` request is routed as the `GET` it mirrors; the HTTP layer, which saw the request's
/// own method, then sends the `GET`'s status and headers without its body. Responses default to
/// `no-store` because most of what this server answers is personal (an API's list of subscribers,
/// a reader's preferences, a console page); what may be cached (the stylesheet, the archive) says
/// so itself.
pub async fn head_and_no_store(
    mut req: ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
        req.extensions_mut().insert(HeadRequest);
    }
    let mut response = next.call(req).await?;
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// Gives every request an id (the caller's `X-Request-Id` when it is sane, else a new one),
/// puts it on every log line written while the request is handled and in the response, logs the
/// request, and counts it in the metrics under its route pattern.
pub struct RequestTelemetry {
    pub metrics: Arc<Metrics>,
}

impl<S, B> Transform<S, ServiceRequest> for RequestTelemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestTelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestTelemetryService {
            service,
            metrics: self.metrics.clone(),
        }))
    }
}

pub struct RequestTelemetryService<S> {
    service: S,
    metrics: Arc<Metrics>,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl<S, B> Service<ServiceRequest> for RequestTelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let request_id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .map(str::to_string)
            .unwrap_or_else(|| {
                use rand::Rng;
                format!("{:016x}", rand::thread_rng().gen::<u64>())
            });
        // The route's pattern, not the path: tokens in paths must not become label values.
        let route = req
            .match_pattern()
            .unwrap_or_else(|| "(unmatched)".to_string());
        let method = req.method().to_string();
        let span =
            tracing::info_span!("request", request_id = %request_id, %method, route = %route);
        let future = self.service.call(req);
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let response = future.await;
                let seconds = started.elapsed().as_secs_f64();
                let status = match &response {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => e.as_response_error().status_code().as_u16(),
                };
                metrics.observe_request(&route, status, seconds);
                let micros = (seconds * 1e6) as u64;
                if status >= 500 {
                    tracing::warn!(status, micros, "request");
                } else {
                    tracing::info!(status, micros, "request");
                }
                response.map(|mut r| {
                    if let Ok(v) = HeaderValue::from_str(&request_id) {
                        r.headers_mut().insert(REQUEST_ID.clone(), v);
                    }
                    r
                })
            }
            .instrument(span),
        )
    }
}
