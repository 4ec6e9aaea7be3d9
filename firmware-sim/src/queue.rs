//! The device's durable store-and-forward queue.
//!
//! An MQTT PUBACK only says the broker has the message in memory; the embedded broker loses
//! it on restart. So a device keeps every envelope on its own disk until it holds the server's
//! receipt for it, and resends the exact same bytes until then (the server answers a resend
//! it already logged with `DUPLICATE` and the original receipt).
//!
//! A queue is a directory with three files:
//!
//! * `outbox.jsonl`: one line per envelope, appended and fsynced *before* it is published:
//!   `{"seq":7,"hash":"<sha256 of payload, hex>","payload":"<the MQTT payload as a JSON string>"}`.
//!   Envelopes are JSON text, so the payload round-trips byte for byte.
//! * `receipts.jsonl`: every receipt that settled an envelope, one JSON line each, fsynced, in
//!   arrival order: the device's proof of what the log accepted (entry index, leaf hash,
//!   checkpoint, inclusion proof, the log's signature). A receipt settles an envelope only
//!   once it verifies against the pinned log key ([`envelope::check_receipt`]): anyone able
//!   to publish on the acks topic could otherwise make the device drop envelopes the log
//!   never took.
//! * `state.json`: `{"v":1,"last_seq":S,"head":O}`, replaced atomically (write, fsync, rename).
//!   `last_seq` is the highest sequence number ever allocated; `head` is the byte offset in
//!   the outbox of the first envelope without a receipt (all before it have one).
//!
//! With witnesses ([`Queue::hold_for_witnesses`]) a receipt does not settle its envelope on its
//! own: the envelope stays in the outbox, no longer published, until a checkpoint that the
//! witnesses' quorum cosigned is shown to extend the receipt's tree ([`Queue::witnessed`]).
//! Only then does the head move past it. That state is kept in memory only: after a restart
//! those envelopes are resent and answered `DUPLICATE`, with the same entry and proof.
//!
//! Memory is bounded: only a window of at most [`WINDOW`] unreceipted envelopes is held; the
//! rest is streamed from the outbox as the window drains. `head` is persisted lazily: if it is
//! behind after a crash, the envelopes between are resent and answered `DUPLICATE`, which is
//! harmless. A torn last line (crash mid-append) is cut off on open; it was never published,
//! because publishing follows the fsync. When every envelope has a receipt and the outbox has
//! grown past [`COMPACT_BYTES`], it is truncated; `last_seq` lives in `state.json`, so
//! sequence numbers are never reused.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeSet;

use rxledger_core::checkpoint;
use rxledger_core::envelope::{self, Receipt};
use rxledger_core::keys::LogVerifier;
use rxledger_core::merkle::Hash;
use serde::{Deserialize, Serialize};

/// Most unreceipted envelopes held in memory at once.
pub const WINDOW: usize = 1024;
/// Most receipted envelopes held for the witnesses at once. They are held without their
/// bytes, so this costs about 100 B each; when it is reached the device publishes nothing
/// new until the witnesses catch up (its backlog stays on disk).
pub const HELD_MAX: usize = 65_536;
/// Outbox size above which a fully receipted outbox is truncated.
pub const COMPACT_BYTES: u64 = 1 << 20;

const OUTBOX: &str = "outbox.jsonl";
const RECEIPTS: &str = "receipts.jsonl";
const STATE: &str = "state.json";

/// Why the queue could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("queue {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("queue {path}: line at byte {offset} is corrupt: {why}")]
    Corrupt {
        path: String,
        offset: u64,
        why: String,
    },
    #[error("an envelope must be UTF-8 JSON text")]
    NotText,
}

/// One queued envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Byte offset of its line in the outbox.
    pub offset: u64,
    pub seq: u64,
    /// SHA-256 of `payload`, hex: what the receipt's `payloadHash` names.
    pub hash: String,
    pub payload: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    hash: String,
    payload: String,
}

#[derive(Serialize, Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
struct State {
    v: u32,
    last_seq: u64,
    head: u64,
}

struct Slot {
    record: Record,
    mark: Mark,
}

/// Where a windowed envelope stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// No verified receipt yet: published (again) until one comes.
    Waiting,
    /// Receipted in the log's tree of this size and root, and held until the witnesses'
    /// quorum cosigns a tree that extends it.
    Held { size: u64, root: Hash },
    /// Settled: the head may move past it.
    Done,
}

/// A device's durable queue. Not shared between processes.
pub struct Queue {
    dir: PathBuf,
    outbox: File,
    receipts: File,
    /// Bytes in the outbox (every line complete).
    end: u64,
    /// Outbox bytes already loaded into `window` (or receipted before it).
    loaded_to: u64,
    state: State,
    /// `head` as last written to `state.json`.
    saved: State,
    window: VecDeque<Slot>,
    /// Unreceipted envelopes, in the window and on disk.
    unreceipted: u64,
    /// Whether a receipt only holds its envelope until the witnesses cosign (see the module).
    hold: bool,
    /// Receipted envelopes held for the witnesses (all in the window).
    held: usize,
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, repairing a torn last line.
    pub fn open(dir: impl AsRef<Path>) -> Result<Queue, QueueError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let state = read_state(&dir)?;
        let outbox_path = dir.join(OUTBOX);
        let mut outbox = open_append(&outbox_path)?;
        let receipts_path = dir.join(RECEIPTS);
        let mut receipts = open_append(&receipts_path)?;
        cut_torn_tail(&mut receipts, &receipts_path)?;
        let end = repair_outbox(&mut outbox, &outbox_path, state.head)?;
        let head = state.head.min(end);
        let mut q = Queue {
            dir,
            outbox,
            receipts,
            end,
            loaded_to: head,
            state: State { head, ..state },
            saved: state,
            window: VecDeque::new(),
            unreceipted: 0,
            hold: false,
            held: 0,
        };
        // Stream the unreceipted tail once: count it and find the highest sequence number.
        let (mut count, mut max_seq) = (0, q.state.last_seq);
        q.scan(head, |r| {
            count += 1;
            max_seq = max_seq.max(r.seq);
        })?;
        q.unreceipted = count;
        q.state.last_seq = max_seq;
        q.refill()?;
        Ok(q)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The highest sequence number ever allocated (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.state.last_seq
    }

    /// Envelopes that have no receipt yet.
    pub fn unreceipted(&self) -> u64 {
        self.unreceipted
    }

    /// From now on a verified receipt holds its envelope until [`witnessed`](Self::witnessed)
    /// settles it, instead of settling it at once.
    pub fn hold_for_witnesses(&mut self) {
        self.hold = true;
    }

    /// Receipted envelopes still held for the witnesses.
    pub fn held(&self) -> u64 {
        self.held as u64
    }

    /// The distinct log trees (size, root) that the held envelopes' receipts were proven in,
    /// smallest first. Two roots for one size can only come from a fork, and both are listed.
    pub fn held_trees(&self) -> BTreeSet<(u64, Hash)> {
        self.window
            .iter()
            .filter_map(|s| match s.mark {
                Mark::Held { size, root } => Some((size, root)),
                _ => None,
            })
            .collect()
    }

    /// Settles every held envelope whose receipt's tree is in `trees`: a checkpoint the
    /// witnesses' quorum cosigned was shown to extend it. Returns how many were settled.
    pub fn witnessed(&mut self, trees: &BTreeSet<(u64, Hash)>) -> Result<u64, QueueError> {
        let mut settled = 0;
        for slot in self.window.iter_mut() {
            if let Mark::Held { size, root } = slot.mark
                && trees.contains(&(size, root))
            {
                slot.mark = Mark::Done;
                settled += 1;
            }
        }
        self.held -= settled;
        self.advance()?;
        Ok(settled as u64)
    }

    /// Allocates the next sequence number, builds the envelope with it and appends it
    /// durably. Returns once the envelope is on disk.
    pub fn push_with(&mut self, build: impl FnOnce(u64) -> Vec<u8>) -> Result<Record, QueueError> {
        let seq = self.state.last_seq + 1;
        let payload = build(seq);
        self.push(seq, payload)
    }

    /// Appends an envelope built elsewhere (a resend of old bytes, a test's forgery). `seq` is
    /// only recorded; it raises `last_seq` if higher.
    pub fn push(&mut self, seq: u64, payload: Vec<u8>) -> Result<Record, QueueError> {
        let text = std::str::from_utf8(&payload).map_err(|_| QueueError::NotText)?;
        let hash = envelope::payload_hash(&payload);
        let mut line = serde_json::to_string(&Line {
            seq,
            hash: hash.clone(),
            payload: text.to_owned(),
        })
        .map_err(|e| QueueError::Corrupt {
            path: self.path(OUTBOX),
            offset: self.end,
            why: e.to_string(),
        })?;
        line.push('\n');
        let offset = self.end;
        let path = self.dir.join(OUTBOX);
        self.outbox.write_all(line.as_bytes()).map_err(io(&path))?;
        self.outbox.sync_data().map_err(io(&path))?;
        self.end += line.len() as u64;
        self.state.last_seq = self.state.last_seq.max(seq);
        self.unreceipted += 1;
        let record = Record {
            offset,
            seq,
            hash,
            payload,
        };
        if self.loaded_to == offset && self.window.len() < WINDOW + self.held {
            self.window.push_back(Slot {
                record: record.clone(),
                mark: Mark::Waiting,
            });
            self.loaded_to = self.end;
        }
        Ok(record)
    }

    /// Up to `limit` unreceipted envelopes, oldest first.
    pub fn pending(&self, limit: usize) -> Vec<Record> {
        self.window
            .iter()
            .filter(|s| s.mark == Mark::Waiting)
            .take(limit)
            .map(|s| s.record.clone())
            .collect()
    }

    /// Stores a receipt (fsynced) and marks its envelope done, if it verifies against `log`.
    /// Returns whether it settled an envelope still waiting in the window.
    pub fn record_receipt(
        &mut self,
        receipt: &Receipt,
        log: &LogVerifier,
    ) -> Result<bool, QueueError> {
        self.record_receipts(std::slice::from_ref(receipt), log)
            .map(|settled| !settled.is_empty())
    }

    /// Settles the waiting envelopes these receipts prove (or, holding for witnesses, holds
    /// them), storing those receipts with one fsync before any envelope leaves the queue. A
    /// receipt that names no waiting envelope, or does not verify against `log` for it,
    /// changes nothing. Returns the receipts that settled or held an envelope.
    pub fn record_receipts(
        &mut self,
        receipts: &[Receipt],
        log: &LogVerifier,
    ) -> Result<Vec<Receipt>, QueueError> {
        let mut settled = Vec::new();
        let mut slots: Vec<(u64, Mark)> = Vec::new();
        for r in receipts {
            let Some(at) = self.window.iter().position(|s| {
                s.mark == Mark::Waiting
                    && s.record.hash == r.payload_hash
                    && !slots.iter().any(|(o, _)| *o == s.record.offset)
            }) else {
                continue;
            };
            let record = &self.window[at].record;
            let proven = envelope::check_receipt(r, &record.payload, log).and_then(|()| {
                if !self.hold {
                    return Ok(Mark::Done);
                }
                // check_receipt has opened this very note; a receipt without one (REJECTED)
                // proves no tree, and is settled at once: there is nothing to witness.
                match &r.checkpoint {
                    Some(note) => checkpoint::open_checkpoint(note, log)
                        .map(|cp| Mark::Held {
                            size: cp.size,
                            root: cp.root,
                        })
                        .map_err(envelope::ReceiptError::Checkpoint),
                    None => Ok(Mark::Done),
                }
            });
            match proven {
                Ok(mark) => {
                    slots.push((record.offset, mark));
                    settled.push(r.clone());
                }
                Err(e) => tracing::warn!(
                    seq = record.seq,
                    error = %e,
                    "ignoring a receipt that does not verify"
                ),
            }
        }
        if settled.is_empty() {
            return Ok(settled);
        }
        let mut text = String::new();
        for r in &settled {
            // A receipt is a struct of strings and numbers; serialising it cannot fail.
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        let path = self.dir.join(RECEIPTS);
        self.receipts
            .write_all(text.as_bytes())
            .map_err(io(&path))?;
        self.receipts.sync_data().map_err(io(&path))?;
        for slot in self.window.iter_mut() {
            if let Some((_, mark)) = slots.iter().find(|(o, _)| *o == slot.record.offset) {
                slot.mark = *mark;
                self.unreceipted -= 1;
                if matches!(mark, Mark::Held { .. }) {
                    self.held += 1;
                    // Held envelopes are never published again: keep only what names them.
                    slot.record.payload = Vec::new();
                }
            }
        }
        self.advance()?;
        Ok(settled)
    }

    /// Drops the settled envelopes at the front of the window, moves the head past them and
    /// refills the window.
    fn advance(&mut self) -> Result<(), QueueError> {
        while self.window.front().is_some_and(|s| s.mark == Mark::Done) {
            self.window.pop_front();
        }
        self.state.head = self
            .window
            .front()
            .map_or(self.loaded_to, |s| s.record.offset);
        self.refill()
    }

    /// Writes `state.json` if `head` or `last_seq` moved, compacting a fully receipted outbox.
    pub fn checkpoint(&mut self) -> Result<(), QueueError> {
        if self.unreceipted == 0 && self.held == 0 && self.end >= COMPACT_BYTES {
            // Truncate first: a crash before the state write leaves head beyond the end, which
            // open() clamps. last_seq is already in memory and written just below.
            let path = self.dir.join(OUTBOX);
            self.outbox.set_len(0).map_err(io(&path))?;
            self.outbox.sync_all().map_err(io(&path))?;
            self.end = 0;
            self.loaded_to = 0;
            self.state.head = 0;
        }
        if self.state != self.saved {
            write_state(&self.dir, &self.state)?;
            self.saved = self.state;
        }
        Ok(())
    }

    /// Every receipt stored so far, oldest first, streamed from disk.
    pub fn receipts(&self) -> Result<impl Iterator<Item = Receipt>, QueueError> {
        let path = self.dir.join(RECEIPTS);
        let f = File::open(&path).map_err(io(&path))?;
        Ok(BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok()))
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Loads outbox lines after `loaded_to` into the window until it holds [`WINDOW`]
    /// envelopes besides the held ones, which count against [`HELD_MAX`] instead.
    fn refill(&mut self) -> Result<(), QueueError> {
        let cap = WINDOW + self.held.min(HELD_MAX);
        if self.window.len() >= cap || self.loaded_to >= self.end {
            return Ok(());
        }
        let room = cap - self.window.len();
        let mut loaded = Vec::new();
        let mut stop_at = self.end;
        self.scan_until(self.loaded_to, |r| {
            if loaded.len() == room {
                stop_at = stop_at.min(r.offset);
                return false;
            }
            loaded.push(r);
            true
        })?;
        self.loaded_to = stop_at;
        for record in loaded {
            self.window.push_back(Slot {
                record,
                mark: Mark::Waiting,
            });
        }
        Ok(())
    }

    fn scan(&self, from: u64, mut each: impl FnMut(Record)) -> Result<(), QueueError> {
        self.scan_until(from, |r| {
            each(r);
            true
        })
    }

    /// Streams outbox records from byte `from` while `each` returns true.
    fn scan_until(
        &self,
        from: u64,
        mut each: impl FnMut(Record) -> bool,
    ) -> Result<(), QueueError> {
        let path = self.dir.join(OUTBOX);
        let mut f = File::open(&path).map_err(io(&path))?;
        f.seek(SeekFrom::Start(from)).map_err(io(&path))?;
        let mut reader = BufReader::new(f.take(self.end - from.min(self.end)));
        let mut offset = from;
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = reader.read_line(&mut buf).map_err(io(&path))?;
            if n == 0 {
                return Ok(());
            }
            let corrupt = |why: String| QueueError::Corrupt {
                path: path.display().to_string(),
                offset,
                why,
            };
            let line: Line =
                serde_json::from_str(buf.trim_end()).map_err(|e| corrupt(e.to_string()))?;
            if envelope::payload_hash(line.payload.as_bytes()) != line.hash {
                return Err(corrupt("the payload does not match its hash".into()));
            }
            let record = Record {
                offset,
                seq: line.seq,
                hash: line.hash,
                payload: line.payload.into_bytes(),
            };
            offset += n as u64;
            if !each(record) {
                return Ok(());
            }
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn open_append(path: &Path) -> Result<File, QueueError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io(path))
}

/// Cuts a partial last line (a crash mid-append) so the file ends with a newline.
fn cut_torn_tail(f: &mut File, path: &Path) -> Result<(), QueueError> {
    let len = f.metadata().map_err(io(path))?.len();
    let mut reader = File::open(path).map_err(io(path))?;
    let mut pos = len;
    let mut byte = [0u8; 1];
    // Walk back to the last newline; a torn tail is at most one line, so this is short.
    while pos > 0 {
        reader.seek(SeekFrom::Start(pos - 1)).map_err(io(path))?;
        reader.read_exact(&mut byte).map_err(io(path))?;
        if byte[0] == b'\n' {
            break;
        }
        pos -= 1;
    }
    if pos != len {
        f.set_len(pos).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok(())
}

/// Streams the outbox from `head`; cuts a torn or unparseable *last* line and returns the
/// length of the good part. A bad line anywhere else is corruption.
fn repair_outbox(f: &mut File, path: &Path, head: u64) -> Result<u64, QueueError> {
    let len = f.metadata().map_err(io(path))?.len();
    let mut offset = head.min(len);
    let mut r = File::open(path).map_err(io(path))?;
    r.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut reader = BufReader::new(r);
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = match reader.read_line(&mut buf) {
            Ok(n) => n,
            // Invalid UTF-8 can only be a torn write if it is the tail.
            Err(_) => (len - offset) as usize,
        };
        if n == 0 {
            return Ok(len);
        }
        let complete = buf.ends_with('\n') && serde_json::from_str::<Line>(buf.trim_end()).is_ok();
        if !complete {
            if offset + n as u64 >= len {
                f.set_len(offset).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
                return Ok(offset);
            }
            return Err(QueueError::Corrupt {
                path: path.display().to_string(),
                offset,
                why: "not a queue record".into(),
            });
        }
        offset += n as u64;
    }
}

fn read_state(dir: &Path) -> Result<State, QueueError> {
    let path = dir.join(STATE);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| QueueError::Corrupt {
            path: path.display().to_string(),
            offset: 0,
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
            v: 1,
            ..State::default()
        }),
        Err(e) => Err(io(&path)(e)),
    }
}

fn write_state(dir: &Path, state: &State) -> Result<(), QueueError> {
    let path = dir.join(STATE);
    let tmp = dir.join("state.json.tmp");
    let text = serde_json::to_string(state).unwrap_or_default();
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Receipts signed by a fixed test log, for the queue's tests (here and in `tests/`).
#[doc(hidden)]
pub mod testing {
    use rxledger_core::checkpoint::{self, Checkpoint};
    use rxledger_core::envelope::{self, Receipt};
    use rxledger_core::keys::{LogVerifier, SigningKey};
    use rxledger_core::merkle;

    const ORIGIN: &str = "test.rxledger.local/queue";

    fn key() -> SigningKey {
        // A fixed valid secret: 32 bytes of 7.
        SigningKey::from_bytes(&[7; 32]).expect("a valid secret")
    }

    /// The test log's verifier.
    pub fn log() -> LogVerifier {
        LogVerifier::new(ORIGIN, key().public_key()).expect("a valid name")
    }

    /// An `ACCEPTED` receipt for `payload` as the only entry of the test log, signed by `by`
    /// (the test log's key when `None`).
    pub fn receipt_signed_by(payload: &[u8], by: Option<&SigningKey>) -> Receipt {
        let leaf = merkle::leaf_hash(payload);
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 1,
            root: leaf,
        };
        let mut r = Receipt {
            v: envelope::VERSION,
            status: envelope::ReceiptStatus::Accepted,
            device_id: "d".into(),
            seq: None,
            payload_hash: envelope::payload_hash(payload),
            code: None,
            message: None,
            entry_index: Some(0),
            leaf_hash: Some(hex::encode(leaf)),
            event_ids: vec![],
            checkpoint: checkpoint::sign_checkpoint(&cp, &key()).ok(),
            inclusion_proof: vec![],
            signature: None,
        };
        envelope::sign_receipts(std::slice::from_mut(&mut r), by.unwrap_or(&key()));
        r
    }

    /// An `ACCEPTED` receipt for `payload` signed by the test log.
    pub fn receipt(payload: &[u8]) -> Receipt {
        receipt_signed_by(payload, None)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{log, receipt, receipt_signed_by};
    use super::*;
    use rxledger_core::keys::SigningKey;

    /// Queues the next envelope, `{"n":<its seq>}`.
    fn push(q: &mut Queue) -> Record {
        q.push_with(|s| format!("{{\"n\":{s}}}").into_bytes())
            .unwrap()
    }

    /// A forged receipt (another key, or none) settles nothing and is not stored.
    #[test]
    fn only_verified_receipts_settle_envelopes() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path()).unwrap();
        let a = push(&mut q);
        let forger = SigningKey::generate();
        let forged = receipt_signed_by(&a.payload, Some(&forger));
        assert!(!q.record_receipt(&forged, &log()).unwrap());
        let mut unsigned = receipt(&a.payload);
        unsigned.signature = None;
        assert!(!q.record_receipt(&unsigned, &log()).unwrap());
        let mut rejected = receipt(&a.payload);
        rejected.status = envelope::ReceiptStatus::Rejected;
        assert!(
            !q.record_receipt(&rejected, &log()).unwrap(),
            "edited after signing"
        );
        assert_eq!(q.unreceipted(), 1);
        assert_eq!(q.receipts().unwrap().count(), 0);
        assert!(q.record_receipt(&receipt(&a.payload), &log()).unwrap());
        assert_eq!(q.unreceipted(), 0);
    }

    /// Holding for witnesses: a verified receipt stops the resends but keeps the envelope
    /// until its tree is witnessed; only witnessed trees settle, and the head waits for the
    /// oldest held envelope. What is held is not remembered across a restart: it is resent.
    #[test]
    fn held_envelopes_leave_only_when_their_tree_is_witnessed() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path()).unwrap();
        q.hold_for_witnesses();
        let a = push(&mut q);
        let b = push(&mut q);
        let rs = [receipt(&a.payload), receipt(&b.payload)];
        assert_eq!(q.record_receipts(&rs, &log()).unwrap().len(), 2);
        assert_eq!((q.unreceipted(), q.held()), (0, 2));
        assert!(q.pending(10).is_empty(), "held envelopes are not resent");
        // The test log's receipts are each the one entry of a tree of size 1: two trees.
        let trees = q.held_trees();
        let tree_of = |p: &[u8]| (1, rxledger_core::merkle::leaf_hash(p));
        assert_eq!(trees, [tree_of(&a.payload), tree_of(&b.payload)].into());
        // Witnessing b's tree settles b, but the head stays at a, which is still held.
        let only_b = [tree_of(&b.payload)].into();
        assert_eq!(q.witnessed(&only_b).unwrap(), 1);
        assert_eq!(q.held(), 1);
        assert_eq!(q.state.head, a.offset);
        q.checkpoint().unwrap();
        assert_eq!(
            q.witnessed(&only_b).unwrap(),
            0,
            "nothing left in that tree"
        );
        drop(q);
        let mut q = Queue::open(dir.path()).unwrap();
        q.hold_for_witnesses();
        assert_eq!(
            (q.unreceipted(), q.held()),
            (2, 0),
            "resent after a restart"
        );
        q.record_receipts(&rs, &log()).unwrap();
        let both = q.held_trees();
        assert_eq!(q.witnessed(&both).unwrap(), 2);
        assert_eq!((q.unreceipted(), q.held()), (0, 0));
        assert_eq!(q.state.head, q.end);
    }

    #[test]
    fn torn_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path()).unwrap();
        push(&mut q);
        drop(q);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(OUTBOX))
            .unwrap();
        f.write_all(b"{\"seq\":2,\"hash\":\"ab").unwrap();
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.unreceipted(), 1);
        assert_eq!(q.last_seq(), 1);
        assert_eq!(q.pending(10)[0].payload, b"{\"n\":1}");
    }

    #[test]
    fn window_streams_from_disk_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path()).unwrap();
        let n = WINDOW as u64 + 10;
        for _ in 0..n {
            push(&mut q);
        }
        assert_eq!(q.window.len(), WINDOW);
        let all: Vec<_> = q.pending(usize::MAX);
        let rs: Vec<_> = all.iter().map(|r| receipt(&r.payload)).collect();
        assert_eq!(q.record_receipts(&rs, &log()).unwrap().len(), WINDOW);
        let rest = q.pending(usize::MAX);
        assert_eq!(rest.len(), 10);
        assert_eq!(rest[0].seq, WINDOW as u64 + 1);
        let rs: Vec<_> = rest.iter().map(|r| receipt(&r.payload)).collect();
        q.record_receipts(&rs, &log()).unwrap();
        assert_eq!(q.unreceipted(), 0);
        q.checkpoint().unwrap();
        drop(q);
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.unreceipted(), 0);
        assert_eq!(q.last_seq(), n);
        assert_eq!(q.receipts().unwrap().count() as u64, n);
    }

    #[test]
    fn out_of_order_receipts_hold_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path()).unwrap();
        let a = push(&mut q);
        let b = push(&mut q);
        assert!(q.record_receipt(&receipt(&b.payload), &log()).unwrap());
        assert!(
            !q.record_receipt(&receipt(&b.payload), &log()).unwrap(),
            "already done"
        );
        assert_eq!(q.pending(10), vec![a.clone()]);
        q.checkpoint().unwrap();
        drop(q);
        // b's receipt is stored but the head is at a: after a restart both are resent
        // (b is answered DUPLICATE), never lost.
        let mut q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.unreceipted(), 2);
        assert!(q.record_receipt(&receipt(&a.payload), &log()).unwrap());
        assert_eq!(q.pending(10)[0].hash, b.hash);
    }
}
