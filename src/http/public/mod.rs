//! The public pages: sign-up and confirmation, the links in every message (unsubscribe,
//! preferences), the one-time data links, the digest's archive, an issue's web copy, and the operator's endpoints (health,
//! readiness, metrics).

pub mod archive;
pub mod confirm;
pub mod data_links;
pub mod keep;
pub mod links;
pub mod ops;
pub mod signup;
pub mod tracking;
pub mod view;
