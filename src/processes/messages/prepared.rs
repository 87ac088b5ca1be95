//! An issue prepared for sending: its parts quoted-printable encoded once, with gaps where each
//! copy's own links go, and its tracked links resolved as far as the click tracking mode allows
//! before the first copy (see [`crate::processes::tracked_links`]):
//! - `off`, a test copy, or an issue composed without tracking: the plain addresses;
//! - `anonymous`: the same `/r/` link (and open image) in every copy, written in once;
//! - `personal`: a gap per link, filled with a token naming the copy.

use chrono::NaiveDateTime;

use crate::foundation::config::{ClickTracking, Settings};
use crate::foundation::tracking::{Signer, Tracked};
use crate::processes::tracked_links::{self, parse_mark, LINK_MARK, OPEN_MARK};
use crate::stores::issues::{self, PREFERENCES_MARK, UNSUBSCRIBE_MARK, VIEW_MARK};

/// What the worker needs of an issue to write each copy: its parts encoded once.
#[derive(Clone)]
pub struct IssueContent {
    pub id: i64,
    pub subject: String,
    pub html: PreparedPart,
    pub text: PreparedPart,
    pub created_at: NaiveDateTime,
    /// The issue's link addresses by position (0: the hidden link), in `personal` mode; each
    /// copy gets a token per position.
    personal: Option<(Signer, usize)>,
    /// The `Feedback-ID` of its copies: `kind:audience:sender`.
    pub feedback_id: String,
}

impl std::fmt::Debug for IssueContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueContent")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The site's name as a label (`iria-news`), for `List-Id` and `Feedback-ID`.
pub fn list_label(settings: &Settings) -> String {
    let label = label_of(&settings.site_name);
    if label.is_empty() {
        "newsletter".to_string()
    } else {
        label
    }
}

/// Lower-case ASCII letters and digits, runs of anything else as one `-`.
fn label_of(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The `Feedback-ID` of a newsletter message, `kind:audience:sender` (Gmail's feedback loop
/// reports complaints per value of each field): the issue's kind (`digest`, `announcement`,
/// `welcome`, `notice`), its topic audience (`all`, or the topics as labels joined by `+`), and
/// the list's label.
pub fn feedback_id(settings: &Settings, kind: &str, topics: &str) -> String {
    let audience: Vec<String> = topics
        .split(',')
        .map(label_of)
        .filter(|t| !t.is_empty())
        .collect();
    let audience = if audience.is_empty() {
        "all".to_string()
    } else {
        audience.join("+")
    };
    format!("{}:{audience}:{}", label_of(kind), list_label(settings))
}

/// The open image of a copy, given its address.
pub fn open_image(src: &str) -> String {
    format!(
        "<img src=\"{src}\" width=\"1\" height=\"1\" alt=\"\" \
         style=\"display:block; width:1px; height:1px; border:0;\">"
    )
}

/// `part` with its link marks filled with the tracked `links` (escaped for HTML when `html`)
/// and the open image mark with `open`.
fn fill(part: &str, links: &[String], open: &str, html: bool) -> String {
    let part = part.replace(OPEN_MARK, open);
    tracked_links::fill_marks(&part, links, html)
}

impl IssueContent {
    /// Prepares an issue whose links need no token (a test copy, a notice): the marks, if any,
    /// become the plain addresses `urls`.
    pub fn new(
        id: i64,
        subject: String,
        html: &str,
        text: &str,
        created_at: NaiveDateTime,
        urls: &[String],
    ) -> Self {
        Self {
            id,
            subject,
            html: PreparedPart::prepare(&tracked_links::untracked(html, urls, true)),
            text: PreparedPart::prepare(&tracked_links::untracked(text, urls, false)),
            created_at,
            personal: None,
            feedback_id: String::new(),
        }
    }

    /// Prepares a stored issue for sending under the click tracking mode in force now; `urls`
    /// are its stored links (empty when it was composed without tracking).
    pub fn tracked(settings: &Settings, content: issues::Content, urls: &[String]) -> Self {
        let feedback_id = feedback_id(settings, &content.kind, &content.topics);
        let mut prepared = Self::resolve(settings, content, urls);
        prepared.feedback_id = feedback_id;
        prepared
    }

    fn resolve(settings: &Settings, content: issues::Content, urls: &[String]) -> Self {
        // An issue composed without tracking, or a copy of no stored issue, has nothing to count.
        let mode = if urls.is_empty() || content.id <= 0 {
            ClickTracking::Off
        } else {
            settings.click_tracking
        };
        let signer = Signer::new(settings.secret());
        match mode {
            ClickTracking::Off => Self::new(
                content.id,
                content.subject,
                &content.html,
                &content.text,
                content.created_at,
                urls,
            ),
            ClickTracking::Anonymous => {
                let links: Vec<String> = (0..urls.len())
                    .map(|position| {
                        let t = Tracked {
                            issue_id: content.id,
                            position: position as i32,
                            delivery_id: None,
                        };
                        settings.link(&format!("/r/{}", signer.link(&t)))
                    })
                    .collect();
                let open = if settings.open_tracking {
                    open_image(&settings.link(&format!("/o/{}", signer.open(content.id, None))))
                } else {
                    String::new()
                };
                Self {
                    id: content.id,
                    subject: content.subject,
                    html: PreparedPart::prepare(&fill(&content.html, &links, &open, true)),
                    text: PreparedPart::prepare(&fill(&content.text, &links, "", false)),
                    created_at: content.created_at,
                    personal: None,
                    feedback_id: String::new(),
                }
            }
            ClickTracking::Personal => {
                let html = if settings.open_tracking {
                    content.html
                } else {
                    content.html.replace(OPEN_MARK, "")
                };
                Self {
                    id: content.id,
                    subject: content.subject,
                    html: PreparedPart::prepare(&html),
                    text: PreparedPart::prepare(&content.text.replace(OPEN_MARK, "")),
                    created_at: content.created_at,
                    personal: Some((signer, urls.len())),
                    feedback_id: String::new(),
                }
            }
        }
    }

    /// The links of one copy's gaps besides the reader's own: in `personal` mode, a token per
    /// link naming the copy, and its open image.
    pub fn copy_links(&self, settings: &Settings, delivery_id: i64) -> (Vec<String>, String) {
        let Some((signer, count)) = &self.personal else {
            return (Vec::new(), String::new());
        };
        let links = (0..*count)
            .map(|position| {
                let t = Tracked {
                    issue_id: self.id,
                    position: position as i32,
                    delivery_id: Some(delivery_id),
                };
                settings.link(&format!("/r/{}", signer.link(&t)))
            })
            .collect();
        let open = if settings.open_tracking {
            open_image(&settings.link(&format!("/o/{}", signer.open(self.id, Some(delivery_id)))))
        } else {
            String::new()
        };
        (links, open)
    }
}

/// One part of an issue (its HTML or its text), quoted-printable encoded once per issue, with
/// gaps where each recipient's links (and the issue's web copy) go: a copy then costs a few
/// copies of bytes instead of encoding the whole part again. Each piece ends with a soft line
/// break (`=` CRLF, which decodes to nothing), so pieces join without making a line longer than
/// quoted-printable allows.
#[derive(Clone, Debug)]
pub struct PreparedPart {
    pieces: Vec<Piece>,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
enum Gap {
    Unsubscribe,
    Preferences,
    View,
    /// A tracked link, by position (`personal` mode).
    Link(usize),
    /// The open image (`personal` mode).
    Open,
}

#[derive(Clone, Debug)]
enum Piece {
    Encoded(Vec<u8>),
    Gap(Gap),
}

/// The links that fill one copy's gaps.
#[derive(Clone, Debug, Default)]
pub struct Links {
    /// The reader's unsubscribe link.
    pub unsubscribe: String,
    /// The reader's preferences link.
    pub preferences: String,
    /// The issue's web copy, the same for every reader.
    pub view: String,
    /// The copy's tracked links by position (`personal` mode).
    pub tracked: Vec<String>,
    /// The copy's open image (`personal` mode, open tracking on).
    pub open: String,
}

/// The next gap in `rest`: where it starts, how long its mark is, and which.
fn next_gap(rest: &str) -> Option<(usize, usize, Gap)> {
    let fixed = [
        (UNSUBSCRIBE_MARK, Gap::Unsubscribe),
        (PREFERENCES_MARK, Gap::Preferences),
        (VIEW_MARK, Gap::View),
        (OPEN_MARK, Gap::Open),
    ]
    .into_iter()
    .filter_map(|(mark, gap)| rest.find(mark).map(|at| (at, mark.len(), gap)));
    let mut from = 0;
    let link = loop {
        let Some(at) = rest[from..].find(LINK_MARK).map(|a| a + from) else {
            break None;
        };
        match parse_mark(&rest[at..]) {
            Some((position, len)) => break Some((at, len, Gap::Link(position))),
            None => from = at + LINK_MARK.len(),
        }
    };
    fixed.chain(link).min_by_key(|(at, _, _)| *at)
}

impl PreparedPart {
    /// Encodes `part`, leaving a gap at each of the issue's recipient marks.
    pub fn prepare(part: &str) -> Self {
        let crlf = part.replace("\r\n", "\n").replace('\n', "\r\n");
        let mut pieces = Vec::new();
        let mut rest = crlf.as_str();
        loop {
            let (literal, gap) = match next_gap(rest) {
                Some((at, len, gap)) => {
                    let literal = &rest[..at];
                    rest = &rest[at + len..];
                    (literal, Some(gap))
                }
                None => (std::mem::take(&mut rest), None),
            };
            if !literal.is_empty() {
                pieces.push(Piece::Encoded(encode_piece(literal)));
            }
            match gap {
                Some(gap) => pieces.push(Piece::Gap(gap)),
                None => break,
            }
        }
        let len = pieces
            .iter()
            .map(|p| match p {
                Piece::Encoded(b) => b.len(),
                Piece::Gap(_) => 0,
            })
            .sum();
        Self { pieces, len }
    }

    /// The encoded part with this recipient's links filled in.
    pub fn render(&self, links: &Links) -> lettre::message::Body {
        let unsubscribe = encode_piece(&links.unsubscribe);
        let preferences = encode_piece(&links.preferences);
        let view = encode_piece(&links.view);
        let mut out = Vec::with_capacity(
            self.len + 4 * (unsubscribe.len() + preferences.len()) + 2 * view.len(),
        );
        for piece in &self.pieces {
            match piece {
                Piece::Encoded(bytes) => out.extend_from_slice(bytes),
                Piece::Gap(Gap::Unsubscribe) => out.extend_from_slice(&unsubscribe),
                Piece::Gap(Gap::Preferences) => out.extend_from_slice(&preferences),
                Piece::Gap(Gap::View) => out.extend_from_slice(&view),
                Piece::Gap(Gap::Link(position)) => {
                    let url = links.tracked.get(*position).map(String::as_str);
                    out.extend_from_slice(&encode_piece(url.unwrap_or("#")));
                }
                Piece::Gap(Gap::Open) => {
                    if !links.open.is_empty() {
                        out.extend_from_slice(&encode_piece(&links.open));
                    }
                }
            }
        }
        lettre::message::Body::dangerous_pre_encoded(
            out,
            lettre::message::header::ContentTransferEncoding::QuotedPrintable,
        )
    }
}

/// Quoted-printable, ending with a soft line break.
fn encode_piece(text: &str) -> Vec<u8> {
    let mut encoded = quoted_printable::encode(text.as_bytes());
    encoded.extend_from_slice(b"=\r\n");
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_ids_name_the_kind_the_audience_and_the_list() {
        let env = std::collections::BTreeMap::new();
        let settings = Settings::from_sources(None, &env).expect("settings");
        assert_eq!(
            feedback_id(&settings, "digest", "Middle East,US"),
            "digest:middle-east+us:iria-news"
        );
        assert_eq!(
            feedback_id(&settings, "announcement", ""),
            "announcement:all:iria-news"
        );
    }
}
