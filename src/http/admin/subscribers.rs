//! Subscribers in the console: search and filter, one subscriber's record (consents and
//! messages), unsubscribe, erase and CSV export (the CSV import is `imports.rs`).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{path_id, query, see_other, Answer, Chrome, Fault, NoticeQuery};
use crate::foundation::config::ClickTracking;
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::engagement::{self, MAX_INACTIVE_DIGESTS};
use crate::stores::subscriptions::directory::{self, ConsentRow, DeliveryRow, Filter, Window};
use crate::stores::subscriptions::records::{self, SubscriberRecord};

const PAGE: i64 = 50;
const STATUSES: [&str; 5] = [
    "confirmed",
    "pending",
    "unsubscribed",
    "bounced",
    "complained",
];

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    topic: Option<String>,
    /// "No click in the last N digests" (`personal` click tracking only).
    inactive: Option<String>,
    page: Option<i64>,
    /// Keyset paging: the rows older than this id (the "Next" link's), instead of an offset.
    before: Option<i64>,
    /// Keyset paging: the rows just newer than this id (the "Previous" link's).
    after: Option<i64>,
}

impl ListQuery {
    fn filter(&self) -> Filter {
        Filter {
            text: self
                .q
                .clone()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
            status: self
                .status
                .clone()
                .filter(|s| STATUSES.contains(&s.as_str())),
            topic: self.topic.clone().filter(|t| !t.is_empty()),
            inactive_digests: self.inactive().ok().flatten(),
        }
    }

    /// The inactive filter asked for: `Ok(None)` when none, `Err` with what is wrong with it.
    fn inactive(&self) -> Result<Option<u32>, String> {
        let raw = self.inactive.as_deref().map(str::trim).unwrap_or_default();
        if raw.is_empty() {
            return Ok(None);
        }
        match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_INACTIVE_DIGESTS).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "\"No click in the last N digests\" takes a number from 1 to {MAX_INACTIVE_DIGESTS}."
            )),
        }
    }

    /// Why the filter cannot be used here, if it cannot.
    fn refusal(&self, mode: ClickTracking) -> Option<String> {
        match self.inactive() {
            Err(e) => Some(e),
            Ok(Some(_)) if mode != ClickTracking::Personal => Some(
                "The inactive filter needs IRIA_CLICK_TRACKING=personal: in this installation \
                 clicks are not recorded per reader, so nobody can be found inactive."
                    .into(),
            ),
            _ => None,
        }
    }

    /// The query string of this filter, for the pager and the export link.
    fn query_string(&self) -> String {
        let f = self.filter();
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        out.append_pair("q", &f.text);
        if let Some(s) = &f.status {
            out.append_pair("status", s);
        }
        if let Some(t) = &f.topic {
            out.append_pair("topic", t);
        }
        if let Some(n) = f.inactive_digests {
            out.append_pair("inactive", &n.to_string());
        }
        out.finish()
    }
}

#[derive(Template)]
#[template(path = "admin/subscribers.html")]
struct ListPage<'a> {
    chrome: Chrome,
    filter: Filter,
    statuses: &'a [&'a str],
    topics: &'a [String],
    rows: Vec<SubscriberRecord>,
    /// How many match, counted up to `cap` + 1 ([`directory::count_cap`]).
    total: i64,
    /// Whether more match than were counted.
    more_than: bool,
    cap: i64,
    page: i64,
    pages: i64,
    /// The last row's id, for the "Next" link (keyset paging).
    next_before: Option<i64>,
    /// The first row's id, for the "Previous" link past page 2 (keyset paging; page 1 is the
    /// list's own first page).
    prev_after: Option<i64>,
    query: String,
    /// Whether clicks are recorded per reader (the inactive filter and re-permission).
    personal: bool,
    /// Why the filter asked for was refused.
    refusal: Option<String>,
    /// Why the inactive filter selects nobody, when fewer digests went out with per-reader
    /// clicks than it asks for.
    too_few: Option<String>,
}

/// `GET /admin/subscribers`.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Answer {
    let mode = state.settings.click_tracking;
    let refusal = q.refusal(mode);
    let mut filter = q.filter();
    if refusal.is_some() {
        filter.inactive_digests = None;
    }
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let window = match (q.before.filter(|id| *id > 0), q.after.filter(|id| *id > 0)) {
        (Some(id), _) => Window::Before(id),
        (None, Some(id)) => Window::After(id),
        (None, None) => Window::Offset((page - 1) * PAGE),
    };
    let cap = directory::count_cap(&filter);
    let f = filter.clone();
    let (rows, total, too_few) = query(&state, move |conn| {
        let too_few = match f.inactive_digests {
            Some(n) => super::repermission::too_few_digests(engagement::personal_digests(conn)?, n),
            None => None,
        };
        Ok((
            directory::search(conn, &f, PAGE, window)?,
            directory::count(conn, &f)?,
            too_few,
        ))
    })
    .await?;
    let status = if refusal.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(html(
        status,
        &ListPage {
            chrome: Chrome::new(&state, &req, "subscribers"),
            filter,
            statuses: &STATUSES,
            topics: &state.settings.topics,
            next_before: (rows.len() as i64 == PAGE)
                .then(|| rows.last().map(|r| r.id))
                .flatten(),
            prev_after: rows.first().map(|r| r.id).filter(|_| page > 2),
            rows,
            total: total.min(cap),
            more_than: total > cap,
            cap,
            page,
            pages: ((total.min(cap) + PAGE - 1) / PAGE).max(1),
            query: q.query_string(),
            personal: mode == ClickTracking::Personal,
            refusal,
            too_few,
        },
    ))
}

/// `GET /admin/subscribers/export.csv`: the (filtered) list as CSV.
pub async fn export(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Answer {
    let mut filter = q.filter();
    if q.refusal(state.settings.click_tracking).is_some() {
        filter.inactive_digests = None;
    }
    // Whether a filter was set, not the filter: a search text may be an address.
    let whole = filter.text.trim().is_empty()
        && filter.status.is_none()
        && filter.topic.is_none()
        && filter.inactive_digests.is_none();
    let (csv, rows) = query(&state, move |conn| {
        let rows = directory::count_all(conn, &filter)?;
        Ok((directory::export_csv(conn, &filter)?, rows))
    })
    .await?;
    let detail = format!("{rows} rows{}", if whole { "" } else { " (filtered)" });
    super::audit::note(&state, &req, "subscribers exported", detail).await;
    let name = format!("subscribers-{}.csv", chrono::Utc::now().format("%Y-%m-%d"));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(csv))
}

#[derive(Template)]
#[template(path = "admin/subscriber.html")]
struct RecordPage {
    chrome: Chrome,
    s: SubscriberRecord,
    consents: Vec<ConsentRow>,
    deliveries: Vec<DeliveryRow>,
    notice: Option<&'static str>,
    /// The reader's last click (`personal` click tracking): `None` when not recorded.
    last_click: Option<Option<chrono::NaiveDateTime>>,
}

/// `GET /admin/subscribers/{id}`.
pub async fn record(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let id = path_id(&path)?;
    let personal = state.settings.click_tracking == ClickTracking::Personal;
    let (s, consents, deliveries, last_click) = query(&state, move |conn| {
        let last_click = if personal {
            Some(engagement::last_click_at(conn, id)?)
        } else {
            None
        };
        Ok((
            records::find(conn, id)?,
            directory::consents_of(conn, id)?,
            directory::deliveries_of(conn, id, 100)?,
            last_click,
        ))
    })
    .await?;
    let s = s.ok_or(Fault::NotFound)?;
    let notice = match q.notice.as_deref() {
        Some("unsubscribed") => Some("Unsubscribed: nothing more is sent to this address."),
        Some("erased") => Some("Erased: the address and name are gone; the counts stay."),
        _ => None,
    };
    Ok(html(
        StatusCode::OK,
        &RecordPage {
            chrome: Chrome::new(&state, &req, "subscribers"),
            s,
            consents,
            deliveries,
            notice,
            last_click,
        },
    ))
}

/// `POST /admin/subscribers/{id}/unsubscribe`.
pub async fn unsubscribe(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = path_id(&path)?;
    let via = format!("editor {}", super::editor_name(&req));
    let changed = query(&state, move |conn| records::unsubscribe(conn, id, &via)).await?;
    if changed {
        let detail = format!("subscriber {id}");
        super::audit::note(&state, &req, "subscriber unsubscribed", detail).await;
    }
    Ok(see_other(&format!(
        "/admin/subscribers/{id}?notice=unsubscribed"
    )))
}

/// `POST /admin/subscribers/{id}/erase`.
pub async fn erase(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = path_id(&path)?;
    let settings = state.settings.clone();
    let erased = query(&state, move |conn| {
        records::erase(conn, id, settings.secret())
    })
    .await?;
    // The subscriber's id only: the log must not keep the address that was erased.
    if erased {
        super::audit::note(
            &state,
            &req,
            "subscriber erased",
            format!("subscriber {id}"),
        )
        .await;
    }
    Ok(see_other(&format!("/admin/subscribers/{id}?notice=erased")))
}
