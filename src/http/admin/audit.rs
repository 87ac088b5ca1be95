//! The audit log in the console: what each page's action leaves in it ([`note`]), and the admins'
//! page that lists it with filters (actor, action, from and to dates) and paging.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use super::{query, Answer, Chrome};
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::audit::{self, Entry, Filter, Recorded};

/// Entries per page.
const PER_PAGE: i64 = 50;

/// A time as the log shows it: to the second.
pub fn at(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Notes in the audit log what the request's editor did (after it was done). A failure to write
/// is logged, not shown: the action has happened, and the editor must not think it did not.
pub async fn note(state: &AppState, req: &HttpRequest, action: &'static str, detail: String) {
    let entry = Entry::new(
        format!("editor {}", super::editor_name(req)),
        state.client_ip(req).to_string(),
        action,
    )
    .detail(detail);
    let written = query(state, move |conn| Ok(audit::record(conn, &entry)?)).await;
    if let Err(error) = written {
        tracing::error!(%error, action, "writing the audit log failed");
    }
}

/// The page's query: filters and the page number.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub action: String,
    /// `YYYY-MM-DD`, from the start of that day (UTC).
    #[serde(default)]
    pub from: String,
    /// `YYYY-MM-DD`, to the end of that day (UTC).
    #[serde(default)]
    pub to: String,
    pub page: Option<i64>,
}

impl AuditQuery {
    fn page(&self) -> i64 {
        self.page.unwrap_or(1).clamp(1, 1_000_000)
    }

    /// The store's filter, or what is wrong with a date.
    fn filter(&self) -> Result<Filter, String> {
        let date = |raw: &str, field: &str| -> Result<Option<NaiveDate>, String> {
            let raw = raw.trim();
            if raw.is_empty() {
                return Ok(None);
            }
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| format!("{field}: a date as YYYY-MM-DD"))
        };
        let start = |d: NaiveDate| -> NaiveDateTime { d.and_time(chrono::NaiveTime::MIN) };
        if self.actor.contains('\0') || self.action.contains('\0') {
            return Err("Who and Action: printable text only".into());
        }
        let from = date(&self.from, "From")?;
        let to = date(&self.to, "To")?;
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(Filter {
            actor: text(&self.actor),
            action: text(&self.action),
            since: from.map(start),
            until: to.and_then(|d| d.succ_opt()).map(start),
        })
    }

    /// The query string of another page of the same filters.
    pub fn page_link(&self, page: i64) -> String {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                link.append_pair(k, v);
            }
        }
        link.append_pair("page", &page.to_string());
        format!("/admin/audit?{}", link.finish())
    }
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    q: AuditQuery,
    entries: Vec<Recorded>,
    error: Option<String>,
    page: i64,
    more: bool,
}

/// `GET /admin/audit`: the latest entries first, 50 a page.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<AuditQuery>,
) -> Answer {
    let q = q.into_inner();
    let page = q.page();
    let (entries, error, status) = match q.filter() {
        Ok(filter) => {
            let offset = (page - 1) * PER_PAGE;
            let entries = query(&state, move |conn| {
                Ok(audit::list(conn, &filter, PER_PAGE + 1, offset)?)
            })
            .await?;
            (entries, None, StatusCode::OK)
        }
        Err(e) => (Vec::new(), Some(e), StatusCode::BAD_REQUEST),
    };
    let more = entries.len() as i64 > PER_PAGE;
    Ok(html(
        status,
        &AuditPage {
            chrome: Chrome::new(&state, &req, "audit"),
            q,
            entries: entries.into_iter().take(PER_PAGE as usize).collect(),
            error,
            page,
            more,
        },
    ))
}
