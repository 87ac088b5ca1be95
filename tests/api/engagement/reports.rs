//! The reports: an issue's figures against clicks made here (reader and machine, anonymous and
//! personal), as the API's JSON, the console's issue page and CSV, the dashboard's chart, and a
//! digest's figures per topic audience and per article (with the articles page).

use std::time::Duration;

use iria_news::processes::digest::{self, Outcome};
use iria_news::stores::articles::{self, NewArticle, Source};

use crate::console::{log_in, Console};
use crate::engagement::support::*;
use crate::helpers::{Backend, Received, TestApp};
use crate::on_both_backends;

/// A mail scanner, by its user agent.
const SCANNER: &str = "curl/8.0";

/// Where each tracked link of a part leads, asked with `HEAD` (which counts nothing).
pub async fn destinations(app: &TestApp, part: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for link in tracked_links(part) {
        if out.iter().any(|(l, _)| *l == link) {
            continue;
        }
        let head = app
            .client
            .head(app.local(&link))
            .header("User-Agent", BROWSER)
            .send()
            .await
            .expect("HEAD /r/");
        assert_eq!(head.status(), 302, "{link}");
        let to = head.headers()["location"]
            .to_str()
            .expect("ASCII")
            .to_string();
        out.push((link, to));
    }
    out
}

/// The tracked link of a copy that leads to `url` (not the hidden one, which comes last).
pub async fn link_to(app: &TestApp, copy: &Received, url: &str) -> String {
    let html = copy.html();
    let mut found = destinations(app, &html).await;
    found.pop();
    found
        .into_iter()
        .find(|(_, to)| to == url)
        .map(|(link, _)| link)
        .unwrap_or_else(|| panic!("no tracked link to {url} in {html}"))
}

/// The hidden link of a copy: the last `/r/` link of its HTML part.
fn hidden_link(copy: &Received) -> String {
    tracked_links(&copy.html())
        .pop()
        .expect("a hidden link in the HTML part")
}

/// Clicks a link as a reader and checks the redirect.
async fn reader_click(app: &TestApp, link: &str) {
    let (status, _) = click(app, link, BROWSER).await;
    assert_eq!(status, 302, "{link}");
}

/// The API's answer for an issue's engagement: (status, JSON).
async fn api_engagement(app: &TestApp, issue_id: i64) -> (u16, serde_json::Value) {
    let token = iria_news::stores::api_tokens::create(&mut app.conn(), "reports").expect("token");
    let response = app
        .client
        .get(format!(
            "{}/api/v1/issues/{issue_id}/engagement",
            app.address
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET engagement");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// A console page's HTML.
async fn page(console: &Console<'_>, path: &str) -> String {
    let response = console.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.expect("body")
}

/// The text of the element with this id on a page (`<dd id="x">3</dd>` gives "3").
fn by_id(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} on the page"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('<').expect("the element's end")]
        .trim()
        .to_string()
}

/// The numbers of the links table's row whose first cell starts with `url`.
fn row_of(html: &str, url: &str) -> Vec<String> {
    let table = &html[html.find("id=\"links\"").expect("the links table")..];
    let at = table
        .find(&format!("<tr><td>{url}"))
        .unwrap_or_else(|| panic!("no row for {url}"));
    let row = &table[at..at + table[at..].find("</tr>").expect("the row's end")];
    row.split("<td class=\"num\">")
        .skip(1)
        .map(|c| c[..c.find('<').expect("the cell's end")].to_string())
        .collect()
}

/// Anonymous mode: reader clicks (a link twice), a scanner's click and the hidden link, against
/// the API's JSON, the issue page, the CSV and the dashboard's chart.
async fn anonymous_reports_count_readers_apart_from_machines(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "rep", 4).await;
    age_deliveries(&app, issue_id, 3600);
    let one = link_to(&app, &copies[0], "https://ir-ia.com/one?a=1&b=2").await;
    let two = link_to(&app, &copies[1], "https://ir-ia.com/two").await;
    let three = link_to(&app, &copies[2], "https://ir-ia.com/three").await;
    reader_click(&app, &one).await;
    reader_click(&app, &two).await;
    // Past the burst window: a third link within a second would be a machine's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reader_click(&app, &one).await;
    let (status, _) = click(&app, &three, SCANNER).await;
    assert_eq!(status, 302);
    let (status, _) = click(&app, &hidden_link(&copies[3]), BROWSER).await;
    assert_eq!(status, 302);
    app.flush_clicks().await;

    let (status, json) = api_engagement(&app, issue_id).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json,
        serde_json::json!({
            "issue_id": issue_id,
            "delivered": 4,
            "clicks": 3,
            "machine_clicks": 2,
            "unique_clickers": null,
            "opens": null,
            "links": [
                {"url": "https://ir-ia.com/one?a=1&b=2", "clicks": 2, "unique_clickers": null},
                {"url": "https://ir-ia.com/two", "clicks": 1, "unique_clickers": null},
                {"url": "https://ir-ia.com/three", "clicks": 0, "unique_clickers": null},
                // The site's address, in the footer.
                {"url": format!("{}/", app.address), "clicks": 0, "unique_clickers": null},
            ],
        })
    );
    let (status, problem) = api_engagement(&app, issue_id + 1000).await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404, "{problem}");

    let console = log_in(&app, true).await;
    let html = page(&console, &format!("/admin/issues/{issue_id}")).await;
    assert_eq!(by_id(&html, "delivered"), "4");
    assert_eq!(by_id(&html, "reader-clicks"), "3");
    assert_eq!(by_id(&html, "machine-clicks"), "2");
    // Reader clicks per copy delivered: 3 / 4.
    assert_eq!(by_id(&html, "click-rate"), "75.0%");
    assert!(!html.contains("unique-clickers"), "unique clickers shown");
    assert!(
        !html.contains("opens (unreliable)"),
        "opens shown while off"
    );
    assert_eq!(row_of(&html, "https://ir-ia.com/one?a=1"), ["2"]);
    assert_eq!(row_of(&html, "https://ir-ia.com/two"), ["1"]);
    assert_eq!(row_of(&html, "https://ir-ia.com/three"), ["0"]);

    let csv = console
        .get(&format!("/admin/issues/{issue_id}/engagement.csv"))
        .await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .starts_with("text/csv"));
    let csv = csv.text().await.expect("body");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "row,issue_id,audience,position,url,article_id,article,delivered,clicks,\
         machine_clicks,unique_clickers,opens,click_rate"
    );
    assert_eq!(lines[1], format!("issue,{issue_id},,,,,,4,3,2,,,0.7500"));
    assert_eq!(
        lines[2],
        format!("link,{issue_id},,1,https://ir-ia.com/one?a=1&b=2,,,,2,,,,")
    );
    assert_eq!(
        lines[4],
        format!("link,{issue_id},,3,https://ir-ia.com/three,,,,0,,,,")
    );
    assert_eq!(
        lines[5],
        format!("link,{issue_id},,4,{}/,,,,0,,,,", app.address)
    );
    assert_eq!(lines.len(), 6, "{csv}");

    let dashboard = page(&console, "/admin").await;
    let chart = &dashboard[dashboard
        .find("<svg class=\"chart rates\"")
        .expect("the click rate chart")..];
    let chart = &chart[..chart.find("</svg>").expect("the chart's end")];
    assert!(
        chart.contains(&format!("href=\"/admin/issues/{issue_id}\"")),
        "{chart}"
    );
    assert!(chart.contains("Engagement test: 75.0%"), "{chart}");
    assert_eq!(chart.matches("<rect").count(), 1, "one issue, one bar");
}
on_both_backends!(
    anonymous_reports_count_readers_apart_from_machines,
    super::anonymous_reports_count_readers_apart_from_machines
);

/// The open image's address in a copy.
fn open_image(copy: &Received) -> String {
    let html = copy.html();
    let at = html.find("/o/").expect("an open image");
    let start = html[..at].rfind("http").expect("its start");
    let end = at + html[at..].find('"').expect("its end");
    html[start..end].to_string()
}

/// Personal mode with open tracking: unique clickers per link and per issue, a copy whose
/// hidden link was clicked counted as a machine's, opens beside their note.
async fn personal_reports_count_unique_clickers_and_opens(backend: Backend) {
    let env = vec![("IRIA_OPEN_TRACKING", "true".to_string())];
    let Some(app) = app_in_mode(backend, "personal", env).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "pers", 3).await;
    age_deliveries(&app, issue_id, 3600);
    let url_one = "https://ir-ia.com/one?a=1&b=2";
    // Reader 0: two links, then the first again; reader 1: one link.
    reader_click(&app, &link_to(&app, &copies[0], url_one).await).await;
    reader_click(
        &app,
        &link_to(&app, &copies[0], "https://ir-ia.com/two").await,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reader_click(&app, &link_to(&app, &copies[0], url_one).await).await;
    reader_click(&app, &link_to(&app, &copies[1], url_one).await).await;
    // Copy 2: a scanner follows the hidden link, then a visible one.
    let (status, _) = click(&app, &hidden_link(&copies[2]), BROWSER).await;
    assert_eq!(status, 302);
    app.flush_clicks().await;
    reader_click(&app, &link_to(&app, &copies[2], url_one).await).await;
    let image = app
        .client
        .get(app.local(&open_image(&copies[0])))
        .header("User-Agent", BROWSER)
        .send()
        .await
        .expect("GET /o/");
    assert_eq!(image.status(), 200);
    app.flush_clicks().await;

    let (status, json) = api_engagement(&app, issue_id).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json,
        serde_json::json!({
            "issue_id": issue_id,
            "delivered": 3,
            "clicks": 4,
            "machine_clicks": 2,
            "unique_clickers": 2,
            "opens": 1,
            "links": [
                {"url": url_one, "clicks": 3, "unique_clickers": 2},
                {"url": "https://ir-ia.com/two", "clicks": 1, "unique_clickers": 1},
                {"url": "https://ir-ia.com/three", "clicks": 0, "unique_clickers": 0},
                {"url": format!("{}/", app.address), "clicks": 0, "unique_clickers": 0},
            ],
        })
    );

    let console = log_in(&app, true).await;
    let html = page(&console, &format!("/admin/issues/{issue_id}")).await;
    assert_eq!(by_id(&html, "reader-clicks"), "4");
    assert_eq!(by_id(&html, "machine-clicks"), "2");
    assert_eq!(by_id(&html, "unique-clickers"), "2");
    // Unique clickers per copy delivered: 2 / 3.
    assert_eq!(by_id(&html, "click-rate"), "66.7%");
    assert_eq!(by_id(&html, "opens"), "1");
    // Reader clicks and unique clickers of each link.
    assert_eq!(row_of(&html, "https://ir-ia.com/one?a=1"), ["3", "2"]);
    assert_eq!(row_of(&html, "https://ir-ia.com/two"), ["1", "1"]);
    assert!(html.contains("<dt>opens (unreliable)</dt>"));
    assert!(html.contains("Apple Mail and Gmail fetch images for the reader"));
    let csv = console
        .get(&format!("/admin/issues/{issue_id}/engagement.csv"))
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(
        csv.lines().nth(1),
        Some(format!("issue,{issue_id},,,,,,3,4,2,2,1,0.6667").as_str()),
        "{csv}"
    );
}
on_both_backends!(
    personal_reports_count_unique_clickers_and_opens,
    super::personal_reports_count_unique_clickers_and_opens
);

fn article(n: usize, link: String, categories: &[&str]) -> NewArticle {
    NewArticle {
        guid: format!("report-guid-{n}"),
        link,
        title: format!("Report article {n}"),
        summary: format!("Summary of report article {n}."),
        body: format!("<p>Body of report article {n}.</p>"),
        author: None,
        categories: categories.iter().map(|c| c.to_string()).collect(),
        image_url: None,
        image_credit: None,
        published_at: chrono::Utc::now().naive_utc() - chrono::Duration::hours(n as i64 + 1),
    }
}

/// Sends a digest of these articles; returns its issues: (issue, recipients), in order.
pub async fn send_digest(app: &TestApp, items: &[NewArticle]) -> Vec<(i64, usize)> {
    articles::upsert(&mut app.conn(), items, Source::Api).expect("articles");
    let outcome = digest::run(
        &mut app.conn(),
        &app.settings,
        "digest:reports",
        chrono::Utc::now().naive_utc(),
        false,
    )
    .expect("digest run");
    let Outcome::Queued { issues, .. } = outcome else {
        panic!("no digest: {outcome:?}")
    };
    for (issue_id, _) in &issues {
        app.wait_issue_done(*issue_id, Duration::from_secs(30))
            .await;
        age_deliveries(app, *issue_id, 3600);
    }
    issues
}

/// A digest: each topic audience's figures and each article's clicks across the audiences, on
/// an audience's issue page, in its CSV and on the articles page.
async fn a_digest_reports_per_audience_and_per_article(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    app.add_subscribers("every", 2, |_| (None, String::new()));
    app.add_subscribers("europe", 2, |_| (None, "Europe".into()));
    let (europe_url, asia_url) = (
        "https://iria.example/reports/europe/".to_string(),
        "https://iria.example/reports/asia/".to_string(),
    );
    let issues = send_digest(
        &app,
        &[
            article(1, europe_url.clone(), &["Europe"]),
            article(2, asia_url.clone(), &["Asia"]),
        ],
    )
    .await;
    assert_eq!(issues.len(), 2, "{issues:?}");
    let every = app.wait_for_mail_to("every00000@example.org", 1).await;
    let europe = app.wait_for_mail_to("europe00000@example.org", 1).await;
    reader_click(&app, &link_to(&app, &every, &europe_url).await).await;
    reader_click(&app, &link_to(&app, &every, &asia_url).await).await;
    reader_click(&app, &link_to(&app, &europe, &europe_url).await).await;
    let (status, _) = click(&app, &link_to(&app, &europe, &europe_url).await, SCANNER).await;
    assert_eq!(status, 302);
    app.flush_clicks().await;

    let europe_issue = issues
        .iter()
        .map(|(id, _)| *id)
        .find(|id| {
            app.delivery_statuses(*id)
                .iter()
                .any(|(email, _)| email.starts_with("europe"))
        })
        .expect("the Europe audience's issue");
    let console = log_in(&app, true).await;
    let html = page(&console, &format!("/admin/issues/{europe_issue}")).await;
    assert_eq!(by_id(&html, "reader-clicks"), "1");
    assert_eq!(by_id(&html, "machine-clicks"), "1");
    let audiences = &html[html.find("id=\"audiences\"").expect("the audiences")..];
    let audiences = &audiences[..audiences.find("</table>").expect("end")];
    // Each audience: delivered 2; every topic: 2 reader clicks; Europe: 1 and a machine's.
    assert!(
        audiences.contains(">every topic</a></td><td class=\"num\">2</td><td class=\"num\">2</td><td class=\"num\">0</td><td class=\"num\">100.0%</td>"),
        "{audiences}"
    );
    assert!(
        audiences.contains(">Europe</a></td><td class=\"num\">2</td><td class=\"num\">1</td><td class=\"num\">1</td><td class=\"num\">50.0%</td>"),
        "{audiences}"
    );
    let per_article = &html[html.find("id=\"articles\"").expect("the articles")..];
    assert!(
        per_article
            .contains(">Report article 1</a></td><td class=\"num\">2</td><td class=\"num\">2</td>"),
        "{per_article}"
    );
    assert!(
        per_article
            .contains(">Report article 2</a></td><td class=\"num\">1</td><td class=\"num\">1</td>"),
        "{per_article}"
    );
    let csv = console
        .get(&format!("/admin/issues/{europe_issue}/engagement.csv"))
        .await
        .text()
        .await
        .expect("body");
    assert!(csv.contains(",every topic,,,,,2,2,0,,,1.0000\n"), "{csv}");
    assert!(csv.contains(",Europe,,,,,2,1,1,,,0.5000\n"), "{csv}");
    assert!(
        csv.contains(&format!(",{europe_url},")) && csv.contains(",Report article 1,,2,,,,\n"),
        "{csv}"
    );

    let list = page(&console, "/admin/articles").await;
    for (title, clicks) in [("Report article 1", 2), ("Report article 2", 1)] {
        let row = &list[list.find(&format!(">{title}</a>")).expect(title)..];
        let row = &row[..row.find("</tr>").expect("row end")];
        assert!(
            row.contains(&format!("<td class=\"num clicks\">{clicks}</td>")),
            "{title}: {row}"
        );
    }
}
on_both_backends!(
    a_digest_reports_per_audience_and_per_article,
    super::a_digest_reports_per_audience_and_per_article
);
