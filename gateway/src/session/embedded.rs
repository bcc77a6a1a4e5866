//! The embedded session store: moka in front of a SQLite file, so one node
//! serves from memory and a restart logs no one out.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::{Session, SessionStore, StoreError};

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Sessions on this node.
pub struct EmbeddedStore {
    pool: sqlx::SqlitePool,
    cache: moka::future::Cache<String, Arc<Session>>,
}

impl EmbeddedStore {
    pub async fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
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
        })
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn create(&self, s: &Session) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, customer_id, email, email_verified, name, provider, csrf, created_at, last_seen, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        .execute(&self.pool)
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
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(r) = row else { return Ok(None) };
        let s = Arc::new(Session {
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
        });
        self.cache.insert(id_hash.to_string(), s.clone()).await;
        Ok(Some(s))
    }

    async fn touch(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        if let Some(s) = self.cache.get(id_hash).await {
            let mut t = (*s).clone();
            t.last_seen = now;
            self.cache.insert(id_hash.to_string(), Arc::new(t)).await;
        }
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

    async fn delete_customer(&self, customer_id: &str) -> Result<u64, StoreError> {
        let rows = sqlx::query("SELECT id_hash FROM sessions WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        for r in &rows {
            let h: String = r.try_get("id_hash").map_err(unavailable)?;
            self.cache.invalidate(&h).await;
        }
        let n = sqlx::query("DELETE FROM sessions WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?
            .rows_affected();
        Ok(n)
    }
}
