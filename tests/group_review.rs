//! Consumer-group regressions found in review: each test failed before its fix.

use std::time::{Duration, Instant};

use brooklet::{Broker, Consumer, ConsumerConfig, OffsetReset, RebalanceListener, TopicConfig, TopicPartition};

const LONG: Duration = Duration::from_secs(30);

/// A group member that starts at the beginning and commits only when told.
fn manual(group: &str) -> ConsumerConfig {
    ConsumerConfig::group(group)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
}

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

/// `close` runs `on_partitions_revoked`, where a listener may `commit_async`: that commit's
/// callback must run before `close` returns (`commit_async` promises the outcome at the
/// next poll, commit or close, and none follows a close). It was dropped uncalled — and
/// with `Synced` offsets the commit, written but never waited for, stayed out of the
/// offset table, so the group's next member re-read what had been committed.
#[test]
fn a_commit_async_made_while_closing_reports_and_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::builder()
        .offsets_durability(brooklet::Durability::Synced)
        .open(dir.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    let producer = broker.producer(brooklet::ProducerConfig::default());
    for i in 0..5 {
        producer
            .send(brooklet::ProducerRecord::new("t").value(format!("{i}")))
            .unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut consumer = broker.consumer(manual("g")).unwrap();
    consumer
        .subscribe_with_listener(&["t"], CommitAsyncOnRevoke(tx))
        .unwrap();
    let start = Instant::now();
    let mut read = 0;
    while read < 5 {
        assert!(start.elapsed() < LONG, "only {read} of 5 records arrived");
        read += consumer.poll(Duration::from_millis(10)).unwrap().len();
    }
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
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::builder()
        .offsets_durability(brooklet::Durability::Synced)
        .open(dir.path())
        .unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(2)).unwrap();
    let producer = broker.producer(brooklet::ProducerConfig::default());
    for p in 0..2 {
        for i in 0..5 {
            producer
                .send(brooklet::ProducerRecord::new("t").partition(p).value(format!("{i}")))
                .unwrap();
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut old = broker.consumer(manual("g")).unwrap();
    old.subscribe_with_listener(&["t"], CommitAsyncOnRevoke(tx)).unwrap();
    let start = Instant::now();
    let mut read = 0;
    while read < 10 {
        assert!(start.elapsed() < LONG, "only {read} of 10 records arrived");
        read += old.poll(Duration::from_millis(10)).unwrap().len();
    }
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
