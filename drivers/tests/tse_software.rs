//! The software TSE end to end: transactions through a `TseHandle`, the
//! TAR export verified log by log, durability across restarts, refusals
//! and injected faults.
#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use valeo_drivers::tse::export::read_export;
use valeo_drivers::tse::logmsg::{
    self, LogKind, LogMessage, Operation, QrFields, SequenceError, VerifyError,
};
use valeo_drivers::tse::software::{DESCRIPTION, SoftwareTse};
use valeo_drivers::tse::{ExportFilter, SignedLog, TseError, TseHandle, TseInfo};

const T0: i64 = 1_700_000_000;
const RECEIPT: &[u8] = b"Beleg^11.90_0.00_0.00_0.00_0.00^11.90:Bar";

/// A clock the test moves by hand.
fn clock() -> (Arc<AtomicI64>, Arc<dyn Fn() -> i64 + Send + Sync>) {
    let now = Arc::new(AtomicI64::new(5));
    let read = Arc::clone(&now);
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

fn open(dir: &Path) -> (SoftwareTse, Arc<AtomicI64>) {
    let (now, clock) = clock();
    (SoftwareTse::open(dir).unwrap().with_clock(clock), now)
}

fn public_key(info: &TseInfo) -> Vec<u8> {
    BASE64.decode(&info.public_key_base64).unwrap()
}

fn message(signed: &SignedLog) -> LogMessage {
    let bytes = BASE64
        .decode(signed.log_message_base64.as_ref().unwrap())
        .unwrap();
    logmsg::parse(&bytes).unwrap()
}

async fn export_logs(handle: &TseHandle, filter: ExportFilter) -> Vec<(String, LogMessage)> {
    read_export(&handle.export(filter).await.unwrap())
        .unwrap()
        .logs
}

#[tokio::test]
async fn transaction_through_the_handle_and_a_verified_export() {
    let dir = tempfile::tempdir().unwrap();
    let (tse, now) = open(dir.path());
    let handle = TseHandle::spawn(Box::new(tse), 2000);

    let info = handle.info().await.unwrap();
    assert!(!info.certified);
    assert_eq!(info.description, DESCRIPTION);
    assert!(info.description.contains("NOT CERTIFIED"));
    assert_eq!(info.signature_algorithm, "ecdsa-plain-SHA256");
    assert_eq!(info.time_format, "unixTime");
    let key = public_key(&info);
    assert_eq!(info.serial_hex, hex::encode(logmsg::serial_number(&key)));

    handle.register_client("ERS-1").await.unwrap();
    assert_eq!(
        handle
            .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
            .await,
        Err(TseError::TimeNotSet)
    );
    handle.update_time(T0).await.unwrap();
    handle.self_test().await.unwrap();

    let start = handle
        .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    assert_eq!(start.transaction_number, 1);
    assert_eq!(
        start.signature_counter, 4,
        "register, updateTime, selfTest, start"
    );
    assert_eq!(start.log_time_unix, T0);
    now.fetch_add(3, Ordering::SeqCst);
    let update = handle
        .update_transaction("ERS-1", 1, "Kassenbeleg-V1", b"Beleg^11.90")
        .await
        .unwrap();
    assert_eq!(
        (update.transaction_number, update.signature_counter),
        (1, 5)
    );
    now.fetch_add(2, Ordering::SeqCst);
    let finish = handle
        .finish_transaction("ERS-1", 1, "Kassenbeleg-V1", RECEIPT)
        .await
        .unwrap();
    assert_eq!(
        (finish.transaction_number, finish.signature_counter),
        (1, 6)
    );
    assert_eq!(finish.log_time_unix, T0 + 5);

    // What the calls returned is the signed message itself.
    for (signed, operation) in [
        (&start, Operation::Start),
        (&update, Operation::Update),
        (&finish, Operation::Finish),
    ] {
        let msg = message(signed);
        logmsg::verify(&msg, &key).unwrap();
        assert_eq!(BASE64.encode(&msg.signature), signed.signature_base64);
        assert_eq!(msg.signature_counter, signed.signature_counter);
        assert_eq!(msg.log_time.unix(), Some(signed.log_time_unix));
        let LogKind::Transaction {
            operation: op,
            client_id,
            transaction_number,
            ..
        } = &msg.kind
        else {
            panic!("not a transaction log");
        };
        assert_eq!(
            (*op, client_id.as_str(), *transaction_number),
            (operation, "ERS-1", 1)
        );
    }
    let LogKind::Transaction { process_data, .. } = &message(&finish).kind else {
        panic!("not a transaction log");
    };
    assert_eq!(process_data.as_slice(), RECEIPT);

    // The receipt QR code built from the results verifies.
    let signature = BASE64.decode(&finish.signature_base64).unwrap();
    let qr = logmsg::qr_code(&QrFields {
        client_id: "ERS-1",
        process_type: "Kassenbeleg-V1",
        process_data: std::str::from_utf8(RECEIPT).unwrap(),
        transaction_number: finish.transaction_number,
        signature_counter: finish.signature_counter,
        start_unix: start.log_time_unix,
        finish_unix: finish.log_time_unix,
        signature_algorithm: &info.signature_algorithm,
        time_format: &info.time_format,
        signature: &signature,
        public_key: &key,
    });
    assert_eq!(logmsg::verify_qr(&qr), Ok(()));

    let tar = handle.export(ExportFilter::default()).await.unwrap();
    let export = read_export(&tar).unwrap();
    assert_eq!(export.logs.len(), 6);
    for (name, msg) in &export.logs {
        logmsg::verify(msg, &key).unwrap();
        assert_eq!(name, &logmsg::file_name(msg));
    }
    let messages: Vec<LogMessage> = export.logs.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(logmsg::check_sequence(&messages), Ok(()));
    let names: Vec<&str> = export.logs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Unixt_5_Sig-1_Log-Sys_registerClient.log",
            &format!("Unixt_{T0}_Sig-2_Log-Sys_updateTime.log"),
            &format!("Unixt_{T0}_Sig-3_Log-Sys_selfTest.log"),
            &format!("Unixt_{T0}_Sig-4_Log-Tra_No-1_Start_Client-ERS-1.log"),
            &format!(
                "Unixt_{}_Sig-5_Log-Tra_No-1_Update_Client-ERS-1.log",
                T0 + 3
            ),
            &format!(
                "Unixt_{}_Sig-6_Log-Tra_No-1_Finish_Client-ERS-1.log",
                T0 + 5
            ),
        ]
    );
    let certificate = BASE64
        .decode(info.certificate_base64.as_ref().unwrap())
        .unwrap();
    assert_eq!(
        export.certificates,
        vec![(format!("{}_X509.der", info.serial_hex), certificate)]
    );
    let info_csv = export.info_csv.unwrap();
    assert!(
        info_csv.starts_with(&format!(
            "\"description:\",\"{DESCRIPTION}\",\"manufacturer:\",\"Valeo Edge\",\"version:\",\""
        )),
        "{info_csv}"
    );
}

#[tokio::test]
async fn tampered_logs_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (tse, _now) = open(dir.path());
    let handle = TseHandle::spawn(Box::new(tse), 2000);
    handle.update_time(T0).await.unwrap();
    handle.register_client("ERS-1").await.unwrap();
    let start = handle
        .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    handle
        .finish_transaction("ERS-1", start.transaction_number, "Kassenbeleg-V1", RECEIPT)
        .await
        .unwrap();
    let key = public_key(&handle.info().await.unwrap());
    let logs = export_logs(&handle, ExportFilter::default()).await;
    let (_, finish) = logs.last().unwrap();
    logmsg::verify(finish, &key).unwrap();

    // Every single bit of the signed input matters.
    for i in 0..finish.dtbs.len() {
        let mut tampered = finish.clone();
        tampered.dtbs[i] ^= 0x40;
        assert_eq!(
            logmsg::verify(&tampered, &key),
            Err(VerifyError::BadSignature),
            "byte {i}"
        );
    }
    let mut tampered = finish.clone();
    tampered.signature[10] ^= 1;
    assert_eq!(
        logmsg::verify(&tampered, &key),
        Err(VerifyError::BadSignature)
    );

    assert!(matches!(
        handle
            .finish_transaction("ERS-1", start.transaction_number, "Kassenbeleg-V1", RECEIPT)
            .await,
        Err(TseError::Refused(_))
    ));

    // Changing the receipt in the stored file breaks its signature.
    let finish_file = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_Finish_"))
        .unwrap();
    let mut stored = std::fs::read(&finish_file).unwrap();
    let at = stored
        .windows(RECEIPT.len())
        .position(|w| w == RECEIPT)
        .unwrap();
    stored[at + 6] = b'9';
    let msg = logmsg::parse(&stored).unwrap();
    assert_eq!(logmsg::verify(&msg, &key), Err(VerifyError::BadSignature));

    // A log of another TSE does not pass as ours.
    let other_dir = tempfile::tempdir().unwrap();
    let other = SoftwareTse::open(other_dir.path()).unwrap();
    assert!(matches!(
        logmsg::verify(finish, other.public_key()),
        Err(VerifyError::SerialMismatch { .. })
    ));

    // Exchanged logs break the sequence check.
    let mut messages: Vec<LogMessage> = logs.into_iter().map(|(_, m)| m).collect();
    let n = messages.len();
    messages.swap(n - 1, n - 2);
    assert!(matches!(
        logmsg::check_sequence(&messages),
        Err(SequenceError::CounterNotIncreasing { .. })
    ));
}

#[tokio::test]
async fn counters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (tse, _now) = open(dir.path());
    let serial = tse.serial_hex();
    let handle = TseHandle::spawn(Box::new(tse), 2000);
    handle.update_time(T0).await.unwrap();
    handle.register_client("ERS-1").await.unwrap();
    handle.register_client("ERS-2").await.unwrap();
    let first = handle
        .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    let second = handle
        .start_transaction("ERS-2", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    handle
        .finish_transaction(
            "ERS-2",
            second.transaction_number,
            "Kassenbeleg-V1",
            RECEIPT,
        )
        .await
        .unwrap();
    assert_eq!((first.transaction_number, first.signature_counter), (1, 4));
    assert_eq!(
        (second.transaction_number, second.signature_counter),
        (2, 5)
    );
    drop(handle);

    let (tse, _now) = open(dir.path());
    assert_eq!(tse.serial_hex(), serial, "same key after a restart");
    assert_eq!(tse.signature_counter(), 6);
    assert_eq!(tse.transaction_number(), 2);
    let handle = TseHandle::spawn(Box::new(tse), 2000);

    // A restarted TSE has lost its time.
    assert_eq!(
        handle
            .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
            .await,
        Err(TseError::TimeNotSet)
    );
    handle.update_time(T0 + 60).await.unwrap();
    // The clients are still registered and transaction 1 is still open.
    let finish = handle
        .finish_transaction("ERS-1", first.transaction_number, "Kassenbeleg-V1", RECEIPT)
        .await
        .unwrap();
    assert_eq!(
        (finish.transaction_number, finish.signature_counter),
        (1, 8)
    );
    let third = handle
        .start_transaction("ERS-2", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    assert_eq!((third.transaction_number, third.signature_counter), (3, 9));
    // Transaction 2 was finished before the restart.
    assert!(matches!(
        handle
            .update_transaction("ERS-2", second.transaction_number, "Kassenbeleg-V1", b"x")
            .await,
        Err(TseError::Refused(_))
    ));

    let key = public_key(&handle.info().await.unwrap());
    let logs = export_logs(&handle, ExportFilter::default()).await;
    let counters: Vec<u64> = logs.iter().map(|(_, m)| m.signature_counter).collect();
    assert_eq!(counters, (1..=9).collect::<Vec<u64>>());
    for (_, msg) in &logs {
        logmsg::verify(msg, &key).unwrap();
    }
    let messages: Vec<LogMessage> = logs.into_iter().map(|(_, m)| m).collect();
    assert_eq!(logmsg::check_sequence(&messages), Ok(()));
}

#[tokio::test]
async fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (tse, _now) = open(dir.path());
    let handle = TseHandle::spawn(Box::new(tse), 2000);
    handle.update_time(T0).await.unwrap();
    let refused = |r: Result<SignedLog, TseError>| matches!(r, Err(TseError::Refused(_)));

    assert!(refused(
        handle
            .start_transaction("ERS-unknown", "Kassenbeleg-V1", b"")
            .await
    ));
    handle.register_client("ERS-1").await.unwrap();
    handle.register_client("ERS-2").await.unwrap();
    let info_before = export_logs(&handle, ExportFilter::default()).await.len();
    handle.register_client("ERS-1").await.unwrap();
    assert_eq!(
        export_logs(&handle, ExportFilter::default()).await.len(),
        info_before,
        "registering twice writes no second log"
    );
    assert!(matches!(
        handle.register_client("ERS/1").await,
        Err(TseError::Refused(_))
    ));
    assert!(matches!(
        handle.register_client("ERS_1").await,
        Err(TseError::Refused(_))
    ));

    let start = handle
        .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    let tx = start.transaction_number;
    assert!(refused(
        handle
            .finish_transaction("ERS-1", 99, "Kassenbeleg-V1", RECEIPT)
            .await
    ));
    assert!(refused(
        handle
            .update_transaction("ERS-2", tx, "Kassenbeleg-V1", RECEIPT)
            .await
    ));
    assert!(refused(
        handle
            .finish_transaction("ERS-2", tx, "Kassenbeleg-V1", RECEIPT)
            .await
    ));
    assert!(refused(
        handle
            .finish_transaction("ERS-1", tx, &"x".repeat(101), RECEIPT)
            .await
    ));
    handle
        .finish_transaction("ERS-1", tx, "Kassenbeleg-V1", RECEIPT)
        .await
        .unwrap();
    assert!(refused(
        handle
            .finish_transaction("ERS-1", tx, "Kassenbeleg-V1", RECEIPT)
            .await
    ));
    assert!(refused(
        handle
            .update_transaction("ERS-1", tx, "Kassenbeleg-V1", RECEIPT)
            .await
    ));
    // Refused calls signed nothing: the counters have no gap.
    let next = handle
        .start_transaction("ERS-2", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    assert_eq!(next.transaction_number, tx + 1);
    let logs = export_logs(&handle, ExportFilter::default()).await;
    let counters: Vec<u64> = logs.iter().map(|(_, m)| m.signature_counter).collect();
    assert_eq!(counters, (1..=counters.len() as u64).collect::<Vec<u64>>());
}

#[tokio::test]
async fn export_filters_by_time_and_client() {
    let dir = tempfile::tempdir().unwrap();
    let (tse, now) = open(dir.path());
    let handle = TseHandle::spawn(Box::new(tse), 2000);
    handle.update_time(T0).await.unwrap();
    handle.register_client("ERS-1").await.unwrap();
    handle.register_client("ERS-2").await.unwrap();
    for (i, client) in ["ERS-1", "ERS-2", "ERS-1"].into_iter().enumerate() {
        now.fetch_add(100, Ordering::SeqCst);
        let start = handle
            .start_transaction(client, "Kassenbeleg-V1", b"")
            .await
            .unwrap();
        assert_eq!(start.transaction_number, i as u64 + 1);
        handle
            .finish_transaction(client, start.transaction_number, "Kassenbeleg-V1", RECEIPT)
            .await
            .unwrap();
    }

    let only_ers2 = export_logs(
        &handle,
        ExportFilter {
            client_id: Some("ERS-2".to_owned()),
            ..ExportFilter::default()
        },
    )
    .await;
    let clients: Vec<Option<&str>> = only_ers2.iter().map(|(_, m)| m.client_id()).collect();
    assert_eq!(clients, [None, None, None, Some("ERS-2"), Some("ERS-2")]);

    let middle = export_logs(
        &handle,
        ExportFilter {
            start_unix: Some(T0 + 150),
            end_unix: Some(T0 + 200),
            client_id: None,
        },
    )
    .await;
    let numbers: Vec<Option<u64>> = middle.iter().map(|(_, m)| m.transaction_number()).collect();
    assert_eq!(numbers, [Some(2), Some(2)]);
    let messages: Vec<LogMessage> = middle.into_iter().map(|(_, m)| m).collect();
    assert_eq!(logmsg::check_sequence(&messages), Ok(()));
}

#[tokio::test]
async fn injected_faults() {
    let dir = tempfile::tempdir().unwrap();
    let (tse, _now) = open(dir.path());
    let faults = tse.faults();
    let handle = TseHandle::spawn(Box::new(tse), 100);
    handle.update_time(T0).await.unwrap();
    handle.register_client("ERS-1").await.unwrap();

    faults.set_failing(Some("USB stick pulled".to_owned()));
    let down = Err(TseError::Unavailable("USB stick pulled".to_owned()));
    assert_eq!(handle.info().await.map(|_| ()), down);
    assert_eq!(handle.self_test().await, down);
    assert_eq!(handle.update_time(T0).await, down);
    assert_eq!(
        handle
            .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
            .await
            .map(|_| ()),
        down
    );
    assert_eq!(
        handle.export(ExportFilter::default()).await.map(|_| ()),
        down
    );

    faults.set_failing(None);
    let start = handle
        .start_transaction("ERS-1", "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    assert_eq!(start.transaction_number, 1);

    faults.set_delay_ms(500);
    assert_eq!(
        handle
            .finish_transaction("ERS-1", 1, "Kassenbeleg-V1", RECEIPT)
            .await,
        Err(TseError::Timeout(100))
    );
    faults.set_delay_ms(0);
    // Let the TSE task work off the slow call before asking again.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    // The TSE finished the timed-out call anyway (TseHandle never cuts a
    // call in half), so the transaction is closed now.
    let finish_again = handle
        .finish_transaction("ERS-1", 1, "Kassenbeleg-V1", RECEIPT)
        .await;
    assert!(
        matches!(finish_again, Err(TseError::Refused(_))),
        "{finish_again:?}"
    );
}
