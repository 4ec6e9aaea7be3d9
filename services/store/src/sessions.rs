//! Browser sessions: what a sign-in page hands a browser instead of its API key.
//!
//! A browser cannot send `Authorization: Bearer`, and an API key must never sit in a cookie,
//! where every request carries it and a stolen cookie would be the key itself. So signing in
//! opens a session: a random 256-bit id goes into the cookie, the database keeps only its
//! SHA-256 and the key it stands for. The session is no more than that key: every use looks
//! the key up again with the same rule as a Bearer token (`apikeys::judge`), so a revoked or
//! expired key ends its sessions at once, on every node that shares the database.
//!
//! A session ends after [`IDLE_MS`] without use, [`LIFETIME_MS`] after sign-in whatever the
//! use, or at sign-out. "Now" is a parameter, so expiry is tested without waiting.

use rxledger_entities::{api_key, session};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use sha2::{Digest, Sha256};

use crate::apikeys::{Principal, TokenProblem, judge};
use crate::{Database, StoreError};

/// Every session id starts with this, so a leaked cookie is told from an API key at a glance.
pub const SESSION_PREFIX: &str = "rxs_";
/// A session unused this long is over: 12 hours, one working day.
pub const IDLE_MS: i64 = 12 * 3_600_000;
/// A session is over this long after sign-in, however busy: 7 days.
pub const LIFETIME_MS: i64 = 7 * 86_400_000;
/// Last use is written at most this often, so reads do not each cost a write.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Sessions one API key may hold at once; signing in again past this ends the oldest.
pub const MAX_PER_KEY: u64 = 32;

/// Why a presented session is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionProblem {
    /// No such session (never opened, signed out, or purged).
    Unknown,
    /// Idle too long or past its lifetime.
    Expired,
    /// The key it was opened with is revoked, expired or gone.
    Key(TokenProblem),
}

#[derive(Clone)]
pub struct Sessions {
    db: Database,
}

impl Sessions {
    pub fn new(db: Database) -> Self {
        Sessions { db }
    }

    /// Opens a session for the API key `key_id` and returns the cookie value, which is
    /// never stored. Sessions past their bounds (anyone's) are deleted first, and the key's
    /// oldest when it already holds [`MAX_PER_KEY`], so the table stays bounded.
    pub async fn open(&self, key_id: &str, now: i64) -> Result<String, StoreError> {
        self.purge(now).await?;
        let held = session::Entity::find()
            .filter(session::Column::KeyId.eq(key_id))
            .count(&self.db.conn)
            .await?;
        if held >= MAX_PER_KEY {
            let oldest = session::Entity::find()
                .filter(session::Column::KeyId.eq(key_id))
                .order_by_asc(session::Column::LastSeenMs)
                .one(&self.db.conn)
                .await?;
            if let Some(o) = oldest {
                session::Entity::delete_by_id(o.id_hash)
                    .exec(&self.db.conn)
                    .await?;
            }
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::Invalid(format!("no OS randomness: {e}")))?;
        let cookie = format!("{SESSION_PREFIX}{}", hex::encode(secret));
        let row = session::Model {
            id_hash: hash(&cookie),
            key_id: key_id.into(),
            created_ms: now,
            last_seen_ms: now,
        };
        session::Entity::insert(session::ActiveModel::from(row))
            .exec_without_returning(&self.db.conn)
            .await?;
        Ok(cookie)
    }

    /// The caller a session cookie stands for at `now`, or why it is refused. A live
    /// session's last use is moved forward (at most once a minute); a dead one is deleted.
    pub async fn resolve(
        &self,
        cookie: &str,
        now: i64,
    ) -> Result<Result<Principal, SessionProblem>, StoreError> {
        if !well_formed(cookie) {
            return Ok(Err(SessionProblem::Unknown));
        }
        let id = hash(cookie);
        let Some(s) = session::Entity::find_by_id(id.clone())
            .one(&self.db.conn)
            .await?
        else {
            return Ok(Err(SessionProblem::Unknown));
        };
        if expired(&s, now) {
            session::Entity::delete_by_id(id)
                .exec(&self.db.conn)
                .await?;
            return Ok(Err(SessionProblem::Expired));
        }
        let key = api_key::Entity::find_by_id(s.key_id.clone())
            .one(&self.db.conn)
            .await?;
        let judged = match key {
            Some(k) => judge(k, now),
            None => Err(TokenProblem::Unknown),
        };
        let principal = match judged {
            Ok(p) => p,
            Err(problem) => {
                session::Entity::delete_by_id(id)
                    .exec(&self.db.conn)
                    .await?;
                return Ok(Err(SessionProblem::Key(problem)));
            }
        };
        if now - s.last_seen_ms >= TOUCH_EVERY_MS {
            session::Entity::update_many()
                .col_expr(session::Column::LastSeenMs, Expr::value(now))
                .filter(session::Column::IdHash.eq(id))
                .exec(&self.db.conn)
                .await?;
        }
        Ok(Ok(principal))
    }

    /// Ends the session named by `cookie` (sign-out). Ending one that does not exist is not
    /// an error: the browser's cookie is cleared either way.
    pub async fn close(&self, cookie: &str) -> Result<(), StoreError> {
        if well_formed(cookie) {
            session::Entity::delete_by_id(hash(cookie))
                .exec(&self.db.conn)
                .await?;
        }
        Ok(())
    }

    /// Ends every session of the API key `key_id` (the key was revoked); returns how many.
    pub async fn close_all(&self, key_id: &str) -> Result<u64, StoreError> {
        Ok(session::Entity::delete_many()
            .filter(session::Column::KeyId.eq(key_id))
            .exec(&self.db.conn)
            .await?
            .rows_affected)
    }

    /// Sessions open at `now` (for the operator's view and tests).
    pub async fn count(&self, now: i64) -> Result<u64, StoreError> {
        Ok(session::Entity::find()
            .filter(live(now))
            .count(&self.db.conn)
            .await?)
    }

    /// Deletes every session past its bounds at `now`.
    async fn purge(&self, now: i64) -> Result<(), StoreError> {
        session::Entity::delete_many()
            .filter(live(now).not())
            .exec(&self.db.conn)
            .await?;
        Ok(())
    }
}

/// Sessions within both bounds at `now`.
fn live(now: i64) -> Condition {
    Condition::all()
        .add(session::Column::LastSeenMs.gt(now - IDLE_MS))
        .add(session::Column::CreatedMs.gt(now - LIFETIME_MS))
}

fn expired(s: &session::Model, now: i64) -> bool {
    now - s.last_seen_ms >= IDLE_MS || now - s.created_ms >= LIFETIME_MS
}

/// `rxs_` and 64 lowercase hex digits: anything else is refused without a database read.
fn well_formed(cookie: &str) -> bool {
    cookie.strip_prefix(SESSION_PREFIX).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn hash(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_prefixed_hex_ids_are_looked_up() {
        assert!(well_formed(&format!("rxs_{}", "ab".repeat(32))));
        assert!(!well_formed(&format!("rxs_{}", "AB".repeat(32))));
        assert!(!well_formed(&format!("rxl_{}", "ab".repeat(32))));
        assert!(!well_formed(&format!("rxs_{}", "ab".repeat(31))));
        assert!(!well_formed("rxs_"));
    }

    #[test]
    fn idle_and_lifetime_bounds() {
        let s = |created, seen| session::Model {
            id_hash: String::new(),
            key_id: String::new(),
            created_ms: created,
            last_seen_ms: seen,
        };
        assert!(!expired(&s(0, 0), IDLE_MS - 1));
        assert!(expired(&s(0, 0), IDLE_MS));
        assert!(!expired(&s(0, LIFETIME_MS - 10), LIFETIME_MS - 1));
        assert!(expired(&s(0, LIFETIME_MS - 10), LIFETIME_MS));
    }
}
