//! Product master data: what a GTIN is, as its brand owner registered it. Column names
//! follow the GS1 Web Vocabulary and GDSN attributes they carry (see `rxledger_store::products`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    /// The 14-digit GTIN.
    #[sea_orm(primary_key, auto_increment = false)]
    pub gtin: String,
    /// `gs1:productName` (GDSN `regulatedProductName`): the trade name.
    pub product_name: String,
    /// GDSN `ingredientStrength`, as printed: "500 mg".
    pub strength: Option<String>,
    /// GDSN `dosageFormTypeCodeReference` (the pharmaceutical form): "film-coated tablet".
    pub dosage_form: Option<String>,
    /// `gs1:netContent`: the pack size, "28 tablets".
    pub net_content: Option<String>,
    /// The marketing authorisation holder (GDSN regulatory information).
    pub marketing_authorisation_holder: Option<String>,
    /// `gs1:image`: an https URL of the pack's picture.
    pub image_url: Option<String>,
    /// The organization that registered the row (the brand owner, or an admin or regulator).
    pub registered_by: String,
    pub updated_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
