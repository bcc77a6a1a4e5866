//! The guard in front of every `/_auth` and `/_account` handler, applied
//! once as a layer: the pages answer only on hosts the configuration names
//! (URLs built from any other would reach third parties), and a state change
//! only from this origin (login CSRF, forced sign-out). The back-channel
//! logout, a provider's signed server-to-server POST, is exempt, and so is
//! the callback of a provider that posts its answer (`form_post`).

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
        let pages = &portal.app.pages;
        let lang = pages.language(
            parts
                .headers
                .get(http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        );
        let html = pages.keyed_message(&lang, "message.not_found", Some(("/", "common.home")));
        Err(super::respond::page_response(
            404,
            "text/html; charset=utf-8",
            html,
            &[],
        ))
    }
}

pub(super) async fn own_pages(
    axum::extract::State(portal): axum::extract::State<std::sync::Arc<super::Portal>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(problem) = refusal(&req) {
        let mut resp = ().into_response();
        resp.extensions_mut().insert(Answer(problem));
        return resp;
    }
    match needs_https(&portal, &req) {
        Some(page) => page,
        None => next.run(req).await,
    }
}

/// A sign-in, registration, reset or account page over plain HTTP on a host
/// a browser does not treat as secure (anything but localhost) cannot work:
/// the browser refuses the `Secure` cookies, and the form would only ever
/// say it expired. Said at once, with
/// the HTTPS address when a listener serves it.
fn needs_https(portal: &super::Portal, req: &Request) -> Option<Response> {
    let ext = req.extensions();
    let (conn, snap) = (ext.get::<Conn>()?, ext.get::<std::sync::Arc<Snapshot>>()?);
    let local = conn.host == "localhost"
        || conn.host.ends_with(".localhost")
        || conn.host == "127.0.0.1"
        || conn.host == "[::1]";
    let path = req.uri().path();
    let form_page = [
        "/_auth/login",
        "/_auth/register",
        "/_auth/reset",
        "/_auth/prove",
        "/_account",
    ]
    .iter()
    .any(|p| path.starts_with(p));
    if conn.tls || local || !form_page {
        return None;
    }
    let https = snap
        .config
        .listeners
        .iter()
        .find(|l| l.tls.is_some())
        .map(|l| match l.address.port() {
            443 => format!("https://{}", conn.host),
            port => format!("https://{}:{port}", conn.host),
        });
    let secure = https.map(|base| {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{base}{pq}")
    });
    let pages = &portal.app.pages;
    let lang = pages.language(
        req.headers()
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let link = secure.as_deref().map(|u| (u, "message.needs_https.link"));
    let html = pages.keyed_message(&lang, "message.needs_https", link);
    Some(super::respond::page_response(
        403,
        "text/html; charset=utf-8",
        html,
        &[],
    ))
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
    if !origin::changes_state(req.method()) || provider_post(snap, req) {
        return None;
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let ok = conn
        .here
        .as_ref()
        .is_some_and(|here| origin::same_origin(header("origin"), header("sec-fetch-site"), here));
    (!ok).then_some(Problem::CrossSiteForm)
}

/// A provider that answers with `form_post` posts the callback from its own
/// site: exempt from the Origin check for exactly that path and method (its
/// `state`, bound to this browser's login cookie, is the check instead).
fn provider_post(snap: &Snapshot, req: &Request) -> bool {
    req.method() == http::Method::POST
        && req
            .uri()
            .path()
            .strip_prefix("/_auth/callback/")
            .is_some_and(|name| super::signin::posts_answers(snap, name))
}

/// The throttle scope of a request to an endpoint that takes guesses
/// (passwords, mailed tokens, sign-in codes), and whether it answers JSON.
/// One table for every such endpoint. Pure.
pub(super) fn guess_scope(method: &http::Method, path: &str) -> Option<(&'static str, bool)> {
    use http::Method as M;
    let scope = match (method, path) {
        (&M::POST, "/_auth/login/password" | "/_auth/prove") => ("password", false),
        (&M::POST, "/_auth/register") => ("register", false),
        (&M::POST, "/_auth/reset") => ("reset", false),
        (&M::POST, "/_auth/reset/confirm") => ("reset-confirm", false),
        (&M::GET, "/_auth/verify" | "/_auth/email/confirm") => ("verify", false),
        (&M::GET, "/_auth/hop") => ("hop", false),
        (_, p) if p.starts_with("/_auth/callback/") => ("callback", false),
        (&M::POST, p) if p.starts_with("/_auth/backchannel-logout/") => ("backchannel", true),
        _ => return None,
    };
    Some(scope)
}

/// A client blocked after repeated failures on an endpoint's scope gets
/// its 429 before the handler runs (the handlers count the failures).
pub(super) async fn throttle(
    axum::extract::State(portal): axum::extract::State<std::sync::Arc<super::Portal>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some((scope, json)) = guess_scope(req.method(), req.uri().path()) {
        let client = req.extensions().get::<Conn>().and_then(|c| c.client);
        let who = crate::throttle::address(client);
        let sessions = &*portal.app.sessions;
        if let Some(secs) = crate::throttle::retry_after(sessions, scope, &who).await {
            let accept = req
                .headers()
                .get(http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok());
            let lang = portal.app.pages.language(accept);
            return portal.throttle_answer(&lang, scope, secs, json);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod scope_tests {
    use super::*;
    use http::Method;

    #[test]
    fn every_endpoint_that_takes_guesses_has_a_scope() {
        let cases = [
            (Method::POST, "/_auth/login/password", Some("password")),
            (Method::POST, "/_auth/prove", Some("password")),
            (Method::POST, "/_auth/register", Some("register")),
            (Method::GET, "/_auth/register", None),
            (Method::POST, "/_auth/reset", Some("reset")),
            (Method::POST, "/_auth/reset/confirm", Some("reset-confirm")),
            (Method::GET, "/_auth/verify", Some("verify")),
            (Method::GET, "/_auth/email/confirm", Some("verify")),
            (Method::GET, "/_auth/hop", Some("hop")),
            (Method::GET, "/_auth/callback/idp", Some("callback")),
            (Method::POST, "/_auth/callback/apple", Some("callback")),
            (
                Method::POST,
                "/_auth/backchannel-logout/idp",
                Some("backchannel"),
            ),
            (Method::GET, "/_account", None),
        ];
        for (m, p, want) in cases {
            assert_eq!(guess_scope(&m, p).map(|s| s.0), want, "{m} {p}");
        }
        assert_eq!(
            guess_scope(&Method::POST, "/_auth/backchannel-logout/x").map(|s| s.1),
            Some(true)
        );
    }
}
