//! Who am I, and the ledger's status for regulators: size, checkpoint and the last audit.

use std::sync::Arc;

use async_graphql::{Context, Object, Result, SimpleObject};
use tokio::sync::Mutex;

use crate::admin::services;
use crate::auth::{Caller, Role, caller, require};
use crate::{ApiError, Code};

/// The result of the last audit run through this node, kept in memory.
#[derive(Clone, Default)]
pub struct AuditState(Arc<Mutex<Option<AuditResult>>>);

#[derive(SimpleObject, Clone)]
pub struct AuditResult {
    /// When the audit finished, RFC 3339 UTC.
    pub finished_at: String,
    pub ok: bool,
    pub tree_size: i64,
    pub entries_checked: i64,
    pub tiles_checked: i64,
    pub checkpoints_checked: i64,
    /// Empty when the log is sound.
    pub problems: Vec<String>,
}

#[derive(SimpleObject)]
pub struct Me {
    pub org_id: String,
    pub role: Role,
}

#[derive(SimpleObject)]
pub struct LedgerStatus {
    pub origin: String,
    pub size: i64,
    pub root_hash: String,
    pub checkpoint_note: String,
    /// The last audit run on this node since it started (`runAudit`), if any.
    pub last_audit: Option<AuditResult>,
    /// The log's witnesses, and whether checkpoints reach their quorum.
    pub witnessing: Witnessing,
    /// The check of the derived tables against the log since this node opened it.
    pub index_check: IndexCheckOut,
}

/// Where the start-up index check stands: `RUNNING` (behind an open node whose map vouched
/// for the `epcs` rows; appends wait), `PASSED`, or `FAILED` (nothing is appended; the
/// problems name the rows).
#[derive(SimpleObject)]
pub struct IndexCheckOut {
    pub state: String,
    /// The first rows found wrong, when it failed.
    pub problems: Option<String>,
}

impl IndexCheckOut {
    fn of(ledger: &rxledger_store::Ledger) -> Self {
        use rxledger_store::IndexCheck;
        match &*ledger.index_check().borrow() {
            IndexCheck::Running => IndexCheckOut {
                state: "RUNNING".into(),
                problems: None,
            },
            IndexCheck::Passed => IndexCheckOut {
                state: "PASSED".into(),
                problems: None,
            },
            IndexCheck::Failed(why) => IndexCheckOut {
                state: "FAILED".into(),
                problems: Some(why.clone()),
            },
        }
    }
}

/// The node's witnesses (`serve --witness`, `--witness-quorum`).
#[derive(SimpleObject)]
pub struct Witnessing {
    /// Cosignatures a checkpoint needs; 0 when no witness is configured.
    pub quorum: i32,
    /// The size of the newest checkpoint with a quorum; null if none yet.
    pub cosigned_size: Option<i64>,
    /// Whether some witness is failing now: down, or refusing this log's checkpoints.
    pub degraded: bool,
    pub witnesses: Vec<WitnessOut>,
}

/// One witness as this node sees it.
#[derive(SimpleObject)]
pub struct WitnessOut {
    /// Its key name.
    pub name: String,
    pub url: String,
    /// The size it last cosigned for this log, as far as this node knows.
    pub cosigned_size: Option<i64>,
    /// Whether its last request got an answer.
    pub up: bool,
    /// Its last failure or refusal, while it lasts.
    pub error: Option<String>,
}

impl Witnessing {
    fn of(ledger: &rxledger_store::Ledger) -> Self {
        let board = ledger.witnesses();
        let s = board.status();
        Witnessing {
            quorum: s.quorum as i32,
            cosigned_size: s.cosigned_size.map(|n| n as i64),
            degraded: board.degraded(),
            witnesses: s
                .witnesses
                .into_iter()
                .map(|w| WitnessOut {
                    name: w.name,
                    url: w.url,
                    cosigned_size: w.cosigned_size.map(|n| n as i64),
                    up: w.up,
                    error: w.error,
                })
                .collect(),
        }
    }
}

#[derive(Default)]
pub struct StatusQuery;

#[Object]
impl StatusQuery {
    /// The caller's organization and role; null without an API key.
    async fn me(&self, ctx: &Context<'_>) -> Option<Me> {
        match caller(ctx) {
            Caller::Anonymous => None,
            Caller::Key { org_id, role, .. } => Some(Me {
                org_id: org_id.clone(),
                role: *role,
            }),
        }
    }

    /// The ledger's size, checkpoint and last audit. Regulators and admins.
    async fn ledger_status(&self, ctx: &Context<'_>) -> Result<LedgerStatus> {
        require(ctx, &[Role::Regulator, Role::Admin])?;
        let s = services(ctx);
        let head = s.ledger.head();
        let last = ctx.data_unchecked::<AuditState>().0.lock().await.clone();
        Ok(LedgerStatus {
            origin: s.ledger.origin().to_string(),
            size: head.size as i64,
            root_hash: hex::encode(head.root),
            checkpoint_note: head.note,
            last_audit: last,
            witnessing: Witnessing::of(&s.ledger),
            index_check: IndexCheckOut::of(&s.ledger),
        })
    }
}

#[derive(Default)]
pub struct StatusMutation;

#[Object]
impl StatusMutation {
    /// Audits the whole ledger now (every leaf, tile and checkpoint; see `rxledger audit`) and
    /// keeps the result for `ledgerStatus`. Regulators and admins; one audit at a time.
    async fn run_audit(&self, ctx: &Context<'_>) -> Result<AuditResult> {
        require(ctx, &[Role::Regulator, Role::Admin])?;
        let s = services(ctx);
        let state = ctx.data_unchecked::<AuditState>();
        let mut last = state.0.lock().await;
        let report = rxledger_store::audit::audit_ledger(&s.ledger)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "audit could not run");
                ApiError::new(
                    Code::Internal,
                    "the audit could not run; see the operator's log",
                )
            })?;
        let result = AuditResult {
            finished_at: rxledger_core::epcis::format_time(rxledger_store::now_ms()),
            ok: report.ok(),
            tree_size: report.size as i64,
            entries_checked: report.entries_checked as i64,
            tiles_checked: report.tiles_checked as i64,
            checkpoints_checked: report.checkpoints_checked as i64,
            problems: report.problems,
        };
        *last = Some(result.clone());
        Ok(result)
    }
}
