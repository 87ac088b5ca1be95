//! Machines are not readers: each rule of `docs/engagement.md`, in the mode where it applies.

use crate::engagement::support::*;
use crate::helpers::{Backend, Received, TestApp};
use crate::on_both_backends;

/// The hidden link of a copy: the last `/r/` link of its HTML part.
fn hidden_link(copy: &Received) -> String {
    let links = tracked_links(&copy.html());
    links.last().expect("a hidden link").clone()
}

/// The first three different visible links of a copy.
fn visible_links(copy: &Received) -> Vec<String> {
    let mut links = tracked_links(&copy.html());
    links.pop();
    let mut seen = Vec::new();
    for link in links {
        if !seen.contains(&link) {
            seen.push(link);
        }
    }
    seen.truncate(3);
    seen
}

fn totals(app: &TestApp, issue_id: i64) -> (i64, i64) {
    counters(app, issue_id)
        .iter()
        .fold((0, 0), |(c, m), (_, _, rc, rm)| (c + rc, m + rm))
}

/// Known scanners' user agents, HTTP libraries and requests with no user agent are machines.
async fn scanner_user_agents_are_machine_clicks(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "agents", 1).await;
    age_deliveries(&app, issue_id, 3600);
    let link = visible_links(&copies[0])[0].clone();
    for agent in [
        "Mozilla/5.0 (compatible; Barracuda Sentinel)",
        "curl/8.5.0",
        "python-requests/2.31",
    ] {
        assert_eq!(click(&app, &link, agent).await.0, 302);
    }
    let bare = app.client.get(app.local(&link)).send().await.expect("GET");
    assert_eq!(bare.status(), 302);
    app.flush_clicks().await;
    assert_eq!(
        totals(&app, issue_id),
        (0, 4),
        "{:?}",
        counters(&app, issue_id)
    );
    click(&app, &link, BROWSER).await;
    app.flush_clicks().await;
    assert_eq!(totals(&app, issue_id), (1, 4));
}
on_both_backends!(
    scanner_user_agents_are_machine_clicks,
    super::scanner_user_agents_are_machine_clicks
);

/// Anonymous: a click on the hidden link is a machine click; the visible links are untouched.
async fn the_hidden_link_counts_a_machine_click(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "trap", 1).await;
    age_deliveries(&app, issue_id, 3600);
    let html = copies[0].html();
    let trap = hidden_link(&copies[0]);
    // Hidden from people: no text, not displayed, not announced, not focusable.
    let anchor_at = html
        .find(&format!("href=\"{trap}\""))
        .expect("the hidden anchor");
    let anchor = &html[html[..anchor_at].rfind("<a").expect("<a")..];
    let anchor = &anchor[..anchor.find("</a>").expect("</a>") + 4];
    assert!(anchor.contains("display:none"), "{anchor}");
    assert!(anchor.contains("aria-hidden=\"true\""), "{anchor}");
    assert!(anchor.contains("tabindex=\"-1\""), "{anchor}");
    assert!(
        anchor.ends_with("></a>"),
        "a hidden link has no text: {anchor}"
    );
    let (status, location) = click(&app, &trap, BROWSER).await;
    assert_eq!(status, 302);
    assert_eq!(location, Some(format!("{}/", app.address)));
    app.flush_clicks().await;
    let counts = counters(&app, issue_id);
    assert_eq!(counts[0].0, 0, "position 0 is the hidden link");
    assert_eq!((counts[0].2, counts[0].3), (0, 1));
    assert_eq!(totals(&app, issue_id), (0, 1));
}
on_both_backends!(
    the_hidden_link_counts_a_machine_click,
    super::the_hidden_link_counts_a_machine_click
);

/// Personal: once a copy's hidden link is clicked, every click of that copy, before and after,
/// is a machine's; another reader's copy is untouched.
async fn a_hidden_link_click_marks_the_whole_copy(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "copy", 2).await;
    age_deliveries(&app, issue_id, 3600);
    let mine = visible_links(&copies[0]);
    let theirs = visible_links(&copies[1]);
    assert_ne!(mine[0], theirs[0], "personal links differ per copy");
    click(&app, &mine[0], BROWSER).await;
    click(&app, &theirs[0], BROWSER).await;
    app.flush_clicks().await;
    let rows = click_rows(&app, issue_id);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, _, machine)| !machine), "{rows:?}");
    let my_copy = rows[0].0;
    click(&app, &hidden_link(&copies[0]), BROWSER).await;
    app.flush_clicks().await;
    click(&app, &mine[1], BROWSER).await;
    app.flush_clicks().await;
    let rows = click_rows(&app, issue_id);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (delivery, position, machine) in &rows {
        assert_eq!(
            *machine,
            *delivery == my_copy,
            "{delivery} {position} in {rows:?}"
        );
    }
}
on_both_backends!(
    a_hidden_link_click_marks_the_whole_copy,
    super::a_hidden_link_click_marks_the_whole_copy
);

/// Personal: a click within seconds of the copy's delivery is a machine's; the same click later
/// is a reader's.
async fn clicks_in_the_first_seconds_after_delivery_are_machine_clicks(backend: Backend) {
    let Some(app) = app_in_mode(backend, "personal", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "early", 1).await;
    let link = visible_links(&copies[0])[0].clone();
    age_deliveries(&app, issue_id, 2);
    click(&app, &link, BROWSER).await;
    app.flush_clicks().await;
    // A copy its worker has not yet recorded as sent (it records a batch at a time) was sent a
    // moment ago.
    {
        use diesel::prelude::*;
        use iria_news::foundation::db::schema::deliveries;
        diesel::update(deliveries::table.filter(deliveries::issue_id.eq(issue_id)))
            .set(deliveries::finished_at.eq(None::<chrono::NaiveDateTime>))
            .execute(&mut app.conn())
            .expect("unrecorded copy");
    }
    click(&app, &link, BROWSER).await;
    app.flush_clicks().await;
    age_deliveries(&app, issue_id, 60);
    click(&app, &link, BROWSER).await;
    app.flush_clicks().await;
    let machine: Vec<bool> = click_rows(&app, issue_id).iter().map(|r| r.2).collect();
    assert_eq!(machine, [true, true, false]);
}
on_both_backends!(
    clicks_in_the_first_seconds_after_delivery_are_machine_clicks,
    super::clicks_in_the_first_seconds_after_delivery_are_machine_clicks
);

/// Three different links of one copy (personal) or of one issue from one address (anonymous)
/// within a second are a machine's, including a click already written as a reader's.
async fn a_burst_of_links_is_a_machine(backend: Backend) {
    for mode in ["anonymous", "personal"] {
        let Some(app) = app_in_mode(backend, mode, vec![]).await else {
            return;
        };
        let (issue_id, copies) = send_issue(&app, "burst", 1).await;
        age_deliveries(&app, issue_id, 3600);
        let links = visible_links(&copies[0]);
        assert_eq!(links.len(), 3);
        click(&app, &links[0], BROWSER).await;
        // The first is written as a reader's before the others come.
        app.flush_clicks().await;
        assert_eq!(
            totals(&app, issue_id).0 + click_rows(&app, issue_id).len() as i64,
            1
        );
        click(&app, &links[1], BROWSER).await;
        click(&app, &links[2], BROWSER).await;
        app.flush_clicks().await;
        match mode {
            "anonymous" => assert_eq!(totals(&app, issue_id), (0, 3), "{mode}"),
            _ => {
                let machine: Vec<bool> = click_rows(&app, issue_id).iter().map(|r| r.2).collect();
                assert_eq!(machine, [true, true, true], "{mode}");
            }
        }
        // A reader who comes back later, one link at a time, is a reader again.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        click(&app, &links[0], BROWSER).await;
        app.flush_clicks().await;
        match mode {
            "anonymous" => assert_eq!(totals(&app, issue_id), (1, 3), "{mode}"),
            _ => {
                let machine: Vec<bool> = click_rows(&app, issue_id).iter().map(|r| r.2).collect();
                assert_eq!(machine, [true, true, true, false], "{mode}");
            }
        }
    }
}
on_both_backends!(
    a_burst_of_links_is_a_machine,
    super::a_burst_of_links_is_a_machine
);
