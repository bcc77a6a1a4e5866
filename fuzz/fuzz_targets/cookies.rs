//! Cookie headers: the gateway's own cookies never reach a backend, a value
//! read is one the header holds, and only a guest id with a valid MAC is taken.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omnigate::session::{cookie, guest_from_cookie, without_own_cookies, GuestKey};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    if let Some(kept) = without_own_cookies(header) {
        for pair in kept.split(';') {
            let name = pair.trim().split('=').next().unwrap_or("");
            assert!(!name.starts_with("__Host-omnigate") && !name.starts_with("__Secure-omnigate"), "{kept:?}");
        }
    }
    for name in ["__Host-omnigate", "__Host-omnigate-guest", "x"] {
        if let Some(v) = cookie(Some(header), name) {
            assert!(header.contains(v));
            let key = GuestKey::new(b"fuzz-key");
            // Only ids this key signed: the fuzzer cannot forge a MAC.
            assert!(guest_from_cookie(v, &key).is_none(), "forged guest id accepted: {v}");
        }
    }
});
