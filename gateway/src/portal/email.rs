//! Changing the email address: asked on the account page (with the
//! current password when the account has one), confirmed from the link
//! mailed to the new address (`/_auth/email/confirm`); the old address is
//! told afterwards.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::account::Account;
use super::request::{Query, TokenQuery};
use super::respond::*;
use super::*;
use crate::accounts::mail::Kind;
use crate::accounts::{self, Purpose};
use crate::customers::ChangeEmail;
use crate::session::{self as sess, Session as Browser};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_account/email", post(ask))
        .route("/_auth/email/confirm", get(confirm))
}

/// `/_account/email`: the new address, and the password when there is one.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct EmailForm {
    new_email: String,
    current: String,
}

async fn ask(
    State(p): State<Arc<Portal>>,
    Account { rq, me, form }: Account<EmailForm>,
) -> Result<Response> {
    p.ask_email_change(&rq, &rq.snap, &me, &form).await
}

async fn confirm(
    State(p): State<Arc<Portal>>,
    Query(q): Query<TokenQuery>,
    rq: Req,
) -> Result<Response> {
    p.confirm_email_change(&rq, &rq.snap, q.token.as_deref().unwrap_or_default())
        .await
}

impl Portal {
    /// `POST /_account/email`: checks the new address (and the password),
    /// then mails it a confirmation link; nothing changes until it is opened.
    async fn ask_email_change(
        &self,
        rq: &Req,
        snap: &Snapshot,
        me: &Browser,
        form: &EmailForm,
    ) -> Result<Response> {
        let mut errors = Errors::new();
        let new = accounts::normalize_email(&form.new_email)
            .map_err(|why| errors.insert("new_email", self.tr(rq, why)))
            .unwrap_or_default();
        if errors.is_empty() && me.email.as_deref() == Some(new.as_str()) {
            errors.insert("new_email", self.tr(rq, "field.email_same"));
        }
        if errors.is_empty() {
            // A session alone does not move the address a password signs in with.
            let ways = match self.app.auth.directory().identities(&me.customer_id).await {
                Ok(w) => w,
                Err(e) => return self.account_unavailable(rq, me, &e).await,
            };
            let signs_in = ways.iter().find(|w| w.issuer == accounts::PASSWORD_ISSUER);
            if let Some(pw) = signs_in {
                let given = &form.current;
                match self
                    .current_password(rq, snap, me, &pw.subject, given)
                    .await?
                {
                    super::account::Current::Throttled(answer) => return Ok(answer),
                    super::account::Current::Wrong(why) => {
                        errors.insert("email_current", why);
                    }
                    super::account::Current::Right => {}
                }
            }
        }
        if errors.is_empty() {
            let other = self.app.auth.directory().by_email(&new).await;
            match other {
                Ok(Some(c)) if c.id != me.customer_id => {
                    errors.insert("new_email", self.tr(rq, "field.email_in_use"));
                }
                Ok(_) => {}
                Err(e) => return self.account_unavailable(rq, me, &e).await,
            }
        }
        if !errors.is_empty() {
            return self.account_page(rq, snap, me, 422, None, &errors).await;
        }
        let who = format!("cust-{}", me.customer_id);
        if let Some(answer) = self.throttled_as(rq, "verify-mail", &who, false).await? {
            return Ok(answer);
        }
        crate::throttle::failed(&*self.app.sessions, "verify-mail", &who, &snap.config.abuse).await;
        let token = super::register::MailedToken {
            customer_id: &me.customer_id,
            purpose: Purpose::ChangeEmail,
            email: &new,
            ttl: snap.config.accounts.verification_ttl,
        };
        let link = match self
            .mailed_link(snap, token, "/_auth/email/confirm", "")
            .await
        {
            Ok(link) => link,
            Err(e) => return self.account_unavailable(rq, me, &e).await,
        };
        self.mail(
            rq,
            snap,
            Kind::ChangeEmail,
            &new,
            me.name.as_deref(),
            Some(&link),
        );
        self.redirect(rq, "/_account?notice=email_sent", &[]).await
    }

    /// `GET /_auth/email/confirm?token=…`: the new address is the
    /// customer's; every session shows it; the old address is told.
    async fn confirm_email_change(
        &self,
        rq: &Req,
        snap: &Snapshot,
        token: &str,
    ) -> Result<Response> {
        let dir = self.app.auth.directory().clone();
        let taken = if token.is_empty() || token.len() > 64 {
            Ok(None)
        } else {
            dir.take_token(&sess::hash_id(token), Purpose::ChangeEmail, now())
                .await
        };
        let (customer_id, email) = match taken {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.count_failure(rq, snap, "verify").await;
                let html = self.msg(
                    rq,
                    "message.dead_email",
                    Some(("/_account", "common.your_account")),
                );
                return self.page(rq, 400, html).await;
            }
            Err(e) => return self.confirm_unavailable(rq, &e).await,
        };
        let previous = match dir.change_email(&customer_id, &email).await {
            Ok(ChangeEmail::Changed { previous }) => previous,
            Ok(ChangeEmail::Taken) => {
                let html = self.msg(
                    rq,
                    "message.email_taken",
                    Some(("/_account", "common.your_account")),
                );
                return self.page(rq, 409, html).await;
            }
            Ok(ChangeEmail::Gone) => {
                let html = self.msg(rq, "message.dead_email", Some(("/", "common.home")));
                return self.page(rq, 400, html).await;
            }
            Err(e) => return self.confirm_unavailable(rq, &e).await,
        };
        let customer = dir.customer(&customer_id).await.ok().flatten();
        if let Some(c) = &customer {
            self.refresh_sessions(c).await;
        }
        let name = customer.as_ref().and_then(|c| c.name.clone());
        if let Some(old) = previous.filter(|o| *o != email) {
            self.mail_to_old(rq, snap, &old, name.as_deref(), &email);
        }
        tracing::info!(customer_id = %customer_id, "email address changed");
        let body = self.tra(rq, "message.email_changed.body", &[("email", &email)]);
        let html = self.msg_with(
            rq,
            "message.email_changed",
            &body,
            Some(("/_account", "common.your_account")),
        );
        self.page(rq, 200, html).await
    }

    /// Tells the old address where the account's mail goes now.
    fn mail_to_old(&self, rq: &Req, snap: &Snapshot, old: &str, name: Option<&str>, new: &str) {
        let reset = format!("{}/_auth/reset", snap.config.accounts.public_url);
        let content = crate::pages::MailContent {
            name,
            link: Some(&reset),
            ttl: "",
            address: Some(new),
            reference: None,
        };
        self.send_mail(rq, Kind::EmailChanged, old, content);
    }

    async fn account_unavailable(
        &self,
        rq: &Req,
        me: &Browser,
        e: &(dyn std::fmt::Display + Sync),
    ) -> Result<Response> {
        self.dependency_down(
            rq,
            &me.provider,
            "customer directory unavailable for an email change",
            e,
            ("/_account", "common.your_account"),
        )
        .await
    }

    async fn confirm_unavailable(
        &self,
        rq: &Req,
        e: &(dyn std::fmt::Display + Sync),
    ) -> Result<Response> {
        self.dependency_down(
            rq,
            PASSWORD_METHOD,
            "customer directory unavailable for an email confirmation",
            e,
            ("/_account", "common.your_account"),
        )
        .await
    }
}
