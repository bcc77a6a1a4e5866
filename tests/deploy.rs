//! The deployment artifacts stay true to the binary: the Kubernetes and Helm
//! configs pass `omnigate check`, and alerts and dashboards query only metrics
//! the gateway exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check_files(files: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_omnigate"))
        .args(["check", "--config"])
        .arg(dir.path().join("config.yaml"))
        .env(
            "OMNIGATE_ADMIN_TOKEN",
            "a-long-enough-admin-token-for-checks",
        )
        .env("OMNIGATE_REDIS_URL", "redis://redis:6379")
        .env(
            "OMNIGATE_DATABASE_URL",
            "postgres://omnigate@postgres:5432/omnigate",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Several replicas must agree on keys: no warning about that.
    assert!(!stderr.contains("warning"), "{stderr}");
}

fn documents(file: &str) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
        .collect()
}

#[test]
fn manifests_reload_config_keep_the_admin_port_private_and_name_their_secret() {
    let docs = documents("deploy/kubernetes/deployment.yaml");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for m in container["volumeMounts"].as_sequence().unwrap() {
        assert!(
            m.get("subPath").is_none(),
            "a subPath mount never sees a changed ConfigMap: {m:?}"
        );
    }
    let customer = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "omnigate")
        .unwrap();
    for p in customer["spec"]["ports"].as_sequence().unwrap() {
        assert_ne!(
            p["targetPort"], "admin",
            "the admin port is on the customer Service"
        );
    }
    let secret = &documents("deploy/kubernetes/secret.yaml")[0];
    assert_eq!(secret["kind"], "Secret");
    for env in container["env"].as_sequence().unwrap() {
        let r = &env["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], secret["metadata"]["name"]);
        let key = r["key"].as_str().unwrap();
        assert!(
            secret["stringData"].get(key).is_some(),
            "the Secret lacks `{key}`"
        );
    }
    let helm =
        std::fs::read_to_string(repo().join("deploy/helm/omnigate/templates/deployment.yaml"))
            .unwrap();
    assert!(
        !helm.contains("subPath:"),
        "a subPath mount never sees a changed ConfigMap"
    );
    let customer_service = helm
        .split("kind: Service")
        .nth(1)
        .unwrap()
        .split("---")
        .next()
        .unwrap();
    assert!(
        !customer_service.contains("targetPort: admin"),
        "{customer_service}"
    );
}

#[test]
fn kubernetes_and_helm_configs_pass_check() {
    let cm: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/kubernetes/configmap.yaml")).unwrap(),
    )
    .unwrap();
    let data = &cm["data"];
    check_files(&[
        ("config.yaml", data["config.yaml"].as_str().unwrap()),
        (
            "policies/routes.yaml",
            data["routes.yaml"].as_str().unwrap(),
        ),
    ]);

    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/helm/omnigate/values.yaml")).unwrap(),
    )
    .unwrap();
    let mut files = vec![(
        "config.yaml".to_string(),
        values["config"].as_str().unwrap().to_string(),
    )];
    for (name, text) in values["policies"].as_mapping().unwrap() {
        files.push((
            format!("policies/{}", name.as_str().unwrap()),
            text.as_str().unwrap().to_string(),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    check_files(&refs);
}

/// `omnigate_…` identifiers in a text, without PromQL suffixes we add ourselves.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("omnigate_") {
        let start = i + pos;
        // skip recording-rule names like `omnigate:…` and label values
        let prev = if start == 0 { b' ' } else { bytes[start - 1] };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !(prev.is_ascii_alphanumeric()
            || prev == b'_'
            || prev == b'/'
            || prev == b'-'
            || prev == b'.')
        {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn alerts_and_dashboards_use_exported_metrics() {
    let metrics = omnigate::metrics::Metrics::new();
    let exported: BTreeSet<String> = metrics.series_names().iter().cloned().collect();
    assert!(exported.contains("omnigate_request_duration_seconds_bucket"));
    for file in [
        "deploy/prometheus/omnigate-rules.yaml",
        "deploy/grafana/omnigate-dashboard.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        if file.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        } else {
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} queries no omnigate metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the gateway does not export: {unknown:?}"
        );
    }
}

/// The `ENV` settings of the container image, from its Dockerfile.
fn image_env() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/container/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn the_image_listens_beyond_the_container_and_builds_from_sources_only() {
    let env = image_env();
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the Dockerfile sets no {k}: {env:?}"))
    };
    for k in [
        "OMNIGATE_HTTP_ADDRESS",
        "OMNIGATE_HTTPS_ADDRESS",
        "OMNIGATE_ADMIN_ADDRESS",
    ] {
        assert!(get(k).starts_with("0.0.0.0:"), "{k}={}", get(k));
    }
    // The shipped config takes them: with the image's values it passes,
    // with a broken one it names the listener.
    let check = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_omnigate"));
        cmd.args(["check", "--config"])
            .arg(repo().join("config.yaml"))
            .env(
                "OMNIGATE_ADMIN_TOKEN",
                "a-long-enough-admin-token-for-checks",
            );
        for (k, v) in &env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let ok = check(&[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let broken = check(&[("OMNIGATE_HTTP_ADDRESS", "nowhere")]);
    assert!(!broken.status.success());
    let said = String::from_utf8_lossy(&broken.stderr).to_string()
        + &String::from_utf8_lossy(&broken.stdout);
    assert!(said.contains("listeners[0].address"), "{said}");
    // Build output and local state (dev keys, the customer database) stay out.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for p in ["target/", ".omnigate/", ".git/", "tests/node/node_modules/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == p),
            "{p} is not in .dockerignore"
        );
    }
}

/// The manifests are valid Kubernetes objects (kubernetes-validate from PyPI,
/// strict: no unknown fields), and carry what scale-out needs: autoscaling on
/// CPU and on requests in flight, a disruption budget, spread over zones and
/// nodes, a drain pause before SIGTERM, readiness on /readyz. The Helm chart's
/// templates cannot be rendered here (no helm binary); its values pass
/// `omnigate check` above.
#[test]
fn manifests_are_valid_kubernetes_and_ready_to_scale_out() {
    let tool = repo().join("tests/py/.venv/bin/kubernetes-validate");
    let files: Vec<_> = ["autoscaling", "configmap", "deployment", "secret"]
        .iter()
        .map(|f| repo().join(format!("deploy/kubernetes/{f}.yaml")))
        .collect();
    let out = Command::new(&tool)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{} (run tests/setup.sh): {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for kind in [
        "horizontalpodautoscaler",
        "poddisruptionbudget",
        "deployment",
        "service",
        "configmap",
        "secret",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}/")),
            "{kind}: {text}"
        );
    }
    let scaling = documents("deploy/kubernetes/autoscaling.yaml");
    let hpa = scaling
        .iter()
        .find(|d| d["kind"] == "HorizontalPodAutoscaler")
        .unwrap();
    let metrics: Vec<String> = hpa["spec"]["metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            m["resource"]["name"]
                .as_str()
                .or(m["pods"]["metric"]["name"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(metrics, ["cpu", "omnigate_requests_in_flight"]);
    assert!(scaling.iter().any(|d| d["kind"] == "PodDisruptionBudget"));
    let docs = documents("deploy/kubernetes/deployment.yaml");
    let pod = &docs.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"];
    let keys: Vec<&str> = pod["topologySpreadConstraints"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|c| c["topologyKey"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap()
            > 0
    );
}
