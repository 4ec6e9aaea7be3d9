//! Suspicious histories, found after the fact.
//!
//! Events are never refused for looking wrong (real data arrives late and out of order), but
//! each committed shipping, receiving or dispensing event makes the packs it names worth a
//! second look: their state is derived again from the ledger and every new suspicion
//! (received without a shipment, shipped by a non-holder, dispensed twice, impossible travel)
//! becomes an alert. This runs beside the pipeline and never delays an ack.

use std::collections::HashSet;
use std::sync::Arc;

use rxledger_core::epcis::{BizStep, Event};
use rxledger_core::gs1::{EpcId, Sgtin};
use rxledger_core::index::sgtin_key;
use rxledger_core::pack::{self, DeriveOptions};
use rxledger_store::packs::Packs;
use rxledger_store::{Alerts, NewAlert, Severity};
use tokio::sync::mpsc;

/// Batches of packs waiting to be re-examined.
const QUEUE: usize = 64;

/// Suspicions remembered as reported (see [`Reported`]).
const REPORTED: usize = 65_536;

/// (code, pack, evidence) of a suspicion.
type Suspicion = (String, String, Vec<u64>);

/// The suspicions already reported, so a pack seen again does not repeat its alerts; bounded
/// like `store::packs::EventCache`, in two generations of half the capacity each. A suspicion
/// read again moves to the newer generation, so those of packs that keep moving are kept; one
/// not seen for a whole generation may be reported once more, which costs a duplicate alert,
/// not a missed one.
struct Reported {
    hot: HashSet<Suspicion>,
    cold: HashSet<Suspicion>,
    half: usize,
}

impl Reported {
    fn new(capacity: usize) -> Self {
        Reported {
            hot: HashSet::new(),
            cold: HashSet::new(),
            half: (capacity / 2).max(1),
        }
    }

    /// Remembers `s`; whether it is new.
    fn insert(&mut self, s: Suspicion) -> bool {
        if self.hot.contains(&s) {
            return false;
        }
        let new = !self.cold.remove(&s);
        if self.hot.len() >= self.half {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(s);
        new
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }
}

/// The SGTINs an event names directly, when its business step can reveal a suspicion.
pub fn packs_to_watch(e: &Event) -> Vec<Sgtin> {
    let relevant = matches!(
        e.biz_step,
        Some(BizStep::Shipping | BizStep::Receiving | BizStep::Dispensing)
    );
    if !relevant {
        return Vec::new();
    }
    e.epcs
        .iter()
        .filter_map(|id| match id {
            EpcId::Sgtin(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub fn spawn(packs: Arc<Packs>, alerts: Alerts) -> mpsc::Sender<Vec<Sgtin>> {
    let (tx, mut rx) = mpsc::channel::<Vec<Sgtin>>(QUEUE);
    tokio::spawn(async move {
        // Suspicions already reported, so a pack seen again does not repeat its alerts.
        let mut reported = Reported::new(REPORTED);
        while let Some(batch) = rx.recv().await {
            let directory = match packs.directory().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "suspicion monitor: cannot read sites");
                    continue;
                }
            };
            let mut histories = Vec::with_capacity(batch.len());
            for sgtin in batch {
                match packs.events(&sgtin).await {
                    Ok(events) => histories.push(events),
                    Err(e) => {
                        tracing::warn!(error = %e, "suspicion monitor: cannot read a pack's events")
                    }
                }
            }
            let new = judge(&histories, directory.as_ref(), &mut reported);
            if let Err(e) = alerts.record(new).await {
                tracing::warn!(error = %e, "suspicion monitor: cannot record alerts");
            }
        }
    });
    tx
}

/// Derives each pack's state and returns the suspicions not reported before.
fn judge(
    histories: &[pack::PackEvents<std::sync::Arc<pack::LoggedEvent>>],
    directory: &dyn pack::SiteDirectory,
    reported: &mut Reported,
) -> Vec<NewAlert> {
    let opts = DeriveOptions {
        directory,
        ..DeriveOptions::default()
    };
    let mut new = Vec::new();
    for events in histories {
        let state = events.derive(&opts);
        let subject = sgtin_key(&events.pack);
        for s in state.suspicions {
            if reported.insert((s.code.to_string(), subject.clone(), s.evidence.clone())) {
                new.push(NewAlert {
                    code: s.code.to_string(),
                    severity: Severity::Warning,
                    subjects: vec![subject.clone()],
                    message: s.message,
                    evidence: s.evidence,
                    raw: None,
                });
            }
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suspicion(i: u64) -> Suspicion {
        ("DISPENSED_TWICE".into(), format!("sgtin:{i}"), vec![i])
    }

    #[test]
    fn reported_suspicions_are_remembered_within_a_bound() {
        let mut r = Reported::new(8);
        assert!(r.insert(suspicion(1)));
        assert!(!r.insert(suspicion(1)));
        for i in 2..100 {
            assert!(r.insert(suspicion(i)));
            // One kept busy survives the turnover.
            assert!(!r.insert(suspicion(1)));
            assert!(r.len() <= 8);
        }
    }
}
