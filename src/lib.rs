//! IRIA News: the newsletter backend behind "Subscribe to IRIA News".
//!
//! The crate is five layers, each a folder; a module imports only from its own layer or the ones
//! below it (`tests/architecture.rs` checks this, and that every table has one writer):
//!
//! 1. [`foundation`]: domain types, configuration, secrets, the database connection and schema,
//!    signed links, the metrics registry, logging;
//! 2. [`stores`]: one module per group of tables, the only code that writes them;
//! 3. [`processes`]: what combines stores: composing issues and digests, building and sending
//!    messages, the delivery worker, bounce reports, feed imports;
//! 4. [`http`]: the state handlers share, shared pages and middleware, and the handlers of the
//!    public pages, the editors' console and the JSON API;
//! 5. [`startup`]: the route table, background tasks, the server and the commands of the binary.
//!
//! `docs/architecture.md` draws the whole picture.

pub mod foundation;
pub mod http;
pub mod processes;
pub mod startup;
pub mod stores;
