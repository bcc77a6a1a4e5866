//! Bearer JWT validation. Pure: takes the token, the issuer's current key set
//! and the policy, returns the verified claims or why not. Never trusts the
//! token's own header beyond choosing a key: the algorithm must be on the
//! allow-list *and* match the key's type, so `none`, HS256-with-a-public-key
//! and friends fail before any signature math.

use std::collections::HashSet;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// What a token must satisfy for one issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct BearerPolicy {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`, in seconds.
    pub leeway: u64,
}

/// Why a token was refused. The `Display` text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token names no key, or a key this issuer does not publish")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another audience")]
    Audience,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token has no subject")]
    NoSubject,
    #[error("the account is disabled")]
    Disabled,
}

/// The verified claims the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    pub expires_at: u64,
    pub scopes: HashSet<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// The `nonce` of an ID token.
    pub nonce: Option<String>,
    /// The provider's session id (`sid`) of an ID token.
    pub sid: Option<String>,
    pub issued_at: Option<u64>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
    #[serde(default)]
    email: Option<String>,
    /// A boolean, or the string `"true"` Sign in with Apple sends.
    #[serde(default, deserialize_with = "bool_or_text")]
    email_verified: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    iat: Option<u64>,
}

/// The `kid` of a token, to find (or fetch) the key before validating.
fn bool_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    Ok(match Option::<Flag>::deserialize(d)? {
        Some(Flag::Bool(b)) => Some(b),
        Some(Flag::Text(t)) => Some(t == "true"),
        None => None,
    })
}

pub fn key_id(token: &str) -> Result<Option<String>, TokenError> {
    jsonwebtoken::decode_header(token)
        .map(|h| h.kid)
        .map_err(|_| TokenError::Malformed)
}

/// Validates `token` against `keys` and `policy`.
pub fn validate(token: &str, keys: &JwkSet, policy: &BearerPolicy) -> Result<Verified, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !policy.algorithms.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        // Without a kid, only an issuer with exactly one key can be unambiguous.
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or(TokenError::UnknownKey)?;
    if !key_fits(&jwk.algorithm, header.alg) {
        return Err(TokenError::Algorithm);
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        if key_alg.to_string() != format!("{:?}", header.alg) {
            return Err(TokenError::Algorithm);
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)?;
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.leeway = policy.leeway;
    v.validate_nbf = true;
    v.set_issuer(&[policy.issuer.as_str()]);
    v.set_audience(&policy.audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => TokenError::Signature,
            K::ExpiredSignature => TokenError::Expired,
            K::ImmatureSignature => TokenError::NotYetValid,
            K::InvalidAudience => TokenError::Audience,
            K::InvalidIssuer => TokenError::Issuer,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::Algorithm,
            K::MissingRequiredClaim(c) if c == "aud" => TokenError::Audience,
            K::MissingRequiredClaim(c) if c == "iss" => TokenError::Issuer,
            _ => TokenError::Malformed,
        }
    })?;
    let c = data.claims;
    let subject = c
        .sub
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::NoSubject)?;
    let mut scopes: HashSet<String> = c
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    scopes.extend(c.scp.unwrap_or_default());
    Ok(Verified {
        issuer: c.iss,
        subject,
        expires_at: c.exp,
        scopes,
        email: c.email,
        email_verified: c.email_verified.unwrap_or(false),
        name: c.name,
        nonce: c.nonce,
        sid: c.sid,
        issued_at: c.iat,
    })
}

/// Whether a key of this type can verify `alg` at all.
fn key_fits(params: &AlgorithmParameters, alg: Algorithm) -> bool {
    use Algorithm::*;
    match params {
        AlgorithmParameters::RSA(_) => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, ES256 | ES384),
        AlgorithmParameters::OctetKeyPair(_) => matches!(alg, EdDSA),
        // Symmetric keys (and any future kind) never verify third-party tokens.
        _ => false,
    }
}

/// Algorithms an operator may allow for tokens from an external issuer.
/// Symmetric ones are excluded: the gateway holds no issuer's shared secret.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
