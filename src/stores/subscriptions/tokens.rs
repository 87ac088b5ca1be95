//! One-time link tokens (a sign-up's confirmation, a reader's data link): 256 bits, sent in the
//! link, stored only as their SHA-256.
//!
//! A token is not kept anywhere, not even while its message waits in the ledger: the ledger keeps
//! a random nonce (the "payload"), and the token is HMAC(`IRIA_SECRET_KEY`, purpose, nonce),
//! computed again by the worker that writes the message. So a copy of the database (nonce and
//! hash) confirms nobody and opens no data link without the key. Confirmations queued before
//! this (their payload the token itself) are still read, see [`ConfirmationToken::from_payload`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The length of a token in its link form: 32 bytes in unpadded base64url.
const TOKEN_CHARS: usize = 43;

/// How a payload holding a nonce begins; a payload without it is a token from before nonces.
const NONCE_PAYLOAD: &str = "nonce:";

/// What a one-time token is for: each has its own purpose string in the HMAC, so a nonce queued
/// for one kind of link derives nothing usable as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPurpose {
    Confirmation,
    DataLink,
}

impl LinkPurpose {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            LinkPurpose::Confirmation => b"confirmation",
            LinkPurpose::DataLink => b"data link",
        }
    }
}

/// A new nonce for `purpose`: the payload to queue with the message, and the token its link
/// will carry (whose hash is what a store keeps).
pub fn seal(secret: &[u8], purpose: LinkPurpose) -> (String, String) {
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let token = derive(secret, purpose, &nonce);
    (
        format!("{NONCE_PAYLOAD}{}", URL_SAFE_NO_PAD.encode(nonce)),
        token,
    )
}

/// The token of a payload queued by [`seal`]; `None` for anything else.
pub fn unseal(secret: &[u8], purpose: LinkPurpose, payload: &str) -> Option<String> {
    let nonce = URL_SAFE_NO_PAD
        .decode(payload.strip_prefix(NONCE_PAYLOAD)?)
        .ok()
        .filter(|n| n.len() == 32)?;
    Some(derive(secret, purpose, &nonce))
}

fn derive(secret: &[u8], purpose: LinkPurpose, nonce: &[u8]) -> String {
    let bytes = crate::foundation::links::one_time_secret(secret, purpose.as_bytes(), nonce);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The hex SHA-256 of a link's token: what is stored. A plain hash is enough: the token has 256
/// bits of entropy, so there is nothing to guess.
pub fn hash_of(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `raw` has a token's form (43 characters of base64url, 32 bytes): anything else is
/// refused before any database look-up.
pub fn well_formed(raw: &str) -> bool {
    raw.len() == TOKEN_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && URL_SAFE_NO_PAD.decode(raw).is_ok_and(|b| b.len() == 32)
}

/// A confirmation token as it appears in the link.
#[derive(Clone)]
pub struct ConfirmationToken(String);

impl ConfirmationToken {
    /// A new confirmation: the payload to queue with its email (a nonce, see [`seal`]) and the
    /// token its link carries.
    pub fn issue(secret: &[u8]) -> (String, Self) {
        let (payload, token) = seal(secret, LinkPurpose::Confirmation);
        (payload, Self(token))
    }

    /// The token of a queued confirmation's payload: derived from its nonce, or, for a
    /// confirmation queued before nonces, the token the payload holds.
    pub fn from_payload(secret: &[u8], payload: &str) -> Option<Self> {
        match unseal(secret, LinkPurpose::Confirmation, payload) {
            Some(token) => Some(Self(token)),
            None => Self::parse(payload),
        }
    }

    /// Reads a token from a link; anything that is not of a token's form is refused before any
    /// database look-up.
    pub fn parse(raw: &str) -> Option<Self> {
        well_formed(raw).then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: the hex SHA-256 of the token ([`hash_of`]).
    pub fn hash(&self) -> String {
        hash_of(&self.0)
    }
}

impl std::fmt::Debug for ConfirmationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfirmationToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_differ() {
        let key = b"0123456789abcdef0123456789abcdef";
        let (payload, a) = ConfirmationToken::issue(key);
        let (_, b) = ConfirmationToken::issue(key);
        assert_ne!(a.as_str(), b.as_str());
        assert!(!payload.contains(a.as_str()));
        assert_eq!(
            ConfirmationToken::from_payload(key, &payload).map(|t| t.hash()),
            Some(a.hash())
        );
        // A payload from before nonces is the token itself.
        assert_eq!(
            ConfirmationToken::from_payload(key, a.as_str()).map(|t| t.hash()),
            Some(a.hash())
        );
        // The same nonce derives another token for another purpose or key.
        assert_ne!(
            unseal(key, LinkPurpose::DataLink, &payload),
            Some(a.as_str().to_string())
        );
        assert_ne!(
            unseal(
                b"another key of thirty-two bytes!",
                LinkPurpose::Confirmation,
                &payload
            ),
            Some(a.as_str().to_string())
        );
        assert_eq!(
            ConfirmationToken::parse(a.as_str()).map(|t| t.hash()),
            Some(a.hash())
        );
        assert!(ConfirmationToken::parse("short").is_none());
        assert!(ConfirmationToken::parse(&"!".repeat(43)).is_none());
    }
}
