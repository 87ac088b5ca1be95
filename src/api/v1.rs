//! The editors' JSON API: subscribers, articles, issues and the digest, behind bearer tokens.
//!
//! Every route is declared once in [`ROUTES`] (which registers it and lets the tests walk the
//! table) and described by [`ApiDoc`], served at `/api/v1/openapi.json`; a test checks that the
//! two list the same routes. Errors are RFC 9457 problem details, extractor errors included.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::problem;
use crate::db::{self, DbError};
use crate::domain::{SubscriberEmail, SubscriberName, Topics};
use crate::issues::{self, Draft, IssueError, Kind, When};
use crate::subscriptions::directory::{self, Added, Filter, ImportOptions};
use crate::subscriptions::records;
use crate::web::AppState;

/// Declares the API's routes: the table the tests walk and the function that registers it.
macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path ),* $(,)?) => {
        /// Every route of the API: (method, path).
        pub const ROUTES: &[(&str, &str)] = &[ $( (stringify!($method), concat!("/api/v1", $path)) ),* ];

        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }
    };
}

route_table! {
    get "/openapi.json" => openapi,
    get "/subscribers" => list_subscribers,
    post "/subscribers" => create_subscriber,
    get "/subscribers/{id}" => get_subscriber,
    delete "/subscribers/{id}" => erase_subscriber,
    post "/subscribers/{id}/unsubscribe" => unsubscribe_subscriber,
    get "/articles" => list_articles,
    post "/articles" => push_article,
    get "/articles/{id}" => get_article,
    patch "/articles/{id}" => patch_article,
    get "/issues" => list_issues,
    post "/issues" => create_issue,
    get "/issues/{id}" => get_issue,
    post "/issues/{id}/send" => send_issue,
    get "/digest/preview" => digest_preview,
    post "/digest/run" => digest_run,
    post "/bounces" => receive_bounce,
}

/// Paths open without a token.
pub const PUBLIC: &[&str] = &["/api/v1/openapi.json"];

/// The `/api/v1` scope: its routes behind the token check, problem details for every error.
pub fn scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/api/v1")
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::bad(StatusCode::BAD_REQUEST, "Invalid query", &e.to_string()).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
        .app_data(
            web::JsonConfig::default()
                .limit(crate::web::MAX_BODY_BYTES)
                .error_handler(|e, _| {
                    let status = match &e {
                        actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                        | actix_web::error::JsonPayloadError::Overflow { .. } => {
                            StatusCode::PAYLOAD_TOO_LARGE
                        }
                        actix_web::error::JsonPayloadError::ContentType => {
                            StatusCode::UNSUPPORTED_MEDIA_TYPE
                        }
                        actix_web::error::JsonPayloadError::Deserialize(d) if d.is_data() => {
                            StatusCode::UNPROCESSABLE_ENTITY
                        }
                        _ => StatusCode::BAD_REQUEST,
                    };
                    ApiError::bad(status, "Invalid body", &e.to_string()).into()
                }),
        )
        .configure(register)
        .default_service(web::to(unrouted))
        .wrap(actix_web::middleware::from_fn(require_token))
}

/// Whether a route's path (with `{name}` segments) matches a request path.
fn path_matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') || a == b => {}
            _ => return false,
        }
    }
}

/// No route took the request: 405 with `Allow` when the path is known with other methods, 404
/// otherwise.
async fn unrouted(req: HttpRequest) -> HttpResponse {
    let allowed: Vec<String> = ROUTES
        .iter()
        .filter(|(_, pattern)| path_matches(pattern, req.path()))
        .map(|(method, _)| method.to_uppercase())
        .collect();
    if allowed.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such route in this API; see /api/v1/openapi.json.",
        );
    }
    let mut response = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        &format!("This route takes {}.", allowed.join(", ")),
    );
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// The name of the token a request was made with.
#[derive(Clone, Debug)]
pub struct TokenName(pub String);

/// "token NAME", as records of who did what name an API client.
fn token_name(req: &HttpRequest) -> String {
    format!(
        "token {}",
        req.extensions()
            .get::<TokenName>()
            .map(|t| t.0.clone())
            .unwrap_or_default()
    )
}

async fn require_token(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if PUBLIC.contains(&req.path()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError("no state"));
    };
    match super::authenticate(&state, req.request()).await {
        Ok(name) => {
            req.extensions_mut().insert(TokenName(name));
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(response) => Ok(req.into_response(response)),
    }
}

/// An RFC 9457 problem details body.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("{title}: {detail}")]
    Bad {
        status: StatusCode,
        title: String,
        detail: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ApiError {
    fn bad(status: StatusCode, title: &str, detail: &str) -> Self {
        ApiError::Bad {
            status,
            title: title.into(),
            detail: detail.into(),
        }
    }

    fn invalid(detail: impl Into<String>) -> Self {
        ApiError::Bad {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            title: "Invalid input".into(),
            detail: detail.into(),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::Db(DbError::Query(e))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Bad { status, .. } => *status,
            ApiError::Db(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::NotFound => problem(StatusCode::NOT_FOUND, "Not found", "No such resource."),
            ApiError::Bad {
                status,
                title,
                detail,
            } => problem(*status, title, detail),
            ApiError::Db(e) if e.is_unavailable() => {
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable",
                    "The database cannot be reached; try again shortly.",
                );
                r.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static("30"),
                );
                r
            }
            ApiError::Db(e) => {
                tracing::error!(error = %e, "an API call failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "See the server log.",
                )
            }
        }
    }
}

type Answer = Result<HttpResponse, ApiError>;

async fn run<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut db::DbConnection) -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    Ok(db::run(&state.pool, f).await?)
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

fn id_of(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound)
}

fn topics_of(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Subscribers

/// A subscriber.
#[derive(Serialize, ToSchema)]
pub struct Subscriber {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    /// pending, confirmed, unsubscribed, bounced or complained.
    pub status: String,
    /// The topics chosen; empty means all.
    pub topics: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub erased_at: Option<DateTime<Utc>>,
}

impl From<records::SubscriberRecord> for Subscriber {
    fn from(r: records::SubscriberRecord) -> Self {
        Self {
            id: r.id,
            email: r.email,
            name: r.name,
            status: r.status,
            topics: topics_of(&r.topics),
            created_at: utc(r.created_at),
            confirmed_at: r.confirmed_at.map(utc),
            unsubscribed_at: r.unsubscribed_at.map(utc),
            erased_at: r.erased_at.map(utc),
        }
    }
}

/// One consent record: a sign-up or an import.
#[derive(Serialize, ToSchema)]
pub struct Consent {
    pub requested_at: DateTime<Utc>,
    pub source: String,
    pub ip: String,
    pub user_agent: String,
    pub consent_text_version: String,
    pub topics: Vec<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

/// A subscriber with their consent records.
#[derive(Serialize, ToSchema)]
pub struct SubscriberDetail {
    #[serde(flatten)]
    pub subscriber: Subscriber,
    pub consents: Vec<Consent>,
}

/// A page of subscribers.
#[derive(Serialize, ToSchema)]
pub struct SubscriberList {
    /// How many match the filter in all.
    pub total: i64,
    pub items: Vec<Subscriber>,
}

/// Filters and paging of the subscriber list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriberQuery {
    /// Part of an address or a name.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// One status.
    pub status: Option<SubscriberStatus>,
    /// One of the site's topics.
    pub topic: Option<String>,
    /// At most this many (1 to 500; 50 when absent).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Skip this many.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<i64>,
}

/// A subscriber's status.
#[derive(Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberStatus {
    Pending,
    Confirmed,
    Unsubscribed,
    Bounced,
    Complained,
}

impl SubscriberStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }
}

/// The largest offset a page may start at.
const MAX_OFFSET: i64 = 1_000_000_000;

fn bad_query(detail: &str) -> ApiError {
    ApiError::bad(StatusCode::BAD_REQUEST, "Invalid query", detail)
}

fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    if !(1..=500).contains(&limit) {
        return Err(bad_query("limit: 1 to 500"));
    }
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(bad_query("offset: 0 to 1000000000"));
    }
    Ok((limit, offset))
}

/// List and search subscribers.
#[utoipa::path(get, path = "/api/v1/subscribers", tag = "subscribers", params(SubscriberQuery),
    responses((status = 200, body = SubscriberList), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list_subscribers(
    state: web::Data<AppState>,
    q: web::Query<SubscriberQuery>,
) -> Answer {
    let (limit, offset) = paging(q.limit, q.offset)?;
    if q.q.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(bad_query("q: at most 200 characters"));
    }
    if let Some(topic) = q
        .topic
        .as_ref()
        .filter(|t| !state.settings.topics.contains(t))
    {
        let shown: String = topic.chars().take(40).collect();
        return Err(bad_query(&format!(
            "topic: {shown:?} is not one of the site's topics"
        )));
    }
    let filter = Filter {
        text: q.q.clone().unwrap_or_default(),
        status: q.status.map(|s| s.as_str().to_string()),
        topic: q.topic.clone().filter(|t| !t.is_empty()),
    };
    let (rows, total) = run(&state, move |conn| {
        Ok((
            directory::search(conn, &filter, limit, offset)?,
            directory::count(conn, &filter)?,
        ))
    })
    .await?;
    Ok(HttpResponse::Ok().json(SubscriberList {
        total,
        items: rows.into_iter().map(Subscriber::from).collect(),
    }))
}

/// How an added subscriber's consent stands.
#[derive(Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Send a confirmation email; the subscriber joins on confirming.
    #[default]
    Confirm,
    /// The editors hold consent already (kept with `source`): confirmed at once, no email.
    Held,
}

/// A subscriber added by an editor.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscriber {
    #[schema(format = Email, max_length = 254, pattern = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")]
    pub email: String,
    pub name: Option<String>,
    /// Of the site's topics; empty or absent means all.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub consent: ConsentMode,
    /// Where the address and its consent come from; kept with the consent record.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub source: String,
}

/// Add a subscriber: a confirmation email goes out unless consent is held. An address on file
/// is left as it is (409).
#[utoipa::path(post, path = "/api/v1/subscribers", tag = "subscribers", request_body = NewSubscriber,
    responses((status = 201, body = SubscriberDetail), (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_subscriber(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewSubscriber>,
) -> Answer {
    let body = body.into_inner();
    let email = SubscriberEmail::parse(&body.email)
        .map_err(|e| ApiError::invalid(format!("email: {e}")))?;
    let name = SubscriberName::parse(body.name.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::invalid(format!("name: {e}")))?;
    let topics = Topics::parse(&body.topics, &state.settings.topics)
        .map_err(|e| ApiError::invalid(format!("topics: {e}")))?;
    let source = body.source.trim().to_string();
    if source.chars().count() > 200 {
        return Err(ApiError::invalid("source: at most 200 characters"));
    }
    if source.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "source: one line of text, no control characters",
        ));
    }
    if source.is_empty() {
        return Err(ApiError::invalid(
            "source: say where the address comes from",
        ));
    }
    let options = ImportOptions {
        consent_held: body.consent == ConsentMode::Held,
        source,
        editor: token_name(&req),
    };
    let settings = state.settings.clone();
    let added = run(&state, move |conn| {
        directory::add(conn, &settings, email, name, topics, &options)
    })
    .await?;
    let id = match added {
        Added::Existing(id, status, _) => {
            return Err(ApiError::bad(
                StatusCode::CONFLICT,
                "Already on file",
                &format!("subscriber {id} has this address (status {status}); it is left as it is"),
            ))
        }
        Added::Invited(id) => {
            state.wake.notify_waiters();
            id
        }
        Added::Confirmed(id) => id,
    };
    let detail = subscriber_detail(&state, id).await?;
    Ok(HttpResponse::Created().json(detail))
}

async fn subscriber_detail(state: &AppState, id: i64) -> Result<SubscriberDetail, ApiError> {
    let (record, consents) = run(state, move |conn| {
        Ok((records::find(conn, id)?, directory::consents_of(conn, id)?))
    })
    .await?;
    let record = record.ok_or(ApiError::NotFound)?;
    if record.is_erased() {
        return Err(ApiError::bad(
            StatusCode::GONE,
            "Erased",
            "This subscriber's personal data was erased.",
        ));
    }
    Ok(SubscriberDetail {
        subscriber: record.into(),
        consents: consents
            .into_iter()
            .map(|c| Consent {
                requested_at: utc(c.requested_at),
                source: c.source,
                ip: c.ip,
                user_agent: c.user_agent,
                consent_text_version: c.consent_text_version,
                topics: topics_of(&c.topics),
                confirmed_at: c.confirmed_at.map(utc),
            })
            .collect(),
    })
}

/// One subscriber with their consent records.
#[utoipa::path(get, path = "/api/v1/subscribers/{id}", tag = "subscribers", params(("id" = i64, Path)),
    responses((status = 200, body = SubscriberDetail), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 410, description = "Erased", body = Problem, content_type = "application/problem+json")))]
pub async fn get_subscriber(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    Ok(HttpResponse::Ok().json(subscriber_detail(&state, id).await?))
}

/// Unsubscribe at once; whatever is queued for them is skipped.
#[utoipa::path(post, path = "/api/v1/subscribers/{id}/unsubscribe", tag = "subscribers", params(("id" = i64, Path)),
    responses((status = 200, body = SubscriberDetail), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 410, description = "Erased", body = Problem, content_type = "application/problem+json")))]
pub async fn unsubscribe_subscriber(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = id_of(&path)?;
    let via = format!("api {}", token_name(&req));
    let found = run(&state, move |conn| {
        match records::find(conn, id)? {
            None => return Ok(None),
            Some(r) if r.is_erased() => return Ok(Some(false)),
            Some(_) => {}
        }
        records::unsubscribe(conn, id, &via)?;
        Ok(Some(true))
    })
    .await?;
    match found {
        None => return Err(ApiError::NotFound),
        Some(false) => {
            return Err(ApiError::bad(
                StatusCode::GONE,
                "Erased",
                "This subscriber's personal data was erased.",
            ))
        }
        Some(true) => {}
    }
    Ok(HttpResponse::Ok().json(subscriber_detail(&state, id).await?))
}

/// Erase a subscriber's personal data (the row stays, without it, so that counts add up).
#[utoipa::path(delete, path = "/api/v1/subscribers/{id}", tag = "subscribers", params(("id" = i64, Path)),
    responses((status = 204, description = "Erased"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn erase_subscriber(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    if run(&state, move |conn| records::erase(conn, id)).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

// ---------------------------------------------------------------------------------------------
// Articles

/// An article in the store.
#[derive(Serialize, ToSchema)]
pub struct ArticleOut {
    pub id: i64,
    pub guid: String,
    pub link: String,
    pub title: String,
    pub summary: String,
    pub author: Option<String>,
    pub categories: Vec<String>,
    pub image_url: Option<String>,
    pub image_credit: Option<String>,
    pub published_at: DateTime<Utc>,
    /// feed, api or admin.
    pub source: String,
    /// Kept out of the digest by an editor.
    pub excluded: bool,
    /// The digest that carried it, if any.
    pub digest_id: Option<i64>,
}

impl From<crate::articles::Article> for ArticleOut {
    fn from(a: crate::articles::Article) -> Self {
        Self {
            categories: a.category_list().iter().map(|c| c.to_string()).collect(),
            id: a.id,
            guid: a.guid,
            link: a.link,
            title: a.title,
            summary: a.summary,
            author: a.author,
            image_url: a.image_url,
            image_credit: a.image_credit,
            published_at: utc(a.published_at),
            source: a.source,
            excluded: a.excluded != 0,
            digest_id: a.digest_id,
        }
    }
}

/// A page of articles.
#[derive(Serialize, ToSchema)]
pub struct ArticleList {
    pub total: i64,
    pub items: Vec<ArticleOut>,
}

/// Paging.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many (1 to 500; 50 when absent).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Skip this many.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<i64>,
}

/// The latest articles by publication date.
#[utoipa::path(get, path = "/api/v1/articles", tag = "articles", params(PageQuery),
    responses((status = 200, body = ArticleList), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list_articles(state: web::Data<AppState>, q: web::Query<PageQuery>) -> Answer {
    let (limit, offset) = paging(q.limit, q.offset)?;
    let (rows, total) = run(&state, move |conn| {
        Ok((
            crate::articles::latest(conn, limit, offset)?,
            crate::articles::count(conn)?,
        ))
    })
    .await?;
    Ok(HttpResponse::Ok().json(ArticleList {
        total,
        items: rows.into_iter().map(ArticleOut::from).collect(),
    }))
}

/// What a push did.
#[derive(Serialize, ToSchema)]
pub struct PushResult {
    pub guid: String,
    pub result: PushCounts,
}

/// Counts of a push: one of them is 1.
#[derive(Serialize, ToSchema)]
pub struct PushCounts {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Add or update an article (the CMS's push): 201 when new, 200 when known.
#[utoipa::path(post, path = "/api/v1/articles", tag = "articles", request_body = crate::articles::api::ArticleIn,
    responses((status = 201, body = PushResult), (status = 200, body = PushResult), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn push_article(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    crate::articles::api::push(state, body).await
}

/// One article.
#[utoipa::path(get, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = i64, Path)),
    responses((status = 200, body = ArticleOut), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_article(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    let article = run(&state, move |conn| Ok(crate::articles::find(conn, id)?))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ArticleOut::from(article)))
}

/// What an editor may change of an article here.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticlePatch {
    /// Keep it out of the digest (true) or put it back (false).
    pub excluded: bool,
}

/// Keep an article out of the digest, or put it back.
#[utoipa::path(patch, path = "/api/v1/articles/{id}", tag = "articles", params(("id" = i64, Path)), request_body = ArticlePatch,
    responses((status = 200, body = ArticleOut), (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_article(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ArticlePatch>,
) -> Answer {
    let id = id_of(&path)?;
    let excluded = body.excluded;
    let article = run(&state, move |conn| {
        crate::articles::set_excluded(conn, id, excluded)?;
        Ok(crate::articles::find(conn, id)?)
    })
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ArticleOut::from(article)))
}

// ---------------------------------------------------------------------------------------------
// Issues

/// An issue: an editor's announcement or a digest.
#[derive(Serialize, ToSchema)]
pub struct Issue {
    pub id: i64,
    /// announcement or digest.
    pub kind: String,
    pub subject: String,
    /// draft (see `send_at`) or queued.
    pub status: String,
    /// Recipients queued so far.
    pub recipients: i32,
    /// The audience's topics; empty means everyone.
    pub topics: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    /// When a scheduled draft goes out.
    pub send_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub progress: crate::delivery::Progress,
}

impl Issue {
    fn of(s: issues::Summary, counts: &[(Option<i64>, String, i64)]) -> Self {
        let progress = crate::delivery::Progress::of(s.id, counts);
        Self {
            id: s.id,
            kind: s.kind,
            subject: s.subject,
            status: s.status,
            recipients: s.recipients,
            topics: topics_of(&s.topics),
            created_at: utc(s.created_at),
            queued_at: s.queued_at.map(utc),
            send_at: s.send_at.map(utc),
            created_by: s.created_by,
            progress,
        }
    }
}

/// A page of issues, newest first.
#[derive(Serialize, ToSchema)]
pub struct IssueList {
    pub items: Vec<Issue>,
}

/// The latest issues.
#[utoipa::path(get, path = "/api/v1/issues", tag = "issues", params(PageQuery),
    responses((status = 200, body = IssueList), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list_issues(state: web::Data<AppState>, q: web::Query<PageQuery>) -> Answer {
    let (limit, offset) = paging(q.limit, q.offset)?;
    let items = run(&state, move |conn| {
        let latest = issues::latest(conn, limit, offset)?;
        let ids: Vec<i64> = latest.iter().map(|s| s.id).collect();
        let counts = crate::delivery::progress_of(conn, &ids)?;
        Ok(latest.into_iter().map(|s| Issue::of(s, &counts)).collect())
    })
    .await?;
    Ok(HttpResponse::Ok().json(IssueList { items }))
}

/// The longest body an issue takes through the API.
const MAX_BODY_CHARS: usize = 60_000;

/// The body's format.
#[derive(Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Markdown,
    Html,
}

/// A new issue. With an `Idempotency-Key` header, sending the same request again returns the
/// issue the first one made and sends nothing more.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIssue {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub subject: String,
    #[serde(default)]
    pub preheader: String,
    /// Markdown or HTML (see `format`); sanitised either way.
    #[schema(min_length = 1, max_length = 60000)]
    pub body: String,
    #[serde(default)]
    pub format: Format,
    /// Of the site's topics; empty or absent means everyone.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Send now (true) or keep as a draft (false, the default) unless `send_at` is given.
    #[serde(default)]
    pub send: bool,
    /// Send at this time (RFC 3339, in the future): the issue waits as a scheduled draft.
    pub send_at: Option<DateTime<Utc>>,
}

/// Create an issue: a draft, a scheduled draft, or sent at once.
#[utoipa::path(post, path = "/api/v1/issues", tag = "issues", request_body = NewIssue,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeated request return the first one's issue")),
    responses((status = 201, body = Issue), (status = 200, description = "The issue an earlier request with this Idempotency-Key made", body = Issue),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_issue(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewIssue>,
) -> Answer {
    let body = body.into_inner();
    if body.body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::invalid(format!(
            "body: at most {MAX_BODY_CHARS} characters"
        )));
    }
    if let Some(unknown) = body
        .topics
        .iter()
        .find(|t| !state.settings.topics.contains(t))
    {
        let shown: String = unknown.chars().take(40).collect();
        return Err(ApiError::invalid(format!(
            "topics: {shown:?} is not one of the site's topics"
        )));
    }
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if key.is_some_and(|k| k.len() > 100) {
        return Err(ApiError::invalid("Idempotency-Key: at most 100 characters"));
    }
    let when = match (body.send_at, body.send) {
        (Some(at), _) if at <= Utc::now() => {
            return Err(ApiError::invalid("send_at: the time is in the past"))
        }
        (Some(at), _) => When::At(at.naive_utc()),
        (None, true) => When::Now,
        (None, false) => When::Later,
    };
    let draft = Draft {
        kind: Kind::Announcement,
        subject: body.subject,
        preheader: body.preheader,
        body_html: issues::body_html(&body.body, body.format == Format::Markdown),
        body_text: None,
        topics: body.topics,
        period_key: None,
        // Namespaced, so that an API key never meets a console form's key.
        idempotency_key: key.map(|k| format!("api:{k}")),
    };
    let by = token_name(&req);
    let settings = state.settings.clone();
    let made = run(&state, move |conn| {
        Ok(issues::create(conn, &settings, &draft, when, Some(&by)))
    })
    .await?;
    let queued = match made {
        Ok(q) => q,
        Err(IssueError::Db(e)) => return Err(ApiError::Db(e)),
        Err(e) => return Err(ApiError::invalid(e.to_string())),
    };
    if queued.created && when == When::Now {
        state.wake.notify_waiters();
    }
    let issue = issue(&state, queued.issue_id).await?;
    Ok(if queued.created {
        HttpResponse::Created().json(issue)
    } else {
        HttpResponse::Ok().json(issue)
    })
}

async fn issue(state: &AppState, id: i64) -> Result<Issue, ApiError> {
    let (summary, counts) = run(state, move |conn| {
        Ok((
            issues::summary(conn, id)?,
            crate::delivery::progress_of(conn, &[id])?,
        ))
    })
    .await?;
    Ok(Issue::of(summary.ok_or(ApiError::NotFound)?, &counts))
}

/// One issue and how far it has gone out.
#[utoipa::path(get, path = "/api/v1/issues/{id}", tag = "issues", params(("id" = i64, Path)),
    responses((status = 200, body = Issue), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_issue(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    Ok(HttpResponse::Ok().json(issue(&state, id).await?))
}

/// Send a draft (or a scheduled one) now. A second call does nothing more (409).
#[utoipa::path(post, path = "/api/v1/issues/{id}/send", tag = "issues", params(("id" = i64, Path)),
    responses((status = 200, body = Issue), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn send_issue(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    // send_draft takes only a draft, in one update: the check and the send cannot be split.
    let queued = run(&state, move |conn| Ok(issues::send_draft(conn, id)?)).await?;
    // Unknown (404) or not a draft (409): `issue` tells which.
    let current = issue(&state, id).await?;
    if queued.is_none() {
        return Err(ApiError::bad(
            StatusCode::CONFLICT,
            "Not a draft",
            "This issue is queued already; nothing more was sent.",
        ));
    }
    state.wake.notify_waiters();
    Ok(HttpResponse::Ok().json(current))
}

// ---------------------------------------------------------------------------------------------
// The digest

/// The coming digest.
#[derive(Serialize, ToSchema)]
pub struct DigestPreview {
    /// When it is scheduled, if the schedule has a next time.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Whether it was made (or skipped) already.
    pub done: bool,
    pub articles: Vec<ArticleOut>,
    /// As a reader of all topics gets it; absent when there is no article.
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// What the coming digest holds, as a reader of all topics would get it now.
#[utoipa::path(get, path = "/api/v1/digest/preview", tag = "digest",
    responses((status = 200, body = DigestPreview), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn digest_preview(state: web::Data<AppState>) -> Answer {
    let settings = state.settings.clone();
    let next = settings.schedule.next(Utc::now());
    let key = next.map(|n| settings.schedule.period_key(n));
    let (plan, composed, done) = run(&state, move |conn| {
        let now = db::now();
        let plan = crate::digest::plan(conn, "preview", now)?;
        let composed = crate::digest::preview(conn, &settings, now).map_err(|e| match e {
            IssueError::Db(e) => e,
            other => DbError::Other(other.to_string()),
        })?;
        let done = match &key {
            Some(k) => crate::digest::is_done(conn, k)?,
            None => false,
        };
        Ok((plan, composed, done))
    })
    .await?;
    Ok(HttpResponse::Ok().json(DigestPreview {
        scheduled_for: next,
        done,
        articles: plan.articles.into_iter().map(ArticleOut::from).collect(),
        subject: composed.as_ref().map(|c| c.subject.clone()),
        html: composed.as_ref().map(|c| c.html.clone()),
        text: composed.map(|c| c.text),
    }))
}

/// Options of a digest run.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Say what would be sent; send nothing.
    pub dry_run: Option<bool>,
}

/// What a digest run did.
#[derive(Serialize, ToSchema)]
pub struct DigestRun {
    /// queued, already_done, no_articles or dry_run.
    pub outcome: String,
    pub period_key: String,
    pub articles: usize,
    /// The issues queued, one per audience.
    pub issues: Vec<QueuedIssue>,
    /// In words.
    pub summary: String,
}

/// One issue a digest run queued.
#[derive(Serialize, ToSchema)]
pub struct QueuedIssue {
    pub issue_id: i64,
    pub recipients: usize,
}

/// Make and send the coming digest now (its scheduled run then finds it done: once a week).
#[utoipa::path(post, path = "/api/v1/digest/run", tag = "digest", params(RunQuery),
    responses((status = 200, body = DigestRun), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn digest_run(state: web::Data<AppState>, q: web::Query<RunQuery>) -> Answer {
    let settings = state.settings.clone();
    let Some(next) = settings.schedule.next(Utc::now()) else {
        return Err(ApiError::bad(
            StatusCode::CONFLICT,
            "No schedule",
            "The digest schedule has no next time.",
        ));
    };
    let key = settings.schedule.period_key(next);
    let dry_run = q.dry_run.unwrap_or(false);
    let period_key = key.clone();
    let outcome = run(&state, move |conn| {
        crate::digest::run(conn, &settings, &key, db::now(), dry_run).map_err(|e| match e {
            IssueError::Db(e) => e,
            other => DbError::Other(other.to_string()),
        })
    })
    .await?;
    use crate::digest::Outcome;
    let summary = outcome.to_string();
    let (name, articles, issues) = match outcome {
        Outcome::Queued {
            articles, issues, ..
        } => {
            state.wake.notify_waiters();
            let issues = issues
                .into_iter()
                .map(|(issue_id, recipients)| QueuedIssue {
                    issue_id,
                    recipients,
                })
                .collect();
            ("queued", articles, issues)
        }
        Outcome::AlreadyDone { .. } => ("already_done", 0, vec![]),
        Outcome::NoArticles => ("no_articles", 0, vec![]),
        Outcome::DryRun { articles, .. } => ("dry_run", articles, vec![]),
    };
    Ok(HttpResponse::Ok().json(DigestRun {
        outcome: name.into(),
        period_key,
        articles,
        issues,
        summary,
    }))
}

// ---------------------------------------------------------------------------------------------
// Bounces and the document

/// Report a bounce (RFC 3464 DSN) or a complaint (RFC 5965 ARF), as the raw message.
#[utoipa::path(post, path = "/api/v1/bounces", tag = "deliverability",
    request_body(content((String = "message/rfc822"), (String = "text/plain"))),
    responses((status = 200, description = "Applied", body = Object), (status = 202, description = "A report about nobody of ours", body = Object),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn receive_bounce(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    super::bounces::receive(state, body).await
}

/// Bearer tokens, made with `iria-news admin create-token NAME`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "IRIA News API", version = "1", description = "Subscribers, articles, issues and the weekly digest of IRIA News. Every route but this document needs `Authorization: Bearer <token>`; errors are RFC 9457 problem details."),
    paths(
        list_subscribers, create_subscriber, get_subscriber, erase_subscriber, unsubscribe_subscriber,
        list_articles, push_article, get_article, patch_article,
        list_issues, create_issue, get_issue, send_issue,
        digest_preview, digest_run, receive_bounce, openapi,
    ),
    components(schemas(Problem, SubscriberStatus)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// This document, with the site's topics filled in where a topic is asked for.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(&state.settings.topics))
}

/// The OpenAPI document of this installation: [`ApiDoc`] with the configured topics as the
/// allowed values of every topic.
pub fn document(topics: &[String]) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let allowed = serde_json::json!(topics);
    for schema in ["NewIssue", "NewSubscriber"] {
        if let Some(items) = doc.pointer_mut(&format!(
            "/components/schemas/{schema}/properties/topics/items"
        )) {
            items["enum"] = allowed.clone();
        }
    }
    if let Some(params) = doc.pointer_mut("/paths/~1api~1v1~1subscribers/get/parameters") {
        for p in params.as_array_mut().into_iter().flatten() {
            if p["name"] == "topic" {
                p["schema"] = serde_json::json!({"type": "string", "enum": allowed});
            }
        }
    }
    doc
}
