//! Product master data over GraphQL: `product(gtin)` for anyone, `registerProduct` for the
//! GTIN's brand owner (the organization holding its company prefix), regulators and admins
//! (`visibility::Sight::master_data`).
//!
//! The answer holds only the public attributes printed on the pack; who registered a row and
//! when stay in the database.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use rxledger_core::gs1::Gtin;
use rxledger_entities::product;
use serde::Serialize;

use crate::admin::services;
use crate::auth::{KEYED, require};
use crate::visibility::Sight;
use crate::{ApiError, Code};

/// What a GTIN is, as its brand owner registered it (GS1 Web Vocabulary and GDSN names). As
/// `TradeItemInput`, what `registerProduct` takes: the same fields, each bounded
/// (docs/SECURITY.md).
#[derive(SimpleObject, InputObject, Serialize, Clone, Debug)]
#[graphql(input_name = "TradeItemInput")]
#[serde(rename_all = "camelCase")]
pub struct TradeItem {
    pub gtin: String,
    /// `gs1:productName`: the trade name.
    pub product_name: String,
    /// GDSN `ingredientStrength`, as printed: "500 mg".
    pub strength: Option<String>,
    /// GDSN `dosageFormTypeCodeReference`, the pharmaceutical form: "film-coated tablet".
    pub dosage_form: Option<String>,
    /// `gs1:netContent`, the pack size: "28 tablets".
    pub net_content: Option<String>,
    /// The marketing authorisation holder, as on the pack.
    pub marketing_authorisation_holder: Option<String>,
    /// `gs1:image`: an https URL of a picture of the pack.
    pub image_url: Option<String>,
}

impl From<product::Model> for TradeItem {
    fn from(m: product::Model) -> Self {
        TradeItem {
            gtin: m.gtin,
            product_name: m.product_name,
            strength: m.strength,
            dosage_form: m.dosage_form,
            net_content: m.net_content,
            marketing_authorisation_holder: m.marketing_authorisation_holder,
            image_url: m.image_url,
        }
    }
}

fn parse_gtin(text: &str) -> Result<Gtin, ApiError> {
    Gtin::parse(text).map_err(|e| ApiError::new(Code::InvalidCode, format!("gtin: {e}")))
}

#[derive(Default)]
pub struct ProductQuery;

#[Object]
impl ProductQuery {
    /// The registered master data of a GTIN, or null when none is registered. Open to
    /// anonymous callers: it holds only what is printed on the pack.
    async fn product(&self, ctx: &Context<'_>, gtin: String) -> Result<Option<TradeItem>> {
        let g = parse_gtin(&gtin)?;
        let row = services(ctx)
            .products
            .get(&g)
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(TradeItem::from))
    }
}

#[derive(Default)]
pub struct ProductMutation;

#[Object]
impl ProductMutation {
    /// Registers or replaces a GTIN's master data. The GTIN's brand owner, regulators and
    /// admins.
    async fn register_product(&self, ctx: &Context<'_>, input: TradeItem) -> Result<TradeItem> {
        let c = require(ctx, KEYED)?;
        let s = services(ctx);
        let g = parse_gtin(&input.gtin)?;
        let prefixes = s.packs.prefixes().await.map_err(ApiError::from)?;
        let owner = rxledger_store::packs::owner_of(&prefixes, &g);
        if !Sight::of(c).master_data(owner.as_deref()) {
            return Err(ApiError::new(
                Code::Forbidden,
                "only the GTIN's brand owner (the organization holding its company prefix), a regulator or an admin may register its product data",
            )
            .into());
        }
        let item = rxledger_store::TradeItem {
            product_name: input.product_name,
            strength: input.strength,
            dosage_form: input.dosage_form,
            net_content: input.net_content,
            marketing_authorisation_holder: input.marketing_authorisation_holder,
            image_url: input.image_url,
        };
        let by = c.org().unwrap_or_default();
        let row = s.products.set(&g, item, by).await.map_err(ApiError::from)?;
        tracing::info!(gtin = %g, by, "product master data registered");
        Ok(row.into())
    }
}
