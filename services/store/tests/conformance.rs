//! One storage conformance suite, run against every backend.
//!
//! Each case is an `async fn(Database)`; the `conformance!` macro instantiates it once for
//! SQLite and once for PostgreSQL. The PostgreSQL instances are `#[ignore]`d with the reason,
//! and CI runs them with `--ignored` against the machine's server (see `testdb`).

use rxledger_core::checkpoint;
use rxledger_core::index::IndexedEvent;
use rxledger_core::keys::{PublicKey, SigningKey};
use rxledger_core::merkle;
use rxledger_core::pack::{LoggedEvent, PackEvents};
use rxledger_store::audit::audit;
use rxledger_store::ledger::EntryKind;
use rxledger_store::testdb::{TempDb, filler_entry};
use rxledger_store::{Admission, Database, Ledger, NewEntry, Registry, StoreError};
use sea_orm::{ConnectionTrait, Statement};

const ORIGIN: &str = "test.rxledger/conformance";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32]).unwrap()
}

fn entry(i: u64) -> NewEntry {
    filler_entry("entry", i, 300)
}

fn device_entry(device: &str, seq: i64, body: &str, event: Option<u8>) -> NewEntry {
    NewEntry {
        data: format!("{device}:{seq}:{body}").into_bytes(),
        kind: EntryKind::DeviceEnvelope,
        signer: device.into(),
        seq: Some(seq),
        events: event
            .map(|e| IndexedEvent {
                hash: [e; 32],
                event_time_ms: 1,
                event_type: "ObjectEvent".into(),
                action: Some("ADD".into()),
                biz_step: Some("commissioning".into()),
                disposition: Some("active".into()),
                read_point: None,
                biz_location: None,
                ids: vec![],
                commissions: vec![],
            })
            .into_iter()
            .collect(),
    }
}

/// What the ledger answers for `e` appended at `index`, with the leaf hash of its bytes.
fn appended(index: u64, e: &NewEntry) -> Admission {
    Admission::Appended {
        index,
        leaf_hash: merkle::leaf_hash(&e.data),
    }
}

/// What the ledger answers for a resend of `e`, first logged at `index`.
fn duplicate(index: u64, e: &NewEntry) -> Admission {
    Admission::Duplicate {
        index,
        leaf_hash: merkle::leaf_hash(&e.data),
    }
}

async fn exec(db: &Database, sql: &str) {
    db.conn
        .execute_raw(Statement::from_string(db.backend(), sql.to_string()))
        .await
        .unwrap();
}

/// Appends batches of awkward sizes; every proof verifies against every signed checkpoint.
async fn proofs_verify_against_checkpoints(db: Database) {
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    assert_eq!(ledger.head().size, 0);
    assert_eq!(ledger.head().root, merkle::empty_root());
    let mut heads = vec![ledger.head()];
    let mut n = 0u64;
    for batch in [1u64, 255, 256, 700, 3, 1] {
        let b = ledger
            .append((n..n + batch).map(entry).collect::<Vec<_>>())
            .await
            .unwrap();
        for (k, a) in b.admissions.iter().enumerate() {
            let index = n + k as u64;
            assert_eq!(a, &appended(index, &entry(index)));
        }
        n += batch;
        assert_eq!(b.head.size, n);
        let cp = checkpoint::open_checkpoint(&b.head.note, ledger.verifier()).unwrap();
        assert_eq!(
            (cp.size, cp.root, cp.origin.as_str()),
            (n, b.head.root, ORIGIN)
        );
        heads.push(b.head);
    }
    let head = ledger.head();
    for index in [0, 1, 254, 255, 256, 511, 512, 1000, n - 1] {
        let proof = ledger.inclusion_proof(index, head.size).await.unwrap();
        let leaf = merkle::leaf_hash(&entry(index).data);
        assert_eq!(ledger.leaf_hash(index).await.unwrap(), leaf);
        merkle::verify_inclusion(&leaf, index, head.size, &proof, &head.root).unwrap();
    }
    for old in &heads[1..] {
        assert_eq!(ledger.root_at(old.size).await.unwrap(), old.root);
        let proof = ledger.consistency_proof(old.size, head.size).await.unwrap();
        merkle::verify_consistency(old.size, head.size, &old.root, &head.root, &proof).unwrap();
    }
    assert!(matches!(
        ledger.consistency_proof(0, head.size).await,
        Err(StoreError::Proof(_))
    ));
    assert!(matches!(
        ledger.inclusion_proof(0, head.size + 1).await,
        Err(StoreError::Invalid(_))
    ));
    let rows = ledger.entries(250, 10).await.unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0].data, entry(250).data);
    let report = audit(&db, ledger.verifier(), Some(&heads[3].note), |_, _| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints_checked, heads.len() as u64);
    assert_eq!(report.consistent_with, Some(heads[3].size));
}

/// Reopening reads only the head and right edge and carries on where it stopped.
async fn reopen_continues(db: Database) {
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    ledger
        .append((0..300).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    let head = ledger.head();
    drop(ledger);
    let again = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    assert_eq!(again.head(), head);
    again
        .append((300..600).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    let p = again.inclusion_proof(10, 600).await.unwrap();
    merkle::verify_inclusion(
        &merkle::leaf_hash(&entry(10).data),
        10,
        600,
        &p,
        &again.head().root,
    )
    .unwrap();
    // Another key or another origin is refused with a clear error.
    let other = SigningKey::from_bytes(&[9u8; 32]).unwrap();
    assert!(matches!(
        Ledger::open(db.clone(), other, ORIGIN).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        Ledger::open(db.clone(), key(), "other.log/x").await,
        Err(StoreError::WrongLog { .. })
    ));
}

/// Two sequencers on one database (two nodes): each notices the head moved and continues from
/// it, and its new root may need tiles only the other one wrote (the multi-node bug that left a
/// node unable to sign).
async fn two_sequencers_stay_consistent(db: Database) {
    let a = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    let b = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    let mut next = 0u64;
    let mut heads = Vec::new();
    // Small batches after the other sequencer crossed a tile boundary are the hard case: the
    // batch changes no upper tile, yet its root needs the other's wider ones.
    for (round, n) in [300u64, 300, 10, 300, 10, 880].into_iter().enumerate() {
        let who = if round % 2 == 0 { &a } else { &b };
        let batch: Vec<NewEntry> = (next..next + n).map(entry).collect();
        next += n;
        heads.push(who.append(batch).await.unwrap().head);
    }
    assert_eq!(heads.last().unwrap().size, 1800);
    let leaves: Vec<merkle::Hash> = (0..1800)
        .map(|i| merkle::leaf_hash(&entry(i).data))
        .collect();
    let mut range = merkle::CompactRange::new();
    for l in &leaves {
        range.push(*l);
    }
    assert_eq!(heads.last().unwrap().root, range.root());
    // Either node proves entries the other sequenced, once it has followed the head.
    a.refresh().await.unwrap();
    let head = a.head();
    let proof = a.inclusion_proof(1500, head.size).await.unwrap();
    merkle::verify_inclusion(&leaves[1500], 1500, head.size, &proof, &head.root).unwrap();
    let report = audit(&db, a.verifier(), Some(&heads[0].note), |_, _| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.size, 1800);
}

/// Resends, replays and duplicate events are decided inside the transaction.
async fn dedup_and_replay(db: Database) {
    let registry = Registry::new(db.clone());
    registry
        .add_organization("acme", "Acme Pharma", "MANUFACTURER")
        .await
        .unwrap();
    registry
        .add_site("0614141000005", "acme", "Plant")
        .await
        .unwrap();
    let dk = SigningKey::from_bytes(&[3u8; 32]).unwrap();
    registry
        .enroll_device("line-1", &dk.public_key(), "acme", "0614141000005")
        .await
        .unwrap();
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();

    let first = vec![
        device_entry("line-1", 5, "a", Some(1)),
        device_entry("line-1", 6, "b", Some(2)),
    ];
    let b = ledger.append(&first).await.unwrap();
    assert_eq!(
        b.admissions,
        vec![appended(0, &first[0]), appended(1, &first[1])]
    );
    let second = vec![
        device_entry("line-1", 5, "a", Some(1)), // a resend: the original entry
        device_entry("line-1", 6, "evil", Some(9)), // same seq, other bytes
        device_entry("line-1", 4, "late", Some(8)), // overtaken in transit: accepted
        device_entry("line-1", 7, "c", Some(2)), // an event already logged
        device_entry("line-1", 8, "d", Some(3)),
        device_entry("line-1", 8, "d", Some(3)), // the same message twice in one batch
    ];
    let b = ledger.append(&second).await.unwrap();
    assert_eq!(
        b.admissions,
        vec![
            duplicate(0, &first[0]),
            Admission::Replay { last_seq: 6 },
            appended(2, &second[2]),
            Admission::DuplicateEvent {
                index: 1,
                event: [2; 32]
            },
            appended(3, &second[4]),
            duplicate(3, &second[4]),
        ]
    );
    // Far below the high-water mark an unseen number is still a late message, not a replay:
    // devices may number by time. Reusing a number for other bytes is a replay.
    let third = vec![
        device_entry("line-1", 9000, "e", Some(10)),
        device_entry("line-1", 4000, "f", Some(11)),
        device_entry("line-1", 9000, "g", Some(12)),
    ];
    let b = ledger.append(&third).await.unwrap();
    assert_eq!(
        b.admissions,
        vec![
            appended(4, &third[0]),
            appended(5, &third[1]),
            Admission::Replay { last_seq: 9000 }
        ]
    );
    assert_eq!(ledger.head().size, 6);
    assert_eq!(
        registry.device("line-1").await.unwrap().unwrap().last_seq,
        9000
    );
}

/// The auditor catches a changed entry and, separately, a changed stored hash.
async fn audit_catches_tampering(db: Database) {
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    ledger
        .append((0..600).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    let v = ledger.verifier().clone();
    assert!(audit(&db, &v, None, |_, _| {}).await.unwrap().ok());

    let hex_of = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let blob = |b: &[u8]| match db.backend() {
        sea_orm::DbBackend::Postgres => format!("'\\x{}'::bytea", hex_of(b)),
        _ => format!("X'{}'", hex_of(b)),
    };
    let mut forged = entry(300).data;
    forged[0] ^= 1;
    exec(
        &db,
        &format!(
            "UPDATE entries SET data = {} WHERE idx = 300",
            blob(&forged)
        ),
    )
    .await;
    let r = audit(&db, &v, None, |_, _| {}).await.unwrap();
    assert!(!r.ok());
    assert!(
        r.problems.iter().any(|p| p.contains("entry 300")),
        "{:?}",
        r.problems
    );
    exec(
        &db,
        &format!(
            "UPDATE entries SET data = {} WHERE idx = 300",
            blob(&entry(300).data)
        ),
    )
    .await;
    assert!(audit(&db, &v, None, |_, _| {}).await.unwrap().ok());

    // Level-1 tile 0 holds the roots of the first two 256-leaf subtrees.
    exec(
        &db,
        &format!(
            "UPDATE tiles SET hashes = {} WHERE level = 1 AND idx = 0",
            blob(&[0u8; 64])
        ),
    )
    .await;
    let r = audit(&db, &v, None, |_, _| {}).await.unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("tile level 1 index 0")),
        "{:?}",
        r.problems
    );

    // A malformed tile row makes the ledger refuse to open rather than serve wrong proofs.
    exec(
        &db,
        &format!(
            "UPDATE tiles SET hashes = {} WHERE level = 0 AND idx = 2",
            blob(&[1u8; 31])
        ),
    )
    .await;
    assert!(matches!(
        Ledger::open(db.clone(), key(), ORIGIN).await,
        Err(StoreError::Corrupt(_))
    ));
}

/// A checkpoint from another log is refused, not audited.
/// A live log keeps growing while it is audited: batches that commit during a pass are
/// covered by the newer head, never reported as entries or rows beyond the head.
async fn audit_of_a_growing_log_passes(db: Database) {
    let ledger = std::sync::Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap());
    ledger
        .append((0..100).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let grower = tokio::spawn({
        let (ledger, stop) = (ledger.clone(), stop.clone());
        async move {
            let mut i = 100;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ledger
                    .append((i..i + 3).map(entry).collect::<Vec<_>>())
                    .await
                    .unwrap();
                i += 3;
                tokio::task::yield_now().await;
            }
        }
    });
    let v = ledger.verifier().clone();
    let start = ledger.head().size;
    for _ in 0..20 {
        let report = audit(&db, &v, None, |_, _| {}).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    grower.await.unwrap();
    assert!(ledger.head().size > start, "the log grew during the audits");
    assert!(audit(&db, &v, None, |_, _| {}).await.unwrap().ok());
}

async fn audit_refuses_foreign_checkpoint(db: Database) {
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    ledger
        .append((0..5).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    let other_db = TempDb::sqlite().await.unwrap();
    let other = Ledger::open(
        other_db.db.clone(),
        SigningKey::from_bytes(&[8u8; 32]).unwrap(),
        "other.log/y",
    )
    .await
    .unwrap();
    other
        .append((0..5).map(entry).collect::<Vec<_>>())
        .await
        .unwrap();
    let r = audit(&db, ledger.verifier(), Some(&other.head().note), |_, _| {}).await;
    assert!(matches!(r, Err(StoreError::WrongLog { .. })), "{r:?}");
}

async fn registry_rules(db: Database) {
    let r = Registry::new(db.clone());
    r.add_organization("acme", "Acme", "MANUFACTURER")
        .await
        .unwrap();
    assert!(matches!(
        r.add_organization("acme", "Again", "MANUFACTURER").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        r.add_organization("x", "X", "KING").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        r.add_organization("bad id", "X", "PHARMACY").await,
        Err(StoreError::Invalid(_))
    ));
    r.add_company_prefix("acme", "0614141").await.unwrap();
    assert!(matches!(
        r.add_company_prefix("acme", "0614141").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        r.add_company_prefix("acme", "12ab").await,
        Err(StoreError::Invalid(_))
    ));
    // The brand owner comes from the registered prefixes, as the ingest rules read them.
    let prefixes = rxledger_store::packs::Packs::new(db.clone())
        .prefixes()
        .await
        .unwrap();
    let gtin = |g: &str| rxledger_core::gs1::Gtin::parse(g).unwrap();
    assert_eq!(
        rxledger_core::index::owner_of(&prefixes, &gtin("10614141073464")).as_deref(),
        Some("acme")
    );
    assert_eq!(
        rxledger_core::index::owner_of(&prefixes, &gtin("10999999073461")),
        None
    );
    r.add_organization("pharm", "Pharmacy", "PHARMACY")
        .await
        .unwrap();
    r.add_site("0614141000005", "acme", "Plant").await.unwrap();
    let k: PublicKey = SigningKey::from_bytes(&[3u8; 32]).unwrap().public_key();
    assert!(matches!(
        r.enroll_device("d1", &k, "pharm", "0614141000005").await,
        Err(StoreError::Invalid(_))
    ));
    r.enroll_device("d1", &k, "acme", "0614141000005")
        .await
        .unwrap();
    assert_eq!(r.device("d1").await.unwrap().unwrap().status, "active");
    r.revoke_device("d1").await.unwrap();
    assert_eq!(r.device("d1").await.unwrap().unwrap().status, "revoked");
    assert!(matches!(
        r.revoke_device("nope").await,
        Err(StoreError::NotFound(_))
    ));
}

/// The in-memory identifier index gives exactly the events the `epcs` table gives, whoever
/// appended them: this node, another sequencer on the same database, or a log that was
/// already there when the node started.
async fn index_in_memory_matches_table(db: Database) {
    use rxledger_core::gs1::{Gln, Sgtin, parse_code};
    use rxledger_core::verdict;
    use rxledger_store::packs::{Packs, append_state_change};
    use serde_json::json;

    let sgtin = |serial: &str| -> Sgtin {
        parse_code(&format!("https://id.gs1.org/01/09506000134352/21/{serial}"))
            .unwrap()
            .sgtin()
            .unwrap()
    };
    let uri = |serial: &str| format!("urn:epc:id:sgtin:9506000.013435.{serial}");
    let site = Gln::parse("9506000000008").unwrap();
    let now = rxledger_store::now_ms();
    let time = |ms: i64| rxledger_core::epcis::format_time(ms);
    let commission = |serials: &[&str], ms: i64| {
        json!({
            "type": "ObjectEvent", "action": "ADD", "eventTime": time(ms),
            "eventTimeZoneOffset": "+00:00",
            "epcList": serials.iter().map(|s| uri(s)).collect::<Vec<_>>(),
            "bizStep": "commissioning", "disposition": "active",
            "ilmd": {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2031-01-31"},
        })
    };
    let case = "urn:epc:id:sscc:9506000.0000000017";
    let pack_into = |serials: &[&str], ms: i64| {
        json!({
            "type": "AggregationEvent", "action": "ADD", "eventTime": time(ms),
            "eventTimeZoneOffset": "+00:00", "parentID": case,
            "childEPCs": serials.iter().map(|s| uri(s)).collect::<Vec<_>>(),
            "bizStep": "packing",
        })
    };
    let ship_case = |ms: i64| {
        json!({
            "type": "ObjectEvent", "action": "OBSERVE", "eventTime": time(ms),
            "eventTimeZoneOffset": "+00:00", "epcList": [case],
            "bizStep": "shipping", "disposition": "in_transit",
        })
    };
    let a = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    // Entries that exist before the node's index is loaded.
    append_state_change(
        &a,
        "acme",
        commission(&["A1", "A2", "A3"], now - 60_000),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    append_state_change(&a, "acme", pack_into(&["A1", "A2"], now - 50_000), None)
        .await
        .unwrap()
        .unwrap();
    let a = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    let indexed = Packs::indexed(db.clone(), a.postings());
    indexed.load_index().await.unwrap();
    assert_eq!(a.postings().covered(), 2);

    let same = |label: &'static str| {
        let (db, indexed) = (db.clone(), &indexed);
        async move {
            let table = Packs::new(db.clone());
            // The events, and the closure and classes the walk went through.
            let sorted = |walked: PackEvents<std::sync::Arc<LoggedEvent>>| {
                let mut v: Vec<u64> = walked.events.iter().map(|e| e.index).collect();
                v.sort_unstable();
                (v, walked.closure, walked.classes)
            };
            for serial in ["A1", "A2", "A3", "B9"] {
                let from_table = sorted(table.events(&sgtin(serial)).await.unwrap());
                let from_memory = sorted(indexed.events(&sgtin(serial)).await.unwrap());
                assert_eq!(from_memory, from_table, "{label}: pack {serial}");
            }
        }
    };
    same("loaded at start").await;

    // This node appends: the index follows without reading the table.
    append_state_change(&a, "acme", ship_case(now - 40_000), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.postings().covered(), 3);
    same("own append").await;

    // Another sequencer appends; this node learns of it from the head and catches up.
    let b = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    append_state_change(
        &b,
        "pharm",
        verdict::dispense_event(&sgtin("A1"), &site, now - 30_000),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    a.refresh().await.unwrap();
    same("another sequencer's append").await;
    assert_eq!(a.postings().covered(), 4);

    // And this node appends after it.
    append_state_change(&a, "acme", commission(&["B9"], now - 20_000), None)
        .await
        .unwrap()
        .unwrap();
    same("own append after the other's").await;
    assert_eq!(a.postings().covered(), 5);
    let a1 = indexed.events(&sgtin("A1")).await.unwrap();
    assert_eq!(
        a1.iter()
            .map(|e| e.index)
            .collect::<std::collections::BTreeSet<_>>(),
        [0, 1, 2, 3].into(),
        "A1: commissioned, packed, its case shipped, dispensed"
    );
    assert_eq!(a1.closure.len(), 2, "A1 and its case: {:?}", a1.closure);
}

/// Concurrent checked appends whose precondition each other's append breaks: exactly one is
/// appended, the rest are refused with the check's rule. On PostgreSQL half of them go through
/// a second sequencer (another node), serialised by the sequencer lease.
async fn checked_appends_have_one_winner(db: Database) {
    use rxledger_core::pack::{RuleCode, RuleViolation};
    let a = std::sync::Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap());
    let b = if db.is_postgres() {
        std::sync::Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap())
    } else {
        a.clone()
    };
    a.append(vec![entry(0)]).await.unwrap();
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let (ledger, db) = (if i % 2 == 0 { a.clone() } else { b.clone() }, db.clone());
            tokio::spawn(async move {
                let mut e = entry(100 + i);
                e.signer = "org:winner".into();
                // Read through the shared pool, not the append's connection: committed state.
                let check = Box::pin(async move {
                    let sql = "SELECT COUNT(*) AS n FROM entries WHERE signer = 'org:winner'";
                    let row = db
                        .conn
                        .query_one_raw(Statement::from_string(db.backend(), sql.to_string()))
                        .await?
                        .expect("COUNT returns a row");
                    let n: i64 = row.try_get("", "n")?;
                    Ok(if n == 0 {
                        Ok(())
                    } else {
                        Err(RuleViolation::new_public(
                            RuleCode::StatusAlreadySet,
                            "someone else won",
                        ))
                    })
                });
                ledger.append_checked(e, check).await.unwrap().admissions
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap().as_slice() {
            [Admission::Appended { .. }] => won += 1,
            [Admission::Refused(v)] => assert_eq!(v.code, RuleCode::StatusAlreadySet),
            other => panic!("unexpected admission {other:?}"),
        }
    }
    assert_eq!(won, 1);
    a.refresh().await.unwrap();
    assert_eq!(a.head().size, 2);
}

/// Product master data: an upsert by GTIN (the second write replaces every field), bounded
/// input refused before anything is written, and a stable order for listing.
async fn product_master_data(db: Database) {
    use rxledger_core::gs1::Gtin;
    use rxledger_store::{Products, TradeItem};
    let p = Products::new(db);
    let g = Gtin::parse("10614141073464").unwrap();
    let other = Gtin::parse("10614141073471").unwrap();
    assert_eq!(p.get(&g).await.unwrap(), None);
    let item = TradeItem {
        product_name: "Amoxil".into(),
        strength: Some("500 mg".into()),
        net_content: Some("21 capsules".into()),
        ..TradeItem::default()
    };
    p.set(&other, item.clone(), "acme").await.unwrap();
    p.set(&g, item, "acme").await.unwrap();
    let replaced = TradeItem {
        product_name: "Amoxil Forte".into(),
        dosage_form: Some("capsule".into()),
        ..TradeItem::default()
    };
    p.set(&g, replaced, "nca").await.unwrap();
    let row = p.get(&g).await.unwrap().unwrap();
    assert_eq!(
        (
            row.product_name.as_str(),
            row.strength,
            row.dosage_form.as_deref()
        ),
        ("Amoxil Forte", None, Some("capsule"))
    );
    assert_eq!(row.registered_by, "nca");
    let too_long = TradeItem {
        product_name: "x".repeat(rxledger_store::products::MAX_NAME + 1),
        ..TradeItem::default()
    };
    assert!(matches!(
        p.set(&g, too_long, "acme").await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        p.get(&g).await.unwrap().unwrap().product_name,
        "Amoxil Forte"
    );
    let gtins: Vec<String> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.gtin)
        .collect();
    assert_eq!(gtins, [g.as_str(), other.as_str()]);
}

/// A pack's life as real entries: `line-1` of `acme` commissions A and B and packs them into
/// a case, then the pharmacy `corner` dispenses A through the API. Returns the ledger and
/// the index of the dispensing entry.
async fn dispensed_pack(db: &Database) -> (Ledger, u64) {
    dispensed_pack_with(db, rxledger_store::LedgerOptions::default()).await
}

/// [`dispensed_pack`] on a ledger opened with `options`.
async fn dispensed_pack_with(
    db: &Database,
    options: rxledger_store::LedgerOptions,
) -> (Ledger, u64) {
    use rxledger_core::envelope::{self, Body};
    use rxledger_core::index::index_event;
    let ledger = Ledger::open_with(db.clone(), key(), ORIGIN, options)
        .await
        .unwrap();
    let registry = Registry::new(db.clone());
    registry
        .add_organization("acme", "Acme", "MANUFACTURER")
        .await
        .unwrap();
    registry
        .add_site("0614141000005", "acme", "plant")
        .await
        .unwrap();
    let device = SigningKey::from_bytes(&[9u8; 32]).unwrap();
    registry
        .enroll_device("line-1", &device.public_key(), "acme", "0614141000005")
        .await
        .unwrap();
    let site = "urn:epc:id:sgln:0614141.00000.0";
    let pack = |s: &str| format!("urn:epc:id:sgtin:0614141.107346.{s}");
    let events = [
        serde_json::json!({
            "type": "ObjectEvent", "eventTime": "2025-01-01T10:00:00.000Z",
            "eventTimeZoneOffset": "+00:00", "epcList": [pack("A"), pack("B")],
            "action": "ADD", "bizStep": "commissioning", "disposition": "active",
            "readPoint": {"id": site}, "bizLocation": {"id": site},
            "ilmd": {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2031-06-30"}
        }),
        serde_json::json!({
            "type": "AggregationEvent", "eventTime": "2025-01-01T11:00:00.000Z",
            "eventTimeZoneOffset": "+00:00", "parentID": "urn:epc:id:sscc:0614141.1234567890",
            "childEPCs": [pack("A"), pack("B")], "action": "ADD", "bizStep": "packing",
            "disposition": "in_progress", "readPoint": {"id": site}
        }),
    ];
    let now = rxledger_store::now_ms();
    let batch: Vec<NewEntry> = events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let (row, _) = index_event(ev, "acme", now, 60_000).unwrap();
            let body = Body {
                v: envelope::VERSION,
                device_id: "line-1".into(),
                seq: i as u64 + 1,
                sent_at: "2025-01-01T12:00:00.000Z".into(),
                events: vec![ev.clone()],
            };
            NewEntry {
                data: envelope::seal(&device, &body),
                kind: EntryKind::DeviceEnvelope,
                signer: "line-1".into(),
                seq: Some(i as i64 + 1),
                events: vec![row],
            }
        })
        .collect();
    ledger.append(batch).await.unwrap();
    use rxledger_core::gs1::{Gln, Gtin, Serial, Sgtin};
    let sgtin = Sgtin {
        gtin: Gtin::parse("10614141073464").unwrap(),
        serial: Serial::parse("A").unwrap(),
    };
    let gln = Gln::parse("0614141000029").unwrap();
    let dispense = rxledger_core::verdict::dispense_event(&sgtin, &gln, now);
    let (index, _) = rxledger_store::packs::append_state_change(&ledger, "corner", dispense, None)
        .await
        .unwrap()
        .unwrap();
    (ledger, index)
}

/// The derived tables are audited: a deleted, an altered and an inserted row are each named
/// by the auditor and by the check the server runs at start; the untouched log passes both.
async fn audit_names_every_wrong_index_row(db: Database) {
    use rxledger_store::indexaudit::check_index;
    let (ledger, dispensed) = dispensed_pack(&db).await;
    let v = ledger.verifier().clone();
    let clean = audit(&db, &v, None, |_, _| {}).await.unwrap();
    assert!(clean.ok(), "{:?}", clean.problems);
    // 3 events; A in 3 of them, B and the case in 2 (the case once); 2 commissions.
    assert_eq!(clean.index_rows_checked, 3 + 6 + 2);
    assert_eq!(clean.entries_unreadable, 0);
    assert!(check_index(&db, 3).await.unwrap().ok());

    // The issue's attack: the dispensed pack's row of its dispensing, gone.
    exec(
        &db,
        &format!(
            "DELETE FROM epcs WHERE epc = 'sgtin:10614141073464.A' AND entry_idx = {dispensed}"
        ),
    )
    .await;
    exec(
        &db,
        "UPDATE commissions SET lot = 'L9' WHERE sgtin = 'sgtin:10614141073464.B'",
    )
    .await;
    exec(
        &db,
        "UPDATE events SET event_time_ms = 1 WHERE entry_idx = 1",
    )
    .await;
    let hash = match db.backend() {
        sea_orm::DbBackend::Postgres => format!("'\\x{}'::bytea", "ab".repeat(32)),
        _ => format!("X'{}'", "ab".repeat(32)),
    };
    exec(
        &db,
        &format!("INSERT INTO epcs (epc, event_hash, entry_idx, position, event_time_ms, role) VALUES ('sgtin:10614141073464.Z', {hash}, 0, 0, 0, 0)"),
    )
    .await;

    for r in [
        audit(&db, &v, None, |_, _| {}).await.unwrap(),
        check_index(&db, ledger.head().size).await.unwrap(),
    ] {
        let named = |what: &str| {
            assert!(
                r.problems.iter().any(|p| p.contains(what)),
                "{what} not in {:#?}",
                r.problems
            )
        };
        named("epcs row sgtin:10614141073464.A in event");
        named(&format!(
            "is missing: the entries give entry {dispensed} position 0"
        ));
        named("commissions row sgtin:10614141073464.B differs");
        named(
            "lot Some(\"L1\") expiry Some(\"2031-06-30\"), the table holds gtin 10614141073464 entry 0 org acme lot Some(\"L9\")",
        );
        named("events row event ");
        named("differs: the entries give entry 1 position 0 eventTime 1735729200000");
        named(&format!(
            "epcs row sgtin:10614141073464.Z in event {} is extra",
            "ab".repeat(32)
        ));
        assert_eq!(r.problems.len(), 4, "{:#?}", r.problems);
    }
}

/// Tracing requests: appended as records the index skips, listed for the requester and the
/// parties asked only, newest first, and the audit still passes.
async fn trace_requests_and_who_reads_them(db: Database) {
    use rxledger_core::trace::{self, TraceReason, TraceRecord, TraceScope};
    use rxledger_store::desk;
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    ledger.append(vec![entry(0)]).await.unwrap();
    let record = |requester: &str, parties: &[&str]| TraceRecord {
        requester: requester.into(),
        subject: "https://id.gs1.org/01/10614141073464/21/1".into(),
        scope: TraceScope::AllKnownOwners,
        reason: TraceReason::Audit,
        incident: None,
        test: true,
        parties: parties.iter().map(|p| p.to_string()).collect(),
        asked_at: "2026-12-06T22:00:00.000Z".into(),
    };
    let (first, _) = desk::append_trace_record(&ledger, &record("agency", &["acme", "corner"]), 1)
        .await
        .unwrap();
    let (second, head) = desk::append_trace_record(&ledger, &record("acme", &["acme"]), 2)
        .await
        .unwrap();
    assert_eq!((first, second, head.size), (1, 2, 3));
    let listed = |org: Option<&'static str>| {
        let ledger = &ledger;
        async move {
            desk::trace_requests(ledger, org, 10, None)
                .await
                .unwrap()
                .into_iter()
                .map(|(i, bytes)| {
                    let r = trace::open_record(&bytes, ledger.verifier()).unwrap();
                    (i, r.requester)
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(None).await,
        [(2, "acme".to_string()), (1, "agency".to_string())]
    );
    assert_eq!(listed(Some("corner")).await, [(1, "agency".to_string())]);
    assert_eq!(listed(Some("acme")).await.len(), 2);
    assert!(listed(Some("faraway")).await.is_empty());
    let before = desk::trace_requests(&ledger, None, 10, Some(2))
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    let bytes = desk::entry_bytes(&ledger, &[1, 7]).await.unwrap();
    assert_eq!((bytes.len(), bytes[0].0), (1, 1));
    let report = audit(&db, ledger.verifier(), None, |_, _| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(
        report.entries_unreadable, 1,
        "the filler entry, not the records"
    );
}

/// Alert cases: one per alert about a pack, assigned to the brand owner (none for an
/// unregistered prefix, escalated at once); transitions decided by the core's rules, timers on
/// a clock the test sets; the state folded back from the log; a restarted service opens no
/// case twice; and the audit passes over the records.
async fn alert_cases_follow_their_records(db: Database) {
    use rxledger_core::case::{CaseAction, CaseError, Party, Timers, Transition};
    use rxledger_store::cases::{CaseFilter, Cases};
    use rxledger_store::{Alerts, Clock, NewAlert, Severity};
    use std::sync::Arc;
    const DAY: i64 = 86_400_000;
    let ledger = Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap());
    let registry = Registry::new(db.clone());
    registry
        .add_organization("acme", "Acme", "MANUFACTURER")
        .await
        .unwrap();
    registry
        .add_company_prefix("acme", "0614141")
        .await
        .unwrap();
    let alert = |code: &str, subject: &str| NewAlert {
        code: code.into(),
        severity: Severity::Warning,
        subjects: vec![subject.into()],
        message: format!("{code} about {subject}"),
        evidence: vec![],
        raw: None,
    };
    Alerts::new(db.clone())
        .record(vec![
            alert("DISPENSED_TWICE", "sgtin:10614141073464.1"),
            alert("BAD_SIGNATURE", "device:line-1"),
            alert("DISPENSED_TWICE", "sgtin:10999999000016.7"),
        ])
        .await
        .unwrap();
    let clock = Clock::manual(1_796_000_000_000);
    let cases = Cases::new(ledger.clone(), Timers::default(), clock.clone());
    let swept = cases.sweep().await.unwrap();
    assert_eq!(swept.opened, [0, 1], "the device's alert names no pack");
    let list = |f: CaseFilter| {
        let cases = &cases;
        async move { cases.list(&f, 10).await.unwrap() }
    };
    let mine = list(CaseFilter {
        brand_owner: Some("acme".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(mine.len(), 1);
    let acme = mine[0].id as u64;
    let escalated = list(CaseFilter {
        escalated: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0].brand_owner, None);

    let act = |party: Party, t: Transition| {
        let cases = &cases;
        async move {
            cases
                .act(acme, party, "acme", t, Some("text".into()))
                .await
                .unwrap()
        }
    };
    assert!(matches!(
        act(Party::BrandOwner, Transition::RequestInformation).await,
        Some(Err(CaseError::NotAllowed(_)))
    ));
    assert!(
        cases
            .act(99, Party::Regulator, "nca", Transition::Answer, None)
            .await
            .unwrap()
            .is_none()
    );
    act(Party::BrandOwner, Transition::Answer)
        .await
        .unwrap()
        .unwrap();
    clock.advance(3 * DAY);
    assert!(cases.sweep().await.unwrap().timers.is_empty());
    act(Party::Regulator, Transition::RequestInformation)
        .await
        .unwrap()
        .unwrap();
    clock.advance(15 * DAY);
    let timers: Vec<CaseAction> = cases
        .sweep()
        .await
        .unwrap()
        .timers
        .into_iter()
        .map(|t| t.1)
        .collect();
    assert_eq!(
        timers,
        [
            CaseAction::Reminded,
            CaseAction::Reminded,
            CaseAction::Escalated
        ]
    );
    let folded = cases.fold(acme).await.unwrap().unwrap();
    let row = cases.row(acme).await.unwrap().unwrap();
    assert_eq!(folded.records.len(), 6);
    assert_eq!(
        (row.status.as_str(), row.escalated, row.next_due_ms),
        ("INFORMATION_REQUESTED", true, None)
    );
    assert_eq!(folded.status.as_str(), row.status);

    // A restarted service opens no case twice.
    let again = Cases::new(ledger.clone(), Timers::default(), clock);
    assert_eq!(again.sweep().await.unwrap(), Default::default());
    let report = audit(&db, ledger.verifier(), None, |_, _| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(
        report.entries_unreadable, 0,
        "case records are desk records"
    );
}

/// The pack index map (issue 24): a map-root entry ends every batch, its root is the map of
/// every entry before it, proofs from the committed map verify with the core, a reopened
/// ledger carries on from the stored leaves, a ledger that moved on without this one (or
/// without a map) is caught up, and the auditor recomputes every root and the stored leaves.
async fn map_commits_with_each_batch(db: Database) {
    use rxledger_core::map::completeness::{Claim, Completeness};
    use rxledger_core::map::{History, rootentry::MapRoot};
    let with_map = rxledger_store::LedgerOptions { map: true };
    let (ledger, dispensed) = dispensed_pack_with(&db, with_map).await;
    // Two envelopes in one batch (0, 1), its map root (2), the dispense (3), its map root (4).
    let rows = ledger.entries(0, 5).await.unwrap();
    let kinds: Vec<i16> = rows.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [1, 1, 4, 2, 4]);
    assert_eq!((dispensed, ledger.head().size), (3, 5));
    let stated = MapRoot::open(&rows[4].data, &key().public_key()).unwrap();
    assert_eq!((stated.size, stated.origin.as_str()), (4, ORIGIN));

    let ids = [
        "sgtin:10614141073464.A".to_string(),
        "sscc:106141412345678908".to_string(),
        "sgtin:10614141073464.Z".to_string(),
    ];
    let (root, proofs) = ledger.map_proofs(&ids).await.unwrap();
    assert_eq!((root.index, &root.stated), (4, &stated));
    let leaf = |i: usize| merkle::leaf_hash(&rows[i].data);
    let a = History::of(&[(0, leaf(0)), (1, leaf(1)), (3, leaf(3))]);
    assert_eq!(proofs[0].history, Some(a));
    assert_eq!(proofs[2].history, None);
    let head = ledger.head();
    let claims = vec![
        Claim {
            identifier: ids[0].clone(),
            entries: vec![(0, leaf(0)), (1, leaf(1)), (3, leaf(3))],
            proof: proofs[0].proof.clone(),
        },
        Claim {
            identifier: ids[2].clone(),
            entries: vec![],
            proof: proofs[2].proof.clone(),
        },
    ];
    let c = Completeness {
        map_entry_index: 4,
        map_entry: rows[4].data.clone(),
        map_entry_proof: ledger.inclusion_proof(4, head.size).await.unwrap(),
        claims,
    };
    c.verify(
        head.size,
        &head.root,
        ORIGIN,
        Some(&key().public_key()),
        &[3],
    )
    .unwrap();

    // Reopened: the map built from the index is the committed one.
    drop(ledger);
    let again = Ledger::open_with(db.clone(), key(), ORIGIN, with_map)
        .await
        .unwrap();
    assert_eq!(again.map_proofs(&ids).await.unwrap().0, root);
    // Another ledger (another node, or one without the map) appends; this one catches up.
    let plain = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    plain.append(vec![entry(100)]).await.unwrap();
    let other = Ledger::open_with(db.clone(), key(), ORIGIN, with_map)
        .await
        .unwrap();
    other.append(vec![entry(101)]).await.unwrap();
    again.append(vec![entry(102)]).await.unwrap();
    assert_eq!(again.head().size, 10);
    let report = audit(&db, again.verifier(), None, |_, _| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.map_roots_checked, 4);
    assert_eq!(report.entries_unreadable, 3);
}

/// The map is built at open from the `epcs` rows a page of entries at a time: a log longer
/// than a page, whose identifiers recur across the pages' edges, gives the committed map
/// (histories are hash chains in log order, so a row lost, doubled or taken out of order at
/// an edge changes the root and the map would not vouch for the index).
async fn the_map_built_page_by_page_is_the_committed_one(db: Database) {
    let with_map = rxledger_store::LedgerOptions { map: true };
    let ledger = Ledger::open_with(db.clone(), key(), ORIGIN, with_map)
        .await
        .unwrap();
    let named = |i: u64| -> NewEntry {
        let mut e = device_entry("line-1", i as i64, &format!("e{i}"), Some(0));
        e.events[0].hash = merkle::leaf_hash(&i.to_be_bytes());
        e.events[0].ids = vec![
            (format!("sgtin:10614141073464.{}", i % 700), 0),
            ("gtin:10614141073464".to_string(), 3),
        ];
        e
    };
    // 4,500 entries in batches of 900 (each batch adds its map-root entry): more than two
    // pages of the build.
    for batch in 0..5u64 {
        let entries: Vec<NewEntry> = (batch * 900..(batch + 1) * 900).map(named).collect();
        ledger.append(entries).await.unwrap();
    }
    let ids = [
        "sgtin:10614141073464.3".to_string(),
        "gtin:10614141073464".to_string(),
    ];
    let (root, proofs) = ledger.map_proofs(&ids).await.unwrap();
    assert_eq!(proofs[1].history.unwrap().count, 4500);
    drop(ledger);
    let again = Ledger::open_with(db.clone(), key(), ORIGIN, with_map)
        .await
        .unwrap();
    assert!(again.head().size > 4500);
    assert_eq!(again.map_vouches_for_index().await, Some(true));
    let (rebuilt, proofs_again) = again.map_proofs(&ids).await.unwrap();
    assert_eq!(rebuilt, root);
    assert_eq!(proofs_again[0].history, proofs[0].history);
}

/// Browser sessions: a cookie stands for its key until sign-out, the idle or lifetime bound,
/// or the key's revocation or expiry; a key holds a bounded number of them.
async fn sessions_follow_their_key(db: Database) {
    use rxledger_store::apikeys::TokenProblem;
    use rxledger_store::sessions::{IDLE_MS, LIFETIME_MS, MAX_PER_KEY, SessionProblem};
    let keys = rxledger_store::ApiKeys::new(db.clone());
    let sessions = keys.sessions();
    let now = rxledger_store::now_ms();
    let (_, key) = keys
        .issue("corner", "PHARMACY", "till", None)
        .await
        .unwrap();
    let cookie = sessions.open(&key.id, now).await.unwrap();
    assert!(cookie.starts_with("rxs_") && cookie.len() == 68, "{cookie}");
    let p = sessions.resolve(&cookie, now + 1).await.unwrap().unwrap();
    assert_eq!(
        (p.key_id.as_str(), p.org_id.as_str(), p.role.as_str()),
        (key.id.as_str(), "corner", "PHARMACY")
    );
    // Used after 11 hours: the idle bound counts from this use.
    let later = now + IDLE_MS - 3_600_000;
    assert!(sessions.resolve(&cookie, later).await.unwrap().is_ok());
    assert!(
        sessions
            .resolve(&cookie, later + IDLE_MS - 1)
            .await
            .unwrap()
            .is_ok()
    );
    let idle = later + 2 * IDLE_MS;
    assert_eq!(
        sessions.resolve(&cookie, idle).await.unwrap(),
        Err(SessionProblem::Expired)
    );
    assert_eq!(
        sessions.resolve(&cookie, now).await.unwrap(),
        Err(SessionProblem::Unknown),
        "deleted once expired"
    );
    // However busy, a session ends LIFETIME_MS after sign-in.
    let busy = sessions.open(&key.id, now).await.unwrap();
    let mut t = now;
    while t + IDLE_MS / 2 < now + LIFETIME_MS {
        t += IDLE_MS / 2;
        assert!(sessions.resolve(&busy, t).await.unwrap().is_ok());
    }
    assert_eq!(
        sessions.resolve(&busy, now + LIFETIME_MS).await.unwrap(),
        Err(SessionProblem::Expired)
    );
    // Sign-out, and a cookie that was never issued.
    let out = sessions.open(&key.id, now).await.unwrap();
    sessions.close(&out).await.unwrap();
    assert_eq!(
        sessions.resolve(&out, now).await.unwrap(),
        Err(SessionProblem::Unknown)
    );
    assert_eq!(
        sessions
            .resolve(&format!("rxs_{}", "0".repeat(64)), now)
            .await
            .unwrap(),
        Err(SessionProblem::Unknown)
    );
    // A key that expires takes its sessions with it.
    let (_, brief) = keys
        .issue("corner", "PHARMACY", "brief", Some(now + 1_000))
        .await
        .unwrap();
    let c = sessions.open(&brief.id, now).await.unwrap();
    assert!(sessions.resolve(&c, now + 999).await.unwrap().is_ok());
    assert_eq!(
        sessions.resolve(&c, now + 1_000).await.unwrap(),
        Err(SessionProblem::Key(TokenProblem::Expired))
    );
    // Revoking a key ends its sessions, and only its own.
    let (_, other) = keys.issue("hill", "PHARMACY", "till", None).await.unwrap();
    let mine = sessions.open(&key.id, now).await.unwrap();
    let theirs = sessions.open(&other.id, now).await.unwrap();
    keys.revoke(&key.id).await.unwrap();
    assert!(sessions.resolve(&mine, now).await.unwrap().is_err());
    assert!(sessions.resolve(&theirs, now).await.unwrap().is_ok());
    // At most MAX_PER_KEY per key: the oldest goes first.
    let first = sessions.open(&other.id, now - 5).await.unwrap();
    sessions.close(&theirs).await.unwrap();
    for i in 0..MAX_PER_KEY {
        sessions.open(&other.id, now + i as i64).await.unwrap();
    }
    assert_eq!(sessions.count(now + 100).await.unwrap(), MAX_PER_KEY);
    assert_eq!(
        sessions.resolve(&first, now + 100).await.unwrap(),
        Err(SessionProblem::Unknown)
    );
}

/// A batch under one precondition is appended whole or not at all; its events are read back
/// as logged (EPCIS documents), and the EPCIS query's filters select them.
async fn checked_batches_are_all_or_nothing(db: Database) {
    use rxledger_core::envelope;
    use rxledger_core::pack::{RuleCode, RuleViolation};
    use rxledger_store::documents;
    use rxledger_store::packs::{AnyOf, EventFilter, Packs};
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    let batch: Vec<NewEntry> = (0..3u8)
        .map(|i| {
            let body = envelope::Body {
                v: envelope::VERSION,
                device_id: "org:acme".into(),
                seq: 0,
                sent_at: "2026-01-01T00:00:00.000Z".into(),
                events: vec![
                    serde_json::json!({ "n": i }),
                    serde_json::json!({ "n": i + 10 }),
                ],
            };
            let mut e = device_entry("org:acme", 0, "", Some(40 + i));
            e.data = envelope::seal(&key(), &body);
            e.kind = EntryKind::ApiStateChange;
            e.seq = None;
            let mut second = e.events[0].clone();
            second.hash = [50 + i; 32];
            second.biz_step = Some("shipping".into());
            e.events.push(second);
            e
        })
        .collect();
    let refuse = Box::pin(async {
        Ok(Err(RuleViolation::new_public(
            RuleCode::SerialAlreadyCommissioned,
            "no",
        )))
    });
    let done = ledger.append_checked_batch(&batch, refuse).await.unwrap();
    assert!(
        done.admissions
            .iter()
            .all(|a| matches!(a, Admission::Refused(_))),
        "{:?}",
        done.admissions
    );
    assert_eq!(ledger.head().size, 0);
    let done = ledger
        .append_checked_batch(&batch, Box::pin(async { Ok(Ok(())) }))
        .await
        .unwrap();
    for (i, (a, e)) in done.admissions.iter().zip(&batch).enumerate() {
        assert_eq!(*a, appended(i as u64, e));
    }
    let found = documents::find(&db, &[[41; 32], [51; 32], [9; 32]])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&[51; 32]], (1, 1));
    let read = documents::read(&db, &[((1, 1), [51; 32]), ((0, 0), [40; 32])])
        .await
        .unwrap();
    assert_eq!(read[0].json, serde_json::json!({ "n": 11 }));
    assert_eq!(read[0].signer, "org:acme");
    assert!(read[0].received_ms > 0);
    assert_eq!(read[1].json, serde_json::json!({ "n": 0 }));
    assert!(documents::read(&db, &[((0, 5), [0; 32])]).await.is_err());

    let packs = Packs::new(db.clone());
    let filter = |any_of: AnyOf| EventFilter {
        signers: Some(vec!["org:acme".into()]),
        any_of,
        ..EventFilter::default()
    };
    let shipping = packs
        .events_page(
            &filter(AnyOf {
                biz_steps: vec!["shipping".into()],
                record_from_ms: Some(1),
                ..AnyOf::default()
            }),
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(shipping.len(), 3);
    let one = packs
        .events_page(
            &filter(AnyOf {
                hashes: vec![[42; 32]],
                record_until_ms: Some(i64::MAX),
                ..AnyOf::default()
            }),
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!((one.len(), one[0].entry_idx), (1, 2));
    let none = packs
        .events_page(
            &filter(AnyOf {
                record_until_ms: Some(1),
                ..AnyOf::default()
            }),
            10,
            None,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Named EPCIS queries: kept per organisation (the same name in two organisations is two
/// queries, and neither reads, lists or deletes the other's), one name once, at most
/// `MAX_PER_ORG` each, listed by name.
async fn named_queries_stay_with_their_organisation(db: Database) {
    use rxledger_store::queries::{Creation, MAX_PER_ORG, NamedQueries, QueryName};
    let q = NamedQueries::new(db);
    let name = QueryName::parse("shipments").unwrap();
    let text = r#"{"EQ_bizStep":["shipping"]}"#;
    assert!(matches!(
        q.create("acme", &name, text, 1).await.unwrap(),
        Creation::Created(_)
    ));
    assert_eq!(
        q.create("acme", &name, "{}", 2).await.unwrap(),
        Creation::Exists
    );
    assert!(matches!(
        q.create("rival", &name, "{}", 3).await.unwrap(),
        Creation::Created(_)
    ));
    let mine = q.get("acme", "shipments").await.unwrap().unwrap();
    assert_eq!((mine.query.as_str(), mine.created_ms), (text, 1));
    assert_eq!(
        q.get("rival", "shipments").await.unwrap().unwrap().query,
        "{}"
    );
    assert_eq!(q.get("whole", "shipments").await.unwrap(), None);
    assert!(!q.delete("whole", "shipments").await.unwrap());
    assert!(q.delete("rival", "shipments").await.unwrap());
    assert_eq!(q.get("rival", "shipments").await.unwrap(), None);
    assert!(q.get("acme", "shipments").await.unwrap().is_some());
    for i in 1..MAX_PER_ORG {
        let n = QueryName::parse(&format!("q{i:03}")).unwrap();
        assert!(matches!(
            q.create("acme", &n, "{}", 4).await.unwrap(),
            Creation::Created(_)
        ));
    }
    let over = QueryName::parse("one-more").unwrap();
    assert_eq!(
        q.create("acme", &over, "{}", 5).await.unwrap(),
        Creation::Full
    );
    let too_big = "x".repeat(rxledger_store::queries::MAX_QUERY_TEXT + 1);
    assert!(matches!(
        q.create("rival", &over, &too_big, 5).await,
        Err(StoreError::Invalid(_))
    ));
    let first: Vec<String> = q
        .list("acme", None, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(first, ["q001", "q002", "q003"]);
    let next = q.list("acme", Some("q099"), 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].name, "shipments");
    assert!(q.list("rival", None, 10).await.unwrap().is_empty());
}

/// Alert cases on one database for the tests below: acme owns prefix 0614141, and an alert
/// about each of `packs` (serials of GTIN 10614141073464) is recorded; their alert ids.
async fn alerts_about_packs(db: &Database, packs: std::ops::Range<u32>) -> Vec<i64> {
    use rxledger_store::{Alerts, NewAlert, Severity};
    let registry = Registry::new(db.clone());
    if registry.organization("acme").await.unwrap().is_none() {
        registry
            .add_organization("acme", "Acme", "MANUFACTURER")
            .await
            .unwrap();
        registry
            .add_company_prefix("acme", "0614141")
            .await
            .unwrap();
    }
    let subjects: Vec<String> = packs.map(|s| format!("sgtin:10614141073464.{s}")).collect();
    let alerts = Alerts::new(db.clone());
    alerts
        .record(
            subjects
                .iter()
                .map(|subject| NewAlert {
                    code: "DISPENSED_TWICE".into(),
                    severity: Severity::Warning,
                    subjects: vec![subject.clone()],
                    message: format!("dispensed twice: {subject}"),
                    evidence: vec![],
                    raw: None,
                })
                .collect(),
        )
        .await
        .unwrap();
    let all = alerts.list(None, 1000).await.unwrap();
    let mut ids: Vec<i64> = subjects
        .iter()
        .map(|s| all.iter().find(|a| &a.subject == s).unwrap().id)
        .collect();
    ids.sort();
    ids
}

/// An alert that commits after a sweep passed higher ids (two PostgreSQL nodes' inserts can
/// commit out of order) still gets its case at the next sweep, and no alert gets two.
async fn a_late_committed_alert_still_gets_its_case(db: Database) {
    use rxledger_core::case::Timers;
    use rxledger_entities::alert;
    use rxledger_store::{Cases, Clock};
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel};
    use std::sync::Arc;
    let ledger = Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap());
    let ids = alerts_about_packs(&db, 1..5).await;
    // The third alert has not committed yet when the sweep runs.
    let late = alert::Entity::find_by_id(ids[2])
        .one(&db.conn)
        .await
        .unwrap()
        .unwrap();
    alert::Entity::delete_by_id(ids[2])
        .exec(&db.conn)
        .await
        .unwrap();
    let cases = Cases::new(
        ledger.clone(),
        Timers::default(),
        Clock::manual(1_796_000_000_000),
    );
    let first = cases.sweep().await.unwrap();
    assert_eq!(first.opened.len(), 3, "{first:?}");
    // It commits, with its lower id.
    late.into_active_model()
        .reset_all()
        .insert(&db.conn)
        .await
        .unwrap();
    let second = cases.sweep().await.unwrap();
    assert_eq!(second.opened.len(), 1, "{second:?}");
    let listed = cases
        .list(&rxledger_store::cases::CaseFilter::default(), 10)
        .await
        .unwrap();
    let mut alert_ids: Vec<i64> = listed.iter().map(|c| c.alert_id).collect();
    alert_ids.sort();
    assert_eq!(alert_ids, ids, "one case per alert");
    assert!(cases.sweep().await.unwrap().opened.is_empty());
}

/// Every case record in the log, opened with the log key and folded by the core alone,
/// with no row read: what the listing must equal. Tracing requests are skipped.
async fn replayed(ledger: &Ledger) -> std::collections::BTreeMap<u64, rxledger_core::case::Case> {
    use rxledger_core::case::{self, Case};
    let size = ledger.refresh().await.unwrap().size;
    let mut cases = std::collections::BTreeMap::new();
    for e in ledger.entries(0, size).await.unwrap() {
        if e.kind != EntryKind::DeskRecord as i16 || !case::is_case_record(&e.data) {
            continue;
        }
        let r = case::open_record(&e.data, ledger.verifier()).unwrap();
        match r.case {
            None => {
                cases.insert(e.idx as u64, Case::open(e.idx as u64, r).unwrap());
            }
            Some(id) => cases.get_mut(&id).unwrap().apply(e.idx as u64, r).unwrap(),
        }
    }
    cases
}

/// (case, action) of every case record in the log, case by case in log order; an opening
/// names its alert's id, negated, so that two openings for one alert show.
async fn logged_actions(ledger: &Ledger) -> Vec<(i64, rxledger_core::case::CaseAction)> {
    replayed(ledger)
        .await
        .values()
        .flat_map(|c| {
            c.records.iter().map(|(_, r)| match r.case {
                None => (-r.alert.as_ref().unwrap().id, r.action),
                Some(id) => (id as i64, r.action),
            })
        })
        .collect()
}

/// The rows list every case of the log and only those, each as its records fold.
async fn assert_listed_as_replayed(cases: &rxledger_store::Cases, ledger: &Ledger) {
    use rxledger_store::cases::CaseFilter;
    let replay = replayed(ledger).await;
    let rows = cases.list(&CaseFilter::default(), 1000).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id as u64).rev().collect::<Vec<_>>(),
        replay.keys().copied().collect::<Vec<_>>(),
        "one row per case in the log"
    );
    for row in rows {
        let c = &replay[&(row.id as u64)];
        let records: Vec<String> = c.records.iter().map(|(i, _)| i.to_string()).collect();
        assert_eq!(row.records, records.join(" "), "case {}", row.id);
        assert_eq!(
            (
                row.alert_id,
                row.status.as_str(),
                row.root_cause.clone(),
                row.escalated,
                row.next_due_ms,
                row.updated_ms
            ),
            (
                c.alert.id,
                c.status.as_str(),
                c.root_cause.map(|r| r.to_string()),
                c.escalated,
                c.next_timer(cases.timers()).map(|(at, _)| at),
                c.updated_ms
            ),
            "case {}",
            row.id
        );
    }
}

/// Appends a case record the way `Cases` does, and nothing else: the node crashed after the
/// record committed and before its row was written.
async fn append_record_only(ledger: &Ledger, record: &rxledger_core::case::CaseRecord) -> u64 {
    let e = NewEntry {
        data: rxledger_core::case::seal_record(ledger.key(), record),
        kind: EntryKind::DeskRecord,
        signer: rxledger_store::cases::NODE_SIGNER.into(),
        seq: None,
        events: vec![],
    };
    match ledger.append(vec![e]).await.unwrap().admissions.as_slice() {
        [Admission::Appended { index, .. }] => *index,
        other => panic!("not appended: {other:?}"),
    }
}

async fn listed_records(db: &Database, case: u64) -> String {
    let sql = format!("SELECT records FROM alert_cases WHERE id = {case}");
    let row = db
        .conn
        .query_one_raw(Statement::from_string(db.backend(), sql))
        .await
        .unwrap()
        .expect("the case has a row");
    row.try_get("", "records").unwrap()
}

/// A crash between a case record's commit and its row: the record stays in the log, unlisted.
/// The next catch-up lists it as its records fold (a tracing request among them is skipped);
/// a sweep opens no second case for its alert; a reminder whose row was lost does not fire
/// again; and a decision is made on the log, not on a stale row.
async fn case_rows_catch_up_after_a_crash(db: Database) {
    use rxledger_core::case::{
        AlertRef, CaseAction, CaseError, CaseRecord, NODE_ACTOR, Party, RootCause, Timers,
        Transition,
    };
    use rxledger_core::trace::{TraceReason, TraceRecord, TraceScope};
    use rxledger_store::{Cases, Clock, desk};
    use std::sync::Arc;
    const T0: i64 = 1_796_000_000_000;
    const HOUR: i64 = 3_600_000;
    let ledger = Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap());
    let alerts = alerts_about_packs(&db, 1..3).await;
    let timers = Timers::default();
    // The node opened the first alert's case, then crashed before listing it.
    let opening = CaseRecord {
        case: None,
        action: CaseAction::Opened,
        actor: NODE_ACTOR.into(),
        at: rxledger_core::epcis::format_time(T0),
        alert: Some(AlertRef {
            id: alerts[0],
            code: "DISPENSED_TWICE".into(),
            pack: "sgtin:10614141073464.1".into(),
            brand_owner: Some("acme".into()),
            message: "dispensed twice".into(),
            evidence: vec![],
        }),
        root_cause: None,
        text: None,
    };
    let first = append_record_only(&ledger, &opening).await;
    // Another desk record that is no case record follows it.
    let trace = TraceRecord {
        requester: "agency".into(),
        subject: "https://id.gs1.org/01/10614141073464/21/1".into(),
        scope: TraceScope::AllKnownOwners,
        reason: TraceReason::Suspect,
        incident: None,
        test: false,
        parties: vec!["acme".into()],
        asked_at: rxledger_core::epcis::format_time(T0),
    };
    desk::append_trace_record(&ledger, &trace, T0)
        .await
        .unwrap();

    let clock = Clock::manual(T0);
    let cases = Cases::new(ledger.clone(), timers, clock.clone());
    let swept = cases.sweep().await.unwrap();
    assert_eq!(swept.opened.len(), 1, "only the second alert had no case");
    let second = swept.opened[0];
    assert!(second > first);
    assert_eq!(
        logged_actions(&ledger).await,
        [
            (-alerts[0], CaseAction::Opened),
            (-alerts[1], CaseAction::Opened)
        ]
    );
    assert_listed_as_replayed(&cases, &ledger).await;
    // A restarted service finds nothing to open either.
    let again = Cases::new(ledger.clone(), timers, clock.clone());
    assert_eq!(again.sweep().await.unwrap(), Default::default());

    // 48 hours on, the node reminded the first case and crashed before its row.
    clock.advance(timers.first_reminder_ms);
    let folded = cases.fold(first).await.unwrap().unwrap();
    let remind = folded
        .next(
            Party::Node,
            NODE_ACTOR,
            Transition::Remind,
            None,
            clock.now_ms(),
            &timers,
        )
        .unwrap();
    let reminded = append_record_only(&ledger, &remind).await;
    assert_eq!(listed_records(&db, first).await, first.to_string(), "lost");
    // The sweep reminds the second case only: the first one's reminder is in the log.
    let swept = cases.sweep().await.unwrap();
    assert_eq!(swept.timers, [(second, CaseAction::Reminded)]);
    assert_eq!(
        listed_records(&db, first).await,
        format!("{first} {reminded}")
    );
    let reminders = |actions: Vec<(i64, CaseAction)>, case: u64| {
        actions
            .iter()
            .filter(|a| *a == &(case as i64, CaseAction::Reminded))
            .count()
    };
    assert_eq!(reminders(logged_actions(&ledger).await, first), 1);
    assert_listed_as_replayed(&cases, &ledger).await;

    // The brand owner closed the second case on a node that crashed before its row: an
    // answer now is decided on the closed case, and nothing more is due on it.
    clock.advance(HOUR);
    let folded = cases.fold(second).await.unwrap().unwrap();
    let close = folded
        .next(
            Party::BrandOwner,
            "acme",
            Transition::Close(RootCause::ProcessError),
            None,
            clock.now_ms(),
            &timers,
        )
        .unwrap();
    append_record_only(&ledger, &close).await;
    let answer = cases
        .act(
            second,
            Party::BrandOwner,
            "acme",
            Transition::Answer,
            Some("late".into()),
        )
        .await
        .unwrap();
    assert_eq!(answer, Some(Err(CaseError::Closed)));
    clock.advance(30 * 24 * HOUR);
    let swept = cases.sweep().await.unwrap();
    assert_eq!(
        swept.timers,
        [
            (first, CaseAction::Reminded),
            (first, CaseAction::Escalated)
        ]
    );
    assert_eq!(reminders(logged_actions(&ledger).await, second), 1);
    assert_listed_as_replayed(&cases, &ledger).await;
    // A database from before the cursor starts it at entry 0: the catch-up reads every desk
    // record again and lists nothing twice.
    exec(&db, "UPDATE alert_case_cursor SET covered = 0").await;
    let mut changes = cases.subscribe();
    cases.reconcile().await.unwrap();
    assert!(changes.try_recv().is_err(), "nothing listed twice");
    assert_listed_as_replayed(&cases, &ledger).await;
    let report = audit(&db, ledger.verifier(), None, |_, _| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:#?}", report.problems);
}

/// Two nodes on one database sweep the same alerts and the same due timers at the same time:
/// each alert opens one case and each due timer makes one record, whichever node makes it,
/// counted in the log (not the rows); and a transition a party asks of each node at once is
/// decided on the case as the other left it.
async fn two_nodes_make_each_case_record_once(db: Database) {
    use rxledger_core::case::{CaseAction, CaseError, Party, RootCause, Timers, Transition};
    use rxledger_store::{Cases, Clock};
    use std::sync::Arc;
    const DAY: i64 = 86_400_000;
    let a = Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap());
    let b = Arc::new(Ledger::open(db.clone(), key(), ORIGIN).await.unwrap());
    let timers = Timers::default();
    let clock = Clock::manual(1_796_000_000_000);
    let node_a = Cases::new(a.clone(), timers, clock.clone());
    let node_b = Cases::new(b.clone(), timers, clock.clone());
    let nodes = (&node_a, &node_b);
    let sweep_both = move || async move {
        let (x, y) = tokio::join!(nodes.0.sweep(), nodes.1.sweep());
        let (x, y) = (x.unwrap(), y.unwrap());
        let mut opened: Vec<u64> = x.opened.into_iter().chain(y.opened).collect();
        opened.sort();
        let mut timers: Vec<(u64, CaseAction)> = x.timers.into_iter().chain(y.timers).collect();
        timers.sort_by_key(|t| t.0);
        (opened, timers)
    };

    let mut alerts = alerts_about_packs(&db, 1..9).await;
    let (opened, _) = sweep_both().await;
    assert_eq!(opened.len(), 8, "{opened:?}");
    // More alerts arrive while both look again.
    alerts.extend(alerts_about_packs(&db, 9..13).await);
    let (more, _) = sweep_both().await;
    assert_eq!(more.len(), 4, "{more:?}");
    let openings: Vec<i64> = logged_actions(&a)
        .await
        .into_iter()
        .filter(|(_, action)| *action == CaseAction::Opened)
        .map(|(alert, _)| -alert)
        .collect();
    assert_eq!(openings, alerts, "one opening per alert, in the log");

    // Every case comes due three times: the two reminders, then the escalation.
    let mut made = Vec::new();
    for at in [
        timers.first_reminder_ms,
        timers.second_reminder_ms,
        timers.escalation_ms,
    ] {
        clock.advance(at - (clock.now_ms() - 1_796_000_000_000));
        let (_, timers) = sweep_both().await;
        assert_eq!(timers.len(), 12, "{timers:?}");
        made.extend(timers);
    }
    let logged = logged_actions(&a).await;
    for case in opened.iter().chain(&more) {
        let of_case: Vec<CaseAction> = logged
            .iter()
            .filter(|(c, _)| *c == *case as i64)
            .map(|(_, action)| *action)
            .collect();
        assert_eq!(
            of_case,
            [
                CaseAction::Reminded,
                CaseAction::Reminded,
                CaseAction::Escalated
            ],
            "case {case}"
        );
    }
    assert_eq!(made.len(), 36);

    // A regulator closes a case through both nodes at once: one closing; the other is
    // decided on the closed case.
    let id = opened[0];
    let close = |cases: &Cases| {
        let cases = cases.clone();
        async move {
            cases
                .act(
                    id,
                    Party::Regulator,
                    "nca",
                    Transition::Close(RootCause::NoResponse),
                    None,
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (x, y) = tokio::join!(close(&node_a), close(&node_b));
    let mut outcomes = [x.map(|r| r.status), y.map(|r| r.status)];
    outcomes.sort_by_key(|o| o.is_err());
    assert_eq!(outcomes, [Ok("CLOSED".to_string()), Err(CaseError::Closed)]);
    let closings = logged_actions(&a)
        .await
        .into_iter()
        .filter(|c| *c == (id as i64, CaseAction::Closed))
        .count();
    assert_eq!(closings, 1);

    // Both nodes list what the log holds, and have nothing left to do.
    clock.advance(100 * DAY);
    assert_eq!(sweep_both().await, (vec![], vec![]));
    assert_listed_as_replayed(&node_a, &a).await;
    assert_listed_as_replayed(&node_b, &b).await;
}

/// A partner-signed document is kept once per organization and digest, and found only by
/// digest and organization (or by digest alone, for callers who see every organization).
async fn partner_documents_are_kept_once(db: Database) {
    use rxledger_store::{NewDocument, PartnerDocuments};
    let docs = PartnerDocuments::new(db);
    let data = b"{\"type\":\"EPCISDocument\"}".to_vec();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let sig = "ab".repeat(64);
    let doc = |org: &'static str, keyid: &'static str| NewDocument {
        org,
        keyid,
        sig: "",
        sha256: "",
        media_type: "application/ld+json",
        data: &[],
    };
    let acme = NewDocument {
        sig: &sig,
        sha256: &sha,
        data: &data,
        ..doc("acme", "erp-1")
    };
    assert!(docs.keep(acme, 1).await.unwrap());
    // Sent again, even signed by another of its devices: nothing new is stored.
    let again = NewDocument {
        keyid: "erp-2",
        ..acme
    };
    assert!(!docs.keep(again, 2).await.unwrap());
    let got = docs.get(&sha, Some("acme")).await.unwrap().unwrap();
    assert_eq!(
        (got.keyid.as_str(), got.received_ms, got.data.as_slice()),
        ("erp-1", 1, data.as_slice())
    );
    assert!(docs.get(&sha, Some("rival")).await.unwrap().is_none());
    assert_eq!(docs.get(&sha, None).await.unwrap().unwrap().org_id, "acme");
    assert!(docs.get(&"0".repeat(64), None).await.unwrap().is_none());
    // The same bytes signed for another organization are its own row.
    let rival = NewDocument {
        org: "rival",
        keyid: "rival-erp",
        ..acme
    };
    assert!(docs.keep(rival, 3).await.unwrap());
    assert_eq!(
        docs.get(&sha, Some("rival")).await.unwrap().unwrap().keyid,
        "rival-erp"
    );
    // A malformed key is refused, not stored.
    assert!(matches!(
        docs.keep(doc("acme", "erp-1"), 4).await,
        Err(StoreError::Invalid(_))
    ));
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let t = rxledger_store::testdb::TempDb::sqlite().await.unwrap();
                    super::$case(t.db.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set RXLEDGER_TEST_POSTGRES_URL and run with --ignored (CI does)"]
                async fn $case() {
                    let t = rxledger_store::testdb::TempDb::postgres().await.unwrap();
                    super::$case(t.db.clone()).await;
                    t.drop_now().await;
                }
            )*
        }
    };
}

conformance!(
    proofs_verify_against_checkpoints,
    reopen_continues,
    two_sequencers_stay_consistent,
    dedup_and_replay,
    audit_catches_tampering,
    audit_of_a_growing_log_passes,
    audit_refuses_foreign_checkpoint,
    registry_rules,
    index_in_memory_matches_table,
    checked_appends_have_one_winner,
    checked_batches_are_all_or_nothing,
    product_master_data,
    audit_names_every_wrong_index_row,
    trace_requests_and_who_reads_them,
    alert_cases_follow_their_records,
    map_commits_with_each_batch,
    the_map_built_page_by_page_is_the_committed_one,
    sessions_follow_their_key,
    named_queries_stay_with_their_organisation,
    case_rows_catch_up_after_a_crash,
    two_nodes_make_each_case_record_once,
    partner_documents_are_kept_once,
    a_late_committed_alert_still_gets_its_case,
);
