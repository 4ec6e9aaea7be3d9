//! API keys: random bearer tokens, stored only as their SHA-256, bound to an organization and
//! a role, revocable and optionally expiring.

use rxledger_entities::api_key;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use sha2::{Digest, Sha256};

use crate::registry::ROLES;
use crate::sessions::Sessions;
use crate::{Database, StoreError, now_ms};

/// Every token starts with this, so leaked tokens are easy to recognise in scans.
pub const TOKEN_PREFIX: &str = "rxl_";

/// The caller a valid token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub org_id: String,
    pub role: String,
}

/// Why a presented token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    Unknown,
    Revoked,
    Expired,
}

#[derive(Clone)]
pub struct ApiKeys {
    db: Database,
}

impl ApiKeys {
    pub fn new(db: Database) -> Self {
        ApiKeys { db }
    }

    /// Issues a key and returns the token, which is shown once and never stored.
    pub async fn issue(
        &self,
        org_id: &str,
        role: &str,
        label: &str,
        expires_ms: Option<i64>,
    ) -> Result<(String, api_key::Model), StoreError> {
        if !ROLES.contains(&role) {
            return Err(StoreError::Invalid(format!("unknown role {role:?}")));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::Invalid(format!("no OS randomness: {e}")))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)
            .map_err(|e| StoreError::Invalid(format!("no OS randomness: {e}")))?;
        let row = api_key::Model {
            id: hex::encode(id),
            token_hash: hash(&token),
            org_id: org_id.into(),
            role: role.into(),
            label: label.into(),
            created_ms: now_ms(),
            expires_ms,
            revoked_ms: None,
        };
        api_key::Entity::insert(api_key::ActiveModel::from(row.clone()))
            .exec_without_returning(&self.db.conn)
            .await?;
        Ok((token, row))
    }

    /// Who a token belongs to, or why it is refused.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Result<Principal, TokenProblem>, StoreError> {
        let Some(row) = api_key::Entity::find()
            .filter(api_key::Column::TokenHash.eq(hash(token)))
            .one(&self.db.conn)
            .await?
        else {
            return Ok(Err(TokenProblem::Unknown));
        };
        Ok(judge(row, now_ms()))
    }

    /// The browser sessions signed in with these keys ([`Sessions`]).
    pub fn sessions(&self) -> Sessions {
        Sessions::new(self.db.clone())
    }

    /// Revokes a key and ends every browser session opened with it.
    pub async fn revoke(&self, id: &str) -> Result<(), StoreError> {
        let res = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedMs, Expr::value(now_ms()))
            .filter(api_key::Column::Id.eq(id))
            .exec(&self.db.conn)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("API key {id}")));
        }
        // Sessions check their key on every use anyway; this only frees the rows at once.
        self.sessions().close_all(id).await?;
        Ok(())
    }

    pub async fn list(&self, org_id: Option<&str>) -> Result<Vec<api_key::Model>, StoreError> {
        let mut q = api_key::Entity::find().order_by_asc(api_key::Column::CreatedMs);
        if let Some(o) = org_id {
            q = q.filter(api_key::Column::OrgId.eq(o));
        }
        Ok(q.all(&self.db.conn).await?)
    }

    /// Whether any ADMIN key exists (the first start prints one if not).
    pub async fn has_admin(&self) -> Result<bool, StoreError> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::Role.eq("ADMIN"))
            .one(&self.db.conn)
            .await?
            .is_some())
    }
}

/// Whether a key row is usable at `now`: one rule for Bearer tokens and for the sessions
/// opened with them.
pub(crate) fn judge(row: api_key::Model, now: i64) -> Result<Principal, TokenProblem> {
    if row.revoked_ms.is_some() {
        return Err(TokenProblem::Revoked);
    }
    if row.expires_ms.is_some_and(|e| e <= now) {
        return Err(TokenProblem::Expired);
    }
    Ok(Principal {
        key_id: row.id,
        org_id: row.org_id,
        role: row.role,
    })
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
