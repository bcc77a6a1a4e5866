//! The callback's server side: the code exchanged at the token endpoint with
//! the provider's client authentication, then the identity — the verified ID
//! token (OpenID Connect, with each provider's quirks) or the profile API's
//! answer read with the configured mapping (OAuth 2.0).

use std::sync::Arc;

use super::client::{self, TokenAuth};
use super::preset::Protocol;
use super::profile::{self, ProfileMap};
use super::quirks;
use super::{LoginError, Pending, ID_TOKEN_ALGORITHMS};
use crate::auth::jwks::{FetchError, ProviderKeys};
use crate::auth::token::{self, BearerPolicy, Verified};
use crate::config::model::Login;

/// What the provider sent to the callback besides `state`.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: String,
    /// Sign in with Apple's `user` field (first sign-in only).
    pub user: Option<String>,
}

/// Where a provider's endpoints are: configured, else from discovery.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub userinfo: Option<String>,
    pub emails: Option<String>,
    /// What discovery lists for the token endpoint (None: not said).
    pub auth_methods: Option<Vec<String>>,
}

/// The provider's endpoints (OpenID discovery fills what is not configured).
pub async fn endpoints(provider: &ProviderKeys, login: &Login) -> Result<Endpoints, String> {
    let own = &login.endpoints;
    if let Protocol::OAuth2(_) = login.protocol {
        let (Some(authorization), Some(token)) = (own.authorization.clone(), own.token.clone())
        else {
            return Err("OAuth 2.0 provider without endpoints".into());
        };
        return Ok(Endpoints {
            authorization,
            token,
            userinfo: own.userinfo.clone(),
            emails: own.emails.clone(),
            auth_methods: None,
        });
    }
    let d = provider.discovery().await?;
    let pick = |mine: &Option<String>, found: &Option<String>| mine.clone().or(found.clone());
    Ok(Endpoints {
        authorization: pick(&own.authorization, &d.authorization_endpoint)
            .ok_or("no authorization_endpoint in discovery")?,
        token: pick(&own.token, &d.token_endpoint).ok_or("no token_endpoint in discovery")?,
        userinfo: pick(&own.userinfo, &d.userinfo_endpoint),
        emails: own.emails.clone(),
        auth_methods: d.token_endpoint_auth_methods_supported.clone(),
    })
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
    /// Some providers (GitHub) say no with a 200 and an `error`.
    error: Option<String>,
}

/// Exchanges the code and establishes who signed in.
pub async fn complete(
    provider: &Arc<ProviderKeys>,
    login: &Login,
    callback: &Callback,
    redirect_uri: &str,
    pending: &Pending,
) -> Result<Verified, LoginError> {
    let ends = endpoints(provider, login)
        .await
        .map_err(LoginError::ProviderDown)?;
    let tokens = exchange(
        provider,
        login,
        &ends,
        &callback.code,
        redirect_uri,
        pending,
    )
    .await?;
    match &login.protocol {
        Protocol::Oidc => {
            let raw = tokens
                .id_token
                .ok_or_else(|| LoginError::Invalid("token response without id_token".into()))?;
            let mut v = id_token(provider, login, &raw, pending).await?;
            if let (Some(url), Some(at)) = (&ends.userinfo, &tokens.access_token) {
                fill_from_userinfo(provider, &mut v, url, at).await;
            }
            if v.name.is_none() {
                v.name = quirks::apple_user_name(callback.user.as_deref());
            }
            Ok(v)
        }
        Protocol::OAuth2(map) => {
            let at = tokens
                .access_token
                .ok_or_else(|| LoginError::Invalid("token response without access_token".into()))?;
            from_profile(provider, login, map, &ends, &at).await
        }
    }
}

/// Posts the code with the client's authentication.
async fn exchange(
    provider: &ProviderKeys,
    login: &Login,
    ends: &Endpoints,
    code: &str,
    redirect_uri: &str,
    pending: &Pending,
) -> Result<TokenResponse, LoginError> {
    let has_secret = !login.client_secret.is_empty() || login.apple.is_some();
    let method = client::choose(
        login.token_auth,
        ends.auth_methods.as_deref(),
        has_secret,
        login.client_key.is_some(),
    )
    .map_err(LoginError::Invalid)?;
    let secret = client_secret(provider, login).map_err(LoginError::Invalid)?;
    let assertion = match (method, &login.client_key) {
        (TokenAuth::PrivateKeyJwt, Some(key)) => {
            let claims = client::assertion_claims(
                &login.client_id,
                &ends.token,
                unix_now(),
                &crate::session::new_token(),
            );
            Some(key.sign(&claims).map_err(LoginError::Invalid)?)
        }
        _ => None,
    };
    let (authorization, extra) = client::credentials(method, &login.client_id, &secret, assertion);
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    if login.pkce {
        form.push(("code_verifier", &pending.verifier));
    }
    form.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    let tokens: TokenResponse = provider
        .http()
        .post_form(&ends.token, authorization, &form)
        .await
        .map_err(fetch_error)?;
    match tokens.error {
        Some(e) => Err(LoginError::Refused(format!("token endpoint: {e}"))),
        None => Ok(tokens),
    }
}

/// Unreachable or failing is not the customer's doing (never counted).
fn fetch_error(e: FetchError) -> LoginError {
    match e {
        FetchError::Unreachable(d) => LoginError::ProviderDown(d),
        other => LoginError::Refused(other.to_string()),
    }
}

/// The configured secret, or Apple's made one (kept until half its life is
/// gone, then made again).
fn client_secret(provider: &ProviderKeys, login: &Login) -> Result<String, String> {
    let Some(apple) = &login.apple else {
        return Ok(login.client_secret.clone());
    };
    let now = unix_now();
    let mut made = provider
        .made_secret
        .lock()
        .map_err(|_| "client secret cache poisoned".to_string())?;
    if let Some((secret, expires)) = made.as_ref() {
        if client::still_fresh(*expires, apple.ttl_secs, now) {
            return Ok(secret.clone());
        }
    }
    let claims = client::apple_claims(apple, &login.client_id, &provider.config.issuer, now);
    let secret = apple.key.sign(&claims)?;
    *made = Some((secret.clone(), now + apple.ttl_secs));
    Ok(secret)
}

/// Verifies an ID token: keys by `kid`, the issuer (a multi-tenant template
/// filled with the token's `tid`), audience, nonce, `iat`, hosted domain.
async fn id_token(
    provider: &ProviderKeys,
    login: &Login,
    raw: &str,
    pending: &Pending,
) -> Result<Verified, LoginError> {
    let claims = unverified_claims(raw).map_err(LoginError::Invalid)?;
    let text = |k: &str| claims.get(k).and_then(serde_json::Value::as_str);
    let issuer = quirks::expected_issuer(&provider.config.issuer, text("tid"), &login.tenants)
        .map_err(LoginError::Invalid)?;
    let policy = BearerPolicy {
        issuer,
        audiences: vec![login.client_id.clone()],
        algorithms: ID_TOKEN_ALGORITHMS.to_vec(),
        leeway: 30,
    };
    let kid = token::key_id(raw).map_err(|e| LoginError::Invalid(e.to_string()))?;
    let keys = provider
        .keys_for(kid.as_deref())
        .await
        .map_err(LoginError::ProviderDown)?;
    let verified =
        token::validate(raw, &keys, &policy).map_err(|e| LoginError::Invalid(e.to_string()))?;
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
    // Read from the payload the signature now covers.
    if !quirks::hosted_domain_ok(login.hosted_domain.as_deref(), text("hd")) {
        return Err(LoginError::Refused(
            "the account is not in the required hosted domain".into(),
        ));
    }
    Ok(verified)
}

/// The payload of a JWT, before (or after) its signature is checked.
fn unverified_claims(raw: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    use base64::Engine;
    let payload = raw.split('.').nth(1).ok_or("the ID token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the ID token is not a JWT")?;
    serde_json::from_slice(&bytes).map_err(|_| "the ID token's payload is not a JSON object".into())
}

#[derive(serde::Deserialize, Default)]
struct UserInfo {
    sub: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
}

/// Fills profile gaps from userinfo, which must describe the same subject
/// (OIDC Core 5.3.2); a userinfo that fails leaves the token's claims.
async fn fill_from_userinfo(provider: &ProviderKeys, v: &mut Verified, url: &str, at: &str) {
    if v.email.is_some() && v.name.is_some() {
        return;
    }
    let Ok(info) = provider.http().get_json_bearer::<UserInfo>(url, at).await else {
        return;
    };
    if info.sub.as_deref() != Some(v.subject.as_str()) {
        return;
    }
    if v.email.is_none() {
        v.email = info.email;
        v.email_verified = info.email_verified.unwrap_or(false);
    }
    if v.name.is_none() {
        v.name = info.name;
    }
}

/// An OAuth 2.0 identity: the profile API's answer read with the mapping,
/// the verified primary address from an address list where there is one.
async fn from_profile(
    provider: &ProviderKeys,
    login: &Login,
    map: &ProfileMap,
    ends: &Endpoints,
    access_token: &str,
) -> Result<Verified, LoginError> {
    let url = ends
        .userinfo
        .as_deref()
        .ok_or_else(|| LoginError::Invalid("no profile endpoint".into()))?;
    let url = if login.appsecret_proof {
        with_appsecret_proof(url, &login.client_secret, access_token)
    } else {
        url.to_string()
    };
    let http = provider.http();
    let answer: serde_json::Value = http
        .fetch_json_bearer(&url, access_token)
        .await
        .map_err(fetch_error)?;
    let mut found = profile::read(&answer, map).map_err(LoginError::Invalid)?;
    if let Some(emails) = &ends.emails {
        let list: serde_json::Value = http
            .fetch_json_bearer(emails, access_token)
            .await
            .map_err(fetch_error)?;
        let primary = profile::primary_email(&list);
        found.email_verified = primary.as_ref().is_some_and(|(_, v)| *v);
        found.email = primary.map(|(e, _)| e);
    }
    let now = unix_now();
    Ok(Verified {
        issuer: provider.config.issuer.clone(),
        subject: found.subject,
        expires_at: now + 3600,
        scopes: Default::default(),
        email: found.email,
        email_verified: found.email_verified,
        name: found.name,
        nonce: None,
        sid: None,
        issued_at: Some(now),
    })
}

/// Meta's Graph API proof that the call comes from the app's server:
/// HMAC-SHA256 of the access token under the app secret, in hex.
pub(crate) fn with_appsecret_proof(url: &str, secret: &str, access_token: &str) -> String {
    let proof = crate::webhook::hmac_hex(secret.as_bytes(), &[access_token.as_bytes()]);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}appsecret_proof={proof}")
}

fn unix_now() -> u64 {
    u64::try_from(crate::session::unix_now()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appsecret_proof_is_the_hmac_of_the_token() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let u = with_appsecret_proof(
            "https://graph.test/me?fields=id",
            "key",
            "The quick brown fox jumps over the lazy dog",
        );
        assert_eq!(
            u,
            "https://graph.test/me?fields=id&appsecret_proof=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn claims_are_read_from_the_payload() {
        use base64::Engine;
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let raw = format!("{}.{}.sig", b("{}"), b(r#"{"tid":"t","hd":"shop.test"}"#));
        let c = unverified_claims(&raw).unwrap();
        assert_eq!(c["hd"], "shop.test");
        assert!(unverified_claims("nope").is_err());
        assert!(unverified_claims(&format!("a.{}.c", b("[1]"))).is_err());
    }
}
