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
        !crm_text.contains("code=") && !crm_text.contains("omnigate_hop"),
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
    let signed_in = || {
        let mut jar = Jar::default();
        jar.add_domain("shop.test", &shared);
        jar
    };

    // A code works once, on its host only, in the browser that asked for it.
    let mut jar = signed_in();
    let hop = mint_code(&c, &mut jar, https, &format!("{crm_base}/x")).await;
    let r = get(crm_host.clone(), hop.clone(), jar.header("crm.brand.test")).await;
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
        get(crm_host.clone(), hop, jar.header("crm.brand.test"))
            .await
            .status,
        400,
        "replayed code"
    );
    let mut jar = signed_in();
    let hop = mint_code(&c, &mut jar, https, &format!("{crm_base}/x")).await;
    assert_eq!(
        get(
            account_host.clone(),
            hop.clone(),
            jar.header("crm.brand.test")
        )
        .await
        .status,
        400,
        "a code for the CRM host redeemed on another host"
    );
    assert_eq!(
        get(crm_host.clone(), hop, jar.header("crm.brand.test"))
            .await
            .status,
        400,
        "spent by the refused try"
    );
    assert_eq!(
        get(crm_host.clone(), "/_auth/hop?code=made-up".into(), None)
            .await
            .status,
        400
    );
    // Login CSRF: a code another customer minted, opened in a victim's
    // browser (no nonce, or the victim's own), signs nobody in.
    let mut attacker = signed_in();
    let hop = mint_code(&c, &mut attacker, https, &format!("{crm_base}/x")).await;
    let mut victim = Jar::default();
    victim.add(
        "crm.brand.test",
        "__Host-omnigate-hop=the-victims-own-nonce",
    );
    let r = get(crm_host.clone(), hop, victim.header("crm.brand.test")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r
        .headers
        .get_all("set-cookie")
        .iter()
        .all(|v| !v.to_str().unwrap().starts_with("__Host-omnigate=")));
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
    // URLs for providers are built from configured hosts only.
    let r = get(
        format!("evil.test:{https}"),
        "/_auth/login/idp".into(),
        None,
    )
    .await;
    assert_eq!(r.status, 421, "{}", r.text());
    assert!(r.header("location").is_none());

    assert_eq!(
        gw.metric("omnigate_logins_total{provider=\"idp\",result=\"hop_success\"}")
            .await,
        Some(2.0)
    );

    // Open redirects: every return URL is followed, through the hop, to
    // where the browser lands; dot segments that collapse into `//` and
    // wrong ports never leave the configured hosts.
    let hosts = [
        "login.shop.test",
        "www.shop.test",
        "account.shop.test",
        "crm.brand.test",
    ];
    for evil in [
        format!("{crm_base}//evil.test/"),
        format!("{crm_base}/.//evil.test/"),
        format!("{crm_base}/x/..//evil.test/"),
        format!("{crm_base}/%2e//evil.test/"),
        format!("{crm_base}///evil.test/"),
        "https://crm.brand.test:1/".to_string(),
        format!("{www}//evil.test/"),
        "/.//evil.test/".to_string(),
        "/x/..//evil.test/".to_string(),
        "/%2e//evil.test/".to_string(),
        "///evil.test/".to_string(),
        "//evil.test/".to_string(),
        "/\\evil.test/".to_string(),
        format!("https://evil.test:{https}/"),
    ] {
        let start = format!(
            "https://login.shop.test:{https}/_auth/login?return_to={}",
            url_encode(&evil)
        );
        let (visited, last) = follow(&c, &mut signed_in(), &start, &hosts).await;
        let landed = visited.last().unwrap();
        assert!(
            hosts.contains(&landed.host_str().unwrap_or("")) && landed.port() == Some(https),
            "{evil} left the configured hosts: {visited:?}"
        );
        assert!(last.status < 500, "{evil}: {}", last.status);
    }

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
    let sign_out = |origin: Option<String>| {
        let c = c.clone();
        let (crm_host, crm_cookie, csrf) = (crm_host.clone(), crm_cookie.clone(), csrf.clone());
        async move {
            let mut headers = vec![
                ("cookie", crm_cookie.clone()),
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
            ];
            if let Some(o) = origin {
                headers.push(("origin", o));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.send(request(
                "POST",
                &crm_host,
                "/_auth/logout",
                &headers,
                Bytes::from(format!("csrf={}&scope=this", url_encode(&csrf))),
            ))
            .await
            .unwrap()
        }
    };
    // Forced sign-out from another site: refused, whatever the Origin looks like.
    for evil in [
        "https://evil.test".to_string(),
        "null".to_string(),
        format!("https://crm.brand.test.evil.test:{https}"),
        format!("http://crm.brand.test:{https}"),
        "https://crm.brand.test".to_string(),
    ] {
        let r = sign_out(Some(evil.clone())).await;
        assert_eq!(r.status, 403, "{evil}: {}", r.text());
        assert_eq!(
            get(crm_host.clone(), "/".into(), Some(crm_cookie.clone()))
                .await
                .status,
            200,
            "{evil} signed the customer out"
        );
    }
    let r = sign_out(Some(crm_base.clone())).await;
    assert_eq!(r.status, 303, "{}", r.text());
    for (host, cookie) in [
        (format!("www.shop.test:{https}"), shared.clone()),
        (account_host, shared),
        (crm_host, crm_cookie),
    ] {
        let r = get(host.clone(), "/".into(), Some(cookie)).await;
        assert_eq!(r.status, 302, "{host} still signed in");
    }
}

/// Asks the auth host for a sign-in code for `target` (a CRM URL) as a
/// browser holding `jar` would: the CRM host binds the code to this browser
/// with a nonce first. Returns the code's path on the CRM host, unredeemed.
async fn mint_code(c: &Client, jar: &mut Jar, https: u16, target: &str) -> String {
    let mut at = url::Url::parse(&format!(
        "https://login.shop.test:{https}/_auth/login?return_to={}",
        url_encode(target)
    ))
    .unwrap();
    for _ in 0..4 {
        let host = at.host_str().unwrap().to_string();
        let pq = format!("{}?{}", at.path(), at.query().unwrap_or(""));
        let r = c
            .get_with_cookie(
                &format!("{host}:{https}"),
                &pq,
                jar.header(&host).as_deref(),
            )
            .await;
        jar.store(&host, &r);
        assert_eq!(r.status, 303, "{at}: {}", r.text());
        at = at.join(r.header("location").unwrap()).unwrap();
        if at.path() == "/_auth/hop" {
            assert_eq!(at.host_str(), Some("crm.brand.test"));
            return format!("{}?{}", at.path(), at.query().unwrap());
        }
    }
    panic!("no code minted: ended at {at}");
}
