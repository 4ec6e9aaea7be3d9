//! Live device connections through the gate, and the sweep that closes those of devices that
//! were revoked (or re-keyed, or removed) after they logged in.
//!
//! A revocation reaches the server through the database: `rxledger device revoke` is another
//! process, and on PostgreSQL another node's GraphQL may have done it. So the gate does not
//! wait to be told: every [`SWEEP_EVERY`] it reads the registry rows of the devices it has
//! connections for (one query per 500 devices, nothing when none is connected) and closes
//! every connection whose device is no longer active with the key it logged in with. A
//! revoked device is therefore cut off within one sweep period plus one query. A failed
//! query is logged and the connections stay: the envelopes of a revoked device are refused
//! (`DEVICE_REVOKED`) by the pipeline either way, so availability wins over an early close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rxledger_store::Registry;
use tokio::sync::oneshot;

/// How often the registry is read for revocations.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// What a sweep keeps: a connection of a device it did not read (one that logged in while
/// the registry was being read, so its row is not in the answer), or one `allowed` admits.
/// Judging the newcomers by an answer that cannot name them closed them as revoked: with
/// hundreds of devices connecting at once, a few in every sweep.
fn judged<'a>(
    asked: &'a [String],
    allowed: impl Fn(&str, &str) -> bool + 'a,
) -> impl Fn(&str, &str) -> bool + 'a {
    let asked: std::collections::HashSet<&str> = asked.iter().map(String::as_str).collect();
    move |device, key| !asked.contains(device) || allowed(device, key)
}

/// The device connections open through the gate.
#[derive(Default)]
pub(crate) struct Live {
    conns: Mutex<HashMap<u64, Conn>>,
    next: AtomicU64,
}

struct Conn {
    device: String,
    /// The enrolled key (hex) the login was checked against.
    public_key: String,
    close: oneshot::Sender<()>,
}

/// Keeps a connection listed while it lives; dropping it unlists the connection.
pub(crate) struct Listed {
    live: Arc<Live>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.live.lock().remove(&self.id);
    }
}

impl Live {
    /// Lists a device's connection; the receiver fires when the sweep closes it.
    pub(crate) fn list(
        self: &Arc<Self>,
        device: &str,
        public_key: &str,
    ) -> (Listed, oneshot::Receiver<()>) {
        let (close, closed) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            device: device.into(),
            public_key: public_key.into(),
            close,
        };
        self.lock().insert(id, conn);
        let listed = Listed {
            live: self.clone(),
            id,
        };
        (listed, closed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Conn>> {
        // A panic while holding this lock leaves the map whole (inserts and removes only).
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn devices(&self) -> Vec<String> {
        self.lock().values().map(|c| c.device.clone()).collect()
    }

    /// Closes the connections for which `keep(device, key)` is false; how many it closed.
    fn close_unless(&self, keep: impl Fn(&str, &str) -> bool) -> usize {
        let mut conns = self.lock();
        let gone: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| !keep(&c.device, &c.public_key))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            if let Some(c) = conns.remove(id) {
                tracing::info!(
                    device = c.device,
                    "closing the MQTT connection of a revoked device"
                );
                let _ = c.close.send(());
            }
        }
        gone.len()
    }

    /// One sweep: reads the listed devices' rows and closes what is no longer allowed.
    pub(crate) async fn sweep(&self, registry: &Registry) {
        let devices = self.devices();
        if devices.is_empty() {
            return;
        }
        match registry.devices_by_ids(&devices).await {
            Ok(rows) => {
                self.close_unless(judged(&devices, |device, key| {
                    rows.get(device)
                        .is_some_and(|d| d.status == "active" && d.public_key == key)
                }));
            }
            Err(e) => tracing::warn!(error = %e, "reading devices for revocations failed"),
        }
    }

    /// Sweeps every [`SWEEP_EVERY`] for ever.
    pub(crate) async fn sweep_forever(self: Arc<Self>, registry: Registry) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep(&registry).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_only_what_is_no_longer_allowed_and_unlists_on_drop() {
        let live = Arc::new(Live::default());
        let (a, mut a_closed) = live.list("a", "k1");
        let (_b, mut b_closed) = live.list("b", "k2");
        assert_eq!(live.devices().len(), 2);
        assert_eq!(live.close_unless(|d, k| d == "b" && k == "k2"), 1);
        assert!(a_closed.try_recv().is_ok());
        assert!(b_closed.try_recv().is_err());
        drop(a);
        assert_eq!(live.devices(), vec!["b".to_string()]);
        // Re-keyed: the same device with another key is closed too.
        assert_eq!(live.close_unless(|_, k| k == "k3"), 1);
        assert!(b_closed.try_recv().is_ok());
        assert!(live.devices().is_empty());
    }

    #[test]
    fn a_device_that_logs_in_during_a_sweep_is_not_taken_for_revoked() {
        let live = Arc::new(Live::default());
        let (_a, mut a_closed) = live.list("a", "k1");
        let (_r, mut r_closed) = live.list("r", "k2");
        // The sweep reads the rows of the devices connected now...
        let asked = live.devices();
        // ...and "n" logs in while the query runs: the answer has no row for it.
        let (_n, mut n_closed) = live.list("n", "k3");
        let rows = [("a", "k1")];
        let allowed = |d: &str, k: &str| rows.iter().any(|(rd, rk)| *rd == d && *rk == k);
        assert_eq!(live.close_unless(judged(&asked, allowed)), 1);
        assert!(r_closed.try_recv().is_ok(), "r has no active row: revoked");
        assert!(a_closed.try_recv().is_err());
        assert!(n_closed.try_recv().is_err(), "n was not asked about");
    }
}
