//! TLS termination: several certificates chosen by SNI, HTTP/2 by ALPN, and
//! certificates replaced by a reload without a restart.

use crate::support::*;

fn tls_config(up: &Upstream, certs: &str) -> String {
    config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls:
      http2: true
      certificates:
{certs}
upstreams:
  app: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: app, path_prefix: /, upstream: app }}
",
        up.addr
    ))
}

const TWO_CERTS: &str = "        - { cert: shop.pem, key: shop.key }
        - { cert: brand.pem, key: brand.key, server_names: [\"loyalty.brand.test\", \"*.brand.test\"] }";

#[tokio::test]
async fn sni_chooses_the_certificate_and_h2_is_negotiated() {
    let ca = TestCa::new();
    let (shop_c, shop_k) = ca.leaf(&["shop.test"]);
    let (brand_c, brand_k) = ca.leaf(&["loyalty.brand.test", "*.brand.test"]);
    let up = Upstream::echo("app").await;
    let gw = Gateway::start(
        &tls_config(&up, TWO_CERTS),
        &[
            ("shop.pem", &shop_c),
            ("shop.key", &shop_k),
            ("brand.pem", &brand_c),
            ("brand.key", &brand_k),
        ],
    )
    .await;

    // Verification against the test CA and the requested name succeeds only
    // if the gateway presented the certificate for that name.
    for (sni, expect_cert) in [
        ("shop.test", &shop_c),
        ("loyalty.brand.test", &brand_c),
        ("app.brand.test", &brand_c),
    ] {
        let c = Client::tls(gw.addr("https"), &ca.cert_pem, sni, true);
        let s = c
            .send_streaming(request("GET", sni, "/", &[], bytes::Bytes::new()))
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(s.alpn.as_deref(), Some("h2"), "{sni}");
        assert_eq!(s.response.version(), http::Version::HTTP_2);
        assert_eq!(s.response.status(), 200);
        assert_eq!(
            s.server_cert.as_deref(),
            Some(der_of(expect_cert).as_slice()),
            "{sni}"
        );
    }

    // HTTP/1.1 clients still work on the same listener.
    let c = Client::tls(gw.addr("https"), &ca.cert_pem, "shop.test", false);
    let r = c.get("shop.test", "/x").await;
    assert_eq!(r.version, http::Version::HTTP_11);
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");

    // A name no certificate covers gets the default one, which fails verification.
    let c = Client::tls(gw.addr("https"), &ca.cert_pem, "other.test", false);
    let err = c
        .send(request("GET", "other.test", "/", &[], bytes::Bytes::new()))
        .await
        .unwrap_err();
    assert!(err.contains("tls"), "{err}");
}

#[tokio::test]
async fn reload_replaces_certificates_without_restart() {
    let ca = TestCa::new();
    let (old_c, old_k) = ca.leaf(&["shop.test"]);
    let (new_c, new_k) = ca.leaf(&["shop.test"]);
    let up = Upstream::echo("app").await;
    let certs = "        - { cert: shop.pem, key: shop.key }";
    let gw = Gateway::start(
        &tls_config(&up, certs),
        &[("shop.pem", &old_c), ("shop.key", &old_k)],
    )
    .await;
    assert_eq!(served_cert(&gw, &ca, "shop.test").await, der_of(&old_c));

    write(gw.dir.path(), "shop.pem", &new_c);
    write(gw.dir.path(), "shop.key", &new_k);
    gw.signal("HUP");
    gw.wait_metric(
        "omnigate_config_reloads_total{result=\"success\"}",
        1.0,
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(served_cert(&gw, &ca, "shop.test").await, der_of(&new_c));
}

/// The leaf certificate the gateway presents for `sni`, on a fresh client
/// (a resumed TLS session would report the certificate of the first one).
async fn served_cert(gw: &Gateway, ca: &TestCa, sni: &str) -> Vec<u8> {
    let c = Client::tls(gw.addr("https"), &ca.cert_pem, sni, false);
    let s = c
        .send_streaming(request("GET", sni, "/", &[], bytes::Bytes::new()))
        .await
        .unwrap();
    s.server_cert.expect("server certificate")
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}
