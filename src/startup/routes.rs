//! The route table of the web application: the public pages, the operator's endpoints, the JSON
//! API and the editors' console.

use actix_web::web;

use crate::http::public::{archive, confirm, data_links, keep, links, ops, signup, tracking, view};
use crate::http::{api, embedding};

/// The routes outside `/admin` (the console is a scope of its own, see [`crate::http::admin`]).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(signup::signup_page))
        .service(
            // The site's embedded form posts here from another origin: CORS for the site's
            // origins (`IRIA_ALLOWED_ORIGINS`), on this resource only.
            web::resource("/subscriptions")
                .wrap(actix_web::middleware::from_fn(embedding::cors))
                .route(web::post().to(signup::subscribe))
                .route(web::method(actix_web::http::Method::OPTIONS).to(embedding::preflight)),
        )
        .route(
            "/subscriptions/confirm",
            web::get().to(confirm::confirm_page),
        )
        .route("/subscriptions/confirm", web::post().to(confirm::confirm))
        .route(
            "/unsubscribe/{token}",
            web::get().to(links::unsubscribe_page),
        )
        .route("/unsubscribe/{token}", web::post().to(links::unsubscribe))
        .route(
            "/preferences/{token}",
            web::get().to(links::preferences_page),
        )
        .route(
            "/preferences/{token}",
            web::post().to(links::save_preferences),
        )
        .route(
            "/preferences/{token}/data",
            web::get().to(links::data_needs_fresh_link),
        )
        .route(
            "/preferences/{token}/erase",
            web::post().to(links::data_needs_fresh_link),
        )
        .route(
            "/preferences/{token}/data-link",
            web::post().to(links::request_data_link),
        )
        .route("/my-data/{token}", web::get().to(data_links::page))
        .route(
            "/my-data/{token}/download",
            web::post().to(data_links::download),
        )
        .route("/my-data/{token}/erase", web::post().to(data_links::erase))
        .route("/keep/{token}", web::get().to(keep::page))
        .route("/keep/{token}", web::post().to(keep::keep))
        .route("/digest/preview", web::get().to(archive::preview))
        .route("/archive", web::get().to(archive::archive))
        .route("/archive/feed.atom", web::get().to(archive::atom))
        .route("/archive/{id}", web::get().to(archive::archived))
        .route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::readiness))
        .route("/metrics", web::get().to(ops::metrics))
        .configure(api::routes::routes)
        .route("/assets/site.css", web::get().to(ops::stylesheet))
        .route("/view/{token}", web::get().to(view::issue))
        .route("/r/{token}", web::get().to(tracking::redirect))
        .route("/o/{token}", web::get().to(tracking::open));
}
