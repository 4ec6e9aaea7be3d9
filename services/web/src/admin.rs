//! The admin page: organizations, company prefixes, sites, devices and API keys, listed and
//! managed from a browser signed in with an ADMIN key (or any client sending one as Bearer).
//!
//! Server-rendered HTML without script: every form POSTs to `/admin/{action}` with the
//! session cookie, which [`crate::session`] accepts only from this site's own pages (CSRF).
//! Every action calls the same function as its GraphQL mutation (`rxledger_graphql::admin`),
//! which also checks the role, so a rule exists once. A successful action redirects back to
//! the page (a reload repeats nothing); a newly issued key is shown once, on the answer to
//! the form that issued it, and never again.

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Body, Request, Response, handler};
use rxledger_graphql::admin::{self, DeviceInput, IssuedApiKey, OrganizationInput, SiteInput};
use rxledger_graphql::ratelimit::RouteCost;
use rxledger_graphql::{ApiError, Caller, Code, Role};

use crate::html::{esc, page};
use crate::{Problem, Web, accepts_html, admit, signin, wants_json};

/// Roles offered by the forms, as GraphQL spells them.
const ROLES: [Role; 5] = [
    Role::Manufacturer,
    Role::Wholesaler,
    Role::Pharmacy,
    Role::Regulator,
    Role::Admin,
];

/// `GET /admin`: everything an admin manages.
#[handler]
pub async fn view(req: &Request, Data(web): Data<&Web>) -> Response {
    let c = match admin_caller(web, req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    render(web, &c, StatusCode::OK, None, None).await
}

/// `POST /admin/{action}` with a URL-encoded form: one change, then back to the page.
#[handler]
pub async fn act(
    req: &Request,
    Path(action): Path<String>,
    body: Body,
    Data(web): Data<&Web>,
) -> Response {
    let c = match admin_caller(web, req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let fields = match signin::read_form(body).await {
        Ok(f) => f,
        Err(p) => return p.respond(wants_json(req.headers())),
    };
    let form = Form(fields);
    match perform(web, &c, &action, &form).await {
        Ok(None) => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, "/admin")
            .finish(),
        Ok(Some(issued)) => render(web, &c, StatusCode::OK, Some(&issued), None).await,
        Err(e) => {
            let status = match e.code {
                Code::Internal => StatusCode::SERVICE_UNAVAILABLE,
                Code::NotFound => StatusCode::NOT_FOUND,
                Code::Forbidden => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            render(web, &c, status, None, Some(&e.message)).await
        }
    }
}

/// The caller, once it has paid for the request and shown an ADMIN role: a browser that is
/// not signed in goes to the sign-in page first.
async fn admin_caller(web: &Web, req: &Request) -> Result<Caller, Response> {
    let json = wants_json(req.headers());
    let c = admit(web, req, RouteCost::Labels)
        .await
        .map_err(|p| p.respond(json))?;
    match c.role() {
        Some(Role::Admin) => Ok(c),
        None if accepts_html(req.headers()) && req.method() == poem::http::Method::GET => {
            Err(signin::redirect(req))
        }
        None => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "the admin page needs an ADMIN key: sign in at /signin",
        )
        .respond(json)),
        Some(r) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "the admin page is for ADMIN keys; this session's key is {}",
                r.as_str()
            ),
        )
        .respond(json)),
    }
}

/// A submitted form's fields.
struct Form(Vec<(String, String)>);

impl Form {
    /// A field, trimmed; empty when absent.
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    fn required(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            "" => Err(ApiError::bad_request(format!("{name} is required"))),
            v => Ok(v.to_string()),
        }
    }

    fn role(&self, name: &str) -> Result<Option<Role>, ApiError> {
        match self.get(name) {
            "" => Ok(None),
            r => Role::parse(r)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("{name}: no role {r:?}"))),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(name) {
            "" => Ok(None),
            v => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{name}: {v:?} is not a number"))),
        }
    }
}

/// Runs one action; `Some` only for a newly issued key, which the answer shows once.
async fn perform(
    web: &Web,
    c: &Caller,
    action: &str,
    f: &Form,
) -> Result<Option<IssuedApiKey>, ApiError> {
    let s = &web.services;
    match action {
        "organization" => {
            let input = OrganizationInput {
                id: f.required("id")?,
                name: f.required("name")?,
                role: f
                    .role("role")?
                    .ok_or_else(|| ApiError::bad_request("role is required"))?,
            };
            admin::create_organization(s, c, input).await?;
        }
        "prefix" => {
            admin::add_company_prefix(s, c, &f.required("org")?, &f.required("prefix")?).await?;
        }
        "site" => {
            let input = SiteInput {
                gln: f.required("gln")?,
                org_id: f.required("org")?,
                name: f.required("name")?,
                latitude: f.number("latitude")?,
                longitude: f.number("longitude")?,
            };
            admin::add_site(s, c, input).await?;
        }
        "device" => {
            let input = DeviceInput {
                id: f.required("id")?,
                public_key: f.required("public_key")?,
                org_id: f.required("org")?,
                site_gln: f.required("site")?,
            };
            admin::enroll_device(s, c, input).await?;
        }
        "revoke-device" => {
            admin::revoke_device(s, c, &f.required("id")?).await?;
        }
        "key" => {
            let label = match f.get("label") {
                "" => "issued on the admin page",
                l => l,
            };
            let issued = admin::issue_api_key(
                s,
                c,
                &f.required("org")?,
                label,
                f.role("role")?,
                f.number("expires_days")?,
            )
            .await?;
            return Ok(Some(issued));
        }
        "revoke-key" => {
            admin::revoke_api_key(s, c, &f.required("id")?).await?;
        }
        other => {
            return Err(ApiError::new(
                Code::NotFound,
                format!("the admin page has no action {other:?}"),
            ));
        }
    }
    Ok(None)
}

/// The page: the problem with the last action or the key it issued, then each list with its
/// form.
async fn render(
    web: &Web,
    c: &Caller,
    status: StatusCode,
    issued: Option<&IssuedApiKey>,
    problem: Option<&str>,
) -> Response {
    let s = &web.services;
    let lists = async {
        Ok::<_, ApiError>((
            admin::organizations(s, c).await?,
            admin::sites(s, c).await?,
            admin::devices(s, c).await?,
            admin::api_keys(s, c).await?,
        ))
    };
    let (orgs, sites, devices, keys) = match lists.await {
        Ok(l) => l,
        Err(e) => return crate::problem(e).respond(false),
    };
    let mut b = String::from(
        r#"<h1>Administration</h1>
<p class="help">Organizations, their GS1 company prefixes and sites, scanners and API keys. The same
changes can be made with <code>rxledger org|site|device|key</code> or the GraphQL admin mutations.</p>"#,
    );
    if let Some(p) = problem {
        b.push_str(&format!(
            r#"<p class="error" role="alert" id="admin-error">{}</p>"#,
            esc(p)
        ));
    }
    if let Some(k) = issued {
        b.push_str(&format!(
            r#"<section class="confirm" id="new-key" role="status"><h2>New API key for {org} ({role})</h2>
<p>Copy it now: it is shown only this once and is stored only as a hash.</p>
<pre id="new-key-token">{token}</pre><p class="help">Key id {id}</p></section>"#,
            org = esc(&k.org_id),
            role = esc(&k.role.as_str().to_lowercase()),
            token = esc(&k.token),
            id = esc(&k.id),
        ));
    }
    organizations_section(&mut b, &orgs);
    sites_section(&mut b, &sites, &orgs);
    devices_section(&mut b, &devices, &orgs);
    keys_section(&mut b, &keys, &orgs);
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(page("Administration", &b))
}

/// Organizations and their company prefixes, with the forms that add them.
fn organizations_section(b: &mut String, orgs: &[admin::Organization]) {
    b.push_str(r#"<section class="card" id="organizations"><h2>Organizations</h2><div class="scroll"><table><tr><th>Id</th><th>Name</th><th>Role</th><th>Company prefixes</th></tr>"#);
    for o in orgs {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&o.id),
            esc(&o.name),
            esc(o.role.as_str()),
            esc(&o.company_prefixes.join(", "))
        ));
    }
    b.push_str("</table></div>");
    b.push_str(&format!(
        r#"<form method="post" action="/admin/organization"><h3>New organization</h3>
<label for="org-id">Id</label><input id="org-id" name="id" required>
<label for="org-name">Name</label><input id="org-name" name="name" required>
<label for="org-role">Role</label>{}
<p><button type="submit">Create organization</button></p></form>
<form method="post" action="/admin/prefix"><h3>Company prefix</h3>
<label for="prefix-org">Organization</label>{}
<label for="prefix">GS1 company prefix</label><input id="prefix" name="prefix" inputmode="numeric" required>
<p><button type="submit">Add prefix</button></p></form></section>"#,
        role_select("org-role", "role", false),
        org_select("prefix-org", orgs)
    ));
}

/// Sites, with the form that adds one.
fn sites_section(b: &mut String, sites: &[admin::Site], orgs: &[admin::Organization]) {
    b.push_str(r#"<section class="card" id="sites"><h2>Sites</h2><div class="scroll"><table><tr><th>GLN</th><th>Organization</th><th>Name</th></tr>"#);
    for st in sites {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&st.gln),
            esc(&st.org_id),
            esc(&st.name)
        ));
    }
    b.push_str(&format!(
        r#"</table></div><form method="post" action="/admin/site"><h3>New site</h3>
<label for="site-gln">GLN</label><input id="site-gln" name="gln" inputmode="numeric" required>
<label for="site-org">Organization</label>{}
<label for="site-name">Name</label><input id="site-name" name="name" required>
<label for="site-lat">Latitude and longitude (optional)</label>
<div class="row"><input id="site-lat" name="latitude" inputmode="decimal" aria-label="Latitude"><input id="site-lon" name="longitude" inputmode="decimal" aria-label="Longitude"></div>
<p><button type="submit">Add site</button></p></form></section>"#,
        org_select("site-org", orgs)
    ));
}

/// Devices, with revocation and the enrolment form.
fn devices_section(b: &mut String, devices: &[admin::Device], orgs: &[admin::Organization]) {
    b.push_str(r#"<section class="card" id="devices"><h2>Devices</h2><div class="scroll"><table><tr><th>Id</th><th>Organization</th><th>Site</th><th>Status</th><th></th></tr>"#);
    for d in devices {
        let revoke = if d.status == "active" {
            format!(
                r#"<form method="post" action="/admin/revoke-device"><input type="hidden" name="id" value="{}"><button type="submit" class="secondary">Revoke</button></form>"#,
                esc(&d.id)
            )
        } else {
            String::new()
        };
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
            esc(&d.id),
            esc(&d.org_id),
            esc(&d.site_gln),
            esc(&d.status)
        ));
    }
    b.push_str(&format!(
        r#"</table></div><form method="post" action="/admin/device"><h3>Enrol a device</h3>
<label for="device-id">Device id</label><input id="device-id" name="id" required>
<label for="device-key">Public key (SEC1 compressed secp256k1, 66 hex digits: <code>rxledger keygen</code>)</label><input id="device-key" name="public_key" required spellcheck="false">
<label for="device-org">Organization</label>{}
<label for="device-site">Site GLN</label><input id="device-site" name="site" inputmode="numeric" required>
<p><button type="submit">Enrol device</button></p></form></section>"#,
        org_select("device-org", orgs)
    ));
}

/// API keys, with revocation and the form that issues one, and sign-out.
fn keys_section(b: &mut String, keys: &[admin::ApiKeyInfo], orgs: &[admin::Organization]) {
    b.push_str(r#"<section class="card" id="keys"><h2>API keys</h2><div class="scroll"><table><tr><th>Id</th><th>Organization</th><th>Role</th><th>Label</th><th>Status</th><th></th></tr>"#);
    for k in keys {
        let (state, revoke) = if k.revoked {
            ("revoked", String::new())
        } else {
            (
                "active",
                format!(
                    r#"<form method="post" action="/admin/revoke-key"><input type="hidden" name="id" value="{}"><button type="submit" class="secondary">Revoke</button></form>"#,
                    esc(&k.id)
                ),
            )
        };
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td><td>{revoke}</td></tr>",
            esc(&k.id),
            esc(&k.org_id),
            esc(&k.role),
            esc(&k.label)
        ));
    }
    b.push_str(&format!(
        r#"</table></div><form method="post" action="/admin/key"><h3>Issue a key</h3>
<label for="key-org">Organization</label>{}
<label for="key-role">Role</label>{}
<label for="key-label">Label</label><input id="key-label" name="label" placeholder="till 2, Corner Pharmacy">
<label for="key-days">Expires after (days, optional)</label><input id="key-days" name="expires_days" inputmode="numeric">
<p><button type="submit" id="issue-key">Issue key</button></p></form></section>
<form method="post" action="/signout"><button type="submit" class="secondary">Sign out</button></form>"#,
        org_select("key-org", orgs),
        role_select("key-role", "role", true)
    ));
}

fn role_select(id: &str, name: &str, org_default: bool) -> String {
    let mut out = format!(r#"<select id="{id}" name="{name}">"#);
    if org_default {
        out.push_str(r#"<option value="">The organization's role</option>"#);
    }
    for r in ROLES {
        out.push_str(&format!(
            r#"<option value="{0}">{1}</option>"#,
            r.as_str(),
            r.as_str().to_lowercase()
        ));
    }
    out.push_str("</select>");
    out
}

fn org_select(id: &str, orgs: &[admin::Organization]) -> String {
    let mut out = format!(r#"<select id="{id}" name="org" required>"#);
    for o in orgs {
        out.push_str(&format!(
            r#"<option value="{}">{} ({})</option>"#,
            esc(&o.id),
            esc(&o.name),
            esc(&o.id)
        ));
    }
    out.push_str("</select>");
    out
}
