//! Abuse-proofing of the public surface (issue 12): one file per part.

mod bounces;
mod postfix;
