//! The witness's state: one row per log origin, the checkpoint it last cosigned, in SQLite.
//!
//! tlog-witness requires that checking the old size and recording the new checkpoint happen
//! atomically, or two racing requests could roll the witness back. [`State::advance`] runs
//! the whole decision under one lock and writes with a compare-and-swap on the size inside one
//! transaction, synced to disk (`synchronous=FULL`) before the cosignature is returned.

use std::path::Path;

use rxledger_core::merkle::{self, Hash};
use rxledger_core::witness::Latest;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{self, Row as _};

/// The schema: created on first start, never migrated (one table, one row per log).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS witnessed (
    origin TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
)";

/// What the witness stores about one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessed {
    pub latest: Latest,
    /// The checkpoint as submitted, with the witness's own cosignature appended.
    pub note: String,
}

/// The witness database.
#[derive(Clone, Debug)]
pub struct State {
    pool: SqlitePool,
}

impl State {
    /// Opens (creating) `witness.db` in `dir`.
    pub async fn open(dir: &Path) -> Result<Self, sqlx::Error> {
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("witness.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        Ok(State { pool })
    }

    /// The latest cosigned checkpoint of `origin`, if any.
    pub async fn latest(&self, origin: &str) -> Result<Option<Witnessed>, sqlx::Error> {
        let row = sqlx::query("SELECT size, root, note FROM witnessed WHERE origin = ?")
            .bind(origin)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let size: i64 = row.try_get("size")?;
        let root: Vec<u8> = row.try_get("root")?;
        let root: Hash =
            merkle::hash_from_slice(&root).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(Some(Witnessed {
            latest: Latest {
                size: size as u64,
                root,
            },
            note: row.try_get("note")?,
        }))
    }

    /// Records `next` for `origin` if what is stored is still `previous` (by size); returns
    /// whether it was recorded.
    pub async fn record(
        &self,
        origin: &str,
        previous: Option<u64>,
        next: &Witnessed,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut txn = self.pool.begin().await?;
        let done = match previous {
            None => sqlx::query(
                "INSERT INTO witnessed (origin, size, root, note, updated_ms) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (origin) DO NOTHING",
            )
            .bind(origin)
            .bind(next.latest.size as i64)
            .bind(next.latest.root.to_vec())
            .bind(&next.note)
            .bind(now_ms)
            .execute(&mut *txn)
            .await?,
            Some(size) => sqlx::query(
                "UPDATE witnessed SET size = ?, root = ?, note = ?, updated_ms = ? \
                 WHERE origin = ? AND size = ?",
            )
            .bind(next.latest.size as i64)
            .bind(next.latest.root.to_vec())
            .bind(&next.note)
            .bind(now_ms)
            .bind(origin)
            .bind(size as i64)
            .execute(&mut *txn)
            .await?,
        };
        txn.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
