//! The customer directory: every identity (issuer + subject) maps to one
//! stable, opaque customer id, created on first sight from the identity's
//! profile claims. Behind the small [`Directory`] trait, one implementation
//! per engine: SQLite (embedded default) and PostgreSQL.

mod sql;

pub(crate) use sql::{PgDirectory, SqliteDirectory, TOMBSTONE_KEY};

use std::sync::Arc;

use async_trait::async_trait;

use crate::accounts::{Purpose, PASSWORD_ISSUER};
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
/// The status of a customer whose erasure is under way (refused everywhere).
pub const ERASING: &str = "erasing";

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
    Password,
}

impl IdentityKind {
    fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Bearer => "bearer",
            IdentityKind::Oidc => "oidc",
            IdentityKind::Password => "password",
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

    /// A new customer with a password identity for `email` (lower-case) and
    /// an `identity.registered` event; None if the email is taken.
    async fn register(
        &self,
        email: &str,
        name: Option<&str>,
        password_hash: &str,
    ) -> Result<Option<Customer>, DirectoryError>;
    /// The customer with a password identity for `email`, and the hash.
    async fn password(&self, email: &str) -> Result<Option<(Customer, String)>, DirectoryError>;
    /// Sets a customer's password; adds the password identity for `email`
    /// (an `identity.linked` event) if they had none. Ends pending resets.
    async fn set_password(
        &self,
        customer_id: &str,
        email: &str,
        password_hash: &str,
    ) -> Result<SetPassword, DirectoryError>;
    /// Keeps a mailed token (its hash) until `expires_at`.
    async fn put_token(
        &self,
        token_hash: &str,
        customer_id: &str,
        purpose: Purpose,
        email: &str,
        expires_at: i64,
    ) -> Result<(), DirectoryError>;
    /// Takes a token out (single use): its customer id and email, if it
    /// existed for `purpose` and had not expired at `now`.
    async fn take_token(
        &self,
        token_hash: &str,
        purpose: Purpose,
        now: i64,
    ) -> Result<Option<(String, String)>, DirectoryError>;
    /// Whether a token exists for `purpose` and has not expired at `now`,
    /// without spending it (a link checked when it is opened).
    async fn token_live(
        &self,
        token_hash: &str,
        purpose: Purpose,
        now: i64,
    ) -> Result<bool, DirectoryError>;
    /// Marks the customer's email verified if it still is `email`; an
    /// `identity.verified` event when that changed something.
    async fn mark_verified(
        &self,
        customer_id: &str,
        email: &str,
    ) -> Result<Option<Customer>, DirectoryError>;
    /// Links an identity to a customer (`identity.linked`).
    async fn link(
        &self,
        customer_id: &str,
        id: &ExternalId,
        kind: IdentityKind,
    ) -> Result<Link, DirectoryError>;
    /// Unlinks an identity (`identity.unlinked`), never the last way in.
    async fn unlink(&self, customer_id: &str, id: &ExternalId) -> Result<Unlink, DirectoryError>;
    /// A customer whose email is `email` (lower-case), if any.
    async fn by_email(&self, email: &str) -> Result<Option<Customer>, DirectoryError>;
    /// Makes `email` (lower-case, confirmed by its mail) the customer's
    /// address and their password sign-in's, unless another customer has
    /// it; pending confirmation links end. An `identity.email_changed` event.
    async fn change_email(
        &self,
        customer_id: &str,
        email: &str,
    ) -> Result<ChangeEmail, DirectoryError>;
    /// Changes the display name.
    async fn set_name(
        &self,
        customer_id: &str,
        name: Option<&str>,
    ) -> Result<Option<Customer>, DirectoryError>;

    /// Appends consent decisions to the customer's ledger (chained after
    /// their last record) with a `consent.granted`/`consent.withdrawn`
    /// event each, in one transaction: durable before this returns.
    async fn append_consent(
        &self,
        customer_id: &str,
        decisions: &[crate::consent::Decision],
    ) -> Result<Vec<crate::consent::Record>, DirectoryError>;
    /// A customer's consent records, oldest first.
    async fn consent_records(
        &self,
        customer_id: &str,
    ) -> Result<Vec<crate::consent::Record>, DirectoryError>;

    /// The deployment-wide secret `name`: the stored one, or `fresh` if
    /// none was stored yet (of nodes asking at once, the first write wins).
    async fn shared_secret(
        &self,
        name: &str,
        fresh: &str,
        now: i64,
    ) -> Result<String, DirectoryError>;
    /// The signing key of rotation `slot` (kid, private key PEM): the stored
    /// one, or `fresh` if the slot had none yet (the first write wins).
    async fn signing_key(
        &self,
        slot: i64,
        fresh: (&str, &str),
        now: i64,
    ) -> Result<(String, String), DirectoryError>;
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
    /// Whether the directory answers (the health probe).
    async fn ping(&self) -> Result<(), DirectoryError>;
}

/// What setting a password did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetPassword {
    /// The customer had a password; it is replaced.
    Changed,
    /// The customer had none: the password identity is new.
    Linked,
    /// Another customer signs in with a password for this email.
    EmailTaken,
}

/// What changing the email address did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEmail {
    /// Changed (and confirmed); the address it had before.
    Changed { previous: Option<String> },
    /// Another customer has this address (or signs in with it).
    Taken,
    /// No such customer.
    Gone,
}

/// What linking did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Linked,
    AlreadyYours,
    /// The identity belongs to another customer (never moved silently).
    OtherCustomer,
}

/// What unlinking did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlink {
    Unlinked,
    /// It is the customer's last way in.
    Last,
    NotFound,
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
    Ok(open_with_privacy(store).await?.0)
}

/// The directory and the privacy store in the same database.
pub async fn open_with_privacy(
    store: &CustomerStore,
) -> Result<(Arc<dyn Directory>, Arc<dyn crate::privacy::PrivacyStore>), DirectoryError> {
    match store {
        CustomerStore::Embedded { path } => {
            let d = sql::SqliteDirectory::open(path).await?;
            let p = crate::privacy::SqlitePrivacy {
                pool: d.pool.clone(),
            };
            Ok((Arc::new(d), Arc::new(p)))
        }
        CustomerStore::Postgres {
            url,
            schema,
            timeout,
        } => {
            let d = sql::PgDirectory::open(url, schema, *timeout).await?;
            let p = crate::privacy::PgPrivacy {
                pool: d.pool.clone(),
            };
            Ok((Arc::new(d), Arc::new(p)))
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
