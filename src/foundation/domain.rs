//! The values a sign-up is made of, each parsed once into a type that cannot hold a bad value
//! ("parse, don't validate"): once code holds a [`SubscriberEmail`], nothing checks it again.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use validator::ValidateEmail;

/// The longest address SMTP can carry (RFC 5321, 4.5.3.1.3 less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// The longest name a subscriber may give, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// A mail address as stored: trimmed, lower-cased, its domain in ASCII (punycode), so that one
/// mailbox is one subscriber however it was typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubscriberEmail(String);

impl SubscriberEmail {
    /// Parses what a person typed. The error says what is wrong in words for that person.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("Please enter your email address.".into());
        }
        if raw.chars().any(char::is_control) {
            return Err(
                "An email address cannot contain line breaks or control characters.".into(),
            );
        }
        if raw.len() > MAX_EMAIL_LEN {
            return Err(format!(
                "An email address can be at most {MAX_EMAIL_LEN} characters long."
            ));
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return Err("An email address needs an @, as in name@example.org.".into());
        };
        if is_ip_literal(domain) {
            return Err(IP_LITERAL.into());
        }
        let domain = idna::domain_to_ascii(domain)
            .map_err(|_| "The part after the @ is not a valid domain name.".to_string())?;
        let address = format!("{}@{}", local.to_lowercase(), domain);
        if !domain.contains('.') || domain.ends_with('.') {
            return Err("The part after the @ must be a full domain, as in example.org.".into());
        }
        if is_ip_literal(&domain) {
            return Err(IP_LITERAL.into());
        }
        if address.len() > MAX_EMAIL_LEN || !address.validate_email() {
            return Err("That does not look like an email address; please check it.".into());
        }
        // What we store must also be what the mail library accepts as a recipient.
        address.parse::<lettre::Address>().map_err(|_| {
            "That does not look like an email address; please check it.".to_string()
        })?;
        Ok(Self(address))
    }

    /// Trusts a value read back from the database, where only parsed addresses are written.
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriberEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an address at an IP address is refused, for the person who typed it.
const IP_LITERAL: &str =
    "Please use an address at a domain name (as in name@example.org), not at an IP address.";

/// Whether the part after the @ names a host by its IP address rather than by a domain: an
/// address literal (`[127.0.0.1]`, `[IPv6:::1]`, RFC 5321 4.1.3) or a bare number such as
/// `127.0.0.1` or `127.1` (no top-level domain is all digits, RFC 3696 2, so a last label of
/// digits is an IPv4 address in one of its spellings). Mail to such a host goes around every
/// check a domain gets (MX, reputation) and may reach machines on IRIA's own network.
fn is_ip_literal(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    if domain.starts_with('[')
        || domain.ends_with(']')
        || domain.parse::<std::net::IpAddr>().is_ok()
    {
        return true;
    }
    let last = domain.rsplit('.').next().unwrap_or("");
    let last = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .map_or(last.chars().all(|c| c.is_ascii_digit()), |hex| {
            hex.chars().all(|c| c.is_ascii_hexdigit())
        });
    !domain.is_empty() && last
}

/// Characters that change how text around them is shown without being seen themselves:
/// bidirectional controls (which can make a name read backwards, or hide an address inside it)
/// and zero-width or otherwise invisible characters (which make two names that look the same
/// differ, or hide text): Unicode's "format" characters (Cf) and the invisible fillers. The
/// zero-width joiners have honest uses (an emoji sequence, the ZWNJ of Persian spelling), but a
/// name shown in the console and in emails reads well without them, and allowing them would
/// let a name hide text.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                    // soft hyphen
        | '\u{034F}'                  // combining grapheme joiner
        | '\u{061C}'                  // Arabic letter mark
        | '\u{115F}' | '\u{1160}'      // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'      // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'     // Mongolian variation selectors, vowel separator
        | '\u{200B}'..='\u{200F}'     // zero-width space, (non-)joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}'     // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'     // word joiner, invisible operators, bidi isolates
        | '\u{3164}' | '\u{FFA0}'     // Hangul fillers
        | '\u{FEFF}'                  // zero-width no-break space (BOM)
        | '\u{FFF9}'..='\u{FFFB}'     // interlinear annotations
        | '\u{1D173}'..='\u{1D17A}'   // musical formatting
        | '\u{E0000}'..='\u{E007F}'   // tags
    )
}

/// A subscriber's name: optional, at most [`MAX_NAME_CHARS`] characters, Unicode-normalised (NFC),
/// with no line breaks or other control characters (so it can never start a mail header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberName(String);

impl SubscriberName {
    /// `Ok(None)` for an empty name.
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let name: String = raw.trim().nfc().collect();
        if name.is_empty() {
            return Ok(None);
        }
        if name
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
        {
            return Err("A name cannot contain line breaks or control characters.".into());
        }
        if name.chars().any(is_invisible_format) {
            return Err(
                "A name cannot contain invisible characters (such as zero-width spaces \
                        or right-to-left overrides); please type it again."
                    .into(),
            );
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(format!(
                "A name can be at most {MAX_NAME_CHARS} characters long."
            ));
        }
        Ok(Some(Self(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text made fit for one header line: control characters (CR, LF, NUL, tabs…) and Unicode line
/// separators become spaces, and runs of white space one space.
pub fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The topics a subscriber chose, each one of the site's configured topics. Empty means all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topics(Vec<String>);

impl Topics {
    /// Keeps the site's order and drops repeats; an unknown topic is an error.
    pub fn parse(chosen: &[String], known: &[String]) -> Result<Self, String> {
        if let Some(unknown) = chosen.iter().find(|c| !known.iter().any(|k| k == *c)) {
            let shown: String = unknown.chars().take(40).collect();
            return Err(format!("{shown:?} is not one of our topics."));
        }
        Ok(Self(
            known
                .iter()
                .filter(|k| chosen.contains(k))
                .cloned()
                .collect(),
        ))
    }

    /// Reads the stored comma-separated form.
    pub fn from_stored(stored: &str) -> Self {
        Self(
            stored
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// The stored comma-separated form (topic names never contain commas: they come from a
    /// comma-separated setting).
    pub fn to_stored(&self) -> String {
        self.0.join(",")
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A subscriber's status, as stored (and as the API names it).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberStatus {
    Pending,
    Confirmed,
    Unsubscribed,
    Bounced,
    Complained,
}

impl SubscriberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Pending => "pending",
            SubscriberStatus::Confirmed => "confirmed",
            SubscriberStatus::Unsubscribed => "unsubscribed",
            SubscriberStatus::Bounced => "bounced",
            SubscriberStatus::Complained => "complained",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => SubscriberStatus::Pending,
            "confirmed" => SubscriberStatus::Confirmed,
            "unsubscribed" => SubscriberStatus::Unsubscribed,
            "bounced" => SubscriberStatus::Bounced,
            "complained" => SubscriberStatus::Complained,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        let e = SubscriberEmail::parse("  Reader@Example.ORG ").expect("valid");
        assert_eq!(e.as_str(), "reader@example.org");
        let idn = SubscriberEmail::parse("leser@bücher.example").expect("IDN domain");
        assert_eq!(idn.as_str(), "leser@xn--bcher-kva.example");
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for bad in [
            "",
            "plainaddress",
            "a@b",
            "a@@b.org",
            "x\r\nBcc: y@z.org",
            "' OR 1=1 --@x.org",
            "a b@c.org",
            &format!("{}@example.org", "a".repeat(250)),
        ] {
            assert!(SubscriberEmail::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names() {
        assert_eq!(SubscriberName::parse("  ").expect("empty ok"), None);
        assert_eq!(
            SubscriberName::parse("Zoë Ωmega 李")
                .expect("unicode ok")
                .map(|n| n.0),
            Some("Zoë Ωmega 李".to_string())
        );
        assert!(SubscriberName::parse("x\r\nBcc: y@z").is_err());
        assert!(SubscriberName::parse(&"n".repeat(257)).is_err());
        assert!(SubscriberName::parse(&"n".repeat(256)).is_ok());
    }

    #[test]
    fn names_refuse_bidi_controls_and_invisible_characters() {
        for bad in [
            "Ada \u{202E}gnp.exe",
            "\u{202A}Ada",
            "\u{202B}Ada",
            "\u{202C}Ada",
            "\u{202D}Ada",
            "Ada\u{2066}x\u{2069}",
            "Ada\u{2067}",
            "Ada\u{2068}",
            "A\u{200B}da",
            "A\u{200C}da",
            "A\u{200D}da",
            "A\u{200E}da",
            "A\u{200F}da",
            "A\u{2060}da",
            "\u{FEFF}Ada",
            "Ada\u{061C}",
            "Ada\u{00AD}",
            "Ada\u{E0041}",
        ] {
            let refused = SubscriberName::parse(bad).expect_err(&format!("{bad:?} was accepted"));
            assert!(refused.contains("invisible"), "{bad:?}: {refused}");
        }
        // Letters of right-to-left scripts are fine: only the controls are refused.
        assert!(SubscriberName::parse("مريم العربي").is_ok());
        assert!(SubscriberName::parse("שרה כהן").is_ok());
    }

    #[test]
    fn addresses_at_ip_addresses_are_refused() {
        for bad in [
            "user@[127.0.0.1]",
            "user@127.0.0.1",
            "user@[IPv6:::1]",
            "user@[IPv6:2001:db8::1]",
            "user@10.0.0.1",
            "user@127.1",
            "user@0x7f.0.0.1",
            "user@192.168.0.1.",
        ] {
            let refused = SubscriberEmail::parse(bad).expect_err(&format!("{bad:?} was accepted"));
            assert!(refused.contains("IP address"), "{bad:?}: {refused}");
        }
        // Digits inside a domain are fine, and so is a domain that looks like hex.
        for good in [
            "user@1und1.de",
            "user@123.example.org",
            "user@cafe.example.cafe",
        ] {
            assert!(SubscriberEmail::parse(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn topics() {
        let known: Vec<String> = ["Europe", "Asia", "US"].map(String::from).to_vec();
        let t = Topics::parse(&["US".into(), "Europe".into(), "US".into()], &known).expect("known");
        assert_eq!(t.to_stored(), "Europe,US");
        assert!(Topics::parse(&["Mars".into()], &known).is_err());
        assert_eq!(Topics::from_stored("Europe,US"), t);
    }
}
