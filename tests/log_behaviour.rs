//! Behaviour of `PartitionLog` through its public API, on real files: appends and reads,
//! segment rolling and index lookups, timestamps, retention, truncation, durability levels,
//! locking, configuration checks, and concurrency.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brooklet::{
    AppendInfo, Durability, Error, Header, LogConfig, LogRecord, PartitionLog, Record, RetentionReport, TimestampType,
};
use bytes::Bytes;
use common::{read_all, read_from, temp_dir};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Smallest segments the configuration allows.
fn small_config() -> LogConfig {
    LogConfig::default().segment_bytes(4096)
}

/// Base offsets of the segment `.log` files in `dir`, ascending.
fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".log")?;
            (stem.len() == 20).then(|| stem.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn segment_file(dir: &Path, base: u64, suffix: &str) -> std::path::PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

/// Sum of the sizes of the segment `.log` files in `dir`.
fn log_files_size(dir: &Path) -> u64 {
    segment_bases(dir)
        .iter()
        .map(|&b| std::fs::metadata(segment_file(dir, b, "log")).unwrap().len())
        .sum()
}

/// A record whose batch (alone) is exactly 400 bytes: no key, a 334-byte value holding `tag`,
/// an explicit timestamp, no headers. 57 (header) + 2 (length) + 341 (body).
fn rec400(tag: u64, ts: i64) -> Record {
    Record::new().value(format!("{tag:0334}")).timestamp(ts)
}

/// A record that takes exactly 108 bytes inside a batch whose records share its timestamp:
/// no key, a 100-byte value holding `tag`.
fn rec108(tag: u64, ts: i64) -> Record {
    Record::new().value(format!("{tag:0100}")).timestamp(ts)
}

/// The `(requested, start, end)` of an `OffsetOutOfRange` error (which a log, not knowing
/// its topic, reports without a partition); panics on anything else.
fn out_of_range<T: std::fmt::Debug>(result: brooklet::Result<T>) -> (u64, u64, u64) {
    match result {
        Err(Error::OffsetOutOfRange {
            requested,
            start,
            end,
            partition: None,
        }) => (requested, start, end),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
}

fn config_error(config: LogConfig) -> (&'static str, String) {
    let dir = temp_dir();
    match PartitionLog::open(dir.path().join("log"), config) {
        Err(Error::InvalidConfig { field, reason }) => (field, reason),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

/// The record an append of `record` at `offset` stores (its timestamp must be set).
fn stored(record: &Record, offset: u64) -> LogRecord {
    LogRecord {
        offset,
        timestamp: record.timestamp_ms().expect("explicit timestamp"),
        key: record.key_bytes().cloned(),
        value: record.value_bytes().cloned(),
        headers: record.headers().to_vec(),
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn zigzag_len(v: i64) -> usize {
    varint_len(((v << 1) ^ (v >> 63)) as u64)
}

/// Encoded size of a batch of `records`, computed from the documented format
/// (`brooklet::record::batch`). Every record must have a timestamp.
fn batch_size(records: &[Record]) -> usize {
    let first_ts = records[0].timestamp_ms().unwrap();
    let mut size = 57;
    for (delta, r) in records.iter().enumerate() {
        let nullable = |b: Option<&Bytes>| b.map_or(zigzag_len(-1), |b| zigzag_len(b.len() as i64) + b.len());
        let headers: usize = r
            .headers()
            .iter()
            .map(|h| varint_len(h.name.len() as u64) + h.name.len() + varint_len(h.value.len() as u64) + h.value.len())
            .sum();
        let body = 1
            + zigzag_len(r.timestamp_ms().unwrap().wrapping_sub(first_ts))
            + varint_len(delta as u64)
            + nullable(r.key_bytes())
            + nullable(r.value_bytes())
            + varint_len(r.headers().len() as u64)
            + headers;
        size += varint_len(body as u64) + body;
    }
    size
}

/// Deterministic varied content for offset `o`: some records without key, some tombstones,
/// 0–2 headers with a repeated name, values of 1..130 bytes, non-monotonic timestamps.
fn varied_record(o: u64) -> Record {
    let mut r = Record::new();
    if o % 7 != 3 {
        r = r.key(format!("key-{o}"));
    }
    if o % 11 != 5 {
        r = r.value(format!("{}#{o}", "x".repeat(((o * 37) % 120) as usize)));
    }
    for i in 0..o % 3 {
        r = r.header("h", format!("{o}-{i}"));
    }
    r.timestamp(1_000_000 + 10 * o as i64 - 7 * (o % 4) as i64)
}

/// Appends `batches` batches of 1..=10 varied records. Returns the expected records (index =
/// offset) and each append's info.
fn append_varied(log: &PartitionLog, batches: u64) -> (Vec<LogRecord>, Vec<AppendInfo>) {
    let mut expected = Vec::new();
    let mut infos = Vec::new();
    let mut next = 0u64;
    for b in 0..batches {
        let count = 1 + (b * 7 + 3) % 10;
        let records: Vec<Record> = (next..next + count).map(varied_record).collect();
        let info = log.append(&records, Durability::Written).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (next, next + count - 1));
        assert_eq!(info.size_bytes, batch_size(&records));
        assert_eq!(
            info.max_timestamp,
            records.iter().map(|r| r.timestamp_ms().unwrap()).max().unwrap()
        );
        expected.extend(records.iter().zip(next..).map(|(r, o)| stored(r, o)));
        infos.push(info);
        next += count;
    }
    (expected, infos)
}

/// Kills and reaps a child process when dropped, so a failing assertion leaves no orphan.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs this binary's test `name` alone in a child process, with the variable `env` set to
/// `dir` and stdin and stdout piped, and reads its output until `seen` finds what it waits
/// for in a line (libtest may print "test <name> ... " on the same line first). Panics,
/// saying the child exited before `waiting_for`, if it ends first.
fn child_test<T>(
    name: &str,
    env: &str,
    dir: &Path,
    waiting_for: &str,
    mut seen: impl FnMut(&str) -> Option<T>,
) -> (KillOnDrop, T) {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if let Some(found) = seen(&line.unwrap()) {
            return (child, found);
        }
    }
    panic!("child exited before {waiting_for}: {:?}", child.0.wait());
}

/// A process spawned while a log is open holds a copy of the lock file's descriptor from its
/// fork to its exec. Closing the log must unlock the directory at once all the same: it
/// stayed locked until the child's exec, so a reopen right after a close failed with
/// `Locked` whenever another thread spawned a process (this suite's child tests did).
#[test]
fn a_closed_log_is_unlocked_while_a_spawned_child_shares_its_descriptors() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&[Record::new().value("v")], Durability::Written).unwrap();
    common::while_a_child_is_between_fork_and_exec(|| {
        drop(log);
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.log_end_offset(), 1);
    });
}

// ---------------------------------------------------------------------------------------
// 1. Round trip
// ---------------------------------------------------------------------------------------

#[test]
fn round_trip_keeps_every_field_across_appends() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();

    let first = vec![
        Record::new()
            .key("k1")
            .value("v1")
            .header("h", "x")
            .header("other", "z")
            .header("h", "y")
            .timestamp(1_000),
        Record::new().key("gone").timestamp(990), // tombstone
        Record::new().value("no key").timestamp(1_005),
        Record::new().key(Bytes::new()).value(Bytes::new()).timestamp(1_002),
        Record::new()
            .value(Bytes::from_static(&[0, 255, 1, 254]))
            .header("", "")
            .timestamp(1_001),
    ];
    let before0 = now_ms();
    let info = log.append(&first, Durability::Written).unwrap();
    let after0 = now_ms();
    assert!((before0..=after0).contains(&info.append_time));
    assert_eq!(
        info,
        AppendInfo {
            base_offset: 0,
            last_offset: 4,
            max_timestamp: 1_005,
            append_time: info.append_time,
            size_bytes: batch_size(&first),
            timestamp_type: TimestampType::CreateTime,
        }
    );

    // The first record without a timestamp: it is stamped with the append time.
    let second = vec![
        Record::new().key("stamped").value("now"),
        Record::new().key("k").value("v").timestamp(5),
    ];
    let before = now_ms();
    let info2 = log.append(&second, Durability::Synced).unwrap();
    let after = now_ms();
    assert_eq!((info2.base_offset, info2.last_offset), (5, 6));
    assert!(
        (before..=after).contains(&info2.max_timestamp),
        "append time {} outside [{before}, {after}]",
        info2.max_timestamp
    );
    assert_eq!(info2.append_time, info2.max_timestamp);

    // A later record without a timestamp.
    let third = vec![Record::new().value("a").timestamp(7), Record::new().value("b")];
    let before3 = now_ms();
    let info3 = log.append(&third, Durability::Written).unwrap();
    let after3 = now_ms();
    assert_eq!((info3.base_offset, info3.last_offset), (7, 8));
    assert!((before3..=after3).contains(&info3.max_timestamp));

    let single = vec![
        Record::new()
            .key("last")
            .value("one")
            .timestamp(i64::from(u32::MAX) * 10),
    ];
    let info4 = log.append(&single, Durability::Written).unwrap();
    assert!(info4.append_time >= info3.append_time);
    assert_eq!(
        info4,
        AppendInfo {
            base_offset: 9,
            last_offset: 9,
            max_timestamp: i64::from(u32::MAX) * 10,
            append_time: info4.append_time,
            size_bytes: batch_size(&single),
            timestamp_type: TimestampType::CreateTime,
        }
    );
    // 57-byte header + 1 length byte + 13-byte body.
    assert_eq!(info4.size_bytes, 71);

    let mut expected: Vec<LogRecord> = first.iter().zip(0..).map(|(r, o)| stored(r, o)).collect();
    expected.push(LogRecord {
        offset: 5,
        timestamp: info2.max_timestamp,
        key: Some("stamped".into()),
        value: Some("now".into()),
        headers: vec![],
    });
    expected.push(stored(&second[1], 6));
    expected.push(stored(&third[0], 7));
    expected.push(LogRecord {
        offset: 8,
        timestamp: info3.max_timestamp,
        key: None,
        value: Some("b".into()),
        headers: vec![],
    });
    expected.push(stored(&single[0], 9));
    assert_eq!(
        expected[0].headers,
        vec![Header::new("h", "x"), Header::new("other", "z"), Header::new("h", "y")]
    );

    assert_eq!(read_all(&log), expected);
    assert_eq!(log.log_end_offset(), 10);
    let total = (info.size_bytes + info2.size_bytes + info3.size_bytes + info4.size_bytes) as u64;
    assert_eq!(log.size_bytes(), total);

    // Batch framing as read back.
    let batches = log.read(0, 1 << 20).unwrap();
    let framing: Vec<(u64, u64, u32, i64, usize)> = batches
        .iter()
        .map(|b| {
            (
                b.base_offset(),
                b.last_offset(),
                b.record_count(),
                b.max_timestamp(),
                b.size_bytes(),
            )
        })
        .collect();
    assert_eq!(
        framing,
        vec![
            (0, 4, 5, 1_005, info.size_bytes),
            (5, 6, 2, info2.max_timestamp, info2.size_bytes),
            (7, 8, 2, info3.max_timestamp, info3.size_bytes),
            (9, 9, 1, i64::from(u32::MAX) * 10, 71),
        ]
    );
    assert_eq!(batches[0].first_timestamp(), 1_000);

    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(read_all(&log), expected);
    assert_eq!(log.size_bytes(), total);
    assert_eq!(log_files_size(dir.path()), total);
}

// ---------------------------------------------------------------------------------------
// 2. Rolling and index lookups
// ---------------------------------------------------------------------------------------

/// For every offset: a small read returns exactly the batch holding it, and a large read
/// returns the rest of that segment and nothing beyond it.
fn check_every_offset(log: &PartitionLog, expected: &[LogRecord], bases: &[u64]) {
    let end = expected.len() as u64;
    for o in 0..end {
        let batches = log.read(o, 1).unwrap();
        assert_eq!(batches.len(), 1, "read({o}, 1) returned {} batches", batches.len());
        let b = &batches[0];
        assert!(
            b.base_offset() <= o && o <= b.last_offset(),
            "read({o}) gave batch {}..={}",
            b.base_offset(),
            b.last_offset()
        );
        let record = b.records().map(Result::unwrap).find(|r| r.offset == o).unwrap();
        assert_eq!(record, expected[o as usize]);

        let seg = bases.partition_point(|&base| base <= o) - 1;
        let seg_end = bases.get(seg + 1).copied().unwrap_or(end);
        let batches = log.read(o, 1 << 20).unwrap();
        assert_eq!(batches[0].base_offset(), b.base_offset(), "large read({o})");
        for pair in batches.windows(2) {
            assert_eq!(pair[1].base_offset(), pair[0].last_offset() + 1);
        }
        assert!(batches[0].base_offset() >= bases[seg]);
        assert_eq!(
            batches.last().unwrap().last_offset() + 1,
            seg_end,
            "large read({o}) must stop at the segment end"
        );
    }
}

/// The `.index` entries brooklet should write for the batches in `infos`, per segment:
/// an entry `(relative base, position)` before a batch once `interval` bytes have passed.
fn model_index(infos: &[AppendInfo], bases: &[u64], interval: usize) -> BTreeMap<u64, Vec<(u32, u32)>> {
    let mut model = BTreeMap::new();
    for (i, &base) in bases.iter().enumerate() {
        let next = bases.get(i + 1).copied().unwrap_or(u64::MAX);
        let (mut position, mut since, mut entries) = (0usize, 0usize, Vec::new());
        for info in infos.iter().filter(|x| x.base_offset >= base && x.base_offset < next) {
            if since >= interval {
                entries.push(((info.base_offset - base) as u32, position as u32));
                since = 0;
            }
            since += info.size_bytes;
            position += info.size_bytes;
        }
        model.insert(base, entries);
    }
    model
}

fn parse_index_file(path: &Path) -> Vec<(u32, u32)> {
    // Header: magic, version 2, reserved, CRC-32 of the rest, .log length, next offset,
    // entry count (src/storage/index.rs).
    let raw = std::fs::read(path).unwrap();
    assert_eq!(&raw[..8], b"BRKI\x02\x00\x00\x00", "{}", path.display());
    assert_eq!(
        u32::from_le_bytes(raw[8..12].try_into().unwrap()),
        crc32fast::hash(&raw[12..])
    );
    let log_len = u64::from_le_bytes(raw[12..20].try_into().unwrap());
    assert_eq!(log_len, std::fs::metadata(path.with_extension("log")).unwrap().len());
    let count = u32::from_le_bytes(raw[28..32].try_into().unwrap()) as usize;
    assert_eq!(raw.len(), 32 + 8 * count);
    raw[32..]
        .chunks_exact(8)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().unwrap()),
                u32::from_le_bytes(c[4..].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn segments_roll_and_every_offset_is_found_through_the_index() {
    let dir = temp_dir();
    let config = small_config().index_interval_bytes(256);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let (expected, infos) = append_varied(&log, 300);
    let end = expected.len() as u64;
    assert_eq!(end, infos.last().unwrap().last_offset + 1);
    assert_eq!(log.log_end_offset(), end);

    let bases = segment_bases(dir.path());
    assert!(bases.len() > 3, "only {} segments", bases.len());
    assert_eq!(log.segment_count(), bases.len());
    assert_eq!(bases[0], 0);
    // Each segment starts at a batch boundary, and is rolled only when the next batch would
    // take it past segment_bytes.
    for (i, &base) in bases.iter().enumerate().skip(1) {
        let in_prev: usize = infos
            .iter()
            .filter(|x| x.base_offset >= bases[i - 1] && x.base_offset < base)
            .map(|x| x.size_bytes)
            .sum();
        let first = infos
            .iter()
            .find(|x| x.base_offset == base)
            .expect("segment base is a batch base");
        assert!(
            in_prev <= 4096 && in_prev + first.size_bytes > 4096,
            "segment {} holds {in_prev} bytes",
            bases[i - 1]
        );
        assert_eq!(
            std::fs::metadata(segment_file(dir.path(), bases[i - 1], "log"))
                .unwrap()
                .len(),
            in_prev as u64
        );
    }
    let total: u64 = infos.iter().map(|x| x.size_bytes as u64).sum();
    assert_eq!(log.size_bytes(), total);
    assert_eq!(log_files_size(dir.path()), total);

    check_every_offset(&log, &expected, &bases);

    log.close().unwrap();
    // The index files hold exactly the entries the interval calls for.
    let model = model_index(&infos, &bases, 256);
    assert!(model.values().filter(|e| !e.is_empty()).count() > 3);
    for (&base, entries) in &model {
        assert_eq!(
            &parse_index_file(&segment_file(dir.path(), base, "index")),
            entries,
            "segment {base}"
        );
    }

    let log = PartitionLog::open(dir.path(), config).unwrap();
    let report = log.recovery_report();
    assert!(report.clean_shutdown);
    assert_eq!(report.segments_scanned, 0);
    assert_eq!(report.log_end_offset, end);
    assert!(report.segments_deleted.is_empty());
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.segment_count(), bases.len());
    assert_eq!(log.size_bytes(), total);
    check_every_offset(&log, &expected, &bases);
}

// ---------------------------------------------------------------------------------------
// 3. Sequential reads
// ---------------------------------------------------------------------------------------

#[test]
fn consecutive_reads_return_every_record_once_in_order() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), small_config().index_interval_bytes(256)).unwrap();
    let (expected, _) = append_varied(&log, 200);
    assert!(log.segment_count() > 3);
    for max_bytes in [0, 1, 57, 300, 1000, 4096, 1 << 20] {
        assert_eq!(read_from(&log, 0, max_bytes), expected, "max_bytes {max_bytes}");
    }
    // From the middle of a batch: the batch's earlier records are skipped by the caller.
    let mid = expected.len() as u64 / 2 + 1;
    assert_eq!(read_from(&log, mid, 700), expected[mid as usize..]);
}

// ---------------------------------------------------------------------------------------
// 4. Timestamp lookup
// ---------------------------------------------------------------------------------------

fn brute_force_offset_for(timestamps: &[i64], start: u64, t: i64) -> Option<u64> {
    (start..timestamps.len() as u64).find(|&o| timestamps[o as usize] >= t)
}

fn check_timestamp_lookups(log: &PartitionLog, timestamps: &[i64], start: u64) {
    let min = *timestamps.iter().min().unwrap();
    let max = *timestamps.iter().max().unwrap();
    for t in (min - 3)..=(max + 3) {
        assert_eq!(
            log.offset_for_timestamp(t).unwrap(),
            brute_force_offset_for(timestamps, start, t),
            "target {t}"
        );
    }
    assert_eq!(log.offset_for_timestamp(i64::MIN).unwrap(), Some(start));
    assert_eq!(log.offset_for_timestamp(min - 1000).unwrap(), Some(start));
    assert_eq!(log.offset_for_timestamp(max + 1).unwrap(), None);
    assert_eq!(log.offset_for_timestamp(i64::MAX).unwrap(), None);
}

#[test]
fn offset_for_timestamp_matches_a_brute_force_search() {
    let dir = temp_dir();
    let config = small_config().index_interval_bytes(256);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    // Rising by 3 per offset with noise of ±40 (a simple LCG), so batch and segment maxima
    // overlap their neighbours; plus a run of old timestamps in the middle.
    let mut seed: u64 = 12345;
    let mut timestamps = Vec::new();
    for o in 0..700i64 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let noise = ((seed >> 33) % 81) as i64 - 40;
        let ts = if (300..330).contains(&o) {
            500 + o
        } else {
            1000 + 3 * o + noise
        };
        timestamps.push(ts);
    }
    let mut o = 0usize;
    let mut b = 0usize;
    while o < timestamps.len() {
        let count = (1 + (b * 5) % 8).min(timestamps.len() - o);
        let records: Vec<Record> = (o..o + count)
            .map(|i| {
                Record::new()
                    .key(format!("k{i}"))
                    .value("v".repeat(40 + i % 30))
                    .timestamp(timestamps[i])
            })
            .collect();
        let info = log.append(&records, Durability::Written).unwrap();
        assert_eq!(info.base_offset, o as u64);
        assert_eq!(info.max_timestamp, *timestamps[o..o + count].iter().max().unwrap());
        o += count;
        b += 1;
    }
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    check_timestamp_lookups(&log, &timestamps, 0);

    // Indexes loaded from files after a clean close give the same answers.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    check_timestamp_lookups(&log, &timestamps, 0);

    // Below the log start nothing is returned, even where older offsets would match.
    assert_eq!(log.delete_records_before(137).unwrap(), 137);
    check_timestamp_lookups(&log, &timestamps, 137);
    assert_eq!(log.delete_records_before(411).unwrap(), 411);
    check_timestamp_lookups(&log, &timestamps, 411);
    drop(log);

    // Index files rebuilt from the log (deleted here) give the same answers.
    for base in segment_bases(dir.path()) {
        std::fs::remove_file(segment_file(dir.path(), base, "index")).unwrap();
        std::fs::remove_file(segment_file(dir.path(), base, "timeindex")).unwrap();
    }
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_start_offset(), 411);
    check_timestamp_lookups(&log, &timestamps, 411);
}

// ---------------------------------------------------------------------------------------
// 5. Retention by size
// ---------------------------------------------------------------------------------------

#[test]
fn size_retention_deletes_oldest_segments_while_the_rest_stays_at_or_above_the_limit() {
    let dir = temp_dir();
    let config = small_config().retention_bytes(Some(10_000));
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    // 400-byte batches: ten fill a segment (4000 bytes), so segment k holds offsets 10k..10k+9.
    for o in 0..65u64 {
        let info = log.append(&[rec400(o, 1_000 + o as i64)], Durability::Written).unwrap();
        assert_eq!((info.base_offset, info.size_bytes), (o, 400));
    }
    // Retention ran at every roll: with four full sealed segments (16000 bytes) and an empty
    // active one, the oldest goes (12000 ≥ 10000), the next stays (8000 < 10000).
    assert_eq!(segment_bases(dir.path()), vec![30, 40, 50, 60]);
    assert_eq!(log.segment_count(), 4);
    assert_eq!(log.log_start_offset(), 30);
    assert_eq!(log.size_bytes(), 14_000);
    for base in [0, 10, 20] {
        for suffix in ["log", "index", "timeindex"] {
            assert!(
                !segment_file(dir.path(), base, suffix).exists(),
                "{base}.{suffix} still exists"
            );
        }
    }
    assert_eq!(out_of_range(log.read(29, 1 << 20)), (29, 30, 65));

    // 14000 − 4000 = 10000 ≥ 10000: segment 30 goes; 10000 − 4000 < 10000: segment 40 stays.
    let report = log.enforce_retention().unwrap();
    assert_eq!(
        report,
        RetentionReport {
            segments_deleted: vec![30],
            bytes_deleted: 4000,
            log_start_offset: 40,
        }
    );
    assert_eq!(segment_bases(dir.path()), vec![40, 50, 60]);
    assert_eq!(log.log_start_offset(), 40);
    assert_eq!(log.size_bytes(), 10_000);
    assert_eq!(out_of_range(log.read(39, 1 << 20)), (39, 40, 65));
    assert_eq!(out_of_range(log.read(0, 1 << 20)), (0, 40, 65));
    let batches = log.read(40, 1).unwrap();
    assert_eq!(batches[0].base_offset(), 40);
    let records = read_all(&log);
    assert_eq!(records.len(), 25);
    assert_eq!(records[0], stored(&rec400(40, 1_040), 40));
    assert_eq!(records[24], stored(&rec400(64, 1_064), 64));

    // Nothing more to delete.
    assert_eq!(
        log.enforce_retention().unwrap(),
        RetentionReport {
            segments_deleted: vec![],
            bytes_deleted: 0,
            log_start_offset: 40,
        }
    );

    // The log start survives a reopen.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.log_start_offset(), 40);
    assert_eq!(log.log_end_offset(), 65);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(out_of_range(log.read(39, 1 << 20)), (39, 40, 65));
    assert_eq!(read_all(&log).len(), 25);
}

#[test]
fn size_retention_never_deletes_the_active_segment() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), small_config().retention_bytes(Some(1))).unwrap();
    for o in 0..25u64 {
        log.append(&[rec400(o, 1_000)], Durability::Written).unwrap();
    }
    // At the roll to 20: 8000 − 4000 ≥ 1 deletes segment 0; 4000 − 4000 < 1 keeps segment 10.
    assert_eq!(segment_bases(dir.path()), vec![10, 20]);
    assert_eq!(log.log_start_offset(), 10);
    let report = log.enforce_retention().unwrap();
    assert_eq!(
        report,
        RetentionReport {
            segments_deleted: vec![10],
            bytes_deleted: 4000,
            log_start_offset: 20,
        }
    );
    // The active segment alone is over the limit, and stays.
    assert_eq!(segment_bases(dir.path()), vec![20]);
    assert_eq!(log.size_bytes(), 2000);
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, Vec::<u64>::new());
    assert_eq!(
        read_all(&log).iter().map(|r| r.offset).collect::<Vec<_>>(),
        (20..25).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------
// 6. Retention by age
// ---------------------------------------------------------------------------------------

#[test]
fn time_retention_deletes_exactly_the_segments_whose_newest_record_is_too_old() {
    let dir = temp_dir();
    let now = now_ms();
    {
        // Written without retention: segments 0, 10, 20 are old; 30 is old but for its last
        // record; 40 and 50 are recent; 60 is the active segment.
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        for o in 0..63u64 {
            let ts = if o < 39 { 1_000 + o as i64 } else { now };
            log.append(&[rec400(o, ts)], Durability::Written).unwrap();
        }
        assert_eq!(segment_bases(dir.path()), vec![0, 10, 20, 30, 40, 50, 60]);
        log.close().unwrap();
    }
    let config = small_config().retention_ms(Some(Duration::from_secs(3600)));
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.segment_count(), 7);
    let report = log.enforce_retention().unwrap();
    assert_eq!(
        report,
        RetentionReport {
            segments_deleted: vec![0, 10, 20],
            bytes_deleted: 12_000,
            log_start_offset: 30,
        }
    );
    assert_eq!(segment_bases(dir.path()), vec![30, 40, 50, 60]);
    assert_eq!(log.log_start_offset(), 30);
    assert_eq!(log.size_bytes(), 3 * 4000 + 1200);
    assert_eq!(out_of_range(log.read(29, 1 << 20)), (29, 30, 63));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(30));
    assert_eq!(log.offset_for_timestamp(now).unwrap(), Some(39));
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, Vec::<u64>::new());
}

/// Time retention at a roll keeps the active segment; the retention check
/// (`enforce_retention`, a broker's retention thread) deletes it too once its newest record
/// is expired, as Kafka's check does: the log is empty and offsets go on.
#[test]
fn time_retention_keeps_the_active_segment_at_a_roll_and_deletes_it_at_a_check() {
    let dir = temp_dir();
    let config = small_config().retention_ms(Some(Duration::from_secs(3600)));
    let log = PartitionLog::open(dir.path(), config).unwrap();
    for o in 0..25u64 {
        log.append(&[rec400(o, 1_000 + o as i64)], Durability::Written).unwrap();
    }
    // Each roll deleted the segment it sealed: everything but the active segment is old.
    assert_eq!(segment_bases(dir.path()), vec![20]);
    assert_eq!(log.log_start_offset(), 20);
    // The active segment is old too: the check seals and deletes it.
    assert_eq!(
        log.enforce_retention().unwrap(),
        RetentionReport {
            segments_deleted: vec![20],
            bytes_deleted: 2000,
            log_start_offset: 25,
        }
    );
    assert_eq!(segment_bases(dir.path()), vec![25]);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(out_of_range(log.read(19, 1 << 20)), (19, 25, 25));
    assert!(read_all(&log).is_empty());
    // An empty log has nothing to expire; offsets go on.
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, Vec::<u64>::new());
    assert_eq!(
        log.append(&[rec400(25, now_ms())], Durability::Written)
            .unwrap()
            .base_offset,
        25
    );
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, Vec::<u64>::new());
    assert_eq!(read_all(&log).iter().map(|r| r.offset).collect::<Vec<_>>(), vec![25]);
}

// ---------------------------------------------------------------------------------------
// 7. Reopen
// ---------------------------------------------------------------------------------------

#[test]
fn reopen_after_close_or_drop_keeps_everything_and_appends_continue() {
    let dir = temp_dir();
    let config = small_config().index_interval_bytes(512);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let (mut expected, _) = append_varied(&log, 60);
    let end = expected.len() as u64;
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    let segments = log.segment_count();
    assert!(segments > 2);
    log.close().unwrap();

    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.recovery_report().segments_scanned, 0);
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.visible_end_offset(), end);
    assert_eq!(log.segment_count(), segments);
    assert_eq!(read_all(&log), expected[5..]);

    let more = vec![Record::new().key("after").value("reopen").timestamp(42)];
    let info = log.append(&more, Durability::Written).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (end, end));
    expected.push(stored(&more[0], end));
    drop(log); // dropping closes cleanly too

    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.recovery_report().segments_scanned, 0);
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.log_end_offset(), end + 1);
    assert_eq!(read_all(&log), expected[5..]);
    let info = log
        .append(&[Record::new().value("next").timestamp(43)], Durability::Written)
        .unwrap();
    assert_eq!(info.base_offset, end + 1);
}

/// Bytes of disk the file at `path` occupies (`st_blocks`), reserved blocks included.
#[cfg(target_os = "linux")]
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Bytes of disk the file at `path` occupies beyond its length: what is reserved past its
/// end (plus the file system's rounding of the last block).
#[cfg(target_os = "linux")]
fn reserved_past_end(path: &Path) -> u64 {
    allocated(path).saturating_sub(std::fs::metadata(path).unwrap().len())
}

/// Nothing is reserved past the end of `path`: at most the file system's block rounding.
#[cfg(target_os = "linux")]
fn assert_nothing_reserved(path: &Path) {
    let reserved = reserved_past_end(path);
    assert!(
        reserved < 64 << 10,
        "{reserved} bytes reserved past the end of {}",
        path.display()
    );
}

/// Appends `Written` batches of 100 records of 1,000 bytes until the segment `base` holds
/// at least `until` bytes or the log rolls past it; returns the records appended.
#[cfg(target_os = "linux")]
fn fill_segment(log: &PartitionLog, dir: &Path, base: u64, until: u64, tag: &mut u64) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let segments = log.segment_count();
    while std::fs::metadata(segment_file(dir, base, "log")).unwrap().len() < until && log.segment_count() == segments {
        let batch: Vec<Record> = (0..100)
            .map(|_| {
                *tag += 1;
                reserve_record(*tag)
            })
            .collect();
        let info = log.append(&batch, Durability::Written).unwrap();
        out.extend(batch.iter().zip(info.base_offset..).map(|(r, o)| stored(r, o)));
    }
    out
}

/// Record number `tag` of the block-reservation tests: 1,000 bytes of value.
#[cfg(target_os = "linux")]
fn reserve_record(tag: u64) -> Record {
    Record::new()
        .key(format!("k{tag}"))
        .value(vec![(tag % 251) as u8; 1000])
        .timestamp(7)
}

#[cfg(target_os = "linux")]
const RESERVE_ENV: &str = "BROOKLET_TEST_RESERVE_DIR";

/// Not a test of its own: when `BROOKLET_TEST_RESERVE_DIR` is set (by
/// `a_killed_writer_leaves_reserved_blocks_that_change_nothing_it_wrote`), appends
/// `Written` until the active segment holds 3 MiB (so blocks are reserved past its end),
/// prints how many records it appended, and waits to be killed.
#[cfg(target_os = "linux")]
#[test]
fn reserving_writer_child_process() {
    let Some(dir) = std::env::var_os(RESERVE_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let log = PartitionLog::open(dir, LogConfig::default().segment_bytes(8 << 20)).expect("child opens the log");
    let mut tag = 0;
    let written = fill_segment(&log, dir, 0, 3 << 20, &mut tag);
    println!("appended {}", written.len());
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::mem::forget(log); // never closed: the parent kills this process first
}

/// Runs `reserving_writer_child_process` on `dir` and kills it (SIGKILL: no close, so
/// nothing gives its reserved blocks back) once it has appended; returns how many records
/// it appended.
#[cfg(target_os = "linux")]
fn kill_a_reserving_writer(dir: &Path) -> u64 {
    let (mut child, appended) = child_test(
        "reserving_writer_child_process",
        RESERVE_ENV,
        dir,
        "appending",
        |line| {
            line.split_once("appended ")
                .map(|(_, n)| n.trim().parse::<u64>().unwrap())
        },
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    appended
}

/// A process killed while its active segment has blocks reserved past the end (SIGKILL:
/// no close, so nothing gives them back) leaves a segment whose length is exactly what it
/// wrote: the reopen recovers every `Written` record and nothing else, appends continue at
/// the end, and a clean close then gives the reserved blocks back.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_writer_leaves_reserved_blocks_that_change_nothing_it_wrote() {
    let dir = temp_dir();
    let appended = kill_a_reserving_writer(dir.path());

    let file = segment_file(dir.path(), 0, "log");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size >= 3 << 20);
    assert!(reserved_past_end(&file) >= 512 << 10);
    let log = PartitionLog::open(dir.path(), LogConfig::default().segment_bytes(8 << 20)).unwrap();
    assert!(!log.recovery_report().clean_shutdown);
    assert!(
        log.recovery_report().truncation.is_none(),
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(log.log_end_offset(), appended);
    let expected: Vec<LogRecord> = (1..=appended).map(|t| stored(&reserve_record(t), t - 1)).collect();
    assert_eq!(read_all(&log), expected);
    let info = log
        .append(&[reserve_record(appended + 1)], Durability::Written)
        .unwrap();
    assert_eq!(info.base_offset, appended);
    log.close().unwrap();
    assert_nothing_reserved(&file);
}

/// The blocks a killed writer left reserved past its active segment's end are given back
/// when that segment is sealed, even if the reopened log seals it before writing to it
/// (here: reopened with smaller segments, the first append rolls), as
/// `LogConfig::preallocate_bytes` promises; nothing written is lost.
#[cfg(target_os = "linux")]
#[test]
fn blocks_a_killed_writer_reserved_are_given_back_when_its_segment_is_sealed() {
    let dir = temp_dir();
    let appended = kill_a_reserving_writer(dir.path());
    let file = segment_file(dir.path(), 0, "log");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(reserved_past_end(&file) >= 512 << 10);

    let config = LogConfig::default().segment_bytes(3 << 20);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert!(!log.recovery_report().clean_shutdown);
    let info = log
        .append(&[reserve_record(appended + 1)], Durability::Written)
        .unwrap();
    assert_eq!(info.base_offset, appended);
    assert_eq!(log.segment_count(), 2, "the append rolled");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
    assert_nothing_reserved(&file);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let expected: Vec<LogRecord> = (1..=appended + 1).map(|t| stored(&reserve_record(t), t - 1)).collect();
    assert_eq!(read_all(&log), expected);
}

/// A growing active segment reserves disk blocks ahead of its writes (past 1 MiB), gives
/// back what it did not use when it is sealed and when the log closes, and the reservation
/// changes nothing that is read or recovered. Turned off, nothing is reserved.
#[cfg(target_os = "linux")]
#[test]
fn the_active_segment_reserves_blocks_ahead_and_gives_back_the_unused_ones() {
    const MIB: u64 = 1024 * 1024;
    let dir = temp_dir();
    let config = LogConfig::default().segment_bytes(8 * MIB);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut tag = 0;
    let first = segment_file(dir.path(), 0, "log");
    // Under 1 MiB: nothing reserved.
    let mut expected = fill_segment(&log, dir.path(), 0, MIB / 2, &mut tag);
    assert_nothing_reserved(&first);
    // Past 1 MiB: the write that passed it reserved as much again as the segment held
    // (so up to at least 2 MiB); the length is what was written.
    expected.extend(fill_segment(&log, dir.path(), 0, 3 * MIB / 2, &mut tag));
    let size = std::fs::metadata(&first).unwrap().len();
    assert!(size < 2 * MIB);
    assert!(
        allocated(&first) >= 2 * MIB,
        "{} bytes allocated for {size}",
        allocated(&first)
    );
    // Roll: the sealed segment gives back its reservation.
    expected.extend(fill_segment(&log, dir.path(), 0, 8 * MIB, &mut tag));
    assert_eq!(log.segment_count(), 2);
    assert_nothing_reserved(&first);
    let active_base = *segment_bases(dir.path()).last().unwrap();
    let active = segment_file(dir.path(), active_base, "log");
    expected.extend(fill_segment(&log, dir.path(), active_base, 3 * MIB / 2, &mut tag));
    assert!(allocated(&active) >= 2 * MIB);
    // Close: the active segment gives back its reservation; everything reads back.
    log.close().unwrap();
    assert_nothing_reserved(&active);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(read_all(&log), expected);
    drop(log);

    // Switched off: a segment past 1 MiB reserves nothing.
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default().preallocate_bytes(0)).unwrap();
    fill_segment(&log, dir.path(), 0, 3 * MIB, &mut tag);
    let first = segment_file(dir.path(), 0, "log");
    assert_nothing_reserved(&first);
}

// ---------------------------------------------------------------------------------------
// 8. delete_records_before
// ---------------------------------------------------------------------------------------

#[test]
fn delete_records_before_moves_the_log_start_and_drops_whole_segments() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    for o in 0..35u64 {
        log.append(&[rec400(o, 1_000)], Durability::Written).unwrap();
    }
    assert_eq!(segment_bases(dir.path()), vec![0, 10, 20, 30]);

    assert_eq!(log.delete_records_before(15).unwrap(), 15);
    assert_eq!(log.log_start_offset(), 15);
    // Segment 0 lies wholly below 15; segment 10 holds 15.
    assert_eq!(segment_bases(dir.path()), vec![10, 20, 30]);
    assert!(!segment_file(dir.path(), 0, "index").exists());
    assert_eq!(log.size_bytes(), 2 * 4000 + 2000);
    assert_eq!(out_of_range(log.read(14, 1 << 20)), (14, 15, 35));
    assert_eq!(out_of_range(log.read(0, 1)), (0, 15, 35));
    let batches = log.read(15, 1).unwrap();
    assert_eq!(batches[0].base_offset(), 15);
    assert_eq!(
        batches[0].records().next().unwrap().unwrap(),
        stored(&rec400(15, 1_000), 15)
    );
    assert_eq!(read_all(&log).len(), 20);

    // Not past the start: unchanged.
    assert_eq!(log.delete_records_before(12).unwrap(), 15);
    assert_eq!(log.delete_records_before(15).unwrap(), 15);
    assert_eq!(log.log_start_offset(), 15);

    // Past the end: an error, nothing changes.
    assert_eq!(out_of_range(log.delete_records_before(36)), (36, 15, 35));
    assert_eq!(log.log_start_offset(), 15);

    // At a segment base: the segment below goes.
    assert_eq!(log.delete_records_before(20).unwrap(), 20);
    assert_eq!(segment_bases(dir.path()), vec![20, 30]);

    // Up to the end: every sealed segment goes, the log is empty but keeps its end.
    assert_eq!(log.delete_records_before(35).unwrap(), 35);
    assert_eq!(segment_bases(dir.path()), vec![30]);
    assert_eq!(log.log_start_offset(), 35);
    assert_eq!(log.log_end_offset(), 35);
    assert!(log.read(35, 1 << 20).unwrap().is_empty());
    assert_eq!(out_of_range(log.read(34, 1 << 20)), (34, 35, 35));
    let info = log.append(&[rec400(35, 1_000)], Durability::Written).unwrap();
    assert_eq!(info.base_offset, 35);
    assert_eq!(read_all(&log), vec![stored(&rec400(35, 1_000), 35)]);

    // The start survives a reopen.
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), 35);
    assert_eq!(log.log_end_offset(), 36);
    assert_eq!(out_of_range(log.read(34, 1 << 20)), (34, 35, 36));
}

/// Kafka's retention deletes the segments wholly below the log start in every pass
/// (`deleteLogStartOffsetBreachedSegments`), whatever the size and time limits. After
/// `delete_records_before` moved the log start to the end of the active segment, that
/// segment holds nothing readable once the next roll seals it: the roll's retention
/// deletes it, without any retention limit configured, and it no longer counts in
/// `size_bytes` or `segment_count`.
#[test]
fn a_segment_sealed_wholly_below_the_log_start_is_deleted_at_the_roll() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    for o in 0..40u64 {
        log.append(&[rec400(o, 1_000)], Durability::Written).unwrap();
    }
    assert_eq!(segment_bases(dir.path()), vec![0, 10, 20, 30]);
    // Everything consumed and deleted: the full active segment stays, below the start.
    assert_eq!(log.delete_records_before(40).unwrap(), 40);
    assert_eq!(segment_bases(dir.path()), vec![30]);
    assert_eq!(log.size_bytes(), 4000);

    let info = log.append(&[rec400(40, 1_000)], Durability::Written).unwrap();
    assert_eq!(info.base_offset, 40);
    assert_eq!(segment_bases(dir.path()), vec![40]);
    assert!(!segment_file(dir.path(), 30, "index").exists());
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), 400);
    assert_eq!(log_files_size(dir.path()), 400);
    assert_eq!(log.log_start_offset(), 40);
    assert_eq!(read_all(&log), vec![stored(&rec400(40, 1_000), 40)]);
}

#[test]
fn delete_records_before_inside_a_batch_keeps_that_batch_readable_from_the_start() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&common::make_records(4, 100), Durability::Written).unwrap();
    log.append(&common::make_records(3, 200), Durability::Written).unwrap();
    assert_eq!(log.delete_records_before(2).unwrap(), 2);
    assert_eq!(out_of_range(log.read(1, 1 << 20)), (1, 2, 7));
    // The first batch still starts at 0; the caller skips records below the start.
    let batches = log.read(2, 1 << 20).unwrap();
    assert_eq!(batches.iter().map(|b| b.base_offset()).collect::<Vec<_>>(), vec![0, 4]);
    let offsets: Vec<u64> = read_all(&log).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![2, 3, 4, 5, 6]);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(2));
    assert_eq!(log.offset_for_timestamp(103).unwrap(), Some(3));
}

// ---------------------------------------------------------------------------------------
// 9. truncate_to
// ---------------------------------------------------------------------------------------

#[test]
fn truncate_to_cuts_at_batch_boundaries_across_segments() {
    let dir = temp_dir();
    let config = small_config();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    // Batches of three 108-byte records: 381 bytes, ten per segment, 30 offsets per segment.
    let batch = |base: u64| -> Vec<Record> { (base..base + 3).map(|o| rec108(o, 5_000 + base as i64)).collect() };
    let expected_up_to = |end: u64| -> Vec<LogRecord> {
        (0..end)
            .map(|o| stored(&rec108(o, 5_000 + (o - o % 3) as i64), o))
            .collect()
    };
    for b in 0..35u64 {
        let info = log.append(&batch(3 * b), Durability::Written).unwrap();
        assert_eq!((info.base_offset, info.size_bytes), (3 * b, 381));
    }
    assert_eq!(segment_bases(dir.path()), vec![0, 30, 60, 90]);
    assert_eq!(log.log_end_offset(), 105);

    // Past or at the end: nothing to do.
    assert_eq!(log.truncate_to(105).unwrap(), 105);
    assert_eq!(log.truncate_to(1_000).unwrap(), 105);

    // At a batch boundary.
    assert_eq!(log.truncate_to(99).unwrap(), 99);
    assert_eq!(log.log_end_offset(), 99);
    assert_eq!(log.visible_end_offset(), 99);
    assert!(log.read(99, 1 << 20).unwrap().is_empty());
    assert_eq!(out_of_range(log.read(100, 1 << 20)), (100, 0, 99));
    assert_eq!(read_all(&log), expected_up_to(99));
    assert_eq!(
        std::fs::metadata(segment_file(dir.path(), 90, "log")).unwrap().len(),
        3 * 381
    );

    // Inside a batch: the whole batch goes.
    assert_eq!(log.truncate_to(97).unwrap(), 96);
    assert_eq!(log.log_end_offset(), 96);
    assert_eq!(read_all(&log), expected_up_to(96));

    // At a segment base: that segment is emptied, later ones deleted.
    assert_eq!(log.truncate_to(60).unwrap(), 60);
    assert_eq!(segment_bases(dir.path()), vec![0, 30, 60]);
    assert_eq!(std::fs::metadata(segment_file(dir.path(), 60, "log")).unwrap().len(), 0);
    for suffix in ["log", "index", "timeindex"] {
        assert!(!segment_file(dir.path(), 90, suffix).exists());
    }
    assert_eq!(read_all(&log), expected_up_to(60));

    // Across segments, inside a batch (48..=50).
    assert_eq!(log.truncate_to(50).unwrap(), 48);
    assert_eq!(segment_bases(dir.path()), vec![0, 30]);
    for suffix in ["log", "index", "timeindex"] {
        assert!(!segment_file(dir.path(), 60, suffix).exists());
    }
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.log_end_offset(), 48);
    assert_eq!(log.size_bytes(), 10 * 381 + 6 * 381);
    assert_eq!(read_all(&log), expected_up_to(48));
    assert_eq!(log.offset_for_timestamp(5_000 + 48).unwrap(), None);
    assert_eq!(log.offset_for_timestamp(5_000 + 45).unwrap(), Some(45));

    // Appends continue at the new end, and roll as usual once the segment is full again.
    for b in 16..21u64 {
        let info = log.append(&batch(3 * b), Durability::Written).unwrap();
        assert_eq!(info.base_offset, 3 * b);
    }
    assert_eq!(segment_bases(dir.path()), vec![0, 30, 60]);
    assert_eq!(log.log_end_offset(), 63);
    assert_eq!(read_all(&log), expected_up_to(63));

    // The truncated state survives a reopen.
    assert_eq!(log.truncate_to(55).unwrap(), 54);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.log_end_offset(), 54);
    assert_eq!(segment_bases(dir.path()), vec![0, 30]);
    assert_eq!(read_all(&log), expected_up_to(54));
    assert_eq!(log.append(&batch(54), Durability::Written).unwrap().base_offset, 54);

    // Below the log start: every record goes, and the log restarts empty at its start,
    // which does not move back (offsets below it are never given out again).
    assert_eq!(log.delete_records_before(31).unwrap(), 31);
    assert_eq!(log.truncate_to(7).unwrap(), 31);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (31, 31));
    assert!(log.read(31, 1 << 20).unwrap().is_empty());
    assert_eq!(segment_bases(dir.path()), vec![31]);
    let info = log.append(&batch(31), Durability::Written).unwrap();
    assert_eq!(info.base_offset, 31);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (31, 34));
    assert_eq!(read_all(&log).first().map(|r| r.offset), Some(31));
}

#[test]
fn truncate_inside_the_batch_holding_the_log_start_leaves_an_empty_log_at_the_start() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&common::make_records(4, 0), Durability::Written).unwrap(); // 0..=3
    log.append(&common::make_records(4, 0), Durability::Written).unwrap(); // 4..=7
    assert_eq!(log.delete_records_before(2).unwrap(), 2);

    // 3 is not below the log start, so the call is valid; its batch (0..=3) goes whole,
    // which removes every record still stored below 3. Nothing below the start may come
    // back: the log is empty and ends where it starts (as open does for a log cut below
    // its start: "truncate fully and start at").
    assert_eq!(log.truncate_to(3).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 2);
    assert_eq!(log.log_end_offset(), 2);
    assert!(log.read(2, 1 << 20).unwrap().is_empty());
    assert_eq!(out_of_range(log.read(1, 1 << 20)), (1, 2, 2));

    // The next append is readable at the offset it was given, now and after a reopen.
    let record = Record::new().key("k").value("after").timestamp(9);
    let info = log.append(std::slice::from_ref(&record), Durability::Written).unwrap();
    assert_eq!(info.base_offset, 2);
    assert_eq!(read_all(&log), vec![stored(&record, 2)]);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 3));
    assert_eq!(read_all(&log), vec![stored(&record, 2)]);
}

// ---------------------------------------------------------------------------------------
// 10. Reads past the end
// ---------------------------------------------------------------------------------------

#[test]
fn read_at_the_end_is_empty_and_past_it_is_out_of_range() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(log.read(0, 1 << 20).unwrap().is_empty());
    assert_eq!(out_of_range(log.read(1, 1 << 20)), (1, 0, 0));

    log.append(&common::make_records(5, 0), Durability::Written).unwrap();
    assert!(log.read(5, 1 << 20).unwrap().is_empty());
    assert!(log.read(5, 0).unwrap().is_empty());
    assert_eq!(out_of_range(log.read(6, 1 << 20)), (6, 0, 5));
    assert_eq!(out_of_range(log.read(u64::MAX, 1 << 20)), (u64::MAX, 0, 5));
    let err = log.read(6, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "offset 6 is out of range: the log holds offsets 0 to 5 (exclusive end)"
    );
    assert_eq!(log.read(4, 1 << 20).unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// 11. Durability::Buffered
// ---------------------------------------------------------------------------------------

#[test]
fn buffered_records_become_readable_at_flush() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    for o in 0..3u64 {
        let info = log.append(&[rec400(o, 10)], Durability::Buffered).unwrap();
        assert_eq!((info.base_offset, info.last_offset, info.size_bytes), (o, o, 400));
    }
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.visible_end_offset(), 0);
    assert_eq!(log.synced_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert!(log.read(0, 1 << 20).unwrap().is_empty());
    assert!(log.read(2, 1 << 20).unwrap().is_empty());
    assert!(log.read(3, 1 << 20).unwrap().is_empty());
    assert_eq!(out_of_range(log.read(4, 1 << 20)), (4, 0, 3));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);

    log.flush().unwrap();
    assert_eq!(log.visible_end_offset(), 3);
    assert_eq!(log.synced_end_offset(), 3);
    assert_eq!(log.size_bytes(), 1200);
    assert_eq!(
        read_all(&log),
        (0..3).map(|o| stored(&rec400(o, 10), o)).collect::<Vec<_>>()
    );
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));

    // A non-buffered append hands earlier buffered records to the OS with it.
    log.append(&[rec400(3, 10)], Durability::Buffered).unwrap();
    assert_eq!((log.log_end_offset(), log.visible_end_offset()), (4, 3));
    log.append(&[rec400(4, 10)], Durability::Written).unwrap();
    assert_eq!((log.log_end_offset(), log.visible_end_offset()), (5, 5));
    assert_eq!(log.size_bytes(), 2000);
    assert_eq!(read_all(&log).len(), 5);

    // Closing flushes the buffer.
    log.append(&[rec400(5, 10)], Durability::Buffered).unwrap();
    assert_eq!(log.visible_end_offset(), 5);
    drop(log);
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(
        read_all(&log),
        (0..6).map(|o| stored(&rec400(o, 10), o)).collect::<Vec<_>>()
    );
}

#[test]
fn buffered_records_are_written_when_the_buffer_fills() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default().write_buffer_bytes(800)).unwrap();
    log.append(&[rec400(0, 10)], Durability::Buffered).unwrap();
    assert_eq!(
        (log.log_end_offset(), log.visible_end_offset(), log.size_bytes()),
        (1, 0, 0)
    );
    log.append(&[rec400(1, 10)], Durability::Buffered).unwrap();
    assert_eq!(
        (log.log_end_offset(), log.visible_end_offset(), log.size_bytes()),
        (2, 2, 800)
    );
    assert_eq!(read_all(&log).len(), 2);
}

// ---------------------------------------------------------------------------------------
// 12. Locking
// ---------------------------------------------------------------------------------------

const HOLD_ENV: &str = "BROOKLET_TEST_HOLD_DIR";

/// Not a test of its own: when `BROOKLET_TEST_HOLD_DIR` is set (by
/// `directory_lock_excludes_a_second_open_in_another_process`), holds the log in that
/// directory open until stdin closes.
#[test]
fn lock_holder_child_process() {
    let Some(dir) = std::env::var_os(HOLD_ENV) else { return };
    let log = PartitionLog::open(&dir, LogConfig::default()).expect("child opens the log");
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(log);
}

#[test]
fn directory_lock_excludes_a_second_open_in_the_same_process() {
    let dir = temp_dir();
    let first = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    first.append(&common::make_records(2, 0), Durability::Written).unwrap();
    let err = PartitionLog::open(dir.path(), LogConfig::default()).unwrap_err();
    match &err {
        Error::Locked { path } => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    // The failed open changed nothing.
    assert_eq!(first.log_end_offset(), 2);
    assert_eq!(read_all(&first).len(), 2);
    drop(first);

    let second = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(second.recovery_report().clean_shutdown);
    assert_eq!(second.log_end_offset(), 2);
}

#[test]
fn directory_lock_excludes_a_second_open_in_another_process() {
    let dir = temp_dir();
    {
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&common::make_records(3, 0), Durability::Synced).unwrap();
        log.close().unwrap();
    }
    let (mut child, ()) = child_test(
        "lock_holder_child_process",
        HOLD_ENV,
        dir.path(),
        "holding the log",
        |line| line.trim_end().ends_with("ready").then_some(()),
    );

    let err = PartitionLog::open(dir.path(), LogConfig::default()).unwrap_err();
    match &err {
        Error::Locked { path } => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);

    // The child died holding the log open (its open removed the clean-shutdown marker):
    // the next open recovers and keeps every record.
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(!log.recovery_report().clean_shutdown);
    assert_eq!(log.recovery_report().log_end_offset, 3);
    assert_eq!(log.recovery_report().truncation, None);
    assert_eq!(read_all(&log).len(), 3);
}

// ---------------------------------------------------------------------------------------
// 13. Configuration
// ---------------------------------------------------------------------------------------

#[test]
fn open_refuses_invalid_configs_naming_the_field() {
    let (field, reason) = config_error(LogConfig::default().segment_bytes(0));
    assert_eq!(field, "segment_bytes");
    assert!(reason.contains('0'), "{reason}");
    let (field, reason) = config_error(LogConfig::default().segment_bytes(u64::from(u32::MAX) + 1));
    assert_eq!(field, "segment_bytes");
    assert!(reason.contains(&(u64::from(u32::MAX) + 1).to_string()), "{reason}");
    assert_eq!(
        config_error(LogConfig::default().segment_bytes(4095)).0,
        "segment_bytes"
    );
    assert_eq!(
        config_error(LogConfig::default().index_interval_bytes(0)).0,
        "index_interval_bytes"
    );
    assert_eq!(
        config_error(LogConfig::default().segment_bytes(4096).max_batch_bytes(4097)).0,
        "max_batch_bytes"
    );
    assert_eq!(
        config_error(LogConfig::default().retention_ms(Some(Duration::ZERO))).0,
        "retention_ms"
    );
    assert_eq!(
        config_error(LogConfig::default().segment_ms(Some(Duration::ZERO))).0,
        "segment_ms"
    );

    let dir = temp_dir();
    let err = PartitionLog::open(dir.path(), LogConfig::default().index_interval_bytes(0)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid configuration for `index_interval_bytes`"),
        "{err}"
    );

    // The bounds themselves are accepted.
    for config in [
        LogConfig::default().segment_bytes(4096),
        LogConfig::default().segment_bytes(u64::from(u32::MAX)),
        LogConfig::default().segment_bytes(4096).max_batch_bytes(4096),
        LogConfig::default().index_interval_bytes(1),
        LogConfig::default().retention_ms(Some(Duration::from_millis(1))),
    ] {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.config(), config);
    }
}

// ---------------------------------------------------------------------------------------
// 14. Append arguments
// ---------------------------------------------------------------------------------------

#[test]
fn oversized_batches_and_empty_appends_are_refused_without_writing() {
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), small_config().max_batch_bytes(2048)).unwrap();
    let first = log.append(&[rec400(0, 1)], Durability::Written).unwrap();
    assert_eq!(first.size_bytes, 400);

    // A lone record with an L-byte value (64 ≤ L < 8192) makes a batch of L + 66 bytes.
    let exact = Record::new().value(vec![7u8; 1982]).timestamp(1);
    let info = log.append(std::slice::from_ref(&exact), Durability::Written).unwrap();
    assert_eq!((info.base_offset, info.size_bytes), (1, 2048));

    let too_big = Record::new().value(vec![7u8; 1983]).timestamp(1);
    for durability in [Durability::Buffered, Durability::Written, Durability::Synced] {
        match log.append(std::slice::from_ref(&too_big), durability) {
            Err(Error::RecordTooLarge { size, max }) => assert_eq!((size, max), (2049, 2048)),
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.visible_end_offset(), 2);
        assert_eq!(log.size_bytes(), 2448);
    }
    // Several small records adding up past the limit.
    let many: Vec<Record> = (0..10).map(|i| rec400(i, 1)).collect();
    assert!(matches!(
        log.append(&many, Durability::Written),
        Err(Error::RecordTooLarge { max: 2048, .. })
    ));

    match log.append(&[], Durability::Written) {
        Err(Error::InvalidArgument { .. }) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.size_bytes(), 2448);
    assert_eq!(log_files_size(dir.path()), 2448);

    // The log is still usable, and nothing refused was stored.
    assert_eq!(log.append(&[rec400(2, 1)], Durability::Written).unwrap().base_offset, 2);
    let offsets: Vec<(u64, usize)> = read_all(&log)
        .iter()
        .map(|r| (r.offset, r.value.as_ref().unwrap().len()))
        .collect();
    assert_eq!(offsets, vec![(0, 334), (1, 1982), (2, 334)]);
}

// ---------------------------------------------------------------------------------------
// 15. Concurrency
// ---------------------------------------------------------------------------------------

/// Checks offsets are dense from 0 and each writer's sequence numbers rise in offset order.
/// Returns the number of records per writer.
fn check_interleaving(records: &[LogRecord]) -> BTreeMap<Vec<u8>, u32> {
    let mut last: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        let key = r.key.as_ref().unwrap().to_vec();
        let seq = u32::from_le_bytes(r.value.as_ref().unwrap()[..].try_into().unwrap());
        let expected = last.get(&key).map_or(0, |s| s + 1);
        assert_eq!(seq, expected, "writer {key:?} at offset {i}");
        last.insert(key, seq);
    }
    last.into_iter().map(|(k, s)| (k, s + 1)).collect()
}

#[test]
fn concurrent_appends_and_reads_keep_offsets_dense_and_per_writer_order() {
    let dir = temp_dir();
    let log = Arc::new(PartitionLog::open(dir.path(), LogConfig::default().segment_bytes(64 * 1024)).unwrap());
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut passes = 0u32;
            loop {
                let finished = done.load(Ordering::Acquire);
                let records = read_all(&log);
                assert!(records.len() <= 4000);
                check_interleaving(&records);
                passes += 1;
                if finished {
                    assert_eq!(records.len(), 4000);
                    return passes;
                }
                std::thread::yield_now();
            }
        })
    };
    let writers: Vec<_> = (0..4u8)
        .map(|id| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for seq in 0..1000u32 {
                    let record = Record::new()
                        .key(vec![id])
                        .value(seq.to_le_bytes().to_vec())
                        .timestamp(1);
                    let info = log.append(&[record], Durability::Written).unwrap();
                    assert_eq!(info.base_offset, info.last_offset);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    assert!(reader.join().unwrap() >= 1);

    assert_eq!(log.log_end_offset(), 4000);
    assert_eq!(log.visible_end_offset(), 4000);
    assert!(log.segment_count() > 1);
    let records = read_all(&log);
    assert_eq!(records.len(), 4000);
    let counts = check_interleaving(&records);
    assert_eq!(counts, (0..4u8).map(|id| (vec![id], 1000)).collect());
}

#[test]
fn concurrent_synced_appends_all_become_durable() {
    let dir = temp_dir();
    let log = Arc::new(PartitionLog::open(dir.path(), LogConfig::default()).unwrap());
    let writers: Vec<_> = (0..4u8)
        .map(|id| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for seq in 0..50u32 {
                    let record = Record::new()
                        .key(vec![id])
                        .value(seq.to_le_bytes().to_vec())
                        .timestamp(1);
                    let info = log.append(&[record], Durability::Synced).unwrap();
                    // Returned only once durable.
                    assert!(log.synced_end_offset() > info.last_offset);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(log.log_end_offset(), 200);
    assert_eq!(log.synced_end_offset(), 200);
    assert_eq!(log.visible_end_offset(), 200);
    let records = read_all(&log);
    assert_eq!(records.len(), 200);
    let counts = check_interleaving(&records);
    assert_eq!(counts, (0..4u8).map(|id| (vec![id], 50)).collect());
}

// ---------------------------------------------------------------------------------------
// 16. Send + Sync
// ---------------------------------------------------------------------------------------

const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PartitionLog>();
};

#[test]
fn partition_log_is_send_and_sync() {
    let dir = temp_dir();
    let log = Arc::new(PartitionLog::open(dir.path(), LogConfig::default()).unwrap());
    let other = Arc::clone(&log);
    let info = std::thread::spawn(move || other.append(&[Record::new().value("x").timestamp(1)], Durability::Written))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(info.base_offset, 0);
    assert_eq!(read_all(&log).len(), 1);
}
