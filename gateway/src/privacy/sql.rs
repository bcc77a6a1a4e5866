//! The privacy store on SQL engines, in the customer directory's database.
//! The statements are the same on SQLite and PostgreSQL except the claims
//! (PostgreSQL skips rows another node is claiming), so one macro body
//! generates each engine's implementation.

use async_trait::async_trait;
use sqlx::Row;

use super::datamap::Seen;
use super::store::*;
use crate::customers::{DirectoryError, Event};

fn unavailable(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

const UPSERT_MAP: &str = "INSERT INTO data_map (customer_id, system, first_seen, last_seen, fields)
    SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1)
    ON CONFLICT (customer_id, system) DO UPDATE SET
      first_seen = CASE WHEN excluded.first_seen < data_map.first_seen
                        THEN excluded.first_seen ELSE data_map.first_seen END,
      last_seen = CASE WHEN excluded.last_seen > data_map.last_seen
                       THEN excluded.last_seen ELSE data_map.last_seen END,
      fields = data_map.fields | excluded.fields";
const UPSERT_PURPOSE: &str = "INSERT INTO data_map_purposes (customer_id, system, purpose)
    SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1)
    ON CONFLICT DO NOTHING";
const CUSTOMER_MAP: &str = "SELECT customer_id, system, first_seen, last_seen, fields
    FROM data_map WHERE customer_id = $1 ORDER BY system";
const CUSTOMER_PURPOSES: &str = "SELECT system, purpose FROM data_map_purposes
    WHERE customer_id = $1 ORDER BY system, purpose";
const BY_SYSTEM: &str = "SELECT system, COUNT(*) AS customers, MIN(first_seen) AS first_seen,
    MAX(last_seen) AS last_seen,
    (MAX(fields & 1) | MAX(fields & 2) | MAX(fields & 4)) AS fields
    FROM data_map GROUP BY system ORDER BY system";
const SYSTEM_PURPOSES: &str =
    "SELECT DISTINCT system, purpose FROM data_map_purposes ORDER BY system, purpose";

const JOB_COLUMNS: &str = "id, kind, customer_id, state, step, subject, requested_by, channel,
    verification, created_at, deadline_at, completed_at, report, export_expires_at";
const OPEN_JOB: &str = "SELECT id FROM privacy_jobs WHERE customer_id = $1 AND kind = $2
    AND completed_at IS NULL ORDER BY created_at DESC LIMIT 1";
const INSERT_JOB: &str = "INSERT INTO privacy_jobs (id, kind, customer_id, state, step, subject,
    requested_by, channel, verification, created_at, deadline_at, next_run_at)
    VALUES ($1, $2, $3, 'open', 'revoke', $4, $5, $6, $7, $8, $9, $8)";
const INSERT_AUDIT: &str = "INSERT INTO privacy_audit (job_id, at, actor, what, detail)
    VALUES ($1, $2, $3, $4, $5)";
const TRAIL: &str =
    "SELECT at, actor, what, detail FROM privacy_audit WHERE job_id = $1 ORDER BY id";
const SET_JOB: &str = "UPDATE privacy_jobs SET step = $2, state = $3, next_run_at = $4,
    completed_at = COALESCE($5, completed_at), report = COALESCE($6, report),
    export_expires_at = COALESCE($7, export_expires_at),
    subject = CASE WHEN $8 THEN NULL ELSE subject END,
    lease_owner = NULL, lease_until = 0
    WHERE id = $1 AND ($9 = '' OR lease_owner = $9)";
const INSERT_TASK: &str = "INSERT INTO privacy_tasks (job_id, system, state, next_attempt_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const TASK_COLUMNS: &str = "job_id, system, state, attempts, next_attempt_at, last_error,
    last_attempt_at, answered_at, detail, rev";
const TASKS: &str = "SELECT job_id, system, state, attempts, next_attempt_at, last_error,
    last_attempt_at, answered_at, detail, rev FROM privacy_tasks WHERE job_id = $1 ORDER BY system";
const RECORD_TASK: &str = "UPDATE privacy_tasks SET state = $3, attempts = $4,
    next_attempt_at = $5, last_error = $6, last_attempt_at = $7, answered_at = $8, detail = $9,
    lease_owner = NULL, lease_until = 0, rev = rev + 1
    WHERE job_id = $1 AND system = $2
      AND (($10 >= 0 AND rev = $10)
           OR ($10 < 0 AND state NOT IN ('erased', 'not_found', 'exported')))";
const INSERT_HOLD: &str = "INSERT INTO privacy_holds (id, customer_id, job_id, system, categories,
    reason, legal_basis, until, placed_by, placed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const HOLD_COLUMNS: &str = "id, customer_id, job_id, system, categories, reason, legal_basis,
    until, placed_by, placed_at, released_at, release_reason";
const RELEASE_TASK_HOLDS: &str = "UPDATE privacy_holds SET released_at = $4, release_reason = $3
    WHERE job_id = $1 AND ($2 = '' OR system = $2) AND released_at IS NULL";
const RELEASE_HOLD: &str = "UPDATE privacy_holds SET released_at = $3, release_reason = $2
    WHERE id = $1 AND released_at IS NULL";
const TOMBSTONE: &str = "INSERT INTO tombstones (hash, job_id, erased_at) VALUES ($1, $2, $3)
    ON CONFLICT DO NOTHING";
/// Unfinished erasures, and those finished within the longest time a node
/// may cache a verified token (so a cached one of an erased customer never passes).
const ERASING: &str = "SELECT DISTINCT customer_id FROM privacy_jobs
    WHERE kind = 'erasure' AND (completed_at IS NULL OR completed_at > $1)";
/// Everything the directory holds of a customer, child tables first.
const ERASE: [&str; 8] = [
    "DELETE FROM data_map_purposes WHERE customer_id = $1",
    "DELETE FROM data_map WHERE customer_id = $1",
    "DELETE FROM consent_records WHERE customer_id = $1",
    "DELETE FROM account_tokens WHERE customer_id = $1",
    "DELETE FROM credentials WHERE customer_id = $1",
    "DELETE FROM identities WHERE customer_id = $1",
    "DELETE FROM customers WHERE id = $1",
    "DELETE FROM privacy_holds WHERE customer_id = $1 AND system IS NULL AND released_at IS NOT NULL",
];
/// Delivered events that name the customer (their payloads carry emails).
const ERASE_EVENTS: [&str; 2] = [
    "DELETE FROM outbox_delivered WHERE event_id IN (SELECT event_id FROM outbox
        WHERE done_at IS NOT NULL AND payload LIKE $1 ESCAPE '\\')",
    "DELETE FROM outbox WHERE done_at IS NOT NULL AND payload LIKE $1 ESCAPE '\\'",
];

const PUT_PART: &str = "INSERT INTO privacy_export_parts (job_id, system, seq, chunk)
    VALUES ($1, $2, $3, $4) ON CONFLICT (job_id, system, seq) DO UPDATE SET chunk = excluded.chunk";
const PART: &str =
    "SELECT chunk FROM privacy_export_parts WHERE job_id = $1 AND system = $2 AND seq = $3";
const DROP_PARTS: &str =
    "DELETE FROM privacy_export_parts WHERE job_id = $1 AND ($2 = '' OR system = $2)";
const EXPIRED_EXPORTS: &str = "SELECT j.id FROM privacy_jobs j WHERE j.kind = 'export'
    AND j.export_expires_at IS NOT NULL AND j.export_expires_at < $1
    AND EXISTS (SELECT 1 FROM privacy_export_parts p WHERE p.job_id = j.id)";
const CLAIM_JOB_SQLITE: &str = "UPDATE privacy_jobs SET lease_owner = $1, lease_until = $2
    WHERE id = (SELECT id FROM privacy_jobs WHERE step <> 'done' AND next_run_at <= $3
                AND lease_until <= $3 ORDER BY next_run_at LIMIT 1)
    RETURNING id";
const CLAIM_JOB_POSTGRES: &str = "UPDATE privacy_jobs SET lease_owner = $1, lease_until = $2
    WHERE id = (SELECT id FROM privacy_jobs WHERE step <> 'done' AND next_run_at <= $3
                AND lease_until <= $3 ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id";
const DUE_TASKS: &str = "SELECT t.job_id, t.system FROM privacy_tasks t
    JOIN privacy_jobs j ON j.id = t.job_id
    WHERE t.state IN ('pending', 'waiting', 'failing', 'retained')
      AND t.next_attempt_at <= $3 AND t.lease_until <= $3 AND j.step IN ('fanout', 'holds')
      AND NOT EXISTS (SELECT 1 FROM privacy_holds h WHERE h.customer_id = j.customer_id
          AND h.system IS NULL AND h.released_at IS NULL AND (h.until IS NULL OR h.until > $3))
    ORDER BY t.next_attempt_at LIMIT $4";
const CLAIM_TASKS_SQLITE: &str = "UPDATE privacy_tasks SET lease_owner = $1, lease_until = $2,
    rev = rev + 1 WHERE (job_id, system) IN (DUE) RETURNING job_id, system";
const CLAIM_TASKS_POSTGRES: &str = "UPDATE privacy_tasks SET lease_owner = $1, lease_until = $2,
    rev = rev + 1 WHERE (job_id, system) IN (DUE FOR UPDATE OF t SKIP LOCKED)
    RETURNING job_id, system";

fn job_from(r: &impl RowLike) -> Result<Job, DirectoryError> {
    let kind: String = r.text("kind")?;
    let subject: Option<String> = r.opt_text("subject")?;
    Ok(Job {
        id: r.text("id")?,
        kind: Kind::parse(&kind).ok_or_else(|| unavailable(format!("job kind {kind:?}")))?,
        customer_id: r.text("customer_id")?,
        state: r.text("state")?,
        step: r.text("step")?,
        subject: subject
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(unavailable)?,
        requested_by: r.text("requested_by")?,
        channel: r.text("channel")?,
        verification: r.text("verification")?,
        created_at: r.int("created_at")?,
        deadline_at: r.int("deadline_at")?,
        completed_at: r.opt_int("completed_at")?,
        report: r.opt_text("report")?,
        export_expires_at: r.opt_int("export_expires_at")?,
    })
}

fn task_from(r: &impl RowLike) -> Result<Task, DirectoryError> {
    Ok(Task {
        job_id: r.text("job_id")?,
        system: r.text("system")?,
        state: r.text("state")?,
        attempts: r.int("attempts")?,
        next_attempt_at: r.int("next_attempt_at")?,
        last_error: r.opt_text("last_error")?,
        last_attempt_at: r.opt_int("last_attempt_at")?,
        answered_at: r.opt_int("answered_at")?,
        detail: r.opt_text("detail")?,
        rev: r.int("rev")?,
    })
}

fn hold_from(r: &impl RowLike) -> Result<Hold, DirectoryError> {
    let categories: String = r.text("categories")?;
    Ok(Hold {
        id: r.text("id")?,
        customer_id: r.text("customer_id")?,
        job_id: r.opt_text("job_id")?,
        system: r.opt_text("system")?,
        categories: serde_json::from_str(&categories).map_err(unavailable)?,
        reason: r.text("reason")?,
        legal_basis: r.opt_text("legal_basis")?,
        until: r.opt_int("until")?,
        placed_by: r.text("placed_by")?,
        placed_at: r.int("placed_at")?,
        released_at: r.opt_int("released_at")?,
        release_reason: r.opt_text("release_reason")?,
    })
}

/// Column access shared by both engines' rows.
trait RowLike {
    fn text(&self, c: &str) -> Result<String, DirectoryError>;
    fn opt_text(&self, c: &str) -> Result<Option<String>, DirectoryError>;
    fn int(&self, c: &str) -> Result<i64, DirectoryError>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>, DirectoryError>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn text(&self, c: &str) -> Result<String, DirectoryError> {
                self.try_get(c).map_err(unavailable)
            }
            fn opt_text(&self, c: &str) -> Result<Option<String>, DirectoryError> {
                self.try_get(c).map_err(unavailable)
            }
            fn int(&self, c: &str) -> Result<i64, DirectoryError> {
                self.try_get(c).map_err(unavailable)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i64>, DirectoryError> {
                self.try_get(c).map_err(unavailable)
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

/// `%<id>%` for LIKE, with `_` escaped (ids are `cus_` and hex).
fn mentions(customer_id: &str) -> String {
    format!("%\"{}\"%", customer_id.replace('_', "\\_"))
}

fn seen_from(
    rows: Vec<impl RowLike>,
    purposes: Vec<(String, String)>,
) -> Result<Vec<Seen>, DirectoryError> {
    rows.iter()
        .map(|r| {
            let system = r.text("system")?;
            Ok(Seen {
                customer_id: r.text("customer_id")?,
                purposes: purposes
                    .iter()
                    .filter(|(s, _)| *s == system)
                    .map(|(_, p)| p.clone())
                    .collect(),
                system,
                first_seen: r.int("first_seen")?,
                last_seen: r.int("last_seen")?,
                fields: u8::try_from(r.int("fields")?).unwrap_or(0),
            })
        })
        .collect()
}

macro_rules! sql_privacy {
    ($name:ident, $dir:ty, $pool:ty, $claim_job:expr, $claim_tasks:expr, $begin:expr) => {
        /// The privacy store on this engine.
        pub struct $name {
            pub(crate) pool: $pool,
        }

        impl $name {
            async fn pairs(
                &self,
                sql: &str,
                bind: Option<&str>,
            ) -> Result<Vec<(String, String)>, DirectoryError> {
                let q = sqlx::query(sql);
                let q = match bind {
                    Some(b) => q.bind(b.to_string()),
                    None => q,
                };
                let rows = q.fetch_all(&self.pool).await.map_err(unavailable)?;
                rows.iter()
                    .map(|r| Ok((r.text("system")?, r.text("purpose")?)))
                    .collect()
            }
        }

        #[async_trait]
        impl PrivacyStore for $name {
            async fn upsert_map(&self, rows: &[Seen]) -> Result<(), DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                for s in rows {
                    sqlx::query(UPSERT_MAP)
                        .bind(&s.customer_id)
                        .bind(&s.system)
                        .bind(s.first_seen)
                        .bind(s.last_seen)
                        .bind(i64::from(s.fields))
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                    for p in &s.purposes {
                        sqlx::query(UPSERT_PURPOSE)
                            .bind(&s.customer_id)
                            .bind(&s.system)
                            .bind(p)
                            .execute(&mut *tx)
                            .await
                            .map_err(unavailable)?;
                    }
                }
                tx.commit().await.map_err(unavailable)
            }

            async fn customer_map(&self, customer_id: &str) -> Result<Vec<Seen>, DirectoryError> {
                let rows = sqlx::query(CUSTOMER_MAP)
                    .bind(customer_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let purposes = self.pairs(CUSTOMER_PURPOSES, Some(customer_id)).await?;
                seen_from(rows, purposes)
            }

            async fn map_by_system(&self) -> Result<Vec<SystemUse>, DirectoryError> {
                let rows = sqlx::query(BY_SYSTEM)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let purposes = self.pairs(SYSTEM_PURPOSES, None).await?;
                rows.iter()
                    .map(|r| {
                        let system = r.text("system")?;
                        Ok(SystemUse {
                            customers: r.int("customers")?,
                            first_seen: r.int("first_seen")?,
                            last_seen: r.int("last_seen")?,
                            fields: u8::try_from(r.int("fields")?).unwrap_or(0),
                            purposes: purposes
                                .iter()
                                .filter(|(s, _)| *s == system)
                                .map(|(_, p)| p.clone())
                                .collect(),
                            system,
                        })
                    })
                    .collect()
            }

            async fn create_job(&self, job: &NewJob, event: &Event) -> Result<Job, DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                let open: Option<String> = sqlx::query_scalar(OPEN_JOB)
                    .bind(&job.customer_id)
                    .bind(job.kind.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if let Some(id) = open {
                    tx.rollback().await.map_err(unavailable)?;
                    return self
                        .job(&id)
                        .await?
                        .ok_or_else(|| unavailable("job vanished"));
                }
                let subject = serde_json::to_string(&job.subject).map_err(unavailable)?;
                sqlx::query(INSERT_JOB)
                    .bind(&job.id)
                    .bind(job.kind.as_str())
                    .bind(&job.customer_id)
                    .bind(subject)
                    .bind(&job.requested_by)
                    .bind(&job.channel)
                    .bind(&job.verification)
                    .bind(job.created_at)
                    .bind(job.deadline_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                sqlx::query(INSERT_AUDIT)
                    .bind(&job.id)
                    .bind(job.created_at)
                    .bind(&job.requested_by)
                    .bind("requested")
                    .bind(format!(
                        "{} request received via {}; identity verified by {}",
                        job.kind.as_str(),
                        job.channel,
                        job.verification
                    ))
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                <$dir>::enqueue_in(&mut tx, event).await?;
                tx.commit().await.map_err(unavailable)?;
                self.job(&job.id)
                    .await?
                    .ok_or_else(|| unavailable("job vanished"))
            }

            async fn job(&self, id: &str) -> Result<Option<Job>, DirectoryError> {
                let sql = format!("SELECT {JOB_COLUMNS} FROM privacy_jobs WHERE id = $1");
                let row = sqlx::query(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(job_from).transpose()
            }

            async fn jobs(&self, state: Option<&str>, limit: i64) -> Result<Vec<Job>, DirectoryError> {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM privacy_jobs WHERE ($1 = '' OR state = $1)
                     ORDER BY created_at DESC, id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(state.unwrap_or(""))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(job_from).collect()
            }

            async fn jobs_of(&self, customer_id: &str) -> Result<Vec<Job>, DirectoryError> {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM privacy_jobs WHERE customer_id = $1
                     ORDER BY created_at DESC, id"
                );
                let rows = sqlx::query(&sql)
                    .bind(customer_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(job_from).collect()
            }

            async fn claim_job(
                &self,
                owner: &str,
                now: i64,
                lease_until: i64,
            ) -> Result<Option<Job>, DirectoryError> {
                let id: Option<String> = sqlx::query_scalar($claim_job)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                match id {
                    Some(id) => self.job(&id).await,
                    None => Ok(None),
                }
            }

            async fn set_job(
                &self,
                id: &str,
                owner: Option<&str>,
                c: &JobChange,
            ) -> Result<bool, DirectoryError> {
                let n = sqlx::query(SET_JOB)
                    .bind(id)
                    .bind(&c.step)
                    .bind(&c.state)
                    .bind(c.next_run_at)
                    .bind(c.completed_at)
                    .bind(&c.report)
                    .bind(c.export_expires_at)
                    .bind(c.scrub)
                    .bind(owner.unwrap_or(""))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn add_tasks(
                &self,
                job_id: &str,
                tasks: &[(String, String)],
                now: i64,
            ) -> Result<(), DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                for (system, state) in tasks {
                    sqlx::query(INSERT_TASK)
                        .bind(job_id)
                        .bind(system)
                        .bind(state)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                tx.commit().await.map_err(unavailable)
            }

            async fn tasks(&self, job_id: &str) -> Result<Vec<Task>, DirectoryError> {
                let rows = sqlx::query(TASKS)
                    .bind(job_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(task_from).collect()
            }

            async fn claim_tasks(
                &self,
                owner: &str,
                now: i64,
                lease_until: i64,
                limit: i64,
            ) -> Result<Vec<Task>, DirectoryError> {
                let sql = $claim_tasks.replace("DUE", DUE_TASKS);
                let rows = sqlx::query(&sql)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let (job_id, system) = (r.text("job_id")?, r.text("system")?);
                    let sql = format!(
                        "SELECT {TASK_COLUMNS} FROM privacy_tasks WHERE job_id = $1 AND system = $2"
                    );
                    let row = sqlx::query(&sql)
                        .bind(&job_id)
                        .bind(&system)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(unavailable)?;
                    out.push(task_from(&row)?);
                }
                Ok(out)
            }

            async fn record_task(
                &self,
                c: &TaskChange,
                rev: Option<i64>,
            ) -> Result<bool, DirectoryError> {
                let n = sqlx::query(RECORD_TASK)
                    .bind(&c.job_id)
                    .bind(&c.system)
                    .bind(&c.state)
                    .bind(c.attempts)
                    .bind(c.next_attempt_at)
                    .bind(&c.last_error)
                    .bind(c.last_attempt_at)
                    .bind(c.answered_at)
                    .bind(&c.detail)
                    .bind(rev.unwrap_or(-1))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn audit(
                &self,
                job_id: &str,
                actor: &str,
                what: &str,
                detail: Option<&str>,
                now: i64,
            ) -> Result<(), DirectoryError> {
                sqlx::query(INSERT_AUDIT)
                    .bind(job_id)
                    .bind(now)
                    .bind(actor)
                    .bind(what)
                    .bind(detail)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn trail(&self, job_id: &str) -> Result<Vec<Audit>, DirectoryError> {
                let rows = sqlx::query(TRAIL)
                    .bind(job_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .map(|r| {
                        Ok(Audit {
                            at: r.int("at")?,
                            actor: r.text("actor")?,
                            what: r.text("what")?,
                            detail: r.opt_text("detail")?,
                        })
                    })
                    .collect()
            }

            async fn place_hold(&self, h: &Hold, event: &Event) -> Result<(), DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                sqlx::query(INSERT_HOLD)
                    .bind(&h.id)
                    .bind(&h.customer_id)
                    .bind(&h.job_id)
                    .bind(&h.system)
                    .bind(serde_json::to_string(&h.categories).map_err(unavailable)?)
                    .bind(&h.reason)
                    .bind(&h.legal_basis)
                    .bind(h.until)
                    .bind(&h.placed_by)
                    .bind(h.placed_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                <$dir>::enqueue_in(&mut tx, event).await?;
                tx.commit().await.map_err(unavailable)
            }

            async fn holds(
                &self,
                customer_id: Option<&str>,
                now: i64,
            ) -> Result<Vec<Hold>, DirectoryError> {
                let sql = format!(
                    "SELECT {HOLD_COLUMNS} FROM privacy_holds WHERE
                     ($1 <> '' AND customer_id = $1)
                     OR ($1 = '' AND released_at IS NULL AND (until IS NULL OR until > $2))
                     ORDER BY placed_at DESC, id"
                );
                let rows = sqlx::query(&sql)
                    .bind(customer_id.unwrap_or(""))
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(hold_from).collect()
            }

            async fn release_holds(
                &self,
                job_id: &str,
                system: Option<&str>,
                reason: &str,
                now: i64,
            ) -> Result<u64, DirectoryError> {
                Ok(sqlx::query(RELEASE_TASK_HOLDS)
                    .bind(job_id)
                    .bind(system.unwrap_or(""))
                    .bind(reason)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected())
            }

            async fn release_hold(
                &self,
                id: &str,
                reason: &str,
                now: i64,
            ) -> Result<bool, DirectoryError> {
                let n = sqlx::query(RELEASE_HOLD)
                    .bind(id)
                    .bind(reason)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn erase_customer(
                &self,
                customer_id: &str,
                tombstones: &[String],
                job_id: &str,
                event: &Event,
                now: i64,
            ) -> Result<(), DirectoryError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(unavailable)?;
                for sql in ERASE {
                    sqlx::query(sql)
                        .bind(customer_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                for sql in ERASE_EVENTS {
                    sqlx::query(sql)
                        .bind(mentions(customer_id))
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                for hash in tombstones {
                    sqlx::query(TOMBSTONE)
                        .bind(hash)
                        .bind(job_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                <$dir>::enqueue_in(&mut tx, event).await?;
                tx.commit().await.map_err(unavailable)
            }

            async fn tombstoned(&self, hashes: &[String]) -> Result<Option<String>, DirectoryError> {
                for h in hashes {
                    let job: Option<String> =
                        sqlx::query_scalar("SELECT job_id FROM tombstones WHERE hash = $1")
                            .bind(h)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(unavailable)?;
                    if job.is_some() {
                        return Ok(job);
                    }
                }
                Ok(None)
            }

            async fn erasing(&self, now: i64) -> Result<Vec<String>, DirectoryError> {
                sqlx::query_scalar(ERASING)
                    .bind(now - 600)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)
            }

            async fn counts(&self, now: i64) -> Result<Counts, DirectoryError> {
                let rows = sqlx::query(
                    "SELECT kind, state, COUNT(*) AS n FROM privacy_jobs GROUP BY kind, state",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                let jobs = rows
                    .iter()
                    .map(|r| Ok((r.text("kind")?, r.text("state")?, r.int("n")?)))
                    .collect::<Result<_, DirectoryError>>()?;
                let overdue: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM privacy_jobs WHERE completed_at IS NULL AND deadline_at < $1",
                )
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
                let active_holds: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM privacy_holds
                     WHERE released_at IS NULL AND (until IS NULL OR until > $1)",
                )
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
                let rows = sqlx::query(
                    "SELECT system, COUNT(*) AS n FROM privacy_tasks WHERE state = 'failing'
                     GROUP BY system",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                let failing = rows
                    .iter()
                    .map(|r| Ok((r.text("system")?, r.int("n")?)))
                    .collect::<Result<_, DirectoryError>>()?;
                Ok(Counts {
                    jobs,
                    overdue,
                    active_holds,
                    failing,
                })
            }

            async fn put_part(
                &self,
                job_id: &str,
                system: &str,
                seq: i64,
                chunk: &str,
            ) -> Result<(), DirectoryError> {
                sqlx::query(PUT_PART)
                    .bind(job_id)
                    .bind(system)
                    .bind(seq)
                    .bind(chunk)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn part(
                &self,
                job_id: &str,
                system: &str,
                seq: i64,
            ) -> Result<Option<String>, DirectoryError> {
                sqlx::query_scalar(PART)
                    .bind(job_id)
                    .bind(system)
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)
            }

            async fn drop_parts(
                &self,
                job_id: &str,
                system: Option<&str>,
            ) -> Result<(), DirectoryError> {
                sqlx::query(DROP_PARTS)
                    .bind(job_id)
                    .bind(system.unwrap_or(""))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn expired_exports(&self, now: i64) -> Result<Vec<String>, DirectoryError> {
                sqlx::query_scalar(EXPIRED_EXPORTS)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)
            }
        }
    };
}

sql_privacy!(
    SqlitePrivacy,
    crate::customers::SqliteDirectory,
    sqlx::SqlitePool,
    CLAIM_JOB_SQLITE,
    CLAIM_TASKS_SQLITE,
    "BEGIN IMMEDIATE"
);
sql_privacy!(
    PgPrivacy,
    crate::customers::PgDirectory,
    sqlx::PgPool,
    CLAIM_JOB_POSTGRES,
    CLAIM_TASKS_POSTGRES,
    "BEGIN"
);
