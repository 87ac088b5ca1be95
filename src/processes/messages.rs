//! The messages this program writes, rendered with askama and assembled with lettre. Headers
//! are built here and only here, from typed values, so no name or subject can add a header.

use std::time::SystemTime;

use askama::Template;
use lettre::message::header::ContentType;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::foundation::config::Settings;
use crate::foundation::links::{Purpose, RecipientToken, ViewToken};
use crate::foundation::message_ids::MessageIds;
use crate::processes::compose;
use crate::stores::welcome::Welcome;

pub mod dkim;
mod prepared;
mod repermission;
use dkim::DkimSigner;
pub use prepared::{feedback_id, open_image, IssueContent, Links, PreparedPart};
pub use repermission::keep_url;

/// A name as it may stand in a header: no control characters (CR, LF, NUL, tabs and the like
/// become spaces), white space collapsed, at most 256 characters; `None` when nothing is left.
/// Names are checked when they come in, but a header is the wrong place to trust that.
pub fn display_name(name: Option<&str>) -> Option<String> {
    let cleaned: String = crate::foundation::domain::single_line(name?)
        .chars()
        .take(256)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// The envelope of a message: the VERP bounce address when `IRIA_BOUNCE_ADDRESS` is set,
/// otherwise lettre's default (From and To).
fn envelope(
    settings: &Settings,
    delivery_id: i64,
    to: &Mailbox,
) -> anyhow::Result<Option<lettre::address::Envelope>> {
    let Some(pattern) = &settings.delivery.bounce_address else {
        return Ok(None);
    };
    let from: lettre::Address = pattern
        .replace(
            "{token}",
            &MessageIds::new(settings).verp_token(delivery_id),
        )
        .parse()?;
    Ok(Some(lettre::address::Envelope::new(
        Some(from),
        vec![to.email.clone()],
    )?))
}

/// Who one delivery goes to, and what identifies it.
#[derive(Clone, Copy, Debug)]
pub struct Addressee<'a> {
    pub delivery_id: i64,
    /// The delivery's Message-ID, as the claim made it (the same for every attempt).
    pub message_id: &'a str,
    pub subscriber_id: i64,
    pub email: &'a str,
    pub name: Option<&'a str>,
}

/// A message begun for one delivery: From, To, Subject, Date, its Message-ID, and the VERP
/// envelope when configured.
fn addressed(
    settings: &Settings,
    to: &Addressee,
    subject: &str,
) -> anyhow::Result<lettre::message::MessageBuilder> {
    let mailbox = Mailbox::new(display_name(to.name), to.email.parse()?);
    let mut builder = Message::builder();
    if let Some(envelope) = envelope(settings, to.delivery_id, &mailbox)? {
        builder = builder.envelope(envelope);
    }
    Ok(builder
        .from(settings.from.clone())
        .to(mailbox)
        .subject(subject)
        .date(SystemTime::now())
        .message_id(Some(to.message_id.to_string())))
}

/// The confirmation email's HTML part. It carries nothing the person who filled in the form
/// chose (no name): a bot must not be able to make us mail its text to any address.
#[derive(Template)]
#[template(path = "emails/confirmation.html")]
struct ConfirmationHtml<'a> {
    site_name: &'a str,
    link: &'a str,
    ttl_hours: u64,
    home: &'a str,
}

/// The confirmation email's text part.
#[derive(Template)]
#[template(path = "emails/confirmation.txt")]
struct ConfirmationText<'a> {
    site_name: &'a str,
    link: &'a str,
    ttl_hours: u64,
}

/// The double opt-in email: one link that confirms the subscription. Sent to the bare address:
/// the name given with an unconfirmed sign-up is the submitter's text, not the reader's.
pub fn confirmation(
    settings: &Settings,
    to: &Addressee,
    token: &str,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    let link = settings.link(&format!("/subscriptions/confirm?token={token}"));
    let ttl_hours = settings.confirmation_ttl.as_secs() / 3600;
    let home = settings.link("/");
    let html = ConfirmationHtml {
        site_name: &settings.site_name,
        link: &link,
        ttl_hours,
        home: &home,
    }
    .render()?;
    let text = ConfirmationText {
        site_name: &settings.site_name,
        link: &link,
        ttl_hours,
    }
    .render()?;
    let subject = format!("Confirm your subscription to {}", settings.site_name);
    one_time_link_message(settings, to, &subject, text, html, dkim)
}

/// The data link's HTML part.
#[derive(Template)]
#[template(path = "emails/data_link.html")]
struct DataLinkHtml<'a> {
    site_name: &'a str,
    link: &'a str,
    minutes: i64,
    home: &'a str,
}

/// The data link's text part.
#[derive(Template)]
#[template(path = "emails/data_link.txt")]
struct DataLinkText<'a> {
    site_name: &'a str,
    link: &'a str,
    minutes: i64,
}

/// The link a reader asked for on the preferences page, to download or erase their data (see
/// [`crate::stores::subscriptions::data_links`]); to the bare address, like a confirmation.
pub fn data_link(
    settings: &Settings,
    to: &Addressee,
    token: &str,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    let link = settings.link(&format!("/my-data/{token}"));
    let minutes = crate::stores::subscriptions::data_links::VALID_MINUTES;
    let home = settings.link("/");
    let html = DataLinkHtml {
        site_name: &settings.site_name,
        link: &link,
        minutes,
        home: &home,
    }
    .render()?;
    let text = DataLinkText {
        site_name: &settings.site_name,
        link: &link,
        minutes,
    }
    .render()?;
    let subject = format!(
        "Your link to download or erase your {} data",
        settings.site_name
    );
    one_time_link_message(settings, to, &subject, text, html, dkim)
}

/// A message carrying a one-time link: to the bare address (no display name), automatic, text
/// and HTML; signed with DKIM when `dkim` is given.
fn one_time_link_message(
    settings: &Settings,
    to: &Addressee,
    subject: &str,
    text: String,
    html: String,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    let bare = Addressee { name: None, ..*to };
    let message = addressed(settings, &bare, subject)?
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(text))
                .singlepart(SinglePart::html(html)),
        )?;
    seal(message, dkim)
}

/// The `List-Id` of every newsletter message (RFC 2919): the list's name and an identifier under
/// the sender's domain.
pub fn list_id(settings: &Settings) -> String {
    let name: String = settings
        .site_name
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    format!(
        "{} <{}.{}>",
        name.replace(['"', '<', '>'], ""),
        prepared::list_label(settings),
        settings.from.email.domain()
    )
}

/// One subscriber's copy of an issue. Every newsletter message goes through here, so the list
/// headers that mailbox providers require of bulk mail (RFC 2369, 2919, 8058) and the visible
/// unsubscribe links cannot be left out:
/// `List-Unsubscribe` with the https link (and a mailto when configured),
/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, `List-Id`, `Auto-Submitted`, and the
/// header's unsubscribe token in both parts' unsubscribe links. Signed with DKIM when `dkim` is given.
pub fn newsletter(
    settings: &Settings,
    to: &Addressee,
    issue: &IssueContent,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    // The header's token (which mailbox providers see) only unsubscribes; the body's preferences
    // link has a token of its own. Neither reaches the reader's data.
    let recipient = RecipientToken::new(to.subscriber_id, issue.id);
    let token = recipient.sign(Purpose::Unsubscribe, settings.secret());
    let preferences_token = recipient.sign(Purpose::Preferences, settings.secret());
    let (tracked, open) = issue.copy_links(settings, to.delivery_id);
    let links = Links {
        unsubscribe: settings.link(&format!("/unsubscribe/{token}")),
        preferences: settings.link(&format!("/preferences/{preferences_token}")),
        view: view_url(settings, issue.id),
        tracked,
        open,
    };
    let unsubscribe_url = &links.unsubscribe;
    let html = issue.html.render(&links);
    let text = issue.text.render(&links);
    let mut list_unsubscribe = format!("<{unsubscribe_url}>");
    if let Some(mailto) = &settings.unsubscribe_mailto {
        list_unsubscribe.push_str(&format!(
            ", <mailto:{mailto}?subject=unsubscribe%20{token}>"
        ));
    }
    let raw = |name: &'static str, value: String| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
    };
    let message = addressed(settings, to, &issue.subject)?
        .raw_header(raw("List-Id", list_id(settings)))
        .raw_header(raw("List-Unsubscribe", list_unsubscribe))
        .raw_header(raw(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".into(),
        ))
        .raw_header(raw("Auto-Submitted", "auto-generated".into()))
        .raw_header(raw("Feedback-ID", issue.feedback_id.clone()))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )?;
    seal(message, dkim)
}

/// The address of an issue's web copy, the same for every reader (`/view/{token}`); for a copy
/// of no stored issue (a test copy), the archive.
pub fn view_url(settings: &Settings, issue_id: i64) -> String {
    if issue_id <= 0 {
        return settings.link("/archive");
    }
    let token = ViewToken { issue_id }.sign(settings.secret());
    settings.link(&format!("/view/{token}"))
}

/// A message to one reader that is not an issue (the welcome, the note to a confirmed address
/// that signed up again), composed from Markdown like an editor's issue and sent with the same
/// headers and personal links, but without a web copy.
fn notice(
    settings: &Settings,
    to: &Addressee,
    kind: &str,
    subject: &str,
    markdown: &str,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    let composed = compose::notice(settings, subject, markdown)?;
    let mut content = IssueContent::new(
        0,
        composed.subject,
        &composed.html,
        &composed.text,
        chrono::Utc::now().naive_utc(),
        &[],
    );
    content.feedback_id = prepared::feedback_id(settings, kind, "");
    newsletter(settings, to, &content, dkim)
}

/// The welcome email, as the editors wrote it (see [`crate::stores::welcome`]).
pub fn welcome(
    settings: &Settings,
    to: &Addressee,
    welcome: &Welcome,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    notice(
        settings,
        to,
        "welcome",
        &welcome.subject,
        &welcome.body,
        dkim,
    )
}

/// The body of the note to a confirmed address that signed up again.
#[derive(Template)]
#[template(path = "emails/already_subscribed.md")]
struct AlreadySubscribedBody<'a> {
    site_name: &'a str,
}

/// To a confirmed address that signed up again: it is subscribed already, and where its
/// preferences and the way out are.
pub fn already_subscribed(
    settings: &Settings,
    to: &Addressee,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    let body = AlreadySubscribedBody {
        site_name: &settings.site_name,
    }
    .render()?;
    let subject = format!("You are already subscribed to {}", settings.site_name);
    notice(settings, to, "notice", &subject, &body, dkim)
}

/// "Still want it?" of a re-permission campaign, with its "Keep me subscribed" button (see
/// [`repermission::repermission_body`]); a notice with the usual list headers.
pub fn repermission(
    settings: &Settings,
    to: &Addressee,
    campaign_id: i64,
    deadline: chrono::NaiveDateTime,
    dkim: Option<&DkimSigner>,
) -> anyhow::Result<Outgoing> {
    let (subject, body) =
        repermission::repermission_body(settings, to.subscriber_id, campaign_id, deadline);
    notice(settings, to, "repermission", &subject, &body, dkim)
}

/// The headers a DKIM signature covers: the list headers among them, so that a relay cannot
/// change where "unsubscribe" leads without breaking it, and `Content-Type`, whose boundary says
/// where the parts are (the signer canonicalises the header as it is written). The fields a mail
/// program shows or acts on are named twice ("over-signed", RFC 6376 §8.15): the second name
/// signs the absence of a second field, so a field of that name added above ours (which a
/// program might show instead) breaks the signature too.
pub const DKIM_SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "To",
    "Subject",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
    "Content-Type",
];

/// The DKIM signer, when `IRIA_DKIM_DOMAIN`, `IRIA_DKIM_SELECTOR` and `IRIA_DKIM_KEY_FILE` are
/// set (and a second, Ed25519 key with `IRIA_DKIM_ED25519_SELECTOR` and
/// `IRIA_DKIM_ED25519_KEY_FILE`), signing [`DKIM_SIGNED_HEADERS`]. A key file that cannot be read
/// or used is an error naming its setting.
pub fn dkim_signer(settings: &Settings) -> anyhow::Result<Option<DkimSigner>> {
    DkimSigner::from_settings(settings, DKIM_SIGNED_HEADERS)
}

/// A message ready to go: its envelope and its bytes as they are sent, DKIM signatures first.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub envelope: lettre::address::Envelope,
    pub bytes: Vec<u8>,
}

/// Writes a message out and signs the bytes written, when there is a signer.
fn seal(message: Message, dkim: Option<&DkimSigner>) -> anyhow::Result<Outgoing> {
    let envelope = message.envelope().clone();
    let bytes = message.formatted();
    let bytes = match dkim {
        Some(signer) => {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            signer.sign(&bytes, now)?
        }
        None => bytes,
    };
    Ok(Outgoing { envelope, bytes })
}
