//! How the gateway authenticates itself at a provider's token endpoint:
//! HTTP Basic, the secret in the form, a signed client assertion
//! (`private_key_jwt`, RFC 7523), or Sign in with Apple's client secret (a
//! JWT the gateway signs with the team key and renews itself). Choosing the
//! method and building the claims are pure; signing takes the key.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Client authentication at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_secret_basic`: id and secret in `Authorization: Basic`.
    Basic,
    /// `client_secret_post`: id and secret in the form.
    Post,
    /// `private_key_jwt`: a short-lived JWT signed with the client's key.
    PrivateKeyJwt,
}

impl TokenAuth {
    pub fn parse(s: &str) -> Option<TokenAuth> {
        match s {
            "client_secret_basic" => Some(TokenAuth::Basic),
            "client_secret_post" => Some(TokenAuth::Post),
            "private_key_jwt" => Some(TokenAuth::PrivateKeyJwt),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenAuth::Basic => "client_secret_basic",
            TokenAuth::Post => "client_secret_post",
            TokenAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// A private key the gateway signs with (PEM, PKCS#8 or SEC1 for EC).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub pem: String,
    pub key_id: Option<String>,
    pub alg: KeyAlg,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself, even in a debug print.
        f.debug_struct("ClientKey")
            .field("key_id", &self.key_id)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The signature algorithm a key's type gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    Es256,
    Rs256,
}

impl ClientKey {
    /// Reads a PEM key: P-256 signs ES256, RSA signs RS256.
    /// Checked by signing once, so a key of another curve is refused here
    /// and not at a customer's sign-in.
    pub fn from_pem(pem: &str, key_id: Option<String>) -> Result<ClientKey, String> {
        [KeyAlg::Es256, KeyAlg::Rs256]
            .into_iter()
            .map(|alg| ClientKey {
                pem: pem.to_string(),
                key_id: key_id.clone(),
                alg,
            })
            .find(|k| k.sign(&serde_json::json!({})).is_ok())
            .ok_or_else(|| "not a PEM P-256 (EC) or RSA private key".into())
    }

    /// Signs `claims` as a JWT with this key (`kid` when known).
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        let (alg, key) = match self.alg {
            KeyAlg::Es256 => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(self.pem.as_bytes()),
            ),
            KeyAlg::Rs256 => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(self.pem.as_bytes()),
            ),
        };
        let key = key.map_err(|e| format!("client key: {e}"))?;
        let mut header = Header::new(alg);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| format!("signing: {e}"))
    }
}

/// Sign in with Apple's client secret settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppleSecret {
    pub team_id: String,
    /// The team key, with its key id (the `kid` Apple expects).
    pub key: ClientKey,
    /// Lifetime of each made secret (Apple allows up to six months).
    pub ttl_secs: u64,
}

/// The method to use: the configured one, else the best the provider's
/// discovery lists that the gateway has credentials for (RFC 8414: an absent
/// list means `client_secret_basic`). Pure.
pub fn choose(
    configured: Option<TokenAuth>,
    supported: Option<&[String]>,
    has_secret: bool,
    has_key: bool,
) -> Result<TokenAuth, String> {
    if let Some(c) = configured {
        return Ok(c);
    }
    let listed = |m: TokenAuth| match supported {
        Some(list) => list.iter().any(|s| s == m.as_str()),
        None => m == TokenAuth::Basic,
    };
    let preference = [
        (TokenAuth::PrivateKeyJwt, has_key),
        (TokenAuth::Basic, has_secret),
        (TokenAuth::Post, has_secret),
    ];
    preference
        .iter()
        .find(|(m, have)| *have && listed(*m))
        .map(|(m, _)| *m)
        .ok_or_else(|| {
            format!(
                "the provider accepts none of the client authentication methods the gateway has credentials for (it lists {})",
                supported.map_or_else(|| "none".to_string(), |l| l.join(", "))
            )
        })
}

/// The claims of a `private_key_jwt` client assertion (RFC 7523 3): the
/// client as issuer and subject, the token endpoint as audience, one use.
pub fn assertion_claims(client_id: &str, audience: &str, now: u64, jti: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti,
        "iat": now,
        "exp": now + 60,
    })
}

/// The claims of a Sign in with Apple client secret: the team as issuer,
/// the service id as subject, Apple (the issuer) as audience.
pub fn apple_claims(
    apple: &AppleSecret,
    client_id: &str,
    audience: &str,
    now: u64,
) -> serde_json::Value {
    serde_json::json!({
        "iss": apple.team_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + apple.ttl_secs,
    })
}

/// Whether a made secret valid until `expires` is still good to send at
/// `now`: renewed once half its life is gone, so it never expires in flight.
pub fn still_fresh(expires: u64, ttl_secs: u64, now: u64) -> bool {
    now + ttl_secs / 2 < expires
}

/// The `Authorization` header and form fields that authenticate the client.
pub fn credentials(
    method: TokenAuth,
    client_id: &str,
    secret: &str,
    assertion: Option<String>,
) -> (Option<String>, Vec<(&'static str, String)>) {
    match method {
        TokenAuth::Basic => (Some(basic(client_id, secret)), Vec::new()),
        TokenAuth::Post => (
            None,
            vec![
                ("client_id", client_id.to_string()),
                ("client_secret", secret.to_string()),
            ],
        ),
        TokenAuth::PrivateKeyJwt => (
            None,
            vec![
                ("client_id", client_id.to_string()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                ),
                ("client_assertion", assertion.unwrap_or_default()),
            ],
        ),
    }
}

/// HTTP Basic client credentials; RFC 6749 2.3.1 form-encodes both first.
pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let cred =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
    format!("Basic {cred}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_configured_method_wins() {
        let l = list(&["client_secret_basic"]);
        assert_eq!(
            choose(Some(TokenAuth::Post), Some(&l), true, false),
            Ok(TokenAuth::Post)
        );
    }

    #[test]
    fn the_default_follows_what_discovery_lists() {
        let all = list(&[
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ]);
        assert_eq!(choose(None, Some(&all), true, false), Ok(TokenAuth::Basic));
        assert_eq!(
            choose(None, Some(&all), true, true),
            Ok(TokenAuth::PrivateKeyJwt)
        );
        let post = list(&["client_secret_post"]);
        assert_eq!(choose(None, Some(&post), true, true), Ok(TokenAuth::Post));
        assert_eq!(choose(None, None, true, false), Ok(TokenAuth::Basic));
        let jwt = list(&["private_key_jwt"]);
        assert!(choose(None, Some(&jwt), true, false)
            .unwrap_err()
            .contains("private_key_jwt"));
        assert!(choose(None, None, false, true).is_err());
    }

    #[test]
    fn credentials_per_method() {
        // Form-encoded first (RFC 6749 2.3.1): "a+b:s%3At".
        let (h, f) = credentials(TokenAuth::Basic, "a b", "s:t", None);
        assert_eq!(h.as_deref(), Some("Basic YStiOnMlM0F0"));
        assert!(f.is_empty());
        let (h, f) = credentials(TokenAuth::Post, "web", "sec", None);
        assert!(h.is_none());
        assert_eq!(f[1], ("client_secret", "sec".to_string()));
        let (_, f) = credentials(TokenAuth::PrivateKeyJwt, "web", "", Some("jwt".into()));
        assert!(f.iter().all(|(k, _)| *k != "client_secret"));
        assert_eq!(f[2], ("client_assertion", "jwt".to_string()));
    }

    #[test]
    fn keys_are_checked_by_signing_once() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let k = ClientKey::from_pem(&p256.serialize_pem(), Some("k1".into())).unwrap();
        assert_eq!(k.alg, KeyAlg::Es256);
        let jwt = k.sign(&serde_json::json!({"a": 1})).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (Algorithm::ES256, Some("k1"))
        );
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert!(ClientKey::from_pem(&p384.serialize_pem(), None).is_err());
        assert!(ClientKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None
        )
        .is_err());
    }

    #[test]
    fn made_secrets_are_renewed_at_half_life() {
        assert!(still_fresh(1000 + 3600, 3600, 1000));
        assert!(still_fresh(1000 + 3600, 3600, 2799));
        assert!(!still_fresh(1000 + 3600, 3600, 2800));
    }

    #[test]
    fn claims_name_client_and_audience() {
        let a = assertion_claims("web", "https://idp/token", 100, "j");
        assert_eq!(
            (a["iss"].as_str(), a["sub"].as_str()),
            (Some("web"), Some("web"))
        );
        assert_eq!(a["exp"], 160);
        let key = ClientKey {
            pem: String::new(),
            key_id: Some("K".into()),
            alg: KeyAlg::Es256,
        };
        let apple = AppleSecret {
            team_id: "TEAM".into(),
            key,
            ttl_secs: 3600,
        };
        let c = apple_claims(&apple, "com.shop", "https://appleid.apple.com", 10);
        assert_eq!(c["iss"], "TEAM");
        assert_eq!(c["sub"], "com.shop");
        assert_eq!(c["exp"], 3610);
        assert!(!format!("{:?}", apple.key).contains("pem"));
    }
}
