//! API tokens: made by `iria-news admin create-token NAME`, shown once, stored as a hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::foundation::db::schema::api_tokens;
use crate::foundation::db::{self, DbConnection};

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Makes a token named `name` (replacing one of that name) and returns it; only its hash is kept.
pub fn create(conn: &mut DbConnection, name: &str) -> QueryResult<String> {
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
            ))
            .execute(conn)
    })?;
    Ok(token)
}

/// The name of the token, when it is one of ours.
pub fn verify(conn: &mut DbConnection, token: &str) -> QueryResult<Option<String>> {
    let name: Option<String> = api_tokens::table
        .filter(api_tokens::token_hash.eq(hash(token)))
        .select(api_tokens::name)
        .first(conn)
        .optional()?;
    if name.is_some() {
        diesel::update(api_tokens::table.filter(api_tokens::token_hash.eq(hash(token))))
            .set(api_tokens::last_used_at.eq(Some(db::now())))
            .execute(conn)?;
    }
    Ok(name)
}
