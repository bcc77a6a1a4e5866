//! Where the gate sends a browser and what it tells an API client: pure
//! functions of the request's method, URL and headers.

use crate::auth::token::TokenError;

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Whether `method` is one a browser may repeat by following a link.
fn replayable(method: &http::Method) -> bool {
    method == http::Method::GET || method == http::Method::HEAD
}

/// The path and query of `referer` when it is a page of `host`.
fn same_host_page(referer: Option<&str>, host: &str) -> Option<String> {
    let u = url::Url::parse(referer?).ok()?;
    let path = u.path();
    if !u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host)) || path.starts_with("//") {
        return None;
    }
    Some(match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => path.to_string(),
    })
}

/// Where a browser comes back to after signing in: exactly this URL for a
/// page; for a form's POST (never replayed) the page that held it, else `/`.
pub fn back_after_sign_in(
    method: &http::Method,
    path_and_query: &str,
    referer: Option<&str>,
    host: &str,
) -> String {
    if replayable(method) {
        path_and_query.to_string()
    } else {
        same_host_page(referer, host).unwrap_or_else(|| "/".into())
    }
}

/// The sign-in page that returns to `back` (registration first if asked).
pub fn sign_in(back: &str, register_first: bool) -> String {
    format!(
        "/_auth/login?return_to={}{}",
        enc(back),
        if register_first { "&register=1" } else { "" }
    )
}

/// The consent prompt for `purposes` that returns to `back`.
pub fn consent_prompt(purposes: &[&str], back: &str) -> String {
    format!(
        "/_account/consent?ask={}&return_to={}",
        enc(&purposes.join(",")),
        enc(back)
    )
}

/// Where a browser returns after the consent prompt: this page for a GET,
/// the start page for anything else.
pub fn back_after_consent(method: &http::Method, path_and_query: &str) -> String {
    if method == http::Method::GET {
        path_and_query.to_string()
    } else {
        "/".into()
    }
}

/// `WWW-Authenticate` for a missing (`None`) or refused bearer credential.
pub fn bearer_challenge(err: Option<&TokenError>) -> String {
    match err {
        None => "Bearer realm=\"omnigate\"".to_string(),
        Some(e) => format!(
            "Bearer realm=\"omnigate\", error=\"invalid_token\", error_description=\"{}\"",
            quoted(&e.to_string())
        ),
    }
}

/// `WWW-Authenticate` for a token without these scopes.
pub fn scope_challenge(missing: &[String]) -> String {
    format!(
        "Bearer realm=\"omnigate\", error=\"insufficient_scope\", scope=\"{}\"",
        quoted(&missing.join(" "))
    )
}

/// Text that fits inside a quoted-string of a header value.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}

/// Whether a request is the page a browser navigates to (not an image,
/// script or fetch made by one).
pub fn is_navigation(sec_fetch_dest: Option<&[u8]>) -> bool {
    sec_fetch_dest.is_none_or(|d| d == b"document")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn query(location: &str, key: &str) -> Option<String> {
        let u = url::Url::parse(&format!("https://h.test{location}")).ok()?;
        u.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    #[test]
    fn a_page_comes_back_to_itself_and_a_form_to_its_page() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        assert_eq!(back_after_sign_in(&get, "/a?b=1", None, "h.test"), "/a?b=1");
        let referer = Some("https://h.test/cart?x=1");
        assert_eq!(
            back_after_sign_in(&post, "/buy", referer, "h.test"),
            "/cart?x=1"
        );
        let foreign = Some("https://evil.test/cart");
        assert_eq!(back_after_sign_in(&post, "/buy", foreign, "h.test"), "/");
        assert_eq!(
            back_after_sign_in(&post, "/buy", Some("junk"), "h.test"),
            "/"
        );
        assert_eq!(back_after_consent(&post, "/buy"), "/");
    }

    #[test]
    fn challenges_stay_one_quoted_string() {
        let missing = vec!["a\"b".to_string(), "c".to_string()];
        assert_eq!(
            scope_challenge(&missing),
            "Bearer realm=\"omnigate\", error=\"insufficient_scope\", scope=\"ab c\""
        );
        assert_eq!(bearer_challenge(None), "Bearer realm=\"omnigate\"");
    }

    proptest! {
        /// Whatever the URL, the sign-in link is ours and carries it back intact.
        #[test]
        fn sign_in_carries_the_url_back_intact(pq in "/[ -~]{0,40}", register in any::<bool>()) {
            let to = sign_in(&pq, register);
            prop_assert!(to.starts_with("/_auth/login?return_to="));
            prop_assert_eq!(query(&to, "return_to"), Some(pq));
            prop_assert_eq!(query(&to, "register").is_some(), register);
        }

        /// A form's return is a path of the same host, never another site.
        #[test]
        fn a_form_returns_only_within_its_host(referer in "[ -~]{0,40}", host in "[a-z]{1,8}\\.test") {
            let back = back_after_sign_in(&http::Method::POST, "/x", Some(&referer), &host);
            prop_assert!(back.starts_with('/') && !back.starts_with("//"));
            if back != "/" {
                let u = url::Url::parse(&referer).unwrap();
                prop_assert!(u.host_str().unwrap().eq_ignore_ascii_case(&host));
            }
        }

        #[test]
        fn the_consent_prompt_names_every_purpose(ids in proptest::collection::vec("[a-z_]{1,10}", 1..4), pq in "/[ -~]{0,30}") {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let to = consent_prompt(&refs, &pq);
            prop_assert_eq!(query(&to, "ask"), Some(ids.join(",")));
            prop_assert_eq!(query(&to, "return_to"), Some(pq));
        }

        #[test]
        fn challenges_are_always_header_values(s in "\\PC{0,40}") {
            let c = scope_challenge(&[s]);
            prop_assert!(http::HeaderValue::from_str(&c).is_ok());
        }
    }
}
