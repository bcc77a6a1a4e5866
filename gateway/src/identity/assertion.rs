//! The signed identity assertion: a short-lived ES256 JWT per upstream, and
//! the gateway's public key set that backends verify it with. The keys come
//! from the customer directory, rotated on a schedule (`rotation`), or from
//! one configured PEM file; a private key is never logged or served.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Why the signing key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot read signing key {0}: {1}")]
    Read(String, String),
    #[error("signing key {0} is not a P-256 (ES256) private key in PKCS#8 PEM")]
    Type(String),
    #[error("cannot write signing key {0}: {1}")]
    Write(String, String),
    #[error("not a P-256 (ES256) private key in PKCS#8 PEM")]
    NotP256,
}

/// The claims of one assertion.
#[derive(Debug, Clone, Serialize)]
pub struct AssertionClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub iat: u64,
    pub exp: u64,
    pub auth_method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Granted purposes as `id=version,…` (the `X-Customer-Consents` value).
    pub consents: &'a str,
}

/// One ES256 key: its id, the private half and the public JWK.
struct Key {
    kid: String,
    key: EncodingKey,
    jwk: serde_json::Value,
}

impl Key {
    fn from_pem(pem: &str) -> Result<Key, KeyError> {
        let kp = rcgen::KeyPair::from_pem(pem).map_err(|_| KeyError::NotP256)?;
        if kp.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(KeyError::NotP256);
        }
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| KeyError::NotP256)?;
        let mut jwk = ec_p256_jwk(kp.public_key_raw()).ok_or(KeyError::NotP256)?;
        let kid = thumbprint(&jwk);
        jwk["kid"] = kid.clone().into();
        jwk["use"] = "sig".into();
        jwk["alg"] = "ES256".into();
        Ok(Key { kid, key, jwk })
    }
}

/// The key that signs and the set that is published, swapped as one.
struct Ring {
    active: Key,
    jwks: serde_json::Value,
}

/// Signs assertions and publishes the matching JWKS.
pub struct Signer {
    ring: arc_swap::ArcSwap<Ring>,
    pub issuer: String,
    pub ttl: Duration,
}

/// A new P-256 private key in PKCS#8 PEM.
pub fn new_key_pem() -> Result<String, KeyError> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| KeyError::Write("(new key)".into(), e.to_string()))?;
    Ok(kp.serialize_pem())
}

/// The key id (RFC 7638 thumbprint) of a PEM private key.
pub fn kid_of(pem: &str) -> Result<String, KeyError> {
    Key::from_pem(pem).map(|k| k.kid)
}

impl Signer {
    /// Reads the key at `path`, creating it first if `create` and it is missing.
    pub fn load(
        path: &Path,
        create: bool,
        issuer: &str,
        ttl: Duration,
    ) -> Result<Signer, KeyError> {
        let shown = path.display().to_string();
        if create && !path.exists() {
            let pem = new_key_pem()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| KeyError::Write(shown.clone(), e.to_string()))?;
            }
            crate::edge::tls::write_private(path, pem.as_bytes())
                .map_err(|e| KeyError::Write(shown.clone(), e.to_string()))?;
        }
        let pem = std::fs::read_to_string(path)
            .map_err(|e| KeyError::Read(shown.clone(), e.to_string()))?;
        Signer::from_pem(&pem, issuer, ttl).map_err(|_| KeyError::Type(shown))
    }

    /// A signer from a PKCS#8 PEM P-256 private key.
    pub fn from_pem(pem: &str, issuer: &str, ttl: Duration) -> Result<Signer, KeyError> {
        Signer::from_ring(pem, &[pem], issuer, ttl)
    }

    /// Signs with `active`, publishes `published` (which should hold it).
    pub fn from_ring(
        active: &str,
        published: &[&str],
        issuer: &str,
        ttl: Duration,
    ) -> Result<Signer, KeyError> {
        Ok(Signer {
            ring: arc_swap::ArcSwap::from_pointee(ring(active, published)?),
            issuer: issuer.to_string(),
            ttl,
        })
    }

    /// Swaps in a new signing key and published set (a rotation step).
    pub fn rotate(&self, active: &str, published: &[&str]) -> Result<(), KeyError> {
        self.ring
            .store(std::sync::Arc::new(ring(active, published)?));
        Ok(())
    }

    /// The id of the key that signs now.
    pub fn kid(&self) -> String {
        self.ring.load().active.kid.clone()
    }

    /// `{"keys": [...]}` for `/.well-known/omnigate/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        self.ring.load().jwks.clone()
    }

    /// Signs claims with the current key (ES256, `kid` set).
    pub fn sign(&self, claims: &AssertionClaims<'_>) -> Option<String> {
        let ring = self.ring.load();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(ring.active.kid.clone());
        h.typ = Some("JWT".into());
        jsonwebtoken::encode(&h, claims, &ring.active.key).ok()
    }

    /// Signs any claims with the current key as a compact JWS of type `typ`
    /// (the erasure report), verifiable with the published keys.
    pub fn sign_document(&self, claims: &serde_json::Value, typ: &str) -> Option<String> {
        let ring = self.ring.load();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(ring.active.kid.clone());
        h.typ = Some(typ.into());
        jsonwebtoken::encode(&h, claims, &ring.active.key).ok()
    }

    /// `iat` and `exp` for an assertion issued now.
    pub fn window(&self) -> (u64, u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (now, now + self.ttl.as_secs())
    }
}

fn ring(active: &str, published: &[&str]) -> Result<Ring, KeyError> {
    let active = Key::from_pem(active)?;
    let mut keys: Vec<serde_json::Value> = Vec::with_capacity(published.len() + 1);
    for pem in published {
        let k = Key::from_pem(pem)?;
        if !keys.iter().any(|j| j["kid"] == k.jwk["kid"]) {
            keys.push(k.jwk);
        }
    }
    if !keys.iter().any(|j| j["kid"] == active.jwk["kid"]) {
        keys.push(active.jwk.clone());
    }
    Ok(Ring {
        active,
        jwks: serde_json::json!({ "keys": keys }),
    })
}

/// The public JWK of a P-256 key from its uncompressed point (0x04 ‖ X ‖ Y).
pub fn ec_p256_jwk(point: &[u8]) -> Option<serde_json::Value> {
    if point.len() != 65 || point[0] != 4 {
        return None;
    }
    Some(serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": B64.encode(&point[1..33]),
        "y": B64.encode(&point[33..65]),
    }))
}

/// RFC 7638 JWK thumbprint of an EC key: base64url(SHA-256(canonical JSON)).
fn thumbprint(jwk: &serde_json::Value) -> String {
    let canonical = format!(
        r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["crv"].as_str().unwrap_or(""),
        jwk["x"].as_str().unwrap_or(""),
        jwk["y"].as_str().unwrap_or("")
    );
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertions_verify_against_the_published_jwks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let s = Signer::load(&path, true, "omnigate", Duration::from_secs(60)).unwrap();
        // Same key after a restart.
        let again = Signer::load(&path, false, "omnigate", Duration::from_secs(60)).unwrap();
        assert_eq!(s.kid(), again.kid());
        let (iat, exp) = s.window();
        let token = s
            .sign(&AssertionClaims {
                iss: "omnigate",
                sub: "cust_1",
                aud: "store",
                iat,
                exp,
                auth_method: "bearer",
                email: Some("a@example.test"),
                name: None,
                consents: "marketing_email=1",
            })
            .unwrap();
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks()).unwrap();
        let jwk = set.find(&s.kid()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&["store"]);
        v.set_issuer(&["omnigate"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "cust_1");
        assert_eq!(
            data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap(),
            60
        );
    }

    #[test]
    fn a_rotation_signs_with_the_next_key_and_keeps_the_old_one_published() {
        let (a, b) = (new_key_pem().unwrap(), new_key_pem().unwrap());
        let s = Signer::from_ring(&a, &[&a, &b], "omnigate", Duration::from_secs(60)).unwrap();
        let (ka, kb) = (kid_of(&a).unwrap(), kid_of(&b).unwrap());
        assert_eq!(s.kid(), ka);
        let kids = |s: &Signer| -> Vec<String> {
            s.jwks()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            kids(&s),
            vec![ka.clone(), kb.clone()],
            "the next key is published before use"
        );
        s.rotate(&b, &[&a, &b]).unwrap();
        assert_eq!(s.kid(), kb);
        s.rotate(&b, &[&b]).unwrap();
        assert_eq!(kids(&s), vec![kb.clone()]);
        // The signing key is always published, even if the caller forgot it.
        s.rotate(&a, &[&b]).unwrap();
        assert!(kids(&s).contains(&ka));
        assert!(s.rotate("garbage", &[&a]).is_err());
        assert_eq!(s.kid(), ka, "a bad key leaves the ring as it was");
    }

    #[test]
    fn rsa_or_garbage_keys_are_refused() {
        assert!(Signer::from_pem("not a key", "i", Duration::from_secs(1)).is_err());
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(Signer::from_pem(&ed.serialize_pem(), "i", Duration::from_secs(1)).is_err());
    }
}
