//! Editors' accounts in the console (admins): the list (name, role, second factor, created,
//! disabled), a form to add an account, and on each account changing its role, disabling or
//! enabling it, and resetting its second factor. The last enabled admin keeps the role and
//! cannot be disabled. Each change leaves a row in the audit log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::audit::note;
use super::{path_id, query, see_other, Answer, Chrome, Fault, NoticeQuery};
use crate::foundation::access::Role;
use crate::http::pages::html;
use crate::http::state::AppState;
use crate::stores::editors::{self, Account, AccountError};

#[derive(Template)]
#[template(path = "admin/accounts.html")]
struct AccountsPage<'a> {
    chrome: Chrome,
    accounts: Vec<Account>,
    roles: [Role; 3],
    form: &'a NewAccount,
    errors: Vec<String>,
    notice: Option<&'static str>,
}

/// The form to add an account.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NewAccount {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub role: String,
}

impl NewAccount {
    /// Whether the form has this role chosen (a new form: author, the least).
    pub fn chooses(&self, role: &Role) -> bool {
        Role::parse(&self.role).unwrap_or(Role::Author) == *role
    }
}

async fn list_page(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    form: &NewAccount,
    errors: Vec<String>,
    notice: Option<&'static str>,
) -> Answer {
    let accounts = query(state, |conn| Ok(editors::accounts(conn)?)).await?;
    Ok(html(
        status,
        &AccountsPage {
            chrome: Chrome::new(state, req, "accounts"),
            accounts,
            roles: Role::ALL,
            form,
            errors,
            notice,
        },
    ))
}

/// `GET /admin/accounts`.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<NoticeQuery>,
) -> Answer {
    let notice = match q.notice.as_deref() {
        Some("created") => Some("The account was added."),
        Some("role") => Some("The role was changed."),
        Some("disabled") => Some("The account was disabled and its sessions ended."),
        Some("enabled") => Some("The account was enabled again."),
        Some("reset-2fa") => Some(
            "The second factor was removed and the account's sessions ended; the editor enrols \
             again at the next login.",
        ),
        _ => None,
    };
    let form = NewAccount::default();
    list_page(&state, &req, StatusCode::OK, &form, Vec::new(), notice).await
}

/// An account error as the page says it; a database fault is the page's fault.
fn refusal(e: AccountError) -> Result<(StatusCode, String), Fault> {
    let status = match &e {
        AccountError::Db(_) | AccountError::Hash(_) => return Err(Fault::Internal(e.to_string())),
        AccountError::Exists(_) | AccountError::LastAdmin => StatusCode::CONFLICT,
        AccountError::Unknown(_) => StatusCode::NOT_FOUND,
        AccountError::BadName | AccountError::ShortPassword => StatusCode::BAD_REQUEST,
    };
    let mut text = e.to_string();
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    Ok((status, format!("{text}.")))
}

/// `POST /admin/accounts`: adds an account with a role.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<NewAccount>,
) -> Answer {
    let mut form = form.into_inner();
    form.name = form.name.trim().to_string();
    let role = match Role::parse(&form.role) {
        Ok(role) => role,
        Err(e) => {
            return list_page(&state, &req, StatusCode::BAD_REQUEST, &form, vec![e], None).await
        }
    };
    let (name, password) = (form.name.clone(), form.password.clone());
    let made = query(&state, move |conn| {
        Ok(editors::create_with_role(
            conn,
            &name,
            &password,
            Some(role),
        ))
    })
    .await?;
    if let Err(e) = made {
        let (status, error) = refusal(e)?;
        form.password.clear();
        return list_page(&state, &req, status, &form, vec![error], None).await;
    }
    note(
        &state,
        &req,
        "account created",
        format!("{} as {role}", form.name),
    )
    .await;
    Ok(see_other("/admin/accounts?notice=created"))
}

/// The account a path names.
async fn account_of(state: &AppState, path: &str) -> Result<Account, Fault> {
    let id = path_id(path)?;
    query(state, move |conn| Ok(editors::account(conn, id)?))
        .await?
        .ok_or(Fault::NotFound)
}

/// The list again with one error (a change refused).
async fn refused(state: &AppState, req: &HttpRequest, e: AccountError) -> Answer {
    let (status, error) = refusal(e)?;
    let form = NewAccount::default();
    list_page(state, req, status, &form, vec![error], None).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

/// `POST /admin/accounts/{id}/role`.
pub async fn set_role(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Answer {
    let account = account_of(&state, &path).await?;
    let role = match Role::parse(&form.role) {
        Ok(role) => role,
        Err(e) => {
            let form = NewAccount::default();
            return list_page(&state, &req, StatusCode::BAD_REQUEST, &form, vec![e], None).await;
        }
    };
    let name = account.editor.name.clone();
    let changed = query(&state, move |conn| Ok(editors::set_role(conn, &name, role))).await?;
    match changed {
        Ok(old) => {
            if old != role {
                let detail = format!("{}: {old} → {role}", account.editor.name);
                note(&state, &req, "role changed", detail).await;
            }
            Ok(see_other("/admin/accounts?notice=role"))
        }
        Err(e) => refused(&state, &req, e).await,
    }
}

/// Disables or enables an account and notes it.
async fn switch(state: &AppState, req: &HttpRequest, path: &str, disabled: bool) -> Answer {
    let account = account_of(state, path).await?;
    let name = account.editor.name.clone();
    let done = query(state, move |conn| {
        Ok(editors::set_disabled(conn, &name, disabled))
    })
    .await?;
    if let Err(e) = done {
        return refused(state, req, e).await;
    }
    let (action, notice) = if disabled {
        ("account disabled", "disabled")
    } else {
        ("account enabled", "enabled")
    };
    // Noted only when it changed something.
    if account.disabled_at.is_some() != disabled {
        note(state, req, action, account.editor.name).await;
    }
    Ok(see_other(&format!("/admin/accounts?notice={notice}")))
}

/// `POST /admin/accounts/{id}/disable`: its sessions end at once; its logins are refused.
pub async fn disable(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    switch(&state, &req, &path, true).await
}

/// `POST /admin/accounts/{id}/enable`.
pub async fn enable(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    switch(&state, &req, &path, false).await
}

/// `POST /admin/accounts/{id}/reset-2fa`: the second factor and recovery codes go, and the
/// account's sessions end; the editor enrols again at the next login.
pub async fn reset_second_factor(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Answer {
    let account = account_of(&state, &path).await?;
    let name = account.editor.name.clone();
    let done = query(&state, move |conn| {
        Ok(editors::reset_second_factor(conn, &name))
    })
    .await?;
    if let Err(e) = done {
        return refused(&state, &req, e).await;
    }
    note(&state, &req, "second factor reset", account.editor.name).await;
    Ok(see_other("/admin/accounts?notice=reset-2fa"))
}
