//! IRIA News: the newsletter backend behind "Subscribe to IRIA News".
//!
//! - [`subscriptions`]: double opt-in sign-up, the only module that changes a subscriber's status;
//! - [`delivery`]: the ledger of every message and the workers that send it;
//! - [`messages`]: what the messages say, and their headers;
//! - [`web`]: the HTTP application; [`config`], [`db`], [`mail`]: the parts it stands on.

pub mod admin;
pub mod api;
pub mod articles;
pub mod config;
pub mod db;
pub mod delivery;
pub mod digest;
pub mod domain;
pub mod editors;
pub mod issues;
pub mod mail;
pub mod messages;
pub mod observability;
pub mod secrets;
pub mod subscriptions;
pub mod telemetry;
pub mod web;
