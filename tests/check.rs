//! `omnigate check`: every error with file:line:column, field, message, hint.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn check(files: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_omnigate"))
        .args(["check", "--config"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        text.replace(&format!("{}/", dir.path().display()), ""),
    )
}

#[test]
fn reports_each_kind_of_error_with_its_location() {
    let config = "\
include: [policies/routes.yaml]
listeners:
  - name: http
    address: 127.0.0.1:notaport
  - name: https
    address: 127.0.0.1:8443
    tls:
      certificates:
        - { cert: missing.pem, key: missing.key }
upstreams:
  app:
    addresses: [127.0.0.1:9000]
    balance: fastest
    health_check: { intervall: 5s }
    read_timeout: soon
";
    let routes = "\
routes:
  - name: a
    upstream: ap
    path_prefix: api
  - name: b
    upstream: app
    max_body: lots
";
    std::fs::create_dir_all(std::env::temp_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    std::fs::write(dir.path().join("policies/routes.yaml"), routes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_omnigate"))
        .args(["check", "--config"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    // Unknown fields stop deserialization of that file first; fix and re-check.
    assert!(
        text.contains("config.yaml:14:21: upstreams.app.health_check.intervall: unknown field `intervall` (hint: did you mean `interval`?)"),
        "{text}"
    );

    std::fs::write(
        dir.path().join("config.yaml"),
        config.replace("intervall", "interval"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_omnigate"))
        .args(["check", "--config"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    for expected in [
        "config.yaml:4:5: listeners[0].address: `127.0.0.1:notaport` is not an IP address with a port (hint: write e.g. `127.0.0.1:8080` or `[::1]:8443`)",
        "config.yaml:9:13: listeners[1].tls.certificates[0].cert: cannot read certificate file missing.pem",
        "config.yaml:13:5: upstreams.app.balance: unknown balancing method `fastest` (hint: use `round_robin` or `least_connections`)",
        "config.yaml:15:5: upstreams.app.read_timeout: `soon` is not a duration (hint: write e.g. `500ms`, `5s`, `2m`)",
        "policies/routes.yaml:3:5: routes[0].upstream: upstream `ap` is not defined (hint: did you mean `app`?)",
        "policies/routes.yaml:4:5: routes[0].path_prefix: `api` does not start with `/` (hint: write `/api`)",
        "policies/routes.yaml:7:5: routes[1].max_body: `lots` is not a size (hint: write e.g. `512KiB`, `10MiB` or a number of bytes)",
        "7 error(s); the configuration was not accepted",
    ] {
        assert!(text.contains(expected), "missing:\n  {expected}\nin:\n{text}");
    }
}

#[test]
fn syntax_errors_and_missing_env_are_located() {
    let (ok, text) = check(&[(
        "config.yaml",
        "listeners:\n  - name: http\n    address: [127.0.0.1\n",
    )]);
    assert!(!ok);
    assert!(
        text.contains("config.yaml:4:1: (document): not valid YAML"),
        "{text}"
    );

    let (ok, text) = check(&[(
        "config.yaml",
        "listeners:\n  - { name: http, address: \"127.0.0.1:8080\" }\nadmin:\n  address: 127.0.0.1:9090\n  token: ${OMNIGATE_TEST_SURELY_UNSET}\n",
    )]);
    assert!(!ok);
    assert!(
        text.contains("config.yaml:5:3: admin.token: environment variable `OMNIGATE_TEST_SURELY_UNSET` is not set"),
        "{text}"
    );
}

#[test]
fn the_shipped_config_passes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_omnigate"))
        .args(["check", "--config"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok (2 listeners, 3 upstreams, 6 routes)")
    );
}

/// `log: { format: text }` (what `auto` picks on a terminal): one line says
/// where to go, and requests are logged as readable lines.
#[tokio::test]
async fn readable_logs_start_with_where_to_go() {
    let up = Upstream::echo("up").await;
    let gw = Gateway::start(
        &config_with(&format!(
            "{HTTP_LISTENER}upstreams:\n  up: {{ addresses: [\"{}\"] }}\nroutes:\n  - {{ name: home, path_prefix: /, upstream: up }}\nlog: {{ format: text }}\n",
            up.addr
        )),
        &[],
    )
    .await;
    let http = gw.port("http");
    let admin = gw.addr("admin");
    gw.wait_log(
        &format!("Omnigate is ready: open http://localhost:{http}/ · admin http://{admin}/ (metrics at /metrics, console at /admin/console)"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        Client::plain(gw.addr("http"))
            .get("shop.test", "/hello")
            .await
            .status,
        200
    );
    let logs = gw
        .wait_log(
            "GET shop.test/hello → 200 home via up/",
            Duration::from_secs(5),
        )
        .await;
    assert!(!logs.contains("{\"timestamp\""), "no JSON lines: {logs}");
}
