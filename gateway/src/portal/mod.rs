//! The pages the gateway hosts itself on every customer host — sign-in,
//! registration, reset, verification, the cross-domain hop, sign-out, the
//! account, consent — and `/.well-known/omnigate/*`, as one axum `Router`.
//!
//! The proxy hands these paths over through `edge/bridge.rs`: a plain
//! `http::Request` with a bounded body, carrying what the page needs from the
//! connection as a [`Conn`] and the request's configuration snapshot in its
//! extensions. Nothing here knows the proxy; one module per page group, the
//! shared pieces (request, failures, responses, guards) in this one.

mod account;
mod consent;
mod data;
mod email;
mod guard;
mod hop;
mod privacy;
mod prove;
mod register;
mod request;
mod reset;
mod respond;
mod signin;
mod signout;
mod verify;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use request::{Conn, Form, Req, FORM_LIMIT};
pub use respond::{Answer, Failure};

use crate::state::App;

/// What every page handler reaches: the running gateway.
pub struct Portal {
    pub app: Arc<App>,
}

/// A page's outcome: a response, or a failure answered as a page or problem JSON.
pub type Result<T> = std::result::Result<T, Failure>;

/// Where backends fetch the keys that verify `X-Omnigate-Assertion`.
pub const JWKS_PATH: &str = "/.well-known/omnigate/jwks.json";

/// Whether the portal answers `path` (the proxy hands these over).
pub fn owns(path: &str) -> bool {
    path.starts_with("/_auth/")
        || path == "/_account"
        || path.starts_with("/_account/")
        || path.starts_with("/.well-known/omnigate/")
}

/// The route labels the portal's requests are counted and logged under
/// (`omnigate_requests_total{route}`): sign-in and registration, the
/// account pages, the published keys.
pub const AREAS: [&str; 3] = ["_auth", "_account", "_well-known"];

/// Which of [`AREAS`] a path the portal owns belongs to. Pure.
pub fn area(path: &str) -> usize {
    if path.starts_with("/_account") {
        1
    } else if path.starts_with("/.well-known/") {
        2
    } else {
        0
    }
}

/// The portal's router. Every `/_auth` and `/_account` request passes the
/// host and origin guard first; failures become pages or problem JSON last.
pub fn router(app: Arc<App>) -> Router {
    let portal = Arc::new(Portal { app });
    let pages = Router::new()
        .merge(signin::routes())
        .merge(register::routes())
        .merge(reset::routes())
        .merge(verify::routes())
        .merge(prove::routes())
        .merge(hop::routes())
        .merge(signout::routes())
        .merge(account::routes())
        .merge(email::routes())
        .merge(consent::routes())
        .merge(data::routes())
        .fallback(respond::not_found)
        .method_not_allowed_fallback(respond::not_found)
        // Inner to outer: throttled guesses, then host, origin and HTTPS.
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            guard::throttle,
        ))
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            guard::own_pages,
        ));
    Router::new()
        .route(JWKS_PATH, get(jwks))
        .merge(privacy::routes())
        .merge(pages)
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            respond::render_failures,
        ))
        .with_state(portal)
}

/// The assertion keys, current and next, for backends to verify with.
async fn jwks(
    axum::extract::State(p): axum::extract::State<Arc<Portal>>,
) -> axum::response::Response {
    let body = p.app.signer.jwks().to_string();
    (
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

use axum::response::IntoResponse;
