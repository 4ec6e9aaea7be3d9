//! The rejection codes a device reads in a `REJECTED` receipt.
//!
//! Each code has exactly one spelling, [`RejectCode::as_str`], which `Display` and `Serialize`
//! both use; docs/PROTOCOL.md §14 lists them with what a device should do. The receipt carries
//! the code as a plain string on the wire, because the set is open: a newer server may add
//! codes, and a device treats one it does not know as final (§15).
//!
//! The ingest rules' codes (`FOREIGN_SITE`, `NOT_BRAND_OWNER`, …) belong to
//! [`crate::pack::RuleCode`] and travel here inside [`RejectCode::Rule`], so they too are
//! spelled in one place.

use std::fmt;

use crate::envelope::EnvelopeError;
use crate::epcis::EpcisError;

/// Why an envelope was not appended.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// The MQTT payload is larger than the server accepts.
    Oversized,
    /// The topic is not `{root}/devices/{deviceId}/events`.
    BadTopic,
    /// The envelope or its body does not parse, or breaks the protocol's form.
    MalformedEnvelope,
    /// The body names another device than the topic.
    DeviceMismatch,
    /// An envelope carries too few or too many events.
    TooManyEvents,
    /// No device with this id is enrolled, or its enrolled key is unusable.
    UnknownDevice,
    /// The device is revoked.
    DeviceRevoked,
    /// The signature does not verify with the device's enrolled key.
    BadSignature,
    /// `sentAt` is too far in the future.
    ClockSkew,
    /// An event is structurally invalid.
    MalformedEvent,
    /// An identifier in an event is not a valid GS1 identifier.
    InvalidIdentifier,
    /// `bizStep` is not a CBV 2.0 business step.
    UnknownBizStep,
    /// `disposition` is not a CBV 2.0 disposition.
    UnknownDisposition,
    /// `eventTime` is unreadable or out of range.
    BadEventTime,
    /// Valid EPCIS, but an event type rxledger does not take.
    UnsupportedEvent,
    /// An ingest rule refused an event (the rule's own code).
    Rule(crate::pack::RuleCode),
    /// The sequence number was used before for other bytes.
    Replay,
    /// An event is already in the log, or twice in the envelope.
    DuplicateEvent,
    /// The server could not store the envelope; the operator is alerted.
    Internal,
}

impl RejectCode {
    /// The code as a device reads it.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectCode::Oversized => "OVERSIZED",
            RejectCode::BadTopic => "BAD_TOPIC",
            RejectCode::MalformedEnvelope => "MALFORMED_ENVELOPE",
            RejectCode::DeviceMismatch => "DEVICE_MISMATCH",
            RejectCode::TooManyEvents => "TOO_MANY_EVENTS",
            RejectCode::UnknownDevice => "UNKNOWN_DEVICE",
            RejectCode::DeviceRevoked => "DEVICE_REVOKED",
            RejectCode::BadSignature => "BAD_SIGNATURE",
            RejectCode::ClockSkew => "CLOCK_SKEW",
            RejectCode::MalformedEvent => "MALFORMED_EVENT",
            RejectCode::InvalidIdentifier => "INVALID_IDENTIFIER",
            RejectCode::UnknownBizStep => "UNKNOWN_BIZSTEP",
            RejectCode::UnknownDisposition => "UNKNOWN_DISPOSITION",
            RejectCode::BadEventTime => "BAD_EVENT_TIME",
            RejectCode::UnsupportedEvent => "UNSUPPORTED_EVENT",
            RejectCode::Rule(code) => code.as_str(),
            RejectCode::Replay => "REPLAY",
            RejectCode::DuplicateEvent => "DUPLICATE_EVENT",
            RejectCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<&EpcisError> for RejectCode {
    fn from(e: &EpcisError) -> Self {
        match e {
            EpcisError::Identifier { .. } => RejectCode::InvalidIdentifier,
            EpcisError::UnknownBizStep { .. } => RejectCode::UnknownBizStep,
            EpcisError::UnknownDisposition { .. } => RejectCode::UnknownDisposition,
            EpcisError::BadTime { .. }
            | EpcisError::TimeInFuture { .. }
            | EpcisError::TimeTooOld { .. } => RejectCode::BadEventTime,
            EpcisError::Unsupported { .. } => RejectCode::UnsupportedEvent,
            _ => RejectCode::MalformedEvent,
        }
    }
}

impl From<&EnvelopeError> for RejectCode {
    fn from(e: &EnvelopeError) -> Self {
        match e {
            EnvelopeError::BadSignature => RejectCode::BadSignature,
            EnvelopeError::DeviceMismatch { .. } => RejectCode::DeviceMismatch,
            EnvelopeError::EventCount(_) => RejectCode::TooManyEvents,
            _ => RejectCode::MalformedEnvelope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_serde_agree() {
        for c in [
            RejectCode::Oversized,
            RejectCode::BadTopic,
            RejectCode::MalformedEnvelope,
            RejectCode::DeviceMismatch,
            RejectCode::TooManyEvents,
            RejectCode::UnknownDevice,
            RejectCode::DeviceRevoked,
            RejectCode::BadSignature,
            RejectCode::ClockSkew,
            RejectCode::MalformedEvent,
            RejectCode::InvalidIdentifier,
            RejectCode::UnknownBizStep,
            RejectCode::UnknownDisposition,
            RejectCode::BadEventTime,
            RejectCode::UnsupportedEvent,
            RejectCode::Rule(crate::pack::RuleCode::ForeignSite),
            RejectCode::Replay,
            RejectCode::DuplicateEvent,
            RejectCode::Internal,
        ] {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(c.to_string(), c.as_str());
        }
    }
}
