//! QR labels: a pack's GS1 Digital Link URI as a QR code, for the terminal and as SVG, so a
//! demo pack can be scanned with a phone. The URI comes from `rxledger-core`, the same code
//! the server's resolver parses.

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};
use rxledger_core::gs1::{Expiry, Gs1Error, Gtin, Lot, Serial, Sgtin};

/// The default Digital Link resolver base.
pub const DEFAULT_BASE: &str = "https://id.gs1.org";

/// Why a label could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    #[error(transparent)]
    Gs1(#[from] Gs1Error),
    #[error("cannot encode a QR code: {0}")]
    Qr(String),
}

/// A pack label.
pub struct Label {
    pub uri: String,
    code: QrCode,
}

impl Label {
    /// Checks every field (GTIN check digit, character sets, YYMMDD) and encodes the URI.
    pub fn new(
        gtin: &str,
        serial: &str,
        lot: &str,
        expiry: &str,
        base: &str,
    ) -> Result<Label, LabelError> {
        let sgtin = Sgtin {
            gtin: Gtin::parse(gtin)?,
            serial: Serial::parse(serial)?,
        };
        let uri =
            sgtin.to_digital_link(base, Some(&Lot::parse(lot)?), Some(&Expiry::parse(expiry)?));
        // Level M survives a creased or partly covered label and keeps the code small.
        let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
            .map_err(|e| LabelError::Qr(e.to_string()))?;
        Ok(Label { uri, code })
    }

    /// The code drawn with unicode half blocks (two modules per character row). Colours are
    /// inverted (dark modules are blanks) because most terminals draw light text on a dark
    /// background; phones then see dark modules on a light field.
    pub fn terminal(&self) -> String {
        self.code
            .render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build()
    }

    /// A standalone SVG document.
    pub fn svg(&self) -> String {
        self.code
            .render::<svg::Color<'_>>()
            .min_dimensions(256, 256)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .quiet_zone(true)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_of_a_pack() {
        let l = Label::new("09506000134352", "ABC/1", "L1", "301231", DEFAULT_BASE).unwrap();
        assert_eq!(
            l.uri,
            "https://id.gs1.org/01/09506000134352/10/L1/21/ABC%2F1?17=301231"
        );
        assert!(l.svg().starts_with("<?xml"));
        assert!(l.terminal().contains('█') || l.terminal().contains('▀'));
        assert!(Label::new("09506000134353", "A", "L", "301231", DEFAULT_BASE).is_err());
    }
}
