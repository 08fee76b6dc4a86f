//! Writes the seed corpora (`corpus/<target>/seed-*`) from a real broker and partition logs
//! in a temporary directory: each seed is a file brooklet wrote, in its target's input
//! format. Run from `fuzz/`: `cargo run --example seeds` (the corpus is committed; rerun it
//! after a format change).

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brooklet::fuzzing::{decode_batch, encode_offset_key};
use brooklet::{
    AppendOptions, Broker, Compression, ConsumerConfig, Durability, LogConfig, OffsetAndMetadata, PartitionLog, Record,
    TimestampType, TopicConfig, TopicPartition,
};

type Res<T = ()> = Result<T, Box<dyn Error>>;

fn main() -> Res {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let tmp = tempfile::tempdir()?;
    batches(tmp.path(), &out.join("batch_decode"))?;
    index(tmp.path(), &out.join("index_load"))?;
    broker(tmp.path(), &out)?;
    Ok(())
}

fn write(dir: &Path, name: &str, mode: u8, parts: &[&[u8]]) -> Res {
    fs::create_dir_all(dir)?;
    let mut bytes = vec![mode];
    for p in parts {
        bytes.extend_from_slice(p);
    }
    let path = dir.join(format!("seed-{name}"));
    println!("{} ({} bytes)", path.display(), bytes.len());
    fs::write(path, bytes)?;
    Ok(())
}

fn sample_records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let r = Record::new()
                .key(format!("user-{i}"))
                .header("source", "api")
                .timestamp(1_700_000_000_000 + i as i64 * 7);
            // A tombstone among the records.
            if i == 1 {
                r
            } else {
                r.value(format!(r#"{{"amount": {i}.5, "currency": "EUR"}}"#))
            }
        })
        .collect()
}

/// One stored batch per codec, and one LogAppendTime batch.
fn batches(tmp: &Path, out: &Path) -> Res {
    let log = PartitionLog::open(tmp.join("batches"), LogConfig::default())?;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let options = AppendOptions {
            durability: Durability::Written,
            compression: codec,
        };
        log.append_with(&sample_records(3), options)?;
    }
    for (i, batch) in log.read(0, 1 << 20)?.iter().enumerate() {
        let name = format!("{:?}", batch.compression().ok_or("no codec")?).to_lowercase();
        write(out, &format!("{i}-{name}"), 0, &[batch.as_bytes()])?;
    }
    // A batch whose first timestamp (bytes 23..31) is negative, as an append now refuses to
    // write: mode 1, so the target writes its CRC.
    let mut negative = log.read(0, 1 << 20)?[0].as_bytes().to_vec();
    negative[23..31].copy_from_slice(&(-1000i64).to_le_bytes());
    write(out, "negative-timestamp", 1, &[&negative])?;
    let log = PartitionLog::open(
        tmp.join("append-time"),
        LogConfig::default().timestamp_type(TimestampType::LogAppendTime),
    )?;
    log.append(&sample_records(2), Durability::Written)?;
    write(out, "log-append-time", 0, &[log.read(0, 1 << 20)?[0].as_bytes()])?;
    Ok(())
}

/// The index files of a closed segment with an entry every ~100 bytes.
fn index(tmp: &Path, out: &Path) -> Res {
    let dir = tmp.join("index");
    let log = PartitionLog::open(&dir, LogConfig::default().index_interval_bytes(100))?;
    for i in 0..12 {
        let records: Vec<Record> = sample_records(2)
            .into_iter()
            .map(|r| r.timestamp(1_700_000_000_000 + i * 1000))
            .collect();
        log.append(&records, Durability::Written)?;
    }
    log.close()?;
    let name = format!("{:020}", 0);
    let log_len = fs::metadata(dir.join(format!("{name}.log")))?.len();
    let offsets = fs::read(dir.join(format!("{name}.index")))?;
    let times = fs::read(dir.join(format!("{name}.timeindex")))?;
    let split = u16::try_from(offsets.len())?.to_le_bytes();
    let len = log_len.to_le_bytes();
    write(out, "files", 0, &[&len, &split, &offsets, &times])?;
    // The same entries without their headers (32 bytes), for the target to frame.
    let split = u16::try_from(offsets.len() - 32)?.to_le_bytes();
    write(out, "entries", 1, &[&len, &split, &offsets[32..], &times[32..]])?;
    // Empty indexes (a segment too small for an entry).
    let (empty_offsets, empty_times) = brooklet::fuzzing::frame_index(&[], &[], 0, 0);
    let split = u16::try_from(empty_offsets.len())?.to_le_bytes();
    write(
        out,
        "empty",
        0,
        &[&0u64.to_le_bytes(), &split, &empty_offsets, &empty_times],
    )?;
    Ok(())
}

/// A broker with three topics, commits enough for an offsets snapshot, then a
/// multi-partition commit and a deleted topic's tombstones in the offsets log.
fn broker(tmp: &Path, out: &Path) -> Res {
    let dir = tmp.join("broker");
    {
        let broker = Broker::builder().offsets_compact_bytes(64 << 10).open(&dir)?;
        broker.create_topic("orders", TopicConfig::with_partitions(3))?;
        broker.create_topic(
            "events.v2_eu-west",
            TopicConfig::with_partitions(2)
                .segment_bytes(1 << 20)
                .segment_ms(Some(Duration::from_secs(3600)))
                .retention_bytes(Some(64 << 20))
                .retention_ms(Some(Duration::from_secs(86_400)))
                .max_message_bytes(64 << 10)
                .timestamp_type(TimestampType::LogAppendTime),
        )?;
        broker.create_topic("old", TopicConfig::with_partitions(1))?;
        let mut consumer = broker.consumer(ConsumerConfig::group("analytics"))?;
        let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("orders", p)).collect();
        let mut all = tps.clone();
        all.push(TopicPartition::new("old", 0));
        consumer.assign(&all)?;
        let snapshot = dir.join("offsets").join("snapshot");
        let mut i = 0u64;
        while !snapshot.exists() {
            let tp = &tps[(i % 3) as usize];
            let om = OffsetAndMetadata::new(i).metadata(if i.is_multiple_of(2) { "batch-7" } else { "" });
            consumer.commit_offsets(&BTreeMap::from([(tp.clone(), om)]))?;
            i += 1;
            if i > 100_000 {
                return Err("no offsets snapshot after 100,000 commits".into());
            }
        }
        let multi: BTreeMap<TopicPartition, OffsetAndMetadata> = all
            .iter()
            .map(|tp| (tp.clone(), OffsetAndMetadata::new(i + 10).metadata("end")))
            .collect();
        consumer.commit_offsets(&multi)?;
        drop(consumer);
        broker.delete_topic("old")?;
    }
    let topics = fs::read(dir.join("meta").join("topics"))?;
    write(&out.join("topic_metadata"), "file", 0, &[&topics])?;
    write(&out.join("topic_metadata"), "payload", 1, &[&topics[16..]])?;

    let offsets = out.join("offset_table");
    let snapshot = fs::read(dir.join("offsets").join("snapshot"))?;
    write(&offsets, "snapshot-file", 2, &[&snapshot])?;
    write(&offsets, "snapshot-payload", 3, &[&snapshot[16..]])?;
    // The offsets log's last batches: the tombstones, and the multi-partition commit.
    let log = PartitionLog::open_read_only(dir.join("offsets").join("log"), LogConfig::default())?;
    let batches = log.read(log.log_start_offset(), 1 << 20)?;
    let [.., commit, tombstones] = batches.as_slice() else {
        return Err("expected at least two offsets batches".into());
    };
    write(&offsets, "log-commit", 4, &[commit.as_bytes()])?;
    write(&offsets, "log-tombstones", 4, &[tombstones.as_bytes()])?;
    let record = decode_batch(commit.as_bytes(), 1 << 20, true)
        .map_err(|e| format!("{e:?}"))?
        .records()
        .next()
        .ok_or("empty batch")??;
    write(&offsets, "key", 0, &[record.key.as_deref().ok_or("no key")?])?;
    write(&offsets, "value", 1, &[record.value.as_deref().ok_or("no value")?])?;
    let long = encode_offset_key(&"g".repeat(300), &TopicPartition::new("t".repeat(249), u32::MAX))?;
    write(&offsets, "key-long", 0, &[&long])?;
    Ok(())
}
