//! The signed identity assertion: a short-lived ES256 JWT per upstream, and
//! the gateway's public key set that backends verify it with. The private key
//! is created once in the state directory (mode 0600) or read from a
//! configured PEM file; it is never logged or served.

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

/// Signs assertions and publishes the matching JWKS.
pub struct Signer {
    kid: String,
    key: EncodingKey,
    jwk: serde_json::Value,
    pub issuer: String,
    pub ttl: Duration,
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
            let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| KeyError::Write(shown.clone(), e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| KeyError::Write(shown.clone(), e.to_string()))?;
            }
            crate::edge::tls::write_private(path, kp.serialize_pem().as_bytes())
                .map_err(|e| KeyError::Write(shown.clone(), e.to_string()))?;
        }
        let pem = std::fs::read_to_string(path)
            .map_err(|e| KeyError::Read(shown.clone(), e.to_string()))?;
        Signer::from_pem(&pem, issuer, ttl).map_err(|_| KeyError::Type(shown))
    }

    /// A signer from a PKCS#8 PEM P-256 private key.
    pub fn from_pem(pem: &str, issuer: &str, ttl: Duration) -> Result<Signer, KeyError> {
        let kp = rcgen::KeyPair::from_pem(pem).map_err(|_| KeyError::NotP256)?;
        if kp.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(KeyError::NotP256);
        }
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| KeyError::NotP256)?;
        let jwk = ec_p256_jwk(kp.public_key_raw()).ok_or(KeyError::NotP256)?;
        let kid = thumbprint(&jwk);
        let mut jwk = jwk;
        jwk["kid"] = kid.clone().into();
        jwk["use"] = "sig".into();
        jwk["alg"] = "ES256".into();
        Ok(Signer {
            kid,
            key,
            jwk,
            issuer: issuer.to_string(),
            ttl,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"keys": [...]}` for `/.well-known/omnigate/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    /// Signs claims with this key (ES256, `kid` set).
    pub fn sign(&self, claims: &AssertionClaims<'_>) -> Option<String> {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        h.typ = Some("JWT".into());
        jsonwebtoken::encode(&h, claims, &self.key).ok()
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
        let jwk = set.find(s.kid()).unwrap();
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
    fn rsa_or_garbage_keys_are_refused() {
        assert!(Signer::from_pem("not a key", "i", Duration::from_secs(1)).is_err());
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(Signer::from_pem(&ed.serialize_pem(), "i", Duration::from_secs(1)).is_err());
    }
}
