//! The pages walked as a new customer walks them, in real Chromium: each
//! problem found that way, fixed and kept fixed (issue 11). Screenshots land
//! in `tests/artifacts/`.

use serde_json::json;

use crate::accounts::headers_on;
use crate::consent::{admin_consents, consent_config, purposes};
use crate::support::*;

const PASSWORD: &str = "violet kettle 42 morning";

/// The store upstream, which also serves the shop's logo at `/logo.svg`.
async fn store_with_logo() -> Upstream {
    Upstream::start(|req| async move {
        if req.uri().path() == "/logo.svg" {
            let svg = "<svg xmlns='http://www.w3.org/2000/svg' width='120' height='40'><rect width='120' height='40' fill='#1d4ed8'/></svg>";
            text_response(200, "image/svg+xml", svg.to_string())
        } else {
            echo_response("store", &req)
        }
    })
    .await
}

#[tokio::test]
async fn registration_keeps_choices_consent_prompts_have_a_way_out_and_terms_stay() {
    let sink = MailSink::start().await;
    let store = store_with_logo().await;
    let crm = Upstream::echo("crm").await;
    let ports = reserve_ports();
    let https = ports["https"];
    let cfg = consent_config(&sink, &store, &crm, "pages: { logo: /logo.svg }\n");
    let gw = Gateway::start_on(ports, &cfg, &[("consent.yaml", &purposes(1))]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "walk_consent",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/_auth/register"), "screenshot": "01-register"},
            {"fill": ["#register-email", "noor@example.test"]},
            {"fill": ["#register-password", "password123"]},
            {"click": "#register-terms"},
            {"click": "#register-consent-marketing_email"},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "too common", "screenshot": "02-error-keeps-ticks", "axe": true},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"click": "main a.button", "waitText": "x-customer-id"},
            {"goto": format!("{base}/_account/consent"), "waitText": "Your consents", "screenshot": "03-terms-stay", "axe": true},
            {"click": "button[aria-label='Give consent: Recommendations']", "waitText": "Saved.", "screenshot": "04-saved-names-it"},
            {"click": "a[href^='/_account/consent/receipt/']", "waitText": "Consent receipt", "screenshot": "05-receipt", "axe": true},
            {"goto": format!("{base}/_account/consent")},
            {"click": "button[aria-label='Withdraw: Recommendations']", "waitText": "Saved."},
            {"goto": format!("{base}/recommendations"), "waitText": "Before you continue"},
            {"click": "button[type=submit]", "waitText": "Nothing was ticked", "screenshot": "06-nothing-ticked", "axe": true},
            {"click": "a:text-is('Not now')", "waitText": "x-customer-id"},
            {"goto": format!("{base}/partners/deals")},
        ]),
    )
    .await;
    for (i, s) in seen.iter().enumerate() {
        assert!(s.get("error").is_none(), "step {i}: {s}");
    }

    // The logo shows (the page CSP allows images from this origin).
    let images = seen[0]["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["loaded"], true, "{images:?}");
    // A form error keeps what was ticked, and the next submit records it.
    assert_eq!(seen[5]["status"], 422);
    let ticked = seen[5]["checked"].as_array().unwrap();
    assert!(
        ticked.contains(&json!("register-terms"))
            && ticked.contains(&json!("register-consent-marketing_email")),
        "{ticked:?}"
    );
    assert_eq!(seen[5]["axe"], json!([]), "{}", seen[5]["axe"]);
    // The required terms cannot be withdrawn in one click: it says why.
    let page = seen[9]["text"].as_str().unwrap();
    assert!(
        page.contains("withdrawing it means closing the account"),
        "{page}"
    );
    assert!(!page.contains("Withdraw: Terms"), "{page}");
    // "Saved." says what changed; the receipt is a page, JSON offered.
    let saved = seen[10]["text"].as_str().unwrap();
    assert!(
        saved.contains("You gave your consent to “Recommendations”"),
        "{saved}"
    );
    let receipt = seen[11]["text"].as_str().unwrap();
    assert!(receipt.contains("Recommendations"), "{receipt}");
    assert!(
        receipt.contains("Download this receipt as JSON"),
        "{receipt}"
    );
    // The prompt submitted without a tick: a message, nothing recorded, and
    // "Not now" leads to a page that does not need the purpose.
    assert_eq!(seen[15]["status"], 422);
    assert_eq!(seen[16]["url"], format!("{base}/"));
    // Denied for a missing purpose: a branded page with the way to fix it.
    let denied = &seen[17];
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["images"][0]["loaded"], true, "branded: {denied}");
    assert!(
        denied["text"]
            .as_str()
            .unwrap()
            .contains("Review your consents"),
        "{denied}"
    );

    // The ledger: the registration choices (terms, news by email), the
    // recommendation given and withdrawn, and no decline from the prompt.
    let customer = headers_on(&seen[8])["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();
    let ledger = admin_consents(&gw, &customer).await;
    let prompts = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "prompt")
        .count();
    assert_eq!(prompts, 0, "{ledger}");
    assert_eq!(
        headers_on(&seen[16])["x-customer-consents"],
        "marketing_email=1,terms=1"
    );
}

#[tokio::test]
async fn sign_in_over_plain_http_says_it_needs_https_and_dead_reset_links_say_so_on_open() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let cfg = config_with(&format!(
        "listeners:
  - name: http
    address: 127.0.0.1:{{http}}
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
{}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
",
        sink.accounts_config("https://shop.test:{https}", ""),
        store.addr
    ));
    let ports = reserve_ports();
    let (http, https) = (ports["http"], ports["https"]);
    let _gw = Gateway::start_on(ports, &cfg, &[]).await;
    let seen = browse(
        "walk_https_and_reset",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("http://shop.test:{http}/_auth/login?return_to=%2Fcart"), "screenshot": "01-needs-https", "axe": true},
            {"click": "text=Open it securely", "waitText": "Forgot your password?"},
            {"goto": format!("https://shop.test:{https}/_auth/reset/confirm?token=spent-or-made-up"), "screenshot": "02-dead-link", "axe": true},
        ]),
    )
    .await;
    for (i, s) in seen.iter().enumerate() {
        assert!(s.get("error").is_none(), "step {i}: {s}");
    }
    assert_eq!(seen[0]["status"], 403);
    assert_eq!(
        seen[0]["headings"],
        json!(["Sign-in needs a secure connection"])
    );
    assert_eq!(seen[0]["axe"], json!([]), "{}", seen[0]["axe"]);
    // The link keeps the page and its return URL, over HTTPS.
    assert_eq!(
        seen[1]["url"],
        format!("https://shop.test:{https}/_auth/login?return_to=%2Fcart")
    );
    // A dead reset link says so on open, before any password is typed.
    assert_eq!(seen[2]["status"], 400);
    assert_eq!(
        seen[2]["headings"],
        json!(["This link does not work any more"])
    );
    assert!(!seen[2]["text"].as_str().unwrap().contains("New password"));
}

#[tokio::test]
async fn the_customers_place_is_kept_through_the_mailed_link_and_sign_out() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let ports = reserve_ports();
    let https = ports["https"];
    let cfg = crate::accounts::shop_config(&sink, &store, "");
    let _gw = Gateway::start_on(ports, &cfg, &[]).await;
    let base = format!("https://shop.test:{https}");
    let email = "ines@example.test";
    let seen = browse(
        "walk_return_urls",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/_auth/register?return_to=%2Faccount%2Fwishlist")},
            {"fill": ["#register-email", email]},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"click": "main a.button", "waitText": "x-customer-id"},
            {"mailLink": {"dir": sink.path(), "to": email, "path": "/_auth/verify"}, "waitText": "confirmed", "screenshot": "01-confirmed"},
            {"click": "a:text-is('Continue')", "waitText": "x-customer-id"},
            {"goto": format!("{base}/_account"), "waitText": "Ways to sign in", "screenshot": "02-account", "axe": true},
            {"goto": format!("{base}/_auth/logout?return_to=%2Fproducts%2Ftea")},
            {"click": "button[value=this]", "waitText": "You have been signed out"},
            {"click": "a:text-is('Continue')", "waitText": "headers"},
            {"goto": format!("{base}/_auth/reset?return_to=%2Forders%2F7")},
            {"fill": ["#reset-email", email]},
            {"click": "button[type=submit]", "waitText": "If an account exists"},
            {"mailLink": {"dir": sink.path(), "to": email, "path": "/_auth/reset/confirm"}},
            {"fill": ["#new-password", "amber lantern 7 evening"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
        ]),
    )
    .await;
    for (i, s) in seen.iter().enumerate() {
        assert!(s.get("error").is_none(), "step {i}: {s}");
    }
    // The confirmation link leads back to where the customer was going.
    assert_eq!(seen[6]["url"], format!("{base}/account/wishlist"));
    // The account page has a way back to the site, and no action shouts.
    let account = seen[7]["text"].as_str().unwrap();
    assert!(account.contains("Back to"), "{account}");
    assert_eq!(seen[7]["axe"], json!([]), "{}", seen[7]["axe"]);
    // Signing out from a page comes back to that page, signed out.
    assert_eq!(seen[10]["url"], format!("{base}/products/tea"));
    assert!(headers_on(&seen[10]).get("x-customer-id").is_none());
    // A reset asked for from a page ends back on that page, signed in.
    assert_eq!(seen[16]["url"], format!("{base}/orders/7"));
    assert_eq!(headers_on(&seen[16])["x-customer-email"], email);
}

/// A browser that prefers German gets every page in German, at phone
/// width, and the mails its sign-up triggers in German too.
#[tokio::test]
async fn a_german_browser_gets_german_pages_and_mails() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let ports = reserve_ports();
    let https = ports["https"];
    let cfg = consent_config(&sink, &store, &crm, "pages: { languages: [en, de] }\n");
    let gw = Gateway::start_on(ports, &cfg, &[("consent.yaml", &purposes(1))]).await;
    let base = format!("https://shop.test:{https}");
    let email = "jonas@example.test";
    let seen = browse_with(
        "walk_german",
        Some("MAP *.test 127.0.0.1"),
        Some(json!({"width": 375, "height": 740, "locale": "de-DE"})),
        json!([
            {"goto": format!("{base}/_auth/register?return_to=%2Fcart"), "screenshot": "01-registrieren", "axe": true},
            {"fill": ["#register-email", email]},
            {"fill": ["#register-password", "password123"]},
            {"fill": ["#register-name", "Jonas"]},
            {"click": "#register-terms"},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "zu verbreitet", "screenshot": "02-fehler", "axe": true},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Ihr Konto ist eingerichtet", "screenshot": "03-willkommen", "axe": true},
            {"click": "main a.button", "waitText": "x-customer-id"},
            {"goto": format!("{base}/_account"), "waitText": "Anmeldewege", "screenshot": "04-konto", "axe": true},
            {"goto": format!("{base}/_account/consent"), "waitText": "Ihre Einwilligungen", "screenshot": "05-einwilligungen", "axe": true},
            {"goto": format!("{base}/partners/deals"), "screenshot": "06-einwilligung-noetig", "axe": true},
        ]),
    )
    .await;
    for i in [0, 5, 7, 9, 10, 11] {
        assert_eq!(seen[i]["lang"], "de", "step {i}: {}", seen[i]);
        assert_ne!(seen[i]["overflow"], true, "step {i} fits a phone");
    }
    assert_eq!(seen[0]["headings"][0], "Konto erstellen");
    let welcome = seen[7]["text"].as_str().unwrap();
    assert!(welcome.contains("Willkommen, Jonas."), "{welcome}");
    assert!(
        welcome.contains(email) && welcome.contains("24 Stunden"),
        "{welcome}"
    );
    assert_eq!(seen[8]["url"], format!("{base}/cart"));
    assert_eq!(seen[11]["status"], 403);
    assert!(
        seen[11]["text"]
            .as_str()
            .unwrap()
            .contains("Einwilligungen ansehen"),
        "{}",
        seen[11]
    );
    let mail = sink
        .wait_mail(email, 1, std::time::Duration::from_secs(10))
        .await;
    assert!(mail.contains("Guten Tag Jonas,"), "{mail}");
    assert!(mail.contains("bitte bestätigen Sie"), "{mail}");
    assert!(mail.contains("/_auth/verify?token="), "{mail}");
    assert!(
        mail.contains("Content-Type: text/html"),
        "a text and an HTML part: {mail}"
    );
    drop(gw);
}

/// The built-in demo, walked as a newcomer walks it: browse as a guest, add
/// to the cart, check out (registration first, the cart kept), confirm the
/// address from the demo outbox, see the order; at desktop and phone width.
#[tokio::test]
async fn the_demo_store_is_walked_from_browsing_to_an_order() {
    for (name, viewport) in [
        ("walk_demo_desktop", json!({"width": 1280, "height": 800})),
        ("walk_demo_phone", json!({"width": 375, "height": 740})),
    ] {
        walk_demo(name, viewport).await;
    }
}

async fn walk_demo(name: &str, viewport: serde_json::Value) {
    let (store, crm, api) = (free_port(), free_port(), free_port());
    let ports = reserve_ports();
    let https = ports["https"];
    let cfg = config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
upstreams:
  store: {{ addresses: [\"127.0.0.1:{store}\"] }}
  crm: {{ addresses: [\"127.0.0.1:{crm}\"] }}
  api: {{ addresses: [\"127.0.0.1:{api}\"] }}
demo: {{ enabled: true, store: \"127.0.0.1:{store}\", crm: \"127.0.0.1:{crm}\", api: \"127.0.0.1:{api}\" }}
accounts:
  passwords: true
  public_url: https://shop.test:{{https}}
  argon2: {{ memory_kib: 19456, iterations: 2, parallelism: 1 }}
  mail:
    from: \"Shop <no-reply@shop.test>\"
    webhook: {{ url: \"http://127.0.0.1:{store}/_demo/mail\", secret: demo-walk-secret }}
routes:
  - {{ name: crm, hosts: [shop.test], path_prefix: /crm, upstream: crm, kind: web, access: optional }}
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: checkout, hosts: [shop.test], path_prefix: /checkout, upstream: store, kind: web, access: required, sign_in_page: register }}
  - {{ name: cart, hosts: [shop.test], path_prefix: /cart, upstream: store, kind: web, access: guest }}
  - {{ name: store, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: guest }}
"
    ));
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let base = format!("https://shop.test:{https}");
    let email = "lea@example.test";
    let seen = browse_with(
        name,
        Some("MAP *.test 127.0.0.1"),
        Some(viewport),
        json!([
            {"goto": format!("{base}/"), "waitText": "Products", "screenshot": "01-home", "axe": true},
            {"click": "form[action='/cart/add'] button", "waitText": "Your cart", "screenshot": "02-cart", "axe": true},
            {"click": "a[href='/checkout']:text-is('Go to checkout')", "waitText": "Create an account", "screenshot": "03-checkout-asks-to-register"},
            {"fill": ["#register-email", email]},
            {"fill": ["#register-password", PASSWORD]},
            {"fill": ["#register-name", "Lea"]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"click": "main a.button", "waitText": "Paying as", "screenshot": "04-checkout-signed-in", "axe": true},
            {"click": "form[action='/checkout/order'] button", "waitText": "is placed", "screenshot": "05-order-placed", "axe": true},
            {"click": "summary", "screenshot": "06-assertion-claims"},
            {"goto": format!("{base}/_demo/mail"), "waitText": "Confirm your email address", "screenshot": "07-outbox", "axe": true},
            {"click": "article a[href*='/_auth/verify']", "waitText": "confirmed"},
            {"goto": format!("{base}/crm"), "waitText": "without a login of its own", "screenshot": "08-crm", "axe": true},
        ]),
    )
    .await;
    for (i, step) in seen.iter().enumerate() {
        assert_ne!(
            step["overflow"], true,
            "{name} step {i} scrolls sideways: {step}"
        );
    }
    let text = |i: usize| seen[i]["text"].as_str().unwrap_or("").to_string();
    // Signed out: a way to sign in; a guest cart with one product.
    assert!(
        text(0).contains("Sign in") && text(0).contains("Create an account"),
        "{}",
        text(0)
    );
    assert!(text(1).contains("Cart (1)"), "{}", text(1));
    // After registering: who is signed in, the guest's cart carried over.
    let checkout = text(7);
    assert!(checkout.contains("Signed in as Lea"), "{checkout}");
    assert!(
        checkout.contains("Trail running shoes"),
        "the cart followed: {checkout}"
    );
    // The headers: Omnigate's marked, the assertion folded with its claims.
    assert!(
        checkout.contains("x-customer-id") && checkout.contains("Omnigate"),
        "{checkout}"
    );
    assert!(checkout.contains("signed assertion"), "{checkout}");
    assert!(
        text(9).contains("\"sub\": \"cus_"),
        "claims shown: {}",
        text(9)
    );
    assert!(text(8).contains("Order 1"), "{}", text(8));
    assert_eq!(seen[11]["status"], 200, "{}", seen[11]);
    assert!(text(12).contains("Lea"), "{}", text(12));
    drop(gw);
}

/// A customer changes their email address: the password is asked, the new
/// address confirms by its link, the old one is told, and the password now
/// signs in with the new address only.
#[tokio::test]
async fn the_email_address_is_changed_by_confirming_the_new_one() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let ports = reserve_ports();
    let https = ports["https"];
    let cfg = config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
{}",
        store.addr,
        sink.accounts_config("https://shop.test:{https}", ""),
    ));
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let base = format!("https://shop.test:{https}");
    let (old, new) = ("ida@example.test", "ida.new@example.test");
    let seen = browse(
        "walk_change_email",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/_auth/register")},
            {"fill": ["#register-email", old]},
            {"fill": ["#register-password", PASSWORD]},
            {"fill": ["#register-name", "Ida"]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"goto": format!("{base}/_account"), "waitText": "Change your email address"},
            {"fill": ["#email-new_email", new]},
            {"fill": ["#email-current", "not my password at all"]},
            {"click": "form[action='/_account/email'] button[type=submit]", "waitText": "is not right", "screenshot": "01-password-asked", "axe": true},
            {"fill": ["#email-current", PASSWORD]},
            {"click": "form[action='/_account/email'] button[type=submit]", "waitText": "We sent a link to the new address", "screenshot": "02-link-sent", "axe": true},
            {"mailLink": {"dir": sink.path(), "to": new, "path": "/_auth/email/confirm"}, "waitText": "Your email address is changed", "screenshot": "03-changed", "axe": true},
            {"goto": format!("{base}/_account"), "waitText": "Ways to sign in", "screenshot": "04-account"},
            {"goto": format!("{base}/_auth/logout")},
            {"click": "button[value=this]", "waitText": "You have been signed out"},
            {"goto": format!("{base}/account"), "waitText": "Forgot your password?"},
            {"fill": ["#login-email", old]},
            {"fill": ["#login-password", PASSWORD]},
            {"click": "form[action='/_auth/login/password'] button[type=submit]", "waitText": "is not right"},
            {"fill": ["#login-email", new]},
            {"fill": ["#login-password", PASSWORD]},
            {"click": "form[action='/_auth/login/password'] button[type=submit]", "waitText": "x-customer-id"},
        ]),
    )
    .await;
    // The typed address survives the password error.
    let asked = seen[8]["text"].as_str().unwrap();
    assert!(
        asked.contains("The current password is not right"),
        "{asked}"
    );
    assert_eq!(seen[8]["status"], 422);
    let changed = seen[11]["text"].as_str().unwrap();
    assert!(changed.contains(new), "{changed}");
    let account = seen[12]["text"].as_str().unwrap();
    assert!(account.contains(&format!("Email: {new}")), "{account}");
    assert!(account.contains("(confirmed)"), "{account}");
    assert!(account.contains(&format!("Password ({new})")), "{account}");
    assert_eq!(
        crate::accounts::headers_on(&seen[21])["x-customer-email"],
        new
    );
    // The old address is told, with the way to take the account back.
    let told = sink
        .wait_mail(old, 2, std::time::Duration::from_secs(10))
        .await;
    assert!(told.contains(&format!("was changed to {new}")), "{told}");
    assert!(told.contains("/_auth/reset"), "{told}");
    drop(gw);
}

/// Every page a customer can reach without a provider, at phone width, with
/// axe-core on each (the desktop walks are the tests above): nothing
/// scrolls sideways, nothing breaks WCAG 2.1 A/AA.
#[tokio::test]
async fn every_page_fits_a_phone_and_passes_axe() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let ports = reserve_ports();
    let https = ports["https"];
    let cfg = consent_config(&sink, &store, &crm, "");
    let gw = Gateway::start_on(ports, &cfg, &[("consent.yaml", &purposes(1))]).await;
    let base = format!("https://shop.test:{https}");
    let page = |path: &str, wait: &str, shot: &str| json!({"goto": format!("{base}{path}"), "waitText": wait, "screenshot": shot, "axe": true});
    let seen = browse_with(
        "walk_phone_every_page",
        Some("MAP *.test 127.0.0.1"),
        Some(json!({"width": 375, "height": 740})),
        json!([
            page("/_auth/login", "Forgot your password?", "01-sign-in"),
            page("/_auth/register", "Create an account", "02-register"),
            page("/_auth/reset", "Reset your password", "03-reset-request"),
            page("/_auth/reset/confirm?token=made-up", "does not work any more", "04-dead-reset-link"),
            page("/_auth/verify?token=made-up", "does not work any more", "05-dead-confirmation-link"),
            page("/_auth/logout", "not signed in", "06-signed-out-already"),
            page("/_auth/nothing-here", "Page not found", "07-portal-404"),
            page("/_auth/register", "Create an account", "08-register-again"),
            {"fill": ["#register-email", "pia@example.test"]},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "#register-terms"},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready", "screenshot": "09-welcome", "axe": true},
            page("/_account", "Ways to sign in", "10-account"),
            page("/_account/consent", "Your consents", "11-consents"),
            {"click": "a[href^='/_account/consent/receipt/']", "waitText": "Consent receipt", "screenshot": "12-receipt", "axe": true},
            page("/recommendations", "Before you continue", "13-consent-prompt"),
            page("/partners/deals", "Consent needed", "14-consent-needed"),
            page("/_auth/logout", "Sign out on every device", "15-sign-out"),
            {"click": "button[value=this]", "waitText": "You have been signed out", "screenshot": "16-signed-out", "axe": true},
        ]),
    )
    .await;
    for (i, step) in seen.iter().enumerate() {
        assert_ne!(
            step["overflow"], true,
            "step {i} scrolls sideways on a phone: {step}"
        );
    }
    assert_eq!(seen[16]["status"], 403);
    drop(gw);
}
