//! The TR-03151 TAR export: reading one (every log parsed, certificates,
//! `info.csv`) and writing one from stored log messages.
//!
//! Reading uses its own small ustar walker rather than the `tar` crate's
//! reader, because an export cut short must be an error, never a partial
//! success: the walker requires every entry's data and padding to be
//! present and the end-of-archive block to follow, and names the byte
//! offset where things went wrong. It understands the header forms real
//! exports use (ustar, pax `path` records, GNU long names).
//!
//! Writing uses `tar::Builder` with ustar headers; names longer than the
//! 100-byte ustar name field get a pax `path` record, as TR-03151-1 (v1.1)
//! prescribes pax.

use super::logmsg::{self, LogError, LogMessage};

const BLOCK: usize = 512;

/// File name of the info file in an export.
pub const INFO_CSV: &str = "info.csv";

/// The content of a TAR export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `(file name, parsed message)` in archive order.
    pub logs: Vec<(String, LogMessage)>,
    /// `(file name, DER or PEM bytes)` of the `*_X509.*` files.
    pub certificates: Vec<(String, Vec<u8>)>,
    pub info_csv: Option<String>,
}

/// Why a TAR export could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("TAR export truncated at byte {offset}{}", entry_suffix(entry.as_deref()))]
    Truncated {
        offset: usize,
        entry: Option<String>,
    },
    #[error("TAR export malformed at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    #[error("log message {name} in the TAR export is invalid: {source}")]
    BadLog { name: String, source: LogError },
    #[error("TAR export contains {name:?}, which is not a log, certificate or info.csv")]
    UnexpectedEntry { name: String },
    #[error("{name:?} cannot be an export file name: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("writing the TAR export failed: {0}")]
    Write(String),
}

fn entry_suffix(entry: Option<&str>) -> String {
    entry.map_or_else(String::new, |name| format!(" in entry {name:?}"))
}

/// Reads a whole TAR export.
pub fn read_export(tar_bytes: &[u8]) -> Result<Export, ExportError> {
    let mut export = Export {
        logs: Vec::new(),
        certificates: Vec::new(),
        info_csv: None,
    };
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    loop {
        let Some(header) = tar_bytes.get(pos..pos + BLOCK) else {
            // Running out of bytes before the end-of-archive block means the
            // archive was cut, even right after a complete entry.
            return Err(ExportError::Truncated {
                offset: tar_bytes.len(),
                entry: None,
            });
        };
        if header.iter().all(|&b| b == 0) {
            if let Some(i) = tar_bytes[pos..].iter().position(|&b| b != 0) {
                return Err(ExportError::Malformed {
                    offset: pos + i,
                    reason: "data after the end-of-archive block".to_owned(),
                });
            }
            return Ok(export);
        }
        let malformed = |reason: String| ExportError::Malformed {
            offset: pos,
            reason,
        };
        check_checksum(header).map_err(malformed)?;
        let header_name = header_name(header).map_err(malformed)?;
        let size = parse_octal(&header[124..136])
            .ok_or_else(|| malformed(format!("entry {header_name:?} has a bad size field")))?;
        let data_start = pos + BLOCK;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let padded = size.div_ceil(BLOCK).saturating_mul(BLOCK);
        let data_end = data_start.saturating_add(padded);
        if data_end > tar_bytes.len() {
            return Err(ExportError::Truncated {
                offset: tar_bytes.len(),
                entry: Some(long_name.unwrap_or(header_name)),
            });
        }
        let data = &tar_bytes[data_start..data_start + size];
        match header[156] {
            b'0' | 0 | b'7' => {
                let name = long_name.take().unwrap_or(header_name);
                add_file(&mut export, name, data, pos)?;
            }
            b'x' => long_name = pax_path(data).map_err(malformed)?.or(long_name),
            b'L' => {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                let name = std::str::from_utf8(&data[..end])
                    .map_err(|_| malformed("GNU long name is not UTF-8".to_owned()))?;
                long_name = Some(name.to_owned());
            }
            // Directory entries and global pax headers carry no export data.
            b'5' | b'g' => {}
            other => {
                return Err(malformed(format!(
                    "entry {header_name:?} has type {:?}, only regular files belong in an export",
                    char::from(other)
                )));
            }
        }
        pos = data_end;
    }
}

fn add_file(
    export: &mut Export,
    path: String,
    data: &[u8],
    offset: usize,
) -> Result<(), ExportError> {
    // TR-03151 puts every file in the root; tolerate a leading directory
    // some tools add, but classify by the base name.
    let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    if name.ends_with(".log") {
        let msg = logmsg::parse(data).map_err(|source| ExportError::BadLog {
            name: name.clone(),
            source,
        })?;
        export.logs.push((name, msg));
    } else if name.contains("_X509.") {
        export.certificates.push((name, data.to_vec()));
    } else if name == INFO_CSV {
        let text = String::from_utf8(data.to_vec()).map_err(|_| ExportError::Malformed {
            offset,
            reason: "info.csv is not UTF-8".to_owned(),
        })?;
        export.info_csv = Some(text);
    } else if !name.is_empty() {
        return Err(ExportError::UnexpectedEntry { name: path });
    }
    Ok(())
}

fn check_checksum(header: &[u8]) -> Result<(), String> {
    let stored = parse_octal(&header[148..156]).ok_or("bad header checksum field")?;
    // The checksum is computed with its own field read as spaces; some old
    // writers summed signed bytes, so accept either.
    let unsigned: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let signed: i64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(format!(
            "header checksum {stored} does not match {unsigned}; not a TAR header"
        ))
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .filter(|&b| b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    let mut value: u64 = 0;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

fn c_string(field: &[u8]) -> Result<&str, String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).map_err(|_| "entry name is not UTF-8".to_owned())
}

fn header_name(header: &[u8]) -> Result<String, String> {
    let name = c_string(&header[..100])?;
    let prefix = if &header[257..262] == b"ustar" {
        c_string(&header[345..500])?
    } else {
        ""
    };
    Ok(if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    })
}

/// The `path` of a pax extended header, if it has one.
fn pax_path(data: &[u8]) -> Result<Option<String>, String> {
    let mut rest = data;
    let mut path = None;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("pax record without length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("pax record with a bad length")?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("pax record length does not match".to_owned());
        }
        let record = &rest[space + 1..len - 1];
        if let Some(value) = record.strip_prefix(b"path=") {
            let value = std::str::from_utf8(value).map_err(|_| "pax path is not UTF-8")?;
            path = Some(value.to_owned());
        }
        rest = &rest[len..];
    }
    Ok(path)
}

/// Writes a TR-03151 TAR export: the logs (`(file name, DER message)`, in
/// the order given), one certificate and `info.csv`, all in the archive
/// root with mode 0644. Each log's mtime is its log time (0 if that is
/// before 1970); the certificate and info.csv get mtime 0. Every log is
/// parsed first, so a corrupt stored message fails the export instead of
/// going out to an auditor.
pub fn write_export(
    logs: &[(String, Vec<u8>)],
    certificate: (&str, &[u8]),
    info_csv: &str,
) -> Result<Vec<u8>, ExportError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in logs {
        let msg = logmsg::parse(bytes).map_err(|source| ExportError::BadLog {
            name: name.clone(),
            source,
        })?;
        let mtime = msg
            .log_time
            .unix()
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(0);
        append(&mut builder, name, bytes, mtime)?;
    }
    let (certificate_name, certificate_bytes) = certificate;
    append(&mut builder, certificate_name, certificate_bytes, 0)?;
    append(&mut builder, INFO_CSV, info_csv.as_bytes(), 0)?;
    builder
        .into_inner()
        .map_err(|e| ExportError::Write(e.to_string()))
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mtime: u64,
) -> Result<(), ExportError> {
    let invalid = |reason| ExportError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid("empty or a directory"));
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(invalid("files must be in the archive root"));
    }
    let write_error = |e: std::io::Error| ExportError::Write(format!("{name}: {e}"));
    if name.len() > 100 {
        let record = pax_record("path", name);
        let mut pax = header(
            &truncate(&format!("PaxHeaders/{name}"), 100),
            record.len(),
            0,
        );
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_cksum();
        builder
            .append(&pax, record.as_bytes())
            .map_err(write_error)?;
    }
    let mut header = header(&truncate(name, 100), data.len(), mtime);
    header.set_cksum();
    builder.append(&header, data).map_err(write_error)
}

fn header(name: &str, size: usize, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    if let Some(ustar) = header.as_ustar_mut() {
        // The name is copied raw: the file names of an export are plain
        // names, not paths to interpret.
        ustar.name = [0; 100];
        ustar.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// One pax record `"<len> <key>=<value>\n"`, whose length counts its own digits.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while (body.len() + len.to_string().len()) != len {
        len = body.len() + len.to_string().len();
    }
    format!("{len}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tse::logmsg::{LogKind, LogTime, Operation, SigningContext};
    use p256::ecdsa::{Signature, SigningKey, signature::Signer as _};

    fn sample_logs() -> Vec<(String, Vec<u8>)> {
        let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
        let public_key = key.verifying_key().to_encoded_point(false);
        let serial = logmsg::serial_number(public_key.as_bytes());
        (1..=3u64)
            .map(|counter| {
                let kind = LogKind::Transaction {
                    operation: Operation::Start,
                    client_id: format!("ERS-{}", "x".repeat(counter as usize * 30)),
                    process_data: Vec::new(),
                    process_type: Some("Kassenbeleg-V1".to_owned()),
                    transaction_number: counter,
                };
                let time = LogTime::Unix(1_700_000_000 + counter as i64);
                let dtbs = logmsg::encode_dtbs(
                    &kind,
                    &SigningContext {
                        serial_number: &serial,
                        signature_algorithm_oid: logmsg::algorithm_oid("ecdsa-plain-SHA256")
                            .unwrap(),
                        signature_counter: counter,
                        log_time: &time,
                    },
                )
                .unwrap();
                let signature: Signature = key.sign(&dtbs);
                let bytes = logmsg::assemble(&dtbs, &signature.to_bytes());
                let name = logmsg::file_name(&logmsg::parse(&bytes).unwrap());
                (name, bytes)
            })
            .collect()
    }

    fn sample_export() -> Vec<u8> {
        write_export(
            &sample_logs(),
            ("abc_X509.der", b"certificate"),
            "\"description:\",\"d\",\"manufacturer:\",\"m\",\"version:\",\"v\"",
        )
        .unwrap()
    }

    #[test]
    fn write_then_read() {
        let logs = sample_logs();
        assert!(logs[2].0.len() > 100, "a name needs a pax record");
        let export = read_export(&sample_export()).unwrap();
        let names: Vec<&str> = export.logs.iter().map(|(n, _)| n.as_str()).collect();
        let expected: Vec<&str> = logs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected);
        for ((_, msg), (_, bytes)) in export.logs.iter().zip(&logs) {
            assert_eq!(msg, &logmsg::parse(bytes).unwrap());
        }
        assert_eq!(
            export.certificates,
            vec![("abc_X509.der".to_owned(), b"certificate".to_vec())]
        );
        assert!(export.info_csv.unwrap().starts_with("\"description:\""));
    }

    #[test]
    fn the_tar_crate_reads_what_we_write() {
        let bytes = sample_export();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            assert_eq!(entry.header().mode().unwrap(), 0o644);
            seen.push((
                entry.path().unwrap().to_string_lossy().into_owned(),
                entry.header().mtime().unwrap(),
            ));
        }
        let logs = sample_logs();
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[2], (logs[2].0.clone(), 1_700_000_003));
        assert_eq!(seen[3], ("abc_X509.der".to_owned(), 0));
        assert_eq!(seen[4].0, "info.csv");
    }

    #[test]
    fn every_cut_is_an_error() {
        let bytes = sample_export();
        let half = &bytes[..bytes.len() / 2];
        assert!(matches!(
            read_export(half),
            Err(ExportError::Truncated { .. })
        ));
        // Cut at every block boundary and in between: never a partial success.
        let end_marker = bytes.len() - 2 * BLOCK;
        for cut in (0..end_marker).step_by(97) {
            let result = read_export(&bytes[..cut]);
            assert!(
                matches!(result, Err(ExportError::Truncated { .. })),
                "cut at {cut}: {result:?}"
            );
        }
        for cut in (BLOCK..end_marker).step_by(BLOCK) {
            assert!(read_export(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let message = read_export(half).unwrap_err().to_string();
        assert!(
            message.starts_with("TAR export truncated at byte"),
            "{message}"
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let garbage = vec![0x41u8; 4 * BLOCK];
        assert!(matches!(
            read_export(&garbage),
            Err(ExportError::Malformed { offset: 0, .. })
        ));
        let mut trailing = sample_export();
        trailing.push(1);
        trailing.extend(std::iter::repeat_n(0, BLOCK - 1));
        assert!(matches!(
            read_export(&trailing),
            Err(ExportError::Malformed { .. })
        ));
        let mut corrupt_log = sample_export();
        // Flip a byte in the first log's data (block 1).
        corrupt_log[BLOCK] = 0x31;
        assert!(matches!(
            read_export(&corrupt_log),
            Err(ExportError::BadLog { .. })
        ));
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "..", "a/b.log", "x\\y"] {
            assert!(matches!(
                write_export(&[], (name, b""), ""),
                Err(ExportError::InvalidName { .. })
            ));
        }
        let bad_log = vec![("a.log".to_owned(), vec![1, 2, 3])];
        assert!(matches!(
            write_export(&bad_log, ("c_X509.der", b""), ""),
            Err(ExportError::BadLog { .. })
        ));
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("path", "a"), "9 path=a\n");
        let long = "y".repeat(95);
        let record = pax_record("path", &long);
        assert_eq!(record.len().to_string(), record.split(' ').next().unwrap());
        assert_eq!(pax_path(record.as_bytes()).unwrap(), Some(long));
    }
}
