//! `rxledger backup` and `rxledger restore`: a consistent copy of a live SQLite database, and
//! putting one back only after it passes the full audit.
//!
//! A plain `cp` of the database file while the server runs is not a backup: in WAL mode the
//! latest commits live in `rxledger.db-wal` until a checkpoint moves them, so the copy can
//! lack them (it once held 0 entries). `VACUUM INTO` reads through a connection, inside one
//! read transaction, so the copy is the committed state at one instant, WAL included, and the
//! server keeps appending meanwhile (SQLite documents it as an alternative to the online
//! backup API that also compacts). PostgreSQL has its own tools; [`backup`] says which.
//!
//! Restoring an older copy rolls the log back: the operator's witnesses and anyone holding a
//! later checkpoint will see that the restored log is not consistent with what was published.
//! The copy holds no secret key: the log key (`log.key`) is backed up separately.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rxledger_core::keys::LogVerifier;
use rxledger_store::{Database, audit};
use sea_orm::{ConnectionTrait, Statement};

/// What `backup` says about a PostgreSQL database.
pub const POSTGRES: &str = "rxledger backup copies SQLite databases; for PostgreSQL use its own \
    tools, e.g. `pg_dump --format=custom --file rxledger.dump <database>` and `pg_restore` \
    (docs/DEPLOY.md, \"Backup and restore\")";

/// What a backup or a restore wrote.
#[derive(Debug)]
pub struct Copied {
    pub path: PathBuf,
    /// Log size in the copy.
    pub size: u64,
    pub bytes: u64,
}

/// Copies the live SQLite database `db` to `out`, which must not exist yet. The copy is
/// written beside `out` and renamed into place once complete and synced, so an interrupted
/// backup never leaves a file that looks whole.
pub async fn backup(db: &Database, out: &Path) -> anyhow::Result<Copied> {
    if db.is_postgres() {
        bail!("{POSTGRES}");
    }
    if out.exists() {
        bail!(
            "{} already exists: choose a new file name (a backup never overwrites)",
            out.display()
        );
    }
    let partial = sibling(out, ".partial")?;
    let _ = std::fs::remove_file(&partial);
    let literal = partial
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", partial.display()))?
        .replace('\'', "''");
    db.conn
        .execute_raw(Statement::from_string(
            db.backend(),
            format!("VACUUM INTO '{literal}'"),
        ))
        .await
        .with_context(|| format!("cannot write the backup to {}", partial.display()))?;
    let copy = rxledger_store::connect(&partial.display().to_string()).await?;
    let size = rxledger_store::ledger::read_head(&copy).await?.size;
    copy.conn.close().await.ok();
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", partial.display()))?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move the backup to {}", out.display()))?;
    let bytes = std::fs::metadata(out)?.len();
    Ok(Copied {
        path: out.to_path_buf(),
        size,
        bytes,
    })
}

/// Puts the backup `from` in place as the SQLite database `target`, which must not exist
/// (stop the server and move the old file aside first: a restore never overwrites). The
/// backup is copied beside `target`, audited there in full against `verifier` (every entry
/// rehashed, every tile and checkpoint checked), and renamed into place only if the audit
/// passes; otherwise nothing is left behind.
pub async fn restore(
    from: &Path,
    target: &Path,
    verifier: impl FnOnce(&str) -> anyhow::Result<LogVerifier>,
) -> anyhow::Result<(Copied, audit::AuditReport)> {
    if !from.is_file() {
        bail!("{} is not a backup file", from.display());
    }
    for existing in [
        target.to_path_buf(),
        sibling(target, "-wal")?,
        sibling(target, "-shm")?,
    ] {
        if existing.exists() {
            bail!(
                "{} exists: stop the server and move the database (and its -wal and -shm \
                 files) aside first; a restore never overwrites",
                existing.display()
            );
        }
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let partial = sibling(target, ".restoring")?;
    let result = restore_via(from, &partial, target, verifier).await;
    if result.is_err() {
        for leftover in [
            partial.clone(),
            sibling(&partial, "-wal")?,
            sibling(&partial, "-shm")?,
        ] {
            let _ = std::fs::remove_file(leftover);
        }
    }
    result
}

async fn restore_via(
    from: &Path,
    partial: &Path,
    target: &Path,
    verifier: impl FnOnce(&str) -> anyhow::Result<LogVerifier>,
) -> anyhow::Result<(Copied, audit::AuditReport)> {
    std::fs::copy(from, partial)
        .with_context(|| format!("cannot copy {} to {}", from.display(), partial.display()))?;
    let db = rxledger_store::connect(&partial.display().to_string())
        .await
        .with_context(|| format!("{} is not an rxledger database", from.display()))?;
    let head = rxledger_store::ledger::read_head(&db).await?;
    let origin = rxledger_store::ledger::read_checkpoint_origin(&head.note)?;
    let verifier = verifier(&origin)?;
    let report = audit::audit(&db, &verifier, None, |_, _| {}).await?;
    // Move what the WAL holds into the file, so that the renamed file is the whole database.
    db.conn
        .execute_raw(Statement::from_string(
            db.backend(),
            "PRAGMA wal_checkpoint(TRUNCATE)".to_string(),
        ))
        .await?;
    db.conn.close().await.ok();
    if !report.ok() {
        bail!(
            "the backup fails the audit, so it was not restored: {}",
            report.problems.join("; ")
        );
    }
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", partial.display()))?;
    for leftover in [sibling(partial, "-wal")?, sibling(partial, "-shm")?] {
        let _ = std::fs::remove_file(leftover);
    }
    std::fs::rename(partial, target)
        .with_context(|| format!("cannot move the database to {}", target.display()))?;
    let bytes = std::fs::metadata(target)?.len();
    Ok((
        Copied {
            path: target.to_path_buf(),
            size: report.size,
            bytes,
        },
        report,
    ))
}

/// `path` with `suffix` appended to its file name (`a.db` → `a.db-wal`).
fn sibling(path: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(path.with_file_name(name))
}
