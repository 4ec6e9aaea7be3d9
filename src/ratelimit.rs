//! The rate limiter lives with the GraphQL schema, whose cost guard charges it per operation
//! (over HTTP and WebSocket alike) and which the web routes share.

pub use rxledger_graphql::ratelimit::*;
