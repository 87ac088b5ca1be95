//! The CSV import as a background job: the upload answers at once with the job's progress page;
//! a runner (in `serve` or `iria-news worker`) imports it in chunks; bad rows are reported with
//! their line numbers; a worker killed mid-import leaves the job where its last chunk put it, and
//! the next one finishes it with every row imported once and the counters equal to the file's.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use iria_news::foundation::db::schema::{consents, import_jobs, subscribers};
use iria_news::processes::imports::{ImportRunner, Ran};

use crate::console::log_in;
use crate::helpers::{spawn_app_with, AppOptions, Backend, TestApp};
use crate::on_both_backends;

/// An app whose own process imports nothing: the tests decide when a runner runs.
async fn app_without_runner(backend: Backend) -> Option<TestApp> {
    let options = AppOptions {
        env: vec![("IRIA_IMPORT_WORKER", "false".into())],
        ..AppOptions::default()
    };
    spawn_app_with(backend, options).await
}

/// The job's (status, rows_total, rows_done, rows_imported, rows_existing, rows_rejected).
fn job_row(app: &TestApp, id: i64) -> (String, i64, i64, i64, i64, i64) {
    import_jobs::table
        .find(id)
        .select((
            import_jobs::status,
            import_jobs::rows_total,
            import_jobs::rows_done,
            import_jobs::rows_imported,
            import_jobs::rows_existing,
            import_jobs::rows_rejected,
        ))
        .first(&mut app.conn())
        .expect("the job's row")
}

/// The job id in a `/admin/imports/{id}` location.
fn job_id(response: &reqwest::Response) -> (String, i64) {
    assert_eq!(response.status(), 303, "the upload answers with a redirect");
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let id = (location.strip_prefix("/admin/imports/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not an import's page: {location}"));
    (location, id)
}

on_both_backends!(
    an_upload_answers_before_the_import_runs,
    super::an_upload_answers_before_the_import_runs
);
/// The upload is stored and answered with its progress page before any row is imported; a runner
/// then imports it, and the same page shows the counts and the bad rows with their lines.
async fn an_upload_answers_before_the_import_runs(backend: Backend) {
    let Some(app) = app_without_runner(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    app.add_confirmed("known", 1);
    let csv = "email,name,topics\n\
               ada@example.org,Ada,Defense\n\
               not-an-address,Bob,\n\
               known00000@example.org,Known,\n\
               \n\
               carl@example.org,Carl,Astrology\n\
               dora@example.org,Dora,\n\
               ada@example.org,Ada again,\n";
    let started = Instant::now();
    let response = console.import_csv(csv, "Vienna sheet", "held").await;
    let (location, id) = job_id(&response);
    assert!(started.elapsed() < Duration::from_secs(5));
    let page = console.get(&location).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(page.contains("data-status=\"queued\""), "{page}");
    assert!(page.contains("<meta http-equiv=\"refresh\""), "{page}");
    assert!(
        page.contains("<progress id=\"progress\" value=\"0\" max=\"6\">"),
        "six data rows, none done: {page}"
    );
    assert!(page.contains("list.csv"), "the file's name: {page}");
    assert_eq!(app.count_subscribers(), 1, "nothing imported yet");
    let form = console.get("/admin/subscribers/import").await;
    let form = form.text().await.expect("body");
    assert!(
        form.contains(&format!("<a href=\"/admin/imports/{id}\">{id}</a>")),
        "the recent imports list it: {form}"
    );

    let ran = run_one(&app).await;
    assert_eq!(ran, Some(Ran::Done(id)));
    assert_eq!(job_row(&app, id), ("done".into(), 6, 6, 2, 1, 3));
    let page = console.get(&location).await.text().await.expect("body");
    assert!(page.contains("data-status=\"done\""), "{page}");
    assert!(!page.contains("http-equiv=\"refresh\""), "done: no refresh");
    assert!(page.contains("<progress id=\"progress\" value=\"6\" max=\"6\">"));
    for (id, n) in [
        ("confirmed", 2),
        ("invited", 0),
        ("existing", 1),
        ("rejected", 3),
    ] {
        assert!(
            page.contains(&format!("<span id=\"{id}\">{n}</span>")),
            "{id} {n}: {page}"
        );
    }
    for (line, what) in [
        (3, "not-an-address"),
        (6, "Astrology"),
        (8, "earlier in the file"),
    ] {
        let row = format!("<tr><td class=\"num\">{line}</td><td>");
        let at = page
            .find(&row)
            .unwrap_or_else(|| panic!("line {line}: {page}"));
        assert!(
            page[at..at + 200].contains(what),
            "line {line} {what}: {page}"
        );
    }
    assert!(
        page.contains("<td class=\"num\">4</td><td>known00000@example.org</td><td>confirmed</td>")
    );
    assert_eq!(
        app.subscriber("ada@example.org").expect("ada").0,
        "confirmed"
    );
    assert_eq!(app.count_subscribers(), 3);
    assert_eq!(app.count_consents(), 2, "one consent per new subscriber");
    assert_eq!(run_one(&app).await, None, "nothing left to run");
}

/// Runs one job with a runner of the test's own, as `serve` or `worker` would.
async fn run_one(app: &TestApp) -> Option<Ran> {
    let settings = Arc::new(app.settings.clone());
    let pool = iria_news::foundation::db::pool(&settings.database_url, 2);
    let runner = ImportRunner::new(settings, pool, None);
    tokio::task::spawn_blocking(move || runner.run_one(&AtomicBool::new(false)))
        .await
        .expect("runner task")
        .expect("the database answers")
}

on_both_backends!(
    a_large_file_with_bad_rows_is_counted_right,
    super::a_large_file_with_bad_rows_is_counted_right
);
/// 12,000 rows over three chunks, run by the app's own runner: every good row imported once,
/// every bad one counted, the first 100 shown with their lines; addresses on file left alone.
async fn a_large_file_with_bad_rows_is_counted_right(backend: Backend) {
    let Some(app) = spawn_app_with(backend, AppOptions::default()).await else {
        return;
    };
    let console = log_in(&app, true).await;
    for (id, _) in app.add_confirmed("bulk", 10) {
        iria_news::stores::subscriptions::records::unsubscribe(&mut app.conn(), id, "test")
            .expect("unsubscribe");
    }
    let mut csv = String::from("email,name\n");
    let mut bad_lines = Vec::new();
    for i in 0..12_000 {
        if i % 50 == 49 {
            csv.push_str(&format!("broken-{i},x\n"));
            bad_lines.push(i + 2);
        } else {
            csv.push_str(&format!("bulk{i:05}@example.org,Reader {i}\n"));
        }
    }
    let page = console.import_and_wait(&csv, "Print list", "held").await;
    let bad = bad_lines.len() as i64;
    assert_eq!(bad, 240);
    let id: i64 = import_jobs::table
        .select(import_jobs::id)
        .first(&mut app.conn())
        .expect("job");
    // bulk00000..bulk00009 were on file (unsubscribed): left as they were.
    assert_eq!(
        job_row(&app, id),
        ("done".into(), 12_000, 12_000, 12_000 - bad - 10, 10, bad)
    );
    assert!(page.contains(&format!(
        "<span id=\"confirmed\">{}</span>",
        12_000 - bad - 10
    )));
    assert!(page.contains(&format!("<span id=\"rejected\">{bad}</span>")));
    assert!(page.contains("(the first 100)"), "{}", &page[..3000]);
    for line in &bad_lines[..100] {
        assert!(page.contains(&format!("<tr><td class=\"num\">{line}</td><td>")));
    }
    assert!(!page.contains(&format!(
        "<tr><td class=\"num\">{}</td><td>",
        bad_lines[100]
    )));
    assert_eq!(app.count_subscribers(), 12_000 - bad);
    assert_eq!(app.count_consents(), 12_000 - bad - 10);
    assert_eq!(
        app.subscriber("bulk00003@example.org").expect("on file").0,
        "unsubscribed",
        "an import never resubscribes"
    );
}

/// `iria-news worker` as a child process on the app's database, with a short import lease.
fn worker(app: &TestApp, outbox: &std::path::Path) -> Child {
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    env.insert("IRIA_DATABASE_URL", app.db.url.clone());
    env.insert(
        "IRIA_SECRET_KEY",
        "test-secret-key-of-at-least-32-bytes!!".into(),
    );
    env.insert("IRIA_SMTP_URL", format!("file://{}", outbox.display()));
    env.insert("IRIA_IMPORT_LEASE_SECONDS", "2".into());
    env.insert("IRIA_WEBHOOK_DELIVERY", "false".into());
    env.insert("IRIA_DB_POOL_SIZE", "2".into());
    crate::helpers::spawn_worker(&env)
}

on_both_backends!(
    a_job_resumes_after_its_worker_is_killed,
    super::a_job_resumes_after_its_worker_is_killed
);
/// The crash test: 200,000 rows, a worker SIGKILLed mid-import, another started: every row
/// imported exactly once (one subscriber and one consent each), and the job's counters equal
/// the file's rows; at the kill, the counters matched what was committed.
async fn a_job_resumes_after_its_worker_is_killed(backend: Backend) {
    const ROWS: i64 = 200_000;
    let Some(app) = app_without_runner(backend).await else {
        return;
    };
    let console = log_in(&app, true).await;
    app.add_confirmed("row", 7);
    let mut csv = String::with_capacity(ROWS as usize * 40);
    csv.push_str("email,name\n");
    for i in 0..ROWS {
        if i % 1000 == 999 {
            csv.push_str("no-address-here,x\n");
        } else {
            csv.push_str(&format!("row{i:05}@example.org,Reader {i}\n"));
        }
    }
    let bad = ROWS / 1000;
    let response = console.import_csv(&csv, "Old list", "held").await;
    let (location, id) = job_id(&response);
    let outbox = tempfile::tempdir().expect("outbox");

    let mut first = worker(&app, outbox.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    let done_at_kill = loop {
        let (_, _, done, ..) = job_row(&app, id);
        if done > 0 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "the first worker imported nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let (status, total, done, imported, existing, rejected) = job_row(&app, id);
    assert_eq!(total, ROWS);
    assert!(
        done >= done_at_kill && done < ROWS,
        "killed mid-import: {done} of {ROWS}"
    );
    assert_eq!(status, "running", "the dead worker's lease holds it");
    assert_eq!(imported + existing + rejected, done);
    assert_eq!(
        app.count_subscribers(),
        7 + imported,
        "what was committed is what the counters say"
    );

    let mut second = worker(&app, outbox.path());
    let page = console
        .wait_for_import(&location, Duration::from_secs(600))
        .await;
    second.kill().expect("stop the second worker");
    second.wait().expect("reaped");
    assert!(page.contains("data-status=\"done\""), "{}", &page[..3000]);
    assert_eq!(
        job_row(&app, id),
        ("done".into(), ROWS, ROWS, ROWS - bad - 7, 7, bad)
    );
    assert_eq!(app.count_subscribers(), ROWS - bad);
    assert_eq!(
        app.count_consents(),
        ROWS - bad - 7,
        "one consent per imported row: none imported twice"
    );
    let distinct: i64 = subscribers::table
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "count(DISTINCT email)",
        ))
        .first(&mut app.conn())
        .expect("distinct");
    assert_eq!(distinct, ROWS - bad);
    let consented: i64 = consents::table
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "count(DISTINCT subscriber_id)",
        ))
        .first(&mut app.conn())
        .expect("consented");
    assert_eq!(consented, ROWS - bad - 7);
}
