//! The guard in front of every `/_auth` and `/_account` handler, applied
//! once as a layer: the pages answer only on hosts the configuration names
//! (URLs built from any other would reach third parties), and a state change
//! only from this origin (login CSRF, forced sign-out). The back-channel
//! logout, a provider's signed server-to-server POST, is exempt.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::respond::Answer;
use super::Conn;
use crate::login::origin;
use crate::problem::Problem;
use crate::state::Snapshot;

/// An extractor that lets a handler run only while password accounts are
/// on (`accounts.passwords`); otherwise its pages do not exist (404).
pub(super) struct PasswordsOn;

impl axum::extract::FromRequestParts<std::sync::Arc<super::Portal>> for PasswordsOn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        portal: &std::sync::Arc<super::Portal>,
    ) -> Result<Self, Response> {
        let on = parts
            .extensions
            .get::<std::sync::Arc<Snapshot>>()
            .is_some_and(|s| s.config.accounts.passwords);
        if on {
            return Ok(PasswordsOn);
        }
        let html = portal.app.pages.message(
            "Page not found",
            "There is nothing at this address.",
            Some(("/", "Home")),
        );
        Err(super::respond::page_response(
            404,
            "text/html; charset=utf-8",
            html,
            &[],
        ))
    }
}

pub(super) async fn own_pages(req: Request, next: Next) -> Response {
    match refusal(&req) {
        Some(problem) => {
            let mut resp = ().into_response();
            resp.extensions_mut().insert(Answer(problem));
            resp
        }
        None => next.run(req).await,
    }
}

/// Why `req` is refused before any handler sees it, if it is.
fn refusal(req: &Request) -> Option<Problem> {
    if origin::exempt(req.uri().path()) {
        return None;
    }
    let ext = req.extensions();
    let (Some(conn), Some(snap)) = (ext.get::<Conn>(), ext.get::<std::sync::Arc<Snapshot>>())
    else {
        return Some(Problem::Internal);
    };
    if !snap.config.known_host(&conn.host) {
        return Some(Problem::UnknownHost);
    }
    if !origin::changes_state(req.method()) {
        return None;
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let ok = conn
        .here
        .as_ref()
        .is_some_and(|here| origin::same_origin(header("origin"), header("sec-fetch-site"), here));
    (!ok).then_some(Problem::CrossSiteForm)
}
