//! What the store must fetch for one pack: the identifiers an event is indexed under, the
//! containers a pack was packed into, and the classes (lot, GTIN) whose events reach it.

use std::borrow::Borrow;

use super::{LoggedEvent, MAX_NESTING, replay::first_commissioning};
use crate::epcis::{Action, Event, EventKind};
use crate::gs1::{EpcId, Sgtin};

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

/// `item` and the containers it was ever in, transitively, up to [`MAX_NESTING`] levels, over
/// events already in hand (a client checking an answer; a store that holds every event).
pub fn container_closure<E: Borrow<LoggedEvent>>(item: &EpcId, events: &[E]) -> Vec<EpcId> {
    let mut closure = vec![item.clone()];
    let mut level = closure.clone();
    for _ in 0..MAX_NESTING {
        level = deeper(&mut closure, &level, events);
        if level.is_empty() {
            break;
        }
    }
    closure
}

/// One level of the walk: the containers the `frontier` was ever in that `closure` does not
/// hold yet, added to it and returned.
fn deeper<E: Borrow<LoggedEvent>>(
    closure: &mut Vec<EpcId>,
    frontier: &[EpcId],
    events: &[E],
) -> Vec<EpcId> {
    let mut next = Vec::new();
    for id in frontier {
        for c in containers_of(id, events) {
            if !closure.contains(&c) {
                closure.push(c.clone());
                next.push(c);
            }
        }
    }
    next
}

/// The one walk from a pack to everything whose events reach it, driven by whoever holds the
/// events (the store, level by level from its index). Each [`Walk::next`] names the
/// identifiers whose events to load next, judged on the events loaded so far: first the pack;
/// then its classes ([`classes_of`]) and the containers it was ever in; then, level by level,
/// the containers those were in, up to [`MAX_NESTING`] levels ([`container_closure`]'s walk).
/// When it names none, the walk is done, and [`Walk::finish`] keeps the closure it found
/// beside the events, so that nothing downstream walks again.
#[derive(Clone, Debug)]
pub struct Walk {
    pack: Sgtin,
    /// The pack, then every container found, in first-seen order.
    closure: Vec<EpcId>,
    classes: Vec<EpcId>,
    /// The identifiers named by the last step; `None` before the first.
    frontier: Option<Vec<EpcId>>,
    /// Levels of containers named so far.
    level: usize,
}

impl Walk {
    /// The walk from `pack`.
    pub fn new(pack: &Sgtin) -> Self {
        Walk {
            pack: pack.clone(),
            closure: vec![EpcId::Sgtin(pack.clone())],
            classes: Vec::new(),
            frontier: None,
            level: 0,
        }
    }

    /// The identifiers whose events to load next, given every event loaded so far; empty
    /// once the walk is done (and on every call after).
    pub fn next<E: Borrow<LoggedEvent>>(&mut self, events: &[E]) -> Vec<EpcId> {
        let Some(frontier) = self.frontier.take() else {
            let start = self.closure.clone();
            self.frontier = Some(start.clone());
            return start;
        };
        let mut named = Vec::new();
        if self.level == 0 {
            self.classes = classes_of(&self.pack, events);
            named.extend(self.classes.iter().cloned());
        }
        let containers = if self.level < MAX_NESTING {
            deeper(&mut self.closure, &frontier, events)
        } else {
            Vec::new()
        };
        self.level += 1;
        named.extend(containers.iter().cloned());
        self.frontier = Some(containers);
        named
    }

    /// The events loaded along the walk, with what it found.
    pub fn finish<E>(self, events: Vec<E>) -> PackEvents<E> {
        PackEvents {
            pack: self.pack,
            closure: self.closure,
            classes: self.classes,
            events,
        }
    }
}

/// A pack's events as [`Walk`] found them: its own, those of every container it was ever in
/// and those of its classes, unordered, with the closure and the classes they came through.
/// Derivations and completeness read sets take the closure from here instead of walking the
/// events again.
#[derive(Clone, Debug)]
pub struct PackEvents<E> {
    pub pack: Sgtin,
    /// The pack, then the containers it was ever in (transitively), in first-seen order.
    pub closure: Vec<EpcId>,
    /// Its lot class (when its commissioning names a lot) and its GTIN class.
    pub classes: Vec<EpcId>,
    pub events: Vec<E>,
}

impl<E: Borrow<LoggedEvent>> PackEvents<E> {
    /// `events` in hand, every one that could reach `pack` among them, walked here.
    pub fn walk(pack: &Sgtin, events: Vec<E>) -> Self {
        let mut walk = Walk::new(pack);
        while !walk.next(&events).is_empty() {}
        walk.finish(events)
    }
}

impl<E> std::ops::Deref for PackEvents<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.events
    }
}
