use super::*;
use proptest::prelude::*;

const HOSTS: [&str; 3] = ["shop.test", "admin.test", "auth.shop.test"];

fn allowed(host: &str, port: u16) -> bool {
    HOSTS.contains(&host) && port == 8443
}

fn here() -> Url {
    Url::parse("https://shop.test:8443/_auth/login?return_to=x").unwrap()
}

fn lands(candidate: &str) -> Option<String> {
    let t = resolve(&here(), candidate, allowed)?;
    let loc = location(&here(), &t);
    // The browser model follows what was emitted.
    Some(here().join(&loc).unwrap().to_string())
}

#[test]
fn the_reported_open_redirects_stay_home() {
    for bad in [
        "//evil.test/",
        "///evil.test/",
        "////evil.test/",
        "\\\\evil.test/",
        "/\\evil.test/",
        "https://evil.test/",
        "https://shop.test.evil.test:8443/",
        "https://shop.test:8443@evil.test:8443/",
        "https://user@shop.test:8443/",
        "https://shop.test:1/",
        "javascript:alert(1)",
        "data:text/html,x",
        "ftp://shop.test:8443/",
        "/a\nb",
    ] {
        assert_eq!(lands(bad), None, "{bad:?}");
    }
    // Dot segments that collapse into `//` keep the browser on this host.
    for tricky in [
        "/.//evil.test/",
        "/x/..//evil.test/",
        "/%2e//evil.test/",
        "https://admin.test:8443//evil.test/",
    ] {
        let landed = lands(tricky).unwrap();
        let u = Url::parse(&landed).unwrap();
        assert!(
            allowed(u.host_str().unwrap(), u.port_or_known_default().unwrap()),
            "{tricky:?} -> {landed}"
        );
    }
    let t = resolve(&here(), "https://admin.test:8443//evil.test/", allowed).unwrap();
    assert_eq!(location(&here(), &t), "https://admin.test:8443//evil.test/");
    let t = resolve(&here(), "/.//evil.test/", allowed).unwrap();
    assert_eq!(location(&here(), &t), "https://shop.test:8443//evil.test/");
}

#[test]
fn ordinary_destinations_keep_their_short_form() {
    let t = resolve(&here(), "/checkout/payment?step=2", allowed).unwrap();
    assert_eq!(location(&here(), &t), "/checkout/payment?step=2");
    let t = resolve(&here(), "https://ADMIN.test:8443/c?x=1", allowed).unwrap();
    assert_eq!(location(&here(), &t), "https://admin.test:8443/c?x=1");
    let t = resolve(&here(), "/_account", allowed).unwrap();
    assert_eq!(location(&here(), &t), "/_account");
}

fn candidate() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "/",
        "//",
        "\\",
        ".",
        "..",
        "%2e",
        "%2f",
        "%5c",
        "evil.test",
        "shop.test",
        "admin.test",
        ":8443",
        ":1",
        "@",
        "https:",
        "http:",
        "javascript:",
        "?",
        "#",
        "x",
        "%00",
        " ",
        "\t",
        ";",
        "%40",
        "[::1]",
        "127.0.0.1",
    ]);
    prop::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
}

proptest! {
    /// Whatever was asked for, the browser lands on a configured host and
    /// port, exactly where `resolve` said.
    #[test]
    fn the_final_url_is_always_on_a_configured_host(c in candidate()) {
        if let Some(t) = resolve(&here(), &c, allowed) {
            let loc = location(&here(), &t);
            let landed = here().join(&loc).unwrap();
            prop_assert_eq!(&landed, &t);
            prop_assert!(allowed(landed.host_str().unwrap(), landed.port_or_known_default().unwrap()));
            prop_assert!(landed.username().is_empty() && landed.password().is_none());
        }
    }
}
