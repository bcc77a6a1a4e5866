//! Clean error responses: HTML pages on web routes, problem JSON on api routes.

use std::time::Duration;

use bytes::Bytes;

use crate::support::*;

fn cfg(app: &str, max_body: &str) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  app: {{ addresses: [\"{app}\"], read_timeout: 300ms, connect_timeout: 1s }}
routes:
  - {{ name: api, path_prefix: /api, upstream: app, kind: api, max_body: {max_body} }}
  - {{ name: web, path_prefix: /, upstream: app, kind: web, max_body: {max_body} }}
"
    ))
}

fn assert_web(r: &Resp, status: u16, title: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let body = r.text();
    assert!(body.contains(&format!("<h1>{title}</h1>")), "{body}");
    assert!(
        body.contains(r.header("x-request-id").unwrap()),
        "page shows the reference"
    );
}

fn assert_api(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let j = r.json();
    assert_eq!(j["status"], status);
    assert_eq!(j["type"], format!("urn:omnigate:problem:{code}"));
    assert_eq!(j["request_id"].as_str(), r.header("x-request-id"));
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // Nothing listens on this port.
    let dead = format!("127.0.0.1:{}", free_port());
    let gw = Gateway::start(&cfg(&dead, "1MiB"), &[]).await;
    let c = Client::plain(gw.addr("http"));
    let r = c.get("shop.test", "/page").await;
    assert_web(&r, 502, "Service unavailable");
    assert!(!r.text().contains(&dead), "no internal address in the page");
    assert_api(
        &c.get("shop.test", "/api/x").await,
        502,
        "upstream-unavailable",
    );
    assert_eq!(
        gw.metric("omnigate_requests_total{method=\"GET\",route=\"web\",status_class=\"5xx\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let slow = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        text_response(200, "text/plain", "late".into())
    })
    .await;
    let gw = Gateway::start(&cfg(&slow.addr.to_string(), "1MiB"), &[]).await;
    let c = Client::plain(gw.addr("http"));
    assert_web(
        &c.get("shop.test", "/").await,
        504,
        "Service did not answer in time",
    );
    assert_api(&c.get("shop.test", "/api/x").await, 504, "upstream-timeout");
}

#[tokio::test]
async fn oversized_bodies_are_413_declared_or_streamed() {
    let up = Upstream::echo("app").await;
    let gw = Gateway::start(&cfg(&up.addr.to_string(), "1KiB"), &[]).await;
    let c = Client::plain(gw.addr("http"));
    let big = Bytes::from(vec![b'x'; 4096]);
    // Content-Length over the limit: refused before anything reaches the upstream.
    let r = c
        .send(request("POST", "shop.test", "/form", &[], big.clone()))
        .await
        .unwrap();
    assert_web(&r, 413, "Request too large");
    let r = c
        .send(request("POST", "shop.test", "/api/upload", &[], big))
        .await
        .unwrap();
    assert_api(&r, 413, "body-too-large");
    assert!(r.json()["detail"].as_str().unwrap().contains("1024 bytes"));

    // Chunked body without a length: counted while streaming.
    let stream =
        futures_util::stream::iter((0..8).map(|_| {
            Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![b'y'; 512])))
        }));
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/api/upload")
        .header("host", "shop.test")
        .body(http_body_util::BodyExt::boxed(
            http_body_util::StreamBody::new(stream),
        ))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_api(&r, 413, "body-too-large");

    // Within the limit passes.
    let r = c
        .send(request(
            "POST",
            "shop.test",
            "/api/ok",
            &[],
            Bytes::from(vec![b'z'; 1000]),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn unknown_route_is_404_in_the_format_the_client_reads() {
    let up = Upstream::echo("app").await;
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n  app: {{ addresses: [\"{}\"] }}\nroutes:\n  - {{ name: only, hosts: [shop.test], upstream: app }}\n",
        up.addr
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let c = Client::plain(gw.addr("http"));
    let r = c
        .send(request(
            "GET",
            "other.test",
            "/",
            &[("accept", "text/html")],
            Bytes::new(),
        ))
        .await
        .unwrap();
    assert_web(&r, 404, "Page not found");
    let r = c.get("other.test", "/").await;
    assert_api(&r, 404, "no-route");
    // HEAD of a gateway page: no body, and the length the GET's body has.
    let path = "/.well-known/omnigate/jwks.json";
    let full = c.get("shop.test", path).await;
    let head = c
        .send(request("HEAD", "shop.test", path, &[], Bytes::new()))
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(!full.body.is_empty());
    assert_eq!(
        head.headers["content-length"],
        full.body.len().to_string().as_str()
    );
}
