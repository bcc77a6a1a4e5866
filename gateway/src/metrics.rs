//! Prometheus metrics. One registry per process; per-route handles are
//! resolved once per configuration snapshot so the request path does no label
//! hashing. Labels are bounded: route names from config, a fixed method set,
//! status classes.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics of one gateway process.
pub struct Metrics {
    pub registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_errors: IntCounterVec,
    pub in_flight: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_last_success: IntGauge,
    pub auth_decisions: IntCounterVec,
    pub token_cache: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub logins: IntCounterVec,
    pub sessions_active: IntGauge,
    pub dependency_up: IntGaugeVec,
    pub session_cache: IntCounterVec,
    pub jwks_cache: IntCounterVec,
    pub outbox_depth: IntGauge,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_given_up: IntCounter,
    pub throttled: IntCounterVec,
    pub registrations: IntCounterVec,
    pub verifications: IntCounterVec,
    pub password_failures: IntCounter,
    /// The password-hashing pool (`accounts::hashing`).
    pub hashing: crate::accounts::hashing::Gauges,
    pub mail_failures: IntCounterVec,
    pub password_resets: IntCounterVec,
    pub consent_enforcement: IntCounterVec,
    pub consent_decisions: IntCounterVec,
    pub connections_accepted: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub privacy: PrivacyMetrics,
    /// Admission control per upstream (`crate::admission`).
    pub admission: crate::admission::Gauges,
    /// Waiting rooms per route (`crate::waiting_room`).
    pub waiting_room: crate::waiting_room::Gauges,
    /// Every series name this process can export (histograms with suffixes).
    names: Vec<String>,
}

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// `omnigate_throttled_total{endpoint}`: every scope that counts failures.
const THROTTLED: [&str; 11] = [
    "admin",
    "password",
    "password-account",
    "register",
    "verify",
    "verify-mail",
    "reset",
    "reset-confirm",
    "callback",
    "backchannel",
    "hop",
];
/// `omnigate_auth_decisions_total{result}` (`gate::count`).
const AUTH_RESULTS: [&str; 7] = [
    "anonymous",
    "allowed",
    "unauthenticated",
    "invalid_credentials",
    "insufficient_scope",
    "email_unverified",
    "unavailable",
];
/// `omnigate_logins_total{result}`.
const LOGIN_RESULTS: [&str; 8] = [
    "success",
    "hop_success",
    "hop_refused",
    "expired",
    "refused",
    "invalid",
    "provider_down",
    "unavailable",
];
/// `omnigate_upstream_errors_total{kind}` (`edge::error_kind`).
const UPSTREAM_ERRORS: [&str; 6] = [
    "connect_timeout",
    "connect_refused",
    "timeout",
    "tls",
    "connect",
    "protocol",
];

pub(crate) fn must<T>(r: Result<T, prometheus::Error>) -> T {
    // Metric definitions are static; a failure here is a programming error
    // caught by the unit test below, never by input.
    #[allow(clippy::expect_used)]
    r.expect("static metric definition")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_total = must(IntCounterVec::new(
            Opts::new(
                "omnigate_requests_total",
                "Requests answered, by route, method and status class",
            ),
            &["route", "method", "status_class"],
        ));
        let request_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "omnigate_request_duration_seconds",
                "Time from request start to the end of the response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        ));
        let upstream_healthy = must(IntGaugeVec::new(
            Opts::new(
                "omnigate_upstream_healthy",
                "1 if the upstream address is in rotation, 0 if not",
            ),
            &["upstream", "address"],
        ));
        let upstream_errors = must(IntCounterVec::new(
            Opts::new(
                "omnigate_upstream_errors_total",
                "Failed upstream attempts, by upstream and kind",
            ),
            &["upstream", "kind"],
        ));
        let in_flight = must(IntGauge::new(
            "omnigate_requests_in_flight",
            "Requests being served now",
        ));
        let config_reloads = must(IntCounterVec::new(
            Opts::new(
                "omnigate_config_reloads_total",
                "Configuration reloads, by result",
            ),
            &["result"],
        ));
        let config_last_success = must(IntGauge::new(
            "omnigate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration load that was applied",
        ));
        let auth_decisions = must(IntCounterVec::new(
            Opts::new(
                "omnigate_auth_decisions_total",
                "Access decisions on non-public routes, by route and result",
            ),
            &["route", "result"],
        ));
        let token_cache = must(IntCounterVec::new(
            Opts::new(
                "omnigate_token_cache_total",
                "Bearer token verification cache lookups, by result",
            ),
            &["result"],
        ));
        let jwks_fetches = must(IntCounterVec::new(
            Opts::new(
                "omnigate_jwks_fetches_total",
                "Provider key set fetches, by provider and result",
            ),
            &["provider", "result"],
        ));
        let logins = must(IntCounterVec::new(
            Opts::new(
                "omnigate_logins_total",
                "Browser logins, by provider and result",
            ),
            &["provider", "result"],
        ));
        let sessions_active = must(IntGauge::new(
            "omnigate_sessions_active",
            "Unexpired sessions in the session store (shared by all nodes on Redis), read at scrape",
        ));
        let dependency_up = must(IntGaugeVec::new(
            Opts::new(
                "omnigate_dependency_up",
                "1 while a dependency answers within its timeout, 0 while it fails (sessions, customers)",
            ),
            &["dependency"],
        ));
        let session_cache = must(IntCounterVec::new(
            Opts::new(
                "omnigate_session_cache_total",
                "Session lookups answered by this node's cache (hit) or the store (miss)",
            ),
            &["result"],
        ));
        let jwks_cache = must(IntCounterVec::new(
            Opts::new(
                "omnigate_jwks_cache_total",
                "Token key lookups: the cached key set had the kid (hit) or a refresh was needed (miss)",
            ),
            &["provider", "result"],
        ));
        let outbox_depth = must(IntGauge::new(
            "omnigate_outbox_depth",
            "Events not yet delivered to every subscribed webhook, read at scrape",
        ));
        let webhook_deliveries = must(IntCounterVec::new(
            Opts::new(
                "omnigate_webhook_deliveries_total",
                "Webhook delivery attempts, by webhook and result (delivered, failed)",
            ),
            &["webhook", "result"],
        ));
        let webhook_given_up = must(IntCounter::new(
            "omnigate_webhook_events_given_up_total",
            "Events dropped after events.max_attempts failed attempts",
        ));
        let throttled = must(IntCounterVec::new(
            Opts::new(
                "omnigate_throttled_total",
                "Requests refused with 429 after repeated failures, by endpoint",
            ),
            &["endpoint"],
        ));
        let registrations = must(IntCounterVec::new(
            Opts::new(
                "omnigate_registrations_total",
                "Self-registrations with email and password, by result (created, taken, invalid)",
            ),
            &["result"],
        ));
        let verifications = must(IntCounterVec::new(
            Opts::new(
                "omnigate_email_verifications_total",
                "Email verification links followed, by result (verified, invalid)",
            ),
            &["result"],
        ));
        let password_failures = must(IntCounter::new(
            "omnigate_password_failures_total",
            "Password sign-ins refused (wrong password or unknown email)",
        ));
        let hashing = crate::accounts::hashing::Gauges {
            queued: must(IntGauge::new(
                "omnigate_password_hash_queue",
                "Password hashes waiting for a hashing worker",
            )),
            running: must(IntGauge::new(
                "omnigate_password_hash_running",
                "Password hashes being computed",
            )),
            wait: must(Histogram::with_opts(
                HistogramOpts::new(
                    "omnigate_password_hash_wait_seconds",
                    "Time a password hash waited for a worker",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
                ]),
            )),
            refused: must(IntCounterVec::new(
                Opts::new(
                    "omnigate_password_hash_refused_total",
                    "Password hashes refused (the sign-in answered 503), by reason",
                ),
                &["reason"],
            )),
        };
        for reason in ["queue_full", "deadline", "failed"] {
            hashing.refused.with_label_values(&[reason]);
        }
        let mail_failures = must(IntCounterVec::new(
            Opts::new(
                "omnigate_mail_failures_total",
                "Mails given up after retries, by kind",
            ),
            &["kind"],
        ));
        let password_resets = must(IntCounterVec::new(
            Opts::new(
                "omnigate_password_resets_total",
                "Password reset steps, by step (requested, completed, invalid)",
            ),
            &["step"],
        ));
        let consent_enforcement = must(IntCounterVec::new(
            Opts::new(
                "omnigate_consent_enforcement_total",
                "Consent rules applied to identified requests, by route and outcome (allowed, denied, asked, anonymous)",
            ),
            &["route", "outcome"],
        ));
        let connections_accepted = must(IntCounterVec::new(
            Opts::new(
                "omnigate_connections_accepted_total",
                "Client connections accepted, by listener and worker thread",
            ),
            &["listener", "worker"],
        ));
        let tls_handshake_failures = must(IntCounterVec::new(
            Opts::new(
                "omnigate_tls_handshake_failures_total",
                "Client TLS handshakes that failed or timed out, by listener",
            ),
            &["listener"],
        ));
        let consent_decisions = must(IntCounterVec::new(
            Opts::new(
                "omnigate_consent_decisions_total",
                "Grants and withdrawals recorded in the consent ledger, by purpose and action",
            ),
            &["purpose", "action"],
        ));
        let build = must(IntGaugeVec::new(
            Opts::new("omnigate_build_info", "Build information"),
            &["version"],
        ));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let mut names = Vec::new();
        for c in [
            Box::new(requests_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(in_flight.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_last_success.clone()),
            Box::new(auth_decisions.clone()),
            Box::new(token_cache.clone()),
            Box::new(hashing.queued.clone()),
            Box::new(hashing.running.clone()),
            Box::new(hashing.wait.clone()),
            Box::new(hashing.refused.clone()),
            Box::new(jwks_fetches.clone()),
            Box::new(logins.clone()),
            Box::new(sessions_active.clone()),
            Box::new(dependency_up.clone()),
            Box::new(session_cache.clone()),
            Box::new(jwks_cache.clone()),
            Box::new(outbox_depth.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(webhook_given_up.clone()),
            Box::new(throttled.clone()),
            Box::new(registrations.clone()),
            Box::new(verifications.clone()),
            Box::new(password_failures.clone()),
            Box::new(mail_failures.clone()),
            Box::new(password_resets.clone()),
            Box::new(consent_enforcement.clone()),
            Box::new(consent_decisions.clone()),
            Box::new(connections_accepted.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(build),
        ] {
            register(&registry, &mut names, c);
        }
        let privacy = PrivacyMetrics::register(&registry, &mut names);
        let (admission, waiting_room) = spikes(&registry, &mut names);
        // Both results are visible from the start, so rate() works on the first reload.
        for r in ["success", "failure"] {
            config_reloads.with_label_values(&[r]);
        }
        for r in ["hit", "miss"] {
            session_cache.with_label_values(&[r]);
        }
        Metrics {
            registry,
            requests_total,
            request_duration,
            upstream_healthy,
            upstream_errors,
            in_flight,
            config_reloads,
            config_last_success,
            auth_decisions,
            token_cache,
            hashing,
            jwks_fetches,
            logins,
            sessions_active,
            dependency_up,
            session_cache,
            jwks_cache,
            outbox_depth,
            webhook_deliveries,
            webhook_given_up,
            throttled,
            registrations,
            verifications,
            password_failures,
            mail_failures,
            password_resets,
            consent_enforcement,
            consent_decisions,
            connections_accepted,
            tls_handshake_failures,
            privacy,
            admission,
            waiting_room,
            names,
        }
    }

    /// Creates the series this configuration can produce, at zero, so every
    /// documented family is exported from the start and a dashboard reads 0
    /// rather than "No data" before the first event. Called at start and on
    /// every reload (series of removed routes stay until a restart).
    pub fn declare(&self, c: &crate::config::model::Config) {
        let each = |v: &IntCounterVec, first: &[&str], second: &[&str]| {
            for a in first {
                for b in second {
                    v.with_label_values(&[a, b]);
                }
            }
        };
        let one = |v: &IntCounterVec, values: &[&str]| {
            for x in values {
                v.with_label_values(&[x]);
            }
        };
        let mut labels: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
        labels.extend(crate::portal::AREAS);
        labels.push("-");
        for r in labels {
            for class in ["2xx", "5xx"] {
                self.requests_total.with_label_values(&[r, "GET", class]);
            }
        }
        one(&self.token_cache, &["hit", "miss"]);
        one(&self.registrations, &["created", "taken", "invalid"]);
        one(&self.verifications, &["verified", "invalid"]);
        one(
            &self.password_resets,
            &["requested", "completed", "invalid"],
        );
        one(
            &self.mail_failures,
            &crate::accounts::mail::Kind::ALL.map(|k| k.as_str()),
        );
        one(&self.throttled, &THROTTLED);
        let routes: Vec<&str> = c
            .routes
            .iter()
            .filter(|r| r.access != crate::config::model::Access::Public)
            .map(|r| r.name.as_str())
            .collect();
        each(&self.auth_decisions, &routes, &AUTH_RESULTS);
        let consent: Vec<&str> = c
            .routes
            .iter()
            .filter(|r| r.consent.is_some())
            .map(|r| r.name.as_str())
            .collect();
        each(
            &self.consent_enforcement,
            &consent,
            &["allowed", "denied", "asked", "anonymous", "reasked"],
        );
        let purposes: Vec<&str> = c.purposes.iter().map(|p| p.id.as_str()).collect();
        each(&self.consent_decisions, &purposes, &["grant", "withdraw"]);
        let mut logins: Vec<&str> = c.login_providers().map(|p| p.name.as_str()).collect();
        if c.accounts.passwords {
            logins.push("password");
        }
        each(&self.logins, &logins, &LOGIN_RESULTS);
        let keyed: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
        each(&self.jwks_fetches, &keyed, &["success", "failure"]);
        each(&self.jwks_cache, &keyed, &["hit", "miss"]);
        let hooks: Vec<&str> = c.events.webhooks.iter().map(|w| w.name.as_str()).collect();
        each(&self.webhook_deliveries, &hooks, &["delivered", "failed"]);
        let proxied: Vec<&str> = c
            .upstreams
            .iter()
            .filter(|u| !u.forward_auth)
            .map(|u| u.name.as_str())
            .collect();
        each(&self.upstream_errors, &proxied, &UPSTREAM_ERRORS);
        let systems: Vec<&str> = c.privacy.systems.iter().map(|s| s.name.as_str()).collect();
        one(&self.privacy.system_failures, &systems);
    }

    /// Every series name this process can export, whether or not it has
    /// samples yet: what dashboards and alerts may query.
    pub fn series_names(&self) -> &[String] {
        &self.names
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// Handles for one route (or `-` for requests that matched none).
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_string(),
            duration: self.request_duration.with_label_values(&[route]),
            requests: Default::default(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Privacy operations: jobs, holds, failing systems, the data map.
pub struct PrivacyMetrics {
    pub jobs: IntGaugeVec,
    pub overdue: IntGauge,
    pub holds: IntGauge,
    pub failing: IntGaugeVec,
    pub system_failures: IntCounterVec,
    pub map_pairs: IntGauge,
    pub map_bytes: IntGauge,
    pub map_dropped: IntCounter,
    pub map_flush_failures: IntCounter,
}

impl PrivacyMetrics {
    fn register(registry: &Registry, names: &mut Vec<String>) -> PrivacyMetrics {
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            must(IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let m = PrivacyMetrics {
            jobs: gauge_vec(
                "omnigate_privacy_jobs",
                "Privacy requests by kind (erasure, export) and state, read every few seconds",
                &["kind", "state"],
            ),
            overdue: must(IntGauge::new(
                "omnigate_privacy_jobs_overdue",
                "Privacy requests past their deadline and not completed",
            )),
            holds: must(IntGauge::new(
                "omnigate_privacy_holds_active",
                "Legal holds in force (system retentions and operator holds)",
            )),
            failing: gauge_vec(
                "omnigate_privacy_tasks_failing",
                "Tasks whose last attempt failed and wait for a retry, by system",
                &["system"],
            ),
            system_failures: must(IntCounterVec::new(
                Opts::new(
                    "omnigate_privacy_system_failures_total",
                    "Failed erasure or export attempts, by system",
                ),
                &["system"],
            )),
            map_pairs: must(IntGauge::new(
                "omnigate_data_map_pending_pairs",
                "Customer × upstream pairs aggregated in memory, not yet flushed",
            )),
            map_bytes: must(IntGauge::new(
                "omnigate_data_map_pending_bytes",
                "Estimated heap bytes of the in-memory data map aggregate",
            )),
            map_dropped: must(IntCounter::new(
                "omnigate_data_map_dropped_total",
                "Sightings of new pairs not kept because the aggregate was full",
            )),
            map_flush_failures: must(IntCounter::new(
                "omnigate_data_map_flush_failures_total",
                "Data map flushes that failed (the batch is kept and retried)",
            )),
        };
        let all: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(m.jobs.clone()),
            Box::new(m.overdue.clone()),
            Box::new(m.holds.clone()),
            Box::new(m.failing.clone()),
            Box::new(m.system_failures.clone()),
            Box::new(m.map_pairs.clone()),
            Box::new(m.map_bytes.clone()),
            Box::new(m.map_dropped.clone()),
            Box::new(m.map_flush_failures.clone()),
        ];
        for c in all {
            register(registry, names, c);
        }
        m
    }
}

/// The histogram families: their series are `_bucket`, `_sum`, `_count`.
const HISTOGRAMS: [&str; 3] = [
    "omnigate_request_duration_seconds",
    "omnigate_password_hash_wait_seconds",
    "omnigate_admission_queue_wait_seconds",
];

/// Registers `c` and lists the series names it can export.
fn register(registry: &Registry, names: &mut Vec<String>, c: Box<dyn prometheus::core::Collector>) {
    for d in c.desc() {
        names.push(d.fq_name.clone());
        if HISTOGRAMS.contains(&d.fq_name.as_str()) {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.push(format!("{}{suffix}", d.fq_name));
            }
        }
    }
    must(registry.register(c));
}

/// Admission control and waiting-room series, registered.
fn spikes(
    registry: &Registry,
    names: &mut Vec<String>,
) -> (crate::admission::Gauges, crate::waiting_room::Gauges) {
    let gauge_vec = |name: &str, help: &str, label: &str| {
        must(IntGaugeVec::new(Opts::new(name, help), &[label]))
    };
    let admission = crate::admission::Gauges {
        limit: gauge_vec(
            "omnigate_admission_limit",
            "Requests an upstream may have in flight now (adaptive limits move)",
            "upstream",
        ),
        in_flight: gauge_vec(
            "omnigate_admission_in_flight",
            "Requests admitted to an upstream and not yet finished",
            "upstream",
        ),
        queued: gauge_vec(
            "omnigate_admission_queued",
            "Requests waiting for a slot at an upstream",
            "upstream",
        ),
        requests: must(IntCounterVec::new(
            Opts::new(
                "omnigate_admission_requests_total",
                "Requests at an upstream's gate, by class and outcome (admitted, queued, shed, timed_out)",
            ),
            &["upstream", "class", "outcome"],
        )),
        wait: must(HistogramVec::new(
            HistogramOpts::new(
                "omnigate_admission_queue_wait_seconds",
                "Time a request waited for a slot at an upstream",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["upstream"],
        )),
    };
    let waiting_room = crate::waiting_room::Gauges {
        queue: gauge_vec(
            "omnigate_waiting_room_queue",
            "Visitors holding a place in a route's waiting room (all nodes)",
            "route",
        ),
        active: gauge_vec(
            "omnigate_waiting_room_active_users",
            "Visitors inside a route's waiting room limit (all nodes)",
            "route",
        ),
        admitted_per_minute: gauge_vec(
            "omnigate_waiting_room_admitted_per_minute",
            "Visitors let in during the last minute (all nodes): the measured outflow",
            "route",
        ),
        estimated_wait: gauge_vec(
            "omnigate_waiting_room_estimated_wait_seconds",
            "The wait a visitor joining the end of the queue is shown",
            "route",
        ),
        admitted: must(IntCounterVec::new(
            Opts::new(
                "omnigate_waiting_room_entries_total",
                "Visitors this node let in or sent to wait, by route and result (entered, waiting)",
            ),
            &["route", "result"],
        )),
    };
    let all: [Box<dyn prometheus::core::Collector>; 10] = [
        Box::new(admission.limit.clone()),
        Box::new(admission.in_flight.clone()),
        Box::new(admission.queued.clone()),
        Box::new(admission.requests.clone()),
        Box::new(admission.wait.clone()),
        Box::new(waiting_room.queue.clone()),
        Box::new(waiting_room.active.clone()),
        Box::new(waiting_room.admitted_per_minute.clone()),
        Box::new(waiting_room.estimated_wait.clone()),
        Box::new(waiting_room.admitted.clone()),
    ];
    for c in all {
        register(registry, names, c);
    }
    (admission, waiting_room)
}

/// Pre-resolved per-route series.
pub struct RouteMetrics {
    route: String,
    pub duration: Histogram,
    requests: [[OnceLock<IntCounter>; 5]; 8],
}

impl RouteMetrics {
    /// Counts one answered request.
    pub fn count(&self, metrics: &Metrics, method: &str, status: u16) {
        let m = METHODS
            .iter()
            .position(|x| *x == method)
            .unwrap_or(METHODS.len() - 1);
        let c = usize::from((status / 100).clamp(1, 5)) - 1;
        self.requests[m][c]
            .get_or_init(|| {
                metrics.requests_total.with_label_values(&[
                    self.route.as_str(),
                    METHODS[m],
                    CLASSES[c],
                ])
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_families() {
        let m = Metrics::new();
        let r = m.route("store");
        r.count(&m, "GET", 200);
        r.count(&m, "BREW", 418);
        r.duration.observe(0.01);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(
            r#"omnigate_requests_total{method="GET",route="store",status_class="2xx"} 1"#
        ));
        assert!(text.contains(
            r#"omnigate_requests_total{method="OTHER",route="store",status_class="4xx"} 1"#
        ));
        assert!(text.contains("omnigate_request_duration_seconds_bucket"));
        assert!(text.contains(r#"omnigate_config_reloads_total{result="failure"} 0"#));
        assert!(text.contains("omnigate_requests_in_flight 0"));
    }
}

#[cfg(test)]
mod declared {
    use super::*;

    /// On the shipped configuration, every family this process can export
    /// has a series before the first request, except the waiting-room ones
    /// (it configures no room).
    #[test]
    fn every_family_is_exported_from_the_start() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.yaml");
        let config = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let m = Metrics::new();
        m.declare(&config);
        // What a snapshot and the pools create at start.
        for r in &config.routes {
            m.route(&r.name);
        }
        m.route("-");
        for u in &config.upstreams {
            if let Some(a) = u.admission {
                crate::admission::Limiter::new(&u.name, a, m.admission.clone());
            }
            for a in &u.addresses {
                m.upstream_healthy
                    .with_label_values(&[u.name.as_str(), a.as_str()]);
            }
        }
        m.dependency_up.with_label_values(&["sessions"]);
        m.connections_accepted.with_label_values(&["http", "0"]);
        m.tls_handshake_failures.with_label_values(&["https"]);
        m.privacy.jobs.with_label_values(&["erasure", "pending"]);
        m.privacy.failing.with_label_values(&["store"]);
        let text = String::from_utf8(m.render()).unwrap();
        // Families keyed by something this configuration has none of.
        let none = |prefix: &str, empty: bool| empty.then(|| prefix.to_string());
        let absent: Vec<String> = [
            Some("omnigate_waiting_room_".to_string()),
            none("omnigate_jwks_", config.providers.is_empty()),
            none(
                "omnigate_webhook_deliveries",
                config.events.webhooks.is_empty(),
            ),
            none(
                "omnigate_consent_enforcement",
                config.routes.iter().all(|r| r.consent.is_none()),
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        let exported = |n: &str| {
            text.lines().any(|l| {
                l.strip_prefix(n)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']) || rest.starts_with("_bucket"))
            })
        };
        let missing: Vec<&String> = m
            .series_names()
            .iter()
            .filter(|n| !absent.iter().any(|a| n.starts_with(a.as_str())))
            .filter(|n| !exported(n))
            .collect();
        assert!(
            missing.is_empty(),
            "not exported before their first event: {missing:?}"
        );
    }
}
