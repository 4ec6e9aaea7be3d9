//! GS1 Lightweight Verification Messaging (the DSCSA Verification Router Service flow):
//! `GET <digital link>?linkType=verificationService` answers with the standard's JSON.
//!
//! Fields and values follow the GS1 US Implementation Guideline for the Lightweight Messaging
//! Standard for Verification of Product Identifiers, release 1.3, as quoted by VRS providers
//! (Movilitas, LSPedia) and implemented by `rmagee/quartet-vrs`:
//!
//! ```json
//! {"verificationTimestamp": "2026-11-25T12:00:00.000Z", "responderGLN": "0614141000005",
//!  "data": {"verified": false, "verificationFailureReason": "No_match_GTIN_Serial"},
//!  "corrUUID": "<echoed from the request>"}
//! ```
//!
//! Request parameters: `linkType`, `context` (e.g. `dscsaSaleableReturn`), `reqGLN` and
//! `corrUUID`; expiry as `17` (Digital Link) or `exp` (the older VRS form). Only a 200 carries
//! a JSON body; a badly formed request is a 400 and a GTIN nobody registered a 404.

use rxledger_core::verdict::{Verdict, VerdictCode};
use rxledger_graphql::product::TradeItem;
use serde_json::{Value, json};

/// `verificationFailureReason` values (release 1.3).
pub use rxledger_core::eucodes::{
    NO_MATCH_EXPIRY, NO_MATCH_GTIN_SERIAL, NO_MATCH_LOT, NO_MATCH_LOT_EXPIRY,
    NOT_FOR_REDISTRIBUTION,
};

/// The `data` member for a verdict, as the core's code table (`eucodes`) maps its reasons.
/// `None` when the GTIN is unknown, which the standard answers with a 404 rather than a
/// message.
pub fn data(v: &Verdict) -> Option<Value> {
    let codes: Vec<VerdictCode> = std::iter::once(v.primary)
        .chain(v.reasons.iter().map(|r| r.code))
        .collect();
    let (verified, failure, info) = rxledger_core::eucodes::lvm_answer(&codes)?;
    let mut data = json!({ "verified": verified });
    if let Some(f) = failure {
        data["verificationFailureReason"] = json!(f);
    }
    if let Some(i) = info {
        data["additionalInfo"] = json!(i);
    }
    Some(data)
}

/// The whole response message.
pub fn response(data: Value, responder_gln: &str, corr_uuid: Option<&str>, now: &str) -> Value {
    let mut out = json!({
        "verificationTimestamp": now,
        "responderGLN": responder_gln,
        "data": data,
    });
    if let Some(c) = corr_uuid {
        out["corrUUID"] = json!(c);
    }
    out
}

/// Adds what the GTIN is to a response: `productInformation` with the brand owner's master
/// data in GS1 Web Vocabulary terms, or a `productInformationStatus` saying none is
/// registered. The standard's members are left as they are; a strict client ignores these.
pub fn with_trade_item(answer: &mut Value, item: Option<&TradeItem>) {
    match item {
        Some(t) => {
            let mut info = json!({ "gs1:gtin": t.gtin, "gs1:productName": t.product_name });
            for (key, value) in [
                ("gs1:netContent", &t.net_content),
                ("gs1:dosageForm", &t.dosage_form),
                ("gs1:strength", &t.strength),
                (
                    "marketingAuthorisationHolder",
                    &t.marketing_authorisation_holder,
                ),
                ("gs1:image", &t.image_url),
            ] {
                if let Some(v) = value {
                    info[key] = json!(v);
                }
            }
            answer["productInformation"] = info;
        }
        None => {
            answer["productInformationStatus"] =
                json!("No product information registered for this GTIN");
        }
    }
}

#[cfg(test)]
mod tests {
    use rxledger_core::verdict::Reason;

    use super::*;

    fn v(verdict: &str, reasons: &[&str]) -> Verdict {
        let code = |c: &str| c.parse::<VerdictCode>().unwrap();
        Verdict {
            primary: code(verdict),
            reasons: reasons
                .iter()
                .map(|c| Reason {
                    code: code(c),
                    severity: code(c).severity(),
                    message: String::new(),
                    evidence: vec![],
                })
                .collect(),
            dispensable: false,
            product: None,
            status: None,
        }
    }

    #[test]
    fn verdicts_map_to_the_standard_values() {
        assert_eq!(
            data(&v("AUTHENTIC", &["AUTHENTIC"])),
            Some(json!({"verified": true}))
        );
        assert_eq!(
            data(&v("UNKNOWN_SERIAL", &["UNKNOWN_SERIAL"])),
            Some(json!({"verified": false, "verificationFailureReason": "No_match_GTIN_Serial"}))
        );
        assert_eq!(
            data(&v("BATCH_MISMATCH", &["BATCH_MISMATCH", "EXPIRY_MISMATCH"])).unwrap()["verificationFailureReason"],
            "No_match_GTIN_Serial_Lot_Expiry"
        );
        assert_eq!(
            data(&v("RECALLED", &["RECALLED", "EXPIRED"])),
            Some(json!({"verified": true, "additionalInfo": "Recalled"}))
        );
        assert_eq!(
            data(&v("ALREADY_DISPENSED", &["ALREADY_DISPENSED"])).unwrap()["verificationFailureReason"],
            "Not_for_re-distribution"
        );
        assert_eq!(data(&v("UNKNOWN_PRODUCT", &["UNKNOWN_PRODUCT"])), None);
    }
}
