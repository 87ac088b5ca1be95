//! Signing one message of about 50 KB of text (74 KB as written: HTML and text parts, quoted-printable) with DKIM: lettre's own
//! signer (the pure-Rust `rsa` crate) against this program's (OpenSSL), RSA-2048 and Ed25519,
//! and both at once. Each copies the same message, signs it and writes it out.
//!
//!     cargo bench --bench dkim

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use iria_news::processes::messages::dkim::{DkimKey, DkimSigner};
use iria_news::processes::messages::DKIM_SIGNED_HEADERS;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{MultiPart, SinglePart};
use lettre::Message;
use openssl::pkey::PKey;

/// A message of about 50 KB: a text part and an HTML part of an issue.
fn message() -> Message {
    let paragraph = "The Joint Security Cooperation Dialogue discussed the transition of the \
                     coalition's mission — Sécurité, Україна, 安全 — and what follows for the region.";
    let mut text = String::new();
    let mut html = String::from("<html><body>");
    while text.len() < 20_000 {
        text.push_str(paragraph);
        text.push_str("\n\n");
        html.push_str(&format!(
            "<p style=\"margin:0 0 16px 0;font-family:Georgia,serif\">{paragraph} \
             <a href=\"https://news.iria.example/r/abcdefghijklmnop\">Read more</a></p>\n"
        ));
    }
    html.push_str("</body></html>");
    let raw = |name: &'static str, value: &str| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
    };
    Message::builder()
        .from("IRIA News <news@iria.example>".parse().expect("from"))
        .to("Zoë Reader <reader@example.org>".parse().expect("to"))
        .subject("IRIA News: Sécurité — Україна, 安全")
        .message_id(Some("<d1.abcdef@iria.example>".into()))
        .raw_header(raw("List-Id", "IRIA News <news.iria.example>"))
        .raw_header(raw(
            "List-Unsubscribe",
            "<https://news.iria.example/unsubscribe/abcdef>",
        ))
        .raw_header(raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .expect("message")
}

fn bench(c: &mut Criterion) {
    let message = message();
    let bytes = message.formatted();
    println!("message: {} bytes", bytes.len());
    let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let pkcs1 = String::from_utf8(rsa.private_key_to_pem().expect("pem")).expect("pem");
    let ed = PKey::generate_ed25519().expect("ed25519");
    let ed_pem = ed.private_key_to_pem_pkcs8().expect("pem");

    let lettre_config = DkimConfig::new(
        "rsa2026".into(),
        "iria.example".into(),
        DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa).expect("lettre key"),
        DKIM_SIGNED_HEADERS
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect(),
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    );
    // What every variant below does besides signing: copy the message and write it out.
    c.bench_function("no signature (copy and write out), 50 KB message", |b| {
        b.iter(|| black_box(black_box(&message).clone().formatted()))
    });
    c.bench_function("lettre's signer, RSA-2048, 50 KB message", |b| {
        b.iter(|| {
            let mut m = message.clone();
            m.sign(black_box(&lettre_config));
            black_box(m.formatted())
        })
    });

    let rsa_key = DkimKey::parse(pkcs1.as_bytes(), "iria.example", "rsa2026").expect("rsa");
    let signer = DkimSigner::new(vec![rsa_key], DKIM_SIGNED_HEADERS);
    c.bench_function("our signer, RSA-2048, 50 KB message", |b| {
        b.iter(|| {
            let bytes = black_box(&message).clone().formatted();
            black_box(signer.sign(&bytes, 1_764_547_200).expect("sign"))
        })
    });

    let ed_key = DkimKey::parse(&ed_pem, "iria.example", "ed2026").expect("ed25519");
    let signer = DkimSigner::new(vec![ed_key], DKIM_SIGNED_HEADERS);
    c.bench_function("our signer, Ed25519, 50 KB message", |b| {
        b.iter(|| {
            let bytes = black_box(&message).clone().formatted();
            black_box(signer.sign(&bytes, 1_764_547_200).expect("sign"))
        })
    });

    let both = vec![
        DkimKey::parse(pkcs1.as_bytes(), "iria.example", "rsa2026").expect("rsa"),
        DkimKey::parse(&ed_pem, "iria.example", "ed2026").expect("ed25519"),
    ];
    let signer = DkimSigner::new(both, DKIM_SIGNED_HEADERS);
    c.bench_function("our signer, RSA-2048 and Ed25519, 50 KB message", |b| {
        b.iter(|| {
            let bytes = black_box(&message).clone().formatted();
            black_box(signer.sign(&bytes, 1_764_547_200).expect("sign"))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
