//! Pages a customer can see, in real headless Chromium: error pages and the
//! demo upstream pages, with a screenshot of each.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn error_and_demo_pages_render_in_a_browser() {
    let (store, crm, api) = (free_port(), free_port(), free_port());
    let dead = free_port();
    let cfg = config_with(&format!(
        "{HTTP_LISTENER}upstreams:
  store: {{ addresses: [\"127.0.0.1:{store}\"] }}
  down: {{ addresses: [\"127.0.0.1:{dead}\"] }}
routes:
  - {{ name: down, hosts: [shop.test], path_prefix: /checkout, upstream: down, kind: web }}
  - {{ name: store, hosts: [shop.test], path_prefix: /, upstream: store, kind: web }}
demo: {{ enabled: true, store: \"127.0.0.1:{store}\", crm: \"127.0.0.1:{crm}\", api: \"127.0.0.1:{api}\" }}
"
    ));
    let gw = Gateway::start(&cfg, &[]).await;
    let base = format!("http://shop.test:{}", gw.port("http"));
    let seen = browse(
        "error_and_demo_pages",
        Some("MAP *.test 127.0.0.1"),
        json!([
            {"goto": format!("{base}/products"), "screenshot": "demo-store"},
            {"goto": format!("{base}/checkout/payment"), "screenshot": "502-bad-gateway"},
            {"goto": format!("http://unknown.test:{}/", gw.port("http")), "screenshot": "404-no-route"},
        ]),
    )
    .await;

    let store_page = &seen[0];
    assert_eq!(store_page["status"], 200);
    assert_eq!(store_page["headings"][0], "Demo Store");
    assert!(store_page["text"]
        .as_str()
        .unwrap()
        .contains("x-forwarded-host\tshop.test"));

    let bad_gateway = &seen[1];
    assert_eq!(bad_gateway["status"], 502);
    assert_eq!(bad_gateway["lang"], "en");
    assert_eq!(bad_gateway["headings"], json!(["Service unavailable"]));
    assert!(bad_gateway["text"]
        .as_str()
        .unwrap()
        .contains("Please try again shortly"));
    assert!(!bad_gateway["text"]
        .as_str()
        .unwrap()
        .contains(&dead.to_string()));

    let not_found = &seen[2];
    assert_eq!(not_found["status"], 404);
    assert_eq!(not_found["headings"], json!(["Page not found"]));
}
