//! Forward-auth behind a real nginx (`auth_request`, with the snippets in
//! deploy/nginx as shipped): Chromium signs in through nginx and reaches a
//! cookie route; an API client reaches a bearer route; the backend sees
//! Omnigate's identity and never a client's own, nor Omnigate's session
//! cookie; Omnigate unreachable is a 503. Only trusted proxies are answered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::accounts::{headers_on, Visitor, PASSWORD};
use crate::support::*;

/// A real nginx serving TLS for shop.test in front of Omnigate and `backend`.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
            eprintln!("---- nginx error log ----\n{log}");
        }
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("nginx is required for forward-auth tests (tests/setup.sh installs it)")
}

impl Nginx {
    /// nginx on `port` for shop.test, Omnigate on `omnigate`, the app on `backend`.
    async fn start(port: u16, omnigate: u16, backend: std::net::SocketAddr, ca: &TestCa) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let (cert, key) = ca.leaf(&["shop.test"]);
        write(dir.path(), "shop.pem", &cert);
        write(dir.path(), "shop.key", &key);
        let snippets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx");
        let snippets = snippets.canonicalize().expect("deploy/nginx");
        let s = snippets.display();
        let conf = format!(
            "master_process off;
daemon off;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream omnigate {{ server 127.0.0.1:{omnigate}; keepalive 16; }}
  upstream shop {{ server {backend}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name shop.test;
    ssl_certificate {d}/shop.pem;
    ssl_certificate_key {d}/shop.key;
    include {s}/omnigate-server.conf;
    location / {{
      include {s}/omnigate-protect.conf;
      proxy_pass http://shop;
    }}
  }}
}}
"
        );
        write(dir.path(), "nginx.conf", &conf);
        let child = Command::new(nginx_binary())
            .args(["-p", &d, "-c", &format!("{d}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { child, port, dir };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not listen on {port}");
    }

    fn client(&self, ca: &TestCa) -> Client {
        let addr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        Client::tls(addr, &ca.cert_pem, "shop.test", false)
    }
}

/// The shop behind nginx: a cookie route, a guest route, a bearer route
/// (`orders:read`) and a public home, all to the forward-auth upstream `shop`.
fn shop(sink: &MailSink, idp: &Idp, nginx: u16, trusted: &str) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}trusted_proxies: [{trusted}]
{}{}upstreams:
  shop: {{ forward_auth: true }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: shop, kind: web, access: required }}
  - {{ name: cart, hosts: [shop.test], path_prefix: /cart, upstream: shop, kind: web, access: guest }}
  - {{ name: orders-api, hosts: [shop.test], path_prefix: /api/orders, upstream: shop, kind: api, access: required, scopes: [\"orders:read\"] }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: shop, kind: web, access: public }}
",
        sink.accounts_config(&format!("https://shop.test:{nginx}"), ""),
        bearer_provider(idp),
    ))
}

struct Setup {
    gw: Gateway,
    nginx: Nginx,
    ca: TestCa,
    idp: Idp,
    _sink: MailSink,
    _backend: Upstream,
}

async fn setup() -> Setup {
    let sink = MailSink::start().await;
    let idp = Idp::start().await;
    let backend = Upstream::echo("shop").await;
    let port = free_port();
    let gw = Gateway::start(&shop(&sink, &idp, port, "127.0.0.1/32"), &[]).await;
    let ca = TestCa::new();
    let nginx = Nginx::start(port, gw.port("http"), backend.addr, &ca).await;
    Setup {
        gw,
        nginx,
        ca,
        idp,
        _sink: sink,
        _backend: backend,
    }
}

impl Setup {
    fn visitor(&self) -> Visitor {
        let mut v = Visitor::new(self.nginx.client(&self.ca));
        v.host = format!("shop.test:{}", self.nginx.port);
        v
    }
}

/// A client's own identity and proof, in the spellings backends confuse.
const SPOOFS: [(&str, &str); 6] = [
    ("X-Customer-Id", "spoofed-id"),
    ("x_customer_id", "spoofed-id"),
    ("X-Customer-Email", "spoofed@example.test"),
    ("X-Omnigate-Assertion", "spoofed.assertion.value"),
    ("X-Auth-Method", "spoofed"),
    ("X-Forwarded-Uri", "/"),
];

fn spoof_free(h: &Value) {
    let text = h.to_string();
    assert!(
        !text.contains("spoofed"),
        "a client's identity reached the backend: {h:#}"
    );
    let cookies = h["cookie"].as_str().unwrap_or("");
    assert!(
        !cookies.contains("__Host-omnigate"),
        "Omnigate's cookie reached the backend: {cookies}"
    );
}

#[tokio::test]
async fn behind_nginx_a_browser_signs_in_and_the_backend_sees_only_omnigates_identity() {
    let s = setup().await;
    let email = "ada@example.test";
    let mut v = s.visitor();
    let (status, page) = v.register(email, PASSWORD).await;
    assert_eq!(status, 303, "registering through nginx: {page}");

    let base = format!("https://shop.test:{}", s.nginx.port);
    let seen = browse(
        "forward_auth_nginx",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account/orders?page=2"), "waitText": "Forgot your password?", "screenshot": "sign-in"},
            {"fill": ["#login-email", email]},
            {"fill": ["#login-password", PASSWORD]},
            {"click": "form[action='/_auth/login/password'] button[type=submit]", "waitText": "x-customer-id", "screenshot": "arrived"},
        ]),
    )
    .await;
    let arrived = seen.last().expect("steps");
    assert!(
        arrived["url"]
            .as_str()
            .unwrap()
            .ends_with("/account/orders?page=2"),
        "{arrived:#}"
    );
    let h = headers_on(arrived);
    assert_eq!(h["x-customer-email"], email);
    assert_eq!(h["x-auth-method"], "cookie");
    assert!(h["x-omnigate-assertion"]
        .as_str()
        .is_some_and(|a| a.split('.').count() == 3));
    spoof_free(&h);

    // Signed in over HTTP, with a backend cookie beside Omnigate's own and
    // every spoof: the backend gets the real customer and its own cookie.
    let me = v.get("/account").await.json()["headers"].clone();
    let id = me["x-customer-id"].as_str().expect("signed in").to_string();
    v.cookies.insert("theme".into(), "dark".into());
    let spoofed = v.send("GET", "/account/x", &SPOOFS, "").await;
    assert_eq!(spoofed.status, 200, "{}", spoofed.text());
    let h = spoofed.json()["headers"].clone();
    assert_eq!(h["x-customer-id"], id.as_str());
    assert_eq!(h["cookie"], "theme=dark");
    spoof_free(&h);

    // A public page: no identity at all, whatever the client claims.
    let mut stranger = s.visitor();
    let home = stranger.send("GET", "/", &SPOOFS, "").await;
    assert_eq!(home.status, 200);
    let h = home.json()["headers"].clone();
    assert!(h.get("x-customer-id").is_none(), "{h:#}");
    spoof_free(&h);

    // Not signed in, claiming another URL: still sent to sign in, back here.
    let r = stranger.send("GET", "/account/x?y=1", &SPOOFS, "").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(
            format!(
                "https://shop.test:{}/_auth/login?return_to=%2Faccount%2Fx%3Fy%3D1",
                s.nginx.port
            )
            .as_str()
        )
    );

    // A guest route: an id, its cookie set through nginx, the same next time.
    let first = stranger.get("/cart").await;
    let guest = first.json()["headers"]["x-guest-id"]
        .as_str()
        .expect("a guest id")
        .to_string();
    assert!(first
        .header("set-cookie")
        .is_some_and(|c| c.starts_with("__Host-")));
    let again = stranger.get("/cart").await;
    assert_eq!(again.json()["headers"]["x-guest-id"], guest.as_str());
}

#[tokio::test]
async fn behind_nginx_a_bearer_route_checks_the_token_and_omnigate_down_is_a_503() {
    let s = setup().await;
    let c = s.nginx.client(&s.ca);
    let host = format!("shop.test:{}", s.nginx.port);
    let token = s
        .idp
        .sign(s.idp.user_claims("api-user", "orders:read", 300), "RS256")
        .await;
    let auth = format!("Bearer {token}");
    let mut headers = SPOOFS.to_vec();
    headers.push(("authorization", &auth));
    headers.push(("accept", "application/json"));
    let get = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let c = c.clone();
        let host = host.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.send(request("GET", &host, path, &h, Bytes::new()))
                .await
                .unwrap()
        }
    };
    let owned = |h: &[(&'static str, &str)]| {
        h.iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect::<Vec<_>>()
    };

    let ok = get("/api/orders/7", owned(&headers)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let h = ok.json()["headers"].clone();
    assert_eq!(h["x-auth-method"], "bearer");
    assert_eq!(h["x-customer-email"], "api-user@example.test");
    assert_eq!(
        h["authorization"],
        auth.as_str(),
        "the backend keeps the client's own Authorization"
    );
    spoof_free(&h);

    let none = get("/api/orders/7", owned(&[("accept", "application/json")])).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"omnigate\"")
    );
    assert!(none.header("location").is_none());

    let bad = get(
        "/api/orders/7",
        owned(&[("authorization", "Bearer not.a.token")]),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(
        bad.header("www-authenticate")
            .is_some_and(|v| v.contains("invalid_token")),
        "{:?}",
        bad.headers
    );

    let narrow = s
        .idp
        .sign(s.idp.user_claims("api-user", "profile", 300), "RS256")
        .await;
    let narrow = format!("Bearer {narrow}");
    let forbidden = get("/api/orders/7", owned(&[("authorization", &narrow)])).await;
    assert_eq!(forbidden.status, 403);

    // Omnigate gone: nginx answers 503 with Retry-After, never lets it through.
    let Setup { gw, nginx, .. } = s;
    drop(gw);
    let down = get("/api/orders/7", owned(&headers)).await;
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(down.header("retry-after"), Some("5"));
    drop(nginx);
}

/// The four headers naming `GET https://shop.test{uri}`.
fn named(uri: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.test"),
        ("x-forwarded-uri", uri),
    ]
}

/// A forward-auth call to `path` with `headers` (JSON answers unless told).
async fn ask(c: &Client, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("accept", "application/json")];
    all.extend_from_slice(headers);
    c.send(request("GET", "omnigate", path, &all, Bytes::new()))
        .await
        .unwrap()
}

const ENDPOINT: &str = "/_omnigate/forward-auth";

#[tokio::test]
async fn forward_auth_answers_only_trusted_proxies_and_its_routes_are_not_served_directly() {
    let sink = MailSink::start().await;
    let idp = Idp::start().await;
    let gw = Gateway::start(&shop(&sink, &idp, 443, "10.9.9.9/32"), &[]).await;
    let c = Client::plain(gw.addr("http"));
    let r = ask(&c, ENDPOINT, &named("/")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let kind = r.json()["type"].as_str().unwrap().to_string();
    assert!(kind.ends_with("untrusted-caller"), "{kind}");
    let direct = c
        .send(request("GET", "shop.test", "/account", &[], Bytes::new()))
        .await
        .unwrap();
    assert_eq!(direct.status, 404, "not proxied: {}", direct.text());
}

#[tokio::test]
async fn a_trusted_caller_gets_problems_for_what_it_cannot_ask() {
    let sink = MailSink::start().await;
    let idp = Idp::start().await;
    let gw = Gateway::start(&shop(&sink, &idp, 443, "127.0.0.1/32"), &[]).await;
    let c = Client::plain(gw.addr("http"));
    let ok = ask(&c, ENDPOINT, &named("/")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let partial = &named("/")[..3];
    let r = ask(&c, ENDPOINT, partial).await;
    assert_eq!(r.status, 400);
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("X-Forwarded-Method"), "{detail}");
    let r = ask(&c, ENDPOINT, &named("/%2e%2e/account")).await;
    assert_eq!(r.status, 400, "refused as the proxy would: {}", r.text());
    let r = ask(&c, ENDPOINT, &named("/api/orders")).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").is_some());
    let r = ask(&c, &format!("{ENDPOINT}?redirect=302"), &named("/")).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // A browser's redirect, as it is and as nginx needs it.
    let mut page = named("/account");
    page.push(("accept", "text/html"));
    let r = ask(&c, ENDPOINT, &page).await;
    assert_eq!(r.status, 302);
    let to_sign_in = Some("/_auth/login?return_to=%2Faccount");
    assert_eq!(r.header("location"), to_sign_in);
    let r = ask(&c, &format!("{ENDPOINT}?redirect=401"), &page).await;
    assert_eq!((r.status, r.header("location")), (401, to_sign_in));

    let mut elsewhere = named("/");
    elsewhere[2] = ("x-forwarded-host", "elsewhere.test");
    let r = ask(&c, ENDPOINT, &elsewhere).await;
    assert_eq!(r.status, 404, "{}", r.text());
}
