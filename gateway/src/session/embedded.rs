//! The embedded session store: moka in front of a SQLite file, so one node
//! serves from memory and a restart logs no one out.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::{CacheStats, Group, Profile, Session, SessionStore, StoreError};

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Session, StoreError> {
    Ok(Session {
        id_hash: r.try_get("id_hash").map_err(unavailable)?,
        customer_id: r.try_get("customer_id").map_err(unavailable)?,
        email: r.try_get("email").map_err(unavailable)?,
        email_verified: r.try_get("email_verified").map_err(unavailable)?,
        name: r.try_get("name").map_err(unavailable)?,
        provider: r.try_get("provider").map_err(unavailable)?,
        csrf: r.try_get("csrf").map_err(unavailable)?,
        created_at: r.try_get("created_at").map_err(unavailable)?,
        last_seen: r.try_get("last_seen").map_err(unavailable)?,
        expires_at: r.try_get("expires_at").map_err(unavailable)?,
        login_id: r.try_get("login_id").map_err(unavailable)?,
        provider_sid: r.try_get("provider_sid").map_err(unavailable)?,
        converted_guest: r.try_get("converted_guest").map_err(unavailable)?,
        device: r.try_get("device").map_err(unavailable)?,
        consents: r
            .try_get::<Option<String>, _>("consents")
            .map_err(unavailable)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
    })
}

/// Sessions on this node.
pub struct EmbeddedStore {
    pool: sqlx::SqlitePool,
    cache: moka::future::Cache<String, Arc<Session>>,
    stats: CacheStats,
}

impl EmbeddedStore {
    pub async fn open(path: &Path, stats: CacheStats) -> Result<EmbeddedStore, StoreError> {
        let pool = crate::store::sqlite_pool(path)
            .await
            .map_err(StoreError::Unavailable)?;
        sqlx::migrate!("./migrations/sessions")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(EmbeddedStore {
            pool,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            stats,
        })
    }

    /// Applies a change already written to the file to the cached copy.
    async fn update_cached(&self, id_hash: &str, change: impl FnOnce(&mut Session)) {
        if let Some(s) = self.cache.get(id_hash).await {
            let mut t = (*s).clone();
            change(&mut t);
            self.cache.insert(id_hash.to_string(), Arc::new(t)).await;
        }
    }

    /// Ends the sessions selected by `filter`, a WHERE clause on `$1…` = `binds`.
    async fn end_where(&self, filter: &str, binds: &[&str]) -> Result<u64, StoreError> {
        let sql = format!("DELETE FROM sessions WHERE {filter} RETURNING id_hash");
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(unavailable)?;
        for r in &rows {
            let h: String = r.try_get("id_hash").map_err(unavailable)?;
            self.cache.invalidate(&h).await;
        }
        Ok(rows.len() as u64)
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn create(&self, s: &Session) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, customer_id, email, email_verified, name, provider, csrf, created_at, last_seen, expires_at, login_id, provider_sid, converted_guest, device, consents)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&s.id_hash)
        .bind(&s.customer_id)
        .bind(&s.email)
        .bind(s.email_verified)
        .bind(&s.name)
        .bind(&s.provider)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.last_seen)
        .bind(s.expires_at)
        .bind(&s.login_id)
        .bind(&s.provider_sid)
        .bind(&s.converted_guest)
        .bind(&s.device)
        .bind(serde_json::to_string(&s.consents).ok())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        // Expired rows go now and then, so the file does not grow forever.
        if rand::random::<u8>() < 3 {
            let _ = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(s.created_at)
                .execute(&self.pool)
                .await;
        }
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
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(r) = row else { return Ok(None) };
        let s = Arc::new(from_row(&r)?);
        self.cache.insert(id_hash.to_string(), s.clone()).await;
        Ok(Some(s))
    }

    async fn clear_converted_guest(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET converted_guest = NULL WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        self.update_cached(id_hash, |t| t.converted_guest = None)
            .await;
        Ok(())
    }

    async fn refresh_profile(
        &self,
        customer_id: &str,
        profile: &Profile,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query(
            "UPDATE sessions SET email = $2, email_verified = $3, name = $4
             WHERE customer_id = $1 RETURNING id_hash",
        )
        .bind(customer_id)
        .bind(&profile.email)
        .bind(profile.email_verified)
        .bind(&profile.name)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        for r in &rows {
            let h: String = r.try_get("id_hash").map_err(unavailable)?;
            self.update_cached(&h, |t| profile.apply(t)).await;
        }
        Ok(rows.len() as u64)
    }

    async fn refresh_consents(
        &self,
        customer_id: &str,
        consents: &std::collections::BTreeMap<String, u32>,
    ) -> Result<u64, StoreError> {
        let json =
            serde_json::to_string(consents).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let rows = sqlx::query(
            "UPDATE sessions SET consents = $2 WHERE customer_id = $1 RETURNING id_hash",
        )
        .bind(customer_id)
        .bind(json)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        for r in &rows {
            let h: String = r.try_get("id_hash").map_err(unavailable)?;
            self.update_cached(&h, |t| t.consents.clone_from(consents))
                .await;
        }
        Ok(rows.len() as u64)
    }

    async fn touch(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        self.update_cached(id_hash, |t| t.last_seen = now).await;
        Ok(())
    }

    async fn delete(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        self.cache.invalidate(id_hash).await;
        Ok(())
    }

    async fn end(&self, group: Group<'_>) -> Result<u64, StoreError> {
        match group {
            Group::Customer(c) => self.end_where("customer_id = $1", &[c]).await,
            Group::Login(l) => self.end_where("login_id = $1", &[l]).await,
            Group::ProviderSession { provider, sid } => {
                self.end_where("provider = $1 AND provider_sid = $2", &[provider, sid])
                    .await
            }
        }
    }

    async fn put_once(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM single_use WHERE expires_at < $1")
            .bind(super::unix_now())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        sqlx::query("INSERT INTO single_use (key, value, expires_at) VALUES ($1, $2, $3)")
            .bind(key)
            .bind(value)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_once(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("DELETE FROM single_use WHERE key = $1 RETURNING value, expires_at")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(r) = row else { return Ok(None) };
        let expires_at: i64 = r.try_get("expires_at").map_err(unavailable)?;
        if expires_at < super::unix_now() {
            return Ok(None);
        }
        r.try_get("value").map(Some).map_err(unavailable)
    }

    async fn list(&self, customer_id: &str, now: i64) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM sessions WHERE customer_id = $1 AND expires_at > $2 ORDER BY created_at",
        )
        .bind(customer_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(from_row).collect()
    }

    async fn bump(&self, key: &str, window: i64) -> Result<u64, StoreError> {
        let now = super::unix_now();
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO throttle (key, count, expires_at) VALUES ($1, 1, $2)
             ON CONFLICT (key) DO UPDATE SET
               count = CASE WHEN throttle.expires_at <= $3 THEN 1 ELSE throttle.count + 1 END,
               expires_at = CASE WHEN throttle.expires_at <= $3 THEN $2 ELSE throttle.expires_at END
             RETURNING count",
        )
        .bind(key)
        .bind(now + window)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(n.max(0) as u64)
    }

    async fn block(&self, key: &str, secs: i64) -> Result<(), StoreError> {
        let until = super::unix_now() + secs;
        sqlx::query(
            "INSERT INTO throttle (key, count, expires_at) VALUES ($1, 0, $2)
             ON CONFLICT (key) DO UPDATE SET expires_at = MAX(throttle.expires_at, $2)",
        )
        .bind(key)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn blocked(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let until: Option<i64> =
            sqlx::query_scalar("SELECT expires_at FROM throttle WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        let now = super::unix_now();
        Ok(until.filter(|u| *u > now).map(|u| u - now))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn active(&self, now: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE expires_at > $1")
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(n.max(0) as u64)
    }
}
