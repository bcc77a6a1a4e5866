//! Authentication of requests: bearer tokens from configured providers now,
//! browser sessions later. [`decide`] is the pure access decision per route;
//! [`Authenticator`] does the I/O (keys, customer directory) and caches each
//! verified token until it expires, so the hot path does no signature work
//! twice.

pub mod jwks;
pub mod token;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::model::Access;
use crate::customers::{Directory, ExternalId, IdentityKind, Profile};
use jwks::ProviderKeys;
use token::TokenError;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub customer_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub scopes: HashSet<String>,
    /// Unix time after which the credential is no longer valid.
    pub expires_at: u64,
    /// `bearer` or `cookie`.
    pub method: &'static str,
    /// Stable key of the credential (hash), for per-credential caches.
    pub credential: [u8; 32],
}

/// Why a credential was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("{0}")]
    Invalid(TokenError),
    #[error("identity service unavailable: {0}")]
    Unavailable(String),
}

/// The outcome for one request on one route.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward without identity.
    Anonymous,
    /// Forward with this identity.
    Allow,
    /// 401: no credential where one is required, or a bad one.
    Unauthenticated(Option<TokenError>),
    /// 403: authenticated but these scopes are missing.
    InsufficientScope(Vec<String>),
    /// 403: the route needs a confirmed email address; this one is not.
    EmailUnverified,
    /// 503: keys or directory unreachable; retry later.
    Unavailable,
}

/// What a route allows, given what authentication found. Pure.
pub fn decide(
    access: Access,
    required_scopes: &[String],
    verified_email: bool,
    found: Option<&Result<Arc<Principal>, AuthError>>,
) -> Decision {
    match (access, found) {
        (Access::Public, _) => Decision::Anonymous,
        (Access::Optional | Access::Guest, None) => Decision::Anonymous,
        (Access::Required, None) => Decision::Unauthenticated(None),
        // A client that sends a bad credential is told so, even where optional.
        (_, Some(Err(AuthError::Invalid(e)))) => Decision::Unauthenticated(Some(e.clone())),
        (_, Some(Err(AuthError::Unavailable(_)))) => Decision::Unavailable,
        (_, Some(Ok(p))) => {
            let missing: Vec<String> = required_scopes
                .iter()
                .filter(|s| !p.scopes.contains(*s))
                .cloned()
                .collect();
            if !missing.is_empty() {
                Decision::InsufficientScope(missing)
            } else if verified_email && !p.email_verified {
                Decision::EmailUnverified
            } else {
                Decision::Allow
            }
        }
    }
}

/// The bearer token of an `Authorization` header value, if any.
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let v = authorization?.trim();
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// `iss` of a token, read before verification only to pick the provider.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = B64.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?
        .as_str()
        .map(|s| s.trim_end_matches('/').to_string())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Principal>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _k: &[u8; 32],
        p: &Arc<Principal>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        // At most 5 minutes, so a disabled customer or a rotated key is noticed.
        Some(Duration::from_secs(
            p.expires_at.saturating_sub(now()).min(300),
        ))
    }
}

/// Verifies credentials and maps them to customers.
pub struct Authenticator {
    directory: Arc<dyn Directory>,
    cache: moka::future::Cache<[u8; 32], Arc<Principal>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Customers being erased: their cached tokens are refused at once.
    refused: arc_swap::ArcSwap<HashSet<String>>,
}

impl Authenticator {
    pub fn new(
        directory: Arc<dyn Directory>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Authenticator {
        Authenticator {
            directory,
            cache: moka::future::Cache::builder()
                .max_capacity(200_000)
                .expire_after(UntilExpiry)
                .build(),
            metrics,
            refused: Default::default(),
        }
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// Forgets every verified token (the provider settings changed).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    /// Refuses a customer's tokens from now on (on this node; the privacy
    /// worker brings every node's set up to date from the store).
    pub fn refuse(&self, customer_id: &str) {
        let mut next = (**self.refused.load()).clone();
        next.insert(customer_id.to_string());
        self.refused.store(Arc::new(next));
    }

    /// Replaces the refused set with the store's.
    pub fn set_refused(&self, ids: Vec<String>) {
        let next: HashSet<String> = ids.into_iter().collect();
        if **self.refused.load() != next {
            self.refused.store(Arc::new(next));
        }
    }

    fn is_refused(&self, customer_id: &str) -> bool {
        let r = self.refused.load();
        !r.is_empty() && r.contains(customer_id)
    }

    /// Verifies a bearer token against the provider that issued it.
    pub async fn bearer(
        &self,
        token: &str,
        providers: &[Arc<ProviderKeys>],
    ) -> Result<Arc<Principal>, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(p) = self.cache.get(&key).await {
            if p.expires_at > now() {
                self.metrics.token_cache.with_label_values(&["hit"]).inc();
                if self.is_refused(&p.customer_id) {
                    return Err(AuthError::Invalid(TokenError::Disabled));
                }
                return Ok(p);
            }
        }
        self.metrics.token_cache.with_label_values(&["miss"]).inc();
        let issuer = unverified_issuer(token).ok_or(AuthError::Invalid(TokenError::Malformed))?;
        let provider = providers
            .iter()
            .find(|p| p.config.bearer.is_some() && p.config.issuer == issuer)
            .ok_or(AuthError::Invalid(TokenError::Issuer))?;
        let Some(policy) = &provider.config.bearer else {
            return Err(AuthError::Invalid(TokenError::Issuer));
        };
        let kid = token::key_id(token).map_err(AuthError::Invalid)?;
        let keys = provider
            .keys_for(kid.as_deref())
            .await
            .map_err(AuthError::Unavailable)?;
        let verified = token::validate(token, &keys, policy).map_err(AuthError::Invalid)?;
        let customer = self
            .directory
            .resolve(
                &ExternalId {
                    issuer: verified.issuer.clone(),
                    subject: verified.subject.clone(),
                },
                IdentityKind::Bearer,
                &Profile {
                    email: verified.email.clone(),
                    email_verified: verified.email_verified,
                    name: verified.name.clone(),
                },
            )
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        if customer.status != crate::customers::ACTIVE || self.is_refused(&customer.id) {
            return Err(AuthError::Invalid(TokenError::Disabled));
        }
        let principal = Arc::new(Principal {
            customer_id: customer.id,
            email: customer.email,
            email_verified: customer.email_verified,
            name: customer.name,
            scopes: verified.scopes,
            expires_at: verified.expires_at,
            method: "bearer",
            credential: key,
        });
        self.cache.insert(key, principal.clone()).await;
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: &[&str]) -> Result<Arc<Principal>, AuthError> {
        Ok(Arc::new(Principal {
            customer_id: "cus_1".into(),
            email: None,
            email_verified: false,
            name: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at: u64::MAX,
            method: "bearer",
            credential: [0; 32],
        }))
    }

    #[test]
    fn access_decisions() {
        let read = vec!["orders:read".to_string()];
        assert_eq!(
            decide(Access::Public, &[], false, None),
            Decision::Anonymous
        );
        assert_eq!(
            decide(Access::Optional, &[], false, None),
            Decision::Anonymous
        );
        assert_eq!(decide(Access::Guest, &[], false, None), Decision::Anonymous);
        assert_eq!(
            decide(Access::Guest, &[], false, Some(&principal(&[]))),
            Decision::Allow
        );
        assert_eq!(
            decide(Access::Required, &read, false, None),
            Decision::Unauthenticated(None)
        );
        assert_eq!(
            decide(
                Access::Required,
                &read,
                false,
                Some(&principal(&["orders:read"]))
            ),
            Decision::Allow
        );
        // A route that needs a confirmed address: refused until it is.
        assert_eq!(
            decide(
                Access::Required,
                &read,
                true,
                Some(&principal(&["orders:read"]))
            ),
            Decision::EmailUnverified
        );
        let mut confirmed = (*principal(&[]).unwrap()).clone();
        confirmed.email_verified = true;
        assert_eq!(
            decide(Access::Optional, &[], true, Some(&Ok(Arc::new(confirmed)))),
            Decision::Allow
        );
        assert_eq!(
            decide(
                Access::Required,
                &read,
                false,
                Some(&principal(&["profile"]))
            ),
            Decision::InsufficientScope(read.clone())
        );
        let bad = Err(AuthError::Invalid(TokenError::Expired));
        assert_eq!(
            decide(Access::Optional, &[], false, Some(&bad)),
            Decision::Unauthenticated(Some(TokenError::Expired))
        );
        let down = Err(AuthError::Unavailable("x".into()));
        assert_eq!(
            decide(Access::Required, &[], false, Some(&down)),
            Decision::Unavailable
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(
            bearer_token(Some("Bearer abc.def.ghi")),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }
}
