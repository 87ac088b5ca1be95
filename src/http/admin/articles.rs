//! Articles in the console: list, add, edit, keep out of the digest.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::TimeZone;
use diesel::prelude::*;
use serde::Deserialize;

use super::{path_id, query, see_other, Answer, Chrome, Fault, NoticeQuery, PageQuery};
use crate::http::api::articles::ArticleIn;
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::articles::{self, Article, Source};

const PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "admin/articles.html")]
struct ListPage {
    chrome: Chrome,
    /// Each article with its reader clicks across the digests that carried it.
    rows: Vec<(Article, i64)>,
    page: i64,
    pages: i64,
}

/// `GET /admin/articles`.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<PageQuery>,
) -> Answer {
    let page = q.page();
    let (rows, total) = query(&state, move |conn| {
        let rows = articles::latest(conn, PAGE, (page - 1) * PAGE)?;
        let ids: Vec<i64> = rows.iter().map(|a| a.id).collect();
        let clicks = crate::stores::engagement::article_clicks(conn, &ids)?;
        let rows = rows
            .into_iter()
            .map(|a| {
                let n = clicks.get(&a.id).copied().unwrap_or(0);
                (a, n)
            })
            .collect();
        Ok((rows, articles::count(conn)?))
    })
    .await?;
    Ok(html(
        StatusCode::OK,
        &ListPage {
            chrome: Chrome::new(&state, &req, "articles"),
            rows,
            page,
            pages: ((total + PAGE - 1) / PAGE).max(1),
        },
    ))
}

/// The article form's fields.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ArticleForm {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub link: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub author: String,
    /// Separated by commas.
    #[serde(default)]
    pub categories: String,
    #[serde(default)]
    pub image_url: String,
    #[serde(default)]
    pub image_credit: String,
    /// `YYYY-MM-DDTHH:MM` in the site's time zone; now when empty.
    #[serde(default)]
    pub published_at: String,
}

impl ArticleForm {
    fn of(a: &Article, tz: chrono_tz::Tz) -> Self {
        Self {
            title: a.title.clone(),
            link: a.link.clone(),
            summary: a.summary.clone(),
            author: a.author.clone().unwrap_or_default(),
            categories: a.category_list().join(", "),
            image_url: a.image_url.clone().unwrap_or_default(),
            image_credit: a.image_credit.clone().unwrap_or_default(),
            published_at: a
                .published_at
                .and_utc()
                .with_timezone(&tz)
                .format("%Y-%m-%dT%H:%M")
                .to_string(),
        }
    }

    fn check(
        &self,
        tz: chrono_tz::Tz,
        guid: Option<String>,
    ) -> Result<articles::NewArticle, String> {
        let published_at = if self.published_at.trim().is_empty() {
            None
        } else {
            let local =
                chrono::NaiveDateTime::parse_from_str(self.published_at.trim(), "%Y-%m-%dT%H:%M")
                    .map_err(|_| "published: give a date and time".to_string())?;
            let utc = tz
                .from_local_datetime(&local)
                .earliest()
                .ok_or("published: that time does not exist in the site's time zone")?
                .with_timezone(&chrono::Utc);
            Some(utc.to_rfc3339())
        };
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        ArticleIn {
            guid,
            link: self.link.clone(),
            title: self.title.clone(),
            summary: some(&self.summary),
            body: None,
            author: some(&self.author),
            categories: self
                .categories
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
            image_url: some(&self.image_url),
            image_credit: some(&self.image_credit),
            published_at,
        }
        .check()
    }
}

#[derive(Template)]
#[template(path = "admin/article.html")]
struct EditPage<'a> {
    chrome: Chrome,
    id: Option<i64>,
    article: Option<&'a Article>,
    form: &'a ArticleForm,
    error: Option<String>,
    notice: Option<&'static str>,
}

fn tz(state: &AppState) -> chrono_tz::Tz {
    state.settings.timezone.parse().unwrap_or(chrono_tz::UTC)
}

/// `GET /admin/articles/new`.
pub async fn new_page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    html(
        StatusCode::OK,
        &EditPage {
            chrome: Chrome::new(&state, &req, "articles"),
            id: None,
            article: None,
            form: &ArticleForm::default(),
            error: None,
            notice: None,
        },
    )
}

/// `POST /admin/articles`: a new article (source `admin`).
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<ArticleForm>,
) -> Answer {
    let form = form.into_inner();
    let checked = match form.check(tz(&state), None) {
        Ok(a) => a,
        Err(e) => {
            return Ok(html(
                StatusCode::BAD_REQUEST,
                &EditPage {
                    chrome: Chrome::new(&state, &req, "articles"),
                    id: None,
                    article: None,
                    form: &form,
                    error: Some(e),
                    notice: None,
                },
            ))
        }
    };
    let guid = checked.guid.clone();
    let id = query(&state, move |conn| {
        articles::upsert(conn, std::slice::from_ref(&checked), Source::Admin)?;
        Ok(crate::foundation::db::schema::articles::table
            .filter(crate::foundation::db::schema::articles::guid.eq(guid))
            .select(crate::foundation::db::schema::articles::id)
            .first::<i64>(conn)?)
    })
    .await?;
    Ok(see_other(&format!("/admin/articles/{id}?notice=saved")))
}

/// `GET /admin/articles/{id}`.
pub async fn edit_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let id = path_id(&path)?;
    let article = query(&state, move |conn| Ok(articles::find(conn, id)?))
        .await?
        .ok_or(Fault::NotFound)?;
    let form = ArticleForm::of(&article, tz(&state));
    let notice = match q.notice.as_deref() {
        Some("saved") => Some("Saved."),
        Some("excluded") => Some("This article is kept out of the digest."),
        Some("included") => {
            Some("This article goes into the next digest (if it has not been in one).")
        }
        _ => None,
    };
    Ok(html(
        StatusCode::OK,
        &EditPage {
            chrome: Chrome::new(&state, &req, "articles"),
            id: Some(id),
            article: Some(&article),
            form: &form,
            error: None,
            notice,
        },
    ))
}

/// `POST /admin/articles/{id}`: an edit.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<ArticleForm>,
) -> Answer {
    let id = path_id(&path)?;
    let form = form.into_inner();
    let article = query(&state, move |conn| Ok(articles::find(conn, id)?))
        .await?
        .ok_or(Fault::NotFound)?;
    let checked = match form.check(tz(&state), Some(article.guid.clone())) {
        Ok(a) => a,
        Err(e) => {
            return Ok(html(
                StatusCode::BAD_REQUEST,
                &EditPage {
                    chrome: Chrome::new(&state, &req, "articles"),
                    id: Some(id),
                    article: Some(&article),
                    form: &form,
                    error: Some(e),
                    notice: None,
                },
            ))
        }
    };
    query(&state, move |conn| {
        Ok(articles::update(conn, id, &checked)?)
    })
    .await?;
    Ok(see_other(&format!("/admin/articles/{id}?notice=saved")))
}

#[derive(Deserialize)]
pub struct ExcludeForm {
    #[serde(default)]
    excluded: String,
}

/// `POST /admin/articles/{id}/exclude` (`excluded=yes` or `no`).
pub async fn exclude(
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<ExcludeForm>,
) -> Answer {
    let id = path_id(&path)?;
    let excluded = form.excluded != "no";
    let n = query(&state, move |conn| {
        Ok(articles::set_excluded(conn, id, excluded)?)
    })
    .await?;
    if n == 0 {
        return Err(Fault::NotFound);
    }
    let notice = if excluded { "excluded" } else { "included" };
    Ok(see_other(&format!("/admin/articles/{id}?notice={notice}")))
}
