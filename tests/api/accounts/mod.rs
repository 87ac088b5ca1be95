//! Issue 14: editors' accounts and API trust. Two factors, roles, sessions that end, throttles
//! that hold, scoped tokens, `/metrics`, the audit log. One file per part.

mod accounts;
mod audit;
mod browser;
mod encoded;
mod matrix;
mod metrics;
mod scopes;
mod sessions;
mod throttle;
mod tokens;
mod two_factor;
