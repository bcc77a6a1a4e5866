//! Bounded password hashing: Argon2 is the costliest thing the gateway does,
//! so it runs at most `workers` at a time, with at most `queue` waiting and
//! none waiting longer than `deadline`. Past that a sign-in is told "busy"
//! at once (a 503 with `Retry-After`) instead of taking CPU from proxying,
//! token checks and session checks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::model::Hashing;

/// Why a hash was not computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("password hashing is at capacity (queue full)")]
    QueueFull,
    #[error("password hashing did not start within its deadline")]
    Deadline,
    #[error("password hashing failed")]
    Failed,
}

impl Busy {
    /// The label of `omnigate_password_hash_refused_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Busy::QueueFull => "queue_full",
            Busy::Deadline => "deadline",
            Busy::Failed => "failed",
        }
    }
}

/// The pool's metric handles.
#[derive(Clone)]
pub struct Gauges {
    pub queued: prometheus::IntGauge,
    pub running: prometheus::IntGauge,
    pub wait: prometheus::Histogram,
    pub refused: prometheus::IntCounterVec,
}

/// Runs hashing jobs on the blocking pool, `workers` at a time.
pub struct Pool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    deadline: Duration,
    gauges: Gauges,
}

impl Pool {
    pub fn new(limits: &Hashing, gauges: Gauges) -> Pool {
        Pool {
            permits: Arc::new(Semaphore::new(limits.workers.max(1))),
            waiting: AtomicUsize::new(0),
            queue: limits.queue,
            deadline: limits.deadline,
            gauges,
        }
    }

    /// Runs `job` when a worker is free, if one frees up within the deadline
    /// and the queue has room.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let result = self.admitted(job).await;
        if let Err(busy) = &result {
            self.gauges
                .refused
                .with_label_values(&[busy.reason()])
                .inc();
        }
        result
    }

    async fn admitted<T, F>(&self, job: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => self.wait_for_worker().await?,
        };
        self.gauges.running.inc();
        let done = tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await;
        self.gauges.running.dec();
        done.map_err(|_| Busy::Failed)
    }

    /// A place in the bounded queue, then a worker within the deadline.
    async fn wait_for_worker(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Busy> {
        let taken = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.queue).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Busy::QueueFull);
        }
        self.gauges.queued.inc();
        let started = Instant::now();
        let permit =
            tokio::time::timeout(self.deadline, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.gauges.queued.dec();
        self.gauges.wait.observe(started.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Busy::Failed),
            Err(_) => Err(Busy::Deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn gauges() -> Gauges {
        Gauges {
            queued: prometheus::IntGauge::new("q", "q").unwrap(),
            running: prometheus::IntGauge::new("r", "r").unwrap(),
            wait: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("w", "w"))
                .unwrap(),
            refused: prometheus::IntCounterVec::new(prometheus::Opts::new("f", "f"), &["reason"])
                .unwrap(),
        }
    }

    fn pool(workers: usize, queue: usize, deadline_ms: u64) -> Arc<Pool> {
        let limits = Hashing {
            workers,
            queue,
            deadline: Duration::from_millis(deadline_ms),
        };
        Arc::new(Pool::new(&limits, gauges()))
    }

    /// A job that holds its worker for `ms` and records the most at once.
    fn job(now: Arc<AtomicUsize>, most: Arc<AtomicUsize>, ms: u64) -> impl FnOnce() -> u8 {
        move || {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(ms));
            now.fetch_sub(1, Ordering::SeqCst);
            7
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn never_more_than_the_workers_and_the_queue_is_bounded() {
        let p = pool(2, 3, 5_000);
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (p, job) = (p.clone(), job(now.clone(), most.clone(), 150));
            tasks.push(tokio::spawn(async move { p.run(job).await }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut done = 0;
        let mut full = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(7) => done += 1,
                Err(Busy::QueueFull) => full += 1,
                other => panic!("{other:?}"),
            }
        }
        // 2 running + 3 queued are served; the other 3 are told at once.
        assert_eq!((done, full), (5, 3));
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(p.gauges.refused.with_label_values(&["queue_full"]).get(), 3);
        assert_eq!(p.gauges.queued.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_past_the_deadline_is_refused() {
        let p = pool(1, 10, 50);
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let first = {
            let (p, job) = (p.clone(), job(now.clone(), most.clone(), 300));
            tokio::spawn(async move { p.run(job).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let second = p.run(job(now, most, 1)).await;
        assert_eq!(second, Err(Busy::Deadline));
        assert!(started.elapsed() < Duration::from_millis(250));
        assert_eq!(first.await.unwrap(), Ok(7));
    }
}
