//! Registration with a password (`/_auth/register`), also late, at checkout.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::guard::PasswordsOn;
use super::request::{Query, ReturnQuery};
use super::respond::*;
use super::signin::{SigninState, Submitted};
use super::*;
use crate::accounts::mail::Kind;
use crate::accounts::{self, password, Purpose};
use crate::session::{self as sess};
use crate::state::Snapshot;

/// `POST /_auth/register`.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct RegisterForm {
    email: String,
    password: String,
    name: String,
    return_to: String,
    /// `{purpose}:{version}` of every box ticked.
    #[serde(deserialize_with = "super::request::many")]
    grant: Vec<String>,
}

/// A token to mail: for whom, what for, which address, how long it works.
pub(super) struct MailedToken<'a> {
    pub customer_id: &'a str,
    pub purpose: Purpose,
    pub email: &'a str,
    pub ttl: std::time::Duration,
}

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_auth/register", get(form).post(submit))
        .route("/_auth/welcome", get(welcome))
}

/// `/_auth/welcome`: after registering, where the confirmation link went
/// and the way back to where the customer was.
async fn welcome(
    State(p): State<Arc<Portal>>,
    Query(q): Query<ReturnQuery>,
    rq: Req,
) -> Result<Response> {
    let to = p.return_to(&rq.snap, rq.conn.here.as_ref(), q.return_to.as_deref());
    let me = p.current_session(&rq, &rq.snap, &rq.conn.host).await?;
    let Some(me) = me.filter(|s| !s.email_verified && s.email.is_some()) else {
        return p.redirect(&rq, &to, &[]).await;
    };
    let ttl = p
        .app
        .pages
        .duration(&p.lang(&rq), rq.snap.config.accounts.verification_ttl);
    // Through the sign-in entry, which carries the session to another host.
    let next = format!("/_auth/login?return_to={}", enc(&to));
    let html = p.render(
        &rq,
        "welcome.html",
        minijinja::context! { name => me.name, email => me.email, ttl, continue => next },
    );
    p.page(&rq, 200, html).await
}

async fn form(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    Query(q): Query<ReturnQuery>,
    rq: Req,
) -> Result<Response> {
    let to = p.return_to(&rq.snap, rq.conn.here.as_ref(), q.return_to.as_deref());
    let state = super::signin::SigninState::default();
    p.signin_page(&rq, &rq.snap, &rq.conn.host, 200, true, &to, &state)
        .await
}

async fn submit(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    sub: Submitted<RegisterForm>,
) -> Result<Response> {
    let rq = &sub.rq;
    p.register(&sub, &rq.snap, &rq.conn.host, &rq.raw_host())
        .await
}

impl Portal {
    /// `POST /_auth/register`.
    pub(super) async fn register(
        &self,
        sub: &Submitted<RegisterForm>,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
    ) -> Result<Response> {
        let (rq, form) = (&sub.rq, &sub.form);
        let return_to = self.return_to(snap, rq.conn.here.as_ref(), Some(&form.return_to));
        let mut state = SigninState {
            register_email: form.email.trim().to_string(),
            register_name: form.name.trim().to_string(),
            // A form error keeps every choice made, never records a decline.
            register_ticked: form.grant.clone(),
            ..SigninState::default()
        };
        if !sub.fresh {
            state.form_error = Some(self.tr(rq, "field.form_expired"));
            return self
                .signin_page(rq, snap, host, 403, true, &return_to, &state)
                .await;
        }
        let (email, name) = self.check_registration(rq, snap, form, &mut state).await;
        let given = form.password.as_str();
        let ticked: Vec<&str> = form.grant.iter().map(String::as_str).collect();
        let Some(email) = email.filter(|_| state.register_errors.is_empty()) else {
            self.app
                .metrics
                .registrations
                .with_label_values(&["invalid"])
                .inc();
            return self
                .signin_page(rq, snap, host, 422, true, &return_to, &state)
                .await;
        };
        let hash = match self.hash_password(given).await {
            Ok(h) => h,
            Err(Hashed::Busy(busy)) => {
                return self
                    .hashing_busy(rq, busy, ("/_auth/register", "common.try_again"))
                    .await;
            }
            Err(e) => {
                return self
                    .dependency_down(
                        rq,
                        PASSWORD_METHOD,
                        "password hashing failed",
                        &e,
                        ("/_auth/register", "common.try_again"),
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
                        rq,
                        PASSWORD_METHOD,
                        "customer directory unavailable during registration",
                        &e,
                        ("/_auth/register", "common.try_again"),
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
            self.count_failure(rq, snap, "register").await;
            state
                .register_errors
                .insert("email", self.tr(rq, "register.taken"));
            state.login_email = email;
            return self
                .signin_page(rq, snap, host, 409, true, &return_to, &state)
                .await;
        };
        self.app
            .metrics
            .registrations
            .with_label_values(&["created"])
            .inc();
        tracing::info!(customer_id = %customer.id, "customer registered with a password");
        let decisions = self.registration_choices(rq, raw_host, &snap.config.purposes, &ticked);
        if let Err(e) = self.record_consents(&customer.id, &decisions).await {
            return self
                .dependency_down(
                    rq,
                    PASSWORD_METHOD,
                    "consent could not be recorded at registration",
                    &e,
                    ("/_auth/register", "common.try_again"),
                )
                .await;
        }
        self.send_verification(rq, snap, &customer.id, &email, name.as_deref(), &return_to)
            .await;
        // Signed in at once; the next page says where the link went.
        let welcome = format!("/_auth/welcome?return_to={}", enc(&return_to));
        self.sign_in(
            rq,
            snap,
            host,
            customer,
            PASSWORD_METHOD,
            None,
            &welcome,
            Vec::new(),
        )
        .await
    }

    /// Checks a registration form: the normalised email and name, with
    /// every problem (email, name, password, terms) put into `state`.
    async fn check_registration(
        &self,
        rq: &Req,
        snap: &Snapshot,
        form: &RegisterForm,
        state: &mut SigninState,
    ) -> (Option<String>, Option<String>) {
        let email = accounts::normalize_email(&form.email)
            .map_err(|e| state.register_errors.insert("email", self.tr(rq, e)))
            .ok();
        let name = accounts::normalize_name(&form.name)
            .map_err(|e| state.register_errors.insert("name", self.tr(rq, e)))
            .ok()
            .flatten();
        let given = form.password.as_str();
        if given.is_empty() {
            state
                .register_errors
                .insert("password", self.tr(rq, "register.no_password"));
        } else if let Some(why) = self
            .weak_password(rq, snap, given, email.as_deref().unwrap_or(""))
            .await
        {
            state.register_errors.insert("password", why);
        }
        let is_ticked =
            |p: &crate::consent::Purpose| form.grant.contains(&format!("{}:{}", p.id, p.version));
        if snap
            .config
            .purposes
            .iter()
            .any(|p| p.required && !is_ticked(p))
        {
            state
                .register_errors
                .insert("terms", self.tr(rq, "register.accept_terms"));
        }
        (email, name)
    }

    /// Every purpose shown at registration gets its answer in the ledger
    /// (unticked: declined).
    fn registration_choices(
        &self,
        rq: &Req,
        raw_host: &str,
        purposes: &[crate::consent::Purpose],
        ticked: &[&str],
    ) -> Vec<crate::consent::Decision> {
        purposes
            .iter()
            .map(|p| {
                let yes = ticked.contains(&format!("{}:{}", p.id, p.version).as_str());
                let action = if yes {
                    crate::consent::Action::Grant
                } else {
                    crate::consent::Action::Withdraw
                };
                self.decision(rq, raw_host, p, action, "registration")
            })
            .collect()
    }

    /// Checks a new password: the policy, then the breached-password
    /// service if configured (unreachable: the policy alone decides). The
    /// answer is why not, in the request's language.
    pub(super) async fn weak_password(
        &self,
        rq: &Req,
        snap: &Snapshot,
        given: &str,
        email: &str,
    ) -> Option<String> {
        let why = |w: password::Weak| {
            let (key, n) = w.text_key();
            let n = n.map(|n| n.to_string()).unwrap_or_default();
            self.tra(rq, key, &[("n", &n)])
        };
        if let Err(w) = password::check(given, email, snap.config.accounts.password_min_length) {
            return Some(why(w));
        }
        let api = snap.config.accounts.breached_password_api.as_deref()?;
        let (prefix, suffix) = password::range_key(given);
        match self.app.http.get_text(&format!("{api}{prefix}")).await {
            Ok(body) if password::range_lists(&body, &suffix) => {
                Some(why(password::Weak::Breached))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "breached-password service unreachable; policy alone applies");
                None
            }
        }
    }

    /// Hashes on the bounded hashing pool.
    pub(super) async fn hash_password(&self, given: &str) -> std::result::Result<String, Hashed> {
        let (cost, given) = (self.app.argon2, given.to_string());
        match self
            .app
            .hashing
            .run(move || password::hash(&cost, &given))
            .await
        {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => Err(Hashed::Failed(e)),
            Err(busy) => Err(Hashed::Busy(busy)),
        }
    }

    /// Whether `given` is the password `hash` holds, on the bounded pool.
    pub(super) async fn verify_password(
        &self,
        hash: String,
        given: String,
    ) -> std::result::Result<bool, crate::accounts::hashing::Busy> {
        self.app
            .hashing
            .run(move || password::verify(&hash, &given))
            .await
    }

    /// Mails a verification link for `email` (failures are logged).
    pub(super) async fn send_verification(
        &self,
        rq: &Req,
        snap: &Snapshot,
        customer_id: &str,
        email: &str,
        name: Option<&str>,
        return_to: &str,
    ) {
        let token = MailedToken {
            customer_id,
            purpose: Purpose::Verify,
            email,
            ttl: snap.config.accounts.verification_ttl,
        };
        let tail = super::reset::carry(return_to);
        match self.mailed_link(snap, token, "/_auth/verify", &tail).await {
            Ok(link) => self.mail(rq, snap, Kind::Verify, email, name, Some(&link)),
            Err(e) => tracing::error!(error = %e, "cannot keep a verification token; no mail sent"),
        }
    }

    /// Keeps a new single-use token (its hash only) and answers the link
    /// to mail: `{public_url}{path}?token=…{tail}`.
    pub(super) async fn mailed_link(
        &self,
        snap: &Snapshot,
        t: MailedToken<'_>,
        path: &str,
        tail: &str,
    ) -> std::result::Result<String, crate::customers::DirectoryError> {
        let token = sess::new_token();
        let expires_at = now() + t.ttl.as_secs() as i64;
        self.app
            .auth
            .directory()
            .put_token(
                &sess::hash_id(&token),
                t.customer_id,
                t.purpose,
                t.email,
                expires_at,
            )
            .await?;
        Ok(format!(
            "{}{path}?token={}{tail}",
            snap.config.accounts.public_url,
            enc(&token)
        ))
    }

    /// Composes a mail in the request's language and sends it in the
    /// background (no channel: logged).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mail(
        &self,
        rq: &Req,
        snap: &Snapshot,
        kind: Kind,
        to: &str,
        name: Option<&str>,
        link: Option<&str>,
    ) {
        let ttl = match kind {
            Kind::Reset => snap.config.accounts.reset_ttl,
            _ => snap.config.accounts.verification_ttl,
        };
        let ttl = self.app.pages.duration(&self.lang(rq), ttl);
        let content = crate::pages::MailContent {
            name,
            link,
            ttl: &ttl,
            address: None,
            reference: None,
        };
        self.send_mail(rq, kind, to, content);
    }

    /// Renders `content` as a `kind` mail in the request's language and
    /// sends it in the background (no channel: logged).
    pub(super) fn send_mail(
        &self,
        rq: &Req,
        kind: Kind,
        to: &str,
        content: crate::pages::MailContent<'_>,
    ) {
        let Some(mailer) = &self.app.mailer else {
            tracing::warn!(
                kind = kind.as_str(),
                "no mail channel configured; mail not sent"
            );
            return;
        };
        let m = self.app.pages.mail(&self.lang(rq), kind, to, content);
        mailer.send_later(m, self.app.metrics.mail_failures.clone());
    }
}

/// Why a password could not be hashed.
#[derive(Debug)]
pub(super) enum Hashed {
    /// The pool is full: answered 503 at once.
    Busy(crate::accounts::hashing::Busy),
    Failed(String),
}

impl std::fmt::Display for Hashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hashed::Busy(b) => write!(f, "{b}"),
            Hashed::Failed(e) => write!(f, "password hashing failed: {e}"),
        }
    }
}
