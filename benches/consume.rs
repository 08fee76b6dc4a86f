//! Consumer benchmarks against baselines measured in the same run.
//!
//! Records are a 16-byte key and a 100-byte value. What is timed:
//! - `consume/raw_bufreader`: reading 10,000,000 length-prefixed records back through a
//!   64 KiB `BufReader`, copying out each key and value (the warm raw-read ceiling, as in
//!   `benches/storage.rs`).
//! - `consume/poll`: one consumer assigned the 10,000,000-record partition, seeking to the
//!   beginning and polling (`max_poll_records` 10,000) until it has every record, summing
//!   key and value lengths. Both files stay in the page cache (warm reads for both).
//! - `consume/poll_max_500`: the same with the default `max_poll_records` (500, Kafka's):
//!   each poll returns part of what one read (up to `max_partition_fetch_bytes`, 1 MiB) holds, and
//!   the next polls take the rest from the batches kept.
//! - `latency/send_to_poll`: one record at a time on two threads — the producer `send`s
//!   (`Written`) a record carrying its send time, a consumer blocked in `poll` returns it,
//!   and the next send waits until the consumer has it. Timed: from just before `send` to
//!   `poll` returning. Percentiles (p50/p99/p99.9) are printed to stderr.
//! - `latency/crossbeam_ping`: the same hand-over through a crossbeam channel (`send` to a
//!   thread blocked in `recv`): the floor with no storage at all.
//! - `rebalance/100p_8_members`: eight members on their own threads polling a 100-partition
//!   topic; a ninth joins, and the time from its join until every member owns exactly its
//!   new assignment (the coordinator's own measurement) is the figure; it then leaves.
//! - `commit/written`: `commit_offsets` of one partition by a consumer `assign`ed to it with
//!   a group id (a standalone commit, as Kafka's `assign` + `commitSync`), `Written`
//!   offsets durability. Percentiles are printed to stderr.
//!
//! Broker creation, filling the partition and teardown are outside every timing.

use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use brooklet::{
    Broker, ConsumerConfig, GroupState, OffsetAndMetadata, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig,
    TopicPartition,
};
use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

#[path = "common/raw.rs"]
mod raw;
use raw::{raw_read, raw_write};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
const RECORDS: usize = 10_000_000;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key-{i:012}"))
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    eprintln!(
        "{name}: n={} p50={:.2?} p99={:.2?} p99.9={:.2?} max={:.2?}",
        samples.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        samples.last().copied().unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------------------
// Sequential consume
// ---------------------------------------------------------------------------------------

fn raw_fill(path: &Path) {
    let value = [b'v'; VALUE_LEN];
    raw_write(
        File::create(path).unwrap(),
        (0..RECORDS).map(|i| (key(i), value)),
        false,
    );
}

fn consume(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    raw_fill(&raw);
    let broker = Broker::open(dir.path().join("broker")).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    let value = Bytes::from(vec![b'v'; VALUE_LEN]);
    for chunk in 0..RECORDS / 1_000 {
        let batch = (chunk * 1_000..(chunk + 1) * 1_000)
            .map(|i| ProducerRecord::new("t").partition(0).key(key(i)).value(value.clone()))
            .collect::<Vec<_>>();
        producer.send_batch(&batch).unwrap();
    }
    drop(producer);
    let tp = TopicPartition::new("t", 0);
    let mut consumer = broker
        .consumer(ConsumerConfig::default().max_poll_records(10_000))
        .unwrap();
    consumer.assign(std::slice::from_ref(&tp)).unwrap();
    let mut default_consumer = broker.consumer(ConsumerConfig::default()).unwrap();
    default_consumer.assign(std::slice::from_ref(&tp)).unwrap();
    // Ten records per poll out of 1,000-record batches: each poll goes on inside a batch.
    let mut small_consumer = broker.consumer(ConsumerConfig::default().max_poll_records(10)).unwrap();
    small_consumer.assign(std::slice::from_ref(&tp)).unwrap();

    let mut group = c.benchmark_group("consume");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("raw_bufreader", |b| {
        b.iter(|| {
            let (count, sum) = raw_read(&raw, false);
            assert_eq!(count, RECORDS);
            black_box(sum)
        });
    });
    group.bench_function("poll", |b| {
        b.iter(|| black_box(poll_all(&mut consumer, &tp)));
    });
    group.bench_function("poll_max_500", |b| {
        b.iter(|| black_box(poll_all(&mut default_consumer, &tp)));
    });
    group.bench_function("poll_max_10", |b| {
        b.iter(|| black_box(poll_all(&mut small_consumer, &tp)));
    });
    group.finish();
    assert_eq!(KEY_LEN, key(0).len());
}

/// Polls `tp` from its beginning until every record came; the sum of key and value lengths.
fn poll_all(consumer: &mut brooklet::Consumer, tp: &TopicPartition) -> u64 {
    consumer.seek_to_beginning(std::slice::from_ref(tp)).unwrap();
    let (mut count, mut sum) = (0usize, 0u64);
    while count < RECORDS {
        let records = consumer.poll(Duration::from_secs(1)).unwrap();
        assert!(!records.is_empty(), "stalled at {count}");
        for r in &records {
            sum += (r.key().map_or(0, <[u8]>::len) + r.value().map_or(0, <[u8]>::len)) as u64;
        }
        count += records.len();
    }
    assert_eq!(count, RECORDS);
    sum
}

// ---------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------

/// One record at a time from a producer thread to a consumer blocked in `poll`; returns
/// the send-to-poll latencies.
fn brooklet_latencies(n: usize) -> Vec<Duration> {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("lat", TopicConfig::with_partitions(1)).unwrap();
    let base = Instant::now();
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<()>(1);
    let mut consumer = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    consumer.assign(&[TopicPartition::new("lat", 0)]).unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            for r in &consumer.poll(Duration::from_secs(10)).unwrap() {
                let sent = u64::from_le_bytes(r.value().unwrap().try_into().unwrap());
                let now = base.elapsed().as_nanos() as u64;
                out.push(Duration::from_nanos(now - sent));
                ack_tx.send(()).unwrap();
            }
        }
        out
    });
    let producer = broker.producer(ProducerConfig::default());
    for _ in 0..n {
        let sent = base.elapsed().as_nanos() as u64;
        producer
            .send(
                ProducerRecord::new("lat")
                    .partition(0)
                    .value(sent.to_le_bytes().to_vec()),
            )
            .unwrap();
        ack_rx.recv().unwrap();
    }
    reader.join().unwrap()
}

fn crossbeam_latencies(n: usize) -> Vec<Duration> {
    let base = Instant::now();
    let (tx, rx) = crossbeam_channel::bounded::<u64>(1);
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<()>(1);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::with_capacity(n);
        for sent in rx {
            out.push(Duration::from_nanos(base.elapsed().as_nanos() as u64 - sent));
            ack_tx.send(()).unwrap();
        }
        out
    });
    for _ in 0..n {
        tx.send(base.elapsed().as_nanos() as u64).unwrap();
        ack_rx.recv().unwrap();
    }
    drop(tx);
    reader.join().unwrap()
}

fn latency(c: &mut Criterion) {
    percentiles("latency/send_to_poll", brooklet_latencies(100_000));
    percentiles("latency/crossbeam_ping", crossbeam_latencies(100_000));
    let mut group = c.benchmark_group("latency");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10));
    const N: u64 = 10_000;
    group.throughput(Throughput::Elements(N));
    group.bench_function("send_to_poll", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| brooklet_latencies(N as usize).iter().sum::<Duration>())
                .sum()
        });
    });
    group.bench_function("crossbeam_ping", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| crossbeam_latencies(N as usize).iter().sum::<Duration>())
                .sum()
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Rebalance and commit
// ---------------------------------------------------------------------------------------

/// Polls every `group`'s member until it is stable and the given number of members own
/// their assignment.
fn wait_stable(broker: &Broker, group: &str, members: usize) -> Duration {
    let start = Instant::now();
    loop {
        let Ok(d) = broker.describe_group(group) else {
            // No member has joined yet.
            assert!(start.elapsed() < Duration::from_secs(30), "nobody joined {group}");
            std::thread::yield_now();
            continue;
        };
        if d.state == GroupState::Stable && d.members.len() == members && d.members.iter().all(|m| m.owned == m.target)
        {
            return d.last_rebalance.unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never settled: {d:?}");
        std::thread::yield_now();
    }
}

fn rebalance(c: &mut Criterion) {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("wide", TopicConfig::with_partitions(100)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let config = ConsumerConfig::group("rb").enable_auto_commit(false);
    let members: Vec<_> = (0..8)
        .map(|_| {
            let (broker, stop, config) = (broker.clone(), Arc::clone(&stop), config.clone());
            std::thread::spawn(move || {
                let mut c = broker.consumer(config).unwrap();
                c.subscribe(&["wide"]).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    c.poll(Duration::from_millis(200)).unwrap();
                }
            })
        })
        .collect();
    wait_stable(&broker, "rb", 8);
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("rebalance");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.bench_function("100p_8_members_join", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut ninth = broker.consumer(config.clone()).unwrap();
                ninth.subscribe(&["wide"]).unwrap();
                let start = Instant::now();
                let took = loop {
                    ninth.poll(Duration::from_millis(1)).unwrap();
                    let d = broker.describe_group("rb").unwrap();
                    if d.state == GroupState::Stable && d.members.iter().all(|m| m.owned == m.target) {
                        break d.last_rebalance.unwrap();
                    }
                    assert!(start.elapsed() < Duration::from_secs(30));
                };
                samples.push(took);
                total += took;
                drop(ninth);
                wait_stable(&broker, "rb", 8);
            }
            total
        });
    });
    group.finish();
    if !samples.is_empty() {
        percentiles("rebalance/100p_8_members_join", samples);
    }
    stop.store(true, Ordering::Relaxed);
    for m in members {
        m.join().unwrap();
    }
}

fn commit(c: &mut Criterion) {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let tp = TopicPartition::new("t", 0);
    let mut consumer = broker.consumer(ConsumerConfig::group("c")).unwrap();
    consumer.assign(std::slice::from_ref(&tp)).unwrap();
    let mut offset = 0u64;
    let mut samples = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        offset += 1;
        let map = BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(offset))]);
        let start = Instant::now();
        consumer.commit_offsets(&map).unwrap();
        samples.push(start.elapsed());
    }
    percentiles("commit/written", samples);
    let mut group = c.benchmark_group("commit");
    group.bench_function("written", |b| {
        b.iter(|| {
            offset += 1;
            let map = BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(offset))]);
            consumer.commit_offsets(&map).unwrap();
        });
    });
    group.finish();
}

criterion_group!(benches, consume, latency, rebalance, commit);
criterion_main!(benches);
