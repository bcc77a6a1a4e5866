use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};

use super::*;
use crate::identity::assertion::ec_p256_jwk;

struct Issuer {
    pem: String,
    keys: JwkSet,
}

fn issuer(kid: &str) -> Issuer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut jwk = ec_p256_jwk(kp.public_key_raw()).unwrap();
    jwk["kid"] = kid.into();
    jwk["alg"] = "ES256".into();
    let keys: JwkSet = serde_json::from_value(serde_json::json!({ "keys": [jwk] })).unwrap();
    Issuer {
        pem: kp.serialize_pem(),
        keys,
    }
}

fn policy() -> BearerPolicy {
    BearerPolicy {
        issuer: "https://idp.test".into(),
        audiences: vec!["api".into()],
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway: 5,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": "https://idp.test", "aud": "api", "sub": "user-1",
        "exp": now() + 300, "iat": now(), "scope": "orders:read profile",
        "email": "u@example.test", "email_verified": true,
    })
}

fn sign(i: &Issuer, kid: &str, c: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, c, &EncodingKey::from_ec_pem(i.pem.as_bytes()).unwrap()).unwrap()
}

#[test]
fn a_good_token_yields_subject_scopes_and_profile() {
    let i = issuer("k1");
    let v = validate(&sign(&i, "k1", &claims()), &i.keys, &policy()).unwrap();
    assert_eq!(v.subject, "user-1");
    assert_eq!(v.issuer, "https://idp.test");
    assert!(v.scopes.contains("orders:read") && v.scopes.contains("profile"));
    assert_eq!(v.email.as_deref(), Some("u@example.test"));
    assert!(v.email_verified);
}

#[test]
fn claim_checks() {
    let i = issuer("k1");
    let p = policy();
    let mut c = claims();
    c["exp"] = (now() - 60).into();
    assert_eq!(
        validate(&sign(&i, "k1", &c), &i.keys, &p),
        Err(TokenError::Expired)
    );
    let mut c = claims();
    c["nbf"] = (now() + 600).into();
    assert_eq!(
        validate(&sign(&i, "k1", &c), &i.keys, &p),
        Err(TokenError::NotYetValid)
    );
    let mut c = claims();
    c["aud"] = "other".into();
    assert_eq!(
        validate(&sign(&i, "k1", &c), &i.keys, &p),
        Err(TokenError::Audience)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        validate(&sign(&i, "k1", &c), &i.keys, &p),
        Err(TokenError::Audience)
    );
    let mut c = claims();
    c["iss"] = "https://evil.test".into();
    assert_eq!(
        validate(&sign(&i, "k1", &c), &i.keys, &p),
        Err(TokenError::Issuer)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        validate(&sign(&i, "k1", &c), &i.keys, &p),
        Err(TokenError::NoSubject)
    );
}

#[test]
fn unknown_kid_and_foreign_key_are_refused() {
    let i = issuer("k1");
    let other = issuer("k1");
    // Signed by another key under the same kid: signature fails.
    assert_eq!(
        validate(&sign(&other, "k1", &claims()), &i.keys, &policy()),
        Err(TokenError::Signature)
    );
    assert_eq!(
        validate(&sign(&i, "k2", &claims()), &i.keys, &policy()),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(
        key_id(&sign(&i, "k2", &claims())).unwrap().as_deref(),
        Some("k2")
    );
}

#[test]
fn alg_none_hs256_confusion_and_tampering_are_refused() {
    let i = issuer("k1");
    let p = policy();
    let body = B64.encode(claims().to_string());
    // alg: none
    let none = format!("{}.{}.", B64.encode(r#"{"alg":"none","kid":"k1"}"#), body);
    assert!(matches!(
        validate(&none, &i.keys, &p),
        Err(TokenError::Malformed | TokenError::Algorithm)
    ));
    // HS256 keyed with the issuer's public key
    let public = serde_json::to_vec(&i.keys.keys[0]).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let hs =
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(&public).unwrap()).unwrap();
    assert_eq!(validate(&hs, &i.keys, &p), Err(TokenError::Algorithm));
    // Even if an operator listed HS256, a key of another type cannot verify it.
    let mut lax = p.clone();
    lax.algorithms.push(Algorithm::HS256);
    assert_eq!(validate(&hs, &i.keys, &lax), Err(TokenError::Algorithm));
    // Payload changed after signing.
    let good = sign(&i, "k1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims();
    forged["sub"] = "admin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(forged.to_string()),
        parts[2]
    );
    assert_eq!(validate(&tampered, &i.keys, &p), Err(TokenError::Signature));
    assert_eq!(validate("garbage", &i.keys, &p), Err(TokenError::Malformed));
}

#[test]
fn symmetric_algorithms_are_not_configurable() {
    assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
    assert_eq!(parse_algorithm("HS256"), None);
    assert_eq!(parse_algorithm("none"), None);
}
