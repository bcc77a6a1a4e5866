//! Admission control in front of one upstream: at most `limit` requests in
//! flight (static, or following measured latency, `gradient`), classed by
//! what only the gateway knows (`class`). A request of a class that fits
//! goes at once; one that does not waits in a bounded queue, most important
//! class first, for at most `queue_timeout`; when the queue is full a more
//! important arrival takes the place of the least important waiter. A
//! refused request is answered `503` (`429` for crawlers) with
//! `Retry-After`, never queued without bound.

pub mod class;
pub mod gradient;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use class::{classify, is_bot, Class};
use gradient::Gradient;

use crate::config::model::Admission;

/// The admission metrics, shared by every upstream.
#[derive(Clone)]
pub struct Gauges {
    pub limit: prometheus::IntGaugeVec,
    pub in_flight: prometheus::IntGaugeVec,
    pub queued: prometheus::IntGaugeVec,
    pub requests: prometheus::IntCounterVec,
    pub wait: prometheus::HistogramVec,
}

/// What happened to one request at the gate of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Went at once.
    Admitted,
    /// Went after waiting for a slot.
    Queued,
    /// Refused: no room and no place in the queue (or a more important
    /// request took its place).
    Shed,
    /// Refused: no slot freed within `queue_timeout`.
    TimedOut,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Admitted,
        Outcome::Queued,
        Outcome::Shed,
        Outcome::TimedOut,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::Queued => "queued",
            Outcome::Shed => "shed",
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// A refused request: answer with this status and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub retry_after: Duration,
}

/// A waiter's place: class first, then arrival.
type Place = (Class, u64);

struct State {
    in_flight: usize,
    limit: usize,
    gradient: Option<Gradient>,
    queue: BTreeMap<Place, oneshot::Sender<Permit>>,
    arrivals: u64,
}

/// One upstream's series, resolved once (the request path hashes no labels).
struct Series {
    limit: prometheus::IntGauge,
    in_flight: prometheus::IntGauge,
    queued: prometheus::IntGauge,
    /// By class, then outcome (the order of `Class::ALL`, `Outcome::ALL`).
    requests: Vec<[prometheus::IntCounter; 4]>,
    wait: prometheus::Histogram,
}

impl Series {
    fn new(upstream: &str, g: &Gauges) -> Series {
        let u = [upstream];
        Series {
            limit: g.limit.with_label_values(&u),
            in_flight: g.in_flight.with_label_values(&u),
            queued: g.queued.with_label_values(&u),
            requests: Class::ALL
                .iter()
                .map(|c| {
                    Outcome::ALL.map(|o| {
                        g.requests
                            .with_label_values(&[upstream, c.label(), o.label()])
                    })
                })
                .collect(),
            wait: g.wait.with_label_values(&u),
        }
    }
}

/// The gate of one upstream.
pub struct Limiter {
    upstream: String,
    config: Admission,
    state: Mutex<State>,
    /// Replaced by a reload: the requests it still holds finish without
    /// touching the gauges, which belong to its successor or are gone.
    retired: AtomicBool,
    gauges: Gauges,
    series: Series,
}

/// One slot in flight; dropping it frees the slot (and lets the next
/// waiter in). Carries the latency the adaptive limit learns from.
pub struct Permit {
    limiter: Option<Arc<Limiter>>,
    sent: Option<Instant>,
    latency: Option<Duration>,
}

impl Permit {
    /// The request went to the upstream now.
    pub fn sent(&mut self) {
        self.sent = Some(Instant::now());
    }

    /// The upstream's answer (or failure) arrived now.
    pub fn answered(&mut self) {
        if let (Some(at), None) = (self.sent, self.latency) {
            self.latency = Some(at.elapsed());
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(l) = self.limiter.take() {
            l.release(self.latency);
        }
    }
}

/// Removes a waiter from the queue when its wait ends, however it ends.
struct Waiting<'a> {
    limiter: &'a Limiter,
    place: Place,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        if s.queue.remove(&self.place).is_some() {
            self.limiter.show(&s);
        }
    }
}

impl Limiter {
    pub fn new(upstream: &str, config: Admission, gauges: Gauges) -> Arc<Limiter> {
        let gradient = config.adaptive.map(|b| Gradient::new(config.limit, b));
        let limit = gradient.as_ref().map_or(config.limit, Gradient::limit);
        let l = Limiter {
            upstream: upstream.to_string(),
            config,
            state: Mutex::new(State {
                in_flight: 0,
                limit,
                gradient,
                queue: BTreeMap::new(),
                arrivals: 0,
            }),
            retired: AtomicBool::new(false),
            series: Series::new(upstream, &gauges),
            gauges,
        };
        l.show(&l.lock());
        Arc::new(l)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counts half
        // updated (each update is one statement), so a poisoned lock is used.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn show(&self, s: &State) {
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        self.series.limit.set(s.limit as i64);
        self.series.in_flight.set(s.in_flight as i64);
        self.series.queued.set(s.queue.len() as i64);
    }

    fn count(&self, class: Class, outcome: Outcome) {
        self.series.requests[class as usize][outcome as usize].inc();
    }

    fn refused(&self, class: Class, outcome: Outcome) -> Refused {
        self.count(class, outcome);
        Refused {
            status: class.refusal_status(),
            retry_after: self.config.retry_after,
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            limiter: Some(self.clone()),
            sent: None,
            latency: None,
        }
    }

    /// Whether `class` goes at once: it fits, and nobody as important waits.
    fn goes_now(s: &State, class: Class) -> bool {
        class.fits(s.in_flight, s.limit) && s.queue.keys().next().is_none_or(|p| p.0 > class)
    }

    /// A slot at once, if `class` goes now (never waits).
    pub fn try_admit(self: &Arc<Self>, class: Class) -> Option<Permit> {
        let mut s = self.lock();
        if !Self::goes_now(&s, class) {
            return None;
        }
        s.in_flight += 1;
        self.show(&s);
        drop(s);
        self.count(class, Outcome::Admitted);
        Some(self.permit())
    }

    /// A slot for a request of `class`: at once, after a bounded wait, or
    /// refused.
    pub async fn admit(self: &Arc<Self>, class: Class) -> Result<Permit, Refused> {
        let (place, mut rx) = {
            let mut s = self.lock();
            if Self::goes_now(&s, class) {
                s.in_flight += 1;
                self.show(&s);
                drop(s);
                self.count(class, Outcome::Admitted);
                return Ok(self.permit());
            }
            if !class.may_wait() || !self.make_room(&mut s, class) {
                drop(s);
                return Err(self.refused(class, Outcome::Shed));
            }
            s.arrivals += 1;
            let place = (class, s.arrivals);
            let (tx, rx) = oneshot::channel();
            s.queue.insert(place, tx);
            self.show(&s);
            (place, rx)
        };
        let started = Instant::now();
        let waiting = Waiting {
            limiter: self,
            place,
        };
        let waited = tokio::time::timeout(self.config.queue_timeout, &mut rx).await;
        drop(waiting);
        self.series.wait.observe(started.elapsed().as_secs_f64());
        match waited {
            Ok(Ok(permit)) => {
                self.count(class, Outcome::Queued);
                Ok(permit)
            }
            // Its place went to a more important request.
            Ok(Err(_)) => Err(self.refused(class, Outcome::Shed)),
            // A slot may have been handed over just as the wait ran out.
            Err(_) => rx
                .try_recv()
                .inspect(|_| self.count(class, Outcome::Queued))
                .map_err(|_| self.refused(class, Outcome::TimedOut)),
        }
    }

    /// Room in the queue for `class`: free, or taken from the least
    /// important waiter if that one is less important (it is refused).
    fn make_room(&self, s: &mut State, class: Class) -> bool {
        if s.queue.len() < self.config.queue {
            return true;
        }
        match s.queue.keys().next_back().copied() {
            Some(last) if last.0 > class => {
                // Dropping its sender wakes it with a refusal.
                s.queue.remove(&last);
                true
            }
            _ => false,
        }
    }

    /// Frees one slot, learns from its latency, and hands free slots to
    /// waiters, most important first.
    fn release(self: &Arc<Self>, latency: Option<Duration>) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if let Some(d) = latency {
            let busy = s.in_flight + 1;
            if let Some(limit) = s
                .gradient
                .as_mut()
                .and_then(|g| g.sample(d.as_secs_f64(), busy))
            {
                s.limit = limit;
            }
        }
        while let Some((&place, _)) = s.queue.iter().next() {
            if !place.0.fits(s.in_flight, s.limit) {
                break;
            }
            let Some(tx) = s.queue.remove(&place) else {
                break;
            };
            s.in_flight += 1;
            if let Err(mut unwanted) = tx.send(self.permit()) {
                // Its wait ended meanwhile: the slot stays free.
                unwanted.limiter = None;
                s.in_flight -= 1;
            }
        }
        self.show(&s);
    }

    /// Sets this upstream's gauges (again, after a reload removed them).
    pub fn publish(&self) {
        self.show(&self.lock());
    }

    /// Requests in flight and the limit now.
    pub fn load(&self) -> (usize, usize) {
        let s = self.lock();
        (s.in_flight, s.limit)
    }

    /// A reload replaced this gate: by another gate of the same upstream
    /// (`successor`, which now shows the gauges) or by none, and then its
    /// gauges are removed. Counters stay: they count on, whichever gate counts.
    pub fn retire(&self, successor: bool) {
        self.retired.store(true, Ordering::Relaxed);
        if successor {
            return;
        }
        let u = self.upstream.as_str();
        let _ = self.gauges.limit.remove_label_values(&[u]);
        let _ = self.gauges.in_flight.remove_label_values(&[u]);
        let _ = self.gauges.queued.remove_label_values(&[u]);
    }
}

#[cfg(test)]
mod tests;
