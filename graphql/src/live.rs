//! Alerts, as a query and as live streams of alerts and checkpoints.

use async_graphql::futures_util::{Stream, StreamExt, stream};
use async_graphql::{Context, Object, Result, SimpleObject, Subscription};
use rxledger_entities::alert;

use crate::admin::services;
use crate::auth::{Role, require};
use crate::visibility::{AlertScope, Sight};
use crate::{ApiError, Code, MAX_PAGE};

/// A rejected message or a suspicious pattern.
#[derive(SimpleObject, Clone)]
pub struct Alert {
    pub id: i64,
    /// Stable code: BAD_SIGNATURE, UNKNOWN_DEVICE, SERIAL_ALREADY_COMMISSIONED, DISPENSED_TWICE, ...
    pub code: String,
    /// INFO, WARNING or CRITICAL.
    pub severity: String,
    /// The identifiers it concerns.
    pub subjects: Vec<String>,
    pub message: String,
    /// Ledger indices that are evidence.
    pub evidence: Vec<i64>,
    /// Base64 of the rejected bytes, when the alert is about a rejected message.
    pub raw_base64: Option<String>,
    pub created_at: String,
}

fn alert_out(a: alert::Model, scope: &AlertScope) -> Alert {
    use base64::Engine as _;
    Alert {
        id: a.id,
        code: a.code,
        severity: a.severity,
        subjects: a.subject.split_whitespace().map(str::to_string).collect(),
        message: a.message,
        evidence: a
            .evidence_entries
            .split_whitespace()
            .filter_map(|i| i.parse().ok())
            .collect(),
        raw_base64: a
            .raw
            .filter(|_| scope.raw())
            .map(|r| base64::engine::general_purpose::STANDARD.encode(r)),
        created_at: rxledger_core::epcis::format_time(a.created_ms),
    }
}

#[derive(Default)]
pub struct AlertQuery;

#[Object]
impl AlertQuery {
    /// The newest alerts first, optionally one code only. Regulators and admins see every
    /// alert; a brand owner sees alerts about its products, without rejected bytes.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        code: Option<String>,
        first: Option<i64>,
    ) -> Result<Vec<Alert>> {
        let scope = alert_scope(ctx).await?;
        let first = first.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(ApiError::bad_request(format!("first must be 1 to {MAX_PAGE}")).into());
        }
        let about = scope.subjects();
        let rows = services(ctx)
            .alerts
            .list_about(code.as_deref(), first as u64, about.as_deref())
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .into_iter()
            .filter(|a| scope.admits(a.subject.split_whitespace()))
            .map(|a| alert_out(a, &scope))
            .collect())
    }
}

/// What alerts the caller may read; FORBIDDEN (UNAUTHENTICATED) for callers who may read none.
async fn alert_scope(ctx: &Context<'_>) -> Result<AlertScope, ApiError> {
    let c = require(ctx, &[Role::Regulator, Role::Admin, Role::Manufacturer])?;
    Sight::of(c)
        .alerts(services(ctx))
        .await?
        .ok_or_else(|| ApiError::new(Code::Forbidden, "this role may not read alerts"))
}

/// A new signed checkpoint.
#[derive(SimpleObject, Clone)]
pub struct CheckpointEvent {
    pub size: i64,
    pub root_hash: String,
    pub note: String,
}

#[derive(Default)]
pub struct Live;

#[Subscription]
impl Live {
    /// Alerts as they are recorded, as the `alerts` query shows them to the caller.
    async fn alerts(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Alert>> {
        let scope = alert_scope(ctx).await?;
        let rx = services(ctx).alerts.subscribe();
        Ok(stream::unfold((rx, scope), |(mut rx, scope)| async move {
            loop {
                match rx.recv().await {
                    Ok(a) if scope.admits(a.subject.split_whitespace()) => {
                        let out = alert_out(a, &scope);
                        return Some((out, (rx, scope)));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// Every transition of the alert cases the caller may see (a brand owner's own; every
    /// one for regulators and admins), as it commits: openings, requests, answers, reminders,
    /// escalations, closings.
    async fn alert_case_changes(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = crate::cases::AlertCaseChange>> {
        Ok(crate::cases::changes(ctx)?)
    }

    /// Every new checkpoint the log signs. Public, like the checkpoints themselves.
    async fn checkpoints(&self, ctx: &Context<'_>) -> impl Stream<Item = CheckpointEvent> {
        let rx = services(ctx).ledger.subscribe();
        stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let h = rx.borrow_and_update().clone();
            Some((
                CheckpointEvent {
                    size: h.size as i64,
                    root_hash: hex::encode(h.root),
                    note: h.note,
                },
                rx,
            ))
        })
        .boxed()
    }
}
