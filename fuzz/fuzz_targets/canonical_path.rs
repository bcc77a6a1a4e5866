//! A canonical path is a fixed point and holds nothing a backend reads
//! another way: no `//`, `;`, `\`, encoded separators, NUL or dot segments.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omnigate::edge::path::{canonical, PathRules};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let rules = PathRules::default();
    if let Ok(c) = canonical(raw, &rules) {
        let c = c.into_owned();
        assert_eq!(canonical(&c, &rules).map(|x| x.into_owned()), Ok(c.clone()));
        assert!(c.starts_with('/') && !c.contains("//") && !c.contains(';') && !c.contains('\\'));
        let up = c.to_ascii_uppercase();
        assert!(!up.contains("%2F") && !up.contains("%5C") && !up.contains("%00") && !up.contains("%3B"));
        assert!(c.split('/').all(|s| s != "." && s != ".."));
        if c.is_ascii() && !c.bytes().any(|b| b < 0x21 || b == 0x7f) {
            let u = url::Url::parse(&format!("http://h{c}")).unwrap();
            assert_eq!(u.path(), c.as_str(), "a browser resolves it to itself");
        }
    }
});
