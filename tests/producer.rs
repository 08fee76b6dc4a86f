//! The producer: routing (Kafka's murmur2, explicit partitions, sticky and round-robin
//! keyless records), ordering under concurrency, batching (`send_async`, linger, flush,
//! close, drop), size limits, compression, timestamps and headers, typed values, metrics,
//! and what `Synced` sends guarantee across a simulated power loss.

mod common;
#[path = "common/gate.rs"]
mod gate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brooklet::io::{FaultFs, PowerLoss};
use brooklet::{
    Bincode, Broker, Codec, Compression, ConsumerConfig, Decoder, Delivery, Durability, Encoder, Error, Json,
    LogRecord, Producer, ProducerConfig, ProducerRecord, RecordMetadata, RoundRobinPartitioner, TimestampType,
    TopicConfig, TopicPartition, TypedConsumer, TypedProducer, partition_for_key,
};
use bytes::Bytes;
use common::{read_all, temp_dir};
use gate::{Gate, GateFs};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn records_of(broker: &Broker, topic: &str, partition: u32) -> Vec<LogRecord> {
    let log = broker
        .partition_log(&TopicPartition::new(topic, partition))
        .expect("partition log");
    read_all(&log)
}

fn end_offsets(broker: &Broker, topic: &str) -> Vec<u64> {
    broker
        .describe_topic(topic)
        .expect("describe")
        .partitions
        .iter()
        .map(|p| p.log_end_offset)
        .collect()
}

fn text(b: &Option<Bytes>) -> String {
    String::from_utf8(b.as_deref().unwrap_or_default().to_vec()).expect("utf8")
}

/// The stored record at `meta`'s partition and offset.
fn stored_at(broker: &Broker, meta: &RecordMetadata) -> LogRecord {
    let log = broker
        .partition_log(&TopicPartition::new(&*meta.topic, meta.partition))
        .expect("partition log");
    let batches = log.read(meta.offset, 1 << 20).expect("read");
    batches
        .iter()
        .flat_map(|b| b.records())
        .map(|r| r.expect("decode"))
        .find(|r| r.offset == meta.offset)
        .unwrap_or_else(|| panic!("no record at {meta:?}"))
}

/// Long linger and large batches: only flush, close or drop writes async records.
fn flush_only() -> ProducerConfig {
    ProducerConfig::default()
        .linger(Duration::from_secs(10))
        .batch_size(1 << 20)
}

fn expect_too_large(result: Result<RecordMetadata, Error>, max: usize, min_size: usize) {
    match result {
        Err(e @ Error::RecordTooLarge { .. }) => {
            let Error::RecordTooLarge { size, max: got_max } = e else {
                unreachable!()
            };
            assert_eq!(got_max, max);
            assert!(size > min_size, "size {size} should exceed {min_size}");
            assert_eq!(
                e.to_string(),
                format!(
                    "record too large: {size} bytes as a stored batch (header included), over the limit of {max} \
                     bytes (a topic's max_message_bytes, a log's max_batch_bytes)"
                )
            );
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
}

/// Keys, values and header values take borrowed bytes as they are written
/// (`name.as_str()`, a slice, a `b"…"` literal, a `&String`; copied) and owned buffers
/// without a copy, and come back byte for byte.
#[test]
fn records_take_borrowed_bytes_and_owned_buffers() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    let name = String::from("user-1");
    let body = [7u8; 3];
    let meta = producer
        .send(
            ProducerRecord::new("t")
                .key(name.as_str())
                .value(&body[..])
                .header("a", b"x")
                .header("b", &name)
                .header("c", std::borrow::Cow::Borrowed("y")),
        )
        .unwrap();
    let stored = stored_at(&broker, &meta);
    assert_eq!(stored.key.as_deref(), Some(&b"user-1"[..]));
    assert_eq!(stored.value.as_deref(), Some(&[7u8, 7, 7][..]));
    let headers: Vec<(&str, &[u8])> = stored.headers.iter().map(|h| (h.name.as_str(), &h.value[..])).collect();
    assert_eq!(headers, [("a", &b"x"[..]), ("b", b"user-1"), ("c", b"y")]);

    let owned = Bytes::from(vec![9u8; 100]);
    let text = String::from("key");
    let text_at = text.as_ptr();
    let record = brooklet::Record::new().key(text).value(&owned);
    assert_eq!(record.key_bytes().map(|k| k.as_ptr()), Some(text_at));
    assert_eq!(record.value_bytes().map(|v| v.as_ptr()), Some(owned.as_ptr()));
}

// ---------------------------------------------------------------------------------------
// 1. keyed routing
// ---------------------------------------------------------------------------------------

/// Kafka's `UtilsTest.testMurmur2` vectors, as Java ints.
const KAFKA_MURMUR2: [(&str, i32); 6] = [
    ("21", -973_932_308),
    ("foobar", -790_332_482),
    ("a-little-bit-long-string", -985_981_536),
    ("a-little-bit-longer-string", -1_486_304_829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
    ("abc", 479_470_107),
];

#[test]
fn keyed_records_land_on_kafkas_murmur2_partition() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(6)).unwrap();
    let p = broker.producer(ProducerConfig::default());
    for (key, hash) in KAFKA_MURMUR2 {
        let want = ((hash & 0x7fff_ffff) as u32) % 6;
        let meta = p.send(ProducerRecord::new("t").key(key).value("v")).unwrap();
        assert_eq!(meta.partition, want, "{key}");
        assert_eq!(&*meta.topic, "t");
        assert_eq!(partition_for_key(key.as_bytes(), 6), want);
        let d = p.send_async(ProducerRecord::new("t").key(key).value("async"));
        p.flush().unwrap();
        assert_eq!(d.wait().unwrap().partition, want, "{key} async");
        let metas = p
            .send_batch(&[ProducerRecord::new("t").key(key).value("batch")])
            .unwrap()
            .to_vec();
        assert_eq!(metas[0].partition, want, "{key} batch");
    }
    // The exact partitions these vectors give over 6 partitions (as computed by Kafka).
    let got: Vec<u32> = KAFKA_MURMUR2
        .iter()
        .map(|(k, _)| partition_for_key(k.as_bytes(), 6))
        .collect();
    assert_eq!(got, [0, 0, 2, 5, 5, 3]);

    // Many keys: every record of a key in one partition, the one partition_for_key gives.
    let mut seen: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for i in 0..300 {
        let key = format!("user-{}", i % 60);
        let meta = p
            .send(ProducerRecord::new("t").key(key.clone()).value(format!("{i}")))
            .unwrap();
        assert_eq!(meta.partition, partition_for_key(key.as_bytes(), 6));
        seen.entry(key).or_default().insert(meta.partition);
    }
    assert!(seen.values().all(|s| s.len() == 1));
    let used: BTreeSet<u32> = seen.values().flatten().copied().collect();
    assert_eq!(used, (0..6).collect());
    // Every stored record is in its key's partition.
    for partition in 0..6 {
        for r in records_of(&broker, "t", partition) {
            let key = r.key.as_deref().expect("keyed");
            assert_eq!(partition_for_key(key, 6), partition);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. explicit partitions
// ---------------------------------------------------------------------------------------

#[test]
fn explicit_partition_wins_and_out_of_range_is_invalid_partition() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(4)).unwrap();
    let p = broker.producer(ProducerConfig::default());
    let key = "foobar"; // hashes to partition 2 of 4
    assert_eq!(partition_for_key(key.as_bytes(), 4), 2);
    for (i, partition) in [0u32, 1, 3, 0].into_iter().enumerate() {
        let meta = p
            .send(
                ProducerRecord::new("t")
                    .partition(partition)
                    .key(key)
                    .value(format!("{i}")),
            )
            .unwrap();
        assert_eq!(meta.partition, partition);
    }
    assert_eq!(end_offsets(&broker, "t"), [2, 1, 0, 1]);
    let check = |err: Error, partition: u32| match err {
        Error::InvalidPartition {
            topic,
            partition: got,
            partitions,
        } => assert_eq!((topic.as_str(), got, partitions), ("t", partition, 4)),
        other => panic!("{other:?}"),
    };
    for partition in [4u32, 5, u32::MAX] {
        check(
            p.send(ProducerRecord::new("t").partition(partition).value("x"))
                .unwrap_err(),
            partition,
        );
        check(
            p.send_async(ProducerRecord::new("t").partition(partition).value("x"))
                .wait()
                .unwrap_err(),
            partition,
        );
        check(
            p.send_batch(&[
                ProducerRecord::new("t").partition(0).value("ok"),
                ProducerRecord::new("t").partition(partition).value("x"),
            ])
            .unwrap_err(),
            partition,
        );
    }
    let (tx, rx) = std::sync::mpsc::channel();
    p.send_with_callback(ProducerRecord::new("t").partition(9).value("x"), move |r| {
        tx.send(r).unwrap();
    });
    check(rx.recv().unwrap().unwrap_err(), 9);
    p.flush().unwrap();
    // Nothing of the refused sends (nor of the batch they were in) was written.
    assert_eq!(end_offsets(&broker, "t"), [2, 1, 0, 1]);
    assert_eq!(p.metrics().records_sent, 4);
}

// ---------------------------------------------------------------------------------------
// 3. per-key ordering under concurrency
// ---------------------------------------------------------------------------------------

#[test]
fn per_key_order_holds_under_eight_concurrent_producer_threads() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 2_000;
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(4)).unwrap();
    let config = ProducerConfig::default()
        .batch_size(2048)
        .linger(Duration::from_millis(1));
    let shared = broker.producer(config.clone());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            // Threads 0-3 share clones of one producer; 4-7 have their own.
            let producer = if t < 4 {
                shared.clone()
            } else {
                broker.producer(config.clone())
            };
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut acked: Vec<(String, String, RecordMetadata)> = Vec::new();
                let mut pending: Vec<(String, String, Delivery)> = Vec::new();
                for i in 0..PER_THREAD {
                    let key = format!("t{t}-k{}", i % 10);
                    let value = format!("{t}:{i}");
                    let record = ProducerRecord::new("t").key(key.clone()).value(value.clone());
                    if i % 4 == 0 {
                        acked.push((key, value, producer.send(record).expect("send")));
                    } else {
                        pending.push((key, value, producer.send_async(record)));
                    }
                }
                producer.flush().expect("flush");
                for (key, value, d) in pending {
                    acked.push((key, value, d.wait().expect("delivery")));
                }
                acked
            })
        })
        .collect();
    let acked: Vec<(String, String, RecordMetadata)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    drop(shared);
    assert_eq!(acked.len(), THREADS * PER_THREAD);

    // Read everything back.
    let mut by_position: HashMap<(u32, u64), LogRecord> = HashMap::new();
    let mut last_seq: HashMap<String, usize> = HashMap::new();
    let mut per_key: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for partition in 0..4 {
        let records = records_of(&broker, "t", partition);
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..records.len() as u64).collect::<Vec<_>>());
        for r in records {
            let key = text(&r.key);
            assert_eq!(partition_for_key(key.as_bytes(), 4), partition, "{key}");
            let value = text(&r.value);
            let (thread, seq) = value.split_once(':').expect("t:i");
            assert_eq!(key, format!("t{thread}-k{}", seq.parse::<usize>().unwrap() % 10));
            let seq: usize = seq.parse().unwrap();
            if let Some(&prev) = last_seq.get(&key) {
                assert!(seq > prev, "key {key}: {seq} after {prev} in partition {partition}");
            }
            last_seq.insert(key.clone(), seq);
            *per_key.entry(key).or_default() += 1;
            total += 1;
            by_position.insert((partition, r.offset), r);
        }
    }
    assert_eq!(total, THREADS * PER_THREAD);
    assert_eq!(per_key.len(), THREADS * 10);
    assert!(per_key.values().all(|&n| n == PER_THREAD / 10));
    // Every acknowledgement names exactly the stored record.
    let mut positions = BTreeSet::new();
    for (key, value, meta) in &acked {
        assert_eq!(meta.partition, partition_for_key(key.as_bytes(), 4));
        let r = &by_position[&(meta.partition, meta.offset)];
        assert_eq!((text(&r.key), text(&r.value)), (key.clone(), value.clone()));
        assert_eq!(r.timestamp, meta.timestamp);
        assert!(positions.insert((meta.partition, meta.offset)), "{meta:?} twice");
    }
}

// ---------------------------------------------------------------------------------------
// 4. keyless routing
// ---------------------------------------------------------------------------------------

#[test]
fn sticky_partitioner_fills_one_batch_at_a_time_and_covers_every_partition() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(6)).unwrap();
    // Each keyless record of 100 value bytes counts 140 bytes: a batch closes at 8 records.
    let p = broker.producer(
        ProducerConfig::default()
            .batch_size(1024)
            .linger(Duration::from_secs(10)),
    );
    let n = 3_000;
    let deliveries: Vec<Delivery> = (0..n)
        .map(|i| p.send_async(ProducerRecord::new("t").value(format!("{i:0100}"))))
        .collect();
    p.flush().unwrap();
    let metas: Vec<RecordMetadata> = deliveries.into_iter().map(|d| d.wait().unwrap()).collect();
    assert_eq!(p.metrics().records_sent, n as u64);
    assert_eq!(p.metrics().batches, n as u64 / 8);
    // Runs of 8 consecutive records share a partition, and each run moves to another one.
    let runs: Vec<u32> = metas
        .chunks(8)
        .map(|run| {
            assert!(run.iter().all(|m| m.partition == run[0].partition), "{run:?}");
            run[0].partition
        })
        .collect();
    for pair in runs.windows(2) {
        assert_ne!(pair[0], pair[1]);
    }
    let used: BTreeSet<u32> = runs.iter().copied().collect();
    assert_eq!(used, (0..6).collect());
    let mut total = 0;
    for partition in 0..6 {
        let log = broker.partition_log(&TopicPartition::new("t", partition)).unwrap();
        for batch in log.read(0, 1 << 24).unwrap() {
            assert_eq!(batch.record_count(), 8);
            total += 8;
        }
    }
    assert_eq!(total, n);
    for (i, m) in metas.iter().enumerate().step_by(97) {
        assert_eq!(text(&stored_at(&broker, m).value), format!("{i:0100}"));
    }
}

#[test]
fn round_robin_partitioner_spreads_blocking_sends_exactly_evenly() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(6)).unwrap();
    let p = broker.producer(ProducerConfig::default().partitioner(Arc::new(RoundRobinPartitioner::new())));
    let mut order = Vec::new();
    for i in 0..600 {
        // Keys too: round-robin ignores them.
        let meta = p
            .send(
                ProducerRecord::new("t")
                    .key(format!("same-{}", i % 2))
                    .value(format!("{i}")),
            )
            .unwrap();
        order.push(meta.partition);
        assert_eq!(meta.offset, i / 6);
    }
    assert_eq!(order, (0..600).map(|i| i % 6).collect::<Vec<u32>>());
    assert_eq!(end_offsets(&broker, "t"), [100; 6]);
    for partition in 0..6u32 {
        let values: Vec<String> = records_of(&broker, "t", partition)
            .iter()
            .map(|r| text(&r.value))
            .collect();
        let want: Vec<String> = (0..100u32).map(|k| format!("{}", k * 6 + partition)).collect();
        assert_eq!(values, want);
    }
}

// ---------------------------------------------------------------------------------------
// 5. compression
// ---------------------------------------------------------------------------------------

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn every_compression_codec_round_trips_through_the_producer() {
    let broker = Broker::temporary().unwrap();
    for (c, codec) in CODECS.into_iter().enumerate() {
        let topic = format!("c{c}");
        broker.create_topic(&topic, TopicConfig::with_partitions(1)).unwrap();
        let p = broker.producer(flush_only().compression(codec));
        let values: Vec<String> = (0..200)
            .map(|i| format!("{codec:?} record {i} {}", "abc".repeat(i % 20)))
            .collect();
        let deliveries: Vec<Delivery> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                p.send_async(
                    ProducerRecord::new(topic.clone())
                        .key(format!("k{i}"))
                        .value(v.clone())
                        .header("codec", format!("{codec:?}"))
                        .timestamp(5_000 + i as i64),
                )
            })
            .collect();
        p.flush().unwrap();
        for (i, d) in deliveries.into_iter().enumerate() {
            assert_eq!(d.wait().unwrap().offset, i as u64);
        }
        let blocking = p.send(ProducerRecord::new(topic.clone()).value("blocking")).unwrap();
        assert_eq!(blocking.offset, 200);
        let log = broker.partition_log(&TopicPartition::new(topic.clone(), 0)).unwrap();
        let batches = log.read(0, 1 << 24).unwrap();
        assert_eq!(batches.len(), 2, "{codec:?}");
        for b in &batches {
            assert_eq!(b.compression(), Some(codec));
        }
        let records = read_all(&log);
        assert_eq!(records.len(), 201);
        for (i, r) in records.iter().take(200).enumerate() {
            assert_eq!(r.offset, i as u64);
            assert_eq!(text(&r.key), format!("k{i}"));
            assert_eq!(text(&r.value), values[i]);
            assert_eq!(r.timestamp, 5_000 + i as i64);
            assert_eq!(r.headers.len(), 1);
            assert_eq!(r.headers[0].name, "codec");
            assert_eq!(r.headers[0].value, format!("{codec:?}").into_bytes());
        }
        assert_eq!(text(&records[200].value), "blocking");
        if codec != Compression::None {
            let stored: usize = batches[0].size_bytes();
            let raw: usize = values.iter().map(String::len).sum();
            assert!(stored < raw, "{codec:?}: {stored} stored for {raw} raw");
        }
    }
}

#[test]
fn producers_with_different_codecs_share_one_partition() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("mixed", TopicConfig::with_partitions(1)).unwrap();
    let producers: Vec<Producer> = CODECS
        .iter()
        .map(|&c| broker.producer(ProducerConfig::default().compression(c)))
        .collect();
    // offset -> (codec, value); interleaved blocking sends and batches.
    let mut want: BTreeMap<u64, (Compression, String)> = BTreeMap::new();
    for round in 0..6 {
        for (c, p) in producers.iter().enumerate() {
            let codec = CODECS[c];
            if round % 2 == 0 {
                let value = format!("r{round}-{codec:?}-{}", "x".repeat(round * 10));
                let meta = p.send(ProducerRecord::new("mixed").value(value.clone())).unwrap();
                want.insert(meta.offset, (codec, value));
            } else {
                let values: Vec<String> = (0..3).map(|j| format!("r{round}-{codec:?}-{j}")).collect();
                let metas = p
                    .send_batch(
                        &values
                            .iter()
                            .map(|v| ProducerRecord::new("mixed").value(v.clone()))
                            .collect::<Vec<_>>(),
                    )
                    .unwrap()
                    .to_vec();
                for (m, v) in metas.iter().zip(values) {
                    want.insert(m.offset, (codec, v));
                }
            }
        }
    }
    assert_eq!(want.len(), 3 * 5 + 3 * 5 * 3);
    assert_eq!(
        want.keys().copied().collect::<Vec<_>>(),
        (0..want.len() as u64).collect::<Vec<_>>()
    );
    let log = broker.partition_log(&TopicPartition::new("mixed", 0)).unwrap();
    let batches = log.read(0, 1 << 24).unwrap();
    assert_eq!(batches.len(), 6 * 5);
    let mut seen = 0;
    let mut codecs_seen = BTreeSet::new();
    for b in &batches {
        for r in b.records() {
            let r = r.unwrap();
            let (codec, value) = &want[&r.offset];
            assert_eq!(b.compression(), Some(*codec), "offset {}", r.offset);
            assert_eq!(&text(&r.value), value);
            codecs_seen.insert(format!("{codec:?}"));
            seen += 1;
        }
    }
    assert_eq!(seen, want.len());
    assert_eq!(codecs_seen.len(), 5);
    // The same after a reopen.
    drop(batches);
    drop(log);
    drop(producers);
    drop(broker);
    let broker = Broker::open(dir.path()).unwrap();
    let log = broker.partition_log(&TopicPartition::new("mixed", 0)).unwrap();
    let mut seen = 0;
    for b in log.read(0, 1 << 24).unwrap() {
        for r in b.records() {
            let r = r.unwrap();
            let (codec, value) = &want[&r.offset];
            assert_eq!(b.compression(), Some(*codec), "offset {} after reopen", r.offset);
            assert_eq!(&text(&r.value), value);
            seen += 1;
        }
    }
    assert_eq!(seen, want.len());
}

// ---------------------------------------------------------------------------------------
// 6. size limits
// ---------------------------------------------------------------------------------------

fn small_topic(broker: &Broker, name: &str, partitions: u32) {
    broker
        .create_topic(name, TopicConfig::with_partitions(partitions).max_message_bytes(2048))
        .unwrap();
}

#[test]
fn oversized_record_is_refused_by_send_and_nothing_is_written() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "t", 2);
    let p = broker.producer(ProducerConfig::default());
    assert_eq!(
        p.send(ProducerRecord::new("t").partition(0).value("small"))
            .unwrap()
            .offset,
        0
    );
    let before = end_offsets(&broker, "t");
    let size_before = broker.describe_topic("t").unwrap().partitions[0].size_bytes;
    let big = vec![7u8; 4096];
    expect_too_large(
        p.send(ProducerRecord::new("t").partition(0).value(big.clone())),
        2048,
        4096,
    );
    expect_too_large(p.send(ProducerRecord::new("t").key("k").value(big.clone())), 2048, 4096);
    assert_eq!(end_offsets(&broker, "t"), before);
    assert_eq!(
        broker.describe_topic("t").unwrap().partitions[0].size_bytes,
        size_before
    );
    assert_eq!(p.metrics().errors, 2);
    assert_eq!(p.metrics().records_sent, 1);
    // A record just under the limit fits, and the partition goes on at the next offset.
    let fits = p
        .send(ProducerRecord::new("t").partition(0).value(vec![1u8; 1800]))
        .unwrap();
    assert_eq!(fits.offset, 1);
    assert_eq!(records_of(&broker, "t", 0).len(), 2);
}

/// Protects: a `send_batch` larger than the topic's batch limit is written in batches
/// filled by the records' estimated sizes, in the order given, and not by trial and error
/// (one attempt, refused, then halves). Each record is estimated at 240 bytes (a 200-byte
/// value and 40 of overhead) and a batch header at 57, so a 2048-byte limit takes 8
/// records a batch: 30 records per partition go as 8, 8, 8 and 6. Halving would give 8, 7,
/// 8, 7. Checked for a call to one partition (the input written as it is) and for a call
/// spread over two (the records regrouped per partition).
#[test]
fn send_batch_over_the_batch_limit_is_written_in_batches_filled_in_order() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "one", 1);
    small_topic(&broker, "two", 2);
    let p = broker.producer(ProducerConfig::default());
    let value = |i: usize| format!("{i:0200}");
    let one: Vec<_> = (0..30).map(|i| ProducerRecord::new("one").value(value(i))).collect();
    let two: Vec<_> = (0..60)
        .map(|i| ProducerRecord::new("two").partition(i as u32 % 2).value(value(i)))
        .collect();
    for (topic, records, partitions) in [("one", &one, 1), ("two", &two, 2)] {
        let sent = p.send_batch(records).unwrap();
        assert_eq!(sent.len(), records.len());
        for partition in 0..partitions {
            let log = broker.partition_log(&TopicPartition::new(topic, partition)).unwrap();
            let batches = log.read(0, 1 << 20).unwrap();
            let sizes: Vec<u64> = batches.iter().map(|b| b.last_offset() - b.base_offset() + 1).collect();
            assert_eq!(sizes, [8, 8, 8, 6], "{topic}-{partition}");
            let values: Vec<_> = records_of(&broker, topic, partition)
                .into_iter()
                .map(|r| r.value.unwrap())
                .collect();
            let expected: Vec<_> = (0..records.len())
                .filter(|i| *i as u32 % partitions == partition)
                .map(|i| Bytes::from(value(i)))
                .collect();
            assert_eq!(values, expected, "{topic}-{partition}");
        }
    }
    assert_eq!(p.metrics().batches, 4 + 8);
    assert_eq!(p.metrics().errors, 0);
}

#[test]
fn oversized_async_record_fails_alone_and_its_neighbours_are_stored() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "t", 1);
    let p = broker.producer(flush_only());
    let big = vec![7u8; 4096];
    let mut small = Vec::new();
    for i in 0..3 {
        small.push(p.send_async(ProducerRecord::new("t").value(format!("before-{i}"))));
    }
    let oversized = p.send_async(ProducerRecord::new("t").value(big.clone()));
    for i in 0..3 {
        small.push(p.send_async(ProducerRecord::new("t").value(format!("after-{i}"))));
    }
    // Many small records whose sum passes the limit: split into batches, none refused.
    for i in 0..60 {
        small.push(p.send_async(ProducerRecord::new("t").value(format!("many-{i:080}"))));
    }
    // flush reports the failure too.
    match p.flush() {
        Err(Error::RecordTooLarge { max: 2048, .. }) | Ok(()) => {}
        Err(other) => panic!("{other:?}"),
    }
    expect_too_large(oversized.wait(), 2048, 4096);
    let metas: Vec<RecordMetadata> = small.into_iter().map(|d| d.wait().unwrap()).collect();
    assert_eq!(
        metas.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..66).collect::<Vec<u64>>()
    );
    let values: Vec<String> = records_of(&broker, "t", 0).iter().map(|r| text(&r.value)).collect();
    let mut want: Vec<String> = (0..3).map(|i| format!("before-{i}")).collect();
    want.extend((0..3).map(|i| format!("after-{i}")));
    want.extend((0..60).map(|i| format!("many-{i:080}")));
    assert_eq!(values, want);
    let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    for b in log.read(0, 1 << 24).unwrap() {
        assert!(b.size_bytes() <= 2048);
    }
    assert_eq!(p.metrics().errors, 1);
    assert_eq!(p.metrics().records_sent, 66);
}

#[test]
fn oversized_record_in_send_batch_is_refused_and_writes_nothing() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "t", 1);
    let p = broker.producer(ProducerConfig::default());
    assert_eq!(p.send(ProducerRecord::new("t").value("first")).unwrap().offset, 0);
    match p.send_batch(&[
        ProducerRecord::new("t").value(vec![7u8; 4096]),
        ProducerRecord::new("t").value("small-1"),
        ProducerRecord::new("t").value("small-2"),
    ]) {
        Err(Error::RecordTooLarge { size, max }) => {
            assert_eq!(max, 2048);
            assert!(size > 4096, "{size}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(end_offsets(&broker, "t"), [1]);
    // A batch whose records together pass the limit is split, not refused.
    let records: Vec<ProducerRecord> = (0..50)
        .map(|i| ProducerRecord::new("t").value(format!("{i:0100}")))
        .collect();
    let metas = p.send_batch(&records).unwrap().to_vec();
    assert_eq!(
        metas.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (1..51).collect::<Vec<u64>>()
    );
    let values: Vec<String> = records_of(&broker, "t", 0)
        .iter()
        .skip(1)
        .map(|r| text(&r.value))
        .collect();
    assert_eq!(values, (0..50).map(|i| format!("{i:0100}")).collect::<Vec<_>>());
}

/// A blocking send first writes the partition's queued async records; when one of those
/// fails (it alone is too large), that failure belongs to its own `Delivery`: the blocking
/// send's record is stored and must be acknowledged.
#[test]
fn blocking_send_after_a_queued_oversized_record_is_acknowledged() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "t", 1);
    let p = broker.producer(flush_only());
    let oversized = p.send_async(ProducerRecord::new("t").value(vec![7u8; 4096]));
    let sent = p.send(ProducerRecord::new("t").value("blocking"));
    expect_too_large(oversized.wait(), 2048, 4096);
    assert_eq!(end_offsets(&broker, "t"), [1]);
    assert_eq!(text(&records_of(&broker, "t", 0)[0].value), "blocking");
    match sent {
        Ok(meta) => assert_eq!((meta.partition, meta.offset), (0, 0)),
        Err(e) => panic!("the blocking send's record is stored at offset 0, but send returned {e:?}"),
    }

    // The same through send_batch.
    let oversized = p.send_async(ProducerRecord::new("t").value(vec![7u8; 4096]));
    let sent = p.send_batch(&[ProducerRecord::new("t").value("batched")]);
    expect_too_large(oversized.wait(), 2048, 4096);
    assert_eq!(end_offsets(&broker, "t"), [2]);
    match sent {
        Ok(metas) => assert_eq!(metas.iter().map(|m| m.offset).collect::<Vec<_>>(), [1]),
        Err(e) => panic!("the batch's record is stored at offset 1, but send_batch returned {e:?}"),
    }
    assert_eq!(p.metrics().errors, 2);
}

// ---------------------------------------------------------------------------------------
// 7. flush, drop
// ---------------------------------------------------------------------------------------

#[test]
fn flush_writes_every_async_record_with_dense_offsets() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(3)).unwrap();
    let p = broker.producer(flush_only());
    let n = 600;
    let sent: Vec<(String, Delivery)> = (0..n)
        .map(|i| {
            let key = format!("key-{}", i % 17);
            (
                key.clone(),
                p.send_async(ProducerRecord::new("t").key(key).value(format!("{i}"))),
            )
        })
        .collect();
    // Nothing is written before the flush (10 s linger, 1 MiB batches).
    assert_eq!(end_offsets(&broker, "t"), [0, 0, 0]);
    assert_eq!(p.metrics().records_sent, 0);
    assert!(sent.iter().all(|(_, d)| d.try_result().is_none()));
    p.flush().unwrap();
    let mut next = [0u64; 3];
    for (i, (key, d)) in sent.into_iter().enumerate() {
        let meta = d.wait().unwrap();
        let partition = partition_for_key(key.as_bytes(), 3);
        assert_eq!(meta.partition, partition);
        assert_eq!(meta.offset, next[partition as usize], "record {i}");
        next[partition as usize] += 1;
    }
    assert_eq!(next.iter().sum::<u64>(), n);
    assert_eq!(end_offsets(&broker, "t"), next);
    assert_eq!(p.metrics().records_sent, n);
    // One batch per partition.
    assert_eq!(p.metrics().batches, 3);
    // A second flush has nothing to do.
    p.flush().unwrap();
    assert_eq!(p.metrics().batches, 3);
}

/// The records of one batch share its outcome, yet each delivery reports its own record,
/// as often as asked, whether the batch's other handles were kept, dropped or were
/// callbacks; a failed batch reports its error to each.
#[test]
fn deliveries_of_one_batch_each_report_their_own_record() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());
    let seen: Arc<Mutex<Vec<(u64, i64)>>> = Arc::default();
    let mut kept = Vec::new();
    for i in 0..6i64 {
        let record = ProducerRecord::new("t").value(format!("{i}")).timestamp(1_000 + i);
        match i % 3 {
            0 => kept.push((i, p.send_async(record))),
            1 => drop(p.send_async(record)),
            _ => {
                let seen = Arc::clone(&seen);
                p.send_with_callback(record, move |r| {
                    let m = r.unwrap();
                    seen.lock().unwrap().push((m.offset, m.timestamp));
                });
            }
        }
    }
    p.flush().unwrap();
    assert_eq!(p.metrics().batches, 1);
    for (i, d) in &kept {
        for _ in 0..2 {
            let m = d.try_result().unwrap().unwrap();
            assert_eq!(
                (&*m.topic, m.partition, m.offset, m.timestamp),
                ("t", 0, *i as u64, 1_000 + i)
            );
        }
    }
    let offsets: Vec<u64> = kept.into_iter().map(|(_, d)| d.wait().unwrap().offset).collect();
    assert_eq!(offsets, [0, 3]);
    assert_eq!(*seen.lock().unwrap(), [(2, 1_002), (5, 1_005)]);

    // A batch that fails (its topic deleted before the flush): every record of it gets
    // the error, each time asked.
    broker.create_topic("gone", TopicConfig::with_partitions(1)).unwrap();
    let (a, b) = (
        p.send_async(ProducerRecord::new("gone").value("a")),
        p.send_async(ProducerRecord::new("gone").value("b")),
    );
    broker.delete_topic("gone").unwrap();
    assert!(matches!(p.flush(), Err(Error::UnknownTopic { .. })));
    let batches = p.metrics().batches;
    for d in [&a, &b] {
        for _ in 0..2 {
            assert!(matches!(d.try_result(), Some(Err(Error::UnknownTopic { topic })) if topic == "gone"));
        }
    }
    assert!(matches!(b.wait(), Err(Error::UnknownTopic { .. })));
    assert_eq!(p.metrics().batches, batches);
    assert_eq!(p.metrics().errors, 2);
}

/// Records queued for a topic that is then deleted and recreated are completed with
/// `UnknownTopic` (never written into the new topic, never left waiting) when the producer
/// first sends to the new incarnation; the new records go to the new topic.
#[test]
fn records_pending_for_a_recreated_topic_complete_with_unknown_topic() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());
    let pending = p.send_async(ProducerRecord::new("t").value("pending"));
    let fired: Arc<Mutex<Option<Result<RecordMetadata, Error>>>> = Arc::default();
    let f = Arc::clone(&fired);
    p.send_with_callback(ProducerRecord::new("t").value("cb"), move |r| {
        *f.lock().unwrap() = Some(r);
    });
    broker.delete_topic("t").unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    // The first send to the new topic replaces the producer's queues for "t".
    let fresh = p.send_async(ProducerRecord::new("t").value("fresh"));
    assert!(matches!(pending.try_result(), Some(Err(Error::UnknownTopic { topic })) if topic == "t"));
    assert!(matches!(*fired.lock().unwrap(), Some(Err(Error::UnknownTopic { .. }))));
    p.flush().unwrap();
    assert_eq!(fresh.wait().unwrap().offset, 0);
    let stored: Vec<Option<Bytes>> = records_of(&broker, "t", 0).into_iter().map(|r| r.value).collect();
    assert_eq!(stored, [Some(Bytes::from("fresh"))]);
}

/// `flush` returns only once every record sent before it has its outcome, also when they
/// were queued for a topic since deleted and recreated: the queues a producer retires for
/// the deleted incarnation are flushed too while another thread is still completing them,
/// not missed between leaving the producer's map and being completed.
#[test]
fn flush_waits_for_records_of_a_deleted_topic_that_another_thread_is_completing() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let p = broker.producer(flush_only());
    let (entered_tx, entered) = std::sync::mpsc::channel();
    // Partition 0's callback holds the retiring thread for a while, before it reaches
    // partition 1's queue.
    p.send_with_callback(ProducerRecord::new("t").partition(0).value("a"), move |r| {
        assert!(matches!(r, Err(Error::UnknownTopic { .. })));
        entered_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(300));
    });
    let second = p.send_async(ProducerRecord::new("t").partition(1).value("b"));
    broker.delete_topic("t").unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    thread::scope(|s| {
        // The first send to the new incarnation retires the old queues and completes them.
        let fresh = s.spawn(|| p.send_async(ProducerRecord::new("t").partition(0).value("c")));
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(matches!(p.flush(), Err(Error::UnknownTopic { .. })));
        assert!(
            matches!(second.try_result(), Some(Err(Error::UnknownTopic { .. }))),
            "a record sent before flush has no outcome after it"
        );
        p.flush().unwrap();
        assert_eq!(fresh.join().unwrap().wait().unwrap().offset, 0);
    });
}

/// A partitioner that, for the key `slow`, tells `entered` and waits for `release` (once).
#[derive(Debug)]
struct PausingPartitioner {
    pause: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl brooklet::Partitioner for PausingPartitioner {
    fn partition(&self, _topic: &str, key: Option<&[u8]>, _value: Option<&[u8]>, _partitions: u32) -> u32 {
        if key == Some(b"slow".as_slice()) {
            let pause = self.pause.lock().unwrap().take();
            if let Some((entered, release)) = pause {
                entered.send(()).unwrap();
                release.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        }
        0
    }
}

/// A send routed on a topic that is deleted and created again while its partitioner runs
/// fails with `UnknownTopic` and leaves the producer's queues for the new topic alone: a
/// record queued for the new topic stays queued (written by the next flush, not by the stale
/// send), where a stale send used to replace the live queues with the deleted topic's.
#[test]
fn a_send_routed_on_a_deleted_topic_leaves_the_new_topics_queues_alone() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let partitioner = PausingPartitioner {
        pause: Mutex::new(Some((entered_tx, release_rx))),
    };
    let p = broker.producer(flush_only().partitioner(Arc::new(partitioner)));
    thread::scope(|s| {
        // The producer has no queue for "t" yet: it resolves the topic, then routes.
        let stale = s.spawn(|| p.send(ProducerRecord::new("t").key("slow").value("stale")));
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        broker.delete_topic("t").unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        let live = p.send_async(ProducerRecord::new("t").value("live"));
        release.send(()).unwrap();
        assert!(matches!(stale.join().unwrap(), Err(Error::UnknownTopic { topic }) if topic == "t"));
        assert!(
            live.try_result().is_none(),
            "the live queue was flushed by the stale send"
        );
        assert!(records_of(&broker, "t", 0).is_empty());
        p.flush().unwrap();
        assert_eq!(live.wait().unwrap().offset, 0);
    });
    let stored: Vec<Option<Bytes>> = records_of(&broker, "t", 0).into_iter().map(|r| r.value).collect();
    assert_eq!(stored, [Some(Bytes::from("live"))]);
}

/// A callback that panics is caught: the batch's delivery handles and its other callbacks
/// are still completed, and the flush that ran them succeeds.
#[test]
fn a_panicking_callback_does_not_strand_the_rest_of_its_batch() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());
    let first = p.send_async(ProducerRecord::new("t").value("a"));
    p.send_with_callback(ProducerRecord::new("t").value("b"), |_| panic!("callback panics"));
    let after: Arc<Mutex<Option<u64>>> = Arc::default();
    let a = Arc::clone(&after);
    p.send_with_callback(ProducerRecord::new("t").value("c"), move |r| {
        *a.lock().unwrap() = Some(r.unwrap().offset);
    });
    let last = p.send_async(ProducerRecord::new("t").value("d"));
    p.flush().unwrap();
    assert_eq!(first.wait().unwrap().offset, 0);
    assert_eq!(*after.lock().unwrap(), Some(2));
    assert_eq!(last.wait().unwrap().offset, 3);
    assert_eq!(p.metrics().records_sent, 4);
}

/// A record refused at once (its topic does not exist) completes its callback on the
/// sending thread; a panic there is caught as any callback's, not thrown at the sender.
#[test]
fn a_panicking_callback_of_a_refused_record_does_not_reach_the_sender() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.send_with_callback(ProducerRecord::new("missing").value("x"), |r| {
            assert!(matches!(r, Err(Error::UnknownTopic { .. })));
            panic!("callback panics");
        });
    }));
    assert!(sent.is_ok(), "the callback's panic reached the sender");
    assert_eq!(p.metrics().errors, 1);
    let d = p.send_async(ProducerRecord::new("t").value("next"));
    p.flush().unwrap();
    assert_eq!(d.wait().unwrap().offset, 0);
}

/// `on_new_batch` runs outside the producer's locks, as `partition` does, on every path: a
/// partitioner that sends through the producer from it (here: once, from a batch of
/// `send_async` and once from the linger thread's) does not deadlock the partition. It ran
/// under the partition's lock on the async paths, so such a send never returned.
#[test]
fn on_new_batch_may_send_through_the_producer() {
    #[derive(Debug, Default)]
    struct Resending {
        /// Taken at the end: the producer holds the partitioner, a cycle otherwise.
        producer: Mutex<Option<Producer>>,
        resent: std::sync::atomic::AtomicUsize,
    }
    impl brooklet::Partitioner for Resending {
        fn partition(&self, _: &str, _: Option<&[u8]>, _: Option<&[u8]>, _: u32) -> u32 {
            0
        }
        fn on_new_batch(&self, topic: &str, _: u32, _: u32) {
            let producer = self.producer.lock().unwrap().clone();
            if self.resent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2
                && let Some(p) = producer
            {
                let _ = p.send_async(ProducerRecord::new(topic.to_owned()).value("from on_new_batch"));
            }
        }
    }
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let partitioner = Arc::new(Resending::default());
    let p = broker.producer(
        ProducerConfig::default()
            .linger(Duration::from_millis(1))
            .batch_size(1)
            .partitioner(Arc::clone(&partitioner) as Arc<dyn brooklet::Partitioner>),
    );
    *partitioner.producer.lock().unwrap() = Some(p.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let sender = p.clone();
    let worker = thread::spawn(move || {
        // Fills a batch (batch_size 1): written at once, then on_new_batch sends again; that
        // record's own batch is written, and on_new_batch sends a third.
        let d = sender.send_async(ProducerRecord::new("t").value("first"));
        sender.flush().unwrap();
        tx.send(d.wait().map(|m| m.offset)).unwrap();
    });
    let first = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("a send from on_new_batch deadlocked the producer");
    worker.join().unwrap();
    assert_eq!(first.unwrap(), 0);
    p.flush().unwrap();
    partitioner.producer.lock().unwrap().take();
    let values: Vec<String> = records_of(&broker, "t", 0)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["first", "from on_new_batch", "from on_new_batch"]);
}

/// A user partitioner whose `on_new_batch` panics on the sending thread (its record filled
/// a batch, which was written): the panic reaches the sender, but only after the written
/// batch was reported — its callback has run, not left for some later write or flush.
#[test]
fn a_panicking_on_new_batch_in_a_send_still_reports_the_written_batch() {
    #[derive(Debug)]
    struct Panicky;
    impl brooklet::Partitioner for Panicky {
        fn partition(&self, _: &str, _: Option<&[u8]>, _: Option<&[u8]>, _: u32) -> u32 {
            0
        }
        fn on_new_batch(&self, _: &str, _: u32, _: u32) {
            panic!("on_new_batch panics on purpose");
        }
    }
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(
        ProducerConfig::default()
            .linger(Duration::MAX)
            .batch_size(1)
            .partitioner(Arc::new(Panicky)),
    );
    let got: Arc<Mutex<Option<u64>>> = Arc::default();
    let g = Arc::clone(&got);
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.send_with_callback(ProducerRecord::new("t").value("v"), move |r| {
            *g.lock().unwrap() = Some(r.unwrap().offset);
        });
    }));
    assert!(sent.is_err(), "the partitioner's panic should reach its caller");
    assert_eq!(*got.lock().unwrap(), Some(0), "the written batch was not reported");
}

/// A user partitioner whose `on_new_batch` panics (called by the linger thread as it
/// writes a batch) does not end the linger thread: later batches are still written by time.
#[test]
fn a_panicking_on_new_batch_does_not_stop_the_linger_thread() {
    #[derive(Debug)]
    struct Panicky(std::sync::atomic::AtomicUsize);
    impl brooklet::Partitioner for Panicky {
        fn partition(&self, _: &str, _: Option<&[u8]>, _: Option<&[u8]>, _: u32) -> u32 {
            0
        }
        fn on_new_batch(&self, _: &str, _: u32, _: u32) {
            if thread::current().name() == Some("brooklet-linger") {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            panic!("on_new_batch panics on purpose");
        }
    }
    let partitioner = Arc::new(Panicky(Default::default()));
    let before = linger_thread_panics();
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(
        ProducerConfig::default()
            .linger(Duration::from_millis(1))
            .partitioner(Arc::clone(&partitioner) as Arc<dyn brooklet::Partitioner>),
    );
    for i in 0..3u64 {
        let d = p.send_async(ProducerRecord::new("t").value("v"));
        // Written by the linger thread (no flush): a dead one would leave it pending.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let result = loop {
            if let Some(result) = d.try_result() {
                break result;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "record {i} was not written by the linger thread"
            );
            thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(result.unwrap().offset, i);
    }
    assert_eq!(
        partitioner.0.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "on_new_batch calls on the linger thread"
    );
    assert_eq!(linger_thread_panics(), before);
    drop(p);
}

/// The partitioner runs outside the producer's locks: one that itself sends through the
/// producer (here to a new partition of an audit topic each time) does not deadlock.
#[test]
fn a_partitioner_may_send_through_its_own_producer() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    broker.create_topic("audit", TopicConfig::with_partitions(4)).unwrap();
    let me: Arc<Mutex<Option<Producer>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (me2, calls2) = (Arc::clone(&me), Arc::clone(&calls));
    let partitioner = brooklet::FnPartitioner::new(move |topic: &str, _: Option<&[u8]>, _: Option<&[u8]>, _| {
        if topic == "t" {
            let n = calls2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let producer = me2.lock().unwrap().clone();
            if let Some(producer) = producer {
                producer
                    .send(ProducerRecord::new("audit").partition(n).value(format!("routed {n}")))
                    .unwrap();
            }
        }
        0
    });
    let p = broker.producer(ProducerConfig::default().partitioner(Arc::new(partitioner)));
    *me.lock().unwrap() = Some(p.clone());
    let (done, finished) = std::sync::mpsc::channel();
    let sender = p.clone();
    thread::spawn(move || {
        let offsets: Vec<u64> = (0..3)
            .map(|i| {
                sender
                    .send(ProducerRecord::new("t").value(format!("{i}")))
                    .unwrap()
                    .offset
            })
            .collect();
        let _ = done.send(offsets);
    });
    let offsets = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("sends deadlocked");
    assert_eq!(offsets, [0, 1, 2]);
    assert_eq!(end_offsets(&broker, "audit"), [1, 1, 1, 0]);
    // The partitioner held a clone of the producer: let it go.
    me.lock().unwrap().take();
}

/// Callback outcomes by the index of the record sent.
type Outcomes = Vec<(usize, Result<RecordMetadata, Error>)>;

#[test]
fn dropping_the_last_producer_clone_delivers_every_callback() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let results: Arc<Mutex<Outcomes>> = Arc::new(Mutex::new(Vec::new()));
    let p = broker.producer(flush_only());
    let clone = p.clone();
    let n = 400;
    for i in 0..n {
        let results = Arc::clone(&results);
        let sender = if i % 2 == 0 { &p } else { &clone };
        sender.send_with_callback(
            ProducerRecord::new("t").partition((i % 2) as u32).value(format!("{i}")),
            move |r| results.lock().unwrap().push((i, r)),
        );
    }
    drop(clone);
    assert!(
        results.lock().unwrap().is_empty(),
        "a clone's drop does not close the producer"
    );
    assert_eq!(end_offsets(&broker, "t"), [0, 0]);
    // A callback may run on another thread: send one from a spawned thread as well.
    let p2 = p.clone();
    let results2 = Arc::clone(&results);
    thread::spawn(move || {
        p2.send_with_callback(ProducerRecord::new("t").partition(0).value("from-thread"), move |r| {
            results2.lock().unwrap().push((n, r));
        });
    })
    .join()
    .unwrap();
    drop(p);
    let results = std::mem::take(&mut *results.lock().unwrap());
    assert_eq!(results.len(), n + 1);
    let mut by_index: BTreeMap<usize, RecordMetadata> = BTreeMap::new();
    for (i, r) in results {
        by_index.insert(i, r.unwrap_or_else(|e| panic!("record {i}: {e:?}")));
    }
    assert_eq!(by_index.len(), n + 1);
    // Send order within each partition: record i is the (i / 2)th of its partition, and the
    // one from the other thread came last to partition 0.
    for (&i, m) in &by_index {
        let want = if i < n {
            ((i % 2) as u32, (i / 2) as u64)
        } else {
            (0, (n / 2) as u64)
        };
        assert_eq!((m.partition, m.offset), want, "record {i}");
        let value = if i < n {
            format!("{i}")
        } else {
            "from-thread".to_string()
        };
        assert_eq!(text(&stored_at(&broker, m).value), value);
    }
    assert_eq!(end_offsets(&broker, "t"), [(n / 2) as u64 + 1, (n / 2) as u64]);
}

// ---------------------------------------------------------------------------------------
// 8. close
// ---------------------------------------------------------------------------------------

#[test]
fn sends_after_close_are_refused_with_closed() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());
    let clone = p.clone();
    let queued = p.send_async(ProducerRecord::new("t").value("queued"));
    p.close().unwrap();
    // close wrote what was queued.
    assert_eq!(queued.wait().unwrap().offset, 0);
    assert_eq!(end_offsets(&broker, "t"), [1]);

    let closed = |r: Result<RecordMetadata, Error>| match r {
        Err(Error::Closed { what }) => assert_eq!(what, "producer"),
        other => panic!("{other:?}"),
    };
    closed(p.send(ProducerRecord::new("t").value("x")));
    closed(clone.send(ProducerRecord::new("t").value("x")));
    closed(p.send_async(ProducerRecord::new("t").value("x")).wait());
    closed(clone.send_async(ProducerRecord::new("t").value("x")).wait());
    match p.send_batch(&[ProducerRecord::new("t").value("x")]) {
        Err(Error::Closed { what }) => assert_eq!(what, "producer"),
        other => panic!("{other:?}"),
    }
    // An empty batch too: a closed producer refuses every call, not only those with work.
    match clone.send_batch(&[]) {
        Err(Error::Closed { what }) => assert_eq!(what, "producer"),
        other => panic!("{other:?}"),
    }
    let (tx, rx) = std::sync::mpsc::channel();
    p.send_with_callback(ProducerRecord::new("t").value("x"), move |r| tx.send(r).unwrap());
    closed(rx.recv().unwrap());
    p.flush().unwrap();
    clone.close().unwrap();
    p.close().unwrap();
    drop(clone);
    drop(p);
    assert_eq!(end_offsets(&broker, "t"), [1]);
}

/// `send_async` racing `close` on other threads: every `Delivery` is completed (stored, or
/// `Closed`) by the time `close` has returned and the senders have stopped; none is left
/// pending forever.
#[test]
fn send_async_racing_close_never_leaves_a_delivery_pending() {
    for round in 0..40 {
        let broker = Broker::temporary().unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
        let p = broker.producer(flush_only());
        let barrier = Arc::new(Barrier::new(3));
        let senders: Vec<_> = (0..2)
            .map(|t| {
                let p = p.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let mut out = Vec::new();
                    for i in 0..300 {
                        out.push(p.send_async(ProducerRecord::new("t").partition(t).value(format!("{i}"))));
                    }
                    out
                })
            })
            .collect();
        barrier.wait();
        thread::yield_now();
        p.close().ok();
        let deliveries: Vec<Delivery> = senders.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let mut stored = 0;
        for (i, d) in deliveries.iter().enumerate() {
            match d.try_result() {
                Some(Ok(_)) => stored += 1,
                Some(Err(Error::Closed { .. })) => {}
                Some(Err(e)) => panic!("round {round}, delivery {i}: {e:?}"),
                None => panic!("round {round}: delivery {i} is still pending after close returned"),
            }
        }
        assert_eq!(end_offsets(&broker, "t").iter().sum::<u64>(), stored);
    }
}

// ---------------------------------------------------------------------------------------
// 9. linger
// ---------------------------------------------------------------------------------------

#[test]
fn lingered_async_record_is_written_without_flush() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(
        ProducerConfig::default()
            .linger(Duration::from_millis(20))
            .batch_size(1 << 20),
    );
    let d = p.send_async(ProducerRecord::new("t").key("k").value("lingered"));
    let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.visible_end_offset() < 1 {
        assert!(Instant::now() < deadline, "the linger thread never wrote the batch");
        thread::sleep(Duration::from_millis(2));
    }
    let meta = d.wait().unwrap();
    assert_eq!((meta.partition, meta.offset), (0, 0));
    assert_eq!(text(&read_all(&log)[0].value), "lingered");
    // A second batch after the first was written lingers and is written too.
    let d = p.send_async(ProducerRecord::new("t").value("second"));
    assert_eq!(d.wait().unwrap().offset, 1);
    assert_eq!(p.metrics().batches, 2);
}

// ---------------------------------------------------------------------------------------
// 10. headers and timestamps
// ---------------------------------------------------------------------------------------

#[test]
fn headers_and_create_time_timestamps_are_stored_as_sent() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());

    let explicit = p
        .send(
            ProducerRecord::new("t")
                .key("k")
                .value("v")
                .header("trace", "abc")
                .header("trace", "def")
                .header("empty", Bytes::new())
                .timestamp(1_234_567),
        )
        .unwrap();
    assert_eq!(explicit.timestamp, 1_234_567);

    let before = now_ms();
    let stamped = p.send(ProducerRecord::new("t").value("now")).unwrap();
    let d1 = p.send_async(ProducerRecord::new("t").value("async-now"));
    let d2 = p.send_async(ProducerRecord::new("t").value("async-explicit").timestamp(42));
    let d3 = p.send_async(ProducerRecord::new("t").value("async-now-2").header("h", "1"));
    p.flush().unwrap();
    let after = now_ms();
    let (m1, m2, m3) = (d1.wait().unwrap(), d2.wait().unwrap(), d3.wait().unwrap());
    for m in [&stamped, &m1, &m3] {
        assert!(
            before <= m.timestamp && m.timestamp <= after,
            "{m:?} not in [{before}, {after}]"
        );
    }
    assert_eq!(m2.timestamp, 42);

    let records = records_of(&broker, "t", 0);
    assert_eq!(records.len(), 5);
    let r = &records[0];
    assert_eq!(r.timestamp, 1_234_567);
    let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|h| (h.name.as_str(), h.value.as_ref())).collect();
    assert_eq!(headers, [("trace", &b"abc"[..]), ("trace", b"def"), ("empty", b"")]);
    assert_eq!(records[1].timestamp, stamped.timestamp);
    assert!(records[1].headers.is_empty());
    for (r, m) in records[2..].iter().zip([&m1, &m2, &m3]) {
        assert_eq!(r.offset, m.offset);
        assert_eq!(r.timestamp, m.timestamp);
    }
    assert_eq!(records[4].headers.len(), 1);
    assert_eq!(
        (
            records[4].headers[0].name.as_str(),
            records[4].headers[0].value.as_ref()
        ),
        ("h", &b"1"[..])
    );
    // Tombstones (no value) and empty values are distinct.
    let tomb = p.send(ProducerRecord::new("t").key("gone")).unwrap();
    let empty = p
        .send(ProducerRecord::new("t").key("empty").value(Bytes::new()))
        .unwrap();
    assert_eq!(stored_at(&broker, &tomb).value, None);
    assert_eq!(stored_at(&broker, &empty).value, Some(Bytes::new()));
}

#[test]
fn log_append_time_topic_overwrites_timestamps_and_metadata_reports_them() {
    let broker = Broker::temporary().unwrap();
    broker
        .create_topic(
            "lat",
            TopicConfig::with_partitions(2).timestamp_type(TimestampType::LogAppendTime),
        )
        .unwrap();
    let p = broker.producer(flush_only());
    let before = now_ms();
    let blocking = p
        .send(ProducerRecord::new("lat").partition(0).value("b").timestamp(1_000))
        .unwrap();
    let deliveries: Vec<Delivery> = (0..5)
        .map(|i| {
            p.send_async(
                ProducerRecord::new("lat")
                    .partition(1)
                    .value(format!("{i}"))
                    .timestamp(i),
            )
        })
        .collect();
    p.flush().unwrap();
    let batch = p
        .send_batch(&[
            ProducerRecord::new("lat").partition(0).value("x").timestamp(7),
            ProducerRecord::new("lat").partition(1).value("y"),
        ])
        .unwrap();
    let after = now_ms();
    let mut metas = vec![blocking];
    metas.extend(deliveries.into_iter().map(|d| d.wait().unwrap()));
    metas.extend(batch);
    for m in &metas {
        assert!(
            before <= m.timestamp && m.timestamp <= after,
            "{m:?} not in [{before}, {after}]"
        );
        assert_eq!(stored_at(&broker, m).timestamp, m.timestamp, "{m:?}");
    }
    for partition in 0..2 {
        let log = broker.partition_log(&TopicPartition::new("lat", partition)).unwrap();
        for b in log.read(0, 1 << 20).unwrap() {
            assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
            for r in b.records() {
                assert_eq!(r.unwrap().timestamp, b.max_timestamp());
            }
        }
    }
}

/// A record sent without a timestamp is stamped when it is sent, as Kafka's producer stamps
/// it in `send()` and `ProducerRecord::timestamp` promises ("the send time"), not when its
/// batch is written: a record that lingers (here until a flush 300 ms later) keeps the time
/// of its `send_async` or `send_with_callback`. It used to get the batch's append time.
#[test]
fn an_async_record_without_a_timestamp_is_stamped_when_sent_not_when_its_batch_is_written() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());
    let before = now_ms();
    let d = p.send_async(ProducerRecord::new("t").value("handle"));
    let (tx, rx) = std::sync::mpsc::channel();
    p.send_with_callback(ProducerRecord::new("t").value("callback"), move |m| {
        tx.send(m).unwrap();
    });
    let sent = now_ms();
    thread::sleep(Duration::from_millis(300));
    p.flush().unwrap();
    let metas = [d.wait().unwrap(), rx.recv().unwrap().unwrap()];
    for m in &metas {
        assert!(
            before <= m.timestamp && m.timestamp <= sent,
            "{m:?} not in [{before}, {sent}]"
        );
        assert_eq!(stored_at(&broker, m).timestamp, m.timestamp, "{m:?}");
    }
}

/// As Kafka's `ProducerRecord`, a negative timestamp is refused, on every path and whatever
/// the topic's timestamp type, with nothing written; 0 (the epoch) is a timestamp like any.
#[test]
fn a_negative_timestamp_is_refused_on_every_path_and_nothing_is_written() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("create", TopicConfig::with_partitions(1)).unwrap();
    broker
        .create_topic(
            "append",
            TopicConfig::with_partitions(1).timestamp_type(TimestampType::LogAppendTime),
        )
        .unwrap();
    let p = broker.producer(flush_only());
    let refused = |result: Result<RecordMetadata, Error>| match result {
        Err(Error::InvalidTimestamp { timestamp: -5 }) => {}
        other => panic!("expected InvalidTimestamp {{ timestamp: -5 }}, got {other:?}"),
    };
    for topic in ["create", "append"] {
        let bad = || ProducerRecord::new(topic).value("bad").timestamp(-5);
        refused(p.send(bad()));
        // send_async: refused alone; the records queued around it are stored.
        let before = p.send_async(ProducerRecord::new(topic).value("before"));
        let negative = p.send_async(bad());
        let after = p.send_async(ProducerRecord::new(topic).value("after"));
        p.flush().unwrap();
        refused(negative.wait());
        assert_eq!(before.wait().unwrap().offset, 0, "{topic}");
        assert_eq!(after.wait().unwrap().offset, 1, "{topic}");
        // send_batch: the whole call is refused before anything is written.
        match p.send_batch(&[ProducerRecord::new(topic).value("ok"), bad()]) {
            Err(Error::InvalidTimestamp { timestamp: -5 }) => {}
            other => panic!("{other:?}"),
        }
        // The partition log itself refuses it too.
        let log = broker.partition_log(&TopicPartition::new(topic, 0)).unwrap();
        let records = [
            brooklet::Record::new().value("ok"),
            brooklet::Record::new().value("bad").timestamp(-1),
        ];
        match log.append(&records, Durability::Written) {
            Err(Error::InvalidTimestamp { timestamp: -1 }) => {}
            other => panic!("{other:?}"),
        }
        let values: Vec<String> = records_of(&broker, topic, 0).iter().map(|r| text(&r.value)).collect();
        assert_eq!(values, ["before", "after"], "{topic}");
        // The epoch itself is a timestamp like any other.
        let epoch = p.send(ProducerRecord::new(topic).value("epoch").timestamp(0)).unwrap();
        assert_eq!(epoch.offset, 2, "{topic}");
        if topic == "create" {
            assert_eq!(stored_at(&broker, &epoch).timestamp, 0);
        }
    }
    // Per topic: send, send_async, and send_batch's two records (errors count records).
    assert_eq!(p.metrics().errors, 8);
    assert_eq!(p.metrics().records_sent, 6);
}

// ---------------------------------------------------------------------------------------
// 11. typed values
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u32,
    user: String,
    amount: f64,
    items: Vec<String>,
    note: Option<String>,
}

fn orders() -> Vec<Order> {
    (0..20)
        .map(|i| Order {
            id: i,
            user: format!("user-{}", i % 4),
            amount: f64::from(i) * 1.25,
            items: (0..i % 3).map(|j| format!("item-{j}")).collect(),
            note: (i % 2 == 0).then(|| "gift".to_string()),
        })
        .collect()
}

fn typed_round_trip<C>(codec: C, topic: &str)
where
    C: Codec<String> + Codec<Order> + Copy,
{
    let broker = Broker::temporary().unwrap();
    broker.create_topic(topic, TopicConfig::with_partitions(3)).unwrap();
    let typed: TypedProducer<String, Order, C, C> = TypedProducer::new(broker.producer(flush_only()), codec, codec);
    let mut metas = Vec::new();
    for (i, order) in orders().iter().enumerate() {
        if i % 2 == 0 {
            metas.push(typed.send(topic, Some(&order.user), order).unwrap());
        } else {
            let d = typed.send_async(topic, Some(&order.user), order).unwrap();
            typed.producer().flush().unwrap();
            metas.push(d.wait().unwrap());
        }
    }
    let keyless = typed.send(topic, None, &orders()[0]).unwrap();
    for (order, meta) in orders().iter().zip(&metas) {
        let key_bytes = Encoder::<String>::encode(&codec, &order.user).unwrap();
        assert_eq!(meta.partition, partition_for_key(&key_bytes, 3));
        let r = stored_at(&broker, meta);
        let key = Decoder::<String>::decode(&codec, r.key.as_deref().unwrap()).unwrap();
        let value = Decoder::<Order>::decode(&codec, r.value.as_deref().unwrap()).unwrap();
        assert_eq!(&key, &order.user);
        assert_eq!(&value, order);
    }
    let r = stored_at(&broker, &keyless);
    assert_eq!(r.key, None);
    let value = Decoder::<Order>::decode(&codec, r.value.as_deref().unwrap()).unwrap();
    assert_eq!(value, orders()[0]);
    assert_eq!(typed.producer().metrics().records_sent, 21);
}

#[test]
fn typed_producer_round_trips_with_json() {
    typed_round_trip(Json, "json-orders");
    // JSON on the wire, readable by any consumer.
    let bytes = Encoder::<Order>::encode(&Json, &orders()[1]).unwrap();
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        r#"{"id":1,"user":"user-1","amount":1.25,"items":["item-0"],"note":null}"#
    );
}

#[test]
fn typed_producer_round_trips_with_bincode() {
    typed_round_trip(Bincode, "bincode-orders");
}

#[test]
fn typed_producer_sends_tombstones_batches_callbacks_and_records_with_headers() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(3)).unwrap();
    let typed: TypedProducer<String, Order> =
        TypedProducer::new(broker.producer(ProducerConfig::default()), Json, Json);
    let all = orders();
    let user = |i: usize| all[i].user.clone();
    let partition_of = |user: &str| partition_for_key(&Encoder::<String>::encode(&Json, &user.to_string()).unwrap(), 3);

    // `encode` leaves room for a partition, headers and a timestamp.
    let record = typed
        .encode("orders", Some(&user(1)), Some(&all[1]))
        .unwrap()
        .partition(2)
        .header("trace-id", "4bf92f35")
        .header("source", "api")
        .timestamp(1_700_000_000_123);
    let meta = typed.producer().send(record).unwrap();
    assert_eq!((meta.partition, meta.timestamp), (2, 1_700_000_000_123));
    let stored = stored_at(&broker, &meta);
    assert_eq!(stored.timestamp, 1_700_000_000_123);
    assert_eq!(
        stored
            .headers
            .iter()
            .map(|h| (h.name.as_str(), &h.value[..]))
            .collect::<Vec<_>>(),
        [("trace-id", &b"4bf92f35"[..]), ("source", &b"api"[..])]
    );
    assert_eq!(
        Decoder::<Order>::decode(&Json, stored.value.as_deref().unwrap()).unwrap(),
        all[1]
    );

    // A tombstone: the key, on its partition, and no value.
    let tomb = typed.send_tombstone("orders", &user(0)).unwrap();
    assert_eq!(tomb.partition, partition_of(&user(0)));
    let stored = stored_at(&broker, &tomb);
    assert_eq!((text(&stored.key), stored.value), (format!("\"{}\"", user(0)), None));
    // A typed consumer reads it as the key with no value (not as a poison record).
    let tp = TopicPartition::new("orders", tomb.partition);
    let mut consumer: TypedConsumer<String, Order> = TypedConsumer::new(
        broker.consumer(ConsumerConfig::group("typed-tombstones")).unwrap(),
        Json,
        Json,
    );
    consumer.consumer_mut().assign(std::slice::from_ref(&tp)).unwrap();
    consumer.consumer_mut().seek(&tp, tomb.offset).unwrap();
    let polled = consumer.poll(Duration::from_secs(10)).unwrap();
    let first = polled.first().unwrap().as_ref().unwrap();
    assert_eq!(
        (first.key.as_deref(), first.value.as_ref(), first.raw.offset()),
        (Some(&*user(0)), None, tomb.offset)
    );
    let keyless_tombstone = typed.encode("orders", None, None).unwrap();
    assert_eq!(
        (
            keyless_tombstone.record().key_bytes(),
            keyless_tombstone.record().value_bytes()
        ),
        (None, None)
    );

    // A batch: every record on its key's partition, in the order given per partition.
    let before = end_offsets(&broker, "orders");
    let keys: Vec<String> = all.iter().map(|o| o.user.clone()).collect();
    let metas = typed
        .send_batch("orders", keys.iter().zip(&all).map(|(k, o)| (Some(k), o)))
        .unwrap();
    assert_eq!(metas.len(), all.len());
    let mut next = before.clone();
    for (i, meta) in metas.iter().enumerate() {
        assert_eq!(meta.partition, partition_of(&all[i].user), "record {i}");
        let p = meta.partition as usize;
        assert_eq!(meta.offset, next[p], "record {i}");
        next[p] += 1;
        let value = stored_at(&broker, &meta).value.unwrap();
        assert_eq!(Decoder::<Order>::decode(&Json, &value).unwrap(), all[i]);
    }
    assert_eq!(end_offsets(&broker, "orders"), next);

    // A callback gets the record's metadata.
    let (tx, rx) = std::sync::mpsc::channel();
    typed
        .send_with_callback("orders", Some(&user(3)), &all[3], move |r| tx.send(r).unwrap())
        .unwrap();
    typed.producer().flush().unwrap();
    let called = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(called.partition, partition_of(&user(3)));
    assert_eq!(called.offset, next[called.partition as usize]);
    assert_eq!(
        Decoder::<Order>::decode(&Json, stored_at(&broker, &called).value.as_deref().unwrap()).unwrap(),
        all[3]
    );
}

#[test]
fn typed_producer_sends_nothing_of_a_batch_or_callback_that_does_not_encode() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    // JSON cannot encode a map with non-string keys.
    let typed: TypedProducer<String, BTreeMap<(u8, u8), u8>> =
        TypedProducer::new(broker.producer(ProducerConfig::default()), Json, Json);
    let good = BTreeMap::new();
    let bad = BTreeMap::from([((1, 2), 3)]);
    let key = "k".to_string();
    let batch = [(Some(&key), &good), (None, &good), (Some(&key), &bad), (None, &good)];
    match typed.send_batch("t", batch) {
        Err(Error::Serialization { reason }) => assert!(reason.contains("JSON"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let called = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&called);
    assert!(matches!(
        typed.send_with_callback("t", None, &bad, move |_| *flag.lock().unwrap() = true),
        Err(Error::Serialization { .. })
    ));
    typed.producer().flush().unwrap();
    assert!(
        !*called.lock().unwrap(),
        "the callback of a record that did not encode ran"
    );
    assert_eq!(end_offsets(&broker, "t"), [0, 0]);
    let m = typed.producer().metrics();
    assert_eq!((m.records_sent, m.errors), (0, 0));
}

#[test]
fn codecs_report_bad_bytes_as_serialization_errors() {
    let good_json = Encoder::<Order>::encode(&Json, &orders()[3]).unwrap();
    let good_bincode = Encoder::<Order>::encode(&Bincode, &orders()[3]).unwrap();
    let bad: Vec<(&str, &dyn Codec<Order>, Vec<u8>)> = vec![
        ("json garbage", &Json, b"\xff\xfe not json".to_vec()),
        ("json wrong shape", &Json, br#"{"id":"one"}"#.to_vec()),
        ("json truncated", &Json, good_json[..good_json.len() - 3].to_vec()),
        ("json empty", &Json, Vec::new()),
        (
            "bincode truncated",
            &Bincode,
            good_bincode[..good_bincode.len() - 2].to_vec(),
        ),
        ("bincode trailing", &Bincode, [good_bincode.as_ref(), b"xx"].concat()),
        ("bincode empty", &Bincode, Vec::new()),
    ];
    for (what, codec, bytes) in bad {
        match codec.decode(&bytes) {
            Err(Error::Serialization { reason }) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // A value JSON cannot encode (a map with non-string keys) fails before anything is sent.
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let typed: TypedProducer<String, BTreeMap<(u8, u8), u8>> =
        TypedProducer::new(broker.producer(ProducerConfig::default()), Json, Json);
    let value = BTreeMap::from([((1, 2), 3)]);
    match typed.send("t", None, &value) {
        Err(Error::Serialization { reason }) => assert!(reason.contains("JSON"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        typed.send_async("t", None, &value),
        Err(Error::Serialization { .. })
    ));
    assert_eq!(end_offsets(&broker, "t"), [0]);
}

// ---------------------------------------------------------------------------------------
// 12. metrics
// ---------------------------------------------------------------------------------------

#[test]
fn metrics_count_records_batches_bytes_and_errors() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let p = broker.producer(flush_only());
    let m = p.metrics();
    assert_eq!(
        (m.records_sent, m.batches, m.bytes_sent, m.errors, m.fsyncs),
        (0, 0, 0, 0, 0)
    );
    for i in 0..10 {
        p.send(ProducerRecord::new("t").partition(i % 2).value(format!("{i}")))
            .unwrap();
    }
    let ds: Vec<Delivery> = (0..30)
        .map(|i| p.send_async(ProducerRecord::new("t").partition(i % 2).value(format!("a{i}"))))
        .collect();
    p.flush().unwrap();
    for d in ds {
        d.wait().unwrap();
    }
    p.send_batch(
        &(0..6)
            .map(|i| ProducerRecord::new("t").partition(i % 2).value("b"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let m = p.metrics();
    assert_eq!(m.records_sent, 46);
    assert_eq!(m.batches, 10 + 2 + 2);
    let stored: u64 = (0..2)
        .map(|partition| {
            let log = broker.partition_log(&TopicPartition::new("t", partition)).unwrap();
            log.read(0, 1 << 24)
                .unwrap()
                .iter()
                .map(|b| b.size_bytes() as u64)
                .sum::<u64>()
        })
        .sum();
    assert!(m.bytes_sent > 0);
    assert_eq!(m.bytes_sent, stored);
    assert_eq!(m.errors, 0);
    assert_eq!(m.fsyncs, 0, "Written sends never fsync");

    assert!(p.send(ProducerRecord::new("nope").value("x")).is_err());
    assert!(p.send(ProducerRecord::new("t").partition(7).value("x")).is_err());
    assert!(p.send_async(ProducerRecord::new("nope").value("x")).wait().is_err());
    let m2 = p.metrics();
    assert_eq!(m2.errors, 3);
    assert_eq!(
        (m2.records_sent, m2.batches, m2.bytes_sent),
        (m.records_sent, m.batches, m.bytes_sent)
    );
}

#[test]
fn synced_sends_fsync_and_concurrent_ones_share_fsyncs() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let single = broker.producer(ProducerConfig::default().durability(Durability::Synced));
    for i in 0..5 {
        single.send(ProducerRecord::new("t").value(format!("{i}"))).unwrap();
    }
    let m = single.metrics();
    assert_eq!(m.records_sent, 5);
    assert!(m.fsyncs > 0);
    assert!(m.fsyncs <= 5);
    drop(single);
    let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    assert_eq!(log.synced_end_offset(), 5);

    const THREADS: usize = 8;
    const PER_THREAD: usize = 200;
    let p = broker.producer(ProducerConfig::default().durability(Durability::Synced));
    let rounds_before = log.sync_stats().syncs;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = p.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    p.send(ProducerRecord::new("t").value(format!("{t}-{i}"))).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let m = p.metrics();
    let sent = (THREADS * PER_THREAD) as u64;
    assert_eq!(m.records_sent, sent);
    assert!(m.fsyncs > 0);
    assert!(m.fsyncs < sent, "group commit: {} fsyncs for {sent} sends", m.fsyncs);
    // The producer was the only writer: it cannot have run more fsync rounds than the log did.
    let rounds = log.sync_stats().syncs - rounds_before;
    assert!(
        m.fsyncs <= rounds,
        "producer counted {} fsyncs, the log ran {rounds}",
        m.fsyncs
    );
    assert_eq!(log.synced_end_offset(), 5 + sent);
}

// ---------------------------------------------------------------------------------------
// 13. power loss
// ---------------------------------------------------------------------------------------

/// One power-loss run: Synced sends from several threads (blocking and async), then Written
/// ones, a simulated power loss, a reopen with the real file system. Every Synced
/// acknowledgement must be there; everything else that survived must be what was
/// acknowledged at that offset.
fn power_loss_run(mode: PowerLoss) {
    let dir = temp_dir();
    let fs = FaultFs::new();
    let broker = Broker::builder().vfs(Arc::new(fs.clone())).open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(3)).unwrap();
    let synced = broker.producer(
        ProducerConfig::default()
            .durability(Durability::Synced)
            .linger(Duration::from_millis(1)),
    );
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let p = synced.clone();
            thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..25 {
                    let key = format!("t{t}-k{}", i % 5);
                    let value = format!("synced-{t}-{i}-{}", "s".repeat(i * 7));
                    let record = ProducerRecord::new("t").key(key.clone()).value(value.clone());
                    let meta = if i % 3 == 0 {
                        p.send_async(record).wait().expect("synced async send")
                    } else {
                        p.send(record).expect("synced send")
                    };
                    acked.push((meta, key, value));
                }
                acked
            })
        })
        .collect();
    let synced_acks: Vec<(RecordMetadata, String, String)> =
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let metas = synced
        .send_batch(
            &(0..6)
                .map(|i| {
                    ProducerRecord::new("t")
                        .key(format!("batch-{i}"))
                        .value(format!("batch-{i}"))
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .to_vec();
    let mut synced_acks = synced_acks;
    for (i, m) in metas.into_iter().enumerate() {
        synced_acks.push((m, format!("batch-{i}"), format!("batch-{i}")));
    }
    let written = broker.producer(ProducerConfig::default());
    let mut written_acks = Vec::new();
    for i in 0..30 {
        let key = format!("w-k{}", i % 7);
        let value = format!("written-{i}-{}", "w".repeat(i * 5));
        let meta = written
            .send(ProducerRecord::new("t").key(key.clone()).value(value.clone()))
            .unwrap();
        written_acks.push((meta, key, value));
    }

    fs.power_loss(mode);
    drop(written);
    drop(synced);
    drop(broker);

    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.list_topics(), ["t"], "{mode:?}");
    let mut survived: HashMap<(u32, u64), LogRecord> = HashMap::new();
    for partition in 0..3 {
        let records = records_of(&broker, "t", partition);
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..records.len() as u64).collect::<Vec<_>>(), "{mode:?}");
        for r in records {
            survived.insert((partition, r.offset), r);
        }
    }
    for (meta, key, value) in &synced_acks {
        let r = survived
            .get(&(meta.partition, meta.offset))
            .unwrap_or_else(|| panic!("{mode:?}: synced {meta:?} lost"));
        assert_eq!(
            (text(&r.key), text(&r.value)),
            (key.clone(), value.clone()),
            "{mode:?} {meta:?}"
        );
        assert_eq!(r.timestamp, meta.timestamp);
    }
    let all: HashMap<(u32, u64), (String, String)> = synced_acks
        .iter()
        .chain(&written_acks)
        .map(|(m, k, v)| ((m.partition, m.offset), (k.clone(), v.clone())))
        .collect();
    assert_eq!(all.len(), synced_acks.len() + written_acks.len());
    for (pos, r) in &survived {
        let want = all
            .get(pos)
            .unwrap_or_else(|| panic!("{mode:?}: {pos:?} was never acknowledged"));
        assert_eq!(&(text(&r.key), text(&r.value)), want, "{mode:?} {pos:?}");
    }
    if mode == PowerLoss::DropUnsynced {
        // Nothing unsynced survives: exactly the synced records.
        assert_eq!(survived.len(), synced_acks.len());
    }
    // The reopened topic takes new records after what survived.
    let p = broker.producer(ProducerConfig::default());
    let meta = p.send(ProducerRecord::new("t").partition(0).value("after")).unwrap();
    assert_eq!(meta.offset, survived.keys().filter(|(p, _)| *p == 0).count() as u64);
}

#[test]
fn synced_records_survive_power_loss_dropping_unsynced_writes() {
    power_loss_run(PowerLoss::DropUnsynced);
}

#[test]
fn synced_records_survive_power_loss_with_torn_writes() {
    for seed in [1, 7, 42, 1234] {
        power_loss_run(PowerLoss::Torn { seed });
    }
}

/// A broker on a [`GateFs`] with the one-partition topic "t", and a `Synced` producer whose
/// async batches are written at about 1 KiB (eight of [`gated_value`]) and never by the
/// linger timer: the gate, the file system under it, the directory, broker and producer.
fn gated_synced_producer() -> (Arc<Gate>, FaultFs, tempfile::TempDir, Broker, Producer) {
    let dir = temp_dir();
    let gate = Arc::new(Gate::default());
    let disk = FaultFs::new();
    let fs = GateFs {
        inner: disk.clone(),
        gate: Arc::clone(&gate),
    };
    let broker = Broker::builder().vfs(Arc::new(fs)).open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(
        ProducerConfig::default()
            .durability(Durability::Synced)
            .batch_size(1024)
            .linger(Duration::from_secs(3600)),
    );
    (gate, disk, dir, broker, p)
}

/// Record `i`'s value for [`gated_synced_producer`]: eight fill a batch.
fn gated_value(i: usize) -> String {
    format!("{i:03}-{}", "v".repeat(90))
}

/// Records `0..n` ([`gated_value`]) sent with `send_async` on another thread, which must
/// return while an fsync is held at the armed `gate`: their deliveries. Fails (after
/// releasing the gate) if the sends wait for that fsync.
fn send_async_while_an_fsync_is_held(gate: &Gate, p: &Producer, n: usize) -> Vec<Delivery> {
    gate.arm();
    let (tx, rx) = std::sync::mpsc::channel();
    let sender = {
        let p = p.clone();
        thread::spawn(move || {
            let deliveries: Vec<Delivery> = (0..n)
                .map(|i| p.send_async(ProducerRecord::new("t").value(gated_value(i))))
                .collect();
            tx.send(deliveries).unwrap();
        })
    };
    gate.wait_entered();
    let Ok(deliveries) = rx.recv_timeout(Duration::from_secs(60)) else {
        gate.release();
        sender.join().unwrap();
        panic!("send_async waited for an fsync held at the disk");
    };
    sender.join().unwrap();
    deliveries
}

/// A `send_async` that fills a `Synced` batch writes it and returns: the fsync runs on the
/// producer's linger thread, so the caller goes on filling and writing the next batches
/// while it runs, and no record is reported before an fsync that covers it has finished.
/// The call that filled a batch used to fsync it itself, holding the partition's lock, so
/// with the disk held here it never returned.
#[test]
fn synced_send_async_returns_while_its_batch_is_fsynced_and_reports_only_after() {
    let (gate, disk, dir, broker, p) = gated_synced_producer();
    let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    let deliveries = send_async_while_an_fsync_is_held(&gate, &p, 100);
    // With the first batch's fsync held: twelve batches of eight were written, four records
    // wait for a thirteenth, and nothing is reported.
    assert_eq!(log.log_end_offset(), 96);
    assert_eq!(log.synced_end_offset(), 0);
    let early: Vec<usize> = (0..100).filter(|&i| deliveries[i].try_result().is_some()).collect();
    assert!(early.is_empty(), "reported before synced: {early:?}");

    gate.release();
    p.flush().unwrap();
    assert_eq!(log.synced_end_offset(), 100);
    let offsets: Vec<u64> = deliveries.into_iter().map(|d| d.wait().unwrap().offset).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<u64>>());
    let m = p.metrics();
    assert_eq!((m.records_sent, m.batches, m.errors), (100, 13, 0));
    // The fsyncs were shared: the batches written while one ran wait for one more.
    assert!(m.fsyncs >= 2 && m.fsyncs < 13, "{} fsyncs for 13 batches", m.fsyncs);

    // Reported stored means durable: all of it outlives a power loss.
    disk.power_loss(PowerLoss::DropUnsynced);
    drop(p);
    drop(log);
    drop(broker);
    let broker = Broker::open(dir.path()).unwrap();
    let values: Vec<String> = records_of(&broker, "t", 0).iter().map(|r| text(&r.value)).collect();
    assert_eq!(values, (0..100).map(gated_value).collect::<Vec<_>>());
}

/// A `Synced` async batch whose fsync fails (on the linger thread, after the `send_async`
/// that wrote it returned) fails every record of it: their deliveries get the error, the
/// counters count them, and `flush` reports it; the log refuses writes until reopened.
#[test]
fn synced_send_async_reports_a_failed_fsync_to_every_record_of_the_batch() {
    use brooklet::io::{EIO, Fault, FaultOp};
    let (gate, disk, _dir, _broker, p) = gated_synced_producer();
    // One batch, written; its fsync is at the gate and will fail.
    let deliveries = send_async_while_an_fsync_is_held(&gate, &p, 8);
    disk.inject(Fault {
        op: FaultOp::Sync,
        nth: 1,
        errno: EIO,
        forever: false,
    });
    gate.release();
    for (i, d) in deliveries.into_iter().enumerate() {
        match d.wait() {
            Err(Error::Io { .. }) => {}
            other => panic!("record {i}: {other:?}"),
        }
    }
    let m = p.metrics();
    assert_eq!((m.records_sent, m.batches, m.errors), (8, 1, 8));
    let d = p.send_async(ProducerRecord::new("t").value("after"));
    match p.flush() {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("flush after a failed fsync: {other:?}"),
    }
    assert!(matches!(d.wait(), Err(Error::Poisoned { .. })));
}

/// A `Synced` async batch whose fsync fails, after a lowered `max_message_bytes` refused
/// one of its records: that record still reports why it was refused (`RecordTooLarge`),
/// the others the fsync's error. The fsync's error used to replace every outcome, so the
/// refused record reported an I/O error for a write it never had.
#[test]
fn a_failed_fsync_leaves_a_refused_record_its_own_error() {
    let values: Vec<String> = (0..5)
        .map(|i| {
            if i == 2 {
                "x".repeat(2_000)
            } else {
                format!("small-{i}")
            }
        })
        .collect();
    let f = flush_a_lowered_limit_batch_failing(&values, Durability::Synced, brooklet::io::FaultOp::Sync, 1);
    // The first error of the flush: the refusal, met when writing.
    assert!(
        matches!(f.flushed, Err(Error::RecordTooLarge { max: 1024, .. })),
        "{:?}",
        f.flushed
    );
    for (i, outcome) in f.outcomes.into_iter().enumerate() {
        match (i, outcome) {
            (2, Err(Error::RecordTooLarge { max: 1024, .. })) => {}
            (0 | 1 | 3 | 4, Err(Error::Io { .. })) => {}
            (i, other) => panic!("record {i}: {other:?}"),
        }
    }
    let m = f.producer.metrics();
    assert_eq!(m.errors, 5, "four failed by the fsync, one refused");
}

// ---------------------------------------------------------------------------------------
// 14. send_batch
// ---------------------------------------------------------------------------------------

#[test]
fn send_batch_returns_metadata_in_input_order_with_one_write_per_partition() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(4)).unwrap();
    let p = broker.producer(ProducerConfig::default());
    // Offsets already used in partition 1, so offsets differ per partition.
    for _ in 0..3 {
        p.send(ProducerRecord::new("t").partition(1).value("pre")).unwrap();
    }
    let keys: Vec<String> = (0..40).map(|i| format!("key-{}", (i * 7) % 13)).collect();
    let records: Vec<ProducerRecord> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ProducerRecord::new("t").key(k.clone()).value(format!("v{i}")))
        .collect();
    let partitions: BTreeSet<u32> = keys.iter().map(|k| partition_for_key(k.as_bytes(), 4)).collect();
    let batches_before = p.metrics().batches;
    let metas = p.send_batch(&records).unwrap().to_vec();
    assert_eq!(p.metrics().batches - batches_before, partitions.len() as u64);
    assert_eq!(metas.len(), keys.len());
    let mut next = [0u64, 3, 0, 0];
    for (i, (m, k)) in metas.iter().zip(&keys).enumerate() {
        let partition = partition_for_key(k.as_bytes(), 4);
        assert_eq!(&*m.topic, "t");
        assert_eq!(m.partition, partition, "record {i}");
        assert_eq!(m.offset, next[partition as usize], "record {i}");
        next[partition as usize] += 1;
        let r = stored_at(&broker, m);
        assert_eq!((text(&r.key), text(&r.value)), (k.clone(), format!("v{i}")));
        assert_eq!(r.timestamp, m.timestamp);
    }
    assert_eq!(end_offsets(&broker, "t"), next);
    // Each partition got exactly one new batch.
    for &partition in &partitions {
        let log = broker.partition_log(&TopicPartition::new("t", partition)).unwrap();
        let from = if partition == 1 { 3 } else { 0 };
        let batches: Vec<_> = log
            .read(from, 1 << 24)
            .unwrap()
            .into_iter()
            .filter(|b| b.base_offset() >= from)
            .collect();
        assert_eq!(batches.len(), 1, "partition {partition}");
    }
    let none = p.send_batch(&[]).unwrap();
    assert!(none.is_empty());
    assert_eq!(none.to_vec(), Vec::<RecordMetadata>::new());
}

#[test]
fn send_batch_across_topics_writes_once_per_partition_and_refuses_atomically() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("a", TopicConfig::with_partitions(2)).unwrap();
    broker.create_topic("b", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default());
    // Topics interleaved: a, b, a, b, ...
    let records: Vec<ProducerRecord> = (0..12)
        .map(|i| {
            let topic = if i % 2 == 0 { "a" } else { "b" };
            ProducerRecord::new(topic)
                .partition(if topic == "a" { (i / 2) % 2 } else { 0 })
                .value(format!("{i}"))
        })
        .collect();
    let sent = p.send_batch(&records).unwrap();
    // The batch's own accessors agree with each other.
    assert_eq!(sent.len(), 12);
    assert!(!sent.is_empty());
    assert_eq!(sent.iter().len(), 12);
    assert_eq!(sent.get(12), None);
    let metas = sent.to_vec();
    assert_eq!((&sent).into_iter().collect::<Vec<_>>(), metas);
    assert_eq!((0..12).map(|i| sent.get(i).unwrap()).collect::<Vec<_>>(), metas);
    assert_eq!(sent.clone().into_iter().collect::<Vec<_>>(), metas);
    let got: Vec<(String, u32, u64)> = metas
        .iter()
        .map(|m| (m.topic.to_string(), m.partition, m.offset))
        .collect();
    let want: Vec<(String, u32, u64)> = (0..12u32)
        .map(|i| {
            if i % 2 == 0 {
                ("a".to_string(), (i / 2) % 2, u64::from(i / 4))
            } else {
                ("b".to_string(), 0, u64::from(i / 2))
            }
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(p.metrics().batches, 3, "one write per partition: a-0, a-1, b-0");

    // A record for an unknown topic at the end: nothing of the batch is written.
    let before_a = end_offsets(&broker, "a");
    let before_b = end_offsets(&broker, "b");
    match p.send_batch(&[
        ProducerRecord::new("a").partition(0).value("x"),
        ProducerRecord::new("b").value("y"),
        ProducerRecord::new("missing").value("z"),
    ]) {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "missing"),
        other => panic!("{other:?}"),
    }
    assert_eq!(end_offsets(&broker, "a"), before_a);
    assert_eq!(end_offsets(&broker, "b"), before_b);
}

// ---------------------------------------------------------------------------------------
// misc
// ---------------------------------------------------------------------------------------

#[test]
fn producer_on_a_reopened_broker_continues_the_offsets() {
    let dir = temp_dir();
    let open = |path: &Path| Broker::open(path).unwrap();
    {
        let broker = open(dir.path());
        broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
        let p = broker.producer(flush_only());
        for i in 0..5 {
            let _ = p.send_async(ProducerRecord::new("t").partition(i % 2).value(format!("{i}")));
        }
        // Dropping producer and broker writes what was queued.
    }
    let broker = open(dir.path());
    assert_eq!(end_offsets(&broker, "t"), [3, 2]);
    let p = broker.producer(ProducerConfig::default());
    assert_eq!(
        p.send(ProducerRecord::new("t").partition(1).value("x")).unwrap().offset,
        2
    );
}

/// Keyless records of one `send_batch` call stay together on one partition (sticky), and
/// the next call moves on, as Kafka's sticky partitioner does once a batch is sent.
#[test]
fn keyless_send_batch_calls_stick_per_call_and_spread_across_calls() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("k", TopicConfig::with_partitions(3)).unwrap();
    let p = broker.producer(ProducerConfig::default());
    let mut used = std::collections::BTreeSet::new();
    for call in 0..12 {
        let metas = p
            .send_batch(
                &(0..10)
                    .map(|i| ProducerRecord::new("k").value(format!("{call}-{i}")))
                    .collect::<Vec<_>>(),
            )
            .unwrap()
            .to_vec();
        let partitions: std::collections::BTreeSet<u32> = metas.iter().map(|m| m.partition).collect();
        assert_eq!(partitions.len(), 1, "call {call} was split: {partitions:?}");
        used.extend(partitions);
    }
    assert!(used.len() > 1, "every call went to {used:?}");
}

// ---------------------------------------------------------------------------------------
// 13. review: size limits inside a batch, completion order, flush, linger edge cases
// ---------------------------------------------------------------------------------------

/// A `send_batch` whose middle record alone exceeds the limit writes nothing: not the
/// records before it (which `send_batch` would otherwise report as failed while storing
/// them), nor those after it.
#[test]
fn send_batch_with_an_oversized_record_in_the_middle_writes_nothing() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "t", 2);
    let p = broker.producer(ProducerConfig::default());
    let batch = [
        ProducerRecord::new("t").partition(0).value("before"),
        ProducerRecord::new("t").partition(1).value("other partition"),
        ProducerRecord::new("t").partition(0).value(vec![7u8; 4096]),
        ProducerRecord::new("t").partition(0).value("after"),
    ];
    match p.send_batch(&batch) {
        Err(Error::RecordTooLarge { size, max }) => {
            assert_eq!(max, 2048);
            assert!(size > 4096, "{size}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        end_offsets(&broker, "t"),
        [0, 0],
        "nothing of the refused batch is written"
    );
    let m = p.metrics();
    assert_eq!((m.records_sent, m.batches, m.errors), (0, 0, 4));
    // The same records without the oversized one go through, from offset 0.
    let sent = p
        .send_batch(&[batch[0].clone(), batch[1].clone(), batch[3].clone()])
        .unwrap();
    assert_eq!(
        sent.iter().map(|m| (m.partition, m.offset)).collect::<Vec<_>>(),
        [(0, 0), (1, 0), (0, 1)]
    );
}

/// At the limit, `send_batch` refuses exactly the records that `send` refuses (its
/// up-front check agrees with the log's own), with the same size; the largest record that
/// fits is stored.
#[test]
fn send_batch_and_send_agree_on_which_records_are_too_large() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "t", 1);
    let p = broker.producer(ProducerConfig::default());
    let (mut accepted, mut refused) = (0, 0);
    for len in 1_900..2_100 {
        let big = ProducerRecord::new("t").key("k").value(vec![1u8; len]).header("h", "v");
        let small = ProducerRecord::new("t").value("small");
        let before = end_offsets(&broker, "t")[0];
        let alone = p.send(big.clone());
        let batched = p.send_batch(&[small, big]);
        match (alone, batched) {
            (Ok(_), Ok(sent)) => {
                assert_eq!(sent.len(), 2);
                assert_eq!(end_offsets(&broker, "t")[0], before + 3, "len {len}");
                accepted += 1;
            }
            (Err(Error::RecordTooLarge { size: a, .. }), Err(Error::RecordTooLarge { size: b, max })) => {
                assert_eq!((a, max), (b, 2048), "len {len}");
                assert_eq!(
                    end_offsets(&broker, "t")[0],
                    before,
                    "len {len}: part of a refused batch was written"
                );
                refused += 1;
            }
            other => panic!("len {len}: send and send_batch disagree: {other:?}"),
        }
    }
    assert!(accepted > 0 && refused > 0, "{accepted} accepted, {refused} refused");
    assert_eq!(accepted + refused, 200);
}

/// Every codec that compresses.
const COMPRESSED: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// `len` incompressible bytes (xorshift).
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// With compression, a record whose batch alone fits the limit uncompressed but not
/// compressed (incompressible bytes grow a little) is still found before anything of the
/// `send_batch` is written: the records of the other partition, before it, are not stored
/// while the call fails. Every codec; `send` refuses the same records.
#[test]
fn send_batch_with_compression_refuses_a_record_too_large_compressed_before_writing() {
    let noise = incompressible(2100);
    for codec in COMPRESSED {
        let broker = Broker::temporary().unwrap();
        small_topic(&broker, "t", 2);
        let p = broker.producer(ProducerConfig::default().compression(codec));
        let (mut accepted, mut refused) = (0, 0);
        for len in 1_900..2_048 {
            let big = ProducerRecord::new("t").partition(1).value(noise[..len].to_vec());
            let small = ProducerRecord::new("t").partition(0).value("small");
            let before = end_offsets(&broker, "t");
            let alone = p.send(big.clone());
            let batched = p.send_batch(&[small, big]);
            match (alone, batched) {
                (Ok(_), Ok(_)) => accepted += 1,
                (Err(Error::RecordTooLarge { .. }), Err(Error::RecordTooLarge { max, .. })) => {
                    assert_eq!(max, 2048);
                    assert_eq!(
                        end_offsets(&broker, "t"),
                        before,
                        "{codec:?}, len {len}: part of a refused batch was written"
                    );
                    refused += 1;
                }
                other => panic!("{codec:?}, len {len}: send and send_batch disagree: {other:?}"),
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{codec:?}: {accepted} accepted, {refused} refused"
        );
    }
}

/// How many threads named `brooklet-linger` have panicked in this test binary.
fn linger_thread_panics() -> usize {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Panics a test provokes on purpose say so; they are not counted.
            let on_purpose = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("on purpose"));
            if thread::current().name() == Some("brooklet-linger") && !on_purpose {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// Kafka accepts any `linger.ms` up to `Long.MAX_VALUE`; a linger too long to add to a
/// clock reading means "never by time": the linger thread must not panic on it.
#[test]
fn a_linger_of_duration_max_means_flush_only_and_panics_nothing() {
    let before = linger_thread_panics();
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::MAX));
    let d = p.send_async(ProducerRecord::new("t").value("v"));
    thread::sleep(Duration::from_millis(200));
    assert!(d.try_result().is_none(), "written without a flush");
    assert_eq!(linger_thread_panics(), before, "the linger thread panicked");
    p.flush().unwrap();
    assert_eq!(d.wait().unwrap().offset, 0);
    // A linger that is long but not Duration::MAX.
    let p = broker.producer(ProducerConfig::default().linger(Duration::from_secs(u64::MAX / 4)));
    let d = p.send_async(ProducerRecord::new("t").value("w"));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(linger_thread_panics(), before, "the linger thread panicked");
    drop(p);
    assert_eq!(d.wait().unwrap().offset, 1);
}

/// Kafka's `flush()` returns once every record sent before it has completed, callbacks
/// included. A batch the linger thread wrote and is still reporting is part of that.
#[test]
fn flush_waits_for_callbacks_of_batches_other_threads_are_completing() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::from_millis(1)));
    let (started_tx, started) = std::sync::mpsc::channel();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = Arc::clone(&finished);
    p.send_with_callback(ProducerRecord::new("t").value("slow"), move |r| {
        assert_eq!(r.unwrap().offset, 0);
        started_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(300));
        f.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // The linger thread wrote the batch and runs its callback.
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let later = p.send_async(ProducerRecord::new("t").value("later"));
    p.flush().unwrap();
    assert!(
        finished.load(std::sync::atomic::Ordering::SeqCst),
        "flush returned before the callback of a record sent before it had completed"
    );
    assert_eq!(later.try_result().map(|r| r.unwrap().offset), Some(1));
}

/// A callback of one producer may flush another (a dead-letter producer, say), and that
/// flush is a whole one, as in Kafka: it returns once every record sent to the other producer
/// before it has completed, a batch that producer's linger thread is still reporting
/// included. Only a flush of the producer whose callback runs (or of one whose batches this
/// thread is reporting further up) cannot wait. Any callback used to make every flush a
/// write without waiting, so the second producer's record was still pending after its flush.
#[test]
fn a_callback_of_one_producer_flushing_another_waits_for_its_records() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    broker.create_topic("dlq", TopicConfig::with_partitions(1)).unwrap();
    let main = broker.producer(flush_only());
    let dlq = broker.producer(ProducerConfig::default().linger(Duration::from_millis(1)));
    // The dead-letter producer's linger thread reports a batch slowly.
    let (started_tx, started) = std::sync::mpsc::channel();
    dlq.send_with_callback(ProducerRecord::new("dlq").value("slow"), move |r| {
        assert_eq!(r.unwrap().offset, 0);
        started_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(300));
    });
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let forward = dlq.clone();
    main.send_with_callback(ProducerRecord::new("t").value("failed-later"), move |_| {
        let d = forward.send_async(ProducerRecord::new("dlq").value("forwarded"));
        let flushed = forward.flush();
        tx.send((flushed, d.try_result())).unwrap();
    });
    main.flush().unwrap();
    let (flushed, forwarded) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    flushed.unwrap();
    match forwarded {
        Some(Ok(m)) => assert_eq!(m.offset, 1),
        other => panic!("the other producer's flush returned with its record at {other:?}"),
    }
}

/// As Kafka guarantees, callbacks of records sent to one partition run in the order the
/// records were sent, even when different threads write their batches.
#[test]
fn callbacks_of_one_partition_run_in_send_order_across_batches() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::from_millis(50)));
    let order: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (started_tx, started) = std::sync::mpsc::channel();
    let o = Arc::clone(&order);
    p.send_with_callback(ProducerRecord::new("t").value("0"), move |r| {
        started_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(200));
        o.lock().unwrap().push(r.unwrap().offset);
    });
    let o = Arc::clone(&order);
    p.send_with_callback(ProducerRecord::new("t").value("1"), move |r| {
        o.lock().unwrap().push(r.unwrap().offset);
    });
    // The linger thread runs the first callback; meanwhile this thread writes a later batch.
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let o = Arc::clone(&order);
    p.send_with_callback(ProducerRecord::new("t").value("2"), move |r| {
        o.lock().unwrap().push(r.unwrap().offset);
    });
    p.flush().unwrap();
    p.close().unwrap();
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
}

/// A callback may send (blocking or not), flush, and drop the last clone of its producer:
/// nothing deadlocks, every outcome is reported, and order per partition holds.
#[test]
fn callbacks_may_send_flush_and_drop_the_last_producer_clone() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::from_millis(1)));
    let (tx, rx) = std::sync::mpsc::channel::<(String, u64)>();
    let inner = p.clone();
    let tx2 = tx.clone();
    p.send_with_callback(ProducerRecord::new("t").value("outer"), move |r| {
        tx2.send(("outer".into(), r.unwrap().offset)).unwrap();
        let blocking = inner.send(ProducerRecord::new("t").value("blocking")).unwrap();
        tx2.send(("blocking".into(), blocking.offset)).unwrap();
        let tx3 = tx2.clone();
        inner.send_with_callback(ProducerRecord::new("t").value("nested"), move |r| {
            tx3.send(("nested".into(), r.unwrap().offset)).unwrap();
        });
        inner.flush().unwrap();
        // `inner` is dropped here: the last clone once the test has dropped its own.
    });
    drop(p);
    drop(tx);
    let got: Vec<(String, u64)> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("a callback never ran"))
        .collect();
    assert_eq!(got, [("outer".into(), 0), ("blocking".into(), 1), ("nested".into(), 2)]);
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_err());
    assert_eq!(end_offsets(&broker, "t"), [3]);
    assert_eq!(linger_thread_panics(), 0, "the linger thread panicked");
}

/// Open file descriptors of this process whose target lies under `dir`.
#[cfg(target_os = "linux")]
fn open_files_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with(&dir))
        .collect()
}

/// Deleting a topic frees its disk space even while a long-lived producer that sent to it
/// is still open: the producer lets go of the deleted partitions' files once it learns the
/// topic is gone, rather than holding the unlinked segments open for its whole life.
#[cfg(target_os = "linux")]
#[test]
fn a_producer_lets_go_of_a_deleted_topics_files() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("gone", TopicConfig::with_partitions(2)).unwrap();
    let p = broker.producer(ProducerConfig::default());
    for partition in 0..2 {
        p.send(ProducerRecord::new("gone").partition(partition).value("x"))
            .unwrap();
    }
    let topic_dir = broker.dir().join("gone-");
    assert!(!open_files_under(&topic_dir).is_empty());
    broker.delete_topic("gone").unwrap();
    assert!(matches!(
        p.send(ProducerRecord::new("gone").partition(0).value("y")),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        p.send_async(ProducerRecord::new("gone").value("z")).wait(),
        Err(Error::UnknownTopic { .. })
    ));
    p.flush().unwrap();
    // The linger thread may hold a queue for a moment while it scans them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !open_files_under(&topic_dir).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(open_files_under(&topic_dir), Vec::<String>::new());
}

/// A record sent while the linger thread is between scanning the queues and going to sleep
/// is still written after `linger`, not after the thread's 100 ms idle poll: a tight loop of
/// `send_async` + `wait` with no linger (each send lands right after the linger thread
/// reported the previous one, as it goes back to sleep) runs at write speed.
#[test]
fn a_record_sent_as_the_linger_thread_goes_to_sleep_is_not_delayed() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::ZERO).batch_size(1 << 20));
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..200u64 {
        let sent = Instant::now();
        assert_eq!(
            p.send_async(ProducerRecord::new("t").value("v")).wait().unwrap().offset,
            i
        );
        slowest = slowest.max(sent.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(80),
        "a record waited {slowest:?} with no linger (200 records in {:?})",
        started.elapsed()
    );
}

/// With `Durability::Buffered` (≈ acks=0), `flush` (and so close and drop) still makes the
/// records it wrote readable, as a Kafka producer's flush hands even acks=0 records to the
/// broker: a consumer polling after `flush` sees them, without waiting for some later write.
#[test]
fn a_buffered_producers_flush_makes_its_records_readable() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let log = |p: u32| broker.partition_log(&TopicPartition::new("t", p)).unwrap();
    let p = broker.producer(flush_only().durability(Durability::Buffered));
    assert_eq!(
        p.send(ProducerRecord::new("t").partition(0).value("blocking"))
            .unwrap()
            .offset,
        0
    );
    let queued = p.send_async(ProducerRecord::new("t").partition(1).value("queued"));
    p.flush().unwrap();
    assert_eq!(queued.wait().unwrap().offset, 0);
    assert_eq!((log(0).visible_end_offset(), log(1).visible_end_offset()), (1, 1));
    assert_eq!(text(&read_all(&log(0))[0].value), "blocking");
    assert_eq!(text(&read_all(&log(1))[0].value), "queued");
    // Dropping the producer flushes too.
    let queued = p.send_async(ProducerRecord::new("t").partition(1).value("at drop"));
    drop(p);
    assert_eq!(queued.wait().unwrap().offset, 1);
    assert_eq!(log(1).visible_end_offset(), 2);
}

/// Polls `consumer` until it has returned `n` records (or 30 s pass): `(partition, offset,
/// value)` of each, sorted.
fn poll_sorted(consumer: &mut brooklet::Consumer, n: usize) -> Vec<(u32, u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        for r in &consumer.poll(Duration::from_millis(200)).unwrap() {
            let value = String::from_utf8(r.value().unwrap_or_default().to_vec()).unwrap();
            got.push((r.partition(), r.offset(), value));
        }
    }
    got.sort();
    got
}

/// A `Buffered` producer's records become readable a `linger` after it left the first of
/// them in the write buffer, with no flush (as Kafka's producer sends even `acks=0` records
/// after `linger.ms`): blocking sends, batches and async sends alike. They are then in the
/// files, where another broker opened read-only on the directory reads them.
#[test]
fn a_buffered_producers_records_are_written_out_a_linger_later() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(3)).unwrap();
    let tps: Vec<_> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
    let mut consumer = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(brooklet::OffsetReset::Earliest))
        .unwrap();
    consumer.assign(&tps).unwrap();
    let p = broker.producer(
        ProducerConfig::default()
            .durability(Durability::Buffered)
            .linger(Duration::from_millis(20)),
    );
    assert_eq!(
        p.send(ProducerRecord::new("t").partition(0).value("blocking"))
            .unwrap()
            .offset,
        0
    );
    let batch = [
        ProducerRecord::new("t").partition(1).value("batch-a"),
        ProducerRecord::new("t").partition(1).value("batch-b"),
    ];
    assert_eq!(p.send_batch(&batch).unwrap().len(), 2);
    let queued = p.send_async(ProducerRecord::new("t").partition(2).value("async"));
    let expected = vec![
        (0, 0, "blocking".to_string()),
        (1, 0, "batch-a".to_string()),
        (1, 1, "batch-b".to_string()),
        (2, 0, "async".to_string()),
    ];
    assert_eq!(poll_sorted(&mut consumer, 4), expected);
    assert_eq!(queued.wait().unwrap().offset, 0);
    let reader = Broker::open_read_only(dir.path()).unwrap();
    assert_eq!(
        reader
            .consumer(ConsumerConfig::default())
            .unwrap()
            .end_offsets(&tps)
            .unwrap()
            .into_values()
            .collect::<Vec<_>>(),
        [1, 2, 1]
    );
    // More records later are noted again and written out in turn.
    p.send(ProducerRecord::new("t").partition(0).value("later")).unwrap();
    assert_eq!(poll_sorted(&mut consumer, 1), [(0, 1, "later".to_string())]);
    drop(p);
}

/// With a linger of `Duration::MAX` (never by time) a `Buffered` record waits in the
/// buffer for a flush: unreadable until then, though the partition's log end offset
/// counts it (Kafka's log end offset against the high watermark consumers read to).
#[test]
fn a_buffered_record_without_a_linger_waits_for_the_flush() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let tp = TopicPartition::new("t", 0);
    let mut consumer = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(brooklet::OffsetReset::Earliest))
        .unwrap();
    consumer.assign(std::slice::from_ref(&tp)).unwrap();
    let p = broker.producer(
        ProducerConfig::default()
            .durability(Durability::Buffered)
            .linger(Duration::MAX),
    );
    p.send(ProducerRecord::new("t").partition(0).value("kept")).unwrap();
    assert!(consumer.poll(Duration::from_millis(300)).unwrap().is_empty());
    assert_eq!(end_offsets(&broker, "t"), [1]);
    assert_eq!(consumer.end_offsets(std::slice::from_ref(&tp)).unwrap()[&tp], 0);
    p.flush().unwrap();
    assert_eq!(poll_sorted(&mut consumer, 1), [(0, 0, "kept".to_string())]);
    assert_eq!(consumer.end_offsets(std::slice::from_ref(&tp)).unwrap()[&tp], 1);
}

// ---------------------------------------------------------------------------------------
// 14. review: keyless routing after flush; async records too large only compressed
// ---------------------------------------------------------------------------------------

/// Keyless `send_async` records flushed one at a time: each flush completes a batch, so
/// the sticky partitioner moves on to another partition (Kafka's sticky partitioner,
/// KIP-480, switches when a batch is completed), instead of every record landing on the
/// partition chosen first.
#[test]
fn keyless_async_records_flushed_one_by_one_move_on_at_every_batch() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(6)).unwrap();
    let p = broker.producer(flush_only());
    let mut partitions = Vec::new();
    for i in 0..30 {
        let d = p.send_async(ProducerRecord::new("t").value(format!("{i}")));
        p.flush().unwrap();
        partitions.push(d.wait().unwrap().partition);
    }
    for pair in partitions.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "a completed batch did not move the partitioner on: {partitions:?}"
        );
    }
    assert_eq!(p.metrics().batches, 30);
}

/// With compression, a queued record whose batch alone fits the limit uncompressed but not
/// compressed (incompressible bytes grow a little) fails alone, as a record too large
/// uncompressed does: the small records queued around it are stored and acknowledged with
/// their offsets, never reported failed while stored (or dropped). Every codec.
#[test]
fn async_record_too_large_only_compressed_fails_alone() {
    let noise = incompressible(2100);
    for codec in COMPRESSED {
        let broker = Broker::temporary().unwrap();
        small_topic(&broker, "t", 1);
        let p = broker.producer(flush_only().compression(codec));
        let mut refused = 0;
        for len in 1_900..2_048 {
            let before = end_offsets(&broker, "t")[0];
            let a = p.send_async(ProducerRecord::new("t").value("a"));
            let big = p.send_async(ProducerRecord::new("t").value(noise[..len].to_vec()));
            let c = p.send_async(ProducerRecord::new("t").value("c"));
            let _ = p.flush();
            let (a, big, c) = (a.wait(), big.wait(), c.wait());
            let a = a.unwrap_or_else(|e| panic!("{codec:?}, len {len}: the record before it failed: {e:?}"));
            let c = c.unwrap_or_else(|e| panic!("{codec:?}, len {len}: the record after it failed: {e:?}"));
            let stored = match big {
                Ok(m) => {
                    assert_eq!((a.offset, m.offset, c.offset), (before, before + 1, before + 2));
                    3
                }
                Err(Error::RecordTooLarge { max, .. }) => {
                    assert_eq!(max, 2048);
                    assert_eq!((a.offset, c.offset), (before, before + 1), "{codec:?}, len {len}");
                    refused += 1;
                    2
                }
                Err(e) => panic!("{codec:?}, len {len}: {e:?}"),
            };
            assert_eq!(end_offsets(&broker, "t"), [before + stored], "{codec:?}, len {len}");
        }
        assert!(refused > 0, "{codec:?}: no length was refused");
    }
}

/// `values` queued with `send_async` to "t" of a broker on a `FaultFs` (limit 8192), the
/// limit then lowered to 1024 (the queued batch now goes out as several), the `nth` write
/// made to fail, and a flush (which fails): each record's outcome, and the directory (to
/// outlive the broker), the broker and the producer to look further.
fn flush_a_split_batch_failing_at_write(
    values: &[String],
    nth: u64,
) -> (Vec<Result<RecordMetadata, Error>>, tempfile::TempDir, Broker, Producer) {
    let f = flush_a_lowered_limit_batch_failing(values, Durability::Written, brooklet::io::FaultOp::Write, nth);
    assert!(f.flushed.is_err());
    (f.outcomes, f.dir, f.broker, f.producer)
}

/// What [`flush_a_lowered_limit_batch_failing`] leaves to look at.
struct FailedFlush {
    flushed: Result<(), Error>,
    outcomes: Vec<Result<RecordMetadata, Error>>,
    /// Outlives the broker.
    dir: tempfile::TempDir,
    broker: Broker,
    producer: Producer,
}

/// `values` queued with `send_async` at `durability` to "t" of a broker on a `FaultFs`
/// (limit 8192), the limit then lowered to 1024, the `nth` operation `op` made to fail
/// once, and a flush: its result, each record's outcome, and the directory, the broker and
/// the producer to look further.
fn flush_a_lowered_limit_batch_failing(
    values: &[String],
    durability: Durability,
    op: brooklet::io::FaultOp,
    nth: u64,
) -> FailedFlush {
    use brooklet::io::{EIO, Fault};
    let dir = temp_dir();
    let fs = FaultFs::new();
    let broker = Broker::builder().vfs(Arc::new(fs.clone())).open(dir.path()).unwrap();
    let config = TopicConfig::with_partitions(1).max_message_bytes(8192);
    broker.create_topic("t", config.clone()).unwrap();
    let p = broker.producer(flush_only().durability(durability));
    let deliveries: Vec<Delivery> = values
        .iter()
        .map(|v| p.send_async(ProducerRecord::new("t").value(v.clone())))
        .collect();
    broker.alter_topic_config("t", config.max_message_bytes(1024)).unwrap();
    fs.inject(Fault {
        op,
        nth,
        errno: EIO,
        forever: false,
    });
    let flushed = p.flush();
    fs.clear_faults();
    let outcomes = deliveries.into_iter().map(Delivery::wait).collect();
    FailedFlush {
        flushed,
        outcomes,
        dir,
        broker,
        producer: p,
    }
}

/// An async batch written as several batches (here: the topic's limit lowered after its
/// records were queued) whose later write fails: the records of the batches already
/// written are stored, so their deliveries report where (not the failure), and only the
/// records not written fail. Nothing reported failed is in the log, nothing stored is
/// reported failed, and the counters agree.
#[test]
fn an_async_batch_failing_after_part_of_it_was_written_reports_each_record_as_stored_or_not() {
    let values: Vec<String> = (0..24).map(|i| format!("record-{i:02}-{}", "x".repeat(100))).collect();
    // The queued batch (about 3.5 KB) takes about four batches of the new limit: the first
    // of them is written; the second fails (rolled back: the log goes on).
    let (outcomes, _dir, broker, p) = flush_a_split_batch_failing_at_write(&values, 2);
    let stored: Vec<String> = records_of(&broker, "t", 0).iter().map(|r| text(&r.value)).collect();
    assert!(!stored.is_empty() && stored.len() < values.len(), "{}", stored.len());
    assert_eq!(stored, values[..stored.len()]);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(meta) if i < stored.len() => assert_eq!(meta.offset, i as u64),
            Err(Error::Io { .. }) if i >= stored.len() => {}
            other => panic!("record {i} of {} stored: {other:?}", stored.len()),
        }
    }
    let metrics = p.metrics();
    assert_eq!(metrics.records_sent, stored.len() as u64);
    assert_eq!(metrics.errors, (values.len() - stored.len()) as u64);
    // The producer goes on after what was stored.
    let next = p.send(ProducerRecord::new("t").value("after")).unwrap();
    assert_eq!(next.offset, stored.len() as u64);
}

/// As above, when nothing was written before the failed write but a record had been
/// refused alone (too large for the lowered limit): that record keeps its own error,
/// `RecordTooLarge`, and only the others fail with the write's.
#[test]
fn an_async_batch_whose_first_write_fails_after_a_record_was_refused_keeps_each_error() {
    let mut values = vec!["x".repeat(2000)];
    values.extend((0..5).map(|i| format!("small-{i}")));
    let (outcomes, _dir, broker, p) = flush_a_split_batch_failing_at_write(&values, 1);
    assert!(records_of(&broker, "t", 0).is_empty());
    assert!(
        matches!(outcomes[0], Err(Error::RecordTooLarge { .. })),
        "{:?}",
        outcomes[0]
    );
    for (i, outcome) in outcomes.iter().enumerate().skip(1) {
        assert!(matches!(outcome, Err(Error::Io { .. })), "record {i}: {outcome:?}");
    }
    assert_eq!((p.metrics().records_sent, p.metrics().errors), (0, 6));
}

/// `flush` waits for the callbacks of records sent before it also when their queue was
/// retired (its topic deleted and created again) while another thread was still running an
/// earlier callback of that queue: the thread that retired it completed the record but left
/// its callback to that reporter, and the queue used to leave the producer's sight at once,
/// so a flush then returned before the record's callback ran.
#[test]
fn flush_waits_for_callbacks_of_a_retired_queue_that_another_thread_is_reporting() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(flush_only());
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    p.send_with_callback(ProducerRecord::new("t").value("first"), move |r| {
        assert_eq!(r.unwrap().offset, 0);
        entered_tx.send(()).unwrap();
        release.recv_timeout(Duration::from_secs(30)).unwrap();
    });
    let second_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    thread::scope(|s| {
        // This thread writes the first record and runs its callback, which holds it.
        let reporter = s.spawn(|| p.flush());
        entered.recv_timeout(Duration::from_secs(30)).unwrap();
        let done = Arc::clone(&second_done);
        p.send_with_callback(ProducerRecord::new("t").value("second"), move |r| {
            assert!(matches!(r, Err(Error::UnknownTopic { .. })), "{r:?}");
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        broker.delete_topic("t").unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        // Retires the old queue and completes "second"; its callback waits for the reporter.
        let fresh = p.send_async(ProducerRecord::new("t").value("fresh"));
        // The reporter is let go only well after the flush below has begun.
        s.spawn(move || {
            thread::sleep(Duration::from_millis(300));
            release_tx.send(()).unwrap();
        });
        p.flush().unwrap();
        assert!(
            second_done.load(std::sync::atomic::Ordering::SeqCst),
            "flush returned before the callback of a record sent before it ran"
        );
        assert_eq!(fresh.wait().unwrap().offset, 0);
        reporter.join().unwrap().unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// 15. `Synced` async batches, synced and reported by the linger thread
// ---------------------------------------------------------------------------------------

/// A broker with the two-partition topic "t", and a `Synced` producer whose every async
/// record fills its batch (the linger timer never writes one).
fn synced_one_record_batches() -> (Broker, Producer) {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let p = broker.producer(
        ProducerConfig::default()
            .durability(Durability::Synced)
            .batch_size(1)
            .linger(Duration::from_secs(3600)),
    );
    (broker, p)
}

/// A blocking `send` (and `send_batch`) reports a record only after the records sent
/// before it to the same partition have been reported, as Kafka's `send().get()` completes
/// after the callbacks of earlier batches. A `Synced` batch that `send_async` filled is left
/// to the linger thread: a blocking send on the same thread used to return first, both when
/// the linger thread was busy elsewhere (nobody reported the batch) and when it was still
/// reporting it (the send did not wait).
#[test]
fn a_blocking_send_returns_after_earlier_synced_async_records_of_its_partition_are_reported() {
    let (_broker, p) = synced_one_record_batches();
    // The linger thread runs this callback (of partition 1) and is held in it.
    let (entered_tx, entered) = std::sync::mpsc::channel::<Option<String>>();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    p.send_with_callback(ProducerRecord::new("t").partition(1).value("hold"), move |r| {
        r.unwrap();
        entered_tx.send(thread::current().name().map(str::to_owned)).unwrap();
        let _ = release.recv_timeout(Duration::from_secs(30));
    });
    let runner = entered
        .recv_timeout(Duration::from_secs(10))
        .expect("callback never ran");
    assert_eq!(runner.as_deref(), Some("brooklet-linger"));
    let first = p.send_async(ProducerRecord::new("t").partition(0).value("first"));
    let second = p.send(ProducerRecord::new("t").partition(0).value("second"));
    let first_seen = first.try_result().map(|r| r.map(|m| m.offset));
    let third = p.send_async(ProducerRecord::new("t").partition(0).value("third"));
    let fourth = p.send_batch(&[ProducerRecord::new("t").partition(0).value("fourth")]);
    let third_seen = third.try_result().map(|r| r.map(|m| m.offset));
    release_tx.send(()).unwrap();
    assert_eq!(second.unwrap().offset, 1);
    assert_eq!(fourth.unwrap().get(0).unwrap().offset, 3);
    assert_eq!(
        first_seen.map(Result::unwrap),
        Some(0),
        "send returned before an earlier record was reported"
    );
    assert_eq!(
        third_seen.map(Result::unwrap),
        Some(2),
        "send_batch returned before an earlier record was reported"
    );

    // Now the linger thread reports partition 0 itself, and is held in a callback of it.
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (returned_tx, returned) = std::sync::mpsc::channel::<()>();
    let (seen_tx, seen) = std::sync::mpsc::channel::<bool>();
    p.send_with_callback(ProducerRecord::new("t").partition(0).value("fifth"), move |r| {
        assert_eq!(r.unwrap().offset, 4);
        entered_tx.send(()).unwrap();
        // Whether the blocking send below returned while this callback still ran.
        seen_tx
            .send(returned.recv_timeout(Duration::from_secs(3)).is_ok())
            .unwrap();
    });
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("callback never ran");
    let sixth = p.send(ProducerRecord::new("t").partition(0).value("sixth")).unwrap();
    let _ = returned_tx.send(());
    let returned_early = seen.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(sixth.offset, 5);
    assert!(
        !returned_early,
        "send returned while an earlier record's callback was still running"
    );
    p.close().unwrap();
}

/// A callback may wait for a record it sent to another partition. With `Synced`, its
/// callbacks run on the linger thread, and the `send_async` that filled a batch left it to
/// that thread to sync and report, which was waiting for it in the callback: a deadlock.
#[test]
fn a_synced_callback_may_wait_for_a_record_it_sent_to_another_partition() {
    let (broker, p) = synced_one_record_batches();
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = p.clone();
    p.send_with_callback(ProducerRecord::new("t").partition(0).value("outer"), move |r| {
        assert_eq!(r.unwrap().offset, 0);
        let d = inner.send_async(ProducerRecord::new("t").partition(1).value("inner"));
        tx.send((thread::current().name().map(str::to_owned), d.wait().map(|m| m.offset)))
            .unwrap();
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    if got.is_err() {
        // Reports the inner record from here, which lets the callback go.
        p.flush().unwrap();
        panic!("the callback's wait for its own send deadlocked the linger thread");
    }
    let (runner, inner_offset) = got.unwrap();
    assert_eq!(runner.as_deref(), Some("brooklet-linger"));
    assert_eq!(inner_offset.unwrap(), 0);
    p.close().unwrap();
    assert_eq!(end_offsets(&broker, "t"), [1, 1]);
}

/// Keyless `send_async` records with a `batch_size` above the topic's `max_message_bytes`:
/// every batch is closed by the topic's limit before it reaches `batch_size`, and a closed
/// batch is a completed one, so the sticky partitioner moves on at each (as it does when
/// `batch_size`, the linger or a flush closes one). It used to move only at `batch_size`
/// (never reached here) or the linger (never due under steady sending, since each closed
/// batch restarts it): every record went to the partition chosen first.
#[test]
fn keyless_async_batches_closed_by_the_topic_limit_move_the_sticky_partitioner_on() {
    let broker = Broker::temporary().unwrap();
    small_topic(&broker, "t", 6);
    // batch_size 1 MiB, the topic's limit 2 KiB.
    let p = broker.producer(flush_only());
    let deliveries: Vec<Delivery> = (0..100)
        .map(|i| p.send_async(ProducerRecord::new("t").value(format!("{i:0>200}"))))
        .collect();
    p.flush().unwrap();
    let partitions: Vec<u32> = deliveries.into_iter().map(|d| d.wait().unwrap().partition).collect();
    // A run of records on one partition is at most one batch (2 KiB of 200-byte values) and
    // the record that closed it.
    let longest = partitions.chunk_by(|a, b| a == b).map(<[u32]>::len).max().unwrap();
    assert!(
        longest <= 2048 / 200 + 1,
        "the partitioner stayed on one partition across batches: {partitions:?}"
    );
    p.close().unwrap();
}

/// A `Synced` async record written to a topic that is deleted before its fsync fails with
/// `UnknownTopic`, as every other send to a deleted topic does. The fsync of the closed log
/// used to fail with the log's own "partition log … is closed" (`InvalidArgument`).
#[test]
fn a_synced_async_record_whose_topic_is_deleted_before_its_fsync_fails_with_unknown_topic() {
    let (broker, p) = synced_one_record_batches();
    broker.create_topic("doomed", TopicConfig::with_partitions(1)).unwrap();
    // The linger thread runs this callback and is held in it.
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    p.send_with_callback(ProducerRecord::new("t").partition(0).value("hold"), move |r| {
        r.unwrap();
        entered_tx.send(()).unwrap();
        let _ = release.recv_timeout(Duration::from_secs(30));
    });
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("callback never ran");
    // Written by this call (it fills its batch); its fsync is left to the held linger thread.
    let doomed = p.send_async(ProducerRecord::new("doomed").value("v"));
    assert!(doomed.try_result().is_none());
    broker.delete_topic("doomed").unwrap();
    release_tx.send(()).unwrap();
    match doomed.wait() {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "doomed"),
        other => panic!("expected UnknownTopic, got {other:?}"),
    }
    p.close().unwrap();
}

/// A closed producer refuses a send to a topic it never wrote with `Closed`, and creates
/// nothing: a blocking `send` used to auto-create the topic before finding the producer
/// closed (`send_async` and `send_batch` check first).
#[test]
fn a_closed_producer_auto_creates_no_topic() {
    let dir = common::temp_dir();
    let broker = Broker::builder()
        .auto_create_topics(Some(TopicConfig::with_partitions(1)))
        .open(dir.path())
        .unwrap();
    let p = broker.producer(ProducerConfig::default());
    p.close().unwrap();
    let closed = |r: Result<RecordMetadata, Error>| match r {
        Err(Error::Closed { what }) => assert_eq!(what, "producer"),
        other => panic!("expected Closed, got {other:?}"),
    };
    closed(p.send(ProducerRecord::new("new-a").value("x")));
    closed(p.send_async(ProducerRecord::new("new-b").value("x")).wait());
    assert!(matches!(
        p.send_batch(&[ProducerRecord::new("new-c").value("x")]),
        Err(Error::Closed { .. })
    ));
    assert_eq!(broker.list_topics(), Vec::<String>::new());
}
