//! Which client request headers may reach a backend. Pure.
//!
//! Every decision is taken on the name *as a backend will read it*: CGI,
//! WSGI, PHP and Rack turn `X_Customer_Id` and `X-Customer-Id` into the same
//! `HTTP_X_CUSTOMER_ID`, so a name is compared lower-case with `_` read as
//! `-`. Never lets a client spelling of an identity, proxy-chain or
//! path-override header through, whatever its case or separators.

use std::borrow::Cow;
use std::collections::BTreeSet;

use pingora_http::RequestHeader;

/// What to do with a client header whose name contains `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Underscores {
    /// Removed before anything reads it (nginx's `underscores_in_headers off`).
    #[default]
    Drop,
    /// Kept, unless its `-` spelling is a header the gateway owns.
    Keep,
    /// The request is refused with 400.
    Reject,
}

/// The verdict on one client header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
    Reject,
}

/// The gateway's header rules for one snapshot.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    pub underscores: Underscores,
    /// Names upstreams receive identity under (lower-case), beyond the
    /// `x-customer-*` / `x-omnigate-*` namespace.
    pub mapped: BTreeSet<String>,
    /// First letters (a–z as bits) of every name any list could hold.
    initials: u32,
}

/// The bit of a name's first letter (0 for anything but a–z).
fn initial(name: &str) -> u32 {
    match name.as_bytes().first().map(u8::to_ascii_lowercase) {
        Some(b @ b'a'..=b'z') => 1 << (b - b'a'),
        _ => 0,
    }
}

/// The identity namespace: only the gateway sets these.
const IDENTITY_PREFIXES: [&str; 2] = ["x-customer-", "x-omnigate-"];
const IDENTITY_NAMES: [&str; 3] = ["x-guest-id", "x-previous-guest-id", "x-auth-method"];

/// Headers that tell a backend where a request came from. A trusted proxy
/// may send them (the gateway extends its chain); anyone else's are removed.
const CHAIN_PREFIXES: [&str; 1] = ["x-forwarded-"];
const CHAIN_NAMES: [&str; 17] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-original-forwarded-for",
    "x-envoy-external-address",
    "x-request-id",
    "x-correlation-id",
    "via",
];

/// Headers some frameworks (IIS URL Rewrite, Symfony, Zend) read as the
/// request path instead of the request line: they would move a request past
/// the route it matched. Never forwarded, from anyone.
const PATH_OVERRIDES: [&str; 6] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-override-url",
    "x-http-destinationurl",
    "x-envoy-original-path",
];

/// The name as a backend reads it: lower-case, `_` as `-`.
pub fn backend_name(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        Cow::Owned(
            name.bytes()
                .map(|b| match b {
                    b'_' => '-',
                    b => b.to_ascii_lowercase() as char,
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(name)
    }
}

fn in_set(name: &str, prefixes: &[&str], names: &[&str]) -> bool {
    prefixes.iter().any(|p| name.starts_with(p)) || names.contains(&name)
}

/// Whether `name` (backend form) is an identity header for this policy.
pub fn is_identity(name: &str, mapped: &BTreeSet<String>) -> bool {
    in_set(name, &IDENTITY_PREFIXES, &IDENTITY_NAMES) || mapped.contains(name)
}

/// Whether `name` (backend form) describes the proxy chain.
pub fn is_chain(name: &str) -> bool {
    in_set(name, &CHAIN_PREFIXES, &CHAIN_NAMES)
}

/// Whether `name` (backend form) overrides the request path for some backend.
pub fn is_path_override(name: &str) -> bool {
    PATH_OVERRIDES.contains(&name)
}

impl HeaderPolicy {
    pub fn new(underscores: Underscores, mapped: BTreeSet<String>) -> HeaderPolicy {
        let fixed = ["x", "f", "t", "c", "v"].iter().map(|s| initial(s));
        let initials = fixed
            .chain(mapped.iter().map(|m| initial(m)))
            .fold(0, |a, b| a | b);
        HeaderPolicy {
            underscores,
            mapped,
            initials,
        }
    }

    /// The verdict on a client header `name` (as received, any case),
    /// sent by a trusted proxy or not.
    pub fn verdict(&self, name: &str, trusted: bool) -> Verdict {
        // The common case on every request: a name no list can hold (every
        // owned name starts with one of these letters; mapped ones are checked).
        let i = initial(name);
        if i != 0 && self.initials & i == 0 && !name.contains('_') {
            return Verdict::Keep;
        }
        let seen = backend_name(name);
        let respelled = name.contains('_');
        if respelled {
            match self.underscores {
                Underscores::Drop => return Verdict::Drop,
                Underscores::Reject => return Verdict::Reject,
                Underscores::Keep => {}
            }
        }
        let owned = is_identity(&seen, &self.mapped) || is_path_override(&seen);
        // A trusted proxy's chain headers pass in their real spelling only.
        let chain = is_chain(&seen) && (!trusted || respelled);
        if owned || chain {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }

    /// Applies the policy to a client's request in place. `Err(name)` when a
    /// header must make the request fail (`Underscores::Reject`).
    pub fn apply(&self, req: &mut RequestHeader, trusted: bool) -> Result<(), String> {
        let mut doomed: Vec<String> = Vec::new();
        for name in req.headers.keys() {
            match self.verdict(name.as_str(), trusted) {
                Verdict::Keep => {}
                Verdict::Drop => doomed.push(name.as_str().to_string()),
                Verdict::Reject => return Err(name.as_str().to_string()),
            }
        }
        for name in doomed {
            req.remove_header(&name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
