//! Who sees what: the one rule every route that reveals ledger data asks.
//!
//! The ledger is public as a tree (anyone can fetch checkpoints, proofs and leaf hashes and
//! check them) but not as a record of trade: an entry's bytes name the shipping and receiving
//! parties, their sites and the dispensing pharmacy. So:
//!
//! | What | Anonymous | A trading partner | Brand owner, extra | Regulator, admin |
//! |---|---|---|---|---|
//! | checkpoints, proofs, leaf hashes, entry kinds | yes | yes | | yes |
//! | an entry's raw bytes, its signer (device or `org:<id>`) and how it was signed | no | its own entries | | all |
//! | a pack's verdict and public timeline (no parties, no places) | yes | yes | | yes |
//! | history events: submitting organization and location | no | its own events | | all |
//! | a pack's current custodian, location and container | no | when it is the custodian | | all |
//! | EPCIS `events` | no | its own events | | all |
//! | a partner-signed capture document's bytes (`/epcis/capture/documents/…`) | no | those it sent | | all |
//! | a lot's packs by status and by custodian | no | no | its own lots | all |
//! | alerts | no | no | alerts about its products, without rejected bytes | all |
//! | alert cases: their state, records and changes | no | no | cases assigned to it (its products), to read and act on | all (regulators act, admins read) |
//! | registry (organizations, sites, devices) | no | its own | | all |
//! | product master data (what is printed on the pack) | yes | yes | writes its GTINs' | yes, writes |
//!
//! "Its own entries" are those signed by one of the organization's devices or by the API on
//! its behalf (`org:<id>`). Route code never compares roles or organizations itself: it asks
//! [`Sight`], so a new route cannot forget the rule without also skipping this module (and
//! `graphql/tests/visibility.rs` fails for any query field it does not know).

use std::collections::HashSet;

use rxledger_core::gs1::Gtin;
use rxledger_core::verdict::{self, Viewer};
use rxledger_store::Subject;

use crate::auth::{Caller, Role};
use crate::{ApiError, Services};

/// How much of the ledger's content one caller may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sight<'a> {
    /// Regulators and admins: everything.
    Everything,
    /// A trading partner: what its own organization submitted or holds.
    Org { org: &'a str, role: Role },
    /// No API key: hashes, proofs and public verdicts only.
    Public,
}

impl<'a> Sight<'a> {
    pub fn of(c: &'a Caller) -> Sight<'a> {
        match c {
            Caller::Anonymous => Sight::Public,
            Caller::Key {
                role: Role::Admin | Role::Regulator,
                ..
            } => Sight::Everything,
            Caller::Key { org_id, role, .. } => Sight::Org {
                org: org_id,
                role: *role,
            },
        }
    }

    /// May this caller see what `org` submitted: an entry's bytes and signer, a history event's
    /// organization and location, a registry record?
    pub fn party(&self, org: &str) -> bool {
        match self {
            Sight::Everything => true,
            Sight::Org { org: mine, .. } => *mine == org,
            Sight::Public => false,
        }
    }

    /// May this caller see who holds a pack now, where, and in which container?
    pub fn custody(&self, custodian: Option<&str>) -> bool {
        match self {
            Sight::Everything => true,
            Sight::Org { org, .. } => custodian == Some(*org),
            Sight::Public => false,
        }
    }

    /// May this caller see the lot whose GTIN `brand_owner` owns, custodians included (a
    /// recall needs to know where every pack is)?
    pub fn lot(&self, brand_owner: Option<&str>) -> bool {
        match self {
            Sight::Everything => true,
            Sight::Org {
                org,
                role: Role::Manufacturer,
            } => brand_owner == Some(*org),
            _ => false,
        }
    }

    /// May this caller register the product master data of a GTIN whose brand owner is
    /// `brand_owner`? The brand owner itself, regulators and admins: the same people who may
    /// see its lots.
    pub fn master_data(&self, brand_owner: Option<&str>) -> bool {
        self.lot(brand_owner)
    }

    /// The signers whose entries and events this caller may see: `None` for all of them.
    pub async fn signers(&self, s: &Services) -> Result<Option<HashSet<String>>, ApiError> {
        match self {
            Sight::Everything => Ok(None),
            Sight::Public => Ok(Some(HashSet::new())),
            Sight::Org { org, .. } => {
                let mut own: HashSet<String> = s
                    .registry
                    .devices()
                    .await?
                    .into_iter()
                    .filter(|d| d.org_id == *org)
                    .map(|d| d.id)
                    .collect();
                own.insert(format!("org:{org}"));
                Ok(Some(own))
            }
        }
    }

    /// Which alerts this caller may read, or `None` when it may read none.
    pub async fn alerts(&self, s: &Services) -> Result<Option<AlertScope>, ApiError> {
        match self {
            Sight::Everything => Ok(Some(AlertScope::All)),
            Sight::Org {
                org,
                role: Role::Manufacturer,
            } => {
                let prefixes = s
                    .packs
                    .prefixes()
                    .await?
                    .iter()
                    .filter(|(_, owner)| owner == org)
                    .map(|(p, _)| p.clone())
                    .collect();
                Ok(Some(AlertScope::Brand {
                    org: org.to_string(),
                    prefixes,
                }))
            }
            _ => Ok(None),
        }
    }
}

impl Sight<'_> {
    /// Which alert cases this caller may read, and as whom it acts on them; `None` when it
    /// may see none. A case is assigned to the brand owner of its pack's GTIN and seen by
    /// regulators and admins; nobody else learns of it.
    pub fn cases(&self) -> Option<CaseScope> {
        match self {
            Sight::Everything => Some(CaseScope::All),
            Sight::Org {
                org,
                role: Role::Manufacturer,
            } => Some(CaseScope::Brand(org.to_string())),
            _ => None,
        }
    }
}

/// The alert cases a caller may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseScope {
    All,
    /// A brand owner: the cases assigned to it.
    Brand(String),
}

impl CaseScope {
    /// Whether a case assigned to `brand_owner` is in scope.
    pub fn admits(&self, brand_owner: Option<&str>) -> bool {
        match self {
            CaseScope::All => true,
            CaseScope::Brand(org) => brand_owner == Some(org.as_str()),
        }
    }

    /// The brand owner a list is cut to (`None`: every case).
    pub fn brand_owner(&self) -> Option<String> {
        match self {
            CaseScope::All => None,
            CaseScope::Brand(org) => Some(org.clone()),
        }
    }

    /// As whom the core's case rules see this caller act.
    pub fn party(&self) -> rxledger_core::case::Party {
        match self {
            CaseScope::All => rxledger_core::case::Party::Regulator,
            CaseScope::Brand(_) => rxledger_core::case::Party::BrandOwner,
        }
    }
}

/// Who the core's verdict sees asking ([`verdict::verdict`] decides from it whether to name
/// the organisation that dispensed a pack): regulators and admins as regulators, a trading
/// partner as its organization and role, anyone else as the public.
pub fn viewer(c: &Caller) -> Viewer<'_> {
    match c {
        Caller::Anonymous => Viewer::anonymous(),
        Caller::Key { org_id, role, .. } => Viewer::org(
            org_id,
            match role {
                Role::Pharmacy => verdict::Role::Pharmacy,
                Role::Wholesaler => verdict::Role::Wholesaler,
                Role::Manufacturer => verdict::Role::Manufacturer,
                Role::Regulator | Role::Admin => verdict::Role::Regulator,
            },
        ),
    }
}

/// The alerts a caller may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertScope {
    All,
    /// A brand owner: alerts about packs of its company prefixes (by their `sgtin:` subject),
    /// and alerts addressed to it (`brand:<org>`). Rejected message bytes stay hidden.
    Brand {
        org: String,
        prefixes: Vec<String>,
    },
}

impl AlertScope {
    /// Subject fragments that admit an alert, for the store's query (`None`: every alert).
    /// The store's match is a superset; [`AlertScope::admits`] is exact.
    pub fn subjects(&self) -> Option<Vec<Subject>> {
        match self {
            AlertScope::All => None,
            AlertScope::Brand { org, prefixes } => Some(
                std::iter::once(Subject::Contains(format!("brand:{org}")))
                    .chain(prefixes.iter().cloned().map(Subject::PackOfPrefix))
                    .collect(),
            ),
        }
    }

    /// Whether an alert with these subjects is in scope (for live alerts).
    pub fn admits<'s>(&self, mut subjects: impl Iterator<Item = &'s str>) -> bool {
        match self {
            AlertScope::All => true,
            AlertScope::Brand { org, prefixes } => subjects.any(|s| {
                s.strip_prefix("brand:") == Some(org.as_str())
                    || s.strip_prefix("sgtin:")
                        .and_then(|k| k.split('.').next())
                        .and_then(|g| Gtin::parse(g).ok())
                        .is_some_and(|g| {
                            let body = g.as_str().get(1..).unwrap_or("");
                            prefixes.iter().any(|p| body.starts_with(p.as_str()))
                        })
            }),
        }
    }

    /// Whether rejected message bytes may be shown.
    pub fn raw(&self) -> bool {
        matches!(self, AlertScope::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(org: &str, role: Role) -> Caller {
        Caller::Key {
            key_id: "k".into(),
            org_id: org.into(),
            role,
        }
    }

    #[test]
    fn parties_and_custody() {
        let pharmacy = key("a", Role::Pharmacy);
        let regulator = key("nca", Role::Regulator);
        assert!(Sight::of(&pharmacy).party("a"));
        assert!(!Sight::of(&pharmacy).party("b"));
        assert!(Sight::of(&regulator).party("b"));
        assert!(!Sight::of(&Caller::Anonymous).party(""));
        assert!(Sight::of(&pharmacy).custody(Some("a")));
        assert!(!Sight::of(&pharmacy).custody(None));
        let maker = key("m", Role::Manufacturer);
        assert!(Sight::of(&maker).lot(Some("m")));
        assert!(!Sight::of(&maker).lot(Some("n")));
        assert!(!Sight::of(&key("m", Role::Wholesaler)).lot(Some("m")));
    }

    #[test]
    fn cases_are_the_brand_owners_and_the_regulators() {
        let maker = key("m", Role::Manufacturer);
        let scope = Sight::of(&maker).cases().unwrap();
        assert!(scope.admits(Some("m")));
        assert!(!scope.admits(Some("rival")) && !scope.admits(None));
        let all = Sight::of(&key("nca", Role::Regulator)).cases().unwrap();
        assert!(all.admits(None) && all.admits(Some("m")));
        for role in [Role::Pharmacy, Role::Wholesaler] {
            assert_eq!(Sight::of(&key("m", role)).cases(), None);
        }
        assert_eq!(Sight::of(&Caller::Anonymous).cases(), None);
    }

    #[test]
    fn brand_alerts() {
        let scope = AlertScope::Brand {
            org: "m".into(),
            prefixes: vec!["0614141".into()],
        };
        assert!(scope.admits(["sgtin:10614141073464.1"].into_iter()));
        assert!(!scope.admits(["sgtin:10614142073463.1"].into_iter()));
        assert!(scope.admits(["org:x", "brand:m"].into_iter()));
        assert!(!scope.admits(["line-1"].into_iter()));
        assert!(!scope.raw());
    }
}
