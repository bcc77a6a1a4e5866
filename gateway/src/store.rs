//! Storage plumbing shared by the embedded engines: opening a SQLite file the
//! same way everywhere (created if missing, WAL, foreign keys, busy timeout).
//! Each engine keeps its own migrations and queries.

use std::path::Path;
use std::time::Duration;

/// Opens (creating if needed) the SQLite file at `path` as a small pool.
pub async fn sqlite_pool(path: &Path) -> Result<sqlx::SqlitePool, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
}
