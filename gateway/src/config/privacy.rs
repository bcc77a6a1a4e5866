//! `privacy:` and each upstream's `privacy:` from the raw format to the
//! model: the systems that hold customer data and the job settings.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::{Endpoint, Privacy, System};
use super::raw::{RawPrivacy, RawSystem, RawSystemEndpoint, RawUpstream};
use super::source::join;
use super::validate::duration;
use super::Report;

/// The privacy settings, every problem reported.
pub(super) fn privacy(
    raw: Option<&RawPrivacy>,
    upstreams: &BTreeMap<String, RawUpstream>,
    public_url: &str,
    r: &mut Report<'_>,
) -> Privacy {
    let secret = raw.and_then(|p| p.secret.clone()).filter(|s| !s.is_empty());
    let mut systems = Vec::new();
    for (name, u) in upstreams {
        if let Some(s) = &u.privacy {
            let at = join(&join("upstreams", name), "privacy");
            systems.extend(system(name, true, s, &at, secret.as_deref(), r));
        }
    }
    for (name, s) in raw.map(|p| &p.systems).into_iter().flatten() {
        let at = join("privacy.systems", name);
        if upstreams.contains_key(name) {
            r.error(
                0,
                &at,
                format!(
                    "`{name}` is an upstream: declare its privacy under `upstreams.{name}.privacy`"
                ),
                None,
            );
        } else if !valid_name(name) {
            r.error(
                0,
                &at,
                format!("`{name}` is not a system name"),
                Some("lower-case letters, digits, `-` and `_`".into()),
            );
        }
        systems.extend(system(name, false, s, &at, secret.as_deref(), r));
    }
    let settings = settings(raw, r);
    let callback_url = raw
        .and_then(|p| p.callback_url.clone())
        .unwrap_or_else(|| public_url.to_string())
        .trim_end_matches('/')
        .to_string();
    let calls_out = systems
        .iter()
        .any(|s| s.erasure.is_some() || s.export.is_some());
    if calls_out && !origin_ok(&callback_url) {
        r.error(
            0,
            "privacy.callback_url",
            format!("`{callback_url}` is not the http(s) origin systems can call back"),
            Some(
                "set `privacy.callback_url: https://id.shop.example` (or `accounts.public_url`)"
                    .into(),
            ),
        );
    }
    let longest = systems
        .iter()
        .flat_map(|s| [&s.erasure, &s.export])
        .flatten()
        .map(|e| e.timeout)
        .max()
        .unwrap_or_default();
    if settings.lease <= longest + Duration::from_secs(1) {
        r.error(
            0,
            "privacy.lease",
            format!(
                "the lease ({}) is not at least a second longer than the slowest system's timeout ({}), so a slow answer could be sent twice at once",
                humantime::format_duration(settings.lease),
                humantime::format_duration(longest)
            ),
            Some("make `privacy.lease` longer than every endpoint's `timeout`".into()),
        );
    }
    Privacy {
        secret,
        callback_url,
        systems,
        ..settings
    }
}

/// The durations and bounds, with their defaults.
fn settings(raw: Option<&RawPrivacy>, r: &mut Report<'_>) -> Privacy {
    let d = |v: Option<&String>, default: &str, min_ms: u64, field: &str, r: &mut Report<'_>| {
        duration(v.map(String::as_str), default, min_ms, field, r)
    };
    let retry_first = d(
        raw.and_then(|p| p.retry_first.as_ref()),
        "30s",
        100,
        "privacy.retry_first",
        r,
    );
    let retry_max = d(
        raw.and_then(|p| p.retry_max.as_ref()),
        "1h",
        100,
        "privacy.retry_max",
        r,
    );
    if retry_first > retry_max {
        r.error(
            0,
            "privacy.retry_first",
            "the first retry waits longer than `retry_max`".into(),
            None,
        );
    }
    let max_pairs = raw.and_then(|p| p.data_map_max_pairs).unwrap_or(100_000);
    if !(1..=10_000_000).contains(&max_pairs) {
        r.error(
            0,
            "privacy.data_map_max_pairs",
            format!("{max_pairs} is outside 1..=10000000"),
            Some("each pair takes about 400 bytes (bench/datamap); 100000 is the default".into()),
        );
    }
    Privacy {
        secret: None,
        callback_url: String::new(),
        deadline: d(
            raw.and_then(|p| p.deadline.as_ref()),
            "30days",
            1_000,
            "privacy.deadline",
            r,
        ),
        reauthenticate: d(
            raw.and_then(|p| p.reauthenticate.as_ref()),
            "10m",
            1_000,
            "privacy.reauthenticate",
            r,
        ),
        export_ttl: d(
            raw.and_then(|p| p.export_ttl.as_ref()),
            "24h",
            1_000,
            "privacy.export_ttl",
            r,
        ),
        tick: d(
            raw.and_then(|p| p.tick.as_ref()),
            "1s",
            50,
            "privacy.tick",
            r,
        ),
        lease: d(
            raw.and_then(|p| p.lease.as_ref()),
            "2m",
            1_000,
            "privacy.lease",
            r,
        ),
        retry_first,
        retry_max,
        data_map_flush: d(
            raw.and_then(|p| p.data_map_flush.as_ref()),
            "5s",
            50,
            "privacy.data_map_flush",
            r,
        ),
        data_map: raw.and_then(|p| p.data_map).unwrap_or(true),
        data_map_max_pairs: max_pairs,
        systems: Vec::new(),
    }
}

/// One system; None when it cannot be used.
fn system(
    name: &str,
    upstream: bool,
    s: &RawSystem,
    at: &str,
    secret: Option<&str>,
    r: &mut Report<'_>,
) -> Option<System> {
    let text = |v: &Option<String>, field: &str, what: &str, r: &mut Report<'_>| {
        let v = v.as_deref().map(str::trim).unwrap_or("");
        if v.is_empty() {
            r.error(0, &join(at, field), format!("{what} is missing"), None);
        }
        v.to_string()
    };
    let owner = text(
        &s.owner,
        "owner",
        "the owner (a team and how to reach it)",
        r,
    );
    let retention = text(
        &s.retention,
        "retention",
        "how long the system keeps data (e.g. `2 years after the last order`)",
        r,
    );
    if s.categories.is_empty() {
        r.error(
            0,
            &join(at, "categories"),
            "no data category is named".into(),
            Some("e.g. `categories: [contact, orders]`".into()),
        );
    }
    for (i, c) in s.categories.iter().enumerate() {
        if !valid_name(c) {
            r.error(
                0,
                &super::source::index(&join(at, "categories"), i),
                format!("`{c}` is not a category name"),
                Some("lower-case letters, digits, `-` and `_`".into()),
            );
        }
    }
    let erasure = s
        .erasure
        .as_ref()
        .and_then(|e| endpoint(e, &join(at, "erasure"), secret, r));
    let export = s
        .export
        .as_ref()
        .and_then(|e| endpoint(e, &join(at, "export"), secret, r));
    match (s.erasure.is_some(), s.manual) {
        (true, true) => r.error(
            0,
            &join(at, "manual"),
            "a system is erased either through its endpoint or by hand, not both".into(),
            None,
        ),
        (false, false) => r.error(
            0,
            at,
            "no way to erase this system's data is declared".into(),
            Some("add `erasure: {url: …}`, or `manual: true` with a `contact`".into()),
        ),
        _ => {}
    }
    let contact = s
        .contact
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if s.manual && contact.is_none() {
        r.error(
            0,
            &join(at, "contact"),
            "a manual system needs a contact who erases by hand".into(),
            None,
        );
    }
    Some(System {
        name: name.to_string(),
        upstream,
        owner,
        categories: s.categories.clone(),
        retention,
        erasure,
        export,
        manual: s.manual,
        contact: contact.map(str::to_string),
        all_customers: s.all_customers,
    })
}

fn endpoint(
    e: &RawSystemEndpoint,
    at: &str,
    secret: Option<&str>,
    r: &mut Report<'_>,
) -> Option<Endpoint> {
    let url_ok = url::Url::parse(&e.url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !url_ok {
        r.error(
            0,
            &join(at, "url"),
            format!("`{}` is not an http(s) URL", e.url),
            None,
        );
    }
    let secret = e.secret.as_deref().filter(|s| !s.is_empty()).or(secret);
    let secret = match secret {
        Some(s) if s.len() >= 16 => s.to_string(),
        _ => {
            r.error(
                0,
                &join(at, "secret"),
                "no signing secret of at least 16 characters (here or as `privacy.secret`)".into(),
                Some("take it from the environment: `secret: ${OMNIGATE_PRIVACY_SECRET}`".into()),
            );
            return None;
        }
    };
    let timeout = duration(e.timeout.as_deref(), "10s", 100, &join(at, "timeout"), r);
    url_ok.then(|| Endpoint {
        url: e.url.clone(),
        secret,
        timeout,
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn origin_ok(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.path() == "/"
    })
}
