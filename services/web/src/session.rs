//! Who is calling, for every HTTP route: an `Authorization: Bearer` key, or else the browser
//! session cookie a sign-in page set ([`crate::signin`]), or else nobody.
//!
//! A session resolves to the very [`Caller`] its API key stands for
//! (`rxledger_store::sessions`), so role checks and `visibility` never know which of the two
//! a request used. The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other
//! site's page makes the browser send it) and `Secure` when the node is served over HTTPS. A
//! cookie-authenticated request that can change something (any method but GET and HEAD, and
//! WebSocket upgrades) must also come from a page of this node: its `Origin` (or, without one,
//! its `Referer`) is checked ([`same_origin`]), so a forged cross-site request is refused even
//! by a browser that ignores SameSite. Bearer requests need no such check: a browser never
//! adds that header on its own.

use poem::Request;
use poem::http::{HeaderMap, Method, header};
use rxledger_graphql::{Caller, Code, TokenRefused};
use rxledger_store::ApiKeys;
use rxledger_store::apikeys::TokenProblem;
use rxledger_store::sessions::{LIFETIME_MS, SessionProblem};

/// The session cookie's name.
pub const COOKIE: &str = "rxl_session";

/// The codes of a refused session: a response carrying one also clears the cookie, so the
/// browser's next request is simply anonymous.
pub const ENDED_CODES: &[&str] = &["SESSION_ENDED", "KEY_REVOKED", "KEY_EXPIRED"];

const CROSS_SITE: TokenRefused = TokenRefused {
    code: "CSRF_REFUSED",
    message: "this request carries a session cookie but does not come from this site's pages; \
              send it from the page, or use `Authorization: Bearer <API key>`",
};

/// The caller of `req`: its Bearer key when it sends one (a cookie is then ignored), else
/// its session when it carries our cookie, else anonymous. `base_url` is the node's public
/// URL, an origin the same-origin check accepts besides the request's own host.
pub async fn caller(keys: &ApiKeys, req: &Request, base_url: &str) -> Result<Caller, TokenRefused> {
    let headers = req.headers();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        return rxledger_graphql::authenticate_header(keys, Some(auth.as_bytes())).await;
    }
    let Some(cookie) = cookie_value(headers) else {
        return Ok(Caller::Anonymous);
    };
    if changes_state(req) && !same_origin(req, base_url) {
        return Err(CROSS_SITE);
    }
    session_caller(keys, cookie).await
}

/// What a request authenticated with, kept by a long-lived connection (an EPCIS
/// subscription) to ask again, before each push, whom it stands for now: a revoked key or
/// an ended session stops it as it would stop a request.
#[derive(Clone, Debug)]
pub enum Credential {
    Bearer(Vec<u8>),
    Session(String),
}

impl Credential {
    /// The credential [`caller`] read from `req`, if any.
    pub fn of(req: &Request) -> Option<Credential> {
        let headers = req.headers();
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            return Some(Credential::Bearer(auth.as_bytes().to_vec()));
        }
        cookie_value(headers).map(|c| Credential::Session(c.to_string()))
    }

    /// The caller it stands for now (the same-origin check was made when it was read).
    pub async fn caller(&self, keys: &ApiKeys) -> Result<Caller, TokenRefused> {
        match self {
            Credential::Bearer(auth) => {
                rxledger_graphql::authenticate_header(keys, Some(auth)).await
            }
            Credential::Session(cookie) => session_caller(keys, cookie).await,
        }
    }
}

/// The caller a session cookie stands for now.
pub async fn session_caller(keys: &ApiKeys, cookie: &str) -> Result<Caller, TokenRefused> {
    let ended = |message| TokenRefused {
        code: "SESSION_ENDED",
        message,
    };
    match keys
        .sessions()
        .resolve(cookie, rxledger_store::now_ms())
        .await
    {
        Ok(Ok(p)) => Caller::from_principal(p).ok_or(TokenRefused {
            code: Code::Unauthenticated.as_str(),
            message: "this session's API key carries no role this server knows",
        }),
        Ok(Err(SessionProblem::Key(TokenProblem::Revoked))) => Err(TokenRefused {
            code: "KEY_REVOKED",
            message: "the API key this session signed in with was revoked; sign in again at /signin",
        }),
        Ok(Err(SessionProblem::Key(TokenProblem::Expired))) => Err(TokenRefused {
            code: "KEY_EXPIRED",
            message: "the API key this session signed in with has expired; sign in again at /signin",
        }),
        Ok(Err(SessionProblem::Expired)) => Err(ended(
            "your session ended after 12 hours without use, or 7 days after sign-in; sign in again at /signin",
        )),
        Ok(Err(SessionProblem::Unknown | SessionProblem::Key(TokenProblem::Unknown))) => {
            Err(ended(
                "your session has ended (signed out, or unknown to this node); sign in again at /signin",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            Err(TokenRefused {
                code: "INTERNAL",
                message: "internal error; the operator's log has the details",
            })
        }
    }
}

/// The value of our cookie in a request's `Cookie` headers, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Whether a request may change something: every method but GET and HEAD, and WebSocket
/// upgrades (a GraphQL WebSocket runs mutations).
pub fn changes_state(req: &Request) -> bool {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade || !matches!(*req.method(), Method::GET | Method::HEAD)
}

/// Whether the request says it comes from a page of this node: its `Origin`, or the origin
/// of its `Referer` when it has no `Origin`, is this request's own scheme and `Host`, or the
/// origin of `base_url` (the public URL, for a node behind a TLS-terminating proxy). A
/// request with neither header is refused: every browser sends one on a cross-site POST.
pub fn same_origin(req: &Request, base_url: &str) -> bool {
    let headers = req.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let claimed = match text(header::ORIGIN).filter(|o| *o != "null") {
        Some(o) => o.to_string(),
        None => match text(header::REFERER).and_then(origin_of) {
            Some(o) => o,
            None => return false,
        },
    };
    let scheme = if *req.scheme() == poem::http::uri::Scheme::HTTPS {
        "https"
    } else {
        "http"
    };
    let own = text(header::HOST).map(|h| format!("{scheme}://{h}"));
    own.is_some_and(|o| o.eq_ignore_ascii_case(&claimed))
        || origin_of(base_url).is_some_and(|o| o.eq_ignore_ascii_case(&claimed))
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!scheme.is_empty() && !host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// Whether cookies this node sets must be `Secure`: served over HTTPS, or behind a proxy that
/// serves its public URL over HTTPS.
pub fn secure(req: &Request, base_url: &str) -> bool {
    *req.scheme() == poem::http::uri::Scheme::HTTPS || base_url.starts_with("https://")
}

/// The `Set-Cookie` value that hands a browser its session.
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes a browser forget its session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method).uri_str("/graphql");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.finish()
    }

    #[test]
    fn the_cookie_among_others() {
        let r = req(
            Method::GET,
            &[
                ("cookie", "a=1; rxl_session=rxs_abc; b=2"),
                ("cookie", "c=3"),
            ],
        );
        assert_eq!(cookie_value(r.headers()), Some("rxs_abc"));
        let r = req(
            Method::GET,
            &[("cookie", "rxl_sessionx=1; x_rxl_session=2")],
        );
        assert_eq!(cookie_value(r.headers()), None);
    }

    #[test]
    fn origin_or_referer_must_be_this_site() {
        let host = ("host", "node.example:8080");
        let base = "https://verify.example.org";
        let ok = |h: &[(&str, &str)]| same_origin(&req(Method::POST, h), base);
        assert!(ok(&[host, ("origin", "http://node.example:8080")]));
        assert!(ok(&[host, ("origin", "https://verify.example.org")]));
        assert!(ok(&[
            host,
            ("referer", "http://node.example:8080/signin?next=/")
        ]));
        assert!(!ok(&[host, ("origin", "http://evil.example")]));
        assert!(!ok(&[host, ("origin", "http://node.example:8081")]));
        assert!(
            !ok(&[host, ("origin", "null")]),
            "sandboxed and opaque origins"
        );
        assert!(!ok(&[
            host,
            ("referer", "http://evil.example/node.example:8080")
        ]));
        assert!(!ok(&[host]), "neither header");
        // An Origin that disagrees wins over a Referer that agrees.
        assert!(!ok(&[
            host,
            ("origin", "http://evil.example"),
            ("referer", "http://node.example:8080/")
        ]));
    }

    #[test]
    fn what_counts_as_changing_state() {
        assert!(!changes_state(&req(Method::GET, &[])));
        assert!(!changes_state(&req(Method::HEAD, &[])));
        assert!(changes_state(&req(Method::POST, &[])));
        assert!(changes_state(&req(Method::DELETE, &[])));
        assert!(changes_state(&req(
            Method::GET,
            &[("upgrade", "WebSocket")]
        )));
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("rxs_1", true);
        for part in [
            "rxl_session=rxs_1",
            "Path=/",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!set_cookie("rxs_1", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
