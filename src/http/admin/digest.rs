//! The weekly digest in the console: what the next one holds, send it now, skip it, history.
//!
//! "Send now" and "skip" act on the coming scheduled digest (the period that opens at the next
//! scheduled time): sending it early means the scheduled run finds it done, so a week's digest
//! still goes out once.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;

use super::dashboard::{issues_of_digests, IssueProgress, CACHE_FROM_SUBSCRIBERS, FIGURES_TTL};
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
    /// When the readers of `audiences` were counted, when that count is shown again.
    readers_counted_at: Option<String>,
    history: Vec<(Archived, Vec<IssueProgress>)>,
    notice: Option<String>,
}

/// The confirmed readers by their choice of topics, as counted at `counted_at` (UTC).
struct Readers {
    groups: Vec<(String, i64)>,
    counted_at: String,
}

/// The readers counted less than [`FIGURES_TTL`] ago, if that count was kept.
fn kept_readers(state: &AppState) -> Option<std::sync::Arc<Readers>> {
    let kept = state.audiences.0.lock().ok()?;
    let (at, readers) = kept.as_ref()?;
    if at.elapsed() > FIGURES_TTL {
        return None;
    }
    readers.clone().downcast::<Readers>().ok()
}

/// Keeps this count for [`FIGURES_TTL`] when there are at least [`CACHE_FROM_SUBSCRIBERS`]
/// confirmed readers (grouping them all by topics takes about 200 ms at a million), and returns
/// the time it was counted then; `None`: a small list, counted on every view.
fn keep_readers(state: &AppState, groups: Vec<(String, i64)>) -> Option<String> {
    let total: i64 = groups.iter().map(|(_, n)| n).sum();
    if total < CACHE_FROM_SUBSCRIBERS {
        return None;
    }
    let counted_at = Utc::now().format("%H:%M:%S UTC").to_string();
    let readers = std::sync::Arc::new(Readers {
        groups,
        counted_at: counted_at.clone(),
    });
    if let Ok(mut kept) = state.audiences.0.lock() {
        *kept = Some((std::time::Instant::now(), readers));
    }
    Some(counted_at)
}

/// `GET /admin/digest`.
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let coming = coming_period(&state);
    let key = coming.as_ref().map(|c| c.0.clone());
    let kept = kept_readers(&state);
    let kept_at = kept.as_ref().map(|k| k.counted_at.clone());
    let progress_cache = state.progress.clone();
    let (plan, counted, done, history) = query(&state, move |conn| {
        let (groups, counted) = match kept {
            Some(kept) => (kept.groups.clone(), None),
            None => {
                let groups = crate::stores::subscriptions::confirmed_by_topics(conn)?;
                (groups.clone(), Some(groups))
            }
        };
        let plan = digest::plan_for(conn, "preview", crate::foundation::db::now(), groups)?;
        let done = match &key {
            Some(k) => digests::is_done(conn, k)?,
            None => false,
        };
        let runs = digests::history(conn, 20)?;
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let mut by_digest: std::collections::HashMap<i64, Vec<IssueProgress>> =
            std::collections::HashMap::new();
        for (digest_id, progress) in issues_of_digests(conn, &progress_cache, &ids)? {
            by_digest.entry(digest_id).or_default().push(progress);
        }
        let history = runs
            .into_iter()
            .map(|r| {
                let issues = by_digest.remove(&r.id).unwrap_or_default();
                (r, issues)
            })
            .collect();
        Ok((plan, counted, done, history))
    })
    .await?;
    let readers_counted_at = match counted {
        Some(groups) => keep_readers(&state, groups),
        None => kept_at,
    };
    let tz: chrono_tz::Tz = state.settings.timezone.parse().unwrap_or(chrono_tz::UTC);
    let audiences = plan
        .audiences
        .iter()
        .map(|a| (a.topics.replace(',', ", "), a.subscribers, a.articles.len()))
        .collect();
    let notice = notice_text(q.notice.as_deref());
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
            readers_counted_at,
            history,
            notice: notice.map(str::to_string),
        },
    ))
}

/// What the page says after an action that redirected to it.
fn notice_text(notice: Option<&str>) -> Option<&'static str> {
    Some(match notice? {
        "queued" => "The digest is queued; the scheduled run will find it done.",
        "done" => "This week's digest was made or skipped already: nothing sent.",
        "empty" => "There is no new article, so no digest was sent.",
        "skipped" => "The coming digest is skipped; its articles wait for the next one.",
        _ => return None,
    })
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
