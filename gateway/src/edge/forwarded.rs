//! `X-Forwarded-*`, `X-Request-Id` and the HTTPS redirect target. Pure.
//!
//! Rule: what an untrusted client says about the chain in front of us is
//! dropped and replaced; a configured trusted proxy's values are extended.

use std::net::IpAddr;

use pingora_core::Result;
use pingora_http::RequestHeader;

/// Keeps a trusted proxy's request id if it is sane, else makes a new one.
pub fn request_id(incoming: Option<&str>, trusted: bool) -> String {
    match incoming {
        Some(id)
            if trusted
                && !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                }) =>
        {
            id.to_string()
        }
        // A thread-local CSPRNG: no getrandom syscall per request.
        _ => uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string(),
    }
}

/// The address a request comes from: the peer, or, when the peer is a
/// trusted proxy, the nearest address in `X-Forwarded-For` that is not one. Pure.
pub fn client_address(
    peer: Option<IpAddr>,
    xff: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for hop in xff.unwrap_or("").rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(nearest)
}

/// Where a request came from, as the forwarding headers tell it.
pub struct Hop {
    /// The address that connected to the gateway.
    pub peer: Option<IpAddr>,
    /// The client: the peer, or behind trusted proxies the nearest untrusted address.
    pub client: Option<IpAddr>,
    pub tls: bool,
    /// The peer is a configured trusted proxy (its chain is extended).
    pub trusted: bool,
}

/// Sets the forwarding headers on the request going upstream. An untrusted
/// client's chain headers were removed by the header policy already; these
/// replace them whatever is left.
pub fn apply(req: &mut RequestHeader, hop: &Hop, request_id: &str) -> Result<()> {
    let peer = hop.peer.map(|ip| ip.to_string()).unwrap_or_default();
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    if hop.trusted {
        let xff = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.is_empty() => format!("{prev}, {peer}"),
            _ => peer,
        };
        req.insert_header("x-forwarded-for", xff)?;
        if req.headers.get("x-forwarded-proto").is_none() {
            req.insert_header("x-forwarded-proto", proto(hop.tls))?;
        }
        if req.headers.get("x-forwarded-host").is_none() {
            if let Some(h) = host {
                req.insert_header("x-forwarded-host", h)?;
            }
        }
    } else {
        req.remove_header("forwarded");
        req.insert_header("x-forwarded-for", peer)?;
        req.insert_header("x-forwarded-proto", proto(hop.tls))?;
        match host {
            Some(h) => req.insert_header("x-forwarded-host", h)?,
            None => {
                req.remove_header("x-forwarded-host");
            }
        }
    }
    // As nginx users expect: the client's address, never the client's word.
    match hop.client {
        Some(ip) => req.insert_header("x-real-ip", ip.to_string())?,
        None => {
            req.remove_header("x-real-ip");
        }
    }
    req.insert_header("x-request-id", request_id)?;
    Ok(())
}

/// Whether a trusted proxy's `X-Forwarded-Proto` says its client used HTTPS
/// (read as forward-auth reads it: `gate::original::https_from_proto`).
pub fn says_https(value: Option<&str>) -> bool {
    value.and_then(crate::gate::original::https_from_proto) == Some(true)
}

fn proto(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// `https://host[:port]/path?query` for a plain-HTTP request.
pub fn https_location(host: &str, port: u16, path_and_query: Option<&str>) -> String {
    let pq = path_and_query.filter(|p| p.starts_with('/')).unwrap_or("/");
    if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        r.insert_header("host", "shop.test").unwrap();
        r.insert_header("x-forwarded-for", "6.6.6.6").unwrap();
        r.insert_header("x-forwarded-proto", "https").unwrap();
        r
    }

    fn hop(peer: &str, client: &str, trusted: bool) -> Hop {
        Hop {
            peer: peer.parse().ok(),
            client: client.parse().ok(),
            tls: false,
            trusted,
        }
    }

    fn get<'a>(r: &'a RequestHeader, k: &str) -> &'a str {
        r.headers.get(k).unwrap().to_str().unwrap()
    }

    #[test]
    fn the_first_hop_says_the_scheme() {
        assert!(says_https(Some("https")));
        assert!(says_https(Some("HTTPS, http")));
        assert!(!says_https(Some("http, https")));
        assert!(!says_https(Some("httpsx")));
        assert!(!says_https(None));
    }

    #[test]
    fn untrusted_client_cannot_spoof_the_chain() {
        let mut r = req();
        r.insert_header("x-real-ip", "6.6.6.6").unwrap();
        apply(&mut r, &hop("10.1.2.3", "10.1.2.3", false), "rid").unwrap();
        assert_eq!(get(&r, "x-forwarded-for"), "10.1.2.3");
        assert_eq!(get(&r, "x-real-ip"), "10.1.2.3");
        assert_eq!(get(&r, "x-forwarded-proto"), "http");
        assert_eq!(get(&r, "x-forwarded-host"), "shop.test");
        assert_eq!(get(&r, "x-request-id"), "rid");
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let mut r = req();
        apply(&mut r, &hop("10.1.2.3", "6.6.6.6", true), "rid").unwrap();
        assert_eq!(get(&r, "x-forwarded-for"), "6.6.6.6, 10.1.2.3");
        assert_eq!(get(&r, "x-real-ip"), "6.6.6.6");
        assert_eq!(get(&r, "x-forwarded-proto"), "https");
    }

    #[test]
    fn request_ids_from_strangers_are_replaced() {
        assert_eq!(request_id(Some("abc-123"), true), "abc-123");
        assert_ne!(request_id(Some("abc-123"), false), "abc-123");
        assert_ne!(request_id(Some("bad\nid"), true), "bad\nid");
        assert_eq!(request_id(None, false).len(), 36);
    }

    #[test]
    fn redirect_keeps_path_and_drops_default_port() {
        assert_eq!(
            https_location("shop.test", 443, Some("/a?b=1")),
            "https://shop.test/a?b=1"
        );
        assert_eq!(
            https_location("shop.test", 8443, None),
            "https://shop.test:8443/"
        );
    }

    #[test]
    fn the_client_behind_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(
            client_address(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("1.2.3.4, 10.0.0.7"), &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("6.6.6.6, 1.2.3.4"), &trusted),
            ip("1.2.3.4"),
            "a forged left part is not believed"
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), None, &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("junk"), &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(client_address(None, Some("1.2.3.4"), &trusted), None);
    }
}
