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
use crate::foundation::config::Settings;
use crate::foundation::db;
use crate::http::state::AppState;

/// Paths a visitor without a session may open.
const PUBLIC: &[&str] = &["/admin/login"];

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

/// Lets a request through with a live session (and, on a POST, its CSRF token); sends a visitor
/// without one to the login page.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let session = req.get_session();
    let public = PUBLIC.contains(&req.path());
    if public {
        if let Some(refused) = check_csrf(&mut req, &session).await? {
            return Ok(refused);
        }
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let signed_in = match session_editor(&session) {
        Some((id, version)) => {
            let pool = state(&req).pool.clone();
            match db::run(&pool, move |conn| {
                Ok(crate::stores::editors::find(conn, id, version)?)
            })
            .await
            {
                Ok(found) => found,
                Err(e) => return Ok(req.into_response(Fault::from(e).error_response())),
            }
        }
        None => None,
    };
    let Some(editor) = signed_in else {
        session.purge();
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
        return Ok(req.into_response(response));
    };
    // Signed in: a POST must carry the session's token.
    if let Some(refused) = check_csrf(&mut req, &session).await? {
        return Ok(refused);
    }
    req.extensions_mut().insert(editor);
    let mut response = next.call(req).await?.map_into_boxed_body();
    // Console pages hold subscribers' data: never kept by a cache.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
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

/// (editor id, session version) of a session still within its lifetime.
fn session_editor(session: &Session) -> Option<(i64, i32)> {
    let id = session.get::<i64>("editor").ok().flatten()?;
    let version = session.get::<i32>("v").ok().flatten()?;
    let at = session.get::<i64>("at").ok().flatten()?;
    let age = chrono::Utc::now().timestamp() - at;
    (0..SESSION_HOURS * 3600)
        .contains(&age)
        .then_some((id, version))
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
