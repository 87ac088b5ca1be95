//! `POST /api/v1/articles`: the site's CMS pushes an article as JSON.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{plain_text, sanitize, NewArticle, Source};
use crate::api::problem;
use crate::db;
use crate::web::AppState;

/// The JSON body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleIn {
    /// The CMS's own id; the link when absent.
    pub guid: Option<String>,
    #[schema(pattern = r"^https?://[^\s/]+\.[^\s]+$")]
    pub link: String,
    #[schema(min_length = 1, max_length = 300, pattern = r"\S")]
    pub title: String,
    #[serde(default)]
    pub summary: Option<String>,
    /// HTML; sanitised.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub image_credit: Option<String>,
    /// RFC 3339; now when absent.
    #[serde(default)]
    pub published_at: Option<String>,
}

impl ArticleIn {
    /// Checks the article; the error names the field.
    pub fn check(self) -> Result<NewArticle, String> {
        let texts = [
            self.guid.as_deref(),
            Some(self.link.as_str()),
            Some(self.title.as_str()),
            self.summary.as_deref(),
            self.body.as_deref(),
            self.author.as_deref(),
            self.image_url.as_deref(),
            self.image_credit.as_deref(),
        ];
        if texts.iter().flatten().any(|t| t.contains('\0'))
            || self.categories.iter().any(|c| c.contains('\0'))
        {
            return Err("a field holds a NUL character".into());
        }
        let link = url::Url::parse(self.link.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or("link: an http(s) URL is needed")?
            .to_string();
        if self.title.chars().count() > 300 {
            return Err("title: at most 300 characters".into());
        }
        let title = plain_text(&self.title, 300);
        if title.is_empty() {
            return Err("title: must not be empty".into());
        }
        let published_at = match self.published_at.as_deref() {
            None => db::now(),
            Some(raw) => chrono::DateTime::parse_from_rfc3339(raw)
                .map_err(|_| format!("published_at: not an RFC 3339 time: {raw:?}"))?
                .naive_utc(),
        };
        if self.categories.len() > 20 || self.categories.iter().any(|c| c.chars().count() > 64) {
            return Err("categories: at most 20, each at most 64 characters".into());
        }
        let image_url = match self.image_url {
            None => None,
            Some(u) => Some(
                url::Url::parse(u.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or("image_url: an http(s) URL is needed")?
                    .to_string(),
            ),
        };
        let body = self.body.as_deref().map(sanitize).unwrap_or_default();
        let summary = plain_text(&sanitize(self.summary.as_deref().unwrap_or(&body)), 600);
        Ok(NewArticle {
            guid: self
                .guid
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| link.clone()),
            link,
            title,
            summary,
            body,
            author: self
                .author
                .map(|a| plain_text(&a, 200))
                .filter(|a| !a.is_empty()),
            categories: self
                .categories
                .iter()
                .map(|c| c.replace(',', " ").trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
            image_url,
            image_credit: self
                .image_credit
                .map(|c| plain_text(&c, 200))
                .filter(|c| !c.is_empty()),
            published_at,
        })
    }
}

/// `POST /api/v1/articles`: 201 for a new article, 200 for an update (or no change).
pub async fn push(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let input: ArticleIn = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "Invalid JSON", &e.to_string()),
    };
    let article = match input.check() {
        Ok(a) => a,
        Err(why) => return problem(StatusCode::UNPROCESSABLE_ENTITY, "Invalid article", &why),
    };
    let guid = article.guid.clone();
    match db::run(&state.pool, move |conn| {
        Ok(super::upsert(conn, &[article], Source::Api)?)
    })
    .await
    {
        Ok(done) => {
            let status = if done.new > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            HttpResponse::build(status).json(serde_json::json!({ "guid": guid, "result": done }))
        }
        Err(e) if e.is_unavailable() => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "Try again shortly.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing an article failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "See the server log.",
            )
        }
    }
}
