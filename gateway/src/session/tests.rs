//! The session stores against real engines: the embedded one on a file and
//! Redis (127.0.0.1:6379) as two nodes sharing it, each with its own prefix.

use std::time::{Duration, Instant};

use super::*;

fn session(customer: &str) -> Session {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Session {
        id_hash: hash_id(&new_token()),
        customer_id: customer.into(),
        email: Some("e@example.test".into()),
        email_verified: true,
        name: None,
        provider: "idp".into(),
        csrf: new_token(),
        created_at: now,
        last_seen: now,
        expires_at: now + 3600,
        login_id: new_token(),
        provider_sid: None,
        converted_guest: Some("gst_00000000000000000000000000000001".into()),
        device: Some("Firefox on Linux".into()),
        consents: [("marketing_email".to_string(), 1)].into(),
    }
}

async fn gone_within(store: &dyn SessionStore, id: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if store.get(id).await.unwrap().is_none() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "session still visible after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn embedded_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let s = session("cus_a");
    EmbeddedStore::open(&path, CacheStats::detached())
        .await
        .unwrap()
        .create(&s)
        .await
        .unwrap();
    let reopened = EmbeddedStore::open(&path, CacheStats::detached())
        .await
        .unwrap();
    assert_eq!(reopened.get(&s.id_hash).await.unwrap().as_deref(), Some(&s));
    reopened.clear_converted_guest(&s.id_hash).await.unwrap();
    assert_eq!(
        reopened
            .get(&s.id_hash)
            .await
            .unwrap()
            .unwrap()
            .converted_guest,
        None
    );
    let fresh = EmbeddedStore::open(&path, CacheStats::detached())
        .await
        .unwrap();
    assert_eq!(
        fresh
            .get(&s.id_hash)
            .await
            .unwrap()
            .unwrap()
            .converted_guest,
        None
    );
    reopened.touch(&s.id_hash, s.last_seen + 5).await.unwrap();
    assert_eq!(
        reopened.get(&s.id_hash).await.unwrap().unwrap().last_seen,
        s.last_seen + 5
    );
    let other = session("cus_a");
    reopened.create(&other).await.unwrap();
    assert_eq!(reopened.end(Group::Customer("cus_a")).await.unwrap(), 2);
    assert!(reopened.get(&s.id_hash).await.unwrap().is_none());
    groups_single_use_and_counts(&reopened).await;
}

/// What both engines must do alike: end a sign-in's sessions (not others),
/// end a provider session's, hand out single-use records once, count.
async fn groups_single_use_and_counts(store: &dyn SessionStore) {
    let before = store.active(unix_now()).await.unwrap();
    let first = session("cus_g");
    let mut hopped = session("cus_g");
    hopped.login_id = first.login_id.clone();
    let other = session("cus_g");
    let mut by_sid = session("cus_h");
    by_sid.provider_sid = Some("sid-1".into());
    for s in [&first, &hopped, &other, &by_sid] {
        store.create(s).await.unwrap();
    }
    assert_eq!(store.active(unix_now()).await.unwrap(), before + 4);
    let listed: Vec<String> = store
        .list("cus_g", unix_now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id_hash)
        .collect();
    assert_eq!(listed.len(), 3);
    for s in [&first, &hopped, &other] {
        assert!(listed.contains(&s.id_hash));
    }
    assert_eq!(store.end(Group::Login(&first.login_id)).await.unwrap(), 2);
    assert!(store.get(&hopped.id_hash).await.unwrap().is_none());
    assert!(
        store.get(&other.id_hash).await.unwrap().is_some(),
        "another sign-in stays"
    );
    let sid = Group::ProviderSession {
        provider: "idp",
        sid: "sid-1",
    };
    assert_eq!(store.end(sid).await.unwrap(), 1);
    assert!(store.get(&by_sid.id_hash).await.unwrap().is_none());
    assert_eq!(store.active(unix_now()).await.unwrap(), before + 1);

    let key = format!("hop:{}", hash_id(&new_token()));
    store.put_once(&key, "v", unix_now() + 30).await.unwrap();
    let takes = futures_util::future::join_all((0..4).map(|_| store.take_once(&key))).await;
    let won: Vec<_> = takes.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(won, vec!["v".to_string()], "exactly one take succeeds");
    // Throttle counters count within a window; blocks extend, never shorten.
    let who = new_token();
    assert_eq!(store.bump(&format!("fail:{who}"), 60).await.unwrap(), 1);
    assert_eq!(store.bump(&format!("fail:{who}"), 60).await.unwrap(), 2);
    assert_eq!(store.blocked(&format!("block:{who}")).await.unwrap(), None);
    store.block(&format!("block:{who}"), 30).await.unwrap();
    store.block(&format!("block:{who}"), 5).await.unwrap();
    let left = store
        .blocked(&format!("block:{who}"))
        .await
        .unwrap()
        .unwrap();
    assert!((25..=30).contains(&left), "{left}");

    let stale = format!("hop:{}", hash_id(&new_token()));
    store.put_once(&stale, "v", unix_now() - 1).await.unwrap();
    assert_eq!(store.take_once(&stale).await.unwrap(), None, "expired");
}

#[tokio::test]
async fn redis_nodes_share_sessions_and_see_logouts_within_a_second() {
    let prefix = format!("omnigate-test-{}:", hex::encode(rand::random::<[u8; 6]>()));
    let url = "redis://127.0.0.1:6379";
    let a = RedisStore::open(
        url,
        &prefix,
        CacheStats::detached(),
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap_or_else(|e| {
        panic!("Redis at {url} is required for this test (tests/run starts it): {e}")
    });
    let b = RedisStore::open(
        url,
        &prefix,
        CacheStats::detached(),
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap();
    // Let both subscriptions settle.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let s = session("cus_r");
    a.create(&s).await.unwrap();
    // Node B reads it (and caches it).
    assert_eq!(b.get(&s.id_hash).await.unwrap().as_deref(), Some(&s));
    // Logout on A: B must stop honouring it within a second, despite its cache.
    a.delete(&s.id_hash).await.unwrap();
    let took = gone_within(b.as_ref(), &s.id_hash, Duration::from_secs(1)).await;
    eprintln!("cross-node logout visible after {took:?}");

    // Log out everywhere from B ends A's cached sessions too.
    let s1 = session("cus_all");
    let s2 = session("cus_all");
    a.create(&s1).await.unwrap();
    a.create(&s2).await.unwrap();
    assert!(a.get(&s2.id_hash).await.unwrap().is_some());
    assert_eq!(b.end(Group::Customer("cus_all")).await.unwrap(), 2);
    gone_within(a.as_ref(), &s1.id_hash, Duration::from_secs(1)).await;
    gone_within(a.as_ref(), &s2.id_hash, Duration::from_secs(1)).await;
    groups_single_use_and_counts(a.as_ref()).await;
}
