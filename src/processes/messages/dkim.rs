//! DKIM signatures (RFC 6376) of the bytes that are sent: `relaxed/relaxed` canonicalisation,
//! SHA-256, and `rsa-sha256` or `ed25519-sha256` (RFC 8463) computed by OpenSSL. With two keys
//! (RSA and Ed25519, as RFC 8463 recommends) a message carries two signatures; the body is
//! canonicalised and hashed once for both, in one pass over the message's own bytes.
//!
//! No `l=` tag: a body length would let anyone append text under a valid signature.

mod canon;
#[cfg(test)]
mod tests;

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;

use crate::foundation::config::Settings;

/// Lines of the `DKIM-Signature` field are folded before this many characters where they can be.
const LINE: usize = 78;

/// A signature algorithm of DKIM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` tag's value.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// One signing key and where its public half is published (`SELECTOR._domainkey.DOMAIN`).
pub struct DkimKey {
    pub algorithm: Algorithm,
    pub domain: String,
    pub selector: String,
    key: PKey<Private>,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey")
            .field("algorithm", &self.algorithm)
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// A key from the contents of a key file: PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8
    /// (`BEGIN PRIVATE KEY`), RSA of 1024 bits or more or Ed25519; or the base64 of a raw
    /// 32-byte Ed25519 private key (the format documented before PEM was read).
    pub fn parse(contents: &[u8], domain: &str, selector: &str) -> Result<Self, String> {
        let (algorithm, key) = parse_key(contents)?;
        Ok(DkimKey {
            algorithm,
            domain: domain.to_string(),
            selector: selector.to_string(),
            key,
        })
    }

    /// A key read from `path`, the file named by the setting `setting`; errors name both.
    pub fn from_file(
        path: &Path,
        setting: &str,
        domain: &str,
        selector: &str,
    ) -> anyhow::Result<Self> {
        let contents =
            std::fs::read(path).with_context(|| format!("reading {setting} {}", path.display()))?;
        Self::parse(&contents, domain, selector)
            .map_err(|e| anyhow::anyhow!("{setting} {}: {e}", path.display()))
    }

    /// The signature of `data` (the canonical signed header fields): RSASSA-PKCS1-v1_5 over its
    /// SHA-256 hash, or PureEdDSA Ed25519 of its SHA-256 hash (RFC 8463 §3).
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        match self.algorithm {
            Algorithm::RsaSha256 => {
                let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
                signer.update(data)?;
                signer.sign_to_vec()
            }
            Algorithm::Ed25519Sha256 => {
                let hash = openssl::sha::sha256(data);
                Signer::new_without_digest(&self.key)?.sign_oneshot_to_vec(&hash)
            }
        }
    }
}

/// Reads a private key; the error says what the file should be.
fn parse_key(contents: &[u8]) -> Result<(Algorithm, PKey<Private>), String> {
    let text = String::from_utf8_lossy(contents);
    if !text.contains("-----BEGIN") {
        return raw_ed25519(text.trim());
    }
    if text.contains("ENCRYPTED") {
        return Err(
            "the key is protected by a passphrase; write it without one \
                    (`openssl pkey -in key.pem -out plain.pem`)"
                .into(),
        );
    }
    // An empty passphrase, so that OpenSSL never asks for one on the terminal.
    let key = PKey::private_key_from_pem_passphrase(contents, b"").map_err(|e| {
        format!(
            "not a private key in PEM (PKCS#1 or PKCS#8): {}",
            first_error(&e)
        )
    })?;
    match key.id() {
        Id::RSA if key.bits() < 1024 => Err(format!(
            "an RSA key of {} bits: verifiers refuse keys under 1024 bits (RFC 8301); \
             make one of 2048 (`openssl genrsa -out key.pem 2048`)",
            key.bits()
        )),
        Id::RSA => Ok((Algorithm::RsaSha256, key)),
        Id::ED25519 => Ok((Algorithm::Ed25519Sha256, key)),
        other => Err(format!(
            "a key of type {} (OpenSSL's id {}); DKIM signs with RSA or Ed25519 keys only",
            openssl::nid::Nid::from_raw(other.as_raw())
                .short_name()
                .unwrap_or("unknown"),
            other.as_raw()
        )),
    }
}

/// The base64 of a raw Ed25519 private key (its 32-byte seed).
fn raw_ed25519(text: &str) -> Result<(Algorithm, PKey<Private>), String> {
    let refused = || {
        "neither a PEM key (PKCS#1 or PKCS#8) nor the base64 of a 32-byte Ed25519 private key"
            .to_string()
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| refused())?;
    if raw.len() != 32 {
        return Err(refused());
    }
    let key = PKey::private_key_from_raw_bytes(&raw, Id::ED25519)
        .map_err(|e| format!("not a usable Ed25519 key: {}", first_error(&e)))?;
    Ok((Algorithm::Ed25519Sha256, key))
}

fn first_error(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| e.to_string())
}

/// Signs messages with one key or two.
#[derive(Debug)]
pub struct DkimSigner {
    keys: Vec<DkimKey>,
    /// The names of the header fields signed, in lower case, in the order of `h=`.
    headers: Vec<String>,
}

impl DkimSigner {
    /// A signer of the header fields `headers` (and the body) with each of `keys`.
    pub fn new(keys: Vec<DkimKey>, headers: &[&str]) -> Self {
        DkimSigner {
            keys,
            headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// The signer the settings describe, or `None` without DKIM settings: the key of
    /// `IRIA_DKIM_KEY_FILE`, and the Ed25519 key of `IRIA_DKIM_ED25519_KEY_FILE` beside it.
    /// Fails with one line naming the setting when a key file cannot be read or used.
    pub fn from_settings(settings: &Settings, headers: &[&str]) -> anyhow::Result<Option<Self>> {
        let Some(dkim) = &settings.dkim else {
            return Ok(None);
        };
        let first = DkimKey::from_file(
            &dkim.key_file,
            "IRIA_DKIM_KEY_FILE",
            &dkim.domain,
            &dkim.selector,
        )?;
        let mut keys = vec![first];
        if let Some(second) = &dkim.ed25519 {
            let key = DkimKey::from_file(
                &second.key_file,
                "IRIA_DKIM_ED25519_KEY_FILE",
                &dkim.domain,
                &second.selector,
            )?;
            if key.algorithm != Algorithm::Ed25519Sha256 {
                anyhow::bail!(
                    "IRIA_DKIM_ED25519_KEY_FILE {}: not an Ed25519 key (make one with \
                     `openssl genpkey -algorithm ed25519 -out ed25519.pem`)",
                    second.key_file.display()
                );
            }
            keys.push(key);
        }
        Ok(Some(Self::new(keys, headers)))
    }

    pub fn keys(&self) -> &[DkimKey] {
        &self.keys
    }

    /// `message` (a whole message as it is to be sent, CRLF line ends) with a `DKIM-Signature`
    /// field per key in front of it, signed at `timestamp` (seconds since 1970, the `t=` tag).
    pub fn sign(&self, message: &[u8], timestamp: u64) -> anyhow::Result<Vec<u8>> {
        let fields = self.signature_fields(message, timestamp)?;
        let mut signed = Vec::with_capacity(fields.len() + message.len());
        signed.extend_from_slice(fields.as_bytes());
        signed.extend_from_slice(message);
        Ok(signed)
    }

    /// The `DKIM-Signature` fields of `message`, each folded and ending in CRLF.
    pub fn signature_fields(&self, message: &[u8], timestamp: u64) -> anyhow::Result<String> {
        let (header, body) =
            canon::split_message(message).context("DKIM: the message has no body separator")?;
        let mut hasher = openssl::sha::Sha256::new();
        canon::relaxed_body(body, |piece| hasher.update(piece));
        let engine = base64::engine::general_purpose::STANDARD;
        let body_hash = engine.encode(hasher.finish());
        let fields = canon::header_fields(header);
        let names: Vec<&str> = self.headers.iter().map(String::as_str).collect();
        let mut signed_headers = Vec::with_capacity(header.len());
        canon::signed_headers(&fields, &names, &mut signed_headers);
        let mut out = String::new();
        for key in &self.keys {
            let unsigned = unsigned_field(key, timestamp, &names, &body_hash);
            let mut data = signed_headers.clone();
            canon::relaxed_header(unsigned.as_bytes(), &mut data);
            // The field under signature has no CRLF of its own (RFC 6376 §3.7).
            data.truncate(data.len() - 2);
            let signature = key
                .sign(&data)
                .map_err(|e| anyhow::anyhow!("DKIM: signing with {}: {e}", key.selector))?;
            out.push_str(&unsigned);
            fold_base64(&mut out, &engine.encode(signature));
            out.push_str("\r\n");
        }
        Ok(out)
    }
}

/// The `DKIM-Signature` field without its signature: every tag, then an empty `b=`. Folded
/// between tags, and between the names of `h=`, before [`LINE`] characters.
fn unsigned_field(key: &DkimKey, timestamp: u64, names: &[&str], body_hash: &str) -> String {
    let mut line = Folded::new("DKIM-Signature:");
    line.word(" v=1;");
    line.word(&format!(" a={};", key.algorithm.tag()));
    line.word(" c=relaxed/relaxed;");
    line.word(&format!(" d={};", key.domain));
    line.word(&format!(" s={};", key.selector));
    line.word(&format!(" t={timestamp};"));
    for (i, name) in names.iter().enumerate() {
        let head = if i == 0 { " h=" } else { "" };
        let tail = if i + 1 == names.len() { ";" } else { ":" };
        line.word(&format!("{head}{name}{tail}"));
    }
    line.word(&format!(" bh={body_hash};"));
    line.word(" b=");
    line.text
}

/// Appends a base64 value to a field, folding it where lines reach [`LINE`] characters
/// (white space inside `b=` is ignored by verifiers).
fn fold_base64(out: &mut String, value: &str) {
    let mut column = out.len() - out.rfind('\n').map_or(0, |i| i + 1);
    let mut rest = value;
    while !rest.is_empty() {
        if column >= LINE - 1 {
            out.push_str("\r\n ");
            column = 1;
        }
        let take = rest.len().min(LINE - column);
        out.push_str(&rest[..take]);
        column += take;
        rest = &rest[take..];
    }
}

/// A header field written word by word, folded before a word that would pass [`LINE`].
struct Folded {
    text: String,
    column: usize,
}

impl Folded {
    fn new(start: &str) -> Self {
        Folded {
            text: start.to_string(),
            column: start.len(),
        }
    }

    /// Appends `word`; one that starts with a space may start a new line instead, one that
    /// does not is put on a new line after a space.
    fn word(&mut self, word: &str) {
        if self.column + word.len() > LINE {
            self.text.push_str("\r\n");
            self.column = 0;
            if !word.starts_with(' ') {
                self.text.push(' ');
                self.column = 1;
            }
        }
        self.text.push_str(word);
        self.column += word.len();
    }
}
