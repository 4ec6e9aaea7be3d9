//! Product master data: what a GTIN is (trade name, strength, pharmaceutical form, pack size,
//! marketing authorisation holder, a picture), so a pharmacist can compare the box in hand
//! with what the brand owner registered.
//!
//! Attribute names follow GS1: `gs1:productName`, `gs1:netContent` and `gs1:image` from the
//! GS1 Web Vocabulary, GDSN's `ingredientStrength` and `dosageFormTypeCodeReference` from the
//! Pharmaceutical Item Information module. Values are free text as printed on the pack, each
//! bounded ([`MAX_TEXT`], [`MAX_NAME`], [`MAX_IMAGE_URL`]); who may write them is the API's
//! decision (the GTIN's brand owner, regulators, admins), not the store's.

use rxledger_core::gs1::Gtin;
use rxledger_entities::product;
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, QueryOrder, QuerySelect};

use crate::{Database, StoreError, now_ms};

/// Longest trade name or marketing authorisation holder, in characters.
pub const MAX_NAME: usize = 200;
/// Longest strength, pharmaceutical form or pack size, in characters (GDSN codes are 80).
pub const MAX_TEXT: usize = 80;
/// Longest image URL, in bytes.
pub const MAX_IMAGE_URL: usize = 500;
/// Most rows `Products::list` returns.
pub const MAX_LIST: u64 = 10_000;

/// A trade item's master data, as the brand owner registers it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TradeItem {
    pub product_name: String,
    pub strength: Option<String>,
    pub dosage_form: Option<String>,
    pub net_content: Option<String>,
    pub marketing_authorisation_holder: Option<String>,
    pub image_url: Option<String>,
}

impl TradeItem {
    /// The item with its text trimmed (empty optional fields dropped), or why it is refused.
    pub fn checked(self) -> Result<TradeItem, StoreError> {
        let product_name = text("productName", Some(self.product_name), MAX_NAME)?
            .ok_or_else(|| StoreError::Invalid("productName must not be empty".into()))?;
        let image_url = match self.image_url.map(|u| u.trim().to_string()) {
            Some(u) if u.is_empty() => None,
            Some(u) => Some(image_url(u)?),
            None => None,
        };
        Ok(TradeItem {
            product_name,
            strength: text("strength", self.strength, MAX_TEXT)?,
            dosage_form: text("dosageForm", self.dosage_form, MAX_TEXT)?,
            net_content: text("netContent", self.net_content, MAX_TEXT)?,
            marketing_authorisation_holder: text(
                "marketingAuthorisationHolder",
                self.marketing_authorisation_holder,
                MAX_NAME,
            )?,
            image_url,
        })
    }
}

/// Trimmed printable text of at most `max` characters; `None` when absent or blank.
fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, StoreError> {
    let Some(v) = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(StoreError::Invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{field} must not hold control characters"
        )));
    }
    Ok(Some(v))
}

/// An `https://` URL without spaces, quotes or angle brackets, at most [`MAX_IMAGE_URL`]
/// bytes: the pages put it in an `src` attribute.
fn image_url(u: String) -> Result<String, StoreError> {
    let host = u.strip_prefix("https://").unwrap_or("");
    let ok = u.len() <= MAX_IMAGE_URL
        && !host.is_empty()
        && !host.starts_with('/')
        && u.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\'));
    if ok {
        Ok(u)
    } else {
        Err(StoreError::Invalid(format!(
            "imageUrl must be an https:// URL of at most {MAX_IMAGE_URL} characters, without spaces or quotes"
        )))
    }
}

#[derive(Clone)]
pub struct Products {
    db: Database,
}

impl Products {
    pub fn new(db: Database) -> Self {
        Products { db }
    }

    /// Registers or replaces the master data of `gtin`, on behalf of organization `by`.
    pub async fn set(
        &self,
        gtin: &Gtin,
        item: TradeItem,
        by: &str,
    ) -> Result<product::Model, StoreError> {
        let item = item.checked()?;
        let row = product::Model {
            gtin: gtin.as_str().to_string(),
            product_name: item.product_name,
            strength: item.strength,
            dosage_form: item.dosage_form,
            net_content: item.net_content,
            marketing_authorisation_holder: item.marketing_authorisation_holder,
            image_url: item.image_url,
            registered_by: by.to_string(),
            updated_ms: now_ms(),
        };
        use product::Column as C;
        product::Entity::insert(product::ActiveModel::from(row.clone()))
            .on_conflict(
                OnConflict::column(C::Gtin)
                    .update_columns([
                        C::ProductName,
                        C::Strength,
                        C::DosageForm,
                        C::NetContent,
                        C::MarketingAuthorisationHolder,
                        C::ImageUrl,
                        C::RegisteredBy,
                        C::UpdatedMs,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db.conn)
            .await?;
        Ok(row)
    }

    /// The master data of `gtin`, if any was registered.
    pub async fn get(&self, gtin: &Gtin) -> Result<Option<product::Model>, StoreError> {
        Ok(product::Entity::find_by_id(gtin.as_str())
            .one(&self.db.conn)
            .await?)
    }

    /// Registered products in GTIN order, at most [`MAX_LIST`].
    pub async fn list(&self) -> Result<Vec<product::Model>, StoreError> {
        Ok(product::Entity::find()
            .order_by_asc(product::Column::Gtin)
            .limit(MAX_LIST)
            .all(&self.db.conn)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str) -> TradeItem {
        TradeItem {
            product_name: name.into(),
            ..TradeItem::default()
        }
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        let t = TradeItem {
            strength: Some("  ".into()),
            dosage_form: Some(" tablet ".into()),
            ..item(" Amoxil ")
        }
        .checked()
        .unwrap();
        assert_eq!(t.product_name, "Amoxil");
        assert_eq!(t.strength, None);
        assert_eq!(t.dosage_form.as_deref(), Some("tablet"));
        assert!(item("").checked().is_err());
        assert!(item(&"x".repeat(MAX_NAME + 1)).checked().is_err());
        assert!(item(&"é".repeat(MAX_NAME)).checked().is_ok());
        assert!(item("a\u{1b}[31m").checked().is_err());
    }

    #[test]
    fn image_urls_are_https_and_quote_free() {
        let with = |u: &str| {
            TradeItem {
                image_url: Some(u.into()),
                ..item("A")
            }
            .checked()
        };
        assert!(with("https://cdn.example.org/a.png").is_ok());
        for bad in [
            "http://example.org/a.png",
            "javascript:alert(1)",
            "https://",
            "https:///x",
            "https://a.org/\"onerror=x",
            "https://a.org/a b",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
        assert!(with(&format!("https://a.org/{}", "x".repeat(MAX_IMAGE_URL))).is_err());
    }
}
