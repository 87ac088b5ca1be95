//! The editor console under `/admin`: server-rendered pages behind a login.
//!
//! Every route is declared once, in [`ROUTES`], which both registers it and lets the tests walk
//! the table (every route but the login must redirect a visitor without a session). The whole
//! scope sits behind [`guard`]: a session (a signed and encrypted cookie, path `/admin`, no
//! server-side store) naming an editor whose password has not changed since, and on every POST
//! the session's CSRF token, sent back by each form in a hidden `csrf` field (or, for a file
//! upload, in the form's query string).

pub mod articles;
pub mod auth;
pub mod dashboard;
pub mod digest;
pub mod issues;
pub mod subscribers;

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_session::{Session, SessionExt, SessionMiddleware};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use rand::RngCore;
use sha2::{Digest, Sha512};

use crate::config::Settings;
use crate::db::{self, DbError};
use crate::editors::Editor;
use crate::web::AppState;

/// A session lasts this long after the login, whatever is done with it.
pub const SESSION_HOURS: i64 = 12;
/// The largest form body the console takes (413 beyond).
pub const MAX_FORM_BYTES: usize = 256 * 1024;
/// The largest CSV file an editor can import.
pub const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;

/// Declares the console's routes: the table the tests walk and the function that registers it.
macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path ),* $(,)?) => {
        /// Every route of the console: (method, path).
        pub const ROUTES: &[(&str, &str)] = &[ $( (stringify!($method), concat!("/admin", $path)) ),* ];

        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }
    };
}

route_table! {
    get "/login" => auth::login_page,
    post "/login" => auth::login,
    post "/logout" => auth::logout,
    get "/password" => auth::password_page,
    post "/password" => auth::change_password,
    get "" => dashboard::page,
    get "/issues" => issues::list,
    get "/issues/new" => issues::compose_page,
    post "/issues" => issues::compose,
    get "/issues/{id}" => issues::page,
    get "/issues/{id}/preview" => issues::preview,
    post "/issues/{id}/send" => issues::send_draft,
    post "/issues/{id}/retry" => issues::retry_failed,
    get "/digest" => digest::page,
    get "/digest/preview" => digest::preview,
    post "/digest/send" => digest::send_now,
    post "/digest/skip" => digest::skip,
    get "/subscribers" => subscribers::list,
    get "/subscribers/export.csv" => subscribers::export,
    get "/subscribers/import" => subscribers::import_page,
    post "/subscribers/import" => subscribers::import,
    get "/subscribers/{id}" => subscribers::record,
    post "/subscribers/{id}/unsubscribe" => subscribers::unsubscribe,
    post "/subscribers/{id}/erase" => subscribers::erase,
    get "/articles" => articles::list,
    get "/articles/new" => articles::new_page,
    post "/articles" => articles::create,
    get "/articles/{id}" => articles::edit_page,
    post "/articles/{id}" => articles::update,
    post "/articles/{id}/exclude" => articles::exclude,
}

/// Paths a visitor without a session may open.
const PUBLIC: &[&str] = &["/admin/login"];

/// The `/admin` scope, with its session cookie and guard.
pub fn scope(
    settings: &Settings,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/admin")
        // Forms (an issue's body is the largest); CSV uploads stream past this, see subscribers.
        .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
        .configure(register)
        .wrap(actix_web::middleware::from_fn(guard))
        .wrap(session_middleware(settings))
}

fn session_middleware(settings: &Settings) -> SessionMiddleware<CookieSessionStore> {
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

/// The name of the editor of a request that passed the guard.
pub fn editor_name(req: &actix_web::HttpRequest) -> String {
    req.extensions()
        .get::<Editor>()
        .map(|e| e.name.clone())
        .unwrap_or_default()
}

async fn guard(
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
                Ok(crate::editors::find(conn, id, version)?)
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
            let page = crate::web::pages::problem(
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

/// What the console shows around every page.
pub struct Chrome {
    pub site_name: String,
    pub editor: String,
    pub csrf: String,
    /// Which section of the navigation is current.
    pub section: &'static str,
}

impl Chrome {
    pub fn new(state: &AppState, req: &actix_web::HttpRequest, section: &'static str) -> Self {
        Self {
            site_name: state.settings.site_name.clone(),
            editor: editor_name(req),
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
            Fault::NotFound => crate::web::pages::not_found_page(site),
            Fault::Db(e) if e.is_unavailable() => crate::web::pages::unavailable(site),
            other => crate::web::pages::internal_error(site, "a console page", other),
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
