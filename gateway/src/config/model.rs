//! The validated configuration the gateway runs on. Every value here has been
//! checked; nothing downstream re-validates or panics on it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub demo: Option<Demo>,
    pub trusted_proxies: Vec<IpNet>,
    pub log: Log,
    pub providers: Vec<Provider>,
    pub identity: Identity,
    pub customers: CustomerStore,
    pub sessions: Sessions,
    pub events: Events,
    pub abuse: Abuse,
    pub accounts: Accounts,
    pub pages: PagesLook,
    /// Purposes customers consent to, in declaration order.
    pub purposes: Vec<crate::consent::Purpose>,
    pub requests: Requests,
    pub privacy: Privacy,
}

/// Privacy operations (`privacy:` and each upstream's `privacy:`).
#[derive(Debug, Clone, PartialEq)]
pub struct Privacy {
    /// The default HMAC secret of outbound requests and callbacks.
    pub secret: Option<String>,
    /// Base URL of the callback systems answer later through.
    pub callback_url: String,
    pub deadline: Duration,
    pub reauthenticate: Duration,
    pub export_ttl: Duration,
    pub tick: Duration,
    pub lease: Duration,
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// The proxy records which upstream received whose identity.
    pub data_map: bool,
    pub data_map_flush: Duration,
    pub data_map_max_pairs: usize,
    /// Every declared system: upstreams' first (by name), then the others.
    pub systems: Vec<System>,
}

impl Privacy {
    pub fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name == name)
    }
}

/// A system holding customer data.
#[derive(Debug, Clone, PartialEq)]
pub struct System {
    pub name: String,
    /// Declared on an upstream of that name (the data map sees it).
    pub upstream: bool,
    pub owner: String,
    pub categories: Vec<String>,
    pub retention: String,
    pub erasure: Option<Endpoint>,
    pub export: Option<Endpoint>,
    pub manual: bool,
    pub contact: Option<String>,
    pub all_customers: bool,
}

/// Where a system takes signed requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: String,
    pub secret: String,
    pub timeout: Duration,
}

/// What the gateway accepts from clients before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requests {
    pub underscores: crate::edge::header_policy::Underscores,
    pub paths: crate::edge::path::PathRules,
}

/// Email + password accounts.
#[derive(Debug, Clone, PartialEq)]
pub struct Accounts {
    /// Registration and sign-in with a password are offered.
    pub passwords: bool,
    /// Base of links in mails (`https://shop.example`); never the request's Host.
    pub public_url: String,
    pub password_min_length: usize,
    pub argon2: Argon2Cost,
    pub hashing: Hashing,
    /// k-anonymity range API (`…/range/{first five hex of SHA-1}`), if any.
    pub breached_password_api: Option<String>,
    pub verification_ttl: Duration,
    pub reset_ttl: Duration,
    pub mail: Option<Mail>,
}

/// The password-hashing pool (`crate::accounts::hashing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashing {
    /// Hashes computed at once (default: half the cores, at least one).
    pub workers: usize,
    /// Hashes waiting for a worker; one more is refused at once.
    pub queue: usize,
    /// The longest a hash waits for a worker before it is refused.
    pub deadline: Duration,
}

/// Argon2id cost; the default is OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Argon2Cost {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The outbound mail channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub from: String,
    pub channel: MailChannel,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MailChannel {
    Smtp {
        host: String,
        port: u16,
        tls: SmtpTls,
        username: Option<String>,
        password: Option<String>,
    },
    /// Mails are POSTed as signed JSON for the operator's own sender.
    Webhook { url: String, secret: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (only for a relay on the same host).
    None,
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
}

/// Purposes bound to identity fields (None: always sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentHeaders {
    pub customer_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Brand of the hosted pages.
#[derive(Debug, Clone, PartialEq)]
pub struct PagesLook {
    pub brand: String,
    pub logo: Option<String>,
    /// `#rgb` or `#rrggbb`.
    pub primary_colour: String,
    /// Folder whose templates replace the built-in ones of the same name.
    pub templates: Option<PathBuf>,
    /// The languages pages and mails are offered in; the first is the default.
    pub languages: Vec<String>,
    /// Folder of `<lang>.yaml` catalogues over the built-in ones.
    pub catalogues: Option<PathBuf>,
}

/// How repeated failures from one client address are slowed down.
#[derive(Debug, Clone, PartialEq)]
pub struct Abuse {
    /// Failures allowed in a window before backoff starts.
    pub free_failures: u64,
    pub window: Duration,
    pub max_backoff: Duration,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    pub webhooks: Vec<Webhook>,
    /// Attempts per event before it is given up (logged and counted).
    pub max_attempts: u32,
}

/// A receiver of events, signed with its own secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    pub secret: String,
    /// Event types it takes; empty: all.
    pub events: Vec<String>,
}

impl Webhook {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

/// An identity provider known by its issuer URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub name: String,
    /// The issuer (OpenID Connect), or the stable name an OAuth 2.0
    /// provider's identities are keyed by; may hold `{tenantid}`.
    pub issuer: String,
    /// Where discovery is, when not under the issuer.
    pub discovery_url: Option<String>,
    /// Explicit JWKS URL; otherwise taken from OpenID discovery.
    pub jwks_uri: Option<String>,
    /// Least time between two key fetches triggered by unknown `kid`s.
    pub jwks_min_refresh: Duration,
    pub bearer: Option<crate::auth::token::BearerPolicy>,
    pub login: Option<Login>,
}

/// Relying-party settings for one provider (authorization code flow).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Login {
    pub client_id: String,
    /// Empty when the gateway signs instead (`private_key_jwt`, Apple).
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub display_name: String,
    /// Sign-out also ends the provider's session (RP-initiated logout).
    pub logout_at_provider: bool,
    /// The provider's `email_verified` is trusted enough to join an existing
    /// account with that email without asking the customer for proof.
    pub trusted_email: bool,
    pub protocol: crate::login::preset::Protocol,
    /// Endpoints set in the configuration (else from discovery).
    pub endpoints: LoginEndpoints,
    pub pkce: bool,
    /// None: chosen from what discovery lists.
    pub token_auth: Option<crate::login::client::TokenAuth>,
    /// The key client assertions are signed with (`private_key_jwt`).
    pub client_key: Option<crate::login::client::ClientKey>,
    /// Sign in with Apple: the client secret is made from the team key.
    pub apple: Option<crate::login::client::AppleSecret>,
    /// The provider posts its answer to the callback (`response_mode=form_post`).
    pub form_post: bool,
    /// Google: only this Workspace domain.
    pub hosted_domain: Option<String>,
    /// Multi-tenant issuers: accepted tenant ids (empty: any).
    pub tenants: Vec<String>,
    /// Meta: `appsecret_proof` on Graph API calls.
    pub appsecret_proof: bool,
    /// A shipped logo's name (`none`: no logo).
    pub logo: Option<String>,
    /// Place on the sign-in page (lower first).
    pub order: i64,
}

/// A provider's endpoints as configured (each may be left to discovery).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoginEndpoints {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub userinfo: Option<String>,
    pub emails: Option<String>,
}

/// Browser sessions: where they live and how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Sessions {
    pub store: SessionStoreKind,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// Hosts under one of these share one session cookie (`Domain=`).
    pub cookie_domains: Vec<String>,
    /// The host every sign-in happens on; hosts in other cookie domains get
    /// their session through a single-use code from it.
    pub auth_host: Option<String>,
    /// Bound on every call to the session store.
    pub timeout: Duration,
}

impl Sessions {
    /// Whether `host` (no port) may be sent to after sign-in: a host some
    /// route names (exactly or by wildcard), one under a cookie domain, or
    /// the auth host. A route without hosts makes no host trusted.
    pub fn trusted_host(&self, host: &str, routes: &[Route]) -> bool {
        self.auth_host.as_deref() == Some(host)
            || crate::session::cookie_domain(host, &self.cookie_domains).is_some()
            || routes
                .iter()
                .any(|r| !r.hosts.is_empty() && host_matches(&r.hosts, host))
    }
}

/// The session store engine.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionStoreKind {
    /// This node only: memory in front of a SQLite file in `state_dir`.
    Embedded,
    /// Shared by every node; deletions reach every node's cache by pub/sub.
    Redis { url: String, key_prefix: String },
}

/// Settings of the assertions the gateway signs for backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub issuer: String,
    pub assertion_ttl: Duration,
    /// PEM file of the one ES256 key; `None`: keys in the customer
    /// directory, shared by every node and rotated every `key_rotation`.
    pub signing_key: Option<PathBuf>,
    pub key_rotation: Duration,
}

/// The customer directory engine.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerStore {
    /// SQLite file (created if missing).
    Embedded { path: PathBuf },
    Postgres {
        url: String,
        schema: String,
        /// How long a request waits for a connection of the pool.
        timeout: Duration,
    },
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No identity is looked at or forwarded.
    Public,
    /// Identity is forwarded when the request carries valid credentials.
    Optional,
    /// Valid credentials are needed; without them: 401 (or sign-in on web routes).
    Required,
    /// Like `Optional`, and anonymous visitors get a stable guest id
    /// (cookie, forwarded as `X-Guest-Id`) so a cart survives until they sign in.
    Guest,
}

impl Config {
    /// The upstream pool called `name`.
    /// Providers customers can log in with in a browser.
    pub fn login_providers(&self) -> impl Iterator<Item = &Provider> {
        let mut list: Vec<&Provider> = self
            .providers
            .iter()
            .filter(|p| p.login.is_some())
            .collect();
        // Stable: equal places keep the order they are listed in.
        list.sort_by_key(|p| p.login.as_ref().map_or(0, |l| l.order));
        list.into_iter()
    }

    /// Whether URLs the gateway builds may name `host` (lower-case, no
    /// port): a host a route or the sessions name, or `accounts.public_url`'s.
    pub fn known_host(&self, host: &str) -> bool {
        self.sessions.trusted_host(host, &self.routes)
            || url::Url::parse(&self.accounts.public_url)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.eq_ignore_ascii_case(host)))
                .unwrap_or(false)
    }

    /// Whether browsers may be sent to `port`: a port of a listener.
    pub fn listener_port(&self, port: u16) -> bool {
        self.listeners.iter().any(|l| l.address.port() == port)
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// Every header name any upstream receives identity under (lower-case):
    /// all of them are stripped from client requests on every route.
    pub fn mapped_identity_headers(&self) -> std::collections::BTreeSet<String> {
        self.upstreams
            .iter()
            .flat_map(|u| u.identity_headers.names())
            .map(|n| crate::edge::header_policy::backend_name(n).into_owned())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub threads: usize,
    pub work_stealing: bool,
    pub shutdown_grace: Duration,
    pub state_dir: PathBuf,
    pub upstream_keepalive_pool: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub tls: Option<ListenerTls>,
    /// On a plain listener: answer every request with a redirect to this HTTPS port.
    pub redirect_to_https: Option<u16>,
    /// `Strict-Transport-Security` value sent on this (TLS) listener.
    pub hsts: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// Empty means: generate (once) and use a self-signed development certificate.
    pub certificates: Vec<Certificate>,
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Lower-case host names (`*.example.com` allowed) this certificate answers for.
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub address: SocketAddr,
    pub token: Option<String>,
    /// `/readyz` answers 200 (status `degraded`) while a dependency is down.
    pub ready_when_degraded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    /// `host:port` as configured; host names are resolved when the pool starts.
    pub addresses: Vec<String>,
    pub balance: Balance,
    pub health_check: Option<HealthCheck>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls: Option<UpstreamTls>,
    pub identity_headers: crate::identity::headers::IdentityHeaders,
    /// The purpose each identity field needs before this upstream sees it.
    pub consent_headers: ConsentHeaders,
    /// Behind the operator's own proxy: Omnigate never connects to it and
    /// answers its routes only through forward-auth.
    pub forward_auth: bool,
    /// A limit on requests in flight to it (`crate::admission`).
    pub admission: Option<Admission>,
}

/// Admission control in front of one upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    /// Requests in flight at most; where an adaptive limit starts.
    pub limit: usize,
    /// The limit follows measured latency between these bounds.
    pub adaptive: Option<AdaptiveLimit>,
    /// Requests waiting for a slot; beyond it the lowest class is refused.
    pub queue: usize,
    /// The longest a request waits for a slot.
    pub queue_timeout: Duration,
    /// What a refused client is told to wait (`Retry-After`).
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveLimit {
    pub min: usize,
    pub max: usize,
}

/// Which requests of a route are refused first under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Checkout, payment: refused last.
    Critical,
    #[default]
    Normal,
    /// Recommendations, search suggestions: refused first.
    Sheddable,
}

/// A route's virtual waiting room (`crate::waiting_room`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitingRoom {
    /// Visitors inside at once.
    pub active_users: u64,
    /// Visitors let in per minute at most.
    pub new_per_minute: u64,
    /// How long a visitor stays inside after their last request.
    pub session_duration: Duration,
    /// How often the waiting page reloads itself.
    pub refresh: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub host: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: usize,
    pub unhealthy_threshold: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    pub sni: String,
    pub ca: Option<PathBuf>,
    pub verify: bool,
}

/// Whether errors on a route are HTML pages (browsers) or problem JSON (APIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Web,
    Api,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// Lower-case host names; `*.example.com` matches any subdomain. Empty: any host.
    pub hosts: Vec<String>,
    pub path_prefix: String,
    /// Upper-case methods; empty: any method.
    pub methods: Vec<String>,
    pub upstream: String,
    pub kind: RouteKind,
    pub strip_prefix: bool,
    pub max_body: u64,
    pub access: Access,
    /// Scopes a bearer token must carry (all of them).
    pub scopes: Vec<String>,
    /// A browser that must sign in here sees registration first.
    pub register_first: bool,
    /// Identified callers need a confirmed email address (else 403).
    pub verified_email: bool,
    /// Purposes identified callers must have granted.
    pub consent: Option<crate::consent::RouteRule>,
    /// The prefix matches in any case (for case-insensitive backends).
    pub case_insensitive: bool,
    pub priority: Priority,
    pub waiting_room: Option<WaitingRoom>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Demo {
    pub store: SocketAddr,
    pub crm: SocketAddr,
    pub api: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub level: String,
    pub access_log: bool,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Readable lines on a terminal, JSON otherwise.
    #[default]
    Auto,
    Json,
    Text,
}

/// Whether a route's host list takes `host` (empty list: any host).
pub fn host_matches(hosts: &[String], host: &str) -> bool {
    hosts.is_empty()
        || hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(parent) => host.strip_suffix(parent).is_some_and(|sub| {
                sub.len() > 1 && sub.ends_with('.') && !sub[..sub.len() - 1].contains('.')
            }),
            None => h == host,
        })
}
