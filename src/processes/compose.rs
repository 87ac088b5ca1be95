//! Composing an issue: the editor's body (Markdown or HTML) sanitised, laid out in the IRIA
//! template with the recipient marks in place, CSS inlined, and a text part; then stored and
//! queued by the issues store.

use askama::Template;

use crate::foundation::config::{ClickTracking, Settings};
use crate::foundation::db::DbConnection;
use crate::processes::tracked_links;
use crate::stores::issues::{
    self, Composed, Draft, IssueError, Kind, Queued, When, MAX_BODY_CHARS, MAX_HTML_BYTES,
    MAX_KEY_CHARS, PREFERENCES_MARK, UNSUBSCRIBE_MARK, VIEW_MARK,
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
    view_url: &'a str,
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
    view_url: &'a str,
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
    // Every mark (the reader's links, the web copy, tracked links, the open image) is ours alone.
    tracked_links::scrub(&cleaned)
}

/// Composes an issue: the editor's body inside the IRIA layout, CSS inlined, and a text part;
/// with click tracking on, its links stored in order and written as marks
/// (see [`tracked_links`]).
pub fn compose(settings: &Settings, draft: &Draft) -> Result<Composed, IssueError> {
    compose_with(
        settings,
        draft,
        settings.click_tracking != ClickTracking::Off,
    )
}

fn compose_with(settings: &Settings, draft: &Draft, track: bool) -> Result<Composed, IssueError> {
    let subject = clean_subject(&draft.subject)?;
    let body = sanitize(&draft.body_html);
    if body.trim().is_empty() {
        return Err(IssueError::EmptyBody);
    }
    let text_body = match &draft.body_text {
        Some(t) if !t.trim().is_empty() => tracked_links::scrub(&t.replace(['\r', '\0'], "")),
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
    // Markdown-ish marks from the text conversion ("# Title", "**bold**") are dropped, and so are
    // its link references ("[1]", "[1]: https://…"): an address in the preheader would be one no
    // click tracking sees, and is noise to a reader.
    let preheader: String = crate::foundation::domain::single_line(&without_link_references(
        &source.replace(['#', '*'], " "),
    ))
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
        view_url: VIEW_MARK,
        home: &home,
    }
    .render()
    .map_err(|e| IssueError::Render(e.to_string()))?;
    let html = inline_css(&html)?;
    let text = IssueText {
        site_name: &settings.site_name,
        subject: &subject,
        body: &text_body,
        unsubscribe_url: UNSUBSCRIBE_MARK,
        preferences_url: PREFERENCES_MARK,
        view_url: VIEW_MARK,
    }
    .render()
    .map_err(|e| IssueError::Render(e.to_string()))?;
    let text = wrap_long_lines(&text);
    let (html, text, links) = if track {
        tracked_links::track(settings, &html, &text)?
    } else {
        (html, text, Default::default())
    };
    // As a copy will be: each link mark becomes `{base}/r/` and a token of at most 44 characters.
    let marks = html.matches(tracked_links::LINK_MARK).count();
    let size = html.len() + marks * (settings.link("/r/").len() + 44);
    if size > MAX_HTML_BYTES {
        return Err(IssueError::TooLarge(size));
    }
    Ok(Composed {
        subject,
        preheader,
        html,
        text,
        links,
    })
}

/// Puts `replacement` in place of each link (`<a …>…</a>`) whose address is `mark`, and of any
/// mark left outside a link. The marks are written by our own templates, inside `href="…"`.
fn replace_links(html: &str, mark: &str, replacement: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find(mark) {
        let start = rest[..at].rfind("<a ");
        let end = rest[at..].find("</a>").map(|e| at + e + "</a>".len());
        match (start, end) {
            (Some(start), Some(end)) => {
                out.push_str(&rest[..start]);
                out.push_str(replacement);
                rest = &rest[end..];
            }
            _ => {
                out.push_str(&rest[..at]);
                out.push_str(replacement);
                rest = &rest[at + mark.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// An issue's stored HTML as anyone may read it on the web: the reader's personal links
/// (unsubscribe, preferences) become an invitation to subscribe and the archive, so a forwarded
/// page unsubscribes nobody and shows nobody's choices; the "View in your browser" link, which
/// would point at the page itself, goes.
pub fn web_copy(settings: &Settings, html: &str, urls: &[String]) -> String {
    let html = tracked_links::untracked(html, urls, true);
    let link = |href: String, label: &str| {
        format!(
            "<a href=\"{}\" style=\"color: #666666;\">{label}</a>",
            escape_html(&href)
        )
    };
    let subscribe = link(
        settings.link("/"),
        &format!("Subscribe to {}", escape_html(&settings.site_name)),
    );
    let archive = link(settings.link("/archive"), "Past digests");
    let html = replace_links(&html, UNSUBSCRIBE_MARK, &subscribe);
    let html = replace_links(&html, PREFERENCES_MARK, &archive);
    replace_links(&html, VIEW_MARK, "")
}

/// A stored issue's parts with its tracked links as their plain addresses (for its web copy and
/// the console, where no click is counted).
pub fn stored_parts(
    conn: &mut DbConnection,
    id: i64,
) -> diesel::QueryResult<Option<(String, String)>> {
    let Some((html, text)) = issues::parts(conn, id)? else {
        return Ok(None);
    };
    let urls = crate::stores::engagement::urls_of(conn, &[id])?
        .remove(&id)
        .unwrap_or_default();
    Ok(Some((
        tracked_links::untracked(&html, &urls, true),
        tracked_links::untracked(&text, &urls, false),
    )))
}

/// A message to one reader that is not an issue (the welcome email, the note to a confirmed
/// address that signed up again): Markdown composed like an editor's issue, under the same rules,
/// without a web copy.
pub fn notice(settings: &Settings, subject: &str, markdown: &str) -> Result<Composed, IssueError> {
    if markdown.chars().count() > MAX_BODY_CHARS {
        return Err(IssueError::BodyTooLong);
    }
    let draft = Draft {
        kind: Kind::Announcement,
        subject: subject.to_string(),
        preheader: String::new(),
        body_html: body_html(markdown, true),
        body_text: None,
        topics: Vec::new(),
        period_key: None,
        idempotency_key: None,
    };
    Ok(without_view_link(compose_with(settings, &draft, false)?))
}

/// A composed message that has no web copy (the welcome email, a note to one reader): without
/// the "View in your browser" link in either part.
pub fn without_view_link(mut composed: Composed) -> Composed {
    composed.html = replace_links(&composed.html, VIEW_MARK, "");
    let mut text = String::with_capacity(composed.text.len());
    let mut lines = composed.text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.contains(VIEW_MARK) {
            // The blank line after it goes too.
            if lines.peek().is_some_and(|next| next.trim().is_empty()) {
                lines.next();
            }
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    composed.text = text;
    composed
}

/// Text without web addresses and without html2text's link references (`[1]`, `[1]:`).
fn without_link_references(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| !word.starts_with("http://") && !word.starts_with("https://"))
        .map(|word| {
            let mut kept = String::with_capacity(word.len());
            let mut rest = word;
            while let Some(open) = rest.find('[') {
                let tail = &rest[open + 1..];
                let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 && tail[digits..].starts_with(']') {
                    kept.push_str(&rest[..open]);
                    rest = tail[digits + 1..].trim_start_matches(':');
                } else {
                    kept.push_str(&rest[..=open]);
                    rest = tail;
                }
            }
            kept.push_str(rest);
            kept
        })
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let env: std::collections::BTreeMap<String, String> = [
            (
                "IRIA_SECRET_KEY",
                "unit-test-secret-key-of-32-bytes-or-more",
            ),
            ("IRIA_BASE_URL", "https://news.iria.example"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Settings::from_sources(None, &env).expect("settings")
    }

    fn issue(settings: &Settings) -> Composed {
        let draft = Announcement {
            subject: "Special report".into(),
            preheader: String::new(),
            body: "# On the coalition\n\nA [link](https://iria.example/a/).".into(),
            markdown: true,
            text: None,
            topics: vec![],
            idempotency_key: None,
        }
        .into_draft(settings, Door::Console)
        .expect("draft");
        compose(settings, &draft).expect("compose")
    }

    #[test]
    fn every_issue_links_to_its_web_copy_at_the_top_of_both_parts() {
        let composed = issue(&settings());
        let view = composed.html.find(VIEW_MARK).expect("a view link");
        assert!(
            view < composed
                .html
                .find("On the coalition</h1>")
                .expect("the body")
        );
        assert!(
            composed
                .text
                .starts_with(&format!("View in your browser: {VIEW_MARK}\n")),
            "{:?}",
            composed.text
        );
    }

    #[test]
    fn a_web_copy_has_no_personal_link_and_no_link_to_itself() {
        let settings = settings();
        let issue = issue(&settings);
        let urls: Vec<String> = issue.links.links.iter().map(|l| l.url.clone()).collect();
        let page = web_copy(&settings, &issue.html, &urls);
        assert!(!page.contains("%%IRIA_"), "{page}");
        assert!(!page.contains("View in your browser"));
        assert!(!page.contains(">Unsubscribe<") && !page.contains("Manage preferences"));
        assert!(page.contains(r#"<a href="https://news.iria.example/" style="color: #666666;">Subscribe to IRIA News</a>"#));
        assert!(
            page.contains("https://iria.example/a/"),
            "the body's links stay"
        );
    }

    #[test]
    fn no_body_can_smuggle_in_a_mark() {
        let settings = settings();
        let draft = Announcement {
            subject: "Marks".into(),
            preheader: String::new(),
            body:
                "<p><img src=\"https://evil.example/x.png?u=%%IRIA_PREF%%IRIA_LINK_ERENCES_URL%%\">\
                   <a href=\"https://evil.example/%%IRIA_%%IRIA_LINK_LINK_0%%\">x</a></p>"
                    .into(),
            markdown: false,
            text: Some(
                "%%IRIA_UNSUB%%IRIA_SCRIBE_URL%% and %%IRIA_%%IRIA_OPEN_IMAGE%%IMAGE%%".into(),
            ),
            topics: vec![],
            idempotency_key: None,
        }
        .into_draft(&settings, Door::Console)
        .expect("draft");
        let composed = compose(&settings, &draft).expect("compose");
        // The template's own marks are there once each; nothing the editor wrote became one.
        assert_eq!(
            composed.html.matches(PREFERENCES_MARK).count(),
            1,
            "{}",
            composed.html
        );
        assert_eq!(
            composed.text.matches(UNSUBSCRIBE_MARK).count(),
            1,
            "{}",
            composed.text
        );
        assert!(!composed.text.contains(tracked_links::OPEN_MARK));
        assert!(!composed.html.contains("evil.example/x.png?u=%%"));
    }

    #[test]
    fn a_notice_keeps_the_personal_links_but_has_no_web_copy() {
        let composed = notice(&settings(), "Welcome", "Hello **reader**.").expect("notice");
        for part in [&composed.html, &composed.text] {
            assert!(!part.contains(VIEW_MARK) && !part.contains("View in your browser"));
            assert!(part.contains(UNSUBSCRIBE_MARK) && part.contains(PREFERENCES_MARK));
        }
        assert!(composed.text.starts_with("IRIA News - Welcome\n"));
    }
}
