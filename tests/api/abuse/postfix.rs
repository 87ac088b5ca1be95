//! The whole bounce path through a real MTA: IRIA sends to a private Postfix instance on
//! loopback, Postfix relays to a test SMTP server that answers `550 5.1.1` for one address,
//! Postfix mails its DSN to the VERP bounce address, and the `pipe` transport documented in
//! docs/deliverability.md posts it to `/api/v1/bounces`. Needs Debian's postfix and root (the
//! master process runs as root, the pipe as `nobody`); skipped without them unless `CI` is set.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app_with, AppOptions, Backend, SmtpServer, TestDb};
use crate::on_both_backends;

const POSTFIX: &str = "/usr/sbin/postfix";

/// Whether this test can run here: `false` (with a message) when Postfix or root is missing and
/// `CI` is unset; with `CI` set, a missing one fails the test.
fn postfix_available() -> bool {
    let missing = if !Path::new(POSTFIX).exists() {
        Some("no Postfix (apt-get install postfix, \"No configuration\")")
    } else if !is_root() {
        Some("not root (a Postfix instance's master runs as root)")
    } else if !Path::new("/usr/bin/curl").exists() {
        Some("no curl (the documented pipe command runs it)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {why}; set CI=1 to make this a failure");
            false
        }
        Some(why) => panic!("CI is set and the Postfix bounce test cannot run: {why}"),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The pipe transport's entry in master.cf as docs/deliverability.md gives it, with the user,
/// the token's header file and IRIA's URL replaced by the test's.
fn documented_pipe(user: &str, header_file: &Path, base_url: &str) -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deliverability.md"),
    )
    .expect("docs/deliverability.md");
    let start = doc
        .find("```\niria-bounces unix")
        .expect("docs/deliverability.md gives the iria-bounces pipe in a code block")
        + 4;
    let end = start + doc[start..].find("\n```").expect("the code block ends");
    let mut entry = doc[start..end].to_string();
    for (documented, here) in [
        ("user=iria-bounces", format!("user={user}")),
        (
            "@/etc/postfix/iria-bounces.header",
            format!("@{}", header_file.display()),
        ),
        ("https://news.example.org/", format!("{base_url}/")),
    ] {
        assert!(
            entry.contains(documented),
            "the documented pipe no longer has {documented:?}: {entry}"
        );
        entry = entry.replace(documented, &here);
    }
    entry
}

/// A private Postfix instance: its own configuration, queue and log under a temporary folder,
/// smtpd on a loopback port, stopped when dropped.
struct Postfix {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Postfix {
    /// smtpd on `port`; relays everything to `relay_port`, except mail for `bounce_domain`, which
    /// goes to `pipe`.
    fn start(port: u16, relay_port: u16, bounce_domain: &str, pipe: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The postfix and nobody accounts walk into it.
        set_mode(dir.path(), 0o755);
        let config = dir.path().join("conf");
        let data = dir.path().join("data");
        for d in [&config, &data, &dir.path().join("spool")] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(&data)
            .status()
            .expect("chown");
        assert!(chown.success(), "chown postfix {}", data.display());
        let root = dir.path().display();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {root}/spool\n\
             data_directory = {root}/data\n\
             maillog_file = {root}/maillog\n\
             maillog_file_prefixes = {root}\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             myhostname = mta.iria.test\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             mynetworks = 127.0.0.0/8\n\
             relayhost = [127.0.0.1]:{relay_port}\n\
             transport_maps = inline:{{{bounce_domain}=iria-bounces:}}\n\
             default_destination_concurrency_limit = 2\n\
             smtputf8_enable = no\n\
             smtpd_tls_security_level = none\n\
             smtp_tls_security_level = none\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             biff = no\n"
        );
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n\
             pickup    unix  n - n 60    1 pickup\n\
             cleanup   unix  n - n -     0 cleanup\n\
             qmgr      unix  n - n 300   1 qmgr\n\
             rewrite   unix  - - n -     - trivial-rewrite\n\
             bounce    unix  - - n -     0 bounce\n\
             defer     unix  - - n -     0 bounce\n\
             trace     unix  - - n -     0 bounce\n\
             verify    unix  - - n -     1 verify\n\
             flush     unix  n - n 1000? 0 flush\n\
             proxymap  unix  - - n -     - proxymap\n\
             smtp      unix  - - n -     - smtp\n\
             relay     unix  - - n -     - smtp\n\
             error     unix  - - n -     - error\n\
             retry     unix  - - n -     - error\n\
             discard   unix  - - n -     - discard\n\
             anvil     unix  - - n -     1 anvil\n\
             scache    unix  - - n -     1 scache\n\
             postlog   unix-dgram n - n - 1 postlogd\n\
             {pipe}\n"
        );
        std::fs::write(config.join("main.cf"), main_cf).expect("main.cf");
        std::fs::write(config.join("master.cf"), master_cf).expect("master.cf");
        let postfix = Self { dir, config };
        let started = postfix.command("start");
        assert!(
            started.status.success(),
            "postfix start failed: {}{}\n{}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr),
            postfix.log()
        );
        postfix
    }

    fn command(&self, what: &str) -> std::process::Output {
        Command::new(POSTFIX)
            .arg("-c")
            .arg(&self.config)
            .arg(what)
            .output()
            .expect("run postfix")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// What IRIA_SMTP_URL names to send through the instance on `port`.
    fn smtp_url(port: u16) -> String {
        format!("smtp://127.0.0.1:{port}")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.command("stop");
        // Wait for the master to exit before the folder goes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("status").status.success() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// IRIA → Postfix → a server that refuses one address → Postfix's DSN to the VERP address → the
/// documented pipe → `/api/v1/bounces`: that reader ends `bounced`, and no other.
async fn postfix_bounce_reaches_iria_through_the_documented_pipe(backend: Backend) {
    if !postfix_available() {
        return;
    }
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let gone = "reader00001@example.org";
    let relay = SmtpServer::start_with(0, &["--reject-rcpt", gone]);
    // The app first (nothing is sent before an issue is queued), for its URL in the pipe.
    let smtp_port = free_port();
    let options = AppOptions {
        smtp_url: Some(Postfix::smtp_url(smtp_port)),
        env: vec![(
            "IRIA_BOUNCE_ADDRESS",
            "bounces+{token}@bounces.iria.test".into(),
        )],
        db: Some(db),
        ..Default::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "mta").expect("token");
    let secrets = tempfile::tempdir().expect("temp dir");
    set_mode(secrets.path(), 0o755);
    let header_file = secrets.path().join("iria-bounces.header");
    std::fs::write(&header_file, format!("Authorization: Bearer {token}\n")).expect("header");
    set_mode(&header_file, 0o644);
    let pipe = documented_pipe("nobody", &header_file, &app.address);
    let postfix = Postfix::start(smtp_port, relay.port, "bounces.iria.test", &pipe);

    let people = app.add_confirmed("reader", 3);
    assert_eq!(people[1].1, gone);
    let queued = app.queue_issue("IRIA News this week", "<p>The week.</p>");

    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let bounced = app.subscriber(gone).is_some_and(|s| s.0 == "bounced");
        if bounced && relay.received().len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "within 25 s: {gone} is {:?}, the relay got {} messages\nPostfix's log:\n{}",
            app.subscriber(gone).map(|s| s.0),
            relay.received().len(),
            postfix.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = postfix.log();
    assert!(
        log.contains("delivered via iria-bounces service"),
        "the DSN went through the pipe:\n{log}"
    );
    assert!(log.contains("dsn=5.1.1, status=bounced"), "{log}");
    // The DSN was addressed to the VERP address of that copy.
    assert!(
        log.lines().any(|l| l.contains("relay=iria-bounces")
            && l.contains("to=<bounces+d")
            && l.contains("@bounces.iria.test>")),
        "{log}"
    );
    let mut statuses = app.delivery_statuses(queued.issue_id);
    statuses.sort();
    let expected: Vec<(String, String)> = people
        .iter()
        .map(|(_, email)| {
            let status = if email == gone { "bounced" } else { "sent" };
            (email.clone(), status.to_string())
        })
        .collect();
    assert_eq!(statuses, expected);
    for (_, email) in &people {
        let want = if email == gone {
            "bounced"
        } else {
            "confirmed"
        };
        assert_eq!(
            app.subscriber(email).map(|s| s.0).as_deref(),
            Some(want),
            "{email}"
        );
    }
    let mut relayed: Vec<String> = relay
        .received()
        .iter()
        .flat_map(|m| m.rcpt_tos.clone())
        .collect();
    relayed.sort();
    assert_eq!(
        relayed,
        ["reader00000@example.org", "reader00002@example.org"]
    );
}
on_both_backends!(
    postfix_bounce_reaches_iria_through_the_documented_pipe,
    super::postfix_bounce_reaches_iria_through_the_documented_pipe
);
