//! The cash desk on a real SQLite outbox with the software TSE: counter
//! sales and open sales with signed updates, stornos, aborts, the closing,
//! and every way the TSE can let the desk down (failing, answering late,
//! failing between start and finish) — selling goes on, receipts are
//! marked, the outage is recorded with start, end and cause, and nothing is
//! left open in the TSE afterwards.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::sync::Arc;

use base64::Engine;
use valeo_drivers::tse::software::{SoftwareTse, TseFaults};
use valeo_drivers::tse::{ExportFilter, TseHandle, export, logmsg};
use valeo_edge::cash::{CashDesk, CashError, CashSettings, NewSale, TseConfig};
use valeo_edge::workflow::{OnRecord, SystemClock};
use valeo_records::cash::{
    CashSale, KIND_CASH_SALE, KIND_TSE_INFO, KIND_TSE_OUTAGE, Payment, PaymentType, ReceiptType,
    SaleLine, TseOutage,
};
use valeo_sync::outbox::{Outbox, OutboxLimits};

struct Desk {
    desk: CashDesk,
    outbox: Outbox,
    faults: TseFaults,
    tse: TseHandle,
    _dir: tempfile::TempDir,
}

fn settings(call_timeout_ms: u64) -> CashSettings {
    CashSettings {
        tse: TseConfig::Software { dir: None },
        cash_point: "KASSE-01".into(),
        call_timeout_ms,
        update_interval_ms: 5_000,
        outage_probe_ms: 30_000,
        trader_name: "Agrarhandel Musterfeld GmbH".into(),
        trader_address: "Feldweg 1, 49999 Musterfeld".into(),
        tax_number: None,
        vat_id: None,
    }
}

async fn desk() -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(
        &dir.path().join("outbox.db"),
        "box-1",
        OutboxLimits::default(),
    )
    .unwrap();
    let software = SoftwareTse::open(&dir.path().join("tse")).unwrap();
    let faults = software.faults();
    let tse = TseHandle::spawn(Box::new(software), 300);
    let desk = CashDesk::open(
        outbox.clone(),
        tse.clone(),
        settings(300),
        Arc::new(SystemClock),
        OnRecord(Arc::new(|| {})),
    )
    .unwrap();
    desk.start_tse().await;
    assert!(desk.status().available, "{:?}", desk.status());
    Desk {
        desk,
        outbox,
        faults,
        tse,
        _dir: dir,
    }
}

fn wheat(quantity_milli: i64) -> SaleLine {
    let gross = (quantity_milli * 32 + 500) / 1000;
    SaleLine {
        text: "Futterweizen".into(),
        article_id: Some("A-WHEAT".into()),
        quantity_milli,
        unit: "kg".into(),
        unit_price_cents: 32,
        gross_cents: gross,
        vat_key: 2,
    }
}

fn cash(amount_cents: i64) -> Vec<Payment> {
    vec![Payment {
        kind: PaymentType::Bar,
        amount_cents,
    }]
}

fn anna() -> NewSale {
    NewSale {
        operator: "Anna".into(),
        ..NewSale::default()
    }
}

/// Every record of a kind in the outbox, in order.
fn records<T: serde::de::DeserializeOwned>(outbox: &Outbox, kind: &str) -> Vec<T> {
    outbox
        .pending_after(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kind)
        .map(|r| serde_json::from_value(r.payload).unwrap())
        .collect()
}

/// The TSE's own export, every log verified, by file name.
async fn exported_logs(d: &Desk) -> Vec<(String, logmsg::LogMessage)> {
    let info = d.tse.info().await.unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(&info.public_key_base64)
        .unwrap();
    let tar = d.tse.export(ExportFilter::default()).await.unwrap();
    let logs = export::read_export(&tar).unwrap().logs;
    for (name, log) in &logs {
        logmsg::verify(log, &key).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    logs
}

#[tokio::test]
async fn a_counter_sale_is_signed_recorded_and_carries_a_verifiable_qr_code() {
    let d = desk().await;
    let sale = d
        .desk
        .sell(anna(), vec![wheat(2_500)], cash(80))
        .await
        .unwrap();
    assert_eq!(sale.receipt_no, 1);
    assert_eq!(sale.process_data, "Beleg^0.00_0.80_0.00_0.00_0.00^0.80:Bar");
    let tse = sale.tse.as_ref().unwrap();
    logmsg::verify_qr(&tse.qr_code).unwrap();
    assert_eq!(tse.log_messages_base64.len(), 2, "start and finish");
    let recorded: Vec<CashSale> = records(&d.outbox, KIND_CASH_SALE);
    assert_eq!(recorded, vec![sale.clone()]);
    let info: Vec<serde_json::Value> = records(&d.outbox, KIND_TSE_INFO);
    assert_eq!(info.len(), 1, "the TSE is described once");
    // The next receipt number follows, also for a refused sale in between.
    let refused = d.desk.sell(anna(), vec![wheat(2_500)], cash(79)).await;
    assert!(matches!(refused, Err(CashError::Invalid(_))), "{refused:?}");
    let next = d
        .desk
        .sell(anna(), vec![wheat(1_000)], cash(32))
        .await
        .unwrap();
    assert_eq!(next.receipt_no, 2);
}

#[tokio::test]
async fn an_open_sale_signs_its_changes_as_updates_and_can_be_aborted() {
    let d = desk().await;
    let open = d.desk.open_sale(anna()).await.unwrap();
    d.desk.add_line(open.sale_id, wheat(1_000)).await.unwrap();
    d.desk.sign_updates().await;
    d.desk.add_line(open.sale_id, wheat(2_000)).await.unwrap();
    d.desk.sign_updates().await;
    // Nothing changed since: no empty update.
    d.desk.sign_updates().await;
    let sale = d.desk.finish_sale(open.sale_id, cash(96)).await.unwrap();
    assert_eq!(sale.tse.as_ref().unwrap().log_messages_base64.len(), 4);
    let logs = exported_logs(&d).await;
    let updates = logs.iter().filter(|(n, _)| n.contains("_Update_")).count();
    assert_eq!(updates, 2);

    let other = d.desk.open_sale(anna()).await.unwrap();
    d.desk.add_line(other.sale_id, wheat(1_000)).await.unwrap();
    let aborted = d.desk.abort_sale(other.sale_id).await.unwrap();
    assert_eq!(aborted.receipt_type, ReceiptType::AVBelegabbruch);
    assert_eq!(
        aborted.process_data,
        "AVBelegabbruch^0.00_0.00_0.00_0.00_0.00^"
    );
    assert!(d.desk.open_sales().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_storno_negates_the_receipt_once() {
    let d = desk().await;
    let sale = d
        .desk
        .sell(anna(), vec![wheat(10_000)], cash(320))
        .await
        .unwrap();
    let storno = d.desk.storno(sale.receipt_no, "Ben".into()).await.unwrap();
    assert_eq!(storno.cancels_receipt_no, Some(1));
    assert_eq!(storno.lines[0].gross_cents, -320);
    assert_eq!(
        storno.process_data,
        "Beleg^0.00_-3.20_0.00_0.00_0.00^-3.20:Bar"
    );
    assert!(matches!(
        d.desk.storno(1, "Ben".into()).await,
        Err(CashError::AlreadyCancelled(1, 2))
    ));
    assert!(matches!(
        d.desk.storno(2, "Ben".into()).await,
        Err(CashError::NotCancellable(2, _))
    ));
    let closing = d.desk.close_day().await.unwrap();
    assert_eq!(
        (
            closing.z_nr,
            closing.first_receipt_no,
            closing.last_receipt_no
        ),
        (1, Some(1), Some(2))
    );
    assert_eq!(
        (closing.total_gross_cents, closing.total_cash_cents),
        (0, 0)
    );
    let next = d.desk.close_day().await.unwrap();
    assert_eq!((next.z_nr, next.first_receipt_no), (2, None));
}

#[tokio::test]
async fn a_failing_tse_is_an_outage_with_start_end_and_cause_and_selling_goes_on() {
    let d = desk().await;
    d.faults.set_failing(Some("USB-TSE abgezogen".into()));
    let unsigned = d
        .desk
        .sell(anna(), vec![wheat(1_000)], cash(32))
        .await
        .unwrap();
    assert!(unsigned.tse.is_none());
    assert!(
        unsigned
            .tse_error
            .as_deref()
            .unwrap()
            .contains("USB-TSE abgezogen")
    );
    assert!(d.desk.status().outage.is_some());
    // A second failure during the same outage does not start another.
    d.desk
        .sell(anna(), vec![wheat(1_000)], cash(32))
        .await
        .unwrap();
    d.faults.set_failing(None);
    d.desk.start_tse().await;
    assert!(d.desk.status().outage.is_none());
    let outages: Vec<TseOutage> = records(&d.outbox, KIND_TSE_OUTAGE);
    assert_eq!(outages.len(), 2, "{outages:?}");
    assert_eq!(outages[0].outage_id, outages[1].outage_id);
    assert!(outages[0].ended_at.is_none());
    assert!(outages[1].ended_at.is_some());
    assert!(outages[1].cause.contains("USB-TSE abgezogen"));
    let signed = d
        .desk
        .sell(anna(), vec![wheat(1_000)], cash(32))
        .await
        .unwrap();
    assert!(signed.tse.is_some());
    assert_eq!(signed.receipt_no, 3);
}

#[tokio::test]
async fn a_tse_that_answers_late_times_out_and_a_half_finished_transaction_is_aborted_later() {
    let d = desk().await;
    let open = d.desk.open_sale(anna()).await.unwrap();
    let number = open.tse_transaction.unwrap();
    d.desk.add_line(open.sale_id, wheat(1_000)).await.unwrap();
    // Late beyond the 300 ms call timeout: the finish counts as failed.
    d.faults.set_delay_ms(1_000);
    let sale = d.desk.finish_sale(open.sale_id, cash(32)).await.unwrap();
    assert!(sale.tse.is_none());
    assert!(
        sale.tse_error
            .as_deref()
            .unwrap()
            .contains("did not answer within 300 ms"),
        "{sale:?}"
    );
    d.faults.set_delay_ms(0);
    // Let the late call finish inside the TSE task before asking again.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    d.desk.start_tse().await;
    assert!(d.desk.status().available);
    let logs = exported_logs(&d).await;
    let finishes: Vec<&logmsg::LogMessage> = logs
        .iter()
        .filter(|(n, _)| n.contains(&format!("_No-{number}_Finish_")))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(finishes.len(), 1, "the transaction is closed exactly once");
}

#[tokio::test]
async fn a_double_click_finishes_and_cancels_once() {
    let d = desk().await;
    let open = d.desk.open_sale(anna()).await.unwrap();
    d.desk.add_line(open.sale_id, wheat(1_000)).await.unwrap();
    let (a, b) = tokio::join!(
        d.desk.finish_sale(open.sale_id, cash(32)),
        d.desk.finish_sale(open.sale_id, cash(32))
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one finishes: {a:?} {b:?}");
    let (a, b) = tokio::join!(
        d.desk.storno(1, "Ben".into()),
        d.desk.storno(1, "Ben".into())
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one cancels: {a:?} {b:?}");
    let sales: Vec<CashSale> = records(&d.outbox, KIND_CASH_SALE);
    assert_eq!(sales.len(), 2, "the sale and one storno: {sales:?}");
    let outages: Vec<TseOutage> = records(&d.outbox, KIND_TSE_OUTAGE);
    assert!(outages.is_empty(), "a refused second call is no outage");
}
