//! Whether a state-changing request to the gateway's own pages was sent by
//! one of its own pages. Pure. Checked once for every `/_auth/*` and
//! `/_account*` request that is not GET, HEAD or OPTIONS, before any
//! handler runs; never lets a cross-site, `null` or look-alike `Origin` in.

use url::Url;

/// Paths that take POSTs from servers, not browsers, and prove themselves
/// otherwise (a provider's signed logout token).
const SERVER_TO_SERVER: [&str; 1] = ["/_auth/backchannel-logout/"];

/// Whether `method` changes state (anything but GET, HEAD, OPTIONS).
pub fn changes_state(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Whether the request is exempt from the Origin check.
pub fn exempt(path: &str) -> bool {
    SERVER_TO_SERVER.iter().any(|p| path.starts_with(p))
}

/// Whether a browser request with these headers comes from `here`'s origin.
/// `Origin` decides when sent (`null` never matches); without it,
/// `Sec-Fetch-Site` must not say another site sent it.
pub fn same_origin(origin: Option<&str>, fetch_site: Option<&str>, here: &Url) -> bool {
    match origin {
        Some(o) => Url::parse(o.trim()).is_ok_and(|u| {
            u.origin() == here.origin() && u.username().is_empty() && u.path() == "/"
        }),
        None => !matches!(fetch_site, Some("cross-site" | "same-site")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_exact_origin_may_change_state() {
        let here = Url::parse("https://shop.test:8443/_auth/logout").unwrap();
        assert!(same_origin(Some("https://shop.test:8443"), None, &here));
        assert!(same_origin(Some("https://SHOP.test:8443"), None, &here));
        for bad in [
            "https://evil.test",
            "null",
            "",
            "https://shop.test",
            "http://shop.test:8443",
            "https://shop.test:8443.evil.test",
            "https://shop.test.evil.test:8443",
            "https://evil.test#https://shop.test:8443",
            "https://shop.test:8443@evil.test",
            "https://user@shop.test:8443",
            "file://",
        ] {
            assert!(!same_origin(Some(bad), None, &here), "{bad:?}");
        }
        assert!(same_origin(None, None, &here));
        assert!(same_origin(None, Some("same-origin"), &here));
        assert!(same_origin(None, Some("none"), &here));
        assert!(!same_origin(None, Some("cross-site"), &here));
        assert!(!same_origin(None, Some("same-site"), &here));
        assert!(changes_state(&http::Method::POST));
        assert!(changes_state(&http::Method::DELETE));
        assert!(!changes_state(&http::Method::GET));
        assert!(exempt("/_auth/backchannel-logout/idp"));
        assert!(!exempt("/_auth/logout"));
    }
}
