//! The re-permission message: "Still want IRIA News?", with a "Keep me subscribed" button, to a
//! reader who has not clicked anything in the last digests (see
//! `stores::subscriptions::repermission`). A newsletter message like the others (list headers,
//! unsubscribe links, `Feedback-ID` of its own kind).

use chrono::NaiveDateTime;

use crate::foundation::config::Settings;
use crate::foundation::keep_tokens::KeepToken;

/// The address of the button: a page with a form; only its POST keeps the reader.
pub fn keep_url(settings: &Settings, subscriber_id: i64, campaign_id: i64) -> String {
    let token = KeepToken {
        subscriber_id,
        campaign_id,
    }
    .sign(settings.secret());
    settings.link(&format!("/keep/{token}"))
}

/// The subject and Markdown body of one campaign's message to one reader, who has until
/// `deadline` to answer.
pub fn repermission_body(
    settings: &Settings,
    subscriber_id: i64,
    campaign_id: i64,
    deadline: NaiveDateTime,
) -> (String, String) {
    let site = &settings.site_name;
    let link = keep_url(settings, subscriber_id, campaign_id);
    let by = deadline.format("%-d %B %Y");
    let body = format!(
        "We have not seen you follow a link in our recent emails, and we only want to write to \
         readers who want to hear from us.\n\n\
         **Do you still want {site}?** If you do, press the button below by {by}. If you do \
         nothing, we will unsubscribe you then and send you nothing more.\n\n\
         [Keep me subscribed]({link})\n\n\
         If you would rather stop now, the unsubscribe link is at the bottom of this email.\n"
    );
    (format!("Still want {site}?"), body)
}
