//! Soak: produce and consume at full speed for a while with size-based retention on, and
//! print resident memory and disk usage every few seconds — both must stay flat.
//!
//! ```sh
//! cargo run --release --example soak -- 600     # ten minutes (default 20 seconds)
//! ```
//!
//! Two producer threads send 100-byte records (keyed, so all 4 partitions fill) with
//! `send_batch`; a consumer group of two members reads everything and commits after each
//! poll. Each partition keeps about 8 MiB (retention by size, 1 MiB segments). The program
//! exits non-zero if memory or disk grew by more than a margin between the first and the
//! last third of the run, or if the consumers fell behind for good: once the producers stop,
//! the group must commit every partition's end (lag 0) within 30 seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brooklet::{Broker, ConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn main() -> Res<()> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(20), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let broker = Broker::open(dir.path())?;
    broker.create_topic(
        "soak",
        TopicConfig::with_partitions(4)
            .segment_bytes(1 << 20)
            .retention_bytes(Some(8 << 20)),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    // The consumers stop after the producers, once they caught up (or gave up).
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for t in 0..2u64 {
        let (producer, stop, produced) = (
            broker.producer(ProducerConfig::default()),
            Arc::clone(&stop),
            Arc::clone(&produced),
        );
        producers.push(std::thread::spawn(move || -> brooklet::Result<()> {
            let value = vec![b'v'; 100];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<ProducerRecord> = (0..500)
                    .map(|j| {
                        ProducerRecord::new("soak")
                            .key(format!("t{t}-{}", (i + j) % 64))
                            .value(value.clone())
                    })
                    .collect();
                producer.send_batch(&batch)?;
                i += 500;
                produced.fetch_add(500, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let (broker, stop, consumed) = (broker.clone(), Arc::clone(&stop_consumers), Arc::clone(&consumed));
        consumers.push(std::thread::spawn(move || -> brooklet::Result<()> {
            let config = ConsumerConfig::group("soak")
                .auto_offset_reset(OffsetReset::Earliest)
                .enable_auto_commit(false)
                .max_poll_records(5_000);
            let mut c = broker.consumer(config)?;
            c.subscribe(&["soak"])?;
            while !stop.load(Ordering::Relaxed) {
                let records = c.poll(Duration::from_millis(100))?;
                consumed.fetch_add(records.len() as u64, Ordering::Relaxed);
                c.commit()?;
            }
            Ok(())
        }));
    }
    println!("soak: {seconds} s, 2 producers, a 2-member group, 4 partitions of <= 8 MiB each");
    println!(
        "{:>6} {:>12} {:>12} {:>10} {:>10}",
        "t (s)", "produced", "consumed", "RSS MiB", "disk MiB"
    );
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(2).min(Duration::from_secs(seconds)));
        let (rss, disk) = (rss_kib() / 1024, disk_bytes(dir.path()) >> 20);
        let (p, c) = (produced.load(Ordering::Relaxed), consumed.load(Ordering::Relaxed));
        println!(
            "{:>6} {:>12} {:>12} {:>10} {:>10}",
            start.elapsed().as_secs(),
            p,
            c,
            rss,
            disk
        );
        samples.push((rss, disk));
    }
    stop.store(true, Ordering::Relaxed);
    for t in producers {
        t.join().map_err(|_| "a soak thread panicked")??;
    }
    // The producers are done: the group must reach the end of every partition.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    let lag = loop {
        // A partition the group never committed lags by all it holds (the group itself is
        // unknown if it committed nothing).
        let lag: u64 = match broker.describe_group("soak") {
            Ok(group) if group.partitions.len() == 4 => {
                group.partitions.iter().map(|p| p.lag.unwrap_or(p.log_end_offset)).sum()
            }
            _ => broker
                .describe_topic("soak")?
                .partitions
                .iter()
                .map(|p| p.log_end_offset)
                .sum(),
        };
        if lag == 0 || Instant::now() >= drain_deadline {
            break lag;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stop_consumers.store(true, Ordering::Relaxed);
    for t in consumers {
        t.join().map_err(|_| "a soak thread panicked")??;
    }
    if lag > 0 {
        return Err(
            format!("the consumers fell behind for good: lag {lag} records 30 s after the producers stopped").into(),
        );
    }
    if samples.is_empty() {
        return Ok(());
    }
    let third = (samples.len() / 3).max(1);
    let max_of = |s: &[(u64, u64)], f: fn(&(u64, u64)) -> u64| s.iter().map(f).max().unwrap_or(0);
    let (early, late) = (&samples[..third], &samples[samples.len() - third..]);
    let (rss0, rss1) = (max_of(early, |s| s.0), max_of(late, |s| s.0));
    let (disk0, disk1) = (max_of(early, |s| s.1), max_of(late, |s| s.1));
    let (p, c) = (produced.load(Ordering::Relaxed), consumed.load(Ordering::Relaxed));
    println!(
        "summary: {p} produced, {c} consumed ({:.1} M records/s); RSS {rss0} -> {rss1} MiB, disk {disk0} -> {disk1} MiB",
        p as f64 / start.elapsed().as_secs_f64() / 1e6
    );
    // Flat: the late maximum within 25% (plus a little slack) of the early one.
    if rss1 > rss0 + rss0 / 4 + 16 {
        return Err(format!("resident memory grew: {rss0} -> {rss1} MiB").into());
    }
    if disk1 > disk0 + disk0 / 4 + 16 {
        return Err(format!("disk usage grew: {disk0} -> {disk1} MiB").into());
    }
    Ok(())
}
