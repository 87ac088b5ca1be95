//! Issue 12: the public surface an attacker cannot bend. One file per part of the issue.

mod fetching;
mod signup;
mod surface;
