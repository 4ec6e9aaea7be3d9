//! Opening the database and running migrations.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;

use crate::StoreError;

/// An open, migrated database.
#[derive(Clone, Debug)]
pub struct Database {
    pub conn: DatabaseConnection,
    pub url: String,
    /// Bumped by every registry change made through this process, so in-memory copies of
    /// registry data (sites, prefixes) know when to reload.
    pub registry_generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Database {
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Whether several nodes may share this database (PostgreSQL), rather than one (SQLite).
    pub fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }
}

/// Turns what a user typed into a sea-orm URL: a bare path means a SQLite file.
pub fn normalize_url(url: &str) -> String {
    if url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || url.starts_with("sqlite:")
    {
        url.to_string()
    } else {
        format!("sqlite://{url}?mode=rwc")
    }
}

/// Opens `url` (a SQLite path or URL, or a PostgreSQL URL) and runs pending migrations.
///
/// SQLite runs in WAL mode with `synchronous=FULL`: a batch that reported committed survives
/// power loss, and with batching FULL costs about the same as NORMAL.
pub async fn connect(url: &str) -> Result<Database, StoreError> {
    let url = normalize_url(url);
    let conn = open_pool(&url, if url.starts_with("sqlite:") { 4 } else { 16 }).await?;
    rxledger_entities::Migrator::up(&conn, None)
        .await
        .map_err(|source| connect_error(&url, source))?;
    Ok(Database {
        conn,
        url,
        registry_generation: Default::default(),
    })
}

/// A pool of exactly one connection to an already migrated database: the ledger's writer.
pub async fn writer(url: &str) -> Result<DatabaseConnection, StoreError> {
    open_pool(&normalize_url(url), 1).await
}

async fn open_pool(url: &str, max: u32) -> Result<DatabaseConnection, StoreError> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30))
        .max_connections(max)
        .min_connections(1);
    if url.starts_with("sqlite:") {
        // Readers run beside the single writer thanks to WAL. The WAL is copied back into the
        // database every 10,000 pages (40 MB) rather than SQLite's 1,000: index pages that
        // every batch touches are then written back once, not ten times (+3 to 5 % ingest).
        // Statement journals of multi-row inserts stay in memory instead of a temporary file.
        // sea-orm keeps only the last closure given here, so every option goes in this one.
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(false)
                .pragma("wal_autocheckpoint", "10000")
                .pragma("temp_store", "memory")
        });
    } else {
        probe(url).await?;
    }
    sea_orm::Database::connect(opts)
        .await
        .map_err(|source| connect_error(url, source))
}

/// Why `url` could not be opened: a database that does not exist says how to create it.
fn connect_error(url: &str, source: sea_orm::DbErr) -> StoreError {
    match missing_database(&source) {
        Some(name) => StoreError::MissingDatabase {
            url: redact(url),
            create: createdb_command(url, &name),
            name,
        },
        None => StoreError::Connect {
            url: redact(url),
            source,
        },
    }
}

/// The database's name when PostgreSQL refused the connection because it does not exist
/// (SQLSTATE 3D000, `invalid_catalog_name`).
fn missing_database(e: &sea_orm::DbErr) -> Option<String> {
    use sea_orm::{DbErr, RuntimeErr};
    let (DbErr::Conn(RuntimeErr::SqlxError(sqlx)) | DbErr::Exec(RuntimeErr::SqlxError(sqlx))) = e
    else {
        return None;
    };
    let db = sqlx.as_database_error()?;
    if db.code().as_deref() != Some("3D000") {
        return None;
    }
    // The server's message is `database "NAME" does not exist`.
    let msg = db.message();
    let name = msg.split('"').nth(1).unwrap_or(msg);
    Some(name.to_string())
}

/// The `createdb` command that creates database `name` on the server of `url`, with the
/// URL's host, port and user (never its password).
fn createdb_command(url: &str, name: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((creds, h)) => (creds.split(':').next().filter(|u| !u.is_empty()), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, Some(p)),
        _ => (hostport, None),
    };
    let mut cmd = String::from("createdb");
    if !host.is_empty() {
        cmd.push_str(&format!(" -h {host}"));
    }
    if let Some(p) = port {
        cmd.push_str(&format!(" -p {p}"));
    }
    if let Some(u) = user {
        cmd.push_str(&format!(" -U {u}"));
    }
    cmd.push_str(&format!(" {name}"));
    cmd
}

/// Fails fast, and says why, when the database server cannot even be reached: the pool would
/// otherwise retry until its acquire timeout and report only "pool timed out".
async fn probe(url: &str) -> Result<(), StoreError> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = hostport.split(['/', '?']).next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h.to_string(), p.parse::<u16>().unwrap_or(5432)),
        _ => (hostport.to_string(), 5432),
    };
    if host.is_empty() {
        return Ok(()); // a Unix socket URL: let the driver report on it
    }
    let reason = match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 5 s".to_string(),
    };
    Err(StoreError::Unreachable {
        url: redact(url),
        reason: format!("cannot reach {host}:{port}: {reason}"),
    })
}

/// Hides a password in a database URL before it is printed.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn createdb_from_the_url_without_the_password() {
        assert_eq!(
            createdb_command(
                "postgres://rx:secret@db.example:5433/ledger?sslmode=require",
                "ledger"
            ),
            "createdb -h db.example -p 5433 -U rx ledger"
        );
        assert_eq!(
            createdb_command("postgresql://localhost/ledger", "ledger"),
            "createdb -h localhost ledger"
        );
    }
}
