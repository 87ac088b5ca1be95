//! The digest in a browser: a preview of the next one, and the public archive with its Atom feed.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;

use crate::foundation::db;
use crate::foundation::links::ViewToken;
use crate::http::pages::{self, MessagePage};
use crate::http::state::{AppState, PREVIEW_TTL};
use crate::processes::compose;
use crate::processes::digest::{self, Item};
use crate::stores::{digests, issues};

/// `GET /digest/preview`: the digest that would go out now, as a reader of all topics gets it.
/// Anyone may ask, so it is built at most once a [`PREVIEW_TTL`] and served from memory
/// meanwhile: a crowd of requests costs one build, not one each. (The console's preview, behind
/// the login, is always built afresh: [`fresh_preview`].)
pub async fn preview(state: web::Data<AppState>) -> HttpResponse {
    let mut cached = state.preview.0.lock().await;
    if let Some((_, html)) = cached
        .as_ref()
        .filter(|(built, _)| built.elapsed() < PREVIEW_TTL)
    {
        return preview_page(&state, html.clone());
    }
    match build_preview(&state).await {
        Ok(html) => {
            *cached = Some((std::time::Instant::now(), html.clone()));
            drop(cached);
            preview_page(&state, html)
        }
        Err(page) => page,
    }
}

/// The digest preview, built now.
pub async fn fresh_preview(state: web::Data<AppState>) -> HttpResponse {
    match build_preview(&state).await {
        Ok(html) => preview_page(&state, html),
        Err(page) => page,
    }
}

/// The coming digest as a web copy (no reader's links in it, and none to itself), `None` when
/// there is none; `Err` is the error page.
async fn build_preview(state: &AppState) -> Result<Option<String>, HttpResponse> {
    let site_name = &state.settings.site_name;
    let settings = state.settings.clone();
    let result = db::run(&state.pool, move |conn| {
        Ok(digest::preview(conn, &settings, db::now()))
    })
    .await;
    match result {
        Ok(Ok(composed)) => Ok(composed.map(|c| {
            let urls: Vec<String> = c.links.links.iter().map(|l| l.url.clone()).collect();
            compose::web_copy(&state.settings, &c.html, &urls)
        })),
        Ok(Err(e)) => Err(pages::internal_error(
            site_name,
            "digest preview failed",
            &e,
        )),
        Err(e) if e.is_unavailable() => Err(pages::unavailable(site_name)),
        Err(e) => Err(pages::internal_error(
            site_name,
            "digest preview failed",
            &e,
        )),
    }
}

fn preview_page(state: &AppState, html: Option<String>) -> HttpResponse {
    match html {
        Some(html) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        None => pages::html(
            StatusCode::OK,
            &MessagePage {
                site_name: &state.settings.site_name,
                title: "No digest to preview",
                message: "There is no new article since the last digest, so none would go out now.",
                offer_signup: false,
            },
        ),
    }
}

/// The title of an archived digest: "Digest of 30 November 2026".
fn title(created: chrono::NaiveDateTime) -> String {
    format!("Digest of {}", created.format("%-d %B %Y"))
}

#[derive(Template)]
#[template(path = "archive.html")]
struct ArchivePage<'a> {
    site_name: &'a str,
    digests: Vec<(i64, String, i32)>,
}

/// `GET /archive`.
pub async fn archive(state: web::Data<AppState>) -> HttpResponse {
    let site_name = &state.settings.site_name;
    match db::run(&state.pool, |conn| Ok(digests::archive(conn, 500)?)).await {
        Ok(list) => pages::html(
            StatusCode::OK,
            &ArchivePage {
                site_name,
                digests: list
                    .into_iter()
                    .map(|d| (d.id, title(d.created_at), d.articles))
                    .collect(),
            },
        ),
        Err(e) if e.is_unavailable() => pages::unavailable(site_name),
        Err(e) => pages::internal_error(site_name, "archive failed", &e),
    }
}

#[derive(Template)]
#[template(path = "archive_digest.html")]
struct ArchivedPage<'a> {
    site_name: &'a str,
    title: String,
    items: Vec<Item<'a>>,
    /// The digest as it was sent, one issue per audience: (its web copy, who it was for).
    sent_as: Vec<(String, String)>,
}

/// `GET /archive/{id}`.
pub async fn archived(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let Ok(id) = path.into_inner().parse::<i64>() else {
        return pages::not_found_page(site_name);
    };
    let found = db::run(&state.pool, move |conn| {
        Ok(digest::archived(conn, id)?.map(|d| (d, issues::of_digest(conn, id))))
    })
    .await;
    match found {
        Ok(Some(((digest, list), Ok(sent)))) if digest.articles > 0 => {
            let items = list.iter().map(Item::of).collect();
            let secret = state.settings.secret();
            let sent_as = sent
                .into_iter()
                .map(|(issue_id, topics)| {
                    let who = if topics.is_empty() {
                        "readers of every topic".to_string()
                    } else {
                        format!("readers of {}", topics.replace(',', ", "))
                    };
                    (
                        format!("/view/{}", ViewToken { issue_id }.sign(secret)),
                        who,
                    )
                })
                .collect();
            pages::html(
                StatusCode::OK,
                &ArchivedPage {
                    site_name,
                    title: title(digest.created_at),
                    items,
                    sent_as,
                },
            )
        }
        Ok(Some((_, Err(e)))) => pages::internal_error(site_name, "archive failed", &e),
        Ok(_) => pages::not_found_page(site_name),
        Err(e) if e.is_unavailable() => pages::unavailable(site_name),
        Err(e) => pages::internal_error(site_name, "archive failed", &e),
    }
}

struct Entry {
    id: i64,
    title: String,
    updated: String,
    summary: String,
}

#[derive(Template)]
#[template(path = "archive.xml")]
struct AtomFeed<'a> {
    site_name: &'a str,
    base: String,
    updated: String,
    entries: Vec<Entry>,
}

/// `GET /archive/feed.atom`: the archive as an Atom feed.
pub async fn atom(state: web::Data<AppState>) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let list = match db::run(&state.pool, |conn| Ok(digests::archive(conn, 50)?)).await {
        Ok(list) => list,
        Err(e) if e.is_unavailable() => return pages::unavailable(site_name),
        Err(e) => return pages::internal_error(site_name, "archive feed failed", &e),
    };
    let rfc3339 = |t: chrono::NaiveDateTime| {
        t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let updated = list
        .first()
        .map(|d| rfc3339(d.created_at))
        .unwrap_or_else(|| rfc3339(db::now()));
    let entries = list
        .iter()
        .map(|d| Entry {
            id: d.id,
            title: title(d.created_at),
            updated: rfc3339(d.created_at),
            summary: format!("{} article(s)", d.articles),
        })
        .collect();
    let feed = AtomFeed {
        site_name,
        base: state.settings.link(""),
        updated,
        entries,
    };
    match feed.render() {
        Ok(xml) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/atom+xml; charset=utf-8"))
            .body(xml),
        Err(e) => pages::internal_error(site_name, "archive feed failed", &e),
    }
}
