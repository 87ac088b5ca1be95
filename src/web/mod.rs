//! The HTTP application: state shared by the handlers, the route table, the pages every route
//! can fall back to (errors, 503), and start-up of `serve`.

pub mod pages;

use std::net::{IpAddr, TcpListener};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{watch, Notify};

use crate::config::Settings;
use crate::db::{self, Pool};
use crate::delivery::worker::Worker;
use crate::mail::Mailer;
use crate::subscriptions;

/// The largest request body any route accepts; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: Pool,
    /// Sign-ups per client IP; kept in memory, so with several `serve` processes each counts its
    /// own (the per-address limit is counted in the database and holds across processes).
    pub signup_ip_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Wakes this process's delivery worker when a message was queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<crate::observability::Metrics>,
    /// For the console's test copies, which go out at once, outside the ledger.
    pub mailer: Mailer,
}

impl AppState {
    /// The client's IP: the peer, or the first `X-Forwarded-For` hop when configured to trust a
    /// proxy in front.
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if !self.settings.trust_forwarded_for {
            return peer;
        }
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(peer)
    }
}

/// The route table of the web application.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(subscriptions::routes::signup_page))
        .route(
            "/subscriptions",
            web::post().to(subscriptions::routes::subscribe),
        )
        .route(
            "/subscriptions/confirm",
            web::get().to(subscriptions::routes::confirm),
        )
        .route(
            "/unsubscribe/{token}",
            web::get().to(subscriptions::link_routes::unsubscribe_page),
        )
        .route(
            "/unsubscribe/{token}",
            web::post().to(subscriptions::link_routes::unsubscribe),
        )
        .route(
            "/preferences/{token}",
            web::get().to(subscriptions::link_routes::preferences_page),
        )
        .route(
            "/preferences/{token}",
            web::post().to(subscriptions::link_routes::save_preferences),
        )
        .route(
            "/preferences/{token}/data",
            web::get().to(subscriptions::link_routes::download_data),
        )
        .route(
            "/preferences/{token}/erase",
            web::post().to(subscriptions::link_routes::erase),
        )
        .route(
            "/digest/preview",
            web::get().to(crate::digest::routes::preview),
        )
        .route("/archive", web::get().to(crate::digest::routes::archive))
        .route(
            "/archive/feed.atom",
            web::get().to(crate::digest::routes::atom),
        )
        .route(
            "/archive/{id}",
            web::get().to(crate::digest::routes::archived),
        )
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(readiness))
        .route("/metrics", web::get().to(metrics))
        .configure(crate::api::routes)
        .route("/assets/site.css", web::get().to(stylesheet));
}

/// `GET /health`: 200 when the database answers, 503 otherwise.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let answer = db::run(&state.pool, |conn| {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("SELECT 1").map_err(db::DbError::from)
    })
    .await;
    match answer {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok", "database": "up"})),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable", "database": "down"}))
        }
    }
}

/// `GET /ready`: 200 when the database answers and every migration is applied, 503 otherwise.
async fn readiness(state: web::Data<AppState>) -> HttpResponse {
    let answer = db::run(&state.pool, |conn| Ok(db::migrations_current(conn))).await;
    match answer {
        Ok(true) => HttpResponse::Ok().json(
            serde_json::json!({"status": "ready", "database": "up", "migrations": "current"}),
        ),
        Ok(false) => HttpResponse::ServiceUnavailable().json(
            serde_json::json!({"status": "not ready", "database": "up", "migrations": "pending"}),
        ),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "not ready", "database": "down"})),
    }
}

/// `GET /metrics`: Prometheus' text format.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let gauges = db::run(&state.pool, |conn| Ok(crate::observability::gauges(conn)?))
        .await
        .unwrap_or_default();
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(state.metrics.render(&gauges))
}

/// The headers every response carries: no script from anywhere (the pages have none), no
/// framing, no referrer (links carry tokens), no sniffing; HSTS when served over https.
fn security_headers(settings: &Settings) -> actix_web::middleware::DefaultHeaders {
    let mut headers = actix_web::middleware::DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"));
    if settings.base_url.scheme() == "https" {
        headers = headers.add((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ));
    }
    headers
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../templates/site.css"))
}

/// A running `serve`: the web server and the delivery worker of this process.
pub struct Application {
    port: u16,
    server: Server,
    worker: Option<Worker>,
    shutdown: watch::Sender<bool>,
}

impl Application {
    /// Sets everything up and binds the listener; nothing runs until [`Self::run_until_stopped`].
    /// Pending migrations are applied first. With `listen` on port 0 the OS picks a port, which
    /// [`Self::port`] tells (tests start the real application that way).
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        Self::build_with_listener(settings, listener)
    }

    /// As [`Self::build`], on a listener already bound (tests bind port 0 first, so that the
    /// base URL in the emails can name the port).
    pub fn build_with_listener(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let pool = db::pool(&settings.database_url, settings.db_pool_size);
        {
            let mut conn = pool.get().context("connecting to the database")?;
            let applied = db::migrate(&mut conn)?;
            if applied > 0 {
                tracing::info!(applied, "applied database migrations");
            }
        }
        let mailer = Mailer::from_settings(&settings)?;
        let dkim = crate::messages::dkim_config(&settings)?;
        let wake = Arc::new(Notify::new());
        let metrics = Arc::new(crate::observability::Metrics::default());
        let per_ip = NonZeroU32::new(settings.signup_per_ip_per_hour).unwrap_or(NonZeroU32::MIN);
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            pool: pool.clone(),
            signup_ip_limiter: RateLimiter::keyed(Quota::per_hour(per_ip)),
            wake: wake.clone(),
            metrics: metrics.clone(),
            mailer: mailer.clone(),
        });
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();
        let limiter_state = state.clone();
        let http_workers = settings.http_workers;
        let headers_settings = settings.clone();
        let telemetry_metrics = metrics.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .app_data(web::FormConfig::default().limit(MAX_BODY_BYTES))
                .wrap(security_headers(&headers_settings))
                .wrap(crate::observability::RequestTelemetry {
                    metrics: telemetry_metrics.clone(),
                })
                .service(crate::admin::scope(&headers_settings))
                .configure(routes)
                .default_service(web::to(pages::not_found))
        })
        .disable_signals()
        .shutdown_timeout(10);
        if http_workers > 0 {
            server = server.workers(http_workers);
        }
        let server = server.listen(listener)?.run();
        // Forget clients that have not signed up for an hour, so the limiter's memory stays small.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                limiter_state.signup_ip_limiter.retain_recent();
            }
        });
        tokio::spawn(crate::digest::schedule::run_forever(
            settings.clone(),
            pool.clone(),
            settings.schedule.clone(),
        ));
        tokio::spawn(crate::issues::queue_due_forever(pool.clone(), wake.clone()));
        if let Some(feed) = &settings.feed_url {
            tokio::spawn(crate::articles::feed::poll_forever(
                pool.clone(),
                feed.to_string(),
                settings.feed_poll,
            ));
        }
        let mut worker = Worker::new(settings, pool, mailer, wake, dkim);
        worker.metrics = metrics;
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            port,
            server,
            worker: Some(worker),
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM (or the server stops): then stops taking requests, lets the
    /// ones in progress finish, and stops the delivery worker after its batch in hand.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let worker = self
            .worker
            .take()
            .map(|w| tokio::spawn(w.run(self.shutdown.subscribe())));
        let shutdown = self.shutdown;
        tokio::spawn(async move {
            crate::telemetry::stop_signal().await;
            tracing::info!("stopping: finishing requests and deliveries in progress");
            handle.stop(true).await;
        });
        let served = self.server.await;
        let _ = shutdown.send(true);
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        served.context("running the web server")
    }
}
