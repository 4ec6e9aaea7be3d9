//! The log read through its c2sp.org/tlog-tiles API by a client written here from the specs
//! (tlog-tiles, tlog-checkpoint, signed-note, RFC 9162), with its own parsing and hashing:
//! nothing from `rxledger_core::merkle`, `tiles` or `checkpoint`. Only the ECDSA primitive is
//! borrowed (`PublicKey::verify`), because what is tested is the framing around it.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RFC 9162 §2.1.1: MTH of a list of leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            sha256(&[&[1], &mth(&leaves[..k]), &mth(&leaves[k..])])
        }
    }
}

/// RFC 9162 §2.1.3.1: the audit path of leaf `m`.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = n.next_power_of_two() / 2;
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.3.2: the root an audit path leads to.
fn root_from_path(index: u64, size: u64, leaf: Hash, proof: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, leaf);
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = sha256(&[&[1], p, &r]);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = sha256(&[&[1], &r, p]);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// tlog-tiles: `<N>` as zero-padded 3-digit groups, all but the last prefixed with `x`.
fn tile_index(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn tile_path(kind: &str, n: u64, width: u64) -> String {
    let mut p = format!("/tile/{kind}/{}", tile_index(n));
    if width < 256 {
        p.push_str(&format!(".p/{width}"));
    }
    p
}

/// A GET with its response headers (lower-cased names).
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> &'h str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// A checkpoint note read per signed-note and tlog-checkpoint: (origin, size, root), after
/// checking the log's signature line (key name, key ID, ECDSA over the note text).
fn open_note(note: &str, public_key: &rxledger_core::keys::PublicKey) -> (String, u64, Hash) {
    let (text, sigs) = note
        .split_once("\n\n")
        .expect("text, blank line, signatures");
    let text = format!("{text}\n");
    let mut lines = text.lines();
    let origin = lines.next().unwrap().to_string();
    let size: u64 = lines.next().unwrap().parse().unwrap();
    let root: Hash = B64
        .decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    // rxledger's signature type: 0xff and its name (docs/PROTOCOL.md, core::checkpoint).
    let alg = b"\xffrxledger/ecdsa-secp256k1-sha256";
    let pk = public_key.to_sec1_compressed();
    let key_id = &sha256(&[origin.as_bytes(), b"\n", alg, &pk])[..4];
    let signed = sigs.lines().any(|line| {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return false;
        };
        let (name, b64) = rest.split_once(' ').unwrap();
        let sig = B64.decode(b64).unwrap();
        name == origin
            && &sig[..4] == key_id
            && public_key.verify(text.as_bytes(), &sig[4..]).is_ok()
    });
    assert!(signed, "no valid signature by the log in {note}");
    (origin, size, root)
}

/// 300 entries through MQTT: a full level-0 tile, a partial one of width 44, and a partial
/// level-1 tile of width 1.
async fn fill_log(app: &TestApp) {
    let mut line = app.acme_with_packs(&["0"]).await;
    let mut hashes = Vec::new();
    for i in 1..300 {
        let serial = i.to_string();
        let payload = line.envelope(vec![commission(&[serial.as_str()], "L1", "2031-06-30")]);
        hashes.push(rxledger_core::envelope::payload_hash(&payload));
        line.publish(payload).await;
    }
    // Receipts come in batch order, not publish order: take them as they come.
    let mut waiting: std::collections::HashSet<String> = hashes.into_iter().collect();
    while !waiting.is_empty() {
        let r = line.next_receipt().await;
        if waiting.remove(&r.payload_hash) {
            assert_eq!(r.status.as_str(), "ACCEPTED", "{r:?}");
        }
    }
}

/// Every leaf hash of the tree of `size`, from its level-0 tiles.
async fn read_leaves(addr: std::net::SocketAddr, size: u64) -> Vec<Hash> {
    let mut leaves: Vec<Hash> = Vec::new();
    for n in 0..size.div_ceil(256) {
        let width = (size - n * 256).min(256);
        let (status, headers, body) = get(addr, &tile_path("0", n, width), None).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "content-type"), "application/octet-stream");
        assert!(header(&headers, "cache-control").contains("immutable"));
        assert_eq!(body.len() as u64, 32 * width);
        leaves.extend(body.chunks(32).map(|c| <Hash>::try_from(c).unwrap()));
    }
    leaves
}

/// An inclusion proof built from the tiles verifies against the signed root, and is the one
/// the server itself gives.
async fn check_proofs(app: &TestApp, leaves: &[Hash], root: Hash) {
    let size = leaves.len() as u64;
    for index in [0usize, 255, 256, 299] {
        let proof = path(index, leaves);
        assert_eq!(
            root_from_path(index as u64, size, leaves[index], &proof),
            Some(root)
        );
        let r = app
            .graphql(
                "query($i: Int!, $n: Int) { inclusionProof(index: $i, treeSize: $n) { hashes } }",
                json!({ "i": index, "n": size }),
            )
            .await;
        let served: Vec<String> =
            serde_json::from_value(r["data"]["inclusionProof"]["hashes"].clone()).unwrap();
        assert_eq!(served, proof.iter().map(hex::encode).collect::<Vec<_>>());
    }
}

/// Entry bundles: only for keys that may read every entry; each entry hashes to its leaf.
async fn check_bundle(app: &TestApp, leaves: &[Hash]) {
    let bundle = tile_path("entries", 1, 44);
    assert_eq!(get(app.http, &bundle, None).await.0, 401);
    let (maker, _) = app
        .app()
        .api_keys
        .issue("acme", "MANUFACTURER", "mirror", None)
        .await
        .unwrap();
    assert_eq!(get(app.http, &bundle, Some(&maker)).await.0, 403);
    let regulator = app.regulator_key().await;
    let (status, headers, body) = get(app.http, &bundle, Some(&regulator)).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "cache-control").starts_with("private"));
    let mut rest = &body[..];
    let mut bundled = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        bundled.push(sha256(&[&[0], &rest[2..2 + len]]));
        rest = &rest[2 + len..];
    }
    assert_eq!(bundled, leaves[256..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_the_spec_reads_the_log_through_its_tiles() {
    // Exactly 300 entries: without the map-root entries a batch would add.
    let app = spawn_app_with(Backends::Embedded, |c| c.map = false).await;
    fill_log(&app).await;
    let addr = app.http;

    let (status, headers, body) = get(addr, "/checkpoint", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert!(header(&headers, "cache-control").contains("max-age=2"));
    let note = String::from_utf8(body).unwrap();
    let (origin, size, root) = open_note(&note, app.log().public_key());
    assert_eq!((origin.as_str(), size), ("test.rxledger.local/log", 300));

    let leaves = read_leaves(addr, size).await;
    assert_eq!(mth(&leaves), root, "the tiles give the checkpoint's root");
    // Level 1: width floor(300 / 256) = 1, the root of the first full level-0 tile.
    let (status, _, level1) = get(addr, &tile_path("1", 0, 1), None).await;
    assert_eq!(status, 200);
    assert_eq!(level1, mth(&leaves[..256]).to_vec());
    check_proofs(&app, &leaves, root).await;
    check_bundle(&app, &leaves).await;

    // What the tree of the checkpoint does not hold, and paths in no canonical spelling.
    for (path, status) in [
        (tile_path("0", 1, 45), 404),
        (tile_path("0", 2, 256), 404),
        (tile_path("2", 0, 1), 404),
        ("/tile/0/1".to_string(), 400),
        ("/tile/0/x000/001".to_string(), 400),
        ("/tile/64/000".to_string(), 400),
    ] {
        assert_eq!(get(addr, &path, None).await.0, status, "{path}");
    }
    app.stop().await;
}
