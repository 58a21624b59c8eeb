//! Central's check of cash sales through its store, with sales signed by the
//! software TSE: a good sale is `valid`; a changed byte in a log message, a
//! receipt whose data is not what was signed, a key that is not the TSE's,
//! a reordered log, a tampered QR code and a signature counter used twice
//! are each `invalid` with the reason — and every one of them is stored,
//! never dropped. A sale from an outage is `unsigned` with its cause.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use base64::Engine;
use valeo_central::store::{CashSaleFilter, Store, verify_sale};
use valeo_drivers::tse::logmsg::{self, QrFields};
use valeo_drivers::tse::software::SoftwareTse;
use valeo_drivers::tse::{TseBackend, TseInfo};
use valeo_records::cash::{
    CashSale, KIND_CASH_SALE, Payment, PaymentType, ReceiptType, SaleLine, SaleTse, process_data,
};
use valeo_sync::identity::DeviceKey;
use valeo_sync::wire::{Batch, GENESIS_HASH, Record};

const CASH_POINT: &str = "KASSE-01";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A receipt of `gross_cents` signed by `tse` (start and finish).
async fn signed_sale(
    tse: &mut SoftwareTse,
    info: &TseInfo,
    receipt_no: u64,
    gross_cents: i64,
) -> CashSale {
    let lines = vec![SaleLine {
        text: "Futterweizen".into(),
        article_id: None,
        quantity_milli: 1000,
        unit: "kg".into(),
        unit_price_cents: gross_cents,
        gross_cents,
        vat_key: 2,
    }];
    let payments = vec![Payment {
        kind: PaymentType::Bar,
        amount_cents: gross_cents,
    }];
    let data = process_data(ReceiptType::Beleg, &lines, &payments);
    let start = tse
        .start_transaction(CASH_POINT, "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    let finish = tse
        .finish_transaction(
            CASH_POINT,
            start.transaction_number,
            "Kassenbeleg-V1",
            data.as_bytes(),
        )
        .await
        .unwrap();
    let signature = b64().decode(&finish.signature_base64).unwrap();
    let public_key = b64().decode(&info.public_key_base64).unwrap();
    let qr = logmsg::qr_code(&QrFields {
        client_id: CASH_POINT,
        process_type: "Kassenbeleg-V1",
        process_data: &data,
        transaction_number: finish.transaction_number,
        signature_counter: finish.signature_counter,
        start_unix: start.log_time_unix,
        finish_unix: finish.log_time_unix,
        signature_algorithm: &info.signature_algorithm,
        time_format: &info.time_format,
        signature: &signature,
        public_key: &public_key,
    });
    CashSale {
        cash_point: CASH_POINT.into(),
        receipt_no,
        receipt_type: ReceiptType::Beleg,
        cancels_receipt_no: None,
        started_at: "2026-11-29T08:00:00.000Z".into(),
        finished_at: "2026-11-29T08:00:01.000Z".into(),
        operator: "Anna".into(),
        ticket_no: None,
        customer: None,
        lines,
        payments,
        process_type: "Kassenbeleg-V1".into(),
        process_data: data,
        tse: Some(SaleTse {
            serial_hex: info.serial_hex.clone(),
            transaction_number: finish.transaction_number,
            signature_counter: finish.signature_counter,
            start_unix: start.log_time_unix,
            finish_unix: finish.log_time_unix,
            signature_base64: finish.signature_base64.clone(),
            public_key_base64: info.public_key_base64.clone(),
            signature_algorithm: info.signature_algorithm.clone(),
            time_format: info.time_format.clone(),
            log_messages_base64: vec![
                start.log_message_base64.unwrap(),
                finish.log_message_base64.unwrap(),
            ],
            qr_code: qr,
            certified: Some(info.certified),
        }),
        tse_error: None,
    }
}

async fn ready_tse(dir: &std::path::Path) -> (SoftwareTse, TseInfo) {
    let mut tse = SoftwareTse::open(dir).unwrap();
    tse.update_time(chrono::Utc::now().timestamp())
        .await
        .unwrap();
    tse.register_client(CASH_POINT).await.unwrap();
    let info = tse.info().await.unwrap();
    (tse, info)
}

fn tse_of(sale: &mut CashSale) -> &mut SaleTse {
    sale.tse.as_mut().unwrap()
}

#[tokio::test]
async fn every_kind_of_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tse, info) = ready_tse(&dir.path().join("tse")).await;
    let good = signed_sale(&mut tse, &info, 1, 320).await;
    assert_eq!(verify_sale(&good).0, "valid");

    let mut flipped = good.clone();
    let mut log = b64()
        .decode(&tse_of(&mut flipped).log_messages_base64[1])
        .unwrap();
    let middle = log.len() / 2;
    log[middle] ^= 0x01;
    tse_of(&mut flipped).log_messages_base64[1] = b64().encode(&log);
    let (verdict, _) = verify_sale(&flipped);
    assert!(verdict.starts_with("invalid: log message 1"), "{verdict}");

    // Lines that are not what was signed, and signed data that is not the lines.
    let mut other_lines = good.clone();
    other_lines.lines[0].gross_cents = 50_000;
    other_lines.lines[0].unit_price_cents = 50_000;
    other_lines.payments[0].amount_cents = 50_000;
    let (verdict, _) = verify_sale(&other_lines);
    assert!(
        verdict.starts_with("invalid: the process data \"Beleg^0.00_3.20_"),
        "{verdict}"
    );
    let mut other_data = good.clone();
    other_data.process_data = other_data.process_data.replace("3.20", "2.20");
    let (verdict, _) = verify_sale(&other_data);
    assert!(
        verdict.starts_with("invalid: the process data"),
        "{verdict}"
    );

    let mut foreign_key = good.clone();
    let (_, stranger) = ready_tse(&dir.path().join("other-tse")).await;
    tse_of(&mut foreign_key).public_key_base64 = stranger.public_key_base64;
    assert_eq!(
        verify_sale(&foreign_key).0,
        "invalid: the TSE serial is not the SHA-256 of its public key"
    );

    let mut reordered = good.clone();
    tse_of(&mut reordered).log_messages_base64.reverse();
    let (verdict, _) = verify_sale(&reordered);
    assert!(verdict.starts_with("invalid: "), "{verdict}");

    // Without log messages (a cloud TSE keeps them) the QR code is checked,
    // and it must be this receipt's: a genuine one of another receipt is not.
    let mut qr_only = good.clone();
    tse_of(&mut qr_only).log_messages_base64.clear();
    assert_eq!(verify_sale(&qr_only).0, "valid");
    let mut bigger = signed_sale(&mut tse, &info, 2, 500_000).await;
    tse_of(&mut bigger).log_messages_base64.clear();
    tse_of(&mut bigger).qr_code = good.tse.as_ref().unwrap().qr_code.clone();
    assert_eq!(
        verify_sale(&bigger).0,
        "invalid: the QR code is not the receipt's TSE data"
    );
    let mut forged_signature = qr_only.clone();
    let sig = b64().encode([7u8; 64]);
    let qr = tse_of(&mut forged_signature)
        .qr_code
        .replace(&tse_of(&mut qr_only).signature_base64.clone(), &sig);
    tse_of(&mut forged_signature).qr_code = qr;
    tse_of(&mut forged_signature).signature_base64 = sig;
    let (verdict, _) = verify_sale(&forged_signature);
    assert!(verdict.starts_with("invalid: QR code"), "{verdict}");

    let mut unsigned = good.clone();
    unsigned.tse = None;
    unsigned.tse_error = Some("TSE ausgefallen".into());
    assert_eq!(verify_sale(&unsigned).0, "unsigned: TSE ausgefallen");
}

fn batch(key: &DeviceKey, sales: &[CashSale]) -> Batch {
    let mut prev = GENESIS_HASH.to_owned();
    let records = sales
        .iter()
        .enumerate()
        .map(|(i, sale)| {
            let record = Record::new(
                "box",
                "ep",
                i as u64 + 1,
                KIND_CASH_SALE,
                "2026-11-29T08:00:00.000Z",
                serde_json::to_value(sale).unwrap(),
                &prev,
            );
            prev = record.hash.clone();
            record
        })
        .collect();
    let mut batch = Batch {
        v: 1,
        device_id: "box".into(),
        epoch: "ep".into(),
        records,
        sig: String::new(),
    };
    key.sign(&mut batch);
    batch
}

#[tokio::test]
async fn failed_sales_are_stored_with_the_reason_and_a_reused_counter_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tse, info) = ready_tse(&dir.path().join("tse")).await;
    let first = signed_sale(&mut tse, &info, 1, 320).await;
    let mut tampered = signed_sale(&mut tse, &info, 2, 640).await;
    tampered.lines[0].text = "Saatgut".into();
    let mut log = b64()
        .decode(&tse_of(&mut tampered).log_messages_base64[1])
        .unwrap();
    let middle = log.len() / 2;
    log[middle] ^= 0x01;
    tse_of(&mut tampered).log_messages_base64[1] = b64().encode(&log);
    // The TSE loses its logs but keeps its key (a restored backup): its
    // counters start again and sign other data under numbers already used.
    let restored = dir.path().join("restored-tse");
    std::fs::create_dir_all(&restored).unwrap();
    for file in ["key.p8", "cert.der"] {
        std::fs::copy(dir.path().join("tse").join(file), restored.join(file)).unwrap();
    }
    let (mut again, _) = ready_tse(&restored).await;
    let reused = signed_sale(&mut again, &info, 3, 960).await;
    assert_eq!(
        verify_sale(&reused).0,
        "valid",
        "each message on its own verifies"
    );
    let store = Store::open(&dir.path().join("central.db")).unwrap();
    let key = DeviceKey::from_secret([7; 32]);
    store.register_device("box", &key.public_key_hex()).unwrap();
    let outcome = store
        .commit_batch(&batch(&key, &[first, tampered, reused]))
        .unwrap();
    assert_eq!(outcome.inserted, 3, "nothing is dropped");
    let sales = store
        .cash_sales(&CashSaleFilter {
            limit: 10,
            ..CashSaleFilter::default()
        })
        .unwrap();
    let verdict = |n: u64| {
        sales
            .iter()
            .find(|s| s.sale.receipt_no == n)
            .map(|s| s.verification.clone())
            .unwrap()
    };
    assert_eq!(verdict(1), "valid");
    assert!(
        verdict(2).starts_with("invalid: log message 1"),
        "{}",
        verdict(2)
    );
    assert!(
        verdict(3).starts_with("invalid: signature counter ")
            && verdict(3).ends_with("was already used by another log message"),
        "{}",
        verdict(3)
    );
    // Only verified messages are offered in TAR exports: receipt 1's two.
    let logs = store.tse_logs(&info.serial_hex, 0, i64::MAX).unwrap();
    assert_eq!(
        logs.len(),
        2,
        "{:?}",
        logs.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
}
