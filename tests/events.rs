//! Events from the durable outbox to a real HTTP receiver: signed, retried
//! while the receiver fails, and kept across a gateway restart. On the
//! embedded store and on PostgreSQL.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::support::*;

pub(crate) const SECRET: &str = "whsec-test-0123456789";

/// What the receiver accepted: (signature header, event id header, body).
pub(crate) type Accepted = Arc<Mutex<Vec<(String, String, String)>>>;

pub(crate) struct Receiver {
    pub up: Upstream,
    pub accepted: Accepted,
    /// Requests refused so far (503).
    refused: Arc<AtomicUsize>,
    /// Refuse everything while set; else refuse the first `refuse_first`.
    down: Arc<AtomicBool>,
}

pub(crate) async fn receiver(refuse_first: usize) -> Receiver {
    let accepted: Accepted = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (a, r, d) = (accepted.clone(), refused.clone(), down.clone());
    let up = Upstream::start(move |req| {
        let (a, r, d) = (a.clone(), r.clone(), d.clone());
        async move {
            let header = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let (sig, id) = (header("omnigate-signature"), header("omnigate-event-id"));
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if d.load(Ordering::SeqCst) || r.load(Ordering::SeqCst) < refuse_first {
                r.fetch_add(1, Ordering::SeqCst);
                return text_response(503, "text/plain", "not now".into());
            }
            a.lock()
                .unwrap()
                .push((sig, id, String::from_utf8_lossy(&body).into_owned()));
            text_response(204, "text/plain", String::new())
        }
    })
    .await;
    Receiver {
        up,
        accepted,
        refused,
        down,
    }
}

pub(crate) fn verify(signature: &str, body: &str) {
    use hmac::Mac;
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("malformed signature {signature:?}"));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("signature verifies with the shared secret");
}

/// Waits until the receiver holds an event whose data names `customer`.
pub(crate) async fn delivered_for(
    accepted: &Accepted,
    customer: &str,
    within: Duration,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let got: Vec<serde_json::Value> = accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(sig, id, body)| {
                verify(sig, body);
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(v["id"], id.as_str(), "event id header and body agree");
                v
            })
            .filter(|v| v["data"]["customer_id"] == customer)
            .collect();
        if !got.is_empty() {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "no event for {customer} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn outbox_survives_failures_and_restarts(postgres: bool) {
    let idp = Idp::start().await;
    let api = Upstream::echo("api").await;
    let hook = receiver(2).await;
    let customers = if postgres {
        format!(
            "customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: ev_{} }}\n",
            hex::encode(rand::random::<[u8; 5]>())
        )
    } else {
        String::new()
    };
    let extra = format!(
        "{customers}events:
  webhooks:
    - {{ name: crm, url: \"http://{}/hooks/omnigate\", secret: {SECRET}, events: [identity.registered] }}
",
        hook.up.addr
    );
    let cfg = bearer_me_config(&idp, &api, &extra);
    let mut gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    let first_call = |user: &'static str| {
        let (c, idp) = (c.clone(), &idp);
        async move {
            let r = get_me(&c, idp, user).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["headers"]["x-customer-id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };

    // A new customer: reported after the receiver refused twice.
    let ivy = first_call("ivy").await;
    let got = delivered_for(&hook.accepted, &ivy, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "identity.registered");
    assert_eq!(got[0]["data"]["method"], "bearer");
    assert_eq!(hook.refused.load(Ordering::SeqCst), 2);
    assert!(gw
        .metric("omnigate_webhook_deliveries_total{result=\"failed\",webhook=\"crm\"}")
        .await
        .is_some_and(|n| n >= 2.0));

    // The receiver is down when the next customer appears, and the gateway
    // restarts before it comes back: the event still arrives, once.
    hook.down.store(true, Ordering::SeqCst);
    let refused_before = hook.refused.load(Ordering::SeqCst);
    let jay = first_call("jay").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.refused.load(Ordering::SeqCst) == refused_before {
        assert!(
            Instant::now() < deadline,
            "no delivery attempt while the receiver was down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the failed attempt be recorded, then stop the gateway hard.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.restart().await;
    assert_eq!(
        gw.metric("omnigate_outbox_depth").await,
        Some(1.0),
        "kept across the restart"
    );
    hook.down.store(false, Ordering::SeqCst);
    let got = delivered_for(&hook.accepted, &jay, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
    gw.wait_metric("omnigate_outbox_depth", 0.0, Duration::from_secs(5))
        .await;
    // A known customer is not registered again.
    assert_eq!(first_call("ivy").await, ivy);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        delivered_for(&hook.accepted, &ivy, Duration::ZERO)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn outbox_on_the_embedded_store() {
    outbox_survives_failures_and_restarts(false).await;
}

#[tokio::test]
async fn outbox_on_postgres() {
    outbox_survives_failures_and_restarts(true).await;
}
