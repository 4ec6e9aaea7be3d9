//! Ledger queries: checkpoints, proofs and entries. Anyone may audit the tree; an entry's
//! bytes follow `visibility`.

use async_graphql::{Context, Object, Result, SimpleObject};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rxledger_store::SignedHead;

use crate::auth::caller;
use crate::hashes::Hashes;
use crate::visibility::Sight;
use crate::{ApiError, MAX_PAGE, Services};

#[derive(Default)]
pub struct LedgerQuery;

/// A signed checkpoint (C2SP tlog-checkpoint in signed-note framing).
#[derive(SimpleObject)]
pub struct Checkpoint {
    pub origin: String,
    /// Number of entries in the tree.
    pub size: i64,
    /// RFC 9162 root hash, lowercase hex.
    pub root_hash: String,
    /// The same root, base64, as written in the note.
    pub root_hash_base64: String,
    /// The whole signed note; verify it with `ledgerPublicKey.verifierKey` (k256) or
    /// `ledgerPublicKey.ed25519VerifierKey`.
    pub note: String,
    /// The newest checkpoint a quorum of the log's witnesses cosigned (at this size or
    /// below); null when no witness is configured or none has answered yet.
    pub cosigned: Option<CosignedCheckpoint>,
}

/// A checkpoint with witness cosignatures (C2SP tlog-cosignature, `cosignature/v1`).
#[derive(SimpleObject, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CosignedCheckpoint {
    pub size: i64,
    /// The log's note with the witnesses' cosignature lines appended.
    pub note: String,
    /// The names of the witnesses that cosigned it.
    pub cosigners: Vec<String>,
}

impl CosignedCheckpoint {
    /// The ledger's newest cosigned checkpoint, if any.
    pub fn of(ledger: &rxledger_store::Ledger) -> Option<Self> {
        ledger.witnesses().cosigned().map(|c| CosignedCheckpoint {
            size: c.size as i64,
            note: c.note,
            cosigners: c.cosigners,
        })
    }
}

impl Checkpoint {
    fn from_head(ledger: &rxledger_store::Ledger, h: &SignedHead) -> Self {
        Checkpoint {
            origin: ledger.origin().to_string(),
            size: h.size as i64,
            root_hash: hex::encode(h.root),
            root_hash_base64: B64.encode(h.root),
            note: h.note.clone(),
            cosigned: CosignedCheckpoint::of(ledger),
        }
    }
}

#[derive(SimpleObject)]
pub struct InclusionProof {
    pub index: i64,
    pub tree_size: i64,
    /// RFC 9162 leaf hash of the entry, hex.
    pub leaf_hash: String,
    /// The audit path, leaf to root, hex.
    pub hashes: Hashes,
}

#[derive(SimpleObject)]
pub struct ConsistencyProof {
    pub from_size: i64,
    pub to_size: i64,
    pub hashes: Hashes,
}

/// One log entry. Everyone gets its leaf hash, enough to check the tree; the exact bytes and
/// the signer go only to the organization that signed it, regulators and admins (they name
/// trading partners, sites and patients' pharmacies).
#[derive(SimpleObject)]
pub struct LedgerEntry {
    pub index: i64,
    /// RFC 9162 leaf hash of the bytes, hex.
    pub leaf_hash: String,
    /// The exact bytes, base64; null when the caller may not see them.
    pub data_base64: Option<String>,
    /// 1 = device envelope, 2 = API state change or EPCIS capture, 3 = desk record (a
    /// tracing request or an alert case's transition), 4 = map-root entry (public: it names
    /// no party). Kinds 1 and 2 hold events; the log writes 3 and 4 itself (docs/PROTOCOL.md).
    pub kind: i32,
    /// The device id, `org:<id>` for API state changes, captures and desk records, or
    /// `log:map` for map-root entries; null like `dataBase64`.
    pub signer: Option<String>,
    /// Whose key signed it: `device` (a scanner's enrolled key), `log-key` (the log, for an
    /// organization's API key or itself) or `partner-key` (the log, for a capture whose
    /// trading partner signed the document with an enrolled device key: see `attestation`).
    /// Null like `signer`.
    pub signed_by: Option<String>,
    /// For `partner-key`: the partner's signature over the captured document, as the entry
    /// holds it. Null otherwise, and like `signer`.
    pub attestation: Option<PartnerAttestation>,
}

/// A trading partner's own k256 signature over an EPCIS document it captured over REST
/// (`RxLedger-Signature`, docs/EPCIS.md "Partner signatures"), as a log entry carries it. The
/// document's bytes are at `GET /epcis/capture/documents/{sha256}`; anyone with them, the
/// entry and the device's public key can check that the device signed the document and that
/// the entry's events are in it.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct PartnerAttestation {
    /// The enrolled device whose key signed the document.
    pub keyid: String,
    /// ECDSA secp256k1 over SHA-256 of the document bytes, `r || s` with low `s`, hex.
    pub sig: String,
    /// SHA-256 of the document bytes, hex.
    pub sha256: String,
    /// `application/ld+json` or `application/xml`.
    pub media_type: String,
}

impl From<rxledger_core::envelope::Attestation> for PartnerAttestation {
    fn from(a: rxledger_core::envelope::Attestation) -> Self {
        PartnerAttestation {
            keyid: a.keyid,
            sig: a.sig,
            sha256: a.sha256,
            media_type: a.media_type,
        }
    }
}

/// How the entry of `kind` with these bytes was signed (`device`, `log-key` or
/// `partner-key`), and the partner's attestation when it carries one.
pub(crate) fn signing(kind: i16, data: &[u8]) -> (&'static str, Option<PartnerAttestation>) {
    use crate::epcis_doc::SignedBy;
    if kind == rxledger_store::ledger::EntryKind::DeviceEnvelope as i16 {
        return (SignedBy::Device.as_str(), None);
    }
    let attestation = (kind == rxledger_store::ledger::EntryKind::ApiStateChange as i16)
        .then(|| rxledger_core::envelope::read_attested(data).ok())
        .flatten()
        .and_then(|(_, a)| a);
    match attestation {
        Some(a) => (SignedBy::PartnerKey.as_str(), Some(a.into())),
        None => (SignedBy::LogKey.as_str(), None),
    }
}

/// How to check this log's signatures.
#[derive(SimpleObject)]
pub struct LedgerKey {
    pub origin: String,
    /// SEC1 compressed secp256k1 public key, hex.
    pub public_key: String,
    /// The signed-note verifier key, `<name>+<keyid>+<base64>`.
    pub verifier_key: String,
    /// The log's Ed25519 signed-note verifier key (type 0x01), the one witnesses and
    /// standard tools check; null if the log has no Ed25519 key.
    pub ed25519_verifier_key: Option<String>,
    /// Witness cosignatures a checkpoint needs before this node publishes it as cosigned
    /// (`cosigned`, `cosignedCheckpoint`); 0 when no witness is configured.
    pub witness_quorum: i32,
    /// The key names of the configured witnesses, as their cosignature lines name them.
    pub witnesses: Vec<String>,
    /// The configured witnesses' cosigner verifier keys, in the order of `witnesses`: C2SP
    /// vkeys of type 0x04 (c2sp.org/tlog-cosignature, `cosignature/v1`),
    /// `<name>+<hex key ID>+<base64(0x04 || Ed25519 public key)>`, as `serve --witness` was
    /// given them. With them a client checks the cosignature lines of `cosignedCheckpoint`
    /// itself; they are only as good as the channel they came over, so a client that can
    /// should pin them out of band (docs/VERIFY.md).
    pub witness_verifier_keys: Vec<String>,
}

fn services<'a>(ctx: &'a Context<'_>) -> &'a Services {
    // The schema is always built with Services (see `crate::schema`).
    ctx.data_unchecked::<Services>()
}

fn size_arg(v: i64, what: &str) -> Result<u64, ApiError> {
    u64::try_from(v).map_err(|_| ApiError::bad_request(format!("{what} must not be negative")))
}

#[Object]
impl LedgerQuery {
    /// The latest signed checkpoint.
    async fn checkpoint(&self, ctx: &Context<'_>) -> Checkpoint {
        let s = services(ctx);
        Checkpoint::from_head(&s.ledger, &s.ledger.head())
    }

    /// The inclusion proof of entry `index` in the tree of `treeSize` (default: latest).
    async fn inclusion_proof(
        &self,
        ctx: &Context<'_>,
        index: i64,
        tree_size: Option<i64>,
    ) -> Result<InclusionProof> {
        let s = services(ctx);
        let index = size_arg(index, "index")?;
        let size = match tree_size {
            Some(t) => size_arg(t, "treeSize")?,
            None => s.ledger.head().size,
        };
        let hashes = s
            .ledger
            .inclusion_proof(index, size)
            .await
            .map_err(ApiError::from)?;
        let leaf = s.ledger.leaf_hash(index).await.map_err(ApiError::from)?;
        Ok(InclusionProof {
            index: index as i64,
            tree_size: size as i64,
            leaf_hash: hex::encode(leaf),
            hashes: Hashes::hex(&hashes),
        })
    }

    /// The consistency proof between two tree sizes (default `toSize`: latest).
    async fn consistency_proof(
        &self,
        ctx: &Context<'_>,
        from_size: i64,
        to_size: Option<i64>,
    ) -> Result<ConsistencyProof> {
        let s = services(ctx);
        let from = size_arg(from_size, "fromSize")?;
        let to = match to_size {
            Some(t) => size_arg(t, "toSize")?,
            None => s.ledger.head().size,
        };
        let hashes = s
            .ledger
            .consistency_proof(from, to)
            .await
            .map_err(ApiError::from)?;
        Ok(ConsistencyProof {
            from_size: from as i64,
            to_size: to as i64,
            hashes: Hashes::hex(&hashes),
        })
    }

    /// Entries `from .. from + count` (at most 1000), for monitors that mirror the log. Bytes
    /// and signers only where the caller may see them (see `LedgerEntry`).
    async fn entries(&self, ctx: &Context<'_>, from: i64, count: i64) -> Result<Vec<LedgerEntry>> {
        let s = services(ctx);
        let visible = Sight::of(caller(ctx)).signers(s).await?;
        let from = size_arg(from, "from")?;
        if !(0..=MAX_PAGE).contains(&count) {
            return Err(ApiError::bad_request(format!("count must be 0 to {MAX_PAGE}")).into());
        }
        let rows = s
            .ledger
            .entries(from, count as u64)
            .await
            .map_err(ApiError::from)?;
        // Reading the bodies for who signed costs a parse per entry: only when asked.
        let wanted = ctx.look_ahead();
        let signing_wanted =
            wanted.field("signedBy").exists() || wanted.field("attestation").exists();
        Ok(rows
            .into_iter()
            .map(|r| {
                // A map-root entry names no party: its bytes and signer are public.
                let public = r.kind == rxledger_store::ledger::EntryKind::MapRoot as i16;
                let shown = public || visible.as_ref().is_none_or(|v| v.contains(&r.signer));
                let (signed_by, attestation) = if shown && signing_wanted {
                    let (by, a) = signing(r.kind, &r.data);
                    (Some(by.to_string()), a)
                } else {
                    (None, None)
                };
                LedgerEntry {
                    index: r.idx,
                    leaf_hash: hex::encode(rxledger_core::merkle::leaf_hash(&r.data)),
                    data_base64: shown.then(|| B64.encode(&r.data)),
                    kind: r.kind as i32,
                    signer: shown.then_some(r.signer),
                    signed_by,
                    attestation,
                }
            })
            .collect())
    }

    /// The log's public key and signed-note verifier key.
    async fn ledger_public_key(&self, ctx: &Context<'_>) -> LedgerKey {
        let s = services(ctx);
        let witnessing = s.ledger.witnesses().status();
        LedgerKey {
            origin: s.ledger.origin().to_string(),
            public_key: s.ledger.key().public_hex(),
            verifier_key: s.ledger.verifier().to_vkey(),
            ed25519_verifier_key: s.ledger.ed25519_verifier().map(|v| v.to_vkey()),
            witness_quorum: witnessing.quorum as i32,
            witness_verifier_keys: witnessing
                .witnesses
                .iter()
                .map(|w| w.verifier.to_vkey())
                .collect(),
            witnesses: witnessing.witnesses.into_iter().map(|w| w.name).collect(),
        }
    }
}
