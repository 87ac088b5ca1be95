//! The second factor's pages: the login's code step, enrolment (a QR code drawn here as SVG, the
//! secret for manual entry, ten recovery codes shown once), and the status page (recovery codes
//! regenerated, the factor removed).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::auth::{record, remember_device, too_many, THROTTLED};
use super::session::{SessionId, SESSION_KEY};
use super::{csrf_token, query, see_other, Answer, Chrome, Fault};
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::audit::Entry;
use crate::stores::editors::passwords::PasswordCheck;
use crate::stores::editors::second_factor::{self, CodeCheck};
use crate::stores::editors::sessions::{self, Pending};
use crate::stores::editors::Editor;

/// The cookie session's key holding the secret being enrolled (the cookie is encrypted).
const ENROL_KEY: &str = "totp_enrol";

#[derive(Template)]
#[template(path = "admin/login_code.html")]
struct CodePage<'a> {
    site_name: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// The live session of a request, with what it must still do.
async fn live_session(
    state: &AppState,
    session: &Session,
) -> Result<Option<sessions::Session>, Fault> {
    let Some(token) = session.get::<String>(SESSION_KEY).ok().flatten() else {
        return Ok(None);
    };
    query(state, move |conn| Ok(sessions::find(conn, &token)?)).await
}

fn actor(editor: &Editor) -> String {
    format!("editor {}", editor.name)
}

/// `GET /admin/login/code`.
pub async fn code_page(state: web::Data<AppState>, session: Session) -> Answer {
    let live = live_session(&state, &session).await?;
    if !live.is_some_and(|l| l.pending == Some(Pending::Code)) {
        return Ok(see_other("/admin"));
    }
    let csrf = csrf_token(&session);
    Ok(html(
        StatusCode::OK,
        &CodePage {
            site_name: &state.settings.site_name,
            csrf: &csrf,
            error: None,
        },
    ))
}

/// `POST /admin/login/code`: a TOTP code or a recovery code completes the login.
pub async fn submit_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: web::Form<CodeForm>,
) -> Answer {
    let live = live_session(&state, &session).await?;
    let Some(live) = live.filter(|l| l.pending == Some(Pending::Code)) else {
        return Ok(see_other("/admin"));
    };
    let ip = state.client_ip(&req).to_string();
    let (secret, editor, check_ip) = (
        state.settings.secret().to_vec(),
        live.editor.clone(),
        ip.clone(),
    );
    let device = super::auth::device_token(&req);
    let code = form.into_inner().code;
    let outcome = query(&state, move |conn| {
        second_factor::check_login_code(conn, &secret, &editor, &check_ip, device.as_deref(), &code)
    })
    .await?;
    let refuse = |status, message: &str| {
        let csrf = csrf_token(&session);
        html(
            status,
            &CodePage {
                site_name: &state.settings.site_name,
                csrf: &csrf,
                error: Some(message),
            },
        )
    };
    let who = actor(&live.editor);
    match outcome {
        CodeCheck::Totp | CodeCheck::Recovery => {
            if outcome == CodeCheck::Recovery {
                record(
                    &state,
                    Entry::new(who.clone(), ip.clone(), "recovery code used"),
                )
                .await?;
            }
            // The login is whole only now: the password step wrote "password accepted".
            record(
                &state,
                Entry::new(who, ip, "login").detail("with a second factor"),
            )
            .await?;
            let id = live.id;
            query(&state, move |conn| Ok(sessions::complete(conn, id)?)).await?;
            session.renew();
            let mut response = see_other("/admin");
            remember_device(&state, &req, live.editor.id, &mut response).await?;
            Ok(response)
        }
        CodeCheck::Wrong => {
            record(&state, Entry::new(who, ip, "login code failed")).await?;
            Ok(refuse(
                StatusCode::UNAUTHORIZED,
                "That code is not right, or was used already. Enter the code your app shows \
                 now, or one of your recovery codes.",
            ))
        }
        CodeCheck::Throttled => {
            record(&state, Entry::new(who, ip, "login locked out")).await?;
            Ok(too_many(refuse(StatusCode::TOO_MANY_REQUESTS, THROTTLED)))
        }
    }
}

#[derive(Template)]
#[template(path = "admin/two_factor_enrol.html")]
struct EnrolPage<'a> {
    site_name: &'a str,
    csrf: &'a str,
    /// Whether the session waits for this enrolment (no console until it is done).
    required: bool,
    secret: &'a str,
    qr_svg: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "admin/two_factor_codes.html")]
struct CodesPage<'a> {
    site_name: &'a str,
    heading: &'a str,
    codes: &'a [String],
}

fn enrol_page(
    state: &AppState,
    session: &Session,
    editor: &Editor,
    required: bool,
    error: Option<&str>,
) -> Answer {
    let secret = match session.get::<String>(ENROL_KEY).ok().flatten() {
        Some(secret) => secret,
        None => {
            let secret = second_factor::new_secret();
            session
                .insert(ENROL_KEY, &secret)
                .map_err(|e| Fault::Internal(e.to_string()))?;
            secret
        }
    };
    let enrolment = second_factor::enrolment(&secret, &state.settings.site_name, &editor.name)?;
    let csrf = csrf_token(session);
    Ok(html(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &EnrolPage {
            site_name: &state.settings.site_name,
            csrf: &csrf,
            required,
            secret: &enrolment.secret,
            qr_svg: &enrolment.qr_svg,
            error,
        },
    ))
}

/// `GET /admin/2fa/enrol`.
pub async fn enrol_form(state: web::Data<AppState>, req: HttpRequest, session: Session) -> Answer {
    let Some(editor) = super::editor(&req) else {
        return Ok(see_other("/admin/login"));
    };
    if editor.has_second_factor {
        return Ok(see_other("/admin/2fa"));
    }
    let live = live_session(&state, &session).await?;
    let required = live.is_some_and(|l| l.pending == Some(Pending::Enrol));
    enrol_page(&state, &session, &editor, required, None)
}

/// `POST /admin/2fa/enrol`: the code of the secret shown proves the app has it; the factor is
/// kept, the ten recovery codes shown once, and the session completed.
pub async fn enrol(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    form: web::Form<CodeForm>,
) -> Answer {
    let Some(editor) = super::editor(&req) else {
        return Ok(see_other("/admin/login"));
    };
    if editor.has_second_factor {
        return Ok(see_other("/admin/2fa"));
    }
    let Some(secret) = session.get::<String>(ENROL_KEY).ok().flatten() else {
        return Ok(see_other("/admin/2fa/enrol"));
    };
    let (key, id, code) = (
        state.settings.secret().to_vec(),
        editor.id,
        form.into_inner().code,
    );
    let confirmed = query(&state, move |conn| {
        second_factor::confirm(conn, &key, id, &secret, &code)
    })
    .await?;
    let Some(codes) = confirmed else {
        let live = live_session(&state, &session).await?;
        let required = live.is_some_and(|l| l.pending == Some(Pending::Enrol));
        return enrol_page(
            &state,
            &session,
            &editor,
            required,
            Some("That code is not right. Enter the six digits your app shows now."),
        );
    };
    session.remove(ENROL_KEY);
    let this_session = req.extensions().get::<SessionId>().copied();
    if let Some(SessionId(session_id)) = this_session {
        query(&state, move |conn| {
            Ok(sessions::complete(conn, session_id)?)
        })
        .await?;
    }
    let ip = state.client_ip(&req).to_string();
    record(
        &state,
        Entry::new(actor(&editor), ip, "second factor enrolled"),
    )
    .await?;
    let mut response = html(
        StatusCode::OK,
        &CodesPage {
            site_name: &state.settings.site_name,
            heading: "Your second factor is set up",
            codes: &codes,
        },
    );
    remember_device(&state, &req, editor.id, &mut response).await?;
    Ok(response)
}

#[derive(Template)]
#[template(path = "admin/two_factor.html")]
struct StatusPage<'a> {
    chrome: Chrome,
    enrolled_at: Option<String>,
    codes_left: i64,
    required: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
}

async fn status_answer(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Answer {
    let Some(editor) = super::editor(req) else {
        return Ok(see_other("/admin/login"));
    };
    let found = query(state, move |conn| {
        Ok(second_factor::status(conn, editor.id)?)
    })
    .await?;
    Ok(html(
        status,
        &StatusPage {
            chrome: Chrome::new(state, req, "2fa"),
            enrolled_at: found.enrolled_at.as_ref().map(super::when),
            codes_left: found.recovery_codes_left,
            required: state.settings.require_2fa,
            notice,
            error,
        },
    ))
}

/// `GET /admin/2fa`.
pub async fn status_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<super::NoticeQuery>,
) -> Answer {
    let notice = match q.notice.as_deref() {
        Some("removed") => Some("Your second factor is removed."),
        _ => None,
    };
    status_answer(&state, &req, StatusCode::OK, notice, None).await
}

/// Checks a signed-in editor's current TOTP code; an answer for the status page unless right.
async fn code_refused(
    state: &AppState,
    req: &HttpRequest,
    editor: &Editor,
    code: &str,
) -> Result<Option<HttpResponse>, Fault> {
    let ip = state.client_ip(req).to_string();
    let (key, who, check_ip, code) = (
        state.settings.secret().to_vec(),
        editor.clone(),
        ip.clone(),
        code.to_string(),
    );
    let outcome = query(state, move |conn| {
        second_factor::check_code(conn, &key, &who, &check_ip, &code)
    })
    .await?;
    Ok(match outcome {
        CodeCheck::Totp | CodeCheck::Recovery => None,
        CodeCheck::Wrong => {
            record(
                state,
                Entry::new(actor(editor), ip, "login code failed").detail("second factor page"),
            )
            .await?;
            let message =
                "That code is not right, or was used already. Enter the code your app shows now.";
            Some(status_answer(state, req, StatusCode::BAD_REQUEST, None, Some(message)).await?)
        }
        CodeCheck::Throttled => Some(too_many(
            status_answer(
                state,
                req,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some(THROTTLED),
            )
            .await?,
        )),
    })
}

/// `POST /admin/2fa/recovery-codes`: new recovery codes (a current code needed); the old ones
/// stop working.
pub async fn regenerate(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Answer {
    let Some(editor) = super::editor(&req).filter(|e| e.has_second_factor) else {
        return Ok(see_other("/admin/2fa"));
    };
    if let Some(refused) = code_refused(&state, &req, &editor, &form.code).await? {
        return Ok(refused);
    }
    let id = editor.id;
    let codes = query(&state, move |conn| Ok(second_factor::regenerate(conn, id)?)).await?;
    let ip = state.client_ip(&req).to_string();
    record(
        &state,
        Entry::new(actor(&editor), ip, "recovery codes regenerated"),
    )
    .await?;
    Ok(html(
        StatusCode::OK,
        &CodesPage {
            site_name: &state.settings.site_name,
            heading: "Your new recovery codes",
            codes: &codes,
        },
    ))
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

/// `POST /admin/2fa/remove`: needs the password and a current code; refused while
/// `IRIA_REQUIRE_2FA` holds. The editor's other sessions end.
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<RemoveForm>,
) -> Answer {
    let Some(editor) = super::editor(&req).filter(|e| e.has_second_factor) else {
        return Ok(see_other("/admin/2fa"));
    };
    if state.settings.require_2fa {
        let message = "This site requires a second factor: it cannot be removed. An admin can \
                       reset it if you lost your app.";
        return status_answer(&state, &req, StatusCode::FORBIDDEN, None, Some(message)).await;
    }
    let ip = state.client_ip(&req).to_string();
    let form = form.into_inner();
    match super::auth::check_current_password(&state, &editor, &form.password, &ip).await? {
        PasswordCheck::Right => {}
        PasswordCheck::Wrong => {
            record(
                &state,
                Entry::new(actor(&editor), ip, "password check failed"),
            )
            .await?;
            let message = "The password is not right.";
            return status_answer(&state, &req, StatusCode::BAD_REQUEST, None, Some(message)).await;
        }
        PasswordCheck::Throttled => {
            return Ok(too_many(
                status_answer(
                    &state,
                    &req,
                    StatusCode::TOO_MANY_REQUESTS,
                    None,
                    Some(THROTTLED),
                )
                .await?,
            ))
        }
    }
    if let Some(refused) = code_refused(&state, &req, &editor, &form.code).await? {
        return Ok(refused);
    }
    let (id, keep) = (editor.id, req.extensions().get::<SessionId>().map(|s| s.0));
    query(&state, move |conn| {
        Ok(second_factor::remove(conn, id, keep)?)
    })
    .await?;
    record(
        &state,
        Entry::new(actor(&editor), ip, "second factor removed"),
    )
    .await?;
    Ok(see_other("/admin/2fa?notice=removed"))
}
