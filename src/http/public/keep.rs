//! The page behind a re-permission message's "Keep me subscribed" button (`/keep/{token}`).
//! `GET` shows the button and changes nothing (a mail scanner that fetches every link must not
//! answer for the reader); the form's `POST` keeps the reader subscribed.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use crate::foundation::db::{self, DbError};
use crate::foundation::keep_tokens::KeepToken;
use crate::http::pages::{self, MessagePage};
use crate::http::state::AppState;
use crate::stores::subscriptions::repermission::{self, Standing};

#[derive(Template)]
#[template(path = "keep.html")]
struct KeepPage<'a> {
    site_name: &'a str,
    token: &'a str,
    deadline: String,
}

fn db_failure(site_name: &str, e: DbError) -> HttpResponse {
    if e.is_unavailable() {
        pages::unavailable(site_name)
    } else {
        pages::internal_error(site_name, "keep me subscribed failed", &e)
    }
}

/// The page for an answer that is not (or no longer) waiting.
fn settled(site_name: &str, standing: Standing) -> HttpResponse {
    let (status, title, message) = match standing {
        Standing::Kept => (
            StatusCode::OK,
            "You are still subscribed",
            "Thank you: you stay on the list, and nothing changes.",
        ),
        Standing::TooLate => (
            StatusCode::GONE,
            "This question has closed",
            "The time to answer has passed, and you were unsubscribed as we said. You are \
             welcome to sign up again.",
        ),
        Standing::Left => (
            StatusCode::GONE,
            "You are no longer subscribed",
            "You left the list since we asked. You are welcome to sign up again.",
        ),
        Standing::Unknown | Standing::Waiting { .. } => (
            StatusCode::NOT_FOUND,
            "This link does not work",
            "It is not a link we sent, or it was cut short.",
        ),
    };
    pages::html(
        status,
        &MessagePage {
            site_name,
            title,
            message,
            offer_signup: !matches!(standing, Standing::Kept),
        },
    )
}

/// `GET /keep/{token}`: the button. Changes nothing.
pub async fn page(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let raw = path.into_inner();
    let site_name = &state.settings.site_name;
    let Some(token) = KeepToken::verify(&raw, state.settings.secret()) else {
        return settled(site_name, Standing::Unknown);
    };
    let result = db::run(&state.pool, move |conn| {
        Ok(repermission::standing(
            conn,
            token.campaign_id,
            token.subscriber_id,
            db::now(),
        )?)
    })
    .await;
    match result {
        Ok(Standing::Waiting { deadline }) => pages::html(
            StatusCode::OK,
            &KeepPage {
                site_name,
                token: &raw,
                deadline: deadline.format("%-d %B %Y, %H:%M").to_string(),
            },
        ),
        Ok(other) => settled(site_name, other),
        Err(e) => db_failure(site_name, e),
    }
}

/// `POST /keep/{token}`: keeps the reader subscribed.
pub async fn keep(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let Some(token) = KeepToken::verify(&path.into_inner(), state.settings.secret()) else {
        return settled(site_name, Standing::Unknown);
    };
    let result = db::run(&state.pool, move |conn| {
        repermission::keep(conn, token.campaign_id, token.subscriber_id, db::now())
    })
    .await;
    match result {
        Ok(Standing::Waiting { .. }) => settled(site_name, Standing::Kept),
        Ok(other) => settled(site_name, other),
        Err(e) => db_failure(site_name, e),
    }
}
