//! Fan-out: two consumer groups each receive every event, independently, at their own pace;
//! each keeps its own committed offsets.
//!
//! Run with `cargo run --release --example fan_out`. Exits non-zero if a check fails.

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

fn drain(consumer: &mut Consumer, want: usize) -> Res<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        for r in &consumer.poll(Duration::from_millis(100))? {
            out.push(String::from_utf8_lossy(r.value().unwrap_or_default()).into_owned());
        }
    }
    consumer.commit()?;
    Ok(out)
}

fn main() -> Res {
    let broker = Broker::temporary()?;
    broker.create_topic("signups", TopicConfig::with_partitions(2))?;
    let producer = broker.producer(ProducerConfig::default());
    for name in ["ana", "ben", "cleo", "dev", "eli", "fay"] {
        producer.send(ProducerRecord::new("signups").key(name).value(format!("signup:{name}")))?;
    }
    let config = |g: &str| {
        ConsumerConfig::group(g)
            .auto_offset_reset(OffsetReset::Earliest)
            .enable_auto_commit(false)
    };
    let mut email = broker.consumer(config("welcome-email"))?;
    let mut stats = broker.consumer(config("signup-stats"))?;
    email.subscribe(&["signups"])?;
    stats.subscribe(&["signups"])?;

    let sent = drain(&mut email, 6)?;
    println!("welcome-email group: {} events -> {sent:?}", sent.len());
    let counted = drain(&mut stats, 6)?;
    println!("signup-stats group:  {} events -> {counted:?}", counted.len());
    ensure(sent.len() == 6 && counted.len() == 6, "each group sees all 6 events")?;

    producer.send(ProducerRecord::new("signups").key("gus").value("signup:gus"))?;
    let more = drain(&mut email, 1)?;
    println!("one more signup: welcome-email reads {more:?}; signup-stats has not polled yet:");
    for g in ["welcome-email", "signup-stats"] {
        println!("  {g:<14} lag {}", broker.describe_group(g)?.total_lag());
    }
    ensure(
        broker.describe_group("signup-stats")?.total_lag() == 1,
        "groups advance independently",
    )?;
    Ok(())
}
