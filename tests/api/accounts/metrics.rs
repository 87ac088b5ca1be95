//! `/metrics`: a token with `metrics:read` on the public listener (never anonymous there), or no
//! token on the separate `IRIA_METRICS_LISTEN` address, which serves nothing else.

use iria_news::foundation::access::Scope;

use super::scopes::{assert_refused_for, token_with};
use crate::helpers::{spawn_app, spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

async fn get_metrics(app: &TestApp, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("GET /metrics")
}

/// Asserts a 200 in Prometheus' text format with the application's metrics.
async fn assert_prometheus(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 200, "{what}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{what}: {content_type}"
    );
    let body = response.text().await.expect("body");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "iria_queue_depth"),
        "{what}: {body}"
    );
}

async fn metrics_need_a_token_with_metrics_read(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let url = format!("{}/metrics", app.address);
    for token in [None, Some("iria_not-a-real-token")] {
        let response = get_metrics(&app, &url, token).await;
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body = response.text().await.expect("body");
        assert!(!body.contains("iria_queue_depth"), "{body}");
    }
    let others: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|s| *s != Scope::MetricsRead)
        .collect();
    let without = token_with(&app, "everything-else", &others);
    let response = get_metrics(&app, &url, Some(&without)).await;
    assert_refused_for(
        response,
        Scope::MetricsRead,
        "/metrics without metrics:read",
    )
    .await;
    let scraper = token_with(&app, "scraper", &[Scope::MetricsRead]);
    assert_prometheus(
        get_metrics(&app, &url, Some(&scraper)).await,
        "metrics:read",
    )
    .await;
    // The scraper's token opens nothing else.
    let response = app
        .client
        .get(format!("{}/api/v1/subscribers", app.address))
        .bearer_auth(&scraper)
        .send()
        .await
        .expect("GET");
    assert_refused_for(response, Scope::SubscribersRead, "a scraper's token").await;
}
on_both_backends!(
    metrics_need_a_token_with_metrics_read,
    super::metrics_need_a_token_with_metrics_read
);

/// A free port on loopback (bound and released: the app binds it again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn the_metrics_listener_serves_metrics_without_a_token_and_nothing_else(backend: Backend) {
    let port = free_port();
    let options = AppOptions {
        env: vec![("IRIA_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let private = format!("http://127.0.0.1:{port}");
    assert_prometheus(
        get_metrics(&app, &format!("{private}/metrics"), None).await,
        "IRIA_METRICS_LISTEN without a token",
    )
    .await;
    // Only /metrics there: not the site, the API or the console.
    for path in ["/", "/health", "/api/v1/subscribers", "/admin/login"] {
        let response = app
            .client
            .get(format!("{private}{path}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 404, "{path} on the metrics listener");
    }
    // The public listener still refuses an anonymous scrape.
    let response = get_metrics(&app, &format!("{}/metrics", app.address), None).await;
    assert_eq!(response.status(), 401);
}
on_both_backends!(
    the_metrics_listener_serves_metrics_without_a_token_and_nothing_else,
    super::the_metrics_listener_serves_metrics_without_a_token_and_nothing_else
);
