use super::*;

fn gauges() -> Gauges {
    let m = crate::metrics::Metrics::new();
    m.admission.clone()
}

fn limiter(limit: usize, queue: usize, timeout_ms: u64) -> Arc<Limiter> {
    Limiter::new(
        "shop",
        Admission {
            limit,
            adaptive: None,
            queue,
            queue_timeout: Duration::from_millis(timeout_ms),
            retry_after: Duration::from_secs(7),
        },
        gauges(),
    )
}

#[tokio::test]
async fn lower_classes_stop_at_their_share_and_critical_takes_the_rest() {
    let l = limiter(10, 0, 50);
    let mut held = Vec::new();
    // Crawlers fill a quarter, anonymous visitors three quarters …
    while let Some(p) = l.try_admit(Class::Bot) {
        held.push(p);
    }
    assert_eq!(held.len(), 3);
    while let Some(p) = l.try_admit(Class::Anonymous) {
        held.push(p);
    }
    assert_eq!(held.len(), 8);
    // … signed-in customers nine tenths, checkout the last slot.
    while let Some(p) = l.try_admit(Class::SignedIn) {
        held.push(p);
    }
    assert_eq!(held.len(), 9);
    held.push(
        l.try_admit(Class::Critical)
            .expect("the last slot is checkout's"),
    );
    assert!(l.try_admit(Class::Critical).is_none());
    let refused = l
        .admit(Class::Bot)
        .await
        .err()
        .expect("a full gate refuses");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.retry_after, Duration::from_secs(7));
    let refused = l
        .admit(Class::Critical)
        .await
        .err()
        .expect("no queue: refused");
    assert_eq!(refused.status, 503);
    drop(held);
    assert_eq!(l.load(), (0, 10));
}

#[tokio::test]
async fn a_waiter_gets_the_freed_slot_most_important_first() {
    let l = limiter(1, 10, 2000);
    let first = l.try_admit(Class::Critical).expect("idle");
    let (l1, l2) = (l.clone(), l.clone());
    let anonymous =
        tokio::spawn(async move { l1.admit(Class::Anonymous).await.map(|_| Instant::now()) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let critical = tokio::spawn(async move {
        let p = l2.admit(Class::Critical).await;
        let at = Instant::now();
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(p);
        at
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(l.lock().queue.len(), 2);
    drop(first);
    let c = critical.await.unwrap();
    let a = anonymous.await.unwrap().expect("admitted after checkout");
    assert!(c < a, "checkout arrived later but went first");
    assert_eq!(l.load(), (0, 1));
}

#[tokio::test]
async fn the_wait_is_bounded_and_leaves_no_trace() {
    let l = limiter(1, 10, 50);
    let held = l.try_admit(Class::Critical).expect("idle");
    let started = Instant::now();
    let refused = l.admit(Class::SignedIn).await.err().expect("timed out");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(refused.status, 503);
    assert!(l.lock().queue.is_empty());
    drop(held);
    assert_eq!(l.load(), (0, 1));
    let timed_out = l
        .gauges
        .requests
        .with_label_values(&["shop", "signed_in", "timed_out"])
        .get();
    assert_eq!(timed_out, 1);
}

#[tokio::test]
async fn a_full_queue_refuses_the_least_important() {
    let l = limiter(1, 1, 2000);
    let held = l.try_admit(Class::Critical).expect("idle");
    let l1 = l.clone();
    let sheddable = tokio::spawn(async move { l1.admit(Class::Sheddable).await.is_ok() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A signed-in customer takes the sheddable waiter's place …
    let l2 = l.clone();
    let signed_in = tokio::spawn(async move { l2.admit(Class::SignedIn).await.is_ok() });
    assert!(
        !sheddable.await.unwrap(),
        "the sheddable waiter is refused at once"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    // … and an anonymous visitor finds no room (the waiter is more important).
    assert!(l.admit(Class::Anonymous).await.is_err());
    drop(held);
    assert!(signed_in.await.unwrap());
    assert_eq!(l.load(), (0, 1));
}

#[tokio::test]
async fn a_waiter_that_gives_up_frees_its_place() {
    let l = limiter(1, 5, 5000);
    let held = l.try_admit(Class::Critical).expect("idle");
    let l1 = l.clone();
    let waiter = tokio::spawn(async move { l1.admit(Class::Anonymous).await.is_ok() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    waiter.abort();
    let _ = waiter.await;
    assert!(l.lock().queue.is_empty());
    drop(held);
    assert_eq!(l.load(), (0, 1));
}

#[tokio::test]
async fn many_racing_requests_never_exceed_the_limit() {
    let l = limiter(4, 1000, 5000);
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let (l, peak) = (l.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let class = Class::ALL[i % 4];
            let p = l.admit(class).await;
            let (busy, _) = l.load();
            peak.fetch_max(busy, std::sync::atomic::Ordering::Relaxed);
            tokio::task::yield_now().await;
            p.is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 200, "a deep queue and a long deadline admit everyone");
    assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 4);
    assert_eq!(l.load(), (0, 4));
}
