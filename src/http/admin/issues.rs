//! Writing and sending issues: compose (Markdown or HTML), preview as a subscriber sees it,
//! test-send to one address, send to everyone or to chosen topics, now or at a time; an issue's
//! page with who received it and who did not, and a resend to the failed ones.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{NaiveDateTime, TimeZone};
use serde::Deserialize;

use super::dashboard::{last_issues, IssueProgress};
use super::{path_id, query, random_token, see_other, Answer, Chrome, Fault, PageQuery};
use crate::foundation::access::Role;
use crate::foundation::config::Settings;
use crate::foundation::domain::SubscriberEmail;
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::processes::compose::{self, Announcement, Door};
use crate::processes::messages::IssueContent;
use crate::processes::tracked_links;
use crate::stores::issues::{self, Composed, Draft, IssueError, When};

/// What the compose form holds.
#[derive(Clone, Debug, Default)]
pub struct ComposeForm {
    pub subject: String,
    pub preheader: String,
    pub body: String,
    /// `markdown` (the default) or `html`.
    pub format: String,
    /// Chosen topics; none means everyone.
    pub topics: Vec<String>,
    pub test_address: String,
    /// `YYYY-MM-DDTHH:MM` in the site's time zone.
    pub send_at: String,
    pub idempotency_key: String,
    /// preview, test, send, schedule or draft.
    pub action: String,
}

impl ComposeForm {
    /// Reads the form body; repeated `topics` fields are the chosen topics.
    pub fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            let value = value.into_owned();
            match key.as_ref() {
                "subject" => form.subject = value,
                "preheader" => form.preheader = value,
                "body" => form.body = value,
                "format" => form.format = value,
                "topics" if form.topics.len() < 64 => form.topics.push(value),
                "test_address" => form.test_address = value,
                "send_at" => form.send_at = value,
                "idempotency_key" => form.idempotency_key = value,
                "action" => form.action = value,
                _ => {}
            }
        }
        form
    }

    fn markdown(&self) -> bool {
        self.format != "html"
    }

    /// The form's draft, under the rules every door shares.
    fn draft(&self, settings: &Settings) -> Result<Draft, String> {
        Announcement {
            subject: self.subject.clone(),
            preheader: self.preheader.clone(),
            body: self.body.clone(),
            markdown: self.markdown(),
            text: None,
            topics: self.topics.clone(),
            idempotency_key: Some(self.idempotency_key.clone()),
        }
        .into_draft(settings, Door::Console)
        .map_err(|e| e.to_string())
    }
}

#[derive(Template)]
#[template(path = "admin/compose.html")]
struct ComposePage<'a> {
    chrome: Chrome,
    form: &'a ComposeForm,
    topics: &'a [String],
    errors: Vec<String>,
    notice: Option<String>,
    preview: Option<Composed>,
    timezone: &'a str,
}

fn render_compose(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    form: &ComposeForm,
    errors: Vec<String>,
    notice: Option<String>,
    preview: Option<Composed>,
) -> HttpResponse {
    html(
        status,
        &ComposePage {
            chrome: Chrome::new(state, req, "compose"),
            form,
            topics: &state.settings.topics,
            errors,
            notice,
            preview,
            timezone: &state.settings.timezone,
        },
    )
}

/// `GET /admin/issues/new`: an empty form with a fresh idempotency key.
pub async fn compose_page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let form = ComposeForm {
        format: "markdown".into(),
        idempotency_key: random_token(),
        ..Default::default()
    };
    render_compose(&state, &req, StatusCode::OK, &form, vec![], None, None)
}

/// The composed issue as a subscriber sees it, with the personal links pointing nowhere.
fn for_preview(mut composed: Composed) -> Composed {
    let urls: Vec<String> = composed.links.links.iter().map(|l| l.url.clone()).collect();
    composed.html = tracked_links::untracked(&composed.html, &urls, true);
    composed.text = tracked_links::untracked(&composed.text, &urls, false);
    for part in [&mut composed.html, &mut composed.text] {
        *part = part
            .replace(issues::UNSUBSCRIBE_MARK, "#unsubscribe")
            .replace(issues::PREFERENCES_MARK, "#preferences")
            .replace(issues::VIEW_MARK, "#view-in-browser");
    }
    composed
}

/// A time typed in the site's time zone, as UTC.
fn parse_local(text: &str, timezone: &str) -> Option<NaiveDateTime> {
    let local = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    let tz: chrono_tz::Tz = timezone.parse().ok()?;
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.naive_utc())
}

/// The compose form shown again after an action, with its errors, notice and preview.
struct ComposeReply<'a> {
    state: &'a AppState,
    req: &'a HttpRequest,
    form: &'a ComposeForm,
}

impl ComposeReply<'_> {
    fn page(
        &self,
        status: StatusCode,
        errors: Vec<String>,
        notice: Option<String>,
        preview: Option<Composed>,
    ) -> Answer {
        Ok(render_compose(
            self.state, self.req, status, self.form, errors, notice, preview,
        ))
    }

    /// The form again with one error and no preview.
    fn refuse(&self, error: String) -> Answer {
        self.page(StatusCode::BAD_REQUEST, vec![error], None, None)
    }
}

/// `POST /admin/issues`: preview, test-send, send now, schedule or keep as a draft.
pub async fn compose(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Answer {
    let form = ComposeForm::parse(&body);
    let settings = state.settings.clone();
    let reply = ComposeReply {
        state: &state,
        req: &req,
        form: &form,
    };
    let draft = match form.draft(&settings) {
        Ok(d) => d,
        Err(e) => return reply.refuse(e),
    };
    let composed = match compose::compose(&settings, &draft) {
        Ok(c) => c,
        Err(e) => return reply.refuse(explain(&e)),
    };
    let editor = super::editor_name(&req);
    match form.action.as_str() {
        "preview" => reply.page(StatusCode::OK, vec![], None, Some(for_preview(composed))),
        "test" => send_test_copy(&reply, composed).await,
        "send" | "schedule" if !super::may(&req, Role::Editor) => Ok(super::forbidden(
            &settings.site_name,
            "Only an editor or an admin can send or schedule an issue. Keep it as a draft; \
             an editor can send it from the issue's page.",
        )),
        "send" | "schedule" | "draft" => {
            let when = match when_to_send(&form, &settings.timezone) {
                Ok(when) => when,
                Err(why) => return reply.refuse(why.into()),
            };
            queue_issue(&reply, settings, draft, when, editor).await
        }
        _ => reply.refuse("Choose preview, test, send or schedule.".into()),
    }
}

/// Sends a test copy to the form's test address; the form comes back with the preview either way.
async fn send_test_copy(reply: &ComposeReply<'_>, composed: Composed) -> Answer {
    let address = match SubscriberEmail::parse(&reply.form.test_address) {
        Ok(a) => a,
        Err(e) => {
            return reply.page(
                StatusCode::BAD_REQUEST,
                vec![format!("Test address: {e}")],
                None,
                Some(for_preview(composed)),
            )
        }
    };
    match test_send(reply.state, &composed, address.as_str()).await {
        Ok(()) => {
            let detail = format!("to {address}: {:?}", reply.form.subject);
            super::audit::note(reply.state, reply.req, "test copy sent", detail).await;
            reply.page(
                StatusCode::OK,
                vec![],
                Some(format!("A test copy went to {address}.")),
                Some(for_preview(composed)),
            )
        }
        Err(e) => reply.page(
            StatusCode::BAD_GATEWAY,
            vec![format!("The test copy could not be sent: {e}")],
            None,
            Some(for_preview(composed)),
        ),
    }
}

/// When the form's action sends the issue: now, never until an editor sends the draft, or at
/// the form's time (which must be in the future).
fn when_to_send(form: &ComposeForm, timezone: &str) -> Result<When, &'static str> {
    match form.action.as_str() {
        "send" => Ok(When::Now),
        "draft" => Ok(When::Later),
        _ => match parse_local(&form.send_at, timezone) {
            Some(at) if at > crate::foundation::db::now() => Ok(When::At(at)),
            Some(_) => Err("The time to send is in the past."),
            None => Err("Give a date and time to send at."),
        },
    }
}

/// Creates the issue (once per idempotency key) and leads to its page; an issue queued now
/// wakes the delivery workers.
async fn queue_issue(
    reply: &ComposeReply<'_>,
    settings: Arc<Settings>,
    draft: Draft,
    when: When,
    editor: String,
) -> Answer {
    let subject = draft.subject.clone();
    let queued = query(reply.state, move |conn| {
        Ok(compose::create(
            conn,
            &settings,
            &draft,
            when,
            Some(&editor),
        ))
    })
    .await?;
    match queued {
        Ok(q) => {
            if q.created && when == When::Now {
                reply.state.wake.notify_waiters();
            }
            if q.created {
                note_queued(reply.state, reply.req, &q, &subject, when).await;
            }
            Ok(see_other(&format!("/admin/issues/{}", q.issue_id)))
        }
        Err(IssueError::Db(e)) => Err(Fault::Db(e)),
        Err(e) => reply.refuse(explain(&e)),
    }
}

/// Notes a new issue sent now or scheduled (a plain draft is not noted).
async fn note_queued(
    state: &AppState,
    req: &HttpRequest,
    q: &issues::Queued,
    subject: &str,
    when: When,
) {
    let (action, detail) = match when {
        When::Now => (
            "issue sent",
            format!(
                "issue {} {subject:?} to {} recipients",
                q.issue_id, q.recipients
            ),
        ),
        When::At(at) => (
            "issue scheduled",
            format!(
                "issue {} {subject:?} for {}",
                q.issue_id,
                at.format("%Y-%m-%d %H:%M UTC")
            ),
        ),
        When::Later => return,
    };
    super::audit::note(state, req, action, detail).await;
}

fn explain(e: &IssueError) -> String {
    let mut text = e.to_string();
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!("{text}.")
}

/// Sends one copy to an address that need not be a subscriber, at once, outside the ledger; its
/// personal links lead to a page that says the link is not valid.
async fn test_send(state: &AppState, composed: &Composed, address: &str) -> anyhow::Result<()> {
    let settings = &state.settings;
    let urls: Vec<String> = composed.links.links.iter().map(|l| l.url.clone()).collect();
    let mut content = IssueContent::new(
        0,
        format!("[Test] {}", composed.subject),
        &composed.html,
        &composed.text,
        crate::foundation::db::now(),
        &urls,
    );
    content.feedback_id = crate::processes::messages::feedback_id(settings, "test", "");
    let message_id = crate::foundation::message_ids::MessageIds::new(settings)
        .unrelated_message_id(&random_token());
    let to = crate::processes::messages::Addressee {
        delivery_id: 0,
        message_id: &message_id,
        subscriber_id: 0,
        email: address,
        name: None,
    };
    let dkim = crate::processes::messages::dkim_signer(settings)?;
    let message = crate::processes::messages::newsletter(settings, &to, &content, dkim.as_ref())?;
    state
        .mailer
        .send(&message.envelope, &message.bytes)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail))
}

#[derive(Template)]
#[template(path = "admin/issues.html")]
struct IssuesPage {
    chrome: Chrome,
    issues: Vec<IssueProgress>,
    page: i64,
    more: bool,
}

/// `GET /admin/issues`.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<PageQuery>,
) -> Answer {
    let page = q.page();
    let progress = state.progress.clone();
    let mut issues = query(&state, move |conn| {
        last_issues(conn, &progress, 51, (page - 1) * 50)
    })
    .await?;
    let more = issues.len() > 50;
    issues.truncate(50);
    Ok(html(
        StatusCode::OK,
        &IssuesPage {
            chrome: Chrome::new(&state, &req, "issues"),
            issues,
            page,
            more,
        },
    ))
}

#[derive(Template)]
#[template(path = "admin/issue.html")]
struct IssuePage {
    chrome: Chrome,
    p: IssueProgress,
    recipients: Vec<crate::stores::delivery::IssueRecipient>,
    status_filter: String,
    notice: Option<String>,
    /// Shown once the issue is queued.
    engagement: Option<super::engagement::Engagement>,
}

#[derive(Deserialize)]
pub struct IssueQuery {
    status: Option<String>,
    notice: Option<String>,
}

/// `GET /admin/issues/{id}`: progress, and the recipients (of one status, when chosen).
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<IssueQuery>,
) -> Answer {
    let id = path_id(&path)?;
    let status_filter = q
        .status
        .clone()
        .filter(|s| {
            ["queued", "sending", "sent", "failed", "bounced", "skipped"].contains(&s.as_str())
        })
        .unwrap_or_default();
    let filter = status_filter.clone();
    let settings = state.settings.clone();
    // Readers' addresses are for editors and admins, as the subscriber pages are.
    let may_see_readers = super::may(&req, Role::Editor);
    let progress = state.progress.clone();
    let (summary, counts, recipients, engagement) = query(&state, move |conn| {
        let summary = issues::summary(conn, id)?;
        let counts = progress.progress_of(conn, &[id])?;
        let filter = (!filter.is_empty()).then_some(filter.as_str());
        let recipients = if may_see_readers {
            crate::stores::delivery::recipients_of_issue(conn, id, filter, 500, 0)?
        } else {
            Vec::new()
        };
        // The copies delivered, as the progress counted them (kept when counting was slow).
        let sent = crate::stores::delivery::Progress::of(id, &counts).sent;
        let engagement = super::engagement::Engagement::load(conn, &settings, id, Some(sent))?;
        Ok((summary, counts, recipients, engagement))
    })
    .await?;
    let summary = summary.ok_or(Fault::NotFound)?;
    let notice = match q.notice.as_deref() {
        Some("retried") => Some("The failed deliveries are queued again.".to_string()),
        Some("sent") => Some("The issue is queued to its audience.".to_string()),
        Some("not-draft") => Some("This issue was sent already.".to_string()),
        _ => None,
    };
    let engagement = engagement.filter(|_| !summary.is_draft());
    Ok(html(
        StatusCode::OK,
        &IssuePage {
            chrome: Chrome::new(&state, &req, "issues"),
            engagement,
            p: IssueProgress::of(summary, &counts),
            recipients,
            status_filter,
            notice,
        },
    ))
}

/// `GET /admin/issues/{id}/preview`: the stored HTML as a subscriber sees it (personal links
/// disabled).
pub async fn preview(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = path_id(&path)?;
    let parts = query(&state, move |conn| {
        Ok(crate::processes::compose::stored_parts(conn, id)?)
    })
    .await?
    .ok_or(Fault::NotFound)?;
    // The web copy's link is the real one: the same for every reader.
    let view = crate::processes::messages::view_url(&state.settings, id);
    let html = parts
        .0
        .replace(issues::UNSUBSCRIBE_MARK, "#unsubscribe")
        .replace(issues::PREFERENCES_MARK, "#preferences")
        .replace(issues::VIEW_MARK, &view);
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// `POST /admin/issues/{id}/send`: a draft or scheduled issue, queued now.
pub async fn send_draft(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = path_id(&path)?;
    let queued = query(&state, move |conn| {
        let queued = issues::send_draft(conn, id)?;
        let subject = issues::summary(conn, id)?.map(|s| s.subject);
        Ok(queued.map(|q| (q, subject.unwrap_or_default())))
    })
    .await?;
    let notice = if let Some((q, subject)) = queued {
        state.wake.notify_waiters();
        note_queued(&state, &req, &q, &subject, When::Now).await;
        "sent"
    } else {
        "not-draft"
    };
    Ok(see_other(&format!("/admin/issues/{id}?notice={notice}")))
}

/// `POST /admin/issues/{id}/retry`: the failed deliveries queued again.
pub async fn retry_failed(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = path_id(&path)?;
    let n = query(&state, move |conn| {
        Ok(crate::stores::delivery::retry_failed(conn, id)?)
    })
    .await?;
    if n > 0 {
        state.wake.notify_waiters();
        let detail = format!("issue {id}: {n} failed copies sent again");
        super::audit::note(&state, &req, "issue resent", detail).await;
    }
    Ok(see_other(&format!("/admin/issues/{id}?notice=retried")))
}
