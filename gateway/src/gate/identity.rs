//! What a backend is told about the caller: the identity headers of its
//! upstream (each field only while the purpose bound to it is granted), the
//! consents in effect and the signed assertion.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::auth::Principal;
use crate::config::model::{Config, Upstream};
use crate::consent::Purpose;
use crate::privacy::datamap::{FIELD_EMAIL, FIELD_ID, FIELD_NAME};
use crate::state::App;

/// The headers for one upstream, and what they carry.
pub struct Told {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The data-map fields the backend receives (`FIELD_*`).
    pub fields: u8,
    /// `X-Customer-Consents`.
    pub consents: String,
}

/// The fields of `p` that `upstream` may see, as headers (the assertion aside).
pub fn fields(
    p: &Principal,
    upstream: &Upstream,
    granted: Option<&BTreeMap<String, u32>>,
    purposes: &[Purpose],
) -> (Told, Option<String>, Option<String>) {
    let names = &upstream.identity_headers;
    let empty = BTreeMap::new();
    let granted = granted.unwrap_or(&empty);
    let allowed = |bound: &Option<String>| {
        bound.as_ref().is_none_or(|id| {
            purposes
                .iter()
                .any(|p| &p.id == id && granted.get(id) == Some(&p.version))
        })
    };
    let bound = &upstream.consent_headers;
    let consents = crate::consent::header_value(crate::consent::effective(granted, purposes));
    let email = p.email.clone().filter(|_| allowed(&bound.email));
    let name = p.name.clone().filter(|_| allowed(&bound.name));
    let mut told = Told {
        headers: Vec::new(),
        fields: FIELD_ID,
        consents,
    };
    let mut add = |name: &str, value: Option<&str>| {
        // Values that cannot be a header (control characters) are left out, never mangled.
        let header = (
            HeaderName::from_bytes(name.as_bytes()).ok(),
            value.and_then(|v| HeaderValue::from_str(v).ok()),
        );
        match header {
            (Some(n), Some(v)) => {
                told.headers.push((n, v));
                true
            }
            _ => false,
        }
    };
    if allowed(&bound.customer_id) {
        add(&names.customer_id, Some(&p.customer_id));
    }
    if add(&names.email, email.as_deref()) {
        told.fields |= FIELD_EMAIL;
    }
    if add(&names.name, name.as_deref()) {
        told.fields |= FIELD_NAME;
    }
    (told, email, name)
}

/// Everything `upstream` is told about `p`, the signed assertion included
/// (cached per credential, upstream and consents); the data map notes what
/// it received. `None` if the assertion cannot be signed.
pub fn tell(
    app: &App,
    config: &Config,
    p: &Principal,
    upstream: &Upstream,
    granted: Option<&BTreeMap<String, u32>>,
) -> Option<Told> {
    let (mut told, email, name) = fields(p, upstream, granted, &config.purposes);
    let consents = told.consents.clone();
    let mut add = |n: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            told.headers.push((HeaderName::from_static(n), v));
        }
    };
    add("x-customer-consents", &consents);
    if p.email.is_some() {
        add(
            "x-customer-email-verified",
            if p.email_verified { "true" } else { "false" },
        );
    }
    add("x-auth-method", p.method);
    let assertion = assertion(
        app,
        p,
        upstream,
        &consents,
        email.as_deref(),
        name.as_deref(),
    )?;
    add("x-omnigate-assertion", &assertion);
    if config.privacy.data_map {
        let now = crate::session::unix_now();
        app.data_map
            .record(&p.customer_id, &upstream.name, told.fields, &consents, now);
    }
    Some(told)
}

/// The signed assertion for `upstream`: what it says depends on the consents,
/// so they are part of the cache key.
fn assertion(
    app: &App,
    p: &Principal,
    upstream: &Upstream,
    consents: &str,
    email: Option<&str>,
    name: Option<&str>,
) -> Option<Arc<str>> {
    let key = (p.credential, format!("{}|{consents}", upstream.name));
    if let Some(a) = app.assertions.get(&key) {
        return Some(a);
    }
    let (iat, exp) = app.signer.window();
    let claims = crate::identity::assertion::AssertionClaims {
        iss: &app.signer.issuer,
        sub: &p.customer_id,
        aud: &upstream.name,
        iat,
        exp: exp.min(p.expires_at),
        auth_method: p.method,
        email,
        name,
        consents,
    };
    let signed: Arc<str> = app.signer.sign(&claims)?.into();
    app.assertions.insert(key, signed.clone());
    Some(signed)
}
