//! The standalone consumer's read path: positions, resets, seeks into batches, reads across
//! segments and timestamp lookups, with real files and exact offsets.

use std::time::Duration;

use brooklet::{Broker, ConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition};

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn send_values(broker: &Broker, topic: &str, values: std::ops::Range<u64>) {
    let producer = broker.producer(ProducerConfig::default());
    let records: Vec<ProducerRecord> = values
        .map(|i| ProducerRecord::new(topic).partition(0).value(format!("v{i}")))
        .collect();
    producer.send_batch(&records).unwrap();
}

/// A position that fell below the log start is reset by `auto_offset_reset` inside the
/// poll, and that same poll reads from the reset position: the records are there, so a
/// poll must not come back empty (nor wait out its timeout for an append that may never
/// come) because its first read hit the reset.
#[test]
fn a_poll_that_resets_an_out_of_range_position_returns_the_records_at_the_new_one() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_values(&broker, "t", 0..10);
    let mut consumer = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    consumer.seek(&tp("t", 0), 2).unwrap();
    broker
        .partition_log(&tp("t", 0))
        .unwrap()
        .delete_records_before(5)
        .unwrap();

    let records = consumer.poll(Duration::ZERO).unwrap().to_vec();
    let offsets: Vec<u64> = records.iter().map(|r| r.offset()).collect();
    assert_eq!(offsets, (5..10).collect::<Vec<_>>());
    assert_eq!(consumer.position(&tp("t", 0)).unwrap(), 10);
}
