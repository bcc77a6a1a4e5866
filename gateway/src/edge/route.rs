//! Route matching: host, path prefix and method to a route. Pure: no I/O, no
//! allocation on the hot path beyond what the caller gives it.
//!
//! Precedence, most specific first: an exact host over a `*.` wildcard over a
//! route without hosts; then the longest path prefix; then a route that lists
//! methods over one that takes any; then configuration order.

pub use crate::config::model::host_matches;
use crate::config::model::Route;

/// What a request matched.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'r> {
    Route(usize),
    /// A route matches host and path but not the method; these are allowed.
    MethodNotAllowed(Vec<&'r str>),
    NotFound,
}

/// Routes in precedence order.
#[derive(Debug)]
pub struct Router {
    /// Indices into the configured routes, most specific first.
    order: Vec<usize>,
}

fn host_rank(r: &Route) -> u8 {
    if r.hosts.is_empty() {
        0
    } else if r.hosts.iter().all(|h| h.starts_with("*.")) {
        1
    } else {
        2
    }
}

impl Router {
    pub fn new(routes: &[Route]) -> Self {
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&i| {
            let r = &routes[i];
            (
                std::cmp::Reverse(host_rank(r)),
                std::cmp::Reverse(r.path_prefix.len()),
                r.methods.is_empty(),
                i,
            )
        });
        Router { order }
    }

    /// Finds the route for a request. `host` is lower-case and without port.
    pub fn find<'r>(&self, routes: &'r [Route], host: &str, path: &str, method: &str) -> Match<'r> {
        let mut allowed: Vec<&'r str> = Vec::new();
        // A route with an exact host beats a wildcard only when the exact host
        // matches, so check each route's own host list.
        for &i in &self.order {
            let r = &routes[i];
            let on_path = if r.case_insensitive {
                prefix_matches_any_case(&r.path_prefix, path)
            } else {
                prefix_matches(&r.path_prefix, path)
            };
            if !host_matches(&r.hosts, host) || !on_path {
                continue;
            }
            if r.methods.is_empty() || r.methods.iter().any(|m| m == method) {
                return Match::Route(i);
            }
            allowed.extend(r.methods.iter().map(String::as_str));
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            allowed.sort_unstable();
            allowed.dedup();
            Match::MethodNotAllowed(allowed)
        }
    }
}

/// `/api` takes `/api`, `/api/…` and `/api?…`, not `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `prefix_matches` for a backend that ignores case (IIS): `/ACCT/x` is `/acct/x`.
pub fn prefix_matches_any_case(prefix: &str, path: &str) -> bool {
    let n = prefix.len();
    match path.get(..n) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => {
            let rest = &path[n..];
            prefix == "/" || prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
        }
        _ => false,
    }
}

/// The path an upstream sees after `prefix` is stripped (never empty).
pub fn strip_prefix<'p>(prefix: &str, path: &'p str) -> std::borrow::Cow<'p, str> {
    let trimmed = prefix.trim_end_matches('/');
    match path.strip_prefix(trimmed) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('/') => rest.into(),
        _ => path.into(),
    }
}

/// Normalizes a `Host` value: lower-case, no port, no trailing dot.
/// None when it is not a plausible host name or IP literal.
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: [::1]:8443
        let end = rest.find(']')?;
        &raw[..end + 2]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.');
    let valid = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'));
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
