//! The configuration file format exactly as operators write it: plain serde
//! types, unknown fields rejected. Nothing here is trusted; `validate` turns it
//! into the internal model.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `config.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub demo: Option<RawDemo>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub log: Option<RawLog>,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    pub identity: Option<RawIdentity>,
    pub customers: Option<RawCustomers>,
    pub sessions: Option<RawSessions>,
    pub events: Option<RawEvents>,
    pub abuse: Option<RawAbuse>,
    pub accounts: Option<RawAccounts>,
    pub pages: Option<RawPages>,
    pub requests: Option<RawRequests>,
    pub privacy: Option<RawPrivacy>,
}

/// Privacy operations: erasure and export across systems, the data map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// Signs erasure and export requests and checks callbacks (HMAC), unless
    /// a system has its own.
    pub secret: Option<String>,
    /// Base URL systems call back (`https://id.shop.example`); default
    /// `accounts.public_url`.
    pub callback_url: Option<String>,
    /// How long a request may take (default `30d`, GDPR's one month).
    pub deadline: Option<String>,
    /// A customer must have signed in this recently to ask (default `10m`).
    pub reauthenticate: Option<String>,
    /// How long an export stays downloadable (default `24h`).
    pub export_ttl: Option<String>,
    /// How often the worker looks for due work (default `1s`).
    pub tick: Option<String>,
    /// How long a node holds a claimed step (default `2m`).
    pub lease: Option<String>,
    /// First retry of a failed system, doubling to `retry_max` (`30s`, `1h`).
    pub retry_first: Option<String>,
    pub retry_max: Option<String>,
    /// The data map's in-memory aggregate: flushed this often (`5s`) and
    /// bounded to this many customer × upstream pairs (`100000`).
    /// Record the data map from traffic (default true).
    pub data_map: Option<bool>,
    pub data_map_flush: Option<String>,
    pub data_map_max_pairs: Option<usize>,
    /// Systems that are not upstreams (a warehouse fed nightly, accounting).
    #[serde(default)]
    pub systems: BTreeMap<String, RawSystem>,
}

/// A system that holds customer data: who owns it, what it keeps for how
/// long, and how erasure and export reach it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    pub owner: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    pub retention: Option<String>,
    pub erasure: Option<RawSystemEndpoint>,
    pub export: Option<RawSystemEndpoint>,
    /// Erased by hand: an operator records each outcome.
    #[serde(default)]
    pub manual: bool,
    pub contact: Option<String>,
    /// Holds data of every customer, seen through the gateway or not.
    #[serde(default)]
    pub all_customers: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystemEndpoint {
    pub url: String,
    pub secret: Option<String>,
    pub timeout: Option<String>,
}

/// What the gateway accepts from clients before routing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    /// `drop` (default), `keep` or `reject`.
    pub underscores_in_headers: Option<String>,
    pub paths: Option<RawPaths>,
}

/// How strict the canonical request path is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    /// `refuse` (default) or `keep`: `%2F` and `%5C`.
    pub encoded_slashes: Option<String>,
    /// `refuse` (default) or `keep`: `;` path parameters.
    pub semicolons: Option<String>,
    /// `true` (default): `//` merged; `false`: refused.
    pub merge_slashes: Option<bool>,
}

/// Customer accounts with email and password, and the mail they receive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounts {
    #[serde(default)]
    pub passwords: bool,
    pub public_url: Option<String>,
    pub password_min_length: Option<usize>,
    pub argon2: Option<RawArgon2>,
    pub hashing: Option<RawHashing>,
    pub breached_password_api: Option<String>,
    pub verification_ttl: Option<String>,
    pub reset_ttl: Option<String>,
    pub mail: Option<RawMail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgon2 {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
}

/// The password-hashing pool: workers, queue and how long a hash may wait.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHashing {
    pub workers: Option<usize>,
    pub queue: Option<usize>,
    pub deadline: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    pub from: String,
    pub smtp: Option<RawSmtp>,
    pub webhook: Option<RawMailWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: String,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMailWebhook {
    pub url: String,
    pub secret: String,
}

/// The look of the hosted pages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPages {
    pub brand: Option<String>,
    pub logo: Option<String>,
    pub primary_colour: Option<String>,
    pub templates: Option<String>,
    pub languages: Option<Vec<String>>,
    pub catalogues: Option<String>,
}

/// Throttling of endpoints that take guesses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAbuse {
    pub free_failures: Option<u64>,
    pub window: Option<String>,
    pub max_backoff: Option<String>,
}

/// Webhooks that receive identity and session events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub name: String,
    pub url: String,
    pub secret: String,
    #[serde(default)]
    pub events: Vec<String>,
}

/// An identity provider: its tokens are accepted as bearer credentials,
/// and customers may sign in with it (`login`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    /// `meta`, `google`, `apple`, `microsoft` or `github`: endpoints, scopes,
    /// profile mapping and quirks filled in, each overridable.
    pub preset: Option<String>,
    /// `oidc` (default) or `oauth2` (no ID token: the profile is read from an API).
    pub protocol: Option<String>,
    /// Required unless a preset names it; for OAuth 2.0 providers the stable
    /// name identities are keyed by. May hold `{tenantid}` (multi-tenant).
    pub issuer: Option<String>,
    /// Where the discovery document is, when not under the issuer.
    pub discovery_url: Option<String>,
    pub jwks_uri: Option<String>,
    pub jwks_min_refresh: Option<String>,
    pub bearer: Option<RawBearer>,
    pub login: Option<RawLogin>,
}

/// Browser login with this provider (authorization code flow).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub client_id: String,
    pub client_secret: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub display_name: Option<String>,
    pub logout_at_provider: Option<bool>,
    pub trusted_email: Option<bool>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    /// GitHub-style list of addresses with `primary` and `verified`.
    pub emails_endpoint: Option<String>,
    pub pkce: Option<bool>,
    /// `client_secret_basic`, `client_secret_post` or `private_key_jwt`.
    pub token_auth: Option<String>,
    /// The key `private_key_jwt` signs client assertions with.
    pub private_key: Option<RawClientKey>,
    /// Sign in with Apple: the client secret is a JWT signed with the team key.
    pub apple: Option<RawApple>,
    /// `query` (default) or `form_post`.
    pub response_mode: Option<String>,
    /// Google: only accounts of this Workspace domain (`hd`).
    pub hosted_domain: Option<String>,
    /// Multi-tenant issuers: the tenant ids (`tid`) accepted (empty: any).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// How the profile API's answer maps to the customer (OAuth 2.0).
    pub profile: Option<RawProfile>,
    /// Meta: sign Graph API calls with `appsecret_proof`.
    pub appsecret_proof: Option<bool>,
    /// A shipped logo: `meta`, `google`, `apple`, `microsoft`, `github`, `none`.
    pub logo: Option<String>,
    /// Place on the sign-in page (lower first; equal: as listed).
    pub order: Option<i64>,
}

/// A private key file and the key id the provider knows it by.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientKey {
    pub file: String,
    pub key_id: Option<String>,
}

/// Sign in with Apple's client secret: signed by the gateway, renewed by it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApple {
    pub team_id: String,
    pub key_id: String,
    pub private_key_file: String,
    /// How long each made secret is valid (default 1h, at most 180 days).
    pub secret_ttl: Option<String>,
}

/// Fields of the profile answer (dotted paths into the JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub id: Option<String>,
    pub email: Option<String>,
    /// One field, or several tried in order.
    pub name: Option<OneOrMany>,
    /// `true`, `false`, or the field that says it.
    pub email_verified: Option<BoolOrField>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BoolOrField {
    Bool(bool),
    Field(String),
}

/// Browser sessions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub store: Option<String>,
    pub url: Option<String>,
    pub key_prefix: Option<String>,
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
    #[serde(default)]
    pub cookie_domains: Vec<String>,
    pub auth_host: Option<String>,
    /// Bound on every call to the session store (default 1s).
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBearer {
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Vec<String>,
}

/// The gateway's own identity assertions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub issuer: Option<String>,
    pub assertion_ttl: Option<String>,
    pub signing_key: Option<String>,
    /// How often the stored signing keys rotate (default 7d).
    pub key_rotation: Option<String>,
}

/// Where customers and their identities are stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomers {
    pub store: String,
    pub url: Option<String>,
    pub schema: Option<String>,
    /// How long a request waits for a database connection (default 5s).
    pub timeout: Option<String>,
}

/// A file named under `include:`: policies that extend the main config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyFile {
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub purposes: Vec<RawPurpose>,
}

/// A purpose customers consent to (usually in `policies/consent.yaml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPurpose {
    pub id: String,
    pub title: String,
    pub text: String,
    pub version: u32,
    pub legal_basis: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// A sale or sharing of personal data: `Sec-GPC: 1` withdraws it.
    #[serde(default)]
    pub sale: bool,
}

/// What a route needs consented, and what happens without it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteConsent {
    #[serde(default)]
    pub require: Vec<String>,
    pub on_missing: Option<String>,
}

/// Identity fields an upstream receives only with a purpose granted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsentHeaders {
    pub customer_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub threads: Option<usize>,
    pub work_stealing: Option<bool>,
    pub shutdown_grace: Option<String>,
    pub state_dir: Option<String>,
    pub upstream_keepalive_pool: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub address: String,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub redirect_to_https: Option<String>,
    pub hsts: Option<RawHsts>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    pub http2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub server_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsts {
    pub max_age: String,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: String,
    pub token: Option<String>,
    /// Whether `/readyz` answers 200 while a dependency is down (default true).
    pub ready_when_degraded: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Reached by the operator's proxy, which asks forward-auth first.
    #[serde(default)]
    pub forward_auth: bool,
    pub balance: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub tls: Option<RawUpstreamTls>,
    pub identity_headers: Option<RawIdentityHeaders>,
    pub consent_headers: Option<RawConsentHeaders>,
    pub privacy: Option<RawSystem>,
    pub admission: Option<RawAdmission>,
}

/// A limit on requests in flight to one upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    pub limit: Option<usize>,
    pub adaptive: Option<RawAdaptive>,
    pub queue: Option<usize>,
    pub queue_timeout: Option<String>,
    pub retry_after: Option<String>,
}

/// Bounds of a limit that follows measured latency.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdaptive {
    pub min: Option<usize>,
    pub max: Option<usize>,
}

/// A route's virtual waiting room.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaitingRoom {
    pub active_users: Option<u64>,
    pub new_per_minute: Option<u64>,
    pub session_duration: Option<String>,
    pub refresh: Option<String>,
}

/// Header names an upstream receives identity under.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityHeaders {
    pub customer_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub host: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<usize>,
    pub unhealthy_threshold: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub sni: Option<String>,
    pub ca: Option<String>,
    #[serde(default = "yes")]
    pub verify: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub upstream: String,
    pub kind: Option<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub max_body: Option<String>,
    pub access: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// What a browser that must sign in here sees first: `login` or `register`.
    pub sign_in_page: Option<String>,
    /// Only customers whose email address is confirmed get through.
    #[serde(default)]
    pub verified_email: bool,
    pub consent: Option<RawRouteConsent>,
    /// The backend ignores the case of paths (IIS): match the prefix so too.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Who is refused first under pressure: `critical`, `normal`, `sheddable`.
    pub priority: Option<String>,
    pub waiting_room: Option<RawWaitingRoom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDemo {
    #[serde(default)]
    pub enabled: bool,
    pub store: Option<String>,
    pub crm: Option<String>,
    pub api: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub access_log: Option<bool>,
    /// `auto` (readable on a terminal, JSON otherwise), `json` or `text`.
    pub format: Option<String>,
}
