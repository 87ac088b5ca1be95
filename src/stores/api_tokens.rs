//! API tokens: made by `iria-news admin create-token NAME --scope S[,S…]` or by an admin in the
//! console, shown once, stored as a hash, limited to their scopes, optionally until an expiry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::foundation::access::{Grant, Scope};
use crate::foundation::db::schema::api_tokens;
use crate::foundation::db::{self, DbConnection};

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token that was checked: its name and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub name: String,
    pub grant: Grant,
}

/// A token as the console lists it (never the token itself).
#[derive(Clone, Debug)]
pub struct Listed {
    pub id: i64,
    pub name: String,
    pub grant: Grant,
    pub created_at: NaiveDateTime,
    pub created_by: Option<String>,
    pub last_used_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
}

impl Listed {
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= db::now())
    }
}

fn grant_of(scopes: Option<&str>) -> Grant {
    match scopes {
        None => Grant::Legacy,
        Some(list) => Grant::Scopes(
            list.split(',')
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
        ),
    }
}

/// Makes a token with every scope (tests and tools that need all of it).
pub fn create(conn: &mut DbConnection, name: &str) -> QueryResult<String> {
    create_scoped(conn, name, &Scope::ALL, None, None)
}

/// Makes a token named `name` (replacing one of that name) limited to `scopes`, valid until
/// `expires_at` when given, and returns it; only its hash is kept.
pub fn create_scoped(
    conn: &mut DbConnection,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<NaiveDateTime>,
    created_by: Option<&str>,
) -> QueryResult<String> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("iria_{}", URL_SAFE_NO_PAD.encode(bytes));
    db::write_transaction(conn, |conn| {
        diesel::delete(api_tokens::table.filter(api_tokens::name.eq(name))).execute(conn)?;
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::name.eq(name),
                api_tokens::token_hash.eq(hash(&token)),
                api_tokens::created_at.eq(db::now()),
                api_tokens::scopes.eq(Some(Scope::join(scopes))),
                api_tokens::expires_at.eq(expires_at),
                api_tokens::created_by.eq(created_by),
            ))
            .execute(conn)
    })?;
    Ok(token)
}

/// The token's name and grant, when it is one of ours and has not expired.
pub fn verify(conn: &mut DbConnection, token: &str) -> QueryResult<Option<Verified>> {
    let found: Option<(i64, String, Option<String>, Option<NaiveDateTime>)> = api_tokens::table
        .filter(api_tokens::token_hash.eq(hash(token)))
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::scopes,
            api_tokens::expires_at,
        ))
        .first(conn)
        .optional()?;
    let Some((id, name, scopes, expires_at)) = found else {
        return Ok(None);
    };
    let now = db::now();
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    diesel::update(api_tokens::table.find(id))
        .set(api_tokens::last_used_at.eq(Some(now)))
        .execute(conn)?;
    Ok(Some(Verified {
        name,
        grant: grant_of(scopes.as_deref()),
    }))
}

/// Every token, by name.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Listed>> {
    type Row = (
        i64,
        String,
        Option<String>,
        NaiveDateTime,
        Option<String>,
        Option<NaiveDateTime>,
        Option<NaiveDateTime>,
    );
    Ok(api_tokens::table
        .order(api_tokens::name.asc())
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::scopes,
            api_tokens::created_at,
            api_tokens::created_by,
            api_tokens::last_used_at,
            api_tokens::expires_at,
        ))
        .load::<Row>(conn)?
        .into_iter()
        .map(
            |(id, name, scopes, created_at, created_by, last_used_at, expires_at)| Listed {
                id,
                name,
                grant: grant_of(scopes.as_deref()),
                created_at,
                created_by,
                last_used_at,
                expires_at,
            },
        )
        .collect())
}

/// Revokes a token: the name of the token revoked, if there was one.
pub fn revoke(conn: &mut DbConnection, id: i64) -> QueryResult<Option<String>> {
    db::write_transaction(conn, |conn| {
        let name: Option<String> = api_tokens::table
            .find(id)
            .select(api_tokens::name)
            .first(conn)
            .optional()?;
        diesel::delete(api_tokens::table.find(id)).execute(conn)?;
        Ok(name)
    })
}
