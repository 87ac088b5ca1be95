//! What a delivery is and where it stands, as stored.

/// Confirmation emails go ahead of bulk sends: the person is waiting for them.
pub const PRIORITY_CONFIRMATION: i32 = 0;

/// Newsletter issues.
pub const PRIORITY_BULK: i32 = 10;

/// What kind of message a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Confirmation,
    Issue,
    /// The welcome email, once a reader has confirmed.
    Welcome,
    /// To a confirmed address that signed up again: its preferences link, instead of nothing.
    AlreadySubscribed,
    /// A reader asked, from the preferences page, for a link to download or erase their data:
    /// the link, valid an hour, once.
    DataLink,
    /// "Still want it?", to a reader inactive for a while (see
    /// `stores::subscriptions::repermission`); the payload names the campaign and its deadline.
    Repermission,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Confirmation => "confirmation",
            Kind::Issue => "issue",
            Kind::Welcome => "welcome",
            Kind::AlreadySubscribed => "already_subscribed",
            Kind::DataLink => "data_link",
            Kind::Repermission => "repermission",
        }
    }
}

/// A delivery's status, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Sending,
    Sent,
    Failed,
    Bounced,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Bounced => "bounced",
            Status::Skipped => "skipped",
        }
    }
}
