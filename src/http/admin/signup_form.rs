//! The sign-up form for the site: the HTML an editor copies into the site's "Subscribe" box, in a
//! version without script (posting to `/subscriptions`, back to the site with `return_to`) and
//! one posting with `fetch` and reading the JSON answer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::Chrome;
use crate::foundation::domain::{MAX_EMAIL_LEN, MAX_NAME_CHARS};
use crate::http::embedding::{self, MAX_RETURN_TO_CHARS};
use crate::http::pages::html;
use crate::http::state::AppState;

/// The `source` the site's box records with each consent unless the editor names another.
const DEFAULT_SOURCE: &str = "site-box";

/// The box's HTML, as pasted into the site.
#[derive(Template)]
#[template(path = "embed/signup_box.html")]
struct SignupBox<'a> {
    site_name: &'a str,
    action: &'a str,
    topics: &'a [String],
    source: &'a str,
    return_to: &'a str,
    max_email: usize,
    max_name: usize,
    /// The version that posts with `fetch` and shows the answer on the page.
    script: bool,
}

#[derive(Template)]
#[template(path = "admin/signup_form.html")]
struct SignupFormPage {
    chrome: Chrome,
    action: String,
    origins: Vec<String>,
    return_to: String,
    source: String,
    warning: Option<String>,
    plain: String,
    script: String,
}

/// `?return_to=…&source=…`: what the editor wants in the box.
#[derive(Deserialize)]
pub struct BoxQuery {
    return_to: Option<String>,
    source: Option<String>,
}

/// `GET /admin/signup-form`.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<BoxQuery>,
) -> HttpResponse {
    let settings = &state.settings;
    let origins: Vec<String> = settings
        .allowed_origins
        .iter()
        .map(|o| o.ascii_serialization())
        .collect();
    let return_to: String = match q.return_to.as_deref().map(str::trim) {
        Some(asked) => asked.chars().take(MAX_RETURN_TO_CHARS + 1).collect(),
        None => origins.first().map(|o| format!("{o}/")).unwrap_or_default(),
    };
    let source = match q.source.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.chars().take(200).collect(),
        _ => DEFAULT_SOURCE.to_string(),
    };
    let warning = (!return_to.is_empty()
        && embedding::return_target(&return_to, &settings.allowed_origins).is_none())
    .then(|| {
        "This return_to is not a page of IRIA_ALLOWED_ORIGINS (or not a full http(s) address): \
         it will be ignored, and readers will see our \"Check your inbox\" page."
            .to_string()
    });
    let action = settings.link("/subscriptions");
    let render = |script: bool| {
        SignupBox {
            site_name: &settings.site_name,
            action: &action,
            topics: &settings.topics,
            source: &source,
            return_to: &return_to,
            max_email: MAX_EMAIL_LEN,
            max_name: MAX_NAME_CHARS,
            script,
        }
        .render()
    };
    let (plain, script) = match (render(false), render(true)) {
        (Ok(plain), Ok(script)) => (plain, script),
        (Err(e), _) | (_, Err(e)) => {
            return crate::http::pages::internal_error(
                &settings.site_name,
                "rendering the sign-up box",
                &e,
            )
        }
    };
    html(
        StatusCode::OK,
        &SignupFormPage {
            chrome: Chrome::new(&state, &req, "signup-form"),
            action,
            origins,
            return_to,
            source,
            warning,
            plain,
            script,
        },
    )
}
