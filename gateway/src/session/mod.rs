//! Browser sessions: an opaque 256-bit id in a cookie (`__Host-` when
//! host-only, `__Secure-` with `Domain=` under a configured cookie domain;
//! always Secure, HttpOnly, SameSite=Lax), a new id at every login, idle and
//! absolute timeouts, and a per-session CSRF token for the gateway's own
//! forms. The store keeps only the SHA-256 of the id. Never forwards the
//! session cookie to a backend.
//!
//! One login can hold several sessions, one per cookie scope (a domain it
//! hopped to); they share a `login_id`, so signing out ends all of them.

mod bounded;
mod embedded;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

pub use bounded::Bounded;
pub use embedded::EmbeddedStore;
pub use redis::RedisStore;

/// The session cookie on a host outside every cookie domain (host-only, so `__Host-` applies).
pub const COOKIE: &str = "__Host-omnigate";
/// The session cookie shared by the hosts of a configured cookie domain.
pub const DOMAIN_COOKIE: &str = "__Secure-omnigate";

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The configured cookie domain `host` (lower-case, no port) belongs to, if any.
pub fn cookie_domain<'d>(host: &str, domains: &'d [String]) -> Option<&'d str> {
    domains
        .iter()
        .find(|d| {
            host == d.as_str()
                || host
                    .strip_suffix(d.as_str())
                    .is_some_and(|sub| sub.ends_with('.'))
        })
        .map(String::as_str)
}

/// The session cookie's name for a host in `domain` (None: host-only).
pub fn cookie_name(domain: Option<&str>) -> &'static str {
    if domain.is_some() {
        DOMAIN_COOKIE
    } else {
        COOKIE
    }
}

/// `Set-Cookie` for the session cookie of a host in `domain`; `max_age` 0 clears it.
pub fn set_session_cookie(domain: Option<&str>, value: &str, max_age: i64) -> String {
    match domain {
        Some(d) => format!(
            "{DOMAIN_COOKIE}={value}; Domain={d}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
        ),
        None => set_cookie(COOKIE, value, max_age),
    }
}
/// A guest's stable id on `access: guest` routes (not a secret: a cart key).
pub const GUEST_COOKIE: &str = "__Host-omnigate-guest";
/// How long a guest id lives without a visit.
pub const GUEST_MAX_AGE: i64 = 30 * 24 * 3600;

/// A new guest id (`gst_` and 128 random bits) and the cookie value that
/// carries it: the id, `.`, and its MAC under the deployment's guest key.
pub fn new_guest_id(key: &GuestKey) -> Option<(String, String)> {
    let id = format!("gst_{}", hex::encode(rand::random::<[u8; 16]>()));
    let cookie = format!("{id}.{}", key.mac(&id)?);
    Some((id, cookie))
}

/// The guest id a cookie value carries, if this deployment issued it (its
/// MAC checks out, in constant time). A well-formed id a client chose fails.
pub fn guest_from_cookie<'a>(v: &'a str, key: &GuestKey) -> Option<&'a str> {
    let (id, mac) = v.split_once('.')?;
    let shaped = id.len() == 36
        && id.starts_with("gst_")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let expected = key.mac(id)?;
    (shaped && same_token(mac, &expected)).then_some(id)
}

/// The key of the guest-id MAC, shared by every node of a deployment.
#[derive(Clone)]
pub struct GuestKey(Vec<u8>);

impl GuestKey {
    /// The name it is stored under in the customer directory.
    pub const NAME: &'static str = "guest-id-mac";

    pub fn new(secret: &[u8]) -> GuestKey {
        GuestKey(secret.to_vec())
    }

    /// HMAC-SHA256 of the id, 128 bits in hex; `None` cannot happen (HMAC
    /// takes keys of any length) but fails closed if it did.
    fn mac(&self, id: &str) -> Option<String> {
        self.mac_for("omnigate-guest", id)
    }

    /// The same MAC over `data` for another use, named by `label` so a
    /// value made for one use never checks out for another.
    pub fn mac_for(&self, label: &str, data: &str) -> Option<String> {
        self.mac_of(&[label, data])
    }

    /// The MAC of `parts` joined by `:` (the first names the use).
    pub fn mac_of(&self, parts: &[&str]) -> Option<String> {
        use hmac::{Hmac, Mac};
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                m.update(b":");
            }
            m.update(p.as_bytes());
        }
        Some(hex::encode(&m.finalize().into_bytes()[..16]))
    }
}

impl std::fmt::Debug for GuestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestKey(..)")
    }
}

/// Binds a pending login to the browser that started it.
pub const LOGIN_COOKIE: &str = "__Host-omnigate-login";

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub id_hash: String,
    pub customer_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub provider: String,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    /// Shared by every session one sign-in created (one per cookie scope).
    #[serde(default)]
    pub login_id: String,
    /// The provider's session id (`sid` of the ID token), for back-channel logout.
    #[serde(default)]
    pub provider_sid: Option<String>,
    /// The guest id this sign-in took over, until the first request tells the backend.
    #[serde(default)]
    pub converted_guest: Option<String>,
    /// The browser and system that signed in ("Chrome on Linux").
    #[serde(default)]
    pub device: Option<String>,
    /// Purposes granted (id → version), from the consent ledger.
    #[serde(default)]
    pub consents: std::collections::BTreeMap<String, u32>,
}

/// A short name for the browser and system of a User-Agent ("Chrome on
/// Linux"), for the customer's list of sessions; never the raw header. Pure.
pub fn device(user_agent: &str) -> String {
    let ua = user_agent;
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") && ua.contains("Version/") {
        "Safari"
    } else if ua.contains("curl/") {
        "curl"
    } else {
        "A browser"
    };
    let system = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        return browser.to_string();
    };
    format!("{browser} on {system}")
}

/// The customer facts a session carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl Profile {
    fn apply(&self, s: &mut Session) {
        s.email.clone_from(&self.email);
        s.email_verified = self.email_verified;
        s.name.clone_from(&self.name);
    }
}

/// Which sessions to end together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group<'a> {
    /// Every session of the customer ("log out everywhere").
    Customer(&'a str),
    /// Every session of one sign-in, across the domains it reached.
    Login(&'a str),
    /// The sessions a provider session (`sid`) started.
    ProviderSession { provider: &'a str, sid: &'a str },
}

/// A single-use permission for one host to open a session of an existing
/// sign-in; kept under the hash of its code for at most [`GRANT_TTL`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// The host (with port, lower-case) that may redeem it.
    pub host: String,
    /// The path to continue to on that host.
    pub return_to: String,
    /// The session (id hash) it extends.
    pub source: String,
    pub expires_at: i64,
    /// `hop_challenge` of the nonce the redeeming browser holds in
    /// [`HOP_COOKIE`] on that host: a code opened in another browser fails.
    pub challenge: String,
}

/// The nonce a host sets before sending a browser to be signed in elsewhere.
pub const HOP_COOKIE: &str = "__Host-omnigate-hop";
/// The query parameter that carries the nonce's challenge in a return URL.
pub const HOP_PARAM: &str = "omnigate_hop";
/// How long a browser may take between leaving a host and coming back.
pub const HOP_NONCE_TTL: i64 = 600;

/// The challenge of a hop nonce (as PKCE's S256).
pub fn hop_challenge(nonce: &str) -> String {
    B64.encode(Sha256::digest(nonce.as_bytes()))
}

/// `url` without the hop parameter, and the parameter's value if present.
pub fn split_hop_param(url: &url::Url) -> (url::Url, Option<String>) {
    let mut found = None;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, v)| {
            let ours = k == HOP_PARAM;
            if ours && found.is_none() {
                found = Some(v.to_string());
            }
            !ours
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    if found.is_some() {
        if kept.is_empty() {
            out.set_query(None);
        } else {
            out.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    (out, found)
}

/// How long a cross-domain sign-in code is valid.
pub const GRANT_TTL: i64 = 30;

/// Session cache lookups, counted by the store that owns the cache.
#[derive(Clone)]
pub struct CacheStats {
    hit: prometheus::IntCounter,
    miss: prometheus::IntCounter,
}

impl CacheStats {
    pub fn new(counters: &prometheus::IntCounterVec) -> CacheStats {
        CacheStats {
            hit: counters.with_label_values(&["hit"]),
            miss: counters.with_label_values(&["miss"]),
        }
    }

    /// Counters registered nowhere (tests, tools).
    pub fn detached() -> CacheStats {
        CacheStats::new(&crate::metrics::must(prometheus::IntCounterVec::new(
            prometheus::Opts::new("detached", "-"),
            &["result"],
        )))
    }

    pub fn hit(&self) {
        self.hit.inc();
    }

    pub fn miss(&self) {
        self.miss.inc();
    }
}

impl Session {
    /// Whether the session is still usable at `now` with this idle timeout.
    pub fn live(&self, now: i64, idle_secs: i64) -> bool {
        now < self.expires_at && now - self.last_seen < idle_secs
    }
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// Where sessions live.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create(&self, s: &Session) -> Result<(), StoreError>;
    async fn get(&self, id_hash: &str) -> Result<Option<Arc<Session>>, StoreError>;
    /// Forgets the converted guest id once the backend has been told.
    async fn clear_converted_guest(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Copies a customer's changed profile (email, its verification, name)
    /// into every live session of theirs, on every node; returns how many.
    async fn refresh_profile(
        &self,
        customer_id: &str,
        profile: &Profile,
    ) -> Result<u64, StoreError>;
    /// Copies a customer's granted purposes into every live session of
    /// theirs, on every node; returns how many.
    async fn refresh_consents(
        &self,
        customer_id: &str,
        consents: &std::collections::BTreeMap<String, u32>,
    ) -> Result<u64, StoreError>;
    /// Records activity (callers throttle this; it is not per request).
    async fn touch(&self, id_hash: &str, now: i64) -> Result<(), StoreError>;
    async fn delete(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of a group on every node; returns how many.
    async fn end(&self, group: Group<'_>) -> Result<u64, StoreError>;
    /// Keeps a short-lived record until `expires_at`, visible to every node.
    async fn put_once(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError>;
    /// Takes a record out: of concurrent takes, exactly one gets it.
    async fn take_once(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// A customer's sessions that have not reached their absolute expiry.
    async fn list(&self, customer_id: &str, now: i64) -> Result<Vec<Session>, StoreError>;
    /// How many sessions have not reached their absolute expiry.
    async fn active(&self, now: i64) -> Result<u64, StoreError>;

    /// Adds one to the counter `key` (which starts a `window` of seconds at
    /// its first hit) and returns the new count.
    async fn bump(&self, key: &str, window: i64) -> Result<u64, StoreError>;
    /// Marks `key` blocked for `secs` (extending, never shortening, a block).
    async fn block(&self, key: &str, secs: i64) -> Result<(), StoreError>;
    /// Seconds left on the block of `key`, if any.
    async fn blocked(&self, key: &str) -> Result<Option<i64>, StoreError>;
    /// Whether the store answers (the health probe).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A new random token: 256 bits, base64url.
pub fn new_token() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// What the store keys a session id by.
pub fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// Every `Cookie` header joined (HTTP/2 may split them); borrowed when
/// there is one, as from HTTP/1.1 clients.
pub fn cookie_header(headers: &http::HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    let mut all = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let first = all.next()?;
    match all.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = format!("{first}; {second}");
            for more in all {
                joined.push_str("; ");
                joined.push_str(more);
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

/// The live session of the browser sending `headers` to `host`, if any. A
/// store that cannot answer is an error (a 503 up the call chain), never
/// "signed out".
pub async fn current(
    store: &dyn SessionStore,
    headers: &http::HeaderMap,
    host: &str,
    config: &crate::config::model::Sessions,
) -> Result<Option<Arc<Session>>, StoreError> {
    let Some(header) = cookie_header(headers) else {
        return Ok(None);
    };
    let domain = cookie_domain(host, &config.cookie_domains);
    let Some(id) = cookie(Some(&header), cookie_name(domain)) else {
        return Ok(None);
    };
    let Some(s) = store.get(&hash_id(id)).await? else {
        return Ok(None);
    };
    Ok(s.live(unix_now(), config.idle_timeout.as_secs() as i64)
        .then_some(s))
}

/// The `Cookie` header without the gateway's own cookies (None if nothing is left).
pub fn without_own_cookies(header: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|kv| !kv.is_empty() && !kv.starts_with(COOKIE) && !kv.starts_with(DOMAIN_COOKIE))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// `Set-Cookie` for a session (or login) cookie; `max_age` 0 clears it.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> String {
    set_cookie_for(name, value, max_age, SameSite::Lax)
}

/// Which cross-site requests carry a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Top-level navigations only: every cookie but one.
    Lax,
    /// Every request, also a cross-site POST: only the login cookie of a
    /// provider that posts its answer (`form_post`), bound by `state`.
    None,
}

/// Like [`set_cookie`] with a chosen `SameSite`.
pub fn set_cookie_for(name: &str, value: &str, max_age: i64, same_site: SameSite) -> String {
    let same_site = match same_site {
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    };
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={max_age}")
}

/// Constant-time comparison for tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_hop_parameter_is_taken_out_of_a_return_url() {
        let u = url::Url::parse("https://crm.test/x?a=1&omnigate_hop=abc&b=2").unwrap();
        let (rest, hop) = split_hop_param(&u);
        assert_eq!(hop.as_deref(), Some("abc"));
        assert_eq!(rest.as_str(), "https://crm.test/x?a=1&b=2");
        let u = url::Url::parse("https://crm.test/x?omnigate_hop=abc").unwrap();
        assert_eq!(split_hop_param(&u).0.as_str(), "https://crm.test/x");
        let u = url::Url::parse("https://crm.test/x?q=%2F").unwrap();
        assert_eq!(split_hop_param(&u), (u.clone(), None));
        assert_ne!(hop_challenge("n1"), hop_challenge("n2"));
    }

    #[test]
    fn cookies_are_found_and_own_cookies_never_forwarded() {
        let h = "theme=dark; __Host-omnigate=abc; cart=7; __Host-omnigate-login=xyz; __Secure-omnigate=d";
        assert_eq!(cookie(Some(h), COOKIE), Some("abc"));
        assert_eq!(cookie(Some(h), LOGIN_COOKIE), Some("xyz"));
        assert_eq!(cookie(Some(h), "missing"), None);
        assert_eq!(
            without_own_cookies(h).as_deref(),
            Some("theme=dark; cart=7")
        );
        assert_eq!(without_own_cookies("__Host-omnigate=abc"), None);
    }

    #[test]
    fn hosts_under_a_cookie_domain_share_its_cookie() {
        let domains = vec!["shop.test".to_string(), "brand.test".to_string()];
        assert_eq!(cookie_domain("shop.test", &domains), Some("shop.test"));
        assert_eq!(cookie_domain("www.shop.test", &domains), Some("shop.test"));
        assert_eq!(
            cookie_domain("a.b.brand.test", &domains),
            Some("brand.test")
        );
        // A name that merely ends with the domain's letters is another domain.
        assert_eq!(cookie_domain("evilshop.test", &domains), None);
        assert_eq!(cookie_domain("other.test", &domains), None);
        assert_eq!(cookie_name(None), COOKIE);
        assert_eq!(
            set_session_cookie(Some("shop.test"), "v", 60),
            "__Secure-omnigate=v; Domain=shop.test; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert!(set_session_cookie(None, "v", 60).starts_with("__Host-omnigate=v; Path=/; Secure"));
        assert_eq!(
            set_cookie_for("__Host-x", "v", 5, SameSite::None),
            "__Host-x=v; Path=/; Secure; HttpOnly; SameSite=None; Max-Age=5"
        );
    }

    #[test]
    fn guest_ids_are_the_deployments_own() {
        let key = GuestKey::new(b"k1");
        let (id, cookie) = new_guest_id(&key).unwrap();
        assert_eq!(guest_from_cookie(&cookie, &key), Some(id.as_str()));
        assert_eq!(guest_from_cookie(&cookie, &GuestKey::new(b"k2")), None);
        let chosen = "gst_00000000000000000000000000000000";
        for bad in [
            "",
            "gst_",
            chosen,
            &format!("{chosen}.00000000000000000000000000000000"),
            &format!("{chosen}.{}", &cookie[37..]),
            &format!("{}.", &cookie[..36]),
            "cus_00000000000000000000000000000000.x",
        ] {
            assert_eq!(guest_from_cookie(bad, &key), None, "{bad}");
        }
    }

    #[test]
    fn session_lifetimes() {
        let s = Session {
            id_hash: "h".into(),
            customer_id: "c".into(),
            email: None,
            email_verified: false,
            name: None,
            provider: "p".into(),
            csrf: "t".into(),
            created_at: 0,
            last_seen: 100,
            expires_at: 1000,
            login_id: "l".into(),
            provider_sid: None,
            converted_guest: None,
            device: None,
            consents: Default::default(),
        };
        assert_eq!(
            device("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"),
            "Chrome on Linux"
        );
        assert_eq!(
            device("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"),
            "Safari on iOS"
        );
        assert_eq!(device("curl/8.0"), "curl");
        assert!(s.live(150, 60));
        assert!(!s.live(161, 60), "idle");
        assert!(!s.live(1000, 10_000), "absolute");
    }

    #[test]
    fn tokens_are_random_and_compared_in_constant_time() {
        let a = new_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_token());
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &new_token()));
        assert_eq!(hash_id("x").len(), 64);
    }
}

#[cfg(test)]
mod tests;
