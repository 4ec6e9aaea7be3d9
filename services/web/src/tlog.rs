//! The log as c2sp.org/tlog-tiles static resources, for monitors, witnesses and auditors that
//! speak the standard rather than GraphQL.
//!
//! - `GET /checkpoint`: the latest signed checkpoint note, `text/plain; charset=utf-8`,
//!   cacheable for a second or two only (it moves).
//! - `GET /tile/<L>/<N>[.p/<W>]`: hash tiles, `application/octet-stream`, 32 bytes a hash. Any
//!   tile the latest checkpoint's tree holds, full or partial, is served; a tile never changes
//!   once it has a given width, so both are cacheable forever (`immutable`).
//! - `GET /tile/entries/<N>[.p/<W>]`: entry bundles (each entry as a big-endian uint16 length
//!   and its bytes). Entries name trading partners, sites and dispensing pharmacies, so a
//!   bundle is served only to callers who may read every entry's bytes (`Sight::Everything`:
//!   regulator and admin keys), as `private` so that no shared cache keeps it. Anyone else
//!   gets 401 or 403: the leaf hashes in the level-0 tiles are what anonymous callers check
//!   the tree with.
//!
//! Each request takes one token from the caller's bucket before any work, like the other
//! web routes. Paths are read by `core::tiles::TilePath`, which accepts only the one canonical
//! spelling of each resource.

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use rxledger_core::tiles::{self, TileId, TilePath};
use rxledger_graphql::ratelimit::RouteCost;
use rxledger_graphql::visibility::Sight;
use rxledger_graphql::{ApiError, Caller, Code};

use crate::{Problem, Web, admit, problem};

/// Tiles and bundles never change at a given width.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Entry bundles are for the key that asked only.
const PRIVATE_IMMUTABLE: &str = "private, max-age=31536000, immutable";
/// The checkpoint moves with every batch.
const CHECKPOINT_CACHE: &str = "public, max-age=2";
/// An entry bundle frames each entry with a uint16 length.
const MAX_BUNDLED_ENTRY: usize = u16::MAX as usize;

/// `GET /checkpoint`.
#[handler]
pub async fn checkpoint(Data(web): Data<&Web>, req: &Request) -> Response {
    if let Err(p) = admit(web, req, RouteCost::Tile).await {
        return p.respond(true);
    }
    Response::builder()
        .content_type("text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, CHECKPOINT_CACHE)
        .body(web.services.ledger.head().note)
}

/// `GET /tile/*rest`: a hash tile or an entry bundle.
#[handler]
pub async fn tile(Path(rest): Path<String>, Data(web): Data<&Web>, req: &Request) -> Response {
    let caller = match admit(web, req, RouteCost::Tile).await {
        Ok(c) => c,
        Err(p) => return p.respond(true),
    };
    let served = match TilePath::parse(&rest) {
        Err(e) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "BAD_TILE_PATH",
            e.to_string(),
        )),
        Ok(TilePath::Hashes { id, width }) => hashes(web, id, width).await,
        Ok(TilePath::Entries { index, width }) => bundle(web, &caller, index, width).await,
    };
    match served {
        Ok(r) => r,
        Err(p) => p.respond(true),
    }
}

async fn hashes(web: &Web, id: TileId, width: u64) -> Result<Response, Problem> {
    let found = web
        .services
        .ledger
        .tile(id, width)
        .await
        .map_err(|e| problem(ApiError::from(e)))?
        .ok_or_else(|| beyond(&TilePath::Hashes { id, width }))?;
    Ok(octets(found.hashes.concat(), IMMUTABLE))
}

async fn bundle(web: &Web, caller: &Caller, index: u64, width: u64) -> Result<Response, Problem> {
    match (caller, Sight::of(caller)) {
        (_, Sight::Everything) => {}
        (Caller::Anonymous, _) => {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "entry bundles hold every party's entries: send a regulator or admin API key; the hash tiles are public",
            ));
        }
        _ => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "entry bundles hold every party's entries: only regulator and admin keys may read them",
            ));
        }
    }
    let ledger = &web.services.ledger;
    let path = TilePath::Entries { index, width };
    if width > tiles::width_in(TileId { level: 0, index }, ledger.head().size) {
        return Err(beyond(&path));
    }
    let entries = ledger
        .entries(index * tiles::TILE_WIDTH, width)
        .await
        .map_err(|e| problem(ApiError::from(e)))?;
    if entries.len() as u64 != width {
        tracing::error!(index, width, found = entries.len(), "entry bundle is short");
        return Err(problem(ApiError::new(
            Code::Internal,
            "internal error; the operator's log has the details",
        )));
    }
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.data.len() + 2).sum());
    for e in &entries {
        let len = u16::try_from(e.data.len()).map_err(|_| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ENTRY_TOO_LARGE",
                format!(
                    "entry {} is {} bytes, more than a bundle can frame ({MAX_BUNDLED_ENTRY}); read it through GraphQL `entries`",
                    e.idx,
                    e.data.len()
                ),
            )
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&e.data);
    }
    Ok(octets(out, PRIVATE_IMMUTABLE))
}

fn beyond(path: &TilePath) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!(
            "{} is beyond the tree of the latest checkpoint",
            path.path()
        ),
    )
}

fn octets(body: Vec<u8>, cache: &'static str) -> Response {
    Response::builder()
        .content_type("application/octet-stream")
        .header(header::CACHE_CONTROL, cache)
        .header(header::VARY, "Authorization")
        .body(body)
}
