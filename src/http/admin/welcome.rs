//! The welcome email in the console: its subject and Markdown body, a preview as the reader sees
//! it, and whether it is sent at all. Kept by [`crate::stores::welcome`]; sent by the delivery
//! worker to each reader who confirms.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::{query, see_other, Answer, Chrome, NoticeQuery};
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::processes::compose;
use crate::stores::issues::{Composed, IssueError, PREFERENCES_MARK, UNSUBSCRIBE_MARK};
use crate::stores::welcome::{self, Welcome};

/// What the form holds.
#[derive(Clone, Debug, Default)]
struct WelcomeForm {
    enabled: bool,
    subject: String,
    body: String,
    /// `preview` or `save`.
    action: String,
}

impl WelcomeForm {
    /// Reads the form body; an unticked box is not sent at all, so absent means off.
    fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "enabled" => form.enabled = true,
                "subject" => form.subject = value.into_owned(),
                "body" => form.body = value.into_owned(),
                "action" => form.action = value.into_owned(),
                _ => {}
            }
        }
        form
    }

    fn of(welcome: &Welcome) -> Self {
        Self {
            enabled: welcome.enabled,
            subject: welcome.subject.clone(),
            body: welcome.body.clone(),
            action: String::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/welcome.html")]
struct WelcomePage<'a> {
    chrome: Chrome,
    form: &'a WelcomeForm,
    /// "Saved by ada, 2026-12-01 10:00 UTC", or the built-in text.
    origin: String,
    errors: Vec<String>,
    notice: Option<String>,
    preview: Option<Composed>,
}

/// The welcome as the reader sees it; the personal links are the reader's own and lead nowhere
/// here.
fn preview_of(
    settings: &crate::foundation::config::Settings,
    form: &WelcomeForm,
) -> Result<Composed, IssueError> {
    let mut composed = compose::notice(settings, &form.subject, &form.body)?;
    for part in [&mut composed.html, &mut composed.text] {
        *part = part
            .replace(UNSUBSCRIBE_MARK, "#unsubscribe")
            .replace(PREFERENCES_MARK, "#preferences");
    }
    Ok(composed)
}

/// A refusal as the form shows it: "The subject is empty."
fn explain(e: &IssueError) -> String {
    let mut text = e.to_string();
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!("{text}.")
}

fn origin_of(welcome: &Welcome) -> String {
    match (&welcome.updated_at, &welcome.updated_by) {
        (Some(at), Some(by)) => format!("Saved by {by}, {}.", super::when(at)),
        (Some(at), None) => format!("Saved {}.", super::when(at)),
        _ => "The built-in text: no editor has changed it yet.".to_string(),
    }
}

/// `GET /admin/welcome`: the welcome email as it will go out, with its preview.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let settings = state.settings.clone();
    let current = query(&state, move |conn| Ok(welcome::current(conn, &settings)?)).await?;
    let form = WelcomeForm::of(&current);
    let notice = match q.notice.as_deref() {
        Some("saved") if current.enabled => {
            Some("Saved: every reader who confirms from now on gets this email.".to_string())
        }
        Some("saved") => Some("Saved: the welcome email is off; nobody gets it.".to_string()),
        _ => None,
    };
    let (preview, errors) = match preview_of(&state.settings, &form) {
        Ok(p) => (Some(p), vec![]),
        Err(e) => (None, vec![explain(&e)]),
    };
    Ok(html(
        StatusCode::OK,
        &WelcomePage {
            chrome: Chrome::new(&state, &req, "welcome"),
            form: &form,
            origin: origin_of(&current),
            errors,
            notice,
            preview,
        },
    ))
}

/// The form again, after a preview or a refusal.
fn form_page(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    form: &WelcomeForm,
    errors: Vec<String>,
    preview: Option<Composed>,
) -> HttpResponse {
    html(
        status,
        &WelcomePage {
            chrome: Chrome::new(state, req, "welcome"),
            form,
            origin: "Not saved yet.".to_string(),
            errors,
            notice: None,
            preview,
        },
    )
}

/// `POST /admin/welcome`: preview the form's text, or save it (and the switch). A text that
/// would not compose (an empty subject, a body too long) is refused with the form kept.
pub async fn save(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Answer {
    let form = WelcomeForm::parse(&body);
    let checked = compose::clean_subject(&form.subject)
        .and_then(|subject| Ok((subject, preview_of(&state.settings, &form)?)));
    let (subject, preview) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            let errors = vec![explain(&e)];
            return Ok(form_page(
                &state,
                &req,
                StatusCode::BAD_REQUEST,
                &form,
                errors,
                None,
            ));
        }
    };
    match form.action.as_str() {
        "preview" => Ok(form_page(
            &state,
            &req,
            StatusCode::OK,
            &form,
            vec![],
            Some(preview),
        )),
        "save" => {
            let editor = super::editor_name(&req);
            let welcome = Welcome {
                enabled: form.enabled,
                subject,
                body: form.body.clone(),
                updated_at: None,
                updated_by: None,
            };
            query(&state, move |conn| {
                Ok(welcome::save(
                    conn,
                    &welcome,
                    &editor,
                    crate::foundation::db::now(),
                )?)
            })
            .await?;
            Ok(see_other("/admin/welcome?notice=saved"))
        }
        _ => {
            let errors = vec!["Choose preview or save.".to_string()];
            Ok(form_page(
                &state,
                &req,
                StatusCode::BAD_REQUEST,
                &form,
                errors,
                None,
            ))
        }
    }
}
