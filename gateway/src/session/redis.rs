//! The Redis session store, shared by every gateway node: sessions as JSON
//! under `{prefix}session:{id_hash}` with the absolute lifetime as TTL, an
//! index of each customer's sessions, and a local moka cache in front. Every
//! deletion is published on `{prefix}session-invalidate`; each node drops its
//! cached copy when the message arrives (well under a second on a LAN).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;

use super::{Session, SessionStore, StoreError};

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Sessions in Redis.
pub struct RedisStore {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    cache: moka::future::Cache<String, Arc<Session>>,
}

impl RedisStore {
    /// Connects and starts listening for invalidations (reconnecting if Redis restarts).
    pub async fn open(url: &str, prefix: &str) -> Result<Arc<RedisStore>, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let conn = redis::aio::ConnectionManager::new(client.clone())
            .await
            .map_err(unavailable)?;
        let store = Arc::new(RedisStore {
            conn,
            prefix: prefix.to_string(),
            // Short: the pub/sub message is the fast path, this bounds a missed one.
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        });
        let weak = Arc::downgrade(&store);
        let channel = store.channel();
        tokio::spawn(async move {
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut ps) => {
                        if ps.subscribe(&channel).await.is_ok() {
                            let mut messages = ps.into_on_message();
                            while let Some(msg) = messages.next().await {
                                let Some(store) = weak.upgrade() else { return };
                                if let Ok(id) = msg.get_payload::<String>() {
                                    store.cache.invalidate(&id).await;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "session invalidation channel down; retrying")
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                // Whatever was cached while disconnected may be stale.
                if let Some(store) = weak.upgrade() {
                    store.cache.invalidate_all();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Ok(store)
    }

    fn key(&self, id_hash: &str) -> String {
        format!("{}session:{id_hash}", self.prefix)
    }

    fn index(&self, customer_id: &str) -> String {
        format!("{}customer-sessions:{customer_id}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}session-invalidate", self.prefix)
    }

    async fn publish_invalidation(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        c.publish::<_, _, ()>(self.channel(), id_hash)
            .await
            .map_err(unavailable)
    }
}

fn ttl(s: &Session) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (s.expires_at - now).max(1) as u64
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, s: &Session) -> Result<(), StoreError> {
        let json = serde_json::to_string(s).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut c = self.conn.clone();
        redis::pipe()
            .atomic()
            .set_ex(self.key(&s.id_hash), json, ttl(s))
            .sadd(self.index(&s.customer_id), &s.id_hash)
            .expire(self.index(&s.customer_id), ttl(s) as i64)
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)?;
        self.cache
            .insert(s.id_hash.clone(), Arc::new(s.clone()))
            .await;
        Ok(())
    }

    async fn get(&self, id_hash: &str) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(s) = self.cache.get(id_hash).await {
            return Ok(Some(s));
        }
        let mut c = self.conn.clone();
        let json: Option<String> = c.get(self.key(id_hash)).await.map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let s: Session =
            serde_json::from_str(&json).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let s = Arc::new(s);
        self.cache.insert(id_hash.to_string(), s.clone()).await;
        Ok(Some(s))
    }

    async fn touch(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        let Some(s) = self.get(id_hash).await? else {
            return Ok(());
        };
        let mut t = (*s).clone();
        t.last_seen = now;
        let json = serde_json::to_string(&t).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut c = self.conn.clone();
        // Only if it still exists: a concurrent logout must win.
        redis::cmd("SET")
            .arg(self.key(id_hash))
            .arg(json)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)?;
        self.cache.insert(id_hash.to_string(), Arc::new(t)).await;
        Ok(())
    }

    async fn delete(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        c.del::<_, ()>(self.key(id_hash))
            .await
            .map_err(unavailable)?;
        self.cache.invalidate(id_hash).await;
        self.publish_invalidation(id_hash).await
    }

    async fn delete_customer(&self, customer_id: &str) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c
            .smembers(self.index(customer_id))
            .await
            .map_err(unavailable)?;
        let mut ended = 0;
        for id in &ids {
            let n: u64 = c.del(self.key(id)).await.map_err(unavailable)?;
            ended += n;
            self.cache.invalidate(id).await;
            self.publish_invalidation(id).await?;
        }
        c.del::<_, ()>(self.index(customer_id))
            .await
            .map_err(unavailable)?;
        Ok(ended)
    }
}
