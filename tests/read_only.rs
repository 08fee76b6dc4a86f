//! `Broker::open_read_only` and `PartitionLog::open_read_only`: a reader beside a live writer.
//!
//! - a real child process (this test binary, re-executed) appends while a read-only broker in
//!   the parent follows the topic with a consumer: every record arrives exactly once, in
//!   order, with its key, value and header, across segment rolls;
//! - the same with the writer on another thread of this process, opened *after* the reader
//!   (so the reader took no lock);
//! - a batch written in pieces is invisible until its last byte is there, and a damaged one
//!   is never served;
//! - every write API fails with `Error::ReadOnly`, and a read-only session changes no file;
//! - committed offsets are read (snapshot + log) and describe_group shows the lag;
//! - a reader behind the writer's retention jumps to the log start (a consumer resets to it)
//!   and lets go of the deleted segments' files.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use brooklet::{
    Broker, ConsumerConfig, Durability, Error, LogConfig, OffsetAndMetadata, OffsetReset, OffsetSpec, PartitionLog,
    ProducerConfig, ProducerRecord, Record, TopicConfig, TopicPartition,
};

const CHILD_ENV: &str = "BROOKLET_READ_ONLY_CHILD_DIR";
const TOPIC: &str = "live";
const PARTITIONS: u32 = 2;
const CHILD_RECORDS: u64 = 4000;

/// Held while a test spawns a child process, and by a test while it drops a broker and opens
/// the directory again: a child spawned meanwhile holds a copy of every descriptor of this
/// process, the broker's locked `LOCK` file's too, until its `exec` closes them (they are
/// close-on-exec), and the reopen would find the directory locked.
static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn topic_config() -> TopicConfig {
    // Small segments: the reader must follow the writer across many rolls.
    TopicConfig::with_partitions(PARTITIONS).segment_bytes(16 << 10)
}

/// Record `i` of a writer: partition `i % PARTITIONS`, value `v{i}`, key `k{i}`, header `i`.
fn record(i: u64) -> ProducerRecord {
    ProducerRecord::new(TOPIC)
        .partition((i % u64::from(PARTITIONS)) as u32)
        .key(format!("k{i}"))
        .value(format!("v{i}"))
        .header("i", i.to_string())
}

/// Writes records `0..n` through `broker`: single sends, batches of 7 and async sends mixed,
/// with short pauses so that a reader catches the log mid-growth.
fn write_records(broker: &Broker, n: u64) {
    let producer = broker.producer(ProducerConfig::default().durability(Durability::Written));
    let mut i = 0;
    while i < n {
        match (i / 7) % 3 {
            0 => {
                producer.send(record(i)).unwrap();
                i += 1;
            }
            1 => {
                let end = (i + 7).min(n);
                producer.send_batch(&(i..end).map(record).collect::<Vec<_>>()).unwrap();
                i = end;
            }
            _ => {
                let end = (i + 7).min(n);
                let deliveries: Vec<_> = (i..end).map(|j| producer.send_async(record(j))).collect();
                producer.flush().unwrap();
                for d in deliveries {
                    d.wait().unwrap();
                }
                i = end;
            }
        }
        if i % 100 < 8 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.close().unwrap();
}

/// The child's work: runs only when re-executed by the parent with `CHILD_ENV` set.
#[test]
#[ignore = "the child process of follows_a_writer_in_another_process; runs only when re-executed by it"]
fn read_only_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let broker = Broker::open(&dir).unwrap();
    println!("\nOPENED");
    write_records(&broker, CHILD_RECORDS);
    println!("DONE");
}

/// Follows `TOPIC` on `reader` until `n` records arrived (or a minute passed), checking that
/// each partition yields exactly the writer's sequence, whole.
fn follow(reader: &Broker, n: u64) {
    let mut consumer = reader
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    let tps: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(TOPIC, p)).collect();
    consumer.assign(&tps).unwrap();
    let mut next: BTreeMap<u32, u64> = (0..PARTITIONS).map(|p| (p, u64::from(p))).collect();
    let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < n {
        assert!(Instant::now() < deadline, "only {seen} of {n} records arrived");
        let records = consumer.poll(Duration::from_millis(200)).unwrap();
        for r in &records {
            let p = r.partition();
            let i = next[&p];
            assert_eq!(r.value(), Some(format!("v{i}").as_bytes()), "partition {p}");
            assert_eq!(r.key(), Some(format!("k{i}").as_bytes()));
            let header = r.headers().next().unwrap();
            assert_eq!((header.0, header.1), ("i", i.to_string().as_bytes()));
            let expected_offset = offsets.get(&p).map_or(0, |o| o + 1);
            assert_eq!(r.offset(), expected_offset, "offsets are dense and in order");
            offsets.insert(p, r.offset());
            next.insert(p, i + u64::from(PARTITIONS));
            seen += 1;
        }
    }
    // Nothing more, nothing twice.
    assert!(consumer.poll(Duration::from_millis(150)).unwrap().is_empty());
    assert_eq!(seen, n);
}

#[test]
fn follows_a_writer_in_another_process() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = common::temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic(TOPIC, topic_config()).unwrap();
    }
    // The reader opens first and stays open: the child's normal open must still succeed.
    let reader = Broker::open_read_only(dir.path()).unwrap();
    assert!(reader.is_read_only());
    let spawning = SPAWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = common::child_test("read_only_child", CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    drop(spawning);
    let stdout = child.stdout.take().unwrap();
    let output = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    follow(&reader, CHILD_RECORDS);
    let status = child.wait().unwrap();
    let lines = output.join().unwrap();
    assert!(status.success(), "child failed: {lines:?}");
    assert!(lines.iter().any(|l| l == "OPENED") && lines.iter().any(|l| l == "DONE"));
    let d = reader.describe_topic(TOPIC).unwrap();
    let total: u64 = d.partitions.iter().map(|p| p.log_end_offset).sum();
    assert_eq!(total, CHILD_RECORDS);
}

#[test]
fn follows_a_writer_on_another_thread_and_takes_no_lock() {
    let dir = common::temp_dir();
    let reopening = SPAWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic(TOPIC, topic_config()).unwrap();
    }
    let reader = Broker::open_read_only(dir.path()).unwrap();
    // Opened after the reader: the reader holds no lock.
    let writer = Broker::open(dir.path()).unwrap();
    drop(reopening);
    let n = 2500;
    let thread = std::thread::spawn(move || write_records(&writer, n));
    follow(&reader, n);
    thread.join().unwrap();
    // A second reader opened now sees the same.
    let again = Broker::open_read_only(dir.path()).unwrap();
    let ends: Vec<u64> = again
        .describe_topic(TOPIC)
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.log_end_offset)
        .collect();
    assert_eq!(ends, [n / 2, n / 2]);
}

#[test]
fn a_batch_written_in_pieces_is_invisible_until_whole_and_a_damaged_one_never_served() {
    // Make three batches with a real writer, then replay its segment file byte range by
    // byte range into another directory that a read-only log follows.
    let source = common::temp_dir();
    {
        let log = PartitionLog::open(source.path(), LogConfig::default()).unwrap();
        for i in 0..3 {
            log.append(
                &[
                    Record::new().value(format!("a{i}")),
                    Record::new().value(format!("b{i}")),
                ],
                Durability::Written,
            )
            .unwrap();
        }
    }
    let segment = std::fs::read(source.path().join("00000000000000000000.log")).unwrap();
    let batch_len = segment.len() / 3;
    let target = common::temp_dir();
    let path = target.path().join("00000000000000000000.log");
    std::fs::write(&path, &segment[..batch_len]).unwrap();
    let reader = PartitionLog::open_read_only(target.path(), LogConfig::default()).unwrap();
    assert_eq!(reader.log_end_offset(), 2);
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    use std::io::Write;
    // The second batch, a few bytes at a time: never visible before its last byte.
    for at in (batch_len..2 * batch_len).step_by(5) {
        let end = (at + 5).min(2 * batch_len);
        file.write_all(&segment[at..end]).unwrap();
        let expected = if end == 2 * batch_len { 4 } else { 2 };
        assert_eq!(reader.log_end_offset(), expected, "after {end} bytes");
        assert_eq!(common::read_from(&reader, 0, 1 << 20).len() as u64, expected);
    }
    // The third batch with one byte flipped: never served, not an error either.
    let mut bad = segment[2 * batch_len..].to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    file.write_all(&bad).unwrap();
    assert_eq!(reader.log_end_offset(), 4);
    assert_eq!(reader.read(4, 1 << 20).unwrap().len(), 0);
    let values: Vec<_> = common::read_from(&reader, 0, 1 << 20)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(values, ["a0", "b0", "a1", "b1"]);
    // The read-only log wrote nothing: no LOCK, no index, no checkpoint.
    drop(reader);
    let names: Vec<_> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["00000000000000000000.log"]);
}

/// Every file under `dir` with its size and modification time.
fn snapshot_files(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.insert(
                entry.path().display().to_string(),
                (meta.len(), meta.modified().unwrap()),
            );
        }
    }
    out
}

#[test]
fn writes_fail_with_read_only_and_nothing_on_disk_changes() {
    let dir = common::temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic(TOPIC, topic_config()).unwrap();
        write_records(&broker, 100);
        let mut c = broker
            .consumer(
                ConsumerConfig::group("g")
                    .auto_offset_reset(OffsetReset::Earliest)
                    .enable_auto_commit(false),
            )
            .unwrap();
        c.subscribe(&[TOPIC]).unwrap();
        let mut got = 0;
        while got < 30 {
            got += c.poll(Duration::from_secs(1)).unwrap().len();
        }
        c.commit_offsets(&BTreeMap::from([
            (TopicPartition::new(TOPIC, 0), OffsetAndMetadata::new(20)),
            (TopicPartition::new(TOPIC, 1), OffsetAndMetadata::new(10)),
        ]))
        .unwrap();
        c.close().unwrap();
    }
    let before = snapshot_files(dir.path());
    let reader = Broker::open_read_only(dir.path()).unwrap();
    let is_read_only = |r: brooklet::Result<()>| match r {
        Err(e @ Error::ReadOnly { .. }) => {
            assert!(e.to_string().contains("read-only"), "{e}");
        }
        other => panic!("expected ReadOnly, got {other:?}"),
    };
    is_read_only(reader.create_topic("other", TopicConfig::with_partitions(1)));
    is_read_only(reader.add_partitions(TOPIC, 3));
    is_read_only(reader.delete_topic(TOPIC));
    is_read_only(reader.delete_group("g"));
    is_read_only(reader.reset_offsets("g", OffsetSpec::Earliest, None).map(|_| ()));
    let producer = reader.producer(ProducerConfig::default());
    is_read_only(producer.send(record(0)).map(|_| ()));
    is_read_only(producer.send_batch(&[record(0), record(2)]).map(|_| ()));
    is_read_only(producer.send_async(record(1)).wait().map(|_| ()));
    drop(producer);
    let mut c = reader
        .consumer(ConsumerConfig::group("g").enable_auto_commit(false))
        .unwrap();
    let tp0 = TopicPartition::new(TOPIC, 0);
    c.assign(std::slice::from_ref(&tp0)).unwrap();
    // Committed offsets are read: the group resumes at 20.
    let first = c.poll(Duration::from_secs(1)).unwrap();
    assert_eq!(first.iter().next().unwrap().offset(), 20);
    is_read_only(c.commit());
    drop(c);
    let log = reader.partition_log(&tp0).unwrap();
    is_read_only(log.append(&[Record::new().value("x")], Durability::Written).map(|_| ()));
    is_read_only(log.flush());
    is_read_only(log.truncate_to(0).map(|_| ()));
    is_read_only(log.delete_records_before(1).map(|_| ()));
    is_read_only(log.enforce_retention().map(|_| ()));
    drop(log);
    // describe_group from the committed offsets: 50 per partition, lag 30 and 40.
    let d = reader.describe_group("g").unwrap();
    let lags: Vec<_> = d
        .partitions
        .iter()
        .map(|p| (p.committed.as_ref().unwrap().offset, p.lag))
        .collect();
    assert_eq!(lags, [(20, Some(30)), (10, Some(40))]);
    assert_eq!(reader.list_groups(), ["g"]);
    drop(reader);
    assert_eq!(snapshot_files(dir.path()), before, "a read-only session changed files");
}

#[test]
fn not_a_data_directory_is_an_error_and_creates_nothing() {
    let dir = common::temp_dir();
    let missing = dir.path().join("nope");
    let err = Broker::open_read_only(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(!missing.exists());
    let err = Broker::open_read_only(dir.path()).unwrap_err();
    assert!(err.to_string().contains("brooklet data directory"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn offsets_are_read_after_snapshots() {
    // A small compaction threshold: many commits leave a snapshot plus a log tail.
    let dir = common::temp_dir();
    let broker = Broker::builder()
        .offsets_compact_bytes(64 << 10)
        .open(dir.path())
        .unwrap();
    broker.create_topic(TOPIC, topic_config()).unwrap();
    write_records(&broker, 10);
    let mut c = broker.consumer(ConsumerConfig::group("g")).unwrap();
    let tp = TopicPartition::new(TOPIC, 0);
    c.assign(std::slice::from_ref(&tp)).unwrap();
    let metadata = "m".repeat(1000);
    for i in 0..300u64 {
        c.commit_offsets(&BTreeMap::from([(
            tp.clone(),
            OffsetAndMetadata::new(i % 6).metadata(metadata.clone()),
        )]))
        .unwrap();
    }
    assert!(dir.path().join("offsets/snapshot").exists());
    // Read while the writer is still open.
    let reader = Broker::open_read_only(dir.path()).unwrap();
    let committed = reader.committed_offset("g", &tp).unwrap();
    assert_eq!(committed.offset, 299 % 6);
    assert_eq!(committed.metadata, metadata);
    // The writer goes on committing, snapshotting again and deleting log segments: the
    // reader sees the latest after `refresh_offsets`, and only then.
    for i in 300..700u64 {
        c.commit_offsets(&BTreeMap::from([(
            tp.clone(),
            OffsetAndMetadata::new(i % 7).metadata(metadata.clone()),
        )]))
        .unwrap();
    }
    assert_eq!(reader.committed_offset("g", &tp).unwrap().offset, 299 % 6);
    reader.refresh_offsets().unwrap();
    assert_eq!(reader.committed_offset("g", &tp).unwrap().offset, 699 % 7);
    let described = reader.describe_group("g").unwrap();
    assert_eq!(
        described.partitions[0].committed.as_ref().map(|o| o.offset),
        Some(699 % 7)
    );
}

/// A log whose writer closed it cleanly, damaged afterwards inside its last segment: a
/// read-only reader does not pass the damage off as a shorter log. The clean-shutdown
/// marker says how far the segment goes, so stopping short of it is reported as corrupt
/// data when the reader reads there (as a writable open reports it), while opening still
/// works (the rest of a directory stays readable).
#[test]
fn a_read_only_reader_reports_damage_before_a_clean_end_instead_of_a_shorter_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    for i in 0..10 {
        log.append(&[Record::new().value(format!("v{i}"))], Durability::Written)
            .unwrap();
    }
    log.close().unwrap();
    let path = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let reader = PartitionLog::open_read_only(dir.path(), LogConfig::default()).unwrap();
    let end = reader.log_end_offset();
    assert!(end < 10, "the valid prefix ends before the damage: {end}");
    match reader.read(end, 1 << 20) {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains("closed cleanly at offset 10"), "{reason}");
        }
        other => panic!("expected Corrupt at offset {end}, got {other:?}"),
    }
    // Below the damage, records read as stored.
    if end > 0 {
        let first = reader.read(0, 1 << 20).unwrap();
        assert_eq!(first.first().map(|b| b.base_offset()), Some(0));
    }
}

/// Protects: a reader that fell behind the writer's retention is not told its healthy
/// directory is damaged, does not stall at the deleted segment, and lets go of the deleted
/// segments' files. The writer's retention deleted the segment the reader is on and the ones
/// after it (the log start moved past them), while its recovery point, moved at each synced
/// roll, lies beyond: the reader's records end below the recovery point only because they are
/// below the log start, which is not damage. The reader jumps to the writer's first segment,
/// as Kafka's follower does: its start and end are the writer's, an offset below the start is
/// `OffsetOutOfRange`, and no file of the directory stays open deleted.
#[test]
fn a_reader_behind_the_writers_retention_jumps_to_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default().segment_bytes(4096).retention_bytes(Some(8192));
    let writer = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let value = vec![7u8; 200];
    for _ in 0..5 {
        writer
            .append(&[Record::new().value(value.clone())], Durability::Synced)
            .unwrap();
    }
    let reader = PartitionLog::open_read_only(dir.path(), config).unwrap();
    assert_eq!(reader.log_end_offset(), 5);
    // The writer goes on across many rolls, each synced (which moves its recovery point);
    // retention deletes the segment the reader is on and the ones after it.
    while writer.log_start_offset() < 40 {
        writer
            .append(&[Record::new().value(value.clone())], Durability::Synced)
            .unwrap();
    }
    assert!(writer.segment_count() >= 2);
    if let Err(e) = reader.refresh() {
        panic!("a reader behind retention reported {e:?}");
    }
    assert_eq!(reader.log_end_offset(), writer.log_end_offset());
    assert_eq!(reader.log_start_offset(), writer.log_start_offset());
    assert_eq!(reader.segment_count(), writer.segment_count());
    let start = writer.log_start_offset();
    match reader.read(5, 1 << 20) {
        Err(Error::OffsetOutOfRange {
            requested: 5, start: s, ..
        }) => assert_eq!(s, start),
        other => panic!("read below the log start gave {other:?}"),
    }
    let first = reader.read(start, 1 << 20).unwrap();
    assert_eq!(first.first().map(|b| b.base_offset()), Some(start));
    assert_eq!(deleted_files_open_under(dir.path()), Vec::<String>::new());
    // It follows on from there.
    writer
        .append(&[Record::new().value(value.clone())], Durability::Written)
        .unwrap();
    let end = writer.log_end_offset();
    let last = reader.read(end - 1, 1 << 20).unwrap();
    assert_eq!(last.first().map(|b| b.base_offset()), Some(end - 1));
}

/// The files under `dir` this process holds open although they were deleted.
fn deleted_files_open_under(dir: &Path) -> Vec<String> {
    let prefix = dir.canonicalize().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|t| t.starts_with(&prefix) && t.ends_with(" (deleted)"))
        .collect()
}

/// A consumer on a read-only broker that fell behind the writer's retention goes on from the
/// log start (its `auto_offset_reset`), as a Kafka consumer behind the log start does, and
/// then follows the writer: it neither stalls at the deleted segment nor reads a record twice.
#[test]
fn a_consumer_behind_the_writers_retention_resets_to_the_log_start_and_follows() {
    let dir = common::temp_dir();
    let reopening = SPAWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let config = TopicConfig::with_partitions(1)
        .segment_bytes(4096)
        .retention_bytes(Some(8192));
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic(TOPIC, config).unwrap();
    }
    let reader = Broker::open_read_only(dir.path()).unwrap();
    let writer = Broker::open(dir.path()).unwrap();
    drop(reopening);
    let producer = writer.producer(ProducerConfig::default());
    let send = |i: u64| {
        producer
            .send(ProducerRecord::new(TOPIC).value(format!("{i:0>200}")))
            .unwrap()
    };
    for i in 0..5 {
        send(i);
    }
    let mut consumer = reader
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    let tp = TopicPartition::new(TOPIC, 0);
    consumer.assign(std::slice::from_ref(&tp)).unwrap();
    let first: Vec<u64> = consumer
        .poll(Duration::from_secs(5))
        .unwrap()
        .iter()
        .map(|r| r.offset())
        .collect();
    assert_eq!(first, [0, 1, 2, 3, 4]);
    // Retention deletes the segment the consumer is on and the ones after it.
    let mut i = 5;
    while writer.describe_topic(TOPIC).unwrap().partitions[0].log_start_offset < 40 {
        send(i);
        i += 1;
    }
    let start = writer.describe_topic(TOPIC).unwrap().partitions[0].log_start_offset;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < (i - start) as usize {
        assert!(Instant::now() < deadline, "stalled after {got:?}");
        got.extend(consumer.poll(Duration::from_millis(200)).unwrap().iter().map(|r| {
            assert_eq!(r.value(), Some(format!("{:0>200}", r.offset()).as_bytes()));
            r.offset()
        }));
    }
    assert_eq!(got, (start..i).collect::<Vec<_>>());
    // And it follows on.
    send(i);
    let next: Vec<u64> = consumer
        .poll(Duration::from_secs(5))
        .unwrap()
        .iter()
        .map(|r| r.offset())
        .collect();
    assert_eq!(next, [i]);
}

/// `refresh_topics` shows a read-only broker what the writer changed since it opened:
/// a created topic, added partitions (a group member of the reader takes them and reads
/// their records), altered settings, a deleted topic (its consumer gets `UnknownTopic`).
#[test]
fn refresh_topics_shows_created_grown_altered_and_deleted_topics() {
    let dir = common::temp_dir();
    let writer = Broker::open(dir.path()).unwrap();
    writer.create_topic("grows", TopicConfig::with_partitions(1)).unwrap();
    writer.create_topic("goes", TopicConfig::with_partitions(1)).unwrap();
    let producer = writer.producer(ProducerConfig::default());
    producer.send(ProducerRecord::new("grows").value("g0")).unwrap();
    producer.send(ProducerRecord::new("goes").value("x")).unwrap();

    let reader = Broker::open_read_only(dir.path()).unwrap();
    let mut member = reader
        .consumer(ConsumerConfig::group("watch").auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    member.subscribe(&["grows"]).unwrap();
    let mut gone = reader
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    gone.assign(&[TopicPartition::new("goes", 0)]).unwrap();
    assert_eq!(gone.poll(Duration::from_secs(5)).unwrap().len(), 1);
    let first = member.poll(Duration::from_secs(5)).unwrap();
    assert_eq!(
        first.iter().map(|r| r.value().unwrap().to_vec()).collect::<Vec<_>>(),
        [b"g0".to_vec()]
    );

    writer.create_topic("new", TopicConfig::with_partitions(3)).unwrap();
    writer.add_partitions("grows", 3).unwrap();
    let altered = writer
        .describe_topic("grows")
        .unwrap()
        .config
        .retention_ms(Some(Duration::from_secs(3600)));
    writer.alter_topic_config("grows", altered.clone()).unwrap();
    writer.delete_topic("goes").unwrap();
    producer
        .send(ProducerRecord::new("grows").partition(2).value("g2"))
        .unwrap();
    assert_eq!(
        reader.list_topics(),
        ["goes", "grows"],
        "nothing changes before a refresh"
    );

    reader.refresh_topics().unwrap();
    assert_eq!(reader.list_topics(), ["grows", "new"]);
    assert_eq!(reader.describe_topic("grows").unwrap().config, altered);
    assert_eq!(reader.describe_topic("new").unwrap().partitions.len(), 3);
    assert!(matches!(reader.describe_topic("goes"), Err(Error::UnknownTopic { .. })));
    assert!(matches!(gone.poll(Duration::ZERO), Err(Error::UnknownTopic { .. })));
    // The member takes the new partitions and reads the record on partition 2.
    let start = Instant::now();
    let mut values = Vec::new();
    while values.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the new partition's record never came"
        );
        values.extend(
            member
                .poll(Duration::from_millis(50))
                .unwrap()
                .iter()
                .map(|r| r.value().unwrap().to_vec()),
        );
    }
    assert_eq!(values, [b"g2".to_vec()]);
    assert_eq!(member.assignment().len(), 3);
    // A writable broker's refresh does nothing.
    writer.refresh_topics().unwrap();
    assert_eq!(writer.list_topics(), ["grows", "new"]);
}

/// A topic deleted and created again between two refreshes is a new topic to a read-only
/// broker, told apart by its id: the reader's consumers of the old one read the new one's
/// records (from the start, by their reset policy), instead of reading on in the old one's
/// deleted files, or taking the new files for the old ones (which looked like damage).
#[test]
fn refresh_topics_tells_a_topic_created_again_from_the_old_one() {
    let dir = common::temp_dir();
    let writer = Broker::open(dir.path()).unwrap();
    writer.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let producer = writer.producer(ProducerConfig::default());
    for v in ["old0", "old1", "old2"] {
        producer.send(ProducerRecord::new("t").partition(0).value(v)).unwrap();
    }
    let reader = Broker::open_read_only(dir.path()).unwrap();
    let old_id = reader.describe_topic("t").unwrap().id;
    assert_eq!(old_id, writer.describe_topic("t").unwrap().id);
    let mut consumer = reader
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    consumer.assign(&[TopicPartition::new("t", 0)]).unwrap();
    assert_eq!(consumer.poll(Duration::from_secs(5)).unwrap().len(), 3);

    writer.delete_topic("t").unwrap();
    writer.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    producer.send(ProducerRecord::new("t").value("new0")).unwrap();
    producer.send(ProducerRecord::new("t").value("new1")).unwrap();
    let new_id = writer.describe_topic("t").unwrap().id;
    assert_ne!(new_id, old_id);

    reader.refresh_topics().unwrap();
    let d = reader.describe_topic("t").unwrap();
    assert_eq!(
        (d.id, d.partitions.len(), d.partitions[0].log_end_offset),
        (new_id, 1, 2)
    );
    let mut values = Vec::new();
    for _ in 0..100 {
        if values.len() == 2 {
            break;
        }
        let records = consumer.poll(Duration::from_millis(50)).unwrap();
        values.extend(records.iter().map(|r| (r.offset(), r.value().unwrap().to_vec())));
    }
    assert_eq!(values, [(0, b"new0".to_vec()), (1, b"new1".to_vec())]);
    // A refresh with nothing changed keeps the topic (and its id) as it is.
    reader.refresh_topics().unwrap();
    assert_eq!(reader.describe_topic("t").unwrap().id, new_id);
}

/// A reader whose directory is replaced under it — deleted and made again by a new log,
/// as when a topic is deleted and created again — serves what it had and stops there: the
/// new log's files are neither more of its log nor damage to it (the new log's clean
/// close said it was longer than the reader's segment, which read as damage).
#[test]
fn a_reader_of_a_replaced_directory_stops_at_what_it_had() {
    let dir = common::temp_dir();
    let path = dir.path().join("p");
    let writer = PartitionLog::open(&path, LogConfig::default()).unwrap();
    let value = |v: &str| vec![Record::new().value(v.to_owned())];
    writer.append(&value("old0"), Durability::Written).unwrap();
    writer.append(&value("old1"), Durability::Written).unwrap();
    let reader = PartitionLog::open_read_only(&path, LogConfig::default()).unwrap();
    assert_eq!(reader.log_end_offset(), 2);
    writer.append(&value("old2"), Durability::Written).unwrap();
    writer.close().unwrap();
    std::fs::remove_dir_all(&path).unwrap();
    let new = PartitionLog::open(&path, LogConfig::default()).unwrap();
    for v in ["new0", "new1", "new2", "new3", "new4"] {
        new.append(&value(v), Durability::Written).unwrap();
    }
    new.close().unwrap();

    // Its own file's last record (written before the delete) is served; nothing after.
    assert_eq!(reader.log_end_offset(), 3);
    let values: Vec<Vec<u8>> = reader
        .read(0, 1 << 20)
        .unwrap()
        .iter()
        .flat_map(|b| b.records())
        .map(|r| r.unwrap().value.unwrap().to_vec())
        .collect();
    assert_eq!(values, [b"old0".to_vec(), b"old1".to_vec(), b"old2".to_vec()]);
    assert!(reader.read(3, 1 << 20).unwrap().is_empty());
    reader.refresh().unwrap();
    // A new reader reads the new log.
    let fresh = PartitionLog::open_read_only(&path, LogConfig::default()).unwrap();
    assert_eq!(fresh.log_end_offset(), 5);
}

/// `beginning_offsets` of a read-only broker is the writer's log start now (as Kafka's
/// `beginningOffsets` asks the broker), as `end_offsets` is its end: it was the start the
/// reader last happened to see, so records the writer deleted looked still there.
#[test]
fn beginning_offsets_of_a_reader_follow_the_writers_log_start() {
    let dir = common::temp_dir();
    let writer = Broker::open(dir.path()).unwrap();
    writer.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = writer.producer(ProducerConfig::default());
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("t").partition(0).value(format!("{i}")))
            .unwrap();
    }
    let reader = Broker::open_read_only(dir.path()).unwrap();
    let consumer = reader.consumer(ConsumerConfig::default()).unwrap();
    let tp = TopicPartition::new("t", 0);
    let ends = |c: &brooklet::Consumer| {
        (
            c.beginning_offsets(std::slice::from_ref(&tp)).unwrap()[&tp],
            c.end_offsets(std::slice::from_ref(&tp)).unwrap()[&tp],
        )
    };
    assert_eq!(ends(&consumer), (0, 10));
    writer.partition_log(&tp).unwrap().delete_records_before(5).unwrap();
    assert_eq!(ends(&consumer), (5, 10));
}

/// A reader whose directory is replaced before it first used a sealed segment's indexes
/// must not load the new log's index files as its own, even when they describe a `.log` of
/// the same length and end (the same records written again, at other times): it answered
/// `offset_for_timestamp` from the new log's time index, skipping its own segment whose
/// records are the ones asked for.
#[test]
fn a_reader_of_a_replaced_directory_does_not_load_the_new_logs_indexes() {
    let dir = common::temp_dir();
    let path = dir.path().join("p");
    let config = LogConfig::default().segment_bytes(4096);
    let write = |ts: i64| {
        let log = PartitionLog::open(&path, config.clone()).unwrap();
        for i in 0..40 {
            let record = Record::new().value(vec![b'v'; 200]).timestamp(ts + i);
            log.append(&[record], Durability::Written).unwrap();
        }
        assert!(log.segment_count() >= 3);
        log.close().unwrap();
    };
    const OLD_TS: i64 = 1_700_000_000_000;
    write(OLD_TS);
    let reader = PartitionLog::open_read_only(&path, config.clone()).unwrap();
    assert_eq!(reader.log_end_offset(), 40);
    std::fs::remove_dir_all(&path).unwrap();
    write(1_000);

    // Its own records answer, read from its own files.
    assert_eq!(reader.offset_for_timestamp(OLD_TS + 5).unwrap(), Some(5));
    assert_eq!(reader.offset_for_timestamp(OLD_TS + 39).unwrap(), Some(39));
    assert_eq!(reader.offset_for_timestamp(OLD_TS + 40).unwrap(), None);
    assert_eq!(reader.log_end_offset(), 40);
}

/// `(offset, value)` of every record `log` reads from its start to its end.
fn offsets_and_values(log: &PartitionLog) -> Vec<(u64, String)> {
    common::read_all(log)
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()))
        .collect()
}

/// Appends one record per batch, valued `{tag}{i}`, for each `i` of `range`, with a key of
/// 300 bytes so that a 4 KiB segment holds a dozen.
fn append_each(log: &PartitionLog, tag: &str, range: std::ops::Range<u64>) {
    for i in range {
        let record = Record::new().key(vec![b'k'; 300]).value(format!("{tag}{i}"));
        log.append(&[record], Durability::Written).unwrap();
    }
}

/// The `(offset, value)` pairs of runs of records valued `{tag}{offset}`.
fn runs(parts: &[(&str, std::ops::Range<u64>)]) -> Vec<(u64, String)> {
    parts
        .iter()
        .flat_map(|(tag, range)| range.clone().map(move |i| (i, format!("{tag}{i}"))))
        .collect()
}

/// Protects: a reader follows the writer's `truncate_to` as a Kafka follower truncates to its
/// leader, at its next refresh — also one that a read finding the files shorter than it
/// knew makes by itself. It used to keep its view of the files: after a cut it read nothing
/// at all from offset 0 (the cut segment was shorter than it knew), and once the writer
/// appended past the old end it read the new records at offsets that were not theirs and
/// never saw the last ones. Here: a cut that deletes later segments, new records at the
/// offsets cut that reach past the old end (so that sizes cannot tell), two truncations
/// between two refreshes, and a cut below the log start that restarts the log empty.
#[test]
fn a_reader_follows_the_writers_truncations() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default().segment_bytes(4096);
    let writer = PartitionLog::open(dir.path(), config.clone()).unwrap();
    append_each(&writer, "a", 0..40);
    assert!(writer.segment_count() >= 3, "{} segments", writer.segment_count());
    let reader = PartitionLog::open_read_only(dir.path(), config.clone()).unwrap();
    assert_eq!(offsets_and_values(&reader), runs(&[("a", 0..40)]));

    assert_eq!(writer.truncate_to(5).unwrap(), 5);
    assert_eq!(writer.segment_count(), 1);
    // No refresh: the read of the cut segment comes back short, and the reader follows.
    assert_eq!(offsets_and_values(&reader), runs(&[("a", 0..5)]));
    assert_eq!(reader.log_end_offset(), 5);

    append_each(&writer, "b", 5..45);
    assert_eq!(offsets_and_values(&reader), runs(&[("a", 0..5), ("b", 5..45)]));
    assert_eq!(reader.log_end_offset(), 45);

    writer.truncate_to(30).unwrap();
    writer.truncate_to(20).unwrap();
    append_each(&writer, "c", 20..25);
    reader.refresh().unwrap();
    assert_eq!(
        offsets_and_values(&reader),
        runs(&[("a", 0..5), ("b", 5..20), ("c", 20..25)])
    );

    // A batch of five straddling the new log start: a cut below it restarts the log empty at
    // the start.
    let batch: Vec<Record> = (25..30).map(|i| Record::new().value(format!("d{i}"))).collect();
    writer.append(&batch, Durability::Written).unwrap();
    writer.delete_records_before(27).unwrap();
    assert_eq!(writer.truncate_to(0).unwrap(), 27);
    reader.refresh().unwrap();
    assert_eq!(offsets_and_values(&reader), vec![]);
    assert_eq!((reader.log_start_offset(), reader.log_end_offset()), (27, 27));
    append_each(&writer, "e", 27..29);
    assert_eq!(offsets_and_values(&reader), runs(&[("e", 27..29)]));

    let fresh = PartitionLog::open_read_only(dir.path(), config).unwrap();
    assert_eq!(offsets_and_values(&fresh), runs(&[("e", 27..29)]));
}

/// A broker writing `dir`, with the one-partition topic `TOPIC`, and a producer of it.
fn one_partition_writer(dir: &Path) -> (Broker, brooklet::Producer) {
    let writer = Broker::open(dir).unwrap();
    writer.create_topic(TOPIC, TopicConfig::with_partitions(1)).unwrap();
    let producer = writer.producer(ProducerConfig::default());
    (writer, producer)
}

/// Sends one record to `TOPIC` per `i` of `range`, valued `{tag}{i}`.
fn send_each(producer: &brooklet::Producer, tag: &str, range: std::ops::Range<u64>) {
    for i in range {
        producer
            .send(ProducerRecord::new(TOPIC).value(format!("{tag}{i}")))
            .unwrap();
    }
}

/// Protects: a consumer of a read-only broker whose position the writer's truncation left
/// past the end moves back to the cut (Kafka's KIP-320) and reads the records written there
/// since, exactly once; it used to wait at its old position for records that would come at
/// other offsets. With `auto_offset_reset` `None`, the poll fails with `LogTruncated` instead.
#[test]
fn a_consumer_of_a_reader_moves_back_to_the_writers_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, producer) = one_partition_writer(dir.path());
    let tp = TopicPartition::new(TOPIC, 0);
    let send = |tag: &str, range: std::ops::Range<u64>| send_each(&producer, tag, range);
    send("a", 0..10);
    let reader = Broker::open_read_only(dir.path()).unwrap();
    let consumer_with = |reset| {
        let mut consumer = reader
            .consumer(ConsumerConfig::default().auto_offset_reset(reset))
            .unwrap();
        consumer.assign(std::slice::from_ref(&tp)).unwrap();
        consumer
    };
    let mut consumer = consumer_with(OffsetReset::Earliest);
    let mut strict = consumer_with(OffsetReset::None);
    strict.seek(&tp, 10).unwrap();
    let poll_n = |consumer: &mut brooklet::Consumer, n: usize| {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < n && Instant::now() < deadline {
            for r in &consumer.poll(Duration::from_millis(50)).unwrap() {
                got.push((r.offset(), String::from_utf8(r.value().unwrap().to_vec()).unwrap()));
            }
        }
        got
    };
    assert_eq!(poll_n(&mut consumer, 10), runs(&[("a", 0..10)]));

    writer.partition_log(&tp).unwrap().truncate_to(6).unwrap();
    send("b", 6..8);
    assert_eq!(poll_n(&mut consumer, 2), runs(&[("b", 6..8)]));
    assert_eq!(consumer.position(&tp).unwrap(), 8);
    assert!(consumer.poll(Duration::from_millis(100)).unwrap().is_empty());

    match strict.poll(Duration::from_millis(100)) {
        Err(Error::LogTruncated {
            partition,
            position,
            end,
        }) => {
            assert_eq!((partition, position, end), (tp.clone(), 10, 6));
        }
        other => panic!("expected LogTruncated, got {other:?}"),
    }
}

/// Protects: a truncation the writer began but did not finish (its log failed midway, as a
/// crash would leave it) is followed once the next writer's open has recovered the log: the
/// reader's next refresh then gives exactly what that writer has, instead of its view from
/// before the cut (whose later segments it could still read through its open files).
#[test]
fn a_reader_follows_a_truncation_that_failed_midway_once_the_writer_reopens() {
    use brooklet::io::{EIO, Fault, FaultFs, FaultOp};
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default().segment_bytes(4096);
    let disk = FaultFs::new();
    let writer = PartitionLog::open_with_vfs(dir.path(), config.clone(), std::sync::Arc::new(disk.clone())).unwrap();
    append_each(&writer, "a", 0..40);
    let reader = PartitionLog::open_read_only(dir.path(), config.clone()).unwrap();
    assert_eq!(offsets_and_values(&reader), runs(&[("a", 0..40)]));
    // The later segments are deleted; cutting the segment that holds offset 5 fails.
    disk.inject(Fault {
        op: FaultOp::SetLen,
        nth: 1,
        errno: EIO,
        forever: false,
    });
    assert!(writer.truncate_to(5).is_err());
    drop(writer);
    let writer = PartitionLog::open(dir.path(), config).unwrap();
    let end = writer.log_end_offset();
    assert!((5..40).contains(&end), "recovered to {end}");
    append_each(&writer, "b", end..end + 3);
    reader.refresh().unwrap();
    assert_eq!(offsets_and_values(&reader), runs(&[("a", 0..end), ("b", end..end + 3)]));
    assert_eq!(reader.log_end_offset(), end + 3);
}

/// Protects: a read-only consumer that starts from a group's committed offset past a cut the
/// reader followed takes it as committed, once the writer's broker lowered the commits past
/// the cut (its hook, recorded as settled in the `truncations` file). It used to check such
/// an offset against every cut followed since the reader opened: it moved back to the cut
/// and delivered the records after it again, or failed with `LogTruncated`.
#[test]
fn a_commit_made_after_a_followed_cut_is_taken_as_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, producer) = one_partition_writer(dir.path());
    let tp = TopicPartition::new(TOPIC, 0);
    let send = |tag: &str, range: std::ops::Range<u64>| send_each(&producer, tag, range);
    send("a", 0..10);
    let reader = Broker::open_read_only(dir.path()).unwrap();
    let log = reader.partition_log(&tp).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    writer.partition_log(&tp).unwrap().truncate_to(6).unwrap();
    send("b", 6..10);
    assert_eq!(log.log_end_offset(), 10);
    {
        let mut c = writer
            .consumer(ConsumerConfig::group("g").enable_auto_commit(false))
            .unwrap();
        c.assign(std::slice::from_ref(&tp)).unwrap();
        let commit = BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(10))]);
        c.commit_offsets(&commit).unwrap();
    }
    reader.refresh_offsets().unwrap();
    for reset in [OffsetReset::Earliest, OffsetReset::None] {
        let config = ConsumerConfig::group("g")
            .enable_auto_commit(false)
            .auto_offset_reset(reset);
        let mut c = reader.consumer(config).unwrap();
        c.assign(std::slice::from_ref(&tp)).unwrap();
        assert_eq!(c.poll(Duration::from_millis(100)).unwrap().len(), 0, "{reset:?}");
        assert_eq!(c.position(&tp).unwrap(), 10, "{reset:?}");
    }
}

/// Protects: readers of a read-only log, and a consumer of a read-only broker, beside a
/// writer that appends and truncates as fast as it can, never get an error (a read racing a
/// cut in progress used to report the shortened files as damage: thousands of `Corrupt`
/// errors in 15 s) and never a record at an offset it was not written at; once the writer
/// stops, both read exactly what it has. Every value names the offset it was written at.
/// Runs until the writer has truncated 150 times, however fast the machine is
/// (`BROOKLET_STRESS_SECS` keeps it going for at least that many seconds).
#[test]
fn readers_beside_a_writer_that_truncates_get_no_error_and_no_wrong_record() {
    readers_beside_a_truncating_writer(false);
}

/// As `readers_beside_a_writer_that_truncates_get_no_error_and_no_wrong_record`, with a
/// writer that writes through memory maps: its files end in zeros allocated ahead, which
/// every truncation cuts and the next append extends again.
#[test]
fn readers_beside_a_mapped_writer_that_truncates_get_no_error_and_no_wrong_record() {
    readers_beside_a_truncating_writer(true);
}

fn readers_beside_a_truncating_writer(mapped: bool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const TRUNCATIONS: u64 = 150;
    let secs = std::env::var("BROOKLET_STRESS_SECS").map_or(0, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let writer = Broker::builder().mapped_writes(mapped).open(dir.path()).unwrap();
    writer
        .create_topic(TOPIC, TopicConfig::with_partitions(1).segment_bytes(4096))
        .unwrap();
    let tp = TopicPartition::new(TOPIC, 0);
    let log = writer.partition_log(&tp).unwrap();
    // Keys of varying sizes, so that a batch cut and written again lies elsewhere.
    let append = |generation: u64, n: u64| {
        for _ in 0..n {
            let offset = log.log_end_offset();
            let key = vec![b'k'; 100 + (generation % 7) as usize * 37];
            let record = Record::new().key(key).value(format!("{offset}-{generation}"));
            log.append(&[record], Durability::Written).unwrap();
        }
    };
    let at_its_offset = |offset: u64, value: &[u8]| {
        let value = std::str::from_utf8(value).unwrap();
        value.split('-').next() == Some(offset.to_string().as_str())
    };
    append(0, 40);
    let reader = Arc::new(PartitionLog::open_read_only(dir.path().join("live-0"), LogConfig::default()).unwrap());
    let follower = Broker::open_read_only(dir.path()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let problems = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (reader, stop, problems) = (Arc::clone(&reader), Arc::clone(&stop), Arc::clone(&problems));
        readers.push(std::thread::spawn(move || {
            let mut position = 0;
            while !stop.load(Ordering::Relaxed) {
                match reader.read(position, 2048) {
                    Ok(batches) if batches.is_empty() => position = reader.log_start_offset(),
                    Ok(batches) => {
                        for batch in &batches {
                            for r in batch.records() {
                                let r = r.unwrap();
                                if !at_its_offset(r.offset, &r.value.unwrap()) {
                                    problems.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            position = batch.last_offset() + 1;
                        }
                    }
                    Err(Error::OffsetOutOfRange { .. }) => position = reader.log_start_offset(),
                    Err(e) => {
                        eprintln!("read({position}): {e}");
                        problems.fetch_add(1, Ordering::Relaxed);
                        position = 0;
                    }
                }
            }
        }));
    }
    let consumer = {
        let (stop, problems) = (Arc::clone(&stop), Arc::clone(&problems));
        let tp = tp.clone();
        std::thread::spawn(move || {
            let config = ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest);
            let mut c = follower.consumer(config).unwrap();
            c.assign(std::slice::from_ref(&tp)).unwrap();
            let mut idle = 0;
            while idle < 20 {
                let stopped = stop.load(Ordering::Relaxed);
                match c.poll(Duration::from_millis(20)) {
                    Ok(records) => {
                        idle = if records.is_empty() && stopped { idle + 1 } else { 0 };
                        for r in &records {
                            if !at_its_offset(r.offset(), r.value().unwrap()) {
                                problems.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("poll: {e}");
                        problems.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            c.position(&tp).unwrap()
        })
    };
    let mut rng = common::Rng(7);
    let (started, deadline) = (Instant::now(), Instant::now() + Duration::from_secs(secs));
    let (mut generation, mut truncations) = (1, 0);
    // A count, not a time: a slow or loaded machine runs longer instead of testing less.
    while truncations < TRUNCATIONS || Instant::now() < deadline {
        append(generation, 1 + rng.next() % 15);
        if rng.next().is_multiple_of(3) || log.log_end_offset() > 400 {
            let (start, end) = (log.log_start_offset(), log.log_end_offset());
            log.truncate_to(start + rng.next() % (end - start + 1)).unwrap();
            generation += 1;
            truncations += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().unwrap());
    let position = consumer.join().unwrap();
    eprintln!("{truncations} truncations in {:?}", started.elapsed());
    assert_eq!(
        problems.load(Ordering::Relaxed),
        0,
        "errors or misplaced records (printed above)"
    );
    assert_eq!(position, log.log_end_offset());
    reader.refresh().unwrap();
    let written: Vec<_> = common::read_all(&log)
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect();
    let read: Vec<_> = common::read_all(&reader)
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect();
    assert_eq!(read, written);
}
