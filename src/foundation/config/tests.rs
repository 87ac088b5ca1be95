//! The configuration's unit tests.

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_contract() {
    let s = Settings::from_sources(None, &env(&[])).expect("defaults parse");
    assert_eq!(s.database_url, DatabaseUrl::Sqlite("iria-news.db".into()));
    assert_eq!(s.smtp_url, SmtpUrl::File("outbox".into()));
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.base_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(s.from.to_string(), "IRIA News <news@localhost>");
    assert_eq!(s.signup_per_ip_per_hour, 30);
    assert_eq!(s.signup_per_address_per_hour, 3);
    assert!(s.secret_key.is_none());
}

#[test]
fn environment_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("iria-news.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:9000\"\nsignup_per_ip_per_hour = 7\ntopics = [\"A\", \"B\"]\n",
    )
    .expect("write");
    let s = Settings::from_sources(Some(&file), &env(&[("IRIA_SIGNUP_PER_IP_PER_HOUR", "9")]))
        .expect("parse");
    assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(s.signup_per_ip_per_hour, 9);
    assert_eq!(s.topics, vec!["A", "B"]);
}

#[test]
fn bad_values_are_one_line_errors_naming_the_setting() {
    for (key, value) in [
        ("IRIA_LISTEN", "nonsense"),
        ("IRIA_DATABASE_URL", "mysql://x"),
        ("IRIA_SMTP_URL", "http://x"),
        ("IRIA_SECRET_KEY", "short"),
        ("IRIA_SIGNUP_PER_IP_PER_HOUR", "-1"),
        ("IRIA_FROM", "not an address"),
        ("IRIA_BASE_URL", "ftp://x"),
    ] {
        let err = Settings::from_sources(None, &env(&[(key, value)]))
            .expect_err(key)
            .to_string();
        assert!(err.contains(key), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn smtp_urls() {
    assert_eq!(
        SmtpUrl::parse("smtp://user%40x:p%3Ass@mail.example.org:2525").expect("parse"),
        SmtpUrl::Smtp {
            host: "mail.example.org".into(),
            port: 2525,
            implicit_tls: false,
            credentials: Some(("user@x".into(), "p:ss".into())),
        }
    );
    assert!(matches!(
        SmtpUrl::parse("smtps://mail.example.org").expect("parse"),
        SmtpUrl::Smtp {
            port: 465,
            implicit_tls: true,
            ..
        }
    ));
}

/// The configuration reference lists every setting the code reads.
#[test]
fn the_configuration_reference_lists_every_setting() {
    let doc = include_str!("../../../docs/configuration.md");
    for (key, _, _) in SETTINGS {
        let name = env_name(key);
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/configuration.md does not list {name}"
        );
    }
}

#[test]
fn allowed_origins_are_origins_and_nothing_more() {
    let none = Settings::from_sources(None, &env(&[])).expect("defaults parse");
    assert!(none.allowed_origins.is_empty(), "none by default");
    let s = Settings::from_sources(
        None,
        &env(&[(
            "IRIA_ALLOWED_ORIGINS",
            " https://www.IR-IA.com, http://127.0.0.1:8081 ,https://www.ir-ia.com:443/,",
        )]),
    )
    .expect("parse");
    let shown: Vec<String> = s
        .allowed_origins
        .iter()
        .map(|o| o.ascii_serialization())
        .collect();
    assert_eq!(shown, ["https://www.ir-ia.com", "http://127.0.0.1:8081"]);
    for bad_value in [
        "www.ir-ia.com",
        "https://www.ir-ia.com/news",
        "https://www.ir-ia.com/?x=1",
        "https://www.ir-ia.com#top",
        "https://user@www.ir-ia.com",
        "ftp://www.ir-ia.com",
        "javascript:alert(1)",
        "https://www.ir-ia.com//",
        "https://ok.example, /relative",
    ] {
        let err = Settings::from_sources(None, &env(&[("IRIA_ALLOWED_ORIGINS", bad_value)]))
            .expect_err(bad_value)
            .to_string();
        assert!(err.contains("IRIA_ALLOWED_ORIGINS"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn trusted_proxies_and_the_deprecated_trust_forwarded_for() {
    let parse = |pairs: &[(&str, &str)]| Settings::from_sources(None, &env(pairs));
    let none = parse(&[]).expect("defaults");
    assert_eq!(none.trusted_proxies, TrustedProxies::None);
    let legacy = parse(&[("IRIA_TRUST_FORWARDED_FOR", "true")]).expect("legacy");
    assert_eq!(legacy.trusted_proxies, TrustedProxies::Hops(1));
    let both = parse(&[
        ("IRIA_TRUST_FORWARDED_FOR", "true"),
        ("IRIA_TRUSTED_PROXIES", "10.0.0.0/8"),
    ])
    .expect("both");
    assert_eq!(
        both.trusted_proxies,
        TrustedProxies::Networks(vec!["10.0.0.0/8".parse().expect("net")])
    );
    let err = parse(&[("IRIA_TRUSTED_PROXIES", "proxy.example.org")]).expect_err("a name");
    assert!(
        err.to_string()
            .starts_with("configuration: IRIA_TRUSTED_PROXIES: expected"),
        "{err}"
    );
}

#[test]
fn a_second_ed25519_dkim_key_needs_the_first_and_a_selector_of_its_own() {
    let first = [
        ("IRIA_DKIM_DOMAIN", "iria.test"),
        ("IRIA_DKIM_SELECTOR", "rsa2026"),
        ("IRIA_DKIM_KEY_FILE", "/k/rsa.pem"),
    ];
    let second = [
        ("IRIA_DKIM_ED25519_SELECTOR", "ed2026"),
        ("IRIA_DKIM_ED25519_KEY_FILE", "/k/ed.pem"),
    ];
    let both =
        Settings::from_sources(None, &env(&[&first[..], &second[..]].concat())).expect("both keys");
    let dkim = both.dkim.expect("DKIM settings");
    let ed = dkim.ed25519.expect("the second key");
    assert_eq!(
        (ed.selector.as_str(), ed.key_file.to_str()),
        ("ed2026", Some("/k/ed.pem"))
    );
    let only_first = Settings::from_sources(None, &env(&first)).expect("one key");
    assert!(only_first.dkim.expect("DKIM").ed25519.is_none());
    let err = |pairs: Vec<(&str, &str)>| {
        Settings::from_sources(None, &env(&pairs))
            .expect_err("refused")
            .to_string()
    };
    assert!(err(second.to_vec()).contains("need IRIA_DKIM_DOMAIN"));
    assert!(err([&first[..], &second[..1]].concat()).contains("go together"));
    let same = [("IRIA_DKIM_ED25519_SELECTOR", "rsa2026"), second[1]];
    assert!(err([&first[..], &same[..]].concat()).contains("must differ"));
}
