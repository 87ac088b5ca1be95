//! Known devices: after a full login the browser gets a long-lived cookie (`iria_device`) holding
//! a random token whose hash is kept here. A later login to the same account carrying it is
//! counted against that device's own failures instead of the account name's, so that someone
//! who fails logins to an editor's name from elsewhere cannot lock the editor out of the browser
//! they use (the client address's limit still applies to every attempt).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::foundation::db::schema::{editors, known_devices};
use crate::foundation::db::{self, DbConnection};

/// The cookie's name.
pub const COOKIE: &str = "iria_device";
/// How long the cookie lives, and a device stays known after its last login.
pub const DAYS: i64 = 365;
/// The most known devices kept per editor (the oldest go first).
const MAX_PER_EDITOR: usize = 20;

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The id of the known device a cookie's token names, if it belongs to the account named `name`
/// and was used within [`DAYS`].
pub fn recognise(conn: &mut DbConnection, token: &str, name: &str) -> QueryResult<Option<i64>> {
    if token.is_empty() || token.len() > 100 {
        return Ok(None);
    }
    let since = db::now() - chrono::Duration::days(DAYS);
    known_devices::table
        .inner_join(editors::table)
        .filter(known_devices::token_hash.eq(hash(token)))
        .filter(editors::name.eq(name.trim()))
        .filter(known_devices::last_used_at.gt(since))
        .select(known_devices::id)
        .first(conn)
        .optional()
}

/// Notes a full login of `editor_id` from a browser: the device its cookie names is seen again
/// (`Ok(None)`: keep the cookie), or a new device is remembered and its cookie's token returned.
pub fn remember(
    conn: &mut DbConnection,
    editor_id: i64,
    token: Option<&str>,
) -> QueryResult<Option<String>> {
    let now = db::now();
    if let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 100) {
        let seen = diesel::update(
            known_devices::table
                .filter(known_devices::token_hash.eq(hash(token)))
                .filter(known_devices::editor_id.eq(editor_id)),
        )
        .set(known_devices::last_used_at.eq(now))
        .execute(conn)?;
        if seen > 0 {
            return Ok(None);
        }
    }
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    db::write_transaction(conn, |conn| {
        diesel::insert_into(known_devices::table)
            .values((
                known_devices::editor_id.eq(editor_id),
                known_devices::token_hash.eq(hash(&token)),
                known_devices::created_at.eq(now),
                known_devices::last_used_at.eq(now),
            ))
            .execute(conn)?;
        let stale: Vec<i64> = known_devices::table
            .filter(known_devices::editor_id.eq(editor_id))
            .order(known_devices::last_used_at.desc())
            .select(known_devices::id)
            .offset(MAX_PER_EDITOR as i64)
            .load(conn)?;
        diesel::delete(known_devices::table.filter(known_devices::id.eq_any(stale)))
            .execute(conn)?;
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(Some(token))
}

/// Forgets every known device of an editor (their second factor was reset).
pub fn forget_all(conn: &mut DbConnection, editor_id: i64) -> QueryResult<usize> {
    diesel::delete(known_devices::table.filter(known_devices::editor_id.eq(editor_id)))
        .execute(conn)
}
