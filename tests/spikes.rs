//! Campaign spikes (issue 14): what the gateway refuses, and how, when more
//! arrives than it can do — beginning with password hashing, the costliest
//! thing it does.

use std::time::Duration;

use crate::accounts::{Visitor, PASSWORD};
use crate::support::*;

/// A shop whose hashing pool has one worker and room for one waiting hash,
/// at a cost that makes each hash take a while.
fn slow_hashing_shop(sink: &MailSink, store: &Upstream) -> String {
    let accounts = sink
        .accounts_config(
            "https://shop.test:{https}",
            "  hashing: { workers: 1, queue: 1, deadline: 2s }\n",
        )
        .replace(
            "argon2: { memory_kib: 19456, iterations: 2, parallelism: 1 }",
            "argon2: { memory_kib: 65536, iterations: 6, parallelism: 1 }",
        );
    config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
{accounts}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
",
        store.addr
    ))
}

#[tokio::test]
async fn a_sign_in_storm_beyond_the_hashing_pool_gets_503_at_once_and_counts_no_failure() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let gw = Gateway::start(&slow_hashing_shop(&sink, &store), &[]).await;
    let email = "storm@example.test";
    let mut first = Visitor::new(gw.dev_client());
    let (status, page) = first.register(email, PASSWORD).await;
    assert_eq!(status, 303, "{page}");

    let mut storm = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let mut v = Visitor::new(gw.dev_client());
        storm.spawn(async move {
            let html = v.get("/_auth/login").await.text();
            let csrf = Visitor::csrf_in(&html);
            // All posted together: one hashes, one waits, the rest are told.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let form = format!(
                "csrf={csrf}&email={}&password={}",
                url_encode(email),
                url_encode(PASSWORD)
            );
            v.send("POST", "/_auth/login/password", &[], &form).await
        });
    }
    // Proxying is not starved meanwhile.
    let home = gw.dev_client().get("shop.test", "/").await;
    assert_eq!(home.status, 200);

    let (mut signed_in, mut busy) = (0, 0);
    while let Some(r) = storm.join_next().await {
        let r = r.expect("visitor");
        match r.status {
            303 => signed_in += 1,
            503 => {
                busy += 1;
                assert_eq!(r.header("retry-after"), Some("5"));
                assert!(
                    r.text().contains("Many people are signing in right now"),
                    "{}",
                    r.text()
                );
            }
            other => panic!(
                "a sign-in with the right password answered {other}: {}",
                r.text()
            ),
        }
    }
    assert!(
        signed_in >= 1 && busy >= 1,
        "signed in {signed_in}, busy {busy}"
    );
    assert_eq!(signed_in + busy, 12);
    let refused = gw
        .metric("omnigate_password_hash_refused_total{reason=\"queue_full\"}")
        .await
        .expect("the refusal metric is exported");
    assert_eq!(refused, busy as f64);
    // A full pool is not a wrong password: nothing counted, nobody throttled.
    assert_eq!(
        gw.metric("omnigate_password_failures_total").await,
        Some(0.0)
    );
    assert_eq!(gw.metric("omnigate_password_hash_queue").await, Some(0.0));
    let mut later = Visitor::new(gw.dev_client());
    let (status, _) = later.sign_in(email, PASSWORD).await;
    assert_eq!(status, 303, "the account signs in once the storm is over");
}
