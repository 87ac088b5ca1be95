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
        Some(t) if !t.trim().is_empty() => t.replace(['\r', '\0'], ""),
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

/// When a new issue goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Queued to its audience at once.
    Now,
    /// Kept as a draft until this time (UTC), then queued by [`queue_due`].
    At(NaiveDateTime),
    /// Kept as a draft until sent by [`send_draft`].
    Later,
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
    create(conn, settings, draft, When::Now, None)
}

/// As [`create_and_queue`], queued now, at a time, or kept as a draft; `by` names the editor.
pub fn create(
    conn: &mut DbConnection,
    settings: &Settings,
    draft: &Draft,
    when: When,
    by: Option<&str>,
) -> Result<Queued, IssueError> {
    let composed = compose(settings, draft)?;
    let made = db::write_transaction(conn, |conn| {
        if let Some(existing) = find_by_keys(conn, draft)? {
            return Ok(Queued {
                issue_id: existing.0,
                recipients: existing.1 as usize,
                created: false,
            });
        }
        let now = db::now();
        let (status, send_at) = match when {
            When::Now => ("queued", None),
            When::At(at) => ("draft", Some(at)),
            When::Later => ("draft", None),
        };
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
                issues::status.eq(status),
                issues::created_at.eq(now),
                issues::queued_at.eq((when == When::Now).then_some(now)),
                issues::send_at.eq(send_at),
                issues::created_by.eq(by),
            ))
            .returning(issues::id)
            .get_result(conn)?;
        let recipients = if when == When::Now {
            queue_to_audience(conn, issue_id, &draft.topics, now)?
        } else {
            0
        };
        Ok(Queued {
            issue_id,
            recipients,
            created: true,
        })
    });
    match made {
        // The same key at the same moment from another request (a double click on PostgreSQL,
        // where both transactions looked before either wrote): the other one's issue stands.
        Err(IssueError::Db(DbError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )))) if draft.idempotency_key.is_some() || draft.period_key.is_some() => {
            let existing = find_by_keys(conn, draft)?
                .ok_or(IssueError::Render("an issue with this key vanished".into()))?;
            Ok(Queued {
                issue_id: existing.0,
                recipients: existing.1 as usize,
                created: false,
            })
        }
        other => other,
    }
}

fn queue_to_audience(
    conn: &mut DbConnection,
    issue_id: i64,
    topics: &[String],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let recipients = delivery::queue_issue(conn, issue_id, topics, now)?;
    diesel::update(issues::table.find(issue_id))
        .set(issues::recipients.eq(recipients as i32))
        .execute(conn)?;
    Ok(recipients)
}

/// Queues a draft to its audience now. Only one caller wins: the draft becomes `queued` in the
/// same transaction, so a double click, two processes or the scheduler and an editor at once
/// queue it once. `Ok(None)` when there is no such draft (sent already, or unknown).
pub fn send_draft(conn: &mut DbConnection, issue_id: i64) -> QueryResult<Option<Queued>> {
    db::write_transaction(conn, |conn| {
        let now = db::now();
        let taken = diesel::update(
            issues::table
                .find(issue_id)
                .filter(issues::status.eq("draft")),
        )
        .set((issues::status.eq("queued"), issues::queued_at.eq(Some(now))))
        .execute(conn)?;
        if taken == 0 {
            return Ok(None);
        }
        let topics: String = issues::table
            .find(issue_id)
            .select(issues::topics)
            .first(conn)?;
        let topics: Vec<String> = topics
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        let recipients = queue_to_audience(conn, issue_id, &topics, now)?;
        Ok(Some(Queued {
            issue_id,
            recipients,
            created: true,
        }))
    })
}

/// Sets or clears the time a draft goes out; `false` when it is not a draft any more.
pub fn schedule_draft(
    conn: &mut DbConnection,
    issue_id: i64,
    at: Option<NaiveDateTime>,
) -> QueryResult<bool> {
    Ok(diesel::update(
        issues::table
            .find(issue_id)
            .filter(issues::status.eq("draft")),
    )
    .set(issues::send_at.eq(at))
    .execute(conn)?
        == 1)
}

/// Queues every draft whose time has come; returns what was queued.
pub fn queue_due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<Queued>> {
    let due: Vec<i64> = issues::table
        .filter(issues::status.eq("draft"))
        .filter(issues::send_at.le(now))
        .select(issues::id)
        .order(issues::id)
        .load(conn)?;
    let mut queued = Vec::new();
    for id in due {
        if let Some(q) = send_draft(conn, id)? {
            queued.push(q);
        }
    }
    Ok(queued)
}

/// Queues scheduled issues when their time comes, every 15 seconds, until the process stops.
pub async fn queue_due_forever(pool: db::Pool, wake: std::sync::Arc<tokio::sync::Notify>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(15));
    loop {
        tick.tick().await;
        match db::run(&pool, |conn| Ok(queue_due(conn, db::now())?)).await {
            Ok(queued) if !queued.is_empty() => {
                for q in &queued {
                    tracing::info!(
                        issue = q.issue_id,
                        recipients = q.recipients,
                        "scheduled issue queued"
                    );
                }
                wake.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checking for scheduled issues failed; next time"),
        }
    }
}

/// An editor's body as HTML: Markdown is rendered (raw HTML inside it is kept, then sanitised
/// with the rest by [`compose`]); HTML is taken as it is.
pub fn body_html(body: &str, markdown: bool) -> String {
    if !markdown {
        return body.to_string();
    }
    let mut options = pulldown_cmark::Options::empty();
    options.insert(pulldown_cmark::Options::ENABLE_TABLES);
    options.insert(pulldown_cmark::Options::ENABLE_STRIKETHROUGH);
    let parser = pulldown_cmark::Parser::new_ext(body, options);
    let mut html = String::with_capacity(body.len() * 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

/// An issue as the console and the API list it.
#[derive(Clone, Debug, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = issues)]
pub struct Summary {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub status: String,
    pub recipients: i32,
    pub topics: String,
    pub created_at: NaiveDateTime,
    pub queued_at: Option<NaiveDateTime>,
    pub send_at: Option<NaiveDateTime>,
    pub created_by: Option<String>,
}

/// The latest issues, newest first.
pub fn latest(conn: &mut DbConnection, limit: i64, offset: i64) -> QueryResult<Vec<Summary>> {
    issues::table
        .order(issues::id.desc())
        .limit(limit)
        .offset(offset)
        .select(Summary::as_select())
        .load(conn)
}

/// One issue's summary.
pub fn summary(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Summary>> {
    issues::table
        .find(id)
        .select(Summary::as_select())
        .first(conn)
        .optional()
}

/// One issue's HTML and text, as stored (with the recipient marks in place).
pub fn parts(conn: &mut DbConnection, id: i64) -> QueryResult<Option<(String, String)>> {
    issues::table
        .find(id)
        .select((issues::html, issues::text))
        .first(conn)
        .optional()
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
