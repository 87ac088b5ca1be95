//! The HTTP layer. The files here are what every handler shares (the application state, pages,
//! middleware, route-table matching, what embedding the sign-up form on the site needs) and import no handler; the handlers live in [`public`], [`admin`] and [`api`].

pub mod admin;
pub mod api;
pub mod embedding;
pub mod middleware;
pub mod pages;
pub mod progress;
pub mod public;
pub mod route_paths;
pub mod state;
