//! The broker: topic administration (create, list, describe, delete, add partitions), the
//! topic table in `meta/topics` and what survives a reopen, directory locking, auto-create,
//! and the temporary broker.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use brooklet::{
    Broker, Error, LogConfig, LogRecord, MAX_TOPIC_NAME_LEN, PartitionDescription, Producer, ProducerConfig,
    ProducerRecord, TimestampType, TopicConfig, TopicPartition, partition_for_key,
};
use common::{read_all, temp_dir};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every record of `topic`/`partition`, read through the broker.
fn records_of(broker: &Broker, topic: &str, partition: u32) -> Vec<LogRecord> {
    let log = broker
        .partition_log(&TopicPartition::new(topic, partition))
        .expect("partition log");
    read_all(&log)
}

/// `(key, value)` of each record, as strings.
fn key_values(records: &[LogRecord]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            let text =
                |b: &Option<bytes::Bytes>| String::from_utf8(b.as_deref().unwrap_or_default().to_vec()).expect("utf8");
            (text(&r.key), text(&r.value))
        })
        .collect()
}

/// Total bytes of the stored batches of a partition.
fn stored_bytes(broker: &Broker, topic: &str, partition: u32) -> u64 {
    let log = broker
        .partition_log(&TopicPartition::new(topic, partition))
        .expect("partition log");
    log.read(0, 1 << 24)
        .expect("read")
        .iter()
        .map(|b| b.size_bytes() as u64)
        .sum()
}

fn producer(broker: &Broker) -> Producer {
    broker.producer(ProducerConfig::default())
}

/// Sends `n` records `k{i}`/`{prefix}{i}` to an explicit partition; returns their offsets.
fn send_n(producer: &Producer, topic: &str, partition: u32, n: usize, prefix: &str) -> Vec<u64> {
    (0..n)
        .map(|i| {
            producer
                .send(
                    ProducerRecord::new(topic)
                        .partition(partition)
                        .key(format!("k{i}"))
                        .value(format!("{prefix}{i}")),
                )
                .expect("send")
                .offset
        })
        .collect()
}

fn expected_kv(n: usize, prefix: &str) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("k{i}"), format!("{prefix}{i}"))).collect()
}

// ---------------------------------------------------------------------------------------
// 1. create / list / describe
// ---------------------------------------------------------------------------------------

/// A closed broker unlocks its directory at once, even while a process spawned meanwhile
/// holds a copy of the lock file's descriptor (between its fork and exec).
#[test]
fn a_closed_broker_is_unlocked_while_a_spawned_child_shares_its_descriptors() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    common::while_a_child_is_between_fork_and_exec(|| {
        drop(broker);
        let broker = Broker::open(dir.path()).unwrap();
        assert_eq!(broker.list_topics(), ["t"]);
    });
}

#[test]
fn describe_reports_exact_offsets_and_sizes_and_list_is_sorted() {
    let broker = Broker::temporary().unwrap();
    assert!(broker.list_topics().is_empty());
    broker.create_topic("orders", TopicConfig::with_partitions(3)).unwrap();
    broker.create_topic("audit", TopicConfig::with_partitions(1)).unwrap();
    broker
        .create_topic("billing.v2_eu-west", TopicConfig::with_partitions(2))
        .unwrap();
    assert_eq!(broker.list_topics(), ["audit", "billing.v2_eu-west", "orders"]);

    // Fresh topic: every partition empty.
    let fresh = broker.describe_topic("orders").unwrap();
    assert_eq!(fresh.name, "orders");
    assert_eq!(fresh.config, TopicConfig::with_partitions(3));
    assert_eq!(
        fresh.partitions,
        (0..3)
            .map(|partition| PartitionDescription {
                partition,
                log_start_offset: 0,
                log_end_offset: 0,
                size_bytes: 0,
            })
            .collect::<Vec<_>>()
    );

    let p = producer(&broker);
    assert_eq!(send_n(&p, "orders", 0, 4, "a"), [0, 1, 2, 3]);
    assert_eq!(send_n(&p, "orders", 2, 2, "c"), [0, 1]);
    assert_eq!(send_n(&p, "audit", 0, 7, "x"), (0..7).collect::<Vec<u64>>());

    let desc = broker.describe_topic("orders").unwrap();
    assert_eq!(desc.config, TopicConfig::with_partitions(3));
    let ends: Vec<(u32, u64, u64)> = desc
        .partitions
        .iter()
        .map(|d| (d.partition, d.log_start_offset, d.log_end_offset))
        .collect();
    assert_eq!(ends, [(0, 0, 4), (1, 0, 0), (2, 0, 2)]);
    for d in &desc.partitions {
        assert_eq!(d.size_bytes, stored_bytes(&broker, "orders", d.partition), "{d:?}");
    }
    assert!(desc.partitions[0].size_bytes > 0);
    assert_eq!(desc.partitions[1].size_bytes, 0);
    assert!(desc.partitions[2].size_bytes > 0);

    let audit = broker.describe_topic("audit").unwrap();
    assert_eq!(audit.partitions.len(), 1);
    assert_eq!(audit.partitions[0].log_end_offset, 7);
    assert!(audit.partitions[0].size_bytes > 0);

    assert_eq!(key_values(&records_of(&broker, "orders", 0)), expected_kv(4, "a"));
    assert_eq!(key_values(&records_of(&broker, "orders", 2)), expected_kv(2, "c"));

    match broker.describe_topic("nope") {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "nope"),
        other => panic!("{other:?}"),
    }
    match broker.partition_log(&TopicPartition::new("orders", 3)) {
        Err(Error::InvalidPartition {
            topic,
            partition,
            partitions,
        }) => assert_eq!((topic.as_str(), partition, partitions), ("orders", 3, 3)),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 2. topic name validation
// ---------------------------------------------------------------------------------------

#[test]
fn create_topic_refuses_invalid_names_and_writes_nothing_for_them() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    let before = entries(dir.path());
    let long = "x".repeat(250);
    let bad: [&str; 10] = ["../x", "a/b", "a\\b", "", ".", "..", &long, "café", "a\0b", "a b"];
    for name in bad {
        match broker.create_topic(name, TopicConfig::with_partitions(2)) {
            Err(Error::InvalidTopicName { name: got, reason }) => {
                assert_eq!(got, name);
                assert!(!reason.is_empty());
            }
            other => panic!("{name:?}: {other:?}"),
        }
        match broker.create_topic_if_not_exists(name, TopicConfig::with_partitions(2)) {
            Err(Error::InvalidTopicName { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert!(broker.list_topics().is_empty());
    assert_eq!(entries(dir.path()), before);
    assert!(!dir.path().parent().unwrap().join("x-0").exists());
    assert!(!dir.path().join("a").exists());

    let longest = "y".repeat(MAX_TOPIC_NAME_LEN);
    assert_eq!(MAX_TOPIC_NAME_LEN, 249);
    broker.create_topic(&longest, TopicConfig::with_partitions(2)).unwrap();
    assert_eq!(broker.list_topics(), std::slice::from_ref(&longest));
    let mut want = before.clone();
    want.push(format!("{longest}-0"));
    want.push(format!("{longest}-1"));
    want.sort();
    assert_eq!(entries(dir.path()), want);
    let p = producer(&broker);
    assert_eq!(send_n(&p, &longest, 1, 2, "v"), [0, 1]);
    drop(p);
    drop(broker);

    // The long name reopens.
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.list_topics(), std::slice::from_ref(&longest));
    assert_eq!(key_values(&records_of(&broker, &longest, 1)), expected_kv(2, "v"));
}

// ---------------------------------------------------------------------------------------
// 3. create twice
// ---------------------------------------------------------------------------------------

#[test]
fn creating_an_existing_topic_is_topic_exists_and_keeps_the_first_config() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    match broker.create_topic("t", TopicConfig::with_partitions(5)) {
        Err(Error::TopicExists { topic }) => assert_eq!(topic, "t"),
        other => panic!("{other:?}"),
    }
    assert_eq!(broker.describe_topic("t").unwrap().partitions.len(), 2);

    assert!(
        broker
            .create_topic_if_not_exists("u", TopicConfig::with_partitions(3))
            .unwrap()
    );
    assert!(
        !broker
            .create_topic_if_not_exists("u", TopicConfig::with_partitions(4))
            .unwrap()
    );
    assert!(
        !broker
            .create_topic_if_not_exists("t", TopicConfig::with_partitions(1))
            .unwrap()
    );
    assert_eq!(
        broker.describe_topic("u").unwrap().config,
        TopicConfig::with_partitions(3)
    );
    assert_eq!(
        broker.describe_topic("t").unwrap().config,
        TopicConfig::with_partitions(2)
    );
    assert_eq!(broker.list_topics(), ["t", "u"]);

    // An invalid config is refused before the existence check, and creates nothing.
    match broker.create_topic("v", TopicConfig::with_partitions(0)) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "partitions"),
        other => panic!("{other:?}"),
    }
    assert_eq!(broker.list_topics(), ["t", "u"]);
    assert!(!broker.dir().join("v-0").exists());
}

// ---------------------------------------------------------------------------------------
// 4. reopen
// ---------------------------------------------------------------------------------------

#[test]
fn topics_configs_and_records_survive_reopen() {
    let dir = temp_dir();
    let configs = [
        ("plain", TopicConfig::with_partitions(1)),
        (
            "retained",
            TopicConfig::with_partitions(3)
                .retention_ms(Some(Duration::from_secs(7 * 86_400)))
                .retention_bytes(Some(10 << 20))
                .segment_bytes(1 << 20)
                .segment_ms(Some(Duration::from_millis(3_600_000))),
        ),
        (
            "small",
            TopicConfig::with_partitions(2)
                .max_message_bytes(4096)
                .timestamp_type(TimestampType::LogAppendTime),
        ),
    ];
    let mut sent: Vec<(String, u32, usize)> = Vec::new();
    {
        let broker = Broker::open(dir.path()).unwrap();
        for (name, config) in &configs {
            broker.create_topic(name, config.clone()).unwrap();
        }
        let p = producer(&broker);
        for (name, config) in &configs {
            for partition in 0..config.partitions() {
                let n = 3 + partition as usize * 2;
                let offsets = send_n(&p, name, partition, n, &format!("{name}/{partition}/"));
                assert_eq!(offsets, (0..n as u64).collect::<Vec<_>>());
                sent.push((name.to_string(), partition, n));
            }
        }
        // A timestamp the LogAppendTime topic must overwrite, and the CreateTime one keep.
        let meta = p
            .send(ProducerRecord::new("plain").value("ts").timestamp(1_000))
            .unwrap();
        assert_eq!((meta.offset, meta.timestamp), (3, 1_000));
        sent.iter_mut().find(|(n, _, _)| n == "plain").unwrap().2 += 1;
        drop(p);
        drop(broker);
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.list_topics(), ["plain", "retained", "small"]);
    for (name, config) in &configs {
        let desc = broker.describe_topic(name).unwrap();
        assert_eq!(&desc.config, config, "{name}");
        assert_eq!(desc.config.partitions(), config.partitions());
        assert_eq!(desc.partitions.len(), config.partitions() as usize);
    }
    for (name, partition, n) in &sent {
        let desc = broker.describe_topic(name).unwrap();
        let d = &desc.partitions[*partition as usize];
        assert_eq!(
            (d.log_start_offset, d.log_end_offset),
            (0, *n as u64),
            "{name}-{partition}"
        );
        let records = records_of(&broker, name, *partition);
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..*n as u64).collect::<Vec<_>>());
        let mut want = expected_kv(
            if name == "plain" { n - 1 } else { *n },
            &format!("{name}/{partition}/"),
        );
        if name == "plain" {
            want.push((String::new(), "ts".into()));
        }
        assert_eq!(key_values(&records), want, "{name}-{partition}");
    }
    assert_eq!(records_of(&broker, "plain", 0)[3].timestamp, 1_000);
    // The reopened topics keep working: the LogAppendTime topic still stamps append time.
    let p = producer(&broker);
    let meta = p
        .send(ProducerRecord::new("small").partition(0).value("late").timestamp(1_000))
        .unwrap();
    assert_eq!(meta.offset, 3);
    assert_ne!(meta.timestamp, 1_000);
    assert_eq!(records_of(&broker, "small", 0)[3].timestamp, meta.timestamp);
}

// ---------------------------------------------------------------------------------------
// 5. locking
// ---------------------------------------------------------------------------------------

#[test]
fn second_open_of_an_open_directory_is_locked() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    match Broker::open(dir.path()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("{other:?}"),
    }
    match Broker::builder()
        .auto_create_topics(Some(TopicConfig::with_partitions(2)))
        .open(dir.path())
    {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("{other:?}"),
    }
    // A clone is the same open broker; a producer keeps it open after the broker is dropped.
    let clone = broker.clone();
    let p = producer(&clone);
    drop(broker);
    drop(clone);
    assert!(matches!(Broker::open(dir.path()), Err(Error::Locked { .. })));
    assert_eq!(send_n(&p, "t", 0, 1, "v"), [0]);
    drop(p);
    let reopened = Broker::open(dir.path()).unwrap();
    assert_eq!(reopened.list_topics(), ["t"]);
    assert_eq!(reopened.describe_topic("t").unwrap().partitions[0].log_end_offset, 1);
}

// ---------------------------------------------------------------------------------------
// 6. delete and recreate
// ---------------------------------------------------------------------------------------

#[test]
fn delete_removes_the_topic_and_a_recreated_one_starts_at_offset_zero() {
    let dir = temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(3)).unwrap();
        broker.create_topic("keep", TopicConfig::with_partitions(1)).unwrap();
        let p = producer(&broker);
        for partition in 0..3 {
            assert_eq!(send_n(&p, "t", partition, 5, "old"), [0, 1, 2, 3, 4]);
        }
        assert_eq!(send_n(&p, "keep", 0, 2, "keep"), [0, 1]);
        for partition in 0..3 {
            assert!(dir.path().join(format!("t-{partition}")).is_dir());
        }

        broker.delete_topic("t").unwrap();
        for partition in 0..3 {
            assert!(!dir.path().join(format!("t-{partition}")).exists(), "t-{partition}");
        }
        assert_eq!(broker.list_topics(), ["keep"]);
        match broker.describe_topic("t") {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
            other => panic!("{other:?}"),
        }
        match broker.partition_log(&TopicPartition::new("t", 0)) {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
            other => panic!("{other:?}"),
        }
        match broker.delete_topic("t") {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
            other => panic!("{other:?}"),
        }
        // The producer made before the delete (it has queues for the topic) is refused.
        match p.send(ProducerRecord::new("t").partition(1).value("after")) {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
            other => panic!("{other:?}"),
        }
        match p.send(ProducerRecord::new("t").key("k").value("after")) {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
            other => panic!("{other:?}"),
        }
        match p.send_async(ProducerRecord::new("t").value("after")).wait() {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
            other => panic!("{other:?}"),
        }
        match p.send_batch(&[ProducerRecord::new("t").value("after")]) {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("t-0").exists());

        // Recreated with fewer partitions: fresh, from offset 0, through the old producer.
        broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
        let desc = broker.describe_topic("t").unwrap();
        assert_eq!(desc.config, TopicConfig::with_partitions(2));
        assert!(
            desc.partitions
                .iter()
                .all(|d| d.log_end_offset == 0 && d.size_bytes == 0)
        );
        assert_eq!(send_n(&p, "t", 0, 2, "new"), [0, 1]);
        assert_eq!(send_n(&p, "t", 1, 1, "new"), [0]);
        match p.send(ProducerRecord::new("t").partition(2).value("gone")) {
            Err(Error::InvalidPartition {
                topic,
                partition,
                partitions,
            }) => assert_eq!((topic.as_str(), partition, partitions), ("t", 2, 2)),
            other => panic!("{other:?}"),
        }
        // A new producer sees the same.
        let q = producer(&broker);
        assert_eq!(send_n(&q, "t", 1, 1, "q"), [1]);
        assert_eq!(key_values(&records_of(&broker, "t", 0)), expected_kv(2, "new"));
        assert!(!dir.path().join("t-2").exists());
        drop(q);
        drop(p);
        drop(broker);
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.list_topics(), ["keep", "t"]);
    let desc = broker.describe_topic("t").unwrap();
    assert_eq!(desc.config, TopicConfig::with_partitions(2));
    let ends: Vec<u64> = desc.partitions.iter().map(|d| d.log_end_offset).collect();
    assert_eq!(ends, [2, 2]);
    assert_eq!(key_values(&records_of(&broker, "t", 0)), expected_kv(2, "new"));
    let mut want1 = expected_kv(1, "new");
    want1.extend(expected_kv(1, "q"));
    assert_eq!(key_values(&records_of(&broker, "t", 1)), want1);
    assert_eq!(key_values(&records_of(&broker, "keep", 0)), expected_kv(2, "keep"));
    assert!(!dir.path().join("t-2").exists());
}

#[test]
fn deleted_topic_stays_gone_after_reopen() {
    let dir = temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("a", TopicConfig::with_partitions(2)).unwrap();
        broker.create_topic("b", TopicConfig::with_partitions(1)).unwrap();
        let p = producer(&broker);
        send_n(&p, "a", 0, 3, "a");
        send_n(&p, "b", 0, 3, "b");
        drop(p);
        broker.delete_topic("a").unwrap();
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.list_topics(), ["b"]);
    assert!(matches!(broker.describe_topic("a"), Err(Error::UnknownTopic { .. })));
    assert!(!dir.path().join("a-0").exists());
    assert!(!dir.path().join("a-1").exists());
    assert_eq!(key_values(&records_of(&broker, "b", 0)), expected_kv(3, "b"));
}

/// A record queued (`send_async`, long linger) for a topic that is deleted and created again
/// before the batch is written must not be acknowledged at an offset the new topic does
/// not hold: it either fails with `UnknownTopic` or is really readable where its metadata says.
#[test]
fn record_pending_across_delete_and_recreate_is_never_acknowledged_into_the_deleted_log() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::from_secs(30)));
    assert_eq!(send_n(&p, "t", 0, 3, "old"), [0, 1, 2]);
    let pending = p.send_async(ProducerRecord::new("t").partition(0).key("k").value("pending"));
    broker.delete_topic("t").unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    p.flush().ok();
    match pending.wait() {
        Err(Error::UnknownTopic { topic }) => {
            assert_eq!(topic, "t");
            assert_eq!(broker.describe_topic("t").unwrap().partitions[0].log_end_offset, 0);
        }
        Ok(meta) => {
            let records = records_of(&broker, "t", meta.partition);
            let stored = records.iter().find(|r| r.offset == meta.offset);
            assert!(
                stored.is_some_and(|r| r.value.as_deref() == Some(&b"pending"[..])),
                "acknowledged at {meta:?}, but the recreated topic holds {:?}",
                key_values(&records)
            );
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// Protects: a handle on a deleted topic's partition log that reads after the topic was
/// created again never writes into (or loads from) the new topic's directory. Its sealed
/// segment 0 has lost its index file, so the read rebuilds the index: by path, that used
/// to write `00000000000000000000.index` and `.timeindex` into the new `t-0/`. The read is
/// still served, from the deleted log's own open `.log`.
#[test]
fn a_deleted_topics_log_handle_does_not_write_into_the_recreated_topic() {
    let dir = temp_dir();
    let config = TopicConfig::with_partitions(1).segment_bytes(4096);
    let tp = TopicPartition::new("t", 0);
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", config.clone()).unwrap();
        let log = broker.partition_log(&tp).unwrap();
        for i in 0..40u8 {
            log.append(
                &[brooklet::Record::new().value(vec![i; 300])],
                brooklet::Durability::Written,
            )
            .unwrap();
        }
        assert!(log.segment_count() > 1);
    }
    // Reopened cleanly: the sealed segments' indexes are loaded lazily, on first read.
    let broker = Broker::open(dir.path()).unwrap();
    let old = broker.partition_log(&tp).unwrap();
    let partition_dir = dir.path().join("t-0");
    fs::remove_file(partition_dir.join("00000000000000000000.index")).unwrap();

    broker.delete_topic("t").unwrap();
    broker.create_topic("t", config).unwrap();
    let new = broker.partition_log(&tp).unwrap();
    new.append(&[brooklet::Record::new().value("new")], brooklet::Durability::Synced)
        .unwrap();
    let before = entries(&partition_dir);
    assert_eq!(before, ["00000000000000000000.log"]);

    let read = old.read(0, 1 << 20).unwrap();
    assert_eq!(
        entries(&partition_dir),
        before,
        "the deleted log wrote into the new directory"
    );
    let first = read.first().expect("the deleted log still serves what it held");
    assert_eq!(first.base_offset(), 0);
    let value = first.records().next().unwrap().unwrap().value;
    assert_eq!(value.as_deref(), Some(&[0u8; 300][..]));
    assert_eq!(read_all(&new).len(), 1);
}

/// A handle on a deleted topic's partition (here: the queue of a producer that sent to it)
/// that is closed after the topic was created again must not write its shutdown files
/// (clean-shutdown marker, recovery point, indexes) into the new topic's directory. The
/// records are sized so that the stale marker matches the new segment's size: trusting it
/// gives the new partition the old end offset.
#[test]
fn closing_a_deleted_topics_log_does_not_touch_the_recreated_topic() {
    let dir = temp_dir();
    let rec = |len: usize| {
        ProducerRecord::new("t")
            .partition(0)
            .value(vec![b'v'; len])
            .timestamp(1_000)
    };
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        let old = producer(&broker);
        for i in 0..3 {
            assert_eq!(old.send(rec(20)).unwrap().offset, i);
        }
        let old_size = broker.describe_topic("t").unwrap().partitions[0].size_bytes;
        // One batch of two records whose size equals the three single-record batches.
        let second = (0..1000)
            .find(|&len| {
                let scratch = temp_dir();
                let log = brooklet::PartitionLog::open(scratch.path(), brooklet::LogConfig::default()).unwrap();
                let records = [
                    brooklet::Record::new().value(vec![b'v'; 20]).timestamp(1_000),
                    brooklet::Record::new().value(vec![b'v'; len]).timestamp(1_000),
                ];
                log.append(&records, brooklet::Durability::Written).unwrap();
                log.size_bytes() == old_size
            })
            .expect("a record size that makes the sizes equal");

        broker.delete_topic("t").unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        let new = producer(&broker);
        let metas = new.send_batch(&[rec(20), rec(second)]).unwrap().to_vec();
        assert_eq!(metas.iter().map(|m| m.offset).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(broker.describe_topic("t").unwrap().partitions[0].size_bytes, old_size);
        drop(new);
        drop(broker);
        // `old` keeps the broker open; dropping it closes the new topic's log cleanly, and
        // its queue still holds the deleted topic's log.
        drop(old);
    }
    let broker = Broker::open(dir.path()).unwrap();
    let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    assert_eq!(log.log_end_offset(), 2, "{:?}", log.recovery_report());
    assert!(log.recovery_report().clean_shutdown, "{:?}", log.recovery_report());
    let records = read_all(&log);
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1]);
    let p = producer(&broker);
    assert_eq!(p.send(rec(1)).unwrap().offset, 2);
}

/// Protects the records of a topic whose delete failed once the new topic table was in
/// place. `delete_topic` renames the table without the topic over the old one, then syncs
/// the directory; when that sync failed, the call returned the error with the topic still
/// open: producers went on writing to it, acknowledged, and the next open read the table
/// without the topic and removed its directory with every record. A failure before the
/// rename still changes nothing.
#[test]
fn a_delete_failing_after_the_table_is_replaced_acknowledges_no_record_the_next_open_drops() {
    use brooklet::io::{EIO, Fault, FaultFs, FaultOp};
    use std::sync::Arc;

    let dir = temp_dir();
    let fs = FaultFs::new();
    let broker = Broker::builder().vfs(Arc::new(fs.clone())).open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_n(&producer(&broker), "t", 0, 3, "v");

    // The rename fails: nothing changed, the topic and its records stay.
    fs.inject(Fault {
        op: FaultOp::Rename,
        nth: 1,
        errno: EIO,
        forever: false,
    });
    assert!(matches!(broker.delete_topic("t"), Err(Error::Io { .. })));
    assert_eq!(broker.list_topics(), ["t"]);
    assert_eq!(send_n(&producer(&broker), "t", 0, 1, "w"), [3]);

    // The table's temp file is synced (sync 1) and renamed; the directory sync (sync 2) fails.
    fs.inject(Fault {
        op: FaultOp::Sync,
        nth: 2,
        errno: EIO,
        forever: false,
    });
    assert!(matches!(broker.delete_topic("t"), Err(Error::Io { .. })));
    // The next open reads the new table: the topic is deleted for this broker already.
    assert!(broker.list_topics().is_empty());
    match producer(&broker).send(ProducerRecord::new("t").partition(0).value("lost?")) {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "t"),
        other => panic!("a record was acknowledged into a deleted topic: {other:?}"),
    }
    drop(broker);
    let broker = Broker::open(dir.path()).unwrap();
    assert!(broker.list_topics().is_empty());
    assert!(!dir.path().join("t-0").exists());
}

// ---------------------------------------------------------------------------------------
// 7. add_partitions
// ---------------------------------------------------------------------------------------

#[test]
fn add_partitions_grows_routes_keys_to_new_partitions_and_survives_reopen() {
    let dir = temp_dir();
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let config = TopicConfig::with_partitions(2).retention_bytes(Some(1 << 30));
    let mut per_partition: Vec<Vec<String>> = vec![Vec::new(); 5];
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", config.clone()).unwrap();
        let p = producer(&broker);
        for key in &keys[..20] {
            let meta = p
                .send(ProducerRecord::new("t").key(key.clone()).value("before"))
                .unwrap();
            assert_eq!(meta.partition, partition_for_key(key.as_bytes(), 2));
            per_partition[meta.partition as usize].push(format!("{key}=before"));
        }

        for (n, field_ok) in [(2u32, "partitions"), (1, "partitions")] {
            match broker.add_partitions("t", n) {
                Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, field_ok),
                other => panic!("{n}: {other:?}"),
            }
        }
        match broker.add_partitions("nope", 4) {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "nope"),
            other => panic!("{other:?}"),
        }
        match broker.add_partitions("t", brooklet::MAX_PARTITIONS + 1) {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "partitions"),
            other => panic!("{other:?}"),
        }
        assert_eq!(broker.describe_topic("t").unwrap().partitions.len(), 2);
        assert!(!dir.path().join("t-2").exists());

        broker.add_partitions("t", 5).unwrap();
        let desc = broker.describe_topic("t").unwrap();
        assert_eq!(desc.config, config.clone().partition_count(5));
        assert_eq!(desc.partitions.len(), 5);
        for d in &desc.partitions[2..] {
            assert_eq!((d.log_start_offset, d.log_end_offset, d.size_bytes), (0, 0, 0));
        }
        // The producer made before the growth routes keys over 5 partitions now.
        let mut hit_new = BTreeSet::new();
        for key in &keys {
            let meta = p
                .send(ProducerRecord::new("t").key(key.clone()).value("after"))
                .unwrap();
            assert_eq!(meta.partition, partition_for_key(key.as_bytes(), 5), "{key}");
            if meta.partition >= 2 {
                hit_new.insert(meta.partition);
            }
            per_partition[meta.partition as usize].push(format!("{key}=after"));
        }
        assert_eq!(hit_new, BTreeSet::from([2, 3, 4]));
        // Explicit partitions past the new count are still refused.
        match p.send(ProducerRecord::new("t").partition(5).value("x")) {
            Err(Error::InvalidPartition {
                topic,
                partition,
                partitions,
            }) => assert_eq!((topic.as_str(), partition, partitions), ("t", 5, 5)),
            other => panic!("{other:?}"),
        }
        broker.add_partitions("t", 6).unwrap();
        assert_eq!(
            p.send(ProducerRecord::new("t").partition(5).value("x")).unwrap().offset,
            0
        );
        per_partition.push(vec!["=x".into()]);
        drop(p);
    }
    let broker = Broker::open(dir.path()).unwrap();
    let desc = broker.describe_topic("t").unwrap();
    assert_eq!(desc.config, config.partition_count(6));
    assert_eq!(desc.partitions.len(), 6);
    for (partition, want) in per_partition.iter().enumerate() {
        let got: Vec<String> = key_values(&records_of(&broker, "t", partition as u32))
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(&got, want, "partition {partition}");
        assert_eq!(desc.partitions[partition].log_end_offset, want.len() as u64);
    }
}

// ---------------------------------------------------------------------------------------
// 8. leftovers
// ---------------------------------------------------------------------------------------

#[test]
fn open_removes_partition_directories_the_table_does_not_list() {
    let dir = temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("orders", TopicConfig::with_partitions(2)).unwrap();
        let p = producer(&broker);
        send_n(&p, "orders", 1, 3, "o");
    }
    // Leftovers of an interrupted create/delete, and things that are not partitions.
    let ghost = dir.path().join("ghost-0");
    fs::create_dir(&ghost).unwrap();
    fs::write(ghost.join("00000000000000000000.log"), b"leftover").unwrap();
    fs::create_dir_all(dir.path().join("orders-2").join("nested")).unwrap();
    fs::write(dir.path().join("orders-2").join("nested").join("f"), b"x").unwrap();
    fs::create_dir(dir.path().join("my-topic-17")).unwrap();
    fs::create_dir(dir.path().join("notes")).unwrap();
    fs::write(dir.path().join("notes").join("keep.txt"), b"mine").unwrap();
    fs::create_dir(dir.path().join("backup-x")).unwrap();
    fs::write(dir.path().join("stray-0"), b"a file, not a directory").unwrap();
    // Not a name brooklet gives a partition directory (it writes `orders-1`): not ours.
    for name in ["orders-01", "orders-+1", "orders-007"] {
        fs::create_dir(dir.path().join(name)).unwrap();
    }

    let broker = Broker::open(dir.path()).unwrap();
    assert!(!ghost.exists());
    assert!(!dir.path().join("orders-2").exists());
    assert!(!dir.path().join("my-topic-17").exists());
    assert_eq!(fs::read(dir.path().join("notes").join("keep.txt")).unwrap(), b"mine");
    assert!(dir.path().join("backup-x").is_dir());
    assert!(dir.path().join("stray-0").is_file());
    assert!(dir.path().join("orders-0").is_dir());
    assert_eq!(broker.list_topics(), ["orders"]);
    assert_eq!(key_values(&records_of(&broker, "orders", 1)), expected_kv(3, "o"));
    let mut names = entries(dir.path());
    names.retain(|n| n != "LOCK");
    assert_eq!(
        names,
        [
            "backup-x",
            "meta",
            "notes",
            "offsets",
            "orders-+1",
            "orders-0",
            "orders-007",
            "orders-01",
            "orders-1",
            "stray-0"
        ]
    );
}

/// Protects directories that were never a topic's. Open took a directory without a topic
/// table for a new data directory, wrote an empty table, and then removed every
/// subdirectory named like a partition (`<name>-<number>`) as a leftover: an application's
/// `backup-2024` where it first opened the broker, or — when the table was lost — every
/// partition of every topic, with their records. No create or delete runs before the table
/// exists, so without one such a directory is nobody's leftover: open refuses, naming the
/// table, and removes nothing.
#[test]
fn open_without_a_topic_table_removes_no_directory() {
    // A directory that is not a data directory yet.
    let dir = temp_dir();
    let backup = dir.path().join("backup-2024");
    fs::create_dir(&backup).unwrap();
    fs::write(backup.join("notes.txt"), b"keep me").unwrap();
    let table = dir.path().join("meta").join("topics");
    match Broker::open(dir.path()) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, table);
            assert!(reason.contains("backup-2024"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(backup.join("notes.txt")).unwrap(), b"keep me");

    // A data directory whose topic table was lost.
    let data = temp_dir();
    {
        let broker = Broker::open(data.path()).unwrap();
        broker.create_topic("orders", TopicConfig::with_partitions(2)).unwrap();
        send_n(&producer(&broker), "orders", 1, 3, "o");
    }
    let before = entries(&data.path().join("orders-1"));
    let table = data.path().join("meta").join("topics");
    fs::remove_file(&table).unwrap();
    match Broker::open(data.path()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, table),
        other => panic!("{other:?}"),
    }
    assert!(data.path().join("orders-0").is_dir());
    assert_eq!(entries(&data.path().join("orders-1")), before);

    // A partition's directory given for the data directory (`--dir data/orders-1`) is
    // refused before anything is created in it: it used to become a second data directory
    // mixed into the partition's files.
    match Broker::open(data.path().join("orders-1")) {
        Err(Error::InvalidArgument { reason }) => {
            assert!(reason.contains("is a partition's directory"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(entries(&data.path().join("orders-1")), before);

    // Without anything named like a partition, a directory opens as a new data directory.
    let plain = temp_dir();
    fs::create_dir(plain.path().join("notes")).unwrap();
    fs::create_dir(plain.path().join("backup-x")).unwrap();
    let broker = Broker::open(plain.path()).unwrap();
    assert!(broker.list_topics().is_empty());
    assert!(plain.path().join("notes").is_dir() && plain.path().join("backup-x").is_dir());
}

// ---------------------------------------------------------------------------------------
// 9. damaged topic table
// ---------------------------------------------------------------------------------------

/// A data directory with two topics, closed; returns the path of its topic table.
fn closed_dir_with_topics(dir: &Path) -> std::path::PathBuf {
    let broker = Broker::open(dir).unwrap();
    broker.create_topic("a", TopicConfig::with_partitions(2)).unwrap();
    broker
        .create_topic("b", TopicConfig::with_partitions(1).retention_bytes(Some(1 << 20)))
        .unwrap();
    drop(broker);
    dir.join("meta").join("topics")
}

fn expect_corrupt(dir: &Path, table: &Path, what: &str) {
    match Broker::open(dir) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, table, "{what}");
            assert!(!reason.is_empty());
        }
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn damaged_topic_table_fails_open_with_corrupt_naming_the_file() {
    let template = temp_dir();
    let table = closed_dir_with_topics(template.path());
    let good = fs::read(&table).unwrap();
    assert!(good.len() > 16);
    assert_eq!(&good[..4], b"BRKM");

    // Flip one byte at a time in the header and the payload (the version field is separate).
    let positions: Vec<usize> = [0, 3, 6, 7, 8, 11, 12, 15, 16, good.len() / 2, good.len() - 1]
        .into_iter()
        .collect();
    for pos in positions {
        let mut bad = good.clone();
        bad[pos] ^= 0x20;
        fs::write(&table, &bad).unwrap();
        expect_corrupt(template.path(), &table, &format!("flip at {pos}"));
    }
    for len in [0, 1, 8, 15, 16, good.len() - 1] {
        fs::write(&table, &good[..len]).unwrap();
        expect_corrupt(template.path(), &table, &format!("cut at {len}"));
    }
    let mut longer = good.clone();
    longer.push(0);
    fs::write(&table, &longer).unwrap();
    expect_corrupt(template.path(), &table, "extra byte");

    // The lock was released by each failed open; the good table opens again with its topics.
    fs::write(&table, &good).unwrap();
    let broker = Broker::open(template.path()).unwrap();
    assert_eq!(broker.list_topics(), ["a", "b"]);
    assert_eq!(
        broker.describe_topic("b").unwrap().config,
        TopicConfig::with_partitions(1).retention_bytes(Some(1 << 20))
    );
}

#[test]
fn topic_table_from_a_future_version_is_unsupported() {
    let dir = temp_dir();
    let table = closed_dir_with_topics(dir.path());
    let good = fs::read(&table).unwrap();
    for version in [3u16, 7, u16::MAX] {
        let mut newer = good.clone();
        newer[4..6].copy_from_slice(&version.to_le_bytes());
        fs::write(&table, &newer).unwrap();
        match Broker::open(dir.path()) {
            Err(Error::UnsupportedVersion { path, found, supported }) => {
                assert_eq!(path, table);
                assert_eq!(found, u32::from(version));
                assert_eq!(supported, 2);
            }
            other => panic!("version {version}: {other:?}"),
        }
        // Nothing was removed because of the unreadable table.
        assert!(dir.path().join("a-0").is_dir());
        assert!(dir.path().join("a-1").is_dir());
        assert!(dir.path().join("b-0").is_dir());
        assert_eq!(fs::read(&table).unwrap(), newer);
    }
}

// ---------------------------------------------------------------------------------------
// 10. auto-create
// ---------------------------------------------------------------------------------------

#[test]
fn auto_create_makes_unknown_topics_with_the_configured_partitions() {
    let dir = temp_dir();
    {
        let broker = Broker::builder()
            .auto_create_topics(Some(TopicConfig::with_partitions(2).max_message_bytes(8192)))
            .open(dir.path())
            .unwrap();
        let p = producer(&broker);
        let meta = p.send(ProducerRecord::new("events").key("k").value("v")).unwrap();
        assert_eq!(&*meta.topic, "events");
        assert_eq!(meta.partition, partition_for_key(b"k", 2));
        assert_eq!(meta.offset, 0);
        let desc = broker.describe_topic("events").unwrap();
        assert_eq!(desc.config, TopicConfig::with_partitions(2).max_message_bytes(8192));
        assert_eq!(desc.partitions.len(), 2);

        // Through send_async and send_batch too.
        let d = p.send_async(ProducerRecord::new("async-made").partition(1).value("a"));
        p.flush().unwrap();
        assert_eq!(d.wait().unwrap().offset, 0);
        let metas = p
            .send_batch(&[ProducerRecord::new("batch-made").partition(1).value("b")])
            .unwrap()
            .to_vec();
        assert_eq!((metas[0].partition, metas[0].offset), (1, 0));
        assert_eq!(broker.list_topics(), ["async-made", "batch-made", "events"]);

        // An explicit partition beyond the auto-created count is refused.
        match p.send(ProducerRecord::new("fresh").partition(2).value("x")) {
            Err(Error::InvalidPartition {
                topic,
                partition,
                partitions,
            }) => assert_eq!((topic.as_str(), partition, partitions), ("fresh", 2, 2)),
            other => panic!("{other:?}"),
        }
        // A bad name is still refused, and creates nothing.
        match p.send(ProducerRecord::new("../escape").value("x")) {
            Err(Error::InvalidTopicName { name, .. }) => assert_eq!(name, "../escape"),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().parent().unwrap().join("escape-0").exists());
        // Explicit creation still wins over the auto-create config.
        broker
            .create_topic("explicit", TopicConfig::with_partitions(5))
            .unwrap();
        assert_eq!(broker.describe_topic("explicit").unwrap().partitions.len(), 5);
    }
    // Auto-created topics are ordinary topics after reopen (even without auto-create).
    let broker = Broker::open(dir.path()).unwrap();
    // "fresh" was created by the send that then named a partition it does not have.
    assert_eq!(
        broker.list_topics(),
        ["async-made", "batch-made", "events", "explicit", "fresh"]
    );
    assert_eq!(broker.describe_topic("events").unwrap().partitions.len(), 2);
}

#[test]
fn without_auto_create_unknown_topics_are_refused_and_nothing_is_created() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    let before = entries(dir.path());
    let p = producer(&broker);
    match p.send(ProducerRecord::new("missing").value("v")) {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "missing"),
        other => panic!("{other:?}"),
    }
    match p.send_async(ProducerRecord::new("missing").key("k").value("v")).wait() {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "missing"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.metrics().errors, 2);
    match p.send_batch(&[ProducerRecord::new("missing").value("v")]) {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "missing"),
        other => panic!("{other:?}"),
    }
    p.flush().unwrap();
    assert!(broker.list_topics().is_empty());
    assert_eq!(entries(dir.path()), before);
    assert!(!dir.path().join("missing-0").exists());
    assert_eq!(p.metrics().records_sent, 0);
    assert_eq!(
        p.metrics().errors,
        3,
        "the record of the failed send_batch counts as a failed send"
    );
}

#[test]
fn invalid_auto_create_config_is_refused_at_open() {
    let dir = temp_dir();
    match Broker::builder()
        .auto_create_topics(Some(TopicConfig::with_partitions(0)))
        .open(dir.path())
    {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "partitions"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 11. temporary broker
// ---------------------------------------------------------------------------------------

#[test]
fn temporary_directory_lives_until_the_last_clone_and_producer_are_dropped() {
    let broker = Broker::temporary().unwrap();
    let dir = broker.dir().to_path_buf();
    assert!(dir.is_dir());
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let clone = broker.clone();
    let p = producer(&broker);
    assert_eq!(send_n(&p, "t", 1, 2, "v"), [0, 1]);
    drop(broker);
    assert!(dir.join("t-1").is_dir());
    assert_eq!(key_values(&records_of(&clone, "t", 1)), expected_kv(2, "v"));

    let on_thread = std::thread::spawn(move || {
        assert_eq!(clone.describe_topic("t").unwrap().partitions[1].log_end_offset, 2);
        clone
    })
    .join()
    .unwrap();
    assert!(dir.is_dir());
    drop(on_thread);
    // The producer still holds the broker.
    assert!(dir.is_dir());
    assert_eq!(send_n(&p, "t", 1, 1, "w"), [2]);
    drop(p);
    assert!(!dir.exists(), "{} still exists", dir.display());

    // Two temporary brokers never share a directory.
    let a = Broker::temporary().unwrap();
    let b = Broker::temporary().unwrap();
    assert_ne!(a.dir(), b.dir());
}

// ---------------------------------------------------------------------------------------
// 12. auto traits
// ---------------------------------------------------------------------------------------

#[test]
fn broker_and_producer_are_send_sync_clone() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send_sync<T: Send + Sync>() {}
    send_sync_clone::<Broker>();
    send_sync_clone::<Producer>();
    send_sync_clone::<brooklet::BrokerBuilder>();
    send_sync_clone::<TopicConfig>();
    send_sync_clone::<ProducerConfig>();
    send_sync::<brooklet::Delivery>();
    send_sync::<Error>();
}

/// A handle to a deleted topic's log must not touch a topic recreated at the same path
/// (storage review finding: retention and delete_records_before ignored the closed flag).
#[test]
fn stale_log_handle_of_a_deleted_topic_cannot_touch_the_recreated_topic() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    for i in 0..3 {
        producer
            .send(ProducerRecord::new("t").value(format!("old-{i}")))
            .unwrap();
    }
    let stale = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    broker.delete_topic("t").unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    for i in 0..3 {
        producer
            .send(ProducerRecord::new("t").value(format!("new-{i}")))
            .unwrap();
    }
    assert!(stale.delete_records_before(2).is_err());
    assert!(stale.enforce_retention().is_err());
    let fresh = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    assert_eq!((fresh.log_start_offset(), fresh.log_end_offset()), (0, 3));
    assert!(!broker.dir().join("t-0").join("log-start-offset").exists());
}

/// Small segments with the default 1 MiB message limit: the limit in force is the segment
/// size (found by the crash loop, whose 64 KiB segments were refused as an invalid config).
#[test]
fn small_segments_with_the_default_message_limit_are_a_valid_topic() {
    let broker = Broker::temporary().unwrap();
    broker
        .create_topic("small", TopicConfig::with_partitions(1).segment_bytes(64 << 10))
        .unwrap();
    let p = producer(&broker);
    let meta = p.send(ProducerRecord::new("small").value(vec![b'x'; 1000])).unwrap();
    assert_eq!(meta.offset, 0);
    match p.send(ProducerRecord::new("small").value(vec![b'x'; 70 << 10])) {
        Err(Error::RecordTooLarge { max, .. }) => assert_eq!(max, 64 << 10),
        other => panic!("{other:?}"),
    }
}

/// Protects a recreated topic from inheriting the deleted topic's committed offsets (Kafka
/// ties offsets to the topic id). `delete_topic` writes the topic table, then the offset
/// tombstones; if those fail (or the process dies in between), the old offsets stayed, and
/// a group reading the new topic skipped its first records (and, without a reopen, the
/// old partition directories stayed too, so the new topic even began with the old records).
/// Both `create_topic` and open now drop offsets and directories of topics that do not
/// exist; if that fails, create fails.
#[test]
fn a_recreated_topic_never_inherits_the_old_topics_committed_offsets() {
    use brooklet::io::{EIO, Fault, FaultFs, FaultOp};
    use brooklet::{ConsumerConfig, OffsetAndMetadata, OffsetReset};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    let tp = TopicPartition::new("t", 0);
    let commit_5 = |broker: &Broker| {
        let mut c = broker
            .consumer(ConsumerConfig::group("g").auto_offset_reset(OffsetReset::Earliest))
            .unwrap();
        c.assign(std::slice::from_ref(&tp)).unwrap();
        c.commit_offsets(&BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(5))]))
            .unwrap();
    };
    let fail_next_write = |fs: &FaultFs| {
        fs.inject(Fault {
            op: FaultOp::Write,
            nth: 1,
            errno: EIO,
            forever: false,
        });
    };
    for reopen in [false, true] {
        let dir = temp_dir();
        let fs = FaultFs::new();
        let broker = Broker::builder().vfs(Arc::new(fs.clone())).open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        send_n(&producer(&broker), "t", 0, 5, "old");
        commit_5(&broker);
        // The topic table is written (write 1); the offset tombstones (write 2) fail.
        fs.inject(Fault {
            op: FaultOp::Write,
            nth: 2,
            errno: EIO,
            forever: false,
        });
        assert!(broker.delete_topic("t").is_err());
        assert!(broker.list_topics().is_empty());
        assert_eq!(
            broker.committed_offset("g", &tp).map(|o| o.offset),
            Some(5),
            "reopen={reopen}"
        );
        let broker = if reopen {
            drop(broker);
            let broker = Broker::open(dir.path()).unwrap();
            assert_eq!(broker.committed_offset("g", &tp), None, "open drops them");
            broker
        } else {
            // If the stale offsets cannot be deleted, the topic is not created.
            fail_next_write(&fs);
            assert!(matches!(
                broker.create_topic("t", TopicConfig::with_partitions(1)),
                Err(Error::Io { .. })
            ));
            assert!(broker.list_topics().is_empty());
            broker
        };
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        assert_eq!(broker.committed_offset("g", &tp), None, "reopen={reopen}");
        send_n(&producer(&broker), "t", 0, 10, "new");
        let mut c = broker
            .consumer(ConsumerConfig::group("g").auto_offset_reset(OffsetReset::Earliest))
            .unwrap();
        c.subscribe(&["t"]).unwrap();
        let mut offsets = Vec::new();
        let start = std::time::Instant::now();
        while offsets.len() < 10 && start.elapsed() < Duration::from_secs(20) {
            offsets.extend(c.poll(Duration::from_millis(50)).unwrap().iter().map(|r| r.offset()));
        }
        assert_eq!(offsets, (0..10).collect::<Vec<u64>>(), "reopen={reopen}");
    }
}

/// With `Synced` committed offsets, a commit appended but not yet fsynced is not in the
/// table yet; deleting the topic must tombstone it too. It was missed (the deletion looked
/// at the table only), so the commit reached the table when its fsync came and the topic
/// created again under the name started at the deleted topic's offset, also after a reopen.
#[test]
fn a_commit_not_yet_durable_when_its_topic_is_deleted_is_not_inherited() {
    use brooklet::{ConsumerConfig, Durability, OffsetReset};
    use std::sync::{Arc, Mutex};
    let dir = temp_dir();
    let tp0 = TopicPartition::new("t", 0);
    {
        let broker = Broker::builder()
            .offsets_durability(Durability::Synced)
            .open(dir.path())
            .unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        let p = broker.producer(ProducerConfig::default());
        for i in 0..5 {
            p.send(ProducerRecord::new("t").partition(0).value(format!("v{i}")))
                .unwrap();
        }
        let mut c = broker
            .consumer(
                ConsumerConfig::group("g")
                    .auto_offset_reset(OffsetReset::Earliest)
                    .enable_auto_commit(false),
            )
            .unwrap();
        c.assign(std::slice::from_ref(&tp0)).unwrap();
        let mut got = 0;
        while got < 5 {
            got += c.poll(Duration::from_millis(100)).unwrap().len();
        }
        let outcome = Arc::new(Mutex::new(None));
        let o = Arc::clone(&outcome);
        c.commit_async(move |r| *o.lock().unwrap() = Some(r.is_ok()));
        assert_eq!(broker.committed_offset("g", &tp0), None, "not durable yet");

        broker.delete_topic("t").unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        // Closing waits for the async commit (it succeeded: its batch is in the log).
        c.close().unwrap();
        assert_eq!(*outcome.lock().unwrap(), Some(true));
        assert_eq!(broker.committed_offset("g", &tp0), None, "inherited in this process");
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.committed_offset("g", &tp0), None, "inherited after a reopen");
}

/// The topic table stores `segment.ms` and `retention.ms` in whole milliseconds, as Kafka
/// does. A duration that would not survive that (below a millisecond, which would be stored
/// as 0 and then refused at every open; a fraction; more milliseconds than a u64) is refused
/// at creation, so a broker can always reopen its own directory with the config it was given.
#[test]
fn durations_the_topic_table_cannot_store_are_refused_at_create() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    let bad = [
        (
            "retention_ms",
            TopicConfig::with_partitions(1).retention_ms(Some(Duration::from_micros(500))),
        ),
        (
            "segment_ms",
            TopicConfig::with_partitions(1).segment_ms(Some(Duration::from_micros(999))),
        ),
        (
            "retention_ms",
            TopicConfig::with_partitions(1).retention_ms(Some(Duration::from_micros(1_500))),
        ),
        (
            "segment_ms",
            TopicConfig::with_partitions(1).segment_ms(Some(Duration::MAX)),
        ),
    ];
    for (i, (field, config)) in bad.into_iter().enumerate() {
        match broker.create_topic(&format!("t{i}"), config) {
            Err(Error::InvalidConfig { field: got, .. }) => assert_eq!(got, field, "case {i}"),
            other => panic!("case {i}: {other:?}"),
        }
    }
    assert!(broker.list_topics().is_empty());
    let ok = TopicConfig::with_partitions(1)
        .retention_ms(Some(Duration::from_millis(1)))
        .segment_ms(Some(Duration::from_millis(u64::MAX)));
    broker.create_topic("ok", ok.clone()).unwrap();
    drop(broker);
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.describe_topic("ok").unwrap().config, ok);
}

/// Kafka's `log.retention.check.interval.ms`: time retention reaches a partition nobody
/// writes to any more. The sealed segments were young when the last append rolled (so the
/// roll's retention kept them); once every record is expired, the broker's retention thread
/// deletes them and, as Kafka's check, the active segment too, without another append: the
/// partition is empty and its offsets go on. Dropping the broker stops the thread before the
/// directory closes: it opens again at once.
#[test]
fn the_retention_thread_empties_an_idle_partition_whose_records_expired() {
    let dir = temp_dir();
    let open = || {
        Broker::builder()
            .retention_check_interval(Some(Duration::from_millis(20)))
            .open(dir.path())
            .unwrap()
    };
    let broker = open();
    let config = TopicConfig::with_partitions(1)
        .segment_bytes(4096)
        .retention_ms(Some(Duration::from_millis(300)));
    broker.create_topic("t", config).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    let send = |i: u64| {
        producer
            .send(ProducerRecord::new("t").value(format!("{i:0>200}")))
            .unwrap()
            .offset
    };
    for i in 0..100 {
        assert_eq!(send(i), i);
    }
    let describe = || broker.describe_topic("t").unwrap().partitions[0].clone();
    let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    assert_eq!((describe().log_start_offset, describe().log_end_offset), (0, 100));
    // Idle from here: only the thread can delete anything.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while describe().log_start_offset < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired records were never deleted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = describe();
    assert_eq!((after.log_start_offset, after.log_end_offset), (100, 100));
    assert_eq!(log.segment_count(), 1);
    assert_eq!(segment_files(&dir.path().join("t-0")), ["00000000000000000100.log"]);
    assert!(read_all(&log).is_empty());
    // Offsets go on.
    assert_eq!(send(100), 100);
    drop((producer, log));
    drop(broker);
    let again = open();
    let reopened = again.describe_topic("t").unwrap().partitions[0].clone();
    assert_eq!((reopened.log_start_offset, reopened.log_end_offset), (100, 101));
}

/// The `.log` files in a partition directory, sorted.
fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// A zero interval is refused; `None` runs no thread.
#[test]
fn a_zero_retention_check_interval_is_refused() {
    let dir = temp_dir();
    let refused = Broker::builder()
        .retention_check_interval(Some(Duration::ZERO))
        .open(dir.path());
    assert!(matches!(
        refused,
        Err(Error::InvalidConfig {
            field: "retention_check_interval",
            ..
        })
    ));
    Broker::builder()
        .retention_check_interval(None)
        .open(dir.path())
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Altering a topic's configuration
// ---------------------------------------------------------------------------------------

/// Each altered setting reaches the live partitions at its next use — the size limit also
/// a producer that was already sending to them — and the table keeps them across a
/// reopen; stored records are not rewritten.
#[test]
fn altered_topic_settings_apply_to_live_partitions_and_survive_reopen() {
    let dir = temp_dir();
    // (No time retention here: the record stamped 1970 would be deleted at the roll.)
    let altered = TopicConfig::with_partitions(2)
        .max_message_bytes(2048)
        .timestamp_type(TimestampType::LogAppendTime)
        .segment_bytes(4096)
        .retention_bytes(Some(1 << 30));
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
        let p = producer(&broker);
        let big = vec![7u8; 3000];
        // Before: the default 1 MiB limit takes it, and CreateTime keeps the producer's time.
        let before = p
            .send(
                ProducerRecord::new("t")
                    .partition(0)
                    .value(vec![1u8; 5000])
                    .timestamp(1_000),
            )
            .unwrap();
        assert_eq!((before.offset, before.timestamp), (0, 1_000));
        let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
        assert_eq!(log.segment_count(), 1);

        broker.alter_topic_config("t", altered.clone()).unwrap();
        assert_eq!(broker.describe_topic("t").unwrap().config, altered);
        assert_eq!(log.config().effective_max_batch_bytes(), 2048);
        // The same producer now gets the new limit, blocking and async, and writes nothing.
        match p.send(ProducerRecord::new("t").partition(0).value(big.clone())) {
            Err(Error::RecordTooLarge { size, max: 2048 }) => assert!(size > 3000, "{size}"),
            other => panic!("{other:?}"),
        }
        match p
            .send_async(ProducerRecord::new("t").partition(1).value(big.clone()))
            .wait()
        {
            Err(Error::RecordTooLarge { max: 2048, .. }) => {}
            other => panic!("{other:?}"),
        }
        // LogAppendTime from the next append on: the producer's timestamp is replaced, and
        // the metadata reports the stored one.
        let after = p
            .send(ProducerRecord::new("t").partition(0).value("small").timestamp(1_000))
            .unwrap();
        assert_eq!(after.offset, 1);
        assert_ne!(after.timestamp, 1_000);
        let stored = records_of(&broker, "t", 0);
        assert_eq!(
            stored.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            [1_000, after.timestamp],
            "the earlier record keeps its create time"
        );
        // The first segment (5 KB) was already past the new 4 KiB segment size: it rolled at
        // the next append.
        assert_eq!(log.segment_count(), 2);
        assert_eq!(broker.describe_topic("t").unwrap().partitions[1].log_end_offset, 0);
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.describe_topic("t").unwrap().config, altered);
    let log = broker.partition_log(&TopicPartition::new("t", 1)).unwrap();
    let want = LogConfig::default()
        .segment_bytes(4096)
        .retention_bytes(Some(1 << 30))
        .max_batch_bytes(2048)
        .timestamp_type(TimestampType::LogAppendTime);
    assert_eq!(log.config(), want);
    match producer(&broker).send(ProducerRecord::new("t").partition(1).value(vec![0u8; 3000])) {
        Err(Error::RecordTooLarge { max: 2048, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Lowering retention on a live topic frees its old segments at the next retention check,
/// with no restart and no record rewritten.
#[test]
fn lowering_retention_on_a_live_topic_frees_old_segments_at_the_next_check() {
    let broker = Broker::temporary().unwrap();
    broker
        .create_topic("t", TopicConfig::with_partitions(1).segment_bytes(4096))
        .unwrap();
    let p = producer(&broker);
    for i in 0..40 {
        p.send(ProducerRecord::new("t").value(vec![i as u8; 500])).unwrap();
    }
    let log = broker.partition_log(&TopicPartition::new("t", 0)).unwrap();
    let segments = log.segment_count();
    assert!(segments >= 5, "{segments}");
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, Vec::<u64>::new());
    let config = broker
        .describe_topic("t")
        .unwrap()
        .config
        .set("retention.bytes", "4096")
        .unwrap();
    broker.alter_topic_config("t", config).unwrap();
    let report = log.enforce_retention().unwrap();
    assert_eq!(report.segments_deleted.len(), segments - 2, "{report:?}");
    assert_eq!(log.segment_count(), 2);
    let d = &broker.describe_topic("t").unwrap().partitions[0];
    assert_eq!(d.log_end_offset, 40);
    assert_eq!(d.log_start_offset, read_all(&log)[0].offset);
}

/// What alter refuses changes nothing: another partition count, a bad value, an unknown
/// topic, a read-only broker.
#[test]
fn alter_topic_config_refuses_what_it_cannot_apply_and_changes_nothing() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    let original = TopicConfig::with_partitions(3).retention_ms(Some(Duration::from_secs(60)));
    broker.create_topic("t", original.clone()).unwrap();
    let table = fs::read(dir.path().join("meta").join("topics")).unwrap();
    match broker.alter_topic_config("t", original.clone().partition_count(4)) {
        Err(Error::InvalidConfig {
            field: "partitions",
            reason,
        }) => {
            assert!(reason.contains("add_partitions"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    match broker.alter_topic_config("t", original.clone().segment_bytes(10)) {
        Err(Error::InvalidConfig {
            field: "segment_bytes", ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match broker.alter_topic_config("nope", original.clone()) {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "nope"),
        other => panic!("{other:?}"),
    }
    assert_eq!(broker.describe_topic("t").unwrap().config, original);
    assert_eq!(fs::read(dir.path().join("meta").join("topics")).unwrap(), table);
    let reader = Broker::open_read_only(dir.path()).unwrap();
    assert!(matches!(
        reader.alter_topic_config("t", original.clone().retention_ms(None)),
        Err(Error::ReadOnly { .. })
    ));
    let log = reader.partition_log(&TopicPartition::new("t", 0)).unwrap();
    assert!(matches!(log.set_config(log.config()), Err(Error::ReadOnly { .. })));
}

/// A record queued by `send_async` under the old size limit that a lowered
/// `max_message_bytes` now refuses fails alone: the records queued with it are stored and
/// their deliveries say so (as Kafka's producer splits a batch the broker refuses as too
/// large), so none is reported failed while it is stored (a retry would duplicate it).
#[test]
fn a_queued_record_too_large_after_alter_fails_alone() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::from_secs(3600)));
    let small = p.send_async(ProducerRecord::new("t").partition(0).value("small"));
    let big = p.send_async(ProducerRecord::new("t").partition(0).value(vec![7u8; 3000]));
    let after = p.send_async(ProducerRecord::new("t").partition(0).value("after"));
    let config = broker.describe_topic("t").unwrap().config.max_message_bytes(2048);
    broker.alter_topic_config("t", config).unwrap();
    let _ = p.flush();
    let stored: Vec<_> = records_of(&broker, "t", 0)
        .into_iter()
        .map(|r| r.value.map(|v| v.to_vec()))
        .collect();
    assert_eq!(stored, [Some(b"small".to_vec()), Some(b"after".to_vec())]);
    assert_eq!(small.wait().unwrap().offset, 0);
    match big.wait() {
        Err(Error::RecordTooLarge { max: 2048, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(after.wait().unwrap().offset, 1);
}

/// `alter_topic_config` lowering and raising `max_message_bytes` over and over while a
/// producer writes batches holding a record between the two limits: every delivery's
/// outcome matches what was stored — a record reported stored is at its offset, a record
/// reported refused is nowhere — whichever moment each change lands at (while a batch is
/// being split and written, too).
#[test]
fn deliveries_match_what_is_stored_while_the_size_limit_changes() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let p = broker.producer(ProducerConfig::default().linger(Duration::from_secs(3600)));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toggler = {
        let (broker, stop) = (broker.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut low = true;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let limit = if low { 2048 } else { 1 << 20 };
                let config = broker.describe_topic("t").unwrap().config.max_message_bytes(limit);
                broker.alter_topic_config("t", config).unwrap();
                low = !low;
            }
        })
    };
    let mut sent = Vec::new();
    for round in 0..3000 {
        for (i, size) in [10usize, 3000, 10, 3000, 10].into_iter().enumerate() {
            let value = format!("{round}-{i}-{}", "x".repeat(size));
            sent.push((value.clone(), p.send_async(ProducerRecord::new("t").value(value))));
        }
        let _ = p.flush();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    toggler.join().unwrap();
    let stored: Vec<(u64, String)> = records_of(&broker, "t", 0)
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()))
        .collect();
    let mut acknowledged = Vec::new();
    for (value, delivery) in sent {
        match delivery.wait() {
            Ok(meta) => acknowledged.push((meta.offset, value)),
            Err(Error::RecordTooLarge { .. }) => {
                assert!(
                    !stored.iter().any(|(_, v)| *v == value),
                    "refused but stored: {}",
                    &value[..12]
                );
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(stored, acknowledged);
}

// ---------------------------------------------------------------------------------------
// Damaged partitions
// ---------------------------------------------------------------------------------------

/// Every file of a directory, with its bytes.
fn dir_bytes(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    entries(dir)
        .into_iter()
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// A partition whose synced records are damaged: by default the broker does not open
/// (nothing cut); with `DamagePolicy::Offline` it opens with that partition offline —
/// readable up to the damage, refusing writes with the damage's error, files untouched —
/// and the others working; once the operator accepts the loss, it is cut and writable.
#[test]
fn a_damaged_partition_fails_open_or_goes_offline_as_the_policy_says() {
    let dir = temp_dir();
    let values = |n: usize, p: u32| (0..n).map(move |i| format!("{p}-{i:0>120}"));
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker
            .create_topic("t", TopicConfig::with_partitions(2).segment_bytes(4096))
            .unwrap();
        let p = producer(&broker);
        for part in 0..2 {
            for v in values(60, part) {
                p.send(ProducerRecord::new("t").partition(part).value(v)).unwrap();
            }
        }
    }
    // A bit flip in the last segment of t-1, whose next open scans it (no clean marker).
    let t1 = dir.path().join("t-1");
    let last = entries(&t1).into_iter().filter(|n| n.ends_with(".log")).max().unwrap();
    let segment = t1.join(&last);
    let mut bytes = fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    fs::write(&segment, bytes).unwrap();
    fs::remove_file(t1.join("clean-shutdown")).unwrap();
    let before = dir_bytes(&t1);

    match Broker::open(dir.path()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, segment),
        other => panic!("{other:?}"),
    }
    assert_eq!(dir_bytes(&t1), before, "the failed open changed t-1");

    {
        let broker = Broker::builder()
            .damage_policy(brooklet::DamagePolicy::Offline)
            .open(dir.path())
            .unwrap();
        let damaged = broker.damaged_partitions();
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].0, TopicPartition::new("t", 1));
        assert!(matches!(&damaged[0].1, Error::Corrupt { path, .. } if *path == segment));
        let p = producer(&broker);
        // t-0 works; a send to t-1 fails with the damage, and so do the log's own writes.
        assert_eq!(
            p.send(ProducerRecord::new("t").partition(0).value("more"))
                .unwrap()
                .offset,
            60
        );
        assert!(matches!(
            p.send(ProducerRecord::new("t").partition(1).value("lost")),
            Err(Error::Corrupt { .. })
        ));
        let log = broker.partition_log(&TopicPartition::new("t", 1)).unwrap();
        assert!(matches!(log.truncate_to(1), Err(Error::Corrupt { .. })));
        assert!(matches!(log.delete_records_before(1), Err(Error::Corrupt { .. })));
        // Its records read back up to the damage, and a read there is the damage.
        let mut read = Vec::new();
        let failure = loop {
            match log.read(read.len() as u64, 1 << 20) {
                Ok(batches) if batches.is_empty() => break None,
                Ok(batches) => {
                    for r in batches.iter().flat_map(|b| b.records()) {
                        read.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
                    }
                }
                Err(e) => break Some(e),
            }
        };
        assert!(matches!(failure, Some(Error::Corrupt { .. })), "{failure:?}");
        assert!(!read.is_empty() && read.len() < 60, "{}", read.len());
        assert_eq!(read, values(read.len(), 1).collect::<Vec<_>>());
        // A group consumer reads both partitions; reaching the damage, it is told once,
        // then the offline partition has nothing for it (as a Kafka partition with no
        // leader) — its polls are not an error each time — while the other goes on.
        use brooklet::{ConsumerConfig, OffsetReset};
        let mut consumer = broker
            .consumer(ConsumerConfig::group("g").auto_offset_reset(OffsetReset::Earliest))
            .unwrap();
        consumer.subscribe(&["t"]).unwrap();
        let (mut got, mut damage_errors, mut empty_polls) = ([0usize; 2], 0, 0);
        for _ in 0..200 {
            if empty_polls == 3 {
                break;
            }
            match consumer.poll(Duration::from_millis(20)) {
                Ok(records) if records.is_empty() => empty_polls += 1,
                Ok(records) => records.iter().for_each(|r| got[r.partition() as usize] += 1),
                Err(Error::Corrupt { path, .. }) => {
                    assert_eq!(path, segment);
                    damage_errors += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [61, read.len()]);
        assert_eq!(damage_errors, 1);
        // A seek back re-reads up to the damage, which is reported again.
        consumer.seek(&TopicPartition::new("t", 1), 0).unwrap();
        let (mut again, mut errors) = (0, 0);
        for _ in 0..5 {
            match consumer.poll(Duration::from_millis(20)) {
                Ok(records) => again += records.len(),
                Err(Error::Corrupt { .. }) => errors += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((again, errors), (read.len(), 1));
        // The committed position stays below the damage.
        consumer.commit().unwrap();
        let committed = consumer.committed(&TopicPartition::new("t", 1)).unwrap();
        assert_eq!(committed.map(|c| c.offset), Some(read.len() as u64));
        // The topic's settings can still change.
        let config = broker
            .describe_topic("t")
            .unwrap()
            .config
            .retention_ms(Some(Duration::from_secs(3600)));
        broker.alter_topic_config("t", config).unwrap();
    }
    assert_eq!(dir_bytes(&t1), before, "the offline partition's files changed");

    // The operator accepts the loss: the next open cuts at the damage, and t-1 takes writes.
    fs::remove_file(t1.join("recovery-point")).unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    assert!(broker.damaged_partitions().is_empty());
    let end = broker.describe_topic("t").unwrap().partitions[1].log_end_offset;
    assert!(end < 60, "{end}");
    let meta = producer(&broker)
        .send(ProducerRecord::new("t").partition(1).value("after"))
        .unwrap();
    assert_eq!(meta.offset, end);
}

// ---------------------------------------------------------------------------------------
// Broker::flush: a checkpoint whose failure reaches the application
// ---------------------------------------------------------------------------------------

/// `Written` records, `Buffered` ones and `Written` commits survive a power loss once
/// `Broker::flush` returned, and (the control) not without it.
#[test]
fn broker_flush_makes_written_records_and_commits_survive_a_power_loss() {
    use brooklet::io::{FaultFs, PowerLoss};
    use brooklet::{ConsumerConfig, Durability, OffsetAndMetadata};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    for flush in [true, false] {
        let dir = temp_dir();
        let fs = FaultFs::new();
        let broker = Broker::builder()
            .vfs(Arc::new(fs.clone()))
            .offsets_durability(Durability::Written)
            .open(dir.path())
            .unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
        assert_eq!(send_n(&producer(&broker), "t", 0, 3, "w"), [0, 1, 2]);
        let buffered = broker.producer(
            ProducerConfig::default()
                .durability(Durability::Buffered)
                .linger(Duration::MAX),
        );
        assert_eq!(send_n(&buffered, "t", 1, 2, "b"), [0, 1]);
        let tp = TopicPartition::new("t", 0);
        let mut consumer = broker.consumer(ConsumerConfig::group("g")).unwrap();
        consumer.assign(std::slice::from_ref(&tp)).unwrap();
        consumer
            .commit_offsets(&BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(2))]))
            .unwrap();
        if flush {
            broker.flush().unwrap();
        }
        fs.power_loss(PowerLoss::DropUnsynced);
        drop((consumer, buffered));
        drop(broker);

        let broker = Broker::open(dir.path()).unwrap();
        let values = |p: u32| -> Vec<String> {
            read_all(&broker.partition_log(&TopicPartition::new("t", p)).unwrap())
                .iter()
                .map(|r| String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).unwrap())
                .collect()
        };
        let committed = broker.committed_offset("g", &tp).map(|o| o.offset);
        if flush {
            assert_eq!(values(0), ["w0", "w1", "w2"]);
            assert_eq!(values(1), ["b0", "b1"]);
            assert_eq!(committed, Some(2));
        } else {
            assert_eq!((values(0).len(), values(1).len(), committed), (0, 0, None));
        }
    }
}

/// A broker over `dir` holding 2 records in `t-0`, whose next fsync fails with `EIO`.
fn broker_whose_next_fsync_fails(dir: &Path) -> Broker {
    use brooklet::io::{EIO, Fault, FaultFs, FaultOp};
    let fs = FaultFs::new();
    let broker = Broker::builder()
        .vfs(std::sync::Arc::new(fs.clone()))
        .open(dir)
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_n(&producer(&broker), "t", 0, 2, "v");
    fs.inject(Fault {
        op: FaultOp::Sync,
        nth: 1,
        errno: EIO,
        forever: false,
    });
    broker
}

/// A failed fsync reaches `Broker::flush`'s caller (and poisons the partition, as it does
/// for a `Synced` append); a read-only broker refuses to flush.
#[test]
fn broker_flush_reports_a_failed_fsync_and_refuses_on_a_read_only_broker() {
    let dir = temp_dir();
    let broker = broker_whose_next_fsync_fails(dir.path());
    assert!(
        matches!(broker.flush(), Err(Error::Io { .. })),
        "the failed fsync was not reported"
    );
    assert!(matches!(
        producer(&broker).send(ProducerRecord::new("t").partition(0).value("after")),
        Err(Error::Poisoned { .. })
    ));
    let reader = Broker::open_read_only(dir.path()).unwrap();
    assert!(matches!(reader.flush(), Err(Error::ReadOnly { .. })));
}

/// `Broker::close` closes the directory as the last drop does, but in the caller's hands:
/// every partition and the committed offsets are closed cleanly (the next open, at once and
/// in the same process, runs no recovery) and everything is there.
#[test]
fn broker_close_closes_cleanly_and_frees_the_directory_at_once() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let sent = send_n(&producer(&broker), "t", 1, 5, "v");
    assert_eq!(sent, [0, 1, 2, 3, 4]);
    let mut consumer = broker.consumer(brooklet::ConsumerConfig::group("g")).unwrap();
    consumer.assign(&[TopicPartition::new("t", 1)]).unwrap();
    consumer
        .commit_offsets(
            &[(TopicPartition::new("t", 1), brooklet::OffsetAndMetadata::new(3))]
                .into_iter()
                .collect(),
        )
        .unwrap();
    consumer.close().unwrap();
    // Many small segments, whose indexes are loaded from their files when read.
    broker
        .create_topic("many", TopicConfig::with_partitions(1).segment_bytes(4096))
        .unwrap();
    let value = "x".repeat(200);
    for _ in 0..400 {
        producer(&broker)
            .send(ProducerRecord::new("many").partition(0).value(value.as_str()))
            .unwrap();
    }
    let held = broker.partition_log(&TopicPartition::new("many", 0)).unwrap();
    broker.close().unwrap();
    // A log the application still held is closed with the rest: no more appends, and no
    // more writes to files that a new owner of the directory may be changing; reads go on.
    let refused = held.append(&[brooklet::Record::new().value("late")], brooklet::Durability::Written);
    assert!(matches!(refused, Err(Error::InvalidArgument { .. })), "{refused:?}");
    let index_files = || -> Vec<std::path::PathBuf> {
        fs::read_dir(dir.path().join("many-0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "index"))
            .collect()
    };
    let indexes = index_files();
    assert!(indexes.len() > 10, "{} segments", indexes.len());
    for index in &indexes {
        fs::remove_file(index).unwrap();
    }
    let reopened = Broker::open(dir.path()).unwrap();
    assert_eq!(read_all(&held).len(), 400);
    assert_eq!(
        index_files(),
        Vec::<std::path::PathBuf>::new(),
        "the closed log wrote index files"
    );
    drop(held);

    for p in 0..2 {
        let log = reopened.partition_log(&TopicPartition::new("t", p)).unwrap();
        assert!(log.recovery_report().clean_shutdown, "t-{p}");
    }
    let log = reopened.partition_log(&TopicPartition::new("t", 1)).unwrap();
    let values: Vec<_> = read_all(&log).into_iter().map(|r| r.value).collect();
    let expected: Vec<_> = (0..5).map(|i| Some(bytes::Bytes::from(format!("v{i}")))).collect();
    assert_eq!(values, expected);
    assert_eq!(
        reopened
            .committed_offset("g", &TopicPartition::new("t", 1))
            .map(|c| c.offset),
        Some(3)
    );
}

/// While a producer or a clone still holds the broker, `close` flushes and says so
/// (`InUse`), and the directory stays open (locked) until the last handle goes.
#[test]
fn broker_close_with_other_handles_alive_is_in_use() {
    let dir = temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = producer(&broker);
    send_n(&producer, "t", 0, 3, "v");
    let clone = broker.clone();
    match broker.close() {
        Err(Error::InUse { path, handles }) => assert_eq!((path, handles), (dir.path().to_path_buf(), 2)),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(matches!(Broker::open(dir.path()), Err(Error::Locked { .. })));
    drop(producer);
    match clone.clone().close() {
        Err(Error::InUse { handles, .. }) => assert_eq!(handles, 1),
        other => panic!("expected InUse, got {other:?}"),
    }
    clone.close().unwrap();
    let reopened = Broker::open(dir.path()).unwrap();
    let log = reopened.partition_log(&TopicPartition::new("t", 0)).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(read_all(&log).len(), 3);
    // A read-only broker's close drops the handle; it has nothing to write.
    drop(log);
    Broker::open_read_only(dir.path()).unwrap().close().unwrap();
}

/// A close whose fsync fails reports it (a drop could only log it), leaves that partition
/// to recover at the next open, and still frees the directory.
#[test]
fn broker_close_reports_a_failed_fsync_and_still_frees_the_directory() {
    let dir = temp_dir();
    let broker = broker_whose_next_fsync_fails(dir.path());
    let closed = broker.close();
    assert!(matches!(closed, Err(Error::Io { .. })), "{closed:?}");
    let reopened = Broker::open(dir.path()).unwrap();
    let log = reopened.partition_log(&TopicPartition::new("t", 0)).unwrap();
    assert!(!log.recovery_report().clean_shutdown);
    assert_eq!(read_all(&log).len(), 2);
}
