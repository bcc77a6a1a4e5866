//! Any session store, with every call bounded by a timeout and its outcome
//! recorded in the store's health. A store that hangs (Redis gone, a
//! blackholed address) answers `StoreError::Unavailable` within the
//! timeout instead; callers turn that into a 503, never into "signed out".

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Group, Profile, Session, SessionStore, StoreError};
use crate::health::Dependency;

/// `inner`, bounded.
pub struct Bounded {
    inner: Arc<dyn SessionStore>,
    timeout: Duration,
    health: Arc<Dependency>,
}

impl Bounded {
    pub fn new(
        inner: Arc<dyn SessionStore>,
        timeout: Duration,
        health: Arc<Dependency>,
    ) -> Bounded {
        Bounded {
            inner,
            timeout,
            health,
        }
    }

    async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match &outcome {
            Ok(_) => self.health.up(),
            Err(e) => self.health.down(&e.to_string()),
        }
        outcome
    }
}

#[async_trait]
impl SessionStore for Bounded {
    async fn create(&self, s: &Session) -> Result<(), StoreError> {
        self.run(self.inner.create(s)).await
    }
    async fn get(&self, id_hash: &str) -> Result<Option<Arc<Session>>, StoreError> {
        self.run(self.inner.get(id_hash)).await
    }
    async fn clear_converted_guest(&self, id_hash: &str) -> Result<(), StoreError> {
        self.run(self.inner.clear_converted_guest(id_hash)).await
    }
    async fn refresh_profile(
        &self,
        customer_id: &str,
        profile: &Profile,
    ) -> Result<u64, StoreError> {
        self.run(self.inner.refresh_profile(customer_id, profile))
            .await
    }
    async fn refresh_consents(
        &self,
        customer_id: &str,
        consents: &std::collections::BTreeMap<String, u32>,
    ) -> Result<u64, StoreError> {
        self.run(self.inner.refresh_consents(customer_id, consents))
            .await
    }
    async fn touch(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        self.run(self.inner.touch(id_hash, now)).await
    }
    async fn delete(&self, id_hash: &str) -> Result<(), StoreError> {
        self.run(self.inner.delete(id_hash)).await
    }
    async fn end(&self, group: Group<'_>) -> Result<u64, StoreError> {
        self.run(self.inner.end(group)).await
    }
    async fn put_once(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        self.run(self.inner.put_once(key, value, expires_at)).await
    }
    async fn take_once(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.run(self.inner.take_once(key)).await
    }
    async fn list(&self, customer_id: &str, now: i64) -> Result<Vec<Session>, StoreError> {
        self.run(self.inner.list(customer_id, now)).await
    }
    async fn active(&self, now: i64) -> Result<u64, StoreError> {
        self.run(self.inner.active(now)).await
    }
    async fn bump(&self, key: &str, window: i64) -> Result<u64, StoreError> {
        self.run(self.inner.bump(key, window)).await
    }
    async fn block(&self, key: &str, secs: i64) -> Result<(), StoreError> {
        self.run(self.inner.block(key, secs)).await
    }
    async fn blocked(&self, key: &str) -> Result<Option<i64>, StoreError> {
        self.run(self.inner.blocked(key)).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(self.inner.ping()).await
    }
}
