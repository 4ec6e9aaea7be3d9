//! Issue 24's property: random supply-chain histories (commissioning in lots, packing into
//! cases and pallets, unpacking, observations of any identifier, events logged late and out of
//! business order, several events per entry) always give answers that verify complete, and an
//! answer that misses any one entry a pack's verdict should read fails, naming an identifier.
//!
//! The log is built as the sequencer builds it: each entry's events indexed with
//! `index::index_keys`, their identifiers' histories pushed in log order, then a map-root entry
//! signed by the log key as the last entry. A pack's events are selected the way the store
//! does (the pack, its containers level by level, its lot and GTIN class), and the answer is
//! built from `completeness::read_set` as the server builds it.

use std::collections::BTreeSet;

use proptest::prelude::*;
use rxledger_core::epcis::{format_time, parse_event};
use rxledger_core::gs1::Sgtin;
use rxledger_core::index::{epc_key, index_keys};
use rxledger_core::keys::SigningKey;
use rxledger_core::map::completeness::{Claim, Completeness, read_set};
use rxledger_core::map::rootentry::MapRoot;
use rxledger_core::map::{MapError, MapTree, key_of};
use rxledger_core::merkle::{self, CompactRange, Hash};
use rxledger_core::pack::{LoggedEvent, classes_of, container_closure, named_ids};
use serde_json::{Value, json};

const ORIGIN: &str = "map.test/log";
const T0: i64 = 1_735_689_600_000;

fn pack_urn(n: u8) -> String {
    format!("urn:epc:id:sgtin:0614141.107346.{n}")
}

fn case_urn(n: u8) -> String {
    format!("urn:epc:id:sscc:0614141.{:010}", 1_000_000 + n as u64)
}

/// One random event: what it does, to which identifiers, and when (minutes after T0).
#[derive(Clone, Debug)]
enum Step {
    Commission {
        packs: Vec<u8>,
        lot: u8,
    },
    Pack {
        parent: u8,
        children: Vec<u8>,
        pallet: bool,
    },
    Unpack {
        parent: u8,
        children: Vec<u8>,
    },
    Observe {
        case: bool,
        id: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (proptest::collection::vec(0u8..8, 1..4), 0u8..2)
            .prop_map(|(packs, lot)| Step::Commission { packs, lot }),
        (
            0u8..3,
            proptest::collection::vec(0u8..8, 1..4),
            any::<bool>()
        )
            .prop_map(|(parent, children, pallet)| Step::Pack {
                parent,
                children,
                pallet
            }),
        (0u8..3, proptest::collection::vec(0u8..8, 1..3))
            .prop_map(|(parent, children)| Step::Unpack { parent, children }),
        (any::<bool>(), 0u8..8).prop_map(|(case, id)| Step::Observe { case, id }),
    ]
}

fn event(step: &Step, minute: i64) -> Value {
    let time = format_time(T0 + minute * 60_000);
    let mut e = json!({ "eventTime": time, "eventTimeZoneOffset": "+00:00" });
    match step {
        Step::Commission { packs, lot } => {
            e["type"] = json!("ObjectEvent");
            e["action"] = json!("ADD");
            e["bizStep"] = json!("commissioning");
            e["epcList"] = json!(packs.iter().map(|p| pack_urn(*p)).collect::<Vec<_>>());
            e["ilmd"] = json!({"cbvmda:lotNumber": format!("L{lot}"), "cbvmda:itemExpirationDate": "2031-06-30"});
        }
        Step::Pack {
            parent,
            children,
            pallet,
        } => {
            e["type"] = json!("AggregationEvent");
            e["action"] = json!("ADD");
            e["bizStep"] = json!("packing");
            // A pallet holds cases; a case holds packs.
            let (p, kids): (String, Vec<String>) = if *pallet {
                (
                    case_urn(100 + parent),
                    children.iter().map(|c| case_urn(c % 3)).collect(),
                )
            } else {
                (
                    case_urn(*parent),
                    children.iter().map(|c| pack_urn(*c)).collect(),
                )
            };
            e["parentID"] = json!(p);
            e["childEPCs"] = json!(kids);
        }
        Step::Unpack { parent, children } => {
            e["type"] = json!("AggregationEvent");
            e["action"] = json!("DELETE");
            e["bizStep"] = json!("unpacking");
            e["parentID"] = json!(case_urn(*parent));
            e["childEPCs"] = json!(children.iter().map(|c| pack_urn(*c)).collect::<Vec<_>>());
        }
        Step::Observe { case, id } => {
            e["type"] = json!("ObjectEvent");
            e["action"] = json!("OBSERVE");
            e["bizStep"] = json!("shipping");
            e["epcList"] = json!([if *case {
                case_urn(id % 3)
            } else {
                pack_urn(*id)
            }]);
        }
    }
    e
}

/// A log of entries (each a list of events), its map and its final map-root entry.
struct Log {
    events: Vec<LoggedEvent>,
    leaves: Vec<Hash>,
    map: MapTree,
    map_entry: Vec<u8>,
    key: SigningKey,
}

impl Log {
    fn new(entries: &[Vec<(Step, i64)>]) -> Log {
        let key = SigningKey::from_bytes(&[3; 32]).unwrap();
        let (mut events, mut leaves, mut map) = (Vec::new(), Vec::new(), MapTree::new());
        for (index, steps) in entries.iter().enumerate() {
            let jsons: Vec<Value> = steps.iter().map(|(s, m)| event(s, *m)).collect();
            let leaf = merkle::leaf_hash(serde_json::to_string(&jsons).unwrap().as_bytes());
            leaves.push(leaf);
            let mut named = BTreeSet::new();
            for j in &jsons {
                let ev = parse_event(j).unwrap();
                named.extend(index_keys(&ev).into_iter().map(|(k, _)| k));
                events.push(LoggedEvent {
                    index: index as u64,
                    event: ev,
                    org: "acme".into(),
                    site: None,
                });
            }
            for k in named {
                map.push(&key_of(&k), index as u64, &leaf);
            }
        }
        let stated = MapRoot {
            origin: ORIGIN.into(),
            size: leaves.len() as u64,
            keys: map.len(),
            root: map.root(),
        };
        let map_entry = stated.sign(&key);
        leaves.push(merkle::leaf_hash(&map_entry));
        Log {
            events,
            leaves,
            map,
            map_entry,
            key,
        }
    }

    /// The pack's events as the store selects them.
    fn fetch(&self, pack: &Sgtin) -> Vec<&LoggedEvent> {
        let me = rxledger_core::gs1::EpcId::Sgtin(pack.clone());
        let mut keys: BTreeSet<String> = [epc_key(&me)].into();
        loop {
            let found: Vec<&LoggedEvent> = self
                .events
                .iter()
                .filter(|le| {
                    named_ids(&le.event)
                        .iter()
                        .any(|n| keys.contains(&epc_key(n)))
                })
                .collect();
            let more: BTreeSet<String> = container_closure(&me, &found)
                .iter()
                .chain(classes_of(pack, &found).iter())
                .map(epc_key)
                .collect();
            if more.is_subset(&keys) {
                return found;
            }
            keys.extend(more);
        }
    }

    fn answer(&self, events: &[&LoggedEvent], pack: &Sgtin) -> Completeness {
        let claims = read_set(pack, events)
            .into_iter()
            .map(|(identifier, indices)| Claim {
                proof: self.map.prove(&key_of(&identifier)),
                entries: indices
                    .iter()
                    .map(|i| (*i, self.leaves[*i as usize]))
                    .collect(),
                identifier,
            })
            .collect();
        let size = self.leaves.len() as u64;
        let src = Leaves(&self.leaves);
        Completeness {
            map_entry_index: size - 1,
            map_entry: self.map_entry.clone(),
            map_entry_proof: merkle::inclusion_proof(size - 1, size, &src).unwrap(),
            claims,
        }
    }

    fn verify(&self, c: &Completeness) -> Result<MapRoot, MapError> {
        let mut r = CompactRange::new();
        for l in &self.leaves {
            r.push(*l);
        }
        c.verify(
            self.leaves.len() as u64,
            &r.root(),
            ORIGIN,
            Some(&self.key.public_key()),
            &[],
        )
    }
}

struct Leaves<'a>(&'a [Hash]);

impl merkle::NodeSource for Leaves<'_> {
    fn node(&self, id: merkle::NodeId) -> Option<Hash> {
        let first = id.first_leaf() as usize;
        let mut r = CompactRange::new();
        for l in self.0.get(first..first + (1usize << id.level))? {
            r.push(*l);
        }
        Some(r.root())
    }
}

fn sgtin(n: u8) -> Sgtin {
    match rxledger_core::gs1::parse_code(&format!("(01)10614141073464(21){n}")) {
        Ok(code) => code.sgtin().unwrap(),
        Err(e) => panic!("{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_pack_verifies_complete_and_any_missing_entry_is_named(
        entries in proptest::collection::vec(
            proptest::collection::vec((step(), 0i64..500), 1..3), 1..30),
        pack in 0u8..8,
        drop in any::<prop::sample::Index>(),
    ) {
        let log = Log::new(&entries);
        let pack = sgtin(pack);
        let events = log.fetch(&pack);
        let honest = log.answer(&events, &pack);
        prop_assert!(log.verify(&honest).is_ok(), "{:?}", log.verify(&honest));
        // Out of order: the same events in another order give the same answer.
        let mut reversed = events.clone();
        reversed.reverse();
        prop_assert_eq!(&log.answer(&reversed, &pack), &honest);
        // Any one entry the verdict should read, left out of what it read.
        let indices: Vec<u64> = events.iter().map(|le| le.index).collect::<BTreeSet<_>>().into_iter().collect();
        if !indices.is_empty() {
            let gone = indices[drop.index(indices.len())];
            let partial: Vec<&LoggedEvent> = events.iter().copied().filter(|le| le.index != gone).collect();
            let failed = log.verify(&log.answer(&partial, &pack));
            let named = matches!(&failed,
                Err(MapError::Incomplete { .. } | MapError::HistoryMismatch { .. }));
            prop_assert!(named, "entry {} left out: {:?}", gone, failed);
        }
    }
}
