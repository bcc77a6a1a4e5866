//! Forms and their `Origin`: parsing never panics, and a state change is
//! taken only from this exact origin.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omnigate::login::origin::same_origin;

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    let here = url::Url::parse("https://shop.test:8443/_auth/logout").unwrap();
    let Ok(text) = std::str::from_utf8(data) else { return };
    if same_origin(Some(text), None, &here) {
        let u = url::Url::parse(text.trim()).expect("an accepted Origin parses");
        assert_eq!(u.origin(), here.origin(), "{text:?}");
    }
    for (k, v) in &pairs {
        if k == "origin" && same_origin(Some(v), None, &here) {
            assert_eq!(url::Url::parse(v.trim()).unwrap().origin(), here.origin());
        }
    }
});
