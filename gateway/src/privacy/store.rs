//! Where privacy work is kept: the data map, requests (jobs) with their
//! per-system tasks and audit trail, holds and tombstones. In the customer
//! directory's database, one implementation per engine (`sql.rs`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::datamap::Seen;
use crate::customers::{DirectoryError, Event};

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Erasure,
    Export,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Erasure => "erasure",
            Kind::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "erasure" => Some(Kind::Erasure),
            "export" => Some(Kind::Export),
            _ => None,
        }
    }
}

/// Who the request is about, as systems need it: kept with the job until it
/// is done, then scrubbed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub identities: Vec<Identity>,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
}

/// A request as filed.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: Kind,
    pub customer_id: String,
    pub subject: Subject,
    /// `customer` or `operator`.
    pub requested_by: String,
    /// How it came in (`account_page`, `phone`, `email` …).
    pub channel: String,
    /// How the requester's identity was verified.
    pub verification: String,
    pub created_at: i64,
    pub deadline_at: i64,
}

/// A request and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub kind: Kind,
    pub customer_id: String,
    /// `open`, `in_progress`, `completed_with_holds`, `completed`, `ready`, `expired`.
    pub state: String,
    /// The next job-level step: `revoke`, `plan`, `fanout`, `finish`, `holds`, `done`.
    pub step: String,
    /// None once scrubbed.
    pub subject: Option<Subject>,
    pub requested_by: String,
    pub channel: String,
    pub verification: String,
    pub created_at: i64,
    pub deadline_at: i64,
    pub completed_at: Option<i64>,
    /// The signed completion report (compact JWS).
    pub report: Option<String>,
    pub export_expires_at: Option<i64>,
}

/// What a job step changes.
#[derive(Debug, Clone, Default)]
pub struct JobChange {
    pub step: String,
    pub state: String,
    pub next_run_at: i64,
    pub completed_at: Option<i64>,
    pub report: Option<String>,
    pub export_expires_at: Option<i64>,
    /// Forget the subject (the job is done with it).
    pub scrub: bool,
}

/// One system's part of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub job_id: String,
    pub system: String,
    /// `pending`, `waiting`, `failing`, `manual`, `retained`, `erased`,
    /// `not_found`, `exported`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub answered_at: Option<i64>,
    /// The system's last answer (JSON), e.g. the legal basis of a retention.
    pub detail: Option<String>,
    /// Bumped on every change: a write naming an older one is refused.
    #[serde(skip)]
    pub rev: i64,
}

/// A new state for a task.
#[derive(Debug, Clone)]
pub struct TaskChange {
    pub job_id: String,
    pub system: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub detail: Option<String>,
}

/// A legal hold: a system keeps these categories of the customer's data
/// until a date (or an operator pauses erasure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub id: String,
    pub customer_id: String,
    pub job_id: Option<String>,
    /// None: every system (an operator's hold on the customer).
    pub system: Option<String>,
    pub categories: Vec<String>,
    pub reason: String,
    pub legal_basis: Option<String>,
    pub until: Option<i64>,
    /// `operator` or `system:<name>`.
    pub placed_by: String,
    pub placed_at: i64,
    pub released_at: Option<i64>,
    pub release_reason: Option<String>,
}

/// One line of a job's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    pub at: i64,
    pub actor: String,
    pub what: String,
    pub detail: Option<String>,
}

/// One system's row of the record of processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUse {
    pub system: String,
    pub customers: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub fields: u8,
    pub purposes: Vec<String>,
}

/// Counts for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// (kind, state, jobs).
    pub jobs: Vec<(String, String, i64)>,
    pub overdue: i64,
    pub active_holds: i64,
    /// (system, tasks failing now).
    pub failing: Vec<(String, i64)>,
}

/// The privacy store.
#[async_trait]
pub trait PrivacyStore: Send + Sync {
    /// Folds a batch of sightings in (idempotent: the same batch twice
    /// changes nothing more).
    async fn upsert_map(&self, rows: &[Seen]) -> Result<(), DirectoryError>;
    /// What each system received of one customer.
    async fn customer_map(&self, customer_id: &str) -> Result<Vec<Seen>, DirectoryError>;
    /// Per system: how many customers, when, which fields, under which purposes.
    async fn map_by_system(&self) -> Result<Vec<SystemUse>, DirectoryError>;

    /// Files a request with its first audit line and its event, unless the
    /// customer has an unfinished one of the same kind (returned instead).
    async fn create_job(&self, job: &NewJob, event: &Event) -> Result<Job, DirectoryError>;
    async fn job(&self, id: &str) -> Result<Option<Job>, DirectoryError>;
    /// Newest first; `state` filters.
    async fn jobs(&self, state: Option<&str>, limit: i64) -> Result<Vec<Job>, DirectoryError>;
    /// A customer's requests, newest first.
    async fn jobs_of(&self, customer_id: &str) -> Result<Vec<Job>, DirectoryError>;
    /// Takes one job whose step is due (not `fanout`/`holds`/`done`), leased to `owner`.
    async fn claim_job(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<Job>, DirectoryError>;
    /// Moves a job on; false if `owner` (when given) no longer holds it.
    async fn set_job(
        &self,
        id: &str,
        owner: Option<&str>,
        change: &JobChange,
    ) -> Result<bool, DirectoryError>;
    /// Adds tasks (systems not yet part of the job).
    async fn add_tasks(
        &self,
        job_id: &str,
        tasks: &[(String, String)],
        now: i64,
    ) -> Result<(), DirectoryError>;
    async fn tasks(&self, job_id: &str) -> Result<Vec<Task>, DirectoryError>;
    /// Takes due tasks of running jobs (none of a customer an operator
    /// holds), each leased to `owner` and its `rev` bumped.
    async fn claim_tasks(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Task>, DirectoryError>;
    /// Records a task's new state if it is still at `rev` (None: any rev,
    /// unless it already ended).
    async fn record_task(
        &self,
        change: &TaskChange,
        rev: Option<i64>,
    ) -> Result<bool, DirectoryError>;
    async fn audit(
        &self,
        job_id: &str,
        actor: &str,
        what: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<(), DirectoryError>;
    async fn trail(&self, job_id: &str) -> Result<Vec<Audit>, DirectoryError>;

    /// Places a hold (with its event).
    async fn place_hold(&self, hold: &Hold, event: &Event) -> Result<(), DirectoryError>;
    /// Holds, newest first: of one customer, or every one still active at `now`.
    async fn holds(&self, customer_id: Option<&str>, now: i64)
        -> Result<Vec<Hold>, DirectoryError>;
    /// Releases the system holds of a job's task (it erased after all).
    async fn release_holds(
        &self,
        job_id: &str,
        system: Option<&str>,
        reason: &str,
        now: i64,
    ) -> Result<u64, DirectoryError>;
    /// Releases one hold by id; false if there is none active.
    async fn release_hold(&self, id: &str, reason: &str, now: i64) -> Result<bool, DirectoryError>;

    /// Deletes the customer (account, identities, credentials, tokens,
    /// consent ledger, data map, delivered events about them) and keeps the
    /// tombstones, in one transaction with the event.
    async fn erase_customer(
        &self,
        customer_id: &str,
        tombstones: &[String],
        job_id: &str,
        event: &Event,
        now: i64,
    ) -> Result<(), DirectoryError>;
    /// The job that left one of these tombstones, if any.
    async fn tombstoned(&self, hashes: &[String]) -> Result<Option<String>, DirectoryError>;
    /// Customers with an erasure unfinished or finished in the last ten
    /// minutes (refused everywhere, even by a cached token).
    async fn erasing(&self, now: i64) -> Result<Vec<String>, DirectoryError>;
    async fn counts(&self, now: i64) -> Result<Counts, DirectoryError>;

    /// Keeps chunk `seq` of what `system` exported for a job.
    async fn put_part(
        &self,
        job_id: &str,
        system: &str,
        seq: i64,
        chunk: &str,
    ) -> Result<(), DirectoryError>;
    /// Chunk `seq` of a system's export, if there is one.
    async fn part(
        &self,
        job_id: &str,
        system: &str,
        seq: i64,
    ) -> Result<Option<String>, DirectoryError>;
    /// Forgets a system's export (before it is written again), or every
    /// system's (`None`) when the export expires.
    async fn drop_parts(&self, job_id: &str, system: Option<&str>) -> Result<(), DirectoryError>;
    /// Exports past their expiry that still hold parts.
    async fn expired_exports(&self, now: i64) -> Result<Vec<String>, DirectoryError>;
}
