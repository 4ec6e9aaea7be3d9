//! The server's admin and verification API, as the scenario needs it.
//!
//! [`Api`] is what the scenario calls; [`GraphQl`] implements it over HTTP with the crate's
//! small client ([`crate::http`], one request per connection). Tests can implement [`Api`] in
//! memory.

use std::future::Future;

use rxledger_core::keys::LogVerifier;
use rxledger_core::merkle::{self, Hash};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::Connection;

/// An API failure: the GraphQL `extensions.code` when the server gave one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{url}: {why}")]
    Http { url: String, why: String },
    #[error("GraphQL error {code}: {message}")]
    GraphQl { code: String, message: String },
    #[error("unexpected GraphQL response: {0}")]
    Shape(String),
}

impl ApiError {
    /// The error code, for GraphQL errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::GraphQl { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The product a verification names.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Product {
    pub gtin: Option<String>,
    pub serial: Option<String>,
    pub lot: Option<String>,
    pub expiry: Option<String>,
}

/// A reason behind a verdict.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: Option<String>,
}

/// What `verify(code)` answers.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Verification {
    pub verdict: String,
    pub dispensable: bool,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    pub product: Option<Product>,
}

/// Organization roles, as the API spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Manufacturer,
    Wholesaler,
    Pharmacy,
    Regulator,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Manufacturer => "MANUFACTURER",
            Role::Wholesaler => "WHOLESALER",
            Role::Pharmacy => "PHARMACY",
            Role::Regulator => "REGULATOR",
        }
    }
}

/// The server operations the scenario needs.
pub trait Api: Sync {
    fn create_organization(
        &self,
        id: &str,
        name: &str,
        role: Role,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn add_company_prefix(
        &self,
        org: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn add_site(
        &self,
        gln: &str,
        org: &str,
        name: &str,
        lat_lon: Option<(f64, f64)>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn enroll_device(
        &self,
        id: &str,
        public_key: &str,
        org: &str,
        site_gln: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn revoke_device(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn verify(&self, code: &str) -> impl Future<Output = Result<Verification, ApiError>> + Send;
    /// The current log size.
    fn log_size(&self) -> impl Future<Output = Result<u64, ApiError>> + Send;
    /// How many of the entries `from .. to` hold events (device envelopes and API state
    /// changes, kinds 1 and 2): the entries the log writes itself, its map roots and desk
    /// records, are not anybody's envelopes.
    fn event_entries(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<u64, ApiError>> + Send;
    /// The log's verifier key, which devices pin. Fetching it over the API trusts the API
    /// connection; a real device gets it at installation, from the operator.
    fn log_verifier(&self) -> impl Future<Output = Result<LogVerifier, ApiError>> + Send;
    /// The newest checkpoint note a quorum of the log's witnesses cosigned, if any.
    fn cosigned_checkpoint(&self) -> impl Future<Output = Result<Option<String>, ApiError>> + Send {
        async {
            Err(ApiError::Shape(
                "cosigned checkpoints need the GraphQL API".into(),
            ))
        }
    }
    /// The RFC 9162 consistency proof from tree size `from` to `to`.
    fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<Hash>, ApiError>> + Send {
        async move {
            Err(ApiError::Shape(format!(
                "the consistency proof {from} -> {to} needs the GraphQL API"
            )))
        }
    }
}

/// Entry kinds that hold events: 1, a device envelope; 2, an API state change or capture.
pub const EVENT_KINDS: [u64; 2] = [1, 2];
/// Entries read per `entries` query, the API's bound.
const ENTRIES_PAGE: u64 = 1000;

/// The GraphQL API at `{base}/graphql`.
#[derive(Clone, Debug)]
pub struct GraphQl {
    host: String,
    port: u16,
    path_prefix: String,
    admin_key: Option<String>,
}

impl GraphQl {
    /// `base` is `http://host:port[/prefix]`; https is not supported (use a local proxy).
    pub fn new(base: &str, admin_key: Option<String>) -> Result<GraphQl, ApiError> {
        let bad = |why: &str| ApiError::Http {
            url: base.into(),
            why: why.into(),
        };
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
            None => (hostport, 80),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(GraphQl {
            host: host.into(),
            port,
            path_prefix: path.into(),
            admin_key,
        })
    }

    /// One HTTP request to another route of the same server (`path` from its root, e.g.
    /// `/epcis/capture`), with `token` as the Bearer key: the status, header lines and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<(String, String)>, Vec<u8>), ApiError> {
        let bearer = format!("Bearer {token}");
        let mut all = headers.to_vec();
        all.push(("Authorization", bearer.as_str()));
        let path = format!("{}{path}", self.path_prefix);
        let host = format!("{}:{}", self.host, self.port);
        crate::http::request_with_head(
            (self.host.as_str(), self.port),
            &host,
            method,
            &path,
            &all,
            body,
        )
        .await
        .map_err(|e| ApiError::Http {
            url: format!("http://{host}{path}"),
            why: e.to_string(),
        })
    }

    /// Runs one GraphQL operation and returns `data`, or the first error with its code.
    pub async fn execute(&self, query: &str, variables: Value) -> Result<Value, ApiError> {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let bearer = self.admin_key.as_ref().map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b.as_str()));
        }
        let path = format!("{}/graphql", self.path_prefix);
        let host = format!("{}:{}", self.host, self.port);
        let fail = |why: String| ApiError::Http {
            url: format!("http://{host}{path}"),
            why,
        };
        let mut conn = Connection::open((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let (status, bytes) = conn
            .send(&host, "POST", &path, &headers, body.as_bytes(), true)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::Http {
            url: path.clone(),
            why: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        })?;
        if let Some(e) = v["errors"].as_array().and_then(|e| e.first()) {
            return Err(ApiError::GraphQl {
                code: e["extensions"]["code"]
                    .as_str()
                    .unwrap_or("UNKNOWN")
                    .to_string(),
                message: e["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(v["data"].clone())
    }
}

impl Api for GraphQl {
    async fn create_organization(&self, id: &str, name: &str, role: Role) -> Result<(), ApiError> {
        let q = "mutation($id: String!, $name: String!, $role: Role!) { createOrganization(input: {id: $id, name: $name, role: $role}) { id } }";
        self.execute(q, json!({"id": id, "name": name, "role": role.as_str()}))
            .await
            .map(drop)
    }

    async fn add_company_prefix(&self, org: &str, prefix: &str) -> Result<(), ApiError> {
        let q =
            "mutation($o: String!, $p: String!) { addCompanyPrefix(orgId: $o, prefix: $p) { id } }";
        self.execute(q, json!({"o": org, "p": prefix}))
            .await
            .map(drop)
    }

    async fn add_site(
        &self,
        gln: &str,
        org: &str,
        name: &str,
        lat_lon: Option<(f64, f64)>,
    ) -> Result<(), ApiError> {
        let q = "mutation($g: String!, $o: String!, $n: String!, $lat: Float, $lon: Float) { addSite(input: {gln: $g, orgId: $o, name: $n, latitude: $lat, longitude: $lon}) { gln } }";
        let (lat, lon) = lat_lon.unzip();
        self.execute(
            q,
            json!({"g": gln, "o": org, "n": name, "lat": lat, "lon": lon}),
        )
        .await
        .map(drop)
    }

    async fn enroll_device(
        &self,
        id: &str,
        public_key: &str,
        org: &str,
        site_gln: &str,
    ) -> Result<(), ApiError> {
        let q = "mutation($i: String!, $k: String!, $o: String!, $s: String!) { enrollDevice(input: {id: $i, publicKey: $k, orgId: $o, siteGln: $s}) { id status } }";
        self.execute(
            q,
            json!({"i": id, "k": public_key, "o": org, "s": site_gln}),
        )
        .await
        .map(drop)
    }

    async fn revoke_device(&self, id: &str) -> Result<(), ApiError> {
        let q = "mutation($i: String!) { revokeDevice(id: $i) { id status } }";
        self.execute(q, json!({"i": id})).await.map(drop)
    }

    async fn verify(&self, code: &str) -> Result<Verification, ApiError> {
        let q = "query($c: String!) { verify(code: $c) { verdict dispensable reasons { code message } product { gtin serial lot expiry } } }";
        let data = self.execute(q, json!({"c": code})).await?;
        serde_json::from_value(data["verify"].clone())
            .map_err(|e| ApiError::Shape(format!("verify: {e}: {data}")))
    }

    async fn log_size(&self) -> Result<u64, ApiError> {
        let data = self.execute("{ checkpoint { size } }", json!({})).await?;
        data["checkpoint"]["size"]
            .as_u64()
            .ok_or_else(|| ApiError::Shape(format!("checkpoint: {data}")))
    }

    async fn event_entries(&self, from: u64, to: u64) -> Result<u64, ApiError> {
        let q = "query($f: Int!, $c: Int!) { entries(from: $f, count: $c) { kind } }";
        let mut n = 0;
        let mut at = from;
        while at < to {
            let count = (to - at).min(ENTRIES_PAGE);
            let data = self.execute(q, json!({"f": at, "c": count})).await?;
            let page = data["entries"]
                .as_array()
                .ok_or_else(|| ApiError::Shape(format!("entries: {data}")))?;
            if page.is_empty() {
                return Err(ApiError::Shape(format!(
                    "entries from {at}: none, though the log held {to}"
                )));
            }
            n += page
                .iter()
                .filter(|e| EVENT_KINDS.contains(&e["kind"].as_u64().unwrap_or(0)))
                .count() as u64;
            at += page.len() as u64;
        }
        Ok(n)
    }

    async fn log_verifier(&self) -> Result<LogVerifier, ApiError> {
        let data = self
            .execute("{ ledgerPublicKey { verifierKey } }", json!({}))
            .await?;
        data["ledgerPublicKey"]["verifierKey"]
            .as_str()
            .and_then(|v| LogVerifier::from_vkey(v).ok())
            .ok_or_else(|| ApiError::Shape(format!("ledgerPublicKey: {data}")))
    }

    async fn cosigned_checkpoint(&self) -> Result<Option<String>, ApiError> {
        let data = self
            .execute("{ checkpoint { cosigned { note } } }", json!({}))
            .await?;
        Ok(data["checkpoint"]["cosigned"]["note"]
            .as_str()
            .map(str::to_string))
    }

    async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ApiError> {
        let data = self
            .execute(
                "query($f: Int!, $t: Int) { consistencyProof(fromSize: $f, toSize: $t) { hashes } }",
                json!({ "f": from, "t": to }),
            )
            .await?;
        let hashes = data["consistencyProof"]["hashes"]
            .as_array()
            .ok_or_else(|| ApiError::Shape(format!("consistencyProof: {data}")))?;
        hashes
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| merkle::hash_from_slice(&b).ok())
                    .ok_or_else(|| ApiError::Shape(format!("consistencyProof hash: {h}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let g = GraphQl::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(
            (g.host.as_str(), g.port, g.path_prefix.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let g = GraphQl::new("http://h/api", None).unwrap();
        assert_eq!((g.port, g.path_prefix.as_str()), (80, "/api"));
        assert!(GraphQl::new("https://h", None).is_err());
    }
}
