//! The weekly digest in the console: what the next one holds, send it now, skip it, history.
//!
//! "Send now" and "skip" act on the coming scheduled digest (the period that opens at the next
//! scheduled time): sending it early means the scheduled run finds it done, so a week's digest
//! still goes out once.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;

use super::dashboard::{issues_of_digests, IssueProgress};
use super::{query, see_other, Answer, Chrome, Fault, NoticeQuery};
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::processes::digest;
use crate::stores::digests::{self, Archived};

/// The key of the coming scheduled digest.
fn coming_period(state: &AppState) -> Option<(String, chrono::DateTime<Utc>)> {
    let schedule = &state.settings.schedule;
    let next = schedule.next(Utc::now())?;
    Some((schedule.period_key(next), next))
}

#[derive(Template)]
#[template(path = "admin/digest.html")]
struct DigestPage {
    chrome: Chrome,
    next_at: Option<String>,
    coming_done: bool,
    articles: Vec<crate::stores::articles::Article>,
    audiences: Vec<(String, i64, usize)>,
    history: Vec<(Archived, Vec<IssueProgress>)>,
    notice: Option<String>,
}

/// `GET /admin/digest`.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let coming = coming_period(&state);
    let key = coming.as_ref().map(|c| c.0.clone());
    let (plan, done, history) = query(&state, move |conn| {
        let plan = digest::plan(conn, "preview", crate::foundation::db::now())?;
        let done = match &key {
            Some(k) => digests::is_done(conn, k)?,
            None => false,
        };
        let runs = digests::history(conn, 20)?;
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let mut by_digest: std::collections::HashMap<i64, Vec<IssueProgress>> =
            std::collections::HashMap::new();
        for (digest_id, progress) in issues_of_digests(conn, &ids)? {
            by_digest.entry(digest_id).or_default().push(progress);
        }
        let history = runs
            .into_iter()
            .map(|r| {
                let issues = by_digest.remove(&r.id).unwrap_or_default();
                (r, issues)
            })
            .collect();
        Ok((plan, done, history))
    })
    .await?;
    let tz: chrono_tz::Tz = state.settings.timezone.parse().unwrap_or(chrono_tz::UTC);
    let audiences = plan
        .audiences
        .iter()
        .map(|a| (a.topics.replace(',', ", "), a.subscribers, a.articles.len()))
        .collect();
    let notice = match q.notice.as_deref() {
        Some("queued") => {
            Some("The digest is queued; the scheduled run will find it done.".to_string())
        }
        Some("done") => {
            Some("This week's digest was made or skipped already: nothing sent.".to_string())
        }
        Some("empty") => Some("There is no new article, so no digest was sent.".to_string()),
        Some("skipped") => {
            Some("The coming digest is skipped; its articles wait for the next one.".to_string())
        }
        _ => None,
    };
    Ok(html(
        StatusCode::OK,
        &DigestPage {
            chrome: Chrome::new(&state, &req, "digest"),
            next_at: coming.map(|c| {
                c.1.with_timezone(&tz)
                    .format("%A %-d %B %Y, %H:%M %Z")
                    .to_string()
            }),
            coming_done: done,
            articles: plan.articles,
            audiences,
            history,
            notice,
        },
    ))
}

/// `GET /admin/digest/preview`: the coming digest as a reader of all topics gets it.
pub async fn preview(state: web::Data<AppState>) -> HttpResponse {
    crate::http::public::archive::fresh_preview(state).await
}

/// `POST /admin/digest/send`: the coming digest, now.
pub async fn send_now(state: web::Data<AppState>, req: HttpRequest) -> Answer {
    let Some((key, _)) = coming_period(&state) else {
        return Ok(see_other("/admin/digest?notice=done"));
    };
    let settings = state.settings.clone();
    let outcome = query(&state, move |conn| {
        Ok(digest::run(
            conn,
            &settings,
            &key,
            crate::foundation::db::now(),
            false,
        ))
    })
    .await?
    .map_err(|e| Fault::Internal(e.to_string()))?;
    super::audit::note(&state, &req, "digest run", outcome.to_string()).await;
    let notice = match outcome {
        digest::Outcome::Queued { .. } => {
            state.wake.notify_waiters();
            "queued"
        }
        digest::Outcome::NoArticles => "empty",
        _ => "done",
    };
    Ok(see_other(&format!("/admin/digest?notice={notice}")))
}

/// `POST /admin/digest/skip`: the coming digest is not sent.
pub async fn skip(state: web::Data<AppState>, req: HttpRequest) -> Answer {
    let Some((key, _)) = coming_period(&state) else {
        return Ok(see_other("/admin/digest?notice=done"));
    };
    let period = key.clone();
    let skipped = query(&state, move |conn| {
        Ok(digests::skip(conn, &key, crate::foundation::db::now())?)
    })
    .await?;
    if skipped {
        let detail = format!("the digest of period {period}");
        super::audit::note(&state, &req, "digest skipped", detail).await;
    }
    Ok(see_other(if skipped {
        "/admin/digest?notice=skipped"
    } else {
        "/admin/digest?notice=done"
    }))
}
