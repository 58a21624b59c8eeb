//! Weighing tickets as the API shows them: the filtered, sorted, paged list
//! (the query office staff run all day, so every filter is an indexed
//! column), one ticket with its proof (its raw records, their hashes and the
//! chain links re-checked now), and the rows for CSV export.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use valeo_records::ticket::{CancellationInfo, QualityEntry, TareSource};
use valeo_records::{Ref, Ticket};
use valeo_sync::wire::Record;

use super::{Store, StoreError};

/// Indexes of the filters; created after older databases got the columns.
pub(super) const WEIGHING_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS weighings_by_partner ON weighings (partner_id, first_weighed_at);
CREATE INDEX IF NOT EXISTS weighings_by_article ON weighings (article_id, first_weighed_at);
CREATE INDEX IF NOT EXISTS weighings_by_site ON weighings (site_id, first_weighed_at);
DROP INDEX IF EXISTS weighings_by_plate;
CREATE INDEX IF NOT EXISTS weighings_by_plate_status ON weighings (plate, status, first_weighed_at);
CREATE INDEX IF NOT EXISTS weighings_by_net ON weighings (net_kg);
CREATE INDEX IF NOT EXISTS weighings_by_lot ON weighings (lot_id, first_weighed_at);
CREATE INDEX IF NOT EXISTS weighings_by_contract ON weighings (contract_id, status);
CREATE INDEX IF NOT EXISTS weighings_by_status ON weighings (status, first_weighed_at);
CREATE INDEX IF NOT EXISTS records_by_ticket ON records (device_id, ticket_no)
    WHERE ticket_no IS NOT NULL;
";

/// Most raw records shown and checked in one ticket's proof (a ticket has
/// its weighings, a cancellation, reprints and quality samples).
pub(super) const MAX_PROOF_RECORDS: u32 = 1_000;

/// When a ticket's weighing was done: its second weighing, or for a
/// one-pass weighing against a stored tare its first (the second step
/// then carries the tare's old date).
pub(super) fn weighed_at(ticket: &Ticket) -> &str {
    match (&ticket.second, ticket.tare_source) {
        (Some(second), Some(TareSource::Weighed) | None) => &second.weighed_at,
        _ => &ticket.first.weighed_at,
    }
}

/// Ticket state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WeighingStatus {
    Open,
    Complete,
    Cancelled,
}

impl WeighingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WeighingStatus::Open => "open",
            WeighingStatus::Complete => "complete",
            WeighingStatus::Cancelled => "cancelled",
        }
    }
}

/// Order of the weighing list; a leading `-` is descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
pub enum Sort {
    #[default]
    #[serde(rename = "-weighed_at")]
    WeighedAtDesc,
    #[serde(rename = "weighed_at")]
    WeighedAt,
    #[serde(rename = "-net")]
    NetDesc,
    #[serde(rename = "net")]
    Net,
    #[serde(rename = "-ticket_no")]
    TicketNoDesc,
    #[serde(rename = "ticket_no")]
    TicketNo,
    #[serde(rename = "plate")]
    Plate,
}

impl Sort {
    /// Fixed SQL per variant: nothing from the request reaches the query.
    fn order_by(self) -> &'static str {
        match self {
            Sort::WeighedAtDesc => "w.first_weighed_at DESC, w.id DESC",
            Sort::WeighedAt => "w.first_weighed_at, w.id",
            Sort::NetDesc => "w.net_kg DESC, w.id DESC",
            Sort::Net => "w.net_kg, w.id",
            Sort::TicketNoDesc => "w.ticket_no DESC, w.id DESC",
            Sort::TicketNo => "w.ticket_no, w.id",
            Sort::Plate => "w.plate, w.first_weighed_at DESC, w.id DESC",
        }
    }
}

/// Filters, order and paging of the weighing list.
#[derive(Debug, Clone, Default)]
pub struct WeighingFilter {
    /// First weighing at or after (RFC 3339, UTC).
    pub from: Option<String>,
    /// First weighing before (RFC 3339, UTC).
    pub to: Option<String>,
    pub site_id: Option<String>,
    pub device_id: Option<String>,
    pub partner_id: Option<String>,
    pub article_id: Option<String>,
    pub lot_id: Option<String>,
    pub contract_id: Option<String>,
    /// Start of the normalised plate.
    pub plate: Option<String>,
    pub status: Option<WeighingStatus>,
    /// `intake` or `outgoing`.
    pub direction: Option<String>,
    pub sort: Sort,
    pub limit: u32,
    pub offset: u64,
}

/// One weighing of a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub scale_id: String,
    pub weight: f64,
    pub alibi_id: Option<String>,
    pub weighed_at: String,
}

/// The issued delivery note of a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoteRef {
    pub id: i64,
    pub number: String,
    pub status: String,
}

/// A ticket as the API shows it. Weights are in `unit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WeighingView {
    pub id: i64,
    pub device_id: String,
    /// The site of the device, when it is assigned to one.
    #[serde(default)]
    pub site_id: Option<String>,
    pub ticket_no: u64,
    pub plate: String,
    /// `intake` or `outgoing`.
    pub direction: String,
    /// `open`, `complete` or `cancelled`.
    pub status: String,
    pub unit: String,
    pub first: StepView,
    pub second: Option<StepView>,
    pub gross: Option<f64>,
    pub tare: Option<f64>,
    pub net: Option<f64>,
    /// True only when every weighing carries a terminal alibi number and
    /// none was entered by hand.
    pub legal_for_trade: bool,
    #[schema(value_type = Option<Object>)]
    pub partner: Option<Ref>,
    #[schema(value_type = Option<Object>)]
    pub article: Option<Ref>,
    #[schema(value_type = Option<Object>)]
    pub lot: Option<Ref>,
    #[schema(value_type = Option<Object>)]
    pub location: Option<Ref>,
    pub contract_id: Option<String>,
    pub operator: Option<String>,
    /// `weighed` or `stored` (one-pass weighing against a stored tare).
    #[schema(value_type = Option<String>)]
    pub tare_source: Option<TareSource>,
    /// Set when the ticket was cancelled (storno): `at`, `operator`, `reason`.
    #[schema(value_type = Option<Object>)]
    pub cancellation: Option<CancellationInfo>,
    #[schema(value_type = Vec<Object>)]
    pub quality: Vec<QualityEntry>,
    /// Copies printed at the box after the original.
    pub prints: u32,
    /// Where the raw records of this ticket are in the device's chain.
    pub epoch: String,
    pub first_record_seq: u64,
    pub second_record_seq: Option<u64>,
    /// The issued delivery note, if any.
    #[serde(default)]
    pub delivery_note: Option<NoteRef>,
}

/// Matching tickets are counted up to this many for a page's `total`:
/// counting a million rows for a page of fifty would cost more than the
/// page.
pub const MAX_COUNTED_TICKETS: u64 = 10_000;

/// A page of tickets.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WeighingPage {
    pub items: Vec<WeighingView>,
    /// How many tickets match the filters, counted up to 10,000 (see
    /// `total_exact`).
    pub total: u64,
    /// False when more tickets match than were counted.
    pub total_exact: bool,
    pub limit: u32,
    pub offset: u64,
}

/// One raw record of a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProofRecord {
    pub seq: u64,
    pub kind: String,
    pub created_at: String,
    pub received_at: String,
    pub hash: String,
    pub prev_hash: String,
    /// The record's hash recomputed now matches the stored one.
    pub hash_verified: bool,
    /// `prev_hash` is the stored hash of the record before it.
    pub linked: bool,
}

/// Why a ticket can be trusted: its records as the box signed them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Proof {
    pub records: Vec<ProofRecord>,
    /// Every record's hash and link to its predecessor hold now.
    pub chain_verified: bool,
    /// The records arrived in batches whose ed25519 signature verified
    /// against the box's registered key (central stores nothing else).
    pub signature_verified: bool,
    /// What does not hold, in words.
    pub problems: Vec<String>,
}

/// A ticket with its proof.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WeighingDetail {
    #[serde(flatten)]
    pub weighing: WeighingView,
    pub proof: Proof,
}

pub(super) const WEIGHING_COLUMNS: &str = "w.id, w.device_id, w.ticket_no, w.plate, w.direction,
    w.status, w.unit, w.decimals,
    w.first_scale_id, w.first_value, w.first_alibi_id, w.first_weighed_at,
    w.second_scale_id, w.second_value, w.second_alibi_id, w.second_weighed_at,
    w.gross_value, w.tare_value, w.net_value, w.epoch, w.first_record_seq, w.second_record_seq,
    w.ticket, w.site_id, dn.id, dn.number, dn.status";

const WEIGHING_FROM: &str = "weighings w
    LEFT JOIN delivery_notes dn ON dn.weighing_id = w.id AND dn.status = 'issued'";

fn weighing_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WeighingView> {
    let decimals: u32 = row.get(7)?;
    let scale = |v: i64| v as f64 / 10f64.powi(decimals as i32);
    let second_value: Option<i64> = row.get(13)?;
    let second = match second_value {
        Some(value) => Some(StepView {
            scale_id: row.get::<_, Option<String>>(12)?.unwrap_or_default(),
            weight: scale(value),
            alibi_id: row.get(14)?,
            weighed_at: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
        }),
        None => None,
    };
    let first = StepView {
        scale_id: row.get(8)?,
        weight: scale(row.get(9)?),
        alibi_id: row.get(10)?,
        weighed_at: row.get(11)?,
    };
    let ticket: Option<Ticket> = row
        .get::<_, Option<String>>(22)?
        .and_then(|t| serde_json::from_str(&t).ok());
    let legal_for_trade = match &ticket {
        Some(t) => t.legal_for_trade,
        None => first.alibi_id.is_some() && second.as_ref().is_some_and(|s| s.alibi_id.is_some()),
    };
    let t = ticket.as_ref();
    let note_id: Option<i64> = row.get(24)?;
    Ok(WeighingView {
        partner: t.and_then(|t| t.partner.clone()),
        article: t.and_then(|t| t.article.clone()),
        lot: t.and_then(|t| t.lot.clone()),
        location: t.and_then(|t| t.location.clone()),
        contract_id: t.and_then(|t| t.contract_id.clone()),
        operator: t.and_then(|t| t.operator.clone()),
        tare_source: t.and_then(|t| t.tare_source),
        cancellation: t.and_then(|t| t.cancellation.clone()),
        quality: t.map(|t| t.quality.clone()).unwrap_or_default(),
        prints: t.map_or(0, |t| t.prints),
        id: row.get(0)?,
        device_id: row.get(1)?,
        site_id: row.get(23)?,
        ticket_no: row.get::<_, i64>(2)? as u64,
        plate: row.get(3)?,
        direction: row.get(4)?,
        status: row.get(5)?,
        unit: row.get(6)?,
        first,
        second,
        gross: row.get::<_, Option<i64>>(16)?.map(scale),
        tare: row.get::<_, Option<i64>>(17)?.map(scale),
        net: row.get::<_, Option<i64>>(18)?.map(scale),
        legal_for_trade,
        epoch: row.get(19)?,
        first_record_seq: row.get::<_, i64>(20)? as u64,
        second_record_seq: row.get::<_, Option<i64>>(21)?.map(|v| v as u64),
        delivery_note: match note_id {
            Some(id) => Some(NoteRef {
                id,
                number: row.get(25)?,
                status: row.get(26)?,
            }),
            None => None,
        },
    })
}

/// The WHERE clause of a filter and its values, in order.
fn filter_sql(filter: &WeighingFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    let mut eq = |clause: &'static str, value: &Option<String>| {
        if let Some(v) = value {
            clauses.push(clause);
            values.push(v.clone().into());
        }
    };
    eq("w.first_weighed_at >= ?", &filter.from);
    eq("w.first_weighed_at < ?", &filter.to);
    eq("w.site_id = ?", &filter.site_id);
    eq("w.device_id = ?", &filter.device_id);
    eq("w.partner_id = ?", &filter.partner_id);
    eq("w.article_id = ?", &filter.article_id);
    eq("w.lot_id = ?", &filter.lot_id);
    eq("w.contract_id = ?", &filter.contract_id);
    eq("w.direction = ?", &filter.direction);
    if let Some(status) = filter.status {
        clauses.push("w.status = ?");
        values.push(status.as_str().to_owned().into());
    }
    if let Some(plate) = &filter.plate {
        // A range instead of LIKE, so the plate index serves it.
        clauses.push("w.plate >= ? AND w.plate < ?");
        values.push(plate.clone().into());
        values.push(format!("{plate}\u{10FFFF}").into());
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, values)
}

impl Store {
    /// One page of weighings and how many match (up to
    /// [`MAX_COUNTED_TICKETS`]).
    pub fn list_weighings(&self, filter: &WeighingFilter) -> Result<WeighingPage, StoreError> {
        self.list_weighings_counting(filter, MAX_COUNTED_TICKETS)
    }

    /// One page of weighings, counting matches up to `count_up_to`.
    pub fn list_weighings_counting(
        &self,
        filter: &WeighingFilter,
        count_up_to: u64,
    ) -> Result<WeighingPage, StoreError> {
        let conn = self.reader();
        let (where_sql, values) = filter_sql(filter);
        let mut count_values = values.clone();
        count_values.push((count_up_to.min(i64::MAX as u64 - 1) as i64 + 1).into());
        let counted: i64 = conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM weighings w {where_sql} LIMIT ?)"
            ))?
            .query_row(rusqlite::params_from_iter(count_values.iter()), |r| {
                r.get(0)
            })?;
        let total_exact = (counted as u64) <= count_up_to;
        let total = (counted as u64).min(count_up_to);
        let mut page_values = values;
        page_values.push(i64::from(filter.limit).into());
        page_values.push((filter.offset.min(i64::MAX as u64) as i64).into());
        // The page's ids first, from the indexes alone; only those rows
        // are then read whole (a sort over whole rows would read the
        // ticket documents of every match).
        let order = filter.sort.order_by();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {WEIGHING_COLUMNS} FROM {WEIGHING_FROM}
             WHERE w.id IN (SELECT w.id FROM weighings w {where_sql} ORDER BY {order} LIMIT ? OFFSET ?)
             ORDER BY {order}"
        ))?;
        let items = stmt
            .query_map(
                rusqlite::params_from_iter(page_values.iter()),
                weighing_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WeighingPage {
            items,
            total,
            total_exact,
            limit: filter.limit,
            offset: filter.offset,
        })
    }

    pub fn get_weighing(&self, id: i64) -> Result<Option<WeighingView>, StoreError> {
        let conn = self.reader();
        Ok(conn
            .query_row(
                &format!("SELECT {WEIGHING_COLUMNS} FROM {WEIGHING_FROM} WHERE w.id = ?1"),
                params![id],
                weighing_from_row,
            )
            .optional()?)
    }

    /// A ticket with its raw records, each re-hashed and its link to the
    /// record before it checked against what is stored now.
    pub fn get_weighing_detail(&self, id: i64) -> Result<Option<WeighingDetail>, StoreError> {
        let Some(weighing) = self.get_weighing(id)? else {
            return Ok(None);
        };
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT device_id, epoch, seq, kind, created_at, payload, prev_hash, hash, received_at
             FROM records WHERE device_id = ?1 AND epoch = ?3 AND ticket_no = ?2
             ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt
            .query_map(
                params![
                    weighing.device_id,
                    weighing.ticket_no as i64,
                    weighing.epoch,
                    MAX_PROOF_RECORDS + 1
                ],
                |r| {
                    let payload: String = r.get(5)?;
                    Ok((
                        Record {
                            device_id: r.get(0)?,
                            epoch: r.get(1)?,
                            seq: r.get::<_, i64>(2)? as u64,
                            kind: r.get(3)?,
                            created_at: r.get(4)?,
                            payload: serde_json::from_str(&payload)
                                .unwrap_or(serde_json::Value::Null),
                            prev_hash: r.get(6)?,
                            hash: r.get(7)?,
                        },
                        r.get::<_, String>(8)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let mut problems = Vec::new();
        let mut records = Vec::new();
        for (record, received_at) in rows {
            let hash_verified = record.verify_hash().is_ok();
            if !hash_verified {
                problems.push(format!(
                    "record {}: its content does not match its hash",
                    record.seq
                ));
            }
            let linked = if record.seq == 1 {
                record.prev_hash == valeo_sync::wire::GENESIS_HASH
            } else {
                let previous: Option<String> = conn
                    .query_row(
                        "SELECT hash FROM records WHERE device_id = ?1 AND epoch = ?2 AND seq = ?3",
                        params![record.device_id, record.epoch, record.seq as i64 - 1],
                        |r| r.get(0),
                    )
                    .optional()?;
                previous.as_deref() == Some(record.prev_hash.as_str())
            };
            if !linked {
                problems.push(format!(
                    "record {}: does not link to the record before it",
                    record.seq
                ));
            }
            records.push(ProofRecord {
                seq: record.seq,
                kind: record.kind,
                created_at: record.created_at,
                received_at,
                hash: record.hash,
                prev_hash: record.prev_hash,
                hash_verified,
                linked,
            });
        }
        if records.is_empty() {
            problems.push("no raw records of this ticket are stored".into());
        }
        if records.len() > MAX_PROOF_RECORDS as usize {
            records.truncate(MAX_PROOF_RECORDS as usize);
            problems.push(format!(
                "more than {MAX_PROOF_RECORDS} records; only the first are checked here"
            ));
        }
        Ok(Some(WeighingDetail {
            weighing,
            proof: Proof {
                chain_verified: problems.is_empty(),
                signature_verified: !records.is_empty(),
                records,
                problems,
            },
        }))
    }
}

/// Shape of synthetic tickets for load tests and benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticTickets {
    pub count: u64,
    pub devices: u32,
    pub partners: u32,
    pub articles: u32,
    pub plates: u32,
    pub sites: u32,
    /// Days the tickets spread over, ending on 2026-11-30.
    pub days: u32,
}

impl Store {
    /// Fills the database with `shape.count` complete tickets spread evenly
    /// over devices, partners, articles, plates and days (deterministic, no
    /// randomness), as a real site would have them after years. For the
    /// ticket-list benchmark; a real database never gets these.
    pub fn fill_synthetic_tickets(&self, shape: SyntheticTickets) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        for d in 0..shape.devices {
            tx.execute(
                "INSERT OR IGNORE INTO devices (device_id, public_key, registered_at, site_id)
                 VALUES (?1, ?2, '2024-01-01T00:00:00Z', ?3)",
                params![
                    format!("box-{d:03}"),
                    "0".repeat(64),
                    format!("SITE-{}", d % shape.sites.max(1))
                ],
            )?;
        }
        let end = chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
            .unwrap_or_default();
        let span_s = i64::from(shape.days.max(1)) * 86_400;
        let mut stmt = tx.prepare(
            "INSERT INTO weighings (device_id, ticket_no, plate, direction, status, unit, decimals,
                 first_scale_id, first_value, first_alibi_id, first_weighed_at, first_record_seq, epoch,
                 second_scale_id, second_value, second_alibi_id, second_weighed_at, second_record_seq,
                 gross_value, tare_value, net_value, ticket, site_id, partner_id, article_id, lot_id,
                 location_id, contract_id, net_kg)
             VALUES (?1, ?2, ?3, 'intake', 'complete', 'kg', 0, 'scale-1', ?4, ?5, ?6, ?7, 'ep',
                 'scale-1', ?8, ?9, ?10, ?11, ?4, ?8, ?12, ?13, ?14, ?15, ?16, NULL, NULL, NULL, ?17)",
        )?;
        for i in 0..shape.count {
            let device = (i % u64::from(shape.devices.max(1))) as u32;
            let ticket_no = i / u64::from(shape.devices.max(1)) + 1;
            let partner = format!("P-{:04}", (i * 7) % u64::from(shape.partners.max(1)));
            let article = format!("A-{:03}", (i * 3) % u64::from(shape.articles.max(1)));
            let plate = format!(
                "OS-{} {}",
                (b'A' + (i % 26) as u8) as char,
                (i * 13) % u64::from(shape.plates.max(1))
            );
            let offset_s = span_s - (i as i64 * span_s / shape.count.max(1) as i64);
            let first_at = (end - chrono::Duration::seconds(offset_s))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let second_at = (end - chrono::Duration::seconds(offset_s - 600))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let gross = 30_000 + (i % 10_000) as i64;
            let tare = 14_000 + (i % 1_000) as i64;
            let ticket = serde_json::json!({
                "ticket_no": ticket_no, "device_id": format!("box-{device:03}"), "plate": plate,
                "direction": "intake", "state": "complete",
                "partner": {"id": partner, "name": format!("Partner {partner}")},
                "article": {"id": article, "name": format!("Artikel {article}")},
                "first": {"scale_id": "scale-1", "weight": {"value": gross, "decimals": 0, "unit": "kg"},
                    "alibi_id": format!("{}", i * 2), "weighed_at": first_at, "source": "scale"},
                "second": {"scale_id": "scale-1", "weight": {"value": tare, "decimals": 0, "unit": "kg"},
                    "alibi_id": format!("{}", i * 2 + 1), "weighed_at": second_at, "source": "scale"},
                "gross": {"value": gross, "decimals": 0, "unit": "kg"},
                "tare": {"value": tare, "decimals": 0, "unit": "kg"},
                "net": {"value": gross - tare, "decimals": 0, "unit": "kg"},
                "legal_for_trade": true, "quality": [], "prints": 0,
            });
            stmt.execute(params![
                format!("box-{device:03}"),
                ticket_no as i64,
                plate,
                gross,
                format!("{}", i * 2),
                first_at,
                (ticket_no * 2 - 1) as i64,
                tare,
                format!("{}", i * 2 + 1),
                second_at,
                (ticket_no * 2) as i64,
                gross - tare,
                ticket.to_string(),
                format!("SITE-{}", device % shape.sites.max(1)),
                partner,
                article,
                (gross - tare) as f64,
            ])?;
        }
        drop(stmt);
        tx.commit()?;
        conn.execute_batch("ANALYZE")?;
        Ok(())
    }
}
