//! Privacy operations: the data map recorded from traffic (`datamap`),
//! requests to erase or export a customer's data as durable jobs fanned out
//! to every system that holds it (`worker`, `apply`), legal holds, the
//! tombstone left of an erased customer and the signed completion report
//! (`report`). The protocol with systems is pure (`answer`); storage sits
//! behind [`PrivacyStore`], one implementation per engine (`sql`).

pub mod answer;
pub mod apply;
pub mod datamap;
pub mod export;
pub mod report;
mod sql;
pub mod store;
pub mod worker;

pub use sql::{PgPrivacy, SqlitePrivacy};
pub use store::PrivacyStore;

use crate::customers::{Event, ExternalId};
use crate::state::App;
use store::{Identity, Job, Kind, NewJob, Subject};

/// A keyed hash of one identity of an erased customer: recognisable when it
/// comes back, useless to anyone without the deployment's key. Pure.
pub fn tombstone(key: &[u8], kind: &str, value: &str) -> String {
    crate::webhook::hmac_hex(key, &[kind.as_bytes(), b"\n", value.as_bytes()])
}

/// The tombstones of a subject: each identity, and the email address.
pub fn tombstones(key: &[u8], subject: &Subject) -> Vec<String> {
    let mut out: Vec<String> = subject
        .identities
        .iter()
        .map(|i| identity_mark(key, &i.issuer, &i.subject))
        .collect();
    if let Some(e) = &subject.email {
        out.push(tombstone(key, "email", &e.to_lowercase()));
    }
    out
}

/// The tombstone of one external identity.
pub fn identity_tombstone(key: &[u8], id: &ExternalId) -> String {
    identity_mark(key, &id.issuer, &id.subject)
}

fn identity_mark(key: &[u8], issuer: &str, subject: &str) -> String {
    tombstone(key, "identity", &format!("{issuer}\n{subject}"))
}

/// A new job id: `prj_` and 128 random bits.
pub fn new_job_id() -> String {
    format!("prj_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// A job id as issued. Pure.
pub fn valid_job_id(id: &str) -> bool {
    id.len() == 36
        && id
            .strip_prefix("prj_")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Who asks, how it came in and how their identity was checked.
#[derive(Debug, Clone)]
pub struct Requester {
    pub requested_by: String,
    pub channel: String,
    pub verification: String,
}

/// Why a request could not be filed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no such customer")]
    NoCustomer,
    #[error("{0}")]
    Unavailable(String),
}

/// Files a request for a customer (or finds the unfinished one of the same
/// kind). An erasure refuses the customer at once on this node; the worker
/// ends their sessions everywhere as its first step.
pub async fn request(
    app: &App,
    customer_id: &str,
    kind: Kind,
    who: Requester,
) -> Result<Job, RequestError> {
    let dir = app.auth.directory();
    let unavailable =
        |e: crate::customers::DirectoryError| RequestError::Unavailable(e.to_string());
    let customer = dir
        .customer(customer_id)
        .await
        .map_err(unavailable)?
        .ok_or(RequestError::NoCustomer)?;
    let identities = dir
        .identities(customer_id)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|i| Identity {
            issuer: i.issuer,
            subject: i.subject,
        })
        .collect();
    let now = crate::session::unix_now();
    let snap = app.snapshot();
    let job = NewJob {
        id: new_job_id(),
        kind,
        customer_id: customer_id.to_string(),
        subject: Subject {
            identities,
            email: customer.email.clone(),
            name: customer.name.clone(),
        },
        requested_by: who.requested_by,
        channel: who.channel,
        verification: who.verification,
        created_at: now,
        deadline_at: now + snap.config.privacy.deadline.as_secs() as i64,
    };
    let event_kind = match kind {
        Kind::Erasure => "privacy.erasure_requested",
        Kind::Export => "privacy.export_requested",
    };
    let event = Event::new(
        event_kind,
        serde_json::json!({
            "job_id": job.id, "customer_id": customer_id, "deadline": job.deadline_at,
            "requested_by": job.requested_by, "channel": job.channel,
        }),
    );
    let filed = app
        .privacy
        .create_job(&job, &event)
        .await
        .map_err(unavailable)?;
    if kind == Kind::Erasure {
        app.auth.refuse(customer_id);
    }
    app.privacy_wake.notify_one();
    Ok(filed)
}

/// Whether a new identity belonged to a customer who was erased: the job
/// that erased them, if so (logged and reported in the event that follows).
pub async fn previously_erased(app: &App, id: &ExternalId) -> Option<String> {
    let hash = identity_tombstone(&app.tombstone_key, id);
    match app.privacy.tombstoned(&[hash]).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "tombstones could not be read");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_keyed_and_distinct() {
        let s = Subject {
            identities: vec![Identity {
                issuer: "https://op.example".into(),
                subject: "u1".into(),
            }],
            email: Some("Ada@Example.com".into()),
            name: Some("Ada".into()),
        };
        let a = tombstones(b"key-one", &s);
        let b = tombstones(b"key-two", &s);
        assert_eq!(a.len(), 2);
        assert_ne!(a, b);
        assert_ne!(a[0], a[1]);
        assert_eq!(a[1], tombstone(b"key-one", "email", "ada@example.com"));
        assert!(!a.iter().any(|h| h.contains("u1") || h.contains("ada")));
        let id = ExternalId {
            issuer: "https://op.example".into(),
            subject: "u1".into(),
        };
        assert_eq!(identity_tombstone(b"key-one", &id), a[0]);
    }

    #[test]
    fn job_ids() {
        let id = new_job_id();
        assert!(valid_job_id(&id), "{id}");
        assert!(!valid_job_id("prj_../../x"));
        assert!(!valid_job_id("cus_0123456789abcdef0123456789abcdef"));
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod store_tests;
