//! rxledger's web side, for people who do not write GraphQL:
//!
//! - `GET /01/{gtin}[/10/{lot}]/21/{serial}[?17=YYMMDD]`: the GS1 Digital Link resolver. A
//!   browser gets a verification page, `Accept: application/json` the verification as JSON,
//!   and `?linkType=verificationService` the GS1 Lightweight Verification Messaging answer
//!   ([`lvm`]). The VRS path form `/verify/gtin/{gtin}/lot/{lot}/ser/{serial}?exp=` is accepted
//!   too.
//! - `GET /qr/{gtin}/{serial}.svg|.png`: the pack's Digital Link as a QR code.
//! - `GET /labels/{gtin}/{lot}.svg`: a printable label sheet of a lot, for the packaging line.
//! - `GET /`: the pharmacist's page (scanner input, photo upload, dispense and undo, and the
//!   regulator's views); `POST /scan` decodes a photo of a QR code.
//! - `GET /signin`, `POST /signin`, `POST /signout`: signing a browser in with an API key
//!   ([`signin`]); the session cookie then stands for the key on every route ([`session`]).
//! - `GET /admin`, `POST /admin/{action}`: the admin page ([`admin`]), for ADMIN keys.
//! - `GET /checkpoint`, `GET /tile/…`: the log as c2sp.org/tlog-tiles resources ([`tlog`]).
//! - `GET /assets/graphiql/…`: GraphiQL and React, pinned and compiled in
//!   (`assets/graphiql/VERSIONS.md`), for the GraphiQL page ([`GRAPHIQL_PAGE`]).
//!
//! Every route but the static assets takes tokens from the caller's rate-limit bucket (its
//! API key, or its address when anonymous) before doing any work ([`RouteCost`]); an empty
//! bucket gets 429 `RATE_LIMITED` with `Retry-After`.
//!
//! Every verdict comes from GraphQL `verify`'s own typed path ([`rxledger_graphql::verify`]),
//! called directly: the page, the JSON and the LVM answer render its typed result, so a
//! verdict is the same on every channel and what a caller may see of it is decided in one
//! place. QR codes and label sheets ask it for the verdict alone (no proofs). Bad input gets
//! a page or a JSON error with a stable code, never a 500.

pub mod admin;
pub mod epcis;
pub mod html;
pub mod lvm;
pub mod qr;
pub mod session;
pub mod signin;
pub mod tlog;

use std::sync::Arc;

use poem::http::{HeaderMap, StatusCode, header};
use poem::web::{Data, Path, Query};
use poem::{
    Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler, post,
};
use rxledger_core::gs1::{self, CalendarDate, Expiry, Gtin, Lot, ScannedCode, Serial, Sgtin};
use rxledger_graphql::product::TradeItem;
use rxledger_graphql::ratelimit::{Limiter, RouteCost};
use rxledger_graphql::verify::{self, Checked, Verification, Wanted};
use rxledger_graphql::visibility::Sight;
use rxledger_graphql::{ApiError, Caller, Code, Services};
use serde_json::{Value, json};

/// Largest photo `POST /scan` takes.
pub const MAX_PHOTO_BYTES: usize = 12 << 20;
/// Photos decoded at once: each may hold up to `qr::MAX_DECODE_ALLOC` while it decodes, so
/// this bounds the decoder's memory whatever the number of clients.
pub const DECODES_AT_ONCE: usize = 2;
static DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(DECODES_AT_ONCE);
/// The GraphiQL page (`GET /graphql`); its scripts come from `/assets/graphiql/`.
pub const GRAPHIQL_PAGE: &str = include_str!("../assets/graphiql.html");
/// Labels on one sheet: 3 columns by 7 rows on A4.
const LABELS_PER_SHEET: usize = 21;

/// What the pages need.
#[derive(Clone)]
pub struct Web {
    /// What GraphQL's resolvers reach: the verdict's typed path runs on it.
    pub services: Services,
    /// The Digital Link domain printed into QR codes, e.g. `https://verify.example.org`;
    /// no trailing slash.
    pub base_url: String,
    /// The node's rate limiter, shared with `/graphql`.
    pub limiter: Arc<Limiter>,
}

/// Adds the web routes to `route`.
pub fn mount(route: Route, web: &Web) -> Route {
    route
        .at("/", get(index))
        .at("/assets/:name", get(asset))
        .at("/assets/graphiql/:name", get(graphiql_asset))
        .at(
            "/scan",
            post(scan)
                .with(poem::middleware::SizeLimit::new(MAX_PHOTO_BYTES))
                .data(web.clone()),
        )
        .at("/qr/:gtin/:file", get(qr_code).data(web.clone()))
        .at("/labels/:gtin/:file", get(labels).data(web.clone()))
        .at("/01/*rest", get(resolve).data(web.clone()))
        .at("/verify/*rest", get(resolve).data(web.clone()))
        .at(
            "/signin",
            get(signin::form)
                .post(signin::sign_in)
                .data(web.clone())
                .data(Arc::new(signin::SignInLimiter::default())),
        )
        .at("/signout", post(signin::sign_out).data(web.clone()))
        .at("/admin", get(admin::view).data(web.clone()))
        .at("/admin/:action", post(admin::act).data(web.clone()))
        .at("/checkpoint", get(tlog::checkpoint).data(web.clone()))
        .at("/tile/*rest", get(tlog::tile).data(web.clone()))
        .nest("/epcis", epcis::routes(web))
}

/// Renders every error poem itself raises (unknown path, bad path parameter, body too large,
/// wrong method) as a page or JSON with a stable code, so no request ends in a bare error.
pub fn friendly_errors<E: poem::Endpoint + 'static>(ep: E) -> impl poem::Endpoint {
    ep.around(|ep, req| async move {
        let path = req.uri().path().to_string();
        // API endpoints answer in JSON whatever the client accepts.
        let json = wants_json(req.headers()) || path.starts_with("/graphql") || path == "/scan";
        match ep.call(req).await {
            Ok(r) => Ok(r.into_response()),
            Err(e) if path == "/epcis" || path.starts_with("/epcis/") => {
                Ok(epcis::problem::EpcisProblem::from_poem(&e, &path).respond())
            }
            Err(e) => {
                let status = e.status();
                let (code, message) = match status {
                    StatusCode::NOT_FOUND => ("NOT_FOUND", format!("nothing is served at {path}")),
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        ("TOO_LARGE", "the request body is too large".into())
                    }
                    StatusCode::LENGTH_REQUIRED => (
                        "LENGTH_REQUIRED",
                        "this request needs a Content-Length header".into(),
                    ),
                    StatusCode::METHOD_NOT_ALLOWED => {
                        ("BAD_REQUEST", format!("{path} does not take this method"))
                    }
                    s if s.is_server_error() => {
                        tracing::error!(error = %e, path, "request failed");
                        (
                            "INTERNAL",
                            "internal error; the operator's log has the details".into(),
                        )
                    }
                    _ => ("BAD_REQUEST", e.to_string()),
                };
                Ok(Problem::new(status, code, message).respond(json))
            }
        }
    })
}

/// A refusal with a stable code, rendered as a page or as JSON.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds, for `Retry-After` (rate limits).
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Problem {
        Problem {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 RATE_LIMITED, to retry after `seconds`.
    pub fn rate_limited(seconds: f64) -> Problem {
        let after = seconds.ceil().max(1.0) as u64;
        Problem {
            retry_after: Some(after),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("too many requests from this API key or address; retry after {after} s"),
            )
        }
    }

    fn title(&self) -> &'static str {
        match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            StatusCode::PAYLOAD_TOO_LARGE => "Too large",
            s if s.is_server_error() => "Temporarily unavailable",
            _ => "Cannot read this code",
        }
    }

    /// JSON for machines, a page for browsers.
    pub fn respond(&self, json: bool) -> Response {
        let mut resp = self.render(json);
        if session::ENDED_CODES.contains(&self.code.as_str()) {
            // The browser forgets a session that has ended; its next request is anonymous.
            if let Ok(v) = poem::http::HeaderValue::from_str(&session::clear_cookie(false)) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
        }
        if let Some(after) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, poem::http::HeaderValue::from(after));
        }
        resp
    }

    fn render(&self, json: bool) -> Response {
        if json {
            json_response(
                self.status,
                &json!({ "error": { "code": self.code, "message": self.message } }),
            )
        } else {
            let hint = match self.status {
                StatusCode::NOT_FOUND => {
                    "Check the address, or scan the pack again from the pharmacist's page."
                }
                s if s.is_server_error() => "Please try again in a minute.",
                StatusCode::TOO_MANY_REQUESTS => "Please wait a moment and try again.",
                _ => {
                    "Scan the code again, or type what is printed next to it on the pack: \
                     GTIN (01), batch (10), expiry (17) and serial number (21)."
                }
            };
            Response::builder()
                .status(self.status)
                .content_type("text/html; charset=utf-8")
                .body(html::error_page(self.title(), &self.message, hint))
        }
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(v.to_string())
}

/// Whether the client is a browser navigating to a page (it accepts HTML), which a refusal
/// may send to the sign-in page; an image or script fetch is not.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// Whether the client asked for JSON rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// The caller of a web route: its Bearer key, or its session cookie ([`session::caller`]).
async fn caller(web: &Web, req: &Request) -> Result<Caller, Problem> {
    session::caller(&web.services.api_keys, req, &web.base_url)
        .await
        .map_err(|r| {
            let status = if r.code == "INTERNAL" {
                StatusCode::SERVICE_UNAVAILABLE
            } else if r.code == "CSRF_REFUSED" {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            Problem::new(status, r.code, r.message)
        })
}

/// The caller of a route, once it has paid `cost` from its bucket: its API key's, or its
/// address's when anonymous. A refused key is refused here, before any charge.
pub async fn admit(web: &Web, req: &Request, cost: RouteCost) -> Result<Caller, Problem> {
    admit_tokens(web, req, cost.tokens()).await
}

/// [`admit`] for a number of tokens (the EPCIS routes price by the size of the work).
pub async fn admit_tokens(web: &Web, req: &Request, tokens: f64) -> Result<Caller, Problem> {
    let c = caller(web, req).await?;
    web.limiter
        .take(&bucket_of(&c, req), tokens)
        .map_err(Problem::rate_limited)?;
    Ok(c)
}

/// The rate-limit bucket of a caller: its API key's, or its address's when anonymous.
pub fn bucket_of(c: &Caller, req: &Request) -> String {
    match c {
        Caller::Key { key_id, .. } => format!("key:{key_id}"),
        Caller::Anonymous => client_ip(req),
    }
}

/// The client's IP address, the bucket of anonymous callers (a reverse proxy in front makes
/// every client one address: see docs/SECURITY.md).
pub fn client_ip(req: &Request) -> String {
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// The verdict on `scanned` for `caller`: GraphQL `verify`'s typed path
/// ([`verify::check`]), so every channel gets the same verdict and sees of it what the
/// caller may see.
pub async fn check(web: &Web, caller: &Caller, scanned: ScannedCode) -> Result<Checked, Problem> {
    verify::check(&web.services, caller, scanned, &mut ())
        .await
        .map_err(problem)
}

/// An API error as the web answers it: 503 for an internal one, else 400, with its code.
pub(crate) fn problem(e: ApiError) -> Problem {
    let status = match e.code {
        Code::Internal => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    Problem::new(status, e.code.as_str(), e.message)
}

/// What the ledger recorded of a pack when it was commissioned: its lot and expiry date (for
/// QR codes and labels that do not give them). An unknown pack has neither.
async fn commissioned(
    web: &Web,
    sgtin: &Sgtin,
) -> Result<(Option<Lot>, Option<CalendarDate>), Problem> {
    let scanned = ScannedCode {
        gtin: Some(sgtin.gtin.clone()),
        serial: Some(sgtin.serial.clone()),
        ..ScannedCode::default()
    };
    let checked = check(web, &Caller::Anonymous, scanned).await?;
    Ok(match checked.verdict.product {
        Some(p) => (p.lot, p.expiry),
        None => (None, None),
    })
}

/// A date as the GS1 expiry (AI 17) that names it: YYMMDD.
fn expiry_of(d: CalendarDate) -> Option<Expiry> {
    Expiry::parse(&format!("{:02}{:02}{:02}", d.year % 100, d.month, d.day)).ok()
}

/// The pharmacist's page and its assets, compiled into the binary.
#[handler]
fn index() -> Response {
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../assets/index.html"))
}

/// GraphiQL's scripts and styles, compiled in; their names are versioned in VERSIONS.md.
#[handler]
fn graphiql_asset(Path(name): Path<String>, headers: &HeaderMap) -> Response {
    let (ty, body): (&str, &'static [u8]) = match name.as_str() {
        "graphiql.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/graphiql/graphiql.min.js"),
        ),
        "graphiql.min.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../assets/graphiql/graphiql.min.css"),
        ),
        "react.production.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/graphiql/react.production.min.js"),
        ),
        "react-dom.production.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/graphiql/react-dom.production.min.js"),
        ),
        _ => return no_such_asset(headers),
    };
    compiled_in(ty, body, "public, max-age=86400")
}

#[handler]
fn asset(Path(name): Path<String>, headers: &HeaderMap) -> Response {
    let (ty, body): (&str, &'static [u8]) = match name.as_str() {
        "app.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/app.js"),
        ),
        "app.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../assets/app.css"),
        ),
        _ => return no_such_asset(headers),
    };
    compiled_in(ty, body, "no-cache")
}

/// An asset compiled into the binary, with its type and caching.
fn compiled_in(ty: &str, body: &'static [u8], cache_control: &'static str) -> Response {
    Response::builder()
        .content_type(ty)
        .header(header::CACHE_CONTROL, cache_control)
        .body(body)
}

fn no_such_asset(headers: &HeaderMap) -> Response {
    Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such asset").respond(wants_json(headers))
}

/// `POST /scan` with a PNG or JPEG photo as the body: the codes found in it. At most
/// [`DECODES_AT_ONCE`] photos are decoded at a time; the others wait their turn.
#[handler]
async fn scan(req: &Request, body: Body, Data(web): Data<&Web>) -> Response {
    if let Err(p) = admit(web, req, RouteCost::Scan).await {
        return p.respond(true);
    }
    let bytes = match body.into_bytes_limit(MAX_PHOTO_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "TOO_LARGE",
                format!("the photo is larger than {} MiB", MAX_PHOTO_BYTES >> 20),
            )
            .respond(true);
        }
    };
    let Ok(_slot) = DECODES.acquire().await else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "INTERNAL",
            "the image decoder is shutting down",
        )
        .respond(true);
    };
    let decoded = tokio::task::spawn_blocking(move || qr::decode(&bytes)).await;
    match decoded {
        Ok(Ok(codes)) => json_response(StatusCode::OK, &json!({ "codes": codes })),
        Ok(Err(e)) => {
            let code = match e {
                qr::QrError::Unreadable(_) => "UNREADABLE_IMAGE",
                qr::QrError::NoCode => "NO_CODE_FOUND",
                qr::QrError::Damaged(_) => "DAMAGED_CODE",
                qr::QrError::TooLong => "TOO_LARGE",
                qr::QrError::TooManyPixels { .. } => "IMAGE_TOO_LARGE",
            };
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()).respond(true)
        }
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "INTERNAL",
            "the image decoder failed; try another photo",
        )
        .respond(true),
    }
}

fn bad_code(e: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "INVALID_CODE", e.to_string())
}

/// `GET /qr/{gtin}/{serial}.svg|png[?10=lot&17=yymmdd]`. Lot and expiry default to what the
/// ledger recorded when the pack was commissioned.
#[handler]
async fn qr_code(
    Path((gtin, file)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    Data(web): Data<&Web>,
    req: &Request,
) -> Response {
    let headers = req.headers();
    if let Err(p) = admit(web, req, RouteCost::Qr).await {
        return p.respond(wants_json(headers));
    }
    match qr_inner(web, &gtin, &file, &q).await {
        Ok(r) => r,
        Err(p) => p.respond(wants_json(headers)),
    }
}

async fn qr_inner(
    web: &Web,
    gtin: &str,
    file: &str,
    q: &std::collections::HashMap<String, String>,
) -> Result<Response, Problem> {
    let (serial, ext) = file.rsplit_once('.').ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "ask for {serial}.svg or {serial}.png",
        )
    })?;
    let sgtin = Sgtin {
        gtin: Gtin::parse(gtin).map_err(bad_code)?,
        serial: Serial::parse(serial).map_err(bad_code)?,
    };
    let (mut lot, mut expiry) = (
        q.get("10")
            .map(|l| Lot::parse(l))
            .transpose()
            .map_err(bad_code)?,
        q.get("17")
            .map(|e| Expiry::parse(e))
            .transpose()
            .map_err(bad_code)?,
    );
    if lot.is_none() || expiry.is_none() {
        let (recorded_lot, recorded_expiry) = commissioned(web, &sgtin).await?;
        lot = lot.or(recorded_lot);
        expiry = expiry.or(recorded_expiry.and_then(expiry_of));
    }
    let uri = sgtin.to_digital_link(&web.base_url, lot.as_ref(), expiry.as_ref());
    let too_long =
        |e: qr::QrError| Problem::new(StatusCode::BAD_REQUEST, "TOO_LARGE", e.to_string());
    let resp = match ext {
        "svg" => Response::builder()
            .content_type("image/svg+xml")
            .body(qr::svg(&uri).map_err(too_long)?),
        "png" => Response::builder()
            .content_type("image/png")
            .body(qr::png(&uri).map_err(too_long)?),
        _ => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("QR codes come as .svg or .png, not .{ext}"),
            ));
        }
    };
    Ok(resp)
}

/// `GET /labels/{gtin}/{lot}.svg[?page=N]`: an A4 sheet of the lot's labels, each with its QR
/// code and the human-readable GS1 text. The brand owner, regulators and admins.
#[handler]
async fn labels(
    Path((gtin, file)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    Data(web): Data<&Web>,
    req: &Request,
) -> Response {
    let headers = req.headers();
    let c = match admit(web, req, RouteCost::Labels).await {
        Ok(c) => c,
        Err(p) => return p.respond(wants_json(headers)),
    };
    match labels_inner(web, c, &gtin, &file, &q).await {
        Ok(r) => r,
        // A browser that is not signed in is sent to sign in, and back here afterwards.
        Err(p) if p.code == "UNAUTHENTICATED" && accepts_html(headers) => signin::redirect(req),
        Err(p) => p.respond(wants_json(headers)),
    }
}

async fn labels_inner(
    web: &Web,
    c: Caller,
    gtin: &str,
    file: &str,
    q: &std::collections::HashMap<String, String>,
) -> Result<Response, Problem> {
    let lot = file.strip_suffix(".svg").ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "label sheets come as {lot}.svg",
        )
    })?;
    let g = Gtin::parse(gtin).map_err(bad_code)?;
    let l = Lot::parse(lot).map_err(bad_code)?;
    let page: usize = match q.get("page") {
        None => 1,
        Some(p) => p.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "page must be 1 or more",
            )
        })?,
    };
    may_print_labels(web, &c, &g).await?;
    let mut rows = web
        .services
        .packs
        .lot_serials(&g, &l)
        .await
        .map_err(unavailable)?;
    rows.sort_by(|a, b| a.0.serial.as_str().cmp(b.0.serial.as_str()));
    let packs: Vec<Sgtin> = rows.into_iter().map(|(sgtin, _)| sgtin).collect();
    // The lot's expiry as commissioned (every pack of a lot shares it).
    let expiry_date = match packs.first() {
        Some(first) => commissioned(web, first).await?.1,
        None => None,
    };
    let expiry = expiry_date.and_then(expiry_of);
    let item = trade_item(web, &g).await?;
    let sheet = LabelSheet {
        base_url: &web.base_url,
        gtin: &g,
        lot: &l,
        expiry: expiry.as_ref(),
        expiry_date,
        product: item.as_ref().map(html::trade_name),
        packs: &packs,
    };
    Ok(Response::builder()
        .content_type("image/svg+xml")
        .body(sheet.svg(page)?))
}

/// Label sheets are for the lot's brand owner, regulators and admins (`Sight::lot`), and
/// need an API key.
async fn may_print_labels(web: &Web, c: &Caller, gtin: &Gtin) -> Result<(), Problem> {
    if *c == Caller::Anonymous {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "label sheets need an API key: sign in at /signin, or send Authorization: Bearer …",
        ));
    }
    let prefixes = web.services.packs.prefixes().await.map_err(unavailable)?;
    let owner = rxledger_store::packs::owner_of(&prefixes, gtin);
    if !Sight::of(c).lot(owner.as_deref()) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "only the brand owner or a regulator may print a lot's labels",
        ));
    }
    Ok(())
}

/// The registered master data of `gtin`, if any.
async fn trade_item(web: &Web, gtin: &Gtin) -> Result<Option<TradeItem>, Problem> {
    Ok(web
        .services
        .products
        .get(gtin)
        .await
        .map_err(unavailable)?
        .map(TradeItem::from))
}

/// The store failed while making a label sheet.
fn unavailable(e: rxledger_store::StoreError) -> Problem {
    tracing::error!(error = %e, "label sheet");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "INTERNAL",
        "the ledger is unavailable; try again",
    )
}

/// One lot's labels, [`LABELS_PER_SHEET`] to an A4 page.
struct LabelSheet<'a> {
    base_url: &'a str,
    gtin: &'a Gtin,
    lot: &'a Lot,
    expiry: Option<&'a Expiry>,
    /// The same expiry as a date, printed for people (`EXP 2028-12-31`).
    expiry_date: Option<CalendarDate>,
    /// The trade name, strength and form, when master data is registered.
    product: Option<String>,
    /// Every pack of the lot, in serial order.
    packs: &'a [Sgtin],
}

impl LabelSheet<'_> {
    /// Page `page` (from 1) as an SVG document: each label a QR code and the GS1 text.
    fn svg(&self, page: usize) -> Result<String, Problem> {
        let pages = self.packs.len().div_ceil(LABELS_PER_SHEET).max(1);
        let chunk = self
            .packs
            .iter()
            .skip((page - 1) * LABELS_PER_SHEET)
            .take(LABELS_PER_SHEET);
        // A4 in millimetres; labels of 70 x 42.3 mm, the common 3 x 7 sheet.
        let mut svg = String::from(
            r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="210mm" height="297mm" viewBox="0 0 210 297" font-family="monospace">
<rect width="210" height="297" fill="#fff"/>
"##,
        );
        for (i, sgtin) in chunk.enumerate() {
            let (x, y) = ((i % 3) as f64 * 70.0, 0.0 + (i / 3) as f64 * 42.3);
            svg.push_str(&self.label(sgtin, x, y)?);
        }
        svg.push_str(&format!(
            "<text x=\"5\" y=\"294\" font-size=\"2.5\">{} · {} lot {}: page {page} of {pages}, {} packs</text>\n</svg>\n",
            html::esc(self.product.as_deref().unwrap_or(html::NO_PRODUCT_DATA)),
            self.gtin,
            html::esc(self.lot.as_str()),
            self.packs.len()
        ));
        Ok(svg)
    }

    /// One label with its top-left corner at (x, y).
    fn label(&self, sgtin: &Sgtin, x: f64, y: f64) -> Result<String, Problem> {
        let uri = sgtin.to_digital_link(self.base_url, Some(self.lot), self.expiry);
        let text_len = uri.len() as f64;
        let module = (30.0 / (21.0 + 4.0 * ((text_len / 20.0).ceil()))).min(1.0);
        let (mut out, side) = qr::svg_path(&uri, x + 3.0, y + 4.0, module)
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "TOO_LARGE", e.to_string()))?;
        let tx = x + 6.0 + side;
        let lines = [
            format!("(01) {}", sgtin.gtin),
            format!("(10) {}", self.lot.as_str()),
            match self.expiry {
                Some(e) => format!("(17) {}", e.as_str()),
                None => String::new(),
            },
            format!("(21) {}", sgtin.serial.as_str()),
        ];
        for (n, line) in lines.iter().filter(|s| !s.is_empty()).enumerate() {
            out.push_str(&format!(
                "<text x=\"{tx:.2}\" y=\"{:.2}\" font-size=\"2.8\">{}</text>\n",
                y + 9.0 + n as f64 * 5.0,
                html::esc(line)
            ));
        }
        // Across the label's foot: what the pack is, and its expiry as a date.
        let mut foot = self.product.as_deref().map(label_text).unwrap_or_default();
        if let Some(d) = self.expiry_date {
            foot.push_str(&format!("  EXP {d}"));
        }
        out.push_str(&format!(
            "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"2.5\">{}</text>\n",
            x + 3.0,
            y + 39.0,
            html::esc(foot.trim())
        ));
        Ok(out)
    }
}

/// A trade name cut to what fits across a 70 mm label at 2.5 mm type.
fn label_text(name: &str) -> String {
    const FITS: usize = 40;
    if name.chars().count() <= FITS {
        name.to_string()
    } else {
        let cut: String = name.chars().take(FITS - 1).collect();
        format!("{cut}…")
    }
}

/// The Digital Link resolver: `/01/…` and the VRS form `/verify/gtin/…`.
#[handler]
async fn resolve(req: &Request, Data(web): Data<&Web>) -> Response {
    let headers = req.headers();
    let query = req.uri().query().unwrap_or("");
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let link_type = param("linkType").map(|t| t.trim_start_matches("gs1:"));
    let lvm = link_type == Some("verificationService");
    let json = lvm || wants_json(headers);
    let c = match admit(web, req, RouteCost::Resolve).await {
        Ok(c) => c,
        Err(p) => return p.respond(json),
    };
    // The same URI on our own domain; parsed by the core like any scanned Digital Link.
    let mut uri = format!("{}{}", web.base_url, req.uri().path());
    let mut sep = '?';
    for (k, v) in &params {
        if k.chars().all(|c| c.is_ascii_digit()) {
            uri.push_str(&format!("{sep}{k}={v}"));
            sep = '&';
        }
    }
    if let (Some(exp), None) = (param("exp"), param("17")) {
        uri.push_str(&format!("{sep}17={exp}"));
    }
    let scanned = match gs1::parse_code(&uri) {
        Ok(s) => s,
        Err(e) => {
            return bad_code(format!("not a valid GS1 Digital Link: {e}")).respond(json);
        }
    };
    if scanned.sgtin().is_none() {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "NO_SERIAL",
            "the link names a product but no serial number (21); a single pack cannot be verified without it",
        )
        .respond(json);
    }
    let started = std::time::Instant::now();
    let answer = resolve_answer(web, &c, scanned, &uri, lvm, json, param("corrUUID")).await;
    web.services
        .verify_latency
        .resolver
        .observe(started.elapsed());
    answer
}

/// The resolver's answer for a parsed code: LVM, JSON or the page.
async fn resolve_answer(
    web: &Web,
    c: &Caller,
    scanned: ScannedCode,
    uri: &str,
    lvm: bool,
    json: bool,
    corr: Option<&str>,
) -> Response {
    let checked = match check(web, c, scanned).await {
        Ok(checked) => checked,
        Err(p) => return p.respond(json),
    };
    if lvm {
        return lvm_answer(web, &checked, corr).await;
    }
    let v = match Verification::build(&web.services, &checked, Wanted::ALL, &mut ()).await {
        Ok(v) => v,
        Err(e) => return problem(e).respond(json),
    };
    if json {
        return match serde_json::to_value(&v) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => {
                tracing::error!(error = %e, "verification as JSON");
                problem(ApiError::new(
                    Code::Internal,
                    "internal error; the operator's log has the details",
                ))
                .respond(json)
            }
        };
    }
    let status = web.services.ledger.witnesses().status();
    let quorum = rxledger_core::cosignature::Quorum {
        witnesses: status.witnesses.into_iter().map(|w| w.verifier).collect(),
        need: status.quorum,
    };
    let witnesses = html::Witnesses {
        quorum: &quorum,
        log: web.services.ledger.verifier(),
    };
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(html::verification_page(
            &v,
            uri,
            &witnesses,
            html::completeness_status(&v, web.services.ledger.verifier().public_key()),
        ))
}

/// The GS1 Lightweight Verification Messaging answer for a checked code.
async fn lvm_answer(web: &Web, checked: &Checked, corr: Option<&str>) -> Response {
    let Some(data) = lvm::data(&checked.verdict) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("text/plain; charset=utf-8")
            .body("GTIN not found: no brand owner is registered for it");
    };
    // The responder is the brand owner: its first registered site's GLN.
    let mut responder = String::new();
    if let (Some(g), Ok(prefixes), Ok(sites)) = (
        &checked.scanned.gtin,
        web.services.packs.prefixes().await,
        web.services.registry.sites().await,
    ) && let Some(owner) = rxledger_store::packs::owner_of(&prefixes, g)
        && let Some(site) = sites.iter().find(|s| s.org_id == owner)
    {
        responder = site.gln.clone();
    }
    let corr = corr.map(|c| gs1::percent_decode(c, 0).unwrap_or_else(|_| c.to_string()));
    let now = rxledger_core::epcis::format_time(rxledger_store::now_ms());
    let mut answer = lvm::response(data, &responder, corr.as_deref(), &now);
    let item = match &checked.scanned.gtin {
        Some(g) => match trade_item(web, g).await {
            Ok(item) => item,
            Err(p) => return p.respond(true),
        },
        None => None,
    };
    lvm::with_trade_item(&mut answer, item.as_ref());
    json_response(StatusCode::OK, &answer)
}
