//! The audit log: who did what, when, from where. Every login (success, failure, lockout),
//! second-factor and role change, send, schedule, test copy, digest run or skip, subscriber
//! export, import and erasure, token creation and revocation leaves one row. Rows are kept for
//! `IRIA_AUDIT_RETENTION_DAYS`.

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

/// Deletes entries older than `days` days; how many went.
pub fn purge(conn: &mut DbConnection, days: u32) -> QueryResult<usize> {
    let cutoff = db::now() - chrono::Duration::days(i64::from(days));
    diesel::delete(audit_log::table.filter(audit_log::at.lt(cutoff))).execute(conn)
}
