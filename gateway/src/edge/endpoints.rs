//! Endpoints the gateway hosts itself under `/_auth/` on every customer host:
//! sign-in (chooser, per provider), the provider callback, the cross-domain
//! hop, sign-out (a page and a CSRF-checked POST, optionally at the provider
//! too) and OIDC back-channel logout. Writes complete responses; never proxies.
//!
//! With `sessions.auth_host`, every sign-in happens on that host. A host in
//! its cookie domain is sent back directly (the domain cookie is shared);
//! a host in another domain receives a single-use code, valid 30 s and only
//! for that host, and redeems it at `/_auth/hop` for a session of its own.

use std::sync::Arc;

use bytes::Bytes;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use url::Url;

use super::{Ctx, Gateway};
use crate::config::model::Provider;
use crate::login::{self, destination, LoginError, Pending};
use crate::session::{self as sess, Grant, Group, Session as Browser, LOGIN_COOKIE};
use crate::state::Snapshot;

const TRY_LATER: &str = "Please try again in a moment.";

/// The first value of `key` in a query string.
pub(super) fn query(q: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub(super) use crate::session::unix_now as now;

/// The `:port` part of a Host header value (empty without one).
fn port_part(raw_host: &str) -> &str {
    let host_end = if raw_host.starts_with('[') {
        raw_host.find(']').map_or(raw_host.len(), |i| i + 1)
    } else {
        raw_host.find(':').unwrap_or(raw_host.len())
    };
    let rest = &raw_host[host_end..];
    match rest.strip_prefix(':') {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => "",
    }
}

/// Store key of a pending sign-in (by its state) or a hop code.
pub(super) fn once_key(kind: &str, secret: &str) -> String {
    format!("{kind}:{}", sess::hash_id(secret))
}

/// Every `Cookie` header joined (HTTP/2 may split them); borrowed when
/// there is one, as from HTTP/1.1 clients.
pub(super) fn cookie_header(session: &Session) -> Option<std::borrow::Cow<'_, str>> {
    let mut all = session
        .req_header()
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let first = all.next()?;
    match all.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = format!("{first}; {second}");
            for more in all {
                joined.push_str("; ");
                joined.push_str(more);
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

impl Gateway {
    /// Writes a full response with optional extra headers (several `set-cookie` allowed).
    pub(super) async fn write(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        content_type: &str,
        body: String,
        headers: &[(&str, String)],
    ) -> Result<()> {
        ctx.local_status = Some(status);
        let body = Bytes::from(body);
        let mut resp = ResponseHeader::build(status, Some(8))?;
        resp.insert_header("content-type", content_type)?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        resp.insert_header("x-frame-options", "DENY")?;
        resp.insert_header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'")?;
        for (k, v) in headers {
            resp.append_header(k.to_string(), v.as_str())?;
        }
        self.add_hsts(&mut resp, ctx)?;
        let empty = body.is_empty();
        session.write_response_header(Box::new(resp), empty).await?;
        if !empty {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }

    /// 503 page when sign-in cannot complete for now; counts it per provider.
    async fn sign_in_unavailable(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        provider: &str,
        result: &str,
        message: &str,
        retry: (&str, &str),
    ) -> Result<()> {
        self.app
            .metrics
            .logins
            .with_label_values(&[provider, result])
            .inc();
        let html = self
            .app
            .pages
            .message("Sign-in is unavailable", message, Some(retry));
        self.page(session, ctx, 503, html).await
    }

    /// The address this request comes from (behind trusted proxies, the client's).
    pub(super) fn client(&self, session: &Session, snap: &Snapshot) -> Option<std::net::IpAddr> {
        super::forwarded::client_address(
            super::client_ip(session),
            session
                .req_header()
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok()),
            &snap.config.trusted_proxies,
        )
    }

    /// Answers 429 (a page, or JSON for machine callers) when this client is
    /// blocked on `scope` after repeated failures. True if it answered.
    pub(super) async fn throttled(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        scope: &str,
        json: bool,
    ) -> Result<bool> {
        let who = crate::throttle::address(self.client(session, snap));
        self.throttled_as(session, ctx, scope, &who, json).await
    }

    /// Like `throttled`, for any `who` (a client address or an account).
    pub(super) async fn throttled_as(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        scope: &str,
        who: &str,
        json: bool,
    ) -> Result<bool> {
        let Some(secs) = crate::throttle::retry_after(&*self.app.sessions, scope, who).await else {
            return Ok(false);
        };
        self.app.metrics.throttled.with_label_values(&[scope]).inc();
        let retry = [("retry-after", secs.to_string())];
        if json {
            let body = serde_json::json!({
                "error": "slow_down",
                "error_description": format!("too many failed attempts; retry in {secs} s"),
            })
            .to_string();
            self.write(session, ctx, 429, "application/json", body, &retry)
                .await?;
        } else {
            let html = self.app.pages.message(
                "Too many attempts",
                &format!("Please wait {secs} seconds before trying again."),
                Some(("/", "Home")),
            );
            self.write(session, ctx, 429, "text/html; charset=utf-8", html, &retry)
                .await?;
        }
        Ok(true)
    }

    /// Counts a failed attempt on `scope` from this client.
    pub(super) async fn count_failure(&self, session: &Session, snap: &Snapshot, scope: &str) {
        let who = crate::throttle::address(self.client(session, snap));
        crate::throttle::failed(&*self.app.sessions, scope, &who, &snap.config.abuse).await;
    }

    /// A store or the directory failed mid sign-in: logged, counted as
    /// `unavailable`, and a 503 page with a way to retry.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn dependency_down(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        provider: &str,
        what: &str,
        error: &(dyn std::fmt::Display + Sync),
        retry: (&str, &str),
    ) -> Result<()> {
        tracing::error!(error = %error, "{what}");
        self.sign_in_unavailable(session, ctx, provider, "unavailable", TRY_LATER, retry)
            .await
    }

    pub(super) async fn page(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        html: String,
    ) -> Result<()> {
        self.write(session, ctx, status, "text/html; charset=utf-8", html, &[])
            .await
    }

    /// A 303 to `location` (a path or URL on a configured host), checked
    /// on the URL the browser lands on: anything else goes to `/`.
    pub(super) async fn redirect(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        location: &str,
        cookies: &[String],
    ) -> Result<()> {
        let checked = self.checked_location(session, ctx, location);
        self.redirect_external(session, ctx, &checked, cookies)
            .await
    }

    /// The `Location` to emit for `candidate`: see `login::destination`.
    pub(super) fn checked_location(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        candidate: &str,
    ) -> String {
        let here = match ctx.here.clone() {
            Some(h) => Some(h),
            None => self.current_url(session),
        };
        let snap = ctx.snapshot.clone().unwrap_or_else(|| self.app.snapshot());
        let target = here
            .as_ref()
            .and_then(|h| Some((h, self.destination(&snap, h, candidate)?)));
        match target {
            Some((h, t)) => destination::location(h, &t),
            None => {
                tracing::warn!(request_id = %ctx.request_id, "redirect target outside the configured hosts refused");
                "/".to_string()
            }
        }
    }

    /// A 303 to a URL the configuration or a provider's discovery document
    /// names (authorization and sign-out endpoints): not a customer's input.
    pub(super) async fn redirect_external(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        location: &str,
        cookies: &[String],
    ) -> Result<()> {
        let mut headers = vec![("location", location.to_string())];
        headers.extend(cookies.iter().map(|c| ("set-cookie", c.clone())));
        self.write(session, ctx, 303, "text/plain", String::new(), &headers)
            .await
    }

    /// Answers `/_auth/…`. Always writes a response.
    pub(super) async fn auth_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        host: &str,
    ) -> Result<()> {
        let snap = ctx
            .snapshot
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no snapshot"))?;
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let q = req.uri.query().map(str::to_string);
        let method = req.method.clone();
        let raw_host = Self::raw_host(req).unwrap_or(host).to_ascii_lowercase();
        let get = method == http::Method::GET || method == http::Method::HEAD;
        let post = method == http::Method::POST;
        let here = ctx.here.clone();
        let return_to = || {
            self.return_to(
                &snap,
                here.as_ref(),
                query(q.as_deref(), "return_to").as_deref(),
            )
        };
        if self
            .accounts_endpoint(
                session,
                ctx,
                &snap,
                host,
                &raw_host,
                &path,
                q.as_deref(),
                get,
                post,
            )
            .await?
        {
            return Ok(());
        }
        match path.as_str() {
            "/_auth/login" if get => {
                let register_first = query(q.as_deref(), "register").is_some();
                self.login_entry(
                    session,
                    ctx,
                    &snap,
                    host,
                    &raw_host,
                    return_to(),
                    register_first,
                )
                .await
            }
            p if get && p.starts_with("/_auth/login/") => {
                let name = &p["/_auth/login/".len()..];
                if let Some((to, nonce)) =
                    self.auth_host_url(&snap, host, &raw_host, p, &return_to())
                {
                    return self.redirect(session, ctx, &to, &[nonce]).await;
                }
                let intent = if query(q.as_deref(), "prove").is_some() {
                    login::Intent::Prove
                } else {
                    login::Intent::SignIn
                };
                self.start_login(session, ctx, &snap, name, &raw_host, return_to(), intent)
                    .await
            }
            p if get && p.starts_with("/_auth/callback/") => {
                if self
                    .throttled(session, ctx, &snap, "callback", false)
                    .await?
                {
                    return Ok(());
                }
                let name = p["/_auth/callback/".len()..].to_string();
                self.finish_login(session, ctx, &snap, &name, host, &raw_host, q.as_deref())
                    .await
            }
            "/_auth/hop/begin" if get => self.begin_hop(session, ctx, &snap, q.as_deref()).await,
            "/_auth/hop" if get => {
                if self.throttled(session, ctx, &snap, "hop", false).await? {
                    return Ok(());
                }
                let code = query(q.as_deref(), "code").unwrap_or_default();
                self.redeem_hop(session, ctx, &snap, host, &raw_host, &code)
                    .await
            }
            "/_auth/logout" if get => {
                let current = self.current_session(session, &snap, host).await?;
                let html = match current {
                    Some(s) => self.app.pages.render(
                        "logout.html",
                        minijinja::context! { email => s.email.clone(), csrf => s.csrf.clone() },
                    ),
                    None => self.app.pages.message(
                        "You are signed out",
                        "You are not signed in on this browser.",
                        Some(("/", "Continue")),
                    ),
                };
                self.page(session, ctx, 200, html).await
            }
            "/_auth/logout" if post => self.logout(session, ctx, &snap, host, &raw_host).await,
            p if post && p.starts_with("/_auth/backchannel-logout/") => {
                if self
                    .throttled(session, ctx, &snap, "backchannel", true)
                    .await?
                {
                    return Ok(());
                }
                let name = p["/_auth/backchannel-logout/".len()..].to_string();
                self.backchannel_logout(session, ctx, &snap, &name).await
            }
            "/_auth/signed-out" if get => {
                let html = self.app.pages.message(
                    "You are signed out",
                    "You have been signed out.",
                    Some(("/", "Continue")),
                );
                self.page(session, ctx, 200, html).await
            }
            _ => {
                let html = self.app.pages.message(
                    "Page not found",
                    "There is nothing at this address.",
                    Some(("/", "Home")),
                );
                self.page(session, ctx, 404, html).await
            }
        }
    }

    pub(super) fn scheme(&self) -> &'static str {
        if self.listener.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The checked `return_to` of a sign-in, as the absolute URL the browser
    /// would land on (`/` when it would leave the configured hosts).
    pub(super) fn return_to(
        &self,
        snap: &Snapshot,
        here: Option<&Url>,
        raw: Option<&str>,
    ) -> String {
        let checked = here
            .zip(raw)
            .and_then(|(h, r)| self.destination(snap, h, r));
        checked.map_or_else(|| "/".to_string(), String::from)
    }

    /// The URL this request's browser is on (scheme, Host, path and query).
    pub(super) fn current_url(&self, session: &Session) -> Option<Url> {
        let req = session.req_header();
        let host = Self::raw_host(req)?;
        let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
        Url::parse(&format!("{}://{host}{pq}", self.scheme())).ok()
    }

    /// Where `candidate` sends a browser on `here`, if it stays on this
    /// host or a configured one, on a port the gateway is reached on.
    pub(super) fn destination(&self, snap: &Snapshot, here: &Url, candidate: &str) -> Option<Url> {
        let here_host = here.host_str()?.to_ascii_lowercase();
        let here_port = here.port_or_known_default()?;
        let config = &snap.config;
        destination::resolve(here, candidate, |h, p| {
            (h == here_host || config.known_host(h)) && (p == here_port || config.listener_port(p))
        })
    }

    /// With an auth host configured and this not being it: the same sign-in
    /// URL on the auth host, returning to this host, and the cookie that
    /// binds the code the auth host will send back to this browser.
    fn auth_host_url(
        &self,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
        path: &str,
        return_to: &str,
    ) -> Option<(String, String)> {
        let auth = snap.config.sessions.auth_host.as_deref()?;
        if auth == host {
            return None;
        }
        let back = if return_to.starts_with('/') {
            format!("{}://{raw_host}{return_to}", self.scheme())
        } else {
            return_to.to_string()
        };
        let (back, cookie) = with_hop_nonce(&back)?;
        Some((
            format!(
                "{}://{auth}{}{path}{}return_to={}",
                self.scheme(),
                port_part(raw_host),
                if path.contains('?') { '&' } else { '?' },
                enc(&back)
            ),
            cookie,
        ))
    }

    /// `/_auth/hop/begin?return_to=…&from=…`: this host binds the sign-in
    /// code it is about to receive to this browser, then sends the browser
    /// back to the host it signed in on (`from`) for the code.
    async fn begin_hop(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        q: Option<&str>,
    ) -> Result<()> {
        let here = ctx.here.clone();
        let back = self.return_to(snap, here.as_ref(), query(q, "return_to").as_deref());
        let on_this_host = url::Url::parse(&back)
            .ok()
            .zip(here.as_ref())
            .is_some_and(|(b, h)| b.origin() == h.origin());
        let from = query(q, "from").unwrap_or_default();
        let Some((back, cookie)) = with_hop_nonce(&back).filter(|_| on_this_host) else {
            return self.redirect(session, ctx, "/", &[]).await;
        };
        let to = format!(
            "{}/_auth/login?return_to={}",
            from.trim_end_matches('/'),
            enc(&back)
        );
        self.redirect(session, ctx, &to, &[cookie]).await
    }

    /// `/_auth/login`: to the auth host if there is one; straight on when
    /// already signed in here; else the provider (or a chooser).
    #[allow(clippy::too_many_arguments)]
    async fn login_entry(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
        return_to: String,
        register_first: bool,
    ) -> Result<()> {
        let path = if register_first {
            "/_auth/login?register=1"
        } else {
            "/_auth/login"
        };
        if let Some((to, nonce)) = self.auth_host_url(snap, host, raw_host, path, &return_to) {
            return self.redirect(session, ctx, &to, &[nonce]).await;
        }
        if let Some(s) = self.current_session(session, snap, host).await? {
            return self
                .continue_to(session, ctx, snap, host, &s, &return_to, Vec::new())
                .await;
        }
        if snap.config.accounts.passwords {
            let state = super::accounts::SigninState::default();
            return self
                .signin_page(
                    session,
                    ctx,
                    snap,
                    host,
                    200,
                    register_first,
                    &return_to,
                    &state,
                )
                .await;
        }
        let providers: Vec<&Provider> = snap.config.login_providers().collect();
        match providers.as_slice() {
            [] => {
                let html = self.app.pages.message(
                    "Sign-in is not available",
                    "No sign-in method is configured for this site.",
                    None,
                );
                self.page(session, ctx, 404, html).await
            }
            [one] => {
                let to = format!("/_auth/login/{}?return_to={}", one.name, enc(&return_to));
                self.redirect(session, ctx, &to, &[]).await
            }
            many => {
                let list: Vec<_> = many
                    .iter()
                    .map(|p| {
                        minijinja::context! { name => p.name, display_name => p.login.as_ref().map(|l| l.display_name.clone()) }
                    })
                    .collect();
                let html = self.app.pages.render(
                    "chooser.html",
                    minijinja::context! { providers => list, return_to },
                );
                self.page(session, ctx, 200, html).await
            }
        }
    }

    /// After sign-in (or when already signed in): to `return_to`. A URL on a
    /// host outside this host's cookie scope gets a single-use code for it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn continue_to(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        signed_in: &Browser,
        return_to: &str,
        cookies: Vec<String>,
    ) -> Result<()> {
        let parsed = url::Url::parse(return_to)
            .ok()
            .map(|u| sess::split_hop_param(&u));
        let Some((target, target_host, challenge)) = parsed.and_then(|(u, c)| {
            let h = u.host_str()?.to_ascii_lowercase();
            Some((u, h, c))
        }) else {
            // A path on this host.
            return self.redirect(session, ctx, return_to, &cookies).await;
        };
        let return_to = target.as_str();
        let domains = &snap.config.sessions.cookie_domains;
        let here = sess::cookie_domain(host, domains);
        let shared = target_host == host
            || (here.is_some() && sess::cookie_domain(&target_host, domains) == here);
        if shared {
            return self.redirect(session, ctx, return_to, &cookies).await;
        }
        let authority = match target.port() {
            Some(p) => format!("{target_host}:{p}"),
            None => target_host.clone(),
        };
        let Some(challenge) = challenge else {
            // That host has not bound this browser yet: it sets its nonce
            // first and sends the browser back here for the code.
            let from = ctx
                .here
                .as_ref()
                .map(|h| h.origin().ascii_serialization())
                .unwrap_or_default();
            let to = format!(
                "{}://{authority}/_auth/hop/begin?return_to={}&from={}",
                if self.listener.tls.is_some() {
                    "https"
                } else {
                    target.scheme()
                },
                enc(return_to),
                enc(&from)
            );
            return self.redirect(session, ctx, &to, &cookies).await;
        };
        let grant = Grant {
            challenge,
            host: authority.clone(),
            // The whole URL: redeemed, it is checked again where it lands.
            return_to: target.to_string(),
            source: signed_in.id_hash.clone(),
            expires_at: now() + sess::GRANT_TTL,
        };
        let code = sess::new_token();
        let stored = self
            .put_json_once("hop", &code, &grant, grant.expires_at)
            .await;
        if let Err(e) = stored {
            return self
                .dependency_down(
                    session,
                    ctx,
                    &signed_in.provider,
                    "session store unavailable for a cross-domain sign-in",
                    &e,
                    (return_to, "Try again"),
                )
                .await;
        }
        // The code travels over TLS whenever this sign-in did.
        let scheme = if self.listener.tls.is_some() {
            "https"
        } else {
            target.scheme()
        };
        let to = format!("{scheme}://{authority}/_auth/hop?code={code}");
        self.redirect(session, ctx, &to, &cookies).await
    }

    /// `/_auth/hop?code=…`: a single-use code from the auth host becomes a
    /// session of the same sign-in on this host.
    async fn redeem_hop(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
        code: &str,
    ) -> Result<()> {
        let taken = if code.is_empty() || code.len() > 64 {
            Ok(None)
        } else {
            self.take_json_once::<Grant>("hop", code).await
        };
        let grant = match taken {
            Ok(g) => g,
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        "-",
                        "session store unavailable during a cross-domain sign-in",
                        &e,
                        ("/", "Home"),
                    )
                    .await;
            }
        };
        let idle = snap.config.sessions.idle_timeout.as_secs() as i64;
        let t = now();
        let mut source = None;
        // The browser that asked for the code holds the nonce; another one
        // (a code pushed into a victim's browser) does not.
        let nonce = self.cookie_value(session, sess::HOP_COOKIE);
        let bound = |g: &Grant| {
            nonce
                .as_deref()
                .is_some_and(|n| sess::same_token(&sess::hop_challenge(n), &g.challenge))
        };
        if let Some(g) = grant
            .as_ref()
            .filter(|g| g.host == raw_host && g.expires_at >= t && bound(g))
        {
            // A store that cannot answer is a 503, not "sign in again".
            source = self
                .app
                .sessions
                .get(&g.source)
                .await?
                .filter(|s| s.live(t, idle));
        }
        let (Some(grant), Some(source)) = (grant, source) else {
            self.count_failure(session, snap, "hop").await;
            self.app
                .metrics
                .logins
                .with_label_values(&["-", "hop_refused"])
                .inc();
            let html = self.app.pages.message(
                "Sign-in did not complete",
                &LoginError::Expired.to_string(),
                Some(("/_auth/login", "Sign in again")),
            );
            return self.page(session, ctx, 400, html).await;
        };
        let (id, mut record) = new_session(&source, t, source.expires_at);
        record.converted_guest = None;
        if let Err(e) = self.app.sessions.create(&record).await {
            return self
                .dependency_down(
                    session,
                    ctx,
                    &source.provider,
                    "session store unavailable during a cross-domain sign-in",
                    &e,
                    ("/", "Home"),
                )
                .await;
        }
        self.app
            .metrics
            .logins
            .with_label_values(&[source.provider.as_str(), "hop_success"])
            .inc();
        let domain = sess::cookie_domain(host, &snap.config.sessions.cookie_domains);
        let cookie = sess::set_session_cookie(domain, &id, record.expires_at - t);
        let spent = sess::set_cookie(sess::HOP_COOKIE, "", 0);
        self.redirect(session, ctx, &grant.return_to, &[cookie, spent])
            .await
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
        session: &Session,
        snap: &Snapshot,
        host: &str,
    ) -> std::result::Result<Option<Arc<Browser>>, sess::StoreError> {
        let Some(header) = cookie_header(session) else {
            return Ok(None);
        };
        let domain = sess::cookie_domain(host, &snap.config.sessions.cookie_domains);
        let Some(id) = sess::cookie(Some(&header), sess::cookie_name(domain)) else {
            return Ok(None);
        };
        let Some(s) = self.app.sessions.get(&sess::hash_id(id)).await? else {
            return Ok(None);
        };
        Ok(
            s.live(now(), snap.config.sessions.idle_timeout.as_secs() as i64)
                .then_some(s),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start_login(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        name: &str,
        raw_host: &str,
        return_to: String,
        intent: login::Intent,
    ) -> Result<()> {
        let found = snap
            .providers
            .iter()
            .find(|p| p.config.name == name && p.config.login.is_some());
        let Some((provider, login)) = found.and_then(|p| Some((p, p.config.login.as_ref()?)))
        else {
            let html = self.app.pages.message(
                "Unknown sign-in method",
                "This sign-in method does not exist.",
                Some(("/_auth/login", "Choose another")),
            );
            return self.page(session, ctx, 404, html).await;
        };
        let endpoint = match provider.discovery().await {
            Ok(d) => d.authorization_endpoint.clone(),
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "provider discovery failed");
                None
            }
        };
        let retry = format!("/_auth/login/{name}?return_to={}", enc(&return_to));
        let Some(endpoint) = endpoint else {
            let message = LoginError::ProviderDown(String::new()).to_string();
            return self
                .sign_in_unavailable(
                    session,
                    ctx,
                    name,
                    "provider_down",
                    &message,
                    (&retry, "Try again"),
                )
                .await;
        };
        let state = sess::new_token();
        let pending = Pending {
            provider: name.to_string(),
            nonce: sess::new_token(),
            verifier: sess::new_token(),
            return_to,
            intent,
        };
        let url = login::authorize_url(
            &endpoint,
            login,
            &self.callback_uri(raw_host, name),
            &state,
            &pending.nonce,
            &login::pkce_challenge(&pending.verifier),
        );
        // Kept in the session store, so the callback may reach any node.
        let stored = self
            .put_json_once("login", &state, &pending, now() + LOGIN_TTL)
            .await;
        if let Err(e) = stored {
            return self
                .dependency_down(
                    session,
                    ctx,
                    name,
                    "session store unavailable when starting a sign-in",
                    &e,
                    (&retry, "Try again"),
                )
                .await;
        }
        self.redirect_external(
            session,
            ctx,
            &url,
            &[sess::set_cookie(LOGIN_COOKIE, &state, LOGIN_TTL)],
        )
        .await
    }

    fn callback_uri(&self, raw_host: &str, provider: &str) -> String {
        format!("{}://{raw_host}/_auth/callback/{provider}", self.scheme())
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_login(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        name: &str,
        host: &str,
        raw_host: &str,
        q: Option<&str>,
    ) -> Result<()> {
        let clear_login = sess::set_cookie(LOGIN_COOKIE, "", 0);
        let state = query(q, "state").unwrap_or_default();
        let bound = cookie_header(session)
            .as_deref()
            .and_then(|h| sess::cookie(Some(h), LOGIN_COOKIE).map(str::to_string))
            .is_some_and(|c| sess::same_token(&c, &state));
        // Single use: taken out whatever happens next.
        let pending = if bound && !state.is_empty() && state.len() <= 64 {
            match self.take_json_once::<Pending>("login", &state).await {
                Ok(p) => p,
                Err(e) => {
                    return self
                        .dependency_down(
                            session,
                            ctx,
                            name,
                            "session store unavailable during login",
                            &e,
                            ("/", "Home"),
                        )
                        .await;
                }
            }
        } else {
            None
        };
        let provider = snap
            .providers
            .iter()
            .find(|p| p.config.name == name)
            .cloned();
        let outcome = match (pending, &provider) {
            (Some(p), Some(prov)) if p.provider == name => {
                if let Some(err) = query(q, "error") {
                    Err((LoginError::Refused(err), Some(p)))
                } else {
                    let code = query(q, "code").unwrap_or_default();
                    match &prov.config.login {
                        Some(l) => {
                            login::complete(prov, l, &code, &self.callback_uri(raw_host, name), &p)
                                .await
                                .map(|v| (v, p.clone()))
                                .map_err(|e| (e, Some(p)))
                        }
                        None => Err((LoginError::Expired, Some(p))),
                    }
                }
            }
            _ => Err((LoginError::Expired, None)),
        };
        let (verified, pending) = match outcome {
            Ok(v) => v,
            Err((e, pending)) => {
                let result = match e {
                    LoginError::ProviderDown(_) => "provider_down",
                    LoginError::Refused(_) => "refused",
                    LoginError::Expired => "expired",
                    LoginError::Invalid(_) => "invalid",
                };
                self.app
                    .metrics
                    .logins
                    .with_label_values(&[name, result])
                    .inc();
                tracing::warn!(provider = name, result, detail = e.detail(), "login failed");
                // A provider that is down is nobody's failure: a 503, not counted.
                let down = matches!(e, LoginError::ProviderDown(_));
                if !down {
                    self.count_failure(session, snap, "callback").await;
                }
                let again = format!(
                    "/_auth/login?return_to={}",
                    enc(&pending
                        .map(|p| p.return_to.clone())
                        .unwrap_or_else(|| "/".into()))
                );
                let (title, status, link) = if down {
                    ("Sign-in is unavailable", 503, "Try again")
                } else {
                    ("Sign-in did not complete", 400, "Sign in again")
                };
                let html = self
                    .app
                    .pages
                    .message(title, &e.to_string(), Some((&again, link)));
                let mut headers = vec![("set-cookie", clear_login)];
                if down {
                    headers.push(("retry-after", "5".to_string()));
                }
                return self
                    .write(
                        session,
                        ctx,
                        status,
                        "text/html; charset=utf-8",
                        html,
                        &headers,
                    )
                    .await;
            }
        };
        let found = crate::customers::ExternalId {
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
        };
        let profile = crate::customers::Profile {
            email: verified.email.clone(),
            email_verified: verified.email_verified,
            name: verified.name.clone(),
        };
        let customer = match self
            .customer_for_login(
                session,
                ctx,
                snap,
                host,
                name,
                &found,
                &profile,
                &pending,
                &clear_login,
            )
            .await?
        {
            Some(c) => c,
            // Answered already (linked, proof asked, refused, or a failure page).
            None => return Ok(()),
        };
        self.sign_in(
            session,
            ctx,
            snap,
            host,
            customer,
            name,
            verified.sid.clone(),
            &pending.return_to,
            vec![clear_login],
        )
        .await
    }

    /// Starts a session for `customer` (signed in with `method`: a provider
    /// name or `password`) and continues to `return_to`. A disabled customer
    /// gets a 403 page instead. A guest id in this browser is handed over.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sign_in(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        customer: crate::customers::Customer,
        method: &str,
        provider_sid: Option<String>,
        return_to: &str,
        mut cookies: Vec<String>,
    ) -> Result<()> {
        let name = method;
        if customer.status != crate::customers::ACTIVE {
            self.app
                .metrics
                .logins
                .with_label_values(&[name, "disabled"])
                .inc();
            let html = self.app.pages.message(
                "This account is disabled",
                "Signing in to this account is not possible. Please contact customer service.",
                Some(("/", "Home")),
            );
            let headers: Vec<(&str, String)> =
                cookies.into_iter().map(|c| ("set-cookie", c)).collect();
            return self
                .write(
                    session,
                    ctx,
                    403,
                    "text/html; charset=utf-8",
                    html,
                    &headers,
                )
                .await;
        }
        // The session carries the granted purposes, so routes check them locally.
        let mut return_to = return_to.to_string();
        let consents = match self
            .app
            .auth
            .directory()
            .consent_records(&customer.id)
            .await
        {
            Ok(records) => {
                // First sign-in with a provider: every purpose is asked
                // before going on (registration with a password asks on its form).
                if records.is_empty() && method != "password" && !snap.config.purposes.is_empty() {
                    let ids: Vec<&str> =
                        snap.config.purposes.iter().map(|p| p.id.as_str()).collect();
                    return_to = format!(
                        "/_account/consent?first=1&ask={}&return_to={}",
                        enc(&ids.join(",")),
                        enc(&return_to)
                    );
                }
                crate::consent::granted(&records)
            }
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        name,
                        "customer directory unavailable for consents at sign-in",
                        &e,
                        ("/", "Home"),
                    )
                    .await;
            }
        };
        // A new session id at every login: an old cookie (fixation) is dropped.
        if let Some(old) = self.current_session(session, snap, host).await? {
            let _ = self.app.sessions.delete(&old.id_hash).await;
        }
        let t = now();
        let absolute = snap.config.sessions.absolute_timeout.as_secs() as i64;
        // A guest who signs in (say, at checkout) hands over the guest id, so
        // the backend can merge the cart into the customer's.
        let guest = cookie_header(session)
            .as_deref()
            .and_then(|h| sess::cookie(Some(h), sess::GUEST_COOKIE))
            .and_then(|g| sess::guest_from_cookie(g, &self.app.guest_key))
            .map(str::to_string);
        let first = Browser {
            id_hash: String::new(),
            customer_id: customer.id,
            email: customer.email,
            email_verified: customer.email_verified,
            name: customer.name,
            provider: name.to_string(),
            csrf: String::new(),
            created_at: t,
            last_seen: t,
            expires_at: t + absolute,
            login_id: sess::new_token(),
            provider_sid,
            converted_guest: guest.clone(),
            device: device_of(session),
            consents,
        };
        let (id, record) = new_session(&first, t, t + absolute);
        if let Err(e) = self.app.sessions.create(&record).await {
            return self
                .dependency_down(
                    session,
                    ctx,
                    name,
                    "session store unavailable during login",
                    &e,
                    ("/", "Home"),
                )
                .await;
        }
        self.app
            .metrics
            .logins
            .with_label_values(&[name, "success"])
            .inc();
        let domain = sess::cookie_domain(host, &snap.config.sessions.cookie_domains);
        cookies.insert(0, sess::set_session_cookie(domain, &id, absolute));
        if let Some(g) = &guest {
            let data = serde_json::json!({ "customer_id": record.customer_id, "guest_id": g });
            crate::events::emit(
                &**self.app.auth.directory(),
                "identity.guest_converted",
                data,
            )
            .await;
            // The guest id is spent; signing out later starts a new one.
            cookies.push(sess::set_cookie(sess::GUEST_COOKIE, "", 0));
        }
        self.continue_to(session, ctx, snap, host, &record, &return_to, cookies)
            .await
    }

    /// OIDC Back-Channel Logout: a provider's signed logout token ends, on
    /// every node, the sessions of the provider session it names (`sid`), or
    /// else every session of the customer (`sub`). Answers 200, or 400 with JSON.
    async fn backchannel_logout(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        name: &str,
    ) -> Result<()> {
        let form = read_form(session).await?;
        let token = form
            .iter()
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.clone());
        let provider = snap
            .providers
            .iter()
            .find(|p| p.config.name == name)
            .cloned();
        let outcome: std::result::Result<u64, String> = async {
            let provider = provider.ok_or("unknown provider")?;
            let login = provider
                .config
                .login
                .clone()
                .ok_or("provider has no login")?;
            let token = token.ok_or("missing logout_token")?;
            let kid = crate::auth::token::key_id(&token).map_err(|e| e.to_string())?;
            let keys = provider.keys_for(kid.as_deref()).await?;
            let req = login::verify_logout_token(
                &token,
                &keys,
                &provider.config.issuer,
                &login.client_id,
            )
            .map_err(|e| e.to_string())?;
            if self.app.seen_logout_tokens.get(&req.jti).await.is_some() {
                return Err("logout token replayed".to_string());
            }
            self.app
                .seen_logout_tokens
                .insert(req.jti.clone(), ())
                .await;
            if let Some(sid) = &req.sid {
                let ended = self
                    .app
                    .sessions
                    .end(Group::ProviderSession {
                        provider: name,
                        sid,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                self.session_ended(None, "provider_logout", ended).await;
                return Ok(ended);
            }
            let Some(subject) = req.subject else {
                return Err("logout token names no sid and no sub".to_string());
            };
            let customer = self
                .app
                .auth
                .directory()
                .lookup(&crate::customers::ExternalId {
                    issuer: req.issuer,
                    subject,
                })
                .await
                .map_err(|e| e.to_string())?;
            match customer {
                Some(c) => {
                    let ended = self
                        .app
                        .sessions
                        .end(Group::Customer(&c.id))
                        .await
                        .map_err(|e| e.to_string())?;
                    self.session_ended(Some(&c.id), "provider_logout", ended)
                        .await;
                    Ok(ended)
                }
                None => Ok(0),
            }
        }
        .await;
        match outcome {
            Ok(ended) => {
                tracing::info!(provider = name, ended, "back-channel logout");
                self.write(session, ctx, 200, "application/json", "{}".into(), &[])
                    .await
            }
            Err(why) => {
                tracing::warn!(provider = name, error = %why, "back-channel logout refused");
                self.count_failure(session, snap, "backchannel").await;
                let body =
                    serde_json::json!({"error": "invalid_request", "error_description": why})
                        .to_string();
                self.write(session, ctx, 400, "application/json", body, &[])
                    .await
            }
        }
    }

    /// `POST /_auth/logout`: ends this sign-in on every host it reached (or,
    /// with `scope=everywhere`, every session of the customer), clears the
    /// cookie, and, if configured, signs out at the provider too.
    async fn logout(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
    ) -> Result<()> {
        let current = self.current_session(session, snap, host).await?;
        let form = read_form(session).await?;
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let domain = sess::cookie_domain(host, &snap.config.sessions.cookie_domains);
        let clear = sess::set_session_cookie(domain, "", 0);
        let Some(s) = current else {
            return self
                .redirect(session, ctx, "/_auth/signed-out", &[clear])
                .await;
        };
        if !field("csrf").is_some_and(|t| sess::same_token(t, &s.csrf)) {
            let html = self.app.pages.message(
                "Sign-out was not confirmed",
                "The form had expired. Please use the sign-out button again.",
                Some(("/_auth/logout", "Sign out")),
            );
            return self.page(session, ctx, 403, html).await;
        }
        let (group, reason) = if field("scope") == Some("everywhere") {
            (Group::Customer(&s.customer_id), "logout_everywhere")
        } else {
            (Group::Login(&s.login_id), "logout")
        };
        let ended = self.app.sessions.end(group).await;
        if let Ok(n) = &ended {
            self.session_ended(Some(&s.customer_id), reason, *n).await;
        }
        if let Err(e) = ended {
            tracing::error!(error = %e, "session store unavailable during sign-out");
            let html = self.app.pages.message(
                "Sign-out did not complete",
                "Your session could not be ended just now. Please try again in a moment.",
                Some(("/_auth/logout", "Sign out")),
            );
            return self.page(session, ctx, 503, html).await;
        }
        match self.provider_logout_url(snap, &s.provider, raw_host).await {
            Some(to) => self.redirect_external(session, ctx, &to, &[clear]).await,
            None => {
                self.redirect(session, ctx, "/_auth/signed-out", &[clear])
                    .await
            }
        }
    }

    pub(super) async fn session_ended(&self, customer_id: Option<&str>, reason: &str, ended: u64) {
        crate::events::session_ended(&**self.app.auth.directory(), customer_id, reason, ended)
            .await;
    }

    /// RP-initiated logout: the provider's `end_session_endpoint`, coming back
    /// to the signed-out page (on the auth host, if there is one).
    async fn provider_logout_url(
        &self,
        snap: &Snapshot,
        provider: &str,
        raw_host: &str,
    ) -> Option<String> {
        let p = snap.providers.iter().find(|p| p.config.name == provider)?;
        let login = p.config.login.as_ref().filter(|l| l.logout_at_provider)?;
        let endpoint = match p.discovery().await {
            Ok(d) => d.end_session_endpoint.clone()?,
            Err(e) => {
                // The local sign-out is done; the provider's can wait.
                tracing::warn!(provider, error = %e, "provider unreachable for sign-out");
                return None;
            }
        };
        let back_host = match &snap.config.sessions.auth_host {
            Some(a) => format!("{a}{}", port_part(raw_host)),
            None => raw_host.to_string(),
        };
        let back = format!("{}://{back_host}/_auth/signed-out", self.scheme());
        let mut url = url::Url::parse(&endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &login.client_id)
            .append_pair("post_logout_redirect_uri", &back);
        Some(url.to_string())
    }
}

/// How long a started sign-in waits for the provider's callback.
const LOGIN_TTL: i64 = 600;

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

/// The device name of this request's browser.
pub(super) fn device_of(session: &Session) -> Option<String> {
    let ua = session
        .req_header()
        .headers
        .get(http::header::USER_AGENT)?
        .to_str()
        .ok()?;
    Some(sess::device(ua))
}

/// Reads an `application/x-www-form-urlencoded` body (at most 16 KiB).
pub(super) async fn read_form(session: &mut Session) -> Result<Vec<(String, String)>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > 16 * 1024 {
            return Error::e_explain(ErrorType::HTTPStatus(413), "form too large");
        }
    }
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// `url` with a new hop nonce's challenge added, and the cookie holding the nonce.
fn with_hop_nonce(url: &str) -> Option<(String, String)> {
    let (mut u, _) = sess::split_hop_param(&url::Url::parse(url).ok()?);
    let nonce = sess::new_token();
    u.query_pairs_mut()
        .append_pair(sess::HOP_PARAM, &sess::hop_challenge(&nonce));
    let cookie = sess::set_cookie(sess::HOP_COOKIE, &nonce, sess::HOP_NONCE_TTL);
    Some((u.to_string(), cookie))
}

pub(super) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::port_part;

    #[test]
    fn the_port_of_a_host_header() {
        assert_eq!(port_part("shop.test:8443"), ":8443");
        assert_eq!(port_part("shop.test"), "");
        assert_eq!(port_part("[::1]:8443"), ":8443");
        assert_eq!(port_part("[::1]"), "");
        assert_eq!(port_part("shop.test:"), "");
        assert_eq!(port_part("shop.test:x"), "");
    }
}
