//! Signing out: the page and its CSRF-checked POST (optionally at the
//! provider too), the signed-out page, and OIDC back-channel logout.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::request::{Query, ReturnQuery};
use super::signin::port_part;
use super::*;
use crate::login::{self};
use crate::session::{self as sess, Group};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_auth/logout", get(page).post(sign_out))
        .route("/_auth/signed-out", get(signed_out))
        .route("/_auth/backchannel-logout/{name}", post(backchannel))
}

async fn page(
    State(p): State<Arc<Portal>>,
    Query(q): Query<ReturnQuery>,
    rq: Req,
) -> Result<Response> {
    let current = p.current_session(&rq, &rq.snap, &rq.conn.host).await?;
    let back = p.return_to(&rq.snap, rq.conn.here.as_ref(), q.return_to.as_deref());
    let html = match current {
        Some(s) => p.render(
            &rq,
            "logout.html",
            minijinja::context! { email => s.email.clone(), csrf => s.csrf.clone(), return_to => back },
        ),
        None => p.msg_with(&rq, "message.signed_out", &p.tr(&rq, "message.signed_out.not_signed_in"), Some((&back, "common.continue")),
        ),
    };
    p.page(&rq, 200, html).await
}

async fn sign_out(State(p): State<Arc<Portal>>, rq: Req) -> Result<Response> {
    p.logout(&rq, &rq.snap, &rq.conn.host, &rq.raw_host()).await
}

/// `/_auth/signed-out`: `return_to`, or the `state` a provider's sign-out
/// brings back (which names where the customer was, kept here).
#[derive(serde::Deserialize)]
struct SignedOutQuery {
    return_to: Option<String>,
    state: Option<String>,
}

/// Where a sign-out through the provider comes back to, kept under its `state`.
#[derive(serde::Serialize, serde::Deserialize)]
struct LogoutReturn {
    return_to: String,
}

/// `POST /_auth/logout`: `scope` is `this` or `everywhere`.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct SignOutForm {
    csrf: String,
    scope: String,
    return_to: String,
}

/// How long a sign-out at the provider may take to come back.
const LOGOUT_TTL: i64 = 600;

async fn signed_out(
    State(p): State<Arc<Portal>>,
    Query(q): Query<SignedOutQuery>,
    rq: Req,
) -> Result<Response> {
    let kept = match q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 64)
    {
        Some(state) => p
            .take_json_once::<LogoutReturn>("logout", state)
            .await?
            .map(|k| k.return_to),
        None => None,
    };
    let raw = kept.as_deref().or(q.return_to.as_deref());
    let back = p.return_to(&rq.snap, rq.conn.here.as_ref(), raw);
    let html = p.msg(&rq, "message.signed_out", Some((&back, "common.continue")));
    p.page(&rq, 200, html).await
}

async fn backchannel(
    State(p): State<Arc<Portal>>,
    Path(name): Path<String>,
    rq: Req,
) -> Result<Response> {
    p.backchannel_logout(&rq, &rq.snap, &name).await
}

impl Portal {
    /// OIDC Back-Channel Logout: a provider's signed logout token ends, on
    /// every node, the sessions of the provider session it names (`sid`), or
    /// else every session of the customer (`sub`). Answers 200, or 400 with JSON.
    pub(super) async fn backchannel_logout(
        &self,
        rq: &Req,
        snap: &Snapshot,
        name: &str,
    ) -> Result<Response> {
        let form = rq.form().0;
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
                self.write(rq, 200, "application/json", "{}".into(), &[])
                    .await
            }
            Err(why) => {
                tracing::warn!(provider = name, error = %why, "back-channel logout refused");
                self.count_failure(rq, snap, "backchannel").await;
                let body =
                    serde_json::json!({"error": "invalid_request", "error_description": why})
                        .to_string();
                self.write(rq, 400, "application/json", body, &[]).await
            }
        }
    }

    /// `POST /_auth/logout`: ends this sign-in on every host it reached (or,
    /// with `scope=everywhere`, every session of the customer), clears the
    /// cookie, and, if configured, signs out at the provider too.
    pub(super) async fn logout(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
    ) -> Result<Response> {
        let current = self.current_session(rq, snap, host).await?;
        let form: SignOutForm = rq.form_as()?;
        let domain = sess::cookie_domain(host, &snap.config.sessions.cookie_domains);
        let clear = sess::set_session_cookie(domain, "", 0);
        let back = self.return_to(snap, rq.conn.here.as_ref(), Some(&form.return_to));
        let signed_out = format!(
            "/_auth/signed-out{}",
            super::reset::carry(&back).replacen('&', "?", 1)
        );
        let Some(s) = current else {
            return self.redirect(rq, &signed_out, &[clear]).await;
        };
        if !sess::same_token(&form.csrf, &s.csrf) {
            let html = self.msg(
                rq,
                "message.signout_unconfirmed",
                Some(("/_auth/logout", "logout.title")),
            );
            return self.page(rq, 403, html).await;
        }
        let (group, reason) = if form.scope == "everywhere" {
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
            let html = self.msg(
                rq,
                "message.signout_failed",
                Some(("/_auth/logout", "logout.title")),
            );
            return self.page(rq, 503, html).await;
        }
        match self
            .provider_logout_url(rq, snap, &s.provider, raw_host, &back)
            .await
        {
            Some(to) => self.redirect_external(rq, &to, &[clear]).await,
            None => self.redirect(rq, &signed_out, &[clear]).await,
        }
    }

    /// RP-initiated logout: the provider's `end_session_endpoint`, coming back
    /// to the signed-out page (on the auth host, if there is one). Where the
    /// customer was (`back`) is kept here under the `state` the provider
    /// returns, because the registered redirect URI must match exactly.
    pub(super) async fn provider_logout_url(
        &self,
        rq: &Req,
        snap: &Snapshot,
        provider: &str,
        raw_host: &str,
        back_to: &str,
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
        let back = format!("{}://{back_host}/_auth/signed-out", rq.scheme());
        let mut url = url::Url::parse(&endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &login.client_id)
            .append_pair("post_logout_redirect_uri", &back);
        if !super::reset::is_home(back_to) {
            let state = sess::new_token();
            let kept = LogoutReturn {
                return_to: back_to.to_string(),
            };
            match self
                .put_json_once("logout", &state, &kept, sess::unix_now() + LOGOUT_TTL)
                .await
            {
                Ok(()) => {
                    url.query_pairs_mut().append_pair("state", &state);
                }
                Err(e) => tracing::warn!(error = %e, "where to return after sign-out not kept"),
            }
        }
        Some(url.to_string())
    }
}
