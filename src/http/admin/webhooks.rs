//! Webhooks in the console: the endpoints (list and a form to add one), each endpoint's page with
//! its latest deliveries, switching one on or off, deleting one. Every console account is an
//! administrator for now; roles come later.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::{path_id, query, see_other, Answer, Chrome, Fault, NoticeQuery};
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::webhooks::{
    self, Attempt, Endpoint, EndpointUrl, Event, NewEndpoint, MAX_DESCRIPTION_CHARS,
};

/// How many of an endpoint's latest deliveries its page lists.
const RECENT: i64 = 100;

/// A time as the attempts table shows it: to the second, since retries come seconds apart.
pub fn at(t: &chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What the form to add an endpoint holds.
#[derive(Clone, Debug, Default)]
pub struct EndpointForm {
    pub url: String,
    pub description: String,
    /// The events ticked, as named.
    pub events: Vec<String>,
}

impl EndpointForm {
    /// Reads the form body; repeated `events` fields are the events ticked.
    fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "url" => form.url = value.trim().to_string(),
                "description" => form.description = value.trim().to_string(),
                "events" if form.events.len() < 16 => form.events.push(value.into_owned()),
                _ => {}
            }
        }
        form
    }

    /// Whether the form has this event ticked (a new form: none).
    pub fn ticks(&self, event: &Event) -> bool {
        self.events.iter().any(|e| e == event.as_str())
    }

    /// The endpoint to add, or what is wrong with the form, each problem in a sentence.
    fn check(&self, editor: String) -> Result<NewEndpoint, Vec<String>> {
        let mut errors = Vec::new();
        let url = EndpointUrl::parse(&self.url)
            .map_err(|e| errors.push(e))
            .ok();
        let events = webhooks::parse_events(&self.events)
            .map_err(|e| errors.push(e))
            .ok();
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            errors.push(format!(
                "description: at most {MAX_DESCRIPTION_CHARS} characters"
            ));
        }
        match (url, events) {
            (Some(url), Some(events)) if errors.is_empty() => Ok(NewEndpoint {
                url,
                events,
                description: self.description.clone(),
                enabled: true,
                created_by: format!("editor {editor}"),
            }),
            _ => Err(errors),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct ListPage<'a> {
    chrome: Chrome,
    endpoints: Vec<Endpoint>,
    events: [Event; 5],
    form: &'a EndpointForm,
    errors: Vec<String>,
    notice: Option<&'static str>,
}

/// The list with the form, as first shown or sent back with its errors.
async fn list_page(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    form: &EndpointForm,
    errors: Vec<String>,
    notice: Option<&'static str>,
) -> Answer {
    let endpoints = query(state, |conn| Ok(webhooks::list(conn)?)).await?;
    Ok(html(
        status,
        &ListPage {
            chrome: Chrome::new(state, req, "webhooks"),
            endpoints,
            events: Event::ALL,
            form,
            errors,
            notice,
        },
    ))
}

/// `GET /admin/webhooks`.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let notice = match q.notice.as_deref() {
        Some("deleted") => Some("Deleted, with what was queued for it."),
        _ => None,
    };
    list_page(
        &state,
        &req,
        StatusCode::OK,
        &EndpointForm::default(),
        Vec::new(),
        notice,
    )
    .await
}

/// `POST /admin/webhooks`: adds an endpoint and shows its page with the secret, this once (not
/// a redirect: the secret is not to travel in a URL or be kept anywhere but the answer).
pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Answer {
    let form = EndpointForm::parse(&body);
    let new = match form.check(super::editor_name(&req)) {
        Ok(new) => new,
        Err(errors) => {
            return list_page(&state, &req, StatusCode::BAD_REQUEST, &form, errors, None).await
        }
    };
    let (endpoint, secret) = query(&state, move |conn| Ok(webhooks::create(conn, &new)?)).await?;
    endpoint_page(&state, &req, endpoint, Some(secret), None).await
}

#[derive(Template)]
#[template(path = "admin/webhook.html")]
struct EndpointPage {
    chrome: Chrome,
    e: Endpoint,
    /// Just added: its signing secret, shown this once.
    secret: Option<String>,
    attempts: Vec<Attempt>,
    notice: Option<&'static str>,
}

async fn endpoint_page(
    state: &AppState,
    req: &HttpRequest,
    e: Endpoint,
    secret: Option<String>,
    notice: Option<&'static str>,
) -> Answer {
    let id = e.id;
    let attempts = query(state, move |conn| {
        Ok(webhooks::attempts_of(conn, id, RECENT)?)
    })
    .await?;
    Ok(html(
        StatusCode::OK,
        &EndpointPage {
            chrome: Chrome::new(state, req, "webhooks"),
            e,
            secret,
            attempts,
            notice,
        },
    ))
}

/// `GET /admin/webhooks/{id}`.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let id = path_id(&path)?;
    let endpoint = query(&state, move |conn| Ok(webhooks::find(conn, id)?))
        .await?
        .ok_or(Fault::NotFound)?;
    let notice = match q.notice.as_deref() {
        Some("enabled") => Some("Enabled: events are posted to it again, those waiting first."),
        Some("disabled") => {
            Some("Disabled: it gets no new events; what was queued waits until it is enabled.")
        }
        _ => None,
    };
    endpoint_page(&state, &req, endpoint, None, notice).await
}

#[derive(Deserialize)]
pub struct EnableForm {
    #[serde(default)]
    enabled: String,
}

/// `POST /admin/webhooks/{id}/enable` (`enabled=yes` or `no`).
pub async fn enable(
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<EnableForm>,
) -> Answer {
    let id = path_id(&path)?;
    let enabled = form.enabled != "no";
    if !query(&state, move |conn| {
        Ok(webhooks::set_enabled(conn, id, enabled)?)
    })
    .await?
    {
        return Err(Fault::NotFound);
    }
    let notice = if enabled { "enabled" } else { "disabled" };
    Ok(see_other(&format!("/admin/webhooks/{id}?notice={notice}")))
}

/// `POST /admin/webhooks/{id}/delete`.
pub async fn delete(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = path_id(&path)?;
    if !query(&state, move |conn| webhooks::delete(conn, id)).await? {
        return Err(Fault::NotFound);
    }
    Ok(see_other("/admin/webhooks?notice=deleted"))
}
