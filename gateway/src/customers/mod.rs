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

/// The status of a customer who may sign in; anything else may not.
pub const ACTIVE: &str = "active";
/// The status an operator sets to lock a customer out.
pub const DISABLED: &str = "disabled";

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

    /// Customers whose id is `query`, or whose email or name contains it
    /// (case-insensitive; empty: all), ordered by id, after the id `after`.
    async fn search(
        &self,
        query: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Customer>, DirectoryError>;
    /// Sets a customer's status; the customer after the change, if it exists.
    async fn set_status(&self, id: &str, status: &str) -> Result<Option<Customer>, DirectoryError>;

    /// Puts an event in the outbox (changes that emit one do it in their own
    /// transaction instead).
    async fn enqueue(&self, event: &Event) -> Result<(), DirectoryError>;
    /// Takes up to `limit` due events, hiding them from other takers until
    /// `lease_until`; each with the webhooks that already have it.
    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Queued>, DirectoryError>;
    /// Records that `webhook` has the event.
    async fn mark_delivered(&self, event_id: &str, webhook: &str) -> Result<(), DirectoryError>;
    /// Ends an event's delivery: every webhook has it, or attempts ran out
    /// (`error` says why).
    async fn finish(
        &self,
        event_id: &str,
        now: i64,
        error: Option<&str>,
    ) -> Result<(), DirectoryError>;
    /// Schedules another attempt.
    async fn retry(
        &self,
        event_id: &str,
        attempts: i64,
        next_attempt_at: i64,
        error: &str,
    ) -> Result<(), DirectoryError>;
    /// Events not yet delivered everywhere.
    async fn outbox_depth(&self) -> Result<u64, DirectoryError>;
}

/// Something that happened, for the webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `evt_` and 128 random bits; receivers de-duplicate by it.
    pub id: String,
    pub kind: String,
    pub created_at: i64,
    /// The JSON body sent to receivers: `{id, type, created_at, data}`.
    pub payload: String,
}

impl Event {
    pub fn new(kind: &str, data: serde_json::Value) -> Event {
        let id = format!("evt_{}", hex::encode(rand::random::<[u8; 16]>()));
        let created_at = now();
        let payload = serde_json::json!({
            "id": id, "type": kind, "created_at": created_at, "data": data,
        })
        .to_string();
        Event {
            id,
            kind: kind.to_string(),
            created_at,
            payload,
        }
    }
}

/// An event waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub event: Event,
    pub attempts: i64,
    pub delivered_to: Vec<String>,
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
