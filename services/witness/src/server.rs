//! `rxledger witness`: the HTTP side of a C2SP tlog-witness.
//!
//! Routes: `POST /add-checkpoint` (the decision is `rxledger_core::witness::decide`; this
//! module reads and records the state around it, under one lock) and
//! `GET /<hex SHA-256 of the origin>/checkpoint` (the monitoring prefix: the latest checkpoint
//! cosigned for that log, with the log's signatures and the witness's cosignature). Anything
//! else is 404. Bodies above `MAX_REQUEST_LEN` are refused with 413 before they are read
//! whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Path as UrlPath};
use poem::{Body, EndpointExt as _, IntoResponse, Response, Route, get, handler, post};
use rxledger_core::checkpoint::{self, CheckpointError};
use rxledger_core::cosignature;
use rxledger_core::ed25519::{Ed25519Key, Ed25519Verifier, EdKind};
use rxledger_core::witness::{self, Latest, Refusal};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::state::{State, Witnessed};

/// The media type of a 409's body: the witness's size, in decimal, and a newline.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// How a witness is started.
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// Holds `witness.key` (created on first start) and `witness.db`.
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// The witness's key name; by default `rxledger.witness/<16 hex of SHA-256(public key)>`.
    pub name: Option<String>,
    /// The logs it witnesses: Ed25519 note verifier keys, named by the log's origin.
    pub logs: Vec<Ed25519Verifier>,
}

/// A running witness.
pub struct WitnessServer {
    pub addr: SocketAddr,
    /// The cosigner verifier key (type `0x04`) that logs and clients pin.
    pub verifier: Ed25519Verifier,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl WitnessServer {
    /// Stops accepting and waits for the server task.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Witness {
    key: Ed25519Key,
    verifier: Ed25519Verifier,
    logs: Vec<Ed25519Verifier>,
    state: State,
    /// Held from reading the state to recording it: the spec's atomic check-and-persist.
    lock: Mutex<()>,
}

/// The witness's key file in `data`.
pub fn key_path(data: &Path) -> PathBuf {
    data.join("witness.key")
}

/// The cosigner verifier of the witness whose data directory is `data` (creating its key).
pub fn load_verifier(data: &Path, name: Option<&str>) -> Result<Ed25519Verifier, StartError> {
    let (key, _) = rxledger_keyfile::load_or_create_key::<Ed25519Key>(&key_path(data))?;
    Ok(cosigner(&key, name)?)
}

fn cosigner(
    key: &Ed25519Key,
    name: Option<&str>,
) -> Result<Ed25519Verifier, rxledger_core::keys::KeyError> {
    let default = || {
        let id = hex::encode(Sha256::digest(key.public_bytes()));
        format!("rxledger.witness/{}", &id[..16])
    };
    let name = name.map_or_else(default, str::to_owned);
    key.verifier(&name, EdKind::Cosignature)
}

/// Why a witness could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] rxledger_keyfile::KeyFileError),
    #[error("witness name: {0}")]
    Name(#[from] rxledger_core::keys::KeyError),
    #[error("witness database: {0}")]
    Database(#[from] sea_orm::sqlx::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the witness needs at least one --log")]
    NoLogs,
}

/// Starts the witness; returns once it is listening.
pub async fn start(cfg: WitnessConfig) -> Result<WitnessServer, StartError> {
    if cfg.logs.is_empty() {
        return Err(StartError::NoLogs);
    }
    let (key, _) = rxledger_keyfile::load_or_create_key::<Ed25519Key>(&key_path(&cfg.data))?;
    let verifier = cosigner(&key, cfg.name.as_deref())?;
    let state = State::open(&cfg.data).await?;
    let witness = Arc::new(Witness {
        key,
        verifier: verifier.clone(),
        logs: cfg.logs,
        state,
        lock: Mutex::new(()),
    });
    let app = Route::new()
        .at("/add-checkpoint", post(add_checkpoint))
        .at("/:origin_hash/checkpoint", get(latest_checkpoint))
        .data(witness);
    let listen = |source| StartError::Listen {
        addr: cfg.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let acceptor = TcpAcceptor::from_std(listener).map_err(listen)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(
        poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            app,
            async move {
                let _ = stopped.await;
            },
            Some(std::time::Duration::from_secs(5)),
        ),
    );
    Ok(WitnessServer {
        addr,
        verifier,
        task,
        stop,
    })
}

#[handler]
async fn add_checkpoint(body: Body, Data(w): Data<&Arc<Witness>>) -> Response {
    let Ok(bytes) = body.into_bytes_limit(witness::MAX_REQUEST_LEN).await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    };
    let Ok(body) = std::str::from_utf8(&bytes) else {
        return text(StatusCode::BAD_REQUEST, "request body is not UTF-8\n");
    };
    match w.add(body).await {
        Ok(line) => text(StatusCode::OK, &line),
        Err(Answer::Refused(r)) => refusal(&r),
        Err(Answer::Internal(e)) => {
            tracing::error!(error = %e, "witness state");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

#[handler]
async fn latest_checkpoint(
    UrlPath(origin_hash): UrlPath<String>,
    Data(w): Data<&Arc<Witness>>,
) -> Response {
    let Some(log) = w
        .logs
        .iter()
        .find(|l| hex::encode(Sha256::digest(l.name().as_bytes())) == origin_hash)
    else {
        return text(StatusCode::NOT_FOUND, "unknown log\n");
    };
    match w.state.latest(log.name()).await {
        Ok(Some(seen)) => text(StatusCode::OK, &seen.note),
        Ok(None) => text(StatusCode::NOT_FOUND, "nothing cosigned for this log yet\n"),
        Err(e) => {
            tracing::error!(error = %e, "witness state");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

enum Answer {
    Refused(Refusal),
    Internal(sea_orm::sqlx::Error),
}

impl From<sea_orm::sqlx::Error> for Answer {
    fn from(e: sea_orm::sqlx::Error) -> Self {
        Answer::Internal(e)
    }
}

impl Witness {
    /// The whole `add-checkpoint`: decide against the stored state, cosign, record, all under
    /// the lock; returns the cosignature line.
    async fn add(&self, body: &str) -> Result<String, Answer> {
        let req = witness::parse_request(body).map_err(Answer::Refused)?;
        let origin = req.note.split('\n').next().unwrap_or_default();
        let _held = self.lock.lock().await;
        let stored = self.state.latest(origin).await?;
        let latest = stored.as_ref().map(|s| &s.latest);
        let cp = witness::decide(&req, &self.logs, latest).map_err(|r| {
            if r.status() == 409 || r.status() == 422 {
                tracing::warn!(origin, refusal = %r, "checkpoint refused");
            }
            Answer::Refused(r)
        })?;
        // The cosigned message is the whole note text, extension lines included.
        let bad = |e: CheckpointError| Answer::Refused(Refusal::BadRequest(e.to_string()));
        let (text, _) = checkpoint::split_note(req.note).map_err(bad)?;
        let line = cosignature::cosign(text, &self.verifier, &self.key, now_secs()).map_err(bad)?;
        let next = Witnessed {
            latest: Latest {
                size: cp.size,
                root: cp.root,
            },
            note: cosignature::with_lines(req.note, std::slice::from_ref(&line)),
        };
        let previous = latest.map(|l| l.size);
        if !self.state.record(origin, previous, &next, now_ms()).await? {
            // Only another process on the same database could have moved it.
            let now = self
                .state
                .latest(origin)
                .await?
                .map_or(0, |s| s.latest.size);
            return Err(Answer::Refused(Refusal::Conflict {
                old: req.old_size,
                latest: now,
            }));
        }
        Ok(line)
    }
}

fn refusal(r: &Refusal) -> Response {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match r {
        Refusal::Conflict { latest, .. } => Response::builder()
            .status(status)
            .content_type(SIZE_CONTENT_TYPE)
            .body(format!("{latest}\n")),
        other => text(status, &format!("{other}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    body.to_owned()
        .with_status(status)
        .with_content_type("text/plain; charset=utf-8")
        .into_response()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
