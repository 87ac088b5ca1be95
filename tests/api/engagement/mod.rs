//! Issue 13: engagement. Editors see what readers read, privacy first, machines filtered out.
//! One file per part of the issue; [`support`] holds what they share.

mod browser;
mod machines;
mod modes;
pub mod readers;
mod recording;
mod redirects;
mod repermission;
mod reports;
pub mod support;
