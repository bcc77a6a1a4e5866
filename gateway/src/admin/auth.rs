//! The admin token check in front of every write and customer endpoint:
//! `Authorization: Bearer <admin.token>` (or, for a browser on the console,
//! HTTP Basic with the token as the password) compared in constant time; a
//! client that keeps failing is slowed down (429 with `Retry-After`).

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
    let given = given_token(
        req.headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let console = req.uri().path().starts_with("/admin/console/");
    match check(&app, peer, &given).await {
        Ok(()) => next.run(req).await,
        Err(e) if console && e.problem.status == 401 => e
            .with_header(
                http::header::WWW_AUTHENTICATE,
                "Basic realm=\"omnigate-admin\", charset=\"UTF-8\"",
            )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The token of `Bearer <token>`, or the password of `Basic` (a browser's
/// prompt: any user name, the token as the password). Pure.
pub fn given_token(authorization: Option<&str>) -> String {
    use base64::Engine;
    let Some(v) = authorization else {
        return String::new();
    };
    if let Some(t) = v.strip_prefix("Bearer ") {
        return t.to_string();
    }
    v.strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()))
        .unwrap_or_default()
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
            "No admin.token is configured, so write endpoints are off. The shipped config.yaml reads it from the environment at start: restart Omnigate with OMNIGATE_ADMIN_TOKEN set to 16 characters or more (deploy/local/run makes one and keeps it in .omnigate/admin-token). A reload re-reads the file but not the environment, so to turn it on without a restart write the token into admin.token and reload.",
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

#[cfg(test)]
mod tests {
    use super::given_token;

    #[test]
    fn bearer_or_the_password_of_basic() {
        assert_eq!(given_token(Some("Bearer abc")), "abc");
        // "ops:s3cret:x" — the password may hold a colon.
        assert_eq!(given_token(Some("Basic b3BzOnMzY3JldDp4")), "s3cret:x");
        assert_eq!(given_token(Some("Basic !!!")), "");
        assert_eq!(given_token(Some("Digest x")), "");
        assert_eq!(given_token(None), "");
    }
}
