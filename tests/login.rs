//! Browser login with an existing identity: headless Chromium against the
//! gateway's HTTPS listener and a real OpenID provider (oidc-provider).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::json;

use crate::support::*;

/// `Cookie` header value for the session cookie the browser holds after a step.
fn session_cookie(seen: &Seen) -> String {
    seen["cookies"]
        .as_array()
        .expect("cookies observed")
        .iter()
        .find(|c| c["name"] == "__Host-omnigate")
        .map(|c| format!("__Host-omnigate={}", c["value"].as_str().unwrap()))
        .expect("session cookie")
}

/// Opens `url` in Chromium, signs in at the test provider as `username` and
/// returns what the browser saw on arrival plus the session cookie.
async fn browser_sign_in(test: &str, url: &str, username: &str) -> (Seen, String) {
    let seen = browse(
        test,
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": url, "waitText": "Test IdP"},
            {"fill": ["#username", username]},
            {"click": "button[type=submit]", "waitText": "x-customer-id", "cookies": true},
        ]),
    )
    .await;
    let arrived = seen[2].clone();
    let cookie = session_cookie(&arrived);
    (arrived, cookie)
}

/// Ports for the gateway, a provider whose browser client returns to
/// `https://shop.test:<https port>`, and an echo upstream `store`.
async fn shop_with_idp() -> (HashMap<&'static str, u16>, u16, Idp, Upstream) {
    let (ports, idp) = ports_and_idp().await;
    let https = ports["https"];
    (ports, https, idp, Upstream::echo("store").await)
}

/// A provider with the browser client registered for the gateway's HTTPS
/// port, an echo upstream, and a config with that one provider (login), the
/// HTTPS listener, `extra` top-level settings and `route` as the only route.
async fn one_provider_setup(
    extra: &str,
    route: &str,
) -> (Idp, Upstream, HashMap<&'static str, u16>, String) {
    let (ports, _, idp, store) = shop_with_idp().await;
    let cfg = login_config(
        &idp,
        "",
        "",
        &format!(
            "{extra}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: r, hosts: [shop.test], path_prefix: {route}, upstream: store, kind: web, access: required }}
",
            store.addr
        ),
    );
    (idp, store, ports, cfg)
}

#[tokio::test]
async fn browser_login_bearer_same_customer_and_logout() {
    let (ports, https, idp, store) = shop_with_idp().await;
    let cfg = login_config(
        &idp,
        "",
        "",
        &format!(
            "    bearer: {{ audiences: [\"{IDP_AUDIENCE}\"] }}
upstreams:
  store: {{ addresses: [\"{store}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: api, hosts: [shop.test], path_prefix: /api, upstream: store, kind: api, access: required }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web }}
",
            store = store.addr,
        ),
    );
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "browser_login",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account/orders?tab=2"), "waitText": "Test IdP", "screenshot": "1-provider-login"},
            {"fill": ["#username", "carol"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id", "screenshot": "2-back-on-account", "cookies": true},
            {"goto": format!("{base}/_auth/logout"), "screenshot": "3-sign-out-page"},
            {"click": "button[value=this]", "waitText": "You have been signed out", "screenshot": "4-signed-out", "cookies": true},
        ]),
    )
    .await;

    // Back on exactly the URL asked for, with the customer identified.
    let back = &seen[2];
    assert_eq!(back["url"], format!("{base}/account/orders?tab=2"));
    let text = back["text"].as_str().unwrap();
    let browser_customer = customer_id_in(text);
    assert!(browser_customer.starts_with("cus_"));
    assert!(text.contains("\"x-auth-method\":\"cookie\""), "{text}");
    assert!(
        text.contains("carol@example.test"),
        "profile from the provider's claims: {text}"
    );
    assert!(
        !text.contains("__Host-omnigate"),
        "the session cookie reached the backend: {text}"
    );

    // The session cookie is __Host-, Secure, HttpOnly, SameSite=Lax.
    let cookies = back["cookies"].as_array().unwrap();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "__Host-omnigate")
        .expect("session cookie");
    assert_eq!(session["secure"], true);
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Lax");
    assert_eq!(session["path"], "/");
    let session_value = session["value"].as_str().unwrap().to_string();

    // A bearer token of the same user at the same provider: the same customer.
    let token = idp.sign(idp.user_claims("carol", "", 300), "RS256").await;
    let c = gw.dev_client();
    let auth = format!("Bearer {token}");
    let r = c
        .send(request(
            "GET",
            "shop.test",
            "/api/me",
            &[("authorization", &auth)],
            Bytes::new(),
        ))
        .await
        .unwrap();
    assert_eq!(
        r.json()["headers"]["x-customer-id"],
        browser_customer.as_str()
    );

    // After sign-out the old cookie opens nothing: the account page sends to sign-in.
    let cookie = format!("__Host-omnigate={session_value}");
    let r = c
        .send(request(
            "GET",
            "shop.test",
            "/account/orders",
            &[("cookie", &cookie)],
            Bytes::new(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/_auth/login?return_to=%2Faccount%2Forders")
    );
    let after = seen[4]["cookies"].as_array().unwrap();
    assert!(
        after.iter().all(|c| c["name"] != "__Host-omnigate"),
        "cookie cleared: {after:?}"
    );
    assert_eq!(
        gw.metric("omnigate_logins_total{provider=\"idp\",result=\"success\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn return_urls_to_foreign_hosts_are_refused() {
    let (idp, _store, ports, cfg) = one_provider_setup("", "/").await;
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let c = gw.dev_client();
    let base = format!("https://shop.test:{https}");
    // Before sign-in the return URL is kept server-side: nothing of it goes
    // to the provider.
    let r = c
        .get(
            "shop.test",
            &format!(
                "/_auth/login/idp?return_to={}",
                url_encode("https://evil.test/")
            ),
        )
        .await;
    assert_eq!(r.status, 303);
    let location = r.header("location").unwrap().to_string();
    assert!(location.starts_with(&idp.issuer), "{location}");
    assert!(!location.contains("evil.test"), "{location}");
    // Signed in, each return URL is followed to where the browser lands.
    let (_, cookie) = browser_sign_in("return-urls", &format!("{base}/"), "rita").await;
    let mut jar = Jar::default();
    jar.add("shop.test", &cookie);
    for evil in [
        "https://evil.test/",
        "//evil.test/steal",
        "///evil.test/",
        "/\\evil.test",
        "\\\\evil.test/",
        "/.//evil.test/",
        "/x/..//evil.test/",
        "/%2e//evil.test/",
        &format!("https://shop.test:{https}//evil.test/"),
        &format!("https://shop.test:{https}@evil.test/"),
        "https://shop.test:1/",
        "javascript:alert(1)",
    ] {
        let start = format!("{base}/_auth/login?return_to={}", url_encode(evil));
        let (visited, last) = follow(&c, &mut jar.clone(), &start, &["shop.test"]).await;
        let landed = visited.last().unwrap();
        assert_eq!(landed.host_str(), Some("shop.test"), "{evil}: {visited:?}");
        assert_eq!(landed.port(), Some(https), "{evil}: {visited:?}");
        assert_eq!(last.status, 200, "{evil}: {visited:?}");
    }
    // A callback without the browser-bound state is refused, not followed.
    let r = c
        .send(request(
            "GET",
            "shop.test",
            "/_auth/callback/idp?code=x&state=forged",
            &[],
            Bytes::new(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("expired or was already used"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn chooser_restart_and_a_provider_that_is_down() {
    let ports = reserve_ports();
    let https = ports["https"];
    let callback = |p: &str| format!("https://shop.test:{https}/_auth/callback/{p}");
    let idp = Idp::start_with_web_client(Some(&callback("idp"))).await;
    let other = Idp::start_with_web_client(Some(&callback("partner"))).await;
    let store = Upstream::echo("store").await;
    let cfg = config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
providers:
  - name: idp
    issuer: {}
    login: {{ client_id: {cid}, client_secret: {secret}, display_name: Test IdP }}
  - name: partner
    issuer: {}
    login: {{ client_id: {cid}, client_secret: {secret}, display_name: Partner ID }}
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web }}
",
        idp.issuer,
        other.issuer,
        store.addr,
        cid = WEB_CLIENT.0,
        secret = WEB_CLIENT.1,
    ));
    let mut gw = Gateway::start_on(ports, &cfg, &[]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "chooser_and_restart",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account"), "waitText": "Choose how you want to sign in", "screenshot": "1-chooser"},
            {"click": "text=Continue with Test IdP", "waitText": "Test IdP", "screenshot": "2-provider"},
            {"fill": ["#username", "dave"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id", "cookies": true},
        ]),
    )
    .await;
    let chooser = &seen[0];
    assert_eq!(chooser["headings"], json!(["Sign in"]));
    assert!(chooser["text"]
        .as_str()
        .unwrap()
        .contains("Continue with Partner ID"));
    let cookie = session_cookie(&seen[3]);
    let customer = customer_id_in(seen[3]["text"].as_str().unwrap());

    // A restart logs no one out.
    gw.restart().await;
    let c = gw.dev_client();
    let account = |c: Client, cookie: String| async move {
        c.send(request(
            "GET",
            "shop.test",
            "/account",
            &[("cookie", &cookie)],
            Bytes::new(),
        ))
        .await
        .unwrap()
    };
    let r = account(c.clone(), cookie.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-customer-id"], customer.as_str());

    // Providers down: existing sessions keep working; a new sign-in gets a clear page.
    drop(idp);
    drop(other);
    let r = account(c.clone(), cookie.clone()).await;
    assert_eq!(r.status, 200);
    let down = browse(
        "provider_down",
        Some("MAP *.test 127.0.0.1"),
        json!([{"goto": format!("{base}/_auth/login/partner?return_to=%2Faccount"), "screenshot": "provider-down"}]),
    )
    .await;
    assert_eq!(down[0]["status"], 503);
    assert_eq!(down[0]["headings"], json!(["Sign-in is unavailable"]));
    assert!(down[0]["text"].as_str().unwrap().contains("Try again"));
}

/// Two gateway nodes sharing Redis (sessions) and PostgreSQL (customers).
#[tokio::test]
async fn second_node_honours_the_session_and_the_logout_within_a_second() {
    let unique = hex::encode(rand::random::<[u8; 6]>());
    let shared = format!(
        "sessions: {{ store: redis, url: \"redis://127.0.0.1:6379\", key_prefix: \"omnigate-e2e-{unique}:\" }}
customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: nodes_{unique} }}
"
    );
    let (_idp, _store, ports_a, cfg) = one_provider_setup(&shared, "/account").await;
    let https_a = ports_a["https"];
    let a = Gateway::start_on(ports_a, &cfg, &[]).await;
    let b = Gateway::start(&cfg, &[]).await;
    let (arrived, cookie) = browser_sign_in(
        "two_nodes",
        &format!("https://shop.test:{https_a}/account"),
        "erin",
    )
    .await;
    let customer = customer_id_in(arrived["text"].as_str().unwrap());
    let (ca, cb) = (a.dev_client(), b.dev_client());
    let get = |c: &Client, path: &'static str| {
        let (c, cookie) = (c.clone(), cookie.clone());
        async move {
            c.send(request(
                "GET",
                "shop.test",
                path,
                &[("cookie", &cookie)],
                Bytes::new(),
            ))
            .await
            .unwrap()
        }
    };
    // Node B knows the session created on node A, and the same customer.
    let r = get(&cb, "/account").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-customer-id"], customer.as_str());

    // Sign out on A (with the page's CSRF token).
    let page = get(&ca, "/_auth/logout").await.text();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_string();
    // A POST without the token is refused.
    let no_token = ca
        .send(request(
            "POST",
            "shop.test",
            "/_auth/logout",
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Bytes::from("scope=this"),
        ))
        .await
        .unwrap();
    assert_eq!(no_token.status, 403);
    let out = ca
        .send(request(
            "POST",
            "shop.test",
            "/_auth/logout",
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Bytes::from(format!(
                "csrf={}&scope=this",
                csrf.replace('+', "%2B").replace('/', "%2F")
            )),
        ))
        .await
        .unwrap();
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));

    // Node B stops honouring it within a second.
    let start = std::time::Instant::now();
    loop {
        let r = get(&cb, "/account").await;
        if r.status == 302 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "node B still serves the session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn provider_back_channel_logout_ends_the_session() {
    let (idp, _store, ports, cfg) = one_provider_setup("", "/account").await;
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let (_, cookie) = browser_sign_in(
        "backchannel_logout",
        &format!("https://shop.test:{https}/account"),
        "frank",
    )
    .await;
    let c = gw.dev_client();
    let account = || async {
        c.get_with_cookie("shop.test", "/account", Some(&cookie))
            .await
            .status
    };
    assert_eq!(account().await, 200);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let logout_claims = |jti: &str| {
        json!({
            "iss": idp.issuer, "aud": WEB_CLIENT.0, "iat": now, "exp": now + 120, "jti": jti,
            "sub": "frank",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        })
    };
    let post = |token: String| {
        let c = c.clone();
        async move {
            c.send(request(
                "POST",
                "shop.test",
                "/_auth/backchannel-logout/idp",
                &[("content-type", "application/x-www-form-urlencoded")],
                Bytes::from(format!("logout_token={token}")),
            ))
            .await
            .unwrap()
        }
    };
    // Refused: wrong audience, a nonce, no logout event.
    let mut wrong_aud = logout_claims("j0");
    wrong_aud["aud"] = "someone-else".into();
    let mut with_nonce = logout_claims("j1");
    with_nonce["nonce"] = "n".into();
    let mut no_event = logout_claims("j2");
    no_event["events"] = json!({});
    for bad in [wrong_aud, with_nonce, no_event] {
        let r = post(idp.sign(bad, "RS256").await).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"], "invalid_request");
    }
    assert_eq!(account().await, 200, "refused tokens end nothing");

    let token = idp.sign(logout_claims("j-ok"), "RS256").await;
    let r = post(token.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(account().await, 302, "the session ended");
    // The same token again is a replay.
    assert_eq!(post(token).await.status, 400);
}

/// A provider with the browser client also registered for back-channel
/// logout (so ID tokens carry `sid`), reaching the gateway's plain listener.
async fn provider_logout_setup(
    extra_login: &str,
) -> (Idp, Upstream, HashMap<&'static str, u16>, String) {
    let ports = reserve_ports();
    let (https, http) = (ports["https"], ports["http"]);
    let idp = Idp::start_with_web_client_meta(
        Some(&format!("https://shop.test:{https}/_auth/callback/idp")),
        json!({
            "backchannel_logout_uri": format!("http://127.0.0.1:{http}/_auth/backchannel-logout/idp"),
            "backchannel_logout_session_required": true,
        }),
    )
    .await;
    let store = Upstream::echo("store").await;
    let cfg = login_config(
        &idp,
        "  - name: http\n    address: 127.0.0.1:{http}\n",
        extra_login,
        &format!(
            "upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
",
            store.addr
        ),
    );
    (idp, store, ports, cfg)
}

#[tokio::test]
async fn a_provider_sign_out_ends_only_that_browsers_session() {
    let (idp, _store, ports, cfg) = provider_logout_setup("").await;
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let account = format!("https://shop.test:{https}/account");
    // Two browsers, the same person, two sessions at the provider.
    let (_, stays) = browser_sign_in("provider_logout_other", &account, "gina").await;
    let seen = browse(
        "provider_logout",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": account, "waitText": "Test IdP"},
            {"fill": ["#username", "gina"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id", "cookies": true},
            // Signing out at the provider itself, not at the gateway.
            {"goto": format!("{}/session/end", idp.issuer), "waitText": "Sign out of Test IdP?"},
            {"click": "button[value=yes]", "waitText": "Signed out of Test IdP", "screenshot": "provider-signed-out"},
        ]),
    )
    .await;
    let ended = session_cookie(&seen[2]);
    assert_ne!(ended, stays);
    let c = gw.dev_client();
    let status = |cookie: String| {
        let c = c.clone();
        async move {
            c.get_with_cookie("shop.test", "/account", Some(&cookie))
                .await
                .status
        }
    };
    // The provider's logout token (sent by the provider, naming its sid)
    // ended that browser's session and no other.
    assert_eq!(status(ended).await, 302);
    assert_eq!(status(stays).await, 200);
}

#[tokio::test]
async fn signing_out_at_the_gateway_signs_out_at_the_provider() {
    let (_idp, _store, ports, cfg) = provider_logout_setup(", logout_at_provider: true").await;
    let https = ports["https"];
    let _gw = Gateway::start_on(ports, &cfg, &[]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "rp_initiated_logout",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account"), "waitText": "Test IdP"},
            {"fill": ["#username", "hana"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
            {"goto": format!("{base}/_auth/logout?return_to=%2Faccount%2Fwishlist")},
            {"click": "button[value=this]", "waitText": "Sign out of Test IdP?"},
            {"click": "button[value=yes]", "waitText": "You have been signed out", "screenshot": "back-signed-out"},
            // "Continue" goes back where the customer was; the provider
            // forgot the browser too, so signing in asks again.
            {"click": "main a.button", "waitText": "Test IdP"},
            {"fill": ["#username", "hana"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
        ]),
    )
    .await;
    let back = seen[5]["url"].as_str().unwrap();
    assert!(
        back.starts_with(&format!("{base}/_auth/signed-out?state=")),
        "{back}"
    );
    let again = &seen[6];
    assert!(
        again["url"].as_str().unwrap().contains("/interaction/"),
        "expected the provider's sign-in form, got {}",
        again["url"]
    );
    assert_eq!(seen[8]["url"], format!("{base}/account/wishlist"));
}

#[tokio::test]
async fn a_guest_who_signs_in_at_checkout_hands_over_the_guest_id() {
    let (ports, https, idp, store) = shop_with_idp().await;
    let hook = crate::events::receiver(0).await;
    let cfg = login_config(
        &idp,
        "",
        "",
        &format!(
            "upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: cart, hosts: [shop.test], path_prefix: /cart, upstream: store, kind: web, access: guest }}
  - {{ name: checkout, hosts: [shop.test], path_prefix: /checkout, upstream: store, kind: web, access: required }}
events:
  webhooks:
    - {{ name: store, url: \"http://{}/hooks\", secret: {}, events: [identity.guest_converted] }}
",
            store.addr,
            hook.up.addr,
            crate::events::SECRET
        ),
    );
    let _gw = Gateway::start_on(ports, &cfg, &[]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "guest_checkout",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/cart/add?item=42"), "waitText": "x-guest-id"},
            {"goto": format!("{base}/checkout/payment?order=9"), "waitText": "Test IdP"},
            {"fill": ["#username", "mia"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id", "screenshot": "back-at-payment"},
            {"goto": format!("{base}/checkout/payment?order=9"), "waitText": "x-customer-id"},
        ]),
    )
    .await;
    let headers = |i: usize| {
        let text = seen[i]["text"].as_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
        v["headers"].clone()
    };
    let guest = headers(0)["x-guest-id"].as_str().unwrap().to_string();
    assert!(guest.starts_with("gst_"));
    assert_eq!(seen[3]["url"], format!("{base}/checkout/payment?order=9"));
    let first = headers(3);
    assert_eq!(first["x-previous-guest-id"], guest.as_str(), "{first}");
    let customer = first["x-customer-id"].as_str().unwrap().to_string();
    let later = headers(4);
    assert_eq!(later["x-customer-id"], customer.as_str());
    assert!(
        later.get("x-previous-guest-id").is_none(),
        "told once: {later}"
    );
    let events = crate::events::delivered_for(
        &hook.accepted,
        &customer,
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(events[0]["type"], "identity.guest_converted");
    assert_eq!(events[0]["data"]["guest_id"], guest.as_str());
}
