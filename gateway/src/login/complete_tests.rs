//! `login::complete` against an in-process provider that hands back ID
//! tokens a test crafts: each check at the callback (signature, alg against
//! the key type, iss, aud, exp, iat, nonce) refuses what it must, and a
//! provider that is down or says no is told apart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::*;
use crate::auth::jwks::ProviderKeys;
use crate::auth::token::Verified;
use crate::config::model::{Login, Provider};
use crate::httpd::respond;

struct Fake {
    issuer: String,
    pem: String,
    /// What the token endpoint answers next: (status, id_token).
    next: Arc<Mutex<(u16, String)>>,
    keys: Arc<ProviderKeys>,
}

async fn fake_provider() -> Fake {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut jwk = crate::identity::assertion::ec_p256_jwk(kp.public_key_raw()).unwrap();
    jwk["kid"] = "k1".into();
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let discovery = serde_json::json!({
        "issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
    })
    .to_string();
    let next = Arc::new(Mutex::new((200, String::new())));
    let answer = next.clone();
    crate::httpd::serve(format!("127.0.0.1:{port}").parse().unwrap(), move |req, _| {
        let (discovery, jwks, answer) = (discovery.clone(), jwks.clone(), answer.clone());
        async move {
            match req.uri().path() {
                "/.well-known/openid-configuration" => respond(200, "application/json", discovery),
                "/jwks" => respond(200, "application/json", jwks),
                "/token" => {
                    let (status, token) = answer.lock().unwrap().clone();
                    let body = serde_json::json!({ "id_token": token, "access_token": "at", "token_type": "Bearer" });
                    respond(status, "application/json", body.to_string())
                }
                _ => respond(404, "text/plain", "no"),
            }
        }
    })
    .await
    .unwrap();
    let config = Provider {
        name: "fake".into(),
        issuer: issuer.clone(),
        discovery_url: None,
        jwks_uri: None,
        jwks_min_refresh: Duration::from_secs(10),
        bearer: None,
        login: Some(login()),
    };
    let http = crate::auth::jwks::HttpClient::new(Duration::from_secs(2)).unwrap();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let keys = Arc::new(ProviderKeys::new(
        config,
        http,
        Duration::from_secs(10),
        metrics,
    ));
    Fake {
        issuer,
        pem: kp.serialize_pem(),
        next,
        keys,
    }
}

fn login() -> Login {
    Login {
        client_id: "web".into(),
        client_secret: "secret".into(),
        scopes: vec!["openid".into()],
        display_name: "Fake".into(),
        pkce: true,
        ..Login::default()
    }
}

fn pending() -> Pending {
    Pending {
        provider: "fake".into(),
        nonce: "the-nonce".into(),
        verifier: "v".into(),
        return_to: "/".into(),
        intent: Intent::SignIn,
    }
}

fn now() -> i64 {
    crate::session::unix_now()
}

impl Fake {
    fn claims(&self) -> serde_json::Value {
        serde_json::json!({
            "iss": self.issuer, "aud": "web", "sub": "s-1", "nonce": "the-nonce",
            "iat": now(), "exp": now() + 300, "email": "e@example.test", "name": "E",
        })
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(
            &h,
            claims,
            &EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    async fn complete_with(&self, status: u16, token: String) -> Result<Verified, LoginError> {
        *self.next.lock().unwrap() = (status, token);
        complete(
            &self.keys,
            &login(),
            &Callback {
                code: "code".into(),
                user: None,
            },
            "https://shop.test/_auth/callback/fake",
            &pending(),
        )
        .await
    }
}

#[tokio::test]
async fn every_check_at_the_callback_refuses_what_it_must() {
    let f = fake_provider().await;
    let good = f.complete_with(200, f.sign(&f.claims())).await.unwrap();
    assert_eq!(good.subject, "s-1");

    let with = |k: &str, v: serde_json::Value| {
        let mut c = f.claims();
        c[k] = v;
        c
    };
    let mut no_iat = f.claims();
    no_iat.as_object_mut().unwrap().remove("iat");
    for (why, claims) in [
        ("another nonce", with("nonce", "replayed".into())),
        ("no nonce", with("nonce", serde_json::Value::Null)),
        ("another audience", with("aud", "someone-else".into())),
        ("another issuer", with("iss", "https://evil.test".into())),
        ("expired", with("exp", (now() - 120).into())),
        ("no iat", no_iat),
    ] {
        let r = f.complete_with(200, f.sign(&claims)).await;
        assert!(matches!(r, Err(LoginError::Invalid(_))), "{why}: {r:?}");
    }
    // The header's algorithm must fit the key: an EC signature sold as RS256
    // or HS256, or no signature at all, is refused.
    let token = f.sign(&f.claims());
    let (_, rest) = token.split_once('.').unwrap();
    for alg in ["RS256", "HS256", "none"] {
        let header = B64.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
        let forged = format!("{header}.{rest}");
        let r = f.complete_with(200, forged).await;
        assert!(matches!(r, Err(LoginError::Invalid(_))), "{alg}: {r:?}");
    }
    // A signature by another key with the same kid.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    let stolen_kid = jsonwebtoken::encode(
        &h,
        &f.claims(),
        &EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        f.complete_with(200, stolen_kid).await,
        Err(LoginError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_provider_that_says_no_is_told_from_one_that_is_down() {
    let f = fake_provider().await;
    let token = f.sign(&f.claims());
    assert!(matches!(
        f.complete_with(400, token.clone()).await,
        Err(LoginError::Refused(_))
    ));
    assert!(matches!(
        f.complete_with(503, token).await,
        Err(LoginError::ProviderDown(_))
    ));
}
