//! The request a forward-auth call asks about: the proxy in front (nginx
//! `auth_request`, Traefik ForwardAuth, HAProxy, Envoy `ext_authz`) names
//! the method, scheme, host and URI its client sent. Pure; only a trusted
//! proxy's headers are read this way (the caller checks).

use http::HeaderMap;

/// Where forward-auth is answered; Envoy appends the original path to it.
pub const PATH: &str = "/_omnigate/forward-auth";

/// The original request, as the proxy in front received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: http::Method,
    pub https: bool,
    /// As sent: it is normalised and checked like any `Host`.
    pub host: String,
    /// Origin form, starting with `/`; canonicalised like any path.
    pub path_and_query: String,
}

/// Whether `path` is the forward-auth endpoint (with or without a suffix).
pub fn is_endpoint(path: &str) -> bool {
    path.strip_prefix(PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What a trusted proxy's `X-Forwarded-Proto` says of its client: HTTPS
/// (true) or HTTP (false) from the first, client-facing item of the list;
/// None for anything else. The one reading of it, for forward-auth and for
/// the pages behind a TLS-terminating proxy.
pub fn https_from_proto(value: &str) -> Option<bool> {
    let p = value.split(',').next()?.trim();
    if p.eq_ignore_ascii_case("https") {
        Some(true)
    } else if p.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// The first value of a header, and its first list item when `list`.
fn first<'h>(headers: &'h HeaderMap, name: &str, list: bool) -> Option<&'h str> {
    let v = headers.get(name)?.to_str().ok()?;
    let v = if list { v.split(',').next()? } else { v };
    Some(v.trim()).filter(|v| !v.is_empty())
}

/// The headers that name the original request; a caller sets all four
/// (Traefik does, the nginx snippet does) or none (Envoy `ext_authz`).
const NAMED_BY: [&str; 4] = [
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
];

/// Reads the original request from the forward-auth call: the four
/// `X-Forwarded-Method`/`-Proto`/`-Host`/`-Uri` the proxy in front sets,
/// or, with none of them, the call itself with [`PATH`] taken off (Envoy
/// `ext_authz`: its method, `Host` and the appended path). A partial set is
/// refused: a proxy that passed its client's spellings through would
/// otherwise let the client name another URL to be judged.
pub fn read(
    headers: &HeaderMap,
    own_method: &http::Method,
    own_path_and_query: &str,
    tls: bool,
) -> Result<Original, &'static str> {
    let present = NAMED_BY
        .iter()
        .filter(|n| headers.contains_key(**n))
        .count();
    if present == 0 {
        return envoy(headers, own_method, own_path_and_query, tls);
    }
    if present < NAMED_BY.len()
        || NAMED_BY
            .iter()
            .any(|n| headers.get_all(*n).iter().count() > 1)
    {
        return Err("send exactly one each of X-Forwarded-Method, -Proto, -Host and -Uri");
    }
    let method = first(headers, "x-forwarded-method", false)
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
        .ok_or("X-Forwarded-Method is not an HTTP method")?;
    let https = first(headers, "x-forwarded-proto", false)
        .and_then(https_from_proto)
        .ok_or("X-Forwarded-Proto is neither http nor https")?;
    let host = first(headers, "x-forwarded-host", true)
        .ok_or("X-Forwarded-Host is empty")?
        .to_string();
    let path_and_query = origin_form(first(headers, "x-forwarded-uri", false).unwrap_or(""))?;
    Ok(Original {
        method,
        https,
        host,
        path_and_query,
    })
}

/// The Envoy form: the call is the original request, its path appended.
fn envoy(
    headers: &HeaderMap,
    own_method: &http::Method,
    own_path_and_query: &str,
    tls: bool,
) -> Result<Original, &'static str> {
    let rest = own_path_and_query.strip_prefix(PATH).unwrap_or_default();
    if !rest.starts_with('/') {
        // The endpoint itself (maybe with its own `?redirect=`): nothing named.
        return Err("the original request is not named: send X-Forwarded-Method, -Proto, -Host and -Uri (or append the path to the endpoint)");
    }
    let host = first(headers, "host", false).ok_or("no Host names the original host")?;
    Ok(Original {
        method: own_method.clone(),
        https: tls,
        host: host.to_string(),
        path_and_query: origin_form(rest)?,
    })
}

/// `pq` if it is an origin-form request target (`/path?query`).
fn origin_form(pq: &str) -> Result<String, &'static str> {
    if !pq.starts_with('/') || pq.starts_with("//") {
        return Err("the original URI is not a path starting with `/`");
    }
    if pq.parse::<http::uri::PathAndQuery>().is_err() {
        return Err("the original URI is not a valid request target");
    }
    Ok(pq.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn get(h: &[(&str, &str)], own: &str) -> Result<Original, &'static str> {
        read(&headers(h), &http::Method::GET, own, false)
    }

    fn named(method: &str, proto: &str, host: &str, uri: &str) -> Vec<(&'static str, String)> {
        vec![
            ("host", "omnigate:8080".to_string()),
            ("x-forwarded-method", method.to_string()),
            ("x-forwarded-proto", proto.to_string()),
            ("x-forwarded-host", host.to_string()),
            ("x-forwarded-uri", uri.to_string()),
        ]
    }

    fn read_named(h: &[(&'static str, String)]) -> Result<Original, &'static str> {
        let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get(&pairs, PATH)
    }

    #[test]
    fn traefik_names_every_part() {
        let o = read_named(&named("POST", "https", "shop.test", "/cart?x=1")).unwrap();
        assert_eq!(o.method, http::Method::POST);
        assert!(o.https);
        assert_eq!(o.host, "shop.test");
        assert_eq!(o.path_and_query, "/cart?x=1");
    }

    #[test]
    fn envoy_appends_the_path() {
        let o = read(
            &headers(&[("host", "api.test")]),
            &http::Method::DELETE,
            &format!("{PATH}/v1/orders?id=2"),
            true,
        )
        .unwrap();
        assert_eq!(o.method, http::Method::DELETE);
        assert!(o.https);
        assert_eq!(
            (o.host.as_str(), o.path_and_query.as_str()),
            ("api.test", "/v1/orders?id=2")
        );
    }

    #[test]
    fn a_partial_or_doubled_set_is_refused() {
        // A client's spelling passed through beside the proxy's own, or
        // instead of one it did not set, never picks the URL judged.
        let mut h = named("GET", "https", "shop.test", "/admin");
        h.remove(4);
        assert!(read_named(&h).unwrap_err().contains("exactly one each"));
        let mut h = named("GET", "https", "shop.test", "/admin");
        h.push(("x-forwarded-uri", "/public".into()));
        assert!(read_named(&h).is_err());
        assert!(get(
            &[("host", "a.test"), ("x-forwarded-host", "b.test")],
            &format!("{PATH}/x")
        )
        .is_err());
    }

    #[test]
    fn what_cannot_be_read_is_refused_with_the_reason() {
        assert!(get(&[("host", "a.test")], PATH)
            .unwrap_err()
            .contains("X-Forwarded-Method"));
        assert!(read_named(&named("GET", "https", "a", "//evil.test/")).is_err());
        assert!(read_named(&named("GET", "https", "a", "https://evil.test/")).is_err());
        assert!(read_named(&named("GET", "ftp", "a", "/")).is_err());
        assert!(read_named(&named("G T", "https", "a", "/")).is_err());
        assert!(read_named(&named("GET", "https", "", "/")).is_err());
        assert!(get(&[], &format!("{PATH}/x")).is_err());
    }

    #[test]
    fn the_endpoint_is_its_path_or_below() {
        assert!(is_endpoint(PATH));
        assert!(is_endpoint(&format!("{PATH}/x")));
        assert!(!is_endpoint(&format!("{PATH}x")));
        assert!(!is_endpoint("/_omnigate/forward"));
    }

    proptest! {
        /// Whatever the headers say, an accepted URI is an origin-form path,
        /// the one named.
        #[test]
        fn an_accepted_uri_is_always_a_path(uri in "[ -~]{0,30}", host in "[!-~]{0,20}") {
            if let Ok(o) = read_named(&named("GET", "https", &host, &uri)) {
                prop_assert!(o.path_and_query.starts_with('/'));
                prop_assert!(!o.path_and_query.starts_with("//"));
                prop_assert!(o.path_and_query.parse::<http::uri::PathAndQuery>().is_ok());
                // A field value's surrounding whitespace is not part of it (RFC 9110 §5.5).
                prop_assert_eq!(o.path_and_query, uri.trim_matches([' ', '\t']));
            }
        }

        /// Forward-auth and the pages read one `X-Forwarded-Proto` alike:
        /// the scheme of its first item, in any case, and nothing else.
        #[test]
        fn the_scheme_is_the_first_item_only(first in "[ a-zA-Z]{0,8}", rest in "(,[ a-z]{0,6}){0,2}") {
            let value = format!("{first}{rest}");
            let want = match first.trim().to_ascii_lowercase().as_str() {
                "https" => Some(true),
                "http" => Some(false),
                _ => None,
            };
            prop_assert_eq!(https_from_proto(&value), want);
            let named = read_named(&named("GET", &value, "a.test", "/"));
            prop_assert_eq!(named.ok().map(|o| o.https), want);
        }

        /// The Envoy form gives back exactly the suffix.
        #[test]
        fn the_suffix_is_the_path(suffix in "/[a-z0-9/._-]{0,30}") {
            prop_assume!(!suffix.starts_with("//"));
            let o = get(&[("host", "a.test")], &format!("{PATH}{suffix}")).unwrap();
            prop_assert_eq!(o.path_and_query, suffix);
        }
    }
}
