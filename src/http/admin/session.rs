//! The console's session and its guard: who is signed in, and the CSRF token every POST must
//! carry.

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_session::{Session, SessionExt, SessionMiddleware};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use sha2::{Digest, Sha512};

use super::{Fault, SESSION_HOURS};
use crate::foundation::access::Role;
use crate::foundation::config::Settings;
use crate::foundation::db;
use crate::http::state::AppState;
use crate::stores::editors::sessions::{self, Pending};

/// Paths a visitor without a session may open.
const PUBLIC: &[&str] = &["/admin/login"];

/// The paths a session that must still give a second-factor code may open.
pub const CODE_PATHS: &[&str] = &["/admin/login/code", "/admin/logout"];
/// The paths a session that must still enrol a second factor may open.
pub const ENROL_PATHS: &[&str] = &["/admin/2fa/enrol", "/admin/logout"];

pub fn session_middleware(settings: &Settings) -> SessionMiddleware<CookieSessionStore> {
    // A key of its own, derived from the secret key: nothing else signs with it.
    let mut hasher = Sha512::new();
    hasher.update(b"iria-news admin session cookie\0");
    hasher.update(settings.secret());
    let key = Key::from(hasher.finalize().as_slice());
    SessionMiddleware::builder(CookieSessionStore::default(), key)
        .cookie_name("iria_admin".into())
        .cookie_path("/admin".into())
        .cookie_http_only(true)
        .cookie_secure(settings.base_url.scheme() == "https")
        .cookie_same_site(SameSite::Strict)
        .cookie_content_security(CookieContentSecurity::Private)
        .session_lifecycle(
            PersistentSession::default().session_ttl(CookieDuration::hours(SESSION_HOURS)),
        )
        .build()
}

/// The least role that may use a (method, path), from the route table.
pub type RoleNeeded = fn(&str, &str) -> Option<Role>;

/// The session of a request that passed the guard (its row's id, for "this session").
#[derive(Clone, Copy, Debug)]
pub struct SessionId(pub i64);

/// Lets a request through with a live session whose role may use the route (and, on a POST, its
/// CSRF token); sends a visitor without one to the login page, a session that must still give
/// or enrol a second factor to that page, and answers 403 to a role below the route's.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    role_needed: RoleNeeded,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let session = req.get_session();
    // The path as actix routes it: percent-decoded (`/admin/%61ccounts` is `/admin/accounts`).
    // Every check below reads this one, never the raw path, so that no spelling of a route
    // escapes its row of the table.
    let path = req.match_info().as_str().to_string();
    if PUBLIC.contains(&path.as_str()) {
        if let Some(refused) = check_csrf(&mut req, &session).await? {
            return Ok(refused);
        }
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let live = match session.get::<String>(SESSION_KEY).ok().flatten() {
        Some(token) => {
            let pool = state(&req).pool.clone();
            match db::run(&pool, move |conn| Ok(sessions::find(conn, &token)?)).await {
                Ok(found) => found,
                Err(e) => return Ok(req.into_response(Fault::from(e).error_response())),
            }
        }
        None => None,
    };
    let Some(live) = live else {
        session.purge();
        return Ok(to_login(req));
    };
    let pending_paths = match live.pending {
        Some(Pending::Code) => Some((CODE_PATHS, "/admin/login/code")),
        Some(Pending::Enrol) => Some((ENROL_PATHS, "/admin/2fa/enrol")),
        None => None,
    };
    if let Some((allowed, page)) = pending_paths {
        if !allowed.contains(&path.as_str()) {
            return Ok(req.into_response(no_store(super::see_other(page))));
        }
    }
    // Signed in: a POST must carry the session's token.
    if let Some(refused) = check_csrf(&mut req, &session).await? {
        return Ok(refused);
    }
    // A path no row of the table matches is answered here, fail closed.
    let Some(needed) = role_needed(req.method().as_str(), &path) else {
        let page = crate::http::pages::not_found_page(&state(&req).settings.site_name);
        return Ok(req.into_response(no_store(page)));
    };
    if !live.editor.role.allows(needed) {
        let page = crate::http::pages::problem(
            &state(&req).settings.site_name,
            StatusCode::FORBIDDEN,
            "Not for your role",
            &format!(
                "Your account is an {} account; this needs {}. Ask an admin if you need it.",
                live.editor.role,
                match needed {
                    Role::Author => "an author's",
                    Role::Editor => "an editor's or an admin's",
                    Role::Admin => "an admin's",
                }
            ),
        );
        return Ok(req.into_response(no_store(page)));
    }
    req.extensions_mut().insert(live.editor);
    req.extensions_mut().insert(SessionId(live.id));
    let mut response = next.call(req).await?.map_into_boxed_body();
    // Console pages hold subscribers' data: never kept by a cache.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The cookie's key holding the session's token.
pub const SESSION_KEY: &str = "sid";

fn no_store(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// A visitor without a session goes to the login page, and back to the page asked for after it.
fn to_login(req: ServiceRequest) -> ServiceResponse<BoxBody> {
    let target = match req.method() {
        &Method::GET => req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let location = if target.is_empty() {
        "/admin/login".to_string()
    } else {
        format!(
            "/admin/login?next={}",
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        )
    };
    let response = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish();
    req.into_response(response)
}

/// For a POST: `Some(403 answer)` unless it carries the session's CSRF token.
async fn check_csrf(
    req: &mut ServiceRequest,
    session: &Session,
) -> Result<Option<ServiceResponse<BoxBody>>, actix_web::Error> {
    if req.method() == Method::POST {
        let expected = session.get::<String>("csrf").ok().flatten();
        let sent = sent_csrf(req).await?;
        let valid = match (expected, sent) {
            (Some(expected), Some(sent)) => constant_time_eq(expected.as_bytes(), sent.as_bytes()),
            _ => false,
        };
        if !valid {
            let page = crate::http::pages::problem(
                &state(req).settings.site_name,
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was sent without its security token, or from an old page. Go back, \
                 reload the page and send it again.",
            );
            return Ok(Some(ServiceResponse::new(req.request().clone(), page)));
        }
    }
    Ok(None)
}

fn state(req: &ServiceRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the application state is registered")
}

/// The CSRF token a POST sent: the `csrf` field of a form, or `csrf` in the query string (file
/// uploads). The body is read and put back for the handler.
async fn sent_csrf(req: &mut ServiceRequest) -> Result<Option<String>, actix_web::Error> {
    let from_query = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    if from_query.is_some() {
        return Ok(from_query);
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok(None);
    }
    let body = req.extract::<web::Bytes>().await?;
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    req.set_payload(actix_web::dev::Payload::from(body));
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
