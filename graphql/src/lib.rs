//! rxledger's GraphQL schema: API types, error codes and (later) access control.
//!
//! API types here are not domain types: each output type is built from core or store values,
//! and nothing below derives GraphQL traits. Errors carry a stable `extensions.code`; their
//! messages never contain internal text (async-graphql's `custom-error-conversion` feature
//! stops `?` from turning a database error into a client-visible string).

mod admin;
pub mod auth;
mod error;
mod ledger;
mod live;
mod packs;

use std::sync::Arc;

use async_graphql::{MergedObject, Schema};
use rxledger_store::{Alerts, ApiKeys, Ledger, Registry};

pub use auth::{Caller, Role};
pub use error::{ApiError, Code};

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
);

#[derive(MergedObject, Default)]
pub struct Mutation(packs::PackMutation, admin::AdminMutation);

pub type RxSchema = Schema<Query, Mutation, live::Live>;

/// Largest page a client may ask for.
pub const MAX_PAGE: i64 = 1000;

/// Builds the schema with its limits.
pub fn schema(services: Services) -> RxSchema {
    Schema::build(Query::default(), Mutation::default(), live::Live)
        .data(services)
        .limit_depth(12)
        .limit_complexity(2_000)
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), live::Live)
        .finish()
        .sdl()
}
