//! `GET /r/{token}`, a tracked link, and `GET /o/{token}`, a copy's open image (see
//! [`crate::processes::clicks`]).
//!
//! The address a link leads to comes from the links stored with its issue, never from the
//! request: a forged, tampered or unknown token gets the 404 page and no `Location`, so there is
//! no open redirect. `HEAD` redirects and counts nothing.

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use crate::foundation::db;
use crate::foundation::net::limit_key;
use crate::http::middleware::HeadRequest;
use crate::http::pages;
use crate::http::state::AppState;
use crate::processes::clicks::{is_machine_agent, Hit};

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn hit(state: &AppState, req: &HttpRequest, tracked: crate::foundation::tracking::Tracked) {
    if req.extensions().contains::<HeadRequest>() {
        return;
    }
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    state.tracking.record(Hit {
        tracked,
        at: db::now(),
        machine_agent: is_machine_agent(agent),
        client: limit_key(&state.client_ip(req).to_string()),
    });
}

/// `GET /r/{token}`: 302 to the stored address of the token's issue and position.
pub async fn redirect(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let site_name = &state.settings.site_name;
    let Some(tracked) = state.tracking.signer.verify_link(&path) else {
        return pages::not_found_page(site_name);
    };
    let url = match state
        .tracking
        .url(&state.pool, tracked.issue_id, tracked.position)
        .await
    {
        Ok(Some(url)) => url,
        Ok(None) => return pages::not_found_page(site_name),
        Err(e) if e.is_unavailable() => return pages::unavailable(site_name),
        Err(e) => return pages::internal_error(site_name, "tracked link failed", &e),
    };
    hit(&state, &req, tracked);
    HttpResponse::Found()
        .insert_header((header::LOCATION, url.as_ref()))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Robots-Tag", "noindex, nofollow"))
        .finish()
}

/// `GET /o/{token}`: the open image; the open is counted when the issue has one.
pub async fn open(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let Some(tracked) = state.tracking.signer.verify_open(&path) else {
        return pages::not_found_page(&state.settings.site_name);
    };
    if state.settings.open_tracking {
        hit(&state, &req, tracked);
    }
    HttpResponse::Ok()
        .content_type("image/gif")
        .insert_header((header::CACHE_CONTROL, "no-store, private"))
        .body(PIXEL)
}
