//! `GET /r/{token}`: where a tracked link leads, what it counts, and what it refuses.

use crate::engagement::support::*;
use crate::helpers::Backend;
use crate::on_both_backends;

/// Every link of both parts goes through `/r/`, each address stored once per issue in order; a
/// click redirects to the stored address and counts once, as a reader's, and names nobody.
async fn a_click_redirects_to_the_stored_address_and_counts_once(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "anon", 2).await;
    let html = copies[0].html();
    let text = copies[0].text();
    for original in [
        "https://ir-ia.com/one",
        "https://ir-ia.com/two",
        "https://ir-ia.com/three",
    ] {
        assert!(
            !html.contains(original),
            "HTML keeps {original} untracked: {html}"
        );
        assert!(!text.contains(original), "text keeps {original} untracked");
    }
    // Unsubscribe, preferences and the web copy are never rewritten.
    for kept in ["/unsubscribe/", "/preferences/", "/view/"] {
        assert!(html.contains(kept), "HTML lost its {kept} link");
    }
    let links = tracked_links(&html);
    // The hidden link comes last; "two" appears twice with the same link.
    assert!(links.len() >= 5, "{links:?}");
    assert_eq!(links[1], links[3], "one address, one link: {links:?}");
    // Anonymous: every copy carries the same links.
    assert_eq!(tracked_links(&copies[1].html()), links);
    age_deliveries(&app, issue_id, 3600);
    let (status, location) = click(&app, &links[0], BROWSER).await;
    assert_eq!(status, 302);
    assert_eq!(location.as_deref(), Some("https://ir-ia.com/one?a=1&b=2"));
    let (status, location) = click(&app, &links[1], BROWSER).await;
    assert_eq!(
        (status, location.as_deref()),
        (302, Some("https://ir-ia.com/two"))
    );
    app.flush_clicks().await;
    let counts = counters(&app, issue_id);
    let of = |url: &str| {
        counts
            .iter()
            .find(|(_, u, _, _)| u == url)
            .map(|(_, _, c, m)| (*c, *m))
            .expect("a stored link")
    };
    assert_eq!(of("https://ir-ia.com/one?a=1&b=2"), (1, 0));
    assert_eq!(of("https://ir-ia.com/two"), (1, 0));
    assert_eq!(of("https://ir-ia.com/three"), (0, 0));
    assert!(
        click_rows(&app, issue_id).is_empty(),
        "anonymous mode wrote a click row"
    );
}
on_both_backends!(
    a_click_redirects_to_the_stored_address_and_counts_once,
    super::a_click_redirects_to_the_stored_address_and_counts_once
);

/// A forged, tampered or unknown token: the 404 page, no `Location`; HEAD redirects, counts
/// nothing.
async fn forged_tokens_redirect_nowhere_and_head_counts_nothing(backend: Backend) {
    let Some(app) = app_in_mode(backend, "anonymous", vec![]).await else {
        return;
    };
    let (issue_id, copies) = send_issue(&app, "forged", 1).await;
    age_deliveries(&app, issue_id, 3600);
    let link = tracked_links(&copies[0].html())[0].clone();
    let token = link.rsplit('/').next().expect("token").to_string();
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for bad in [
        tampered.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "https%3A%2F%2Fevil.example",
        "x",
    ] {
        let response = app
            .client
            .get(format!("{}/r/{bad}", app.address))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 404, "{bad}");
        assert!(response.headers().get("location").is_none(), "{bad}");
    }
    let head = app
        .client
        .head(app.local(&link))
        .header("User-Agent", BROWSER)
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 302);
    assert_eq!(
        head.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("https://ir-ia.com/one?a=1&b=2")
    );
    app.flush_clicks().await;
    assert!(
        counters(&app, issue_id)
            .iter()
            .all(|(_, _, c, m)| *c == 0 && *m == 0),
        "HEAD or a forged token counted: {:?}",
        counters(&app, issue_id)
    );
}
on_both_backends!(
    forged_tokens_redirect_nowhere_and_head_counts_nothing,
    super::forged_tokens_redirect_nowhere_and_head_counts_nothing
);
