//! Consumers and consumer groups: the Kafka tutorials' experiments, with real threads and
//! real files. Every test asserts exact offsets, assignments and committed values.

mod common;
#[path = "common/gate.rs"]
mod gate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use brooklet::io::{EIO, Fault, FaultFs, FaultOp, PowerLoss};
use brooklet::{Bincode, TypedProducer, Utf8};
use brooklet::{
    Broker, Consumer, ConsumerConfig, ConsumerRecord, Durability, Error, GroupState, Json, OffsetAndMetadata,
    OffsetReset, OffsetSpec, PoisonRecord, ProducerConfig, ProducerRecord, RebalanceListener, RoundRobinAssignor,
    StickyAssignor, TimestampType, TopicConfig, TopicPartition, TypedConsumer,
};

const LONG: Duration = Duration::from_secs(30);

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// A group member that starts at the beginning and commits only when told.
fn manual(group: &str) -> ConsumerConfig {
    ConsumerConfig::group(group)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
}

/// Sends `n` records to each partition of `topic`, values `"{partition}-{i}"`, with
/// timestamps `1_000 + i`.
fn fill(broker: &Broker, topic: &str, partitions: u32, n: usize) {
    let producer = broker.producer(ProducerConfig::default());
    let records: Vec<ProducerRecord> = (0..partitions)
        .flat_map(|p| {
            (0..n).map(move |i| {
                ProducerRecord::new(topic)
                    .partition(p)
                    .key(format!("k{i}"))
                    .value(format!("{p}-{i}"))
                    .timestamp(1_000 + i as i64)
            })
        })
        .collect();
    producer.send_batch(&records).unwrap();
}

/// [`fill`], then syncs every partition: records a power loss keeps, so that commits up to
/// `n` stay within the log (a broker lowers the commits past the end of a log that was not
/// closed cleanly to that end).
fn fill_synced(broker: &Broker, topic: &str, partitions: u32, n: usize) {
    fill(broker, topic, partitions, n);
    for p in 0..partitions {
        broker.partition_log(&tp(topic, p)).unwrap().flush().unwrap();
    }
}

fn ids(records: &[ConsumerRecord]) -> Vec<(u32, u64)> {
    records.iter().map(|r| (r.partition(), r.offset())).collect()
}

/// Polls until `n` records arrived (or panics after 30 s).
fn poll_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(start.elapsed() < LONG, "only {} of {n} records arrived", out.len());
        out.extend(consumer.poll(Duration::from_millis(100)).unwrap());
    }
    assert_eq!(out.len(), n, "more records than expected");
    out
}

/// Polls every consumer in turn until each owns exactly its assignment (as the group
/// describes it) and the group is stable.
fn settle(broker: &Broker, group: &str, consumers: &mut [&mut Consumer]) {
    let start = Instant::now();
    loop {
        for c in consumers.iter_mut() {
            c.poll(Duration::from_millis(1)).unwrap();
        }
        let d = broker.describe_group(group).unwrap();
        if d.state == GroupState::Stable && consumers.iter().all(|c| c.generation() == d.generation) {
            return;
        }
        assert!(start.elapsed() < LONG, "group {group} did not settle: {d:?}");
    }
}

fn assignment(c: &Consumer) -> Vec<String> {
    c.assignment().iter().map(ToString::to_string).collect()
}

#[test]
fn three_members_split_three_partitions_and_nothing_is_read_twice() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(3)).unwrap();
    fill(&broker, "orders", 3, 100);
    let seen = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (broker, seen, barrier) = (broker.clone(), Arc::clone(&seen), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut c = broker.consumer(manual("g").max_poll_records(7)).unwrap();
                c.subscribe(&["orders"]).unwrap();
                barrier.wait();
                let mut mine = Vec::new();
                let start = Instant::now();
                while seen.load(Ordering::SeqCst) < 300 {
                    assert!(start.elapsed() < LONG);
                    let records = c.poll(Duration::from_millis(20)).unwrap();
                    seen.fetch_add(records.len(), Ordering::SeqCst);
                    mine.extend(records.iter().map(|r| (r.partition(), r.offset())));
                    c.commit().unwrap();
                }
                mine
            })
        })
        .collect();
    let per_member: Vec<Vec<(u32, u64)>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut all: Vec<(u32, u64)> = per_member.iter().flatten().copied().collect();
    all.sort_unstable();
    let expected: Vec<(u32, u64)> = (0..3).flat_map(|p| (0..100).map(move |o| (p, o))).collect();
    assert_eq!(all, expected, "every record exactly once");
    let mut partitions: Vec<BTreeSet<u32>> = per_member.iter().map(|m| m.iter().map(|(p, _)| *p).collect()).collect();
    partitions.sort();
    assert_eq!(
        partitions,
        [BTreeSet::from([0]), BTreeSet::from([1]), BTreeSet::from([2])]
    );
}

#[test]
fn a_leaving_members_partition_moves_and_resumes_at_its_committed_offset() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(3)).unwrap();
    fill(&broker, "orders", 3, 30);
    let config = manual("g").max_poll_records(10);
    let mut c: Vec<Consumer> = (0..3).map(|_| broker.consumer(config.clone()).unwrap()).collect();
    for consumer in &mut c {
        consumer.subscribe(&["orders"]).unwrap();
    }
    let mut first = Vec::new();
    for consumer in &mut c {
        let records = poll_n(consumer, 10);
        first.push(ids(&records));
        consumer.commit().unwrap();
    }
    assert_eq!(
        first,
        (0..3)
            .map(|p| (0..10).map(|o| (p, o)).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    let leaver = c.pop().unwrap();
    leaver.close().unwrap();
    let (mut a, mut b) = (c.remove(0), c.remove(0));
    let mut rest = Vec::new();
    let start = Instant::now();
    while rest.len() < 60 {
        assert!(start.elapsed() < LONG, "got {} of 60", rest.len());
        rest.extend(ids(&a.poll(Duration::from_millis(10)).unwrap().to_vec()));
        rest.extend(ids(&b.poll(Duration::from_millis(10)).unwrap().to_vec()));
    }
    rest.sort_unstable();
    let expected: Vec<(u32, u64)> = (0..3).flat_map(|p| (10..30).map(move |o| (p, o))).collect();
    assert_eq!(
        rest, expected,
        "partition 2 resumed at 10: nothing lost, nothing read twice"
    );
    // Range over two members: [0, 1] and [2].
    assert_eq!(assignment(&a), ["orders-0", "orders-1"]);
    assert_eq!(assignment(&b), ["orders-2"]);
}

#[test]
fn a_restarted_consumer_resumes_after_its_last_commit() {
    let dir = common::temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("events", TopicConfig::with_partitions(1)).unwrap();
        fill(&broker, "events", 1, 10);
        let mut c = broker.consumer(manual("g").max_poll_records(4)).unwrap();
        c.subscribe(&["events"]).unwrap();
        assert_eq!(ids(&poll_n(&mut c, 4)), [(0, 0), (0, 1), (0, 2), (0, 3)]);
        c.commit().unwrap();
        // Read further without committing: a restart must redeliver these.
        assert_eq!(ids(&poll_n(&mut c, 4)), [(0, 4), (0, 5), (0, 6), (0, 7)]);
    }
    let broker = Broker::open(dir.path()).unwrap();
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["events"]).unwrap();
    let offsets: Vec<u64> = poll_n(&mut c, 6).iter().map(ConsumerRecord::offset).collect();
    assert_eq!(offsets, [4, 5, 6, 7, 8, 9]);
    assert_eq!(c.committed(&tp("events", 0)).unwrap().map(|o| o.offset), Some(4));
}

#[test]
fn two_groups_each_see_every_record() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "orders", 2, 25);
    for group in ["analytics", "billing"] {
        let mut c = broker.consumer(manual(group)).unwrap();
        c.subscribe(&["orders"]).unwrap();
        let mut got = ids(&poll_n(&mut c, 50));
        got.sort_unstable();
        let expected: Vec<(u32, u64)> = (0..2).flat_map(|p| (0..25).map(move |o| (p, o))).collect();
        assert_eq!(got, expected, "group {group}");
        c.commit().unwrap();
    }
    let d = broker.describe_group("analytics").unwrap();
    assert_eq!(d.total_lag(), 0);
    assert_eq!(broker.list_groups(), ["analytics", "billing"]);
}

/// Processes one poll of `records` in a thread that "crashes" (panics) either after
/// processing and before committing (at-least-once) or after committing and before
/// processing (at-most-once). Returns what the crashed consumer processed.
fn crash_after_poll(broker: &Broker, group: &str, commit_first: bool) -> Vec<u64> {
    let processed = Arc::new(Mutex::new(Vec::new()));
    let (b, p) = (broker.clone(), Arc::clone(&processed));
    let group = group.to_owned();
    let crashed = std::thread::spawn(move || {
        let mut c = b.consumer(manual(&group).max_poll_records(5)).unwrap();
        c.subscribe(&["jobs"]).unwrap();
        let records = poll_n(&mut c, 5);
        if commit_first {
            c.commit().unwrap();
            panic!("crash before processing");
        }
        p.lock().unwrap().extend(records.iter().map(ConsumerRecord::offset));
        panic!("crash before committing");
    })
    .join();
    assert!(crashed.is_err(), "the worker thread crashed");
    processed.lock().unwrap().clone()
}

#[test]
fn at_least_once_redelivers_and_at_most_once_loses_across_a_crash() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("jobs", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "jobs", 1, 10);

    // At-least-once: the crashed worker processed 0..5 but never committed.
    assert_eq!(crash_after_poll(&broker, "alo", false), [0, 1, 2, 3, 4]);
    let mut c = broker.consumer(manual("alo")).unwrap();
    c.subscribe(&["jobs"]).unwrap();
    let again: Vec<u64> = poll_n(&mut c, 10).iter().map(ConsumerRecord::offset).collect();
    assert_eq!(
        again,
        (0..10).collect::<Vec<_>>(),
        "0..5 are delivered twice, none lost"
    );

    // At-most-once: the crashed worker committed 5 and processed nothing.
    assert_eq!(crash_after_poll(&broker, "amo", true), Vec::<u64>::new());
    let mut c = broker.consumer(manual("amo")).unwrap();
    c.subscribe(&["jobs"]).unwrap();
    let after: Vec<u64> = poll_n(&mut c, 5).iter().map(ConsumerRecord::offset).collect();
    assert_eq!(after, [5, 6, 7, 8, 9], "0..5 are lost, none twice");
}

#[test]
fn range_and_round_robin_assign_as_kafka_in_a_live_group() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("a", TopicConfig::with_partitions(3)).unwrap();
    broker.create_topic("b", TopicConfig::with_partitions(3)).unwrap();
    for (group, round_robin, expected) in [
        ("range", false, [vec!["a-0", "a-1", "b-0", "b-1"], vec!["a-2", "b-2"]]),
        ("rr", true, [vec!["a-0", "a-2", "b-1"], vec!["a-1", "b-0", "b-2"]]),
    ] {
        let config = if round_robin {
            manual(group).assignor(RoundRobinAssignor)
        } else {
            manual(group)
        };
        let mut m1 = broker.consumer(config.clone()).unwrap();
        let mut m2 = broker.consumer(config).unwrap();
        m1.subscribe(&["a", "b"]).unwrap();
        m2.subscribe(&["a", "b"]).unwrap();
        settle(&broker, group, &mut [&mut m1, &mut m2]);
        assert_eq!([assignment(&m1), assignment(&m2)], expected, "{group}");
        let d = broker.describe_group(group).unwrap();
        assert_eq!(
            d.assignor.as_deref(),
            Some(if round_robin { "roundrobin" } else { "range" })
        );
        assert_eq!(d.members.len(), 2);
    }
}

#[test]
fn sticky_moves_only_the_leaving_members_partitions() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(12)).unwrap();
    let config = manual("s").assignor(StickyAssignor);
    let mut c: Vec<Consumer> = (0..3).map(|_| broker.consumer(config.clone()).unwrap()).collect();
    for consumer in &mut c {
        consumer.subscribe(&["t"]).unwrap();
    }
    {
        let mut refs: Vec<&mut Consumer> = c.iter_mut().collect();
        settle(&broker, "s", &mut refs);
    }
    let before: Vec<BTreeSet<TopicPartition>> = c.iter().map(Consumer::assignment).collect();
    assert!(before.iter().all(|a| a.len() == 4), "{before:?}");
    let generation = c[0].generation();
    c.pop().unwrap().close().unwrap();
    {
        let mut refs: Vec<&mut Consumer> = c.iter_mut().collect();
        settle(&broker, "s", &mut refs);
    }
    assert!(c[0].generation() > generation);
    for (i, consumer) in c.iter().enumerate() {
        let after = consumer.assignment();
        assert_eq!(after.len(), 6);
        assert!(
            after.is_superset(&before[i]),
            "member {i} kept its partitions: {before:?} -> {after:?}"
        );
    }
}

#[test]
fn a_member_that_stops_polling_is_evicted_and_its_commits_are_fenced() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let mut slow = broker
        .consumer(manual("g").max_poll_interval(Duration::from_millis(200)))
        .unwrap();
    let mut fast = broker.consumer(manual("g")).unwrap();
    slow.subscribe(&["t"]).unwrap();
    fast.subscribe(&["t"]).unwrap();
    settle(&broker, "g", &mut [&mut slow, &mut fast]);
    assert_eq!(assignment(&slow), ["t-0"]);
    fill(&broker, "t", 2, 10);
    let records = poll_n(&mut slow, 10);
    assert_eq!(records.last().map(ConsumerRecord::offset), Some(9));
    slow.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(3))]))
        .unwrap();

    // The slow member "processes" for longer than max_poll_interval.
    std::thread::sleep(Duration::from_millis(400));
    // The fast member's poll runs the check, evicts it and takes its partition.
    let start = Instant::now();
    let mut taken: Vec<u64> = Vec::new();
    while fast.assignment().len() < 2 || taken.is_empty() {
        assert!(start.elapsed() < LONG);
        let records = fast.poll(Duration::from_millis(50)).unwrap();
        taken.extend(records.iter().filter(|r| r.partition() == 0).map(|r| r.offset()));
    }
    // The new owner starts at the committed offset.
    assert_eq!(taken.first(), Some(&3));
    let zombie = slow.commit();
    assert!(matches!(zombie, Err(Error::CommitFailed { .. })), "{zombie:?}");
    assert_eq!(
        broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset),
        Some(3),
        "the zombie did not move the group's position"
    );
    // The zombie's next poll notices, gives its partitions up and rejoins as a new member.
    let old_id = slow.member_id().map(str::to_owned);
    slow.poll(Duration::from_millis(10)).unwrap();
    assert_ne!(slow.member_id().map(str::to_owned), old_id);
    assert_eq!(broker.describe_group("g").unwrap().members.len(), 2);
}

#[test]
fn auto_offset_reset_earliest_latest_and_none() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 5);
    let mut earliest = broker.consumer(manual("e")).unwrap();
    earliest.subscribe(&["t"]).unwrap();
    assert_eq!(poll_n(&mut earliest, 5).first().map(ConsumerRecord::offset), Some(0));

    let mut latest = broker
        .consumer(manual("l").auto_offset_reset(OffsetReset::Latest))
        .unwrap();
    latest.subscribe(&["t"]).unwrap();
    assert!(latest.poll(Duration::from_millis(50)).unwrap().is_empty());
    assert_eq!(latest.position(&tp("t", 0)).unwrap(), 5);
    fill(&broker, "t", 1, 1);
    assert_eq!(ids(&poll_n(&mut latest, 1)), [(0, 5)]);

    let mut none = broker
        .consumer(manual("n").auto_offset_reset(OffsetReset::None))
        .unwrap();
    none.assign(&[tp("t", 0)]).unwrap();
    let err = none.poll(Duration::from_millis(10)).unwrap_err();
    assert!(
        matches!(&err, Error::NoCommittedOffset { group: Some(g), partition } if g == "n" && *partition == tp("t", 0)),
        "{err}"
    );
    // With a committed offset there is nothing to reset.
    none.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(4))]))
        .unwrap();
    assert_eq!(ids(&poll_n(&mut none, 2)), [(0, 4), (0, 5)]);
}

#[test]
fn seek_pause_resume_and_offsets_for_times() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 10);
    let mut c = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    c.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    c.seek(&tp("t", 0), 7).unwrap();
    c.pause(&[tp("t", 1)]).unwrap();
    assert_eq!(c.paused(), BTreeSet::from([tp("t", 1)]));
    assert_eq!(ids(&poll_n(&mut c, 3)), [(0, 7), (0, 8), (0, 9)]);
    assert!(
        c.poll(Duration::from_millis(20)).unwrap().is_empty(),
        "partition 1 is paused"
    );
    c.resume(&[tp("t", 1)]).unwrap();
    assert_eq!(
        poll_n(&mut c, 10).first().map(|r| (r.partition(), r.offset())),
        Some((1, 0))
    );

    // Timestamps are 1_000 + i: the first record at or after 1_004 is offset 4.
    let found = c
        .offsets_for_times(&BTreeMap::from([(tp("t", 0), 1_004), (tp("t", 1), 99_999)]))
        .unwrap();
    assert_eq!(found, BTreeMap::from([(tp("t", 0), Some(4)), (tp("t", 1), None)]));
    c.seek_to_beginning(&[tp("t", 0)]).unwrap();
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 0);
    c.seek_to_end(&[tp("t", 0)]).unwrap();
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 10);
    assert!(matches!(c.seek(&tp("t", 9), 0), Err(Error::NotAssigned { .. })));
    assert!(matches!(c.pause(&[tp("other", 0)]), Err(Error::NotAssigned { .. })));
    // Seeking past the end: the next poll resets (earliest) as Kafka does.
    c.seek(&tp("t", 1), u64::MAX).unwrap();
    c.seek(&tp("t", 0), 10).unwrap();
    assert_eq!(
        poll_n(&mut c, 10).first().map(|r| (r.partition(), r.offset())),
        Some((1, 0))
    );
}

#[test]
fn lag_is_reported_exactly() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(3)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    for (p, n) in [(0u32, 10usize), (1, 4), (2, 0)] {
        for i in 0..n {
            producer
                .send(ProducerRecord::new("t").partition(p).value(format!("{i}")))
                .unwrap();
        }
    }
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    c.seek(&tp("t", 1), 4).unwrap();
    c.pause(&[tp("t", 1)]).unwrap();
    let mut got = 0;
    while got < 6 {
        got += c.poll(Duration::from_millis(10)).unwrap().len().min(6);
        if got >= 6 {
            break;
        }
    }
    c.seek(&tp("t", 0), 6).unwrap();
    c.commit_offsets(&BTreeMap::from([
        (tp("t", 0), OffsetAndMetadata::new(6)),
        (tp("t", 1), OffsetAndMetadata::new(1).metadata("checkpoint-1")),
    ]))
    .unwrap();
    assert_eq!(c.lag(&tp("t", 0)).unwrap(), 4);
    let d = broker.describe_group("g").unwrap();
    assert_eq!(d.state, GroupState::Empty, "an assign()-only consumer is not a member");
    let rows: Vec<(String, Option<u64>, u64, Option<u64>)> = d
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition.to_string(),
                p.committed.as_ref().map(|c| c.offset),
                p.log_end_offset,
                p.lag,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("t-0".to_owned(), Some(6), 10, Some(4)),
            ("t-1".to_owned(), Some(1), 4, Some(3))
        ]
    );
    assert_eq!(d.total_lag(), 7);
    assert_eq!(
        c.committed(&tp("t", 1)).unwrap().map(|o| o.metadata),
        Some("checkpoint-1".to_owned())
    );
}

#[test]
fn a_blocked_poll_is_woken_by_an_append_from_another_thread() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(4)).unwrap();
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    assert!(c.poll(Duration::from_millis(10)).unwrap().is_empty());
    let producer = broker.producer(ProducerConfig::default());
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        producer
            .send(ProducerRecord::new("t").partition(2).value("hello"))
            .unwrap()
    });
    // A 30 s timeout: only the append's wake-up makes this return with the record.
    let records = c.poll(LONG).unwrap();
    let meta = sender.join().unwrap();
    assert_eq!(ids(&records.to_vec()), [(2, meta.offset)]);
    assert_eq!(records.iter().next().and_then(|r| r.value()), Some(&b"hello"[..]));
}

/// Records rebalance callbacks and commits in `on_partitions_revoked`.
struct Recorder {
    name: &'static str,
    events: Arc<Mutex<Vec<String>>>,
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let committed = consumer.commit().is_ok();
        self.events.lock().unwrap().push(format!(
            "{} revoked {:?} committed={committed}",
            self.name,
            partitions.iter().map(ToString::to_string).collect::<Vec<_>>()
        ));
    }
    fn on_partitions_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let positions: Vec<u64> = partitions.iter().map(|tp| consumer.position(tp).unwrap()).collect();
        self.events.lock().unwrap().push(format!(
            "{} assigned {:?} at {positions:?}",
            self.name,
            partitions.iter().map(ToString::to_string).collect::<Vec<_>>()
        ));
    }
    fn on_partitions_lost(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        self.events.lock().unwrap().push(format!(
            "{} lost {:?}",
            self.name,
            partitions.iter().map(ToString::to_string).collect::<Vec<_>>()
        ));
    }
}

#[test]
fn the_listener_commits_on_revoke_and_the_new_owner_starts_there() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 10);
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut a = broker.consumer(manual("g").max_poll_records(3)).unwrap();
    a.subscribe_with_listener(
        &["t"],
        Recorder {
            name: "a",
            events: Arc::clone(&events),
        },
    )
    .unwrap();
    // a owns both partitions and reads 3 of partition 0 or 1.
    let first = poll_n(&mut a, 3);
    let moved_partition = 1;
    let read_of_moved = first.iter().filter(|r| r.partition() == moved_partition).count() as u64;
    let mut b = broker.consumer(manual("g")).unwrap();
    b.subscribe_with_listener(
        &["t"],
        Recorder {
            name: "b",
            events: Arc::clone(&events),
        },
    )
    .unwrap();
    settle(&broker, "g", &mut [&mut a, &mut b]);
    assert_eq!(assignment(&a), ["t-0"]);
    assert_eq!(assignment(&b), ["t-1"]);
    assert_eq!(
        *events.lock().unwrap(),
        [
            "a assigned [\"t-0\", \"t-1\"] at [0, 0]".to_owned(),
            "a revoked [\"t-1\"] committed=true".to_owned(),
            format!("b assigned [\"t-1\"] at [{read_of_moved}]"),
        ]
    );
}

#[test]
fn adding_partitions_rebalances_with_a_new_generation() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let mut a = broker.consumer(manual("g")).unwrap();
    let mut b = broker.consumer(manual("g")).unwrap();
    a.subscribe(&["t"]).unwrap();
    b.subscribe(&["t"]).unwrap();
    settle(&broker, "g", &mut [&mut a, &mut b]);
    assert_eq!((assignment(&a), assignment(&b)), (vec!["t-0".to_owned()], vec![]));
    let generation = a.generation();
    broker.add_partitions("t", 4).unwrap();
    settle(&broker, "g", &mut [&mut a, &mut b]);
    assert_eq!(a.generation(), generation + 1);
    assert_eq!(assignment(&a), ["t-0", "t-1"]);
    assert_eq!(assignment(&b), ["t-2", "t-3"]);
    // A topic created after subscribing is assigned once it exists.
    let mut late = broker.consumer(manual("late")).unwrap();
    late.subscribe(&["not-yet"]).unwrap();
    assert!(late.poll(Duration::from_millis(10)).unwrap().is_empty());
    assert!(late.assignment().is_empty());
    broker.create_topic("not-yet", TopicConfig::with_partitions(2)).unwrap();
    late.poll(Duration::from_millis(10)).unwrap();
    assert_eq!(assignment(&late), ["not-yet-0", "not-yet-1"]);
}

#[test]
fn commit_async_reports_through_its_callback_at_the_next_poll() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    poll_n(&mut c, 3);
    let outcome = Arc::new(Mutex::new(None));
    let o = Arc::clone(&outcome);
    c.commit_async(move |r| *o.lock().unwrap() = Some(r.is_ok()));
    assert_eq!(
        *outcome.lock().unwrap(),
        None,
        "reported at the next poll, not inside the call"
    );
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(3));
    c.poll(Duration::from_millis(1)).unwrap();
    assert_eq!(*outcome.lock().unwrap(), Some(true));
}

/// `commit` and `commit_offsets` both report earlier `commit_async` outcomes before they
/// commit, as Kafka's `commitSync` (with or without offsets) does: callbacks see commits
/// in the order they were made.
#[test]
fn commit_async_callbacks_run_before_a_commit_of_either_kind() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    poll_n(&mut c, 3);
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = Arc::clone(&order);
    c.commit_async(move |r| o.lock().unwrap().push(format!("async {}", r.is_ok())));
    c.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(2))]))
        .unwrap();
    order.lock().unwrap().push("commit_offsets".to_owned());
    let o = Arc::clone(&order);
    c.commit_async(move |r| o.lock().unwrap().push(format!("async {}", r.is_ok())));
    c.commit().unwrap();
    order.lock().unwrap().push("commit".to_owned());
    assert_eq!(
        *order.lock().unwrap(),
        ["async true", "commit_offsets", "async true", "commit"]
    );
}

#[test]
fn group_admin_reset_delete_and_topic_deletion() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    broker.create_topic("u", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 2, 10);
    fill(&broker, "u", 1, 10);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t", "u"]).unwrap();
    poll_n(&mut c, 30);
    c.commit().unwrap();
    assert!(matches!(
        broker.reset_offsets("g", OffsetSpec::Earliest, None),
        Err(Error::GroupNotEmpty { members: 1, .. })
    ));
    assert!(matches!(broker.delete_group("g"), Err(Error::GroupNotEmpty { .. })));
    c.close().unwrap();

    let moved = broker.reset_offsets("g", OffsetSpec::Offset(4), Some("t")).unwrap();
    assert_eq!(moved, BTreeMap::from([(tp("t", 0), 4), (tp("t", 1), 4)]));
    let moved = broker.reset_offsets("g", OffsetSpec::Timestamp(1_007), None).unwrap();
    assert_eq!(
        moved,
        BTreeMap::from([(tp("t", 0), 7), (tp("t", 1), 7), (tp("u", 0), 7)])
    );
    let moved = broker.reset_offsets("g", OffsetSpec::Offset(1_000), Some("u")).unwrap();
    assert_eq!(moved, BTreeMap::from([(tp("u", 0), 10)]), "clamped to the log end");
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut got = ids(&poll_n(&mut c, 6));
    got.sort_unstable();
    assert_eq!(got, [(0, 7), (0, 8), (0, 9), (1, 7), (1, 8), (1, 9)]);
    drop(c);

    broker.delete_topic("t").unwrap();
    let d = broker.describe_group("g").unwrap();
    assert_eq!(
        d.partitions.iter().map(|p| p.partition.to_string()).collect::<Vec<_>>(),
        ["u-0"],
        "deleting a topic drops its committed offsets"
    );
    broker.delete_group("g").unwrap();
    assert!(matches!(broker.describe_group("g"), Err(Error::UnknownGroup { .. })));
    assert!(matches!(broker.delete_group("g"), Err(Error::UnknownGroup { .. })));
    assert!(broker.list_groups().is_empty());
}

/// A group left with neither members nor offsets (its members closed without committing,
/// or its only topic was deleted) is unknown to `delete_group` as to `describe_group`.
#[test]
fn deleting_a_group_without_members_or_offsets_is_unknown_group() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    broker.create_topic("u", TopicConfig::with_partitions(1)).unwrap();
    assert_eq!(
        broker.reset_offsets("g", OffsetSpec::Earliest, Some("t")).unwrap(),
        BTreeMap::from([(tp("t", 0), 0)])
    );
    broker.delete_topic("t").unwrap();
    let mut c = broker.consumer(manual("h")).unwrap();
    c.subscribe(&["u"]).unwrap();
    c.poll(Duration::from_millis(1)).unwrap();
    assert_eq!(c.assignment(), BTreeSet::from([tp("u", 0)]));
    drop(c);
    for group in ["g", "h"] {
        assert!(
            matches!(broker.describe_group(group), Err(Error::UnknownGroup { .. })),
            "{group}"
        );
        assert!(
            matches!(broker.delete_group(group), Err(Error::UnknownGroup { .. })),
            "{group}"
        );
    }
}

#[test]
fn a_standalone_commit_is_refused_while_the_group_has_members() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let mut member = broker.consumer(manual("g")).unwrap();
    member.subscribe(&["t"]).unwrap();
    member.poll(Duration::from_millis(1)).unwrap();
    let mut standalone = broker.consumer(manual("g")).unwrap();
    standalone.assign(&[tp("t", 0)]).unwrap();
    let r = standalone.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(0))]));
    assert!(matches!(r, Err(Error::CommitFailed { .. })), "{r:?}");
    let mut nogroup = broker.consumer(ConsumerConfig::default()).unwrap();
    assert!(matches!(nogroup.subscribe(&["t"]), Err(Error::InvalidArgument { .. })));
    nogroup.assign(&[tp("t", 0)]).unwrap();
    nogroup.seek(&tp("t", 0), 0).unwrap();
    assert!(matches!(nogroup.commit(), Err(Error::InvalidArgument { .. })));
    assert!(matches!(
        nogroup.committed(&tp("t", 0)),
        Err(Error::InvalidArgument { .. })
    ));
}

/// A poison record's error says whether its key or its value did not decode (as Kafka's
/// `RecordDeserializationException` names its origin), and a typed send's error whether
/// the key or the value did not encode: the codec's own reason cannot tell them apart when
/// one codec serves both.
#[test]
fn typed_codec_errors_say_whether_the_key_or_the_value_failed() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("p", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    // A key that is not UTF-8 with a good value; a good key with a value that is not JSON.
    producer
        .send(ProducerRecord::new("p").key(&b"\xff"[..]).value("1"))
        .unwrap();
    producer.send(ProducerRecord::new("p").key("k").value("{oops")).unwrap();
    let consumer = broker.consumer(manual("typed-origin")).unwrap();
    let mut typed: TypedConsumer<String, u32, Utf8, Json> = TypedConsumer::new(consumer, Utf8, Json);
    typed.subscribe(&["p"]).unwrap();
    let mut reasons = Vec::new();
    let deadline = Instant::now() + LONG;
    while reasons.len() < 2 && Instant::now() < deadline {
        for item in typed.poll(Duration::from_millis(100)).unwrap() {
            match item.map_err(|poison| poison.error) {
                Err(Error::Serialization { reason }) => reasons.push(reason),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("key: UTF-8 decode: "), "{}", reasons[0]);
    assert!(reasons[1].starts_with("value: JSON decode: "), "{}", reasons[1]);

    // Sending: JSON cannot encode a map with non-string keys, as a key or as a value.
    type PairMap = BTreeMap<(u8, u8), u8>;
    let typed: TypedProducer<PairMap, PairMap> = TypedProducer::new(producer.clone(), Json, Json);
    let (good, bad) = (BTreeMap::new(), BTreeMap::from([((1, 2), 3)]));
    for (key, value, part) in [(&bad, &good, "key"), (&good, &bad, "value")] {
        match typed.send("p", Some(key), value) {
            Err(Error::Serialization { reason }) => {
                assert!(reason.starts_with(&format!("{part}: JSON encode: ")), "{reason}");
            }
            other => panic!("{part}: {other:?}"),
        }
    }
}

#[test]
fn a_typed_consumer_reports_a_poison_record_and_goes_on() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u32,
        amount: f64,
    }
    let broker = Broker::temporary().unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(1)).unwrap();
    broker
        .create_topic("orders.dlq", TopicConfig::with_partitions(1))
        .unwrap();
    let producer = broker.producer(ProducerConfig::default());
    for value in [r#"{"id":1,"amount":2.5}"#, "{oops", r#"{"id":3,"amount":4.0}"#] {
        producer.send(ProducerRecord::new("orders").value(value)).unwrap();
    }
    let consumer = broker.consumer(manual("typed")).unwrap();
    let mut typed: TypedConsumer<String, Order> = TypedConsumer::new(consumer, Json, Json);
    typed.consumer_mut().subscribe(&["orders"]).unwrap();
    let mut good = Vec::new();
    for item in typed.poll(LONG).unwrap() {
        match item {
            Ok(r) => good.push(r.value.unwrap()),
            Err(poison) => {
                let PoisonRecord { raw, error } = *poison;
                assert!(matches!(error, Error::Serialization { .. }));
                producer
                    .send(
                        ProducerRecord::new("orders.dlq")
                            .value(raw.value_bytes().cloned().unwrap())
                            .header("error", error.to_string())
                            .header("source-offset", raw.offset().to_string()),
                    )
                    .unwrap();
            }
        }
    }
    assert_eq!(good, [Order { id: 1, amount: 2.5 }, Order { id: 3, amount: 4.0 }]);
    typed.consumer_mut().commit().unwrap();
    let mut dlq = broker.consumer(manual("dlq")).unwrap();
    dlq.subscribe(&["orders.dlq"]).unwrap();
    let dead = poll_n(&mut dlq, 1);
    assert_eq!(dead[0].value(), Some(&b"{oops"[..]));
    assert_eq!(dead[0].headers()[1].value.as_ref(), b"1");
}

/// A type that is only `Serialize` is sent, and one that is only `Deserialize` (as types
/// from another crate often are) is consumed: each side needs only its own direction.
#[test]
fn typed_producer_and_consumer_need_only_their_own_direction() {
    #[derive(serde::Serialize)]
    struct OrderPlaced<'a> {
        id: u32,
        user: &'a str,
    }
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct OrderSeen {
        id: u32,
        user: String,
    }
    let broker = Broker::temporary().unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(1)).unwrap();
    let typed: TypedProducer<String, OrderPlaced<'_>, Utf8, Bincode> =
        TypedProducer::new(broker.producer(ProducerConfig::default()), Utf8, Bincode);
    for (id, user) in [(1, "ana"), (2, "bo")] {
        typed
            .send("orders", Some(&user.to_string()), &OrderPlaced { id, user })
            .unwrap();
    }
    let mut seen: TypedConsumer<String, OrderSeen, Utf8, Bincode> =
        TypedConsumer::new(broker.consumer(manual("typed-one-way")).unwrap(), Utf8, Bincode);
    seen.subscribe(&["orders"]).unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        if got.len() >= 2 {
            break;
        }
        for r in seen.poll(LONG).unwrap() {
            let r = r.unwrap();
            got.push((r.key.unwrap(), r.value.unwrap()));
        }
    }
    assert_eq!(
        got,
        [
            (
                "ana".to_string(),
                OrderSeen {
                    id: 1,
                    user: "ana".into()
                }
            ),
            (
                "bo".to_string(),
                OrderSeen {
                    id: 2,
                    user: "bo".into()
                }
            ),
        ]
    );
}

#[test]
fn iter_until_idle_yields_every_record_in_order() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 1_234);
    let mut c = broker.consumer(manual("g").max_poll_records(100)).unwrap();
    c.subscribe(&["t"]).unwrap();
    let offsets: Vec<u64> = c
        .iter_until_idle(Duration::from_millis(200))
        .map(|r| r.unwrap().offset())
        .collect();
    assert_eq!(offsets, (0..1_234).collect::<Vec<_>>());
}

#[test]
fn committed_offsets_survive_restart_and_stay_bounded_on_disk() {
    let dir = common::temp_dir();
    {
        let broker = Broker::builder()
            .offsets_compact_bytes(64 << 10)
            .open(dir.path())
            .unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(4)).unwrap();
        let mut c = broker.consumer(manual("g")).unwrap();
        c.assign(&[tp("t", 0), tp("t", 1), tp("t", 2), tp("t", 3)]).unwrap();
        for i in 0..20_000u64 {
            c.commit_offsets(&BTreeMap::from([(tp("t", (i % 4) as u32), OffsetAndMetadata::new(i))]))
                .unwrap();
        }
    }
    let size: u64 = walk(&dir.path().join("offsets"));
    assert!(
        size < 300 << 10,
        "offsets directory holds {size} bytes after 20,000 commits"
    );
    let broker = Broker::open(dir.path()).unwrap();
    let got: Vec<u64> = (0..4)
        .map(|p| broker.committed_offset("g", &tp("t", p)).unwrap().offset)
        .collect();
    assert_eq!(got, [19_996, 19_997, 19_998, 19_999]);
}

fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

/// Synced commits (crossing several snapshots), then unsynced `commit_async` ones, a power
/// loss that drops or tears the unsynced writes, and a reopen with the real file system:
/// every partition's committed offset is at least the last acknowledged synced commit and
/// is a value that was committed, never garbage.
#[test]
fn the_offset_table_survives_power_loss_and_torn_writes() {
    let modes = [PowerLoss::DropUnsynced]
        .into_iter()
        .chain((1..=6).map(|seed| PowerLoss::Torn { seed }));
    for mode in modes {
        let dir = common::temp_dir();
        let fs = FaultFs::new();
        let broker = Broker::builder()
            .vfs(Arc::new(fs.clone()))
            .offsets_durability(Durability::Synced)
            .offsets_compact_bytes(64 << 10)
            .open(dir.path())
            .unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
        fill_synced(&broker, "t", 2, 3_010);
        let mut c = broker.consumer(manual("g")).unwrap();
        c.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
        let mut acked = [0u64; 2];
        for i in 1..=2_000u64 {
            let p = (i % 2) as u32;
            c.commit_offsets(&BTreeMap::from([(tp("t", p), OffsetAndMetadata::new(i))]))
                .unwrap();
            acked[p as usize] = i;
        }
        for i in 0..6u64 {
            c.seek(&tp("t", (i % 2) as u32), 3_000 + i).unwrap();
            c.commit_async(|_| {});
        }
        fs.power_loss(mode);
        drop(c);
        drop(broker);
        let broker = Broker::open(dir.path()).unwrap();
        for p in 0..2u32 {
            let got = broker
                .committed_offset("g", &tp("t", p))
                .unwrap_or_else(|| panic!("{mode:?}: partition {p} lost its commits"))
                .offset;
            let async_values: Vec<u64> = (0..6).filter(|i| i % 2 == u64::from(p)).map(|i| 3_000 + i).collect();
            assert!(
                got == acked[p as usize] || async_values.contains(&got),
                "{mode:?}: partition {p} committed {got}, acknowledged {}",
                acked[p as usize]
            );
        }
    }
}

#[test]
fn a_failing_partition_never_costs_the_records_of_another() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("a", TopicConfig::with_partitions(1)).unwrap();
    broker.create_topic("b", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "a", 1, 5);
    let mut c = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    c.assign(&[tp("a", 0), tp("b", 0)]).unwrap();
    broker.delete_topic("b").unwrap();
    let (mut got, mut errors) = (Vec::new(), 0);
    for _ in 0..6 {
        match c.poll(Duration::from_millis(10)) {
            Ok(records) => got.extend(records.iter().map(|r| r.offset())),
            Err(Error::UnknownTopic { topic }) => {
                assert_eq!(topic, "b");
                errors += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, [0, 1, 2, 3, 4], "every record of a-0 was returned");
    assert!(errors >= 3, "the deleted topic keeps being reported: {errors}");
    assert_eq!(c.position(&tp("a", 0)).unwrap(), 5);
}

#[test]
fn a_peer_blocked_in_poll_takes_over_from_a_member_that_stalls() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let mut a = broker
        .consumer(manual("g").max_poll_interval(Duration::from_millis(200)))
        .unwrap();
    let mut b = broker.consumer(manual("g")).unwrap();
    a.subscribe(&["t"]).unwrap();
    b.subscribe(&["t"]).unwrap();
    settle(&broker, "g", &mut [&mut a, &mut b]);
    assert_eq!(assignment(&a), ["t-0"]);
    let stalled = Arc::new(Barrier::new(2));
    let a_thread = {
        let stalled = Arc::clone(&stalled);
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(300) {
                a.poll(Duration::from_millis(50)).unwrap();
            }
            stalled.wait();
            // Stuck "processing": no poll for far longer than max_poll_interval.
            std::thread::sleep(Duration::from_secs(2));
            a
        })
    };
    let producer = broker.producer(ProducerConfig::default());
    let sender = std::thread::spawn(move || {
        stalled.wait();
        producer
            .send(ProducerRecord::new("t").partition(0).value("for a"))
            .unwrap()
    });
    // b blocks in one long poll: it must wake by itself to evict a and take t-0.
    let records = b.poll(LONG).unwrap();
    let sent = sender.join().unwrap();
    assert_eq!(
        records.iter().map(|r| (r.partition(), r.offset())).collect::<Vec<_>>(),
        [(0, sent.offset)]
    );
    let mut a = a_thread.join().unwrap();
    assert!(matches!(a.commit(), Ok(()) | Err(Error::CommitFailed { .. })));
    a.poll(Duration::from_millis(1)).unwrap();
}

/// Holds `on_partitions_revoked` until told (or until the sender is gone).
struct BlocksOnRevoke(std::sync::mpsc::Receiver<()>);

impl RebalanceListener for BlocksOnRevoke {
    fn on_partitions_revoked(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
        let _ = self.0.recv();
    }
}

/// A rebalance listener runs inside `poll`, but its time counts against
/// `max_poll_interval`, as Kafka bounds a member's rebalance callbacks by its rebalance
/// timeout (`max.poll.interval.ms`): a member stuck in one — a revoke that retries a
/// flush to a system that is down — is evicted and its partitions move on. Being "in
/// poll" kept it in the group for as long as the callback ran: forever here, with its
/// partitions read by nobody.
#[test]
fn a_member_stuck_in_its_rebalance_listener_is_evicted() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 3);
    let (release, held) = std::sync::mpsc::channel();
    let mut stuck = broker
        .consumer(manual("g").max_poll_interval(Duration::from_millis(200)))
        .unwrap();
    stuck.subscribe_with_listener(&["t"], BlocksOnRevoke(held)).unwrap();
    poll_n(&mut stuck, 6);
    stuck.commit().unwrap();
    let mut other = broker.consumer(manual("g")).unwrap();
    other.subscribe(&["t"]).unwrap();
    // The rebalance gives t-1 to `other`; `stuck` revokes it, and hangs there.
    let stuck_thread = std::thread::spawn(move || {
        stuck.poll(Duration::from_millis(1)).unwrap();
        stuck
    });
    let start = Instant::now();
    let mut read = Vec::new();
    while other.assignment().len() < 2 {
        assert!(
            start.elapsed() < LONG,
            "the member stuck in its listener was never evicted: {:?}",
            broker.describe_group("g").unwrap().members
        );
        read.extend(other.poll(Duration::from_millis(10)).unwrap());
    }
    assert_eq!(ids(&read), [], "both partitions start at their commits");
    assert_eq!(other.position(&tp("t", 0)).unwrap(), 3);
    assert_eq!(other.position(&tp("t", 1)).unwrap(), 3);
    drop(release);
    let mut stuck = stuck_thread.join().unwrap();
    // Out of its callback, it finds itself evicted and joins again, without t-0.
    assert!(!stuck.assignment().contains(&tp("t", 0)));
    assert!(matches!(stuck.commit(), Ok(())));
    other.commit().unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(3));
}

#[test]
fn deleting_a_subscribed_topic_revokes_its_partitions() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    broker.create_topic("u", TopicConfig::with_partitions(1)).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe_with_listener(
        &["t", "u"],
        Recorder {
            name: "c",
            events: Arc::clone(&events),
        },
    )
    .unwrap();
    settle(&broker, "g", &mut [&mut c]);
    assert_eq!(assignment(&c), ["t-0", "u-0"]);
    broker.delete_topic("t").unwrap();
    settle(&broker, "g", &mut [&mut c]);
    assert_eq!(assignment(&c), ["u-0"]);
    assert_eq!(
        events.lock().unwrap().last().cloned(),
        Some("c revoked [\"t-0\"] committed=true".to_owned())
    );
    assert_eq!(broker.committed_offset("g", &tp("t", 0)), None);
}

#[test]
fn a_panicking_worker_with_auto_commit_does_not_commit_what_it_never_processed() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 10);
    for panics in [true, false] {
        let group = if panics { "panics" } else { "returns" };
        let b = broker.clone();
        let worker = std::thread::spawn(move || {
            let config = ConsumerConfig::group(group).auto_offset_reset(OffsetReset::Earliest);
            let mut c = b.consumer(config).unwrap();
            c.subscribe(&["t"]).unwrap();
            poll_n(&mut c, 10);
            assert!(!panics, "crash while processing");
        });
        assert_eq!(worker.join().is_err(), panics);
        let committed = broker.committed_offset(group, &tp("t", 0)).map(|o| o.offset);
        assert_eq!(committed, if panics { None } else { Some(10) }, "{group}");
    }
}

#[test]
fn the_oldest_member_chooses_the_assignor_and_commits_need_real_partitions() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(4)).unwrap();
    let mut zeta = broker
        .consumer(manual("g").client_id("zeta").assignor(StickyAssignor))
        .unwrap();
    let mut alpha = broker.consumer(manual("g").client_id("alpha")).unwrap();
    zeta.subscribe(&["t"]).unwrap();
    alpha.subscribe(&["t"]).unwrap();
    settle(&broker, "g", &mut [&mut zeta, &mut alpha]);
    assert_eq!(broker.describe_group("g").unwrap().assignor.as_deref(), Some("sticky"));

    let mut standalone = broker.consumer(manual("other")).unwrap();
    standalone.assign(&[tp("t", 0)]).unwrap();
    let r = standalone.commit_offsets(&BTreeMap::from([(tp("nope", 99), OffsetAndMetadata::new(1))]));
    assert!(matches!(r, Err(Error::UnknownTopic { .. })), "{r:?}");
    let r = standalone.commit_offsets(&BTreeMap::from([(tp("t", 4), OffsetAndMetadata::new(1))]));
    assert!(matches!(r, Err(Error::InvalidPartition { partition: 4, .. })), "{r:?}");
    assert_eq!(broker.list_groups(), ["g"]);
}

/// Synced commits of offsets 1, 2, 3, … (over 5,010 synced records) through `fs` until one
/// fails or `n` are done; then a power loss. Returns the last acknowledged offset and whether a commit failed.
fn commit_until_failure(dir: &std::path::Path, fs: &FaultFs, n: u64) -> (u64, bool) {
    let broker = match Broker::builder()
        .vfs(Arc::new(fs.clone()))
        .offsets_durability(Durability::Synced)
        .offsets_compact_bytes(64 << 10)
        .open(dir)
    {
        Ok(b) => b,
        Err(_) => {
            fs.power_loss(PowerLoss::DropUnsynced);
            return (0, true);
        }
    };
    let created = broker.create_topic_if_not_exists("t", TopicConfig::with_partitions(1));
    let mut acked = 0;
    let mut failed = created.is_err();
    if !failed {
        fill_synced(&broker, "t", 1, 5_010);
        let mut c = broker.consumer(manual("g")).unwrap();
        c.assign(&[tp("t", 0)]).unwrap();
        for i in 1..=n {
            match c.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(i))])) {
                Ok(()) => acked = i,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    fs.power_loss(PowerLoss::DropUnsynced);
    (acked, failed)
}

/// The disk fails (from then on) at every write, sync, rename and truncation of the commit
/// that snapshots the offset table and trims its log, and then the power goes: the reopened
/// table holds the last acknowledged commit (or the one in flight), never less, never garbage.
/// Protects: with `Synced` offsets, a commit whose fsync failed is never served as
/// committed. The table used to take the commit as soon as it was written, before the
/// fsync; the fsync failed, the commit returned an error, yet `committed()` showed it — a
/// value the next power loss takes away. Now the table changes only once the commit is
/// durable: it still shows the last acknowledged commit, later commits fail (the offsets
/// log is poisoned), and after a power loss the acknowledged commit is what survives.
#[test]
fn a_commit_whose_fsync_failed_is_not_reported_as_committed() {
    let dir = common::temp_dir();
    let fs = FaultFs::new();
    let broker = Broker::builder()
        .vfs(Arc::new(fs.clone()))
        .offsets_durability(Durability::Synced)
        .open(dir.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill_synced(&broker, "t", 1, 10);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    let commit =
        |c: &mut Consumer, offset| c.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(offset))]));
    commit(&mut c, 5).unwrap();
    assert_eq!(c.committed(&tp("t", 0)).unwrap().map(|o| o.offset), Some(5));

    fs.inject(Fault {
        op: FaultOp::Sync,
        nth: 1,
        errno: EIO,
        forever: true,
    });
    let failed = commit(&mut c, 9);
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    assert_eq!(c.committed(&tp("t", 0)).unwrap().map(|o| o.offset), Some(5));
    let again = commit(&mut c, 10);
    assert!(matches!(again, Err(Error::Poisoned { .. })), "{again:?}");
    assert_eq!(c.committed(&tp("t", 0)).unwrap().map(|o| o.offset), Some(5));

    fs.power_loss(PowerLoss::DropUnsynced);
    drop(c);
    drop(broker);
    let reopened = Broker::open(dir.path()).unwrap();
    let c = reopened.consumer(manual("g")).unwrap();
    assert_eq!(c.committed(&tp("t", 0)).unwrap().map(|o| o.offset), Some(5));
}

#[test]
fn the_offset_table_survives_a_crash_at_every_step_of_a_snapshot() {
    const OPS: [FaultOp; 4] = [FaultOp::Write, FaultOp::Sync, FaultOp::Rename, FaultOp::SetLen];
    // Dry run: the commit that writes the first snapshot, and the operation counts around it.
    let dry = common::temp_dir();
    let fs = FaultFs::new();
    let broker = Broker::builder()
        .vfs(Arc::new(fs.clone()))
        .offsets_durability(Durability::Synced)
        .offsets_compact_bytes(64 << 10)
        .open(dry.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill_synced(&broker, "t", 1, 5_010);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    let snapshot = dry.path().join("offsets").join("snapshot");
    let mut window = None;
    for i in 1..=5_000u64 {
        let before = OPS.map(|op| fs.count(op));
        c.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(i))]))
            .unwrap();
        if snapshot.exists() {
            window = Some((i, before, OPS.map(|op| fs.count(op))));
            break;
        }
    }
    let (k, before, after) = window.expect("a snapshot was written");
    drop(c);
    drop(broker);

    let mut runs = 0;
    for (o, op) in OPS.into_iter().enumerate() {
        for nth in before[o] + 1..=after[o] {
            let dir = common::temp_dir();
            let fs = FaultFs::new();
            fs.inject(Fault {
                op,
                nth,
                errno: EIO,
                forever: true,
            });
            let (acked, failed) = commit_until_failure(dir.path(), &fs, k + 5);
            let ctx = format!("{op:?} #{nth} fails (snapshot at commit {k}): acked {acked}, failed {failed}");
            // A failed snapshot is not a failed commit (it is retried by the next one), so
            // some runs acknowledge every commit.
            assert!(failed || acked == k + 5, "{ctx}");
            let broker = Broker::open(dir.path()).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            let got = broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset);
            if acked > 0 {
                let got = got.unwrap_or_else(|| panic!("{ctx}: the table lost every commit"));
                assert!(got == acked || got == acked + 1, "{ctx}: reopened with {got}");
            }
            runs += 1;
        }
    }
    assert!(runs >= 4, "only {runs} crash points");
}

#[test]
fn consumers_and_their_records_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<Consumer>();
    assert_send_sync::<brooklet::ConsumerRecords>();
    assert_send_sync::<ConsumerRecord>();
    assert_send::<TypedConsumer<String, String>>();
    // A consumer made on one thread polls on another.
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let got = std::thread::spawn(move || poll_n(&mut c, 3).len()).join().unwrap();
    assert_eq!(got, 3);
}

/// Protects Kafka's rule that `poll` on a consumer with neither a subscription nor an
/// assignment is a usage error (`IllegalStateException`), reported at once: a forgotten
/// `subscribe` must not look like an idle topic (an empty poll after the whole timeout).
#[test]
fn poll_without_subscription_or_assignment_fails_at_once() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let mut c = broker.consumer(manual("g")).unwrap();
    let start = Instant::now();
    let r = c.poll(Duration::from_secs(10));
    assert!(
        matches!(r, Err(Error::NotSubscribed { group: Some(ref g) }) if g == "g"),
        "{r:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the error came only after the timeout"
    );
    // After unsubscribe, and for an empty assignment (Kafka: the same as unsubscribe), too.
    c.subscribe(&["t"]).unwrap();
    c.poll(Duration::from_millis(1)).unwrap();
    c.unsubscribe();
    assert!(matches!(
        c.poll(Duration::from_millis(1)),
        Err(Error::NotSubscribed { .. })
    ));
    c.assign(&[]).unwrap();
    assert!(matches!(
        c.poll(Duration::from_millis(1)),
        Err(Error::NotSubscribed { .. })
    ));
    c.assign(&[tp("t", 0)]).unwrap();
    assert!(c.poll(Duration::from_millis(1)).unwrap().is_empty());
}

/// Protects Kafka's `close`/`unsubscribe` contract: the listener's `on_partitions_revoked`
/// runs before the member leaves — the place where an application with auto-commit off
/// commits what it processed. Without it the next owner is handed those records again.
/// Dropping the consumer does the same (brooklet's choice: Kafka has no drop), except on a
/// panicking thread, which has not processed what it polled.
#[test]
fn close_unsubscribe_and_drop_run_on_partitions_revoked_where_the_listener_commits() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    for how in ["close", "unsubscribe", "drop"] {
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut c = broker.consumer(manual(how)).unwrap();
        let recorder = Recorder {
            name: how,
            events: Arc::clone(&events),
        };
        c.subscribe_with_listener(&["t"], recorder).unwrap();
        poll_n(&mut c, 3);
        match how {
            "close" => c.close().unwrap(),
            "unsubscribe" => {
                c.unsubscribe();
                assert!(c.assignment().is_empty() && c.subscription().is_empty());
            }
            _ => drop(c),
        }
        assert_eq!(
            *events.lock().unwrap(),
            [
                format!("{how} assigned [\"t-0\"] at [0]"),
                format!("{how} revoked [\"t-0\"] committed=true"),
            ],
            "{how}"
        );
        assert_eq!(
            broker.committed_offset(how, &tp("t", 0)).map(|o| o.offset),
            Some(3),
            "{how}"
        );
        assert!(broker.describe_group(how).unwrap().members.is_empty(), "{how}");
    }

    // A panicking thread's consumer leaves the group without running the listener.
    let events = Arc::new(Mutex::new(Vec::new()));
    let (b, e) = (broker.clone(), Arc::clone(&events));
    let worker = std::thread::spawn(move || {
        let mut c = b.consumer(manual("panics")).unwrap();
        c.subscribe_with_listener(&["t"], Recorder { name: "p", events: e })
            .unwrap();
        poll_n(&mut c, 3);
        panic!("crash while processing");
    });
    assert!(worker.join().is_err());
    assert_eq!(*events.lock().unwrap(), ["p assigned [\"t-0\"] at [0]"]);
    assert_eq!(broker.committed_offset("panics", &tp("t", 0)), None);
    assert!(broker.describe_group("panics").is_err(), "the member left the group");
}

/// Protects the other half of Kafka's leave: a member evicted (after `max_poll_interval`)
/// that closes hears `on_partitions_lost` — its partitions may belong to another member
/// already, so its commits would be fenced — not `on_partitions_revoked`.
#[test]
fn closing_an_evicted_member_runs_on_partitions_lost() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut slow = broker
        .consumer(manual("g").max_poll_interval(Duration::from_millis(100)))
        .unwrap();
    let recorder = Recorder {
        name: "slow",
        events: Arc::clone(&events),
    };
    slow.subscribe_with_listener(&["t"], recorder).unwrap();
    slow.poll(Duration::from_millis(1)).unwrap();
    assert_eq!(assignment(&slow), ["t-0"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut fast = broker.consumer(manual("g")).unwrap();
    fast.subscribe(&["t"]).unwrap();
    fast.poll(Duration::from_millis(1)).unwrap();
    assert_eq!(assignment(&fast), ["t-0"], "the slow member was evicted");
    slow.close().unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        ["slow assigned [\"t-0\"] at [0]", "slow lost [\"t-0\"]"]
    );
}

/// Protects Kafka's `assign` contract: "if auto-commit is enabled, an async commit (based
/// on the old assignment) will be triggered before the new assignment replaces the old
/// one". Without it a re-assigning consumer drops the positions of the partitions it gives
/// up, and whoever reads them next re-reads what it consumed.
#[test]
fn reassigning_with_auto_commit_commits_the_old_assignment_first() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 3);
    let mut c = broker
        .consumer(
            ConsumerConfig::group("g")
                .auto_offset_reset(OffsetReset::Earliest)
                .auto_commit_interval(Duration::from_secs(3600)),
        )
        .unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(ids(&poll_n(&mut c, 3)), [(0, 0), (0, 1), (0, 2)]);
    c.assign(&[tp("t", 1)]).unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(3));
    assert_eq!(ids(&poll_n(&mut c, 3)), [(1, 0), (1, 1), (1, 2)]);
    // Moving from a manual assignment to a subscription commits the old positions too.
    c.subscribe(&["t"]).unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 1)).map(|o| o.offset), Some(3));
    // With auto-commit off, nothing is committed.
    let mut m = broker.consumer(manual("m")).unwrap();
    m.assign(&[tp("t", 0)]).unwrap();
    poll_n(&mut m, 3);
    m.assign(&[tp("t", 1)]).unwrap();
    assert_eq!(broker.committed_offset("m", &tp("t", 0)), None);
}

/// Protects Kafka's `commitSync` contract: `commit()` writes every consumed position. It
/// used to skip a position "unchanged since its last commit" even when an admin had
/// deleted (or reset) the stored offset meanwhile: `commit()` said Ok and stored nothing.
/// Auto-commit may still skip unchanged positions, but only those the table still holds.
#[test]
fn commit_after_the_group_offsets_were_deleted_or_reset_stores_the_position_again() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let committed = |group: &str| broker.committed_offset(group, &tp("t", 0)).map(|o| o.offset);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    poll_n(&mut c, 3);
    c.commit().unwrap();
    assert_eq!(committed("g"), Some(3));
    broker.delete_group("g").unwrap();
    c.commit().unwrap();
    assert_eq!(committed("g"), Some(3), "commit() returned Ok but stored nothing");
    broker.reset_offsets("g", OffsetSpec::Earliest, None).unwrap();
    c.commit().unwrap();
    assert_eq!(committed("g"), Some(3));

    // Auto-commit (here: at close) skips only what the table still holds.
    let mut a = broker
        .consumer(ConsumerConfig::group("auto").auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    a.assign(&[tp("t", 0)]).unwrap();
    poll_n(&mut a, 3);
    a.commit().unwrap();
    broker.delete_group("auto").unwrap();
    a.close().unwrap();
    assert_eq!(committed("auto"), Some(3));
}

/// Protects a subscribed consumer from a topic deleted and created again between two of its
/// polls. It used to keep the deleted log of `t-0` and skip it silently forever: the
/// coordinator still counted it the owner, and the recreated `t-0` was in its target again,
/// so nothing was revoked or claimed. Now the old partition loses its owner at the delete
/// (a commit of the old position is fenced), the member revokes it at its next poll and
/// claims the new one, which it reads from the reset position.
#[test]
fn a_subscribed_consumer_reads_a_topic_deleted_and_recreated_between_polls() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 1);
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut c = broker.consumer(manual("g")).unwrap();
    let recorder = Recorder {
        name: "c",
        events: Arc::clone(&events),
    };
    c.subscribe_with_listener(&["t"], recorder).unwrap();
    assert_eq!(poll_n(&mut c, 1)[0].value(), Some(&b"0-0"[..]));

    broker.delete_topic("t").unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    producer.send(ProducerRecord::new("t").value("new")).unwrap();
    // The old position must not become the new topic's committed offset.
    let stale = c.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(1))]));
    assert!(matches!(stale, Err(Error::CommitFailed { .. })), "{stale:?}");

    let got = poll_n(&mut c, 1);
    assert_eq!((got[0].offset(), got[0].value()), (0, Some(&b"new"[..])));
    assert_eq!(
        *events.lock().unwrap(),
        [
            "c assigned [\"t-0\"] at [0]",
            "c revoked [\"t-0\"] committed=true",
            "c assigned [\"t-0\"] at [0]"
        ]
    );
    c.commit().unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(1));
}

/// Protects a manually assigned consumer of a topic deleted and created again: Kafka's
/// consumer finds the partition by name and goes on; brooklet's reported `UnknownTopic`
/// forever. It reports it while the topic is gone, then reads the new topic from the reset
/// position (the old position counts records of the deleted log).
#[test]
fn an_assigned_consumer_reads_a_topic_deleted_and_recreated() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let config = ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest);
    let mut c = broker.consumer(config).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(ids(&poll_n(&mut c, 3)), [(0, 0), (0, 1), (0, 2)]);
    broker.delete_topic("t").unwrap();
    let gone = c.poll(Duration::from_millis(1));
    assert!(
        matches!(gone, Err(Error::UnknownTopic { ref topic }) if topic == "t"),
        "{gone:?}"
    );
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    producer.send(ProducerRecord::new("t").value("new")).unwrap();
    let got = poll_n(&mut c, 1);
    assert_eq!((got[0].offset(), got[0].value()), (0, Some(&b"new"[..])));
    // The new log wakes a blocked poll.
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        producer.send(ProducerRecord::new("t").value("later")).unwrap();
    });
    let start = Instant::now();
    let got = c.poll(Duration::from_secs(20)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(10), "not woken by the append");
    assert_eq!(ids(&got.to_vec()), [(0, 1)]);
    sender.join().unwrap();
}

/// Protects a manually assigned consumer of a topic created again with fewer partitions:
/// the partitions the new topic lacks are reported as `InvalidPartition` (the topic exists),
/// not as the topic being unknown, while the others are read; partitions added up to them
/// are read again. A poll returning records keeps its error for the next one.
#[test]
fn an_assigned_consumer_of_a_topic_recreated_with_fewer_partitions_reads_those_it_has() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(3)).unwrap();
    let mut c = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    c.assign(&[tp("t", 0), tp("t", 1), tp("t", 2)]).unwrap();
    assert!(c.poll(Duration::from_millis(1)).unwrap().is_empty());
    broker.delete_topic("t").unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(ProducerConfig::default());
    producer
        .send(ProducerRecord::new("t").partition(0).value("new"))
        .unwrap();
    let (mut records, mut missing) = (Vec::new(), BTreeSet::new());
    for _ in 0..6 {
        match c.poll(Duration::from_millis(1)) {
            Ok(got) => records.extend(got.iter().map(|r| (r.partition(), r.offset()))),
            Err(Error::InvalidPartition {
                topic,
                partition,
                partitions,
            }) => {
                assert_eq!((topic.as_str(), partitions), ("t", 1));
                missing.insert(partition);
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(records, [(0, 0)]);
    assert_eq!(missing, BTreeSet::from([1, 2]));
    broker.add_partitions("t", 3).unwrap();
    producer
        .send(ProducerRecord::new("t").partition(2).value("again"))
        .unwrap();
    let got = poll_n(&mut c, 1);
    assert_eq!((got[0].partition(), got[0].offset()), (2, 0));
}

/// Protects group membership against `delete_group` racing `subscribe` (a stress run of
/// two seconds; the interleaving itself is made deterministic in the coordinator's unit
/// test `a_group_removed_between_lookup_and_lock_is_never_used`). A join used to look the
/// group up, and `delete_group` could drop it before the join added its member: the member
/// sat in a group the coordinator had forgotten, and the next consumer of the name made a
/// second group and owned the same partitions. Either the delete is refused, or the member
/// joins the one live group.
#[test]
fn delete_group_racing_subscribe_never_leaves_two_owners_of_a_partition() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_secs(2) {
        rounds += 1;
        let group = format!("g{rounds}");
        let barrier = Arc::new(Barrier::new(2));
        let deleter = {
            let (broker, barrier, group) = (broker.clone(), Arc::clone(&barrier), group.clone());
            std::thread::spawn(move || {
                barrier.wait();
                match broker.delete_group(&group) {
                    Ok(()) | Err(Error::GroupNotEmpty { .. } | Error::UnknownGroup { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            })
        };
        let mut c = broker.consumer(manual(&group)).unwrap();
        barrier.wait();
        c.subscribe(&["t"]).unwrap();
        deleter.join().unwrap();
        c.poll(Duration::from_millis(1)).unwrap();
        let mut other = broker.consumer(manual(&group)).unwrap();
        other.subscribe(&["t"]).unwrap();
        settle(&broker, &group, &mut [&mut c, &mut other]);
        assert_eq!(
            broker.describe_group(&group).unwrap().members.len(),
            2,
            "round {rounds}"
        );
        let both: Vec<_> = c.assignment().intersection(&other.assignment()).cloned().collect();
        assert!(
            both.is_empty(),
            "round {rounds}: two members of {group} both own {both:?}"
        );
    }
}

/// Protects eviction from a panicking rebalance listener. The panic leaves `poll`; if the
/// application catches it and keeps the consumer without polling again, the member used to
/// stay marked "in poll" forever — never evicted, its partitions never read by anyone.
#[test]
fn a_member_whose_listener_panicked_is_still_evicted_when_it_stops_polling() {
    struct Panics;
    impl RebalanceListener for Panics {
        fn on_partitions_assigned(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
            panic!("listener bug");
        }
    }
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let mut stuck = broker
        .consumer(manual("g").max_poll_interval(Duration::from_millis(100)))
        .unwrap();
    stuck.subscribe_with_listener(&["t"], Panics).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stuck.poll(Duration::from_millis(1))));
    assert!(caught.is_err(), "the listener's panic reaches the caller");
    assert_eq!(assignment(&stuck), ["t-0"]);
    let mut other = broker.consumer(manual("g")).unwrap();
    other.subscribe(&["t"]).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the stuck member was never evicted"
        );
        got.extend(other.poll(Duration::from_millis(50)).unwrap());
    }
    assert_eq!(ids(&got), [(0, 0), (0, 1), (0, 2)]);
}

/// Protects leaving from a panicking listener: the panic of `on_partitions_revoked` at
/// `close` reaches the caller (at drop it is only logged), but the member has left the
/// group first, so its partitions move on at once.
#[test]
fn a_listener_that_panics_while_leaving_does_not_keep_the_member_in_the_group() {
    struct PanicsOnRevoke;
    impl RebalanceListener for PanicsOnRevoke {
        fn on_partitions_revoked(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
            panic!("listener bug");
        }
    }
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    for close in [true, false] {
        let group = if close { "close" } else { "drop" };
        let mut c = broker.consumer(manual(group)).unwrap();
        c.subscribe_with_listener(&["t"], PanicsOnRevoke).unwrap();
        c.poll(Duration::from_millis(1)).unwrap();
        assert_eq!(assignment(&c), ["t-0"]);
        let left = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            if close {
                let _ = c.close();
            } else {
                drop(c);
            }
        }));
        assert_eq!(left.is_err(), close, "{group}");
        assert!(
            broker.describe_group(group).is_err(),
            "{group}: the member is still in the group"
        );
    }
}

/// Protects the hand-over from a listener that panics at a rebalance. The panic of
/// `on_partitions_revoked` reaches the caller of `poll`, but — as Kafka's consumer, which
/// completes the revocation and raises the callback's exception afterwards — the member
/// has let go of the partitions first. They used to stay with it: a worker that catches the
/// panic and polls on (a supervised loop) kept them for good, and their new owner never
/// read them. Likewise an evicted member whose `on_partitions_lost` panicked kept its lost
/// partitions, was told of them again at every poll, and never joined the group again.
#[test]
fn a_listener_that_panics_at_a_rebalance_still_lets_the_partitions_go() {
    struct PanicsOnRevoke;
    impl RebalanceListener for PanicsOnRevoke {
        fn on_partitions_revoked(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
            panic!("listener bug");
        }
    }
    let poll_caught = |c: &mut Consumer| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.poll(Duration::from_millis(1))))
            .map(|polled| polled.unwrap().len())
    };
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 3);
    let mut old = broker.consumer(manual("g")).unwrap();
    old.subscribe_with_listener(&["t"], PanicsOnRevoke).unwrap();
    poll_n(&mut old, 6);
    old.commit().unwrap();
    let mut new = broker.consumer(manual("g")).unwrap();
    new.subscribe(&["t"]).unwrap();
    // The range assignor gives the older member t-0 and the new one t-1.
    assert!(
        poll_caught(&mut old).is_err(),
        "the listener's panic reaches the caller"
    );
    assert_eq!(poll_caught(&mut new).unwrap(), 0, "t-1 starts at its commit");
    assert_eq!(assignment(&old), ["t-0"]);
    assert_eq!(assignment(&new), ["t-1"]);
    assert_eq!(new.position(&tp("t", 1)).unwrap(), 3);
    assert_eq!(poll_caught(&mut old).unwrap(), 0, "no second revocation");

    // Evicted: `on_partitions_lost` (by default `on_partitions_revoked`) panics once, and
    // the next poll joins the group again.
    let mut evicted = broker
        .consumer(manual("h").max_poll_interval(Duration::from_millis(200)))
        .unwrap();
    evicted.subscribe_with_listener(&["t"], PanicsOnRevoke).unwrap();
    poll_n(&mut evicted, 6);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let member = evicted.member_id().map(str::to_owned);
    assert!(
        poll_caught(&mut evicted).is_err(),
        "the listener's panic reaches the caller"
    );
    assert!(evicted.assignment().is_empty(), "the lost partitions are gone");
    assert!(poll_caught(&mut evicted).is_ok(), "told of its lost partitions again");
    assert_ne!(evicted.member_id().map(str::to_owned), member, "never joined again");
    let members = broker.describe_group("h").unwrap().members;
    assert!(
        members
            .iter()
            .any(|m| Some(m.member_id.as_str()) == evicted.member_id())
    );
}

/// A consumer tells whose clock each record's timestamp is (Kafka's
/// `ConsumerRecord.timestampType()`): the producer's on a CreateTime topic, the log's on a
/// LogAppendTime one — borrowed and owned records alike.
#[test]
fn records_say_whose_clock_their_timestamp_is() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("created", TopicConfig::with_partitions(1)).unwrap();
    broker
        .create_topic(
            "appended",
            TopicConfig::with_partitions(1).timestamp_type(TimestampType::LogAppendTime),
        )
        .unwrap();
    let producer = broker.producer(ProducerConfig::default());
    for topic in ["created", "appended"] {
        producer
            .send(ProducerRecord::new(topic).value("v").timestamp(1_000))
            .unwrap();
    }
    let mut consumer = broker.consumer(manual("clocks")).unwrap();
    consumer.assign(&[tp("created", 0), tp("appended", 0)]).unwrap();
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && Instant::now() < deadline {
        let records = consumer.poll(Duration::from_millis(100)).unwrap();
        for r in &records {
            let owned = r.to_owned();
            assert_eq!(owned.timestamp_type(), r.timestamp_type());
            seen.insert(r.topic().to_owned(), (r.timestamp_type(), r.timestamp() == 1_000));
        }
    }
    assert_eq!(
        seen,
        BTreeMap::from([
            ("appended".to_owned(), (TimestampType::LogAppendTime, false)),
            ("created".to_owned(), (TimestampType::CreateTime, true)),
        ])
    );
}

/// Protects: a topic deleted and created again never inherits the old topic's committed
/// offsets, also when the power fails right after (with the default `Written` offsets).
/// `create_topic` tombstones any offsets left under the name and then writes the synced
/// topic table; the tombstones were only written, not synced, so a power loss kept the new
/// topic and lost them: the reopened broker served group `g` the old topic's offset 7 for
/// the new, empty `t-0`.
#[test]
fn a_recreated_topic_does_not_inherit_old_offsets_after_a_power_loss() {
    let dir = common::temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        let mut c = broker.consumer(manual("g")).unwrap();
        c.assign(&[tp("t", 0)]).unwrap();
        c.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(7))]))
            .unwrap();
    } // A clean shutdown: the commit is on disk.
    let fs = FaultFs::new();
    let broker = Broker::builder().vfs(Arc::new(fs.clone())).open(dir.path()).unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(7));
    broker.delete_topic("t").unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)), None);
    fs.power_loss(PowerLoss::DropUnsynced);
    drop(broker);
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.list_topics(), ["t"]);
    assert_eq!(broker.committed_offset("g", &tp("t", 0)), None);
}

/// Protects: deleting a topic whose offsets, across all groups, are more tombstones than
/// one batch of the offsets log holds. The tombstones went into one batch, which the log
/// refused (`RecordTooLarge`) after the topic table had dropped the topic: the offsets
/// stayed, creating the topic again failed, and so did every later open of the broker
/// (which removes the offsets of unlisted topics the same way).
#[test]
fn deleting_a_topic_with_more_offsets_than_one_batch_holds() {
    const GROUPS: usize = 4_000;
    let dir = common::temp_dir();
    let broker = Broker::builder()
        .offsets_compact_bytes(64 << 10)
        .open(dir.path())
        .unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(1)).unwrap();
    for g in 0..GROUPS {
        let mut c = broker.consumer(manual(&format!("group-{g}"))).unwrap();
        c.assign(&[tp("orders", 0)]).unwrap();
        c.commit_offsets(&BTreeMap::from([(tp("orders", 0), OffsetAndMetadata::new(3))]))
            .unwrap();
    }
    assert_eq!(broker.list_groups().len(), GROUPS);
    broker.delete_topic("orders").unwrap();
    assert_eq!(broker.list_groups(), Vec::<String>::new());
    broker.create_topic("orders", TopicConfig::with_partitions(1)).unwrap();
    assert_eq!(broker.committed_offset("group-0", &tp("orders", 0)), None);
    drop(broker);
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.list_groups(), Vec::<String>::new());
    assert_eq!(broker.committed_offset("group-0", &tp("orders", 0)), None);
}

/// Protects Kafka's `assign` for the partitions a new assignment keeps: their positions and
/// pause state carry over (Kafka's `assignFromUser` keeps each remaining partition's state).
/// `assign` used to drop every position and find it again from the committed offset or
/// `auto_offset_reset`, so a consumer that grew its assignment re-read what it had consumed
/// (`Earliest`) or skipped what had arrived meanwhile (`Latest`).
#[test]
fn reassigning_keeps_the_position_and_pause_of_a_partition_that_stays() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(3)).unwrap();
    fill(&broker, "t", 3, 4);
    let mut c = broker
        .consumer(
            ConsumerConfig::default()
                .auto_offset_reset(OffsetReset::Earliest)
                .max_poll_records(2),
        )
        .unwrap();
    c.assign(&[tp("t", 0), tp("t", 2)]).unwrap();
    c.pause(&[tp("t", 2)]).unwrap();
    assert_eq!(ids(&poll_n(&mut c, 2)), [(0, 0), (0, 1)]);
    c.assign(&[tp("t", 0), tp("t", 1), tp("t", 2)]).unwrap();
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 2, "t-0 read from the start again");
    assert_eq!(c.paused(), BTreeSet::from([tp("t", 2)]));
    let mut got = ids(&poll_n(&mut c, 6));
    got.sort_unstable();
    assert_eq!(got, [(0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]);
    // A partition given up and assigned again starts afresh, as in Kafka.
    c.assign(&[tp("t", 1)]).unwrap();
    c.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 0);
    assert_eq!(c.position(&tp("t", 1)).unwrap(), 4);

    // At `Latest`, the records that arrive before the assignment grows are not skipped.
    let mut latest = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Latest))
        .unwrap();
    latest.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(latest.position(&tp("t", 0)).unwrap(), 4);
    let producer = broker.producer(ProducerConfig::default());
    producer
        .send(ProducerRecord::new("t").partition(0).value("late"))
        .unwrap();
    latest.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    assert_eq!(ids(&poll_n(&mut latest, 1)), [(0, 4)]);
}
/// Protects Kafka's `subscribe` on a consumer already subscribed: it stays the same member,
/// the same topics cause no rebalance, and the partitions of topics it still subscribes to
/// keep their positions; only the partitions of dropped topics are revoked. `subscribe`
/// used to leave and join again: every partition was revoked and its position found again
/// from the committed offset or `auto_offset_reset`, so a member with auto-commit off
/// re-read what it had consumed (or, at `Latest`, skipped what had arrived meanwhile).
#[test]
fn subscribing_again_keeps_the_membership_and_the_positions_of_topics_still_subscribed() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("a", TopicConfig::with_partitions(1)).unwrap();
    broker.create_topic("b", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "a", 1, 4);
    fill(&broker, "b", 1, 2);
    let topic_offsets = |records: &[ConsumerRecord]| -> Vec<(String, u64)> {
        records.iter().map(|r| (r.topic().to_owned(), r.offset())).collect()
    };
    let mut c = broker.consumer(manual("g").max_poll_records(2)).unwrap();
    c.subscribe(&["a"]).unwrap();
    assert_eq!(
        topic_offsets(&poll_n(&mut c, 2)),
        [("a".to_owned(), 0), ("a".to_owned(), 1)]
    );
    let (member, generation) = (c.member_id().map(str::to_owned), c.generation());

    c.subscribe(&["a"]).unwrap();
    assert_eq!(c.member_id().map(str::to_owned), member, "left and joined again");
    assert_eq!(c.position(&tp("a", 0)).unwrap(), 2, "a-0 read from the start again");
    assert_eq!(
        topic_offsets(&poll_n(&mut c, 2)),
        [("a".to_owned(), 2), ("a".to_owned(), 3)]
    );
    assert_eq!(c.generation(), generation, "the same topics rebalanced the group");

    // A topic added: only its partition is assigned; a-0 stays where it was.
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = || Recorder {
        name: "c",
        events: Arc::clone(&events),
    };
    c.subscribe_with_listener(&["a", "b"], recorder()).unwrap();
    assert_eq!(
        topic_offsets(&poll_n(&mut c, 2)),
        [("b".to_owned(), 0), ("b".to_owned(), 1)]
    );
    assert_eq!(c.member_id().map(str::to_owned), member);
    assert_eq!(c.position(&tp("a", 0)).unwrap(), 4);
    // A topic dropped: its partition is revoked (the listener commits there), b-0 stays.
    c.subscribe_with_listener(&["b"], recorder()).unwrap();
    c.poll(Duration::from_millis(1)).unwrap();
    assert_eq!(assignment(&c), ["b-0"]);
    assert_eq!(c.position(&tp("b", 0)).unwrap(), 2);
    assert_eq!(
        *events.lock().unwrap(),
        ["c assigned [\"b-0\"] at [0]", "c revoked [\"a-0\"] committed=true"]
    );
    assert_eq!(broker.committed_offset("g", &tp("a", 0)).map(|o| o.offset), Some(4));
    assert_eq!(broker.describe_group("g").unwrap().members.len(), 1);
}
/// Protects Kafka's handling of a partition's fetch error kept for the next poll (records
/// of other partitions came first): once the application has moved that partition (a
/// seek) or given it up (a new assignment), the error no longer applies, and Kafka drops it
/// as stale. It used to be reported anyway, by a poll that then returned nothing.
#[test]
fn a_kept_fetch_error_is_dropped_once_its_partition_was_moved_or_unassigned() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 3);
    let mut c = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::None))
        .unwrap();
    c.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    // Polls until one returns t-0's records while t-1's position is out of range (a poll
    // that visits t-1 first reports its error at once).
    let records_despite_t1 = |c: &mut Consumer| -> Vec<(u32, u64)> {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < LONG);
            match c.poll(Duration::from_millis(10)) {
                Ok(records) if !records.is_empty() => return ids(&records.to_vec()),
                Ok(_) => {}
                Err(Error::OffsetOutOfRange {
                    requested: 100,
                    partition: Some(p),
                    ..
                }) if p == tp("t", 1) => {}
                Err(e) => panic!("{e}"),
            }
        }
    };
    c.seek(&tp("t", 0), 0).unwrap();
    c.seek(&tp("t", 1), 100).unwrap();
    assert_eq!(records_despite_t1(&mut c), [(0, 0), (0, 1), (0, 2)]);
    c.seek(&tp("t", 1), 1).unwrap();
    assert_eq!(ids(&poll_n(&mut c, 2)), [(1, 1), (1, 2)]);

    c.seek(&tp("t", 0), 0).unwrap();
    c.seek(&tp("t", 1), 100).unwrap();
    assert_eq!(records_despite_t1(&mut c), [(0, 0), (0, 1), (0, 2)]);
    c.assign(&[tp("t", 0)]).unwrap();
    let next = c.poll(Duration::from_millis(1));
    assert!(next.as_ref().is_ok_and(brooklet::ConsumerRecords::is_empty), "{next:?}");

    // Nothing changed about the partition: the error is reported.
    c.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    c.seek(&tp("t", 0), 0).unwrap();
    c.seek(&tp("t", 1), 100).unwrap();
    assert_eq!(records_despite_t1(&mut c), [(0, 0), (0, 1), (0, 2)]);
    let kept = c.poll(Duration::from_millis(1));
    assert!(
        matches!(&kept, Err(Error::OffsetOutOfRange { requested: 100, partition: Some(p), .. }) if *p == tp("t", 1)),
        "{kept:?}"
    );
}
/// Protects Kafka's `position`: a partition that has a position returns it at once. It used
/// to resolve every partition first, so one without a committed offset (and
/// `auto_offset_reset` `None`) made `position` and `lag` fail for another that had been
/// seeked.
#[test]
fn position_of_a_seeked_partition_does_not_depend_on_the_others() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 5);
    let mut c = broker
        .consumer(manual("g").auto_offset_reset(OffsetReset::None))
        .unwrap();
    c.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    c.seek(&tp("t", 1), 2).unwrap();
    assert_eq!(c.position(&tp("t", 1)).unwrap(), 2);
    assert_eq!(c.lag(&tp("t", 1)).unwrap(), 3);
    // The partition without a position still reports why it has none.
    let err = c.position(&tp("t", 0)).unwrap_err();
    assert!(
        matches!(&err, Error::NoCommittedOffset { partition, .. } if *partition == tp("t", 0)),
        "{err}"
    );
}

/// Protects Kafka's `max.poll.interval.ms` contract for the member itself: one that did not
/// poll within the interval has left the group, so its commit fails with `CommitFailed`
/// even when no other member polled meanwhile to notice (Kafka's heartbeat thread leaves
/// the group on its own); its next poll joins again and commits work again.
#[test]
fn a_member_past_its_poll_interval_cannot_commit_even_if_no_one_else_polls() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let mut slow = broker
        .consumer(
            manual("g")
                .auto_offset_reset(OffsetReset::Earliest)
                .max_poll_interval(Duration::from_millis(100)),
        )
        .unwrap();
    slow.subscribe(&["t"]).unwrap();
    assert_eq!(ids(&poll_n(&mut slow, 3)), [(0, 0), (0, 1), (0, 2)]);
    std::thread::sleep(Duration::from_millis(300));
    match slow.commit() {
        Err(Error::CommitFailed { group, reason }) => {
            assert_eq!(group, "g");
            assert!(reason.contains("no longer in the group"), "{reason}");
        }
        other => panic!("a member past its poll interval committed: {other:?}"),
    }
    assert_eq!(broker.committed_offset("g", &tp("t", 0)), None);
    // Its next poll joins again, from the committed offset (none: the reset policy).
    assert_eq!(ids(&poll_n(&mut slow, 3)), [(0, 0), (0, 1), (0, 2)]);
    slow.commit().unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(3));
}

/// Protects the admin side of the same contract: a group whose only member stopped polling
/// longer than its interval ago is empty, as Kafka's coordinator would have removed the
/// member by then, so resetting its offsets and deleting it work without asking for a
/// `describe_group` first.
#[test]
fn a_group_whose_members_are_past_their_poll_interval_can_be_reset_and_deleted() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let mut gone = broker
        .consumer(
            manual("g")
                .auto_offset_reset(OffsetReset::Earliest)
                .max_poll_interval(Duration::from_millis(100)),
        )
        .unwrap();
    gone.subscribe(&["t"]).unwrap();
    poll_n(&mut gone, 3);
    gone.commit().unwrap();
    assert!(matches!(
        broker.reset_offsets("g", OffsetSpec::Earliest, None),
        Err(Error::GroupNotEmpty { .. })
    ));
    std::thread::sleep(Duration::from_millis(300));
    let reset = broker.reset_offsets("g", OffsetSpec::Earliest, None).unwrap();
    assert_eq!(reset.into_iter().collect::<Vec<_>>(), [(tp("t", 0), 0)]);
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(0));
    broker.delete_group("g").unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)), None);
}

/// Commits `from..to` to group `g`, partition `t-0`, one at a time.
fn commit_each(broker: &Broker, from: u64, to: u64) {
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    for i in from..to {
        c.commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(i))]))
            .unwrap();
    }
}

/// Protects: an offsets snapshot that covers less than the offsets log still holds (an old
/// snapshot file put back: damage, as compaction writes the snapshot before it trims the
/// log) fails the open with `Corrupt` naming it, as a read-only open does, instead of
/// silently replaying from the log's start, which would lose the commits in between (the
/// group would resume from an older offset).
#[test]
fn an_offsets_snapshot_older_than_the_log_start_fails_open() {
    let dir = common::temp_dir();
    let open = || Broker::builder().offsets_compact_bytes(64 << 10).open(dir.path());
    let snapshot = dir.path().join("offsets").join("snapshot");
    let broker = open().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    // Enough commits for several snapshots; keep a copy of an early one.
    let mut early = None;
    let mut next = 1;
    while early.is_none() {
        commit_each(&broker, next, next + 100);
        next += 100;
        early = std::fs::read(&snapshot).ok();
    }
    let early = early.unwrap();
    let before = std::fs::read(&snapshot).unwrap();
    while std::fs::read(&snapshot).unwrap() == before {
        commit_each(&broker, next, next + 100);
        next += 100;
    }
    commit_each(&broker, next, next + 2000);
    next += 2000;
    drop(broker);
    // Healthy: the last commit is there.
    let broker = open().unwrap();
    assert_eq!(
        broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset),
        Some(next - 1)
    );
    drop(broker);
    std::fs::write(&snapshot, &early).unwrap();
    match open() {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, snapshot);
            assert!(reason.contains("the offsets snapshot covers offset"), "{reason}");
        }
        other => panic!("an old snapshot was accepted: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Wakeup: stopping a consumer blocked in poll from another thread
// ---------------------------------------------------------------------------------------

/// A poll blocked for an hour returns `Wakeup` as soon as another thread wakes it; the
/// member stays in its group, and closing it then commits and leaves (Kafka's shutdown
/// pattern: `wakeup()` from a hook, catch `WakeupException`, `close()`).
#[test]
fn wakeup_interrupts_a_blocked_poll_and_the_consumer_closes_cleanly() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("orders", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "orders", 2, 3);
    let mut c = broker
        .consumer(ConsumerConfig::group("g").auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    c.subscribe(&["orders"]).unwrap();
    assert_eq!(poll_n(&mut c, 6).len(), 6);
    let wakeup = c.wakeup_handle();
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let worker = std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        let outcome = c.poll(Duration::from_secs(3600));
        done_tx.send(()).unwrap();
        (c, outcome)
    });
    started.recv_timeout(LONG).unwrap();
    // Long enough for the poll to spin and park (it spins ~50 µs).
    assert!(
        done.recv_timeout(Duration::from_millis(200)).is_err(),
        "poll returned early"
    );
    let woken = Instant::now();
    wakeup.wakeup();
    done.recv_timeout(LONG).expect("the poll returned after the wakeup");
    assert!(woken.elapsed() < Duration::from_secs(5), "{:?}", woken.elapsed());
    let (mut c, outcome) = worker.join().unwrap();
    assert!(matches!(outcome, Err(Error::Wakeup)), "{outcome:?}");
    // Still a member that owns both partitions, and usable.
    assert_eq!(broker.describe_group("g").unwrap().members.len(), 1);
    assert_eq!(assignment(&c), ["orders-0", "orders-1"]);
    broker
        .producer(ProducerConfig::default())
        .send(ProducerRecord::new("orders").partition(1).value("late"))
        .unwrap();
    assert_eq!(ids(&poll_n(&mut c, 1)), [(1, 3)]);
    c.close().unwrap();
    assert_eq!(broker.describe_group("g").unwrap().members.len(), 0);
    assert_eq!(
        broker.committed_offset("g", &tp("orders", 0)).map(|o| o.offset),
        Some(3)
    );
    assert_eq!(
        broker.committed_offset("g", &tp("orders", 1)).map(|o| o.offset),
        Some(4)
    );
}

/// A wakeup with no poll running interrupts the next poll once (however many wakeups came
/// before it), even with records waiting; that poll consumes nothing, and the next returns
/// the records from where the consumer was.
#[test]
fn a_wakeup_before_poll_interrupts_the_next_poll_once_and_consumes_nothing() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 4);
    let mut c = broker.consumer(manual("g").max_poll_records(2)).unwrap();
    c.subscribe(&["t"]).unwrap();
    assert_eq!(ids(&poll_n(&mut c, 2)), [(0, 0), (0, 1)]);
    let wakeup = c.wakeup_handle();
    let other = wakeup.clone();
    wakeup.wakeup();
    other.wakeup();
    assert!(matches!(c.poll(Duration::ZERO), Err(Error::Wakeup)));
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 2);
    assert_eq!(ids(&c.poll(Duration::ZERO).unwrap().to_vec()), [(0, 2), (0, 3)]);
    assert!(c.poll(Duration::ZERO).unwrap().is_empty());
    // A manually assigned consumer is woken the same way.
    let mut solo = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    solo.assign(&[tp("t", 0)]).unwrap();
    solo.wakeup_handle().wakeup();
    assert!(matches!(solo.poll(Duration::from_secs(3600)), Err(Error::Wakeup)));
    assert_eq!(solo.poll(Duration::ZERO).unwrap().len(), 4);
    // A handle outlives its consumer harmlessly.
    drop(c);
    wakeup.wakeup();
    // A typed consumer hands one out too.
    let mut typed: TypedConsumer<String, String, Utf8, Utf8> = TypedConsumer::new(solo, Utf8, Utf8);
    typed.wakeup_handle().wakeup();
    assert!(matches!(typed.poll(Duration::from_secs(3600)), Err(Error::Wakeup)));
}

/// `for record in consumer.iter()` ends when another thread wakes the consumer, after every
/// record produced before it was yielded.
#[test]
fn wakeup_ends_the_consumer_iterator() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let wakeup = c.wakeup_handle();
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let worker = std::thread::spawn(move || {
        let mut offsets = Vec::new();
        for record in c.iter() {
            let record = record.unwrap();
            offsets.push(record.offset());
            seen_tx.send(record.offset()).unwrap();
        }
        offsets
    });
    let producer = broker.producer(ProducerConfig::default());
    for i in 0..5 {
        producer.send(ProducerRecord::new("t").value(format!("{i}"))).unwrap();
        assert_eq!(seen.recv_timeout(LONG).unwrap(), i);
    }
    wakeup.wakeup();
    assert_eq!(worker.join().unwrap(), [0, 1, 2, 3, 4]);
}

/// Leaving a `for record in consumer.iter()` loop early (a `break`, a `?`) leaves the
/// records of its last poll that it did not yield unconsumed: the positions go back to the
/// first of them, so a commit after the loop, or the auto-commit at close, covers only what
/// the loop got, and the next poll returns the rest. (The iterator kept the positions the
/// whole poll reached: a loop that stopped after 3 of 20 records committed all 20, and no
/// member of the group ever read the other 17.)
#[test]
fn leaving_the_consumer_iterator_early_consumes_only_the_records_it_yielded() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 10);
    let everything: Vec<(u32, u64)> = (0..2).flat_map(|p| (0..10).map(move |o| (p, o))).collect();
    // A commit after the loop.
    let mut c = broker.consumer(manual("g")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let mut got = Vec::new();
    for record in c.iter() {
        let record = record.unwrap();
        got.push((record.partition(), record.offset()));
        if got.len() == 3 {
            break;
        }
    }
    for p in 0..2 {
        let yielded = got.iter().filter(|(q, _)| *q == p).count() as u64;
        assert_eq!(c.position(&tp("t", p)).unwrap(), yielded, "partition {p} after {got:?}");
    }
    c.commit().unwrap();
    drop(c);
    let mut next = broker.consumer(manual("g")).unwrap();
    next.subscribe(&["t"]).unwrap();
    got.extend(ids(&poll_n(&mut next, 17)));
    got.sort_unstable();
    assert_eq!(got, everything);
    drop(next);
    // The auto-commit at close, after a loop that returned early.
    let auto = || {
        broker
            .consumer(ConsumerConfig::group("auto").auto_offset_reset(OffsetReset::Earliest))
            .unwrap()
    };
    let mut c = auto();
    c.subscribe(&["t"]).unwrap();
    let mut got = Vec::new();
    let mut process = |c: &mut Consumer| -> std::result::Result<(), String> {
        for record in c.iter() {
            let record = record.map_err(|e| e.to_string())?;
            got.push((record.partition(), record.offset()));
            if got.len() == 5 {
                return Err("stopped".into());
            }
        }
        Ok(())
    };
    assert!(process(&mut c).is_err());
    drop(c);
    let mut next = auto();
    next.subscribe(&["t"]).unwrap();
    got.extend(ids(&poll_n(&mut next, 15)));
    got.sort_unstable();
    assert_eq!(got, everything);
}

/// Protects a consumer that turns eviction off with the longest interval there is (Kafka
/// users set `max.poll.interval.ms` to `Integer.MAX_VALUE` for that): the deadline
/// `last poll + max_poll_interval` used to be computed with `Instant + Duration`, which
/// panics past what an `Instant` holds, so the first `poll` — and every commit, describe,
/// reset or delete of the group, and every peer's poll — panicked. A deadline past the end
/// of time is never reached: such a member is never evicted.
#[test]
fn a_member_whose_poll_interval_never_ends_is_never_evicted() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 3);
    let mut forever = broker.consumer(manual("g").max_poll_interval(Duration::MAX)).unwrap();
    forever.subscribe(&["t"]).unwrap();
    assert_eq!(poll_n(&mut forever, 6).len(), 6);
    forever.commit().unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(3));
    // A peer's poll looks at its deadline too (to evict it, and to know when to look again).
    let mut peer = broker.consumer(manual("g")).unwrap();
    peer.subscribe(&["t"]).unwrap();
    peer.poll(Duration::from_millis(10)).unwrap();
    let d = broker.describe_group("g").unwrap();
    assert_eq!(d.members.len(), 2);
    assert!(matches!(
        broker.delete_group("g"),
        Err(Error::GroupNotEmpty { members: 2, .. })
    ));
    forever.poll(Duration::from_millis(10)).unwrap();
    forever.commit().unwrap();
}

/// `max_poll_interval` is at least 1 ms, as Kafka's `max.poll.interval.ms`: a shorter one
/// had expired by the time a member that just joined first polled, so that poll evicted it,
/// joined again, was evicted again — a `poll(10 ms)` with a 1 ns interval never returned.
#[test]
fn a_sub_millisecond_max_poll_interval_is_refused() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    for short in [Duration::from_nanos(1), Duration::from_micros(999)] {
        let refused = broker.consumer(ConsumerConfig::group("g").max_poll_interval(short));
        assert!(
            matches!(
                refused,
                Err(Error::InvalidConfig {
                    field: "max_poll_interval",
                    ..
                })
            ),
            "{short:?}: {refused:?}"
        );
    }
    let mut c = broker
        .consumer(ConsumerConfig::group("g").max_poll_interval(Duration::from_millis(1)))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(c.poll(Duration::from_millis(10)).map(|r| r.len()));
    });
    assert!(
        matches!(rx.recv_timeout(LONG), Ok(Ok(0))),
        "a 10 ms poll never returned"
    );
}

/// `delete_records_before` up to the log's next offset, which counts `Buffered` records not
/// written out yet, writes them out first: the log start never passes the visible end (it
/// did, and `reset_offsets` to an offset then panicked clamping into `start..=end`).
#[test]
fn reset_to_an_offset_after_deleting_records_past_buffered_ones() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    log.append(&[brooklet::Record::new().value("buffered")], Durability::Buffered)
        .unwrap();
    assert_eq!(log.visible_end_offset(), 3);
    assert_eq!(log.delete_records_before(4).unwrap(), 4);
    assert_eq!(log.visible_end_offset(), 4);
    for to in [0, 9] {
        let plan = broker
            .plan_reset_offsets("g", OffsetSpec::Offset(to), Some("t"))
            .unwrap();
        assert_eq!(plan, BTreeMap::from([(tp("t", 0), 4)]));
        let moved = broker.reset_offsets("g", OffsetSpec::Offset(to), Some("t")).unwrap();
        assert_eq!(moved, BTreeMap::from([(tp("t", 0), 4)]));
    }
}

// ---------------------------------------------------------------------------------------
// Offsets retention
// ---------------------------------------------------------------------------------------

/// Polls `until` every 20 ms for up to 30 s; panics with `what` if it never holds.
fn eventually(what: &str, mut until: impl FnMut() -> bool) {
    let start = Instant::now();
    while !until() {
        assert!(start.elapsed() < LONG, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With `offsets_retention` (Kafka's `offsets.retention.minutes`), a group's committed
/// offsets are deleted once it has been empty that long, counted from when its last member
/// left — not from its last commit — and a group with a live member keeps them however old
/// they are; offsets only `assign` consumers committed expire from their newest commit.
#[test]
fn offsets_of_a_group_empty_past_offsets_retention_are_deleted() {
    let dir = common::temp_dir();
    let retention = Duration::from_secs(2);
    let broker = Broker::builder()
        .retention_check_interval(Some(Duration::from_millis(20)))
        .offsets_retention(Some(retention))
        .open(dir.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 3);
    let committed = |group: &str| broker.committed_offset(group, &tp("t", 0)).map(|o| o.offset);
    let member = |group: &str| {
        let mut c = broker.consumer(manual(group)).unwrap();
        c.subscribe(&["t"]).unwrap();
        assert_eq!(poll_n(&mut c, 6).len(), 6);
        c.commit().unwrap();
        c
    };
    let started = Instant::now();
    member("left").close().unwrap();
    let mut alive = member("alive");
    let mut late = member("late");
    let mut solo = broker.consumer(manual("solo")).unwrap();
    solo.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(poll_n(&mut solo, 3).len(), 3);
    solo.commit().unwrap();
    solo.close().unwrap();
    for group in ["left", "alive", "late", "solo"] {
        assert_eq!(committed(group), Some(3), "{group}");
    }
    // The empty groups expire; the two with members keep theirs.
    eventually("left and solo expire", || {
        committed("left").is_none() && committed("solo").is_none()
    });
    assert!(started.elapsed() >= retention);
    assert_eq!((committed("alive"), committed("late")), (Some(3), Some(3)));
    // `late` leaves long after its last commit: its retention starts now.
    while started.elapsed() < retention + Duration::from_millis(500) {
        late.poll(Duration::from_millis(20)).unwrap();
    }
    late.close().unwrap();
    let left_at = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        committed("late"),
        Some(3),
        "expired {:?} after it emptied",
        left_at.elapsed()
    );
    eventually("late expires", || committed("late").is_none());
    assert!(left_at.elapsed() >= retention);
    // A member keeps the group's offsets however old; they expire once it left.
    assert_eq!(committed("alive"), Some(3));
    assert_eq!(broker.list_groups(), ["alive"]);
    alive.poll(Duration::ZERO).unwrap();
    alive.close().unwrap();
    eventually("alive expires once empty", || committed("alive").is_none());
    assert!(broker.list_groups().is_empty());
}

/// After a restart no member has joined yet: a group expires from its newest commit.
#[test]
fn after_a_restart_offsets_expire_from_their_newest_commit() {
    let dir = common::temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        fill(&broker, "t", 1, 2);
        let mut c = broker.consumer(manual("old")).unwrap();
        c.subscribe(&["t"]).unwrap();
        assert_eq!(poll_n(&mut c, 2).len(), 2);
        c.commit().unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    let broker = Broker::builder()
        .retention_check_interval(Some(Duration::from_millis(20)))
        .offsets_retention(Some(Duration::from_secs(1)))
        .open(dir.path())
        .unwrap();
    eventually("old expires", || broker.committed_offset("old", &tp("t", 0)).is_none());
    assert!(matches!(broker.describe_group("old"), Err(Error::UnknownGroup { .. })));
    // Refused settings.
    for builder in [
        Broker::builder().offsets_retention(Some(Duration::ZERO)),
        Broker::builder()
            .offsets_retention(Some(Duration::from_secs(60)))
            .retention_check_interval(None),
    ] {
        let other = common::temp_dir();
        match builder.open(other.path()) {
            Err(Error::InvalidConfig {
                field: "offsets_retention",
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// With `Synced` offsets, a commit is in the table only once synced (for `commit_async`, at
/// the consumer's next poll); until then it is still the group's newest commit. Offsets
/// retention counted only the table's, so a group whose earlier commits were old lost the
/// commit just made too (its tombstone written after it), though the commit reported success.
#[test]
fn offsets_retention_counts_a_commit_not_yet_synced() {
    let dir = common::temp_dir();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        fill(&broker, "t", 1, 4);
        let mut c = broker.consumer(manual("solo")).unwrap();
        c.assign(&[tp("t", 0)]).unwrap();
        c.seek(&tp("t", 0), 2).unwrap();
        c.commit().unwrap();
    }
    let retention = Duration::from_secs(5);
    std::thread::sleep(retention + Duration::from_millis(200));
    let interval = Duration::from_millis(300);
    let broker = Broker::builder()
        .offsets_durability(Durability::Synced)
        .retention_check_interval(Some(interval))
        .offsets_retention(Some(retention))
        .open(dir.path())
        .unwrap();
    let committed = || broker.committed_offset("solo", &tp("t", 0)).map(|o| o.offset);
    // Before the first retention pass: the old commit, and a new one not yet in the table.
    let mut c = broker.consumer(manual("solo")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c.seek(&tp("t", 0), 3).unwrap();
    let outcome = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&outcome);
    c.commit_async(move |r| *seen.lock().unwrap() = Some(r.is_ok()));
    // A few retention passes, well inside the retention of the new commit.
    let passes = Instant::now();
    while passes.elapsed() < interval * 4 && committed().is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
    c.poll(Duration::ZERO).unwrap();
    assert_eq!(*outcome.lock().unwrap(), Some(true));
    assert_eq!(committed(), Some(3), "a commit that succeeded was deleted");
}

/// Protects Kafka's auto-commit keeping an `assign` consumer's offsets alive: Kafka's
/// auto-commit commits every position each interval, so offsets retention (which counts
/// from a group's newest commit when no member joined it) never expires the offsets of a
/// consumer that is running. Brooklet's auto-commit skips positions it committed already;
/// a consumer idle on a quiet partition for longer than `offsets_retention` made no commit,
/// the retention pass deleted the offsets it was reading for, and until its next
/// auto-commit the group had none: a crash then restarted it from `auto_offset_reset`.
#[test]
fn an_auto_committing_assign_consumer_keeps_its_offsets_past_offsets_retention() {
    let dir = common::temp_dir();
    let retention = Duration::from_secs(1);
    let broker = Broker::builder()
        .retention_check_interval(Some(Duration::from_millis(20)))
        .offsets_retention(Some(retention))
        .open(dir.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    fill(&broker, "t", 1, 3);
    let committed = || broker.committed_offset("solo", &tp("t", 0)).map(|o| o.offset);
    let mut c = broker
        .consumer(
            ConsumerConfig::group("solo")
                .auto_offset_reset(OffsetReset::Earliest)
                .auto_commit_interval(Duration::from_millis(300)),
        )
        .unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(poll_n(&mut c, 3).len(), 3);
    while committed().is_none() {
        c.poll(Duration::from_millis(20)).unwrap();
    }
    // Nothing new arrives; the consumer keeps polling (and auto-committing) for three
    // retention periods.
    let start = Instant::now();
    while start.elapsed() < retention * 3 {
        assert!(c.poll(Duration::from_millis(20)).unwrap().is_empty());
        assert_eq!(
            committed(),
            Some(3),
            "offsets gone {:?} into the idle stretch",
            start.elapsed()
        );
    }
}

/// `beginning_offsets` and `end_offsets` (Kafka's `beginningOffsets`/`endOffsets`) of any
/// partitions, assigned or not: the log start (moved by deleting records) and the visible
/// end (not `Buffered` records still in the writer's buffer).
#[test]
fn beginning_and_end_offsets_follow_the_log_start_and_the_visible_end() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    fill(&broker, "t", 2, 5);
    let c = broker.consumer(ConsumerConfig::default()).unwrap();
    let all = [tp("t", 0), tp("t", 1)];
    let log = broker.partition_log(&tp("t", 1)).unwrap();
    assert_eq!(log.delete_records_before(3).unwrap(), 3);
    log.append(&[brooklet::Record::new().value("buffered")], Durability::Buffered)
        .unwrap();
    assert_eq!(
        c.beginning_offsets(&all).unwrap(),
        BTreeMap::from([(tp("t", 0), 0), (tp("t", 1), 3)])
    );
    assert_eq!(
        c.end_offsets(&all).unwrap(),
        BTreeMap::from([(tp("t", 0), 5), (tp("t", 1), 5)])
    );
    log.flush().unwrap();
    assert_eq!(c.end_offsets(&all[1..]).unwrap(), BTreeMap::from([(tp("t", 1), 6)]));
    assert!(matches!(
        c.end_offsets(&[tp("nope", 0)]),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        c.beginning_offsets(&[tp("t", 2)]),
        Err(Error::InvalidPartition { partition: 2, .. })
    ));
}

/// A user assignor with a bug: it panics once the group has two members.
#[derive(Debug)]
struct PanicsWithTwoMembers;

impl brooklet::Assignor for PanicsWithTwoMembers {
    fn name(&self) -> &str {
        "panics"
    }

    fn assign(
        &self,
        members: &[brooklet::MemberSubscription],
        partitions: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        assert!(members.len() < 2, "a bug in the user's assignor");
        brooklet::RangeAssignor.assign(members, partitions)
    }
}

#[test]
fn a_panicking_assignor_falls_back_to_range_and_never_panics_another_member() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(4)).unwrap();
    // The leader (oldest member) brings the faulty assignor; the others use the default.
    let mut leader = broker.consumer(manual("g").assignor(PanicsWithTwoMembers)).unwrap();
    leader.subscribe(&["t"]).unwrap();
    settle(&broker, "g", &mut [&mut leader]);
    assert_eq!(leader.assignment().len(), 4);

    // Joining runs the leader's assignor in this member's thread: it must not panic here.
    let mut second = broker.consumer(manual("g")).unwrap();
    second.subscribe(&["t"]).unwrap();
    let mut third = broker.consumer(manual("g")).unwrap();
    third.subscribe(&["t"]).unwrap();
    settle(&broker, "g", &mut [&mut leader, &mut second, &mut third]);
    // The range assignor's result, as for an invalid assignment.
    assert_eq!(
        [assignment(&leader), assignment(&second), assignment(&third)],
        [vec!["t-0", "t-1"], vec!["t-2"], vec!["t-3"]]
    );

    // Leaving does not panic either, and the partitions of the member that left are
    // handed out again: none is left without an owner.
    third.close().unwrap();
    settle(&broker, "g", &mut [&mut leader, &mut second]);
    assert_eq!(
        [assignment(&leader), assignment(&second)],
        [vec!["t-0", "t-1"], vec!["t-2", "t-3"]]
    );
}

/// A commit is one batch of the committed-offset log, all or nothing, so past that log's
/// batch limit (half of `offsets_compact_bytes`, at least 64 KiB and at most 1 MiB) it is
/// refused whole with `RecordTooLarge` and nothing of it is committed.
#[test]
fn a_commit_larger_than_the_offsets_log_takes_is_refused_whole() {
    let dir = common::temp_dir();
    let broker = Broker::builder()
        .offsets_compact_bytes(64 << 10)
        .open(dir.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(16)).unwrap();
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&(0..16).map(|p| tp("t", p)).collect::<Vec<_>>()).unwrap();
    let offsets = |n: u32| -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        (0..n)
            .map(|p| (tp("t", p), OffsetAndMetadata::new(0).metadata("m".repeat(4096))))
            .collect()
    };
    match c.commit_offsets(&offsets(16)) {
        Err(Error::RecordTooLarge { size, max }) => {
            assert_eq!(max, 64 << 10);
            assert!(size > max, "{size}");
        }
        other => panic!("16 x 4 KiB of metadata in a 64 KiB batch: {other:?}"),
    }
    let committed = |p| broker.committed_offset("g", &tp("t", p)).map(|om| om.offset);
    assert_eq!((0..16).filter_map(committed).count(), 0);
    c.commit_offsets(&offsets(15)).unwrap();
    assert_eq!(
        (0..16).map(committed).collect::<Vec<_>>()[..],
        [[Some(0); 15].as_slice(), &[None]].concat()[..]
    );
}

// ---------------------------------------------------------------------------------------
// Hand-overs: eviction, commits in the revoke listener, close
// ---------------------------------------------------------------------------------------

/// Subscribes again when its partitions are lost (a fresh start after an eviction).
struct ResubscribeOnLost;

impl RebalanceListener for ResubscribeOnLost {
    fn on_partitions_lost(&mut self, consumer: &mut Consumer, _partitions: &[TopicPartition]) {
        consumer.subscribe(&["t"]).unwrap();
    }
}

/// An evicted member whose `on_partitions_lost` subscribes again has joined as a new member
/// there; its poll must not join a second time, which left the first new membership in the
/// group with nobody polling it: its share of the partitions went unread until it too was
/// evicted, `max_poll_interval` later.
#[test]
fn a_listener_that_subscribes_again_when_evicted_joins_the_group_once() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let mut zombie = broker
        .consumer(manual("g").max_poll_interval(Duration::from_millis(100)))
        .unwrap();
    zombie.subscribe_with_listener(&["t"], ResubscribeOnLost).unwrap();
    zombie.poll(Duration::from_millis(1)).unwrap();
    assert_eq!(zombie.assignment().len(), 2);
    let old = zombie.member_id().map(str::to_owned);
    // Stop polling for longer than max_poll_interval: the next poll finds it evicted.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    zombie.poll(Duration::from_millis(1)).unwrap();
    assert_ne!(zombie.member_id().map(str::to_owned), old, "not evicted");
    let members: Vec<String> = broker
        .describe_group("g")
        .unwrap()
        .members
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    assert_eq!(
        members,
        [zombie.member_id().unwrap().to_owned()],
        "one membership per consumer"
    );
    // And it reads both partitions again.
    let start = Instant::now();
    while zombie.assignment().len() < 2 {
        assert!(start.elapsed() < LONG, "{:?}", broker.describe_group("g"));
        zombie.poll(Duration::from_millis(10)).unwrap();
    }
}

/// Commits asynchronously when partitions are taken away, and reports the outcome.
struct CommitAsyncOnRevoke(std::sync::mpsc::Sender<brooklet::Result<()>>);

impl RebalanceListener for CommitAsyncOnRevoke {
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, _partitions: &[TopicPartition]) {
        let tx = self.0.clone();
        consumer.commit_async(move |result| {
            let _ = tx.send(result);
        });
    }
}

/// A broker with `Synced` offsets and topic "t" of `partitions` partitions holding 5
/// records each, and the only member of group "g", which has read them all and whose
/// listener commits with `commit_async` on revoke, reporting the outcome on the receiver.
fn member_committing_async_on_revoke(
    partitions: u32,
) -> (
    tempfile::TempDir,
    Broker,
    Consumer,
    std::sync::mpsc::Receiver<brooklet::Result<()>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::builder()
        .offsets_durability(Durability::Synced)
        .open(dir.path())
        .unwrap();
    broker
        .create_topic("t", TopicConfig::with_partitions(partitions))
        .unwrap();
    fill(&broker, "t", partitions, 5);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut consumer = broker.consumer(manual("g")).unwrap();
    consumer
        .subscribe_with_listener(&["t"], CommitAsyncOnRevoke(tx))
        .unwrap();
    poll_n(&mut consumer, 5 * partitions as usize);
    (dir, broker, consumer, rx)
}

/// `close` runs `on_partitions_revoked`, where a listener may `commit_async`: that commit's
/// callback must run before `close` returns (`commit_async` promises the outcome at the
/// next poll, commit or close, and none follows a close). It was dropped uncalled — and
/// with `Synced` offsets the commit, written but never waited for, stayed out of the
/// offset table, so the group's next member re-read what had been committed.
#[test]
fn a_commit_async_made_while_closing_reports_and_is_committed() {
    let (_dir, broker, consumer, rx) = member_committing_async_on_revoke(1);
    consumer.close().unwrap();
    let outcome = rx.recv_timeout(LONG).expect("the commit_async callback never ran");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        broker
            .committed_offset("g", &TopicPartition::new("t", 0))
            .map(|o| o.offset),
        Some(5)
    );
}

/// `on_partitions_revoked` is the place to commit, so that the partitions' next owner starts
/// there. A `commit_async` made there must be in the offset table before the partitions are
/// handed over: with `Synced` offsets it reached the table only once synced, at the old
/// owner's next poll, and the new owner, claiming meanwhile, started before it and re-read
/// what had been committed.
#[test]
fn a_commit_async_on_revoke_is_where_the_next_owner_starts() {
    let (_dir, broker, mut old, rx) = member_committing_async_on_revoke(2);
    let mut new = broker.consumer(manual("g")).unwrap();
    new.subscribe(&["t"]).unwrap();
    let moved = TopicPartition::new("t", 1);
    let mut reread = Vec::new();
    let start = Instant::now();
    while !new.assignment().contains(&moved) {
        assert!(start.elapsed() < LONG, "{:?}", broker.describe_group("g"));
        old.poll(Duration::from_millis(1)).unwrap();
        reread.extend(new.poll(Duration::from_millis(1)).unwrap().iter().map(|r| r.offset()));
    }
    assert_eq!(new.position(&moved).unwrap(), 5);
    assert_eq!(reread, [0u64; 0], "the new owner starts where the old one committed");
    old.poll(Duration::from_millis(1)).unwrap();
    let outcome = rx.recv_timeout(LONG).expect("the commit_async callback never ran");
    assert!(outcome.is_ok(), "{outcome:?}");
}

// ---------------------------------------------------------------------------------------
// Positions out of range: resets inside a poll
// ---------------------------------------------------------------------------------------

fn send_values(broker: &Broker, topic: &str, values: std::ops::Range<u64>) {
    let producer = broker.producer(ProducerConfig::default());
    let records: Vec<ProducerRecord> = values
        .map(|i| ProducerRecord::new(topic).partition(0).value(format!("v{i}")))
        .collect();
    producer.send_batch(&records).unwrap();
}

/// A position that fell below the log start is reset by `auto_offset_reset` inside the
/// poll, and that same poll reads from the reset position: the records are there, so a
/// poll must not come back empty (nor wait out its timeout for an append that may never
/// come) because its first read hit the reset.
#[test]
fn a_poll_that_resets_an_out_of_range_position_returns_the_records_at_the_new_one() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_values(&broker, "t", 0..10);
    let mut consumer = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    consumer.seek(&tp("t", 0), 2).unwrap();
    broker
        .partition_log(&tp("t", 0))
        .unwrap()
        .delete_records_before(5)
        .unwrap();

    let records = consumer.poll(Duration::ZERO).unwrap().to_vec();
    let offsets: Vec<u64> = records.iter().map(|r| r.offset()).collect();
    assert_eq!(offsets, (5..10).collect::<Vec<_>>());
    assert_eq!(consumer.position(&tp("t", 0)).unwrap(), 10);
}

/// `OffsetReset::Latest` means the visible end (Kafka's high watermark), whether the
/// consumer had no position or an out-of-range one: records appended `Buffered` and not yet
/// readable are past the visible end and are read once they are written, in both cases.
#[test]
fn a_latest_reset_of_an_out_of_range_position_does_not_skip_buffered_records() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_values(&broker, "t", 0..10);
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    let buffered: Vec<brooklet::Record> = (10..15)
        .map(|i| brooklet::Record::new().value(format!("v{i}")))
        .collect();
    log.append(&buffered, Durability::Buffered).unwrap();
    assert_eq!((log.visible_end_offset(), log.log_end_offset()), (10, 15));

    let mut fresh = broker.consumer(ConsumerConfig::default()).unwrap();
    fresh.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(fresh.position(&tp("t", 0)).unwrap(), 10);

    let mut reset = broker.consumer(ConsumerConfig::default()).unwrap();
    reset.assign(&[tp("t", 0)]).unwrap();
    reset.seek(&tp("t", 0), 100).unwrap();
    assert!(reset.poll(Duration::ZERO).unwrap().is_empty());
    assert_eq!(reset.position(&tp("t", 0)).unwrap(), 10);

    log.flush().unwrap();
    for consumer in [&mut fresh, &mut reset] {
        let offsets: Vec<u64> = consumer
            .poll(Duration::from_secs(30))
            .unwrap()
            .iter()
            .map(|r| r.offset())
            .collect();
        assert_eq!(offsets, (10..15).collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------------------------------
// Batches kept between polls
// ---------------------------------------------------------------------------------------

/// `n` lz4-compressed records "v{i}" for `offsets` to partition 0 of "t", one batch.
fn send_lz4_batch(broker: &Broker, offsets: std::ops::Range<u64>) {
    let producer = broker.producer(ProducerConfig::default().compression(brooklet::Compression::Lz4));
    let records: Vec<ProducerRecord> = offsets
        .map(|i| ProducerRecord::new("t").partition(0).value(format!("v{i}")))
        .collect();
    producer.send_batch(&records).unwrap();
}

/// Flips every bit of the byte at `at` in the file at `path`, as rot on disk would.
fn flip_byte(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
}

/// `(offset, value)` of each record of one poll.
fn polled(c: &mut Consumer) -> Vec<(u64, String)> {
    c.poll(Duration::from_millis(1))
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.offset(),
                String::from_utf8_lossy(r.value().unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

fn expected(offsets: std::ops::Range<u64>, prefix: &str) -> Vec<(u64, String)> {
    offsets.map(|i| (i, format!("{prefix}{i}"))).collect()
}

/// A poll that returns part of what it read keeps the rest for the next polls (no read,
/// no decompression again); every record still comes once, in order, across compressed
/// batches, appends between polls and a seek back into the kept batch.
#[test]
fn polls_return_kept_batches_in_order_and_a_seek_starts_afresh() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..10);
    send_lz4_batch(&broker, 10..20);
    let mut c = broker.consumer(ConsumerConfig::default().max_poll_records(3)).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c.seek(&tp("t", 0), 0).unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.extend(polled(&mut c));
    }
    assert_eq!(got, expected(0..12, "v"));
    // Appended after the read: the kept batches end before it, the next read finds it.
    send_lz4_batch(&broker, 20..25);
    for _ in 0..5 {
        got.extend(polled(&mut c));
    }
    assert_eq!(got, expected(0..25, "v"));
    // Back into a batch: from there, once.
    c.seek(&tp("t", 0), 11).unwrap();
    assert_eq!(polled(&mut c), expected(11..14, "v"));
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 14);
}

/// Polls that each take a few records of a large batch go on where the last one stopped
/// in it (not from the batch's first record, which made one record per poll cost a walk of
/// the whole batch so far): every record comes once, in order, with the key, value,
/// headers and timestamp the log holds, for plain, compressed and `LogAppendTime` batches.
#[test]
fn small_polls_through_large_batches_return_every_record_exactly() {
    for (name, config, compression) in [
        ("plain", TopicConfig::with_partitions(1), brooklet::Compression::None),
        ("zstd", TopicConfig::with_partitions(1), brooklet::Compression::Zstd),
        (
            "append-time",
            TopicConfig::with_partitions(1).timestamp_type(TimestampType::LogAppendTime),
            brooklet::Compression::None,
        ),
    ] {
        let broker = Broker::temporary().unwrap();
        broker.create_topic("t", config).unwrap();
        let producer = broker.producer(ProducerConfig::default().compression(compression));
        for b in 0..3u64 {
            let records: Vec<ProducerRecord> = (b * 200..(b + 1) * 200)
                .map(|i| {
                    ProducerRecord::new("t")
                        .partition(0)
                        .key(format!("k{i}"))
                        .value("v".repeat(i as usize % 37))
                        .header("i", i.to_string())
                        .timestamp(5_000 + i as i64)
                })
                .collect();
            producer.send_batch(&records).unwrap();
        }
        let log = broker.partition_log(&tp("t", 0)).unwrap();
        let stored = common::read_all(&log);
        assert_eq!(stored.len(), 600, "{name}");
        for max in [1, 7, 199] {
            let mut c = broker
                .consumer(ConsumerConfig::default().max_poll_records(max))
                .unwrap();
            c.assign(&[tp("t", 0)]).unwrap();
            c.seek(&tp("t", 0), 0).unwrap();
            let mut got = Vec::new();
            while got.len() < 600 {
                let records = c.poll(Duration::from_millis(1)).unwrap();
                assert!(
                    !records.is_empty() && records.len() <= max,
                    "{name}, {max}: {}",
                    records.len()
                );
                got.extend(records.iter().map(|r| {
                    let headers: Vec<(String, Vec<u8>)> =
                        r.headers().map(|(k, v)| (k.to_owned(), v.to_vec())).collect();
                    (
                        r.offset(),
                        r.key().map(<[u8]>::to_vec),
                        r.value().map(<[u8]>::to_vec),
                        headers,
                        r.timestamp(),
                    )
                }));
            }
            let want: Vec<_> = stored
                .iter()
                .map(|r| {
                    let headers: Vec<(String, Vec<u8>)> =
                        r.headers.iter().map(|h| (h.name.clone(), h.value.to_vec())).collect();
                    (
                        r.offset,
                        r.key.as_ref().map(|k| k.to_vec()),
                        r.value.as_ref().map(|v| v.to_vec()),
                        headers,
                        r.timestamp,
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}, max_poll_records {max}");
            // A seek back into a batch a poll is part-way through starts from there, once.
            c.seek(&tp("t", 0), 301).unwrap();
            let again: Vec<u64> = c
                .poll(Duration::from_millis(1))
                .unwrap()
                .iter()
                .map(|r| r.offset())
                .collect();
            assert_eq!(again, (301..301 + max as u64).collect::<Vec<_>>(), "{name}, {max}");
        }
    }
}

/// Kept batches are not returned once the log was truncated under them: the records past
/// the cut were replaced, and the consumer reads the new ones.
#[test]
fn a_truncation_drops_the_batches_a_poll_kept() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..5);
    send_lz4_batch(&broker, 5..10);
    let mut c = broker.consumer(ConsumerConfig::default().max_poll_records(3)).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c.seek(&tp("t", 0), 0).unwrap();
    // The poll read both batches and keeps the rest of them.
    assert_eq!(polled(&mut c), expected(0..3, "v"));
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    assert_eq!(log.truncate_to(5).unwrap(), 5);
    let producer = broker.producer(ProducerConfig::default());
    for i in 5..8 {
        producer
            .send(ProducerRecord::new("t").partition(0).value(format!("new{i}")))
            .unwrap();
    }
    let mut got = polled(&mut c);
    got.extend(polled(&mut c));
    assert_eq!(
        got,
        [(3, "v3"), (4, "v4"), (5, "new5"), (6, "new6"), (7, "new7")].map(|(o, v)| (o, v.to_owned()))
    );
}

/// Kept batches below a log start moved past the position are not returned either: the
/// position is out of range, and `auto_offset_reset` moves it as for any read.
#[test]
fn a_log_start_moved_past_the_position_drops_the_batches_a_poll_kept() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..10);
    let mut c = broker
        .consumer(
            ConsumerConfig::default()
                .max_poll_records(3)
                .auto_offset_reset(OffsetReset::Earliest),
        )
        .unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c.seek(&tp("t", 0), 0).unwrap();
    assert_eq!(polled(&mut c), expected(0..3, "v"));
    broker
        .partition_log(&tp("t", 0))
        .unwrap()
        .delete_records_before(6)
        .unwrap();
    assert_eq!(polled(&mut c), expected(6..9, "v"));
}

/// A poll that returns the rest of its kept batches and then fails to read what follows
/// them (here a damaged batch) returns those records, as a poll reading them from the log
/// does; the damage is reported by the next poll, at its offset. The kept records used to
/// be dropped with the error: the poll failed at a position whose records read fine, and
/// the same error came again two polls later.
#[test]
fn a_failed_read_after_the_kept_batches_does_not_drop_their_records() {
    let dir = common::temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..10);
    send_lz4_batch(&broker, 10..20);
    let first = broker.partition_log(&tp("t", 0)).unwrap().read(0, 1 << 20).unwrap();
    let a_len = first[0].size_bytes();
    assert_eq!((first[1].base_offset(), first[1].size_bytes() > 8), (10, true));
    // Reads of one batch at a time: the first poll reads the first batch only.
    let mut c = broker
        .consumer(
            ConsumerConfig::default()
                .max_poll_records(7)
                .max_partition_fetch_bytes(a_len),
        )
        .unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c.seek(&tp("t", 0), 0).unwrap();
    assert_eq!(polled(&mut c), expected(0..7, "v"));
    // The second batch's last byte rots on disk (its CRC no longer matches).
    let segment = dir.path().join("t-0").join("00000000000000000000.log");
    flip_byte(&segment, (a_len + first[1].size_bytes() - 1) as u64);
    assert_eq!(polled(&mut c), expected(7..10, "v"));
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 10);
    let damaged = c.poll(Duration::from_millis(1));
    assert!(matches!(damaged, Err(Error::Corrupt { .. })), "{damaged:?}");
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 10);
}

/// Three batches in `t-0` (offsets 0..10, 10..20, 20..30) with one byte of the second
/// flipped, at `at(first batch's size, second's)`: a consumer reading from 0 gets the records
/// before the damage (they used to be dropped with the error when one read held them and
/// the damaged batch, as a Kafka fetch does not), then the damage, with the file and the
/// byte position where the second batch starts, and its position stays there. Returns it,
/// with the directory and broker it reads.
fn consume_to_damage_in_the_second_batch(at: impl Fn(usize, usize) -> usize) -> (tempfile::TempDir, Broker, Consumer) {
    let dir = common::temp_dir();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    for offsets in [0..10, 10..20, 20..30] {
        send_lz4_batch(&broker, offsets);
    }
    let batches = broker.partition_log(&tp("t", 0)).unwrap().read(0, 1 << 20).unwrap();
    let bases: Vec<u64> = batches.iter().map(brooklet::RecordBatch::base_offset).collect();
    assert_eq!(bases, [0, 10, 20]);
    let (a_len, b_len) = (batches[0].size_bytes(), batches[1].size_bytes());
    drop(batches);
    let segment = dir.path().join("t-0").join("00000000000000000000.log");
    flip_byte(&segment, at(a_len, b_len) as u64);
    let mut c = broker.consumer(ConsumerConfig::default()).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c.seek(&tp("t", 0), 0).unwrap();
    assert_eq!(polled(&mut c), expected(0..10, "v"));
    match c.poll(Duration::from_millis(1)) {
        Err(Error::Corrupt { path, position, .. }) => assert_eq!((path, position), (segment, a_len as u64)),
        other => panic!("expected the damage, got {other:?}"),
    }
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 10);
    (dir, broker, c)
}

/// A batch that rots (its last byte: the CRC no longer matches) fails the poll that
/// reaches it, after the records before it; a seek past it reads on.
#[test]
fn a_damaged_batch_fails_the_poll_that_reaches_it_after_the_records_before_it() {
    let (_dir, _broker, mut c) = consume_to_damage_in_the_second_batch(|a_len, b_len| a_len + b_len - 1);
    c.seek(&tp("t", 0), 20).unwrap();
    assert_eq!(polled(&mut c), expected(20..30, "v"));
}

/// As above for damage to a batch's base offset, which lies outside its CRC (the most
/// significant byte of the little-endian field).
#[test]
fn a_damaged_base_offset_fails_the_poll_that_reaches_it_after_the_records_before_it() {
    consume_to_damage_in_the_second_batch(|a_len, _| a_len + 7);
}

/// A member of group `g` (manual commits) assigned `t-0`, which has polled its first `n`
/// records.
fn member_that_read_t0(broker: &Broker, n: usize) -> Consumer {
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(poll_n(&mut c, n).len(), n);
    c
}

/// Sends `new{i}` for each offset of `offsets` to `t-0`, one record per send.
fn send_new(broker: &Broker, offsets: std::ops::Range<u64>) {
    let producer = broker.producer(ProducerConfig::default());
    for i in offsets {
        let meta = producer
            .send(ProducerRecord::new("t").partition(0).value(format!("new{i}")))
            .unwrap();
        assert_eq!(meta.offset, i);
    }
}

/// A truncation below a group's committed offset lowers it to the new end: the records
/// sent next get the offsets past it, and the group reads them instead of skipping them
/// (Kafka's consumers detect the truncation with leader epochs, KIP-320). The committed
/// offset used to stay at 10, and the group resumed there, skipping offsets 5 to 9.
#[test]
fn a_truncation_lowers_committed_offsets_past_the_new_end() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..5);
    send_lz4_batch(&broker, 5..10);
    {
        let mut c = member_that_read_t0(&broker, 10);
        c.commit().unwrap();
    }
    let mut other = broker.consumer(manual("below")).unwrap();
    other.assign(&[tp("t", 0)]).unwrap();
    other
        .commit_offsets(&BTreeMap::from([(tp("t", 0), OffsetAndMetadata::new(3).metadata("m"))]))
        .unwrap();
    drop(other);

    let log = broker.partition_log(&tp("t", 0)).unwrap();
    assert_eq!(log.truncate_to(7).unwrap(), 5, "the cut is at the batch holding 7");
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(5));
    let below = broker.committed_offset("below", &tp("t", 0)).unwrap();
    assert_eq!(
        (below.offset, below.metadata.as_str()),
        (3, "m"),
        "an offset below the cut stays"
    );

    send_new(&broker, 5..8);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(polled(&mut c), expected(5..8, "new"));
}

/// A truncation through a log the application kept after dropping its broker cannot lower
/// the commits then; the log closes as after a crash, so the next open lowers them.
#[test]
fn a_truncation_after_the_broker_was_dropped_is_lowered_at_the_next_open() {
    let dir = common::temp_dir();
    let log = {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
        send_lz4_batch(&broker, 0..5);
        send_lz4_batch(&broker, 5..10);
        let mut c = member_that_read_t0(&broker, 10);
        c.commit().unwrap();
        broker.partition_log(&tp("t", 0)).unwrap()
    };
    assert_eq!(log.truncate_to(5).unwrap(), 5);
    drop(log);
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(5));
}

/// A consumer whose position a truncation passed moves back to the new end at its next
/// poll, and reads the records sent there since; with `auto_offset_reset` `None` the poll
/// reports the truncation instead (Kafka's `LogTruncationException`) until a seek. A
/// commit before that poll commits the new end, not the old position. The consumer used to
/// go on at its old position, skipping the records sent at the offsets in between.
#[test]
fn a_consumer_past_a_truncation_resumes_at_the_new_end() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..10);
    let log = broker.partition_log(&tp("t", 0)).unwrap();

    let mut c = member_that_read_t0(&broker, 10);
    assert_eq!(log.truncate_to(0).unwrap(), 0);
    send_new(&broker, 0..3);
    c.commit().unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(0));
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 10, "moved by the next poll");
    assert_eq!(polled(&mut c), expected(0..3, "new"));
    assert_eq!(c.position(&tp("t", 0)).unwrap(), 3);

    let mut strict = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::None))
        .unwrap();
    strict.assign(&[tp("t", 0)]).unwrap();
    strict.seek(&tp("t", 0), 3).unwrap();
    assert_eq!(log.truncate_to(1).unwrap(), 1);
    send_new(&broker, 1..2);
    for _ in 0..2 {
        let r = strict.poll(Duration::from_millis(1));
        assert!(
            matches!(&r, Err(Error::LogTruncated { partition, position: 3, end: 1 }) if *partition == tp("t", 0)),
            "{r:?}"
        );
        assert_eq!(strict.position(&tp("t", 0)).unwrap(), 3);
    }
    strict.seek(&tp("t", 0), 1).unwrap();
    assert_eq!(polled(&mut strict), expected(1..2, "new"));
    // The other consumer, at 3, moves back to 1 too, and reads the record sent there.
    assert_eq!(polled(&mut c), expected(1..2, "new"));
}

/// Leaves `dir` as a power loss does when group `g`'s `Synced` commit of offset 10 (metadata
/// "m") survived, but of the 10 records of `t-0` it had read only the 4 sent `Synced` did
/// (the other 6 were sent `Written`).
fn commit_past_what_a_power_loss_keeps(dir: &std::path::Path) {
    let fs = FaultFs::new();
    let broker = Broker::builder()
        .vfs(Arc::new(fs.clone()))
        .offsets_durability(Durability::Synced)
        .open(dir)
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let synced = broker.producer(ProducerConfig::default().durability(Durability::Synced));
    for i in 0..4 {
        synced
            .send(ProducerRecord::new("t").partition(0).value(format!("old{i}")))
            .unwrap();
    }
    let written = broker.producer(ProducerConfig::default());
    for i in 4..10 {
        written
            .send(ProducerRecord::new("t").partition(0).value(format!("old{i}")))
            .unwrap();
    }
    let mut c = member_that_read_t0(&broker, 10);
    c.commit_offsets(&BTreeMap::from([(
        tp("t", 0),
        OffsetAndMetadata::new(10).metadata("m"),
    )]))
    .unwrap();
    fs.power_loss(PowerLoss::DropUnsynced);
}

/// A group's commit that a power loss kept while the records it had read were lost (sent
/// `Written`, committed `Synced`) is lowered to the log's end when the broker opens: the
/// records sent after the restart get offsets the commit passed, and the group reads them.
/// It used to resume at the old commit and skip them.
#[test]
fn a_commit_past_the_log_end_after_a_power_loss_is_lowered_at_open() {
    let dir = common::temp_dir();
    commit_past_what_a_power_loss_keeps(dir.path());
    let broker = Broker::open(dir.path()).unwrap();
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    assert_eq!(log.log_end_offset(), 4, "the Written records were lost");
    let committed = broker.committed_offset("g", &tp("t", 0)).unwrap();
    assert_eq!((committed.offset, committed.metadata.as_str()), (4, "m"));
    send_new(&broker, 4..7);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(polled(&mut c), expected(4..7, "new"));
    drop(c);
    drop(broker);
    // The lowering was synced: it survives the next open.
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(4));
}

/// A truncation inside the batch that straddles the log start restarts the log empty at
/// its start (a batch is never split): a consumer past it moves back to the log start,
/// where the next records go, and a commit before that poll commits the log start. They
/// used to move to offset 0, below the log start, where `auto_offset_reset` took over:
/// `Latest` skipped the records sent at the log start, a commit stored 0 (and a group
/// resuming from it reset the same way), and with `None` the error named end 0, where no
/// seek can read.
#[test]
fn a_truncation_that_restarts_the_log_at_its_start_moves_consumers_to_the_start() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..10);
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    let latest = || {
        ConsumerConfig::group("g")
            .auto_offset_reset(OffsetReset::Latest)
            .enable_auto_commit(false)
    };
    let mut c = broker.consumer(latest()).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c.seek(&tp("t", 0), 5).unwrap();
    assert_eq!(polled(&mut c), expected(5..10, "v"));
    let mut strict = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::None))
        .unwrap();
    strict.assign(&[tp("t", 0)]).unwrap();
    strict.seek(&tp("t", 0), 10).unwrap();

    assert_eq!(log.truncate_to(7).unwrap(), 5, "the log restarts empty at its start");
    send_new(&broker, 5..8);
    c.commit().unwrap();
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(5));
    assert_eq!(polled(&mut c), expected(5..8, "new"));
    let r = strict.poll(Duration::from_millis(1));
    assert!(
        matches!(
            &r,
            Err(Error::LogTruncated {
                position: 10,
                end: 5,
                ..
            })
        ),
        "{r:?}"
    );
    strict.seek(&tp("t", 0), 5).unwrap();
    assert_eq!(polled(&mut strict), expected(5..8, "new"));
}

/// A group's `Synced` commit past what a power loss left of the log (the records sent
/// `Written`) is lowered at the first open that completes, even if an earlier open failed
/// after it had opened the partition. The failed open used to close the partition cleanly
/// (its clean-shutdown marker written), so the next open took it for one that lost
/// nothing, kept the commit, and the group skipped the records sent at the offsets past
/// the log's end.
#[test]
fn a_failed_open_does_not_keep_a_commit_past_the_log_end_from_being_lowered() {
    let dir = common::temp_dir();
    commit_past_what_a_power_loss_keeps(dir.path());
    // An open that fails once the partitions are open: here a damaged offsets snapshot.
    let snapshot = dir.path().join("offsets").join("snapshot");
    std::fs::write(&snapshot, b"not a snapshot").unwrap();
    assert!(matches!(Broker::open(dir.path()), Err(Error::Corrupt { .. })));
    std::fs::remove_file(&snapshot).unwrap();

    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.partition_log(&tp("t", 0)).unwrap().log_end_offset(), 4);
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(4));
    send_new(&broker, 4..7);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(polled(&mut c), expected(4..7, "new"));
}

/// A consumer that starts while a truncation is lowering the group's commits (its
/// `Synced` lowering waiting for the fsync) does not take the old commit, past the cut, for
/// its position: it starts at the end the cut left and reads the records sent there since.
/// It used to take the old commit as checked (the truncation had already happened), and
/// skipped the records between the cut and it.
#[test]
fn a_consumer_starting_while_a_truncation_lowers_the_commits_reads_from_the_cut() {
    let dir = common::temp_dir();
    let fs = gate::OffsetsGateFs(gate::GateFs {
        inner: FaultFs::new(),
        gate: Arc::default(),
    });
    let broker = Broker::builder()
        .vfs(Arc::new(fs.clone()))
        .offsets_durability(Durability::Synced)
        .open(dir.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..5);
    send_lz4_batch(&broker, 5..10);
    {
        let mut c = member_that_read_t0(&broker, 10);
        c.commit().unwrap();
    }
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    let gate = Arc::clone(&fs.0.gate);
    gate.arm();
    let cutter = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.truncate_to(7))
    };
    gate.wait_entered();
    // The cut is made; the lowering of the group's commit waits for its fsync.
    assert_eq!(log.log_end_offset(), 5);
    send_new(&broker, 5..12);
    let mut c = broker.consumer(manual("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    let got = c.poll(Duration::from_millis(1)).map(|records| {
        records
            .iter()
            .map(|r| {
                (
                    r.offset(),
                    String::from_utf8_lossy(r.value().unwrap_or_default()).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    });
    gate.release();
    assert_eq!(cutter.join().unwrap().unwrap(), 5);
    assert_eq!(got.unwrap(), expected(5..12, "new"));
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(5));
}

/// A truncation whose lowering of the commits failed (the offsets log's write failed)
/// reports the error with the cut made; a consumer that starts then still does not take
/// the old commit past the cut, and the next `truncate_to` — even to the log end, which
/// cuts nothing — lowers it. The old commit used to be taken as checked, skipping the
/// records sent between the cut and it, and only a truncation to the old offset again
/// (cutting the records sent since) lowered it.
#[test]
fn a_failed_lowering_of_the_commits_is_not_taken_for_done_and_is_retried() {
    let fs = FaultFs::new();
    let dir = common::temp_dir();
    let broker = Broker::builder().vfs(Arc::new(fs.clone())).open(dir.path()).unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_lz4_batch(&broker, 0..5);
    send_lz4_batch(&broker, 5..10);
    {
        let mut c = member_that_read_t0(&broker, 10);
        c.commit().unwrap();
    }
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    // The cut writes one file, the truncations marker for read-only readers, before and
    // after it cuts: the third write is the lowering's.
    fs.inject(Fault {
        op: FaultOp::Write,
        nth: 3,
        errno: EIO,
        forever: false,
    });
    let r = log.truncate_to(7);
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert_eq!(log.log_end_offset(), 5, "the cut is made");
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(10));

    send_new(&broker, 5..12);
    {
        let mut c = broker.consumer(manual("g")).unwrap();
        c.assign(&[tp("t", 0)]).unwrap();
        assert_eq!(polled(&mut c), expected(5..12, "new"));
    }
    assert_eq!(log.truncate_to(12).unwrap(), 12, "nothing is cut");
    assert_eq!(broker.committed_offset("g", &tp("t", 0)).map(|o| o.offset), Some(5));
}
