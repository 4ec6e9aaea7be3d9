//! The GS1 EPCIS 2.0 REST binding, under `/epcis` (docs/EPCIS.md is the integrator's guide).
//!
//! - Capture: `POST /epcis/capture` (an EPCISDocument; 202 with the job's `Location`),
//!   `GET /epcis/capture` (the caller's jobs), `GET /epcis/capture/{id}`, and
//!   `POST /epcis/events` (one event; 201, or 409 when it is logged already). Either may carry
//!   the partner's own signature (`RxLedger-Signature`, [`partner`]); the signed documents
//!   are served at `GET /epcis/capture/documents/{sha256}`.
//! - Query: `GET /epcis/events` (the simple event query, paged), `GET /epcis/events/{eventID}`,
//!   and the discovery resources `GET /epcis`, `/epcis/eventTypes`,
//!   `/epcis/eventTypes/{type}`, `/epcis/eventTypes/{type}/events`; `OPTIONS` on each.
//! - Named queries ([`named`]): `POST`/`GET /epcis/queries`, `GET`/`DELETE
//!   /epcis/queries/{name}`, `GET /epcis/queries/{name}/events`, which with `stream=true` and
//!   a WebSocket upgrade is a subscription to the query's new events ([`subscribe`]).
//!
//! One pipeline: the caller is the API key of `/graphql` (`admit`, rate limited like every
//! route), what it may read is `graphql::visibility::Sight` (the rule of GraphQL `events`),
//! and captured events pass the ingest's checks and rules and the ledger's one append
//! ([`capture`]). Every answer carries the GS1 headers ([`headers`]); every refusal is
//! `application/problem+json` with a GS1 exception type ([`problem`]).

pub mod capture;
pub mod headers;
pub mod jobs;
pub mod media;
pub mod named;
pub mod partner;
pub mod problem;
pub mod query;
pub mod subscribe;

use std::sync::Arc;

use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Data, Path, Query};
use poem::{Body, EndpointExt, Request, Response, Route, get, handler};
use rxledger_graphql::Caller;
use rxledger_graphql::auth::Role;
use rxledger_graphql::visibility::Sight;
use rxledger_store::documents::{self, LoggedJson};
use serde_json::{Value, json};

use crate::Web;
use capture::Behaviour;
use headers::{CAPTURE_FILE_SIZE_LIMIT, EVENT_SIZE_LIMIT};
use jobs::Jobs;
use media::{Document, Media};
use problem::{EpcisProblem, Exception};

/// What the EPCIS routes share: the web's services, this node's capture jobs, the named
/// queries and this node's open subscriptions.
pub struct Epcis {
    web: Web,
    jobs: Jobs,
    queries: rxledger_store::NamedQueries,
    hub: Arc<subscribe::Hub>,
}

/// The event types this repository captures and answers.
const EVENT_TYPES: &[&str] = &["ObjectEvent", "AggregationEvent", "TransactionEvent"];
/// Roles that capture: the trading partners, whose events they are. Regulators and admins
/// read everything but report nothing of their own through EPCIS.
const CAPTURE_ROLES: &[Role] = &[Role::Manufacturer, Role::Wholesaler, Role::Pharmacy];
/// Jobs listed per page at most.
const MAX_JOBS_PER_PAGE: u64 = 100;

/// The `/epcis` routes, to be nested under `/epcis`.
pub fn routes(web: &Web) -> poem::endpoint::BoxEndpoint<'static> {
    let state = Arc::new(Epcis {
        web: web.clone(),
        jobs: Jobs::default(),
        queries: rxledger_store::NamedQueries::new(web.services.ledger.database().clone()),
        hub: Arc::default(),
    });
    Route::new()
        .at("/", get(top).options(discover_read))
        .at(
            "/capture",
            get(capture_list)
                .post(capture_post)
                .options(discover_capture),
        )
        .at("/capture/:id", get(capture_job).options(discover_read))
        .at(
            "/capture/documents/:sha256",
            get(partner::document).options(discover_read),
        )
        .at(
            "/events",
            get(events_query).post(events_post).options(discover_write),
        )
        .at("/events/*id", get(event_one).options(discover_read))
        .at("/eventTypes", get(event_types).options(discover_read))
        .at("/eventTypes/:t", get(event_type).options(discover_read))
        .at(
            "/eventTypes/:t/events",
            get(events_of_type).options(discover_read),
        )
        .at(
            "/queries",
            get(named::list).post(named::create).options(discover_write),
        )
        .at(
            "/queries/:name",
            get(named::one)
                .delete(named::remove)
                .options(discover_remove),
        )
        .at(
            "/queries/:name/events",
            get(named::events).options(discover_read),
        )
        .data(state)
        .boxed()
}

/// A `Response` with the GS1 headers.
fn answer(status: StatusCode, content_type: &str, body: String) -> Response {
    let mut r = Response::builder()
        .status(status)
        .content_type(content_type)
        .body(body);
    headers::standard(r.headers_mut());
    r
}

/// A query's events as an `EPCISQueryDocument` in `media`: EPCIS 1.2 XML when the request
/// asks for 1.2, which `GS1-EPCIS-Version` then says.
fn query_answer(
    req: &Request,
    events: &[rxledger_store::documents::LoggedJson],
    media: media::Media,
) -> Result<Response, EpcisProblem> {
    let epcis12 = headers::epcis12_answer(req.headers());
    let body = media::write(
        events,
        media,
        Document::Query,
        rxledger_store::now_ms(),
        epcis12,
    )?;
    let mut r = answer(StatusCode::OK, media.content_type(), body);
    if epcis12 {
        r.headers_mut().insert(
            "gs1-epcis-version",
            poem::http::HeaderValue::from_static(headers::EPCIS_12),
        );
    }
    Ok(r)
}

fn done(r: Result<Response, EpcisProblem>) -> Response {
    r.unwrap_or_else(|p| p.respond())
}

/// The caller, once it has paid `tokens` from its bucket (refused keys pay nothing).
async fn admit(st: &Epcis, req: &Request, tokens: f64) -> Result<Caller, EpcisProblem> {
    let h = req.headers();
    let xml = matches!(media::body_media(h), Ok(media::Media::Xml))
        || matches!(media::answer_media(h), Ok(media::Media::Xml));
    headers::negotiate(h, xml)?;
    Ok(crate::admit_tokens(&st.web, req, tokens).await?)
}

/// A further charge once the size of the work is known.
fn charge(st: &Epcis, c: &Caller, req: &Request, tokens: f64) -> Result<(), EpcisProblem> {
    if tokens <= 0.0 {
        return Ok(());
    }
    let bucket = crate::bucket_of(c, req);
    st.web
        .limiter
        .take(&bucket, tokens)
        .map_err(|s| crate::Problem::rate_limited(s).into())
}

/// An API key is needed.
fn keyed(c: &Caller) -> Result<(), EpcisProblem> {
    owner(c).map(|_| ())
}

/// The organization of the caller's key (which owns its named queries); a key is needed.
fn owner(c: &Caller) -> Result<String, EpcisProblem> {
    match c {
        Caller::Anonymous => Err(EpcisProblem::new(
            StatusCode::UNAUTHORIZED,
            Exception::Security,
            "UNAUTHENTICATED",
            "this resource needs an API key (Authorization: Bearer …)",
        )),
        Caller::Key { org_id, .. } => Ok(org_id.clone()),
    }
}

/// The organization a capture is attributed to: a trading partner's key.
fn capturer(c: &Caller) -> Result<String, EpcisProblem> {
    keyed(c)?;
    match c {
        Caller::Key { org_id, role, .. } if CAPTURE_ROLES.contains(role) => Ok(org_id.clone()),
        Caller::Key { role, .. } => Err(EpcisProblem::forbidden(format!(
            "the {} role may not capture events; trading partners' keys (MANUFACTURER, WHOLESALER, PHARMACY) do",
            role.as_str()
        ))),
        Caller::Anonymous => Err(EpcisProblem::forbidden("an API key is needed")),
    }
}

/// Capture bodies: what a client over the limit should do.
const SPLIT_THE_DOCUMENT: &str = "(GS1-EPCIS-Capture-File-Size-Limit): split the document";

/// Reads a body of at most `limit` bytes; a larger one is refused before it is read when
/// its `Content-Length` says so. `hint` follows the limit in the refusal.
async fn body_of(
    req: &Request,
    body: Body,
    limit: usize,
    hint: &str,
) -> Result<Vec<u8>, EpcisProblem> {
    let too_large = |n: Option<u64>| {
        EpcisProblem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Exception::CaptureLimitExceeded,
            "TOO_LARGE",
            match n {
                Some(n) => format!("the body is {n} bytes; at most {limit} are taken {hint}"),
                None => format!("the body is larger than {limit} bytes {hint}"),
            },
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(declared));
    }
    body.into_bytes_limit(limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large(None))
}

/// `POST /epcis/capture`: the document is captured as one job; 202 with its `Location` once
/// the job has finished (it runs on its own task, so a client that hangs up does not stop
/// it half-way).
#[handler]
async fn capture_post(req: &Request, body: Body, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(capture_document(st, req, body).await)
}

async fn capture_document(
    st: &Arc<Epcis>,
    req: &Request,
    body: Body,
) -> Result<Response, EpcisProblem> {
    let c = admit(st, req, 1.0).await?;
    let org = capturer(&c)?;
    let media = media::body_media(req.headers())?;
    let behaviour = Behaviour::parse(
        req.headers()
            .get("gs1-capture-error-behaviour")
            .and_then(|v| v.to_str().ok()),
    )?;
    // A malformed signature header is refused before the body is read.
    let signature = partner::header(req.headers())?;
    let bytes = body_of(req, body, CAPTURE_FILE_SIZE_LIMIT, SPLIT_THE_DOCUMENT).await?;
    let attestation = match signature {
        Some(h) => Some(partner::attest(&st.web.services, &org, h, &bytes, media).await?),
        None => None,
    };
    let events = media::read_document(&bytes, media)?;
    let signed = match attestation {
        Some(attestation) => Some(capture::Signed {
            attestation,
            org: org.clone(),
            document: bytes,
        }),
        None => {
            drop(bytes);
            None
        }
    };
    // One token per hundred events, charged before any of them is looked at.
    charge(st, &c, req, (events.len() / 100) as f64)?;
    let job = st
        .jobs
        .start(&org, behaviour, events.len(), rxledger_store::now_ms());
    let task = {
        let st = st.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            let outcome =
                capture::capture(&st.web.services, &org, events, behaviour, signed.as_ref()).await;
            st.jobs.finish(&id, outcome.ok(), rxledger_store::now_ms())
        })
    };
    let finished = task
        .await
        .map_err(EpcisProblem::internal)?
        .ok_or_else(|| EpcisProblem::internal("a capture job vanished while it ran"))?;
    let mut r = answer(
        StatusCode::ACCEPTED,
        "application/json",
        finished.to_json().to_string(),
    );
    set_location(&mut r, &format!("/epcis/capture/{}", finished.id));
    Ok(r)
}

fn set_location(r: &mut Response, path: &str) {
    if let Ok(v) = HeaderValue::from_str(path) {
        r.headers_mut().insert(header::LOCATION, v);
    }
}

/// `GET /epcis/capture/{id}`: a job of the caller's organization (or any, for regulators and
/// admins); another's is not found.
#[handler]
async fn capture_job(
    req: &Request,
    Path(id): Path<String>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            keyed(&c)?;
            let job = st
                .jobs
                .get(&id)
                .filter(|j| Sight::of(&c).party(&j.org))
                .ok_or_else(|| EpcisProblem::not_found(format!("no capture job {id:?}")))?;
            Ok(answer(
                StatusCode::OK,
                "application/json",
                job.to_json().to_string(),
            ))
        }
        .await,
    )
}

/// `GET /epcis/capture`: the caller's jobs, newest first.
#[handler]
async fn capture_list(
    req: &Request,
    Query(params): Query<Vec<(String, String)>>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            keyed(&c)?;
            let (per_page, token) = list_page(&params, MAX_JOBS_PER_PAGE, "capture jobs")?;
            let before = token
                .map(|t| {
                    t.parse::<u64>().map_err(|_| {
                        EpcisProblem::parameter("nextPageToken is not one this server gave")
                    })
                })
                .transpose()?;
            let sight = Sight::of(&c);
            let mut jobs = st
                .jobs
                .list(|j| sight.party(&j.org), before, per_page as usize + 1);
            let next = (jobs.len() as u64 > per_page).then(|| jobs[per_page as usize - 1].seq);
            jobs.truncate(per_page as usize);
            let body: Vec<Value> = jobs.iter().map(jobs::Job::to_json).collect();
            let mut r = answer(
                StatusCode::OK,
                "application/json",
                Value::Array(body).to_string(),
            );
            if let Some(seq) = next {
                link_next(
                    &mut r,
                    &format!("/epcis/capture?perPage={per_page}&nextPageToken={seq}"),
                );
            }
            Ok(r)
        }
        .await,
    )
}

/// The page of a list resource (capture jobs, named queries): `perPage` (1 to `max`) and
/// `nextPageToken`, and nothing else.
fn list_page(
    params: &[(String, String)],
    max: u64,
    what: &str,
) -> Result<(u64, Option<String>), EpcisProblem> {
    let mut per_page = query::DEFAULT_PER_PAGE;
    let mut token = None;
    for (k, v) in params {
        match k.as_str() {
            "perPage" => {
                per_page = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| EpcisProblem::parameter(format!("perPage must be 1 to {max}")))?
            }
            "nextPageToken" => token = Some(v.clone()),
            other => {
                return Err(EpcisProblem::parameter(format!(
                    "{other}: {what} take perPage and nextPageToken"
                )));
            }
        }
    }
    Ok((per_page, token))
}

fn link_next(r: &mut Response, url: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=\"next\"")) {
        r.headers_mut().insert(header::LINK, v);
    }
}

/// `POST /epcis/events`: one event, captured at once (rollback semantics): 201 with its
/// `Location`, 409 when it is in the log already, 400 when it is refused.
#[handler]
async fn events_post(req: &Request, body: Body, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            let org = capturer(&c)?;
            let media = media::body_media(req.headers())?;
            let signature = partner::header(req.headers())?;
            let bytes = body_of(req, body, EVENT_SIZE_LIMIT, SPLIT_THE_DOCUMENT).await?;
            let s = &st.web.services;
            let attestation = match signature {
                Some(h) => Some(partner::attest(s, &org, h, &bytes, media).await?),
                None => None,
            };
            let event = media::read_event(&bytes, media)?;
            let signed = attestation.map(|attestation| capture::Signed {
                attestation,
                org: org.clone(),
                document: bytes,
            });
            let outcome =
                capture::capture(s, &org, vec![event], Behaviour::Rollback, signed.as_ref())
                    .await?;
            if let Some(e) = outcome.errors.first() {
                return Err(EpcisProblem::validation(&e.code, e.detail.clone()));
            }
            if let Some(p) = outcome.recognised.first() {
                let id = rxledger_core::epcis::id_of_hash(&p.hash);
                let mut r = EpcisProblem::new(
                    StatusCode::CONFLICT,
                    Exception::ResourceAlreadyExists,
                    "DUPLICATE_EVENT",
                    format!("the event {id} is in the log already, at entry {}", p.entry),
                )
                .respond();
                set_location(&mut r, &event_path(&id));
                return Ok(r);
            }
            let Some(p) = outcome.appended.first() else {
                return Err(EpcisProblem::internal(
                    "a captured event was neither appended nor refused",
                ));
            };
            let position = appended_position(s, p).await?;
            let logged =
                documents::read(s.ledger.database(), &[((p.entry as i64, position), p.hash)])
                    .await
                    .map_err(EpcisProblem::internal)?;
            let shown = logged
                .first()
                .map(rxledger_graphql::epcis_doc::shown_event)
                .unwrap_or(Value::Null);
            let id = rxledger_core::epcis::id_of_hash(&p.hash);
            let mut r = answer(
                StatusCode::CREATED,
                Media::JsonLd.content_type(),
                shown.to_string(),
            );
            set_location(&mut r, &event_path(&id));
            Ok(r)
        }
        .await,
    )
}

/// Where in its entry an appended event is (one event, one entry: position 0, read back to
/// be sure).
async fn appended_position(
    s: &rxledger_graphql::Services,
    p: &capture::Placed,
) -> Result<i32, EpcisProblem> {
    let found = documents::find(s.ledger.database(), &[p.hash])
        .await
        .map_err(EpcisProblem::internal)?;
    found
        .get(&p.hash)
        .map(|(_, pos)| *pos)
        .ok_or_else(|| EpcisProblem::internal("an appended event is not indexed"))
}

/// `/epcis/events/{eventID}`, the ID percent-encoded.
fn event_path(id: &str) -> String {
    format!("/epcis/events/{}", percent_encode(id))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (a path segment the router left encoded).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `GET /epcis/events`: the simple event query.
#[handler]
async fn events_query(
    req: &Request,
    Query(params): Query<Vec<(String, String)>>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            run_query(st, req, &c, &params, &[], None).await
        }
        .await,
    )
}

/// `GET /epcis/eventTypes/{type}/events`: the query with `eventType` fixed.
#[handler]
async fn events_of_type(
    req: &Request,
    Path(t): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(EpcisProblem::not_found(format!("no event type {t:?}")));
            }
            run_query(st, req, &c, &params, &[("eventType", t.clone())], None).await
        }
        .await,
    )
}

/// One page of the query for an admitted caller: visibility is GraphQL `events`' own rule.
/// The next page's link repeats the parameters on `/epcis/events`, or, for a named query,
/// is `named`'s own resource (whose parameters are fixed).
async fn run_query(
    st: &Epcis,
    req: &Request,
    c: &Caller,
    params: &[(String, String)],
    fixed: &[(&str, String)],
    named: Option<&str>,
) -> Result<Response, EpcisProblem> {
    keyed(c)?;
    let answer_in = media::answer_media(req.headers())?;
    let mut parsed = query::parse(params, fixed)?;
    charge(st, c, req, (parsed.per_page / 100) as f64)?;
    let s = &st.web.services;
    parsed.filter.signers = signers(s, c).await?;
    let (events, next) = page(s, &parsed.filter, parsed.per_page, parsed.after).await?;
    let mut r = query_answer(req, &events, answer_in)?;
    if let Some(after) = next {
        let mut url = match named {
            Some(name) => format!("/epcis/queries/{name}/events?"),
            None => String::from("/epcis/events?"),
        };
        for (k, v) in parsed.defining.iter().filter(|_| named.is_none()) {
            url.push_str(&format!("{}={}&", percent_encode(k), percent_encode(v)));
        }
        url.push_str(&format!(
            "perPage={}&nextPageToken={}",
            parsed.per_page,
            query::token(after, &parsed.defining)
        ));
        link_next(&mut r, &url);
    }
    Ok(r)
}

/// The signers whose events `c` may see (`None`: all), as the store's filter takes them.
async fn signers(
    s: &rxledger_graphql::Services,
    c: &Caller,
) -> Result<Option<Vec<String>>, EpcisProblem> {
    Ok(Sight::of(c)
        .signers(s)
        .await?
        .map(|v| v.into_iter().collect()))
}

/// The page's events as logged (at most `per_page`, after `after`), and where the next page
/// starts (if there is one).
async fn page(
    s: &rxledger_graphql::Services,
    filter: &rxledger_store::packs::EventFilter,
    per_page: u64,
    after: Option<(i64, i32)>,
) -> Result<(Vec<LoggedJson>, Option<(i64, i32)>), EpcisProblem> {
    let mut rows = s
        .packs
        .events_page(filter, per_page + 1, after)
        .await
        .map_err(rxledger_graphql::ApiError::from)?;
    let has_next = rows.len() as u64 > per_page;
    rows.truncate(per_page as usize);
    let next = rows
        .last()
        .filter(|_| has_next)
        .map(|r| (r.entry_idx, r.position));
    let keys: Vec<((i64, i32), [u8; 32])> = rows
        .iter()
        .filter_map(|r| {
            let h = <[u8; 32]>::try_from(r.hash.as_slice()).ok()?;
            Some(((r.entry_idx, r.position), h))
        })
        .collect();
    let events = documents::read(s.ledger.database(), &keys)
        .await
        .map_err(rxledger_graphql::ApiError::from)?;
    Ok((events, next))
}

/// `GET /epcis/events/{eventID}`: one event the caller may see, else 404.
#[handler]
async fn event_one(req: &Request, Path(id): Path<String>, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            keyed(&c)?;
            let answer_in = media::answer_media(req.headers())?;
            let id = percent_decode(&id).unwrap_or(id);
            let not_found =
                || EpcisProblem::not_found(format!("no event {id:?} that this key may see"));
            let hash = rxledger_core::epcis::hash_of_id(&id).ok_or_else(not_found)?;
            let s = &st.web.services;
            let mut parsed = query::parse(&[], &[])?;
            parsed.filter.any_of.hashes = vec![hash];
            parsed.filter.signers = signers(s, &c).await?;
            let (events, _) = page(s, &parsed.filter, parsed.per_page, parsed.after).await?;
            if events.is_empty() {
                return Err(not_found());
            }
            query_answer(req, &events, answer_in)
        }
        .await,
    )
}

fn collection(members: &[&str]) -> String {
    json!({
        "@context": rxledger_graphql::epcis_doc::EPCIS_CONTEXT,
        "type": "Collection",
        "member": members,
    })
    .to_string()
}

/// `GET /epcis`: the top-level resources.
#[handler]
async fn top(req: &Request, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(
        async {
            admit(st, req, 1.0).await?;
            Ok(answer(
                StatusCode::OK,
                "application/json",
                collection(&["capture", "events", "eventTypes", "queries"]),
            ))
        }
        .await,
    )
}

/// `GET /epcis/eventTypes`.
#[handler]
async fn event_types(req: &Request, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(
        async {
            admit(st, req, 1.0).await?;
            Ok(answer(
                StatusCode::OK,
                "application/json",
                collection(EVENT_TYPES),
            ))
        }
        .await,
    )
}

/// `GET /epcis/eventTypes/{type}`: its sub-resources.
#[handler]
async fn event_type(req: &Request, Path(t): Path<String>, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(
        async {
            admit(st, req, 1.0).await?;
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(EpcisProblem::not_found(format!("no event type {t:?}")));
            }
            Ok(answer(
                StatusCode::OK,
                "application/json",
                collection(&["events"]),
            ))
        }
        .await,
    )
}

fn discovery(allow: &str, capture: bool) -> Response {
    let mut r = answer(StatusCode::NO_CONTENT, "application/json", String::new());
    if let Ok(v) = HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    if capture {
        headers::capture_limits(r.headers_mut());
    }
    r
}

#[handler]
fn discover_read() -> Response {
    discovery("OPTIONS, GET", false)
}

#[handler]
fn discover_write() -> Response {
    discovery("OPTIONS, GET, POST", false)
}

#[handler]
fn discover_remove() -> Response {
    discovery("OPTIONS, GET, DELETE", false)
}

#[handler]
fn discover_capture() -> Response {
    discovery("OPTIONS, GET, POST", true)
}
