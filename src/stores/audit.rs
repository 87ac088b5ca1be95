//! The audit log: who did what, when, from where. Every login (success, failure, lockout),
//! second-factor and role change, send, schedule, test copy, digest run or skip, subscriber
//! export, import and erasure, token creation and revocation leaves one row. Rows are kept for
//! `IRIA_AUDIT_RETENTION_DAYS`. An erased reader's address leaves every entry that held it
//! ([`forget_address`], called by the erasure): a low store, which other stores may call.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::audit_log;
use crate::foundation::db::{self, DbConnection};

/// One thing done: who (`editor NAME`, `token NAME`, `operator` for the command line, or the
/// name tried at a failed login), from which client address, which action, and its details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub detail: String,
}

impl Entry {
    pub fn new(actor: impl Into<String>, ip: impl Into<String>, action: &str) -> Self {
        Entry {
            actor: actor.into(),
            ip: ip.into(),
            action: action.to_string(),
            detail: String::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    pub at: NaiveDateTime,
    pub entry: Entry,
}

/// What to list: entries of one actor, one action, from a time on; the latest first.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

/// Writes one entry.
pub fn record(conn: &mut DbConnection, entry: &Entry) -> QueryResult<()> {
    // NUL cannot be stored in PostgreSQL text; the rest is kept as given, at a bounded length.
    let clean =
        |s: &str, max: usize| -> String { s.chars().filter(|c| *c != '\0').take(max).collect() };
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(db::now()),
            audit_log::actor.eq(clean(&entry.actor, 200)),
            audit_log::ip.eq(clean(&entry.ip, 64)),
            audit_log::action.eq(clean(&entry.action, 64)),
            audit_log::detail.eq(clean(&entry.detail, 2000)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Entries matching `filter`, the latest first, `limit` from `offset`.
pub fn list(
    conn: &mut DbConnection,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<Recorded>> {
    let mut query = audit_log::table.into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_log::actor.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_log::at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_log::at.lt(until));
    }
    Ok(query
        .order((audit_log::at.desc(), audit_log::id.desc()))
        .limit(limit)
        .offset(offset)
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor,
            audit_log::ip,
            audit_log::action,
            audit_log::detail,
        ))
        .load::<(i64, NaiveDateTime, String, String, String, String)>(conn)?
        .into_iter()
        .map(|(id, at, actor, ip, action, detail)| Recorded {
            id,
            at,
            entry: Entry {
                actor,
                ip,
                action,
                detail,
            },
        })
        .collect())
}

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// What an erased reader's address becomes in the entries that held it.
pub const ERASED_ADDRESS: &str = "(an erased reader's address)";

/// Takes an erased reader's address out of every entry (a test copy sent to it, a login tried
/// with it as the name): the log keeps that something happened, not to whom. Called by the
/// erasure, in its transaction. How many entries changed.
pub fn forget_address(conn: &mut DbConnection, email: &str) -> QueryResult<usize> {
    if email.is_empty() {
        return Ok(0);
    }
    let email_lower = email.to_ascii_lowercase();
    let holding: Vec<(i64, String, String)> = audit_log::table
        .filter(
            lower(audit_log::detail)
                .like(format!("%{}%", like_escaped(&email_lower)))
                .escape('\\')
                .or(lower(audit_log::actor)
                    .like(like_escaped(&email_lower))
                    .escape('\\')),
        )
        .select((audit_log::id, audit_log::actor, audit_log::detail))
        .load(conn)?;
    for (id, actor, detail) in &holding {
        diesel::update(audit_log::table.find(id))
            .set((
                audit_log::actor.eq(without(actor, email)),
                audit_log::detail.eq(without(detail, email)),
            ))
            .execute(conn)?;
    }
    Ok(holding.len())
}

/// `text` with every occurrence of `email` (in any case of its ASCII letters) replaced by
/// [`ERASED_ADDRESS`].
fn without(text: &str, email: &str) -> String {
    let (haystack, needle) = (text.to_ascii_lowercase(), email.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(at) = haystack[from..].find(&needle) {
        out.push_str(&text[from..from + at]);
        out.push_str(ERASED_ADDRESS);
        from += at + needle.len();
    }
    out.push_str(&text[from..]);
    out
}

/// `text` for a LIKE pattern: its `%`, `_` and `\` taken literally.
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Deletes entries older than `days` days; how many went.
pub fn purge(conn: &mut DbConnection, days: u32) -> QueryResult<usize> {
    let cutoff = db::now() - chrono::Duration::days(i64::from(days));
    diesel::delete(audit_log::table.filter(audit_log::at.lt(cutoff))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_leaves_the_text_in_any_case() {
        assert_eq!(
            without(
                "test copy to Reader@Example.org and reader@example.org",
                "reader@example.org"
            ),
            format!("test copy to {ERASED_ADDRESS} and {ERASED_ADDRESS}")
        );
        assert_eq!(
            without("nothing here", "reader@example.org"),
            "nothing here"
        );
        assert_eq!(like_escaped("a_b%c"), "a\\_b\\%c");
    }
}
