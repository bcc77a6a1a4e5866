//! The customer part of the admin API: search, one customer with identities
//! and sessions, disable/enable, end sessions, the consent ledger and
//! decisions an operator's channel records. Ids are checked before any store
//! is asked (`valid_id`, pure).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiPath as Path, ApiQuery as Query};
use super::{ApiError, Problem, Shared};
use crate::customers::{ACTIVE, DISABLED};
use crate::session::Group;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(one))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(end_sessions))
        .routes(routes!(end_session))
        .routes(routes!(consents, record_consent))
}

/// A customer id as the directory issues them: `cus_` and letters or digits. Pure.
pub fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && id
            .strip_prefix("cus_")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A session id as listed: the SHA-256 of its cookie, 64 hex digits. Pure.
pub fn valid_session(sid: &str) -> bool {
    sid.len() == 64 && sid.bytes().all(|b| b.is_ascii_hexdigit())
}

fn checked(id: &str) -> Result<&str, ApiError> {
    if valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found("No admin endpoint at this path."))
    }
}

/// A customer as the admin API shows it.
#[derive(Serialize, ToSchema)]
pub struct Customer {
    #[schema(example = "cus_0123456789abcdef0123456789abcdef")]
    id: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    /// `active` or `disabled`.
    #[schema(example = "active")]
    status: String,
}

impl From<&crate::customers::Customer> for Customer {
    fn from(c: &crate::customers::Customer) -> Self {
        Customer {
            id: c.id.clone(),
            email: c.email.clone(),
            email_verified: c.email_verified,
            name: c.name.clone(),
            status: c.status.clone(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// Part of an email address or name (at most 256 characters).
    q: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// One page of customers, oldest id first.
#[derive(Serialize, ToSchema)]
struct CustomerPage {
    customers: Vec<Customer>,
    /// Pass as `after` for the next page; null on the last.
    next: Option<String>,
}

/// Finds customers by email or name, a page at a time.
#[utoipa::path(get, path = "/admin/customers", tag = "customers", params(SearchQuery),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "A page of customers", body = CustomerPage),
        (status = 400, description = "A bad `q` or `limit`", body = Problem, content_type = "application/problem+json")))]
async fn search(
    State(app): State<Shared>,
    Query(query): Query<SearchQuery>,
) -> Result<Json<CustomerPage>, ApiError> {
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => 50,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`limit` must be a whole number from 1 to 500.",
            ))
        }
    };
    let q = query.q.as_deref().unwrap_or("").trim();
    if q.len() > 256 {
        return Err(ApiError::bad_request("`q` is longer than 256 characters."));
    }
    let found = app
        .auth
        .directory()
        .search(q, query.after.as_deref(), limit)
        .await
        .map_err(|e| ApiError::unavailable("customer directory", e))?;
    let next = (found.len() as i64 == limit)
        .then(|| found.last().map(|c| c.id.clone()))
        .flatten();
    Ok(Json(CustomerPage {
        customers: found.iter().map(Customer::from).collect(),
        next,
    }))
}

/// A way in: a provider identity or the password identity.
#[derive(Serialize, ToSchema)]
struct Identity {
    issuer: String,
    subject: String,
}

/// A live browser session.
#[derive(Serialize, ToSchema)]
struct Session {
    /// The session's id (the SHA-256 of its cookie).
    id: String,
    provider: String,
    created_at: i64,
    last_seen: i64,
    expires_at: i64,
}

/// A customer with every way in and every live session.
#[derive(Serialize, ToSchema)]
struct CustomerDetail {
    customer: Customer,
    identities: Vec<Identity>,
    sessions: Vec<Session>,
}

/// One customer with identities and sessions.
#[utoipa::path(get, path = "/admin/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The customer", body = CustomerDetail),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json")))]
async fn one(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<CustomerDetail>, ApiError> {
    let id = checked(&id)?;
    let directory = app.auth.directory();
    let unavailable = |e| ApiError::unavailable("customer directory", e);
    let customer = directory.customer(id).await.map_err(unavailable)?;
    let customer = customer.ok_or_else(ApiError::no_customer)?;
    let identities = directory.identities(id).await.map_err(unavailable)?;
    let sessions = app
        .sessions
        .list(id, crate::session::unix_now())
        .await
        .map_err(|e| ApiError::unavailable("session store", e))?;
    Ok(Json(CustomerDetail {
        customer: Customer::from(&customer),
        identities: identities
            .iter()
            .map(|i| Identity {
                issuer: i.issuer.clone(),
                subject: i.subject.clone(),
            })
            .collect(),
        sessions: sessions
            .iter()
            .map(|s| Session {
                id: s.id_hash.clone(),
                provider: s.provider.clone(),
                created_at: s.created_at,
                last_seen: s.last_seen,
                expires_at: s.expires_at,
            })
            .collect(),
    }))
}

/// Locks the customer out everywhere at once: sessions end, verified tokens
/// are forgotten, sign-ins are refused.
#[utoipa::path(post, path = "/admin/customers/{id}/disable", tag = "customers",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Disabled", body = Customer),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json")))]
async fn disable(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Customer>, ApiError> {
    set_status(&app, checked(&id)?, DISABLED).await
}

/// Lets the customer in again.
#[utoipa::path(post, path = "/admin/customers/{id}/enable", tag = "customers",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Enabled", body = Customer),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json")))]
async fn enable(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Customer>, ApiError> {
    set_status(&app, checked(&id)?, ACTIVE).await
}

async fn set_status(
    app: &Shared,
    id: &str,
    status: &'static str,
) -> Result<Json<Customer>, ApiError> {
    let customer = app
        .auth
        .directory()
        .set_status(id, status)
        .await
        .map_err(|e| ApiError::unavailable("customer directory", e))?
        .ok_or_else(ApiError::no_customer)?;
    if status == DISABLED {
        app.auth.forget_all();
        let n = app
            .sessions
            .end(Group::Customer(id))
            .await
            .map_err(|e| ApiError::unavailable("session store", e))?;
        session_ended(app, id, "disabled", n).await;
    }
    tracing::info!(customer = id, status, "customer status set by admin");
    Ok(Json(Customer::from(&customer)))
}

/// How many sessions ended.
#[derive(Serialize, ToSchema)]
struct Ended {
    ended: u64,
}

/// Ends every session of the customer, on every node.
#[utoipa::path(delete, path = "/admin/customers/{id}/sessions", tag = "customers",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Ended", body = Ended),
        (status = 404, description = "No admin endpoint at this path", body = Problem, content_type = "application/problem+json")))]
async fn end_sessions(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Ended>, ApiError> {
    let id = checked(&id)?;
    let n = app
        .sessions
        .end(Group::Customer(id))
        .await
        .map_err(|e| ApiError::unavailable("session store", e))?;
    session_ended(&app, id, "admin", n).await;
    Ok(Json(Ended { ended: n }))
}

/// Ends one session of the customer.
#[utoipa::path(delete, path = "/admin/customers/{id}/sessions/{session}", tag = "customers",
    params(
        ("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$"),
        ("session" = String, Path, description = "The session id, as listed", pattern = "^[0-9a-fA-F]{64}$")),
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "The customer has no such session", body = Problem, content_type = "application/problem+json")))]
async fn end_session(
    State(app): State<Shared>,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = checked(&id)?;
    if !valid_session(&sid) {
        return Err(ApiError::not_found("No admin endpoint at this path."));
    }
    let unavailable = |e| ApiError::unavailable("session store", e);
    let list = app
        .sessions
        .list(id, crate::session::unix_now())
        .await
        .map_err(unavailable)?;
    if !list.iter().any(|s| s.id_hash == sid) {
        return Err(ApiError::not_found("This customer has no such session."));
    }
    app.sessions.delete(&sid).await.map_err(unavailable)?;
    session_ended(&app, id, "admin", 1).await;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

async fn session_ended(app: &Shared, customer_id: &str, reason: &str, ended: u64) {
    crate::events::session_ended(&**app.auth.directory(), Some(customer_id), reason, ended).await;
}

/// A purpose in force for the customer.
#[derive(Serialize, ToSchema)]
struct Effective {
    purpose: String,
    version: u32,
    title: String,
}

/// Whether the customer's chain of records is intact.
#[derive(Serialize, ToSchema)]
struct Chain {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The customer's consent state and the whole ledger behind it.
#[derive(Serialize, ToSchema)]
struct ConsentState {
    customer_id: String,
    consents: Vec<Effective>,
    /// Purpose id → the version granted.
    granted: BTreeMap<String, u32>,
    /// What backends receive in `X-Customer-Consents`.
    header: String,
    chain: Chain,
    records: Vec<crate::consent::Record>,
    /// Each record as a Kantara consent receipt.
    #[schema(value_type = Vec<Object>)]
    receipts: Vec<serde_json::Value>,
}

/// The customer's consents, ledger and receipts.
#[utoipa::path(get, path = "/admin/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The consent state", body = ConsentState),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json")))]
async fn consents(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<ConsentState>, ApiError> {
    let id = checked(&id)?;
    let directory = app.auth.directory();
    let unavailable = |e| ApiError::unavailable("customer directory", e);
    directory
        .customer(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(ApiError::no_customer)?;
    let records = directory.consent_records(id).await.map_err(unavailable)?;
    let snap = app.snapshot();
    let purposes = &snap.config.purposes;
    let granted = crate::consent::granted(&records);
    let consents = crate::consent::effective(&granted, purposes)
        .map(|p| Effective {
            purpose: p.id.clone(),
            version: p.version,
            title: p.title.clone(),
        })
        .collect();
    let chain = match crate::consent::verify(&records) {
        Ok(()) => Chain {
            valid: true,
            error: None,
        },
        Err(e) => Chain {
            valid: false,
            error: Some(e.to_string()),
        },
    };
    let receipts = records
        .iter()
        .map(|r| {
            let p = purposes.iter().find(|p| p.id == r.decision.purpose);
            crate::consent::receipt(r, p, &snap.config.pages.brand, "EU")
        })
        .collect();
    Ok(Json(ConsentState {
        customer_id: id.to_string(),
        consents,
        header: crate::consent::header_value(crate::consent::effective(&granted, purposes)),
        granted,
        chain,
        records,
        receipts,
    }))
}

/// A consent decision an operator's channel reports (the call centre, a
/// paper form).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConsentIn {
    /// A declared purpose id.
    purpose: String,
    /// `grant` or `withdraw`.
    #[schema(value_type = crate::consent::Action)]
    action: String,
    /// Which channel captured it (letters, digits, `-`, `_`; at most 64);
    /// recorded as `api:<channel>`.
    #[schema(example = "call-centre", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    channel: String,
    /// The version of the text the customer was read; must be the current one.
    version: u32,
}

/// The recorded decision and what is granted now.
#[derive(Serialize, ToSchema)]
struct Recorded {
    recorded: crate::consent::Decision,
    granted: BTreeMap<String, u32>,
}

/// Records a decision made outside the pages.
#[utoipa::path(post, path = "/admin/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path, description = "The customer id", pattern = "^cus_[A-Za-z0-9]+$")),
    request_body = ConsentIn,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "Recorded", body = Recorded),
        (status = 400, description = "Not the expected JSON, not a declared purpose, an unknown action, a bad channel", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The customer was read an outdated text", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 16 KiB", body = Problem, content_type = "application/problem+json")))]
async fn record_consent(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let id = checked(&id)?;
    let input: ConsentIn = super::problem::json_body(body).await?;
    let snap = app.snapshot();
    let decision = decision_of(&snap.config.purposes, id, &input)?;
    app.auth
        .directory()
        .customer(id)
        .await
        .map_err(|e| ApiError::unavailable("customer directory", e))?
        .ok_or_else(ApiError::no_customer)?;
    let granted = app
        .record_consents(id, std::slice::from_ref(&decision))
        .await
        .map_err(|e| ApiError::unavailable("consent ledger", e))?;
    let body = Recorded {
        recorded: decision,
        granted,
    };
    Ok((http::StatusCode::CREATED, Json(body)).into_response())
}

/// The decision `input` asks to record for customer `id`, if it is one. Pure.
fn decision_of(
    purposes: &[crate::consent::Purpose],
    id: &str,
    input: &ConsentIn,
) -> Result<crate::consent::Decision, ApiError> {
    let purpose = purposes
        .iter()
        .find(|p| p.id == input.purpose)
        .ok_or_else(|| {
            ApiError::bad_request(format!("`{}` is not a declared purpose.", input.purpose))
        })?;
    let action = crate::consent::Action::parse(&input.action)
        .ok_or_else(|| ApiError::bad_request("`action` must be `grant` or `withdraw`."))?;
    if input.version != purpose.version {
        return Err(ApiError::new(
            409,
            "conflict",
            "Outdated text",
            format!(
                "The customer was read version {} but the current text is version {}.",
                input.version, purpose.version
            ),
        ));
    }
    let channel = input.channel.trim();
    let channel_ok = !channel.is_empty()
        && channel.len() <= 64
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !channel_ok {
        return Err(ApiError::bad_request(
            "`channel` names the capturing channel: letters, digits, `-`, `_` (at most 64).",
        ));
    }
    Ok(crate::consent::Decision {
        purpose: purpose.id.clone(),
        version: purpose.version,
        text_hash: purpose.text_hash(),
        action,
        at: crate::session::unix_now(),
        channel: format!("api:/admin/customers/{id}/consents"),
        method: format!("api:{channel}"),
        user_agent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_issued_ids_reach_a_store() {
        assert!(valid_id("cus_0123456789abcdef0123456789abcdef"));
        for bad in [
            "nope",
            "cus_",
            "cus_../x",
            "cus_a-b",
            "CUS_abc",
            &format!("cus_{}", "a".repeat(61)),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(valid_session(&"a".repeat(64)));
        assert!(!valid_session("short"));
        assert!(!valid_session(&"g".repeat(64)));
    }
}
