//! Re-permission in the console: ask the inactive readers (no click in the last N digests,
//! `personal` click tracking only) whether they still want the newsletter, with a number of days
//! to answer; and what became of the campaigns so far.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::{query, see_other, Answer, Chrome};
use crate::foundation::config::ClickTracking;
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::engagement::{self, MAX_INACTIVE_DIGESTS};
use crate::stores::subscriptions::repermission::{self, Campaign, Tally, MAX_DAYS};

/// What the page shows when re-permission cannot be used here.
const NEEDS_PERSONAL: &str = "Re-permission needs IRIA_CLICK_TRACKING=personal: in this \
     installation clicks are not recorded per reader, so nobody can be found inactive.";

/// What the console says when the inactive filter asks for more digests than were sent with
/// per-reader clicks (`personal` mode): it selects nobody. `None` when there are enough.
pub(super) fn too_few_digests(personal_digests: i64, asked: u32) -> Option<String> {
    (personal_digests < i64::from(asked)).then(|| {
        format!(
            "Only {personal_digests} digest(s) were sent with per-reader clicks \
             (IRIA_CLICK_TRACKING=personal): digests sent in another mode do not count, so \
             \"no click in the last {asked} digests\" selects nobody."
        )
    })
}

#[derive(Deserialize)]
pub struct PageQuery {
    inactive: Option<u32>,
    notice: Option<String>,
    sent: Option<i64>,
}

#[derive(Template)]
#[template(path = "admin/repermission.html")]
struct Page {
    chrome: Chrome,
    personal: bool,
    error: Option<String>,
    notice: Option<String>,
    inactive: u32,
    days: u32,
    /// How many readers the form would ask now.
    segment: i64,
    /// Why the segment is empty, when fewer digests went out with per-reader clicks than asked.
    too_few: Option<String>,
    campaigns: Vec<(Campaign, Tally)>,
}

async fn render(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    status: StatusCode,
    inactive: u32,
    days: u32,
    error: Option<String>,
    notice: Option<String>,
) -> Answer {
    let personal = state.settings.click_tracking == ClickTracking::Personal;
    let n = inactive.clamp(1, MAX_INACTIVE_DIGESTS);
    let (segment, too_few, campaigns) = query(state, move |conn| {
        let (segment, too_few) = if personal {
            let segment = engagement::inactive_ids(conn, n)?.len() as i64;
            (
                segment,
                too_few_digests(engagement::personal_digests(conn)?, n),
            )
        } else {
            (0, None)
        };
        Ok((segment, too_few, repermission::recent(conn, 20)?))
    })
    .await?;
    let error = error.or_else(|| (!personal).then(|| NEEDS_PERSONAL.to_string()));
    Ok(html(
        status,
        &Page {
            chrome: Chrome::new(state, req, "subscribers"),
            personal,
            error,
            notice,
            inactive: n,
            days,
            segment,
            too_few,
            campaigns,
        },
    ))
}

/// `GET /admin/repermission`.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<PageQuery>,
) -> Answer {
    let notice = match (q.notice.as_deref(), q.sent) {
        (Some("sent"), Some(n)) => Some(format!(
            "Asked {n} reader(s); the messages are on their way."
        )),
        _ => None,
    };
    render(
        &state,
        &req,
        StatusCode::OK,
        q.inactive.unwrap_or(3),
        14,
        None,
        notice,
    )
    .await
}

#[derive(Deserialize)]
pub struct StartForm {
    inactive_digests: String,
    days: String,
}

/// `POST /admin/repermission`: asks the inactive readers now.
pub async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<StartForm>,
) -> Answer {
    let inactive = form.inactive_digests.trim().parse::<u32>().ok();
    let days = form.days.trim().parse::<u32>().ok();
    let error = if state.settings.click_tracking != ClickTracking::Personal {
        Some(NEEDS_PERSONAL.to_string())
    } else if !inactive.is_some_and(|n| (1..=MAX_INACTIVE_DIGESTS).contains(&n)) {
        Some(format!(
            "\"No click in the last N digests\": a number from 1 to {MAX_INACTIVE_DIGESTS}."
        ))
    } else if !days.is_some_and(|d| (1..=MAX_DAYS).contains(&d)) {
        Some(format!("Days to answer: a number from 1 to {MAX_DAYS}."))
    } else {
        None
    };
    let (inactive, days) = (inactive.unwrap_or(3), days.unwrap_or(14));
    if error.is_some() {
        let status = StatusCode::BAD_REQUEST;
        return render(&state, &req, status, inactive, days, error, None).await;
    }
    let editor = super::editor_name(&req);
    let campaign = query(&state, move |conn| {
        repermission::start(
            conn,
            inactive,
            days,
            Some(&editor),
            crate::foundation::db::now(),
        )
    })
    .await?;
    state.wake.notify_waiters();
    let detail = format!(
        "{} reader(s) with no click in the last {inactive} digests asked; {days} days to answer",
        campaign.recipients
    );
    super::audit::note(&state, &req, "re-permission started", detail).await;
    Ok(see_other(&format!(
        "/admin/repermission?notice=sent&sent={}&inactive={inactive}",
        campaign.recipients
    )))
}
