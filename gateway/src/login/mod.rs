//! Login with an existing identity: OpenID Connect relying party, authorization
//! code flow with PKCE (S256), `state` bound to the browser by a cookie, and
//! `nonce`. The ID token is verified like a bearer token (keys by `kid`, alg
//! allow-list bound to the key type, iss, aud = client_id, exp) plus the nonce.
//! Never puts a token or session id in a URL; every redirect is checked on
//! the URL the browser lands on (`destination`).

pub mod destination;
pub mod origin;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::jwks::ProviderKeys;
use crate::auth::token::{self, BearerPolicy, Verified};
use crate::config::model::Login;

/// A login started in this browser, waiting for the provider's callback.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    pub return_to: String,
    /// What the sign-in is for, beyond signing in.
    #[serde(default)]
    pub intent: Intent,
}

/// Why a provider sign-in was started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Intent {
    /// Sign in (or register on first sight).
    #[default]
    SignIn,
    /// A signed-in customer adds this provider to their account.
    Link { customer_id: String },
    /// Proves the account an email match pointed at, to link what waits.
    Prove,
}

/// Why a login did not complete; `Display` is shown to the customer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    #[error("The sign-in service could not be reached. Please try again in a moment.")]
    ProviderDown(String),
    #[error("The sign-in was cancelled or refused by the provider.")]
    Refused(String),
    #[error("This sign-in link has expired or was already used. Please start again.")]
    Expired,
    #[error("The sign-in response could not be verified. Please start again.")]
    Invalid(String),
}

impl LoginError {
    /// The catalogue key of the text shown to the customer (`pages::i18n`).
    pub fn text_key(&self) -> &'static str {
        match self {
            LoginError::ProviderDown(_) => "login.provider_down",
            LoginError::Refused(_) => "login.refused",
            LoginError::Expired => "login.expired",
            LoginError::Invalid(_) => "login.invalid",
        }
    }

    /// Detail for the log (never shown to the customer).
    pub fn detail(&self) -> &str {
        match self {
            LoginError::ProviderDown(d) | LoginError::Refused(d) | LoginError::Invalid(d) => d,
            LoginError::Expired => "unknown or reused state",
        }
    }
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// The provider's authorization URL for a new login.
pub fn authorize_url(
    endpoint: &str,
    login: &Login,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    challenge: &str,
) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &login.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &login.scopes.join(" "))
        .append_pair("state", state)
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{query}")
}

/// Algorithms accepted for ID tokens and logout tokens (asymmetric only).
const ID_TOKEN_ALGORITHMS: [jsonwebtoken::Algorithm; 4] = [
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::EdDSA,
];

#[derive(serde::Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct UserInfo {
    sub: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
}

/// Exchanges the code and verifies the ID token; fills profile gaps from userinfo.
pub async fn complete(
    provider: &Arc<ProviderKeys>,
    login: &Login,
    code: &str,
    redirect_uri: &str,
    pending: &Pending,
) -> Result<Verified, LoginError> {
    let d = provider
        .discovery()
        .await
        .map_err(LoginError::ProviderDown)?;
    let token_endpoint = d
        .token_endpoint
        .clone()
        .ok_or_else(|| LoginError::ProviderDown("no token_endpoint in discovery".into()))?;
    let tokens: TokenResponse = provider
        .http()
        .post_form(
            &token_endpoint,
            (&login.client_id, &login.client_secret),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &pending.verifier),
            ],
        )
        .await
        .map_err(|e| match e {
            // Unreachable or failing: not the customer's doing, never counted against them.
            crate::auth::jwks::FetchError::Unreachable(d) => LoginError::ProviderDown(d),
            other => LoginError::Refused(other.to_string()),
        })?;
    let id_token = tokens
        .id_token
        .ok_or_else(|| LoginError::Invalid("token response without id_token".into()))?;
    let policy = BearerPolicy {
        issuer: provider.config.issuer.clone(),
        audiences: vec![login.client_id.clone()],
        algorithms: ID_TOKEN_ALGORITHMS.to_vec(),
        leeway: 30,
    };
    let kid = token::key_id(&id_token).map_err(|e| LoginError::Invalid(e.to_string()))?;
    let keys = provider
        .keys_for(kid.as_deref())
        .await
        .map_err(LoginError::ProviderDown)?;
    let mut verified = token::validate(&id_token, &keys, &policy)
        .map_err(|e| LoginError::Invalid(e.to_string()))?;
    let nonce_ok = verified
        .nonce
        .as_deref()
        .is_some_and(|n| crate::session::same_token(n, &pending.nonce));
    if !nonce_ok {
        return Err(LoginError::Invalid("nonce mismatch".into()));
    }
    if verified.issued_at.is_none() {
        return Err(LoginError::Invalid("ID token without iat".into()));
    }
    if verified.email.is_none() || verified.name.is_none() {
        if let (Some(url), Some(at)) = (&d.userinfo_endpoint, &tokens.access_token) {
            if let Ok(info) = provider.http().get_json_bearer::<UserInfo>(url, at).await {
                // Userinfo must describe the same subject (OIDC Core 5.3.2).
                if info.sub.as_deref() == Some(verified.subject.as_str()) {
                    if verified.email.is_none() {
                        verified.email = info.email;
                        verified.email_verified = info.email_verified.unwrap_or(false);
                    }
                    verified.name = verified.name.or(info.name);
                }
            }
        }
    }
    Ok(verified)
}

#[cfg(test)]
mod complete_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorize_url_carries_pkce_state_and_nonce() {
        let login = Login {
            client_id: "web".into(),
            client_secret: "s".into(),
            scopes: vec!["openid".into(), "email".into()],
            display_name: "IdP".into(),
            logout_at_provider: false,
            trusted_email: false,
        };
        let u = authorize_url(
            "https://idp.test/auth",
            &login,
            "https://shop.test/_auth/callback/idp",
            "st",
            "no",
            "ch",
        );
        assert!(u.starts_with("https://idp.test/auth?response_type=code&client_id=web"));
        for part in [
            "scope=openid+email",
            "state=st",
            "nonce=no",
            "code_challenge=ch",
            "code_challenge_method=S256",
        ] {
            assert!(u.contains(part), "{u}");
        }
    }
}

/// The event a logout token must carry (OIDC Back-Channel Logout 1.0, 2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a logout token was refused (answered with 400 to the provider).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutTokenError {
    #[error("invalid logout token: {0}")]
    Token(token::TokenError),
    #[error("logout token lacks the back-channel logout event")]
    NoEvent,
    #[error("logout token carries a nonce")]
    Nonce,
    #[error("logout token has neither sub nor sid")]
    NoSubject,
    #[error("logout token lacks jti or iat")]
    Claims,
}

/// Verified claims of a logout token: whose sessions to end, and its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub issuer: String,
    pub subject: Option<String>,
    /// The provider session that ended (when the token names one).
    pub sid: Option<String>,
    pub jti: String,
}

/// Verifies a logout token's signature and claims. Pure.
pub fn verify_logout_token(
    raw: &str,
    keys: &jsonwebtoken::jwk::JwkSet,
    issuer: &str,
    client_id: &str,
) -> Result<LogoutRequest, LogoutTokenError> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
        sub: Option<String>,
        sid: Option<String>,
        jti: Option<String>,
        iat: Option<u64>,
        exp: Option<u64>,
        nonce: Option<String>,
        #[serde(default)]
        events: serde_json::Map<String, serde_json::Value>,
    }
    let policy = BearerPolicy {
        issuer: issuer.to_string(),
        audiences: vec![client_id.to_string()],
        algorithms: ID_TOKEN_ALGORITHMS.to_vec(),
        leeway: 30,
    };
    // `exp` is optional for logout tokens, so only signature, iss and aud are
    // checked by the library; the logout-specific claims are checked below.
    verify_signature_only(raw, keys, &policy).map_err(LogoutTokenError::Token)?;
    let payload = raw
        .split('.')
        .nth(1)
        .ok_or(LogoutTokenError::Token(token::TokenError::Malformed))?;
    let bytes = B64
        .decode(payload)
        .map_err(|_| LogoutTokenError::Token(token::TokenError::Malformed))?;
    let c: Claims = serde_json::from_slice(&bytes)
        .map_err(|_| LogoutTokenError::Token(token::TokenError::Malformed))?;
    if c.iss.trim_end_matches('/') != issuer {
        return Err(LogoutTokenError::Token(token::TokenError::Issuer));
    }
    if !c.events.contains_key(BACKCHANNEL_EVENT) {
        return Err(LogoutTokenError::NoEvent);
    }
    if c.nonce.is_some() {
        return Err(LogoutTokenError::Nonce);
    }
    if c.sub.is_none() && c.sid.is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    let (Some(jti), Some(_)) = (c.jti, c.iat) else {
        return Err(LogoutTokenError::Claims);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if c.exp.is_some_and(|exp| exp + 30 < now) {
        return Err(LogoutTokenError::Token(token::TokenError::Expired));
    }
    Ok(LogoutRequest {
        issuer: issuer.to_string(),
        subject: c.sub,
        sid: c.sid,
        jti,
    })
}

/// Checks only signature, `iss` and `aud` (for tokens without `exp`).
fn verify_signature_only(
    raw: &str,
    keys: &jsonwebtoken::jwk::JwkSet,
    policy: &BearerPolicy,
) -> Result<(), token::TokenError> {
    let header = jsonwebtoken::decode_header(raw).map_err(|_| token::TokenError::Malformed)?;
    if !policy.algorithms.contains(&header.alg) {
        return Err(token::TokenError::Algorithm);
    }
    let jwk = header
        .kid
        .as_deref()
        .and_then(|k| keys.find(k))
        .ok_or(token::TokenError::UnknownKey)?;
    let key =
        jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| token::TokenError::UnknownKey)?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.set_issuer(&[policy.issuer.as_str()]);
    v.set_audience(&policy.audiences);
    jsonwebtoken::decode::<serde_json::Value>(raw, &key, &v)
        .map(|_| ())
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => token::TokenError::Signature,
            jsonwebtoken::errors::ErrorKind::InvalidAudience => token::TokenError::Audience,
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => token::TokenError::Issuer,
            _ => token::TokenError::Malformed,
        })
}
