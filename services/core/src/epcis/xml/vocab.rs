//! CBV vocabulary values between the XML bindings (URNs) and the JSON-LD binding (bare words).
//!
//! EPCIS 1.2 XML spells standard CBV values as URNs (`urn:epcglobal:cbv:bizstep:shipping`);
//! EPCIS 2.0 XML allows the same URNs, and the GS1 XSLT between the two versions copies them
//! unchanged. The 2.0 JSON-LD binding spells them as bare words (`shipping`) that the standard
//! context expands to `https://ref.gs1.org/cbv/BizStep-shipping`, and its JSON Schema refuses
//! `urn:epcglobal:cbv…` values in these fields. So a URN becomes a bare word when the word is a
//! CBV 2.0 term, and the web URI otherwise; other URIs (a company's own vocabulary) are kept.
//! All three spellings canonicalise to the same web URI in the event hash.

use crate::epcis::{BizStep, Disposition, SourceDestType};

/// The vocabulary-typed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vocab {
    BizStep,
    Disposition,
    BizTransactionType,
    SourceDestType,
    ErrorReason,
}

/// CBV 2.0 §7.3 business transaction types.
const BTT: &[&str] = &[
    "bol",
    "cert",
    "desadv",
    "inv",
    "pedigree",
    "po",
    "poc",
    "prodorder",
    "recadv",
    "rma",
    "testprd",
    "testres",
    "upevt",
];
/// CBV 2.0 §7.5 error reasons.
const ER: &[&str] = &["did_not_occur", "incorrect_data"];

impl Vocab {
    /// CBV 1.x URN prefix.
    fn urn(self) -> &'static str {
        match self {
            Vocab::BizStep => "urn:epcglobal:cbv:bizstep:",
            Vocab::Disposition => "urn:epcglobal:cbv:disp:",
            Vocab::BizTransactionType => "urn:epcglobal:cbv:btt:",
            Vocab::SourceDestType => "urn:epcglobal:cbv:sdt:",
            Vocab::ErrorReason => "urn:epcglobal:cbv:er:",
        }
    }

    /// The term's name in the CBV 2.0 web URI (`https://ref.gs1.org/cbv/<web><word>`).
    fn web(self) -> &'static str {
        match self {
            Vocab::BizStep => "BizStep-",
            Vocab::Disposition => "Disp-",
            Vocab::BizTransactionType => "BTT-",
            Vocab::SourceDestType => "SDT-",
            Vocab::ErrorReason => "ER-",
        }
    }

    fn is_term(self, word: &str) -> bool {
        match self {
            // `parse` also accepts the prefixed spellings: only the bare word is a term here.
            Vocab::BizStep => BizStep::parse(word).is_some_and(|t| t.as_str() == word),
            Vocab::Disposition => Disposition::parse(word).is_some_and(|t| t.as_str() == word),
            Vocab::SourceDestType => {
                SourceDestType::parse(word).is_some_and(|t| t.as_str() == word)
            }
            Vocab::BizTransactionType => BTT.contains(&word),
            Vocab::ErrorReason => ER.contains(&word),
        }
    }

    /// The CBV word of any standard spelling: URN, web URI (ref.gs1.org or gs1.org/voc),
    /// `cbv:` CURIE or bare word; `None` for other URIs.
    fn word(self, value: &str) -> Option<&str> {
        let web = self.web();
        if let Some(w) = value.strip_prefix(self.urn()) {
            return Some(w);
        }
        for base in ["https://ref.gs1.org/cbv/", "https://gs1.org/voc/", "cbv:"] {
            if let Some(w) = value.strip_prefix(base).and_then(|r| r.strip_prefix(web)) {
                return Some(w);
            }
        }
        (!value.contains(':')).then_some(value)
    }

    /// The JSON-LD spelling of an XML value.
    pub(crate) fn to_json(self, value: &str) -> String {
        match self.word(value) {
            Some(w) if self.is_term(w) => w.to_owned(),
            Some(w) if !w.is_empty() => format!("https://ref.gs1.org/cbv/{}{w}", self.web()),
            _ => value.to_owned(),
        }
    }

    /// The XML spelling (both versions) of a JSON-LD value: the CBV URN for every standard
    /// spelling, other URIs unchanged.
    pub(crate) fn to_xml(self, value: &str) -> String {
        match self.word(value) {
            Some(w) if !w.is_empty() => format!("{}{w}", self.urn()),
            _ => value.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_become_bare_words_and_back() {
        let v = Vocab::BizStep;
        assert_eq!(v.to_json("urn:epcglobal:cbv:bizstep:shipping"), "shipping");
        assert_eq!(
            v.to_json("https://ref.gs1.org/cbv/BizStep-shipping"),
            "shipping"
        );
        assert_eq!(v.to_xml("shipping"), "urn:epcglobal:cbv:bizstep:shipping");
        assert_eq!(
            v.to_xml("https://ref.gs1.org/cbv/BizStep-shipping"),
            "urn:epcglobal:cbv:bizstep:shipping"
        );
        // Not a CBV 2.0 term: the JSON Schema refuses the URN, so the web URI.
        assert_eq!(
            v.to_json("urn:epcglobal:cbv:bizstep:teleporting"),
            "https://ref.gs1.org/cbv/BizStep-teleporting"
        );
        // A company's own vocabulary stays as it is, both ways.
        let own = "http://epcis.example.com/user/vocab/bizstep/exampling";
        assert_eq!(v.to_json(own), own);
        assert_eq!(v.to_xml(own), own);
        assert_eq!(
            Vocab::SourceDestType.to_json("urn:epcglobal:cbv:sdt:owning_party"),
            "owning_party"
        );
        assert_eq!(
            Vocab::BizTransactionType.to_json("urn:epcglobal:cbv:btt:desadv"),
            "desadv"
        );
        assert_eq!(
            Vocab::ErrorReason.to_xml("incorrect_data"),
            "urn:epcglobal:cbv:er:incorrect_data"
        );
        assert_eq!(
            Vocab::Disposition.to_json("urn:epcglobal:cbv:disp:in_transit"),
            "in_transit"
        );
    }
}
