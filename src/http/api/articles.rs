//! `/api/v1/articles`: the site's CMS pushes an article as JSON; editors list the stored
//! articles, read one, and keep one out of the digest.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{id_of, paging, problem, run, utc, Answer, ApiError, PageQuery, Problem};
use crate::foundation::db;
use crate::http::state::AppState;
use crate::stores::articles::{self, plain_text, sanitize, Article, NewArticle, Source};

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
#[utoipa::path(post, path = "/api/v1/articles", tag = "articles", security(("bearer" = ["articles:write"])), request_body = ArticleIn,
    responses((status = 201, body = PushResult), (status = 200, body = PushResult), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn push_article(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
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
        Ok(articles::upsert(conn, &[article], Source::Api)?)
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

impl From<Article> for ArticleOut {
    fn from(a: Article) -> Self {
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

/// The latest articles by publication date.
#[utoipa::path(get, path = "/api/v1/articles", tag = "articles", security(("bearer" = ["articles:read"])), params(PageQuery),
    responses((status = 200, body = ArticleList), (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json")))]
pub async fn list_articles(state: web::Data<AppState>, q: web::Query<PageQuery>) -> Answer {
    let (limit, offset) = paging(q.limit, q.offset)?;
    let (rows, total) = run(&state, move |conn| {
        Ok((
            articles::latest(conn, limit, offset)?,
            articles::count(conn)?,
        ))
    })
    .await?;
    Ok(HttpResponse::Ok().json(ArticleList {
        total,
        items: rows.into_iter().map(ArticleOut::from).collect(),
    }))
}

/// One article.
#[utoipa::path(get, path = "/api/v1/articles/{id}", tag = "articles", security(("bearer" = ["articles:read"])), params(("id" = i64, Path)),
    responses((status = 200, body = ArticleOut), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_article(state: web::Data<AppState>, path: web::Path<String>) -> Answer {
    let id = id_of(&path)?;
    let article = run(&state, move |conn| Ok(articles::find(conn, id)?))
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
#[utoipa::path(patch, path = "/api/v1/articles/{id}", tag = "articles", security(("bearer" = ["articles:write"])), params(("id" = i64, Path)), request_body = ArticlePatch,
    responses((status = 200, body = ArticleOut), (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, description = "Outside the token's scopes: the problem's `scope` member names the scope needed", body = Problem, content_type = "application/problem+json"), (status = 413, description = "Larger than 64 KB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_article(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ArticlePatch>,
) -> Answer {
    let id = id_of(&path)?;
    let excluded = body.excluded;
    let article = run(&state, move |conn| {
        articles::set_excluded(conn, id, excluded)?;
        Ok(articles::find(conn, id)?)
    })
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ArticleOut::from(article)))
}
