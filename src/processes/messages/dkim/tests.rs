use super::*;

fn body(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    canon::relaxed_body(input, |piece| out.extend_from_slice(piece));
    out
}

fn header(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    canon::relaxed_header(input, &mut out);
    out
}

/// RFC 6376 §3.4.5, the example of relaxed canonicalisation, header and body.
#[test]
fn rfc6376_3_4_5_relaxed_example() {
    let message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
    let (head, rest) = canon::split_message(message).expect("a separator");
    let fields = canon::header_fields(head);
    assert_eq!(fields.len(), 2);
    let mut signed = Vec::new();
    canon::signed_headers(&fields, &["a", "b"], &mut signed);
    assert_eq!(signed, b"a:X\r\nb:Y Z\r\n");
    assert_eq!(body(rest), b" C\r\nD E\r\n");
}

#[test]
fn relaxed_body_edge_cases() {
    // Nothing, or nothing but empty lines: nothing.
    assert_eq!(body(b""), b"");
    assert_eq!(body(b"\r\n\r\n \t\r\n"), b"");
    // A last line without CRLF gets one; trailing white space goes, also on that line.
    assert_eq!(body(b"a\r\nb \t"), b"a\r\nb\r\n");
    // Empty lines inside stay, also white-space-only ones (emptied); those at the end go.
    assert_eq!(body(b"a\r\n\r\n  \r\nb\r\n\r\n\r\n"), b"a\r\n\r\n\r\nb\r\n");
    // More held-back empty lines than one write of them.
    let many = [b"x\r\n".as_slice(), &b"\r\n".repeat(20), b"y\r\n"].concat();
    assert_eq!(body(&many), many);
    // Runs of white space inside a line, leading ones too, become one space.
    assert_eq!(body(b"\t a  b\t\tc\r\n"), b" a b c\r\n");
    // A bare LF or CR is text, not a line end.
    assert_eq!(body(b"a\nb \r\n"), b"a\nb\r\n");
    // Non-ASCII bytes pass untouched, and a line far over 998 bytes is one line.
    let long = [&"é".repeat(1500).into_bytes()[..], b"  \r\n"].concat();
    assert_eq!(
        body(&long),
        [&"é".repeat(1500).into_bytes()[..], b"\r\n"].concat()
    );
}

#[test]
fn relaxed_header_unfolds_and_lowercases() {
    assert_eq!(
        header(b"Subject:   Hello\r\n   world \t\r\n"),
        b"subject:Hello world\r\n"
    );
    assert_eq!(header(b"X-Empty:\r\n"), b"x-empty:\r\n");
    assert_eq!(header(b"List-ID : <a.b>\r\n"), b"list-id:<a.b>\r\n");
}

/// Several fields of one name are signed from the bottom up; a name with none left adds
/// nothing.
#[test]
fn signed_headers_are_taken_from_the_bottom() {
    let head = b"Received: one\r\nFrom: a@x\r\nReceived: two\r\n";
    let fields = canon::header_fields(head);
    let mut out = Vec::new();
    canon::signed_headers(
        &fields,
        &["received", "from", "received", "received"],
        &mut out,
    );
    assert_eq!(out, b"received:two\r\nfrom:a@x\r\nreceived:one\r\n");
}

const RFC8463_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";

const RFC8463_MESSAGE: &str = "From: Joe SixPack <joe@football.example.com>\r\n\
To: Suzie Q <suzie@shopping.example.net>\r\n\
Subject: Is dinner ready?\r\n\
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n\
Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n\
\r\n\
Hi.\r\n\
\r\n\
We lost the game.  Are you hungry yet?\r\n\
\r\n\
Joe.\r\n";

/// RFC 8463 Appendix A: the Ed25519 signature of the example message with the example key
/// (RFC 8032 §7.1, test 1), body hash and signature as published.
#[test]
fn rfc8463_appendix_a_ed25519_signature() {
    let key = DkimKey::parse(RFC8463_SEED.as_bytes(), "football.example.com", "brisbane")
        .expect("the example key");
    assert_eq!(key.algorithm, Algorithm::Ed25519Sha256);
    let (head, rest) = canon::split_message(RFC8463_MESSAGE.as_bytes()).expect("separator");
    let mut hasher = openssl::sha::Sha256::new();
    canon::relaxed_body(rest, |piece| hasher.update(piece));
    let engine = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        engine.encode(hasher.finish()),
        "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    );
    let names = [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "from",
        "subject",
        "date",
    ];
    let mut data = Vec::new();
    canon::signed_headers(&canon::header_fields(head), &names, &mut data);
    let field = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n \
                 d=football.example.com; i=@football.example.com;\r\n \
                 q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n \
                 subject : date : message-id : from : subject : date;\r\n \
                 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n \
                 b=";
    canon::relaxed_header(field.as_bytes(), &mut data);
    data.truncate(data.len() - 2);
    let signature = key.sign(&data).expect("sign");
    assert_eq!(
        engine.encode(signature),
        "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
    );
}

fn rsa_key() -> (DkimKey, PKey<Private>) {
    let rsa = openssl::rsa::Rsa::generate(2048).expect("generate");
    let pem = rsa.private_key_to_pem().expect("pem");
    let key = DkimKey::parse(&pem, "iria.test", "news").expect("PKCS#1 PEM");
    (key, PKey::from_rsa(rsa).expect("pkey"))
}

/// The signer's field: every tag, folded under 79 characters, no `l=`; its signature checks
/// with the public key over the canonical headers and field.
#[test]
fn the_signature_field_is_folded_and_verifies() {
    let (key, pkey) = rsa_key();
    let signer = DkimSigner::new(vec![key], &["From", "Subject", "List-Unsubscribe"]);
    let message =
        b"From: a@iria.test\r\nSubject: Hi\r\nList-Unsubscribe: <https://x/u>\r\n\r\nBody\r\n";
    let signed = signer.sign(message, 1_700_000_000).expect("sign");
    let text = String::from_utf8(signed.clone()).expect("text");
    let (field, rest) = text.split_at(text.find("From:").expect("From"));
    assert_eq!(rest.as_bytes(), message);
    for line in field.split("\r\n") {
        assert!(line.len() <= 78, "{line:?} is {} long", line.len());
    }
    let unfolded: String = field.split("\r\n").collect();
    for tag in [
        "v=1;",
        "a=rsa-sha256;",
        "c=relaxed/relaxed;",
        "d=iria.test;",
        "s=news;",
        "t=1700000000;",
        "h=from:subject:list-unsubscribe;",
    ] {
        assert!(unfolded.contains(tag), "{tag} missing from {unfolded}");
    }
    assert!(!unfolded.contains(" l="), "no body length: {unfolded}");
    // Check b= by hand: the canonical signed fields, then the field with b= emptied.
    let b_at = unfolded.find(" b=").expect("b=") + 3;
    let b: String = unfolded[b_at..].split_whitespace().collect();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(b)
        .expect("base64");
    let mut data = b"from:a@iria.test\r\nsubject:Hi\r\nlist-unsubscribe:<https://x/u>\r\n".to_vec();
    let emptied = &field[..field.find(" b=").expect("b=") + 3];
    canon::relaxed_header(emptied.as_bytes(), &mut data);
    data.truncate(data.len() - 2);
    let mut verifier =
        openssl::sign::Verifier::new(MessageDigest::sha256(), &pkey).expect("verifier");
    verifier.update(&data).expect("update");
    assert!(verifier.verify(&signature).expect("verify"));
    // The body hash is that of the canonical body.
    let bh = base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(b"Body\r\n"));
    assert!(unfolded.contains(&format!("bh={bh};")));
}

#[test]
fn two_keys_give_two_signatures() {
    let (rsa, _) = rsa_key();
    let ed = PKey::generate_ed25519().expect("ed25519");
    let ed_pem = ed.private_key_to_pem_pkcs8().expect("pem");
    let ed = DkimKey::parse(&ed_pem, "iria.test", "ed").expect("PKCS#8 Ed25519");
    let signer = DkimSigner::new(vec![rsa, ed], &["From"]);
    let fields = signer
        .signature_fields(b"From: a@iria.test\r\n\r\nx\r\n", 1)
        .expect("sign");
    assert_eq!(fields.matches("DKIM-Signature:").count(), 2);
    assert!(fields.contains("a=rsa-sha256;"));
    assert!(fields.contains("a=ed25519-sha256;") && fields.contains("s=ed;"));
}

#[test]
fn bad_keys_are_refused_with_what_to_do() {
    let err = |contents: &[u8]| DkimKey::parse(contents, "d", "s").expect_err("refused");
    assert!(err(b"hello").contains("neither a PEM key"));
    assert!(
        err(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .contains("not a private key in PEM")
    );
    let small = openssl::rsa::Rsa::generate(512).expect("generate");
    let small = small.private_key_to_pem().expect("pem");
    assert!(err(&small).contains("512 bits"));
    let ec = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("group"),
    )
    .expect("ec");
    let ec = PKey::from_ec_key(ec)
        .expect("pkey")
        .private_key_to_pem_pkcs8()
        .expect("pem");
    assert!(err(&ec).contains("RSA or Ed25519 keys only"));
    let pkcs8 = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa"))
        .expect("pkey")
        .private_key_to_pem_pkcs8()
        .expect("pem");
    let key = DkimKey::parse(&pkcs8, "d", "s").expect("PKCS#8 RSA");
    assert_eq!(key.algorithm, Algorithm::RsaSha256);
}

/// RFC 6376 §3.4.4 read literally, line by line, for comparison with the searching version.
fn relaxed_body_by_the_letter(input: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut rest = input;
    loop {
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                lines.push(rest[..at].to_vec());
                rest = &rest[at + 2..];
            }
            None => {
                lines.push(rest.to_vec());
                break;
            }
        }
    }
    let mut canonical: Vec<Vec<u8>> = lines
        .into_iter()
        .map(|line| {
            let mut out = Vec::new();
            let mut space = false;
            for b in line {
                if b == b' ' || b == b'\t' {
                    space = true;
                } else {
                    if space {
                        out.push(b' ');
                    }
                    space = false;
                    out.push(b);
                }
            }
            out
        })
        .collect();
    while canonical.last().is_some_and(Vec::is_empty) {
        canonical.pop();
    }
    canonical
        .into_iter()
        .flat_map(|mut line| {
            line.extend_from_slice(b"\r\n");
            line
        })
        .collect()
}

#[test]
fn relaxed_body_equals_the_rfc_read_literally_on_random_bodies() {
    use rand::{Rng, SeedableRng};
    let pieces: [&[u8]; 9] = [
        b"a",
        b"word",
        b" ",
        b"\t",
        b"\r\n",
        b"\r",
        b"\n",
        "é".as_bytes(),
        b"=20",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(6376);
    for case in 0..20_000 {
        let len = rng.gen_range(0..40);
        let input: Vec<u8> = (0..len)
            .flat_map(|_| pieces[rng.gen_range(0..pieces.len())].iter().copied())
            .collect();
        assert_eq!(
            body(&input),
            relaxed_body_by_the_letter(&input),
            "case {case}: {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}
