//! Dead-letter queue: a poison message that fails to deserialize is sent to `orders.dlq`
//! with the error in a header, and the consumer moves on instead of getting stuck.
//!
//! Run with `cargo run --release --example dead_letter_queue`. Exits non-zero if a check fails.

use std::time::{Duration, Instant};

use brooklet::{
    Broker, ConsumerConfig, Json, OffsetReset, PoisonRecord, ProducerConfig, ProducerRecord, TopicConfig,
    TypedConsumer, Utf8,
};
use serde::{Deserialize, Serialize};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn ensure(ok: bool, what: &str) -> Res {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    amount: f64,
}

fn main() -> Res {
    let broker = Broker::temporary()?;
    broker.create_topic("orders", TopicConfig::with_partitions(1))?;
    broker.create_topic("orders.dlq", TopicConfig::with_partitions(1))?;
    let producer = broker.producer(ProducerConfig::default());
    for value in [
        r#"{"id":1,"amount":20.0}"#,
        r#"{"id":2,"amount":"lots"}"#,
        r#"{"id":3,"amount":5.5}"#,
        "}{",
    ] {
        producer.send(ProducerRecord::new("orders").key("shop-1").value(value))?;
    }
    let config = ConsumerConfig::group("billing")
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false);
    let mut billing: TypedConsumer<String, Order, Utf8, Json> =
        TypedConsumer::new(broker.consumer(config)?, Utf8, Json);
    billing.subscribe(&["orders"])?;
    let (mut billed, mut dead) = (0.0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while seen < 4 && Instant::now() < deadline {
        for item in billing.poll(Duration::from_millis(100))? {
            seen += 1;
            match item {
                Ok(r) => {
                    let order = r.value.ok_or("a tombstone")?;
                    println!(
                        "{}-{}@{}: billed order {} for {:.2}",
                        r.raw.topic(),
                        r.raw.partition(),
                        r.raw.offset(),
                        order.id,
                        order.amount
                    );
                    billed += order.amount;
                }
                Err(poison) => {
                    let PoisonRecord { raw, error } = *poison;
                    println!(
                        "{}-{}@{}: poison message, parked in orders.dlq ({error})",
                        raw.topic(),
                        raw.partition(),
                        raw.offset()
                    );
                    let mut dlq = ProducerRecord::new("orders.dlq")
                        .value(raw.value_bytes().cloned().unwrap_or_default())
                        .header("error", error.to_string())
                        .header(
                            "source",
                            format!("{}-{}@{}", raw.topic(), raw.partition(), raw.offset()),
                        );
                    if let Some(k) = raw.key_bytes() {
                        dlq = dlq.key(k.clone());
                    }
                    producer.send(dlq)?;
                    dead += 1;
                }
            }
        }
        billing.commit()?; // the poison messages are handled: move past them
    }
    println!("billed {billed:.2} in total; {dead} messages parked in orders.dlq; the consumer kept going");
    ensure(
        seen == 4 && dead == 2 && (billed - 25.5f64).abs() < 1e-9,
        "2 good, 2 poison",
    )?;
    let parked = broker.describe_topic("orders.dlq")?.partitions[0].log_end_offset;
    ensure(parked == 2, "both poison messages are in the DLQ")?;
    Ok(())
}
