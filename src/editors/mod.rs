//! Editors' accounts: made with `iria-news admin create-user NAME`, passwords kept as argon2id
//! hashes. (The console that uses them is not built yet.)

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;

use crate::db::schema::editors;
use crate::db::{self, DbConnection, DbError};

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
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccountError::Hash(e.to_string()))?
        .to_string();
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
