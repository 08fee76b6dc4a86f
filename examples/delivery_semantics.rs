//! Delivery semantics around a crash: commit *after* processing gives at-least-once (a
//! crash before the commit repeats work), commit *before* processing gives at-most-once (a
//! crash after the commit loses work). The "crash" is a worker thread that panics; its
//! consumer leaves the group without committing anything more.
//!
//! Run with `cargo run --release --example delivery_semantics`. Exits non-zero if a check fails.

use std::sync::{Arc, Mutex};
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

fn member(broker: &Broker, group: &str) -> brooklet::Result<Consumer> {
    let config = ConsumerConfig::group(group)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .max_poll_records(5);
    let mut c = broker.consumer(config)?;
    c.subscribe(&["emails"])?;
    Ok(c)
}

fn poll5(c: &mut Consumer) -> brooklet::Result<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < 5 && Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(100))?.iter().map(|r| r.offset()));
    }
    Ok(out)
}

/// One worker that handles five emails and crashes; then a replacement that handles the
/// next five. Returns (what the first sent, what the second sent).
fn run(broker: &Broker, group: &'static str, commit_first: bool) -> Res<(Vec<u64>, Vec<u64>)> {
    let b = broker.clone();
    // What the worker really sent before it crashed (shared: its thread dies).
    let outbox = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::clone(&outbox);
    let crashed = std::thread::spawn(move || {
        let Ok(mut c) = member(&b, group) else {
            return;
        };
        let batch = poll5(&mut c).unwrap_or_default();
        if commit_first {
            let _ = c.commit();
            panic!("crash after committing, before sending");
        }
        if let Ok(mut sent) = sent.lock() {
            sent.extend(&batch); // the emails went out...
        }
        if batch.len() == 5 {
            panic!("crash after sending, before committing");
        }
    });
    let _ = crashed.join(); // a panic: the crash, on purpose
    let first = outbox.lock().map(|sent| sent.clone()).unwrap_or_default();
    let mut replacement = member(broker, group)?;
    let second = poll5(&mut replacement)?;
    replacement.commit()?;
    Ok((first, second))
}

fn main() -> Res {
    std::panic::set_hook(Box::new(|_| {})); // the crashes are on purpose
    let broker = Broker::temporary()?;
    broker.create_topic("emails", TopicConfig::with_partitions(1))?;
    let producer = broker.producer(ProducerConfig::default());
    for i in 0..10 {
        producer.send(ProducerRecord::new("emails").value(format!("email-{i}")))?;
    }

    let (sent, resent) = run(&broker, "at-least-once", false)?;
    println!("at-least-once (process, then commit): crashed worker sent {sent:?}, replacement sent {resent:?}");
    println!(
        "  -> emails {:?} went out twice; none was lost",
        sent.iter().filter(|o| resent.contains(o)).collect::<Vec<_>>()
    );
    ensure(resent == [0, 1, 2, 3, 4], "at-least-once repeats the uncommitted work")?;

    let (sent, next) = run(&broker, "at-most-once", true)?;
    println!("at-most-once (commit, then process): crashed worker sent {sent:?}, replacement sent {next:?}");
    println!("  -> emails 0..5 were never sent; none went out twice");
    ensure(
        sent.is_empty() && next == [5, 6, 7, 8, 9],
        "at-most-once loses the committed-but-unprocessed work",
    )?;
    Ok(())
}
