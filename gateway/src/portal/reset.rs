//! Password reset: asking for a link (`/_auth/reset`) and choosing a new
//! password with it (`/_auth/reset/confirm`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::guard::PasswordsOn;
use super::register::MailedToken;
use super::request::Query;
use super::respond::*;
use super::signin::Submitted;
use super::*;
use crate::accounts::mail::Kind;
use crate::accounts::{self, password, Purpose};
use crate::session::{self as sess, Group};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_auth/reset", get(ask_page).post(ask))
        .route("/_auth/reset/confirm", get(confirm_page).post(confirm))
}

#[derive(Deserialize)]
struct ResetQuery {
    return_to: Option<String>,
    token: Option<String>,
}

async fn ask_page(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    Query(q): Query<ResetQuery>,
    rq: Req,
) -> Result<Response> {
    let to = p.return_to(&rq.snap, rq.conn.here.as_ref(), q.return_to.as_deref());
    p.reset_request_page(
        &rq,
        &rq.snap,
        &rq.conn.host,
        200,
        &to,
        "",
        &Errors::new(),
        false,
    )
    .await
}

async fn ask(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    sub: Submitted<AskForm>,
) -> Result<Response> {
    p.reset_request(&sub, &sub.rq.snap, &sub.rq.conn.host).await
}

async fn confirm_page(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    Query(q): Query<ResetQuery>,
    rq: Req,
) -> Result<Response> {
    let token = q.token.unwrap_or_default();
    // Checked on open, as verification is: a dead link says so before a
    // new password is typed.
    let live = if token.is_empty() || token.len() > 64 {
        Ok(false)
    } else {
        let hash = sess::hash_id(&token);
        p.app
            .auth
            .directory()
            .token_live(&hash, Purpose::Reset, now())
            .await
    };
    match live {
        Ok(true) => {
            p.reset_page(&rq, &rq.snap, &rq.conn.host, 200, &token, &Errors::new())
                .await
        }
        Ok(false) => p.dead_reset_link(&rq).await,
        Err(e) => {
            let retry = ("/_auth/reset", "common.try_again");
            p.dependency_down(
                &rq,
                PASSWORD_METHOD,
                "customer directory unavailable opening a reset link",
                &e,
                retry,
            )
            .await
        }
    }
}

async fn confirm(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    sub: Submitted<NewPasswordForm>,
) -> Result<Response> {
    p.reset_confirm(&sub, &sub.rq.snap, &sub.rq.conn.host).await
}

/// `POST /_auth/reset`: the address to mail a link to.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct AskForm {
    email: String,
    return_to: String,
}

/// `POST /_auth/reset/confirm`: the mailed token and the new password.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct NewPasswordForm {
    token: String,
    password: String,
}

/// The return URL a reset carries (from the mailed link, then the form), checked.
fn carried_return_to(p: &Portal, rq: &Req) -> String {
    let form = rq.form();
    let raw = rq
        .query("return_to")
        .or_else(|| Some(form.get("return_to").to_string()).filter(|s| !s.is_empty()));
    p.return_to(&rq.snap, rq.conn.here.as_ref(), raw.as_deref())
}

/// Whether a checked return URL is just the home page (`/`, or the root of
/// a host): nothing worth carrying. Pure.
pub(super) fn is_home(return_to: &str) -> bool {
    return_to == "/" || Url::parse(return_to).is_ok_and(|u| u.path() == "/" && u.query().is_none())
}

/// `&return_to=…` for a mailed link, unless it is the home page.
pub(super) fn carry(return_to: &str) -> String {
    if is_home(return_to) {
        String::new()
    } else {
        format!("&return_to={}", enc(return_to))
    }
}

impl Portal {
    /// The page of a reset link that was used or has expired.
    pub(super) async fn dead_reset_link(&self, rq: &Req) -> Result<Response> {
        let html = self.msg(
            rq,
            "message.dead_reset",
            Some(("/_auth/reset", "reset.ask_again")),
        );
        self.page(rq, 400, html).await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn reset_request_page(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        status: u16,
        return_to: &str,
        email: &str,
        errors: &Errors,
        sent: bool,
    ) -> Result<Response> {
        let (csrf, cookie) = self.form_token(rq, snap, host).await?;
        let html = self.render(
            rq,
            "reset_request.html",
            json!({
                "csrf": csrf, "return_to": return_to, "email": email, "sent": sent,
                "field_errors": errors, "errors": summary("reset", errors),
                "ttl": self.app.pages.duration(&self.lang(rq), snap.config.accounts.reset_ttl),
            }),
        );
        self.form_page(rq, status, html, cookie).await
    }

    /// `POST /_auth/reset`: always answers "sent", account or not.
    pub(super) async fn reset_request(
        &self,
        sub: &Submitted<AskForm>,
        snap: &Snapshot,
        host: &str,
    ) -> Result<Response> {
        let (rq, form) = (&sub.rq, &sub.form);
        let return_to = self.return_to(snap, rq.conn.here.as_ref(), Some(&form.return_to));
        let typed = form.email.trim().to_string();
        let mut errors = Errors::new();
        if !sub.fresh {
            errors.insert("email", self.tr(rq, "field.form_expired"));
            return self
                .reset_request_page(rq, snap, host, 403, &return_to, &typed, &errors, false)
                .await;
        }
        let email = match accounts::normalize_email(&typed) {
            Ok(e) => e,
            Err(why) => {
                errors.insert("email", self.tr(rq, why));
                return self
                    .reset_request_page(rq, snap, host, 422, &return_to, &typed, &errors, false)
                    .await;
            }
        };
        // Every request counts, per client and per address: mails are not a hose.
        self.count_failure(rq, snap, "reset").await;
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
                    let token = MailedToken {
                        customer_id: &c.id,
                        purpose: Purpose::Reset,
                        email: &email,
                        ttl: snap.config.accounts.reset_ttl,
                    };
                    let stored = self
                        .mailed_link(snap, token, "/_auth/reset/confirm", &carry(&return_to))
                        .await;
                    match stored {
                        Ok(link) => {
                            self.mail(
                                rq,
                                snap,
                                Kind::Reset,
                                &email,
                                c.name.as_deref(),
                                Some(&link),
                            );
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot keep a reset token; no mail sent")
                        }
                    }
                }
                Ok(None) => self.mail(rq, snap, Kind::ResetUnknown, &email, None, None),
                Err(e) => tracing::error!(error = %e, "customer directory unavailable for a reset"),
            }
        }
        self.reset_request_page(
            rq,
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
    pub(super) async fn reset_page(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        status: u16,
        token: &str,
        errors: &Errors,
    ) -> Result<Response> {
        let (csrf, cookie) = self.form_token(rq, snap, host).await?;
        let return_to = carried_return_to(self, rq);
        let html = self.render(
            rq,
            "reset.html",
            json!({
                "csrf": csrf, "token": token, "field_errors": errors, "return_to": return_to,
                "errors": summary("new", errors),
                "min_length": snap.config.accounts.password_min_length,
            }),
        );
        self.form_page(rq, status, html, cookie).await
    }

    /// `POST /_auth/reset/confirm`: a new password from a mailed link; every
    /// session of the customer ends, and this browser is signed in afresh.
    pub(super) async fn reset_confirm(
        &self,
        sub: &Submitted<NewPasswordForm>,
        snap: &Snapshot,
        host: &str,
    ) -> Result<Response> {
        let (rq, form) = (&sub.rq, &sub.form);
        let token = form.token.clone();
        let mut errors = Errors::new();
        if !sub.fresh {
            errors.insert("password", self.tr(rq, "field.form_expired"));
            return self.reset_page(rq, snap, host, 403, &token, &errors).await;
        }
        let given = form.password.clone();
        // The policy first, so a refused password does not spend the link.
        if let Some(why) = self.weak_password(rq, snap, &given, "").await {
            errors.insert("password", why);
            return self.reset_page(rq, snap, host, 422, &token, &errors).await;
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
                self.count_failure(rq, snap, "reset-confirm").await;
                return self.dead_reset_link(rq).await;
            }
            Err(e) => {
                return self
                    .dependency_down(
                        rq,
                        PASSWORD_METHOD,
                        "customer directory unavailable during a reset",
                        &e,
                        ("/_auth/reset", "common.try_again"),
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
            return self.reset_page(rq, snap, host, 422, &token, &errors).await;
        }
        let outcome = async {
            let hash = self
                .hash_password(&given)
                .await
                .map_err(|e| crate::customers::DirectoryError::Unavailable(e.to_string()))?;
            dir.set_password(&customer_id, &email, &hash).await?;
            // Following the link proved the mailbox.
            dir.mark_verified(&customer_id, &email).await?;
            dir.customer(&customer_id).await
        }
        .await;
        let customer = match outcome {
            Ok(Some(c)) => c,
            Ok(None) => {
                let html = self.msg_with(
                    rq,
                    "message.account_gone",
                    &self.tr(rq, "message.account_gone.reset"),
                    Some(("/", "common.home")),
                );
                return self.page(rq, 404, html).await;
            }
            Err(e) => {
                return self
                    .dependency_down(
                        rq,
                        PASSWORD_METHOD,
                        "customer directory unavailable during a reset",
                        &e,
                        ("/_auth/reset", "common.try_again"),
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
        self.mail(rq, snap, Kind::PasswordChanged, &email, None, Some(&link));
        // Back where the customer was when they asked, else the account.
        let after = match carried_return_to(self, rq) {
            to if is_home(&to) => "/_account?notice=password_changed".to_string(),
            to => to,
        };
        self.sign_in(
            rq,
            snap,
            host,
            customer,
            PASSWORD_METHOD,
            None,
            &after,
            Vec::new(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_page_beyond_home_is_carried_in_a_mail_link() {
        assert_eq!(carry("/"), "");
        assert_eq!(carry("https://shop.test:8443/"), "");
        assert_eq!(
            carry("https://shop.test/account?tab=orders"),
            "&return_to=https%3A%2F%2Fshop.test%2Faccount%3Ftab%3Dorders"
        );
        assert!(!is_home("https://shop.test/?q=1"));
    }
}
