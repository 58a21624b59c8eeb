//! The DSFinV-K 2.4 export of cash point closings: a pure writer from the
//! edge boxes' records ([`CashClosing`], [`CashSale`]) plus master data to
//! `index.xml` and the 20 CSV files, and [`zip`] to pack them.
//!
//! Format (DSFinV-K 2.4, GDPdU `index.xml`): `;` between columns, CRLF after
//! every record, UTF-8 without BOM, a header row, decimal comma and no digit
//! grouping, amounts with 2 decimals (5 where the table defines 5),
//! quantities with 3, booleans `0`/`1`. Column names, order, decimals and
//! maximum lengths are those of pretix's `dsfinvk` models (the official
//! `index.xml` order). Every non-empty text value is enclosed in `"` with
//! inner quotes doubled; empty values are written as nothing, so "no value"
//! looks the same in text and number columns.
//!
//! Choices where DSFinV-K or its tooling leaves room, and why:
//! - Times (`Z_ERSTELLUNG`, `BON_START`, `BON_ENDE`, `REF_DATUM`) are written
//!   pretix-style as `YYYY-MM-DDThh:mm:ss` without an offset, and they are
//!   UTC: the records carry UTC, central has no time zone database, and the
//!   TSE times beside them (`TSE_TA_START`, `TSE_TA_ENDE`,
//!   `YYYY-MM-DDThh:mm:ss.fffZ`) are UTC too, so one export has one clock.
//! - `index.xml` declares those time columns as `AlphaNumeric`, not `Date`,
//!   declares integer columns as `<Numeric/>` without `<Accuracy>` (the
//!   GDPdU default is 0), and lists no `VariablePrimaryKey`s. pretix's
//!   `validate.py`, our independent structural check, raises on `Date` and
//!   primary keys and would demand a decimal comma for an `Accuracy` of 0;
//!   the GDPdU DTD allows a table of plain `VariableColumn`s. The time
//!   formats are checked by `tests/peers/dsfinvk_check.py` instead.
//! - The DTD `gdpdu-01-09-2004.dtd` named in the DOCTYPE is not part of the
//!   output: only the official copy should be shipped, and a parser does not
//!   need it.
//! - Identifiers, keys, TSE data and master data longer than their column
//!   are an error (a cut serial or signature is worthless); free text typed
//!   at the box (customer and operator names, article text, unit, TSE error)
//!   is cut to the column and its line breaks become spaces, so one long
//!   name does not block an audit export.
//! - The closing totals (`businesscases`, `payment`, `cash_per_currency`,
//!   `Z_SE_*`) add up receipts of type `Beleg` only: training and aborted
//!   receipts are recorded but are no revenue. They must match the totals
//!   in the closing record, or the export fails.
//! - VAT is split with [`split_vat`] (net rounded half away from zero, VAT =
//!   gross − net), on the per-key sum for `transactions_vat.csv` (the Bonkopf
//!   equals the printed receipt, which splits the same way) and per line
//!   for `lines_vat.csv`/`itemamounts.csv`; `businesscases.csv` sums the
//!   lines.
//! - A sale without TSE (outage) gets a `transactions_tse.csv` row with
//!   empty TSE fields (`TSE_ID`, `TSE_TANR`, times, counter, signature),
//!   the ERS's `processType`/`processData` it wanted signed, and the reason
//!   in `TSE_TA_FEHLER`.
//! - A storno's `references.csv` row names the cancelled receipt's closing
//!   (`REF_Z_NR`, `REF_DATUM`) only when that receipt is part of this export;
//!   otherwise those columns stay empty rather than guessed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Cursor, Write};

use chrono::{DateTime, NaiveDate, Utc};
use valeo_records::cash::{
    CashClosing, CashSale, MAX_AMOUNT_CENTS, MAX_SALE_LINES, MAX_SALE_PAYMENTS, PaymentType,
    ReceiptType, split_vat, vat_rate_basis_points,
};

/// `TAXONOMIE_VERSION` written into `cashpointclosing.csv`.
pub const TAXONOMY_VERSION: &str = "2.4";
/// Name of the GDPdU description file.
pub const INDEX_FILE: &str = "index.xml";

/// DSFinV-K splits the certificate into columns of this many characters.
const CERTIFICATE_CHUNK: usize = 1000;
/// `BON_TYP` whose amounts count towards the closing totals.
const REVENUE: ReceiptType = ReceiptType::Beleg;
/// The only business case a box records.
const GV_TYP_SALE: &str = "Umsatz";

/// The company that runs the cash points (`cashpointclosing.csv`,
/// `location.csv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    pub name: String,
    pub street: String,
    pub zip: String,
    pub city: String,
    /// ISO 3166 alpha-3, e.g. `DEU`.
    pub country: String,
    /// Steuernummer; at least one of it and `vat_id` is required.
    pub tax_number: Option<String>,
    pub vat_id: Option<String>,
}

/// The cash register (`cashregister.csv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashRegister {
    /// `KASSE_SERIENNR`: the cash point id (`Z_KASSE_ID`, the TSE client id).
    pub serial: String,
    pub brand: String,
    pub model: String,
    pub software_brand: String,
    pub software_version: String,
    /// ISO 4217, `EUR`.
    pub base_currency: String,
}

/// A TSE the cash point signed with in the closing (`tse.csv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TseMaster {
    /// `TSE_ID`: a number local to the closing that sales refer to.
    pub tse_id: u64,
    pub serial_hex: String,
    pub signature_algorithm: String,
    pub time_format: String,
    /// `UTF-8` or `ASCII`.
    pub pd_encoding: String,
    pub public_key_base64: String,
    pub certificate_base64: String,
}

/// One closing with everything its rows need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingExport {
    pub closing: CashClosing,
    pub company: Company,
    pub register: CashRegister,
    pub tses: Vec<TseMaster>,
    /// Every receipt of the closing, in any order.
    pub sales: Vec<CashSale>,
}

/// Why an export could not be written; the message names the closing,
/// receipt, file or column at fault.
#[derive(Debug, thiserror::Error)]
pub enum DsfinvkError {
    /// The input is inconsistent or incomplete.
    #[error("{context}: {problem}")]
    Invalid { context: String, problem: String },
    /// A value does not fit its column.
    #[error("{file} line {line}, column {column}: {problem}")]
    Field {
        file: &'static str,
        /// Line in the file; the header is line 1.
        line: usize,
        column: &'static str,
        problem: String,
    },
    #[error("cannot build the ZIP archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("cannot build the ZIP archive: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(context: &str, problem: impl Into<String>) -> DsfinvkError {
    DsfinvkError::Invalid {
        context: context.to_string(),
        problem: problem.into(),
    }
}

/// How a column is declared in `index.xml` and written to the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Quoted text, with the model's maximum length if it has one.
    Text(Option<usize>),
    /// A time as text (see the module doc for why not `Date`).
    Time,
    /// A number with this many decimals.
    Number(u8),
    /// `0` or `1`, declared as an integer.
    Flag,
}

const fn t(max: usize) -> Kind {
    Kind::Text(Some(max))
}
const fn n(places: u8) -> Kind {
    Kind::Number(places)
}
const TEXT: Kind = Kind::Text(None);
const TIME: Kind = Kind::Time;
const FLAG: Kind = Kind::Flag;

#[derive(Debug)]
struct Table {
    file: &'static str,
    /// The logical name (`<Name>` in `index.xml`).
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
}

static LINES: Table = Table {
    file: "lines.csv",
    name: "Bonpos",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("POS_ZEILE", t(50)),
        ("GUTSCHEIN_NR", t(50)),
        ("ARTIKELTEXT", t(255)),
        ("POS_TERMINAL_ID", t(50)),
        ("GV_TYP", t(30)),
        ("GV_NAME", t(40)),
        ("INHAUS", FLAG),
        ("P_STORNO", FLAG),
        ("AGENTUR_ID", n(0)),
        ("ART_NR", t(50)),
        ("GTIN", t(50)),
        ("WARENGR_ID", t(40)),
        ("WARENGR", t(50)),
        ("MENGE", n(3)),
        ("FAKTOR", n(3)),
        ("EINHEIT", t(50)),
        ("STK_BR", n(5)),
    ],
};

static LINES_VAT: Table = Table {
    file: "lines_vat.csv",
    name: "Bonpos_USt",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("POS_ZEILE", t(50)),
        ("UST_SCHLUESSEL", n(0)),
        ("POS_BRUTTO", n(5)),
        ("POS_NETTO", n(5)),
        ("POS_UST", n(5)),
    ],
};

static ITEM_AMOUNTS: Table = Table {
    file: "itemamounts.csv",
    name: "Bonpos_Preisfindung",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("POS_ZEILE", t(50)),
        ("TYP", t(20)),
        ("UST_SCHLUESSEL", n(0)),
        ("PF_BRUTTO", n(5)),
        ("PF_NETTO", n(5)),
        ("PF_UST", n(5)),
    ],
};

static SUBITEMS: Table = Table {
    file: "subitems.csv",
    name: "Bonpos_Zusatzinfo",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("POS_ZEILE", t(50)),
        ("ZI_ART_NR", t(50)),
        ("ZI_GTIN", t(50)),
        ("ZI_NAME", t(50)),
        ("ZI_WARENGR_ID", t(40)),
        ("ZI_WARENGR", t(50)),
        ("ZI_MENGE", n(3)),
        ("ZI_FAKTOR", n(3)),
        ("ZI_EINHEIT", t(50)),
        ("ZI_UST_SCHLUESSEL", n(0)),
        ("ZI_BASISPREIS_BRUTTO", n(5)),
        ("ZI_BASISPREIS_NETTO", n(5)),
        ("ZI_BASISPREIS_UST", n(5)),
    ],
};

static TRANSACTIONS: Table = Table {
    file: "transactions.csv",
    name: "Bonkopf",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("BON_NR", n(0)),
        ("BON_TYP", t(30)),
        ("BON_NAME", t(60)),
        ("TERMINAL_ID", t(50)),
        ("BON_STORNO", FLAG),
        ("BON_START", TIME),
        ("BON_ENDE", TIME),
        ("BEDIENER_ID", t(50)),
        ("BEDIENER_NAME", t(50)),
        ("UMS_BRUTTO", n(2)),
        ("KUNDE_NAME", t(50)),
        ("KUNDE_ID", t(50)),
        ("KUNDE_TYP", t(50)),
        ("KUNDE_STRASSE", t(60)),
        ("KUNDE_PLZ", t(10)),
        ("KUNDE_ORT", t(62)),
        ("KUNDE_LAND", t(3)),
        ("KUNDE_USTID", t(15)),
        ("BON_NOTIZ", t(255)),
    ],
};

static TRANSACTIONS_VAT: Table = Table {
    file: "transactions_vat.csv",
    name: "Bonkopf_USt",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("UST_SCHLUESSEL", n(0)),
        ("BON_BRUTTO", n(5)),
        ("BON_NETTO", n(5)),
        ("BON_UST", n(5)),
    ],
};

static ALLOCATION_GROUPS: Table = Table {
    file: "allocation_groups.csv",
    name: "Bonkopf_AbrKreis",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("ABRECHNUNGSKREIS", t(50)),
    ],
};

static DATA_PAYMENT: Table = Table {
    file: "datapayment.csv",
    name: "Bonkopf_Zahlarten",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("ZAHLART_TYP", t(25)),
        ("ZAHLART_NAME", t(60)),
        ("ZAHLWAEH_CODE", t(3)),
        ("ZAHLWAEH_BETRAG", n(2)),
        ("BASISWAEH_BETRAG", n(2)),
    ],
};

static REFERENCES: Table = Table {
    file: "references.csv",
    name: "Bon_Referenzen",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("POS_ZEILE", TEXT),
        ("REF_TYP", t(20)),
        ("REF_NAME", t(40)),
        ("REF_DATUM", TIME),
        ("REF_Z_KASSE_ID", t(50)),
        ("REF_Z_NR", n(0)),
        ("REF_BON_ID", t(40)),
    ],
};

static TRANSACTIONS_TSE: Table = Table {
    file: "transactions_tse.csv",
    name: "TSE_Transaktionen",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("BON_ID", t(40)),
        ("TSE_ID", n(0)),
        ("TSE_TANR", n(0)),
        ("TSE_TA_START", TEXT),
        ("TSE_TA_ENDE", TEXT),
        ("TSE_TA_VORGANGSART", t(30)),
        ("TSE_TA_SIGZ", n(0)),
        ("TSE_TA_SIG", t(512)),
        ("TSE_TA_FEHLER", t(200)),
        ("TSE_VORGANGSDATEN", TEXT),
    ],
};

static CASH_POINT_CLOSING: Table = Table {
    file: "cashpointclosing.csv",
    name: "Stamm_Abschluss",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("Z_BUCHUNGSTAG", TEXT),
        ("TAXONOMIE_VERSION", t(10)),
        ("Z_START_ID", t(40)),
        ("Z_ENDE_ID", t(40)),
        ("NAME", t(60)),
        ("STRASSE", t(60)),
        ("PLZ", t(10)),
        ("ORT", t(62)),
        ("LAND", t(3)),
        ("STNR", t(20)),
        ("USTID", t(15)),
        ("Z_SE_ZAHLUNGEN", n(2)),
        ("Z_SE_BARZAHLUNGEN", n(2)),
    ],
};

static LOCATION: Table = Table {
    file: "location.csv",
    name: "Stamm_Orte",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("LOC_NAME", t(60)),
        ("LOC_STRASSE", t(60)),
        ("LOC_PLZ", t(10)),
        ("LOC_ORT", t(62)),
        ("LOC_LAND", t(3)),
        ("LOC_USTID", t(15)),
    ],
};

static CASH_REGISTER: Table = Table {
    file: "cashregister.csv",
    name: "Stamm_Kassen",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("KASSE_BRAND", t(50)),
        ("KASSE_MODELL", t(50)),
        ("KASSE_SERIENNR", t(70)),
        ("KASSE_SW_BRAND", t(50)),
        ("KASSE_SW_VERSION", t(50)),
        ("KASSE_BASISWAEH_CODE", t(3)),
        ("KEINE_UST_ZUORDNUNG", FLAG),
    ],
};

static SLAVES: Table = Table {
    file: "slaves.csv",
    name: "Stamm_Terminals",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("TERMINAL_ID", t(50)),
        ("TERMINAL_BRAND", t(50)),
        ("TERMINAL_MODELL", t(50)),
        ("TERMINAL_SERIENNR", t(70)),
        ("TERMINAL_SW_BRAND", t(50)),
        ("TERMINAL_SW_VERSION", t(50)),
    ],
};

static AGENCIES: Table = Table {
    file: "pa.csv",
    name: "Stamm_Agenturen",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("AGENTUR_ID", n(0)),
        ("AGENTUR_NAME", t(60)),
        ("AGENTUR_STRASSE", t(60)),
        ("AGENTUR_PLZ", t(10)),
        ("AGENTUR_ORT", t(62)),
        ("AGENTUR_LAND", t(3)),
        ("AGENTUR_STNR", t(20)),
        ("AGENTUR_USTID", t(15)),
    ],
};

static VAT: Table = Table {
    file: "vat.csv",
    name: "Stamm_USt",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("UST_SCHLUESSEL", n(0)),
        ("UST_SATZ", n(2)),
        ("UST_BESCHR", t(55)),
    ],
};

static TSE: Table = Table {
    file: "tse.csv",
    name: "Stamm_TSE",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("TSE_ID", n(0)),
        ("TSE_SERIAL", t(68)),
        ("TSE_SIG_ALGO", t(30)),
        ("TSE_ZEITFORMAT", TEXT),
        ("TSE_PD_ENCODING", t(5)),
        ("TSE_PUBLIC_KEY", t(512)),
        ("TSE_ZERTIFIKAT_I", t(1000)),
        ("TSE_ZERTIFIKAT_II", t(1000)),
        ("TSE_ZERTIFIKAT_III", t(1000)),
        ("TSE_ZERTIFIKAT_IV", t(1000)),
        ("TSE_ZERTIFIKAT_V", t(1000)),
        ("TSE_ZERTIFIKAT_VI", t(1000)),
        ("TSE_ZERTIFIKAT_VII", t(1000)),
    ],
};

static BUSINESS_CASES: Table = Table {
    file: "businesscases.csv",
    name: "Z_GV_Typ",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("GV_TYP", t(30)),
        ("GV_NAME", t(40)),
        ("AGENTUR_ID", n(0)),
        ("UST_SCHLUESSEL", n(0)),
        ("Z_UMS_BRUTTO", n(5)),
        ("Z_UMS_NETTO", n(5)),
        ("Z_UST", n(5)),
    ],
};

static PAYMENT: Table = Table {
    file: "payment.csv",
    name: "Z_Zahlart",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("ZAHLART_TYP", t(25)),
        ("ZAHLART_NAME", t(60)),
        ("Z_ZAHLART_BETRAG", n(2)),
    ],
};

static CASH_PER_CURRENCY: Table = Table {
    file: "cash_per_currency.csv",
    name: "Z_Waehrungen",
    columns: &[
        ("Z_KASSE_ID", t(50)),
        ("Z_ERSTELLUNG", TIME),
        ("Z_NR", n(0)),
        ("ZAHLART_WAEH", t(3)),
        ("ZAHLART_BETRAG_WAEH", n(2)),
    ],
};

/// All tables in the official `index.xml` order.
static TABLES: [&Table; 20] = [
    &LINES,
    &LINES_VAT,
    &ITEM_AMOUNTS,
    &SUBITEMS,
    &TRANSACTIONS,
    &TRANSACTIONS_VAT,
    &ALLOCATION_GROUPS,
    &DATA_PAYMENT,
    &REFERENCES,
    &TRANSACTIONS_TSE,
    &CASH_POINT_CLOSING,
    &LOCATION,
    &CASH_REGISTER,
    &SLAVES,
    &AGENCIES,
    &VAT,
    &TSE,
    &BUSINESS_CASES,
    &PAYMENT,
    &CASH_PER_CURRENCY,
];

/// The three columns every row starts with.
#[derive(Debug, Clone)]
struct ClosingKey {
    cash_point: String,
    created: String,
    z_nr: String,
}

/// The records of every table, by file name, each in column order.
#[derive(Debug, Default)]
struct Sheets {
    records: HashMap<&'static str, Vec<Vec<String>>>,
}

impl Sheets {
    /// Adds a record: the closing key plus `cells` by column name; columns
    /// not named stay empty.
    fn push(
        &mut self,
        table: &'static Table,
        key: &ClosingKey,
        cells: &[(&str, String)],
    ) -> Result<(), DsfinvkError> {
        let mut record = vec![String::new(); table.columns.len()];
        record[0].clone_from(&key.cash_point);
        record[1].clone_from(&key.created);
        record[2].clone_from(&key.z_nr);
        for (name, value) in cells {
            let index = table
                .columns
                .iter()
                .position(|(column, _)| column == name)
                .ok_or_else(|| invalid(table.file, format!("has no column {name}")))?;
            record[index].clone_from(value);
        }
        self.records.entry(table.file).or_default().push(record);
        Ok(())
    }

    /// The CSV file: header, then one CRLF-terminated line per record.
    fn render(&self, table: &'static Table) -> Result<Vec<u8>, DsfinvkError> {
        let mut out = String::new();
        let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        out.push_str(&names.join(";"));
        out.push_str("\r\n");
        let records = self.records.get(table.file).map(Vec::as_slice);
        for (i, record) in records.unwrap_or_default().iter().enumerate() {
            for (j, (&(column, kind), value)) in table.columns.iter().zip(record).enumerate() {
                if j > 0 {
                    out.push(';');
                }
                let field_error = |problem: String| DsfinvkError::Field {
                    file: table.file,
                    line: i + 2,
                    column,
                    problem,
                };
                check_cell(kind, value).map_err(field_error)?;
                match kind {
                    Kind::Text(_) | Kind::Time if !value.is_empty() => {
                        out.push('"');
                        out.push_str(&value.replace('"', "\"\""));
                        out.push('"');
                    }
                    _ => out.push_str(value),
                }
            }
            out.push_str("\r\n");
        }
        Ok(out.into_bytes())
    }
}

/// Whether a value fits its column; the error says why not.
fn check_cell(kind: Kind, value: &str) -> Result<(), String> {
    match kind {
        Kind::Text(max) => {
            if let Some(c) = value.chars().find(|c| c.is_control()) {
                return Err(format!(
                    "{value:?} contains the control character U+{:04X}, which a CSV record cannot hold",
                    u32::from(c)
                ));
            }
            let length = value.chars().count();
            match max {
                Some(max) if length > max => Err(format!(
                    "{value:?} is {length} characters long, DSFinV-K allows {max}"
                )),
                _ => Ok(()),
            }
        }
        Kind::Time => {
            if value.is_empty() || is_local_less_time(value) {
                Ok(())
            } else {
                Err(format!("{value:?} is not YYYY-MM-DDThh:mm:ss"))
            }
        }
        Kind::Number(places) => {
            if value.is_empty() || is_decimal(value, places) {
                Ok(())
            } else {
                Err(format!("{value:?} is not a number with {places} decimals"))
            }
        }
        Kind::Flag => {
            if matches!(value, "" | "0" | "1") {
                Ok(())
            } else {
                Err(format!("{value:?} is not 0 or 1"))
            }
        }
    }
}

/// `-?digits(,digits{places})?` with exactly `places` decimals.
fn is_decimal(value: &str, places: u8) -> bool {
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let (int, frac) = match unsigned.split_once(',') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && match frac {
            None => places == 0,
            Some(frac) => places > 0 && frac.len() == usize::from(places) && digits(frac),
        }
}

fn is_local_less_time(value: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").is_ok() && value.len() == 19
}

/// Cents with a decimal comma and `places` (2 or more) decimals.
fn money(cents: i64, places: u8) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let zeros = "0".repeat(usize::from(places.saturating_sub(2)));
    format!("{sign}{},{:02}{zeros}", abs / 100, abs % 100)
}

/// Thousandths with a decimal comma and 3 decimals.
fn quantity(milli: i64) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let abs = milli.unsigned_abs();
    format!("{sign}{},{:03}", abs / 1000, abs % 1000)
}

/// A VAT rate from basis points, `19,00`.
fn percent(basis_points: u32) -> String {
    format!("{},{:02}", basis_points / 100, basis_points % 100)
}

/// Free text typed at the box: line breaks and other control characters
/// become spaces and the text is cut to `max` characters.
fn clip(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// An RFC 3339 time as UTC `YYYY-MM-DDThh:mm:ss` (see the module doc).
fn local_less(value: &str, context: &str, field: &str) -> Result<String, DsfinvkError> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| {
            time.with_timezone(&Utc)
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        })
        .map_err(|e| {
            invalid(
                context,
                format!("{field} {value:?} is not an RFC 3339 time: {e}"),
            )
        })
}

/// A TSE log time as `YYYY-MM-DDThh:mm:ss.fffZ`.
fn tse_time(unix: i64, context: &str, field: &str) -> Result<String, DsfinvkError> {
    DateTime::from_timestamp(unix, 0)
        .map(|time| time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .ok_or_else(|| invalid(context, format!("{field} {unix} is no Unix time")))
}

/// `UST_BESCHR` of a VAT key (Anlage 2).
fn vat_description(vat_key: u16) -> &'static str {
    match vat_key {
        1 => "Regelsteuersatz",
        2 => "Ermäßigter Steuersatz",
        3 => "Durchschnittsatz (§ 24 Abs. 1 Nr. 3 UStG)",
        4 => "Durchschnittsatz (§ 24 Abs. 1 Nr. 1 UStG)",
        5 => "Nicht Steuerbar",
        6 => "Umsatzsteuerfrei",
        7 => "UmsatzsteuerNichtErmittelbar",
        _ => "Umsatzsteuersatz 0 % (§ 12 Abs. 3 UStG)",
    }
}

/// Where each receipt of the export was closed, for `references.csv`.
type ReceiptIndex<'a> = HashMap<(&'a str, u64), (u64, String)>;

/// Writes `index.xml` and the 20 DSFinV-K CSV files for `closings`, in
/// the official order; a table without records is its header only.
pub fn write(closings: &[ClosingExport]) -> Result<Vec<(String, Vec<u8>)>, DsfinvkError> {
    let mut receipts: ReceiptIndex<'_> = HashMap::new();
    let mut seen_closings = BTreeSet::new();
    for export in closings {
        let closing = &export.closing;
        let context = closing_context(closing);
        if !seen_closings.insert((closing.cash_point.as_str(), closing.z_nr)) {
            return Err(invalid(&context, "is in the export twice"));
        }
        let created = local_less(&closing.created_at, &context, "created_at")?;
        for sale in &export.sales {
            let previous = receipts.insert(
                (sale.cash_point.as_str(), sale.receipt_no),
                (closing.z_nr, created.clone()),
            );
            if let Some((other, _)) = previous {
                return Err(invalid(
                    &context,
                    format!(
                        "receipt {} of cash point {:?} is also in closing Z_NR {other}",
                        sale.receipt_no, sale.cash_point
                    ),
                ));
            }
        }
    }
    let mut sheets = Sheets::default();
    for export in closings {
        write_closing(&mut sheets, export, &receipts)?;
    }
    let mut files = vec![(
        INDEX_FILE.to_string(),
        index_xml(closings.first().map(|c| &c.company)).into_bytes(),
    )];
    for table in TABLES {
        files.push((table.file.to_string(), sheets.render(table)?));
    }
    Ok(files)
}

/// Packs files (as returned by [`write`]) into a ZIP archive, deflated,
/// all at its root.
pub fn zip(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, DsfinvkError> {
    let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, content) in files {
        archive.start_file(name.as_str(), options)?;
        archive.write_all(content)?;
    }
    Ok(archive.finish()?.into_inner())
}

fn closing_context(closing: &CashClosing) -> String {
    format!(
        "closing Z_NR {} of cash point {:?}",
        closing.z_nr, closing.cash_point
    )
}

/// Running totals of a closing's revenue receipts.
#[derive(Debug, Default)]
struct Totals {
    /// Gross, net, VAT of the lines by VAT key (`GV_TYP` is always `Umsatz`).
    by_vat_key: BTreeMap<u16, [i64; 3]>,
    by_payment_type: BTreeMap<&'static str, i64>,
    gross: i64,
    payments: i64,
    cash: i64,
}

fn write_closing(
    sheets: &mut Sheets,
    export: &ClosingExport,
    receipts: &ReceiptIndex<'_>,
) -> Result<(), DsfinvkError> {
    let closing = &export.closing;
    let context = closing_context(closing);
    if closing.cash_point.is_empty() {
        return Err(invalid(&context, "cash_point is empty"));
    }
    if export.register.serial != closing.cash_point {
        return Err(invalid(
            &context,
            format!(
                "the register's serial {:?} is not the cash point (KASSE_SERIENNR is Z_KASSE_ID)",
                export.register.serial
            ),
        ));
    }
    if NaiveDate::parse_from_str(&closing.business_day, "%Y-%m-%d").is_err() {
        return Err(invalid(
            &context,
            format!("business_day {:?} is not YYYY-MM-DD", closing.business_day),
        ));
    }
    let key = ClosingKey {
        cash_point: closing.cash_point.clone(),
        created: local_less(&closing.created_at, &context, "created_at")?,
        z_nr: closing.z_nr.to_string(),
    };
    let mut sales: Vec<&CashSale> = export.sales.iter().collect();
    sales.sort_by_key(|sale| sale.receipt_no);
    check_receipt_range(closing, &sales, &context)?;
    let tse_ids = tse_ids(&export.tses, &context)?;

    let mut totals = Totals::default();
    let mut vat_keys = BTreeSet::new();
    for sale in &sales {
        let sale_context = format!("{context}, receipt {}", sale.receipt_no);
        write_sale(
            sheets,
            &key,
            export,
            sale,
            &SaleEnv {
                context: &sale_context,
                tse_ids: &tse_ids,
                receipts,
            },
            &mut totals,
        )?;
        vat_keys.extend(sale.lines.iter().map(|line| line.vat_key));
    }
    if totals.gross != closing.total_gross_cents || totals.cash != closing.total_cash_cents {
        return Err(invalid(
            &context,
            format!(
                "its totals (gross {}, cash {}) differ from its receipts of type Beleg \
                 (gross {}, cash {})",
                money(closing.total_gross_cents, 2),
                money(closing.total_cash_cents, 2),
                money(totals.gross, 2),
                money(totals.cash, 2)
            ),
        ));
    }
    write_master_data(sheets, &key, export, &sales, &totals, &vat_keys)
}

/// The closing's receipts are exactly `first_receipt_no..=last_receipt_no`.
fn check_receipt_range(
    closing: &CashClosing,
    sales: &[&CashSale],
    context: &str,
) -> Result<(), DsfinvkError> {
    for (i, sale) in sales.iter().enumerate() {
        if sale.cash_point != closing.cash_point {
            return Err(invalid(
                context,
                format!(
                    "receipt {} is from cash point {:?}",
                    sale.receipt_no, sale.cash_point
                ),
            ));
        }
        if i > 0 && sales[i - 1].receipt_no == sale.receipt_no {
            return Err(invalid(
                context,
                format!("receipt {} is given twice", sale.receipt_no),
            ));
        }
    }
    match (closing.first_receipt_no, closing.last_receipt_no) {
        (None, None) if sales.is_empty() => Ok(()),
        (None, None) => Err(invalid(
            context,
            format!(
                "closes no receipts but {} were given (first {})",
                sales.len(),
                sales[0].receipt_no
            ),
        )),
        (Some(first), Some(last)) if first <= last => {
            let given: BTreeSet<u64> = sales.iter().map(|sale| sale.receipt_no).collect();
            let missing: Vec<u64> = (first..=last)
                .filter(|no| !given.contains(no))
                .take(10)
                .collect();
            if !missing.is_empty() {
                return Err(invalid(
                    context,
                    format!("closes receipts {first} to {last} but these are missing: {missing:?}"),
                ));
            }
            let outside: Vec<u64> = given
                .iter()
                .copied()
                .filter(|no| !(first..=last).contains(no))
                .take(10)
                .collect();
            if outside.is_empty() {
                Ok(())
            } else {
                Err(invalid(
                    context,
                    format!("closes receipts {first} to {last} but was given {outside:?}"),
                ))
            }
        }
        (first, last) => Err(invalid(
            context,
            format!("first_receipt_no {first:?} and last_receipt_no {last:?} do not make a range"),
        )),
    }
}

/// `TSE_ID` by lower-case serial.
fn tse_ids(tses: &[TseMaster], context: &str) -> Result<HashMap<String, u64>, DsfinvkError> {
    let mut ids = HashMap::new();
    let mut numbers = BTreeSet::new();
    for tse in tses {
        if !numbers.insert(tse.tse_id) {
            return Err(invalid(
                context,
                format!("TSE_ID {} is given twice", tse.tse_id),
            ));
        }
        if ids
            .insert(tse.serial_hex.to_ascii_lowercase(), tse.tse_id)
            .is_some()
        {
            return Err(invalid(
                context,
                format!("TSE serial {} is given twice", tse.serial_hex),
            ));
        }
    }
    Ok(ids)
}

/// What a sale's rows need from its closing.
#[derive(Debug)]
struct SaleEnv<'a> {
    context: &'a str,
    tse_ids: &'a HashMap<String, u64>,
    receipts: &'a ReceiptIndex<'a>,
}

fn check_amounts(sale: &CashSale, context: &str) -> Result<(), DsfinvkError> {
    if sale.lines.len() > MAX_SALE_LINES || sale.payments.len() > MAX_SALE_PAYMENTS {
        return Err(invalid(
            context,
            format!(
                "has {} lines and {} payments, at most {MAX_SALE_LINES} and \
                 {MAX_SALE_PAYMENTS} are allowed",
                sale.lines.len(),
                sale.payments.len()
            ),
        ));
    }
    for (i, line) in sale.lines.iter().enumerate() {
        for (name, value) in [
            ("gross_cents", line.gross_cents),
            ("unit_price_cents", line.unit_price_cents),
            ("quantity_milli", line.quantity_milli),
        ] {
            if value.abs() > MAX_AMOUNT_CENTS {
                return Err(invalid(
                    context,
                    format!("lines[{i}].{name} {value} is out of range"),
                ));
            }
        }
        if vat_rate_basis_points(line.vat_key).is_none() {
            return Err(invalid(
                context,
                format!(
                    "lines[{i}].vat_key {} is not a DSFinV-K VAT key in use",
                    line.vat_key
                ),
            ));
        }
    }
    if let Some(p) = sale
        .payments
        .iter()
        .find(|p| p.amount_cents.abs() > MAX_AMOUNT_CENTS)
    {
        return Err(invalid(
            context,
            format!("payment amount {} is out of range", p.amount_cents),
        ));
    }
    let gross: i64 = sale.lines.iter().map(|l| l.gross_cents).sum();
    let paid: i64 = sale.payments.iter().map(|p| p.amount_cents).sum();
    if gross != paid {
        return Err(invalid(
            context,
            format!(
                "payments add up to {} but the lines to {}",
                money(paid, 2),
                money(gross, 2)
            ),
        ));
    }
    Ok(())
}

/// Splits with [`split_vat`]; the key was checked by [`check_amounts`].
fn split(gross: i64, vat_key: u16, context: &str) -> Result<(i64, i64), DsfinvkError> {
    split_vat(gross, vat_key)
        .ok_or_else(|| invalid(context, format!("VAT key {vat_key} has no rate")))
}

fn write_sale(
    sheets: &mut Sheets,
    key: &ClosingKey,
    export: &ClosingExport,
    sale: &CashSale,
    env: &SaleEnv<'_>,
    totals: &mut Totals,
) -> Result<(), DsfinvkError> {
    let context = env.context;
    check_amounts(sale, context)?;
    let bon_id = sale.receipt_no.to_string();
    let revenue = sale.receipt_type == REVENUE;
    let gross: i64 = sale.lines.iter().map(|l| l.gross_cents).sum();
    let bon = || ("BON_ID", bon_id.clone());

    sheets.push(
        &TRANSACTIONS,
        key,
        &[
            bon(),
            ("BON_NR", sale.receipt_no.to_string()),
            ("BON_TYP", sale.receipt_type.as_str().to_string()),
            (
                "BON_STORNO",
                if sale.cancels_receipt_no.is_some() {
                    "1"
                } else {
                    "0"
                }
                .to_string(),
            ),
            (
                "BON_START",
                local_less(&sale.started_at, context, "started_at")?,
            ),
            (
                "BON_ENDE",
                local_less(&sale.finished_at, context, "finished_at")?,
            ),
            ("BEDIENER_ID", sale.operator.clone()),
            ("BEDIENER_NAME", clip(&sale.operator, 50)),
            ("UMS_BRUTTO", money(gross, 2)),
            (
                "KUNDE_NAME",
                sale.customer
                    .as_deref()
                    .map(|c| clip(c, 50))
                    .unwrap_or_default(),
            ),
            (
                "BON_NOTIZ",
                sale.ticket_no
                    .map(|ticket| format!("Wiegeschein {ticket}"))
                    .unwrap_or_default(),
            ),
        ],
    )?;

    let mut gross_by_key: BTreeMap<u16, i64> = BTreeMap::new();
    for (i, line) in sale.lines.iter().enumerate() {
        let pos = ("POS_ZEILE", (i + 1).to_string());
        let (net, vat) = split(line.gross_cents, line.vat_key, context)?;
        let vat_key = ("UST_SCHLUESSEL", line.vat_key.to_string());
        sheets.push(
            &LINES,
            key,
            &[
                bon(),
                pos.clone(),
                ("ARTIKELTEXT", clip(&line.text, 255)),
                ("GV_TYP", GV_TYP_SALE.to_string()),
                ("INHAUS", "0".to_string()),
                ("P_STORNO", "0".to_string()),
                ("ART_NR", line.article_id.clone().unwrap_or_default()),
                ("MENGE", quantity(line.quantity_milli)),
                ("EINHEIT", clip(&line.unit, 50)),
                ("STK_BR", money(line.unit_price_cents, 5)),
            ],
        )?;
        sheets.push(
            &LINES_VAT,
            key,
            &[
                bon(),
                pos.clone(),
                vat_key.clone(),
                ("POS_BRUTTO", money(line.gross_cents, 5)),
                ("POS_NETTO", money(net, 5)),
                ("POS_UST", money(vat, 5)),
            ],
        )?;
        sheets.push(
            &ITEM_AMOUNTS,
            key,
            &[
                bon(),
                pos,
                ("TYP", "base_amount".to_string()),
                vat_key,
                ("PF_BRUTTO", money(line.gross_cents, 5)),
                ("PF_NETTO", money(net, 5)),
                ("PF_UST", money(vat, 5)),
            ],
        )?;
        *gross_by_key.entry(line.vat_key).or_default() += line.gross_cents;
        if revenue {
            let sums = totals.by_vat_key.entry(line.vat_key).or_default();
            sums[0] += line.gross_cents;
            sums[1] += net;
            sums[2] += vat;
        }
    }
    for (vat_key, gross) in gross_by_key {
        let (net, vat) = split(gross, vat_key, context)?;
        sheets.push(
            &TRANSACTIONS_VAT,
            key,
            &[
                bon(),
                ("UST_SCHLUESSEL", vat_key.to_string()),
                ("BON_BRUTTO", money(gross, 5)),
                ("BON_NETTO", money(net, 5)),
                ("BON_UST", money(vat, 5)),
            ],
        )?;
    }

    // One row per payment type, in the order the types were first paid.
    let mut by_type: Vec<(PaymentType, i64)> = Vec::new();
    for payment in &sale.payments {
        match by_type.iter_mut().find(|(kind, _)| *kind == payment.kind) {
            Some((_, sum)) => *sum += payment.amount_cents,
            None => by_type.push((payment.kind, payment.amount_cents)),
        }
    }
    for (kind, amount) in by_type {
        sheets.push(
            &DATA_PAYMENT,
            key,
            &[
                bon(),
                ("ZAHLART_TYP", kind.as_str().to_string()),
                ("ZAHLWAEH_CODE", export.register.base_currency.clone()),
                ("BASISWAEH_BETRAG", money(amount, 2)),
            ],
        )?;
        if revenue {
            *totals.by_payment_type.entry(kind.as_str()).or_default() += amount;
            totals.payments += amount;
            if kind.is_cash() {
                totals.cash += amount;
            }
        }
    }
    if revenue {
        totals.gross += gross;
    }

    if let Some(cancelled) = sale.cancels_receipt_no {
        let closed_in = env.receipts.get(&(sale.cash_point.as_str(), cancelled));
        sheets.push(
            &REFERENCES,
            key,
            &[
                bon(),
                ("REF_TYP", "Transaktion".to_string()),
                (
                    "REF_DATUM",
                    closed_in
                        .map(|(_, created)| created.clone())
                        .unwrap_or_default(),
                ),
                ("REF_Z_KASSE_ID", sale.cash_point.clone()),
                (
                    "REF_Z_NR",
                    closed_in
                        .map(|(z_nr, _)| z_nr.to_string())
                        .unwrap_or_default(),
                ),
                ("REF_BON_ID", cancelled.to_string()),
            ],
        )?;
    }

    write_sale_tse(sheets, key, sale, env, bon())
}

fn write_sale_tse(
    sheets: &mut Sheets,
    key: &ClosingKey,
    sale: &CashSale,
    env: &SaleEnv<'_>,
    bon: (&str, String),
) -> Result<(), DsfinvkError> {
    let context = env.context;
    let mut cells = vec![
        bon,
        ("TSE_TA_VORGANGSART", sale.process_type.clone()),
        (
            "TSE_TA_FEHLER",
            sale.tse_error
                .as_deref()
                .map(|e| clip(e, 200))
                .unwrap_or_default(),
        ),
        ("TSE_VORGANGSDATEN", sale.process_data.clone()),
    ];
    if let Some(tse) = &sale.tse {
        let tse_id = env
            .tse_ids
            .get(&tse.serial_hex.to_ascii_lowercase())
            .ok_or_else(|| {
                invalid(
                    context,
                    format!(
                        "was signed by TSE {} which is not among the closing's TSEs",
                        tse.serial_hex
                    ),
                )
            })?;
        cells.extend([
            ("TSE_ID", tse_id.to_string()),
            ("TSE_TANR", tse.transaction_number.to_string()),
            (
                "TSE_TA_START",
                tse_time(tse.start_unix, context, "tse.start_unix")?,
            ),
            (
                "TSE_TA_ENDE",
                tse_time(tse.finish_unix, context, "tse.finish_unix")?,
            ),
            ("TSE_TA_SIGZ", tse.signature_counter.to_string()),
            ("TSE_TA_SIG", tse.signature_base64.clone()),
        ]);
    } else if sale.tse_error.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            context,
            "has neither a TSE signature nor a tse_error saying why",
        ));
    }
    sheets.push(&TRANSACTIONS_TSE, key, &cells)
}

fn write_master_data(
    sheets: &mut Sheets,
    key: &ClosingKey,
    export: &ClosingExport,
    sales: &[&CashSale],
    totals: &Totals,
    vat_keys: &BTreeSet<u16>,
) -> Result<(), DsfinvkError> {
    let context = closing_context(&export.closing);
    let company = &export.company;
    if company.tax_number.is_none() && company.vat_id.is_none() {
        return Err(invalid(
            &context,
            format!(
                "company {:?} has neither a tax number nor a VAT id; DSFinV-K needs one",
                company.name
            ),
        ));
    }
    let bon_id = |sale: Option<&&CashSale>| {
        sale.map(|sale| sale.receipt_no.to_string())
            .unwrap_or_default()
    };
    sheets.push(
        &CASH_POINT_CLOSING,
        key,
        &[
            ("Z_BUCHUNGSTAG", export.closing.business_day.clone()),
            ("TAXONOMIE_VERSION", TAXONOMY_VERSION.to_string()),
            ("Z_START_ID", bon_id(sales.first())),
            ("Z_ENDE_ID", bon_id(sales.last())),
            ("NAME", company.name.clone()),
            ("STRASSE", company.street.clone()),
            ("PLZ", company.zip.clone()),
            ("ORT", company.city.clone()),
            ("LAND", company.country.clone()),
            ("STNR", company.tax_number.clone().unwrap_or_default()),
            ("USTID", company.vat_id.clone().unwrap_or_default()),
            ("Z_SE_ZAHLUNGEN", money(totals.payments, 2)),
            ("Z_SE_BARZAHLUNGEN", money(totals.cash, 2)),
        ],
    )?;
    sheets.push(
        &LOCATION,
        key,
        &[
            ("LOC_NAME", company.name.clone()),
            ("LOC_STRASSE", company.street.clone()),
            ("LOC_PLZ", company.zip.clone()),
            ("LOC_ORT", company.city.clone()),
            ("LOC_LAND", company.country.clone()),
            ("LOC_USTID", company.vat_id.clone().unwrap_or_default()),
        ],
    )?;
    let register = &export.register;
    sheets.push(
        &CASH_REGISTER,
        key,
        &[
            ("KASSE_BRAND", register.brand.clone()),
            ("KASSE_MODELL", register.model.clone()),
            ("KASSE_SERIENNR", register.serial.clone()),
            ("KASSE_SW_BRAND", register.software_brand.clone()),
            ("KASSE_SW_VERSION", register.software_version.clone()),
            ("KASSE_BASISWAEH_CODE", register.base_currency.clone()),
            ("KEINE_UST_ZUORDNUNG", "0".to_string()),
        ],
    )?;
    for &vat_key in vat_keys {
        let rate = vat_rate_basis_points(vat_key)
            .ok_or_else(|| invalid(&context, format!("VAT key {vat_key} has no rate")))?;
        sheets.push(
            &VAT,
            key,
            &[
                ("UST_SCHLUESSEL", vat_key.to_string()),
                ("UST_SATZ", percent(rate)),
                ("UST_BESCHR", vat_description(vat_key).to_string()),
            ],
        )?;
    }
    for tse in &export.tses {
        write_tse_master(sheets, key, tse, &context)?;
    }
    for (vat_key, [gross, net, vat]) in &totals.by_vat_key {
        sheets.push(
            &BUSINESS_CASES,
            key,
            &[
                ("GV_TYP", GV_TYP_SALE.to_string()),
                ("UST_SCHLUESSEL", vat_key.to_string()),
                ("Z_UMS_BRUTTO", money(*gross, 5)),
                ("Z_UMS_NETTO", money(*net, 5)),
                ("Z_UST", money(*vat, 5)),
            ],
        )?;
    }
    for (kind, amount) in &totals.by_payment_type {
        sheets.push(
            &PAYMENT,
            key,
            &[
                ("ZAHLART_TYP", (*kind).to_string()),
                ("Z_ZAHLART_BETRAG", money(*amount, 2)),
            ],
        )?;
    }
    // The cash drawer holds only the base currency: the boxes take no other.
    sheets.push(
        &CASH_PER_CURRENCY,
        key,
        &[
            ("ZAHLART_WAEH", register.base_currency.clone()),
            ("ZAHLART_BETRAG_WAEH", money(totals.cash, 2)),
        ],
    )
}

fn write_tse_master(
    sheets: &mut Sheets,
    key: &ClosingKey,
    tse: &TseMaster,
    context: &str,
) -> Result<(), DsfinvkError> {
    const CHUNK_COLUMNS: [&str; 7] = [
        "TSE_ZERTIFIKAT_I",
        "TSE_ZERTIFIKAT_II",
        "TSE_ZERTIFIKAT_III",
        "TSE_ZERTIFIKAT_IV",
        "TSE_ZERTIFIKAT_V",
        "TSE_ZERTIFIKAT_VI",
        "TSE_ZERTIFIKAT_VII",
    ];
    let certificate: Vec<char> = tse.certificate_base64.chars().collect();
    let chunks: Vec<String> = certificate
        .chunks(CERTIFICATE_CHUNK)
        .map(|chunk| chunk.iter().collect())
        .collect();
    if chunks.len() > CHUNK_COLUMNS.len() {
        return Err(invalid(
            context,
            format!(
                "the certificate of TSE {} has {} characters, DSFinV-K holds at most {}",
                tse.serial_hex,
                certificate.len(),
                CHUNK_COLUMNS.len() * CERTIFICATE_CHUNK
            ),
        ));
    }
    let mut cells = vec![
        ("TSE_ID", tse.tse_id.to_string()),
        ("TSE_SERIAL", tse.serial_hex.clone()),
        ("TSE_SIG_ALGO", tse.signature_algorithm.clone()),
        ("TSE_ZEITFORMAT", tse.time_format.clone()),
        ("TSE_PD_ENCODING", tse.pd_encoding.clone()),
        ("TSE_PUBLIC_KEY", tse.public_key_base64.clone()),
    ];
    cells.extend(CHUNK_COLUMNS.iter().copied().zip(chunks));
    sheets.push(&TSE, key, &cells)
}

/// The GDPdU description of all tables (see the module doc for the types);
/// the data supplier is the company of the first closing.
fn index_xml(supplier: Option<&Company>) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <!DOCTYPE DataSet SYSTEM \"gdpdu-01-09-2004.dtd\">\r\n\
         <DataSet>\r\n  <Version>1.0</Version>\r\n",
    );
    if let Some(company) = supplier {
        xml.push_str(&format!(
            "  <DataSupplier>\r\n    <Name>{}</Name>\r\n    <Location>{}</Location>\r\n    \
             <Comment>DSFinV-K {TAXONOMY_VERSION}</Comment>\r\n  </DataSupplier>\r\n",
            valeo_process::markup::escape(&company.name),
            valeo_process::markup::escape(&format!("{} {}", company.zip, company.city)),
        ));
    }
    xml.push_str("  <Media>\r\n    <Name>DSFinV-K</Name>\r\n");
    for table in TABLES {
        xml.push_str(&format!(
            "    <Table>\r\n      <URL>{}</URL>\r\n      <Name>{}</Name>\r\n      <UTF8/>\r\n      \
             <DecimalSymbol>,</DecimalSymbol>\r\n      \
             <DigitGroupingSymbol>.</DigitGroupingSymbol>\r\n      \
             <Range><From>2</From></Range>\r\n      <VariableLength>\r\n        \
             <ColumnDelimiter>;</ColumnDelimiter>\r\n        \
             <RecordDelimiter>&#13;&#10;</RecordDelimiter>\r\n        \
             <TextEncapsulator>\"</TextEncapsulator>\r\n",
            table.file, table.name
        ));
        for (name, kind) in table.columns {
            let declaration = match kind {
                Kind::Text(Some(max)) => format!("<AlphaNumeric/><MaxLength>{max}</MaxLength>"),
                Kind::Text(None) | Kind::Time => "<AlphaNumeric/>".to_string(),
                Kind::Number(0) | Kind::Flag => "<Numeric/>".to_string(),
                Kind::Number(places) => {
                    format!("<Numeric><Accuracy>{places}</Accuracy></Numeric>")
                }
            };
            xml.push_str(&format!(
                "        <VariableColumn><Name>{name}</Name>{declaration}</VariableColumn>\r\n"
            ));
        }
        xml.push_str("      </VariableLength>\r\n    </Table>\r\n");
    }
    xml.push_str("  </Media>\r\n</DataSet>\r\n");
    xml
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use valeo_records::cash::{Payment, SaleLine, SaleTse, process_data};

    use super::*;

    fn company() -> Company {
        Company {
            name: "Agrar & Handel \"Nord\" GmbH".into(),
            street: "Waageweg 1".into(),
            zip: "24103".into(),
            city: "Kiel".into(),
            country: "DEU".into(),
            tax_number: Some("20/123/45678".into()),
            vat_id: Some("DE123456789".into()),
        }
    }

    fn tse_master() -> TseMaster {
        TseMaster {
            tse_id: 1,
            serial_hex: "ab".repeat(32),
            signature_algorithm: "ecdsa-plain-SHA256".into(),
            time_format: "unixTime".into(),
            pd_encoding: "UTF-8".into(),
            public_key_base64: "BAAA".into(),
            certificate_base64: "M".repeat(2500),
        }
    }

    fn line(text: &str, quantity_milli: i64, unit_price_cents: i64, vat_key: u16) -> SaleLine {
        let product = quantity_milli * unit_price_cents;
        SaleLine {
            text: text.into(),
            article_id: Some("A-1".into()),
            quantity_milli,
            unit: "kg".into(),
            unit_price_cents,
            gross_cents: (product + product.signum() * 500) / 1000,
            vat_key,
        }
    }

    fn sale(receipt_no: u64, lines: Vec<SaleLine>, payments: Vec<Payment>) -> CashSale {
        let process_data = process_data(ReceiptType::Beleg, &lines, &payments);
        CashSale {
            cash_point: "K1".into(),
            receipt_no,
            receipt_type: ReceiptType::Beleg,
            cancels_receipt_no: None,
            started_at: "2025-03-14T08:00:00Z".into(),
            finished_at: "2025-03-14T08:01:30.250Z".into(),
            operator: "wiegemeister".into(),
            ticket_no: None,
            customer: None,
            lines,
            payments,
            process_type: "Kassenbeleg-V1".into(),
            process_data,
            tse: Some(SaleTse {
                serial_hex: "AB".repeat(32),
                transaction_number: receipt_no + 100,
                signature_counter: receipt_no * 2 + 100,
                start_unix: 1_741_939_200,
                finish_unix: 1_741_939_290,
                signature_base64: "c2ln".into(),
                public_key_base64: "BAAA".into(),
                signature_algorithm: "ecdsa-plain-SHA256".into(),
                time_format: "unixTime".into(),
                log_messages_base64: Vec::new(),
                qr_code: "V0;…".into(),
                certified: Some(true),
            }),
            tse_error: None,
        }
    }

    fn pay(kind: PaymentType, amount_cents: i64) -> Payment {
        Payment { kind, amount_cents }
    }

    /// Three receipts: two VAT keys, cash and card, a storno of the second.
    fn export() -> ClosingExport {
        let first = sale(
            1,
            vec![
                line("Futterweizen \"lose\"", 2500, 333, 2),
                line("Sackware; 25 kg", 1000, 1999, 1),
            ],
            vec![pay(PaymentType::Bar, 1000), pay(PaymentType::ECKarte, 1832)],
        );
        let second = sale(
            2,
            vec![line("Mineralfutter", 1000, 1190, 1)],
            vec![pay(PaymentType::Bar, 1190)],
        );
        let mut storno = sale(
            3,
            vec![line("Mineralfutter", -1000, 1190, 1)],
            vec![pay(PaymentType::Bar, -1190)],
        );
        storno.cancels_receipt_no = Some(2);
        let sales = vec![storno, first, second];
        let gross = sales
            .iter()
            .flat_map(|s| &s.lines)
            .map(|l| l.gross_cents)
            .sum();
        let cash = sales
            .iter()
            .flat_map(|s| &s.payments)
            .filter(|p| p.kind.is_cash())
            .map(|p| p.amount_cents)
            .sum();
        ClosingExport {
            closing: CashClosing {
                cash_point: "K1".into(),
                z_nr: 7,
                created_at: "2025-03-14T17:05:00Z".into(),
                business_day: "2025-03-14".into(),
                first_receipt_no: Some(1),
                last_receipt_no: Some(3),
                total_gross_cents: gross,
                total_cash_cents: cash,
            },
            company: company(),
            register: CashRegister {
                serial: "K1".into(),
                brand: "Valeo".into(),
                model: "Edge".into(),
                software_brand: "Valeo Edge".into(),
                software_version: "0.1.0".into(),
                base_currency: "EUR".into(),
            },
            tses: vec![tse_master()],
            sales,
        }
    }

    fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a str {
        let (_, content) = files.iter().find(|(n, _)| n == name).unwrap();
        std::str::from_utf8(content).unwrap()
    }

    /// The records of a file (header dropped) split at `;`; the test data
    /// has no `;` inside the columns these tests read.
    fn records(files: &[(String, Vec<u8>)], name: &str) -> Vec<Vec<String>> {
        file(files, name)
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split(';')
                    .map(|c| c.trim_matches('"').to_string())
                    .collect()
            })
            .collect()
    }

    /// `12,34` or `12,34000` as cents.
    fn cents(value: &str) -> i64 {
        let (int, frac) = value.split_once(',').unwrap();
        assert!(
            frac[2..].chars().all(|c| c == '0'),
            "{value} is not whole cents"
        );
        let magnitude = int.trim_start_matches('-').parse::<i64>().unwrap() * 100
            + frac[..2].parse::<i64>().unwrap();
        if int.starts_with('-') {
            -magnitude
        } else {
            magnitude
        }
    }

    #[test]
    fn numbers_have_a_decimal_comma_and_fixed_places() {
        assert_eq!(money(123_456, 2), "1234,56");
        assert_eq!(money(-5, 2), "-0,05");
        assert_eq!(money(0, 5), "0,00000");
        assert_eq!(money(-119, 5), "-1,19000");
        assert_eq!(money(1_000_000_000, 2), "10000000,00");
        assert_eq!(quantity(2500), "2,500");
        assert_eq!(quantity(-1), "-0,001");
        assert_eq!(percent(1900), "19,00");
        assert_eq!(percent(1070), "10,70");
        assert!(is_decimal("-12,34", 2));
        assert!(is_decimal("7", 0));
        assert!(!is_decimal("12.34", 2));
        assert!(!is_decimal("1.234,00", 2));
        assert!(!is_decimal("12,3", 2));
        assert!(!is_decimal("12,", 0));
    }

    #[test]
    fn text_is_quoted_with_inner_quotes_doubled_and_records_end_with_crlf() {
        let files = write(&[export()]).unwrap();
        let lines = file(&files, "lines.csv");
        assert!(lines.starts_with("Z_KASSE_ID;Z_ERSTELLUNG;Z_NR;BON_ID;POS_ZEILE;"));
        assert!(
            lines.contains(
                "\"K1\";\"2025-03-14T17:05:00\";7;\"1\";\"1\";;\"Futterweizen \"\"lose\"\"\";;\
                 \"Umsatz\";;0;0;;\"A-1\";;;;2,500;;\"kg\";3,33000\r\n"
            ),
            "{lines}"
        );
        assert!(lines.contains(";\"Sackware; 25 kg\";"));
        for (name, content) in &files {
            let text = std::str::from_utf8(content).unwrap();
            assert!(text.ends_with("\r\n"), "{name}");
            assert_eq!(
                text.matches('\n').count(),
                text.matches("\r\n").count(),
                "{name} has a bare LF"
            );
        }
        assert_eq!(files.len(), 21);
        assert_eq!(files[0].0, INDEX_FILE);
        let index = file(&files, INDEX_FILE);
        assert!(index.contains("<Name>Agrar &amp; Handel &quot;Nord&quot; GmbH</Name>"));
        // The official 219 plus pretix's TSE_ZERTIFIKAT_III to _VII.
        assert_eq!(index.matches("<VariableColumn>").count(), 224);
    }

    #[test]
    fn a_value_that_does_not_fit_names_file_line_and_column() {
        let mut data = export();
        data.tses[0].serial_hex = "f".repeat(69);
        data.sales.iter_mut().for_each(|s| {
            if let Some(tse) = &mut s.tse {
                tse.serial_hex = "f".repeat(69);
            }
        });
        let error = write(&[data]).unwrap_err().to_string();
        assert!(
            error.starts_with("tse.csv line 2, column TSE_SERIAL: \"fff"),
            "{error}"
        );
        assert!(
            error.ends_with("is 69 characters long, DSFinV-K allows 68"),
            "{error}"
        );

        let mut data = export();
        data.sales[0].process_data.push('\n');
        let error = write(&[data]).unwrap_err().to_string();
        assert!(
            error.starts_with("transactions_tse.csv line 4, column TSE_VORGANGSDATEN:"),
            "{error}"
        );
        assert!(error.contains("U+000A"), "{error}");
    }

    #[test]
    fn free_text_is_cut_and_loses_line_breaks() {
        let mut data = export();
        data.sales[0].customer = Some(format!("Hof\r\n{}", "x".repeat(80)));
        let files = write(&[data]).unwrap();
        let transactions = records(&files, "transactions.csv");
        let storno = transactions.iter().find(|r| r[3] == "3").unwrap();
        assert_eq!(storno[14], format!("Hof  {}", "x".repeat(45)));
    }

    /// Not proptest (no dev-dependency here): a fixed pseudo-random sweep
    /// over the whole amount range plus every small amount.
    #[test]
    fn vat_split_is_exact_for_any_gross() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut samples: Vec<i64> = (-20_000..20_000).collect();
        for _ in 0..200_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let range = 2 * MAX_AMOUNT_CENTS as u64 + 1;
            samples.push((state >> 11) as i64 % range as i64 - MAX_AMOUNT_CENTS);
        }
        for gross in samples {
            for vat_key in [1, 2] {
                let (net, vat) = split(gross, vat_key, "test").unwrap();
                assert_eq!(net + vat, gross, "gross {gross}, key {vat_key}");
                let rate = i128::from(vat_rate_basis_points(vat_key).unwrap());
                // The net is the exact net rounded to the cent.
                let exact_times_divisor = i128::from(gross) * 10_000;
                let error = i128::from(net) * (10_000 + rate) - exact_times_divisor;
                assert!(
                    2 * error.abs() <= 10_000 + rate,
                    "gross {gross}, key {vat_key}"
                );
            }
        }
        assert_eq!(split(119, 1, "test").unwrap(), (100, 19));
        assert_eq!(split(-107, 2, "test").unwrap(), (-100, -7));
    }

    #[test]
    fn totals_equal_the_sums_of_the_single_records() {
        let files = write(&[export()]).unwrap();
        // businesscases = lines_vat of the Beleg receipts, by VAT key.
        let mut from_lines: BTreeMap<String, [i64; 3]> = BTreeMap::new();
        for r in records(&files, "lines_vat.csv") {
            let sums = from_lines.entry(r[5].clone()).or_default();
            for (i, column) in [6, 7, 8].into_iter().enumerate() {
                sums[i] += cents(&r[column]);
            }
        }
        let cases = records(&files, "businesscases.csv");
        assert_eq!(cases.len(), from_lines.len());
        for r in &cases {
            assert_eq!(r[3], "Umsatz");
            let expected = from_lines[&r[6]];
            assert_eq!(
                [cents(&r[7]), cents(&r[8]), cents(&r[9])],
                expected,
                "{r:?}"
            );
        }
        // payment = datapayment by type.
        let mut from_receipts: BTreeMap<String, i64> = BTreeMap::new();
        for r in records(&files, "datapayment.csv") {
            *from_receipts.entry(r[4].clone()).or_default() += cents(&r[8]);
        }
        let payments: BTreeMap<String, i64> = records(&files, "payment.csv")
            .into_iter()
            .map(|r| (r[3].clone(), cents(&r[5])))
            .collect();
        assert_eq!(payments, from_receipts);
        assert_eq!(payments["Bar"], 1000);
        assert_eq!(payments["ECKarte"], 1832);
        // Z_SE_ZAHLUNGEN = UMS_BRUTTO summed; cash per currency = cash.
        let gross: i64 = records(&files, "transactions.csv")
            .iter()
            .map(|r| cents(&r[13]))
            .sum();
        let closing = &records(&files, "cashpointclosing.csv")[0];
        assert_eq!(cents(&closing[14]), gross);
        assert_eq!(gross, 2832);
        assert_eq!(cents(&closing[15]), 1000);
        assert_eq!((closing[5].as_str(), closing[6].as_str()), ("1", "3"));
        let currency = &records(&files, "cash_per_currency.csv")[0];
        assert_eq!((currency[3].as_str(), cents(&currency[4])), ("EUR", 1000));
        // Bonkopf VAT: net + VAT = gross for every key, gross adds up to UMS_BRUTTO.
        for r in records(&files, "transactions_vat.csv") {
            assert_eq!(cents(&r[6]) + cents(&r[7]), cents(&r[5]), "{r:?}");
        }
    }

    #[test]
    fn storno_tse_and_master_rows() {
        let files = write(&[export()]).unwrap();
        assert_eq!(
            records(&files, "references.csv"),
            vec![vec![
                "K1",
                "2025-03-14T17:05:00",
                "7",
                "3",
                "",
                "Transaktion",
                "",
                "2025-03-14T17:05:00",
                "K1",
                "7",
                "2"
            ]]
        );
        let transactions = records(&files, "transactions.csv");
        let flags: Vec<&str> = transactions.iter().map(|r| r[8].as_str()).collect();
        assert_eq!(flags, ["0", "0", "1"]);
        assert_eq!(transactions[0][9], "2025-03-14T08:00:00");
        assert_eq!(transactions[0][10], "2025-03-14T08:01:30");
        let tse = &records(&files, "transactions_tse.csv")[0];
        assert_eq!(
            tse[4..8],
            [
                "1",
                "101",
                "2025-03-14T08:00:00.000Z",
                "2025-03-14T08:01:30.000Z"
            ]
        );
        let master = &records(&files, "tse.csv")[0];
        assert_eq!(master[9].len(), 1000);
        assert_eq!(master[10].len(), 1000);
        assert_eq!(master[11].len(), 500);
        assert_eq!(master[12], "");
        let vat: Vec<(String, String)> = records(&files, "vat.csv")
            .into_iter()
            .map(|r| (r[3].clone(), r[4].clone()))
            .collect();
        assert_eq!(
            vat,
            [
                ("1".to_string(), "19,00".to_string()),
                ("2".to_string(), "7,00".to_string())
            ]
        );
        for empty in [
            "slaves.csv",
            "pa.csv",
            "allocation_groups.csv",
            "subitems.csv",
        ] {
            assert_eq!(file(&files, empty).matches("\r\n").count(), 1, "{empty}");
        }
    }

    /// A storno of a receipt closed outside the export names the receipt
    /// but leaves its closing empty rather than guessing it.
    #[test]
    fn a_storno_of_a_receipt_outside_the_export_leaves_its_closing_open() {
        let mut data = export();
        data.sales.retain(|s| s.receipt_no == 3);
        data.closing.first_receipt_no = Some(3);
        data.closing.last_receipt_no = Some(3);
        data.closing.total_gross_cents = -1190;
        data.closing.total_cash_cents = -1190;
        let files = write(&[data]).unwrap();
        let reference = &records(&files, "references.csv")[0];
        assert_eq!(reference[5..], ["Transaktion", "", "", "K1", "", "2"]);
    }

    #[test]
    fn inconsistent_input_is_refused_with_the_reason() {
        let mut data = export();
        data.closing.total_gross_cents += 1;
        let error = write(&[data]).unwrap_err().to_string();
        assert_eq!(
            error,
            "closing Z_NR 7 of cash point \"K1\": its totals (gross 28,33, cash 10,00) \
             differ from its receipts of type Beleg (gross 28,32, cash 10,00)"
        );

        let mut data = export();
        data.sales.retain(|s| s.receipt_no != 2);
        let error = write(&[data]).unwrap_err().to_string();
        assert!(
            error.ends_with("closes receipts 1 to 3 but these are missing: [2]"),
            "{error}"
        );

        let mut data = export();
        data.tses.clear();
        let error = write(&[data]).unwrap_err().to_string();
        assert!(
            error.contains("receipt 1: was signed by TSE ABAB"),
            "{error}"
        );

        let mut data = export();
        data.sales[0].tse = None;
        let error = write(&[data]).unwrap_err().to_string();
        assert!(error.ends_with("has neither a TSE signature nor a tse_error saying why"));

        let mut data = export();
        data.company.tax_number = None;
        data.company.vat_id = None;
        let error = write(&[data]).unwrap_err().to_string();
        assert!(error.ends_with("has neither a tax number nor a VAT id; DSFinV-K needs one"));

        let data = export();
        let error = write(&[data.clone(), data]).unwrap_err().to_string();
        assert_eq!(
            error,
            "closing Z_NR 7 of cash point \"K1\": is in the export twice"
        );
    }

    #[test]
    fn a_day_without_sales_still_has_every_table() {
        let mut data = export();
        data.sales.clear();
        data.closing.first_receipt_no = None;
        data.closing.last_receipt_no = None;
        data.closing.total_gross_cents = 0;
        data.closing.total_cash_cents = 0;
        let files = write(&[data]).unwrap();
        assert_eq!(files.len(), 21);
        let closing = &records(&files, "cashpointclosing.csv")[0];
        assert_eq!(closing[5..7], ["", ""]);
        assert_eq!(closing[14..16], ["0,00", "0,00"]);
        assert_eq!(file(&files, "transactions.csv").matches("\r\n").count(), 1);
        let empty = write(&[]).unwrap();
        assert_eq!(empty.len(), 21);
    }

    #[test]
    fn zip_holds_every_file_unchanged() {
        let files = write(&[export()]).unwrap();
        let archive = zip(&files).unwrap();
        let mut reader = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
        assert_eq!(reader.len(), files.len());
        for (name, content) in &files {
            let mut entry = reader.by_name(name).unwrap();
            assert_eq!(entry.compression(), zip::CompressionMethod::Deflated);
            let mut read = Vec::new();
            entry.read_to_end(&mut read).unwrap();
            assert_eq!(&read, content, "{name}");
        }
    }
}
