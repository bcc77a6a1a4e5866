//! One sign-in across domains: hosts under a cookie domain share its cookie;
//! a host in another registrable domain gets its session through a
//! single-use, host-bound code from the central auth host. Headless Chromium,
//! a real OpenID provider, the gateway's HTTPS listener.

use bytes::Bytes;
use serde_json::json;

use crate::support::*;

fn cookie<'a>(seen: &'a Seen, name: &str, domain: &str) -> &'a serde_json::Value {
    seen["cookies"]
        .as_array()
        .expect("cookies observed")
        .iter()
        .find(|c| c["name"] == name && c["domain"] == domain)
        .unwrap_or_else(|| panic!("no cookie {name} for {domain} in {:?}", seen["cookies"]))
}

/// The value of a `name=value` pair in a `Set-Cookie` header.
fn set_cookie_value(r: &Resp, name: &str) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie set: {:?}", r.headers))
        .to_string()
}

#[tokio::test]
async fn one_sign_in_serves_subdomains_and_another_domain() {
    let ports = reserve_ports();
    let https = ports["https"];
    let idp = Idp::start_with_web_client(Some(&format!(
        "https://login.shop.test:{https}/_auth/callback/idp"
    )))
    .await;
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let cfg = login_config(
        &idp,
        "",
        "",
        &format!(
            "sessions:
  cookie_domains: [shop.test]
  auth_host: login.shop.test
upstreams:
  store: {{ addresses: [\"{store}\"] }}
  crm: {{ addresses: [\"{crm}\"] }}
routes:
  - {{ name: store, hosts: [www.shop.test, account.shop.test], path_prefix: /, upstream: store, kind: web, access: required }}
  - {{ name: crm, hosts: [crm.brand.test], path_prefix: /, upstream: crm, kind: web, access: required }}
",
            store = store.addr,
            crm = crm.addr,
        ),
    );
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let www = format!("https://www.shop.test:{https}");
    let account = format!("https://account.shop.test:{https}");
    let crm_base = format!("https://crm.brand.test:{https}");
    let seen = browse(
        "cross_domain_sign_in",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{www}/orders?x=1"), "waitText": "Test IdP", "screenshot": "1-provider"},
            {"fill": ["#username", "dana"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id", "cookies": true, "screenshot": "2-store"},
            {"goto": format!("{account}/profile"), "waitText": "x-customer-id"},
            {"goto": format!("{crm_base}/tickets?id=7"), "waitText": "x-customer-id", "cookies": true, "screenshot": "3-crm"},
        ]),
    )
    .await;

    // Signed in once, on the auth host, and back on exactly the store URL.
    assert_eq!(seen[2]["url"], format!("{www}/orders?x=1"));
    let customer = customer_id_in(seen[2]["text"].as_str().unwrap());
    // Another host of the cookie domain: the same customer, no second sign-in.
    assert_eq!(seen[3]["url"], format!("{account}/profile"));
    assert_eq!(customer_id_in(seen[3]["text"].as_str().unwrap()), customer);
    // Another registrable domain: the same customer after the hop, with the
    // code gone from the address bar.
    assert_eq!(seen[4]["url"], format!("{crm_base}/tickets?id=7"));
    let crm_text = seen[4]["text"].as_str().unwrap();
    assert_eq!(customer_id_in(crm_text), customer);
    assert!(crm_text.contains("\"upstream\":\"crm\""), "{crm_text}");
    assert!(
        !crm_text.contains("code="),
        "the hop code reached the backend: {crm_text}"
    );

    // The shared cookie is Domain=shop.test and __Secure-; the CRM's is host-only __Host-.
    let shared = cookie(&seen[2], "__Secure-omnigate", ".shop.test");
    assert_eq!(shared["secure"], true);
    assert_eq!(shared["httpOnly"], true);
    assert_eq!(shared["sameSite"], "Lax");
    let shared = format!("__Secure-omnigate={}", shared["value"].as_str().unwrap());
    let crm_cookie = cookie(&seen[4], "__Host-omnigate", "crm.brand.test");
    assert_eq!(crm_cookie["httpOnly"], true);
    let crm_cookie = format!("__Host-omnigate={}", crm_cookie["value"].as_str().unwrap());
    assert_ne!(shared, crm_cookie, "each domain holds its own session id");

    let c = gw.dev_client();
    let get = |host: String, path: String, cookie: Option<String>| {
        let c = c.clone();
        async move { c.get_with_cookie(&host, &path, cookie.as_deref()).await }
    };
    let login_host = format!("login.shop.test:{https}");
    let crm_host = format!("crm.brand.test:{https}");
    let account_host = format!("account.shop.test:{https}");
    let mint = || {
        get(
            login_host.clone(),
            format!(
                "/_auth/login?return_to={}",
                url_encode(&format!("{crm_base}/x"))
            ),
            Some(shared.clone()),
        )
    };
    let code_url = |r: &Resp| {
        assert_eq!(r.status, 303, "{}", r.text());
        let to = r.header("location").unwrap().to_string();
        assert!(
            to.starts_with(&format!("{crm_base}/_auth/hop?code=")),
            "{to}"
        );
        to[crm_base.len()..].to_string()
    };

    // A code works once, on its host only.
    let hop = code_url(&mint().await);
    let r = get(crm_host.clone(), hop.clone(), None).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/x"));
    let second = format!(
        "__Host-omnigate={}",
        set_cookie_value(&r, "__Host-omnigate")
    );
    assert_eq!(
        get(crm_host.clone(), "/".into(), Some(second)).await.status,
        200
    );
    assert_eq!(
        get(crm_host.clone(), hop, None).await.status,
        400,
        "replayed code"
    );
    let hop = code_url(&mint().await);
    assert_eq!(
        get(account_host.clone(), hop.clone(), None).await.status,
        400,
        "a code for the CRM host redeemed on another host"
    );
    assert_eq!(
        get(crm_host.clone(), hop, None).await.status,
        400,
        "spent by the refused try"
    );
    assert_eq!(
        get(crm_host.clone(), "/_auth/hop?code=made-up".into(), None)
            .await
            .status,
        400
    );
    // No code for a host the configuration does not name.
    let r = get(
        login_host.clone(),
        format!(
            "/_auth/login?return_to={}",
            url_encode("https://evil.test/steal")
        ),
        Some(shared.clone()),
    )
    .await;
    assert_eq!(r.header("location"), Some("/"));

    // Signing out on the CRM ends the sign-in on every domain.
    let page = get(
        crm_host.clone(),
        "/_auth/logout".into(),
        Some(crm_cookie.clone()),
    )
    .await;
    let html = page.text();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf field on the sign-out page")
        .to_string();
    let r = c
        .send(request(
            "POST",
            &crm_host,
            "/_auth/logout",
            &[
                ("cookie", &crm_cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Bytes::from(format!("csrf={}&scope=this", url_encode(&csrf))),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 303, "{}", r.text());
    for (host, cookie) in [
        (format!("www.shop.test:{https}"), shared.clone()),
        (account_host, shared),
        (crm_host, crm_cookie),
    ] {
        let r = get(host.clone(), "/".into(), Some(cookie)).await;
        assert_eq!(r.status, 302, "{host} still signed in");
    }
    assert_eq!(
        gw.metric("omnigate_logins_total{provider=\"idp\",result=\"hop_success\"}")
            .await,
        Some(2.0)
    );
}
