//! The directory on SQL engines. The statements are the same on SQLite and
//! PostgreSQL (both take `$n` parameters and `ON CONFLICT DO NOTHING`), so
//! one macro body generates each engine's implementation; connection set-up
//! and migrations are per engine.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::*;

const FIND: &str = "SELECT c.id, c.email, c.email_verified, c.name, c.status
    FROM identities i JOIN customers c ON c.id = i.customer_id
    WHERE i.issuer = $1 AND i.subject = $2";
const BY_ID: &str = "SELECT id, email, email_verified, name, status FROM customers WHERE id = $1";
const INSERT_CUSTOMER: &str =
    "INSERT INTO customers (id, email, email_verified, name, created_at) VALUES ($1, $2, $3, $4, $5)";
const INSERT_IDENTITY: &str =
    "INSERT INTO identities (issuer, subject, customer_id, kind, created_at)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (issuer, subject) DO NOTHING";
const IDENTITIES: &str =
    "SELECT issuer, subject FROM identities WHERE customer_id = $1 ORDER BY created_at, issuer";

fn unavailable(e: sqlx::Error) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

macro_rules! sql_directory {
    ($name:ident, $db:ty, $pool:ty) => {
        /// The directory on this engine.
        pub struct $name {
            pool: $pool,
        }

        impl $name {
            fn row(r: &<$db as sqlx::Database>::Row) -> Result<Customer, DirectoryError> {
                Ok(Customer {
                    id: r.try_get("id").map_err(unavailable)?,
                    email: r.try_get("email").map_err(unavailable)?,
                    email_verified: r.try_get("email_verified").map_err(unavailable)?,
                    name: r.try_get("name").map_err(unavailable)?,
                    status: r.try_get("status").map_err(unavailable)?,
                })
            }

            async fn find(&self, id: &ExternalId) -> Result<Option<Customer>, DirectoryError> {
                let row = sqlx::query(FIND)
                    .bind(&id.issuer)
                    .bind(&id.subject)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(Self::row).transpose()
            }
        }

        #[async_trait]
        impl Directory for $name {
            async fn resolve(
                &self,
                id: &ExternalId,
                kind: IdentityKind,
                profile: &Profile,
            ) -> Result<Customer, DirectoryError> {
                if let Some(c) = self.find(id).await? {
                    return Ok(c);
                }
                let customer_id = new_customer_id();
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                sqlx::query(INSERT_CUSTOMER)
                    .bind(&customer_id)
                    .bind(&profile.email)
                    .bind(profile.email_verified)
                    .bind(&profile.name)
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let linked = sqlx::query(INSERT_IDENTITY)
                    .bind(&id.issuer)
                    .bind(&id.subject)
                    .bind(&customer_id)
                    .bind(kind.as_str())
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                if linked == 0 {
                    // A concurrent first sight won: use its customer, drop ours.
                    tx.rollback().await.map_err(unavailable)?;
                    return self.find(id).await?.ok_or_else(|| {
                        DirectoryError::Unavailable("identity vanished during creation".into())
                    });
                }
                tx.commit().await.map_err(unavailable)?;
                Ok(Customer {
                    id: customer_id,
                    email: profile.email.clone(),
                    email_verified: profile.email_verified,
                    name: profile.name.clone(),
                    status: "active".into(),
                })
            }

            async fn lookup(&self, id: &ExternalId) -> Result<Option<Customer>, DirectoryError> {
                self.find(id).await
            }

            async fn customer(&self, id: &str) -> Result<Option<Customer>, DirectoryError> {
                let row = sqlx::query(BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(Self::row).transpose()
            }

            async fn identities(
                &self,
                customer_id: &str,
            ) -> Result<Vec<ExternalId>, DirectoryError> {
                let rows = sqlx::query(IDENTITIES)
                    .bind(customer_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .map(|r| {
                        Ok(ExternalId {
                            issuer: r.try_get("issuer").map_err(unavailable)?,
                            subject: r.try_get("subject").map_err(unavailable)?,
                        })
                    })
                    .collect()
            }
        }
    };
}

sql_directory!(SqliteDirectory, sqlx::Sqlite, sqlx::SqlitePool);
sql_directory!(PgDirectory, sqlx::Postgres, sqlx::PgPool);

impl SqliteDirectory {
    /// Opens the file (created if missing), WAL mode, and migrates it.
    pub async fn open(path: &Path) -> Result<Self, DirectoryError> {
        let pool = crate::store::sqlite_pool(path)
            .await
            .map_err(DirectoryError::Unavailable)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| DirectoryError::Migration(e.to_string()))?;
        Ok(SqliteDirectory { pool })
    }
}

impl PgDirectory {
    /// Connects with `search_path` set to `schema` (created if missing) and migrates it.
    pub async fn open(url: &str, schema: &str) -> Result<Self, DirectoryError> {
        let base = sqlx::postgres::PgConnectOptions::from_str(url).map_err(unavailable)?;
        // The schema name was validated as [a-z_][a-z0-9_]*, so quoting is safe.
        let mut admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await
            .map_err(unavailable)?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&admin)
            .await
            .map_err(unavailable)?;
        admin.close().await;
        admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(base.options([("search_path", schema)]))
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&admin)
            .await
            .map_err(|e| DirectoryError::Migration(e.to_string()))?;
        Ok(PgDirectory { pool: admin })
    }
}
