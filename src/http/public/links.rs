//! The pages behind the links in every message: unsubscribe (RFC 8058 one-click and a page with
//! a button) and preferences (name, topics, and a button that mails a one-time link to download
//! or erase one's data, see [`super::data_links`]).
//!
//! Each link opens only what its token's purpose allows ([`Purpose`]): the header's unsubscribe
//! token unsubscribes and nothing else; no link in a message downloads or erases data.
//!
//! None of them sets a cookie or redirects: a mail provider's one-click POST must get its 200
//! straight away, and a link scanner's GET must change nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::signup::FieldError;
use crate::foundation::db::{self, DbError};
use crate::foundation::domain::{SubscriberName, Topics, MAX_NAME_CHARS};
use crate::foundation::links::{Purpose, RecipientToken, TokenError};
use crate::http::pages::{self, MessagePage};
use crate::http::state::AppState;
use crate::stores::subscriptions::data_links::{self, RequestError};
use crate::stores::subscriptions::records::{self, SubscriberRecord};

/// The token in the path, checked, and the subscriber it names.
enum Resolved {
    Found(RecipientToken, Box<SubscriberRecord>),
    Page(HttpResponse),
}

/// The token in the path checked for `purpose`, and the subscriber it names.
async fn resolve(state: &AppState, raw: &str, purpose: Purpose) -> Resolved {
    let site_name = &state.settings.site_name;
    let token =
        match RecipientToken::verify(raw, purpose, state.settings.secret()) {
            Ok(t) => t,
            Err(TokenError::Invalid) => {
                return Resolved::Page(pages::problem(
                    site_name,
                    StatusCode::BAD_REQUEST,
                    "This link does not work",
                    "The link seems damaged or cut short. Please open it again from the email, or \
                 use the unsubscribe link at the bottom of a newer one.",
                ))
            }
            Err(TokenError::Expired) => return Resolved::Page(pages::problem(
                site_name,
                StatusCode::GONE,
                "This link is too old",
                "Links in our emails work for a long time, but this one has expired. Please use \
                 the link at the bottom of a newer email.",
            )),
            Err(TokenError::WrongPurpose) => return Resolved::Page(pages::problem(
                site_name,
                StatusCode::FORBIDDEN,
                "This link cannot open this page",
                "An unsubscribe link only unsubscribes. To change your name or topics, use the \
                 \"Manage preferences\" link at the bottom of one of our emails.",
            )),
            Err(TokenError::LegacyUnsubscribeOnly) => {
                return Resolved::Page(pages::problem(
                    site_name,
                    StatusCode::FORBIDDEN,
                    "This link only unsubscribes",
                    "Links in our older emails can only unsubscribe now. To change your name or \
                 topics, use the \"Manage preferences\" link at the bottom of a newer email \
                 from us. No newer email? You can sign up again at any time.",
                ))
            }
        };
    let id = token.subscriber_id;
    match db::run(&state.pool, move |conn| Ok(records::find(conn, id)?)).await {
        Ok(Some(record)) if !record.is_erased() => Resolved::Found(token, Box::new(record)),
        Ok(Some(_)) => Resolved::Page(pages::problem(
            site_name,
            StatusCode::GONE,
            "This subscription was erased",
            "The data of this subscription has been erased at its owner's request. Nothing more \
             will be sent to it.",
        )),
        Ok(None) => Resolved::Page(pages::problem(
            site_name,
            StatusCode::NOT_FOUND,
            "We do not know this subscription",
            "There is no subscription for this link any more.",
        )),
        Err(e) => Resolved::Page(db_failure(site_name, e)),
    }
}

fn db_failure(site_name: &str, e: DbError) -> HttpResponse {
    if e.is_unavailable() {
        pages::unavailable(site_name)
    } else {
        pages::internal_error(site_name, "subscriber link failed", &e)
    }
}

#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct UnsubscribePage<'a> {
    site_name: &'a str,
    email: &'a str,
    token: &'a str,
    /// The token opens the preferences page too (a preferences link; not the header's, nor
    /// one from before purposes): the page may offer it.
    opens_preferences: bool,
}

/// `GET /unsubscribe/{token}`: a page with a button. Changes nothing: link scanners fetch it.
pub async fn unsubscribe_page(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let raw = path.into_inner();
    let (_, record) = match resolve(&state, &raw, Purpose::Unsubscribe).await {
        Resolved::Found(t, r) => (t, r),
        Resolved::Page(p) => return p,
    };
    if !record.is_subscribed() {
        return unsubscribed_page(&state.settings.site_name);
    }
    let opens_preferences =
        RecipientToken::verify(&raw, Purpose::Preferences, state.settings.secret()).is_ok();
    pages::html(
        StatusCode::OK,
        &UnsubscribePage {
            site_name: &state.settings.site_name,
            email: &record.email,
            token: &raw,
            opens_preferences,
        },
    )
}

fn unsubscribed_page(site_name: &str) -> HttpResponse {
    pages::html(
        StatusCode::OK,
        &MessagePage {
            site_name,
            title: "You are unsubscribed",
            message: "You will receive nothing more from us. Changed your mind? You can sign up \
                      again at any time.",
            offer_signup: true,
        },
    )
}

/// `POST /unsubscribe/{token}`: unsubscribes at once. Takes RFC 8058's one-click body
/// (`List-Unsubscribe=One-Click`, urlencoded or multipart) and the page's button alike; the
/// body's content is not needed, since the token alone says who. Always 200, never a redirect,
/// no cookie.
pub async fn unsubscribe(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _body: web::Bytes,
) -> HttpResponse {
    let raw = path.into_inner();
    let (token, record) = match resolve(&state, &raw, Purpose::Unsubscribe).await {
        Resolved::Found(t, r) => (t, r),
        Resolved::Page(p) => return p,
    };
    let via = match token.issue_id {
        0 => "unsubscribe link".to_string(),
        n => format!("unsubscribe link in issue {n}"),
    };
    let id = record.id;
    match db::run(&state.pool, move |conn| {
        records::unsubscribe(conn, id, &via)
    })
    .await
    {
        Ok(_) => unsubscribed_page(&state.settings.site_name),
        Err(e) => db_failure(&state.settings.site_name, e),
    }
}

#[derive(Template)]
#[template(path = "preferences.html")]
struct PreferencesPage<'a> {
    site_name: &'a str,
    email: &'a str,
    token: &'a str,
    name: &'a str,
    topics: &'a [String],
    all_topics: &'a [String],
    errors: &'a [FieldError],
    subscribed: bool,
    saved: bool,
    max_name: usize,
    /// What is done with clicks on the links of the emails (see [`pages::click_notice`]).
    clicks: Option<&'static str>,
}

impl PreferencesPage<'_> {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    fn checked(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }
}

/// `GET /preferences/{token}`.
pub async fn preferences_page(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let raw = path.into_inner();
    let record = match resolve(&state, &raw, Purpose::Preferences).await {
        Resolved::Found(_, r) => r,
        Resolved::Page(p) => return p,
    };
    let topics = Topics::from_stored(&record.topics);
    render_preferences(
        &state,
        StatusCode::OK,
        &record,
        &raw,
        record.name.as_deref().unwrap_or(""),
        topics.as_slice(),
        &[],
        false,
    )
}

#[allow(clippy::too_many_arguments)]
fn render_preferences(
    state: &AppState,
    status: StatusCode,
    record: &SubscriberRecord,
    token: &str,
    name: &str,
    topics: &[String],
    errors: &[FieldError],
    saved: bool,
) -> HttpResponse {
    pages::html(
        status,
        &PreferencesPage {
            site_name: &state.settings.site_name,
            email: &record.email,
            token,
            name,
            topics,
            all_topics: &state.settings.topics,
            errors,
            subscribed: record.is_subscribed(),
            saved,
            max_name: MAX_NAME_CHARS,
            clicks: pages::click_notice(state.settings.click_tracking),
        },
    )
}

/// `POST /preferences/{token}`: saves name and topics; a bad field gets 400 with the page
/// filled in as it was sent.
pub async fn save_preferences(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let raw = path.into_inner();
    let record = match resolve(&state, &raw, Purpose::Preferences).await {
        Resolved::Found(_, r) => r,
        Resolved::Page(p) => return p,
    };
    let mut name = String::new();
    let mut chosen: Vec<String> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "name" => name = value.into_owned(),
            "topics" if chosen.len() < 64 => chosen.push(value.into_owned()),
            _ => {}
        }
    }
    let mut errors = Vec::new();
    let parsed_name = SubscriberName::parse(&name).map_err(|m| {
        errors.push(FieldError {
            field: "name",
            message: m,
        })
    });
    let parsed_topics = Topics::parse(&chosen, &state.settings.topics).map_err(|m| {
        errors.push(FieldError {
            field: "topics",
            message: m,
        })
    });
    let (Ok(parsed_name), Ok(parsed_topics)) = (parsed_name, parsed_topics) else {
        return render_preferences(
            &state,
            StatusCode::BAD_REQUEST,
            &record,
            &raw,
            &name,
            &chosen,
            &errors,
            false,
        );
    };
    let id = record.id;
    let (n, t) = (parsed_name.clone(), parsed_topics.clone());
    if let Err(e) = db::run(&state.pool, move |conn| {
        Ok(records::update_preferences(conn, id, n.as_ref(), &t)?)
    })
    .await
    {
        return db_failure(&state.settings.site_name, e);
    }
    let shown_name = parsed_name
        .as_ref()
        .map(SubscriberName::as_str)
        .unwrap_or("");
    render_preferences(
        &state,
        StatusCode::OK,
        &record,
        &raw,
        shown_name,
        parsed_topics.as_slice(),
        &[],
        true,
    )
}

/// `GET /preferences/{token}/data` and `POST /preferences/{token}/erase`, where the links of
/// earlier versions downloaded and erased a reader's data: no link in a message does that any
/// more (the header's token is seen by mailbox providers, and issues get forwarded). The page
/// says how: a fresh link mailed to the address. Nothing changes.
pub async fn data_needs_fresh_link(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let raw = path.into_inner();
    if let Resolved::Page(p) = resolve(&state, &raw, Purpose::Preferences).await {
        return p;
    }
    pages::problem(
        &state.settings.site_name,
        StatusCode::FORBIDDEN,
        "This needs a fresh link",
        "To download or erase your data, open your preferences page and press \"Email me a link \
         to download or erase my data\": we send a link to your address that works once, for an \
         hour.",
    )
}

/// `POST /preferences/{token}/data-link`: mails the reader a one-time link to download or erase
/// their data (see [`data_links`]); at most a few an hour, then 429.
pub async fn request_data_link(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let raw = path.into_inner();
    let site_name = &state.settings.site_name;
    let record = match resolve(&state, &raw, Purpose::Preferences).await {
        Resolved::Found(_, r) => r,
        Resolved::Page(p) => return p,
    };
    let (id, settings) = (record.id, state.settings.clone());
    let result = db::run(&state.pool, move |conn| {
        Ok(data_links::request(conn, id, settings.secret()))
    })
    .await;
    match result {
        Ok(Ok(())) => {
            state.wake.notify_one();
            let message = format!(
                "We have sent a link to {}. It works once, for {} minutes: open it to download \
                 your data or to erase it.",
                record.email,
                data_links::VALID_MINUTES
            );
            pages::html(
                StatusCode::OK,
                &MessagePage {
                    site_name,
                    title: "Check your inbox",
                    message: &message,
                    offer_signup: false,
                },
            )
        }
        Ok(Err(RequestError::TooMany)) => pages::problem(
            site_name,
            StatusCode::TOO_MANY_REQUESTS,
            "We sent you several links already",
            "Please use the newest link we sent in the last hour, or ask again later.",
        ),
        Ok(Err(RequestError::TooManyToday)) => pages::problem(
            site_name,
            StatusCode::TOO_MANY_REQUESTS,
            "We sent you several links today",
            "We send at most a few of these links a day. Please use the newest one in your \
             inbox, or ask again tomorrow.",
        ),
        Ok(Err(RequestError::Suppressed)) => pages::problem(
            site_name,
            StatusCode::CONFLICT,
            "We cannot email this address now",
            "Our emails to this address bounced, or were reported as spam, so we send it \
             nothing, not even this link. Signing up again with it (and confirming) lifts \
             that; then ask for the link from your preferences.",
        ),
        Ok(Err(RequestError::Gone)) => pages::problem(
            site_name,
            StatusCode::GONE,
            "This subscription was erased",
            "There is no data left to download or erase.",
        ),
        Ok(Err(RequestError::Db(e))) | Err(e) => db_failure(site_name, e),
    }
}
