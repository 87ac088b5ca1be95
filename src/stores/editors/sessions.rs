//! The console's sessions, kept server-side: the cookie holds a random token, this table its
//! hash. A session ends when its row goes: at logout, when the editor or an admin ends it, when
//! the password changes or the account is disabled, after [`IDLE_MINUTES`] without a request, and
//! [`MAX_HOURS`] after the login whatever is done with it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Editor, EditorRow, EDITOR_COLUMNS};
use crate::foundation::db::schema::{editor_sessions, editors};
use crate::foundation::db::{self, DbConnection};

/// A session ends after this long without a request.
pub const IDLE_MINUTES: i64 = 120;
/// No session lives longer than this after its login.
pub const MAX_HOURS: i64 = 12;
/// `last_seen_at` is written at most this often per session (a page load writes nothing more).
const TOUCH_SECONDS: i64 = 60;

/// What a session must do before it is a full one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Give a second-factor code (the password was right).
    Code,
    /// Enrol a second factor (`IRIA_REQUIRE_2FA` and none yet).
    Enrol,
}

impl Pending {
    fn as_str(self) -> &'static str {
        match self {
            Pending::Code => "code",
            Pending::Enrol => "enrol",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "code" => Some(Pending::Code),
            "enrol" => Some(Pending::Enrol),
            _ => None,
        }
    }
}

/// A live session, as the guard finds it.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: i64,
    pub editor: Editor,
    pub pending: Option<Pending>,
}

/// A session as the sessions pages list it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub id: i64,
    pub editor_id: i64,
    pub editor_name: String,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub ip: String,
    pub user_agent: String,
    pub pending: bool,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for an editor whose password was right; returns the cookie's token.
pub fn start(
    conn: &mut DbConnection,
    editor_id: i64,
    ip: &str,
    user_agent: &str,
    pending: Option<Pending>,
) -> QueryResult<String> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let now = db::now();
    let user_agent: String = user_agent.chars().take(300).collect();
    diesel::insert_into(editor_sessions::table)
        .values((
            editor_sessions::token_hash.eq(hash(&token)),
            editor_sessions::editor_id.eq(editor_id),
            editor_sessions::created_at.eq(now),
            editor_sessions::last_seen_at.eq(now),
            editor_sessions::ip.eq(ip),
            editor_sessions::user_agent.eq(user_agent),
            editor_sessions::pending.eq(pending.map(Pending::as_str)),
        ))
        .execute(conn)?;
    Ok(token)
}

/// The session a cookie's token names, if it is still live (an enabled account, not idle for
/// [`IDLE_MINUTES`], not older than [`MAX_HOURS`]); an expired one is deleted. Notes the request
/// (at most once a minute).
pub fn find(conn: &mut DbConnection, token: &str) -> QueryResult<Option<Session>> {
    let found = editor_sessions::table
        .inner_join(editors::table)
        .filter(editor_sessions::token_hash.eq(hash(token)))
        .select((
            editor_sessions::id,
            editor_sessions::created_at,
            editor_sessions::last_seen_at,
            editor_sessions::pending,
            editors::disabled_at,
            EDITOR_COLUMNS,
        ))
        .first::<(
            i64,
            NaiveDateTime,
            NaiveDateTime,
            Option<String>,
            Option<NaiveDateTime>,
            EditorRow,
        )>(conn)
        .optional()?;
    let Some((id, created_at, last_seen_at, pending, disabled_at, editor)) = found else {
        return Ok(None);
    };
    let now = db::now();
    let expired = disabled_at.is_some()
        || now - last_seen_at >= chrono::Duration::minutes(IDLE_MINUTES)
        || now - created_at >= chrono::Duration::hours(MAX_HOURS);
    if expired {
        diesel::delete(editor_sessions::table.find(id)).execute(conn)?;
        return Ok(None);
    }
    if now - last_seen_at >= chrono::Duration::seconds(TOUCH_SECONDS) {
        diesel::update(editor_sessions::table.find(id))
            .set(editor_sessions::last_seen_at.eq(now))
            .execute(conn)?;
    }
    Ok(Some(Session {
        id,
        editor: Editor::from_row(editor),
        pending: pending.as_deref().and_then(Pending::parse),
    }))
}

/// Marks a session as a full one (the second factor was given or enrolled).
pub fn complete(conn: &mut DbConnection, session_id: i64) -> QueryResult<()> {
    diesel::update(editor_sessions::table.find(session_id))
        .set(editor_sessions::pending.eq(None::<String>))
        .execute(conn)?;
    Ok(())
}

/// Ends the session a cookie's token names (logout).
pub fn end_token(conn: &mut DbConnection, token: &str) -> QueryResult<()> {
    diesel::delete(editor_sessions::table.filter(editor_sessions::token_hash.eq(hash(token))))
        .execute(conn)?;
    Ok(())
}

/// Ends one session; `owner`: only if it belongs to that editor (an editor ends their own, an
/// admin anyone's). Whether a session ended.
pub fn end(conn: &mut DbConnection, session_id: i64, owner: Option<i64>) -> QueryResult<bool> {
    let mut delete = diesel::delete(editor_sessions::table)
        .filter(editor_sessions::id.eq(session_id))
        .into_boxed();
    if let Some(owner) = owner {
        delete = delete.filter(editor_sessions::editor_id.eq(owner));
    }
    Ok(delete.execute(conn)? > 0)
}

/// Ends every session of an editor but `except`. How many ended.
pub fn end_all(conn: &mut DbConnection, editor_id: i64, except: Option<i64>) -> QueryResult<usize> {
    let mut delete = diesel::delete(editor_sessions::table)
        .filter(editor_sessions::editor_id.eq(editor_id))
        .into_boxed();
    if let Some(keep) = except {
        delete = delete.filter(editor_sessions::id.ne(keep));
    }
    delete.execute(conn)
}

/// The live sessions of one editor (`Some`) or of everyone, the latest first.
pub fn list(conn: &mut DbConnection, editor_id: Option<i64>) -> QueryResult<Vec<Listed>> {
    let now = db::now();
    let mut query = editor_sessions::table
        .inner_join(editors::table)
        .filter(editor_sessions::last_seen_at.gt(now - chrono::Duration::minutes(IDLE_MINUTES)))
        .filter(editor_sessions::created_at.gt(now - chrono::Duration::hours(MAX_HOURS)))
        .order(editor_sessions::last_seen_at.desc())
        .select((
            editor_sessions::id,
            editor_sessions::editor_id,
            editors::name,
            editor_sessions::created_at,
            editor_sessions::last_seen_at,
            editor_sessions::ip,
            editor_sessions::user_agent,
            editor_sessions::pending,
        ))
        .into_boxed();
    if let Some(id) = editor_id {
        query = query.filter(editor_sessions::editor_id.eq(id));
    }
    Ok(query
        .load::<(
            i64,
            i64,
            String,
            NaiveDateTime,
            NaiveDateTime,
            String,
            String,
            Option<String>,
        )>(conn)?
        .into_iter()
        .map(
            |(id, editor_id, editor_name, created_at, last_seen_at, ip, user_agent, pending)| {
                Listed {
                    id,
                    editor_id,
                    editor_name,
                    created_at,
                    last_seen_at,
                    ip,
                    user_agent,
                    pending: pending.is_some(),
                }
            },
        )
        .collect())
}

/// Deletes sessions past their idle or absolute end (a periodic task).
pub fn purge_expired(conn: &mut DbConnection) -> QueryResult<usize> {
    let now = db::now();
    diesel::delete(
        editor_sessions::table.filter(
            editor_sessions::last_seen_at
                .le(now - chrono::Duration::minutes(IDLE_MINUTES))
                .or(editor_sessions::created_at.le(now - chrono::Duration::hours(MAX_HOURS))),
        ),
    )
    .execute(conn)
}
