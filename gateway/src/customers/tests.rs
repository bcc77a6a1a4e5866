//! The same tests on every engine: embedded SQLite and real PostgreSQL
//! (127.0.0.1:5432, database `test`, a schema of its own per test).

use super::*;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn engines() -> Vec<(&'static str, Arc<dyn Directory>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open(&CustomerStore::Embedded {
        path: dir.path().join("c.db"),
    })
    .await
    .unwrap();
    let schema = format!("t_{}", hex::encode(rand::random::<[u8; 6]>()));
    let pg = open(&CustomerStore::Postgres {
        url: PG.into(),
        schema,
    })
    .await
    .unwrap_or_else(|e| {
        panic!("PostgreSQL at {PG} is required for these tests (tests/run starts it): {e}")
    });
    vec![("sqlite", sqlite, Some(dir)), ("postgres", pg, None)]
}

fn id(sub: &str) -> ExternalId {
    ExternalId {
        issuer: "https://idp.test".into(),
        subject: sub.into(),
    }
}

#[tokio::test]
async fn first_sight_creates_then_the_same_customer_is_returned() {
    for (engine, d, _keep) in engines().await {
        let profile = Profile {
            email: Some("ann@example.test".into()),
            email_verified: true,
            name: Some("Ann".into()),
        };
        let a = d
            .resolve(&id("ann"), IdentityKind::Oidc, &profile)
            .await
            .unwrap();
        assert!(
            a.id.starts_with("cus_") && a.id.len() == 36,
            "{engine}: {}",
            a.id
        );
        assert_eq!(a.email.as_deref(), Some("ann@example.test"), "{engine}");
        let again = d
            .resolve(&id("ann"), IdentityKind::Bearer, &Profile::default())
            .await
            .unwrap();
        assert_eq!(
            again, a,
            "{engine}: same identity, same customer, profile kept"
        );
        let other = d
            .resolve(&id("bob"), IdentityKind::Bearer, &Profile::default())
            .await
            .unwrap();
        assert_ne!(other.id, a.id, "{engine}");
        assert_eq!(
            d.customer(&a.id).await.unwrap(),
            Some(a.clone()),
            "{engine}"
        );
        assert_eq!(
            d.identities(&a.id).await.unwrap(),
            vec![id("ann")],
            "{engine}"
        );
        assert_eq!(d.customer("cus_missing").await.unwrap(), None, "{engine}");
    }
}

#[tokio::test]
async fn concurrent_first_sights_agree_on_one_customer() {
    for (engine, d, _keep) in engines().await {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                d.resolve(&id("racer"), IdentityKind::Bearer, &Profile::default())
                    .await
                    .unwrap()
                    .id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{engine}: {ids:?}");
    }
}
