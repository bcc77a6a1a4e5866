//! The cross-domain hop. With `sessions.auth_host`, every sign-in happens on
//! that host; a host in its cookie domain is sent back directly (the domain
//! cookie is shared), a host in another domain receives a single-use code,
//! valid 30 s, only for that host and bound to the browser that asked
//! (`/_auth/hop/begin` sets the nonce), redeemed at `/_auth/hop`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::request::Query;
use super::respond::*;
use super::*;
use crate::login::LoginError;
use crate::session::{self as sess, Grant, Session as Browser};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_auth/hop/begin", get(begin))
        .route("/_auth/hop", get(redeem))
}

#[derive(Deserialize)]
struct CodeQuery {
    code: Option<String>,
}

async fn begin(State(p): State<Arc<Portal>>, rq: Req) -> Result<Response> {
    p.begin_hop(&rq, &rq.snap, rq.head.uri.query()).await
}

async fn redeem(
    State(p): State<Arc<Portal>>,
    Query(q): Query<CodeQuery>,
    rq: Req,
) -> Result<Response> {
    let code = q.code.unwrap_or_default();
    p.redeem_hop(&rq, &rq.snap, &rq.conn.host, &rq.raw_host(), &code)
        .await
}

/// `url` with a new hop nonce's challenge added, and the cookie holding the nonce.
pub(super) fn with_hop_nonce(url: &str) -> Option<(String, String)> {
    let (mut u, _) = sess::split_hop_param(&url::Url::parse(url).ok()?);
    let nonce = sess::new_token();
    u.query_pairs_mut()
        .append_pair(sess::HOP_PARAM, &sess::hop_challenge(&nonce));
    let cookie = sess::set_cookie(sess::HOP_COOKIE, &nonce, sess::HOP_NONCE_TTL);
    Some((u.to_string(), cookie))
}

impl Portal {
    /// `/_auth/hop/begin?return_to=…&from=…`: this host binds the sign-in
    /// code it is about to receive to this browser, then sends the browser
    /// back to the host it signed in on (`from`) for the code.
    pub(super) async fn begin_hop(
        &self,
        rq: &Req,
        snap: &Snapshot,
        q: Option<&str>,
    ) -> Result<Response> {
        let here = rq.conn.here.clone();
        let back = self.return_to(snap, here.as_ref(), query(q, "return_to").as_deref());
        let on_this_host = url::Url::parse(&back)
            .ok()
            .zip(here.as_ref())
            .is_some_and(|(b, h)| b.origin() == h.origin());
        let from = query(q, "from").unwrap_or_default();
        let Some((back, cookie)) = with_hop_nonce(&back).filter(|_| on_this_host) else {
            return self.redirect(rq, "/", &[]).await;
        };
        let to = format!(
            "{}/_auth/login?return_to={}",
            from.trim_end_matches('/'),
            enc(&back)
        );
        self.redirect(rq, &to, &[cookie]).await
    }

    /// After sign-in (or when already signed in): to `return_to`. A URL on a
    /// host outside this host's cookie scope gets a single-use code for it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn continue_to(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        signed_in: &Browser,
        return_to: &str,
        cookies: Vec<String>,
    ) -> Result<Response> {
        let parsed = url::Url::parse(return_to)
            .ok()
            .map(|u| sess::split_hop_param(&u));
        let Some((target, target_host, challenge)) = parsed.and_then(|(u, c)| {
            let h = u.host_str()?.to_ascii_lowercase();
            Some((u, h, c))
        }) else {
            // A path on this host.
            return self.redirect(rq, return_to, &cookies).await;
        };
        let return_to = target.as_str();
        let domains = &snap.config.sessions.cookie_domains;
        let here = sess::cookie_domain(host, domains);
        let shared = target_host == host
            || (here.is_some() && sess::cookie_domain(&target_host, domains) == here);
        if shared {
            return self.redirect(rq, return_to, &cookies).await;
        }
        let authority = match target.port() {
            Some(p) => format!("{target_host}:{p}"),
            None => target_host.clone(),
        };
        let Some(challenge) = challenge else {
            // That host has not bound this browser yet: it sets its nonce
            // first and sends the browser back here for the code.
            let from = rq
                .conn
                .here
                .as_ref()
                .map(|h| h.origin().ascii_serialization())
                .unwrap_or_default();
            let to = format!(
                "{}://{authority}/_auth/hop/begin?return_to={}&from={}",
                if rq.conn.tls {
                    "https"
                } else {
                    target.scheme()
                },
                enc(return_to),
                enc(&from)
            );
            return self.redirect(rq, &to, &cookies).await;
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
                    rq,
                    &signed_in.provider,
                    "session store unavailable for a cross-domain sign-in",
                    &e,
                    (return_to, "common.try_again"),
                )
                .await;
        }
        // The code travels over TLS whenever this sign-in did.
        let scheme = if rq.conn.tls {
            "https"
        } else {
            target.scheme()
        };
        let to = format!("{scheme}://{authority}/_auth/hop?code={code}");
        self.redirect(rq, &to, &cookies).await
    }

    /// `/_auth/hop?code=…`: a single-use code from the auth host becomes a
    /// session of the same sign-in on this host.
    pub(super) async fn redeem_hop(
        &self,
        rq: &Req,
        snap: &Snapshot,
        host: &str,
        raw_host: &str,
        code: &str,
    ) -> Result<Response> {
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
                        rq,
                        "-",
                        "session store unavailable during a cross-domain sign-in",
                        &e,
                        ("/", "common.home"),
                    )
                    .await;
            }
        };
        let idle = snap.config.sessions.idle_timeout.as_secs() as i64;
        let t = now();
        let mut source = None;
        // The browser that asked for the code holds the nonce; another one
        // (a code pushed into a victim's browser) does not.
        let nonce = rq.cookie(sess::HOP_COOKIE);
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
            self.count_failure(rq, snap, "hop").await;
            self.count_login("-", "hop_refused");
            let body = self.tr(rq, LoginError::Expired.text_key());
            let html = self.msg_with(
                rq,
                "message.not_completed",
                &body,
                Some(("/_auth/login", "common.sign_in_again")),
            );
            return self.page(rq, 400, html).await;
        };
        let (id, mut record) = new_session(&source, t, source.expires_at);
        record.converted_guest = None;
        if let Err(e) = self.app.sessions.create(&record).await {
            return self
                .dependency_down(
                    rq,
                    &source.provider,
                    "session store unavailable during a cross-domain sign-in",
                    &e,
                    ("/", "common.home"),
                )
                .await;
        }
        self.count_login(source.provider.as_str(), "hop_success");
        let domain = sess::cookie_domain(host, &snap.config.sessions.cookie_domains);
        let cookie = sess::set_session_cookie(domain, &id, record.expires_at - t);
        let spent = sess::set_cookie(sess::HOP_COOKIE, "", 0);
        self.redirect(rq, &grant.return_to, &[cookie, spent]).await
    }
}
