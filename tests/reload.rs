//! Hot reload: a new config applies to new requests while in-flight ones
//! finish; a bad config is refused and the old one keeps serving.

use std::time::Duration;

use bytes::Bytes;

use crate::support::*;

fn cfg(slow: &Upstream, fresh: Option<&Upstream>) -> String {
    let mut ups = format!(
        "  slow: {{ addresses: [\"{}\"], read_timeout: 10s }}\n",
        slow.addr
    );
    let mut routes = String::from("  - { name: slow, path_prefix: /slow, upstream: slow }\n");
    if let Some(f) = fresh {
        ups.push_str(&format!("  fresh: {{ addresses: [\"{}\"] }}\n", f.addr));
        routes.push_str("  - { name: fresh, path_prefix: /new, upstream: fresh, kind: api }\n");
    }
    config_with(&format!(
        "{HTTP_LISTENER}upstreams:\n{ups}routes:\n{routes}"
    ))
}

async fn admin_reload(gw: &Gateway, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let host = gw.addr("admin").to_string();
    Client::plain(gw.addr("admin"))
        .send(request(
            "POST",
            &host,
            "/admin/reload",
            &headers,
            Bytes::new(),
        ))
        .await
        .unwrap()
}

#[tokio::test]
async fn new_route_applies_while_a_long_request_completes() {
    let slow = Upstream::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        text_response(200, "text/plain", "slow done".into())
    })
    .await;
    let fresh = Upstream::echo("fresh").await;
    let gw = Gateway::start(&cfg(&slow, None), &[]).await;
    let c = Client::plain(gw.addr("http"));
    assert_eq!(c.get("shop.test", "/new").await.status, 404);

    let c2 = c.clone();
    let in_flight = tokio::spawn(async move { c2.get("shop.test", "/slow").await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    gw.rewrite_config(&cfg(&slow, Some(&fresh)));
    let r = admin_reload(&gw, Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["report"]["routes"], 2);
    assert_eq!(r.json()["result"], "applied");

    let r = c.get("shop.test", "/new/thing").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["upstream"], "fresh");

    let slow_resp = in_flight.await.unwrap();
    assert_eq!(slow_resp.status, 200);
    assert_eq!(slow_resp.text(), "slow done");
    assert_eq!(
        gw.metric("omnigate_config_reloads_total{result=\"success\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn bad_config_is_refused_and_the_old_one_kept() {
    let slow = Upstream::echo("slow").await;
    let gw = Gateway::start(&cfg(&slow, None), &[]).await;
    let c = Client::plain(gw.addr("http"));

    // Authentication first: no token, wrong token.
    assert_eq!(admin_reload(&gw, None).await.status, 401);
    assert_eq!(
        admin_reload(&gw, Some("wrong-token-wrong-token"))
            .await
            .status,
        401
    );

    let broken = cfg(&slow, None).replace("upstream: slow", "upstream: nowhere");
    gw.rewrite_config(&broken);
    let r = admin_reload(&gw, Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 422);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("routes[0].upstream: upstream `nowhere` is not defined"),
        "{errors:?}"
    );
    // Still served by the old config.
    assert_eq!(c.get("shop.test", "/slow").await.json()["upstream"], "slow");
    assert_eq!(
        gw.metric("omnigate_config_reloads_total{result=\"failure\"}")
            .await,
        Some(1.0)
    );

    // SIGHUP with the same bad file: refused again, logged, still serving.
    gw.signal("HUP");
    gw.wait_metric(
        "omnigate_config_reloads_total{result=\"failure\"}",
        2.0,
        Duration::from_secs(10),
    )
    .await;
    gw.wait_log("configuration reload refused", Duration::from_secs(5))
        .await;
    assert_eq!(c.get("shop.test", "/slow").await.status, 200);
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let up = Upstream::echo("slow").await;
    let gw = Gateway::start(&cfg(&up, None), &[]).await;
    let admin = gw.addr("admin");
    assert_eq!(get(admin, "/healthz").await.unwrap().json()["status"], "ok");
    let ready = get(admin, "/readyz").await.unwrap();
    assert_eq!(ready.json()["status"], "ready");
    let c = Client::plain(gw.addr("http"));
    for _ in 0..3 {
        c.get("shop.test", "/slow").await;
    }
    // The gauge drops once Pingora finishes the request, just after the client
    // has the last byte; it must come back to 0 (no leak).
    gw.wait_metric(
        "omnigate_requests_in_flight",
        0.0,
        std::time::Duration::from_secs(5),
    )
    .await;
    let m = get(admin, "/metrics").await.unwrap();
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = m.text();
    for needle in [
        "omnigate_requests_total{method=\"GET\",route=\"slow\",status_class=\"2xx\"} 3",
        "omnigate_request_duration_seconds_count{route=\"slow\"} 3",
        "omnigate_requests_in_flight 0",
        &format!(
            "omnigate_upstream_healthy{{address=\"{}\",upstream=\"slow\"}} 1",
            up.addr
        ),
        "omnigate_config_reloads_total{result=\"success\"} 0",
        "# TYPE omnigate_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    // JSON access log line with the fields SREs search by.
    let line = gw
        .wait_log("\"omnigate::access\"", std::time::Duration::from_secs(5))
        .await;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for field in [
        "request_id",
        "route",
        "upstream",
        "status",
        "bytes_out",
        "duration_ms",
    ] {
        assert!(v.get(field).is_some(), "{field} missing in {line}");
    }
    assert_eq!(get(admin, "/nope").await.unwrap().status, 404);
}

#[tokio::test]
async fn open_keepalive_connection_survives_reload_and_sees_new_routes() {
    let slow = Upstream::echo("slow").await;
    let fresh = Upstream::echo("fresh").await;
    let gw = Gateway::start(&cfg(&slow, None), &[]).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr("http"))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let send = |path: &'static str| request("GET", "shop.test", path, &[], Bytes::new());
    let r = sender.send_request(send("/new")).await.unwrap();
    assert_eq!(r.status(), 404);
    http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap();

    gw.rewrite_config(&cfg(&slow, Some(&fresh)));
    gw.signal("HUP");
    gw.wait_metric(
        "omnigate_config_reloads_total{result=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    // Same connection, new configuration.
    let r = sender.send_request(send("/new")).await.unwrap();
    assert_eq!(r.status(), 200);
    http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap();
    assert!(
        !conn.is_finished(),
        "the connection was not closed by the reload"
    );
}

#[tokio::test]
async fn a_reload_says_what_waits_for_a_restart() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(&cfg(&up, None), &[]).await;
    gw.rewrite_config(&format!("{}log: {{ level: debug }}\n", cfg(&up, None)));
    let r = admin_reload(&gw, Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["result"], "partly_applied", "{doc}");
    assert_eq!(
        doc["report"]["restart_required"],
        serde_json::json!(["log"])
    );
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("log keep their running values until a restart"),
        "{doc}"
    );
}
