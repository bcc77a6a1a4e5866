//! The admin token check in front of every write and customer endpoint:
//! `Authorization: Bearer <admin.token>` compared in constant time; a client
//! that keeps failing is slowed down (429 with `Retry-After`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, Shared};

pub async fn require_token(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    match check(&app, peer, &given).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(app: &Shared, peer: Option<std::net::IpAddr>, given: &str) -> Result<(), ApiError> {
    let who = crate::throttle::address(peer);
    if let Some(secs) = crate::throttle::retry_after(&*app.sessions, "admin", &who).await {
        app.metrics.throttled.with_label_values(&["admin"]).inc();
        return Err(ApiError::new(
            429,
            "too-many-requests",
            "Too many failed attempts",
            format!("Retry in {secs} seconds."),
        )
        .with_header(http::header::RETRY_AFTER, secs.to_string()));
    }
    let snap = app.snapshot();
    let Some(expected) = snap.config.admin.as_ref().and_then(|a| a.token.clone()) else {
        return Err(ApiError::new(
            403,
            "admin-disabled",
            "Admin API disabled",
            "No admin.token is configured, so write endpoints are off. Set admin.token (e.g. ${OMNIGATE_ADMIN_TOKEN}) and reload with SIGHUP.",
        ));
    };
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return Ok(());
    }
    crate::throttle::failed(&*app.sessions, "admin", &who, &snap.config.abuse).await;
    Err(ApiError::new(
        401,
        "unauthorized",
        "Unauthorized",
        "A valid admin bearer token is required.",
    )
    .with_header(
        http::header::WWW_AUTHENTICATE,
        "Bearer realm=\"omnigate-admin\"",
    ))
}
