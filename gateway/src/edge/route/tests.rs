use super::*;
use crate::config::model::{Access, RouteKind};

fn route(name: &str, hosts: &[&str], prefix: &str, methods: &[&str]) -> Route {
    Route {
        name: name.into(),
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        path_prefix: prefix.into(),
        methods: methods.iter().map(|s| s.to_string()).collect(),
        upstream: "u".into(),
        kind: RouteKind::Web,
        strip_prefix: false,
        max_body: 0,
        access: Access::Public,
        scopes: vec![],
        register_first: false,
        verified_email: false,
        consent: None,
        case_insensitive: false,
        priority: Default::default(),
        waiting_room: None,
    }
}

fn name<'a>(routes: &'a [Route], m: Match<'_>) -> &'a str {
    match m {
        Match::Route(i) => &routes[i].name,
        other => panic!("no route: {other:?}"),
    }
}

#[test]
fn longest_prefix_wins() {
    let routes = vec![route("root", &[], "/", &[]), route("api", &[], "/api", &[])];
    let r = Router::new(&routes);
    assert_eq!(
        name(&routes, r.find(&routes, "x", "/api/orders", "GET")),
        "api"
    );
    assert_eq!(name(&routes, r.find(&routes, "x", "/api", "GET")), "api");
    assert_eq!(name(&routes, r.find(&routes, "x", "/apix", "GET")), "root");
}

#[test]
fn exact_host_beats_wildcard_beats_any() {
    let routes = vec![
        route("any", &[], "/", &[]),
        route("wild", &["*.shop.test"], "/", &[]),
        route("exact", &["crm.shop.test"], "/", &[]),
    ];
    let r = Router::new(&routes);
    assert_eq!(
        name(&routes, r.find(&routes, "crm.shop.test", "/", "GET")),
        "exact"
    );
    assert_eq!(
        name(&routes, r.find(&routes, "app.shop.test", "/", "GET")),
        "wild"
    );
    assert_eq!(
        name(&routes, r.find(&routes, "a.b.shop.test", "/", "GET")),
        "any"
    );
    assert_eq!(
        name(&routes, r.find(&routes, "shop.test", "/", "GET")),
        "any"
    );
}

#[test]
fn method_mismatch_is_405_with_allowed_list() {
    let routes = vec![route("ro", &[], "/orders", &["GET", "HEAD"])];
    let r = Router::new(&routes);
    assert_eq!(
        r.find(&routes, "h", "/orders", "DELETE"),
        Match::MethodNotAllowed(vec!["GET", "HEAD"])
    );
    assert_eq!(r.find(&routes, "h", "/other", "GET"), Match::NotFound);
}

#[test]
fn method_specific_route_before_catch_all_on_same_prefix() {
    let routes = vec![
        route("all", &[], "/x", &[]),
        route("post", &[], "/x", &["POST"]),
    ];
    let r = Router::new(&routes);
    assert_eq!(name(&routes, r.find(&routes, "h", "/x", "POST")), "post");
    assert_eq!(name(&routes, r.find(&routes, "h", "/x", "GET")), "all");
}

#[test]
fn strips_prefix_keeping_a_path() {
    assert_eq!(strip_prefix("/api", "/api/orders"), "/orders");
    assert_eq!(strip_prefix("/api/", "/api/orders"), "/orders");
    assert_eq!(strip_prefix("/api", "/api"), "/");
    assert_eq!(strip_prefix("/", "/x"), "/x");
}

#[test]
fn normalizes_hosts() {
    assert_eq!(
        normalize_host("Shop.Test:8443").as_deref(),
        Some("shop.test")
    );
    assert_eq!(normalize_host("shop.test.").as_deref(), Some("shop.test"));
    assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
    assert_eq!(normalize_host("evil.test/path"), None);
    assert_eq!(normalize_host(""), None);
}

#[test]
fn case_insensitive_routes_take_any_case_on_segment_boundaries() {
    assert!(prefix_matches_any_case("/acct", "/ACCT/x"));
    assert!(prefix_matches_any_case("/acct", "/Acct"));
    assert!(prefix_matches_any_case("/acct/", "/aCcT/y"));
    assert!(!prefix_matches_any_case("/acct", "/acctx"));
    assert!(!prefix_matches_any_case("/acct", "/ac"));
    assert!(!prefix_matches_any_case("/acct", "/caf\u{e9}"));
}
