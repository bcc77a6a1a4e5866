//! Abuse throttling for endpoints that take guesses (single-use codes,
//! sign-in callbacks, logout tokens, the admin token): failures are counted
//! per client address in the session store, so the limit holds across
//! nodes on Redis. After `free_failures` in the window, each further failure
//! blocks the address for an exponentially growing time (1 s, 2 s, 4 s …,
//! capped at `max_backoff`); a blocked address gets `429` with `Retry-After`.

use std::net::IpAddr;

use crate::config::model::Abuse;
use crate::session::SessionStore;

/// Seconds to block after the `failures`-th failure, or None while free. Pure.
pub fn backoff(failures: u64, policy: &Abuse) -> Option<i64> {
    let over = failures.checked_sub(policy.free_failures)?;
    if over == 0 {
        return None;
    }
    let secs = 1i64 << (over - 1).min(20);
    Some(secs.min(policy.max_backoff.as_secs() as i64).max(1))
}

fn keys(scope: &str, who: &str) -> (String, String) {
    (
        format!("fail:{scope}:{who}"),
        format!("block:{scope}:{who}"),
    )
}

/// Who a client address is, for the counters.
pub fn address(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "-".to_string(), |ip| ip.to_string())
}

/// Who an account (a lower-case email, known or not) is, for the counters:
/// a hash, so the store holds no addresses.
pub fn account(email: &str) -> String {
    use sha2::Digest;
    format!(
        "acct-{}",
        hex::encode(&sha2::Sha256::digest(email.as_bytes())[..16])
    )
}

/// Seconds `who` must wait before trying `scope` again, if blocked. A store
/// that cannot answer blocks no one (the endpoint's own checks stand).
pub async fn retry_after(store: &dyn SessionStore, scope: &str, who: &str) -> Option<i64> {
    let (_, block) = keys(scope, who);
    store.blocked(&block).await.ok().flatten()
}

/// Counts a failure of `who`; returns the block it caused, if any.
pub async fn failed(
    store: &dyn SessionStore,
    scope: &str,
    who: &str,
    policy: &Abuse,
) -> Option<i64> {
    let (fail, block) = keys(scope, who);
    let n = store
        .bump(&fail, policy.window.as_secs() as i64)
        .await
        .ok()?;
    let secs = backoff(n, policy)?;
    if let Err(e) = store.block(&block, secs).await {
        tracing::warn!(error = %e, scope, "cannot record a throttle block");
    }
    tracing::warn!(
        scope,
        who,
        failures = n,
        block_secs = secs,
        "repeated failures: throttled"
    );
    Some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn free_failures_then_doubling_blocks_up_to_the_cap() {
        let p = Abuse {
            free_failures: 3,
            window: Duration::from_secs(900),
            max_backoff: Duration::from_secs(60),
        };
        let got: Vec<Option<i64>> = (1..=11).map(|n| backoff(n, &p)).collect();
        assert_eq!(
            got,
            [
                None,
                None,
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(32),
                Some(60),
                Some(60)
            ]
        );
        assert_eq!(backoff(u64::MAX, &p), Some(60));
    }
}
