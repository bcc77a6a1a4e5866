//! Worker threads: with several workers every one of them accepts on every
//! listener and serves its connections to the end (shards); with
//! `work_stealing: true` Pingora's shared pool does. Both must proxy plain and
//! TLS traffic alike.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A gateway with a plain and a TLS (h2) listener in front of an echo
/// backend, `server` replacing the one-thread server settings. The CA and the
/// backend are returned so they live as long as the test.
async fn start_workers(server: &str) -> (TestCa, Upstream, Gateway) {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["shop.test"]);
    let up = Upstream::echo("app").await;
    let config = config_with(&format!(
        "listeners:
  - name: http
    address: 127.0.0.1:{{http}}
  - name: https
    address: 127.0.0.1:{{https}}
    tls:
      http2: true
      certificates:
        - {{ cert: shop.pem, key: shop.key }}
upstreams:
  app: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: app, path_prefix: /, upstream: app, kind: api }}
",
        up.addr
    ))
    .replace("  threads: 1\n", server);
    let gw = Gateway::start(&config, &[("shop.pem", &cert), ("shop.key", &key)]).await;
    (ca, up, gw)
}

/// Sends `n` requests at once, each on its own connection, and checks that
/// each reached the backend with the client's address.
async fn many_connections(client: &Client, n: usize) {
    let requests = (0..n).map(|i| {
        let client = client.clone();
        async move { (i, client.get("shop.test", &format!("/n/{i}")).await) }
    });
    for (i, r) in futures_util::future::join_all(requests).await {
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.json()["path"], format!("/n/{i}"));
        assert_eq!(r.json()["headers"]["x-forwarded-for"], "127.0.0.1");
    }
}

/// Connections accepted on the `http` listener, summed over both workers
/// (each must export its series).
async fn accepted_on_http(gw: &Gateway) -> f64 {
    let mut accepted = 0.0;
    for worker in ["0", "1"] {
        let series =
            format!("omnigate_connections_accepted_total{{listener=\"http\",worker=\"{worker}\"}}");
        accepted += gw
            .metric(&series)
            .await
            .unwrap_or_else(|| panic!("{series} is not exported"));
    }
    accepted
}

#[tokio::test]
async fn every_worker_serves_every_listener() {
    let (ca, _up, gw) = start_workers("  threads: 2\n").await;

    // Each worker reports its own count; together they saw every connection.
    // The readiness probe's own connection may still be on its way to a
    // worker: start counting once the count stands still.
    let mut before = accepted_on_http(&gw).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = accepted_on_http(&gw).await;
        if now == before {
            break;
        }
        before = now;
    }
    many_connections(&Client::plain(gw.addr("http")), 40).await;
    assert_eq!(accepted_on_http(&gw).await - before, 40.0);
    many_connections(
        &Client::tls(gw.addr("https"), &ca.cert_pem, "shop.test", true),
        10,
    )
    .await;

    // Plain HTTP sent to the TLS port fails the handshake and is counted.
    let failures = "omnigate_tls_handshake_failures_total{listener=\"https\"}";
    let before = gw.metric(failures).await.unwrap_or(0.0);
    let mut s = tokio::net::TcpStream::connect(gw.addr("https"))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"),
        "a plain request on the TLS port was answered"
    );
    gw.wait_metric(failures, before + 1.0, Duration::from_secs(5))
        .await;

    // The gateway still serves after that, on both listeners.
    many_connections(&Client::plain(gw.addr("http")), 4).await;
    many_connections(
        &Client::tls(gw.addr("https"), &ca.cert_pem, "shop.test", false),
        4,
    )
    .await;
}

#[tokio::test]
async fn work_stealing_pool_serves_plain_and_tls() {
    let (ca, _up, gw) = start_workers("  threads: 2\n  work_stealing: true\n").await;
    many_connections(&Client::plain(gw.addr("http")), 20).await;
    many_connections(
        &Client::tls(gw.addr("https"), &ca.cert_pem, "shop.test", true),
        5,
    )
    .await;
}

#[tokio::test]
async fn a_taken_port_is_a_clear_start_error() {
    let up = Upstream::echo("app").await;
    let config = "server:\n  threads: 2\n  state_dir: {dir}/state\nadmin:\n  address: 127.0.0.1:{admin}\n\
                  listeners:\n  - name: http\n    address: 127.0.0.1:{http}\n\
                  upstreams:\n  app: { addresses: [\"UP\"] }\nroutes:\n  - { name: app, path_prefix: /, upstream: app }\n"
        .replace("UP", &up.addr.to_string());
    let first = Gateway::start(&config, &[]).await;

    // A second gateway (own admin port and state) asks for the same customer
    // port: the workers' shared-port sockets must not let it in.
    let dir = tempfile::tempdir().expect("tempdir");
    let second = config
        .replace("{http}", &first.port("http").to_string())
        .replace("{admin}", &reserve_ports()["admin"].to_string())
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, second).expect("write config");
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_omnigate"))
            .args(["run", "--config"])
            .arg(&path)
            .output(),
    )
    .await
    .expect("the second gateway exits")
    .expect("run");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second gateway started:\n{text}");
    assert!(
        text.contains(&format!(
            "listener `http` on 127.0.0.1:{}",
            first.port("http")
        )) && text.contains("in use"),
        "{text}"
    );

    // The first one still serves.
    let r = Client::plain(first.addr("http"))
        .get("shop.test", "/")
        .await;
    assert_eq!(r.status, 200);
}
