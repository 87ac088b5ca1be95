//! Issue 12: the public surface an attacker could turn against IRIA or its readers, and what now
//! stops it. One file per part of the issue.

mod bounces;
mod fetching;
mod postfix;
mod signup;
mod surface;
mod tokens;
