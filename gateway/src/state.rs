//! The running gateway's state: the current configuration snapshot (routes,
//! upstream pools, per-route metrics) behind one atomic pointer, and the
//! reload that replaces it. A request loads the snapshot once and keeps it to
//! the end, so a reload never changes a request midway and never drops one.
//! A config that fails validation never replaces the running one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::jwks::{HttpClient, ProviderKeys};
use crate::config::{self, model::Config, ConfigErrors};
use crate::edge::pool::Pool;
use crate::edge::route::Router;
use crate::edge::tls::{listener_certificates, CertTable, SniResolver};
use crate::identity::assertion::Signer;
use crate::metrics::{Metrics, RouteMetrics};

/// One consistent view of the configuration and what was built from it.
pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<Config>,
    pub router: Router,
    /// The pool of each route, aligned with `config.routes`.
    pub route_pools: Vec<Arc<Pool>>,
    pub route_metrics: Vec<RouteMetrics>,
    /// Metrics for requests that matched no route.
    pub unrouted: RouteMetrics,
    /// Metrics of the gateway's own pages, by `portal::AREAS`.
    pub portal_metrics: Vec<RouteMetrics>,
    /// Which client headers reach backends (identity, chain, underscores).
    pub header_policy: crate::edge::header_policy::HeaderPolicy,
    /// Key sets of the configured providers.
    pub providers: Vec<Arc<crate::auth::jwks::ProviderKeys>>,
    pools: HashMap<String, Arc<Pool>>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("{0}")]
    Apply(String),
}

/// What a successful reload did.
#[derive(Debug, serde::Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    pub routes: usize,
    pub upstreams: usize,
    /// Settings that changed but take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// Shared by every listener, the admin API and the reload triggers.
pub struct App {
    pub config_path: PathBuf,
    pub metrics: Arc<Metrics>,
    current: ArcSwap<Snapshot>,
    /// SNI resolvers of the TLS listeners, by listener name.
    pub resolvers: HashMap<String, Arc<SniResolver>>,
    /// The configuration the process started with (listeners, threads).
    pub startup: Arc<Config>,
    generation: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
    shutting_down: AtomicBool,
    /// Set once every customer listener has accepted a connection.
    pub listeners_up: AtomicBool,
    /// Worker accept loops running, and how many there should be (one per
    /// worker and listener; 0 when Pingora's own listeners are used).
    pub accept_loops: std::sync::atomic::AtomicUsize,
    pub accept_loops_expected: std::sync::atomic::AtomicUsize,
    pub auth: crate::auth::Authenticator,
    pub signer: crate::identity::assertion::Signer,
    pub http: crate::auth::jwks::HttpClient,
    /// Signed assertions by (credential, upstream), reused for half their life.
    pub assertions: moka::sync::Cache<([u8; 32], String), Arc<str>>,
    pub sessions: Arc<dyn crate::session::SessionStore>,
    /// Logins waiting for their provider callback, by `state` (single use).
    pub pages: crate::pages::Pages,
    /// The outbound mail channel, if configured.
    pub mailer: Option<Arc<crate::accounts::mail::Mailer>>,
    /// Argon2id cost of new password hashes (bound at start).
    pub argon2: crate::config::model::Argon2Cost,
    /// Where every password hash is computed, bounded.
    pub hashing: Arc<crate::accounts::hashing::Pool>,
    /// A hash of a random password at that cost: unknown emails are checked
    /// against it, so they take as long as known ones.
    pub dummy_hash: String,
    /// Granted purposes of bearer callers by customer id, for one second
    /// (browser sessions carry theirs).
    pub consent_cache: moka::future::Cache<String, Arc<std::collections::BTreeMap<String, u32>>>,
    /// `jti`s of accepted logout tokens, so none is replayed.
    pub seen_logout_tokens: moka::future::Cache<String, ()>,
    /// The MAC key of guest ids, shared by every node (customer directory).
    pub guest_key: crate::session::GuestKey,
    /// What the stores answered lately (readiness, `omnigate_dependency_up`).
    pub health: Health,
    /// The rotating signing keys in the directory (none with a key file).
    pub keys: Option<Arc<crate::identity::keys::KeyStore>>,
    /// Privacy jobs, holds, the data map (the directory's database).
    pub privacy: Arc<dyn crate::privacy::PrivacyStore>,
    /// What upstreams received, aggregated until the worker flushes it.
    pub data_map: Arc<crate::privacy::datamap::Recorder>,
    /// The key of erased customers' tombstones, shared by every node.
    pub tombstone_key: Vec<u8>,
    /// Wakes the privacy worker when there is work now.
    pub privacy_wake: Arc<tokio::sync::Notify>,
    /// Customers whose Global Privacy Control withdrawal is being recorded.
    pub gpc_pending: moka::sync::Cache<String, ()>,
    /// Every route's waiting room (`crate::waiting_room`).
    pub rooms: crate::waiting_room::Rooms,
}

/// The waiting rooms, where the sessions are: shared in Redis, or in this
/// process on the embedded default.
async fn rooms(
    config: &Config,
    key: &crate::session::GuestKey,
    metrics: &Metrics,
) -> Result<crate::waiting_room::Rooms, String> {
    use crate::waiting_room::store::{MemoryRooms, RedisRooms, RoomStore};
    let store: Arc<dyn RoomStore> = match &config.sessions.store {
        crate::config::model::SessionStoreKind::Embedded => Arc::new(MemoryRooms::default()),
        crate::config::model::SessionStoreKind::Redis { url, key_prefix } => Arc::new(
            RedisRooms::open(url, key_prefix, config.sessions.timeout)
                .await
                .map_err(|e| format!("waiting rooms: {e}"))?,
        ),
    };
    let rooms = crate::waiting_room::Rooms::new(store, key.clone(), metrics.waiting_room.clone());
    rooms.declare(&config.routes);
    Ok(rooms)
}

/// The assertion signer: the configured key file, or the directory's keys
/// on their rotation schedule.
async fn signer(
    config: &Config,
    directory: &Arc<dyn crate::customers::Directory>,
) -> Result<(Signer, Option<Arc<crate::identity::keys::KeyStore>>), String> {
    let id = &config.identity;
    if let Some(path) = &id.signing_key {
        let s = Signer::load(path, false, &id.issuer, id.assertion_ttl)
            .map_err(|e| format!("identity.signing_key: {e}"))?;
        return Ok((s, None));
    }
    let schedule = crate::identity::rotation::Schedule::new(
        id.key_rotation.as_secs(),
        id.assertion_ttl.as_secs(),
    );
    let keys = Arc::new(crate::identity::keys::KeyStore::new(
        directory.clone(),
        schedule,
    ));
    let (active, published) = keys
        .ring(crate::identity::keys::now())
        .await
        .map_err(|e| format!("identity: signing keys: {e}"))?;
    let refs: Vec<&str> = published.iter().map(String::as_str).collect();
    let s = Signer::from_ring(&active, &refs, &id.issuer, id.assertion_ttl)
        .map_err(|e| format!("identity: signing keys: {e}"))?;
    Ok((s, Some(keys)))
}

/// The gateway's dependencies.
pub struct Health {
    pub sessions: Arc<crate::health::Dependency>,
    pub customers: Arc<crate::health::Dependency>,
}

impl Health {
    pub fn all(&self) -> [&crate::health::Dependency; 2] {
        [&self.sessions, &self.customers]
    }
}

impl App {
    /// Keeps the signer on the rotation schedule: checks a few times per
    /// `ahead` (at least every minute, at most every second).
    pub fn spawn_key_rotation(self: &Arc<App>) {
        let Some(keys) = self.keys.clone() else {
            return;
        };
        let every = std::time::Duration::from_secs((keys.schedule.ahead / 4).clamp(1, 60));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else { return };
                keys.refresh(&app.signer, crate::identity::keys::now())
                    .await;
            }
        });
    }

    /// Starts the privacy worker (data map flushes, erasure and export jobs).
    pub fn spawn_privacy_worker(self: &Arc<App>) {
        tokio::spawn(crate::privacy::worker::run(Arc::downgrade(self)));
    }

    /// Probes each store once a second (within its timeout), so readiness
    /// and the metric follow a store's loss and return without traffic.
    pub fn spawn_health_probe(self: &Arc<App>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else { return };
                let _ = app.sessions.ping().await;
                let wait = match &app.startup.customers {
                    crate::config::model::CustomerStore::Postgres { timeout, .. } => *timeout,
                    crate::config::model::CustomerStore::Embedded { .. } => {
                        std::time::Duration::from_secs(5)
                    }
                };
                match tokio::time::timeout(wait, app.auth.directory().ping()).await {
                    Ok(Ok(())) => app.health.customers.up(),
                    Ok(Err(e)) => app.health.customers.down(&e.to_string()),
                    Err(_) => app.health.customers.down("no answer within the timeout"),
                }
            }
        });
    }
}

impl App {
    /// Builds the first snapshot. Must run on the runtime that will host the
    /// health checks.
    pub async fn start(config_path: &Path, config: Config) -> Result<Arc<App>, String> {
        let metrics = Arc::new(Metrics::new());
        let mut resolvers = HashMap::new();
        for l in &config.listeners {
            if let Some(tls) = &l.tls {
                let table = cert_table(&tls.certificates, &config.server.state_dir)
                    .map_err(|e| format!("listener `{}`: {e}", l.name))?;
                resolvers.insert(l.name.clone(), Arc::new(SniResolver::new(table)));
            }
        }
        let (directory, privacy) = crate::customers::open_with_privacy(&config.customers)
            .await
            .map_err(|e| format!("customers: {e}"))?;
        let tombstone_key = directory
            .shared_secret(
                crate::customers::TOMBSTONE_KEY,
                &crate::session::new_token(),
                unix_now(),
            )
            .await
            .map_err(|e| format!("customers: {e}"))?
            .into_bytes();
        let data_map = Arc::new(crate::privacy::datamap::Recorder::new(
            config.privacy.data_map_max_pairs,
        ));
        let (signer, keys) = signer(&config, &directory).await?;
        for w in crate::config::warnings(&config) {
            tracing::warn!("{w}");
        }
        let guest_secret = directory
            .shared_secret(
                crate::session::GuestKey::NAME,
                &crate::session::new_token(),
                unix_now(),
            )
            .await
            .map_err(|e| format!("customers: {e}"))?;
        let guest_key = crate::session::GuestKey::new(guest_secret.as_bytes());
        let rooms = rooms(&config, &guest_key, &metrics).await?;
        metrics.declare(&config);
        let http = HttpClient::new(std::time::Duration::from_secs(5))?;
        let stats = crate::session::CacheStats::new(&metrics.session_cache);
        let sessions: Arc<dyn crate::session::SessionStore> = match &config.sessions.store {
            crate::config::model::SessionStoreKind::Embedded => Arc::new(
                crate::session::EmbeddedStore::open(
                    &config.server.state_dir.join("sessions.db"),
                    stats,
                )
                .await
                .map_err(|e| format!("sessions: {e}"))?,
            ),
            crate::config::model::SessionStoreKind::Redis { url, key_prefix } => {
                crate::session::RedisStore::open(url, key_prefix, stats, config.sessions.timeout)
                    .await
                    .map_err(|e| format!("sessions: {e}"))?
            }
        };
        let health = Health {
            sessions: crate::health::Dependency::new("sessions", &metrics),
            customers: crate::health::Dependency::new("customers", &metrics),
        };
        // Every call bounded and recorded: a hung store answers 503, not never.
        let sessions: Arc<dyn crate::session::SessionStore> =
            Arc::new(crate::session::Bounded::new(
                sessions,
                config.sessions.timeout,
                health.sessions.clone(),
            ));
        let pages = crate::pages::Pages::new(&config.pages)?;
        let mailer = match &config.accounts.mail {
            Some(m) => Some(Arc::new(crate::accounts::mail::Mailer::new(
                m,
                http.clone(),
            )?)),
            None => None,
        };
        let argon2 = config.accounts.argon2;
        let dummy_hash = tokio::task::spawn_blocking(move || {
            crate::accounts::password::hash(&argon2, &crate::session::new_token())
        })
        .await
        .map_err(|e| format!("accounts.argon2: {e}"))?
        .map_err(|e| format!("accounts.argon2: {e}"))?;
        let config = Arc::new(config);
        let snapshot = build(1, config.clone(), &Previous::default(), &metrics, &http).await?;
        metrics.config_last_success.set(unix_now());
        let ttl = config.identity.assertion_ttl;
        let hashing = Arc::new(crate::accounts::hashing::Pool::new(
            &config.accounts.hashing,
            metrics.hashing.clone(),
        ));
        Ok(Arc::new(App {
            config_path: config_path.to_path_buf(),
            current: ArcSwap::from_pointee(snapshot),
            resolvers,
            startup: config,
            generation: AtomicU64::new(1),
            reload_lock: tokio::sync::Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            listeners_up: AtomicBool::new(false),
            accept_loops: Default::default(),
            accept_loops_expected: Default::default(),
            auth: crate::auth::Authenticator::new(directory, metrics.clone()),
            signer,
            http,
            assertions: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl / 2)
                .build(),
            sessions,
            pages,
            mailer,
            argon2,
            hashing,
            dummy_hash,
            consent_cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(1))
                .build(),
            seen_logout_tokens: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(3600))
                .build(),
            guest_key,
            rooms,
            health,
            keys,
            metrics,
            privacy,
            data_map,
            tombstone_key,
            privacy_wake: Arc::new(tokio::sync::Notify::new()),
            gpc_pending: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(30))
                .build(),
        }))
    }

    /// A customer's granted purposes, from the ledger (cached for a second).
    pub async fn consents_of(
        &self,
        customer_id: &str,
    ) -> Result<Arc<std::collections::BTreeMap<String, u32>>, String> {
        if let Some(c) = self.consent_cache.get(customer_id).await {
            return Ok(c);
        }
        let records = self
            .auth
            .directory()
            .consent_records(customer_id)
            .await
            .map_err(|e| e.to_string())?;
        let granted = Arc::new(crate::consent::granted(&records));
        self.consent_cache
            .insert(customer_id.to_string(), granted.clone())
            .await;
        Ok(granted)
    }

    /// Records consent decisions: the ledger first (durable, with their
    /// events), then every session of the customer on every node and this
    /// node's cache; the customer's granted purposes after them.
    pub async fn record_consents(
        &self,
        customer_id: &str,
        decisions: &[crate::consent::Decision],
    ) -> Result<std::collections::BTreeMap<String, u32>, String> {
        let dir = self.auth.directory();
        if !decisions.is_empty() {
            dir.append_consent(customer_id, decisions)
                .await
                .map_err(|e| e.to_string())?;
        }
        for d in decisions {
            self.metrics
                .consent_decisions
                .with_label_values(&[d.purpose.as_str(), d.action.as_str()])
                .inc();
        }
        let records = dir
            .consent_records(customer_id)
            .await
            .map_err(|e| e.to_string())?;
        let granted = crate::consent::granted(&records);
        if let Err(e) = self.sessions.refresh_consents(customer_id, &granted).await {
            // The ledger has it; sessions catch up at their next sign-in.
            tracing::error!(error = %e, "sessions keep old consents until they end");
        }
        self.consent_cache.invalidate(customer_id).await;
        Ok(granted)
    }

    /// Records the withdrawals Global Privacy Control asked for (once per
    /// customer while one is being recorded), off the request path.
    pub fn withdraw_by_gpc(
        self: &Arc<App>,
        customer_id: &str,
        purposes: &[&crate::consent::Purpose],
        route: &str,
        user_agent: Option<&str>,
    ) {
        if self.gpc_pending.contains_key(customer_id) {
            return;
        }
        self.gpc_pending.insert(customer_id.to_string(), ());
        let at = unix_now();
        let decisions: Vec<crate::consent::Decision> = purposes
            .iter()
            .map(|p| crate::consent::Decision {
                purpose: p.id.clone(),
                version: p.version,
                text_hash: p.text_hash(),
                action: crate::consent::Action::Withdraw,
                at,
                channel: format!("web:{route}"),
                method: "gpc".into(),
                user_agent: user_agent.map(|u| u.chars().take(256).collect()),
            })
            .collect();
        let (app, id) = (self.clone(), customer_id.to_string());
        tokio::spawn(async move {
            match app.record_consents(&id, &decisions).await {
                Ok(_) => {
                    tracing::info!(customer = %id, withdrawn = decisions.len(), "Global Privacy Control honoured")
                }
                Err(e) => {
                    // Withheld from every request meanwhile; recorded at the next one.
                    tracing::warn!(customer = %id, error = %e, "Global Privacy Control not recorded yet");
                    app.gpc_pending.invalidate(&id);
                }
            }
        });
    }

    /// The snapshot new requests use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the config file again and applies it, or keeps the old one.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = self.try_reload().await;
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(r) => {
                self.metrics.config_last_success.set(unix_now());
                tracing::info!(
                    generation = r.generation,
                    routes = r.routes,
                    upstreams = r.upstreams,
                    restart_required = ?r.restart_required,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                tracing::error!(errors = %e, "configuration reload refused; the running configuration is kept")
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let path = self.config_path.clone();
        let config = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| ReloadError::Apply(format!("config loader failed: {e}")))?
            .map_err(ReloadError::Invalid)?;
        let restart_required = restart_only_changes(&self.startup, &config);
        // Certificates first: if one fails, nothing has been swapped yet.
        let mut tables = Vec::new();
        for l in &config.listeners {
            if let (Some(tls), Some(resolver)) = (&l.tls, self.resolvers.get(&l.name)) {
                let table = cert_table(&tls.certificates, &config.server.state_dir)
                    .map_err(|e| ReloadError::Apply(format!("listener `{}`: {e}", l.name)))?;
                tables.push((resolver.clone(), table));
            }
        }
        let old = self.snapshot();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let config = Arc::new(config);
        let previous = Previous {
            pools: old.pools.clone(),
            providers: old.providers.clone(),
        };
        let next = build(generation, config, &previous, &self.metrics, &self.http)
            .await
            .map_err(ReloadError::Apply)?;
        if next.config.providers != old.config.providers {
            // Audiences or algorithms may have changed: verify every token again.
            self.auth.forget_all();
        }
        for (resolver, table) in tables {
            resolver.replace(table);
        }
        for (name, pool) in &old.pools {
            let successor = next.pools.get(name);
            if !successor.is_some_and(|p| Arc::ptr_eq(p, pool)) {
                pool.forget_metrics(&self.metrics, successor.map(|p| p.as_ref()));
            }
        }
        // The pools were rebuilt after forget_metrics ran for their old
        // versions only when they changed; re-assert the gauges of new pools.
        for pool in next.pools.values() {
            if !old.pools.values().any(|p| Arc::ptr_eq(p, pool)) {
                if let Some(l) = &pool.admission {
                    l.publish();
                }
                for (i, a) in pool.addresses.iter().enumerate() {
                    self.metrics
                        .upstream_healthy
                        .with_label_values(&[pool.config.name.as_str(), a.label.as_str()])
                        .set(i64::from(pool.healthy(i)));
                }
            }
        }
        let report = ReloadReport {
            generation,
            routes: next.config.routes.len(),
            upstreams: next.pools.len(),
            restart_required,
        };
        self.data_map
            .set_max_pairs(next.config.privacy.data_map_max_pairs);
        self.rooms.declare(&next.config.routes);
        self.metrics.declare(&next.config);
        self.current.store(Arc::new(next));
        Ok(report)
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

fn cert_table(
    configured: &[crate::config::model::Certificate],
    state_dir: &Path,
) -> Result<CertTable, crate::edge::tls::TlsError> {
    let certs = listener_certificates(configured, state_dir)?;
    CertTable::build(&certs)
}

/// What a new snapshot may reuse from the running one.
#[derive(Default)]
struct Previous {
    pools: HashMap<String, Arc<Pool>>,
    providers: Vec<Arc<ProviderKeys>>,
}

/// Builds a snapshot, keeping every pool whose definition did not change (and
/// with it its health state and connections) and every provider's known keys.
async fn build(
    generation: u64,
    config: Arc<Config>,
    previous: &Previous,
    metrics: &Arc<Metrics>,
    http: &HttpClient,
) -> Result<Snapshot, String> {
    let providers = config
        .providers
        .iter()
        .map(|p| {
            previous
                .providers
                .iter()
                .find(|old| old.config == *p)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(ProviderKeys::new(
                        p.clone(),
                        http.clone(),
                        p.jwks_min_refresh,
                        metrics.clone(),
                    ))
                })
        })
        .collect();
    let mut pools = HashMap::new();
    for u in &config.upstreams {
        let running = previous.pools.get(&u.name);
        let pool = match running {
            Some(p) if p.config == *u => p.clone(),
            _ => Pool::start(
                u.clone(),
                metrics.clone(),
                running.and_then(|p| p.gate_for(u)),
            )
            .await
            .map_err(|e| format!("upstream `{}`: {e}", u.name))?,
        };
        pools.insert(u.name.clone(), pool);
    }
    let mut route_pools = Vec::with_capacity(config.routes.len());
    for r in &config.routes {
        // Validation guarantees the upstream exists.
        let pool = pools
            .get(&r.upstream)
            .ok_or_else(|| format!("route `{}`: upstream `{}` missing", r.name, r.upstream))?;
        route_pools.push(pool.clone());
    }
    Ok(Snapshot {
        generation,
        router: Router::new(&config.routes),
        route_metrics: config
            .routes
            .iter()
            .map(|r| metrics.route(&r.name))
            .collect(),
        unrouted: metrics.route("-"),
        portal_metrics: crate::portal::AREAS
            .iter()
            .map(|a| metrics.route(a))
            .collect(),
        header_policy: crate::edge::header_policy::HeaderPolicy::new(
            config.requests.underscores,
            config.mapped_identity_headers(),
        ),
        providers,
        route_pools,
        pools,
        config,
    })
}

/// Settings bound at start (sockets, threads) that a reload cannot change.
fn restart_only_changes(running: &Config, next: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let key = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| (l.name.clone(), l.address, l.tls.as_ref().map(|t| t.http2)))
            .collect::<Vec<_>>()
    };
    if key(running) != key(next) {
        out.push("listeners (names, addresses, TLS on/off, http2)".to_string());
    }
    if running.admin.as_ref().map(|a| a.address) != next.admin.as_ref().map(|a| a.address) {
        out.push("admin.address".to_string());
    }
    if running.server != next.server {
        out.push("server".to_string());
    }
    if running.demo != next.demo {
        out.push("demo".to_string());
    }
    if running.log != next.log {
        out.push("log".to_string());
    }
    if running.identity != next.identity {
        out.push("identity".to_string());
    }
    if running.customers != next.customers {
        out.push("customers".to_string());
    }
    if running.pages != next.pages {
        out.push("pages".to_string());
    }
    if running.accounts.mail != next.accounts.mail {
        out.push("accounts.mail".to_string());
    }
    if running.accounts.hashing != next.accounts.hashing {
        out.push("accounts.hashing".to_string());
    }
    if running.accounts.argon2 != next.accounts.argon2 {
        out.push("accounts.argon2".to_string());
    }
    if running.sessions.store != next.sessions.store {
        out.push("sessions.store".to_string());
    }
    out
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
