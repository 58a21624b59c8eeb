//! The TR-03151 log message: parsing (versions 2 and 3), encoding
//! (version 2, as the certified TSEs in the field emit it), signature
//! verification, sequence checks, TAR file names and the DSFinV-K receipt
//! QR code.
//!
//! The signature input (DTBS) is the byte run between the outer SEQUENCE
//! header and the signatureValue element, taken verbatim from the message
//! (TR-03151-1 §2.1.4.2). Parsing therefore keeps those bytes instead of
//! re-encoding the decoded fields: a BER indefinite-length processData
//! re-encoded as DER would no longer verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

use super::der::{self, CONSTRUCTED, DerError, Reader, TAG_INTEGER, TAG_OCTET_STRING, Tlv};

/// certifiedDataType of transaction logs (id-SE-API-transaction-log).
pub const OID_TRANSACTION_LOG: &str = "0.4.0.127.0.7.3.7.1.1";
/// certifiedDataType of system logs (id-SE-API-system-log).
pub const OID_SYSTEM_LOG: &str = "0.4.0.127.0.7.3.7.1.2";
/// certifiedDataType of audit logs (id-SE-API-SE-audit-log).
pub const OID_AUDIT_LOG: &str = "0.4.0.127.0.7.3.7.1.3";

/// The signature algorithm of P-256 keys (fiskaly, Epson, Swissbit, the software TSE).
pub const ECDSA_PLAIN_SHA256: &str = "ecdsa-plain-SHA256";
/// The signature algorithm of P-384 keys (D-Trust / Deutsche Fiskal).
pub const ECDSA_PLAIN_SHA384: &str = "ecdsa-plain-SHA384";

/// DSFinV-K name of Unix-time log times.
pub const TIME_FORMAT_UNIX: &str = "unixTime";

/// The 16 signature algorithms TR-03116-5 allows for log messages, by
/// their DSFinV-K name ("ecsdsa" spelled as DSFinV-K spells it).
const ALGORITHMS: [(&str, &str); 16] = [
    ("ecdsa-plain-SHA224", "0.4.0.127.0.7.1.1.4.1.2"),
    ("ecdsa-plain-SHA256", "0.4.0.127.0.7.1.1.4.1.3"),
    ("ecdsa-plain-SHA384", "0.4.0.127.0.7.1.1.4.1.4"),
    ("ecdsa-plain-SHA512", "0.4.0.127.0.7.1.1.4.1.5"),
    ("ecdsa-plain-SHA3-224", "0.4.0.127.0.7.1.1.4.1.8"),
    ("ecdsa-plain-SHA3-256", "0.4.0.127.0.7.1.1.4.1.9"),
    ("ecdsa-plain-SHA3-384", "0.4.0.127.0.7.1.1.4.1.10"),
    ("ecdsa-plain-SHA3-512", "0.4.0.127.0.7.1.1.4.1.11"),
    ("ecsdsa-plain-SHA224", "0.4.0.127.0.7.1.1.4.4.1"),
    ("ecsdsa-plain-SHA256", "0.4.0.127.0.7.1.1.4.4.2"),
    ("ecsdsa-plain-SHA384", "0.4.0.127.0.7.1.1.4.4.3"),
    ("ecsdsa-plain-SHA512", "0.4.0.127.0.7.1.1.4.4.4"),
    ("ecsdsa-plain-SHA3-224", "0.4.0.127.0.7.1.1.4.4.5"),
    ("ecsdsa-plain-SHA3-256", "0.4.0.127.0.7.1.1.4.4.6"),
    ("ecsdsa-plain-SHA3-384", "0.4.0.127.0.7.1.1.4.4.7"),
    ("ecsdsa-plain-SHA3-512", "0.4.0.127.0.7.1.1.4.4.8"),
];

/// DSFinV-K name of a signature algorithm OID.
pub fn algorithm_name(oid: &str) -> Option<&'static str> {
    ALGORITHMS
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(name, _)| *name)
}

/// OID of a signature algorithm by its DSFinV-K name.
pub fn algorithm_oid(name: &str) -> Option<&'static str> {
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, oid)| *oid)
}

/// The transaction step a transaction log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Start,
    Update,
    Finish,
}

impl Operation {
    /// The version-2 spelling, which certified TSEs emit.
    pub fn v2_name(self) -> &'static str {
        match self {
            Self::Start => "StartTransaction",
            Self::Update => "UpdateTransaction",
            Self::Finish => "FinishTransaction",
        }
    }

    /// Accepts the version-2 and the version-3 (lowerCamel) spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "StartTransaction" | "startTransaction" => Some(Self::Start),
            "UpdateTransaction" | "updateTransaction" => Some(Self::Update),
            "FinishTransaction" | "finishTransaction" => Some(Self::Finish),
            _ => None,
        }
    }

    /// The word used in TAR file names.
    pub fn file_word(self) -> &'static str {
        match self {
            Self::Start => "Start",
            Self::Update => "Update",
            Self::Finish => "Finish",
        }
    }
}

/// logTime (version 3: signatureCreationTime), in whichever of the three
/// TR-03151 encodings the TSE uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTime {
    /// INTEGER seconds since 1970-01-01T00:00:00Z.
    Unix(i64),
    /// UTCTime text, `YYMMDDhhmmssZ`.
    Utc(String),
    /// GeneralizedTime text, `YYYYMMDDhhmmss[.fff]Z`.
    Generalized(String),
}

impl LogTime {
    /// Seconds since the epoch (fractions dropped); `None` if the text is
    /// not a valid time.
    pub fn unix(&self) -> Option<i64> {
        match self {
            Self::Unix(t) => Some(*t),
            Self::Utc(text) => parse_utc_time(text),
            Self::Generalized(text) => parse_generalized_time(text),
        }
    }

    /// DSFinV-K name of the format.
    pub fn format_name(&self) -> &'static str {
        match self {
            Self::Unix(_) => TIME_FORMAT_UNIX,
            Self::Utc(text) if text.len() == 11 => "utcTime",
            Self::Utc(_) => "utcTimeWithSeconds",
            Self::Generalized(text) if text.contains(['.', ',']) => {
                "generalizedTimeWithMilliseconds"
            }
            Self::Generalized(_) => "generalizedTime",
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Unix(t) => der::integer_i64(*t),
            Self::Utc(text) => der::tlv(der::TAG_UTC_TIME, text.as_bytes()),
            Self::Generalized(text) => der::tlv(der::TAG_GENERALIZED_TIME, text.as_bytes()),
        }
    }

    fn file_prefix(&self) -> String {
        match self {
            Self::Unix(t) => format!("Unixt_{t}"),
            Self::Utc(text) => format!("Utc_{text}"),
            Self::Generalized(text) => format!("Gent_{text}"),
        }
    }
}

/// What the log records (certifiedDataType and certifiedData).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogKind {
    Transaction {
        operation: Operation,
        client_id: String,
        /// Chunks of an indefinite-length processData concatenated.
        process_data: Vec<u8>,
        process_type: Option<String>,
        transaction_number: u64,
    },
    System {
        /// Version 2 operationType / version 3 eventType, e.g. `updateTime`.
        operation_type: String,
        /// Version 2 systemOperationData / version 3 eventData (content octets).
        data: Vec<u8>,
    },
    Audit {
        /// seAuditData.
        data: Vec<u8>,
    },
}

/// A parsed log message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    pub version: u8,
    pub kind: LogKind,
    /// SHA-256 of the signing public key.
    pub serial_number: Vec<u8>,
    pub signature_algorithm_oid: String,
    pub signature_counter: u64,
    pub log_time: LogTime,
    /// Plain `r‖s`.
    pub signature: Vec<u8>,
    /// The signature input, verbatim from the message.
    pub dtbs: Vec<u8>,
}

impl LogMessage {
    /// The transaction number of a transaction log.
    pub fn transaction_number(&self) -> Option<u64> {
        match &self.kind {
            LogKind::Transaction {
                transaction_number, ..
            } => Some(*transaction_number),
            _ => None,
        }
    }

    /// The client of a transaction log.
    pub fn client_id(&self) -> Option<&str> {
        match &self.kind {
            LogKind::Transaction { client_id, .. } => Some(client_id),
            _ => None,
        }
    }
}

/// Why bytes are not a TR-03151 log message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Der(#[from] DerError),
    #[error("not a log message: outer element has tag 0x{0:02x}, expected SEQUENCE 0x30")]
    NotASequence(u8),
    #[error("{0} missing")]
    Missing(&'static str),
    #[error("version {0} not supported")]
    UnsupportedVersion(i64),
    #[error("unknown certifiedDataType {0}")]
    UnknownDataType(String),
    #[error("unknown operationType {0:?}")]
    UnknownOperation(String),
    #[error("{field} at byte {offset} has tag 0x{tag:02x}, expected 0x{expected:02x}")]
    UnexpectedTag {
        field: &'static str,
        offset: usize,
        tag: u8,
        expected: u8,
    },
    #[error("{field} appears twice (second at byte {offset})")]
    Duplicate { field: &'static str, offset: usize },
    #[error("unexpected element with tag 0x{tag:02x} at byte {offset}")]
    UnexpectedElement { offset: usize, tag: u8 },
}

/// Why a signature, key or serial number does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("serial number {log} of the log is not SHA-256 of the public key ({key})")]
    SerialMismatch { log: String, key: String },
    #[error("signature algorithm {0} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("bad public key: {0}")]
    BadPublicKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("bad QR code: {0}")]
    BadQr(String),
}

/// Why a run of log messages is not a consistent sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("log {index}: signature counter {found} does not follow {previous}")]
    CounterNotIncreasing {
        index: usize,
        previous: u64,
        found: u64,
    },
    #[error("log {index}: transaction {transaction_number} started a second time")]
    DuplicateStart {
        index: usize,
        transaction_number: u64,
    },
    #[error(
        "log {index}: transaction {transaction_number} was started by client {start_client:?} but continued by {client:?}"
    )]
    ClientMismatch {
        index: usize,
        transaction_number: u64,
        start_client: String,
        client: String,
    },
    #[error(
        "log {index}: transaction {transaction_number} has signature counter {found}, not above its start's {start}"
    )]
    BeforeStart {
        index: usize,
        transaction_number: u64,
        start: u64,
        found: u64,
    },
    #[error("log {index}: transaction {transaction_number} continued after its finish")]
    AfterFinish {
        index: usize,
        transaction_number: u64,
    },
}

/// Parses one DER log message (version 2 or 3).
pub fn parse(bytes: &[u8]) -> Result<LogMessage, LogError> {
    let outer = der::parse_single(bytes)?;
    if outer.tag != der::TAG_SEQUENCE {
        return Err(LogError::NotASequence(outer.tag));
    }
    let mut r = outer.reader()?;

    let version_tlv = expect(&mut r, TAG_INTEGER, "version")?;
    let version = version_tlv.as_i64()?;
    let version = match version {
        2 | 3 => version as u8,
        other => return Err(LogError::UnsupportedVersion(other)),
    };
    let data_type = expect(&mut r, der::TAG_OID, "certifiedDataType")?.as_oid()?;
    let mut kind = match data_type.as_str() {
        OID_TRANSACTION_LOG => parse_transaction(&mut r)?,
        OID_SYSTEM_LOG => parse_system(&mut r, version)?,
        OID_AUDIT_LOG => LogKind::Audit { data: Vec::new() },
        _ => return Err(LogError::UnknownDataType(data_type)),
    };
    let serial_number = expect(&mut r, TAG_OCTET_STRING, "serialNumber")?
        .value
        .to_vec();
    let algorithm = expect(&mut r, der::TAG_SEQUENCE, "signatureAlgorithm")?;
    let mut algorithm_reader = algorithm.reader()?;
    let signature_algorithm_oid = expect(
        &mut algorithm_reader,
        der::TAG_OID,
        "signatureAlgorithm.algorithm",
    )?
    .as_oid()?;

    let mut tail = Vec::new();
    while !r.is_empty() {
        let start = r.position();
        tail.push((start, r.read()?));
    }
    let Some((signature_start, signature)) = tail.pop() else {
        return Err(LogError::Missing("signatureCounter"));
    };
    if signature.tag != TAG_OCTET_STRING {
        return Err(LogError::Missing("signatureValue"));
    }
    let mut rest = tail.into_iter().map(|(_, tlv)| tlv);
    if let LogKind::Audit { data } = &mut kind {
        let audit = rest.next().ok_or(LogError::Missing("seAuditData"))?;
        check_tag(&audit, TAG_OCTET_STRING, "seAuditData")?;
        *data = audit.value.to_vec();
    }
    let rest: Vec<Tlv<'_>> = rest.collect();
    let time_name = if version == 3 {
        "signatureCreationTime"
    } else {
        "logTime"
    };
    let (counter, time) = match rest.as_slice() {
        [counter, time] => (counter, time),
        [] => return Err(LogError::Missing("signatureCounter")),
        [only] if only.tag == TAG_INTEGER => {
            return Err(LogError::Missing(if version == 3 {
                "signatureCounter or signatureCreationTime"
            } else {
                "signatureCounter or logTime"
            }));
        }
        [_] => return Err(LogError::Missing("signatureCounter")),
        [.., extra, _, _] => {
            return Err(LogError::UnexpectedElement {
                offset: extra.offset,
                tag: extra.tag,
            });
        }
    };
    check_tag(counter, TAG_INTEGER, "signatureCounter")?;
    let signature_counter = counter.as_u64()?;
    let log_time = match time.tag {
        TAG_INTEGER => LogTime::Unix(time.as_i64()?),
        der::TAG_UTC_TIME => LogTime::Utc(time.as_str()?.to_owned()),
        der::TAG_GENERALIZED_TIME => LogTime::Generalized(time.as_str()?.to_owned()),
        tag => {
            return Err(LogError::UnexpectedTag {
                field: time_name,
                offset: time.offset,
                tag,
                expected: TAG_INTEGER,
            });
        }
    };

    Ok(LogMessage {
        version,
        kind,
        serial_number,
        signature_algorithm_oid,
        signature_counter,
        log_time,
        signature: signature.value.to_vec(),
        dtbs: outer.value[..signature_start].to_vec(),
    })
}

fn check_tag(tlv: &Tlv<'_>, tag: u8, field: &'static str) -> Result<(), LogError> {
    if tlv.tag == tag {
        Ok(())
    } else {
        Err(LogError::UnexpectedTag {
            field,
            offset: tlv.offset,
            tag: tlv.tag,
            expected: tag,
        })
    }
}

fn expect<'a>(r: &mut Reader<'a>, tag: u8, field: &'static str) -> Result<Tlv<'a>, LogError> {
    match r.peek_tag() {
        None => Err(LogError::Missing(field)),
        Some(found) if found != tag => Err(LogError::UnexpectedTag {
            field,
            offset: r.offset(),
            tag: found,
            expected: tag,
        }),
        Some(_) => Ok(r.read()?),
    }
}

/// Reads the context-specific elements that follow certifiedDataType, up
/// to the first universal one (serialNumber).
fn context_fields<'a>(r: &mut Reader<'a>) -> Result<Vec<Tlv<'a>>, LogError> {
    let mut fields = Vec::new();
    while r.peek_tag().is_some_and(|t| t & 0xC0 == der::CONTEXT) {
        fields.push(r.read()?);
    }
    Ok(fields)
}

fn set_once<'a>(
    slot: &mut Option<Tlv<'a>>,
    tlv: Tlv<'a>,
    field: &'static str,
) -> Result<(), LogError> {
    if slot.is_some() {
        return Err(LogError::Duplicate {
            field,
            offset: tlv.offset,
        });
    }
    *slot = Some(tlv);
    Ok(())
}

fn parse_transaction(r: &mut Reader<'_>) -> Result<LogKind, LogError> {
    let (mut operation, mut client, mut data, mut process_type, mut number) =
        (None, None, None, None, None);
    for field in context_fields(r)? {
        match field.tag & !CONSTRUCTED {
            0x80 => set_once(&mut operation, field, "operationType")?,
            0x81 => set_once(&mut client, field, "clientId")?,
            0x82 => set_once(&mut data, field, "processData")?,
            0x83 => set_once(&mut process_type, field, "processType")?,
            0x85 => set_once(&mut number, field, "transactionNumber")?,
            // additionalExternalData / additionalInternalData: RFU, signed
            // as part of the DTBS but carrying nothing we use.
            0x84 | 0x86 => {}
            _ => {
                return Err(LogError::UnexpectedElement {
                    offset: field.offset,
                    tag: field.tag,
                });
            }
        }
    }
    let operation = operation.ok_or(LogError::Missing("operationType"))?;
    let name = operation.as_str()?;
    let operation =
        Operation::from_name(name).ok_or_else(|| LogError::UnknownOperation(name.to_owned()))?;
    let client_id = client
        .ok_or(LogError::Missing("clientId"))?
        .as_str()?
        .to_owned();
    let process_data = data
        .ok_or(LogError::Missing("processData"))?
        .octets(TAG_OCTET_STRING)?
        .into_owned();
    let process_type = process_type
        .map(|t| t.as_str().map(str::to_owned))
        .transpose()?;
    let transaction_number = number
        .ok_or(LogError::Missing("transactionNumber"))?
        .as_u64()?;
    Ok(LogKind::Transaction {
        operation,
        client_id,
        process_data,
        process_type,
        transaction_number,
    })
}

fn parse_system(r: &mut Reader<'_>, version: u8) -> Result<LogKind, LogError> {
    // Version 2: [0] operationType, [1] systemOperationData, [2] internal.
    // Version 3: [0] eventType, [1] eventOrigin, [2] eventTriggeredByUser,
    // [3] eventData, [4] internal.
    let data_tag = if version == 2 { 0x81 } else { 0x83 };
    let (mut operation, mut data) = (None, None);
    for field in context_fields(r)? {
        let number = field.tag & !CONSTRUCTED;
        if number == 0x80 {
            set_once(&mut operation, field, "operationType")?;
        } else if number == data_tag {
            set_once(&mut data, field, "systemOperationData")?;
        }
    }
    let operation_type = operation
        .ok_or(LogError::Missing("operationType"))?
        .as_str()?
        .to_owned();
    Ok(LogKind::System {
        operation_type,
        data: data.map(|d| d.value.to_vec()).unwrap_or_default(),
    })
}

/// The signer-side fields of a log message.
#[derive(Debug, Clone, Copy)]
pub struct SigningContext<'a> {
    /// SHA-256 of the public key, see [`serial_number`].
    pub serial_number: &'a [u8],
    pub signature_algorithm_oid: &'a str,
    pub signature_counter: u64,
    pub log_time: &'a LogTime,
}

/// The version-2 DTBS (signature input) of a log message: every element
/// from version to logTime, without the outer SEQUENCE header.
pub fn encode_dtbs(kind: &LogKind, ctx: &SigningContext<'_>) -> Result<Vec<u8>, LogError> {
    let mut out = der::integer_u64(2);
    let (oid, audit) = match kind {
        LogKind::Transaction { .. } => (OID_TRANSACTION_LOG, None),
        LogKind::System { .. } => (OID_SYSTEM_LOG, None),
        LogKind::Audit { data } => (OID_AUDIT_LOG, Some(data)),
    };
    out.extend_from_slice(&der::oid(oid)?);
    match kind {
        LogKind::Transaction {
            operation,
            client_id,
            process_data,
            process_type,
            transaction_number,
        } => {
            der::push_tlv(&mut out, 0x80, operation.v2_name().as_bytes());
            der::push_tlv(&mut out, 0x81, client_id.as_bytes());
            der::push_tlv(&mut out, 0x82, process_data);
            if let Some(process_type) = process_type {
                der::push_tlv(&mut out, 0x83, process_type.as_bytes());
            }
            der::push_tlv(&mut out, 0x85, &der::uint_content(*transaction_number));
        }
        LogKind::System {
            operation_type,
            data,
        } => {
            der::push_tlv(&mut out, 0x80, operation_type.as_bytes());
            der::push_tlv(&mut out, 0x81, data);
        }
        LogKind::Audit { .. } => {}
    }
    der::push_tlv(&mut out, TAG_OCTET_STRING, ctx.serial_number);
    let algorithm = der::oid(ctx.signature_algorithm_oid)?;
    der::push_tlv(&mut out, der::TAG_SEQUENCE, &algorithm);
    if let Some(audit) = audit {
        der::push_tlv(&mut out, TAG_OCTET_STRING, audit);
    }
    out.extend_from_slice(&der::integer_u64(ctx.signature_counter));
    out.extend_from_slice(&ctx.log_time.encode());
    Ok(out)
}

/// The whole log message: the DTBS and the signatureValue in the outer SEQUENCE.
pub fn assemble(dtbs: &[u8], signature: &[u8]) -> Vec<u8> {
    let signature = der::tlv(TAG_OCTET_STRING, signature);
    der::constructed(der::TAG_SEQUENCE, &[dtbs, &signature])
}

/// TSE serial number: SHA-256 over the uncompressed public key `04‖X‖Y`.
pub fn serial_number(public_key_uncompressed: &[u8]) -> [u8; 32] {
    Sha256::digest(public_key_uncompressed).into()
}

/// Checks that `msg` was signed by `public_key_uncompressed` (`04‖X‖Y`):
/// serial number, algorithm and the ECDSA signature over the DTBS.
pub fn verify(msg: &LogMessage, public_key_uncompressed: &[u8]) -> Result<(), VerifyError> {
    let key_serial = serial_number(public_key_uncompressed);
    if msg.serial_number != key_serial {
        return Err(VerifyError::SerialMismatch {
            log: hex::encode(&msg.serial_number),
            key: hex::encode(key_serial),
        });
    }
    let name = algorithm_name(&msg.signature_algorithm_oid);
    match name {
        Some(ECDSA_PLAIN_SHA256) => {
            use p256::ecdsa::signature::Verifier as _;
            check_point(public_key_uncompressed, 32)?;
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key_uncompressed)
                .map_err(|_| VerifyError::BadPublicKey("not a point on P-256".to_owned()))?;
            let signature = p256::ecdsa::Signature::from_slice(&msg.signature)
                .map_err(|_| VerifyError::BadSignature)?;
            // The Verifier impl hashes the message with SHA-256, which is
            // exactly "ECDSA over SHA-256 of the DTBS".
            key.verify(&msg.dtbs, &signature)
                .map_err(|_| VerifyError::BadSignature)
        }
        Some(ECDSA_PLAIN_SHA384) => {
            use p384::ecdsa::signature::Verifier as _;
            check_point(public_key_uncompressed, 48)?;
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key_uncompressed)
                .map_err(|_| VerifyError::BadPublicKey("not a point on P-384".to_owned()))?;
            let signature = p384::ecdsa::Signature::from_slice(&msg.signature)
                .map_err(|_| VerifyError::BadSignature)?;
            key.verify(&msg.dtbs, &signature)
                .map_err(|_| VerifyError::BadSignature)
        }
        Some(other) => Err(VerifyError::UnsupportedAlgorithm(other.to_owned())),
        None => Err(VerifyError::UnsupportedAlgorithm(
            msg.signature_algorithm_oid.clone(),
        )),
    }
}

fn check_point(key: &[u8], coordinate_len: usize) -> Result<(), VerifyError> {
    if key.len() != 1 + 2 * coordinate_len || key.first() != Some(&0x04) {
        return Err(VerifyError::BadPublicKey(format!(
            "expected an uncompressed point of {} bytes starting with 04, got {} bytes",
            1 + 2 * coordinate_len,
            key.len()
        )));
    }
    Ok(())
}

/// Checks a run of logs of one key, in the order given: signature counters
/// strictly increase, and each transaction's update and finish logs come
/// from the client that started it, after its start. A transaction whose
/// start is not in `logs` is not an error (a filtered export may begin in
/// the middle of a transaction).
pub fn check_sequence(logs: &[LogMessage]) -> Result<(), SequenceError> {
    use std::collections::{HashMap, HashSet};

    for (index, pair) in logs.windows(2).enumerate() {
        if pair[1].signature_counter <= pair[0].signature_counter {
            return Err(SequenceError::CounterNotIncreasing {
                index: index + 1,
                previous: pair[0].signature_counter,
                found: pair[1].signature_counter,
            });
        }
    }
    let mut starts: HashMap<u64, (&str, u64)> = HashMap::new();
    for (index, log) in logs.iter().enumerate() {
        let LogKind::Transaction {
            operation: Operation::Start,
            client_id,
            transaction_number,
            ..
        } = &log.kind
        else {
            continue;
        };
        if starts
            .insert(*transaction_number, (client_id, log.signature_counter))
            .is_some()
        {
            return Err(SequenceError::DuplicateStart {
                index,
                transaction_number: *transaction_number,
            });
        }
    }
    let mut finished: HashSet<u64> = HashSet::new();
    for (index, log) in logs.iter().enumerate() {
        let LogKind::Transaction {
            operation,
            client_id,
            transaction_number,
            ..
        } = &log.kind
        else {
            continue;
        };
        if *operation == Operation::Start {
            continue;
        }
        if finished.contains(transaction_number) {
            return Err(SequenceError::AfterFinish {
                index,
                transaction_number: *transaction_number,
            });
        }
        if *operation == Operation::Finish {
            finished.insert(*transaction_number);
        }
        let Some(&(start_client, start_counter)) = starts.get(transaction_number) else {
            continue;
        };
        if start_client != client_id {
            return Err(SequenceError::ClientMismatch {
                index,
                transaction_number: *transaction_number,
                start_client: start_client.to_owned(),
                client: client_id.clone(),
            });
        }
        if log.signature_counter <= start_counter {
            return Err(SequenceError::BeforeStart {
                index,
                transaction_number: *transaction_number,
                start: start_counter,
                found: log.signature_counter,
            });
        }
    }
    Ok(())
}

/// Name of the log's file in a TAR export (TR-03151 §5.1). Characters
/// that would leave the archive root or break a file system (`/`, `\`,
/// control characters) are replaced by `-`; valid client ids contain none.
pub fn file_name(msg: &LogMessage) -> String {
    let time = msg.log_time.file_prefix();
    let counter = msg.signature_counter;
    let name = match &msg.kind {
        LogKind::Transaction {
            operation,
            client_id,
            transaction_number,
            ..
        } => format!(
            "{time}_Sig-{counter}_Log-Tra_No-{transaction_number}_{}_Client-{client_id}.log",
            operation.file_word()
        ),
        LogKind::System { operation_type, .. } => {
            format!("{time}_Sig-{counter}_Log-Sys_{operation_type}.log")
        }
        LogKind::Audit { .. } => format!("{time}_Sig-{counter}_Log-Aud.log"),
    };
    name.chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect()
}

/// The fields of the DSFinV-K receipt QR code.
#[derive(Debug, Clone, Copy)]
pub struct QrFields<'a> {
    /// ERS serial number = clientId.
    pub client_id: &'a str,
    /// processType of the Finish log.
    pub process_type: &'a str,
    /// processData of the Finish log, exactly as signed.
    pub process_data: &'a str,
    pub transaction_number: u64,
    /// signatureCounter of the Finish log.
    pub signature_counter: u64,
    /// logTime of the Start log.
    pub start_unix: i64,
    /// logTime of the Finish log.
    pub finish_unix: i64,
    /// DSFinV-K name, e.g. `ecdsa-plain-SHA256`.
    pub signature_algorithm: &'a str,
    /// DSFinV-K name, e.g. `unixTime`.
    pub time_format: &'a str,
    /// Finish-log signatureValue, plain `r‖s`.
    pub signature: &'a [u8],
    /// Uncompressed public key `04‖X‖Y`.
    pub public_key: &'a [u8],
}

/// The QR code content `V0;…` (DSFinV-K Anhang I), 12 `;`-separated fields.
pub fn qr_code(fields: &QrFields<'_>) -> String {
    format!(
        "V0;{};{};{};{};{};{};{};{};{};{};{}",
        fields.client_id,
        fields.process_type,
        fields.process_data,
        fields.transaction_number,
        fields.signature_counter,
        iso_millis(fields.start_unix),
        iso_millis(fields.finish_unix),
        fields.signature_algorithm,
        fields.time_format,
        BASE64.encode(fields.signature),
        BASE64.encode(fields.public_key),
    )
}

/// Rebuilds the Finish log's DTBS from a receipt QR code (version 2,
/// `FinishTransaction`, logTime in the stated format) and verifies its
/// signature. A TSE emitting version 3 logs would not verify this way.
pub fn verify_qr(qr: &str) -> Result<(), VerifyError> {
    let bad = |what: &str| VerifyError::BadQr(what.to_owned());
    let parts: Vec<&str> = qr.split(';').collect();
    // processData may itself contain ';' (Bestellung-V1), the other fields
    // cannot, so the fields are taken from both ends.
    if parts.len() < 12 {
        return Err(bad(&format!("{} fields, expected 12", parts.len())));
    }
    if parts[0] != "V0" {
        return Err(bad(&format!("version {:?}, expected V0", parts[0])));
    }
    let n = parts.len();
    let client_id = parts[1];
    let process_type = parts[2];
    let process_data = parts[3..n - 8].join(";");
    let tail = &parts[n - 8..];
    let transaction_number: u64 = tail[0]
        .parse()
        .map_err(|_| bad(&format!("transaction number {:?}", tail[0])))?;
    let signature_counter: u64 = tail[1]
        .parse()
        .map_err(|_| bad(&format!("signature counter {:?}", tail[1])))?;
    if parse_iso_millis(tail[2]).is_none() {
        return Err(bad(&format!("start time {:?}", tail[2])));
    }
    let (finish_unix, finish_millis) =
        parse_iso_millis(tail[3]).ok_or_else(|| bad(&format!("log time {:?}", tail[3])))?;
    let algorithm = tail[4];
    let algorithm_oid = algorithm_oid(algorithm)
        .ok_or_else(|| VerifyError::UnsupportedAlgorithm(algorithm.to_owned()))?;
    let log_time = match tail[5] {
        TIME_FORMAT_UNIX => LogTime::Unix(finish_unix),
        "utcTime" => LogTime::Utc(format_time(finish_unix, "%y%m%d%H%MZ")),
        "utcTimeWithSeconds" => LogTime::Utc(format_time(finish_unix, "%y%m%d%H%M%SZ")),
        "generalizedTime" => LogTime::Generalized(format_time(finish_unix, "%Y%m%d%H%M%SZ")),
        "generalizedTimeWithMilliseconds" => LogTime::Generalized(format!(
            "{}.{finish_millis:03}Z",
            format_time(finish_unix, "%Y%m%d%H%M%S")
        )),
        other => return Err(bad(&format!("time format {other:?}"))),
    };
    let signature = BASE64
        .decode(tail[6])
        .map_err(|e| bad(&format!("signature is not base64: {e}")))?;
    let public_key = BASE64
        .decode(tail[7])
        .map_err(|e| bad(&format!("public key is not base64: {e}")))?;
    let serial = serial_number(&public_key);
    let kind = LogKind::Transaction {
        operation: Operation::Finish,
        client_id: client_id.to_owned(),
        process_data: process_data.into_bytes(),
        process_type: Some(process_type.to_owned()),
        transaction_number,
    };
    let dtbs = encode_dtbs(
        &kind,
        &SigningContext {
            serial_number: &serial,
            signature_algorithm_oid: algorithm_oid,
            signature_counter,
            log_time: &log_time,
        },
    )
    .map_err(|e| bad(&e.to_string()))?;
    let msg = LogMessage {
        version: 2,
        kind,
        serial_number: serial.to_vec(),
        signature_algorithm_oid: algorithm_oid.to_owned(),
        signature_counter,
        log_time,
        signature,
        dtbs,
    };
    verify(&msg, &public_key)
}

fn datetime(unix: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(unix, 0)
}

/// `strftime` of a Unix time; times chrono cannot represent (beyond
/// ±262 000 years) fall back to the plain number, which no real clock reaches.
fn format_time(unix: i64, pattern: &str) -> String {
    datetime(unix).map_or_else(|| unix.to_string(), |t| t.format(pattern).to_string())
}

/// `YYYY-MM-DDThh:mm:ss.fffZ`, the QR code's time format.
pub fn iso_millis(unix: i64) -> String {
    format_time(unix, "%Y-%m-%dT%H:%M:%S.000Z")
}

fn parse_iso_millis(text: &str) -> Option<(i64, u32)> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some((time.timestamp(), time.timestamp_subsec_millis()))
}

fn unix_from_parts(year: i32, digits: &str) -> Option<i64> {
    // digits: MMDDhhmm[ss]
    let field = |i: usize| -> Option<u32> { digits.get(i..i + 2)?.parse().ok() };
    let date = chrono::NaiveDate::from_ymd_opt(year, field(0)?, field(2)?)?;
    let seconds = if digits.len() == 10 { field(8)? } else { 0 };
    let time = date.and_hms_opt(field(4)?, field(6)?, seconds)?;
    Some(time.and_utc().timestamp())
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

fn parse_utc_time(text: &str) -> Option<i64> {
    let body = text.strip_suffix('Z')?;
    if !(body.len() == 10 || body.len() == 12) || !all_digits(body) {
        return None;
    }
    let yy: i32 = body[..2].parse().ok()?;
    // RFC 5280: two-digit years below 50 are in the 21st century.
    let year = if yy < 50 { 2000 + yy } else { 1900 + yy };
    unix_from_parts(year, &body[2..])
}

fn parse_generalized_time(text: &str) -> Option<i64> {
    let body = text.strip_suffix('Z')?;
    let (whole, fraction) = match body.find(['.', ',']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if whole.len() != 14 || !all_digits(whole) {
        return None;
    }
    if fraction.is_some_and(|f| f.is_empty() || !all_digits(f)) {
        return None;
    }
    let year: i32 = whole[..4].parse().ok()?;
    unix_from_parts(year, &whole[4..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{Signature, SigningKey, signature::Signer as _};
    use proptest::prelude::*;

    /// The worked example of tse.md §9, from a real fiskaly export.
    const FISKALY_QR: &str = "V0;934a6304-e181-4c80-926e-c6c9757552ac;Kassenbeleg-V1;Beleg^1010.85_0.00_0.00_0.00_0.00^1010.85:Bar;1;29;2021-09-28T07:38:02.000Z;2021-09-28T07:38:02.000Z;ecdsa-plain-SHA256;unixTime;lRJU5NrPt97H//qOTxtcPnMF5DU3fNSRi2j3X/mKqFU3GjWfARH8yWIi4Qh2cps9H+iim0DaSMdhN6/kfU6FDA==;BM/yvZr8oQL+c1yR4zb8hBgf0Xen31iiTVnKeC4Vo441k+EigNPYLABcteP0P3lnRjN43szSpaQT0nmWyASCExY=";

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn public(key: &SigningKey) -> Vec<u8> {
        key.verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn sign_kind(key: &SigningKey, kind: &LogKind, counter: u64, time: &LogTime) -> Vec<u8> {
        let serial = serial_number(&public(key));
        let dtbs = encode_dtbs(
            kind,
            &SigningContext {
                serial_number: &serial,
                signature_algorithm_oid: algorithm_oid(ECDSA_PLAIN_SHA256).unwrap(),
                signature_counter: counter,
                log_time: time,
            },
        )
        .unwrap();
        let signature: Signature = key.sign(&dtbs);
        assemble(&dtbs, &signature.to_bytes())
    }

    /// Length of the outer SEQUENCE header of an encoded message.
    fn header_len(bytes: &[u8]) -> usize {
        if bytes[1] & 0x80 == 0 {
            2
        } else {
            2 + usize::from(bytes[1] & 0x7F)
        }
    }

    fn finish(client: &str, tx: u64) -> LogKind {
        LogKind::Transaction {
            operation: Operation::Finish,
            client_id: client.to_owned(),
            process_data: b"Beleg^1.00_0.00_0.00_0.00_0.00^1.00:Bar".to_vec(),
            process_type: Some("Kassenbeleg-V1".to_owned()),
            transaction_number: tx,
        }
    }

    #[test]
    fn all_sixteen_algorithms_map_both_ways() {
        for (name, oid) in ALGORITHMS {
            assert_eq!(algorithm_name(oid), Some(name));
            assert_eq!(algorithm_oid(name), Some(oid));
            der::oid(oid).unwrap();
        }
        assert_eq!(algorithm_oid("rsa"), None);
        assert_eq!(algorithm_name("1.2.3"), None);
    }

    #[test]
    fn fiskaly_qr_code_verifies() {
        assert_eq!(verify_qr(FISKALY_QR), Ok(()));
    }

    #[test]
    fn changed_process_data_in_the_qr_code_fails() {
        let tampered = FISKALY_QR.replace("^1010.85:Bar", "^1010.86:Bar");
        assert_ne!(tampered, FISKALY_QR);
        assert_eq!(verify_qr(&tampered), Err(VerifyError::BadSignature));
        let tampered = FISKALY_QR.replace("Beleg^1010.85_", "Beleg^1010.84_");
        assert_eq!(verify_qr(&tampered), Err(VerifyError::BadSignature));
    }

    #[test]
    fn qr_code_round_trip() {
        let key = key();
        let public_key = public(&key);
        let bytes = sign_kind(&key, &finish("ERS-1", 4), 9, &LogTime::Unix(1_632_814_682));
        let msg = parse(&bytes).unwrap();
        let LogKind::Transaction {
            client_id,
            process_data,
            process_type,
            transaction_number,
            ..
        } = &msg.kind
        else {
            panic!("not a transaction log");
        };
        let qr = qr_code(&QrFields {
            client_id,
            process_type: process_type.as_deref().unwrap(),
            process_data: std::str::from_utf8(process_data).unwrap(),
            transaction_number: *transaction_number,
            signature_counter: msg.signature_counter,
            start_unix: 1_632_814_680,
            finish_unix: msg.log_time.unix().unwrap(),
            signature_algorithm: ECDSA_PLAIN_SHA256,
            time_format: msg.log_time.format_name(),
            signature: &msg.signature,
            public_key: &public_key,
        });
        assert!(
            qr.starts_with(
                "V0;ERS-1;Kassenbeleg-V1;Beleg^1.00_0.00_0.00_0.00_0.00^1.00:Bar;4;9;2021-09-28T07:38:00.000Z;2021-09-28T07:38:02.000Z;ecdsa-plain-SHA256;unixTime;"
            ),
            "{qr}"
        );
        assert_eq!(verify_qr(&qr), Ok(()));
    }

    #[test]
    fn encode_sign_parse_verify() {
        let key = key();
        let public_key = public(&key);
        let kind = finish("ERS-1", 4);
        let bytes = sign_kind(&key, &kind, 9, &LogTime::Unix(1_632_814_682));
        let msg = parse(&bytes).unwrap();
        assert_eq!(msg.version, 2);
        assert_eq!(msg.kind, kind);
        assert_eq!(msg.signature_counter, 9);
        assert_eq!(msg.log_time, LogTime::Unix(1_632_814_682));
        assert_eq!(msg.serial_number, serial_number(&public_key));
        assert_eq!(msg.signature.len(), 64);
        assert_eq!(verify(&msg, &public_key), Ok(()));
        assert_eq!(
            file_name(&msg),
            "Unixt_1632814682_Sig-9_Log-Tra_No-4_Finish_Client-ERS-1.log"
        );

        let system = LogKind::System {
            operation_type: "updateTime".to_owned(),
            data: vec![0x81, 0x01, 0x00],
        };
        let msg = parse(&sign_kind(&key, &system, 10, &LogTime::Unix(5))).unwrap();
        assert_eq!(msg.kind, system);
        assert_eq!(verify(&msg, &public_key), Ok(()));
        assert_eq!(file_name(&msg), "Unixt_5_Sig-10_Log-Sys_updateTime.log");

        let audit = LogKind::Audit {
            data: b"audit".to_vec(),
        };
        let time = LogTime::Generalized("20240101120000.123Z".to_owned());
        let msg = parse(&sign_kind(&key, &audit, 11, &time)).unwrap();
        assert_eq!(msg.kind, audit);
        assert_eq!(msg.log_time.unix(), Some(1_704_110_400));
        assert_eq!(verify(&msg, &public_key), Ok(()));
        assert_eq!(
            file_name(&msg),
            "Gent_20240101120000.123Z_Sig-11_Log-Aud.log"
        );
    }

    #[test]
    fn every_flipped_dtbs_byte_is_caught() {
        let key = key();
        let public_key = public(&key);
        let bytes = sign_kind(&key, &finish("ERS-1", 4), 9, &LogTime::Unix(1_632_814_682));
        let header = header_len(&bytes);
        let dtbs_len = parse(&bytes).unwrap().dtbs.len();
        for i in header..header + dtbs_len {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            if let Ok(msg) = parse(&tampered) {
                let result = verify(&msg, &public_key);
                assert!(
                    matches!(
                        result,
                        Err(VerifyError::BadSignature
                            | VerifyError::SerialMismatch { .. }
                            | VerifyError::UnsupportedAlgorithm(_))
                    ),
                    "byte {i}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn wrong_key_and_unsupported_algorithm() {
        let key = key();
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let bytes = sign_kind(&key, &finish("ERS-1", 1), 1, &LogTime::Unix(1));
        let mut msg = parse(&bytes).unwrap();
        assert!(matches!(
            verify(&msg, &public(&other)),
            Err(VerifyError::SerialMismatch { .. })
        ));
        assert!(matches!(
            verify(&msg, &[0x04; 10]),
            Err(VerifyError::SerialMismatch { .. })
        ));
        msg.signature_algorithm_oid = algorithm_oid("ecsdsa-plain-SHA256").unwrap().to_owned();
        assert_eq!(
            verify(&msg, &public(&key)),
            Err(VerifyError::UnsupportedAlgorithm(
                "ecsdsa-plain-SHA256".to_owned()
            ))
        );
        msg.signature_algorithm_oid = "1.2.3.4".to_owned();
        assert_eq!(
            verify(&msg, &public(&key)),
            Err(VerifyError::UnsupportedAlgorithm("1.2.3.4".to_owned()))
        );
    }

    #[test]
    fn p384_logs_verify() {
        use p384::ecdsa::{Signature as Sig384, SigningKey as Key384};
        let key = Key384::from_slice(&[3u8; 48]).unwrap();
        let public_key = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let serial = serial_number(&public_key);
        let time = LogTime::Unix(1_630_666_144);
        let dtbs = encode_dtbs(
            &finish("137741-0007 Hioneu", 227),
            &SigningContext {
                serial_number: &serial,
                signature_algorithm_oid: algorithm_oid(ECDSA_PLAIN_SHA384).unwrap(),
                signature_counter: 672,
                log_time: &time,
            },
        )
        .unwrap();
        let signature: Sig384 = key.sign(&dtbs);
        let msg = parse(&assemble(&dtbs, &signature.to_bytes())).unwrap();
        assert_eq!(verify(&msg, &public_key), Ok(()));
        assert_eq!(
            file_name(&msg),
            "Unixt_1630666144_Sig-672_Log-Tra_No-227_Finish_Client-137741-0007 Hioneu.log"
        );
    }

    /// A message with processData as constructed `[2]` of indefinite length
    /// holding two OCTET STRING chunks, as D-Trust emits after updates.
    #[test]
    fn indefinite_length_process_data() {
        let key = key();
        let public_key = public(&key);
        let serial = serial_number(&public_key);
        let mut dtbs = der::integer_u64(2);
        dtbs.extend(der::oid(OID_TRANSACTION_LOG).unwrap());
        der::push_tlv(&mut dtbs, 0x80, b"FinishTransaction");
        der::push_tlv(&mut dtbs, 0x81, b"ERS-1");
        dtbs.extend([0xA2, 0x80]);
        dtbs.extend(der::tlv(TAG_OCTET_STRING, b"Beleg^1.00"));
        dtbs.extend(der::tlv(TAG_OCTET_STRING, b"_0.00_0.00_0.00_0.00^1.00:Bar"));
        dtbs.extend([0x00, 0x00]);
        der::push_tlv(&mut dtbs, 0x83, b"Kassenbeleg-V1");
        der::push_tlv(&mut dtbs, 0x85, &[0x07]);
        der::push_tlv(&mut dtbs, TAG_OCTET_STRING, &serial);
        let algorithm = der::oid(algorithm_oid(ECDSA_PLAIN_SHA256).unwrap()).unwrap();
        der::push_tlv(&mut dtbs, der::TAG_SEQUENCE, &algorithm);
        dtbs.extend(der::integer_u64(12));
        dtbs.extend(der::integer_i64(1_700_000_000));
        let signature: Signature = key.sign(&dtbs);
        let bytes = assemble(&dtbs, &signature.to_bytes());

        let msg = parse(&bytes).unwrap();
        assert_eq!(msg.dtbs, dtbs);
        let LogKind::Transaction {
            process_data,
            transaction_number,
            ..
        } = &msg.kind
        else {
            panic!("not a transaction log");
        };
        assert_eq!(
            process_data.as_slice(),
            b"Beleg^1.00_0.00_0.00_0.00_0.00^1.00:Bar"
        );
        assert_eq!(*transaction_number, 7);
        assert_eq!(verify(&msg, &public_key), Ok(()));

        // Re-encoding the decoded fields as DER gives another DTBS, which is
        // why the parser must keep the raw bytes.
        let reencoded = encode_dtbs(
            &msg.kind,
            &SigningContext {
                serial_number: &serial,
                signature_algorithm_oid: &msg.signature_algorithm_oid,
                signature_counter: 12,
                log_time: &msg.log_time,
            },
        )
        .unwrap();
        assert_ne!(reencoded, dtbs);
    }

    #[test]
    fn version_3_lower_camel_message() {
        let key = key();
        let public_key = public(&key);
        let serial = serial_number(&public_key);
        let mut dtbs = der::integer_u64(3);
        dtbs.extend(der::oid(OID_TRANSACTION_LOG).unwrap());
        der::push_tlv(&mut dtbs, 0x80, b"startTransaction");
        der::push_tlv(&mut dtbs, 0x81, b"ERS-2");
        der::push_tlv(&mut dtbs, 0x82, b"");
        der::push_tlv(&mut dtbs, 0x83, b"Kassenbeleg-V1");
        der::push_tlv(&mut dtbs, 0x85, &[0x01]);
        der::push_tlv(&mut dtbs, TAG_OCTET_STRING, &serial);
        let algorithm = der::oid(algorithm_oid(ECDSA_PLAIN_SHA256).unwrap()).unwrap();
        der::push_tlv(&mut dtbs, der::TAG_SEQUENCE, &algorithm);
        dtbs.extend(der::integer_u64(1));
        dtbs.extend(der::tlv(der::TAG_UTC_TIME, b"240229235959Z"));
        let signature: Signature = key.sign(&dtbs);
        let msg = parse(&assemble(&dtbs, &signature.to_bytes())).unwrap();
        assert_eq!(msg.version, 3);
        assert_eq!(
            msg.kind,
            LogKind::Transaction {
                operation: Operation::Start,
                client_id: "ERS-2".to_owned(),
                process_data: Vec::new(),
                process_type: Some("Kassenbeleg-V1".to_owned()),
                transaction_number: 1,
            }
        );
        assert_eq!(msg.log_time.unix(), Some(1_709_251_199));
        assert_eq!(verify(&msg, &public_key), Ok(()));
        assert_eq!(
            file_name(&msg),
            "Utc_240229235959Z_Sig-1_Log-Tra_No-1_Start_Client-ERS-2.log"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let key = key();
        let bytes = sign_kind(&key, &finish("ERS-1", 4), 9, &LogTime::Unix(1));
        let cut = &bytes[..bytes.len() - 10];
        let error = parse(cut).unwrap_err().to_string();
        assert!(error.starts_with("truncated at byte 0"), "{error}");

        let mut v4 = bytes.clone();
        v4[header_len(&bytes) + 2] = 4;
        assert_eq!(parse(&v4), Err(LogError::UnsupportedVersion(4)));
        assert_eq!(
            parse(&v4).unwrap_err().to_string(),
            "version 4 not supported"
        );

        // Drop the signatureCounter element from a hand-made message.
        let serial = serial_number(&public(&key));
        let mut dtbs = der::integer_u64(2);
        dtbs.extend(der::oid(OID_SYSTEM_LOG).unwrap());
        der::push_tlv(&mut dtbs, 0x80, b"selfTest");
        der::push_tlv(&mut dtbs, 0x81, b"");
        der::push_tlv(&mut dtbs, TAG_OCTET_STRING, &serial);
        let algorithm = der::oid(algorithm_oid(ECDSA_PLAIN_SHA256).unwrap()).unwrap();
        der::push_tlv(&mut dtbs, der::TAG_SEQUENCE, &algorithm);
        dtbs.extend(der::tlv(der::TAG_UTC_TIME, b"240229235959Z"));
        let error = parse(&assemble(&dtbs, &[0; 64])).unwrap_err();
        assert_eq!(error.to_string(), "signatureCounter missing");

        let mut garbage = bytes.clone();
        garbage[0] = 0x31;
        assert_eq!(parse(&garbage), Err(LogError::NotASequence(0x31)));
    }

    #[test]
    fn log_times() {
        assert_eq!(LogTime::Utc("700101000000Z".to_owned()).unix(), Some(0));
        assert_eq!(
            LogTime::Utc("491231235959Z".to_owned()).unix(),
            Some(2_524_607_999)
        );
        assert_eq!(
            LogTime::Utc("2401010000Z".to_owned()).unix(),
            Some(1_704_067_200)
        );
        assert_eq!(
            LogTime::Generalized("20210928073802Z".to_owned()).unix(),
            Some(1_632_814_682)
        );
        assert_eq!(
            LogTime::Generalized("20210928073802.999Z".to_owned()).unix(),
            Some(1_632_814_682)
        );
        assert_eq!(LogTime::Utc("241301000000Z".to_owned()).unix(), None);
        assert_eq!(LogTime::Utc("240101000000".to_owned()).unix(), None);
        assert_eq!(
            LogTime::Generalized("2021092807380Z".to_owned()).unix(),
            None
        );
        assert_eq!(
            LogTime::Generalized("20210928073802.Z".to_owned()).unix(),
            None
        );
        assert_eq!(
            LogTime::Generalized("2021-09-28T07:38Z".to_owned()).unix(),
            None
        );
        assert_eq!(iso_millis(1_632_814_682), "2021-09-28T07:38:02.000Z");
    }

    fn log(kind: LogKind, counter: u64) -> LogMessage {
        LogMessage {
            version: 2,
            kind,
            serial_number: vec![0; 32],
            signature_algorithm_oid: algorithm_oid(ECDSA_PLAIN_SHA256).unwrap().to_owned(),
            signature_counter: counter,
            log_time: LogTime::Unix(0),
            signature: Vec::new(),
            dtbs: Vec::new(),
        }
    }

    fn tx(operation: Operation, client: &str, number: u64) -> LogKind {
        LogKind::Transaction {
            operation,
            client_id: client.to_owned(),
            process_data: Vec::new(),
            process_type: Some("Kassenbeleg-V1".to_owned()),
            transaction_number: number,
        }
    }

    #[test]
    fn sequence_checks() {
        let good = vec![
            log(
                LogKind::System {
                    operation_type: "registerClient".to_owned(),
                    data: Vec::new(),
                },
                1,
            ),
            log(tx(Operation::Start, "A", 1), 2),
            log(tx(Operation::Start, "B", 2), 3),
            log(tx(Operation::Update, "A", 1), 4),
            log(tx(Operation::Finish, "B", 2), 5),
            log(tx(Operation::Finish, "A", 1), 6),
        ];
        assert_eq!(check_sequence(&good), Ok(()));
        // A filtered export may miss the start.
        assert_eq!(check_sequence(&good[4..]), Ok(()));

        let mut reordered = good.clone();
        reordered.swap(2, 3);
        assert_eq!(
            check_sequence(&reordered),
            Err(SequenceError::CounterNotIncreasing {
                index: 3,
                previous: 4,
                found: 3
            })
        );

        let mut wrong_client = good.clone();
        wrong_client[5] = log(tx(Operation::Finish, "B", 1), 6);
        assert!(matches!(
            check_sequence(&wrong_client),
            Err(SequenceError::ClientMismatch {
                index: 5,
                transaction_number: 1,
                ..
            })
        ));

        let mut twice = good.clone();
        twice.push(log(tx(Operation::Finish, "A", 1), 7));
        assert!(matches!(
            check_sequence(&twice),
            Err(SequenceError::AfterFinish { index: 6, .. })
        ));

        let early = vec![
            log(tx(Operation::Finish, "A", 1), 1),
            log(tx(Operation::Start, "A", 1), 2),
        ];
        assert!(matches!(
            check_sequence(&early),
            Err(SequenceError::BeforeStart { index: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _outcome = parse(&bytes).is_ok();
        }

        #[test]
        fn mutated_messages_never_panic(index in any::<prop::sample::Index>(), value in any::<u8>()) {
            let key = key();
            let mut bytes = sign_kind(&key, &finish("ERS-1", 4), 9, &LogTime::Unix(1));
            let i = index.index(bytes.len());
            bytes[i] = value;
            if let Ok(msg) = parse(&bytes) {
                let _outcome = verify(&msg, &public(&key)).is_ok();
                let _name = file_name(&msg);
            }
        }
    }
}
