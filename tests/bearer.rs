//! The mobile/API channel: bearer JWTs from a real OpenID provider
//! (oidc-provider) are verified against its JWKS, mapped to one customer id
//! (embedded SQLite and PostgreSQL), and turned into verified identity
//! headers plus a signed assertion for the backend.

use std::time::Duration;

use bytes::Bytes;
use jsonwebtoken::jwk::JwkSet;

use crate::support::*;

fn config(idp: &Idp, api: &Upstream, postgres: bool) -> String {
    let customers = if postgres {
        format!(
            "customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: t_{} }}\n",
            free_port()
        )
    } else {
        String::new()
    };
    config_with(&format!(
        "{HTTP_LISTENER}{customers}providers:
  - name: idp
    issuer: {}
    jwks_min_refresh: 200ms
    bearer: {{ audiences: [\"{IDP_AUDIENCE}\"] }}
upstreams:
  api: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: orders, path_prefix: /api/orders, upstream: api, kind: api, access: required, scopes: [orders:read] }}
  - {{ name: me, path_prefix: /api/me, upstream: api, kind: api, access: required }}
  - {{ name: feed, path_prefix: /api/feed, upstream: api, kind: api, access: optional }}
  - {{ name: public, path_prefix: /, upstream: api, kind: api }}
",
        idp.issuer, api.addr
    ))
}

async fn call(gw: &Gateway, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    Client::plain(gw.addr("http"))
        .send(request(
            "GET",
            "api.shop.test",
            path,
            &headers,
            Bytes::new(),
        ))
        .await
        .unwrap()
}

/// Verifies the assertion the backend got against the gateway's published JWKS.
async fn verify_assertion(gw: &Gateway, assertion: &str, upstream: &str) -> serde_json::Value {
    let jwks = Client::plain(gw.addr("http"))
        .get("api.shop.test", "/.well-known/omnigate/jwks.json")
        .await;
    assert_eq!(jwks.status, 200);
    let set: JwkSet = serde_json::from_slice(&jwks.body).unwrap();
    let kid = jsonwebtoken::decode_header(assertion).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).expect("kid published")).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[upstream]);
    v.set_issuer(&["omnigate"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v)
        .unwrap()
        .claims;
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 60, "assertion lives {lifetime}s");
    claims
}

async fn bearer_channel(postgres: bool) {
    let idp = Idp::start().await;
    let api = Upstream::echo("api").await;
    let gw = Gateway::start(&config(&idp, &api, postgres), &[]).await;

    // No token on a required route: 401 with a Bearer challenge, as problem JSON.
    let r = call(&gw, "/api/me", None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"omnigate\"")
    );
    assert_eq!(r.json()["type"], "urn:omnigate:problem:unauthenticated");

    // A real access token from the provider's token endpoint.
    let service_token = idp.client_credentials("orders:read").await;
    let r = call(
        &gw,
        "/api/orders/7",
        Some(&service_token),
        &[("x-customer-id", "cus_spoofed")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json()["headers"].clone();
    let customer = h["x-customer-id"].as_str().unwrap().to_string();
    assert!(
        customer.starts_with("cus_") && customer != "cus_spoofed",
        "{customer}"
    );
    assert_eq!(h["x-auth-method"], "bearer");
    let claims = verify_assertion(&gw, h["x-omnigate-assertion"].as_str().unwrap(), "api").await;
    assert_eq!(claims["sub"], customer.as_str());

    // Two different tokens for the same user: the same customer id, with profile.
    let t1 = idp
        .sign(idp.user_claims("alice", "orders:read", 300), "RS256")
        .await;
    let t2 = idp.sign(idp.user_claims("alice", "", 600), "ES256").await;
    let a1 = call(&gw, "/api/me", Some(&t1), &[]).await.json()["headers"].clone();
    let a2 = call(&gw, "/api/me", Some(&t2), &[]).await.json()["headers"].clone();
    assert_eq!(a1["x-customer-id"], a2["x-customer-id"]);
    assert_ne!(a1["x-customer-id"].as_str().unwrap(), customer);
    assert_eq!(a1["x-customer-email"], "alice@example.test");
    assert_eq!(a1["x-customer-name"], "Test alice");

    // Missing scope: 403 naming it.
    let r = call(&gw, "/api/orders", Some(&t2), &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"omnigate\", error=\"insufficient_scope\", scope=\"orders:read\"")
    );

    // Optional route: anonymous without a token, identified with one.
    let anon = call(&gw, "/api/feed", None, &[]).await.json()["headers"].clone();
    assert!(anon.get("x-customer-id").is_none());
    let known = call(&gw, "/api/feed", Some(&t1), &[]).await.json()["headers"].clone();
    assert_eq!(known["x-customer-id"], a1["x-customer-id"]);
    // Public route: the token is not looked at, no identity is injected.
    let public = call(&gw, "/catalog", Some(&t1), &[]).await.json()["headers"].clone();
    assert!(public.get("x-customer-id").is_none());

    // Attacks: each refused with 401 invalid_token.
    let mut expired = idp.user_claims("alice", "orders:read", 300);
    expired["exp"] = (expired["iat"].as_i64().unwrap() - 120).into();
    let mut wrong_aud = idp.user_claims("alice", "orders:read", 300);
    wrong_aud["aud"] = "https://other.api.test".into();
    let mut wrong_iss = idp.user_claims("alice", "orders:read", 300);
    wrong_iss["iss"] = "https://evil.test".into();
    let parts: Vec<&str> = t1.split('.').collect();
    let forged_payload = base64_url(&idp.user_claims("mallory", "orders:read", 300).to_string());
    let cases = vec![
        ("expired", idp.sign(expired, "RS256").await),
        ("wrong audience", idp.sign(wrong_aud, "RS256").await),
        ("wrong issuer", idp.sign(wrong_iss, "RS256").await),
        (
            "alg none",
            format!(
                "{}.{}.",
                base64_url(r#"{"alg":"none","typ":"JWT"}"#),
                parts[1]
            ),
        ),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
        ),
        (
            "HS256 with a public key",
            hs256_with_public_key(&idp, &gw, parts[1]).await,
        ),
        ("unknown kid", with_kid(&t1, "no-such-key")),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, token) in cases {
        let r = call(&gw, "/api/me", Some(&token), &[]).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{what}: {:?}",
            r.header("www-authenticate")
        );
        assert_eq!(
            r.json()["type"],
            "urn:omnigate:problem:invalid-token",
            "{what}"
        );
    }

    // Key rotation at the provider: a token with the new kid is accepted
    // without restarting the gateway.
    let idp = idp.rotate().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // past jwks_min_refresh
    let rotated = idp
        .sign(idp.user_claims("alice", "orders:read", 300), "RS256")
        .await;
    assert_ne!(
        jsonwebtoken::decode_header(&rotated).unwrap().kid,
        jsonwebtoken::decode_header(&t1).unwrap().kid
    );
    let r = call(&gw, "/api/orders", Some(&rotated), &[]).await;
    assert_eq!(r.status, 200, "rotated key refused: {}", r.text());
    assert_eq!(r.json()["headers"]["x-customer-id"], a1["x-customer-id"]);

    // Verified tokens are cached: repeated calls do no signature work.
    for _ in 0..5 {
        assert_eq!(
            call(&gw, "/api/orders", Some(&rotated), &[]).await.status,
            200
        );
    }
    assert!(
        gw.metric("omnigate_token_cache_total{result=\"hit\"}")
            .await
            .unwrap_or(0.0)
            >= 5.0
    );
    assert!(
        gw.metric("omnigate_auth_decisions_total{result=\"insufficient_scope\",route=\"orders\"}")
            .await
            == Some(1.0)
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn with_kid(token: &str, kid: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let header = format!(r#"{{"alg":"RS256","kid":"{kid}","typ":"JWT"}}"#);
    format!("{}.{}.{}", base64_url(&header), parts[1], parts[2])
}

/// The classic confusion attack: HS256 keyed with the provider's public RSA key.
async fn hs256_with_public_key(idp: &Idp, _gw: &Gateway, _payload: &str) -> String {
    let jwks: serde_json::Value = Client::plain(format!("127.0.0.1:{}", idp.port).parse().unwrap())
        .get(&format!("127.0.0.1:{}", idp.port), "/jwks")
        .await
        .json();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = rsa["kid"].as_str().map(str::to_string);
    let secret = rsa.to_string();
    jsonwebtoken::encode(
        &h,
        &idp.user_claims("mallory", "orders:read", 300),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn bearer_channel_on_embedded_store() {
    bearer_channel(false).await;
}

#[tokio::test]
async fn bearer_channel_on_postgres() {
    bearer_channel(true).await;
}

#[tokio::test]
async fn identity_routes_without_a_bearer_provider_are_a_config_error() {
    let api = Upstream::echo("api").await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n  api: {{ addresses: [\"{}\"] }}\nroutes:\n  - {{ name: me, path_prefix: /, upstream: api, access: required }}\n",
        api.addr
    ));
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg
        .replace("{dir}", &dir.path().display().to_string())
        .replace("{http}", "18080")
        .replace("{admin}", "18090");
    std::fs::write(dir.path().join("config.yaml"), cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_omnigate"))
        .args(["check", "--config"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[0].access: no provider accepts bearer tokens"),
        "{err}"
    );
}

/// A flood of tokens naming unknown keys costs the provider at most one key
/// fetch per `jwks_min_refresh` (10 s by default), and every one is refused.
#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_provider_keys_at_most_once() {
    let idp = Idp::start().await;
    let api = Upstream::echo("api").await;
    let gw = Gateway::start(&bearer_me_config(&idp, &api, ""), &[]).await;
    let c = Client::plain(gw.addr("http"));
    assert_eq!(
        get_me(&c, &idp, "ann").await.status,
        200,
        "keys fetched once"
    );
    let series = "omnigate_jwks_fetches_total{provider=\"idp\",result=\"success\"}";
    let before = gw.metric(series).await.unwrap_or(0.0);
    let good = idp.sign(idp.user_claims("ann", "", 300), "RS256").await;
    for i in 0..40 {
        let forged = with_kid(&good, &format!("unknown-{i}"));
        let auth = format!("Bearer {forged}");
        let r = c
            .send(request(
                "GET",
                "api.test",
                "/api/me",
                &[("authorization", &auth)],
                bytes::Bytes::new(),
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let after = gw.metric(series).await.unwrap_or(0.0);
    assert!(
        after - before <= 1.0,
        "{} key fetches for 40 unknown kids",
        after - before
    );
}
