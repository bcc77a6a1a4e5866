//! What SREs and orchestrators call: liveness, readiness with each
//! dependency's state, Prometheus metrics, the published assertion keys and
//! the configuration reload.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, Problem, Shared};
use crate::state::ReloadError;

/// Endpoints that need no token (probes, scrapes, key fetches).
pub fn open() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(jwks))
        .routes(routes!(openapi_document))
}

/// This document: the OpenAPI 3.1 description of the admin API.
#[utoipa::path(get, path = "/admin/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi_document() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(super::openapi_json).clone();
    ([(http::header::CONTENT_TYPE, "application/json")], doc).into_response()
}

/// Endpoints behind the admin token.
pub fn protected() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(reload))
}

/// `{"status": "ok"}` while the process runs.
#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: String,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// One dependency's state, as the last probe found it.
#[derive(Serialize, ToSchema)]
struct DependencyState {
    /// `unknown` (not called yet), `up` or `down`.
    status: crate::health::State,
    /// The last error, while down.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Readiness, with why not and every dependency's state.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready`, `degraded` (a dependency is down) or `not ready`.
    status: String,
    /// The configuration generation in force (when ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    config_generation: Option<u64>,
    /// Why not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<Vec<String>>,
    dependencies: BTreeMap<String, DependencyState>,
}

/// Readiness: not shutting down, every worker accepting, and (unless
/// `admin.ready_when_degraded`) every dependency up.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready (or degraded, when allowed)", body = Readiness),
    (status = 503, description = "Not ready", body = Readiness)))]
async fn readyz(State(app): State<Shared>) -> Response {
    let mut failing = listener_problems(&app).await;
    let mut dependencies = BTreeMap::new();
    let mut degraded = false;
    for d in app.health.all() {
        let state = d.state();
        let down = state == crate::health::State::Down;
        degraded |= down;
        let error = down.then(|| d.last_error()).flatten();
        dependencies.insert(
            d.name.to_string(),
            DependencyState {
                status: state,
                error,
            },
        );
    }
    let degraded_ok = app
        .startup
        .admin
        .as_ref()
        .is_none_or(|a| a.ready_when_degraded);
    if failing.is_empty() && (!degraded || degraded_ok) {
        let status = if degraded { "degraded" } else { "ready" };
        let body = Readiness {
            status: status.into(),
            config_generation: Some(app.snapshot().generation),
            reasons: None,
            dependencies,
        };
        return Json(body).into_response();
    }
    if degraded {
        failing.push("a dependency is down (admin.ready_when_degraded: false)".into());
    }
    let status = if degraded && failing.len() == 1 {
        "degraded"
    } else {
        "not ready"
    };
    let body = Readiness {
        status: status.into(),
        config_generation: None,
        reasons: Some(failing),
        dependencies,
    };
    (http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Why the process cannot serve yet: shutting down, workers not all
/// accepting, a listener not accepting. Listeners are probed only until they
/// first accept (they stay open until shutdown), so probes do not fill the
/// log with aborted handshakes.
async fn listener_problems(app: &Shared) -> Vec<String> {
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
    failing
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Every metric family", body = String,
     content_type = "text/plain; version=0.0.4; charset=utf-8")))]
async fn metrics(State(app): State<Shared>) -> Response {
    // The session count is the store's (every node's, on Redis); a slow
    // store leaves the last value rather than stalling the scrape.
    let now = crate::session::unix_now();
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), app.sessions.active(now)).await
    {
        app.metrics.sessions_active.set(n as i64);
    }
    let depth = app.auth.directory().outbox_depth();
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), depth).await {
        app.metrics.outbox_depth.set(n as i64);
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// One published ES256 key.
#[derive(Serialize, ToSchema)]
struct Jwk {
    #[schema(example = "EC")]
    kty: String,
    #[schema(example = "P-256")]
    crv: String,
    x: String,
    y: String,
    kid: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    usage: String,
    #[schema(example = "ES256")]
    alg: String,
}

/// The keys that verify `X-Omnigate-Assertion`.
#[derive(Serialize, ToSchema)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// The assertion keys, current and next (also on every customer host).
#[utoipa::path(get, path = "/.well-known/omnigate/jwks.json", tag = "operations",
    responses((status = 200, description = "The published keys", body = JwkSet)))]
async fn jwks(State(app): State<Shared>) -> Json<serde_json::Value> {
    Json(app.signer.jwks())
}

/// What a reload changed.
#[derive(Serialize, ToSchema)]
struct ReloadReport {
    generation: u64,
    routes: usize,
    upstreams: usize,
    /// Settings that changed but take effect only after a restart.
    restart_required: Vec<String>,
}

/// The new configuration is in force: all of it (`applied`), or all but
/// the settings in `report.restart_required` (`partly_applied`).
#[derive(Serialize, ToSchema)]
struct Reloaded {
    #[schema(example = "applied")]
    result: String,
    /// What was not applied, and how to apply it.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    report: ReloadReport,
}

/// Re-reads and validates the configuration, then swaps it in; the running
/// one is kept on any error.
#[utoipa::path(post, path = "/admin/reload", tag = "operations",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Applied", body = Reloaded),
        (status = 401, description = "No or a wrong admin token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No admin token is configured", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Refused; the running configuration is kept", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts", body = Problem, content_type = "application/problem+json")))]
async fn reload(State(app): State<Shared>) -> Result<Json<Reloaded>, ApiError> {
    match app.reload().await {
        Ok(r) => Ok(Json(Reloaded {
            result: if r.restart_required.is_empty() {
                "applied"
            } else {
                "partly_applied"
            }
            .into(),
            detail: (!r.restart_required.is_empty()).then(|| {
                format!(
                    "Everything else is in force; {} keep their running values until a restart.",
                    r.restart_required.join(", ")
                )
            }),
            report: ReloadReport {
                generation: r.generation,
                routes: r.routes,
                upstreams: r.upstreams,
                restart_required: r.restart_required,
            },
        })),
        Err(ReloadError::Invalid(errs)) => {
            let mut e = ApiError::new(
                422,
                "invalid-config",
                "Configuration refused",
                "The new configuration is invalid; the running one is kept.",
            );
            e.problem.errors = Some(errs.0.iter().map(|d| d.to_string()).collect());
            Err(e)
        }
        Err(e) => Err(ApiError::new(
            422,
            "reload-failed",
            "Configuration refused",
            format!("The new configuration could not be applied; the running one is kept: {e}"),
        )),
    }
}
