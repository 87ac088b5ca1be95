//! Issue 12: the public surface, tried the way an attacker would.

mod signup;
