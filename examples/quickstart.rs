//! Quickstart: the "order events" mini project of the Kafka tutorials, in process.
//!
//! What it shows, step by step:
//! 1. a broker in a data directory, and a topic `orders` with 3 partitions;
//! 2. a typed producer sending 100 JSON orders keyed by user: one key always lands on one
//!    partition (the one Kafka's murmur2 partitioner picks), so each user's orders stay in order;
//! 3. a consumer group `analytics` that subscribes, polls, aggregates and commits its offsets;
//! 4. the group's description (committed offset, log end, lag), as `kafka-consumer-groups --describe`;
//! 5. a restart: everything is closed and the broker reopened from disk; a new `analytics`
//!    member resumes exactly where the group committed, while a second group, `audit`, reads
//!    all the orders from the beginning (fan-out: every group gets every record).
//!
//! Run with `cargo run --release --example quickstart` (add `-- DIR` to keep the data in a new
//! directory DIR, e.g. to inspect it with the CLI). It exits non-zero if any check fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use brooklet::{
    Broker, ConsumerConfig, Json, OffsetReset, ProducerConfig, TopicConfig, TopicPartition, TypedConsumer,
    TypedProducer, Utf8, partition_for_key,
};
use serde::{Deserialize, Serialize};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 3;
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const ITEMS: [&str; 6] = ["book", "coffee", "headphones", "keyboard", "lamp", "mug"];

/// The event: sent as JSON, e.g. `{"order_id":7,"user":"bob","amount":42.5,"item":"mug"}`.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    order_id: u32,
    user: String,
    amount: f64,
    item: String,
}

/// xorshift64: a tiny deterministic PRNG, so every run sends the same orders.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next_u64() % from.len() as u64) as usize]
    }

    fn order(&mut self, order_id: u32) -> Order {
        let (user, item) = (self.pick(&USERS).to_owned(), self.pick(&ITEMS).to_owned());
        let amount = (500 + self.next_u64() % 19_500) as f64 / 100.0; // 5.00 to 199.99
        Order {
            order_id,
            user,
            amount,
            item,
        }
    }
}

/// Fails the run (exit code 1) with `msg` unless `cond` holds: CI catches regressions.
fn ensure(cond: bool, msg: impl std::fmt::Display) -> Res {
    cond.then_some(()).ok_or_else(|| format!("check failed: {msg}").into())
}

/// Sends orders `ids`, keyed by user; returns how many went to each partition.
fn send_orders(
    producer: &TypedProducer<String, Order, Utf8, Json>,
    rng: &mut Rng,
    ids: std::ops::Range<u32>,
) -> Res<Vec<u32>> {
    let mut per_partition = vec![0; PARTITIONS as usize];
    for order_id in ids {
        let order = rng.order(order_id);
        let meta = producer.send(TOPIC, Some(&order.user), &order)?;
        // The key is stored as UTF-8 text (Kafka's StringSerializer), and its partition is
        // murmur2(key bytes) % partitions: exactly what Kafka's default partitioner computes.
        let kafka_partition = partition_for_key(order.user.as_bytes(), PARTITIONS);
        ensure(meta.partition == kafka_partition, "partition = murmur2(key) % 3")?;
        per_partition[meta.partition as usize] += 1;
    }
    Ok(per_partition)
}

/// `p0=31 p1=42 p2=27` (counts) or `p0@31 p1@42 p2@27` (offsets).
fn show<T: std::fmt::Display>(values: &[T], sep: &str) -> String {
    let parts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(p, v)| format!("p{p}{sep}{v}"))
        .collect();
    parts.join(" ")
}

/// A member of `group` subscribed to `orders`, committing only when told to.
fn consumer(broker: &Broker, group: &str) -> Res<TypedConsumer<String, Order, Utf8, Json>> {
    let config = ConsumerConfig::group(group)
        .auto_offset_reset(OffsetReset::Earliest) // a new group starts at the oldest record
        .enable_auto_commit(false);
    let mut consumer = TypedConsumer::new(broker.consumer(config)?, Utf8, Json);
    consumer.subscribe(&[TOPIC])?;
    Ok(consumer)
}

/// Polls until `want` orders arrived (giving up after 10 s), then briefly once more to check
/// that there are no others. Returns (partition, offset, order) of each.
fn read_orders(consumer: &mut TypedConsumer<String, Order, Utf8, Json>, want: usize) -> Res<Vec<(usize, u64, Order)>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut orders = Vec::new();
    let mut done = false;
    while !done {
        // Once all are there (or time is up), one more quick poll checks that no others come.
        done = orders.len() >= want || Instant::now() >= deadline;
        for record in consumer.poll(Duration::from_millis(if done { 50 } else { 500 }))? {
            let record = record?; // a value that is not an Order comes back as a PoisonRecord
            let order = record.value.ok_or("unexpected tombstone")?;
            ensure(record.key.as_ref() == Some(&order.user), "the key is the order's user")?;
            orders.push((record.raw.partition() as usize, record.raw.offset(), order));
        }
    }
    let read = orders.len();
    ensure(read == want, format!("expected {want} orders, read {read}"))?;
    Ok(orders)
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error's message, not its debug form.
            eprintln!("quickstart: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Res {
    // By default the data lives in a temp dir deleted at the end; `-- DIR` keeps it in DIR
    // (a fresh directory), to look at afterwards with the CLI (`brooklet --dir DIR ...`).
    let temp = tempfile::tempdir()?;
    let data = match std::env::args().nth(1) {
        Some(dir) if std::path::Path::new(&dir).exists() => {
            return Err(format!("{dir} exists; give a new directory for the quickstart's data").into());
        }
        Some(dir) => std::path::PathBuf::from(dir),
        None => temp.path().join("data"),
    };
    println!("== brooklet quickstart: order events (data in {})", data.display());

    // 1. A broker and a topic.
    let broker = Broker::open(&data)?;
    broker.create_topic(TOPIC, TopicConfig::with_partitions(PARTITIONS))?;

    // 2. 100 random orders, keyed by user.
    let producer = TypedProducer::new(broker.producer(ProducerConfig::default()), Utf8, Json);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let sent = send_orders(&producer, &mut rng, 0..100)?;
    println!("producer: sent 100 orders keyed by user -> {}", show(&sent, "="));

    // 3. The analytics group reads them all, aggregates per user and commits.
    let mut analytics = consumer(&broker, "analytics")?;
    let orders = read_orders(&mut analytics, 100)?;
    let mut per_user: BTreeMap<&str, (u32, i64)> = USERS.iter().map(|u| (*u, (0, 0))).collect();
    for (_, _, order) in &orders {
        let (count, total) = per_user.get_mut(order.user.as_str()).ok_or("unknown user")?;
        *count += 1;
        *total += cents(order.amount);
    }
    let revenue: i64 = per_user.values().map(|(_, c)| c).sum();
    let n = orders.len();
    println!("analytics: read {n} orders\n  user   orders    revenue  average");
    per_user.insert("total", (n as u32, revenue)); // sorts after the users
    for (user, (count, sum)) in &per_user {
        let total = *sum as f64 / 100.0;
        let avg = total / f64::from((*count).max(1));
        println!("  {user:<6} {count:>6} {total:>10.2} {avg:>8.2}");
    }
    analytics.commit()?; // stores the group's "next offset to read" per partition

    // 4. What `kafka-consumer-groups --describe --group analytics` would show.
    let group = broker.describe_group("analytics")?;
    println!("group analytics: {:?}, {} member(s)", group.state, group.members.len());
    println!("  topic  partition committed log-end lag");
    let mut committed = Vec::new();
    for p in &group.partitions {
        let (offset, lag) = (p.committed.as_ref().ok_or("no commit")?.offset, p.lag.ok_or("no lag")?);
        let (topic, partition, end) = (&p.partition.topic, p.partition.partition, p.log_end_offset);
        println!("  {topic:<6} {partition:>9} {offset:>9} {end:>7} {lag:>3}");
        let expected = u64::from(sent[partition as usize]); // the next offset to read = records read
        ensure(lag == 0 && offset == expected, "committed everything, lag 0")?;
        committed.push(offset);
    }

    // 5. Restart: close everything (producers and consumers keep their broker open), reopen.
    drop((analytics, producer, broker));
    let started = Instant::now();
    let broker = Broker::open(&data)?;
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let (mut clean, mut scanned) = (0, 0);
    for p in 0..PARTITIONS {
        let log = broker.partition_log(&TopicPartition::new(TOPIC, p))?;
        clean += u32::from(log.recovery_report().clean_shutdown);
        scanned += log.recovery_report().segments_scanned;
    }
    let closed = format!("{clean}/{PARTITIONS} partitions closed cleanly");
    println!("restart: Broker::open took {open_ms:.2} ms ({closed}, {scanned} segments scanned)");
    ensure(clean == PARTITIONS && scanned == 0, "clean reopen, no scan")?;

    let producer = TypedProducer::new(broker.producer(ProducerConfig::default()), Utf8, Json);
    let more = send_orders(&producer, &mut rng, 100..120)?;
    println!("producer: sent 20 more orders -> {}", show(&more, "="));

    // A new member of the same group starts from the group's committed offsets.
    let mut analytics = consumer(&broker, "analytics")?;
    let orders = read_orders(&mut analytics, 20)?;
    let mut resumed = committed.clone(); // a partition without new orders stays where it was
    for (p, offset, _) in &orders {
        resumed[*p] = resumed[*p].min(*offset);
    }
    let re_read = orders.iter().filter(|(_, _, o)| o.order_id < 100).count();
    let new_revenue: i64 = orders.iter().map(|(_, _, o)| cents(o.amount)).sum();
    println!("analytics (new member): resumed at offsets {}", show(&resumed, "@"));
    println!("analytics: read {} new orders, {re_read} re-read", orders.len());
    ensure(resumed == committed && re_read == 0, "resumes at the committed offsets")?;
    analytics.commit()?;

    // Another group has its own offsets: it reads everything (fan-out).
    let mut audit = consumer(&broker, "audit")?;
    let all = read_orders(&mut audit, 120)?;
    let audit_revenue: i64 = all.iter().map(|(_, _, o)| cents(o.amount)).sum();
    println!("audit (second group, from earliest): read all {} orders", all.len());
    ensure(audit_revenue == revenue + new_revenue, "audit's revenue = analytics'")?;
    audit.commit()?; // so that `brooklet groups describe audit` shows it too
    let lag = broker.describe_group("analytics")?.total_lag();
    ensure(lag == 0, "analytics is caught up")?;

    // 6. Summary.
    let total = audit_revenue as f64 / 100.0;
    println!("OK: 120 orders, revenue {total:.2}; analytics resumed after a restart (lag {lag}); audit saw all 120");
    Ok(())
}
