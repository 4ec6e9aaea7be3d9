//! `rxledger audit --url https://node`: an audit through the node's public API, for someone
//! who has no access to its database: a trading partner, a regulator, a witness operator.
//!
//! It reads the log the standard way (c2sp.org/tlog-tiles): the signed checkpoint, then every
//! level-0 hash tile, and recomputes the tree from those leaf hashes. From them it checks:
//!
//! - the checkpoint's signature (with `--verifier-key`, or else the key the node itself
//!   publishes, which the report says is trust on first use);
//! - the root: every leaf hash, folded into the RFC 9162 root, must give the checkpoint's;
//! - the higher tiles: each hash of every tile above level 0 must be the root of the 256^L
//!   leaves under it, as proofs served to clients rely on them;
//! - growth: a checkpoint saved earlier (`--checkpoint`) must be the root of the first leaves
//!   of today's tree (a prefix check, stronger than a consistency proof: every leaf is seen);
//! - witnesses: with `--witness-key`, the node's newest cosigned checkpoint must carry the
//!   quorum and be a prefix of the tree as well;
//! - the entries: with a regulator or admin key, every entry bundle is read and each entry's
//!   leaf hash compared with its tile. Other callers may not read entries (docs/SECURITY.md),
//!   and the report says so.
//!
//! What the API never exposes (the derived index tables a verdict reads, the checkpoints the
//! log signed before today's) is listed as not checked: `rxledger audit` on the node's
//! database covers them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rxledger_core::checkpoint::{Checkpoint, open_checkpoint};
use rxledger_core::cosignature::{Quorum, open_cosigned};
use rxledger_core::keys::LogVerifier;
use rxledger_core::merkle::{CompactRange, Hash, leaf_hash, node_hash};
use rxledger_core::tiles::{TILE_WIDTH, TileId, TilePath, width_in};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest response read: an entry bundle of 256 entries of at most 64 KiB each.
const MAX_RESPONSE: usize = 17 << 20;
/// Times one request is retried after 429 (the tiles route is rate limited like any other).
const RETRIES: u32 = 20;
/// Longest wait for a connection or an answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What to audit, and with what.
pub struct RemoteAudit {
    /// `http://host[:port]` or `https://host[:port]`, optionally with a path prefix.
    pub url: String,
    pub api_key: Option<String>,
    /// The log's verifier key; without it the node's own `ledgerPublicKey` is used.
    pub verifier_key: Option<String>,
    /// A checkpoint saved earlier, which today's tree must extend.
    pub checkpoint: Option<PathBuf>,
    /// The witnesses whose quorum the node's cosigned checkpoint must carry.
    pub quorum: Option<Quorum>,
    /// PEM authorities to trust for HTTPS instead of the platform's.
    pub ca: Option<PathBuf>,
}

/// What the audit found, and what it could not check.
#[derive(Debug, Default)]
pub struct Report {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub tiles_fetched: u64,
    pub leaves_checked: u64,
    pub entries_checked: u64,
    pub consistent_with: Option<u64>,
    pub cosigned: Option<(u64, Vec<String>)>,
    pub problems: Vec<String>,
    pub not_checked: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs the audit; `Err` only when it cannot start (unreachable node, unusable arguments).
/// What it finds wrong goes into [`Report::problems`].
pub async fn run(a: &RemoteAudit) -> anyhow::Result<Report> {
    let client = Client::new(&a.url, a.api_key.clone(), a.ca.as_deref())?;
    let mut r = Report::default();
    let verifier = verifier(&client, a.verifier_key.as_deref(), &mut r).await?;
    let note = client.text("/checkpoint").await?;
    let cp: Checkpoint = open_checkpoint(&note, &verifier)
        .map_err(|e| anyhow::anyhow!("the node's checkpoint does not verify: {e}"))?;
    r.origin = cp.origin.clone();
    r.size = cp.size;
    r.root = cp.root;
    let saved = match &a.checkpoint {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read checkpoint file {}", p.display()))?;
            let saved = open_checkpoint(&text, &verifier).map_err(|e| {
                anyhow::anyhow!("the saved checkpoint {} does not verify: {e}", p.display())
            })?;
            Some(saved)
        }
        None => None,
    };
    let cosigned = match &a.quorum {
        Some(q) => cosigned(&client, &verifier, q, &mut r).await?,
        None => {
            r.not_checked.push(
                "witness cosignatures: give --witness-key (and --witness-quorum) to demand them"
                    .into(),
            );
            None
        }
    };
    // Prefixes of the tree whose roots must match: the saved checkpoint, the cosigned one.
    let mut prefixes: Vec<(u64, Hash, &str)> = Vec::new();
    if let Some(s) = &saved {
        if s.size > cp.size {
            r.problems.push(format!(
                "ROLLBACK: the saved checkpoint has {} entries, the node's only {}",
                s.size, cp.size
            ));
        } else {
            prefixes.push((s.size, s.root, "the saved checkpoint"));
        }
    }
    if let Some(c) = &cosigned {
        if c.size > cp.size {
            r.problems.push(format!(
                "the cosigned checkpoint has {} entries, more than the node's {}",
                c.size, cp.size
            ));
        } else {
            prefixes.push((c.size, c.root, "the cosigned checkpoint"));
        }
    }
    let levels = walk_leaves(&client, &cp, &prefixes, &mut r).await?;
    compare_upper_tiles(&client, cp.size, &levels, &mut r).await?;
    if saved.is_some() && !r.problems.iter().any(|p| p.contains("saved checkpoint")) {
        r.consistent_with = saved.as_ref().map(|s| s.size);
    }
    r.not_checked.push(
        "the derived index (epcs, commissions, events) and the checkpoints signed before this \
         one: the API does not serve them; run `rxledger audit` on the node's database"
            .into(),
    );
    Ok(r)
}

/// The log's verifier: the one given, or the node's own (trust on first use, said so).
async fn verifier(
    client: &Client,
    given: Option<&str>,
    r: &mut Report,
) -> anyhow::Result<LogVerifier> {
    if let Some(v) = given {
        return LogVerifier::from_vkey(v).map_err(|e| anyhow::anyhow!("bad --verifier-key: {e}"));
    }
    let answer = client
        .graphql("{ ledgerPublicKey { verifierKey } }")
        .await?;
    let vkey = answer["data"]["ledgerPublicKey"]["verifierKey"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the node published no verifier key: {answer}"))?;
    r.not_checked.push(format!(
        "the log's identity: its verifier key was taken from the node itself ({vkey}); pin it \
         with --verifier-key to detect a node that swapped its key"
    ));
    LogVerifier::from_vkey(vkey).map_err(|e| anyhow::anyhow!("the node's verifier key: {e}"))
}

/// The node's newest cosigned checkpoint, checked against the quorum.
async fn cosigned(
    client: &Client,
    verifier: &LogVerifier,
    quorum: &Quorum,
    r: &mut Report,
) -> anyhow::Result<Option<Checkpoint>> {
    let answer = client
        .graphql("{ checkpoint { cosigned { note } } }")
        .await?;
    let Some(note) = answer["data"]["checkpoint"]["cosigned"]["note"].as_str() else {
        r.problems.push(format!(
            "NOT WITNESSED: the node has no checkpoint cosigned by {} of the given witnesses",
            quorum.need
        ));
        return Ok(None);
    };
    match open_cosigned(note, verifier, quorum) {
        Ok((cp, names)) => {
            r.cosigned = Some((cp.size, names));
            Ok(Some(cp))
        }
        Err(e) => {
            r.problems.push(format!(
                "the node's cosigned checkpoint does not verify: {e}"
            ));
            Ok(None)
        }
    }
}

/// Reads every level-0 tile (and, when the caller may, every entry bundle), folds the leaves
/// into the root and checks the prefixes. Returns the hashes of the full subtrees at tile
/// levels 1, 2, …: what the higher tiles must hold.
async fn walk_leaves(
    client: &Client,
    cp: &Checkpoint,
    prefixes: &[(u64, Hash, &str)],
    r: &mut Report,
) -> anyhow::Result<Vec<Vec<Hash>>> {
    let mut range = CompactRange::new();
    let mut level1: Vec<Hash> = Vec::new();
    let mut entries_allowed = true;
    let tiles = cp.size.div_ceil(TILE_WIDTH);
    for index in 0..tiles {
        let id = TileId { level: 0, index };
        let width = width_in(id, cp.size);
        let leaves = client.tile(id, width, r).await?;
        if entries_allowed {
            entries_allowed = check_bundle(client, index, width, &leaves, r).await?;
        }
        for leaf in &leaves {
            range.push(*leaf);
            r.leaves_checked += 1;
            for (size, root, what) in prefixes {
                if range.size() == *size && range.root() != *root {
                    r.problems.push(format!(
                        "FORK: the first {size} leaves do not give the root of {what}"
                    ));
                }
            }
        }
        if leaves.len() as u64 == TILE_WIDTH {
            level1.push(subtree_root(&leaves));
        }
    }
    for (size, _, what) in prefixes {
        if *size == 0 && cp.size > 0 {
            // The empty prefix has the empty root, which every log extends.
            continue;
        }
        if *size > r.leaves_checked {
            r.problems.push(format!(
                "{what} ({size} entries) is beyond the leaves served"
            ));
        }
    }
    if range.root() != cp.root {
        r.problems.push(format!(
            "ROOT MISMATCH: the {} leaf hashes served give {}, the checkpoint says {}",
            r.leaves_checked,
            hex::encode(range.root()),
            hex::encode(cp.root)
        ));
    }
    let mut levels = vec![level1];
    while levels.last().is_some_and(|l| l.len() as u64 >= TILE_WIDTH) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let above = below
            .chunks_exact(TILE_WIDTH as usize)
            .map(subtree_root)
            .collect();
        levels.push(above);
    }
    Ok(levels)
}

/// Reads entry bundle `index` and checks each entry against its leaf hash. `Ok(false)` once
/// the node refuses bundles to this caller: the report says entries were not checked.
async fn check_bundle(
    client: &Client,
    index: u64,
    width: u64,
    leaves: &[Hash],
    r: &mut Report,
) -> anyhow::Result<bool> {
    let path = format!("/{}", TilePath::Entries { index, width }.path());
    let (status, body) = client.get(&path).await?;
    if status == 401 || status == 403 {
        let why = if client.api_key.is_some() {
            "this key's role may not read them"
        } else {
            "no --api-key was given"
        };
        r.not_checked.push(format!(
            "entry bytes: entry bundles are served to regulator and admin keys only, and {why}; \
             the leaf hashes were checked, not the entries under them"
        ));
        return Ok(false);
    }
    if status != 200 {
        bail!("GET {path}: HTTP {status}");
    }
    let mut at = 0;
    for (i, leaf) in leaves.iter().enumerate() {
        let entry = body
            .get(at..at + 2)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
            .and_then(|len| body.get(at + 2..at + 2 + len));
        let Some(entry) = entry else {
            r.problems.push(format!(
                "entry bundle {index} ends before entry {}",
                index * TILE_WIDTH + i as u64
            ));
            return Ok(true);
        };
        at += 2 + entry.len();
        if leaf_hash(entry) != *leaf {
            r.problems.push(format!(
                "ENTRY {}: its bytes do not hash to its leaf",
                index * TILE_WIDTH + i as u64
            ));
        }
        r.entries_checked += 1;
    }
    if at != body.len() {
        r.problems.push(format!(
            "entry bundle {index} holds more than {width} entries"
        ));
    }
    Ok(true)
}

/// Compares every tile above level 0 with the subtree roots recomputed from the leaves.
async fn compare_upper_tiles(
    client: &Client,
    size: u64,
    levels: &[Vec<Hash>],
    r: &mut Report,
) -> anyhow::Result<()> {
    for (l, expected) in levels.iter().enumerate() {
        let level = l as u8 + 1;
        let tiles = (expected.len() as u64).div_ceil(TILE_WIDTH);
        for index in 0..tiles {
            let id = TileId { level, index };
            let width = width_in(id, size);
            if width == 0 {
                continue;
            }
            let got = client.tile(id, width, r).await?;
            let from = (index * TILE_WIDTH) as usize;
            let want = &expected[from..(from + width as usize).min(expected.len())];
            if got.as_slice() != want {
                r.problems.push(format!(
                    "TILE {}: its hashes are not the roots of the leaves under it",
                    id.c2sp_path(width)
                ));
            }
        }
    }
    Ok(())
}

/// The root of a perfect subtree of 256 hashes.
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut row: Vec<Hash> = hashes.to_vec();
    while row.len() > 1 {
        row = row.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    row[0]
}

/// A minimal HTTP/1.1 client for one node: a connection per request (`Connection: close`),
/// plain or over rustls, with a bounded answer and patience for 429.
struct Client {
    https: bool,
    host: String,
    port: u16,
    /// The authority as sent in `Host`.
    authority: String,
    prefix: String,
    api_key: Option<String>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Client {
    fn new(
        url: &str,
        api_key: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Client> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("--url must start with http:// or https://, not {url:?}");
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .with_context(|| format!("--url: bad port in {url:?}"))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            bail!("--url names no host: {url:?}");
        }
        let tls = if https {
            let config = rxledger_keyfile::tls::ClientTls { ca, identity: None }
                .config()
                .map_err(|e| anyhow::anyhow!("HTTPS trust: {e}"))?;
            Some(tokio_rustls::TlsConnector::from(
                Arc::<rustls::ClientConfig>::clone(&config),
            ))
        } else {
            None
        };
        Ok(Client {
            https,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            api_key,
            tls,
        })
    }

    /// A hash tile's hashes, checked for the width asked.
    async fn tile(&self, id: TileId, width: u64, r: &mut Report) -> anyhow::Result<Vec<Hash>> {
        let path = format!("/{}", id.c2sp_path(width));
        let (status, body) = self.get(&path).await?;
        if status != 200 {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        r.tiles_fetched += 1;
        if body.len() as u64 != width * 32 {
            r.problems.push(format!(
                "TILE {path}: {} bytes, not the {} of {width} hashes",
                body.len(),
                width * 32
            ));
        }
        Ok(body
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    /// A text resource that must answer 200.
    async fn text(&self, path: &str) -> anyhow::Result<String> {
        let (status, body) = self.get(path).await?;
        if status != 200 {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        String::from_utf8(body).with_context(|| format!("GET {path}: not UTF-8"))
    }

    /// A GraphQL query's whole answer.
    async fn graphql(&self, query: &str) -> anyhow::Result<serde_json::Value> {
        let body = serde_json::json!({ "query": query }).to_string();
        let (status, answer) = self
            .request("POST", "/graphql", Some(body.as_bytes()))
            .await?;
        serde_json::from_slice(&answer).with_context(|| {
            format!(
                "POST /graphql: HTTP {status}, not JSON: {}",
                String::from_utf8_lossy(&answer)
            )
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        self.request("GET", path, None).await
    }

    /// One request, retried while the node answers 429 (after its `Retry-After`).
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        for _ in 0..RETRIES {
            let (status, retry_after, answer) =
                tokio::time::timeout(TIMEOUT, self.once(method, path, body))
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("{method} {path}: no answer within {TIMEOUT:?}")
                    })??;
            if status != 429 {
                return Ok((status, answer));
            }
            tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 60))).await;
        }
        bail!("{method} {path}: still rate limited after {RETRIES} tries")
    }

    async fn once(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Option<u64>, Vec<u8>)> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot reach {}:{}", self.host, self.port))?;
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\n",
            self.prefix, self.authority
        );
        if let Some(k) = &self.api_key {
            head.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        match &self.tls {
            Some(tls) if self.https => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .with_context(|| format!("{:?} is not a valid TLS server name", self.host))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS with {}", self.authority))?;
                exchange(stream, &bytes).await
            }
            _ => exchange(tcp, &bytes).await,
        }
    }
}

/// Writes a request and reads the whole response (the server closes after it).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
) -> anyhow::Result<(u16, Option<u64>, Vec<u8>)> {
    s.write_all(request).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_RESPONSE as u64 + 64 * 1024)
        .read_to_end(&mut raw)
        .await
        .or_else(|e| {
            // A TLS peer that closes without close_notify: what was read is the answer.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
    parse_response(&raw)
}

/// Status, `Retry-After` and the body (de-chunked) of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Option<u64>, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("the node's answer has no HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the node's answer has no status"))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let retry_after = header("retry-after:").and_then(|v| v.parse().ok());
    let mut body = raw[end + 4..].to_vec();
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(n) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < n {
            bail!("the node's answer ended after {} of {n} bytes", body.len());
        }
        body.truncate(n);
    }
    if body.len() > MAX_RESPONSE {
        bail!(
            "the node's answer is larger than {} MiB",
            MAX_RESPONSE >> 20
        );
    }
    Ok((status, retry_after, body))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("a chunked answer is cut short"))?;
        let size_text = String::from_utf8_lossy(&b[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow::anyhow!("bad chunk size {size_text:?}"))?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = b
            .get(..size)
            .ok_or_else(|| anyhow::anyhow!("a chunked answer is cut short"))?;
        out.extend_from_slice(chunk);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

/// Prints the report as `rxledger audit` does, with what could not be checked.
pub fn print(r: &Report) {
    println!("log:          {}", r.origin);
    println!("size:         {}", r.size);
    println!("root:         {}", hex::encode(r.root));
    println!(
        "leaves:       {} leaf hashes from {} tiles folded into the root",
        r.leaves_checked, r.tiles_fetched
    );
    println!("entries:      {} rehashed", r.entries_checked);
    if let Some((size, names)) = &r.cosigned {
        println!("cosigned:     size {size} by {}", names.join(", "));
    }
    if let Some(s) = r.consistent_with {
        println!("consistent with the saved checkpoint at size {s}");
    }
    for n in &r.not_checked {
        println!("NOT CHECKED:  {n}");
    }
    if r.ok() {
        println!("AUDIT PASSED (as far as this caller may see)");
    } else {
        for p in &r.problems {
            println!("PROBLEM: {p}");
        }
        println!("AUDIT FAILED: {} problem(s)", r.problems.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_or_chunks() {
        let (s, retry, b) = parse_response(
            b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\nokXX",
        )
        .unwrap();
        assert_eq!((s, retry, b.as_slice()), (429, Some(3), &b"ok"[..]));
        let (s, _, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    }

    #[test]
    fn urls() {
        let c = Client::new("http://127.0.0.1:8080/base/", None, None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("127.0.0.1", 8080, "/base")
        );
        let c = Client::new("http://node.example", None, None).unwrap();
        assert_eq!((c.port, c.authority.as_str()), (80, "node.example"));
        assert!(Client::new("node.example", None, None).is_err());
    }

    #[test]
    fn a_subtree_root_is_the_rfc9162_root() {
        let leaves: Vec<Hash> = (0..256u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::new();
        for l in &leaves {
            range.push(*l);
        }
        assert_eq!(subtree_root(&leaves), range.root());
    }
}
