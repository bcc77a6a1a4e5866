//! Customer accounts over HTTP: the sign-in/registration page, password
//! sign-in, registration, email verification, password reset, the proof
//! asked before a provider login joins an existing account, and the account
//! page under `/_account` (profile, ways to sign in, sessions).
//!
//! Every form carries a CSRF token: the session's when signed in, else a
//! double-submit cookie; a cross-site `Origin` is refused as well. Answers
//! about an email address never depend on whether an account has it (the
//! unknown address is checked against a dummy hash; a reset request always
//! says "sent"), except registration, which must say when the address is
//! taken; it is throttled per client like every other form.

use std::collections::BTreeMap;
use std::sync::Arc;

use pingora_core::Result;
use pingora_proxy::Session;
use serde_json::{json, Value};

use super::endpoints::{enc, now, once_key, query, read_form};
use super::{Ctx, Gateway};
use crate::accounts::mail::{compose, Kind};
use crate::accounts::{self, password, Purpose, PASSWORD_ISSUER};
use crate::customers::{Customer, ExternalId, Link, Profile, SetPassword, Unlink};
use crate::login::{Intent, Pending};
use crate::session::{self as sess, Group, Session as Browser};
use crate::state::Snapshot;

/// The double-submit CSRF cookie of signed-out forms.
const CSRF_COOKIE: &str = "__Host-omnigate-csrf";
/// Names the proof waiting for a customer (email match at provider sign-in).
const PROVE_COOKIE: &str = "__Host-omnigate-prove";
/// How long a proof may take.
const PROVE_TTL: i64 = 600;
/// The method label of password sign-ins (sessions, metrics).
const PASSWORD_METHOD: &str = "password";

const WRONG_PASSWORD: &str = "The email address or the password is not right.";
const FORM_EXPIRED: &str = "The form had expired. Please submit it again.";

/// A provider identity waiting to join an existing account once the
/// customer proves that account is theirs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Proof {
    customer_id: String,
    issuer: String,
    subject: String,
    provider: String,
    email: String,
    return_to: String,
    sid: Option<String>,
}

/// A submitted form.
pub(super) struct Form(pub Vec<(String, String)>);

impl Form {
    /// Every value of a repeated field (checkboxes).
    pub(super) fn get_all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(super) fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Field errors of one form, by field name.
type Errors = BTreeMap<&'static str, String>;

/// The error summary entries of `errors` in form `form`.
fn summary(form: &str, errors: &Errors) -> Vec<Value> {
    errors
        .iter()
        .map(|(field, text)| json!({ "id": format!("{form}-{field}"), "text": text }))
        .collect()
}

/// The fixed texts `/_account?notice=…` may show.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "linked" => "The sign-in was added to your account.",
        "already_linked" => "That sign-in was already part of your account.",
        "unlinked" => "The sign-in was removed from your account.",
        "last_way_in" => "This is your only way to sign in, so it cannot be removed.",
        "password_added" => "Your password was added. You can now sign in with it.",
        "password_changed" => "Your password was changed, and your other sessions were ended.",
        "session_ended" => "That session was ended.",
        "verification_sent" => "We sent you a mail with a confirmation link.",
        "profile_saved" => "Your profile was saved.",
        "proved" => "Confirmed: the sign-in was added to your account.",
        _ => return None,
    })
}

/// `2026-11-29 21:40 UTC` for a Unix time. Pure.
pub(super) fn when(t: i64) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(st).to_string();
    format!("{} UTC", s.get(..16).unwrap_or(&s).replacen('T', " ", 1))
}

impl Gateway {
    /// Answers the account endpoints under `/_auth/`; false if `path` is not one.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn accounts_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Arc<Snapshot>,
        host: &str,
        raw_host: &str,
        path: &str,
        q: Option<&str>,
        get: bool,
        post: bool,
    ) -> Result<bool> {
        let passwords = snap.config.accounts.passwords;
        let here = ctx.here.clone();
        let return_to = || self.return_to(snap, here.as_ref(), query(q, "return_to").as_deref());
        match path {
            "/_auth/register" if get && passwords => {
                let to = return_to();
                self.signin_page(
                    session,
                    ctx,
                    snap,
                    host,
                    200,
                    true,
                    &to,
                    &SigninState::default(),
                )
                .await?
            }
            "/_auth/register" if post && passwords => {
                self.register(session, ctx, snap, host, raw_host).await?
            }
            "/_auth/login/password" if post && passwords => {
                self.password_login(session, ctx, snap, host).await?
            }
            "/_auth/verify" if get => {
                let token = query(q, "token").unwrap_or_default();
                self.verify_email(session, ctx, snap, &token).await?
            }
            "/_auth/reset" if get && passwords => {
                let to = return_to();
                self.reset_request_page(
                    session,
                    ctx,
                    snap,
                    host,
                    200,
                    &to,
                    "",
                    &Errors::new(),
                    false,
                )
                .await?
            }
            "/_auth/reset" if post && passwords => {
                self.reset_request(session, ctx, snap, host).await?
            }
            "/_auth/reset/confirm" if get && passwords => {
                let token = query(q, "token").unwrap_or_default();
                self.reset_page(session, ctx, snap, host, 200, &token, &Errors::new())
                    .await?
            }
            "/_auth/reset/confirm" if post && passwords => {
                self.reset_confirm(session, ctx, snap, host).await?
            }
            "/_auth/prove" if post => self.prove_with_password(session, ctx, snap, host).await?,
            "/_auth/prove/cancel" if get => {
                if let Some(token) = self.cookie_value(session, PROVE_COOKIE) {
                    let _ = self
                        .app
                        .sessions
                        .take_once(&once_key("prove", &token))
                        .await;
                }
                let html = self.app.pages.message(
                    "Nothing was linked",
                    "Your accounts stay as they were. You can sign in with your existing account.",
                    Some(("/_auth/login", "Sign in")),
                );
                self.write(
                    session,
                    ctx,
                    200,
                    "text/html; charset=utf-8",
                    html,
                    &[("set-cookie", sess::set_cookie(PROVE_COOKIE, "", 0))],
                )
                .await?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(super) fn cookie_value(&self, session: &Session, name: &str) -> Option<String> {
        super::endpoints::cookie_header(session)
            .as_deref()
            .and_then(|h| sess::cookie(Some(h), name))
            .map(str::to_string)
    }

    /// The CSRF token a signed-out form carries, and the cookie to set if new.
    fn anon_csrf(&self, session: &Session) -> (String, Option<String>) {
        match self
            .cookie_value(session, CSRF_COOKIE)
            .filter(|t| t.len() == 43)
        {
            Some(t) => (t, None),
            None => {
                let t = sess::new_token();
                let cookie = sess::set_cookie(CSRF_COOKIE, &t, 24 * 3600);
                (t, Some(cookie))
            }
        }
    }

    /// Whether a submitted form carries this browser's CSRF token: the
    /// session's, or the double-submit cookie's. (`Origin` was checked
    /// before any handler ran: `Gateway::own_pages_refusal`.)
    fn form_ok(&self, session: &Session, current: Option<&Browser>, form: &Form) -> bool {
        let sent = form.get("csrf");
        !sent.is_empty()
            && (current.is_some_and(|s| sess::same_token(sent, &s.csrf))
                || self
                    .cookie_value(session, CSRF_COOKIE)
                    .is_some_and(|c| sess::same_token(sent, &c)))
    }

    /// The sign-in page: password sign-in and registration (when enabled)
    /// and every provider, registration first if asked.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn signin_page(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        status: u16,
        register_first: bool,
        return_to: &str,
        state: &SigninState,
    ) -> Result<()> {
        let current = self.current_session(session, snap, host).await?;
        let (csrf, cookie) = match &current {
            Some(s) => (s.csrf.clone(), None),
            None => self.anon_csrf(session),
        };
        let providers: Vec<Value> = snap
            .config
            .login_providers()
            .map(|p| {
                json!({
                    "name": p.name,
                    "display_name": p.login.as_ref().map(|l| l.display_name.clone()),
                })
            })
            .collect();
        let mut errors = summary("login", &state.login_errors);
        errors.extend(summary("register", &state.register_errors));
        if let Some(e) = &state.form_error {
            errors.insert(0, json!({ "id": "main", "text": e }));
        }
        let html = self.app.pages.render(
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
                    "errors": state.register_errors,
                },
                "errors": errors,
                "notice": state.notice,
            }),
        );
        let headers: Vec<(&str, String)> = cookie.into_iter().map(|c| ("set-cookie", c)).collect();
        self.write(
            session,
            ctx,
            status,
            "text/html; charset=utf-8",
            html,
            &headers,
        )
        .await
    }

    /// `POST /_auth/login/password`.
    async fn password_login(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
    ) -> Result<()> {
        let form = Form(read_form(session).await?);
        let return_to = self.return_to(snap, ctx.here.as_ref(), Some(form.get("return_to")));
        let current = self.current_session(session, snap, host).await?;
        let mut state = SigninState {
            login_email: form.get("email").trim().to_string(),
            ..SigninState::default()
        };
        if !self.form_ok(session, current.as_deref(), &form) {
            state.form_error = Some(FORM_EXPIRED.into());
            return self
                .signin_page(session, ctx, snap, host, 403, false, &return_to, &state)
                .await;
        }
        if self
            .throttled(session, ctx, snap, "password", false)
            .await?
        {
            return Ok(());
        }
        let email = match accounts::normalize_email(form.get("email")) {
            Ok(e) => e,
            Err(why) => {
                state.login_errors.insert("email", why.into());
                return self
                    .signin_page(session, ctx, snap, host, 422, false, &return_to, &state)
                    .await;
            }
        };
        let account_key = crate::throttle::account(&email);
        if self
            .throttled_as(session, ctx, "password-account", &account_key, false)
            .await?
        {
            return Ok(());
        }
        let found = match self.app.auth.directory().password(&email).await {
            Ok(f) => f,
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        PASSWORD_METHOD,
                        "customer directory unavailable during password sign-in",
                        &e,
                        ("/_auth/login", "Try again"),
                    )
                    .await;
            }
        };
        // Unknown addresses are checked against a dummy hash: same work, same time.
        let (hash, customer) = match found {
            Some((c, h)) => (h, Some(c)),
            None => (self.app.dummy_hash.clone(), None),
        };
        let given = form.get("password").to_string();
        let long = given.chars().count() > password::MAX_LENGTH;
        let matched = !long
            && tokio::task::spawn_blocking({
                let (hash, given) = (hash.clone(), given.clone());
                move || password::verify(&hash, &given)
            })
            .await
            .unwrap_or(false);
        let Some(customer) = customer.filter(|_| matched) else {
            self.app.metrics.password_failures.inc();
            self.app
                .metrics
                .logins
                .with_label_values(&[PASSWORD_METHOD, "refused"])
                .inc();
            self.count_failure(session, snap, "password").await;
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
                    self.mail(snap, Kind::Lockout, &email, Some(&link));
                }
            }
            state.login_errors.insert("password", WRONG_PASSWORD.into());
            return self
                .signin_page(session, ctx, snap, host, 401, false, &return_to, &state)
                .await;
        };
        if password::needs_rehash(&hash, &self.app.argon2) {
            // A hash made at an older cost is replaced now that we know the password.
            let (dir, cost, id, email) = (
                self.app.auth.directory().clone(),
                self.app.argon2,
                customer.id.clone(),
                email.clone(),
            );
            tokio::spawn(async move {
                let hashed =
                    tokio::task::spawn_blocking(move || password::hash(&cost, &given)).await;
                if let Ok(Ok(h)) = hashed {
                    let _ = dir.set_password(&id, &email, &h).await;
                }
            });
        }
        self.sign_in(
            session,
            ctx,
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

    /// Checks a new password: the policy, then the breached-password
    /// service if configured (unreachable: the policy alone decides).
    async fn weak_password(&self, snap: &Snapshot, given: &str, email: &str) -> Option<String> {
        if let Err(w) = password::check(given, email, snap.config.accounts.password_min_length) {
            return Some(w.to_string());
        }
        let api = snap.config.accounts.breached_password_api.as_deref()?;
        let (prefix, suffix) = password::range_key(given);
        match self.app.http.get_text(&format!("{api}{prefix}")).await {
            Ok(body) if password::range_lists(&body, &suffix) => {
                Some(password::Weak::Breached.to_string())
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "breached-password service unreachable; policy alone applies");
                None
            }
        }
    }

    /// Hashes on the blocking pool.
    async fn hash_password(&self, given: &str) -> std::result::Result<String, String> {
        let (cost, given) = (self.app.argon2, given.to_string());
        tokio::task::spawn_blocking(move || password::hash(&cost, &given))
            .await
            .map_err(|e| e.to_string())?
    }

    /// `POST /_auth/register`.
    async fn register(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
    ) -> Result<()> {
        let form = Form(read_form(session).await?);
        let return_to = self.return_to(snap, ctx.here.as_ref(), Some(form.get("return_to")));
        let current = self.current_session(session, snap, host).await?;
        let mut state = SigninState {
            register_email: form.get("email").trim().to_string(),
            register_name: form.get("name").trim().to_string(),
            ..SigninState::default()
        };
        if !self.form_ok(session, current.as_deref(), &form) {
            state.form_error = Some(FORM_EXPIRED.into());
            return self
                .signin_page(session, ctx, snap, host, 403, true, &return_to, &state)
                .await;
        }
        if self
            .throttled(session, ctx, snap, "register", false)
            .await?
        {
            return Ok(());
        }
        let email = accounts::normalize_email(form.get("email"))
            .map_err(|e| state.register_errors.insert("email", e.into()))
            .ok();
        let name = accounts::normalize_name(form.get("name"))
            .map_err(|e| state.register_errors.insert("name", e.into()))
            .ok()
            .flatten();
        let given = form.get("password");
        if given.is_empty() {
            state
                .register_errors
                .insert("password", "Choose a password.".into());
        } else if let Some(why) = self
            .weak_password(snap, given, email.as_deref().unwrap_or(""))
            .await
        {
            state.register_errors.insert("password", why);
        }
        let ticked = form.get_all("grant");
        let is_ticked = |p: &crate::consent::Purpose| {
            ticked.contains(&format!("{}:{}", p.id, p.version).as_str())
        };
        if snap
            .config
            .purposes
            .iter()
            .any(|p| p.required && !is_ticked(p))
        {
            state.register_errors.insert(
                "terms",
                "Please accept the terms to create an account.".into(),
            );
        }
        let Some(email) = email.filter(|_| state.register_errors.is_empty()) else {
            self.app
                .metrics
                .registrations
                .with_label_values(&["invalid"])
                .inc();
            return self
                .signin_page(session, ctx, snap, host, 422, true, &return_to, &state)
                .await;
        };
        let hash = match self.hash_password(given).await {
            Ok(h) => h,
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        PASSWORD_METHOD,
                        "password hashing failed",
                        &e,
                        ("/_auth/register", "Try again"),
                    )
                    .await;
            }
        };
        let created = match self
            .app
            .auth
            .directory()
            .register(&email, name.as_deref(), &hash)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        PASSWORD_METHOD,
                        "customer directory unavailable during registration",
                        &e,
                        ("/_auth/register", "Try again"),
                    )
                    .await;
            }
        };
        let Some(customer) = created else {
            self.app
                .metrics
                .registrations
                .with_label_values(&["taken"])
                .inc();
            // Probing for addresses costs a failure each.
            self.count_failure(session, snap, "register").await;
            state.register_errors.insert(
                "email",
                "There is already an account with this address. Sign in, or reset its password."
                    .into(),
            );
            state.login_email = email;
            return self
                .signin_page(session, ctx, snap, host, 409, true, &return_to, &state)
                .await;
        };
        self.app
            .metrics
            .registrations
            .with_label_values(&["created"])
            .inc();
        tracing::info!(customer_id = %customer.id, "customer registered with a password");
        // Every purpose shown gets its answer in the ledger (unticked: declined).
        let decisions: Vec<crate::consent::Decision> = snap
            .config
            .purposes
            .iter()
            .map(|p| {
                let action = if is_ticked(p) {
                    crate::consent::Action::Grant
                } else {
                    crate::consent::Action::Withdraw
                };
                self.decision(session, raw_host, p, action, "registration")
            })
            .collect();
        if let Err(e) = self.record_consents(&customer.id, &decisions).await {
            return self
                .dependency_down(
                    session,
                    ctx,
                    PASSWORD_METHOD,
                    "consent could not be recorded at registration",
                    &e,
                    ("/_auth/register", "Try again"),
                )
                .await;
        }
        self.send_verification(snap, &customer.id, &email).await;
        self.sign_in(
            session,
            ctx,
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

    /// Mails a verification link for `email` (failures are logged).
    async fn send_verification(&self, snap: &Snapshot, customer_id: &str, email: &str) {
        let token = sess::new_token();
        let ttl = snap.config.accounts.verification_ttl;
        let stored = self
            .app
            .auth
            .directory()
            .put_token(
                &sess::hash_id(&token),
                customer_id,
                Purpose::Verify,
                email,
                now() + ttl.as_secs() as i64,
            )
            .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot keep a verification token; no mail sent");
            return;
        }
        let link = format!(
            "{}/_auth/verify?token={}",
            snap.config.accounts.public_url,
            enc(&token)
        );
        self.mail(snap, Kind::Verify, email, Some(&link));
    }

    /// Composes and sends a mail in the background (no channel: logged).
    fn mail(&self, snap: &Snapshot, kind: Kind, to: &str, link: Option<&str>) {
        let ttl = match kind {
            Kind::Reset => snap.config.accounts.reset_ttl,
            _ => snap.config.accounts.verification_ttl,
        };
        let Some(mailer) = &self.app.mailer else {
            tracing::warn!(
                kind = kind.as_str(),
                "no mail channel configured; mail not sent"
            );
            return;
        };
        let m = compose(
            kind,
            &snap.config.pages.brand,
            to,
            link,
            &accounts::human(ttl),
        );
        mailer.send_later(m, self.app.metrics.mail_failures.clone());
    }

    /// `GET /_auth/verify?token=…`.
    async fn verify_email(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        token: &str,
    ) -> Result<()> {
        if self.throttled(session, ctx, snap, "verify", false).await? {
            return Ok(());
        }
        let dir = self.app.auth.directory();
        let taken = if token.is_empty() || token.len() > 64 {
            Ok(None)
        } else {
            dir.take_token(&sess::hash_id(token), Purpose::Verify, now())
                .await
        };
        let verified = match taken {
            Ok(Some((customer_id, email))) => dir.mark_verified(&customer_id, &email).await,
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match verified {
            Ok(Some(c)) if c.email_verified => {
                self.app
                    .metrics
                    .verifications
                    .with_label_values(&["verified"])
                    .inc();
                self.refresh_sessions(&c).await;
                let html = self.app.pages.message(
                    "Your email address is confirmed",
                    "Thank you. Your account is ready.",
                    Some(("/", "Continue")),
                );
                self.page(session, ctx, 200, html).await
            }
            Ok(_) => {
                self.app
                    .metrics
                    .verifications
                    .with_label_values(&["invalid"])
                    .inc();
                self.count_failure(session, snap, "verify").await;
                let html = self.app.pages.message(
                    "This link does not work any more",
                    "Confirmation links work once and for a limited time. Sign in and ask for a new one on your account page.",
                    Some(("/_account", "Your account")),
                );
                self.page(session, ctx, 400, html).await
            }
            Err(e) => {
                self.dependency_down(
                    session,
                    ctx,
                    PASSWORD_METHOD,
                    "customer directory unavailable during verification",
                    &e,
                    ("/", "Home"),
                )
                .await
            }
        }
    }

    /// Copies a customer's profile into their live sessions.
    async fn refresh_sessions(&self, c: &Customer) {
        let profile = sess::Profile {
            email: c.email.clone(),
            email_verified: c.email_verified,
            name: c.name.clone(),
        };
        if let Err(e) = self.app.sessions.refresh_profile(&c.id, &profile).await {
            tracing::warn!(error = %e, "sessions keep the old profile until they end");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn reset_request_page(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        status: u16,
        return_to: &str,
        email: &str,
        errors: &Errors,
        sent: bool,
    ) -> Result<()> {
        let current = self.current_session(session, snap, host).await?;
        let (csrf, cookie) = match &current {
            Some(s) => (s.csrf.clone(), None),
            None => self.anon_csrf(session),
        };
        let html = self.app.pages.render(
            "reset_request.html",
            json!({
                "csrf": csrf, "return_to": return_to, "email": email, "sent": sent,
                "field_errors": errors, "errors": summary("reset", errors),
                "ttl": accounts::human(snap.config.accounts.reset_ttl),
            }),
        );
        let headers: Vec<(&str, String)> = cookie.into_iter().map(|c| ("set-cookie", c)).collect();
        self.write(
            session,
            ctx,
            status,
            "text/html; charset=utf-8",
            html,
            &headers,
        )
        .await
    }

    /// `POST /_auth/reset`: always answers "sent", account or not.
    async fn reset_request(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
    ) -> Result<()> {
        let form = Form(read_form(session).await?);
        let return_to = self.return_to(snap, ctx.here.as_ref(), Some(form.get("return_to")));
        let current = self.current_session(session, snap, host).await?;
        let typed = form.get("email").trim().to_string();
        let mut errors = Errors::new();
        if !self.form_ok(session, current.as_deref(), &form) {
            errors.insert("email", FORM_EXPIRED.into());
            return self
                .reset_request_page(
                    session, ctx, snap, host, 403, &return_to, &typed, &errors, false,
                )
                .await;
        }
        if self.throttled(session, ctx, snap, "reset", false).await? {
            return Ok(());
        }
        let email = match accounts::normalize_email(&typed) {
            Ok(e) => e,
            Err(why) => {
                errors.insert("email", why.into());
                return self
                    .reset_request_page(
                        session, ctx, snap, host, 422, &return_to, &typed, &errors, false,
                    )
                    .await;
            }
        };
        // Every request counts, per client and per address: mails are not a hose.
        self.count_failure(session, snap, "reset").await;
        let key = crate::throttle::account(&email);
        let quiet = crate::throttle::retry_after(&*self.app.sessions, "reset-account", &key)
            .await
            .is_some();
        crate::throttle::failed(
            &*self.app.sessions,
            "reset-account",
            &key,
            &snap.config.abuse,
        )
        .await;
        self.app
            .metrics
            .password_resets
            .with_label_values(&["requested"])
            .inc();
        if !quiet {
            match self.app.auth.directory().password(&email).await {
                Ok(Some((c, _))) => {
                    let token = sess::new_token();
                    let ttl = snap.config.accounts.reset_ttl.as_secs() as i64;
                    let stored = self
                        .app
                        .auth
                        .directory()
                        .put_token(
                            &sess::hash_id(&token),
                            &c.id,
                            Purpose::Reset,
                            &email,
                            now() + ttl,
                        )
                        .await;
                    match stored {
                        Ok(()) => {
                            let link = format!(
                                "{}/_auth/reset/confirm?token={}",
                                snap.config.accounts.public_url,
                                enc(&token)
                            );
                            self.mail(snap, Kind::Reset, &email, Some(&link));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot keep a reset token; no mail sent")
                        }
                    }
                }
                Ok(None) => self.mail(snap, Kind::ResetUnknown, &email, None),
                Err(e) => tracing::error!(error = %e, "customer directory unavailable for a reset"),
            }
        }
        self.reset_request_page(
            session,
            ctx,
            snap,
            host,
            200,
            &return_to,
            &email,
            &Errors::new(),
            true,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn reset_page(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        status: u16,
        token: &str,
        errors: &Errors,
    ) -> Result<()> {
        let current = self.current_session(session, snap, host).await?;
        let (csrf, cookie) = match &current {
            Some(s) => (s.csrf.clone(), None),
            None => self.anon_csrf(session),
        };
        let html = self.app.pages.render(
            "reset.html",
            json!({
                "csrf": csrf, "token": token, "field_errors": errors,
                "errors": summary("new", errors),
                "min_length": snap.config.accounts.password_min_length,
            }),
        );
        let headers: Vec<(&str, String)> = cookie.into_iter().map(|c| ("set-cookie", c)).collect();
        self.write(
            session,
            ctx,
            status,
            "text/html; charset=utf-8",
            html,
            &headers,
        )
        .await
    }

    /// `POST /_auth/reset/confirm`: a new password from a mailed link; every
    /// session of the customer ends, and this browser is signed in afresh.
    async fn reset_confirm(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
    ) -> Result<()> {
        let form = Form(read_form(session).await?);
        let token = form.get("token").to_string();
        let current = self.current_session(session, snap, host).await?;
        let mut errors = Errors::new();
        if !self.form_ok(session, current.as_deref(), &form) {
            errors.insert("password", FORM_EXPIRED.into());
            return self
                .reset_page(session, ctx, snap, host, 403, &token, &errors)
                .await;
        }
        if self
            .throttled(session, ctx, snap, "reset-confirm", false)
            .await?
        {
            return Ok(());
        }
        let given = form.get("password").to_string();
        // The policy first, so a refused password does not spend the link.
        if let Some(why) = self.weak_password(snap, &given, "").await {
            errors.insert("password", why);
            return self
                .reset_page(session, ctx, snap, host, 422, &token, &errors)
                .await;
        }
        let dir = self.app.auth.directory().clone();
        let taken = if token.is_empty() || token.len() > 64 {
            Ok(None)
        } else {
            dir.take_token(&sess::hash_id(&token), Purpose::Reset, now())
                .await
        };
        let (customer_id, email) = match taken {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.app
                    .metrics
                    .password_resets
                    .with_label_values(&["invalid"])
                    .inc();
                self.count_failure(session, snap, "reset-confirm").await;
                let html = self.app.pages.message(
                    "This link does not work any more",
                    "Reset links work once and for a limited time. Please ask for a new one.",
                    Some(("/_auth/reset", "Ask for a new link")),
                );
                return self.page(session, ctx, 400, html).await;
            }
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        PASSWORD_METHOD,
                        "customer directory unavailable during a reset",
                        &e,
                        ("/_auth/reset", "Try again"),
                    )
                    .await;
            }
        };
        if let Err(w) = password::check(&given, &email, snap.config.accounts.password_min_length) {
            // Not the email either: the link stays usable for another try.
            let ttl = snap.config.accounts.reset_ttl.as_secs() as i64;
            let _ = dir
                .put_token(
                    &sess::hash_id(&token),
                    &customer_id,
                    Purpose::Reset,
                    &email,
                    now() + ttl,
                )
                .await;
            errors.insert("password", w.to_string());
            return self
                .reset_page(session, ctx, snap, host, 422, &token, &errors)
                .await;
        }
        let outcome = async {
            let hash = self
                .hash_password(&given)
                .await
                .map_err(crate::customers::DirectoryError::Unavailable)?;
            dir.set_password(&customer_id, &email, &hash).await?;
            // Following the link proved the mailbox.
            dir.mark_verified(&customer_id, &email).await?;
            dir.customer(&customer_id).await
        }
        .await;
        let customer = match outcome {
            Ok(Some(c)) => c,
            Ok(None) => {
                let html = self.app.pages.message(
                    "This account no longer exists",
                    "There is nothing to reset.",
                    Some(("/", "Home")),
                );
                return self.page(session, ctx, 404, html).await;
            }
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        PASSWORD_METHOD,
                        "customer directory unavailable during a reset",
                        &e,
                        ("/_auth/reset", "Try again"),
                    )
                    .await;
            }
        };
        self.app
            .metrics
            .password_resets
            .with_label_values(&["completed"])
            .inc();
        match self.app.sessions.end(Group::Customer(&customer_id)).await {
            Ok(n) => {
                self.session_ended(Some(&customer_id), "password_reset", n)
                    .await
            }
            Err(e) => tracing::error!(error = %e, "sessions not ended after a password reset"),
        }
        let link = format!("{}/_auth/reset", snap.config.accounts.public_url);
        self.mail(snap, Kind::PasswordChanged, &email, Some(&link));
        self.sign_in(
            session,
            ctx,
            snap,
            host,
            customer,
            PASSWORD_METHOD,
            None,
            "/_account?notice=password_changed",
            Vec::new(),
        )
        .await
    }

    /// The customer a provider sign-in belongs to, or None when this method
    /// answered itself: a link to a signed-in account, an email match that
    /// needs proof, or a proof completed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn customer_for_login(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        provider: &str,
        found: &ExternalId,
        profile: &Profile,
        pending: &Pending,
        clear_login: &str,
    ) -> Result<Option<Customer>> {
        let dir = self.app.auth.directory().clone();
        let cookies = vec![clear_login.to_string()];
        match &pending.intent {
            Intent::Link { customer_id } => {
                let current = self.current_session(session, snap, host).await?;
                if current.as_ref().map(|s| s.customer_id.as_str()) != Some(customer_id.as_str()) {
                    let html = self.app.pages.message(
                        "Nothing was linked",
                        "You were signed out before the sign-in came back. Please sign in and try again.",
                        Some(("/_account", "Your account")),
                    );
                    self.page(session, ctx, 400, html).await?;
                    return Ok(None);
                }
                let to = match dir
                    .link(customer_id, found, crate::customers::IdentityKind::Oidc)
                    .await
                {
                    Ok(Link::Linked) => "/_account?notice=linked",
                    Ok(Link::AlreadyYours) => "/_account?notice=already_linked",
                    Ok(Link::OtherCustomer) => {
                        let html = self.app.pages.message(
                            "This sign-in belongs to another account",
                            "It was not added: it already signs in to a different customer account. Sign in with it and remove it there first, or contact customer service.",
                            Some(("/_account", "Your account")),
                        );
                        self.page(session, ctx, 409, html).await?;
                        return Ok(None);
                    }
                    Err(e) => {
                        self.dependency_down(
                            session,
                            ctx,
                            provider,
                            "customer directory unavailable while linking",
                            &e,
                            ("/_account", "Your account"),
                        )
                        .await?;
                        return Ok(None);
                    }
                };
                self.redirect(session, ctx, to, &cookies).await?;
                return Ok(None);
            }
            Intent::Prove => {
                let proof = match self.cookie_value(session, PROVE_COOKIE) {
                    Some(t) => self
                        .take_json_once::<Proof>("prove", &t)
                        .await
                        .ok()
                        .flatten(),
                    None => None,
                };
                let owner = dir.lookup(found).await.ok().flatten();
                return match (proof, owner) {
                    (Some(p), Some(c)) if c.id == p.customer_id => {
                        self.complete_proof(session, ctx, snap, host, c, &p).await?;
                        Ok(None)
                    }
                    _ => {
                        let html = self.app.pages.message(
                            "Nothing was linked",
                            "That sign-in does not belong to the existing account, or the confirmation took too long. Please start again.",
                            Some(("/_auth/login", "Sign in")),
                        );
                        self.write(
                            session,
                            ctx,
                            403,
                            "text/html; charset=utf-8",
                            html,
                            &[("set-cookie", sess::set_cookie(PROVE_COOKIE, "", 0))],
                        )
                        .await?;
                        Ok(None)
                    }
                };
            }
            Intent::SignIn => {}
        }
        let known = match dir.lookup(found).await {
            Ok(k) => k,
            Err(e) => {
                self.dependency_down(
                    session,
                    ctx,
                    provider,
                    "customer directory unavailable during login",
                    &e,
                    ("/", "Home"),
                )
                .await?;
                return Ok(None);
            }
        };
        if let Some(c) = known {
            return Ok(Some(c));
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
                    self.dependency_down(
                        session,
                        ctx,
                        provider,
                        "customer directory unavailable while linking",
                        &e,
                        ("/", "Home"),
                    )
                    .await?;
                    return Ok(None);
                }
                // Whoever won a race, the identity now has one owner.
                return Ok(dir.lookup(found).await.ok().flatten());
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
            self.ask_proof(session, ctx, snap, &existing, proof, clear_login)
                .await?;
            return Ok(None);
        }
        match dir
            .resolve(found, crate::customers::IdentityKind::Oidc, profile)
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                self.dependency_down(
                    session,
                    ctx,
                    provider,
                    "customer directory unavailable during login",
                    &e,
                    ("/", "Home"),
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// Keeps the proof and shows how the customer can prove the account.
    async fn ask_proof(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        existing: &Customer,
        proof: Proof,
        clear_login: &str,
    ) -> Result<()> {
        let token = sess::new_token();
        let stored = self
            .put_json_once("prove", &token, &proof, now() + PROVE_TTL)
            .await;
        if let Err(e) = stored {
            return self
                .dependency_down(
                    session,
                    ctx,
                    &proof.provider,
                    "session store unavailable for an account proof",
                    &e,
                    ("/_auth/login", "Sign in"),
                )
                .await;
        }
        self.app
            .metrics
            .logins
            .with_label_values(&[proof.provider.as_str(), "proof_asked"])
            .inc();
        let (csrf, csrf_cookie) = self.anon_csrf(session);
        let html = self
            .prove_page(snap, &existing.id, &proof, &csrf, None)
            .await;
        let mut headers = vec![
            ("set-cookie", clear_login.to_string()),
            (
                "set-cookie",
                sess::set_cookie(PROVE_COOKIE, &token, PROVE_TTL),
            ),
        ];
        headers.extend(csrf_cookie.map(|c| ("set-cookie", c)));
        self.write(
            session,
            ctx,
            200,
            "text/html; charset=utf-8",
            html,
            &headers,
        )
        .await
    }

    /// The page asking to prove the existing account: its password (if it
    /// has one) or a provider already linked to it.
    async fn prove_page(
        &self,
        snap: &Snapshot,
        customer_id: &str,
        proof: &Proof,
        csrf: &str,
        error: Option<&str>,
    ) -> String {
        let ways = self
            .app
            .auth
            .directory()
            .identities(customer_id)
            .await
            .unwrap_or_default();
        let providers: Vec<Value> = snap
            .config
            .login_providers()
            .filter(|p| ways.iter().any(|w| w.issuer == p.issuer))
            .map(|p| json!({ "name": p.name, "display_name": p.login.as_ref().map(|l| l.display_name.clone()) }))
            .collect();
        let provider_name = snap
            .config
            .providers
            .iter()
            .find(|p| p.name == proof.provider)
            .and_then(|p| p.login.as_ref())
            .map_or_else(|| proof.provider.clone(), |l| l.display_name.clone());
        self.app.pages.render(
            "prove.html",
            json!({
                "csrf": csrf, "email": proof.email, "provider_name": provider_name,
                "password": ways.iter().any(|w| w.issuer == PASSWORD_ISSUER),
                "providers": providers,
                "field_errors": { "password": error },
                "errors": error.map(|e| vec![json!({ "id": "prove-password", "text": e })]).unwrap_or_default(),
            }),
        )
    }

    /// `POST /_auth/prove`: the existing account's password proves it.
    async fn prove_with_password(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
    ) -> Result<()> {
        let form = Form(read_form(session).await?);
        let key = self
            .cookie_value(session, PROVE_COOKIE)
            .map(|t| once_key("prove", &t));
        let proof = match &key {
            Some(k) => self.app.sessions.take_once(k).await.ok().flatten(),
            None => None,
        }
        .and_then(|j| serde_json::from_str::<Proof>(&j).ok());
        let (Some(key), Some(proof)) = (key, proof) else {
            let html = self.app.pages.message(
                "Nothing was linked",
                "The confirmation took too long. Please sign in again.",
                Some(("/_auth/login", "Sign in")),
            );
            return self.page(session, ctx, 400, html).await;
        };
        let current = self.current_session(session, snap, host).await?;
        let account_key = crate::throttle::account(&proof.email);
        let refused = !self.form_ok(session, current.as_deref(), &form);
        if !refused
            && (self
                .throttled(session, ctx, snap, "password", false)
                .await?
                || self
                    .throttled_as(session, ctx, "password-account", &account_key, false)
                    .await?)
        {
            return Ok(());
        }
        let found = self
            .app
            .auth
            .directory()
            .password(&proof.email)
            .await
            .ok()
            .flatten();
        let given = form.get("password").to_string();
        let hash = found
            .as_ref()
            .map_or_else(|| self.app.dummy_hash.clone(), |(_, h)| h.clone());
        let matched = !refused
            && given.chars().count() <= password::MAX_LENGTH
            && tokio::task::spawn_blocking(move || password::verify(&hash, &given))
                .await
                .unwrap_or(false);
        match found.filter(|(c, _)| matched && c.id == proof.customer_id) {
            Some((c, _)) => {
                self.complete_proof(session, ctx, snap, host, c, &proof)
                    .await
            }
            None => {
                if !refused {
                    self.app.metrics.password_failures.inc();
                    self.count_failure(session, snap, "password").await;
                    crate::throttle::failed(
                        &*self.app.sessions,
                        "password-account",
                        &account_key,
                        &snap.config.abuse,
                    )
                    .await;
                }
                // Another try with the same proof.
                if let Ok(j) = serde_json::to_string(&proof) {
                    let _ = self
                        .app
                        .sessions
                        .put_once(&key, &j, now() + PROVE_TTL)
                        .await;
                }
                let (csrf, _) = self.anon_csrf(session);
                let text = if refused {
                    FORM_EXPIRED
                } else {
                    "The password is not right."
                };
                let html = self
                    .prove_page(snap, &proof.customer_id, &proof, &csrf, Some(text))
                    .await;
                self.page(session, ctx, if refused { 403 } else { 401 }, html)
                    .await
            }
        }
    }

    /// Links the waiting identity to the proven customer and signs them in.
    async fn complete_proof(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        host: &str,
        customer: Customer,
        proof: &Proof,
    ) -> Result<()> {
        let waiting = ExternalId {
            issuer: proof.issuer.clone(),
            subject: proof.subject.clone(),
        };
        let linked = self
            .app
            .auth
            .directory()
            .link(&customer.id, &waiting, crate::customers::IdentityKind::Oidc)
            .await;
        if let Err(e) = linked {
            return self
                .dependency_down(
                    session,
                    ctx,
                    &proof.provider,
                    "customer directory unavailable while linking",
                    &e,
                    ("/_auth/login", "Sign in"),
                )
                .await;
        }
        self.app
            .metrics
            .logins
            .with_label_values(&[proof.provider.as_str(), "proved"])
            .inc();
        self.sign_in(
            session,
            ctx,
            snap,
            host,
            customer,
            &proof.provider,
            proof.sid.clone(),
            &proof.return_to,
            vec![sess::set_cookie(PROVE_COOKIE, "", 0)],
        )
        .await
    }

    /// Answers `/_account…`. Always writes a response.
    pub(super) async fn account_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        host: &str,
    ) -> Result<()> {
        let snap = match ctx.snapshot.clone() {
            Some(s) => s,
            None => self.app.snapshot(),
        };
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let q = req.uri.query().map(str::to_string);
        let get = req.method == http::Method::GET || req.method == http::Method::HEAD;
        let post = req.method == http::Method::POST;
        let raw_host = Self::raw_host(req).unwrap_or(host).to_ascii_lowercase();
        let Some(me) = self.current_session(session, &snap, host).await? else {
            let back = if get {
                path.clone()
            } else {
                "/_account".to_string()
            };
            let to = format!("/_auth/login?return_to={}", enc(&back));
            return self.redirect(session, ctx, &to, &[]).await;
        };
        if path == "/_account/consent" || path.starts_with("/_account/consent/") {
            let form = if post {
                let form = Form(read_form(session).await?);
                if !self.form_ok(session, Some(&me), &form) {
                    let html = self.app.pages.message(
                        "The form had expired",
                        "Nothing was changed. Please make your choice again.",
                        Some(("/_account/consent", "Your consents")),
                    );
                    return self.page(session, ctx, 403, html).await;
                }
                Some(form)
            } else if get {
                None
            } else {
                let html = self.app.pages.message(
                    "Page not found",
                    "There is nothing at this address.",
                    Some(("/_account", "Your account")),
                );
                return self.page(session, ctx, 404, html).await;
            };
            return self
                .consent_endpoint(
                    session,
                    ctx,
                    &snap,
                    &me,
                    &path,
                    q.as_deref(),
                    &raw_host,
                    form,
                )
                .await;
        }
        if get && path == "/_account" {
            let notice = query(q.as_deref(), "notice").and_then(|n| notice_text(&n));
            return self
                .account_page(session, ctx, &snap, &me, 200, notice, &Errors::new())
                .await;
        }
        if get {
            if let Some(name) = path.strip_prefix("/_account/link/") {
                let name = name.to_string();
                let intent = Intent::Link {
                    customer_id: me.customer_id.clone(),
                };
                return self
                    .start_login(
                        session,
                        ctx,
                        &snap,
                        &name,
                        &raw_host,
                        "/_account".into(),
                        intent,
                    )
                    .await;
            }
        }
        if !post {
            let html = self.app.pages.message(
                "Page not found",
                "There is nothing at this address.",
                Some(("/_account", "Your account")),
            );
            return self.page(session, ctx, 404, html).await;
        }
        let form = Form(read_form(session).await?);
        if !self.form_ok(session, Some(&me), &form) {
            let mut errors = Errors::new();
            errors.insert("name", FORM_EXPIRED.into());
            return self
                .account_page(session, ctx, &snap, &me, 403, None, &errors)
                .await;
        }
        let dir = self.app.auth.directory().clone();
        let done = match path.as_str() {
            "/_account/profile" => match accounts::normalize_name(form.get("name")) {
                Ok(name) => match dir.set_name(&me.customer_id, name.as_deref()).await {
                    Ok(Some(c)) => {
                        self.refresh_sessions(&c).await;
                        Ok("profile_saved")
                    }
                    Ok(None) => Ok("profile_saved"),
                    Err(e) => Err(e.to_string()),
                },
                Err(why) => {
                    let mut errors = Errors::new();
                    errors.insert("name", why.into());
                    return self
                        .account_page(session, ctx, &snap, &me, 422, None, &errors)
                        .await;
                }
            },
            "/_account/verify" => {
                let who = format!("cust-{}", me.customer_id);
                if self
                    .throttled_as(session, ctx, "verify-mail", &who, false)
                    .await?
                {
                    return Ok(());
                }
                crate::throttle::failed(
                    &*self.app.sessions,
                    "verify-mail",
                    &who,
                    &snap.config.abuse,
                )
                .await;
                match (&me.email, me.email_verified) {
                    (Some(email), false) => {
                        self.send_verification(&snap, &me.customer_id, email).await;
                        Ok("verification_sent")
                    }
                    _ => Ok("profile_saved"),
                }
            }
            "/_account/unlink" => {
                let id = ExternalId {
                    issuer: form.get("issuer").into(),
                    subject: form.get("subject").into(),
                };
                match dir.unlink(&me.customer_id, &id).await {
                    Ok(Unlink::Unlinked) => Ok("unlinked"),
                    Ok(Unlink::Last) => Ok("last_way_in"),
                    Ok(Unlink::NotFound) => Ok("unlinked"),
                    Err(e) => Err(e.to_string()),
                }
            }
            "/_account/sessions/end" => {
                let target = form.get("session").to_string();
                match self.app.sessions.list(&me.customer_id, now()).await {
                    Ok(list)
                        if list
                            .iter()
                            .any(|s| s.id_hash == target && target != me.id_hash) =>
                    {
                        match self.app.sessions.delete(&target).await {
                            Ok(()) => {
                                self.session_ended(Some(&me.customer_id), "ended_from_account", 1)
                                    .await;
                                Ok("session_ended")
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Ok(_) => Ok("session_ended"),
                    Err(e) => Err(e.to_string()),
                }
            }
            "/_account/password" if snap.config.accounts.passwords => {
                return self.account_password(session, ctx, &snap, &me, &form).await;
            }
            _ => {
                let html = self.app.pages.message(
                    "Page not found",
                    "There is nothing at this address.",
                    Some(("/_account", "Your account")),
                );
                return self.page(session, ctx, 404, html).await;
            }
        };
        match done {
            Ok(code) => {
                self.redirect(session, ctx, &format!("/_account?notice={code}"), &[])
                    .await
            }
            Err(e) => {
                self.dependency_down(
                    session,
                    ctx,
                    &me.provider,
                    "account change failed",
                    &e,
                    ("/_account", "Your account"),
                )
                .await
            }
        }
    }

    /// `POST /_account/password`: add a password (a new way in) or change it
    /// (the current one is asked; other sessions end).
    async fn account_password(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        me: &Browser,
        form: &Form,
    ) -> Result<()> {
        let dir = self.app.auth.directory().clone();
        let ways = match dir.identities(&me.customer_id).await {
            Ok(w) => w,
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        &me.provider,
                        "customer directory unavailable",
                        &e,
                        ("/_account", "Your account"),
                    )
                    .await;
            }
        };
        let mut errors = Errors::new();
        let existing = ways
            .iter()
            .find(|w| w.issuer == PASSWORD_ISSUER)
            .map(|w| w.subject.clone());
        let email = match &existing {
            Some(e) => e.clone(),
            None => match accounts::normalize_email(form.get("email")) {
                Ok(e) => e,
                Err(why) => {
                    errors.insert("email", why.into());
                    String::new()
                }
            },
        };
        if existing.is_some() {
            let who = format!("cust-{}", me.customer_id);
            if self
                .throttled_as(session, ctx, "password-account", &who, false)
                .await?
            {
                return Ok(());
            }
            let current_ok = match dir.password(&email).await {
                Ok(Some((c, hash))) if c.id == me.customer_id => {
                    let given = form.get("current").to_string();
                    tokio::task::spawn_blocking(move || password::verify(&hash, &given))
                        .await
                        .unwrap_or(false)
                }
                _ => false,
            };
            if !current_ok {
                self.app.metrics.password_failures.inc();
                crate::throttle::failed(
                    &*self.app.sessions,
                    "password-account",
                    &who,
                    &snap.config.abuse,
                )
                .await;
                errors.insert("current", "The current password is not right.".into());
            }
        }
        if errors.is_empty() {
            if let Some(why) = self.weak_password(snap, form.get("password"), &email).await {
                errors.insert("password", why);
            }
        }
        if !errors.is_empty() {
            return self
                .account_page(session, ctx, snap, me, 422, None, &errors)
                .await;
        }
        let result = match self.hash_password(form.get("password")).await {
            Ok(h) => dir
                .set_password(&me.customer_id, &email, &h)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(SetPassword::EmailTaken) => {
                errors.insert(
                    "email",
                    "This address already signs in to another account.".into(),
                );
                self.account_page(session, ctx, snap, me, 409, None, &errors)
                    .await
            }
            Ok(SetPassword::Linked) => {
                self.redirect(session, ctx, "/_account?notice=password_added", &[])
                    .await
            }
            Ok(SetPassword::Changed) => {
                // Every other session of the customer ends; this one stays.
                let mut ended = 0;
                if let Ok(list) = self.app.sessions.list(&me.customer_id, now()).await {
                    for s in list.iter().filter(|s| s.id_hash != me.id_hash) {
                        if self.app.sessions.delete(&s.id_hash).await.is_ok() {
                            ended += 1;
                        }
                    }
                }
                self.session_ended(Some(&me.customer_id), "password_changed", ended)
                    .await;
                let link = format!("{}/_auth/reset", snap.config.accounts.public_url);
                self.mail(snap, Kind::PasswordChanged, &email, Some(&link));
                self.redirect(session, ctx, "/_account?notice=password_changed", &[])
                    .await
            }
            Err(e) => {
                self.dependency_down(
                    session,
                    ctx,
                    &me.provider,
                    "password change failed",
                    &e,
                    ("/_account", "Your account"),
                )
                .await
            }
        }
    }

    /// The account page.
    #[allow(clippy::too_many_arguments)]
    async fn account_page(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        me: &Browser,
        status: u16,
        notice: Option<&str>,
        errors: &Errors,
    ) -> Result<()> {
        let dir = self.app.auth.directory();
        let fetched = async {
            let c = dir
                .customer(&me.customer_id)
                .await
                .map_err(|e| e.to_string())?;
            let ways = dir
                .identities(&me.customer_id)
                .await
                .map_err(|e| e.to_string())?;
            let sessions = self
                .app
                .sessions
                .list(&me.customer_id, now())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((c, ways, sessions))
        }
        .await;
        let (customer, ways, sessions) = match fetched {
            Ok((Some(c), w, s)) => (c, w, s),
            Ok((None, _, _)) => {
                let html = self.app.pages.message(
                    "This account no longer exists",
                    "Please sign in again.",
                    Some(("/_auth/login", "Sign in")),
                );
                return self.page(session, ctx, 404, html).await;
            }
            Err(e) => {
                return self
                    .dependency_down(
                        session,
                        ctx,
                        &me.provider,
                        "account page unavailable",
                        &e,
                        ("/_account", "Try again"),
                    )
                    .await;
            }
        };
        let label_of = |issuer: &str| {
            snap.config
                .providers
                .iter()
                .find(|p| p.issuer == issuer)
                .map(|p| {
                    p.login
                        .as_ref()
                        .map_or_else(|| p.name.clone(), |l| l.display_name.clone())
                })
        };
        let identities: Vec<Value> = ways
            .iter()
            .map(|w| {
                let label = if w.issuer == PASSWORD_ISSUER {
                    format!("Password ({})", w.subject)
                } else {
                    label_of(&w.issuer).unwrap_or_else(|| w.issuer.clone())
                };
                json!({ "issuer": w.issuer, "subject": w.subject, "label": label })
            })
            .collect();
        let linkable: Vec<Value> = snap
            .config
            .login_providers()
            .filter(|p| !ways.iter().any(|w| w.issuer == p.issuer))
            .map(|p| json!({ "name": p.name, "display_name": p.login.as_ref().map(|l| l.display_name.clone()) }))
            .collect();
        let method_label = |m: &str| {
            if m == PASSWORD_METHOD {
                "a password".to_string()
            } else {
                snap.config
                    .providers
                    .iter()
                    .find(|p| p.name == m)
                    .and_then(|p| p.login.as_ref())
                    .map_or_else(|| m.to_string(), |l| l.display_name.clone())
            }
        };
        let rows: Vec<Value> = sessions
            .iter()
            .map(|s| {
                json!({
                    "device": s.device.clone().unwrap_or_else(|| "Unknown device".into()),
                    "current": s.id_hash == me.id_hash,
                    "created": when(s.created_at),
                    "last_seen": when(s.last_seen),
                    "method": method_label(&s.provider),
                    "ref": s.id_hash,
                })
            })
            .collect();
        let mut summary_errors = Vec::new();
        for (field, text) in errors {
            let form = match *field {
                "name" => "profile",
                "current" => "change",
                "email" => "add",
                _ if ways.iter().any(|w| w.issuer == PASSWORD_ISSUER) => "change",
                _ => "add",
            };
            summary_errors.push(json!({ "id": format!("{form}-{field}"), "text": text }));
        }
        let html = self.app.pages.render(
            "account.html",
            json!({
                "csrf": me.csrf,
                "email": customer.email,
                "email_verified": customer.email_verified,
                "name": customer.name,
                "identities": identities,
                "linkable": linkable,
                "passwords": snap.config.accounts.passwords,
                "has_password": ways.iter().any(|w| w.issuer == PASSWORD_ISSUER),
                "min_length": snap.config.accounts.password_min_length,
                "sessions": rows,
                "notice": notice,
                "field_errors": errors,
                "errors": summary_errors,
            }),
        );
        self.page(session, ctx, status, html).await
    }
}

/// What the sign-in page shows besides its forms.
#[derive(Debug, Default)]
pub(super) struct SigninState {
    pub login_email: String,
    pub login_errors: Errors,
    pub register_email: String,
    pub register_name: String,
    pub register_errors: Errors,
    /// An error of the whole form (expired CSRF token).
    pub form_error: Option<String>,
    pub notice: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_795_988_400), "2026-11-29 21:40 UTC");
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert!(notice_text("linked").is_some());
        assert!(notice_text("<script>").is_none());
    }
}
