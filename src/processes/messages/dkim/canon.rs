//! The "relaxed" canonicalisations of RFC 6376 §3.4.2 (header fields) and §3.4.4 (body), over
//! the bytes of a message as it is written.
//!
//! The body is handed on in slices of the message itself: runs of lines that are canonical as
//! they stand (the common case) go out in one piece, and only a line that needs changing is
//! rewritten, so a caller hashing the output reads the body once and copies none of it.

/// Space and horizontal tab, the white space (WSP) of RFC 5234.
fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The end of the line starting at `from`: the index of its CRLF, or the end of `bytes` when
/// the last line has none. A CR or LF standing alone is part of the line.
fn line_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(at) = memchr::memchr(b'\n', &bytes[i..]) {
        let lf = i + at;
        if lf > from && bytes[lf - 1] == b'\r' {
            return lf - 1;
        }
        i = lf + 1;
    }
    bytes.len()
}

/// Feeds `out` with the relaxed canonical form of one line (without its CRLF) that has some
/// text in it: each run of white space one space, none at the end.
fn rewrite_line(line: &[u8], out: &mut impl FnMut(&[u8])) {
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        if !is_wsp(line[i]) {
            i += 1;
            continue;
        }
        out(&line[start..i]);
        let mut j = i;
        while j < line.len() && is_wsp(line[j]) {
            j += 1;
        }
        if j < line.len() {
            out(b" ");
        }
        start = j;
        i = j;
    }
    out(&line[start..]);
}

/// The relaxed canonical form of a body (RFC 6376 §3.4.4), handed to `out` piece by piece:
/// white space at the ends of lines removed, runs of it one space, empty lines at the end
/// removed, and a CRLF after the last line of a body that lacks one.
///
/// Only a line holding a tab, two white space characters in a row or white space before its
/// CRLF changes; such lines are found by searching the whole body for those bytes (a vectorised
/// search, not a look at every byte of every line), and everything between them is handed on as
/// it stands.
pub fn relaxed_body(body: &[u8], mut out: impl FnMut(&[u8])) {
    let Some(text_end) = end_of_text(body) else {
        return;
    };
    // The last line with text: rewritten whatever it holds, and given its CRLF.
    let last_start = memchr::memmem::rfind(&body[..text_end], b"\r\n").map_or(0, |i| i + 2);
    let lines = &body[..last_start];
    let mut finds = Finds::new(lines);
    let mut span = 0;
    while let Some(at) = finds.next_from(span) {
        let start = memchr::memmem::rfind(&lines[span..at], b"\r\n").map_or(span, |i| span + i + 2);
        // Every line before `last_start` ends in a CRLF.
        let end = memchr::memmem::find(&lines[at..], b"\r\n").map_or(lines.len(), |i| at + i);
        out(&lines[span..start]);
        rewrite_line(&lines[start..end], &mut out);
        out(b"\r\n");
        span = (end + 2).min(lines.len());
    }
    out(&lines[span..]);
    rewrite_line(&body[last_start..text_end], &mut out);
    out(b"\r\n");
}

/// Where the body's last line with text in it (anything but white space) ends, without its
/// CRLF; `None` for a body of nothing but empty or white-space-only lines.
fn end_of_text(body: &[u8]) -> Option<usize> {
    let mut end = body.len();
    loop {
        let start = memchr::memmem::rfind(&body[..end], b"\r\n").map_or(0, |i| i + 2);
        if !body[start..end].iter().all(|&b| is_wsp(b)) {
            return Some(end);
        }
        if start == 0 {
            return None;
        }
        end = start - 2;
    }
}

/// The next place in a run of CRLF-ended lines where a line changes under relaxed
/// canonicalisation: a tab, two white space characters in a row, or white space before a CRLF.
/// Each kind is searched for on its own and its next place kept until passed, so the lines
/// are read once by each search.
struct Finds<'a> {
    lines: &'a [u8],
    /// The next tab, double space and space before CRLF at or after the last `from`.
    next: [Option<usize>; 3],
    searched: bool,
}

impl<'a> Finds<'a> {
    fn new(lines: &'a [u8]) -> Self {
        Finds {
            lines,
            next: [None; 3],
            searched: false,
        }
    }

    fn next_from(&mut self, from: usize) -> Option<usize> {
        for kind in 0..3 {
            if !self.searched || self.next[kind].is_some_and(|at| at < from) {
                let rest = self.lines.get(from..).unwrap_or_default();
                let found = match kind {
                    0 => memchr::memchr(b'\t', rest),
                    1 => memchr::memmem::find(rest, b"  "),
                    _ => memchr::memmem::find(rest, b" \r\n"),
                };
                self.next[kind] = found.map(|i| from + i);
            }
        }
        self.searched = true;
        self.next.iter().flatten().copied().min()
    }
}

/// One header field in relaxed canonical form (RFC 6376 §3.4.2), appended to `out` with a
/// CRLF: the name in lower case, folding removed, runs of white space one space, none around
/// the colon or at the end. `field` is the field as written, continuation lines included.
pub fn relaxed_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let name = &field[..colon];
    let name_end = name.iter().rposition(|&b| !is_wsp(b)).map_or(0, |i| i + 1);
    out.extend(name[..name_end].iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let value = field.get(colon + 1..).unwrap_or_default();
    // Unfolded: CR and LF dropped, so each fold leaves the white space after it.
    let mut pending_space = false;
    let mut any = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = any,
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(b);
                any = true;
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The header fields of a header section (the bytes before the empty line), each as written
/// with its continuation lines and CRLF, with its name.
pub fn header_fields(section: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < section.len() {
        let end = line_end(section, pos);
        let next = (end + 2).min(section.len());
        let continues = next < section.len() && is_wsp(section[next]);
        if !continues {
            let field = &section[start..next];
            let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
            let name = field[..colon].trim_ascii_end();
            fields.push((name, field));
            start = next;
        }
        pos = next;
    }
    fields
}

/// The header fields named in `signed`, in that order, canonicalised and appended to `out`.
/// Each name takes the last field of that name not taken yet (RFC 6376 §5.4.2); a name with
/// none left adds nothing.
pub fn signed_headers(fields: &[(&[u8], &[u8])], signed: &[&str], out: &mut Vec<u8>) {
    let mut taken = vec![false; fields.len()];
    for name in signed {
        let found = fields
            .iter()
            .enumerate()
            .rev()
            .find(|(i, (n, _))| !taken[*i] && n.eq_ignore_ascii_case(name.as_bytes()));
        if let Some((i, (_, field))) = found {
            taken[i] = true;
            relaxed_header(field, out);
        }
    }
}

/// Splits a message into its header section (with the CRLF of its last field) and its body;
/// `None` when there is no empty line after the headers.
pub fn split_message(message: &[u8]) -> Option<(&[u8], &[u8])> {
    if message.starts_with(b"\r\n") {
        return Some((&[], &message[2..]));
    }
    let at = message.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&message[..at + 2], &message[at + 4..]))
}
