//! No header name whose backend reading (lower-case, `_` as `-`) is one the
//! gateway owns is ever kept, whatever the setting and trust.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omnigate::edge::header_policy::{backend_name, is_chain, is_identity, is_path_override, HeaderPolicy, Underscores, Verdict};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let (mode, name) = (data[0], &data[1..]);
    let Ok(name) = http::HeaderName::from_bytes(name) else { return };
    let underscores = match mode % 3 {
        0 => Underscores::Drop,
        1 => Underscores::Keep,
        _ => Underscores::Reject,
    };
    let trusted = mode & 0x80 != 0;
    let policy = HeaderPolicy::new(underscores, ["x-forwarded-user".to_string(), "remote-user".to_string()].into());
    let seen = backend_name(name.as_str());
    let owned = is_identity(&seen, &policy.mapped)
        || is_path_override(&seen)
        || (is_chain(&seen) && (!trusted || name.as_str().contains('_')));
    let verdict = policy.verdict(name.as_str(), trusted);
    if owned {
        assert_ne!(verdict, Verdict::Keep, "{name} kept");
    }
    if underscores == Underscores::Drop && name.as_str().contains('_') {
        assert_eq!(verdict, Verdict::Drop);
    }
    let mut req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
    req.append_header(name.clone(), "v").unwrap();
    match policy.apply(&mut req, trusted) {
        Ok(()) => assert_eq!(req.headers.contains_key(&name), verdict == Verdict::Keep),
        Err(_) => assert_eq!(verdict, Verdict::Reject),
    }
});
