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
//! walks the closure with [`containers_of`]); and class-level events for its GTIN + lot or its
//! GTIN ([`classes_of`]), such as a lot recall. [`named_ids`] lists what an event must be
//! indexed under.
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
//!   irreversible. [`PackState::status`] summarises them by precedence.
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

use std::borrow::Borrow;
use std::collections::HashMap;

use crate::epcis::{Action, BizStep, Disposition, Event, EventKind, Location, SourceDestType};
use crate::gs1::{self, CalendarDate, EpcId, Gtin, Lot, Sgtin};
use crate::spelling::spelled;

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

/// An event refused at ingest, or a state change refused by the API.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RuleViolation {
    pub code: RuleCode,
    pub message: String,
    /// Ledger indexes that justify the refusal (e.g. the original commissioning).
    pub evidence: Vec<u64>,
}

/// Which rule refused an event or a state change. Its spelling ([`RuleCode::as_str`]) is what
/// clients see, in a receipt or in GraphQL `extensions.code`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleCode {
    /// Only the brand owner of a GTIN (by GS1 company prefix) may commission it.
    NotBrandOwner,
    /// No brand owner is registered for the GTIN.
    UnknownProduct,
    /// The event's readPoint or bizLocation is a registered site of another organisation: a
    /// device may only report from its own organisation's sites.
    ForeignSite,
    /// The serial exists already (in the ledger or twice in the same event).
    SerialAlreadyCommissioned,
    /// The pack was never commissioned.
    UnknownSerial,
    /// The requested status is already set (NMVS_NC_PCK_19 "status is already set on pack").
    StatusAlreadySet,
    /// A dispense of a pack already dispensed (and not undone).
    AlreadyDispensed,
    /// The caller does not hold the pack and may not change its state (see
    /// `verdict::authorize_change`).
    NotInYourCustody,
    /// The pack is inactive for another reason (NMVS_NC_PCK_22 "pack is already inactive").
    PackInactive,
    /// Nothing to undo (NMVS_NC_PCK_06 "undo attempt doesn't match the pack status").
    UndoStatusMismatch,
    /// Another party dispensed (NMVS_NC_PCK_21 "undo attempted by different user").
    UndoOtherParty,
    /// Past the window (NMVS_NC_PCK_20 "undo timeframe was exceeded").
    UndoWindowPassed,
}

spelled!(RuleCode {
    NotBrandOwner => "NOT_BRAND_OWNER",
    UnknownProduct => "UNKNOWN_PRODUCT",
    ForeignSite => "FOREIGN_SITE",
    SerialAlreadyCommissioned => "SERIAL_ALREADY_COMMISSIONED",
    UnknownSerial => "UNKNOWN_SERIAL",
    StatusAlreadySet => "STATUS_ALREADY_SET",
    AlreadyDispensed => "ALREADY_DISPENSED",
    NotInYourCustody => "NOT_IN_YOUR_CUSTODY",
    PackInactive => "PACK_INACTIVE",
    UndoStatusMismatch => "UNDO_STATUS_MISMATCH",
    UndoOtherParty => "UNDO_OTHER_PARTY",
    UndoWindowPassed => "UNDO_WINDOW_PASSED",
});

impl RuleViolation {
    /// A refusal that cites no evidence, for the adapters' own checks.
    pub fn new_public(code: RuleCode, message: impl Into<String>) -> Self {
        Self::new(code, message, vec![])
    }

    pub(crate) fn new(code: RuleCode, message: impl Into<String>, evidence: Vec<u64>) -> Self {
        RuleViolation {
            code,
            message: message.into(),
            evidence,
        }
    }
}

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
/// expired, in transit, active. `Unknown` means never commissioned.
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
});

impl PackStatus {
    /// Active and in-transit packs may still be supplied.
    pub fn is_active(&self) -> bool {
        matches!(self, PackStatus::Active | PackStatus::InTransit)
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
}

/// Who holds the pack and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Custody {
    /// The `owning_party` destination of the last shipping/receiving (as the organisation the
    /// [`SiteDirectory`] resolves it to, else its normalised id), or the submitting
    /// organisation of a receiving event without one.
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

/// What the rules may know about sites: coordinates (for impossible travel) and the
/// organisation a GLN belongs to (to match `owning_party`/`location` ids against the
/// submitting organisation). The store implements it from its registry.
pub trait SiteDirectory {
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

// ---------------------------------------------------------------------------------------------
// What the store needs to fetch
// ---------------------------------------------------------------------------------------------

/// Every identifier an event must be indexed under: epcList, childEPCs, parentID and the
/// classes of quantityList/childQuantityList.
pub fn named_ids(event: &Event) -> Vec<&EpcId> {
    event
        .epcs
        .iter()
        .chain(&event.children)
        .chain(event.parent.as_ref())
        .chain(event.quantities.iter().map(|q| &q.class))
        .collect()
}

/// The containers `item` was ever aggregated into (AggregationEvent ADD/OBSERVE with `item` in
/// childEPCs), in first-seen order. The store calls it on the events of a pack, then on the
/// events of each container, up to [`MAX_NESTING`] levels.
pub fn containers_of<E: Borrow<LoggedEvent>>(item: &EpcId, events: &[E]) -> Vec<EpcId> {
    let mut out: Vec<EpcId> = Vec::new();
    for le in events {
        let le: &LoggedEvent = le.borrow();
        let e = &le.event;
        if e.kind == EventKind::Aggregation
            && e.action != Action::Delete
            && e.children.contains(item)
            && let Some(p) = &e.parent
            && p != item
            && !out.contains(p)
        {
            out.push(p.clone());
        }
    }
    out
}

/// The classes whose events apply to the pack: its GTIN + commissioned lot (from the
/// commissioning among `events`), and its whole GTIN.
pub fn classes_of<E: Borrow<LoggedEvent>>(pack: &Sgtin, events: &[E]) -> Vec<EpcId> {
    let me = EpcId::Sgtin(pack.clone());
    let mut out = Vec::with_capacity(2);
    if let Some(lot) = first_commissioning(&me, events.iter().map(|e| e.borrow()))
        .and_then(|e| e.event.lot.clone())
    {
        out.push(EpcId::Lgtin {
            gtin: pack.gtin.clone(),
            lot,
        });
    }
    out.push(EpcId::GtinClass(pack.gtin.clone()));
    out
}

// ---------------------------------------------------------------------------------------------
// Ingest rules
// ---------------------------------------------------------------------------------------------

/// What [`check_ingest`] needs from the store.
pub trait IngestContext {
    /// Organisation owning the GS1 company prefix of the GTIN.
    fn brand_owner(&self, gtin: &Gtin) -> Option<String>;
    /// Ledger index of the commissioning of this serial, if any.
    fn already_commissioned(&self, sgtin: &Sgtin) -> Option<u64>;
    /// Organisation a registered site (13-digit GLN) belongs to; `None` when unregistered.
    fn site_owner(&self, _gln: &str) -> Option<String> {
        None
    }
}

/// Is this event a commissioning (ObjectEvent ADD, bizStep commissioning or none)?
pub fn is_commissioning(event: &Event) -> bool {
    event.kind == EventKind::Object
        && event.action == Action::Add
        && matches!(event.biz_step, None | Some(BizStep::Commissioning))
}

/// The SGTINs an event commissions, so the store knows what to look up before
/// [`check_ingest`].
pub fn commissioned_sgtins(event: &Event) -> Vec<Sgtin> {
    if !is_commissioning(event) {
        return Vec::new();
    }
    event
        .epcs
        .iter()
        .filter_map(|id| match id {
            EpcId::Sgtin(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Rejects an event reported from another organisation's registered site, and a
/// commissioning by anyone but the brand owner, of an unregistered product, or of a serial
/// that exists already. Every other event is accepted: suspicious patterns are recorded by
/// [`derive`], not refused.
pub fn check_ingest(
    event: &Event,
    submitter_org: &str,
    ctx: &impl IngestContext,
) -> Result<(), RuleViolation> {
    for (field, loc) in [
        ("readPoint", &event.read_point),
        ("bizLocation", &event.biz_location),
    ] {
        let Some(loc) = loc else { continue };
        let gln = match loc {
            Location::Sgln(s) => s.gln.to_string(),
            Location::Other(uri) => normalise_party(uri),
        };
        if let Some(owner) = ctx.site_owner(&gln)
            && owner != submitter_org
        {
            return Err(RuleViolation::new(
                RuleCode::ForeignSite,
                format!(
                    "{field} {gln} is a site of {owner}; a device of {submitter_org} may only report from its own organization's sites"
                ),
                vec![],
            ));
        }
    }
    let sgtins = commissioned_sgtins(event);
    let mut owners: Vec<(&Gtin, Option<String>)> = Vec::new();
    for (i, s) in sgtins.iter().enumerate() {
        let owner = match owners.iter().find(|(g, _)| *g == &s.gtin) {
            Some((_, o)) => o.clone(),
            None => {
                let o = ctx.brand_owner(&s.gtin);
                owners.push((&s.gtin, o.clone()));
                o
            }
        };
        match owner {
            None => {
                return Err(RuleViolation::new(
                    RuleCode::UnknownProduct,
                    format!(
                        "GTIN {} has no registered brand owner; register its company prefix first",
                        s.gtin
                    ),
                    vec![],
                ));
            }
            Some(o) if o != submitter_org => {
                return Err(RuleViolation::new(
                    RuleCode::NotBrandOwner,
                    format!(
                        "only the brand owner {o} may commission GTIN {}, not {submitter_org}",
                        s.gtin
                    ),
                    vec![],
                ));
            }
            Some(_) => {}
        }
        if sgtins[..i].contains(s) {
            return Err(RuleViolation::new(
                RuleCode::SerialAlreadyCommissioned,
                format!("{s} appears twice in the same commissioning event"),
                vec![],
            ));
        }
        if let Some(index) = ctx.already_commissioned(s) {
            return Err(RuleViolation::new(
                RuleCode::SerialAlreadyCommissioned,
                format!("{s} was already commissioned in ledger entry {index}"),
                vec![index],
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Derivation
// ---------------------------------------------------------------------------------------------

/// The state of `pack` from its events, with default options (no site directory).
pub fn derive<E: Borrow<LoggedEvent>>(pack: &Sgtin, events: &[E]) -> PackState {
    derive_with(pack, events, &DeriveOptions::default())
}

/// The state of `pack` from its events (any order; duplicates by index are ignored).
pub fn derive_with<E: Borrow<LoggedEvent>>(
    pack: &Sgtin,
    events: &[E],
    opts: &DeriveOptions<'_>,
) -> PackState {
    let mut order: Vec<&LoggedEvent> = events.iter().map(|e| e.borrow()).collect();
    order.sort_by_key(|le| (le.event.event_time_ms, le.index));
    order.dedup_by_key(|le| le.index);
    let me = EpcId::Sgtin(pack.clone());
    let lot = first_commissioning(&me, order.iter().copied()).and_then(|e| e.event.lot.clone());
    let tracked = container_closure(&me, events);
    let mut r = Replay {
        opts,
        me,
        lot,
        tracked,
        parent_of: HashMap::new(),
        custodians: Vec::new(),
        shipments: Vec::new(),
        last_sighting: None,
        state: PackState {
            sgtin: pack.clone(),
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
            custody: Custody::default(),
            container: None,
            recipients: Vec::new(),
            history: Vec::new(),
            suspicions: Vec::new(),
        },
    };
    for le in order {
        r.apply(le);
    }
    r.finish()
}

/// `item` and the containers it was ever in, transitively, up to [`MAX_NESTING`] levels.
fn container_closure<E: Borrow<LoggedEvent>>(item: &EpcId, events: &[E]) -> Vec<EpcId> {
    let mut all = vec![item.clone()];
    let mut level = all.clone();
    for _ in 0..MAX_NESTING {
        let mut next = Vec::new();
        for id in &level {
            for c in containers_of(id, events) {
                if !all.contains(&c) {
                    all.push(c.clone());
                    next.push(c);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    all
}

fn first_commissioning<'a>(
    me: &EpcId,
    events: impl Iterator<Item = &'a LoggedEvent>,
) -> Option<&'a LoggedEvent> {
    events
        .filter(|le| is_commissioning(&le.event) && le.event.epcs.contains(me))
        .min_by_key(|le| (le.event.event_time_ms, le.index))
}

/// A shipment that applied to the pack: where it was sent.
struct Shipment {
    index: u64,
    /// Normalised destination ids (owning/possessing party and location).
    destinations: Vec<String>,
}

struct Sighting {
    site: String,
    time_ms: i64,
    index: u64,
}

struct Replay<'o> {
    opts: &'o DeriveOptions<'o>,
    me: EpcId,
    lot: Option<Lot>,
    /// The pack and every container it was ever (transitively) aggregated into.
    tracked: Vec<EpcId>,
    /// child → parent as of the current replay time, for tracked ids.
    parent_of: HashMap<EpcId, EpcId>,
    /// Normalised ids allowed to ship the pack now (holder, and addressee while in transit).
    custodians: Vec<String>,
    shipments: Vec<Shipment>,
    last_sighting: Option<Sighting>,
    state: PackState,
}

impl Replay<'_> {
    fn apply(&mut self, le: &LoggedEvent) {
        let e = &le.event;
        if let Some(via) = self.relation(e) {
            self.state.history.push(HistoryItem {
                index: le.index,
                event_time_ms: e.event_time_ms,
                kind: e.kind,
                action: e.action,
                biz_step: e.biz_step,
                disposition: e.disposition,
                org: le.org.clone(),
                location: event_location(e).or_else(|| le.site.as_deref().map(normalise_party)),
                via: via.clone(),
            });
            if e.kind != EventKind::Aggregation {
                if !matches!(via, Via::Class(_)) {
                    self.sighting(le);
                }
                self.status_effects(le, &via);
                if !matches!(via, Via::Class(_)) {
                    self.custody_effects(le, &via);
                }
            }
        }
        if e.kind == EventKind::Aggregation {
            self.restructure(e);
        }
    }

    /// How `e` reaches the pack, judged with the containment in force just before it.
    fn relation(&self, e: &Event) -> Option<Via> {
        let aggregation = e.kind == EventKind::Aggregation;
        let names = |id: &EpcId, as_ancestor: bool| {
            if aggregation {
                e.children.contains(id)
                    || (e.parent.as_ref() == Some(id) && (!as_ancestor || e.children.is_empty()))
            } else {
                e.epcs.contains(id) || e.parent.as_ref() == Some(id)
            }
        };
        if names(&self.me, false) {
            return Some(Via::Direct);
        }
        let mut cur = &self.me;
        for _ in 0..MAX_NESTING {
            let Some(p) = self.parent_of.get(cur) else {
                break;
            };
            if p == &self.me {
                break;
            }
            if names(p, true) {
                return Some(Via::Container(p.clone()));
            }
            cur = p;
        }
        e.quantities.iter().find_map(|q| match &q.class {
            EpcId::Lgtin { gtin, lot }
                if *gtin == self.state.sgtin.gtin && Some(lot) == self.lot.as_ref() =>
            {
                Some(Via::Class(q.class.clone()))
            }
            EpcId::GtinClass(g) if *g == self.state.sgtin.gtin => Some(Via::Class(q.class.clone())),
            _ => None,
        })
    }

    /// Follows packing and unpacking, for the pack and its possible containers only: the
    /// siblings in a case never matter, and skipping them keeps a derive cheap.
    fn restructure(&mut self, e: &Event) {
        let Some(parent) = &e.parent else { return };
        match e.action {
            Action::Add | Action::Observe => {
                for t in &self.tracked {
                    if t != parent && e.children.contains(t) {
                        self.parent_of.insert(t.clone(), parent.clone());
                    }
                }
            }
            Action::Delete if e.children.is_empty() => self.parent_of.retain(|_, p| p != parent),
            Action::Delete => {
                for t in &self.tracked {
                    if e.children.contains(t) && self.parent_of.get(t) == Some(parent) {
                        self.parent_of.remove(t);
                    }
                }
            }
        }
    }

    fn status_effects(&mut self, le: &LoggedEvent, via: &Via) {
        let e = &le.event;
        let mark = || StatusMark {
            index: le.index,
            event_time_ms: e.event_time_ms,
            org: le.org.clone(),
            site: le.site.clone(),
        };
        let s = &mut self.state;
        if *via == Via::Direct && is_commissioning(e) {
            if s.commissioning.is_none() {
                s.commissioning = Some(Commissioning {
                    index: le.index,
                    event_time_ms: e.event_time_ms,
                    org: le.org.clone(),
                    lot: e.lot.clone(),
                    expiry: e.item_expiration,
                });
            }
            return;
        }
        if let Some(target) = undo_target(e) {
            self.undo(le, via, target);
            return;
        }
        let step = e.biz_step;
        let disp = e.disposition;
        let mut flagged = false;
        if step == Some(BizStep::Dispensing)
            || matches!(
                disp,
                Some(Disposition::Dispensed | Disposition::PartiallyDispensed)
            )
        {
            flagged = true;
            match &s.dispensed {
                Some(first) => {
                    let first_index = first.index;
                    s.suspicions.push(Suspicion {
                        code: Suspicion::DISPENSED_TWICE,
                        message: format!(
                            "dispensed again on {} although already dispensed on {}",
                            crate::epcis::format_time(e.event_time_ms),
                            crate::epcis::format_time(first.event_time_ms)
                        ),
                        evidence: vec![first_index, le.index],
                    });
                }
                None => s.dispensed = Some(mark()),
            }
        }
        if step == Some(BizStep::Destroying)
            || matches!(disp, Some(Disposition::Destroyed | Disposition::Disposed))
        {
            flagged = true;
            s.destroyed.get_or_insert_with(mark);
        }
        let slot = match disp {
            Some(Disposition::Stolen) => Some(&mut s.stolen),
            Some(Disposition::Recalled) => Some(&mut s.recalled),
            Some(Disposition::Expired) => Some(&mut s.expired),
            _ => None,
        };
        if let Some(slot) = slot {
            flagged = true;
            slot.get_or_insert_with(mark);
        }
        let deleted = e.kind == EventKind::Object && e.action == Action::Delete;
        if !flagged
            && (step == Some(BizStep::Decommissioning)
                || disp == Some(Disposition::Inactive)
                || deleted)
        {
            s.decommissioned.get_or_insert_with(mark);
        }
    }

    fn undo(&mut self, le: &LoggedEvent, via: &Via, target: u64) {
        let window = self.opts.undo_window_ms;
        let s = &mut self.state;
        let refusal = match &s.dispensed {
            _ if *via != Via::Direct => Some("an undo must name the pack itself".to_owned()),
            None => Some(format!(
                "entry {target} is not a current dispense of this pack"
            )),
            Some(d) if d.index != target => Some(format!(
                "entry {target} is not the current dispense (entry {})",
                d.index
            )),
            Some(d) if d.org != le.org => {
                Some("the undo comes from another organisation than the dispense".to_owned())
            }
            Some(d) if le.event.event_time_ms - d.event_time_ms > window => {
                Some("the undo comes after the undo window".to_owned())
            }
            Some(d) if le.event.event_time_ms < d.event_time_ms => {
                Some("the undo is dated before the dispense".to_owned())
            }
            Some(_) => None,
        };
        match refusal {
            Some(why) => s.suspicions.push(Suspicion {
                code: Suspicion::UNDO_REJECTED,
                message: format!("undo ignored: {why}"),
                evidence: vec![target, le.index],
            }),
            None => {
                if let Some(d) = s.dispensed.take() {
                    s.undone_dispenses.push(d);
                }
            }
        }
    }

    fn custody_effects(&mut self, le: &LoggedEvent, via: &Via) {
        let e = &le.event;
        let commissioning = *via == Via::Direct && is_commissioning(e);
        let shipping = e.biz_step == Some(BizStep::Shipping);
        let receiving = e.biz_step == Some(BizStep::Receiving);
        if !(commissioning || shipping || receiving) {
            // Most of a pack's events (storing, picking, inspecting, ...) move no custody:
            // skip normalising their parties.
            return;
        }
        let org = normalise_party(&le.org);
        let site = le.site.as_deref().map(normalise_party);
        let here = event_location(e).or_else(|| site.clone());
        let dest = |kind: SourceDestType| -> Vec<String> {
            e.destinations
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| normalise_party(&p.id))
                .collect()
        };
        let (dest_owner, dest_loc) = (
            dest(SourceDestType::OwningParty),
            dest(SourceDestType::Location),
        );

        if commissioning {
            self.custodians = vec![org.clone()];
            self.state.custody = Custody {
                owner: Some(le.org.clone()),
                location: here,
                in_transit: false,
                index: Some(le.index),
            };
            return;
        }
        if shipping {
            if !self.custodians.is_empty() && !self.holds(&org, site.as_deref()) {
                let mut evidence: Vec<u64> = self.state.custody.index.into_iter().collect();
                evidence.push(le.index);
                self.state.suspicions.push(Suspicion {
                    code: Suspicion::SHIPPED_NOT_HELD,
                    message: format!(
                        "{} shipped the pack while {} held it",
                        le.org,
                        self.state
                            .custody
                            .owner
                            .as_deref()
                            .unwrap_or("another party")
                    ),
                    evidence,
                });
            }
            let mut destinations: Vec<String> = e
                .destinations
                .iter()
                .map(|p| normalise_party(&p.id))
                .collect();
            let resolved: Vec<String> = destinations
                .iter()
                .filter_map(|d| self.opts.directory.organization(d))
                .map(|o| normalise_party(&o))
                .collect();
            destinations.extend(resolved);
            self.custodians = std::iter::once(org).chain(destinations.clone()).collect();
            for d in &destinations {
                self.add_recipient(d.clone());
            }
            self.shipments.push(Shipment {
                index: le.index,
                destinations,
            });
            let c = &mut self.state.custody;
            c.in_transit = true;
            c.index = Some(le.index);
            if let Some(o) = dest_owner.first() {
                c.owner = Some(
                    self.opts
                        .directory
                        .organization(o)
                        .unwrap_or_else(|| o.clone()),
                );
            }
            if let Some(l) = dest_loc.first() {
                c.location = Some(l.clone());
            }
        } else if receiving {
            self.check_receipt(le, &org, site.as_deref(), here.as_deref());
            let owner = dest_owner
                .first()
                .map(|o| {
                    self.opts
                        .directory
                        .organization(o)
                        .unwrap_or_else(|| o.clone())
                })
                .unwrap_or_else(|| le.org.clone());
            self.custodians = vec![normalise_party(&owner), org.clone()];
            self.add_recipient(org);
            for id in dest_owner.iter().chain(&dest_loc).chain(site.iter()) {
                self.add_recipient(id.clone());
            }
            self.state.custody = Custody {
                owner: Some(owner),
                location: dest_loc.first().cloned().or(here),
                in_transit: false,
                index: Some(le.index),
            };
        }
    }

    fn holds(&self, org: &str, site: Option<&str>) -> bool {
        self.custodians
            .iter()
            .any(|c| c == org || Some(c.as_str()) == site)
            || self
                .custodians
                .iter()
                .filter_map(|c| self.opts.directory.organization(c))
                .any(|o| normalise_party(&o) == org)
    }

    fn check_receipt(
        &mut self,
        le: &LoggedEvent,
        org: &str,
        site: Option<&str>,
        here: Option<&str>,
    ) {
        let addressed = |d: &String| {
            d == org
                || Some(d.as_str()) == site
                || Some(d.as_str()) == here
                || self
                    .opts
                    .directory
                    .organization(d)
                    .is_some_and(|o| normalise_party(&o) == org)
        };
        let matched = self
            .shipments
            .iter()
            .any(|s| s.destinations.is_empty() || s.destinations.iter().any(addressed));
        if matched {
            return;
        }
        let (message, mut evidence) = match self.shipments.last() {
            None => (
                format!(
                    "{} received the pack but no shipment of it was recorded before",
                    le.org
                ),
                vec![],
            ),
            Some(s) => (
                format!(
                    "{} received the pack but it was shipped to {}",
                    le.org,
                    s.destinations.join(", ")
                ),
                vec![s.index],
            ),
        };
        evidence.push(le.index);
        self.state.suspicions.push(Suspicion {
            code: Suspicion::RECEIVED_WITHOUT_SHIPMENT,
            message,
            evidence,
        });
    }

    fn add_recipient(&mut self, id: String) {
        if !self.state.recipients.contains(&id) {
            self.state.recipients.push(id);
        }
    }

    /// Impossible travel between consecutive sightings at different sites.
    fn sighting(&mut self, le: &LoggedEvent) {
        let site = le
            .site
            .as_deref()
            .map(normalise_party)
            .or_else(|| event_location(&le.event));
        let Some(site) = site else { return };
        let t = le.event.event_time_ms;
        if let Some(prev) = &self.last_sighting
            && prev.site != site
        {
            let dt_ms = t - prev.time_ms;
            let dir = self.opts.directory;
            let impossible = match (dir.coordinates(&prev.site), dir.coordinates(&site)) {
                (Some(a), Some(b)) => {
                    let km = haversine_km(a, b);
                    km > 1.0
                        && (dt_ms <= 0
                            || km / (dt_ms as f64 / 3_600_000.0) > self.opts.max_speed_kmh)
                }
                _ => dt_ms < UNKNOWN_SITE_MIN_GAP_MS,
            };
            if impossible {
                self.state.suspicions.push(Suspicion {
                    code: Suspicion::IMPOSSIBLE_TRAVEL,
                    message: format!(
                        "seen at {} and {} site {} s apart",
                        prev.site,
                        site,
                        dt_ms / 1000
                    ),
                    evidence: vec![prev.index, le.index],
                });
            }
        }
        self.last_sighting = Some(Sighting {
            site,
            time_ms: t,
            index: le.index,
        });
    }

    fn finish(mut self) -> PackState {
        let s = &mut self.state;
        s.container = self.parent_of.get(&self.me).cloned();
        let ranked = [
            (PackStatus::Destroyed, &s.destroyed),
            (PackStatus::Dispensed, &s.dispensed),
            (PackStatus::Decommissioned, &s.decommissioned),
            (PackStatus::Stolen, &s.stolen),
            (PackStatus::Recalled, &s.recalled),
            (PackStatus::Expired, &s.expired),
        ];
        let (status, index) = match (&s.commissioning, ranked.iter().find(|(_, m)| m.is_some())) {
            (None, _) => (PackStatus::Unknown, None),
            (Some(_), Some((st, m))) => (*st, m.as_ref().map(|m| m.index)),
            (Some(c), None) if s.custody.in_transit => {
                (PackStatus::InTransit, s.custody.index.or(Some(c.index)))
            }
            (Some(c), None) => (PackStatus::Active, s.custody.index.or(Some(c.index))),
        };
        s.status = status;
        s.status_index = index;
        self.state
    }
}

/// The ledger index an undo event reverses, if `e` is one (see the module docs).
pub fn undo_target(e: &Event) -> Option<u64> {
    e.biz_transactions
        .iter()
        .filter(|t| t.kind.as_deref() == Some(UNDO_TRANSACTION_TYPE))
        .find_map(|t| t.id.strip_prefix(LEDGER_ENTRY_PREFIX)?.parse().ok())
}

/// bizLocation, else readPoint, as a normalised id (GLN without extension when an SGLN).
fn event_location(e: &Event) -> Option<String> {
    e.biz_location
        .as_ref()
        .or(e.read_point.as_ref())
        .map(|l| match l {
            Location::Sgln(s) => s.gln.to_string(),
            Location::Other(uri) => normalise_party(uri),
        })
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

fn haversine_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// Event builders shared by the unit tests of `pack` and `verdict`.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::LoggedEvent;
    use crate::epcis::{format_time, parse_event, parse_time};
    use crate::gs1::{EpcId, Gln, Gtin, Sgtin, Sscc, check_digit, parse_epc};

    pub const GTIN: &str = "09506000134352";
    pub const MINUTE: i64 = 60_000;
    pub const DAY: i64 = 86_400_000;

    pub fn t0() -> i64 {
        parse_time("2025-01-06T08:00:00Z").unwrap()
    }

    pub fn at(minutes: i64) -> i64 {
        t0() + minutes * MINUTE
    }

    pub fn gtin() -> Gtin {
        Gtin::parse(GTIN).unwrap()
    }

    pub fn sgtin(serial: &str) -> Sgtin {
        match parse_epc(&pack_uri(serial)).unwrap() {
            EpcId::Sgtin(s) => s,
            other => panic!("{other:?}"),
        }
    }

    pub fn pack_uri(serial: &str) -> String {
        format!("https://id.gs1.org/01/{GTIN}/21/{serial}")
    }

    pub fn with_cd(body: &str) -> String {
        format!("{body}{}", check_digit(body).unwrap())
    }

    pub fn sscc(n: u32) -> Sscc {
        Sscc::parse(&with_cd(&format!("09506000{n:09}"))).unwrap()
    }

    pub fn sscc_uri(n: u32) -> String {
        format!("https://id.gs1.org/00/{}", sscc(n))
    }

    pub fn gln(n: u32) -> Gln {
        Gln::parse(&with_cd(&format!("9506000{n:05}"))).unwrap()
    }

    pub fn pgln(n: u32) -> String {
        format!("urn:epc:id:pgln:9506000.{n:05}")
    }

    pub fn sgln(n: u32) -> String {
        format!("urn:epc:id:sgln:9506000.{n:05}.0")
    }

    /// Sites 1..=4: manufacturer (Paris), wholesaler (Lyon), pharmacy-a (Marseille),
    /// pharmacy-b (Berlin).
    pub fn directory() -> HashMap<String, (String, Option<(f64, f64)>)> {
        [
            (1, "mah", (48.85, 2.35)),
            (2, "wholesaler", (45.76, 4.84)),
            (3, "pharmacy-a", (43.30, 5.37)),
            (4, "pharmacy-b", (52.52, 13.40)),
        ]
        .into_iter()
        .map(|(n, org, c)| (gln(n).to_string(), (org.to_owned(), Some(c))))
        .collect()
    }

    pub fn org_site(org: &str) -> u32 {
        match org {
            "mah" => 1,
            "wholesaler" => 2,
            "pharmacy-a" => 3,
            "pharmacy-b" => 4,
            _ => 9,
        }
    }

    fn base(kind: &str, action: &str, time_ms: i64) -> Value {
        json!({
            "type": kind,
            "action": action,
            "eventTime": format_time(time_ms),
            "eventTimeZoneOffset": "+00:00",
        })
    }

    pub fn commission(serials: &[&str], time_ms: i64, lot: &str, expiry: &str) -> Value {
        let mut e = base("ObjectEvent", "ADD", time_ms);
        e["epcList"] = json!(serials.iter().map(|s| pack_uri(s)).collect::<Vec<_>>());
        e["bizStep"] = json!("commissioning");
        e["disposition"] = json!("active");
        e["bizLocation"] = json!({"id": sgln(1)});
        e["ilmd"] = json!({"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry});
        e
    }

    pub fn aggregate(action: &str, parent: &str, children: &[String], time_ms: i64) -> Value {
        let mut e = base("AggregationEvent", action, time_ms);
        e["parentID"] = json!(parent);
        e["childEPCs"] = json!(children);
        e["bizStep"] = json!(if action == "DELETE" {
            "unpacking"
        } else {
            "packing"
        });
        e
    }

    pub fn ship(epcs: &[String], time_ms: i64, from: u32, to: u32) -> Value {
        let mut e = base("ObjectEvent", "OBSERVE", time_ms);
        e["epcList"] = json!(epcs);
        e["bizStep"] = json!("shipping");
        e["disposition"] = json!("in_transit");
        e["readPoint"] = json!({"id": sgln(from)});
        e["sourceList"] = json!([
            {"type": "owning_party", "source": pgln(from)},
            {"type": "location", "source": sgln(from)},
        ]);
        e["destinationList"] = json!([
            {"type": "owning_party", "destination": pgln(to)},
            {"type": "location", "destination": sgln(to)},
        ]);
        e
    }

    pub fn receive(epcs: &[String], time_ms: i64, at_site: u32) -> Value {
        let mut e = base("ObjectEvent", "OBSERVE", time_ms);
        e["epcList"] = json!(epcs);
        e["bizStep"] = json!("receiving");
        e["disposition"] = json!("active");
        e["bizLocation"] = json!({"id": sgln(at_site)});
        e
    }

    pub fn observe(epcs: &[String], time_ms: i64, disposition: &str) -> Value {
        let mut e = base("ObjectEvent", "OBSERVE", time_ms);
        e["epcList"] = json!(epcs);
        e["disposition"] = json!(disposition);
        e
    }

    /// A ledger entry submitted by `org` from its own site.
    pub fn logged(index: u64, json: &Value, org: &str) -> LoggedEvent {
        LoggedEvent {
            index,
            event: parse_event(json).unwrap_or_else(|e| panic!("{e}: {json}")),
            org: org.to_owned(),
            site: Some(gln(org_site(org)).to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::fixtures::*;
    use super::*;
    use crate::verdict::{dispense_event, undo_dispense_event};

    fn packs(serials: &[&str]) -> Vec<String> {
        serials.iter().map(|s| pack_uri(s)).collect()
    }

    fn codes(s: &PackState) -> Vec<&'static str> {
        s.suspicions.iter().map(|x| x.code).collect()
    }

    /// Commissioned at the manufacturer, packed in case 1, case 1 on pallet 100.
    fn packed() -> Vec<LoggedEvent> {
        vec![
            logged(
                1,
                &commission(&["A", "B"], at(0), "L1", "2030-12-31"),
                "mah",
            ),
            logged(
                2,
                &aggregate("ADD", &sscc_uri(1), &packs(&["A", "B"]), at(10)),
                "mah",
            ),
            logged(
                3,
                &aggregate("ADD", &sscc_uri(100), &[sscc_uri(1)], at(20)),
                "mah",
            ),
        ]
    }

    fn derive_dir(events: &[LoggedEvent]) -> PackState {
        let dir = directory();
        derive_with(
            &sgtin("A"),
            events,
            &DeriveOptions {
                directory: &dir,
                ..DeriveOptions::default()
            },
        )
    }

    #[test]
    fn commissioning_sets_owner_lot_and_expiry() {
        let s = derive(&sgtin("A"), &packed()[..1]);
        let c = s.commissioning.as_ref().unwrap();
        assert_eq!((c.index, c.org.as_str()), (1, "mah"));
        assert_eq!(c.lot.as_ref().unwrap().as_str(), "L1");
        assert_eq!(c.expiry, CalendarDate::new(2030, 12, 31));
        assert_eq!(s.status, PackStatus::Active);
        assert_eq!(s.custody.owner.as_deref(), Some("mah"));
        assert_eq!(s.custody.location, Some(gln(1).to_string()));
        assert!(s.suspicions.is_empty());
        assert_eq!(derive(&sgtin("Z"), &packed()).status, PackStatus::Unknown);
    }

    #[test]
    fn moves_are_inherited_through_case_and_pallet() {
        let mut ev = packed();
        ev.push(logged(4, &ship(&[sscc_uri(100)], at(60), 1, 2), "mah"));
        let s = derive_dir(&ev);
        assert_eq!(s.status, PackStatus::InTransit);
        assert_eq!(s.container, Some(EpcId::Sscc(sscc(1))));
        let last = s.history.last().unwrap();
        assert_eq!(last.index, 4);
        assert_eq!(last.via, Via::Container(EpcId::Sscc(sscc(100))));
        assert_eq!(s.history[2].via, Via::Container(EpcId::Sscc(sscc(1))));
        assert_eq!(s.custody.owner.as_deref(), Some("wholesaler"));
        assert_eq!(
            derive(&sgtin("A"), &ev).custody.owner,
            Some(gln(2).to_string())
        );

        ev.push(logged(
            5,
            &receive(&[sscc_uri(100)], at(300), 2),
            "wholesaler",
        ));
        let s = derive_dir(&ev);
        assert_eq!(s.status, PackStatus::Active);
        assert_eq!(s.custody.owner.as_deref(), Some("wholesaler"));
        assert_eq!(s.custody.location, Some(gln(2).to_string()));
        assert!(s.suspicions.is_empty(), "{:?}", s.suspicions);
        assert!(s.was_sent_to("wholesaler", None));
        assert!(!s.was_sent_to("pharmacy-a", None));
    }

    #[test]
    fn unpacking_ends_inheritance() {
        let mut ev = packed();
        // Pallet unpacked (no children: all out), then the pallet id is reported stolen.
        ev.push(logged(
            4,
            &aggregate("DELETE", &sscc_uri(100), &[], at(30)),
            "mah",
        ));
        ev.push(logged(
            5,
            &observe(&[sscc_uri(100)], at(40), "stolen"),
            "mah",
        ));
        let s = derive(&sgtin("A"), &ev);
        assert!(s.stolen.is_none());
        assert_eq!(s.container, Some(EpcId::Sscc(sscc(1))));
        // Pack A taken out of case 1; the case is then stolen with B still inside.
        ev.push(logged(
            6,
            &aggregate("DELETE", &sscc_uri(1), &packs(&["A"]), at(50)),
            "mah",
        ));
        ev.push(logged(7, &observe(&[sscc_uri(1)], at(60), "stolen"), "mah"));
        let a = derive(&sgtin("A"), &ev);
        assert!(a.stolen.is_none());
        assert_eq!(a.container, None);
        let b = derive(&sgtin("B"), &ev);
        assert_eq!(b.stolen.as_ref().map(|m| m.index), Some(7));
        assert_eq!(b.status, PackStatus::Stolen);
    }

    #[test]
    fn moves_before_packing_are_not_inherited() {
        let mut ev = packed();
        ev.push(logged(4, &observe(&[sscc_uri(1)], at(5), "stolen"), "mah"));
        assert!(derive(&sgtin("A"), &ev).stolen.is_none());
    }

    #[test]
    fn receipt_arriving_before_its_shipping_is_fine_once_both_are_in() {
        let mut ev = packed();
        // The receiving reaches the ledger first (index 4) but happened after the shipping.
        ev.push(logged(
            4,
            &receive(&[sscc_uri(100)], at(300), 2),
            "wholesaler",
        ));
        let s = derive_dir(&ev);
        assert_eq!(codes(&s), [Suspicion::RECEIVED_WITHOUT_SHIPMENT]);
        assert_eq!(s.suspicions[0].evidence, [4]);

        ev.push(logged(5, &ship(&[sscc_uri(100)], at(60), 1, 2), "mah"));
        let s = derive_dir(&ev);
        assert!(s.suspicions.is_empty(), "{:?}", s.suspicions);
        assert_eq!(s.status, PackStatus::Active);
        assert_eq!(s.custody.index, Some(4));
    }

    #[test]
    fn receiving_a_pack_shipped_to_someone_else() {
        let mut ev = packed();
        ev.push(logged(4, &ship(&packs(&["A"]), at(60), 1, 2), "mah"));
        ev.push(logged(
            5,
            &receive(&packs(&["A"]), at(300), 3),
            "pharmacy-a",
        ));
        let s = derive_dir(&ev);
        assert_eq!(codes(&s), [Suspicion::RECEIVED_WITHOUT_SHIPMENT]);
        assert_eq!(s.suspicions[0].evidence, [4, 5]);
    }

    #[test]
    fn shipping_a_pack_you_do_not_hold() {
        let mut ev = packed();
        ev.push(logged(
            4,
            &ship(&packs(&["A"]), at(600), 4, 3),
            "pharmacy-b",
        ));
        let s = derive_dir(&ev);
        assert_eq!(codes(&s), [Suspicion::SHIPPED_NOT_HELD]);
        assert_eq!(s.suspicions[0].evidence, [1, 4]);
        // The rightful holder shipping is fine, and so is the addressee forwarding it.
        let mut ev = packed();
        ev.push(logged(4, &ship(&packs(&["A"]), at(60), 1, 2), "mah"));
        ev.push(logged(
            5,
            &ship(&packs(&["A"]), at(600), 2, 3),
            "wholesaler",
        ));
        assert!(derive_dir(&ev).suspicions.is_empty());
    }

    #[test]
    fn dispensed_twice_keeps_the_first_dispense() {
        let mut ev = packed();
        let d1 = dispense_event(&sgtin("A"), &gln(3), at(1000));
        let d2 = dispense_event(&sgtin("A"), &gln(4), at(3000));
        ev.push(logged(4, &d1, "pharmacy-a"));
        ev.push(logged(5, &d2, "pharmacy-b"));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.status, PackStatus::Dispensed);
        assert_eq!(s.status_index, Some(4));
        let d = s.dispensed.as_ref().unwrap();
        assert_eq!((d.index, d.org.as_str()), (4, "pharmacy-a"));
        assert_eq!(codes(&s), [Suspicion::DISPENSED_TWICE]);
        assert_eq!(s.suspicions[0].evidence, [4, 5]);
    }

    #[test]
    fn impossible_travel_with_coordinates() {
        let mut ev = packed();
        // Marseille then Berlin (~1,200 km) 30 minutes apart.
        ev.push(logged(
            4,
            &observe(&packs(&["A"]), at(100), "active"),
            "pharmacy-a",
        ));
        ev.push(logged(
            5,
            &observe(&packs(&["A"]), at(130), "active"),
            "pharmacy-b",
        ));
        let s = derive_dir(&ev);
        assert_eq!(codes(&s), [Suspicion::IMPOSSIBLE_TRAVEL]);
        assert_eq!(s.suspicions[0].evidence, [4, 5]);
        // Five hours apart is a flight.
        ev[4] = logged(5, &observe(&packs(&["A"]), at(400), "active"), "pharmacy-b");
        assert!(derive_dir(&ev).suspicions.is_empty());
    }

    #[test]
    fn impossible_travel_without_coordinates() {
        let mut ev = packed();
        let seen = |index: u64, time_ms: i64, site: u32| {
            let mut le = logged(index, &observe(&packs(&["A"]), time_ms, "active"), "x");
            le.site = Some(gln(site).to_string());
            le
        };
        ev.push(seen(4, at(100), 7));
        ev.push(seen(5, at(100) + 30_000, 8));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(codes(&s), [Suspicion::IMPOSSIBLE_TRAVEL]);
        ev[4] = seen(5, at(102), 8);
        assert!(derive(&sgtin("A"), &ev).suspicions.is_empty());
    }

    #[test]
    fn undo_by_the_dispenser_within_the_window() {
        let mut ev = packed();
        ev.push(logged(
            4,
            &dispense_event(&sgtin("A"), &gln(3), at(1000)),
            "pharmacy-a",
        ));
        ev.push(logged(
            5,
            &undo_dispense_event(&sgtin("A"), 4, &gln(3), at(1000) + DAY),
            "pharmacy-a",
        ));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(undo_target(&ev[4].event), Some(4));
        assert_eq!(s.status, PackStatus::Active);
        assert!(s.dispensed.is_none());
        assert_eq!(s.undone_dispenses[0].index, 4);
        assert!(s.suspicions.is_empty());
        // It can be dispensed again afterwards without DISPENSED_TWICE.
        ev.push(logged(
            6,
            &dispense_event(&sgtin("A"), &gln(3), at(1000) + 2 * DAY),
            "pharmacy-a",
        ));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.dispensed.as_ref().map(|d| d.index), Some(6));
        assert!(s.suspicions.is_empty());
    }

    #[test]
    fn invalid_undos_are_ignored_and_recorded() {
        let base = {
            let mut ev = packed();
            ev.push(logged(
                4,
                &dispense_event(&sgtin("A"), &gln(3), at(1000)),
                "pharmacy-a",
            ));
            ev
        };
        let cases = [
            (
                undo_dispense_event(&sgtin("A"), 4, &gln(4), at(1100)),
                "pharmacy-b",
            ),
            (
                undo_dispense_event(&sgtin("A"), 4, &gln(3), at(1000) + 11 * DAY),
                "pharmacy-a",
            ),
            (
                undo_dispense_event(&sgtin("A"), 3, &gln(3), at(1100)),
                "pharmacy-a",
            ),
        ];
        for (undo, org) in cases {
            let mut ev = base.clone();
            ev.push(logged(5, &undo, org));
            let s = derive(&sgtin("A"), &ev);
            assert_eq!(s.status, PackStatus::Dispensed, "{org}");
            assert_eq!(codes(&s), [Suspicion::UNDO_REJECTED]);
        }
    }

    #[test]
    fn lot_recall_reaches_packs_inside_cases_but_not_other_lots() {
        let mut ev = packed();
        let recall = crate::verdict::recall_lot_event(
            &gtin(),
            &crate::gs1::Lot::parse("L1").unwrap(),
            7,
            &gln(1),
            at(500),
        )
        .unwrap();
        ev.push(logged(4, &recall, "mah"));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.status, PackStatus::Recalled);
        assert_eq!(s.container, Some(EpcId::Sscc(sscc(1))));
        assert!(matches!(
            s.history.last().unwrap().via,
            Via::Class(EpcId::Lgtin { .. })
        ));

        let mut other = vec![logged(
            1,
            &commission(&["A"], at(0), "L2", "2030-12-31"),
            "mah",
        )];
        other.push(logged(4, &recall, "mah"));
        assert_eq!(derive(&sgtin("A"), &other).status, PackStatus::Active);
    }

    #[test]
    fn statuses_from_cbv_vocabulary_and_precedence() {
        let one = |json: Value| {
            let mut ev = packed();
            ev.push(logged(4, &json, "mah"));
            derive(&sgtin("A"), &ev)
        };
        assert_eq!(
            one(observe(&packs(&["A"]), at(50), "destroyed")).status,
            PackStatus::Destroyed
        );
        assert_eq!(
            one(observe(&packs(&["A"]), at(50), "expired")).status,
            PackStatus::Expired
        );
        assert_eq!(
            one(observe(&packs(&["A"]), at(50), "inactive")).status,
            PackStatus::Decommissioned
        );
        let mut gone = observe(&packs(&["A"]), at(50), "inactive");
        gone["bizStep"] = json!("decommissioning");
        assert_eq!(one(gone).decommissioned.as_ref().map(|m| m.index), Some(4));
        let mut deleted = observe(&packs(&["A"]), at(50), "inactive");
        deleted["action"] = json!("DELETE");
        deleted.as_object_mut().unwrap().remove("disposition");
        assert_eq!(one(deleted).status, PackStatus::Decommissioned);

        // Recalled then destroyed: both kept, destroyed wins the summary.
        let mut ev = packed();
        ev.push(logged(
            4,
            &observe(&packs(&["A"]), at(50), "recalled"),
            "mah",
        ));
        ev.push(logged(
            5,
            &observe(&packs(&["A"]), at(60), "destroyed"),
            "mah",
        ));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!((s.status, s.status_index), (PackStatus::Destroyed, Some(5)));
        assert!(s.recalled.is_some());
    }

    #[test]
    fn duplicate_entries_count_once() {
        let mut ev = packed();
        let d = logged(
            4,
            &dispense_event(&sgtin("A"), &gln(3), at(1000)),
            "pharmacy-a",
        );
        ev.push(d.clone());
        ev.push(d);
        let s = derive(&sgtin("A"), &ev);
        assert!(s.suspicions.is_empty());
        assert_eq!(s.history.len(), 4);
    }

    #[test]
    fn the_store_can_walk_the_container_closure() {
        let ev = packed();
        let me = EpcId::Sgtin(sgtin("A"));
        assert_eq!(containers_of(&me, &ev), [EpcId::Sscc(sscc(1))]);
        assert_eq!(
            containers_of(&EpcId::Sscc(sscc(1)), &ev),
            [EpcId::Sscc(sscc(100))]
        );
        assert!(containers_of(&EpcId::Sscc(sscc(100)), &ev).is_empty());
        assert_eq!(
            classes_of(&sgtin("A"), &ev),
            [
                EpcId::Lgtin {
                    gtin: gtin(),
                    lot: crate::gs1::Lot::parse("L1").unwrap()
                },
                EpcId::GtinClass(gtin())
            ]
        );
        assert_eq!(named_ids(&ev[1].event).len(), 3);
    }

    struct Registry {
        owner: Option<&'static str>,
        existing: Option<u64>,
    }

    impl IngestContext for Registry {
        fn brand_owner(&self, _: &Gtin) -> Option<String> {
            self.owner.map(str::to_owned)
        }
        fn already_commissioned(&self, s: &Sgtin) -> Option<u64> {
            self.existing.filter(|_| s.serial.as_str() == "B")
        }
    }

    #[test]
    fn ingest_rules() {
        let ok = Registry {
            owner: Some("mah"),
            existing: None,
        };
        let c = logged(
            1,
            &commission(&["A", "B"], at(0), "L1", "2030-12-31"),
            "mah",
        )
        .event;
        assert_eq!(commissioned_sgtins(&c), [sgtin("A"), sgtin("B")]);
        assert_eq!(check_ingest(&c, "mah", &ok), Ok(()));

        let err = check_ingest(&c, "pharmacy-a", &ok).unwrap_err();
        assert_eq!(err.code, RuleCode::NotBrandOwner);
        let unknown = Registry {
            owner: None,
            existing: None,
        };
        assert_eq!(
            check_ingest(&c, "mah", &unknown).unwrap_err().code,
            RuleCode::UnknownProduct
        );
        let seen = Registry {
            owner: Some("mah"),
            existing: Some(42),
        };
        let err = check_ingest(&c, "mah", &seen).unwrap_err();
        assert_eq!(
            (err.code, err.evidence),
            (RuleCode::SerialAlreadyCommissioned, vec![42])
        );
        let twice = logged(
            1,
            &commission(&["A", "A"], at(0), "L1", "2030-12-31"),
            "mah",
        )
        .event;
        assert_eq!(
            check_ingest(&twice, "mah", &ok).unwrap_err().code,
            RuleCode::SerialAlreadyCommissioned
        );
        // Anything that is not a commissioning is accepted, even from a stranger.
        let d = logged(2, &dispense_event(&sgtin("B"), &gln(3), at(9)), "x").event;
        assert!(commissioned_sgtins(&d).is_empty());
        assert_eq!(check_ingest(&d, "x", &seen), Ok(()));
    }

    #[test]
    fn rule_codes_keep_their_spellings() {
        let spellings: Vec<&str> = RuleCode::ALL.iter().map(RuleCode::as_str).collect();
        assert_eq!(
            spellings,
            [
                "NOT_BRAND_OWNER",
                "UNKNOWN_PRODUCT",
                "FOREIGN_SITE",
                "SERIAL_ALREADY_COMMISSIONED",
                "UNKNOWN_SERIAL",
                "STATUS_ALREADY_SET",
                "ALREADY_DISPENSED",
                "NOT_IN_YOUR_CUSTODY",
                "PACK_INACTIVE",
                "UNDO_STATUS_MISMATCH",
                "UNDO_OTHER_PARTY",
                "UNDO_WINDOW_PASSED",
            ]
        );
        for c in RuleCode::ALL {
            assert_eq!(c.as_str().parse::<RuleCode>(), Ok(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
        let v = RuleViolation::new_public(RuleCode::ForeignSite, "elsewhere");
        assert_eq!(v.to_string(), "FOREIGN_SITE: elsewhere");
        for s in PackStatus::ALL {
            assert_eq!(s.as_str().parse::<PackStatus>(), Ok(*s));
        }
        assert_eq!(PackStatus::InTransit.as_str(), "IN_TRANSIT");
    }

    #[test]
    fn party_ids_normalise_to_glns() {
        let g = gln(2).to_string();
        assert_eq!(normalise_party(&pgln(2)), g);
        assert_eq!(normalise_party(&sgln(2)), g);
        assert_eq!(normalise_party(&format!("https://id.gs1.org/414/{g}")), g);
        assert_eq!(normalise_party(&format!("https://id.gs1.org/417/{g}")), g);
        assert_eq!(normalise_party(" acme "), "acme");
        // URN and URI schemes are case-insensitive; other ids are kept as they are.
        assert_eq!(normalise_party(&pgln(2).to_uppercase()), g);
        assert_eq!(normalise_party(&sgln(2).to_uppercase()), g);
        assert_eq!(normalise_party(&format!("HTTPS://id.gs1.org/417/{g}")), g);
        assert_eq!(normalise_party("Acme"), "Acme");
        assert_eq!(
            normalise_party("https://example.com/414/123"),
            "https://example.com/414/123"
        );
        assert_eq!(normalise_party("ur"), "ur");
    }
}
