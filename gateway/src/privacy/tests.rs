//! The privacy store on every engine: embedded SQLite and real PostgreSQL
//! (127.0.0.1:5432, database `test`, a schema of its own per test).

use std::sync::Arc;

use super::datamap::{Seen, FIELD_EMAIL, FIELD_ID, FIELD_NAME};
use super::store::*;
use crate::config::model::CustomerStore;
use crate::customers::{Directory, Event, ExternalId, IdentityKind, Profile};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

type Engine = (
    &'static str,
    Arc<dyn Directory>,
    Arc<dyn PrivacyStore>,
    Option<tempfile::TempDir>,
);

async fn engines() -> Vec<Engine> {
    let dir = tempfile::tempdir().unwrap();
    let (d, p) = crate::customers::open_with_privacy(&CustomerStore::Embedded {
        path: dir.path().join("c.db"),
    })
    .await
    .unwrap();
    let schema = format!("p_{}", hex::encode(rand::random::<[u8; 6]>()));
    let (dp, pp) = crate::customers::open_with_privacy(&CustomerStore::Postgres {
        url: PG.into(),
        schema,
        timeout: std::time::Duration::from_secs(5),
    })
    .await
    .unwrap_or_else(|e| panic!("PostgreSQL at {PG} is required (tests/run starts it): {e}"));
    vec![("sqlite", d, p, Some(dir)), ("postgres", dp, pp, None)]
}

async fn customer(d: &dyn Directory, sub: &str) -> String {
    let id = ExternalId {
        issuer: "https://idp.test".into(),
        subject: sub.into(),
    };
    let profile = Profile {
        email: Some(format!("{sub}@example.test")),
        email_verified: true,
        name: Some(sub.into()),
    };
    d.resolve(&id, IdentityKind::Oidc, &profile)
        .await
        .unwrap()
        .id
}

fn seen(c: &str, system: &str, t: (i64, i64), fields: u8, purposes: &[&str]) -> Seen {
    Seen {
        customer_id: c.into(),
        system: system.into(),
        first_seen: t.0,
        last_seen: t.1,
        fields,
        purposes: purposes.iter().map(|p| p.to_string()).collect(),
    }
}

fn new_job(c: &str, kind: Kind) -> NewJob {
    NewJob {
        id: super::new_job_id(),
        kind,
        customer_id: c.into(),
        subject: Subject {
            identities: vec![Identity {
                issuer: "https://idp.test".into(),
                subject: "x".into(),
            }],
            email: Some("x@example.test".into()),
            name: None,
        },
        requested_by: "operator".into(),
        channel: "phone".into(),
        verification: "called back".into(),
        created_at: 100,
        deadline_at: 100 + 30 * 86400,
    }
}

#[tokio::test]
async fn the_data_map_folds_batches_idempotently() {
    for (engine, d, p, _keep) in engines().await {
        let ann = customer(&*d, "ann").await;
        let batch = vec![
            seen(&ann, "store", (10, 20), FIELD_ID, &["terms"]),
            seen(&ann, "crm", (15, 15), FIELD_ID | FIELD_EMAIL, &[]),
            // A customer the directory does not know is not mapped.
            seen("cus_gone", "store", (1, 2), FIELD_ID, &[]),
        ];
        p.upsert_map(&batch).await.unwrap();
        p.upsert_map(&batch).await.unwrap();
        p.upsert_map(&[seen(&ann, "store", (5, 30), FIELD_NAME, &["analytics"])])
            .await
            .unwrap();
        let map = p.customer_map(&ann).await.unwrap();
        assert_eq!(map.len(), 2, "{engine}: {map:?}");
        assert_eq!(
            map[0],
            seen(&ann, "crm", (15, 15), FIELD_ID | FIELD_EMAIL, &[]),
            "{engine}"
        );
        assert_eq!(
            map[1],
            seen(
                &ann,
                "store",
                (5, 30),
                FIELD_ID | FIELD_NAME,
                &["analytics", "terms"]
            ),
            "{engine}"
        );
        assert!(
            p.customer_map("cus_gone").await.unwrap().is_empty(),
            "{engine}"
        );
        let bob = customer(&*d, "bob").await;
        p.upsert_map(&[seen(&bob, "store", (40, 41), FIELD_EMAIL, &[])])
            .await
            .unwrap();
        let by = p.map_by_system().await.unwrap();
        let store = by.iter().find(|s| s.system == "store").unwrap();
        assert_eq!(
            (store.customers, store.first_seen, store.last_seen),
            (2, 5, 41),
            "{engine}"
        );
        assert_eq!(
            store.fields,
            FIELD_ID | FIELD_EMAIL | FIELD_NAME,
            "{engine}"
        );
        assert_eq!(store.purposes, vec!["analytics", "terms"], "{engine}");
    }
}

#[tokio::test]
async fn jobs_are_claimed_once_and_writes_name_their_rev() {
    for (engine, d, p, _keep) in engines().await {
        let ann = customer(&*d, "ann").await;
        let ev = Event::new("privacy.erasure_requested", serde_json::json!({}));
        let job = p
            .create_job(&new_job(&ann, Kind::Erasure), &ev)
            .await
            .unwrap();
        assert_eq!(
            (job.state.as_str(), job.step.as_str()),
            ("open", "revoke"),
            "{engine}"
        );
        // The same customer's unfinished erasure is returned, not a second.
        let again = p
            .create_job(&new_job(&ann, Kind::Erasure), &ev)
            .await
            .unwrap();
        assert_eq!(again.id, job.id, "{engine}");
        assert_eq!(p.erasing(100).await.unwrap(), vec![ann.clone()], "{engine}");

        let claimed = p.claim_job("a", 100, 160).await.unwrap().unwrap();
        assert_eq!(claimed.id, job.id);
        assert!(
            p.claim_job("b", 100, 160).await.unwrap().is_none(),
            "{engine}: leased"
        );
        let to_fanout = JobChange {
            step: "fanout".into(),
            state: "in_progress".into(),
            next_run_at: 130,
            ..Default::default()
        };
        assert!(
            !p.set_job(&job.id, Some("b"), &to_fanout).await.unwrap(),
            "{engine}"
        );
        assert!(
            p.set_job(&job.id, Some("a"), &to_fanout).await.unwrap(),
            "{engine}"
        );
        let tasks = [
            ("store".to_string(), "pending".to_string()),
            ("crm".into(), "pending".into()),
        ];
        p.add_tasks(&job.id, &tasks, 100).await.unwrap();
        p.add_tasks(&job.id, &tasks[..1], 100).await.unwrap();

        let a = p.claim_tasks("a", 100, 160, 10).await.unwrap();
        assert_eq!(a.len(), 2, "{engine}");
        assert!(
            p.claim_tasks("b", 100, 160, 10).await.unwrap().is_empty(),
            "{engine}"
        );
        let store = a.iter().find(|t| t.system == "store").unwrap();
        let done = |state: &str| TaskChange {
            job_id: job.id.clone(),
            system: "store".into(),
            state: state.into(),
            attempts: 1,
            next_attempt_at: 100,
            last_error: None,
            last_attempt_at: Some(100),
            answered_at: Some(100),
            detail: None,
        };
        // A callback lands first; the worker's late write for the old rev is refused.
        assert!(
            p.record_task(&done("erased"), None).await.unwrap(),
            "{engine}"
        );
        assert!(
            !p.record_task(&done("failing"), Some(store.rev))
                .await
                .unwrap(),
            "{engine}"
        );
        assert!(
            !p.record_task(&done("failing"), None).await.unwrap(),
            "{engine}: ended"
        );
        let now = p.tasks(&job.id).await.unwrap();
        assert_eq!(
            now.iter().find(|t| t.system == "store").unwrap().state,
            "erased"
        );
        // An expired lease lets another node take the crm task.
        let b = p.claim_tasks("b", 161, 200, 10).await.unwrap();
        assert_eq!(b.len(), 1, "{engine}");
        assert_eq!(b[0].system, "crm");

        p.audit(&job.id, "gateway", "planned", Some("store, crm"), 101)
            .await
            .unwrap();
        let trail = p.trail(&job.id).await.unwrap();
        assert_eq!(trail.len(), 2, "{engine}: requested, planned");
        assert_eq!(trail[1].what, "planned");
    }
}

#[tokio::test]
async fn operator_holds_pause_tasks_and_erasure_leaves_only_tombstones() {
    for (engine, d, p, _keep) in engines().await {
        let ann = customer(&*d, "ann").await;
        let ev = || Event::new("x", serde_json::json!({}));
        let job = p
            .create_job(&new_job(&ann, Kind::Erasure), &ev())
            .await
            .unwrap();
        let fanout = JobChange {
            step: "fanout".into(),
            state: "in_progress".into(),
            next_run_at: 100,
            ..Default::default()
        };
        p.set_job(&job.id, None, &fanout).await.unwrap();
        p.add_tasks(&job.id, &[("store".into(), "pending".into())], 100)
            .await
            .unwrap();
        let hold = Hold {
            id: "hld_1".into(),
            customer_id: ann.clone(),
            job_id: None,
            system: None,
            categories: vec!["all".into()],
            reason: "disputed invoice".into(),
            legal_basis: None,
            until: Some(150),
            placed_by: "operator".into(),
            placed_at: 100,
            released_at: None,
            release_reason: None,
        };
        p.place_hold(&hold, &ev()).await.unwrap();
        assert!(
            p.claim_tasks("a", 120, 130, 10).await.unwrap().is_empty(),
            "{engine}: paused"
        );
        assert_eq!(p.holds(None, 120).await.unwrap().len(), 1, "{engine}");
        assert_eq!(
            p.claim_tasks("a", 151, 160, 10).await.unwrap().len(),
            1,
            "{engine}: expired"
        );
        assert!(p.release_hold("hld_1", "settled", 152).await.unwrap());
        assert!(
            !p.release_hold("hld_1", "again", 153).await.unwrap(),
            "{engine}"
        );

        d.append_consent(
            &ann,
            &[crate::consent::Decision {
                purpose: "terms".into(),
                version: 1,
                text_hash: "h".into(),
                action: crate::consent::Action::Grant,
                at: 1,
                channel: "web".into(),
                method: "form".into(),
                user_agent: None,
            }],
        )
        .await
        .unwrap();
        p.upsert_map(&[seen(&ann, "store", (1, 2), FIELD_ID, &["terms"])])
            .await
            .unwrap();
        let stones = vec!["aa".to_string(), "bb".to_string()];
        p.erase_customer(&ann, &stones, &job.id, &ev(), 200)
            .await
            .unwrap();
        assert!(d.customer(&ann).await.unwrap().is_none(), "{engine}");
        assert!(d.identities(&ann).await.unwrap().is_empty(), "{engine}");
        assert!(
            d.consent_records(&ann).await.unwrap().is_empty(),
            "{engine}"
        );
        assert!(p.customer_map(&ann).await.unwrap().is_empty(), "{engine}");
        assert_eq!(
            p.tombstoned(&["zz".into(), "bb".into()]).await.unwrap(),
            Some(job.id.clone()),
            "{engine}"
        );
        assert_eq!(
            p.tombstoned(&["zz".into()]).await.unwrap(),
            None,
            "{engine}"
        );
        let c = p.counts(200).await.unwrap();
        assert_eq!(
            c.jobs,
            vec![("erasure".into(), "in_progress".into(), 1)],
            "{engine}"
        );
        assert_eq!(c.overdue, 0, "{engine}");
    }
}

#[tokio::test]
async fn a_returning_identity_of_an_erased_customer_is_recognised() {
    for (engine, d, p, _keep) in engines().await {
        let ann = customer(&*d, "ann").await;
        let key = d
            .shared_secret(crate::customers::TOMBSTONE_KEY, "unused", 1)
            .await
            .unwrap();
        let id = ExternalId {
            issuer: "https://idp.test".into(),
            subject: "ann".into(),
        };
        let stone = super::identity_tombstone(key.as_bytes(), &id);
        let ev = Event::new("x", serde_json::json!({}));
        p.erase_customer(&ann, &[stone], "prj_0", &ev, 5)
            .await
            .unwrap();
        let again = customer(&*d, "ann").await;
        assert_ne!(again, ann, "{engine}: a new customer, never the old id");
        let due = d
            .claim_due(i64::MAX / 2, i64::MAX / 2 + 1, 100)
            .await
            .unwrap();
        let registered: Vec<serde_json::Value> = due
            .iter()
            .filter(|q| q.event.kind == "identity.registered")
            .map(|q| serde_json::from_str(&q.event.payload).unwrap())
            .collect();
        let last = registered.last().unwrap();
        assert_eq!(last["data"]["customer_id"], again.as_str(), "{engine}");
        assert_eq!(last["data"]["previously_erased"], "prj_0", "{engine}");
    }
}
