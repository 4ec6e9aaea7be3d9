//! Who may connect to the MQTT broker, and what each client may do there.
//!
//! **Credentials come from enrolment**, so no new secret is handed out or stored:
//!
//! * A device's MQTT username is its device id. Its password is
//!   `hex(SHA-256("rxledger/mqtt-device-password/v1" || 0x00 || deviceId || 0x00 || X))`, where
//!   `X` is the 32-byte x coordinate of the static ECDH point of the device key and the log key.
//!   The device computes `X` from its own secret and the log public key it pins anyway (to
//!   check receipts); the server computes it from the log secret and the enrolled public key.
//!   Re-keying a device changes its password; revoking it makes the server refuse it.
//! * Server nodes use the username [`NODE_USERNAME`] (which no device id can equal: `@` is not
//!   allowed in ids) and the password
//!   `hex(SHA-256("rxledger/mqtt-node-password/v1" || 0x00 || log secret key))`: every node
//!   holds the log key, and nobody else does.
//!
//! The password is a static bearer secret rather than a signed timestamp because a broker
//! such as Mosquitto cannot check an ECDSA signature but can check a salted hash in its
//! password file: one scheme serves the embedded broker and external ones. Over plain TCP an
//! eavesdropper could replay it; MQTT over TLS closes that.
//!
//! **Access rules** ([`allowed`]): a device may publish only on its own events topic and
//! subscribe only to its own acks topic; only a node may join the shared events subscription
//! and publish receipts.

use sha2::{Digest, Sha256};

use crate::envelope::{acks_topic, events_topic, shared_events_filter, valid_device_id};
use crate::keys::{PublicKey, SigningKey};

/// The MQTT username of every server node.
pub const NODE_USERNAME: &str = "node@rxledger";

const DEVICE_DOMAIN: &[u8] = b"rxledger/mqtt-device-password/v1";
const NODE_DOMAIN: &[u8] = b"rxledger/mqtt-node-password/v1";

/// Who an authenticated MQTT client is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// An enrolled, active device.
    Device(String),
    /// A server node (holds the log key).
    Node,
}

/// What a client asks the broker to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// PUBLISH (or a will message) on this topic.
    Publish(&'a str),
    /// SUBSCRIBE to this filter.
    Subscribe(&'a str),
}

/// The device's MQTT password, computed on the device.
pub fn device_password(device_key: &SigningKey, log: &PublicKey, device_id: &str) -> String {
    derive_device(device_id, &device_key.shared_secret(log))
}

/// The same password, computed by the server from the enrolled public key.
pub fn device_password_for(log_key: &SigningKey, device: &PublicKey, device_id: &str) -> String {
    derive_device(device_id, &log_key.shared_secret(device))
}

fn derive_device(device_id: &str, shared: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(DEVICE_DOMAIN);
    h.update([0]);
    h.update(device_id.as_bytes());
    h.update([0]);
    h.update(shared);
    hex::encode(h.finalize())
}

/// The password of every server node of the log whose key this is.
pub fn node_password(log_key: &SigningKey) -> String {
    let secret = hex::decode(log_key.to_secret_hex()).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(NODE_DOMAIN);
    h.update([0]);
    h.update(&secret);
    hex::encode(h.finalize())
}

/// Whether `who` may do `what` under topic root `root`.
pub fn allowed(who: &Principal, root: &str, what: Access<'_>) -> bool {
    match (who, what) {
        (Principal::Device(id), Access::Publish(t)) => t == events_topic(root, id),
        (Principal::Device(id), Access::Subscribe(f)) => f == acks_topic(root, id),
        (Principal::Node, Access::Subscribe(f)) => f == shared_events_filter(root),
        (Principal::Node, Access::Publish(t)) => device_of_acks_topic(root, t).is_some(),
    }
}

/// The device id in an acks topic, if the topic has the right shape.
pub fn device_of_acks_topic<'a>(root: &str, topic: &'a str) -> Option<&'a str> {
    let id = topic
        .strip_prefix(root)?
        .strip_prefix("/devices/")?
        .strip_suffix("/acks")?;
    valid_device_id(id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "rxledger/v1";

    #[test]
    fn both_sides_derive_the_same_password() {
        let (dev, log) = (SigningKey::generate(), SigningKey::generate());
        let on_device = device_password(&dev, &log.public_key(), "line-1");
        let on_server = device_password_for(&log, &dev.public_key(), "line-1");
        assert_eq!(on_device, on_server);
        assert_eq!(on_device.len(), 64);
        // Bound to the id and to both keys.
        assert_ne!(
            on_device,
            device_password_for(&log, &dev.public_key(), "line-2")
        );
        let other_log = SigningKey::generate();
        assert_ne!(
            on_device,
            device_password(&dev, &other_log.public_key(), "line-1")
        );
        assert_ne!(node_password(&log), node_password(&other_log));
        assert_ne!(node_password(&log), on_device);
    }

    #[test]
    fn devices_reach_only_their_own_topics() {
        let d = Principal::Device("line-1".into());
        let yes = [
            Access::Publish("rxledger/v1/devices/line-1/events"),
            Access::Subscribe("rxledger/v1/devices/line-1/acks"),
        ];
        for a in yes {
            assert!(allowed(&d, ROOT, a), "{a:?}");
        }
        let no = [
            Access::Publish("rxledger/v1/devices/line-2/events"),
            Access::Publish("rxledger/v1/devices/line-1/acks"),
            Access::Subscribe("#"),
            Access::Subscribe("rxledger/v1/devices/+/acks"),
            Access::Subscribe("rxledger/v1/devices/line-2/acks"),
            Access::Subscribe("rxledger/v1/devices/line-1/events"),
            Access::Subscribe("$share/rxledger/rxledger/v1/devices/+/events"),
            Access::Subscribe("$share/x/rxledger/v1/devices/line-1/acks"),
        ];
        for a in no {
            assert!(!allowed(&d, ROOT, a), "{a:?}");
        }
        let n = Principal::Node;
        assert!(allowed(
            &n,
            ROOT,
            Access::Subscribe("$share/rxledger/rxledger/v1/devices/+/events")
        ));
        assert!(allowed(
            &n,
            ROOT,
            Access::Publish("rxledger/v1/devices/x/acks")
        ));
        assert!(!allowed(
            &n,
            ROOT,
            Access::Publish("rxledger/v1/devices/+/acks")
        ));
        assert!(!allowed(&n, ROOT, Access::Subscribe("#")));
    }
}
