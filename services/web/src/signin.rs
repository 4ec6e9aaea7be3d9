//! Signing in from a browser: `GET /signin` shows a form where the user pastes an API key,
//! `POST /signin` checks it and opens a session (the cookie of [`crate::session`]), and
//! `POST /signout` ends it. The key itself never leaves the request that signs in.
//!
//! Both POSTs must come from this node's own pages ([`session::same_origin`]): a page on
//! another site can neither sign a browser out nor sign it in to the attacker's key. Sign-in
//! attempts are charged to a bucket of their own per client address ([`SIGNIN_LIMIT`]), right
//! or wrong, before the key is looked up.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::{Data, Query};
use poem::{Body, Request, Response, handler};
use rxledger_graphql::Caller;
use rxledger_graphql::ratelimit::{Limiter, RateLimit};

use crate::html::{esc, page};
use crate::{Problem, Web, client_ip, session};

/// Largest sign-in or sign-out form.
pub const MAX_FORM: usize = 4096;

/// Sign-in attempts per client address: 10 at once, then one every 6 seconds. A person
/// pasting a key never meets it; a script guessing keys gets 600 guesses an hour (against
/// 2^256 keys), and the database a bounded number of lookups.
pub const SIGNIN_LIMIT: RateLimit = RateLimit {
    per_second: 1.0 / 6.0,
    burst: 10.0,
};

/// The sign-in attempts' own buckets, apart from the API's.
pub struct SignInLimiter(pub Limiter);

impl Default for SignInLimiter {
    fn default() -> Self {
        SignInLimiter(Limiter::new(SIGNIN_LIMIT))
    }
}

/// `GET /signin[?next=/path]`: the form, and who is signed in now.
#[handler]
pub async fn form(
    req: &Request,
    Query(q): Query<std::collections::HashMap<String, String>>,
    Data(web): Data<&Web>,
) -> Response {
    let next = safe_next(q.get("next").map(String::as_str));
    let now = session::caller(&web.services.api_keys, req, &web.base_url)
        .await
        .ok();
    html(
        StatusCode::OK,
        &signin_page(web, now.as_ref(), next, None).await,
    )
}

/// `POST /signin` with `key=<API key>[&next=/path]`: a session cookie and a redirect to
/// `next` (the pharmacist's page by default), or the form again with what went wrong.
#[handler]
pub async fn sign_in(
    req: &Request,
    body: Body,
    Data(web): Data<&Web>,
    Data(limiter): Data<&Arc<SignInLimiter>>,
) -> Response {
    if let Err(wait) = limiter.0.take(&client_ip(req), 1.0) {
        return Problem {
            message: "too many sign-in attempts from this address; wait a minute and try again"
                .into(),
            ..Problem::rate_limited(wait)
        }
        .respond(false);
    }
    if !session::same_origin(req, &web.base_url) {
        return cross_site();
    }
    let fields = match read_form(body).await {
        Ok(f) => f,
        Err(p) => return p.respond(false),
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    };
    let next = safe_next(field("next"));
    let keys = &web.services.api_keys;
    let token = field("key").unwrap_or_default();
    if token.is_empty() {
        return refused(web, next, "Paste your API key first.").await;
    }
    let caller = match rxledger_graphql::authenticate(keys, Some(&format!("Bearer {token}"))).await
    {
        Ok(Caller::Key { key_id, .. }) => key_id,
        Ok(Caller::Anonymous) => return refused(web, next, "Paste your API key first.").await,
        Err(r) if r.code == "INTERNAL" => return unavailable(),
        Err(r) => {
            let message = format!("That API key was refused: {}.", r.message);
            return refused(web, next, &message).await;
        }
    };
    let sessions = keys.sessions();
    // Signing in again replaces the session this browser had.
    if let Some(old) = session::cookie_value(req.headers())
        && let Err(e) = sessions.close(old).await
    {
        tracing::error!(error = %e, "closing the previous session");
        return unavailable();
    }
    match sessions.open(&caller, rxledger_store::now_ms()).await {
        Ok(cookie) => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, next)
            .header(
                header::SET_COOKIE,
                session::set_cookie(&cookie, session::secure(req, &web.base_url)),
            )
            .header(header::CACHE_CONTROL, "no-store")
            .finish(),
        Err(e) => {
            tracing::error!(error = %e, "opening a session");
            unavailable()
        }
    }
}

/// `POST /signout`: ends this browser's session and clears its cookie.
#[handler]
pub async fn sign_out(req: &Request, Data(web): Data<&Web>) -> Response {
    if !session::same_origin(req, &web.base_url) {
        return cross_site();
    }
    if let Some(cookie) = session::cookie_value(req.headers())
        && let Err(e) = web.services.api_keys.sessions().close(cookie).await
    {
        tracing::error!(error = %e, "closing a session");
        return unavailable();
    }
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/signin")
        .header(
            header::SET_COOKIE,
            session::clear_cookie(session::secure(req, &web.base_url)),
        )
        .finish()
}

/// The form again, with why the key was refused.
async fn refused(web: &Web, next: &str, message: &str) -> Response {
    html(
        StatusCode::UNAUTHORIZED,
        &signin_page(web, None, next, Some(message)).await,
    )
}

/// 303 to the sign-in page, which sends the browser back to this request's path afterwards.
pub fn redirect(req: &Request) -> Response {
    let here = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut next = String::new();
    for b in here.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            next.push(b as char);
        } else {
            next.push_str(&format!("%{b:02X}"));
        }
    }
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, format!("/signin?next={next}"))
        .finish()
}

fn cross_site() -> Response {
    Problem::new(
        StatusCode::FORBIDDEN,
        "CSRF_REFUSED",
        "this form was sent from another site's page; sign in and out from this site's own pages",
    )
    .respond(false)
}

fn unavailable() -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "INTERNAL",
        "signing in is unavailable right now; the operator's log has the details",
    )
    .respond(false)
}

fn html(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body.to_string())
}

/// Where to go after signing in: a path on this node, never another site (`//evil`,
/// `/\evil` and absolute URLs are refused for `/`).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 512
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

/// A URL-encoded form body of at most [`MAX_FORM`] bytes, as (name, value) pairs.
pub async fn read_form(body: Body) -> Result<Vec<(String, String)>, Problem> {
    let bytes = body.into_bytes_limit(MAX_FORM).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TOO_LARGE",
            format!("a form may be at most {MAX_FORM} bytes"),
        )
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the form is not UTF-8",
        )
    })?;
    form_fields(text)
}

/// Decodes `application/x-www-form-urlencoded` text.
pub fn form_fields(text: &str) -> Result<Vec<(String, String)>, Problem> {
    let decode = |s: &str| {
        rxledger_core::gs1::percent_decode(&s.replace('+', " "), 0).map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the form is not URL-encoded",
            )
        })
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The sign-in page: who is signed in (with a sign-out button), the form, and the problem
/// with the last attempt.
async fn signin_page(web: &Web, now: Option<&Caller>, next: &str, problem: Option<&str>) -> String {
    let mut body = String::from(r#"<section class="card"><h1>Sign in</h1>"#);
    if let Some(p) = problem {
        body.push_str(&format!(r#"<p class="error" role="alert">{}</p>"#, esc(p)));
    }
    if let Some(Caller::Key { org_id, role, .. }) = now {
        let org = match web.services.registry.organization(org_id).await {
            Ok(Some(o)) => o.name,
            _ => org_id.clone(),
        };
        body.push_str(&format!(
            r#"<p id="signed-in-as">Signed in as {} ({}).</p>
<form method="post" action="/signout"><button type="submit" id="sign-out" class="secondary">Sign out</button></form>"#,
            esc(&org),
            esc(&role.as_str().to_lowercase())
        ));
        if *role == rxledger_graphql::Role::Admin {
            body.push_str(
                r#"<p><a href="/admin">Manage organizations, sites, devices and keys</a></p>"#,
            );
        }
    }
    body.push_str(&format!(
        r#"<form method="post" action="/signin" autocomplete="off">
<label for="signin-key">API key</label>
<div class="row"><input id="signin-key" name="key" type="password" required autofocus spellcheck="false" autocapitalize="off">
<input type="hidden" name="next" value="{}">
<button type="submit" id="signin-submit">Sign in</button></div>
<p class="help">Your organization's administrator issues API keys (<code>rxledger key issue</code>, or the admin page).
The key is checked once; this browser then holds a session cookie, never the key. A session ends when you sign out,
after 12 hours without use, 7 days after sign-in, or when the key is revoked.</p>
</form></section>"#,
        esc(next)
    ));
    page("Sign in", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/labels/1/L1.svg?page=2")),
            "/labels/1/L1.svg?page=2"
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn form_decoding() {
        let f = form_fields("key=rxl_ab&next=%2Flabels%2F1&x=a+b&empty").unwrap();
        assert_eq!(
            f,
            [
                ("key".into(), "rxl_ab".into()),
                ("next".into(), "/labels/1".into()),
                ("x".into(), "a b".into()),
                ("empty".into(), String::new())
            ]
        );
        assert!(form_fields("key=%zz").is_err());
    }
}
