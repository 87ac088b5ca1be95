//! What ties a bounce or a complaint to the message it answers. Every delivery's Message-ID,
//! `<d{id}.{mac}@{domain}>`, and its VERP token, `d{id}-{mac}` (in the envelope sender when
//! `IRIA_BOUNCE_ADDRESS` is set), carry an HMAC of the delivery id under the secret key, 80 bits
//! of it. Only someone who saw the message (its recipient, the servers on its way) knows them, so
//! a report that quotes one proves which delivery it is about; an id or an address alone proves
//! nothing (see docs/security.md, "Bounces").
//!
//! Both are deterministic: every attempt of a delivery carries the same Message-ID, so a copy
//! sent twice (a crash mid-send) can be recognised as one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::foundation::config::Settings;

/// Bytes of the HMAC kept in a Message-ID or a VERP token: 80 bits, 20 hex digits.
const MAC_BYTES: usize = 10;
const MAC_HEX: usize = MAC_BYTES * 2;

/// Makes and checks this installation's Message-IDs and VERP tokens.
#[derive(Clone)]
pub struct MessageIds {
    secret: Vec<u8>,
    domain: String,
}

impl std::fmt::Debug for MessageIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageIds")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl MessageIds {
    /// Keyed by the secret key; the domain is the From address's.
    pub fn new(settings: &Settings) -> Self {
        Self::with(settings.secret(), settings.from.email.domain())
    }

    pub fn with(secret: &[u8], domain: &str) -> Self {
        Self {
            secret: secret.to_vec(),
            domain: domain.to_string(),
        }
    }

    fn mac(&self, purpose: &[u8], delivery_id: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(purpose);
        mac.update(&delivery_id.to_be_bytes());
        mac
    }

    fn tag(&self, purpose: &[u8], delivery_id: i64) -> String {
        let tag = self.mac(purpose, delivery_id).finalize().into_bytes();
        hex::encode(&tag[..MAC_BYTES])
    }

    /// Whether `hex_mac` (exactly 20 hex digits) is the delivery's, compared in constant time.
    fn verify(&self, purpose: &[u8], delivery_id: i64, hex_mac: &str) -> bool {
        if hex_mac.len() != MAC_HEX {
            return false;
        }
        let Ok(bytes) = hex::decode(hex_mac) else {
            return false;
        };
        self.mac(purpose, delivery_id)
            .verify_truncated_left(&bytes)
            .is_ok()
    }

    /// The Message-ID of a delivery: `<d{id}.{mac}@{domain}>`.
    pub fn message_id(&self, delivery_id: i64) -> String {
        let mac = self.tag(b"iria-news message-id", delivery_id);
        format!("<d{delivery_id}.{mac}@{}>", self.domain)
    }

    /// A Message-ID for a message outside the ledger (an editor's test copy): it names no
    /// delivery, so no report about it can do anything.
    pub fn unrelated_message_id(&self, random: &str) -> String {
        format!("<t{random}@{}>", self.domain)
    }

    /// The VERP token of a delivery, `d{id}-{mac}`: put into the envelope sender, it comes back
    /// in the bounce's address and names the delivery.
    pub fn verp_token(&self, delivery_id: i64) -> String {
        let mac = self.tag(b"iria-news verp", delivery_id);
        format!("d{delivery_id}-{mac}")
    }

    /// Every delivery that `text` proves, by a genuine Message-ID (`<d42.{mac}@`) or VERP token
    /// (`+d42-{mac}`) anywhere in it. Ids with a wrong or short MAC are left out.
    pub fn proved_in(&self, text: &str) -> Vec<i64> {
        let mut found = Vec::new();
        for (i, _) in text.match_indices("<d") {
            if let Some((id, mac, rest)) = id_and_mac(&text[i + 2..], '.') {
                if rest.starts_with('@') && self.verify(b"iria-news message-id", id, mac) {
                    found.push(id);
                }
            }
        }
        for (i, _) in text.match_indices("+d") {
            if let Some((id, mac, _)) = id_and_mac(&text[i + 2..], '-') {
                if self.verify(b"iria-news verp", id, mac) {
                    found.push(id);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// `42.0123…@…` (or `42-0123…`) → (42, "0123…", "@…"): the digits, the separator, the hex
/// digits that follow (as many as there are; the caller checks the length), and what is left.
fn id_and_mac(rest: &str, separator: char) -> Option<(i64, &str, &str)> {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let id: i64 = rest[..digits].parse().ok()?;
    let after = rest[digits..].strip_prefix(separator)?;
    let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
    Some((id, &after[..hex], &after[hex..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> MessageIds {
        MessageIds::with(b"0123456789abcdef0123456789abcdef", "iria.test")
    }

    #[test]
    fn a_message_id_proves_its_delivery_and_no_other() {
        let ids = ids();
        let genuine = ids.message_id(42);
        assert!(genuine.starts_with("<d42.") && genuine.ends_with("@iria.test>"));
        assert_eq!(genuine.len(), "<d42.".len() + 20 + "@iria.test>".len());
        assert_eq!(ids.message_id(42), genuine, "deterministic");
        assert_eq!(ids.proved_in(&format!("Message-ID: {genuine}")), [42]);
        // Another id with this MAC, a shortened MAC, another key: nothing.
        let forged = genuine.replace("<d42.", "<d43.");
        assert!(ids.proved_in(&forged).is_empty());
        let short = format!("<d42.{}@iria.test>", &genuine[5..15]);
        assert!(ids.proved_in(&short).is_empty());
        let other = MessageIds::with(b"another key, another installation", "iria.test");
        assert!(other.proved_in(&genuine).is_empty());
        // The old sequential form proves nothing.
        assert!(ids
            .proved_in("Message-ID: <d42.0a1b2c3d4e5f@iria.test>")
            .is_empty());
    }

    #[test]
    fn a_verp_token_proves_its_delivery_and_no_other() {
        let ids = ids();
        let token = ids.verp_token(7);
        let address = format!("bounces+{token}@bounces.iria.test");
        assert_eq!(ids.proved_in(&format!("To: {address}")), [7]);
        assert!(ids.proved_in(&address.replace("+d7-", "+d8-")).is_empty());
        assert!(ids
            .proved_in("bounces+d7-0123abcd@bounces.iria.test")
            .is_empty());
        // The Message-ID's MAC is not the VERP token's.
        let mid = ids.message_id(7);
        let mac = &mid[4..24];
        assert!(ids.proved_in(&format!("bounces+d7-{mac}@x")).is_empty());
    }

    #[test]
    fn two_proofs_of_one_delivery_count_once() {
        let ids = ids();
        let text = format!(
            "To: bounces+{}@b.test\r\nMessage-ID: {}\r\n",
            ids.verp_token(5),
            ids.message_id(5)
        );
        assert_eq!(ids.proved_in(&text), [5]);
        let both = format!("{text}Message-ID: {}\r\n", ids.message_id(6));
        assert_eq!(ids.proved_in(&both), [5, 6]);
    }
}
