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

const SEARCH: &str = "SELECT id, email, email_verified, name, status FROM customers
    WHERE (id = $1 OR LOWER(COALESCE(email, '')) LIKE $2 ESCAPE '\\'
           OR LOWER(COALESCE(name, '')) LIKE $2 ESCAPE '\\')
      AND id > $3
    ORDER BY id LIMIT $4";
const SET_STATUS: &str = "UPDATE customers SET status = $2 WHERE id = $1";
const ENQUEUE: &str = "INSERT INTO outbox (event_id, type, payload, created_at, next_attempt_at)
    VALUES ($1, $2, $3, $4, $4)";
const DELIVERED: &str = "SELECT webhook FROM outbox_delivered WHERE event_id = $1";
const MARK_DELIVERED: &str = "INSERT INTO outbox_delivered (event_id, webhook, delivered_at)
    VALUES ($1, $2, $3) ON CONFLICT (event_id, webhook) DO NOTHING";
const FINISH: &str = "UPDATE outbox SET done_at = $2, last_error = $3 WHERE event_id = $1";
const RETRY: &str =
    "UPDATE outbox SET attempts = $2, next_attempt_at = $3, last_error = $4 WHERE event_id = $1";
const DEPTH: &str = "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL";
/// Due events, leased so no other node takes them meanwhile. PostgreSQL
/// skips rows another node is claiming; SQLite has one writer anyway.
const CLAIM_SQLITE: &str = "UPDATE outbox SET next_attempt_at = $1 WHERE id IN (
    SELECT id FROM outbox WHERE done_at IS NULL AND next_attempt_at <= $2 ORDER BY id LIMIT $3)
    RETURNING id, event_id, type, payload, created_at, attempts";
const CLAIM_POSTGRES: &str = "UPDATE outbox SET next_attempt_at = $1 WHERE id IN (
    SELECT id FROM outbox WHERE done_at IS NULL AND next_attempt_at <= $2 ORDER BY id LIMIT $3
    FOR UPDATE SKIP LOCKED)
    RETURNING id, event_id, type, payload, created_at, attempts";

const PASSWORD: &str = "SELECT c.id, c.email, c.email_verified, c.name, c.status, k.password_hash
    FROM identities i JOIN customers c ON c.id = i.customer_id
    JOIN credentials k ON k.customer_id = c.id
    WHERE i.issuer = $1 AND i.subject = $2";
const OWNER: &str = "SELECT customer_id FROM identities WHERE issuer = $1 AND subject = $2";
const UPSERT_CREDENTIAL: &str = "INSERT INTO credentials (customer_id, password_hash, updated_at)
    VALUES ($1, $2, $3) ON CONFLICT (customer_id)
    DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at";
const DROP_RESETS: &str = "DELETE FROM account_tokens WHERE customer_id = $1 AND purpose = 'reset'";
const PUT_TOKEN: &str =
    "INSERT INTO account_tokens (token_hash, customer_id, purpose, email, expires_at)
    VALUES ($1, $2, $3, $4, $5)";
const TAKE_TOKEN: &str = "DELETE FROM account_tokens WHERE token_hash = $1 AND purpose = $2
    RETURNING customer_id, email, expires_at";
const TOKEN_LIVE: &str = "SELECT 1 FROM account_tokens
    WHERE token_hash = $1 AND purpose = $2 AND expires_at >= $3";
const DROP_EXPIRED_TOKENS: &str = "DELETE FROM account_tokens WHERE expires_at < $1";
const EMAIL_TAKEN: &str = "SELECT 1 FROM customers WHERE LOWER(email) = $1 AND id <> $2
    UNION ALL SELECT 1 FROM identities WHERE issuer = $3 AND subject = $1 AND customer_id <> $2";
const SET_EMAIL: &str = "UPDATE customers SET email = $2, email_verified = TRUE WHERE id = $1";
const SET_PASSWORD_SUBJECT: &str =
    "UPDATE identities SET subject = $2 WHERE customer_id = $1 AND issuer = $3";
const DROP_EMAIL_TOKENS: &str = "DELETE FROM account_tokens
    WHERE customer_id = $1 AND purpose IN ('verify', 'change_email')";
const MARK_VERIFIED: &str = "UPDATE customers SET email_verified = TRUE
    WHERE id = $1 AND LOWER(email) = $2 AND NOT email_verified";
const COUNT_IDENTITIES: &str = "SELECT COUNT(*) FROM identities WHERE customer_id = $1";
const DELETE_IDENTITY: &str =
    "DELETE FROM identities WHERE customer_id = $1 AND issuer = $2 AND subject = $3";
const DROP_CREDENTIAL: &str = "DELETE FROM credentials WHERE customer_id = $1";
const BY_EMAIL: &str = "SELECT id, email, email_verified, name, status FROM customers
    WHERE LOWER(email) = $1 ORDER BY email_verified DESC, created_at LIMIT 1";
const SET_NAME: &str = "UPDATE customers SET name = $2 WHERE id = $1";

const LAST_CONSENT: &str = "SELECT seq, hash FROM consent_records
    WHERE customer_id = $1 ORDER BY seq DESC LIMIT 1";
const INSERT_CONSENT: &str = "INSERT INTO consent_records
    (customer_id, seq, purpose, version, text_hash, action, at, channel, method, user_agent, prev_hash, hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const CONSENT_RECORDS: &str = "SELECT customer_id, seq, purpose, version, text_hash, action, at,
    channel, method, user_agent, prev_hash, hash
    FROM consent_records WHERE customer_id = $1 ORDER BY seq";
/// Serializes appends to one customer's chain (SQLite: BEGIN IMMEDIATE already does).
const LOCK_CUSTOMER_SQLITE: &str = "SELECT id FROM customers WHERE id = $1";
const LOCK_CUSTOMER_POSTGRES: &str = "SELECT id FROM customers WHERE id = $1 FOR UPDATE";

/// `%query%` for LIKE, lower-cased, with LIKE's own characters escaped.
fn like_pattern(query: &str) -> String {
    let mut p = String::with_capacity(query.len() + 2);
    p.push('%');
    for c in query.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The deployment secret that keys tombstones.
pub(crate) const TOMBSTONE_KEY: &str = "privacy-tombstone";
const PUT_SECRET: &str = "INSERT INTO deployment_secrets (name, value, created_at)
    VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
const SECRET: &str = "SELECT value FROM deployment_secrets WHERE name = $1";
const PUT_KEY: &str = "INSERT INTO signing_keys (slot, kid, private_pem, created_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const KEY: &str = "SELECT kid, private_pem FROM signing_keys WHERE slot = $1";

fn unavailable(e: sqlx::Error) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

macro_rules! sql_directory {
    ($name:ident, $db:ty, $pool:ty, $claim:expr, $begin:expr, $lock:expr) => {
        /// The directory on this engine.
        pub struct $name {
            pub(crate) pool: $pool,
            /// Keys the tombstones of erased customers (deployment-wide).
            tombstone_key: Vec<u8>,
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

            /// Puts an event in the outbox inside `tx` (the change it reports commits with it).
            pub(crate) async fn enqueue_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                event: &Event,
            ) -> Result<(), DirectoryError> {
                sqlx::query(ENQUEUE)
                    .bind(&event.id)
                    .bind(&event.kind)
                    .bind(&event.payload)
                    .bind(event.created_at)
                    .execute(&mut **tx)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn owner_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &ExternalId,
            ) -> Result<Option<String>, DirectoryError> {
                sqlx::query_scalar(OWNER)
                    .bind(&id.issuer)
                    .bind(&id.subject)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(unavailable)
            }

            async fn link_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                customer_id: &str,
                id: &ExternalId,
                kind: IdentityKind,
            ) -> Result<Link, DirectoryError> {
                match Self::owner_in(tx, id).await? {
                    Some(o) if o == customer_id => return Ok(Link::AlreadyYours),
                    Some(_) => return Ok(Link::OtherCustomer),
                    None => {}
                }
                let n = sqlx::query(INSERT_IDENTITY)
                    .bind(&id.issuer)
                    .bind(&id.subject)
                    .bind(customer_id)
                    .bind(kind.as_str())
                    .bind(now())
                    .execute(&mut **tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                if n == 0 {
                    return Ok(Link::OtherCustomer);
                }
                let event = Event::new(
                    "identity.linked",
                    serde_json::json!({
                        "customer_id": customer_id,
                        "issuer": id.issuer,
                        "method": kind.as_str(),
                    }),
                );
                Self::enqueue_in(tx, &event).await?;
                Ok(Link::Linked)
            }

            /// The erasure that left a tombstone for one of these, if any.
            async fn erased_before_in(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                marks: &[String],
            ) -> Result<Option<String>, DirectoryError> {
                for m in marks {
                    let job: Option<String> =
                        sqlx::query_scalar("SELECT job_id FROM tombstones WHERE hash = $1")
                            .bind(m)
                            .fetch_optional(&mut **tx)
                            .await
                            .map_err(unavailable)?;
                    if job.is_some() {
                        return Ok(job);
                    }
                }
                Ok(None)
            }

            /// Loads the tombstone key (created by the first node to ask).
            async fn with_tombstone_key(mut self) -> Result<Self, DirectoryError> {
                let fresh = crate::session::new_token();
                self.tombstone_key = self
                    .shared_secret(TOMBSTONE_KEY, &fresh, now())
                    .await?
                    .into_bytes();
                Ok(self)
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
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
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
                if linked == 1 {
                    let mark = crate::privacy::identity_tombstone(&self.tombstone_key, id);
                    let erased = self.erased_before_in(&mut tx, &[mark]).await?;
                    if let Some(job) = &erased {
                        tracing::info!(customer = %customer_id, erasure = %job, "an identity of an erased customer is back: a new customer, not the old one");
                    }
                    // Reported in the same transaction: no customer without its event.
                    let event = Event::new(
                        "identity.registered",
                        serde_json::json!({
                            "customer_id": customer_id,
                            "issuer": id.issuer,
                            "method": kind.as_str(),
                            "email": profile.email,
                            "email_verified": profile.email_verified,
                            "name": profile.name,
                            "previously_erased": erased,
                        }),
                    );
                    sqlx::query(ENQUEUE)
                        .bind(&event.id)
                        .bind(&event.kind)
                        .bind(&event.payload)
                        .bind(event.created_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
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

            async fn ping(&self) -> Result<(), DirectoryError> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn shared_secret(
                &self,
                name: &str,
                fresh: &str,
                now: i64,
            ) -> Result<String, DirectoryError> {
                sqlx::query(PUT_SECRET)
                    .bind(name)
                    .bind(fresh)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let row = sqlx::query(SECRET)
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.try_get::<String, _>(0).map_err(unavailable)
            }

            async fn signing_key(
                &self,
                slot: i64,
                fresh: (&str, &str),
                now: i64,
            ) -> Result<(String, String), DirectoryError> {
                sqlx::query(PUT_KEY)
                    .bind(slot)
                    .bind(fresh.0)
                    .bind(fresh.1)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let row = sqlx::query(KEY)
                    .bind(slot)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok((
                    row.try_get::<String, _>(0).map_err(unavailable)?,
                    row.try_get::<String, _>(1).map_err(unavailable)?,
                ))
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

            async fn search(
                &self,
                query: &str,
                after: Option<&str>,
                limit: i64,
            ) -> Result<Vec<Customer>, DirectoryError> {
                let rows = sqlx::query(SEARCH)
                    .bind(query)
                    .bind(like_pattern(query))
                    .bind(after.unwrap_or(""))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(Self::row).collect()
            }

            async fn set_status(
                &self,
                id: &str,
                status: &str,
            ) -> Result<Option<Customer>, DirectoryError> {
                sqlx::query(SET_STATUS)
                    .bind(id)
                    .bind(status)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                self.customer(id).await
            }

            async fn register(
                &self,
                email: &str,
                name: Option<&str>,
                password_hash: &str,
            ) -> Result<Option<Customer>, DirectoryError> {
                let id = ExternalId {
                    issuer: PASSWORD_ISSUER.into(),
                    subject: email.to_string(),
                };
                let customer_id = new_customer_id();
                let t = now();
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                if Self::owner_in(&mut tx, &id).await?.is_some() {
                    return Ok(None);
                }
                sqlx::query(INSERT_CUSTOMER)
                    .bind(&customer_id)
                    .bind(email)
                    .bind(false)
                    .bind(name)
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let linked = sqlx::query(INSERT_IDENTITY)
                    .bind(&id.issuer)
                    .bind(&id.subject)
                    .bind(&customer_id)
                    .bind(IdentityKind::Password.as_str())
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                if linked == 0 {
                    // A concurrent registration of the same email won.
                    return Ok(None);
                }
                sqlx::query(UPSERT_CREDENTIAL)
                    .bind(&customer_id)
                    .bind(password_hash)
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let marks = [
                    crate::privacy::identity_tombstone(&self.tombstone_key, &id),
                    crate::privacy::tombstone(&self.tombstone_key, "email", email),
                ];
                let erased = self.erased_before_in(&mut tx, &marks).await?;
                let event = Event::new(
                    "identity.registered",
                    serde_json::json!({
                        "customer_id": customer_id,
                        "issuer": PASSWORD_ISSUER,
                        "method": IdentityKind::Password.as_str(),
                        "email": email,
                        "email_verified": false,
                        "name": name,
                        "previously_erased": erased,
                    }),
                );
                Self::enqueue_in(&mut tx, &event).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(Some(Customer {
                    id: customer_id,
                    email: Some(email.to_string()),
                    email_verified: false,
                    name: name.map(str::to_string),
                    status: ACTIVE.into(),
                }))
            }

            async fn password(
                &self,
                email: &str,
            ) -> Result<Option<(Customer, String)>, DirectoryError> {
                let row = sqlx::query(PASSWORD)
                    .bind(PASSWORD_ISSUER)
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                match row {
                    Some(r) => Ok(Some((
                        Self::row(&r)?,
                        r.try_get("password_hash").map_err(unavailable)?,
                    ))),
                    None => Ok(None),
                }
            }

            async fn set_password(
                &self,
                customer_id: &str,
                email: &str,
                password_hash: &str,
            ) -> Result<SetPassword, DirectoryError> {
                let id = ExternalId {
                    issuer: PASSWORD_ISSUER.into(),
                    subject: email.to_string(),
                };
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                let had: Option<String> =
                    sqlx::query_scalar("SELECT subject FROM identities WHERE customer_id = $1 AND issuer = $2")
                        .bind(customer_id)
                        .bind(PASSWORD_ISSUER)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                let outcome = match had {
                    Some(_) => SetPassword::Changed,
                    None => match Self::link_in(&mut tx, customer_id, &id, IdentityKind::Password).await? {
                        Link::OtherCustomer => return Ok(SetPassword::EmailTaken),
                        _ => SetPassword::Linked,
                    },
                };
                sqlx::query(UPSERT_CREDENTIAL)
                    .bind(customer_id)
                    .bind(password_hash)
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                sqlx::query(DROP_RESETS)
                    .bind(customer_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(outcome)
            }

            async fn put_token(
                &self,
                token_hash: &str,
                customer_id: &str,
                purpose: Purpose,
                email: &str,
                expires_at: i64,
            ) -> Result<(), DirectoryError> {
                // Expired tokens are swept as new ones are made.
                sqlx::query(DROP_EXPIRED_TOKENS)
                    .bind(now())
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                sqlx::query(PUT_TOKEN)
                    .bind(token_hash)
                    .bind(customer_id)
                    .bind(purpose.as_str())
                    .bind(email)
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn take_token(
                &self,
                token_hash: &str,
                purpose: Purpose,
                now: i64,
            ) -> Result<Option<(String, String)>, DirectoryError> {
                let row = sqlx::query(TAKE_TOKEN)
                    .bind(token_hash)
                    .bind(purpose.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let Some(r) = row else { return Ok(None) };
                let expires_at: i64 = r.try_get("expires_at").map_err(unavailable)?;
                if expires_at < now {
                    return Ok(None);
                }
                Ok(Some((
                    r.try_get("customer_id").map_err(unavailable)?,
                    r.try_get("email").map_err(unavailable)?,
                )))
            }

            async fn token_live(
                &self,
                token_hash: &str,
                purpose: Purpose,
                now: i64,
            ) -> Result<bool, DirectoryError> {
                let row = sqlx::query(TOKEN_LIVE)
                    .bind(token_hash)
                    .bind(purpose.as_str())
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(row.is_some())
            }

            async fn mark_verified(
                &self,
                customer_id: &str,
                email: &str,
            ) -> Result<Option<Customer>, DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                let changed = sqlx::query(MARK_VERIFIED)
                    .bind(customer_id)
                    .bind(email)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                if changed == 1 {
                    let event = Event::new(
                        "identity.verified",
                        serde_json::json!({ "customer_id": customer_id, "email": email }),
                    );
                    Self::enqueue_in(&mut tx, &event).await?;
                }
                tx.commit().await.map_err(unavailable)?;
                self.customer(customer_id).await
            }

            async fn link(
                &self,
                customer_id: &str,
                id: &ExternalId,
                kind: IdentityKind,
            ) -> Result<Link, DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                let outcome = Self::link_in(&mut tx, customer_id, id, kind).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(outcome)
            }

            async fn unlink(
                &self,
                customer_id: &str,
                id: &ExternalId,
            ) -> Result<Unlink, DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                let n: i64 = sqlx::query_scalar(COUNT_IDENTITIES)
                    .bind(customer_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if Self::owner_in(&mut tx, id).await?.as_deref() != Some(customer_id) {
                    return Ok(Unlink::NotFound);
                }
                if n <= 1 {
                    return Ok(Unlink::Last);
                }
                sqlx::query(DELETE_IDENTITY)
                    .bind(customer_id)
                    .bind(&id.issuer)
                    .bind(&id.subject)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if id.issuer == PASSWORD_ISSUER {
                    sqlx::query(DROP_CREDENTIAL)
                        .bind(customer_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                let event = Event::new(
                    "identity.unlinked",
                    serde_json::json!({ "customer_id": customer_id, "issuer": id.issuer }),
                );
                Self::enqueue_in(&mut tx, &event).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(Unlink::Unlinked)
            }

            async fn by_email(&self, email: &str) -> Result<Option<Customer>, DirectoryError> {
                let row = sqlx::query(BY_EMAIL)
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(Self::row).transpose()
            }

            async fn change_email(
                &self,
                customer_id: &str,
                email: &str,
            ) -> Result<ChangeEmail, DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                let previous: Option<Option<String>> =
                    sqlx::query_scalar("SELECT email FROM customers WHERE id = $1")
                        .bind(customer_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                let Some(previous) = previous else {
                    return Ok(ChangeEmail::Gone);
                };
                let taken = sqlx::query(EMAIL_TAKEN)
                    .bind(email)
                    .bind(customer_id)
                    .bind(PASSWORD_ISSUER)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if taken.is_some() {
                    return Ok(ChangeEmail::Taken);
                }
                for (sql, third) in [(SET_EMAIL, None), (SET_PASSWORD_SUBJECT, Some(PASSWORD_ISSUER))] {
                    let q = sqlx::query(sql).bind(customer_id).bind(email);
                    let q = match third {
                        Some(t) => q.bind(t),
                        None => q,
                    };
                    q.execute(&mut *tx).await.map_err(unavailable)?;
                }
                sqlx::query(DROP_EMAIL_TOKENS)
                    .bind(customer_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let event = Event::new(
                    "identity.email_changed",
                    serde_json::json!({ "customer_id": customer_id, "email": email }),
                );
                Self::enqueue_in(&mut tx, &event).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(ChangeEmail::Changed { previous })
            }

            async fn set_name(
                &self,
                customer_id: &str,
                name: Option<&str>,
            ) -> Result<Option<Customer>, DirectoryError> {
                sqlx::query(SET_NAME)
                    .bind(customer_id)
                    .bind(name)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                self.customer(customer_id).await
            }

            async fn append_consent(
                &self,
                customer_id: &str,
                decisions: &[crate::consent::Decision],
            ) -> Result<Vec<crate::consent::Record>, DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                let exists: Option<String> = sqlx::query_scalar($lock)
                    .bind(customer_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if exists.is_none() {
                    return Err(DirectoryError::Unavailable(format!(
                        "no customer {customer_id}"
                    )));
                }
                let last = sqlx::query(LAST_CONSENT)
                    .bind(customer_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .map(|r| -> Result<(i64, String), DirectoryError> {
                        Ok((
                            r.try_get("seq").map_err(unavailable)?,
                            r.try_get("hash").map_err(unavailable)?,
                        ))
                    })
                    .transpose()?;
                let records = crate::consent::chain(customer_id, last, decisions);
                for rec in &records {
                    let d = &rec.decision;
                    sqlx::query(INSERT_CONSENT)
                        .bind(customer_id)
                        .bind(rec.seq)
                        .bind(&d.purpose)
                        .bind(i64::from(d.version))
                        .bind(&d.text_hash)
                        .bind(d.action.as_str())
                        .bind(d.at)
                        .bind(&d.channel)
                        .bind(&d.method)
                        .bind(&d.user_agent)
                        .bind(&rec.prev_hash)
                        .bind(&rec.hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                    let kind = match d.action {
                        crate::consent::Action::Grant => "consent.granted",
                        crate::consent::Action::Withdraw => "consent.withdrawn",
                    };
                    let event = Event::new(
                        kind,
                        serde_json::json!({
                            "customer_id": customer_id,
                            "purpose": d.purpose,
                            "version": d.version,
                            "at": d.at,
                            "method": d.method,
                            "channel": d.channel,
                            "record": rec.seq,
                            "hash": rec.hash,
                        }),
                    );
                    Self::enqueue_in(&mut tx, &event).await?;
                }
                tx.commit().await.map_err(unavailable)?;
                Ok(records)
            }

            async fn consent_records(
                &self,
                customer_id: &str,
            ) -> Result<Vec<crate::consent::Record>, DirectoryError> {
                let rows = sqlx::query(CONSENT_RECORDS)
                    .bind(customer_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .map(|r| {
                        let action: String = r.try_get("action").map_err(unavailable)?;
                        let version: i64 = r.try_get("version").map_err(unavailable)?;
                        Ok(crate::consent::Record {
                            seq: r.try_get("seq").map_err(unavailable)?,
                            customer_id: r.try_get("customer_id").map_err(unavailable)?,
                            decision: crate::consent::Decision {
                                purpose: r.try_get("purpose").map_err(unavailable)?,
                                version: u32::try_from(version).unwrap_or(0),
                                text_hash: r.try_get("text_hash").map_err(unavailable)?,
                                action: crate::consent::Action::parse(&action).ok_or_else(|| {
                                    DirectoryError::Unavailable(format!(
                                        "consent record with unknown action {action:?}"
                                    ))
                                })?,
                                at: r.try_get("at").map_err(unavailable)?,
                                channel: r.try_get("channel").map_err(unavailable)?,
                                method: r.try_get("method").map_err(unavailable)?,
                                user_agent: r.try_get("user_agent").map_err(unavailable)?,
                            },
                            prev_hash: r.try_get("prev_hash").map_err(unavailable)?,
                            hash: r.try_get("hash").map_err(unavailable)?,
                        })
                    })
                    .collect()
            }

            async fn enqueue(&self, event: &Event) -> Result<(), DirectoryError> {
                sqlx::query(ENQUEUE)
                    .bind(&event.id)
                    .bind(&event.kind)
                    .bind(&event.payload)
                    .bind(event.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn claim_due(
                &self,
                now: i64,
                lease_until: i64,
                limit: i64,
            ) -> Result<Vec<Queued>, DirectoryError> {
                let rows = sqlx::query($claim)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let mut out = Vec::with_capacity(rows.len());
                let mut order = Vec::with_capacity(rows.len());
                for r in &rows {
                    order.push(r.try_get::<i64, _>("id").map_err(unavailable)?);
                    let event = Event {
                        id: r.try_get("event_id").map_err(unavailable)?,
                        kind: r.try_get("type").map_err(unavailable)?,
                        payload: r.try_get("payload").map_err(unavailable)?,
                        created_at: r.try_get("created_at").map_err(unavailable)?,
                    };
                    let delivered_to = sqlx::query_scalar(DELIVERED)
                        .bind(&event.id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    out.push(Queued {
                        attempts: r.try_get("attempts").map_err(unavailable)?,
                        event,
                        delivered_to,
                    });
                }
                // RETURNING gives no order; deliver in the order written.
                let mut paired: Vec<(i64, Queued)> = order.into_iter().zip(out).collect();
                paired.sort_by_key(|(id, _)| *id);
                Ok(paired.into_iter().map(|(_, q)| q).collect())
            }

            async fn mark_delivered(
                &self,
                event_id: &str,
                webhook: &str,
            ) -> Result<(), DirectoryError> {
                sqlx::query(MARK_DELIVERED)
                    .bind(event_id)
                    .bind(webhook)
                    .bind(now())
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn finish(
                &self,
                event_id: &str,
                now: i64,
                error: Option<&str>,
            ) -> Result<(), DirectoryError> {
                sqlx::query(FINISH)
                    .bind(event_id)
                    .bind(now)
                    .bind(error)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn retry(
                &self,
                event_id: &str,
                attempts: i64,
                next_attempt_at: i64,
                error: &str,
            ) -> Result<(), DirectoryError> {
                sqlx::query(RETRY)
                    .bind(event_id)
                    .bind(attempts)
                    .bind(next_attempt_at)
                    .bind(error)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn outbox_depth(&self) -> Result<u64, DirectoryError> {
                let n: i64 = sqlx::query_scalar(DEPTH)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(n.max(0) as u64)
            }
        }
    };
}

// SQLite: a write transaction takes the write lock at BEGIN, so one that
// reads first never fails with SQLITE_BUSY_SNAPSHOT when another commits
// in between (the busy timeout then queues writers instead).
sql_directory!(
    SqliteDirectory,
    sqlx::Sqlite,
    sqlx::SqlitePool,
    CLAIM_SQLITE,
    "BEGIN IMMEDIATE",
    LOCK_CUSTOMER_SQLITE
);
sql_directory!(
    PgDirectory,
    sqlx::Postgres,
    sqlx::PgPool,
    CLAIM_POSTGRES,
    "BEGIN",
    LOCK_CUSTOMER_POSTGRES
);

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
        SqliteDirectory {
            pool,
            tombstone_key: Vec::new(),
        }
        .with_tombstone_key()
        .await
    }
}

impl PgDirectory {
    /// Connects with `search_path` set to `schema` (created if missing) and migrates it.
    pub async fn open(url: &str, schema: &str, timeout: Duration) -> Result<Self, DirectoryError> {
        let base = sqlx::postgres::PgConnectOptions::from_str(url).map_err(unavailable)?;
        // The schema name was validated as [a-z_][a-z0-9_]*, so quoting is safe.
        let mut admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect_with(base.clone())
            .await
            .map_err(unavailable)?;
        // Nodes starting at once would race on the schema's catalog row: one
        // creates it under a lock per schema name, the others wait and find it.
        let mut tx = admin.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("omnigate-schema:{schema}"))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        admin.close().await;
        admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(timeout)
            .connect_with(base.options([("search_path", schema)]))
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&admin)
            .await
            .map_err(|e| DirectoryError::Migration(e.to_string()))?;
        PgDirectory {
            pool: admin,
            tombstone_key: Vec::new(),
        }
        .with_tombstone_key()
        .await
    }
}
