//! The privacy worker, one per node: flushes the data map, moves jobs
//! through their steps (revoke → plan → fanout → finish → holds → close)
//! and sends due tasks to their systems. Every step and task is leased in
//! the store, so nodes share the work and a node killed mid-step leaves it
//! to the next one when the lease runs out; every write names the `rev` it
//! claimed, so a late answer never overwrites a newer one.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::answer::{self, Answer};
use super::apply::{self, Via};
use super::store::{Job, JobChange, Kind, Task};
use crate::config::model::Privacy;
use crate::customers::Event;
use crate::state::App;

/// Runs until the gateway is dropped.
pub async fn run(app: Weak<App>) {
    let owner = format!("node_{}", hex::encode(rand::random::<[u8; 8]>()));
    let http = match crate::auth::jwks::HttpClient::new(Duration::from_secs(3600)) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "privacy worker cannot start");
            return;
        }
    };
    let mut last_flush = Instant::now();
    let mut last_counts = Instant::now() - Duration::from_secs(60);
    let mut dropped = 0;
    loop {
        let Some(app) = app.upgrade() else { return };
        let p = app.snapshot().config.privacy.clone();
        refresh_refusals(&app).await;
        if last_flush.elapsed() >= p.data_map_flush {
            dropped = flush(&app, dropped).await;
            last_flush = Instant::now();
        }
        steps(&app, &owner, &p).await;
        tasks(&app, &owner, &p, &http).await;
        if last_counts.elapsed() >= Duration::from_secs(5) {
            counts(&app).await;
            expire_exports(&app).await;
            last_counts = Instant::now();
        }
        let wake = app.privacy_wake.clone();
        drop(app);
        tokio::select! {
            _ = tokio::time::sleep(p.tick) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Folds the in-memory data map into the store; a failed batch goes back.
/// Returns the dropped count seen, so only the new drops are counted.
pub async fn flush(app: &App, dropped_before: usize) -> usize {
    let rows = app.data_map.take();
    let m = &app.metrics.privacy;
    for (i, batch) in rows.chunks(500).enumerate() {
        if let Err(e) = app.privacy.upsert_map(batch).await {
            tracing::warn!(error = %e, "data map flush failed; kept for the next one");
            m.map_flush_failures.inc();
            app.data_map.restore(rows[i * 500..].to_vec());
            break;
        }
    }
    let dropped = app.data_map.dropped();
    m.map_dropped
        .inc_by(dropped.saturating_sub(dropped_before) as u64);
    m.map_pairs.set(app.data_map.pairs() as i64);
    m.map_bytes.set(app.data_map.approx_bytes() as i64);
    dropped
}

async fn refresh_refusals(app: &App) {
    match app.privacy.erasing(crate::session::unix_now()).await {
        Ok(ids) => app.auth.set_refused(ids),
        Err(e) => tracing::debug!(error = %e, "erasing customers not read"),
    }
}

/// Exports past their time: the systems' parts are deleted.
async fn expire_exports(app: &App) {
    let now = crate::session::unix_now();
    let Ok(ids) = app.privacy.expired_exports(now).await else {
        return;
    };
    for id in ids {
        if app.privacy.drop_parts(&id, None).await.is_ok() {
            let change = JobChange {
                step: "done".into(),
                state: "expired".into(),
                next_run_at: now,
                ..Default::default()
            };
            let _ = app.privacy.set_job(&id, None, &change).await;
            let _ = app
                .privacy
                .audit(
                    &id,
                    "gateway",
                    "export expired",
                    Some("the download was deleted"),
                    now,
                )
                .await;
        }
    }
}

async fn counts(app: &App) {
    let Ok(c) = app.privacy.counts(crate::session::unix_now()).await else {
        return;
    };
    let m = &app.metrics.privacy;
    m.jobs.reset();
    for (kind, state, n) in &c.jobs {
        m.jobs
            .with_label_values(&[kind.as_str(), state.as_str()])
            .set(*n);
    }
    m.overdue.set(c.overdue);
    m.holds.set(c.active_holds);
    m.failing.reset();
    for (system, n) in &c.failing {
        m.failing.with_label_values(&[system.as_str()]).set(*n);
    }
}

/// Runs due job steps, one job at a time, until none is due.
async fn steps(app: &App, owner: &str, p: &Privacy) {
    for _ in 0..32 {
        let now = crate::session::unix_now();
        let lease = now + p.lease.as_secs() as i64;
        let job = match app.privacy.claim_job(owner, now, lease).await {
            Ok(Some(j)) => j,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "privacy jobs unavailable");
                return;
            }
        };
        let change = match step(app, &job, p).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(job = %job.id, step = %job.step, error = %e, "privacy step failed; retried");
                let _ = app
                    .privacy
                    .audit(
                        &job.id,
                        "gateway",
                        &format!("{} failed", job.step),
                        Some(&e),
                        now,
                    )
                    .await;
                JobChange {
                    step: job.step.clone(),
                    state: job.state.clone(),
                    next_run_at: now + p.retry_first.as_secs().max(1) as i64,
                    ..Default::default()
                }
            }
        };
        match app.privacy.set_job(&job.id, Some(owner), &change).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(job = %job.id, "job moved on elsewhere meanwhile"),
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "job step not recorded; the lease runs out and it is retried")
            }
        }
    }
}

/// One job step; the change it leads to.
async fn step(app: &App, job: &Job, p: &Privacy) -> Result<JobChange, String> {
    let now = crate::session::unix_now();
    let again = |step: &str, state: &str, wait: i64| JobChange {
        step: step.into(),
        state: state.into(),
        next_run_at: now + wait,
        ..Default::default()
    };
    if job.kind == Kind::Erasure && paused(app, job, now).await? {
        return Ok(again(&job.step, "paused", p.tick.as_secs().max(5) as i64));
    }
    let state = if job.state == "paused" {
        "in_progress"
    } else {
        job.state.as_str()
    };
    match job.step.as_str() {
        "revoke" => {
            if job.kind == Kind::Erasure {
                revoke(app, job).await?;
            }
            Ok(again("plan", "in_progress", 0))
        }
        "plan" => plan(app, job, p).await,
        "fanout" | "holds" => {
            apply::settle(app, &job.id)
                .await
                .map_err(|e| e.to_string())?;
            // Unchanged unless settle moved it: look again in a while.
            let wait = p.retry_max.as_secs().min(30) as i64;
            let current = app.privacy.job(&job.id).await.map_err(|e| e.to_string())?;
            match current {
                Some(j) if j.step != job.step => Ok(again(&j.step, &j.state, 0)),
                _ => Ok(again(&job.step, state, wait)),
            }
        }
        "finish" => match job.kind {
            Kind::Erasure => finish_erasure(app, job).await,
            Kind::Export => finish_export(app, job, p).await,
        },
        "close" => close(app, job).await,
        other => Err(format!("unknown step `{other}`")),
    }
}

/// Whether an operator's hold on the customer pauses the job.
async fn paused(app: &App, job: &Job, now: i64) -> Result<bool, String> {
    let holds = app
        .privacy
        .holds(Some(&job.customer_id), now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(holds
        .iter()
        .any(|h| h.system.is_none() && h.released_at.is_none() && h.until.is_none_or(|u| u > now)))
}

/// Ends every session of the customer on every node and refuses them.
async fn revoke(app: &App, job: &Job) -> Result<(), String> {
    let dir = app.auth.directory();
    dir.set_status(&job.customer_id, crate::customers::ERASING)
        .await
        .map_err(|e| e.to_string())?;
    app.auth.refuse(&job.customer_id);
    app.auth.forget_all();
    let ended = app
        .sessions
        .end(crate::session::Group::Customer(&job.customer_id))
        .await
        .map_err(|e| e.to_string())?;
    crate::events::session_ended(&**dir, Some(&job.customer_id), "erasure", ended).await;
    let line = format!("{ended} session(s) ended; sign-ins and tokens refused");
    app.privacy
        .audit(
            &job.id,
            "gateway",
            "revoked",
            Some(&line),
            crate::session::unix_now(),
        )
        .await
        .map_err(|e| e.to_string())
}

/// The systems the job reaches: those in the customer's data map and those
/// declared for every customer; an undeclared system is left to an operator.
async fn plan(app: &App, job: &Job, p: &Privacy) -> Result<JobChange, String> {
    let now = crate::session::unix_now();
    let seen = app
        .privacy
        .customer_map(&job.customer_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut names: Vec<String> = seen.into_iter().map(|s| s.system).collect();
    names.extend(
        p.systems
            .iter()
            .filter(|s| s.all_customers)
            .map(|s| s.name.clone()),
    );
    names.sort();
    names.dedup();
    let tasks: Vec<(String, String)> = names
        .into_iter()
        .filter_map(|n| {
            let system = p.system(&n);
            let state = match (job.kind, system) {
                (Kind::Erasure, Some(s)) if s.erasure.is_some() => "pending",
                (Kind::Erasure, _) => "manual",
                (Kind::Export, Some(s)) if s.export.is_some() => "pending",
                (Kind::Export, _) => return None,
            };
            Some((n, state.to_string()))
        })
        .collect();
    app.privacy
        .add_tasks(&job.id, &tasks, now)
        .await
        .map_err(|e| e.to_string())?;
    let line = tasks
        .iter()
        .map(|(s, st)| format!("{s} ({st})"))
        .collect::<Vec<_>>()
        .join(", ");
    app.privacy
        .audit(&job.id, "gateway", "planned", Some(&line), now)
        .await
        .map_err(|e| e.to_string())?;
    let step = if tasks.is_empty() { "finish" } else { "fanout" };
    Ok(JobChange {
        step: step.into(),
        state: "in_progress".into(),
        next_run_at: if tasks.is_empty() { now } else { now + 30 },
        ..Default::default()
    })
}

/// Every system has settled: mail the receipt, delete the account, keep
/// the tombstones and sign the report.
async fn finish_erasure(app: &App, job: &Job) -> Result<JobChange, String> {
    let now = crate::session::unix_now();
    let e = |e: crate::customers::DirectoryError| e.to_string();
    let subject = job.subject.clone().unwrap_or_default();
    if let Some(to) = &subject.email {
        receipt(app, job, to, subject.name.as_deref());
    }
    let (report, tasks) = report(app, job, now).await?;
    let pending = answer::holds_pending(&tasks);
    let outcome = if pending {
        "completed_with_holds"
    } else {
        "completed"
    };
    let event = completed_event(job, outcome);
    let stones = super::tombstones(&app.tombstone_key, &subject);
    app.privacy
        .erase_customer(&job.customer_id, &stones, &job.id, &event, now)
        .await
        .map_err(e)?;
    app.privacy
        .audit(&job.id, "gateway", "account deleted", Some(outcome), now)
        .await
        .map_err(e)?;
    tracing::info!(job = %job.id, outcome, "customer erased");
    Ok(JobChange {
        step: if pending { "holds" } else { "done" }.into(),
        state: outcome.into(),
        next_run_at: now + 60,
        completed_at: Some(now),
        report: Some(report),
        scrub: !pending,
        ..Default::default()
    })
}

/// The last hold has ended and the system erased: the final report.
async fn close(app: &App, job: &Job) -> Result<JobChange, String> {
    let now = crate::session::unix_now();
    let e = |e: crate::customers::DirectoryError| e.to_string();
    let (report, _) = report(app, job, now).await?;
    app.privacy
        .audit(
            &job.id,
            "gateway",
            "holds ended",
            Some("every system erased"),
            now,
        )
        .await
        .map_err(e)?;
    crate::events::emit(
        &**app.auth.directory(),
        "privacy.erasure_completed",
        completed_data(job, "completed"),
    )
    .await;
    Ok(JobChange {
        step: "done".into(),
        state: "completed".into(),
        next_run_at: now,
        report: Some(report),
        scrub: true,
        ..Default::default()
    })
}

async fn finish_export(app: &App, job: &Job, p: &Privacy) -> Result<JobChange, String> {
    let now = crate::session::unix_now();
    let expires = now + p.export_ttl.as_secs() as i64;
    crate::events::emit(
        &**app.auth.directory(),
        "privacy.export_ready",
        serde_json::json!({ "job_id": job.id, "customer_id": job.customer_id, "expires_at": expires }),
    )
    .await;
    Ok(JobChange {
        step: "done".into(),
        state: "ready".into(),
        next_run_at: now,
        completed_at: Some(now),
        export_expires_at: Some(expires),
        ..Default::default()
    })
}

/// The signed report of the job as it stands, and its tasks.
async fn report(app: &App, job: &Job, now: i64) -> Result<(String, Vec<Task>), String> {
    let e = |e: crate::customers::DirectoryError| e.to_string();
    let tasks = app.privacy.tasks(&job.id).await.map_err(e)?;
    let holds = app
        .privacy
        .holds(Some(&job.customer_id), now)
        .await
        .map_err(e)?;
    let claims = super::report::claims(&app.signer.issuer, job, &tasks, &holds, now);
    let jws = app
        .signer
        .sign_document(&claims, super::report::TYP)
        .ok_or_else(|| "the report could not be signed".to_string())?;
    Ok((jws, tasks))
}

fn completed_data(job: &Job, outcome: &str) -> serde_json::Value {
    serde_json::json!({ "job_id": job.id, "customer_id": job.customer_id, "outcome": outcome })
}

fn completed_event(job: &Job, outcome: &str) -> Event {
    Event::new("privacy.erasure_completed", completed_data(job, outcome))
}

/// Mails the customer that their account is gone, before the address is.
fn receipt(app: &App, job: &Job, to: &str, name: Option<&str>) {
    let Some(mailer) = &app.mailer else { return };
    let snap = app.snapshot();
    let lang = snap
        .config
        .pages
        .languages
        .first()
        .cloned()
        .unwrap_or_else(|| "en".into());
    let content = crate::pages::MailContent {
        name,
        reference: Some(&job.id),
        ..Default::default()
    };
    let mail = app.pages.mail(
        &lang,
        crate::accounts::mail::Kind::ErasureReceipt,
        to,
        content,
    );
    mailer.send_later(mail, app.metrics.mail_failures.clone());
}

/// Sends due tasks to their systems, a few at once.
async fn tasks(app: &Arc<App>, owner: &str, p: &Privacy, http: &crate::auth::jwks::HttpClient) {
    let now = crate::session::unix_now();
    let lease = now + p.lease.as_secs() as i64;
    let due = match app.privacy.claim_tasks(owner, now, lease, 16).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "privacy tasks unavailable");
            return;
        }
    };
    let sends = due.into_iter().map(|t| {
        let app = app.clone();
        let http = http.clone();
        async move { send(&app, &http, t).await }
    });
    futures_util::future::join_all(sends).await;
}

/// One attempt at one system, and what its answer does.
async fn send(app: &App, http: &crate::auth::jwks::HttpClient, task: Task) {
    let job = match app.privacy.job(&task.job_id).await {
        Ok(Some(j)) => j,
        _ => return,
    };
    let answer = attempt(app, http, &job, &task).await;
    let via = Via {
        actor: "gateway",
        attempted: true,
        rev: Some(task.rev),
    };
    match apply::answer(app, &job, &task, &answer, via).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(job = %job.id, system = %task.system, "answer arrived after the task moved on; ignored")
        }
        Err(e) => {
            tracing::warn!(job = %job.id, system = %task.system, error = %e, "answer not recorded; the lease runs out and it is sent again")
        }
    }
}

async fn attempt(
    app: &App,
    http: &crate::auth::jwks::HttpClient,
    job: &Job,
    task: &Task,
) -> Answer {
    let snap = app.snapshot();
    let p = &snap.config.privacy;
    let endpoint = p.system(&task.system).and_then(|s| match job.kind {
        Kind::Erasure => s.erasure.as_ref(),
        Kind::Export => s.export.as_ref(),
    });
    let Some(endpoint) = endpoint else {
        return Answer::Error(format!(
            "`{}` has no {} endpoint in the configuration now",
            task.system,
            job.kind.as_str()
        ));
    };
    let Some(subject) = &job.subject else {
        return Answer::Error("the job no longer holds who it is about".into());
    };
    let categories: Option<Vec<String>> = (task.state == "retained")
        .then(|| {
            task.detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| serde_json::from_value(d["categories"].clone()).ok())
        })
        .flatten();
    let callback = answer::callback_url(&p.callback_url, &job.id, &task.system);
    let body = answer::body(&answer::Request {
        kind: job.kind,
        job_id: &job.id,
        customer_id: &job.customer_id,
        subject,
        system: &task.system,
        deadline_at: job.deadline_at,
        callback_url: &callback,
        categories: categories.as_deref(),
        attempt: task.attempts + 1,
    });
    let now = crate::session::unix_now();
    let headers = [
        (
            "omnigate-signature",
            crate::webhook::signature(&endpoint.secret, now, &body),
        ),
        ("omnigate-job-id", job.id.clone()),
        ("omnigate-request-type", job.kind.as_str().to_string()),
    ];
    let exchange = async {
        match job.kind {
            Kind::Erasure => {
                let (status, body) = http
                    .post_for_answer(&endpoint.url, &body, &headers, 1 << 20)
                    .await?;
                Ok(answer::parse(status, &body, crate::session::unix_now()))
            }
            Kind::Export => {
                let resp = http.post_streaming(&endpoint.url, &body, &headers).await?;
                Ok(super::export::receive(app, job, task, resp).await)
            }
        }
    };
    match tokio::time::timeout(endpoint.timeout, exchange).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => Answer::Error(e),
        Err(_) => Answer::Error(format!(
            "no answer within {}",
            humantime::format_duration(endpoint.timeout)
        )),
    }
}
