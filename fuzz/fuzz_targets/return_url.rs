//! Whatever a `return_to` says, the browser lands on a configured host and
//! port, exactly where `resolve` said.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omnigate::login::destination::{location, resolve};

fuzz_target!(|data: &[u8]| {
    let Ok(candidate) = std::str::from_utf8(data) else { return };
    let allowed = |h: &str, p: u16| (h == "shop.test" || h == "admin.test") && p == 8443;
    let here = url::Url::parse("https://shop.test:8443/_auth/login").unwrap();
    if let Some(target) = resolve(&here, candidate, allowed) {
        let loc = location(&here, &target);
        let landed = here.join(&loc).expect("an emitted Location parses");
        assert_eq!(landed, target, "{candidate:?} -> {loc:?}");
        assert!(allowed(landed.host_str().unwrap(), landed.port_or_known_default().unwrap()));
        assert!(landed.username().is_empty() && landed.password().is_none());
    }
});
