//! rxledger's GraphQL schema: API types, error codes and (later) access control.
//!
//! API types here are not domain types: each output type is built from core or store values,
//! and nothing below derives GraphQL traits. Errors carry a stable `extensions.code`; their
//! messages never contain internal text (async-graphql's `custom-error-conversion` feature
//! stops `?` from turning a database error into a client-visible string).

mod admin;
pub mod auth;
pub mod cost;
mod error;
mod hashes;
mod ledger;
mod live;
mod packs;
pub mod querycache;
pub mod ratelimit;
mod status;

use std::sync::Arc;

use async_graphql::{MergedObject, Schema};
use rxledger_store::{Alerts, ApiKeys, Ledger, Registry};

pub use auth::{Caller, Role};
pub use error::{ApiError, Code};
pub use status::AuditState;

/// What every resolver can reach.
#[derive(Clone)]
pub struct Services {
    pub ledger: Arc<Ledger>,
    pub registry: Registry,
    pub alerts: Alerts,
    pub api_keys: ApiKeys,
    pub packs: Arc<rxledger_store::packs::Packs>,
}

#[derive(MergedObject, Default)]
pub struct Query(
    packs::PackQuery,
    packs::EventQuery,
    ledger::LedgerQuery,
    admin::AdminQuery,
    live::AlertQuery,
    status::StatusQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    packs::PackMutation,
    admin::AdminMutation,
    status::StatusMutation,
);

pub type RxSchema = Schema<Query, Mutation, live::Live>;

/// Largest page a client may ask for.
pub const MAX_PAGE: i64 = 1000;

/// Builds the schema with the default limits.
pub fn schema(services: Services) -> RxSchema {
    schema_with(services, cost::Limits::default())
}

/// Builds the schema with its limits. The cost guard holds the query cache, so that it
/// prices every document, parsed or taken from the cache.
pub fn schema_with(services: Services, limits: cost::Limits) -> RxSchema {
    Schema::build(Query::default(), Mutation::default(), live::Live)
        .data(services)
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

/// Turns an `Authorization` header value into the caller: anonymous without one, the key's
/// organization and role with a valid `Bearer` token, refused otherwise. Shared by `/graphql`
/// and the web pages so every HTTP entry point treats keys alike.
pub async fn authenticate(
    keys: &ApiKeys,
    authorization: Option<&str>,
) -> Result<Caller, TokenRefused> {
    let token = authorization
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return Ok(Caller::Anonymous);
    };
    use rxledger_store::apikeys::TokenProblem;
    match keys.authenticate(token).await {
        Ok(Ok(p)) => Ok(Caller::from_principal(p)),
        Ok(Err(TokenProblem::Expired)) => Err(TokenRefused {
            code: "KEY_EXPIRED",
            message: "this API key has expired",
        }),
        Ok(Err(TokenProblem::Revoked)) => Err(TokenRefused {
            code: "KEY_REVOKED",
            message: "this API key was revoked",
        }),
        Ok(Err(TokenProblem::Unknown)) => Err(TokenRefused {
            code: "UNAUTHENTICATED",
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
