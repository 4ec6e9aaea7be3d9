//! Registry management: organizations, company prefixes, sites, devices and API keys.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use rxledger_core::gs1::Gln;
use rxledger_core::keys::PublicKey;
use rxledger_entities::{device, organization, site};

use crate::auth::{KEYED, Role, require};
use crate::{ApiError, Services};

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

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Every organization (regulators and admins), or the caller's own.
    async fn organizations(&self, ctx: &Context<'_>) -> Result<Vec<Organization>> {
        let c = require(ctx, KEYED)?;
        let s = services(ctx);
        let mut out = Vec::new();
        for o in s.registry.organizations().await.map_err(ApiError::from)? {
            if c.may_see(&o.id) {
                out.push(org_out(s, o).await?);
            }
        }
        Ok(out)
    }

    /// Sites (regulators and admins see all; others their own).
    async fn sites(&self, ctx: &Context<'_>) -> Result<Vec<Site>> {
        let c = require(ctx, KEYED)?;
        let all = services(ctx)
            .registry
            .sites()
            .await
            .map_err(ApiError::from)?;
        Ok(all
            .into_iter()
            .filter(|s| c.may_see(&s.org_id))
            .map(site_out)
            .collect())
    }

    /// Enrolled devices (regulators and admins see all; others their own).
    async fn devices(&self, ctx: &Context<'_>) -> Result<Vec<Device>> {
        let c = require(ctx, KEYED)?;
        let all = services(ctx)
            .registry
            .devices()
            .await
            .map_err(ApiError::from)?;
        Ok(all
            .into_iter()
            .filter(|d| c.may_see(&d.org_id))
            .map(device_out)
            .collect())
    }

    /// API keys (admins).
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKeyInfo>> {
        require(ctx, &[Role::Admin])?;
        let rows = services(ctx)
            .api_keys
            .list(None)
            .await
            .map_err(ApiError::from)?;
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
        require(ctx, &[Role::Admin])?;
        let s = services(ctx);
        let o = s
            .registry
            .add_organization(&input.id, &input.name, input.role.as_str())
            .await
            .map_err(ApiError::from)?;
        Ok(org_out(s, o).await?)
    }

    /// Registers a GS1 company prefix: its owner becomes the brand owner of GTINs under it.
    async fn add_company_prefix(
        &self,
        ctx: &Context<'_>,
        org_id: String,
        prefix: String,
    ) -> Result<Organization> {
        require(ctx, &[Role::Admin])?;
        let s = services(ctx);
        s.registry
            .add_company_prefix(&org_id, &prefix)
            .await
            .map_err(ApiError::from)?;
        let o = s
            .registry
            .organization(&org_id)
            .await
            .map_err(ApiError::from)?;
        let o = o.ok_or_else(|| {
            ApiError::new(crate::Code::NotFound, format!("organization {org_id}"))
        })?;
        Ok(org_out(s, o).await?)
    }

    async fn add_site(&self, ctx: &Context<'_>, input: SiteInput) -> Result<Site> {
        require(ctx, &[Role::Admin])?;
        let gln = Gln::parse(&input.gln).map_err(|e| ApiError::bad_request(format!("gln: {e}")))?;
        let coords = match (input.latitude, input.longitude) {
            (Some(a), Some(b)) => Some((a, b)),
            (None, None) => None,
            _ => {
                return Err(
                    ApiError::bad_request("give both latitude and longitude, or neither").into(),
                );
            }
        };
        let site = services(ctx)
            .registry
            .add_site_at(gln.as_str(), &input.org_id, &input.name, coords)
            .await
            .map_err(ApiError::from)?;
        Ok(site_out(site))
    }

    async fn enroll_device(&self, ctx: &Context<'_>, input: DeviceInput) -> Result<Device> {
        require(ctx, &[Role::Admin])?;
        let key = PublicKey::from_sec1_hex(&input.public_key)
            .map_err(|e| ApiError::bad_request(format!("publicKey: {e}")))?;
        let gln = Gln::parse(&input.site_gln)
            .map_err(|e| ApiError::bad_request(format!("siteGln: {e}")))?;
        let d = services(ctx)
            .registry
            .enroll_device(&input.id, &key, &input.org_id, gln.as_str())
            .await
            .map_err(ApiError::from)?;
        Ok(device_out(d))
    }

    async fn revoke_device(&self, ctx: &Context<'_>, id: String) -> Result<Device> {
        require(ctx, &[Role::Admin])?;
        let s = services(ctx);
        s.registry
            .revoke_device(&id)
            .await
            .map_err(ApiError::from)?;
        let d = s.registry.device(&id).await.map_err(ApiError::from)?;
        Ok(device_out(d.ok_or_else(|| {
            ApiError::new(crate::Code::NotFound, format!("device {id}"))
        })?))
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
        require(ctx, &[Role::Admin])?;
        let s = services(ctx);
        let org = s
            .registry
            .organization(&org_id)
            .await
            .map_err(ApiError::from)?;
        let org = org.ok_or_else(|| {
            ApiError::new(crate::Code::NotFound, format!("organization {org_id}"))
        })?;
        let role = role
            .or_else(|| Role::parse(&org.role))
            .unwrap_or(Role::Pharmacy);
        let expires = expires_in_days.map(|d| rxledger_store::now_ms() + i64::from(d) * 86_400_000);
        let (token, row) = s
            .api_keys
            .issue(&org_id, role.as_str(), &label, expires)
            .await
            .map_err(ApiError::from)?;
        Ok(IssuedApiKey {
            id: row.id,
            token,
            org_id,
            role,
        })
    }

    async fn revoke_api_key(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        require(ctx, &[Role::Admin])?;
        services(ctx)
            .api_keys
            .revoke(&id)
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }
}
