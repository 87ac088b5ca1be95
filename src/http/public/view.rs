//! `GET /view/{token}`: an issue as a web page, the "View in your browser" link of every issue.
//!
//! The token names the issue only (see [`ViewToken`]), so the page is the same for everyone who
//! got it, and anyone a reader forwards it to sees nothing of that reader: the personal links
//! are replaced (see [`compose::web_copy`]).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::foundation::db;
use crate::foundation::links::ViewToken;
use crate::http::pages;
use crate::http::state::AppState;
use crate::processes::compose;

/// `GET /view/{token}`: the issue as it was sent. A forged, altered or unknown token: 404.
pub async fn issue(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let Ok(token) = ViewToken::verify(&path.into_inner(), state.settings.secret()) else {
        return pages::not_found_page(site_name);
    };
    let id = token.issue_id;
    match db::run(&state.pool, move |conn| {
        Ok(compose::stored_parts(conn, id)?)
    })
    .await
    {
        Ok(Some((html, _text))) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            // The same for every reader and never changed once sent: caches may keep it.
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .body(compose::web_copy(&state.settings, &html, &[])),
        Ok(None) => pages::not_found_page(site_name),
        Err(e) if e.is_unavailable() => pages::unavailable(site_name),
        Err(e) => pages::internal_error(site_name, "web copy of an issue failed", &e),
    }
}
