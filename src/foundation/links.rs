//! Signed per-recipient tokens for the unsubscribe and preferences links in every message, the
//! signed token of an issue's web copy ("View in your browser"), and the keyed derivation of the
//! one-time links whose hash a store keeps (confirmation, data download and erasure).
//!
//! A recipient token names the subscriber and the issue it was sent with, the day it was made and
//! what it may open ([`Purpose`]); an HMAC-SHA256 with `IRIA_SECRET_KEY` over those, with a
//! purpose string of its own per kind, makes it unforgeable, so nothing needs storing and a link
//! keeps working for [`VALID_DAYS`] days whatever happens to the ledger. Changing any byte, moving
//! a token to another subscriber or to another purpose breaks the MAC.
//!
//! The token in `List-Unsubscribe` (which mailbox providers see) only unsubscribes; the
//! preferences link in the body opens the preferences page (and unsubscribes, from its button).
//! Neither downloads nor erases data: that takes a fresh one-time link sent to the address.
//! Tokens made before purposes existed (version 1, one token for header and body) were in the
//! `List-Unsubscribe` header of every message sent then, which mailbox providers keep: they only
//! unsubscribe, for their 400 days ([`TokenError::LegacyUnsubscribeOnly`] elsewhere).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long an unsubscribe or preferences link works after its message was made (at least
/// 60 days are expected of bulk senders; a reader may open an old issue much later).
pub const VALID_DAYS: u32 = 400;

/// The one token of messages sent before purposes existed: header and body alike.
const LEGACY_VERSION: u8 = 1;
const UNSUBSCRIBE_VERSION: u8 = 2;
const PREFERENCES_VERSION: u8 = 3;
const BODY_LEN: usize = 1 + 8 + 8 + 4;
const MAC_LEN: usize = 16;

/// What a recipient link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `List-Unsubscribe` and the visible unsubscribe link: `/unsubscribe/{token}` only.
    Unsubscribe,
    /// The preferences link in the body: `/preferences/{token}` (name, topics), and
    /// unsubscribing from that page's button.
    Preferences,
}

impl Purpose {
    fn version(self) -> u8 {
        match self {
            Purpose::Unsubscribe => UNSUBSCRIBE_VERSION,
            Purpose::Preferences => PREFERENCES_VERSION,
        }
    }
}

/// The MAC's purpose string of each token version: a token of one kind cannot be re-labelled
/// as another by changing its first byte.
fn purpose_string(version: u8) -> Option<&'static [u8]> {
    match version {
        LEGACY_VERSION => Some(b"iria-news recipient link"),
        UNSUBSCRIBE_VERSION => Some(b"iria-news unsubscribe link"),
        PREFERENCES_VERSION => Some(b"iria-news preferences link"),
        _ => None,
    }
}

/// Whether a token of `version` may be used for `wanted`.
fn opens(version: u8, wanted: Purpose) -> bool {
    match (version, wanted) {
        (UNSUBSCRIBE_VERSION, Purpose::Unsubscribe) => true,
        (PREFERENCES_VERSION, _) => true,
        // Old links in readers' mailboxes and in providers' copies of the header, where the
        // same token stood: they unsubscribe, and open nothing else.
        (LEGACY_VERSION, Purpose::Unsubscribe) => true,
        _ => false,
    }
}

/// What a valid token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecipientToken {
    pub subscriber_id: i64,
    /// The issue the message carried, 0 for none.
    pub issue_id: i64,
    /// Days since 1970-01-01 (UTC) when the token was made.
    pub issued_day: u32,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this link is damaged or was not made by us")]
    Invalid,
    #[error("this link is too old")]
    Expired,
    #[error("this link is not for this page")]
    WrongPurpose,
    /// A genuine token of the first version, for anything but unsubscribing.
    #[error("this link of an older email only unsubscribes")]
    LegacyUnsubscribeOnly,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], purpose: &[u8], body: &[u8]) -> HmacSha256 {
    // A key of any length is accepted by HMAC; `new_from_slice` cannot fail for it.
    let mut m = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(purpose);
    m.update(body);
    m
}

/// Today as days since the epoch (UTC).
pub fn today() -> u32 {
    (chrono::Utc::now().timestamp() / 86_400).max(0) as u32
}

impl RecipientToken {
    pub fn new(subscriber_id: i64, issue_id: i64) -> Self {
        Self {
            subscriber_id,
            issue_id,
            issued_day: today(),
        }
    }

    /// The token's link form for `purpose`: 50 characters of base64url.
    pub fn sign(&self, purpose: Purpose, secret: &[u8]) -> String {
        self.sign_version(purpose.version(), secret)
    }

    fn sign_version(&self, version: u8, secret: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(BODY_LEN + MAC_LEN);
        bytes.push(version);
        bytes.extend_from_slice(&self.subscriber_id.to_be_bytes());
        bytes.extend_from_slice(&self.issue_id.to_be_bytes());
        bytes.extend_from_slice(&self.issued_day.to_be_bytes());
        let purpose = purpose_string(version).unwrap_or_default();
        let tag = mac(secret, purpose, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a token from a link: its MAC (in constant time), its age, and that it may be used
    /// for `wanted` ([`TokenError::WrongPurpose`] when it is genuine but for something else).
    pub fn verify(raw: &str, wanted: Purpose, secret: &[u8]) -> Result<Self, TokenError> {
        if raw.len() > 100 {
            return Err(TokenError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| TokenError::Invalid)?;
        if bytes.len() != BODY_LEN + MAC_LEN {
            return Err(TokenError::Invalid);
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let version = body[0];
        let purpose = purpose_string(version).ok_or(TokenError::Invalid)?;
        mac(secret, purpose, body)
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::Invalid)?;
        let field = |from: usize, len: usize| &body[from..from + len];
        let subscriber_id =
            i64::from_be_bytes(field(1, 8).try_into().map_err(|_| TokenError::Invalid)?);
        let issue_id = i64::from_be_bytes(field(9, 8).try_into().map_err(|_| TokenError::Invalid)?);
        let issued_day =
            u32::from_be_bytes(field(17, 4).try_into().map_err(|_| TokenError::Invalid)?);
        if today().saturating_sub(issued_day) > VALID_DAYS {
            return Err(TokenError::Expired);
        }
        if !opens(version, wanted) {
            return Err(if version == LEGACY_VERSION {
                TokenError::LegacyUnsubscribeOnly
            } else {
                TokenError::WrongPurpose
            });
        }
        Ok(Self {
            subscriber_id,
            issue_id,
            issued_day,
        })
    }
}

/// The secret of a one-time link (a confirmation, a data link) from the random nonce a store
/// keeps for it: HMAC-SHA256 with `IRIA_SECRET_KEY` over a purpose string and the nonce. The
/// database holds the nonce (until the message is sent) and the SHA-256 of the result, never the
/// result itself, so a copy of the database opens no link.
pub fn one_time_secret(secret: &[u8], purpose: &[u8], nonce: &[u8]) -> [u8; 32] {
    let mut m = mac(secret, b"iria-news one-time link: ", purpose);
    m.update(b"\n");
    m.update(nonce);
    let mut out = [0u8; 32];
    out.copy_from_slice(&m.finalize().into_bytes());
    out
}

/// The token of an issue's web copy (`/view/{token}`): it names the issue and nobody else, so a
/// forwarded link shows the issue and nothing of the reader it was sent to. Signed with its own
/// purpose string, so a recipient token can never pass for one (nor the reverse); it does not
/// expire, since the issue it shows is the same for everyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewToken {
    pub issue_id: i64,
}

const VIEW_PURPOSE: &[u8] = b"iria-news issue web copy";
const VIEW_VERSION: u8 = b'v';
const VIEW_BODY_LEN: usize = 1 + 8;

fn view_mac(secret: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(VIEW_PURPOSE);
    m
}

impl ViewToken {
    /// The token's link form: 34 characters of base64url.
    pub fn sign(&self, secret: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(VIEW_BODY_LEN + MAC_LEN);
        bytes.push(VIEW_VERSION);
        bytes.extend_from_slice(&self.issue_id.to_be_bytes());
        let mut m = view_mac(secret);
        m.update(&bytes);
        bytes.extend_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a token from a link (its MAC in constant time).
    pub fn verify(raw: &str, secret: &[u8]) -> Result<Self, TokenError> {
        if raw.len() > 100 {
            return Err(TokenError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| TokenError::Invalid)?;
        if bytes.len() != VIEW_BODY_LEN + MAC_LEN || bytes[0] != VIEW_VERSION {
            return Err(TokenError::Invalid);
        }
        let (body, tag) = bytes.split_at(VIEW_BODY_LEN);
        let mut m = view_mac(secret);
        m.update(body);
        m.verify_truncated_left(tag)
            .map_err(|_| TokenError::Invalid)?;
        let issue_id = i64::from_be_bytes(body[1..].try_into().map_err(|_| TokenError::Invalid)?);
        Ok(Self { issue_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip() {
        let t = RecipientToken::new(42, 7);
        for purpose in [Purpose::Unsubscribe, Purpose::Preferences] {
            assert_eq!(
                RecipientToken::verify(&t.sign(purpose, KEY), purpose, KEY),
                Ok(t)
            );
        }
    }

    #[test]
    fn unsubscribe_and_legacy_tokens_open_nothing_else() {
        let t = RecipientToken::new(42, 7);
        let unsubscribe = t.sign(Purpose::Unsubscribe, KEY);
        assert_eq!(
            RecipientToken::verify(&unsubscribe, Purpose::Preferences, KEY),
            Err(TokenError::WrongPurpose)
        );
        let preferences = t.sign(Purpose::Preferences, KEY);
        assert_eq!(
            RecipientToken::verify(&preferences, Purpose::Unsubscribe, KEY),
            Ok(t)
        );
        // Relabelling an unsubscribe token as a preferences one breaks its MAC.
        let mut bytes = URL_SAFE_NO_PAD.decode(&unsubscribe).expect("decode");
        bytes[0] = PREFERENCES_VERSION;
        assert_eq!(
            RecipientToken::verify(&URL_SAFE_NO_PAD.encode(&bytes), Purpose::Preferences, KEY),
            Err(TokenError::Invalid)
        );
        let legacy = t.sign_version(LEGACY_VERSION, KEY);
        assert_eq!(
            RecipientToken::verify(&legacy, Purpose::Unsubscribe, KEY),
            Ok(t)
        );
        assert_eq!(
            RecipientToken::verify(&legacy, Purpose::Preferences, KEY),
            Err(TokenError::LegacyUnsubscribeOnly)
        );
    }

    #[test]
    fn one_time_secrets_depend_on_key_purpose_and_nonce() {
        let a = one_time_secret(KEY, b"confirmation", b"nonce");
        assert_eq!(a, one_time_secret(KEY, b"confirmation", b"nonce"));
        assert_ne!(a, one_time_secret(KEY, b"data link", b"nonce"));
        assert_ne!(a, one_time_secret(KEY, b"confirmation", b"nonce2"));
        assert_ne!(
            a,
            one_time_secret(
                b"another key of thirty-two bytes!",
                b"confirmation",
                b"nonce"
            )
        );
    }

    #[test]
    fn altered_forged_truncated_and_old_tokens_are_refused() {
        let t = RecipientToken::new(42, 7);
        let good = t.sign(Purpose::Unsubscribe, KEY);
        assert_eq!(
            RecipientToken::verify(
                &good,
                Purpose::Unsubscribe,
                b"another key of thirty-two bytes!"
            ),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            RecipientToken::verify(&good[..good.len() - 2], Purpose::Unsubscribe, KEY),
            Err(TokenError::Invalid)
        );
        for i in 0..good.len() {
            let mut chars: Vec<char> = good.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let altered: String = chars.into_iter().collect();
            if altered != good {
                assert!(
                    RecipientToken::verify(&altered, Purpose::Unsubscribe, KEY).is_err(),
                    "altered at {i}"
                );
            }
        }
        // The same token moved to another subscriber: re-encode with a changed id, old MAC.
        let mut bytes = URL_SAFE_NO_PAD.decode(&good).expect("decode");
        bytes[8] ^= 1;
        assert_eq!(
            RecipientToken::verify(&URL_SAFE_NO_PAD.encode(&bytes), Purpose::Unsubscribe, KEY),
            Err(TokenError::Invalid)
        );
        let old = RecipientToken {
            issued_day: today() - VALID_DAYS - 1,
            ..t
        };
        assert_eq!(
            RecipientToken::verify(
                &old.sign(Purpose::Unsubscribe, KEY),
                Purpose::Unsubscribe,
                KEY
            ),
            Err(TokenError::Expired)
        );
        let sixty_days = RecipientToken {
            issued_day: today() - 60,
            ..t
        };
        assert!(RecipientToken::verify(
            &sixty_days.sign(Purpose::Unsubscribe, KEY),
            Purpose::Unsubscribe,
            KEY
        )
        .is_ok());
    }

    #[test]
    fn view_tokens_round_trip_and_are_not_recipient_tokens() {
        let view = ViewToken { issue_id: 7 }.sign(KEY);
        assert_eq!(ViewToken::verify(&view, KEY), Ok(ViewToken { issue_id: 7 }));
        assert!(ViewToken::verify(&view, b"another key of thirty-two bytes!").is_err());
        assert!(RecipientToken::verify(&view, Purpose::Unsubscribe, KEY).is_err());
        let recipient = RecipientToken::new(42, 7).sign(Purpose::Unsubscribe, KEY);
        assert!(ViewToken::verify(&recipient, KEY).is_err());
        for i in 0..view.len() {
            let mut chars: Vec<char> = view.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let altered: String = chars.into_iter().collect();
            if altered != view {
                assert!(ViewToken::verify(&altered, KEY).is_err(), "altered at {i}");
            }
        }
    }
}
