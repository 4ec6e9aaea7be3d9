//! Named EPCIS queries (the REST binding's `/queries`): an organisation's saved simple event
//! queries, run on demand or followed by a WebSocket subscription.
//!
//! A named query belongs to the organisation whose key created it and is found only through
//! that organisation: every read and delete is keyed by (organisation, name), so another
//! organisation's query cannot be named, let alone shown. The store bounds what it keeps
//! ([`MAX_NAME`], [`MAX_QUERY_TEXT`], [`MAX_PER_ORG`]); what the query means is the binding's
//! business, which parses the text each time it runs it.

use rxledger_entities::epcis_query;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::{Database, StoreError};

/// A stored named query.
pub use rxledger_entities::epcis_query::Model as NamedQuery;

/// Longest query name, in characters.
pub const MAX_NAME: usize = 64;
/// Largest query object, as JSON text.
pub const MAX_QUERY_TEXT: usize = 16 * 1024;
/// Named queries one organisation may keep.
pub const MAX_PER_ORG: u64 = 100;

/// A query name: 1 to [`MAX_NAME`] characters of `A-Z a-z 0-9 . _ ~ -` (URI unreserved
/// characters), so it is its own path segment, never encoded, never ambiguous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryName(String);

impl QueryName {
    pub fn parse(name: &str) -> Result<QueryName, StoreError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        if ok {
            Ok(QueryName(name.to_string()))
        } else {
            Err(StoreError::Invalid(format!(
                "a query name is 1 to {MAX_NAME} characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What [`NamedQueries::create`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Creation {
    Created(epcis_query::Model),
    /// The organisation has a query of that name already; nothing was changed.
    Exists,
    /// The organisation keeps [`MAX_PER_ORG`] queries already.
    Full,
}

#[derive(Clone)]
pub struct NamedQueries {
    db: Database,
}

impl NamedQueries {
    pub fn new(db: Database) -> Self {
        NamedQueries { db }
    }

    /// Saves `query` (JSON text, at most [`MAX_QUERY_TEXT`] bytes) as `org`'s query `name`.
    /// The count and the insert share one transaction; two creations racing on PostgreSQL
    /// may each see room for one more, so the bound holds to within the creations in flight.
    pub async fn create(
        &self,
        org: &str,
        name: &QueryName,
        query: &str,
        now_ms: i64,
    ) -> Result<Creation, StoreError> {
        if query.len() > MAX_QUERY_TEXT {
            return Err(StoreError::Invalid(format!(
                "a query is at most {MAX_QUERY_TEXT} bytes of JSON"
            )));
        }
        let txn = self.db.conn.begin().await?;
        let by_org = epcis_query::Column::OrgId.eq(org);
        if epcis_query::Entity::find_by_id((org.to_string(), name.as_str().to_string()))
            .one(&txn)
            .await?
            .is_some()
        {
            return Ok(Creation::Exists);
        }
        if epcis_query::Entity::find()
            .filter(by_org)
            .count(&txn)
            .await?
            >= MAX_PER_ORG
        {
            return Ok(Creation::Full);
        }
        let row = epcis_query::Model {
            org_id: org.to_string(),
            name: name.as_str().to_string(),
            query: query.to_string(),
            created_ms: now_ms,
        };
        let inserted = epcis_query::Entity::insert(epcis_query::ActiveModel::from(row.clone()))
            .exec_without_returning(&txn)
            .await
            .map_err(StoreError::from);
        match inserted {
            Ok(_) => {
                txn.commit().await?;
                Ok(Creation::Created(row))
            }
            // Another creation of the same name committed first.
            Err(e) if e.is_conflict() => Ok(Creation::Exists),
            Err(e) => Err(e),
        }
    }

    /// `org`'s query `name`, if it has one.
    pub async fn get(
        &self,
        org: &str,
        name: &str,
    ) -> Result<Option<epcis_query::Model>, StoreError> {
        Ok(
            epcis_query::Entity::find_by_id((org.to_string(), name.to_string()))
                .one(&self.db.conn)
                .await?,
        )
    }

    /// `org`'s queries by name, the first `limit` after the name `after`.
    pub async fn list(
        &self,
        org: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<epcis_query::Model>, StoreError> {
        let mut q = epcis_query::Entity::find().filter(epcis_query::Column::OrgId.eq(org));
        if let Some(a) = after {
            q = q.filter(epcis_query::Column::Name.gt(a));
        }
        Ok(q.order_by_asc(epcis_query::Column::Name)
            .limit(limit)
            .all(&self.db.conn)
            .await?)
    }

    /// Deletes `org`'s query `name`; whether there was one.
    pub async fn delete(&self, org: &str, name: &str) -> Result<bool, StoreError> {
        let r = epcis_query::Entity::delete_by_id((org.to_string(), name.to_string()))
            .exec(&self.db.conn)
            .await?;
        Ok(r.rows_affected > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_path_segments() {
        for good in ["myQuery", "ATTP_shipments-2.v1~x", &"q".repeat(MAX_NAME)] {
            assert_eq!(QueryName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "ä",
            "a%20",
            "a?b",
            &"q".repeat(MAX_NAME + 1),
        ] {
            assert!(QueryName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
