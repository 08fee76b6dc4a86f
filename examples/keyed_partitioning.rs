//! Keys and partitioning: events keyed by user id always land on the same partition (the
//! one Kafka's murmur2 partitioner picks), so one user's events stay in order; keyless
//! events are spread by the sticky partitioner, a batch at a time.
//!
//! Run with `cargo run --release --example keyed_partitioning`. Exits non-zero if a check fails.

use std::collections::BTreeMap;

use brooklet::{Broker, ProducerConfig, ProducerRecord, TopicConfig, partition_for_key};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn ensure(ok: bool, what: &str) -> Res {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn main() -> Res {
    let broker = Broker::temporary()?;
    broker.create_topic("user-events", TopicConfig::with_partitions(3))?;
    let producer = broker.producer(ProducerConfig::default());

    println!("keyed events: the key decides the partition");
    println!("  {:<8} {:<12} {:>9} {:>6}", "user", "event", "partition", "offset");
    let mut partition_of: BTreeMap<&str, u32> = BTreeMap::new();
    for event in ["login", "add_to_cart", "checkout"] {
        for user in ["alice", "bob", "carol", "dave"] {
            let meta = producer.send(ProducerRecord::new("user-events").key(user).value(event))?;
            println!("  {user:<8} {event:<12} {:>9} {:>6}", meta.partition, meta.offset);
            ensure(
                *partition_of.entry(user).or_insert(meta.partition) == meta.partition,
                "a key always maps to one partition",
            )?;
            ensure(
                meta.partition == partition_for_key(user.as_bytes(), 3),
                "the partition is murmur2(key) % 3, as in Kafka",
            )?;
        }
    }
    println!("  -> {partition_of:?}: the same partition as Kafka's Java client would pick");

    println!("keyless events: the sticky partitioner fills a batch on one partition, then moves on");
    // Small batches (512 bytes) so that the 60 events below make several of them.
    let batching = broker.producer(ProducerConfig::default().batch_size(512));
    let deliveries: Vec<_> = (0..60)
        .map(|i| batching.send_async(ProducerRecord::new("user-events").value(format!("page-view-{i:03}"))))
        .collect();
    batching.flush()?;
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for d in deliveries {
        let p = d.wait()?.partition;
        match runs.last_mut() {
            Some((last, n)) if *last == p => *n += 1,
            _ => runs.push((p, 1)),
        }
    }
    println!("  60 keyless events, in send order, as (partition, consecutive events): {runs:?}");
    ensure(runs.len() > 1, "keyless batches move between partitions")?;
    let d = broker.describe_topic("user-events")?;
    println!("records per partition, the keyed events above included:");
    for p in &d.partitions {
        println!("  partition {}: {} records", p.partition, p.log_end_offset);
    }
    Ok(())
}
