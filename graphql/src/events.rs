//! The EPCIS event query: events in ledger order, filtered as in the EPCIS query interface.

use async_graphql::{Context, Object, Result, SimpleObject};

use rxledger_core::gs1;

use crate::admin::services;
use crate::auth::{KEYED, require};
use crate::visibility::Sight;
use crate::{ApiError, Code};

/// EPCIS query filters (MATCH_anyEPC, GE_eventTime, LT_eventTime, EQ_bizStep, ...).
#[derive(async_graphql::InputObject, Default)]
pub struct EventFilterInput {
    /// An EPC (URN or Digital Link) named by the event in any role.
    pub any_epc: Option<String>,
    /// RFC 3339; events at or after.
    pub ge_event_time: Option<String>,
    /// RFC 3339; events before.
    pub lt_event_time: Option<String>,
    /// A CBV business step, bare (`shipping`) or as a URI.
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    /// A GLN (or `GLN.extension`).
    pub biz_location: Option<String>,
    pub read_point: Option<String>,
}

#[derive(SimpleObject)]
pub struct EventOut {
    /// CBV 2.0 event hash ID.
    pub event_id: String,
    pub entry_index: i64,
    pub position: i32,
    pub event_type: String,
    pub action: Option<String>,
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    pub event_time: String,
    pub read_point: Option<String>,
    pub biz_location: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct EventPage {
    pub nodes: Vec<EventOut>,
    /// Pass as `after` for the next page; null when there is none.
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
    /// Where the page's events are in the log, for `epcisDocument`.
    #[graphql(skip)]
    pub keys: Vec<((i64, i32), [u8; 32])>,
}

#[async_graphql::ComplexObject]
impl EventPage {
    /// The page's events as an EPCIS 2.0 JSON-LD `EPCISDocument` (its text), each event
    /// exactly as logged with its `recordTime` and `eventID`, for download and capture
    /// elsewhere (docs/EPCIS.md).
    async fn epcis_document(&self, ctx: &Context<'_>) -> Result<String> {
        let s = services(ctx);
        let events = rxledger_store::documents::read(s.ledger.database(), &self.keys)
            .await
            .map_err(ApiError::from)?;
        Ok(crate::epcis_doc::epcis_document(&events, rxledger_store::now_ms()).to_string())
    }
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// Events in ledger order, filtered as in the EPCIS query interface, `first` at a time (at
    /// most 1000). Regulators see every event; trading partners the events their own devices
    /// and API keys submitted.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
        #[graphql(default = 50)] first: i64,
        after: Option<String>,
    ) -> Result<EventPage> {
        let c = require(ctx, KEYED)?;
        let s = services(ctx);
        if !(1..=crate::MAX_PAGE).contains(&first) {
            return Err(
                ApiError::bad_request(format!("first must be 1 to {}", crate::MAX_PAGE)).into(),
            );
        }
        let f = filter.unwrap_or_default();
        let disposition = disposition(f.disposition.as_deref())?;
        let signers = Sight::of(c)
            .signers(s)
            .await?
            .map(|v| v.into_iter().collect());
        let filter = store_filter(f, disposition, signers)?;
        let cursor = after.as_deref().map(cursor).transpose()?;
        let rows = s
            .packs
            .events_page(&filter, first as u64 + 1, cursor)
            .await
            .map_err(ApiError::from)?;
        Ok(page(rows, first))
    }
}

/// A CBV disposition, bare or as a URI, in its bare form.
fn disposition(d: Option<&str>) -> Result<Option<String>, ApiError> {
    d.map(|d| {
        rxledger_core::epcis::Disposition::parse(d)
            .map(|x| x.as_str().to_string())
            .ok_or_else(|| {
                ApiError::bad_request(format!("disposition {d:?} is not a CBV 2.0 disposition"))
            })
    })
    .transpose()
}

/// The store's filter for the query's, limited to `signers` (`None`: every signer).
fn store_filter(
    f: EventFilterInput,
    disposition: Option<String>,
    signers: Option<Vec<String>>,
) -> Result<rxledger_store::packs::EventFilter, ApiError> {
    let time = |v: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|t| {
                rxledger_core::epcis::parse_time(t)
                    .map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
            })
            .transpose()
    };
    let step = |v: &Option<String>| -> Result<Option<String>, ApiError> {
        v.as_deref()
            .map(|b| {
                rxledger_core::epcis::BizStep::parse(b)
                    .map(|x| x.as_str().to_string())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "bizStep {b:?} is not a CBV 2.0 business step"
                        ))
                    })
            })
            .transpose()
    };
    Ok(rxledger_store::packs::EventFilter {
        any_epc: f
            .any_epc
            .as_deref()
            .map(|e| {
                gs1::parse_epc(e)
                    .map_err(|err| ApiError::new(Code::InvalidCode, format!("anyEpc: {err}")))
            })
            .transpose()?,
        from_ms: time(&f.ge_event_time, "geEventTime")?,
        until_ms: time(&f.lt_event_time, "ltEventTime")?,
        biz_step: step(&f.biz_step)?,
        disposition,
        biz_location: f.biz_location,
        read_point: f.read_point,
        signers,
        any_of: Default::default(),
    })
}

/// An `after` cursor: `entry:position` as `events` returned it.
fn cursor(after: &str) -> Result<(i64, i32), ApiError> {
    after
        .split_once(':')
        .and_then(|(i, p)| Some((i.parse::<i64>().ok()?, p.parse::<i32>().ok()?)))
        .ok_or_else(|| ApiError::bad_request("after: not a cursor returned by events"))
}

/// The first `first` of `rows` (which holds one more when there is a next page).
fn page(mut rows: Vec<rxledger_entities::event::Model>, first: i64) -> EventPage {
    let has_next_page = rows.len() as i64 > first;
    rows.truncate(first as usize);
    let end_cursor = rows
        .last()
        .filter(|_| has_next_page)
        .map(|r| format!("{}:{}", r.entry_idx, r.position));
    let keys = rows
        .iter()
        .filter_map(|r| {
            let h = <[u8; 32]>::try_from(r.hash.as_slice()).ok()?;
            Some(((r.entry_idx, r.position), h))
        })
        .collect();
    let nodes = rows
        .into_iter()
        .map(|r| EventOut {
            event_id: rxledger_core::merkle::hash_from_slice(&r.hash)
                .map(|h| rxledger_core::epcis::id_of_hash(&h))
                .unwrap_or_default(),
            entry_index: r.entry_idx,
            position: r.position,
            event_type: r.event_type,
            action: r.action,
            biz_step: r.biz_step,
            disposition: r.disposition,
            event_time: rxledger_core::epcis::format_time(r.event_time_ms),
            read_point: r.read_point,
            biz_location: r.biz_location,
        })
        .collect();
    EventPage {
        nodes,
        end_cursor,
        has_next_page,
        keys,
    }
}
