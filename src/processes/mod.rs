//! Processes: the work that combines stores, shared by the HTTP handlers, the background tasks
//! and the command line.

pub mod bounces;
pub mod clicks;
pub mod compose;
pub mod digest;
pub mod feed;
pub mod fetch_guard;
pub mod imports;
pub mod mail;
pub mod messages;
pub mod throttle;
pub mod tracked_links;
pub mod webhooks;
pub mod worker;
