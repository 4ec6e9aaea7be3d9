//! Replay: inheritance through containers and classes, custody, suspicions, undo.

use serde_json::{Value, json};

use super::fixtures::*;
use super::*;
use crate::gs1::CalendarDate;
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
fn an_inherited_mark_cites_the_aggregations_that_carried_it() {
    let mut events = packed();
    events.push(logged(
        4,
        &observe(&[sscc_uri(100)], at(30), "stolen"),
        "mah",
    ));
    let s = derive(&sgtin("A"), &events);
    let stolen = s.stolen.as_ref().unwrap();
    // The pallet's event, then pack → case (2) and case → pallet (3).
    assert_eq!(stolen.entries(), [4, 2, 3]);

    // A direct event rests on itself alone.
    let direct = derive(
        &sgtin("A"),
        &[
            events[0].clone(),
            logged(5, &observe(&packs(&["A"]), at(40), "destroyed"), "mah"),
        ],
    );
    assert_eq!(direct.destroyed.as_ref().unwrap().entries(), [5]);
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
    // The recall, and the commissioning that gave the pack its lot.
    assert_eq!(s.recalled.as_ref().unwrap().entries(), [4, 1]);

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

#[test]
fn the_walk_loads_what_the_closure_names_and_keeps_it() {
    // A store that answers each step with the events naming what it asked for.
    let all = packed();
    let mut loaded: Vec<&LoggedEvent> = Vec::new();
    let mut walk = Walk::new(&sgtin("A"));
    let mut steps = Vec::new();
    loop {
        let ids = walk.next(&loaded);
        if ids.is_empty() {
            break;
        }
        for e in &all {
            if named_ids(&e.event).iter().any(|n| ids.contains(n))
                && !loaded.iter().any(|l| l.index == e.index)
            {
                loaded.push(e);
            }
        }
        steps.push(ids);
    }
    let me = EpcId::Sgtin(sgtin("A"));
    assert_eq!(steps[0], std::slice::from_ref(&me));
    assert_eq!(
        steps.len(),
        3,
        "the pack; its classes and case; the pallet: {steps:?}"
    );
    let walked = walk.finish(loaded);
    assert_eq!(walked.closure, container_closure(&me, &all));
    assert_eq!(
        walked.closure,
        [me, EpcId::Sscc(sscc(1)), EpcId::Sscc(sscc(100))]
    );
    assert_eq!(walked.classes, classes_of(&sgtin("A"), &all));
    // Derived along the walk or from the events in hand: the same state.
    assert_eq!(
        walked.derive(&DeriveOptions::default()),
        derive(&sgtin("A"), &walked.events)
    );
    // And over events in hand, the walk is the same.
    let in_hand = PackEvents::walk(&sgtin("A"), all.iter().collect::<Vec<_>>());
    assert_eq!(in_hand.closure, walked.closure);
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
