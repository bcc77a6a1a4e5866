//! Login with an existing identity: OpenID Connect relying party, authorization
//! code flow with PKCE (S256), `state` bound to the browser by a cookie, and
//! `nonce`. The ID token is verified like a bearer token (keys by `kid`, alg
//! allow-list bound to the key type, iss, aud = client_id, exp) plus the nonce.
//! Never puts a token or session id in a URL; every redirect is checked on
//! the URL the browser lands on (`destination`).

pub mod client;
pub mod destination;
mod exchange;
pub mod origin;
pub mod preset;
pub mod profile;
pub mod quirks;

pub use exchange::{complete, endpoints, Callback, Endpoints};
use preset::Protocol;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::token::{self, BearerPolicy};
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

/// What an authorization request carries for one login.
pub struct Authorize<'a> {
    pub endpoint: &'a str,
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub verifier: &'a str,
}

/// The provider's authorization URL for a new login: `state` always, the
/// `nonce` for OpenID Connect, PKCE where the provider supports it, and the
/// provider's own parameters (form_post, Google's hosted domain).
pub fn authorize_url(a: &Authorize<'_>, login: &Login) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", &login.client_id)
        .append_pair("redirect_uri", a.redirect_uri)
        .append_pair("scope", &login.scopes.join(" "))
        .append_pair("state", a.state);
    if login.protocol == Protocol::Oidc {
        q.append_pair("nonce", a.nonce);
    }
    if login.pkce {
        q.append_pair("code_challenge", &pkce_challenge(a.verifier))
            .append_pair("code_challenge_method", "S256");
    }
    if login.form_post {
        q.append_pair("response_mode", "form_post");
    }
    if let Some(hd) = &login.hosted_domain {
        q.append_pair("hd", hd);
    }
    let query = q.finish();
    let sep = if a.endpoint.contains('?') { '&' } else { '?' };
    format!("{}{sep}{query}", a.endpoint)
}

/// Algorithms accepted for ID tokens and logout tokens (asymmetric only).
pub(crate) const ID_TOKEN_ALGORITHMS: [jsonwebtoken::Algorithm; 4] = [
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::EdDSA,
];

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

    fn url_for(login: &Login) -> String {
        authorize_url(
            &Authorize {
                endpoint: "https://idp.test/auth",
                redirect_uri: "https://shop.test/_auth/callback/idp",
                state: "st",
                nonce: "no",
                verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            },
            login,
        )
    }

    #[test]
    fn authorize_url_carries_pkce_state_and_nonce() {
        let login = Login {
            client_id: "web".into(),
            client_secret: "s".into(),
            scopes: vec!["openid".into(), "email".into()],
            pkce: true,
            ..Login::default()
        };
        let u = url_for(&login);
        assert!(u.starts_with("https://idp.test/auth?response_type=code&client_id=web"));
        for part in [
            "scope=openid+email",
            "state=st",
            "nonce=no",
            "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method=S256",
        ] {
            assert!(u.contains(part), "{u}");
        }
        assert!(!u.contains("response_mode") && !u.contains("hd="), "{u}");
    }

    #[test]
    fn authorize_url_follows_the_providers_quirks() {
        let apple = Login {
            client_id: "com.shop".into(),
            scopes: vec!["openid".into(), "name".into(), "email".into()],
            form_post: true,
            pkce: false,
            ..Login::default()
        };
        let u = url_for(&apple);
        assert!(
            u.contains("response_mode=form_post") && u.contains("state=st"),
            "{u}"
        );
        assert!(!u.contains("code_challenge"), "{u}");
        let meta = Login {
            client_id: "app".into(),
            protocol: Protocol::OAuth2(profile::ProfileMap::default()),
            pkce: true,
            ..Login::default()
        };
        let u = url_for(&meta);
        assert!(
            !u.contains("nonce=") && u.contains("code_challenge="),
            "{u}"
        );
        let google = Login {
            hosted_domain: Some("shop.test".into()),
            ..Login::default()
        };
        assert!(url_for(&google).contains("hd=shop.test"));
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
