//! The life of one pack (SGTIN), replayed from the ledger, and the rules that reject an event
//! at ingest.
//!
//! # Why replay instead of a status column
//!
//! The ledger is the evidence: every statement we make about a pack ("dispensed on …",
//! "recalled", "never shipped to you") must point at the entries that prove it, and anyone
//! holding the same entries must reach the same answer. So the state of a pack is a pure
//! function of its events, [`derive`], recomputed on demand. Events arrive late and out of
//! order (a scanner offline for a day, a partner batching uploads), so they are replayed in
//! business order, `(eventTime, ledger index)`, never in arrival order. A receiving event that
//! reaches us before its shipping event is therefore judged against the shipping once both are
//! in the ledger.
//!
//! # What the store hands in
//!
//! For one pack: every event naming it (epcList, childEPCs, parentID); every event naming a
//! container it was ever aggregated into, transitively up to [`MAX_NESTING`] levels (the store
//! drives [`Walk`], level by level; [`container_closure`] is the same walk over events already
//! in hand); and class-level events for its GTIN + lot or its GTIN ([`classes_of`]), such as a
//! lot recall. The walk hands them over as [`PackEvents`], with the closure it found, which the
//! replay and the completeness read set use instead of walking again. [`named_ids`] lists what
//! an event must be indexed under.
//!
//! # Semantics
//!
//! - Commissioning: ObjectEvent ADD with bizStep `commissioning` or no bizStep (EPCIS: ADD on an
//!   ObjectEvent means the objects came into existence). The ILMD gives lot and expiry.
//! - Aggregation: AggregationEvent ADD/OBSERVE puts the children in the parent from that time;
//!   DELETE takes the listed children out (all of them when childEPCs is empty). An
//!   ObjectEvent/TransactionEvent naming a container applies to every pack inside it at that
//!   time, transitively; each history item records whether it applied directly, through which
//!   container, or through its class. Aggregation events only change structure.
//! - Status: dispensing or `dispensed`/`partially_dispensed` → dispensed; destroying or
//!   `destroyed`/`disposed` → destroyed; `stolen`, `recalled`, `expired` dispositions; bizStep
//!   decommissioning, disposition `inactive` or ObjectEvent DELETE → decommissioned. Several can
//!   hold at once (a recalled pack can also be stolen) and none is ever cleared, except a
//!   dispense by a valid undo: the NMVS also treats recall, theft and destruction as
//!   irreversible. [`PackState::status`] summarises them by precedence. A quarantine holds a
//!   pack until a release names it (see [`quarantine`]); it reaches packs through cases and
//!   lots like a recall.
//! - Custody: shipping (`in_transit`) and receiving events with source/destination lists. The
//!   owner is the `owning_party` destination of the last shipping/receiving event, or the
//!   submitting organisation of the last receiving event.
//!
//! # Undo of a dispense
//!
//! CBV has no undo. We represent it as an ObjectEvent OBSERVE on the pack with disposition
//! `active`, no bizStep, and a business transaction of type [`UNDO_TRANSACTION_TYPE`] whose
//! value is [`LEDGER_ENTRY_PREFIX`] followed by the ledger index of the dispense it reverses.
//! A bizTransaction is used (rather than an extension field) because it is part of the typed
//! [`Event`] and is covered by the CBV event hash, so the reference cannot be stripped. The undo
//! takes effect only if it names the current dispense, comes from the organisation that
//! dispensed, and falls within the undo window (10 days, EU Delegated Regulation 2016/161);
//! otherwise it is recorded as an `UNDO_REJECTED` suspicion and changes nothing.
//!
//! # Suspicions are not rejections
//!
//! Receiving without a shipment, shipping a pack you do not hold, a second dispense and
//! impossible travel are recorded as [`Suspicion`]s with their evidence. The events stay in the
//! ledger: the physical world already happened, and the record of a clone is what lets an
//! investigator find it. Only [`check_ingest`] rejects, and only what no honest partner can
//! send: commissioning someone else's product, or a serial that already exists.
//!
//! # Where things are
//!
//! - `state`: what a derivation produces ([`PackState`], [`PackStatus`], [`Suspicion`], …);
//! - `replay`: [`derive`], [`derive_with`] and [`Derivation`], the replay in business order;
//! - `rules`: the ingest rules ([`check_ingest`]) and the [`RuleViolation`]s they and the API's
//!   state changes refuse with;
//! - `closure`: what the store must fetch for a pack ([`Walk`], [`PackEvents`]);
//! - `quarantine`: how a quarantine and its release are written, and who may place or lift
//!   one ([`quarantine::authorize_quarantine`]).

mod closure;
pub mod quarantine;
mod replay;
mod rules;
mod state;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::epcis::{Event, Location};
use crate::gs1::{self, EpcId};

pub use closure::{PackEvents, Walk, classes_of, container_closure, containers_of, named_ids};
pub use replay::{Derivation, derive, derive_with, undo_target};
pub use rules::{
    Commissioned, IngestContext, RuleCode, RuleViolation, check_ingest, commissioned_sgtins,
    is_commissioning,
};
pub use state::{
    Commissioning, Custody, HistoryItem, PackState, PackStatus, StatusMark, Suspicion, Via,
};

/// How deep containers nest: pack in case in pallet in … (4 levels).
pub const MAX_NESTING: usize = 4;
/// Faster than any scheduled flight: two sightings needing more are suspicious.
pub const DEFAULT_MAX_SPEED_KMH: f64 = 900.0;
/// Two different sites without coordinates within this gap are suspicious.
pub const UNKNOWN_SITE_MIN_GAP_MS: i64 = 60_000;
/// EU Delegated Regulation 2016/161 Art. 13: a decommissioning may be reversed within 10 days.
pub const DEFAULT_UNDO_WINDOW_MS: i64 = 10 * 24 * 3_600_000;
/// bizTransaction type marking an undo; see the module docs.
pub const UNDO_TRANSACTION_TYPE: &str = "urn:rxledger:bt:undo";
/// bizTransaction value prefix: followed by the decimal ledger index of the undone entry.
pub const LEDGER_ENTRY_PREFIX: &str = "urn:rxledger:ledger-entry:";

/// One ledger entry as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Ledger entry index: the evidence every statement points at.
    pub index: u64,
    pub event: Event,
    /// Organisation of the device (or API caller) that submitted it.
    pub org: String,
    /// GLN of the submitting device's site.
    pub site: Option<String>,
}

/// What the rules may know about sites: coordinates (for impossible travel) and the
/// organisation a GLN belongs to (to match `owning_party`/`location` ids against the
/// submitting organisation). The store implements it from its registry.
///
/// `Sync`, so that a [`Derivation`] can be held across an `await`: a state change keeps the
/// one it decided on until its entry is appended.
pub trait SiteDirectory: Sync {
    /// (latitude, longitude) in degrees of a 13-digit GLN.
    fn coordinates(&self, _gln: &str) -> Option<(f64, f64)> {
        None
    }
    /// Organisation id owning a 13-digit GLN (site or party GLN).
    fn organization(&self, _gln: &str) -> Option<String> {
        None
    }
}

/// A directory that knows nothing.
impl SiteDirectory for () {}

/// A directory held in memory: GLN → (organisation, coordinates).
impl SiteDirectory for HashMap<String, (String, Option<(f64, f64)>)> {
    fn coordinates(&self, gln: &str) -> Option<(f64, f64)> {
        self.get(gln).and_then(|(_, c)| *c)
    }
    fn organization(&self, gln: &str) -> Option<String> {
        self.get(gln).map(|(o, _)| o.clone())
    }
}

/// Tunables of [`derive_with`].
#[derive(Clone, Copy)]
pub struct DeriveOptions<'a> {
    pub directory: &'a dyn SiteDirectory,
    pub max_speed_kmh: f64,
    pub undo_window_ms: i64,
}

impl Default for DeriveOptions<'_> {
    fn default() -> Self {
        DeriveOptions {
            directory: &(),
            max_speed_kmh: DEFAULT_MAX_SPEED_KMH,
            undo_window_ms: DEFAULT_UNDO_WINDOW_MS,
        }
    }
}

/// bizLocation, else readPoint, as a normalised id (GLN without extension when an SGLN).
fn event_location(e: &Event) -> Option<String> {
    e.biz_location
        .as_ref()
        .or(e.read_point.as_ref())
        .map(location_id)
}

/// A location as a normalised id: the GLN of an SGLN (extension dropped), else the URI as
/// [`normalise_party`] makes it.
fn location_id(l: &Location) -> String {
    match l {
        Location::Sgln(s) => s.gln.to_string(),
        Location::Other(uri) => normalise_party(uri),
    }
}

/// Party and location ids come as PGLN/SGLN URNs, Digital Links (`/414/`, `/417/`) or bare
/// GLNs; organisations by their registry id. All GLN forms become the 13-digit GLN (SGLN
/// extension dropped) so they compare equal; anything else is kept trimmed.
pub fn normalise_party(id: &str) -> String {
    // Called for every party of every event each time a pack's state is derived, so the
    // prefixes are compared in place instead of on a lower-cased copy.
    let id = id.trim();
    let has_prefix = |p: &str| {
        id.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    };
    if has_prefix("urn:epc:id:pgln:") {
        let rest = &id["urn:epc:id:pgln:".len()..];
        let digits: String = rest.chars().filter(|c| *c != '.').collect();
        if digits.len() == 12
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Some(cd) = gs1::check_digit(&digits)
        {
            return format!("{digits}{cd}");
        }
    } else if has_prefix("urn:epc:id:sgln:") {
        if let Ok(EpcId::Sgln(s)) = gs1::parse_epc(id) {
            return s.gln.to_string();
        }
    } else if has_prefix("http") {
        for key in ["/414/", "/417/"] {
            if let Some(pos) = id.find(key) {
                let gln = id[pos + 5..].get(..13).unwrap_or("");
                if gln.len() == 13 && gln.bytes().all(|b| b.is_ascii_digit()) {
                    return gln.to_string();
                }
            }
        }
    }
    id.to_owned()
}
