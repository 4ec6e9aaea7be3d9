//! Logged events as EPCIS documents are made of: each event's exact JSON, read back from the
//! entry that holds it, with who signed that entry and when the log recorded it.
//!
//! The EPCIS REST query and the exports answer with the events as they were logged, not as
//! the index summarises them: the index (`events`, `epcs`) says where to look, the entry's
//! bytes are what is shown.

use std::collections::HashMap;

use rxledger_core::envelope;
use rxledger_entities::{entry, event};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;

use crate::{Database, StoreError};

/// One logged event, as an EPCIS document shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedJson {
    pub entry: i64,
    pub position: i32,
    /// The event's JSON exactly as the entry holds it.
    pub json: Value,
    /// The entry's signer: a device id, or `org:<id>` for the API acting for an organization
    /// (signed by the log key).
    pub signer: String,
    /// When the sequencer received the entry (the EPCIS record time), Unix milliseconds.
    pub received_ms: i64,
    /// CBV 2.0 event hash.
    pub hash: [u8; 32],
    /// The trading partner's signature over the document the event was captured in, when
    /// the partner sent one (the entry's `attestation`; its signer is then `org:<id>`).
    pub attestation: Option<envelope::Attestation>,
}

/// Rows read per query: well under every backend's bound-parameter limit.
const CHUNK: usize = 500;

/// The events at these (entry, position) keys with their hashes, in the order given. A key
/// whose entry does not hold such an event is an error: the index points at the log.
pub async fn read(
    db: &Database,
    keys: &[((i64, i32), [u8; 32])],
) -> Result<Vec<LoggedJson>, StoreError> {
    let mut idx: Vec<i64> = keys.iter().map(|((e, _), _)| *e).collect();
    idx.sort_unstable();
    idx.dedup();
    type Read = (envelope::Body, Option<envelope::Attestation>, String, i64);
    let mut entries: HashMap<i64, Read> = HashMap::new();
    for chunk in idx.chunks(CHUNK) {
        for e in entry::Entity::find()
            .filter(entry::Column::Idx.is_in(chunk.to_vec()))
            .all(&db.conn)
            .await?
        {
            let (body, attestation) = envelope::read_attested(&e.data).map_err(|err| {
                StoreError::Corrupt(format!(
                    "entry {} does not parse as an envelope: {err}",
                    e.idx
                ))
            })?;
            entries.insert(e.idx, (body, attestation, e.signer, e.received_ms));
        }
    }
    keys.iter()
        .map(|&((entry, position), hash)| {
            let (body, attestation, signer, received_ms) =
                entries.get(&entry).ok_or_else(|| {
                    StoreError::Corrupt(format!("entry {entry} is indexed, not logged"))
                })?;
            let json = usize::try_from(position)
                .ok()
                .and_then(|p| body.events.get(p))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("entry {entry} has no event {position}"))
                })?
                .clone();
            Ok(LoggedJson {
                entry,
                position,
                json,
                signer: signer.clone(),
                received_ms: *received_ms,
                hash,
                attestation: attestation.clone(),
            })
        })
        .collect()
}

/// Which of these event hashes are in the log, and where: (entry, position).
pub async fn find(
    db: &Database,
    hashes: &[[u8; 32]],
) -> Result<HashMap<[u8; 32], (i64, i32)>, StoreError> {
    let mut out = HashMap::new();
    for chunk in hashes.chunks(CHUNK) {
        for r in event::Entity::find()
            .filter(event::Column::Hash.is_in(chunk.iter().map(|h| h.to_vec())))
            .all(&db.conn)
            .await?
        {
            if let Ok(h) = <[u8; 32]>::try_from(r.hash.as_slice()) {
                out.insert(h, (r.entry_idx, r.position));
            }
        }
    }
    Ok(out)
}
