//! The integration tests: one binary, one module per feature.

mod helpers;

mod checklist_signup;
mod cli;
mod faults;
mod signup;
