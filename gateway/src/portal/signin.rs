//! Sign-in: the entry (`/_auth/login`: chooser or the sign-in page), a
//! provider's code flow with PKCE (`/_auth/login/{provider}`, the callback),
//! password sign-in, and turning a verified identity into a session.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::PasswordsOn;
use super::hop::with_hop_nonce;
use super::prove::Proof;
use super::request::Query;
use super::respond::*;
use super::*;
use crate::accounts::mail::Kind;
use crate::accounts::{self, password};
use crate::config::model::Provider;
use crate::customers::{Customer, ExternalId, Link, Profile};
use crate::login::{self, Intent, LoginError, Pending};
use crate::session::{self as sess, Session as Browser, LOGIN_COOKIE};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_auth/login", get(entry))
        .route("/_auth/login/password", post(password))
        .route("/_auth/login/{name}", get(provider))
        .route("/_auth/callback/{name}", get(callback).post(callback_post))
}

#[derive(Deserialize)]
struct EntryQuery {
    return_to: Option<String>,
    register: Option<String>,
    prove: Option<String>,
}

async fn entry(
    State(p): State<Arc<Portal>>,
    Query(q): Query<EntryQuery>,
    rq: Req,
) -> Result<Response> {
    let return_to = p.return_to(&rq.snap, rq.conn.here.as_ref(), q.return_to.as_deref());
    let (snap, host, raw_host) = (&rq.snap, &rq.conn.host, rq.raw_host());
    p.login_entry(&rq, snap, host, &raw_host, return_to, q.register.is_some())
        .await
}

async fn provider(
    State(p): State<Arc<Portal>>,
    Path(name): Path<String>,
    Query(q): Query<EntryQuery>,
    rq: Req,
) -> Result<Response> {
    let return_to = p.return_to(&rq.snap, rq.conn.here.as_ref(), q.return_to.as_deref());
    let (snap, host, raw_host) = (&rq.snap, &rq.conn.host, rq.raw_host());
    let path = rq.head.uri.path();
    if let Some((to, nonce)) = p.auth_host_url(&rq, snap, host, &raw_host, path, &return_to) {
        return p.redirect(&rq, &to, &[nonce]).await;
    }
    let intent = if q.prove.is_some() {
        login::Intent::Prove
    } else {
        login::Intent::SignIn
    };
    p.start_login(&rq, snap, &name, &raw_host, return_to, intent)
        .await
}

async fn password(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    sub: Submitted<PasswordSignIn>,
) -> Result<Response> {
    p.password_login(&sub, &sub.rq.snap, &sub.rq.conn.host)
        .await
}

async fn callback(
    State(p): State<Arc<Portal>>,
    Path(name): Path<String>,
    rq: Req,
) -> Result<Response> {
    let q = rq.head.uri.query();
    let sent = Answered {
        state: query(q, "state").unwrap_or_default(),
        code: query(q, "code").unwrap_or_default(),
        error: query(q, "error"),
        user: None,
    };
    let (snap, host, raw_host) = (&rq.snap, &rq.conn.host, rq.raw_host());
    p.finish_login(&rq, snap, &name, host, &raw_host, sent)
        .await
}

/// `POST /_auth/callback/{name}`: a provider that answers with
/// `response_mode=form_post` (Sign in with Apple) posts here from its own
/// site. Only such a provider's callback takes a POST; `state` and the
/// browser's login cookie bind it to the sign-in this browser started.
async fn callback_post(
    State(p): State<Arc<Portal>>,
    Path(name): Path<String>,
    rq: Req,
) -> Result<Response> {
    if !posts_answers(&rq.snap, &name) {
        return Err(Failure::NotFound);
    }
    let f = rq.form();
    let field = |k: &str| f.get(k).to_string();
    let sent = Answered {
        state: field("state"),
        code: field("code"),
        error: Some(field("error")).filter(|e| !e.is_empty()),
        user: Some(field("user")).filter(|u| !u.is_empty()),
    };
    let (snap, host, raw_host) = (&rq.snap, &rq.conn.host, rq.raw_host());
    p.finish_login(&rq, snap, &name, host, &raw_host, sent)
        .await
}

/// Whether the provider `name` posts its answers to the callback.
pub(super) fn posts_answers(snap: &Snapshot, name: &str) -> bool {
    snap.config
        .providers
        .iter()
        .any(|p| p.name == name && p.login.as_ref().is_some_and(|l| l.form_post))
}

/// What a provider sent back to the callback.
pub(super) struct Answered {
    state: String,
    code: String,
    error: Option<String>,
    user: Option<String>,
}

/// The cookie that binds a started sign-in to this browser. A provider that
/// posts its answer from its own site needs it sent on that cross-site POST
/// (`SameSite=None`; `state` and this cookie together stop login CSRF).
fn login_cookie(login: &crate::config::model::Login, value: &str, max_age: i64) -> String {
    let same_site = if login.form_post {
        sess::SameSite::None
    } else {
        sess::SameSite::Lax
    };
    sess::set_cookie_for(LOGIN_COOKIE, value, max_age, same_site)
}

/// The `:port` part of a Host header value (empty without one).
pub(super) fn port_part(raw_host: &str) -> &str {
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

/// A provider's button on the sign-in page: its name, and its shipped logo.
fn button(p: &Provider) -> Value {
    let login = p.login.as_ref();
    json!({
        "name": p.name,
        "display_name": login.map(|l| l.display_name.clone()),
        "logo": login.and_then(|l| l.logo.clone()),
    })
}

/// How long a started sign-in waits for the provider's callback.
pub(super) const LOGIN_TTL: i64 = 600;

/// What the sign-in page shows besides its forms.
#[derive(Debug, Default)]
pub(super) struct SigninState {
    pub login_email: String,
    pub login_errors: Errors,
    pub register_email: String,
    pub register_name: String,
    /// The purposes ticked (`id:version`), kept when the form comes back.
    pub register_ticked: Vec<String>,
    pub register_errors: Errors,
    /// An error of the whole form (expired CSRF token).
    pub form_error: Option<String>,
    pub notice: Option<String>,
}

/// A form sent from a page that may be signed out (sign-in, registration,
/// reset), read as `T`, with whether it carries this browser's CSRF token (the session's, or the double-submit
/// cookie's): checked here, once; the handler answers a stale form on its
/// own page, with what was typed.
pub(super) struct Submitted<T> {
    pub rq: Req,
    pub form: T,
    pub fresh: bool,
}

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<Arc<Portal>>
    for Submitted<T>
{
    type Rejection = Failure;

    async fn from_request(
        req: axum::extract::Request,
        p: &Arc<Portal>,
    ) -> std::result::Result<Self, Failure> {
        let rq = Req::from_request(req, p).await?;
        let form = rq.form_as::<T>()?;
        let current = p.current_session(&rq, &rq.snap, &rq.conn.host).await?;
        let fresh = p.form_ok(&rq, current.as_deref(), rq.form().get("csrf"));
        Ok(Submitted { rq, form, fresh })
    }
}

/// `POST /_auth/login/password`.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct PasswordSignIn {
    email: String,
    password: String,
    return_to: String,
}

impl Portal {
    /// `/_auth/login`: to the auth host if there is one; straight on when
    /// already signed in here; else the provider (or a chooser).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn login_entry(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
        return_to: String,
        register_first: bool,
    ) -> Result<Response> {
        let path = if register_first {
            "/_auth/login?register=1"
        } else {
            "/_auth/login"
        };
        if let Some((to, nonce)) = self.auth_host_url(rq, snap, host, raw_host, path, &return_to) {
            return self.redirect(rq, &to, &[nonce]).await;
        }
        if let Some(s) = self.current_session(rq, snap, host).await? {
            return self
                .continue_to(rq, snap, host, &s, &return_to, Vec::new())
                .await;
        }
        if snap.config.accounts.passwords {
            let state = SigninState::default();
            return self
                .signin_page(rq, snap, host, 200, register_first, &return_to, &state)
                .await;
        }
        let providers: Vec<&Provider> = snap.config.login_providers().collect();
        match providers.as_slice() {
            [] => {
                let html = self.msg(rq, "message.no_method", None);
                self.page(rq, 404, html).await
            }
            [one] => {
                let to = format!("/_auth/login/{}?return_to={}", one.name, enc(&return_to));
                self.redirect(rq, &to, &[]).await
            }
            many => {
                let list: Vec<Value> = many.iter().map(|p| button(p)).collect();
                let html = self.render(
                    rq,
                    "chooser.html",
                    minijinja::context! { providers => list, return_to },
                );
                self.page(rq, 200, html).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start_login(
        &self,
        rq: &Req,
        snap: &Snapshot,
        name: &str,
        raw_host: &str,
        return_to: String,
        intent: login::Intent,
    ) -> Result<Response> {
        let found = snap
            .providers
            .iter()
            .find(|p| p.config.name == name && p.config.login.is_some());
        let Some((provider, login)) = found.and_then(|p| Some((p, p.config.login.as_ref()?)))
        else {
            let html = self.msg(
                rq,
                "message.unknown_method",
                Some(("/_auth/login", "message.unknown_method.link")),
            );
            return self.page(rq, 404, html).await;
        };
        let endpoint = match login::endpoints(provider, login).await {
            Ok(e) => Some(e.authorization),
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "provider discovery failed");
                None
            }
        };
        let retry = format!("/_auth/login/{name}?return_to={}", enc(&return_to));
        let Some(endpoint) = endpoint else {
            let message = self.tr(rq, LoginError::ProviderDown(String::new()).text_key());
            return self
                .sign_in_unavailable(
                    rq,
                    name,
                    "provider_down",
                    &message,
                    (&retry, "common.try_again"),
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
        let redirect_uri = self.callback_uri(rq, raw_host, name);
        let url = login::authorize_url(
            &login::Authorize {
                endpoint: &endpoint,
                redirect_uri: &redirect_uri,
                state: &state,
                nonce: &pending.nonce,
                verifier: &pending.verifier,
            },
            login,
        );
        // Kept in the session store, so the callback may reach any node.
        let stored = self
            .put_json_once("login", &state, &pending, now() + LOGIN_TTL)
            .await;
        if let Err(e) = stored {
            return self
                .dependency_down(
                    rq,
                    name,
                    "session store unavailable when starting a sign-in",
                    &e,
                    (&retry, "common.try_again"),
                )
                .await;
        }
        let cookie = login_cookie(login, &state, LOGIN_TTL);
        self.redirect_external(rq, &url, &[cookie]).await
    }

    pub(super) fn callback_uri(&self, rq: &Req, raw_host: &str, provider: &str) -> String {
        format!("{}://{raw_host}/_auth/callback/{provider}", rq.scheme())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish_login(
        &self,
        rq: &Req,
        snap: &Snapshot,
        name: &str,
        host: &str,
        raw_host: &str,
        sent: Answered,
    ) -> Result<Response> {
        let clear_login = sess::set_cookie(LOGIN_COOKIE, "", 0);
        let state = sent.state.clone();
        let bound = rq
            .cookies()
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
                            rq,
                            name,
                            "session store unavailable during login",
                            &e,
                            ("/", "common.home"),
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
                if let Some(err) = sent.error {
                    Err((LoginError::Refused(err), Some(p)))
                } else {
                    let answer = login::Callback {
                        code: sent.code,
                        user: sent.user,
                    };
                    match &prov.config.login {
                        Some(l) => login::complete(
                            prov,
                            l,
                            &answer,
                            &self.callback_uri(rq, raw_host, name),
                            &p,
                        )
                        .await
                        .map(|v| (v, p.clone()))
                        .map_err(|e| (e, Some(p))),
                        None => Err((LoginError::Expired, Some(p))),
                    }
                }
            }
            _ => Err((LoginError::Expired, None)),
        };
        let (verified, pending) = match outcome {
            Ok(v) => v,
            Err((e, pending)) => {
                return self
                    .login_failed(rq, snap, name, e, pending, clear_login)
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
                rq,
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
            Ok(c) => c,
            // Answered already (linked, proof asked, refused, or a failure page).
            Err(answer) => return Ok(answer),
        };
        self.sign_in(
            rq,
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

    /// A provider sign-in that did not complete: counted, logged, and a page
    /// to try again (503 without counting a failure when the provider is down).
    async fn login_failed(
        &self,
        rq: &Req,
        snap: &Snapshot,
        name: &str,
        e: LoginError,
        pending: Option<Pending>,
        clear_login: String,
    ) -> Result<Response> {
        let result = match e {
            LoginError::ProviderDown(_) => "provider_down",
            LoginError::Refused(_) => "refused",
            LoginError::Expired => "expired",
            LoginError::Invalid(_) => "invalid",
        };
        self.count_login(name, result);
        tracing::warn!(provider = name, result, detail = e.detail(), "login failed");
        // A provider that is down is nobody's failure: a 503, not counted.
        let down = matches!(e, LoginError::ProviderDown(_));
        if !down {
            self.count_failure(rq, snap, "callback").await;
        }
        let again = format!(
            "/_auth/login?return_to={}",
            enc(&pending
                .map(|p| p.return_to.clone())
                .unwrap_or_else(|| "/".into()))
        );
        let (title, status, link) = if down {
            ("message.unavailable", 503, "common.try_again")
        } else {
            ("message.not_completed", 400, "common.sign_in_again")
        };
        let body = self.tr(rq, e.text_key());
        let html = self.msg_with(rq, title, &body, Some((&again, link)));
        let mut headers = vec![("set-cookie", clear_login)];
        if down {
            headers.push(("retry-after", "5".to_string()));
        }
        self.write(rq, status, "text/html; charset=utf-8", html, &headers)
            .await
    }

    /// Starts a session for `customer` (signed in with `method`: a provider
    /// name or `password`) and continues to `return_to`. A disabled customer
    /// gets a 403 page instead. A guest id in this browser is handed over.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sign_in(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        customer: crate::customers::Customer,
        method: &str,
        provider_sid: Option<String>,
        return_to: &str,
        mut cookies: Vec<String>,
    ) -> Result<Response> {
        let name = method;
        if customer.status != crate::customers::ACTIVE {
            self.count_login(name, "disabled");
            let html = self.msg(rq, "message.disabled", Some(("/", "common.home")));
            let headers: Vec<(&str, String)> =
                cookies.into_iter().map(|c| ("set-cookie", c)).collect();
            return self
                .write(rq, 403, "text/html; charset=utf-8", html, &headers)
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
                        rq,
                        name,
                        "customer directory unavailable for consents at sign-in",
                        &e,
                        ("/", "common.home"),
                    )
                    .await;
            }
        };
        // A new session id at every login: an old cookie (fixation) is dropped.
        if let Some(old) = self.current_session(rq, snap, host).await? {
            let _ = self.app.sessions.delete(&old.id_hash).await;
        }
        let t = now();
        let absolute = snap.config.sessions.absolute_timeout.as_secs() as i64;
        // A guest who signs in (say, at checkout) hands over the guest id, so
        // the backend can merge the cart into the customer's.
        let guest = rq
            .cookies()
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
            device: rq.device(),
            consents,
        };
        let (id, record) = new_session(&first, t, t + absolute);
        if let Err(e) = self.app.sessions.create(&record).await {
            return self
                .dependency_down(
                    rq,
                    name,
                    "session store unavailable during login",
                    &e,
                    ("/", "common.home"),
                )
                .await;
        }
        self.count_login(name, "success");
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
        self.continue_to(rq, snap, host, &record, &return_to, cookies)
            .await
    }

    /// With an auth host configured and this not being it: the same sign-in
    /// URL on the auth host, returning to this host, and the cookie that
    /// binds the code the auth host will send back to this browser.
    pub(super) fn auth_host_url(
        &self,
        rq: &Req,
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
            format!("{}://{raw_host}{return_to}", rq.scheme())
        } else {
            return_to.to_string()
        };
        let (back, cookie) = with_hop_nonce(&back)?;
        Some((
            format!(
                "{}://{auth}{}{path}{}return_to={}",
                rq.scheme(),
                port_part(raw_host),
                if path.contains('?') { '&' } else { '?' },
                enc(&back)
            ),
            cookie,
        ))
    }

    /// The sign-in page: password sign-in and registration (when enabled)
    /// and every provider, registration first if asked.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn signin_page(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        status: u16,
        register_first: bool,
        return_to: &str,
        state: &SigninState,
    ) -> Result<Response> {
        let (csrf, cookie) = self.form_token(rq, snap, host).await?;
        let providers: Vec<Value> = snap.config.login_providers().map(button).collect();
        let mut errors = summary("login", &state.login_errors);
        errors.extend(summary("register", &state.register_errors));
        if let Some(e) = &state.form_error {
            errors.insert(0, json!({ "id": "main", "text": e }));
        }
        let html = self.render(
            rq,
            "signin.html",
            json!({
                "csrf": csrf,
                "return_to": return_to,
                "register_first": register_first,
                "passwords": snap.config.accounts.passwords,
                "min_length": snap.config.accounts.password_min_length,
                "providers": providers,
                "purposes": snap.config.purposes,
                "login": { "email": state.login_email, "errors": state.login_errors },
                "register": {
                    "email": state.register_email,
                    "name": state.register_name,
                    "ticked": state.register_ticked,
                    "errors": state.register_errors,
                },
                "errors": errors,
                "notice": state.notice,
            }),
        );
        self.form_page(rq, status, html, cookie).await
    }

    /// `POST /_auth/login/password`.
    pub(super) async fn password_login(
        &self,
        sub: &Submitted<PasswordSignIn>,
        snap: &Snapshot,
        host: &str,
    ) -> Result<Response> {
        let (rq, form) = (&sub.rq, &sub.form);
        let return_to = self.return_to(snap, rq.conn.here.as_ref(), Some(&form.return_to));
        let mut state = SigninState {
            login_email: form.email.trim().to_string(),
            ..SigninState::default()
        };
        if !sub.fresh {
            state.form_error = Some(self.tr(rq, "field.form_expired"));
            return self
                .signin_page(rq, snap, host, 403, false, &return_to, &state)
                .await;
        }
        let email = match accounts::normalize_email(&form.email) {
            Ok(e) => e,
            Err(why) => {
                state.login_errors.insert("email", self.tr(rq, why));
                return self
                    .signin_page(rq, snap, host, 422, false, &return_to, &state)
                    .await;
            }
        };
        let account_key = crate::throttle::account(&email);
        if let Some(answer) = self
            .throttled_as(rq, "password-account", &account_key, false)
            .await?
        {
            return Ok(answer);
        }
        let found = match self.app.auth.directory().password(&email).await {
            Ok(f) => f,
            Err(e) => {
                return self
                    .dependency_down(
                        rq,
                        PASSWORD_METHOD,
                        "customer directory unavailable during password sign-in",
                        &e,
                        ("/_auth/login", "common.try_again"),
                    )
                    .await;
            }
        };
        // Unknown addresses are checked against a dummy hash: same work, same time.
        let (hash, customer) = match found {
            Some((c, h)) => (h, Some(c)),
            None => (self.app.dummy_hash.clone(), None),
        };
        let given = form.password.clone();
        let long = given.chars().count() > password::MAX_LENGTH;
        let matched = !long
            && match self.verify_password(hash.clone(), given.clone()).await {
                Ok(m) => m,
                Err(busy) => {
                    let back = ("/_auth/login", "common.try_again");
                    return self.hashing_busy(rq, busy, back).await;
                }
            };
        let Some(customer) = customer.filter(|_| matched) else {
            self.app.metrics.password_failures.inc();
            self.count_login(PASSWORD_METHOD, "refused");
            self.count_failure(rq, snap, "password").await;
            let block = crate::throttle::failed(
                &*self.app.sessions,
                "password-account",
                &account_key,
                &snap.config.abuse,
            )
            .await;
            if block == Some(1) {
                // The first block of a run: tell the owner, if there is one.
                if let Ok(Some(_)) = self.app.auth.directory().password(&email).await {
                    let link = format!("{}/_auth/reset", snap.config.accounts.public_url);
                    self.mail(rq, snap, Kind::Lockout, &email, None, Some(&link));
                }
            }
            state
                .login_errors
                .insert("password", self.tr(rq, "signin.wrong_password"));
            return self
                .signin_page(rq, snap, host, 401, false, &return_to, &state)
                .await;
        };
        if password::needs_rehash(&hash, &self.app.argon2) {
            // A hash made at an older cost is replaced now that we know the password.
            // On the bounded pool: when it is full, the next sign-in does it.
            let (dir, cost, id, email) = (
                self.app.auth.directory().clone(),
                self.app.argon2,
                customer.id.clone(),
                email.clone(),
            );
            let pool = self.app.hashing.clone();
            tokio::spawn(async move {
                let hashed = pool.run(move || password::hash(&cost, &given)).await;
                if let Ok(Ok(h)) = hashed {
                    let _ = dir.set_password(&id, &email, &h).await;
                }
            });
        }
        self.sign_in(
            rq,
            snap,
            host,
            customer,
            PASSWORD_METHOD,
            None,
            &return_to,
            Vec::new(),
        )
        .await
    }

    /// The CSRF token a signed-out form carries, and the cookie to set if new.
    /// The CSRF token a form page carries (the session's, or the
    /// double-submit cookie's) and the cookie to set when it is new.
    pub(super) async fn form_token(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
    ) -> Result<(String, Option<String>)> {
        Ok(match self.current_session(rq, snap, host).await? {
            Some(s) => (s.csrf.clone(), None),
            None => self.anon_csrf(rq),
        })
    }

    /// A form page, with the new double-submit cookie if there is one.
    pub(super) async fn form_page(
        &self,
        rq: &Req,
        status: u16,
        html: String,
        cookie: Option<String>,
    ) -> Result<Response> {
        let headers: Vec<(&str, String)> = cookie.into_iter().map(|c| ("set-cookie", c)).collect();
        self.write(rq, status, "text/html; charset=utf-8", html, &headers)
            .await
    }

    pub(super) fn anon_csrf(&self, rq: &Req) -> (String, Option<String>) {
        match rq.cookie(CSRF_COOKIE).filter(|t| t.len() == 43) {
            Some(t) => (t, None),
            None => {
                let t = sess::new_token();
                let cookie = sess::set_cookie(CSRF_COOKIE, &t, 24 * 3600);
                (t, Some(cookie))
            }
        }
    }

    /// Whether a submitted form carries this browser's CSRF token (see
    /// [`Submitted`], which every signed-out form goes through): the
    /// session's, or the double-submit cookie's. (`Origin` was checked
    /// before any handler ran: `guard::own_pages`.)
    pub(super) fn form_ok(&self, rq: &Req, current: Option<&Browser>, sent: &str) -> bool {
        !sent.is_empty()
            && (current.is_some_and(|s| sess::same_token(sent, &s.csrf))
                || rq
                    .cookie(CSRF_COOKIE)
                    .is_some_and(|c| sess::same_token(sent, &c)))
    }

    /// The customer a provider sign-in belongs to, or None when this method
    /// answered itself: a link to a signed-in account, an email match that
    /// needs proof, or a proof completed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn customer_for_login(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        provider: &str,
        found: &ExternalId,
        profile: &Profile,
        pending: &Pending,
        clear_login: &str,
    ) -> Result<std::result::Result<Customer, Response>> {
        let dir = self.app.auth.directory().clone();
        let cookies = vec![clear_login.to_string()];
        match &pending.intent {
            Intent::Link { customer_id } => {
                let answer = self
                    .link_identity(rq, snap, host, provider, found, customer_id, &cookies)
                    .await?;
                return Ok(Err(answer));
            }
            Intent::Prove => return Ok(Err(self.prove_identity(rq, snap, host, found).await?)),
            Intent::SignIn => {}
        }
        let known = match dir.lookup(found).await {
            Ok(k) => k,
            Err(e) => {
                return Ok(Err(self
                    .dependency_down(
                        rq,
                        provider,
                        "customer directory unavailable during login",
                        &e,
                        ("/", "common.home"),
                    )
                    .await?));
            }
        };
        if let Some(c) = known {
            return Ok(Ok(c));
        }
        // A new identity whose verified email an existing account has.
        let existing = match profile.email.as_deref().filter(|_| profile.email_verified) {
            Some(email) => dir.by_email(&email.to_lowercase()).await.ok().flatten(),
            None => None,
        };
        if let Some(existing) = existing {
            let trusted = snap
                .config
                .providers
                .iter()
                .find(|p| p.name == provider)
                .and_then(|p| p.login.as_ref())
                .is_some_and(|l| l.trusted_email);
            if trusted {
                if let Err(e) = dir
                    .link(&existing.id, found, crate::customers::IdentityKind::Oidc)
                    .await
                {
                    return Ok(Err(self
                        .dependency_down(
                            rq,
                            provider,
                            "customer directory unavailable while linking",
                            &e,
                            ("/", "common.home"),
                        )
                        .await?));
                }
                // Whoever won a race, the identity now has one owner.
                return match dir.lookup(found).await.ok().flatten() {
                    Some(c) => Ok(Ok(c)),
                    None => {
                        let answer = self
                            .dependency_down(
                                rq,
                                provider,
                                "customer directory lost a just-linked identity",
                                &"identity not found after linking",
                                ("/", "common.home"),
                            )
                            .await?;
                        Ok(Err(answer))
                    }
                };
            }
            let proof = Proof {
                customer_id: existing.id.clone(),
                issuer: found.issuer.clone(),
                subject: found.subject.clone(),
                provider: provider.to_string(),
                email: existing.email.clone().unwrap_or_default(),
                return_to: pending.return_to.clone(),
                sid: None,
            };
            return Ok(Err(self
                .ask_proof(rq, snap, &existing, proof, clear_login)
                .await?));
        }
        match dir
            .resolve(found, crate::customers::IdentityKind::Oidc, profile)
            .await
        {
            Ok(c) => Ok(Ok(c)),
            Err(e) => Ok(Err(self
                .dependency_down(
                    rq,
                    provider,
                    "customer directory unavailable during login",
                    &e,
                    ("/", "common.home"),
                )
                .await?)),
        }
    }

    /// A provider sign-in started from the account page to add a way in:
    /// linked to the signed-in customer, or why not.
    #[allow(clippy::too_many_arguments)]
    async fn link_identity(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        provider: &str,
        found: &ExternalId,
        customer_id: &str,
        cookies: &[String],
    ) -> Result<Response> {
        let dir = self.app.auth.directory();
        let current = self.current_session(rq, snap, host).await?;
        if current.as_ref().map(|s| s.customer_id.as_str()) != Some(customer_id) {
            let html = self.msg_with(
                rq,
                "message.not_linked",
                &self.tr(rq, "message.not_linked.signed_out"),
                Some(("/_account", "common.your_account")),
            );
            return self.page(rq, 400, html).await;
        }
        let to = match dir
            .link(customer_id, found, crate::customers::IdentityKind::Oidc)
            .await
        {
            Ok(Link::Linked) => "/_account?notice=linked",
            Ok(Link::AlreadyYours) => "/_account?notice=already_linked",
            Ok(Link::OtherCustomer) => {
                let html = self.msg(
                    rq,
                    "message.other_account",
                    Some(("/_account", "common.your_account")),
                );
                return self.page(rq, 409, html).await;
            }
            Err(e) => {
                return self
                    .dependency_down(
                        rq,
                        provider,
                        "customer directory unavailable while linking",
                        &e,
                        ("/_account", "common.your_account"),
                    )
                    .await;
            }
        };
        self.redirect(rq, to, cookies).await
    }

    /// A provider sign-in proving an existing account (email match): the
    /// waiting identity joins it if this sign-in is that account's.
    async fn prove_identity(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        found: &ExternalId,
    ) -> Result<Response> {
        let dir = self.app.auth.directory();
        let proof = match rq.cookie(PROVE_COOKIE) {
            Some(t) => self
                .take_json_once::<Proof>("prove", &t)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let owner = dir.lookup(found).await.ok().flatten();
        match (proof, owner) {
            (Some(p), Some(c)) if c.id == p.customer_id => {
                self.complete_proof(rq, snap, host, c, &p).await
            }
            _ => {
                let html = self.msg_with(
                    rq,
                    "message.not_linked",
                    &self.tr(rq, "message.not_linked.not_theirs"),
                    Some(("/_auth/login", "common.sign_in")),
                );
                self.write(
                    rq,
                    403,
                    "text/html; charset=utf-8",
                    html,
                    &[("set-cookie", sess::set_cookie(PROVE_COOKIE, "", 0))],
                )
                .await
            }
        }
    }
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
