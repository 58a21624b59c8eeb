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
            // The day of the first weighing, as the period filter: a
            // stored-tare ticket's second step carries the tare's old date.
            GroupBy::Day => (
                "substr(first_weighed_at, 1, 10)",
                "substr(first_weighed_at, 1, 10)",
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
    /// True when there were more groups than `MAX_REPORT_ROWS`; the total
    /// still counts them all.
    pub truncated: bool,
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
        // The period bounds are always bound (open ends as the widest
        // strings), so the time index serves the range; `x IS NULL OR`
        // would keep SQLite from using it.
        let (from, to) = (from.unwrap_or(""), to.unwrap_or("\u{10FFFF}"));
        let range = "status = 'complete' AND first_weighed_at >= ?1 AND first_weighed_at < ?2";
        let mut stmt = conn.prepare(&format!(
            "SELECT {key} AS k, {name}, COUNT(*), COALESCE(SUM(net_kg), 0) FROM weighings
             WHERE {range} GROUP BY k ORDER BY k LIMIT {}",
            MAX_REPORT_ROWS + 1
        ))?;
        let mut rows = stmt
            .query_map(params![from, to], |r| {
                Ok(ReportRow {
                    key: r.get(0)?,
                    name: r.get(1)?,
                    weighings: r.get::<_, i64>(2)? as u64,
                    net_kg: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let truncated = rows.len() > MAX_REPORT_ROWS as usize;
        rows.truncate(MAX_REPORT_ROWS as usize);
        let total = conn.query_row(
            &format!("SELECT COUNT(*), COALESCE(SUM(net_kg), 0) FROM weighings WHERE {range}"),
            params![from, to],
            |r| {
                Ok(ReportTotal {
                    weighings: r.get::<_, i64>(0)? as u64,
                    net_kg: r.get(1)?,
                })
            },
        )?;
        let bound = |b: &str| (!b.is_empty() && b != "\u{10FFFF}").then(|| b.to_owned());
        Ok(Report {
            group_by,
            from: bound(from),
            to: bound(to),
            rows,
            truncated,
            total,
        })
    }
}
