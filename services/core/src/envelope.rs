//! The signed envelope a scanner publishes, and the receipt it gets back.
//!
//! The MQTT payload is a small JSON object, `{"payload": "<body JSON as a string>", "sig":
//! "<hex>"}`. The body travels as a *string* so that the signed bytes are exactly the UTF-8
//! bytes of that string after JSON unescaping: no canonical JSON is needed, in any language.
//! The signature is ECDSA secp256k1 over SHA-256 of those bytes, as 64 bytes r‖s with low S,
//! in lowercase hex. docs/PROTOCOL.md is the normative description; the test vectors there
//! are checked by this module's tests.
//!
//! [`open`] parses without verifying; [`Opened::verify`] checks the signature with the
//! enrolled key. Parsing is strict: unknown top-level fields, a wrong version or a body that is
//! not an object are errors, so two implementations cannot read one envelope differently.
//!
//! The log's own entries for an organization (`deviceId` `org:<id>`, signed by the log key)
//! may carry one more body field, `attestation`: a trading partner's signature over the EPCIS
//! document the entry's events came from ([`Attestation`], [`seal_attested`],
//! [`read_attested`]). A device may not send it: [`open`] refuses an envelope that does.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use sha2::{Digest, Sha256};

use crate::checkpoint::{self, CheckpointError};
pub use crate::epcis::attestation::Attestation;
use crate::keys::{LogVerifier, PublicKey, SigningKey};
use crate::merkle::{self, Hash};

/// The only protocol version this code speaks.
pub const VERSION: u64 = 1;
/// Most events one envelope may carry.
pub const MAX_EVENTS: usize = 100;
/// Longest device id: ids appear in MQTT topics.
pub const MAX_DEVICE_ID: usize = 64;

/// The default topic root. A deployment may choose another (`--mqtt-topic-root`), for
/// example to share one broker between a test and a production log.
pub const DEFAULT_TOPIC_ROOT: &str = "rxledger/v1";

/// The topic a device publishes envelopes on: `{root}/devices/{deviceId}/events`.
pub fn events_topic(root: &str, device_id: &str) -> String {
    format!("{root}/devices/{device_id}/events")
}

/// The topic the server publishes receipts on, for one device: `{root}/devices/{deviceId}/acks`.
pub fn acks_topic(root: &str, device_id: &str) -> String {
    format!("{root}/devices/{device_id}/acks")
}

/// The shared subscription every server node uses: the broker gives each message to one node.
pub fn shared_events_filter(root: &str) -> String {
    format!("$share/rxledger/{root}/devices/+/events")
}

/// The device id in an events topic, if the topic has the right shape.
pub fn device_of_topic<'a>(root: &str, topic: &'a str) -> Option<&'a str> {
    let id = topic
        .strip_prefix(root)?
        .strip_prefix("/devices/")?
        .strip_suffix("/events")?;
    valid_device_id(id).then_some(id)
}

/// Device ids are 1 to 64 characters of `A-Z a-z 0-9 - _ .`, so they are safe in topics.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The signed body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// Protocol version, always 1.
    pub v: u64,
    #[serde(rename = "deviceId")]
    pub device_id: String,
    /// Strictly increasing per device; gaps are allowed.
    pub seq: u64,
    /// When the device signed the envelope, RFC 3339 UTC.
    #[serde(rename = "sentAt")]
    pub sent_at: String,
    /// EPCIS 2.0 JSON event objects, 1 to [`MAX_EVENTS`].
    pub events: Vec<Value>,
}

/// The body as the wire spells it: [`Body`]'s fields in [`Body`]'s order, then `attestation`
/// when there is one (after `events`, so a body without it is byte for byte what [`Body`]
/// serialises to). The attestation travels beside [`Body`] rather than in it so that every
/// device envelope, which may never carry one, is built and read as before.
#[derive(Serialize)]
struct BodyOut<'a> {
    v: u64,
    #[serde(rename = "deviceId")]
    device_id: &'a str,
    seq: u64,
    #[serde(rename = "sentAt")]
    sent_at: &'a str,
    events: &'a [Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    attestation: Option<&'a Attestation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyIn {
    v: u64,
    #[serde(rename = "deviceId")]
    device_id: String,
    seq: u64,
    #[serde(rename = "sentAt")]
    sent_at: String,
    events: Vec<Value>,
    /// Absent, or an attestation object (`null` is refused: one spelling for "none").
    #[serde(default, deserialize_with = "present")]
    attestation: Option<Attestation>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Attestation>, D::Error> {
    Attestation::deserialize(d).map(Some)
}

impl BodyIn {
    fn split(self) -> (Body, Option<Attestation>) {
        (
            Body {
                v: self.v,
                device_id: self.device_id,
                seq: self.seq,
                sent_at: self.sent_at,
                events: self.events,
            },
            self.attestation,
        )
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    payload: String,
    sig: String,
}

/// Why an envelope could not be read or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error(
        "the message is not a JSON object with exactly the fields \"payload\" (string) and \"sig\" (string): {0}"
    )]
    Wire(String),
    #[error("the payload is not a valid body: {0}")]
    Body(String),
    #[error("unsupported protocol version {0}; this server speaks version 1")]
    Version(u64),
    #[error("device id {0:?} is not 1 to 64 characters of A-Z a-z 0-9 - _ .")]
    DeviceId(String),
    #[error("the body names device {body:?} but was published on the topic of device {topic:?}")]
    DeviceMismatch { topic: String, body: String },
    #[error("an envelope carries 1 to {MAX_EVENTS} events, this one has {0}")]
    EventCount(usize),
    #[error("\"sig\" must be 128 lowercase hex characters (64 bytes r‖s)")]
    SignatureEncoding,
    #[error("the signature does not verify with the device's enrolled key")]
    BadSignature,
    #[error(
        "\"attestation\" is carried only by the log's own entries for an organization (deviceId org:<id>); {0} may not send one"
    )]
    Attestation(String),
}

/// A parsed envelope whose signature has not been checked yet.
#[derive(Clone, Debug)]
pub struct Opened {
    pub body: Body,
    /// The exact signed bytes.
    pub signed: String,
    pub sig: [u8; 64],
}

/// Signs `body` with a device key and returns the MQTT payload bytes.
pub fn seal(key: &SigningKey, body: &Body) -> Vec<u8> {
    // Serialising a struct of strings, integers and JSON values cannot fail.
    let payload = serde_json::to_string(body).unwrap_or_default();
    seal_payload(key, payload)
}

/// Signs `body` and `attestation` with the log key: the entry of a partner-signed capture.
/// `body.device_id` must be `org:<id>` (what [`read_attested`] accepts back).
pub fn seal_attested(key: &SigningKey, body: &Body, attestation: &Attestation) -> Vec<u8> {
    let out = BodyOut {
        v: body.v,
        device_id: &body.device_id,
        seq: body.seq,
        sent_at: &body.sent_at,
        events: &body.events,
        attestation: Some(attestation),
    };
    // Serialising strings, integers and JSON values cannot fail.
    seal_payload(key, serde_json::to_string(&out).unwrap_or_default())
}

/// Signs already-serialised body text (for test vectors and other languages' parity).
pub fn seal_payload(key: &SigningKey, payload: String) -> Vec<u8> {
    let sig = hex::encode(key.sign(payload.as_bytes()));
    serde_json::to_vec(&Wire { payload, sig }).unwrap_or_default()
}

/// Parses an MQTT payload. `topic_device` is the device id from the topic it arrived on.
pub fn open(bytes: &[u8], topic_device: &str) -> Result<Opened, EnvelopeError> {
    let wire: Wire =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Wire(e.to_string()))?;
    let sig = decode_sig(&wire.sig)?;
    let body: BodyIn =
        serde_json::from_str(&wire.payload).map_err(|e| EnvelopeError::Body(e.to_string()))?;
    let (body, attestation) = body.split();
    if attestation.is_some() {
        return Err(EnvelopeError::Attestation(format!(
            "device {:?}",
            body.device_id
        )));
    }
    if body.v != VERSION {
        return Err(EnvelopeError::Version(body.v));
    }
    if !valid_device_id(&body.device_id) {
        return Err(EnvelopeError::DeviceId(body.device_id));
    }
    if body.device_id != topic_device {
        return Err(EnvelopeError::DeviceMismatch {
            topic: topic_device.into(),
            body: body.device_id,
        });
    }
    if body.events.is_empty() || body.events.len() > MAX_EVENTS {
        return Err(EnvelopeError::EventCount(body.events.len()));
    }
    Ok(Opened {
        body,
        signed: wire.payload,
        sig,
    })
}

/// Reads the body of a logged entry without topic or signer checks (the entry was checked
/// when it was appended; API state changes are signed by the log itself).
/// An entry's attestation, if any, is checked for place ([`read_attested`]) and left out.
pub fn read_body(bytes: &[u8]) -> Result<Body, EnvelopeError> {
    read_attested(bytes).map(|(body, _)| body)
}

/// Reads the body of a logged entry and its attestation, if it carries one. Only the log's
/// own entries for an organization (`deviceId` `org:<id>`) may: an attestation anywhere else
/// is an error, whoever wrote the bytes.
pub fn read_attested(bytes: &[u8]) -> Result<(Body, Option<Attestation>), EnvelopeError> {
    let wire: Wire =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Wire(e.to_string()))?;
    let body: BodyIn =
        serde_json::from_str(&wire.payload).map_err(|e| EnvelopeError::Body(e.to_string()))?;
    let (body, attestation) = body.split();
    if attestation.is_some() && !body.device_id.starts_with("org:") {
        return Err(EnvelopeError::Attestation(format!(
            "device {:?}",
            body.device_id
        )));
    }
    Ok((body, attestation))
}

impl Opened {
    /// Checks the signature over the exact payload bytes.
    pub fn verify(&self, key: &PublicKey) -> Result<(), EnvelopeError> {
        key.verify(self.signed.as_bytes(), &self.sig)
            .map_err(|_| EnvelopeError::BadSignature)
    }
}

fn decode_sig(s: &str) -> Result<[u8; 64], EnvelopeError> {
    if s.len() != 128 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(EnvelopeError::SignatureEncoding);
    }
    let mut out = [0u8; 64];
    hex::decode_to_slice(s, &mut out).map_err(|_| EnvelopeError::SignatureEncoding)?;
    Ok(out)
}

/// What the server says back on `…/acks` for every envelope it reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub v: u64,
    pub status: ReceiptStatus,
    pub device_id: String,
    /// The envelope's sequence number, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// SHA-256 of the MQTT payload, hex: lets a device match a receipt to what it sent even
    /// when the body could not be parsed.
    pub payload_hash: String,
    /// Rejection code, for `REJECTED`: a [`crate::codes::RejectCode`] as the server spells it.
    /// A string, not the enum, because the set is open: a device must read codes newer than
    /// itself and treat them as final (docs/PROTOCOL.md §15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the envelope is in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_index: Option<u64>,
    /// RFC 9162 leaf hash of the payload bytes, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    /// CBV 2.0 event hash IDs of the events, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<String>,
    /// A signed checkpoint whose tree contains the entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// RFC 9162 audit path of `entry_index` in the checkpoint's tree, hex, from the leaf up
    /// (empty when the tree has one entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion_proof: Vec<String>,
    /// The log's signature over this receipt; every receipt the server publishes has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<ReceiptSignature>,
}

/// What became of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReceiptStatus {
    /// Appended now.
    Accepted,
    /// These exact bytes were already in the log; this receipt refers to that entry.
    Duplicate,
    /// Not appended; the receipt's `code` says why.
    Rejected,
}

impl ReceiptStatus {
    /// The status as it appears on the wire (and in the signed bytes of a receipt).
    pub fn as_str(&self) -> &'static str {
        match self {
            ReceiptStatus::Accepted => "ACCEPTED",
            ReceiptStatus::Duplicate => "DUPLICATE",
            ReceiptStatus::Rejected => "REJECTED",
        }
    }
}

impl std::fmt::Display for ReceiptStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status == "ACCEPTED"`, for readers that hold the wire spelling.
impl PartialEq<&str> for ReceiptStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The log's signature over a receipt: one ECDSA signature per batch of receipts, over the
/// RFC 9162 root of their hashes, and this receipt's audit path in that small tree. Signing a
/// batch costs one signature instead of one per receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptSignature {
    /// Receipts in the signed batch.
    pub batch_size: u64,
    /// This receipt's 0-based position in the batch.
    pub batch_index: u64,
    /// Hex root of the batch tree.
    pub batch_root: String,
    /// Hex audit path of this receipt in the batch tree, leaf up.
    pub batch_path: Vec<String>,
    /// Hex `r || s` (128 digits) by the log key over [`receipt_batch_message`].
    pub sig: String,
}

/// SHA-256 of `bytes`, hex.
pub fn payload_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Domain separation of a receipt's signed bytes.
pub const RECEIPT_DOMAIN: &[u8] = b"rxledger/receipt/v1\0";
/// Domain separation of a receipt batch's signed message.
pub const RECEIPT_BATCH_DOMAIN: &[u8] = b"rxledger/receipt-batch/v1\0";

/// The bytes of a receipt that its signature covers: every member except `v` (fixed by the
/// domain string) and `signature`, in a fixed order, length-prefixed so that no two receipts
/// share an encoding. `str` is a 4-byte big-endian length and the UTF-8 bytes; an optional
/// member is `0x00` when absent or `0x01` then its value; an integer is 8 bytes big-endian; a
/// list is a 4-byte big-endian count then its strings. docs/PROTOCOL.md §11.1 spells it out.
pub fn receipt_tbs(r: &Receipt) -> Vec<u8> {
    fn str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => {
                out.push(1);
                str(out, s);
            }
            None => out.push(0),
        }
    }
    fn opt_u64(out: &mut Vec<u8>, n: Option<u64>) {
        match n {
            Some(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_be_bytes());
            }
            None => out.push(0),
        }
    }
    fn list(out: &mut Vec<u8>, xs: &[String]) {
        out.extend_from_slice(&(xs.len() as u32).to_be_bytes());
        for x in xs {
            str(out, x);
        }
    }
    let mut out = Vec::with_capacity(512 + r.checkpoint.as_ref().map_or(0, String::len));
    out.extend_from_slice(RECEIPT_DOMAIN);
    str(&mut out, r.status.as_str());
    str(&mut out, &r.device_id);
    opt_u64(&mut out, r.seq);
    str(&mut out, &r.payload_hash);
    opt_str(&mut out, r.code.as_deref());
    opt_str(&mut out, r.message.as_deref());
    opt_u64(&mut out, r.entry_index);
    opt_str(&mut out, r.leaf_hash.as_deref());
    list(&mut out, &r.event_ids);
    opt_str(&mut out, r.checkpoint.as_deref());
    list(&mut out, &r.inclusion_proof);
    out
}

/// The message the log signs for a batch of receipts:
/// `"rxledger/receipt-batch/v1" || 0x00 || size (8 bytes, big-endian) || root (32 bytes)`.
/// The NUL byte keeps it apart from checkpoint notes, which never contain one.
pub fn receipt_batch_message(size: u64, root: &Hash) -> Vec<u8> {
    let mut m = RECEIPT_BATCH_DOMAIN.to_vec();
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

/// Signs a batch of receipts with one signature: each gets its [`ReceiptSignature`].
pub fn sign_receipts(receipts: &mut [Receipt], key: &SigningKey) {
    if receipts.is_empty() {
        return;
    }
    let leaves: Vec<Hash> = receipts
        .iter()
        .map(|r| merkle::leaf_hash(&receipt_tbs(r)))
        .collect();
    let levels = batch_levels(leaves);
    // `batch_levels` ends with the one-node level, the root.
    let root = levels.last().map_or([0; 32], |l| l[0]);
    let size = receipts.len() as u64;
    let sig = hex::encode(key.sign(&receipt_batch_message(size, &root)));
    let root_hex = hex::encode(root);
    for (i, r) in receipts.iter_mut().enumerate() {
        r.signature = Some(ReceiptSignature {
            batch_size: size,
            batch_index: i as u64,
            batch_root: root_hex.clone(),
            batch_path: batch_path(&levels, i).iter().map(hex::encode).collect(),
            sig: sig.clone(),
        });
    }
}

/// The levels of the RFC 9162 tree over `leaves`, bottom up: pairs are hashed and a lone last
/// node is carried up unchanged, which gives the same tree as RFC 9162's split at the largest
/// power of two.
fn batch_levels(leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut levels = vec![leaves];
    while let Some(prev) = levels.last().filter(|l| l.len() > 1) {
        let next = prev
            .chunks(2)
            .map(|c| match c {
                [l, r] => merkle::node_hash(l, r),
                [one] => *one,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
        levels.push(next);
    }
    levels
}

fn batch_path(levels: &[Vec<Hash>], mut i: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    for level in &levels[..levels.len().saturating_sub(1)] {
        if let Some(sibling) = level.get(i ^ 1) {
            path.push(*sibling);
        }
        i /= 2;
    }
    path
}

/// Why a receipt cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("the receipt is not signed")]
    Unsigned,
    #[error("the receipt's signature is malformed: {0}")]
    MalformedSignature(&'static str),
    #[error("the receipt is not in the signed batch")]
    NotInBatch,
    #[error("the receipt batch's signature does not verify with the log key")]
    BadSignature,
    #[error("the receipt names another envelope (payloadHash)")]
    PayloadMismatch,
    #[error("the receipt's leafHash is not the envelope's leaf hash")]
    LeafMismatch,
    #[error("the receipt has no {0}")]
    Missing(&'static str),
    #[error("the receipt's checkpoint: {0}")]
    Checkpoint(CheckpointError),
    #[error("the entry is not in the checkpoint's tree: {0}")]
    NotIncluded(String),
}

fn hash_hex(s: &str, what: &'static str) -> Result<Hash, ReceiptError> {
    let b = hex::decode(s).map_err(|_| ReceiptError::MalformedSignature(what))?;
    merkle::hash_from_slice(&b).map_err(|_| ReceiptError::MalformedSignature(what))
}

/// Checks that the log signed this receipt (§11.1 of docs/PROTOCOL.md).
pub fn verify_receipt_signature(r: &Receipt, log: &PublicKey) -> Result<(), ReceiptError> {
    let s = r.signature.as_ref().ok_or(ReceiptError::Unsigned)?;
    let root = hash_hex(&s.batch_root, "batchRoot")?;
    let path = s
        .batch_path
        .iter()
        .map(|h| hash_hex(h, "batchPath"))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = merkle::leaf_hash(&receipt_tbs(r));
    merkle::verify_inclusion(&leaf, s.batch_index, s.batch_size, &path, &root)
        .map_err(|_| ReceiptError::NotInBatch)?;
    let sig = hex::decode(&s.sig).map_err(|_| ReceiptError::MalformedSignature("sig"))?;
    log.verify(&receipt_batch_message(s.batch_size, &root), &sig)
        .map_err(|_| ReceiptError::BadSignature)
}

/// Everything a device checks before it drops `payload` from its outbox (§13.3): the log's
/// signature over the receipt, that it names these bytes, and for `ACCEPTED` / `DUPLICATE` the
/// leaf hash, the checkpoint (signed by the pinned log) and the entry's inclusion proof in it.
pub fn check_receipt(r: &Receipt, payload: &[u8], log: &LogVerifier) -> Result<(), ReceiptError> {
    verify_receipt_signature(r, log.public_key())?;
    if r.payload_hash != payload_hash(payload) {
        return Err(ReceiptError::PayloadMismatch);
    }
    match r.status {
        ReceiptStatus::Rejected => return Ok(()),
        ReceiptStatus::Accepted | ReceiptStatus::Duplicate => {}
    }
    let leaf = merkle::leaf_hash(payload);
    if r.leaf_hash.as_deref() != Some(hex::encode(leaf).as_str()) {
        return Err(ReceiptError::LeafMismatch);
    }
    let note = r
        .checkpoint
        .as_deref()
        .ok_or(ReceiptError::Missing("checkpoint"))?;
    let cp = checkpoint::open_checkpoint(note, log).map_err(ReceiptError::Checkpoint)?;
    let index = r.entry_index.ok_or(ReceiptError::Missing("entryIndex"))?;
    let proof = r
        .inclusion_proof
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| merkle::hash_from_slice(&b).ok())
                .ok_or_else(|| ReceiptError::NotIncluded("a proof hash is not 32 hex bytes".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root)
        .map_err(|e| ReceiptError::NotIncluded(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(i: u64) -> Receipt {
        Receipt {
            v: VERSION,
            status: ReceiptStatus::Rejected,
            device_id: "d".into(),
            seq: Some(i),
            payload_hash: payload_hash(&i.to_be_bytes()),
            code: Some("BAD_SIGNATURE".into()),
            message: Some("no".into()),
            entry_index: None,
            leaf_hash: None,
            event_ids: vec![],
            checkpoint: None,
            inclusion_proof: vec![],
            signature: None,
        }
    }

    /// The batch tree is RFC 9162's: every path verifies with `merkle::verify_inclusion`.
    #[test]
    fn batch_signatures_verify_for_every_size_and_position() {
        let key = SigningKey::generate();
        for n in 1..=17u64 {
            let mut rs: Vec<Receipt> = (0..n).map(receipt).collect();
            sign_receipts(&mut rs, &key);
            for r in &rs {
                verify_receipt_signature(r, &key.public_key()).unwrap();
            }
        }
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let key = SigningKey::generate();
        let mut rs: Vec<Receipt> = (0..5).map(receipt).collect();
        sign_receipts(&mut rs, &key);
        let good = rs[3].clone();
        let edits: [fn(&mut Receipt); 6] = [
            |r| r.status = ReceiptStatus::Accepted,
            |r| r.seq = None,
            |r| r.code = Some("REPLAY".into()),
            |r| r.message = None,
            |r| r.payload_hash = payload_hash(b"other"),
            |r| r.signature.as_mut().unwrap().batch_index = 2,
        ];
        for edit in edits {
            let mut r = good.clone();
            edit(&mut r);
            assert!(verify_receipt_signature(&r, &key.public_key()).is_err());
        }
        let other = SigningKey::generate();
        assert_eq!(
            verify_receipt_signature(&good, &other.public_key()),
            Err(ReceiptError::BadSignature)
        );
        let mut unsigned = good;
        unsigned.signature = None;
        assert_eq!(
            verify_receipt_signature(&unsigned, &key.public_key()),
            Err(ReceiptError::Unsigned)
        );
    }

    fn org_body() -> Body {
        Body {
            v: VERSION,
            device_id: "org:acme".into(),
            seq: 0,
            sent_at: "2026-01-15T09:30:00.000Z".into(),
            events: vec![serde_json::json!({"type": "ObjectEvent"})],
        }
    }

    fn attestation() -> Attestation {
        Attestation {
            keyid: "line-1".into(),
            sig: "ab".repeat(64),
            sha256: "cd".repeat(32),
            media_type: "application/ld+json".into(),
        }
    }

    /// Without an attestation the bytes are exactly what `Body` serialises to, so no entry
    /// logged before attestations existed reads differently.
    #[test]
    fn the_attestation_follows_the_events_and_is_absent_otherwise() {
        let key = SigningKey::generate();
        let body = org_body();
        let plain = BodyOut {
            v: body.v,
            device_id: &body.device_id,
            seq: body.seq,
            sent_at: &body.sent_at,
            events: &body.events,
            attestation: None,
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            serde_json::to_string(&body).unwrap()
        );
        let a = attestation();
        let sealed = seal_attested(&key, &body, &a);
        let wire: Wire = serde_json::from_slice(&sealed).unwrap();
        let prefix = serde_json::to_string(&body).unwrap();
        assert!(
            wire.payload.starts_with(prefix.strip_suffix('}').unwrap()),
            "{}",
            wire.payload
        );
        assert!(wire.payload.ends_with(&format!(
            ",\"attestation\":{}}}",
            serde_json::to_string(&a).unwrap()
        )));
        assert_eq!(read_attested(&sealed).unwrap(), (body.clone(), Some(a)));
        assert_eq!(read_body(&sealed).unwrap(), body);
        assert_eq!(read_attested(&seal(&key, &body)).unwrap(), (body, None));
    }

    /// A device never carries one: `open` refuses it (MALFORMED_ENVELOPE), and a logged entry
    /// of a device that somehow holds one does not read.
    #[test]
    fn devices_may_not_send_an_attestation() {
        let key = SigningKey::generate();
        let mut body = org_body();
        body.device_id = "line-1".into();
        let sealed = seal_attested(&key, &body, &attestation());
        let err = open(&sealed, "line-1").unwrap_err();
        assert!(matches!(err, EnvelopeError::Attestation(_)), "{err}");
        assert_eq!(
            crate::codes::RejectCode::from(&err).as_str(),
            "MALFORMED_ENVELOPE"
        );
        assert!(matches!(
            read_attested(&sealed),
            Err(EnvelopeError::Attestation(_))
        ));
        // `null` is not a spelling of "none".
        let payload = serde_json::to_string(&body)
            .unwrap()
            .replace("]}", "],\"attestation\":null}");
        let sealed = seal_payload(&key, payload);
        assert!(matches!(
            open(&sealed, "line-1"),
            Err(EnvelopeError::Body(_))
        ));
        // Without one, the same body opens.
        assert!(open(&seal(&key, &body), "line-1").is_ok());
    }

    #[test]
    fn status_has_one_spelling() {
        for s in [
            ReceiptStatus::Accepted,
            ReceiptStatus::Duplicate,
            ReceiptStatus::Rejected,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<ReceiptStatus>(&json).unwrap(), s);
            assert_eq!(s, s.as_str());
        }
    }
}
