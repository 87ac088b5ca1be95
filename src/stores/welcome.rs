//! The welcome email a reader gets once confirmed: its subject and Markdown body as the editors
//! wrote them in the console, and whether it is sent at all. The only writer of
//! `welcome_message`, which holds at most one row; without one, the built-in text is sent.

use askama::Template;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::config::Settings;
use crate::foundation::db::schema::welcome_message;
use crate::foundation::db::DbConnection;

/// The welcome email as it will go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// Sent to each reader who confirms (on unless an editor turned it off).
    pub enabled: bool,
    pub subject: String,
    /// Markdown, composed like an editor's issue.
    pub body: String,
    /// When an editor last saved it, and who; `None` for the built-in text.
    pub updated_at: Option<NaiveDateTime>,
    pub updated_by: Option<String>,
}

/// The built-in body: what to expect, when the digest comes, where the links are.
#[derive(Template)]
#[template(path = "emails/welcome_default.md")]
struct DefaultBody<'a> {
    site_name: &'a str,
    /// "every Monday at 08:00 (Europe/Paris)".
    schedule: &'a str,
    archive: &'a str,
}

/// The built-in welcome email of this installation: its digest schedule in words.
pub fn default_for(settings: &Settings) -> Welcome {
    let schedule = settings.schedule.describe(chrono::Utc::now());
    let archive = settings.link("/archive");
    let body = DefaultBody {
        site_name: &settings.site_name,
        schedule: &schedule,
        archive: &archive,
    }
    .render()
    // A template of plain text cannot fail to render; if it ever did, a short welcome is
    // better than none.
    .unwrap_or_else(|_| {
        format!(
            "Thank you for confirming your subscription to {}.",
            settings.site_name
        )
    });
    Welcome {
        enabled: true,
        subject: format!("Welcome to {}", settings.site_name),
        body,
        updated_at: None,
        updated_by: None,
    }
}

type Row = (i32, String, String, NaiveDateTime, Option<String>);

/// The welcome email as the editors left it, or the built-in one.
pub fn current(conn: &mut DbConnection, settings: &Settings) -> QueryResult<Welcome> {
    let stored: Option<Row> = welcome_message::table
        .select((
            welcome_message::enabled,
            welcome_message::subject,
            welcome_message::body,
            welcome_message::updated_at,
            welcome_message::updated_by,
        ))
        .first(conn)
        .optional()?;
    Ok(match stored {
        Some((enabled, subject, body, updated_at, updated_by)) => Welcome {
            enabled: enabled != 0,
            subject,
            body,
            updated_at: Some(updated_at),
            updated_by,
        },
        None => default_for(settings),
    })
}

/// Whether a reader who confirms now is welcomed (cheaper than [`current`]: one column).
pub fn enabled(conn: &mut DbConnection) -> QueryResult<bool> {
    let stored: Option<i32> = welcome_message::table
        .select(welcome_message::enabled)
        .first(conn)
        .optional()?;
    Ok(stored.is_none_or(|e| e != 0))
}

/// Keeps an editor's welcome email (checked by the caller: a clean subject, a body that
/// composes). One row, replaced.
pub fn save(
    conn: &mut DbConnection,
    welcome: &Welcome,
    by: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let values = (
        welcome_message::enabled.eq(i32::from(welcome.enabled)),
        welcome_message::subject.eq(&welcome.subject),
        welcome_message::body.eq(&welcome.body),
        welcome_message::updated_at.eq(now),
        welcome_message::updated_by.eq(Some(by)),
    );
    let updated = diesel::update(welcome_message::table.find(1_i64))
        .set(values)
        .execute(conn)?;
    if updated > 0 {
        return Ok(());
    }
    let inserted = diesel::insert_into(welcome_message::table)
        .values((welcome_message::id.eq(1_i64), values))
        .execute(conn);
    match inserted {
        // Two editors saving the first version at once: the later one's text stands.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => diesel::update(welcome_message::table.find(1_i64))
            .set(values)
            .execute(conn)
            .map(|_| ()),
        other => other.map(|_| ()),
    }
}
