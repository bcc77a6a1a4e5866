//! The access gate: what a route lets through for one request — the
//! caller's identity (bearer token or browser session), scopes, a confirmed
//! address, consent — and what the backend is told about them. Shared by the
//! proxy (`crate::edge`) and the forward-auth endpoint other proxies call
//! (`crate::edge::forward_auth`), so one policy decides for both. Knows no
//! proxy engine: it reads a request head and returns a [`Verdict`].

pub mod identity;
pub mod original;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::{self, AuthError, Decision, Principal};
use crate::config::model::{Access, Route, RouteKind};
use crate::problem::Problem;
use crate::state::{App, Snapshot};

/// Granted purposes: id → version.
pub type Granted = Arc<BTreeMap<String, u32>>;

/// The request as the gate sees it (for forward-auth: the original one).
pub struct Ask<'a> {
    pub method: &'a http::Method,
    /// Normalised host, as routes name it.
    pub host: &'a str,
    /// Canonical path and query.
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
}

impl Ask<'_> {
    fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the gate lets through, and who the backend is told it is.
#[derive(Default)]
pub struct Pass {
    /// The verified caller; `None` forwards the request without identity.
    pub principal: Option<Arc<Principal>>,
    pub consents: Option<Granted>,
    /// The anonymous visitor's guest id on `guest` routes, and the cookie
    /// value to set when it is new.
    pub guest: Option<(String, Option<String>)>,
    /// The guest id a new sign-in took over, told to the backend once.
    pub previous_guest: Option<String>,
}

/// The gate's answer for one request.
pub enum Verdict {
    Pass(Pass),
    /// A browser goes here first (sign-in, the consent prompt); a path.
    Redirect {
        status: u16,
        location: String,
    },
    /// Refused: this problem, with these response headers.
    Refuse {
        problem: Problem,
        headers: Vec<(&'static str, String)>,
    },
}

impl Verdict {
    fn refuse(problem: Problem) -> Verdict {
        Verdict::Refuse {
            problem,
            headers: Vec::new(),
        }
    }

    fn unavailable() -> Verdict {
        Verdict::Refuse {
            problem: Problem::IdentityUnavailable,
            headers: vec![("retry-after", "5".into())],
        }
    }
}

/// Applies route `i`'s access mode, scopes, address rule and consent rule.
pub async fn check(app: &Arc<App>, snap: &Snapshot, i: usize, ask: &Ask<'_>) -> Verdict {
    let r = &snap.config.routes[i];
    if r.access == Access::Public {
        return Verdict::Pass(Pass::default());
    }
    let mut pass = Pass::default();
    let found = identify(app, snap, ask, &mut pass).await;
    let decision = auth::decide(r.access, &r.scopes, r.verified_email, found.as_ref());
    count(app, r, &decision);
    match decision {
        Decision::Anonymous if r.access == Access::Guest => {
            pass.guest = guest(app, ask.headers);
            Verdict::Pass(pass)
        }
        Decision::Anonymous => Verdict::Pass(Pass::default()),
        Decision::Allow => {
            pass.principal = found.and_then(|f| f.ok());
            let Some(p) = pass.principal.clone() else {
                return Verdict::Pass(pass);
            };
            if pass.consents.is_none() {
                // A bearer caller: the ledger's state, cached for a second.
                match app.consents_of(&p.customer_id).await {
                    Ok(c) => pass.consents = Some(c),
                    Err(e) => {
                        tracing::error!(error = %e, "consents unavailable");
                        return Verdict::unavailable();
                    }
                }
            }
            honour_gpc(app, snap, r, ask, &mut pass, &p);
            consent(app, snap, r, ask, pass)
        }
        Decision::Unauthenticated(None) if r.kind == RouteKind::Web && can_sign_in(snap) => {
            let back = plan::back_after_sign_in(
                ask.method,
                ask.path_and_query,
                ask.header(http::header::REFERER),
                ask.host,
            );
            Verdict::Redirect {
                status: 302,
                location: plan::sign_in(&back, r.register_first),
            }
        }
        Decision::Unauthenticated(err) => Verdict::Refuse {
            headers: vec![("www-authenticate", plan::bearer_challenge(err.as_ref()))],
            problem: Problem::Unauthenticated(err.map(|e| e.to_string())),
        },
        Decision::InsufficientScope(missing) => Verdict::Refuse {
            headers: vec![("www-authenticate", plan::scope_challenge(&missing))],
            problem: Problem::InsufficientScope(missing),
        },
        Decision::EmailUnverified => Verdict::refuse(Problem::EmailUnverified),
        Decision::Unavailable => Verdict::unavailable(),
    }
}

/// Whether the request carries a valid bearer token or a live session, for
/// admission on routes whose access mode looked at neither. A store that
/// cannot answer says no (the caller is then an anonymous visitor).
pub async fn signed_in(
    app: &Arc<App>,
    snap: &Snapshot,
    headers: &http::HeaderMap,
    host: &str,
) -> bool {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(t) = auth::bearer_token(authorization) {
        return app.auth.bearer(t, &snap.providers).await.is_ok();
    }
    let current =
        crate::session::current(&*app.sessions, headers, host, &snap.config.sessions).await;
    matches!(current, Ok(Some(_)))
}

/// Whether a browser can sign in here at all (else it gets the 401).
fn can_sign_in(snap: &Snapshot) -> bool {
    snap.config.accounts.passwords || snap.config.login_providers().next().is_some()
}

fn count(app: &App, r: &Route, decision: &Decision) {
    let result = match decision {
        Decision::Anonymous => "anonymous",
        Decision::Allow => "allowed",
        Decision::Unauthenticated(None) => "unauthenticated",
        Decision::Unauthenticated(Some(_)) => "invalid_credentials",
        Decision::InsufficientScope(_) => "insufficient_scope",
        Decision::EmailUnverified => "email_unverified",
        Decision::Unavailable => "unavailable",
    };
    app.metrics
        .auth_decisions
        .with_label_values(&[r.name.as_str(), result])
        .inc();
}

/// The caller a bearer token or a browser session names, if any. A store
/// that cannot answer is "unavailable" (503), never "signed out".
async fn identify(
    app: &Arc<App>,
    snap: &Snapshot,
    ask: &Ask<'_>,
    pass: &mut Pass,
) -> Option<Result<Arc<Principal>, AuthError>> {
    if let Some(t) = auth::bearer_token(ask.header(http::header::AUTHORIZATION)) {
        return Some(app.auth.bearer(t, &snap.providers).await);
    }
    let current =
        crate::session::current(&*app.sessions, ask.headers, ask.host, &snap.config.sessions).await;
    let s = match current {
        Err(e) => return Some(Err(AuthError::Unavailable(e.to_string()))),
        Ok(s) => s?,
    };
    pass.consents = Some(Arc::new(s.consents.clone()));
    // Handed over once, to the first page the browser navigates to (not a
    // favicon or image fetched meanwhile).
    let navigation = plan::is_navigation(ask.headers.get("sec-fetch-dest").map(|v| v.as_bytes()));
    if let Some(g) = s.converted_guest.as_ref().filter(|_| navigation) {
        pass.previous_guest = Some(g.clone());
        let (store, id) = (app.sessions.clone(), s.id_hash.clone());
        tokio::spawn(async move {
            let _ = store.clear_converted_guest(&id).await;
        });
    }
    Some(Ok(session_principal(app, &s, snap)))
}

/// The visitor's guest id: the one this deployment issued (its MAC checks
/// out), else a new one with the cookie that carries it.
fn guest(app: &App, headers: &http::HeaderMap) -> Option<(String, Option<String>)> {
    let key = &app.guest_key;
    let cookies = crate::session::cookie_header(headers);
    let known = crate::session::cookie(cookies.as_deref(), crate::session::GUEST_COOKIE)
        .and_then(|v| crate::session::guest_from_cookie(v, key))
        .map(str::to_string);
    match known {
        Some(id) => Some((id, None)),
        None => crate::session::new_guest_id(key).map(|(id, c)| (id, Some(c))),
    }
}

/// The caller of a live browser session; activity recorded at most once a minute.
fn session_principal(app: &App, s: &crate::session::Session, snap: &Snapshot) -> Arc<Principal> {
    let now = crate::session::unix_now();
    if now - s.last_seen >= 60 {
        let (store, id) = (app.sessions.clone(), s.id_hash.clone());
        tokio::spawn(async move {
            let _ = store.touch(&id, now).await;
        });
    }
    let idle_end = now + snap.config.sessions.idle_timeout.as_secs() as i64;
    // The id hash is 64 hex digits by construction; should one not be, it
    // still gets a key of its own (the assertion cache is keyed by it).
    let mut credential = [0u8; 32];
    if hex::decode_to_slice(&s.id_hash, &mut credential).is_err() {
        use sha2::Digest;
        credential = sha2::Sha256::digest(s.id_hash.as_bytes()).into();
    }
    Arc::new(Principal {
        customer_id: s.customer_id.clone(),
        email: s.email.clone(),
        email_verified: s.email_verified,
        name: s.name.clone(),
        scopes: Default::default(),
        expires_at: s.expires_at.min(idle_end).max(0) as u64,
        method: "cookie",
        credential,
    })
}

/// Global Privacy Control from a known customer withdraws the purposes
/// marked as sale or sharing: gone from this request at once, recorded in
/// the ledger (method `gpc`) off the request path.
fn honour_gpc(
    app: &Arc<App>,
    snap: &Snapshot,
    r: &Route,
    ask: &Ask<'_>,
    pass: &mut Pass,
    p: &Principal,
) {
    if !crate::consent::gpc(ask.headers.get("sec-gpc").map(|v| v.as_bytes())) {
        return;
    }
    let Some(granted) = pass.consents.clone() else {
        return;
    };
    let gone = crate::consent::gpc_withdraws(&granted, &snap.config.purposes);
    if gone.is_empty() {
        return;
    }
    let mut kept = (*granted).clone();
    for g in &gone {
        kept.remove(&g.id);
    }
    pass.consents = Some(Arc::new(kept));
    let agent = ask.header(http::header::USER_AGENT);
    app.withdraw_by_gpc(&p.customer_id, &gone, &r.name, agent);
}

/// Applies the route's consent rule to the identified caller: on with
/// everything granted; else deny (403), ask (web: the consent prompt for
/// just what is missing, then back) or forward without identity. A purpose
/// whose text changed since the customer agreed is asked again, for that
/// purpose only, at the next page they open.
fn consent(app: &App, snap: &Snapshot, r: &Route, ask: &Ask<'_>, mut pass: Pass) -> Verdict {
    use crate::consent::{OnMissing, Outcome};
    let empty = BTreeMap::new();
    let granted = pass.consents.as_deref().unwrap_or(&empty);
    let is_page = r.kind == RouteKind::Web && ask.method == http::Method::GET;
    let by_cookie = pass
        .principal
        .as_ref()
        .is_some_and(|p| p.method == "cookie");
    let counted = |label: &str| {
        app.metrics
            .consent_enforcement
            .with_label_values(&[r.name.as_str(), label])
            .inc();
    };
    if is_page && by_cookie {
        let old = crate::consent::outdated(granted, &snap.config.purposes);
        if !old.is_empty() {
            let ids: Vec<&str> = old.iter().map(|p| p.id.as_str()).collect();
            counted("reasked");
            return Verdict::Redirect {
                status: 303,
                location: plan::consent_prompt(&ids, ask.path_and_query),
            };
        }
    }
    let Some(rule) = &r.consent else {
        return Verdict::Pass(pass);
    };
    match crate::consent::decide(rule, granted, &snap.config.purposes) {
        Outcome::Allowed => {
            counted("allowed");
            Verdict::Pass(pass)
        }
        Outcome::Missing(_, OnMissing::ForwardAnonymous) => {
            counted("anonymous");
            pass.principal = None;
            pass.consents = None;
            pass.previous_guest = None;
            Verdict::Pass(pass)
        }
        Outcome::Missing(missing, OnMissing::Ask) if r.kind == RouteKind::Web => {
            counted("asked");
            let ids: Vec<&str> = missing.iter().map(String::as_str).collect();
            let back = plan::back_after_consent(ask.method, ask.path_and_query);
            Verdict::Redirect {
                status: 303,
                location: plan::consent_prompt(&ids, &back),
            }
        }
        Outcome::Missing(missing, _) => {
            counted("denied");
            Verdict::refuse(Problem::ConsentRequired(titles(snap, &missing)))
        }
    }
}

/// "Title (id)" of each purpose, for the refusal.
fn titles(snap: &Snapshot, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            snap.config
                .purposes
                .iter()
                .find(|p| &p.id == id)
                .map_or_else(|| id.clone(), |p| format!("{} ({id})", p.title))
        })
        .collect()
}
