use rxledger_core::checkpoint::CheckpointError;
use rxledger_core::merkle::ProofError;

/// Everything that can go wrong below the API. Callers map these to client-facing codes;
/// the database text in [`StoreError::Db`] is for logs only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    #[error("cannot open database {url}: {reason} (is the database server running and reachable?)")]
    Unreachable { url: String, reason: String },
    /// The PostgreSQL server answered but has no such database: say how to create it.
    #[error(
        "cannot open database {url}: the PostgreSQL server has no database named {name:?}. Create it (`{create}`, or `CREATE DATABASE {name};` in psql), then run this again"
    )]
    MissingDatabase {
        url: String,
        name: String,
        create: String,
    },
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Stored data fails a structural check (a hash that is not 32 bytes, a tile of the
    /// wrong width, a missing row below the head). Nothing is written after this.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// Another sequencer advanced the head first; the batch was rolled back.
    #[error("the log head moved from size {expected} (another sequencer?); batch rolled back")]
    HeadMoved { expected: u64 },
    #[error("this database holds the log {found:?}, not {expected:?}")]
    WrongLog { expected: String, found: String },
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Tile(#[from] rxledger_core::tiles::TileError),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
}

impl StoreError {
    /// Whether the database refused the write because of a uniqueness constraint: retrying
    /// the same write cannot succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Db(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))))
    }
}
