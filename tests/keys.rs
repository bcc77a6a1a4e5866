//! Assertion signing keys shared by every node (kept in the customer
//! directory) and rotated on a schedule: a backend can verify any node's
//! assertion with any node's JWKS, across restarts and rotations.

use std::time::{Duration, Instant};

use crate::support::*;

fn node_config(idp: &Idp, api: &Upstream, schema: &str, rotation: &str) -> String {
    bearer_me_config(
        idp,
        api,
        &format!(
            "customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: {schema} }}
identity: {{ key_rotation: {rotation}, assertion_ttl: 5s }}
"
        ),
    )
}

async fn jwks(gw: &Gateway) -> jsonwebtoken::jwk::JwkSet {
    let r = Client::plain(gw.addr("http"))
        .get("api.test", "/.well-known/omnigate/jwks.json")
        .await;
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

/// The assertion the echo upstream received for a bearer request via `gw`.
async fn assertion_via(gw: &Gateway, idp: &Idp) -> String {
    let r = get_me(&Client::plain(gw.addr("http")), idp, "kim").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["headers"]["x-omnigate-assertion"]
        .as_str()
        .expect("assertion")
        .to_string()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("kid")
}

/// Verifies `token` as a backend would, with the JWKS `set`.
fn verifies(token: &str, set: &jsonwebtoken::jwk::JwkSet) -> bool {
    let Some(jwk) = set.find(&kid_of(token)) else {
        return false;
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["api"]);
    v.set_issuer(&["omnigate"]);
    jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .is_ok()
}

#[tokio::test]
async fn every_node_signs_with_the_same_keys_and_a_restart_keeps_them() {
    let idp = Idp::start().await;
    let api = Upstream::echo("api").await;
    let schema = format!("keys_{}", hex::encode(rand::random::<[u8; 6]>()));
    let cfg = node_config(&idp, &api, &schema, "7d");
    let (mut a, b) = tokio::join!(Gateway::start(&cfg, &[]), Gateway::start(&cfg, &[]));
    let (ja, jb) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(
        serde_json::to_value(&ja).unwrap(),
        serde_json::to_value(&jb).unwrap(),
        "both nodes publish one key set"
    );
    let from_a = assertion_via(&a, &idp).await;
    let from_b = assertion_via(&b, &idp).await;
    assert!(
        verifies(&from_a, &jb),
        "node B's JWKS verifies node A's assertion"
    );
    assert!(verifies(&from_b, &ja), "and the other way round");
    assert_eq!(kid_of(&from_a), kid_of(&from_b));
    a.restart().await;
    assert_eq!(
        serde_json::to_value(jwks(&a).await).unwrap(),
        serde_json::to_value(&jb).unwrap(),
        "a restart keeps the keys"
    );
    assert!(verifies(&assertion_via(&a, &idp).await, &jb));
}

#[tokio::test]
async fn keys_rotate_with_the_next_one_published_before_it_signs() {
    let idp = Idp::start().await;
    let api = Upstream::echo("api").await;
    let schema = format!("rot_{}", hex::encode(rand::random::<[u8; 6]>()));
    let gw = Gateway::start(&node_config(&idp, &api, &schema, "4s"), &[]).await;
    let mut published_at: std::collections::HashMap<String, Instant> = Default::default();
    let mut signing: Vec<String> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(11) {
        let set = jwks(&gw).await;
        for k in &set.keys {
            if let Some(kid) = &k.common.key_id {
                published_at.entry(kid.clone()).or_insert_with(Instant::now);
            }
        }
        let token = assertion_via(&gw, &idp).await;
        let kid = kid_of(&token);
        assert!(verifies(&token, &set), "the signing key is in the JWKS");
        if signing.last() != Some(&kid) {
            if !signing.is_empty() {
                let first_seen = published_at.get(&kid).expect("published before it signed");
                assert!(
                    first_seen.elapsed() >= Duration::from_millis(500),
                    "{kid} signed {:?} after it was first published",
                    first_seen.elapsed()
                );
            }
            signing.push(kid);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        signing.len() >= 2,
        "no rotation seen in 11 s with a 4 s period: {signing:?}"
    );
}
