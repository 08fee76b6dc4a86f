//! Crash loop with real processes: a child process (this test binary, re-executed) opens a
//! broker, produces keyed records on several threads — `Synced` to one topic, `Written` to
//! another — and runs a consumer-group member that commits, printing every acknowledgement
//! to stdout. The parent kills it with SIGKILL at a random moment, reopens the directory and
//! checks, in Jepsen's terms:
//!
//! - **lost write**: every acknowledged record is at its acknowledged offset with identical
//!   key, value, headers and timestamp (`Written` too: the page cache survives a process
//!   crash);
//! - **inconsistent offsets**: each partition's offsets are contiguous from its log start,
//!   and every batch passes its checksum (a read that fails it is an error);
//! - **duplicates**: no acknowledged (key, value) pair is stored twice;
//! - **committed offsets**: each is at most the log end and at least the last commit
//!   acknowledged before the kill;
//! - **non-monotonic poll / poll skip**: within one child, each partition's polls continue
//!   exactly where the previous one ended;
//! - **metadata**: both topics are still there with their partition counts.
//!
//! Then the next child continues on top of the recovered state. Children of odd runs write
//! through memory maps (`BrokerBuilder::mapped_writes`). CI runs 25 kills;
//! `BROOKLET_CRASH_ITERATIONS=1000 cargo test --release --test crash` runs the long version.
//! `BROOKLET_CRASH_SEED` replays a run (the seed is printed on failure).

mod common;

use common::Rng;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brooklet::{
    Broker, ConsumerConfig, Durability, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition,
};

const CHILD_ENV: &str = "BROOKLET_CRASH_CHILD_DIR";
const SYNCED: &str = "synced";
const WRITTEN: &str = "written";
const PARTITIONS: u32 = 4;
const GROUP: &str = "crash-group";

/// The child's work. Runs only when re-executed by the parent with `CHILD_ENV` set.
#[test]
#[ignore = "the child process of crash_loop; runs only when re-executed by it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let run: u64 = std::env::var("BROOKLET_CRASH_RUN").unwrap().parse().unwrap();
    // Every other child writes through memory maps (odd runs): its kill leaves zeros past
    // the last batches, which the next child's open (with or without maps) must cut.
    let broker = Broker::builder().mapped_writes(run % 2 == 1).open(&dir).unwrap();
    for topic in [SYNCED, WRITTEN] {
        broker
            .create_topic_if_not_exists(
                topic,
                // Retention keeps the long run's data (and each verification) bounded.
                TopicConfig::with_partitions(PARTITIONS)
                    .segment_bytes(64 << 10)
                    .retention_bytes(Some(1 << 20)),
            )
            .unwrap();
    }
    // The test harness may have printed `test crash_child ... ` without a newline.
    println!("\nREADY");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (broker, stop) = (broker.clone(), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let (topic, durability) = if t == 3 {
                (WRITTEN, Durability::Written)
            } else {
                (SYNCED, Durability::Synced)
            };
            let producer = broker.producer(ProducerConfig::default().durability(durability));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{}", seq % 13);
                let value = format!("r{run}-t{t}-s{seq}");
                let record = ProducerRecord::new(topic)
                    .key(key.clone())
                    .value(value.clone())
                    .header("seq", seq.to_string());
                let meta = producer.send(record).unwrap();
                println!(
                    "ACK {topic} {} {} {key} {value} {seq} {}",
                    meta.partition, meta.offset, meta.timestamp
                );
                seq += 1;
            }
        }));
    }
    // A group member that polls and commits; prints what each poll returned and each commit.
    let config = ConsumerConfig::group(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .max_poll_records(200);
    let mut consumer = broker.consumer(config).unwrap();
    consumer.subscribe(&[SYNCED]).unwrap();
    loop {
        let records = consumer.poll(Duration::from_millis(20)).unwrap();
        let mut spans: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for r in &records {
            let e = spans.entry(r.partition()).or_insert((r.offset(), r.offset()));
            e.1 = r.offset();
        }
        for (p, (first, last)) in spans {
            println!("POLL {p} {first} {last}");
        }
        consumer.commit().unwrap();
        for tp in consumer.assignment() {
            if let Some(c) = consumer.committed(&tp).unwrap() {
                println!("COMMIT {} {}", tp.partition, c.offset);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    key: String,
    value: String,
    seq: String,
    timestamp: i64,
}

/// Everything the children acknowledged, across runs.
#[derive(Default)]
struct Model {
    /// (topic, partition, offset) -> the record acknowledged there.
    acks: HashMap<(String, u32, u64), Ack>,
    /// partition -> the highest commit acknowledged.
    commits: HashMap<u32, u64>,
    /// Commits acknowledged, across runs.
    commits_acked: u64,
    /// A child has printed READY: both topics exist. (A child killed before that, in a
    /// slow first run, may have created one of them, or none.)
    topics_created: bool,
}

fn run_child(dir: &std::path::Path, run: u64, alive: Duration, model: &mut Model) -> usize {
    let mut child = common::child_test("crash_child", CHILD_ENV, dir)
        .env("BROOKLET_CRASH_RUN", run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        // Only complete lines count: a line cut by the kill was not acknowledged output.
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                lines.push(line.trim_end().to_owned());
            }
            line.clear();
        }
        lines
    });
    // Let it run for `alive`, then kill it wherever it is.
    std::thread::sleep(alive);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    // Killed, not exited: a child that failed on its own is a bug (its panic went to stderr).
    assert_eq!(status.code(), None, "run {run}: the child exited by itself: {status:?}");
    let mut polled: HashMap<u32, u64> = HashMap::new();
    let mut acks = 0;
    for line in &lines {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["ACK", topic, p, o, key, value, seq, ts] => {
                let at = ((*topic).to_owned(), p.parse().unwrap(), o.parse().unwrap());
                let ack = Ack {
                    key: (*key).to_owned(),
                    value: (*value).to_owned(),
                    seq: (*seq).to_owned(),
                    timestamp: ts.parse().unwrap(),
                };
                if let Some(old) = model.acks.insert(at.clone(), ack.clone()) {
                    panic!("run {run}: offset {at:?} acknowledged twice: {old:?} and {ack:?}");
                }
                acks += 1;
            }
            ["POLL", p, first, last] => {
                let (p, first, last): (u32, u64, u64) =
                    (p.parse().unwrap(), first.parse().unwrap(), last.parse().unwrap());
                if let Some(prev) = polled.get(&p) {
                    assert_eq!(first, prev + 1, "run {run}: partition {p} poll skipped or went back");
                }
                assert!(last >= first);
                polled.insert(p, last);
            }
            ["COMMIT", p, o] => {
                let (p, o): (u32, u64) = (p.parse().unwrap(), o.parse().unwrap());
                let best = model.commits.entry(p).or_insert(0);
                *best = (*best).max(o);
                model.commits_acked += 1;
            }
            ["READY"] => model.topics_created = true,
            // The test harness's own lines.
            [""] | ["running", ..] | ["test", ..] => {}
            other => panic!("run {run}: unexpected line {other:?}"),
        }
    }
    acks
}

fn verify(dir: &std::path::Path, run: u64, model: &mut Model) {
    let broker = Broker::open(dir).unwrap_or_else(|e| panic!("run {run}: reopen failed: {e}"));
    if !model.topics_created {
        // Killed while creating the topics: each is created whole or not at all, in order.
        let topics = broker.list_topics();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        assert!(
            [&[][..], &[SYNCED][..], &[SYNCED, WRITTEN][..]].contains(&names.as_slice()),
            "run {run}: topic metadata {topics:?}"
        );
        return;
    }
    assert_eq!(broker.list_topics(), [SYNCED, WRITTEN], "run {run}: topic metadata");
    let mut stored: HashMap<(String, u32, u64), Ack> = HashMap::new();
    let mut seen_values = HashSet::new();
    for topic in [SYNCED, WRITTEN] {
        assert_eq!(
            broker.describe_topic(topic).unwrap().partitions.len(),
            PARTITIONS as usize
        );
        for p in 0..PARTITIONS {
            let log = broker.partition_log(&TopicPartition::new(topic, p)).unwrap();
            let records = common::read_all(&log); // a failed checksum panics inside
            let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
            let expected: Vec<u64> = (log.log_start_offset()..log.log_end_offset()).collect();
            assert_eq!(offsets, expected, "run {run}: {topic}-{p} offsets are not contiguous");
            for r in records {
                let text =
                    |b: &Option<bytes::Bytes>| String::from_utf8(b.as_deref().unwrap_or_default().to_vec()).unwrap();
                let value = text(&r.value);
                assert!(seen_values.insert(value.clone()), "run {run}: {value} stored twice");
                let header = r.headers.first().map(|h| String::from_utf8(h.value.to_vec()).unwrap());
                stored.insert(
                    (topic.to_owned(), p, r.offset),
                    Ack {
                        key: text(&r.key),
                        value,
                        seq: header.unwrap_or_default(),
                        timestamp: r.timestamp,
                    },
                );
            }
        }
    }
    // Records below a partition's log start were deleted by retention, legitimately.
    let mut starts: HashMap<(String, u32), u64> = HashMap::new();
    for topic in [SYNCED, WRITTEN] {
        for p in 0..PARTITIONS {
            let log = broker.partition_log(&TopicPartition::new(topic, p)).unwrap();
            starts.insert((topic.to_owned(), p), log.log_start_offset());
        }
    }
    model
        .acks
        .retain(|(topic, p, o), _| *o >= starts.get(&(topic.clone(), *p)).copied().unwrap_or(0));
    for (at, ack) in &model.acks {
        let got = stored.get(at);
        assert_eq!(
            got,
            Some(ack),
            "run {run}: acknowledged record at {at:?} lost or changed"
        );
    }
    for p in 0..PARTITIONS {
        let tp = TopicPartition::new(SYNCED, p);
        let end = broker.partition_log(&tp).unwrap().log_end_offset();
        let committed = broker.committed_offset(GROUP, &tp).map(|o| o.offset);
        if let Some(&acked) = model.commits.get(&p) {
            let c = committed.unwrap_or_else(|| panic!("run {run}: commit of partition {p} lost"));
            assert!(
                c >= acked,
                "run {run}: partition {p} committed {c} < acknowledged {acked}"
            );
        }
        if let Some(c) = committed {
            assert!(
                c <= end,
                "run {run}: partition {p} committed {c} past the log end {end}"
            );
        }
    }
}

#[test]
fn crash_loop() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let iterations: u64 = std::env::var("BROOKLET_CRASH_ITERATIONS").map_or(25, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("BROOKLET_CRASH_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().unwrap(),
    );
    // Print the seed on failure (the panic hook runs before the unwinding reaches here).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("crash_loop failed; replay with BROOKLET_CRASH_SEED={seed}");
        hook(info);
    }));
    let mut rng = Rng(seed);
    let dir = common::temp_dir();
    let mut model = Model::default();
    let mut total_acks = 0;
    for run in 0..iterations {
        let alive = Duration::from_millis(60 + rng.next() % 250);
        total_acks += run_child(dir.path(), run, alive, &mut model);
        verify(dir.path(), run, &mut model);
    }
    let _ = std::io::stderr().write_all(
        format!(
            "crash_loop: {iterations} SIGKILLs survived, {total_acks} acknowledged records checked, {} acknowledged commits of {} partitions tracked, seed {seed}\n",
            model.commits_acked,
            model.commits.len()
        )
        .as_bytes(),
    );
    assert!(total_acks > 0, "no child acknowledged anything");
}
