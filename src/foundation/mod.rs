//! The foundation: what every other layer stands on and what imports nothing of theirs.

pub mod access;
pub mod config;
pub mod db;
pub mod domain;
pub mod keep_tokens;
pub mod links;
pub mod logging;
pub mod message_ids;
pub mod metrics;
pub mod net;
pub mod schedule;
pub mod secrets;
pub mod tracking;
