//! Who is calling, and what each role may do.
//!
//! The HTTP layer turns a Bearer token, or a browser session signed in with one (the web
//! crate's `session`), into a [`Caller`] before the query runs: a session is exactly the
//! caller of its key. Resolvers then ask [`require`] for the roles that may use them. Without a key a caller is anonymous:
//! it may read the public verdict of `verify` and the ledger's checkpoints, proofs and entry
//! hashes, nothing else.

use async_graphql::{Context, Enum};
use rxledger_store::Principal;

use crate::{ApiError, Code};

/// The roles an API key can carry.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Manufacturer,
    Wholesaler,
    Pharmacy,
    Regulator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manufacturer => "MANUFACTURER",
            Role::Wholesaler => "WHOLESALER",
            Role::Pharmacy => "PHARMACY",
            Role::Regulator => "REGULATOR",
            Role::Admin => "ADMIN",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Manufacturer,
            Role::Wholesaler,
            Role::Pharmacy,
            Role::Regulator,
            Role::Admin,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Every role: the fields any API key may use (but not anonymous callers).
pub const KEYED: &[Role] = &[
    Role::Admin,
    Role::Regulator,
    Role::Manufacturer,
    Role::Wholesaler,
    Role::Pharmacy,
];

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Key {
        key_id: String,
        org_id: String,
        role: Role,
    },
}

impl Caller {
    /// The caller a valid key stands for; `None` when the key carries a role this server does
    /// not know (refused, never downgraded to anonymous).
    pub fn from_principal(p: Principal) -> Option<Caller> {
        Role::parse(&p.role).map(|role| Caller::Key {
            key_id: p.key_id,
            org_id: p.org_id,
            role,
        })
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Anonymous => None,
            Caller::Key { role, .. } => Some(*role),
        }
    }

    /// Regulators and admins see every organization's data; others only their own (the
    /// rule is `visibility::Sight::party`).
    pub fn may_see(&self, org: &str) -> bool {
        crate::visibility::Sight::of(self).party(org)
    }

    pub fn org(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Key { org_id, .. } => Some(org_id),
        }
    }
}

pub fn caller<'a>(ctx: &'a Context<'_>) -> &'a Caller {
    static ANON: Caller = Caller::Anonymous;
    ctx.data_opt::<Caller>().unwrap_or(&ANON)
}

/// Fails with UNAUTHENTICATED for anonymous callers and FORBIDDEN for other roles.
pub fn require<'a>(ctx: &'a Context<'_>, roles: &[Role]) -> Result<&'a Caller, ApiError> {
    let c = caller(ctx);
    require_caller(c, roles)?;
    Ok(c)
}

/// [`require`] for a caller already in hand: the check the web pages make before calling the
/// same functions as the resolvers.
pub fn require_caller(c: &Caller, roles: &[Role]) -> Result<(), ApiError> {
    match c.role() {
        None => Err(ApiError::new(
            Code::Unauthenticated,
            "this field needs an API key (Authorization: Bearer …, or a session from /signin)",
        )),
        Some(r) if roles.contains(&r) => Ok(()),
        Some(r) => Err(ApiError::new(
            Code::Forbidden,
            format!("the {} role may not use this field", r.as_str()),
        )),
    }
}
