//! Newsletter issues: an editor's announcement or a weekly digest, composed once (sanitised,
//! laid out, CSS inlined) and queued to its audience in one statement. Only the per-recipient
//! links differ between copies; they are filled in by [`crate::messages::newsletter`].

use askama::Template;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::config::Settings;
use crate::db::schema::issues;
use crate::db::{self, DbConnection, DbError};
use crate::delivery;

/// Where each recipient's unsubscribe link goes in a composed issue.
pub const UNSUBSCRIBE_MARK: &str = "%%IRIA_UNSUBSCRIBE_URL%%";
/// Where each recipient's preferences link goes in a composed issue.
pub const PREFERENCES_MARK: &str = "%%IRIA_PREFERENCES_URL%%";
/// Gmail clips messages whose HTML is larger than this (checklist line 9).
pub const MAX_HTML_BYTES: usize = 102 * 1024;

/// What kind of issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Announcement,
    Digest,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Announcement => "announcement",
            Kind::Digest => "digest",
        }
    }
}

/// An issue before it is composed.
#[derive(Clone, Debug)]
pub struct Draft {
    pub kind: Kind,
    pub subject: String,
    /// The line mail programs show after the subject.
    pub preheader: String,
    /// The body as the editor wrote it (HTML); sanitised here.
    pub body_html: String,
    /// The text version; derived from the HTML when absent.
    pub body_text: Option<String>,
    /// The audience: subscribers who chose one of these (or none); empty for everyone.
    pub topics: Vec<String>,
    pub period_key: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Why an issue could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the subject is empty")]
    EmptySubject,
    #[error("the subject is longer than 200 characters")]
    SubjectTooLong,
    #[error("the body is empty once unsafe HTML is removed")]
    EmptyBody,
    #[error("the HTML is {0} bytes; mail programs clip messages over {MAX_HTML_BYTES} bytes")]
    TooLarge(usize),
    #[error("rendering the issue failed: {0}")]
    Render(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for IssueError {
    fn from(e: diesel::result::Error) -> Self {
        IssueError::Db(DbError::Query(e))
    }
}

#[derive(Template)]
#[template(path = "emails/issue.html")]
struct IssueHtml<'a> {
    site_name: &'a str,
    subject: &'a str,
    preheader: &'a str,
    body: &'a str,
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
    home: &'a str,
}

#[derive(Template)]
#[template(path = "emails/issue.txt")]
struct IssueText<'a> {
    site_name: &'a str,
    subject: &'a str,
    body: &'a str,
    unsubscribe_url: &'a str,
    preferences_url: &'a str,
}

/// An issue ready to send: HTML and text with the recipient marks in place.
#[derive(Clone, Debug)]
pub struct Composed {
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text: String,
}

/// A subject as it may go into a header: one line, no control characters, at most 200
/// characters. (lettre encodes non-ASCII subjects per RFC 2047.)
pub fn clean_subject(raw: &str) -> Result<String, IssueError> {
    let one_line = crate::domain::single_line(raw);
    if one_line.is_empty() {
        return Err(IssueError::EmptySubject);
    }
    if one_line.chars().count() > 200 {
        return Err(IssueError::SubjectTooLong);
    }
    Ok(one_line)
}

/// Sanitises an editor's HTML: scripts, event handlers, forms, frames and the like go; the
/// recipient marks cannot be smuggled in.
pub fn sanitize(html: &str) -> String {
    let cleaned = ammonia::Builder::default()
        .add_tags(["center", "font"])
        .add_generic_attributes([
            "align",
            "style",
            "width",
            "height",
            "cellpadding",
            "cellspacing",
            "role",
            "valign",
        ])
        // Nothing wider than the 600 px frame: a wider fixed width is dropped.
        .attribute_filter(|_element, attribute, value| {
            let too_wide = attribute == "width"
                && value
                    .trim_end_matches("px")
                    .trim()
                    .parse::<u32>()
                    .is_ok_and(|px| px > 600);
            (!too_wide).then(|| value.into())
        })
        .clean(html)
        .to_string();
    cleaned
        .replace(UNSUBSCRIBE_MARK, "")
        .replace(PREFERENCES_MARK, "")
}

/// Composes an issue: the editor's body inside the IRIA layout, CSS inlined, and a text part.
pub fn compose(settings: &Settings, draft: &Draft) -> Result<Composed, IssueError> {
    let subject = clean_subject(&draft.subject)?;
    let body = sanitize(&draft.body_html);
    if body.trim().is_empty() {
        return Err(IssueError::EmptyBody);
    }
    let text_body = match &draft.body_text {
        Some(t) if !t.trim().is_empty() => t.replace('\r', ""),
        _ => html2text::from_read(body.as_bytes(), 78)
            .map_err(|e| IssueError::Render(e.to_string()))?,
    };
    // The preheader (the line a mail program shows after the subject): the editor's, or the
    // start of the text.
    let source = if draft.preheader.trim().is_empty() {
        text_body.as_str()
    } else {
        draft.preheader.as_str()
    };
    // Markdown-ish marks from the text conversion ("# Title", "**bold**") are dropped.
    let preheader: String = crate::domain::single_line(&source.replace(['#', '*'], " "))
        .chars()
        .take(150)
        .collect();
    let home = settings.link("/");
    let html = IssueHtml {
        site_name: &settings.site_name,
        subject: &subject,
        preheader: &preheader,
        body: &body,
        unsubscribe_url: UNSUBSCRIBE_MARK,
        preferences_url: PREFERENCES_MARK,
        home: &home,
    }
    .render()
    .map_err(|e| IssueError::Render(e.to_string()))?;
    let html = inline_css(&html)?;
    if html.len() > MAX_HTML_BYTES {
        return Err(IssueError::TooLarge(html.len()));
    }
    let text = IssueText {
        site_name: &settings.site_name,
        subject: &subject,
        body: &text_body,
        unsubscribe_url: UNSUBSCRIBE_MARK,
        preferences_url: PREFERENCES_MARK,
    }
    .render()
    .map_err(|e| IssueError::Render(e.to_string()))?;
    Ok(Composed {
        subject,
        preheader,
        html,
        text: wrap_long_lines(&text),
    })
}

/// Moves the `<style>` rules onto the elements, as mail programs that drop `<style>` need; the
/// block stays for the media queries (dark mode) of those that keep it.
pub fn inline_css(html: &str) -> Result<String, IssueError> {
    let inliner = css_inline::CSSInliner::options()
        .keep_style_tags(true)
        .load_remote_stylesheets(false)
        .build();
    inliner
        .inline(html)
        .map_err(|e| IssueError::Render(format!("inlining CSS: {e}")))
}

/// No line of the text part may exceed 998 octets (RFC 5322); very long words are broken.
fn wrap_long_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut current = 0usize;
        for ch in line.chars() {
            if current + ch.len_utf8() > 900 {
                out.push('\n');
                current = 0;
            }
            out.push(ch);
            current += ch.len_utf8();
        }
        out.push('\n');
    }
    out
}

/// Composes an issue, stores it and queues it to its audience, in one transaction. With an
/// idempotency key (an editor's form) or a period key (a digest) that is already on file,
/// nothing new is made or queued: the existing issue is returned, so a double click, a reload or
/// a second instance sends once.
pub fn create_and_queue(
    conn: &mut DbConnection,
    settings: &Settings,
    draft: &Draft,
) -> Result<Queued, IssueError> {
    let composed = compose(settings, draft)?;
    db::write_transaction(conn, |conn| {
        if let Some(existing) = find_by_keys(conn, draft)? {
            return Ok(Queued {
                issue_id: existing.0,
                recipients: existing.1 as usize,
                created: false,
            });
        }
        let now = db::now();
        let issue_id: i64 = diesel::insert_into(issues::table)
            .values((
                issues::kind.eq(draft.kind.as_str()),
                issues::subject.eq(&composed.subject),
                issues::preheader.eq(&composed.preheader),
                issues::html.eq(&composed.html),
                issues::text.eq(&composed.text),
                issues::topics.eq(draft.topics.join(",")),
                issues::period_key.eq(&draft.period_key),
                issues::idempotency_key.eq(&draft.idempotency_key),
                issues::status.eq("queued"),
                issues::created_at.eq(now),
                issues::queued_at.eq(Some(now)),
            ))
            .returning(issues::id)
            .get_result(conn)?;
        let recipients = delivery::queue_issue(conn, issue_id, &draft.topics, now)?;
        diesel::update(issues::table.find(issue_id))
            .set(issues::recipients.eq(recipients as i32))
            .execute(conn)?;
        Ok(Queued {
            issue_id,
            recipients,
            created: true,
        })
    })
}

fn find_by_keys(conn: &mut DbConnection, draft: &Draft) -> QueryResult<Option<(i64, i32)>> {
    if let Some(key) = &draft.idempotency_key {
        let found = issues::table
            .filter(issues::idempotency_key.eq(key))
            .select((issues::id, issues::recipients))
            .first(conn)
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let Some(key) = &draft.period_key {
        return issues::table
            .filter(issues::period_key.eq(key))
            .select((issues::id, issues::recipients))
            .first(conn)
            .optional();
    }
    Ok(None)
}

/// The outcome of [`create_and_queue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queued {
    pub issue_id: i64,
    pub recipients: usize,
    /// False when the keys named an issue already on file (nothing new was queued).
    pub created: bool,
}

/// What the worker needs of an issue to write each copy: its parts encoded once.
#[derive(Clone, Debug)]
pub struct IssueContent {
    pub id: i64,
    pub subject: String,
    pub html: crate::messages::PreparedPart,
    pub text: crate::messages::PreparedPart,
    pub created_at: NaiveDateTime,
}

impl IssueContent {
    /// Prepares a composed issue for sending.
    pub fn new(
        id: i64,
        subject: String,
        html: &str,
        text: &str,
        created_at: NaiveDateTime,
    ) -> Self {
        use crate::messages::PreparedPart;
        Self {
            id,
            subject,
            html: PreparedPart::prepare(html),
            text: PreparedPart::prepare(text),
            created_at,
        }
    }
}

/// The issues with these ids, prepared for sending.
pub fn contents(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<IssueContent>> {
    let rows: Vec<(i64, String, String, String, NaiveDateTime)> = issues::table
        .filter(issues::id.eq_any(ids))
        .select((
            issues::id,
            issues::subject,
            issues::html,
            issues::text,
            issues::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, subject, html, text, created_at)| {
            IssueContent::new(id, subject, &html, &text, created_at)
        })
        .collect())
}
