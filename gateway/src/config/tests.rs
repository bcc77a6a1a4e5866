use std::path::Path;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const BASE: &str = "listeners:\n  - name: http\n    address: 127.0.0.1:8080\nupstreams:\n  app:\n    addresses: [127.0.0.1:9000]\n";

#[test]
fn expands_env_with_defaults() {
    std::env::set_var("OMNIGATE_TEST_SET", "v");
    std::env::remove_var("OMNIGATE_TEST_UNSET");
    assert_eq!(expand("a${OMNIGATE_TEST_SET}b").unwrap(), "avb");
    assert_eq!(expand("${OMNIGATE_TEST_UNSET:-dflt}").unwrap(), "dflt");
    assert_eq!(expand("$${literal}").unwrap(), "${literal}");
    assert_eq!(
        expand("${OMNIGATE_TEST_UNSET}").unwrap_err(),
        "OMNIGATE_TEST_UNSET"
    );
}

#[test]
fn unknown_field_names_line_and_suggests() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{BASE}    health_check:\n      intervall: 5s\n");
    let p = write(dir.path(), "c.yaml", &text);
    let errs = load(&p).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    let d = &errs[0];
    assert_eq!((d.line, d.column), (8, 7), "{d}");
    assert_eq!(d.field, "upstreams.app.health_check.intervall");
    assert!(d.hint.as_deref().unwrap().contains("`interval`"), "{d}");
}

#[test]
fn semantic_errors_in_included_files_point_into_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "routes.yaml",
        "routes:\n  - name: a\n    upstream: app\n  - name: b\n    upstream: ap\n    kind: html\n",
    );
    let p = write(
        dir.path(),
        "c.yaml",
        &format!("include: [routes.yaml]\n{BASE}"),
    );
    let errs = load(&p).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    assert_eq!(errs.len(), 2, "{text:#?}");
    assert!(errs.iter().all(|d| d.file.ends_with("routes.yaml")));
    assert_eq!(errs[0].line, 5);
    assert!(
        text[0].contains("upstream `ap` is not defined (hint: did you mean `app`?)"),
        "{}",
        text[0]
    );
    assert_eq!(errs[1].line, 6);
    assert!(text[1].contains("routes[1].kind"), "{}", text[1]);
}

#[test]
fn syntax_errors_have_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "c.yaml", "listeners:\n  - name: [unclosed\n");
    let errs = load(&p).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("not valid YAML"), "{}", errs[0]);
    assert!(errs[0].line >= 2, "{}", errs[0]);
}

#[test]
fn the_shipped_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config.yaml");
    let c = load(&root).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listeners.len(), 2);
    assert!(c.demo.is_some());
}

#[test]
fn cookie_domains_and_auth_host_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{BASE}sessions:\n  cookie_domains: [shop.example, www.shop.example, \"*.x.example\", localhost]\n  auth_host: \"login shop\"\n"
    );
    let p = write(dir.path(), "c.yaml", &text);
    let errs = load(&p).unwrap_err().0;
    let fields: Vec<&str> = errs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "sessions.cookie_domains[2]",
            "sessions.cookie_domains[3]",
            "sessions.cookie_domains[1]",
            "sessions.auth_host"
        ],
        "{errs:?}"
    );
    assert!(
        errs[2].message.contains("overlaps `shop.example`"),
        "{}",
        errs[2]
    );
    assert!(errs.iter().all(|d| d.line > 0), "{errs:?}");

    let ok = format!(
        "{BASE}sessions:\n  cookie_domains: [shop.example, brand.example]\n  auth_host: login.shop.example\n"
    );
    let cfg = load(&write(dir.path(), "ok.yaml", &ok)).unwrap();
    assert_eq!(
        cfg.sessions.cookie_domains,
        ["shop.example", "brand.example"]
    );
    assert!(cfg.sessions.trusted_host("crm.brand.example", &cfg.routes));
    assert!(!cfg.sessions.trusted_host("evil.example", &cfg.routes));
}

#[test]
fn account_settings_are_checked_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("brand")).unwrap();
    std::fs::write(dir.path().join("brand/signin.html"), "{% if %}").unwrap();
    let text = format!(
        "{BASE}accounts:
  passwords: true
  public_url: shop.example/path
  password_min_length: 4
  argon2: {{ memory_kib: 1, iterations: 0 }}
  breached_password_api: not a url
  mail:
    from: not an address
    smtp: {{ host: smtp.example, tls: sometimes, username: u }}
pages:
  primary_colour: blue
  logo: //cdn.example/logo.svg
  templates: brand
"
    );
    let p = write(dir.path(), "c.yaml", &text);
    let errs = load(&p).unwrap_err().0;
    let fields: Vec<&str> = errs.iter().map(|d| d.field.as_str()).collect();
    for f in [
        "accounts.public_url",
        "accounts.password_min_length",
        "accounts.argon2",
        "accounts.breached_password_api",
        "accounts.mail.from",
        "accounts.mail.smtp.tls",
        "accounts.mail.smtp.password",
        "pages.primary_colour",
        "pages.logo",
        "pages.templates",
    ] {
        assert!(fields.contains(&f), "{f} not reported: {errs:?}");
    }
    let t = errs.iter().find(|d| d.field == "pages.templates").unwrap();
    assert!(t.message.contains("signin.html"), "{t}");
    // Every error points at its line.
    assert!(errs.iter().all(|d| d.line > 0), "{errs:?}");

    // Passwords without a mail channel: refused with the fix.
    let text = format!("{BASE}accounts: {{ passwords: true, public_url: https://shop.example }}\n");
    let p = write(dir.path(), "d.yaml", &text);
    let errs = load(&p).unwrap_err().0;
    assert_eq!(errs[0].field, "accounts.mail", "{errs:?}");
    assert!(errs[0].hint.as_deref().unwrap().contains("smtp"));
}

#[test]
fn consent_policies_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "consent.yaml",
        "purposes:
  - { id: marketing_email, title: News, text: Send me news., version: 1 }
  - { id: marketing_email, title: News again, text: Again., version: 2 }
  - { id: Bad-Id, title: X, text: Y, version: 0, legal_basis: because }
routes:
  - name: partners
    path_prefix: /partners
    upstream: app
    access: required
    consent: { require: [partner_sharing], on_missing: shrug }
  - name: open
    path_prefix: /open
    upstream: app
    consent: { require: [marketing_email] }
",
    );
    let text = format!(
        "include: [consent.yaml]\n{BASE}    consent_headers: {{ email: partner_shareing }}\naccounts: {{ passwords: false }}\nproviders:\n  - {{ name: idp, issuer: https://idp.example, bearer: {{ audiences: [api] }} }}\n"
    );
    let p = write(dir.path(), "c.yaml", &text);
    let errs = load(&p).unwrap_err().0;
    let found = |field: &str| {
        errs.iter()
            .find(|d| d.field == field)
            .unwrap_or_else(|| panic!("{field} not reported: {errs:#?}"))
    };
    let dup = found("purposes[1].id");
    assert!(dup.message.contains("declared twice"), "{dup}");
    assert!(dup.file.ends_with("consent.yaml"), "{dup}");
    assert_eq!(dup.line, 3);
    found("purposes[2].id");
    found("purposes[2].version");
    found("purposes[2].legal_basis");
    let unknown = found("routes[0].consent.require[0]");
    assert!(
        unknown
            .message
            .contains("unknown purpose `partner_sharing`"),
        "{unknown}"
    );
    found("routes[0].consent.on_missing");
    found("routes[1].consent");
    found("upstreams.app.consent_headers.email");
}

#[test]
fn several_nodes_that_could_disagree_on_keys_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let redis = "sessions: { store: redis, url: \"redis://127.0.0.1:6379\" }\n";
    let pg = "customers: { store: postgres, url: \"postgres://u@h:5432/d\" }\n";
    let p = write(dir.path(), "a.yaml", &format!("{BASE}{redis}"));
    let w = warnings(&load(&p).unwrap());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("customers.store"), "{w:?}");
    let p = write(dir.path(), "b.yaml", &format!("{BASE}{redis}{pg}"));
    assert!(warnings(&load(&p).unwrap()).is_empty());
    let p = write(dir.path(), "c.yaml", BASE);
    assert!(
        warnings(&load(&p).unwrap()).is_empty(),
        "one node agrees with itself"
    );
}

#[test]
fn request_rules_and_prefixes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{BASE}requests: {{ underscores_in_headers: sometimes, paths: {{ semicolons: maybe }} }}\nroutes:\n  - {{ name: a, path_prefix: \"/a//b\", upstream: app }}\n  - {{ name: b, path_prefix: \"/x%2fy\", upstream: app }}\n"
    );
    let p = write(dir.path(), "r.yaml", &text);
    let errs = load(&p).unwrap_err().0;
    let fields: Vec<&str> = errs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "routes[0].path_prefix",
            "routes[1].path_prefix",
            "requests.underscores_in_headers",
            "requests.paths.semicolons"
        ],
        "{errs:?}"
    );
    assert!(
        errs[0].hint.as_deref().unwrap().contains("/a/b"),
        "{}",
        errs[0]
    );
}

#[test]
fn privacy_systems_are_checked_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = "listeners:\n  - name: http\n    address: 127.0.0.1:8080\naccounts:\n  public_url: https://shop.example\nupstreams:
  store:
    addresses: [127.0.0.1:9000]
    privacy:
      owner: Web team
      categories: [contact, Orders]
      retention: 2 years
      erasure: { url: \"ftp://x\", timeout: 30s }
      manual: true
  crm:
    addresses: [127.0.0.1:9001]
    privacy: { categories: [] }
privacy:
  lease: 20s
  systems:
    store: { owner: x, categories: [a], retention: y, manual: true, contact: z }
    accounting:
      owner: Finance
      categories: [invoices]
      retention: 10 years (HGB 257)
      erasure: { url: \"https://acc.example/erase\", secret: short }
";
    let p = write(dir.path(), "c.yaml", text);
    let errs = load(&p).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    let has = |field: &str, words: &str| {
        assert!(
            errs.iter()
                .any(|d| d.field == field && d.to_string().contains(words)),
            "no `{words}` at {field}: {text:#?}"
        )
    };
    has(
        "upstreams.store.privacy.categories[1]",
        "not a category name",
    );
    has("upstreams.store.privacy.erasure.url", "not an http(s) URL");
    has(
        "upstreams.store.privacy.erasure.secret",
        "no signing secret",
    );
    has("upstreams.store.privacy.manual", "not both");
    has("upstreams.store.privacy.contact", "needs a contact");
    has("upstreams.crm.privacy.owner", "missing");
    has("upstreams.crm.privacy.retention", "missing");
    has("upstreams.crm.privacy.categories", "no data category");
    has("upstreams.crm.privacy", "no way to erase");
    has("privacy.systems.store", "is an upstream");
    has("privacy.systems.accounting.erasure.secret", "at least 16");
    assert!(errs.iter().all(|d| d.line > 0), "{text:#?}");
}

#[test]
fn a_lease_shorter_than_a_timeout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{BASE}    privacy:
      owner: Web team
      categories: [contact]
      retention: 2 years
      erasure: {{ url: \"http://127.0.0.1:9000/erase\", timeout: 30s }}
accounts:
  public_url: https://shop.example
privacy:
  secret: 0123456789abcdef0123
  lease: 20s
"
    );
    let p = write(dir.path(), "c.yaml", &text);
    let errs = load(&p).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "privacy.lease");
    let ok = text.replace("lease: 20s", "lease: 45s");
    let p = write(dir.path(), "c.yaml", &ok);
    let c = load(&p).unwrap();
    let s = c.privacy.system("app").unwrap();
    assert_eq!(s.erasure.as_ref().unwrap().secret, "0123456789abcdef0123");
    assert_eq!(c.privacy.callback_url, "https://shop.example");
    assert_eq!(
        c.privacy.deadline,
        std::time::Duration::from_secs(30 * 86400)
    );
}

#[test]
fn a_forward_auth_upstream_names_nothing_to_connect_to() {
    let dir = tempfile::tempdir().unwrap();
    let listener = "listeners:\n  - name: http\n    address: 127.0.0.1:8080\n";
    let ok = format!("{listener}upstreams:\n  shop: {{ forward_auth: true }}\nroutes:\n  - {{ name: a, upstream: shop }}\n");
    let config = load(&write(dir.path(), "ok.yaml", &ok)).unwrap();
    assert!(config.upstreams[0].forward_auth && config.upstreams[0].addresses.is_empty());
    let text = format!(
        "{listener}upstreams:\n  shop:\n    forward_auth: true\n    addresses: [127.0.0.1:9000]\n    health_check: {{ path: /healthz }}\n  app: {{ balance: round_robin }}\n"
    );
    let errs = load(&write(dir.path(), "bad.yaml", &text)).unwrap_err().0;
    let fields: Vec<&str> = errs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "upstreams.app.addresses",
            "upstreams.shop.addresses",
            "upstreams.shop.health_check"
        ],
        "{errs:?}"
    );
    assert_eq!(errs[1].line, 7, "{}", errs[1]);
    assert!(errs[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("forward_auth: true"));
    assert!(errs[1].message.contains("never connects"), "{}", errs[1]);
}

#[test]
fn the_hashing_pool_is_checked_and_defaults_to_half_the_cores() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(dir.path(), "ok.yaml", BASE)).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let h = config.accounts.hashing;
    assert_eq!((h.workers, h.queue), ((cores / 2).max(1), 64));
    assert_eq!(h.deadline, std::time::Duration::from_secs(2));
    let text =
        format!("{BASE}accounts:\n  hashing: {{ workers: 0, queue: 1000000, deadline: \"2\" }}\n");
    let errs = load(&write(dir.path(), "bad.yaml", &text)).unwrap_err().0;
    let fields: Vec<&str> = errs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "accounts.hashing.workers",
            "accounts.hashing.queue",
            "accounts.hashing.deadline"
        ],
        "{errs:?}"
    );
}

#[test]
fn a_tab_and_a_duration_without_unit_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let tab = "listeners:\n  - name: http\n\taddress: 127.0.0.1:8080\n";
    let errs = load(&write(dir.path(), "tab.yaml", tab)).unwrap_err().0;
    let hint = errs[0].hint.clone().unwrap_or_default();
    assert!(hint.contains("line 3 holds a tab character"), "{errs:?}");
    let bare = format!("{BASE}sessions: {{ idle_timeout: 30 }}\n");
    let errs = load(&write(dir.path(), "bare.yaml", &bare)).unwrap_err().0;
    assert_eq!(errs[0].field, "sessions.idle_timeout", "{errs:?}");
    let hint = errs[0].hint.clone().unwrap_or_default();
    assert!(hint.contains("`30s`"), "{errs:?}");
}

#[test]
fn admission_and_waiting_rooms_are_checked_field_by_field() {
    use crate::config::model::{Priority, WaitingRoom};
    let dir = tempfile::tempdir().unwrap();
    let good = "listeners:\n  - name: http\n    address: 127.0.0.1:8080\nupstreams:\n  app:\n    addresses: [127.0.0.1:9000]\n    admission: { adaptive: { min: 10, max: 400 } }\nroutes:\n  - { name: pay, path_prefix: /pay, upstream: app, priority: critical, waiting_room: { active_users: 500, new_per_minute: 100 } }\n";
    let config = load(&write(dir.path(), "ok.yaml", good)).unwrap();
    let a = config.upstreams[0].admission.expect("admission");
    assert_eq!((a.limit, a.queue), (100, 100), "starts at a quarter of max");
    assert_eq!(a.queue_timeout, std::time::Duration::from_secs(1));
    let r = &config.routes[0];
    assert_eq!(r.priority, Priority::Critical);
    assert_eq!(
        r.waiting_room,
        Some(WaitingRoom {
            active_users: 500,
            new_per_minute: 100,
            session_duration: std::time::Duration::from_secs(600),
            refresh: std::time::Duration::from_secs(20),
        })
    );
    let bad = "listeners:\n  - name: http\n    address: 127.0.0.1:8080\nupstreams:\n  app:\n    addresses: [127.0.0.1:9000]\n    admission: { limit: 0, adaptive: { min: 50, max: 10 }, queue_timeout: soon }\n  theirs:\n    forward_auth: true\nroutes:\n  - { name: pay, path_prefix: /pay, upstream: app, priority: urgent, waiting_room: { new_per_minute: 0, refresh: 1h } }\n  - { name: other, path_prefix: /other, upstream: theirs, waiting_room: { active_users: 1, new_per_minute: 1 } }\n";
    let errs = load(&write(dir.path(), "bad.yaml", bad)).unwrap_err().0;
    let mut fields: Vec<&str> = errs.iter().map(|d| d.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "routes[0].priority",
            "routes[0].waiting_room.active_users",
            "routes[0].waiting_room.new_per_minute",
            "routes[0].waiting_room.refresh",
            "routes[1].waiting_room",
            "upstreams.app.admission.adaptive.min",
            "upstreams.app.admission.limit",
            "upstreams.app.admission.limit",
            "upstreams.app.admission.queue_timeout",
        ],
        "{errs:?}"
    );
}

#[test]
fn every_parse_error_of_every_file_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "routes.yaml",
        "routes:\n  - { name: a, upstream: app, path_prefx: /a }\n",
    );
    let main = "include: [routes.yaml]\nlisteners:\n  - name: http\n    address: 127.0.0.1:8080\nupstreams:\n  app:\n    addresses: [127.0.0.1:9000]\n    balance: [round_robin]\nserver: { threads: many }\nsessions: { idle_timout: 30m }\n";
    let errs = load(&write(dir.path(), "config.yaml", main)).unwrap_err().0;
    let found: Vec<(String, &str)> = errs
        .iter()
        .map(|d| {
            let file = d.file.file_name().unwrap().to_string_lossy().into_owned();
            (file, d.field.as_str())
        })
        .collect();
    assert_eq!(
        found,
        [
            ("config.yaml".to_string(), "upstreams.app.balance"),
            ("config.yaml".to_string(), "server.threads"),
            ("config.yaml".to_string(), "sessions.idle_timout"),
            ("routes.yaml".to_string(), "routes[0].path_prefx"),
        ],
        "{errs:?}"
    );
    // Each at its own line.
    assert_eq!(
        (errs[0].line, errs[1].line, errs[2].line),
        (8, 9, 10),
        "{errs:?}"
    );
    assert_eq!(errs[3].hint.as_deref(), Some("did you mean `path_prefix`?"));
}
