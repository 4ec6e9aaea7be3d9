//! Partner signatures on capture (docs/EPCIS.md, "Partner signatures").
//!
//! A trading partner may sign the exact body of `POST /epcis/capture` (or `POST /epcis/events`)
//! with the k256 key of a device enrolled to its own organization and send the signature
//! detached, in `RxLedger-Signature: keyid=<device id>, sig=<128 hex>`
//! (`rxledger_core::epcis::attestation` reads it). [`attest`] checks it before anything is
//! judged: the device must be the API key's organization's and active, and the signature must
//! verify over SHA-256 of the bytes received. Any failure refuses the whole request and nothing
//! is appended; a device that is not the caller's organization's is refused exactly as one that
//! does not exist, so a signature never tells whether an id is enrolled elsewhere.
//!
//! The capture then appends entries that carry the partner's attestation and keeps the bytes;
//! [`document`] serves them at `GET /epcis/capture/documents/{sha256}` to whoever may see the
//! events (the submitting organization, regulators and admins), everyone else getting 404.

use std::sync::Arc;

use poem::http::{HeaderMap, HeaderValue, StatusCode};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use rxledger_core::epcis::attestation::{
    self, Attestation, DocumentMedia, HEADER, SignatureHeader,
};
use rxledger_core::keys::PublicKey;
use rxledger_graphql::Services;
use rxledger_graphql::visibility::Sight;

use super::media::Media;
use super::problem::{EpcisProblem, Exception};
use super::{Epcis, admit, charge, done, headers, keyed};

/// A document download of this many bytes costs one more token.
const BYTES_PER_TOKEN: usize = 1 << 20;

/// The request's `RxLedger-Signature`, if it has one; 400 `BAD_SIGNATURE_HEADER` when it is
/// malformed, over [`attestation::MAX_HEADER_LEN`] bytes, or sent twice.
pub fn header(h: &HeaderMap) -> Result<Option<SignatureHeader>, EpcisProblem> {
    let mut values = h.get_all(HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let bad = |detail: String| EpcisProblem::validation("BAD_SIGNATURE_HEADER", detail);
    if values.next().is_some() {
        return Err(bad(format!("{HEADER} is sent once")));
    }
    attestation::parse_header(first.as_bytes())
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// How a body of `media` is read again by a verifier.
fn document_media(media: Media) -> DocumentMedia {
    match media {
        Media::Json | Media::JsonLd => DocumentMedia::JsonLd,
        Media::Xml => DocumentMedia::Xml,
    }
}

/// Checks a partner's signature over `body` for `org`: the attestation its entries will
/// carry. Refusals: 403 `UNKNOWN_DEVICE` (no device of `org` has that id, whether or not
/// another organization's has), 403 `DEVICE_REVOKED`, 401 `BAD_SIGNATURE`.
pub async fn attest(
    s: &Services,
    org: &str,
    h: SignatureHeader,
    body: &[u8],
    media: Media,
) -> Result<Attestation, EpcisProblem> {
    let device = s
        .registry
        .device(&h.keyid)
        .await
        .map_err(EpcisProblem::internal)?
        .filter(|d| d.org_id == org)
        .ok_or_else(|| {
            EpcisProblem::new(
                StatusCode::FORBIDDEN,
                Exception::Security,
                "UNKNOWN_DEVICE",
                format!(
                    "{HEADER}: keyid {:?} is not a device enrolled to your organization; sign with one of its devices' keys",
                    h.keyid
                ),
            )
        })?;
    if device.status != "active" {
        return Err(EpcisProblem::new(
            StatusCode::FORBIDDEN,
            Exception::Security,
            "DEVICE_REVOKED",
            format!(
                "{HEADER}: device {:?} is revoked; its key signs nothing any more",
                h.keyid
            ),
        ));
    }
    let key = PublicKey::from_sec1_hex(&device.public_key).map_err(|e| {
        EpcisProblem::internal(format!("device {:?} has an unusable key: {e}", h.keyid))
    })?;
    let digest = attestation::digest(body);
    key.verify_digest(&digest, &h.sig).map_err(|_| {
        EpcisProblem::new(
            StatusCode::UNAUTHORIZED,
            Exception::Security,
            "BAD_SIGNATURE",
            format!(
                "{HEADER}: the signature does not verify with device {:?}'s key over the body's exact bytes (ECDSA secp256k1 over SHA-256 of the {} bytes received, r‖s, low s)",
                h.keyid,
                body.len()
            ),
        )
    })?;
    Ok(Attestation::new(
        &h.keyid,
        &h.sig,
        &digest,
        document_media(media),
    ))
}

/// `GET /epcis/capture/documents/{sha256}`: a partner-signed document's exact bytes, in the
/// media type it was captured in, with its `RxLedger-Signature` and its digest as `ETag`. The
/// submitting organization, regulators and admins; for anyone else it does not exist.
#[handler]
pub async fn document(
    req: &Request,
    Path(sha256): Path<String>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            keyed(&c)?;
            let not_found = || {
                EpcisProblem::not_found(format!(
                    "no signed document {sha256:?} that this key may see"
                ))
            };
            let well_formed = sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !well_formed {
                return Err(not_found());
            }
            let org = match Sight::of(&c) {
                Sight::Everything => None,
                Sight::Org { org, .. } => Some(org),
                Sight::Public => return Err(not_found()),
            };
            let doc =
                rxledger_store::PartnerDocuments::new(st.web.services.ledger.database().clone())
                    .get(&sha256, org)
                    .await
                    .map_err(EpcisProblem::internal)?
                    .ok_or_else(not_found)?;
            charge(st, &c, req, (doc.data.len() / BYTES_PER_TOKEN) as f64)?;
            let mut r = Response::builder()
                .status(StatusCode::OK)
                .content_type(doc.media_type.as_str())
                .body(doc.data);
            let h = r.headers_mut();
            headers::standard(h);
            let sig = format!("keyid={}, sig={}", doc.keyid, doc.sig);
            for (name, value) in [
                ("rxledger-signature", sig),
                ("etag", format!("\"{sha256}\"")),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(name, v);
                }
            }
            Ok(r)
        }
        .await,
    )
}
