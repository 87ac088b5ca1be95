//! Stores: each module owns a group of tables and is the only code that writes them; the other
//! layers call its functions. A store may call [`delivery`], the lowest store, to queue a message
//! in the same transaction as its own change (a sign-up and its confirmation).

pub mod api_tokens;
pub mod articles;
pub mod delivery;
pub mod digests;
pub mod editors;
pub mod issues;
pub mod subscriptions;
pub mod webhooks;
pub mod welcome;
