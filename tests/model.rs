//! Model-based test of `PartitionLog`: random sequences of operations run against a real log
//! (segments of 4–8 KiB, index intervals down to one byte and indexes of 8 entries, so
//! segments roll and indexes fill often) and against a model — the records expected at each
//! offset, with their batches, the log start and the log end — and every answer of the log
//! is checked against what its documentation promises for the model's state.
//!
//! Operations: appends of 1–5 varied records, or 50–150 tiny ones (keys, values and
//! headers empty, absent or random; explicit, missing, ancient and future timestamps; every
//! codec; every durability), bursts of appends, appends the log must refuse, reads from
//! anywhere (below the start, inside, at the visible end, at and past the end) with any
//! `max_bytes`, `truncate_to` and `delete_records_before` anywhere, `offset_for_timestamp`
//! against a brute-force search, `flush`, a clean close (or drop) and reopen, a process
//! crash (nothing more reaches the files) and reopen, a power loss (unsynced writes dropped
//! or torn) and reopen, a read-only open instead of the writer, a read-only log kept beside
//! the writer (checked every few operations, so it falls behind), size and time retention
//! (the segments that must go computed from the segment files and the model), configuration
//! changes, and runs of appends, cuts and retention while another thread reads the log over
//! and over (every batch it gets must be one appended at that offset). After every
//! operation: log start, log end, visible and synced ends, `size_bytes`, `segment_count`,
//! the segment files, and a full read from the start.
//!
//! CI runs 48 cases of 20–60 operations. `BROOKLET_MODEL_CASES=n` runs more cases,
//! `BROOKLET_MODEL_OPS=n` longer ones and `BROOKLET_MODEL_SEED=n` others, e.g.
//! `BROOKLET_MODEL_CASES=4000 BROOKLET_MODEL_OPS=150 BROOKLET_MODEL_SEED=8 cargo test --release --test model`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brooklet::io::{EIO, Fault, FaultFs, FaultOp, PowerLoss};
use brooklet::{
    AppendOptions, Compression, Durability, Error, LogConfig, PartitionLog, Record, RecordBatch, RetentionReport,
    TimestampType,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

/// Timestamps far in the future (year 2096): never old for time retention.
const FUTURE: i64 = 4_000_000_000_000;
/// Age limit of the time-retention operation: far from every timestamp the test uses
/// (ancient ones are below 10^6 ms, append times within the test's run, future ones above).
const RETENTION_AGE: Duration = Duration::from_secs(3600);

/// A record's timestamp as the test sets it.
#[derive(Debug, Clone, Copy)]
enum Ts {
    /// None: the log stamps it with the append time.
    Append,
    /// Milliseconds after the epoch, in 1970: older than any retention age.
    Ancient(i64),
    /// `FUTURE + n`.
    Future(i64),
}

#[derive(Debug, Clone)]
struct RecSpec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    ts: Ts,
}

impl RecSpec {
    fn to_record(&self) -> Record {
        let mut r = Record::new();
        if let Some(k) = &self.key {
            r = r.key(k.clone());
        }
        if let Some(v) = &self.value {
            r = r.value(v.clone());
        }
        for (name, value) in &self.headers {
            r = r.header(name.clone(), value.clone());
        }
        match self.ts {
            Ts::Append => r,
            Ts::Ancient(t) => r.timestamp(t),
            Ts::Future(n) => r.timestamp(FUTURE + n),
        }
    }
}

/// An offset, resolved against the model's state when the operation runs.
#[derive(Debug, Clone, Copy)]
enum Pos {
    /// `k + 1` below the log start (the start itself if it is 0).
    BelowStart(u64),
    /// Some offset in `start..end` (the start if the log is empty).
    Inside(u64),
    /// The visible end the log reports.
    AtVisible,
    /// The log end.
    AtEnd,
    /// `k + 1` past the log end (saturating).
    PastEnd(u64),
    /// `k + 1` below the log end (the start, if that is below it).
    FromEnd(u64),
    /// `k + 1` past the log start (the end, if that is below it).
    FromStart(u64),
}

/// A timestamp to look up, resolved against the model.
#[derive(Debug, Clone, Copy)]
enum TsPick {
    /// The timestamp of some readable record, plus `delta`.
    OfRecord(u64, i64),
    Fixed(i64),
    Now,
}

/// Appends the log must refuse, changing nothing.
#[derive(Debug, Clone, Copy)]
enum Refused {
    Empty,
    NegativeTimestamp(i64),
    TooLarge,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: Vec<RecSpec>,
        durability: Durability,
        compression: Compression,
    },
    /// Several appends in a row (`Written`, uncompressed unless given), to grow the log
    /// past a few segments.
    Burst(Vec<Vec<RecSpec>>, Compression),
    Refused(Refused, Durability),
    Read(Pos, usize),
    Truncate(Pos),
    DeleteBefore(Pos),
    TimeLookup(TsPick),
    Flush,
    /// `close` (or, with `true`, drop, which closes cleanly too), then open again.
    Reopen(bool),
    /// Drop the log as a killed process leaves it: nothing more reaches the files (every
    /// write, sync, rename and removal fails from then on); then open again.
    Crash,
    /// A power loss (unsynced writes dropped, or torn with this seed), then open again:
    /// the log must be a prefix of the model holding at least every synced record.
    PowerLoss(Option<u64>),
    /// Close, open read-only and check it, then open writable again.
    ReadOnlyReopen,
    /// Open a read-only log beside the writer and check what it serves.
    Reader,
    /// `enforce_retention` with a size limit, if any, and with `retention_ms` =
    /// [`RETENTION_AGE`] if `true`.
    Retain(Option<Limit>, bool),
    Reconfigure(Knobs),
    /// These operations (appends, cuts, retention…) while another thread reads the log
    /// over and over: every batch it gets is one that was appended at that offset, whole,
    /// and no read fails but with `OffsetOutOfRange` (a cut or a new start raced it).
    Concurrently(Vec<Op>),
}

/// A size limit for retention.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// This percentage of `size_bytes()`.
    Percent(u64),
    /// Exactly the bytes of the segments from the `k`-th last one on (0: the active one),
    /// where a segment goes or stays by one byte.
    Segments(usize, i8),
}

fn limit() -> impl Strategy<Value = Option<Limit>> {
    prop::option::weighted(
        0.7,
        prop_oneof![
            (0u64..=120).prop_map(Limit::Percent),
            (0usize..6, -1i8..=1).prop_map(|(k, d)| Limit::Segments(k, d)),
        ],
    )
}

/// The configuration the log runs with (changed by `Reconfigure`).
#[derive(Debug, Clone, Copy)]
struct Knobs {
    segment_bytes: u64,
    index_interval: u32,
    index_max_bytes: u32,
    write_buffer: usize,
    append_time: bool,
    verify_checksums: bool,
}

impl Knobs {
    fn timestamp_type(self) -> TimestampType {
        if self.append_time {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    fn config(self) -> LogConfig {
        LogConfig::default()
            .segment_bytes(self.segment_bytes)
            .index_interval_bytes(self.index_interval)
            .index_max_bytes(self.index_max_bytes)
            .write_buffer_bytes(self.write_buffer)
            .verify_checksums(self.verify_checksums)
            .timestamp_type(self.timestamp_type())
    }
}

fn bytes_up_to(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        3 => proptest::collection::vec(any::<u8>(), 1..max),
        2 => (any::<u8>(), 1..max).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(proptest::char::range('a', 'z'), 0..6).prop_map(|c| c.into_iter().collect()),
        1 => proptest::collection::vec(any::<char>(), 0..3).prop_map(|c| c.into_iter().collect()),
    ]
}

/// A record; with `old`, its timestamp is nearly always ancient (so that whole segments
/// are old for time retention, the active one included).
fn rec_spec(old: bool) -> impl Strategy<Value = RecSpec> {
    let key = prop_oneof![1 => Just(None), 2 => bytes_up_to(16).prop_map(Some)];
    // At most 5 × ~700 bytes: a batch always fits the smallest segment (4 KiB).
    let value = prop_oneof![1 => Just(None), 6 => bytes_up_to(600).prop_map(Some)];
    let headers = proptest::collection::vec((header_name(), bytes_up_to(12)), 0..3);
    let ts = if old {
        prop_oneof![
            1 => Just(Ts::Append),
            20 => (0i64..1_000_000).prop_map(Ts::Ancient),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => Just(Ts::Append),
            3 => (0i64..1_000_000).prop_map(Ts::Ancient),
            1 => (0i64..1000).prop_map(Ts::Future),
        ]
        .boxed()
    };
    (key, value, headers, ts).prop_map(|(key, value, headers, ts)| RecSpec {
        key,
        value,
        headers,
        ts,
    })
}

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![
        3 => Just(Durability::Buffered),
        4 => Just(Durability::Written),
        1 => Just(Durability::Synced),
    ]
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        8 => Just(Compression::None),
        1 => Just(Compression::Gzip),
        1 => Just(Compression::Snappy),
        1 => Just(Compression::Lz4),
        1 => Just(Compression::Zstd),
    ]
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        1 => (0u64..4).prop_map(Pos::BelowStart),
        6 => any::<u64>().prop_map(Pos::Inside),
        1 => Just(Pos::AtVisible),
        1 => Just(Pos::AtEnd),
        1 => prop_oneof![0u64..3, Just(u64::MAX)].prop_map(Pos::PastEnd),
    ]
}

/// Where to cut: mostly near the end, so that the log keeps growing.
fn cut_pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        1 => (0u64..4).prop_map(Pos::BelowStart),
        2 => any::<u64>().prop_map(Pos::Inside),
        4 => (0u64..12).prop_map(Pos::FromEnd),
        1 => Just(Pos::AtVisible),
        1 => Just(Pos::AtEnd),
        1 => prop_oneof![0u64..3, Just(u64::MAX)].prop_map(Pos::PastEnd),
    ]
}

/// Where to move the log start: mostly a little past it.
fn start_pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        1 => (0u64..4).prop_map(Pos::BelowStart),
        1 => any::<u64>().prop_map(Pos::Inside),
        4 => (0u64..12).prop_map(Pos::FromStart),
        1 => Just(Pos::AtVisible),
        1 => Just(Pos::AtEnd),
        1 => prop_oneof![0u64..3, Just(u64::MAX)].prop_map(Pos::PastEnd),
    ]
}

fn max_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => 0usize..200,
        3 => 200usize..6000,
        1 => Just(1 << 20),
        1 => Just(usize::MAX),
    ]
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        prop_oneof![Just(4096u64), Just(5000), Just(8192)],
        prop_oneof![Just(1u32), Just(50), Just(400), Just(4096)],
        prop_oneof![2 => Just(64u32), 1 => Just(96), 1 => Just(10 << 20)],
        prop_oneof![Just(0usize), Just(600), Just(64 << 10)],
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(segment_bytes, index_interval, index_max_bytes, write_buffer, append_time, verify_checksums)| Knobs {
                segment_bytes,
                index_interval,
                index_max_bytes,
                write_buffer,
                append_time,
                verify_checksums,
            },
        )
}

fn op(old: bool) -> impl Strategy<Value = Op> {
    // Mostly 1–5 varied records; sometimes 50–150 tiny ones (offset deltas past 63 take a
    // second varint byte).
    let tiny = (
        prop_oneof![Just(None), proptest::collection::vec(any::<u8>(), 0..4).prop_map(Some)],
        prop_oneof![Just(None), proptest::collection::vec(any::<u8>(), 0..8).prop_map(Some)],
        prop_oneof![
            Just(Ts::Append),
            (0i64..1_000_000).prop_map(Ts::Ancient),
            (0i64..1000).prop_map(Ts::Future)
        ],
    )
        .prop_map(|(key, value, ts)| RecSpec {
            key,
            value,
            headers: Vec::new(),
            ts,
        });
    let records = prop_oneof![
        12 => proptest::collection::vec(rec_spec(old), 1..=5),
        1 => proptest::collection::vec(tiny, 50..=150),
    ];
    let append = (records, durability(), compression())
        .prop_map(|(records, durability, compression)| Op::Append {
            records,
            durability,
            compression,
        })
        .boxed();
    let burst = (
        proptest::collection::vec(proptest::collection::vec(rec_spec(old), 1..=5), 3..=12),
        prop_oneof![4 => Just(Compression::None), 1 => compression()],
    )
        .prop_map(|(batches, compression)| Op::Burst(batches, compression))
        .boxed();
    let refused = (
        prop_oneof![
            Just(Refused::Empty),
            (1i64..1000).prop_map(|t| Refused::NegativeTimestamp(-t)),
            Just(Refused::NegativeTimestamp(i64::MIN)),
            Just(Refused::TooLarge),
        ],
        durability(),
    )
        .prop_map(|(r, d)| Op::Refused(r, d));
    let ts_pick = prop_oneof![
        4 => (any::<u64>(), -1i64..=1).prop_map(|(n, d)| TsPick::OfRecord(n, d)),
        1 => prop_oneof![
            Just(i64::MIN),
            Just(0),
            (0i64..1_000_000),
            Just(FUTURE),
            Just(FUTURE + 1000),
            Just(i64::MAX)
        ]
        .prop_map(TsPick::Fixed),
        1 => Just(TsPick::Now),
    ];
    let inner = prop_oneof![
        6 => append.clone(),
        2 => burst.clone(),
        3 => cut_pos().prop_map(Op::Truncate),
        2 => start_pos().prop_map(Op::DeleteBefore),
        1 => (limit(), any::<bool>()).prop_map(|(b, t)| Op::Retain(b, t)),
        1 => Just(Op::Flush),
        1 => (pos(), max_bytes()).prop_map(|(p, m)| Op::Read(p, m)),
    ];
    prop_oneof![
        2 => proptest::collection::vec(inner, 1..8).prop_map(Op::Concurrently),
        20 => append,
        3 => burst,
        1 => refused,
        6 => (pos(), max_bytes()).prop_map(|(p, m)| Op::Read(p, m)),
        2 => cut_pos().prop_map(Op::Truncate),
        2 => start_pos().prop_map(Op::DeleteBefore),
        3 => ts_pick.prop_map(Op::TimeLookup),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(Op::Reopen),
        1 => Just(Op::Crash),
        1 => prop::option::of(any::<u64>()).prop_map(Op::PowerLoss),
        1 => Just(Op::ReadOnlyReopen),
        1 => Just(Op::Reader),
        2 => (limit(), any::<bool>()).prop_map(|(b, t)| Op::Retain(b, t)),
        1 => knobs().prop_map(Op::Reconfigure),
    ]
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

/// A record as the log must store it.
#[derive(Debug, Clone)]
struct Stored {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
    /// Index of its batch in `Model::batches`.
    batch: usize,
}

#[derive(Debug, Clone)]
struct BatchInfo {
    base: u64,
    last: u64,
    size: usize,
    compression: Compression,
    timestamp_type: TimestampType,
    max_timestamp: i64,
}

/// A batch as appended: its codec and records, and whether the log stamped them all with
/// the append time.
#[derive(Debug, Clone)]
struct Appended {
    compression: Compression,
    log_append_time: bool,
    records: Vec<RecSpec>,
}

/// Every batch ever appended, by base offset: a truncation lets offsets be given again, so
/// a reader racing one may get either.
type History = Arc<Mutex<HashMap<u64, Vec<Appended>>>>;

/// Whether `batch` is one of the batches appended at its base offset.
fn appended_at(history: &History, batch: &RecordBatch) -> Result<(), String> {
    let records: Vec<brooklet::LogRecord> = batch
        .records()
        .collect::<brooklet::Result<_>>()
        .map_err(|e| format!("batch {}: {e}", batch.base_offset()))?;
    let history = history.lock().unwrap();
    let versions = history.get(&batch.base_offset()).map_or(&[][..], Vec::as_slice);
    let same = |a: &Appended| {
        batch.compression() == Some(a.compression)
            && a.records.len() == records.len()
            && a.records.iter().zip(&records).enumerate().all(|(i, (spec, r))| {
                let timestamp = match spec.ts {
                    _ if a.log_append_time => None,
                    Ts::Append => None,
                    Ts::Ancient(t) => Some(t),
                    Ts::Future(n) => Some(FUTURE + n),
                };
                r.offset == batch.base_offset() + i as u64
                    && r.key.as_deref() == spec.key.as_deref()
                    && r.value.as_deref() == spec.value.as_deref()
                    && r.headers.len() == spec.headers.len()
                    && r.headers
                        .iter()
                        .zip(&spec.headers)
                        .all(|(x, (n, v))| x.name == *n && x.value == v[..])
                    && timestamp.is_none_or(|t| t == r.timestamp)
            })
    };
    if versions.iter().any(same) {
        Ok(())
    } else {
        Err(format!(
            "batch {}..={} ({} versions appended there) is none of them: {records:?}",
            batch.base_offset(),
            batch.last_offset(),
            versions.len()
        ))
    }
}

/// Reads `log` over and over, from its start to its end, until `stop`; returns how many
/// reads it made, or what it found wrong.
fn read_concurrently(log: &PartitionLog, history: &History, stop: &AtomicBool) -> Result<u64, String> {
    let mut reads = 0u64;
    let mut next = 0;
    while reads == 0 || !stop.load(Ordering::Acquire) {
        reads += 1;
        let max_bytes = [1, 700, 3000, 1 << 20][reads as usize % 4];
        next = next.max(log.log_start_offset());
        match log.read(next, max_bytes) {
            Ok(batches) => {
                let Some(first) = batches.first() else {
                    next = 0;
                    continue;
                };
                if !(first.base_offset() <= next && next <= first.last_offset()) {
                    return Err(format!(
                        "read({next}) began with batch {}..={}",
                        first.base_offset(),
                        first.last_offset()
                    ));
                }
                let mut expected = first.base_offset();
                for batch in &batches {
                    if batch.base_offset() != expected {
                        return Err(format!("read({next}): batch {} after {expected}", batch.base_offset()));
                    }
                    appended_at(history, batch).map_err(|e| format!("read({next}, {max_bytes}): {e}"))?;
                    expected = batch.last_offset() + 1;
                }
                next = expected;
            }
            // A cut or a new log start raced the read.
            Err(Error::OffsetOutOfRange { .. }) => next = 0,
            Err(e) => return Err(format!("read({next}, {max_bytes}): {e}")),
        }
    }
    Ok(reads)
}

/// What the log must hold. Records below the log start stay here (a read may return the
/// batch holding the start from its base), as do records no segment holds any more.
#[derive(Debug, Default)]
struct Model {
    /// The record at each offset from 0 to the log end.
    records: Vec<Stored>,
    batches: Vec<BatchInfo>,
    start: u64,
    /// The visible end is at least this (the documented moments `Buffered` records reach
    /// the OS), and at most the log end.
    visible_min: u64,
    /// The synced end is at least this.
    synced_min: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.records.len() as u64
    }

    fn record(&self, offset: u64) -> &Stored {
        &self.records[offset as usize]
    }

    fn batch_of(&self, offset: u64) -> &BatchInfo {
        &self.batches[self.record(offset).batch]
    }

    /// Drops every record at or after `end` (a batch boundary, or a restart at the start).
    fn truncate(&mut self, end: u64) {
        self.records.truncate(end as usize);
        self.batches.retain(|b| b.base < end);
        self.visible_min = self.visible_min.min(end);
        self.synced_min = self.synced_min.min(end);
    }

    /// The log as a reader that sees up to `end` (≤ the log end) must find it.
    fn up_to(&self, end: u64) -> Model {
        Model {
            records: self.records[..end as usize].to_vec(),
            batches: self.batches.iter().filter(|b| b.base < end).cloned().collect(),
            start: self.start,
            visible_min: end,
            synced_min: 0,
        }
    }

    /// The largest timestamp of the records in `from..to`.
    fn max_timestamp(&self, from: u64, to: u64) -> Option<i64> {
        (from..to).map(|o| self.record(o).timestamp).max()
    }

    /// Bytes of the batches whose base is in `from..to`.
    fn bytes_of(&self, from: u64, to: u64) -> u64 {
        self.batches
            .iter()
            .filter(|b| (from..to).contains(&b.base))
            .map(|b| b.size as u64)
            .sum()
    }
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// The `(base offset, size)` of the segment `.log` files in `dir`, ascending.
fn segment_files(dir: &Path) -> Vec<(u64, u64)> {
    let mut segments: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let stem = name.strip_suffix(".log")?;
            (stem.len() == 20).then(|| (stem.parse().unwrap(), e.metadata().unwrap().len()))
        })
        .collect();
    segments.sort_unstable();
    segments
}

/// Checks that `batch` is exactly the model's batch at its base offset, record by record.
fn check_batch(model: &Model, batch: &RecordBatch, ctx: &str) {
    let base = batch.base_offset();
    assert!(
        base < model.end(),
        "{ctx}: batch at {base} past the end {}",
        model.end()
    );
    let info = model.batch_of(base);
    assert_eq!(
        (info.base, info.last),
        (base, batch.last_offset()),
        "{ctx}: batch bounds"
    );
    assert_eq!(batch.record_count() as u64, info.last - info.base + 1, "{ctx}");
    assert_eq!(batch.size_bytes(), info.size, "{ctx}: size of batch {base}");
    assert_eq!(
        batch.compression(),
        Some(info.compression),
        "{ctx}: codec of batch {base}"
    );
    assert_eq!(batch.timestamp_type(), info.timestamp_type, "{ctx}: batch {base}");
    assert_eq!(batch.max_timestamp(), info.max_timestamp, "{ctx}: batch {base}");
    let mut offset = base;
    for record in batch.records() {
        let record = record.unwrap_or_else(|e| panic!("{ctx}: record of batch {base}: {e}"));
        assert_eq!(record.offset, offset, "{ctx}: offsets in batch {base}");
        let want = model.record(offset);
        assert_eq!(record.timestamp, want.timestamp, "{ctx}: timestamp of {offset}");
        assert_eq!(record.key.as_deref(), want.key.as_deref(), "{ctx}: key of {offset}");
        assert_eq!(
            record.value.as_deref(),
            want.value.as_deref(),
            "{ctx}: value of {offset}"
        );
        let headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.to_vec()))
            .collect();
        assert_eq!(headers, want.headers, "{ctx}: headers of {offset}");
        offset += 1;
    }
    assert_eq!(offset, info.last + 1, "{ctx}: records of batch {base}");
}

/// One read at `offset`, checked against the contract of `PartitionLog::read`.
fn check_read(log: &PartitionLog, model: &Model, offset: u64, max_bytes: usize, ctx: &str) {
    let (start, end) = (model.start, model.end());
    let visible = log.visible_end_offset();
    let result = log.read(offset, max_bytes);
    if offset < start || offset > end {
        match result {
            Err(Error::OffsetOutOfRange {
                requested,
                start: s,
                end: e,
                partition: None,
            }) => assert_eq!((requested, s, e), (offset, start, end), "{ctx}: read({offset})"),
            other => panic!("{ctx}: read({offset}) outside {start}..={end} gave {other:?}"),
        }
        return;
    }
    let batches = result.unwrap_or_else(|e| panic!("{ctx}: read({offset}, {max_bytes}): {e}"));
    if offset >= visible {
        assert!(
            batches.is_empty(),
            "{ctx}: read({offset}) at or past the visible end {visible} returned batches"
        );
        return;
    }
    let first = batches
        .first()
        .unwrap_or_else(|| panic!("{ctx}: read({offset}) below the visible end {visible} returned nothing"));
    assert!(
        first.base_offset() <= offset && offset <= first.last_offset(),
        "{ctx}: read({offset}) starts with batch {}..={}",
        first.base_offset(),
        first.last_offset()
    );
    let mut next = first.base_offset();
    let mut total = 0;
    for batch in &batches {
        assert_eq!(
            batch.base_offset(),
            next,
            "{ctx}: read({offset}) batches not contiguous"
        );
        assert!(
            batch.last_offset() < visible,
            "{ctx}: read({offset}) returned batch ending at {} past the visible end {visible}",
            batch.last_offset()
        );
        check_batch(model, batch, ctx);
        next = batch.last_offset() + 1;
        total += batch.size_bytes();
    }
    // Batches never span segments, nor does a read.
    let bases: Vec<u64> = segment_files(log.dir()).iter().map(|s| s.0).collect();
    let segment_of = |offset: u64| bases.iter().rev().find(|&&b| b <= offset).copied();
    let last = batches.last().unwrap().last_offset();
    assert_eq!(
        segment_of(first.base_offset()),
        segment_of(last),
        "{ctx}: read({offset}) returned batches {}..={last} of segments {bases:?}",
        first.base_offset()
    );
    assert!(
        total <= max_bytes.max(first.size_bytes()),
        "{ctx}: read({offset}, {max_bytes}) returned {total} bytes in {} batches",
        batches.len()
    );
}

/// Reads everything from the log start to the visible end, `max_bytes` at a time, and
/// checks it is exactly the model's records.
fn check_full_read(log: &PartitionLog, model: &Model, max_bytes: usize, ctx: &str) {
    let visible = log.visible_end_offset();
    let mut next = model.start;
    while next < visible {
        let batches = log
            .read(next, max_bytes)
            .unwrap_or_else(|e| panic!("{ctx}: full read at {next}: {e}"));
        let last = batches
            .last()
            .unwrap_or_else(|| panic!("{ctx}: full read at {next} below the visible end {visible} got nothing"));
        let first = &batches[0];
        assert!(
            first.base_offset() <= next && next <= first.last_offset(),
            "{ctx}: full read at {next}"
        );
        let mut expected = first.base_offset();
        for batch in &batches {
            assert_eq!(
                batch.base_offset(),
                expected,
                "{ctx}: full read at {next}: batches not contiguous"
            );
            assert!(
                batch.last_offset() < visible,
                "{ctx}: full read at {next}: past the visible end {visible}"
            );
            check_batch(model, batch, ctx);
            expected = batch.last_offset() + 1;
        }
        next = last.last_offset() + 1;
    }
    assert_eq!(next, visible, "{ctx}: full read from {} ended at {next}", model.start);
    assert!(
        log.read(visible, max_bytes).unwrap().is_empty(),
        "{ctx}: read at the visible end"
    );
}

fn check_time_lookup(log: &PartitionLog, model: &Model, t: i64, ctx: &str) {
    let visible = log.visible_end_offset();
    let want = (model.start..visible).find(|&o| model.record(o).timestamp >= t);
    let got = log
        .offset_for_timestamp(t)
        .unwrap_or_else(|e| panic!("{ctx}: offset_for_timestamp({t}): {e}"));
    assert_eq!(got, want, "{ctx}: offset_for_timestamp({t})");
}

/// Reads and lookups through a read-only log whose end is `seen`'s end.
fn check_reader(reader: &PartitionLog, seen: &Model, max_bytes: usize, ctx: &str) {
    check_full_read(reader, seen, max_bytes, ctx);
    let (start, end) = (seen.start, seen.end());
    for offset in [start.saturating_sub(1), start, (start + end) / 2, end, end + 1] {
        check_read(reader, seen, offset, max_bytes.min(700), ctx);
    }
    if let Some(t) = seen.max_timestamp(start, end) {
        check_time_lookup(reader, seen, t, ctx);
        check_time_lookup(reader, seen, t + 1, ctx);
    }
    check_time_lookup(reader, seen, 0, ctx);
}

fn is_read_only<T: std::fmt::Debug>(result: brooklet::Result<T>, what: &str, ctx: &str) {
    match result {
        Err(Error::ReadOnly { .. }) => {}
        other => panic!("{ctx}: {what} on a read-only log gave {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

struct Run {
    dir: tempfile::TempDir,
    knobs: Knobs,
    log: Option<Arc<PartitionLog>>,
    /// The file system of the open log (a new one per open), for `Crash`.
    disk: FaultFs,
    model: Model,
    /// The visible end after the last operation: it only grows, but for a truncation or
    /// a crash.
    last_visible: u64,
    /// A read-only log opened beside the writer, kept across operations to check that it
    /// follows the writer, its truncations included (dropped at a simulated power loss).
    reader: Option<PartitionLog>,
    history: History,
}

impl Run {
    fn new(knobs: Knobs) -> Run {
        let mut run = Run {
            dir: tempfile::tempdir().unwrap(),
            knobs,
            log: None,
            disk: FaultFs::new(),
            model: Model::default(),
            last_visible: 0,
            reader: None,
            history: History::default(),
        };
        run.log = Some(Arc::new(run.open()));
        assert!(run.log().recovery_report().clean_shutdown, "a new log");
        run
    }

    fn open(&mut self) -> PartitionLog {
        self.disk = FaultFs::new();
        PartitionLog::open_with_vfs(self.dir.path(), self.knobs.config(), Arc::new(self.disk.clone()))
            .unwrap_or_else(|e| panic!("open: {e}"))
    }

    fn log(&self) -> &PartitionLog {
        self.log.as_ref().unwrap()
    }

    /// Closes the log (cleanly: `close`, or drop) and runs `between` on the closed
    /// directory, then opens it again: the next open must find the clean shutdown.
    fn reopen(&mut self, ctx: &str, by_drop: bool, between: impl FnOnce(&Run)) {
        let log = Arc::into_inner(self.log.take().unwrap()).unwrap();
        if by_drop {
            drop(log);
        } else {
            log.close().unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
        }
        // A close writes the buffered records.
        self.model.visible_min = self.model.end();
        between(self);
        self.log = Some(Arc::new(self.open()));
        let report = self.log().recovery_report();
        // No recovery scan after a clean close: the counters are 0.
        let expected = brooklet::RecoveryReport {
            clean_shutdown: true,
            log_end_offset: self.model.end(),
            ..brooklet::RecoveryReport::default()
        };
        assert_eq!(*report, expected, "{ctx}: reopened");
        self.model.synced_min = self.model.end();
    }

    fn apply(&mut self, op: &Op, ctx: &str) {
        let end = self.model.end();
        let start = self.model.start;
        let resolve = |p: Pos, log: &PartitionLog| match p {
            Pos::BelowStart(k) => start.saturating_sub(k + 1),
            Pos::Inside(n) if end > start => start + n % (end - start),
            Pos::Inside(_) => start,
            Pos::AtVisible => log.visible_end_offset(),
            Pos::AtEnd => end,
            Pos::PastEnd(k) => end.saturating_add(k).saturating_add(1),
            Pos::FromEnd(k) => end.saturating_sub(k + 1).max(start),
            Pos::FromStart(k) => start.saturating_add(k + 1).min(end),
        };
        match op {
            Op::Append {
                records,
                durability,
                compression,
            } => self.append(records, *durability, *compression, ctx),
            Op::Burst(batches, compression) => {
                for records in batches {
                    self.append(records, Durability::Written, *compression, ctx);
                }
            }
            Op::Refused(kind, durability) => {
                let log = self.log();
                let result = match kind {
                    Refused::Empty => log.append(&[], *durability),
                    Refused::NegativeTimestamp(t) => log.append(
                        &[Record::new().value("ok"), Record::new().value("negative").timestamp(*t)],
                        *durability,
                    ),
                    Refused::TooLarge => {
                        // Incompressible and larger than a segment: too large as stored and
                        // uncompressed, whatever the codec.
                        let mut value = vec![0u8; self.knobs.segment_bytes as usize + 1];
                        let mut x: u32 = 0x1234_5678;
                        for b in &mut value {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            *b = x as u8;
                        }
                        let options = AppendOptions {
                            durability: *durability,
                            compression: Compression::Zstd,
                        };
                        log.append_with(&[Record::new().value(value)], options)
                    }
                };
                match (kind, &result) {
                    (Refused::Empty, Err(Error::InvalidArgument { .. }))
                    | (Refused::TooLarge, Err(Error::RecordTooLarge { .. })) => {}
                    (Refused::NegativeTimestamp(t), Err(Error::InvalidTimestamp { timestamp })) if t == timestamp => {}
                    _ => panic!("{ctx}: refused append gave {result:?}"),
                }
            }
            Op::Read(p, max_bytes) => {
                let offset = resolve(*p, self.log());
                check_read(self.log(), &self.model, offset, *max_bytes, ctx);
            }
            Op::Truncate(p) => {
                let offset = resolve(*p, self.log());
                let at = offset.max(start);
                let expected = if at >= end {
                    end
                } else {
                    let base = self.model.batch_of(at).base;
                    if base < start { start } else { base }
                };
                let got = self
                    .log()
                    .truncate_to(offset)
                    .unwrap_or_else(|e| panic!("{ctx}: truncate_to({offset}): {e}"));
                assert_eq!(got, expected, "{ctx}: truncate_to({offset})");
                if at < end {
                    // The reader beside the writer follows the truncation at its next
                    // refresh: it stays.
                    self.model.truncate(expected);
                    self.last_visible = self.last_visible.min(expected);
                }
            }
            Op::DeleteBefore(p) => {
                let offset = resolve(*p, self.log());
                let result = self.log().delete_records_before(offset);
                if offset > end {
                    match result {
                        Err(Error::OffsetOutOfRange {
                            requested,
                            start: s,
                            end: e,
                            partition: None,
                        }) => assert_eq!((requested, s, e), (offset, start, end), "{ctx}"),
                        other => panic!("{ctx}: delete_records_before({offset}) past {end} gave {other:?}"),
                    }
                } else {
                    let got = result.unwrap_or_else(|e| panic!("{ctx}: delete_records_before({offset}): {e}"));
                    assert_eq!(got, offset.max(start), "{ctx}: delete_records_before({offset})");
                    if offset > start {
                        self.model.start = offset;
                        // The start never passes the visible end.
                        self.model.visible_min = self.model.visible_min.max(offset);
                    }
                }
            }
            Op::TimeLookup(pick) => {
                let visible = self.log().visible_end_offset();
                let t = match *pick {
                    TsPick::OfRecord(n, delta) if visible > start => {
                        self.model.record(start + n % (visible - start)).timestamp + delta
                    }
                    TsPick::OfRecord(_, delta) => now_ms() + delta,
                    TsPick::Fixed(t) => t,
                    TsPick::Now => now_ms(),
                };
                check_time_lookup(self.log(), &self.model, t, ctx);
            }
            Op::Flush => {
                self.log().flush().unwrap_or_else(|e| panic!("{ctx}: flush: {e}"));
                self.model.visible_min = end;
                self.model.synced_min = end;
            }
            Op::Reopen(by_drop) => self.reopen(ctx, *by_drop, |_| {}),
            Op::Crash => {
                let log = Arc::into_inner(self.log.take().unwrap()).unwrap();
                let visible = log.visible_end_offset();
                for op in [FaultOp::Write, FaultOp::Sync, FaultOp::Rename, FaultOp::Remove] {
                    self.disk.inject(Fault {
                        op,
                        nth: 1,
                        errno: EIO,
                        forever: true,
                    });
                }
                drop(log);
                // What reached the OS survives; the buffered records are lost.
                self.model.truncate(visible);
                self.log = Some(Arc::new(self.open()));
                let report = self.log().recovery_report();
                assert_eq!(report.log_end_offset, visible, "{ctx}: {report:?}");
                assert!(
                    !report.clean_shutdown && report.truncation.is_none() && report.segments_scanned > 0,
                    "{ctx}: {report:?}"
                );
                self.model.visible_min = visible;
                self.model.synced_min = visible;
            }
            Op::PowerLoss(seed) => {
                let log = Arc::into_inner(self.log.take().unwrap()).unwrap();
                let (synced, visible) = (log.synced_end_offset(), log.visible_end_offset());
                self.disk.power_loss(match seed {
                    None => PowerLoss::DropUnsynced,
                    Some(seed) => PowerLoss::Torn { seed: *seed },
                });
                drop(log);
                // Recovery cut the files: a reader does not follow that.
                self.reader = None;
                self.log = Some(Arc::new(self.open()));
                let report = self.log().recovery_report();
                let recovered = report.log_end_offset;
                assert!(
                    !report.clean_shutdown && synced <= recovered && recovered <= visible,
                    "{ctx}: synced {synced}, visible {visible}: {report:?}"
                );
                // At a batch boundary; or, if recovery ended below the (persisted) log start,
                // an empty log there.
                let at_batch =
                    recovered == end || (recovered < end && self.model.batch_of(recovered).base == recovered);
                assert!(
                    recovered == start || at_batch,
                    "{ctx}: recovered to {recovered} inside a batch: {report:?}"
                );
                self.model.truncate(recovered);
                self.last_visible = recovered;
                self.model.visible_min = recovered;
                self.model.synced_min = recovered;
            }
            Op::ReadOnlyReopen => self.reopen(ctx, false, |run| drop(run.check_read_only(false, ctx))),
            Op::Reader => self.reader = Some(self.check_read_only(true, ctx)),
            Op::Retain(limit, by_age) => self.retain(*limit, *by_age, ctx),
            Op::Concurrently(ops) => {
                let stop = Arc::new(AtomicBool::new(false));
                let reader = {
                    let (log, history, stop) = (
                        Arc::clone(self.log.as_ref().unwrap()),
                        Arc::clone(&self.history),
                        Arc::clone(&stop),
                    );
                    std::thread::spawn(move || read_concurrently(&log, &history, &stop))
                };
                for (i, op) in ops.iter().enumerate() {
                    let ctx = &format!("{ctx}, #{i}: {}", describe(op));
                    self.apply(op, ctx);
                    self.check(op, i, ctx);
                }
                stop.store(true, Ordering::Release);
                let reads = reader
                    .join()
                    .unwrap_or_else(|_| panic!("{ctx}: the reading thread panicked"));
                reads.unwrap_or_else(|e| panic!("{ctx}: concurrent read: {e}"));
            }
            Op::Reconfigure(knobs) => {
                self.knobs = *knobs;
                self.log()
                    .set_config(knobs.config())
                    .unwrap_or_else(|e| panic!("{ctx}: set_config: {e}"));
            }
        }
    }

    fn append(&mut self, specs: &[RecSpec], durability: Durability, compression: Compression, ctx: &str) {
        let records: Vec<Record> = specs.iter().map(RecSpec::to_record).collect();
        // Before the append: a concurrent reader may read the batch as soon as it is written.
        let appended = Appended {
            compression,
            log_append_time: self.knobs.append_time,
            records: specs.to_vec(),
        };
        let history = Arc::clone(&self.history);
        history
            .lock()
            .unwrap()
            .entry(self.model.end())
            .or_default()
            .push(appended);
        let log = self.log();
        let before = now_ms();
        let info = if compression == Compression::None {
            log.append(&records, durability)
        } else {
            log.append_with(
                &records,
                AppendOptions {
                    durability,
                    compression,
                },
            )
        }
        .unwrap_or_else(|e| panic!("{ctx}: append: {e}"));
        let after = now_ms();
        assert!(
            (before..=after).contains(&info.append_time),
            "{ctx}: append time {} outside {before}..={after}",
            info.append_time
        );
        let base = self.model.end();
        let n = specs.len() as u64;
        let timestamp_type = self.knobs.timestamp_type();
        assert_eq!(
            (info.base_offset, info.last_offset, info.timestamp_type),
            (base, base + n - 1, timestamp_type),
            "{ctx}: {info:?}"
        );
        let stamps: Vec<i64> = specs
            .iter()
            .map(|s| match (timestamp_type, s.ts) {
                (TimestampType::LogAppendTime, _) | (_, Ts::Append) => info.append_time,
                (_, Ts::Ancient(t)) => t,
                (_, Ts::Future(n)) => FUTURE + n,
            })
            .collect();
        let max_timestamp = *stamps.iter().max().unwrap();
        assert_eq!(info.max_timestamp, max_timestamp, "{ctx}: {info:?}");
        let batch = self.model.batches.len();
        self.model.batches.push(BatchInfo {
            base,
            last: base + n - 1,
            size: info.size_bytes,
            compression,
            timestamp_type,
            max_timestamp,
        });
        for (spec, timestamp) in specs.iter().zip(stamps) {
            self.model.records.push(Stored {
                key: spec.key.clone(),
                value: spec.value.clone(),
                headers: spec.headers.clone(),
                timestamp,
                batch,
            });
        }
        let end = self.model.end();
        if durability != Durability::Buffered {
            self.model.visible_min = end;
        }
        if durability == Durability::Synced {
            self.model.synced_min = end;
        }
    }

    /// A read-only log over the directory (`beside`: while the writer is open) serves
    /// exactly what the writer made visible, and refuses every write.
    fn check_read_only(&self, beside: bool, ctx: &str) -> PartitionLog {
        let ctx = &format!("{ctx} (read-only)");
        let visible = match &self.log {
            Some(log) => log.visible_end_offset(),
            None => self.model.end(),
        };
        assert_eq!(self.log.is_some(), beside);
        let reader = PartitionLog::open_read_only(self.dir.path(), self.knobs.config())
            .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        assert!(reader.is_read_only());
        assert_eq!(reader.log_start_offset(), self.model.start, "{ctx}: log start");
        assert_eq!(reader.log_end_offset(), visible, "{ctx}: log end");
        assert_eq!(reader.visible_end_offset(), visible, "{ctx}: visible end");
        // The reader's end is the writer's visible end: check it against a model of that.
        let seen = self.model.up_to(visible);
        check_reader(&reader, &seen, 1 << 20, ctx);
        check_full_read(&reader, &seen, 1, ctx);
        let (start, end) = (seen.start, seen.end());
        is_read_only(reader.append(&[Record::new()], Durability::Written), "append", ctx);
        is_read_only(reader.truncate_to(start), "truncate_to", ctx);
        is_read_only(reader.delete_records_before(end), "delete_records_before", ctx);
        is_read_only(reader.enforce_retention(), "enforce_retention", ctx);
        is_read_only(reader.flush(), "flush", ctx);
        is_read_only(reader.set_config(self.knobs.config()), "set_config", ctx);
        reader
    }

    /// `enforce_retention` with a size limit and with an age limit, either or both, as
    /// documented (Kafka's rules): if the active segment's newest
    /// record is too old (and it holds any), it is sealed first; then the sealed segments go
    /// oldest first while each is wholly below the log start, or the log stays at or above
    /// the size limit without it, or its newest record is too old; the log start moves to
    /// the first segment left.
    fn retain(&mut self, limit: Option<Limit>, by_age: bool, ctx: &str) {
        let log = self.log.as_ref().unwrap();
        let end = self.model.end();
        let files = segment_files(self.dir.path());
        let limit = limit.map(|limit| match limit {
            Limit::Percent(p) => log.size_bytes() * p / 100,
            Limit::Segments(k, d) => {
                let kept: u64 = files.iter().rev().take(k + 1).map(|s| s.1).sum();
                kept.saturating_add_signed(i64::from(d))
            }
        });
        let age = by_age.then_some(RETENTION_AGE);
        let old = now_ms() - RETENTION_AGE.as_millis() as i64;
        let is_old = |from: u64, to: u64| by_age && self.model.max_timestamp(from, to).is_some_and(|t| t < old);
        let mut segments = files;
        let (active, active_size) = *segments.last().unwrap();
        assert_eq!(
            active_size,
            self.model.bytes_of(active, log.visible_end_offset()),
            "{ctx}"
        );
        let sealed_active = end > active && is_old(active, end);
        if sealed_active {
            // Sealing writes the buffered records.
            *segments.last_mut().unwrap() = (active, self.model.bytes_of(active, end));
            segments.push((end, 0));
        }
        let mut total: u64 = segments.iter().map(|s| s.1).sum();
        let mut expected = RetentionReport {
            log_start_offset: self.model.start,
            ..RetentionReport::default()
        };
        for (&(base, size), &(next, _)) in segments.iter().zip(segments.iter().skip(1)) {
            assert_eq!(size, self.model.bytes_of(base, next), "{ctx}: segment {base}");
            let below_start = next <= self.model.start;
            let by_size = limit.is_some_and(|limit| total - size >= limit);
            if !(below_start || by_size || is_old(base, next)) {
                break;
            }
            total -= size;
            expected.segments_deleted.push(base);
            expected.bytes_deleted += size;
            expected.log_start_offset = expected.log_start_offset.max(next);
        }
        log.set_config(self.knobs.config().retention_bytes(limit).retention_ms(age))
            .unwrap();
        let report = log
            .enforce_retention()
            .unwrap_or_else(|e| panic!("{ctx}: enforce_retention: {e}"));
        log.set_config(self.knobs.config()).unwrap();
        assert_eq!(
            report, expected,
            "{ctx}: retention ({limit:?} bytes) of segments {segments:?}"
        );
        // (Age alone may take the log below the size limit.)
        if let Some(limit) = limit
            && !by_age
            && !report.segments_deleted.is_empty()
        {
            assert!(log.size_bytes() >= limit, "{ctx}: retention went below the limit");
        }
        self.model.start = report.log_start_offset;
        if sealed_active {
            self.model.visible_min = end;
        }
    }

    /// The invariants after every operation.
    fn check(&mut self, op: &Op, step: usize, ctx: &str) {
        let log = self.log();
        let model = &self.model;
        assert_eq!(log.log_start_offset(), model.start, "{ctx}: log start");
        assert_eq!(log.log_end_offset(), model.end(), "{ctx}: log end");
        let visible = log.visible_end_offset();
        let synced = log.synced_end_offset();
        assert!(
            model.visible_min <= visible && visible <= model.end(),
            "{ctx}: visible end {visible} outside {}..={}",
            model.visible_min,
            model.end()
        );
        assert!(
            visible >= self.last_visible,
            "{ctx}: visible end went back from {} to {visible}",
            self.last_visible
        );
        assert!(
            model.synced_min <= synced && synced <= visible,
            "{ctx}: synced end {synced} outside {}..={visible}",
            model.synced_min
        );
        assert!(model.start <= visible, "{ctx}: log start past the visible end");
        // The visible end is a batch boundary.
        if visible < model.end() {
            assert_eq!(
                model.batch_of(visible).base,
                visible,
                "{ctx}: visible end inside a batch"
            );
        }
        // The segment files: what `size_bytes` and `segment_count` count, none wholly
        // below the log start, each starting at a batch (or the end, for the last).
        let segments = segment_files(self.dir.path());
        assert_eq!(log.segment_count(), segments.len(), "{ctx}: {segments:?}");
        assert_eq!(
            log.size_bytes(),
            segments.iter().map(|s| s.1).sum::<u64>(),
            "{ctx}: size_bytes of {segments:?}"
        );
        let first = segments.first().unwrap().0;
        assert!(first <= model.start, "{ctx}: first segment {first} past the start");
        if let Some(&(second, _)) = segments.get(1) {
            assert!(
                second > model.start,
                "{ctx}: segment {first} wholly below the start: {segments:?}"
            );
        }
        for (i, &(base, _)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let at_batch = base < model.end() && model.batch_of(base).base == base;
            assert!(
                at_batch || (is_last && base == model.end()),
                "{ctx}: segment {base} not at a batch: {segments:?}"
            );
        }
        // A full read, with a max_bytes that varies with the step.
        let max_bytes = [1 << 20, 1, 500, 3000][step % 4];
        check_full_read(log, model, max_bytes, ctx);
        // The reader beside the writer, every third step (so that it falls behind by a few
        // operations): it picks up what the writer wrote, and its log start, at a read of
        // its end.
        if let Some(reader) = &self.reader
            && (step % 3 == 2 || matches!(op, Op::Reader))
        {
            let ctx = &format!("{ctx} (reader beside the writer)");
            assert_eq!(reader.log_end_offset(), visible, "{ctx}: log end");
            assert_eq!(reader.visible_end_offset(), visible, "{ctx}: visible end");
            assert_eq!(reader.log_start_offset(), model.start, "{ctx}: log start");
            check_reader(reader, &model.up_to(visible), max_bytes, ctx);
        }
        self.last_visible = visible;
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// The most operations in a case: 60, or `BROOKLET_MODEL_OPS`.
fn max_ops() -> usize {
    usize::try_from(env_number("BROOKLET_MODEL_OPS", 60)).unwrap().max(20)
}

/// An operation in a few words, for failure messages (the failing case is printed whole).
fn describe(op: &Op) -> String {
    match op {
        Op::Append {
            records,
            durability,
            compression,
        } => format!("Append({} records, {durability:?}, {compression:?})", records.len()),
        Op::Burst(batches, compression) => format!("Burst({} batches, {compression:?})", batches.len()),
        Op::Concurrently(ops) => format!("Concurrently({} ops)", ops.len()),
        op => format!("{op:?}"),
    }
}

/// The test configuration: a fixed seed, `BROOKLET_MODEL_CASES` / `BROOKLET_MODEL_SEED`.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: u32::try_from(env_number("BROOKLET_MODEL_CASES", 48)).unwrap(),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(env_number("BROOKLET_MODEL_SEED", 0x6d0d_e1ed)),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random operation sequences against the model (see the module documentation).
    #[test]
    fn partition_log_matches_the_model(
        (knobs, ops) in prop::bool::weighted(0.25)
            .prop_flat_map(|old| (knobs(), proptest::collection::vec(op(old), 20..=max_ops())))
    ) {
        let mut run = Run::new(knobs);
        for (step, op) in ops.iter().enumerate() {
            let ctx = format!("step {step}: {}", describe(op));
            run.apply(op, &ctx);
            run.check(op, step, &ctx);
        }
        Arc::into_inner(run.log.take().unwrap()).unwrap().close().unwrap();
    }
}
