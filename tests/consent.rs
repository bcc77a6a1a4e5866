//! Consent: asked at registration (each purpose on its own, none ticked),
//! shown and withdrawn in one click on the consent page, recorded in the
//! hash-chained ledger, enforced per route (deny, ask, forward without
//! identity) and per header, sent to webhooks in order; on several nodes,
//! after a crash and after a text changes. Real Chromium, SMTP, Redis,
//! PostgreSQL.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::accounts::Visitor;
use crate::support::*;

const PASSWORD: &str = "violet kettle 42 morning";

pub fn purposes(partner_version: u32) -> String {
    format!(
        "purposes:
  - {{ id: terms, title: Terms of service, text: I accept the terms of service., version: 1, legal_basis: contract, required: true }}
  - {{ id: marketing_email, title: News by email, text: Send me news by email., version: 1 }}
  - {{ id: personalization, title: Recommendations, text: Recommend products from what I buy., version: 1 }}
  - {{ id: partner_sharing, title: Sharing with our CRM partner, text: Share my name and email with our service partner., version: {partner_version} }}
  - {{ id: analytics, title: Usage statistics, text: Count my visits linked to my account., version: 1 }}
"
    )
}

/// A shop with purposes (from `consent.yaml`), password accounts, and
/// routes that need them; `extra` adds top-level settings.
pub fn consent_config(sink: &MailSink, store: &Upstream, crm: &Upstream, extra: &str) -> String {
    config_with(&format!(
        "include: [consent.yaml]
listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
{}upstreams:
  store: {{ addresses: [\"{}\"] }}
  crm:
    addresses: [\"{}\"]
    consent_headers: {{ email: partner_sharing, name: partner_sharing }}
routes:
  - {{ name: partners, hosts: [shop.test], path_prefix: /partners, upstream: store, kind: web, access: required, consent: {{ require: [partner_sharing], on_missing: deny }} }}
  - {{ name: partners-api, hosts: [shop.test], path_prefix: /api/partners, upstream: store, kind: api, access: required, consent: {{ require: [partner_sharing], on_missing: deny }} }}
  - {{ name: recommendations, hosts: [shop.test], path_prefix: /recommendations, upstream: store, kind: web, access: required, consent: {{ require: [personalization], on_missing: ask }} }}
  - {{ name: stats, hosts: [shop.test], path_prefix: /stats, upstream: store, kind: web, access: required, consent: {{ require: [analytics], on_missing: forward_anonymous }} }}
  - {{ name: crm, hosts: [shop.test], path_prefix: /crm, upstream: crm, kind: web, access: required }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
{extra}",
        sink.accounts_config("https://shop.test:{https}", ""),
        store.addr,
        crm.addr,
    ))
}

fn headers_on(page: &Seen) -> serde_json::Value {
    let text = page["text"].as_str().expect("page text");
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no echo JSON on the page: {text}"));
    let v: serde_json::Value = serde_json::from_str(&text[start..]).expect("echo JSON");
    v["headers"].clone()
}

/// `GET /admin/customers/{id}/consents`.
pub async fn admin_consents(gw: &Gateway, customer: &str) -> serde_json::Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = Client::plain(gw.addr("admin"))
        .send(request(
            "GET",
            "admin",
            &format!("/admin/customers/{customer}/consents"),
            &[("authorization", &auth)],
            Bytes::new(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn consent_is_asked_recorded_withdrawn_in_one_click_and_enforced() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let hook = crate::events::receiver(0).await;
    let events = format!(
        "events:\n  webhooks:\n    - {{ name: crm, url: \"http://{}/hooks\", secret: {}, events: [consent.granted, consent.withdrawn] }}\n",
        hook.up.addr,
        crate::events::SECRET
    );
    let ports = reserve_ports();
    let https = ports["https"];
    let gw = Gateway::start_on(
        ports,
        &consent_config(&sink, &store, &crm, &events),
        &[("consent.yaml", &purposes(1))],
    )
    .await;
    let base = format!("https://shop.test:{https}");
    let withdraw = |title: &str| format!("button[aria-label='Withdraw: {title}']");
    let seen = browse(
        "consent_flow",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/_auth/register"), "screenshot": "01-register-with-purposes", "axe": true},
            {"fill": ["#register-email", "cleo@example.test"]},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "#register-terms"},
            {"click": "#register-consent-partner_sharing"},
            {"click": "#register-consent-personalization"},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"click": "main a.button", "waitText": "x-customer-id"},
            {"goto": format!("{base}/crm/tickets"), "waitText": "x-customer-id"},
            {"goto": format!("{base}/partners"), "waitText": "x-customer-id"},
            {"goto": format!("{base}/stats"), "waitText": "headers"},
            {"goto": format!("{base}/_account/consent"), "waitText": "Your consents", "screenshot": "02-consent-page", "axe": true},
            {"click": withdraw("Sharing with our CRM partner"), "waitText": "Saved.", "screenshot": "03-withdrawn"},
            {"goto": format!("{base}/partners"), "waitText": "Consent needed", "screenshot": "04-denied"},
            {"goto": format!("{base}/crm/tickets"), "waitText": "x-customer-id"},
            {"goto": format!("{base}/recommendations"), "waitText": "x-customer-id"},
            {"goto": format!("{base}/_account/consent")},
            {"click": withdraw("Recommendations"), "waitText": "Saved."},
            {"goto": format!("{base}/recommendations"), "waitText": "Before you continue", "screenshot": "05-asked", "axe": true},
            {"click": "input[name=grant]"},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
        ]),
    )
    .await;

    // Registration: the ticked purposes and the terms, nothing else.
    let first = headers_on(&seen[7]);
    let customer = first["x-customer-id"].as_str().unwrap().to_string();
    assert_eq!(
        first["x-customer-consents"],
        "partner_sharing=1,personalization=1,terms=1"
    );
    // Nothing pre-ticked on the form: only what was clicked was granted.
    let form = seen[0]["text"].as_str().unwrap();
    assert!(
        form.contains("Sharing with our CRM partner") && form.contains("(version 1)"),
        "{form}"
    );
    // The CRM gets the email while partner_sharing is granted...
    let crm_before = headers_on(&seen[8]);
    assert_eq!(crm_before["x-customer-email"], "cleo@example.test");
    assert_eq!(headers_on(&seen[9])["x-customer-id"], customer.as_str());
    // ...analytics was not granted: /stats is forwarded without identity.
    let stats = headers_on(&seen[10]);
    assert!(
        stats.get("x-customer-id").is_none() && stats.get("x-customer-email").is_none(),
        "{stats}"
    );
    assert!(stats.get("x-omnigate-assertion").is_none());
    // One click withdrew; the next request is denied, the bound header gone.
    assert_eq!(seen[13]["status"], 403);
    assert!(seen[13]["text"]
        .as_str()
        .unwrap()
        .contains("Sharing with our CRM partner"));
    let crm_after = headers_on(&seen[14]);
    assert_eq!(crm_after["x-customer-id"], customer.as_str());
    assert!(crm_after.get("x-customer-email").is_none(), "{crm_after}");
    assert!(crm_after.get("x-customer-name").is_none());
    assert_eq!(
        crm_after["x-customer-consents"],
        "personalization=1,terms=1"
    );
    // The signed assertion says the same, and leaves the bound fields out.
    use base64::Engine;
    let claims_of = |h: &serde_json::Value| -> serde_json::Value {
        let jwt = h["x-omnigate-assertion"].as_str().unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap();
        serde_json::from_slice(&payload).unwrap()
    };
    let after_claims = claims_of(&crm_after);
    assert_eq!(after_claims["consents"], "personalization=1,terms=1");
    assert!(after_claims.get("email").is_none(), "{after_claims}");
    assert_eq!(claims_of(&crm_before)["email"], "cleo@example.test");
    // `ask`: the prompt for just that purpose, then back where the customer was.
    assert!(seen[18]["url"]
        .as_str()
        .unwrap()
        .contains("/_account/consent?ask=personalization"));
    assert_eq!(
        seen[18]["text"]
            .as_str()
            .unwrap()
            .matches("Yes, I agree")
            .count(),
        1
    );
    assert_eq!(seen[20]["url"], format!("{base}/recommendations"));
    assert_eq!(
        headers_on(&seen[20])["x-customer-consents"],
        "personalization=1,terms=1"
    );

    // The ledger: every decision, chained; receipts with the Kantara fields.
    let ledger = admin_consents(&gw, &customer).await;
    assert_eq!(ledger["chain"]["valid"], true, "{ledger}");
    let records = ledger["records"].as_array().unwrap();
    let trail: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["purpose"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["method"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("terms", "grant", "registration"),
        ("marketing_email", "withdraw", "registration"),
        ("personalization", "grant", "registration"),
        ("partner_sharing", "grant", "registration"),
        ("analytics", "withdraw", "registration"),
        ("partner_sharing", "withdraw", "consent_page"),
        ("personalization", "withdraw", "consent_page"),
        ("personalization", "grant", "prompt"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(trail, want);
    assert!(records[0]["channel"]
        .as_str()
        .unwrap()
        .starts_with("web:shop.test"));
    assert!(
        records[0]["user_agent"]
            .as_str()
            .unwrap()
            .contains("HeadlessChrome/"),
        "{}",
        records[0]
    );
    let receipt = &ledger["receipts"][5];
    for field in [
        "version",
        "jurisdiction",
        "consentTimestamp",
        "collectionMethod",
        "consentReceiptID",
        "piiPrincipalId",
        "piiControllers",
        "services",
    ] {
        assert!(
            receipt.get(field).is_some(),
            "receipt lacks {field}: {receipt}"
        );
    }
    assert_eq!(
        receipt["services"][0]["purposes"][0]["consentType"],
        "WITHDRAWN"
    );
    assert_eq!(receipt["piiPrincipalId"], customer.as_str());

    // Webhooks: every decision, in order, signed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let got =
            crate::events::delivered_for(&hook.accepted, &customer, Duration::from_secs(15)).await;
        if got.len() >= want.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let order: Vec<(String, String)> = got
        .iter()
        .map(|e| {
            (
                e["data"]["purpose"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = want
        .iter()
        .map(|(p, a, _)| {
            (
                p.clone(),
                if a == "grant" {
                    "consent.granted".into()
                } else {
                    "consent.withdrawn".into()
                },
            )
        })
        .collect();
    assert_eq!(order, expected);

    // Tampering with a stored record is detected by the chain.
    let db = gw.dir.path().join("state/customers.db");
    let edited = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DROP TRIGGER consent_records_append_only'); c.execute(\"UPDATE consent_records SET action='grant' WHERE seq=2\"); c.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(edited.success());
    let ledger = admin_consents(&gw, &customer).await;
    assert_eq!(ledger["chain"]["valid"], false);
    assert!(
        ledger["chain"]["error"]
            .as_str()
            .unwrap()
            .contains("record 2"),
        "{ledger}"
    );
    assert!(
        gw.metric("omnigate_consent_enforcement_total{outcome=\"denied\",route=\"partners\"}")
            .await
            >= Some(1.0)
    );
    assert!(
        gw.metric(
            "omnigate_consent_decisions_total{action=\"withdraw\",purpose=\"partner_sharing\"}"
        )
        .await
            == Some(1.0)
    );
}

/// The session cookie and the consent page's CSRF token of a visitor.
async fn consent_form_token(v: &mut Visitor) -> String {
    let page = v.get("/_account/consent").await.text();
    Visitor::csrf_in(&page)
}

async fn decide(v: &mut Visitor, purpose: &str, action: &str, version: u32) -> Resp {
    let csrf = consent_form_token(v).await;
    let body = format!(
        "csrf={}&purpose={purpose}&action={action}&version={version}",
        url_encode(&csrf)
    );
    v.send("POST", "/_account/consent", &[], &body).await
}

#[tokio::test]
async fn nodes_share_withdrawals_within_a_second_grants_survive_a_crash_and_new_texts_are_asked_again(
) {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let unique = hex::encode(rand::random::<[u8; 5]>());
    let shared = format!(
        "sessions: {{ store: redis, url: \"redis://127.0.0.1:6379\", key_prefix: \"consent-{unique}:\" }}
customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: consent_{unique} }}
"
    );
    let cfg = consent_config(&sink, &store, &crm, &shared);
    let mut a = Gateway::start(&cfg, &[("consent.yaml", &purposes(1))]).await;
    let b = Gateway::start(&cfg, &[("consent.yaml", &purposes(1))]).await;

    // Registered on A with partner_sharing granted.
    let mut on_a = Visitor::new(a.dev_client());
    let page = on_a.get("/_auth/register").await.text();
    let csrf = Visitor::csrf_in(&page);
    let body = format!(
        "csrf={}&email=dora%40example.test&password={}&grant=terms%3A1&grant=partner_sharing%3A1",
        url_encode(&csrf),
        url_encode(PASSWORD)
    );
    let r = on_a.send("POST", "/_auth/register", &[], &body).await;
    assert_eq!(r.status, 303, "{}", r.text());
    // The same browser session on node B.
    let mut on_b = Visitor::new(b.dev_client());
    on_b.cookies = on_a.cookies.clone();
    let r = on_b.get("/api/partners").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let customer = r.json()["headers"]["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();

    // Withdrawn on A: B refuses within a second.
    let r = decide(&mut on_a, "partner_sharing", "withdraw", 1).await;
    assert_eq!(r.status, 303);
    let withdrawn = Instant::now();
    loop {
        let r = on_b.get("/api/partners").await;
        if r.status == 403 {
            let problem = r.json();
            assert_eq!(problem["type"], "urn:omnigate:problem:consent-required");
            assert!(problem["detail"]
                .as_str()
                .unwrap()
                .contains("partner_sharing"));
            break;
        }
        assert!(
            withdrawn.elapsed() < Duration::from_secs(1),
            "node B still allowed after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A grant, then kill -9 at once: the grant is there after the restart.
    let r = decide(&mut on_a, "partner_sharing", "grant", 1).await;
    assert_eq!(r.status, 303);
    a.restart().await;
    let ledger = admin_consents(&a, &customer).await;
    let last = ledger["records"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["purpose"].as_str(), last["action"].as_str()),
        (Some("partner_sharing"), Some("grant"))
    );
    assert_eq!(ledger["chain"]["valid"], true);

    // Operators record a call-centre decision through the admin API.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = Client::plain(a.addr("admin"))
        .send(request(
            "POST",
            "admin",
            &format!("/admin/customers/{customer}/consents"),
            &[("authorization", &auth), ("content-type", "application/json")],
            Bytes::from(r#"{"purpose":"marketing_email","action":"grant","channel":"call-centre","version":1}"#),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let r = Client::plain(a.addr("admin"))
        .send(request(
            "POST",
            "admin",
            &format!("/admin/customers/{customer}/consents"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Bytes::from(
                r#"{"purpose":"nope","action":"grant","channel":"call-centre","version":1}"#,
            ),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let ledger = admin_consents(&b, &customer).await;
    assert_eq!(
        ledger["records"].as_array().unwrap().last().unwrap()["method"],
        "api:call-centre"
    );

    // The partner text changes (version 2) on A: the next page asks for it
    // alone; until answered the old grant does not count.
    std::fs::write(a.dir.path().join("consent.yaml"), purposes(2)).unwrap();
    a.signal("HUP");
    a.wait_log("configuration reloaded", Duration::from_secs(10))
        .await;
    let r = on_a.get("/crm/tickets").await;
    assert_eq!(r.status, 303);
    let to = r.header("location").unwrap().to_string();
    assert_eq!(
        to,
        "/_account/consent?ask=partner_sharing&return_to=%2Fcrm%2Ftickets"
    );
    let r = on_a.get("/api/partners").await;
    assert_eq!(
        r.status, 403,
        "the version 1 grant does not count for version 2"
    );
    let prompt = on_a.get(&to).await.text();
    assert_eq!(prompt.matches("Yes, I agree").count(), 1, "{prompt}");
    let body = format!(
        "csrf={}&ask=partner_sharing&return_to=%2Fcrm%2Ftickets&grant=partner_sharing%3A2",
        url_encode(&Visitor::csrf_in(&prompt))
    );
    let r = on_a.send("POST", "/_account/consent", &[], &body).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/crm/tickets"));
    let r = on_a.get("/crm/tickets").await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-customer-consents"],
        "marketing_email=1,partner_sharing=2,terms=1"
    );
    assert_eq!(h["x-customer-email"], "dora@example.test");
}

#[tokio::test]
async fn a_first_provider_sign_in_asks_every_purpose_and_bearer_callers_are_held_to_consent_too() {
    let (ports, idp) = ports_and_idp().await;
    let https = ports["https"];
    let store = Upstream::echo("store").await;
    let cfg = login_config(
        &idp,
        "",
        "",
        &format!(
            "    bearer: {{ audiences: [\"{IDP_AUDIENCE}\"] }}
include: [consent.yaml]
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: partners-api, path_prefix: /api/partners, upstream: store, kind: api, access: required, consent: {{ require: [partner_sharing] }} }}
  - {{ name: me, path_prefix: /api/me, upstream: store, kind: api, access: required }}
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
",
            store.addr
        ),
    );
    let gw = Gateway::start_on(ports, &cfg, &[("consent.yaml", &purposes(1))]).await;
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "consent_first_provider_sign_in",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/account/orders?page=2"), "waitText": "Test IdP"},
            {"fill": ["#username", "lena"]},
            {"click": "button[type=submit]", "waitText": "Before you continue", "screenshot": "1-first-sign-in-asks", "axe": true},
            {"click": "input[value='terms:1']"},
            {"click": "input[value='partner_sharing:1']"},
            {"click": "button[type=submit]", "waitText": "x-customer-id"},
        ]),
    )
    .await;
    let prompt = seen[2]["text"].as_str().unwrap();
    assert_eq!(
        prompt.matches("Yes, I agree").count(),
        5,
        "every purpose, each on its own: {prompt}"
    );
    assert_eq!(seen[5]["url"], format!("{base}/account/orders?page=2"));
    assert_eq!(
        headers_on(&seen[5])["x-customer-consents"],
        "partner_sharing=1,terms=1"
    );

    // A bearer caller (another customer, first seen now) without the purpose.
    let c = gw.dev_client();
    let token = idp.sign(idp.user_claims("kim", "", 300), "RS256").await;
    let get = |path: &'static str| get_bearer(&c, "api.test", path, &token);
    let r = get("/api/partners").await;
    assert_eq!(r.status, 403, "{}", r.text());
    let kim = get("/api/me").await.json()["headers"]["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get("/api/me").await.json()["headers"]["x-customer-consents"],
        ""
    );
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let r = Client::plain(gw.addr("admin"))
        .send(request(
            "POST",
            "admin",
            &format!("/admin/customers/{kim}/consents"),
            &[("authorization", &admin), ("content-type", "application/json")],
            Bytes::from(r#"{"purpose":"partner_sharing","action":"grant","channel":"support-chat","version":1}"#),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let r = get("/api/partners").await;
    assert_eq!(
        r.status,
        200,
        "a grant applies to the next request: {}",
        r.text()
    );
    assert_eq!(
        r.json()["headers"]["x-customer-consents"],
        "partner_sharing=1"
    );
}
