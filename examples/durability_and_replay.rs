//! Durability and replay: records written while no consumer runs are all there later; a
//! consumer restarted after a commit reads only the new records; `seek` replays from the
//! beginning. The "restart" reopens the broker from disk.
//!
//! Run with `cargo run --release --example durability_and_replay`. Exits non-zero if a check fails.

use std::time::{Duration, Instant};

use brooklet::{
    Broker, Consumer, ConsumerConfig, Durability, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig,
    TopicPartition,
};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn ensure(ok: bool, what: &str) -> Res {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn read(consumer: &mut Consumer, want: usize) -> Res<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut offsets = Vec::new();
    while offsets.len() < want && Instant::now() < deadline {
        offsets.extend(consumer.poll(Duration::from_millis(100))?.iter().map(|r| r.offset()));
    }
    Ok(offsets)
}

fn main() -> Res {
    let dir = tempfile::tempdir()?;
    let tp = TopicPartition::new("payments", 0);
    let config = ConsumerConfig::group("ledger")
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false);
    {
        let broker = Broker::open(dir.path())?;
        broker.create_topic("payments", TopicConfig::with_partitions(1))?;
        let producer = broker.producer(ProducerConfig::default().durability(Durability::Synced));
        for i in 0..5 {
            producer.send(ProducerRecord::new("payments").value(format!("payment-{i}")))?;
        }
        println!("wrote 5 payments (Synced: on disk before send returned) with no consumer running");
    }
    {
        let broker = Broker::open(dir.path())?;
        let mut ledger = broker.consumer(config.clone())?;
        ledger.subscribe(&["payments"])?;
        let got = read(&mut ledger, 5)?;
        println!("a consumer started later reads them all: offsets {got:?}");
        ensure(got == [0, 1, 2, 3, 4], "records outlive the producer")?;
        ledger.commit()?;
        println!(
            "committed: the group's next offset is {:?}",
            ledger.committed(&tp)?.map(|o| o.offset)
        );
        broker
            .producer(ProducerConfig::default())
            .send(ProducerRecord::new("payments").value("payment-5"))?;
    }
    let broker = Broker::open(dir.path())?;
    let mut ledger = broker.consumer(config)?;
    ledger.subscribe(&["payments"])?;
    let new = read(&mut ledger, 1)?;
    println!("after a restart the group reads only what is new: offsets {new:?}");
    ensure(new == [5], "resume after the commit")?;
    ledger.seek_to_beginning(std::slice::from_ref(&tp))?;
    let replay = read(&mut ledger, 6)?;
    println!("seek_to_beginning replays everything: offsets {replay:?}");
    ensure(replay == [0, 1, 2, 3, 4, 5], "replay from the start")?;
    ledger.seek(&tp, 3)?;
    let tail = read(&mut ledger, 3)?;
    println!("seek(3) replays from offset 3: {tail:?}");
    ensure(tail == [3, 4, 5], "seek to an offset")?;
    Ok(())
}
