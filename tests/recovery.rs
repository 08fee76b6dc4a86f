//! Crash recovery of a partition log, driven through real files: torn tails, garbage tails,
//! flipped bits, lost or garbage index files, multi-segment recovery, checkpoint files, and
//! property tests over random segment contents.
//!
//! Crashes are simulated by editing the directory of a cleanly closed log (cutting or
//! corrupting a `.log`, deleting the `clean-shutdown` marker) or by `FaultFs` power loss.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use brooklet::io::{EIO, Fault, FaultFs, FaultOp, PowerLoss};
use brooklet::{Durability, Error, LogConfig, LogRecord, PartitionLog, Record, RecoveryReport, Truncation};
use proptest::prelude::*;

mod common;
use common::{checkpoint_bytes, synced_through};

const MARKER: &str = "clean-shutdown";
const RECOVERY_POINT: &str = "recovery-point";
const LOG_START: &str = "log-start-offset";
/// Size of the fixed batch header (`brooklet::record::batch::HEADER_LEN`).
const HEADER_LEN: u64 = brooklet::record::batch::HEADER_LEN as u64;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn seg_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// splitmix64: deterministic bytes for garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Batch number `b` of the test workloads: 1–5 records with varied keys, values (some
/// tombstones, sizes 0–300), headers, and explicit timestamps, some out of order.
fn batch(b: u64) -> Vec<Record> {
    let count = 1 + (b * 7 % 5);
    (0..count)
        .map(|i| {
            let n = b * 10 + i;
            let ts = 1_000_000 + n as i64 * 10 - if i % 3 == 2 { 25 } else { 0 };
            let mut r = Record::new().timestamp(ts);
            if n % 4 != 3 {
                r = r.key(format!("key-{}", n % 7));
            }
            if n % 9 != 8 {
                let len = ((n * 37) % 300) as usize;
                r = r.value((0..len).map(|j| (n as usize * 31 + j) as u8).collect::<Vec<u8>>());
            }
            if n.is_multiple_of(3) {
                r = r.header("trace", format!("t{n}")).header("src", vec![n as u8; 3]);
            }
            r
        })
        .collect()
}

/// What a workload wrote: records by offset, and each batch's base offset.
struct Written {
    records: Vec<Record>,
    bases: Vec<u64>,
}

/// Appends batches `0..n` to a fresh log in `dir` and closes it cleanly.
fn write_log(dir: &Path, config: &LogConfig, n: u64) -> Written {
    let log = PartitionLog::open(dir, config.clone()).unwrap();
    let mut written = Written {
        records: Vec::new(),
        bases: Vec::new(),
    };
    for b in 0..n {
        let records = batch(b);
        let info = log.append(&records, Durability::Written).unwrap();
        assert_eq!(info.base_offset, written.records.len() as u64);
        written.bases.push(info.base_offset);
        written.records.extend(records);
    }
    log.close().unwrap();
    written
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A fresh copy of `template`.
fn fresh_copy(template: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(template, dir.path());
    dir
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn truncate_file(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip(path: &Path, position: u64, mask: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[position as usize] ^= mask;
    fs::write(path, bytes).unwrap();
}

fn append_bytes(path: &Path, extra: &[u8]) {
    let mut bytes = fs::read(path).unwrap();
    bytes.extend_from_slice(extra);
    fs::write(path, bytes).unwrap();
}

/// Base offsets of the segments in `dir`, ascending.
fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log").and_then(|stem| stem.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// A batch as framed in a `.log` file.
#[derive(Debug, Clone, Copy)]
struct Framed {
    position: u64,
    base_offset: u64,
    size: u64,
}

/// Walks the framing (base offset u64 LE at 0, length u32 LE at 8) of a well-formed `.log`.
fn framed_batches(path: &Path) -> Vec<Framed> {
    let bytes = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let base_offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let length = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        let size = u64::from(length) + 12;
        out.push(Framed {
            position: at as u64,
            base_offset,
            size,
        });
        at += size as usize;
    }
    assert_eq!(at, bytes.len(), "{} is not whole batches", path.display());
    out
}

fn assert_record(got: &LogRecord, want: &Record, offset: u64) {
    assert_eq!(got.offset, offset);
    assert_eq!(got.key.as_ref(), want.key_bytes(), "key at offset {offset}");
    assert_eq!(got.value.as_ref(), want.value_bytes(), "value at offset {offset}");
    assert_eq!(got.headers.as_slice(), want.headers(), "headers at offset {offset}");
    assert_eq!(Some(got.timestamp), want.timestamp_ms(), "timestamp at offset {offset}");
}

fn same_record(got: &LogRecord, want: &Record) -> bool {
    got.key.as_ref() == want.key_bytes()
        && got.value.as_ref() == want.value_bytes()
        && got.headers.as_slice() == want.headers()
        && Some(got.timestamp) == want.timestamp_ms()
}

/// Every record from the log start to the visible end, through reads of about 4 KiB; every
/// read and every record must succeed. Ends exactly at the log end offset.
fn read_all(log: &PartitionLog) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    loop {
        let batches = log.read(next, 4096).unwrap();
        let Some(last) = batches.last() else { break };
        let after = last.last_offset() + 1;
        assert!(after > next, "read({next}) made no progress");
        for b in &batches {
            for r in b.records() {
                let r = r.unwrap();
                if r.offset >= next {
                    out.push(r);
                }
            }
        }
        next = after;
    }
    assert_eq!(next, log.log_end_offset(), "reads stopped before the log end");
    out
}

/// Asserts that `log` holds exactly `want` (records by offset, from offset 0).
fn assert_log_holds(log: &PartitionLog, want: &[Record]) {
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), want.len() as u64);
    let got = read_all(log);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_record(g, w, i as u64);
    }
}

/// Reads every offset on its own (`read(o, 1)`) and checks the record at it.
fn assert_every_offset_reads(log: &PartitionLog, want: &[Record]) {
    for (o, w) in want.iter().enumerate() {
        let o = o as u64;
        let batches = log.read(o, 1).unwrap();
        let first = batches.first().unwrap_or_else(|| panic!("read({o}) returned nothing"));
        assert!(
            first.base_offset() <= o && o <= first.last_offset(),
            "read({o}) returned batch {}..={}",
            first.base_offset(),
            first.last_offset()
        );
        let got = first
            .records()
            .map(Result::unwrap)
            .find(|r| r.offset == o)
            .unwrap_or_else(|| panic!("offset {o} missing from its batch"));
        assert_record(&got, w, o);
    }
}

/// Appends one record and checks it gets `expected_offset` and reads back.
fn assert_appends_at(log: &PartitionLog, expected_offset: u64) {
    let info = log
        .append(
            &[Record::new().key("after").value("recovery").timestamp(5)],
            Durability::Written,
        )
        .unwrap();
    assert_eq!((info.base_offset, info.last_offset), (expected_offset, expected_offset));
    assert_eq!(log.log_end_offset(), expected_offset + 1);
    let batches = log.read(expected_offset, 1).unwrap();
    let record = batches[0].records().next().unwrap().unwrap();
    assert_eq!(record.offset, expected_offset);
    assert_eq!(record.value.as_deref(), Some(&b"recovery"[..]));
}

/// The first offset whose record's timestamp is ≥ `ts`, by brute force.
fn brute_offset_for_timestamp(records: &[Record], ts: i64) -> Option<u64> {
    records
        .iter()
        .position(|r| r.timestamp_ms().unwrap() >= ts)
        .map(|p| p as u64)
}

/// Timestamps to query: every record's, ±1, and beyond both ends.
fn timestamp_queries(records: &[Record]) -> Vec<i64> {
    let mut ts: Vec<i64> = records
        .iter()
        .flat_map(|r| {
            let t = r.timestamp_ms().unwrap();
            [t - 1, t, t + 1]
        })
        .collect();
    ts.extend([i64::MIN, 0, i64::MAX]);
    ts.sort_unstable();
    ts.dedup();
    ts
}

// ---------------------------------------------------------------------------------------
// 1. Torn tail
// ---------------------------------------------------------------------------------------

/// A crash can leave the last batch cut at any byte (it was not synced: the recovery point
/// is its base offset). For every cut inside the last batch,
/// recovery truncates back to the batch's start, reports it exactly, keeps every earlier
/// record, and the next append takes the lost batch's offset. A cut exactly at the batch's
/// start leaves only whole batches: nothing is invalid, so there is no truncation.
#[test]
fn recover_torn_tail_at_every_byte() {
    let template = tempfile::tempdir().unwrap();
    let config = LogConfig::default().index_interval_bytes(100);
    // Batches 0..4 of the workload, then a last batch of four records with headers.
    let log = PartitionLog::open(template.path(), config.clone()).unwrap();
    let mut records = Vec::new();
    let mut starts = Vec::new();
    let mut bases = Vec::new();
    let mut position = 0u64;
    let last_batch: Vec<Record> = (0..4)
        .map(|i| {
            Record::new()
                .key(format!("last-{i}"))
                .value(vec![b'v'; 10 + i * 7])
                .header("h", vec![i as u8])
                .timestamp(2_000_000 + i as i64)
        })
        .collect();
    for b in 0..5u64 {
        let batch_records = if b == 4 { last_batch.clone() } else { batch(b) };
        let info = log.append(&batch_records, Durability::Written).unwrap();
        starts.push(position);
        bases.push(info.base_offset);
        position += info.size_bytes as u64;
        records.extend(batch_records);
    }
    log.close().unwrap();
    let log_path = seg_path(template.path(), 0, "log");
    assert_eq!(file_len(&log_path), position);
    let (last_start, last_base) = (starts[4], bases[4]);
    let kept = &records[..last_base as usize];

    for keep_marker in [false, true] {
        for cut in last_start..position {
            let ctx = format!("cut at byte {cut} (last batch {last_start}..{position}), marker kept: {keep_marker}");
            let dir = fresh_copy(template.path());
            let path = seg_path(dir.path(), 0, "log");
            truncate_file(&path, cut);
            if !keep_marker {
                fs::remove_file(dir.path().join(MARKER)).unwrap();
            }
            // The crash came while the last batch was written, after a sync of the others.
            synced_through(dir.path(), last_base);
            let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            let report = log.recovery_report().clone();
            let truncation = (cut > last_start).then(|| Truncation {
                path: path.clone(),
                position: last_start,
                bytes_removed: cut - last_start,
                reason: report.truncation.as_ref().map(|t| t.reason.clone()).unwrap_or_default(),
                zeros_only: false,
            });
            assert_eq!(
                report,
                RecoveryReport {
                    clean_shutdown: false,
                    segments_scanned: 1,
                    batches_scanned: 4,
                    bytes_scanned: last_start,
                    truncation,
                    segments_deleted: vec![],
                    log_end_offset: last_base,
                },
                "{ctx}"
            );
            if let Some(t) = &report.truncation {
                assert!(t.reason.contains("torn"), "{ctx}: reason {:?}", t.reason);
            }
            assert_eq!(file_len(&path), last_start, "{ctx}");
            assert_log_holds(&log, kept);
            assert_appends_at(&log, last_base);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Garbage tail
// ---------------------------------------------------------------------------------------

/// Bytes after the last batch that are not a batch (random bytes, or zeros where the file
/// size reached disk before the data) are cut at the old end, whether or not the marker is
/// there (a marker whose recorded size does not match is not trusted).
#[test]
fn recover_garbage_after_last_batch() {
    let template = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let written = write_log(template.path(), &config, 6);
    let end_position = file_len(&seg_path(template.path(), 0, "log"));
    let mut rng = Rng(7);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for len in [1usize, 11, 12, 56, 57, 58, 300, 5000] {
        cases.push((format!("{len} random bytes"), rng.bytes(len)));
    }
    for len in [1usize, 12, 57, 4096, 100_000] {
        cases.push((format!("{len} zeros"), vec![0; len]));
    }
    for (name, garbage) in &cases {
        for keep_marker in [false, true] {
            let ctx = format!("{name}, marker kept: {keep_marker}");
            let dir = fresh_copy(template.path());
            let path = seg_path(dir.path(), 0, "log");
            append_bytes(&path, garbage);
            if !keep_marker {
                fs::remove_file(dir.path().join(MARKER)).unwrap();
            }
            let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            let report = log.recovery_report();
            assert!(!report.clean_shutdown, "{ctx}");
            assert_eq!(report.segments_scanned, 1, "{ctx}");
            assert_eq!(report.batches_scanned, written.bases.len() as u64, "{ctx}");
            assert_eq!(report.bytes_scanned, end_position, "{ctx}");
            let t = report
                .truncation
                .as_ref()
                .unwrap_or_else(|| panic!("{ctx}: no truncation"));
            assert_eq!(
                (&t.path, t.position, t.bytes_removed),
                (&path, end_position, garbage.len() as u64),
                "{ctx}"
            );
            assert!(!t.reason.is_empty(), "{ctx}");
            assert_eq!(report.log_end_offset, written.records.len() as u64, "{ctx}");
            assert_eq!(file_len(&path), end_position, "{ctx}");
            assert_log_holds(&log, &written.records);
            assert_appends_at(&log, written.records.len() as u64);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3, 4. Flipped bits
// ---------------------------------------------------------------------------------------

/// A cleanly closed template with two segments whose last (active) one holds seven batches.
/// Returns the dir, what was written, the last segment's base offset and its framing.
fn multi_segment_template(config: &LogConfig) -> (tempfile::TempDir, Written, u64, Vec<Framed>) {
    let template = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(template.path(), config.clone()).unwrap();
    let mut written = Written {
        records: Vec::new(),
        bases: Vec::new(),
    };
    let mut in_segment = 0;
    for b in 0.. {
        let segments = log.segment_count();
        let records = batch(b);
        let info = log.append(&records, Durability::Written).unwrap();
        written.bases.push(info.base_offset);
        written.records.extend(records);
        in_segment = if log.segment_count() > segments {
            1
        } else {
            in_segment + 1
        };
        if log.segment_count() == 2 && in_segment == 7 {
            break;
        }
    }
    log.close().unwrap();
    let bases = segment_bases(template.path());
    assert_eq!(bases.len(), 2);
    let last = bases[1];
    let framed = framed_batches(&seg_path(template.path(), last, "log"));
    assert_eq!(framed.len(), 7);
    (template, written, last, framed)
}

/// Byte positions inside a batch of `size` bytes to corrupt: framing (base offset, length),
/// every header field from the magic on, the CRC, and record bytes.
fn positions_in_batch(size: u64) -> Vec<(u64, &'static str)> {
    vec![
        (0, "base offset, low byte"),
        (5, "base offset, high byte"),
        (8, "batch length"),
        (12, "magic"),
        (13, "crc"),
        (16, "crc"),
        (17, "attributes"),
        (18, "attributes, high byte"),
        (20, "last offset delta"),
        (26, "first timestamp"),
        (33, "max timestamp"),
        (40, "producer id"),
        (48, "producer epoch"),
        (51, "base sequence"),
        (53, "record count"),
        (54, "record count, second byte"),
        (HEADER_LEN, "first record's length"),
        (HEADER_LEN + 3, "first record"),
        (size / 2, "middle of the records"),
        (size - 1, "last byte"),
    ]
}

/// A flipped bit inside a batch in the middle of the tail segment, found by recovery after a
/// crash: the log is cut at the start of that batch, earlier batches are intact, and the
/// reason names the checksum for corruption inside the CRC-covered bytes.
#[test]
fn recover_flipped_bit_in_tail_segment_cuts_at_its_batch() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let (template, written, last_base, framed) = multi_segment_template(&config);
    let victim = framed[framed.len() / 2];
    let seg_len = file_len(&seg_path(template.path(), last_base, "log"));
    let kept = &written.records[..victim.base_offset as usize];
    let batches_before = framed.iter().filter(|f| f.position < victim.position).count() as u64;

    for (at, field) in positions_in_batch(victim.size) {
        for mask in [0x01u8, 0x80] {
            let ctx = format!(
                "bit {mask:#04x} of byte {at} ({field}) of the batch at {}",
                victim.position
            );
            let dir = fresh_copy(template.path());
            let path = seg_path(dir.path(), last_base, "log");
            flip(&path, victim.position + at, mask);
            fs::remove_file(dir.path().join(MARKER)).unwrap();
            // Synced through the roll to the tail segment, not since.
            synced_through(dir.path(), last_base);
            let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            let report = log.recovery_report().clone();
            assert!(!report.clean_shutdown, "{ctx}");
            assert_eq!(
                report.segments_scanned, 1,
                "{ctx}: only the tail segment holds unsynced data"
            );
            assert_eq!(report.batches_scanned, batches_before, "{ctx}");
            assert_eq!(report.bytes_scanned, victim.position, "{ctx}");
            let t = report
                .truncation
                .clone()
                .unwrap_or_else(|| panic!("{ctx}: no truncation"));
            assert_eq!(
                (&t.path, t.position, t.bytes_removed),
                (&path, victim.position, seg_len - victim.position),
                "{ctx}: reason {:?}",
                t.reason
            );
            if (13..17).contains(&at) || at >= HEADER_LEN || [26, 33, 40, 48, 51].contains(&at) {
                assert!(t.reason.contains("checksum"), "{ctx}: reason {:?}", t.reason);
            } else {
                assert!(!t.reason.is_empty(), "{ctx}");
            }
            assert_eq!(report.segments_deleted, Vec::<u64>::new(), "{ctx}");
            assert_eq!(report.log_end_offset, victim.base_offset, "{ctx}");
            assert_eq!(file_len(&path), victim.position, "{ctx}");
            assert_log_holds(&log, kept);
            assert_appends_at(&log, victim.base_offset);
        }
    }
}

/// Every file of a directory and its bytes.
fn dir_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Opens `dir` and expects the open refused for damage below the recovery point:
/// `Error::Corrupt` at `path`, byte `position`, with a reason holding each of `says`, and
/// every file of the directory as it was.
fn assert_open_refused(dir: &Path, config: &LogConfig, path: &Path, position: u64, says: &[String], ctx: &str) {
    let before = dir_contents(dir);
    match PartitionLog::open(dir, config.clone()) {
        Err(Error::Corrupt {
            path: p,
            position: at,
            reason,
        }) => {
            assert_eq!((p.as_path(), at), (path, position), "{ctx}: {reason}");
            for s in says {
                assert!(reason.contains(s.as_str()), "{ctx}: {reason:?} lacks {s:?}");
            }
        }
        other => panic!("{ctx}: open gave {other:?}"),
    }
    assert!(dir_contents(dir) == before, "{ctx}: a refused open changed files");
}

/// Records below the recovery point were synced (here: the log was closed cleanly, then
/// reopened and killed, so the marker is gone and the point is the end). A flipped bit in
/// one of their batches is damage, not a torn write: the open fails with `Corrupt` at that
/// batch, naming the recovery-point file as the way to accept the loss, and changes no
/// file — before, recovery cut there and deleted the intact batches after it. A read-only
/// open sees the same damage. Removing the recovery-point file (the operator's decision)
/// lets the next open cut at the damage.
#[test]
fn damage_below_the_recovery_point_fails_open_and_cuts_nothing() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let (template, written, last_base, framed) = multi_segment_template(&config);
    let victim = framed[framed.len() / 2];
    let kept = &written.records[..victim.base_offset as usize];
    let end = written.records.len() as u64;
    for (at, field) in [
        (HEADER_LEN + 3, "a record byte"),
        (8, "the batch length"),
        (12, "the magic"),
    ] {
        let ctx = format!("{field} of the batch at {}", victim.position);
        let dir = fresh_copy(template.path());
        let path = seg_path(dir.path(), last_base, "log");
        flip(&path, victim.position + at, 0x01);
        fs::remove_file(dir.path().join(MARKER)).unwrap();
        let recovery_point_file = dir.path().join(RECOVERY_POINT);
        assert_open_refused(
            dir.path(),
            &config,
            &path,
            victim.position,
            &[
                format!("records below offset {end} were synced"),
                format!("stop being valid at offset {}", victim.base_offset),
                format!("removing {}", recovery_point_file.display()),
            ],
            &ctx,
        );
        let before = dir_contents(dir.path());

        let ro = PartitionLog::open_read_only(dir.path(), config.clone()).unwrap();
        match ro.refresh() {
            Err(Error::Corrupt { path: p, reason, .. }) => {
                assert_eq!(p, path, "{ctx}: {reason}");
                assert!(reason.contains("recovery point"), "{ctx}: {reason}");
            }
            other => panic!("{ctx}: read-only refresh gave {other:?}"),
        }
        drop(ro);
        assert!(
            dir_contents(dir.path()) == before,
            "{ctx}: a read-only open changed files"
        );

        // The operator accepts the loss: recovery scans from the first segment and cuts.
        fs::remove_file(&recovery_point_file).unwrap();
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let report = log.recovery_report().clone();
        assert_eq!(report.segments_scanned, 2, "{ctx}");
        let t = report.truncation.unwrap_or_else(|| panic!("{ctx}: no truncation"));
        assert_eq!((&t.path, t.position), (&path, victim.position), "{ctx}");
        assert_eq!(log.log_end_offset(), victim.base_offset, "{ctx}");
        assert_log_holds(&log, kept);
    }
}

/// The last segment lost its end (cut at a batch boundary, so every batch left is valid)
/// below the recovery point: the records after the cut were synced, so this is damage too.
/// The open fails and changes nothing; removing the recovery-point file accepts the loss.
#[test]
fn a_log_that_lost_its_end_below_the_recovery_point_fails_open() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let (template, written, last_base, framed) = multi_segment_template(&config);
    let victim = framed[framed.len() / 2];
    let dir = fresh_copy(template.path());
    let path = seg_path(dir.path(), last_base, "log");
    truncate_file(&path, victim.position);
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    let end = written.records.len();
    assert_open_refused(
        dir.path(),
        &config,
        &path,
        victim.position,
        &[
            format!("records below offset {end} were synced"),
            format!(
                "stop being valid at offset {} (the last segment ends there)",
                victim.base_offset
            ),
        ],
        "a lost end",
    );
    fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.recovery_report().truncation, None);
    assert_eq!(log.log_end_offset(), victim.base_offset);
    assert_log_holds(&log, &written.records[..victim.base_offset as usize]);
}

/// The segment holding the recovery point lost its contents (here: emptied), and a later
/// segment follows. Before, recovery cut at the gap and deleted the later segment, intact
/// records and all; now the open fails with `Corrupt` and every file stays as it was.
#[test]
fn a_segment_emptied_below_the_recovery_point_fails_open_and_deletes_nothing() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let (template, _written, last_base, _framed) = multi_segment_template(&config);
    let dir = fresh_copy(template.path());
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    // Synced through most of the first segment (as a sync before the roll leaves it).
    synced_through(dir.path(), last_base - 1);
    truncate_file(&seg_path(dir.path(), 0, "log"), 0);
    assert_open_refused(
        dir.path(),
        &config,
        &seg_path(dir.path(), last_base, "log"),
        0,
        &[
            format!("the next segment starts at offset {last_base}"),
            "stop being valid at offset 0".to_string(),
        ],
        "an emptied segment",
    );
}

/// Every segment file is gone while the recovery point says records below it were synced:
/// damage too (the log lost all of them), not a new log. Before, the open made an empty log
/// at the log start and lowered the recovery point, silently. Now it fails with `Corrupt`
/// and creates nothing; removing the recovery-point file accepts the loss.
#[test]
fn a_log_whose_segments_are_all_gone_below_the_recovery_point_fails_open() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let (template, written, last_base, _framed) = multi_segment_template(&config);
    let dir = fresh_copy(template.path());
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    for base in [0, last_base] {
        for ext in ["log", "index", "timeindex"] {
            let _ = fs::remove_file(seg_path(dir.path(), base, ext));
        }
    }
    assert!(segment_bases(dir.path()).is_empty());
    let end = written.records.len();
    assert_open_refused(
        dir.path(),
        &config,
        &seg_path(dir.path(), 0, "log"),
        0,
        &[
            format!("records below offset {end} were synced"),
            "stop being valid at offset 0 (no segment file is left)".to_string(),
        ],
        "no segment left",
    );
    fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(segment_bases(dir.path()), vec![0]);
}

/// After a clean close the marker is trusted and nothing is scanned; a bit that flips later
/// (bit rot) inside a batch's checksummed bytes must not be served: reading that batch
/// fails with `Error::Corrupt` naming the `.log` file and the batch's position, while the
/// batches before it still read.
#[test]
fn flipped_bit_in_clean_log_is_not_served() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let (template, written, last_base, framed) = multi_segment_template(&config);
    let k = framed.len() / 2;
    let victim = framed[k];
    let last_offset = framed[k + 1].base_offset - 1;
    for (at, field) in positions_in_batch(victim.size) {
        if at < 12 {
            continue; // framing bytes: see `flipped_base_offset_in_clean_log_is_not_served`
        }
        let ctx = format!("byte {at} ({field}) of the batch at {}", victim.position);
        let dir = fresh_copy(template.path());
        let path = seg_path(dir.path(), last_base, "log");
        flip(&path, victim.position + at, 0x01);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let report = log.recovery_report();
        assert!(report.clean_shutdown, "{ctx}");
        assert_eq!(report.segments_scanned, 0, "{ctx}");
        for offset in [victim.base_offset, last_offset] {
            for max_bytes in [1, 1 << 20] {
                match log.read(offset, max_bytes) {
                    Err(Error::Corrupt {
                        path: p,
                        position,
                        reason,
                    }) => {
                        assert_eq!((&p, position), (&path, victim.position), "{ctx}: {reason}");
                    }
                    other => panic!("{ctx}: read({offset}, {max_bytes}) gave {other:?}"),
                }
            }
        }
        // Batches before the corrupt one are still served, one at a time.
        for f in &framed[..k] {
            let batches = log.read(f.base_offset, 1).unwrap();
            assert_eq!(batches.len(), 1, "{ctx}");
            assert_eq!(batches[0].base_offset(), f.base_offset, "{ctx}");
            for r in batches[0].records() {
                let r = r.unwrap();
                assert_record(&r, &written.records[r.offset as usize], r.offset);
            }
        }
    }
}

/// The base offset is outside the CRC (it is patched in at append time), so a flipped bit
/// there passes the checksum. A read must still not hand out records under offsets they were
/// never appended at: reading the batch fails with `Error::Corrupt` at the batch's position.
#[test]
fn flipped_base_offset_in_clean_log_is_not_served() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let (template, written, last_base, framed) = multi_segment_template(&config);
    let victim = framed[framed.len() / 2];
    let mut problems = Vec::new();
    for (at, mask) in [(0u64, 0x01u8), (0, 0x04), (0, 0x40), (5, 0x01)] {
        let ctx = format!(
            "bit {mask:#04x} of base offset byte {at} of the batch at {}",
            victim.position
        );
        let dir = fresh_copy(template.path());
        let path = seg_path(dir.path(), last_base, "log");
        flip(&path, victim.position + at, mask);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert!(log.recovery_report().clean_shutdown, "{ctx}");
        for max_bytes in [1, 1 << 20] {
            match log.read(victim.base_offset, max_bytes) {
                Err(Error::Corrupt { path: p, position, .. }) if (&p, position) == (&path, victim.position) => {}
                Ok(batches) => {
                    let served: Vec<(u64, bool)> = batches
                        .iter()
                        .flat_map(|b| b.records())
                        .map(|r| {
                            let r = r.unwrap();
                            let genuine = written
                                .records
                                .get(r.offset as usize)
                                .is_some_and(|w| same_record(&r, w));
                            (r.offset, genuine)
                        })
                        .collect();
                    problems.push(format!(
                        "{ctx}: read({}, {max_bytes}) served (offset, is what was appended there): {served:?}",
                        victim.base_offset
                    ));
                }
                Err(other) => problems.push(format!(
                    "{ctx}: read({}, {max_bytes}) gave {other:?}",
                    victim.base_offset
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The length field is outside the CRC too. A sealed segment whose batch claims a length
/// running past the end of the segment cannot be walked past that batch: reading any later
/// offset of the segment fails with `Error::Corrupt` at the batch (not an empty answer, which
/// looks like the end of the log and leaves a consumer waiting there forever), and
/// `truncate_to` such an offset fails without deleting anything.
#[test]
fn a_length_running_past_a_sealed_segment_is_reported_on_read() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let middle = bases[2];
    let framed = framed_batches(&seg_path(template.path(), middle, "log"));
    assert!(framed.len() >= 3, "{framed:?}");
    let (victim, after) = (framed[1], framed[framed.len() - 1]);
    for (byte, mask) in [(9u64, 0x40u8), (11, 0x01)] {
        let ctx = format!("bit {mask:#04x} of length byte {byte}");
        let dir = fresh_copy(template.path());
        let path = seg_path(dir.path(), middle, "log");
        flip(&path, victim.position + byte, mask);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert!(log.recovery_report().clean_shutdown, "{ctx}");
        for max_bytes in [1, 1 << 20] {
            match log.read(after.base_offset, max_bytes) {
                Err(Error::Corrupt { path: p, position, .. }) => {
                    assert_eq!((&p, position), (&path, victim.position), "{ctx}, max_bytes {max_bytes}");
                }
                other => panic!("{ctx}: read({}, {max_bytes}) gave {other:?}", after.base_offset),
            }
        }
        match log.truncate_to(after.base_offset) {
            Err(Error::Corrupt { path: p, position, .. }) => assert_eq!((&p, position), (&path, victim.position)),
            other => panic!("{ctx}: truncate_to({}) gave {other:?}", after.base_offset),
        }
        assert_eq!(log.log_end_offset(), written.records.len() as u64, "{ctx}");
        assert_eq!(segment_bases(dir.path()), bases, "{ctx}");
        // The batches before the damage, and the segments after it, still read.
        let first = log.read(framed[0].base_offset, 1).unwrap();
        assert_eq!(
            first.first().map(|b| b.base_offset()),
            Some(framed[0].base_offset),
            "{ctx}"
        );
        let next_segment = bases[3];
        let later = log.read(next_segment, 1).unwrap();
        assert_eq!(later.first().map(|b| b.base_offset()), Some(next_segment), "{ctx}");
    }
}

/// A sealed segment file cut short by something outside the log while it is open: a read
/// of an offset in the lost part is no batch, and `truncate_to` there fails with `Corrupt`
/// naming the segment, deleting nothing and keeping the end (it cut at the segment's end,
/// deleted every later segment and kept the old log end: a hole the next append wrote past).
#[test]
fn truncate_to_an_offset_a_shortened_segment_lost_fails_and_deletes_nothing() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let middle = bases[2];
    let framed = framed_batches(&seg_path(template.path(), middle, "log"));
    let lost = framed[framed.len() - 1];
    let dir = fresh_copy(template.path());
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let path = seg_path(dir.path(), middle, "log");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(lost.position)
        .unwrap();
    match log.truncate_to(lost.base_offset) {
        Err(Error::Corrupt { path: p, .. }) => assert_eq!(p, path),
        other => panic!("truncate_to({}) gave {other:?}", lost.base_offset),
    }
    assert_eq!(log.log_end_offset(), written.records.len() as u64);
    assert_eq!(segment_bases(dir.path()), bases);
    let next_segment = bases[3];
    let later = log.read(next_segment, 1).unwrap();
    assert_eq!(later.first().map(|b| b.base_offset()), Some(next_segment));
}

/// A sealed segment file deleted from the middle of a log (with its index files): a read of
/// an offset it held is `Error::Corrupt` naming the missing offsets — not an empty answer,
/// at which a consumer waited forever as if at the end — while the segments before and
/// after it still read.
#[test]
fn a_segment_missing_from_the_middle_is_reported_on_read() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let dir = fresh_copy(template.path());
    let (before, gone, after) = (bases[1], bases[2], bases[3]);
    for ext in ["log", "index", "timeindex"] {
        fs::remove_file(seg_path(dir.path(), gone, ext)).unwrap();
    }
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), written.records.len() as u64);
    for offset in [gone, after - 1] {
        match log.read(offset, 1 << 20) {
            Err(Error::Corrupt { path, reason, .. }) => {
                assert_eq!(path, seg_path(dir.path(), before, "log"), "{reason}");
                assert!(reason.contains(&format!("the next one starts at {after}")), "{reason}");
            }
            other => panic!("read({offset}) gave {other:?}"),
        }
    }
    assert_eq!(log.read(before, 1).unwrap()[0].base_offset(), before);
    assert_eq!(log.read(after, 1).unwrap()[0].base_offset(), after);
}

// ---------------------------------------------------------------------------------------
// 5. Index files
// ---------------------------------------------------------------------------------------

fn index_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    segment_bases(dir).into_iter().map(|b| seg_path(dir, b, ext)).collect()
}

/// An edit of one index file.
type FileMutation = fn(&Path);

/// Entry size of an index file: 8 for `.index`, 12 for `.timeindex`.
fn entry_size(path: &Path) -> usize {
    if path.extension().unwrap() == "index" { 8 } else { 12 }
}

/// A sealed segment damaged in its last batch, whose index files are gone: reading it
/// rebuilds its index from the good prefix but does not write that partial index back (it
/// describes less of the `.log` than the file holds, so it would never be loaded again, only
/// rebuilt and rewritten at every start).
#[test]
fn a_partial_rebuild_of_a_damaged_sealed_segment_is_not_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for b in 0..40 {
        log.append(&batch(b), Durability::Written).unwrap();
    }
    log.close().unwrap();
    let first = segment_bases(dir.path())[0];
    fs::remove_file(seg_path(dir.path(), first, "index")).unwrap();
    fs::remove_file(seg_path(dir.path(), first, "timeindex")).unwrap();
    let path = seg_path(dir.path(), first, "log");
    let mut raw = fs::read(&path).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0xff; // the last batch's CRC no longer holds
    fs::write(&path, &raw).unwrap();

    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    let batches = log.read(0, 1024).unwrap();
    assert_eq!(batches.first().map(|b| b.base_offset()), Some(0));
    assert!(!seg_path(dir.path(), first, "index").exists());
    assert!(!seg_path(dir.path(), first, "timeindex").exists());
}

/// Lost or garbage `.index` / `.timeindex` files, of sealed segments and of the active one,
/// are caches: after reopening, every offset reads correctly and `offset_for_timestamp`
/// answers exactly as before (and as a brute-force search of the records).
#[test]
fn missing_or_garbage_index_files_are_rebuilt() {
    let template = tempfile::tempdir().unwrap();
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
    let log = PartitionLog::open(template.path(), config.clone()).unwrap();
    let mut records = Vec::new();
    for b in 0..40 {
        let r = batch(b);
        log.append(&r, Durability::Written).unwrap();
        records.extend(r);
    }
    let queries = timestamp_queries(&records);
    let answers: Vec<Option<u64>> = queries.iter().map(|&t| log.offset_for_timestamp(t).unwrap()).collect();
    for (t, a) in queries.iter().zip(&answers) {
        assert_eq!(
            *a,
            brute_offset_for_timestamp(&records, *t),
            "before close, timestamp {t}"
        );
    }
    log.close().unwrap();
    let bases = segment_bases(template.path());
    assert!(bases.len() >= 3, "want several segments, got {bases:?}");
    let active = *bases.last().unwrap();
    for ext in ["index", "timeindex"] {
        for b in &bases {
            let raw = fs::read(seg_path(template.path(), *b, ext)).unwrap();
            assert!(raw.len() > 8, "{ext} of segment {b} should have entries");
        }
    }

    type Mutation = Box<dyn Fn(&Path)>;
    let mut scenarios: Vec<(String, Mutation)> = vec![
        (
            "every index file deleted".into(),
            Box::new(|dir: &Path| {
                for ext in ["index", "timeindex"] {
                    for p in index_files(dir, ext) {
                        fs::remove_file(p).unwrap();
                    }
                }
            }),
        ),
        (
            "the active segment's index files deleted".into(),
            Box::new(move |dir: &Path| {
                fs::remove_file(seg_path(dir, active, "index")).unwrap();
                fs::remove_file(seg_path(dir, active, "timeindex")).unwrap();
            }),
        ),
        (
            "the sealed segments' index files deleted".into(),
            Box::new(move |dir: &Path| {
                for b in segment_bases(dir).into_iter().filter(|b| *b != active) {
                    fs::remove_file(seg_path(dir, b, "index")).unwrap();
                    fs::remove_file(seg_path(dir, b, "timeindex")).unwrap();
                }
            }),
        ),
    ];
    for ext in ["index", "timeindex"] {
        let per_file: Vec<(&str, FileMutation)> = vec![
            ("replaced by random bytes", |p| {
                let len = fs::read(p).unwrap().len();
                fs::write(p, Rng(len as u64).bytes(len)).unwrap();
            }),
            ("emptied", |p| fs::write(p, b"").unwrap()),
            ("cut inside the file header", |p| truncate_file(p, 5)),
            ("cut inside its last entry", |p| {
                let len = file_len(p);
                truncate_file(p, len - 3);
            }),
            ("cut by its last entry", |p| {
                let len = file_len(p);
                truncate_file(p, len - entry_size(p) as u64);
            }),
            ("cut to the file header alone", |p| truncate_file(p, 8)),
            ("given an entry pointing past the log", |p| {
                let mut raw = fs::read(p).unwrap();
                let log_len = file_len(&p.with_extension("log"));
                if entry_size(p) == 8 {
                    // (relative offset, position): a later batch at a position past the end.
                    raw.extend_from_slice(&1_000_000u32.to_le_bytes());
                    raw.extend_from_slice(&(log_len as u32 + 64).to_le_bytes());
                } else {
                    // (timestamp, relative offset): a later timestamp at an offset past the end.
                    raw.extend_from_slice(&i64::MAX.to_le_bytes());
                    raw.extend_from_slice(&1_000_000u32.to_le_bytes());
                }
                fs::write(p, raw).unwrap();
            }),
        ];
        for (what, mutate) in per_file {
            scenarios.push((
                format!("every .{ext} {what}"),
                Box::new(move |dir: &Path| {
                    for p in index_files(dir, ext) {
                        mutate(&p);
                    }
                }),
            ));
        }
    }

    // Every scenario is checked; the failures are listed together at the end.
    let mut failures = Vec::new();
    for (name, mutate) in &scenarios {
        let dir = fresh_copy(template.path());
        mutate(dir.path());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for round in ["first open", "second open"] {
                let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
                assert_eq!(log.log_end_offset(), records.len() as u64, "{name}, {round}");
                assert_eq!(log.segment_count(), bases.len(), "{name}, {round}");
                assert_every_offset_reads(&log, &records);
                assert_log_holds(&log, &records);
                let wrong: Vec<(i64, Option<u64>, Option<u64>)> = queries
                    .iter()
                    .zip(&answers)
                    .map(|(t, a)| (*t, log.offset_for_timestamp(*t).unwrap(), *a))
                    .filter(|(_, got, want)| got != want)
                    .collect();
                assert!(
                    wrong.is_empty(),
                    "{name}, {round}: {} of {} offset_for_timestamp answers differ; (timestamp, got, want): {:?}",
                    wrong.len(),
                    queries.len(),
                    &wrong[..wrong.len().min(4)]
                );
                log.close().unwrap();
            }
        }));
        if outcome.is_err() {
            failures.push(name.clone());
        }
    }
    assert!(
        failures.is_empty(),
        "scenarios that failed (messages above): {failures:#?}"
    );
}

/// Index files written under a larger `index_max_bytes` are loaded, not refused and
/// rebuilt, once the setting is lowered: an open with the lower setting reads every record
/// without rewriting a single sealed segment's index file (it rebuilt and rewrote them at
/// every open, scanning each whole segment again).
#[test]
fn index_files_written_under_a_larger_index_max_bytes_still_load() {
    let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(1);
    let dir = tempfile::tempdir().unwrap();
    // One small record per batch: each sealed segment's index holds ~50 entries.
    let records: Vec<Record> = (0..400u32)
        .map(|i| {
            Record::new()
                .value(i.to_le_bytes().to_vec())
                .timestamp(1_000 + i64::from(i))
        })
        .collect();
    {
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        for r in &records {
            log.append(std::slice::from_ref(r), Durability::Written).unwrap();
        }
        log.close().unwrap();
    }
    let bases = segment_bases(dir.path());
    assert!(bases.len() >= 4, "{bases:?}");
    let sealed = &bases[..bases.len() - 1];
    let modified = |b: &u64| {
        fs::metadata(seg_path(dir.path(), *b, "index"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before: Vec<_> = sealed.iter().map(modified).collect();
    let index_bytes = file_len(&seg_path(dir.path(), sealed[0], "index"));
    assert!(
        index_bytes > 64,
        "{index_bytes}: the first segment's index must pass the new limit"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let log = PartitionLog::open(dir.path(), config.index_max_bytes(64)).unwrap();
    assert_log_holds(&log, &records);
    assert_eq!(sealed.iter().map(modified).collect::<Vec<_>>(), before);
}

// ---------------------------------------------------------------------------------------
// 6, 7, 8. Multi-segment recovery
// ---------------------------------------------------------------------------------------

/// Writes enough batches for many 4 KiB segments and closes cleanly.
fn many_segment_template(config: &LogConfig) -> (tempfile::TempDir, Written, Vec<u64>) {
    let template = tempfile::tempdir().unwrap();
    let written = write_log(template.path(), config, 90);
    let bases = segment_bases(template.path());
    assert!(bases.len() >= 6, "want many segments, got {bases:?}");
    (template, written, bases)
}

fn total_log_bytes(dir: &Path, bases: &[u64]) -> u64 {
    bases.iter().map(|b| file_len(&seg_path(dir, *b, "log"))).sum()
}

/// After a crash, recovery scans only from the segment holding the recovery point; without a
/// recovery-point file it must scan every segment.
#[test]
fn recovery_scans_from_the_recovery_point() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let last = *bases.last().unwrap();
    let last_batches = framed_batches(&seg_path(template.path(), last, "log"));
    let end = written.records.len() as u64;

    // Crash after everything was synced: the recovery point is the log end, so only the
    // active segment is scanned.
    let dir = fresh_copy(template.path());
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(
        log.recovery_report(),
        &RecoveryReport {
            clean_shutdown: false,
            segments_scanned: 1,
            batches_scanned: last_batches.len() as u64,
            bytes_scanned: file_len(&seg_path(dir.path(), last, "log")),
            truncation: None,
            segments_deleted: vec![],
            log_end_offset: end,
        }
    );
    assert_eq!(log.segment_count(), bases.len());
    assert_log_holds(&log, &written.records);
    assert_appends_at(&log, end);
    drop(log);

    // No recovery point at all: every segment is scanned.
    let dir = fresh_copy(template.path());
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(
        log.recovery_report(),
        &RecoveryReport {
            clean_shutdown: false,
            segments_scanned: bases.len(),
            batches_scanned: written.bases.len() as u64,
            bytes_scanned: total_log_bytes(dir.path(), &bases),
            truncation: None,
            segments_deleted: vec![],
            log_end_offset: end,
        }
    );
    assert_eq!(log.segment_count(), bases.len());
    assert_log_holds(&log, &written.records);
    assert_every_offset_reads(&log, &written.records);
    assert_appends_at(&log, end);
}

/// A real crash (FaultFs power loss, nothing lost because `flush` synced everything):
/// recovery scans at most the last two segments, not the whole log.
#[test]
fn recovery_after_power_loss_scans_only_the_tail() {
    let config = LogConfig::default().segment_bytes(4096);
    let dir = tempfile::tempdir().unwrap();
    let fs_model = FaultFs::new();
    let log = PartitionLog::open_with_vfs(dir.path(), config.clone(), Arc::new(fs_model.clone())).unwrap();
    let mut records = Vec::new();
    for b in 0..90 {
        let r = batch(b);
        log.append(&r, Durability::Written).unwrap();
        records.extend(r);
    }
    log.flush().unwrap();
    let segments = log.segment_count();
    assert!(segments >= 6);
    fs_model.power_loss(PowerLoss::DropUnsynced);
    drop(log);

    let log = PartitionLog::open(dir.path(), config).unwrap();
    let report = log.recovery_report();
    assert!(!report.clean_shutdown);
    assert!(
        (1..=2).contains(&report.segments_scanned),
        "scanned {} of {segments} segments",
        report.segments_scanned
    );
    assert_eq!(report.truncation, None);
    assert_eq!(report.segments_deleted, Vec::<u64>::new());
    assert_eq!(log.segment_count(), segments);
    assert_log_holds(&log, &records);
}

/// A corrupt batch in a middle segment, found by a recovery that scans it: the log is cut
/// there, every later segment is deleted (files gone, base offsets reported), and the log
/// continues from the cut.
#[test]
fn recover_corrupt_middle_segment_deletes_later_segments() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let middle = bases[2];
    let framed = framed_batches(&seg_path(template.path(), middle, "log"));
    let victim = framed[1];

    let dir = fresh_copy(template.path());
    let path = seg_path(dir.path(), middle, "log");
    let seg_len = file_len(&path);
    flip(&path, victim.position + victim.size - 2, 0x20);
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let report = log.recovery_report().clone();
    let batches_before: u64 = bases[..2]
        .iter()
        .map(|b| framed_batches(&seg_path(template.path(), *b, "log")).len() as u64)
        .sum::<u64>()
        + 1;
    assert!(!report.clean_shutdown);
    assert_eq!(report.segments_scanned, 3);
    assert_eq!(report.batches_scanned, batches_before);
    assert_eq!(
        report.bytes_scanned,
        total_log_bytes(template.path(), &bases[..2]) + victim.position
    );
    let t = report.truncation.clone().unwrap();
    assert_eq!(
        (&t.path, t.position, t.bytes_removed),
        (&path, victim.position, seg_len - victim.position)
    );
    assert!(t.reason.contains("checksum"), "reason {:?}", t.reason);
    assert_eq!(report.segments_deleted, bases[3..].to_vec());
    assert_eq!(report.log_end_offset, victim.base_offset);
    for b in &bases[3..] {
        for ext in ["log", "index", "timeindex"] {
            assert!(
                !seg_path(dir.path(), *b, ext).exists(),
                "{ext} of deleted segment {b} is still there"
            );
        }
    }
    assert_eq!(segment_bases(dir.path()), bases[..3].to_vec());
    assert_eq!(log.segment_count(), 3);
    assert_eq!(file_len(&path), victim.position);
    assert_log_holds(&log, &written.records[..victim.base_offset as usize]);
    assert_appends_at(&log, victim.base_offset);
    log.close().unwrap();

    // The cut is durable and clean from here on.
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.log_end_offset(), victim.base_offset + 1);
    assert_eq!(log.segment_count(), 3);
}

/// If recovery does not reach a corrupt sealed segment (it lies below the recovery point),
/// the corruption stays and reads of that batch fail with `Error::Corrupt`; nothing is
/// deleted.
#[test]
fn corrupt_segment_below_recovery_point_is_reported_on_read() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let middle = bases[2];
    let victim = framed_batches(&seg_path(template.path(), middle, "log"))[1];
    let dir = fresh_copy(template.path());
    let path = seg_path(dir.path(), middle, "log");
    flip(&path, victim.position + victim.size - 2, 0x20);
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.segments_scanned, 1);
    assert_eq!(report.truncation, None);
    assert_eq!(log.log_end_offset(), written.records.len() as u64);
    match log.read(victim.base_offset, 1) {
        Err(Error::Corrupt { path: p, position, .. }) => assert_eq!((p, position), (path, victim.position)),
        other => panic!("read of the corrupt batch gave {other:?}"),
    }
}

/// A segment missing from the middle of the log (a gap in the offsets) is found by a full
/// recovery: the log ends before the gap and the segments after it are deleted.
#[test]
fn recover_missing_middle_segment_cuts_at_the_gap() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let dir = fresh_copy(template.path());
    for ext in ["log", "index", "timeindex"] {
        fs::remove_file(seg_path(dir.path(), bases[3], ext)).unwrap();
    }
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
    let after_gap = seg_path(dir.path(), bases[4], "log");
    let after_gap_len = file_len(&after_gap);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let report = log.recovery_report();
    assert_eq!(report.segments_scanned, 3);
    let t = report.truncation.as_ref().unwrap();
    assert_eq!((&t.path, t.position, t.bytes_removed), (&after_gap, 0, after_gap_len));
    assert_eq!(report.segments_deleted, bases[4..].to_vec());
    assert_eq!(report.log_end_offset, bases[3]);
    assert_eq!(segment_bases(dir.path()), bases[..3].to_vec());
    assert_log_holds(&log, &written.records[..bases[3] as usize]);
    assert_appends_at(&log, bases[3]);
}

/// A cleanly closed log with several segments reopens without scanning anything, and the
/// marker is gone once it is open (so a later crash is not taken for a clean stop).
#[test]
fn clean_open_scans_nothing() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    let dir = fresh_copy(template.path());
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(
        log.recovery_report(),
        &RecoveryReport {
            clean_shutdown: true,
            segments_scanned: 0,
            batches_scanned: 0,
            bytes_scanned: 0,
            truncation: None,
            segments_deleted: vec![],
            log_end_offset: written.records.len() as u64,
        }
    );
    assert!(!dir.path().join(MARKER).exists());
    assert_eq!(log.segment_count(), bases.len());
    assert_log_holds(&log, &written.records);
    // Appending and closing again is clean too.
    assert_appends_at(&log, written.records.len() as u64);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.recovery_report().segments_scanned, 0);
    assert_eq!(log.log_end_offset(), written.records.len() as u64 + 1);
}

/// Batches stored under a larger `max_batch_bytes` stay readable after the limit is
/// lowered — on a clean open and through a recovery scan (which must not cut them as
/// "corrupt") — while new appends above the lowered limit are refused.
#[test]
fn lowering_max_batch_bytes_keeps_stored_batches() {
    let dir = tempfile::tempdir().unwrap();
    let big = |tag: u8| Record::new().key(vec![tag]).value(vec![tag; 100_000]).timestamp(1_000);
    let mut want = Vec::new();
    {
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        for b in 0..6u8 {
            let records = if b % 2 == 0 { vec![big(b)] } else { batch(u64::from(b)) };
            log.append(&records, Durability::Written).unwrap();
            want.extend(records);
        }
        log.close().unwrap();
    }
    let lowered = LogConfig::default().max_batch_bytes(4096);
    for clean in [true, false] {
        if !clean {
            fs::remove_file(dir.path().join(MARKER)).unwrap();
            fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
        }
        let log = PartitionLog::open(dir.path(), lowered.clone()).unwrap();
        let report = log.recovery_report();
        assert_eq!(report.clean_shutdown, clean);
        assert_eq!(report.truncation, None, "recovery cut stored batches");
        assert_eq!(log.log_end_offset(), want.len() as u64);
        assert_log_holds(&log, &want);
        assert!(matches!(
            log.append(&[big(9)], Durability::Written),
            Err(Error::RecordTooLarge { max: 4096, .. })
        ));
        assert_eq!(log.log_end_offset(), want.len() as u64);
        log.close().unwrap();
    }
}

/// Protects: a config change that lowers the *effective* `max_batch_bytes` (here smaller
/// segments, which cap it) never makes recovery cut a stored batch whose CRC holds. A zstd
/// batch of 200 KB of records (a few hundred bytes stored) and 10 `Synced` records, a power
/// loss, then a reopen with 16 KiB segments: recovery used to decompress with the new 16 KiB
/// limit, class the batch as corrupt and truncate the whole log at byte 0.
#[test]
fn recovery_keeps_synced_compressed_batches_after_segment_bytes_is_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let log = PartitionLog::open_with_vfs(dir.path(), LogConfig::default(), Arc::new(fs.clone())).unwrap();
    let big: Vec<Record> = (0..50).map(|_| Record::new().value(vec![b'a'; 4000])).collect();
    let info = log
        .append_with(
            &big,
            brooklet::AppendOptions {
                durability: Durability::Synced,
                compression: brooklet::Compression::Zstd,
            },
        )
        .unwrap();
    assert!(info.size_bytes < 16 * 1024, "stored as {} bytes", info.size_bytes);
    for i in 0..10u8 {
        log.append(&[Record::new().value(vec![i])], Durability::Synced).unwrap();
    }
    assert_eq!(log.synced_end_offset(), 60);
    fs.power_loss(PowerLoss::DropUnsynced);
    drop(log);

    let log = PartitionLog::open(dir.path(), LogConfig::default().segment_bytes(16 * 1024)).unwrap();
    let report = log.recovery_report();
    assert!(!report.clean_shutdown);
    assert_eq!(report.truncation, None);
    assert_eq!(log.log_end_offset(), 60);
    // What recovery keeps, readers read: the 200 KB batch too, under the 16 KiB limit.
    let records = read_all(&log);
    assert_eq!(records.len(), 60);
    assert!(
        records[..50]
            .iter()
            .all(|r| r.value.as_deref() == Some(&[b'a'; 4000][..]))
    );
    assert!(
        records[50..]
            .iter()
            .zip(0u8..)
            .all(|(r, i)| r.value.as_deref() == Some(&[i][..]))
    );
    // The lowered limit still governs writes.
    assert!(matches!(
        log.append_with(
            &big,
            brooklet::AppendOptions {
                durability: Durability::Written,
                compression: brooklet::Compression::Zstd,
            }
        ),
        Err(Error::RecordTooLarge { max: 16384, .. })
    ));
}

// ---------------------------------------------------------------------------------------
// 9. Checkpoint files
// ---------------------------------------------------------------------------------------

/// Writing a rebuilt index file fails during recovery: index files are caches, so open
/// warns and goes on (the index lives in memory, and is rebuilt again if needed) instead of
/// failing the open.
#[test]
fn failing_to_write_a_rebuilt_index_does_not_fail_open() {
    let config = LogConfig::default().segment_bytes(4096);
    let (template, written, bases) = many_segment_template(&config);
    assert!(bases.len() >= 3);
    let dir = fresh_copy(template.path());
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
    let disk = FaultFs::new();
    // The first write of the open is the first scanned sealed segment's `.index`.
    disk.inject(Fault {
        op: FaultOp::Write,
        nth: 1,
        errno: EIO,
        forever: false,
    });
    let log = PartitionLog::open_with_vfs(dir.path(), config.clone(), Arc::new(disk))
        .unwrap_or_else(|e| panic!("open failed on a cache write: {e:?}"));
    assert_eq!(log.recovery_report().segments_scanned, bases.len());
    assert_eq!(log.recovery_report().truncation, None);
    assert_log_holds(&log, &written.records);
    assert_every_offset_reads(&log, &written.records);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_log_holds(&log, &written.records);
}

/// An append whose offsets would pass `u64::MAX` is refused with a typed error (no wrap,
/// no panic, nothing written); the offsets up to the largest one still work, and survive a
/// reopen.
#[test]
fn appends_near_the_largest_offset_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let start = u64::MAX - 3;
    fs::write(dir.path().join(LOG_START), checkpoint_bytes(1, &[start])).unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, start));
    let two = [Record::new().value("a"), Record::new().value("b")];
    assert!(matches!(
        log.append(&[two[0].clone(), two[1].clone(), Record::new(), Record::new()], Durability::Written),
        Err(Error::OffsetOverflow { next_offset, records: 4, .. }) if next_offset == start
    ));
    assert_eq!(log.log_end_offset(), start);
    assert_eq!(log.append(&two, Durability::Written).unwrap().last_offset, u64::MAX - 2);
    let last = log.append(&[Record::new().value("c")], Durability::Synced).unwrap();
    assert_eq!(last.base_offset, u64::MAX - 1);
    assert_eq!(log.log_end_offset(), u64::MAX);
    let size = log.size_bytes();
    assert!(matches!(
        log.append(&[Record::new().value("d")], Durability::Written),
        Err(Error::OffsetOverflow {
            next_offset: u64::MAX,
            records: 1,
            ..
        })
    ));
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), u64::MAX);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), u64::MAX);
    let values: Vec<_> = read_all(&log).into_iter().map(|r| r.value).collect();
    assert_eq!(values, [Some("a".into()), Some("b".into()), Some("c".into())]);
}

/// Checkpoints are checksummed and replaced atomically, so a crash never leaves garbage in
/// `recovery-point` or `log-start-offset`: garbage there means outside tampering, and open
/// refuses with `Error::Corrupt` naming the file. A newer format version is
/// `Error::UnsupportedVersion`.
#[test]
fn garbage_checkpoint_files_fail_open_with_typed_errors() {
    let config = LogConfig::default().segment_bytes(4096);
    let template = tempfile::tempdir().unwrap();
    let written = write_log(template.path(), &config, 20);
    // Sanity: the files are what the format says.
    assert_eq!(
        fs::read(template.path().join(RECOVERY_POINT)).unwrap(),
        checkpoint_bytes(1, &[written.records.len() as u64])
    );

    let mut valid_then_flipped = checkpoint_bytes(1, &[3]);
    valid_then_flipped[9] ^= 0x10;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"garbage".to_vec()),
        ("empty", vec![]),
        ("random bytes", Rng(99).bytes(20)),
        ("a flipped value bit", valid_then_flipped),
        ("two values", checkpoint_bytes(1, &[1, 2])),
        ("too large", vec![0; 4096]),
    ];
    for file in [RECOVERY_POINT, LOG_START] {
        for (what, bytes) in &garbage {
            for keep_marker in [true, false] {
                let ctx = format!("{file} holding {what}, marker kept: {keep_marker}");
                let dir = fresh_copy(template.path());
                fs::write(dir.path().join(file), bytes).unwrap();
                if !keep_marker {
                    fs::remove_file(dir.path().join(MARKER)).unwrap();
                }
                match PartitionLog::open(dir.path(), config.clone()) {
                    Err(Error::Corrupt { path, .. }) => assert_eq!(path, dir.path().join(file), "{ctx}"),
                    other => panic!("{ctx}: open gave {other:?}"),
                }
            }
        }
        let dir = fresh_copy(template.path());
        fs::write(dir.path().join(file), checkpoint_bytes(2, &[0])).unwrap();
        match PartitionLog::open(dir.path(), config.clone()) {
            Err(Error::UnsupportedVersion { path, found, supported }) => {
                assert_eq!((path, found, supported), (dir.path().join(file), 2, 1))
            }
            other => panic!("{file} of version 2: open gave {other:?}"),
        }
    }
}

/// The clean-shutdown marker is only an optimisation: a garbage or unreadable one is
/// ignored, and the log recovers by scanning.
#[test]
fn garbage_clean_shutdown_marker_is_ignored() {
    let config = LogConfig::default().segment_bytes(4096);
    let template = tempfile::tempdir().unwrap();
    let written = write_log(template.path(), &config, 20);
    let end = written.records.len() as u64;
    let marker = fs::read(template.path().join(MARKER)).unwrap();
    assert_eq!(marker.len(), 8 + 3 * 8 + 4);
    let mut flipped = marker.clone();
    flipped[9] ^= 0x01;
    for (what, bytes) in [
        ("text", b"garbage".to_vec()),
        ("empty", vec![]),
        ("a flipped value bit", flipped),
        ("a newer version", checkpoint_bytes(2, &[end, 0, 0])),
        ("one value", checkpoint_bytes(1, &[end])),
    ] {
        let dir = fresh_copy(template.path());
        fs::write(dir.path().join(MARKER), bytes).unwrap();
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let report = log.recovery_report();
        assert!(!report.clean_shutdown, "{what}");
        assert_eq!(report.segments_scanned, 1, "{what}");
        assert_eq!(report.truncation, None, "{what}");
        assert!(!dir.path().join(MARKER).exists(), "{what}");
        assert_log_holds(&log, &written.records);
        assert_appends_at(&log, end);
    }
}

/// Leftovers of interrupted work — a checkpoint's temp file, index files whose `.log` is
/// gone — are removed at open and change nothing.
#[test]
fn leftover_temp_and_orphan_index_files_are_removed() {
    let config = LogConfig::default().segment_bytes(4096);
    let template = tempfile::tempdir().unwrap();
    let written = write_log(template.path(), &config, 20);
    let dir = fresh_copy(template.path());
    let tmp = dir.path().join(format!("{RECOVERY_POINT}.tmp"));
    fs::write(&tmp, b"half a checkpoint").unwrap();
    let orphan_index = seg_path(dir.path(), 1_000_000, "index");
    let orphan_time = seg_path(dir.path(), 1_000_000, "timeindex");
    fs::write(&orphan_index, b"BRKI").unwrap();
    fs::write(&orphan_time, b"BRKT").unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    for p in [&tmp, &orphan_index, &orphan_time] {
        assert!(!p.exists(), "{} was left", p.display());
    }
    assert_log_holds(&log, &written.records);
}

// ---------------------------------------------------------------------------------------
// 10. Property tests
// ---------------------------------------------------------------------------------------

/// A small real log: four batches in one segment, as bytes, with their records.
struct SmallLog {
    bytes: Vec<u8>,
    /// `(end byte, end offset)` after each batch.
    ends: Vec<(usize, u64)>,
    records: Vec<Record>,
}

fn small_log() -> &'static SmallLog {
    static CELL: OnceLock<SmallLog> = OnceLock::new();
    CELL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let written = write_log(dir.path(), &LogConfig::default(), 4);
        let bytes = fs::read(seg_path(dir.path(), 0, "log")).unwrap();
        let ends = framed_batches(&seg_path(dir.path(), 0, "log"))
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let end_offset = written
                    .bases
                    .get(i + 1)
                    .copied()
                    .unwrap_or(written.records.len() as u64);
                ((f.position + f.size) as usize, end_offset)
            })
            .collect();
        SmallLog {
            bytes,
            ends,
            records: written.records,
        }
    })
}

/// A cleanly closed log of several 4 KiB segments, as (file name, bytes), with its records.
struct MultiSegmentLog {
    files: Vec<(String, Vec<u8>)>,
    logs: Vec<String>,
    records: Vec<Record>,
}

fn multi_segment_log() -> &'static MultiSegmentLog {
    static CELL: OnceLock<MultiSegmentLog> = OnceLock::new();
    CELL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(256);
        let written = write_log(dir.path(), &config, 26);
        let mut files = Vec::new();
        for entry in fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            files.push((name, fs::read(entry.path()).unwrap()));
        }
        let logs = segment_bases(dir.path())
            .into_iter()
            .map(|b| format!("{b:020}.log"))
            .collect();
        MultiSegmentLog {
            files,
            logs,
            records: written.records,
        }
    })
}

/// Reads every offset of `log` on its own. Every read either fails with `Error::Corrupt` or
/// returns batches whose every record decodes and is exactly the record appended at its
/// offset.
fn check_every_read(log: &PartitionLog, original: &[Record]) -> Result<(), TestCaseError> {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    prop_assert!(end <= original.len() as u64, "log end {} past what was written", end);
    for offset in start..end {
        match log.read(offset, 512) {
            Ok(batches) => {
                for b in &batches {
                    for r in b.records() {
                        let r = r.map_err(|e| TestCaseError::fail(format!("read({offset}): record error {e:?}")))?;
                        let want = original.get(r.offset as usize);
                        prop_assert!(
                            want.is_some_and(|w| same_record(&r, w)),
                            "read({}) served offset {} that does not hold what was appended there: {:?}",
                            offset,
                            r.offset,
                            r
                        );
                    }
                }
            }
            Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(format!("read({offset}) gave {e:?}"))),
        }
    }
    Ok(())
}

proptest! {
    // A fixed seed keeps runs reproducible; failures print the minimal case.
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xb700_c1e7),
        ..ProptestConfig::default()
    })]

    /// A segment file of arbitrary bytes (optionally after some valid batches), with no
    /// marker: open never panics; it recovers the valid prefix, whose every batch reads back,
    /// or fails with a typed error.
    #[test]
    fn random_segment_bytes_never_panic(
        valid in 0usize..=4,
        tail in proptest::collection::vec(any::<u8>(), 0..700),
    ) {
        let small = small_log();
        let (prefix_len, prefix_end) = if valid == 0 { (0, 0) } else { small.ends[valid - 1] };
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = small.bytes[..prefix_len].to_vec();
        bytes.extend_from_slice(&tail);
        fs::write(seg_path(dir.path(), 0, "log"), &bytes).unwrap();
        match PartitionLog::open(dir.path(), LogConfig::default()) {
            Ok(log) => {
                prop_assert_eq!(log.log_end_offset(), prefix_end);
                let got = read_all(&log);
                prop_assert_eq!(got.len() as u64, prefix_end);
                for (i, r) in got.iter().enumerate() {
                    prop_assert!(same_record(r, &small.records[i]), "record {} differs", i);
                }
                let expected_cut = (!tail.is_empty()).then_some(prefix_len as u64);
                prop_assert_eq!(log.recovery_report().truncation.as_ref().map(|t| t.position), expected_cut);
            }
            Err(e) => {
                // A typed error is acceptable; it must say what it is.
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// One corrupted byte anywhere in the `.log` files of a real log, with or without the
    /// clean-shutdown marker: open and a full read never panic, and never serve a record
    /// other than the one appended at that offset (reads are `Ok` or `Error::Corrupt`).
    #[test]
    fn random_byte_corruption_never_serves_bad_records(
        file in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        keep_marker in any::<bool>(),
    ) {
        let template = multi_segment_log();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &template.files {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let victim = dir.path().join(file.get(&template.logs));
        let mut bytes = fs::read(&victim).unwrap();
        let at = position.index(bytes.len());
        bytes[at] ^= mask;
        fs::write(&victim, bytes).unwrap();
        if !keep_marker {
            fs::remove_file(dir.path().join(MARKER)).unwrap();
        }
        match PartitionLog::open(dir.path(), LogConfig::default().segment_bytes(4096).index_interval_bytes(256)) {
            Ok(log) => check_every_read(&log, &template.records)?,
            Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "open gave {:?}", e),
        }
    }
}
