//! `providers:` from the raw format to the model: a preset's defaults under
//! what the operator wrote, the protocol (OpenID Connect or OAuth 2.0 with a
//! profile mapping), client authentication and its keys, and each quirk's
//! settings, every problem reported at its field.

use std::path::Path;

use super::model::{Login, LoginEndpoints, Provider};
use super::raw::{BoolOrField, OneOrMany, RawApple, RawBearer, RawLogin, RawProfile, RawProvider};
use super::source::{index, join};
use super::validate::{duration, host_name, url_ok};
use super::{closest, Report};
use crate::login::client::{AppleSecret, ClientKey, KeyAlg, TokenAuth};
use crate::login::preset::{self, Preset, Protocol};
use crate::login::profile::{ProfileMap, Verification};
use crate::login::quirks::{is_guid, TENANT};

/// Apple accepts client secrets valid for at most six months.
const APPLE_MAX_TTL_SECS: u64 = 15_777_000;

pub(super) fn providers(raw: &[RawProvider], base: &Path, r: &mut Report<'_>) -> Vec<Provider> {
    let mut out: Vec<Provider> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let at = index("providers", i);
        if out.iter().any(|o| o.name == p.name) {
            r.error(
                0,
                &join(&at, "name"),
                format!("provider name `{}` is used twice", p.name),
                None,
            );
        }
        out.push(provider(p, &at, base, r));
    }
    out
}

fn provider(p: &RawProvider, at: &str, base: &Path, r: &mut Report<'_>) -> Provider {
    let preset = preset_of(p, at, r);
    let protocol = protocol(p, preset.as_ref(), at, r);
    let issuer = issuer(p, preset.as_ref(), at, r);
    let discovery_url = p.discovery_url.clone().or_else(|| {
        preset
            .as_ref()
            .and_then(|s| s.discovery_url.map(String::from))
    });
    check_url(discovery_url.as_deref(), &join(at, "discovery_url"), r);
    check_url(p.jwks_uri.as_deref(), &join(at, "jwks_uri"), r);
    let bearer = p
        .bearer
        .as_ref()
        .map(|b| bearer(b, &issuer, &protocol, &join(at, "bearer"), r));
    let login = p.login.as_ref().map(|l| {
        let ctx = Ctx {
            name: &p.name,
            issuer: &issuer,
            preset: preset.as_ref(),
            at: join(at, "login"),
            base,
        };
        login(l, &ctx, protocol.clone(), r)
    });
    check_name(&p.name, at, r);
    let jwks_min_refresh = duration(
        p.jwks_min_refresh.as_deref(),
        "10s",
        100,
        &join(at, "jwks_min_refresh"),
        r,
    );
    Provider {
        name: p.name.clone(),
        issuer,
        discovery_url,
        jwks_min_refresh,
        jwks_uri: p.jwks_uri.clone(),
        bearer,
        login,
    }
}

fn preset_of(p: &RawProvider, at: &str, r: &mut Report<'_>) -> Option<Preset> {
    let name = p.preset.as_deref()?;
    let found = preset::preset(name);
    if found.is_none() {
        let names: Vec<String> = preset::NAMES.iter().map(|s| s.to_string()).collect();
        let hint = match closest(name, &names) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("one of: {}", preset::NAMES.join(", ")),
        };
        r.error(
            0,
            &join(at, "preset"),
            format!("`{name}` is not a preset"),
            Some(hint),
        );
    }
    found
}

fn protocol(p: &RawProvider, preset: Option<&Preset>, at: &str, r: &mut Report<'_>) -> Protocol {
    let base = match p.protocol.as_deref() {
        None => preset.map(|s| s.protocol.clone()).unwrap_or_default(),
        Some("oidc") => Protocol::Oidc,
        Some("oauth2") => match preset.map(|s| &s.protocol) {
            Some(Protocol::OAuth2(m)) => Protocol::OAuth2(m.clone()),
            _ => Protocol::OAuth2(ProfileMap::default()),
        },
        Some(other) => {
            r.error(
                0,
                &join(at, "protocol"),
                format!("`{other}` is not a protocol"),
                Some("`oidc` (ID tokens) or `oauth2` (the profile read from an API)".into()),
            );
            Protocol::Oidc
        }
    };
    let raw_profile = p.login.as_ref().and_then(|l| l.profile.as_ref());
    match (base, raw_profile) {
        (Protocol::OAuth2(m), Some(rp)) => Protocol::OAuth2(profile_map(m, rp)),
        (Protocol::Oidc, Some(_)) => {
            r.error(
                0,
                &join(&join(at, "login"), "profile"),
                "a profile mapping applies to OAuth 2.0 providers only".into(),
                Some("OpenID Connect identities come from the ID token; set `protocol: oauth2` if the provider has none".into()),
            );
            Protocol::Oidc
        }
        (p, None) => p,
    }
}

fn profile_map(mut m: ProfileMap, rp: &RawProfile) -> ProfileMap {
    if let Some(id) = &rp.id {
        m.id = id.clone();
    }
    if let Some(e) = &rp.email {
        m.email = e.clone();
    }
    match &rp.name {
        Some(OneOrMany::One(n)) => m.name = vec![n.clone()],
        Some(OneOrMany::Many(ns)) => m.name = ns.clone(),
        None => {}
    }
    match &rp.email_verified {
        Some(BoolOrField::Bool(true)) => m.email_verified = Verification::Always,
        Some(BoolOrField::Bool(false)) => m.email_verified = Verification::Never,
        Some(BoolOrField::Field(f)) => m.email_verified = Verification::Field(f.clone()),
        None => {}
    }
    m
}

fn issuer(p: &RawProvider, preset: Option<&Preset>, at: &str, r: &mut Report<'_>) -> String {
    let raw = p
        .issuer
        .clone()
        .or_else(|| preset.map(|s| s.issuer.to_string()));
    let Some(raw) = raw else {
        r.error(
            0,
            &join(at, "issuer"),
            "a provider needs an issuer".into(),
            Some(format!(
                "write the issuer its discovery document states, or use a preset ({})",
                preset::NAMES.join(", ")
            )),
        );
        return String::new();
    };
    let issuer = raw.trim_end_matches('/').to_string();
    // A multi-tenant template is a URL once a tenant fills it.
    let filled = issuer.replace(TENANT, "00000000-0000-0000-0000-000000000000");
    if !url_ok(&filled) {
        r.error(
            0,
            &join(at, "issuer"),
            format!("`{raw}` is not an http(s) URL"),
            Some("write the issuer exactly as the provider's discovery document states it".into()),
        );
    }
    issuer
}

fn bearer(
    b: &RawBearer,
    issuer: &str,
    protocol: &Protocol,
    bp: &str,
    r: &mut Report<'_>,
) -> crate::auth::token::BearerPolicy {
    if matches!(protocol, Protocol::OAuth2(_)) {
        r.error(
            0,
            bp,
            "an OAuth 2.0 provider's access tokens cannot be verified here".into(),
            Some(
                "accept bearer tokens from OpenID Connect providers that issue JWT access tokens"
                    .into(),
            ),
        );
    }
    if issuer.contains(TENANT) {
        r.error(
            0,
            bp,
            "bearer tokens need one issuer, not a multi-tenant template".into(),
            Some("add a provider with the tenant's own issuer for its API tokens".into()),
        );
    }
    if b.audiences.is_empty() || b.audiences.iter().any(|a| a.is_empty()) {
        r.error(
            0,
            &join(bp, "audiences"),
            "bearer tokens need at least one expected audience".into(),
            Some("list the `aud` values your API tokens carry; accepting any audience would accept tokens minted for other services".into()),
        );
    }
    let names: Vec<String> = if b.algorithms.is_empty() {
        vec!["RS256".into(), "ES256".into()]
    } else {
        b.algorithms.clone()
    };
    let mut algorithms = Vec::new();
    for (j, a) in names.iter().enumerate() {
        match crate::auth::token::parse_algorithm(a) {
            Some(alg) => algorithms.push(alg),
            None => r.error(
                0,
                &index(&join(bp, "algorithms"), j),
                format!("`{a}` is not an accepted signature algorithm"),
                Some("use asymmetric ones: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA".into()),
            ),
        }
    }
    crate::auth::token::BearerPolicy {
        issuer: issuer.to_string(),
        audiences: b.audiences.clone(),
        algorithms,
        leeway: 30,
    }
}

/// What reading one `login:` needs besides the section itself.
struct Ctx<'a> {
    name: &'a str,
    issuer: &'a str,
    preset: Option<&'a Preset>,
    at: String,
    base: &'a Path,
}

impl Ctx<'_> {
    fn field(&self, f: &str) -> String {
        join(&self.at, f)
    }
}

fn login(l: &RawLogin, c: &Ctx<'_>, protocol: Protocol, r: &mut Report<'_>) -> Login {
    if l.client_id.is_empty() {
        r.error(0, &c.field("client_id"), "client_id is empty".into(), None);
    }
    let token_auth = token_auth(l, c, r);
    let client_key = l.private_key.as_ref().and_then(|k| {
        let at = join(&c.field("private_key"), "file");
        read_key(&k.file, k.key_id.clone(), c.base, &at, r)
    });
    let apple = l.apple.as_ref().and_then(|a| apple(a, c, r));
    let client_secret = client_secret(l, c, token_auth, l.apple.is_some(), r);
    if token_auth == Some(TokenAuth::PrivateKeyJwt) && l.private_key.is_none() {
        r.error(
            0,
            &c.field("private_key"),
            "`private_key_jwt` needs the key to sign with".into(),
            Some("set `private_key: {file: client-key.pem, key_id: ...}` and register its public key with the provider".into()),
        );
    }
    if l.logout_at_provider == Some(true) && matches!(protocol, Protocol::OAuth2(_)) {
        r.error(
            0,
            &c.field("logout_at_provider"),
            "an OAuth 2.0 provider has no sign-out endpoint to send the customer to".into(),
            None,
        );
    }
    let endpoints = endpoints(l, c, &protocol, r);
    let form_post = response_mode(l, c, r);
    let appsecret_proof = l
        .appsecret_proof
        .unwrap_or_else(|| c.preset.is_some_and(|p| p.appsecret_proof));
    tenants(l, c, r);
    Login {
        client_id: l.client_id.clone(),
        client_secret,
        scopes: scopes(l, c, &protocol),
        display_name: l.display_name.clone().unwrap_or_else(|| {
            c.preset
                .map_or_else(|| c.name.to_string(), |p| p.display_name.to_string())
        }),
        logout_at_provider: l.logout_at_provider.unwrap_or(false),
        trusted_email: l.trusted_email.unwrap_or(false),
        protocol,
        endpoints,
        pkce: l.pkce.unwrap_or_else(|| c.preset.is_none_or(|p| p.pkce)),
        token_auth,
        client_key,
        apple,
        form_post,
        hosted_domain: hosted_domain(l, c, r),
        tenants: l.tenants.iter().map(|t| t.to_ascii_lowercase()).collect(),
        appsecret_proof,
        logo: logo(l, c, r),
        order: l.order.unwrap_or(0),
    }
}

fn token_auth(l: &RawLogin, c: &Ctx<'_>, r: &mut Report<'_>) -> Option<TokenAuth> {
    match l.token_auth.as_deref() {
        None => c.preset.and_then(|p| p.token_auth),
        Some(s) => {
            let found = TokenAuth::parse(s);
            if found.is_none() {
                r.error(
                    0,
                    &c.field("token_auth"),
                    format!("`{s}` is not a client authentication method"),
                    Some("`client_secret_basic`, `client_secret_post` or `private_key_jwt`".into()),
                );
            }
            found
        }
    }
}

/// The secret, required unless the gateway signs (a key, or Apple's).
fn client_secret(
    l: &RawLogin,
    c: &Ctx<'_>,
    method: Option<TokenAuth>,
    apple: bool,
    r: &mut Report<'_>,
) -> String {
    // Without a method configured, a key means `private_key_jwt` where
    // discovery offers it: no secret needed then.
    let signs = apple
        || method == Some(TokenAuth::PrivateKeyJwt)
        || (method.is_none() && l.private_key.is_some());
    let secret = l.client_secret.clone().unwrap_or_default();
    if apple && !secret.is_empty() {
        r.error(
            0,
            &c.field("client_secret"),
            "Sign in with Apple's client secret is made by the gateway from `apple:`".into(),
            Some("remove `client_secret`".into()),
        );
    } else if (!signs || !secret.is_empty()) && secret.len() < 8 {
        r.error(
            0,
            &c.field("client_secret"),
            "client_secret is missing or too short".into(),
            Some("take it from the provider's client registration, via ${ENV}".into()),
        );
    }
    secret
}

fn read_key(
    file: &str,
    key_id: Option<String>,
    base: &Path,
    at: &str,
    r: &mut Report<'_>,
) -> Option<ClientKey> {
    let path = base.join(file);
    let pem = match std::fs::read_to_string(&path) {
        Ok(p) => p,
        Err(e) => {
            r.error(
                0,
                at,
                format!("cannot read {}: {e}", path.display()),
                Some("give the PEM file of the private key, relative to the configuration".into()),
            );
            return None;
        }
    };
    match ClientKey::from_pem(&pem, key_id) {
        Ok(k) => Some(k),
        Err(e) => {
            r.error(0, at, format!("{}: {e}", path.display()), None);
            None
        }
    }
}

fn apple(a: &RawApple, c: &Ctx<'_>, r: &mut Report<'_>) -> Option<AppleSecret> {
    let at = c.field("apple");
    for (field, value) in [("team_id", &a.team_id), ("key_id", &a.key_id)] {
        if value.is_empty() || !value.chars().all(|ch| ch.is_ascii_alphanumeric()) {
            r.error(
                0,
                &join(&at, field),
                format!("`{value}` is not an Apple {}", field.replace('_', " ")),
                Some("copy it from the Apple Developer account (ten letters and digits)".into()),
            );
        }
    }
    let ttl = duration(
        a.secret_ttl.as_deref(),
        "1h",
        60_000,
        &join(&at, "secret_ttl"),
        r,
    );
    if ttl.as_secs() > APPLE_MAX_TTL_SECS {
        r.error(
            0,
            &join(&at, "secret_ttl"),
            format!("{}s is longer than Apple accepts", ttl.as_secs()),
            Some("at most 180 days; the gateway renews the secret itself".into()),
        );
    }
    let field = join(&at, "private_key_file");
    let key = read_key(
        &a.private_key_file,
        Some(a.key_id.clone()),
        c.base,
        &field,
        r,
    )?;
    if key.alg != KeyAlg::Es256 {
        r.error(
            0,
            &field,
            "Apple's keys are P-256 (the .p8 file)".into(),
            None,
        );
        return None;
    }
    Some(AppleSecret {
        team_id: a.team_id.clone(),
        key,
        ttl_secs: ttl.as_secs(),
    })
}

fn scopes(l: &RawLogin, c: &Ctx<'_>, protocol: &Protocol) -> Vec<String> {
    let mut scopes: Vec<String> = if !l.scopes.is_empty() {
        l.scopes.clone()
    } else if let Some(p) = c.preset {
        p.scopes.iter().map(|s| s.to_string()).collect()
    } else if matches!(protocol, Protocol::Oidc) {
        vec!["openid".into(), "email".into(), "profile".into()]
    } else {
        Vec::new()
    };
    if matches!(protocol, Protocol::Oidc) && !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    scopes
}

fn endpoints(l: &RawLogin, c: &Ctx<'_>, protocol: &Protocol, r: &mut Report<'_>) -> LoginEndpoints {
    let pick = |own: &Option<String>, preset: Option<&'static str>| {
        own.clone().or_else(|| preset.map(String::from))
    };
    let ps = c.preset;
    let e = LoginEndpoints {
        authorization: pick(
            &l.authorization_endpoint,
            ps.and_then(|p| p.authorization_endpoint),
        ),
        token: pick(&l.token_endpoint, ps.and_then(|p| p.token_endpoint)),
        userinfo: pick(&l.userinfo_endpoint, ps.and_then(|p| p.userinfo_endpoint)),
        emails: pick(&l.emails_endpoint, ps.and_then(|p| p.emails_endpoint)),
    };
    let fields = [
        ("authorization_endpoint", &e.authorization),
        ("token_endpoint", &e.token),
        ("userinfo_endpoint", &e.userinfo),
        ("emails_endpoint", &e.emails),
    ];
    for (f, v) in fields {
        check_url(v.as_deref(), &c.field(f), r);
        let needed = f != "emails_endpoint" && matches!(protocol, Protocol::OAuth2(_));
        if needed && v.is_none() {
            r.error(
                0,
                &c.field(f),
                format!("an OAuth 2.0 provider needs `{f}` (there is no discovery)"),
                Some("take it from the provider's developer documentation".into()),
            );
        }
    }
    e
}

fn response_mode(l: &RawLogin, c: &Ctx<'_>, r: &mut Report<'_>) -> bool {
    match l.response_mode.as_deref() {
        None => c.preset.is_some_and(|p| p.form_post),
        Some("query") => false,
        Some("form_post") => true,
        Some(other) => {
            r.error(
                0,
                &c.field("response_mode"),
                format!("`{other}` is not a response mode"),
                Some("`query` or `form_post`".into()),
            );
            false
        }
    }
}

fn tenants(l: &RawLogin, c: &Ctx<'_>, r: &mut Report<'_>) {
    if !l.tenants.is_empty() && !c.issuer.contains(TENANT) {
        r.error(
            0,
            &c.field("tenants"),
            "tenants apply to a multi-tenant issuer only".into(),
            Some(format!(
                "the issuer must hold `{TENANT}` (the Microsoft preset's does)"
            )),
        );
    }
    for (i, t) in l.tenants.iter().enumerate() {
        if !is_guid(t) {
            r.error(
                0,
                &index(&c.field("tenants"), i),
                format!("`{t}` is not a tenant id"),
                Some(
                    "a directory (tenant) id is a GUID, e.g. 72f988bf-86f1-41af-91ab-2d7cd011db47"
                        .into(),
                ),
            );
        }
    }
}

fn hosted_domain(l: &RawLogin, c: &Ctx<'_>, r: &mut Report<'_>) -> Option<String> {
    let d = l.hosted_domain.as_deref()?;
    match host_name(d).filter(|h| !h.starts_with("*.")) {
        Some(h) => Some(h),
        None => {
            r.error(
                0,
                &c.field("hosted_domain"),
                format!("`{d}` is not a domain name"),
                None,
            );
            None
        }
    }
}

fn logo(l: &RawLogin, c: &Ctx<'_>, r: &mut Report<'_>) -> Option<String> {
    let own = match l.logo.as_deref() {
        None => return c.preset.map(|p| p.name.to_string()),
        Some("none") => return None,
        Some(n) => n,
    };
    if !preset::NAMES.contains(&own) {
        r.error(
            0,
            &c.field("logo"),
            format!("`{own}` is not a shipped logo"),
            Some(format!("one of: {}, none", preset::NAMES.join(", "))),
        );
        return None;
    }
    Some(own.to_string())
}

fn check_url(url: Option<&str>, at: &str, r: &mut Report<'_>) {
    if let Some(u) = url {
        if !url_ok(u) {
            r.error(0, at, format!("`{u}` is not an http(s) URL"), None);
        }
    }
}

fn check_name(name: &str, at: &str, r: &mut Report<'_>) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        r.error(
            0,
            &join(at, "name"),
            format!("`{name}` cannot appear in a URL path"),
            Some("use letters, digits, `-` and `_` (it becomes /_auth/login/<name>)".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use crate::login::client::TokenAuth;
    use crate::login::preset::Protocol;

    const BASE: &str = "listeners:\n  - name: https\n    address: 127.0.0.1:8443\n    tls: { certificates: [] }\nupstreams:\n  app: { addresses: [127.0.0.1:9000] }\nroutes:\n  - { name: r, hosts: [shop.test], path_prefix: /, upstream: app, kind: web, access: optional }\n";

    fn with(
        providers: &str,
        files: &[(&str, &str)],
    ) -> Result<crate::config::model::Config, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(dir.path().join(n), t).unwrap();
        }
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, format!("{BASE}providers:\n{providers}")).unwrap();
        load(&p).map_err(|e| e.0.iter().map(|d| d.to_string()).collect())
    }

    fn ec_pem() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    }

    #[test]
    fn presets_fill_endpoints_scopes_and_quirks() {
        let key = ec_pem();
        let c = with(
            "  - { name: gh, preset: github, login: { client_id: a, client_secret: s3cret-s3cret } }
  - { name: fb, preset: meta, login: { client_id: a, client_secret: s3cret-s3cret, display_name: Meta } }
  - { name: ms, preset: microsoft, login: { client_id: a, client_secret: s3cret-s3cret } }
  - name: apple
    preset: apple
    login: { client_id: com.shop, apple: { team_id: TEAM123456, key_id: KEY1234567, private_key_file: k.p8 } }
",
            &[("k.p8", &key)],
        )
        .unwrap();
        let p = |n: &str| c.providers.iter().find(|p| p.name == n).unwrap();
        let gh = p("gh").login.as_ref().unwrap();
        assert!(matches!(gh.protocol, Protocol::OAuth2(ref m) if m.name == ["name", "login"]));
        assert_eq!(
            gh.endpoints.emails.as_deref(),
            Some("https://api.github.com/user/emails")
        );
        assert_eq!(gh.token_auth, Some(TokenAuth::Post));
        assert_eq!(
            (gh.logo.as_deref(), gh.display_name.as_str()),
            (Some("github"), "GitHub")
        );
        let fb = p("fb").login.as_ref().unwrap();
        assert!(fb.appsecret_proof && fb.pkce);
        assert_eq!(fb.display_name, "Meta");
        assert_eq!(
            fb.scopes,
            ["email", "public_profile"],
            "no openid for OAuth 2.0"
        );
        assert_eq!(p("fb").issuer, "https://www.facebook.com");
        assert_eq!(
            p("ms").issuer,
            "https://login.microsoftonline.com/{tenantid}/v2.0"
        );
        assert!(p("ms")
            .discovery_url
            .as_deref()
            .unwrap()
            .contains("/common/"));
        let ap = p("apple").login.as_ref().unwrap();
        assert!(ap.form_post && !ap.pkce && ap.client_secret.is_empty());
        assert_eq!(ap.apple.as_ref().unwrap().ttl_secs, 3600);
        assert_eq!(ap.scopes, ["openid", "name", "email"]);
    }

    #[test]
    fn each_mistake_is_reported_at_its_field() {
        let files = [("bad.pem", "not a key")];
        let errs = with(
            "  - { name: a, preset: githb, login: { client_id: x, client_secret: s3cret-s3cret } }
  - { name: b, protocol: oauth2, issuer: https://b.test, login: { client_id: x, client_secret: s3cret-s3cret } }
  - { name: c, preset: meta, bearer: { audiences: [x] }, login: { client_id: x, client_secret: s3cret-s3cret, logout_at_provider: true } }
  - { name: d, issuer: https://d.test, login: { client_id: x, client_secret: s3cret-s3cret, tenants: [nope], token_auth: client_secret_jwt } }
  - { name: e, issuer: https://e.test, login: { client_id: x, token_auth: private_key_jwt } }
  - { name: f, issuer: https://f.test, login: { client_id: x, private_key: { file: bad.pem }, profile: { id: uid } } }
  - { name: g, preset: apple, login: { client_id: x, client_secret: s3cret-s3cret, apple: { team_id: T1, key_id: K1, private_key_file: missing.p8 } } }
  - { name: h, login: { client_id: x, client_secret: s3cret-s3cret, response_mode: fragment, logo: myspace } }
  - { name: i, issuer: https://i.test, login: { client_id: x } }
",
            &files,
        )
        .unwrap_err();
        let has = |field: &str, words: &str| {
            assert!(
                errs.iter().any(|e| e.contains(field) && e.contains(words)),
                "no `{words}` at {field}: {errs:#?}"
            )
        };
        has("providers[0].preset", "did you mean `github`?");
        has(
            "providers[1].login.authorization_endpoint",
            "needs `authorization_endpoint`",
        );
        has(
            "providers[1].login.token_endpoint",
            "needs `token_endpoint`",
        );
        has("providers[2].bearer", "cannot be verified here");
        has(
            "providers[2].login.logout_at_provider",
            "no sign-out endpoint",
        );
        has("providers[3].login.tenants", "multi-tenant issuer only");
        has("providers[3].login.tenants[0]", "not a tenant id");
        has(
            "providers[3].login.token_auth",
            "not a client authentication method",
        );
        has(
            "providers[4].login.private_key",
            "needs the key to sign with",
        );
        has("providers[5].login.private_key.file", "not a PEM");
        has("providers[5].login.profile", "OAuth 2.0 providers only");
        has("providers[8].login.client_secret", "missing or too short");
        // A key without a configured method needs no secret (private_key_jwt).
        assert!(
            !errs
                .iter()
                .any(|e| e.contains("providers[5].login.client_secret")),
            "{errs:#?}"
        );
        has("providers[6].login.client_secret", "made by the gateway");
        has("providers[6].login.apple.private_key_file", "cannot read");
        has("providers[7].issuer", "needs an issuer");
        has("providers[7].login.response_mode", "not a response mode");
        has("providers[7].login.logo", "not a shipped logo");
    }

    #[test]
    fn apple_keys_must_be_p256() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let errs = with(
            "  - { name: g, preset: apple, login: { client_id: x, apple: { team_id: T1, key_id: K1, private_key_file: k.pem, secret_ttl: 200d } } }\n",
            &[("k.pem", &p384.serialize_pem())],
        )
        .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("private_key_file") && e.contains("P-256")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("secret_ttl") && e.contains("longer than Apple accepts")),
            "{errs:#?}"
        );
    }
}
