//! The DSFinV-K export of a weighbridge cash day, checked by tools we did
//! not write: pretix's `dsfinvk` validator and field tables, driven by
//! `tests/peers/dsfinvk_check.py` (which also checks that the closing
//! totals equal the single records). A deliberately broken export must be
//! refused with the problem named, so the check is known to bite. The venv
//! comes with the README's test command: a missing one fails the test.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::path::Path;
use std::process::Command;

use valeo_central::dsfinvk::{self, CashRegister, ClosingExport, Company, TseMaster};
use valeo_records::cash::{
    CashClosing, CashSale, Payment, PaymentType, ReceiptType, SaleLine, SaleTse, process_data,
};
use valeo_system_tests::{venv_python, workspace_root};

const OUTAGE_ERROR: &str = "TSE nicht erreichbar: Zeitüberschreitung nach 5000 ms (USB)";

/// Runs the check on a directory: (passed, everything it printed).
fn check(dir: &Path) -> (bool, String) {
    let script = workspace_root().join("tests/peers/dsfinvk_check.py");
    let output = Command::new(venv_python())
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

fn line(text: &str, quantity_milli: i64, unit_price_cents: i64, vat_key: u16) -> SaleLine {
    let product = quantity_milli * unit_price_cents;
    SaleLine {
        text: text.into(),
        article_id: Some(format!("ART-{vat_key}")),
        quantity_milli,
        unit: "kg".into(),
        unit_price_cents,
        gross_cents: (product + product.signum() * 500) / 1000,
        vat_key,
    }
}

fn pay(kind: PaymentType, amount_cents: i64) -> Payment {
    Payment { kind, amount_cents }
}

fn signed_sale(
    receipt_no: u64,
    minute: u32,
    lines: Vec<SaleLine>,
    payments: Vec<Payment>,
) -> CashSale {
    let process_data = process_data(ReceiptType::Beleg, &lines, &payments);
    let start_unix = 1_741_939_200 + i64::from(minute) * 60;
    CashSale {
        cash_point: "waage-nord-1".into(),
        receipt_no,
        receipt_type: ReceiptType::Beleg,
        cancels_receipt_no: None,
        started_at: format!("2025-03-14T08:{minute:02}:00Z"),
        finished_at: format!("2025-03-14T08:{minute:02}:40.5+00:00"),
        operator: "m.schulz".into(),
        ticket_no: Some(4711 + receipt_no),
        customer: Some("Hof \"Lindenau\" GbR".into()),
        lines,
        payments,
        process_type: "Kassenbeleg-V1".into(),
        process_data,
        tse: Some(SaleTse {
            serial_hex: "5a".repeat(32),
            transaction_number: 40 + receipt_no,
            signature_counter: 100 + 3 * receipt_no,
            start_unix,
            finish_unix: start_unix + 40,
            signature_base64: format!("c2lnbmF0dXJl{receipt_no}"),
            public_key_base64: "BHB1YmxpYw==".into(),
            signature_algorithm: "ecdsa-plain-SHA256".into(),
            time_format: "unixTime".into(),
            log_messages_base64: Vec::new(),
            qr_code: String::new(),
            certified: Some(true),
        }),
        tse_error: None,
    }
}

/// One day: a mixed-VAT sale paid cash and card, a card sale and its
/// storno, and a cash sale during a TSE outage.
fn day() -> ClosingExport {
    let mixed = signed_sale(
        1,
        5,
        vec![
            line("Futterweizen \"lose\"", 2500, 333, 2),
            line("Mineralfutter; Sack 25 kg", 1000, 2499, 1),
        ],
        vec![pay(PaymentType::Bar, 2000), pay(PaymentType::ECKarte, 1332)],
    );
    let card = signed_sale(
        2,
        20,
        vec![line("Weidezaunpfahl", 12_000, 119, 1)],
        vec![pay(PaymentType::ECKarte, 1428)],
    );
    let mut storno = signed_sale(
        3,
        25,
        vec![line("Weidezaunpfahl", -12_000, 119, 1)],
        vec![pay(PaymentType::ECKarte, -1428)],
    );
    storno.cancels_receipt_no = Some(2);
    let mut outage = signed_sale(
        4,
        40,
        vec![line("Saatgut Hafer", 50_000, 87, 2)],
        vec![pay(PaymentType::Bar, 4350)],
    );
    outage.tse = None;
    outage.tse_error = Some(OUTAGE_ERROR.into());
    outage.customer = None;
    let sales = vec![mixed, card, storno, outage];
    let total_gross_cents = sales
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| l.gross_cents)
        .sum();
    let total_cash_cents = sales
        .iter()
        .flat_map(|s| &s.payments)
        .filter(|p| p.kind.is_cash())
        .map(|p| p.amount_cents)
        .sum();
    ClosingExport {
        closing: CashClosing {
            cash_point: "waage-nord-1".into(),
            z_nr: 12,
            created_at: "2025-03-14T17:30:05Z".into(),
            business_day: "2025-03-14".into(),
            first_receipt_no: Some(1),
            last_receipt_no: Some(4),
            total_gross_cents,
            total_cash_cents,
        },
        company: Company {
            name: "Landhandel Nord GmbH".into(),
            street: "An der Waage 3".into(),
            zip: "24837".into(),
            city: "Schleswig".into(),
            country: "DEU".into(),
            tax_number: Some("15/293/01234".into()),
            vat_id: None,
        },
        register: CashRegister {
            serial: "waage-nord-1".into(),
            brand: "Valeo".into(),
            model: "Edge Box".into(),
            software_brand: "Valeo Edge".into(),
            software_version: "0.1.0".into(),
            base_currency: "EUR".into(),
        },
        tses: vec![TseMaster {
            tse_id: 1,
            serial_hex: "5a".repeat(32),
            signature_algorithm: "ecdsa-plain-SHA256".into(),
            time_format: "unixTime".into(),
            pd_encoding: "UTF-8".into(),
            public_key_base64: "BHB1YmxpYw==".into(),
            certificate_base64: "MIIB".repeat(400),
        }],
        sales,
    }
}

/// Writes the export into a fresh directory.
fn export_dir(closings: &[ClosingExport]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in dsfinvk::write(closings).unwrap() {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn a_cash_day_passes_the_independent_check() {
    let dir = export_dir(&[day()]);
    let (passed, printed) = check(dir.path());
    assert!(passed, "the check refused the export:\n{printed}");
    assert_eq!(printed.trim(), "ok");

    let key = "\"waage-nord-1\";\"2025-03-14T17:30:05\";12";
    let tse = read(dir.path(), "transactions_tse.csv");
    // The outage sale: no TSE data, the reason, the data it wanted signed.
    let outage = format!(
        "{key};\"4\";;;;;\"Kassenbeleg-V1\";;;\"{OUTAGE_ERROR}\";\
         \"Beleg^0.00_43.50_0.00_0.00_0.00^43.50:Bar\"\r\n"
    );
    assert!(tse.contains(&outage), "{tse}");
    assert!(
        tse.contains(&format!(
            "{key};\"1\";1;41;\"2025-03-14T08:05:00.000Z\";\"2025-03-14T08:05:40.000Z\";\
             \"Kassenbeleg-V1\";103;\"c2lnbmF0dXJl1\";;\
             \"Beleg^24.99_8.33_0.00_0.00_0.00^20.00:Bar_13.32:Unbar\"\r\n"
        )),
        "{tse}"
    );
    let transactions = read(dir.path(), "transactions.csv");
    assert!(
        transactions.contains(&format!(
            "{key};\"3\";3;\"Beleg\";;;1;\"2025-03-14T08:25:00\";\"2025-03-14T08:25:40\";\
             \"m.schulz\";\"m.schulz\";-14,28;\"Hof \"\"Lindenau\"\" GbR\";;;;;;;;\
             \"Wiegeschein 4714\"\r\n"
        )),
        "{transactions}"
    );
    let references = read(dir.path(), "references.csv");
    assert!(
        references.ends_with(&format!(
            "{key};\"3\";;\"Transaktion\";;\"2025-03-14T17:30:05\";\"waage-nord-1\";12;\"2\"\r\n"
        )),
        "{references}"
    );
    let businesscases = read(dir.path(), "businesscases.csv");
    assert_eq!(
        businesscases,
        format!(
            "Z_KASSE_ID;Z_ERSTELLUNG;Z_NR;GV_TYP;GV_NAME;AGENTUR_ID;UST_SCHLUESSEL;\
             Z_UMS_BRUTTO;Z_UMS_NETTO;Z_UST\r\n\
             {key};\"Umsatz\";;;1;24,99000;21,00000;3,99000\r\n\
             {key};\"Umsatz\";;;2;51,83000;48,44000;3,39000\r\n"
        )
    );
    let closing = read(dir.path(), "cashpointclosing.csv");
    assert!(
        closing.ends_with(&format!(
            "{key};\"2025-03-14\";\"2.4\";\"1\";\"4\";\"Landhandel Nord GmbH\";\
             \"An der Waage 3\";\"24837\";\"Schleswig\";\"DEU\";\"15/293/01234\";;76,82;63,50\r\n"
        )),
        "{closing}"
    );

    let archive = dsfinvk::zip(&dsfinvk::write(&[day()]).unwrap()).unwrap();
    assert!(archive.starts_with(b"PK\x03\x04"));
}

#[test]
fn a_broken_export_is_refused_with_the_problem_named() {
    // A decimal point where DSFinV-K wants a comma.
    let dir = export_dir(&[day()]);
    let path = dir.path().join("transactions.csv");
    let text = read(dir.path(), "transactions.csv");
    assert!(text.contains(";-14,28;"));
    std::fs::write(&path, text.replace(";-14,28;", ";-14.28;")).unwrap();
    let (passed, printed) = check(dir.path());
    assert!(!passed, "{printed}");
    assert!(
        printed.contains(
            "transactions.csv line 4, UMS_BRUTTO '-14.28': not a number with 2 decimals \
             and a decimal comma"
        ),
        "{printed}"
    );
    assert!(printed.contains("pretix printed: "), "{printed}");

    // A closing total that is not the sum of its lines.
    let dir = export_dir(&[day()]);
    let path = dir.path().join("businesscases.csv");
    let text = read(dir.path(), "businesscases.csv");
    std::fs::write(
        &path,
        text.replace("51,83000;48,44000", "51,84000;48,45000"),
    )
    .unwrap();
    let (passed, printed) = check(dir.path());
    assert!(!passed, "{printed}");
    assert!(
        printed.contains(
            "businesscases.csv Z_UMS_BRUTTO of ('waage-nord-1', '2025-03-14T17:30:05', '12', \
             'Umsatz', '2'): 51.84000 but the single records add up to 51.83000"
        ),
        "{printed}"
    );

    // A missing table and a LF-only record end.
    let dir = export_dir(&[day()]);
    std::fs::remove_file(dir.path().join("slaves.csv")).unwrap();
    let vat = read(dir.path(), "vat.csv");
    std::fs::write(dir.path().join("vat.csv"), vat.replacen("\r\n", "\n", 1)).unwrap();
    let (passed, printed) = check(dir.path());
    assert!(!passed, "{printed}");
    assert!(printed.contains("slaves.csv: missing"), "{printed}");
    assert!(
        printed.contains("vat.csv: 1 LF and 0 CR outside CRLF record ends"),
        "{printed}"
    );
}
