//! The integration tests: one binary, one module per feature.

mod helpers;
mod ops;

mod checklist_signup;
mod cli;
mod compliance;
mod delivery;
mod digest;
mod faults;
mod preferences;
mod signup;
