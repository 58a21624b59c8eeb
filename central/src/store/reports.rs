//! Reports: net weight and number of complete, uncancelled weighings over a
//! period, grouped by article, partner, site or day.

use rusqlite::params;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Store, StoreError};

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Article,
    Partner,
    Site,
    Day,
}

impl GroupBy {
    /// Fixed SQL per variant: the key and the name of a group.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            GroupBy::Article => (
                "article_id",
                "COALESCE(MAX(json_extract(ticket, '$.article.name')), article_id)",
            ),
            GroupBy::Partner => (
                "partner_id",
                "COALESCE(MAX(json_extract(ticket, '$.partner.name')), partner_id)",
            ),
            GroupBy::Site => (
                "site_id",
                "COALESCE((SELECT json_extract(body, '$.name') FROM master_entities
                    WHERE kind = 'sites' AND id = site_id), site_id)",
            ),
            GroupBy::Day => (
                "substr(COALESCE(second_weighed_at, first_weighed_at), 1, 10)",
                "substr(COALESCE(second_weighed_at, first_weighed_at), 1, 10)",
            ),
        }
    }
}

/// One group of a report. `key` is null for weighings without one (no
/// article, no partner, a device without a site).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReportRow {
    pub key: Option<String>,
    pub name: Option<String>,
    pub weighings: u64,
    pub net_kg: f64,
}

/// Totals of a report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReportTotal {
    pub weighings: u64,
    pub net_kg: f64,
}

/// A report over complete weighings whose first weighing is in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Report {
    pub group_by: GroupBy,
    pub from: Option<String>,
    pub to: Option<String>,
    pub rows: Vec<ReportRow>,
    pub total: ReportTotal,
}

/// Most groups in one report.
pub const MAX_REPORT_ROWS: u32 = 10_000;

impl Store {
    pub fn weighing_report(
        &self,
        group_by: GroupBy,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Report, StoreError> {
        let conn = self.reader();
        let (key, name) = group_by.columns();
        let mut stmt = conn.prepare(&format!(
            "SELECT {key} AS k, {name}, COUNT(*), COALESCE(SUM(net_kg), 0) FROM weighings
             WHERE status = 'complete' AND (?1 IS NULL OR first_weighed_at >= ?1)
                 AND (?2 IS NULL OR first_weighed_at < ?2)
             GROUP BY k ORDER BY k LIMIT {MAX_REPORT_ROWS}"
        ))?;
        let rows = stmt
            .query_map(params![from, to], |r| {
                Ok(ReportRow {
                    key: r.get(0)?,
                    name: r.get(1)?,
                    weighings: r.get::<_, i64>(2)? as u64,
                    net_kg: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let total = ReportTotal {
            weighings: rows.iter().map(|r| r.weighings).sum(),
            net_kg: rows.iter().map(|r| r.net_kg).sum(),
        };
        Ok(Report {
            group_by,
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            rows,
            total,
        })
    }
}
