//! The sign-up page and the form post (the confirmation link is `confirm.rs`).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use url::Url;
use validator::Validate;

use crate::foundation::config::Settings;
use crate::foundation::db;
use crate::foundation::domain::{
    SubscriberEmail, SubscriberName, Topics, MAX_EMAIL_LEN, MAX_NAME_CHARS,
};
use crate::foundation::net;
use crate::http::embedding::{self, Format};
use crate::http::pages::{self, MessagePage};
use crate::http::state::AppState;
use crate::stores::limits;
use crate::stores::subscriptions::{self, NewSignup, SignupError};

/// The longest form source kept in the consent record.
const MAX_SOURCE_CHARS: usize = 200;
/// The name of the honeypot field: hidden from people, filled in by naive bots.
const HONEYPOT: &str = "website";
/// The most topics read from one sign-up (there are a few dozen at most).
const MAX_TOPICS: usize = 64;

/// What the person typed, kept to fill the form again when something is wrong.
#[derive(Clone, Debug, Default, Validate)]
pub struct SignupForm {
    #[validate(length(
        max = 254,
        message = "An email address can be at most 254 characters long."
    ))]
    #[validate(email(message = "That does not look like an email address; please check it."))]
    pub email: String,
    #[validate(length(max = 256, message = "A name can be at most 256 characters long."))]
    pub name: String,
    pub topics: Vec<String>,
    pub source: String,
    pub honeypot: String,
    /// Where the site's box asks the reader to be sent back to; taken only for
    /// `IRIA_ALLOWED_ORIGINS` (see [`embedding::return_target`]).
    pub return_to: String,
}

impl SignupForm {
    /// Reads an `application/x-www-form-urlencoded` body. Repeated `topics` fields are the
    /// checked boxes; for any other field the first value counts.
    pub fn from_urlencoded(body: &[u8]) -> Self {
        let mut form = SignupForm::default();
        let (mut seen_email, mut seen_name, mut seen_source) = (false, false, false);
        let mut seen_return_to = false;
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "email" if !seen_email => (form.email, seen_email) = (value.into_owned(), true),
                "name" if !seen_name => (form.name, seen_name) = (value.into_owned(), true),
                "source" if !seen_source => (form.source, seen_source) = (value.into_owned(), true),
                "return_to" if !seen_return_to => {
                    (form.return_to, seen_return_to) = (value.into_owned(), true)
                }
                "topics" if form.topics.len() < MAX_TOPICS => form.topics.push(value.into_owned()),
                HONEYPOT => form.honeypot = value.into_owned(),
                _ => {}
            }
        }
        form
    }

    /// Reads an `application/json` body: `{"email", "name", "topics": [...], "source"}`, each
    /// optional (a missing email is reported like an empty one); other members are ignored.
    /// `Err` says why the body is not such an object.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Body {
            email: Option<String>,
            name: Option<String>,
            topics: Option<Vec<String>>,
            source: Option<String>,
            website: Option<String>,
        }
        let body: Body = serde_json::from_slice(body).map_err(|e| {
            format!("The body is not the JSON object this form takes ({e}): send {{\"email\": \"…\", \"name\": \"…\", \"topics\": [\"…\"], \"source\": \"…\"}}.")
        })?;
        let mut topics = body.topics.unwrap_or_default();
        topics.truncate(MAX_TOPICS);
        Ok(SignupForm {
            email: body.email.unwrap_or_default(),
            name: body.name.unwrap_or_default(),
            topics,
            source: body.source.unwrap_or_default(),
            honeypot: body.website.unwrap_or_default(),
            return_to: String::new(),
        })
    }
}

/// One wrong field, for the page.
#[derive(Clone, Debug)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// The sign-up page, empty or filled in again with what is wrong.
#[derive(Template)]
#[template(path = "subscribe.html")]
struct SignupPage<'a> {
    site_name: &'a str,
    intro: &'a str,
    form: &'a SignupForm,
    all_topics: &'a [String],
    errors: &'a [FieldError],
    max_email: usize,
    max_name: usize,
    /// The site's page to go back to, kept for the next try when it is an allowed one.
    return_to: Option<&'a str>,
    /// What is done with clicks on the links of the emails (see [`pages::click_notice`]).
    clicks: Option<&'static str>,
}

impl SignupPage<'_> {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    fn checked(&self, topic: &str) -> bool {
        self.form.topics.iter().any(|t| t == topic)
    }
}

/// `GET /`.
pub async fn signup_page(state: web::Data<AppState>) -> HttpResponse {
    render_form(&state, StatusCode::OK, &SignupForm::default(), &[])
}

fn render_form(
    state: &AppState,
    status: StatusCode,
    form: &SignupForm,
    errors: &[FieldError],
) -> HttpResponse {
    pages::html(
        status,
        &SignupPage {
            site_name: &state.settings.site_name,
            intro: &state.settings.site_intro,
            form,
            all_topics: &state.settings.topics,
            errors,
            max_email: MAX_EMAIL_LEN,
            max_name: MAX_NAME_CHARS,
            return_to: embedding::return_target(&form.return_to, &state.settings.allowed_origins)
                .map(|_| form.return_to.as_str()),
            clicks: pages::click_notice(state.settings.click_tracking),
        },
    )
}

/// Checks the form field by field: validator for the shape, then the domain types, which also
/// normalise. All problems are reported at once.
fn parse_form(
    form: &SignupForm,
    known_topics: &[String],
) -> Result<(SubscriberEmail, Option<SubscriberName>, Topics), Vec<FieldError>> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mut note = |field: &'static str, message: String| {
        if !errors.iter().any(|e| e.field == field) {
            errors.push(FieldError { field, message });
        }
    };
    // The domain types speak first: their messages are the more precise.
    let email = SubscriberEmail::parse(&form.email);
    let name = SubscriberName::parse(&form.name);
    let topics = Topics::parse(&form.topics, known_topics);
    if let Err(m) = &email {
        note("email", m.clone());
    }
    if let Err(m) = &name {
        note("name", m.clone());
    }
    if let Err(m) = &topics {
        note("topics", m.clone());
    }
    if let Err(found) = form.validate() {
        for (field, list) in found.field_errors() {
            let field = if field.as_ref() == "email" {
                "email"
            } else {
                "name"
            };
            if let Some(first) = list.first() {
                note(
                    field,
                    first
                        .message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                );
            }
        }
    }
    match (email, name, topics) {
        (Ok(e), Ok(n), Ok(t)) if errors.is_empty() => Ok((e, n, t)),
        _ => {
            errors.sort_by_key(|e| {
                ["email", "name", "topics"]
                    .iter()
                    .position(|f| *f == e.field)
            });
            Err(errors)
        }
    }
}

/// How a sign-up is answered: as pages for a browser's form post, as JSON and problem details
/// for a script (see [`embedding::answer_format`]). Whatever the format, an accepted sign-up gets
/// the same answer whatever state the address was in, so that the form tells nobody whether an
/// address is on the list.
struct Reply<'a> {
    state: &'a AppState,
    format: Format,
}

impl Reply<'_> {
    fn site_name(&self) -> &str {
        &self.state.settings.site_name
    }

    /// A problem: a page with a way back to the form, or problem details.
    fn problem(&self, status: StatusCode, title: &str, detail: &str) -> HttpResponse {
        match self.format {
            Format::Html => pages::problem(self.site_name(), status, title, detail),
            Format::Json => pages::problem_details(status, title, detail, Default::default()),
        }
    }

    /// 202 for a script; for a browser, back to the site's page when `return_to` allows it
    /// (303, `subscribed=1`), else the "check your inbox" page.
    fn accepted(&self, return_to: Option<Url>) -> HttpResponse {
        if self.format == Format::Json {
            return HttpResponse::Accepted()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(serde_json::json!({ "status": "confirmation_sent" }));
        }
        if let Some(target) = return_to {
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, target.as_str()))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
        }
        pages::html(
            StatusCode::OK,
            &MessagePage {
                site_name: self.site_name(),
                title: "Check your inbox",
                message: "If this address can receive our newsletter, we have sent it an email \
                          with a link. Follow that link to confirm your subscription; until then \
                          you will not receive anything from us.",
                offer_signup: false,
            },
        )
    }

    /// 400: the form again with what is wrong, or problem details naming each wrong field.
    fn invalid(&self, form: &SignupForm, errors: &[FieldError]) -> HttpResponse {
        if self.format == Format::Html {
            return render_form(self.state, StatusCode::BAD_REQUEST, form, errors);
        }
        let detail = errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let fields = errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "field": e.field,
                    "detail": e.message,
                    "pointer": format!("#/{}", e.field),
                })
            })
            .collect();
        let mut extra = serde_json::Map::new();
        extra.insert("errors".into(), serde_json::Value::Array(fields));
        pages::problem_details(StatusCode::BAD_REQUEST, "Invalid sign-up", &detail, extra)
    }

    /// 429, with the time to wait.
    fn too_many(&self) -> HttpResponse {
        let mut response = self.problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ups",
            "We have received many sign-ups from here or for this address in the last hour. \
             Please try again later; if you already signed up, look for our email in your inbox \
             and your spam folder.",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static("3600"),
        );
        response
    }

    fn unavailable(&self) -> HttpResponse {
        if self.format == Format::Html {
            return pages::unavailable(self.site_name());
        }
        let mut response = self.problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "Our subscription service cannot reach its database right now. Nothing you sent \
             was stored; please try again in a minute.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        response
    }

    fn internal_error(&self, error: &dyn std::fmt::Display) -> HttpResponse {
        if self.format == Format::Html {
            return pages::internal_error(self.site_name(), "sign-up failed", error);
        }
        tracing::error!(%error, "sign-up failed");
        self.problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on our side",
            "Nothing was stored. Please try again in a moment.",
        )
    }
}

/// What a sign-up's body was sent as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Form,
    Json,
}

fn body_kind(req: &HttpRequest) -> Option<BodyKind> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/x-www-form-urlencoded" => Some(BodyKind::Form),
        "application/json" => Some(BodyKind::Json),
        _ => None,
    }
}

/// `POST /subscriptions`: the sign-up form's post (a page, or a redirect back to the site's
/// `return_to`), or a script's sign-up (`Accept: application/json`; the body a form's, or a JSON
/// object), answered 202.
pub async fn subscribe(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let reply = Reply {
        state: &state,
        format: embedding::answer_format(req.headers()),
    };
    // A JSON body is read only from a caller that asks for JSON back: a script. Anything posting
    // JSON while expecting a page is not using the form.
    let kind = body_kind(&req).filter(|k| *k == BodyKind::Form || reply.format == Format::Json);
    let Some(kind) = kind else {
        return reply.problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "That form could not be read",
            "Please use the sign-up form on this site (or send JSON with Accept: \
             application/json).",
        );
    };
    let ip = state.client_ip(&req);
    let form = match kind {
        BodyKind::Form => SignupForm::from_urlencoded(&body),
        BodyKind::Json => match SignupForm::from_json(&body) {
            Ok(form) => form,
            Err(why) => {
                return reply.problem(StatusCode::BAD_REQUEST, "That form could not be read", &why)
            }
        },
    };
    let (email, name, topics) = match parse_form(&form, &state.settings.topics) {
        Ok(parsed) => parsed,
        Err(errors) => return reply.invalid(&form, &errors),
    };
    let return_to = embedding::return_target(&form.return_to, &state.settings.allowed_origins);
    if !form.honeypot.trim().is_empty() {
        // A bot: it gets the same answer as a person, and nothing is stored or sent.
        tracing::info!(%ip, "sign-up with the honeypot filled in ignored");
        return reply.accepted(return_to);
    }
    let signup = NewSignup {
        email,
        name,
        topics,
        ip: ip.to_string(),
        user_agent: user_agent(&req),
        source: clean_source(&form.source),
    };
    let settings = state.settings.clone();
    let credits = state.signup_credits.clone();
    let result = db::run(&state.pool, move |conn| {
        admit_and_sign_up(conn, &credits, &settings, &signup)
    })
    .await;
    match result {
        Ok(Some(Ok(()))) => {
            state.wake.notify_one();
            reply.accepted(return_to)
        }
        Ok(None | Some(Err(SignupError::TooManyForAddress))) => reply.too_many(),
        Ok(Some(Err(SignupError::Db(e)))) | Err(e) if e.is_unavailable() => reply.unavailable(),
        Ok(Some(Err(SignupError::Db(e)))) | Err(e) => reply.internal_error(&e),
    }
}

/// Counts the sign-up against its client IP's limit, then takes it. Sign-ups per client IP are
/// counted in the database, so that every process sees them all (see `stores::limits`): one
/// statement, or none for a busy address whose places this process took ahead. `None`: over the
/// per-IP limit.
fn admit_and_sign_up(
    conn: &mut db::DbConnection,
    credits: &limits::Credits,
    settings: &Settings,
    signup: &NewSignup,
) -> Result<Option<Result<(), SignupError>>, db::DbError> {
    let ip_key = format!("signup-ip:{}", net::limit_key(&signup.ip));
    let hour = std::time::Duration::from_secs(3600);
    let per_ip = settings.signup_per_ip_per_hour;
    if !credits.admit(conn, &ip_key, per_ip, hour, limits::now_ms())? {
        return Ok(None);
    }
    Ok(Some(subscriptions::sign_up(
        conn,
        signup,
        settings.signup_per_address_per_hour,
        settings.confirmation_ttl,
        settings.secret(),
    )))
}

/// The browser's `User-Agent`, for the consent record: one line, at most 512 characters.
fn user_agent(req: &HttpRequest) -> String {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect()
}

/// Which form the sign-up came from, for the consent record (`signup-page` when not said).
fn clean_source(raw: &str) -> String {
    let source: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SOURCE_CHARS)
        .collect();
    if source.is_empty() {
        "signup-page".into()
    } else {
        source
    }
}
