//! A device connection's window on the embedded broker: how many of its envelopes may await
//! receipts at once (PROTOCOL.md §9.1).
//!
//! rumqttd keeps an in-memory log for every topic filter, and drops a log's oldest receipts
//! only when the log is full; a subscriber whose cursor points at dropped receipts skips them.
//! Each device has a filter of its own (its acks topic), so the log must be bounded for
//! memory to be bounded with thousands of devices ([`crate::broker`] gives each acks log room
//! for [`crate::broker::RECEIPT_BUDGET`] bytes per window slot), and then no device may have
//! more receipts unread than that room holds. The gate guarantees it: it forwards a device's
//! PUBLISH only while fewer than `cap` of the connection's envelopes await receipts, and holds
//! the rest (and, through TCP, the device) until a receipt has been passed down to the device.
//!
//! A forwarded envelope whose receipt never comes (the node that held it died before its
//! commit, and the device will resend it) gives its slot back after [`SLOT_EXPIRY`], so that
//! lost envelopes cannot close the window for good, nor hold a device's new envelopes back
//! for longer than the failover bound (issue 25: a receipt within 2 s of a node's death).
//! Memory does not depend on it: the acks log is bounded by size whatever the gate forwards.
//! A slot given back early only lets a device that does not read its receipts lose some of
//! its own (it resends them).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a slot stays taken without a receipt: longer than a receipt takes on a node
/// that keeps up (p99 tens of milliseconds below saturation, 1.1 to 1.7 s at saturation
/// with thousands in flight), and no longer than failover may stall a device.
pub const SLOT_EXPIRY: Duration = Duration::from_secs(2);

/// The envelopes of one connection that await receipts, as the instants they were forwarded.
#[derive(Debug)]
pub struct Window {
    cap: usize,
    taken: Mutex<VecDeque<Instant>>,
    room: Notify,
}

impl Window {
    /// A window of `cap` slots (at least 1).
    pub fn new(cap: usize) -> Self {
        Window {
            cap: cap.max(1),
            taken: Mutex::new(VecDeque::new()),
            room: Notify::new(),
        }
    }

    /// Takes a slot, waiting until one is free or the oldest has expired.
    pub async fn take(&self) {
        loop {
            let wait = {
                let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while taken.front().is_some_and(|t| now >= *t + SLOT_EXPIRY) {
                    taken.pop_front();
                }
                if taken.len() < self.cap {
                    taken.push_back(now);
                    return;
                }
                // Full: the front is the oldest, and expires first.
                taken[0] + SLOT_EXPIRY - now
            };
            // A receipt that arrived between the lock and here left a stored permit, so the
            // wait ends at once.
            tokio::select! {
                () = self.room.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Gives back the oldest slot: a receipt was passed down. Receipts come in any order and
    /// slots are alike, so which one does not matter; with none taken (a receipt for an
    /// envelope sent on an earlier connection) nothing changes.
    pub fn release(&self) {
        let freed = {
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            taken.pop_front().is_some()
        };
        if freed {
            self.room.notify_one();
        }
    }

    /// Slots taken now, expired ones included.
    #[cfg(test)]
    fn taken(&self) -> usize {
        self.taken.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_full_window_waits_for_a_receipt() {
        let w = Arc::new(Window::new(2));
        w.take().await;
        w.take().await;
        let third = tokio::spawn({
            let w = w.clone();
            async move { w.take().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !third.is_finished(),
            "a third envelope waits while two await receipts"
        );
        w.release();
        third.await.unwrap();
        assert_eq!(w.taken(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_without_a_receipt_expires() {
        let w = Window::new(1);
        w.take().await;
        let start = Instant::now();
        w.take().await;
        let waited = start.elapsed();
        assert!(waited >= SLOT_EXPIRY, "waited {waited:?}");
        assert!(
            waited < SLOT_EXPIRY + Duration::from_secs(1),
            "waited {waited:?}"
        );
        assert_eq!(w.taken(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_receipt_with_nothing_taken_changes_nothing() {
        let w = Window::new(1);
        w.release();
        w.take().await;
        assert_eq!(w.taken(), 1);
        w.release();
        w.release();
        assert_eq!(w.taken(), 0);
    }
}
