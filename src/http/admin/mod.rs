//! The editor console under `/admin`: server-rendered pages behind a login.
//!
//! Every route is declared once, in [`routes::ROUTES`], with the least role that may use it;
//! the table both registers the routes and lets the tests walk them (every route but the login
//! must redirect a visitor without a session, and answer each role as the table says). The whole
//! scope sits behind [`session::guard`]: a session (a signed and encrypted cookie, path `/admin`,
//! holding a random token whose hash names a row of `editor_sessions`), a role the route allows,
//! and on every POST the session's CSRF token, sent back by each form in a hidden `csrf` field
//! (or, for a file upload, in the form's query string). This file holds what every page shares;
//! it imports none of them.

pub mod accounts;
pub mod articles;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod digest;
pub mod engagement;
pub mod imports;
pub mod issues;
pub mod repermission;
pub mod routes;
pub mod session;
pub mod sessions;
pub mod signup_form;
pub mod subscribers;
pub mod tokens;
pub mod two_factor;
pub mod webhooks;
pub mod welcome;

use actix_session::{Session, SessionExt};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use rand::RngCore;

use crate::foundation::access::Role;
use crate::foundation::db::{self, DbError};
use crate::http::state::AppState;
use crate::stores::editors::Editor;

/// A session lasts this long after the login, whatever is done with it.
pub const SESSION_HOURS: i64 = 12;
/// The largest form body the console takes (413 beyond).
pub const MAX_FORM_BYTES: usize = 256 * 1024;
/// The largest CSV file an editor can import.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// A fresh random token, URL-safe.
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session's CSRF token, made when missing.
pub fn csrf_token(session: &Session) -> String {
    match session.get::<String>("csrf") {
        Ok(Some(token)) => token,
        _ => {
            let token = random_token();
            let _ = session.insert("csrf", &token);
            token
        }
    }
}

/// The editor of a request that passed the guard.
pub fn editor(req: &actix_web::HttpRequest) -> Option<Editor> {
    req.extensions().get::<Editor>().cloned()
}

/// Whether the editor of a request that passed the guard has at least `role`.
pub fn may(req: &actix_web::HttpRequest, role: Role) -> bool {
    editor(req).is_some_and(|e| e.role.allows(role))
}

/// A 403 page for what the editor's role may not do.
pub fn forbidden(site_name: &str, detail: &str) -> HttpResponse {
    crate::http::pages::problem(
        site_name,
        StatusCode::FORBIDDEN,
        "Not for your role",
        detail,
    )
}

/// The name of the editor of a request that passed the guard.
pub fn editor_name(req: &actix_web::HttpRequest) -> String {
    req.extensions()
        .get::<Editor>()
        .map(|e| e.name.clone())
        .unwrap_or_default()
}

/// What the console shows around every page.
pub struct Chrome {
    pub site_name: String,
    pub editor: String,
    /// The editor's role: the navigation shows only what it may open.
    pub role: &'static str,
    pub csrf: String,
    /// Which section of the navigation is current.
    pub section: &'static str,
}

impl Chrome {
    pub fn new(state: &AppState, req: &actix_web::HttpRequest, section: &'static str) -> Self {
        Self {
            site_name: state.settings.site_name.clone(),
            editor: editor_name(req),
            role: editor(req).map(|e| e.role.as_str()).unwrap_or("author"),
            csrf: csrf_token(&req.get_session()),
            section,
        }
    }
}

/// Why a console page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

impl From<diesel::result::Error> for Fault {
    fn from(e: diesel::result::Error) -> Self {
        Fault::Db(DbError::Query(e))
    }
}

impl ResponseError for Fault {
    fn status_code(&self) -> StatusCode {
        match self {
            Fault::NotFound => StatusCode::NOT_FOUND,
            Fault::Db(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let site = "IRIA News";
        match self {
            Fault::NotFound => crate::http::pages::not_found_page(site),
            Fault::Db(e) if e.is_unavailable() => crate::http::pages::unavailable(site),
            other => crate::http::pages::internal_error(site, "a console page", other),
        }
    }
}

/// A numeric id from a path; anything else is a page that does not exist.
pub fn path_id(raw: &str) -> Result<i64, Fault> {
    raw.parse::<i64>().map_err(|_| Fault::NotFound)
}

/// `?page=N` of a paged list.
#[derive(serde::Deserialize)]
pub struct PageQuery {
    pub page: Option<i64>,
}

impl PageQuery {
    /// The page asked for, from 1.
    pub fn page(&self) -> i64 {
        self.page.unwrap_or(1).clamp(1, 1_000_000)
    }
}

/// `?notice=…`: which outcome a page reached by a redirect reports.
#[derive(serde::Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

/// A console page's answer.
pub type Answer = Result<HttpResponse, Fault>;

/// A 303 to another console page (after a POST).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_string()))
        .finish()
}

/// Runs a query on the pool, as console pages do.
pub async fn query<T, F>(state: &AppState, f: F) -> Result<T, Fault>
where
    F: FnOnce(&mut db::DbConnection) -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    db::run(&state.pool, f).await.map_err(Fault::from)
}

/// A UTC time as the console shows it.
pub fn when(t: &chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An optional UTC time as the console shows it.
pub fn when_opt(t: &Option<chrono::NaiveDateTime>) -> String {
    t.as_ref().map(when).unwrap_or_else(|| "—".to_string())
}
