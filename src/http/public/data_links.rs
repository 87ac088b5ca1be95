//! The page behind a data link, the one-time link a reader asks for on the preferences page:
//! download everything stored about them, or have it erased. `GET` shows the two buttons and
//! changes nothing (a link scanner's fetch does not use the link up); either `POST` uses it.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;

use crate::foundation::db::{self, DbError};
use crate::http::pages::{self, MessagePage};
use crate::http::state::AppState;
use crate::stores::subscriptions::data_links::{self, LinkError};

#[derive(Template)]
#[template(path = "my_data.html")]
struct MyDataPage<'a> {
    site_name: &'a str,
    email: &'a str,
    token: &'a str,
    minutes: i64,
}

/// The page for a link that does not work (any more).
fn refused(site_name: &str, e: LinkError) -> HttpResponse {
    let again = "Open your preferences page (the \"Manage preferences\" link at the bottom of \
                 one of our emails) and ask for a new link.";
    match e {
        LinkError::Unknown => pages::problem(
            site_name,
            StatusCode::NOT_FOUND,
            "This link does not work",
            &format!("It is not a link we sent, or it was cut short. {again}"),
        ),
        LinkError::Used => pages::problem(
            site_name,
            StatusCode::GONE,
            "This link has been used",
            &format!("Each link works once. {again}"),
        ),
        LinkError::Expired => pages::problem(
            site_name,
            StatusCode::GONE,
            "This link has expired",
            &format!(
                "Each link works for {} minutes. {again}",
                data_links::VALID_MINUTES
            ),
        ),
        LinkError::Db(e) => db_failure(site_name, e),
    }
}

fn db_failure(site_name: &str, e: DbError) -> HttpResponse {
    if e.is_unavailable() {
        pages::unavailable(site_name)
    } else {
        pages::internal_error(site_name, "data link failed", &e)
    }
}

/// `GET /my-data/{token}`: the two buttons. Uses nothing up.
pub async fn page(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let raw = path.into_inner();
    let site_name = &state.settings.site_name;
    let token = raw.clone();
    match db::run(&state.pool, move |conn| Ok(data_links::check(conn, &token))).await {
        Ok(Ok(record)) => pages::html(
            StatusCode::OK,
            &MyDataPage {
                site_name,
                email: &record.email,
                token: &raw,
                minutes: data_links::VALID_MINUTES,
            },
        ),
        Ok(Err(e)) => refused(site_name, e),
        Err(e) => db_failure(site_name, e),
    }
}

/// `POST /my-data/{token}/download`: uses the link; everything stored about the reader, as a
/// JSON download.
pub async fn download(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let raw = path.into_inner();
    let site_name = &state.settings.site_name;
    match db::run(&state.pool, move |conn| {
        Ok(data_links::download(conn, &raw))
    })
    .await
    {
        Ok(Ok(data)) => match serde_json::to_string_pretty(&data) {
            Ok(body) => HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"iria-news-my-data.json\"",
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(body),
            Err(e) => pages::internal_error(site_name, "writing the data download", &e),
        },
        Ok(Err(e)) => refused(site_name, e),
        Err(e) => db_failure(site_name, e),
    }
}

/// `POST /my-data/{token}/erase`: with the form's box ticked, uses the link and erases the
/// reader's personal data. Without it, nothing happens and the link still works.
pub async fn erase(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let raw = path.into_inner();
    let site_name = &state.settings.site_name;
    let confirmed = url::form_urlencoded::parse(&body).any(|(k, v)| k == "confirm" && v == "yes");
    if !confirmed {
        return pages::problem(
            site_name,
            StatusCode::BAD_REQUEST,
            "Nothing was erased",
            "To erase your data, tick the box that says you understand, then press the button.",
        );
    }
    let settings = state.settings.clone();
    let result = db::run(&state.pool, move |conn| {
        Ok(data_links::erase(conn, &raw, settings.secret()))
    })
    .await;
    match result {
        Ok(Ok(())) => pages::html(
            StatusCode::OK,
            &MessagePage {
                site_name,
                title: "Your data is erased",
                message: "We have deleted your name, topics and sign-up records, and keep only a \
                          keyed one-way hash of your address so that it is never mailed again.",
                offer_signup: false,
            },
        ),
        Ok(Err(e)) => refused(site_name, e),
        Err(e) => db_failure(site_name, e),
    }
}
