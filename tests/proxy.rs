//! Routing, forwarding headers, WebSocket, streaming, redirect, shutdown.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;

use crate::support::*;

fn two_apps(store: &Upstream, api: &Upstream) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  store: {{ addresses: [\"{}\"] }}
  api: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: api, path_prefix: /api, upstream: api, kind: api, strip_prefix: true }}
  - {{ name: crm-host, hosts: [crm.test], path_prefix: /, upstream: api, kind: web }}
  - {{ name: store, path_prefix: /, upstream: store, kind: web, methods: [GET, POST] }}
",
        store.addr, api.addr
    ))
}

#[tokio::test]
async fn routes_by_host_and_path_and_strips_prefix() {
    let store = Upstream::echo("store").await;
    let api = Upstream::echo("api").await;
    let gw = Gateway::start(&two_apps(&store, &api), &[]).await;
    let c = Client::plain(gw.addr("http"));

    let r = c.get("shop.test", "/cart?x=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["upstream"], "store");
    assert_eq!(r.json()["path"], "/cart?x=1");

    let r = c.get("shop.test", "/api/orders/7?full=1").await;
    assert_eq!(r.json()["upstream"], "api");
    assert_eq!(
        r.json()["path"],
        "/orders/7?full=1",
        "prefix stripped, query kept"
    );

    // /apix is not under /api
    assert_eq!(
        c.get("shop.test", "/apix").await.json()["upstream"],
        "store"
    );
    // host route wins over the catch-all, whatever the path
    let r = c.get("CRM.test:80", "/anything").await;
    assert_eq!(r.json()["upstream"], "api");
    assert_eq!(r.json()["path"], "/anything");

    // Method outside the route's list: 405 with Allow.
    let r = c
        .send(request("DELETE", "shop.test", "/cart", &[], Bytes::new()))
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
}

#[tokio::test]
async fn forwarding_headers_are_set_and_spoofs_replaced() {
    let store = Upstream::echo("store").await;
    let api = Upstream::echo("api").await;
    let gw = Gateway::start(&two_apps(&store, &api), &[]).await;
    let c = Client::plain(gw.addr("http"));
    let req = request(
        "GET",
        "shop.test",
        "/",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
            ("x-request-id", "spoofed-id"),
            ("forwarded", "for=6.6.6.6"),
        ],
        Bytes::new(),
    );
    let r = c.send(req).await.unwrap();
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.test");
    assert!(h.get("forwarded").is_none());
    let rid = h["x-request-id"].as_str().unwrap();
    assert_ne!(rid, "spoofed-id");
    assert_eq!(rid.len(), 36, "a UUID: {rid}");
    // The client sees the same id the upstream got.
    assert_eq!(r.header("x-request-id"), Some(rid));
}

#[tokio::test]
async fn trusted_proxy_keeps_request_id_and_chain() {
    let store = Upstream::echo("store").await;
    let api = Upstream::echo("api").await;
    let cfg = format!(
        "{}trusted_proxies: [127.0.0.1/32]\n",
        two_apps(&store, &api)
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let req = request(
        "GET",
        "shop.test",
        "/",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-request-id", "edge-abc-1"),
        ],
        Bytes::new(),
    );
    let r = Client::plain(gw.addr("http")).send(req).await.unwrap();
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-request-id"], "edge-abc-1");
}

#[tokio::test]
async fn dot_segments_and_bad_hosts_are_refused() {
    let store = Upstream::echo("store").await;
    let api = Upstream::echo("api").await;
    let gw = Gateway::start(&two_apps(&store, &api), &[]).await;
    let c = Client::plain(gw.addr("http"));
    let r = c.get("shop.test", "/api/%2e%2e/admin").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "urn:omnigate:problem:bad-request");
    let r = c.get("bad host!", "/").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    // A real WebSocket echo server as upstream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n  ws: {{ addresses: [\"{ws_addr}\"] }}\nroutes:\n  - {{ name: ws, path_prefix: /, upstream: ws }}\n"
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let url = format!("ws://127.0.0.1:{}/socket", gw.port("http"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket through gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
            .await
            .unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

/// Bodies stream both ways: the upstream holds back the rest of its response
/// until the client has the first chunk, and the client holds back the rest of
/// its upload until the upstream has the first chunk. A buffering proxy
/// deadlocks here; a streaming one completes.
#[tokio::test]
async fn bodies_stream_without_buffering() {
    let (client_got_first, wait_client) = tokio::sync::watch::channel(false);
    let (upstream_got_first, mut wait_upstream) = tokio::sync::watch::channel(false);
    let wait_client = std::sync::Arc::new(tokio::sync::Mutex::new(wait_client));
    let upstream_got_first = std::sync::Arc::new(upstream_got_first);
    let up = Upstream::start(move |req| {
        let wait_client = wait_client.clone();
        let upstream_got_first = upstream_got_first.clone();
        async move {
            if req.uri().path() == "/download" {
                let (tx, rx) = tokio::sync::mpsc::channel::<
                    Result<hyper::body::Frame<Bytes>, std::io::Error>,
                >(4);
                tokio::spawn(async move {
                    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
                    let _ = tx.send(Ok(hyper::body::Frame::data(chunk.clone()))).await;
                    let mut w = wait_client.lock().await;
                    let _ = w.wait_for(|v| *v).await;
                    for _ in 0..255 {
                        let _ = tx.send(Ok(hyper::body::Frame::data(chunk.clone()))).await;
                    }
                });
                let body = BodyExt::boxed(http_body_util::StreamBody::new(tokio_stream_from(rx)));
                return hyper::Response::new(body);
            }
            // upload: count bytes, signal after the first chunk
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data().unwrap_or_default()) {
                    if total == 0 && !data.is_empty() {
                        let _ = upstream_got_first.send(true);
                    }
                    total += data.len();
                }
            }
            text_response(200, "text/plain", total.to_string())
        }
    })
    .await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n  up: {{ addresses: [\"{}\"] }}\nroutes:\n  - {{ name: up, path_prefix: /, upstream: up, max_body: 64MiB }}\n",
        up.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));

    // Download: 16 MiB, the first chunk must arrive before the rest exists.
    let s = c
        .send_streaming(request("GET", "shop.test", "/download", &[], Bytes::new()))
        .await
        .unwrap();
    let mut body = s.response.into_body();
    let mut total = 0usize;
    let within = Duration::from_secs(20);
    tokio::time::timeout(within, async {
        while let Some(f) = body.frame().await {
            let data = f.unwrap().into_data().unwrap_or_default();
            if total == 0 && !data.is_empty() {
                client_got_first.send(true).unwrap();
            }
            total += data.len();
        }
    })
    .await
    .expect("download stalled: the proxy buffered the response");
    assert_eq!(total, 256 * 64 * 1024);

    // Upload: 16 MiB in chunks, the rest sent only once the upstream saw the first.
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
        let _ = tx.send(Ok(hyper::body::Frame::data(chunk.clone()))).await;
        let _ = wait_upstream.wait_for(|v| *v).await;
        for _ in 0..255 {
            let _ = tx.send(Ok(hyper::body::Frame::data(chunk.clone()))).await;
        }
    });
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "shop.test")
        .body(BodyExt::boxed(http_body_util::StreamBody::new(
            tokio_stream_from(rx),
        )))
        .unwrap();
    let r = tokio::time::timeout(within, c.send(req))
        .await
        .expect("upload stalled: the proxy buffered the request")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), (256 * 64 * 1024).to_string());
}

/// An mpsc receiver as a body stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn http_redirects_to_https_and_https_sends_hsts() {
    let store = Upstream::echo("store").await;
    let cfg = config_with(&format!(
        "listeners:
  - name: http
    address: 127.0.0.1:{{http}}
    redirect_to_https: https
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
    hsts: {{ max_age: 365d, include_subdomains: true }}
upstreams:
  store: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: store, path_prefix: /, upstream: store }}
",
        store.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let r = Client::plain(gw.addr("http"))
        .get("shop.test", "/cart?x=1")
        .await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://shop.test:{}/cart?x=1", gw.port("https"))
    );
    // The generated development certificate is used; trust it for this check.
    let c = gw.dev_client();
    let r = c.get("localhost", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let (arrived, mut arrival) = tokio::sync::mpsc::unbounded_channel();
    let slow = Upstream::start(move |_req| {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send(());
            tokio::time::sleep(Duration::from_millis(800)).await;
            text_response(200, "text/plain", "done".into())
        }
    })
    .await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n  slow: {{ addresses: [\"{}\"] }}\nroutes:\n  - {{ name: slow, path_prefix: /, upstream: slow }}\n",
        slow.addr
    ));
    let mut gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    let pending = tokio::spawn(async move { c.get("shop.test", "/").await });
    // In flight: the backend has it (however slowly the machine runs).
    tokio::time::timeout(Duration::from_secs(10), arrival.recv())
        .await
        .expect("the request reaches the backend");
    gw.signal("TERM");
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "done");
    assert!(
        gw.wait_exit(Duration::from_secs(15)).await,
        "non-zero exit:\n{}",
        gw.logs()
    );
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (up, accepted) = Upstream::counting("app").await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n  app: {{ addresses: [\"{}\"] }}\nroutes:\n  - {{ name: app, path_prefix: /, upstream: app }}\n",
        up.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    // Sequential requests, each on a new client connection.
    for _ in 0..20 {
        assert_eq!(c.get("shop.test", "/").await.status, 200);
    }
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        n <= 2,
        "20 sequential requests opened {n} upstream connections"
    );
}

#[tokio::test]
async fn upstream_tls_is_verified_against_the_configured_ca() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["backend.internal"]);
    let up = Upstream::start_tls(&cert, &key, |req| async move {
        echo_response("tls-backend", &req)
    })
    .await;
    let other_ca = TestCa::new();
    let cfg = |ca_file: &str| {
        config_with(&format!(
            "{HTTP_LISTENER}upstreams:
  secure: {{ addresses: [\"{}\"], tls: {{ sni: backend.internal, ca: {ca_file} }} }}
routes:
  - {{ name: secure, path_prefix: /, upstream: secure, kind: api }}
",
            up.addr
        ))
    };
    let gw = Gateway::start(&cfg("ca.pem"), &[("ca.pem", &ca.cert_pem)]).await;
    let r = Client::plain(gw.addr("http")).get("shop.test", "/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["upstream"], "tls-backend");

    // A backend whose certificate the configured CA did not sign is refused.
    let gw = Gateway::start(
        &cfg("other-ca.pem"),
        &[("other-ca.pem", &other_ca.cert_pem)],
    )
    .await;
    let r = Client::plain(gw.addr("http")).get("shop.test", "/x").await;
    assert_eq!(r.status, 502, "{}", r.text());
    let tls_errors = gw
        .metric("omnigate_upstream_errors_total{kind=\"tls\",upstream=\"secure\"}")
        .await;
    assert!(
        tls_errors >= Some(1.0),
        "TLS failures are counted as such: {tls_errors:?}"
    );
}

#[tokio::test]
async fn demo_upstreams_show_what_the_gateway_forwards() {
    let (store, crm, api) = (free_port(), free_port(), free_port());
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  store: {{ addresses: [\"127.0.0.1:{store}\"] }}
  api: {{ addresses: [\"127.0.0.1:{api}\"] }}
routes:
  - {{ name: api, path_prefix: /api, upstream: api, kind: api, strip_prefix: true }}
  - {{ name: store, path_prefix: /, upstream: store }}
demo: {{ enabled: true, store: \"127.0.0.1:{store}\", crm: \"127.0.0.1:{crm}\", api: \"127.0.0.1:{api}\" }}
"
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    let page = c.get("shop.test", "/products").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("<h1>Demo Store</h1>"), "{html}");
    assert!(
        html.contains(
            "<tr class=\"gw\"><th scope=\"row\"><code>x-forwarded-for</code></th><td><code>127.0.0.1</code></td><td class=\"from\">Omnigate</td></tr>"
        ),
        "{html}"
    );
    let j = c.get("shop.test", "/api/orders").await.json();
    assert_eq!(j["service"], "demo-api");
    assert_eq!(j["path"], "/orders");
    assert_eq!(j["headers"]["x-forwarded-host"], "shop.test");
}

#[tokio::test]
async fn client_identity_headers_never_reach_a_backend() {
    let store = Upstream::echo("store").await;
    let crm = Upstream::echo("crm").await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  store: {{ addresses: [\"{}\"] }}
  crm:
    addresses: [\"{}\"]
    identity_headers: {{ customer_id: X-Forwarded-User, email: X-Forwarded-Email }}
routes:
  - {{ name: crm, path_prefix: /crm, upstream: crm }}
  - {{ name: store, path_prefix: /, upstream: store }}
",
        store.addr, crm.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    let spoofs = [
        ("x-customer-id", "cust-victim"),
        ("X-Customer-Email", "victim@example.test"),
        ("x-customer-consents", "marketing_email"),
        ("x-omnigate-assertion", "eyJhbGciOiJub25lIn0.e30."),
        ("x-guest-id", "guest-1"),
        ("x-previous-guest-id", "guest-0"),
        ("x-auth-method", "cookie"),
        // mapped by the crm upstream, so stripped everywhere
        ("x-forwarded-user", "admin"),
        ("x-forwarded-email", "admin@example.test"),
    ];
    for path in ["/", "/crm/contacts"] {
        let r = c
            .send(request("GET", "shop.test", path, &spoofs, Bytes::new()))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let headers = r.json()["headers"].as_object().unwrap().clone();
        for (name, _) in spoofs {
            assert!(
                !headers.contains_key(&name.to_ascii_lowercase()),
                "{name} reached the backend on {path}: {headers:?}"
            );
        }
        assert!(
            headers.contains_key("x-forwarded-for"),
            "ordinary forwarding headers remain"
        );
    }
}

#[tokio::test]
async fn guests_get_a_stable_id_that_clients_cannot_choose() {
    let store = Upstream::echo("store").await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n  store: {{ addresses: [\"{}\"] }}\nroutes:\n  - {{ name: shop, path_prefix: /, upstream: store, access: guest }}\n",
        store.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));

    // First visit: a new guest id, set as a __Host- cookie and forwarded.
    let first = c
        .send(request(
            "GET",
            "shop.test",
            "/cart",
            &[("x-guest-id", "gst_chosen_by_client")],
            Bytes::new(),
        ))
        .await
        .unwrap();
    let set = first
        .header("set-cookie")
        .expect("guest cookie")
        .to_string();
    assert!(set.starts_with("__Host-omnigate-guest=gst_"), "{set}");
    for attr in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=2592000",
    ] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    let value = set
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    // The cookie carries the id and its MAC; the backend gets the id.
    let (id, mac) = value.split_once('.').expect("id.mac");
    assert_eq!(mac.len(), 32, "{value}");
    assert_eq!(
        first.json()["headers"]["x-guest-id"],
        id,
        "spoofed header replaced"
    );

    // Next visits with the cookie: the same id, no new cookie, cookie not forwarded.
    let cookie = format!("__Host-omnigate-guest={value}; cart=3");
    for _ in 0..2 {
        let r = c
            .send(request(
                "GET",
                "shop.test",
                "/cart",
                &[("cookie", &cookie)],
                Bytes::new(),
            ))
            .await
            .unwrap();
        assert_eq!(r.json()["headers"]["x-guest-id"], id);
        assert!(r.header("set-cookie").is_none());
        assert_eq!(r.json()["headers"]["cookie"], "cart=3");
    }

    // A forged, malformed or well-formed but never issued guest id (the
    // victim's id, say, with a made-up or another id's MAC) is replaced.
    let victim = "gst_0123456789abcdef0123456789abcdef";
    for forged in [
        "admin".to_string(),
        victim.to_string(),
        format!("{victim}.00000000000000000000000000000000"),
        format!("{victim}.{mac}"),
        format!("{id}.{}", "f".repeat(32)),
    ] {
        let r = c
            .send(request(
                "GET",
                "shop.test",
                "/",
                &[("cookie", &format!("__Host-omnigate-guest={forged}"))],
                Bytes::new(),
            ))
            .await
            .unwrap();
        let replaced = r.json()["headers"]["x-guest-id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            replaced.starts_with("gst_") && replaced.len() == 36,
            "{replaced}"
        );
        assert!(
            replaced != victim && replaced != id,
            "{forged} was accepted"
        );
        assert!(r.header("set-cookie").is_some(), "{forged}");
    }
}
