//! Active health checks take failing addresses out of rotation and put them
//! back; connection failures fail over to another address.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// An upstream whose /healthz answers 200 or 500 as `healthy` says.
async fn switchable(name: &'static str, healthy: Arc<AtomicBool>) -> Upstream {
    Upstream::start(move |req| {
        let healthy = healthy.clone();
        async move {
            if req.uri().path() == "/healthz" {
                let ok = healthy.load(Ordering::SeqCst);
                return text_response(if ok { 200 } else { 500 }, "text/plain", String::new());
            }
            echo_response(name, &req)
        }
    })
    .await
}

#[tokio::test]
async fn failing_address_leaves_rotation_and_returns() {
    let a_ok = Arc::new(AtomicBool::new(true));
    let b_ok = Arc::new(AtomicBool::new(true));
    let a = switchable("a", a_ok.clone()).await;
    let b = switchable("b", b_ok.clone()).await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  app:
    addresses: [\"{}\", \"{}\"]
    balance: round_robin
    health_check: {{ path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2 }}
routes:
  - {{ name: app, path_prefix: /, upstream: app, kind: api }}
",
        a.addr, b.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    let b_series = format!(
        "omnigate_upstream_healthy{{address=\"{}\",upstream=\"app\"}}",
        b.addr
    );
    let seen = |n: usize| {
        let c = c.clone();
        async move {
            let mut names = Vec::new();
            for _ in 0..n {
                names.push(
                    c.get("shop.test", "/").await.json()["upstream"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            names
        }
    };
    let both = seen(6).await;
    assert!(
        both.contains(&"a".to_string()) && both.contains(&"b".to_string()),
        "{both:?}"
    );

    b_ok.store(false, Ordering::SeqCst);
    gw.wait_metric(&b_series, 0.0, Duration::from_secs(10))
        .await;
    let only_a = seen(10).await;
    assert!(
        only_a.iter().all(|n| n == "a"),
        "b still in rotation: {only_a:?}"
    );

    b_ok.store(true, Ordering::SeqCst);
    gw.wait_metric(&b_series, 1.0, Duration::from_secs(10))
        .await;
    let again = seen(6).await;
    assert!(again.contains(&"b".to_string()), "b not back: {again:?}");

    // Every address failing: 503, not a hang.
    a_ok.store(false, Ordering::SeqCst);
    b_ok.store(false, Ordering::SeqCst);
    gw.wait_metric(&b_series, 0.0, Duration::from_secs(10))
        .await;
    gw.wait_metric(
        &b_series.replace(&b.addr.to_string(), &a.addr.to_string()),
        0.0,
        Duration::from_secs(10),
    )
    .await;
    let r = c.get("shop.test", "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["type"], "urn:omnigate:problem:no-healthy-upstream");
}

#[tokio::test]
async fn connection_failure_fails_over_to_another_address() {
    let live = Upstream::echo("live").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  app: {{ addresses: [\"{dead}\", \"{}\"], balance: least_connections }}
routes:
  - {{ name: app, path_prefix: /, upstream: app, kind: api }}
",
        live.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    for _ in 0..6 {
        let r = c.get("shop.test", "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["upstream"], "live");
    }
    let refused = gw
        .metric("omnigate_upstream_errors_total{kind=\"connect_refused\",upstream=\"app\"}")
        .await
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "connect failures are counted: {refused}");
}
