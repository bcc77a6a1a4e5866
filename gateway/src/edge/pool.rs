//! Upstream pools: the addresses of one named upstream, their health (active
//! HTTP checks via pingora-load-balancing), and the choice of an address per
//! request (round-robin or least-connections, skipping unhealthy and
//! already-tried addresses). The choice itself is the pure [`choose`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::health_check::{HealthObserve, HttpHealthCheck};
use pingora_load_balancing::{Backend, Backends};

use crate::config::model::{Balance, Upstream};
use crate::metrics::Metrics;

/// One address of a pool.
pub struct Address {
    pub addr: SocketAddr,
    pub label: String,
    backend: Backend,
    in_flight: AtomicUsize,
}

/// A named upstream and its live state.
pub struct Pool {
    pub config: Upstream,
    /// The gate in front of it, if `admission:` is set.
    pub admission: Option<Arc<crate::admission::Limiter>>,
    pub addresses: Vec<Address>,
    backends: Backends,
    next: AtomicUsize,
    peer_template: HttpPeer,
}

/// Marks one request as in flight on an address until dropped.
pub struct InFlight {
    pool: Arc<Pool>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(a) = self.pool.addresses.get(self.index) {
            a.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What [`choose`] needs to know about one address.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub healthy: bool,
    pub tried: bool,
    pub in_flight: usize,
}

/// Picks a healthy address not yet tried for this request; None when there is
/// none (the caller answers 503 or 502: no request waits on a dead address).
pub fn choose(balance: Balance, cands: &[Candidate], rr: usize) -> Option<usize> {
    let n = cands.len();
    let eligible = |c: &Candidate| !c.tried && c.healthy;
    match balance {
        Balance::RoundRobin => (0..n).map(|k| (rr + k) % n).find(|&i| eligible(&cands[i])),
        Balance::LeastConnections => (0..n)
            .map(|k| (rr + k) % n)
            .filter(|&i| eligible(&cands[i]))
            .min_by_key(|&i| cands[i].in_flight),
    }
}

struct HealthMetrics {
    upstream: String,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl HealthObserve for HealthMetrics {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let addr = target.addr.to_string();
        self.metrics
            .upstream_healthy
            .with_label_values(&[self.upstream.as_str(), addr.as_str()])
            .set(i64::from(healthy));
        if healthy {
            tracing::info!(upstream = %self.upstream, address = %addr, "upstream address healthy again, back in rotation");
        } else {
            tracing::warn!(upstream = %self.upstream, address = %addr, "upstream address unhealthy, taken out of rotation");
        }
    }
}

impl Pool {
    /// Builds the pool and, if configured, starts its health checks on the
    /// current tokio runtime. The checks stop when the pool is dropped.
    /// `gate` is the running pool's admission gate, kept when its settings
    /// are unchanged so a reload does not forget the requests in flight.
    pub async fn start(
        config: Upstream,
        metrics: Arc<Metrics>,
        gate: Option<Arc<crate::admission::Limiter>>,
    ) -> Result<Arc<Pool>, String> {
        let mut set = BTreeSet::new();
        let mut addresses = Vec::new();
        for configured in &config.addresses {
            for addr in resolve(configured).await? {
                if addresses.iter().any(|a: &Address| a.addr == addr) {
                    continue;
                }
                let backend =
                    Backend::new(&addr.to_string()).map_err(|e| format!("{addr}: {e}"))?;
                set.insert(backend.clone());
                addresses.push(Address {
                    addr,
                    label: addr.to_string(),
                    backend,
                    in_flight: AtomicUsize::new(0),
                });
            }
        }
        let mut backends = Backends::new(Static::new(set));
        if let Some(hc) = &config.health_check {
            let tls = config.tls.is_some();
            let mut check = HttpHealthCheck::new(&hc.host, tls);
            check.consecutive_success = hc.healthy_threshold;
            check.consecutive_failure = hc.unhealthy_threshold;
            check.peer_template.options.connection_timeout = Some(hc.timeout);
            check.peer_template.options.read_timeout = Some(hc.timeout);
            if let Some(t) = &config.tls {
                check.peer_template.sni = t.sni.clone();
                check.peer_template.options.verify_cert = t.verify;
                check.peer_template.options.verify_hostname = t.verify;
                if let Some(ca) = &t.ca {
                    check.peer_template.options.ca =
                        Some(crate::edge::tls::load_ca(ca).map_err(|e| e.to_string())?);
                }
            }
            check.req.set_uri(
                hc.path
                    .parse()
                    .map_err(|_| format!("bad health check path {}", hc.path))?,
            );
            check.health_changed_callback = Some(Box::new(HealthMetrics {
                upstream: config.name.clone(),
                metrics: metrics.clone(),
            }));
            backends.set_health_check(Box::new(check));
        }
        backends.update(|_| {}).await.map_err(|e| e.to_string())?;
        for a in &addresses {
            metrics
                .upstream_healthy
                .with_label_values(&[config.name.as_str(), a.label.as_str()])
                .set(1);
        }
        let peer_template = peer_template(&config)?;
        let admission = gate.or_else(|| {
            config
                .admission
                .map(|a| crate::admission::Limiter::new(&config.name, a, metrics.admission.clone()))
        });
        let pool = Arc::new(Pool {
            admission,
            config,
            addresses,
            backends,
            next: AtomicUsize::new(0),
            peer_template,
        });
        if let Some(hc) = &pool.config.health_check {
            let weak = Arc::downgrade(&pool);
            let interval = hc.interval;
            tokio::spawn(health_loop(weak, interval));
        }
        Ok(pool)
    }

    /// This pool's admission gate, if `next` (the same upstream in a new
    /// configuration) gates it the same way.
    pub fn gate_for(&self, next: &Upstream) -> Option<Arc<crate::admission::Limiter>> {
        self.admission
            .clone()
            .filter(|_| self.config.admission == next.admission)
    }

    /// Whether an address is currently in rotation.
    pub fn healthy(&self, index: usize) -> bool {
        self.addresses
            .get(index)
            .is_some_and(|a| self.config.health_check.is_none() || self.backends.ready(&a.backend))
    }

    /// Chooses an address not in `tried` and marks it in flight.
    pub fn select(self: &Arc<Self>, tried: &[usize]) -> Option<(usize, InFlight)> {
        let cands: Vec<Candidate> = self
            .addresses
            .iter()
            .enumerate()
            .map(|(i, a)| Candidate {
                healthy: self.healthy(i),
                tried: tried.contains(&i),
                in_flight: a.in_flight.load(Ordering::Relaxed),
            })
            .collect();
        let rr = self.next.fetch_add(1, Ordering::Relaxed);
        let index = choose(self.config.balance, &cands, rr)?;
        self.addresses[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Some((
            index,
            InFlight {
                pool: self.clone(),
                index,
            },
        ))
    }

    /// The Pingora peer for address `index`.
    pub fn peer(&self, index: usize) -> Box<HttpPeer> {
        let mut p = Box::new(self.peer_template.clone());
        if let Some(a) = self.addresses.get(index) {
            p._address = pingora_core::protocols::l4::socket::SocketAddr::Inet(a.addr);
        }
        p
    }

    /// A reload replaced this pool by `next` (or removed it): its addresses'
    /// health series go, and its gate retires unless `next` kept it.
    pub fn forget_metrics(&self, metrics: &Metrics, next: Option<&Pool>) {
        let next_gate = next.and_then(|p| p.admission.as_ref());
        if let Some(l) = &self.admission {
            if !next_gate.is_some_and(|n| Arc::ptr_eq(n, l)) {
                l.retire(next_gate.is_some());
            }
        }
        for a in &self.addresses {
            let _ = metrics
                .upstream_healthy
                .remove_label_values(&[self.config.name.as_str(), a.label.as_str()]);
        }
    }
}

/// Every address `host:port` resolves to (an IP literal resolves to itself).
async fn resolve(configured: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = configured.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host(configured)
        .await
        .map_err(|e| format!("cannot resolve `{configured}`: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("`{configured}` resolves to no address"));
    }
    Ok(found)
}

/// Timeouts and TLS settings shared by every address; `peer()` sets the address.
fn peer_template(u: &Upstream) -> Result<HttpPeer, String> {
    // Every request sets the real address (see `Pool::peer`).
    let unset = SocketAddr::from(([127, 0, 0, 1], 1));
    let (tls, sni) = match &u.tls {
        Some(t) => (true, t.sni.clone()),
        None => (false, String::new()),
    };
    let mut peer = HttpPeer::new(unset, tls, sni);
    peer.options.connection_timeout = Some(u.connect_timeout);
    peer.options.total_connection_timeout = Some(u.connect_timeout);
    peer.options.read_timeout = Some(u.read_timeout);
    peer.options.write_timeout = Some(u.write_timeout);
    peer.options.idle_timeout = Some(u.idle_timeout);
    if let Some(t) = &u.tls {
        peer.options.verify_cert = t.verify;
        peer.options.verify_hostname = t.verify;
        if let Some(ca) = &t.ca {
            peer.options.ca = Some(crate::edge::tls::load_ca(ca).map_err(|e| e.to_string())?);
        }
    }
    Ok(peer)
}

async fn health_loop(pool: Weak<Pool>, interval: std::time::Duration) {
    loop {
        {
            let Some(p) = pool.upgrade() else { return };
            p.backends.run_health_check(true).await;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(healthy: bool, tried: bool, in_flight: usize) -> Candidate {
        Candidate {
            healthy,
            tried,
            in_flight,
        }
    }

    #[test]
    fn round_robin_rotates_over_healthy() {
        let cands = [c(true, false, 0), c(false, false, 0), c(true, false, 0)];
        let picks: Vec<_> = (0..4)
            .map(|rr| choose(Balance::RoundRobin, &cands, rr).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 2, 2, 0]);
    }

    #[test]
    fn least_connections_prefers_idle() {
        let cands = [c(true, false, 5), c(true, false, 1), c(true, false, 3)];
        assert_eq!(choose(Balance::LeastConnections, &cands, 0), Some(1));
    }

    #[test]
    fn retry_skips_tried_and_gives_up_when_all_tried() {
        let cands = [c(true, true, 0), c(true, false, 0)];
        assert_eq!(choose(Balance::RoundRobin, &cands, 0), Some(1));
        let all = [c(true, true, 0), c(true, true, 0)];
        assert_eq!(choose(Balance::RoundRobin, &all, 0), None);
    }

    #[test]
    fn unhealthy_addresses_are_never_chosen() {
        let cands = [c(false, false, 0), c(false, false, 0)];
        assert_eq!(choose(Balance::RoundRobin, &cands, 1), None);
        let mixed = [c(false, false, 0), c(true, false, 0)];
        assert_eq!(choose(Balance::RoundRobin, &mixed, 0), Some(1));
        assert_eq!(choose(Balance::LeastConnections, &mixed, 0), Some(1));
    }
}
