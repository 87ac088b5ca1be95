//! The console's sessions page: an editor's own open sessions (when, from where, which browser,
//! "this session" marked), and for an admin everyone's; ending one. An editor ends any of their
//! own (this one too: back to the login page), an admin anyone's. Ending one leaves a row in the
//! audit log.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest};
use askama::Template;

use super::audit::note;
use super::session::SessionId;
use super::{path_id, query, see_other, Answer, Chrome, Fault, NoticeQuery};
use crate::foundation::access::Role;
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::editors::sessions::{self, Listed, IDLE_MINUTES, MAX_HOURS};

#[derive(Template)]
#[template(path = "admin/sessions.html")]
struct SessionsPage {
    chrome: Chrome,
    /// The editor's own sessions.
    own: Vec<Listed>,
    /// Everyone else's (admins only; empty otherwise).
    others: Vec<Listed>,
    admin: bool,
    current: i64,
    notice: Option<&'static str>,
    idle_minutes: i64,
    max_hours: i64,
}

/// `GET /admin/sessions`.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let Some(editor) = super::editor(&req) else {
        return Ok(see_other("/admin/login"));
    };
    let current = req
        .extensions()
        .get::<SessionId>()
        .map(|s| s.0)
        .unwrap_or(0);
    let admin = editor.role.allows(Role::Admin);
    let all = query(&state, move |conn| {
        Ok(sessions::list(
            conn,
            if admin { None } else { Some(editor.id) },
        )?)
    })
    .await?;
    let (own, others): (Vec<Listed>, Vec<Listed>) =
        all.into_iter().partition(|s| s.editor_id == editor.id);
    let notice = match q.notice.as_deref() {
        Some("ended") => Some("The session was ended: its cookie is refused from now on."),
        _ => None,
    };
    Ok(html(
        StatusCode::OK,
        &SessionsPage {
            chrome: Chrome::new(&state, &req, "sessions"),
            own,
            others,
            admin,
            current,
            notice,
            idle_minutes: IDLE_MINUTES,
            max_hours: MAX_HOURS,
        },
    ))
}

/// `POST /admin/sessions/{id}/end`: one of the editor's own sessions, or (an admin) anyone's;
/// someone else's session is not found for an editor who is not an admin.
pub async fn end(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    path: web::Path<String>,
) -> Answer {
    let id = path_id(&path)?;
    let Some(editor) = super::editor(&req) else {
        return Ok(see_other("/admin/login"));
    };
    let owner = (!editor.role.allows(Role::Admin)).then_some(editor.id);
    let ended = query(&state, move |conn| {
        let whose = sessions::list(conn, owner)?
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.editor_name);
        let Some(whose) = whose else {
            return Ok(None);
        };
        Ok(sessions::end(conn, id, owner)?.then_some(whose))
    })
    .await?;
    let Some(whose) = ended else {
        return Err(Fault::NotFound);
    };
    note(
        &state,
        &req,
        "session ended",
        format!("session {id} of {whose}"),
    )
    .await;
    let current = req.extensions().get::<SessionId>().map(|s| s.0);
    if current == Some(id) {
        session.purge();
        return Ok(see_other("/admin/login"));
    }
    Ok(see_other("/admin/sessions?notice=ended"))
}
