//! Alert cases (issue 23 item 2): every alert about a pack is a case the brand owner must
//! answer, which the regulator follows, with reminders and escalation on timers.
//!
//! The rules are the core's (`core::case`), the records and timers the store's
//! (`store::cases`); this module maps roles onto the core's parties through `visibility`
//! (`Sight::cases`) and renders cases. A case the caller may not see answers NOT_FOUND, as a
//! case that does not exist, for reading and acting alike.

use async_graphql::futures_util::StreamExt as _;
use async_graphql::futures_util::stream::{self, BoxStream};
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject};
use rxledger_core::case::{CaseError, CaseRecord, RootCause, Transition};
use rxledger_entities::alert_case;
use rxledger_store::cases::{CaseChange, CaseFilter, Cases};

use crate::auth::{Role, require};
use crate::visibility::{CaseScope, Sight};
use crate::{ApiError, Code, MAX_PAGE};

/// Who may read cases (then `Sight::cases` cuts what they see).
const READERS: &[Role] = &[Role::Regulator, Role::Admin, Role::Manufacturer];
/// Who may act on a case: its brand owner, and regulators.
const ACTORS: &[Role] = &[Role::Regulator, Role::Manufacturer];

/// Why a case was closed.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum RootCauseIn {
    TechnicalError,
    ProcessError,
    FalsificationConfirmed,
    /// Regulators only, once the case is escalated.
    NoResponse,
}

impl From<RootCauseIn> for RootCause {
    fn from(r: RootCauseIn) -> Self {
        match r {
            RootCauseIn::TechnicalError => RootCause::TechnicalError,
            RootCauseIn::ProcessError => RootCause::ProcessError,
            RootCauseIn::FalsificationConfirmed => RootCause::FalsificationConfirmed,
            RootCauseIn::NoResponse => RootCause::NoResponse,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum CaseStatusIn {
    Open,
    InformationRequested,
    Closed,
}

impl CaseStatusIn {
    fn spelled(self) -> &'static str {
        use rxledger_core::case::CaseStatus;
        match self {
            CaseStatusIn::Open => CaseStatus::Open.as_str(),
            CaseStatusIn::InformationRequested => CaseStatus::InformationRequested.as_str(),
            CaseStatusIn::Closed => CaseStatus::Closed.as_str(),
        }
    }
}

/// Which cases `alertCases` lists.
#[derive(InputObject, Default)]
pub struct AlertCaseFilter {
    pub status: Option<CaseStatusIn>,
    /// Only escalated cases (true), or only cases not escalated (false).
    pub escalated: Option<bool>,
}

/// An alert's case, as its newest record left it.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct AlertCase {
    /// The ledger entry of its opening record.
    pub id: i64,
    pub alert_id: i64,
    /// The alert's code (DISPENSED_OUTSIDE_CUSTODY, DISPENSED_TWICE, ...).
    pub alert_code: String,
    /// The pack, as its index key (`sgtin:<gtin>.<serial>`).
    pub pack: String,
    /// The organisation it is assigned to: the brand owner of the GTIN (null: unregistered,
    /// the regulator's from the start).
    pub brand_owner: Option<String>,
    /// OPEN, INFORMATION_REQUESTED or CLOSED.
    pub status: String,
    /// TECHNICAL_ERROR, PROCESS_ERROR, FALSIFICATION_CONFIRMED or NO_RESPONSE, once closed.
    pub root_cause: Option<String>,
    /// The brand owner did not answer in time, or there is none: the regulator's to act on.
    pub escalated: bool,
    /// When the next reminder or the escalation is due, if the case waits for an answer.
    pub next_due_at: Option<String>,
    pub opened_at: String,
    pub updated_at: String,
}

impl AlertCase {
    fn of(r: &alert_case::Model) -> Self {
        let time = rxledger_core::epcis::format_time;
        AlertCase {
            id: r.id,
            alert_id: r.alert_id,
            alert_code: r.code.clone(),
            pack: r.pack.clone(),
            brand_owner: r.brand_owner.clone(),
            status: r.status.clone(),
            root_cause: r.root_cause.clone(),
            escalated: r.escalated,
            next_due_at: r.next_due_ms.map(time),
            opened_at: time(r.opened_ms),
            updated_at: time(r.updated_ms),
        }
    }
}

#[ComplexObject]
impl AlertCase {
    /// Every transition, oldest first, as the ledger records it (read back from the log and
    /// checked against its key).
    async fn records(&self, ctx: &Context<'_>) -> Result<Vec<CaseRecordOut>> {
        let c = cases(ctx)?
            .fold(self.id as u64)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(not_found)?;
        Ok(c.records
            .into_iter()
            .map(|(i, r)| CaseRecordOut::of(i, r))
            .collect())
    }
}

/// One transition of a case: a signed ledger entry.
#[derive(SimpleObject, Clone)]
#[graphql(name = "AlertCaseRecord")]
pub struct CaseRecordOut {
    pub entry_index: i64,
    /// OPENED, INFORMATION_REQUESTED, ANSWERED, COMMENTED, REMINDED, ESCALATED or CLOSED.
    pub action: String,
    /// The organisation that acted, or `rxledger` for the node (opening, timers).
    pub actor: String,
    pub at: String,
    pub root_cause: Option<String>,
    pub text: Option<String>,
    /// On the opening record: the alert's message and the entries it cites.
    pub alert_message: Option<String>,
    pub alert_evidence: Vec<i64>,
}

impl CaseRecordOut {
    fn of(index: u64, r: CaseRecord) -> Self {
        CaseRecordOut {
            entry_index: index as i64,
            action: r.action.to_string(),
            actor: r.actor,
            at: r.at,
            root_cause: r.root_cause.map(|c| c.to_string()),
            text: r.text,
            alert_message: r.alert.as_ref().map(|a| a.message.clone()),
            alert_evidence: r
                .alert
                .map(|a| a.evidence.into_iter().map(|i| i as i64).collect())
                .unwrap_or_default(),
        }
    }
}

/// A transition as `alertCaseChanges` streams it.
#[derive(SimpleObject, Clone)]
pub struct AlertCaseChange {
    pub case: AlertCase,
    pub record: CaseRecordOut,
}

/// The case service: the server's, or one on the schema's own ledger (`schema_with`).
fn cases<'a>(ctx: &'a Context<'_>) -> Result<&'a Cases, ApiError> {
    ctx.data::<Cases>().map_err(|_| {
        tracing::error!("the schema was built without alert cases");
        ApiError::new(
            Code::Internal,
            "internal error; the operator's log has the details",
        )
    })
}

fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such alert case")
}

/// The caller's scope, FORBIDDEN for roles that see no case.
fn scope(ctx: &Context<'_>, roles: &[Role]) -> Result<CaseScope, ApiError> {
    Sight::of(require(ctx, roles)?)
        .cases()
        .ok_or_else(forbidden)
}

fn forbidden() -> ApiError {
    ApiError::new(Code::Forbidden, "this role may not see alert cases")
}

fn refused(e: CaseError) -> ApiError {
    match e {
        CaseError::Closed => ApiError::new(Code::CaseClosed, e.to_string()),
        CaseError::NotAllowed(_) => ApiError::new(Code::CaseNotAllowed, e.to_string()),
        CaseError::Text | CaseError::Timers => ApiError::bad_request(e.to_string()),
        other => {
            tracing::error!(error = %other, "an alert case's records");
            ApiError::new(
                Code::Internal,
                "internal error; the operator's log has the details",
            )
        }
    }
}

/// One transition of a case by the caller.
async fn act(
    ctx: &Context<'_>,
    id: i64,
    transition: Transition,
    text: Option<String>,
) -> Result<AlertCase, ApiError> {
    let caller = require(ctx, ACTORS)?;
    let scope = Sight::of(caller).cases().ok_or_else(forbidden)?;
    let actor = caller.org().unwrap_or_default().to_string();
    let text = text
        .map(|t| rxledger_core::case::parse_text(&t))
        .transpose()
        .map_err(refused)?;
    let s = cases(ctx)?;
    let id = u64::try_from(id).map_err(|_| not_found())?;
    let row = s.row(id).await?.ok_or_else(not_found)?;
    if !scope.admits(row.brand_owner.as_deref()) {
        return Err(not_found());
    }
    let after = s
        .act(id, scope.party(), &actor, transition, text)
        .await?
        .ok_or_else(not_found)?
        .map_err(refused)?;
    Ok(AlertCase::of(&after))
}

#[derive(Default)]
pub struct CaseQuery;

#[Object]
impl CaseQuery {
    /// Alert cases, newest first: a brand owner's own, every one for regulators and admins.
    async fn alert_cases(
        &self,
        ctx: &Context<'_>,
        filter: Option<AlertCaseFilter>,
        #[graphql(default = 50)] first: i64,
        before: Option<i64>,
    ) -> Result<Vec<AlertCase>> {
        let scope = scope(ctx, READERS)?;
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(ApiError::bad_request(format!("first must be 1 to {MAX_PAGE}")).into());
        }
        let filter = filter.unwrap_or_default();
        let q = CaseFilter {
            brand_owner: scope.brand_owner(),
            status: filter.status.map(|s| s.spelled().to_string()),
            escalated: filter.escalated,
            before: before.map(|b| b.max(0) as u64),
        };
        let rows = cases(ctx)?
            .list(&q, first as u64)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.iter().map(AlertCase::of).collect())
    }

    /// One alert case; NOT_FOUND when the caller may not see it.
    async fn alert_case(&self, ctx: &Context<'_>, id: i64) -> Result<AlertCase> {
        let scope = scope(ctx, READERS)?;
        let id = u64::try_from(id).map_err(|_| not_found())?;
        let row = cases(ctx)?
            .row(id)
            .await
            .map_err(ApiError::from)?
            .filter(|r| scope.admits(r.brand_owner.as_deref()))
            .ok_or_else(not_found)?;
        Ok(AlertCase::of(&row))
    }
}

#[derive(Default)]
pub struct CaseMutation;

#[Object]
impl CaseMutation {
    /// A regulator asks the brand owner for information; the timers start again from now.
    async fn request_case_information(
        &self,
        ctx: &Context<'_>,
        id: i64,
        text: String,
    ) -> Result<AlertCase> {
        Ok(act(ctx, id, Transition::RequestInformation, Some(text)).await?)
    }

    /// The brand owner's answer (it stops the timers), or a regulator's comment.
    async fn answer_case(&self, ctx: &Context<'_>, id: i64, text: String) -> Result<AlertCase> {
        Ok(act(ctx, id, Transition::Answer, Some(text)).await?)
    }

    /// Closes a case with its root cause: by the brand owner or a regulator; NO_RESPONSE by a
    /// regulator once the case is escalated.
    async fn close_case(
        &self,
        ctx: &Context<'_>,
        id: i64,
        root_cause: RootCauseIn,
        text: Option<String>,
    ) -> Result<AlertCase> {
        Ok(act(ctx, id, Transition::Close(root_cause.into()), text).await?)
    }
}

/// `alertCaseChanges`: every committed transition of a case the caller may see.
pub fn changes(ctx: &Context<'_>) -> Result<BoxStream<'static, AlertCaseChange>, ApiError> {
    let scope = scope(ctx, READERS)?;
    let rx = cases(ctx)?.subscribe();
    Ok(stream::unfold((rx, scope), |(mut rx, scope)| async move {
        loop {
            match rx.recv().await {
                Ok(c) if scope.admits(c.case.brand_owner.as_deref()) => {
                    return Some((change_out(c), (rx, scope)));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed())
}

fn change_out(c: CaseChange) -> AlertCaseChange {
    AlertCaseChange {
        case: AlertCase::of(&c.case),
        record: CaseRecordOut::of(c.record_index, c.record),
    }
}
