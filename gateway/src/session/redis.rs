//! The Redis session store, shared by every gateway node: sessions as JSON
//! under `{prefix}session:{id_hash}` with the absolute lifetime as TTL, set
//! indexes per customer, per sign-in and per provider session, a sorted set by
//! expiry (to count live sessions), and a local moka cache in front. Every
//! deletion is published on `{prefix}session-invalidate`; each node drops its
//! cached copy when the message arrives (well under a second on a LAN).
//! Single-use records (pending sign-ins, cross-domain codes) live under
//! `{prefix}once:{key}` and are taken with GETDEL, so only one take succeeds.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;

use super::{CacheStats, Group, Profile, Session, SessionStore, StoreError};

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A connection to `url` that reconnects by itself. Every attempt and every
/// answer is bounded by `timeout`; a lost connection is retried soon (at most
/// a second apart), so a store is back within about a second of Redis.
pub async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<(redis::Client, redis::aio::ConnectionManager), StoreError> {
    let client = redis::Client::open(url).map_err(unavailable)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(1)
        .set_max_delay(1000);
    let conn = tokio::time::timeout(
        timeout * 2,
        redis::aio::ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| StoreError::Unavailable(format!("no answer from {url} within {timeout:?}")))?
    .map_err(unavailable)?;
    Ok((client, conn))
}

/// Sessions in Redis.
pub struct RedisStore {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    cache: moka::future::Cache<String, Arc<Session>>,
    stats: CacheStats,
}

impl RedisStore {
    /// Connects and starts listening for invalidations (reconnecting if Redis restarts).
    pub async fn open(
        url: &str,
        prefix: &str,
        stats: CacheStats,
        timeout: Duration,
    ) -> Result<Arc<RedisStore>, StoreError> {
        let (client, conn) = connect(url, timeout).await?;
        let store = Arc::new(RedisStore {
            conn,
            prefix: prefix.to_string(),
            // Short: the pub/sub message is the fast path, this bounds a missed one.
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            stats,
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

    /// The set of session ids a group holds.
    fn index(&self, group: Group<'_>) -> String {
        match group {
            Group::Customer(c) => format!("{}customer-sessions:{c}", self.prefix),
            Group::Login(l) => format!("{}login-sessions:{l}", self.prefix),
            Group::ProviderSession { provider, sid } => {
                format!("{}sid-sessions:{provider}:{sid}", self.prefix)
            }
        }
    }

    /// Every group a session belongs to.
    fn groups<'s>(s: &'s Session) -> Vec<Group<'s>> {
        let mut g = vec![Group::Customer(&s.customer_id), Group::Login(&s.login_id)];
        if let Some(sid) = &s.provider_sid {
            g.push(Group::ProviderSession {
                provider: &s.provider,
                sid,
            });
        }
        g
    }

    fn expiry(&self) -> String {
        format!("{}session-expiry", self.prefix)
    }

    /// Rewrites a session in place (only if it still exists: a concurrent
    /// logout must win), keeping its expiry.
    async fn update(
        &self,
        id_hash: &str,
        change: impl FnOnce(&mut Session),
    ) -> Result<(), StoreError> {
        let Some(s) = self.get(id_hash).await? else {
            return Ok(());
        };
        let mut t = (*s).clone();
        change(&mut t);
        let json = serde_json::to_string(&t).map_err(malformed)?;
        let mut c = self.conn.clone();
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

    fn once(&self, key: &str) -> String {
        format!("{}once:{key}", self.prefix)
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
    (s.expires_at - super::unix_now()).max(1) as u64
}

fn malformed(e: serde_json::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, s: &Session) -> Result<(), StoreError> {
        let json = serde_json::to_string(s).map_err(malformed)?;
        let mut c = self.conn.clone();
        let mut p = redis::pipe();
        p.atomic().set_ex(self.key(&s.id_hash), json, ttl(s)).zadd(
            self.expiry(),
            &s.id_hash,
            s.expires_at,
        );
        for g in Self::groups(s) {
            // An index lives as long as its newest session.
            p.sadd(self.index(g), &s.id_hash)
                .cmd("EXPIRE")
                .arg(self.index(g))
                .arg(ttl(s))
                .arg("GT")
                .ignore()
                .cmd("EXPIRE")
                .arg(self.index(g))
                .arg(ttl(s))
                .arg("NX")
                .ignore();
        }
        p.query_async::<()>(&mut c).await.map_err(unavailable)?;
        self.cache
            .insert(s.id_hash.clone(), Arc::new(s.clone()))
            .await;
        Ok(())
    }

    async fn get(&self, id_hash: &str) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(s) = self.cache.get(id_hash).await {
            self.stats.hit();
            return Ok(Some(s));
        }
        self.stats.miss();
        let mut c = self.conn.clone();
        let json: Option<String> = c.get(self.key(id_hash)).await.map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let mut s: Session = serde_json::from_str(&json).map_err(malformed)?;
        if s.login_id.is_empty() {
            // Written before sign-ins had ids: it stands alone.
            s.login_id = s.id_hash.clone();
        }
        let s = Arc::new(s);
        self.cache.insert(id_hash.to_string(), s.clone()).await;
        Ok(Some(s))
    }

    async fn touch(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        self.update(id_hash, |t| t.last_seen = now).await
    }

    async fn clear_converted_guest(&self, id_hash: &str) -> Result<(), StoreError> {
        self.update(id_hash, |t| t.converted_guest = None).await?;
        // Other nodes must not tell the backend a second time.
        self.publish_invalidation(id_hash).await
    }

    async fn refresh_profile(
        &self,
        customer_id: &str,
        profile: &Profile,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c
            .smembers(self.index(Group::Customer(customer_id)))
            .await
            .map_err(unavailable)?;
        for id in &ids {
            self.update(id, |t| profile.apply(t)).await?;
            self.publish_invalidation(id).await?;
        }
        Ok(ids.len() as u64)
    }

    async fn refresh_consents(
        &self,
        customer_id: &str,
        consents: &std::collections::BTreeMap<String, u32>,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c
            .smembers(self.index(Group::Customer(customer_id)))
            .await
            .map_err(unavailable)?;
        for id in &ids {
            self.update(id, |t| t.consents.clone_from(consents)).await?;
            // Other nodes drop their copy: the next request there reads this one.
            self.publish_invalidation(id).await?;
        }
        Ok(ids.len() as u64)
    }

    async fn delete(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::pipe()
            .del(self.key(id_hash))
            .zrem(self.expiry(), id_hash)
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)?;
        self.cache.invalidate(id_hash).await;
        self.publish_invalidation(id_hash).await
    }

    async fn end(&self, group: Group<'_>) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c.smembers(self.index(group)).await.map_err(unavailable)?;
        let mut ended = 0;
        for id in &ids {
            let (n,): (u64,) = redis::pipe()
                .del(self.key(id))
                .zrem(self.expiry(), id)
                .ignore()
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            ended += n;
            self.cache.invalidate(id).await;
            self.publish_invalidation(id).await?;
        }
        c.del::<_, ()>(self.index(group))
            .await
            .map_err(unavailable)?;
        Ok(ended)
    }

    async fn put_once(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        let ttl = expires_at - super::unix_now();
        if ttl <= 0 {
            // Already over: nothing could take it.
            return Ok(());
        }
        let mut c = self.conn.clone();
        c.set_ex::<_, _, ()>(self.once(key), value, ttl as u64)
            .await
            .map_err(unavailable)
    }

    async fn take_once(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        c.get_del(self.once(key)).await.map_err(unavailable)
    }

    async fn list(&self, customer_id: &str, now: i64) -> Result<Vec<Session>, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c
            .smembers(self.index(Group::Customer(customer_id)))
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        let found: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for json in found.into_iter().flatten() {
            let s: Session = serde_json::from_str(&json).map_err(malformed)?;
            if s.expires_at > now {
                out.push(s);
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    async fn bump(&self, key: &str, window: i64) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let key = format!("{}throttle:{key}", self.prefix);
        let (n,): (u64,) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(window.max(1))
            .arg("NX")
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n)
    }

    async fn block(&self, key: &str, secs: i64) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let key = format!("{}block:{key}", self.prefix);
        redis::pipe()
            .atomic()
            .set_nx(&key, 1)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(secs.max(1))
            .arg("GT")
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(secs.max(1))
            .arg("NX")
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn blocked(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let mut c = self.conn.clone();
        let ttl: i64 = c
            .ttl(format!("{}block:{key}", self.prefix))
            .await
            .map_err(unavailable)?;
        Ok((ttl > 0).then_some(ttl))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    async fn active(&self, now: i64) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let (n,): (u64,) = redis::pipe()
            .zrembyscore(self.expiry(), "-inf", now)
            .ignore()
            .zcard(self.expiry())
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n)
    }
}
