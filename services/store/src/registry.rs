//! Organizations, their GS1 company prefixes, sites and devices.
//!
//! Inputs arrive here already parsed at the edge (CLI or GraphQL); the registry checks only
//! what needs the database: that referenced rows exist and that ids are not reused.

use rxledger_core::keys::PublicKey;
use rxledger_entities::{company_prefix, device, organization, site};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::{Database, StoreError, now_ms};

/// The roles an organization can hold. API keys are bound to one of these.
pub const ROLES: [&str; 5] = [
    "MANUFACTURER",
    "WHOLESALER",
    "PHARMACY",
    "REGULATOR",
    "ADMIN",
];

#[derive(Clone)]
pub struct Registry {
    db: Database,
}

impl Registry {
    pub fn new(db: Database) -> Self {
        Registry { db }
    }

    pub async fn add_organization(
        &self,
        id: &str,
        name: &str,
        role: &str,
    ) -> Result<organization::Model, StoreError> {
        check_id(id, "organization id")?;
        if !ROLES.contains(&role) {
            return Err(StoreError::Invalid(format!(
                "unknown role {role:?}; expected one of {}",
                ROLES.join(", ")
            )));
        }
        if organization::Entity::find_by_id(id)
            .one(&self.db.conn)
            .await?
            .is_some()
        {
            return Err(StoreError::Invalid(format!(
                "organization {id:?} already exists"
            )));
        }
        let row = organization::Model {
            id: id.into(),
            name: name.into(),
            role: role.into(),
            created_ms: now_ms(),
        };
        organization::Entity::insert(organization::ActiveModel::from(row.clone()))
            .exec_without_returning(&self.db.conn)
            .await?;
        Ok(row)
    }

    pub async fn organization(&self, id: &str) -> Result<Option<organization::Model>, StoreError> {
        Ok(organization::Entity::find_by_id(id)
            .one(&self.db.conn)
            .await?)
    }

    pub async fn organizations(&self) -> Result<Vec<organization::Model>, StoreError> {
        Ok(organization::Entity::find()
            .order_by_asc(organization::Column::Id)
            .all(&self.db.conn)
            .await?)
    }

    /// Registers a GS1 company prefix (6 to 12 digits) as licensed to `org`.
    pub async fn add_company_prefix(&self, org: &str, prefix: &str) -> Result<(), StoreError> {
        if !(6..=12).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StoreError::Invalid(format!(
                "GS1 company prefix {prefix:?} must be 6 to 12 digits"
            )));
        }
        self.require_org(org).await?;
        if let Some(owner) = company_prefix::Entity::find_by_id(prefix)
            .one(&self.db.conn)
            .await?
        {
            return Err(StoreError::Invalid(format!(
                "company prefix {prefix} is already registered to {}",
                owner.org_id
            )));
        }
        self.bump();
        company_prefix::Entity::insert(company_prefix::ActiveModel {
            prefix: Set(prefix.into()),
            org_id: Set(org.into()),
        })
        .exec_without_returning(&self.db.conn)
        .await?;
        Ok(())
    }

    pub async fn company_prefixes(&self) -> Result<Vec<company_prefix::Model>, StoreError> {
        Ok(company_prefix::Entity::find()
            .order_by_asc(company_prefix::Column::Prefix)
            .all(&self.db.conn)
            .await?)
    }

    /// Adds a site. `gln` must already be a validated 13-digit GLN.
    pub async fn add_site(
        &self,
        gln: &str,
        org: &str,
        name: &str,
    ) -> Result<site::Model, StoreError> {
        self.add_site_at(gln, org, name, None).await
    }

    /// Adds a site with its coordinates (used to spot impossible travel).
    pub async fn add_site_at(
        &self,
        gln: &str,
        org: &str,
        name: &str,
        coords: Option<(f64, f64)>,
    ) -> Result<site::Model, StoreError> {
        if let Some((lat, lon)) = coords
            .filter(|(lat, lon)| !(-90.0..=90.0).contains(lat) || !(-180.0..=180.0).contains(lon))
        {
            return Err(StoreError::Invalid(format!(
                "coordinates ({lat}, {lon}) are out of range"
            )));
        }
        self.require_org(org).await?;
        if site::Entity::find_by_id(gln)
            .one(&self.db.conn)
            .await?
            .is_some()
        {
            return Err(StoreError::Invalid(format!("site {gln} already exists")));
        }
        let row = site::Model {
            gln: gln.into(),
            org_id: org.into(),
            name: name.into(),
            latitude: coords.map(|c| c.0),
            longitude: coords.map(|c| c.1),
        };
        self.bump();
        site::Entity::insert(site::ActiveModel::from(row.clone()))
            .exec_without_returning(&self.db.conn)
            .await?;
        Ok(row)
    }

    pub async fn site(&self, gln: &str) -> Result<Option<site::Model>, StoreError> {
        Ok(site::Entity::find_by_id(gln).one(&self.db.conn).await?)
    }

    pub async fn sites(&self) -> Result<Vec<site::Model>, StoreError> {
        Ok(site::Entity::find()
            .order_by_asc(site::Column::Gln)
            .all(&self.db.conn)
            .await?)
    }

    /// Enrolls a device at a site of its organization.
    pub async fn enroll_device(
        &self,
        id: &str,
        key: &PublicKey,
        org: &str,
        site_gln: &str,
    ) -> Result<device::Model, StoreError> {
        check_id(id, "device id")?;
        self.require_org(org).await?;
        let site = self
            .site(site_gln)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {site_gln}")))?;
        if site.org_id != org {
            return Err(StoreError::Invalid(format!(
                "site {site_gln} belongs to {}, not {org}",
                site.org_id
            )));
        }
        if device::Entity::find_by_id(id)
            .one(&self.db.conn)
            .await?
            .is_some()
        {
            return Err(StoreError::Invalid(format!("device {id:?} already exists")));
        }
        let row = device::Model {
            id: id.into(),
            public_key: key.to_hex(),
            org_id: org.into(),
            site_gln: site_gln.into(),
            status: "active".into(),
            last_seq: -1,
            enrolled_ms: now_ms(),
            revoked_ms: None,
        };
        device::Entity::insert(device::ActiveModel::from(row.clone()))
            .exec_without_returning(&self.db.conn)
            .await?;
        Ok(row)
    }

    /// Revokes a device: its later messages are rejected; what it sent before stays.
    pub async fn revoke_device(&self, id: &str) -> Result<(), StoreError> {
        let res = device::Entity::update_many()
            .col_expr(device::Column::Status, Expr::value("revoked"))
            .col_expr(device::Column::RevokedMs, Expr::value(now_ms()))
            .filter(device::Column::Id.eq(id))
            .exec(&self.db.conn)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound(format!("device {id}")));
        }
        Ok(())
    }

    pub async fn device(&self, id: &str) -> Result<Option<device::Model>, StoreError> {
        Ok(device::Entity::find_by_id(id).one(&self.db.conn).await?)
    }

    /// The devices with these ids, in one query per 500 ids.
    pub async fn devices_by_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, device::Model>, StoreError> {
        let mut out = std::collections::HashMap::new();
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(500) {
            for d in device::Entity::find()
                .filter(device::Column::Id.is_in(chunk.to_vec()))
                .all(&self.db.conn)
                .await?
            {
                out.insert(d.id.clone(), d);
            }
        }
        Ok(out)
    }

    pub async fn devices(&self) -> Result<Vec<device::Model>, StoreError> {
        Ok(device::Entity::find()
            .order_by_asc(device::Column::Id)
            .all(&self.db.conn)
            .await?)
    }

    fn bump(&self) {
        self.db
            .registry_generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    async fn require_org(&self, org: &str) -> Result<(), StoreError> {
        match self.organization(org).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("organization {org}"))),
        }
    }
}

/// Ids travel in MQTT topics, so they are restricted to characters that are safe there.
fn check_id(id: &str, what: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} {id:?} must be 1 to 64 characters of A-Z a-z 0-9 - _ ."
        )))
    }
}
