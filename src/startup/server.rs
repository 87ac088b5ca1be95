//! Start-up of `serve`: the web server with its middleware and routes, the background tasks,
//! and this process's delivery worker.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::sync::{watch, Notify};

use crate::foundation::config::Settings;
use crate::foundation::db;
use crate::foundation::metrics::Metrics;
use crate::http::middleware::{head_and_no_store, security_headers, RequestTelemetry};
use crate::http::public::ops;
use crate::http::state::{AppState, MAX_BODY_BYTES};
use crate::http::{admin, pages};
use crate::processes::imports::ImportRunner;
use crate::processes::mail::Mailer;
use crate::processes::webhooks::WebhookWorker;
use crate::processes::worker::Worker;
use crate::startup::routes::routes;
use crate::startup::tasks;

/// A running `serve`: the web server, the delivery worker and the webhook worker of this
/// process.
pub struct Application {
    port: u16,
    server: Server,
    /// The `IRIA_METRICS_LISTEN` server: `/metrics` without a token, nothing else.
    metrics_server: Option<Server>,
    worker: Option<Worker>,
    webhooks: Option<WebhookWorker>,
    /// The CSV import runner (`IRIA_IMPORT_WORKER`).
    imports: Option<ImportRunner>,
    shutdown: watch::Sender<bool>,
    tracking: Arc<crate::processes::clicks::Tracking>,
    pool: db::Pool,
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
            upgrade_data(&mut conn, &settings)?;
        }
        let mailer = Mailer::from_settings(&settings)?;
        let dkim = crate::processes::messages::dkim_signer(&settings)?;
        let wake = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::default());
        let tracking = Arc::new(crate::processes::clicks::Tracking::new(&settings));
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            pool: pool.clone(),
            wake: wake.clone(),
            metrics: metrics.clone(),
            mailer: mailer.clone(),
            preview: Default::default(),
            figures: Default::default(),
            audiences: Default::default(),
            progress: Default::default(),
            signup_credits: Default::default(),
            tracking: tracking.clone(),
        });
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();
        let server = http_server(state.clone(), settings.clone(), listener)?;
        let metrics_server = match settings.metrics_listen {
            Some(address) => Some(metrics_server(state.clone(), address)?),
            None => None,
        };
        tasks::spawn_background(&state, &settings);
        let webhooks = if settings.webhook_delivery {
            Some(WebhookWorker::new(&settings, pool.clone())?)
        } else {
            None
        };
        let imports = settings
            .import_worker
            .then(|| ImportRunner::new(settings.clone(), pool.clone(), Some(wake.clone())));
        let mut worker = Worker::new(settings, pool.clone(), mailer, wake, dkim);
        worker.metrics = metrics;
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            port,
            server,
            metrics_server,
            worker: Some(worker),
            webhooks,
            imports,
            shutdown,
            tracking,
            pool,
        })
    }

    /// The click recorder's handle, to write the clicks handed over so far (tests).
    pub fn tracking(&self) -> Arc<crate::processes::clicks::Tracking> {
        self.tracking.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM (or the server stops): then stops taking requests, lets the
    /// ones in progress finish, and stops the delivery worker after its batch in hand and the
    /// webhook worker after its posts in flight.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let metrics = self
            .metrics_server
            .take()
            .map(|server| (server.handle(), tokio::spawn(server)));
        let worker = self
            .worker
            .take()
            .map(|w| tokio::spawn(w.run(self.shutdown.subscribe())));
        let webhooks = self
            .webhooks
            .take()
            .map(|w| tasks::spawn_webhooks(w, self.shutdown.subscribe()));
        let imports = self
            .imports
            .take()
            .map(|r| tokio::spawn(r.run(self.shutdown.subscribe())));
        let recorder = self
            .tracking
            .spawn_recorder(self.pool.clone(), self.shutdown.subscribe());
        let shutdown = self.shutdown;
        tokio::spawn(async move {
            tasks::stop_signal().await;
            tracing::info!("stopping: finishing requests and deliveries in progress");
            handle.stop(true).await;
        });
        let served = self.server.await;
        // The metrics listener stops with the server.
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        let _ = shutdown.send(true);
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        if let Some(webhooks) = webhooks {
            let _ = webhooks.await;
        }
        // An import under way is handed back after its chunk in hand.
        if let Some(imports) = imports {
            let _ = imports.await;
        }
        // The clicks of the last second are written before the process ends.
        if let Some(recorder) = recorder {
            let _ = recorder.await;
        }
        served.context("running the web server")
    }
}

/// The HTTP server on `listener`: middleware, the console's scope, the route table, and the 404
/// page for everything else.
fn http_server(
    state: web::Data<AppState>,
    settings: Arc<Settings>,
    listener: TcpListener,
) -> anyhow::Result<Server> {
    let http_workers = settings.http_workers;
    let metrics = state.metrics.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(web::FormConfig::default().limit(MAX_BODY_BYTES))
            .wrap(actix_web::middleware::from_fn(head_and_no_store))
            .wrap(security_headers(&settings))
            .wrap(RequestTelemetry {
                metrics: metrics.clone(),
            })
            .service(admin::routes::scope(&settings))
            .configure(routes)
            .default_service(web::to(pages::not_found))
    })
    .disable_signals()
    .shutdown_timeout(10);
    if http_workers > 0 {
        server = server.workers(http_workers);
    }
    Ok(server.listen(listener)?.run())
}

/// The server of the `IRIA_METRICS_LISTEN` address: `GET /metrics` without a token (for a scraper
/// on a private network), 404 for everything else. One worker is plenty.
fn metrics_server(state: web::Data<AppState>, address: SocketAddr) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(address)
        .with_context(|| format!("binding IRIA_METRICS_LISTEN {address}"))?;
    tracing::info!(%address, "serving /metrics without a token");
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(ops::open_metrics))
            .default_service(web::to(pages::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5);
    Ok(server.listen(listener)?.run())
}

/// What a migration cannot do because it needs the secret key, after the migrations: erasure
/// markers of the first versions (a plain SHA-256 of the address) become keyed ones.
pub fn upgrade_data(conn: &mut db::DbConnection, settings: &Settings) -> anyhow::Result<()> {
    let converted =
        crate::stores::subscriptions::records::upgrade_erased_markers(conn, settings.secret())
            .context("converting the erasure markers to keyed ones")?;
    if converted > 0 {
        tracing::info!(converted, "erasure markers converted to keyed hashes");
    }
    Ok(())
}
