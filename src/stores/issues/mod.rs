//! Newsletter issues: an editor's announcement or a weekly digest, stored once composed
//! (`processes::compose`) and queued to its audience in one statement. Only the per-recipient
//! links differ between copies; they are filled in by `processes::messages::newsletter`. Queueing
//! an issue records `issue.sent` for the webhooks in the same transaction. The only writer of
//! `issues`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::foundation::db::schema::issues;
use crate::foundation::db::{self, DbConnection, DbError};
use crate::stores::{delivery, engagement, webhooks};

/// Where each recipient's unsubscribe link goes in a composed issue.
pub const UNSUBSCRIBE_MARK: &str = "%%IRIA_UNSUBSCRIBE_URL%%";
/// Where each recipient's preferences link goes in a composed issue.
pub const PREFERENCES_MARK: &str = "%%IRIA_PREFERENCES_URL%%";
/// Where the link to the issue's web copy goes ("View in your browser"): the issue is stored
/// before its id is known, so the link is filled in when each copy is written.
pub const VIEW_MARK: &str = "%%IRIA_VIEW_URL%%";
/// Gmail clips messages whose HTML is larger than this.
pub const MAX_HTML_BYTES: usize = 102 * 1024;

/// The longest body an editor may write (Markdown or HTML), in characters.
pub const MAX_BODY_CHARS: usize = 60_000;
/// The longest idempotency key a request may carry, in characters.
pub const MAX_KEY_CHARS: usize = 100;

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

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "announcement" => Kind::Announcement,
            "digest" => Kind::Digest,
            _ => return None,
        })
    }
}

/// Where an issue stands, as stored: a `draft` (kept, perhaps with a time to go out) or `queued`
/// to its audience (its copies are then in the delivery ledger).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Draft,
    Queued,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Queued => "queued",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => Status::Draft,
            "queued" => Status::Queued,
            _ => return None,
        })
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
    #[error("topics: unknown topic {0:?}; the site's topics are {1}")]
    UnknownTopic(String, String),
    #[error("the body is longer than {MAX_BODY_CHARS} characters")]
    BodyTooLong,
    #[error("the idempotency key is longer than {MAX_KEY_CHARS} characters")]
    KeyTooLong,
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

/// An issue ready to send: HTML and text with the recipient marks in place.
#[derive(Clone, Debug)]
pub struct Composed {
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text: String,
    /// The links of its parts, in order, when they are tracked.
    pub links: engagement::Links,
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

/// Stores a composed issue and queues it to its audience now, or keeps it as a draft (with a
/// time to go out, or none), in one transaction; `by` names the editor. With an idempotency key
/// (an editor's form) or a period key that is already on file, nothing new is made or queued:
/// the existing issue is returned, so a double click, a reload or a second instance sends once.
pub fn create(
    conn: &mut DbConnection,
    draft: &Draft,
    composed: &Composed,
    when: When,
    by: Option<&str>,
) -> Result<Queued, IssueError> {
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
            When::Now => (Status::Queued, None),
            When::At(at) => (Status::Draft, Some(at)),
            When::Later => (Status::Draft, None),
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
                issues::status.eq(status.as_str()),
                issues::created_at.eq(now),
                issues::queued_at.eq((when == When::Now).then_some(now)),
                issues::send_at.eq(send_at),
                issues::created_by.eq(by),
                issues::click_tracking.eq(composed.links.mode.as_deref()),
            ))
            .returning(issues::id)
            .get_result(conn)?;
        engagement::store_links(conn, issue_id, &composed.links)?;
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
    report_sent(conn, issue_id, recipients)?;
    Ok(recipients)
}

/// Tells the webhooks, in the queueing transaction, that an issue was handed to the delivery
/// queue (`issue.sent`): "sent" means queued, one copy per recipient, not yet delivered.
fn report_sent(conn: &mut DbConnection, issue_id: i64, recipients: usize) -> QueryResult<usize> {
    let (kind, subject): (String, String) = issues::table
        .find(issue_id)
        .select((issues::kind, issues::subject))
        .first(conn)?;
    webhooks::emit(
        conn,
        webhooks::Event::IssueSent,
        None,
        serde_json::json!({
            "issue_id": issue_id,
            "kind": kind,
            "subject": subject,
            "recipients": recipients,
        }),
    )
}

/// Stores one audience's issue of a digest and queues it to the confirmed subscribers whose
/// chosen topics are exactly `topics` (the digest was made for that choice), with `issue.sent`
/// for the webhooks. Called inside the digest's transaction; returns the issue and how many
/// copies were queued.
pub fn create_digest_issue(
    conn: &mut DbConnection,
    composed: &Composed,
    topics: &str,
    digest_id: i64,
    now: NaiveDateTime,
) -> QueryResult<(i64, usize)> {
    let issue_id: i64 = diesel::insert_into(issues::table)
        .values((
            issues::kind.eq(Kind::Digest.as_str()),
            issues::subject.eq(&composed.subject),
            issues::preheader.eq(&composed.preheader),
            issues::html.eq(&composed.html),
            issues::text.eq(&composed.text),
            issues::topics.eq(topics),
            issues::status.eq(Status::Queued.as_str()),
            issues::created_at.eq(now),
            issues::queued_at.eq(Some(now)),
            issues::digest_id.eq(Some(digest_id)),
            issues::audience_topics.eq(Some(topics)),
            issues::click_tracking.eq(composed.links.mode.as_deref()),
        ))
        .returning(issues::id)
        .get_result(conn)?;
    engagement::store_links(conn, issue_id, &composed.links)?;
    let recipients = delivery::queue_issue_for_exact_topics(conn, issue_id, topics, now)?;
    diesel::update(issues::table.find(issue_id))
        .set(issues::recipients.eq(recipients as i32))
        .execute(conn)?;
    report_sent(conn, issue_id, recipients)?;
    Ok((issue_id, recipients))
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
                .filter(issues::status.eq(Status::Draft.as_str())),
        )
        .set((
            issues::status.eq(Status::Queued.as_str()),
            issues::queued_at.eq(Some(now)),
        ))
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
            .filter(issues::status.eq(Status::Draft.as_str())),
    )
    .set(issues::send_at.eq(at))
    .execute(conn)?
        == 1)
}

/// Queues every draft whose time has come; returns what was queued.
pub fn queue_due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<Queued>> {
    let due: Vec<i64> = issues::table
        .filter(issues::status.eq(Status::Draft.as_str()))
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

impl Summary {
    /// Still a draft (perhaps with a time to go out), not yet queued to its audience.
    pub fn is_draft(&self) -> bool {
        Status::parse(&self.status) == Some(Status::Draft)
    }
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

/// The issues a digest was sent as, one per audience: (issue, the topics it was made for; empty
/// for readers of every topic), in the order they were made.
pub fn of_digest(conn: &mut DbConnection, digest_id: i64) -> QueryResult<Vec<(i64, String)>> {
    let rows: Vec<(i64, Option<String>)> = issues::table
        .filter(issues::digest_id.eq(Some(digest_id)))
        .order(issues::id)
        .select((issues::id, issues::audience_topics))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, topics)| (id, topics.unwrap_or_default()))
        .collect())
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

/// What the worker needs of an issue to write each copy, as stored.
#[derive(Clone, Debug, Queryable)]
pub struct Content {
    pub id: i64,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub created_at: NaiveDateTime,
    pub kind: String,
    /// Its audience's topics, comma-separated (empty: everyone).
    pub topics: String,
}

/// The issues with these ids, as stored for sending.
pub fn contents(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Content>> {
    issues::table
        .filter(issues::id.eq_any(ids))
        .select((
            issues::id,
            issues::subject,
            issues::html,
            issues::text,
            issues::created_at,
            issues::kind,
            issues::topics,
        ))
        .load(conn)
}
