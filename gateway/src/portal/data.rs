//! `/_account/privacy`: the customer downloads their data or deletes their
//! account, each after a recent sign-in (`privacy.reauthenticate`; an older
//! session is sent to sign in again) and, for deletion, a confirmation.
//! The deletion ends the session at once and answers with a status page the
//! customer can keep (`/_auth/privacy/status`, keyed by an unguessable
//! token, no session needed); the export is downloaded as streamed JSON or
//! read as an HTML summary while it is valid.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::account::{Account, NoFields};
use super::request::Query;
use super::respond::*;
use super::*;
use crate::privacy::store::{Job, Kind, Task};
use crate::session::{self as sess, Session as Browser};
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_account/privacy", get(page))
        .route("/_account/privacy/reauth", post(reauth))
        .route("/_account/privacy/export", post(export))
        .route("/_account/privacy/delete", post(delete))
        .route("/_account/privacy/export/{file}", get(download))
        .route("/_auth/privacy/status", get(status))
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct NoticeQuery {
    notice: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DeleteForm {
    confirm: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatusQuery {
    job: String,
    t: String,
}

/// The token that shows a request's status without a session. Pure.
pub fn status_token(key: &[u8], job_id: &str) -> String {
    crate::privacy::tombstone(key, "status", job_id)
}

async fn page(
    State(p): State<Arc<Portal>>,
    Query(q): Query<NoticeQuery>,
    rq: Req,
) -> Result<Response> {
    let me = match p.me(&rq).await? {
        Ok(me) => me,
        Err(to_sign_in) => return Ok(to_sign_in),
    };
    let started = q.notice == "export_started";
    p.privacy_page(&rq, &me, 200, started, None).await
}

/// Ends this session and signs in again, back here.
async fn reauth(
    State(p): State<Arc<Portal>>,
    Account { rq, me, .. }: Account<NoFields>,
) -> Result<Response> {
    p.app.sessions.delete(&me.id_hash).await?;
    let domain = sess::cookie_domain(&rq.conn.host, &rq.snap.config.sessions.cookie_domains);
    let clear = sess::set_session_cookie(domain, "", 0);
    p.redirect(
        &rq,
        "/_auth/login?return_to=%2F_account%2Fprivacy",
        &[clear],
    )
    .await
}

async fn export(
    State(p): State<Arc<Portal>>,
    Account { rq, me, .. }: Account<NoFields>,
) -> Result<Response> {
    if !p.fresh(&rq.snap, &me) {
        return p.privacy_page(&rq, &me, 403, false, None).await;
    }
    let who = p.requester(&rq.snap, &me);
    crate::privacy::request(&p.app, &me.customer_id, Kind::Export, who)
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    p.redirect(&rq, "/_account/privacy?notice=export_started", &[])
        .await
}

async fn delete(
    State(p): State<Arc<Portal>>,
    Account { rq, me, form }: Account<DeleteForm>,
) -> Result<Response> {
    if !p.fresh(&rq.snap, &me) {
        return p.privacy_page(&rq, &me, 403, false, None).await;
    }
    if form.confirm != "yes" {
        let error = p.tr(&rq, "privacy.delete_unconfirmed");
        return p.privacy_page(&rq, &me, 422, false, Some(error)).await;
    }
    let who = p.requester(&rq.snap, &me);
    let job = crate::privacy::request(&p.app, &me.customer_id, Kind::Erasure, who)
        .await
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    // Signed out here at once; the worker ends every other session too.
    p.app.sessions.delete(&me.id_hash).await?;
    let domain = sess::cookie_domain(&rq.conn.host, &rq.snap.config.sessions.cookie_domains);
    let clear = sess::set_session_cookie(domain, "", 0);
    let token = status_token(&p.app.tombstone_key, &job.id);
    let to = format!("/_auth/privacy/status?job={}&t={token}", job.id);
    p.redirect(&rq, &to, &[clear]).await
}

async fn status(
    State(p): State<Arc<Portal>>,
    Query(q): Query<StatusQuery>,
    rq: Req,
) -> Result<Response> {
    let expected = status_token(&p.app.tombstone_key, &q.job);
    let job = if crate::privacy::valid_job_id(&q.job) && sess::same_token(&q.t, &expected) {
        p.app.privacy.job(&q.job).await.map_err(unavailable)?
    } else {
        None
    };
    let Some(job) = job.filter(|j| j.kind == Kind::Erasure) else {
        return Err(Failure::NotFound);
    };
    let tasks = p.app.privacy.tasks(&job.id).await.map_err(unavailable)?;
    let html = p.status_page(&rq, &job, &tasks);
    let mut resp = p.page(&rq, 200, html).await?;
    // The link is the key: never kept by a shared cache, never sent on.
    resp.headers_mut().insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    Ok(resp)
}

async fn download(
    State(p): State<Arc<Portal>>,
    Path(file): Path<String>,
    rq: Req,
) -> Result<Response> {
    let me = match p.me(&rq).await? {
        Ok(me) => me,
        Err(to_sign_in) => return Ok(to_sign_in),
    };
    let (id, json) = match file.strip_suffix(".json") {
        Some(id) => (id, true),
        None => (file.as_str(), false),
    };
    let now = sess::unix_now();
    let job = if crate::privacy::valid_job_id(id) {
        p.app.privacy.job(id).await.map_err(unavailable)?
    } else {
        None
    };
    let ready = job.filter(|j| {
        j.customer_id == me.customer_id
            && j.kind == Kind::Export
            && j.state == "ready"
            && j.export_expires_at.is_some_and(|t| t > now)
    });
    let Some(job) = ready else {
        return Err(Failure::NotFound);
    };
    let tasks = p.app.privacy.tasks(&job.id).await.map_err(unavailable)?;
    if json {
        return p.export_json(job, tasks).await;
    }
    let html = p.export_summary(&rq, &job, &tasks).await?;
    p.page(&rq, 200, html).await
}

fn unavailable(e: crate::customers::DirectoryError) -> Failure {
    Failure::Unavailable(e.to_string())
}

impl Portal {
    /// Whether the session's sign-in is recent enough for a privacy request.
    fn fresh(&self, snap: &Snapshot, me: &Browser) -> bool {
        sess::unix_now() - me.created_at <= snap.config.privacy.reauthenticate.as_secs() as i64
    }

    fn requester(&self, snap: &Snapshot, me: &Browser) -> crate::privacy::Requester {
        let ago = (sess::unix_now() - me.created_at).max(0);
        crate::privacy::Requester {
            requested_by: "customer".into(),
            channel: "account_page".into(),
            verification: format!(
                "signed in {ago} s before with {} (at most {} s allowed)",
                me.provider,
                snap.config.privacy.reauthenticate.as_secs()
            ),
        }
    }

    async fn privacy_page(
        &self,
        rq: &Req,
        me: &Browser,
        status: u16,
        started: bool,
        error: Option<String>,
    ) -> Result<Response> {
        let snap = &rq.snap;
        let jobs = self
            .app
            .privacy
            .jobs_of(&me.customer_id)
            .await
            .map_err(unavailable)?;
        let export = match jobs.iter().find(|j| j.kind == Kind::Export) {
            Some(j) => Some(self.export_row(j).await?),
            None => None,
        };
        // "We are gathering" while it is, not once it is ready.
        let gathering = export.as_ref().is_some_and(|e| e["ready"] != true);
        let notice = (started && gathering).then(|| self.tr(rq, "privacy.export_started"));
        let systems = self
            .app
            .privacy
            .customer_map(&me.customer_id)
            .await
            .map_err(unavailable)?
            .len()
            + snap
                .config
                .privacy
                .systems
                .iter()
                .filter(|s| s.all_customers)
                .count();
        let html = self.render(
            rq,
            "privacy.html",
            json!({
                "csrf": me.csrf, "fresh": self.fresh(snap, me), "notice": notice, "error": error,
                "export": export, "systems": systems,
                "days": snap.config.privacy.deadline.as_secs() / 86_400,
                "window": self.app.pages.duration(&self.lang(rq), snap.config.privacy.reauthenticate),
            }),
        );
        self.page(rq, status, html).await
    }

    /// The newest export as the page shows it.
    async fn export_row(&self, j: &Job) -> Result<serde_json::Value> {
        let now = sess::unix_now();
        let tasks = self.app.privacy.tasks(&j.id).await.map_err(unavailable)?;
        let done = tasks
            .iter()
            .filter(|t| crate::privacy::answer::settled(t))
            .count();
        let ready = j.state == "ready" && j.export_expires_at.is_some_and(|t| t > now);
        Ok(json!({
            "id": j.id, "ready": ready, "preparing": j.completed_at.is_none(),
            "done": done, "total": tasks.len().max(1),
            "until": j.export_expires_at.map(when),
        }))
    }

    fn status_page(&self, rq: &Req, job: &Job, tasks: &[Task]) -> String {
        let systems: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                let until = t
                    .detail
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                    .and_then(|d| d["until"].as_i64())
                    .map(when)
                    .unwrap_or_default();
                let key = format!("privacy.system_{}", t.state);
                json!({ "name": t.system, "state": self.tra(rq, &key, &[("until", &until)]) })
            })
            .collect();
        let state = match job.state.as_str() {
            s @ ("paused" | "completed_with_holds" | "completed") => s,
            _ => "in_progress",
        };
        let done = tasks
            .iter()
            .filter(|t| crate::privacy::answer::settled(t))
            .count();
        self.render(
            rq,
            "privacy_status.html",
            json!({
                "state": self.tr(rq, &format!("privacy.state_{state}")), "reference": job.id,
                "asked": when(job.created_at), "deadline": when(job.deadline_at),
                "done": done, "total": tasks.len().max(1), "systems": systems,
            }),
        )
    }

    async fn export_json(&self, job: Job, tasks: Vec<Task>) -> Result<Response> {
        let name = format!("attachment; filename=\"my-data-{}.json\"", job.id);
        let stream = crate::privacy::export::document(self.app.clone(), job, tasks)
            .await
            .map_err(Failure::Unavailable)?;
        Ok((
            [
                (http::header::CONTENT_TYPE, "application/json".to_string()),
                (http::header::CONTENT_DISPOSITION, name),
                (http::header::CACHE_CONTROL, "no-store".to_string()),
            ],
            axum::body::Body::from_stream(stream),
        )
            .into_response())
    }

    async fn export_summary(&self, rq: &Req, job: &Job, tasks: &[Task]) -> Result<String> {
        let g = crate::privacy::export::gateway_part(&self.app, job)
            .await
            .map_err(Failure::Unavailable)?;
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let mut systems = Vec::new();
        for t in tasks {
            let data = match t.state.as_str() {
                "exported" => {
                    crate::privacy::export::small_part(&self.app, &job.id, &t.system).await
                }
                _ => None,
            };
            let note = if t.state == "exported" {
                "export.large"
            } else {
                "export.none"
            };
            systems.push(json!({
                "name": t.system, "data": data.as_ref().map(pretty), "note": self.tr(rq, note),
            }));
        }
        Ok(self.render(
            rq,
            "export.html",
            json!({
                "id": job.id, "generated": when(sess::unix_now()),
                "profile": pretty(&g["profile"]), "identities": pretty(&g["identities"]),
                "sessions": pretty(&g["sessions"]), "consents": pretty(&g["consent_records"]),
                "data_map": pretty(&g["data_map"]), "systems": systems,
            }),
        ))
    }
}
