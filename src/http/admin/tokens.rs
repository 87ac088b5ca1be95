//! API tokens in the console (admins): the tokens with their scopes, who made them, when they
//! were last used and when they expire; a form to make one (shown once, on the answer to the
//! form, never again); revoking one. Tokens made before scopes existed keep full access and are
//! marked so. Making and revoking a token leave a row in the audit log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;

use super::{path_id, query, see_other, Answer, Chrome, Fault, NoticeQuery};
use crate::foundation::access::{Grant, Scope};
use crate::foundation::db;
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::api_tokens::{self, Listed};
use crate::stores::audit;

/// The longest expiry the form takes, in days (ten years).
pub const MAX_EXPIRY_DAYS: i64 = 3650;

/// What the form to make a token holds.
#[derive(Clone, Debug, Default)]
pub struct TokenForm {
    pub name: String,
    /// The scopes ticked, as named.
    pub scopes: Vec<String>,
    /// Days until it expires; empty: never.
    pub expires_days: String,
}

/// A token to make: checked form.
struct NewToken {
    name: String,
    scopes: Vec<Scope>,
    expires_days: Option<i64>,
}

impl TokenForm {
    /// Reads the form body; repeated `scopes` fields are the scopes ticked.
    fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "name" => form.name = value.trim().to_string(),
                "expires_days" => form.expires_days = value.trim().to_string(),
                "scopes" if form.scopes.len() < Scope::ALL.len() * 2 => {
                    form.scopes.push(value.into_owned())
                }
                _ => {}
            }
        }
        form
    }

    /// Whether the form has this scope ticked (a new form: none).
    pub fn ticks(&self, scope: &Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    /// The token to make, or what is wrong with the form, each problem in a sentence.
    fn check(&self) -> Result<NewToken, Vec<String>> {
        let mut errors = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.chars().count() <= 64
            && !self.name.chars().any(char::is_control);
        if !name_ok {
            errors.push("name: 1 to 64 printable characters".to_string());
        }
        let scopes = match Scope::parse_list(&self.scopes.join(",")) {
            Ok(scopes) => scopes,
            Err(_) if self.scopes.is_empty() => {
                errors.push("scopes: tick at least one".to_string());
                Vec::new()
            }
            Err(e) => {
                errors.push(format!("scopes: {e}"));
                Vec::new()
            }
        };
        let expires_days = match self.expires_days.as_str() {
            "" => None,
            raw => match raw.parse::<i64>() {
                Ok(days) if (1..=MAX_EXPIRY_DAYS).contains(&days) => Some(days),
                _ => {
                    errors.push(format!(
                        "expiry: a whole number of days from 1 to {MAX_EXPIRY_DAYS}, or empty \
                         for a token that does not expire"
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(NewToken {
                name: self.name.clone(),
                scopes,
                expires_days,
            })
        } else {
            Err(errors)
        }
    }
}

/// A token as its row in the list shows it.
pub struct Row {
    pub t: Listed,
    /// The scopes, or `None` for a token made before scopes (full access).
    pub scopes: Option<String>,
    pub expired: bool,
}

impl Row {
    fn of(t: Listed) -> Self {
        let scopes = match &t.grant {
            Grant::Legacy => None,
            Grant::Scopes(scopes) => Some(Scope::join(scopes).replace(',', ", ")),
        };
        let expired = t.expired();
        Row { t, scopes, expired }
    }
}

/// A token just made: its name and the token itself, shown this once.
pub struct Made {
    pub name: String,
    pub token: String,
    pub scopes: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "admin/tokens.html")]
struct TokensPage<'a> {
    chrome: Chrome,
    rows: Vec<Row>,
    scopes: [Scope; 12],
    form: &'a TokenForm,
    errors: Vec<String>,
    notice: Option<&'static str>,
    made: Option<Made>,
}

/// The list with the form, as first shown, sent back with its errors, or with a token just made.
async fn tokens_page(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    form: &TokenForm,
    errors: Vec<String>,
    notice: Option<&'static str>,
    made: Option<Made>,
) -> Answer {
    let rows = query(state, |conn| Ok(api_tokens::list(conn)?))
        .await?
        .into_iter()
        .map(Row::of)
        .collect();
    Ok(html(
        status,
        &TokensPage {
            chrome: Chrome::new(state, req, "tokens"),
            rows,
            scopes: Scope::ALL,
            form,
            errors,
            notice,
            made,
        },
    ))
}

/// `GET /admin/tokens`.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let notice = match q.notice.as_deref() {
        Some("revoked") => Some("Revoked: requests with that token are refused from now on."),
        _ => None,
    };
    let form = TokenForm::default();
    tokens_page(
        &state,
        &req,
        StatusCode::OK,
        &form,
        Vec::new(),
        notice,
        None,
    )
    .await
}

/// `POST /admin/tokens`: makes a token and shows it on the answer, this once (not a redirect: the
/// token is not to travel in a URL or be kept anywhere but the answer). A token of the same name
/// is replaced, as on the command line.
pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Answer {
    let form = TokenForm::parse(&body);
    let new = match form.check() {
        Ok(new) => new,
        Err(errors) => {
            let status = StatusCode::BAD_REQUEST;
            return tokens_page(&state, &req, status, &form, errors, None, None).await;
        }
    };
    let creator = super::editor_name(&req);
    let ip = state.client_ip(&req).to_string();
    let expires_at = new
        .expires_days
        .map(|days| db::now() + chrono::Duration::days(days));
    let scopes = Scope::join(&new.scopes);
    let expires = expires_at
        .as_ref()
        .map(super::when)
        .unwrap_or_else(|| "never".to_string());
    let detail = format!("{} ({scopes}), expires {expires}", new.name);
    let name = new.name.clone();
    let token = query(&state, move |conn| {
        // The token and its audit row, together or not at all.
        Ok(db::write_transaction(conn, |conn| {
            let token =
                api_tokens::create_scoped(conn, &name, &new.scopes, expires_at, Some(&creator))?;
            let entry = audit::Entry::new(format!("editor {creator}"), ip, "token created");
            audit::record(conn, &entry.detail(detail))?;
            Ok::<_, diesel::result::Error>(token)
        })?)
    })
    .await?;
    let made = Made {
        name: form.name.clone(),
        token,
        scopes: scopes.replace(',', ", "),
        expires,
    };
    let fresh = TokenForm::default();
    tokens_page(
        &state,
        &req,
        StatusCode::OK,
        &fresh,
        Vec::new(),
        None,
        Some(made),
    )
    .await
}

/// `POST /admin/tokens/{id}/revoke`.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let id = path_id(&path)?;
    let by = format!("editor {}", super::editor_name(&req));
    let ip = state.client_ip(&req).to_string();
    let revoked = query(&state, move |conn| {
        Ok(db::write_transaction(conn, |conn| {
            let name = api_tokens::revoke(conn, id)?;
            if let Some(name) = &name {
                let entry = audit::Entry::new(by, ip, "token revoked").detail(name.clone());
                audit::record(conn, &entry)?;
            }
            Ok::<_, diesel::result::Error>(name)
        })?)
    })
    .await?;
    match revoked {
        Some(_) => Ok(see_other("/admin/tokens?notice=revoked")),
        None => Err(Fault::NotFound),
    }
}
