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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use sha2::{Digest, Sha256};

use crate::keys::{PublicKey, SigningKey};

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
    let body: Body =
        serde_json::from_str(&wire.payload).map_err(|e| EnvelopeError::Body(e.to_string()))?;
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
pub fn read_body(bytes: &[u8]) -> Result<Body, EnvelopeError> {
    let wire: Wire =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Wire(e.to_string()))?;
    serde_json::from_str(&wire.payload).map_err(|e| EnvelopeError::Body(e.to_string()))
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
    /// `ACCEPTED`, `DUPLICATE` (already in the log; this is the original receipt) or `REJECTED`.
    pub status: String,
    pub device_id: String,
    /// The envelope's sequence number, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// SHA-256 of the MQTT payload, hex: lets a device match a receipt to what it sent even
    /// when the body could not be parsed.
    pub payload_hash: String,
    /// Rejection code (see docs/PROTOCOL.md), for `REJECTED`.
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
}

/// SHA-256 of `bytes`, hex.
pub fn payload_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
