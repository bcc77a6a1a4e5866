//! The portal's pages tested in-process: the axum router driven with
//! `oneshot`, no proxy, no sockets, no browser, so each test takes
//! milliseconds. What crosses the proxy (TLS, the bridge, hops between
//! hosts) stays in the real-binary tests; how pages look and work in a
//! browser is in `walk.rs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use omnigate::portal::Conn;
use omnigate::state::App;
use tower::ServiceExt;

const PASSWORD: &str = "violet kettle 42 morning";

/// The portal of a gateway started in this process on embedded storage.
struct Portal {
    router: axum::Router,
    app: Arc<App>,
    /// Cookies the pages set, sent back as a browser would.
    jar: BTreeMap<String, String>,
    accept_language: Option<&'static str>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Portal {
    async fn start(extra: &str) -> Portal {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "server: {{ state_dir: {state} }}
listeners:
  - {{ name: https, address: 127.0.0.1:1, tls: {{ certificates: [] }} }}
upstreams:
  store: {{ addresses: [\"127.0.0.1:1\"] }}
routes:
  - {{ name: store, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
accounts:
  passwords: true
  public_url: https://shop.test
  argon2: {{ memory_kib: 19456, iterations: 2, parallelism: 1 }}
  # Mails are tested end to end (accounts.rs, walk.rs); here they go nowhere.
  mail: {{ from: \"Shop <no-reply@shop.test>\", webhook: {{ url: \"http://127.0.0.1:9/mail\", secret: in-process-test-secret }} }}
{extra}",
            state = dir.path().join("state").display(),
        );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = omnigate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let app = App::start(Path::new(&path), config).await.unwrap();
        Portal {
            router: omnigate::portal::router(app.clone()),
            app,
            jar: BTreeMap::new(),
            accept_language: None,
            _dir: dir,
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&str>) -> Answer {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "shop.test");
        if method == Method::POST {
            req = req
                .header("origin", "https://shop.test")
                .header("content-type", "application/x-www-form-urlencoded");
        }
        if let Some(lang) = self.accept_language {
            req = req.header("accept-language", lang);
        }
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", cookies.join("; "));
        }
        let mut req = req
            .body(axum::body::Body::from(form.unwrap_or("").to_string()))
            .unwrap();
        let here = url::Url::parse(&format!("https://shop.test{path}")).unwrap();
        req.extensions_mut().insert(Conn {
            peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            client: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            tls: true,
            request_id: "test".into(),
            host: "shop.test".into(),
            here: Some(here),
        });
        req.extensions_mut().insert(self.app.snapshot());
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        for c in parts.headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
        let body = body.collect().await.unwrap().to_bytes();
        no_raw_keys(path, &String::from_utf8_lossy(&body));
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// What the bridge adds to a request: the connection and the snapshot.
    fn connect(&self, req: &mut http::Request<axum::body::Body>, host: &str) {
        req.extensions_mut().insert(Conn {
            peer: None,
            client: None,
            tls: true,
            request_id: "t".into(),
            host: host.into(),
            here: None,
        });
        req.extensions_mut().insert(self.app.snapshot());
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// Submits the form of `page` to `action` with its CSRF token and `fields`.
    async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Answer {
        let html = self.get(page).await.body;
        let csrf = csrf_in(&html);
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", &csrf);
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        self.send(Method::POST, action, Some(&form.finish())).await
    }
}

/// No page shows a catalogue key instead of its text.
fn no_raw_keys(path: &str, html: &str) {
    let groups = [
        "common", "signin", "login", "register", "welcome", "field", "reset", "account", "consent",
        "receipt", "logout", "prove", "problem", "message", "mail",
    ];
    for text in html
        .split('<')
        .filter_map(|t| t.split_once('>').map(|(_, t)| t))
    {
        for word in text.split_whitespace() {
            let raw = word.split_once('.').is_some_and(|(g, rest)| {
                groups.contains(&g)
                    && rest.len() > 1
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
            });
            assert!(!raw, "{path} shows the raw key `{word}`");
        }
    }
}

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

fn heading(html: &str) -> &str {
    let start = html
        .find("<h1")
        .and_then(|i| html[i..].find('>').map(|j| i + j + 1));
    start.map_or("", |s| html[s..].split("</h1>").next().unwrap_or(""))
}

#[tokio::test]
async fn every_page_renders_in_english_and_german_with_its_language_declared() {
    let mut p = Portal::start("pages: { languages: [en, de] }\n").await;
    let pages = [
        ("/_auth/login", "Sign in", "Anmelden"),
        ("/_auth/register", "Create an account", "Konto erstellen"),
        (
            "/_auth/reset",
            "Reset your password",
            "Passwort zurücksetzen",
        ),
        (
            "/_auth/reset/confirm?token=made-up",
            "This link does not work any more",
            "Dieser Link funktioniert nicht mehr",
        ),
        (
            "/_auth/verify?token=made-up",
            "This link does not work any more",
            "Dieser Link funktioniert nicht mehr",
        ),
        ("/_auth/logout", "You are signed out", "Sie sind abgemeldet"),
        (
            "/_auth/nothing-here",
            "Page not found",
            "Seite nicht gefunden",
        ),
    ];
    for (lang, accept) in [("en", "en-GB,en;q=0.9"), ("de", "de-AT,de;q=0.9,en;q=0.5")] {
        p.accept_language = Some(accept);
        for (path, en, de) in pages {
            let a = p.get(path).await;
            let want = if lang == "en" { en } else { de };
            assert!(a.status.as_u16() < 500, "{path}: {}", a.status);
            assert_eq!(heading(&a.body), want, "{path} in {lang}");
            assert_eq!(a.headers["content-language"], lang, "{path}");
            assert!(
                a.body.contains(&format!("<html lang=\"{lang}\">")),
                "{path}"
            );
            assert!(
                !a.body.contains("signin.") && !a.body.contains("common."),
                "a raw key on {path}"
            );
        }
    }
}

#[tokio::test]
async fn registration_signs_in_and_says_where_the_link_went() {
    let mut p = Portal::start("").await;
    let r = p
        .submit(
            "/_auth/register?return_to=%2Fcart",
            "/_auth/register",
            &[
                ("email", "Ada@Example.test"),
                ("password", PASSWORD),
                ("name", "Ada"),
                ("return_to", "/cart"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.location(),
        "/_auth/welcome?return_to=https%3A%2F%2Fshop.test%2Fcart"
    );
    let welcome = p.get(r.location()).await;
    assert_eq!(heading(&welcome.body), "Your account is ready");
    assert!(welcome.body.contains("Welcome, Ada."), "{}", welcome.body);
    assert!(
        welcome.body.contains("<strong>ada@example.test</strong>"),
        "{}",
        welcome.body
    );
    assert!(
        welcome
            .body
            .contains("href=\"&#x2f;_auth&#x2f;login?return_to=https%3A%2F%2Fshop.test%2Fcart\""),
        "{}",
        welcome.body
    );
    // Continue: back where the customer was, signed in.
    let on = p
        .get("/_auth/login?return_to=https%3A%2F%2Fshop.test%2Fcart")
        .await;
    assert_eq!(on.status, 303);
    assert_eq!(on.location(), "/cart");
    let account = p.get("/_account").await;
    assert_eq!(heading(&account.body), "Your account");
    assert!(
        account.body.contains("(not confirmed yet)"),
        "{}",
        account.body
    );
    // Signed out, the welcome page has nothing to say and goes on.
    p.jar.clear();
    let gone = p.get("/_auth/welcome?return_to=%2Fcart").await;
    assert_eq!(gone.status, 303);
    assert_eq!(gone.location(), "/cart");
}

#[tokio::test]
async fn a_form_error_speaks_the_customers_language_and_keeps_the_entries() {
    let mut p = Portal::start("pages: { languages: [en, de] }\n").await;
    p.accept_language = Some("de");
    let r = p
        .submit(
            "/_auth/register",
            "/_auth/register",
            &[
                ("email", "not-an-address"),
                ("password", "password123"),
                ("name", "Jonas"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body
            .contains("Geben Sie eine E-Mail-Adresse wie name@example.com ein."),
        "{}",
        r.body
    );
    assert!(r.body.contains("zu verbreitet"), "{}", r.body);
    assert!(r.body.contains("value=\"Jonas\""), "{}", r.body);
    assert!(
        !r.body.contains("password123"),
        "a password is never echoed"
    );
}

#[tokio::test]
async fn state_changes_need_the_form_token_and_this_origin() {
    let mut p = Portal::start("").await;
    p.get("/_auth/login").await;
    let no_token = p
        .send(
            Method::POST,
            "/_auth/login/password",
            Some("email=a%40b.test&password=x"),
        )
        .await;
    assert_eq!(no_token.status, 403);
    assert!(
        no_token.body.contains("The form had expired"),
        "{}",
        no_token.body
    );
    // Another site's form: refused before any handler.
    let html = p.get("/_auth/login").await.body;
    let body = format!("csrf={}&email=a%40b.test&password=x", csrf_in(&html));
    let mut req = http::Request::post("/_auth/login/password")
        .header("host", "shop.test")
        .header("origin", "https://evil.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(body))
        .unwrap();
    p.connect(&mut req, "shop.test");
    let cross = p.router.clone().oneshot(req).await.unwrap();
    assert_eq!(cross.status(), 403);
}

#[tokio::test]
async fn a_page_on_a_host_the_configuration_does_not_name_is_421() {
    let p = Portal::start("").await;
    let mut req = http::Request::get("/_auth/login")
        .header("host", "elsewhere.test")
        .body(axum::body::Body::empty())
        .unwrap();
    p.connect(&mut req, "elsewhere.test");
    let resp = p.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 421);
}

#[tokio::test]
async fn every_form_error_is_a_text_in_the_customers_language() {
    let mut p = Portal::start("pages: { languages: [en, de] }\n").await;
    p.accept_language = Some("de");
    let bad = [("email", "nope")];
    let login = p
        .submit("/_auth/login", "/_auth/login/password", &bad)
        .await;
    assert!(
        login.body.contains("Geben Sie eine E-Mail-Adresse"),
        "{}",
        login.body
    );
    let reset = p.submit("/_auth/reset", "/_auth/reset", &bad).await;
    assert!(
        reset.body.contains("Geben Sie eine E-Mail-Adresse"),
        "{}",
        reset.body
    );
    let fields = [("email", "kim@example.test"), ("password", PASSWORD)];
    p.submit("/_auth/register", "/_auth/register", &fields)
        .await;
    let long = "x".repeat(101);
    let profile = p
        .submit("/_account", "/_account/profile", &[("name", &long)])
        .await;
    assert_eq!(profile.status, 422);
    assert!(
        profile.body.contains("höchstens 100 Zeichen"),
        "{}",
        profile.body
    );
}

#[tokio::test]
async fn an_account_form_without_the_sessions_token_changes_nothing() {
    let mut p = Portal::start("").await;
    let fields = [
        ("email", "lou@example.test"),
        ("password", PASSWORD),
        ("name", "Lou"),
    ];
    p.submit("/_auth/register", "/_auth/register", &fields)
        .await;
    let stale = p
        .send(
            Method::POST,
            "/_account/profile",
            Some("csrf=not-the-token&name=Mallory"),
        )
        .await;
    assert_eq!(stale.status, 403);
    assert!(
        stale.body.contains("The form had expired"),
        "{}",
        stale.body
    );
    assert!(
        stale.body.contains("value=\"Lou\""),
        "nothing changed: {}",
        stale.body
    );
    // Signed out, the same form goes to sign-in.
    p.jar.clear();
    let out = p
        .send(
            Method::POST,
            "/_account/profile",
            Some("csrf=x&name=Mallory"),
        )
        .await;
    assert_eq!(out.status, 303);
    assert!(
        out.location().starts_with("/_auth/login"),
        "{}",
        out.location()
    );
}

#[tokio::test]
async fn only_a_form_post_providers_callback_takes_a_cross_site_post() {
    let p = Portal::start(
        "providers:
  - { name: idp, issuer: \"http://127.0.0.1:9\", login: { client_id: web, client_secret: web-secret-0123 } }
  - { name: apple, preset: apple, issuer: \"http://127.0.0.1:9\", login: { client_id: com.shop, client_secret: apple-secret-0123 } }
",
    )
    .await;
    let post = |path: &str, origin: &str| {
        let mut req = http::Request::post(path)
            .header("host", "shop.test")
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from("state=forged&code=c"))
            .unwrap();
        let here = url::Url::parse(&format!("https://shop.test{path}")).unwrap();
        p.connect(&mut req, "shop.test");
        req.extensions_mut().get_mut::<Conn>().unwrap().here = Some(here);
        p.router.clone().oneshot(req)
    };
    let status =
        |r: Result<axum::response::Response, std::convert::Infallible>| r.unwrap().status();
    let apple = "https://appleid.apple.com";
    // The posting provider's callback: past the Origin check, then refused
    // because this browser started no such sign-in.
    assert_eq!(status(post("/_auth/callback/apple", apple).await), 400);
    // Any other provider's callback, a look-alike name, or another form: 403.
    for path in [
        "/_auth/callback/idp",
        "/_auth/callback/appl",
        "/_auth/callback/apple2",
        "/_auth/login/password",
        "/_auth/logout",
    ] {
        assert_eq!(status(post(path, apple).await), 403, "{path}");
    }
    // Same origin, a provider that answers by redirect: no POST callback.
    assert_eq!(
        status(post("/_auth/callback/idp", "https://shop.test").await),
        404
    );
}
