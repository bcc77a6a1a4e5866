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
        timeout: std::time::Duration::from_secs(5),
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

#[tokio::test]
async fn the_outbox_holds_events_until_delivered() {
    for (engine, d, _keep) in engines().await {
        // A new customer is reported once, however many first sights race.
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                d.resolve(&id("eve"), IdentityKind::Oidc, &Profile::default())
                    .await
                    .unwrap()
            }));
        }
        let mut customer = None;
        for t in tasks {
            customer = Some(t.await.unwrap());
        }
        let customer = customer.unwrap();
        assert_eq!(d.outbox_depth().await.unwrap(), 1, "{engine}");
        let t = now();
        let due = d.claim_due(t, t + 60, 10).await.unwrap();
        assert_eq!(due.len(), 1, "{engine}");
        let q = &due[0];
        assert_eq!(q.event.kind, "identity.registered", "{engine}");
        let body: serde_json::Value = serde_json::from_str(&q.event.payload).unwrap();
        assert_eq!(
            body["data"]["customer_id"],
            customer.id.as_str(),
            "{engine}"
        );
        assert_eq!(body["id"], q.event.id.as_str(), "{engine}");
        assert_eq!((q.attempts, q.delivered_to.len()), (0, 0), "{engine}");
        // Leased: another taker sees nothing until the lease ends.
        assert!(
            d.claim_due(t, t + 60, 10).await.unwrap().is_empty(),
            "{engine}"
        );

        // One receiver got it, another did not: retried later, the first skipped.
        d.mark_delivered(&q.event.id, "crm").await.unwrap();
        d.mark_delivered(&q.event.id, "crm").await.unwrap();
        d.retry(&q.event.id, 1, t + 5, "loyalty: HTTP 503")
            .await
            .unwrap();
        assert!(
            d.claim_due(t + 4, t + 64, 10).await.unwrap().is_empty(),
            "{engine}"
        );
        let again = d.claim_due(t + 5, t + 65, 10).await.unwrap();
        assert_eq!(again.len(), 1, "{engine}");
        assert_eq!(again[0].attempts, 1, "{engine}");
        assert_eq!(again[0].delivered_to, vec!["crm".to_string()], "{engine}");
        d.finish(&q.event.id, t + 5, None).await.unwrap();
        assert_eq!(d.outbox_depth().await.unwrap(), 0, "{engine}");
        assert!(
            d.claim_due(t + 999, t + 1059, 10).await.unwrap().is_empty(),
            "{engine}"
        );

        // Events enqueued on their own keep their order.
        let first = Event::new("session.ended", serde_json::json!({"n": 1}));
        let second = Event::new("session.ended", serde_json::json!({"n": 2}));
        d.enqueue(&first).await.unwrap();
        d.enqueue(&second).await.unwrap();
        let due = d.claim_due(now() + 1, now() + 61, 10).await.unwrap();
        let ids: Vec<&str> = due.iter().map(|q| q.event.id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{engine}");
        assert!(ids.contains(&first.id.as_str()) && ids.contains(&second.id.as_str()));
    }
}

#[tokio::test]
async fn password_accounts_register_once_and_carry_their_hash() {
    for (engine, d, _keep) in engines().await {
        let c = d
            .register("ada@example.test", Some("Ada"), "$argon2id$h1")
            .await
            .unwrap()
            .expect("created");
        assert!(!c.email_verified, "{engine}");
        assert!(
            d.register("ada@example.test", None, "$argon2id$h2")
                .await
                .unwrap()
                .is_none(),
            "{engine}: an email registers once"
        );
        let (found, hash) = d.password("ada@example.test").await.unwrap().unwrap();
        assert_eq!(
            (found.id.as_str(), hash.as_str()),
            (c.id.as_str(), "$argon2id$h1")
        );
        assert!(d.password("nobody@example.test").await.unwrap().is_none());
        // The password is an identity like any other.
        let ways = d.identities(&c.id).await.unwrap();
        assert_eq!(ways.len(), 1, "{engine}");
        assert_eq!(ways[0].issuer, crate::accounts::PASSWORD_ISSUER);
        assert_eq!(
            d.set_password(&c.id, "ada@example.test", "$argon2id$h3")
                .await
                .unwrap(),
            SetPassword::Changed
        );
        assert_eq!(
            d.password("ada@example.test").await.unwrap().unwrap().1,
            "$argon2id$h3"
        );
        // Registered, in the outbox in the same transaction.
        let due = d.claim_due(now() + 10, now() + 60, 100).await.unwrap();
        assert!(
            due.iter()
                .any(|q| q.event.kind == "identity.registered" && q.event.payload.contains(&c.id)),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn mailed_tokens_work_once_for_their_purpose_and_until_they_expire() {
    for (engine, d, _keep) in engines().await {
        let c = d
            .register("bo@example.test", None, "h")
            .await
            .unwrap()
            .unwrap();
        let t = now();
        d.put_token("v1", &c.id, Purpose::Verify, "bo@example.test", t + 60)
            .await
            .unwrap();
        d.put_token("old", &c.id, Purpose::Verify, "bo@example.test", t - 1)
            .await
            .unwrap();
        assert!(
            d.take_token("v1", Purpose::Reset, t)
                .await
                .unwrap()
                .is_none(),
            "{engine}: wrong purpose"
        );
        // Opening a link checks it without spending it.
        assert!(
            d.token_live("v1", Purpose::Verify, t).await.unwrap(),
            "{engine}"
        );
        assert!(
            !d.token_live("v1", Purpose::Reset, t).await.unwrap(),
            "{engine}"
        );
        assert!(
            !d.token_live("old", Purpose::Verify, t).await.unwrap(),
            "{engine}: expired"
        );
        let got = d.take_token("v1", Purpose::Verify, t).await.unwrap();
        assert_eq!(
            got,
            Some((c.id.clone(), "bo@example.test".into())),
            "{engine}"
        );
        assert!(
            d.take_token("v1", Purpose::Verify, t)
                .await
                .unwrap()
                .is_none(),
            "{engine}: single use"
        );
        assert!(
            !d.token_live("v1", Purpose::Verify, t).await.unwrap(),
            "{engine}: spent"
        );
        assert!(
            d.take_token("old", Purpose::Verify, t)
                .await
                .unwrap()
                .is_none(),
            "{engine}: expired"
        );
        let v = d
            .mark_verified(&c.id, "bo@example.test")
            .await
            .unwrap()
            .unwrap();
        assert!(v.email_verified, "{engine}");
        // A second confirmation changes nothing and emits nothing more.
        d.mark_verified(&c.id, "bo@example.test").await.unwrap();
        let due = d.claim_due(now() + 10, now() + 60, 100).await.unwrap();
        let verified = due
            .iter()
            .filter(|q| q.event.kind == "identity.verified")
            .count();
        assert_eq!(verified, 1, "{engine}");
        // A reset token dies when the password is set.
        d.put_token("r1", &c.id, Purpose::Reset, "bo@example.test", t + 60)
            .await
            .unwrap();
        d.set_password(&c.id, "bo@example.test", "h2")
            .await
            .unwrap();
        assert!(
            d.take_token("r1", Purpose::Reset, t)
                .await
                .unwrap()
                .is_none(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn identities_link_and_unlink_but_never_the_last_or_anothers() {
    for (engine, d, _keep) in engines().await {
        let a = d
            .resolve(&id("a"), IdentityKind::Oidc, &Profile::default())
            .await
            .unwrap();
        let b = d
            .resolve(&id("b"), IdentityKind::Oidc, &Profile::default())
            .await
            .unwrap();
        assert_eq!(
            d.link(&a.id, &id("b"), IdentityKind::Oidc).await.unwrap(),
            Link::OtherCustomer,
            "{engine}"
        );
        assert_eq!(
            d.link(&a.id, &id("a"), IdentityKind::Oidc).await.unwrap(),
            Link::AlreadyYours
        );
        assert_eq!(
            d.link(&a.id, &id("a2"), IdentityKind::Oidc).await.unwrap(),
            Link::Linked
        );
        assert_eq!(d.lookup(&id("a2")).await.unwrap().unwrap().id, a.id);
        // A password for an email another customer signs in with is refused.
        d.set_password(&b.id, "b@example.test", "h").await.unwrap();
        assert_eq!(
            d.set_password(&a.id, "b@example.test", "h").await.unwrap(),
            SetPassword::EmailTaken,
            "{engine}"
        );
        assert_eq!(d.unlink(&a.id, &id("b")).await.unwrap(), Unlink::NotFound);
        assert_eq!(d.unlink(&a.id, &id("a")).await.unwrap(), Unlink::Unlinked);
        assert_eq!(
            d.unlink(&a.id, &id("a2")).await.unwrap(),
            Unlink::Last,
            "{engine}"
        );
        let due = d.claim_due(now() + 10, now() + 60, 100).await.unwrap();
        let kinds: Vec<&str> = due.iter().map(|q| q.event.kind.as_str()).collect();
        assert!(
            kinds.contains(&"identity.linked") && kinds.contains(&"identity.unlinked"),
            "{engine}: {kinds:?}"
        );
        // Unlinking a password drops its hash too.
        assert_eq!(
            d.unlink(
                &b.id,
                &ExternalId {
                    issuer: crate::accounts::PASSWORD_ISSUER.into(),
                    subject: "b@example.test".into()
                }
            )
            .await
            .unwrap(),
            Unlink::Unlinked
        );
        assert!(
            d.password("b@example.test").await.unwrap().is_none(),
            "{engine}"
        );
        assert_eq!(d.by_email("nobody@example.test").await.unwrap(), None);
    }
}

#[tokio::test]
async fn the_consent_ledger_appends_chains_and_reports_every_decision() {
    use crate::consent::{Action, Decision};
    let d = |purpose: &str, action| Decision {
        purpose: purpose.into(),
        version: 1,
        text_hash: "h".into(),
        action,
        at: now(),
        channel: "web:shop.test/_account/consent".into(),
        method: "consent_page".into(),
        user_agent: None,
    };
    for (engine, dir, _keep) in engines().await {
        let c = dir
            .register("cy@example.test", None, "h")
            .await
            .unwrap()
            .unwrap();
        let first = dir
            .append_consent(
                &c.id,
                &[
                    d("marketing_email", Action::Grant),
                    d("analytics", Action::Grant),
                ],
            )
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        dir.append_consent(&c.id, &[d("analytics", Action::Withdraw)])
            .await
            .unwrap();
        let all = dir.consent_records(&c.id).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3],
            "{engine}"
        );
        assert_eq!(crate::consent::verify(&all), Ok(()), "{engine}");
        let granted = crate::consent::granted(&all);
        assert_eq!(
            granted.keys().collect::<Vec<_>>(),
            ["marketing_email"],
            "{engine}"
        );
        assert!(dir
            .append_consent("cus_nobody", &[d("analytics", Action::Grant)])
            .await
            .is_err());
        let due = dir.claim_due(now() + 10, now() + 60, 100).await.unwrap();
        let kinds: Vec<&str> = due
            .iter()
            .filter(|q| q.event.payload.contains(&c.id))
            .map(|q| q.event.kind.as_str())
            .filter(|k| k.starts_with("consent."))
            .collect();
        assert_eq!(
            kinds,
            ["consent.granted", "consent.granted", "consent.withdrawn"],
            "{engine}"
        );
    }
}

#[tokio::test]
async fn the_ledger_refuses_to_change_a_record_in_place() {
    use crate::consent::{Action, Decision};
    let decision = Decision {
        purpose: "marketing_email".into(),
        version: 1,
        text_hash: "h".into(),
        action: Action::Grant,
        at: now(),
        channel: "web:shop.test/_account/consent".into(),
        method: "consent_page".into(),
        user_agent: None,
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ledger.db");
    let sqlite = open(&CustomerStore::Embedded { path: path.clone() })
        .await
        .unwrap();
    let schema = format!("t_{}", hex::encode(rand::random::<[u8; 6]>()));
    let pg = open(&CustomerStore::Postgres {
        url: PG.into(),
        schema: schema.clone(),
        timeout: std::time::Duration::from_secs(5),
    })
    .await
    .unwrap();
    for d in [&sqlite, &pg] {
        let c = d
            .register("led@example.test", None, "h")
            .await
            .unwrap()
            .unwrap();
        d.append_consent(&c.id, std::slice::from_ref(&decision))
            .await
            .unwrap();
    }
    let tamper = "UPDATE consent_records SET action = 'withdraw'";
    let lite = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let e = sqlx::query(tamper).execute(&lite).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "sqlite: {e}");
    let opts = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(PG)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let remote = sqlx::PgPool::connect_with(opts).await.unwrap();
    let e = sqlx::query(tamper).execute(&remote).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "postgres: {e}");
    for d in [&sqlite, &pg] {
        let c = d.search("led@", None, 1).await.unwrap().remove(0);
        let kept = d.consent_records(&c.id).await.unwrap();
        assert_eq!(crate::consent::verify(&kept), Ok(()));
    }
}

#[tokio::test]
async fn a_new_email_moves_the_address_and_the_password_sign_in_unless_taken() {
    for (engine, d, _keep) in engines().await {
        let c = d
            .register("old@example.test", Some("Ola"), "$argon2id$h")
            .await
            .unwrap()
            .unwrap();
        d.register("other@example.test", None, "$argon2id$o")
            .await
            .unwrap()
            .unwrap();
        let t = now() + 600;
        d.put_token("v1", &c.id, Purpose::Verify, "old@example.test", t)
            .await
            .unwrap();
        assert_eq!(
            d.change_email(&c.id, "other@example.test").await.unwrap(),
            ChangeEmail::Taken,
            "{engine}"
        );
        assert_eq!(
            d.change_email(&c.id, "new@example.test").await.unwrap(),
            ChangeEmail::Changed {
                previous: Some("old@example.test".into())
            },
            "{engine}"
        );
        let now_c = d.customer(&c.id).await.unwrap().unwrap();
        assert_eq!(now_c.email.as_deref(), Some("new@example.test"));
        assert!(now_c.email_verified, "{engine}: confirmed by its mail");
        assert_eq!(
            d.password("new@example.test").await.unwrap().unwrap().0.id,
            c.id
        );
        assert!(
            d.password("old@example.test").await.unwrap().is_none(),
            "{engine}"
        );
        assert!(
            d.take_token("v1", Purpose::Verify, now())
                .await
                .unwrap()
                .is_none(),
            "{engine}: a link for the old address is dead"
        );
        assert_eq!(
            d.change_email("cus_nobody", "x@example.test")
                .await
                .unwrap(),
            ChangeEmail::Gone
        );
        let due = d.claim_due(now() + 10, now() + 60, 100).await.unwrap();
        assert!(
            due.iter().any(|q| q.event.kind == "identity.email_changed"),
            "{engine}"
        );
    }
}
