//! The signed token of a re-permission message's "Keep me subscribed" button (`/keep/{token}`).
//!
//! It names the reader and the campaign that asked them; an HMAC-SHA256 with `IRIA_SECRET_KEY`,
//! under a purpose string of its own, makes it unforgeable, so no other token of the project (an
//! unsubscribe or preferences link, a tracked link) can pass for one, nor the reverse. It does not
//! expire by itself: the campaign's deadline, kept in the database, decides whether it still
//! counts. Nothing is stored for it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PURPOSE: &[u8] = b"iria-news keep me subscribed\n";
const VERSION: u8 = b'k';
const BODY_LEN: usize = 1 + 8 + 8;
const MAC_LEN: usize = 16;

/// What a "Keep me subscribed" token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepToken {
    pub subscriber_id: i64,
    pub campaign_id: i64,
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(PURPOSE);
    m
}

impl KeepToken {
    /// The token's link form: 44 characters of base64url.
    pub fn sign(&self, secret: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(BODY_LEN + MAC_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.subscriber_id.to_be_bytes());
        bytes.extend_from_slice(&self.campaign_id.to_be_bytes());
        let mut m = keyed(secret);
        m.update(&bytes);
        bytes.extend_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a token from a link (its MAC in constant time): `None` when forged, altered or not
    /// a "Keep me subscribed" token.
    pub fn verify(raw: &str, secret: &[u8]) -> Option<Self> {
        if raw.len() > 100 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        if bytes.len() != BODY_LEN + MAC_LEN || bytes[0] != VERSION {
            return None;
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let mut m = keyed(secret);
        m.update(body);
        m.verify_truncated_left(tag).ok()?;
        Some(Self {
            subscriber_id: i64::from_be_bytes(body[1..9].try_into().ok()?),
            campaign_id: i64::from_be_bytes(body[9..17].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foundation::links::{Purpose, RecipientToken};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_refusals() {
        let t = KeepToken {
            subscriber_id: 42,
            campaign_id: 7,
        };
        let token = t.sign(KEY);
        assert_eq!(KeepToken::verify(&token, KEY), Some(t));
        assert_eq!(
            KeepToken::verify(&token, b"another key of thirty-two bytes!"),
            None
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert_eq!(
                KeepToken::verify(&URL_SAFE_NO_PAD.encode(&bytes), KEY),
                None,
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        let unsubscribe = RecipientToken::new(42, 7).sign(Purpose::Unsubscribe, KEY);
        assert_eq!(KeepToken::verify(&unsubscribe, KEY), None);
        assert!(RecipientToken::verify(&token, Purpose::Unsubscribe, KEY).is_err());
        assert_eq!(KeepToken::verify("", KEY), None);
        assert_eq!(KeepToken::verify(&"A".repeat(400), KEY), None);
    }
}
