//! One SMTP mail transaction on an open connection (RFC 5321 §3.3), written here rather than by
//! lettre's `AsyncSmtpConnection::send` for the sake of the wire:
//!
//! - with PIPELINING (RFC 2920), `MAIL`, every `RCPT` and `DATA` leave in one write and their
//!   replies are read afterwards: one round trip instead of three;
//! - the message's dot-stuffing (§4.5.2) is a search for line starts that begin with a dot
//!   (`memchr`), copying whole runs between them, and the message with its final `.` leaves in one
//!   write; lettre's codec pushes each byte of a 50 KB digest one by one, which was the largest
//!   cost of a send in the profile.
//!
//! lettre still opens the connection, says EHLO, does STARTTLS and AUTH, and parses every reply.

use std::fmt;

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};

/// Text handed to lettre's `command` as it is: lettre writes it in one write and reads one reply.
struct Raw<'a>(&'a str);

impl fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The message as the DATA command carries it: every line (after a CRLF, as SMTP counts lines)
/// that starts with a dot gets another one, and the end-of-data line `CRLF . CRLF` follows.
pub fn dot_stuffed(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    let bytes = message.as_bytes();
    let mut start = 0;
    if bytes.first() == Some(&b'.') {
        out.push('.');
    }
    for nl in memchr::memchr_iter(b'\n', bytes) {
        if nl > 0 && bytes[nl - 1] == b'\r' && bytes.get(nl + 1) == Some(&b'.') {
            // Up to and including the newline; the dot is copied with the next run.
            out.push_str(&message[start..=nl]);
            out.push('.');
            start = nl + 1;
        }
    }
    out.push_str(&message[start..]);
    out.push_str("\r\n.\r\n");
    out
}

/// Why a transaction failed: the server's reply (or the connection), or a message this server
/// cannot take at all.
#[derive(Debug)]
pub enum Failure {
    Smtp(lettre::transport::smtp::Error),
    /// Permanent: sending it again to the same server cannot work.
    Unsendable(&'static str),
}

/// Sends one message on `conn`. On any error the connection is in an unknown state (replies of a
/// pipelined group may be unread) and must not be used again.
pub async fn send(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    email: &[u8],
    pipelining: bool,
) -> Result<(), Failure> {
    let info = conn.server_info();
    let mut options = Vec::new();
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Unsendable(
                "the address is not ASCII and the SMTP server does not offer SMTPUTF8",
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    // This project's messages are 7-bit (quoted-printable, encoded headers); the guard is for
    // the day one is not.
    if !email.is_ascii() {
        if !info.supports_feature(Extension::EightBitMime) {
            return Err(Failure::Unsendable(
                "the message is not ASCII and the SMTP server does not offer 8BITMIME",
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(envelope.from().cloned(), options).to_string();
    let rcpts: Vec<String> = envelope
        .to()
        .iter()
        .map(|to| Rcpt::new(to.clone(), vec![]).to_string())
        .collect();
    if pipelining {
        let mut group = mail;
        for rcpt in &rcpts {
            group.push_str(rcpt);
        }
        group.push_str(&Data.to_string());
        conn.command(Raw(&group)).await.map_err(Failure::Smtp)?;
        for _ in 0..=rcpts.len() {
            conn.read_response().await.map_err(Failure::Smtp)?;
        }
    } else {
        conn.command(Raw(&mail)).await.map_err(Failure::Smtp)?;
        for rcpt in &rcpts {
            conn.command(Raw(rcpt)).await.map_err(Failure::Smtp)?;
        }
        conn.command(Data).await.map_err(Failure::Smtp)?;
    }
    match std::str::from_utf8(email) {
        Ok(text) => conn
            .command(Raw(&dot_stuffed(text)))
            .await
            .map_err(Failure::Smtp)?,
        // Not text (never so for this project's messages): lettre's own encoder.
        Err(_) => conn.message(email).await.map_err(Failure::Smtp)?,
    };
    Ok(())
}

/// Whether an EHLO reply offers PIPELINING (lettre keeps only the extensions it uses).
pub fn offers_pipelining<'a>(lines: impl IntoIterator<Item = &'a str>) -> bool {
    lines
        .into_iter()
        .any(|line| line.split_whitespace().next() == Some("PIPELINING"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_at_line_starts_are_doubled_and_the_end_is_marked() {
        assert_eq!(dot_stuffed("a\r\nb"), "a\r\nb\r\n.\r\n");
        assert_eq!(
            dot_stuffed(".a\r\n.\r\n..b\r\nc.d"),
            "..a\r\n..\r\n...b\r\nc.d\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(""), "\r\n.\r\n");
        assert_eq!(dot_stuffed("x\r\n."), "x\r\n..\r\n.\r\n");
        // A bare LF ends no SMTP line.
        assert_eq!(dot_stuffed("x\n.y"), "x\n.y\r\n.\r\n");
    }

    #[test]
    fn pipelining_is_read_from_the_ehlo_reply() {
        assert!(offers_pipelining(["mx.example", "PIPELINING", "8BITMIME"]));
        assert!(!offers_pipelining([
            "mx.example",
            "8BITMIME",
            "XPIPELINING"
        ]));
    }
}
