//! The operator's privacy console on the admin listener: server-rendered
//! pages (no script) listing privacy requests with each one's progress
//! across systems, overdue ones first, the holds in force, and one
//! request's systems, audit trail and report download. Behind the admin
//! token like the API; a browser gives it as the password of HTTP Basic.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{context, Environment};
use utoipa_axum::router::OpenApiRouter;

use super::problem::ApiPath as Path;
use super::{ApiError, Shared};

const LIST: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Privacy requests · Omnigate</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2330}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e5e7eb;vertical-align:top}
.overdue{color:#b91c1c;font-weight:600}progress{width:8rem}.meta{color:#4b5563;font-size:.9rem}</style></head>
<body><h1>Privacy requests</h1>
<p class="meta">{{ open }} open, {{ overdue }} overdue, {{ holds | length }} holds in force.</p>
<table><thead><tr><th>Request</th><th>Kind</th><th>Customer</th><th>State</th><th>Systems</th><th>Deadline</th><th>Report</th></tr></thead><tbody>
{% for r in requests %}<tr>
<td><a href="/admin/console/privacy/{{ r.id }}">{{ r.id }}</a><br><span class="meta">{{ r.requested_by }} via {{ r.channel }}</span></td>
<td>{{ r.kind }}</td><td>{{ r.customer_id }}</td><td>{{ r.state }}</td>
<td><progress max="{{ r.total }}" value="{{ r.settled }}">{{ r.settled }}/{{ r.total }}</progress> {{ r.settled }}/{{ r.total }}{% if r.failing %}<br><span class="overdue">failing: {{ r.failing }}</span>{% endif %}</td>
<td{% if r.overdue %} class="overdue"{% endif %}>{{ r.deadline }}{% if r.overdue %} (overdue){% endif %}</td>
<td>{% if r.report %}<a href="/admin/privacy/requests/{{ r.id }}/report">download</a>{% endif %}</td>
</tr>{% else %}<tr><td colspan="7">No privacy requests.</td></tr>{% endfor %}
</tbody></table>
<h2>Holds in force</h2>
<table><thead><tr><th>Customer</th><th>System</th><th>Categories</th><th>Reason</th><th>Until</th></tr></thead><tbody>
{% for h in holds %}<tr><td>{{ h.customer_id }}</td><td>{{ h.system or "every system (operator)" }}</td><td>{{ h.categories | join(", ") }}</td>
<td>{{ h.reason }}{% if h.legal_basis %} ({{ h.legal_basis }}){% endif %}</td><td>{{ h.until or "until released" }}</td></tr>
{% else %}<tr><td colspan="5">None.</td></tr>{% endfor %}
</tbody></table></body></html>"#;

const ONE: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{{ r.id }} · Omnigate</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2330}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e5e7eb;vertical-align:top}
.failing{color:#b91c1c;font-weight:600}.meta{color:#4b5563;font-size:.9rem}progress{width:12rem}</style></head>
<body><p><a href="/admin/console/privacy">All requests</a></p>
<h1>{{ r.kind }} request {{ r.id }}</h1>
<p>{{ r.state }} · customer {{ r.customer_id }} · asked {{ r.created }} by {{ r.requested_by }} via {{ r.channel }} ({{ r.verification }}) · deadline {{ r.deadline }}</p>
<p><progress max="{{ total }}" value="{{ settled }}">{{ settled }}/{{ total }}</progress> {{ settled }} of {{ total }} systems settled
{% if r.report %} · <a href="/admin/privacy/requests/{{ r.id }}/report">signed report</a>{% endif %}</p>
<h2>Systems</h2>
<table><thead><tr><th>System</th><th>State</th><th>Attempts</th><th>Last attempt</th><th>Next</th><th>Last error</th></tr></thead><tbody>
{% for s in systems %}<tr><td>{{ s.system }}</td><td{% if s.state == "failing" %} class="failing"{% endif %}>{{ s.state }}</td>
<td>{{ s.attempts }}</td><td>{{ s.last or "" }}</td><td>{{ s.next or "" }}</td><td>{{ s.error or "" }}</td></tr>
{% else %}<tr><td colspan="6">Not planned yet.</td></tr>{% endfor %}
</tbody></table>
<h2>Audit trail</h2>
<table><thead><tr><th>When</th><th>Who</th><th>What</th><th>Detail</th></tr></thead><tbody>
{% for a in trail %}<tr><td>{{ a.at }}</td><td>{{ a.actor }}</td><td>{{ a.what }}</td><td>{{ a.detail or "" }}</td></tr>{% endfor %}
</tbody></table></body></html>"#;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .route("/admin/console/privacy", axum::routing::get(list))
        .route("/admin/console/privacy/{id}", axum::routing::get(one))
}

use crate::pages::when;

fn render(template: &str, ctx: minijinja::Value) -> Result<Response, ApiError> {
    let mut env = Environment::new();
    // Named .html: every value is escaped.
    env.add_template("page.html", template)
        .map_err(|e| ApiError::new(500, "internal", "Internal error", e.to_string()))?;
    let html = env
        .get_template("page.html")
        .and_then(|t| t.render(ctx))
        .map_err(|e| ApiError::new(500, "internal", "Internal error", e.to_string()))?;
    Ok((
        [
            (
                http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
        .into_response())
}

fn down(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("privacy store", e)
}

async fn list(State(app): State<Shared>) -> Result<Response, ApiError> {
    let now = crate::session::unix_now();
    let jobs = app.privacy.jobs(None, 500).await.map_err(down)?;
    let mut rows = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let tasks = app.privacy.tasks(&j.id).await.map_err(down)?;
        let settled = tasks
            .iter()
            .filter(|t| crate::privacy::answer::settled(t))
            .count();
        let failing: Vec<&str> = tasks
            .iter()
            .filter(|t| t.state == "failing")
            .map(|t| t.system.as_str())
            .collect();
        rows.push(context! {
            id => j.id, kind => j.kind.as_str(), customer_id => j.customer_id, state => j.state,
            requested_by => j.requested_by, channel => j.channel,
            settled => settled, total => tasks.len().max(1), failing => failing.join(", "),
            deadline => when(j.deadline_at), overdue => j.completed_at.is_none() && j.deadline_at < now,
            report => j.report.is_some(),
        });
    }
    // Overdue first, then the newest.
    rows.sort_by_key(|r| !r.get_attr("overdue").is_ok_and(|v| v.is_true()));
    let holds = app.privacy.holds(None, now).await.map_err(down)?;
    let holds: Vec<minijinja::Value> = holds
        .iter()
        .map(|h| {
            context! {
                customer_id => h.customer_id, system => h.system, categories => h.categories,
                reason => h.reason, legal_basis => h.legal_basis, until => h.until.map(when),
            }
        })
        .collect();
    let open = jobs.iter().filter(|j| j.completed_at.is_none()).count();
    let overdue = jobs
        .iter()
        .filter(|j| j.completed_at.is_none() && j.deadline_at < now)
        .count();
    render(
        LIST,
        context! { requests => rows, holds => holds, open => open, overdue => overdue },
    )
}

async fn one(State(app): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let none = || ApiError::not_found("No privacy request with this id.");
    if !crate::privacy::valid_job_id(&id) {
        return Err(none());
    }
    let job = app.privacy.job(&id).await.map_err(down)?.ok_or_else(none)?;
    let tasks = app.privacy.tasks(&id).await.map_err(down)?;
    let trail = app.privacy.trail(&id).await.map_err(down)?;
    let settled = tasks
        .iter()
        .filter(|t| crate::privacy::answer::settled(t))
        .count();
    let systems: Vec<minijinja::Value> = tasks
        .iter()
        .map(|t| {
            let waits = matches!(
                t.state.as_str(),
                "failing" | "waiting" | "retained" | "pending"
            );
            context! {
                system => t.system, state => t.state, attempts => t.attempts,
                last => t.last_attempt_at.map(when), next => waits.then(|| when(t.next_attempt_at)),
                error => t.last_error,
            }
        })
        .collect();
    let trail: Vec<minijinja::Value> = trail
        .iter()
        .map(
            |a| context! { at => when(a.at), actor => a.actor, what => a.what, detail => a.detail },
        )
        .collect();
    let r = context! {
        id => job.id, kind => job.kind.as_str(), state => job.state, customer_id => job.customer_id,
        created => when(job.created_at), requested_by => job.requested_by, channel => job.channel,
        verification => job.verification, deadline => when(job.deadline_at), report => job.report.is_some(),
    };
    render(
        ONE,
        context! { r => r, systems => systems, trail => trail, settled => settled, total => tasks.len().max(1) },
    )
}
