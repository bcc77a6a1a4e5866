//! How pages answer: complete responses with the page headers, redirects
//! checked where the browser lands, throttling, and [`Failure`] — the one
//! error type of the portal, answered as a page for browsers and problem JSON
//! for API callers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::Response;
use serde_json::{json, Value};
use url::Url;

use axum::extract::State;
use axum::response::IntoResponse;

use super::*;
use crate::customers::Customer;
use crate::login::destination;
use crate::problem::Problem;
use crate::session::{self as sess, Session as Browser};
use crate::state::Snapshot;

pub(super) use super::request::query;
pub(super) use crate::session::unix_now as now;

/// The double-submit CSRF cookie of signed-out forms.
pub(super) const CSRF_COOKIE: &str = "__Host-omnigate-csrf";
/// The method label of password sign-ins (sessions, metrics).
pub(super) const PASSWORD_METHOD: &str = "password";
/// Names the proof waiting for a customer (email match at provider sign-in).
pub(super) const PROVE_COOKIE: &str = "__Host-omnigate-prove";
/// How long a proof may take.
pub(super) const PROVE_TTL: i64 = 600;

/// Store key of a pending sign-in (by its state) or a hop code.
pub(super) fn once_key(kind: &str, secret: &str) -> String {
    format!("{kind}:{}", sess::hash_id(secret))
}

pub(super) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A new session id and its record: `like`'s customer and sign-in, a fresh
/// CSRF token, created `t`, ending at `expires_at`.
pub(super) fn new_session(like: &Browser, t: i64, expires_at: i64) -> (String, Browser) {
    let id = sess::new_token();
    let record = Browser {
        id_hash: sess::hash_id(&id),
        csrf: sess::new_token(),
        created_at: t,
        last_seen: t,
        expires_at,
        ..like.clone()
    };
    (id, record)
}

/// Field errors of one form, by field name.
pub(super) type Errors = BTreeMap<&'static str, String>;

/// The error summary entries of `errors` in form `form`.
pub(super) fn summary(form: &str, errors: &Errors) -> Vec<Value> {
    errors
        .iter()
        .map(|(field, text)| json!({ "id": format!("{form}-{field}"), "text": text }))
        .collect()
}

/// `2026-11-29 21:40 UTC` for a Unix time. Pure.
pub(super) use crate::pages::when;

/// A store or the directory could not answer, a body was too large, or the
/// portal was handed a request it cannot serve. Rendered by
/// [`render_failures`] with the request's id and preferred format.
#[derive(Debug)]
pub enum Failure {
    Unavailable(String),
    /// Nothing here for this browser (an unknown or someone else's export).
    NotFound,
    TooLarge,
    BadRequest(&'static str),
    Internal(&'static str),
}

impl From<sess::StoreError> for Failure {
    fn from(e: sess::StoreError) -> Self {
        Failure::Unavailable(e.to_string())
    }
}

impl Failure {
    fn problem(&self) -> Problem {
        match self {
            Failure::Unavailable(_) => Problem::IdentityUnavailable,
            Failure::TooLarge => Problem::PayloadTooLarge {
                limit: FORM_LIMIT as u64,
            },
            Failure::BadRequest(why) => Problem::BadRequest(why),
            Failure::Internal(_) => Problem::Internal,
            Failure::NotFound => Problem::NotFound,
        }
    }
}

/// A problem the response carries for [`render_failures`] to write out.
#[derive(Debug, Clone)]
pub struct Answer(pub Problem);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match &self {
            Failure::Unavailable(e) => tracing::error!(error = %e, "a page's store is unavailable"),
            Failure::Internal(e) => tracing::error!(error = %e, "a page failed"),
            Failure::TooLarge | Failure::BadRequest(_) | Failure::NotFound => {}
        }
        let mut resp = Response::new(axum::body::Body::empty());
        resp.extensions_mut().insert(Answer(self.problem()));
        resp
    }
}

/// Writes out every [`Answer`] a handler or guard returned: as a page or
/// problem JSON (by `Accept`), with the request id, `Retry-After` on a 503.
pub async fn render_failures(
    State(p): State<Arc<Portal>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let kind = crate::problem::kind_from_accept(
        req.headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let request_id = req
        .extensions()
        .get::<Conn>()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let retry = (req.method() == http::Method::GET)
        .then(|| req.uri().path_and_query().map(|q| q.as_str().to_string()))
        .flatten();
    let accept_language = req
        .headers()
        .get(http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let resp = next.run(req).await;
    let Some(Answer(problem)) = resp.extensions().get::<Answer>().cloned() else {
        return resp;
    };
    let lang = p.app.pages.language(accept_language.as_deref());
    let mut rendered = crate::problem::render(&problem, kind, &request_id);
    if kind == crate::config::model::RouteKind::Web {
        let retry = retry.as_deref();
        rendered.body = p
            .app
            .pages
            .problem(&lang, &problem, &request_id, retry)
            .into();
    }
    let mut headers = vec![("cache-control", "no-store".to_string())];
    if rendered.status == 503 {
        headers.push(("retry-after", "5".into()));
    }
    let mut out = Response::new(axum::body::Body::from(rendered.body));
    *out.status_mut() = http::StatusCode::from_u16(rendered.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = out.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(rendered.content_type),
    );
    for (k, v) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    out.extensions_mut().insert(Answer(problem));
    out
}

/// The page of an address the portal has nothing at.
pub(super) async fn not_found(State(p): State<Arc<Portal>>, rq: Req) -> Result<Response> {
    let account = rq.head.uri.path().starts_with("/_account");
    if account {
        if let Err(to_sign_in) = p.me(&rq).await? {
            return Ok(to_sign_in);
        }
    }
    let link = if account {
        ("/_account", "common.your_account")
    } else {
        ("/", "common.home")
    };
    let html = p.msg(&rq, "message.not_found", Some(link));
    p.page(&rq, 404, html).await
}

/// The security headers and framing every page response carries.
pub(super) const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; form-action 'self' https: http:; frame-ancestors 'none'";

/// A complete page response; several `set-cookie` headers allowed.
pub(super) fn page_response(
    status: u16,
    content_type: &str,
    body: String,
    headers: &[(&str, String)],
) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    let fixed = [
        ("content-type", content_type),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("content-security-policy", PAGE_CSP),
    ];
    for (k, v) in fixed {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    for (k, v) in headers {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(v)) => {
                h.append(k, v);
            }
            _ => tracing::error!(header = k, "a page header that is not a header refused"),
        }
    }
    resp
}

impl Portal {
    /// The language of this request's pages and mails (`Accept-Language`
    /// among `pages.languages`).
    pub(super) fn lang(&self, rq: &Req) -> String {
        self.app.pages.language(rq.header("accept-language"))
    }

    /// The text `key` in the request's language.
    pub(super) fn tr(&self, rq: &Req, key: &str) -> String {
        self.app.pages.text(&self.lang(rq), key, &[])
    }

    /// The text `key` in the request's language, placeholders filled.
    pub(super) fn tra(&self, rq: &Req, key: &str, args: &[(&str, &str)]) -> String {
        self.app.pages.text(&self.lang(rq), key, args)
    }

    /// The message page `{key}.title` / `{key}.body`, with a link
    /// (`href`, the key of its text).
    pub(super) fn msg(&self, rq: &Req, key: &str, link: Option<(&str, &str)>) -> String {
        let body = self.tr(rq, &format!("{key}.body"));
        self.msg_with(rq, key, &body, link)
    }

    /// The message page `{key}.title` with `body` (already in the request's language).
    pub(super) fn msg_with(
        &self,
        rq: &Req,
        key: &str,
        body: &str,
        link: Option<(&str, &str)>,
    ) -> String {
        let lang = self.lang(rq);
        let title = self.app.pages.text(&lang, &format!("{key}.title"), &[]);
        let link_text = link.map(|(href, k)| (href, self.app.pages.text(&lang, k, &[])));
        self.app.pages.message(
            &lang,
            &title,
            body,
            link_text.as_ref().map(|(h, t)| (*h, t.as_str())),
        )
    }

    /// Renders the page template `name` in the request's language.
    pub(super) fn render<S: serde::Serialize>(&self, rq: &Req, name: &str, ctx: S) -> String {
        self.app.pages.render(&self.lang(rq), name, ctx)
    }

    /// Writes a full response with optional extra headers (several `set-cookie` allowed).
    /// A page says which language it is in, chosen by `Accept-Language`.
    pub(super) async fn write(
        &self,
        rq: &Req,
        status: u16,
        content_type: &str,
        body: String,
        headers: &[(&str, String)],
    ) -> Result<Response> {
        let mut resp = page_response(status, content_type, body, headers);
        if content_type.starts_with("text/html") {
            let h = resp.headers_mut();
            if let Ok(lang) = http::HeaderValue::from_str(&self.lang(rq)) {
                h.insert(http::header::CONTENT_LANGUAGE, lang);
            }
            h.insert(
                http::header::VARY,
                http::HeaderValue::from_static("accept-language"),
            );
        }
        Ok(resp)
    }

    /// Counts a sign-in outcome per provider (`omnigate_logins_total`).
    pub(super) fn count_login(&self, provider: &str, result: &str) {
        self.app
            .metrics
            .logins
            .with_label_values(&[provider, result])
            .inc();
    }

    /// 503 page when sign-in cannot complete for now; counts it per provider.
    pub(super) async fn sign_in_unavailable(
        &self,
        rq: &Req,
        provider: &str,
        result: &str,
        message: &str,
        retry: (&str, &str),
    ) -> Result<Response> {
        self.count_login(provider, result);
        let html = self.msg_with(rq, "message.unavailable", message, Some(retry));
        let retry_after = [("retry-after", "5".to_string())];
        self.write(rq, 503, "text/html; charset=utf-8", html, &retry_after)
            .await
    }

    /// 503 at once when the hashing pool is full: the customer tries again
    /// in a few seconds; nothing is counted as a failed attempt.
    pub(super) async fn hashing_busy(
        &self,
        rq: &Req,
        busy: crate::accounts::hashing::Busy,
        retry: (&str, &str),
    ) -> Result<Response> {
        tracing::warn!(
            reason = busy.reason(),
            "password hashing busy; sign-in answered 503"
        );
        let body = self.tr(rq, "message.unavailable.busy");
        self.sign_in_unavailable(rq, "password", "busy", &body, retry)
            .await
    }

    /// Answers 429 (a page, or JSON for machine callers) when `who` (an
    /// account; addresses are throttled by `guard::throttle`) is blocked on
    /// `scope` after repeated failures.
    pub(super) async fn throttled_as(
        &self,
        rq: &Req,
        scope: &str,
        who: &str,
        json: bool,
    ) -> Result<Option<Response>> {
        let Some(secs) = crate::throttle::retry_after(&*self.app.sessions, scope, who).await else {
            return Ok(None);
        };
        Ok(Some(self.throttle_answer(
            &self.lang(rq),
            scope,
            secs,
            json,
        )))
    }

    /// The 429 of a client blocked on `scope` for `secs` more seconds: a
    /// page in `lang`, or JSON for machine callers; counted.
    pub(super) fn throttle_answer(
        &self,
        lang: &str,
        scope: &str,
        secs: i64,
        json: bool,
    ) -> Response {
        self.app.metrics.throttled.with_label_values(&[scope]).inc();
        let retry = [("retry-after", secs.to_string())];
        if json {
            let body = serde_json::json!({
                "error": "slow_down",
                "error_description": format!("too many failed attempts; retry in {secs} s"),
            })
            .to_string();
            return page_response(429, "application/json", body, &retry);
        }
        let pages = &self.app.pages;
        let wait = pages.count(lang, "seconds", secs.max(0) as u64);
        let title = pages.text(lang, "message.throttled.title", &[]);
        let body = pages.text(lang, "message.throttled.body", &[("wait", &wait)]);
        let home = pages.text(lang, "common.home", &[]);
        let html = pages.message(lang, &title, &body, Some(("/", &home)));
        let mut resp = page_response(429, "text/html; charset=utf-8", html, &retry);
        if let Ok(v) = http::HeaderValue::from_str(lang) {
            resp.headers_mut().insert(http::header::CONTENT_LANGUAGE, v);
        }
        resp
    }

    /// Counts a failed attempt on `scope` from this client.
    pub(super) async fn count_failure(&self, rq: &Req, snap: &Snapshot, scope: &str) {
        let who = crate::throttle::address(rq.conn.client);
        crate::throttle::failed(&*self.app.sessions, scope, &who, &snap.config.abuse).await;
    }

    /// A store or the directory failed mid sign-in: logged, counted as
    /// `unavailable`, and a 503 page with a way to retry.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn dependency_down(
        &self,
        rq: &Req,
        provider: &str,
        what: &str,
        error: &(dyn std::fmt::Display + Sync),
        retry: (&str, &str),
    ) -> Result<Response> {
        tracing::error!(error = %error, "{what}");
        let body = self.tr(rq, "message.unavailable.try_later");
        self.sign_in_unavailable(rq, provider, "unavailable", &body, retry)
            .await
    }

    pub(super) async fn page(&self, rq: &Req, status: u16, html: String) -> Result<Response> {
        self.write(rq, status, "text/html; charset=utf-8", html, &[])
            .await
    }

    /// A 303 to `location` (a path or URL on a configured host), checked
    /// on the URL the browser lands on: anything else goes to `/`.
    pub(super) async fn redirect(
        &self,
        rq: &Req,
        location: &str,
        cookies: &[String],
    ) -> Result<Response> {
        let checked = self.checked_location(rq, location);
        self.redirect_external(rq, &checked, cookies).await
    }

    /// The `Location` to emit for `candidate`: see `login::destination`.
    pub(super) fn checked_location(&self, rq: &Req, candidate: &str) -> String {
        let here = rq.conn.here.as_ref();
        destination::checked(&rq.snap.config, here, candidate).unwrap_or_else(|| {
            tracing::warn!(request_id = %rq.conn.request_id, "redirect target outside the configured hosts refused");
            "/".to_string()
        })
    }

    /// A 303 to a URL the configuration or a provider's discovery document
    /// names (authorization and sign-out endpoints): not a customer's input.
    pub(super) async fn redirect_external(
        &self,
        rq: &Req,
        location: &str,
        cookies: &[String],
    ) -> Result<Response> {
        let mut headers = vec![("location", location.to_string())];
        headers.extend(cookies.iter().map(|c| ("set-cookie", c.clone())));
        self.write(rq, 303, "text/plain", String::new(), &headers)
            .await
    }

    /// The checked `return_to` of a sign-in, as the absolute URL the browser
    /// would land on (`/` when it would leave the configured hosts).
    pub(super) fn return_to(
        &self,
        snap: &Snapshot,
        here: Option<&Url>,
        raw: Option<&str>,
    ) -> String {
        // An empty field names no place (not "this page").
        let checked = here
            .zip(raw.filter(|r| !r.is_empty()))
            .and_then(|(h, r)| self.destination(snap, h, r));
        checked.map_or_else(|| "/".to_string(), String::from)
    }

    /// Where `candidate` sends a browser on `here`: see `login::destination`.
    pub(super) fn destination(&self, snap: &Snapshot, here: &Url, candidate: &str) -> Option<Url> {
        destination::within(&snap.config, here, candidate)
    }

    /// Keeps `value` as JSON under `once_key(kind, secret)` until `expires_at`.
    pub(super) async fn put_json_once<T: serde::Serialize>(
        &self,
        kind: &str,
        secret: &str,
        value: &T,
        expires_at: i64,
    ) -> std::result::Result<(), sess::StoreError> {
        let json = serde_json::to_string(value)
            .map_err(|e| sess::StoreError::Unavailable(e.to_string()))?;
        self.app
            .sessions
            .put_once(&once_key(kind, secret), &json, expires_at)
            .await
    }

    /// Takes out the single-use record `once_key(kind, secret)` (of
    /// concurrent takers exactly one gets it); a record that does not parse
    /// as `T` counts as absent.
    pub(super) async fn take_json_once<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        secret: &str,
    ) -> std::result::Result<Option<T>, sess::StoreError> {
        let taken = self.app.sessions.take_once(&once_key(kind, secret)).await?;
        Ok(taken.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// The live session of this browser on this host, if any. A store that
    /// cannot answer is an error (a 503 up the call chain), never "signed out".
    pub(super) async fn current_session(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
    ) -> std::result::Result<Option<Arc<Browser>>, sess::StoreError> {
        sess::current(
            &*self.app.sessions,
            &rq.head.headers,
            host,
            &snap.config.sessions,
        )
        .await
    }

    /// The signed-in customer of an `/_account` page, or the redirect to
    /// sign in (back to this page when it was one, else to the account).
    pub(super) async fn me(&self, rq: &Req) -> Result<std::result::Result<Arc<Browser>, Response>> {
        if let Some(me) = self.current_session(rq, &rq.snap, &rq.conn.host).await? {
            return Ok(Ok(me));
        }
        let back = if rq.is_get() {
            rq.head.uri.path().to_string()
        } else {
            "/_account".to_string()
        };
        let to = format!("/_auth/login?return_to={}", enc(&back));
        Ok(Err(self.redirect(rq, &to, &[]).await?))
    }

    pub(super) async fn session_ended(&self, customer_id: Option<&str>, reason: &str, ended: u64) {
        crate::events::session_ended(&**self.app.auth.directory(), customer_id, reason, ended)
            .await;
    }

    /// Copies a customer's profile into their live sessions.
    pub(super) async fn refresh_sessions(&self, c: &Customer) {
        let profile = sess::Profile {
            email: c.email.clone(),
            email_verified: c.email_verified,
            name: c.name.clone(),
        };
        if let Err(e) = self.app.sessions.refresh_profile(&c.id, &profile).await {
            tracing::warn!(error = %e, "sessions keep the old profile until they end");
        }
    }
}
