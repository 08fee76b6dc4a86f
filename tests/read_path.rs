//! The standalone consumer's read path: positions, resets, seeks into batches, reads across
//! segments and timestamp lookups, with real files and exact offsets.

use std::time::Duration;

use brooklet::{
    Broker, ConsumerConfig, Durability, OffsetReset, ProducerConfig, ProducerRecord, Record, TopicConfig,
    TopicPartition,
};

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

/// `OffsetReset::Latest` means the visible end (Kafka's high watermark), whether the
/// consumer had no position or an out-of-range one: records appended `Buffered` and not yet
/// readable are past the visible end and are read once they are written, in both cases.
#[test]
fn a_latest_reset_of_an_out_of_range_position_does_not_skip_buffered_records() {
    let broker = Broker::temporary().unwrap();
    broker.create_topic("t", TopicConfig::with_partitions(1)).unwrap();
    send_values(&broker, "t", 0..10);
    let log = broker.partition_log(&tp("t", 0)).unwrap();
    let buffered: Vec<Record> = (10..15).map(|i| Record::new().value(format!("v{i}"))).collect();
    log.append(&buffered, Durability::Buffered).unwrap();
    assert_eq!((log.visible_end_offset(), log.log_end_offset()), (10, 15));

    let mut fresh = broker.consumer(ConsumerConfig::default()).unwrap();
    fresh.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(fresh.position(&tp("t", 0)).unwrap(), 10);

    let mut reset = broker.consumer(ConsumerConfig::default()).unwrap();
    reset.assign(&[tp("t", 0)]).unwrap();
    reset.seek(&tp("t", 0), 100).unwrap();
    assert!(reset.poll(Duration::ZERO).unwrap().is_empty());
    assert_eq!(reset.position(&tp("t", 0)).unwrap(), 10);

    log.flush().unwrap();
    for consumer in [&mut fresh, &mut reset] {
        let offsets: Vec<u64> = consumer
            .poll(Duration::from_secs(30))
            .unwrap()
            .iter()
            .map(|r| r.offset())
            .collect();
        assert_eq!(offsets, (10..15).collect::<Vec<_>>());
    }
}
