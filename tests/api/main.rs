//! The integration tests: one binary, one module per feature.

mod helpers;
mod ops;

mod abuse;
mod accounts;
mod browser;
mod checklist_signup;
mod cli;
mod common_terms;
mod compliance;
mod console;
mod delivery;
mod digest;
mod dkim;
mod e2e;
mod embedding;
mod engagement;
mod faults;
mod import_job;
mod journey;
mod large_lists;
mod ledger_statistics;
mod openapi;
mod preferences;
mod rare_status;
mod search_trigram;
mod signup;
mod webhooks;
