//! Pages shared by every route: the generic message page used for outcomes and errors.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

/// A page with a title, a paragraph and, where it helps, a way back to the sign-up form.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub site_name: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub offer_signup: bool,
}

/// Renders a template as an HTML response with the given status.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            HttpResponse::InternalServerError()
                .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body("Something went wrong on our side. Please try again in a moment.")
        }
    }
}

/// An error or outcome page, titled, with a link back to the sign-up form.
pub fn problem(site_name: &str, status: StatusCode, title: &str, message: &str) -> HttpResponse {
    html(
        status,
        &MessagePage {
            site_name,
            title,
            message,
            offer_signup: true,
        },
    )
}

/// The 503 page shown while the database cannot be reached.
pub fn unavailable(site_name: &str) -> HttpResponse {
    let mut response = problem(
        site_name,
        StatusCode::SERVICE_UNAVAILABLE,
        "We are having a short break",
        "Our subscription service cannot reach its database right now. Nothing you sent was \
         stored; please try again in a minute.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
    response
}

/// The 500 page: the details go to the log, not to the visitor.
pub fn internal_error(site_name: &str, what: &str, error: &dyn std::fmt::Display) -> HttpResponse {
    tracing::error!(%error, "{what}");
    problem(
        site_name,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side",
        "Nothing was stored. Please try again in a moment.",
    )
}

/// An RFC 9457 problem details answer (`application/problem+json`): `type`, `title`, `status`
/// and `detail`, plus the members of `extra` (which field is wrong, for instance). The JSON API
/// and the sign-up's JSON answers both speak it.
pub fn problem_details(
    status: StatusCode,
    title: &str,
    detail: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> HttpResponse {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), "about:blank".into());
    body.insert("title".into(), title.into());
    body.insert("status".into(), status.as_u16().into());
    body.insert("detail".into(), detail.into());
    body.extend(extra);
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(serde_json::Value::Object(body).to_string())
}

/// The 404 page.
pub fn not_found_page(site_name: &str) -> HttpResponse {
    problem(
        site_name,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
}

pub async fn not_found(
    state: actix_web::web::Data<crate::http::state::AppState>,
    _req: HttpRequest,
) -> HttpResponse {
    problem(
        &state.settings.site_name,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
}

/// What the sign-up and preferences pages say about clicks on the links of the emails: in
/// `personal` mode, that they are recorded per reader, what for, and how to take them back; in
/// `anonymous` mode, only that they are counted without naming anyone; nothing when off.
pub fn click_notice(mode: crate::foundation::config::ClickTracking) -> Option<&'static str> {
    use crate::foundation::config::ClickTracking;
    match mode {
        ClickTracking::Personal => Some(
            "Clicks on the links in our emails are recorded for each reader: which link of which \
             email, and when. We use them to see what our readers find worth reading, and to find \
             readers who no longer open anything, whom we ask once whether they still want the \
             newsletter before unsubscribing them. Your clicks are in the data you can download \
             from your preferences page (linked at the bottom of every email), and erasing your \
             data there deletes them.",
        ),
        ClickTracking::Anonymous => {
            Some("We count the clicks on each link of our emails, without recording who clicked.")
        }
        ClickTracking::Off => None,
    }
}
