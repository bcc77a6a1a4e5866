//! The completion report of an erasure: per system its outcome, times and
//! holds, what the gateway itself deleted, signed by the gateway (ES256
//! JWS with the assertion keys, so anyone can verify it against the
//! published JWKS). Building the claims is pure.

use serde_json::{json, Value};

use super::store::{Hold, Job, Task};

/// The JWS `typ` of a report.
pub const TYP: &str = "omnigate-erasure-report+jwt";

/// The report's claims. Pure.
pub fn claims(issuer: &str, job: &Job, tasks: &[Task], holds: &[Hold], now: i64) -> Value {
    let systems: Vec<Value> = tasks.iter().map(|t| system(t, holds)).collect();
    let pending = tasks.iter().any(|t| t.state == "retained");
    json!({
        "iss": issuer,
        "jti": job.id,
        "iat": now,
        "kind": job.kind.as_str(),
        "customer_id": job.customer_id,
        "requested_at": job.created_at,
        "requested_by": job.requested_by,
        "channel": job.channel,
        "verification": job.verification,
        "deadline": job.deadline_at,
        "completed_at": now,
        "outcome": if pending { "completed_with_holds" } else { "completed" },
        "systems": systems,
        "gateway": {
            "deleted": ["account", "identities", "credentials", "mailed_tokens",
                        "consent_records", "sessions", "data_map", "delivered_events"],
            "kept": ["tombstone: keyed hashes of the identities and email address",
                     "this report"],
        },
    })
}

fn system(t: &Task, holds: &[Hold]) -> Value {
    let detail: Value = t
        .detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null);
    let holds: Vec<Value> = holds
        .iter()
        .filter(|h| h.system.as_deref() == Some(t.system.as_str()))
        .map(|h| {
            json!({
                "categories": h.categories, "legal_basis": h.legal_basis, "until": h.until,
                "placed_at": h.placed_at, "released_at": h.released_at,
            })
        })
        .collect();
    json!({
        "system": t.system,
        "outcome": t.state,
        "attempts": t.attempts,
        "last_attempt_at": t.last_attempt_at,
        "answered_at": t.answered_at,
        "answer": detail,
        "holds": holds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::store::Kind;

    fn task(system: &str, state: &str) -> Task {
        Task {
            job_id: "prj_1".into(),
            system: system.into(),
            state: state.into(),
            attempts: 1,
            next_attempt_at: 0,
            last_error: None,
            last_attempt_at: Some(10),
            answered_at: Some(11),
            detail: Some(r#"{"status":"erased"}"#.into()),
            rev: 3,
        }
    }

    #[test]
    fn a_report_names_every_system_and_its_holds() {
        let job = Job {
            id: "prj_1".into(),
            kind: Kind::Erasure,
            customer_id: "cus_1".into(),
            state: "in_progress".into(),
            step: "finish".into(),
            subject: None,
            requested_by: "customer".into(),
            channel: "account_page".into(),
            verification: "signed in 2 minutes before".into(),
            created_at: 1,
            deadline_at: 100,
            completed_at: None,
            report: None,
            export_expires_at: None,
        };
        let hold = Hold {
            id: "hld_1".into(),
            customer_id: "cus_1".into(),
            job_id: Some("prj_1".into()),
            system: Some("accounting".into()),
            categories: vec!["invoices".into()],
            reason: "retained".into(),
            legal_basis: Some("HGB 257".into()),
            until: Some(500),
            placed_by: "system:accounting".into(),
            placed_at: 12,
            released_at: None,
            release_reason: None,
        };
        let c = claims(
            "https://id.example",
            &job,
            &[task("store", "erased"), task("accounting", "retained")],
            &[hold],
            50,
        );
        assert_eq!(c["outcome"], "completed_with_holds");
        assert_eq!(c["systems"][0]["system"], "store");
        assert_eq!(c["systems"][0]["holds"].as_array().map(Vec::len), Some(0));
        assert_eq!(c["systems"][1]["holds"][0]["legal_basis"], "HGB 257");
        assert_eq!(c["jti"], "prj_1");
        assert!(!c.to_string().contains("subject"));
    }
}
