//! rxledger's core: every rule of the ledger, with no I/O.
//!
//! Nothing in this crate touches a file, a socket, a clock or a database. The server, the
//! offline auditor and the firmware simulator all link it, so there is one implementation of
//! every rule: Merkle maths and proofs ([`merkle`], [`tiles`]), checkpoints in signed-note
//! framing ([`checkpoint`]), k256 keys and signatures ([`keys`]), Ed25519
//! note keys ([`ed25519`]), witness cosignatures and their quorum ([`cosignature`]), a witness's
//! decision on a submitted checkpoint ([`witness`]), GS1 identifiers ([`gs1`]),
//! EPCIS 2.0 events and their CBV 2.0 hash ([`epcis`]), what the ledger indexes about an event
//! ([`index`]), the authenticated pack index that proves an answer complete ([`map`]), the codes of a rejected envelope ([`codes`]), the rules of an alert case and its timers ([`case`]), and the latency histograms `/metrics` exposes ([`histogram`]).

pub mod case;
pub mod checkpoint;
pub mod codes;
pub mod cosignature;
pub mod ed25519;
pub mod envelope;
pub mod epcis;
pub mod eucodes;
pub mod gs1;
pub mod histogram;
pub mod index;
pub mod keys;
pub mod map;
pub mod merkle;
pub mod mqttauth;
pub mod pack;
pub mod spelling;
pub mod tiles;
pub mod trace;
pub mod verdict;
pub mod witness;
