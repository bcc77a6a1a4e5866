//! Where the gateway may send a browser: the one check every redirect it
//! emits goes through. Pure.
//!
//! A candidate (a `return_to`, a path the gateway built, a URL stored with
//! a cross-domain code) is resolved exactly as a browser resolves a
//! `Location` against the page it is on (WHATWG URL, the `url` crate), and
//! the *resolved* URL is checked: http(s), no credentials, a configured host
//! on a port the gateway is reached on. What is emitted is written so that
//! the browser cannot resolve it to anything else. Never lets `//evil`,
//! `/.//evil`, `/x/..//evil`, `/%2e//evil` or `\\evil` leave the
//! configured hosts.

use url::Url;

/// The longest candidate considered (longer ones are refused).
const MAX_LEN: usize = 2048;

/// The URL a browser on `current` lands on when told to go to `candidate`,
/// if `allowed(host, port)` accepts it; `None` otherwise.
pub fn resolve(current: &Url, candidate: &str, allowed: impl Fn(&str, u16) -> bool) -> Option<Url> {
    if candidate.len() > MAX_LEN || candidate.chars().any(char::is_control) {
        return None;
    }
    let mut target = current.join(candidate).ok()?;
    // A fragment is the page's business; a redirect does not carry one.
    target.set_fragment(None);
    let port = target.port_or_known_default()?;
    let host = target.host_str()?.to_ascii_lowercase();
    let ok = matches!(target.scheme(), "https" | "http")
        && target.username().is_empty()
        && target.password().is_none()
        && allowed(&host, port);
    ok.then_some(target)
}

/// Where `candidate` sends a browser on `here`, if it stays on this host
/// or one `config` names, on this port or a listener's. Pure.
pub fn within(config: &crate::config::model::Config, here: &Url, candidate: &str) -> Option<Url> {
    let here_host = here.host_str()?.to_ascii_lowercase();
    let here_port = here.port_or_known_default()?;
    resolve(here, candidate, |h, p| {
        (h == here_host || config.known_host(h)) && (p == here_port || config.listener_port(p))
    })
}

/// The `Location` to write for `candidate` on `here`, or None when it
/// would leave the configured hosts. Pure.
pub fn checked(
    config: &crate::config::model::Config,
    here: Option<&Url>,
    candidate: &str,
) -> Option<String> {
    let here = here?;
    within(config, here, candidate).map(|t| location(here, &t))
}

/// The `Location` value that sends a browser on `current` to `target`: a
/// path when it stays on the same origin and cannot be read as another
/// host, else the absolute URL.
pub fn location(current: &Url, target: &Url) -> String {
    let same_origin = current.origin() == target.origin();
    let path = target.path();
    if same_origin && path.starts_with('/') && !path.starts_with("//") {
        let mut out = path.to_string();
        if let Some(q) = target.query() {
            out.push('?');
            out.push_str(q);
        }
        out
    } else {
        target.as_str().to_string()
    }
}

#[cfg(test)]
mod tests;
