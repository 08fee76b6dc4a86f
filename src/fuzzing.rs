//! Entry points for the cargo-fuzz targets in `fuzz/`, compiled only with the `fuzzing`
//! feature, which exists for `fuzz/` alone. **Not a public API**: hidden from the docs,
//! without any stability promise.
//!
//! Each function hands untrusted bytes to the decoder the crate itself uses on its files
//! (the same code, not a copy) and returns what it said; none panics itself, so a panic
//! in a fuzz run is the decoder's. The `frame_*` and [`seal_batch`] helpers put a valid
//! length and checksum around fuzzer-made bytes, so that the fuzzer also reaches what lies
//! behind the checksums.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use crate::broker::{self, StoredTopic};
use crate::error::Result;
use crate::offsets::{self, SnapshotEntry};
use crate::record::batch::{self, DecodeError, EncodeOptions, EncodeScratch};
use crate::storage::index::{Extent, SegmentIndex};
use crate::{Compression, OffsetAndMetadata, Record, RecordBatch, TimestampType, TopicConfig, TopicPartition};

/// The path the decoders name in their errors.
const INPUT: &str = "fuzz-input";

// ---- record batches -------------------------------------------------------------------

/// Why bytes did not decode as a batch (the crate's internal `DecodeError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The bytes end before the batch does; `needed` is its size where the header says it.
    Torn {
        /// The batch's full size, if its header was there.
        needed: Option<usize>,
    },
    /// The bytes are there but wrong.
    Corrupt(String),
}

impl From<DecodeError> for BatchError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Torn { needed } => BatchError::Torn { needed },
            DecodeError::Corrupt(reason) => BatchError::Corrupt(reason),
        }
    }
}

/// Decodes the batch at the front of `data` as reads and recovery do: framing, the CRC
/// when `verify_crc`, and decompression into at most `decompress_limit` bytes.
pub fn decode_batch(data: &[u8], decompress_limit: usize, verify_crc: bool) -> Result<RecordBatch, BatchError> {
    Ok(RecordBatch::decode(
        &Bytes::copy_from_slice(data),
        decompress_limit,
        verify_crc,
    )?)
}

/// Walks every record of `batch` as recovery does, checking that the records section
/// parses exactly.
pub fn validate_batch_records(batch: &RecordBatch) -> Result<(), BatchError> {
    Ok(batch.validate_records()?)
}

/// Encodes `records` as one batch at `base_offset`, as an append does (records without a
/// timestamp get `now_ms`).
pub fn encode_batch(
    records: &[Record],
    base_offset: u64,
    now_ms: i64,
    compression: Compression,
    timestamp_type: TimestampType,
) -> Result<Bytes> {
    let mut out = Vec::new();
    let options = EncodeOptions {
        compression,
        timestamp_type,
    };
    batch::encode(
        records,
        now_ms,
        batch::MAX_BATCH_BYTES,
        options,
        &mut EncodeScratch::default(),
        &mut out,
    )?;
    batch::set_base_offset(&mut out, base_offset);
    Ok(Bytes::from(out))
}

/// Makes `bytes` one whole batch as far as its framing goes: writes its length field (the
/// bytes after it) and its CRC. Shorter than a batch header, or longer than a batch can
/// be: left alone.
pub fn seal_batch(bytes: &mut [u8]) {
    if bytes.len() < batch::HEADER_LEN {
        return;
    }
    let Ok(length) = u32::try_from(bytes.len() - batch::LOG_OVERHEAD) else {
        return;
    };
    if let Some(slot) = bytes.get_mut(8..12) {
        slot.copy_from_slice(&length.to_le_bytes());
    }
    let crc = crc32fast::hash(bytes.get(batch::CRC_START..).unwrap_or_default());
    if let Some(slot) = bytes.get_mut(13..17) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

// ---- segment indexes ------------------------------------------------------------------

/// A segment's offset and time indexes as loaded from their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedIndex {
    index: SegmentIndex,
}

impl LoadedIndex {
    /// The `.index` entries: (relative offset, byte position).
    #[must_use]
    pub fn offsets(&self) -> Vec<(u32, u32)> {
        self.index
            .offsets
            .iter()
            .map(|e| (e.relative_offset, e.position))
            .collect()
    }

    /// The `.timeindex` entries: (max timestamp so far, relative offset).
    #[must_use]
    pub fn times(&self) -> Vec<(i64, u32)> {
        self.index
            .times
            .iter()
            .map(|e| (e.timestamp, e.relative_offset))
            .collect()
    }

    /// The segment's largest timestamp as loaded, and the relative offset holding it.
    #[must_use]
    pub fn max_timestamp(&self) -> (i64, u32) {
        (self.index.max_timestamp, self.index.max_timestamp_relative)
    }

    /// Where a read of `relative_offset` starts: (relative offset, byte position).
    #[must_use]
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let e = self.index.lookup(relative_offset);
        (e.relative_offset, e.position)
    }

    /// Where a search for the first timestamp `≥ timestamp` starts.
    #[must_use]
    pub fn time_lookup(&self, timestamp: i64) -> Option<u32> {
        self.index.time_lookup(timestamp)
    }

    /// The bytes of the `.index` and `.timeindex` files the index writes for a `.log` of
    /// `log_len` bytes ending before `next_offset`.
    #[must_use]
    pub fn encode(&self, log_len: u64, next_offset: u64) -> (Vec<u8>, Vec<u8>) {
        self.index.encode(Extent { log_len, next_offset })
    }
}

/// Loads a segment's indexes from the bytes of its `.index` and `.timeindex` files, its
/// `.log` being `log_len` bytes and ending before `next_offset` (when known), as open
/// does: `None` when they are invalid or describe another extent of the log (open then
/// rebuilds them from the log).
#[must_use]
pub fn load_index(offset_file: &[u8], time_file: &[u8], log_len: u64, next_offset: Option<u64>) -> Option<LoadedIndex> {
    SegmentIndex::decode(offset_file, time_file, log_len, next_offset).map(|index| LoadedIndex { index })
}

/// Index files holding the given entry bytes (cut to whole entries) with a valid header,
/// count and CRC, as the index writes them for a `.log` of `log_len` bytes ending before
/// `next_offset`.
#[must_use]
pub fn frame_index(offset_entries: &[u8], time_entries: &[u8], log_len: u64, next_offset: u64) -> (Vec<u8>, Vec<u8>) {
    let mut index = SegmentIndex::new();
    index.offsets = offset_entries
        .chunks_exact(8)
        .map(|c| crate::storage::index::OffsetEntry {
            relative_offset: crate::bytes_le::le_u32(c, 0),
            position: crate::bytes_le::le_u32(c, 4),
        })
        .collect();
    index.times = time_entries
        .chunks_exact(12)
        .map(|c| crate::storage::index::TimeEntry {
            timestamp: crate::bytes_le::le_u64(c, 0) as i64,
            relative_offset: crate::bytes_le::le_u32(c, 8),
        })
        .collect();
    index.encode(Extent { log_len, next_offset })
}

// ---- the committed-offset table -------------------------------------------------------

/// The committed-offset table: group → partition → committed offset.
pub type OffsetTable = BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>;

/// Decodes a key of the offsets log: (group, topic-partition).
#[must_use]
pub fn decode_offset_key(key: &[u8]) -> Option<(String, TopicPartition)> {
    offsets::decode_key(key)
}

/// Encodes a key of the offsets log.
pub fn encode_offset_key(group: &str, tp: &TopicPartition) -> Result<Bytes> {
    offsets::encode_key(group, tp)
}

/// Decodes a value of the offsets log.
#[must_use]
pub fn decode_offset_value(value: &[u8]) -> Option<OffsetAndMetadata> {
    offsets::decode_value(value)
}

/// Encodes a value of the offsets log.
#[must_use]
pub fn encode_offset_value(om: &OffsetAndMetadata) -> Bytes {
    offsets::encode_value(om.offset, om.commit_timestamp, &om.metadata)
}

/// A decoded offsets snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSnapshot {
    covered: u64,
    entries: Vec<SnapshotEntry>,
}

impl OffsetSnapshot {
    /// The offsets-log offset the snapshot covers.
    #[must_use]
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// Its entries: (group, topic-partition, committed offset).
    #[must_use]
    pub fn entries(&self) -> Vec<(String, TopicPartition, OffsetAndMetadata)> {
        self.entries
            .iter()
            .map(|e| {
                (
                    e.group.clone(),
                    TopicPartition::new(e.topic.clone(), e.partition),
                    OffsetAndMetadata {
                        offset: e.offset,
                        metadata: e.metadata.clone(),
                        commit_timestamp: e.commit_timestamp,
                    },
                )
            })
            .collect()
    }

    /// The bytes of the snapshot file the store writes for it.
    pub fn encode(&self) -> Result<Vec<u8>> {
        offsets::encode_snapshot(self.covered, &self.entries)
    }
}

/// Decodes the bytes of an offsets `snapshot` file, as open does.
pub fn decode_offset_snapshot(bytes: &[u8]) -> Result<OffsetSnapshot> {
    let (covered, entries) = offsets::decode_snapshot(Path::new(INPUT), bytes)?;
    Ok(OffsetSnapshot { covered, entries })
}

/// `payload` framed as a snapshot file (valid header, length and CRC).
#[must_use]
pub fn frame_offset_snapshot(payload: &[u8]) -> Vec<u8> {
    offsets::frame_snapshot(payload)
}

/// Applies the commits of `batch` (a batch of the offsets log) to an empty table, as open
/// replays the log after the snapshot.
pub fn replay_offsets_batch(batch: &RecordBatch) -> Result<OffsetTable> {
    let mut table = OffsetTable::new();
    offsets::apply_batch(&mut table, Path::new(INPUT), batch, 0)?;
    Ok(table)
}

// ---- topic metadata -------------------------------------------------------------------

/// A decoded `meta/topics` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTable {
    topics: Vec<StoredTopic>,
}

impl TopicTable {
    /// Each topic's name and the configuration open gives it.
    #[must_use]
    pub fn topics(&self) -> Vec<(String, TopicConfig)> {
        self.topics.iter().map(|t| (t.name.clone(), t.config())).collect()
    }

    /// The bytes of the `meta/topics` file the broker writes for it.
    pub fn encode(&self) -> Result<Vec<u8>> {
        broker::encode_topics(&self.topics)
    }
}

/// Decodes the bytes of a `meta/topics` file, as open does.
pub fn decode_topic_table(bytes: &[u8]) -> Result<TopicTable> {
    Ok(TopicTable {
        topics: broker::decode_topics(Path::new(INPUT), bytes)?,
    })
}

/// `payload` framed as a `meta/topics` file (valid header, length and CRC).
#[must_use]
pub fn frame_topic_table(payload: &[u8]) -> Vec<u8> {
    broker::frame_topics(payload)
}
