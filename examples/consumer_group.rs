//! A consumer group sharing a topic: three members split a 3-partition topic, one leaves and
//! the other two share all three partitions — each resuming at the committed offset, so
//! nothing is lost and nothing is read twice. Prints the assignment at each step. With the
//! default Range assignor (as Kafka's) the partitions are dealt out again in order, so a
//! survivor may hand one of its own to the other; `StickyAssignor` would move only the
//! leaver's.
//!
//! Run with `cargo run --release --example consumer_group`. Exits non-zero if a check fails.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use brooklet::{Broker, Consumer, ConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn ensure(ok: bool, what: &str) -> Res {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn show(name: &str, c: &Consumer) {
    let parts: Vec<String> = c.assignment().iter().map(ToString::to_string).collect();
    println!("  {name}: generation {} owns {parts:?}", c.generation());
}

/// Polls every member in turn until the group is stable.
fn settle(broker: &Broker, members: &mut [(&str, &mut Consumer)], seen: &mut BTreeSet<(u32, u64)>) -> Res {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (_, c) in members.iter_mut() {
            for r in &c.poll(Duration::from_millis(10))? {
                ensure(seen.insert((r.partition(), r.offset())), "no record is read twice")?;
            }
            c.commit()?;
        }
        let d = broker.describe_group("workers")?;
        if d.state == brooklet::GroupState::Stable && members.iter().all(|(_, c)| c.generation() == d.generation) {
            return Ok(());
        }
        ensure(Instant::now() < deadline, "the group settles")?;
    }
}

fn main() -> Res {
    let broker = Broker::temporary()?;
    broker.create_topic("jobs", TopicConfig::with_partitions(3))?;
    let producer = broker.producer(ProducerConfig::default());
    let config = ConsumerConfig::group("workers")
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .max_poll_records(4);
    let (mut a, mut b, mut c) = (
        broker.consumer(config.clone())?,
        broker.consumer(config.clone())?,
        broker.consumer(config)?,
    );
    for m in [&mut a, &mut b, &mut c] {
        m.subscribe(&["jobs"])?;
    }
    let mut seen = BTreeSet::new();
    println!("three members join:");
    settle(&broker, &mut [("a", &mut a), ("b", &mut b), ("c", &mut c)], &mut seen)?;
    for (n, m) in [("a", &a), ("b", &b), ("c", &c)] {
        show(n, m);
        ensure(m.assignment().len() == 1, "each member owns one partition")?;
    }
    for i in 0..30 {
        producer.send(ProducerRecord::new("jobs").partition(i % 3).value(format!("job-{i}")))?;
    }
    // Each member processes a few jobs and commits.
    settle(&broker, &mut [("a", &mut a), ("b", &mut b), ("c", &mut c)], &mut seen)?;
    println!(
        "processed {} jobs so far, each member committing after every poll; member c leaves (close leaves the group)",
        seen.len()
    );
    // Auto-commit is off, so close commits nothing: c's position is the commit `settle`
    // made after its last poll, where its partition's new owner resumes.
    c.close()?;
    settle(&broker, &mut [("a", &mut a), ("b", &mut b)], &mut seen)?;
    println!("after the rebalance:");
    show("a", &a);
    show("b", &b);
    ensure(
        a.assignment().len() + b.assignment().len() == 3,
        "the two take over all partitions",
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 30 && Instant::now() < deadline {
        for m in [&mut a, &mut b] {
            for r in &m.poll(Duration::from_millis(20))? {
                ensure(seen.insert((r.partition(), r.offset())), "no record is read twice")?;
            }
            m.commit()?;
        }
    }
    println!(
        "all {} jobs processed, none lost and none read twice; group lag {}",
        seen.len(),
        broker.describe_group("workers")?.total_lag()
    );
    ensure(seen.len() == 30, "nothing is lost")?;
    Ok(())
}
