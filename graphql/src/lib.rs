//! rxledger's GraphQL schema: API types, error codes and (later) access control.
//!
//! API types here are not domain types: each output type is built from core or store values,
//! and nothing below derives GraphQL traits. Errors carry a stable `extensions.code`; their
//! messages never contain internal text (async-graphql's `custom-error-conversion` feature
//! stops `?` from turning a database error into a client-visible string).

pub mod admin;
pub mod auth;
mod cases;
mod changes;
pub mod completeness;
pub mod cost;
pub mod epcis_doc;
mod error;
mod events;
mod hashes;
pub mod latency;
mod ledger;
mod live;
mod packs;
pub mod product;
mod quarantine;
pub mod querycache;
pub mod ratelimit;
mod status;
mod trace;
pub mod verify;
pub mod visibility;

use std::sync::Arc;

use async_graphql::{MergedObject, Schema};
use rxledger_store::{Alerts, ApiKeys, Ledger, Products, Registry};

pub use auth::{Caller, Role};
pub use error::{ApiError, Code};
pub use ledger::CosignedCheckpoint;
pub use rxledger_core::verdict::CustodyPolicy;
pub use status::AuditState;

/// What every resolver can reach.
#[derive(Clone)]
pub struct Services {
    pub ledger: Arc<Ledger>,
    pub registry: Registry,
    pub alerts: Alerts,
    pub api_keys: ApiKeys,
    pub packs: Arc<rxledger_store::packs::Packs>,
    pub products: Products,
    /// How long verifications take, for `/metrics`.
    pub verify_latency: Arc<latency::VerifyLatency>,
}

impl Services {
    /// Every service on one database, with the log `origin` signed by `key` (opened, or
    /// created empty on first use).
    pub async fn open(
        db: rxledger_store::Database,
        key: rxledger_core::keys::SigningKey,
        origin: &str,
    ) -> Result<Services, rxledger_store::StoreError> {
        Ok(Services {
            ledger: Arc::new(Ledger::open(db.clone(), key, origin).await?),
            registry: Registry::new(db.clone()),
            alerts: Alerts::new(db.clone()),
            api_keys: ApiKeys::new(db.clone()),
            products: Products::new(db.clone()),
            packs: Arc::new(rxledger_store::packs::Packs::new(db)),
            verify_latency: Default::default(),
        })
    }
}

#[derive(MergedObject, Default)]
pub struct Query(
    packs::PackQuery,
    events::EventQuery,
    ledger::LedgerQuery,
    admin::AdminQuery,
    live::AlertQuery,
    status::StatusQuery,
    product::ProductQuery,
    trace::TraceQuery,
    cases::CaseQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    changes::PackMutation,
    quarantine::QuarantineMutation,
    trace::TraceMutation,
    cases::CaseMutation,
    admin::AdminMutation,
    status::StatusMutation,
    product::ProductMutation,
);

pub type RxSchema = Schema<Query, Mutation, live::Live>;

/// Largest page a client may ask for.
pub const MAX_PAGE: i64 = 1000;

/// Builds the schema with the default limits and custody policy.
pub fn schema(services: Services) -> RxSchema {
    schema_with(services, cost::Limits::default(), CustodyPolicy::default())
}

/// Builds the schema with its limits and custody policy (`--custody-policy`), and alert cases
/// on the default timers and the system clock (the server passes its own to
/// [`schema_with_cases`]).
pub fn schema_with(services: Services, limits: cost::Limits, custody: CustodyPolicy) -> RxSchema {
    let cases = rxledger_store::Cases::new(
        services.ledger.clone(),
        Default::default(),
        rxledger_store::Clock::system(),
    );
    schema_with_cases(services, limits, custody, cases)
}

/// [`schema_with`] with the node's alert cases, whose timer task shares them. The cost guard
/// holds the query cache, so that it prices every document, parsed or taken from the cache.
pub fn schema_with_cases(
    services: Services,
    limits: cost::Limits,
    custody: CustodyPolicy,
    cases: rxledger_store::Cases,
) -> RxSchema {
    Schema::build(Query::default(), Mutation::default(), live::Live)
        .data(services)
        .data(cases)
        .data(custody)
        .data(AuditState::default())
        .limit_depth(12)
        .limit_complexity(2_000)
        .extension(cost::CostGuard {
            limits,
            cache: querycache::QueryCache::default(),
        })
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), live::Live)
        .finish()
        .sdl()
}

/// Why a request's Bearer token was refused: a stable code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefused {
    pub code: &'static str,
    pub message: &'static str,
}

/// [`authenticate`] for a raw header value: bytes that are not visible ASCII are refused as a
/// malformed header, never read as "no header".
pub async fn authenticate_header(
    keys: &ApiKeys,
    authorization: Option<&[u8]>,
) -> Result<Caller, TokenRefused> {
    match authorization.map(std::str::from_utf8) {
        None => Ok(Caller::Anonymous),
        Some(Ok(v))
            if v.bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) =>
        {
            authenticate(keys, Some(v)).await
        }
        Some(_) => Err(MALFORMED),
    }
}

const MALFORMED: TokenRefused = TokenRefused {
    code: Code::Unauthenticated.as_str(),
    message: "malformed Authorization header: expected `Bearer <API key>`",
};

/// The token of a `Bearer` credential, any spelling of the scheme.
pub fn bearer_token(value: &str) -> Result<&str, TokenRefused> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value
        .split_once([' ', '\t'])
        .map(|(s, t)| (s, t.trim_matches([' ', '\t'])))
        .unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenRefused {
            code: Code::Unauthenticated.as_str(),
            message: "unsupported Authorization scheme: use `Bearer <API key>`",
        });
    }
    if token.is_empty() || token.contains([' ', '\t']) {
        return Err(MALFORMED);
    }
    Ok(token)
}

/// Turns an `Authorization` header value into the caller: anonymous without one, the key's
/// organization and role with a valid `Bearer` token, refused otherwise. Shared by `/graphql`
/// and the web pages so every HTTP entry point treats keys alike.
///
/// The scheme is matched case-insensitively (RFC 9110 §11.1). A header that is present but is
/// not `Bearer <token>` (another scheme, no token, a token with spaces) is refused with
/// UNAUTHENTICATED: a client that meant to authenticate must never be served silently as
/// anonymous.
pub async fn authenticate(
    keys: &ApiKeys,
    authorization: Option<&str>,
) -> Result<Caller, TokenRefused> {
    let Some(value) = authorization else {
        return Ok(Caller::Anonymous);
    };
    let token = bearer_token(value)?;
    use rxledger_store::apikeys::TokenProblem;
    match keys.authenticate(token).await {
        Ok(Ok(p)) => Caller::from_principal(p).ok_or(TokenRefused {
            code: Code::Unauthenticated.as_str(),
            message: "this API key carries no role this server knows",
        }),
        Ok(Err(TokenProblem::Expired)) => Err(TokenRefused {
            code: "KEY_EXPIRED",
            message: "this API key has expired",
        }),
        Ok(Err(TokenProblem::Revoked)) => Err(TokenRefused {
            code: "KEY_REVOKED",
            message: "this API key was revoked",
        }),
        Ok(Err(TokenProblem::Unknown)) => Err(TokenRefused {
            code: Code::Unauthenticated.as_str(),
            message: "unknown API key",
        }),
        Err(e) => {
            tracing::error!(error = %e, "API key lookup failed");
            Err(TokenRefused {
                code: "INTERNAL",
                message: "internal error; the operator's log has the details",
            })
        }
    }
}
