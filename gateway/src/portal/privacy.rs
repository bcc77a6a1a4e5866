//! `/.well-known/omnigate/privacy/callback/{job}/{system}`: where a system
//! that accepted an erasure or export answers later. Server to server: no
//! cookies or CSRF; the body is signed with the system's secret
//! (`Omnigate-Signature`, as the request it answers), checked in constant
//! time within five minutes. Answers are JSON.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{Portal, Req};
use crate::privacy::answer::{self, Answer};
use crate::privacy::apply::{self, Via};
use crate::privacy::store::Kind;

pub const CALLBACK: &str = "/.well-known/omnigate/privacy/callback/{job}/{system}";

pub fn routes() -> Router<Arc<Portal>> {
    Router::new().route(CALLBACK, post(callback))
}

fn json(status: u16, code: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:omnigate:problem:{code}"),
        "title": code.replace('-', " "),
        "status": status,
        "detail": detail,
    });
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let ct = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    (status, [(http::header::CONTENT_TYPE, ct)], body.to_string()).into_response()
}

async fn callback(
    State(p): State<Arc<Portal>>,
    Path((job_id, system)): Path<(String, String)>,
    rq: Req,
) -> Response {
    match recorded(&p, &job_id, &system, &rq).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn recorded(p: &Portal, job_id: &str, system: &str, rq: &Req) -> Result<Response, Response> {
    let none = || json(404, "not-found", "No such request or system.");
    if !crate::privacy::valid_job_id(job_id) {
        return Err(none());
    }
    let privacy = &rq.snap.config.privacy;
    let dir_err = |e: crate::customers::DirectoryError| {
        tracing::warn!(error = %e, "privacy callback: store unavailable");
        json(
            503,
            "unavailable",
            "The gateway cannot record answers right now; retry.",
        )
    };
    let job = p
        .app
        .privacy
        .job(job_id)
        .await
        .map_err(dir_err)?
        .ok_or_else(none)?;
    let endpoint = privacy.system(system).and_then(|s| match job.kind {
        Kind::Erasure => s.erasure.as_ref(),
        Kind::Export => s.export.as_ref(),
    });
    let Some(endpoint) = endpoint else {
        return Err(none());
    };
    let body = std::str::from_utf8(&rq.body)
        .map_err(|_| json(400, "bad-request", "The body is not UTF-8 JSON."))?;
    let signature = rq
        .head
        .headers
        .get("omnigate-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = crate::session::unix_now();
    if let Err(e) = answer::verify(&endpoint.secret, signature, body, now) {
        tracing::warn!(job = job_id, system, error = %e, "privacy callback refused");
        return Err(json(401, "bad-signature", &e.to_string()));
    }
    let answer = answer::parse(200, body.as_bytes(), now);
    if matches!(answer, Answer::Accepted) {
        return Ok(json(200, "recorded", "Still waiting for the outcome."));
    }
    let tasks = p.app.privacy.tasks(job_id).await.map_err(dir_err)?;
    let task = tasks
        .into_iter()
        .find(|t| t.system == system)
        .ok_or_else(none)?;
    if job.kind == Kind::Export && answer == Answer::Exported {
        if let Err(e) = crate::privacy::export::keep_callback(&p.app, job_id, system, body).await {
            tracing::warn!(error = %e, "privacy callback: export not kept");
            return Err(json(
                503,
                "unavailable",
                "The export could not be kept; retry.",
            ));
        }
    }
    let via = Via {
        actor: "callback",
        attempted: false,
        rev: None,
    };
    match apply::answer(&p.app, &job, &task, &answer, via).await {
        Ok(true) => Ok(json(200, "recorded", answer.state())),
        Ok(false) => Err(json(
            409,
            "already-settled",
            "This system's part of the request has already ended.",
        )),
        Err(e) => Err(dir_err(e)),
    }
}
