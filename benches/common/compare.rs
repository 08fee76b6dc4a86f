//! The scenarios of the side-by-side comparison (BENCHMARKS.md), shared by the criterion bench
//! `benches/compare.rs` and the runner `examples/compare.rs`, so that both time exactly the
//! same code.
//!
//! Every system gets the same data: record `i` is a 16-byte key `key-{i:012}` and a 100-byte
//! pseudo-random value (116 payload bytes), prepared before any timing. Each throughput
//! function returns the time of its timed part only; creating directories, opening a log or
//! a database, creating tables, building `ProducerRecord`s / `Record`s, closing and deleting
//! are outside it (what is inside is said on each function).

#![allow(dead_code)] // each of the two users calls a subset

#[path = "raw.rs"]
mod raw;
pub use raw::{raw_read, raw_write};

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brooklet::{
    Broker, ConsumerConfig, Durability, LogConfig, OffsetReset, PartitionLog, ProducerConfig, ProducerRecord, Record,
    TopicConfig, TopicPartition,
};
use bytes::Bytes;
use commitlog::message::{MessageBuf, MessageSet};
use commitlog::{CommitLog, LogOptions, ReadLimit};
use rusqlite::Connection;
use tempfile::TempDir;

pub const KEY_LEN: usize = 16;
pub const VALUE_LEN: usize = 100;
/// Payload bytes per record (what MB/s counts).
pub const RECORD_BYTES: usize = KEY_LEN + VALUE_LEN;
/// Records per batch: `send_batch`, `PartitionLog::append`, an SQLite transaction, a commitlog `MessageBuf`.
pub const BATCH: usize = 1_000;
/// Capacity of the raw baselines' `BufWriter` / `BufReader`.
/// Bytes per read call of the storage-level readers (brooklet `PartitionLog::read`, commitlog).
pub const READ_MAX_BYTES: usize = 1 << 20;
/// `max_poll_records` of the consuming brooklet consumer.
pub const MAX_POLL_RECORDS: usize = 100_000;
/// Topic of the brooklet fixtures (one partition).
pub const TOPIC: &str = "t";

/// The records every system writes: `keys[i]`, `values[i]`.
pub struct Data {
    pub keys: Vec<Bytes>,
    pub values: Vec<Bytes>,
}

impl Data {
    pub fn new(n: usize) -> Self {
        let keys = (0..n).map(|i| Bytes::from(format!("key-{i:012}"))).collect();
        let values = (0..n)
            .map(|i| {
                let mut v = vec![0u8; VALUE_LEN];
                fill(i as u64, &mut v);
                Bytes::from(v)
            })
            .collect();
        Data { keys, values }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.keys.iter().map(|k| &k[..]).zip(self.values.iter().map(|v| &v[..]))
    }

    pub fn records(&self) -> Vec<Record> {
        self.keys
            .iter()
            .zip(&self.values)
            .map(|(k, v)| Record::new().key(k.clone()).value(v.clone()))
            .collect()
    }

    /// The records for `send_batch`, sharing one topic name, as an application sending
    /// many records to one topic would.
    pub fn producer_records(&self) -> Vec<ProducerRecord> {
        let topic: std::sync::Arc<str> = std::sync::Arc::from(TOPIC);
        self.keys
            .iter()
            .zip(&self.values)
            .map(|(k, v)| {
                ProducerRecord::new(std::sync::Arc::clone(&topic))
                    .partition(0)
                    .key(k.clone())
                    .value(v.clone())
            })
            .collect()
    }

    /// `producer_records()` in `send_batch` calls of `BATCH`.
    pub fn producer_batches(&self) -> Vec<Vec<ProducerRecord>> {
        let mut out = Vec::with_capacity(self.len() / BATCH + 1);
        let mut it = self.producer_records().into_iter().peekable();
        while it.peek().is_some() {
            out.push(it.by_ref().take(BATCH).collect());
        }
        out
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so values are not all one byte.
fn fill(seed: u64, out: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in out {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *b = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
    }
}

// ---------------------------------------------------------------------------------------
// Raw file: `u32 LE key length, key, u32 LE value length, value[, u32 LE crc32]`
// ---------------------------------------------------------------------------------------

fn raw_encode(out: &mut Vec<u8>, k: &[u8], v: &[u8], crc: bool) {
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
    if crc {
        let mut h = crc32fast::Hasher::new();
        h.update(k);
        h.update(v);
        out.extend_from_slice(&h.finalize().to_le_bytes());
    }
}

/// Batched produce, raw: every record through a 64 KiB `BufWriter` to a fresh file. Timed:
/// the writes and the final flush to the OS (not the `fdatasync` after).
pub fn raw_append(data: &Data, crc: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let file = File::create(dir.path().join("raw.log")).unwrap();
    let start = Instant::now();
    let file = raw_write(file, data.pairs(), crc);
    let took = start.elapsed();
    file.sync_data().unwrap();
    took
}

/// Batched produce, raw, with the file's blocks reserved first (`fallocate` with
/// `KEEP_SIZE` for the whole output, outside the timing), as brooklet's active segment
/// reserves ahead of its writes: the ceiling for an append-only log that reserves. Timed:
/// as [`raw_append`].
#[cfg(target_os = "linux")]
pub fn raw_append_reserved(data: &Data) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let file = File::create(dir.path().join("raw.log")).unwrap();
    let total: usize = data.pairs().map(|(k, v)| 8 + k.len() + v.len()).sum();
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, total as u64).unwrap();
    let start = Instant::now();
    let file = raw_write(file, data.pairs(), false);
    let took = start.elapsed();
    file.sync_data().unwrap();
    took
}

/// One-at-a-time produce, raw: one `write(2)` per record (no buffering), as brooklet's
/// `Written` does. Timed: the writes.
pub fn raw_write_per_record(data: &Data) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut file = File::create(dir.path().join("raw.log")).unwrap();
    let mut buf = Vec::with_capacity(256);
    let start = Instant::now();
    for (k, v) in data.pairs() {
        buf.clear();
        raw_encode(&mut buf, k, v, false);
        file.write_all(&buf).unwrap();
    }
    let took = start.elapsed();
    file.sync_data().unwrap();
    took
}

/// Durable produce, raw: `pwrite` + `fdatasync` per record. Timed: all of it.
pub fn raw_write_fdatasync(data: &Data) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let file = File::create(dir.path().join("raw.log")).unwrap();
    file.sync_all().unwrap();
    let mut buf = Vec::with_capacity(256);
    let mut pos = 0u64;
    let start = Instant::now();
    for (k, v) in data.pairs() {
        buf.clear();
        raw_encode(&mut buf, k, v, false);
        file.write_all_at(&buf, pos).unwrap();
        pos += buf.len() as u64;
        file.sync_data().unwrap();
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------------------
// brooklet
// ---------------------------------------------------------------------------------------

/// A broker in a fresh temp dir with the one-partition topic `t`.
pub fn brooklet_broker() -> (Broker, TempDir) {
    brooklet_broker_with(false)
}

/// [`brooklet_broker`], writing through memory maps if `mapped`
/// (`BrokerBuilder::mapped_writes`).
pub fn brooklet_broker_with(mapped: bool) -> (Broker, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::builder().mapped_writes(mapped).open(dir.path()).unwrap();
    broker.create_topic(TOPIC, TopicConfig::with_partitions(1)).unwrap();
    (broker, dir)
}

/// Batched produce: `Producer::send_batch` of `BATCH` records, `Written`. Timed: the sends.
pub fn brooklet_send_batch(data: &Data) -> Duration {
    let (broker, _dir) = brooklet_broker();
    let batches = data.producer_batches();
    let producer = broker.producer(ProducerConfig::default());
    let start = Instant::now();
    for batch in &batches {
        std::hint::black_box(producer.send_batch(batch).unwrap());
    }
    start.elapsed()
}

/// Batched produce at the storage level: `PartitionLog::append` of `BATCH` records,
/// `Written`. Timed: the appends.
pub fn brooklet_log_append(data: &Data, batch: usize) -> Duration {
    brooklet_log_append_with(data, batch, false)
}

/// [`brooklet_log_append`], writing through a memory map if `mapped`
/// (`LogConfig::mapped_writes`).
pub fn brooklet_log_append_with(data: &Data, batch: usize, mapped: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let records = data.records();
    let log = PartitionLog::open(dir.path(), LogConfig::default().mapped_writes(mapped)).unwrap();
    let start = Instant::now();
    for chunk in records.chunks(batch) {
        std::hint::black_box(log.append(chunk, Durability::Written).unwrap());
    }
    let took = start.elapsed();
    assert_eq!(log.log_end_offset(), data.len() as u64);
    log.close().unwrap();
    took
}

/// One-at-a-time produce: one blocking `Producer::send` per record, `Written`. Timed: the sends.
pub fn brooklet_send_each(data: &Data) -> Duration {
    brooklet_send_each_with(data, false)
}

/// [`brooklet_send_each`], writing through memory maps if `mapped`
/// (`BrokerBuilder::mapped_writes`).
pub fn brooklet_send_each_with(data: &Data, mapped: bool) -> Duration {
    let (broker, _dir) = brooklet_broker_with(mapped);
    let records = data.producer_records();
    let producer = broker.producer(ProducerConfig::default());
    let start = Instant::now();
    for r in records {
        std::hint::black_box(producer.send(r).unwrap());
    }
    start.elapsed()
}

/// Durable produce: blocking `Producer::send`, `Synced`, from `threads` threads (each sends
/// `data.len()` records; concurrent senders share fsyncs). Timed: from the threads' start to
/// the last send returning.
pub fn brooklet_send_synced(data: &Data, threads: usize) -> Duration {
    brooklet_send_synced_metrics(data, threads).0
}

/// `brooklet_send_synced`, also returning the producer's metrics (its fsync rounds).
pub fn brooklet_send_synced_metrics(data: &Data, threads: usize) -> (Duration, brooklet::ProducerMetrics) {
    let (broker, _dir) = brooklet_broker();
    let producer = broker.producer(ProducerConfig::default().durability(Durability::Synced));
    let per_thread: Vec<Vec<ProducerRecord>> = (0..threads).map(|_| data.producer_records()).collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for records in per_thread {
            let producer = producer.clone();
            s.spawn(move || {
                for r in records {
                    std::hint::black_box(producer.send(r).unwrap());
                }
            });
        }
    });
    (start.elapsed(), producer.metrics())
}

/// A consumer assigned partition `t-0`, reading from the beginning.
pub fn brooklet_consumer(broker: &Broker) -> brooklet::Consumer {
    let mut consumer = broker
        .consumer(
            ConsumerConfig::default()
                .auto_offset_reset(OffsetReset::Earliest)
                .max_poll_records(MAX_POLL_RECORDS),
        )
        .unwrap();
    consumer.assign(&[TopicPartition::new(TOPIC, 0)]).unwrap();
    consumer
}

/// Sequential consume: from the beginning, `poll` until `n` records, iterating borrowed
/// records and summing key and value lengths. Returns (records, sum).
pub fn brooklet_poll_all(consumer: &mut brooklet::Consumer, n: usize) -> (usize, u64) {
    consumer.seek_to_beginning(&[TopicPartition::new(TOPIC, 0)]).unwrap();
    let (mut count, mut sum) = (0usize, 0u64);
    while count < n {
        let records = consumer.poll(Duration::from_secs(5)).unwrap();
        assert!(!records.is_empty(), "brooklet consume stalled at {count}");
        for r in &records {
            sum += (r.key().map_or(0, <[u8]>::len) + r.value().map_or(0, <[u8]>::len)) as u64;
        }
        count += records.len();
    }
    (count, sum)
}

// ---------------------------------------------------------------------------------------
// SQLite (rusqlite, bundled): WAL, table (id INTEGER PRIMARY KEY, key BLOB, value BLOB)
// ---------------------------------------------------------------------------------------

const SQL_INSERT: &str = "INSERT INTO log (key, value) VALUES (?1, ?2)";

/// Opens (or creates) the database in WAL mode with the given `synchronous` setting.
pub fn sqlite_open(path: &Path, synchronous: &str) -> Connection {
    let conn = Connection::open(path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous};
         CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, key BLOB, value BLOB);"
    ))
    .unwrap();
    conn
}

/// Inserts every record in transactions of `BATCH` rows (a cached prepared statement).
pub fn sqlite_insert_batches(conn: &mut Connection, data: &Data) {
    let mut pairs = data.pairs().peekable();
    while pairs.peek().is_some() {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare_cached(SQL_INSERT).unwrap();
            for (k, v) in pairs.by_ref().take(BATCH) {
                stmt.execute((k, v)).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

/// Batched produce: transactions of `BATCH` inserts, `synchronous=NORMAL`. Timed: the inserts
/// and commits.
pub fn sqlite_insert_batched(data: &Data) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = sqlite_open(&dir.path().join("log.db"), "NORMAL");
    let start = Instant::now();
    sqlite_insert_batches(&mut conn, data);
    start.elapsed()
}

/// One row per transaction (autocommit) with the given `synchronous`: `NORMAL` for the
/// one-at-a-time case (no fsync per commit in WAL mode), `FULL` for the durable one (an fsync
/// of the WAL per commit). Timed: the inserts.
pub fn sqlite_insert_each(data: &Data, synchronous: &str) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let conn = sqlite_open(&dir.path().join("log.db"), synchronous);
    let mut stmt = conn.prepare_cached(SQL_INSERT).unwrap();
    let start = Instant::now();
    for (k, v) in data.pairs() {
        stmt.execute((k, v)).unwrap();
    }
    start.elapsed()
}

/// Sequential consume: every row in id order, summing key and value lengths.
pub fn sqlite_read_all(conn: &Connection) -> (usize, u64) {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM log ORDER BY id").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let (mut count, mut sum) = (0usize, 0u64);
    while let Some(row) = rows.next().unwrap() {
        let k = row.get_ref(0).unwrap().as_blob().unwrap();
        let v = row.get_ref(1).unwrap().as_blob().unwrap();
        sum += (k.len() + v.len()) as u64;
        count += 1;
    }
    (count, sum)
}

// ---------------------------------------------------------------------------------------
// commitlog 0.2: the key as a message's metadata, the value as its payload
// ---------------------------------------------------------------------------------------

pub fn commitlog_open(dir: &Path) -> CommitLog {
    CommitLog::new(LogOptions::new(dir)).unwrap()
}

/// Appends every record in `MessageBuf`s of `batch` messages (building a buffer serializes
/// the messages and their CRC-32C, so it is part of the append).
pub fn commitlog_append_all(log: &mut CommitLog, data: &Data, batch: usize) {
    let mut buf = MessageBuf::default();
    let mut pairs = data.pairs().peekable();
    while pairs.peek().is_some() {
        buf.clear();
        for (k, v) in pairs.by_ref().take(batch) {
            buf.push_with_metadata(k, v).unwrap();
        }
        std::hint::black_box(log.append(&mut buf).unwrap());
    }
}

/// Batched (`batch` = `BATCH`) or one-at-a-time (`batch` = 1) append to a fresh log. Timed:
/// building the message buffers and the appends.
pub fn commitlog_append(data: &Data, batch: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut log = commitlog_open(dir.path());
    let start = Instant::now();
    commitlog_append_all(&mut log, data, batch);
    let took = start.elapsed();
    assert_eq!(log.next_offset(), data.len() as u64);
    took
}

/// Sequential read: `read(offset, 1 MiB)` until the end (each read checks the CRC-32C of
/// every message), summing key and value lengths.
pub fn commitlog_read_all(log: &CommitLog) -> (usize, u64) {
    let end = log.next_offset();
    let (mut offset, mut count, mut sum) = (0u64, 0usize, 0u64);
    while offset < end {
        let buf = log.read(offset, ReadLimit::max_bytes(READ_MAX_BYTES)).unwrap();
        let mut last = None;
        for m in buf.iter() {
            sum += (m.metadata().len() + m.payload().len()) as u64;
            count += 1;
            last = Some(m.offset());
        }
        offset = last.expect("commitlog read returned nothing") + 1;
    }
    (count, sum)
}

// ---------------------------------------------------------------------------------------
// crossbeam-channel: the in-memory hand-over ceiling
// ---------------------------------------------------------------------------------------

/// SPSC throughput: a producer thread sends every (key, value) (`Bytes` clones, one per
/// `send`, or `Vec`s of `batch`) through a bounded channel to a consumer thread summing the
/// lengths. Timed: from the threads' start to the consumer's last receive.
pub fn crossbeam_spsc(data: &Data, batch: usize) -> Duration {
    let n = data.len();
    let (tx, rx) = crossbeam_channel::bounded::<Vec<(Bytes, Bytes)>>(1024);
    let (txs, rxs) = crossbeam_channel::bounded::<(Bytes, Bytes)>(1024);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut count = 0;
            let mut sum = 0u64;
            if batch == 1 {
                for (k, v) in rxs.iter() {
                    sum += (k.len() + v.len()) as u64;
                    count += 1;
                }
            } else {
                for chunk in rx.iter() {
                    for (k, v) in &chunk {
                        sum += (k.len() + v.len()) as u64;
                    }
                    count += chunk.len();
                }
            }
            assert_eq!(count, n);
            std::hint::black_box(sum);
        });
        if batch == 1 {
            for (k, v) in data.keys.iter().zip(&data.values) {
                txs.send((k.clone(), v.clone())).unwrap();
            }
        } else {
            let mut i = 0;
            while i < n {
                let end = (i + batch).min(n);
                let chunk = (i..end)
                    .map(|j| (data.keys[j].clone(), data.values[j].clone()))
                    .collect();
                tx.send(chunk).unwrap();
                i = end;
            }
        }
        drop(tx);
        drop(txs);
    });
    start.elapsed()
}

/// brooklet's counterpart of `crossbeam_spsc`: a producer thread `send_batch`es every record
/// (`Written`, batches of `BATCH`) while a consumer thread polls them. Timed: from the
/// threads' start to the consumer having every record.
pub fn brooklet_pipeline(data: &Data) -> Duration {
    let n = data.len();
    let (broker, _dir) = brooklet_broker();
    let batches = data.producer_batches();
    let mut consumer = brooklet_consumer(&broker);
    let producer = broker.producer(ProducerConfig::default());
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let (mut count, mut sum) = (0usize, 0u64);
            while count < n {
                let records = consumer.poll(Duration::from_secs(5)).unwrap();
                assert!(!records.is_empty(), "brooklet pipeline stalled at {count}");
                for r in &records {
                    sum += (r.key().map_or(0, <[u8]>::len) + r.value().map_or(0, <[u8]>::len)) as u64;
                }
                count += records.len();
            }
            std::hint::black_box(sum);
        });
        for batch in batches {
            producer.send_batch(&batch).unwrap();
        }
    });
    start.elapsed()
}

// ---------------------------------------------------------------------------------------
// Latency: one record at a time, the next sent once the previous arrived
// ---------------------------------------------------------------------------------------

/// A 100-byte value whose first 8 bytes carry the send time (ns since `base`).
fn stamped(value: &[u8], base: Instant) -> Vec<u8> {
    let mut v = value.to_vec();
    v[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
    v
}

fn since(stamp: &[u8], base: Instant) -> Duration {
    let sent = u64::from_le_bytes(stamp[..8].try_into().unwrap());
    Duration::from_nanos(base.elapsed().as_nanos() as u64 - sent)
}

/// brooklet: `Producer::send` (`Written`) to a consumer blocked in `poll` on another thread.
/// A sample: from just before `send` (the stamp, taken before the record is built) to the
/// consumer holding the record. The producer waits for the consumer's ack before the next.
pub fn brooklet_latencies(data: &Data, n: usize) -> Vec<Duration> {
    let (broker, _dir) = brooklet_broker();
    let base = Instant::now();
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<()>(1);
    let mut consumer = brooklet_consumer(&broker);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            for r in &consumer.poll(Duration::from_secs(10)).unwrap() {
                out.push(since(r.value().unwrap(), base));
                ack_tx.send(()).unwrap();
            }
        }
        out
    });
    let producer = broker.producer(ProducerConfig::default());
    for i in 0..n {
        let j = i % data.len();
        let value = stamped(&data.values[j], base);
        producer
            .send(
                ProducerRecord::new(TOPIC)
                    .partition(0)
                    .key(data.keys[j].clone())
                    .value(value),
            )
            .unwrap();
        ack_rx.recv().unwrap();
    }
    reader.join().unwrap()
}

/// The floor through a file: the writer `write(2)`s one length-prefixed record and publishes
/// the new end offset in an `AtomicU64`; a reader thread spins on it and `pread`s the record.
/// A sample: from just before the `write(2)` to the `pread` having returned the record.
/// The writer spins until the reader acknowledges before writing the next.
pub fn raw_file_latencies(data: &Data, n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("raw.log");
    let mut file = File::create(&path).unwrap();
    let read_file = File::open(&path).unwrap();
    let end = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let reader = {
        let (end, acked) = (Arc::clone(&end), Arc::clone(&acked));
        std::thread::spawn(move || {
            let mut out = Vec::with_capacity(n);
            let mut buf = vec![0u8; 4096];
            let mut pos = 0u64;
            for i in 0..n {
                let new_end = loop {
                    let e = end.load(Ordering::Acquire);
                    if e > pos {
                        break e;
                    }
                    std::hint::spin_loop();
                };
                let len = (new_end - pos) as usize;
                read_file.read_exact_at(&mut buf[..len], pos).unwrap();
                let klen = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
                let value = &buf[4 + klen + 4..len];
                out.push(since(value, base));
                pos = new_end;
                acked.store(i as u64 + 1, Ordering::Release);
            }
            out
        })
    };
    let mut buf = Vec::with_capacity(256);
    let mut pos = 0u64;
    for i in 0..n {
        let j = i % data.len();
        buf.clear();
        let value = stamped(&data.values[j], base);
        raw_encode(&mut buf, &data.keys[j], &value, false);
        file.write_all(&buf).unwrap();
        pos += buf.len() as u64;
        end.store(pos, Ordering::Release);
        while acked.load(Ordering::Acquire) < i as u64 + 1 {
            std::hint::spin_loop();
        }
    }
    reader.join().unwrap()
}

/// crossbeam-channel ping-pong: `send` of the record to a thread blocked in `recv`, which
/// acknowledges on a second channel before the next. A sample: from just before `send` to
/// `recv` returning.
pub fn crossbeam_latencies(data: &Data, n: usize) -> Vec<Duration> {
    let base = Instant::now();
    let (tx, rx) = crossbeam_channel::bounded::<(Bytes, Vec<u8>)>(1);
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<()>(1);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::with_capacity(n);
        for (_key, value) in rx {
            out.push(since(&value, base));
            ack_tx.send(()).unwrap();
        }
        out
    });
    for i in 0..n {
        let j = i % data.len();
        let value = stamped(&data.values[j], base);
        tx.send((data.keys[j].clone(), value)).unwrap();
        ack_rx.recv().unwrap();
    }
    drop(tx);
    reader.join().unwrap()
}

/// (p50, p99, p99.9) of `samples`.
pub fn percentiles(mut samples: Vec<Duration>) -> [Duration; 3] {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    [at(0.5), at(0.99), at(0.999)]
}

// ---------------------------------------------------------------------------------------
// Sequential consume and open: one fixture per system, written once (warm page cache)
// ---------------------------------------------------------------------------------------

/// The same `n` records stored by each system, each closed cleanly after writing.
pub struct Fixtures {
    pub n: usize,
    pub dir: TempDir,
}

impl Fixtures {
    pub fn build(data: &Data) -> Fixtures {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixtures { n: data.len(), dir };
        raw_write(File::create(f.raw_path()).unwrap(), data.pairs(), false)
            .sync_data()
            .unwrap();
        raw_write(File::create(f.raw_crc_path()).unwrap(), data.pairs(), true)
            .sync_data()
            .unwrap();
        {
            let broker = Broker::open(f.brooklet_dir()).unwrap();
            broker.create_topic(TOPIC, TopicConfig::with_partitions(1)).unwrap();
            let producer = broker.producer(ProducerConfig::default());
            for batch in data.producer_batches() {
                producer.send_batch(&batch).unwrap();
            }
        } // dropping the last broker clone closes the partition cleanly
        {
            let mut conn = sqlite_open(&f.sqlite_path(), "NORMAL");
            sqlite_insert_batches(&mut conn, data);
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        }
        {
            let mut log = commitlog_open(&f.commitlog_dir());
            commitlog_append_all(&mut log, data, BATCH);
            log.flush().unwrap();
        }
        f
    }

    pub fn raw_path(&self) -> PathBuf {
        self.dir.path().join("raw.log")
    }

    pub fn raw_crc_path(&self) -> PathBuf {
        self.dir.path().join("raw-crc.log")
    }

    pub fn brooklet_dir(&self) -> PathBuf {
        self.dir.path().join("brooklet")
    }

    pub fn brooklet_partition_dir(&self) -> PathBuf {
        self.brooklet_dir().join(format!("{TOPIC}-0"))
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("log.db")
    }

    pub fn commitlog_dir(&self) -> PathBuf {
        self.dir.path().join("commitlog")
    }

    /// Bytes on disk of a fixture directory or file.
    pub fn size_of(path: &Path) -> u64 {
        let meta = std::fs::metadata(path).unwrap();
        if meta.is_file() {
            return meta.len();
        }
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| Fixtures::size_of(&e.unwrap().path()))
            .sum()
    }
}

/// Open after a clean close, brooklet, broker level: `Broker::open` of the data directory
/// (topic table, the partition, the committed-offset store), then dropped (a clean close,
/// not timed).
pub fn brooklet_broker_open(dir: &Path) -> Duration {
    let start = Instant::now();
    let broker = Broker::open(dir).unwrap();
    let took = start.elapsed();
    drop(broker);
    took
}

/// Open after a clean close, brooklet, storage level: `PartitionLog::open` of the partition.
pub fn brooklet_log_open(dir: &Path, n: usize) -> Duration {
    let start = Instant::now();
    let log = PartitionLog::open(dir, LogConfig::default()).unwrap();
    let took = start.elapsed();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.log_end_offset(), n as u64);
    log.close().unwrap();
    took
}

/// Open, SQLite: `Connection::open`, WAL mode, and `SELECT max(id)` (ready to append).
pub fn sqlite_reopen(path: &Path, n: usize) -> Duration {
    let start = Instant::now();
    let conn = Connection::open(path).unwrap();
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
    let max: i64 = conn.query_row("SELECT max(id) FROM log", [], |r| r.get(0)).unwrap();
    let took = start.elapsed();
    assert_eq!(max, n as i64);
    took
}

/// Open, commitlog: `CommitLog::new` on the directory.
pub fn commitlog_reopen(dir: &Path, n: usize) -> Duration {
    let start = Instant::now();
    let log = commitlog_open(dir);
    let took = start.elapsed();
    assert_eq!(log.next_offset(), n as u64);
    took
}

/// Open, raw file: `open(2)` and the file's length (where the next append goes).
pub fn raw_reopen(path: &Path) -> Duration {
    let start = Instant::now();
    let file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    std::hint::black_box(file.metadata().unwrap().len());
    start.elapsed()
}
