//! Confirmation tokens: 256 bits from the operating system's CSPRNG, sent
//! in the link, stored only as their SHA-256, so a copy of the database confirms nobody.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The length of a token in its link form: 32 bytes in unpadded base64url.
const TOKEN_CHARS: usize = 43;

/// A confirmation token as it appears in the link.
#[derive(Clone)]
pub struct ConfirmationToken(String);

impl ConfirmationToken {
    /// A new token, 256 random bits.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Reads a token from a link; anything that is not of a token's form is refused before any
    /// database look-up.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == TOKEN_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD.decode(raw).is_ok_and(|b| b.len() == 32);
        ok.then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: the hex SHA-256 of the token. A plain hash is enough: the token has 256
    /// bits of entropy, so there is nothing to guess.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
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
        let a = ConfirmationToken::generate();
        let b = ConfirmationToken::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(
            ConfirmationToken::parse(a.as_str()).map(|t| t.hash()),
            Some(a.hash())
        );
        assert!(ConfirmationToken::parse("short").is_none());
        assert!(ConfirmationToken::parse(&"!".repeat(43)).is_none());
    }
}
