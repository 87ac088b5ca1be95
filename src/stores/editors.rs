//! Editors' accounts: made with `iria-news admin create-user NAME`, passwords kept as argon2id
//! hashes; logins counted and throttled per account and per client address.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;

use crate::foundation::db::schema::{editors, login_failures};
use crate::foundation::db::{self, DbConnection, DbError};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Why an account could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an editor name is 1 to 64 letters, digits, dots, dashes or underscores")]
    BadName,
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    #[error("an editor named {0:?} exists already")]
    Exists(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        AccountError::Db(DbError::Query(e))
    }
}

/// Failed logins of one account, or from one address, allowed within [`FAILURE_WINDOW_MINUTES`].
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
pub const MAX_FAILURES_PER_IP: i64 = 20;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Makes an editor account.
pub fn create(conn: &mut DbConnection, name: &str, password: &str) -> Result<(), AccountError> {
    if !valid_name(name) {
        return Err(AccountError::BadName);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::ShortPassword);
    }
    let hash = hash(password)?;
    let inserted = diesel::insert_into(editors::table)
        .values((
            editors::name.eq(name),
            editors::password_hash.eq(hash),
            editors::created_at.eq(db::now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(()),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(AccountError::Exists(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// A hash of a password nobody has, checked when the name is unknown so that an unknown name
/// costs the same time as a known one.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Yv0n8VTiHSZ7BGx7VgDbkeo2ZmCbeI6fF0O7t0bDJ4";

/// Whether `password` is the editor's. Unknown names take as long as known ones.
pub fn verify(conn: &mut DbConnection, name: &str, password: &str) -> QueryResult<bool> {
    let stored: Option<String> = editors::table
        .filter(editors::name.eq(name))
        .select(editors::password_hash)
        .first(conn)
        .optional()?;
    let known = stored.is_some();
    let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
    let matches = PasswordHash::new(&hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    Ok(known && matches)
}

fn hash(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccountError::Hash(e.to_string()))?
        .to_string())
}

/// A signed-in editor, as a session names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Editor {
    pub id: i64,
    pub name: String,
    /// Bumped when the password changes: sessions made before then end.
    pub session_version: i32,
}

/// How a login attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    Welcome(Editor),
    /// Wrong name or password (which of the two is not told).
    Refused,
    /// Too many failures lately for this account or from this address; nothing was checked.
    Throttled,
}

fn account_key(name: &str) -> String {
    format!("name:{}", name.to_lowercase())
}

fn ip_key(ip: &str) -> String {
    format!("ip:{ip}")
}

fn recent_failures(
    conn: &mut DbConnection,
    key: &str,
    since: chrono::NaiveDateTime,
) -> QueryResult<i64> {
    login_failures::table
        .filter(login_failures::key.eq(key))
        .filter(login_failures::failed_at.gt(since))
        .count()
        .get_result(conn)
}

/// Checks a login. Failures are counted in the database (so every process sees them) per account
/// name, known or not, and per client address; past the limits the attempt is refused unchecked
/// until the window has passed. A success clears the account's count.
pub fn log_in(conn: &mut DbConnection, name: &str, password: &str, ip: &str) -> QueryResult<Login> {
    let now = db::now();
    let since = now - chrono::Duration::minutes(FAILURE_WINDOW_MINUTES);
    let name = name.trim();
    if recent_failures(conn, &account_key(name), since)? >= MAX_FAILURES_PER_ACCOUNT
        || recent_failures(conn, &ip_key(ip), since)? >= MAX_FAILURES_PER_IP
    {
        return Ok(Login::Throttled);
    }
    if verify(conn, name, password)? {
        diesel::delete(login_failures::table.filter(login_failures::key.eq(account_key(name))))
            .execute(conn)?;
        let editor = editors::table
            .filter(editors::name.eq(name))
            .select((editors::id, editors::name, editors::session_version))
            .first::<(i64, String, i32)>(conn)?;
        return Ok(Login::Welcome(Editor {
            id: editor.0,
            name: editor.1,
            session_version: editor.2,
        }));
    }
    for key in [account_key(name), ip_key(ip)] {
        diesel::insert_into(login_failures::table)
            .values((
                login_failures::key.eq(key),
                login_failures::failed_at.eq(now),
            ))
            .execute(conn)?;
    }
    // Old failures are of no use: keep the table small.
    diesel::delete(
        login_failures::table.filter(login_failures::failed_at.lt(now - chrono::Duration::days(1))),
    )
    .execute(conn)?;
    Ok(Login::Refused)
}

/// The editor a session names, if the account still exists and the session is not older than
/// the last password change.
pub fn find(conn: &mut DbConnection, id: i64, session_version: i32) -> QueryResult<Option<Editor>> {
    Ok(editors::table
        .find(id)
        .select((editors::id, editors::name, editors::session_version))
        .first::<(i64, String, i32)>(conn)
        .optional()?
        .filter(|e| e.2 == session_version)
        .map(|(id, name, session_version)| Editor {
            id,
            name,
            session_version,
        }))
}

/// Changes an editor's password after checking the current one; every other session of the
/// account ends. Returns the new session version, or `None` when the current password is wrong.
pub fn change_password(
    conn: &mut DbConnection,
    editor: &Editor,
    current: &str,
    new: &str,
) -> Result<Option<i32>, AccountError> {
    if new.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::ShortPassword);
    }
    if !verify(conn, &editor.name, current)? {
        return Ok(None);
    }
    let hash = hash(new)?;
    let version = editor.session_version + 1;
    diesel::update(editors::table.find(editor.id))
        .set((
            editors::password_hash.eq(hash),
            editors::session_version.eq(version),
        ))
        .execute(conn)?;
    Ok(Some(version))
}
