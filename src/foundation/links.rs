//! Signed per-recipient tokens for the unsubscribe and preferences links in every message, and
//! the signed token of an issue's web copy ("View in your browser").
//!
//! A token names the subscriber and the issue it was sent with, and the day it was made; an
//! HMAC-SHA256 with `IRIA_SECRET_KEY` over those makes it unforgeable, so nothing needs storing
//! and a link keeps working for [`VALID_DAYS`] days whatever happens to the ledger. Changing any
//! byte, or moving a token to another subscriber, breaks the MAC.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long an unsubscribe or preferences link works after its message was made (at least
/// 60 days are expected of bulk senders; a reader may open an old issue much later).
pub const VALID_DAYS: u32 = 400;

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 8 + 8 + 4;
const MAC_LEN: usize = 16;

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
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
    // A key of any length is accepted by HMAC; `new_from_slice` cannot fail for it.
    let mut m = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(b"iria-news recipient link");
    m.update(body);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
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

    /// The token's link form: 50 characters of base64url.
    pub fn sign(&self, secret: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(BODY_LEN + MAC_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.subscriber_id.to_be_bytes());
        bytes.extend_from_slice(&self.issue_id.to_be_bytes());
        bytes.extend_from_slice(&self.issued_day.to_be_bytes());
        let tag = mac(secret, &bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a token from a link: its MAC (in constant time) and its age.
    pub fn verify(raw: &str, secret: &[u8]) -> Result<Self, TokenError> {
        if raw.len() > 100 {
            return Err(TokenError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| TokenError::Invalid)?;
        if bytes.len() != BODY_LEN + MAC_LEN || bytes[0] != VERSION {
            return Err(TokenError::Invalid);
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let mut m = HmacSha256::new_from_slice(secret).map_err(|_| TokenError::Invalid)?;
        m.update(b"iria-news recipient link");
        m.update(body);
        m.verify_truncated_left(tag)
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
        Ok(Self {
            subscriber_id,
            issue_id,
            issued_day,
        })
    }
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
        assert_eq!(RecipientToken::verify(&t.sign(KEY), KEY), Ok(t));
    }

    #[test]
    fn altered_forged_truncated_and_old_tokens_are_refused() {
        let t = RecipientToken::new(42, 7);
        let good = t.sign(KEY);
        assert_eq!(
            RecipientToken::verify(&good, b"another key of thirty-two bytes!"),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            RecipientToken::verify(&good[..good.len() - 2], KEY),
            Err(TokenError::Invalid)
        );
        for i in 0..good.len() {
            let mut chars: Vec<char> = good.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let altered: String = chars.into_iter().collect();
            if altered != good {
                assert!(
                    RecipientToken::verify(&altered, KEY).is_err(),
                    "altered at {i}"
                );
            }
        }
        // The same token moved to another subscriber: re-encode with a changed id, old MAC.
        let mut bytes = URL_SAFE_NO_PAD.decode(&good).expect("decode");
        bytes[8] ^= 1;
        assert_eq!(
            RecipientToken::verify(&URL_SAFE_NO_PAD.encode(&bytes), KEY),
            Err(TokenError::Invalid)
        );
        let old = RecipientToken {
            issued_day: today() - VALID_DAYS - 1,
            ..t
        };
        assert_eq!(
            RecipientToken::verify(&old.sign(KEY), KEY),
            Err(TokenError::Expired)
        );
        let sixty_days = RecipientToken {
            issued_day: today() - 60,
            ..t
        };
        assert!(RecipientToken::verify(&sixty_days.sign(KEY), KEY).is_ok());
    }

    #[test]
    fn view_tokens_round_trip_and_are_not_recipient_tokens() {
        let view = ViewToken { issue_id: 7 }.sign(KEY);
        assert_eq!(ViewToken::verify(&view, KEY), Ok(ViewToken { issue_id: 7 }));
        assert!(ViewToken::verify(&view, b"another key of thirty-two bytes!").is_err());
        assert!(RecipientToken::verify(&view, KEY).is_err());
        let recipient = RecipientToken::new(42, 7).sign(KEY);
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
