//! The test vectors of docs/PROTOCOL.md, recomputed with the public core API.
//!
//! Every literal below is quoted verbatim in docs/PROTOCOL.md, and [`doc_quotes_every_vector`]
//! fails if the document stops quoting one of them, so the document and the code cannot drift
//! apart: change the wire format and this test tells you which lines of the spec to rewrite.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rxledger_core::checkpoint::{self, Checkpoint};
use rxledger_core::envelope::{self, Body, EnvelopeError, Receipt};
use rxledger_core::keys::{self, LogVerifier, PublicKey, SigningKey};
use rxledger_core::merkle::{self, Hash, NodeId, NodeSource};
use rxledger_core::mqttauth;
use rxledger_core::{epcis, gs1};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DEVICE_ID: &str = "acme-line-1";
const ORIGIN: &str = "example.com/rxledger";

const DEVICE_SECRET: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const DEVICE_PUBLIC: &str = "0284bf7562262bbd6940085748f3be6afa52ae317155181ece31b66351ccffa4b0";
const LOG_SECRET: &str = "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40";
const LOG_PUBLIC: &str = "02207bba70bc66309baa582a6ac120fd52d68026c51f6326f8ccedcbd2c1b7eb82";

const PAYLOAD: &str = r#"{"v":1,"deviceId":"acme-line-1","seq":1,"sentAt":"2026-01-15T09:30:00.000Z","events":[{"type":"ObjectEvent","eventTime":"2026-01-15T09:29:30.000Z","eventTimeZoneOffset":"+01:00","epcList":["urn:epc:id:sgtin:0614141.107346.1001","urn:epc:id:sgtin:0614141.107346.1002"],"action":"ADD","bizStep":"commissioning","disposition":"active","readPoint":{"id":"urn:epc:id:sgln:0614141.00000.0"},"bizLocation":{"id":"urn:epc:id:sgln:0614141.00000.0"},"ilmd":{"cbvmda:lotNumber":"L2026A","cbvmda:itemExpirationDate":"2028-12-31"}}]}"#;
const PAYLOAD_LEN: usize = 520;
const PAYLOAD_SHA256: &str = "3781f4c0d49f091561bee50a4334e4aee0ccbe1bfdc8ddbf98c5f019636e553d";
const SIG: &str = "3080a4c3f10d9a45583787bbde892a22629d8663343a0504e6acc5d571d8e36f4af88dd20371b59b412a28665753c5d6908d275ce51969d703eb989fbc43831a";
const MQTT_PAYLOAD: &str = r#"{"payload":"{\"v\":1,\"deviceId\":\"acme-line-1\",\"seq\":1,\"sentAt\":\"2026-01-15T09:30:00.000Z\",\"events\":[{\"type\":\"ObjectEvent\",\"eventTime\":\"2026-01-15T09:29:30.000Z\",\"eventTimeZoneOffset\":\"+01:00\",\"epcList\":[\"urn:epc:id:sgtin:0614141.107346.1001\",\"urn:epc:id:sgtin:0614141.107346.1002\"],\"action\":\"ADD\",\"bizStep\":\"commissioning\",\"disposition\":\"active\",\"readPoint\":{\"id\":\"urn:epc:id:sgln:0614141.00000.0\"},\"bizLocation\":{\"id\":\"urn:epc:id:sgln:0614141.00000.0\"},\"ilmd\":{\"cbvmda:lotNumber\":\"L2026A\",\"cbvmda:itemExpirationDate\":\"2028-12-31\"}}]}","sig":"3080a4c3f10d9a45583787bbde892a22629d8663343a0504e6acc5d571d8e36f4af88dd20371b59b412a28665753c5d6908d275ce51969d703eb989fbc43831a"}"#;
const MQTT_PAYLOAD_LEN: usize = 737;
const MQTT_PAYLOAD_SHA256: &str =
    "187e006b937cf79482696b239cdf87edb03a72821043f27cb412a472b0a5b849";
const LEAF_HASH: &str = "f8f621ba83b4b7d5625a26d14b1f6f4de52adfb3cd9c222892c1db77025ce8f8";
const PREHASH: &str = "eventType=ObjectEventeventTime=2026-01-15T09:29:30.000ZeventTimeZoneOffset=+01:00epcListepc=https://id.gs1.org/01/10614141073464/21/1001epc=https://id.gs1.org/01/10614141073464/21/1002action=ADDbizStep=https://ref.gs1.org/cbv/BizStep-commissioningdisposition=https://ref.gs1.org/cbv/Disp-activereadPointid=https://id.gs1.org/414/0614141000005bizLocationid=https://id.gs1.org/414/0614141000005ilmd{urn:epcglobal:cbv:mda}itemExpirationDate=2028-12-31{urn:epcglobal:cbv:mda}lotNumber=L2026A";
const EVENT_ID: &str =
    "ni:///sha-256;775694c0cef27a267534e3ac0e9a44f75495ecc2c56b382bd73cab7ec08af592?ver=CBV2.0";

// §16.4: shipping and receiving events with source and destination lists, and what release
// 1.9.3 of the reference gives for them and for the ILMD event above (§7: not what we follow).
const SHIPPING_EVENT: &str = r#"{"type":"ObjectEvent","eventTime":"2026-01-20T14:00:00.000Z","eventTimeZoneOffset":"+01:00","epcList":["urn:epc:id:sgtin:0614141.107346.1001","urn:epc:id:sgtin:0614141.107346.1002"],"action":"OBSERVE","bizStep":"shipping","disposition":"in_transit","readPoint":{"id":"urn:epc:id:sgln:0614141.00000.0"},"sourceList":[{"type":"owning_party","source":"urn:epc:id:pgln:0614141.00000"},{"type":"location","source":"urn:epc:id:sgln:0614141.00000.0"}],"destinationList":[{"type":"owning_party","destination":"urn:epc:id:pgln:4012345.00000"},{"type":"location","destination":"urn:epc:id:sgln:4012345.00001.0"}]}"#;
const SHIPPING_PREHASH: &str = "eventType=ObjectEventeventTime=2026-01-20T14:00:00.000ZeventTimeZoneOffset=+01:00epcListepc=https://id.gs1.org/01/10614141073464/21/1001epc=https://id.gs1.org/01/10614141073464/21/1002action=OBSERVEbizStep=https://ref.gs1.org/cbv/BizStep-shippingdisposition=https://ref.gs1.org/cbv/Disp-in_transitreadPointid=https://id.gs1.org/414/0614141000005sourceListtype=https://ref.gs1.org/cbv/SDT-locationsource=https://id.gs1.org/414/0614141000005type=https://ref.gs1.org/cbv/SDT-owning_partysource=https://id.gs1.org/417/0614141000005destinationListtype=https://ref.gs1.org/cbv/SDT-locationdestination=https://id.gs1.org/414/4012345000016type=https://ref.gs1.org/cbv/SDT-owning_partydestination=https://id.gs1.org/417/4012345000009";
const SHIPPING_EVENT_ID: &str =
    "ni:///sha-256;a626d758a871deae0cff4c0a8a61c654d97fa84dd6bfc0f021d189182346ac71?ver=CBV2.0";
const RECEIVING_EVENT: &str = r#"{"type":"ObjectEvent","eventTime":"2026-01-21T08:15:00.000Z","eventTimeZoneOffset":"+01:00","epcList":["urn:epc:id:sgtin:0614141.107346.1001","urn:epc:id:sgtin:0614141.107346.1002"],"action":"OBSERVE","bizStep":"receiving","disposition":"in_progress","readPoint":{"id":"urn:epc:id:sgln:4012345.00001.0"},"bizLocation":{"id":"urn:epc:id:sgln:4012345.00001.0"},"sourceList":[{"type":"owning_party","source":"urn:epc:id:pgln:0614141.00000"},{"type":"location","source":"urn:epc:id:sgln:0614141.00000.0"}],"destinationList":[{"type":"owning_party","destination":"urn:epc:id:pgln:4012345.00000"},{"type":"location","destination":"urn:epc:id:sgln:4012345.00001.0"}]}"#;
const RECEIVING_PREHASH: &str = "eventType=ObjectEventeventTime=2026-01-21T08:15:00.000ZeventTimeZoneOffset=+01:00epcListepc=https://id.gs1.org/01/10614141073464/21/1001epc=https://id.gs1.org/01/10614141073464/21/1002action=OBSERVEbizStep=https://ref.gs1.org/cbv/BizStep-receivingdisposition=https://ref.gs1.org/cbv/Disp-in_progressreadPointid=https://id.gs1.org/414/4012345000016bizLocationid=https://id.gs1.org/414/4012345000016sourceListtype=https://ref.gs1.org/cbv/SDT-locationsource=https://id.gs1.org/414/0614141000005type=https://ref.gs1.org/cbv/SDT-owning_partysource=https://id.gs1.org/417/0614141000005destinationListtype=https://ref.gs1.org/cbv/SDT-locationdestination=https://id.gs1.org/414/4012345000016type=https://ref.gs1.org/cbv/SDT-owning_partydestination=https://id.gs1.org/417/4012345000009";
const RECEIVING_EVENT_ID: &str =
    "ni:///sha-256;631a48ff60fe43c79965fa6483d68a601c957ab66855455e380358dbac3f8fcd?ver=CBV2.0";
/// Release 1.9.3's pre-hash strings and IDs of the commissioning, shipping and receiving events.
const PREHASHES_1_9_3: [&str; 3] = [
    "eventType=ObjectEventeventTime=2026-01-15T09:29:30.000ZeventTimeZoneOffset=+01:00epcListepc=https://id.gs1.org/01/10614141073464/21/1001epc=https://id.gs1.org/01/10614141073464/21/1002action=ADDbizStep=https://ref.gs1.org/cbv/BizStep-commissioningdisposition=https://ref.gs1.org/cbv/Disp-activereadPointid=https://id.gs1.org/414/0614141000005bizLocationid=https://id.gs1.org/414/0614141000005ilmdcbvmda:itemExpirationDate=2028-12-31cbvmda:lotNumber=L2026A",
    "eventType=ObjectEventeventTime=2026-01-20T14:00:00.000ZeventTimeZoneOffset=+01:00epcListepc=https://id.gs1.org/01/10614141073464/21/1001epc=https://id.gs1.org/01/10614141073464/21/1002action=OBSERVEbizStep=https://ref.gs1.org/cbv/BizStep-shippingdisposition=https://ref.gs1.org/cbv/Disp-in_transitreadPointid=https://id.gs1.org/414/0614141000005destinationListtype=https://ref.gs1.org/cbv/SDT-locationdestination=https://id.gs1.org/414/4012345000016type=https://ref.gs1.org/cbv/SDT-owning_partydestination=https://id.gs1.org/417/4012345000009sourceListtype=https://ref.gs1.org/cbv/SDT-locationsource=https://id.gs1.org/414/0614141000005type=https://ref.gs1.org/cbv/SDT-owning_partysource=https://id.gs1.org/417/0614141000005",
    "eventType=ObjectEventeventTime=2026-01-21T08:15:00.000ZeventTimeZoneOffset=+01:00epcListepc=https://id.gs1.org/01/10614141073464/21/1001epc=https://id.gs1.org/01/10614141073464/21/1002action=OBSERVEbizStep=https://ref.gs1.org/cbv/BizStep-receivingdisposition=https://ref.gs1.org/cbv/Disp-in_progressreadPointid=https://id.gs1.org/414/4012345000016bizLocationid=https://id.gs1.org/414/4012345000016destinationListtype=https://ref.gs1.org/cbv/SDT-locationdestination=https://id.gs1.org/414/4012345000016type=https://ref.gs1.org/cbv/SDT-owning_partydestination=https://id.gs1.org/417/4012345000009sourceListtype=https://ref.gs1.org/cbv/SDT-locationsource=https://id.gs1.org/414/0614141000005type=https://ref.gs1.org/cbv/SDT-owning_partysource=https://id.gs1.org/417/0614141000005",
];
const EVENT_IDS_1_9_3: [&str; 3] = [
    "ni:///sha-256;65609dc2b2ba75acaaecef6e94ce89392a11163d3154dfa7dae1172518de4e32?ver=CBV2.0",
    "ni:///sha-256;c2f87b293e53941d88bf2aace5b5073f2526b1e66b868ca83246386d809ddb8e?ver=CBV2.0",
    "ni:///sha-256;ef4540eac6db89a763759e9aa40e3db47686e1cadb84e36653e930036eecf85c?ver=CBV2.0",
];

const KEY_ID_PREIMAGE: &str = "6578616d706c652e636f6d2f72786c65646765720aff72786c65646765722f65636473612d736563703235366b312d73686132353602207bba70bc66309baa582a6ac120fd52d68026c51f6326f8ccedcbd2c1b7eb82";
const KEY_ID: &str = "d36307dd";
const VERIFIER_KEY: &str = "example.com/rxledger+d36307dd+/3J4bGVkZ2VyL2VjZHNhLXNlY3AyNTZrMS1zaGEyNTYCIHu6cLxmMJuqWCpqwSD9UtaAJsUfYyb4zO3L0sG364I=";
const ROOT_BASE64: &str = "+PYhuoO0t9ViWibRSx9vTeUq37PNnCIoksHbdwJc6Pg=";
const CHECKPOINT_BODY_SHA256: &str =
    "4c2ce12b1595657ca2acf612c873bfe956e20f978ede7e5ed3e8eeb2a5728f6a";
const CHECKPOINT_SIG: &str = "5a9538891868c888eee86188e18c2324cc0e7549781ea1062f06206579c4d56506597d8717a02cbbcd10a9e47f6a3c8396cc80f38465126d6b633cd9a3cadf27";
const CHECKPOINT_SIG_LINE_B64: &str =
    "02MH3VqVOIkYaMiI7uhhiOGMIyTMDnVJeB6hBi8GIGV5xNVlBll9hxegLLvNEKnkf2o8g5bMgPOEZRJta2M82aPK3yc=";
const CHECKPOINT_NOTE: &str = "example.com/rxledger\n1\n+PYhuoO0t9ViWibRSx9vTeUq37PNnCIoksHbdwJc6Pg=\n\n\u{2014} example.com/rxledger 02MH3VqVOIkYaMiI7uhhiOGMIyTMDnVJeB6hBi8GIGV5xNVlBll9hxegLLvNEKnkf2o8g5bMgPOEZRJta2M82aPK3yc=\n";
const RECEIPT: &str = r#"{"v":1,"status":"ACCEPTED","deviceId":"acme-line-1","seq":1,"payloadHash":"187e006b937cf79482696b239cdf87edb03a72821043f27cb412a472b0a5b849","entryIndex":0,"leafHash":"f8f621ba83b4b7d5625a26d14b1f6f4de52adfb3cd9c222892c1db77025ce8f8","eventIds":["ni:///sha-256;775694c0cef27a267534e3ac0e9a44f75495ecc2c56b382bd73cab7ec08af592?ver=CBV2.0"],"checkpoint":"example.com/rxledger\n1\n+PYhuoO0t9ViWibRSx9vTeUq37PNnCIoksHbdwJc6Pg=\n\n— example.com/rxledger 02MH3VqVOIkYaMiI7uhhiOGMIyTMDnVJeB6hBi8GIGV5xNVlBll9hxegLLvNEKnkf2o8g5bMgPOEZRJta2M82aPK3yc=\n","signature":{"batchSize":2,"batchIndex":0,"batchRoot":"c793d69fd9414733f6e7231f0ed997ff1660cceca1908ca6f51b5b681d93d11b","batchPath":["4ac7c97b35935a8ec4970c542427aac1c525cb3a6b32abc58b458f3b6f691163"],"sig":"f320e6f90e4629cdf07a24284571959e5fbfe6204f794244c89cba46888132eb564cbfc7fb81901089885d2a7c4dca1b0de25310e8716f0a6c85238ccc4fa4bc"}}"#;
const FORGED_PAYLOAD_SHA256: &str =
    "109bb95507dd6d49ca4d7f87434e69c9b22ee9103323efa59969fdd899566fd2";
const REJECTED_RECEIPT: &str = r#"{"v":1,"status":"REJECTED","deviceId":"acme-line-1","seq":1,"payloadHash":"109bb95507dd6d49ca4d7f87434e69c9b22ee9103323efa59969fdd899566fd2","code":"BAD_SIGNATURE","message":"the signature does not verify with the device's enrolled key","signature":{"batchSize":2,"batchIndex":1,"batchRoot":"c793d69fd9414733f6e7231f0ed997ff1660cceca1908ca6f51b5b681d93d11b","batchPath":["905919e52578f19010148b0877906a81231efb59d1a23a7fb3d2dd8483a6eb91"],"sig":"f320e6f90e4629cdf07a24284571959e5fbfe6204f794244c89cba46888132eb564cbfc7fb81901089885d2a7c4dca1b0de25310e8716f0a6c85238ccc4fa4bc"}}"#;

// The receipt signature (§11.1): RECEIPT and REJECTED_RECEIPT signed as one batch of two.
const ACCEPTED_TBS_SHA256: &str =
    "667fd2f46a606a9c49582ccdb0ed3cd8b749c7fbe1a7dbd0b7f8a4a336b0dcda";
const REJECTED_TBS: &str = "72786c65646765722f726563656970742f7631000000000852454a45435445440000000b61636d652d6c696e652d310100000000000000010000004031303962623935353037646436643439636134643766383734333465363963396232326565393130333332336566613539393639666464383939353636666432010000000d4241445f5349474e4154555245010000003c746865207369676e617475726520646f6573206e6f742076657269667920776974682074686520646576696365277320656e726f6c6c6564206b65790000000000000000000000";
const BATCH_LEAVES: [&str; 2] = [
    "905919e52578f19010148b0877906a81231efb59d1a23a7fb3d2dd8483a6eb91",
    "4ac7c97b35935a8ec4970c542427aac1c525cb3a6b32abc58b458f3b6f691163",
];
const BATCH_ROOT: &str = "c793d69fd9414733f6e7231f0ed997ff1660cceca1908ca6f51b5b681d93d11b";
const BATCH_MESSAGE: &str = "72786c65646765722f726563656970742d62617463682f7631000000000000000002c793d69fd9414733f6e7231f0ed997ff1660cceca1908ca6f51b5b681d93d11b";
const BATCH_SIG: &str = "f320e6f90e4629cdf07a24284571959e5fbfe6204f794244c89cba46888132eb564cbfc7fb81901089885d2a7c4dca1b0de25310e8716f0a6c85238ccc4fa4bc";

// MQTT credentials (§2.1) of the device and log keys of §16.1.
const ECDH_X: &str = "f40bb548d147b2c3cdcf635658c3fca87a3c1f85c7ac006e9b9e80d4dc70d84d";
const DEVICE_MQTT_PASSWORD: &str =
    "7c6dafe1b40f80f59563ee7689862493ff9bba63943af56ce8f2f17da8ae597b";
const NODE_MQTT_PASSWORD: &str = "38992ac4bdace22505390ead445a0d86b20da7ebc0b338c36a06dcd93645bd2d";

// The inclusion example: the vector envelope as entry 1 of a 3-entry log.
const OTHER_ENTRY_0: &[u8] = b"rxledger example entry 0";
const OTHER_ENTRY_2: &[u8] = b"rxledger example entry 2";
const PROOF_3: [&str; 2] = [
    "a350adbce5ef6d08211b6b64e2a179028b866a6c5c6f7f6dce15c048b26021b8",
    "c59691bfc160f07c740042d2a6f5e78566500a81d3a44e3ddf3fd7ae9bbc3eea",
];
const ROOT_3: &str = "bc7af5df3cb2778175ce0df8467230cef62531c9064617a444c9aa103e4c7f22";

fn device_key() -> SigningKey {
    SigningKey::from_bytes(&std::array::from_fn(|i| i as u8 + 0x01)).unwrap()
}

fn log_key() -> SigningKey {
    SigningKey::from_bytes(&std::array::from_fn(|i| i as u8 + 0x21)).unwrap()
}

fn event() -> Value {
    json!({
        "type": "ObjectEvent",
        "eventTime": "2026-01-15T09:29:30.000Z",
        "eventTimeZoneOffset": "+01:00",
        "epcList": [
            "urn:epc:id:sgtin:0614141.107346.1001",
            "urn:epc:id:sgtin:0614141.107346.1002"
        ],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        "bizLocation": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        "ilmd": {"cbvmda:lotNumber": "L2026A", "cbvmda:itemExpirationDate": "2028-12-31"}
    })
}

fn body() -> Body {
    Body {
        v: 1,
        device_id: DEVICE_ID.into(),
        seq: 1,
        sent_at: "2026-01-15T09:30:00.000Z".into(),
        events: vec![event()],
    }
}

fn checkpoint_1() -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.into(),
        size: 1,
        root: merkle::leaf_hash(MQTT_PAYLOAD.as_bytes()),
    }
}

#[test]
fn keys() {
    let dev = device_key();
    assert_eq!(dev.to_secret_hex(), DEVICE_SECRET);
    assert_eq!(dev.public_hex(), DEVICE_PUBLIC);
    assert_eq!(
        PublicKey::from_sec1_hex(DEVICE_PUBLIC),
        Ok(dev.public_key())
    );
    let log = log_key();
    assert_eq!(log.to_secret_hex(), LOG_SECRET);
    assert_eq!(log.public_hex(), LOG_PUBLIC);
}

#[test]
fn envelope() {
    let dev = device_key();
    let payload = serde_json::to_string(&body()).unwrap();
    assert_eq!(payload, PAYLOAD);
    assert_eq!(PAYLOAD.len(), PAYLOAD_LEN);
    assert_eq!(hex::encode(Sha256::digest(PAYLOAD)), PAYLOAD_SHA256);
    let sig = dev.sign(PAYLOAD.as_bytes());
    assert_eq!(hex::encode(sig), SIG);
    // RFC 6979: signing again gives the same bytes.
    assert_eq!(dev.sign(PAYLOAD.as_bytes()), sig);

    let sealed = envelope::seal(&dev, &body());
    assert_eq!(sealed, MQTT_PAYLOAD.as_bytes());
    assert_eq!(envelope::seal_payload(&dev, PAYLOAD.into()), sealed);
    assert_eq!(MQTT_PAYLOAD.len(), MQTT_PAYLOAD_LEN);
    assert_eq!(envelope::payload_hash(&sealed), MQTT_PAYLOAD_SHA256);
    assert_eq!(hex::encode(merkle::leaf_hash(&sealed)), LEAF_HASH);

    let opened = envelope::open(&sealed, DEVICE_ID).unwrap();
    assert_eq!(
        opened.signed, PAYLOAD,
        "the signed bytes are the unescaped string"
    );
    assert_eq!(opened.body, body());
    assert_eq!(hex::encode(opened.sig), SIG);
    opened.verify(&dev.public_key()).unwrap();
    assert_eq!(
        envelope::open(&sealed, "acme-line-2").unwrap_err(),
        EnvelopeError::DeviceMismatch {
            topic: "acme-line-2".into(),
            body: DEVICE_ID.into()
        }
    );
    assert_eq!(
        envelope::device_of_topic(
            envelope::DEFAULT_TOPIC_ROOT,
            "rxledger/v1/devices/acme-line-1/events"
        ),
        Some(DEVICE_ID)
    );
    assert_eq!(
        envelope::shared_events_filter(envelope::DEFAULT_TOPIC_ROOT),
        "$share/rxledger/rxledger/v1/devices/+/events"
    );
    assert_eq!(
        envelope::acks_topic(envelope::DEFAULT_TOPIC_ROOT, DEVICE_ID),
        "rxledger/v1/devices/acme-line-1/acks"
    );
}

/// The signature covers the unescaped string, not the wire spelling: another JSON escaping
/// of the same string verifies too (but is a different entry, with another leaf hash).
#[test]
fn signature_is_over_unescaped_payload() {
    let dev = device_key();
    let respelled = MQTT_PAYLOAD.replacen("acme-line-1", "acme\\u002dline-1", 1);
    assert_ne!(respelled, MQTT_PAYLOAD);
    let opened = envelope::open(respelled.as_bytes(), DEVICE_ID).unwrap();
    assert_eq!(opened.signed, PAYLOAD);
    opened.verify(&dev.public_key()).unwrap();
    let upper = MQTT_PAYLOAD.replace(SIG, &SIG.to_uppercase());
    assert_eq!(
        envelope::open(upper.as_bytes(), DEVICE_ID).unwrap_err(),
        EnvelopeError::SignatureEncoding
    );
}

#[test]
fn event_hash_id() {
    let e = event();
    let parsed = epcis::parse_event(&e).unwrap();
    assert_eq!(parsed.epcs.len(), 2);
    assert_eq!(epcis::event_prehash(&e).unwrap(), PREHASH);
    assert_eq!(epcis::event_hash_id(&e).unwrap(), EVENT_ID);
    assert_eq!(
        EVENT_ID,
        format!(
            "ni:///sha-256;{}?ver=CBV2.0",
            hex::encode(Sha256::digest(PREHASH))
        )
    );
}

/// §16.4: the shipping and receiving events pass the ingest checks of §6 and hash to the
/// reference revision's values (§7).
#[test]
fn event_hash_id_with_source_and_destination() {
    for (text, prehash, id) in [
        (SHIPPING_EVENT, SHIPPING_PREHASH, SHIPPING_EVENT_ID),
        (RECEIVING_EVENT, RECEIVING_PREHASH, RECEIVING_EVENT_ID),
    ] {
        let e: Value = serde_json::from_str(text).unwrap();
        let parsed = epcis::parse_event(&e).unwrap();
        assert_eq!(parsed.epcs.len(), 2);
        assert_eq!(epcis::event_prehash(&e).unwrap(), prehash);
        assert_eq!(epcis::event_hash_id(&e).unwrap(), id);
        assert_eq!(epcis::hash_id_of_prehash(prehash), id);
    }
}

/// The §16.4 events are the ones the reference was run on: the vendored documents hold the same
/// events, and its output (pinned revision and release 1.9.3) is the one the document quotes.
#[test]
fn event_hash_vectors_match_the_reference_output() {
    let events = [
        event(),
        json_value(SHIPPING_EVENT),
        json_value(RECEIVING_EVENT),
    ];
    let docs = [
        "rxledgerCommissioning",
        "rxledgerShipping",
        "rxledgerReceiving",
    ];
    let ids = [EVENT_ID, SHIPPING_EVENT_ID, RECEIVING_EVENT_ID];
    for (i, stem) in docs.into_iter().enumerate() {
        let doc = json_value(&testdata(&format!("{stem}.jsonld")));
        assert_eq!(
            doc["epcisBody"]["eventList"],
            json!([events[i].clone()]),
            "{stem}"
        );
        assert_eq!(testdata(&format!("{stem}.hashes")).trim_end(), ids[i]);
        let old_prehash = testdata(&format!("{stem}.v1.9.3.prehashes"));
        assert_eq!(old_prehash.trim_end(), PREHASHES_1_9_3[i], "{stem}");
        let old_id = testdata(&format!("{stem}.v1.9.3.hashes"));
        assert_eq!(old_id.trim_end(), EVENT_IDS_1_9_3[i], "{stem}");
        // Release 1.9.3 disagrees with us on every one of them.
        assert_eq!(
            epcis::hash_id_of_prehash(PREHASHES_1_9_3[i]),
            EVENT_IDS_1_9_3[i]
        );
        assert_ne!(EVENT_IDS_1_9_3[i], ids[i], "{stem}");
    }
}

fn json_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// A file of `tests/testdata/epcis/`.
fn testdata(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/epcis")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn checkpoint_and_verifier_key() {
    let log = log_key();
    let v = LogVerifier::new(ORIGIN, log.public_key()).unwrap();
    let mut pre = format!("{ORIGIN}\n").into_bytes();
    pre.extend_from_slice(keys::SIGNATURE_TYPE);
    pre.extend_from_slice(&log.public_sec1_compressed());
    assert_eq!(hex::encode(&pre), KEY_ID_PREIMAGE);
    assert_eq!(hex::encode(&Sha256::digest(&pre)[..4]), KEY_ID);
    assert_eq!(format!("{:08x}", v.key_id()), KEY_ID);
    assert_eq!(v.to_vkey(), VERIFIER_KEY);
    assert_eq!(LogVerifier::from_vkey(VERIFIER_KEY), Ok(v.clone()));

    let cp = checkpoint_1();
    let body = cp.body();
    assert_eq!(body, format!("{ORIGIN}\n1\n{ROOT_BASE64}\n"));
    assert_eq!(hex::encode(Sha256::digest(&body)), CHECKPOINT_BODY_SHA256);
    assert_eq!(hex::encode(log.sign(body.as_bytes())), CHECKPOINT_SIG);
    let mut line = hex::decode(KEY_ID).unwrap();
    line.extend_from_slice(&hex::decode(CHECKPOINT_SIG).unwrap());
    assert_eq!(B64.encode(&line), CHECKPOINT_SIG_LINE_B64);

    let note = checkpoint::sign_checkpoint(&cp, &log).unwrap();
    assert_eq!(note, CHECKPOINT_NOTE);
    assert_eq!(checkpoint::open_checkpoint(CHECKPOINT_NOTE, &v), Ok(cp));
}

#[test]
fn receipts() {
    let accepted = Receipt {
        v: envelope::VERSION,
        status: envelope::ReceiptStatus::Accepted,
        device_id: DEVICE_ID.into(),
        seq: Some(1),
        payload_hash: MQTT_PAYLOAD_SHA256.into(),
        code: None,
        message: None,
        entry_index: Some(0),
        leaf_hash: Some(LEAF_HASH.into()),
        event_ids: vec![EVENT_ID.into()],
        checkpoint: Some(checkpoint::sign_checkpoint(&checkpoint_1(), &log_key()).unwrap()),
        inclusion_proof: vec![],
        signature: None,
    };
    let rejected = rejected_receipt();
    assert_eq!(
        hex::encode(Sha256::digest(envelope::receipt_tbs(&accepted))),
        ACCEPTED_TBS_SHA256
    );
    assert_eq!(hex::encode(envelope::receipt_tbs(&rejected)), REJECTED_TBS);
    let leaves = [&accepted, &rejected].map(|r| merkle::leaf_hash(&envelope::receipt_tbs(r)));
    assert_eq!(leaves.map(hex::encode), BATCH_LEAVES);
    let root = merkle::node_hash(&leaves[0], &leaves[1]);
    assert_eq!(hex::encode(root), BATCH_ROOT);
    let message = envelope::receipt_batch_message(2, &root);
    assert_eq!(hex::encode(&message), BATCH_MESSAGE);
    assert_eq!(hex::encode(log_key().sign(&message)), BATCH_SIG);
    let mut batch = [accepted, rejected];
    envelope::sign_receipts(&mut batch, &log_key());
    let [accepted, rejected] = batch;
    assert_eq!(serde_json::to_string(&accepted).unwrap(), RECEIPT);
    assert_eq!(serde_json::to_string(&rejected).unwrap(), REJECTED_RECEIPT);
    let parsed: Receipt = serde_json::from_str(RECEIPT).unwrap();
    assert_eq!(parsed, accepted);

    // What a device checks on receipt of RECEIPT, with the pinned verifier key.
    let v = LogVerifier::from_vkey(VERIFIER_KEY).unwrap();
    let cp = checkpoint::open_checkpoint(parsed.checkpoint.as_deref().unwrap(), &v).unwrap();
    let index = parsed.entry_index.unwrap();
    assert!(index < cp.size);
    let leaf = merkle::leaf_hash(MQTT_PAYLOAD.as_bytes());
    assert_eq!(
        parsed.leaf_hash.as_deref(),
        Some(hex::encode(leaf).as_str())
    );
    assert_eq!(
        parsed.payload_hash,
        envelope::payload_hash(MQTT_PAYLOAD.as_bytes())
    );
    merkle::verify_inclusion(&leaf, index, cp.size, &[], &cp.root).unwrap();
    // All of the above and the log's signature, as one call.
    envelope::check_receipt(&parsed, MQTT_PAYLOAD.as_bytes(), &v).unwrap();
    let rejected: Receipt = serde_json::from_str(REJECTED_RECEIPT).unwrap();
    envelope::verify_receipt_signature(&rejected, v.public_key()).unwrap();
    let mut edited = rejected.clone();
    edited.status = envelope::ReceiptStatus::Accepted;
    assert!(envelope::verify_receipt_signature(&edited, v.public_key()).is_err());
}

#[test]
fn mqtt_credentials() {
    let (dev, log) = (device_key(), log_key());
    assert_eq!(hex::encode(dev.shared_secret(&log.public_key())), ECDH_X);
    assert_eq!(hex::encode(log.shared_secret(&dev.public_key())), ECDH_X);
    let mut pre = b"rxledger/mqtt-device-password/v1\0acme-line-1\0".to_vec();
    pre.extend_from_slice(&hex::decode(ECDH_X).unwrap());
    assert_eq!(hex::encode(Sha256::digest(&pre)), DEVICE_MQTT_PASSWORD);
    assert_eq!(
        mqttauth::device_password(&dev, &log.public_key(), DEVICE_ID),
        DEVICE_MQTT_PASSWORD
    );
    assert_eq!(
        mqttauth::device_password_for(&log, &dev.public_key(), DEVICE_ID),
        DEVICE_MQTT_PASSWORD
    );
    let mut pre = b"rxledger/mqtt-node-password/v1\0".to_vec();
    pre.extend_from_slice(&hex::decode(LOG_SECRET).unwrap());
    assert_eq!(hex::encode(Sha256::digest(&pre)), NODE_MQTT_PASSWORD);
    assert_eq!(mqttauth::node_password(&log), NODE_MQTT_PASSWORD);
}

/// The forged envelope's `REJECTED` receipt, unsigned.
fn rejected_receipt() -> Receipt {
    let forged = envelope::seal(&log_key(), &body());
    let err = envelope::open(&forged, DEVICE_ID)
        .unwrap()
        .verify(&device_key().public_key())
        .unwrap_err();
    Receipt {
        v: envelope::VERSION,
        status: envelope::ReceiptStatus::Rejected,
        device_id: DEVICE_ID.into(),
        seq: Some(1),
        payload_hash: FORGED_PAYLOAD_SHA256.into(),
        code: Some("BAD_SIGNATURE".into()),
        message: Some(err.to_string()),
        entry_index: None,
        leaf_hash: None,
        event_ids: vec![],
        checkpoint: None,
        inclusion_proof: vec![],
        signature: None,
    }
}

#[test]
fn forged_envelope_is_rejected() {
    // The same body signed by a key that is not the device's: BAD_SIGNATURE.
    let forged = envelope::seal(&log_key(), &body());
    assert_eq!(envelope::payload_hash(&forged), FORGED_PAYLOAD_SHA256);
    let err = envelope::open(&forged, DEVICE_ID)
        .unwrap()
        .verify(&device_key().public_key())
        .unwrap_err();
    assert_eq!(err, EnvelopeError::BadSignature);
    assert_eq!(
        rejected_receipt().message.as_deref(),
        Some(err.to_string().as_str())
    );
}

/// Leaf hashes of a small log, for the inclusion example.
struct Leaves(Vec<Hash>);

impl NodeSource for Leaves {
    fn node(&self, id: NodeId) -> Option<Hash> {
        if id.level == 0 {
            return self.0.get(usize::try_from(id.index).ok()?).copied();
        }
        let left = self.node(NodeId {
            level: id.level - 1,
            index: id.index * 2,
        })?;
        let right = self.node(NodeId {
            level: id.level - 1,
            index: id.index * 2 + 1,
        })?;
        Some(merkle::node_hash(&left, &right))
    }
}

#[test]
fn inclusion_example() {
    let leaves = Leaves(vec![
        merkle::leaf_hash(OTHER_ENTRY_0),
        merkle::leaf_hash(MQTT_PAYLOAD.as_bytes()),
        merkle::leaf_hash(OTHER_ENTRY_2),
    ]);
    let root = merkle::root(3, &leaves).unwrap();
    let proof = merkle::inclusion_proof(1, 3, &leaves).unwrap();
    let hexes: Vec<String> = proof.iter().map(hex::encode).collect();
    assert_eq!(hexes, PROOF_3);
    assert_eq!(hex::encode(root), ROOT_3);
    let leaf = merkle::leaf_hash(MQTT_PAYLOAD.as_bytes());
    merkle::verify_inclusion(&leaf, 1, 3, &proof, &root).unwrap();
    // By hand, as the document spells it out.
    let by_hand = merkle::node_hash(&merkle::node_hash(&proof[0], &leaf), &proof[1]);
    assert_eq!(by_hand, root);
}

#[test]
fn secp256k1_order() {
    use k256::elliptic_curve::Curve as _;
    assert_eq!(
        format!("{:X}", k256::Secp256k1::ORDER),
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
    );
}

/// The identifier table of §6.3: each URN and Digital Link pair names the same identifier.
const IDENTIFIER_FORMS: [(&str, &str); 5] = [
    (
        "urn:epc:id:sgtin:0614141.107346.1001",
        "https://id.gs1.org/01/10614141073464/21/1001",
    ),
    (
        "urn:epc:id:sscc:0614141.1234567890",
        "https://id.gs1.org/00/106141412345678908",
    ),
    (
        "urn:epc:id:sgln:0614141.00000.0",
        "https://id.gs1.org/414/0614141000005",
    ),
    (
        "urn:epc:class:lgtin:0614141.107346.L2026A",
        "https://id.gs1.org/01/10614141073464/10/L2026A",
    ),
    (
        "urn:epc:idpat:sgtin:0614141.107346.*",
        "https://id.gs1.org/01/10614141073464",
    ),
];

#[test]
fn identifier_forms() {
    for (urn, dl) in IDENTIFIER_FORMS {
        assert_eq!(gs1::parse_epc(urn), gs1::parse_epc(dl), "{urn} vs {dl}");
        assert!(gs1::parse_epc(urn).is_ok(), "{urn}");
    }
    // A wrong Digital Link check digit is refused (INVALID_IDENTIFIER on the wire).
    let mut e = event();
    e["epcList"][0] = json!("https://id.gs1.org/01/10614141073465/21/1001");
    assert_eq!(
        epcis::parse_event(&e).unwrap_err().code(),
        "INVALID_IDENTIFIER"
    );
    // Every vocabulary form of §6.2 is the same term.
    for form in [
        "in_transit",
        "urn:epcglobal:cbv:disp:in_transit",
        "https://ref.gs1.org/cbv/Disp-in_transit",
        "https://gs1.org/voc/Disp-in_transit",
        "cbv:Disp-in_transit",
    ] {
        assert_eq!(
            epcis::Disposition::parse(form),
            Some(epcis::Disposition::InTransit),
            "{form}"
        );
    }
    for form in [
        "shipping",
        "urn:epcglobal:cbv:bizstep:shipping",
        "https://ref.gs1.org/cbv/BizStep-shipping",
        "https://gs1.org/voc/BizStep-shipping",
        "cbv:BizStep-shipping",
    ] {
        assert_eq!(
            epcis::BizStep::parse(form),
            Some(epcis::BizStep::Shipping),
            "{form}"
        );
    }
    assert_eq!(epcis::BizStep::parse("recall"), None);
}

/// Every code the server can put in a receipt (pipeline.rs, `EpcisError::code`,
/// `pack::RuleViolation` codes of `check_ingest`).
const CODES: [&str; 22] = [
    "OVERSIZED",
    "BAD_TOPIC",
    "MALFORMED_ENVELOPE",
    "TOO_MANY_EVENTS",
    "DEVICE_MISMATCH",
    "UNKNOWN_DEVICE",
    "DEVICE_REVOKED",
    "BAD_SIGNATURE",
    "CLOCK_SKEW",
    "MALFORMED_EVENT",
    "INVALID_IDENTIFIER",
    "UNKNOWN_BIZSTEP",
    "UNKNOWN_DISPOSITION",
    "BAD_EVENT_TIME",
    "UNSUPPORTED_EVENT",
    "REPLAY",
    "DUPLICATE_EVENT",
    "INTERNAL",
    "UNKNOWN_PRODUCT",
    "NOT_BRAND_OWNER",
    "SERIAL_ALREADY_COMMISSIONED",
    "API_ONLY_TRANSACTION",
];

#[test]
fn doc_lists_every_rejection_code() {
    let doc = doc();
    for code in CODES {
        assert!(
            doc.contains(&format!("| `{code}` |")),
            "docs/PROTOCOL.md has no row for {code}"
        );
    }
}

fn doc() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/PROTOCOL.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn doc_quotes_every_vector() {
    let doc = doc();
    let lens = [
        format!("{PAYLOAD_LEN} bytes"),
        format!("{MQTT_PAYLOAD_LEN} bytes"),
    ];
    let quoted: Vec<&str> = [
        DEVICE_SECRET,
        DEVICE_PUBLIC,
        LOG_SECRET,
        LOG_PUBLIC,
        PAYLOAD,
        PAYLOAD_SHA256,
        SIG,
        MQTT_PAYLOAD,
        MQTT_PAYLOAD_SHA256,
        LEAF_HASH,
        PREHASH,
        EVENT_ID,
        SHIPPING_EVENT,
        SHIPPING_PREHASH,
        SHIPPING_EVENT_ID,
        RECEIVING_EVENT,
        RECEIVING_PREHASH,
        RECEIVING_EVENT_ID,
        PREHASHES_1_9_3[0],
        PREHASHES_1_9_3[1],
        PREHASHES_1_9_3[2],
        EVENT_IDS_1_9_3[0],
        EVENT_IDS_1_9_3[1],
        EVENT_IDS_1_9_3[2],
        KEY_ID_PREIMAGE,
        KEY_ID,
        VERIFIER_KEY,
        ROOT_BASE64,
        CHECKPOINT_BODY_SHA256,
        CHECKPOINT_SIG,
        CHECKPOINT_SIG_LINE_B64,
        CHECKPOINT_NOTE,
        RECEIPT,
        FORGED_PAYLOAD_SHA256,
        REJECTED_RECEIPT,
        ACCEPTED_TBS_SHA256,
        REJECTED_TBS,
        BATCH_LEAVES[0],
        BATCH_LEAVES[1],
        BATCH_ROOT,
        BATCH_MESSAGE,
        BATCH_SIG,
        ECDH_X,
        DEVICE_MQTT_PASSWORD,
        NODE_MQTT_PASSWORD,
        PROOF_3[0],
        PROOF_3[1],
        ROOT_3,
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
    ]
    .into_iter()
    .chain(IDENTIFIER_FORMS.iter().flat_map(|(u, d)| [*u, *d]))
    .chain(lens.iter().map(String::as_str))
    .collect();
    let missing: Vec<&str> = quoted.into_iter().filter(|v| !doc.contains(v)).collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md does not quote: {missing:#?}"
    );
}
