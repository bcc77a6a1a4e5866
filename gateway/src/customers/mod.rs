//! The customer directory: every identity (issuer + subject) maps to one
//! stable, opaque customer id, created on first sight from the identity's
//! profile claims. Behind the small [`Directory`] trait, one implementation
//! per engine: SQLite (embedded default) and PostgreSQL.

mod sql;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::model::CustomerStore;

/// An identity as a provider asserts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId {
    pub issuer: String,
    pub subject: String,
}

/// Profile claims that come with an identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// A customer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub status: String,
}

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    #[error("customer directory unavailable: {0}")]
    Unavailable(String),
    #[error("customer directory schema migration failed: {0}")]
    Migration(String),
}

/// How an identity was presented, recorded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Bearer,
    Oidc,
}

impl IdentityKind {
    fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Bearer => "bearer",
            IdentityKind::Oidc => "oidc",
        }
    }
}

/// The customer directory.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The customer `id` belongs to; created from `profile` on first sight.
    async fn resolve(
        &self,
        id: &ExternalId,
        kind: IdentityKind,
        profile: &Profile,
    ) -> Result<Customer, DirectoryError>;
    /// One customer by id.
    async fn customer(&self, id: &str) -> Result<Option<Customer>, DirectoryError>;
    /// The customer an identity belongs to, without creating one.
    async fn lookup(&self, id: &ExternalId) -> Result<Option<Customer>, DirectoryError>;
    /// The identities linked to a customer.
    async fn identities(&self, customer_id: &str) -> Result<Vec<ExternalId>, DirectoryError>;
}

/// Opens (and migrates) the configured directory.
pub async fn open(store: &CustomerStore) -> Result<Arc<dyn Directory>, DirectoryError> {
    match store {
        CustomerStore::Embedded { path } => Ok(Arc::new(sql::SqliteDirectory::open(path).await?)),
        CustomerStore::Postgres { url, schema } => {
            Ok(Arc::new(sql::PgDirectory::open(url, schema).await?))
        }
    }
}

/// A new opaque customer id: `cus_` and 128 random bits.
fn new_customer_id() -> String {
    format!("cus_{}", hex::encode(rand::random::<[u8; 16]>()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
