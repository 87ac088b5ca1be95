//! Issue 13: engagement. Editors see what readers read, privacy first, machines filtered out.
//! One file per part of the issue; [`support`] holds what they share.

pub mod readers;
mod redirects;
mod repermission;
pub mod support;
