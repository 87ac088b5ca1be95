//! The delivery ledger: the only module that writes `deliveries`.
//!
//! Every message this program sends is first a row here, written in the same transaction as the
//! change that calls for it, then claimed by a worker with a lease, sent, and recorded. A worker
//! that dies leaves leases that expire and are claimed again, so nothing is lost; at most the
//! messages in flight at that moment can go twice.

mod kinds;
mod lease;
mod queue;
mod reports;

pub use kinds::{Kind, Status, PRIORITY_BULK, PRIORITY_CONFIRMATION};
pub use lease::{
    claim, commit_without_flush, record, record_only_sent, release_expired_leases, release_owned,
    renew_leases, ClaimFrom, Claimed, DueKey, Outcome,
};
pub use queue::{
    analyse_if_large, forget_subscriber, mark_bounced, push_confirmation_insert,
    queue_already_subscribed, queue_confirmation, queue_data_link, queue_issue,
    queue_issue_for_exact_topics, queue_repermission, queue_welcome, retry_failed, skip_queued_for,
};
pub use reports::{
    any_waiting, counts_by_status, due_now, history_of, issue_progress, progress_of,
    recipients_of_issue, subscriber_of, IssueRecipient, Progress,
};
