//! Customer accounts with email and password: registration, verification by
//! mail (a real SMTP server), sign-in, reset, the account page, registration
//! at checkout, no user enumeration, throttling and CSRF. Browser flows run
//! in headless Chromium; protocol properties over HTTP. Embedded storage and
//! PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::support::*;

pub(crate) const PASSWORD: &str = "violet kettle 42 morning";
const NEW_PASSWORD: &str = "orange harbour 7 lantern";

/// A shop on `https://shop.test:{https}` with password accounts mailing
/// through `sink`, the echo upstream `store`, and `extra` top-level lines.
pub fn shop_config(sink: &MailSink, store: &Upstream, extra: &str) -> String {
    config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
{}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: orders, hosts: [shop.test], path_prefix: /orders, upstream: store, kind: web, access: required, verified_email: true }}
  - {{ name: checkout, hosts: [shop.test], path_prefix: /checkout, upstream: store, kind: web, access: required, sign_in_page: register }}
  - {{ name: cart, hosts: [shop.test], path_prefix: /cart, upstream: store, kind: web, access: guest }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
{extra}",
        sink.accounts_config("https://shop.test:{https}", ""),
        store.addr
    ))
}

fn postgres_customers() -> String {
    format!(
        "customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: acct_{} }}\n",
        hex::encode(rand::random::<[u8; 6]>())
    )
}

/// The identity headers the echo upstream saw, from a page's text.
pub fn headers_on(page: &Seen) -> serde_json::Value {
    let text = page["text"].as_str().expect("page text");
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no echo JSON on the page: {text}"));
    let v: serde_json::Value = serde_json::from_str(&text[start..]).expect("echo JSON");
    v["headers"].clone()
}

/// Waits until events of every kind in `kinds` reached the receiver for `customer`.
async fn events_of(
    hook: &crate::events::Receiver,
    customer: &str,
    kinds: &[&str],
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got =
            crate::events::delivered_for(&hook.accepted, customer, Duration::from_secs(15)).await;
        if kinds.iter().all(|k| got.iter().any(|e| e["type"] == *k)) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "events for {customer}: {got:?}, want {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_customer_registers_confirms_the_mail_signs_in_again_and_resets_the_password() {
    register_confirm_sign_in_reset(false).await;
}

#[tokio::test]
async fn registration_verification_and_reset_on_postgresql() {
    register_confirm_sign_in_reset(true).await;
}

async fn register_confirm_sign_in_reset(postgres: bool) {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let hook = crate::events::receiver(0).await;
    let events = format!(
        "{}events:\n  webhooks:\n    - {{ name: crm, url: \"http://{}/hooks\", secret: {}, events: [identity.registered, identity.verified, session.ended] }}\n",
        if postgres { postgres_customers() } else { String::new() },
        hook.up.addr,
        crate::events::SECRET
    );
    let ports = reserve_ports();
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &shop_config(&sink, &store, &events), &[]).await;
    let base = format!("https://shop.test:{https}");
    let email = "ada@example.test";
    let seen = browse(
        if postgres {
            "accounts_register_verify_reset_postgres"
        } else {
            "accounts_register_verify_reset"
        },
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/_auth/register?return_to=%2Faccount%2Forders"), "screenshot": "01-register", "axe": true},
            {"fill": ["#register-email", email]},
            {"fill": ["#register-password", "password123"]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "too common", "screenshot": "02-weak-password", "axe": true},
            {"fill": ["#register-password", PASSWORD]},
            {"fill": ["#register-name", "Ada Lovelace"]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready", "screenshot": "03a-welcome", "axe": true},
            {"click": "main a.button", "waitText": "x-customer-id", "screenshot": "03-signed-in"},
            {"mailLink": {"dir": sink.path(), "to": email, "path": "/_auth/verify"}, "waitText": "confirmed", "screenshot": "04-verified", "axe": true},
            {"goto": format!("{base}/account/orders"), "waitText": "x-customer-id"},
            {"goto": format!("{base}/_account"), "waitText": "Ways to sign in", "screenshot": "05-account", "axe": true},
            {"click": "button[value=this]", "waitText": "You have been signed out"},
            {"goto": format!("{base}/account/orders"), "waitText": "Forgot your password?", "screenshot": "06-sign-in", "axe": true},
            {"fill": ["#login-email", email]},
            {"fill": ["#login-password", "not the password at all"]},
            {"click": "form[action='/_auth/login/password'] button[type=submit]", "waitText": "is not right", "screenshot": "07-wrong-password", "axe": true},
            {"fill": ["#login-password", PASSWORD]},
            {"click": "form[action='/_auth/login/password'] button[type=submit]", "waitText": "x-customer-id"},
            {"goto": format!("{base}/_auth/logout")},
            {"click": "button[value=this]", "waitText": "You have been signed out"},
            {"goto": format!("{base}/_auth/reset"), "screenshot": "08-reset-request", "axe": true},
            {"fill": ["#reset-email", email]},
            {"click": "button[type=submit]", "waitText": "If an account exists"},
            {"mailLink": {"dir": sink.path(), "to": email, "path": "/_auth/reset/confirm"}, "screenshot": "09-new-password", "axe": true},
            {"fill": ["#new-password", NEW_PASSWORD]},
            {"click": "button[type=submit]", "waitText": "Your password was changed", "screenshot": "10-changed", "axe": true},
            {"goto": format!("{base}/account/orders"), "waitText": "x-customer-id"},
        ]),
    )
    .await;

    // Registration signs in at once, unverified, back where the customer was going.
    assert_eq!(seen[7]["url"], format!("{base}/account/orders"));
    let first = headers_on(&seen[7]);
    let customer = first["x-customer-id"].as_str().unwrap().to_string();
    assert!(customer.starts_with("cus_"));
    assert_eq!(first["x-customer-email"], email);
    assert_eq!(first["x-customer-name"], "Ada Lovelace");
    assert_eq!(first["x-customer-email-verified"], "false");
    assert_eq!(first["x-auth-method"], "cookie");
    // The weak password was refused with the reason, tied to its field.
    assert_eq!(seen[3]["status"], 422);
    // The link confirmed the address: the same session now says so.
    let after = headers_on(&seen[9]);
    assert_eq!(after["x-customer-id"], customer.as_str());
    assert_eq!(after["x-customer-email-verified"], "true");
    // The account page lists the password and this browser's session.
    let account = seen[10]["text"].as_str().unwrap();
    assert!(
        account.contains(&format!("Password ({email})")),
        "{account}"
    );
    assert!(account.contains("this browser"), "{account}");
    assert!(account.contains("(confirmed)"), "{account}");
    // A wrong password: 401 and the message, on the same page.
    assert_eq!(seen[15]["status"], 401);
    assert_eq!(headers_on(&seen[17])["x-customer-id"], customer.as_str());
    // After the reset: signed in, on the account page, same customer.
    assert!(seen[25]["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{base}/_account")));
    assert_eq!(headers_on(&seen[26])["x-customer-id"], customer.as_str());
    let ours = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s["url"].as_str().is_some_and(|u| u.contains("/_a")));
    for (i, s) in ours {
        assert_eq!(s["lang"], "en", "step {i}");
        assert_ne!(s["overflow"], true, "step {i} scrolls sideways");
    }

    // Over HTTP: the old password no longer works, the new one does.
    let mut v = Visitor::new(gw.dev_client());
    let (status, _) = v.sign_in(email, PASSWORD).await;
    assert_eq!(status, 401);
    let (status, _) = v.sign_in(email, NEW_PASSWORD).await;
    assert_eq!(status, 303);

    let got = events_of(
        &hook,
        &customer,
        &["identity.registered", "identity.verified", "session.ended"],
    )
    .await;
    let registered = got
        .iter()
        .find(|e| e["type"] == "identity.registered")
        .unwrap();
    assert_eq!(registered["data"]["method"], "password");
    assert_eq!(registered["data"]["email"], email);
    // The mail went through real SMTP with the brand's sender.
    let verify_mail = sink.wait_mail(email, 1, Duration::from_secs(5)).await;
    assert!(
        verify_mail.contains("From: Shop <no-reply@shop.test>"),
        "{verify_mail}"
    );
    assert!(
        gw.metric("omnigate_registrations_total{result=\"created\"}")
            .await
            == Some(1.0)
    );
    assert!(
        gw.metric("omnigate_email_verifications_total{result=\"verified\"}")
            .await
            == Some(1.0)
    );
    assert!(gw.metric("omnigate_password_failures_total").await >= Some(2.0));
}

/// A browser-like HTTP client: keeps cookies, sends forms with the page's
/// CSRF token.
pub struct Visitor {
    pub client: Client,
    pub host: String,
    pub cookies: HashMap<String, String>,
}

impl Visitor {
    pub fn new(client: Client) -> Visitor {
        Visitor {
            client,
            host: "shop.test".into(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &Resp) {
        for v in r.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let cookie = self.cookie_header();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if !cookie.is_empty() {
            all.push(("cookie", &cookie));
        }
        if method == "POST" {
            all.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let r = self
            .client
            .send(request(
                method,
                &self.host,
                path,
                &all,
                Bytes::from(body.to_string()),
            ))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        self.keep(&r);
        r
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, &[], "").await
    }

    /// The `csrf` field of a page's first form.
    pub fn csrf_in(page: &str) -> String {
        let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
        page[at..at + page[at..].find('"').unwrap()].to_string()
    }

    /// Fetches `page` for its token, then posts `fields` (plus csrf) to `action`.
    pub async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
        let html = self.get(page).await.text();
        let csrf = Visitor::csrf_in(&html);
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", &csrf);
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        self.send("POST", action, &[], &form.finish()).await
    }

    pub async fn register(&mut self, email: &str, password: &str) -> (u16, String) {
        let r = self
            .submit(
                "/_auth/register",
                "/_auth/register",
                &[("email", email), ("password", password)],
            )
            .await;
        (r.status, r.text())
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> (u16, String) {
        let r = self
            .submit(
                "/_auth/login",
                "/_auth/login/password",
                &[("email", email), ("password", password)],
            )
            .await;
        (r.status, r.text())
    }
}

/// The page with the parts that differ by design (tokens, the echoed address) cut out.
fn comparable(html: &str, email: &str) -> String {
    let mut out = html.replace(email, "EMAIL");
    while let Some(at) = out.find("name=\"csrf\" value=\"") {
        let start = at + 19;
        let end = start + out[start..].find('"').unwrap();
        out.replace_range(at..end + 1, "CSRF");
    }
    out
}

/// A failed password sign-in as `email` from `ip` (X-Forwarded-For).
async fn wrong_password(v: &mut Visitor, ip: &str, email: &str) -> (Resp, Duration) {
    let html = v.get("/_auth/login").await.text();
    let csrf = Visitor::csrf_in(&html);
    let body = format!(
        "csrf={}&email={}&password=wrong+password+entirely",
        url_encode(&csrf),
        url_encode(email)
    );
    let started = Instant::now();
    let r = v
        .send(
            "POST",
            "/_auth/login/password",
            &[("x-forwarded-for", ip)],
            &body,
        )
        .await;
    (r, started.elapsed())
}

/// Fails as `email` from fresh addresses until answered 429 (the first
/// block lasts a second, so a slow machine may need a second failure).
async fn until_throttled(from: &dyn Fn() -> Visitor, email: &str, net: &str) -> Resp {
    for n in 0..3 {
        let ip = format!("{net}{}", 100 + n + rand::random::<u8>() as usize % 100);
        let (r, _) = wrong_password(&mut from(), &ip, email).await;
        if r.status == 429 {
            return r;
        }
        assert_eq!(r.status, 401, "{}", r.text());
    }
    panic!("{email} was not throttled across addresses");
}

async fn no_enumeration_throttling_and_forms(postgres: bool) {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let extra = format!(
        "{}trusted_proxies: [127.0.0.1]\nabuse: {{ free_failures: 3, window: 15m, max_backoff: 1m }}\n",
        if postgres { postgres_customers() } else { String::new() }
    );
    let gw = Gateway::start(&shop_config(&sink, &store, &extra), &[]).await;
    let known = "bo@example.test";
    let unknown = "nobody-here@example.test";
    let mut v = Visitor::new(gw.dev_client());
    let (status, _) = v.register(known, PASSWORD).await;
    assert_eq!(status, 303, "registered");

    // A route with `verified_email: true` waits for the confirmation link.
    let r = v.get("/orders/1").await;
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("Please confirm your email address"),
        "{}",
        r.text()
    );
    let mail = sink.wait_mail(known, 1, Duration::from_secs(10)).await;
    let link = url::Url::parse(&link_in(&mail, "/_auth/verify")).unwrap();
    let r = v
        .get(&format!("{}?{}", link.path(), link.query().unwrap()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = v.get("/orders/1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-customer-email-verified"], "true");
    // The link worked once.
    let r = v
        .get(&format!("{}?{}", link.path(), link.query().unwrap()))
        .await;
    assert_eq!(r.status, 400);

    // Each visitor comes from its own address (behind a trusted proxy), so
    // only the per-account counters are shared between them.
    let from = || Visitor::new(gw.dev_client());

    // A wrong password for a known address and any password for an unknown
    // one: the same status, the same page, about the same time.
    let (ra, _) = wrong_password(&mut from(), "198.51.100.1", known).await;
    let (rb, _) = wrong_password(&mut from(), "198.51.100.2", unknown).await;
    assert_eq!((ra.status, rb.status), (401, 401));
    assert_eq!(
        comparable(&ra.text(), known),
        comparable(&rb.text(), unknown)
    );
    // Both paths verify an Argon2id hash at the configured cost (the unknown
    // address against a dummy), so neither answers in a fraction of the
    // other's time. (A separate account: its fourth failure starts a block,
    // which nothing below depends on.)
    let (status, _) = Visitor::new(gw.dev_client())
        .register("timing@example.test", PASSWORD)
        .await;
    assert_eq!(status, 303);
    let mut known_t = Vec::new();
    let mut unknown_t = Vec::new();
    // The order alternates: the first request of a pair also pays for
    // warming the hashing thread's memory.
    for n in 0..4 {
        let known_first = n % 2 == 0;
        for first in [true, false] {
            if first == known_first {
                let (r, t) =
                    wrong_password(&mut from(), &format!("192.0.2.{n}"), "timing@example.test")
                        .await;
                assert_eq!(r.status, 401);
                known_t.push(t);
            } else {
                let ip = format!("192.0.2.{}", n + 10);
                let (r, t) =
                    wrong_password(&mut from(), &ip, &format!("timing-{n}@example.test")).await;
                assert_eq!(r.status, 401);
                unknown_t.push(t);
            }
        }
    }
    known_t.sort();
    unknown_t.sort();
    // Medians of four.
    let (k, u) = (
        (known_t[1] + known_t[2]) / 2,
        (unknown_t[1] + unknown_t[2]) / 2,
    );
    let ratio = k.as_secs_f64() / u.as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "known {known_t:?} vs unknown {unknown_t:?}"
    );

    // Reset requests: one answer for both.
    let r1 = v
        .submit("/_auth/reset", "/_auth/reset", &[("email", known)])
        .await;
    let r2 = v
        .submit("/_auth/reset", "/_auth/reset", &[("email", unknown)])
        .await;
    assert_eq!((r1.status, r2.status), (200, 200));
    assert_eq!(
        comparable(&r1.text(), known),
        comparable(&r2.text(), unknown)
    );
    let reset = sink.wait_mail(known, 2, Duration::from_secs(10)).await;
    assert!(reset.contains("/_auth/reset/confirm?token="), "{reset}");
    let told = sink.wait_mail(unknown, 1, Duration::from_secs(10)).await;
    assert!(told.contains("there is no account"), "{told}");

    // Per account: failures from many addresses add up (3 free, then a
    // block that doubles); the account is throttled for every address
    // (429 + Retry-After) and its owner gets a notice.
    for ip in ["198.51.100.3", "198.51.100.4", "198.51.100.5"] {
        let (r, _) = wrong_password(&mut from(), ip, known).await;
        assert_eq!(r.status, 401, "failures 2-4 are answered");
    }
    let r = until_throttled(&from, known, "198.51.100.").await;
    assert!(r.header("retry-after").is_some());
    let lockout = sink.wait_mail(known, 3, Duration::from_secs(10)).await;
    assert!(lockout.contains("repeated failed attempts"), "{lockout}");
    // An address without an account is throttled alike (nothing to tell apart).
    for ip in ["198.51.100.7", "198.51.100.8", "198.51.100.9"] {
        let (r, _) = wrong_password(&mut from(), ip, unknown).await;
        assert_eq!(r.status, 401);
    }
    until_throttled(&from, unknown, "198.51.100.").await;
    assert_eq!(
        sink.mails_to(unknown).len(),
        1,
        "no lockout mail without an account"
    );

    // Per client address: one client failing on many accounts is throttled too.
    for n in 1..=4 {
        let (r, _) =
            wrong_password(&mut from(), "203.0.113.9", &format!("x{n}@example.test")).await;
        assert_eq!(r.status, 401, "failure {n} from one address");
    }
    let mut throttled = false;
    for n in 5..=8 {
        let (r, _) =
            wrong_password(&mut from(), "203.0.113.9", &format!("x{n}@example.test")).await;
        if r.status == 429 {
            throttled = true;
            break;
        }
    }
    assert!(
        throttled,
        "one address failing on many accounts was not throttled"
    );

    // Forms without the page's token, or posted from another site, are refused.
    let mut h = Visitor::new(gw.dev_client());
    let _ = h.get("/_auth/login").await;
    let r = h
        .send(
            "POST",
            "/_auth/register",
            &[],
            "csrf=forged&email=eve%40example.test&password=whatever+it+is+long",
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("The form had expired"));
    let html = h.get("/_auth/register").await.text();
    let token = Visitor::csrf_in(&html);
    let body = format!(
        "csrf={}&email=eve%40example.test&password=whatever+it+is+long",
        url_encode(&token)
    );
    let r = h
        .send(
            "POST",
            "/_auth/register",
            &[("origin", "https://evil.test")],
            &body,
        )
        .await;
    assert_eq!(r.status, 403, "cross-site form");
    // Bad input gets field errors, not a crash.
    let r = h
        .submit(
            "/_auth/register",
            "/_auth/register",
            &[("email", "not-an-email"), ("password", "short")],
        )
        .await;
    assert_eq!(r.status, 422);
    let page = r.text();
    assert!(page.contains("aria-invalid=\"true\""), "{page}");
    assert!(page.contains("Enter an email address like name@example.com."));
    assert!(page.contains("Use at least 10 characters."));
    // The address is taken: said plainly (registration must), and counted.
    let r = h
        .submit(
            "/_auth/register",
            "/_auth/register",
            &[("email", known), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 409);
    // A made-up verification or reset token.
    let r = h.get("/_auth/verify?token=made-up").await;
    assert_eq!(r.status, 400);
    // Opening it says the link is dead at once (no form to fill in first)...
    let r = h.get("/_auth/reset/confirm?token=made-up").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("does not work any more"), "{}", r.text());
    // ...and posting it anyway is refused the same way.
    let r = h
        .submit(
            "/_auth/reset",
            "/_auth/reset/confirm",
            &[("token", "made-up"), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        gw.metric("omnigate_throttled_total{endpoint=\"password-account\"}")
            .await
            >= Some(2.0)
    );
}

#[tokio::test]
async fn no_enumeration_throttling_and_forms_embedded() {
    no_enumeration_throttling_and_forms(false).await;
}

#[tokio::test]
async fn no_enumeration_throttling_and_forms_postgres() {
    no_enumeration_throttling_and_forms(true).await;
}

#[tokio::test]
async fn a_guest_registers_inline_at_checkout_on_a_phone_and_keeps_the_cart() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let ports = reserve_ports();
    let https = ports["https"];
    let gw = Gateway::start_on(
        ports,
        &shop_config(&sink, &store, &postgres_customers()),
        &[],
    )
    .await;
    let base = format!("https://shop.test:{https}");
    let seen = browse_with(
        "accounts_checkout_phone",
        Some("MAP *.test 127.0.0.1"),
        Some(json!({"width": 375, "height": 740})),
        json!([
            {"goto": format!("{base}/cart/add?item=42"), "waitText": "x-guest-id"},
            {"goto": format!("{base}/checkout/payment?order=9"), "waitText": "Create an account", "screenshot": "1-inline-registration", "axe": true},
            {"fill": ["#register-email", "mia@example.test"]},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"click": "main a.button", "waitText": "x-customer-id", "screenshot": "2-back-at-payment"},
            {"goto": format!("{base}/checkout/payment?order=9"), "waitText": "x-customer-id"},
        ]),
    )
    .await;
    let guest = headers_on(&seen[0])["x-guest-id"]
        .as_str()
        .unwrap()
        .to_string();
    // Registration first, because the route says so.
    assert_eq!(seen[1]["headings"][0], "Create an account");
    assert_ne!(seen[1]["overflow"], true, "the sign-in page fits a phone");
    assert_eq!(seen[5]["url"], format!("{base}/checkout/payment?order=9"));
    let first = headers_on(&seen[5]);
    assert_eq!(first["x-previous-guest-id"], guest.as_str(), "{first}");
    assert_eq!(first["x-customer-email-verified"], "false");
    assert!(headers_on(&seen[6]).get("x-previous-guest-id").is_none());

    // A form POST that needs sign-in is not replayed: back to the form's page.
    let mut v = Visitor::new(gw.dev_client());
    let r = v
        .send(
            "POST",
            "/checkout/payment",
            &[("referer", &format!("{base}/checkout/review?step=2"))],
            "card=4242",
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/_auth/login?return_to=%2Fcheckout%2Freview%3Fstep%3D2&register=1")
    );
}

/// A shop with password accounts and the test provider (`trusted_email`
/// as given), on `https://shop.test:{https}`.
async fn shop_with_provider(trusted_email: bool) -> (Gateway, Idp, MailSink, Upstream, String) {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let (ports, idp) = ports_and_idp().await;
    let https = ports["https"];
    let cfg = login_config(
        &idp,
        "",
        &format!(", trusted_email: {trusted_email}"),
        &format!(
            "{}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
",
            sink.accounts_config("https://shop.test:{https}", ""),
            store.addr
        ),
    );
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    (gw, idp, sink, store, format!("https://shop.test:{https}"))
}

/// Registers over HTTP and returns the new customer id.
async fn registered(gw: &Gateway, email: &str) -> String {
    let mut v = Visitor::new(gw.dev_client());
    let (status, page) = v.register(email, PASSWORD).await;
    assert_eq!(status, 303, "{page}");
    let home = v.get("/").await.text();
    let v: serde_json::Value = serde_json::from_str(&home).expect("echo JSON");
    v["headers"]["x-customer-id"]
        .as_str()
        .expect("signed in")
        .to_string()
}

#[tokio::test]
async fn a_provider_customer_adds_a_password_and_a_password_customer_adds_the_provider() {
    let (_gw, _idp, _sink, _store, base) = shop_with_provider(false).await;
    let provider_button = "a:has-text('Continue with Test IdP')";
    let seen = browse(
        "accounts_linking",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account"), "waitText": "Continue with Test IdP", "screenshot": "1-sign-in-choices"},
            {"click": provider_button, "waitText": "Test IdP"},
            {"fill": ["#username", "nina"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
            {"goto": format!("{base}/_account"), "waitText": "Add a password", "screenshot": "2-account-provider-only", "axe": true},
            {"fill": ["#add-password", NEW_PASSWORD]},
            {"click": "form[action='/_account/password'] button[type=submit]", "waitText": "Your password was added", "screenshot": "3-password-added"},
            {"click": "button[value=this]", "waitText": "You have been signed out"},
            {"goto": format!("{base}/_auth/login")},
            {"fill": ["#login-email", "nina@example.test"]},
            {"fill": ["#login-password", NEW_PASSWORD]},
            {"click": "form[action='/_auth/login/password'] button[type=submit]", "waitText": "x-customer-id"},
            // The provider sign-in can now be removed: the password remains.
            {"goto": format!("{base}/_account")},
            {"click": "form[action='/_account/unlink'] button[aria-label='Remove Test IdP']", "waitText": "was removed", "screenshot": "4-provider-removed"},
            // And added back from the account page.
            {"click": "a:has-text('Add Test IdP')", "waitText": "added to your account", "screenshot": "5-provider-linked"},
        ]),
    )
    .await;
    let nina = headers_on(&seen[3])["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        headers_on(&seen[11])["x-customer-id"],
        nina.as_str(),
        "the password signs in the same customer"
    );
    let linked = seen[14]["text"].as_str().unwrap();
    assert!(
        linked.contains("Test IdP") && linked.contains("Password (nina@example.test)"),
        "{linked}"
    );
    // The only way in cannot be removed.
    let only = seen[4]["text"].as_str().unwrap();
    assert!(only.contains("your only way in"), "{only}");

    // A password customer adds the provider (a different address there).
    let seen = browse(
        "accounts_linking_provider",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/_auth/register")},
            {"fill": ["#register-email", "omar@shop.test"]},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"click": "main a.button", "waitText": "x-customer-id"},
            {"goto": format!("{base}/_account"), "waitText": "Add Test IdP"},
            {"click": "a:has-text('Add Test IdP')", "waitText": "Test IdP"},
            {"fill": ["#username", "omar2"]},
            {"click": "button[type=submit]", "waitText": "added to your account"},
            {"click": "button[value=this]", "waitText": "You have been signed out"},
            {"goto": format!("{base}/account"), "waitText": "Continue with Test IdP"},
            {"click": provider_button, "waitText": "x-customer-id"},
        ]),
    )
    .await;
    let omar = headers_on(&seen[4])["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        headers_on(&seen[11])["x-customer-id"],
        omar.as_str(),
        "the linked provider signs in the password customer"
    );
    assert_ne!(omar, nina);
}

#[tokio::test]
async fn a_provider_sign_in_with_an_existing_accounts_email_asks_for_proof() {
    let (gw, _idp, _sink, _store, base) = shop_with_provider(false).await;
    let pia = registered(&gw, "pia@example.test").await;
    let seen = browse(
        "accounts_email_match",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account"), "waitText": "Continue with Test IdP"},
            {"click": "a:has-text('Continue with Test IdP')", "waitText": "Test IdP"},
            {"fill": ["#username", "pia"]},
            {"click": "button[type=submit]", "waitText": "You already have an account", "screenshot": "1-proof-asked", "axe": true},
            {"fill": ["#prove-password", "not my password at all"]},
            {"click": "form[action='/_auth/prove'] button[type=submit]", "waitText": "not right", "screenshot": "2-wrong", "axe": true},
            {"fill": ["#prove-password", PASSWORD]},
            {"click": "form[action='/_auth/prove'] button[type=submit]", "waitText": "x-customer-id", "screenshot": "3-linked"},
            {"goto": format!("{base}/_account"), "waitText": "Ways to sign in"},
        ]),
    )
    .await;
    // Nothing was linked or created before the proof.
    assert_eq!(seen[3]["status"], 200);
    assert_eq!(seen[5]["status"], 401);
    assert_eq!(seen[7]["url"], format!("{base}/account"));
    assert_eq!(
        headers_on(&seen[7])["x-customer-id"],
        pia.as_str(),
        "one customer id"
    );
    let ways = seen[8]["text"].as_str().unwrap();
    assert!(
        ways.contains("Password (pia@example.test)") && ways.contains("Test IdP"),
        "{ways}"
    );
}

#[tokio::test]
async fn a_trusted_providers_verified_email_joins_the_existing_account() {
    let (gw, _idp, _sink, _store, base) = shop_with_provider(true).await;
    let quinn = registered(&gw, "quinn@example.test").await;
    let seen = browse(
        "accounts_trusted_email",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account"), "waitText": "Continue with Test IdP"},
            {"click": "a:has-text('Continue with Test IdP')", "waitText": "Test IdP"},
            {"fill": ["#username", "quinn"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
        ]),
    )
    .await;
    assert_eq!(headers_on(&seen[3])["x-customer-id"], quinn.as_str());
}

#[tokio::test]
async fn mail_goes_out_through_a_signed_webhook_and_smtp_retries_a_busy_relay() {
    // The webhook channel: signed JSON, retried after a refusal.
    let hook = crate::events::receiver(1).await;
    let store = Upstream::echo("store").await;
    let sink = MailSink::start().await;
    let webhook_mail = format!(
        "accounts:
  passwords: true
  public_url: https://shop.test:{{https}}
  mail:
    from: \"Shop <no-reply@shop.test>\"
    webhook: {{ url: \"http://{}/mail\", secret: {} }}
",
        hook.up.addr,
        crate::events::SECRET
    );
    let cfg = shop_config(&sink, &store, "").replace(
        &sink.accounts_config("https://shop.test:{https}", ""),
        &webhook_mail,
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let (status, _) = Visitor::new(gw.dev_client())
        .register("wen@example.test", PASSWORD)
        .await;
    assert_eq!(status, 303);
    let deadline = Instant::now() + Duration::from_secs(15);
    let (sig, body) = loop {
        if let Some((sig, _, body)) = hook.accepted.lock().unwrap().first().cloned() {
            break (sig, body);
        }
        assert!(Instant::now() < deadline, "no mail at the webhook");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    crate::events::verify(&sig, &body);
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["kind"], "verify_email");
    assert_eq!(m["to"], "wen@example.test");
    assert_eq!(m["from"], "Shop <no-reply@shop.test>");
    let link = m["link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!(
            "https://shop.test:{}/_auth/verify?token=",
            gw.port("https")
        )),
        "{link}"
    );
    assert!(m["text"].as_str().unwrap().contains(link));
    assert!(
        sink.mails_to("wen@example.test").is_empty(),
        "one channel only"
    );

    // SMTP: a relay that answers 451 twice gets the mail on the third try.
    let busy = MailSink::start_failing_first(2).await;
    let gw = Gateway::start(&shop_config(&busy, &store, ""), &[]).await;
    let (status, _) = Visitor::new(gw.dev_client())
        .register("xia@example.test", PASSWORD)
        .await;
    assert_eq!(status, 303);
    let mail = busy
        .wait_mail("xia@example.test", 1, Duration::from_secs(20))
        .await;
    assert!(mail.contains("/_auth/verify?token="), "{mail}");
    gw.wait_log("\"attempt\":3", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_password_found_in_a_breach_is_refused_through_the_range_service() {
    use sha1::Digest;
    const BREACHED: &str = "tangerine submarine 1987";
    let full = hex::encode_upper(sha1::Sha1::digest(BREACHED.as_bytes()));
    let (prefix, suffix) = (full[..5].to_string(), full[5..].to_string());
    let asked: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = asked.clone();
    // A k-anonymity range service: the breached suffix among padding.
    let range = Upstream::start(move |req| {
        let (seen, prefix, suffix) = (seen.clone(), prefix.clone(), suffix.clone());
        async move {
            let path = req.uri().path().to_string();
            seen.lock().unwrap().push(path.clone());
            let mut body = String::from("0018A45C4D1DEF81644B54AB7F969B88D65:3\r\n");
            if path.ends_with(&prefix) {
                body.push_str(&format!("{suffix}:42\r\n"));
            }
            body.push_str("FFFFF45C4D1DEF81644B54AB7F969B88D65:0\r\n");
            text_response(200, "text/plain", body)
        }
    })
    .await;
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let accounts = sink.accounts_config(
        "https://shop.test:{https}",
        &format!("  breached_password_api: http://{}/range/\n", range.addr),
    );
    let cfg = shop_config(&sink, &store, "").replace(
        &sink.accounts_config("https://shop.test:{https}", ""),
        &accounts,
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let mut v = Visitor::new(gw.dev_client());
    let (status, page) = v.register("ines@example.test", BREACHED).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("appeared in a data breach"), "{page}");
    // Only the first five hex digits of the SHA-1 left the gateway.
    let paths = asked.lock().unwrap().clone();
    assert_eq!(paths, [format!("/range/{}", &full[..5])]);
    assert!(!paths[0].contains(&full[5..]));
    let (status, _) = v.register("ines@example.test", PASSWORD).await;
    assert_eq!(status, 303);

    // The service unreachable: the shipped policy alone decides.
    drop(range);
    let dead = format!("http://127.0.0.1:{}/range/", free_port());
    let cfg = shop_config(&sink, &store, "").replace(
        &sink.accounts_config("https://shop.test:{https}", ""),
        &sink.accounts_config(
            "https://shop.test:{https}",
            &format!("  breached_password_api: {dead}\n"),
        ),
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let (status, _) = Visitor::new(gw.dev_client())
        .register("jon@example.test", BREACHED)
        .await;
    assert_eq!(status, 303);
    gw.wait_log(
        "breached-password service unreachable",
        Duration::from_secs(5),
    )
    .await;
}
