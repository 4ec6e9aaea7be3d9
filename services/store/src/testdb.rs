//! Throw-away databases for tests, on both backends.
//!
//! SQLite tests use a file in a temporary directory. PostgreSQL tests create a fresh database
//! on the server named by `RXLEDGER_TEST_POSTGRES_URL` and drop it afterwards. PostgreSQL
//! tests are `#[ignore]`d with that reason, so a fresh clone's `cargo test` needs no server;
//! CI runs them with `--ignored`, and then a missing variable is a failure, never a skip.

use sea_orm::{ConnectionTrait, Statement};

use crate::ledger::EntryKind;
use crate::{Database, NewEntry, StoreError, connect};

/// The variable that names the PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "RXLEDGER_TEST_POSTGRES_URL";

/// A database that lives as long as this value (SQLite) or until [`TempDb::drop_now`].
pub struct TempDb {
    pub db: Database,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

impl TempDb {
    /// A fresh SQLite file.
    pub async fn sqlite() -> Result<TempDb, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Invalid(e.to_string()))?;
        let url = dir.path().join("test.db").display().to_string();
        let db = connect(&url).await?;
        Ok(TempDb {
            db,
            url,
            _dir: Some(dir),
            pg_admin: None,
        })
    }

    /// A fresh PostgreSQL database. Panics with instructions if the server is not configured.
    pub async fn postgres() -> Result<TempDb, StoreError> {
        let admin = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
            panic!("{POSTGRES_ENV} is not set: PostgreSQL tests need a server, e.g. {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test")
        });
        Self::postgres_on(&admin).await
    }

    /// A fresh PostgreSQL database on the server of `admin` (a URL of a database that exists),
    /// for benchmarks that name their server on the command line.
    pub async fn postgres_on(admin: &str) -> Result<TempDb, StoreError> {
        let admin = admin.to_string();
        let name = format!("rxl_test_{}_{}", std::process::id(), unique());
        let admin_db = connect_raw(&admin).await?;
        admin_db
            .execute_raw(Statement::from_string(
                admin_db.get_database_backend(),
                format!("CREATE DATABASE {name}"),
            ))
            .await?;
        let url = replace_db_name(&admin, &name);
        let db = connect(&url).await?;
        Ok(TempDb {
            db,
            url,
            _dir: None,
            pg_admin: Some((admin, name)),
        })
    }

    /// Drops a PostgreSQL test database (SQLite files go with the value).
    pub async fn drop_now(self) {
        if let Some((admin, name)) = &self.pg_admin {
            self.db.conn.clone().close().await.ok();
            if let Ok(a) = connect_raw(admin).await {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = a
                    .execute_raw(Statement::from_string(a.get_database_backend(), sql))
                    .await;
            }
        }
    }
}

async fn connect_raw(url: &str) -> Result<sea_orm::DatabaseConnection, StoreError> {
    let mut opts = sea_orm::ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false).max_connections(1);
    sea_orm::Database::connect(opts)
        .await
        .map_err(|source| StoreError::Connect {
            url: crate::db::redact(url),
            source,
        })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t as u64) * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// An entry of `len` bytes (`"{label} {i} "`, then `x`s) with no events and no sequence
/// number: distinct entries in bulk for tests and benchmarks of the log.
pub fn filler_entry(label: &str, i: u64, len: usize) -> NewEntry {
    let mut data = format!("{label} {i} ").into_bytes();
    data.resize(len, b'x');
    NewEntry {
        data,
        kind: EntryKind::ApiStateChange,
        signer: "api".into(),
        seq: None,
        events: vec![],
    }
}

/// `postgres://u@h:p/old?x` → `postgres://u@h:p/new?x`.
fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}
