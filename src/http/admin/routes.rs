//! The console's route table and its scope.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::web;

use super::session::{guard, session_middleware};
use super::{
    articles, auth, dashboard, digest, engagement, issues, repermission, signup_form, subscribers,
    webhooks, welcome, MAX_FORM_BYTES,
};
use crate::foundation::config::Settings;

/// Declares the console's routes: the table the tests walk and the function that registers it.
macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path ),* $(,)?) => {
        /// Every route of the console: (method, path).
        pub const ROUTES: &[(&str, &str)] = &[ $( (stringify!($method), concat!("/admin", $path)) ),* ];

        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }
    };
}

route_table! {
    get "/login" => auth::login_page,
    post "/login" => auth::login,
    post "/logout" => auth::logout,
    get "/password" => auth::password_page,
    post "/password" => auth::change_password,
    get "" => dashboard::page,
    get "/issues" => issues::list,
    get "/issues/new" => issues::compose_page,
    post "/issues" => issues::compose,
    get "/issues/{id}" => issues::page,
    get "/issues/{id}/preview" => issues::preview,
    get "/issues/{id}/engagement.csv" => engagement::csv,
    post "/issues/{id}/send" => issues::send_draft,
    post "/issues/{id}/retry" => issues::retry_failed,
    get "/digest" => digest::page,
    get "/digest/preview" => digest::preview,
    post "/digest/send" => digest::send_now,
    post "/digest/skip" => digest::skip,
    get "/subscribers" => subscribers::list,
    get "/subscribers/export.csv" => subscribers::export,
    get "/subscribers/import" => subscribers::import_page,
    post "/subscribers/import" => subscribers::import,
    get "/subscribers/{id}" => subscribers::record,
    post "/subscribers/{id}/unsubscribe" => subscribers::unsubscribe,
    post "/subscribers/{id}/erase" => subscribers::erase,
    get "/repermission" => repermission::page,
    post "/repermission" => repermission::start,
    get "/articles" => articles::list,
    get "/articles/new" => articles::new_page,
    post "/articles" => articles::create,
    get "/articles/{id}" => articles::edit_page,
    post "/articles/{id}" => articles::update,
    post "/articles/{id}/exclude" => articles::exclude,
    get "/signup-form" => signup_form::page,
    get "/welcome" => welcome::page,
    post "/welcome" => welcome::save,
    get "/webhooks" => webhooks::list,
    post "/webhooks" => webhooks::create,
    get "/webhooks/{id}" => webhooks::page,
    post "/webhooks/{id}/enable" => webhooks::enable,
    post "/webhooks/{id}/delete" => webhooks::delete,
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
        .wrap(actix_web::middleware::from_fn(guard))
        .wrap(session_middleware(settings))
}
