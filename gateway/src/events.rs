//! Events for the operator's other systems, delivered from the durable
//! outbox in the customer directory to the configured webhooks.
//!
//! Each attempt POSTs the event's JSON with
//! `Omnigate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! `Omnigate-Event-Id` and `Omnigate-Event-Type`. Any 2xx is delivery; else
//! the event is retried with exponential backoff (1 s doubling, capped at an
//! hour, with jitter) until every subscribed webhook has it or
//! `events.max_attempts` is reached. Delivery is at least once: receivers
//! de-duplicate by event id.

use std::sync::Arc;
use std::time::Duration;

use crate::config::model::{Events, Webhook};
use crate::customers::{Directory, Queued};
pub use crate::webhook::{signature, KINDS};

/// What the delivery loop needs, and no more: the outbox, the events
/// settings in force (read every round, so a reload applies at once) and
/// its counters.
pub struct Delivery {
    pub directory: Arc<dyn Directory>,
    pub settings: Box<dyn Fn() -> Events + Send + Sync>,
    pub given_up: prometheus::IntCounter,
    pub deliveries: prometheus::IntCounterVec,
}

/// How long a claimed event stays hidden from other nodes.
const LEASE: i64 = 60;

/// Seconds to wait before attempt `attempts + 1`: 1, 2, 4 … capped at an
/// hour, plus up to 20% jitter so receivers coming back are not stampeded.
pub fn backoff(attempts: i64, jitter: f64) -> i64 {
    let base = 1i64 << attempts.clamp(0, 12);
    let capped = base.min(3600);
    capped + (capped as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64
}

/// Puts an event reporting a change already made into the outbox. Should the
/// outbox be unreachable, the change stands and the event is logged as lost.
pub async fn emit(directory: &dyn Directory, kind: &str, data: serde_json::Value) {
    let event = crate::customers::Event::new(kind, data);
    if let Err(e) = directory.enqueue(&event).await {
        tracing::error!(error = %e, event = %event.id, kind, "event lost: outbox unavailable");
    }
}

/// Emits `session.ended` when any session ended.
pub async fn session_ended(
    directory: &dyn Directory,
    customer_id: Option<&str>,
    reason: &str,
    ended: u64,
) {
    if ended > 0 {
        let data =
            serde_json::json!({ "customer_id": customer_id, "reason": reason, "sessions": ended });
        emit(directory, "session.ended", data).await;
    }
}

/// Delivers due events until the process ends. One per process; several
/// nodes share the work through leases in the outbox.
pub async fn run(app: Delivery) {
    let http = match crate::auth::jwks::HttpClient::new(Duration::from_secs(10)) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "event delivery cannot start");
            return;
        }
    };
    loop {
        let delivered = deliver_due(&app, &http).await;
        if delivered == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// One round: claims due events and attempts each. Returns how many were claimed.
async fn deliver_due(app: &Delivery, http: &crate::auth::jwks::HttpClient) -> usize {
    let events = &(app.settings)();
    let directory = &app.directory;
    let now = crate::session::unix_now();
    let due = match directory.claim_due(now, now + LEASE, 32).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "outbox unavailable; retrying");
            return 0;
        }
    };
    for q in &due {
        let outcome = attempt(app, http, &events.webhooks, q).await;
        let result = match outcome {
            Ok(()) => {
                directory
                    .finish(&q.event.id, crate::session::unix_now(), None)
                    .await
            }
            Err(error) if q.attempts + 1 >= i64::from(events.max_attempts) => {
                tracing::error!(event = %q.event.id, kind = %q.event.kind, attempts = q.attempts + 1, error = %error, "event given up");
                app.given_up.inc();
                directory
                    .finish(&q.event.id, crate::session::unix_now(), Some(&error))
                    .await
            }
            Err(error) => {
                let wait = backoff(q.attempts, rand::random::<f64>());
                directory
                    .retry(
                        &q.event.id,
                        q.attempts + 1,
                        crate::session::unix_now() + wait,
                        &error,
                    )
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!(event = %q.event.id, error = %e, "cannot record delivery state; the lease will expire and it is retried");
        }
    }
    due.len()
}

/// Sends one event to every subscribed webhook that lacks it.
async fn attempt(
    app: &Delivery,
    http: &crate::auth::jwks::HttpClient,
    webhooks: &[Webhook],
    q: &Queued,
) -> Result<(), String> {
    let directory = &app.directory;
    let mut errors = Vec::new();
    for w in webhooks
        .iter()
        .filter(|w| w.wants(&q.event.kind) && !q.delivered_to.contains(&w.name))
    {
        let t = crate::session::unix_now();
        let headers = [
            (
                "omnigate-signature",
                signature(&w.secret, t, &q.event.payload),
            ),
            ("omnigate-event-id", q.event.id.clone()),
            ("omnigate-event-type", q.event.kind.clone()),
        ];
        let sent = http.post_json(&w.url, &q.event.payload, &headers).await;
        let label = if sent.is_ok() { "delivered" } else { "failed" };
        app.deliveries
            .with_label_values(&[w.name.as_str(), label])
            .inc();
        match sent {
            Ok(()) => {
                if let Err(e) = directory.mark_delivered(&q.event.id, &w.name).await {
                    errors.push(format!("{}: delivered but not recorded: {e}", w.name));
                }
            }
            Err(e) => {
                tracing::warn!(event = %q.event.id, webhook = %w.name, error = %e, "webhook delivery failed");
                errors.push(format!("{}: {e}", w.name));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_with_bounded_jitter() {
        assert_eq!(backoff(0, 0.0), 1);
        assert_eq!(backoff(3, 0.0), 8);
        assert_eq!(backoff(12, 0.0), 3600);
        assert_eq!(backoff(40, 0.0), 3600);
        assert_eq!(backoff(12, 1.0), 4320);
        assert!(backoff(-5, 0.5) >= 1);
    }
}
