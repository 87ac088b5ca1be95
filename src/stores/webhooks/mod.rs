//! Webhooks: the endpoints administrators add, and the outbox of what is to be posted to them.
//! The only writer of `webhook_endpoints` and `webhook_deliveries`.
//!
//! An event is recorded by [`emit`] (or [`emit_subscriber`]) inside the transaction of the change
//! it reports, one row per enabled endpoint that wants it: either the change and its events are
//! on file together, or neither is. `processes::webhooks` then claims due rows under a lease,
//! posts them signed, and records how each attempt went. Like `delivery`, this is a low store:
//! `subscriptions` and `issues` call it from their own transactions, and it calls no other store.

mod endpoints;
mod events;
mod lease;

pub use endpoints::{
    attempts_of, create, delete, find, list, set_enabled, Attempt, Endpoint, EndpointUrl,
    NewEndpoint, MAX_DESCRIPTION_CHARS, MAX_URL_CHARS,
};
pub use events::{
    emit, emit_subscriber, forget_subscriber, history_of, parse_events, wanted, Event, Status,
};
pub use lease::{
    claim, record, release_expired_leases, release_owned, targets, Claimed, Outcome, Target,
};
