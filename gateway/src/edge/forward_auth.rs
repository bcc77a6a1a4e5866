//! Forward-auth: another proxy in front (nginx `auth_request`, Traefik
//! ForwardAuth, HAProxy, Envoy `ext_authz`) asks whether the request its
//! client sent may pass, and Omnigate answers with the same route policy
//! the proxy applies (`crate::gate`): 200 with the identity headers to copy
//! upstream, 401/403/503 as problems, or a redirect for a browser to sign in
//! or consent (401 with `Location` when the caller asks with
//! `?redirect=401`, as nginx must).
//! Answered only to configured trusted proxies.

use std::borrow::Cow;
use std::sync::Arc;

use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::route::{self, Match};
use super::{path, Ctx, Gateway};
use crate::gate::original::{self, Original};
use crate::gate::{Pass, Verdict};
use crate::problem::Problem;
use crate::state::Snapshot;

/// How a redirect reaches the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RedirectAs {
    /// Passed to the browser as it is (Traefik, Envoy).
    Itself,
    /// 401 with `Location`, which the caller turns into its own redirect.
    Unauthorized,
}

/// The endpoint's own parameters (none on the Envoy form, whose query is
/// the original's): `?redirect=401` from a caller that cannot follow one.
fn redirect_as(path: &str, query: Option<&str>) -> Result<RedirectAs, &'static str> {
    if path != original::PATH {
        return Ok(RedirectAs::Itself);
    }
    let mut mode = RedirectAs::Itself;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("redirect", "401") => mode = RedirectAs::Unauthorized,
            ("redirect", _) => return Err("`redirect` takes only `401`"),
            _ => return Err("forward-auth takes only the parameter `redirect=401`"),
        }
    }
    Ok(mode)
}

/// The original request's path and query with the path made canonical.
fn canonical(pq: &str, rules: &path::PathRules) -> Result<String, path::PathRefusal> {
    let (p, q) = match pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pq, None),
    };
    let p = match path::canonical(p, rules)? {
        Cow::Borrowed(p) => p.to_string(),
        Cow::Owned(p) => p,
    };
    Ok(match q {
        Some(q) => format!("{p}?{q}"),
        None => p,
    })
}

impl Gateway {
    /// Answers one forward-auth call.
    pub(super) async fn forward_auth(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Arc<Snapshot>,
    ) -> Result<()> {
        if !ctx.trusted_client {
            tracing::warn!(client = ?super::client_ip(session), "forward-auth call from an address outside trusted_proxies refused");
            return self
                .respond(session, ctx, Problem::UntrustedCaller, &[])
                .await;
        }
        let req = session.req_header();
        let read = original::read(
            &req.headers,
            &req.method,
            req.uri.path_and_query().map_or("/", |p| p.as_str()),
            self.listener.tls.is_some(),
        )
        .and_then(|o| {
            let mode = redirect_as(req.uri.path(), req.uri.query())?;
            Ok((o, mode))
        });
        let (mut asked, mode) = match read {
            Ok(v) => v,
            Err(why) => {
                return self
                    .respond(session, ctx, Problem::BadRequest(why), &[])
                    .await
            }
        };
        let Some(host) = route::normalize_host(&asked.host) else {
            let why = "the original host is malformed";
            return self
                .respond(session, ctx, Problem::BadRequest(why), &[])
                .await;
        };
        match canonical(&asked.path_and_query, &snap.config.requests.paths) {
            Ok(pq) => asked.path_and_query = pq,
            Err(refusal) => {
                return self
                    .respond(session, ctx, Problem::BadPath(refusal), &[])
                    .await
            }
        }
        ctx.here = url::Url::parse(&format!(
            "{}://{}{}",
            if asked.https { "https" } else { "http" },
            asked.host,
            asked.path_and_query
        ))
        .ok();
        ctx.original = Some(asked.clone());
        let verdict = self.decide(session, ctx, snap, &asked, &host).await;
        match verdict {
            Ok(Verdict::Pass(pass)) => self.allow(session, ctx, snap, pass).await,
            Ok(Verdict::Redirect { status, location }) => {
                self.redirect(session, ctx, snap, mode, status, &location)
                    .await
            }
            Ok(Verdict::Refuse { problem, headers }) => {
                self.respond(session, ctx, problem, &headers).await
            }
            Err(problem) => self.respond(session, ctx, problem, &[]).await,
        }
    }

    /// The route policy's verdict on the original request.
    async fn decide(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        snap: &Arc<Snapshot>,
        asked: &Original,
        host: &str,
    ) -> Result<Verdict, Problem> {
        let path = asked.path_and_query.split('?').next().unwrap_or("/");
        // The gateway's own pages (sign-in among them) are open to all.
        if crate::portal::owns(path) {
            return Ok(Verdict::Pass(Pass::default()));
        }
        let config = &snap.config;
        let i = match snap
            .router
            .find(&config.routes, host, path, asked.method.as_str())
        {
            Match::Route(i) => i,
            Match::MethodNotAllowed(_) => return Err(Problem::MethodNotAllowed),
            Match::NotFound => return Err(Problem::NotFound),
        };
        ctx.route = Some(i);
        ctx.kind = config.routes[i].kind;
        ctx.pool = snap.route_pools.get(i).cloned();
        let ask = crate::gate::Ask {
            method: &asked.method,
            host,
            path_and_query: &asked.path_and_query,
            headers: &session.req_header().headers,
        };
        Ok(crate::gate::check(&self.app, snap, i, &ask).await)
    }

    /// 200: what the upstream is to be told, as response headers.
    async fn allow(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        pass: Pass,
    ) -> Result<()> {
        let mut resp = ResponseHeader::build(200, Some(12))?;
        resp.insert_header("content-length", "0")?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let (Some(p), Some(pool)) = (&pass.principal, &ctx.pool) {
            let granted = pass.consents.as_deref();
            let told =
                crate::gate::identity::tell(&self.app, &snap.config, p, &pool.config, granted);
            let Some(told) = told else {
                return self.respond(session, ctx, Problem::Internal, &[]).await;
            };
            for (name, value) in told.headers {
                resp.insert_header(name, value)?;
            }
            if let Some(g) = &pass.previous_guest {
                resp.insert_header("x-previous-guest-id", g.as_str())?;
            }
        }
        if let Some((id, new)) = &pass.guest {
            resp.insert_header("x-guest-id", id.as_str())?;
            if let Some(value) = new {
                let cookie = crate::session::set_cookie(
                    crate::session::GUEST_COOKIE,
                    value,
                    crate::session::GUEST_MAX_AGE,
                );
                resp.insert_header("set-cookie", cookie)?;
            }
        }
        // The cookies the backend may see: never the gateway's own. The
        // caller sets them as the upstream request's `Cookie`.
        let cookies = crate::session::cookie_header(&session.req_header().headers);
        if let Some(kept) = cookies.and_then(|c| crate::session::without_own_cookies(&c)) {
            resp.insert_header("cookie", kept)?;
        }
        ctx.principal = pass.principal;
        ctx.local_status = Some(200);
        session.write_response_header(Box::new(resp), true).await
    }

    /// A browser sent to sign in or consent, on the original host.
    async fn redirect(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        mode: RedirectAs,
        status: u16,
        location: &str,
    ) -> Result<()> {
        let checked = crate::login::destination::checked(&snap.config, ctx.here.as_ref(), location);
        let Some(location) = checked else {
            tracing::warn!(request_id = %ctx.request_id, "forward-auth: the original host is not one sign-in serves");
            return self.respond(session, ctx, Problem::UnknownHost, &[]).await;
        };
        let status = match mode {
            RedirectAs::Itself => status,
            RedirectAs::Unauthorized => 401,
        };
        self.write_redirect(session, ctx, status, &location).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_401_is_a_redirect_mode() {
        let p = original::PATH;
        assert!(redirect_as(p, None) == Ok(RedirectAs::Itself));
        assert!(redirect_as(p, Some("redirect=401")) == Ok(RedirectAs::Unauthorized));
        assert!(redirect_as(p, Some("redirect=302")).is_err());
        assert!(redirect_as(p, Some("next=/")).is_err());
        // The Envoy form's query is the original request's.
        let envoy = format!("{p}/cart");
        assert!(redirect_as(&envoy, Some("redirect=401&x=1")) == Ok(RedirectAs::Itself));
    }
}
