//! EPCIS 2.0 events (JSON / JSON-LD) as typed values, and their CBV 2.0 hash ID.
//!
//! Trading partners send events in the EPCIS 2.0 JSON binding. The verdict rules only need a
//! small, typed slice of each event (what happened, when, to which packs, where, between whom),
//! so [`parse_event`] turns the JSON into an [`Event`] whose identifiers are already checked GS1
//! types and whose vocabulary is a closed Rust enum: a typo in `bizStep` or a wrong check digit
//! is rejected at the edge with the JSON path of the offending field instead of silently
//! weakening a rule later.
//!
//! The hash ID ([`event_hash_id`]) is computed from the JSON itself, not from [`Event`], because
//! it must cover every field (including user extensions) exactly as the CBV defines.
//!
//! Only ObjectEvent, AggregationEvent and TransactionEvent are modelled: they are the events of
//! a medicine's life (commissioning, packing, shipping, receiving, dispensing, decommissioning).
//! TransformationEvent and AssociationEvent are rejected with [`EpcisError::Unsupported`], but
//! can still be hashed.

pub mod attestation;
mod canon;
mod document;
mod hash;
mod time;
pub mod xml;

/// The five EPCIS 2.0 event types (EPCIS 2.0 §7.4), as JSON-LD `type` and XML element names.
pub const EVENT_TYPES: &[&str] = &[
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
];

use serde_json::{Map, Value};

use crate::gs1::{self, CalendarDate, EpcId, Gs1Error, Lot, Sgln};

pub use document::{DocumentError, json_document_events};
pub use hash::{
    document_hash_ids, document_prehashes, event_hash, event_hash_id, event_prehash,
    hash_id_of_prehash,
};

/// Everything that makes an EPCIS event unusable for the ledger.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpcisError {
    #[error("{path}: required field is missing")]
    MissingField { path: String },
    #[error("{path}: expected {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    #[error("{path}: {got:?} is not valid, expected {expected}")]
    InvalidValue {
        path: String,
        expected: &'static str,
        got: String,
    },
    #[error("{path}: {value:?} is not a valid timestamp ({reason})")]
    BadTime {
        path: String,
        value: String,
        reason: &'static str,
    },
    #[error("{path}: {value:?} is not a CBV 2.0 business step")]
    UnknownBizStep { path: String, value: String },
    #[error("{path}: {value:?} is not a CBV 2.0 disposition")]
    UnknownDisposition { path: String, value: String },
    #[error("type: {value:?} is not an EPCIS 2.0 event type")]
    UnknownEventType { value: String },
    #[error(
        "{event_type} is valid EPCIS but not supported by rxledger (ObjectEvent, AggregationEvent and TransactionEvent are)"
    )]
    Unsupported { event_type: String },
    #[error("{path}: {source}")]
    Identifier {
        path: String,
        #[source]
        source: Gs1Error,
    },
    #[error("eventTime is {ahead_ms} ms in the future (allowed clock skew {max_skew_ms} ms)")]
    TimeInFuture { ahead_ms: i64, max_skew_ms: i64 },
    #[error("eventTime is before 2000-01-01, which no serialised medicine can have")]
    TimeTooOld { event_time_ms: i64 },
}

/// The EPCIS event types we model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Object,
    Aggregation,
    Transaction,
}

/// EPCIS `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Add,
    Observe,
    Delete,
}

macro_rules! cbv_vocab {
    ($(#[$doc:meta])* $name:ident, $urn:literal, $web:literal, { $($variant:ident = $word:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($variant),* }

        impl $name {
            /// Accepts the bare word (`shipping`), the CBV 1.x URN, the CBV 2.0 web URI
            /// (`https://ref.gs1.org/cbv/…`, also `https://gs1.org/voc/…`) and the `cbv:` CURIE.
            pub fn parse(s: &str) -> Option<Self> {
                let s = s.trim();
                let word = s
                    .strip_prefix($urn)
                    .or_else(|| s.strip_prefix(concat!("https://ref.gs1.org/cbv/", $web)))
                    .or_else(|| s.strip_prefix(concat!("https://gs1.org/voc/", $web)))
                    .or_else(|| s.strip_prefix(concat!("cbv:", $web)))
                    .unwrap_or(s);
                match word {
                    $($word => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The bare CBV word.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $word),* }
            }

            /// The CBV 2.0 web URI.
            pub fn uri(&self) -> String {
                format!(concat!("https://ref.gs1.org/cbv/", $web, "{}"), self.as_str())
            }
        }
    };
}

cbv_vocab!(
    /// CBV 2.0 §7.1 business steps. There is no "recall" step: recall is a disposition.
    BizStep, "urn:epcglobal:cbv:bizstep:", "BizStep-", {
    Accepting = "accepting", Arriving = "arriving", Assembling = "assembling", Collecting = "collecting",
    Commissioning = "commissioning", Consigning = "consigning", CreatingClassInstance = "creating_class_instance",
    CycleCounting = "cycle_counting", Decommissioning = "decommissioning", Departing = "departing",
    Destroying = "destroying", Disassembling = "disassembling", Dispensing = "dispensing", Encoding = "encoding",
    EnteringExiting = "entering_exiting", Holding = "holding", Inspecting = "inspecting", Installing = "installing",
    Killing = "killing", Loading = "loading", Other = "other", Packing = "packing", Picking = "picking",
    Receiving = "receiving", Removing = "removing", Repackaging = "repackaging", Repairing = "repairing",
    Replacing = "replacing", Reserving = "reserving", RetailSelling = "retail_selling", Sampling = "sampling",
    SensorReporting = "sensor_reporting", Shipping = "shipping", StagingOutbound = "staging_outbound",
    StockTaking = "stock_taking", Stocking = "stocking", Storing = "storing", Transporting = "transporting",
    Unloading = "unloading", Unpacking = "unpacking", VoidShipping = "void_shipping",
});

cbv_vocab!(
    /// CBV 2.0 §7.2 dispositions.
    Disposition, "urn:epcglobal:cbv:disp:", "Disp-", {
    Active = "active", Available = "available", CompletenessInferred = "completeness_inferred",
    CompletenessVerified = "completeness_verified", Conformant = "conformant", ContainerClosed = "container_closed",
    ContainerOpen = "container_open", Damaged = "damaged", Destroyed = "destroyed", Dispensed = "dispensed",
    Disposed = "disposed", Encoded = "encoded", Expired = "expired", InProgress = "in_progress",
    InTransit = "in_transit", Inactive = "inactive", MismatchClass = "mismatch_class",
    MismatchInstance = "mismatch_instance", MismatchQuantity = "mismatch_quantity",
    NeedsReplacement = "needs_replacement", NoPedigreeMatch = "no_pedigree_match",
    NonConformant = "non_conformant", NonSellableOther = "non_sellable_other",
    PartiallyDispensed = "partially_dispensed", Recalled = "recalled", Reserved = "reserved",
    RetailSold = "retail_sold", Returned = "returned", SellableAccessible = "sellable_accessible",
    SellableNotAccessible = "sellable_not_accessible", Stolen = "stolen", Unavailable = "unavailable",
    Unknown = "unknown",
});

cbv_vocab!(
    /// CBV 2.0 §7.4 source/destination types.
    SourceDestType, "urn:epcglobal:cbv:sdt:", "SDT-", {
    OwningParty = "owning_party", PossessingParty = "possessing_party", Location = "location",
});

/// Where an event happened: an SGLN for every pharma partner, but EPCIS also allows other URIs
/// (e.g. `geo:`), kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    Sgln(Sgln),
    Other(String),
}

/// A business transaction reference (`po`, `desadv`, …) and its identifier, both as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BizTransaction {
    pub kind: Option<String>,
    pub id: String,
}

/// A source or destination party/location; `id` is kept as sent (PGLN or SGLN URI).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Party {
    pub kind: SourceDestType,
    pub id: String,
}

/// A quantity element: a class (`lgtin`, GTIN pattern) and an optional amount.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub class: EpcId,
    pub quantity: Option<f64>,
    pub uom: Option<String>,
}

/// The typed slice of an EPCIS event that the rules use.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub action: Action,
    /// eventTime as UTC milliseconds since 1970.
    pub event_time_ms: i64,
    /// eventTimeZoneOffset in minutes east of UTC.
    pub time_zone_offset_min: i16,
    pub event_id: Option<String>,
    /// epcList (Object/Transaction) — the packs or cases acted on.
    pub epcs: Vec<EpcId>,
    /// parentID (Aggregation/Transaction).
    pub parent: Option<EpcId>,
    /// childEPCs (Aggregation).
    pub children: Vec<EpcId>,
    /// quantityList or childQuantityList.
    pub quantities: Vec<Quantity>,
    pub biz_step: Option<BizStep>,
    pub disposition: Option<Disposition>,
    pub persistent_set: Vec<Disposition>,
    pub persistent_unset: Vec<Disposition>,
    pub read_point: Option<Location>,
    pub biz_location: Option<Location>,
    pub biz_transactions: Vec<BizTransaction>,
    pub sources: Vec<Party>,
    pub destinations: Vec<Party>,
    /// ILMD `cbvmda:lotNumber` (or `lotNumber` with the 2.0 context).
    pub lot: Option<Lot>,
    /// ILMD `cbvmda:itemExpirationDate` / `itemExpirationDate` (xsd:date).
    pub item_expiration: Option<CalendarDate>,
}

/// Parses one EPCIS 2.0 event object.
pub fn parse_event(json: &Value) -> Result<Event, EpcisError> {
    let o = json.as_object().ok_or(EpcisError::WrongType {
        path: "$".into(),
        expected: "a JSON object",
    })?;
    let kind = event_kind(o)?;
    let (event_time_ms, time_zone_offset_min) = event_time(o)?;
    let action = action(o)?;

    let epcs = epc_list(o, "epcList")?;
    let children = epc_list(o, "childEPCs")?;
    let parent = opt_str(o, "parentID")?
        .map(|s| epc(s, "parentID"))
        .transpose()?;
    let qty_field = if kind == EventKind::Aggregation {
        "childQuantityList"
    } else {
        "quantityList"
    };
    let quantities = quantity_list(o, qty_field)?;

    match kind {
        EventKind::Object if epcs.is_empty() && quantities.is_empty() => {
            return Err(EpcisError::MissingField {
                path: "epcList (or quantityList)".into(),
            });
        }
        EventKind::Aggregation if action != Action::Observe && parent.is_none() => {
            return Err(EpcisError::MissingField {
                path: "parentID".into(),
            });
        }
        _ => {}
    }

    let biz_step = opt_str(o, "bizStep")?
        .map(|s| {
            BizStep::parse(s).ok_or_else(|| EpcisError::UnknownBizStep {
                path: "bizStep".into(),
                value: s.into(),
            })
        })
        .transpose()?;
    let disposition = opt_str(o, "disposition")?
        .map(|s| disposition(s, "disposition"))
        .transpose()?;
    let (persistent_set, persistent_unset) = persistent_disposition(o)?;
    let biz_transactions = typed_list(o, "bizTransactionList", "bizTransaction")?
        .into_iter()
        .map(|(kind, id, _)| BizTransaction { kind, id })
        .collect::<Vec<_>>();
    if kind == EventKind::Transaction && biz_transactions.is_empty() {
        return Err(EpcisError::MissingField {
            path: "bizTransactionList".into(),
        });
    }
    let sources = parties(o, "sourceList", "source")?;
    let destinations = parties(o, "destinationList", "destination")?;
    let (lot, item_expiration) = ilmd(o)?;

    Ok(Event {
        kind,
        action,
        event_time_ms,
        time_zone_offset_min,
        event_id: opt_str(o, "eventID")?.map(str::to_owned),
        epcs,
        parent,
        children,
        quantities,
        biz_step,
        disposition,
        persistent_set,
        persistent_unset,
        read_point: location(o, "readPoint")?,
        biz_location: location(o, "bizLocation")?,
        biz_transactions,
        sources,
        destinations,
        lot,
        item_expiration,
    })
}

/// The event type; TransformationEvent and AssociationEvent are refused as unsupported.
fn event_kind(o: &Map<String, Value>) -> Result<EventKind, EpcisError> {
    let type_str = req_str(o, "type")?;
    Ok(match type_str {
        "ObjectEvent" => EventKind::Object,
        "AggregationEvent" => EventKind::Aggregation,
        "TransactionEvent" => EventKind::Transaction,
        "TransformationEvent" | "AssociationEvent" => {
            return Err(EpcisError::Unsupported {
                event_type: type_str.to_owned(),
            });
        }
        other => {
            return Err(EpcisError::UnknownEventType {
                value: other.to_owned(),
            });
        }
    })
}

/// `eventTime` in milliseconds and `eventTimeZoneOffset` in minutes.
fn event_time(o: &Map<String, Value>) -> Result<(i64, i16), EpcisError> {
    let time_str = req_str(o, "eventTime")?;
    let event_time_ms = time::parse_ms(time_str).map_err(|e| EpcisError::BadTime {
        path: "eventTime".into(),
        value: time_str.to_owned(),
        reason: e.reason(),
    })?;
    let tz = req_str(o, "eventTimeZoneOffset")?;
    let time_zone_offset_min =
        time::parse_offset_minutes(tz).ok_or_else(|| EpcisError::InvalidValue {
            path: "eventTimeZoneOffset".into(),
            expected: "±hh:mm",
            got: tz.to_owned(),
        })?;
    Ok((event_time_ms, time_zone_offset_min))
}

fn action(o: &Map<String, Value>) -> Result<Action, EpcisError> {
    let action_str = req_str(o, "action")?;
    Ok(match action_str {
        "ADD" => Action::Add,
        "OBSERVE" => Action::Observe,
        "DELETE" => Action::Delete,
        other => {
            return Err(EpcisError::InvalidValue {
                path: "action".into(),
                expected: "ADD, OBSERVE or DELETE",
                got: other.into(),
            });
        }
    })
}

/// `persistentDisposition`: the dispositions it sets and unsets.
fn persistent_disposition(
    o: &Map<String, Value>,
) -> Result<(Vec<Disposition>, Vec<Disposition>), EpcisError> {
    Ok(match o.get("persistentDisposition") {
        None => (vec![], vec![]),
        Some(Value::Object(pd)) => (dispositions(pd, "set")?, dispositions(pd, "unset")?),
        Some(_) => {
            return Err(EpcisError::WrongType {
                path: "persistentDisposition".into(),
                expected: "an object",
            });
        }
    })
}

impl Event {
    /// Rejects event times in the future (beyond the allowed clock skew) or before 2000. The
    /// core has no clock: the caller passes "now".
    pub fn validate_time(&self, now_ms: i64, max_future_skew_ms: i64) -> Result<(), EpcisError> {
        const Y2000_MS: i64 = 946_684_800_000;
        if self.event_time_ms < Y2000_MS {
            return Err(EpcisError::TimeTooOld {
                event_time_ms: self.event_time_ms,
            });
        }
        let ahead_ms = self.event_time_ms - now_ms;
        if ahead_ms > max_future_skew_ms {
            return Err(EpcisError::TimeInFuture {
                ahead_ms,
                max_skew_ms: max_future_skew_ms,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Field helpers
// ---------------------------------------------------------------------------------------------

fn req_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a str, EpcisError> {
    opt_str(o, key)?.ok_or_else(|| EpcisError::MissingField {
        path: key.to_owned(),
    })
}

fn opt_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, EpcisError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(EpcisError::WrongType {
            path: key.to_owned(),
            expected: "a string",
        }),
    }
}

fn array<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], EpcisError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(EpcisError::WrongType {
            path: key.to_owned(),
            expected: "an array",
        }),
    }
}

fn epc(s: &str, path: &str) -> Result<EpcId, EpcisError> {
    gs1::parse_epc(s).map_err(|source| EpcisError::Identifier {
        path: path.to_owned(),
        source,
    })
}

fn epc_list(o: &Map<String, Value>, key: &str) -> Result<Vec<EpcId>, EpcisError> {
    array(o, key)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("{key}[{i}]");
            let s = v.as_str().ok_or(EpcisError::WrongType {
                path: path.clone(),
                expected: "an EPC URI string",
            })?;
            epc(s, &path)
        })
        .collect()
}

fn quantity_list(o: &Map<String, Value>, key: &str) -> Result<Vec<Quantity>, EpcisError> {
    array(o, key)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("{key}[{i}]");
            let q = v.as_object().ok_or(EpcisError::WrongType {
                path: path.clone(),
                expected: "an object",
            })?;
            let class = epc(
                req_str(q, "epcClass").map_err(|_| EpcisError::MissingField {
                    path: format!("{path}.epcClass"),
                })?,
                &format!("{path}.epcClass"),
            )?;
            let quantity = match q.get("quantity") {
                None => None,
                Some(n) => Some(n.as_f64().ok_or(EpcisError::WrongType {
                    path: format!("{path}.quantity"),
                    expected: "a number",
                })?),
            };
            let uom = opt_str(q, "uom").map_err(|_| EpcisError::WrongType {
                path: format!("{path}.uom"),
                expected: "a string",
            })?;
            Ok(Quantity {
                class,
                quantity,
                uom: uom.map(str::to_owned),
            })
        })
        .collect()
}

fn disposition(s: &str, path: &str) -> Result<Disposition, EpcisError> {
    Disposition::parse(s).ok_or_else(|| EpcisError::UnknownDisposition {
        path: path.to_owned(),
        value: s.to_owned(),
    })
}

fn dispositions(pd: &Map<String, Value>, key: &str) -> Result<Vec<Disposition>, EpcisError> {
    array(pd, key)
        .map_err(|_| EpcisError::WrongType {
            path: format!("persistentDisposition.{key}"),
            expected: "an array",
        })?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("persistentDisposition.{key}[{i}]");
            let s = v.as_str().ok_or(EpcisError::WrongType {
                path: path.clone(),
                expected: "a string",
            })?;
            disposition(s, &path)
        })
        .collect()
}

/// `[{type, <value_key>}]` lists: (type, value, path).
fn typed_list(
    o: &Map<String, Value>,
    key: &str,
    value_key: &str,
) -> Result<Vec<(Option<String>, String, String)>, EpcisError> {
    array(o, key)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("{key}[{i}]");
            let item = v.as_object().ok_or(EpcisError::WrongType {
                path: path.clone(),
                expected: "an object",
            })?;
            let value = match item.get(value_key) {
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(EpcisError::WrongType {
                        path: format!("{path}.{value_key}"),
                        expected: "a string",
                    });
                }
                None => {
                    return Err(EpcisError::MissingField {
                        path: format!("{path}.{value_key}"),
                    });
                }
            };
            let kind = match item.get("type") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(EpcisError::WrongType {
                        path: format!("{path}.type"),
                        expected: "a string",
                    });
                }
            };
            Ok((kind, value, path))
        })
        .collect()
}

fn parties(o: &Map<String, Value>, key: &str, value_key: &str) -> Result<Vec<Party>, EpcisError> {
    typed_list(o, key, value_key)?
        .into_iter()
        .map(|(kind, id, path)| {
            let kind_str = kind.ok_or_else(|| EpcisError::MissingField {
                path: format!("{path}.type"),
            })?;
            let kind =
                SourceDestType::parse(&kind_str).ok_or_else(|| EpcisError::InvalidValue {
                    path: format!("{path}.type"),
                    expected: "owning_party, possessing_party or location",
                    got: kind_str.clone(),
                })?;
            Ok(Party { kind, id })
        })
        .collect()
}

fn location(o: &Map<String, Value>, key: &str) -> Result<Option<Location>, EpcisError> {
    let Some(v) = o.get(key) else { return Ok(None) };
    let id = v
        .as_object()
        .and_then(|m| m.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| EpcisError::MissingField {
            path: format!("{key}.id"),
        })?;
    Location::parse(id, &format!("{key}.id")).map(Some)
}

impl Location {
    /// A location's `id` (`path` names it in errors): an SGLN, as URN or Digital Link, or
    /// any other URI, kept verbatim.
    pub fn parse(id: &str, path: &str) -> Result<Location, EpcisError> {
        let lower = id.to_ascii_lowercase();
        if lower.starts_with("urn:epc:id:sgln:")
            || lower.starts_with("http") && id.contains("/414/")
        {
            match gs1::parse_epc(id) {
                Ok(EpcId::Sgln(s)) => Ok(Location::Sgln(s)),
                Ok(_) => Err(EpcisError::InvalidValue {
                    path: path.to_owned(),
                    expected: "an SGLN",
                    got: id.to_owned(),
                }),
                Err(source) => Err(EpcisError::Identifier {
                    path: path.to_owned(),
                    source,
                }),
            }
        } else {
            Ok(Location::Other(id.to_owned()))
        }
    }
}

fn ilmd(o: &Map<String, Value>) -> Result<(Option<Lot>, Option<CalendarDate>), EpcisError> {
    let Some(v) = o.get("ilmd") else {
        return Ok((None, None));
    };
    let m = v.as_object().ok_or(EpcisError::WrongType {
        path: "ilmd".into(),
        expected: "an object",
    })?;
    let find = |names: &[&str]| -> Result<Option<(String, &str)>, EpcisError> {
        for n in names {
            match m.get(*n) {
                Some(Value::String(s)) => return Ok(Some((format!("ilmd.{n}"), s.as_str()))),
                Some(_) => {
                    return Err(EpcisError::WrongType {
                        path: format!("ilmd.{n}"),
                        expected: "a string",
                    });
                }
                None => {}
            }
        }
        Ok(None)
    };
    let lot = find(&["cbvmda:lotNumber", "lotNumber", "gs1:lotNumber"])?
        .map(|(path, s)| Lot::parse(s).map_err(|source| EpcisError::Identifier { path, source }))
        .transpose()?;
    let expiry = find(&[
        "cbvmda:itemExpirationDate",
        "itemExpirationDate",
        "gs1:expirationDate",
    ])?
    .map(|(path, s)| {
        parse_xsd_date(s).ok_or_else(|| EpcisError::InvalidValue {
            path,
            expected: "an xsd:date YYYY-MM-DD",
            got: s.to_owned(),
        })
    })
    .transpose()?;
    Ok((lot, expiry))
}

fn parse_xsd_date(s: &str) -> Option<CalendarDate> {
    let b = s.as_bytes();
    if b.len() < 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !s[..10]
            .bytes()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return None;
    }
    CalendarDate::new(
        s[..4].parse().ok()?,
        s[5..7].parse().ok()?,
        s[8..10].parse().ok()?,
    )
}

impl EventKind {
    /// The EPCIS `type` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Object => "ObjectEvent",
            EventKind::Aggregation => "AggregationEvent",
            EventKind::Transaction => "TransactionEvent",
        }
    }
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Add => "ADD",
            Action::Observe => "OBSERVE",
            Action::Delete => "DELETE",
        }
    }
}

impl Location {
    /// A compact key for indexes: the GLN (with `.extension` when there is one), or the URI.
    pub fn key(&self) -> String {
        match self {
            Location::Sgln(s) => match s.extension.as_deref().filter(|e| *e != "0") {
                Some(ext) => format!("{}.{ext}", s.gln),
                None => s.gln.to_string(),
            },
            Location::Other(uri) => uri.clone(),
        }
    }
}

impl EpcisError {
    /// The stable rejection code a device sees (docs/PROTOCOL.md lists them).
    pub fn code(&self) -> &'static str {
        crate::codes::RejectCode::from(self).as_str()
    }
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_time(s: &str) -> Result<i64, EpcisError> {
    time::parse_ms(s).map_err(|e| EpcisError::BadTime {
        path: String::new(),
        value: s.to_owned(),
        reason: e.reason(),
    })
}

/// Formats Unix milliseconds as `YYYY-MM-DDThh:mm:ss.mmmZ`.
pub fn format_time(ms: i64) -> String {
    time::format_ms(ms)
}

const HASH_ID_PREFIX: &str = "ni:///sha-256;";
const HASH_ID_SUFFIX: &str = "?ver=CBV2.0";

/// The 32-byte digest inside a `ni:///sha-256;<hex>?ver=CBV2.0` event hash ID.
pub fn hash_of_id(id: &str) -> Option<[u8; 32]> {
    let hex_part = id
        .strip_prefix(HASH_ID_PREFIX)?
        .strip_suffix(HASH_ID_SUFFIX)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// The event hash ID of a 32-byte digest.
pub fn id_of_hash(hash: &[u8; 32]) -> String {
    format!("{HASH_ID_PREFIX}{}{HASH_ID_SUFFIX}", hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shipping() -> Value {
        json!({
            "type": "ObjectEvent",
            "eventTime": "2024-05-01T10:00:00.000+02:00",
            "eventTimeZoneOffset": "+02:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.2017", "https://id.gs1.org/01/09506000134352/21/ABC"],
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "urn:epcglobal:cbv:disp:in_transit",
            "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"},
            "bizTransactionList": [{"type": "desadv", "bizTransaction": "urn:epcglobal:cbv:bt:0614141000005:1152"}],
            "sourceList": [{"type": "owning_party", "source": "urn:epc:id:pgln:0614141.00001"}],
            "destinationList": [{"type": "https://ref.gs1.org/cbv/SDT-location", "destination": "urn:epc:id:sgln:0614141.00777.0"}],
            "ilmd": {"cbvmda:lotNumber": "LOT1", "cbvmda:itemExpirationDate": "2026-12-31"}
        })
    }

    #[test]
    fn parses_a_shipping_event() {
        let e = parse_event(&shipping()).unwrap();
        assert_eq!(e.kind, EventKind::Object);
        assert_eq!(e.event_time_ms, 1_714_550_400_000);
        assert_eq!(e.time_zone_offset_min, 120);
        assert_eq!(e.biz_step, Some(BizStep::Shipping));
        assert_eq!(e.disposition, Some(Disposition::InTransit));
        assert_eq!(e.epcs.len(), 2);
        assert!(matches!(&e.epcs[0], EpcId::Sgtin(s) if s.gtin.as_str() == "10614141073464"));
        assert_eq!(e.sources[0].kind, SourceDestType::OwningParty);
        assert_eq!(e.destinations[0].kind, SourceDestType::Location);
        assert_eq!(e.lot.as_ref().map(Lot::as_str), Some("LOT1"));
        assert_eq!(e.item_expiration, CalendarDate::new(2026, 12, 31));
        assert!(matches!(e.read_point, Some(Location::Sgln(_))));
        assert!(e.validate_time(1_714_550_400_000, 0).is_ok());
        assert!(matches!(
            e.validate_time(1_714_550_000_000, 1_000),
            Err(EpcisError::TimeInFuture { .. })
        ));
    }

    #[test]
    fn bizstep_forms_normalise() {
        for s in [
            "shipping",
            "urn:epcglobal:cbv:bizstep:shipping",
            "https://ref.gs1.org/cbv/BizStep-shipping",
        ] {
            assert_eq!(BizStep::parse(s), Some(BizStep::Shipping), "{s}");
        }
        assert_eq!(BizStep::parse("recall"), None);
        assert_eq!(Disposition::parse("recalled"), Some(Disposition::Recalled));
    }

    #[test]
    fn rejects_bad_check_digit_in_epc_list() {
        let mut e = shipping();
        e["epcList"][1] = json!("https://id.gs1.org/01/09506000134353/21/ABC");
        assert_eq!(
            parse_event(&e),
            Err(EpcisError::Identifier {
                path: "epcList[1]".into(),
                source: Gs1Error::BadCheckDigit {
                    ai: "01",
                    expected: '2',
                    got: '3'
                }
            })
        );
    }

    #[test]
    fn rejects_unknown_bizstep() {
        let mut e = shipping();
        e["bizStep"] = json!("recall");
        assert_eq!(
            parse_event(&e),
            Err(EpcisError::UnknownBizStep {
                path: "bizStep".into(),
                value: "recall".into()
            })
        );
    }

    #[test]
    fn rejects_missing_event_time() {
        let mut e = shipping();
        e.as_object_mut().unwrap().remove("eventTime");
        assert_eq!(
            parse_event(&e),
            Err(EpcisError::MissingField {
                path: "eventTime".into()
            })
        );
    }

    #[test]
    fn rejects_malformed_time() {
        let mut e = shipping();
        e["eventTime"] = json!("2024-13-01T10:00:00Z");
        assert!(
            matches!(parse_event(&e), Err(EpcisError::BadTime { path, .. }) if path == "eventTime")
        );
        e["eventTime"] = json!("yesterday");
        assert!(matches!(parse_event(&e), Err(EpcisError::BadTime { .. })));
    }

    #[test]
    fn rejects_transformation_clearly() {
        let e = json!({"type": "TransformationEvent", "eventTime": "2024-05-01T10:00:00Z", "eventTimeZoneOffset": "+00:00"});
        assert_eq!(
            parse_event(&e),
            Err(EpcisError::Unsupported {
                event_type: "TransformationEvent".into()
            })
        );
    }

    #[test]
    fn transaction_needs_biz_transactions() {
        let mut e = shipping();
        e["type"] = json!("TransactionEvent");
        e.as_object_mut().unwrap().remove("bizTransactionList");
        assert_eq!(
            parse_event(&e),
            Err(EpcisError::MissingField {
                path: "bizTransactionList".into()
            })
        );
    }
}
