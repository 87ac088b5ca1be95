//! Rendering one recipient's digest (10 articles, HTML and text): the digest is composed once per
//! issue (layout, CSS inlining); each recipient's copy then only gets its own links and is
//! written out as a MIME message. Target: under 50 µs per message.
//!
//!     cargo bench --bench digest

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use iria_news::foundation::config::{ClickTracking, Settings};
use iria_news::processes::messages::IssueContent;
use iria_news::processes::messages::{self, Addressee};
use iria_news::stores::articles::Article;

fn settings() -> Settings {
    let env: BTreeMap<String, String> = [
        (
            "IRIA_SECRET_KEY",
            "bench-secret-key-bench-secret-key-0123456789",
        ),
        ("IRIA_BASE_URL", "https://news.iria.example"),
        ("IRIA_FROM", "IRIA News <news@iria.example>"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Settings::from_sources(None, &env).expect("settings")
}

fn articles(now: chrono::NaiveDateTime) -> Vec<Article> {
    (1..=10)
        .map(|n| Article {
            id: n,
            guid: format!("g{n}"),
            link: format!("https://iria.example/2026/11/article-{n}/"),
            title: format!("US and Iraqi defense chiefs meet in Washington, part {n}"),
            summary: "U.S. Secretary of Defense met his Iraqi counterpart at the Pentagon for the Joint \
                      Security Cooperation Dialogue to discuss the transition of the global coalition's \
                      mission against the Islamic State in Iraq."
                .into(),
            body: String::new(),
            author: Some("IRIA News Desk".into()),
            categories: "Middle East,US,Defense".into(),
            image_url: Some(format!("https://iria.example/img/{n}.jpg")),
            image_credit: Some("Reuters".into()),
            published_at: now - chrono::Duration::hours(n),
            source: "feed".into(),
            excluded: 0,
            digest_id: None,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let settings = settings();
    let now = chrono::Utc::now().naive_utc();
    let list = articles(now);
    let refs: Vec<&Article> = list.iter().collect();
    let draft = iria_news::processes::digest::draft(&settings, &refs, now).expect("draft");
    c.bench_function("compose a 10-article digest (once per issue)", |b| {
        b.iter(|| {
            iria_news::processes::compose::compose(black_box(&settings), black_box(&draft))
                .expect("compose")
        })
    });
    // One copy under each click tracking mode: `off` (plain links), `anonymous` (the same `/r/`
    // links in every copy, written in once per issue) and `personal` (a token per link per copy).
    for mode in [
        ClickTracking::Off,
        ClickTracking::Anonymous,
        ClickTracking::Personal,
    ] {
        let mut settings = settings.clone();
        settings.click_tracking = mode;
        let composed = iria_news::processes::compose::compose(&settings, &draft).expect("compose");
        let urls: Vec<String> = composed.links.links.iter().map(|l| l.url.clone()).collect();
        let content = iria_news::stores::issues::Content {
            id: 7,
            subject: composed.subject,
            html: composed.html,
            text: composed.text,
            created_at: now,
            kind: "digest".into(),
            topics: String::new(),
        };
        let issue = IssueContent::tracked(&settings, content, &urls);
        let mut n = 0i64;
        c.bench_function(
            &format!(
                "one recipient's digest message (10 articles, HTML and text), click tracking {}",
                mode.as_str()
            ),
            |b| {
                b.iter(|| {
                    n += 1;
                    let to = Addressee {
                        delivery_id: n,
                        message_id: "<d1.abcdef@iria.example>",
                        subscriber_id: n,
                        email: "reader@example.org",
                        name: Some("Zoë Reader"),
                    };
                    let message = messages::newsletter(&settings, &to, black_box(&issue), None)
                        .expect("message");
                    black_box(message.bytes)
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
