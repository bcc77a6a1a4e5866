//! Sign-in with the identities customers already have: Meta (OAuth 2.0 and
//! the Graph API), GitHub (OAuth 2.0, `/user/emails`), Apple (form_post, a
//! made ES256 client secret), Microsoft (multi-tenant issuer) and Google
//! (hosted domain), each against a faithful local stand-in of its protocol
//! (tests/node/standin.mjs), and client authentication by `private_key_jwt`
//! and `client_secret_post` against the real oidc-provider.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::accounts::{headers_on, Visitor, PASSWORD};
use crate::support::*;

/// One provider stand-in process.
pub struct Standin {
    _child: tokio::process::Child,
    pub base: String,
    pub port: u16,
}

impl Standin {
    /// Starts the stand-in `kind` for the client `id`/`secret` whose only
    /// redirect URI is `redirect_uri`; `env` adds settings (Apple's key).
    pub async fn start(
        kind: &str,
        secret: &str,
        redirect_uri: &str,
        env: &[(&str, String)],
    ) -> Standin {
        use tokio::io::AsyncBufReadExt;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert!(
            root.join("tests/node/node_modules/oidc-provider").is_dir(),
            "the stand-ins need tests/node's packages: run tests/run (it runs npm ci)"
        );
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(root.join("tests/node/standin.mjs"))
            .env("STANDIN", kind)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", secret)
            .env("REDIRECT_URI", redirect_uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("node is required (tests/run installs it)");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the stand-in did not start in 20 s")
            .expect("read")
            .expect("the stand-in exited");
        let v: Value = serde_json::from_str(&line).expect("stand-in start line");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Standin {
            _child: child,
            base: v["base"].as_str().expect("base").to_string(),
            port: v["port"].as_u64().expect("port") as u16,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What the stand-in recorded (authorizations, token exchanges, refusals).
    pub async fn log(&self) -> Vec<Value> {
        let r = get(self.addr(), "/_test/log").await.expect("stand-in log");
        r.json().as_array().cloned().unwrap_or_default()
    }
}

const CLIENT_ID: &str = "omnigate-shop";
const SECRET: &str = "standin-secret-0123456789";

/// Ports for a gateway, and a stand-in whose redirect URI is the gateway's
/// callback for provider `name` (retried until their ports differ).
async fn ports_and_standin(
    kind: &str,
    name: &str,
    env: &[(&str, String)],
) -> (HashMap<&'static str, u16>, Standin) {
    loop {
        let ports = reserve_ports();
        let redirect = format!("https://shop.test:{}/_auth/callback/{name}", ports["https"]);
        let s = Standin::start(kind, SECRET, &redirect, env).await;
        if !ports.values().any(|p| *p == s.port) {
            return (ports, s);
        }
    }
}

/// A shop: the HTTPS listener, `providers` (YAML list items), an echo
/// upstream behind `/account` (sign-in required) and `/` (optional), and
/// `extra` top-level settings.
fn shop(providers: &str, store: &Upstream, extra: &str) -> String {
    config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
providers:
{providers}{extra}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
",
        store.addr
    ))
}

/// The Meta preset pointed at a stand-in's Graph API.
fn meta(s: &Standin, more: &str) -> String {
    format!(
        "  - name: facebook
    preset: meta
    login:
      client_id: {CLIENT_ID}
      client_secret: {SECRET}
      authorization_endpoint: {0}/v23.0/dialog/oauth
      token_endpoint: {0}/v23.0/oauth/access_token
      userinfo_endpoint: \"{0}/v23.0/me?fields=id,name,email\"
{more}",
        s.base
    )
}

/// `&#NN;` entities (how the stand-ins escape attribute values) undone.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("&#") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 2..];
        match tail
            .find(';')
            .and_then(|e| Some((e, tail[..e].parse::<u32>().ok()?)))
        {
            Some((end, n)) => {
                out.push(char::from_u32(n).unwrap_or('?'));
                rest = &tail[end + 1..];
            }
            None => {
                out.push_str("&#");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The hidden inputs of a page's form, and its action.
fn form_of(page: &str) -> (String, Vec<(String, String)>) {
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        tag.find(&key).map(|at| {
            let v = &tag[at + key.len()..];
            unescape(&v[..v.find('"').unwrap_or(v.len())])
        })
    };
    let action = page
        .split("<form")
        .nth(1)
        .and_then(|f| attr(&f[..f.find('>').unwrap_or(f.len())], "action"))
        .expect("a form");
    let fields = page
        .split("<input")
        .skip(1)
        .filter_map(|t| {
            let tag = &t[..t.find('>').unwrap_or(t.len())];
            tag.contains("type=\"hidden\"")
                .then(|| Some((attr(tag, "name")?, attr(tag, "value")?)))
                .flatten()
        })
        .collect();
    (action, fields)
}

fn encode(fields: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish()
}

/// Signs in at provider `name` as `username` the way a browser does, over
/// HTTP: the gateway's redirect, the stand-in's form, then its redirect or
/// its posted answer back to the callback. Returns the callback's response.
async fn http_sign_in(v: &mut Visitor, s: &Standin, name: &str, username: &str) -> Resp {
    let start = v
        .get(&format!("/_auth/login/{name}?return_to=/account"))
        .await;
    let to = url::Url::parse(start.header("location").expect("off to the provider")).unwrap();
    assert_eq!(to.port(), Some(s.port), "{to}");
    let provider = Client::plain(s.addr());
    let host = format!("127.0.0.1:{}", s.port);
    let pq = format!("{}?{}", to.path(), to.query().unwrap_or(""));
    let page = provider.get(&host, &pq).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let (_, mut fields) = form_of(&page.text());
    fields.push(("username".into(), username.into()));
    let posted = provider
        .send(request(
            "POST",
            &host,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(encode(&fields)),
        ))
        .await
        .unwrap();
    if posted.status == 302 {
        let back = url::Url::parse(posted.header("location").unwrap()).unwrap();
        return v
            .get(&format!("{}?{}", back.path(), back.query().unwrap_or("")))
            .await;
    }
    // form_post: the provider's page posts the answer from its own origin.
    let (action, answer) = form_of(&posted.text());
    let path = url::Url::parse(&action).unwrap().path().to_string();
    v.send("POST", &path, &[("origin", &s.base)], &encode(&answer))
        .await
}

/// The identity headers the shop saw for this visitor.
async fn who(v: &mut Visitor) -> Value {
    let r = v.get("/account").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["headers"].clone()
}

fn visitor(gw: &Gateway) -> Visitor {
    let mut v = Visitor::new(gw.dev_client());
    v.host = format!("shop.test:{}", gw.port("https"));
    v
}

/// Registers `email` with a password and confirms the mailed link.
async fn confirmed_account(gw: &Gateway, sink: &MailSink, email: &str) -> String {
    let mut v = visitor(gw);
    let (status, page) = v.register(email, PASSWORD).await;
    assert_eq!(status, 303, "{page}");
    let mail = sink.wait_mail(email, 1, Duration::from_secs(10)).await;
    let link = url::Url::parse(&link_in(&mail, "/_auth/verify")).unwrap();
    let r = v
        .get(&format!("{}?{}", link.path(), link.query().unwrap_or("")))
        .await;
    assert!(
        r.status < 400,
        "confirming {link}: {} {}",
        r.status,
        r.text().split("<main").nth(1).unwrap_or("")
    );
    let h = who(&mut v).await;
    assert_eq!(h["x-customer-email-verified"], "true");
    h["x-customer-id"].as_str().unwrap().to_string()
}

/// Chromium signs in at the stand-in of `brand`: from the sign-in page's
/// button, or (the only way in) straight from the protected page.
fn provider_steps(base: &str, brand: &str, username: &str, arrive: &str) -> Value {
    json!([
        {"goto": format!("{base}/account"), "waitText": format!("Continue with {brand}")},
        {"click": format!("a:has-text('Continue with {brand}')"), "waitText": format!("{brand} stand-in")},
        {"fill": ["#username", username]},
        {"click": "button[type=submit]", "waitText": arrive, "screenshot": "arrived"},
    ])
}

fn only_provider_steps(base: &str, brand: &str, username: &str, arrive: &str) -> Value {
    json!([
        {"goto": format!("{base}/account"), "waitText": format!("{brand} stand-in")},
        {"fill": ["#username", username]},
        {"click": "button[type=submit]", "waitText": arrive, "screenshot": "arrived"},
    ])
}

#[tokio::test]
async fn facebook_sign_in_reads_the_graph_api_and_an_untrusted_email_joins_nothing() {
    let (ports, s) = ports_and_standin("meta", "facebook", &[]).await;
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let https = ports["https"];
    let accounts = sink.accounts_config(&format!("https://shop.test:{https}"), "");
    let gw = Gateway::start_on(ports, &shop(&meta(&s, ""), &store, &accounts), &[]).await;
    let ana = confirmed_account(&gw, &sink, "ana@example.test").await;

    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "providers_facebook",
        Some("MAP *.test 127.0.0.1"),
        provider_steps(&base, "Facebook", "ana", "x-customer-id"),
    )
    .await;
    let h = headers_on(&seen[3]);
    // Meta does not say the address was confirmed: a new customer, unverified,
    // and the password account with that address is neither joined nor named.
    assert_ne!(h["x-customer-id"], ana.as_str());
    assert_eq!(h["x-customer-email"], "ana@example.test");
    assert_eq!(h["x-customer-email-verified"], "false");
    assert_eq!(h["x-customer-name"], "Ana");
    let log = s.log().await;
    let exchange = log
        .iter()
        .find_map(|e| e.get("token"))
        .expect("a code exchange");
    assert_eq!(exchange["pkce"], true, "{log:?}");
    let auth = log.iter().find_map(|e| e.get("authorize")).unwrap();
    assert_eq!(auth["scope"], "email public_profile");
    assert!(
        auth.get("nonce").is_none(),
        "no nonce for OAuth 2.0: {auth}"
    );

    // The same sign-in again is the same customer.
    let mut v = visitor(&gw);
    let r = http_sign_in(&mut v, &s, "facebook", "ana").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(who(&mut v).await["x-customer-id"], h["x-customer-id"]);
}

#[tokio::test]
async fn facebook_configured_as_confirming_addresses_asks_the_existing_account_for_proof() {
    let (ports, s) = ports_and_standin("meta", "facebook", &[]).await;
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let https = ports["https"];
    let accounts = sink.accounts_config(&format!("https://shop.test:{https}"), "");
    let trusting = meta(&s, "      profile: { email_verified: true }\n");
    let gw = Gateway::start_on(ports, &shop(&trusting, &store, &accounts), &[]).await;
    let ben = confirmed_account(&gw, &sink, "ben@example.test").await;
    let base = format!("https://shop.test:{https}");
    let mut steps = provider_steps(&base, "Facebook", "ben", "You already have an account");
    let more = json!([
        {"fill": ["#prove-password", PASSWORD]},
        {"click": "form[action='/_auth/prove'] button[type=submit]", "waitText": "x-customer-id"},
    ]);
    steps
        .as_array_mut()
        .unwrap()
        .extend(more.as_array().unwrap().iter().cloned());
    let seen = browse(
        "providers_facebook_proof",
        Some("MAP *.test 127.0.0.1"),
        steps,
    )
    .await;
    assert_eq!(
        headers_on(&seen[5])["x-customer-id"],
        ben.as_str(),
        "one customer after the proof"
    );
    // Linked: Facebook alone now signs in the same customer.
    let mut v = visitor(&gw);
    assert_eq!(
        http_sign_in(&mut v, &s, "facebook", "ben").await.status,
        303
    );
    assert_eq!(who(&mut v).await["x-customer-id"], ben.as_str());
}

#[tokio::test]
async fn github_uses_the_verified_primary_address_and_the_buttons_keep_their_order() {
    let (ports, s) = ports_and_standin("github", "github", &[]).await;
    let store = Upstream::echo("store").await;
    let github = format!(
        "  - name: github
    preset: github
    login:
      client_id: {CLIENT_ID}
      client_secret: {SECRET}
      order: 2
      authorization_endpoint: {0}/login/oauth/authorize
      token_endpoint: {0}/login/oauth/access_token
      userinfo_endpoint: {0}/user
      emails_endpoint: {0}/user/emails
  - name: apple
    preset: apple
    issuer: http://127.0.0.1:9
    login: {{ client_id: unused, client_secret: unused-secret, order: 3 }}
  - name: google
    preset: google
    issuer: http://127.0.0.1:9
    login: {{ client_id: unused, client_secret: unused-secret, order: 1 }}
",
        s.base
    );
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &shop(&github, &store, ""), &[]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "providers_github",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account"), "waitText": "Continue with GitHub", "screenshot": "buttons", "axe": true},
            {"click": "a:has-text('Continue with GitHub')", "waitText": "GitHub stand-in"},
            {"fill": ["#username", "noname-octo"]},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
        ]),
    )
    .await;
    let text = seen[0]["text"].as_str().unwrap();
    let at = |b: &str| {
        text.find(&format!("Continue with {b}"))
            .unwrap_or_else(|| panic!("{b}: {text}"))
    };
    assert!(
        at("Google") < at("GitHub") && at("GitHub") < at("Apple"),
        "{text}"
    );
    let page = visitor(&gw).get("/_auth/login").await.text();
    for brand in ["github", "google", "apple"] {
        assert!(
            page.contains(&format!("provider-{brand}")),
            "{brand} button"
        );
    }
    assert_eq!(
        page.matches("<svg class=\"logo\"").count(),
        3,
        "a logo per button"
    );
    let h = headers_on(&seen[3]);
    assert_eq!(
        h["x-customer-email"], "noname-octo@example.test",
        "the primary address, not the old one"
    );
    assert_eq!(h["x-customer-email-verified"], "true");
    assert_eq!(
        h["x-customer-name"], "noname-octo",
        "no name: the login instead"
    );

    // A primary address GitHub has not verified is not taken as verified.
    let mut v = visitor(&gw);
    assert_eq!(
        http_sign_in(&mut v, &s, "github", "unverified-kim")
            .await
            .status,
        303
    );
    let h = who(&mut v).await;
    assert_eq!(h["x-customer-email"], "unverified-kim@example.test");
    assert_eq!(h["x-customer-email-verified"], "false");
    assert_eq!(h["x-customer-name"], "Unverified Kim");
}

/// A P-256 key: its PKCS#8 PEM and its public key as SPKI PEM and JWK.
fn p256(kid: &str) -> (String, String, Value) {
    use base64::Engine;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    let b = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b(&raw[1..33]), "y": b(&raw[33..65]), "kid": kid, "alg": "ES256", "use": "sig"});
    (kp.serialize_pem(), kp.public_key_pem(), jwk)
}

fn apple(s: &Standin, key_file: &str) -> String {
    format!(
        "  - name: apple
    preset: apple
    issuer: {}
    login:
      client_id: {CLIENT_ID}
      apple: {{ team_id: TEAM123456, key_id: KEY1234567, private_key_file: {key_file}, secret_ttl: 1h }}
",
        s.base
    )
}

#[tokio::test]
async fn apple_posts_its_answer_with_a_secret_the_gateway_made_and_names_only_once() {
    let (team_key, team_public, _) = p256("KEY1234567");
    let env = [
        ("APPLE_TEAM_ID", "TEAM123456".to_string()),
        ("APPLE_KEY_ID", "KEY1234567".to_string()),
        ("APPLE_PUBLIC_KEY", team_public),
    ];
    let (ports, s) = ports_and_standin("apple", "apple", &env).await;
    let store = Upstream::echo("store").await;
    let https = ports["https"];
    let (other_key, _, _) = p256("KEY1234567");
    let gw = Gateway::start_on(
        ports,
        &shop(&apple(&s, "apple.p8"), &store, ""),
        &[("apple.p8", &team_key), ("other.p8", &other_key)],
    )
    .await;
    let base = format!("https://shop.test:{https}");
    // Chromium: the answer is posted from the provider's origin to the callback.
    let seen = browse(
        "providers_apple",
        Some("MAP *.test 127.0.0.1"),
        only_provider_steps(&base, "Apple", "ana-lima", "x-customer-id"),
    )
    .await;
    let first = headers_on(&seen[2]);
    assert_eq!(
        first["x-customer-name"], "Ana Lima",
        "the name of the first authorization"
    );
    assert_eq!(first["x-customer-email"], "ana-lima@example.test");
    assert_eq!(
        first["x-customer-email-verified"], "true",
        "Apple's \"true\""
    );
    // Later sign-ins carry no name: the customer keeps the one they had.
    let mut v = visitor(&gw);
    assert_eq!(
        http_sign_in(&mut v, &s, "apple", "ana-lima").await.status,
        303
    );
    let again = who(&mut v).await;
    assert_eq!(again["x-customer-id"], first["x-customer-id"]);
    assert_eq!(again["x-customer-name"], "Ana Lima");
    // A private relay address is a verified address of its own.
    let mut v = visitor(&gw);
    assert_eq!(
        http_sign_in(&mut v, &s, "apple", "relay-bo").await.status,
        303
    );
    let relay = who(&mut v).await;
    assert!(
        relay["x-customer-email"]
            .as_str()
            .unwrap()
            .ends_with("@privaterelay.appleid.com"),
        "{relay}"
    );
    assert_eq!(relay["x-customer-email-verified"], "true");
    // One made secret served every exchange (renewed only at half its life).
    let log = s.log().await;
    let secrets: Vec<&Value> = log.iter().filter_map(|e| e.get("appleSecret")).collect();
    assert_eq!(secrets.len(), 3, "{log:?}");
    assert!(secrets.iter().all(|x| *x == secrets[0]), "{secrets:?}");
    assert_eq!(
        secrets[0]["exp"].as_u64().unwrap() - secrets[0]["iat"].as_u64().unwrap(),
        3600
    );
    // The POST exemption is this provider's callback only.
    let mut v = visitor(&gw);
    let r = v
        .send(
            "POST",
            "/_auth/login/password",
            &[("origin", &s.base)],
            "email=a%40b.test&password=x",
        )
        .await;
    assert_eq!(
        r.status, 403,
        "a cross-site form elsewhere is still refused"
    );
    let r = v
        .send(
            "POST",
            "/_auth/callback/apple",
            &[("origin", &s.base)],
            "state=forged&code=x",
        )
        .await;
    assert_eq!(
        r.status, 400,
        "a posted answer without this browser's sign-in is refused"
    );
    assert!(r.text().contains("expired"), "{}", r.text());

    // A secret signed with another key is refused by Apple: no sign-in.
    gw.rewrite_config(&shop(&apple(&s, "other.p8"), &store, ""));
    gw.reloaded(1.0).await;
    let mut v = visitor(&gw);
    let r = http_sign_in(&mut v, &s, "apple", "ana-lima").await;
    assert_eq!(r.status, 400, "{}", r.text());
    let log = s.log().await;
    assert!(
        log.iter().any(|e| e["tokenRefused"]
            .as_str()
            .is_some_and(|t| t.contains("invalid client secret"))),
        "{log:?}"
    );
}

#[tokio::test]
async fn microsoft_takes_each_tenants_issuer_from_the_tokens_tid() {
    let (ports, s) = ports_and_standin("microsoft", "microsoft", &[]).await;
    let store = Upstream::echo("store").await;
    let ms = |tenants: &str| {
        format!(
            "  - name: microsoft
    preset: microsoft
    issuer: \"{0}/{{tenantid}}/v2.0\"
    discovery_url: {0}/common/v2.0/.well-known/openid-configuration
    login: {{ client_id: {CLIENT_ID}, client_secret: {SECRET}{tenants} }}
",
            s.base
        )
    };
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &shop(&ms(""), &store, ""), &[]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "providers_microsoft",
        Some("MAP *.test 127.0.0.1"),
        only_provider_steps(&base, "Microsoft", "alice@contoso", "x-customer-id"),
    )
    .await;
    let alice = headers_on(&seen[2]);
    assert_eq!(alice["x-customer-email"], "alice@contoso.test");
    assert_eq!(
        alice["x-customer-email-verified"], "false",
        "Microsoft does not verify addresses"
    );
    let mut v = visitor(&gw);
    assert_eq!(
        http_sign_in(&mut v, &s, "microsoft", "bob@fabrikam")
            .await
            .status,
        303,
        "another tenant"
    );
    assert_ne!(who(&mut v).await["x-customer-id"], alice["x-customer-id"]);
    // A token whose issuer names one tenant and whose tid another is refused.
    let mut v = visitor(&gw);
    let r = http_sign_in(&mut v, &s, "microsoft", "mallory@spoof").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("could not be verified"), "{}", r.text());
    // With accepted tenants listed, others are refused.
    let contoso = "11111111-2222-4333-8444-555555555555";
    gw.rewrite_config(&shop(&ms(&format!(", tenants: [{contoso}]")), &store, ""));
    gw.reloaded(1.0).await;
    let mut v = visitor(&gw);
    assert_eq!(
        http_sign_in(&mut v, &s, "microsoft", "bob@fabrikam")
            .await
            .status,
        400
    );
    let mut v = visitor(&gw);
    assert_eq!(
        http_sign_in(&mut v, &s, "microsoft", "alice@contoso")
            .await
            .status,
        303
    );
    assert_eq!(who(&mut v).await["x-customer-id"], alice["x-customer-id"]);
}

#[tokio::test]
async fn google_with_a_hosted_domain_admits_only_that_domain() {
    let (ports, s) = ports_and_standin("google", "google", &[]).await;
    let store = Upstream::echo("store").await;
    let google = format!(
        "  - name: google
    preset: google
    issuer: {}
    login: {{ client_id: {CLIENT_ID}, client_secret: {SECRET}, hosted_domain: shop.test }}
",
        s.base
    );
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &shop(&google, &store, ""), &[]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "providers_google",
        Some("MAP *.test 127.0.0.1"),
        only_provider_steps(&base, "Google", "dana@shop.test", "x-customer-id"),
    )
    .await;
    assert_eq!(headers_on(&seen[2])["x-customer-email"], "dana@shop.test");
    let auth = s
        .log()
        .await
        .into_iter()
        .find_map(|e| e.get("authorize").cloned())
        .unwrap();
    assert_eq!(auth["hd"], "shop.test");
    let mut v = visitor(&gw);
    let r = http_sign_in(&mut v, &s, "google", "eve").await;
    assert_eq!(r.status, 400, "an account outside the domain: {}", r.text());
}

/// The real oidc-provider with its browser client registered to accept only
/// `method` at the token endpoint (`extra` more client metadata).
async fn idp_accepting_only(method: &str, extra: Value) -> (HashMap<&'static str, u16>, Idp) {
    loop {
        let ports = reserve_ports();
        let mut meta = json!({ "token_endpoint_auth_method": method });
        for (k, v) in extra.as_object().unwrap() {
            meta[k] = v.clone();
        }
        let redirect = format!("https://shop.test:{}/_auth/callback/idp", ports["https"]);
        let idp = Idp::start_with_web_client_meta(Some(&redirect), meta).await;
        if !ports.values().any(|p| *p == idp.port) {
            return (ports, idp);
        }
    }
}

fn idp_provider(idp: &Idp, login: &str) -> String {
    format!(
        "  - name: idp
    issuer: {}
    login: {{ client_id: {}, display_name: Test IdP{login} }}
",
        idp.issuer, WEB_CLIENT.0
    )
}

fn idp_steps(base: &str, arrive: &str) -> Value {
    json!([
        {"goto": format!("{base}/account"), "waitText": "Test IdP"},
        {"fill": ["#username", "kai"]},
        {"click": "button[type=submit]", "waitText": arrive},
    ])
}

#[tokio::test]
async fn private_key_jwt_is_chosen_from_discovery_when_the_gateway_has_a_key() {
    let (key, _, jwk) = p256("shop-key-1");
    let (ports, idp) =
        idp_accepting_only("private_key_jwt", json!({"jwks": {"keys": [jwk]}})).await;
    let store = Upstream::echo("store").await;
    let https = ports["https"];
    let provider = idp_provider(
        &idp,
        ", private_key: { file: client-key.pem, key_id: shop-key-1 }",
    );
    let _gw = Gateway::start_on(
        ports,
        &shop(&provider, &store, ""),
        &[("client-key.pem", &key)],
    )
    .await;
    let seen = browse(
        "providers_private_key_jwt",
        Some("MAP *.test 127.0.0.1"),
        idp_steps(&format!("https://shop.test:{https}"), "x-customer-id"),
    )
    .await;
    assert!(headers_on(&seen[2])["x-customer-id"].as_str().is_some());
}

#[tokio::test]
async fn client_secret_post_where_the_provider_takes_only_that() {
    let env = [
        ("ONLY_AUTH", "client_secret_post".to_string()),
        (
            "LIST_AUTH",
            "client_secret_basic,client_secret_post".to_string(),
        ),
    ];
    let (ports, s) = ports_and_standin("google", "google", &env).await;
    let store = Upstream::echo("store").await;
    let google = |more: &str| {
        format!(
            "  - name: google
    preset: google
    issuer: {}
    login: {{ client_id: {CLIENT_ID}, client_secret: {SECRET}{more} }}
",
            s.base
        )
    };
    let https = ports["https"];
    let base = format!("https://shop.test:{https}");
    // Discovery lists Basic first, so Basic is the default: refused here.
    let gw = Gateway::start_on(ports, &shop(&google(""), &store, ""), &[]).await;
    let mut v = visitor(&gw);
    let r = http_sign_in(&mut v, &s, "google", "kai").await;
    assert_eq!(r.status, 400, "{}", r.text());
    let log = s.log().await;
    assert!(
        log.iter().any(|e| e["tokenRefused"]
            .as_str()
            .is_some_and(|t| t.contains("client_secret_post only"))),
        "{log:?}"
    );
    // Configured: the secret goes in the form, and the sign-in completes.
    gw.rewrite_config(&shop(
        &google(", token_auth: client_secret_post"),
        &store,
        "",
    ));
    gw.reloaded(1.0).await;
    let seen = browse(
        "providers_secret_post",
        Some("MAP *.test 127.0.0.1"),
        only_provider_steps(&base, "Google", "kai", "x-customer-id"),
    )
    .await;
    assert_eq!(headers_on(&seen[2])["x-customer-email"], "kai@gmail.test");
}

#[tokio::test]
async fn the_default_method_is_the_one_discovery_lists() {
    let env = [
        ("ONLY_AUTH", "client_secret_post".to_string()),
        ("LIST_AUTH", "client_secret_post".to_string()),
    ];
    let (ports, s) = ports_and_standin("google", "google", &env).await;
    let store = Upstream::echo("store").await;
    let google = format!(
        "  - {{ name: google, preset: google, issuer: \"{}\", login: {{ client_id: {CLIENT_ID}, client_secret: {SECRET} }} }}\n",
        s.base
    );
    let gw = Gateway::start_on(ports, &shop(&google, &store, ""), &[]).await;
    let mut v = visitor(&gw);
    assert_eq!(http_sign_in(&mut v, &s, "google", "lee").await.status, 303);
    assert_eq!(who(&mut v).await["x-customer-email"], "lee@gmail.test");
}
