//! Endpoints the gateway hosts itself under `/_auth/` on every customer host:
//! sign-in (chooser, per provider), the provider callback, sign-out (a page
//! and a CSRF-checked POST). Writes complete responses; never proxies.

use std::sync::Arc;

use bytes::Bytes;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::{Ctx, Gateway};
use crate::config::model::Provider;
use crate::login::{self, LoginError, Pending};
use crate::session::{self as sess, Session as Browser, COOKIE, LOGIN_COOKIE};

const TRY_LATER: &str = "Please try again in a moment.";

/// The first value of `key` in a query string.
fn query(q: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Every `Cookie` header joined (HTTP/2 may split them).
pub(super) fn cookie_header(session: &Session) -> Option<String> {
    let all: Vec<&str> = session
        .req_header()
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!all.is_empty()).then(|| all.join("; "))
}

impl Gateway {
    /// Writes a full response with optional extra headers (several `set-cookie` allowed).
    async fn write(
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

    async fn page(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        html: String,
    ) -> Result<()> {
        self.write(session, ctx, status, "text/html; charset=utf-8", html, &[])
            .await
    }

    async fn redirect(
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
        let raw_host = Self::raw_host(req).unwrap_or(host).to_string();
        let providers: Vec<&Provider> = snap.config.login_providers().collect();
        let get = method == http::Method::GET || method == http::Method::HEAD;
        match (get, path.as_str()) {
            (true, "/_auth/login") => {
                let return_to = login::safe_return_to(query(q.as_deref(), "return_to").as_deref());
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
            (true, p) if p.starts_with("/_auth/login/") => {
                let name = &p["/_auth/login/".len()..];
                let return_to = login::safe_return_to(query(q.as_deref(), "return_to").as_deref());
                self.start_login(session, ctx, &snap, name, &raw_host, return_to)
                    .await
            }
            (true, p) if p.starts_with("/_auth/callback/") => {
                let name = p["/_auth/callback/".len()..].to_string();
                self.finish_login(session, ctx, &snap, &name, &raw_host, q.as_deref())
                    .await
            }
            (true, "/_auth/logout") => {
                let current = self.current_session(session).await;
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
            (false, "/_auth/logout") if method == http::Method::POST => {
                self.logout(session, ctx).await
            }
            (false, p)
                if method == http::Method::POST && p.starts_with("/_auth/backchannel-logout/") =>
            {
                let name = p["/_auth/backchannel-logout/".len()..].to_string();
                self.backchannel_logout(session, ctx, &snap, &name).await
            }
            (true, "/_auth/signed-out") => {
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

    /// The live session of this browser, if any.
    pub(super) async fn current_session(&self, session: &Session) -> Option<Arc<Browser>> {
        let header = cookie_header(session)?;
        let id = sess::cookie(Some(&header), COOKIE)?;
        let s = self.app.sessions.get(&sess::hash_id(id)).await.ok()??;
        let snap = self.app.snapshot();
        s.live(now(), snap.config.sessions.idle_timeout.as_secs() as i64)
            .then_some(s)
    }

    async fn start_login(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &crate::state::Snapshot,
        name: &str,
        raw_host: &str,
        return_to: String,
    ) -> Result<()> {
        let found = snap
            .providers
            .iter()
            .find(|p| p.config.name == name && p.config.login.is_some());
        let (Some(provider), true) = (found, true) else {
            let html = self.app.pages.message(
                "Unknown sign-in method",
                "This sign-in method does not exist.",
                Some(("/_auth/login", "Choose another")),
            );
            return self.page(session, ctx, 404, html).await;
        };
        let Some(login) = &provider.config.login else {
            return Ok(());
        };
        let endpoint = match provider.discovery().await {
            Ok(d) => d.authorization_endpoint.clone(),
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "provider discovery failed");
                None
            }
        };
        let Some(endpoint) = endpoint else {
            let retry = format!("/_auth/login/{name}?return_to={}", enc(&return_to));
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
        };
        let url = login::authorize_url(
            &endpoint,
            login,
            &self.callback_uri(raw_host, name),
            &state,
            &pending.nonce,
            &login::pkce_challenge(&pending.verifier),
        );
        self.app
            .pending_logins
            .insert(state.clone(), Arc::new(pending))
            .await;
        self.redirect(
            session,
            ctx,
            &url,
            &[sess::set_cookie(LOGIN_COOKIE, &state, 600)],
        )
        .await
    }

    fn callback_uri(&self, raw_host: &str, provider: &str) -> String {
        let scheme = if self.listener.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{raw_host}/_auth/callback/{provider}")
    }

    async fn finish_login(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &crate::state::Snapshot,
        name: &str,
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
        let pending = if bound && !state.is_empty() {
            self.app.pending_logins.remove(&state).await
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
                let again = format!(
                    "/_auth/login?return_to={}",
                    enc(&pending
                        .map(|p| p.return_to.clone())
                        .unwrap_or_else(|| "/".into()))
                );
                let html = self.app.pages.message(
                    "Sign-in did not complete",
                    &e.to_string(),
                    Some((&again, "Sign in again")),
                );
                return self
                    .write(
                        session,
                        ctx,
                        400,
                        "text/html; charset=utf-8",
                        html,
                        &[("set-cookie", clear_login)],
                    )
                    .await;
            }
        };
        let customer = match self
            .app
            .auth
            .directory()
            .resolve(
                &crate::customers::ExternalId {
                    issuer: verified.issuer.clone(),
                    subject: verified.subject.clone(),
                },
                crate::customers::IdentityKind::Oidc,
                &crate::customers::Profile {
                    email: verified.email.clone(),
                    email_verified: verified.email_verified,
                    name: verified.name.clone(),
                },
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "customer directory unavailable during login");
                return self
                    .sign_in_unavailable(
                        session,
                        ctx,
                        name,
                        "unavailable",
                        TRY_LATER,
                        ("/", "Home"),
                    )
                    .await;
            }
        };
        // A new session id at every login: an old cookie (fixation) is dropped.
        if let Some(old) = self.current_session(session).await {
            let _ = self.app.sessions.delete(&old.id_hash).await;
        }
        let id = sess::new_token();
        let t = now();
        let absolute = snap.config.sessions.absolute_timeout.as_secs() as i64;
        let record = Browser {
            id_hash: sess::hash_id(&id),
            customer_id: customer.id,
            email: customer.email,
            email_verified: customer.email_verified,
            name: customer.name,
            provider: name.to_string(),
            csrf: sess::new_token(),
            created_at: t,
            last_seen: t,
            expires_at: t + absolute,
        };
        if let Err(e) = self.app.sessions.create(&record).await {
            tracing::error!(error = %e, "session store unavailable during login");
            return self
                .sign_in_unavailable(session, ctx, name, "unavailable", TRY_LATER, ("/", "Home"))
                .await;
        }
        self.app
            .metrics
            .logins
            .with_label_values(&[name, "success"])
            .inc();
        self.app.metrics.sessions_active.inc();
        let cookies = [sess::set_cookie(COOKIE, &id, absolute), clear_login];
        self.redirect(session, ctx, &pending.return_to, &cookies)
            .await
    }

    /// OIDC Back-Channel Logout: a provider's signed logout token ends the
    /// customer's sessions on every node. Answers 200, or 400 with JSON.
    async fn backchannel_logout(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &crate::state::Snapshot,
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
            let mut keys = match provider.current() {
                Some(k) => k,
                None => provider.refresh().await?,
            };
            if kid.as_deref().is_some_and(|k| keys.find(k).is_none()) {
                keys = provider.refresh().await?;
            }
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
            let subject = req
                .subject
                .ok_or("logout tokens naming only a sid are not supported; send sub")?;
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
                // Every session of the customer ends: more logout, never less.
                Some(c) => self
                    .app
                    .sessions
                    .delete_customer(&c.id)
                    .await
                    .map_err(|e| e.to_string()),
                None => Ok(0),
            }
        }
        .await;
        match outcome {
            Ok(ended) => {
                self.app.metrics.sessions_active.sub(ended as i64);
                tracing::info!(provider = name, ended, "back-channel logout");
                self.write(session, ctx, 200, "application/json", "{}".into(), &[])
                    .await
            }
            Err(why) => {
                tracing::warn!(provider = name, error = %why, "back-channel logout refused");
                let body =
                    serde_json::json!({"error": "invalid_request", "error_description": why})
                        .to_string();
                self.write(session, ctx, 400, "application/json", body, &[])
                    .await
            }
        }
    }

    async fn logout(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let current = self.current_session(session).await;
        let form = read_form(session).await?;
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let clear = sess::set_cookie(COOKIE, "", 0);
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
        let ended = if field("scope") == Some("everywhere") {
            self.app
                .sessions
                .delete_customer(&s.customer_id)
                .await
                .unwrap_or(0)
        } else {
            self.app
                .sessions
                .delete(&s.id_hash)
                .await
                .map(|_| 1)
                .unwrap_or(0)
        };
        self.app.metrics.sessions_active.sub(ended as i64);
        self.redirect(session, ctx, "/_auth/signed-out", &[clear])
            .await
    }
}

/// Reads an `application/x-www-form-urlencoded` body (at most 16 KiB).
async fn read_form(session: &mut Session) -> Result<Vec<(String, String)>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > 16 * 1024 {
            return Error::e_explain(ErrorType::HTTPStatus(413), "form too large");
        }
    }
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
