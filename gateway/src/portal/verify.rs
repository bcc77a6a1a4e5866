//! Confirming an email address from the mailed link (`/_auth/verify`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::request::{Query, TokenQuery};
use super::respond::*;
use super::*;
use crate::accounts::Purpose;
use crate::session::{self as sess};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new().route("/_auth/verify", get(open))
}

async fn open(
    State(p): State<Arc<Portal>>,
    Query(q): Query<TokenQuery>,
    rq: Req,
) -> Result<Response> {
    p.verify_email(&rq, &rq.snap, q.token.as_deref().unwrap_or_default())
        .await
}

impl Portal {
    /// `GET /_auth/verify?token=…`.
    pub(super) async fn verify_email(
        &self,
        rq: &Req,
        snap: &Snapshot,
        token: &str,
    ) -> Result<Response> {
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
                // Back where the customer was going when they registered.
                let back = self.return_to(
                    snap,
                    rq.conn.here.as_ref(),
                    rq.query("return_to").as_deref(),
                );
                let html = self.msg(rq, "message.verified", Some((&back, "common.continue")));
                self.page(rq, 200, html).await
            }
            Ok(_) => {
                self.app
                    .metrics
                    .verifications
                    .with_label_values(&["invalid"])
                    .inc();
                self.count_failure(rq, snap, "verify").await;
                let html = self.msg_with(
                    rq,
                    "message.dead_reset",
                    &self.tr(rq, "message.dead_verify.body"),
                    Some(("/_account", "common.your_account")),
                );
                self.page(rq, 400, html).await
            }
            Err(e) => {
                self.dependency_down(
                    rq,
                    PASSWORD_METHOD,
                    "customer directory unavailable during verification",
                    &e,
                    ("/", "common.home"),
                )
                .await
            }
        }
    }
}
