//! Start-up: the route table, the background tasks, the server, and the commands of the binary.

pub mod commands;
pub mod routes;
pub mod server;
pub mod tasks;
