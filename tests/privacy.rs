//! Privacy operations through the real binary: the data map recorded from
//! traffic, an erasure fanned out to three real HTTP systems (the store
//! erases at once, the CRM is down for its first attempts and then answers
//! through the signed callback, accounting keeps invoices until a date and
//! erases when the erasure is sent again after that), a manual system
//! recorded by an operator, the signed report verified against the JWKS, a
//! kill -9 in the middle, and two nodes sharing jobs on PostgreSQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::events::{receiver, SECRET};
use crate::support::*;

/// Erasure requests a system received: (attempt number from 1, body).
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// A real system behind the gateway: customer traffic is echoed, signed
/// erasure and export requests (`POST /privacy/erase`, `/privacy/export`)
/// answered by `answer(n, body)` (n counts from 1; `body.type` says which).
struct System {
    up: Upstream,
    received: Received,
}

impl System {
    async fn start<F>(name: &'static str, answer: F) -> System
    where
        F: Fn(usize, &serde_json::Value) -> (u16, String) + Send + Sync + 'static,
    {
        let received: Received = Arc::default();
        let answer = Arc::new(answer);
        let r = received.clone();
        let up = Upstream::start(move |req| {
            let (r, answer) = (r.clone(), answer.clone());
            async move {
                let path = req.uri().path();
                if req.method() != "POST" || !matches!(path, "/privacy/erase" | "/privacy/export") {
                    return echo_response(name, &req);
                }
                let sig = req
                    .headers()
                    .get("omnigate-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let job = req
                    .headers()
                    .get("omnigate-job-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8(body.to_vec()).unwrap();
                crate::events::verify(&sig, &body);
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["job_id"], job.as_str(), "job id header and body agree");
                let n = {
                    let mut g = r.lock().unwrap();
                    g.push(v.clone());
                    g.len()
                };
                let (status, body) = answer(n, &v);
                text_response(status, "application/json", body)
            }
        })
        .await;
        System { up, received }
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

fn systems_config(
    idp: &Idp,
    store: &System,
    crm: &System,
    legacy: &Upstream,
    accounting: &System,
    extra: &str,
) -> String {
    let erase = |s: &System| {
        format!(
            "{{ url: \"http://{}/privacy/erase\", timeout: 2s }}",
            s.up.addr
        )
    };
    config_with(&format!(
        "{HTTP_LISTENER}{extra}{}upstreams:
  store:
    addresses: [\"{}\"]
    privacy: {{ owner: Web shop team, categories: [contact, orders], retention: 2 years after the last order, erasure: {} }}
  crm:
    addresses: [\"{}\"]
    privacy: {{ owner: Customer service, categories: [contact, tickets], retention: 1 year, erasure: {} }}
  legacy:
    addresses: [\"{}\"]
routes:
  - {{ name: store, path_prefix: /store, upstream: store, kind: api, access: required }}
  - {{ name: crm, path_prefix: /crm, upstream: crm, kind: api, access: required }}
  - {{ name: legacy, path_prefix: /legacy, upstream: legacy, kind: api, access: required }}
privacy:
  secret: {SECRET}
  callback_url: http://127.0.0.1:{{http}}
  tick: 100ms
  data_map_flush: 200ms
  retry_first: 300ms
  retry_max: 1s
  lease: 4s
  systems:
    accounting:
      owner: Finance
      categories: [invoices, contact]
      retention: 10 years (HGB 257)
      all_customers: true
      erasure: {}
",
        bearer_provider(idp),
        store.up.addr,
        erase(store),
        crm.up.addr,
        erase(crm),
        legacy.addr,
        erase(accounting),
    ))
}

async fn call(c: &Client, token: &str, path: &str) -> Resp {
    get_bearer(c, "api.test", path, token).await
}

/// An operator files an erasure for `customer`; its id.
async fn file_erasure(gw: &Gateway, customer: &str, channel: &str, verification: &str) -> String {
    let body = serde_json::json!({"customer_id": customer, "kind": "erasure",
        "channel": channel, "verification": verification});
    let r = admin(gw, "POST", "/admin/privacy/requests", Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

pub(crate) async fn admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Resp {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    Client::plain(gw.addr("admin"))
        .send(request(method, "admin", path, &headers, body))
        .await
        .unwrap()
}

/// Waits until the customer's data map names `systems` systems (flushed).
async fn wait_map(gw: &Gateway, customer: &str, systems: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = admin(
            gw,
            "GET",
            &format!("/admin/customers/{customer}/data-map"),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v.as_array().map(Vec::len) == Some(systems) {
            return v;
        }
        assert!(Instant::now() < deadline, "data map not flushed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the request until `done` holds of its detail.
async fn wait_job(
    gw: &Gateway,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let r = admin(gw, "GET", &format!("/admin/privacy/requests/{id}"), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A system's state in a request's detail ("" before it is planned).
fn state(detail: &serde_json::Value, name: &str) -> String {
    detail["systems"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["system"] == name))
        .and_then(|s| s["state"].as_str())
        .unwrap_or("")
        .to_string()
}

fn system_of<'a>(detail: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    detail["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == name)
        .unwrap_or_else(|| panic!("no {name} in {detail:#}"))
}

fn customers(postgres: bool, schema: &str) -> String {
    if postgres {
        format!("customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: {schema} }}\n")
    } else {
        String::new()
    }
}

fn schema() -> String {
    format!("pv_{}", hex::encode(rand::random::<[u8; 5]>()))
}

/// The report verifies against the gateway's published keys; its claims.
async fn verified_report(gw: &Gateway, id: &str) -> serde_json::Value {
    let r = admin(
        gw,
        "GET",
        &format!("/admin/privacy/requests/{id}/report"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/jose"));
    let jws = r.text();
    let jwks = get(gw.addr("http"), "/.well-known/omnigate/jwks.json")
        .await
        .unwrap()
        .json();
    let header = jsonwebtoken::decode_header(&jws).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("omnigate-erasure-report+jwt"));
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(&jws, &key, &v)
        .expect("the report's signature verifies")
        .claims;
    // One changed byte of the payload and it no longer does.
    let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
    let tampered = claims.to_string().replace("erased", "ERASED");
    parts[1] = base64_url(&tampered);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&parts.join("."), &key, &v).is_err());
    claims
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// Posts a callback for one task, signed with `secret`.
async fn callback(gw: &Gateway, url: &str, secret: &str, body: &str) -> Resp {
    let path = url.split_once("127.0.0.1:").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    let t = unix_now() as i64;
    let sig = omnigate::webhook::signature(secret, t, body);
    let host = format!("127.0.0.1:{}", gw.port("http"));
    Client::plain(gw.addr("http"))
        .send(request(
            "POST",
            &host,
            path,
            &[
                ("omnigate-signature", &sig),
                ("content-type", "application/json"),
            ],
            Bytes::from(body.to_string()),
        ))
        .await
        .unwrap()
}

async fn erasure_across_three_systems(postgres: bool) {
    let idp = Idp::start().await;
    let store = System::start("store", |_, _| (200, r#"{"status":"erased"}"#.into())).await;
    // Down for two attempts, then accepted: the outcome comes by callback.
    let crm = System::start("crm", |n, _| match n {
        1 | 2 => (503, "maintenance".into()),
        _ => (202, String::new()),
    })
    .await;
    // Keeps invoices for six seconds from its first answer.
    let accounting = System::start("accounting", move |n, body| match n {
        1 => (
            200,
            serde_json::json!({"status": "retained", "legal_basis": "HGB §257 (10 years)",
                "categories": ["invoices"], "until": unix_now() + 6})
            .to_string(),
        ),
        _ => {
            assert_eq!(
                body["categories"],
                serde_json::json!(["invoices"]),
                "only what was held"
            );
            (200, r#"{"status":"erased"}"#.into())
        }
    })
    .await;
    let legacy = Upstream::echo("legacy").await;
    let hook = receiver(0).await;
    let extra = format!(
        "{}events:\n  webhooks:\n    - {{ name: ops, url: \"http://{}/hooks\", secret: {SECRET} }}\n",
        customers(postgres, &schema()),
        hook.up.addr
    );
    let cfg = systems_config(&idp, &store, &crm, &legacy, &accounting, &extra);
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));

    // Traffic makes the data map: three upstreams receive Ada's identity.
    let token = idp.sign(idp.user_claims("ada", "", 600), "RS256").await;
    let mut ada = String::new();
    for path in ["/store/orders", "/crm/tickets", "/legacy/x"] {
        let r = call(&c, &token, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        ada = r.json()["headers"]["x-customer-id"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let map = wait_map(&gw, &ada, 3).await;
    assert_eq!(map[0]["system"], "crm");
    assert!(
        map[0]["fields"].as_array().unwrap().contains(&"id".into()),
        "{map}"
    );
    assert_eq!(map[1]["system"], "legacy");
    assert_eq!(
        (map[1]["declared"].clone(), map[1]["erasure"].clone()),
        (false.into(), "none".into())
    );

    // The record of processing: declared systems and what traffic showed,
    // the undeclared one flagged; also as CSV.
    let rop = admin(&gw, "GET", "/admin/privacy/systems", None)
        .await
        .json();
    let names: Vec<&str> = rop
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["accounting", "crm", "legacy", "store"]);
    let legacy_row = &rop[2];
    assert!(
        legacy_row["flag"]
            .as_str()
            .unwrap()
            .contains("not declared"),
        "{rop:#}"
    );
    assert_eq!(rop[3]["customers"], 1);
    assert_eq!(rop[3]["owner"], "Web shop team");
    assert!(rop[0]["flag"].is_null() && rop[3]["flag"].is_null());
    let csv = admin(&gw, "GET", "/admin/privacy/systems?format=csv", None).await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let csv = csv.text();
    assert!(csv.starts_with("system,declared,owner"), "{csv}");
    assert!(csv.contains("\"legacy\",false"), "{csv}");

    // An operator files the erasure (received by phone).
    let verification = "called back on the number on file";
    let job = file_erasure(&gw, &ada, "phone", verification).await;
    // Refused at once: the token that worked a moment ago.
    let r = call(&c, &token, "/store/orders").await;
    assert_eq!(r.status, 401, "{}", r.text());

    // The CRM fails twice: which system, why and when next is visible.
    let failing = wait_job(&gw, &job, Duration::from_secs(10), "crm failing", |d| {
        state(d, "crm") == "failing"
    })
    .await;
    let crm_row = system_of(&failing, "crm");
    assert!(
        crm_row["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 503: maintenance"),
        "{crm_row}"
    );
    assert!(crm_row["next_attempt_at"].as_i64().is_some());
    let waiting = wait_job(&gw, &job, Duration::from_secs(15), "crm accepted", |d| {
        state(d, "crm") == "waiting"
    })
    .await;
    assert_eq!(system_of(&waiting, "store")["state"], "erased");
    assert_eq!(
        system_of(&waiting, "legacy")["state"],
        "manual",
        "undeclared: left to an operator"
    );
    assert_eq!(crm.count(), 3);
    let body = crm.received.lock().unwrap()[2].clone();
    assert_eq!(body["customer_id"], ada.as_str());
    assert_eq!(body["identities"][0]["subject"], "ada");
    assert!(body["deadline"].as_i64().unwrap() > 0);

    // The CRM answers later through the callback: signed, or refused.
    let url = body["callback_url"].as_str().unwrap().to_string();
    let r = callback(&gw, &url, "not-the-secret-at-all", r#"{"status":"erased"}"#).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = callback(&gw, &url, SECRET, r#"{"status":"gone"}"#).await;
    assert_eq!(
        r.status,
        200,
        "an unknown status is recorded as an error: {}",
        r.text()
    );
    let r = callback(&gw, &url, SECRET, r#"{"status":"erased"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = callback(&gw, &url, SECRET, r#"{"status":"erased"}"#).await;
    assert_eq!(r.status, 409, "already settled: {}", r.text());

    // The undeclared system, erased by hand: an operator records it.
    let r = admin(
        &gw,
        "POST",
        &format!("/admin/privacy/requests/{job}/systems/legacy"),
        Some(serde_json::json!({"status": "erased", "note": "rows deleted by hand by J. Ops"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Accounting keeps invoices until a date: the account is deleted, the
    // hold documented, the report signed.
    let held = wait_job(
        &gw,
        &job,
        Duration::from_secs(10),
        "completed with holds",
        |d| d["state"] == "completed_with_holds",
    )
    .await;
    assert_eq!(system_of(&held, "accounting")["state"], "retained");
    let hold = &held["holds"][0];
    assert_eq!(hold["system"], "accounting");
    assert_eq!(hold["categories"], serde_json::json!(["invoices"]));
    assert_eq!(hold["legal_basis"], "HGB §257 (10 years)");
    let r = admin(&gw, "GET", &format!("/admin/customers/{ada}"), None).await;
    assert_eq!(r.status, 404, "the account is gone: {}", r.text());
    let report = verified_report(&gw, &job).await;
    assert_eq!(report["outcome"], "completed_with_holds");
    assert_eq!(report["customer_id"], ada.as_str());
    let outcome = |name: &str| {
        report["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["system"] == name)
            .map(|s| s["outcome"].clone())
    };
    assert_eq!(outcome("store"), Some("erased".into()));
    assert_eq!(outcome("crm"), Some("erased".into()));
    assert_eq!(outcome("legacy"), Some("erased".into()));
    assert_eq!(outcome("accounting"), Some("retained".into()));

    // The hold ends: the erasure is sent again for those categories only.
    let done = wait_job(&gw, &job, Duration::from_secs(15), "completed", |d| {
        d["state"] == "completed"
    })
    .await;
    assert_eq!(system_of(&done, "accounting")["state"], "erased");
    assert!(
        done["holds"][0]["released_at"].as_i64().is_some(),
        "{done:#}"
    );
    assert_eq!(accounting.count(), 2);
    assert_eq!(store.count(), 1, "the store is asked once");
    // The callback's unknown status was an error: the CRM may have been asked once more.
    assert!((3..=4).contains(&crm.count()), "{}", crm.count());
    let report = verified_report(&gw, &job).await;
    assert_eq!(report["outcome"], "completed");
    let trail: Vec<&str> = done["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["what"].as_str().unwrap())
        .collect();
    for step in [
        "requested",
        "revoked",
        "planned",
        "account deleted",
        "holds ended",
    ] {
        assert!(trail.contains(&step), "{step} missing from {trail:?}");
    }

    // Events for the operator's other systems, and the metrics.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kinds: Vec<String> = hook
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let n = |k: &str| kinds.iter().filter(|x| *x == k).count();
        if n("privacy.erasure_requested") == 1
            && n("privacy.hold_placed") == 1
            && n("privacy.erasure_completed") == 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "events: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures = gw
        .metric("omnigate_privacy_system_failures_total{system=\"crm\"}")
        .await;
    assert!(failures.is_some_and(|n| n >= 3.0), "{failures:?}");
    gw.wait_metric(
        "omnigate_privacy_jobs{kind=\"erasure\",state=\"completed\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    // The operator's console lists it with its progress and the report.
    let console = |auth: Option<String>| {
        let headers: Vec<(&str, String)> = auth.into_iter().map(|a| ("authorization", a)).collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let req = request(
            "GET",
            "admin",
            "/admin/console/privacy",
            &headers,
            Bytes::new(),
        );
        let c = Client::plain(gw.addr("admin"));
        async move { c.send(req).await.unwrap() }
    };
    let r = console(None).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate").unwrap().starts_with("Basic"),
        "a browser is asked"
    );
    let basic = format!("Basic {}", base64_encode(&format!("ops:{ADMIN_TOKEN}")));
    let r = console(Some(basic)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text();
    assert!(page.contains(&job) && page.contains("completed"), "{page}");
    assert!(
        page.contains(&format!("/admin/privacy/requests/{job}/report")),
        "{page}"
    );
    assert!(page.contains("<progress max=\"4\" value=\"4\">"), "{page}");

    // Ada signs in again with the same identity: a new customer, not the old one.
    let token = idp.sign(idp.user_claims("ada", "", 600), "RS256").await;
    let r = call(&c, &token, "/store/orders").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.json()["headers"]["x-customer-id"], ada.as_str());
}

#[tokio::test]
async fn erasure_on_the_embedded_store() {
    erasure_across_three_systems(false).await;
}

#[tokio::test]
async fn erasure_on_postgres() {
    erasure_across_three_systems(true).await;
}

/// Killed with SIGKILL while the CRM fails: after the restart the job goes
/// on where it was; the store, already erased, is not asked again.
#[tokio::test]
async fn a_job_survives_kill_9_without_repeating_a_step() {
    let idp = Idp::start().await;
    let store = System::start("store", |_, _| (200, r#"{"status":"erased"}"#.into())).await;
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let crm = System::start("crm", move |_, _| {
        if u.load(Ordering::SeqCst) {
            (200, r#"{"status":"not_found"}"#.into())
        } else {
            (503, "down".into())
        }
    })
    .await;
    let accounting =
        System::start("accounting", |_, _| (200, r#"{"status":"erased"}"#.into())).await;
    let legacy = Upstream::echo("legacy").await;
    let mut gw = Gateway::start(
        &systems_config(&idp, &store, &crm, &legacy, &accounting, ""),
        &[],
    )
    .await;
    let c = Client::plain(gw.addr("http"));
    let token = idp.sign(idp.user_claims("kai", "", 600), "RS256").await;
    let r = call(&c, &token, "/crm/x").await;
    let kai = r.json()["headers"]["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();
    call(&c, &token, "/store/x").await;
    // The map reaches the store before the request is filed.
    wait_map(&gw, &kai, 2).await;
    let job = file_erasure(&gw, &kai, "email", "replied from the address on file").await;
    wait_job(
        &gw,
        &job,
        Duration::from_secs(10),
        "store erased, crm failing",
        |d| state(d, "store") == "erased" && state(d, "crm") == "failing",
    )
    .await;
    gw.restart().await;
    up.store(true, Ordering::SeqCst);
    let done = wait_job(
        &gw,
        &job,
        Duration::from_secs(20),
        "completed after the restart",
        |d| d["state"] == "completed",
    )
    .await;
    assert_eq!(system_of(&done, "crm")["state"], "not_found");
    assert_eq!(store.count(), 1, "not asked again after the restart");
    assert_eq!(accounting.count(), 1);
    let trail: Vec<&str> = done["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        trail.iter().filter(|w| **w == "planned").count(),
        1,
        "{trail:?}"
    );
    assert_eq!(
        trail.iter().filter(|w| **w == "account deleted").count(),
        1,
        "{trail:?}"
    );
}

/// Two nodes on one PostgreSQL schema share the jobs: each system gets
/// each job exactly once, however the nodes' workers interleave.
#[tokio::test]
async fn two_nodes_share_jobs_without_double_sending() {
    let idp = Idp::start().await;
    let store = System::start("store", |_, _| (200, r#"{"status":"erased"}"#.into())).await;
    let crm = System::start("crm", |_, _| (200, r#"{"status":"erased"}"#.into())).await;
    let accounting = System::start("accounting", |_, _| {
        (200, r#"{"status":"not_found"}"#.into())
    })
    .await;
    let legacy = Upstream::echo("legacy").await;
    let extra = customers(true, &schema());
    let cfg = systems_config(&idp, &store, &crm, &legacy, &accounting, &extra);
    let a = Gateway::start(&cfg, &[]).await;
    let b = Gateway::start(&cfg, &[]).await;
    let ca = Client::plain(a.addr("http"));
    let mut ids = Vec::new();
    for user in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        let token = idp.sign(idp.user_claims(user, "", 600), "RS256").await;
        let r = call(&ca, &token, "/store/x").await;
        ids.push(
            r.json()["headers"]["x-customer-id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let stored = |v: serde_json::Value| {
        v.as_array().and_then(|a| {
            a.iter()
                .find(|s| s["system"] == "store")
                .map(|s| s["customers"].clone())
        })
    };
    while stored(
        admin(&a, "GET", "/admin/privacy/systems", None)
            .await
            .json(),
    ) != Some(6.into())
    {
        assert!(Instant::now() < deadline, "data map not flushed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut jobs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        jobs.push(file_erasure(node, id, "letter", "signed letter").await);
    }
    for job in &jobs {
        wait_job(&b, job, Duration::from_secs(30), "completed", |d| {
            d["state"] == "completed"
        })
        .await;
    }
    let mut sent: Vec<String> = store
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["job_id"].as_str().unwrap().to_string())
        .collect();
    sent.sort();
    let mut want = jobs.clone();
    want.sort();
    assert_eq!(sent, want, "each job sent to the store exactly once");
    assert_eq!(accounting.count(), 6);
    assert_eq!(crm.count(), 0, "the crm never saw these customers");
}

/// Global Privacy Control from a known customer withdraws the purposes
/// marked as sale or sharing: gone from that request, recorded in the
/// ledger with method `gpc`, enforced from then on like any withdrawal.
#[tokio::test]
async fn global_privacy_control_withdraws_sale_purposes() {
    let idp = Idp::start().await;
    let api = Upstream::echo("api").await;
    let purposes = "purposes:
  - { id: terms, title: Terms, text: I accept the terms., version: 1, legal_basis: contract, required: true }
  - { id: social_ads, title: Ads on social networks, text: Share a hash of my email with ad networks., version: 1, sale: true }
";
    let cfg = config_with(&format!(
        "include: [consent.yaml]\n{HTTP_LISTENER}{}upstreams:
  api: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: ads, path_prefix: /api/ads, upstream: api, kind: api, access: required, consent: {{ require: [social_ads], on_missing: deny }} }}
  - {{ name: me, path_prefix: /api/me, upstream: api, kind: api, access: required }}
",
        bearer_provider(&idp),
        api.addr
    ));
    let gw = Gateway::start(&cfg, &[("consent.yaml", purposes)]).await;
    let c = Client::plain(gw.addr("http"));
    let token = idp.sign(idp.user_claims("gil", "", 600), "RS256").await;
    let gil = call(&c, &token, "/api/me").await.json()["headers"]["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();
    for purpose in ["terms", "social_ads"] {
        let body = serde_json::json!({"purpose": purpose, "action": "grant", "channel": "signup", "version": 1});
        let r = admin(
            &gw,
            "POST",
            &format!("/admin/customers/{gil}/consents"),
            Some(body),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = call(&c, &token, "/api/ads").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["headers"]["x-customer-consents"],
        "social_ads=1,terms=1"
    );

    // The browser now sends GPC: the sale purpose is gone from this very request.
    let auth = format!("Bearer {token}");
    let gpc = |path: &'static str| {
        let (c, auth) = (c.clone(), auth.clone());
        async move {
            c.send(request(
                "GET",
                "api.test",
                path,
                &[("authorization", &auth), ("sec-gpc", "1")],
                Bytes::new(),
            ))
            .await
            .unwrap()
        }
    };
    let r = gpc("/api/me").await;
    assert_eq!(
        r.json()["headers"]["x-customer-consents"],
        "terms=1",
        "{}",
        r.text()
    );
    assert_eq!(gpc("/api/ads").await.status, 403);
    // Recorded once in the ledger, as a withdrawal by GPC; enforced without the header too.
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let v = admin(
            &gw,
            "GET",
            &format!("/admin/customers/{gil}/consents"),
            None,
        )
        .await
        .json();
        let withdrawn: Vec<serde_json::Value> = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "withdraw")
            .cloned()
            .collect();
        if !withdrawn.is_empty() {
            break withdrawn;
        }
        assert!(Instant::now() < deadline, "no withdrawal recorded: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["purpose"], "social_ads");
    assert_eq!(records[0]["method"], "gpc");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = call(&c, &token, "/api/ads").await;
    assert_eq!(r.status, 403, "withdrawn for good: {}", r.text());
    gpc("/api/me").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = admin(
        &gw,
        "GET",
        &format!("/admin/customers/{gil}/consents"),
        None,
    )
    .await
    .json();
    let n = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "withdraw")
        .count();
    assert_eq!(n, 1, "nothing left to withdraw: not recorded again");
}

/// An export gathers what the gateway holds and every system's answer: the
/// store's (large, streamed in chunks) at once, the CRM's through the
/// callback, accounting's `not_found`; downloaded as one JSON document.
#[tokio::test]
async fn an_export_merges_every_system() {
    let idp = Idp::start().await;
    // About 3 MiB: kept and sent on in chunks, never as one piece.
    let orders: Vec<serde_json::Value> = (0..20_000)
        .map(|i| serde_json::json!({"order": i, "item": "Grüne Teekanne", "total": "19.90"}))
        .collect();
    let store_doc =
        serde_json::json!({"status": "exported", "data": {"orders": orders}}).to_string();
    let store = System::start("store", move |_, _| (200, store_doc.clone())).await;
    let crm = System::start("crm", |_, _| (202, String::new())).await;
    let accounting = System::start("accounting", |_, _| {
        (200, r#"{"status":"not_found"}"#.into())
    })
    .await;
    let legacy = Upstream::echo("legacy").await;
    let export = |s: &System| {
        format!(
            "{{ url: \"http://{}/privacy/export\", timeout: 2s }}",
            s.up.addr
        )
    };
    let cfg = systems_config(&idp, &store, &crm, &legacy, &accounting, "")
        .replace(
            "retention: 2 years after the last order, erasure:",
            &format!(
                "retention: 2 years after the last order, export: {}, erasure:",
                export(&store)
            ),
        )
        .replace(
            "retention: 1 year, erasure:",
            &format!("retention: 1 year, export: {}, erasure:", export(&crm)),
        )
        .replace(
            "      all_customers: true\n",
            &format!(
                "      all_customers: true\n      export: {}\n",
                export(&accounting)
            ),
        );
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    let token = idp.sign(idp.user_claims("eve", "", 600), "RS256").await;
    let eve = call(&c, &token, "/store/x").await.json()["headers"]["x-customer-id"]
        .as_str()
        .unwrap()
        .to_string();
    call(&c, &token, "/crm/x").await;
    wait_map(&gw, &eve, 2).await;
    let body = serde_json::json!({"customer_id": eve, "kind": "export", "channel": "email",
        "verification": "replied from the address on file"});
    let r = admin(&gw, "POST", "/admin/privacy/requests", Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json()["id"].as_str().unwrap().to_string();
    let r = admin(
        &gw,
        "GET",
        &format!("/admin/privacy/requests/{job}/export"),
        None,
    )
    .await;
    assert_eq!(r.status, 409, "not ready yet: {}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    let r = admin(
        &gw,
        "GET",
        "/admin/privacy/requests/prj_00000000000000000000000000000000/export",
        None,
    )
    .await;
    assert_eq!(r.status, 404, "no such request: {}", r.text());
    wait_job(
        &gw,
        &job,
        Duration::from_secs(10),
        "the crm accepted",
        |d| state(d, "crm") == "waiting",
    )
    .await;
    let url = crm.received.lock().unwrap()[0]["callback_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(crm.received.lock().unwrap()[0]["type"], "privacy.export");
    let answer = r#"{"status":"exported","data":{"tickets":[{"id":7,"subject":"Lid is loose"}]}}"#;
    let r = callback(&gw, &url, SECRET, answer).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = wait_job(&gw, &job, Duration::from_secs(10), "ready", |d| {
        d["state"] == "ready"
    })
    .await;
    assert_eq!(state(&done, "store"), "exported");
    assert_eq!(state(&done, "accounting"), "not_found");

    let r = admin(
        &gw,
        "GET",
        &format!("/admin/privacy/requests/{job}/export"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-length").is_none(), "streamed");
    let doc = r.json();
    assert_eq!(doc["customer_id"], eve.as_str());
    assert_eq!(doc["gateway"]["identities"][0]["subject"], "eve");
    assert_eq!(doc["gateway"]["data_map"].as_array().unwrap().len(), 2);
    assert_eq!(
        doc["systems"]["store"]["data"]["orders"]
            .as_array()
            .unwrap()
            .len(),
        20_000
    );
    assert_eq!(
        doc["systems"]["store"]["data"]["orders"][19_999]["item"],
        "Grüne Teekanne"
    );
    assert_eq!(doc["systems"]["crm"]["data"]["tickets"][0]["id"], 7);
    assert_eq!(doc["systems_without_export"][0]["system"], "accounting");
    // The customer is not affected by an export.
    assert_eq!(call(&c, &token, "/store/x").await.status, 200);
}

/// In Chromium: a customer whose sign-in is not recent signs in again,
/// downloads their data, asks for deletion and follows it on the status page.
#[tokio::test]
async fn a_customer_downloads_their_data_and_deletes_their_account_in_a_browser() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let warehouse = System::start("warehouse", |_, body| match body["type"].as_str() {
        Some("privacy.export") => (
            200,
            r#"{"status":"exported","data":{"orders":[{"id":41,"item":"Teapot"}]}}"#.into(),
        ),
        _ => (200, r#"{"status":"erased"}"#.into()),
    })
    .await;
    let privacy = format!(
        "privacy:
  secret: {SECRET}
  reauthenticate: 10s
  tick: 100ms
  lease: 4s
  systems:
    warehouse:
      owner: Logistics
      categories: [orders, contact]
      retention: 6 years
      all_customers: true
      erasure: {{ url: \"http://{0}/privacy/erase\", timeout: 2s }}
      export: {{ url: \"http://{0}/privacy/export\", timeout: 2s }}
",
        warehouse.up.addr
    );
    let ports = reserve_ports();
    let https = ports["https"];
    let cfg = crate::consent::consent_config(&sink, &store, &crm, &privacy);
    let gw = Gateway::start_on(
        ports,
        &cfg,
        &[("consent.yaml", &crate::consent::purposes(1))],
    )
    .await;
    let base = format!("https://shop.test:{https}");
    let email = "rosa@example.test";
    const PASSWORD: &str = "violet kettle 42 morning";
    let seen = browse(
        "walk_privacy",
        Some("MAP *.test 127.0.0.1"),
        serde_json::json!([
            {"goto": format!("{base}/_auth/register")},
            {"fill": ["#register-email", email]},
            {"fill": ["#register-password", PASSWORD]},
            {"click": "#register-terms"},
            {"click": "form[action='/_auth/register'] button[type=submit]", "waitText": "Your account is ready"},
            {"sleep": 11000},
            {"goto": format!("{base}/_account"), "waitText": "Your data: download it"},
            {"click": "a[href='/_account/privacy']", "waitText": "Confirm it is you", "screenshot": "01-sign-in-again", "axe": true},
            {"click": "form[action='/_account/privacy/reauth'] button", "waitText": "Sign in"},
            {"fill": ["#login-email", email]},
            {"fill": ["#login-password", PASSWORD]},
            {"click": "form[action='/_auth/login/password'] button[type=submit]", "waitText": "Delete your account"},
            {"click": "form[action='/_account/privacy/export'] button", "waitText": "Download your data"},
            {"reloadUntil": "Download (JSON)", "screenshot": "02-export-ready", "axe": true},
            {"download": "a[download]"},
            {"click": "a[href^='/_account/privacy/export/']:not([download])", "waitText": "What warehouse holds", "screenshot": "03-summary", "axe": true},
            {"goto": format!("{base}/_account/privacy")},
            {"click": "#delete-confirm"},
            {"click": "form[action='/_account/privacy/delete'] button", "waitText": "Your account is being deleted", "screenshot": "04-status", "axe": true},
        ]),
    )
    .await;
    let download = seen
        .iter()
        .find_map(|s| s.get("download").filter(|d| !d.is_null()))
        .expect("a download");
    assert!(
        download["name"].as_str().unwrap().ends_with(".json"),
        "{download}"
    );
    let doc: serde_json::Value = serde_json::from_str(download["text"].as_str().unwrap()).unwrap();
    assert_eq!(doc["gateway"]["profile"]["email"], email);
    assert_eq!(
        doc["systems"]["warehouse"]["data"]["orders"][0]["item"],
        "Teapot"
    );
    assert!(doc["gateway"]["consent_records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["purpose"] == "terms"));
    for page in &seen {
        if let Some(v) = page.get("axe").and_then(|a| a.as_array()) {
            assert!(
                v.is_empty(),
                "accessibility problems on {}: {v:#?}",
                page["url"]
            );
        }
    }
    // The status page is the customer's: it works without a session, the
    // reference names the request, and it is completed now.
    let status = seen
        .iter()
        .rev()
        .find(|s| {
            s["url"]
                .as_str()
                .is_some_and(|u| u.contains("/_auth/privacy/status"))
        })
        .unwrap();
    let url = status["url"].as_str().unwrap();
    let job = url.split("job=").nth(1).unwrap().split('&').next().unwrap();
    // The store was never declared: our staff delete there by hand, and say so.
    let r = admin(
        &gw,
        "POST",
        &format!("/admin/privacy/requests/{job}/systems/store"),
        Some(serde_json::json!({"status": "erased", "note": "deleted in the shop database by R. Ops"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = browse(
        "walk_privacy_done",
        Some("MAP *.test 127.0.0.1"),
        serde_json::json!([
            {"goto": url, "reloadUntil": "Your account and your data are deleted.", "screenshot": "05-done", "axe": true},
            {"goto": format!("{base}/_account"), "waitText": "Sign in"},
        ]),
    )
    .await;
    assert!(
        after[0]["axe"].as_array().is_some_and(|v| v.is_empty()),
        "{:#}",
        after[0]["axe"]
    );
    let detail = admin(&gw, "GET", &format!("/admin/privacy/requests/{job}"), None)
        .await
        .json();
    assert_eq!(detail["state"], "completed");
    assert_eq!(detail["requested_by"], "customer");
    assert_eq!(detail["channel"], "account_page");
    assert!(
        detail["verification"]
            .as_str()
            .unwrap()
            .starts_with("signed in"),
        "{detail}"
    );
    // The receipt was mailed before the address was deleted.
    let receipt = sink.wait_mail(email, 2, Duration::from_secs(10)).await;
    assert!(receipt.contains(job), "{receipt}");
    // A wrong token shows nothing.
    let wrong = url.replace("&t=", "&t=0");
    let r = gw
        .dev_client()
        .get("shop.test", &wrong[wrong.find("/_auth").unwrap()..])
        .await;
    assert_eq!(r.status, 404);
}
