//! What a derivation produces: a pack's status, custody, history and suspicions.

use super::normalise_party;
use crate::epcis::{Action, BizStep, Disposition, EventKind};
use crate::gs1::{CalendarDate, EpcId, Lot, Sgtin};
use crate::spelling::spelled;

/// A pattern worth an investigator's look, never a reason to refuse an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    pub code: &'static str,
    pub message: String,
    pub evidence: Vec<u64>,
}

impl Suspicion {
    pub const RECEIVED_WITHOUT_SHIPMENT: &'static str = "RECEIVED_WITHOUT_SHIPMENT";
    pub const SHIPPED_NOT_HELD: &'static str = "SHIPPED_NOT_HELD";
    pub const DISPENSED_TWICE: &'static str = "DISPENSED_TWICE";
    pub const IMPOSSIBLE_TRAVEL: &'static str = "IMPOSSIBLE_TRAVEL";
    /// An undo that names no current dispense, comes from another party or is too late.
    pub const UNDO_REJECTED: &'static str = "UNDO_REJECTED";
}

/// Summary status, by precedence: destroyed, dispensed, decommissioned, stolen, recalled,
/// expired, quarantined, in transit, active. `Unknown` means never commissioned.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackStatus {
    Unknown,
    Active,
    InTransit,
    Dispensed,
    Destroyed,
    Stolen,
    Recalled,
    Expired,
    Decommissioned,
    /// Held by a quarantine not yet released (see `pack::quarantine`).
    Quarantined,
}

spelled!(PackStatus {
    Unknown => "UNKNOWN",
    Active => "ACTIVE",
    InTransit => "IN_TRANSIT",
    Dispensed => "DISPENSED",
    Destroyed => "DESTROYED",
    Stolen => "STOLEN",
    Recalled => "RECALLED",
    Expired => "EXPIRED",
    Decommissioned => "DECOMMISSIONED",
    Quarantined => "QUARANTINED",
});

impl PackStatus {
    /// Active and in-transit packs may still be supplied.
    pub fn is_active(&self) -> bool {
        matches!(self, PackStatus::Active | PackStatus::InTransit)
    }

    /// Active, in transit, or active but held by a quarantine: still in the supply chain.
    pub fn is_active_or_held(&self) -> bool {
        self.is_active() || *self == PackStatus::Quarantined
    }
}

/// Who created the pack, when, and with which lot and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commissioning {
    pub index: u64,
    pub event_time_ms: i64,
    pub org: String,
    pub lot: Option<Lot>,
    pub expiry: Option<CalendarDate>,
}

/// The event that set a status flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMark {
    pub index: u64,
    pub event_time_ms: i64,
    pub org: String,
    pub site: Option<String>,
    /// When the event reached the pack through a container or class, the entries that link
    /// them: the aggregations that packed it into the container, or the commissioning that
    /// gave it its lot. A verdict cites these with `index`.
    pub links: Vec<u64>,
}

impl StatusMark {
    /// Every entry the mark rests on: its own event, then the links.
    pub fn entries(&self) -> Vec<u64> {
        std::iter::once(self.index)
            .chain(self.links.iter().copied())
            .collect()
    }
}

/// Who holds the pack and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Custody {
    /// The `owning_party` destination of the last shipping/receiving (as the organisation the
    /// [`SiteDirectory`](super::SiteDirectory) resolves it to, else its normalised id), or
    /// the submitting organisation of a receiving event without one.
    pub owner: Option<String>,
    /// Location GLN (or URI).
    pub location: Option<String>,
    /// Shipped and not yet received.
    pub in_transit: bool,
    /// The event that set this custody.
    pub index: Option<u64>,
}

/// How an event reached the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Direct,
    /// Through the container the pack was (transitively) inside at the time.
    Container(EpcId),
    /// Through a class: `Lgtin` of the pack's GTIN + lot, or its `GtinClass`.
    Class(EpcId),
}

/// One event in the pack's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub index: u64,
    pub event_time_ms: i64,
    pub kind: EventKind,
    pub action: Action,
    pub biz_step: Option<BizStep>,
    pub disposition: Option<Disposition>,
    pub org: String,
    pub location: Option<String>,
    pub via: Via,
}

/// Everything the verdict and the API need to know about one pack.
#[derive(Debug, Clone, PartialEq)]
pub struct PackState {
    pub sgtin: Sgtin,
    pub commissioning: Option<Commissioning>,
    pub status: PackStatus,
    /// The event behind `status`.
    pub status_index: Option<u64>,
    /// The current (not undone) dispense; a second dispense does not replace the first.
    pub dispensed: Option<StatusMark>,
    /// Dispenses reversed by a valid undo.
    pub undone_dispenses: Vec<StatusMark>,
    pub recalled: Option<StatusMark>,
    pub stolen: Option<StatusMark>,
    pub destroyed: Option<StatusMark>,
    pub decommissioned: Option<StatusMark>,
    /// An `expired` disposition; the date check is the verdict's (it knows "now").
    pub expired: Option<StatusMark>,
    /// The quarantines holding the pack now, oldest first: placed on it, its case or its lot,
    /// and not released.
    pub quarantined: Vec<super::quarantine::Quarantine>,
    pub custody: Custody,
    /// The container the pack is in now, if any.
    pub container: Option<EpcId>,
    /// Everyone the pack was shipped to or received by: normalised party/location ids, the
    /// receiving organisations, and the organisations the directory resolves them to.
    pub recipients: Vec<String>,
    pub history: Vec<HistoryItem>,
    pub suspicions: Vec<Suspicion>,
}

impl PackState {
    /// A pack nothing has happened to yet: what a replay starts from.
    pub fn new(sgtin: Sgtin) -> Self {
        PackState {
            sgtin,
            commissioning: None,
            status: PackStatus::Unknown,
            status_index: None,
            dispensed: None,
            undone_dispenses: Vec::new(),
            recalled: None,
            stolen: None,
            destroyed: None,
            decommissioned: None,
            expired: None,
            quarantined: Vec::new(),
            custody: Custody::default(),
            container: None,
            recipients: Vec::new(),
            history: Vec::new(),
            suspicions: Vec::new(),
        }
    }

    /// Was the pack ever shipped to or received by this organisation (or its site)?
    pub fn was_sent_to(&self, org: &str, site: Option<&str>) -> bool {
        let org = normalise_party(org);
        self.recipients.contains(&org)
            || site.is_some_and(|s| {
                let s = normalise_party(s);
                self.recipients.contains(&s)
            })
    }
}
