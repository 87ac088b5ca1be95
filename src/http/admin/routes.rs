//! The console's route table and its scope.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::web;

use super::session::{guard, session_middleware};
use super::{
    accounts, articles, audit, auth, dashboard, digest, engagement, imports, issues, repermission,
    sessions, signup_form, subscribers, tokens, two_factor, webhooks, welcome, MAX_FORM_BYTES,
};
use crate::foundation::access::Role;
use crate::foundation::config::Settings;
use crate::http::route_paths::path_matches;

/// Declares the console's routes: the table the tests walk and the function that registers it.
macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path [$role:ident] ),* $(,)?) => {
        /// Every route of the console: (method, path, the least role that may use it).
        pub const ROUTES: &[(&str, &str, Role)] = &[ $( (stringify!($method), concat!("/admin", $path), Role::$role) ),* ];

        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }
    };
}

route_table! {
    get "/login" => auth::login_page [Author],
    post "/login" => auth::login [Author],
    post "/logout" => auth::logout [Author],
    get "/password" => auth::password_page [Author],
    post "/password" => auth::change_password [Author],
    get "" => dashboard::page [Author],
    get "/issues" => issues::list [Author],
    get "/issues/new" => issues::compose_page [Author],
    post "/issues" => issues::compose [Author],
    get "/issues/{id}" => issues::page [Author],
    get "/issues/{id}/preview" => issues::preview [Author],
    get "/issues/{id}/engagement.csv" => engagement::csv [Author],
    post "/issues/{id}/send" => issues::send_draft [Editor],
    post "/issues/{id}/retry" => issues::retry_failed [Editor],
    get "/digest" => digest::page [Author],
    get "/digest/preview" => digest::preview [Author],
    post "/digest/send" => digest::send_now [Editor],
    post "/digest/skip" => digest::skip [Editor],
    get "/subscribers" => subscribers::list [Editor],
    get "/subscribers/export.csv" => subscribers::export [Editor],
    get "/subscribers/import" => imports::import_page [Editor],
    post "/subscribers/import" => imports::import [Editor],
    get "/imports/{id}" => imports::job_page [Editor],
    get "/subscribers/{id}" => subscribers::record [Editor],
    post "/subscribers/{id}/unsubscribe" => subscribers::unsubscribe [Editor],
    post "/subscribers/{id}/erase" => subscribers::erase [Editor],
    get "/repermission" => repermission::page [Editor],
    post "/repermission" => repermission::start [Editor],
    get "/articles" => articles::list [Author],
    get "/articles/new" => articles::new_page [Editor],
    post "/articles" => articles::create [Editor],
    get "/articles/{id}" => articles::edit_page [Author],
    post "/articles/{id}" => articles::update [Editor],
    post "/articles/{id}/exclude" => articles::exclude [Editor],
    get "/signup-form" => signup_form::page [Author],
    get "/welcome" => welcome::page [Editor],
    post "/welcome" => welcome::save [Editor],
    get "/webhooks" => webhooks::list [Admin],
    post "/webhooks" => webhooks::create [Admin],
    get "/webhooks/{id}" => webhooks::page [Admin],
    post "/webhooks/{id}/enable" => webhooks::enable [Admin],
    post "/webhooks/{id}/delete" => webhooks::delete [Admin],
    // The second factor (enrolment, the login's code step, recovery codes).
    get "/login/code" => two_factor::code_page [Author],
    post "/login/code" => two_factor::submit_code [Author],
    get "/2fa/enrol" => two_factor::enrol_form [Author],
    post "/2fa/enrol" => two_factor::enrol [Author],
    get "/2fa" => two_factor::status_page [Author],
    post "/2fa/recovery-codes" => two_factor::regenerate [Author],
    post "/2fa/remove" => two_factor::remove [Author],
    // Accounts, sessions and the audit log.
    get "/accounts" => accounts::list [Admin],
    post "/accounts" => accounts::create [Admin],
    post "/accounts/{id}/role" => accounts::set_role [Admin],
    post "/accounts/{id}/disable" => accounts::disable [Admin],
    post "/accounts/{id}/enable" => accounts::enable [Admin],
    post "/accounts/{id}/reset-2fa" => accounts::reset_second_factor [Admin],
    get "/sessions" => sessions::list [Author],
    post "/sessions/{id}/end" => sessions::end [Author],
    get "/audit" => audit::page [Admin],
    // API tokens.
    get "/tokens" => tokens::list [Admin],
    post "/tokens" => tokens::create [Admin],
    post "/tokens/{id}/revoke" => tokens::revoke [Admin],
}

/// The least role that may use a request's route (`None`: no route of the table matches). The
/// first route of the table that matches wins, as it does when actix routes the request.
pub fn role_needed(method: &str, path: &str) -> Option<Role> {
    ROUTES
        .iter()
        .find(|(m, pattern, _)| m.eq_ignore_ascii_case(method) && path_matches(pattern, path))
        .map(|(_, _, role)| *role)
}

/// The `/admin` scope, with its session cookie and guard.
pub fn scope(
    settings: &Settings,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/admin")
        // Forms (an issue's body is the largest); CSV uploads stream past this, see subscribers.
        .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
        .configure(register)
        .wrap(actix_web::middleware::from_fn(|req, next| {
            guard(req, next, role_needed)
        }))
        .wrap(session_middleware(settings))
}
