//! Identity header names and the stripping of client-sent ones. Pure.
//!
//! Stripped on every route, authenticated or not: every header whose name
//! starts with `x-customer-` or `x-omnigate-`, the fixed names below, and
//! every name any upstream maps identity to (e.g. `X-Forwarded-User` for a
//! backend written for oauth2-proxy).

use std::collections::BTreeSet;

use pingora_http::RequestHeader;

const PREFIXES: [&str; 2] = ["x-customer-", "x-omnigate-"];
const FIXED: [&str; 3] = ["x-guest-id", "x-previous-guest-id", "x-auth-method"];

/// The header names an upstream receives identity under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub customer_id: String,
    pub email: String,
    pub name: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            customer_id: "x-customer-id".into(),
            email: "x-customer-email".into(),
            name: "x-customer-name".into(),
        }
    }
}

impl IdentityHeaders {
    pub fn names(&self) -> [&str; 3] {
        [&self.customer_id, &self.email, &self.name]
    }
}

/// Whether `name` (lower-case) belongs to the identity namespace.
pub fn is_identity_header(name: &str, mapped: &BTreeSet<String>) -> bool {
    PREFIXES.iter().any(|p| name.starts_with(p)) || FIXED.contains(&name) || mapped.contains(name)
}

/// Removes every identity header from a request going upstream.
pub fn strip(req: &mut RequestHeader, mapped: &BTreeSet<String>) {
    let doomed: Vec<String> = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| is_identity_header(k, mapped))
        .map(str::to_string)
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_namespace_fixed_and_mapped_names_only() {
        let mapped: BTreeSet<String> = ["x-forwarded-user".to_string()].into();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("X-Customer-Id", "spoof"),
            ("x-customer-email", "a@b"),
            ("X-Omnigate-Assertion", "forged"),
            ("X-Guest-Id", "g"),
            ("X-Auth-Method", "cookie"),
            ("X-Forwarded-User", "admin"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("Accept", "*/*"),
        ] {
            req.append_header(k, v).unwrap();
        }
        strip(&mut req, &mapped);
        let left: BTreeSet<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, BTreeSet::from(["accept", "x-forwarded-for"]));
    }
}
