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
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
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
