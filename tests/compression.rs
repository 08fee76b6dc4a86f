//! Compressed batches and `LogAppendTime` through a real `PartitionLog`: every codec in one
//! partition, reads after reopen and after a recovery scan, on-disk savings, decompression
//! bombs (with the largest allocation measured), and append-time stamping.

mod common;
#[path = "common/largest_alloc.rs"]
mod largest_alloc;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brooklet::{
    AppendOptions, Compression, Durability, LogConfig, LogRecord, PartitionLog, Record, RecordBatch, TimestampType,
};
use common::{read_all, synced_through, temp_dir};
use largest_alloc::largest_allocation;

// ---- helpers ----

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const MARKER: &str = "clean-shutdown";
const RECOVERY_POINT: &str = "recovery-point";
const HEADER_LEN: usize = 57;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn seg_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

fn opts(compression: Compression) -> AppendOptions {
    AppendOptions {
        durability: Durability::Written,
        compression,
    }
}

/// A batch of `n` varied records: keys and no keys, tombstones, repeated headers, empty
/// payloads, explicit timestamps.
fn varied_records(batch: usize, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut r = Record::new().timestamp(1_600_000_000_000 + (batch * 100 + i) as i64);
            if i % 3 != 0 {
                r = r.key(format!("user-{}", (batch + i) % 5));
            }
            match i % 4 {
                0 => {} // tombstone
                1 => r = r.value(Vec::<u8>::new()),
                _ => r = r.value(format!(r#"{{"batch":{batch},"i":{i},"pad":"{}"}}"#, "x".repeat(i * 7))),
            }
            for h in 0..i % 3 {
                r = r.header(format!("h{h}"), format!("v{batch}-{i}"));
            }
            r
        })
        .collect()
}

fn expected(records: &[Record], base: u64) -> Vec<LogRecord> {
    records
        .iter()
        .zip(base..)
        .map(|(r, offset)| LogRecord {
            offset,
            timestamp: r.timestamp_ms().unwrap(),
            key: r.key_bytes().cloned(),
            value: r.value_bytes().cloned(),
            headers: r.headers().to_vec(),
        })
        .collect()
}

/// Every batch of the log, in order.
fn all_batches(log: &PartitionLog) -> Vec<RecordBatch> {
    let mut out: Vec<RecordBatch> = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.visible_end_offset() {
        let batches = log.read(next, 1 << 20).unwrap();
        let last = batches.last().unwrap().last_offset();
        out.extend(batches.into_iter().filter(|b| b.base_offset() >= next));
        next = last + 1;
    }
    out
}

/// Checks every record and every batch's codec against what was appended.
fn check_log(log: &PartitionLog, want: &[LogRecord], codecs: &BTreeMap<u64, Compression>) {
    assert_eq!(read_all(log), want);
    let batches = all_batches(log);
    assert_eq!(batches.len(), codecs.len());
    for batch in &batches {
        assert_eq!(
            batch.compression(),
            Some(codecs[&batch.base_offset()]),
            "batch {}",
            batch.base_offset()
        );
        let borrowed: Vec<LogRecord> = batch.iter().map(|r| r.unwrap().to_log_record()).collect();
        let first = (batch.base_offset() - log.log_start_offset()) as usize;
        assert_eq!(borrowed, want[first..first + batch.record_count() as usize]);
    }
}

// ---- tests ----

#[test]
fn every_codec_coexists_in_one_partition_across_reopen_and_recovery() {
    let dir = temp_dir();
    // Small segments, so batches of every codec straddle rolls and several segments exist.
    let config = LogConfig::default().segment_bytes(4096).max_batch_bytes(4096);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut want = Vec::new();
    let mut codecs = BTreeMap::new();
    for batch in 0..60 {
        let codec = CODECS[batch % CODECS.len()];
        let records = varied_records(batch, 1 + batch % 17);
        let durability = [Durability::Buffered, Durability::Written, Durability::Synced][batch % 3];
        let info = log
            .append_with(
                &records,
                AppendOptions {
                    durability,
                    compression: codec,
                },
            )
            .unwrap();
        assert_eq!(info.base_offset, want.len() as u64);
        assert_eq!(info.last_offset, info.base_offset + records.len() as u64 - 1);
        codecs.insert(info.base_offset, codec);
        want.extend(expected(&records, info.base_offset));
    }
    log.flush().unwrap();
    let segments = log.segment_count();
    assert!(segments >= 3, "{segments} segments");
    check_log(&log, &want, &codecs);
    // AppendInfo's size is the stored size.
    let info = log
        .append_with(&varied_records(99, 9), opts(Compression::Zstd))
        .unwrap();
    let last = log.read(info.base_offset, 1 << 20).unwrap().pop().unwrap();
    assert_eq!(
        (last.base_offset(), last.size_bytes()),
        (info.base_offset, info.size_bytes)
    );
    codecs.insert(info.base_offset, Compression::Zstd);
    want.extend(expected(&varied_records(99, 9), info.base_offset));
    let end = log.log_end_offset();
    log.close().unwrap();

    // Clean reopen: nothing scanned.
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert!(log.recovery_report().clean_shutdown);
    check_log(&log, &want, &codecs);
    let segments = log.segment_count();
    log.close().unwrap();

    // Unclean reopen: recovery decompresses and validates every batch of every segment.
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let report = log.recovery_report().clone();
    assert!(!report.clean_shutdown);
    assert_eq!(report.truncation, None, "{report:?}");
    assert_eq!(report.segments_scanned, segments);
    assert_eq!(report.batches_scanned, codecs.len() as u64);
    assert_eq!(report.log_end_offset, end);
    check_log(&log, &want, &codecs);

    // And the log keeps taking every codec after recovery.
    for codec in CODECS {
        let records = varied_records(7, 5);
        let info = log.append_with(&records, opts(codec)).unwrap();
        codecs.insert(info.base_offset, codec);
        want.extend(expected(&records, info.base_offset));
    }
    check_log(&log, &want, &codecs);
}

/// Overwrites the records section of the batch at `position` in `path` with `section`
/// (same length), keeping the header and fixing the CRC, as a faulty writer would.
fn rewrite_section(path: &Path, position: usize, fill: impl Fn(&mut [u8])) {
    let mut bytes = fs::read(path).unwrap();
    let length = u32::from_le_bytes(bytes[position + 8..position + 12].try_into().unwrap()) as usize;
    let end = position + 12 + length;
    fill(&mut bytes[position + HEADER_LEN..end]);
    let crc = crc32fast::hash(&bytes[position + 17..end]);
    bytes[position + 13..position + 17].copy_from_slice(&crc.to_le_bytes());
    fs::write(path, bytes).unwrap();
}

/// A compressed batch with a valid CRC over bytes its codec rejects (a faulty writer) is not
/// served; after a crash, recovery cuts at it if it was not synced, and refuses to if it was.
#[test]
fn recovery_cuts_at_a_compressed_batch_that_does_not_decompress() {
    for codec in &CODECS[1..] {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let mut want = Vec::new();
        for batch in 0..3 {
            let records = varied_records(batch, 10);
            let info = log.append_with(&records, opts(*codec)).unwrap();
            want.extend(expected(&records, info.base_offset));
        }
        let position = log.size_bytes() as usize;
        log.append_with(&varied_records(3, 10), opts(*codec)).unwrap();
        let size = log.size_bytes();
        log.close().unwrap();

        // A valid CRC over a payload the codec rejects.
        let path = seg_path(dir.path(), 0, "log");
        rewrite_section(&path, position, |section| {
            section.fill(0xFF);
            if *codec == Compression::Lz4 {
                // A believable length prefix, so the block itself is what fails.
                section[..4].copy_from_slice(&10u32.to_le_bytes());
            }
        });
        // Read with the clean marker in place: the batch is reported corrupt, not served.
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert!(log.recovery_report().clean_shutdown);
        match log.read(30, 1 << 20) {
            Err(brooklet::Error::Corrupt {
                position: p, reason, ..
            }) => {
                assert_eq!(p, position as u64);
                assert!(reason.contains("do not decompress"), "{codec:?}: {reason}");
            }
            other => panic!("{codec:?}: {other:?}"),
        }
        log.close().unwrap();

        // After a crash with the batch synced (the recovery point, 40, vouches for it),
        // recovery does not cut it: the open fails at it.
        fs::remove_file(dir.path().join(MARKER)).unwrap();
        match PartitionLog::open(dir.path(), LogConfig::default()) {
            Err(brooklet::Error::Corrupt {
                position: p, reason, ..
            }) => {
                assert_eq!(p, position as u64);
                assert!(reason.contains("do not decompress"), "{codec:?}: {reason}");
                assert!(
                    reason.contains("records below offset 40 were synced"),
                    "{codec:?}: {reason}"
                );
            }
            other => panic!("{codec:?}: {other:?}"),
        }
        // After a crash before it was synced, recovery cuts at it.
        synced_through(dir.path(), 30);
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let cut = log.recovery_report().truncation.clone().unwrap();
        assert_eq!(cut.path, path);
        assert_eq!(cut.position, position as u64);
        assert_eq!(cut.bytes_removed, size - position as u64);
        assert!(cut.reason.contains("do not decompress"), "{codec:?}: {}", cut.reason);
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(read_all(&log), want);
    }
}

/// zstd of `len` zero bytes, with the content size in the frame header or not.
fn zstd_zeros(len: usize, content_size: bool) -> Vec<u8> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
    encoder.include_contentsize(content_size).unwrap();
    if content_size {
        encoder.set_pledged_src_size(Some(len as u64)).unwrap();
    }
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..len / chunk.len() {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

/// gzip of `len` zero bytes.
fn gzip_zeros(len: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..len / chunk.len() {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

/// Stored batches decompress up to the format's limit (the configured `max_batch_bytes`
/// governs writes only, so that a lowered limit never cuts stored data): a bomb behind a
/// valid CRC costs a reader or recovery at most what its framing declares or its records
/// really decompress to — never the format's 4 GiB up front — and is still refused.
#[test]
fn decompression_bombs_cost_at_most_what_they_declare_or_decompress_to() {
    const LIMIT: usize = 1 << 20;
    const BOMB: usize = 64 << 20;
    let payloads = [
        ("zstd, content size declared", Compression::Zstd, zstd_zeros(BOMB, true)),
        ("zstd, no content size", Compression::Zstd, zstd_zeros(BOMB, false)),
        // deflate tops out near 1000:1, so 64 MiB would not fit one stored batch.
        ("gzip", Compression::Gzip, gzip_zeros(BOMB / 8)),
        ("gzip, size lies", Compression::Gzip, {
            // The trailer's ISIZE claims ~4 GiB for an empty stream.
            let mut gz = gzip_zeros(0);
            let n = gz.len();
            gz[n - 4..].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            gz
        }),
        ("snappy, length lies", Compression::Snappy, {
            let mut s = vec![0x80, 0x80, 0x80, 0x20]; // uvarint 64 MiB
            s.extend_from_slice(&[0; 32]);
            s
        }),
        ("lz4, length lies", Compression::Lz4, {
            let mut s = (BOMB as u32).to_le_bytes().to_vec();
            s.extend_from_slice(&[0; 32]);
            s
        }),
    ];
    for (what, codec, payload) in payloads {
        assert!(payload.len() + HEADER_LEN < LIMIT, "{what}: {} bytes", payload.len());
        let dir = temp_dir();
        // Segment 0 holds one small batch, then a batch just under the limit rolls the log
        // to segment 1. The clean marker checks only the active segment's size, so it stays
        // valid when segment 0's batch is replaced by the bomb.
        let config = LogConfig::default()
            .segment_bytes(LIMIT as u64)
            .max_batch_bytes(LIMIT as u32);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        log.append_with(&[Record::new().value("small").timestamp(5)], opts(codec))
            .unwrap();
        log.append(
            &[Record::new().value(vec![0u8; LIMIT - 100]).timestamp(5)],
            Durability::Written,
        )
        .unwrap();
        assert_eq!(log.segment_count(), 2, "{what}");
        log.close().unwrap();

        let path = seg_path(dir.path(), 0, "log");
        let original = fs::read(&path).unwrap();
        let mut bomb = original[..HEADER_LEN].to_vec();
        bomb.extend_from_slice(&payload);
        let length = (bomb.len() - 12) as u32;
        bomb[8..12].copy_from_slice(&length.to_le_bytes());
        let crc = crc32fast::hash(&bomb[17..]);
        bomb[13..17].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &bomb).unwrap();

        // The read path: the batch is refused as corrupt, by its decompression (a lying
        // length) or by its records (64 MiB of zeros are no records).
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert!(log.recovery_report().clean_shutdown, "{what}");
        let (read, largest) = largest_allocation(|| {
            log.read(0, 64 * 1024).and_then(|batches| {
                let batch = batches.first().expect("a batch at offset 0");
                batch.records().map(|r| r.map(|_| ())).collect::<Result<Vec<()>, _>>()
            })
        });
        match read {
            Err(
                brooklet::Error::Corrupt { position: 0, .. } | brooklet::Error::InvalidBatch { base_offset: 0, .. },
            ) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert!(largest <= 2 * BOMB, "{what}: read allocated {largest} bytes at once");
        if what.contains("lies") {
            // 64 MiB cannot come out of 36 bytes of snappy or lz4, nor 4 GiB out of 20 bytes
            // of gzip: no buffer is sized from such a claim.
            assert!(largest < LIMIT, "{what}: read allocated {largest} bytes at once");
        }
        eprintln!("{what}: read refused the bomb, largest allocation {largest} bytes");
        log.close().unwrap();

        // Recovery: the scan refuses it too and cuts the log there.
        fs::remove_file(dir.path().join(MARKER)).unwrap();
        fs::remove_file(dir.path().join(RECOVERY_POINT)).unwrap();
        let (log, largest) = largest_allocation(|| PartitionLog::open(dir.path(), config.clone()).unwrap());
        let cut = log.recovery_report().truncation.clone().unwrap();
        assert_eq!((cut.path, cut.position), (path, 0), "{what}");
        assert_eq!(log.log_end_offset(), 0);
        eprintln!("{what}: recovery cut the bomb, largest allocation {largest} bytes");
        assert!(largest <= 2 * BOMB, "{what}: open allocated {largest} bytes at once");
        if what.contains("lies") {
            assert!(largest < LIMIT, "{what}: open allocated {largest} bytes at once");
        }
    }
}

/// JSON events of the kind applications log: repetitive keys and structure.
fn json_events(batch: usize) -> Vec<Record> {
    (0..100)
        .map(|i| {
            let n = batch * 100 + i;
            Record::new().key(format!("user-{}", n % 50)).value(format!(
                r#"{{"event_id":{n},"type":"page_view","user":{{"id":"user-{}","plan":"free","country":"DE"}},"page":"/products/{}","referrer":"https://example.com/search?q=shoes","ts":"2026-11-24T18:{:02}:{:02}Z","duration_ms":{}}}"#,
                n % 50,
                n % 37,
                (n / 60) % 60,
                n % 60,
                (n * 7919) % 5000
            ))
        })
        .collect()
}

#[test]
fn compressible_json_takes_fewer_bytes_with_every_codec() {
    let mut sizes = Vec::new();
    for codec in CODECS {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let mut stored = 0;
        let mut want = Vec::new();
        for batch in 0..20 {
            let records = json_events(batch);
            let info = log.append_with(&records, opts(codec)).unwrap();
            stored += info.size_bytes;
            want.extend(
                records
                    .iter()
                    .zip(info.base_offset..)
                    .map(|(r, o)| (o, r.value_bytes().cloned())),
            );
        }
        let batches = all_batches(&log);
        assert_eq!(batches.iter().map(RecordBatch::size_bytes).sum::<usize>(), stored);
        assert_eq!(log.size_bytes(), stored as u64);
        let got: Vec<_> = read_all(&log).into_iter().map(|r| (r.offset, r.value)).collect();
        assert_eq!(got, want);
        sizes.push((codec, stored));
    }
    let none = sizes[0].1;
    for &(codec, size) in &sizes[1..] {
        eprintln!(
            "{codec:?}: {size} bytes on disk, {:.1}% of uncompressed ({none})",
            100.0 * size as f64 / none as f64
        );
        assert!(size < none / 2, "{codec:?}: {size} bytes, uncompressed {none}");
    }
}

#[test]
fn log_append_time_replaces_producer_timestamps() {
    let dir = temp_dir();
    let config = LogConfig::default().timestamp_type(TimestampType::LogAppendTime);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut windows = Vec::new(); // (base offset, before, after, append time)
    for (i, codec) in CODECS.into_iter().enumerate() {
        // Each batch gets a strictly later append time than the previous one.
        if let Some(&(_, _, _, previous)) = windows.last() {
            while now_ms() <= previous {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let records = [
            Record::new().value("old").timestamp(1_000),
            Record::new().key("k").value("older").timestamp(5),
            Record::new().value("unset"),
            Record::new().value("future").timestamp(i64::MAX),
        ];
        let before = now_ms();
        let info = log.append_with(&records, opts(codec)).unwrap();
        let after = now_ms();
        assert!(
            (before..=after).contains(&info.max_timestamp),
            "{before} {} {after}",
            info.max_timestamp
        );
        assert_eq!(info.base_offset, 4 * i as u64);
        windows.push((info.base_offset, before, after, info.max_timestamp));
    }

    let check = |log: &PartitionLog| {
        let records = read_all(log);
        assert_eq!(records.len(), 4 * CODECS.len());
        for (r, (base, _, _, appended)) in records.iter().zip(windows.iter().flat_map(|w| [*w; 4])) {
            assert!(r.offset >= base && r.offset < base + 4);
            assert_eq!(r.timestamp, appended, "offset {}", r.offset);
        }
        for batch in all_batches(log) {
            assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
            assert_eq!(batch.first_timestamp(), batch.max_timestamp());
            for r in batch.iter() {
                assert_eq!(r.unwrap().timestamp(), batch.max_timestamp());
            }
        }
        // The producer's timestamps are gone from the index too.
        assert_eq!(log.offset_for_timestamp(i64::MIN).unwrap(), Some(0));
        assert_eq!(log.offset_for_timestamp(1_000).unwrap(), Some(0));
        for &(base, _, _, appended) in &windows {
            assert_eq!(log.offset_for_timestamp(appended).unwrap(), Some(base));
        }
        let last = windows.last().unwrap().3;
        assert_eq!(log.offset_for_timestamp(last + 1).unwrap(), None);
        assert_eq!(log.offset_for_timestamp(i64::MAX).unwrap(), None);
    };
    check(&log);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    check(&log);
    log.close().unwrap();
    fs::remove_file(dir.path().join(MARKER)).unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.recovery_report().truncation, None);
    check(&log);
    drop(log);

    // A CreateTime log keeps the producer's timestamps.
    let dir = temp_dir();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append_with(&[Record::new().value("old").timestamp(1_000)], opts(Compression::Lz4))
        .unwrap();
    assert_eq!(read_all(&log)[0].timestamp, 1_000);
    assert_eq!(all_batches(&log)[0].timestamp_type(), TimestampType::CreateTime);
}
