//! Producer benchmarks against baselines measured in the same run.
//!
//! Records are a 16-byte key and a 100-byte value. What is timed:
//! - `produce/raw_bufwriter`: the same records length-prefixed through a 64 KiB `BufWriter`
//!   to a fresh file, flushed to the OS (the raw-append ceiling, as in `benches/storage.rs`).
//! - `produce/send_batch_1000`: `Producer::send_batch` of 1,000 records per call to a
//!   1-partition topic, `Written`. Building the `ProducerRecord`s is outside the timing.
//!   `send_batch` borrows them; their keys and value are the very `Bytes` the raw baseline
//!   writes, so both sides do the same work with the data (neither allocates nor frees it
//!   while timed).
//! - `produce/send_async_flush`: `send_async` of every record, then `flush` (the delivery
//!   handles dropped: fire and forget).
//! - `produce/send_async_wait_each`: the same, keeping every handle and waiting on each
//!   after the flush.
//! - `produce/send_blocking`: one `send` per record, `Written`.
//! - `produce/send_blocking_mapped`: the same with `BrokerBuilder::mapped_writes`: the
//!   partition's active segment is written through a shared memory map, no `write(2)`.
//! - `synced/raw_write_fdatasync`: `pwrite` + `fdatasync` per record to a plain file.
//! - `synced/raw_8_threads_lockstep_fdatasync`: 8 threads `pwrite` a record each, then one
//!   of them fdatasyncs for all 8 (barriers around it): perfect group commit with no log,
//!   what sharing fsyncs can gain on this machine.
//! - `synced/send_1_thread`, `synced/send_8_threads`: blocking `send`, `Synced`, to one
//!   partition; the 8-thread case shares fsyncs (group commit).
//! - `synced/raw_16k_writes_fdatasync_each`: the records, length-prefixed, `pwrite`n 16 KiB
//!   at a time with an `fdatasync` after each write: a durable batch writer that waits for
//!   each batch's fsync before writing the next (no pipelining).
//! - `synced/send_async_wait_each`: one thread `send_async`s `ASYNC_SYNCED` records,
//!   `Synced`, default batch size (16 KiB), flushes and waits on every handle: the linger
//!   thread fsyncs while the sender writes the next batches.
//! - `compression/*`: `send_batch` of a compressible JSON payload per codec; the on-disk
//!   bytes per record are printed to stderr.
//!
//! Broker creation and teardown are outside every timing.

use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brooklet::{Broker, Compression, Durability, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: usize = 200_000;
const SYNCED_PER_THREAD: usize = 200;
/// Records per iteration of the `Synced` async benchmark and its raw baseline.
const ASYNC_SYNCED: usize = 50_000;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key-{i:012}"))
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; 100])
}

/// Records for topic `t` with `keys` and `value`, sharing one topic name (`Arc<str>`), as
/// an application sending many records to one topic would.
fn records_with(keys: impl Iterator<Item = Bytes>, value: &Bytes) -> Vec<ProducerRecord> {
    let topic: Arc<str> = Arc::from("t");
    keys.map(|k| ProducerRecord::new(Arc::clone(&topic)).key(k).value(value.clone()))
        .collect()
}

/// `recs` in `send_batch` calls of 1,000.
fn chunked(recs: Vec<ProducerRecord>) -> Vec<Vec<ProducerRecord>> {
    let mut chunks = Vec::with_capacity(recs.len() / 1_000 + 1);
    let mut it = recs.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(1_000).collect());
    }
    chunks
}

/// `send_async` of every record, a flush, and a wait on every delivery handle.
fn send_async_and_wait_each(producer: &Producer, recs: Vec<ProducerRecord>) {
    let deliveries: Vec<_> = recs.into_iter().map(|r| producer.send_async(r)).collect();
    producer.flush().unwrap();
    for d in deliveries {
        black_box(d.wait().unwrap());
    }
}

fn broker_with_topic() -> (Broker, tempfile::TempDir) {
    broker_with_topic_mapped(false)
}

/// A broker with one 1-partition topic `t`, written through memory maps if `mapped`.
fn broker_with_topic_mapped(mapped: bool) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::builder().mapped_writes(mapped).open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    (broker, dir)
}

fn produce(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(RECORDS as u64));
    let v = value();
    let keys: Vec<Bytes> = (0..RECORDS).map(key).collect();
    group.bench_function("raw_bufwriter", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let file = std::fs::File::create(dir.path().join("raw")).unwrap();
                let mut w = BufWriter::with_capacity(64 * 1024, file);
                for k in &keys {
                    w.write_all(&(k.len() as u32).to_le_bytes()).unwrap();
                    w.write_all(k).unwrap();
                    w.write_all(&(v.len() as u32).to_le_bytes()).unwrap();
                    w.write_all(&v).unwrap();
                }
                w.flush().unwrap();
                dir
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("send_batch_1000", |b| {
        b.iter_batched(
            || (broker_with_topic(), chunked(records_with(keys.iter().cloned(), &v))),
            |((broker, dir), chunks)| {
                let producer = broker.producer(ProducerConfig::default());
                for chunk in &chunks {
                    black_box(producer.send_batch(chunk).unwrap());
                }
                // The records stay the caller's (dropped untimed, as the raw baseline's keys).
                (producer, broker, dir, chunks)
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("send_async_flush", |b| {
        b.iter_batched(
            || (broker_with_topic(), records_with(keys.iter().cloned(), &v)),
            |((broker, dir), recs)| {
                let producer = broker.producer(ProducerConfig::default().batch_size(128 * 1024));
                for r in recs {
                    black_box(producer.send_async(r));
                }
                producer.flush().unwrap();
                (producer, broker, dir)
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("send_async_wait_each", |b| {
        b.iter_batched(
            || (broker_with_topic(), records_with(keys.iter().cloned(), &v)),
            |((broker, dir), recs)| {
                let producer = broker.producer(ProducerConfig::default().batch_size(128 * 1024));
                send_async_and_wait_each(&producer, recs);
                (producer, broker, dir)
            },
            BatchSize::PerIteration,
        );
    });
    for (name, mapped) in [("send_blocking", false), ("send_blocking_mapped", true)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || (broker_with_topic_mapped(mapped), records_with(keys.iter().cloned(), &v)),
                |((broker, dir), recs)| {
                    let producer = broker.producer(ProducerConfig::default());
                    for r in recs {
                        black_box(producer.send(r).unwrap());
                    }
                    (producer, broker, dir)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn synced(c: &mut Criterion) {
    let mut group = c.benchmark_group("synced");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    // The raw baseline reports the time per record (one `pwrite` + `fdatasync`).
    group.throughput(Throughput::Elements(1));
    let record = {
        let mut r = Vec::new();
        r.extend_from_slice(&key(0));
        r.extend_from_slice(&value());
        r
    };
    group.bench_function("raw_write_fdatasync", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let file = std::fs::File::create(dir.path().join("raw")).unwrap();
            let mut pos = 0u64;
            let start = Instant::now();
            for _ in 0..iters * SYNCED_PER_THREAD as u64 {
                file.write_all_at(&record, pos).unwrap();
                pos += record.len() as u64;
                file.sync_data().unwrap();
            }
            // `iters` records' worth of time: criterion's iteration here is one record.
            start.elapsed() / SYNCED_PER_THREAD as u32
        });
    });
    // What 8 blocking writers can gain from sharing fsyncs on this machine, with no log at
    // all: each round, 8 threads `pwrite` one record each, meet at a barrier, one of them
    // fdatasyncs for all 8, and all meet again. Perfect batching (8 records per fsync),
    // the wake-ups of a real group commit included. Per iteration, 8 x SYNCED_PER_THREAD.
    group.throughput(Throughput::Elements((SYNCED_PER_THREAD * 8) as u64));
    group.bench_function("raw_8_threads_lockstep_fdatasync", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let file = std::fs::File::create(dir.path().join("raw")).unwrap();
            let end = std::sync::atomic::AtomicU64::new(0);
            let barrier = std::sync::Barrier::new(8);
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        for _ in 0..iters * SYNCED_PER_THREAD as u64 {
                            let pos = end.fetch_add(record.len() as u64, std::sync::atomic::Ordering::Relaxed);
                            file.write_all_at(&record, pos).unwrap();
                            if barrier.wait().is_leader() {
                                file.sync_data().unwrap();
                            }
                            barrier.wait();
                        }
                    });
                }
            });
            start.elapsed()
        });
    });
    for threads in [1usize, 8] {
        group.throughput(Throughput::Elements((SYNCED_PER_THREAD * threads) as u64));
        group.bench_function(format!("send_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let (broker, _dir) = broker_with_topic();
                let producer = broker.producer(ProducerConfig::default().durability(Durability::Synced));
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let producer = producer.clone();
                            s.spawn(move || {
                                for i in 0..SYNCED_PER_THREAD {
                                    let r = ProducerRecord::new("t").key(key(t * 1_000_000 + i)).value(value());
                                    black_box(producer.send(r).unwrap());
                                }
                            });
                        }
                    });
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.throughput(Throughput::Elements(ASYNC_SYNCED as u64));
    group.bench_function("raw_16k_writes_fdatasync_each", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let file = std::fs::File::create(dir.path().join("raw")).unwrap();
                let mut chunk = Vec::with_capacity(16 * 1024 + 256);
                let mut pos = 0u64;
                let start = Instant::now();
                for i in 0..ASYNC_SYNCED {
                    chunk.extend_from_slice(&(record.len() as u32).to_le_bytes());
                    chunk.extend_from_slice(&record);
                    if chunk.len() >= 16 * 1024 || i + 1 == ASYNC_SYNCED {
                        file.write_all_at(&chunk, pos).unwrap();
                        pos += chunk.len() as u64;
                        chunk.clear();
                        file.sync_data().unwrap();
                    }
                }
                total += start.elapsed();
            }
            total
        });
    });
    group.bench_function("send_async_wait_each", |b| {
        b.iter_batched(
            || (broker_with_topic(), records_with((0..ASYNC_SYNCED).map(key), &value())),
            |((broker, dir), recs)| {
                let producer = broker.producer(ProducerConfig::default().durability(Durability::Synced));
                send_async_and_wait_each(&producer, recs);
                (producer, broker, dir)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn compression(c: &mut Criterion) {
    let mut group = c.benchmark_group("compression");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    const N: usize = 50_000;
    group.throughput(Throughput::Elements(N as u64));
    let json = |i: usize| {
        ProducerRecord::new("t").key(key(i % 100)).value(format!(
            r#"{{"order_id":{i},"user":"user-{}","amount":{}.{:02},"items":[{{"sku":"A-{}","qty":1}},{{"sku":"B-7","qty":2}}],"status":"created"}}"#,
            i % 100,
            10 + i % 90,
            i % 100,
            i % 13
        ))
    };
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let mut reported = false;
        group.bench_function(name, |b| {
            b.iter_batched(
                || (broker_with_topic(), chunked((0..N).map(json).collect())),
                |((broker, dir), chunks)| {
                    let producer = broker.producer(ProducerConfig::default().compression(codec));
                    for chunk in &chunks {
                        black_box(producer.send_batch(chunk).unwrap());
                    }
                    if !reported {
                        let size = broker.describe_topic("t").unwrap().partitions[0].size_bytes;
                        eprintln!(
                            "compression/{name}: {:.1} bytes per record on disk",
                            size as f64 / N as f64
                        );
                        reported = true;
                    }
                    (producer, broker, dir, chunks)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, produce, synced, compression);
criterion_main!(benches);
