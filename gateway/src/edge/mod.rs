//! The customer-facing proxy: one Pingora service per listener. Owns the
//! request path: HTTPS redirect, host and path checks, route match, body-size
//! limits, upstream choice with failover, forwarding headers, request ids,
//! error responses, HSTS, metrics and the access log.
//!
//! Never forwards a client's `X-Forwarded-*` or `X-Request-Id` unless the
//! client is a configured trusted proxy, and never writes upstream error text,
//! addresses or stack traces into a response.

pub mod pool;
pub mod route;
pub mod tls;

mod admit;
mod bridge;
mod forward_auth;
mod forwarded;
pub mod header_policy;
pub mod path;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::config::model::{Listener, RouteKind};
use crate::gate::Verdict;

use crate::problem::{self as errors, Problem};
use crate::state::{App, Snapshot};
use pool::{InFlight, Pool};
use route::Match;

/// The proxy logic of one listener.
pub struct Gateway {
    pub app: Arc<App>,
    /// The listener as configured at start (its socket cannot change).
    pub listener: Listener,
    /// The gateway's own pages (`crate::portal`), reached through `bridge`.
    portal: axum::Router,
}

/// Counts a request in `omnigate_requests_in_flight` until dropped.
pub struct InFlightGuard(prometheus::IntGauge);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    snapshot: Option<Arc<Snapshot>>,
    route: Option<usize>,
    pool: Option<Arc<Pool>>,
    tried: Vec<usize>,
    address: Option<usize>,
    in_flight_addr: Option<InFlight>,
    request_id: String,
    kind: RouteKind,
    body_limit: u64,
    body_seen: u64,
    trusted_client: bool,
    /// Status of a response the gateway wrote itself.
    local_status: Option<u16>,
    problem: Option<&'static str>,
    /// The verified caller, on routes that take identity.
    principal: Option<Arc<crate::auth::Principal>>,
    /// The anonymous visitor's guest id on `guest` routes, and the cookie
    /// value to set when it is new.
    guest: Option<(String, Option<String>)>,
    /// The guest id a new sign-in took over, told to the backend once.
    previous_guest: Option<String>,
    /// The identified caller's granted purposes (id → version).
    consents: Option<Arc<std::collections::BTreeMap<String, u32>>>,
    /// The URL the browser is on, for pages and redirects the gateway writes.
    here: Option<url::Url>,
    /// On a forward-auth call: the request it asks about.
    original: Option<crate::gate::original::Original>,
    /// On the gateway's own pages: which area (`portal::AREAS`).
    portal: Option<usize>,
    /// The slot this request holds at its upstream's gate, until the
    /// upstream's answer is complete.
    permit: Option<crate::admission::Permit>,
    /// Cookies the gateway sets on the backend's answer (a waiting-room stay).
    set_cookies: Vec<String>,
    _in_flight: Option<InFlightGuard>,
}

impl Gateway {
    pub fn new(app: Arc<App>, listener: Listener) -> Self {
        let portal = crate::portal::router(app.clone());
        Gateway {
            app,
            listener,
            portal,
        }
    }

    /// The address this request comes from (behind trusted proxies, the client's).
    fn client(&self, session: &Session, snap: &Snapshot) -> Option<std::net::IpAddr> {
        forwarded::client_address(
            client_ip(session),
            session
                .req_header()
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok()),
            &snap.config.trusted_proxies,
        )
    }

    /// Whether the browser is on HTTPS: this listener's TLS, or the one a
    /// trusted proxy in front terminated (`X-Forwarded-Proto: https`).
    fn browser_tls(&self, session: &Session, trusted: bool) -> bool {
        self.listener.tls.is_some()
            || (trusted
                && forwarded::says_https(
                    session
                        .req_header()
                        .headers
                        .get("x-forwarded-proto")
                        .and_then(|v| v.to_str().ok()),
                ))
    }

    /// The URL this request's browser is on (scheme, Host, path and query).
    fn current_url(&self, session: &Session, trusted: bool) -> Option<url::Url> {
        let req = session.req_header();
        let host = Self::raw_host(req)?;
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let scheme = if self.browser_tls(session, trusted) {
            "https"
        } else {
            "http"
        };
        url::Url::parse(&format!("{scheme}://{host}{pq}")).ok()
    }

    fn listener_now<'s>(&'s self, snap: &'s Snapshot) -> &'s Listener {
        snap.config
            .listeners
            .iter()
            .find(|l| l.name == self.listener.name)
            .unwrap_or(&self.listener)
    }

    /// Writes a complete response the gateway generates itself.
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        problem: Problem,
        extra: &[(&'static str, String)],
    ) -> Result<()> {
        let mut rendered = errors::render(&problem, ctx.kind, &ctx.request_id);
        if ctx.kind == RouteKind::Web {
            // A branded page with what to do next, as the portal's pages.
            let req = session.req_header();
            let retry = match &ctx.original {
                Some(o) => (o.method == http::Method::GET).then_some(o.path_and_query.as_str()),
                None => (req.method == http::Method::GET)
                    .then(|| req.uri.path_and_query().map_or("/", |p| p.as_str())),
            };
            let accept = req
                .headers
                .get("accept-language")
                .and_then(|v| v.to_str().ok());
            let lang = self.app.pages.language(accept);
            let html = self
                .app
                .pages
                .problem(&lang, &problem, &ctx.request_id, retry);
            rendered.body = Bytes::from(html);
        }
        ctx.local_status = Some(rendered.status);
        ctx.problem = Some(problem.code());
        let mut resp = ResponseHeader::build(rendered.status, Some(6))?;
        resp.insert_header("content-type", rendered.content_type)?;
        resp.insert_header("content-length", rendered.body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        for (k, v) in extra {
            resp.insert_header(*k, v.as_str())?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        self.finish(session, ctx, resp, rendered.body, head_only)
            .await
    }

    /// Adds HSTS and writes `resp` with `body` (none when `head_only`).
    async fn finish(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        mut resp: ResponseHeader,
        body: Bytes,
        head_only: bool,
    ) -> Result<()> {
        self.add_hsts(&mut resp, ctx)?;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }

    fn add_hsts(&self, resp: &mut ResponseHeader, ctx: &Ctx) -> Result<()> {
        if self.listener.tls.is_none() {
            return Ok(());
        }
        let hsts = match &ctx.snapshot {
            Some(s) => self.listener_now(s).hsts.clone(),
            None => self.listener.hsts.clone(),
        };
        if let Some(v) = hsts {
            resp.insert_header("strict-transport-security", v)?;
        }
        Ok(())
    }

    /// Applies the route's access policy (`crate::gate`). Returns true if
    /// a response was written.
    async fn authorize(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        i: usize,
        host: &str,
    ) -> Result<bool> {
        let req = session.req_header();
        let ask = crate::gate::Ask {
            method: &req.method,
            host,
            path_and_query: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            headers: &req.headers,
        };
        match crate::gate::check(&self.app, snap, i, &ask).await {
            Verdict::Pass(pass) => {
                ctx.principal = pass.principal;
                ctx.consents = pass.consents;
                ctx.guest = pass.guest;
                ctx.previous_guest = pass.previous_guest;
                Ok(false)
            }
            Verdict::Redirect { status, location } => {
                self.bare_redirect(session, ctx, status, &location).await?;
                Ok(true)
            }
            Verdict::Refuse { problem, headers } => {
                self.respond(session, ctx, problem, &headers).await?;
                Ok(true)
            }
        }
    }

    /// A redirect without a body that no cache keeps.
    async fn bare_redirect(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        location: &str,
    ) -> Result<()> {
        let here = ctx
            .here
            .clone()
            .or_else(|| self.current_url(session, ctx.trusted_client));
        let snap = ctx.snapshot.clone().unwrap_or_else(|| self.app.snapshot());
        let checked = crate::login::destination::checked(&snap.config, here.as_ref(), location);
        let location = checked.unwrap_or_else(|| {
            tracing::warn!(request_id = %ctx.request_id, "redirect target outside the configured hosts refused");
            "/".to_string()
        });
        self.write_redirect(session, ctx, status, &location).await
    }

    /// Writes a redirect to an already checked `location`.
    async fn write_redirect(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        location: &str,
    ) -> Result<()> {
        ctx.local_status = Some(status);
        let mut resp = ResponseHeader::build(status, Some(4))?;
        resp.insert_header("location", location)?;
        resp.insert_header("content-length", "0")?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        session.write_response_header(Box::new(resp), true).await
    }

    /// Host of the request: `:authority` (HTTP/2) or `Host`.
    fn raw_host(req: &RequestHeader) -> Option<&str> {
        req.uri.authority().map(|a| a.as_str()).or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
    }
}

pub(super) fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The error type of a store that could not answer on the request path.
const DEPENDENCY_DOWN: &str = "DependencyUnavailable";

/// A store failure on the request path: answered as a 503 with `Retry-After`
/// (`problem_for`), never as a changed identity.
impl From<crate::session::StoreError> for Box<Error> {
    fn from(e: crate::session::StoreError) -> Self {
        Error::because(ErrorType::Custom(DEPENDENCY_DOWN), "session store", e)
    }
}

/// Maps a Pingora error to what the client is told.
fn problem_for(e: &Error, ctx: &Ctx) -> Option<Problem> {
    match e.etype() {
        ErrorType::Custom(DEPENDENCY_DOWN) => Some(Problem::IdentityUnavailable),
        ErrorType::HTTPStatus(413) => Some(Problem::PayloadTooLarge {
            limit: ctx.body_limit,
        }),
        ErrorType::HTTPStatus(503) => Some(Problem::NoHealthyUpstream),
        ErrorType::HTTPStatus(504) => Some(Problem::GatewayTimeout),
        ErrorType::HTTPStatus(400) => Some(Problem::BadRequest("malformed request")),
        ErrorType::HTTPStatus(_) => Some(Problem::BadGateway),
        _ => match e.esource() {
            ErrorSource::Upstream => Some(match e.etype() {
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                    Problem::GatewayTimeout
                }
                _ => Problem::BadGateway,
            }),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => None,
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => None,
                _ => Some(Problem::BadRequest("malformed request")),
            },
            ErrorSource::Internal | ErrorSource::Unset => Some(Problem::Internal),
        },
    }
}

fn error_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => "tls",
        t if t.as_str().starts_with("Connect") => "connect",
        _ => "protocol",
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            snapshot: None,
            route: None,
            pool: None,
            tried: Vec::new(),
            address: None,
            in_flight_addr: None,
            request_id: String::new(),
            kind: RouteKind::Web,
            body_limit: u64::MAX,
            body_seen: 0,
            trusted_client: false,
            local_status: None,
            problem: None,
            principal: None,
            guest: None,
            previous_guest: None,
            consents: None,
            here: None,
            original: None,
            portal: None,
            permit: None,
            set_cookies: Vec::new(),
            _in_flight: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.start = Instant::now();
        let in_flight = self.app.metrics.in_flight.clone();
        in_flight.inc();
        ctx._in_flight = Some(InFlightGuard(in_flight));
        let snap = self.app.snapshot();
        let config = snap.config.clone();
        ctx.trusted_client = client_ip(session)
            .is_some_and(|ip| config.trusted_proxies.iter().any(|n| n.contains(&ip)));
        let req = session.req_header();
        ctx.request_id = forwarded::request_id(
            req.headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            ctx.trusted_client,
        );
        ctx.kind = errors::kind_from_accept(
            req.headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        ctx.snapshot = Some(snap.clone());
        // Before anything reads a header: no client spelling of a header the
        // gateway owns survives (identity, proxy chain, path overrides).
        let trusted = ctx.trusted_client;
        if let Err(name) = snap.header_policy.apply(session.req_header_mut(), trusted) {
            tracing::debug!(header = %name, "request refused: a header name contains `_`");
            self.respond(
                session,
                ctx,
                Problem::BadRequest("a header name contains `_`"),
                &[],
            )
            .await?;
            return Ok(true);
        }
        if crate::gate::original::is_endpoint(session.req_header().uri.path()) {
            self.forward_auth(session, ctx, &snap).await?;
            return Ok(true);
        }
        let req = session.req_header();

        let Some(host) = Self::raw_host(req).and_then(route::normalize_host) else {
            self.respond(
                session,
                ctx,
                Problem::BadRequest("missing or malformed Host header"),
                &[],
            )
            .await?;
            return Ok(true);
        };

        if let Some(port) = self.listener_now(&snap).redirect_to_https {
            let location = forwarded::https_location(
                &host,
                port,
                req.uri.path_and_query().map(|p| p.as_str()),
            );
            ctx.local_status = Some(308);
            let mut resp = ResponseHeader::build(308, Some(4))?;
            resp.insert_header("location", location)?;
            resp.insert_header("content-length", "0")?;
            resp.insert_header("x-request-id", ctx.request_id.as_str())?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }

        // One canonical path: the one matched is the one forwarded.
        match path::canonical(req.uri.path(), &config.requests.paths) {
            Ok(std::borrow::Cow::Borrowed(_)) => {}
            Ok(std::borrow::Cow::Owned(canonical)) => {
                let uri = path::with_path(&req.uri, &canonical).map_err(|_| {
                    Error::explain(ErrorType::InternalError, "canonical path is not a URI")
                })?;
                session.req_header_mut().set_uri(uri);
            }
            Err(refusal) => {
                self.respond(session, ctx, Problem::BadPath(refusal), &[])
                    .await?;
                return Ok(true);
            }
        }
        let req = session.req_header();
        let path = req.uri.path();
        if crate::portal::owns(path) {
            ctx.portal = Some(crate::portal::area(path));
            ctx.here = self.current_url(session, ctx.trusted_client);
            self.portal(session, ctx, &host).await?;
            return Ok(true);
        }
        let method = req.method.as_str();
        match snap.router.find(&config.routes, &host, path, method) {
            Match::Route(i) => {
                let r = &config.routes[i];
                ctx.route = Some(i);
                ctx.kind = r.kind;
                ctx.body_limit = r.max_body;
                ctx.pool = snap.route_pools.get(i).cloned();
            }
            Match::MethodNotAllowed(allowed) => {
                let allow = allowed.join(", ");
                self.respond(session, ctx, Problem::MethodNotAllowed, &[("allow", allow)])
                    .await?;
                return Ok(true);
            }
            Match::NotFound => {
                self.respond(session, ctx, Problem::NotFound, &[]).await?;
                return Ok(true);
            }
        }
        if ctx.pool.as_ref().is_some_and(|p| p.config.forward_auth) {
            // Its backend sits behind the operator's proxy, which asks
            // forward-auth; Omnigate itself serves nothing there.
            tracing::debug!(request_id = %ctx.request_id, "a forward-auth route was asked of the proxy itself");
            self.respond(session, ctx, Problem::NotFound, &[]).await?;
            return Ok(true);
        }
        if let Some(i) = ctx.route {
            if self.authorize(session, ctx, &snap, i, &host).await? {
                return Ok(true);
            }
            if self.spike_gate(session, ctx, &snap, i, &host).await? {
                return Ok(true);
            }
        }
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > ctx.body_limit) {
            let limit = ctx.body_limit;
            self.respond(
                session,
                ctx,
                Problem::PayloadTooLarge { limit },
                &[("connection", "close".into())],
            )
            .await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_seen += b.len() as u64;
            if ctx.body_seen > ctx.body_limit {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the route limit",
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no pool for route");
        };
        match pool.select(&ctx.tried) {
            Some((index, guard)) => {
                ctx.tried.push(index);
                ctx.address = Some(index);
                ctx.in_flight_addr = Some(guard);
                Ok(pool.peer(index))
            }
            None if ctx.tried.is_empty() => {
                Error::e_explain(ErrorType::HTTPStatus(503), "no healthy upstream address")
            }
            None => Error::e_explain(ErrorType::HTTPStatus(502), "every upstream address failed"),
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(pool) = &ctx.pool {
            self.app
                .metrics
                .upstream_errors
                .with_label_values(&[pool.config.name.as_str(), error_kind(&e)])
                .inc();
            // Nothing reached the upstream yet: another address is always safe.
            if ctx.tried.len() < pool.addresses.len() {
                e.set_retry(true);
            }
        }
        ctx.in_flight_addr = None;
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let tls = self.listener.tls.is_some();
        let peer = client_ip(session);
        // Client spellings of identity and chain headers were removed in
        // `request_filter`; what the gateway sets starts here.
        let client = match &ctx.snapshot {
            Some(snap) if ctx.trusted_client => self.client(session, snap),
            _ => peer,
        };
        let hop = forwarded::Hop {
            peer,
            client,
            tls,
            trusted: ctx.trusted_client,
        };
        forwarded::apply(upstream, &hop, &ctx.request_id)?;
        if let Some(p) = ctx.permit.as_mut() {
            p.sent();
        }
        if let (Some(p), Some(pool), Some(snap)) = (&ctx.principal, &ctx.pool, &ctx.snapshot) {
            let granted = ctx.consents.as_deref();
            let told =
                crate::gate::identity::tell(&self.app, &snap.config, p, &pool.config, granted)
                    .ok_or_else(|| {
                        Error::explain(ErrorType::InternalError, "cannot sign assertion")
                    })?;
            for (name, value) in told.headers {
                upstream.insert_header(name, value)?;
            }
        }
        if let Some((guest, _)) = &ctx.guest {
            upstream.insert_header("x-guest-id", guest.as_str())?;
        }
        if let (Some(g), Some(_)) = (&ctx.previous_guest, &ctx.principal) {
            upstream.insert_header("x-previous-guest-id", g.as_str())?;
        }
        // The gateway's own cookies (session, login state) never reach a backend.
        let cookies = crate::session::cookie_header(&session.req_header().headers);
        if let Some(c) = cookies {
            upstream.remove_header("cookie");
            if let Some(kept) = crate::session::without_own_cookies(&c) {
                upstream.insert_header("cookie", kept)?;
            }
        }
        if let (Some(snap), Some(i)) = (&ctx.snapshot, ctx.route) {
            let r = &snap.config.routes[i];
            if r.strip_prefix && r.path_prefix != "/" {
                let stripped = route::strip_prefix(&r.path_prefix, upstream.uri.path());
                let pq = match upstream.uri.query() {
                    Some(q) => format!("{stripped}?{q}"),
                    None => stripped.into_owned(),
                };
                let uri = pq.parse::<http::Uri>().map_err(|_| {
                    Error::explain(ErrorType::InternalError, "rewritten path is not a URI")
                })?;
                upstream.set_uri(uri);
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(p) = ctx.permit.as_mut() {
            p.answered();
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            // The upstream is done; a slow client no longer holds its slot.
            ctx.permit = None;
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        for c in ctx.set_cookies.drain(..) {
            resp.append_header("set-cookie", c)?;
        }
        if let Some((_, Some(value))) = &ctx.guest {
            let cookie = crate::session::set_cookie(
                crate::session::GUEST_COOKIE,
                value,
                crate::session::GUEST_MAX_AGE,
            );
            resp.append_header("set-cookie", cookie)?;
        }
        self.add_hsts(resp, ctx)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if let Some(pool) = &ctx.pool {
            if e.esource() == &ErrorSource::Upstream {
                self.app
                    .metrics
                    .upstream_errors
                    .with_label_values(&[pool.config.name.as_str(), error_kind(&e)])
                    .inc();
            }
        }
        let mut e = e.more_context(format!("peer {peer}"));
        // Same policy as Pingora's default: only idempotent requests whose body
        // is still fully buffered may be retried, and only on a reused connection.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let Some(problem) = problem_for(e, ctx) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let code = problem.status();
        let already_answered = session
            .response_written()
            .is_some_and(|r| !r.status.is_informational());
        if already_answered {
            // Headers are out; the only honest signal left is closing the stream.
            ctx.local_status = Some(code);
            ctx.problem = Some(problem.code());
        } else {
            session.set_keepalive(None);
            let extra = if problem == Problem::IdentityUnavailable {
                vec![("retry-after", "5".to_string())]
            } else {
                Vec::new()
            };
            if let Err(err) = self.respond(session, ctx, problem, &extra).await {
                tracing::debug!(error = %err, "could not write error response; client gone");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .filter(|s| *s != 0)
            .or(ctx.local_status)
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let method = session.req_header().method.as_str();
        let Some(snap) = &ctx.snapshot else { return };
        let rm = match (ctx.route, ctx.portal) {
            (Some(i), _) => snap.route_metrics.get(i),
            (None, Some(a)) => snap.portal_metrics.get(a),
            (None, None) => None,
        }
        .unwrap_or(&snap.unrouted);
        if status != 0 {
            rm.count(&self.app.metrics, method, status);
        }
        rm.duration.observe(elapsed.as_secs_f64());
        if !snap.config.log.access_log {
            return;
        }
        let route = match (ctx.route, ctx.portal) {
            (Some(i), _) => snap.config.routes[i].name.as_str(),
            (None, Some(a)) => crate::portal::AREAS.get(a).copied().unwrap_or("-"),
            (None, None) => "-",
        };
        let upstream = ctx
            .pool
            .as_ref()
            .map(|p| p.config.name.as_str())
            .unwrap_or("-");
        let address = match (&ctx.pool, ctx.address) {
            (Some(p), Some(i)) => p.addresses.get(i).map(|a| a.label.as_str()).unwrap_or("-"),
            _ => "-",
        };
        let client = client_ip(session)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        crate::accesslog::write(&crate::accesslog::Entry {
            request_id: &ctx.request_id,
            listener: &self.listener.name,
            client: &client,
            method,
            host: Self::raw_host(session.req_header()).unwrap_or("-"),
            path: session.req_header().uri.path(),
            route,
            upstream,
            address,
            status,
            bytes_in: ctx.body_seen,
            bytes_out: session.body_bytes_sent(),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            attempts: ctx.tried.len(),
            problem: ctx.problem.unwrap_or("-"),
            error: e.map(|e| e.etype().as_str()).unwrap_or(""),
        });
    }
}
