//! The health of what the gateway depends on (session store, customer
//! directory): each is up while its calls answer within their timeout,
//! down from the first failure until one succeeds again. Calls update it as
//! they go and a probe runs once a second, so readiness and the metric
//! follow a dependency within about a second either way. Never blocks a
//! caller: a read is an atomic load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// A dependency's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not called yet.
    Unknown,
    Up,
    Down,
}

/// One dependency.
pub struct Dependency {
    pub name: &'static str,
    state: AtomicU8,
    last_error: Mutex<Option<String>>,
    gauge: prometheus::IntGauge,
}

impl Dependency {
    pub fn new(name: &'static str, metrics: &crate::metrics::Metrics) -> Arc<Dependency> {
        Arc::new(Dependency {
            name,
            state: AtomicU8::new(0),
            last_error: Mutex::new(None),
            gauge: metrics.dependency_up.with_label_values(&[name]),
        })
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            1 => State::Up,
            2 => State::Down,
            _ => State::Unknown,
        }
    }

    /// A call answered.
    pub fn up(&self) {
        if self.state.swap(1, Ordering::Relaxed) != 1 {
            self.gauge.set(1);
            tracing::info!(dependency = self.name, "dependency answers again");
        }
    }

    /// A call failed or timed out with `error`.
    pub fn down(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
        if self.state.swap(2, Ordering::Relaxed) != 2 {
            self.gauge.set(0);
            tracing::error!(dependency = self.name, error, "dependency unavailable");
        }
    }

    /// What the last failure said.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }
}
