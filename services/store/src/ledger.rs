//! The log: batched sequencing, tile integration, checkpoint signing, proofs.
//!
//! One call to [`Ledger::append`] is one database transaction that
//! 1. reads the head and checks it is where this sequencer left it,
//! 2. drops entries that are already in the log (same signer and sequence number and same
//!    bytes) and rejects replays and duplicate events, all inside the transaction so that the
//!    answer is race-free even with several nodes,
//! 3. inserts the new entries and their event index rows,
//! 4. writes the changed tiles, signs a checkpoint over the new root, records it, and
//! 5. advances the head with `UPDATE head … WHERE size = old`: a compare-and-swap, so a log
//!    never signs two checkpoints that disagree, whoever else is writing.
//!
//! Only after the commit does the caller acknowledge anything. The in-memory frontier is
//! swapped in after the commit too, so a failed batch leaves no trace in memory or on disk.
//!
//! # Several nodes on one PostgreSQL
//!
//! Exactly one node sequences at a time: step 1 starts by taking the sequencer lease, the
//! transaction-scoped advisory lock [`SEQUENCER_LOCK`]. The lease and every write it guards
//! live in the same transaction, so the lease is also the fencing token: a node that stalls
//! while holding it (a pause, a partition) is cut off by
//! `idle_in_transaction_session_timeout` ([`LEASE_IDLE_TIMEOUT`]), its transaction rolls back,
//! and nothing it signs afterwards can commit. A node that dies releases the lease when its
//! connection closes, so another takes over within seconds. The head compare-and-swap stays
//! as a second line of defence.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rxledger_core::checkpoint::{self, Checkpoint};
use rxledger_core::ed25519::{Ed25519Key, Ed25519Verifier, EdKind};
use rxledger_core::index::IndexedEvent;
use rxledger_core::keys::{LogKey, LogVerifier};
use rxledger_core::merkle::{self, Hash, NodeId, NodeSource};
use rxledger_core::pack::RuleViolation;
use rxledger_core::tiles::{self, Tile, TileId, TileSet};
use rxledger_entities::{checkpoint as cp_row, commission, device, entry, epc, event, head, tile};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use tokio::sync::watch;

use crate::frontier::Frontier;
use crate::{Database, StoreError, now_ms};

/// The primary key of the single head row.
const HEAD_ID: i16 = 1;
/// Tiles kept in memory for proofs. Each is at most 8 KiB plus memoised inner levels.
const TILE_CACHE: usize = 8192;
/// Rows per INSERT statement; keeps SQLite well under its bound-parameter limit.
const INSERT_CHUNK: usize = 500;

/// What kind of bytes an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A signed envelope from a scanner, exactly as received over MQTT.
    DeviceEnvelope = 1,
    /// A state change requested through the API and signed by the ledger's key.
    ApiStateChange = 2,
    /// A record the desk writes that is no EPCIS event (a tracing request), sealed by the
    /// ledger's key (`rxledger_core::trace`).
    DeskRecord = 3,
    /// The map root after every entry before it (`rxledger_core::map::rootentry`), signed by
    /// the ledger's key and appended by the ledger itself as the last entry of each batch.
    MapRoot = 4,
}

/// How a [`Ledger`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerOptions {
    /// Keep the authenticated pack index (`crate::map`) and append a map-root entry with each
    /// batch. `rxledger serve` always does; [`Ledger::open`] (tools, the log's own tests and
    /// benchmarks) does not. A log appended to without the map is caught up from its index
    /// the next time a ledger with the map opens it.
    pub map: bool,
}

/// An entry offered for appending.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub data: Vec<u8>,
    pub kind: EntryKind,
    pub signer: String,
    /// The signer's sequence number; API state changes have none, and their row stores the
    /// entry index instead.
    pub seq: Option<i64>,
    /// The index rows of the events inside, from [`rxledger_core::index::index_event`].
    pub events: Vec<IndexedEvent>,
}

/// What happened to one offered entry. An entry that is in the log (now or before) comes with
/// its RFC 9162 leaf hash, computed once here, so callers never hash the bytes again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Appended {
        index: u64,
        leaf_hash: Hash,
    },
    /// The same signer, sequence number and bytes are already in the log at `index`.
    Duplicate {
        index: u64,
        leaf_hash: Hash,
    },
    /// The sequence number is not above the signer's last one and is not a resend.
    Replay {
        last_seq: i64,
    },
    /// An event in the entry is already in the log, at entry `index`.
    DuplicateEvent {
        index: u64,
        event: Hash,
    },
    /// Not appended because it broke a database constraint (only reported by callers that
    /// retry entries one by one after [`StoreError::is_conflict`]).
    Conflict,
    /// The precondition given to [`Ledger::append_checked`] refused the entry.
    Refused(RuleViolation),
}

/// A check of committed state that [`Ledger::append_checked`] runs inside the append
/// transaction, after the sequencer lease is taken: no other append (on this node or any other)
/// can commit until this one ends, so what the check reads is exactly the state the entry is
/// appended onto. Futures are lazy, so a check built before the call runs only there.
pub type Precondition<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Result<(), RuleViolation>, StoreError>> + Send + 'a,
    >,
>;

/// The outcome of one batch: an admission per entry, in order, and the head after it.
#[derive(Clone, Debug)]
pub struct Batch {
    pub admissions: Vec<Admission>,
    pub head: SignedHead,
}

/// The latest signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    pub size: u64,
    pub root: Hash,
    /// The checkpoint in signed-note form, exactly as signed.
    pub note: String,
}

/// The PostgreSQL advisory lock key of the sequencer lease ("rxledger" in ASCII, truncated).
pub const SEQUENCER_LOCK: i64 = 0x72786c6564676572;
/// How long a node may sit idle inside a sequencing transaction before PostgreSQL ends its
/// session, releasing the lease.
pub const LEASE_IDLE_TIMEOUT: &str = "10s";

/// The keys that sign each checkpoint: the log's k256 key (receipts, devices, API state
/// changes) and, on a node, its Ed25519 key (the standard signed-note signature witnesses
/// verify). A bare [`LogKey`] converts into keys without the Ed25519 one.
#[derive(Clone, Debug)]
pub struct LogKeys {
    pub ecdsa: LogKey,
    pub ed25519: Option<Ed25519Key>,
}

impl From<LogKey> for LogKeys {
    fn from(ecdsa: LogKey) -> Self {
        LogKeys {
            ecdsa,
            ed25519: None,
        }
    }
}

/// The verifiable log on one database.
pub struct Ledger {
    db: Database,
    key: LogKey,
    ed25519: Option<Ed25519Key>,
    origin: String,
    verifier: LogVerifier,
    /// The sequencer's view of the right edge. Held across the whole append transaction, so
    /// one node runs one batch at a time.
    frontier: tokio::sync::Mutex<Frontier>,
    /// The one connection appends run on (its own pool of one), replaced after any failure.
    writer: Mutex<sea_orm::DatabaseConnection>,
    cache: Mutex<TileSet>,
    head: watch::Sender<SignedHead>,
    /// The identifier index in memory, fed with each committed batch.
    postings: std::sync::Arc<crate::postings::Postings>,
    /// The newest cosigned checkpoint and the witnesses' state (`rxledger-witness` fills it).
    witnesses: crate::witnessing::Board,
    /// The authenticated pack index, when kept. Its lock is held by the sequencer from
    /// taking a batch into the map until the commit, so answers see only committed maps.
    map: Option<tokio::sync::Mutex<crate::map::MapState>>,
    /// Whether the derived tables were checked against the entries since the open: every
    /// append waits for [`IndexCheck::Passed`] (see [`Ledger::checking_index`]).
    index_check: watch::Sender<IndexCheck>,
}

/// Where the check of the derived tables against the log (`indexaudit::check_index`) stands.
/// No entry is appended on an index that has not passed it: the ingest rules read
/// `commissions` and `events`, so a wrong row could let a second commissioning in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexCheck {
    /// Running in the background; appends wait.
    Running,
    /// The tables are what the entries give (or nobody asked for the check: tools, tests).
    Passed,
    /// They are not; the message names the first rows. Appends are refused.
    Failed(String),
}

impl Ledger {
    /// Opens the log in `db`, creating the empty log (and its size-0 checkpoint) on first use.
    /// Reads only the head and the right-edge tiles, so opening takes the same time at any size.
    /// Without the pack index map: see [`Ledger::open_with`].
    pub async fn open(
        db: Database,
        keys: impl Into<LogKeys>,
        origin: &str,
    ) -> Result<Self, StoreError> {
        Self::open_with(db, keys, origin, LedgerOptions::default()).await
    }

    /// [`Ledger::open`] with options (the map: [`LedgerOptions::map`]).
    pub async fn open_with(
        db: Database,
        keys: impl Into<LogKeys>,
        origin: &str,
        options: LedgerOptions,
    ) -> Result<Self, StoreError> {
        let LogKeys {
            ecdsa: key,
            ed25519,
        } = keys.into();
        let log_verifier = verifier(&key, origin)?;
        let txn = begin_write(&db.conn).await?;
        let row = match head::Entity::find_by_id(HEAD_ID).one(&txn).await? {
            Some(row) => row,
            None => {
                let root = merkle::empty_root();
                let note = sign(&key, ed25519.as_ref(), origin, 0, &root)?;
                let row = head::Model {
                    id: HEAD_ID,
                    size: 0,
                    root: root.to_vec(),
                    note: note.clone(),
                    fence: 0,
                };
                head::Entity::insert(head::ActiveModel::from(row.clone()))
                    .exec_without_returning(&txn)
                    .await?;
                cp_row::Entity::insert(cp_row::ActiveModel {
                    size: Set(0),
                    root: Set(root.to_vec()),
                    note: Set(note),
                    signed_ms: Set(now_ms()),
                })
                .exec_without_returning(&txn)
                .await?;
                row
            }
        };
        txn.commit().await?;
        let head = parse_head(&row)?;
        let found = read_checkpoint_origin(&head.note)?;
        if found != origin {
            return Err(StoreError::WrongLog {
                expected: origin.to_string(),
                found,
            });
        }
        checkpoint::open_checkpoint(&head.note, &log_verifier).map_err(|e| {
            StoreError::Invalid(format!(
                "the head checkpoint of this database is not signed by this log key ({e}); wrong --key file?"
            ))
        })?;
        let frontier = load_frontier(&db.conn, head.size).await?;
        let mut cache = TileSet::with_capacity(TILE_CACHE);
        for id in Frontier::ids_for(head.size) {
            if let Some(t) = frontier_tile(&db.conn, id).await? {
                cache.insert(t);
            }
        }
        let postings = std::sync::Arc::new(crate::postings::Postings::new());
        postings.saw_head(head.size);
        let map = match options.map {
            true => {
                let started = std::time::Instant::now();
                let state = crate::map::load(&db.conn, head.size).await?;
                tracing::info!(
                    entries = head.size,
                    keys = state.keys(),
                    seconds = started.elapsed().as_secs_f64(),
                    "pack index map built"
                );
                Some(tokio::sync::Mutex::new(state))
            }
            false => None,
        };
        let (tx, _) = watch::channel(head);
        let writer = Mutex::new(crate::db::writer(&db.url).await?);
        Ok(Ledger {
            writer,
            db,
            key,
            ed25519,
            origin: origin.to_string(),
            verifier: log_verifier,
            frontier: tokio::sync::Mutex::new(frontier),
            cache: Mutex::new(cache),
            head: tx,
            postings,
            witnesses: Default::default(),
            map,
            index_check: watch::channel(IndexCheck::Passed).0,
        })
    }

    /// Marks the derived tables as being checked: appends wait until [`Ledger::index_checked`]
    /// says how the check ended.
    pub fn checking_index(&self) {
        self.index_check.send_replace(IndexCheck::Running);
    }

    /// How the check of the derived tables ended ([`IndexCheck::Passed`] or `Failed`).
    pub fn index_checked(&self, outcome: IndexCheck) {
        self.index_check.send_replace(outcome);
    }

    /// Follows the check of the derived tables.
    pub fn index_check(&self) -> watch::Receiver<IndexCheck> {
        self.index_check.subscribe()
    }

    /// Whether the `epcs` rows gave, when the map was built at open, the map the log's last
    /// map-root entry commits to; `None` without the map or such an entry.
    pub async fn map_vouches_for_index(&self) -> Option<bool> {
        self.map.as_ref()?.lock().await.index_agreed()
    }

    /// Waits until the derived tables passed their check; an error once it failed.
    async fn index_passed(&self) -> Result<(), StoreError> {
        let mut rx = self.index_check.subscribe();
        let state = rx
            .wait_for(|s| *s != IndexCheck::Running)
            .await
            .map_err(|_| StoreError::Invalid("the ledger is closing".into()))?;
        match &*state {
            IndexCheck::Failed(why) => Err(StoreError::Invalid(format!(
                "nothing is appended: the index does not match the log ({why})"
            ))),
            _ => Ok(()),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn key(&self) -> &LogKey {
        &self.key
    }

    /// The verifier a client pins to check this log's checkpoints.
    pub fn verifier(&self) -> &LogVerifier {
        &self.verifier
    }

    /// The Ed25519 verifier of this log's checkpoints (signed-note type `0x01`), when the log
    /// has an Ed25519 key: what witnesses are configured with.
    pub fn ed25519_verifier(&self) -> Option<Ed25519Verifier> {
        let key = self.ed25519.as_ref()?;
        key.verifier(&self.origin, EdKind::Note).ok()
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The newest checkpoint with a quorum of witness cosignatures, and the witnesses' state.
    pub fn witnesses(&self) -> &crate::witnessing::Board {
        &self.witnesses
    }

    /// The latest checkpoint this node knows of.
    pub fn head(&self) -> SignedHead {
        self.head.borrow().clone()
    }

    /// The in-memory identifier index this ledger feeds (see [`crate::postings`]).
    pub fn postings(&self) -> std::sync::Arc<crate::postings::Postings> {
        self.postings.clone()
    }

    /// A stream of new checkpoints, for subscriptions.
    pub fn subscribe(&self) -> watch::Receiver<SignedHead> {
        self.head.subscribe()
    }

    /// Re-reads the head from the database (another node may have sequenced).
    pub async fn refresh(&self) -> Result<SignedHead, StoreError> {
        let row = head::Entity::find_by_id(HEAD_ID)
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the head row is missing".into()))?;
        let head = parse_head(&row)?;
        self.postings.saw_head(head.size);
        self.head.send_if_modified(|cur| {
            let newer = head.size > cur.size;
            if newer {
                *cur = head.clone();
            }
            newer
        });
        Ok(self.head())
    }

    /// Appends a batch in one transaction; see the module docs for the steps. Takes a `Vec` or
    /// a slice: the ingest sequencer lends its batch rather than copying it.
    #[tracing::instrument(skip_all, fields(offered = batch.as_ref().len()))]
    pub async fn append(&self, batch: impl AsRef<[NewEntry]> + Send) -> Result<Batch, StoreError> {
        self.append_with(batch.as_ref(), None).await
    }

    /// Appends one entry only if `check` passes against the committed state, decided inside the
    /// append transaction (see [`Precondition`]). Of any number of concurrent state changes that
    /// each require the state the others change, exactly one is appended; the rest get
    /// [`Admission::Refused`] with the rule the check names. Device envelopes never carry a
    /// precondition, so ingest pays nothing for this.
    #[tracing::instrument(skip_all)]
    pub async fn append_checked(
        &self,
        entry: NewEntry,
        check: Precondition<'_>,
    ) -> Result<Batch, StoreError> {
        self.append_with(std::slice::from_ref(&entry), Some(check))
            .await
    }

    /// Appends every entry of `batch` in one transaction if `check` passes against the
    /// committed state, or none of them ([`Admission::Refused`] for each). An EPCIS capture
    /// document is such a batch: its rules are judged where it lands, all or nothing.
    #[tracing::instrument(skip_all)]
    pub async fn append_checked_batch(
        &self,
        batch: &[NewEntry],
        check: Precondition<'_>,
    ) -> Result<Batch, StoreError> {
        self.append_with(batch, Some(check)).await
    }

    async fn append_with(
        &self,
        batch: &[NewEntry],
        check: Option<Precondition<'_>>,
    ) -> Result<Batch, StoreError> {
        if *self.index_check.borrow() != IndexCheck::Passed {
            self.index_passed().await?;
        }
        let mut frontier = self.frontier.lock().await;
        let writer = lock(&self.writer).clone();
        // Boxed: the append future is large, and callers nest it deep in GraphQL resolvers.
        let result = Box::pin(self.append_on(&writer, &mut frontier, batch, check)).await;
        if result.is_err() {
            // Never reuse the connection of a failed append. After a write error SQLite may
            // leave it inside a transaction the driver no longer knows about; later "commits"
            // would then only release savepoints, and entries would be acknowledged without
            // being durable (found by the disk-full test). A fresh connection starts clean.
            match crate::db::writer(&self.db.url).await {
                Ok(fresh) => {
                    let old = std::mem::replace(&mut *lock(&self.writer), fresh);
                    tokio::spawn(async move {
                        let _ = old.close().await;
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot reopen the ledger's writer connection")
                }
            }
        }
        result
    }

    /// One append transaction; the steps are in the module docs.
    async fn append_on(
        &self,
        writer: &sea_orm::DatabaseConnection,
        frontier: &mut Frontier,
        batch: &[NewEntry],
        check: Option<Precondition<'_>>,
    ) -> Result<Batch, StoreError> {
        let txn = begin_write(writer).await?;
        let old_size = self.take_lease(&txn, frontier).await?;
        if let Some(check) = check {
            // The lease is held (and on one node the frontier lock): nothing can commit until
            // this transaction ends, so the check sees the state this batch lands on.
            if let Err(rule) = check.await? {
                txn.rollback().await?;
                return Ok(Batch {
                    admissions: vec![Admission::Refused(rule); batch.len()],
                    head: self.head(),
                });
            }
        }
        let admissions = admit(&txn, batch, old_size).await?;
        let mut leaves: Vec<Hash> = Vec::new();
        let mut accepted: Vec<(u64, &NewEntry)> = admissions
            .iter()
            .zip(batch)
            .filter_map(|(a, e)| match a {
                Admission::Appended { index, leaf_hash } => {
                    leaves.push(*leaf_hash);
                    Some((*index, e))
                }
                _ => None,
            })
            .collect();
        if accepted.is_empty() {
            txn.commit().await?;
            return Ok(Batch {
                admissions,
                head: self.head(),
            });
        }

        // The map takes the batch and its root becomes the batch's last entry; its lock is
        // held until the commit decides whether the map's new state is real.
        let mut map = match &self.map {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        let map_entry = match map.as_deref_mut() {
            Some(state) => Some(
                self.map_root_entry(state, &txn, &accepted, &leaves, old_size)
                    .await?,
            ),
            None => None,
        };
        if let Some(e) = &map_entry {
            leaves.push(merkle::leaf_hash(&e.data));
            accepted.push((old_size + accepted.len() as u64, e));
        }
        let received = now_ms();
        let written = async {
            insert_entries(&txn, &accepted, received).await?;
            advance_device_seqs(&txn, &accepted).await?;
            let (next, changed) = frontier.append(&leaves)?;
            write_tiles(&txn, &changed).await?;
            let head = self
                .sign_and_commit(txn, old_size, next.size, &changed, received)
                .await?;
            Ok::<_, StoreError>((next, head))
        }
        .await;
        if let Some(state) = map.as_deref_mut() {
            match &written {
                Ok((next, _)) => state.committed_at(next.size),
                Err(_) => state.invalidate(),
            }
        }
        let (next, head) = written?;
        *frontier = next;
        // Index before publishing the checkpoint, so a reader that sees it finds the rows.
        let indexed: Vec<(u64, &[IndexedEvent])> = accepted
            .iter()
            .map(|(index, e)| (*index, e.events.as_slice()))
            .collect();
        self.postings.committed(&indexed);
        self.postings.saw_head(head.size);
        self.head.send_replace(head.clone());
        // Only now may an answer take the new map: the head it reads next covers its root.
        drop(map);
        Ok(Batch { admissions, head })
    }

    /// The batch's map-root entry: the map, caught up to the log of `old_size`, takes the
    /// batch's `accepted` entries (with their `leaves`).
    async fn map_root_entry(
        &self,
        state: &mut crate::map::MapState,
        txn: &sea_orm::DatabaseTransaction,
        accepted: &[(u64, &NewEntry)],
        leaves: &[Hash],
        old_size: u64,
    ) -> Result<NewEntry, StoreError> {
        if let Err(e) = state.ensure(txn, old_size).await {
            state.invalidate();
            return Err(e);
        }
        let index = old_size + accepted.len() as u64;
        Ok(state.take_batch(accepted, leaves, index, &self.origin, &self.key))
    }

    /// Takes the sequencer lease (on PostgreSQL) and reads the head; returns its size. If
    /// another sequencer moved the log on, `frontier` continues from where it left off: its
    /// right-edge tiles (committed, so safe to keep whatever happens to this batch) replace
    /// the narrower ones cached here, which the new root is computed from.
    async fn take_lease(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        frontier: &mut Frontier,
    ) -> Result<u64, StoreError> {
        if self.db.is_postgres() {
            txn.execute_unprepared(&format!(
                "SET LOCAL idle_in_transaction_session_timeout = '{LEASE_IDLE_TIMEOUT}'; \
                 SELECT pg_advisory_xact_lock({SEQUENCER_LOCK})"
            ))
            .await?;
        }
        let head_row = head::Entity::find_by_id(HEAD_ID)
            .one(txn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the head row is missing".into()))?;
        let old_size = non_negative(head_row.size, "head size")?;
        if old_size != frontier.size {
            *frontier = load_frontier(txn, old_size).await?;
            let edge = read_tiles(txn, &Frontier::ids_for(old_size)).await?;
            let mut cache = lock(&self.cache);
            for t in edge {
                cache.insert(t);
            }
        }
        Ok(old_size)
    }

    /// Computes the root of the tree of `new_size` with the `changed` tiles, signs and
    /// records its checkpoint, moves the head from `old_size` (compare-and-swap) and commits.
    /// If any of it fails, the new tiles are dropped from the cache again, so that proofs keep
    /// being served from what is committed.
    async fn sign_and_commit(
        &self,
        txn: sea_orm::DatabaseTransaction,
        old_size: u64,
        new_size: u64,
        changed: &[Tile],
        received: i64,
    ) -> Result<SignedHead, StoreError> {
        let root = {
            let mut cache = lock(&self.cache);
            for t in changed {
                cache.insert(t.clone());
            }
            merkle::root(new_size, &*cache)
        };
        let finish = async {
            let root = root?;
            let note = sign(
                &self.key,
                self.ed25519.as_ref(),
                &self.origin,
                new_size,
                &root,
            )?;
            cp_row::Entity::insert(cp_row::ActiveModel {
                size: Set(new_size as i64),
                root: Set(root.to_vec()),
                note: Set(note.clone()),
                signed_ms: Set(received),
            })
            .exec_without_returning(&txn)
            .await?;
            let moved = head::Entity::update_many()
                .col_expr(head::Column::Size, Expr::value(new_size as i64))
                .col_expr(head::Column::Root, Expr::value(root.to_vec()))
                .col_expr(head::Column::Note, Expr::value(note.clone()))
                .filter(head::Column::Id.eq(HEAD_ID))
                .filter(head::Column::Size.eq(old_size as i64))
                .exec(&txn)
                .await?;
            if moved.rows_affected != 1 {
                return Err(StoreError::HeadMoved { expected: old_size });
            }
            txn.commit().await?;
            Ok::<_, StoreError>(SignedHead {
                size: new_size,
                root,
                note,
            })
        };
        let result = finish.await;
        if result.is_err() {
            let mut cache = lock(&self.cache);
            for t in changed {
                cache.remove(t.id);
            }
        }
        result
    }

    /// Map proofs of `identifiers` (index keys) from the committed map, with the map-root
    /// entry they are against; `None` when this ledger keeps no map or no map-root entry
    /// covers its log yet (see [`crate::map`]).
    pub async fn map_proofs(
        &self,
        identifiers: &[String],
    ) -> Option<(crate::map::CommittedRoot, Vec<crate::map::KeyProof>)> {
        let state = self.map.as_ref()?.lock().await;
        state.prove(identifiers)
    }

    /// Whether this ledger keeps the authenticated pack index.
    pub fn keeps_map(&self) -> bool {
        self.map.is_some()
    }

    /// The audit path of leaf `index` in the tree of `size`.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(size)?;
        let nodes = merkle::inclusion_nodes(index, size)?;
        self.with_nodes(&nodes, |src| merkle::inclusion_proof(index, size, src))
            .await
    }

    /// The proof that the tree of `old_size` is a prefix of the tree of `new_size`.
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.check_size(new_size)?;
        let nodes = merkle::consistency_nodes(old_size, new_size)?;
        self.with_nodes(&nodes, |src| {
            merkle::consistency_proof(old_size, new_size, src)
        })
        .await
    }

    /// The root of the tree of `size`, from stored tiles.
    pub async fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size)?;
        let nodes = merkle::root_nodes(size);
        self.with_nodes(&nodes, |src| merkle::root(size, src)).await
    }

    /// The leaf hash of entry `index`, from the level-0 tile.
    pub async fn leaf_hash(&self, index: u64) -> Result<Hash, StoreError> {
        self.check_size(index + 1)?;
        let id = NodeId { level: 0, index };
        self.with_nodes(&[id], |src| {
            src.node(id).ok_or(merkle::ProofError::MissingNode(id))
        })
        .await
    }

    /// The first `width` hashes of tile `id`, as c2sp.org/tlog-tiles serves them, or `None`
    /// when the tree of the latest checkpoint does not hold that many. A tile only grows at
    /// its end and its hashes never change, so a partial tile of any checkpointed width is the
    /// start of the stored one.
    pub async fn tile(&self, id: TileId, width: u64) -> Result<Option<Tile>, StoreError> {
        if width == 0 || width > tiles::width_in(id, self.head().size) {
            return Ok(None);
        }
        let last = NodeId {
            level: id.level * tiles::TILE_HEIGHT,
            index: id.index * tiles::TILE_WIDTH + width - 1,
        };
        self.with_nodes(&[last], |src| {
            let hashes = src
                .get(id)
                .and_then(|t| t.hashes.get(..width as usize))
                .ok_or(merkle::ProofError::MissingNode(last))?;
            Ok(Tile {
                id,
                hashes: hashes.to_vec(),
            })
        })
        .await
        .map(Some)
    }

    /// Entries `from .. from + count`, in order, for monitors that mirror the log.
    pub async fn entries(&self, from: u64, count: u64) -> Result<Vec<entry::Model>, StoreError> {
        Ok(entry::Entity::find()
            .filter(entry::Column::Idx.gte(from as i64))
            .filter(entry::Column::Idx.lt(from.saturating_add(count) as i64))
            .order_by_asc(entry::Column::Idx)
            .all(&self.db.conn)
            .await?)
    }

    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        let head = self.head().size;
        if size > head {
            return Err(StoreError::Invalid(format!(
                "tree size {size} is beyond the latest checkpoint ({head})"
            )));
        }
        Ok(())
    }

    /// Makes sure the tiles holding `nodes` are cached, then runs `f` over the cache.
    async fn with_nodes<T>(
        &self,
        nodes: &[NodeId],
        f: impl Fn(&TileSet) -> Result<T, merkle::ProofError>,
    ) -> Result<T, StoreError> {
        let mut needed: HashMap<TileId, u64> = HashMap::new();
        for n in nodes {
            let (id, width) = tiles::tile_of(*n);
            let w = needed.entry(id).or_insert(0);
            *w = (*w).max(width);
        }
        let missing: Vec<TileId> = {
            let cache = lock(&self.cache);
            needed
                .iter()
                .filter(|(id, w)| {
                    cache
                        .get(**id)
                        .is_none_or(|t| (t.hashes.len() as u64) < **w)
                })
                .map(|(id, _)| *id)
                .collect()
        };
        if !missing.is_empty() {
            let found = read_tiles(&self.db.conn, &missing).await?;
            let mut cache = lock(&self.cache);
            for t in found {
                cache.insert(t);
            }
        }
        let cache = lock(&self.cache);
        f(&cache).map_err(|e| match e {
            merkle::ProofError::MissingNode(n) => StoreError::Corrupt(format!(
                "node level {} index {} is not in the stored tiles",
                n.level, n.index
            )),
            other => StoreError::Proof(other),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the cache lock cannot leave it inconsistent: every mutation is a
    // single insert, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sign(
    key: &LogKey,
    ed25519: Option<&Ed25519Key>,
    origin: &str,
    size: u64,
    root: &Hash,
) -> Result<String, StoreError> {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size,
        root: *root,
    };
    Ok(checkpoint::sign_checkpoint_with(&cp, key, ed25519)?)
}

/// The verifier for checkpoints signed by `key` under the name `origin`.
pub fn verifier(key: &LogKey, origin: &str) -> Result<LogVerifier, StoreError> {
    LogVerifier::new(origin, key.public_key())
        .map_err(|e| StoreError::Invalid(format!("log origin {origin:?} cannot name a key: {e}")))
}

fn non_negative(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({v})")))
}

fn parse_head(row: &head::Model) -> Result<SignedHead, StoreError> {
    let root = merkle::hash_from_slice(&row.root).map_err(|_| {
        StoreError::Corrupt(format!("head root is {} bytes, not 32", row.root.len()))
    })?;
    Ok(SignedHead {
        size: non_negative(row.size, "head size")?,
        root,
        note: row.note.clone(),
    })
}

/// The origin line of a checkpoint note, without checking its signature.
pub fn read_checkpoint_origin(note: &str) -> Result<String, StoreError> {
    note.lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| StoreError::Corrupt("the head checkpoint has no origin line".into()))
}

async fn load_frontier(conn: &impl ConnectionTrait, size: u64) -> Result<Frontier, StoreError> {
    let found = read_tiles(conn, &Frontier::ids_for(size)).await?;
    Frontier::from_tiles(size, found)
}

async fn frontier_tile(
    conn: &impl ConnectionTrait,
    id: TileId,
) -> Result<Option<Tile>, StoreError> {
    Ok(read_tiles(conn, &[id]).await?.into_iter().next())
}

/// Reads tiles by id, one query for all of them, checking every row's shape.
pub(crate) async fn read_tiles(
    conn: &impl ConnectionTrait,
    ids: &[TileId],
) -> Result<Vec<Tile>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_level: HashMap<u8, Vec<i64>> = HashMap::new();
    for id in ids {
        by_level.entry(id.level).or_default().push(id.index as i64);
    }
    let mut cond = Condition::any();
    for (level, idxs) in by_level {
        cond = cond.add(
            Condition::all()
                .add(tile::Column::Level.eq(level as i16))
                .add(tile::Column::Idx.is_in(idxs)),
        );
    }
    let rows = tile::Entity::find().filter(cond).all(conn).await?;
    rows.into_iter().map(tile_from_row).collect()
}

pub(crate) fn tile_from_row(row: tile::Model) -> Result<Tile, StoreError> {
    let n = row.hashes.len();
    if n == 0
        || !n.is_multiple_of(32)
        || n / 32 > tiles::TILE_WIDTH as usize
        || row.level < 0
        || row.idx < 0
    {
        return Err(StoreError::Corrupt(format!(
            "tile level {} index {} holds {n} bytes: not 1 to 256 hashes of 32 bytes",
            row.level, row.idx
        )));
    }
    let hashes = row
        .hashes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    Ok(Tile {
        id: TileId {
            level: row.level as u8,
            index: row.idx as u64,
        },
        hashes,
    })
}

/// Begins a transaction that reads the head and then writes. On SQLite it takes the write lock
/// at BEGIN (`IMMEDIATE`): a deferred transaction that has read would instead fail with
/// "database is locked" when it tries to write after another connection committed (its
/// snapshot is stale, and SQLite does not wait then), where an IMMEDIATE one waits its turn
/// under the busy timeout. PostgreSQL's sequencer lease does the same job there.
async fn begin_write(
    conn: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, StoreError> {
    if conn.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Ok(conn.begin().await?);
    }
    Ok(conn
        .begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?)
}

/// Decides, inside the transaction, what to do with each offered entry of a batch that would
/// start at entry `size`.
async fn admit(
    txn: &impl ConnectionTrait,
    batch: &[NewEntry],
    size: u64,
) -> Result<Vec<Admission>, StoreError> {
    let mut known = Known::read(txn, batch).await?;
    Ok(decide(batch, size, &mut known))
}

/// What the log already holds that an offered batch may collide with.
struct Known {
    /// Highest sequence number appended per device signer of the batch.
    last_seq: HashMap<String, i64>,
    /// The entry holding each of the batch's events that is already in the log.
    events: HashMap<Hash, u64>,
    /// (index, bytes) of entries logged under the (signer, seq) of an offered entry at or
    /// below its signer's high-water mark.
    logged: HashMap<(String, i64), (u64, Vec<u8>)>,
}

impl Known {
    async fn read(txn: &impl ConnectionTrait, batch: &[NewEntry]) -> Result<Known, StoreError> {
        let last_seq = last_seqs(txn, batch).await?;
        let events = known_events(txn, batch).await?;
        let logged = logged_entries(txn, batch, &last_seq).await?;
        Ok(Known {
            last_seq,
            events,
            logged,
        })
    }
}

/// Highest sequence numbers already appended, per device signer.
async fn last_seqs(
    txn: &impl ConnectionTrait,
    batch: &[NewEntry],
) -> Result<HashMap<String, i64>, StoreError> {
    let signers: Vec<String> = batch
        .iter()
        .filter(|e| e.seq.is_some())
        .map(|e| e.signer.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for chunk in signers.chunks(INSERT_CHUNK) {
        for d in device::Entity::find()
            .filter(device::Column::Id.is_in(chunk.to_vec()))
            .all(txn)
            .await?
        {
            last_seq.insert(d.id, d.last_seq);
        }
    }
    Ok(last_seq)
}

/// Events of the batch already in the log, with their entries.
async fn known_events(
    txn: &impl ConnectionTrait,
    batch: &[NewEntry],
) -> Result<HashMap<Hash, u64>, StoreError> {
    let hashes: Vec<Vec<u8>> = batch
        .iter()
        .flat_map(|e| e.events.iter().map(|v| v.hash.to_vec()))
        .collect();
    let mut known_events: HashMap<Hash, u64> = HashMap::new();
    for chunk in hashes.chunks(INSERT_CHUNK) {
        let rows = event::Entity::find()
            .select_only()
            .column(event::Column::Hash)
            .column(event::Column::EntryIdx)
            .filter(event::Column::Hash.is_in(chunk.to_vec()))
            .into_tuple::<(Vec<u8>, i64)>()
            .all(txn)
            .await?;
        for (h, idx) in rows {
            if let Ok(h) = merkle::hash_from_slice(&h) {
                known_events.insert(h, idx as u64);
            }
        }
    }
    Ok(known_events)
}

/// Entries already logged under the (signer, seq) of any entry at or below its signer's
/// high-water mark: one query per signer, not one per entry.
async fn logged_entries(
    txn: &impl ConnectionTrait,
    batch: &[NewEntry],
    last_seq: &HashMap<String, i64>,
) -> Result<HashMap<(String, i64), (u64, Vec<u8>)>, StoreError> {
    let mut logged: HashMap<(String, i64), (u64, Vec<u8>)> = HashMap::new();
    let mut low: HashMap<&str, Vec<i64>> = HashMap::new();
    for e in batch {
        if let Some(seq) = e.seq
            && last_seq.get(&e.signer).is_some_and(|l| seq <= *l)
        {
            low.entry(e.signer.as_str()).or_default().push(seq);
        }
    }
    for (signer, seqs) in low {
        for chunk in seqs.chunks(INSERT_CHUNK) {
            let rows = entry::Entity::find()
                .filter(entry::Column::Signer.eq(signer))
                .filter(entry::Column::Seq.is_in(chunk.to_vec()))
                .all(txn)
                .await?;
            for r in rows {
                logged.insert((r.signer, r.seq), (r.idx as u64, r.data));
            }
        }
    }
    Ok(logged)
}

/// The admission of each offered entry, given what the log holds; entries appended here are
/// added to `known` as the batch goes, so later ones see them.
fn decide(batch: &[NewEntry], size: u64, known: &mut Known) -> Vec<Admission> {
    let Known {
        last_seq,
        events: known_events,
        logged,
    } = known;
    let mut next = size;
    let mut seen_in_batch: HashMap<(String, i64), (usize, u64)> = HashMap::new();
    let mut out = Vec::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        let last = last_seq.get(&e.signer).copied();
        let leaf_hash = || merkle::leaf_hash(&e.data);
        if let Some(seq) = e.seq {
            let key = (e.signer.clone(), seq);
            if let Some((j, index)) = seen_in_batch.get(&key) {
                out.push(if batch[*j].data == e.data {
                    Admission::Duplicate {
                        index: *index,
                        leaf_hash: leaf_hash(),
                    }
                } else {
                    Admission::Replay { last_seq: seq }
                });
                continue;
            }
            if let Some(last) = last.filter(|l| seq <= *l) {
                // At or below the high-water mark: a resend, a reused number, or a message
                // overtaken by a later one (several broker connections or nodes share the
                // work, so order across them is not kept; devices may number by time, so no
                // distance below the mark is suspicious in itself). Only a reused number is
                // refused: an old envelope resent byte for byte changes nothing.
                let verdict = match logged.get(&key) {
                    Some((index, data)) if *data == e.data => Some(Admission::Duplicate {
                        index: *index,
                        leaf_hash: leaf_hash(),
                    }),
                    Some(_) => Some(Admission::Replay { last_seq: last }),
                    None => None,
                };
                if let Some(a) = verdict {
                    out.push(a);
                    continue;
                }
            }
        }
        if let Some((event, index)) = e
            .events
            .iter()
            .find_map(|v| known_events.get(&v.hash).map(|i| (v.hash, *i)))
        {
            out.push(Admission::DuplicateEvent { index, event });
            continue;
        }
        let index = next;
        next += 1;
        for v in &e.events {
            known_events.insert(v.hash, index);
        }
        if let Some(seq) = e.seq {
            seen_in_batch.insert((e.signer.clone(), seq), (i, index));
            if let Some(last) = last {
                last_seq.insert(e.signer.clone(), seq.max(last));
            }
        }
        out.push(Admission::Appended {
            index,
            leaf_hash: leaf_hash(),
        });
    }
    out
}

/// Inserts the accepted entries, their events and the events' index rows.
async fn insert_entries(
    txn: &impl ConnectionTrait,
    accepted: &[(u64, &NewEntry)],
    received: i64,
) -> Result<(), StoreError> {
    for chunk in accepted.chunks(INSERT_CHUNK) {
        let rows = chunk.iter().map(|(index, e)| entry::ActiveModel {
            idx: Set(*index as i64),
            data: Set(e.data.clone()),
            kind: Set(e.kind as i16),
            signer: Set(e.signer.clone()),
            seq: Set(e.seq.unwrap_or(*index as i64)),
            received_ms: Set(received),
        });
        entry::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    let events: Vec<event::ActiveModel> = accepted
        .iter()
        .flat_map(|(index, e)| {
            e.events
                .iter()
                .enumerate()
                .map(move |(pos, v)| event::ActiveModel {
                    hash: Set(v.hash.to_vec()),
                    entry_idx: Set(*index as i64),
                    position: Set(pos as i32),
                    event_time_ms: Set(v.event_time_ms),
                    event_type: Set(v.event_type.clone()),
                    action: Set(v.action.clone()),
                    biz_step: Set(v.biz_step.clone()),
                    disposition: Set(v.disposition.clone()),
                    read_point: Set(v.read_point.clone()),
                    biz_location: Set(v.biz_location.clone()),
                })
        })
        .collect();
    for chunk in events.chunks(INSERT_CHUNK / 2) {
        event::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    insert_index_rows(txn, accepted).await
}

/// The identifier index (an event names an EPC once, whatever its roles) and the serials
/// the accepted entries commission.
async fn insert_index_rows(
    txn: &impl ConnectionTrait,
    accepted: &[(u64, &NewEntry)],
) -> Result<(), StoreError> {
    let mut ids: Vec<epc::ActiveModel> = Vec::new();
    let mut commissions: Vec<commission::ActiveModel> = Vec::new();
    for (index, e) in accepted {
        for (pos, v) in e.events.iter().enumerate() {
            let mut seen = HashSet::new();
            for (key, role) in &v.ids {
                if seen.insert(key) {
                    ids.push(epc::ActiveModel {
                        epc: Set(key.clone()),
                        event_hash: Set(v.hash.to_vec()),
                        entry_idx: Set(*index as i64),
                        position: Set(pos as i32),
                        event_time_ms: Set(v.event_time_ms),
                        role: Set(*role),
                    });
                }
            }
            for c in &v.commissions {
                commissions.push(commission::ActiveModel {
                    sgtin: Set(c.sgtin.clone()),
                    gtin: Set(c.gtin.clone()),
                    entry_idx: Set(*index as i64),
                    org_id: Set(c.org.clone()),
                    lot: Set(c.lot.clone()),
                    expiry: Set(c.expiry.clone()),
                });
            }
        }
    }
    for chunk in ids.chunks(INSERT_CHUNK) {
        epc::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    for chunk in commissions.chunks(INSERT_CHUNK / 2) {
        commission::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn advance_device_seqs(
    txn: &impl ConnectionTrait,
    accepted: &[(u64, &NewEntry)],
) -> Result<(), StoreError> {
    let mut highest: HashMap<&str, i64> = HashMap::new();
    for (_, e) in accepted {
        if let Some(seq) = e.seq {
            let h = highest.entry(e.signer.as_str()).or_insert(seq);
            *h = (*h).max(seq);
        }
    }
    for (signer, seq) in highest {
        device::Entity::update_many()
            .col_expr(device::Column::LastSeq, Expr::value(seq))
            .filter(device::Column::Id.eq(signer))
            .filter(device::Column::LastSeq.lt(seq))
            .exec(txn)
            .await?;
    }
    Ok(())
}

async fn write_tiles(txn: &impl ConnectionTrait, changed: &[Tile]) -> Result<(), StoreError> {
    let rows: Vec<tile::ActiveModel> = changed
        .iter()
        .map(|t| tile::ActiveModel {
            level: Set(t.id.level as i16),
            idx: Set(t.id.index as i64),
            hashes: Set(t.hashes.concat()),
        })
        .collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        tile::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([tile::Column::Level, tile::Column::Idx])
                    .update_column(tile::Column::Hashes)
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// The stored head, without opening the ledger (for `rxledger checkpoint` and the auditor).
pub async fn read_head(db: &Database) -> Result<SignedHead, StoreError> {
    let row = head::Entity::find_by_id(HEAD_ID)
        .one(&db.conn)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(
                "the database holds no log yet (no head row); start `rxledger serve` once".into(),
            )
        })?;
    parse_head(&row)
}
