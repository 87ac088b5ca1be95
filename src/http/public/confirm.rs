//! The confirmation link of a sign-up: `GET /subscriptions/confirm?token=…` shows a page with
//! one button and changes nothing (mail scanners and link previews fetch every link in a
//! message, and must not confirm a sign-up the reader never made); the button posts the token to
//! `POST /subscriptions/confirm`, which confirms.
//!
//! Anyone may sign an address up, with any name, and a newer sign-up supersedes an older link:
//! so the page shows what confirming records (the name, or "no name", and the topics) before the
//! button, and a box beside it, "Confirm without this name" (`name=discard` in the POST), with
//! which the button confirms and leaves the subscriber's name as it was (none for a new
//! subscriber). One button, as the contract has it: a POST of the token alone confirms with the
//! name.
//!
//! Neither sets a cookie; both answer `Cache-Control: no-store`, and every page is sent with
//! `Referrer-Policy: no-referrer` (the token is in the URL).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use crate::foundation::db::{self, DbError};
use crate::http::pages::{self, MessagePage};
use crate::http::state::AppState;
use crate::stores::subscriptions::tokens::ConfirmationToken;
use crate::stores::subscriptions::{self, ConfirmError, NameChoice, ToConfirm};

/// The page a confirmation link opens.
#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage<'a> {
    site_name: &'a str,
    token: &'a str,
    /// The name confirming records, if any (askama escapes it).
    name: Option<&'a str>,
    /// The topics it records; none means all.
    topics: &'a [String],
}

/// The `token` field of a query string or an urlencoded body, if it has a token's form.
fn token_in(urlencoded: &[u8]) -> Option<ConfirmationToken> {
    url::form_urlencoded::parse(urlencoded)
        .find(|(k, _)| k == "token")
        .and_then(|(_, v)| ConfirmationToken::parse(&v))
}

/// The box's `name=discard`: confirm without the sign-up's name.
fn name_choice_in(urlencoded: &[u8]) -> NameChoice {
    let discard =
        url::form_urlencoded::parse(urlencoded).any(|(k, v)| k == "name" && v == "discard");
    if discard {
        NameChoice::Discard
    } else {
        NameChoice::Given
    }
}

fn incomplete(site_name: &str) -> HttpResponse {
    pages::problem(
        site_name,
        StatusCode::BAD_REQUEST,
        "That link is not complete",
        "The confirmation link seems to be cut short. Please copy the whole link from the \
         email into your browser, or sign up again below.",
    )
}

/// `GET /subscriptions/confirm?token=…`: the page with the button, when the token could
/// confirm; else the page that says why not. Looks at the token without using it.
pub async fn confirm_page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let Some(token) = token_in(req.query_string().as_bytes()) else {
        return incomplete(site_name);
    };
    let checked = token.clone();
    let result = db::run(&state.pool, move |conn| {
        Ok(subscriptions::check(conn, &checked))
    })
    .await;
    match result {
        Ok(Ok(ToConfirm { name, topics })) => pages::html(
            StatusCode::OK,
            &ConfirmPage {
                site_name,
                token: token.as_str(),
                name: name.as_deref(),
                topics: topics.as_slice(),
            },
        ),
        Ok(Err(why)) => refused(site_name, why),
        Err(e) => db_failure(site_name, e),
    }
}

/// `POST /subscriptions/confirm` (urlencoded `token`, and `name=discard` when the box "Confirm
/// without this name" is ticked): confirms.
pub async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let Some(token) = token_in(&body) else {
        return incomplete(site_name);
    };
    let name_choice = name_choice_in(&body);
    let ip = state.client_ip(&req).to_string();
    let result = db::run(&state.pool, move |conn| {
        Ok(subscriptions::confirm(conn, &token, &ip, name_choice))
    })
    .await;
    match result {
        Ok(Ok(_email)) => {
            // The welcome email was queued with the confirmation: off it goes.
            state.wake.notify_one();
            pages::html(
                StatusCode::OK,
                &MessagePage {
                    site_name,
                    title: "You are subscribed",
                    message: "Thank you for confirming. The next IRIA News digest will be in your \
                              inbox. Every message has a link to leave at any time.",
                    offer_signup: false,
                },
            )
        }
        Ok(Err(why)) => refused(site_name, why),
        Err(e) => db_failure(site_name, e),
    }
}

/// The page for a token that cannot confirm, each reason with its own status and words.
fn refused(site_name: &str, why: ConfirmError) -> HttpResponse {
    let (status, title, message) = match why {
        ConfirmError::Unknown => (
            StatusCode::NOT_FOUND,
            "We do not know this link",
            "This confirmation link is not one we sent. Please sign up again below.",
        ),
        ConfirmError::Used => (
            StatusCode::GONE,
            "This link has already been used",
            "This confirmation link has been used already, so the subscription it asked for is \
             confirmed. To sign up again, use the form below.",
        ),
        ConfirmError::Superseded => (
            StatusCode::GONE,
            "A newer link has been sent",
            "You signed up again after this email was sent, so only the link in the newest email \
             works. Look for it in your inbox, or sign up again below.",
        ),
        ConfirmError::Expired => (
            StatusCode::GONE,
            "This link has expired",
            "Confirmation links work for a limited time. Please sign up again below and follow \
             the new link.",
        ),
        ConfirmError::Db(e) => return db_failure(site_name, e),
    };
    pages::problem(site_name, status, title, message)
}

fn db_failure(site_name: &str, e: DbError) -> HttpResponse {
    if e.is_unavailable() {
        pages::unavailable(site_name)
    } else {
        pages::internal_error(site_name, "confirmation failed", &e)
    }
}
