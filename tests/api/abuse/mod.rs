//! Issue 12: the public surface, turned against IRIA or its readers, and what now stops it.

mod tokens;
