//! `/api/v1/subscribers`: the subscriber list, adding one (with or without a confirmation
//! email), one subscriber with their consent records, unsubscribing and erasing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{bad_query, id_of, paging, run, token_name, topics_of, utc, Answer, ApiError, Problem};
use crate::foundation::config::ClickTracking;
use crate::foundation::domain::{SubscriberEmail, SubscriberName, SubscriberStatus, Topics};
use crate::http::state::AppState;
use crate::stores::engagement::MAX_INACTIVE_DIGESTS;
use crate::stores::subscriptions::directory::{
    self, Added, Counting, Filter, ImportOptions, Window,
};
use crate::stores::subscriptions::records;

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
    /// How many match the filter in all, exactly (clients page with `offset` until they reach
    /// it; the console, which only shows the number, counts up to 10,000).
    pub total: i64,
    /// Whether rows past this page match (`offset` + this page's rows < `total`).
    pub more: bool,
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
    /// Only the inactive readers: confirmed, sent each of the last N digests, and no click on
    /// any of them (1 to 52). Only with `IRIA_CLICK_TRACKING=personal`; 400 otherwise.
    #[param(minimum = 1, maximum = 52)]
    pub inactive_digests: Option<u32>,
}

/// List and search subscribers.
#[utoipa::path(get, path = "/api/v1/subscribers", tag = "subscribers", security(("bearer" = ["subscribers:read"])), params(SubscriberQuery),
    responses((status = 200, body = SubscriberList), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json")))]
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
    if let Some(n) = q.inactive_digests {
        if state.settings.click_tracking != ClickTracking::Personal {
            return Err(bad_query(
                "inactive_digests: needs IRIA_CLICK_TRACKING=personal (clicks are not recorded \
                 per reader in this installation)",
            ));
        }
        if !(1..=MAX_INACTIVE_DIGESTS).contains(&n) {
            return Err(bad_query(&format!(
                "inactive_digests: from 1 to {MAX_INACTIVE_DIGESTS}"
            )));
        }
    }
    let filter = Filter {
        text: q.q.clone().unwrap_or_default(),
        status: q.status.map(|s| s.as_str().to_string()),
        topic: q.topic.clone().filter(|t| !t.is_empty()),
        inactive_digests: q.inactive_digests,
    };
    // The page and the exact count on connections of their own at once: at a million rows the
    // count reads every match (80 to 100 ms) and the page, deep in a filter, some tens of ms
    // more; the count itself may be split in parts (`directory::count_or_split`), each on its connection.
    let page_filter = filter.clone();
    let (rows, total) = futures_util::try_join!(
        run(&state, move |conn| Ok(directory::search(
            conn,
            &page_filter,
            limit,
            Window::Offset(offset)
        )?)),
        count_in_parts(&state, filter),
    )?;
    let shown = offset.saturating_add(rows.len() as i64);
    Ok(HttpResponse::Ok().json(SubscriberList {
        total,
        more: shown < total,
        items: rows.into_iter().map(Subscriber::from).collect(),
    }))
}

/// The exact number of subscribers matching `filter`, its parts counted at once when the count
/// is split ([`directory::count_or_split`]).
async fn count_in_parts(state: &AppState, filter: Filter) -> Result<i64, ApiError> {
    let whole = filter.clone();
    let parts = match run(state, move |conn| {
        Ok(directory::count_or_split(conn, &whole)?)
    })
    .await?
    {
        Counting::Counted(n) => return Ok(n),
        Counting::Parts(parts) => parts,
    };
    let counts = futures_util::future::try_join_all(parts.into_iter().map(|part| {
        let filter = filter.clone();
        run(state, move |conn| {
            Ok(directory::count_part(conn, &filter, part)?)
        })
    }))
    .await?;
    Ok(counts.into_iter().sum())
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
#[utoipa::path(post, path = "/api/v1/subscribers", tag = "subscribers", security(("bearer" = ["subscribers:write"])), request_body = NewSubscriber,
    responses((status = 201, body = SubscriberDetail), (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
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
#[utoipa::path(get, path = "/api/v1/subscribers/{id}", tag = "subscribers", security(("bearer" = ["subscribers:read"])), params(("id" = i64, Path)),
    responses((status = 200, body = SubscriberDetail), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 410, description = "Erased", body = Problem, content_type = "application/problem+json")))]
pub async fn get_subscriber(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    Ok(HttpResponse::Ok().json(subscriber_detail(&state, id).await?))
}

/// Unsubscribe at once; whatever is queued for them is skipped.
#[utoipa::path(post, path = "/api/v1/subscribers/{id}/unsubscribe", tag = "subscribers", security(("bearer" = ["subscribers:write"])), params(("id" = i64, Path)),
    responses((status = 200, body = SubscriberDetail), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 410, description = "Erased", body = Problem, content_type = "application/problem+json")))]
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
        Some(true) => {
            let detail = format!("subscriber {id}");
            super::audit::note(&state, &req, "subscriber unsubscribed", detail).await;
        }
    }
    Ok(HttpResponse::Ok().json(subscriber_detail(&state, id).await?))
}

/// Erase a subscriber's personal data (the row stays, without it, so that counts add up).
#[utoipa::path(delete, path = "/api/v1/subscribers/{id}", tag = "subscribers", security(("bearer" = ["subscribers:write"])), params(("id" = i64, Path)),
    responses((status = 204, description = "Erased"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn erase_subscriber(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = id_of(&path)?;
    let settings = state.settings.clone();
    if run(&state, move |conn| {
        records::erase(conn, id, settings.secret())
    })
    .await?
    {
        // The subscriber's id only: the log must not keep the address that was erased.
        let detail = format!("subscriber {id}");
        super::audit::note(&state, &req, "subscriber erased", detail).await;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}
