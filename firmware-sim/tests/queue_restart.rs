//! The queue on disk survives a process restart: unreceipted envelopes come back in order
//! with their exact bytes, and sequence numbers are never reused, even after compaction.

use firmware_sim::queue::testing::{log, receipt};
use firmware_sim::queue::{COMPACT_BYTES, Queue};

fn envelope(seq: u64) -> Vec<u8> {
    format!("{{\"payload\":\"{{\\\"seq\\\":{seq}}}\",\"sig\":\"00\"}}").into_bytes()
}

#[test]
fn restart_resends_in_order_and_never_reuses_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path()).unwrap();
    let sent: Vec<_> = (0..5).map(|_| q.push_with(envelope).unwrap()).collect();
    assert_eq!(
        sent.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    q.record_receipts(
        &[receipt(&sent[0].payload), receipt(&sent[1].payload)],
        &log(),
    )
    .unwrap();
    q.checkpoint().unwrap();
    drop(q); // the process dies here

    let mut q = Queue::open(dir.path()).unwrap();
    assert_eq!(q.unreceipted(), 3);
    assert_eq!(q.pending(10), sent[2..].to_vec(), "same order, same bytes");
    assert_eq!(q.push_with(envelope).unwrap().seq, 6);
    let stored: Vec<_> = q.receipts().unwrap().collect();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].payload_hash, sent[0].hash);

    // Fill past the compaction threshold, receipt everything: the outbox is truncated but
    // the sequence numbers carry on.
    let big = "x".repeat(4096);
    while std::fs::metadata(dir.path().join("outbox.jsonl"))
        .unwrap()
        .len()
        < COMPACT_BYTES
    {
        q.push_with(|s| format!("{{\"seq\":{s},\"pad\":\"{big}\"}}").into_bytes())
            .unwrap();
    }
    let last = q.last_seq();
    loop {
        let p = q.pending(100);
        if p.is_empty() {
            break;
        }
        let rs: Vec<_> = p.iter().map(|r| receipt(&r.payload)).collect();
        q.record_receipts(&rs, &log()).unwrap();
    }
    q.checkpoint().unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("outbox.jsonl"))
            .unwrap()
            .len(),
        0,
        "compacted"
    );
    drop(q);
    let mut q = Queue::open(dir.path()).unwrap();
    assert_eq!(q.unreceipted(), 0);
    assert_eq!(q.push_with(envelope).unwrap().seq, last + 1);
}
