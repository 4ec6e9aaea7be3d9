//! `[String!]!` of hex hashes, resolved in one step.
//!
//! A verdict carries an inclusion proof per evidence entry: about 20 hashes each, 380 list
//! items for a pack with 19 history entries. async-graphql resolves a `Vec<String>` item by
//! item, each with its own future and path node; this type has the same GraphQL type and the
//! same JSON, built directly.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value};

/// Hex-encoded hashes, as `[String!]!` (and as a JSON array of strings).
#[derive(serde::Serialize)]
#[serde(transparent)]
pub struct Hashes(pub Vec<String>);

impl Hashes {
    pub fn hex<T: AsRef<[u8]>>(hashes: &[T]) -> Self {
        Hashes(hashes.iter().map(hex::encode).collect())
    }
}

impl OutputType for Hashes {
    fn type_name() -> Cow<'static, str> {
        <Vec<String> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<String> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<String> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        Ok(Value::List(
            self.0.iter().map(|h| Value::String(h.clone())).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_graphql_type_as_a_list_of_strings() {
        assert_eq!(Hashes::qualified_type_name(), "[String!]!");
        assert_eq!(Hashes::hex(&[[0xabu8, 0x01]]).0, vec!["ab01".to_string()]);
    }
}
