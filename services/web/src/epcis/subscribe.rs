//! WebSocket subscriptions to a named query: `GET /epcis/queries/{name}/events?stream=true`
//! with a WebSocket upgrade pushes each new event matching the query, as an
//! `EPCISQueryDocument`, as the ledger appends it (docs/EPCIS.md has the wire format).
//!
//! The log is the queue. A subscription keeps a cursor (entry, position) and, whenever the
//! ledger's head moves, reads what matches after it with the very page query of
//! `GET /epcis/events` ([`super::page`]), for the caller as it stands now: its key is checked
//! again and its `Sight` asked again before each read, so a revoked key stops the stream and
//! what it sees is what `GET /epcis/events` would show it. Nothing is buffered per subscriber
//! beyond the one push being sent: a push of at most [`MAX_EVENTS_PER_PUSH`] events waits
//! until the socket takes it, and a reader that leaves one waiting [`SEND_TIMEOUT`] is
//! disconnected with a close frame that says so. A burst of appends is read in pages, so a
//! slow but live reader falls behind the log, never behind a queue in memory.
//!
//! Bounds: [`MAX_PER_ORG`] subscriptions per organisation and [`MAX_OPEN`] in all, per node,
//! refused before the upgrade; client messages (none are needed) of at most
//! [`MAX_CLIENT_MESSAGE`] bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use poem::http::{HeaderValue, StatusCode};
use poem::web::websocket::{Message, WebSocket, WebSocketConfig};
use poem::{IntoResponse as _, Request, Response};
use rxledger_store::documents::LoggedJson;
use rxledger_store::packs::EventFilter;
use rxledger_store::queries::NamedQuery;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::problem::EpcisProblem;
use super::{Epcis, headers, query};
use crate::session::Credential;

/// Subscriptions one organisation may hold open on one node.
pub const MAX_PER_ORG: usize = 8;
/// Subscriptions one node holds open at most.
pub const MAX_OPEN: usize = 64;
/// Events in one push at most; more new events are sent as several pushes.
pub const MAX_EVENTS_PER_PUSH: u64 = 100;
/// How long a push may wait for the reader before the subscription is closed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest message a client may send (clients need send none).
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// How often an idle subscription pings its client; one that has not been heard from (a
/// pong, or anything) since the ping before is closed, so a vanished peer frees its room.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// Appends closer together than this are read as one.
const COALESCE: Duration = Duration::from_millis(250);
/// How long the close frame may take before the connection is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The binding's schedule parameters: scheduled subscriptions are not offered.
const SCHEDULE: &[&str] = &[
    "second",
    "minute",
    "hour",
    "dayOfMonth",
    "month",
    "dayOfWeek",
];

/// The subscription parameters of `GET /epcis/queries/{name}/events`.
#[derive(Debug, Default, PartialEq)]
pub struct Controls {
    pub stream: bool,
    /// `initialRecordTime`: events recorded from then on are sent first.
    pub initial_record_ms: Option<i64>,
    given: bool,
}

impl Controls {
    /// The subscription controls among `params`, and the paging (`perPage`,
    /// `nextPageToken`); anything else is refused: a named query's filter is fixed.
    pub fn split(
        params: &[(String, String)],
    ) -> Result<(Controls, Vec<(String, String)>), EpcisProblem> {
        let bad = |detail: String| refused("BAD_SUBSCRIPTION", detail);
        let mut c = Controls::default();
        let mut paging = Vec::new();
        for (k, v) in params {
            c.given |= k != "perPage" && k != "nextPageToken";
            match (k.as_str(), v.as_str()) {
                ("stream", "true") => c.stream = true,
                ("stream", _) => return Err(bad("stream takes only true (a subscription to new events)".into())),
                ("initialRecordTime", t) => {
                    let ms = query::time(t, k).map_err(|p| bad(p.detail))?;
                    c.initial_record_ms = Some(ms);
                }
                ("reportIfEmpty", "false") => {}
                ("reportIfEmpty", _) => return Err(bad("reportIfEmpty applies to scheduled subscriptions, which are not offered: a stream pushes only events".into())),
                (s, _) if SCHEDULE.contains(&s) => return Err(bad(format!("{s}: scheduled subscriptions are not offered; subscribe with stream=true"))),
                ("perPage" | "nextPageToken", _) => paging.push((k.clone(), v.clone())),
                (other, _) => {
                    return Err(EpcisProblem::parameter(format!(
                        "{other}: a named query's parameters are fixed when it is created; its events take perPage and nextPageToken, or stream=true (and initialRecordTime) with a WebSocket upgrade"
                    )));
                }
            }
        }
        Ok((c, paging))
    }

    /// Whether no subscription parameter was given (a plain page of events).
    pub fn is_empty(&self) -> bool {
        !self.given
    }
}

fn refused(code: &str, detail: impl Into<String>) -> EpcisProblem {
    EpcisProblem::subscription(StatusCode::BAD_REQUEST, code, detail)
}

/// Opens a subscription: checks its controls and room for it, notes the head it starts
/// after, then upgrades. Nothing appended after the 101 answer can be missed.
pub async fn open(
    st: &Arc<Epcis>,
    req: &Request,
    row: NamedQuery,
    pairs: Vec<(String, String)>,
    controls: Controls,
    paging: Vec<(String, String)>,
    ws: Option<WebSocket>,
) -> Result<Response, EpcisProblem> {
    let Some(ws) = ws else {
        return Err(refused(
            "WEBSOCKET_REQUIRED",
            "stream=true subscribes over a WebSocket: send the upgrade (Upgrade: websocket)",
        ));
    };
    if !controls.stream {
        return Err(refused(
            "STREAM_REQUIRED",
            "a WebSocket subscription needs stream=true (scheduled subscriptions are not offered)",
        ));
    }
    if !paging.is_empty() {
        return Err(refused(
            "BAD_SUBSCRIPTION",
            format!(
                "perPage and nextPageToken page a query's results; a subscription pushes at most {MAX_EVENTS_PER_PUSH} events at a time"
            ),
        ));
    }
    let parsed = query::parse(&[], &query::fixed(&pairs))?;
    let credential = Credential::of(req)
        .ok_or_else(|| EpcisProblem::internal("a keyed caller carries no credential"))?;
    let held = st.hub.open(&row.org_id, &row.name)?;
    let mut head = st.web.services.ledger.subscribe();
    let size = head.borrow_and_update().size;
    let min_record_ms = controls
        .initial_record_ms
        .unwrap_or_else(rxledger_store::now_ms);
    let follow = Follow {
        st: st.clone(),
        credential,
        org: row.org_id,
        name: row.name,
        filter: parsed.filter,
        cursor: match controls.initial_record_ms {
            Some(_) => None,
            None => last_of(size),
        },
        catch_up: controls.initial_record_ms,
        head,
        id: held.id.clone(),
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE));
    let mut r = ws
        .config(config)
        .on_upgrade(move |socket| async move {
            let (mut sink, mut input) = socket.split();
            let ended = follow.run(&mut sink, &mut input, &held.closing).await;
            let (code, reason) = ended.close();
            tracing::info!(subscription = %held.id, code, reason, "EPCIS subscription closed");
            let close = sink.send(Message::close_with(code, reason));
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
            drop(held);
        })
        .into_response();
    headers::standard(r.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&rxledger_core::epcis::format_time(min_record_ms)) {
        r.headers_mut().insert("gs1-query-min-record-time", v);
    }
    Ok(r)
}

/// The cursor just past every entry below `size`.
fn last_of(size: u64) -> Option<(i64, i32)> {
    size.checked_sub(1).map(|last| (last as i64, i32::MAX))
}

/// Why a subscription ended, and what its close frame says.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client closed or went away.
    ClientLeft,
    /// The client sent a message over the bound, or broke the protocol.
    BadMessage,
    /// The named query was deleted.
    Deleted,
    /// A push waited [`SEND_TIMEOUT`] for the reader.
    SlowReader,
    /// Nothing was heard from the client between two pings.
    Silent,
    /// The key (or session) was refused when checked again: its code and why.
    Refused(&'static str, &'static str),
    /// The ledger's head is no longer published (the node is stopping).
    Stopping,
    /// The node failed (the operator's log has the cause).
    Internal,
}

impl Ended {
    /// The close frame: its code (RFC 6455 §7.4; 4404 is rxledger's) and a reason that
    /// starts with a stable code.
    pub fn close(&self) -> (u16, String) {
        match self {
            Ended::ClientLeft => (1000, String::new()),
            Ended::BadMessage => (
                1009,
                format!(
                    "BAD_MESSAGE: a client message broke the protocol or was over {MAX_CLIENT_MESSAGE} bytes (a subscriber need send nothing)"
                ),
            ),
            Ended::Deleted => (4404, "QUERY_DELETED: the named query was deleted".into()),
            Ended::SlowReader => (
                1008,
                format!(
                    "SLOW_READER: a push waited {} s to be read; reconnect with initialRecordTime to resume",
                    SEND_TIMEOUT.as_secs()
                ),
            ),
            Ended::Silent => (
                1008,
                format!(
                    "NO_PONG: no answer to a ping within {} s",
                    PING_EVERY.as_secs()
                ),
            ),
            Ended::Refused(code, why) => (1008, format!("{code}: {why}")),
            Ended::Stopping => (1001, "GOING_AWAY: the node is stopping".into()),
            Ended::Internal => (
                1011,
                "INTERNAL: internal error; the operator's log has the details".into(),
            ),
        }
    }
}

/// One subscription: what it follows and where it is.
struct Follow {
    st: Arc<Epcis>,
    credential: Credential,
    org: String,
    name: String,
    /// The query's filter, without the caller's visibility (asked before each read).
    filter: EventFilter,
    /// The last (entry, position) looked at.
    cursor: Option<(i64, i32)>,
    /// `initialRecordTime`, until the events recorded since then have been sent.
    catch_up: Option<i64>,
    head: watch::Receiver<rxledger_store::SignedHead>,
    id: String,
}

impl Follow {
    /// Sends what is new, then again each time the head moves, until the subscription ends.
    async fn run<S, I>(mut self, sink: &mut S, input: &mut I, closing: &Notify) -> Ended
    where
        S: Sink<Message> + Unpin,
        I: Stream<Item = std::io::Result<Message>> + Unpin,
    {
        let start = tokio::time::Instant::now() + PING_EVERY;
        let mut ping = tokio::time::interval_at(start, PING_EVERY);
        let mut heard = true;
        loop {
            if let Err(ended) = self.drain(sink, closing).await {
                return ended;
            }
            loop {
                tokio::select! {
                    changed = self.head.changed() => match changed {
                        Ok(()) => break,
                        Err(_) => return Ended::Stopping,
                    },
                    m = input.next() => match m {
                        // Pings are answered by the protocol; anything else is ignored.
                        Some(Ok(m)) if !m.is_close() => heard = true,
                        Some(Err(e)) if e.kind() == std::io::ErrorKind::Other => {
                            return Ended::BadMessage;
                        }
                        _ => return Ended::ClientLeft,
                    },
                    _ = ping.tick() => {
                        if !std::mem::replace(&mut heard, false) {
                            return Ended::Silent;
                        }
                        let m = Message::ping(Vec::new());
                        if let Err(ended) = push(sink, m, closing, SEND_TIMEOUT).await {
                            return ended;
                        }
                    }
                    () = closing.notified() => return Ended::Deleted,
                }
            }
            tokio::time::sleep(COALESCE).await;
        }
    }

    /// Pushes every matching event after the cursor, a page at a time.
    async fn drain<S: Sink<Message> + Unpin>(
        &mut self,
        sink: &mut S,
        closing: &Notify,
    ) -> Result<(), Ended> {
        let s = &self.st.web.services;
        loop {
            let seen = self.head.borrow_and_update().size;
            let caller = self
                .credential
                .caller(&s.api_keys)
                .await
                .map_err(|r| match r.code {
                    "INTERNAL" => Ended::Internal,
                    code => Ended::Refused(code, r.message),
                })?;
            let mut filter = self.filter.clone();
            filter.signers = super::signers(s, &caller)
                .await
                .map_err(|_| Ended::Internal)?;
            if let Some(from) = self.catch_up {
                let own = filter.any_of.record_from_ms.unwrap_or(from);
                filter.any_of.record_from_ms = Some(own.max(from));
            }
            let (events, next) = super::page(s, &filter, MAX_EVENTS_PER_PUSH, self.cursor)
                .await
                .map_err(|_| Ended::Internal)?;
            if let Some(last) = events.iter().map(|e| (e.entry, e.position)).max() {
                self.still_defined().await?;
                let text = self.document(&events);
                push(sink, Message::text(text), closing, SEND_TIMEOUT).await?;
                self.cursor = self.cursor.max(Some(last));
            }
            if next.is_none() {
                // Every entry below `seen` has been read: the cursor may pass them.
                self.cursor = self.cursor.max(last_of(seen));
                self.catch_up = None;
                return Ok(());
            }
        }
    }

    /// Whether the query still exists (it may have been deleted through another node).
    async fn still_defined(&self) -> Result<(), Ended> {
        match self.st.queries.get(&self.org, &self.name).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Ended::Deleted),
            Err(e) => {
                tracing::error!(error = %e, "reading a named query failed");
                Err(Ended::Internal)
            }
        }
    }

    /// One push: the events as an `EPCISQueryDocument` naming this subscription.
    fn document(&self, events: &[LoggedJson]) -> String {
        let mut doc = rxledger_graphql::epcis_doc::query_document(events, rxledger_store::now_ms());
        if let Some(results) = doc
            .pointer_mut("/epcisBody/queryResults")
            .and_then(Value::as_object_mut)
        {
            results.insert("subscriptionID".into(), Value::String(self.id.clone()));
        }
        doc.to_string()
    }
}

/// Sends one push, waiting at most `patience` ([`SEND_TIMEOUT`]) for the reader to take it.
async fn push<S: Sink<Message> + Unpin>(
    sink: &mut S,
    m: Message,
    closing: &Notify,
    patience: Duration,
) -> Result<(), Ended> {
    tokio::select! {
        sent = tokio::time::timeout(patience, sink.send(m)) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ended::ClientLeft),
            Err(_) => Err(Ended::SlowReader),
        },
        () = closing.notified() => Err(Ended::Deleted),
    }
}

/// This node's open subscriptions: their bounds, and whom to close when a query goes.
#[derive(Default)]
pub struct Hub {
    open: Mutex<HashMap<String, Open>>,
    next: AtomicU64,
}

struct Open {
    org: String,
    name: String,
    closing: Arc<Notify>,
}

/// Room for one subscription, held until dropped.
pub struct Held {
    hub: Arc<Hub>,
    /// The subscription's ID (`subscriptionID` in its pushes).
    pub id: String,
    pub closing: Arc<Notify>,
}

impl Hub {
    /// Room for a subscription of `org` to its query `name`, or 429.
    pub fn open(self: &Arc<Self>, org: &str, name: &str) -> Result<Held, EpcisProblem> {
        let full = |detail: String| {
            EpcisProblem::subscription(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_SUBSCRIPTIONS",
                detail,
            )
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= MAX_OPEN {
            return Err(full(format!(
                "this node holds {MAX_OPEN} subscriptions, its most; try again later or another node"
            )));
        }
        if open.values().filter(|o| o.org == org).count() >= MAX_PER_ORG {
            return Err(full(format!(
                "an organisation may hold {MAX_PER_ORG} subscriptions open on one node; close one first"
            )));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = subscription_id(n);
        let closing = Arc::new(Notify::new());
        open.insert(
            id.clone(),
            Open {
                org: org.to_string(),
                name: name.to_string(),
                closing: closing.clone(),
            },
        );
        Ok(Held {
            hub: self.clone(),
            id,
            closing,
        })
    }

    /// Closes every subscription to `org`'s query `name` on this node.
    pub fn close_query(&self, org: &str, name: &str) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for o in open.values().filter(|o| o.org == org && o.name == name) {
            o.closing.notify_one();
        }
    }

    /// Subscriptions open on this node.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.hub.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&self.id);
    }
}

/// A subscription ID in the form of a version 4 UUID: random, with the node's counter
/// mixed in so that a failing random source still gives distinct IDs.
fn subscription_id(n: u64) -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        tracing::warn!("no OS randomness for a subscription ID; using the counter alone");
    }
    for (i, x) in n.to_be_bytes().iter().enumerate() {
        b[8 + i] ^= x;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A reader that never reads: the socket never takes a message.
    struct Stuck;

    impl Sink<Message> for Stuck {
        type Error = std::io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    /// A reader that reads: every message is taken at once.
    #[derive(Default)]
    struct Reads(Vec<Message>);

    impl Sink<Message> for Reads {
        type Error = std::io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<(), Self::Error> {
            self.0.push(m);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    const PATIENCE: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_reader_that_does_not_read_is_let_go() {
        let closing = Notify::new();
        let started = std::time::Instant::now();
        let r = push(&mut Stuck, Message::text("{}"), &closing, PATIENCE).await;
        assert_eq!(r, Err(Ended::SlowReader));
        assert!(started.elapsed() >= PATIENCE);
        let (code, reason) = Ended::SlowReader.close();
        assert_eq!(code, 1008);
        assert!(reason.starts_with("SLOW_READER: "), "{reason}");
        // A reader that reads gets the push at once.
        let mut reads = Reads::default();
        push(&mut reads, Message::text("{}"), &closing, PATIENCE)
            .await
            .unwrap();
        assert_eq!(reads.0.len(), 1);
    }

    #[tokio::test]
    async fn deleting_the_query_ends_a_waiting_push() {
        let closing = Notify::new();
        closing.notify_one();
        let r = push(&mut Stuck, Message::text("{}"), &closing, SEND_TIMEOUT).await;
        assert_eq!(r, Err(Ended::Deleted));
    }

    #[test]
    fn subscriptions_are_bounded_per_organisation_and_in_all() {
        let hub = Arc::new(Hub::default());
        let mut held: Vec<Held> = (0..MAX_PER_ORG)
            .map(|_| hub.open("acme", "q").unwrap())
            .collect();
        let refused = hub.open("acme", "other").err().unwrap();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, "TOO_MANY_SUBSCRIPTIONS");
        held.pop();
        held.push(hub.open("acme", "other").unwrap());
        let mut org = 0;
        while hub.len() < MAX_OPEN {
            held.extend((0..MAX_PER_ORG).filter_map(|_| hub.open(&format!("o{org}"), "q").ok()));
            org += 1;
        }
        assert!(hub.open("newcomer", "q").is_err());
        let ids: std::collections::HashSet<&str> = held.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), MAX_OPEN, "subscription IDs are distinct");
        held.clear();
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn deleting_a_query_closes_its_subscriptions_only() {
        let hub = Arc::new(Hub::default());
        let mine = hub.open("acme", "q").unwrap();
        let other = hub.open("acme", "r").unwrap();
        let same_name = hub.open("rival", "q").unwrap();
        hub.close_query("acme", "q");
        tokio::time::timeout(Duration::from_secs(5), mine.closing.notified())
            .await
            .expect("the subscription is told");
        for h in [&other, &same_name] {
            let told = tokio::time::timeout(Duration::from_millis(50), h.closing.notified()).await;
            assert!(told.is_err(), "another query's subscription is not closed");
        }
    }

    #[test]
    fn controls_are_the_bindings_or_refused() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (c, paging) = Controls::split(&p(&[("perPage", "10")])).unwrap();
        assert!(c.is_empty());
        assert_eq!(paging.len(), 1);
        let (c, _) = Controls::split(&p(&[
            ("stream", "true"),
            ("initialRecordTime", "2024-01-01T00:00:00Z"),
            ("reportIfEmpty", "false"),
        ]))
        .unwrap();
        assert!(c.stream && !c.is_empty());
        assert!(c.initial_record_ms.is_some());
        for (k, v, code) in [
            ("stream", "false", "BAD_SUBSCRIPTION"),
            ("hour", "1", "BAD_SUBSCRIPTION"),
            ("reportIfEmpty", "true", "BAD_SUBSCRIPTION"),
            ("initialRecordTime", "yesterday", "BAD_SUBSCRIPTION"),
            ("EQ_bizStep", "shipping", "BAD_QUERY_PARAMETER"),
        ] {
            let e = Controls::split(&p(&[(k, v)])).unwrap_err();
            assert_eq!(e.code, code, "{k}={v}");
        }
    }

    #[test]
    fn subscription_ids_look_like_uuids() {
        let id = subscription_id(7);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, subscription_id(7));
    }
}
