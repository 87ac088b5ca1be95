//! The messages this program writes, rendered with askama and assembled with lettre. Headers
//! are built here and only here, from typed values, so no name or subject can add a header.

use std::time::SystemTime;

use askama::Template;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};

use crate::config::Settings;

/// What follows `<d{delivery id}` in every Message-ID: `.{installation}@{domain}>`. The ledger
/// sets a delivery's Message-ID when it is claimed (see [`crate::delivery::claim`]), so the same
/// delivery always carries the same one; installations do not collide (a hash of the secret is
/// part of it).
pub fn message_id_suffix(settings: &Settings) -> String {
    let installation = hex::encode(&Sha256::digest(settings.secret())[..6]);
    format!(".{installation}@{}>", settings.from.email.domain())
}

/// The confirmation email's HTML part.
#[derive(Template)]
#[template(path = "emails/confirmation.html")]
struct ConfirmationHtml<'a> {
    site_name: &'a str,
    name: Option<&'a str>,
    link: &'a str,
    ttl_hours: u64,
    home: &'a str,
}

/// The confirmation email's text part.
#[derive(Template)]
#[template(path = "emails/confirmation.txt")]
struct ConfirmationText<'a> {
    site_name: &'a str,
    name: Option<&'a str>,
    link: &'a str,
    ttl_hours: u64,
}

/// The double opt-in email: one link that confirms the subscription.
pub fn confirmation(
    settings: &Settings,
    message_id: &str,
    to_email: &str,
    to_name: Option<&str>,
    token: &str,
) -> anyhow::Result<Message> {
    let link = settings.link(&format!("/subscriptions/confirm?token={token}"));
    let ttl_hours = settings.confirmation_ttl.as_secs() / 3600;
    let home = settings.link("/");
    let html = ConfirmationHtml {
        site_name: &settings.site_name,
        name: to_name,
        link: &link,
        ttl_hours,
        home: &home,
    }
    .render()?;
    let text = ConfirmationText {
        site_name: &settings.site_name,
        name: to_name,
        link: &link,
        ttl_hours,
    }
    .render()?;
    let to = Mailbox::new(to_name.map(str::to_string), to_email.parse()?);
    let message = Message::builder()
        .from(settings.from.clone())
        .to(to)
        .subject(format!(
            "Confirm your subscription to {}",
            settings.site_name
        ))
        .date(SystemTime::now())
        .message_id(Some(message_id.to_string()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(text))
                .singlepart(SinglePart::html(html)),
        )?;
    Ok(message)
}
