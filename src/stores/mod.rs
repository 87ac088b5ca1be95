//! Stores: each module owns a group of tables and is the only code that writes them; the other
//! layers call its functions. A store may call the low stores, which record what a change sets
//! off, in the same transaction as the change: [`delivery`] (a message to send), [`webhooks`] (an
//! event to post), [`welcome`] (whether the welcome email is on), [`engagement`] (links and
//! clicks) and [`audit`] (an erased reader's address leaves the log). Those call no other store.

pub mod api_tokens;
pub mod articles;
pub mod audit;
pub mod delivery;
pub mod digests;
pub mod editors;
pub mod engagement;
pub mod imports;
pub mod issues;
pub mod limits;
pub mod subscriptions;
pub mod webhooks;
pub mod welcome;
