//! Cash sales at the box (feed and seed sales, small grain purchases) as
//! records, the DSFinV-K `Kassenbeleg-V1` process data the TSE signs, and
//! the daily closing (Kassenabschluss) an audit export is cut into.
//!
//! Money is in cents (`i64`), never floats. VAT keys are DSFinV-K's
//! `UST_SCHLUESSEL` (Anlage 2): 1 general rate, 2 reduced rate, 3 and 4 the
//! § 24 average rates, 5 to 8 zero-rated; they map onto the five fixed
//! amount slots of `Kassenbeleg-V1`.

use serde::{Deserialize, Serialize};

/// `kind` of a finished (or aborted) cash sale.
pub const KIND_CASH_SALE: &str = "cash.sale";
/// `kind` of a TSE outage: written when it starts and again when it ends.
pub const KIND_TSE_OUTAGE: &str = "tse.outage";
/// `kind` of a daily closing (Kassenabschluss, Z report).
pub const KIND_CASH_CLOSING: &str = "cash.closing";
/// `kind` of the record describing the TSE a cash point signs with: written
/// when the box first uses a TSE (and again when its serial changes).
pub const KIND_TSE_INFO: &str = "tse.info";

/// `processType` of receipts (DSFinV-K Anhang I).
pub const PROCESS_TYPE_RECEIPT: &str = "Kassenbeleg-V1";

/// Most lines on one receipt.
pub const MAX_SALE_LINES: usize = 200;
/// Most payments on one receipt.
pub const MAX_SALE_PAYMENTS: usize = 10;
/// Largest absolute amount of one line or payment, in cents (10 million euros).
pub const MAX_AMOUNT_CENTS: i64 = 1_000_000_000;

/// BON_TYP of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptType {
    /// A sale (also a storno: a new receipt with negated amounts).
    Beleg,
    /// A sale aborted before payment.
    AVBelegabbruch,
    /// A training receipt.
    AVTraining,
}

impl ReceiptType {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptType::Beleg => "Beleg",
            ReceiptType::AVBelegabbruch => "AVBelegabbruch",
            ReceiptType::AVTraining => "AVTraining",
        }
    }
}

/// One line of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleLine {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article_id: Option<String>,
    /// Quantity in thousandths (DSFinV-K MENGE has 3 decimals): 2.5 kg = 2500.
    pub quantity_milli: i64,
    /// Unit of the quantity, e.g. `kg`, `Stk`.
    pub unit: String,
    /// Gross price of one unit, cents.
    pub unit_price_cents: i64,
    /// Gross amount of the line, cents (negative on a storno).
    pub gross_cents: i64,
    /// DSFinV-K UST_SCHLUESSEL.
    pub vat_key: u16,
}

/// Payment types (DSFinV-K ZAHLART_TYP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentType {
    Bar,
    Unbar,
    ECKarte,
    Kreditkarte,
    ElZahlungsdienstleister,
    Guthabenkarte,
}

impl PaymentType {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentType::Bar => "Bar",
            PaymentType::Unbar => "Unbar",
            PaymentType::ECKarte => "ECKarte",
            PaymentType::Kreditkarte => "Kreditkarte",
            PaymentType::ElZahlungsdienstleister => "ElZahlungsdienstleister",
            PaymentType::Guthabenkarte => "Guthabenkarte",
        }
    }

    /// Process data knows only cash and non-cash.
    pub fn is_cash(self) -> bool {
        self == PaymentType::Bar
    }
}

/// One payment of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    #[serde(rename = "type")]
    pub kind: PaymentType,
    pub amount_cents: i64,
}

/// The TSE's part of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleTse {
    pub serial_hex: String,
    pub transaction_number: u64,
    /// Signature counter of the finish log.
    pub signature_counter: u64,
    /// Log times of the start and finish logs, Unix seconds.
    pub start_unix: i64,
    pub finish_unix: i64,
    /// The finish log's signature, base64 of `r‖s`.
    pub signature_base64: String,
    pub public_key_base64: String,
    pub signature_algorithm: String,
    pub time_format: String,
    /// Every log message of the transaction (start, updates, finish), DER
    /// base64, for central to verify; empty when the TSE does not give them out.
    #[serde(default)]
    pub log_messages_base64: Vec<String>,
    /// The DSFinV-K receipt QR code content (`V0;…`).
    pub qr_code: String,
    /// Whether the signing TSE said it is certified (the software TSE is
    /// not), so the receipt is marked by the TSE that signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified: Option<bool>,
}

/// A finished cash sale: everything the receipt and DSFinV-K need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CashSale {
    /// The ERS serial (KASSE_SERIENNR, the TSE client id).
    pub cash_point: String,
    /// BON_NR: per cash point, from 1, without gaps.
    pub receipt_no: u64,
    pub receipt_type: ReceiptType,
    /// Set on a storno: the receipt it reverses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancels_receipt_no: Option<u64>,
    /// RFC 3339 UTC, ERS clock.
    pub started_at: String,
    pub finished_at: String,
    pub operator: String,
    /// The weighing ticket the sale belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_no: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<Payment>,
    /// `processType` and `processData` exactly as given to the TSE.
    pub process_type: String,
    pub process_data: String,
    /// `None` when the TSE failed: the receipt says so (AEAO zu § 146a).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tse: Option<SaleTse>,
    /// Why the TSE did not sign (DSFinV-K TSE_TA_FEHLER, at most 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tse_error: Option<String>,
}

/// A TSE outage: the first record when it starts (no `ended_at`), a second
/// with the same `outage_id` when the TSE works again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TseOutage {
    pub outage_id: String,
    pub cash_point: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tse_serial_hex: Option<String>,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub cause: String,
}

/// A daily closing of one cash point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CashClosing {
    pub cash_point: String,
    /// Z_NR: from 1, ascending, never reset.
    pub z_nr: u64,
    /// Z_ERSTELLUNG, RFC 3339 UTC.
    pub created_at: String,
    /// Z_BUCHUNGSTAG, `YYYY-MM-DD`.
    pub business_day: String,
    /// The receipts it closes (first and last BON_NR); `None` on a day without sales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_receipt_no: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_receipt_no: Option<u64>,
    /// Totals of the closed receipts, cents.
    pub total_gross_cents: i64,
    pub total_cash_cents: i64,
}

/// VAT rates in hundredths of a percent for the keys in use (Anlage 2).
pub fn vat_rate_basis_points(vat_key: u16) -> Option<u32> {
    match vat_key {
        1 => Some(1900),
        2 => Some(700),
        3 => Some(1070),
        4 => Some(550),
        5..=8 => Some(0),
        _ => None,
    }
}

/// Splits a gross amount into net and VAT for a key, rounding the net half
/// away from zero; net + VAT is always exactly the gross.
pub fn split_vat(gross_cents: i64, vat_key: u16) -> Option<(i64, i64)> {
    let rate = i128::from(vat_rate_basis_points(vat_key)?);
    let scaled = i128::from(gross_cents) * 10_000;
    let divisor = 10_000 + rate;
    let net = (scaled + scaled.signum() * divisor / 2) / divisor;
    let net = net as i64;
    Some((net, gross_cents - net))
}

/// The TSE a cash point signs with, as central needs it for verification,
/// the TAR export and DSFinV-K `tse.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TseDescription {
    pub cash_point: String,
    pub serial_hex: String,
    pub public_key_base64: String,
    pub signature_algorithm: String,
    pub time_format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_base64: Option<String>,
    /// False for the software TSE.
    pub certified: bool,
    pub description: String,
    pub manufacturer: String,
    pub version: String,
}

/// The `Kassenbeleg-V1` amount slot (0-based) of a VAT key.
pub fn vat_slot(vat_key: u16) -> Option<usize> {
    match vat_key {
        1..=4 => Some(usize::from(vat_key - 1)),
        5..=8 => Some(4),
        _ => None,
    }
}

/// Cents as `d.dd` with `.` and no grouping (process data, QR).
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A sale that cannot be recorded; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SaleError {
    pub field: String,
    pub problem: String,
}

fn sale_error(field: impl Into<String>, problem: impl Into<String>) -> SaleError {
    SaleError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks lines and payments: sizes, amounts, VAT keys, a line's amount
/// equal to quantity × unit price, and payments summing to the total.
pub fn check_sale(lines: &[SaleLine], payments: &[Payment]) -> Result<(), SaleError> {
    if lines.is_empty() {
        return Err(sale_error("lines", "a receipt needs at least one line"));
    }
    if lines.len() > MAX_SALE_LINES {
        return Err(sale_error(
            "lines",
            format!("at most {MAX_SALE_LINES} lines"),
        ));
    }
    if payments.len() > MAX_SALE_PAYMENTS {
        return Err(sale_error(
            "payments",
            format!("at most {MAX_SALE_PAYMENTS} payments"),
        ));
    }
    for (i, line) in lines.iter().enumerate() {
        let field = |name: &str| format!("lines[{i}].{name}");
        if line.text.trim().is_empty() || line.text.chars().count() > 255 {
            return Err(sale_error(field("text"), "must be 1 to 255 characters"));
        }
        if vat_slot(line.vat_key).is_none() {
            return Err(sale_error(
                field("vat_key"),
                format!("{} is not a DSFinV-K VAT key in use (1 to 8)", line.vat_key),
            ));
        }
        for (name, value) in [
            ("gross_cents", line.gross_cents),
            ("unit_price_cents", line.unit_price_cents),
            ("quantity_milli", line.quantity_milli),
        ] {
            if value.abs() > MAX_AMOUNT_CENTS {
                return Err(sale_error(field(name), "is out of range"));
            }
        }
        // Round half away from zero, as a till does.
        let product = i128::from(line.quantity_milli) * i128::from(line.unit_price_cents);
        let expected = (product + product.signum() * 500) / 1000;
        if i128::from(line.gross_cents) != expected {
            return Err(sale_error(
                field("gross_cents"),
                format!(
                    "is {} but quantity × unit price gives {}",
                    format_cents(line.gross_cents),
                    format_cents(expected as i64)
                ),
            ));
        }
    }
    let total: i64 = lines.iter().map(|l| l.gross_cents).sum();
    let paid: i64 = payments.iter().map(|p| p.amount_cents).sum();
    if payments
        .iter()
        .any(|p| p.amount_cents.abs() > MAX_AMOUNT_CENTS)
    {
        return Err(sale_error("payments", "an amount is out of range"));
    }
    if paid != total {
        return Err(sale_error(
            "payments",
            format!(
                "add up to {} but the receipt is {}",
                format_cents(paid),
                format_cents(total)
            ),
        ));
    }
    Ok(())
}

/// The `Kassenbeleg-V1` process data: `<type>^<5 gross amounts by VAT
/// slot>^<payments>`, payments as `<amount>:Bar|Unbar`, cash first, each
/// class summed. Lines must have passed [`check_sale`].
pub fn process_data(receipt_type: ReceiptType, lines: &[SaleLine], payments: &[Payment]) -> String {
    let mut slots = [0i64; 5];
    for line in lines {
        if let Some(slot) = vat_slot(line.vat_key) {
            slots[slot] += line.gross_cents;
        }
    }
    let amounts: Vec<String> = slots.iter().map(|c| format_cents(*c)).collect();
    let cash: i64 = payments
        .iter()
        .filter(|p| p.kind.is_cash())
        .map(|p| p.amount_cents)
        .sum();
    let non_cash: i64 = payments
        .iter()
        .filter(|p| !p.kind.is_cash())
        .map(|p| p.amount_cents)
        .sum();
    let mut paid = Vec::new();
    if payments.iter().any(|p| p.kind.is_cash()) {
        paid.push(format!("{}:Bar", format_cents(cash)));
    }
    if payments.iter().any(|p| !p.kind.is_cash()) {
        paid.push(format!("{}:Unbar", format_cents(non_cash)));
    }
    format!(
        "{}^{}^{}",
        receipt_type.as_str(),
        amounts.join("_"),
        paid.join("_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(gross: i64, vat_key: u16) -> SaleLine {
        SaleLine {
            text: "Futterweizen".into(),
            article_id: None,
            quantity_milli: 1000,
            unit: "Stk".into(),
            unit_price_cents: gross,
            gross_cents: gross,
            vat_key,
        }
    }

    fn pay(kind: PaymentType, amount_cents: i64) -> Payment {
        Payment { kind, amount_cents }
    }

    /// The DSFinV-K example amounts and the real fiskaly export's process data.
    #[test]
    fn process_data_matches_the_documented_examples() {
        let lines = [line(7533, 1), line(799, 2)];
        let payments = [pay(PaymentType::Bar, 1000), pay(PaymentType::ECKarte, 7332)];
        check_sale(&lines, &payments).unwrap();
        assert_eq!(
            process_data(ReceiptType::Beleg, &lines, &payments),
            "Beleg^75.33_7.99_0.00_0.00_0.00^10.00:Bar_73.32:Unbar"
        );
        let lines = [line(101_085, 1)];
        let payments = [pay(PaymentType::Bar, 101_085)];
        assert_eq!(
            process_data(ReceiptType::Beleg, &lines, &payments),
            "Beleg^1010.85_0.00_0.00_0.00_0.00^1010.85:Bar"
        );
        // A storno is a new receipt with negative amounts; zero-rated keys share slot 5.
        let lines = [line(-1250, 6), line(-50, 5)];
        let payments = [pay(PaymentType::Bar, -1300)];
        assert_eq!(
            process_data(ReceiptType::Beleg, &lines, &payments),
            "Beleg^0.00_0.00_0.00_0.00_-13.00^-13.00:Bar"
        );
    }

    #[test]
    fn bad_sales_name_the_field() {
        let cases: Vec<(Vec<SaleLine>, Vec<Payment>, &str)> = vec![
            (vec![], vec![], "lines: a receipt needs"),
            (
                vec![line(100, 9)],
                vec![pay(PaymentType::Bar, 100)],
                "lines[0].vat_key: 9 is not",
            ),
            (
                vec![line(100, 1)],
                vec![pay(PaymentType::Bar, 90)],
                "payments: add up to 0.90 but the receipt is 1.00",
            ),
            (
                vec![SaleLine {
                    quantity_milli: 2500,
                    unit_price_cents: 333,
                    gross_cents: 832,
                    ..line(0, 1)
                }],
                vec![pay(PaymentType::Bar, 832)],
                "lines[0].gross_cents: is 8.32 but quantity × unit price gives 8.33",
            ),
        ];
        for (lines, payments, expected) in cases {
            let error = check_sale(&lines, &payments).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn vat_splits_add_up_exactly() {
        assert_eq!(split_vat(119, 1), Some((100, 19)));
        assert_eq!(split_vat(107, 2), Some((100, 7)));
        assert_eq!(split_vat(-119, 1), Some((-100, -19)));
        assert_eq!(split_vat(1000, 5), Some((1000, 0)));
        assert_eq!(split_vat(100, 99), None);
        for gross in -10_000..10_000 {
            for key in [1, 2, 3, 4] {
                let (net, vat) = split_vat(gross, key).unwrap();
                assert_eq!(net + vat, gross);
            }
        }
    }

    #[test]
    fn cents_format_without_floats() {
        assert_eq!(format_cents(0), "0.00");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-1), "-0.01");
        assert_eq!(format_cents(123_456_789), "1234567.89");
        assert_eq!(format_cents(i64::MIN + 1).len(), 21);
    }
}
