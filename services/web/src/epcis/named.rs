//! Named queries, the binding's `/queries` resources: an organisation saves a simple event
//! query under a name, runs it with `GET /epcis/queries/{name}/events` (the paging of
//! `GET /epcis/events`), or follows its new events over a WebSocket ([`super::subscribe`]).
//!
//! A query is the organisation's: every look-up is by (the caller's organisation, name), so
//! another organisation gets 404 exactly as for a name nobody used. Its definition is read by
//! [`query::from_json`] into the parameters of `GET /epcis/events` and checked by the same
//! [`query::parse`] when it is created and each time it runs, so a query that was accepted
//! means what the same parameters mean on `/epcis/events`. What a run shows is decided per
//! caller by the same visibility rule: a query holds parameters, never events.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::websocket::WebSocket;
use poem::web::{Data, Path, Query};
use poem::{Body, Request, Response, handler};
use rxledger_store::StoreError;
use rxledger_store::queries::{Creation, MAX_PER_ORG, NamedQuery, QueryName};
use serde_json::{Value, json};

use super::problem::{EpcisProblem, Exception};
use super::{Epcis, admit, answer, body_of, done, media, owner, query, set_location};

/// Largest `POST /epcis/queries` body.
pub const MAX_DEFINITION_BODY: usize = 64 * 1024;
/// Named queries listed per page at most.
pub const MAX_QUERIES_PER_PAGE: u64 = 100;

/// `POST /epcis/queries`: `{"name": …, "query": {…}}`; 201 with its `Location`, 409 when
/// the organisation has a query of that name.
#[handler]
pub async fn create(req: &Request, body: Body, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(create_query(st, req, body).await)
}

async fn create_query(st: &Epcis, req: &Request, body: Body) -> Result<Response, EpcisProblem> {
    let c = admit(st, req, 1.0).await?;
    let org = owner(&c)?;
    if media::body_media(req.headers())? == media::Media::Xml {
        return Err(EpcisProblem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Exception::UnsupportedMediaType,
            "UNSUPPORTED_MEDIA_TYPE",
            "a query definition is JSON: send application/json",
        ));
    }
    let bytes = body_of(req, body, MAX_DEFINITION_BODY, "(a query definition)").await?;
    let definition = media::json(&bytes)?;
    let (name, q) = read_definition(&definition)?;
    // Checked as `GET /epcis/events` would check the same parameters.
    query::parse(&query::from_json(q)?, &[])?;
    let now = rxledger_store::now_ms();
    let created = st
        .queries
        .create(&org, &name, &q.to_string(), now)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) => invalid(m),
            e => EpcisProblem::internal(e),
        })?;
    let location = path_of(name.as_str());
    match created {
        Creation::Created(row) => {
            let mut r = answer(
                StatusCode::CREATED,
                "application/json",
                shown(&row).to_string(),
            );
            set_location(&mut r, &location);
            Ok(r)
        }
        Creation::Exists => {
            let mut r = EpcisProblem::new(
                StatusCode::CONFLICT,
                Exception::ResourceAlreadyExists,
                "QUERY_EXISTS",
                format!(
                    "a query named {:?} exists already; delete it first to redefine it",
                    name.as_str()
                ),
            )
            .respond();
            set_location(&mut r, &location);
            Ok(r)
        }
        Creation::Full => Err(EpcisProblem::validation(
            "TOO_MANY_QUERIES",
            format!("an organisation keeps at most {MAX_PER_ORG} named queries; delete one first"),
        )),
    }
}

/// The name and the query object of a definition.
fn read_definition(d: &Value) -> Result<(QueryName, &Value), EpcisProblem> {
    let Value::Object(fields) = d else {
        return Err(invalid(
            "a query definition is a JSON object {\"name\": …, \"query\": {…}}",
        ));
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "query"))
    {
        return Err(invalid(format!(
            "{other}: a query definition holds name and query"
        )));
    }
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("name is missing or not a string"))?;
    let name = QueryName::parse(name).map_err(|e| invalid(e.to_string()))?;
    let q = fields
        .get("query")
        .filter(|q| q.is_object())
        .ok_or_else(|| invalid("query is missing or not a JSON object"))?;
    Ok((name, q))
}

fn invalid(detail: impl Into<String>) -> EpcisProblem {
    EpcisProblem::validation("INVALID_QUERY", detail)
}

/// `/epcis/queries/{name}` (a name is its own path segment).
fn path_of(name: &str) -> String {
    format!("/epcis/queries/{name}")
}

/// A stored query as the binding shows it: `{"name": …, "query": {…}}`.
fn shown(row: &NamedQuery) -> Value {
    let q: Value = serde_json::from_str(&row.query).unwrap_or(Value::Null);
    json!({ "name": row.name, "query": q })
}

/// The caller's query `name`, or 404 (for another organisation's too).
async fn find(st: &Epcis, org: &str, name: &str) -> Result<NamedQuery, EpcisProblem> {
    st.queries
        .get(org, name)
        .await
        .map_err(EpcisProblem::internal)?
        .ok_or_else(|| EpcisProblem::not_found(format!("no query named {name:?}")))
}

/// `GET /epcis/queries`: the caller's organisation's queries by name, paged.
#[handler]
pub async fn list(
    req: &Request,
    Query(params): Query<Vec<(String, String)>>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            let org = owner(&c)?;
            let (per_page, after) =
                super::list_page(&params, MAX_QUERIES_PER_PAGE, "named queries")?;
            let mut rows = st
                .queries
                .list(&org, after.as_deref(), per_page + 1)
                .await
                .map_err(EpcisProblem::internal)?;
            let more = rows.len() as u64 > per_page;
            rows.truncate(per_page as usize);
            let body: Vec<Value> = rows.iter().map(shown).collect();
            let mut r = answer(
                StatusCode::OK,
                "application/json",
                Value::Array(body).to_string(),
            );
            if let Some(last) = rows.last().filter(|_| more) {
                super::link_next(
                    &mut r,
                    &format!(
                        "/epcis/queries?perPage={per_page}&nextPageToken={}",
                        last.name
                    ),
                );
            }
            Ok(r)
        }
        .await,
    )
}

/// `GET /epcis/queries/{name}`: its definition.
#[handler]
pub async fn one(req: &Request, Path(name): Path<String>, Data(st): Data<&Arc<Epcis>>) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            let row = find(st, &owner(&c)?, &name).await?;
            Ok(answer(
                StatusCode::OK,
                "application/json",
                shown(&row).to_string(),
            ))
        }
        .await,
    )
}

/// `DELETE /epcis/queries/{name}`: 204; its subscriptions on this node are closed at once,
/// those on other nodes before their next push.
#[handler]
pub async fn remove(
    req: &Request,
    Path(name): Path<String>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            let org = owner(&c)?;
            let deleted = st
                .queries
                .delete(&org, &name)
                .await
                .map_err(EpcisProblem::internal)?;
            if !deleted {
                return Err(EpcisProblem::not_found(format!("no query named {name:?}")));
            }
            st.hub.close_query(&org, &name);
            Ok(answer(
                StatusCode::NO_CONTENT,
                "application/json",
                String::new(),
            ))
        }
        .await,
    )
}

/// `GET /epcis/queries/{name}/events`: a page of the query's events (`perPage`,
/// `nextPageToken`), or, with `stream=true` and a WebSocket upgrade, a subscription.
#[handler]
pub async fn events(
    req: &Request,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    ws: Option<WebSocket>,
    Data(st): Data<&Arc<Epcis>>,
) -> Response {
    done(
        async {
            let c = admit(st, req, 1.0).await?;
            let row = find(st, &owner(&c)?, &name).await?;
            let pairs = stored_parameters(&row)?;
            let (controls, paging) = super::subscribe::Controls::split(&params)?;
            if ws.is_some() || !controls.is_empty() {
                return super::subscribe::open(st, req, row, pairs, controls, paging, ws).await;
            }
            let fixed = query::fixed(&pairs);
            super::run_query(st, req, &c, &paging, &fixed, Some(&row.name)).await
        }
        .await,
    )
}

/// A stored query's parameters, read as when it was created.
pub(super) fn stored_parameters(row: &NamedQuery) -> Result<Vec<(String, String)>, EpcisProblem> {
    let q: Value = serde_json::from_str(&row.query).map_err(EpcisProblem::internal)?;
    query::from_json(&q)
}
