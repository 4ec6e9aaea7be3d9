//! Parsed queries, kept by their text.
//!
//! Clients send the same few query documents over and over (a pharmacy app's `verify`, a
//! monitor's `entries`), with only the variables changing. async-graphql parses every request
//! with a pest grammar; profiling `verify` over HTTP put that parse at 17 % of the server's
//! CPU, more than deriving the verdict. GraphQL servers commonly keep a parse cache for this
//! reason (GraphQL Yoga and graphql-java do by default).
//!
//! Invariants:
//! - only documents that parsed and passed the recursion and directive checks are kept, so a
//!   hit is exactly what parsing again would return; failures are parsed (and refused) again;
//! - validation still runs on every request: it depends on the variables and on the caller;
//! - memory is bounded: at most [`MAX_ENTRIES`] documents of at most [`MAX_QUERY_LEN`] bytes
//!   each; when the cache is full it is emptied, so a client sending ever-new documents only
//!   loses the cache's benefit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Documents kept at most.
pub const MAX_ENTRIES: usize = 256;
/// Longest query text that is kept (longer ones are parsed every time).
pub const MAX_QUERY_LEN: usize = 8 * 1024;

/// The schema extension; one cache shared by every request.
#[derive(Default)]
pub struct QueryCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    docs: Mutex<HashMap<String, Arc<ExecutableDocument>>>,
}

impl ExtensionFactory for QueryCache {
    fn create(&self) -> Arc<dyn Extension> {
        self.inner.clone()
    }
}

impl Inner {
    fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(query)
            .cloned()
    }

    fn put(&self, query: &str, doc: &ExecutableDocument) {
        if query.len() > MAX_QUERY_LEN {
            return;
        }
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        if docs.len() >= MAX_ENTRIES {
            docs.clear();
        }
        docs.insert(query.to_owned(), Arc::new(doc.clone()));
    }
}

#[async_trait::async_trait]
impl Extension for Inner {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // The executor takes the document by value and edits it (skipped fields), so a hit
        // hands out a copy; copying the tree is far cheaper than parsing the text.
        if let Some(doc) = self.get(query) {
            return Ok((*doc).clone());
        }
        let doc = next.run(ctx, query, variables).await?;
        self.put(query, &doc);
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    struct Q;

    #[Object]
    impl Q {
        async fn echo(&self, s: String) -> String {
            s
        }
    }

    fn schema() -> (Schema<Q, EmptyMutation, EmptySubscription>, Arc<Inner>) {
        let cache = QueryCache::default();
        let inner = cache.inner.clone();
        let schema = Schema::build(Q, EmptyMutation, EmptySubscription)
            .extension(cache)
            .limit_recursive_depth(8)
            .finish();
        (schema, inner)
    }

    fn len(inner: &Inner) -> usize {
        inner.docs.lock().unwrap().len()
    }

    #[tokio::test]
    async fn a_cached_document_answers_with_each_requests_variables() {
        let (schema, inner) = schema();
        let q = "query($s:String!){echo(s:$s)}";
        for s in ["one", "two", "three"] {
            let r = schema
                .execute(
                    async_graphql::Request::new(q)
                        .variables(Variables::from_json(serde_json::json!({ "s": s }))),
                )
                .await;
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            assert_eq!(
                r.data.into_json().unwrap(),
                serde_json::json!({ "echo": s })
            );
        }
        assert_eq!(len(&inner), 1, "one text, one entry");
    }

    #[tokio::test]
    async fn refused_documents_are_not_kept_and_are_refused_again() {
        let (schema, inner) = schema();
        let bad = "{ echo(s: \"x\") ";
        for _ in 0..2 {
            let r = schema.execute(bad).await;
            assert_eq!(r.errors.len(), 1, "a syntax error every time");
        }
        let nested = format!("query {}x{}", "{a:__typename ".repeat(20), "}".repeat(20));
        for _ in 0..2 {
            let r = schema.execute(nested.as_str()).await;
            assert!(!r.errors.is_empty(), "too deep every time");
        }
        assert_eq!(len(&inner), 0);
        assert!(schema.execute("{echo(s:\"x\")}").await.errors.is_empty());
        assert_eq!(len(&inner), 1);
    }

    #[tokio::test]
    async fn validation_still_runs_on_a_cached_document() {
        let (schema, _) = schema();
        let q = "query($s:String!){echo(s:$s)}";
        let ok = schema
            .execute(
                async_graphql::Request::new(q)
                    .variables(Variables::from_json(serde_json::json!({ "s": "a" }))),
            )
            .await;
        assert!(ok.errors.is_empty());
        // Same text, now without the required variable: refused, not served from the cache.
        let missing = schema.execute(q).await;
        assert_eq!(missing.errors.len(), 1, "{:?}", missing.errors);
    }

    #[test]
    fn the_cache_is_bounded() {
        let inner = Inner::default();
        let doc = async_graphql::parser::parse_query("{a}").unwrap();
        for i in 0..MAX_ENTRIES + 10 {
            inner.put(&format!("{{a b{i}}}"), &doc);
            assert!(len(&inner) <= MAX_ENTRIES);
        }
        inner.put(&"x".repeat(MAX_QUERY_LEN + 1), &doc);
        assert!(inner.get(&"x".repeat(MAX_QUERY_LEN + 1)).is_none());
    }
}
