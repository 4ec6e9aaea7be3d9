//! Partner-signed EPCIS documents: the exact bytes of a capture that came with an
//! `RxLedger-Signature`, kept beside the log (table `partner_documents`).
//!
//! The log commits to each document's SHA-256 and signature (the `attestation` of every entry
//! the capture appended), not to its bytes; this store is where a verifier gets the bytes.
//! A document is kept once per organization: sending the same bytes again stores nothing new.
//! Rows are found only by (digest, organization) or, for callers who may see every
//! organization's documents, by digest: the store never lists them.

use rxledger_entities::partner_document;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::{Database, StoreError};

/// A stored document.
pub use rxledger_entities::partner_document::Model as PartnerDocument;

/// A document to keep.
#[derive(Clone, Copy, Debug)]
pub struct NewDocument<'a> {
    /// The organization whose key sent it and whose device signed it.
    pub org: &'a str,
    pub keyid: &'a str,
    /// The signature, 128 lowercase hex digits.
    pub sig: &'a str,
    /// SHA-256 of `data`, 64 lowercase hex digits.
    pub sha256: &'a str,
    pub media_type: &'a str,
    pub data: &'a [u8],
}

#[derive(Clone)]
pub struct PartnerDocuments {
    db: Database,
}

impl PartnerDocuments {
    pub fn new(db: Database) -> Self {
        PartnerDocuments { db }
    }

    /// Keeps `doc` unless its organization has these bytes already (the first signature
    /// stays). `true` when it was stored now.
    pub async fn keep(&self, doc: NewDocument<'_>, now_ms: i64) -> Result<bool, StoreError> {
        if doc.sha256.len() != 64 || doc.sig.len() != 128 {
            return Err(StoreError::Invalid(
                "a partner document is keyed by a 64-digit SHA-256 and carries a 128-digit signature".into(),
            ));
        }
        let row = partner_document::Model {
            sha256: doc.sha256.to_string(),
            org_id: doc.org.to_string(),
            keyid: doc.keyid.to_string(),
            sig: doc.sig.to_string(),
            media_type: doc.media_type.to_string(),
            data: doc.data.to_vec(),
            received_ms: now_ms,
        };
        use partner_document::Column as C;
        let stored = partner_document::Entity::insert(partner_document::ActiveModel::from(row))
            .on_conflict(
                OnConflict::columns([C::Sha256, C::OrgId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db.conn)
            .await?;
        Ok(stored > 0)
    }

    /// The document with this digest that `org` sent, or (`org` `None`) that any organization
    /// sent.
    pub async fn get(
        &self,
        sha256: &str,
        org: Option<&str>,
    ) -> Result<Option<PartnerDocument>, StoreError> {
        use partner_document::Column as C;
        let mut q = partner_document::Entity::find().filter(C::Sha256.eq(sha256));
        if let Some(org) = org {
            q = q.filter(C::OrgId.eq(org));
        }
        Ok(q.one(&self.db.conn).await?)
    }
}
