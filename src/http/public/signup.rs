//! The sign-up page, the form post and the confirmation link.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use validator::Validate;

use crate::foundation::db;
use crate::foundation::domain::{
    SubscriberEmail, SubscriberName, Topics, MAX_EMAIL_LEN, MAX_NAME_CHARS,
};
use crate::http::pages::{self, MessagePage};
use crate::http::state::AppState;
use crate::stores::subscriptions::tokens::ConfirmationToken;
use crate::stores::subscriptions::{self, ConfirmError, NewSignup, SignupError};

/// The longest form source kept in the consent record.
const MAX_SOURCE_CHARS: usize = 200;
/// The name of the honeypot field: hidden from people, filled in by naive bots.
const HONEYPOT: &str = "website";

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
}

impl SignupForm {
    /// Reads an `application/x-www-form-urlencoded` body. Repeated `topics` fields are the
    /// checked boxes; for any other field the first value counts.
    pub fn from_urlencoded(body: &[u8]) -> Self {
        let mut form = SignupForm::default();
        let (mut seen_email, mut seen_name, mut seen_source) = (false, false, false);
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "email" if !seen_email => (form.email, seen_email) = (value.into_owned(), true),
                "name" if !seen_name => (form.name, seen_name) = (value.into_owned(), true),
                "source" if !seen_source => (form.source, seen_source) = (value.into_owned(), true),
                "topics" if form.topics.len() < 64 => form.topics.push(value.into_owned()),
                HONEYPOT => form.honeypot = value.into_owned(),
                _ => {}
            }
        }
        form
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

/// The page every accepted sign-up gets, whatever state the address was in, so that
/// the form tells nobody whether an address is on the list.
fn accepted(state: &AppState) -> HttpResponse {
    pages::html(
        StatusCode::OK,
        &MessagePage {
            site_name: &state.settings.site_name,
            title: "Check your inbox",
            message: "If this address can receive our newsletter, we have sent it an email with a \
                      link. Follow that link to confirm your subscription; until then you will not \
                      receive anything from us.",
            offer_signup: false,
        },
    )
}

/// `POST /subscriptions`.
pub async fn subscribe(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return pages::problem(
            site_name,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "That form could not be read",
            "Please use the sign-up form on this site.",
        );
    }
    let ip = state.client_ip(&req);
    if state.signup_ip_limiter.check_key(&ip).is_err() {
        return too_many(site_name);
    }
    let form = SignupForm::from_urlencoded(&body);
    let (email, name, topics) = match parse_form(&form, &state.settings.topics) {
        Ok(parsed) => parsed,
        Err(errors) => return render_form(&state, StatusCode::BAD_REQUEST, &form, &errors),
    };
    if !form.honeypot.trim().is_empty() {
        // A bot: it gets the same answer as a person, and nothing is stored or sent.
        tracing::info!(%ip, "sign-up with the honeypot filled in ignored");
        return accepted(&state);
    }
    let user_agent: String = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    let source: String = form
        .source
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SOURCE_CHARS)
        .collect();
    let signup = NewSignup {
        email,
        name,
        topics,
        ip: ip.to_string(),
        user_agent,
        source: if source.is_empty() {
            "signup-page".into()
        } else {
            source
        },
    };
    let per_address = state.settings.signup_per_address_per_hour;
    let ttl = state.settings.confirmation_ttl;
    let result = db::run(&state.pool, move |conn| {
        Ok(subscriptions::sign_up(conn, &signup, per_address, ttl))
    })
    .await;
    match result {
        Ok(Ok(())) => {
            state.wake.notify_one();
            accepted(&state)
        }
        Ok(Err(SignupError::TooManyForAddress)) => too_many(site_name),
        Ok(Err(SignupError::Db(e))) | Err(e) if e.is_unavailable() => pages::unavailable(site_name),
        Ok(Err(SignupError::Db(e))) | Err(e) => {
            pages::internal_error(site_name, "sign-up failed", &e)
        }
    }
}

fn too_many(site_name: &str) -> HttpResponse {
    let mut response = pages::problem(
        site_name,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-ups",
        "We have received many sign-ups from here or for this address in the last hour. Please \
         try again later; if you already signed up, look for our email in your inbox and your \
         spam folder.",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static("3600"),
    );
    response
}

/// `GET /subscriptions/confirm?token=…`.
pub async fn confirm(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let raw = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = raw.as_deref().and_then(ConfirmationToken::parse) else {
        return pages::problem(
            site_name,
            StatusCode::BAD_REQUEST,
            "That link is not complete",
            "The confirmation link seems to be cut short. Please copy the whole link from the \
             email into your browser, or sign up again below.",
        );
    };
    let ip = state.client_ip(&req).to_string();
    let result = db::run(&state.pool, move |conn| {
        Ok(subscriptions::confirm(conn, &token, &ip))
    })
    .await;
    let (status, title, message) = match result {
        Ok(Ok(_email)) => {
            // The welcome email was queued with the confirmation: off it goes.
            state.wake.notify_one();
            return pages::html(
                StatusCode::OK,
                &MessagePage {
                    site_name,
                    title: "You are subscribed",
                    message: "Thank you for confirming. The next IRIA News digest will be in your \
                              inbox. Every message has a link to leave at any time.",
                    offer_signup: false,
                },
            );
        }
        Ok(Err(ConfirmError::Unknown)) => (
            StatusCode::NOT_FOUND,
            "We do not know this link",
            "This confirmation link is not one we sent. Please sign up again below.",
        ),
        Ok(Err(ConfirmError::Used)) => (
            StatusCode::GONE,
            "This link has already been used",
            "This confirmation link has been used already, so the subscription it asked for is \
             confirmed. To sign up again, use the form below.",
        ),
        Ok(Err(ConfirmError::Superseded)) => (
            StatusCode::GONE,
            "A newer link has been sent",
            "You signed up again after this email was sent, so only the link in the newest email \
             works. Look for it in your inbox, or sign up again below.",
        ),
        Ok(Err(ConfirmError::Expired)) => (
            StatusCode::GONE,
            "This link has expired",
            "Confirmation links work for a limited time. Please sign up again below and follow \
             the new link.",
        ),
        Ok(Err(ConfirmError::Db(e))) | Err(e) if e.is_unavailable() => {
            return pages::unavailable(site_name)
        }
        Ok(Err(ConfirmError::Db(e))) | Err(e) => {
            return pages::internal_error(site_name, "confirmation failed", &e)
        }
    };
    pages::problem(site_name, status, title, message)
}
