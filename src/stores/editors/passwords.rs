//! Checks of a signed-in editor's current password (a password change, removing the second
//! factor), counted and throttled with the account's logins, and the password change itself.

use diesel::prelude::*;

use super::{account_key, begin_check, end_sessions, hash, take_back, Attempt};
use super::{AccountError, Editor, MIN_PASSWORD_CHARS};
use crate::foundation::db::schema::editors;
use crate::foundation::db::{self, DbConnection};

/// Starts a check of a signed-in editor's current password (a password change, removing the
/// second factor): counted and throttled with the account's logins, against the account name
/// and the client address (`reserve_attempt`). `None`: too many failures lately, nothing is
/// to be checked.
pub fn begin_password_check(
    conn: &mut DbConnection,
    editor: &Editor,
    ip: &str,
) -> QueryResult<Option<Attempt>> {
    begin_check(conn, &editor.name, account_key(&editor.name), ip)
}

/// Ends a check begun by [`begin_password_check`]: a right password takes its count back; a
/// wrong one stays counted. Whether it was right.
pub fn finish_password_check(
    conn: &mut DbConnection,
    attempt: &Attempt,
    matched: bool,
) -> QueryResult<bool> {
    if matched {
        take_back(conn, &attempt.reserved)?;
    }
    Ok(matched)
}

/// Changes an editor's password (the current one was checked: [`begin_password_check`]); every
/// session of the account but `keep_session` (the one the change was made from) ends. Returns
/// the new session version.
pub fn set_password(
    conn: &mut DbConnection,
    editor: &Editor,
    new: &str,
    keep_session: Option<i64>,
) -> Result<i32, AccountError> {
    if new.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::ShortPassword);
    }
    let hash = hash(new)?;
    let version = editor.session_version + 1;
    db::write_transaction(conn, |conn| {
        diesel::update(editors::table.find(editor.id))
            .set((
                editors::password_hash.eq(&hash),
                editors::session_version.eq(version),
            ))
            .execute(conn)?;
        end_sessions(conn, editor.id, keep_session)?;
        Ok::<_, AccountError>(())
    })?;
    Ok(version)
}

/// How a throttled check of a signed-in editor's current password ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    Right,
    Wrong,
    /// Too many failures lately for the account or from the address; nothing was checked.
    Throttled,
}

/// Checks a signed-in editor's current password on one connection, counted with the account's
/// logins ([`begin_password_check`], the password, [`finish_password_check`]).
pub fn check_password(
    conn: &mut DbConnection,
    editor: &Editor,
    password: &str,
    ip: &str,
) -> QueryResult<PasswordCheck> {
    let Some(attempt) = begin_password_check(conn, editor, ip)? else {
        return Ok(PasswordCheck::Throttled);
    };
    let matched = attempt.password_matches(password);
    Ok(if finish_password_check(conn, &attempt, matched)? {
        PasswordCheck::Right
    } else {
        PasswordCheck::Wrong
    })
}
