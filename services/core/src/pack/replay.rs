//! The replay: a pack's events in business order, `(eventTime, ledger index)`, applied one by
//! one to its state (see the module docs of [`pack`](super) for the semantics).

use std::borrow::Borrow;
use std::collections::HashMap;

use super::closure::{PackEvents, container_closure};
use super::quarantine::{Quarantine, quarantine_reason, released_entries};
use super::rules::is_commissioning;
use super::state::{
    Commissioning, Custody, HistoryItem, PackState, PackStatus, StatusMark, Suspicion, Via,
};
use super::{
    DeriveOptions, LEDGER_ENTRY_PREFIX, LoggedEvent, MAX_NESTING, UNDO_TRANSACTION_TYPE,
    UNKNOWN_SITE_MIN_GAP_MS, event_location, normalise_party,
};
use crate::epcis::{Action, BizStep, Disposition, Event, EventKind, SourceDestType};
use crate::gs1::{EpcId, Lot, Sgtin};

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
    Derivation::new(pack, events, opts).into_state()
}

/// A replay kept open, so that one more event can be applied without replaying the others:
/// a state change decides on [`Derivation::state`] inside its append transaction, then
/// answers with the state after its own event ([`Derivation::extend`]), deriving once.
pub struct Derivation<'o> {
    replay: Replay<'o>,
}

impl<'o> Derivation<'o> {
    /// Replays `events` (any order; duplicates by index are ignored).
    pub fn new<E: Borrow<LoggedEvent>>(
        pack: &Sgtin,
        events: &[E],
        opts: &'o DeriveOptions<'o>,
    ) -> Self {
        let closure = container_closure(&EpcId::Sgtin(pack.clone()), events);
        Self::along(pack, events, closure, opts)
    }

    /// Replays `events` given the pack's container closure (`tracked`, the pack first), as
    /// [`PackEvents`] carries it from the walk that loaded them.
    fn along<E: Borrow<LoggedEvent>>(
        pack: &Sgtin,
        events: &[E],
        tracked: Vec<EpcId>,
        opts: &'o DeriveOptions<'o>,
    ) -> Self {
        let mut order: Vec<&LoggedEvent> = events.iter().map(|e| e.borrow()).collect();
        order.sort_by_key(|le| (le.event.event_time_ms, le.index));
        order.dedup_by_key(|le| le.index);
        let me = EpcId::Sgtin(pack.clone());
        let lot = first_commissioning(&me, order.iter().copied()).and_then(|e| e.event.lot.clone());
        let mut replay = Replay {
            opts,
            me,
            lot,
            tracked,
            parent_of: HashMap::new(),
            custodians: Vec::new(),
            shipments: Vec::new(),
            last_sighting: None,
            last: None,
            state: PackState::new(pack.clone()),
        };
        for le in order {
            replay.apply(le);
        }
        Derivation { replay }
    }

    /// The state after every event applied so far.
    pub fn state(&self) -> PackState {
        let mut state = self.replay.state.clone();
        summarise(&mut state, self.replay.container());
        state
    }

    /// The state, without a copy.
    pub fn into_state(self) -> PackState {
        self.replay.into_state()
    }

    /// Applies one more event, if that gives exactly what replaying all of them again would:
    /// the event sorts after every event applied, and it neither commissions nor aggregates
    /// (either could change which events reach the pack). Returns whether it was applied; when
    /// not, derive afresh with it.
    pub fn extend(&mut self, le: &LoggedEvent) -> bool {
        let e = &le.event;
        let after = self
            .replay
            .last
            .is_none_or(|last| (e.event_time_ms, le.index) > last);
        if !after || e.kind == EventKind::Aggregation || is_commissioning(e) {
            return false;
        }
        self.replay.apply(le);
        true
    }
}

impl<E: Borrow<LoggedEvent>> PackEvents<E> {
    /// The pack's state, along the closure its events were loaded by.
    pub fn derive(&self, opts: &DeriveOptions<'_>) -> PackState {
        self.derivation(opts).into_state()
    }

    /// The replay kept open ([`Derivation`]), along the closure its events were loaded by.
    pub fn derivation<'o>(&self, opts: &'o DeriveOptions<'o>) -> Derivation<'o> {
        Derivation::along(&self.pack, &self.events, self.closure.clone(), opts)
    }
}

/// The pack's first commissioning by business order: it gives the lot its class events
/// come through.
pub(super) fn first_commissioning<'a>(
    me: &EpcId,
    events: impl Iterator<Item = &'a LoggedEvent>,
) -> Option<&'a LoggedEvent> {
    events
        .filter(|le| is_commissioning(&le.event) && le.event.epcs.contains(me))
        .min_by_key(|le| (le.event.event_time_ms, le.index))
}

/// The parties of a commissioning, shipping or receiving event, normalised once.
struct Movement {
    /// The submitting organisation.
    org: String,
    /// The submitting device's site.
    site: Option<String>,
    /// Where the event happened: its location, else the device's site.
    here: Option<String>,
    /// `owning_party` and `location` destinations.
    dest_owner: Vec<String>,
    dest_loc: Vec<String>,
}

impl Movement {
    fn of(le: &LoggedEvent) -> Movement {
        let e = &le.event;
        let site = le.site.as_deref().map(normalise_party);
        let here = event_location(e).or_else(|| site.clone());
        let dest = |kind: SourceDestType| -> Vec<String> {
            e.destinations
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| normalise_party(&p.id))
                .collect()
        };
        Movement {
            org: normalise_party(&le.org),
            site,
            here,
            dest_owner: dest(SourceDestType::OwningParty),
            dest_loc: dest(SourceDestType::Location),
        }
    }
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
    /// child → (parent, the aggregation entry that packed it) as of the current replay time,
    /// for tracked ids.
    parent_of: HashMap<EpcId, (EpcId, u64)>,
    /// Normalised ids allowed to ship the pack now (holder, and addressee while in transit).
    custodians: Vec<String>,
    shipments: Vec<Shipment>,
    last_sighting: Option<Sighting>,
    /// (eventTime, ledger index) of the last event applied: the replay's position.
    last: Option<(i64, u64)>,
    state: PackState,
}

impl Replay<'_> {
    fn apply(&mut self, le: &LoggedEvent) {
        let e = &le.event;
        self.last = Some((e.event_time_ms, le.index));
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
            self.restructure(e, le.index);
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
            let Some((p, _)) = self.parent_of.get(cur) else {
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
    fn restructure(&mut self, e: &Event, index: u64) {
        let Some(parent) = &e.parent else { return };
        match e.action {
            Action::Add | Action::Observe => {
                for t in &self.tracked {
                    if t != parent && e.children.contains(t) {
                        self.parent_of.insert(t.clone(), (parent.clone(), index));
                    }
                }
            }
            Action::Delete if e.children.is_empty() => {
                self.parent_of.retain(|_, (p, _)| p != parent)
            }
            Action::Delete => {
                for t in &self.tracked {
                    if e.children.contains(t)
                        && self.parent_of.get(t).is_some_and(|(p, _)| p == parent)
                    {
                        self.parent_of.remove(t);
                    }
                }
            }
        }
    }

    /// The entries an event reaching the pack `via` a container or class rests on: the
    /// aggregations that packed the pack, level by level, into that container; for a class,
    /// the commissioning that gave the pack its GTIN and lot. None for a direct event.
    fn links(&self, via: &Via) -> Vec<u64> {
        match via {
            Via::Direct => Vec::new(),
            Via::Class(_) => self.state.commissioning.iter().map(|c| c.index).collect(),
            Via::Container(target) => {
                let mut out = Vec::new();
                let mut cur = &self.me;
                for _ in 0..MAX_NESTING {
                    let Some((p, index)) = self.parent_of.get(cur) else {
                        break;
                    };
                    out.push(*index);
                    if p == target {
                        break;
                    }
                    cur = p;
                }
                out
            }
        }
    }

    fn status_effects(&mut self, le: &LoggedEvent, via: &Via) {
        let e = &le.event;
        let links = self.links(via);
        let mark = || StatusMark {
            index: le.index,
            event_time_ms: e.event_time_ms,
            org: le.org.clone(),
            site: le.site.clone(),
            links: links.clone(),
        };
        let s = &mut self.state;
        if *via == Via::Direct && is_commissioning(e) {
            s.commissioning.get_or_insert_with(|| Commissioning {
                index: le.index,
                event_time_ms: e.event_time_ms,
                org: le.org.clone(),
                lot: e.lot.clone(),
                expiry: e.item_expiration,
            });
            return;
        }
        if let Some(reason) = quarantine_reason(e) {
            s.quarantined.push(Quarantine {
                mark: mark(),
                reason,
                via: via.clone(),
            });
            return;
        }
        let lifted = released_entries(e);
        if !lifted.is_empty() {
            // A release lifts the named quarantines that hold the pack; one that does not
            // hold it (a pack packed into the case after it was quarantined) is not its own.
            s.quarantined.retain(|q| !lifted.contains(&q.mark.index));
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
            dispensed(s, le, mark);
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

    /// Commissioning, shipping and receiving move custody; nothing else does.
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
        let moved = Movement::of(le);
        if commissioning {
            self.custodians = vec![moved.org.clone()];
            self.state.custody = Custody {
                owner: Some(le.org.clone()),
                location: moved.here,
                in_transit: false,
                index: Some(le.index),
            };
        } else if shipping {
            self.ship(le, moved);
        } else {
            self.receive(le, moved);
        }
    }

    /// A shipping: suspicious unless a holder sent it; the addressees may receive it and
    /// forward it from now on.
    fn ship(&mut self, le: &LoggedEvent, moved: Movement) {
        let e = &le.event;
        if !self.custodians.is_empty() && !self.holds(&moved.org, moved.site.as_deref()) {
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
        self.custodians = std::iter::once(moved.org)
            .chain(destinations.clone())
            .collect();
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
        if let Some(o) = moved.dest_owner.first() {
            c.owner = Some(
                self.opts
                    .directory
                    .organization(o)
                    .unwrap_or_else(|| o.clone()),
            );
        }
        if let Some(l) = moved.dest_loc.first() {
            c.location = Some(l.clone());
        }
    }

    /// A receiving: suspicious unless a shipment was addressed to the receiver; the receiver
    /// (or the owning party it names) holds the pack from now on.
    fn receive(&mut self, le: &LoggedEvent, moved: Movement) {
        self.check_receipt(le, &moved.org, moved.site.as_deref(), moved.here.as_deref());
        let owner = moved
            .dest_owner
            .first()
            .map(|o| {
                self.opts
                    .directory
                    .organization(o)
                    .unwrap_or_else(|| o.clone())
            })
            .unwrap_or_else(|| le.org.clone());
        self.custodians = vec![normalise_party(&owner), moved.org.clone()];
        self.add_recipient(moved.org);
        for id in moved
            .dest_owner
            .iter()
            .chain(&moved.dest_loc)
            .chain(moved.site.iter())
        {
            self.add_recipient(id.clone());
        }
        self.state.custody = Custody {
            owner: Some(owner),
            location: moved.dest_loc.first().cloned().or(moved.here),
            in_transit: false,
            index: Some(le.index),
        };
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

    /// The state so far, summarised.
    fn into_state(mut self) -> PackState {
        let container = self.container();
        summarise(&mut self.state, container);
        self.state
    }

    /// The container the pack is in now.
    fn container(&self) -> Option<EpcId> {
        self.parent_of.get(&self.me).map(|(p, _)| p.clone())
    }
}

/// Sets what follows from the replayed marks: the status by precedence and the event behind
/// it, and the container the pack is in now.
fn summarise(s: &mut PackState, container: Option<EpcId>) {
    s.container = container;
    let ranked = [
        (PackStatus::Destroyed, &s.destroyed),
        (PackStatus::Dispensed, &s.dispensed),
        (PackStatus::Decommissioned, &s.decommissioned),
        (PackStatus::Stolen, &s.stolen),
        (PackStatus::Recalled, &s.recalled),
        (PackStatus::Expired, &s.expired),
    ];
    let held = s.quarantined.first().map(|q| q.mark.index);
    let (status, index) = match (&s.commissioning, ranked.iter().find(|(_, m)| m.is_some())) {
        (None, _) => (PackStatus::Unknown, None),
        (Some(_), Some((st, m))) => (*st, m.as_ref().map(|m| m.index)),
        (Some(_), None) if held.is_some() => (PackStatus::Quarantined, held),
        (Some(c), None) if s.custody.in_transit => {
            (PackStatus::InTransit, s.custody.index.or(Some(c.index)))
        }
        (Some(c), None) => (PackStatus::Active, s.custody.index.or(Some(c.index))),
    };
    s.status = status;
    s.status_index = index;
}

/// The ledger index an undo event reverses, if `e` is one (see the module docs).
pub fn undo_target(e: &Event) -> Option<u64> {
    e.biz_transactions
        .iter()
        .filter(|t| t.kind.as_deref() == Some(UNDO_TRANSACTION_TYPE))
        .find_map(|t| t.id.strip_prefix(LEDGER_ENTRY_PREFIX)?.parse().ok())
}

fn haversine_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// A dispensing: the first marks the pack dispensed; a later one is a suspicion naming both.
fn dispensed(s: &mut PackState, le: &LoggedEvent, mark: impl FnOnce() -> StatusMark) {
    match &s.dispensed {
        Some(first) => {
            let suspicion = Suspicion {
                code: Suspicion::DISPENSED_TWICE,
                message: format!(
                    "dispensed again on {} although already dispensed on {}",
                    crate::epcis::format_time(le.event.event_time_ms),
                    crate::epcis::format_time(first.event_time_ms)
                ),
                evidence: vec![first.index, le.index],
            };
            s.suspicions.push(suspicion);
        }
        None => s.dispensed = Some(mark()),
    }
}
