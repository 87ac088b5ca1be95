//! The second factor: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, one step either
//! side accepted) and ten single-use recovery codes.
//!
//! The TOTP secret is kept sealed (AES-256-GCM, the editor's id as associated data) with a key
//! of its own derived from the secret key (HMAC-SHA-256 over a label); recovery codes are kept as
//! SHA-256 hashes (each is 80 random bits). A code is accepted once: `editors.totp_last_step`
//! holds the last step used, and a code of that step or an earlier one is refused even when
//! right. Code failures are counted with the account's logins (`super::reserve_attempt`).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};

use super::{sessions, Editor};
use crate::foundation::db::schema::{editors, recovery_codes};
use crate::foundation::db::{self, DbConnection, DbError};

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds of a time step.
pub const STEP_SECONDS: u64 = 30;
/// Recovery codes made at each enrolment or regeneration.
pub const RECOVERY_CODES: usize = 10;
/// Bytes of a TOTP secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;
/// Characters of a recovery code (16 of 32: 80 bits), shown in groups of four.
const RECOVERY_CHARS: usize = 16;
/// The recovery codes' alphabet: no i, l, o or u, which are easily misread.
const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A fresh TOTP secret, in base32 (as held during enrolment and shown for manual entry).
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn secret_bytes(base32: &str) -> Result<Vec<u8>, DbError> {
    Secret::Encoded(base32.to_string())
        .to_bytes()
        .map_err(|e| DbError::Other(format!("a TOTP secret that is not base32: {e:?}")))
}

fn totp(secret: Vec<u8>, issuer: &str, name: &str) -> TOTP {
    // The label's parts may not hold a colon.
    let clean = |s: &str| s.replace(':', " ");
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECONDS,
        secret,
        Some(clean(issuer)),
        clean(name),
    )
}

/// What the enrolment page shows: the otpauth URI as an SVG QR code, and the secret for manual
/// entry.
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
}

/// The enrolment of a secret (base32) for an account, shown under `issuer` in the app.
pub fn enrolment(secret: &str, issuer: &str, name: &str) -> Result<Enrolment, DbError> {
    let uri = totp(secret_bytes(secret)?, issuer, name).get_url();
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| DbError::Other(format!("the QR code could not be made: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    // Shown inside an HTML page: the XML declaration goes.
    let qr_svg = svg
        .find("<svg")
        .map(|at| svg[at..].to_string())
        .unwrap_or(svg);
    Ok(Enrolment {
        secret: secret.to_string(),
        uri,
        qr_svg,
    })
}

/// The code of a secret (base32) at a Unix time: what an authenticator app shows.
pub fn code_at(secret: &str, unix_time: u64) -> Result<String, DbError> {
    Ok(totp(secret_bytes(secret)?, "", "").generate(unix_time))
}

fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The earliest step after `last` (the current one or one either side) whose code is `code`.
fn matching_step(secret: &[u8], code: &str, now: u64, last: Option<i64>) -> Option<i64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let generator = totp(secret.to_vec(), "", "");
    let current = now / STEP_SECONDS;
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let right = constant_time_eq(
            generator
                .generate(u64::try_from(step).unwrap_or_default() * STEP_SECONDS)
                .as_bytes(),
            code.as_bytes(),
        );
        if right && last.is_none_or(|last| step > last) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The key sealing TOTP secrets, derived from the secret key.
fn sealing_key(server_secret: &[u8]) -> Result<Aes256Gcm, DbError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(server_secret)
        .map_err(|e| DbError::Other(e.to_string()))?;
    mac.update(b"iria-news totp secret sealing key v1");
    Aes256Gcm::new_from_slice(&mac.finalize().into_bytes())
        .map_err(|e| DbError::Other(e.to_string()))
}

fn seal(server_secret: &[u8], editor_id: i64, secret: &str) -> Result<String, DbError> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let aad = editor_id.to_be_bytes();
    let sealed = sealing_key(server_secret)?
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| DbError::Other("sealing the TOTP secret failed".into()))?;
    Ok(format!(
        "v1:{}",
        STANDARD.encode([&nonce[..], &sealed].concat())
    ))
}

fn unseal(server_secret: &[u8], editor_id: i64, stored: &str) -> Result<Vec<u8>, DbError> {
    let broken = || DbError::Other("a sealed TOTP secret could not be opened".into());
    let raw = stored
        .strip_prefix("v1:")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|raw| raw.len() > 12)
        .ok_or_else(broken)?;
    let aad = editor_id.to_be_bytes();
    let plain = sealing_key(server_secret)?
        .decrypt(
            Nonce::from_slice(&raw[..12]),
            Payload {
                msg: &raw[12..],
                aad: &aad,
            },
        )
        .map_err(|_| broken())?;
    secret_bytes(&String::from_utf8(plain).map_err(|_| broken())?)
}

/// A recovery code as typed: lower case, without spaces or dashes.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(normalise(code).as_bytes()))
}

/// Replaces an editor's recovery codes with [`RECOVERY_CODES`] new ones, returned (shown once).
fn new_recovery_codes(conn: &mut DbConnection, editor_id: i64) -> QueryResult<Vec<String>> {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let raw: Vec<u8> = (0..RECOVERY_CHARS)
                .map(|_| ALPHABET[OsRng.gen_range(0..ALPHABET.len())])
                .collect();
            raw.chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    diesel::delete(recovery_codes::table.filter(recovery_codes::editor_id.eq(editor_id)))
        .execute(conn)?;
    for code in &codes {
        diesel::insert_into(recovery_codes::table)
            .values((
                recovery_codes::editor_id.eq(editor_id),
                recovery_codes::code_hash.eq(code_hash(code)),
            ))
            .execute(conn)?;
    }
    Ok(codes)
}

/// Ends an enrolment: when `code` is right for the secret (base32) held since the enrolment
/// page, the secret is kept (sealed) and ten recovery codes are made and returned (shown once).
/// `None`: a wrong code, or an editor who has a factor already.
pub fn confirm(
    conn: &mut DbConnection,
    server_secret: &[u8],
    editor_id: i64,
    secret: &str,
    code: &str,
) -> Result<Option<Vec<String>>, DbError> {
    let bytes = secret_bytes(secret)?;
    let Some(step) = matching_step(&bytes, &normalise(code), unix_now(), None) else {
        return Ok(None);
    };
    let sealed = seal(server_secret, editor_id, secret)?;
    db::write_transaction(conn, |conn| {
        let enrolled = diesel::update(
            editors::table
                .find(editor_id)
                .filter(editors::totp_enrolled_at.is_null()),
        )
        .set((
            editors::totp_secret.eq(Some(sealed)),
            editors::totp_enrolled_at.eq(Some(db::now())),
            editors::totp_last_step.eq(Some(step)),
        ))
        .execute(conn)?;
        if enrolled == 0 {
            return Ok(None);
        }
        Ok(Some(new_recovery_codes(conn, editor_id)?))
    })
}

/// Which code was accepted, or why none was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    Totp,
    Recovery,
    Wrong,
    /// Too many failures lately for the account (or device) or from the address: not checked.
    Throttled,
}

/// Checks a TOTP code of an enrolled editor and, when right, uses its step (a code is accepted
/// once: the step must be later than the last one used, and is written only if it still is).
fn use_totp(
    conn: &mut DbConnection,
    server_secret: &[u8],
    editor_id: i64,
    code: &str,
) -> Result<bool, DbError> {
    let (sealed, last) = editors::table
        .find(editor_id)
        .select((editors::totp_secret, editors::totp_last_step))
        .first::<(Option<String>, Option<i64>)>(conn)?;
    let Some(sealed) = sealed else {
        return Ok(false);
    };
    let secret = unseal(server_secret, editor_id, &sealed)?;
    let Some(step) = matching_step(&secret, code, unix_now(), last) else {
        return Ok(false);
    };
    let used = diesel::update(
        editors::table.find(editor_id).filter(
            editors::totp_last_step
                .is_null()
                .or(editors::totp_last_step.lt(step)),
        ),
    )
    .set(editors::totp_last_step.eq(Some(step)))
    .execute(conn)?;
    Ok(used == 1)
}

/// Uses a recovery code of an editor, once.
fn use_recovery(conn: &mut DbConnection, editor_id: i64, code: &str) -> QueryResult<bool> {
    let used = diesel::update(
        recovery_codes::table
            .filter(recovery_codes::editor_id.eq(editor_id))
            .filter(recovery_codes::code_hash.eq(code_hash(code)))
            .filter(recovery_codes::used_at.is_null()),
    )
    .set(recovery_codes::used_at.eq(Some(db::now())))
    .execute(conn)?;
    Ok(used == 1)
}

/// Checks a code counted against `key` and the address like a login attempt: reserved first
/// (refused unchecked past the limits), taken back when right.
fn counted(
    conn: &mut DbConnection,
    key: &str,
    ip: &str,
    check: impl FnOnce(&mut DbConnection) -> Result<CodeCheck, DbError>,
) -> Result<CodeCheck, DbError> {
    let Some(reserved) = super::reserve_attempt(conn, key, &super::ip_key(ip), db::now())? else {
        return Ok(CodeCheck::Throttled);
    };
    let outcome = check(conn)?;
    if outcome != CodeCheck::Wrong {
        super::take_back(conn, &reserved)?;
    }
    Ok(outcome)
}

/// The login's second step: a TOTP code or a recovery code, counted with the account's logins
/// (against the known device the browser's cookie names, if any, else the account name; and the
/// client address). A right code completes the login and clears that key's failures.
pub fn check_login_code(
    conn: &mut DbConnection,
    server_secret: &[u8],
    editor: &Editor,
    ip: &str,
    device: Option<&str>,
    code: &str,
) -> Result<CodeCheck, DbError> {
    let key = super::login_key(conn, &editor.name, device)?;
    let code = normalise(code);
    let outcome = counted(conn, &key, ip, |conn| {
        Ok(if code.len() == DIGITS {
            if use_totp(conn, server_secret, editor.id, &code)? {
                CodeCheck::Totp
            } else {
                CodeCheck::Wrong
            }
        } else if !code.is_empty() && use_recovery(conn, editor.id, &code)? {
            CodeCheck::Recovery
        } else {
            CodeCheck::Wrong
        })
    })?;
    if matches!(outcome, CodeCheck::Totp | CodeCheck::Recovery) {
        super::clear_failures(conn, &key)?;
    }
    Ok(outcome)
}

/// Checks a signed-in editor's TOTP code (to regenerate recovery codes or remove the factor),
/// counted with the account's logins against the account name and the address.
pub fn check_code(
    conn: &mut DbConnection,
    server_secret: &[u8],
    editor: &Editor,
    ip: &str,
    code: &str,
) -> Result<CodeCheck, DbError> {
    let code = normalise(code);
    counted(conn, &super::account_key(&editor.name), ip, |conn| {
        Ok(if use_totp(conn, server_secret, editor.id, &code)? {
            CodeCheck::Totp
        } else {
            CodeCheck::Wrong
        })
    })
}

/// New recovery codes for an editor (the old ones stop working), returned to be shown once.
pub fn regenerate(conn: &mut DbConnection, editor_id: i64) -> QueryResult<Vec<String>> {
    db::write_transaction(conn, |conn| new_recovery_codes(conn, editor_id))
}

/// An editor's second factor as the status page shows it.
#[derive(Clone, Debug)]
pub struct Status {
    pub enrolled_at: Option<NaiveDateTime>,
    pub recovery_codes_left: i64,
}

pub fn status(conn: &mut DbConnection, editor_id: i64) -> QueryResult<Status> {
    let enrolled_at = editors::table
        .find(editor_id)
        .select(editors::totp_enrolled_at)
        .first(conn)?;
    let recovery_codes_left = recovery_codes::table
        .filter(recovery_codes::editor_id.eq(editor_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)?;
    Ok(Status {
        enrolled_at,
        recovery_codes_left,
    })
}

/// Removes an editor's second factor (TOTP secret, recovery codes). Their other sessions end
/// (all when `keep_session` is `None`).
pub fn remove(
    conn: &mut DbConnection,
    editor_id: i64,
    keep_session: Option<i64>,
) -> QueryResult<()> {
    db::write_transaction(conn, |conn| {
        diesel::update(editors::table.find(editor_id))
            .set((
                editors::totp_secret.eq(None::<String>),
                editors::totp_enrolled_at.eq(None::<NaiveDateTime>),
                editors::totp_last_step.eq(None::<i64>),
            ))
            .execute(conn)?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::editor_id.eq(editor_id)))
            .execute(conn)?;
        sessions::end_all(conn, editor_id, keep_session)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238's SHA-1 secret, "12345678901234567890", in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn codes_are_those_of_rfc_6238() {
        // The RFC's 8-digit values, of which a 6-digit code is the last six.
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
        ] {
            assert_eq!(code_at(RFC_SECRET, time).expect("code"), code);
        }
    }

    #[test]
    fn a_step_is_accepted_once_and_one_step_either_side() {
        let secret = secret_bytes(RFC_SECRET).expect("secret");
        let now = 1_234_567_890;
        let step = i64::try_from(now / STEP_SECONDS).expect("step");
        let code = |s: i64| code_at(RFC_SECRET, u64::try_from(s).expect("s") * 30).expect("code");
        assert_eq!(matching_step(&secret, &code(step), now, None), Some(step));
        assert_eq!(
            matching_step(&secret, &code(step - 1), now, None),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code(step + 1), now, None),
            Some(step + 1)
        );
        assert_eq!(matching_step(&secret, &code(step + 2), now, None), None);
        assert_eq!(matching_step(&secret, &code(step), now, Some(step)), None);
        assert_eq!(
            matching_step(&secret, &code(step - 1), now, Some(step - 1)),
            None
        );
        assert_eq!(matching_step(&secret, "12345", now, None), None);
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_editor() {
        let key = b"a secret key of at least thirty-two bytes";
        let sealed = seal(key, 7, RFC_SECRET).expect("seal");
        assert!(!sealed.contains(RFC_SECRET));
        assert_eq!(
            unseal(key, 7, &sealed).expect("open"),
            secret_bytes(RFC_SECRET).expect("secret")
        );
        assert!(unseal(key, 8, &sealed).is_err(), "another editor's row");
        assert!(unseal(b"another key of at least thirty-two bytes", 7, &sealed).is_err());
    }

    #[test]
    fn recovery_codes_are_read_as_typed() {
        assert_eq!(
            code_hash("ABCD-efgh 2345-6789"),
            code_hash("abcdefgh23456789")
        );
    }
}
