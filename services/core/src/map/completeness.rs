//! Checking that an answer saw everything: one implementation for the server's self-check,
//! `rxledger verify-answer`, firmware-sim and any client.
//!
//! An answer that claims completeness carries, for every identifier it read, the entries it
//! read about it (index and leaf hash, in log order) and a map proof of that identifier's
//! history; and the map-root entry those proofs are against, with its inclusion proof in the
//! checkpoint the answer cites. [`Completeness::verify`] checks, with no I/O:
//!
//! 1. the map-root entry is well-formed, signed by the log's key for this origin, and included
//!    in the checkpoint at the index it states (it covers every entry before it);
//! 2. for each identifier, the map proof verifies against that root and the history it proves
//!    (or the absence) is exactly the hash chain of the entries listed: one left out, added,
//!    reordered or with another leaf hash fails, naming the identifier;
//! 3. every entry the answer cites is listed under some identifier.
//!
//! The checkpoint itself is checked by the caller first (its signature and cosignatures,
//! docs/VERIFY.md); here it is a trusted (size, root).

use std::borrow::Borrow;

use super::rootentry::MapRoot;
use super::{Hash, History, MapError, MapProof, key_of};
use crate::gs1::{EpcId, Sgtin};
use crate::index::epc_key;
use crate::keys::PublicKey;
use crate::merkle;
use crate::pack::{self, LoggedEvent, PackEvents};

/// What a verdict on the pack `sgtin` read from `events` (the store's `Packs::events`): every
/// identifier the store's walk looks up (the pack, the containers it was ever in up to
/// [`pack::MAX_NESTING`] levels, its lot and its GTIN class), each with the entries among
/// `events` that name it, in log order. An identifier with no entry is listed too: its
/// absence from the map is part of what the answer proves.
pub fn read_set<E: Borrow<LoggedEvent>>(sgtin: &Sgtin, events: &[E]) -> Vec<(String, Vec<u64>)> {
    let me = EpcId::Sgtin(sgtin.clone());
    let closure = pack::container_closure(&me, events);
    read_along(&closure, &pack::classes_of(sgtin, events), events)
}

/// [`read_set`] of events the store's walk loaded, along the closure and classes it found.
pub fn read_set_of<E: Borrow<LoggedEvent>>(walked: &PackEvents<E>) -> Vec<(String, Vec<u64>)> {
    read_along(&walked.closure, &walked.classes, &walked.events)
}

fn read_along<E: Borrow<LoggedEvent>>(
    closure: &[EpcId],
    classes: &[EpcId],
    events: &[E],
) -> Vec<(String, Vec<u64>)> {
    // The pack, its containers in key order (events come in any order), then its classes.
    let mut containers: Vec<String> = closure.iter().skip(1).map(epc_key).collect();
    containers.sort_unstable();
    let ids = closure
        .iter()
        .take(1)
        .map(epc_key)
        .chain(containers)
        .chain(classes.iter().map(epc_key).collect::<Vec<_>>());
    ids.map(|id| {
        let mut entries: Vec<u64> = events
            .iter()
            .map(|e| -> &LoggedEvent { e.borrow() })
            .filter(|le| {
                pack::named_ids(&le.event)
                    .into_iter()
                    .any(|n| epc_key(n) == id)
            })
            .map(|le| le.index)
            .collect();
        entries.sort_unstable();
        entries.dedup();
        (id, entries)
    })
    .collect()
}

/// One identifier an answer read, with what it read about it and the map's proof of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The index key ([`crate::index::epc_key`]): `sgtin:…`, `sscc:…`, `lgtin:…`, `gtin:…`.
    pub identifier: String,
    /// (entry index, leaf hash), in log order.
    pub entries: Vec<(u64, Hash)>,
    pub proof: MapProof,
}

/// An answer's proof that it read every entry about its identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completeness {
    /// The index of the map-root entry, and its bytes.
    pub map_entry_index: u64,
    pub map_entry: Vec<u8>,
    /// The map-root entry's inclusion proof in the cited checkpoint.
    pub map_entry_proof: Vec<Hash>,
    pub claims: Vec<Claim>,
}

impl Completeness {
    /// Checks everything the module docs list against the checkpoint (`size`, `root`) of the
    /// log `origin` whose k256 key is `log_key` (without it, the map-root entry is trusted for
    /// its inclusion in the checkpoint alone); `cited` are the entries the answer rests on.
    /// Returns the map root the answer is complete against.
    pub fn verify(
        &self,
        size: u64,
        root: &Hash,
        origin: &str,
        log_key: Option<&PublicKey>,
        cited: &[u64],
    ) -> Result<MapRoot, MapError> {
        let stated = self.map_root(size, root, origin, log_key)?;
        for claim in &self.claims {
            claim.verify(&stated)?;
        }
        for index in cited {
            let listed = self
                .claims
                .iter()
                .any(|c| c.entries.iter().any(|(i, _)| i == index));
            if !listed {
                return Err(MapError::UncoveredCitation { index: *index });
            }
        }
        Ok(stated)
    }

    /// Opens the map-root entry and checks its inclusion in the checkpoint.
    fn map_root(
        &self,
        size: u64,
        root: &Hash,
        origin: &str,
        log_key: Option<&PublicKey>,
    ) -> Result<MapRoot, MapError> {
        let stated = match log_key {
            Some(key) => MapRoot::open(&self.map_entry, key)?,
            None => MapRoot::parse(&self.map_entry)?.0,
        };
        if stated.origin != origin {
            return Err(MapError::BadRootEntry(format!(
                "it is for the log {:?}, not {origin:?}",
                stated.origin
            )));
        }
        if stated.size != self.map_entry_index {
            return Err(MapError::BadRootEntry(format!(
                "it states size {} but is cited as entry {}",
                stated.size, self.map_entry_index
            )));
        }
        let leaf = merkle::leaf_hash(&self.map_entry);
        merkle::verify_inclusion(
            &leaf,
            self.map_entry_index,
            size,
            &self.map_entry_proof,
            root,
        )
        .map_err(|e| MapError::NotIncluded(e.to_string()))?;
        Ok(stated)
    }
}

impl Claim {
    /// Checks this identifier's entries against the map `stated`.
    pub fn verify(&self, stated: &MapRoot) -> Result<(), MapError> {
        let identifier = || self.identifier.clone();
        let ordered = self.entries.windows(2).all(|w| w[0].0 < w[1].0);
        if !ordered || self.entries.iter().any(|(i, _)| *i >= stated.size) {
            return Err(MapError::BadEntryList {
                identifier: identifier(),
            });
        }
        let held = self
            .proof
            .verify(&stated.root, &key_of(&self.identifier))
            .map_err(|e| MapError::BadProof {
                identifier: identifier(),
                reason: e.to_string(),
            })?
            .unwrap_or_default();
        let listed = History::of(&self.entries);
        if listed.count != held.count {
            return Err(MapError::Incomplete {
                identifier: identifier(),
                listed: listed.count,
                held: held.count,
            });
        }
        if listed != held {
            return Err(MapError::HistoryMismatch {
                identifier: identifier(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::map::MapTree;
    use crate::merkle::CompactRange;
    use proptest::prelude::*;

    const ORIGIN: &str = "rxledger.test/log";

    /// A log of `entries` (each naming some identifiers), the map over it and the map-root
    /// entry appended last, as the sequencer builds them; answers for any identifier.
    struct Log {
        key: SigningKey,
        leaves: Vec<Hash>,
        named: Vec<Vec<String>>,
        map: MapTree,
        map_entry: Vec<u8>,
    }

    impl Log {
        fn new(entries: &[Vec<String>]) -> Log {
            let key = SigningKey::from_bytes(&[9; 32]).unwrap();
            let mut map = MapTree::new();
            let mut leaves = Vec::new();
            for (i, ids) in entries.iter().enumerate() {
                let leaf = merkle::leaf_hash(format!("entry {i} {ids:?}").as_bytes());
                leaves.push(leaf);
                for id in ids {
                    map.push(&key_of(id), i as u64, &leaf);
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
                key,
                leaves,
                named: entries.to_vec(),
                map,
                map_entry,
            }
        }

        fn root(&self) -> Hash {
            let mut r = CompactRange::new();
            for l in &self.leaves {
                r.push(*l);
            }
            r.root()
        }

        fn proof(&self, index: u64) -> Vec<Hash> {
            let size = self.leaves.len() as u64;
            merkle::inclusion_proof(index, size, &Nodes(&self.leaves)).unwrap()
        }

        fn answer(&self, ids: &[&str]) -> Completeness {
            let claims = ids
                .iter()
                .map(|id| Claim {
                    identifier: id.to_string(),
                    entries: self
                        .named
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| n.iter().any(|x| x == id))
                        .map(|(i, _)| (i as u64, self.leaves[i]))
                        .collect(),
                    proof: self.map.prove(&key_of(id)),
                })
                .collect();
            let index = self.leaves.len() as u64 - 1;
            Completeness {
                map_entry_index: index,
                map_entry: self.map_entry.clone(),
                map_entry_proof: self.proof(index),
                claims,
            }
        }

        fn verify(&self, c: &Completeness, cited: &[u64]) -> Result<MapRoot, MapError> {
            let size = self.leaves.len() as u64;
            c.verify(
                size,
                &self.root(),
                ORIGIN,
                Some(&self.key.public_key()),
                cited,
            )
        }
    }

    /// Leaf hashes as a node source, computing inner nodes on demand.
    struct Nodes<'a>(&'a [Hash]);

    impl merkle::NodeSource for Nodes<'_> {
        fn node(&self, id: merkle::NodeId) -> Option<Hash> {
            let first = id.first_leaf() as usize;
            let leaves = self.0.get(first..first + (1usize << id.level))?;
            let mut r = CompactRange::new();
            for l in leaves {
                r.push(*l);
            }
            Some(r.root())
        }
    }

    fn log() -> Log {
        Log::new(&[
            vec!["sgtin:1.1".into(), "lgtin:1.A".into()],
            vec!["sgtin:1.2".into()],
            vec!["sscc:9".into(), "sgtin:1.1".into()],
            vec!["sgtin:1.1".into()],
        ])
    }

    #[test]
    fn an_honest_answer_verifies_complete() {
        let log = log();
        let c = log.answer(&["sgtin:1.1", "sscc:9", "lgtin:1.A", "gtin:1"]);
        let stated = log.verify(&c, &[0, 2, 3]).unwrap();
        assert_eq!(stated.size, 4);
        assert_eq!(c.claims[0].entries.len(), 3);
        // gtin:1 has no entries: proven absent, so an empty list is complete.
        assert!(c.claims[3].entries.is_empty());
    }

    #[test]
    fn a_hidden_entry_fails_naming_the_identifier() {
        let log = log();
        let mut c = log.answer(&["sgtin:1.1", "sscc:9"]);
        c.claims[0].entries.remove(1);
        assert_eq!(
            log.verify(&c, &[]),
            Err(MapError::Incomplete {
                identifier: "sgtin:1.1".into(),
                listed: 2,
                held: 3
            })
        );
        // An entry swapped for another with the same count fails too.
        let mut c = log.answer(&["sgtin:1.1"]);
        c.claims[0].entries[1].1 = log.leaves[1];
        assert_eq!(
            log.verify(&c, &[]),
            Err(MapError::HistoryMismatch {
                identifier: "sgtin:1.1".into()
            })
        );
        // Every entry of a present identifier hidden: the absence proof is not available.
        let mut c = log.answer(&["sscc:9"]);
        c.claims[0].entries.clear();
        assert!(matches!(
            log.verify(&c, &[]),
            Err(MapError::Incomplete { identifier, .. }) if identifier == "sscc:9"
        ));
    }

    #[test]
    fn a_citation_outside_the_lists_or_a_foreign_map_root_fails() {
        let log = log();
        let c = log.answer(&["sgtin:1.2"]);
        assert_eq!(
            log.verify(&c, &[0]),
            Err(MapError::UncoveredCitation { index: 0 })
        );
        let mut c = log.answer(&["sgtin:1.2"]);
        c.map_entry_index -= 1;
        assert!(matches!(
            log.verify(&c, &[]),
            Err(MapError::BadRootEntry(_))
        ));
        let c = log.answer(&["sgtin:1.2"]);
        let size = log.leaves.len() as u64;
        assert!(matches!(
            c.verify(size, &[0; 32], ORIGIN, Some(&log.key.public_key()), &[]),
            Err(MapError::NotIncluded(_))
        ));
        assert!(matches!(
            c.verify(
                size,
                &log.root(),
                "other/log",
                Some(&log.key.public_key()),
                &[]
            ),
            Err(MapError::BadRootEntry(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Random logs of packs, cases and lots (any order, any number of entries per
        /// identifier): the honest answer for any identifiers verifies complete, and dropping
        /// any one listed entry fails, naming that identifier.
        #[test]
        fn honest_answers_verify_and_any_omission_is_named(
            entries in proptest::collection::vec(
                proptest::collection::btree_set(0u8..12, 1..4), 1..40),
            drop in any::<prop::sample::Index>(),
        ) {
            let name = |n: u8| match n % 3 {
                0 => format!("sgtin:1.{n}"),
                1 => format!("sscc:{n}"),
                _ => format!("lgtin:1.{n}"),
            };
            let named: Vec<Vec<String>> =
                entries.iter().map(|s| s.iter().map(|n| name(*n)).collect()).collect();
            let log = Log::new(&named);
            let ids: Vec<String> = (0u8..12).map(name).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let all: Vec<u64> = (0..named.len() as u64).collect();
            let c = log.answer(&refs);
            prop_assert!(log.verify(&c, &all).is_ok());
            let listed: Vec<(usize, usize)> = c.claims.iter().enumerate()
                .flat_map(|(k, cl)| (0..cl.entries.len()).map(move |e| (k, e)))
                .collect();
            let (k, e) = listed[drop.index(listed.len())];
            let mut bad = c.clone();
            bad.claims[k].entries.remove(e);
            let failed = log.verify(&bad, &[]);
            let named_it = matches!(&failed,
                Err(MapError::Incomplete { identifier, .. }) if *identifier == ids[k]);
            prop_assert!(named_it, "{:?}", failed);
        }
    }
}
