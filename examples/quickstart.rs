//! Quickstart: write order events to a partition log in a temp dir, read them back, look
//! one up by time, and reopen the log to show that it kept everything.
//!
//! Run with `cargo run --release --example quickstart`.

use std::time::Instant;

use brooklet::{Durability, LogConfig, PartitionLog, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("orders-0");
    let config = LogConfig::default().segment_bytes(1024 * 1024);
    println!("brooklet quickstart: partition log in {}", path.display());

    // 1. Append 100,000 order events in batches of 1,000, keyed by user, with a header.
    let log = PartitionLog::open(&path, config.clone())?;
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let base_ts = 1_700_000_000_000i64;
    let batches: Vec<Vec<Record>> = (0..100)
        .map(|batch| {
            (0..1_000)
                .map(|i| {
                    let n = batch * 1_000 + i;
                    let user = users[n % users.len()];
                    let amount = 5.0 + (n % 97) as f64;
                    Record::new()
                        .key(user)
                        .value(format!(r#"{{"order_id":{n},"user":"{user}","amount":{amount:.2}}}"#))
                        .header("source", "quickstart")
                        .timestamp(base_ts + n as i64)
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for records in &batches {
        log.append(records, Durability::Written)?;
    }
    log.flush()?; // fdatasync: everything is on disk now
    let elapsed = started.elapsed();
    println!(
        "appended 100000 records (batches of 1000, then one flush) in {:.1} ms ({:.1} M records/s), {} segments, {} bytes on disk, offsets {}..{}",
        elapsed.as_secs_f64() * 1e3,
        100_000.0 / elapsed.as_secs_f64() / 1e6,
        log.segment_count(),
        log.size_bytes(),
        log.log_start_offset(),
        log.log_end_offset(),
    );

    // 2. Read everything back and total the revenue per user.
    let mut offset = log.log_start_offset();
    let mut revenue = [0.0f64; 5];
    let mut count = 0u64;
    while offset < log.log_end_offset() {
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
                if let Some(i) = users.iter().position(|u| Some(u.as_bytes()) == record.key()) {
                    revenue[i] += amount;
                }
                count += 1;
            }
        }
        offset = batches.last().map_or(offset, |b| b.last_offset() + 1);
    }
    println!("read back {count} records; revenue per user:");
    for (user, total) in users.iter().zip(revenue) {
        println!("  {user:<6} {total:>12.2}");
    }

    // 3. Find the first order at or after a timestamp (the time index).
    let wanted = base_ts + 42_000;
    let found = log.offset_for_timestamp(wanted)?;
    println!("first record with timestamp >= {wanted}: offset {found:?}");

    // 4. Close cleanly and reopen: nothing is scanned, everything is there.
    log.close()?;
    let started = Instant::now();
    let log = PartitionLog::open(&path, config)?;
    let report = log.recovery_report();
    println!(
        "reopened in {:.2} ms: clean shutdown = {}, segments scanned = {}, end offset = {}",
        started.elapsed().as_secs_f64() * 1e3,
        report.clean_shutdown,
        report.segments_scanned,
        log.log_end_offset()
    );
    let first = log.read(0, 1)?;
    let record = first.first().and_then(|b| b.records().next()).transpose()?;
    if let Some(record) = record {
        println!(
            "offset 0: key={:?} value={} headers={:?}",
            String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()),
            record
                .headers
                .iter()
                .map(|h| (h.name.as_str(), String::from_utf8_lossy(&h.value)))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}
