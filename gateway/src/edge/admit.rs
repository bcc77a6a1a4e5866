//! Spike protection on the proxy path, after the access gate: a route's
//! waiting room (`crate::waiting_room`) and its upstream's admission
//! control (`crate::admission`). A visitor beyond the room's limits gets
//! the waiting page (or problem JSON with their place); a request the
//! upstream has no slot for gets `503` (`429` for crawlers) with
//! `Retry-After`. Whether a caller is signed in is looked up only when it
//! decides something: at a full gate or a checkout room.

use bytes::Bytes;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::{Ctx, Gateway};
use crate::admission::{classify, is_bot, Class};
use crate::config::model::{Priority, RouteKind};
use crate::problem::Problem;
use crate::state::Snapshot;
use crate::waiting_room::{Door, Waiting};

impl Gateway {
    /// The waiting room, then a slot at the upstream. Returns true if a
    /// response was written.
    pub(super) async fn spike_gate(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        i: usize,
        host: &str,
    ) -> Result<bool> {
        let r = &snap.config.routes[i];
        let mut signed_in = ctx.principal.is_some().then_some(true);
        if r.waiting_room.is_some() {
            if r.priority == Priority::Critical && signed_in.is_none() {
                signed_in = Some(self.signed_in(session, snap, host).await);
            }
            let cookies = crate::session::cookie_header(&session.req_header().headers);
            let door = self
                .app
                .rooms
                .door(
                    r,
                    cookies.as_deref(),
                    signed_in == Some(true),
                    crate::session::unix_now(),
                )
                .await;
            drop(cookies);
            match door {
                Ok(Door::Enter { set_cookie }) => ctx.set_cookies.extend(set_cookie),
                Ok(Door::Wait(w)) => {
                    self.waiting(session, ctx, &w).await?;
                    return Ok(true);
                }
                Err(e) => {
                    // Who is let in cannot be decided: a newcomer is told to
                    // come back (visitors inside keep their stay).
                    tracing::error!(request_id = %ctx.request_id, error = %e, "waiting room unavailable");
                    self.respond(
                        session,
                        ctx,
                        Problem::Overloaded { status: 503 },
                        &[("retry-after", "5".into())],
                    )
                    .await?;
                    return Ok(true);
                }
            }
        }
        let Some(limiter) = ctx.pool.as_ref().and_then(|p| p.admission.clone()) else {
            return Ok(false);
        };
        let bot = is_bot(
            session
                .req_header()
                .headers
                .get(http::header::USER_AGENT)
                .map(|v| v.as_bytes()),
        );
        let mut class = classify(r.priority, signed_in == Some(true), bot);
        if class == Class::Anonymous && signed_in.is_none() {
            if let Some(p) = limiter.try_admit(class) {
                ctx.permit = Some(p);
                return Ok(false);
            }
            // At the gate's edge: a signed-in customer goes before visitors.
            if self.signed_in(session, snap, host).await {
                class = Class::SignedIn;
            }
        }
        match limiter.admit(class).await {
            Ok(p) => {
                ctx.permit = Some(p);
                Ok(false)
            }
            Err(refused) => {
                let retry = refused.retry_after.as_secs().to_string();
                let problem = Problem::Overloaded {
                    status: refused.status,
                };
                self.respond(session, ctx, problem, &[("retry-after", retry)])
                    .await?;
                Ok(true)
            }
        }
    }

    /// Whether the request carries a valid session or bearer token (on
    /// routes whose gate did not look).
    async fn signed_in(&self, session: &Session, snap: &Snapshot, host: &str) -> bool {
        let headers = &session.req_header().headers;
        crate::gate::signed_in(&self.app, snap, headers, host).await
    }

    /// The waiting page, or problem JSON with the place for API clients.
    async fn waiting(&self, session: &mut Session, ctx: &mut Ctx, w: &Waiting) -> Result<()> {
        ctx.local_status = Some(503);
        ctx.problem = Some("waiting-room");
        let req = session.req_header();
        let lang = self.app.pages.language(
            req.headers
                .get("accept-language")
                .and_then(|v| v.to_str().ok()),
        );
        let (content_type, body) = match ctx.kind {
            RouteKind::Api => ("application/problem+json", self.waiting_json(&lang, ctx, w)),
            RouteKind::Web => {
                let here = req.uri.path_and_query().map_or("/", |p| p.as_str());
                let wait = self
                    .app
                    .pages
                    .duration(&lang, std::time::Duration::from_secs(w.wait_seconds));
                let html = self.app.pages.render(
                    &lang,
                    "waiting.html",
                    minijinja::context! {
                        position => w.position, wait, refresh => w.refresh,
                        here => (req.method == http::Method::GET).then_some(here),
                        request_id => ctx.request_id.as_str(),
                    },
                );
                ("text/html; charset=utf-8", html)
            }
        };
        let body = Bytes::from(body);
        let mut resp = ResponseHeader::build(503, Some(8))?;
        resp.insert_header("content-type", content_type)?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("retry-after", w.refresh.to_string())?;
        resp.insert_header("set-cookie", w.set_cookie.as_str())?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        if ctx.kind == RouteKind::Web {
            resp.insert_header("refresh", w.refresh.to_string())?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        self.finish(session, ctx, resp, body, head_only).await
    }

    fn waiting_json(&self, lang: &str, ctx: &Ctx, w: &Waiting) -> String {
        let pages = &self.app.pages;
        serde_json::json!({
            "type": "urn:omnigate:problem:waiting-room",
            "title": pages.text(lang, "waiting.title", &[]),
            "status": 503,
            "detail": pages.text(lang, "waiting.api", &[]),
            "position": w.position,
            "estimated_wait_seconds": w.wait_seconds,
            "retry_after": w.refresh,
            "request_id": ctx.request_id,
        })
        .to_string()
    }
}
