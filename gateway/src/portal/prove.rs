//! Proving an existing account before a provider identity with the same
//! confirmed address joins it (`/_auth/prove`, `/_auth/prove/cancel`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::respond::*;
use super::signin::Submitted;
use super::*;
use crate::accounts::{password, PASSWORD_ISSUER};
use crate::customers::{Customer, ExternalId};
use crate::session::{self as sess};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_auth/prove", post(prove))
        .route("/_auth/prove/cancel", get(cancel))
}

/// `POST /_auth/prove`: the existing account's password.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct ProveForm {
    password: String,
}

async fn prove(State(p): State<Arc<Portal>>, sub: Submitted<ProveForm>) -> Result<Response> {
    p.prove_with_password(&sub, &sub.rq.snap, &sub.rq.conn.host)
        .await
}

async fn cancel(State(p): State<Arc<Portal>>, rq: Req) -> Result<Response> {
    if let Some(token) = rq.cookie(PROVE_COOKIE) {
        let _ = p.app.sessions.take_once(&once_key("prove", &token)).await;
    }
    let html = p.msg_with(
        &rq,
        "message.not_linked",
        &p.tr(&rq, "message.not_linked.kept"),
        Some(("/_auth/login", "common.sign_in")),
    );
    let clear = [("set-cookie", sess::set_cookie(PROVE_COOKIE, "", 0))];
    p.write(&rq, 200, "text/html; charset=utf-8", html, &clear)
        .await
}

/// A provider identity waiting to join an existing account once the
/// customer proves that account is theirs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Proof {
    pub customer_id: String,
    pub issuer: String,
    pub subject: String,
    pub provider: String,
    pub email: String,
    pub return_to: String,
    pub sid: Option<String>,
}

impl Portal {
    /// Keeps the proof and shows how the customer can prove the account.
    pub(super) async fn ask_proof(
        &self,
        rq: &Req,
        snap: &Snapshot,
        existing: &Customer,
        proof: Proof,
        clear_login: &str,
    ) -> Result<Response> {
        let token = sess::new_token();
        let stored = self
            .put_json_once("prove", &token, &proof, now() + PROVE_TTL)
            .await;
        if let Err(e) = stored {
            return self
                .dependency_down(
                    rq,
                    &proof.provider,
                    "session store unavailable for an account proof",
                    &e,
                    ("/_auth/login", "common.sign_in"),
                )
                .await;
        }
        self.count_login(proof.provider.as_str(), "proof_asked");
        let (csrf, csrf_cookie) = self.anon_csrf(rq);
        let html = self
            .prove_page(rq, snap, &existing.id, &proof, &csrf, None)
            .await;
        let mut headers = vec![
            ("set-cookie", clear_login.to_string()),
            (
                "set-cookie",
                sess::set_cookie(PROVE_COOKIE, &token, PROVE_TTL),
            ),
        ];
        headers.extend(csrf_cookie.map(|c| ("set-cookie", c)));
        self.write(rq, 200, "text/html; charset=utf-8", html, &headers)
            .await
    }

    /// The page asking to prove the existing account: its password (if it
    /// has one) or a provider already linked to it.
    pub(super) async fn prove_page(
        &self,
        rq: &Req,
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
        self.render(
            rq,
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
    pub(super) async fn prove_with_password(
        &self,
        sub: &Submitted<ProveForm>,
        snap: &Snapshot,
        host: &str,
    ) -> Result<Response> {
        let rq = &sub.rq;
        let key = rq.cookie(PROVE_COOKIE).map(|t| once_key("prove", &t));
        let proof = match &key {
            Some(k) => self.app.sessions.take_once(k).await.ok().flatten(),
            None => None,
        }
        .and_then(|j| serde_json::from_str::<Proof>(&j).ok());
        let (Some(key), Some(proof)) = (key, proof) else {
            let html = self.msg_with(
                rq,
                "message.not_linked",
                &self.tr(rq, "message.not_linked.too_slow"),
                Some(("/_auth/login", "common.sign_in")),
            );
            return self.page(rq, 400, html).await;
        };
        let account_key = crate::throttle::account(&proof.email);
        let refused = !sub.fresh;
        if !refused {
            let blocked = self
                .throttled_as(rq, "password-account", &account_key, false)
                .await?;
            if let Some(answer) = blocked {
                return Ok(answer);
            }
        }
        let found = self
            .app
            .auth
            .directory()
            .password(&proof.email)
            .await
            .ok()
            .flatten();
        let given = sub.form.password.clone();
        let hash = found
            .as_ref()
            .map_or_else(|| self.app.dummy_hash.clone(), |(_, h)| h.clone());
        let checked = !refused && given.chars().count() <= password::MAX_LENGTH;
        let matched = checked
            && match self.verify_password(hash, given).await {
                Ok(m) => m,
                Err(busy) => {
                    let back = ("/_auth/login", "common.try_again");
                    return self.hashing_busy(rq, busy, back).await;
                }
            };
        match found.filter(|(c, _)| matched && c.id == proof.customer_id) {
            Some((c, _)) => self.complete_proof(rq, snap, host, c, &proof).await,
            None => {
                if !refused {
                    self.app.metrics.password_failures.inc();
                    self.count_failure(rq, snap, "password").await;
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
                let (csrf, _) = self.anon_csrf(rq);
                let text = self.tr(
                    rq,
                    if refused {
                        "field.form_expired"
                    } else {
                        "prove.wrong"
                    },
                );
                let html = self
                    .prove_page(rq, snap, &proof.customer_id, &proof, &csrf, Some(&text))
                    .await;
                self.page(rq, if refused { 403 } else { 401 }, html).await
            }
        }
    }

    /// Links the waiting identity to the proven customer and signs them in.
    pub(super) async fn complete_proof(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        customer: Customer,
        proof: &Proof,
    ) -> Result<Response> {
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
                    rq,
                    &proof.provider,
                    "customer directory unavailable while linking",
                    &e,
                    ("/_auth/login", "common.sign_in"),
                )
                .await;
        }
        self.count_login(proof.provider.as_str(), "proved");
        self.sign_in(
            rq,
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
}
