//! Tracked links: when an issue is composed, each `http(s)` link of its HTML part (`<a href>`)
//! and of its text part is stored once, in order of first appearance, and written as a mark
//! (`%%IRIA_LINK_{position}%%`) that each copy fills with `{IRIA_BASE_URL}/r/{token}` (see
//! `processes::messages`). The unsubscribe, preferences and web-copy links are marks of their own
//! and are never rewritten. The HTML part also gets a hidden link no person sees (position 0, to
//! the site's home) and, with open tracking, a mark for the open image.
//!
//! Where no click is counted (a web copy, a preview, a test copy) the marks become the plain
//! addresses again ([`untracked`]).

use lol_html::{element, rewrite_str, RewriteStrSettings};

use crate::foundation::config::Settings;
use crate::foundation::tracking::TRAP_POSITION;
use crate::stores::engagement::{IssueLink, Links};
use crate::stores::issues::IssueError;

/// The start of a tracked link's mark; the position and `%%` follow.
pub const LINK_MARK: &str = "%%IRIA_LINK_";
/// Where the open image goes (the whole `<img>`, or nothing).
pub const OPEN_MARK: &str = "%%IRIA_OPEN_IMAGE%%";
const MARK_END: &str = "%%";

/// The mark of the link at `position`.
pub fn mark(position: usize) -> String {
    format!("{LINK_MARK}{position}{MARK_END}")
}

/// Reads a mark at the start of `text`: its position and length.
pub fn parse_mark(text: &str) -> Option<(usize, usize)> {
    let rest = text.strip_prefix(LINK_MARK)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 6 || !rest[digits..].starts_with(MARK_END) {
        return None;
    }
    let position = rest[..digits].parse().ok()?;
    Some((position, LINK_MARK.len() + digits + MARK_END.len()))
}

/// What every mark starts with (the recipient marks of `stores::issues` too).
const MARK_START: &str = "%%IRIA_";

/// Removes anything that could become a mark from text that comes from an editor or a feed, so
/// that no body can borrow a reader's unsubscribe or preferences link, another link's position
/// or the open image. Repeated until nothing is left: removing one occurrence may join the
/// pieces around it into another (`%%IRIA_%%IRIA_LINK_LINK_0%%`).
pub fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    while out.contains(MARK_START) {
        out = out.replace(MARK_START, "");
    }
    out
}

/// The entities a serialiser writes in an attribute value, decoded.
fn decode_attribute(value: &str) -> String {
    if !value.contains('&') {
        return value.to_string();
    }
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

fn is_web_link(url: &str) -> bool {
    let lower = url
        .trim_start()
        .get(..8)
        .unwrap_or(url)
        .to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The position of `url` among `links`, added at the end when new. Never the hidden link's,
/// even for the same address: a person's click on a visible link is not a machine's.
fn position_of(links: &mut Vec<IssueLink>, url: &str) -> usize {
    let trap = TRAP_POSITION as usize;
    if let Some(at) = links.iter().skip(trap + 1).position(|l| l.url == url) {
        return at + trap + 1;
    }
    links.push(IssueLink {
        url: url.to_string(),
        article_id: None,
    });
    links.len() - 1
}

/// The hidden link: nothing to see, nothing to focus, nothing for a screen reader.
fn trap_anchor() -> String {
    format!(
        "<a href=\"{}\" aria-hidden=\"true\" tabindex=\"-1\" style=\"display:none !important; \
         font-size:0; line-height:0; max-height:0; overflow:hidden; mso-hide:all;\"></a>",
        mark(TRAP_POSITION as usize)
    )
}

/// Rewrites a composed issue's parts for tracking: their links become marks, the HTML gets the
/// hidden link and (with open tracking) the open image's mark. Returns the parts and the links.
pub fn track(
    settings: &Settings,
    html: &str,
    text: &str,
) -> Result<(String, String, Links), IssueError> {
    let mut links = vec![IssueLink {
        url: settings.link("/"),
        article_id: None,
    }];
    let html = {
        let links = &mut links;
        rewrite_str(
            html,
            RewriteStrSettings {
                element_content_handlers: vec![element!("a[href]", move |el| {
                    let href = el.get_attribute("href").unwrap_or_default();
                    let url = decode_attribute(href.trim());
                    if is_web_link(&url) {
                        let at = position_of(links, &url);
                        el.set_attribute("href", &mark(at))?;
                    }
                    Ok(())
                })],
                ..RewriteStrSettings::new()
            },
        )
        .map_err(|e| IssueError::Render(format!("rewriting the links: {e}")))?
    };
    let mut extra = trap_anchor();
    if settings.open_tracking {
        extra.push_str(OPEN_MARK);
    }
    let html = match html.rfind("</body>") {
        Some(at) => format!("{}{extra}{}", &html[..at], &html[at..]),
        None => format!("{html}{extra}"),
    };
    let text = track_text(text, &mut links);
    Ok((
        html,
        text,
        Links {
            links,
            open_image: settings.open_tracking,
            mode: Some(settings.click_tracking.as_str().to_string()),
        },
    ))
}

/// Characters that end a link in a text part; trailing punctuation is not part of it either.
fn ends_link(c: char) -> bool {
    c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`')
}

fn track_text(text: &str, links: &mut Vec<IssueLink>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = [rest.find("https://"), rest.find("http://")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail.find(ends_link).unwrap_or(tail.len());
        let url = tail[..len].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '\'']);
        if url.len() <= "https://".len() {
            out.push_str(&tail[..len]);
        } else {
            let at = position_of(links, url);
            out.push_str(&mark(at));
            out.push_str(&tail[url.len()..len]);
        }
        rest = &tail[len..];
    }
}

/// A part with its marks filled with the plain addresses (`html`: escaped for an attribute),
/// without the hidden link and the open image: for a web copy, a preview or a test copy, where no
/// click is counted.
pub fn untracked(part: &str, urls: &[String], html: bool) -> String {
    // Where no click is counted, the hidden link has nothing to tell apart.
    let part = part.replace(OPEN_MARK, "").replace(&trap_anchor(), "");
    fill_marks(&part, urls, html)
}

/// A part with its link marks filled with `urls` by position (`html`: escaped for an
/// attribute); a mark with no address becomes `#`.
pub fn fill_marks(part: &str, urls: &[String], html: bool) -> String {
    let mut out = String::with_capacity(part.len());
    let mut scan = part;
    while let Some(at) = scan.find(LINK_MARK) {
        out.push_str(&scan[..at]);
        match parse_mark(&scan[at..]) {
            Some((position, len)) => {
                let url = urls.get(position).map(String::as_str).unwrap_or("#");
                if html {
                    out.push_str(&url.replace('&', "&amp;").replace('"', "&quot;"));
                } else {
                    out.push_str(url);
                }
                scan = &scan[at + len..];
            }
            None => {
                out.push_str(LINK_MARK);
                scan = &scan[at + LINK_MARK.len()..];
            }
        }
    }
    out.push_str(scan);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(open: bool) -> Settings {
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            "IRIA_BASE_URL".to_string(),
            "https://news.example.org".to_string(),
        );
        let mut s = Settings::from_sources(None, &env).expect("settings");
        s.open_tracking = open;
        s
    }

    #[test]
    fn links_become_marks_once_per_address_and_the_special_links_stay() {
        let html = "<html><body><a href=\"https://ir-ia.com/a?x=1&amp;y=2\">A</a> \
                    <a href=\"%%IRIA_UNSUBSCRIBE_URL%%\">Unsubscribe</a> \
                    <a href=\"mailto:x@example.org\">mail</a> \
                    <a href=\"https://ir-ia.com/b\">B</a><a href=\"https://ir-ia.com/a?x=1&amp;y=2\">A again</a></body></html>";
        let text = "Read on: https://ir-ia.com/b.\nAnd (https://ir-ia.com/c) too.\n%%IRIA_UNSUBSCRIBE_URL%%\n";
        let (html, text, links) = track(&settings(false), html, text).expect("track");
        let urls: Vec<&str> = links.links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://news.example.org/",
                "https://ir-ia.com/a?x=1&y=2",
                "https://ir-ia.com/b",
                "https://ir-ia.com/c"
            ]
        );
        assert!(html.contains("href=\"%%IRIA_LINK_1%%\">A</a>"));
        assert!(html.contains("href=\"%%IRIA_LINK_1%%\">A again"));
        assert!(html.contains("href=\"%%IRIA_UNSUBSCRIBE_URL%%\""));
        assert!(html.contains("mailto:x@example.org"));
        assert!(html.contains("href=\"%%IRIA_LINK_0%%\" aria-hidden=\"true\""));
        assert!(!html.contains(OPEN_MARK));
        assert_eq!(
            text,
            "Read on: %%IRIA_LINK_2%%.\nAnd (%%IRIA_LINK_3%%) too.\n%%IRIA_UNSUBSCRIBE_URL%%\n"
        );
        let plain = untracked(
            &html,
            &urls.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
            true,
        );
        assert!(plain.contains("href=\"https://ir-ia.com/a?x=1&amp;y=2\""));
        assert!(
            !plain.contains("aria-hidden"),
            "the hidden link stays in a plain copy"
        );
        assert!(!plain.contains(LINK_MARK));
        assert!(!links.open_image);
    }

    #[test]
    fn open_tracking_adds_the_image_mark_and_marks_parse() {
        let (html, _, links) = track(&settings(true), "<body><p>x</p></body>", "x").expect("track");
        assert!(html.contains(OPEN_MARK) && links.open_image);
        assert_eq!(parse_mark("%%IRIA_LINK_12%%rest"), Some((12, 16)));
        assert_eq!(parse_mark("%%IRIA_LINK_%%"), None);
        assert_eq!(parse_mark("%%IRIA_LINK_1x%%"), None);
        assert_eq!(scrub("a %%IRIA_LINK_3%% b"), "a LINK_3%% b");
        for smuggled in [
            "%%IRIA_%%IRIA_LINK_LINK_0%%",
            "%%IRIA_PREF%%IRIA_LINK_ERENCES_URL%%",
            "%%IRI%%IRIA_A_UNSUBSCRIBE_URL%%",
        ] {
            assert!(!scrub(smuggled).contains("%%IRIA_"), "{smuggled}");
        }
    }
}
