//! What lets the site (`IRIA_ALLOWED_ORIGINS`) embed the sign-up form: where a sign-up may send
//! the reader back to (`return_to`), which format the answer takes (a page, or JSON for a script),
//! and CORS on `/subscriptions` for the site's pages only.
//!
//! Shared by the sign-up handler and the route table; imports no handler.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use url::{Origin, Url};

use crate::http::state::AppState;

/// The longest `return_to` taken; a longer one is ignored (no site needs it, and it would only
/// carry something else).
pub const MAX_RETURN_TO_CHARS: usize = 2000;

/// How long a browser may keep the answer to a preflight (Chromium keeps it 2 hours at most).
const PREFLIGHT_MAX_AGE_SECONDS: &str = "7200";

/// Where an accepted sign-up sends the reader: `raw` with `subscribed=1` in its query, when it is
/// an absolute http(s) URL whose origin is exactly one of `allowed`. Anything else (another
/// origin, a relative URL, `javascript:`, line breaks or other control characters, user info, more
/// than [`MAX_RETURN_TO_CHARS`]) is `None`: the reader gets the usual page, never a redirect
/// somewhere else.
pub fn return_target(raw: &str, allowed: &[Origin]) -> Option<Url> {
    if raw.is_empty()
        || allowed.is_empty()
        || raw.chars().count() > MAX_RETURN_TO_CHARS
        // The URL parser would silently drop tabs and line breaks; a value holding them was
        // not typed by an editor.
        || raw.chars().any(char::is_control)
    {
        return None;
    }
    let mut url = Url::parse(raw).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none();
    if !plain || !allowed.contains(&url.origin()) {
        return None;
    }
    // The query is kept as written (a site's own parameters, their encoding included), without
    // an earlier `subscribed`, which would contradict this one.
    let mut pairs: Vec<&str> = url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("subscribed"))
        .collect();
    pairs.push("subscribed=1");
    let query = pairs.join("&");
    url.set_query(Some(&query));
    Some(url)
}

/// The format an answer to `POST /subscriptions` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A page (or a redirect), for a form posted by a browser.
    Html,
    /// `application/json`, and problem details for errors, for a script.
    Json,
}

/// JSON when the `Accept` header prefers `application/json` to `text/html` (by weight, then by
/// order); a page otherwise, also when it names neither (no header, `*/*`): what a form post got
/// before scripts were answered. A browser posting a form never names JSON.
pub fn answer_format(headers: &HeaderMap) -> Format {
    let mut best: Option<(f32, Format)> = None;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.to_ascii_lowercase().split(',') {
            let mut parts = range.split(';');
            let format = match parts.next().unwrap_or("").trim() {
                "application/json" | "application/problem+json" => Format::Json,
                "text/html" | "application/xhtml+xml" => Format::Html,
                _ => continue,
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // Only a greater weight wins: of equal ones, the first listed.
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
    }
    best.map_or(Format::Html, |(_, format)| format)
}

/// The request's `Origin` when it is exactly one of `allowed`, as it is to be echoed.
fn allowed_origin(headers: &HeaderMap, allowed: &[Origin]) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    allowed
        .iter()
        .any(|o| o.ascii_serialization() == origin)
        .then(|| HeaderValue::from_str(origin).ok())
        .flatten()
}

/// CORS for `/subscriptions`: a page of one of `IRIA_ALLOWED_ORIGINS` may post to it and read the
/// answer (no credentials: the sign-up needs no cookie); any other origin gets no
/// `Access-Control-*` header, so its scripts cannot read the answer. A preflight from an allowed
/// origin learns that `POST` with `Content-Type` and `Accept` may be sent. With origins
/// configured, every answer carries `Vary: Origin`, since its headers depend on it.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let (configured, origin) = match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let allowed = &state.settings.allowed_origins;
            (!allowed.is_empty(), allowed_origin(req.headers(), allowed))
        }
        None => (false, None),
    };
    let preflight = req.method() == Method::OPTIONS;
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    if configured {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type, Accept"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECONDS),
            );
        }
    }
    Ok(response)
}

/// `OPTIONS /subscriptions`: 204 with what the resource allows; [`cors`] adds the CORS answer for
/// an allowed origin.
pub async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ALLOW, "POST, OPTIONS"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Vec<Origin> {
        list.iter()
            .map(|o| Url::parse(o).expect("origin").origin())
            .collect()
    }

    #[test]
    fn return_to_goes_only_to_allowed_origins() {
        let allowed = origins(&["https://www.ir-ia.com", "http://127.0.0.1:8081"]);
        let target = |raw: &str| return_target(raw, &allowed).map(|u| u.to_string());
        assert_eq!(
            target("https://www.ir-ia.com/").as_deref(),
            Some("https://www.ir-ia.com/?subscribed=1")
        );
        assert_eq!(
            target("https://www.ir-ia.com/2024/08/iraq/?p=12&subscribed=0#box").as_deref(),
            Some("https://www.ir-ia.com/2024/08/iraq/?p=12&subscribed=1#box")
        );
        assert_eq!(
            target("http://127.0.0.1:8081/page").as_deref(),
            Some("http://127.0.0.1:8081/page?subscribed=1")
        );
        for refused in [
            "",
            "/",
            "//www.ir-ia.com/",
            "https://www.ir-ia.com.evil.example/",
            "https://evil.example/?https://www.ir-ia.com/",
            "http://www.ir-ia.com/",
            "https://www.ir-ia.com:8443/",
            "http://127.0.0.1:8082/",
            "https://www.ir-ia.com@evil.example/",
            "https://user@www.ir-ia.com/",
            "javascript:alert(document.domain)",
            "data:text/html,hello",
            "https://www.ir-ia.com/\r\nSet-Cookie: a=b",
            "https://www.ir-ia.com/\n",
        ] {
            assert_eq!(target(refused), None, "{refused:?}");
        }
        let long = format!("https://www.ir-ia.com/{}", "a".repeat(MAX_RETURN_TO_CHARS));
        assert_eq!(target(&long), None, "too long");
        assert_eq!(return_target("https://www.ir-ia.com/", &[]), None);
    }

    #[test]
    fn the_accept_header_chooses_the_format() {
        let format = |accept: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(a) = accept {
                headers.insert(header::ACCEPT, HeaderValue::from_str(a).expect("header"));
            }
            answer_format(&headers)
        };
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(format(Some(browser)), Format::Html);
        assert_eq!(format(Some("application/json")), Format::Json);
        assert_eq!(
            format(Some("Application/JSON; charset=utf-8")),
            Format::Json
        );
        assert_eq!(format(Some("application/problem+json")), Format::Json);
        assert_eq!(
            format(Some("text/html;q=0.5, application/json")),
            Format::Json
        );
        assert_eq!(
            format(Some("application/json;q=0, text/html")),
            Format::Html
        );
        assert_eq!(format(Some("application/json;q=0")), Format::Html);
        assert_eq!(format(Some("application/json, text/html")), Format::Json);
        assert_eq!(format(Some("text/html, application/json")), Format::Html);
        assert_eq!(format(Some("*/*")), Format::Html);
        assert_eq!(format(None), Format::Html);
    }
}
