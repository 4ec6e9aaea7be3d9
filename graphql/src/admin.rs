//! Registry management: organizations, company prefixes, sites, devices and API keys.
//!
//! Each flow is one function taking the [`Services`] and the [`Caller`], with its role check
//! inside: the GraphQL resolvers below and the web's admin page call the same functions, so a
//! rule (who may, what is parsed, what is refused) exists once.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use rxledger_core::gs1::Gln;
use rxledger_core::keys::PublicKey;
use rxledger_entities::{device, organization, site};

use crate::auth::{Caller, KEYED, Role, require, require_caller};
use crate::{ApiError, Code, Services};

#[derive(SimpleObject)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub company_prefixes: Vec<String>,
}

#[derive(SimpleObject)]
pub struct Site {
    pub gln: String,
    pub org_id: String,
    pub name: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(SimpleObject)]
pub struct Device {
    pub id: String,
    pub public_key: String,
    pub org_id: String,
    pub site_gln: String,
    /// `active` or `revoked`.
    pub status: String,
    pub last_seq: i64,
}

/// A newly issued key. The token is shown only here, once.
#[derive(SimpleObject)]
pub struct IssuedApiKey {
    pub id: String,
    pub token: String,
    pub org_id: String,
    pub role: Role,
}

#[derive(SimpleObject)]
pub struct ApiKeyInfo {
    pub id: String,
    pub org_id: String,
    pub role: String,
    pub label: String,
    pub revoked: bool,
}

#[derive(InputObject)]
pub struct OrganizationInput {
    pub id: String,
    pub name: String,
    pub role: Role,
}

#[derive(InputObject)]
pub struct SiteInput {
    pub gln: String,
    pub org_id: String,
    pub name: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(InputObject)]
pub struct DeviceInput {
    pub id: String,
    /// SEC1 compressed secp256k1 public key, 66 hex characters.
    pub public_key: String,
    pub org_id: String,
    pub site_gln: String,
}

pub(crate) fn services<'a>(ctx: &'a Context<'_>) -> &'a Services {
    // The schema is always built with Services (see `crate::schema`).
    ctx.data_unchecked::<Services>()
}

async fn org_out(s: &Services, o: organization::Model) -> Result<Organization, ApiError> {
    let prefixes = s
        .registry
        .company_prefixes()
        .await?
        .into_iter()
        .filter(|p| p.org_id == o.id)
        .map(|p| p.prefix)
        .collect();
    Ok(Organization {
        role: Role::parse(&o.role).unwrap_or(Role::Pharmacy),
        id: o.id,
        name: o.name,
        company_prefixes: prefixes,
    })
}

fn site_out(s: site::Model) -> Site {
    Site {
        gln: s.gln,
        org_id: s.org_id,
        name: s.name,
        latitude: s.latitude,
        longitude: s.longitude,
    }
}

fn device_out(d: device::Model) -> Device {
    Device {
        id: d.id,
        public_key: d.public_key,
        org_id: d.org_id,
        site_gln: d.site_gln,
        status: d.status,
        last_seq: d.last_seq,
    }
}

/// Every organization (regulators and admins), or the caller's own.
pub async fn organizations(s: &Services, c: &Caller) -> Result<Vec<Organization>, ApiError> {
    require_caller(c, KEYED)?;
    let mut out = Vec::new();
    for o in s.registry.organizations().await? {
        if c.may_see(&o.id) {
            out.push(org_out(s, o).await?);
        }
    }
    Ok(out)
}

/// Sites (regulators and admins see all; others their own).
pub async fn sites(s: &Services, c: &Caller) -> Result<Vec<Site>, ApiError> {
    require_caller(c, KEYED)?;
    let all = s.registry.sites().await?;
    Ok(all
        .into_iter()
        .filter(|s| c.may_see(&s.org_id))
        .map(site_out)
        .collect())
}

/// Enrolled devices (regulators and admins see all; others their own).
pub async fn devices(s: &Services, c: &Caller) -> Result<Vec<Device>, ApiError> {
    require_caller(c, KEYED)?;
    let all = s.registry.devices().await?;
    Ok(all
        .into_iter()
        .filter(|d| c.may_see(&d.org_id))
        .map(device_out)
        .collect())
}

/// API keys (admins).
pub async fn api_keys(s: &Services, c: &Caller) -> Result<Vec<ApiKeyInfo>, ApiError> {
    require_caller(c, &[Role::Admin])?;
    let rows = s.api_keys.list(None).await?;
    Ok(rows
        .into_iter()
        .map(|k| ApiKeyInfo {
            id: k.id,
            org_id: k.org_id,
            role: k.role,
            label: k.label,
            revoked: k.revoked_ms.is_some(),
        })
        .collect())
}

pub async fn create_organization(
    s: &Services,
    c: &Caller,
    input: OrganizationInput,
) -> Result<Organization, ApiError> {
    require_caller(c, &[Role::Admin])?;
    let o = s
        .registry
        .add_organization(&input.id, &input.name, input.role.as_str())
        .await?;
    org_out(s, o).await
}

/// Registers a GS1 company prefix: its owner becomes the brand owner of GTINs under it.
pub async fn add_company_prefix(
    s: &Services,
    c: &Caller,
    org_id: &str,
    prefix: &str,
) -> Result<Organization, ApiError> {
    require_caller(c, &[Role::Admin])?;
    s.registry.add_company_prefix(org_id, prefix).await?;
    let o = s.registry.organization(org_id).await?;
    let o = o.ok_or_else(|| ApiError::new(Code::NotFound, format!("organization {org_id}")))?;
    org_out(s, o).await
}

pub async fn add_site(s: &Services, c: &Caller, input: SiteInput) -> Result<Site, ApiError> {
    require_caller(c, &[Role::Admin])?;
    let gln = Gln::parse(&input.gln).map_err(|e| ApiError::bad_request(format!("gln: {e}")))?;
    let coords = match (input.latitude, input.longitude) {
        (Some(a), Some(b)) => Some((a, b)),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "give both latitude and longitude, or neither",
            ));
        }
    };
    let site = s
        .registry
        .add_site_at(gln.as_str(), &input.org_id, &input.name, coords)
        .await?;
    Ok(site_out(site))
}

pub async fn enroll_device(
    s: &Services,
    c: &Caller,
    input: DeviceInput,
) -> Result<Device, ApiError> {
    require_caller(c, &[Role::Admin])?;
    let key = PublicKey::from_sec1_hex(&input.public_key)
        .map_err(|e| ApiError::bad_request(format!("publicKey: {e}")))?;
    let gln =
        Gln::parse(&input.site_gln).map_err(|e| ApiError::bad_request(format!("siteGln: {e}")))?;
    let d = s
        .registry
        .enroll_device(&input.id, &key, &input.org_id, gln.as_str())
        .await?;
    Ok(device_out(d))
}

pub async fn revoke_device(s: &Services, c: &Caller, id: &str) -> Result<Device, ApiError> {
    require_caller(c, &[Role::Admin])?;
    s.registry.revoke_device(id).await?;
    let d = s.registry.device(id).await?;
    Ok(device_out(d.ok_or_else(|| {
        ApiError::new(Code::NotFound, format!("device {id}"))
    })?))
}

/// Issues an API key for an organization, with the organization's role unless `role` is given.
pub async fn issue_api_key(
    s: &Services,
    c: &Caller,
    org_id: &str,
    label: &str,
    role: Option<Role>,
    expires_in_days: Option<i32>,
) -> Result<IssuedApiKey, ApiError> {
    require_caller(c, &[Role::Admin])?;
    let org = s.registry.organization(org_id).await?;
    let org = org.ok_or_else(|| ApiError::new(Code::NotFound, format!("organization {org_id}")))?;
    let role = role
        .or_else(|| Role::parse(&org.role))
        .unwrap_or(Role::Pharmacy);
    let expires = expires_in_days.map(|d| rxledger_store::now_ms() + i64::from(d) * 86_400_000);
    let (token, row) = s
        .api_keys
        .issue(org_id, role.as_str(), label, expires)
        .await?;
    Ok(IssuedApiKey {
        id: row.id,
        token,
        org_id: org_id.to_string(),
        role,
    })
}

/// Revokes an API key; the browser sessions signed in with it end with it.
pub async fn revoke_api_key(s: &Services, c: &Caller, id: &str) -> Result<(), ApiError> {
    require_caller(c, &[Role::Admin])?;
    s.api_keys.revoke(id).await?;
    Ok(())
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Every organization (regulators and admins), or the caller's own.
    async fn organizations(&self, ctx: &Context<'_>) -> Result<Vec<Organization>> {
        let c = require(ctx, KEYED)?;
        Ok(organizations(services(ctx), c).await?)
    }

    /// Sites (regulators and admins see all; others their own).
    async fn sites(&self, ctx: &Context<'_>) -> Result<Vec<Site>> {
        let c = require(ctx, KEYED)?;
        Ok(sites(services(ctx), c).await?)
    }

    /// Enrolled devices (regulators and admins see all; others their own).
    async fn devices(&self, ctx: &Context<'_>) -> Result<Vec<Device>> {
        let c = require(ctx, KEYED)?;
        Ok(devices(services(ctx), c).await?)
    }

    /// API keys (admins).
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKeyInfo>> {
        let c = require(ctx, &[Role::Admin])?;
        Ok(api_keys(services(ctx), c).await?)
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    async fn create_organization(
        &self,
        ctx: &Context<'_>,
        input: OrganizationInput,
    ) -> Result<Organization> {
        let c = require(ctx, &[Role::Admin])?;
        Ok(create_organization(services(ctx), c, input).await?)
    }

    /// Registers a GS1 company prefix: its owner becomes the brand owner of GTINs under it.
    async fn add_company_prefix(
        &self,
        ctx: &Context<'_>,
        org_id: String,
        prefix: String,
    ) -> Result<Organization> {
        let c = require(ctx, &[Role::Admin])?;
        Ok(add_company_prefix(services(ctx), c, &org_id, &prefix).await?)
    }

    async fn add_site(&self, ctx: &Context<'_>, input: SiteInput) -> Result<Site> {
        let c = require(ctx, &[Role::Admin])?;
        Ok(add_site(services(ctx), c, input).await?)
    }

    async fn enroll_device(&self, ctx: &Context<'_>, input: DeviceInput) -> Result<Device> {
        let c = require(ctx, &[Role::Admin])?;
        Ok(enroll_device(services(ctx), c, input).await?)
    }

    async fn revoke_device(&self, ctx: &Context<'_>, id: String) -> Result<Device> {
        let c = require(ctx, &[Role::Admin])?;
        Ok(revoke_device(services(ctx), c, &id).await?)
    }

    /// Issues an API key for an organization, with the organization's role unless `role` is given.
    async fn issue_api_key(
        &self,
        ctx: &Context<'_>,
        org_id: String,
        label: String,
        role: Option<Role>,
        expires_in_days: Option<i32>,
    ) -> Result<IssuedApiKey> {
        let c = require(ctx, &[Role::Admin])?;
        Ok(issue_api_key(services(ctx), c, &org_id, &label, role, expires_in_days).await?)
    }

    /// Revokes an API key; the browser sessions signed in with it end with it.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        let c = require(ctx, &[Role::Admin])?;
        revoke_api_key(services(ctx), c, &id).await?;
        Ok(true)
    }
}
