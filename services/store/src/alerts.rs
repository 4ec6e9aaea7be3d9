//! Alerts: every rejected message and every suspicious pattern, kept for regulators.

use rxledger_entities::alert;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use tokio::sync::broadcast;

use crate::{Database, StoreError, now_ms};

/// How bad it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// An alert to record.
#[derive(Clone, Debug)]
pub struct NewAlert {
    pub code: String,
    pub severity: Severity,
    /// Identifiers it concerns: device ids, SGTIN URNs, ...
    pub subjects: Vec<String>,
    pub message: String,
    pub evidence: Vec<u64>,
    pub raw: Option<Vec<u8>>,
}

/// A fragment of an alert's subjects, for readers that see only some alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// This exact text appears in a subject (e.g. `brand:acme`).
    Contains(String),
    /// A pack of a GTIN under this GS1 company prefix (`sgtin:<indicator><prefix>…`).
    PackOfPrefix(String),
}

impl Subject {
    /// A SQL LIKE pattern; `\` escapes the wildcards a fragment may contain.
    fn like_pattern(&self) -> sea_orm::sea_query::LikeExpr {
        let esc = |t: &str| {
            t.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        };
        let p = match self {
            Subject::Contains(t) => format!("%{}%", esc(t)),
            Subject::PackOfPrefix(p) => format!("%sgtin:_{}%", esc(p)),
        };
        sea_orm::sea_query::LikeExpr::new(p).escape('\\')
    }
}

/// The alert table plus a broadcast of new alerts for subscriptions.
#[derive(Clone)]
pub struct Alerts {
    db: Database,
    tx: broadcast::Sender<alert::Model>,
}

impl Alerts {
    pub fn new(db: Database) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Alerts { db, tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<alert::Model> {
        self.tx.subscribe()
    }

    /// Records alerts durably (one statement per call), then broadcasts them.
    pub async fn record(&self, alerts: Vec<NewAlert>) -> Result<(), StoreError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let rows: Vec<alert::ActiveModel> = alerts
            .iter()
            .map(|a| alert::ActiveModel {
                code: Set(a.code.clone()),
                severity: Set(a.severity.as_str().into()),
                subject: Set(a.subjects.join(" ")),
                message: Set(a.message.clone()),
                evidence_entries: Set(a
                    .evidence
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")),
                raw: Set(a.raw.clone()),
                created_ms: Set(now),
                ..Default::default()
            })
            .collect();
        for chunk in rows.chunks(200) {
            alert::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&self.db.conn)
                .await?;
        }
        for a in alerts {
            let _ = self.tx.send(alert::Model {
                id: 0,
                code: a.code,
                severity: a.severity.as_str().into(),
                subject: a.subjects.join(" "),
                message: a.message,
                evidence_entries: a
                    .evidence
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                raw: a.raw,
                created_ms: now,
            });
        }
        Ok(())
    }

    /// The newest alerts first, optionally only one code.
    pub async fn list(
        &self,
        code: Option<&str>,
        limit: u64,
    ) -> Result<Vec<alert::Model>, StoreError> {
        self.list_about(code, limit, None).await
    }

    /// [`Alerts::list`], and when `about` is given only alerts with a subject matching one of
    /// its fragments (for a reader that may not see every alert).
    pub async fn list_about(
        &self,
        code: Option<&str>,
        limit: u64,
        about: Option<&[Subject]>,
    ) -> Result<Vec<alert::Model>, StoreError> {
        let mut q = alert::Entity::find()
            .order_by_desc(alert::Column::Id)
            .limit(limit);
        if let Some(code) = code {
            q = q.filter(alert::Column::Code.eq(code));
        }
        if let Some(about) = about {
            let mut any = sea_orm::Condition::any();
            for f in about {
                any = any.add(alert::Column::Subject.like(f.like_pattern()));
            }
            q = q.filter(any);
        }
        Ok(q.all(&self.db.conn).await?)
    }
}
