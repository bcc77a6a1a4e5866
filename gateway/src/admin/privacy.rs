//! The privacy part of the admin API: a customer's data map, the record of
//! processing per system (JSON or CSV), privacy requests filed by an
//! operator with their per-system progress, audit trail and signed report,
//! manual systems' outcomes, and legal holds.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::customers::valid_id;
use super::problem::{json_body, ApiPath as Path, ApiQuery as Query};
use super::{ApiError, Problem, Shared};
use crate::privacy::datamap::field_names;
use crate::privacy::store::{self, Kind};

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(data_map))
        .routes(routes!(systems))
        .routes(routes!(list, file))
        .routes(routes!(one))
        .routes(routes!(report))
        .routes(routes!(export))
        .routes(routes!(record_outcome))
        .routes(routes!(place_hold))
        .routes(routes!(holds))
        .routes(routes!(release))
}

fn customer(id: &str) -> Result<&str, ApiError> {
    if valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found("No admin endpoint at this path."))
    }
}

fn job_id(id: &str) -> Result<&str, ApiError> {
    if crate::privacy::valid_job_id(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found("No privacy request with this id."))
    }
}

fn store_down(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("privacy store", e)
}

/// What one system received of one customer.
#[derive(Serialize, ToSchema)]
struct MapEntry {
    system: String,
    /// Declared under `privacy:` (else it received identities undocumented).
    declared: bool,
    first_seen: i64,
    last_seen: i64,
    /// Identity fields it received: `id`, `email`, `name`.
    fields: Vec<String>,
    /// Purposes granted while it received them.
    purposes: Vec<String>,
    /// How it is erased: `endpoint`, `manual` or `none` (flagged).
    erasure: String,
}

fn erasure_of(p: &crate::config::model::Privacy, system: &str) -> (bool, &'static str) {
    match p.system(system) {
        Some(s) if s.erasure.is_some() => (true, "endpoint"),
        Some(s) if s.manual => (true, "manual"),
        Some(_) => (true, "none"),
        None => (false, "none"),
    }
}

/// Which systems received the customer's identity, and when.
#[utoipa::path(get, path = "/admin/customers/{id}/data-map", tag = "privacy",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The customer's data map", body = [MapEntry]),
        (status = 404, description = "Not a customer id", body = Problem, content_type = "application/problem+json")))]
async fn data_map(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Vec<MapEntry>>, ApiError> {
    let id = customer(&id)?;
    let seen = app.privacy.customer_map(id).await.map_err(store_down)?;
    let snap = app.snapshot();
    Ok(Json(
        seen.into_iter()
            .map(|s| {
                let (declared, erasure) = erasure_of(&snap.config.privacy, &s.system);
                MapEntry {
                    declared,
                    erasure: erasure.into(),
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                    fields: field_names(s.fields)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    purposes: s.purposes,
                    system: s.system,
                }
            })
            .collect(),
    ))
}

/// One system in the record of processing (GDPR Art. 30).
#[derive(Serialize, ToSchema)]
struct SystemRecord {
    system: String,
    declared: bool,
    owner: Option<String>,
    categories: Vec<String>,
    retention: Option<String>,
    /// `endpoint`, `manual` or `none`.
    erasure: String,
    export: bool,
    contact: Option<String>,
    all_customers: bool,
    /// Customers whose identity it received (from traffic).
    customers: i64,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    fields: Vec<String>,
    purposes: Vec<String>,
    /// Why an operator should look: received identities but has no way to erase.
    flag: Option<String>,
}

/// How the record of processing is written.
#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum Fmt {
    #[default]
    Json,
    Csv,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Format {
    /// `json` (default) or `csv`.
    format: Option<Fmt>,
}

/// The record of processing: every declared system and every system seen
/// receiving identities, with customers, categories and last seen.
#[utoipa::path(get, path = "/admin/privacy/systems", tag = "privacy", params(Format),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "One record per system (JSON, or CSV with `format=csv`)", body = [SystemRecord]),
        (status = 400, description = "An unknown format", body = Problem, content_type = "application/problem+json")))]
async fn systems(State(app): State<Shared>, Query(f): Query<Format>) -> Result<Response, ApiError> {
    let used = app.privacy.map_by_system().await.map_err(store_down)?;
    let snap = app.snapshot();
    let records = record_of_processing(&snap.config.privacy, &used);
    match f.format.unwrap_or_default() {
        Fmt::Json => Ok(Json(records).into_response()),
        Fmt::Csv => Ok((
            [
                (http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    http::header::CONTENT_DISPOSITION,
                    "attachment; filename=\"record-of-processing.csv\"",
                ),
            ],
            csv(&records),
        )
            .into_response()),
    }
}

/// Declared systems and what traffic showed, joined; flags the gaps. Pure.
fn record_of_processing(
    p: &crate::config::model::Privacy,
    used: &[store::SystemUse],
) -> Vec<SystemRecord> {
    let mut names: Vec<&str> = p.systems.iter().map(|s| s.name.as_str()).collect();
    names.extend(used.iter().map(|u| u.system.as_str()));
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let d = p.system(name);
            let u = used.iter().find(|u| u.system == name);
            let (declared, erasure) = erasure_of(p, name);
            let flag = match (u, erasure) {
                (Some(_), "none") if !declared => {
                    Some("received identities but is not declared under `privacy:`".into())
                }
                (Some(_), "none") => Some("received identities but has no erasure".into()),
                _ => None,
            };
            SystemRecord {
                system: name.to_string(),
                declared,
                owner: d.map(|s| s.owner.clone()),
                categories: d.map(|s| s.categories.clone()).unwrap_or_default(),
                retention: d.map(|s| s.retention.clone()),
                erasure: erasure.into(),
                export: d.is_some_and(|s| s.export.is_some()),
                contact: d.and_then(|s| s.contact.clone()),
                all_customers: d.is_some_and(|s| s.all_customers),
                customers: u.map_or(0, |u| u.customers),
                first_seen: u.map(|u| u.first_seen),
                last_seen: u.map(|u| u.last_seen),
                fields: u
                    .map(|u| {
                        field_names(u.fields)
                            .into_iter()
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                purposes: u.map(|u| u.purposes.clone()).unwrap_or_default(),
                flag,
            }
        })
        .collect()
}

/// RFC 4180 CSV of the record. Pure.
fn csv(records: &[SystemRecord]) -> String {
    let cell = |s: &str| {
        // A leading = + - @ would be read as a formula by spreadsheets.
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    };
    let mut out = String::from(
        "system,declared,owner,categories,retention,erasure,export,contact,all_customers,customers,first_seen,last_seen,fields,purposes,flag\r\n",
    );
    for r in records {
        let opt = |v: &Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let row = [
            cell(&r.system),
            r.declared.to_string(),
            cell(r.owner.as_deref().unwrap_or("")),
            cell(&r.categories.join(" ")),
            cell(r.retention.as_deref().unwrap_or("")),
            r.erasure.clone(),
            r.export.to_string(),
            cell(r.contact.as_deref().unwrap_or("")),
            r.all_customers.to_string(),
            r.customers.to_string(),
            opt(&r.first_seen),
            opt(&r.last_seen),
            cell(&r.fields.join(" ")),
            cell(&r.purposes.join(" ")),
            cell(r.flag.as_deref().unwrap_or("")),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A privacy request as the admin API shows it.
#[derive(Serialize, ToSchema)]
struct Request {
    id: String,
    /// `erasure` or `export`.
    kind: String,
    customer_id: String,
    /// `open`, `in_progress`, `completed_with_holds`, `completed`, `ready`.
    state: String,
    step: String,
    requested_by: String,
    channel: String,
    verification: String,
    created_at: i64,
    deadline: i64,
    overdue: bool,
    completed_at: Option<i64>,
    /// Whether the signed report can be downloaded.
    report: bool,
}

impl Request {
    fn of(j: &store::Job, now: i64) -> Request {
        Request {
            id: j.id.clone(),
            kind: j.kind.as_str().into(),
            customer_id: j.customer_id.clone(),
            state: j.state.clone(),
            step: j.step.clone(),
            requested_by: j.requested_by.clone(),
            channel: j.channel.clone(),
            verification: j.verification.clone(),
            created_at: j.created_at,
            deadline: j.deadline_at,
            overdue: j.completed_at.is_none() && j.deadline_at < now,
            completed_at: j.completed_at,
            report: j.report.is_some(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
struct NewRequest {
    #[schema(
        example = "cus_0123456789abcdef0123456789abcdef",
        pattern = "^cus_[A-Za-z0-9]{1,60}$"
    )]
    customer_id: String,
    #[schema(value_type = Kind)]
    kind: String,
    /// How it came in, e.g. `phone`, `letter`, `email`.
    #[schema(example = "phone", pattern = "\\S", max_length = 500)]
    channel: String,
    /// How the requester's identity was verified.
    #[schema(
        example = "called back on the number on file; confirmed the last order",
        pattern = "\\S",
        max_length = 500
    )]
    verification: String,
}

/// Files a request received outside the account page.
#[utoipa::path(post, path = "/admin/privacy/requests", tag = "privacy",
    request_body = NewRequest,
    security(("adminToken" = [])),
    responses(
        (status = 202, description = "Filed (or the customer's unfinished one of that kind)", body = Request),
        (status = 400, description = "Not the expected JSON, an unknown kind, no channel or verification", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 16 KiB", body = Problem, content_type = "application/problem+json")))]
async fn file(State(app): State<Shared>, body: axum::body::Body) -> Result<Response, ApiError> {
    let input: NewRequest = json_body(body).await?;
    let id = customer(&input.customer_id)
        .map_err(|_| ApiError::bad_request("`customer_id` is not a customer id."))?;
    let kind = Kind::parse(&input.kind)
        .ok_or_else(|| ApiError::bad_request("`kind` must be `erasure` or `export`."))?;
    let text = |v: &str, what: &str| stated(v, what).map(str::to_string);
    let who = crate::privacy::Requester {
        requested_by: "operator".into(),
        channel: text(&input.channel, "channel")?,
        verification: text(&input.verification, "verification")?,
    };
    let job = crate::privacy::request(&app, id, kind, who)
        .await
        .map_err(|e| match e {
            crate::privacy::RequestError::NoCustomer => ApiError::no_customer(),
            crate::privacy::RequestError::Unavailable(e) => store_down(e),
        })?;
    let body = Request::of(&job, crate::session::unix_now());
    Ok((http::StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only requests in this state.
    state: Option<String>,
    /// At most this many, newest first (1 to 500, default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// Privacy requests, newest first.
#[utoipa::path(get, path = "/admin/privacy/requests", tag = "privacy", params(ListQuery),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Requests", body = [Request]),
        (status = 400, description = "A bad limit", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(app): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Request>>, ApiError> {
    let limit = match q.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => return Err(ApiError::bad_request("`limit` must be 1 to 500.")),
    };
    let jobs = app
        .privacy
        .jobs(q.state.as_deref(), limit)
        .await
        .map_err(store_down)?;
    let now = crate::session::unix_now();
    Ok(Json(jobs.iter().map(|j| Request::of(j, now)).collect()))
}

/// One system's part of a request.
#[derive(Serialize, ToSchema)]
struct SystemStatus {
    system: String,
    /// `pending`, `waiting`, `failing`, `manual`, `retained`, `erased`, `not_found`.
    state: String,
    attempts: i64,
    last_attempt_at: Option<i64>,
    /// When it is sent next (failing, waiting) or the hold ends (retained).
    next_attempt_at: Option<i64>,
    last_error: Option<String>,
    answered_at: Option<i64>,
    /// The system's last answer.
    #[schema(value_type = Object)]
    answer: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
struct Detail {
    #[serde(flatten)]
    request: Request,
    systems: Vec<SystemStatus>,
    /// Settled systems of all (for a progress bar).
    settled: usize,
    #[schema(value_type = Vec<Object>)]
    holds: Vec<store::Hold>,
    #[schema(value_type = Vec<Object>)]
    trail: Vec<store::Audit>,
}

/// A request with every system's status, its holds and its audit trail.
#[utoipa::path(get, path = "/admin/privacy/requests/{id}", tag = "privacy",
    params(("id" = String, Path, description = "The request id", pattern = "^prj_[0-9a-f]{32}$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The request", body = Detail),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json")))]
async fn one(State(app): State<Shared>, Path(id): Path<String>) -> Result<Json<Detail>, ApiError> {
    Ok(Json(detail(&app, job_id(&id)?).await?))
}

async fn detail(app: &Shared, id: &str) -> Result<Detail, ApiError> {
    let job = app
        .privacy
        .job(id)
        .await
        .map_err(store_down)?
        .ok_or_else(|| ApiError::not_found("No privacy request with this id."))?;
    let now = crate::session::unix_now();
    let tasks = app.privacy.tasks(id).await.map_err(store_down)?;
    let holds = app
        .privacy
        .holds(Some(&job.customer_id), now)
        .await
        .map_err(store_down)?;
    let trail = app.privacy.trail(id).await.map_err(store_down)?;
    let settled = tasks
        .iter()
        .filter(|t| crate::privacy::answer::settled(t))
        .count();
    let systems = tasks
        .into_iter()
        .map(|t| SystemStatus {
            next_attempt_at: matches!(
                t.state.as_str(),
                "failing" | "waiting" | "retained" | "pending"
            )
            .then_some(t.next_attempt_at),
            answer: t
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
            system: t.system,
            state: t.state,
            attempts: t.attempts,
            last_attempt_at: t.last_attempt_at,
            last_error: t.last_error,
            answered_at: t.answered_at,
        })
        .collect();
    Ok(Detail {
        request: Request::of(&job, now),
        systems,
        settled,
        holds,
        trail,
    })
}

/// The signed completion report (compact JWS, ES256, verifiable with the
/// gateway's published keys).
#[utoipa::path(get, path = "/admin/privacy/requests/{id}/report", tag = "privacy",
    params(("id" = String, Path, description = "The request id", pattern = "^prj_[0-9a-f]{32}$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The report as a JWS", content_type = "application/jose", body = String),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The request has not completed yet (see Retry-After)", body = Problem, content_type = "application/problem+json")))]
async fn report(State(app): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let Some(job) = app.privacy.job(id).await.map_err(store_down)? else {
        return Err(ApiError::not_found("No such privacy request."));
    };
    let Some(jws) = job.report else {
        return Err(not_ready("The request has not completed yet: no report."));
    };
    let name = format!("attachment; filename=\"erasure-report-{id}.jws\"");
    Ok((
        [
            (http::header::CONTENT_TYPE, "application/jose".to_string()),
            (http::header::CONTENT_DISPOSITION, name),
        ],
        jws,
    )
        .into_response())
}

/// A request that exists but has not got that far: ask again shortly.
fn not_ready(detail: &str) -> ApiError {
    ApiError::new(409, "not-ready", "Not ready yet", detail)
        .with_header(http::header::RETRY_AFTER, "5")
}

/// What a system (or an operator for it) says of its part.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Status {
    Erased,
    NotFound,
    Retained,
    Error,
}

/// The export document (JSON, streamed): what the gateway holds of the
/// customer and each system's answer, while the export is valid.
#[utoipa::path(get, path = "/admin/privacy/requests/{id}/export", tag = "privacy",
    params(("id" = String, Path, description = "The request id", pattern = "^prj_[0-9a-f]{32}$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The export", content_type = "application/json", body = Object),
        (status = 404, description = "No such export request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The export is not ready yet (see Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The export has expired", body = Problem, content_type = "application/problem+json")))]
async fn export(State(app): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let now = crate::session::unix_now();
    let job = app.privacy.job(id).await.map_err(store_down)?;
    let Some(job) = job.filter(|j| j.kind == Kind::Export) else {
        return Err(ApiError::not_found("No such export request."));
    };
    match job.export_expires_at {
        Some(t) if t <= now => {
            return Err(ApiError::new(
                410,
                "gone",
                "Gone",
                "The export has expired: request a new one.",
            ))
        }
        _ if job.state != "ready" => {
            return Err(not_ready("The export is being prepared."));
        }
        None => return Err(not_ready("The export is being prepared.")),
        Some(_) => {}
    }
    let tasks = app.privacy.tasks(id).await.map_err(store_down)?;
    let stream = crate::privacy::export::document(app.clone(), job, tasks)
        .await
        .map_err(store_down)?;
    Ok((
        [(http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
struct Outcome {
    #[schema(value_type = Status)]
    status: String,
    legal_basis: Option<String>,
    #[serde(default)]
    categories: Vec<String>,
    /// RFC 3339 date or time, or unix seconds (retained).
    #[schema(value_type = Option<String>)]
    until: Option<serde_json::Value>,
    /// What was done, by whom (kept in the audit trail).
    #[schema(pattern = "\\S", max_length = 2000)]
    note: String,
}

/// Records what an operator did by hand for a system (a `manual` one, or
/// one whose endpoint cannot answer).
#[utoipa::path(post, path = "/admin/privacy/requests/{id}/systems/{system}", tag = "privacy",
    params(("id" = String, Path, description = "The request id"), ("system" = String, Path, description = "The system")),
    request_body = Outcome,
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Recorded", body = Detail),
        (status = 400, description = "Not in the vocabulary, or no note", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request or system", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The system's part has already ended", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 16 KiB", body = Problem, content_type = "application/problem+json")))]
async fn record_outcome(
    State(app): State<Shared>,
    Path((id, system)): Path<(String, String)>,
    body: axum::body::Body,
) -> Result<Json<Detail>, ApiError> {
    let id = job_id(&id)?;
    let input: Outcome = json_body(body).await?;
    if input.note.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`note` must say what was done and by whom.",
        ));
    }
    let wire = serde_json::json!({
        "status": input.status, "legal_basis": input.legal_basis,
        "categories": input.categories, "until": input.until, "reason": input.note,
    });
    let now = crate::session::unix_now();
    let answer = crate::privacy::answer::parse(200, wire.to_string().as_bytes(), now);
    if let crate::privacy::answer::Answer::Error(why) = &answer {
        if input.status != "error" {
            return Err(ApiError::bad_request(format!(
                "Not a valid outcome: {why}."
            )));
        }
    }
    let none = || ApiError::not_found("No such request or system.");
    let job = app
        .privacy
        .job(id)
        .await
        .map_err(store_down)?
        .ok_or_else(none)?;
    let tasks = app.privacy.tasks(id).await.map_err(store_down)?;
    let task = tasks
        .into_iter()
        .find(|t| t.system == system)
        .ok_or_else(none)?;
    app.privacy
        .audit(
            id,
            "operator",
            &format!("{system}: note"),
            Some(input.note.trim()),
            now,
        )
        .await
        .map_err(store_down)?;
    let via = crate::privacy::apply::Via {
        actor: "operator",
        attempted: false,
        rev: None,
    };
    let recorded = crate::privacy::apply::answer(&app, &job, &task, &answer, via)
        .await
        .map_err(store_down)?;
    if !recorded {
        return Err(ApiError::new(
            409,
            "conflict",
            "Already settled",
            "This system's part of the request has already ended.",
        ));
    }
    Ok(Json(detail(&app, id).await?))
}

#[derive(Deserialize, ToSchema)]
struct NewHold {
    /// Why erasure must wait (a dispute, a court order …).
    #[schema(pattern = "\\S", max_length = 500)]
    reason: String,
    /// How many days it holds; none: until released.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3650)]
    days: Option<serde_json::Number>,
}

/// Places an operator's hold on a customer: their erasure pauses (with
/// the reason recorded) until the hold ends or is released.
#[utoipa::path(post, path = "/admin/customers/{id}/holds", tag = "privacy",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    request_body = NewHold,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "Placed", body = Object),
        (status = 400, description = "No reason, or `days` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a customer id", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 16 KiB", body = Problem, content_type = "application/problem+json")))]
async fn place_hold(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let id = customer(&id)?;
    let input: NewHold = json_body(body).await?;
    let reason = stated(&input.reason, "reason")?;
    let now = crate::session::unix_now();
    // JSON has one number type: 30.0 is the whole number 30.
    let days = input.days.map(|n| {
        n.as_f64()
            .filter(|d| d.fract() == 0.0 && (1.0..=3650.0).contains(d))
    });
    let until = match days {
        None => None,
        Some(Some(d)) => Some(now + d as i64 * 86_400),
        Some(None) => {
            return Err(ApiError::bad_request(
                "`days` must be a whole number from 1 to 3650.",
            ))
        }
    };
    let hold = store::Hold {
        id: format!("hld_{}", hex::encode(rand::random::<[u8; 16]>())),
        customer_id: id.to_string(),
        job_id: None,
        system: None,
        categories: vec!["all".into()],
        reason: reason.to_string(),
        legal_basis: None,
        until,
        placed_by: "operator".into(),
        placed_at: now,
        released_at: None,
        release_reason: None,
    };
    app.privacy
        .place_hold(&hold, &crate::privacy::apply::hold_event(&hold))
        .await
        .map_err(store_down)?;
    for job in app.privacy.jobs_of(id).await.map_err(store_down)? {
        if job.completed_at.is_none() {
            let line = format!("paused by an operator's hold: {reason}");
            app.privacy
                .audit(&job.id, "operator", "hold placed", Some(&line), now)
                .await
                .map_err(store_down)?;
        }
    }
    Ok((http::StatusCode::CREATED, Json(hold)).into_response())
}

/// Holds in force, newest first.
#[utoipa::path(get, path = "/admin/privacy/holds", tag = "privacy",
    security(("adminToken" = [])),
    responses((status = 200, description = "Active holds", body = [Object])))]
async fn holds(State(app): State<Shared>) -> Result<Json<Vec<store::Hold>>, ApiError> {
    let now = crate::session::unix_now();
    Ok(Json(
        app.privacy.holds(None, now).await.map_err(store_down)?,
    ))
}

#[derive(Deserialize, ToSchema)]
struct Release {
    #[schema(pattern = "\\S", max_length = 500)]
    reason: String,
}

/// Releases a hold; paused erasure goes on.
#[utoipa::path(post, path = "/admin/privacy/holds/{id}/release", tag = "privacy",
    params(("id" = String, Path, description = "The hold id")),
    request_body = Release,
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Released"),
        (status = 400, description = "No reason", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active hold", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 16 KiB", body = Problem, content_type = "application/problem+json")))]
async fn release(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let input: Release = json_body(body).await?;
    let reason = stated(&input.reason, "reason")?;
    let now = crate::session::unix_now();
    let released = app
        .privacy
        .release_hold(&id, reason, now)
        .await
        .map_err(store_down)?;
    if !released {
        return Err(ApiError::not_found("No active hold with this id."));
    }
    app.privacy_wake.notify_one();
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

/// A free-text field as documented: says something, at most 500
/// characters as sent (the schema's `maxLength` counts characters).
fn stated<'a>(v: &'a str, what: &str) -> Result<&'a str, ApiError> {
    if v.trim().is_empty() || v.chars().count() > 500 {
        return Err(ApiError::bad_request(format!(
            "`{what}` must say something, in at most 500 characters."
        )));
    }
    Ok(v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_checked_by_characters_as_sent() {
        assert!(stated(&"ü".repeat(500), "reason").is_ok());
        assert!(stated(&"a".repeat(501), "reason").is_err());
        assert!(stated(&format!("  {}", "a".repeat(499)), "reason").is_err());
        assert!(stated("   ", "reason").is_err());
        assert_eq!(stated(" why ", "reason").ok(), Some("why"));
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        let r = SystemRecord {
            system: "crm".into(),
            declared: false,
            owner: Some("Ops \"A\"".into()),
            categories: vec![],
            retention: None,
            erasure: "none".into(),
            export: false,
            contact: Some("=HYPERLINK(1)".into()),
            all_customers: false,
            customers: 3,
            first_seen: Some(1),
            last_seen: None,
            fields: vec!["id".into(), "email".into()],
            purposes: vec![],
            flag: Some("x".into()),
        };
        let out = csv(&[r]);
        let line = out.lines().nth(1).unwrap();
        assert!(
            line.starts_with("\"crm\",false,\"Ops \"\"A\"\"\""),
            "{line}"
        );
        assert!(line.contains("\"'=HYPERLINK(1)\""), "{line}");
        assert!(line.contains(",3,1,,\"id email\""), "{line}");
    }
}
