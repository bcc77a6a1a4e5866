//! One pass from the raw format to the model. Collects every problem instead
//! of stopping at the first, so `omnigate check` lists them all at once.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::model::*;
use super::raw::*;
use super::source::{index, join, SourceFile};
use super::{closest, ConfigErrors, Report};

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];
const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

pub(super) fn validate(
    main: RawConfig,
    policies: Vec<(usize, RawPolicyFile)>,
    files: &[SourceFile],
    base: &Path,
) -> Result<Config, ConfigErrors> {
    let mut r = Report::new(files);
    let server = server(&main.server, base, &mut r);
    let listeners = listeners(&main.listeners, base, &mut r);
    let admin = main
        .admin
        .as_ref()
        .and_then(|a| admin(a, &listeners, &mut r));
    let upstreams: Vec<Upstream> = main
        .upstreams
        .iter()
        .filter_map(|(name, u)| upstream(name, u, base, &mut r))
        .collect();
    let known: Vec<String> = main.upstreams.keys().cloned().collect();

    // Routes from config.yaml first, then from each included file, in order.
    let mut all_routes: Vec<(usize, String, &RawRoute)> = main
        .routes
        .iter()
        .enumerate()
        .map(|(i, rt)| (0, index("routes", i), rt))
        .collect();
    for (file, p) in &policies {
        all_routes.extend(
            p.routes
                .iter()
                .enumerate()
                .map(|(i, rt)| (*file, index("routes", i), rt)),
        );
    }
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (file, path, raw) in &all_routes {
        if raw.name.starts_with('_') || raw.name == "-" {
            r.error(
                *file,
                &join(path, "name"),
                format!("route name `{}` is reserved", raw.name),
                Some("names starting with `_` label the gateway's own pages (`_auth`, `_account`) and `-` requests that match no route".into()),
            );
        }
        if !names.insert(raw.name.clone()) {
            r.error(
                *file,
                &join(path, "name"),
                format!("route name `{}` is used twice", raw.name),
                Some("route names label metrics and logs; make each unique".into()),
            );
        }
        let behind_proxy = main
            .upstreams
            .get(&raw.upstream)
            .is_some_and(|u| u.forward_auth);
        if raw.waiting_room.is_some() && behind_proxy {
            r.error(
                *file,
                &join(path, "waiting_room"),
                format!("upstream `{}` is reached by your own proxy (forward_auth: true), which does not show a waiting page", raw.upstream),
                Some("put the waiting room on a route Omnigate proxies".into()),
            );
        }
        if let Some(rt) = route(*file, path, raw, &known, &mut r) {
            if let Some(prev) = routes.iter().find(|p: &&Route| shadows(p, &rt)) {
                r.error(
                    *file,
                    path,
                    format!(
                        "route `{}` can never match: route `{}` before it has the same hosts, path prefix and methods",
                        rt.name, prev.name
                    ),
                    Some("remove one of them or make them differ".into()),
                );
            }
            routes.push(rt);
        }
    }
    if listeners.is_empty() && main.listeners.is_empty() {
        r.error(
            0,
            "listeners",
            "no listener is configured".into(),
            Some("add `listeners: [{name: http, address: \"127.0.0.1:8080\"}]`".into()),
        );
    }
    let demo = main.demo.as_ref().and_then(|d| demo(d, &mut r));
    let trusted_proxies = main
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let parsed = s
                .parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => Some(n),
                Err(_) => {
                    r.error(
                        0,
                        &index("trusted_proxies", i),
                        format!("`{s}` is not an IP address or CIDR network"),
                        Some("write e.g. `10.0.0.0/8` or `127.0.0.1`".into()),
                    );
                    None
                }
            }
        })
        .collect();
    let log = log(main.log.as_ref(), &mut r);
    let providers = super::providers::providers(&main.providers, base, &mut r);
    let identity = identity(main.identity.as_ref(), base, &mut r);
    let customers = customers(main.customers.as_ref(), &server, &mut r);
    let sessions = sessions(main.sessions.as_ref(), &mut r);
    let events = events(main.events.as_ref(), &mut r);
    let accounts = accounts(main.accounts.as_ref(), &mut r);
    let purposes = purposes(&policies, &mut r);
    let ids: Vec<String> = purposes.iter().map(|p| p.id.clone()).collect();
    for (file, path, raw) in &all_routes {
        let Some(c) = &raw.consent else { continue };
        for (i, id) in c.require.iter().enumerate() {
            if !ids.contains(id) {
                r.error(
                    *file,
                    &index(&join(&join(path, "consent"), "require"), i),
                    format!("unknown purpose `{id}`"),
                    Some(match closest(id, &ids) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => "declare it under `purposes:` in policies/consent.yaml".into(),
                    }),
                );
            }
        }
    }
    for (name, u) in &main.upstreams {
        let Some(c) = &u.consent_headers else {
            continue;
        };
        for (field, id) in [
            ("customer_id", &c.customer_id),
            ("email", &c.email),
            ("name", &c.name),
        ] {
            if let Some(id) = id.as_ref().filter(|id| !ids.contains(id)) {
                r.error(
                    0,
                    &join(&join(&join("upstreams", name), "consent_headers"), field),
                    format!("unknown purpose `{id}`"),
                    Some("declare it under `purposes:` in policies/consent.yaml".into()),
                );
            }
        }
    }
    let pages = pages(main.pages.as_ref(), base, &mut r);
    let requests = requests(main.requests.as_ref(), &mut r);
    let privacy = super::privacy::privacy(
        main.privacy.as_ref(),
        &main.upstreams,
        &accounts.public_url,
        &mut r,
    );
    let abuse = Abuse {
        free_failures: main
            .abuse
            .as_ref()
            .and_then(|a| a.free_failures)
            .unwrap_or(5),
        window: duration(
            main.abuse.as_ref().and_then(|a| a.window.as_deref()),
            "15m",
            1_000,
            "abuse.window",
            &mut r,
        ),
        max_backoff: duration(
            main.abuse.as_ref().and_then(|a| a.max_backoff.as_deref()),
            "15m",
            1_000,
            "abuse.max_backoff",
            &mut r,
        ),
    };
    if !accounts.passwords
        && providers
            .iter()
            .all(|p| p.bearer.is_none() && p.login.is_none())
    {
        for (file, path, raw) in &all_routes {
            if matches!(raw.access.as_deref(), Some("optional" | "required")) {
                r.error(
                    *file,
                    &join(path, "access"),
                    "no provider accepts bearer tokens, so no request could be authenticated"
                        .into(),
                    Some(
                        "add a provider with `bearer: {audiences: [...]}` under `providers:`"
                            .into(),
                    ),
                );
            }
        }
    }

    no_host_for_sign_in(&main, &routes, &sessions, &accounts, &mut r);
    if !r.diags.is_empty() {
        return Err(ConfigErrors(r.diags));
    }
    Ok(Config {
        server,
        listeners,
        admin,
        upstreams,
        routes,
        demo,
        trusted_proxies,
        log,
        providers,
        identity,
        customers,
        sessions,
        events,
        abuse,
        accounts,
        pages,
        purposes,
        requests,
        privacy,
    })
}

/// Sign-in builds URLs for providers and other hosts (redirect URIs, the
/// cross-domain hop) from configured hosts only, never from a request's Host.
fn no_host_for_sign_in(
    main: &RawConfig,
    routes: &[Route],
    sessions: &Sessions,
    accounts: &Accounts,
    r: &mut Report<'_>,
) {
    let named = routes.iter().any(|rt| !rt.hosts.is_empty())
        || sessions.auth_host.is_some()
        || !sessions.cookie_domains.is_empty()
        || url::Url::parse(&accounts.public_url).is_ok_and(|u| u.host_str().is_some());
    if named {
        return;
    }
    for (i, p) in main.providers.iter().enumerate() {
        if p.login.is_some() {
            r.error(
                0,
                &join(&index("providers", i), "login"),
                "no host is configured, so there is no address to build the provider's redirect URI from".into(),
                Some("name the site's hosts on its routes (`hosts: [shop.example]`), or set `accounts.public_url` or `sessions.auth_host`; a request's Host header is never used".into()),
            );
        }
    }
}

fn requests(raw: Option<&RawRequests>, r: &mut Report<'_>) -> Requests {
    use crate::edge::header_policy::Underscores;
    let mut out = Requests::default();
    let Some(raw) = raw else { return out };
    out.underscores = match raw.underscores_in_headers.as_deref() {
        None | Some("drop") => Underscores::Drop,
        Some("keep") => Underscores::Keep,
        Some("reject") => Underscores::Reject,
        Some(other) => {
            r.error(
                0,
                "requests.underscores_in_headers",
                format!("unknown setting `{other}`"),
                Some("`drop` (default, as nginx), `keep` (names the gateway owns are still dropped) or `reject` (400)".into()),
            );
            Underscores::Drop
        }
    };
    let Some(paths) = &raw.paths else { return out };
    let mut keep = |value: Option<&str>, field: &str| match value {
        None | Some("refuse") => false,
        Some("keep") => true,
        Some(other) => {
            r.error(
                0,
                field,
                format!("unknown setting `{other}`"),
                Some("`refuse` (default) or `keep`".into()),
            );
            false
        }
    };
    out.paths.keep_encoded_slashes = keep(
        paths.encoded_slashes.as_deref(),
        "requests.paths.encoded_slashes",
    );
    out.paths.keep_semicolons = keep(paths.semicolons.as_deref(), "requests.paths.semicolons");
    out.paths.merge_slashes = paths.merge_slashes.unwrap_or(true);
    out
}

/// Lawful bases of GDPR Art. 6(1).
const LEGAL_BASES: &[&str] = &[
    "consent",
    "contract",
    "legal_obligation",
    "vital_interest",
    "public_task",
    "legitimate_interest",
];

fn purposes(
    policies: &[(usize, RawPolicyFile)],
    r: &mut Report<'_>,
) -> Vec<crate::consent::Purpose> {
    let mut out: Vec<crate::consent::Purpose> = Vec::new();
    for (file, pf) in policies {
        for (i, p) in pf.purposes.iter().enumerate() {
            let at = index("purposes", i);
            let id_ok = p.id.len() <= 64
                && p.id.starts_with(|c: char| c.is_ascii_lowercase())
                && p.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !id_ok {
                r.error(
                    *file,
                    &join(&at, "id"),
                    format!("`{}` is not a purpose id", p.id),
                    Some("lower-case letters, digits and `_`, starting with a letter, e.g. `marketing_email`".into()),
                );
            } else if out.iter().any(|o| o.id == p.id) {
                r.error(
                    *file,
                    &join(&at, "id"),
                    format!("purpose `{}` is declared twice", p.id),
                    Some("change the text under one id and raise its `version` instead".into()),
                );
            }
            if p.version == 0 {
                r.error(
                    *file,
                    &join(&at, "version"),
                    "versions start at 1".into(),
                    None,
                );
            }
            if p.title.trim().is_empty() || p.text.trim().is_empty() {
                r.error(
                    *file,
                    &at,
                    "a purpose needs a title and the text customers are shown".into(),
                    None,
                );
            }
            let basis = p.legal_basis.clone().unwrap_or_else(|| "consent".into());
            if !LEGAL_BASES.contains(&basis.as_str()) {
                r.error(
                    *file,
                    &join(&at, "legal_basis"),
                    format!("unknown legal basis `{basis}`"),
                    Some(format!("one of {}", LEGAL_BASES.join(", "))),
                );
            }
            out.push(crate::consent::Purpose {
                id: p.id.clone(),
                title: p.title.trim().to_string(),
                text: p.text.trim().to_string(),
                version: p.version,
                legal_basis: basis,
                required: p.required,
                sale: p.sale,
            });
        }
    }
    out
}

/// The hashing pool: by default half the cores (at least one) hash at once,
/// so proxying always keeps the rest; 64 wait at most, none over 2 s.
fn hashing(raw: Option<&RawHashing>, r: &mut Report<'_>) -> Hashing {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = raw.and_then(|h| h.workers).unwrap_or((cores / 2).max(1));
    if !(1..=1024).contains(&workers) {
        r.error(
            0,
            "accounts.hashing.workers",
            format!("{workers} is outside 1..=1024"),
            Some(format!(
                "this machine has {cores} cores; the default is half of them"
            )),
        );
    }
    let queue = raw.and_then(|h| h.queue).unwrap_or(64);
    if queue > 100_000 {
        r.error(
            0,
            "accounts.hashing.queue",
            format!("{queue} is over 100000"),
            Some(
                "a queue longer than the deadline can drain only adds memory; 64 is the default"
                    .into(),
            ),
        );
    }
    let deadline = duration(
        raw.and_then(|h| h.deadline.as_deref()),
        "2s",
        10,
        "accounts.hashing.deadline",
        r,
    );
    Hashing {
        workers,
        queue,
        deadline,
    }
}

fn accounts(raw: Option<&RawAccounts>, r: &mut Report<'_>) -> Accounts {
    let passwords = raw.is_some_and(|a| a.passwords);
    let public_url = raw
        .and_then(|a| a.public_url.clone())
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    if passwords
        && !url::Url::parse(&public_url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.path() == "/"
        })
    {
        r.error(
            0,
            "accounts.public_url",
            format!("`{public_url}` is not the http(s) origin links in mails should use"),
            Some("write e.g. `https://shop.example` (links in mails never use a request's Host header)".into()),
        );
    }
    let min = raw.and_then(|a| a.password_min_length).unwrap_or(10);
    if !(8..=64).contains(&min) {
        r.error(
            0,
            "accounts.password_min_length",
            format!("{min} is outside 8..=64"),
            Some("NIST SP 800-63B asks for at least 8; 10 is the default".into()),
        );
    }
    let d = Argon2Cost::default();
    let a = raw.and_then(|a| a.argon2.as_ref());
    let argon2 = Argon2Cost {
        memory_kib: a.and_then(|a| a.memory_kib).unwrap_or(d.memory_kib),
        iterations: a.and_then(|a| a.iterations).unwrap_or(d.iterations),
        parallelism: a.and_then(|a| a.parallelism).unwrap_or(d.parallelism),
    };
    if crate::accounts::password::hasher(&argon2).is_err()
        || argon2.memory_kib < 8 * argon2.parallelism
    {
        r.error(
            0,
            "accounts.argon2",
            format!(
                "memory_kib {} / iterations {} / parallelism {} is not a valid Argon2id cost",
                argon2.memory_kib, argon2.iterations, argon2.parallelism
            ),
            Some("OWASP's recommendation, the default: memory_kib 19456, iterations 2, parallelism 1".into()),
        );
    }
    let hashing = hashing(raw.and_then(|a| a.hashing.as_ref()), r);
    let breached_password_api = raw.and_then(|a| a.breached_password_api.clone());
    if let Some(u) = &breached_password_api {
        if !url_ok(u) {
            r.error(
                0,
                "accounts.breached_password_api",
                format!("`{u}` is not an http(s) URL"),
                Some("e.g. `https://api.pwnedpasswords.com/range/`".into()),
            );
        }
    }
    let verification_ttl = duration(
        raw.and_then(|a| a.verification_ttl.as_deref()),
        "24h",
        60_000,
        "accounts.verification_ttl",
        r,
    );
    let reset_ttl = duration(
        raw.and_then(|a| a.reset_ttl.as_deref()),
        "1h",
        60_000,
        "accounts.reset_ttl",
        r,
    );
    let mail = raw.and_then(|a| a.mail.as_ref()).and_then(|m| mail(m, r));
    if passwords && mail.is_none() && raw.is_some_and(|a| a.mail.is_none()) {
        r.error(
            0,
            "accounts.mail",
            "password accounts need a mail channel for verification and reset links".into(),
            Some("add `mail: {from: ..., smtp: {host: ..., port: 587, tls: starttls}}` or `mail: {from: ..., webhook: {url: ..., secret: ...}}`".into()),
        );
    }
    Accounts {
        passwords,
        public_url,
        password_min_length: min,
        argon2,
        hashing,
        breached_password_api,
        verification_ttl,
        reset_ttl,
        mail,
    }
}

fn mail(m: &RawMail, r: &mut Report<'_>) -> Option<Mail> {
    if m.from.parse::<lettre::message::Mailbox>().is_err() {
        r.error(
            0,
            "accounts.mail.from",
            format!("`{}` is not a mail address", m.from),
            Some("write e.g. `Shop <no-reply@shop.example>`".into()),
        );
    }
    let channel = match (&m.smtp, &m.webhook) {
        (Some(s), None) => {
            let tls = match s.tls.as_deref().unwrap_or("starttls") {
                "none" => SmtpTls::None,
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Tls,
                other => {
                    r.error(
                        0,
                        "accounts.mail.smtp.tls",
                        format!("unknown TLS mode `{other}`"),
                        Some("one of `starttls` (port 587), `tls` (port 465), `none` (a relay on this host only)".into()),
                    );
                    SmtpTls::None
                }
            };
            if s.host.is_empty() {
                r.error(
                    0,
                    "accounts.mail.smtp.host",
                    "the SMTP host is empty".into(),
                    None,
                );
            }
            if s.username.is_some() != s.password.is_some() {
                r.error(
                    0,
                    "accounts.mail.smtp.password",
                    "give both username and password, or neither".into(),
                    Some("take the password from the environment: `password: ${OMNIGATE_SMTP_PASSWORD}`".into()),
                );
            }
            MailChannel::Smtp {
                host: s.host.clone(),
                port: s.port.unwrap_or(match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::StartTls => 587,
                    SmtpTls::None => 25,
                }),
                tls,
                username: s.username.clone(),
                password: s.password.clone(),
            }
        }
        (None, Some(w)) => {
            if !url_ok(&w.url) {
                r.error(
                    0,
                    "accounts.mail.webhook.url",
                    format!("`{}` is not an http(s) URL", w.url),
                    None,
                );
            }
            if w.secret.len() < 16 {
                r.error(
                    0,
                    "accounts.mail.webhook.secret",
                    "the signing secret is missing or shorter than 16 characters".into(),
                    Some("take it from the environment: `secret: ${OMNIGATE_MAIL_SECRET}`".into()),
                );
            }
            MailChannel::Webhook {
                url: w.url.clone(),
                secret: w.secret.clone(),
            }
        }
        _ => {
            r.error(
                0,
                "accounts.mail",
                "name exactly one channel: `smtp` or `webhook`".into(),
                None,
            );
            return None;
        }
    };
    Some(Mail {
        from: m.from.clone(),
        channel,
    })
}

fn pages(raw: Option<&RawPages>, base: &Path, r: &mut Report<'_>) -> PagesLook {
    let primary_colour = raw
        .and_then(|p| p.primary_colour.clone())
        .unwrap_or_else(|| "#1d4ed8".into());
    let hex = primary_colour.strip_prefix('#').unwrap_or("");
    if !(matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())) {
        r.error(
            0,
            "pages.primary_colour",
            format!("`{primary_colour}` is not a colour"),
            Some(
                "write `#rrggbb`, e.g. `#1d4ed8`; pick one with 4.5:1 contrast against white"
                    .into(),
            ),
        );
    }
    let logo = raw.and_then(|p| p.logo.clone());
    if let Some(l) = &logo {
        if !(l.starts_with('/') && !l.starts_with("//") || l.starts_with("https://")) {
            r.error(
                0,
                "pages.logo",
                format!("`{l}` is not a path or an https URL"),
                Some("e.g. `/static/logo.svg` served by a route, or `https://cdn.shop.example/logo.svg`".into()),
            );
        }
    }
    let templates = raw
        .and_then(|p| p.templates.as_deref())
        .map(|t| base.join(t));
    if let Some(t) = &templates {
        if !t.is_dir() {
            r.error(
                0,
                "pages.templates",
                format!("`{}` is not a folder", t.display()),
                Some(
                    "name a folder of templates that replace the built-in ones of the same name"
                        .into(),
                ),
            );
        }
    }
    let brand = raw
        .and_then(|p| p.brand.clone())
        .unwrap_or_else(|| "Omnigate".into());
    if brand.trim().is_empty() || brand.len() > 80 {
        r.error(
            0,
            "pages.brand",
            "the brand name is empty or longer than 80 characters".into(),
            None,
        );
    }
    let (languages, catalogues) = languages(raw, base, r);
    let look = PagesLook {
        brand,
        logo,
        primary_colour,
        templates,
        languages,
        catalogues,
    };
    let folders_ok = [&look.templates, &look.catalogues]
        .iter()
        .all(|d| d.as_ref().is_none_or(|t| t.is_dir()));
    if folders_ok
        && look
            .languages
            .iter()
            .all(|l| crate::pages::i18n::valid_tag(l))
    {
        // Every template must render and every text exist in every
        // language, or the start is refused.
        if let Err(e) = crate::pages::Pages::new(&look) {
            let (field, hint) = if e.starts_with("template ") {
                (
                    "pages.templates",
                    "fix the template, or remove it to use the built-in one",
                )
            } else {
                (
                    "pages.catalogues",
                    "give every offered language every key of the English catalogue",
                )
            };
            for one in e.split("; ") {
                r.error(0, field, one.to_string(), Some(hint.into()));
            }
        }
    }
    look
}

/// `pages.languages` (default: English only) and `pages.catalogues`.
fn languages(
    raw: Option<&RawPages>,
    base: &Path,
    r: &mut Report<'_>,
) -> (Vec<String>, Option<std::path::PathBuf>) {
    let languages = raw
        .and_then(|p| p.languages.clone())
        .unwrap_or_else(|| vec![crate::pages::i18n::REFERENCE.to_string()]);
    if languages.is_empty() {
        r.error(
            0,
            "pages.languages",
            "no language is offered".into(),
            Some("list at least one, e.g. `[en]`".into()),
        );
    }
    for (i, l) in languages.iter().enumerate() {
        if !crate::pages::i18n::valid_tag(l) {
            r.error(
                0,
                &index("pages.languages", i),
                format!("`{l}` is not a language tag"),
                Some(format!(
                    "write a lower-case tag such as `en`, `de` or `pt-br`; built in: {}",
                    crate::pages::i18n::built_in_languages().join(", ")
                )),
            );
        } else if languages[..i].contains(l) {
            r.error(
                0,
                &index("pages.languages", i),
                format!("`{l}` is listed twice"),
                None,
            );
        }
    }
    let catalogues = raw
        .and_then(|p| p.catalogues.as_deref())
        .map(|t| base.join(t));
    if let Some(c) = &catalogues {
        if !c.is_dir() {
            r.error(
                0,
                "pages.catalogues",
                format!("`{}` is not a folder", c.display()),
                Some("name a folder of `<lang>.yaml` catalogues".into()),
            );
        }
    }
    (languages, catalogues)
}

fn events(raw: Option<&RawEvents>, r: &mut Report<'_>) -> Events {
    let mut webhooks: Vec<Webhook> = Vec::new();
    for (i, w) in raw
        .map(|e| e.webhooks.as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let at = index("events.webhooks", i);
        if webhooks.iter().any(|o| o.name == w.name) || w.name.is_empty() {
            r.error(
                0,
                &join(&at, "name"),
                format!("webhook name `{}` is empty or used twice", w.name),
                None,
            );
        }
        let url_ok = url::Url::parse(&w.url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !url_ok {
            r.error(
                0,
                &join(&at, "url"),
                format!("`{}` is not an http(s) URL", w.url),
                None,
            );
        }
        if w.secret.len() < 16 {
            r.error(
                0,
                &join(&at, "secret"),
                "the signing secret is missing or shorter than 16 characters".into(),
                Some("take it from the environment: `secret: ${OMNIGATE_WEBHOOK_SECRET}`".into()),
            );
        }
        for (j, e) in w.events.iter().enumerate() {
            if !crate::webhook::KINDS.contains(&e.as_str()) {
                r.error(
                    0,
                    &index(&join(&at, "events"), j),
                    format!("unknown event type `{e}`"),
                    Some(format!("one of {}", crate::webhook::KINDS.join(", "))),
                );
            }
        }
        webhooks.push(Webhook {
            name: w.name.clone(),
            url: w.url.clone(),
            secret: w.secret.clone(),
            events: w.events.clone(),
        });
    }
    let max_attempts = raw.and_then(|e| e.max_attempts).unwrap_or(15);
    if max_attempts == 0 {
        r.error(
            0,
            "events.max_attempts",
            "at least one attempt is needed".into(),
            None,
        );
    }
    Events {
        webhooks,
        max_attempts,
    }
}

fn sessions(raw: Option<&RawSessions>, r: &mut Report<'_>) -> Sessions {
    let idle = duration(
        raw.and_then(|s| s.idle_timeout.as_deref()),
        "30m",
        60_000,
        "sessions.idle_timeout",
        r,
    );
    let absolute = duration(
        raw.and_then(|s| s.absolute_timeout.as_deref()),
        "12h",
        60_000,
        "sessions.absolute_timeout",
        r,
    );
    if idle > absolute {
        r.error(
            0,
            "sessions.idle_timeout",
            "the idle timeout is longer than the absolute one".into(),
            Some("make idle_timeout ≤ absolute_timeout".into()),
        );
    }
    let store = match raw.and_then(|s| s.store.as_deref()).unwrap_or("embedded") {
        "embedded" => {
            if raw.is_some_and(|s| s.url.is_some()) {
                r.error(
                    0,
                    "sessions.url",
                    "the embedded session store takes no URL".into(),
                    None,
                );
            }
            SessionStoreKind::Embedded
        }
        "redis" => {
            let url = raw.and_then(|s| s.url.clone()).unwrap_or_default();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                r.error(
                    0,
                    "sessions.url",
                    "the redis session store needs `url: redis://host:6379`".into(),
                    Some("secrets belong in the environment: `url: ${OMNIGATE_REDIS_URL}`".into()),
                );
            }
            SessionStoreKind::Redis {
                url,
                key_prefix: raw
                    .and_then(|s| s.key_prefix.clone())
                    .unwrap_or_else(|| "omnigate:".into()),
            }
        }
        other => {
            r.error(
                0,
                "sessions.store",
                format!("unknown session store `{other}`"),
                Some("use `embedded` (one node) or `redis` (several nodes)".into()),
            );
            SessionStoreKind::Embedded
        }
    };
    let mut cookie_domains = Vec::new();
    for (i, d) in raw
        .map(|s| s.cookie_domains.as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        match host_name(d) {
            Some(h) if !h.starts_with("*.") && h.contains('.') => cookie_domains.push(h),
            _ => r.error(
                0,
                &index("sessions.cookie_domains", i),
                format!("`{d}` is not a domain a cookie can be shared under"),
                Some("write the parent domain, e.g. `shop.example` for www.shop.example and account.shop.example".into()),
            ),
        }
    }
    for (i, d) in cookie_domains.iter().enumerate() {
        if let Some(parent) = cookie_domains[..i].iter().find(|o| {
            crate::session::cookie_domain(d, std::slice::from_ref(o)).is_some()
                || crate::session::cookie_domain(o, std::slice::from_ref(d)).is_some()
        }) {
            r.error(
                0,
                &index("sessions.cookie_domains", i),
                format!("`{d}` overlaps `{parent}`: a host would belong to both"),
                Some("keep only the parent domain".into()),
            );
        }
    }
    let auth_host = raw
        .and_then(|s| s.auth_host.as_deref())
        .and_then(|h| match host_name(h) {
            Some(h) if !h.starts_with("*.") => Some(h),
            _ => {
                r.error(
                    0,
                    "sessions.auth_host",
                    format!("`{h}` is not a host name"),
                    Some("the one host sign-in happens on, e.g. `login.shop.example`".into()),
                );
                None
            }
        });
    let timeout = duration(
        raw.and_then(|s| s.timeout.as_deref()),
        "1s",
        50,
        "sessions.timeout",
        r,
    );
    Sessions {
        timeout,
        store,
        idle_timeout: idle,
        absolute_timeout: absolute,
        cookie_domains,
        auth_host,
    }
}

pub(super) fn url_ok(s: &str) -> bool {
    s.parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

fn identity(raw: Option<&RawIdentity>, base: &Path, r: &mut Report<'_>) -> Identity {
    let ttl = duration(
        raw.and_then(|i| i.assertion_ttl.as_deref()),
        "60s",
        1000,
        "identity.assertion_ttl",
        r,
    );
    if ttl > Duration::from_secs(60) {
        r.error(
            0,
            "identity.assertion_ttl",
            format!("{}s is longer than 60s", ttl.as_secs()),
            Some("assertions are per-request proofs; keep them short-lived (≤ 60s)".into()),
        );
    }
    let signing_key = raw
        .and_then(|i| i.signing_key.as_ref())
        .map(|k| base.join(k));
    if let Some(k) = &signing_key {
        if let Err(e) = crate::identity::assertion::Signer::load(k, false, "check", ttl) {
            r.error(
                0,
                "identity.signing_key",
                e.to_string(),
                Some("create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`".into()),
            );
        }
    }
    Identity {
        issuer: raw
            .and_then(|i| i.issuer.clone())
            .unwrap_or_else(|| "omnigate".into()),
        assertion_ttl: ttl,
        signing_key,
        key_rotation: duration(
            raw.and_then(|i| i.key_rotation.as_deref()),
            "7d",
            2_000,
            "identity.key_rotation",
            r,
        ),
    }
}

fn customers(raw: Option<&RawCustomers>, server: &Server, r: &mut Report<'_>) -> CustomerStore {
    let embedded = || CustomerStore::Embedded {
        path: server.state_dir.join("customers.db"),
    };
    let Some(c) = raw else { return embedded() };
    match c.store.as_str() {
        "embedded" => {
            if c.url.is_some() {
                r.error(
                    0,
                    "customers.url",
                    "the embedded store takes no URL".into(),
                    None,
                );
            }
            embedded()
        }
        "postgres" => {
            let url = c.url.clone().unwrap_or_default();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                r.error(
                    0,
                    "customers.url",
                    "the postgres store needs `url: postgres://user@host:5432/db`".into(),
                    Some(
                        "secrets belong in the environment: `url: ${OMNIGATE_DATABASE_URL}`".into(),
                    ),
                );
            }
            let schema = c.schema.clone().unwrap_or_else(|| "omnigate".into());
            if schema.is_empty()
                || schema.len() > 63
                || !schema
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
                || schema.starts_with(|ch: char| ch.is_ascii_digit())
            {
                r.error(
                    0,
                    "customers.schema",
                    format!("`{schema}` is not a plain schema name"),
                    Some("use lower-case letters, digits and `_`".into()),
                );
            }
            let timeout = duration(c.timeout.as_deref(), "5s", 100, "customers.timeout", r);
            CustomerStore::Postgres {
                url,
                schema,
                timeout,
            }
        }
        other => {
            r.error(
                0,
                "customers.store",
                format!("unknown customer store `{other}`"),
                Some("use `embedded` (a file in state_dir) or `postgres`".into()),
            );
            embedded()
        }
    }
}

fn server(s: &RawServer, base: &Path, r: &mut Report<'_>) -> Server {
    let threads = s.threads.unwrap_or(2);
    if threads == 0 || threads > 1024 {
        r.error(
            0,
            "server.threads",
            format!("{threads} worker threads is out of range"),
            Some("use 1 to 1024; one per core is a good start".into()),
        );
    }
    let keepalive = s.upstream_keepalive_pool.unwrap_or(1024);
    Server {
        threads,
        // false: one shard per worker thread (see `shard`), measured faster than
        // Pingora's work-stealing pool (README Performance).
        work_stealing: s.work_stealing.unwrap_or(false),
        shutdown_grace: duration(
            s.shutdown_grace.as_deref(),
            "10s",
            0,
            "server.shutdown_grace",
            r,
        ),
        state_dir: base.join(s.state_dir.as_deref().unwrap_or(".omnigate")),
        upstream_keepalive_pool: keepalive,
    }
}

fn listeners(raw: &[RawListener], base: &Path, r: &mut Report<'_>) -> Vec<Listener> {
    let mut out: Vec<Listener> = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let p = index("listeners", i);
        if out.iter().any(|o| o.name == l.name) {
            r.error(
                0,
                &join(&p, "name"),
                format!("listener name `{}` is used twice", l.name),
                None,
            );
        }
        let Some(address) = socket_addr(&l.address, &join(&p, "address"), r) else {
            continue;
        };
        if let Some(o) = out.iter().find(|o| o.address == address) {
            r.error(
                0,
                &join(&p, "address"),
                format!("address {address} is already used by listener `{}`", o.name),
                Some("each listener needs its own address and port".into()),
            );
        }
        let tls = l.tls.as_ref().map(|t| ListenerTls {
            certificates: t
                .certificates
                .iter()
                .enumerate()
                .filter_map(|(j, c)| {
                    certificate(c, &index(&join(&p, "tls.certificates"), j), base, r)
                })
                .collect(),
            http2: t.http2.unwrap_or(true),
        });
        let hsts = l.hsts.as_ref().map(|h| {
            if l.tls.is_none() {
                r.error(
                    0,
                    &join(&p, "hsts"),
                    "HSTS on a plain-HTTP listener has no effect (browsers ignore it)".into(),
                    Some("move `hsts` to the listener that has `tls`".into()),
                );
            }
            let age = duration(Some(&h.max_age), "", 0, &join(&p, "hsts.max_age"), r);
            let mut v = format!("max-age={}", age.as_secs());
            if h.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if h.preload {
                v.push_str("; preload");
            }
            v
        });
        out.push(Listener {
            name: l.name.clone(),
            address,
            tls,
            redirect_to_https: None,
            hsts,
        });
    }
    // Redirect targets refer to other listeners, so resolve them once all are known.
    for (i, l) in raw.iter().enumerate() {
        let Some(target) = &l.redirect_to_https else {
            continue;
        };
        let field = join(&index("listeners", i), "redirect_to_https");
        let port = out
            .iter()
            .find(|o| &o.name == target && o.tls.is_some())
            .map(|o| o.address.port());
        match port {
            Some(port) => {
                if let Some(me) = out.iter_mut().find(|o| o.name == l.name) {
                    if me.tls.is_some() {
                        r.error(
                            0,
                            &field,
                            "a TLS listener cannot redirect to HTTPS".into(),
                            None,
                        );
                    }
                    me.redirect_to_https = Some(port);
                }
            }
            None => {
                let tls_names: Vec<String> = out
                    .iter()
                    .filter(|o| o.tls.is_some())
                    .map(|o| o.name.clone())
                    .collect();
                r.error(
                    0,
                    &field,
                    format!("`{target}` is not the name of a TLS listener"),
                    Some(match tls_names.is_empty() {
                        true => "add a listener with `tls:` first".into(),
                        false => format!("TLS listeners: {}", tls_names.join(", ")),
                    }),
                );
            }
        }
    }
    out
}

fn certificate(
    c: &RawCertificate,
    p: &str,
    base: &Path,
    r: &mut Report<'_>,
) -> Option<Certificate> {
    let cert = base.join(&c.cert);
    let key = base.join(&c.key);
    if let Err(e) = crate::edge::tls::load_certified_key(&cert, &key) {
        use crate::edge::tls::TlsError;
        let field = match e {
            TlsError::CertFile(..) | TlsError::NoCert(_) => "cert",
            _ => "key",
        };
        r.error(
            0,
            &join(p, field),
            e.to_string(),
            Some("point `cert` at a PEM chain and `key` at its PEM private key".into()),
        );
        return None;
    }
    let mut server_names = Vec::new();
    for (i, n) in c.server_names.iter().enumerate() {
        match host_name(n) {
            Some(h) => server_names.push(h),
            None => r.error(
                0,
                &index(&join(p, "server_names"), i),
                format!("`{n}` is not a host name"),
                Some("write e.g. `shop.example.com` or `*.example.com`".into()),
            ),
        }
    }
    Some(Certificate {
        cert,
        key,
        server_names,
    })
}

fn admin(a: &RawAdmin, listeners: &[Listener], r: &mut Report<'_>) -> Option<Admin> {
    let address = socket_addr(&a.address, "admin.address", r)?;
    if let Some(l) = listeners.iter().find(|l| l.address == address) {
        r.error(
            0,
            "admin.address",
            format!("address {address} is already used by listener `{}`", l.name),
            Some("the admin listener must be separate from customer traffic".into()),
        );
    }
    let token = a.token.clone().filter(|t| !t.is_empty());
    if let Some(t) = &token {
        if t.len() < 16 {
            r.error(
                0,
                "admin.token",
                "admin token is shorter than 16 characters".into(),
                Some(
                    "use a random token, e.g. `openssl rand -hex 32`, via ${OMNIGATE_ADMIN_TOKEN}"
                        .into(),
                ),
            );
        }
    }
    Some(Admin {
        address,
        token,
        ready_when_degraded: a.ready_when_degraded.unwrap_or(true),
    })
}

/// An upstream Omnigate connects to names its addresses; one behind the
/// operator's proxy (`forward_auth: true`) names none, and nothing about
/// connecting to it.
fn reached(name: &str, u: &RawUpstream, p: &str, r: &mut Report<'_>) {
    if !u.forward_auth {
        if u.addresses.is_empty() {
            r.error(
                0,
                &join(p, "addresses"),
                "an upstream needs at least one address".into(),
                Some("add e.g. `addresses: [\"127.0.0.1:9000\"]`, or `forward_auth: true` for a backend your own proxy reaches".into()),
            );
        }
        return;
    }
    let connecting = [
        ("addresses", !u.addresses.is_empty()),
        ("health_check", u.health_check.is_some()),
        ("tls", u.tls.is_some()),
        ("balance", u.balance.is_some()),
        ("admission", u.admission.is_some()),
    ];
    for (field, set) in connecting {
        if set {
            r.error(
                0,
                &join(p, field),
                format!("upstream `{name}` is reached by your own proxy (forward_auth: true); Omnigate never connects to it"),
                Some(format!("remove `{field}`, or `forward_auth` to have Omnigate proxy it")),
            );
        }
    }
}

fn upstream(name: &str, u: &RawUpstream, base: &Path, r: &mut Report<'_>) -> Option<Upstream> {
    let p = join("upstreams", name);
    reached(name, u, &p, r);
    let mut addresses = Vec::new();
    for (i, a) in u.addresses.iter().enumerate() {
        let f = index(&join(&p, "addresses"), i);
        if let Some(addr) = upstream_address(a, &f, r) {
            if addresses.contains(&addr) {
                r.error(0, &f, format!("address {addr} is listed twice"), None);
            } else {
                addresses.push(addr);
            }
        }
    }
    let balance = match u.balance.as_deref().unwrap_or("round_robin") {
        "round_robin" => Balance::RoundRobin,
        "least_connections" => Balance::LeastConnections,
        other => {
            r.error(
                0,
                &join(&p, "balance"),
                format!("unknown balancing method `{other}`"),
                Some("use `round_robin` or `least_connections`".into()),
            );
            Balance::RoundRobin
        }
    };
    let health_check = u.health_check.as_ref().map(|h| {
        let hp = join(&p, "health_check");
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            r.error(
                0,
                &join(&hp, "path"),
                format!("`{path}` does not start with `/`"),
                None,
            );
        }
        let mut threshold = |v: Option<usize>, field: &str| {
            let v = v.unwrap_or(if field == "healthy_threshold" { 2 } else { 3 });
            if v == 0 || v > 100 {
                r.error(
                    0,
                    &join(&hp, field),
                    format!("{v} is out of range"),
                    Some("use 1 to 100".into()),
                );
            }
            v
        };
        let healthy_threshold = threshold(h.healthy_threshold, "healthy_threshold");
        let unhealthy_threshold = threshold(h.unhealthy_threshold, "unhealthy_threshold");
        HealthCheck {
            path,
            host: h.host.clone().unwrap_or_else(|| name.to_string()),
            interval: duration(h.interval.as_deref(), "5s", 10, &join(&hp, "interval"), r),
            timeout: duration(h.timeout.as_deref(), "1s", 1, &join(&hp, "timeout"), r),
            healthy_threshold,
            unhealthy_threshold,
        }
    });
    let tls = u.tls.as_ref().map(|t| {
        let ca = t.ca.as_ref().map(|c| base.join(c));
        if let Some(ca) = &ca {
            if !ca.is_file() {
                r.error(
                    0,
                    &join(&p, "tls.ca"),
                    format!("CA file {} does not exist", ca.display()),
                    None,
                );
            }
        }
        UpstreamTls {
            sni: t.sni.clone().unwrap_or_default(),
            ca,
            verify: t.verify,
        }
    });
    let identity_headers = identity_headers(
        u.identity_headers.as_ref(),
        &join(&p, "identity_headers"),
        r,
    );
    let consent_headers = u
        .consent_headers
        .as_ref()
        .map(|c| ConsentHeaders {
            customer_id: c.customer_id.clone(),
            email: c.email.clone(),
            name: c.name.clone(),
        })
        .unwrap_or_default();
    Some(Upstream {
        name: name.to_string(),
        identity_headers,
        consent_headers,
        forward_auth: u.forward_auth,
        admission: u
            .admission
            .as_ref()
            .map(|a| super::admission::admission(a, &p, r)),
        addresses,
        balance,
        health_check,
        connect_timeout: duration(
            u.connect_timeout.as_deref(),
            "5s",
            1,
            &join(&p, "connect_timeout"),
            r,
        ),
        read_timeout: duration(
            u.read_timeout.as_deref(),
            "60s",
            1,
            &join(&p, "read_timeout"),
            r,
        ),
        write_timeout: duration(
            u.write_timeout.as_deref(),
            "60s",
            1,
            &join(&p, "write_timeout"),
            r,
        ),
        idle_timeout: duration(
            u.idle_timeout.as_deref(),
            "60s",
            0,
            &join(&p, "idle_timeout"),
            r,
        ),
        tls,
    })
}

/// Header names for identity; each must be a valid, distinct header name
/// outside the hop-by-hop and forwarding headers the gateway manages.
fn identity_headers(
    raw: Option<&RawIdentityHeaders>,
    p: &str,
    r: &mut Report<'_>,
) -> crate::identity::headers::IdentityHeaders {
    let mut out = crate::identity::headers::IdentityHeaders::default();
    let Some(raw) = raw else { return out };
    const RESERVED: &[&str] = &[
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "upgrade",
        "cookie",
        "authorization",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ];
    for (field, value, slot) in [
        ("customer_id", &raw.customer_id, &mut out.customer_id),
        ("email", &raw.email, &mut out.email),
        ("name", &raw.name, &mut out.name),
    ] {
        let Some(v) = value else { continue };
        let lower = v.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            r.error(
                0,
                &join(p, field),
                format!("`{v}` is not a valid header name"),
                None,
            );
        } else if RESERVED.contains(&lower.as_str()) {
            r.error(
                0,
                &join(p, field),
                format!("`{v}` is managed by the gateway and cannot carry identity"),
                Some("pick a dedicated name, e.g. `X-Forwarded-User`".into()),
            );
        } else {
            *slot = lower;
        }
    }
    let names = out.names();
    if names[0] == names[1] || names[0] == names[2] || names[1] == names[2] {
        r.error(
            0,
            p,
            "two identity fields use the same header name".into(),
            Some("give customer_id, email and name distinct headers".into()),
        );
    }
    out
}

fn route(
    file: usize,
    p: &str,
    raw: &RawRoute,
    known: &[String],
    r: &mut Report<'_>,
) -> Option<Route> {
    let before = r.diags.len();
    if !known.iter().any(|k| k == &raw.upstream) {
        let hint = match closest(&raw.upstream, known) {
            Some(c) => format!("did you mean `{c}`?"),
            None if known.is_empty() => "define it under `upstreams:` in config.yaml".into(),
            None => format!("known upstreams: {}", known.join(", ")),
        };
        r.error(
            file,
            &join(p, "upstream"),
            format!("upstream `{}` is not defined", raw.upstream),
            Some(hint),
        );
    }
    let path_prefix = raw.path_prefix.clone().unwrap_or_else(|| "/".into());
    if !path_prefix.starts_with('/') {
        r.error(
            file,
            &join(p, "path_prefix"),
            format!("`{path_prefix}` does not start with `/`"),
            Some(format!("write `/{path_prefix}`")),
        );
    }
    if path_prefix.starts_with('/') {
        use crate::edge::path::{canonical, PathRules};
        match canonical(&path_prefix, &PathRules::default()) {
            Ok(c) if c == path_prefix => {}
            Ok(c) => r.error(
                file,
                &join(p, "path_prefix"),
                format!("`{path_prefix}` is not in canonical form, so no request path would match it"),
                Some(format!("write `{c}`")),
            ),
            Err(e) => r.error(
                file,
                &join(p, "path_prefix"),
                format!("`{path_prefix}` can never match: {e}"),
                Some("request paths with it are refused with 400; write the prefix as backends read it".into()),
            ),
        }
    }
    let kind = match raw.kind.as_deref().unwrap_or("web") {
        "web" => RouteKind::Web,
        "api" => RouteKind::Api,
        other => {
            r.error(
                file,
                &join(p, "kind"),
                format!("unknown route kind `{other}`"),
                Some("use `web` (HTML error pages) or `api` (problem JSON)".into()),
            );
            RouteKind::Web
        }
    };
    let mut methods = BTreeSet::new();
    for (i, m) in raw.methods.iter().enumerate() {
        let up = m.to_ascii_uppercase();
        if METHODS.contains(&up.as_str()) {
            methods.insert(up);
        } else {
            r.error(
                file,
                &index(&join(p, "methods"), i),
                format!("`{m}` is not an HTTP method"),
                Some(format!("use one of {}", METHODS.join(", "))),
            );
        }
    }
    let mut hosts = Vec::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        match host_name(h) {
            Some(h) => hosts.push(h),
            None => r.error(
                file,
                &index(&join(p, "hosts"), i),
                format!("`{h}` is not a host name"),
                Some("write a name without scheme or port, e.g. `shop.example.com` or `*.example.com`".into()),
            ),
        }
    }
    let max_body = match &raw.max_body {
        None => 10 * 1024 * 1024,
        Some(s) => match parse_size(s) {
            Some(n) => n,
            None => {
                r.error(
                    file,
                    &join(p, "max_body"),
                    format!("`{s}` is not a size"),
                    Some("write e.g. `512KiB`, `10MiB` or a number of bytes".into()),
                );
                0
            }
        },
    };
    let access = match raw.access.as_deref().unwrap_or("public") {
        "public" => Access::Public,
        "optional" => Access::Optional,
        "required" => Access::Required,
        "guest" => Access::Guest,
        other => {
            r.error(
                file,
                &join(p, "access"),
                format!("unknown access mode `{other}`"),
                Some("use `public`, `guest`, `optional` or `required`".into()),
            );
            Access::Public
        }
    };
    if !raw.scopes.is_empty() && access != Access::Required {
        r.error(
            file,
            &join(p, "scopes"),
            "scopes are only checked on routes with `access: required`".into(),
            Some("add `access: required` or remove `scopes`".into()),
        );
    }
    for (i, sc) in raw.scopes.iter().enumerate() {
        if sc.is_empty()
            || sc
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        {
            r.error(
                file,
                &index(&join(p, "scopes"), i),
                format!("`{sc}` is not a scope token"),
                None,
            );
        }
    }
    if r.diags.len() > before {
        return None;
    }
    let register_first = match raw.sign_in_page.as_deref() {
        None | Some("login") => false,
        Some("register") => true,
        Some(other) => {
            r.error(
                file,
                &join(p, "sign_in_page"),
                format!("unknown sign-in page `{other}`"),
                Some("`login` (the default) or `register`".into()),
            );
            false
        }
    };
    if raw.verified_email && access == Access::Public {
        r.error(
            file,
            &join(p, "verified_email"),
            "a public route looks at no identity, so it cannot ask for a confirmed email".into(),
            Some("use `access: required` (or `optional`) with `verified_email: true`".into()),
        );
    }
    let consent = raw.consent.as_ref().map(|c| {
        let on_missing = match c.on_missing.as_deref().unwrap_or("deny") {
            "deny" => crate::consent::OnMissing::Deny,
            "ask" => crate::consent::OnMissing::Ask,
            "forward_anonymous" => crate::consent::OnMissing::ForwardAnonymous,
            other => {
                r.error(
                    file,
                    &join(&join(p, "consent"), "on_missing"),
                    format!("unknown action `{other}`"),
                    Some("`deny` (403), `ask` (the consent prompt, then back) or `forward_anonymous` (no identity headers)".into()),
                );
                crate::consent::OnMissing::Deny
            }
        };
        if c.require.is_empty() {
            r.error(
                file,
                &join(&join(p, "consent"), "require"),
                "name at least one purpose".into(),
                None,
            );
        }
        if access == Access::Public {
            r.error(
                file,
                &join(p, "consent"),
                "a public route looks at no identity, so it cannot require consent".into(),
                Some("use `access: required` (or `optional`/`guest`)".into()),
            );
        }
        crate::consent::RouteRule {
            require: c.require.clone(),
            on_missing,
        }
    });
    Some(Route {
        access,
        register_first,
        consent,
        verified_email: raw.verified_email,
        scopes: raw.scopes.clone(),
        name: raw.name.clone(),
        hosts,
        path_prefix,
        methods: methods.into_iter().collect(),
        upstream: raw.upstream.clone(),
        kind,
        strip_prefix: raw.strip_prefix,
        max_body,
        case_insensitive: raw.case_insensitive,
        priority: super::admission::priority(file, raw.priority.as_deref(), p, r),
        waiting_room: raw
            .waiting_room
            .as_ref()
            .map(|w| super::admission::waiting_room(file, w, p, r)),
    })
}

/// An earlier route `a` takes every request `b` would get.
fn shadows(a: &Route, b: &Route) -> bool {
    let mut ha = a.hosts.clone();
    let mut hb = b.hosts.clone();
    ha.sort();
    hb.sort();
    ha == hb && a.path_prefix == b.path_prefix && a.methods == b.methods
}

fn demo(d: &RawDemo, r: &mut Report<'_>) -> Option<Demo> {
    if !d.enabled {
        return None;
    }
    let addr = |v: &Option<String>, field: &str, default: &str, r: &mut Report<'_>| {
        socket_addr(v.as_deref().unwrap_or(default), &join("demo", field), r)
    };
    Some(Demo {
        store: addr(&d.store, "store", "127.0.0.1:9101", r)?,
        crm: addr(&d.crm, "crm", "127.0.0.1:9102", r)?,
        api: addr(&d.api, "api", "127.0.0.1:9103", r)?,
    })
}

fn log(l: Option<&RawLog>, r: &mut Report<'_>) -> Log {
    let level = l
        .and_then(|l| l.level.clone())
        .unwrap_or_else(|| "info".into());
    if !LOG_LEVELS.contains(&level.as_str()) {
        r.error(
            0,
            "log.level",
            format!("unknown log level `{level}`"),
            Some(format!("use one of {}", LOG_LEVELS.join(", "))),
        );
    }
    let format = match l.and_then(|l| l.format.as_deref()).unwrap_or("auto") {
        "auto" => LogFormat::Auto,
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            r.error(
                0,
                "log.format",
                format!("unknown log format `{other}`"),
                Some("`auto` (readable on a terminal, JSON otherwise), `json` or `text`".into()),
            );
            LogFormat::Auto
        }
    };
    Log {
        level,
        access_log: l.and_then(|l| l.access_log).unwrap_or(true),
        format,
    }
}

fn socket_addr(s: &str, field: &str, r: &mut Report<'_>) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(
                0,
                field,
                format!("`{s}` is not an IP address with a port"),
                Some("write e.g. `127.0.0.1:8080` or `[::1]:8443`".into()),
            );
            None
        }
    }
}

/// An upstream address: `ip:port`, `[v6]:port` or `host:port`. Host names
/// are checked for form here and resolved when the pool starts, so a config
/// can be checked where the backends' names do not resolve (CI, a laptop).
fn upstream_address(s: &str, field: &str, r: &mut Report<'_>) -> Option<String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Some(s.to_string());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        r.error(
            0,
            field,
            format!("`{s}` has no port"),
            Some(format!("write e.g. `{s}:80`")),
        );
        return None;
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        r.error(
            0,
            field,
            format!("`{port}` is not a port number"),
            Some("use 1 to 65535".into()),
        );
        return None;
    }
    if host_name(host).is_none() || host.starts_with("*.") {
        r.error(
            0,
            field,
            format!("`{host}` is not a host name or IP address"),
            Some("write e.g. `10.0.0.5:8080` or `store.internal:80`".into()),
        );
        return None;
    }
    Some(s.to_string())
}

/// Parses `5s`, `250ms`, `1h 30m`. `min_ms` rejects values below it.
pub(super) fn duration(
    s: Option<&str>,
    default: &str,
    min_ms: u64,
    field: &str,
    r: &mut Report<'_>,
) -> Duration {
    duration_in(0, s, default, min_ms, field, r)
}

/// [`duration`] of a field in file number `file`.
pub(super) fn duration_in(
    file: usize,
    s: Option<&str>,
    default: &str,
    min_ms: u64,
    field: &str,
    r: &mut Report<'_>,
) -> Duration {
    let s = s.unwrap_or(default);
    match humantime::parse_duration(s) {
        Ok(d) if d.as_millis() >= u128::from(min_ms) => d,
        Ok(_) => {
            r.error(
                file,
                field,
                format!("`{s}` is too short"),
                Some(format!("use at least {min_ms}ms")),
            );
            Duration::ZERO
        }
        Err(_) => {
            r.error(
                file,
                field,
                format!("`{s}` is not a duration"),
                Some("write e.g. `500ms`, `5s`, `2m`".into()),
            );
            Duration::ZERO
        }
    }
}

/// Parses `10MiB`, `512KiB`, `1MB`, `1024`.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A lower-cased host name, `*.` wildcard allowed, or None if malformed.
pub(super) fn host_name(s: &str) -> Option<String> {
    let h = s.trim().to_ascii_lowercase();
    let body = h.strip_prefix("*.").unwrap_or(&h);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    ok.then_some(h)
}
