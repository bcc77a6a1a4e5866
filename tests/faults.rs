//! Failing dependencies through the real binary: a store that goes away is a
//! bounded 503 (never "signed out", never a hang) and the gateway is back
//! within seconds of its return; nodes may start together on a fresh schema;
//! a provider that is down at the callback is a 503 nobody is blamed for;
//! a waiting room whose store is lost keeps those inside.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::accounts::Visitor;
use crate::support::*;

const PASSWORD: &str = "violet kettle 42 morning";

/// A Redis of this test's own, on a port of its own, that it may kill.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            port: free_port(),
            child: None,
        };
        r.start_again().await;
        r
    }

    async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required (tests/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn shop_on_redis(sink: &MailSink, store: &Upstream, redis_port: u16) -> String {
    config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
{}sessions: {{ store: redis, url: \"redis://127.0.0.1:{redis_port}\", key_prefix: \"f{}:\", timeout: 300ms }}
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: account, hosts: [shop.test], path_prefix: /account, upstream: store, kind: web, access: required }}
  - {{ name: api, hosts: [shop.test], path_prefix: /api, upstream: store, kind: api, access: required }}
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web }}
",
        sink.accounts_config("https://shop.test:{https}", ""),
        hex::encode(rand::random::<[u8; 4]>()),
        store.addr
    ))
}

async fn readyz(gw: &Gateway) -> (u16, serde_json::Value) {
    let r = get(gw.addr("admin"), "/readyz").await.unwrap();
    (r.status, r.json())
}

/// Waits (bounded) until `/readyz` says the sessions dependency is `want`.
async fn wait_sessions(gw: &Gateway, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (_, body) = readyz(gw).await;
        if body["dependencies"]["sessions"]["status"] == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "sessions not {want} in {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_down_is_a_bounded_503_never_a_sign_out_and_back_within_seconds() {
    let mut redis = PrivateRedis::start().await;
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let gw = Gateway::start(&shop_on_redis(&sink, &store, redis.port), &[]).await;
    let mut ada = Visitor::new(gw.dev_client());
    assert_eq!(ada.register("ada@example.test", PASSWORD).await.0, 303);
    assert_eq!(ada.get("/account/orders").await.status, 200);
    wait_sessions(&gw, "up", Duration::from_secs(5)).await;

    redis.kill();
    let c = gw.dev_client();
    // A session this node has not cached: 503 with Retry-After, quickly;
    // never a redirect to sign-in, a 401, or a hang.
    let stranger = "__Host-omnigate=a-session-this-node-never-saw";
    for (path, kind) in [
        ("/account/orders", "page"),
        ("/api/me", "api"),
        ("/_account", "page"),
    ] {
        let t = Instant::now();
        let r = c.get_with_cookie("shop.test", path, Some(stranger)).await;
        let took = t.elapsed();
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("5"), "{path}");
        assert!(took < Duration::from_secs(3), "{path} took {took:?}");
        if kind == "api" {
            assert_eq!(
                r.json()["type"],
                "urn:omnigate:problem:identity-unavailable"
            );
        }
    }
    // Password sign-in: a bounded 503, not a hang and not a signed-in browser.
    let mut bo = Visitor::new(gw.dev_client());
    let t = Instant::now();
    let (status, page) = bo.sign_in("ada@example.test", PASSWORD).await;
    assert_eq!(status, 503, "{page}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        !bo.cookies.contains_key("__Host-omnigate"),
        "no session was handed out"
    );
    // Public pages keep serving.
    assert_eq!(c.get("shop.test", "/").await.status, 200);
    // Readiness and the metric say which dependency is down.
    let noticed = wait_sessions(&gw, "down", Duration::from_secs(3)).await;
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 200, "degraded is ready by default: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["customers"]["status"], "up");
    assert_eq!(
        gw.metric("omnigate_dependency_up{dependency=\"sessions\"}")
            .await,
        Some(0.0)
    );

    // Back: sign-in works again within 5 s, without a restart.
    redis.start_again().await;
    let back = Instant::now();
    loop {
        let mut again = Visitor::new(gw.dev_client());
        let (status, _) = again.sign_in("ada@example.test", PASSWORD).await;
        if status == 303 && again.get("/account/orders").await.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not back 5 s after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = back.elapsed();
    wait_sessions(&gw, "up", Duration::from_secs(3)).await;
    assert_eq!(readyz(&gw).await.1["status"], "ready");
    eprintln!("redis loss noticed by readiness in {noticed:?}; sign-in back {recovered:?} after Redis returned");
}

#[tokio::test]
async fn a_waiting_room_on_a_lost_redis_keeps_visitors_inside_and_turns_newcomers_away_briefly() {
    let mut redis = PrivateRedis::start().await;
    let store = Upstream::echo("store").await;
    let cfg = config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
sessions: {{ store: redis, url: \"redis://127.0.0.1:{}\", key_prefix: \"r{}:\", timeout: 300ms }}
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: sale, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, waiting_room: {{ active_users: 100, new_per_minute: 600, session_duration: 10m }} }}
  - {{ name: sale-api, hosts: [api.shop.test], path_prefix: /, upstream: store, kind: api, waiting_room: {{ active_users: 100, new_per_minute: 600, session_duration: 10m }} }}
",
        redis.port,
        hex::encode(rand::random::<[u8; 4]>()),
        store.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = gw.dev_client();
    let first = c.get("shop.test", "/sale").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let stay = first.header("set-cookie").expect("a stay cookie");
    let stay = stay.split(';').next().unwrap().to_string();

    redis.kill();
    // Inside: the signed stay still lets the visitor through.
    let r = c
        .get_with_cookie("shop.test", "/sale/shoes", Some(&stay))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A newcomer: a quick 503 that says to come back, as a page and as JSON.
    for (host, kind) in [("shop.test", "page"), ("api.shop.test", "api")] {
        let t = Instant::now();
        let r = c.get(host, "/sale").await;
        let took = t.elapsed();
        assert_eq!(r.status, 503, "{host}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("5"), "{host}");
        assert!(took < Duration::from_secs(3), "{host} took {took:?}");
        assert!(
            r.header("set-cookie").is_none(),
            "{host}: no stay handed out"
        );
        if kind == "api" {
            assert_eq!(r.json()["type"], "urn:omnigate:problem:over-capacity");
        } else {
            assert!(r.text().contains("Very busy right now"), "{}", r.text());
        }
    }

    // Back: newcomers are let in again without a restart.
    redis.start_again().await;
    let back = Instant::now();
    loop {
        let r = c.get("shop.test", "/sale").await;
        if r.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "newcomers not let in 5 s after Redis returned: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn degraded_can_mean_not_ready() {
    let mut redis = PrivateRedis::start().await;
    let sink = MailSink::start().await;
    let store = Upstream::echo("store").await;
    let cfg = shop_on_redis(&sink, &store, redis.port).replace(
        "  token: test-admin-token",
        "  ready_when_degraded: false\n  token: test-admin-token",
    );
    let gw = Gateway::start(&cfg, &[]).await;
    redis.kill();
    wait_sessions(&gw, "down", Duration::from_secs(3)).await;
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
}

#[tokio::test]
async fn nodes_started_together_on_a_fresh_schema_all_come_up() {
    let store = Upstream::echo("store").await;
    for _ in 0..3 {
        let cfg = config_with(&format!(
            "{HTTP_LISTENER}customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:5432/test\", schema: race_{} }}
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: home, path_prefix: /, upstream: store }}
",
            hex::encode(rand::random::<[u8; 6]>()),
            store.addr
        ));
        let (a, b, c) = tokio::join!(
            Gateway::start(&cfg, &[]),
            Gateway::start(&cfg, &[]),
            Gateway::start(&cfg, &[])
        );
        for gw in [&a, &b, &c] {
            assert_eq!(
                Client::plain(gw.addr("http"))
                    .get("shop.test", "/")
                    .await
                    .status,
                200
            );
        }
    }
}

#[tokio::test]
async fn a_provider_down_at_the_callback_is_a_503_never_blamed_on_the_customer() {
    let (ports, mut idp) = ports_and_idp().await;
    let store = Upstream::echo("store").await;
    let cfg = login_config(
        &idp,
        "",
        "",
        &format!(
            "abuse: {{ free_failures: 1 }}
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: home, hosts: [shop.test], path_prefix: /, upstream: store, kind: web, access: required }}
",
            store.addr
        ),
    );
    let gw = Gateway::start_on(ports, &cfg, &[]).await;
    let c = gw.dev_client();
    for i in 0..4 {
        let r = c.get("shop.test", "/_auth/login/idp").await;
        assert_eq!(r.status, 303, "{}", r.text());
        let to = url::Url::parse(r.header("location").unwrap()).unwrap();
        let state = to
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        if i == 0 {
            idp.stop().await;
        }
        let cookie = format!("__Host-omnigate-login={state}");
        let r = c
            .get_with_cookie(
                "shop.test",
                &format!("/_auth/callback/idp?code=abc&state={}", url_encode(&state)),
                Some(&cookie),
            )
            .await;
        assert_eq!(r.status, 503, "attempt {i}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("5"));
        assert!(r.text().contains("could not be reached"), "{}", r.text());
    }
    assert_eq!(
        gw.metric("omnigate_logins_total{provider=\"idp\",result=\"provider_down\"}")
            .await,
        Some(4.0)
    );
    assert_eq!(
        gw.metric("omnigate_logins_total{provider=\"idp\",result=\"refused\"}")
            .await,
        Some(0.0),
        "exported from the start, and never counted here"
    );
}

/// A PostgreSQL cluster of this test's own (initdb refuses root, so it runs
/// as the `postgres` user), on a port of its own, that it may kill.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        "postgres",
        "--regid",
        "postgres",
        "--init-groups",
        program,
    ]);
    c
}

fn pg_bin(name: &str) -> String {
    let versions =
        std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed (tests/run)");
    let v = versions
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .max()
        .expect("a PostgreSQL version");
    v.join("bin").join(name).display().to_string()
}

impl PrivatePostgres {
    async fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        let ok = as_postgres(&pg_bin("initdb"))
            .args([
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(ok.success(), "initdb failed");
        let mut pg = PrivatePostgres {
            dir,
            port: free_port(),
            child: None,
        };
        pg.start_again().await;
        pg
    }

    async fn start_again(&mut self) {
        let child = as_postgres(&pg_bin("postgres"))
            .args(["-D", &self.dir.path().join("data").display().to_string()])
            .args([
                "-p",
                &self.port.to_string(),
                "-k",
                &self.dir.path().display().to_string(),
            ])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private PostgreSQL did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The backends of a killed postmaster end when they notice; wait for the port.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn postgres_down_is_a_bounded_503_and_back_within_seconds() {
    let mut pg = PrivatePostgres::start().await;
    let idp = Idp::start().await;
    let api = Upstream::echo("api").await;
    let cfg = bearer_me_config(
        &idp,
        &api,
        &format!(
            "customers: {{ store: postgres, url: \"postgres://postgres@127.0.0.1:{}/postgres\", schema: down, timeout: 1s }}\n",
            pg.port
        ),
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    assert_eq!(get_me(&c, &idp, "ann").await.status, 200);

    pg.kill();
    // A caller whose token this node has not seen needs the directory: 503.
    for user in ["bea", "cid"] {
        let t = Instant::now();
        let r = get_me(&c, &idp, user).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("5"));
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    }
    let start = Instant::now();
    loop {
        let (_, body) = readyz(&gw).await;
        if body["dependencies"]["customers"]["status"] == "down" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    pg.start_again().await;
    let back = Instant::now();
    while get_me(&c, &idp, "dee").await.status != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not back 5 s after PostgreSQL returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "directory back {:?} after PostgreSQL returned",
        back.elapsed()
    );
}
