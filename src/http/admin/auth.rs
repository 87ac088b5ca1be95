//! Logging in and out, and changing one's password.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use actix_web::HttpMessage;

use super::session::{SessionId, SESSION_KEY};
use super::{csrf_token, query, random_token, see_other, Answer, Chrome};
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::audit;
use crate::stores::editors::sessions::{self, Pending};
use crate::stores::editors::{self, devices, AccountError, Login};

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage<'a> {
    site_name: &'a str,
    csrf: &'a str,
    name: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path inside the console is a place to go back to after the login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            // A path of visible ASCII only: a CR or LF (or any control) would not fit in the
            // Location header, and a backslash can turn into a second slash in some browsers.
            if n.starts_with("/admin")
                && !n.starts_with("/admin/login")
                && !n.contains("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/admin".to_string(),
    }
}

/// `GET /admin/login`.
pub async fn login_page(
    state: web::Data<AppState>,
    session: Session,
    q: web::Query<NextQuery>,
) -> HttpResponse {
    let csrf = csrf_token(&session);
    let next = safe_next(q.next.as_deref());
    html(
        StatusCode::OK,
        &LoginPage {
            site_name: &state.settings.site_name,
            csrf: &csrf,
            name: "",
            next: &next,
            error: None,
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// `POST /admin/login`: a new session on success (a fresh cookie, a fresh CSRF token).
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: web::Form<LoginForm>,
) -> Answer {
    let form = form.into_inner();
    let ip = state.client_ip(&req).to_string();
    let next = safe_next(form.next.as_deref());
    let outcome = check_login(&state, &req, &form.name, form.password.clone(), &ip).await?;
    let refuse = |status: StatusCode, message: &str| {
        let csrf = csrf_token(&session);
        html(
            status,
            &LoginPage {
                site_name: &state.settings.site_name,
                csrf: &csrf,
                name: &form.name,
                next: &next,
                error: Some(message),
            },
        )
    };
    let audit = |action: &'static str, actor: String| {
        let entry = audit::Entry::new(actor, ip.clone(), action);
        query(&state, move |conn| Ok(audit::record(conn, &entry)?))
    };
    match outcome {
        Login::Welcome(editor) => {
            // With a second factor the login is whole only once its code is given (the code
            // step writes "login"); here the password alone was right.
            let action = if editor.has_second_factor {
                "password accepted"
            } else {
                "login"
            };
            audit(action, format!("editor {}", editor.name)).await?;
            welcome(&state, &req, &session, &editor, &ip, &next).await
        }
        Login::Refused | Login::Disabled => {
            audit("login failed", form.name.chars().take(64).collect()).await?;
            Ok(refuse(
                StatusCode::UNAUTHORIZED,
                "That name and password do not match an editor's account.",
            ))
        }
        Login::Throttled => {
            audit("login locked out", form.name.chars().take(64).collect()).await?;
            Ok(too_many(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed logins for this account or from your address. Wait 15 minutes \
                 and try again.",
            )))
        }
    }
}

/// The password step of a login: reserved, then checked without holding a connection (Argon2
/// is slow by design, and every other request needs a connection too), then ended.
async fn check_login(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    password: String,
    ip: &str,
) -> Result<Login, super::Fault> {
    let (name, login_ip, device) = (name.to_string(), ip.to_string(), device_token(req));
    let attempt = query(state, move |conn| {
        Ok(editors::begin_login_from(
            conn,
            &name,
            &login_ip,
            device.as_deref(),
        )?)
    })
    .await?;
    let Some(attempt) = attempt else {
        return Ok(Login::Throttled);
    };
    let (attempt, matched) = web::block(move || {
        let matched = attempt.password_matches(&password);
        (attempt, matched)
    })
    .await
    .map_err(|e| super::Fault::Internal(e.to_string()))?;
    query(state, move |conn| {
        Ok(editors::finish_login(conn, &attempt, matched)?)
    })
    .await
}

/// A right password: a new session (a fresh cookie, a fresh CSRF token), waiting for the second
/// factor's code or enrolment when there is one or one is required; a full login notes the
/// browser as a known device.
async fn welcome(
    state: &AppState,
    req: &HttpRequest,
    session: &Session,
    editor: &editors::Editor,
    ip: &str,
    next: &str,
) -> Answer {
    let pending = if editor.has_second_factor {
        Some(Pending::Code)
    } else if state.settings.require_2fa {
        Some(Pending::Enrol)
    } else {
        None
    };
    let (editor_id, session_ip) = (editor.id, ip.to_string());
    let user_agent = user_agent(req);
    let token = query(state, move |conn| {
        Ok(sessions::start(
            conn,
            editor_id,
            &session_ip,
            &user_agent,
            pending,
        )?)
    })
    .await?;
    session.renew();
    session.clear();
    let stored = session
        .insert(SESSION_KEY, token)
        .and(session.insert("csrf", random_token()));
    if let Err(e) = stored {
        return Err(super::Fault::Internal(e.to_string()));
    }
    tracing::info!(editor = %editor.name, "editor logged in");
    let mut response = see_other(match pending {
        Some(Pending::Code) => "/admin/login/code",
        Some(Pending::Enrol) => "/admin/2fa/enrol",
        None => next,
    });
    if pending.is_none() {
        remember_device(state, req, editor_id, &mut response).await?;
    }
    Ok(response)
}

/// The browser's `User-Agent`, as the sessions page shows it.
pub fn user_agent(req: &HttpRequest) -> String {
    req.headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// `POST /admin/logout`: the session's row goes, so a copy of the cookie is refused afterwards.
pub async fn logout(state: web::Data<AppState>, session: Session) -> Answer {
    if let Some(token) = session.get::<String>(SESSION_KEY).ok().flatten() {
        query(&state, move |conn| Ok(sessions::end_token(conn, &token)?)).await?;
    }
    session.purge();
    Ok(see_other("/admin/login"))
}

#[derive(Template)]
#[template(path = "admin/password.html")]
struct PasswordPage<'a> {
    chrome: Chrome,
    error: Option<&'a str>,
    done: bool,
}

/// `GET /admin/password`.
pub async fn password_page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    html(
        StatusCode::OK,
        &PasswordPage {
            chrome: Chrome::new(&state, &req, "password"),
            error: None,
            done: false,
        },
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    repeat: String,
}

/// `POST /admin/password`: every other session of the account ends; this one goes on.
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: web::Form<PasswordForm>,
) -> Answer {
    let form = form.into_inner();
    let Some(editor) = super::editor(&req) else {
        return Ok(see_other("/admin/login"));
    };
    let keep = req.extensions().get::<SessionId>().map(|s| s.0);
    let page = |status, error: Option<&str>, done| {
        html(
            status,
            &PasswordPage {
                chrome: Chrome::new(&state, &req, "password"),
                error,
                done,
            },
        )
    };
    if form.new != form.repeat {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            Some("The new password and its repetition differ."),
            false,
        ));
    }
    if form.new.chars().count() < editors::MIN_PASSWORD_CHARS {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            Some("The new password needs at least 12 characters."),
            false,
        ));
    }
    let ip = state.client_ip(&req).to_string();
    let checked = check_current_password(&state, &editor, &form.current, &ip).await?;
    let actor = format!("editor {}", editor.name);
    match checked {
        editors::passwords::PasswordCheck::Throttled => {
            return Ok(too_many(page(
                StatusCode::TOO_MANY_REQUESTS,
                Some(THROTTLED),
                false,
            )))
        }
        editors::passwords::PasswordCheck::Wrong => {
            record(
                &state,
                audit::Entry::new(actor, ip, "password check failed"),
            )
            .await?;
            return Ok(page(
                StatusCode::BAD_REQUEST,
                Some("The current password is not right."),
                false,
            ));
        }
        editors::passwords::PasswordCheck::Right => {}
    }
    let changed = query(&state, move |conn| {
        Ok(editors::passwords::set_password(
            conn, &editor, &form.new, keep,
        ))
    })
    .await?;
    match changed {
        Ok(_) => {
            record(&state, audit::Entry::new(actor, ip, "password changed")).await?;
            session.renew();
            Ok(page(StatusCode::OK, None, true))
        }
        Err(AccountError::ShortPassword) => Ok(page(
            StatusCode::BAD_REQUEST,
            Some("The new password needs at least 12 characters."),
            false,
        )),
        Err(e) => Err(super::Fault::Internal(e.to_string())),
    }
}

/// What a throttled check answers.
pub const THROTTLED: &str = "Too many failed attempts for this account or from your address. \
                             Wait 15 minutes and try again.";

/// A 429 answer, with the wait in `Retry-After`.
pub fn too_many(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from_static("900"),
    );
    response
}

/// Writes an audit entry.
pub async fn record(state: &AppState, entry: audit::Entry) -> Result<(), super::Fault> {
    query(state, move |conn| Ok(audit::record(conn, &entry)?)).await
}

/// Checks a signed-in editor's current password, counted with the account's logins; the slow
/// hash is checked without holding a database connection.
pub async fn check_current_password(
    state: &AppState,
    editor: &editors::Editor,
    password: &str,
    ip: &str,
) -> Result<editors::passwords::PasswordCheck, super::Fault> {
    let (who, ip) = (editor.clone(), ip.to_string());
    let attempt = query(state, move |conn| {
        Ok(editors::passwords::begin_password_check(conn, &who, &ip)?)
    })
    .await?;
    let Some(attempt) = attempt else {
        return Ok(editors::passwords::PasswordCheck::Throttled);
    };
    let password = password.to_string();
    let (attempt, matched) = web::block(move || {
        let matched = attempt.password_matches(&password);
        (attempt, matched)
    })
    .await
    .map_err(|e| super::Fault::Internal(e.to_string()))?;
    let right = query(state, move |conn| {
        Ok(editors::passwords::finish_password_check(
            conn, &attempt, matched,
        )?)
    })
    .await?;
    Ok(if right {
        editors::passwords::PasswordCheck::Right
    } else {
        editors::passwords::PasswordCheck::Wrong
    })
}

/// The known-device token the browser sent, if any.
pub fn device_token(req: &HttpRequest) -> Option<String> {
    req.cookie(devices::COOKIE).map(|c| c.value().to_string())
}

/// After a full login: notes the browser as a known device of the editor, setting its
/// long-lived cookie when it is new.
pub async fn remember_device(
    state: &AppState,
    req: &HttpRequest,
    editor_id: i64,
    response: &mut HttpResponse,
) -> Result<(), super::Fault> {
    let sent = device_token(req);
    let token = query(state, move |conn| {
        Ok(devices::remember(conn, editor_id, sent.as_deref())?)
    })
    .await?;
    if let Some(token) = token {
        let cookie = actix_web::cookie::Cookie::build(devices::COOKIE, token)
            .path("/admin")
            .http_only(true)
            .secure(state.settings.base_url.scheme() == "https")
            .same_site(actix_web::cookie::SameSite::Strict)
            .max_age(actix_web::cookie::time::Duration::days(devices::DAYS))
            .finish();
        response
            .add_cookie(&cookie)
            .map_err(|e| super::Fault::Internal(e.to_string()))?;
    }
    Ok(())
}
