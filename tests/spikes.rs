//! Campaign spikes (issue 14): what the gateway refuses, and how, when more
//! arrives than it can do — beginning with password hashing, the costliest
//! thing it does.

use std::time::Duration;

use serde_json::json;

use crate::accounts::{Visitor, PASSWORD};
use crate::support::*;

/// A shop whose hashing pool has one worker and room for one waiting hash,
/// at a cost that makes each hash take a while.
fn slow_hashing_shop(sink: &MailSink, store: &Upstream) -> String {
    let accounts = sink
        .accounts_config(
            "https://shop.test:{https}",
            "  hashing: { workers: 1, queue: 1, deadline: 2s }\n",
        )
        .replace(
            "argon2: { memory_kib: 19456, iterations: 2, parallelism: 1 }",
            "argon2: { memory_kib: 65536, iterations: 6, parallelism: 1 }",
        );
    config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
{accounts}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: optional }}
",
        store.addr
    ))
}

#[tokio::test]
async fn a_sign_in_storm_beyond_the_hashing_pool_gets_503_at_once_and_counts_no_failure() {
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let gw = Gateway::start(&slow_hashing_shop(&sink, &store), &[]).await;
    let email = "storm@example.test";
    let mut first = Visitor::new(gw.dev_client());
    let (status, page) = first.register(email, PASSWORD).await;
    assert_eq!(status, 303, "{page}");

    let mut storm = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let mut v = Visitor::new(gw.dev_client());
        storm.spawn(async move {
            let html = v.get("/_auth/login").await.text();
            let csrf = Visitor::csrf_in(&html);
            // All posted together: one hashes, one waits, the rest are told.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let form = format!(
                "csrf={csrf}&email={}&password={}",
                url_encode(email),
                url_encode(PASSWORD)
            );
            v.send("POST", "/_auth/login/password", &[], &form).await
        });
    }
    // Proxying is not starved meanwhile.
    let home = gw.dev_client().get("shop.test", "/").await;
    assert_eq!(home.status, 200);

    let (mut signed_in, mut busy) = (0, 0);
    while let Some(r) = storm.join_next().await {
        let r = r.expect("visitor");
        match r.status {
            303 => signed_in += 1,
            503 => {
                busy += 1;
                assert_eq!(r.header("retry-after"), Some("5"));
                assert!(
                    r.text().contains("Many people are signing in right now"),
                    "{}",
                    r.text()
                );
            }
            other => panic!(
                "a sign-in with the right password answered {other}: {}",
                r.text()
            ),
        }
    }
    assert!(
        signed_in >= 1 && busy >= 1,
        "signed in {signed_in}, busy {busy}"
    );
    assert_eq!(signed_in + busy, 12);
    let refused = gw
        .metric("omnigate_password_hash_refused_total{reason=\"queue_full\"}")
        .await
        .expect("the refusal metric is exported");
    assert_eq!(refused, busy as f64);
    // Sign-in pages are counted under their own route label.
    assert_eq!(
        gw.metric("omnigate_requests_total{method=\"POST\",route=\"_auth\",status_class=\"5xx\"}")
            .await,
        Some(busy as f64)
    );
    // A full pool is not a wrong password: nothing counted, nobody throttled.
    assert_eq!(
        gw.metric("omnigate_password_failures_total").await,
        Some(0.0)
    );
    assert_eq!(gw.metric("omnigate_password_hash_queue").await, Some(0.0));
    let mut later = Visitor::new(gw.dev_client());
    let (status, _) = later.sign_in(email, PASSWORD).await;
    assert_eq!(status, 303, "the account signs in once the storm is over");
}

/// An upstream that holds every request until the test lets one go, and
/// counts the requests that reached it.
struct Held {
    up: Upstream,
    release: std::sync::Arc<tokio::sync::Semaphore>,
    arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Held {
    async fn start() -> Held {
        let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let arrived = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, a) = (release.clone(), arrived.clone());
        let up = Upstream::start(move |req| {
            let (r, a) = (r.clone(), a.clone());
            async move {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Ok(p) = r.acquire().await {
                    p.forget();
                }
                echo_response("store", &req)
            }
        })
        .await;
        Held {
            up,
            release,
            arrived,
        }
    }

    async fn wait_arrived(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.arrived.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} requests never reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn admission_shop(idp: &Idp, store: &Upstream) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}{}upstreams:
  store:
    addresses: [\"{}\"]
    admission: {{ limit: 4, queue: 4, queue_timeout: 1500ms, retry_after: 3s }}
routes:
  - {{ name: checkout, hosts: [shop.test], path_prefix: /checkout, upstream: store, kind: web, priority: critical }}
  - {{ name: recommendations, hosts: [shop.test], path_prefix: /recs, upstream: store, kind: api, priority: sheddable }}
  - {{ name: browse, hosts: [shop.test], path_prefix: /, upstream: store, kind: web }}
",
        bearer_provider(idp),
        store.addr
    ))
}

fn spawn_get(
    c: &Client,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
) -> tokio::task::JoinHandle<(Resp, std::time::Instant)> {
    let c = c.clone();
    tokio::spawn(async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = c
            .send(request("GET", "shop.test", path, &h, bytes::Bytes::new()))
            .await
            .expect("request");
        (r, std::time::Instant::now())
    })
}

#[tokio::test]
async fn at_the_limit_checkout_goes_first_customers_before_visitors_and_crawlers_are_told_to_slow_down(
) {
    let (_, idp) = ports_and_idp().await;
    let held = Held::start().await;
    let gw = Gateway::start(&admission_shop(&idp, &held.up), &[]).await;
    let c = Client::plain(gw.addr("http"));
    // Anonymous visitors fill their three quarters of the four slots.
    let browsing: Vec<_> = (0..3).map(|_| spawn_get(&c, "/", vec![])).collect();
    held.wait_arrived(3).await;

    // A crawler is refused at once with 429, never queued.
    let bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let r = c
        .send(request(
            "GET",
            "shop.test",
            "/",
            &[("user-agent", bot)],
            bytes::Bytes::new(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("3"));
    assert!(r.text().contains("Very busy right now"), "{}", r.text());

    // A fourth visitor waits, bounded by queue_timeout, then is told 503.
    let started = std::time::Instant::now();
    let r = c.get("shop.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("3"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // An API client of a sheddable route gets problem JSON.
    let r = c.get("shop.test", "/recs/for-you").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["type"], "urn:omnigate:problem:over-capacity");

    // A signed-in customer on the same public page finds the slot visitors cannot take.
    let token = idp.sign(idp.user_claims("ada", "", 300), "RS256").await;
    let customer = spawn_get(&c, "/", vec![("authorization", format!("Bearer {token}"))]);
    held.wait_arrived(4).await;

    // Full: a visitor and then a checkout wait; the first freed slot is checkout's.
    let visitor = spawn_get(&c, "/", vec![]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let checkout = spawn_get(&c, "/checkout/pay", vec![]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        gw.metric("omnigate_admission_queued{upstream=\"store\"}")
            .await,
        Some(2.0)
    );
    held.release.add_permits(1);
    held.wait_arrived(5).await;
    // The fifth to reach the upstream is checkout: the visitor still waits.
    assert_eq!(
        gw.metric("omnigate_admission_queued{upstream=\"store\"}")
            .await,
        Some(1.0)
    );
    held.release.add_permits(10);
    let (checkout, _) = checkout.await.unwrap();
    assert_eq!(checkout.status, 200, "{}", checkout.text());
    let (visitor, _) = visitor.await.unwrap();
    assert_eq!(visitor.status, 200, "{}", visitor.text());
    assert_eq!(customer.await.unwrap().0.status, 200);
    for b in browsing {
        assert_eq!(b.await.unwrap().0.status, 200);
    }

    let count = |class: &str, outcome: &str| {
        format!("omnigate_admission_requests_total{{class=\"{class}\",outcome=\"{outcome}\",upstream=\"store\"}}")
    };
    assert_eq!(gw.metric(&count("bot", "shed")).await, Some(1.0));
    assert_eq!(gw.metric(&count("anonymous", "timed_out")).await, Some(1.0));
    assert_eq!(gw.metric(&count("sheddable", "timed_out")).await, Some(1.0));
    assert_eq!(gw.metric(&count("signed_in", "admitted")).await, Some(1.0));
    assert_eq!(gw.metric(&count("critical", "queued")).await, Some(1.0));
    assert_eq!(gw.metric(&count("anonymous", "queued")).await, Some(1.0));
    assert_eq!(
        gw.metric("omnigate_admission_in_flight{upstream=\"store\"}")
            .await,
        Some(0.0)
    );
    assert_eq!(
        gw.metric("omnigate_admission_limit{upstream=\"store\"}")
            .await,
        Some(4.0)
    );
}

/// A shop with one gated upstream; `more` is added to the upstream as is.
fn gated_shop(store: &Upstream, admission: &str, more: &str) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  store:
    addresses: [\"{}\"]
    admission: {{ {admission} }}
{more}routes:
  - {{ name: browse, hosts: [shop.test], path_prefix: /, upstream: store, kind: web }}
",
        store.addr
    ))
}

#[tokio::test]
async fn a_reload_that_changes_an_upstream_but_not_its_gate_keeps_the_requests_in_flight_counted() {
    let held = Held::start().await;
    let gate = "limit: 4, queue: 4, queue_timeout: 800ms, retry_after: 2s";
    let gw = Gateway::start(&gated_shop(&held.up, gate, ""), &[]).await;
    let c = Client::plain(gw.addr("http"));
    // Visitors take their three quarters of the four slots.
    let browsing: Vec<_> = (0..3).map(|_| spawn_get(&c, "/", vec![])).collect();
    held.wait_arrived(3).await;

    // The upstream changes (its read timeout), its gate does not.
    gw.rewrite_config(&gated_shop(&held.up, gate, "    read_timeout: 45s\n"));
    gw.reloaded(1.0).await;
    let in_flight = "omnigate_admission_in_flight{upstream=\"store\"}";
    assert_eq!(gw.metric(in_flight).await, Some(3.0));
    // So the next visitor still finds no slot: it waits, then is told 503.
    let r = c.get("shop.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(held.arrived.load(std::sync::atomic::Ordering::SeqCst), 3);

    // A new gate starts afresh, and its series are exported, not dropped.
    let wider = "limit: 8, queue: 4, queue_timeout: 800ms, retry_after: 2s";
    gw.rewrite_config(&gated_shop(&held.up, wider, "    read_timeout: 45s\n"));
    gw.reloaded(2.0).await;
    let limit = "omnigate_admission_limit{upstream=\"store\"}";
    assert_eq!(gw.metric(limit).await, Some(8.0));
    let r = spawn_get(&c, "/", vec![]);
    held.wait_arrived(4).await;
    held.release.add_permits(10);
    assert_eq!(r.await.unwrap().0.status, 200);
    for b in browsing {
        assert_eq!(b.await.unwrap().0.status, 200);
    }
    let timed_out = "omnigate_admission_requests_total{class=\"anonymous\",outcome=\"timed_out\",upstream=\"store\"}";
    assert_eq!(gw.metric(timed_out).await, Some(1.0));
}

#[tokio::test]
async fn an_adaptive_limit_falls_when_the_upstream_slows_and_rises_when_it_recovers() {
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = slow.clone();
    let store = Upstream::start(move |req| {
        let s = s.clone();
        async move {
            let ms = if s.load(std::sync::atomic::Ordering::SeqCst) {
                60
            } else {
                5
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            echo_response("store", &req)
        }
    })
    .await;
    let gw = Gateway::start(
        &config_with(&format!(
            "{HTTP_LISTENER}upstreams:
  store:
    addresses: [\"{}\"]
    admission: {{ adaptive: {{ min: 4, max: 64 }}, limit: 32, queue: 200, queue_timeout: 5s }}
routes:
  - {{ name: browse, path_prefix: /, upstream: store, kind: api }}
",
            store.addr
        )),
        &[],
    )
    .await;
    let limit = "omnigate_admission_limit{upstream=\"store\"}";
    assert_eq!(gw.metric(limit).await, Some(32.0));
    // Each phase samples the limit while the load runs: how far it moved in
    // the phase, not where a loaded machine left it at the end.
    let phase = |secs: u64| {
        let c = Client::plain(gw.addr("http"));
        let admin = gw.addr("admin");
        async move {
            let until = std::time::Instant::now() + Duration::from_secs(secs);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..40 {
                let c = c.clone();
                tasks.spawn(async move {
                    let mut codes = Vec::new();
                    while std::time::Instant::now() < until {
                        codes.push(c.get("api.test", "/").await.status);
                    }
                    codes
                });
            }
            let (mut lo, mut hi) = (f64::MAX, f64::MIN);
            while std::time::Instant::now() < until {
                if let Some(v) = metric_at(admin, limit).await {
                    (lo, hi) = (lo.min(v), hi.max(v));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut all = Vec::new();
            while let Some(c) = tasks.join_next().await {
                all.extend(c.unwrap());
            }
            (all, lo, hi)
        }
    };
    let (codes, _, grown) = phase(3).await;
    assert!(codes.iter().all(|&s| s == 200), "fast phase refused some");
    assert!(
        grown > 32.0,
        "steady latency under load grows the limit: {grown}"
    );
    slow.store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, shrunk, _) = phase(3).await;
    assert!(
        shrunk < grown / 2.0,
        "a slower upstream gets fewer requests at once: {grown} → {shrunk}"
    );
    slow.store(false, std::sync::atomic::Ordering::SeqCst);
    let (_, _, recovered) = phase(3).await;
    assert!(
        recovered > shrunk * 1.5,
        "the limit comes back: {shrunk} → {recovered}"
    );
}

fn room_shop(store: &Upstream, listeners: &str, shared: &str, room: &str) -> String {
    config_with(&format!(
        "{listeners}{shared}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: sale, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, waiting_room: {room} }}
  - {{ name: sale-api, hosts: [api.shop.test], path_prefix: /, upstream: store, kind: api, waiting_room: {room} }}
",
        store.addr
    ))
}

const HTTPS_LISTENER: &str =
    "listeners:\n  - name: https\n    address: 127.0.0.1:{https}\n    tls: { certificates: [] }\n";

#[tokio::test]
async fn beyond_the_room_a_browser_waits_on_a_page_that_lets_it_in_by_itself() {
    let store = Upstream::echo("store").await;
    let room = "{ active_users: 1, new_per_minute: 100, session_duration: 10s, refresh: 2s }";
    let ports = reserve_ports();
    let https = ports["https"];
    let gw = Gateway::start_on(ports, &room_shop(&store, HTTPS_LISTENER, "", room), &[]).await;
    // The first visitor takes the only place inside.
    let first = gw.dev_client().get("shop.test", "/sale").await;
    assert_eq!(first.status, 200);
    let stay = first.header("set-cookie").expect("a stay cookie");
    assert!(stay.starts_with("__Host-omnigate-room-"), "{stay}");
    assert!(stay.contains("Secure; HttpOnly; SameSite=Lax"), "{stay}");
    assert!(
        !first.text().contains("omnigate-room"),
        "the backend never sees the room's cookie: {}",
        first.text()
    );

    // The first visitor stays active until the browser has its place (a
    // loaded machine may take seconds to start Chromium), then leaves: its
    // stay ends session_duration after its last request.
    let queued = "omnigate_waiting_room_entries_total{result=\"waiting\",route=\"sale\"}";
    let keeper = {
        let (c, gw_admin) = (gw.dev_client(), gw.addr("admin"));
        let mut cookie = stay.split(';').next().unwrap_or_default().to_string();
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while metric_at(gw_admin, queued).await != Some(1.0) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the browser never queued"
                );
                let r = c.get_with_cookie("shop.test", "/sale", Some(&cookie)).await;
                assert_eq!(r.status, 200, "the first visitor stays inside");
                if let Some(renewed) = r.header("set-cookie") {
                    cookie = renewed.split(';').next().unwrap_or_default().to_string();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let base = format!("https://shop.test:{https}");
    let seen = browse(
        "waiting_room",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/sale/shoes"), "waitText": "Your place", "screenshot": "01-waiting", "axe": true},
            {"sleep": 9000},
            {"waitText": "\"upstream\":\"store\"", "screenshot": "02-let-in"},
        ]),
    )
    .await;
    keeper.await.expect("the first visitor left");
    let waiting = &seen[0];
    assert_eq!(waiting["status"], 503);
    assert_eq!(waiting["headings"], json!(["You are in the queue"]));
    let text = waiting["text"].as_str().unwrap();
    assert!(
        text.contains("Your place\n1") || text.contains("Your place\t1"),
        "{text}"
    );
    assert!(text.contains("Estimated wait"), "{text}");
    assert!(text.contains("every 2 seconds"), "{text}");
    let inside = &seen[2];
    assert_eq!(inside["status"], 200, "the page let itself in: {inside}");
    assert!(inside["text"].as_str().unwrap().contains("/sale/shoes"));

    assert_eq!(gw.metric(queued).await, Some(1.0));
    assert_eq!(
        gw.metric("omnigate_waiting_room_entries_total{result=\"entered\",route=\"sale\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        gw.metric("omnigate_waiting_room_queue{route=\"sale\"}")
            .await,
        Some(0.0)
    );
}

#[tokio::test]
async fn two_nodes_share_one_queue_in_redis_and_api_clients_get_their_place_as_json() {
    let unique = hex::encode(rand::random::<[u8; 6]>());
    let shared = format!(
        "sessions: {{ store: redis, url: \"redis://127.0.0.1:6379\", key_prefix: \"room-{unique}:\" }}
customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: room_{unique} }}
"
    );
    let store = Upstream::echo("store").await;
    let room = "{ active_users: 1, new_per_minute: 100, session_duration: 10m }";
    let cfg = room_shop(&store, HTTPS_LISTENER, &shared, room);
    let a = Gateway::start(&cfg, &[]).await;
    let b = Gateway::start(&cfg, &[]).await;
    let inside = a.dev_client().get("api.shop.test", "/offers").await;
    assert_eq!(inside.status, 200, "{}", inside.text());

    // The room is full on node b too.
    let second = b.dev_client().get("api.shop.test", "/offers").await;
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(
        second.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(second.header("retry-after"), Some("20"));
    let doc = second.json();
    assert_eq!(doc["type"], "urn:omnigate:problem:waiting-room");
    assert_eq!(doc["position"], 1);
    assert_eq!(doc["retry_after"], 20);
    assert!(doc["estimated_wait_seconds"].as_u64().unwrap() > 0, "{doc}");
    let place = second
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let third = a.dev_client().get("api.shop.test", "/offers").await;
    assert_eq!(
        third.json()["position"],
        2,
        "first come, first served across nodes"
    );
    // The second visitor keeps their place on the other node.
    let again = a
        .dev_client()
        .get_with_cookie("api.shop.test", "/offers", Some(&place))
        .await;
    assert_eq!(again.json()["position"], 1, "{}", again.text());
    // A place is not forged: another value is a newcomer at the end.
    let forged = place.replace("w.", "i.");
    let newcomer = b
        .dev_client()
        .get_with_cookie("api.shop.test", "/offers", Some(&forged))
        .await;
    assert_eq!(newcomer.json()["position"], 3);
    assert_eq!(
        a.metric("omnigate_waiting_room_queue{route=\"sale-api\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        b.metric("omnigate_waiting_room_queue{route=\"sale-api\"}")
            .await,
        Some(3.0)
    );
}

#[tokio::test]
async fn signed_in_customers_in_checkout_skip_the_room() {
    let (_, idp) = ports_and_idp().await;
    let store = Upstream::echo("store").await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}{}upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: checkout, path_prefix: /checkout, upstream: store, kind: api, priority: critical, access: optional, waiting_room: {{ active_users: 1, new_per_minute: 10 }} }}
",
        bearer_provider(&idp),
        store.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    assert_eq!(c.get("shop.test", "/checkout").await.status, 200);
    assert_eq!(
        c.get("shop.test", "/checkout").await.status,
        503,
        "a visitor waits"
    );
    let token = idp.sign(idp.user_claims("ada", "", 300), "RS256").await;
    let r = get_bearer(&c, "shop.test", "/checkout/pay", &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("set-cookie").is_none(), "no place is taken");
}

/// The Redis script and the in-memory room take the same steps: a random
/// walk of arrivals gets the same answers from both.
#[tokio::test]
async fn the_redis_room_and_the_memory_room_agree() {
    use omnigate::waiting_room::plan::{Arrival, Entry, Limits};
    use omnigate::waiting_room::store::{MemoryRooms, RedisRooms, RoomStore};
    let prefix = format!("agree-{}:", hex::encode(rand::random::<[u8; 6]>()));
    let redis = RedisRooms::open("redis://127.0.0.1:6379", &prefix, Duration::from_secs(2))
        .await
        .expect("Redis at 127.0.0.1:6379");
    let memory = MemoryRooms::default();
    let l = Limits {
        active_users: 4,
        new_per_minute: 6,
        session: 40,
        claim: 12,
    };
    let mut now = 1_700_000_000i64;
    let (mut places, mut stays): (Vec<u64>, Vec<i64>) = (Vec::new(), Vec::new());
    let (mut epoch_r, mut epoch_m) = (0, 0);
    for i in 0..400u64 {
        now += (rand::random::<u8>() % 7) as i64;
        let pick = rand::random::<u8>() % 3;
        let (ar, am) = match pick {
            1 if !places.is_empty() => {
                let t = places[(i as usize) % places.len()];
                (
                    Arrival::Place {
                        ticket: t,
                        epoch: epoch_r,
                    },
                    Arrival::Place {
                        ticket: t,
                        epoch: epoch_m,
                    },
                )
            }
            2 if !stays.is_empty() => {
                let u = stays.remove((i as usize) % stays.len());
                (
                    Arrival::Renew {
                        until: u,
                        epoch: epoch_r,
                    },
                    Arrival::Renew {
                        until: u,
                        epoch: epoch_m,
                    },
                )
            }
            _ => (Arrival::New, Arrival::New),
        };
        let r = redis.step("room", ar, now, &l).await.expect("redis step");
        let m = memory.step("room", am, now, &l).await.expect("memory step");
        (epoch_r, epoch_m) = (r.epoch, m.epoch);
        assert_eq!(
            (r.entry, r.queue, r.active, r.per_minute),
            (m.entry, m.queue, m.active, m.per_minute),
            "step {i} at {now}: {ar:?}"
        );
        match r.entry {
            Entry::Waiting { ticket, .. } if !places.contains(&ticket) => places.push(ticket),
            Entry::Inside { until } => stays.push(until),
            _ => {}
        }
    }
}
