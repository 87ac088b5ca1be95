//! Composing an issue: the editor's body (Markdown or HTML) sanitised, laid out in the IRIA
//! template with the recipient marks in place, CSS inlined, and a text part; then stored and
//! queued by the issues store.

use askama::Template;

use crate::foundation::config::Settings;
use crate::foundation::db::DbConnection;
use crate::stores::issues::{
    self, Composed, Draft, IssueError, Kind, Queued, When, MAX_BODY_CHARS, MAX_HTML_BYTES,
    MAX_KEY_CHARS, PREFERENCES_MARK, UNSUBSCRIBE_MARK,
};

/// Where an editor's announcement comes from. Each door keeps its idempotency keys apart, so a
/// key sent to the API never meets a console form's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Console,
    Api,
    CommandLine,
}

/// An editor's announcement as it arrives through any door, before the rules are applied.
#[derive(Clone, Debug)]
pub struct Announcement {
    pub subject: String,
    pub preheader: String,
    pub body: String,
    /// The body is Markdown (else HTML).
    pub markdown: bool,
    /// A text version written by hand; derived from the HTML when absent.
    pub text: Option<String>,
    /// The audience: subscribers who chose one of these (or none); empty for everyone.
    pub topics: Vec<String>,
    /// Makes a repeated request (a double click, a retry) send once.
    pub idempotency_key: Option<String>,
}

impl Announcement {
    /// The draft of this announcement, under the one set of rules the console, the API and the
    /// command line share: the topics are the site's, the body at most [`MAX_BODY_CHARS`]
    /// characters, the idempotency key (trimmed; empty means none) at most [`MAX_KEY_CHARS`].
    /// The subject and the composed size are checked by [`compose`].
    pub fn into_draft(self, settings: &Settings, door: Door) -> Result<Draft, IssueError> {
        if let Some(unknown) = self.topics.iter().find(|t| !settings.topics.contains(t)) {
            let shown: String = unknown.chars().take(40).collect();
            return Err(IssueError::UnknownTopic(shown, settings.topics.join(", ")));
        }
        if self.body.chars().count() > MAX_BODY_CHARS {
            return Err(IssueError::BodyTooLong);
        }
        let key = self
            .idempotency_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if key.is_some_and(|k| k.chars().count() > MAX_KEY_CHARS) {
            return Err(IssueError::KeyTooLong);
        }
        let namespace = match door {
            Door::Api => "api:",
            Door::Console | Door::CommandLine => "",
        };
        Ok(Draft {
            kind: Kind::Announcement,
            subject: self.subject,
            preheader: self.preheader,
            body_html: body_html(&self.body, self.markdown),
            body_text: self.text,
            topics: self.topics,
            period_key: None,
            idempotency_key: key.map(|k| format!("{namespace}{k}")),
        })
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

/// A subject as it may go into a header: one line, no control characters, at most 200
/// characters. (lettre encodes non-ASCII subjects per RFC 2047.)
pub fn clean_subject(raw: &str) -> Result<String, IssueError> {
    let one_line = crate::foundation::domain::single_line(raw);
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
    let preheader: String =
        crate::foundation::domain::single_line(&source.replace(['#', '*'], " "))
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

/// Composes an issue, stores it and queues it to its audience, in one transaction. With an
/// idempotency key (an editor's form) or a period key that is already on file, nothing new is
/// made or queued: the existing issue is returned, so a double click, a reload or a second
/// instance sends once.
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
    issues::create(conn, draft, &composed, when, by)
}
