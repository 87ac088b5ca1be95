//! The signed tokens of tracked links (`/r/{token}`) and of the open image (`/o/{token}`).
//!
//! A token names an issue and the position of one of its stored links, and in `personal` mode
//! the delivered copy it was written into; an HMAC-SHA256 with `IRIA_SECRET_KEY` (under a purpose
//! string of its own) makes it unforgeable. The address a click goes to is never in the token:
//! it is looked up by (issue, position) in the links stored when the issue was composed, so no
//! request can choose where a redirect leads. A token does not expire: an issue's links keep
//! working as long as the issue is stored, whatever happens to its reader.
//!
//! The MAC is cut to 12 bytes (96 bits): a forger has one guess per request, and what a forged
//! token could reach is a link the issue already holds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PURPOSE: &[u8] = b"iria-news tracked link\n";
const MAC_LEN: usize = 12;
const ANONYMOUS_LINK: u8 = b'a';
const PERSONAL_LINK: u8 = b'p';
const ANONYMOUS_OPEN: u8 = b'o';
const PERSONAL_OPEN: u8 = b'q';

/// The position of the hidden link in every tracked HTML part: no person sees it, so a click on
/// it is a machine's.
pub const TRAP_POSITION: i32 = 0;
/// The position under which opens are counted.
pub const OPEN_POSITION: i32 = -1;

/// What a tracked link's (or open image's) token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub issue_id: i64,
    /// 1.. for the issue's links, [`TRAP_POSITION`] for the hidden one, [`OPEN_POSITION`] for the
    /// open image.
    pub position: i32,
    /// The delivered copy, in `personal` mode.
    pub delivery_id: Option<i64>,
}

/// Signs and checks tracking tokens with one key; cheap to clone, and the key's HMAC state is
/// computed once, so a token costs two SHA-256 blocks.
#[derive(Clone)]
pub struct Signer {
    keyed: HmacSha256,
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        let mut keyed = HmacSha256::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        keyed.update(PURPOSE);
        Self { keyed }
    }

    fn body(version: u8, t: &Tracked) -> ([u8; 21], usize) {
        let mut body = [0u8; 21];
        body[0] = version;
        body[1..9].copy_from_slice(&t.issue_id.to_be_bytes());
        body[9..13].copy_from_slice(&t.position.to_be_bytes());
        match t.delivery_id {
            Some(delivery) => {
                body[13..21].copy_from_slice(&delivery.to_be_bytes());
                (body, 21)
            }
            None => (body, 13),
        }
    }

    fn sign_version(&self, version: u8, t: &Tracked) -> String {
        let (body, len) = Self::body(version, t);
        let mut m = self.keyed.clone();
        m.update(&body[..len]);
        let tag = m.finalize().into_bytes();
        let mut bytes = [0u8; 21 + MAC_LEN];
        bytes[..len].copy_from_slice(&body[..len]);
        bytes[len..len + MAC_LEN].copy_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(&bytes[..len + MAC_LEN])
    }

    /// The token of a tracked link (`/r/{token}`).
    pub fn link(&self, t: &Tracked) -> String {
        let version = if t.delivery_id.is_some() {
            PERSONAL_LINK
        } else {
            ANONYMOUS_LINK
        };
        self.sign_version(version, t)
    }

    /// The token of a copy's open image (`/o/{token}`).
    pub fn open(&self, issue_id: i64, delivery_id: Option<i64>) -> String {
        let version = if delivery_id.is_some() {
            PERSONAL_OPEN
        } else {
            ANONYMOUS_OPEN
        };
        let t = Tracked {
            issue_id,
            position: OPEN_POSITION,
            delivery_id,
        };
        self.sign_version(version, &t)
    }

    fn verify_any(&self, raw: &str) -> Option<(u8, Tracked)> {
        if raw.len() > 48 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let version = *bytes.first()?;
        let len = match (version, bytes.len()) {
            (ANONYMOUS_LINK | ANONYMOUS_OPEN, n) if n == 13 + MAC_LEN => 13,
            (PERSONAL_LINK | PERSONAL_OPEN, n) if n == 21 + MAC_LEN => 21,
            _ => return None,
        };
        let (body, tag) = bytes.split_at(len);
        let mut m = self.keyed.clone();
        m.update(body);
        m.verify_truncated_left(tag).ok()?;
        let issue_id = i64::from_be_bytes(body[1..9].try_into().ok()?);
        let position = i32::from_be_bytes(body[9..13].try_into().ok()?);
        let delivery_id = if len == 21 {
            Some(i64::from_be_bytes(body[13..21].try_into().ok()?))
        } else {
            None
        };
        Some((
            version,
            Tracked {
                issue_id,
                position,
                delivery_id,
            },
        ))
    }

    /// Checks a tracked link's token: `None` when forged, tampered with, or not a link's.
    pub fn verify_link(&self, raw: &str) -> Option<Tracked> {
        match self.verify_any(raw)? {
            (ANONYMOUS_LINK | PERSONAL_LINK, t) if t.position >= TRAP_POSITION => Some(t),
            _ => None,
        }
    }

    /// Checks an open image's token.
    pub fn verify_open(&self, raw: &str) -> Option<Tracked> {
        match self.verify_any(raw)? {
            (ANONYMOUS_OPEN | PERSONAL_OPEN, t) if t.position == OPEN_POSITION => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn links_round_trip_in_both_modes() {
        let signer = Signer::new(KEY);
        for delivery_id in [None, Some(42)] {
            let t = Tracked {
                issue_id: 7,
                position: 3,
                delivery_id,
            };
            let token = signer.link(&t);
            assert_eq!(signer.verify_link(&token), Some(t));
            assert_eq!(signer.verify_open(&token), None, "a link is not an open");
        }
        let open = signer.open(7, Some(42));
        assert_eq!(
            signer.verify_open(&open).map(|t| t.delivery_id),
            Some(Some(42))
        );
        assert_eq!(signer.verify_link(&open), None, "an open is not a link");
    }

    #[test]
    fn tampered_forged_and_foreign_tokens_are_refused() {
        let signer = Signer::new(KEY);
        let token = signer.link(&Tracked {
            issue_id: 7,
            position: 3,
            delivery_id: Some(42),
        });
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert_eq!(
                signer.verify_link(&URL_SAFE_NO_PAD.encode(&bytes)),
                None,
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        // The personal token cut down to an anonymous one's length.
        let short = URL_SAFE_NO_PAD.encode(&bytes[..13 + MAC_LEN]);
        assert_eq!(signer.verify_link(&short), None);
        let other = Signer::new(b"another key of thirty-two bytes!");
        assert_eq!(other.verify_link(&token), None);
        assert_eq!(signer.verify_link(""), None);
        assert_eq!(signer.verify_link("not base64 at all!"), None);
        assert_eq!(signer.verify_link(&"A".repeat(400)), None);
    }
}
