//! What an answer does, wherever it came from (the worker's request, the
//! system's callback, an operator recording a manual system): the task's
//! new state, a hold placed or released, the audit line, and the job moved
//! on once every system has settled.

use super::answer::{all_settled, holds_pending, retry_in, Answer};
use super::store::{Hold, Job, JobChange, Task, TaskChange};
use crate::customers::{DirectoryError, Event};
use crate::state::App;

/// How the answer arrived.
pub struct Via<'a> {
    /// `gateway` (the worker sent it), `callback`, `operator`.
    pub actor: &'a str,
    /// The worker made an attempt (counted, timed).
    pub attempted: bool,
    /// The task's `rev` the worker claimed; None for callbacks and operators.
    pub rev: Option<i64>,
}

/// Records `answer` for `task`. False if the task moved on meanwhile (a
/// stale lease or an answer for a task that already ended).
pub async fn answer(
    app: &App,
    job: &Job,
    task: &Task,
    answer: &Answer,
    via: Via<'_>,
) -> Result<bool, DirectoryError> {
    let now = crate::session::unix_now();
    let change = change(app, task, answer, &via, now);
    if !app.privacy.record_task(&change, via.rev).await? {
        return Ok(false);
    }
    effects(app, job, task, answer, now).await?;
    let line = format!("{}: {}", task.system, answer.state());
    app.privacy
        .audit(&job.id, via.actor, &line, change.detail.as_deref(), now)
        .await?;
    settle(app, &job.id).await?;
    Ok(true)
}

/// The task's new state. Pure but for the clock and jitter it is given.
fn change(app: &App, task: &Task, answer: &Answer, via: &Via<'_>, now: i64) -> TaskChange {
    let p = &app.snapshot().config.privacy;
    let attempts = task.attempts + i64::from(via.attempted);
    let (next, error) = match answer {
        Answer::Accepted => (now + p.retry_max.as_secs() as i64, None),
        Answer::Retained { until, .. } => (*until, None),
        Answer::Error(e) => {
            let wait = retry_in(
                attempts - 1,
                p.retry_first.as_secs().max(1),
                p.retry_max.as_secs(),
                rand::random::<f64>(),
            );
            (now + wait, Some(e.clone()))
        }
        _ => (now, None),
    };
    let settled = !matches!(answer, Answer::Accepted | Answer::Error(_));
    TaskChange {
        job_id: task.job_id.clone(),
        system: task.system.clone(),
        state: answer.state().to_string(),
        attempts,
        next_attempt_at: next,
        last_error: error,
        last_attempt_at: if via.attempted {
            Some(now)
        } else {
            task.last_attempt_at
        },
        answered_at: settled.then_some(now).or(task.answered_at),
        detail: Some(detail(answer)),
    }
}

fn detail(answer: &Answer) -> String {
    match answer {
        Answer::Retained {
            legal_basis,
            categories,
            until,
        } => serde_json::json!({
            "status": "retained", "legal_basis": legal_basis,
            "categories": categories, "until": until,
        }),
        Answer::Error(e) => serde_json::json!({ "status": "error", "reason": e }),
        other => serde_json::json!({ "status": other.state() }),
    }
    .to_string()
}

/// A hold placed for a retention, released when the system erases after
/// all; a failure counted.
async fn effects(
    app: &App,
    job: &Job,
    task: &Task,
    answer: &Answer,
    now: i64,
) -> Result<(), DirectoryError> {
    match answer {
        Answer::Retained {
            legal_basis,
            categories,
            until,
        } => {
            let hold = Hold {
                id: format!("hld_{}", hex::encode(rand::random::<[u8; 16]>())),
                customer_id: job.customer_id.clone(),
                job_id: Some(job.id.clone()),
                system: Some(task.system.clone()),
                categories: categories.clone(),
                reason: format!("{} keeps these categories by law", task.system),
                legal_basis: Some(legal_basis.clone()),
                until: Some(*until),
                placed_by: format!("system:{}", task.system),
                placed_at: now,
                released_at: None,
                release_reason: None,
            };
            app.privacy
                .release_holds(
                    &job.id,
                    Some(&task.system),
                    "replaced by a newer retention",
                    now,
                )
                .await?;
            app.privacy.place_hold(&hold, &hold_event(&hold)).await
        }
        Answer::Erased | Answer::NotFound if task.state == "retained" => app
            .privacy
            .release_holds(
                &job.id,
                Some(&task.system),
                "erased after the hold ended",
                now,
            )
            .await
            .map(|_| ()),
        Answer::Error(_) => {
            app.metrics
                .privacy
                .system_failures
                .with_label_values(&[task.system.as_str()])
                .inc();
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The `privacy.hold_placed` event of a hold.
pub fn hold_event(h: &Hold) -> Event {
    Event::new(
        "privacy.hold_placed",
        serde_json::json!({
            "hold_id": h.id, "customer_id": h.customer_id, "job_id": h.job_id,
            "system": h.system, "categories": h.categories, "legal_basis": h.legal_basis,
            "until": h.until, "reason": h.reason, "placed_by": h.placed_by,
        }),
    )
}

/// Moves the job on when its tasks allow: to `finish` once every system
/// has settled, to `close` once no hold is pending after the finish.
pub async fn settle(app: &App, job_id: &str) -> Result<(), DirectoryError> {
    let Some(job) = app.privacy.job(job_id).await? else {
        return Ok(());
    };
    let tasks = app.privacy.tasks(job_id).await?;
    let next = match job.step.as_str() {
        "fanout" if all_settled(&tasks) => "finish",
        "holds" if !holds_pending(&tasks) => "close",
        _ => return Ok(()),
    };
    let change = JobChange {
        step: next.into(),
        state: job.state.clone(),
        next_run_at: crate::session::unix_now(),
        ..Default::default()
    };
    app.privacy.set_job(job_id, None, &change).await?;
    app.privacy_wake.notify_one();
    Ok(())
}
