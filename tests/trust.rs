//! The trust boundary through the real binary: no client spelling of a
//! header the gateway owns reaches a backend (HTTP/1.1 and HTTP/2), and no
//! path that a backend reads as a protected route passes a public one.

use bytes::Bytes;

use crate::support::*;

/// Headers an attacker sends, in spellings backends fold together.
const SPOOFS: [(&str, &str); 16] = [
    ("X_Customer_Id", "cus_victim"),
    ("X-Customer_Id", "cus_victim"),
    ("x_customer_email", "victim@example.test"),
    ("X_Omnigate_Assertion", "eyJhbGciOiJub25lIn0.e30."),
    ("X_Guest_Id", "gst_victim"),
    ("X_Forwarded_User", "admin"),
    ("X_Auth_Method", "cookie"),
    ("X-Real-IP", "6.6.6.6"),
    ("X_Real_IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("CF-Connecting-IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;proto=https"),
    ("X-Original-URL", "/acct/secret"),
    ("X-Rewrite-URL", "/acct/secret"),
    ("X-Forwarded-Prefix", "/acct"),
    ("x_app_flag", "1"),
];

/// Identity headers (as backends read them) only the gateway may set.
const IDENTITY: [&str; 6] = [
    "x-customer-id",
    "x-customer-email",
    "x-omnigate-assertion",
    "x-guest-id",
    "x-forwarded-user",
    "x-auth-method",
];

fn header_config(extra: &str, up: &Upstream, crm: &Upstream) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [], http2: true }}
{extra}upstreams:
  store: {{ addresses: [\"{}\"] }}
  crm:
    addresses: [\"{}\"]
    identity_headers: {{ customer_id: X-Forwarded-User }}
routes:
  - {{ name: crm, path_prefix: /crm, upstream: crm }}
  - {{ name: store, path_prefix: /, upstream: store }}
",
        up.addr, crm.addr
    ))
}

/// The names a CGI/WSGI/PHP/Rack backend derives from what it received.
fn as_backend_reads(headers: &serde_json::Value) -> Vec<String> {
    headers
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.to_ascii_lowercase().replace('_', "-"))
        .collect()
}

fn assert_nothing_spoofed(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    let h = &r.json()["headers"];
    let seen = as_backend_reads(h);
    for owned in IDENTITY.iter().chain(&[
        "true-client-ip",
        "cf-connecting-ip",
        "forwarded",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "x-app-flag",
    ]) {
        assert!(
            !seen.contains(&owned.to_string()),
            "{what}: {owned} reached the backend: {h}"
        );
    }
    assert!(
        !h.as_object().unwrap().keys().any(|k| k.contains('_')),
        "{what}: an underscore name passed: {h}"
    );
    assert_eq!(
        h["x-real-ip"], "127.0.0.1",
        "{what}: X-Real-IP is the client's address"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{what}");
}

#[tokio::test]
async fn no_spelling_of_an_owned_header_reaches_a_backend_over_h1_or_h2() {
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let gw = Gateway::start(&header_config("", &store, &crm), &[]).await;
    let h1 = Client::plain(gw.addr("http"));
    let h2 = gw.dev_client_h2();
    for path in ["/", "/crm/contacts"] {
        let r = h1
            .send(request("GET", "shop.test", path, &SPOOFS, Bytes::new()))
            .await
            .unwrap();
        assert_nothing_spoofed(&r, &format!("HTTP/1.1 {path}"));
        let r = h2
            .send(request("GET", "localhost", path, &SPOOFS, Bytes::new()))
            .await
            .unwrap();
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_nothing_spoofed(&r, &format!("HTTP/2 {path}"));
    }
}

#[tokio::test]
async fn underscore_names_can_be_kept_or_refused_but_owned_ones_never_pass() {
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let gw = Gateway::start(
        &header_config("requests: { underscores_in_headers: keep }\n", &store, &crm),
        &[],
    )
    .await;
    let c = Client::plain(gw.addr("http"));
    let r = c
        .send(request("GET", "shop.test", "/crm/x", &SPOOFS, Bytes::new()))
        .await
        .unwrap();
    let h = &r.json()["headers"];
    assert_eq!(
        h["x_app_flag"], "1",
        "an application's own underscore header is kept"
    );
    let seen = as_backend_reads(h);
    for owned in IDENTITY {
        assert!(
            !seen.contains(&owned.to_string()),
            "{owned} passed with `keep`: {h}"
        );
    }
    assert_eq!(h["x-real-ip"], "127.0.0.1");

    let gw = Gateway::start(
        &header_config(
            "requests: { underscores_in_headers: reject }\n",
            &store,
            &crm,
        ),
        &[],
    )
    .await;
    let c = Client::plain(gw.addr("http"));
    let r = c
        .send(request(
            "GET",
            "shop.test",
            "/",
            &[("x_app_flag", "1")],
            Bytes::new(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c.get("shop.test", "/").await;
    assert_eq!(r.status, 200);
}

fn path_config(idp: &Idp, app: &Upstream, acct_extra: &str) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}providers:
  - name: idp
    issuer: {}
    bearer: {{ audiences: [\"{IDP_AUDIENCE}\"] }}
upstreams:
  app: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: acct, path_prefix: /acct, upstream: app, kind: api, access: required{acct_extra} }}
  - {{ name: public, path_prefix: /, upstream: app, kind: api }}
",
        idp.issuer, app.addr
    ))
}

#[tokio::test]
async fn paths_a_backend_reads_as_the_protected_route_never_pass_the_public_one() {
    let idp = Idp::start().await;
    let app = Upstream::echo("app").await;
    let gw = Gateway::start(&path_config(&idp, &app, ""), &[]).await;
    let addr = gw.addr("http");
    // (raw request target, the status the gateway must answer without a token)
    let battery = [
        ("/%61cct/x", 401),
        ("/%41cct/x", 200), // `Acct` is another path to a case-sensitive backend
        ("/ac%63t", 401),
        ("//acct/x", 401),
        ("///acct//x", 401),
        ("/acct%2fsecret", 400),
        ("/acct%2Fsecret", 400),
        ("/pub%2f..%2facct/x", 400),
        ("/acct%5csecret", 400),
        ("/acct;x/y", 400),
        ("/acct;jsessionid=1", 400),
        ("/pub/..;/acct/x", 400),
        ("/pub/%3b/acct", 400),
        ("/pub/../acct/x", 400),
        ("/pub/%2e%2e/acct/x", 400),
        ("/pub/.%2e/acct/x", 400),
        ("/./acct/x", 400),
        ("/acct%00/x", 400),
        ("/a%c0%afcct", 400),
        ("/pub%u002facct", 400),
        ("/acct/x", 401),
    ];
    for (target, want) in battery {
        let (status, body) = raw_get(addr, "shop.test", target, &[]).await;
        assert_eq!(status, want, "{target}: {body}");
        if status == 200 {
            let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
            let path = seen["path"].as_str().unwrap();
            assert!(
                !path.starts_with("/acct"),
                "{target} reached the backend as {path}"
            );
        }
    }
    // With a token, the path matched is the path forwarded.
    let token = idp.sign(idp.user_claims("alice", "", 300), "RS256").await;
    let auth = format!("Bearer {token}");
    for (target, forwarded) in [
        ("/%61cct/x?q=%2F", "/acct/x?q=%2F"),
        ("//acct//x/", "/acct/x/"),
        ("/acct/caf%c3%a9", "/acct/caf%C3%A9"),
    ] {
        let (status, body) = raw_get(addr, "shop.test", target, &[("authorization", &auth)]).await;
        assert_eq!(status, 200, "{target}: {body}");
        let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["path"], forwarded, "{target}");
        assert!(seen["headers"]["x-customer-id"].is_string());
    }
}

#[tokio::test]
async fn a_route_for_a_case_insensitive_backend_takes_every_case() {
    let idp = Idp::start().await;
    let app = Upstream::echo("app").await;
    let gw = Gateway::start(&path_config(&idp, &app, ", case_insensitive: true"), &[]).await;
    let addr = gw.addr("http");
    for target in ["/ACCT/x", "/Acct", "/%41CCT/x", "/aCcT/"] {
        let (status, body) = raw_get(addr, "shop.test", target, &[]).await;
        assert_eq!(status, 401, "{target}: {body}");
    }
    let (status, _) = raw_get(addr, "shop.test", "/accounting", &[]).await;
    assert_eq!(status, 200, "segment boundaries still count");
}

#[tokio::test]
async fn relaxed_path_rules_are_the_operators_choice() {
    let idp = Idp::start().await;
    let app = Upstream::echo("app").await;
    let cfg = path_config(&idp, &app, "").replace(
        "providers:",
        "requests:\n  paths: { encoded_slashes: keep, semicolons: keep, merge_slashes: false }\nproviders:",
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let addr = gw.addr("http");
    let (status, body) = raw_get(addr, "shop.test", "/files/a%2fb;v=1", &[]).await;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["path"], "/files/a%2Fb;v=1");
    let (status, _) = raw_get(addr, "shop.test", "//acct/x", &[]).await;
    assert_eq!(
        status, 400,
        "without merging, `//` is refused, never passed"
    );
    let (status, _) = raw_get(addr, "shop.test", "/pub/..;/acct/x", &[]).await;
    assert_eq!(
        status, 400,
        "a servlet's dot segment is refused whatever the rules"
    );
}
