//! What one GraphQL operation may cost, decided before it runs, and what its answer may weigh.
//!
//! async-graphql's complexity limit counts each selected field once, so a thousand aliases of
//! `entries(count: 1000)` cost 2,000 "points" and ran, answering 749 MB. This guard prices
//! what a request would make the node do instead:
//!
//! - a field costs its weight ([`weight`]: 1 for a plain field, more for `verify`, proofs,
//!   state changes, raw bytes) plus, for a list, its page size (`count` / `first`, or the
//!   argument's default) times the cost of one item's selection; a list without a size
//!   argument is priced at [`LIST_GUESS`] items;
//! - aliases and fragments are priced like separate fields, because they run separately;
//! - an expensive field (weight at least [`EXPENSIVE`]) may run at most
//!   `max_same_expensive` times in one operation, whatever its aliases;
//! - introspection costs a fixed amount (its answer is bounded by the schema).
//!
//! A request over `max_cost` is refused with `QUERY_TOO_COSTLY` before validation and
//! execution. A request within budget takes `ceil(cost / cost_per_token)` tokens from its
//! payer's rate-limit bucket ([`Payer`], attached by the HTTP handler to the request and by
//! the WebSocket handler to the connection, so each WebSocket operation is charged); an empty
//! bucket refuses it with `RATE_LIMITED`. While it runs, the scalars it has produced are
//! counted, and once they pass `max_response_bytes` every further field fails at once and the
//! answer is replaced by one `RESPONSE_TOO_LARGE` error.
//!
//! Pricing walks the parsed document once (a bounded number of steps, [`MAX_STEPS`]), which
//! costs microseconds against the milliseconds of the cheapest resolver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextResolve, ResolveInfo,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::registry::{MetaTypeName, Registry};
use async_graphql::{
    ErrorExtensions as _, Name, Pos, Positioned, Request, Response, ServerError, ServerResult,
    Value, Variables,
};

use crate::ratelimit::Limiter;

/// The limits of one request; the defaults are documented in docs/SECURITY.md.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Largest cost of one operation.
    pub max_cost: u64,
    /// Times one expensive field may run in one operation (aliases included).
    pub max_same_expensive: u64,
    /// Largest answer, counted as the bytes of its scalars and field names.
    pub max_response_bytes: usize,
    /// Cost points per rate-limit token.
    pub cost_per_token: u64,
}

impl Default for Limits {
    /// 25,000 points fit a page of 1,000 raw entries with every field (14,005) or some 75
    /// full verdicts; 10 runs of one expensive field; 16 MiB answers; 500 points a token, so
    /// the pharmacist's full `verify` (353) takes one.
    fn default() -> Self {
        Limits {
            max_cost: 25_000,
            max_same_expensive: 10,
            max_response_bytes: 16 << 20,
            cost_per_token: 500,
        }
    }
}

/// Stable codes of the refusals this guard gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitCode {
    QueryTooCostly,
    ResponseTooLarge,
    RateLimited,
}

impl LimitCode {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitCode::QueryTooCostly => "QUERY_TOO_COSTLY",
            LimitCode::ResponseTooLarge => "RESPONSE_TOO_LARGE",
            LimitCode::RateLimited => "RATE_LIMITED",
        }
    }
}

/// Who pays for a request: a bucket of the node's limiter (`key:<id>`, or the client IP for
/// anonymous callers). Requests without one (run in-process, as the benchmarks do) are
/// priced and capped but not charged.
#[derive(Clone)]
pub struct Payer {
    pub bucket: String,
    pub limiter: Arc<Limiter>,
}

/// A field of this weight or more is expensive: its runs per operation are capped.
pub const EXPENSIVE: u64 = 20;
/// Items assumed for a list field without a size argument (evidence, timeline, reasons, ...).
pub const LIST_GUESS: u64 = 20;
/// Items assumed for a size argument that is left out and has no default (`alerts`' 100).
const DEFAULT_PAGE: u64 = 100;
/// What `__schema` costs; `__type` costs a tenth.
const INTROSPECTION: u64 = 200;
/// Steps the pricing walk may take; a document that needs more is refused as too costly.
pub const MAX_STEPS: u32 = 100_000;
/// Fragment nesting the walk follows.
const MAX_NESTING: u32 = 64;

/// The weight of a field itself, before its selection: what resolving it costs the node
/// beyond copying a value, in units of a plain field.
pub fn weight(parent: &str, field: &str) -> u64 {
    match (parent, field) {
        // A verdict reads a pack's events and its containers' and builds proofs.
        ("Query", "verify" | "provenance") => 20,
        // Every pack of a lot.
        ("Query", "lot") => 200,
        ("Query", "events" | "alerts") => 10,
        ("Query", "entries" | "inclusionProof" | "consistencyProof" | "ledgerStatus") => 5,
        ("Mutation", "dispense" | "undoDispense" | "reportStolen" | "destroy") => 50,
        ("Mutation", "recallLot") => 500,
        // Every pack of a lot, derived, and a bundle of proofs.
        ("Mutation", "traceRequest") => 1_000,
        ("Query", "traceRequests" | "alertCases") => 10,
        // A case's records, read back from the log and checked against its key.
        ("AlertCase", "records") => 10,
        // A pack's, a case's or a lot's events, and a signed entry.
        ("Mutation", "quarantine" | "releaseQuarantine") => 100,
        ("Mutation", "runAudit") => 5_000,
        ("Mutation", _) => 20,
        ("Live", _) => 10,
        // Up to 64 KiB of envelope each.
        ("LedgerEntry", "dataBase64") | ("Alert", "rawBase64") => 10,
        // A page of events read back from their entries, as one EPCIS document.
        ("EventPage", "epcisDocument") => 100,
        ("Evidence", "proof") | ("InclusionProof" | "ConsistencyProof", "hashes") => 2,
        _ => 1,
    }
}

/// Why a document was refused before it ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooCostly { cost: u64, max: u64 },
    TooManyRuns { field: String, runs: u64, max: u64 },
    TooComplex,
}

impl Refusal {
    fn message(&self) -> String {
        match self {
            Refusal::TooCostly { cost, max } => format!(
                "this query would cost {cost} points, more than the {max} one request may; \
                 ask for smaller pages or split it"
            ),
            Refusal::TooManyRuns { field, runs, max } => format!(
                "`{field}` would run {runs} times in one request (aliases included); at most \
                 {max} are allowed, send the rest in further requests"
            ),
            Refusal::TooComplex => {
                "this document takes too many steps to price; simplify its fragments".into()
            }
        }
    }
}

/// The cost of the operation `name` of `doc` (every operation's highest when `name` is not
/// one of them: validation will refuse the request anyway).
pub fn price(
    registry: &Registry,
    doc: &ExecutableDocument,
    name: Option<&str>,
    variables: &Variables,
    limits: &Limits,
) -> Result<u64, Refusal> {
    let ops: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(map) => match name.and_then(|n| map.get(n)) {
            Some(op) => vec![op],
            None => map.values().collect(),
        },
    };
    let mut highest = 0;
    for op in ops {
        let root = match op.node.ty {
            OperationType::Query => Some(registry.query_type.as_str()),
            OperationType::Mutation => registry.mutation_type.as_deref(),
            OperationType::Subscription => registry.subscription_type.as_deref(),
        };
        let Some(root) = root else { continue };
        let mut walk = Walk {
            registry,
            fragments: &doc.fragments,
            variables,
            runs: HashMap::new(),
            steps: 0,
            open: Vec::new(),
        };
        let cost = walk.set(&op.node.selection_set.node, root, 1, None)?;
        if let Some((field, runs)) = walk.runs.iter().max_by_key(|(_, r)| **r)
            && *runs > limits.max_same_expensive
        {
            return Err(Refusal::TooManyRuns {
                field: field.clone(),
                runs: *runs,
                max: limits.max_same_expensive,
            });
        }
        highest = highest.max(cost);
    }
    if highest > limits.max_cost {
        return Err(Refusal::TooCostly {
            cost: highest,
            max: limits.max_cost,
        });
    }
    Ok(highest)
}

struct Walk<'a> {
    registry: &'a Registry,
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    /// Runs of each expensive field (`Type.field`).
    runs: HashMap<String, u64>,
    steps: u32,
    /// Fragments being expanded, to stop at a cycle (which validation refuses later).
    open: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    /// The cost of `set` on type `ty`, when the set itself is resolved `times` times. `page`
    /// is the size argument of a connection (`events(first:)`) whose lists are in `set`.
    fn set(
        &mut self,
        set: &'a SelectionSet,
        ty: &str,
        times: u64,
        page: Option<u64>,
    ) -> Result<u64, Refusal> {
        let mut cost = 0u64;
        for sel in &set.items {
            self.steps += 1;
            if self.steps > MAX_STEPS || self.open.len() as u32 > MAX_NESTING {
                return Err(Refusal::TooComplex);
            }
            let c = match &sel.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    self.field(f, ty, times, page)?
                }
                Selection::InlineFragment(i) => {
                    let on = i.node.type_condition.as_ref();
                    let on = on.map_or(ty, |c| c.node.on.node.as_str());
                    self.set(&i.node.selection_set.node, on, times, page)?
                }
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    match self.fragments.get(name) {
                        Some(frag) if !self.open.contains(&name) => {
                            self.open.push(name);
                            let on = frag.node.type_condition.node.on.node.as_str();
                            let c = self.set(&frag.node.selection_set.node, on, times, page);
                            self.open.pop();
                            c?
                        }
                        _ => 0,
                    }
                }
            };
            cost = cost.saturating_add(c);
        }
        Ok(cost)
    }

    fn field(
        &mut self,
        f: &'a async_graphql::parser::types::Field,
        ty: &str,
        times: u64,
        page: Option<u64>,
    ) -> Result<u64, Refusal> {
        let name = f.name.node.as_str();
        match name {
            "__typename" => return Ok(0),
            "__schema" => return Ok(INTROSPECTION),
            "__type" => return Ok(INTROSPECTION / 10),
            _ => {}
        }
        let Some(meta) = self
            .registry
            .types
            .get(ty)
            .and_then(|t| t.field_by_name(name))
        else {
            return Ok(1); // an unknown field: validation refuses it
        };
        let w = weight(ty, name);
        if w >= EXPENSIVE {
            let runs = self.runs.entry(format!("{ty}.{name}")).or_insert(0);
            *runs = runs.saturating_add(times);
        }
        let child = MetaTypeName::concrete_typename(&meta.ty);
        let size = ["count", "first"].iter().find_map(|arg| {
            f.get_argument(arg)
                .and_then(|v| {
                    let vars = self.variables;
                    let v = v
                        .node
                        .clone()
                        .into_const_with(|name| vars.get(&name).cloned().ok_or(()));
                    match v {
                        Ok(Value::Number(n)) => n.as_i64(),
                        _ => None,
                    }
                })
                .or_else(|| meta.args.get(*arg)?.default_value.as_ref()?.parse().ok())
        });
        let sized = meta.args.contains_key("count") || meta.args.contains_key("first");
        // Resolvers refuse larger pages themselves, with their own message.
        let size = size.map(|n| n.clamp(0, crate::MAX_PAGE) as u64);
        let size = size.or(sized.then_some(DEFAULT_PAGE));
        let (items, inner_page) = match (is_list(&meta.ty), size) {
            (true, Some(n)) => (n, None),
            (true, None) if f.selection_set.node.items.is_empty() => (1, None),
            (true, None) => (page.unwrap_or(LIST_GUESS), None),
            // A connection: its size applies to the list inside it.
            (false, Some(n)) => (1, Some(n)),
            (false, None) => (1, None),
        };
        let each = self.set(
            &f.selection_set.node,
            child,
            times.saturating_mul(items),
            inner_page,
        )?;
        Ok(w.saturating_add(items.saturating_mul(each)))
    }
}

fn is_list(ty: &str) -> bool {
    match MetaTypeName::create(ty) {
        MetaTypeName::List(_) => true,
        MetaTypeName::NonNull(inner) => is_list(inner),
        MetaTypeName::Named(_) => false,
    }
}

/// The schema extension. It also consults the parsed-query cache, so that both cost one layer
/// of async-graphql's per-field extension chain rather than two (each layer boxes a future
/// for every field resolved, which `verify`'s throughput notices).
pub struct CostGuard {
    pub limits: Limits,
    pub cache: crate::querycache::QueryCache,
}

impl ExtensionFactory for CostGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest {
            cache: self.cache.create(),
            limits: self.limits,
            operation: Mutex::new(None),
            executing: AtomicBool::new(false),
            bytes: AtomicUsize::new(0),
            over: AtomicBool::new(false),
        })
    }
}

struct PerRequest {
    /// The query cache's extension, whose `parse_query` this one wraps.
    cache: Arc<dyn Extension>,
    limits: Limits,
    operation: Mutex<Option<String>>,
    /// Set while a query or mutation runs: only those answers are counted (a subscription's
    /// events are small, and a long-lived one must not add up to the cap).
    executing: AtomicBool,
    bytes: AtomicUsize,
    over: AtomicBool,
}

fn refusal(code: LimitCode, message: impl Into<String>) -> ServerError {
    async_graphql::Error::new(message)
        .extend_with(|_, e| e.set("code", code.as_str()))
        .into_server_error(Pos::default())
}

impl PerRequest {
    /// Charges `tokens` to the request's payer, if it has one.
    fn charge(&self, ctx: &ExtensionContext<'_>, tokens: u64) -> ServerResult<()> {
        let Some(payer) = ctx.data_opt::<Payer>() else {
            return Ok(());
        };
        payer
            .limiter
            .take(&payer.bucket, tokens as f64)
            .map_err(|wait| {
                let after = wait.ceil().max(1.0) as u64;
                async_graphql::Error::new(format!(
                    "too many requests for this API key or address; retry after {after} s"
                ))
                .extend_with(|_, e| {
                    e.set("code", LimitCode::RateLimited.as_str());
                    e.set("retryAfter", after);
                })
                .into_server_error(Pos::default())
            })
    }
}

/// The size a resolved value adds to the answer: its scalars (lists and objects are counted
/// through their items and fields, which pass through the hook themselves).
fn scalar_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Binary(b) => b.len() * 4 / 3 + 2,
        Value::Enum(e) => e.len() + 2,
        Value::Number(_) => 8,
        Value::Boolean(_) | Value::Null => 5,
        Value::List(_) | Value::Object(_) => 0,
    }
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *self.operation.lock().unwrap_or_else(|p| p.into_inner()) = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<async_graphql::parser::types::ExecutableDocument> {
        let doc = match self.cache.parse_query(ctx, query, variables, next).await {
            Ok(doc) => doc,
            Err(e) => {
                // A refused parse still cost the node one parse.
                self.charge(ctx, 1)?;
                return Err(e);
            }
        };
        let operation = self
            .operation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let registry = &ctx.schema_env.registry;
        match price(
            registry,
            &doc,
            operation.as_deref(),
            variables,
            &self.limits,
        ) {
            Ok(cost) => {
                self.charge(ctx, cost.div_ceil(self.limits.cost_per_token.max(1)).max(1))?;
                Ok(doc)
            }
            Err(r) => {
                self.charge(ctx, 1)?;
                Err(refusal(LimitCode::QueryTooCostly, r.message()))
            }
        }
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        self.executing.store(true, Ordering::Relaxed);
        let resp = next.run(ctx, operation_name).await;
        if self.over.load(Ordering::Relaxed) {
            return Response::from_errors(vec![refusal(
                LimitCode::ResponseTooLarge,
                format!(
                    "the answer would be larger than {} MiB; ask for smaller pages or fewer fields",
                    self.limits.max_response_bytes >> 20
                ),
            )]);
        }
        resp
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if !self.executing.load(Ordering::Relaxed) {
            return next.run(ctx, info).await;
        }
        let too_large = || refusal(LimitCode::ResponseTooLarge, "the answer is too large");
        if self.over.load(Ordering::Relaxed) {
            return Err(too_large());
        }
        let key = info.alias.unwrap_or(info.name).len() + 3;
        let v = next.run(ctx, info).await?;
        let add = key + v.as_ref().map_or(0, scalar_bytes);
        if self.bytes.fetch_add(add, Ordering::Relaxed) + add > self.limits.max_response_bytes {
            self.over.store(true, Ordering::Relaxed);
            return Err(too_large());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Schema;

    /// Prices each document against the real schema's registry, and refuses it so nothing
    /// runs (the schema has no services).
    struct Probe(Arc<Mutex<Option<Result<u64, Refusal>>>>);

    impl ExtensionFactory for Probe {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(Probe(self.0.clone()))
        }
    }

    #[async_trait::async_trait]
    impl Extension for Probe {
        async fn parse_query(
            &self,
            ctx: &ExtensionContext<'_>,
            query: &str,
            variables: &Variables,
            next: NextParseQuery<'_>,
        ) -> ServerResult<ExecutableDocument> {
            let doc = next.run(ctx, query, variables).await?;
            let p = price(
                &ctx.schema_env.registry,
                &doc,
                None,
                variables,
                &Limits::default(),
            );
            *self.0.lock().unwrap() = Some(p);
            Err(ServerError::new("priced", None))
        }
    }

    async fn cost_of(query: &str, vars: serde_json::Value) -> Result<u64, Refusal> {
        let out = Arc::new(Mutex::new(None));
        let schema = Schema::build(
            crate::Query::default(),
            crate::Mutation::default(),
            crate::live::Live,
        )
        .extension(Probe(out.clone()))
        .finish();
        let req = Request::new(query).variables(Variables::from_json(vars));
        let resp = schema.execute(req).await;
        let priced = out.lock().unwrap().take();
        priced.unwrap_or_else(|| panic!("not priced: {:?}", resp.errors))
    }

    const WEB_VERIFY: &str = "query($code: String!) { verify(code: $code) { verdict dispensable \
        reasons { code severity message evidence } product { gtin serial lot expiry } status \
        evidence { index leafHash treeSize proof } checkpointSize checkpointNote \
        timeline { index eventTime eventType action bizStep disposition inherited } } }";

    #[tokio::test]
    async fn everyday_queries_fit_with_room_and_a_verify_takes_one_token() {
        let limits = Limits::default();
        let v = cost_of(WEB_VERIFY, serde_json::json!({"code": "x"}))
            .await
            .unwrap();
        assert_eq!(v, 353, "the pharmacist's full verify");
        assert!(v <= limits.cost_per_token);
        let page = "{ entries(from: 0, count: 1000) { index leafHash dataBase64 kind signer } }";
        assert_eq!(
            cost_of(page, serde_json::json!({})).await,
            Ok(5 + 1000 * 14)
        );
        // Sizes come from variables and from argument defaults too.
        let q = "query($n: Int!) { entries(from: 0, count: $n) { index } }";
        assert_eq!(cost_of(q, serde_json::json!({"n": 10})).await, Ok(5 + 10));
        let events = "{ events { nodes { eventId } } }";
        assert_eq!(
            cost_of(events, serde_json::json!({})).await,
            Ok(10 + 1 + 50)
        );
        // GraphiQL's introspection.
        let intro = "{ __schema { types { name fields { name args { name } } } } }";
        assert_eq!(cost_of(intro, serde_json::json!({})).await, Ok(200));
    }

    #[tokio::test]
    async fn a_page_of_alert_cases_pays_for_reading_their_records() {
        let page = |n: u32| format!("{{ alertCases(first: {n}) {{ id records {{ action }} }} }}");
        let fifty = cost_of(&page(50), serde_json::json!({})).await.unwrap();
        let flat = cost_of("{ alertCases(first: 50) { id } }", serde_json::json!({}))
            .await
            .unwrap();
        assert!(fifty >= flat + 50 * 10, "{fifty} vs {flat}");
        assert!(matches!(
            cost_of(&page(1000), serde_json::json!({})).await,
            Err(Refusal::TooCostly { .. })
        ));
    }

    #[tokio::test]
    async fn aliases_and_fragments_are_priced_as_what_they_run() {
        let aliases: String = (0..1000)
            .map(|i| format!("a{i}: entries(from: 0, count: 1000) {{ signer dataBase64 }} "))
            .collect();
        assert!(matches!(
            cost_of(&format!("{{ {aliases} }}"), serde_json::json!({})).await,
            Err(Refusal::TooCostly { .. })
        ));
        // Fragments spread twice run twice.
        let frag = "fragment E on Query { entries(from: 0, count: 1000) { signer dataBase64 } } \
                    query { ...E a: entries(from: 0, count: 1000) { ...F } } \
                    fragment F on LedgerEntry { signer dataBase64 }";
        assert_eq!(
            cost_of(frag, serde_json::json!({})).await,
            Ok(2 * (5 + 1000 * 11))
        );
    }

    #[tokio::test]
    async fn an_expensive_field_runs_at_most_ten_times() {
        let verifies = |n: usize| -> String {
            let v: String = (0..n)
                .map(|i| format!("v{i}: verify(code: \"{i}\") {{ verdict }} "))
                .collect();
            format!("{{ {v} }}")
        };
        assert_eq!(cost_of(&verifies(10), serde_json::json!({})).await, Ok(210));
        assert_eq!(
            cost_of(&verifies(999), serde_json::json!({})).await,
            Err(Refusal::TooManyRuns {
                field: "Query.verify".into(),
                runs: 999,
                max: 10
            })
        );
        let dispenses: String = (0..11)
            .map(|i| format!("d{i}: dispense(code: \"{i}\") {{ entryIndex }} "))
            .collect();
        assert!(matches!(
            cost_of(
                &format!("mutation {{ {dispenses} }}"),
                serde_json::json!({})
            )
            .await,
            Err(Refusal::TooManyRuns { .. })
        ));
    }

    #[tokio::test]
    async fn fragment_bombs_are_refused_in_bounded_steps() {
        // Each fragment spreads the next one forty times: 40^4 fields if expanded.
        let mut doc = String::from("query { ...F0 }\n");
        for i in 0..4 {
            let spreads: String = (0..40).map(|_| format!("...F{} ", i + 1)).collect();
            doc.push_str(&format!("fragment F{i} on Query {{ {spreads} }}\n"));
        }
        doc.push_str("fragment F4 on Query { checkpoint { size } }\n");
        assert_eq!(
            cost_of(&doc, serde_json::json!({})).await,
            Err(Refusal::TooComplex)
        );
    }
}
