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

/// `item` and the containers it was ever in, transitively, up to [`MAX_NESTING`] levels: the
/// closure the store fetches level by level with [`containers_of`], here over events already
/// in hand.
pub fn container_closure<E: Borrow<LoggedEvent>>(item: &EpcId, events: &[E]) -> Vec<EpcId> {
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
