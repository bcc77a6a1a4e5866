//! The customer part of the admin API: search, one customer with identities
//! and sessions, disable/enable, end sessions. Routing is pure (`route`);
//! handlers answer JSON, or RFC 9457 problem JSON on every error.

use std::sync::Arc;

use crate::customers::{Customer, ACTIVE, DISABLED};
use crate::httpd::{problem, respond, Resp};
use crate::session::Group;
use crate::state::App;

/// An admin call on customers.
#[derive(Debug, PartialEq, Eq)]
pub enum Call<'a> {
    Search,
    Get(&'a str),
    SetStatus(&'a str, &'static str),
    EndSessions(&'a str),
    EndSession(&'a str, &'a str),
    Consents(&'a str),
    RecordConsent(&'a str),
}

/// Why a path is no call.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    Method(&'static str),
}

/// Maps method and path under `/admin/customers` to a call. Pure.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Call<'a>, Miss> {
    let rest = path
        .strip_prefix("/admin/customers")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or(Miss::NotFound)?;
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let id_ok = |id: &str| {
        id.starts_with("cus_")
            && id.len() <= 64
            && id[4..].bytes().all(|b| b.is_ascii_alphanumeric())
    };
    let want = |allowed: &'static str, call: Call<'a>| {
        if allowed.split(", ").any(|m| m == method) {
            Ok(call)
        } else {
            Err(Miss::Method(allowed))
        }
    };
    match parts.as_slice() {
        [] | [""] => want("GET", Call::Search),
        [id] if id_ok(id) => want("GET", Call::Get(id)),
        [id, "disable"] if id_ok(id) => want("POST", Call::SetStatus(id, DISABLED)),
        [id, "enable"] if id_ok(id) => want("POST", Call::SetStatus(id, ACTIVE)),
        [id, "sessions"] if id_ok(id) => want("DELETE", Call::EndSessions(id)),
        [id, "consents"] if id_ok(id) => match method {
            "GET" => Ok(Call::Consents(id)),
            "POST" => Ok(Call::RecordConsent(id)),
            _ => Err(Miss::Method("GET, POST")),
        },
        [id, "sessions", sid]
            if id_ok(id) && sid.len() == 64 && sid.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            want("DELETE", Call::EndSession(id, sid))
        }
        _ => Err(Miss::NotFound),
    }
}

fn customer_json(c: &Customer) -> serde_json::Value {
    serde_json::json!({
        "id": c.id, "email": c.email, "email_verified": c.email_verified,
        "name": c.name, "status": c.status,
    })
}

fn json(status: u16, v: serde_json::Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Resp {
    tracing::error!(error = %e, "admin API: {what} unavailable");
    problem(
        503,
        "unavailable",
        "Service unavailable",
        &format!("The {what} cannot be reached just now; try again."),
    )
}

fn no_customer() -> Resp {
    problem(404, "not-found", "Not found", "No customer with this id.")
}

fn bad_request(detail: &str) -> Resp {
    problem(400, "bad-request", "Bad request", detail)
}

/// A consent decision an operator's channel reports (the call-centre, a
/// paper form): `POST /admin/customers/{id}/consents`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentIn {
    purpose: String,
    action: String,
    /// Which channel captured it (`call-centre`); recorded as `api:<channel>`.
    channel: String,
    /// The version of the text the customer was read; must be the current one.
    version: u32,
}

async fn consents(app: &Arc<App>, id: &str) -> Resp {
    let directory = app.auth.directory();
    match directory.customer(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_customer(),
        Err(e) => return unavailable("customer directory", e),
    }
    let records = match directory.consent_records(id).await {
        Ok(r) => r,
        Err(e) => return unavailable("customer directory", e),
    };
    let snap = app.snapshot();
    let granted = crate::consent::granted(&records);
    let effective: Vec<serde_json::Value> =
        crate::consent::effective(&granted, &snap.config.purposes)
            .map(|p| serde_json::json!({ "purpose": p.id, "version": p.version, "title": p.title }))
            .collect();
    let chain = match crate::consent::verify(&records) {
        Ok(()) => serde_json::json!({ "valid": true }),
        Err(e) => serde_json::json!({ "valid": false, "error": e.to_string() }),
    };
    let receipts: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let p = snap
                .config
                .purposes
                .iter()
                .find(|p| p.id == r.decision.purpose);
            crate::consent::receipt(r, p, &snap.config.pages.brand, "EU")
        })
        .collect();
    json(
        200,
        serde_json::json!({
            "customer_id": id,
            "consents": effective,
            "granted": granted,
            "header": crate::consent::header_value(crate::consent::effective(&granted, &snap.config.purposes)),
            "chain": chain,
            "records": records,
            "receipts": receipts,
        }),
    )
}

async fn record_consent(app: &Arc<App>, id: &str, body: &[u8]) -> Resp {
    let input: ConsentIn = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("The body is not the expected JSON: {e}.")),
    };
    let snap = app.snapshot();
    let Some(purpose) = snap.config.purposes.iter().find(|p| p.id == input.purpose) else {
        return bad_request(&format!("`{}` is not a declared purpose.", input.purpose));
    };
    let Some(action) = crate::consent::Action::parse(&input.action) else {
        return bad_request("`action` must be `grant` or `withdraw`.");
    };
    if input.version != purpose.version {
        return problem(
            409,
            "conflict",
            "Outdated text",
            &format!(
                "The customer was read version {} but the current text is version {}.",
                input.version, purpose.version
            ),
        );
    }
    let channel = input.channel.trim();
    if channel.is_empty()
        || channel.len() > 64
        || !channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad_request(
            "`channel` names the capturing channel: letters, digits, `-`, `_` (at most 64).",
        );
    }
    match app.auth.directory().customer(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_customer(),
        Err(e) => return unavailable("customer directory", e),
    }
    let decision = crate::consent::Decision {
        purpose: purpose.id.clone(),
        version: purpose.version,
        text_hash: purpose.text_hash(),
        action,
        at: crate::session::unix_now(),
        channel: format!("api:/admin/customers/{id}/consents"),
        method: format!("api:{channel}"),
        user_agent: None,
    };
    match app
        .record_consents(id, std::slice::from_ref(&decision))
        .await
    {
        Ok(granted) => json(
            201,
            serde_json::json!({ "recorded": decision, "granted": granted }),
        ),
        Err(e) => unavailable("consent ledger", e),
    }
}

/// Answers an authenticated call (`body`: the request body, for writes).
pub async fn handle(app: &Arc<App>, call: Call<'_>, query: Option<&str>, body: &[u8]) -> Resp {
    let directory = app.auth.directory();
    let now = crate::session::unix_now();
    match call {
        Call::Consents(id) => consents(app, id).await,
        Call::RecordConsent(id) => record_consent(app, id, body).await,
        Call::Search => {
            let params: Vec<(String, String)> =
                url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let limit = match param("limit").map(str::parse::<i64>) {
                None => 50,
                Some(Ok(n)) if (1..=500).contains(&n) => n,
                Some(_) => {
                    return problem(
                        400,
                        "bad-request",
                        "Bad request",
                        "`limit` must be a whole number from 1 to 500.",
                    )
                }
            };
            let q = param("q").unwrap_or("").trim();
            if q.len() > 256 {
                return problem(
                    400,
                    "bad-request",
                    "Bad request",
                    "`q` is longer than 256 characters.",
                );
            }
            match directory.search(q, param("after"), limit).await {
                Ok(found) => {
                    let next = (found.len() as i64 == limit)
                        .then(|| found.last().map(|c| c.id.clone()))
                        .flatten();
                    json(
                        200,
                        serde_json::json!({
                            "customers": found.iter().map(customer_json).collect::<Vec<_>>(),
                            "next": next,
                        }),
                    )
                }
                Err(e) => unavailable("customer directory", e),
            }
        }
        Call::Get(id) => {
            let customer = match directory.customer(id).await {
                Ok(Some(c)) => c,
                Ok(None) => return no_customer(),
                Err(e) => return unavailable("customer directory", e),
            };
            let identities = match directory.identities(id).await {
                Ok(i) => i,
                Err(e) => return unavailable("customer directory", e),
            };
            let sessions = match app.sessions.list(id, now).await {
                Ok(s) => s,
                Err(e) => return unavailable("session store", e),
            };
            json(
                200,
                serde_json::json!({
                    "customer": customer_json(&customer),
                    "identities": identities.iter().map(|i| serde_json::json!({
                        "issuer": i.issuer, "subject": i.subject,
                    })).collect::<Vec<_>>(),
                    "sessions": sessions.iter().map(|s| serde_json::json!({
                        "id": s.id_hash, "provider": s.provider, "created_at": s.created_at,
                        "last_seen": s.last_seen, "expires_at": s.expires_at,
                    })).collect::<Vec<_>>(),
                }),
            )
        }
        Call::SetStatus(id, status) => {
            let customer = match directory.set_status(id, status).await {
                Ok(Some(c)) => c,
                Ok(None) => return no_customer(),
                Err(e) => return unavailable("customer directory", e),
            };
            if status == DISABLED {
                // Locked out everywhere at once: sessions end, verified tokens are forgotten.
                app.auth.forget_all();
                match app.sessions.end(Group::Customer(id)).await {
                    Ok(n) => session_ended(app, id, "disabled", n).await,
                    Err(e) => return unavailable("session store", e),
                }
            }
            tracing::info!(customer = id, status, "customer status set by admin");
            json(200, customer_json(&customer))
        }
        Call::EndSessions(id) => match app.sessions.end(Group::Customer(id)).await {
            Ok(n) => {
                session_ended(app, id, "admin", n).await;
                json(200, serde_json::json!({ "ended": n }))
            }
            Err(e) => unavailable("session store", e),
        },
        Call::EndSession(id, sid) => {
            let owned = match app.sessions.list(id, now).await {
                Ok(list) => list.iter().any(|s| s.id_hash == sid),
                Err(e) => return unavailable("session store", e),
            };
            if !owned {
                return problem(
                    404,
                    "not-found",
                    "Not found",
                    "This customer has no such session.",
                );
            }
            match app.sessions.delete(sid).await {
                Ok(()) => {
                    session_ended(app, id, "admin", 1).await;
                    respond(204, "application/json", "")
                }
                Err(e) => unavailable("session store", e),
            }
        }
    }
}

async fn session_ended(app: &App, customer_id: &str, reason: &str, ended: u64) {
    crate::events::session_ended(&**app.auth.directory(), Some(customer_id), reason, ended).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "cus_0123456789abcdef0123456789abcdef";

    #[test]
    fn paths_and_methods_map_to_calls() {
        assert_eq!(route("GET", "/admin/customers"), Ok(Call::Search));
        assert_eq!(route("GET", "/admin/customers/"), Ok(Call::Search));
        assert_eq!(
            route("GET", &format!("/admin/customers/{ID}")),
            Ok(Call::Get(ID))
        );
        assert_eq!(
            route("POST", &format!("/admin/customers/{ID}/disable")),
            Ok(Call::SetStatus(ID, DISABLED))
        );
        assert_eq!(
            route("DELETE", &format!("/admin/customers/{ID}/sessions")),
            Ok(Call::EndSessions(ID))
        );
        let sid = "a".repeat(64);
        assert_eq!(
            route("DELETE", &format!("/admin/customers/{ID}/sessions/{sid}")),
            Ok(Call::EndSession(ID, &sid))
        );
        assert_eq!(
            route("GET", &format!("/admin/customers/{ID}/disable")),
            Err(Miss::Method("POST"))
        );
        assert_eq!(route("POST", "/admin/customers"), Err(Miss::Method("GET")));
        for bad in [
            "/admin/customers/nope",
            "/admin/customers/cus_../x",
            "/admin/customersX",
            "/admin/customers/cus_1/sessions/short",
            "/admin/customers/cus_1/other",
        ] {
            assert_eq!(route("GET", bad), Err(Miss::NotFound), "{bad}");
        }
    }
}
