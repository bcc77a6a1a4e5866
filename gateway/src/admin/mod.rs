//! The admin listener, separate from customer traffic: liveness, readiness,
//! Prometheus metrics and the authenticated reload endpoint. Never answers on
//! a customer listener, never accepts a write without the admin token.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use subtle::ConstantTimeEq;

mod customers;

use crate::httpd::{problem, respond, serve, Resp};

/// The admin API's OpenAPI 3.1 description, kept in the repository.
pub const OPENAPI: &str = include_str!("../../openapi/admin.json");
use crate::state::{App, ReloadError};

/// Starts the admin listener on the current runtime.
pub async fn start(app: Arc<App>, addr: SocketAddr) -> std::io::Result<()> {
    serve(addr, move |req, peer| handle(app.clone(), req, peer)).await
}

async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/healthz") => respond(200, "application/json", r#"{"status":"ok"}"#),
        ("GET" | "HEAD", "/readyz") => readyz(&app).await,
        ("GET" | "HEAD", crate::portal::JWKS_PATH) => {
            respond(200, "application/json", app.signer.jwks().to_string())
        }
        ("GET" | "HEAD", "/metrics") => {
            // The session count is the store's (every node's, on Redis); a slow
            // store leaves the last value rather than stalling the scrape.
            let now = crate::session::unix_now();
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(1), app.sessions.active(now)).await
            {
                app.metrics.sessions_active.set(n as i64);
            }
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(1), app.auth.directory().outbox_depth())
                    .await
            {
                app.metrics.outbox_depth.set(n as i64);
            }
            respond(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                app.metrics.render(),
            )
        }
        ("POST", "/admin/reload") => {
            if let Err(resp) = authorize(&app, &req, peer).await {
                return *resp;
            }
            reload(&app).await
        }
        ("GET" | "HEAD", "/admin/openapi.json") => respond(200, "application/json", OPENAPI),
        (_, "/healthz" | "/readyz" | "/metrics" | "/admin/openapi.json") => {
            method_not_allowed("GET, HEAD")
        }
        (_, "/admin/reload") => method_not_allowed("POST"),
        (m, p) if p.starts_with("/admin/customers") => {
            if let Err(resp) = authorize(&app, &req, peer).await {
                return *resp;
            }
            let query = req.uri().query().map(str::to_string);
            match customers::route(m, p) {
                Ok(call) => {
                    let body = if matches!(call, customers::Call::RecordConsent(_)) {
                        use http_body_util::BodyExt;
                        match http_body_util::Limited::new(req.into_body(), 16 * 1024)
                            .collect()
                            .await
                        {
                            Ok(b) => b.to_bytes(),
                            Err(_) => {
                                return problem(
                                    413,
                                    "too-large",
                                    "Request too large",
                                    "The body must be at most 16 KiB of JSON.",
                                )
                            }
                        }
                    } else {
                        bytes::Bytes::new()
                    };
                    customers::handle(&app, call, query.as_deref(), &body).await
                }
                Err(customers::Miss::Method(allow)) => method_not_allowed(allow),
                Err(customers::Miss::NotFound) => problem(
                    404,
                    "not-found",
                    "Not found",
                    "No admin endpoint at this path.",
                ),
            }
        }
        _ => problem(
            404,
            "not-found",
            "Not found",
            "No admin endpoint at this path.",
        ),
    }
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = problem(
        405,
        "method-not-allowed",
        "Method not allowed",
        "See the Allow header.",
    );
    r.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    r
}

/// Checks `Authorization: Bearer <admin token>` in constant time; a client
/// that keeps failing is slowed down (429 with `Retry-After`).
async fn authorize(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Result<(), Box<Resp>> {
    let snap = app.snapshot();
    let client = Some(peer.ip());
    if let Some(secs) =
        crate::throttle::retry_after(&*app.sessions, "admin", &crate::throttle::address(client))
            .await
    {
        app.metrics.throttled.with_label_values(&["admin"]).inc();
        let mut r = problem(
            429,
            "too-many-requests",
            "Too many failed attempts",
            &format!("Retry in {secs} seconds."),
        );
        if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return Err(Box::new(r));
    }
    let Some(expected) = snap.config.admin.as_ref().and_then(|a| a.token.clone()) else {
        return Err(Box::new(problem(
            403,
            "admin-disabled",
            "Admin API disabled",
            "No admin.token is configured, so write endpoints are off. Set admin.token (e.g. ${OMNIGATE_ADMIN_TOKEN}) and reload with SIGHUP.",
        )));
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        crate::throttle::failed(
            &*app.sessions,
            "admin",
            &crate::throttle::address(client),
            &snap.config.abuse,
        )
        .await;
        let mut r = problem(
            401,
            "unauthorized",
            "Unauthorized",
            "A valid admin bearer token is required.",
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"omnigate-admin\""),
        );
        Err(Box::new(r))
    }
}

async fn reload(app: &App) -> Resp {
    match app.reload().await {
        Ok(report) => respond(
            200,
            "application/json",
            serde_json::json!({"result": "applied", "report": report}).to_string(),
        ),
        Err(ReloadError::Invalid(errs)) => {
            let list: Vec<String> = errs.0.iter().map(|d| d.to_string()).collect();
            let body = serde_json::json!({
                "type": "urn:omnigate:problem:invalid-config",
                "title": "Configuration refused",
                "status": 422,
                "detail": "The new configuration is invalid; the running one is kept.",
                "errors": list,
            });
            respond(422, "application/problem+json", body.to_string())
        }
        Err(e) => {
            let body = serde_json::json!({
                "type": "urn:omnigate:problem:reload-failed",
                "title": "Configuration refused",
                "status": 422,
                "detail": format!("The new configuration could not be applied; the running one is kept: {e}"),
            });
            respond(422, "application/problem+json", body.to_string())
        }
    }
}

/// Ready when not shutting down and every customer listener accepts
/// connections. Listeners are probed only until they first accept (they stay
/// open until shutdown), so probes do not fill the log with aborted handshakes.
async fn readyz(app: &App) -> Resp {
    let mut failing = Vec::new();
    if app.shutting_down() {
        failing.push("shutting down".to_string());
    }
    let (running, expected) = (
        app.accept_loops.load(Ordering::Relaxed),
        app.accept_loops_expected.load(Ordering::Relaxed),
    );
    if running < expected {
        // The sockets are bound before the workers start: a connection
        // would be queued, not served, until every worker accepts.
        failing.push(format!(
            "{running} of {expected} worker accept loops are running"
        ));
    }
    let listeners: &[crate::config::model::Listener] = if app.listeners_up.load(Ordering::Relaxed) {
        &[]
    } else {
        &app.startup.listeners
    };
    for l in listeners {
        let ok = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(l.address),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !ok {
            failing.push(format!(
                "listener `{}` ({}) is not accepting connections",
                l.name, l.address
            ));
        }
    }
    if !listeners.is_empty() && failing.is_empty() {
        app.listeners_up.store(true, Ordering::Relaxed);
    }
    let generation = app.snapshot().generation;
    let mut dependencies = serde_json::Map::new();
    let mut degraded = false;
    for d in app.health.all() {
        let state = d.state();
        degraded |= state == crate::health::State::Down;
        let mut entry = serde_json::json!({ "status": state });
        if state == crate::health::State::Down {
            entry["error"] = d.last_error().into();
        }
        dependencies.insert(d.name.to_string(), entry);
    }
    let degraded_ok = app
        .startup
        .admin
        .as_ref()
        .is_none_or(|a| a.ready_when_degraded);
    if failing.is_empty() && (!degraded || degraded_ok) {
        let status = if degraded { "degraded" } else { "ready" };
        respond(
            200,
            "application/json",
            serde_json::json!({"status": status, "config_generation": generation, "dependencies": dependencies}).to_string(),
        )
    } else {
        if degraded {
            failing.push("a dependency is down (admin.ready_when_degraded: false)".into());
        }
        let status = if degraded && failing.len() == 1 {
            "degraded"
        } else {
            "not ready"
        };
        respond(
            503,
            "application/json",
            serde_json::json!({"status": status, "reasons": failing, "dependencies": dependencies})
                .to_string(),
        )
    }
}
