//! Quickstart: a broker in a temp dir, an `orders` topic with 3 partitions, a producer that
//! sends order events keyed by user, a read-back that totals revenue per user, a lookup by
//! time, and a reopen that shows everything was kept.
//!
//! Run with `cargo run --release --example quickstart`.

use std::time::Instant;

use brooklet::{Broker, Durability, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition};

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    println!("brooklet quickstart: data directory {}", data.display());

    // 1. A broker and a topic.
    let broker = Broker::open(&data)?;
    broker.create_topic("orders", TopicConfig::with_partitions(3).segment_bytes(1024 * 1024))?;

    // 2. Send 100,000 order events keyed by user: one key always lands on one partition
    //    (the same partition number Kafka would choose), so each user's orders stay in order.
    let producer = broker.producer(ProducerConfig::default().durability(Durability::Written));
    let base_ts = 1_700_000_000_000i64;
    let batches: Vec<Vec<ProducerRecord>> = (0..100)
        .map(|b| {
            (b * 1_000..(b + 1) * 1_000)
                .map(|n| {
                    let user = USERS[n % USERS.len()];
                    let amount = 5.0 + (n % 97) as f64;
                    ProducerRecord::new("orders")
                        .key(user)
                        .value(format!(r#"{{"order_id":{n},"user":"{user}","amount":{amount:.2}}}"#))
                        .header("source", "quickstart")
                        .timestamp(base_ts + n as i64)
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut stored = Vec::with_capacity(100_000);
    for batch in batches {
        stored.extend(producer.send_batch(batch)?);
    }
    let elapsed = started.elapsed();
    println!(
        "sent 100000 orders with send_batch in {:.1} ms ({:.1} M records/s)",
        elapsed.as_secs_f64() * 1e3,
        100_000.0 / elapsed.as_secs_f64() / 1e6
    );
    for user in USERS {
        let i = USERS.iter().position(|u| *u == user).unwrap_or(0);
        println!("  key {user:<6} -> partition {}", stored[i].partition);
    }
    let one = producer.send(
        ProducerRecord::new("orders")
            .key("alice")
            .value(r#"{"order_id":-1,"amount":0}"#),
    )?;
    println!(
        "one more blocking send: stored at {}/{}@{}",
        one.topic, one.partition, one.offset
    );
    producer.close()?;
    drop(producer); // a producer holds its broker open

    // 3. Read every partition back and total the revenue per user.
    let description = broker.describe_topic("orders")?;
    let mut revenue = [0.0f64; 5];
    let mut count = 0u64;
    for p in &description.partitions {
        println!(
            "  partition {}: offsets {}..{}, {} bytes",
            p.partition, p.log_start_offset, p.log_end_offset, p.size_bytes
        );
        let log = broker.partition_log(&TopicPartition::new("orders", p.partition))?;
        let mut offset = p.log_start_offset;
        while offset < p.log_end_offset {
            let batches = log.read(offset, 1 << 20)?;
            for batch in &batches {
                // `iter()` borrows each record from the batch: no allocation per record.
                for record in batch.iter() {
                    let record = record?;
                    if record.offset() < offset {
                        continue; // the first batch may start before the offset asked for
                    }
                    let value = String::from_utf8_lossy(record.value().unwrap_or_default());
                    let amount: f64 = value
                        .rsplit_once("\"amount\":")
                        .and_then(|(_, a)| a.trim_end_matches('}').parse().ok())
                        .unwrap_or(0.0);
                    if let Some(i) = USERS.iter().position(|u| Some(u.as_bytes()) == record.key()) {
                        revenue[i] += amount;
                    }
                    count += 1;
                }
            }
            offset = batches.last().map_or(p.log_end_offset, |b| b.last_offset() + 1);
        }
    }
    println!("read back {count} records; revenue per user:");
    for (user, total) in USERS.iter().zip(revenue) {
        println!("  {user:<6} {total:>12.2}");
    }

    // 4. The first order of a user's partition at or after a timestamp (the time index).
    let alice = broker.partition_log(&TopicPartition::new("orders", stored[0].partition))?;
    let wanted = base_ts + 42_000;
    println!(
        "first record with timestamp >= {wanted} in partition {}: offset {:?}",
        stored[0].partition,
        alice.offset_for_timestamp(wanted)?
    );
    drop(alice);

    // 5. Close (drop) and reopen: nothing is scanned, everything is there.
    drop(broker);
    let started = Instant::now();
    let broker = Broker::open(&data)?;
    let reopened = broker.describe_topic("orders")?;
    println!(
        "reopened in {:.2} ms: topics {:?}, end offsets {:?}",
        started.elapsed().as_secs_f64() * 1e3,
        broker.list_topics(),
        reopened.partitions.iter().map(|p| p.log_end_offset).collect::<Vec<_>>()
    );
    let log = broker.partition_log(&TopicPartition::new("orders", 0))?;
    let report = log.recovery_report();
    println!(
        "partition 0 recovery report: clean shutdown = {}, segments scanned = {}",
        report.clean_shutdown, report.segments_scanned
    );
    Ok(())
}
