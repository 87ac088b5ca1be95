//! Editors' accounts: made with `iria-news admin create-user NAME [--role ROLE]` or by an admin in
//! the console, passwords kept as argon2id hashes; logins counted and throttled per account and
//! per client address. [`sessions`] keeps the console's sessions, [`second_factor`] the TOTP
//! factor and recovery codes, [`devices`] the browsers an editor has logged in from.

pub mod devices;
pub mod passwords;
pub mod second_factor;
pub mod sessions;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;

use crate::foundation::access::Role;
use crate::foundation::db::schema::{editor_sessions, editors, login_failures, recovery_codes};
use crate::foundation::db::{self, DbConnection, DbError};
use crate::foundation::net;

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
    #[error("no editor is named {0:?}")]
    Unknown(String),
    #[error("the last active admin cannot lose the admin role or be disabled")]
    LastAdmin,
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

/// Makes an editor account: the first account is an admin, later ones editors.
pub fn create(conn: &mut DbConnection, name: &str, password: &str) -> Result<Role, AccountError> {
    create_with_role(conn, name, password, None)
}

/// Makes an editor account with a role (`None`: admin for the first account, else editor).
pub fn create_with_role(
    conn: &mut DbConnection,
    name: &str,
    password: &str,
    role: Option<Role>,
) -> Result<Role, AccountError> {
    if !valid_name(name) {
        return Err(AccountError::BadName);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::ShortPassword);
    }
    let hash = hash(password)?;
    let inserted = db::write_transaction(conn, |conn| {
        let role = match role {
            Some(role) => role,
            None => {
                let existing: i64 = editors::table.count().get_result(conn)?;
                if existing == 0 {
                    Role::Admin
                } else {
                    Role::Editor
                }
            }
        };
        diesel::insert_into(editors::table)
            .values((
                editors::name.eq(name),
                editors::password_hash.eq(&hash),
                editors::created_at.eq(db::now()),
                editors::role.eq(role.as_str()),
            ))
            .execute(conn)?;
        Ok(role)
    });
    match inserted {
        Ok(role) => Ok(role),
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
    let stored = stored_hash(conn, name)?;
    Ok(hash_matches(stored.as_deref(), password))
}

fn stored_hash(conn: &mut DbConnection, name: &str) -> QueryResult<Option<String>> {
    editors::table
        .filter(editors::name.eq(name))
        .select(editors::password_hash)
        .first(conn)
        .optional()
}

/// Checks a password against a stored hash, or against [`DUMMY_HASH`] when there is none (an
/// unknown name), so that both take as long; `false` for an unknown name whatever the password.
fn hash_matches(stored: Option<&str>, password: &str) -> bool {
    let matches = PasswordHash::new(stored.unwrap_or(DUMMY_HASH))
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    stored.is_some() && matches
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
    pub role: Role,
    /// Bumped when the password changes.
    pub session_version: i32,
    /// Whether a second factor is enrolled.
    pub has_second_factor: bool,
}

/// The columns an [`Editor`] is read from.
pub(crate) type EditorColumns = (
    editors::id,
    editors::name,
    editors::role,
    editors::session_version,
    editors::totp_enrolled_at,
);

pub(crate) const EDITOR_COLUMNS: EditorColumns = (
    editors::id,
    editors::name,
    editors::role,
    editors::session_version,
    editors::totp_enrolled_at,
);

pub(crate) type EditorRow = (i64, String, String, i32, Option<chrono::NaiveDateTime>);

impl Editor {
    pub(crate) fn from_row(row: EditorRow) -> Self {
        let (id, name, role, session_version, enrolled) = row;
        Editor {
            id,
            name,
            // The column's CHECK allows only the three names.
            role: Role::parse(&role).unwrap_or(Role::Author),
            session_version,
            has_second_factor: enrolled.is_some(),
        }
    }
}

/// How a login attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    Welcome(Editor),
    /// Wrong name or password (which of the two is not told).
    Refused,
    /// Too many failures lately for this account or from this address; nothing was checked.
    Throttled,
    /// The right password for an account an admin has disabled.
    Disabled,
}

/// The start of a known device's key in `login_failures`.
const DEVICE_KEY_PREFIX: &str = "device:";

fn account_key(name: &str) -> String {
    format!("name:{}", name.to_lowercase())
}

/// A client address's key: IPv6 clients by their /64 (see [`net::limit_key`]).
fn ip_key(ip: &str) -> String {
    format!("ip:{}", net::limit_key(ip))
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

/// Advisory lock classes (the first half of PostgreSQL's two-part lock key) of the two kinds of
/// keys: every reservation locks its account's key, then its address's, so two reservations
/// cannot wait for each other round a loop, even when two keys' hashes collide.
const ACCOUNT_LOCK_CLASS: i32 = 725_415_002;
const IP_LOCK_CLASS: i32 = 725_415_003;

/// Reserves a login attempt before its password is checked: one failure row for the account and
/// one for the address, written only if neither has reached its limit, so that at most the
/// limit's number of passwords is ever checked, however many attempts arrive at once. Counting
/// and writing are one transaction under a lock: on PostgreSQL an advisory lock on each key (a
/// plain transaction would let several attempts count the same rows and all pass), on SQLite the
/// write transaction, which holds the database's one write lock. `None` when the attempt is
/// refused; else the ids of the two rows, which a right password takes back.
fn reserve_attempt(
    conn: &mut DbConnection,
    account: &str,
    ip: &str,
    now: chrono::NaiveDateTime,
) -> QueryResult<Option<Vec<i64>>> {
    let since = now - chrono::Duration::minutes(FAILURE_WINDOW_MINUTES);
    db::write_transaction(conn, |conn| {
        if let DbConnection::Pg(pg) = conn {
            for (class, key) in [(ACCOUNT_LOCK_CLASS, account), (IP_LOCK_CLASS, ip)] {
                diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind::<diesel::sql_types::Integer, _>(class)
                    .bind::<diesel::sql_types::Text, _>(key)
                    .execute(pg)?;
            }
        }
        // A known device (a 256-bit token only its editor's browser holds) is held to its own
        // limit, not the address's: 20 failures from a shared address (an office) do not lock
        // its editors out of the browsers they use. Its failures still count for the address.
        let known_device = account.starts_with(DEVICE_KEY_PREFIX);
        if recent_failures(conn, account, since)? >= MAX_FAILURES_PER_ACCOUNT
            || (!known_device && recent_failures(conn, ip, since)? >= MAX_FAILURES_PER_IP)
        {
            return Ok(None);
        }
        let mut ids = Vec::with_capacity(2);
        for key in [account, ip] {
            ids.push(
                diesel::insert_into(login_failures::table)
                    .values((
                        login_failures::key.eq(key),
                        login_failures::failed_at.eq(now),
                    ))
                    .returning(login_failures::id)
                    .get_result(conn)?,
            );
        }
        Ok(Some(ids))
    })
}

/// A login attempt that was let through ([`begin_login`]): counted as a failure until
/// [`finish_login`] hears that its password was right. Holds the account's hash, so that the
/// slow part, checking the password ([`Attempt::password_matches`]), needs no database
/// connection: a burst of attempts does not starve the pool.
pub struct Attempt {
    name: String,
    /// The key the attempt is counted against: the account name's, or a known device's.
    key: String,
    reserved: Vec<i64>,
    hash: Option<String>,
}

impl Attempt {
    /// Whether the password is the account's (argon2id; as slow for an unknown name).
    pub fn password_matches(&self, password: &str) -> bool {
        hash_matches(self.hash.as_deref(), password)
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt").field("name", &self.name).finish()
    }
}

/// Starts a login: `None` when the account or the address has had too many failures lately
/// (nothing is checked then, and nothing counted); otherwise the attempt, already counted as a
/// failure of both ([`reserve_attempt`]) so that at most the limit's number of passwords is ever
/// checked, however many attempts arrive at once.
pub fn begin_login(conn: &mut DbConnection, name: &str, ip: &str) -> QueryResult<Option<Attempt>> {
    begin_login_from(conn, name, ip, None)
}

/// [`begin_login`] from a browser that may carry a known device's cookie (`device`): when it
/// names a known device of this account, the attempt is counted against that device instead of
/// the account name (the address's limit applies all the same).
pub fn begin_login_from(
    conn: &mut DbConnection,
    name: &str,
    ip: &str,
    device: Option<&str>,
) -> QueryResult<Option<Attempt>> {
    let name = name.trim();
    let key = login_key(conn, name, device)?;
    begin_check(conn, name, key, ip)
}

/// The key a login step of the account `name` is counted against: its known device's, when the
/// browser's cookie names one ([`devices::recognise`]), else the account name's.
pub fn login_key(conn: &mut DbConnection, name: &str, device: Option<&str>) -> QueryResult<String> {
    Ok(match device {
        Some(token) => devices::recognise(conn, token, name)?
            .map(|id| format!("{DEVICE_KEY_PREFIX}{id}"))
            .unwrap_or_else(|| account_key(name)),
        None => account_key(name),
    })
}

fn begin_check(
    conn: &mut DbConnection,
    name: &str,
    key: String,
    ip: &str,
) -> QueryResult<Option<Attempt>> {
    let Some(reserved) = reserve_attempt(conn, &key, &ip_key(ip), db::now())? else {
        return Ok(None);
    };
    Ok(Some(Attempt {
        name: name.to_string(),
        key,
        reserved,
        hash: stored_hash(conn, name)?,
    }))
}

/// Takes a reservation's rows back (the password or code was right).
fn take_back(conn: &mut DbConnection, reserved: &[i64]) -> QueryResult<()> {
    diesel::delete(login_failures::table.filter(login_failures::id.eq_any(reserved)))
        .execute(conn)?;
    Ok(())
}

/// Clears the failures counted against a key (a full login succeeded).
fn clear_failures(conn: &mut DbConnection, key: &str) -> QueryResult<()> {
    diesel::delete(login_failures::table.filter(login_failures::key.eq(key))).execute(conn)?;
    Ok(())
}

/// Ends a login whose password was checked: a right one takes its count back, and, for an
/// account without a second factor (whose login is then complete), clears the failures counted
/// against its key; for one with a second factor they are cleared only when the code is right
/// ([`second_factor::check_login_code`]), so that a known password does not buy fresh guesses at
/// the code. A wrong password stays counted.
pub fn finish_login(
    conn: &mut DbConnection,
    attempt: &Attempt,
    password_matched: bool,
) -> QueryResult<Login> {
    if password_matched {
        take_back(conn, &attempt.reserved)?;
        let (editor, disabled) = editors::table
            .filter(editors::name.eq(&attempt.name))
            .select((EDITOR_COLUMNS, editors::disabled_at))
            .first::<(EditorRow, Option<chrono::NaiveDateTime>)>(conn)?;
        if disabled.is_some() {
            return Ok(Login::Disabled);
        }
        let editor = Editor::from_row(editor);
        if !editor.has_second_factor {
            clear_failures(conn, &attempt.key)?;
        }
        return Ok(Login::Welcome(editor));
    }
    // Old failures are of no use: keep the table small.
    let old = db::now() - chrono::Duration::days(1);
    diesel::delete(login_failures::table.filter(login_failures::failed_at.lt(old)))
        .execute(conn)?;
    Ok(Login::Refused)
}

/// Checks a login on one connection ([`begin_login`], the password, [`finish_login`]).
/// Failures are counted in the database (so every process sees them) per account name, known or
/// not, and per client address; past the limits the attempt is refused unchecked until the
/// window has passed. The console's handler runs the three steps itself, so as not to hold a
/// connection while the password is checked.
pub fn log_in(conn: &mut DbConnection, name: &str, password: &str, ip: &str) -> QueryResult<Login> {
    let Some(attempt) = begin_login(conn, name, ip)? else {
        return Ok(Login::Throttled);
    };
    let matched = attempt.password_matches(password);
    finish_login(conn, &attempt, matched)
}

/// An enabled editor by name.
pub fn by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Editor>> {
    Ok(editors::table
        .filter(editors::name.eq(name))
        .filter(editors::disabled_at.is_null())
        .select(EDITOR_COLUMNS)
        .first::<EditorRow>(conn)
        .optional()?
        .map(Editor::from_row))
}

/// An account as the accounts page lists it.
#[derive(Clone, Debug)]
pub struct Account {
    pub editor: Editor,
    pub created_at: chrono::NaiveDateTime,
    pub disabled_at: Option<chrono::NaiveDateTime>,
}

/// Every account, by name.
pub fn accounts(conn: &mut DbConnection) -> QueryResult<Vec<Account>> {
    Ok(editors::table
        .order(editors::name.asc())
        .select((EDITOR_COLUMNS, editors::created_at, editors::disabled_at))
        .load::<(
            EditorRow,
            chrono::NaiveDateTime,
            Option<chrono::NaiveDateTime>,
        )>(conn)?
        .into_iter()
        .map(|(row, created_at, disabled_at)| Account {
            editor: Editor::from_row(row),
            created_at,
            disabled_at,
        })
        .collect())
}

/// One account by id.
pub fn account(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Account>> {
    Ok(accounts(conn)?.into_iter().find(|a| a.editor.id == id))
}

/// The id of the account named `name`, disabled or not.
fn id_of(conn: &mut DbConnection, name: &str) -> Result<i64, AccountError> {
    editors::table
        .filter(editors::name.eq(name))
        .select(editors::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| AccountError::Unknown(name.to_string()))
}

/// Fails when the change would leave no enabled admin (`id` losing the role or being disabled).
fn keep_an_admin(conn: &mut DbConnection, id: i64) -> Result<(), AccountError> {
    // Two admins demoting or disabling each other at once must not both see the other as the
    // admin that stays: on PostgreSQL every such change takes one advisory lock for the rest of
    // its transaction (SQLite's write transaction holds the one write lock already).
    if let DbConnection::Pg(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(ADMINS_LOCK)
            .execute(pg)?;
    }
    let others: i64 = editors::table
        .filter(editors::role.eq(Role::Admin.as_str()))
        .filter(editors::disabled_at.is_null())
        .filter(editors::id.ne(id))
        .count()
        .get_result(conn)?;
    if others == 0 {
        return Err(AccountError::LastAdmin);
    }
    Ok(())
}

/// The advisory lock under which a change that could leave no admin counts the admins.
const ADMINS_LOCK: i64 = 725_415_010;

/// Changes an account's role (the last enabled admin keeps theirs). Returns the old role.
pub fn set_role(conn: &mut DbConnection, name: &str, role: Role) -> Result<Role, AccountError> {
    db::write_transaction(conn, |conn| {
        let id = id_of(conn, name)?;
        let old: String = editors::table.find(id).select(editors::role).first(conn)?;
        if old == Role::Admin.as_str() && role != Role::Admin {
            keep_an_admin(conn, id)?;
        }
        diesel::update(editors::table.find(id))
            .set(editors::role.eq(role.as_str()))
            .execute(conn)?;
        Ok(Role::parse(&old).unwrap_or(Role::Author))
    })
}

/// Disables (or enables again) an account; disabling ends all its sessions. The last enabled
/// admin cannot be disabled.
pub fn set_disabled(
    conn: &mut DbConnection,
    name: &str,
    disabled: bool,
) -> Result<(), AccountError> {
    db::write_transaction(conn, |conn| {
        let id = id_of(conn, name)?;
        if disabled {
            let role: String = editors::table.find(id).select(editors::role).first(conn)?;
            if role == Role::Admin.as_str() {
                keep_an_admin(conn, id)?;
            }
            diesel::update(
                editors::table
                    .find(id)
                    .filter(editors::disabled_at.is_null()),
            )
            .set(editors::disabled_at.eq(Some(db::now())))
            .execute(conn)?;
            diesel::delete(editor_sessions::table.filter(editor_sessions::editor_id.eq(id)))
                .execute(conn)?;
        } else {
            diesel::update(editors::table.find(id))
                .set(editors::disabled_at.eq(None::<chrono::NaiveDateTime>))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Ends every session of an editor but `except` (as the sessions' file does; this file does not
/// call it, as that file imports this one).
fn end_sessions(conn: &mut DbConnection, id: i64, except: Option<i64>) -> QueryResult<usize> {
    let mut delete = diesel::delete(editor_sessions::table)
        .filter(editor_sessions::editor_id.eq(id))
        .into_boxed();
    if let Some(keep) = except {
        delete = delete.filter(editor_sessions::id.ne(keep));
    }
    delete.execute(conn)
}

/// Removes an editor's second factor (TOTP secret and recovery codes), forgets their known
/// devices and ends their sessions: they enrol again at their next login (the operator's
/// `iria-news admin reset-2fa NAME`, or an admin). Fails for an unknown name.
pub fn reset_second_factor(conn: &mut DbConnection, name: &str) -> Result<(), AccountError> {
    db::write_transaction(conn, |conn| {
        let id = id_of(conn, name)?;
        diesel::update(editors::table.find(id))
            .set((
                editors::totp_secret.eq(None::<String>),
                editors::totp_enrolled_at.eq(None::<chrono::NaiveDateTime>),
                editors::totp_last_step.eq(None::<i64>),
            ))
            .execute(conn)?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::editor_id.eq(id)))
            .execute(conn)?;
        end_sessions(conn, id, None)?;
        devices::forget_all(conn, id)?;
        Ok(())
    })
}
