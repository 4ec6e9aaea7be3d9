//! A trading partner's signed EPCIS document (issue 22, partner signatures): the exact bytes of
//! a `POST /epcis/capture` body that came with an `RxLedger-Signature`. The log commits to
//! their SHA-256 and the signature (each entry's `attestation`), not to the bytes; this row is
//! where anyone allowed to see the events fetches the bytes to check both
//! (`GET /epcis/capture/documents/{sha256}`). Kept beside the log, never part of it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "partner_documents")]
pub struct Model {
    /// SHA-256 of `data`, 64 lowercase hex digits (the attestation's `sha256`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    /// The organization whose API key sent it, and whose device signed it: only it, regulators
    /// and admins see the row. The same bytes signed for two organizations are two rows.
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: String,
    /// The enrolled device whose key signed the bytes first.
    pub keyid: String,
    /// That signature, 128 lowercase hex digits.
    pub sig: String,
    /// `application/ld+json` or `application/xml`: how the bytes are read.
    pub media_type: String,
    /// The exact request body.
    pub data: Vec<u8>,
    /// When the node first received it, Unix milliseconds.
    pub received_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
