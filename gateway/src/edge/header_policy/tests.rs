use super::*;
use proptest::prelude::*;

fn policy(underscores: Underscores) -> HeaderPolicy {
    HeaderPolicy::new(
        underscores,
        [
            "x-forwarded-user".to_string(),
            "x-remote-user".to_string(),
            "remote-user".to_string(),
        ]
        .into(),
    )
}

/// The reference, written apart from the policy: the name a CGI-style
/// backend reads (`HTTP_…`), and whether that name is the gateway's.
fn owned_by_gateway(name: &str, trusted: bool, mapped: &BTreeSet<String>) -> bool {
    let cgi = |n: &str| format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_"));
    let seen = cgi(name);
    let identity = seen.starts_with("HTTP_X_CUSTOMER_")
        || seen.starts_with("HTTP_X_OMNIGATE_")
        || [
            "HTTP_X_GUEST_ID",
            "HTTP_X_PREVIOUS_GUEST_ID",
            "HTTP_X_AUTH_METHOD",
        ]
        .contains(&seen.as_str())
        || mapped.iter().any(|m| cgi(m) == seen);
    let path = ["HTTP_X_ORIGINAL_URL", "HTTP_X_REWRITE_URL"].contains(&seen.as_str());
    let chain = seen.starts_with("HTTP_X_FORWARDED_")
        || ["HTTP_X_REAL_IP", "HTTP_TRUE_CLIENT_IP", "HTTP_FORWARDED"].contains(&seen.as_str());
    identity || path || (chain && (!trusted || name.contains('_')))
}

#[test]
fn underscore_and_case_spellings_of_owned_headers_never_pass() {
    let p = policy(Underscores::Keep);
    for name in [
        "x_customer_id",
        "X-Customer_Id",
        "X_OMNIGATE_ASSERTION",
        "x_guest_id",
        "X_Forwarded_User",
        "x-remote_user",
        "x_forwarded_for",
        "X_Real_IP",
        "x-original_url",
        "x_rewrite_url",
    ] {
        assert_eq!(p.verdict(name, true), Verdict::Drop, "{name}");
        assert_eq!(p.verdict(name, false), Verdict::Drop, "{name}");
    }
    assert_eq!(p.verdict("x_custom_thing", false), Verdict::Keep);
}

#[test]
fn by_default_every_underscore_name_is_dropped_or_refused_when_asked() {
    assert_eq!(
        policy(Underscores::Drop).verdict("x_app_flag", false),
        Verdict::Drop
    );
    assert_eq!(
        policy(Underscores::Reject).verdict("x_app_flag", false),
        Verdict::Reject
    );
    assert_eq!(
        policy(Underscores::Drop).verdict("x-app-flag", false),
        Verdict::Keep
    );
}

#[test]
fn the_chain_of_a_trusted_proxy_passes_in_its_real_spelling_only() {
    let p = policy(Underscores::Keep);
    assert_eq!(p.verdict("x-forwarded-for", true), Verdict::Keep);
    assert_eq!(p.verdict("x-real-ip", true), Verdict::Keep);
    assert_eq!(p.verdict("x-forwarded-for", false), Verdict::Drop);
    assert_eq!(p.verdict("forwarded", false), Verdict::Drop);
    assert_eq!(p.verdict("true-client-ip", false), Verdict::Drop);
    // A path override is no one's to send.
    assert_eq!(p.verdict("x-original-url", true), Verdict::Drop);
    // Identity is never a proxy's to set either.
    assert_eq!(p.verdict("x-forwarded-user", true), Verdict::Drop);
    assert_eq!(p.verdict("x-customer-id", true), Verdict::Drop);
}

#[test]
fn apply_removes_every_doomed_spelling_and_keeps_the_rest() {
    let p = policy(Underscores::Drop);
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    for (k, v) in [
        ("X_Customer_Id", "cus_victim"),
        ("X-Customer-Id", "cus_victim"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Original-URL", "/acct/x"),
        ("Accept", "*/*"),
        ("X-App", "1"),
    ] {
        req.append_header(k, v).unwrap();
    }
    p.apply(&mut req, false).unwrap();
    let left: BTreeSet<&str> = req.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, BTreeSet::from(["accept", "x-app"]));
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.append_header("x_app", "1").unwrap();
    assert_eq!(
        policy(Underscores::Reject).apply(&mut req, false),
        Err("x_app".to_string())
    );
}

/// Names built from pieces of owned names with random case and separators.
fn header_name() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "x",
        "customer",
        "id",
        "email",
        "omnigate",
        "assertion",
        "guest",
        "previous",
        "auth",
        "method",
        "forwarded",
        "for",
        "user",
        "real",
        "ip",
        "true",
        "client",
        "original",
        "url",
        "rewrite",
        "remote",
        "host",
        "proto",
        "accept",
        "app",
    ]);
    (
        prop::collection::vec(pieces, 1..5),
        prop::collection::vec(prop::bool::ANY, 5),
        prop::collection::vec(prop::bool::ANY, 5),
    )
        .prop_map(|(parts, seps, upper)| {
            let mut s = String::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    s.push(if seps[i] { '_' } else { '-' });
                }
                if upper[i] {
                    s.push_str(&part.to_ascii_uppercase());
                } else {
                    s.push_str(part);
                }
            }
            s
        })
}

proptest! {
    /// Whatever the spelling, a header the reference calls the gateway's
    /// never survives, with any underscore setting, trusted or not.
    #[test]
    fn no_spelling_of_an_owned_header_survives(
        name in header_name(),
        trusted in prop::bool::ANY,
        mode in prop::sample::select(vec![Underscores::Drop, Underscores::Keep, Underscores::Reject]),
    ) {
        let p = policy(mode);
        if owned_by_gateway(&name, trusted, &p.mapped) {
            prop_assert_ne!(p.verdict(&name, trusted), Verdict::Keep, "{} passed", name);
        }
        if mode == Underscores::Drop && name.contains('_') {
            prop_assert_eq!(p.verdict(&name, trusted), Verdict::Drop);
        }
        // Nothing outside the gateway's names is touched by a `-` spelling.
        if !name.contains('_') && !owned_by_gateway(&name, trusted, &p.mapped) {
            let seen = backend_name(&name);
            let extra = is_chain(&seen) || is_path_override(&seen);
            if !extra {
                prop_assert_eq!(p.verdict(&name, trusted), Verdict::Keep, "{} dropped", name);
            }
        }
    }
}
