//! Capture jobs: what `/epcis/capture/{id}` reports.
//!
//! A job lives in the memory of the node that ran it, bounded: the newest [`MAX_JOBS`] are
//! kept, and each keeps its first [`MAX_LISTED`] errors and recognised events (with their
//! totals). What a job appended is durable in the ledger whatever becomes of the job: its
//! events are found again by `GET /epcis/events?EQ_eventID=…`, and a document sent again is
//! recognised event by event, never appended twice.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::capture::{Behaviour, Outcome};

/// Jobs kept per node.
pub const MAX_JOBS: usize = 1_000;
/// Errors and recognised events listed per job.
pub const MAX_LISTED: usize = 100;

/// One capture job.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    /// The organization whose key posted it: only it (and regulators, admins) may read it.
    pub org: String,
    pub seq: u64,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub behaviour: Behaviour,
    pub events: usize,
    pub outcome: Option<Outcome>,
    /// The job failed for an internal reason: nothing of it was appended.
    pub failed: bool,
}

impl Job {
    pub fn running(&self) -> bool {
        self.finished_ms.is_none()
    }

    /// `success` as the binding defines it: no error occurred.
    pub fn success(&self) -> bool {
        !self.failed && self.outcome.as_ref().is_none_or(|o| o.errors.is_empty())
    }

    /// The job as the binding's `CaptureJob` object, with what exactly was appended.
    pub fn to_json(&self) -> Value {
        let fmt = rxledger_core::epcis::format_time;
        let o = self.outcome.clone().unwrap_or_default();
        let mut entries: Vec<u64> = o.appended.iter().map(|p| p.entry).collect();
        entries.dedup();
        let mut errors: Vec<Value> = o
            .errors
            .iter()
            .take(MAX_LISTED)
            .map(|e| {
                json!({
                    "type": "epcisException:ValidationException",
                    "title": "An event was not captured",
                    "status": 400,
                    "detail": e.detail,
                    "code": e.code,
                    "eventIndex": e.index,
                    "eventID": e.event_id,
                })
            })
            .collect();
        if self.failed {
            errors.push(json!({
                "type": "epcisException:ImplementationException",
                "title": "The capture failed",
                "status": 503,
                "detail": "internal error; nothing of this capture was appended, send it again",
                "code": "INTERNAL",
            }));
        }
        let recognised: Vec<Value> = o
            .recognised
            .iter()
            .take(MAX_LISTED)
            .map(|p| {
                json!({
                    "eventIndex": p.index,
                    "eventID": rxledger_core::epcis::id_of_hash(&p.hash),
                    "ledgerEntry": p.entry,
                })
            })
            .collect();
        let mut job = json!({
            "captureID": self.id,
            "createdAt": fmt(self.created_ms),
            "finishedAt": self.finished_ms.map(fmt),
            "running": self.running(),
            "success": self.success(),
            "captureErrorBehaviour": self.behaviour.as_str(),
            "errors": errors,
            "eventCount": self.events,
            "appendedCount": o.appended.len(),
            "recognisedCount": o.recognised.len(),
            "errorCount": o.errors.len(),
            "ledgerEntries": entries,
            "checkpointSize": o.checkpoint_size,
            "recognised": recognised,
            "signedBy": if o.attestation.is_some() { "partner-key" } else { "log-key" },
        });
        if let (Some(a), Some(obj)) = (&o.attestation, job.as_object_mut()) {
            obj.insert(
                "attestation".into(),
                rxledger_graphql::epcis_doc::attestation_json(a),
            );
            if o.document_kept {
                obj.insert(
                    "document".into(),
                    Value::String(format!("/epcis/capture/documents/{}", a.sha256)),
                );
            }
        }
        job
    }
}

/// The node's jobs, oldest first.
#[derive(Default)]
pub struct Jobs {
    inner: Mutex<(u64, VecDeque<Job>)>,
}

impl Jobs {
    /// Registers a running job for `org` and returns it.
    pub fn start(&self, org: &str, behaviour: Behaviour, events: usize, now_ms: i64) -> Job {
        let mut g = self.lock();
        g.0 += 1;
        let job = Job {
            id: new_id(g.0),
            org: org.to_string(),
            seq: g.0,
            created_ms: now_ms,
            finished_ms: None,
            behaviour,
            events,
            outcome: None,
            failed: false,
        };
        if g.1.len() >= MAX_JOBS {
            // The oldest finished job goes; running ones are never dropped.
            if let Some(i) = g.1.iter().position(|j| !j.running()) {
                g.1.remove(i);
            }
        }
        g.1.push_back(job.clone());
        job
    }

    /// Records how a job ended (`None`: it failed, nothing was appended).
    pub fn finish(&self, id: &str, outcome: Option<Outcome>, now_ms: i64) -> Option<Job> {
        let mut g = self.lock();
        let job = g.1.iter_mut().find(|j| j.id == id)?;
        job.finished_ms = Some(now_ms);
        job.failed = outcome.is_none();
        job.outcome = outcome;
        Some(job.clone())
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().1.iter().find(|j| j.id == id).cloned()
    }

    /// Jobs that `may_see` admits, newest first, older than `before` (a job's `seq`).
    pub fn list(&self, may_see: impl Fn(&Job) -> bool, before: Option<u64>, n: usize) -> Vec<Job> {
        self.lock()
            .1
            .iter()
            .rev()
            .filter(|j| before.is_none_or(|b| j.seq < b))
            .filter(|j| may_see(j))
            .take(n)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<Job>)> {
        // Every write leaves the list whole; a poisoned lock still holds a usable one.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A job id: unguessable, so that ids in logs or URLs reveal nothing about other jobs (the
/// owner check is what keeps them private).
fn new_id(seq: u64) -> String {
    let mut random = [0u8; 12];
    if getrandom::fill(&mut random).is_err() {
        // Without the OS's randomness the id is still unique on this node.
        random[..8].copy_from_slice(&seq.to_be_bytes());
    }
    format!("cj-{seq}-{}", hex::encode(random))
}
