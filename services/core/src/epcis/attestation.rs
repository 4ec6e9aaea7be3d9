//! A trading partner's own signature over an EPCIS document it captures over REST.
//!
//! A partner that sends `RxLedger-Signature: keyid=<device id>, sig=<hex>` with
//! `POST /epcis/capture` signs the **exact request body bytes** with the k256 key of a device
//! enrolled to its organization, by the scheme of the MQTT envelopes (docs/PROTOCOL.md §3):
//! ECDSA secp256k1 over SHA-256 of the bytes, 64 bytes `r‖s` with low `s`, 128 lowercase hex
//! digits. docs/EPCIS.md ("Partner signatures") is the normative description; its test
//! vector is checked by this module's tests.
//!
//! Like Sigstore Rekor's `hashedrekord`, the log commits to the document's digest and the
//! signature, not to the document (up to 32 MiB): each entry the capture appends carries an
//! [`Attestation`] (`keyid`, `sig`, `sha256`, `mediaType`) inside its log-key-signed body, and
//! the node keeps the document's bytes beside the log. Anyone holding the bytes, the entry and
//! the device's public key checks, with no I/O and no trust in the node:
//! - the bytes are the ones attested ([`Attestation::verify_document`]: digest, signature);
//! - an event of the entry is one of the document's events ([`verify_event`]: the document is
//!   read as the capture read it, each event hashed by CBV 2.0).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envelope::valid_device_id;
use crate::keys::{PublicKey, SIGNATURE_LEN, SigningKey};

/// The HTTP header a partner sends its signature in.
pub const HEADER: &str = "RxLedger-Signature";
/// Longest header value taken: `keyid=` and a 64-character device id, `, sig=` and 128 hex
/// digits are 204 bytes; the rest is room for spaces.
pub const MAX_HEADER_LEN: usize = 256;
/// `mediaType` of a JSON document (sent as `application/ld+json` or `application/json`).
pub const MEDIA_JSON_LD: &str = "application/ld+json";
/// `mediaType` of an XML document (sent as `application/xml` or `text/xml`).
pub const MEDIA_XML: &str = "application/xml";

/// How a signed document is read: the syntax it was captured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentMedia {
    /// EPCIS 2.0 JSON-LD: an `EPCISDocument`, an `EPCISQueryDocument`, or one event (the body
    /// of `POST /epcis/events`).
    JsonLd,
    /// EPCIS 1.2 or 2.0 XML.
    Xml,
}

impl DocumentMedia {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentMedia::JsonLd => MEDIA_JSON_LD,
            DocumentMedia::Xml => MEDIA_XML,
        }
    }

    pub fn parse(s: &str) -> Option<DocumentMedia> {
        match s {
            MEDIA_JSON_LD => Some(DocumentMedia::JsonLd),
            MEDIA_XML => Some(DocumentMedia::Xml),
            _ => None,
        }
    }
}

/// What an entry of a partner-signed capture carries, inside its log-key-signed body
/// (`"attestation"`, docs/PROTOCOL.md §3): who signed which document bytes, and the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// The enrolled device whose key signed the document.
    pub keyid: String,
    /// ECDSA secp256k1 over SHA-256 of the document bytes: 128 lowercase hex digits, `r‖s`,
    /// low `s`.
    pub sig: String,
    /// SHA-256 of the document bytes, 64 lowercase hex digits: the key the node keeps the
    /// document under (`GET /epcis/capture/documents/{sha256}`).
    pub sha256: String,
    /// How the document is read: `application/ld+json` or `application/xml`.
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// Why a signature header, an attestation or a signed document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    #[error(
        "RxLedger-Signature must be \"keyid=<enrolled device id>, sig=<128 lowercase hex digits>\": {0}"
    )]
    Header(String),
    #[error("the attestation is malformed: {0}")]
    Malformed(&'static str),
    #[error("the document's SHA-256 is not the attested one: these are not the signed bytes")]
    DigestMismatch,
    #[error("the signature does not verify with the device's key over these bytes")]
    BadSignature,
    #[error("the signed document cannot be read as {media}: {detail}")]
    Document { media: &'static str, detail: String },
    #[error("the event is not one of the signed document's events")]
    NotInDocument,
}

/// A parsed `RxLedger-Signature` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeader {
    pub keyid: String,
    pub sig: [u8; SIGNATURE_LEN],
}

/// Reads an `RxLedger-Signature` header value: `keyid=<id>, sig=<hex>`, the two parameters
/// once each in either order, separated by a comma and optional spaces or tabs. The id is a
/// device id (1 to 64 of `A-Z a-z 0-9 - _ .`), the signature 128 lowercase hex digits.
pub fn parse_header(value: &[u8]) -> Result<SignatureHeader, AttestationError> {
    let bad = |s: &str| AttestationError::Header(s.to_string());
    if value.len() > MAX_HEADER_LEN {
        return Err(AttestationError::Header(format!(
            "the value is {} bytes, at most {MAX_HEADER_LEN} are taken",
            value.len()
        )));
    }
    let text = std::str::from_utf8(value).map_err(|_| bad("the value is not UTF-8"))?;
    let mut keyid = None;
    let mut sig = None;
    for part in text.split(',') {
        let part = part.trim_matches([' ', '\t']);
        let (name, v) = part
            .split_once('=')
            .ok_or_else(|| bad("each parameter is name=value"))?;
        let slot = match name {
            "keyid" => &mut keyid,
            "sig" => &mut sig,
            _ => return Err(bad("the parameters are keyid and sig, and nothing else")),
        };
        if slot.replace(v).is_some() {
            return Err(bad("a parameter is given twice"));
        }
    }
    let keyid = keyid.ok_or_else(|| bad("keyid is missing"))?;
    let sig = sig.ok_or_else(|| bad("sig is missing"))?;
    if !valid_device_id(keyid) {
        return Err(bad("keyid is not 1 to 64 characters of A-Z a-z 0-9 - _ ."));
    }
    Ok(SignatureHeader {
        keyid: keyid.to_string(),
        sig: decode_sig(sig).ok_or_else(|| bad("sig is not 128 lowercase hex digits"))?,
    })
}

/// The header value a partner sends: `keyid=<id>, sig=<hex>`.
pub fn header_value(keyid: &str, sig: &[u8; SIGNATURE_LEN]) -> String {
    format!("keyid={keyid}, sig={}", hex::encode(sig))
}

/// Signs `document` as a partner does: the signature for [`header_value`].
pub fn sign_document(key: &SigningKey, document: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(document)
}

fn decode_sig(s: &str) -> Option<[u8; SIGNATURE_LEN]> {
    decode_lower_hex::<SIGNATURE_LEN>(s)
}

fn decode_lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// SHA-256 of a document's bytes.
pub fn digest(document: &[u8]) -> [u8; 32] {
    Sha256::digest(document).into()
}

impl Attestation {
    /// The attestation of `document` (already hashed: `digest`) signed by `keyid` with `sig`.
    pub fn new(
        keyid: &str,
        sig: &[u8; SIGNATURE_LEN],
        digest: &[u8; 32],
        media: DocumentMedia,
    ) -> Attestation {
        Attestation {
            keyid: keyid.to_string(),
            sig: hex::encode(sig),
            sha256: hex::encode(digest),
            media_type: media.as_str().to_string(),
        }
    }

    /// The fields decoded: the media type, the signature and the digest. Every field has one
    /// spelling (lowercase hex, a known media type), so two readers cannot disagree.
    pub fn decode(
        &self,
    ) -> Result<(DocumentMedia, [u8; SIGNATURE_LEN], [u8; 32]), AttestationError> {
        if !valid_device_id(&self.keyid) {
            return Err(AttestationError::Malformed(
                "keyid is not 1 to 64 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        let media = DocumentMedia::parse(&self.media_type).ok_or(AttestationError::Malformed(
            "mediaType is neither application/ld+json nor application/xml",
        ))?;
        let sig = decode_sig(&self.sig).ok_or(AttestationError::Malformed(
            "sig is not 128 lowercase hex digits",
        ))?;
        let sha = decode_lower_hex::<32>(&self.sha256).ok_or(AttestationError::Malformed(
            "sha256 is not 64 lowercase hex digits",
        ))?;
        Ok((media, sig, sha))
    }

    /// Checks that `document` is exactly the attested bytes and that `key` (the device
    /// `keyid`'s enrolled key) signed them.
    pub fn verify_document(
        &self,
        document: &[u8],
        key: &PublicKey,
    ) -> Result<(), AttestationError> {
        let (_, sig, sha) = self.decode()?;
        let d = digest(document);
        if d != sha {
            return Err(AttestationError::DigestMismatch);
        }
        key.verify_digest(&d, &sig)
            .map_err(|_| AttestationError::BadSignature)
    }
}

/// The CBV 2.0 hashes of a document's events, in document order, as the capture computed
/// them: JSON is read by [`super::json_document_events`] (or, when it is not a document, as
/// the one event of `POST /epcis/events`), XML by [`super::xml::parse_xml_document`]. An
/// event that cannot be read or hashed has no hash (`None`): the capture refused it.
pub fn event_hashes(
    document: &[u8],
    media: DocumentMedia,
) -> Result<Vec<Option<[u8; 32]>>, AttestationError> {
    let unreadable = |detail: String| AttestationError::Document {
        media: media.as_str(),
        detail,
    };
    let events: Vec<Option<Value>> = match media {
        DocumentMedia::JsonLd => {
            let doc: Value =
                serde_json::from_slice(document).map_err(|e| unreadable(e.to_string()))?;
            let is_document = matches!(
                doc.get("type").and_then(Value::as_str),
                Some("EPCISDocument" | "EPCISQueryDocument")
            );
            if is_document {
                super::json_document_events(doc)
                    .map_err(|e| unreadable(e.to_string()))?
                    .into_iter()
                    .map(Some)
                    .collect()
            } else if doc.is_object() {
                vec![Some(doc)]
            } else {
                return Err(unreadable("not a JSON object".into()));
            }
        }
        DocumentMedia::Xml => {
            let limits = super::xml::XmlLimits::default();
            super::xml::parse_xml_document(document, &limits)
                .map_err(|e| unreadable(e.to_string()))?
                .events
                .into_iter()
                .map(Result::ok)
                .collect()
        }
    };
    Ok(events
        .into_iter()
        .map(|e| e.and_then(|e| super::event_hash(&e).ok()))
        .collect())
}

/// Everything a verifier checks about one event of a partner-signed entry: `document` is the
/// attested bytes, `key` signed them, and the event whose CBV 2.0 hash is `event_hash` is
/// one of the document's events. Returns its position in the document.
pub fn verify_event(
    document: &[u8],
    attestation: &Attestation,
    key: &PublicKey,
    event_hash: &[u8; 32],
) -> Result<usize, AttestationError> {
    attestation.verify_document(document, key)?;
    let (media, _, _) = attestation.decode()?;
    event_hashes(document, media)?
        .iter()
        .position(|h| h.as_ref() == Some(event_hash))
        .ok_or(AttestationError::NotInDocument)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epcis::event_hash;
    use serde_json::json;

    fn event(serial: &str) -> Value {
        json!({
            "type": "ObjectEvent",
            "eventTime": "2026-03-01T10:00:00.000Z",
            "eventTimeZoneOffset": "+00:00",
            "epcList": [format!("urn:epc:id:sgtin:0614141.107346.{serial}")],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        })
    }

    fn document(events: &[Value]) -> Vec<u8> {
        json!({
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                         {"ex": "https://example.org/ns#"}],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-03-01T10:00:00.000Z",
            "epcisBody": {"eventList": events},
        })
        .to_string()
        .into_bytes()
    }

    fn attest(key: &SigningKey, doc: &[u8], media: DocumentMedia) -> Attestation {
        Attestation::new("line-1", &sign_document(key, doc), &digest(doc), media)
    }

    /// The hash the capture logs: the event made self-contained by the document reader.
    fn logged_hash(doc: &[u8], i: usize) -> [u8; 32] {
        let events =
            crate::epcis::json_document_events(serde_json::from_slice(doc).unwrap()).unwrap();
        event_hash(&events[i]).unwrap()
    }

    #[test]
    fn every_event_of_a_signed_document_verifies() {
        let key = SigningKey::generate();
        let doc = document(&[event("1"), event("2"), event("3")]);
        let a = attest(&key, &doc, DocumentMedia::JsonLd);
        for i in 0..3 {
            assert_eq!(
                verify_event(&doc, &a, &key.public_key(), &logged_hash(&doc, i)),
                Ok(i)
            );
        }
    }

    #[test]
    fn tampered_bytes_a_wrong_key_and_a_foreign_event_are_refused() {
        let key = SigningKey::generate();
        let doc = document(&[event("1"), event("2")]);
        let a = attest(&key, &doc, DocumentMedia::JsonLd);
        let h = logged_hash(&doc, 0);

        // One byte changed (a serial), and one space added: not the signed bytes.
        let mut tampered = doc.clone();
        let at = tampered.windows(3).position(|w| w == b".1\"").unwrap();
        tampered[at + 1] = b'9';
        assert_eq!(
            verify_event(&tampered, &a, &key.public_key(), &h),
            Err(AttestationError::DigestMismatch)
        );
        let mut spaced = doc.clone();
        spaced.push(b' ');
        assert_eq!(
            verify_event(&spaced, &a, &key.public_key(), &h),
            Err(AttestationError::DigestMismatch)
        );
        // Bytes and digest both changed to match: the signature no longer holds.
        let mut forged = a.clone();
        forged.sha256 = hex::encode(digest(&tampered));
        assert_eq!(
            verify_event(&tampered, &forged, &key.public_key(), &h),
            Err(AttestationError::BadSignature)
        );

        let other = SigningKey::generate();
        assert_eq!(
            verify_event(&doc, &a, &other.public_key(), &h),
            Err(AttestationError::BadSignature)
        );

        let elsewhere = event_hash(&event("3")).unwrap();
        assert_eq!(
            verify_event(&doc, &a, &key.public_key(), &elsewhere),
            Err(AttestationError::NotInDocument)
        );
    }

    #[test]
    fn a_signed_xml_document_verifies_by_the_hashes_of_its_events() {
        use crate::epcis::xml::{XmlHeader, to_epcis12_xml};
        let key = SigningKey::generate();
        let events = [event("1"), event("2")];
        let header = XmlHeader {
            schema_version: "1.2".into(),
            creation_date: Some("2026-03-01T10:00:00.000Z".into()),
            ..XmlHeader::default()
        };
        let xml = to_epcis12_xml(&events, &header).unwrap().into_bytes();
        let a = attest(&key, &xml, DocumentMedia::Xml);
        for (i, e) in events.iter().enumerate() {
            // The same event as JSON-LD and as 1.2 XML has one CBV hash.
            let h = event_hash(e).unwrap();
            assert_eq!(verify_event(&xml, &a, &key.public_key(), &h), Ok(i));
        }
        // Read as JSON, the XML bytes are no document.
        let mut as_json = a.clone();
        as_json.media_type = MEDIA_JSON_LD.into();
        assert!(matches!(
            verify_event(
                &xml,
                &as_json,
                &key.public_key(),
                &event_hash(&events[0]).unwrap()
            ),
            Err(AttestationError::Document { .. })
        ));
    }

    #[test]
    fn one_event_bodies_are_their_own_document() {
        let key = SigningKey::generate();
        let body = event("7").to_string().into_bytes();
        let a = attest(&key, &body, DocumentMedia::JsonLd);
        let h = event_hash(&event("7")).unwrap();
        assert_eq!(verify_event(&body, &a, &key.public_key(), &h), Ok(0));
    }

    #[test]
    fn attestations_have_one_spelling() {
        let key = SigningKey::generate();
        let doc = document(&[event("1")]);
        let good = attest(&key, &doc, DocumentMedia::JsonLd);
        assert!(good.decode().is_ok());
        let edits: [fn(&mut Attestation); 5] = [
            |a| a.sig = a.sig.to_uppercase(),
            |a| a.sha256.truncate(63),
            |a| a.media_type = "application/json".into(),
            |a| a.keyid = "org:acme".into(),
            |a| a.sig.push('0'),
        ];
        for edit in edits {
            let mut a = good.clone();
            edit(&mut a);
            assert!(
                matches!(a.decode(), Err(AttestationError::Malformed(_))),
                "{a:?}"
            );
            assert!(a.verify_document(&doc, &key.public_key()).is_err());
        }
        // Serde: the four fields, nothing else, none missing.
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<Attestation>(&text).unwrap(), good);
        let mut extra: Value = serde_json::from_str(&text).unwrap();
        extra["x"] = json!(1);
        assert!(serde_json::from_value::<Attestation>(extra).is_err());
        let mut missing: Value = serde_json::from_str(&text).unwrap();
        missing.as_object_mut().unwrap().remove("sha256");
        assert!(serde_json::from_value::<Attestation>(missing).is_err());
    }

    #[test]
    fn the_header_is_read_strictly_and_bounded() {
        let sig = [0xabu8; 64];
        let hexsig = hex::encode(sig);
        let good = header_value("line-1", &sig);
        assert_eq!(good, format!("keyid=line-1, sig={hexsig}"));
        let parsed = parse_header(good.as_bytes()).unwrap();
        assert_eq!(parsed.keyid, "line-1");
        assert_eq!(parsed.sig, sig);
        // Either order, optional spaces.
        let swapped = format!("sig={hexsig},keyid=line-1");
        assert_eq!(parse_header(swapped.as_bytes()).unwrap(), parsed);

        let long_id = "a".repeat(65);
        for bad in [
            String::new(),
            "keyid=line-1".to_string(),
            format!("sig={hexsig}"),
            format!("keyid=line-1, sig={}", hexsig.to_uppercase()),
            format!("keyid=line-1, sig={}", &hexsig[..126]),
            format!("keyid=line 1, sig={hexsig}"),
            format!("keyid=org:acme, sig={hexsig}"),
            format!("keyid={long_id}, sig={hexsig}"),
            format!("keyid=line-1, sig={hexsig}, alg=es256k"),
            format!("keyid=line-1, keyid=line-2, sig={hexsig}"),
            format!("keyid=line-1; sig={hexsig}"),
            format!("keyid=\"line-1\", sig={hexsig}"),
        ] {
            assert!(
                matches!(
                    parse_header(bad.as_bytes()),
                    Err(AttestationError::Header(_))
                ),
                "{bad:?}"
            );
        }
        let huge = format!("keyid=line-1, sig={hexsig}{}", " ".repeat(MAX_HEADER_LEN));
        assert!(parse_header(huge.as_bytes()).is_err());
        assert!(parse_header(&[0xff, 0xfe]).is_err());
    }
}
