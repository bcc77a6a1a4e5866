use super::*;
use proptest::prelude::*;

fn strict() -> PathRules {
    PathRules::default()
}

fn ok(raw: &str) -> String {
    canonical(raw, &strict()).unwrap().into_owned()
}

fn refused(raw: &str) -> PathRefusal {
    canonical(raw, &strict()).unwrap_err()
}

#[test]
fn the_attack_battery_is_refused_or_read_as_its_real_route() {
    // What a once-decoding backend reads is what the routes see.
    assert_eq!(ok("/%61cct/x"), "/acct/x");
    assert_eq!(ok("//acct/x"), "/acct/x");
    assert_eq!(ok("/pub//acct"), "/pub/acct");
    assert_eq!(refused("/acct%2fsecret"), PathRefusal::EncodedSlash);
    assert_eq!(refused("/acct%5Csecret"), PathRefusal::EncodedSlash);
    assert_eq!(refused("/acct;x/y"), PathRefusal::Semicolon);
    assert_eq!(refused("/pub/..;/acct/x"), PathRefusal::Semicolon);
    assert_eq!(refused("/pub/%3b/acct"), PathRefusal::Semicolon);
    assert_eq!(refused("/pub/../acct"), PathRefusal::DotSegment);
    assert_eq!(refused("/pub/%2e%2E/acct"), PathRefusal::DotSegment);
    assert_eq!(refused("/pub/.%2e/acct"), PathRefusal::DotSegment);
    assert_eq!(refused("/./acct"), PathRefusal::DotSegment);
    assert_eq!(refused("/a\\b"), PathRefusal::Backslash);
    assert_eq!(refused("/a%00b"), PathRefusal::Control);
    assert_eq!(refused("/a%0ab"), PathRefusal::Control);
    assert_eq!(refused("/a%zzb"), PathRefusal::BadEncoding);
    assert_eq!(refused("/a%u0061"), PathRefusal::BadEncoding);
    assert_eq!(refused("/a%4"), PathRefusal::BadEncoding);
    // Overlong UTF-8 (`%c0%af` is `/` to old decoders) is not UTF-8.
    assert_eq!(refused("/a%c0%afb"), PathRefusal::NotUtf8);
    assert_eq!(refused("acct"), PathRefusal::NotAbsolute);
}

#[test]
fn ordinary_paths_pass_unchanged_without_allocating() {
    for p in ["/", "/acct/x", "/a/b/", "/api/v1/orders", "/file-name_1~x"] {
        assert!(
            matches!(canonical(p, &strict()), Ok(Cow::Borrowed(_))),
            "{p}"
        );
    }
    assert_eq!(
        ok("/.well-known/omnigate/jwks.json"),
        "/.well-known/omnigate/jwks.json"
    );
    assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
    assert_eq!(ok("/a%20b"), "/a%20b");
    assert_eq!(ok("/a%3fb"), "/a%3Fb");
    assert_eq!(ok("/a/"), "/a/");
    assert_eq!(ok("/a//"), "/a/");
    assert_eq!(ok("//"), "/");
    // What a browser would encode is written encoded (found by fuzzing).
    assert_eq!(ok("/'?"), "/'%3F");
    assert_eq!(ok("/a b\"{}"), "/a%20b%22%7B%7D");
    assert_eq!(ok("/caf\u{e9}"), "/caf%C3%A9");
}

#[test]
fn each_rule_can_be_relaxed() {
    let relaxed = PathRules {
        keep_encoded_slashes: true,
        keep_semicolons: true,
        merge_slashes: false,
    };
    assert_eq!(canonical("/acct%2fx", &relaxed).unwrap(), "/acct%2Fx");
    assert_eq!(
        canonical("/acct;jsessionid=1/y", &relaxed).unwrap(),
        "/acct;jsessionid=1/y"
    );
    assert_eq!(
        canonical("//x", &relaxed).unwrap_err(),
        PathRefusal::EmptySegment
    );
    // A servlet container still reads `..;x` as `..`.
    assert_eq!(
        canonical("/pub/..;x/acct", &relaxed).unwrap_err(),
        PathRefusal::DotSegment
    );
    // NUL and dot segments are never relaxed.
    assert_eq!(
        canonical("/a%00", &relaxed).unwrap_err(),
        PathRefusal::Control
    );
}

/// What a backend that decodes the path once reads (bytes, lossy text).
fn decode_once(p: &str) -> String {
    let bytes: Vec<u8> =
        url::form_urlencoded::parse(format!("x={}", p.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The segments a backend that merges slashes and drops `;params` routes on.
fn backend_segments(decoded: &str) -> Vec<String> {
    decoded
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.split(';').next().unwrap_or("").to_string())
        .collect()
}

fn tricky_path() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "/",
        "/",
        "a",
        "acct",
        "x",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%00",
        ";",
        "%3b",
        "\\",
        "%61",
        "%41",
        "%25",
        "%252f",
        "%c0%af",
        "%e2%82%ac",
        "~",
        "%7e",
        "%",
        "%g1",
        "%20",
        "%3f",
        " ",
        "?",
        "\"",
        "{",
        "#",
        "\u{e9}",
        "`",
    ]);
    prop::collection::vec(pieces, 0..10).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #[test]
    fn canonical_paths_are_read_alike_by_every_backend(raw in tricky_path()) {
        let rules = strict();
        if let Ok(c) = canonical(&raw, &rules) {
            let c = c.into_owned();
            // A fixed point: canonicalising again changes nothing.
            prop_assert_eq!(canonical(&c, &rules).map(Cow::into_owned), Ok(c.clone()));
            // Nothing left that backends read differently.
            prop_assert!(!c.contains("//") && !c.contains(';') && !c.contains('\\'));
            let upper = c.to_ascii_uppercase();
            prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"));
            // A browser (WHATWG URL) resolves it to itself: no dot segments.
            let u = url::Url::parse(&format!("http://h{c}")).unwrap();
            prop_assert_eq!(u.path(), c.as_str());
            // A backend that decodes once, merges and drops `;params` routes
            // on the segments the gateway matched.
            let once = decode_once(&c);
            let segs = backend_segments(&once);
            prop_assert!(segs.iter().all(|s| s != "." && s != ".."));
            prop_assert_eq!(segs.len(), c.split('/').filter(|s| !s.is_empty()).count());
            // And it means to that backend what the raw path meant.
            prop_assert_eq!(backend_segments(&decode_once(&raw)), segs);
        }
    }
}
