//! The record batch: brooklet's unit of write, checksum and compression.
//!
//! # On-disk format, version 1
//!
//! A segment's `.log` file is a sequence of batches laid end to end. All integers are
//! little-endian. The layout follows Kafka's RecordBatch v2, without the partition leader
//! epoch (brooklet has no replicas):
//!
//! ```text
//! pos  size  field               meaning
//!   0     8  base_offset   u64   offset of the first record
//!   8     4  batch_length  u32   bytes that follow this field (total size − 12)
//!  12     1  magic         u8    format version, = 1
//!  13     4  crc           u32   CRC-32 (IEEE, crc32fast) of bytes 17..end
//!  17     2  attributes    u16   bits 0–2 compression codec (0 none, 1 gzip, 2 snappy,
//!                                3 lz4, 4 zstd), bit 3 timestamp type (0 CreateTime,
//!                                1 LogAppendTime), bit 4 transactional, bit 5 control;
//!                                other bits must be 0
//!  19     4  last_offset_delta u32  offset of the last record − base_offset
//!  23     8  first_timestamp i64  timestamp of the first record, ms since the epoch
//!  31     8  max_timestamp   i64  largest timestamp in the batch
//!  39     8  producer_id     i64  −1 when not idempotent (reserved for idempotence)
//!  47     2  producer_epoch  i16  −1 when not idempotent
//!  49     4  base_sequence   i32  −1 when not idempotent
//!  53     4  record_count    u32  number of records that follow
//!  57     …  records
//! ```
//!
//! `base_offset` and `batch_length` sit outside the CRC so that a batch can be encoded and
//! checksummed before the log assigns its offset (the append lock only patches 8 bytes).
//!
//! Each record (the records section is compressed as a whole when a codec is set, see
//! [Compression](#compression)):
//!
//! ```text
//! length          uvarint   bytes of the record after this field
//! attributes      u8        reserved, 0
//! timestamp_delta zigzag    timestamp − first_timestamp
//! offset_delta    uvarint   offset − base_offset; strictly increasing, ≤ last_offset_delta
//! key_length      zigzag    −1 = no key
//! key             bytes
//! value_length    zigzag    −1 = no value (tombstone)
//! value           bytes
//! header_count    uvarint
//! headers         header_count × (name_length uvarint, name UTF-8, value_length uvarint, value)
//! ```
//!
//! # Compression
//! With a codec set (attribute bits 0–2), everything after the 57-byte header — the whole
//! records section — is compressed as one block, as in Kafka. The header stays
//! uncompressed (record count, offsets and timestamps are readable without decompressing),
//! and the CRC covers the stored, compressed bytes, so corruption is caught before any
//! decompressor runs. A batch is stored compressed whenever a codec is asked for, even if
//! compression made it larger (Kafka does the same), so a batch's codec is always the one
//! its writer chose. The compressed block is framed per codec:
//!
//! | codec | number | framing of the records section |
//! |---|---|---|
//! | gzip | 1 | one gzip member (RFC 1952, deflate at the default level 6) |
//! | snappy | 2 | raw snappy, whose preamble is the uncompressed length (not Kafka's xerial framing, not the snappy frame format) |
//! | lz4 | 3 | `u32` little-endian uncompressed length, then one LZ4 block (not the LZ4 frame format) |
//! | zstd | 4 | one zstd frame (level 3) that declares its content size |
//!
//! Snappy and lz4 state the uncompressed length before the data, and zstd frames declare
//! it, so a reader checks it against the limit before allocating; gzip is decompressed in
//! bounded steps.
//!
//! Size limits: the format allows batches of up to [`MAX_BATCH_BYTES`], stored and (when
//! compressed) decompressed. The configured maximum (`max_batch_bytes`) limits what is
//! *written*: an append must fit it as stored and, when compressed, uncompressed (header
//! plus records). Readers and recovery frame and decompress stored batches by the format's
//! limit, never by the configured one, so lowering `max_batch_bytes` (or `segment_bytes`,
//! which caps it) never turns a stored batch whose checksum holds into a "corrupt" one:
//! recovery keeps it and readers read it. A decompression bomb therefore costs a reader at
//! most what its records really decompress to (gzip, and zstd above 8 MiB or without a
//! declared size, grow their buffer with the output), or the size its framing declares
//! where that is small (zstd up to 8 MiB) or possible for its input (snappy expands each
//! byte to at most ~21, lz4 to at most ~255; a declared size above 32 and 256 per input
//! byte, that bound with a margin, is refused as corrupt before anything is allocated);
//! never more than [`MAX_BATCH_BYTES`].
//!
//! # Timestamp types
//! Bit 3 of the attributes is Kafka's `message.timestamp.type`. With `CreateTime` (0) each
//! record's timestamp is `first_timestamp + timestamp_delta`. With `LogAppendTime` (1) the
//! log stamped the batch when it appended it: the writer sets `first_timestamp` and
//! `max_timestamp` to the append time and every `timestamp_delta` to 0, and a reader gives
//! every record the batch's `max_timestamp`, whatever its delta says.
//!
//! # Decoding untrusted bytes
//! Every length is checked against the bytes actually present before it is used, the
//! declared batch length is checked against [`MAX_BATCH_BYTES`] (and, by the callers,
//! against the bytes the file holds) before anything is allocated, a compressed records
//! section may not decompress to more than the decoder's limit (the format's
//! [`MAX_BATCH_BYTES`] for stored batches), and a malformed batch is reported as
//! [`Error::Corrupt`] (or as torn, when the bytes simply end early) — never a panic.

use std::fmt;
use std::io::{self, Read, Write};

use bytes::Bytes;

use super::varint::{self, VarintError};
use super::{Header, LogRecord, Record};
// Callers check `HEADER_LEN` before reading header fields, so the readers' 0 for a short
// slice is never reached there.
use crate::bytes_le::{le_u16, le_u32, le_u64};
use crate::error::{Error, Result};

/// Bytes before the CRC-covered part: base offset, length, magic, crc.
pub(crate) const CRC_START: usize = 17;
/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 57;
/// Size of the part of the header that frames the batch: base offset and length.
pub(crate) const LOG_OVERHEAD: usize = 12;
/// The format version this build writes and reads.
pub const MAGIC: u8 = 1;
/// The largest batch the format allows, in bytes: a batch lies within one segment, whose
/// byte positions the offset index stores as `u32`, so no configuration can write a larger
/// one (`max_batch_bytes` ≤ `segment_bytes` < 4 GiB). Decoding uses this, not the
/// configured `max_batch_bytes`, to decide whether bytes frame a plausible batch.
pub const MAX_BATCH_BYTES: usize = u32::MAX as usize;

const OFF_LENGTH: usize = 8;
const OFF_MAGIC: usize = 12;
const OFF_CRC: usize = 13;
const OFF_ATTRIBUTES: usize = 17;
const OFF_LAST_DELTA: usize = 19;
const OFF_FIRST_TS: usize = 23;
const OFF_MAX_TS: usize = 31;
const OFF_PRODUCER_ID: usize = 39;
const OFF_PRODUCER_EPOCH: usize = 47;
const OFF_BASE_SEQUENCE: usize = 49;
const OFF_RECORD_COUNT: usize = 53;

const CODEC_MASK: u16 = 0b111;
const TIMESTAMP_TYPE_BIT: u16 = 1 << 3;
const TRANSACTIONAL_BIT: u16 = 1 << 4;
const CONTROL_BIT: u16 = 1 << 5;
const KNOWN_ATTRIBUTE_BITS: u16 = CODEC_MASK | TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT;

/// Compression codec of a batch (attribute bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Records are stored as they are.
    #[default]
    None,
    /// gzip (codec 1).
    Gzip,
    /// snappy (codec 2).
    Snappy,
    /// lz4 (codec 3).
    Lz4,
    /// zstd (codec 4).
    Zstd,
}

impl Compression {
    /// The codec number stored in attribute bits 0–2.
    fn bits(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    fn from_bits(bits: u16) -> Option<Self> {
        Some(match bits {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }
}

/// Whose clock a batch's timestamps come from (attribute bit 3), as Kafka's
/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer (or the append time when the producer set none).
    #[default]
    CreateTime,
    /// Overwritten with the broker's append time.
    LogAppendTime,
}

/// Why bytes did not decode as a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The bytes end before the batch does: a torn write at the tail of a log, or a read
    /// that stopped early. `needed` is the batch's full size where the header said it.
    Torn { needed: Option<usize> },
    /// The bytes are there but wrong.
    Corrupt(String),
}

impl DecodeError {
    fn corrupt(reason: impl Into<String>) -> Self {
        DecodeError::Corrupt(reason.into())
    }
}

/// The framing fields of a batch, read from its first [`HEADER_LEN`] bytes without the
/// records. Recovery and reads use it to walk a log batch by batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: u64,
    /// Total size of the batch in bytes, header included.
    pub size: usize,
    pub last_offset_delta: u32,
    pub max_timestamp: i64,
    pub record_count: u32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Parses and sanity-checks a header. The declared size must be within the format's
    /// [`MAX_BATCH_BYTES`]; callers check it against the bytes present before reading them.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < LOG_OVERHEAD {
            return Err(DecodeError::Torn { needed: None });
        }
        let length = le_u32(bytes, OFF_LENGTH) as usize;
        let size = length.saturating_add(LOG_OVERHEAD);
        if size < HEADER_LEN {
            return Err(DecodeError::corrupt(format!(
                "batch length {length} is shorter than a batch header"
            )));
        }
        if size > MAX_BATCH_BYTES {
            return Err(DecodeError::corrupt(format!(
                "batch length {length} exceeds the format's maximum batch size {MAX_BATCH_BYTES}"
            )));
        }
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Torn { needed: Some(size) });
        }
        let magic = bytes.get(OFF_MAGIC).copied().unwrap_or(0);
        if magic != MAGIC {
            return Err(DecodeError::corrupt(format!("unknown batch format version {magic}")));
        }
        let attributes = le_u16(bytes, OFF_ATTRIBUTES);
        if attributes & !KNOWN_ATTRIBUTE_BITS != 0 {
            return Err(DecodeError::corrupt(format!(
                "unknown attribute bits {attributes:#06x}"
            )));
        }
        let base_offset = le_u64(bytes, 0);
        let last_offset_delta = le_u32(bytes, OFF_LAST_DELTA);
        let record_count = le_u32(bytes, OFF_RECORD_COUNT);
        if base_offset
            .checked_add(u64::from(last_offset_delta))
            .and_then(|o| o.checked_add(1))
            .is_none()
        {
            return Err(DecodeError::corrupt(format!("base offset {base_offset} overflows")));
        }
        if record_count == 0 || u64::from(record_count) > u64::from(last_offset_delta) + 1 {
            return Err(DecodeError::corrupt(format!(
                "record count {record_count} does not fit last offset delta {last_offset_delta}"
            )));
        }
        Ok(BatchHeader {
            base_offset,
            size,
            last_offset_delta,
            max_timestamp: le_u64(bytes, OFF_MAX_TS) as i64,
            record_count,
        })
    }
}

/// What [`encode`] learned while writing a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EncodedInfo {
    pub record_count: u32,
    pub max_timestamp: i64,
    /// Offset delta of the record with the largest timestamp (the first one on ties).
    pub max_timestamp_delta: u32,
}

/// How [`encode`] writes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EncodeOptions {
    /// Codec for the records section.
    pub compression: Compression,
    /// `LogAppendTime` stamps every record with the append time.
    pub timestamp_type: TimestampType,
}

/// zstd level for compressed batches (zstd's own default, as Kafka's).
const ZSTD_LEVEL: i32 = 3;

/// State [`encode`] reuses from one batch to the next: the buffer a compressed batch's
/// records are encoded into before compression, and the compressors' tables. One lives in
/// each partition's writer, so compressing appends allocate nothing per call once warm
/// (gzip aside: flate2 sets up its deflate state per stream).
#[derive(Default)]
pub(crate) struct EncodeScratch {
    records: Vec<u8>,
    snappy: Option<snap::raw::Encoder>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl fmt::Debug for EncodeScratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodeScratch")
            .field("records_capacity", &self.records.capacity())
            .field("snappy", &self.snappy.is_some())
            .field("zstd", &self.zstd.is_some())
            .finish()
    }
}

// Inlined into the encoder's loop (a call per record and field cost a seventh of
// `put_records`' instructions under callgrind).
#[inline(always)]
fn record_body_len(record: &Record, timestamp_delta: i64, offset_delta: u32) -> usize {
    let key = record
        .key
        .as_ref()
        .map_or(varint::len_i64(-1), |k| varint::len_i64(k.len() as i64) + k.len());
    let value = record
        .value
        .as_ref()
        .map_or(varint::len_i64(-1), |v| varint::len_i64(v.len() as i64) + v.len());
    let headers: usize = record
        .headers
        .iter()
        .map(|h| {
            varint::len_u64(h.name.len() as u64) + h.name.len() + varint::len_u64(h.value.len() as u64) + h.value.len()
        })
        .sum();
    1 + varint::len_i64(timestamp_delta)
        + varint::len_u64(u64::from(offset_delta))
        + key
        + value
        + varint::len_u64(record.headers.len() as u64)
        + headers
}

/// The encoded size of a batch holding `record` alone (uncompressed): the least any batch
/// holding it takes, since its deltas are smallest there. A record for which this passes
/// `max_batch_bytes` can never be appended: [`encode`] refuses it with the same size.
pub(crate) fn single_record_batch_len(record: &Record) -> usize {
    let body = record_body_len(record, 0, 0);
    HEADER_LEN + varint::len_u64(body as u64) + body
}

#[inline(always)]
fn put_nullable(out: &mut Vec<u8>, bytes: Option<&Bytes>) {
    match bytes {
        Some(b) => {
            varint::put_i64(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => varint::put_i64(out, -1),
    }
}

/// How the records of one batch get their timestamps.
#[derive(Clone, Copy)]
struct Stamps {
    now_ms: i64,
    first_ts: i64,
    log_append_time: bool,
}

impl Stamps {
    #[inline]
    fn of(&self, record: &Record) -> i64 {
        if self.log_append_time {
            self.now_ms
        } else {
            record.timestamp.unwrap_or(self.now_ms)
        }
    }
}

/// Appends the uncompressed records section to `buf`. The batch being built started at
/// `start` in `buf` and has `overhead` bytes elsewhere (its header, when the records go to a
/// scratch buffer); once it passes `max_batch_bytes`, `buf` is cut back to `start` and the
/// full size computed for the error. Returns the largest timestamp and its offset delta.
fn put_records<R: AsRef<Record>>(
    records: &[R],
    stamps: Stamps,
    max_batch_bytes: usize,
    buf: &mut Vec<u8>,
    start: usize,
    overhead: usize,
) -> Result<(i64, u32)> {
    let mut max_timestamp = i64::MIN;
    let mut max_timestamp_delta = 0;
    for (delta, record) in (0u32..).zip(records) {
        let record = record.as_ref();
        if let Some(timestamp) = record.timestamp.filter(|ts| *ts < 0) {
            buf.truncate(start);
            return Err(Error::InvalidTimestamp { timestamp });
        }
        let ts = stamps.of(record);
        if ts > max_timestamp {
            max_timestamp = ts;
            max_timestamp_delta = delta;
        }
        let ts_delta = ts.wrapping_sub(stamps.first_ts);
        varint::put_u64(buf, record_body_len(record, ts_delta, delta) as u64);
        buf.push(0);
        varint::put_i64(buf, ts_delta);
        varint::put_u64(buf, u64::from(delta));
        put_nullable(buf, record.key.as_ref());
        put_nullable(buf, record.value.as_ref());
        varint::put_u64(buf, record.headers.len() as u64);
        for h in &record.headers {
            varint::put_u64(buf, h.name.len() as u64);
            buf.extend_from_slice(h.name.as_bytes());
            varint::put_u64(buf, h.value.len() as u64);
            buf.extend_from_slice(&h.value);
        }
        if buf.len() - start + overhead > max_batch_bytes {
            let rest: usize = (delta + 1..)
                .zip(records.iter().skip(delta as usize + 1))
                .map(|(d, r)| {
                    let r = r.as_ref();
                    let body = record_body_len(r, stamps.of(r).wrapping_sub(stamps.first_ts), d);
                    varint::len_u64(body as u64) + body
                })
                .sum();
            let size = buf.len() - start + overhead + rest;
            buf.truncate(start);
            return Err(Error::RecordTooLarge {
                size,
                max: max_batch_bytes,
            });
        }
    }
    Ok((max_timestamp, max_timestamp_delta))
}

fn compress_failed(codec: Compression, e: impl fmt::Display) -> Error {
    Error::InvalidArgument {
        reason: format!("{} compression failed: {e}", codec.name()),
    }
}

/// Appends `input` compressed with `codec`, framed as the module docs describe, to `out`.
/// On error `out` may hold part of the output; the caller cuts it back.
fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
    snappy: &mut Option<snap::raw::Encoder>,
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
) -> Result<()> {
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(&mut *out, flate2::Compression::default());
            encoder.write_all(input).map_err(|e| compress_failed(codec, e))?;
            encoder.finish().map_err(|e| compress_failed(codec, e))?;
        }
        Compression::Snappy => {
            let at = out.len();
            out.resize(at + snap::raw::max_compress_len(input.len()), 0);
            let encoder = snappy.get_or_insert_with(snap::raw::Encoder::new);
            let n = encoder
                .compress(input, out.get_mut(at..).unwrap_or_default())
                .map_err(|e| compress_failed(codec, e))?;
            out.truncate(at + n);
        }
        Compression::Lz4 => {
            let len = u32::try_from(input.len()).map_err(|_| compress_failed(codec, "input over 4 GiB"))?;
            out.extend_from_slice(&len.to_le_bytes());
            let at = out.len();
            out.resize(at + lz4_flex::block::get_maximum_output_size(input.len()), 0);
            let n = lz4_flex::block::compress_into(input, out.get_mut(at..).unwrap_or_default())
                .map_err(|e| compress_failed(codec, e))?;
            out.truncate(at + n);
        }
        Compression::Zstd => {
            let compressor = match zstd {
                Some(c) => c,
                None => zstd.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| compress_failed(codec, e))?),
            };
            // Compress straight into the spare capacity after the header; the frame
            // records its content size (zstd's default), which readers check first.
            out.reserve(zstd::zstd_safe::compress_bound(input.len()));
            let at = out.len() as u64;
            let mut tail = io::Cursor::new(&mut *out);
            tail.set_position(at);
            compressor
                .compress_to_buffer(input, &mut tail)
                .map_err(|e| compress_failed(codec, e))?;
        }
    }
    Ok(())
}

/// Encodes `records` as one batch at base offset 0, appended to `out`. Records without a
/// timestamp get `now_ms`; with [`TimestampType::LogAppendTime`] every record gets it.
/// Uncompressed batches are encoded straight into `out`; compressed ones are encoded into
/// `scratch`, then compressed into `out`. Patch the base offset with [`set_base_offset`].
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty batch, one with more than `u32::MAX` records,
/// or a compressor failure; [`Error::InvalidTimestamp`] for a record whose own timestamp
/// is negative (whatever the timestamp type); [`Error::RecordTooLarge`] when the batch would exceed
/// `max_batch_bytes` as stored or (when compressed) uncompressed. Nothing is left appended
/// to `out` after an error.
pub(crate) fn encode<R: AsRef<Record>>(
    records: &[R],
    now_ms: i64,
    max_batch_bytes: usize,
    options: EncodeOptions,
    scratch: &mut EncodeScratch,
    out: &mut Vec<u8>,
) -> Result<EncodedInfo> {
    let Some(first) = records.first() else {
        return Err(Error::InvalidArgument {
            reason: "a batch needs at least one record".into(),
        });
    };
    let record_count = u32::try_from(records.len()).map_err(|_| Error::InvalidArgument {
        reason: format!("{} records do not fit one batch", records.len()),
    })?;
    let log_append_time = options.timestamp_type == TimestampType::LogAppendTime;
    let stamps = Stamps {
        now_ms,
        first_ts: if log_append_time {
            now_ms
        } else {
            first.as_ref().timestamp.unwrap_or(now_ms)
        },
        log_append_time,
    };

    // One pass: records first, then the header they determine. The limit is checked as
    // the batch grows; past it, the partial batch is removed and the full size computed
    // for the error.
    let start = out.len();
    let (max_timestamp, max_timestamp_delta) = match options.compression {
        Compression::None => {
            out.resize(start + HEADER_LEN, 0);
            put_records(records, stamps, max_batch_bytes, out, start, 0)?
        }
        codec => {
            let EncodeScratch {
                records: raw,
                snappy,
                zstd,
            } = scratch;
            raw.clear();
            // The uncompressed batch must fit too: readers refuse to decompress more.
            let max = put_records(records, stamps, max_batch_bytes, raw, 0, HEADER_LEN)?;
            out.resize(start + HEADER_LEN, 0);
            if let Err(e) = compress(codec, raw, out, snappy, zstd) {
                out.truncate(start);
                return Err(e);
            }
            if out.len() - start > max_batch_bytes {
                let size = out.len() - start;
                out.truncate(start);
                return Err(Error::RecordTooLarge {
                    size,
                    max: max_batch_bytes,
                });
            }
            max
        }
    };
    let size = out.len() - start;
    let mut attributes = options.compression.bits();
    if log_append_time {
        attributes |= TIMESTAMP_TYPE_BIT;
    }
    let header = out.get_mut(start..start + HEADER_LEN).unwrap_or_default();
    let fields: [(usize, &[u8]); 12] = [
        (0, &0u64.to_le_bytes()),
        (OFF_LENGTH, &((size - LOG_OVERHEAD) as u32).to_le_bytes()),
        (OFF_MAGIC, &[MAGIC]),
        (OFF_CRC, &0u32.to_le_bytes()), // filled below
        (OFF_ATTRIBUTES, &attributes.to_le_bytes()),
        (OFF_LAST_DELTA, &(record_count - 1).to_le_bytes()),
        (OFF_FIRST_TS, &stamps.first_ts.to_le_bytes()),
        (OFF_MAX_TS, &max_timestamp.to_le_bytes()),
        (OFF_PRODUCER_ID, &(-1i64).to_le_bytes()),
        (OFF_PRODUCER_EPOCH, &(-1i16).to_le_bytes()),
        (OFF_BASE_SEQUENCE, &(-1i32).to_le_bytes()),
        (OFF_RECORD_COUNT, &record_count.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        if let Some(slot) = header.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    }
    debug_assert_eq!(out.len() - start, size);
    let crc = crc32fast::hash(out.get(start + CRC_START..).unwrap_or_default());
    if let Some(slot) = out.get_mut(start + OFF_CRC..start + OFF_CRC + 4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(EncodedInfo {
        record_count,
        max_timestamp,
        max_timestamp_delta,
    })
}

/// `size` is the decompressed size where the framing states it.
fn too_large(codec: Compression, size: Option<u64>, limit: usize) -> DecodeError {
    let size = size.map(|s| format!(" {s} bytes,")).unwrap_or_default();
    DecodeError::corrupt(format!(
        "{} records decompress to{size} more than the maximum batch size {limit}",
        codec.name()
    ))
}

/// The most output one byte of snappy input can produce, with margin (the format's densest
/// element, a copy with a 2-byte offset, writes 64 bytes from 3).
const SNAPPY_MAX_EXPANSION: usize = 32;
/// The most output one byte of an lz4 block can produce, with margin (a match-length
/// extension byte adds up to 255 bytes; a sequence's 3 fixed bytes, up to 19).
const LZ4_MAX_EXPANSION: usize = 256;
/// The largest output buffer sized from what a batch declares (zstd's content size,
/// gzip's trailer) before any output exists; beyond it, the buffer grows with the real
/// output.
const PREALLOC_MAX: usize = 8 << 20;
/// The most output one byte of a deflate stream can produce (deflate's limit is ~1032:1).
const DEFLATE_MAX_EXPANSION: usize = 1032;

/// `Err` if `declared` bytes cannot come out of `input_len` bytes of `codec` input, whose
/// format expands by at most `max_expansion` per byte (plus a little for the framing):
/// the declaration is a lie.
fn expandable(codec: Compression, declared: usize, input_len: usize, max_expansion: usize) -> Result<(), DecodeError> {
    if declared <= input_len.saturating_add(16).saturating_mul(max_expansion) {
        return Ok(());
    }
    Err(DecodeError::corrupt(format!(
        "{} records declare {declared} bytes from {input_len} compressed bytes, more than the format can expand to",
        codec.name()
    )))
}

fn decompress_failed(codec: Compression, e: impl fmt::Display) -> DecodeError {
    DecodeError::corrupt(format!("{} records do not decompress: {e}", codec.name()))
}

/// Reads `reader` to its end into a buffer that never grows past `limit` bytes (its
/// capacity included): more output than that is an error. `hint` is the expected size.
fn read_bounded(codec: Compression, mut reader: impl Read, limit: usize, hint: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; hint.min(limit)];
    let mut filled = 0usize;
    let mut probe = [0u8; 512];
    loop {
        // With the buffer full, a small read says whether there is more before growing it.
        let full = filled == out.len();
        let dest = if full {
            &mut probe[..]
        } else {
            out.get_mut(filled..).unwrap_or_default()
        };
        let n = match reader.read(dest) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decompress_failed(codec, e)),
        };
        if full {
            let need = filled + n;
            if need > limit {
                return Err(too_large(codec, None, limit));
            }
            let new_len = out.len().saturating_mul(2).max(need).max(4096).min(limit);
            out.reserve_exact(new_len - out.len());
            out.resize(new_len, 0);
            if let (Some(slot), Some(bytes)) = (out.get_mut(filled..need), probe.get(..n)) {
                slot.copy_from_slice(bytes);
            }
        }
        filled += n;
    }
    out.truncate(filled);
    Ok(out)
}

/// Decompresses a records section framed as the module docs describe, refusing (as
/// corrupt) output larger than `limit` before allocating it where the framing states the
/// size, and as soon as it passes `limit` otherwise.
fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            // The gzip trailer's ISIZE (length mod 2^32) sizes the first allocation, within
            // what the input can expand to and at most `PREALLOC_MAX`: it is unchecked yet.
            let hint = input.len().checked_sub(4).map_or(0, |at| le_u32(input, at) as usize);
            let hint = hint
                .min(input.len().saturating_mul(DEFLATE_MAX_EXPANSION))
                .min(PREALLOC_MAX);
            let mut decoder = flate2::bufread::GzDecoder::new(input);
            let out = read_bounded(codec, &mut decoder, limit, hint)?;
            if !decoder.into_inner().is_empty() {
                return Err(DecodeError::corrupt("bytes after the gzip stream"));
            }
            Ok(out)
        }
        Compression::Snappy => {
            let len = snap::raw::decompress_len(input).map_err(|e| decompress_failed(codec, e))?;
            if len > limit {
                return Err(too_large(codec, Some(len as u64), limit));
            }
            // Snappy's densest element, a 3-byte copy, writes 64 bytes: a larger declared
            // length is a lie, refused before it sizes an allocation.
            expandable(codec, len, input.len(), SNAPPY_MAX_EXPANSION)?;
            let mut out = vec![0u8; len];
            let n = snap::raw::Decoder::new()
                .decompress(input, &mut out)
                .map_err(|e| decompress_failed(codec, e))?;
            if n != len {
                return Err(decompress_failed(codec, format_args!("{n} bytes, {len} declared")));
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let (len, block) = lz4_flex::block::uncompressed_size(input).map_err(|e| decompress_failed(codec, e))?;
            if len > limit {
                return Err(too_large(codec, Some(len as u64), limit));
            }
            // Each byte of an lz4 match-length extension adds at most 255 bytes of output.
            expandable(codec, len, block.len(), LZ4_MAX_EXPANSION)?;
            let mut out = vec![0u8; len];
            let n = lz4_flex::block::decompress_into(block, &mut out).map_err(|e| decompress_failed(codec, e))?;
            if n != len {
                return Err(decompress_failed(codec, format_args!("{n} bytes, {len} declared")));
            }
            Ok(out)
        }
        Compression::Zstd => {
            // The frame's declared content size sizes the output, and bulk decompression
            // writes into that buffer only (it is the window too) and fails if the frames
            // need more. Without a declared size (brooklet always declares it), the frames
            // are streamed into a buffer that grows with the output, up to the limit: the
            // limit may be the format's 4 GiB, never worth reserving up front.
            let declared = zstd::zstd_safe::get_frame_content_size(input)
                .map_err(|_| decompress_failed(codec, "not a zstd frame"))?;
            let capacity = match declared {
                Some(n) if n > limit as u64 => return Err(too_large(codec, Some(n), limit)),
                // A size zstd can reach (an RLE block writes 128 KiB from 4 bytes) but one
                // that should not size an allocation unseen: stream it, growing with the output.
                Some(n) if n > PREALLOC_MAX as u64 => None,
                declared => declared,
            };
            let Some(capacity) = capacity else {
                let decoder =
                    zstd::stream::read::Decoder::with_buffer(input).map_err(|e| decompress_failed(codec, e))?;
                let hint = declared.map_or(input.len().saturating_mul(4), |_| PREALLOC_MAX);
                return read_bounded(codec, decoder, limit, hint);
            };
            let mut out = Vec::with_capacity(capacity as usize);
            zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress_to_buffer(input, &mut out))
                .map_err(|e| {
                    // zstd's name for ZSTD_error_dstSize_tooSmall: more output than fits.
                    if e.to_string().contains("Destination buffer is too small") {
                        too_large(codec, None, limit)
                    } else {
                        decompress_failed(codec, e)
                    }
                })?;
            Ok(out)
        }
    }
}

/// Writes `base_offset` into the batch that starts at the front of `batch`.
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    if let Some(slot) = batch.get_mut(0..8) {
        slot.copy_from_slice(&base_offset.to_le_bytes());
    }
}

/// Checks the CRC of one whole batch.
pub(crate) fn check_crc(batch: &[u8]) -> Result<(), DecodeError> {
    let stored = le_u32(batch, OFF_CRC);
    let computed = crc32fast::hash(batch.get(CRC_START..).unwrap_or_default());
    if stored == computed {
        Ok(())
    } else {
        Err(DecodeError::corrupt(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )))
    }
}

/// One stored batch: a validated header over the batch's bytes, which it shares (cheaply
/// clonable, zero-copy). A compressed batch was decompressed when it was read, and its
/// records are slices of the decompressed buffer.
///
/// # Examples
/// ```
/// use brooklet::{Durability, LogConfig, PartitionLog, Record};
/// let dir = tempfile::tempdir()?;
/// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
/// log.append(&[Record::new().value("a"), Record::new().value("b")], Durability::Written)?;
/// let batches = log.read(0, 1 << 20)?;
/// assert_eq!(batches[0].base_offset(), 0);
/// assert_eq!(batches[0].record_count(), 2);
/// let values: Vec<_> = batches[0].records().map(|r| r.map(|r| r.value)).collect::<Result<_, _>>()?;
/// assert_eq!(values, [Some("a".into()), Some("b".into())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    header: BatchHeader,
    /// The batch as stored.
    data: Bytes,
    /// The decompressed records section of a compressed batch; `None` when uncompressed
    /// (the records are then `data[HEADER_LEN..]`).
    decompressed: Option<Bytes>,
}

impl RecordBatch {
    /// Decodes the batch at the front of `data` (which may hold more after it), checking its
    /// framing, and its CRC when `verify_crc`, and decompressing its records if it is
    /// compressed — into at most `decompress_limit` (for stored batches, the format's
    /// [`MAX_BATCH_BYTES`], whatever `max_batch_bytes` is configured now); a batch whose
    /// records do not decompress within that is corrupt.
    pub(crate) fn decode(data: &Bytes, decompress_limit: usize, verify_crc: bool) -> Result<Self, DecodeError> {
        let header = BatchHeader::parse(data)?;
        let Some(bytes) = data.get(..header.size) else {
            return Err(DecodeError::Torn {
                needed: Some(header.size),
            });
        };
        if verify_crc {
            check_crc(bytes)?;
        }
        let codec_bits = le_u16(bytes, OFF_ATTRIBUTES) & CODEC_MASK;
        let decompressed = match Compression::from_bits(codec_bits) {
            Some(Compression::None) => None,
            Some(codec) => {
                let section = bytes.get(HEADER_LEN..).unwrap_or_default();
                Some(Bytes::from(decompress(codec, section, decompress_limit)?))
            }
            None => {
                return Err(DecodeError::corrupt(format!("unknown compression codec {codec_bits}")));
            }
        };
        Ok(RecordBatch {
            header,
            data: data.slice(..header.size),
            decompressed,
        })
    }

    /// Offset of the first record.
    #[must_use]
    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// Offset of the last record.
    #[must_use]
    pub fn last_offset(&self) -> u64 {
        self.header.last_offset()
    }

    /// Number of records in the batch.
    #[must_use]
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// Timestamp of the first record, ms since the epoch.
    #[must_use]
    pub fn first_timestamp(&self) -> i64 {
        le_u64(&self.data, OFF_FIRST_TS) as i64
    }

    /// Largest timestamp in the batch.
    #[must_use]
    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    /// Size of the batch on disk, in bytes.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        self.header.size
    }

    /// The CRC stored in the batch header.
    #[must_use]
    pub fn crc(&self) -> u32 {
        le_u32(&self.data, OFF_CRC)
    }

    /// The compression codec the batch is stored with. (`None` is never returned for a
    /// decoded batch: one with an unknown codec number does not decode.)
    #[must_use]
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_bits(le_u16(&self.data, OFF_ATTRIBUTES) & CODEC_MASK)
    }

    /// Whose clock the timestamps come from. With [`TimestampType::LogAppendTime`] every
    /// record's timestamp is the batch's [`max_timestamp`](Self::max_timestamp), the time the
    /// log appended it.
    #[must_use]
    pub fn timestamp_type(&self) -> TimestampType {
        if le_u16(&self.data, OFF_ATTRIBUTES) & TIMESTAMP_TYPE_BIT == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    /// Producer id, −1 when the batch is not from an idempotent producer.
    #[must_use]
    pub fn producer_id(&self) -> i64 {
        le_u64(&self.data, OFF_PRODUCER_ID) as i64
    }

    /// Producer epoch, −1 when not idempotent.
    #[must_use]
    pub fn producer_epoch(&self) -> i16 {
        le_u16(&self.data, OFF_PRODUCER_EPOCH) as i16
    }

    /// Sequence number of the first record, −1 when not idempotent.
    #[must_use]
    pub fn base_sequence(&self) -> i32 {
        le_u32(&self.data, OFF_BASE_SEQUENCE) as i32
    }

    /// The batch's bytes, exactly as stored (compressed, for a compressed batch).
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.data
    }

    /// Iterates over the records as owned [`LogRecord`]s. Keys, values and header values are
    /// zero-copy slices of the batch, but each costs a reference-count update; to scan many
    /// records, [`iter`](Self::iter) is several times faster.
    ///
    /// Each item is a `Result`: a batch whose checksum was not verified could hold records
    /// that do not parse, and those come back as [`Error::InvalidBatch`] (after which the
    /// iterator ends).
    #[must_use]
    pub fn records(&self) -> Records {
        Records {
            data: self.section().clone(),
            cursor: self.cursor(),
        }
    }

    /// Iterates over borrowed views of the records: no allocation, no reference counting.
    /// Errors as for [`records`](Self::records).
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Durability, LogConfig, PartitionLog, Record};
    /// let dir = tempfile::tempdir()?;
    /// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
    /// log.append(&[Record::new().key("k").value("v").header("h", "1")], Durability::Written)?;
    /// for batch in log.read(0, 1 << 20)? {
    ///     for record in batch.iter() {
    ///         let record = record?;
    ///         assert_eq!((record.offset(), record.key(), record.value()), (0, Some(&b"k"[..]), Some(&b"v"[..])));
    ///         assert_eq!(record.headers().collect::<Vec<_>>(), [("h", &b"1"[..])]);
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> RecordRefs<'_> {
        RecordRefs {
            data: self.section(),
            cursor: self.cursor(),
        }
    }

    /// Iterates from `cursor` (where a walk of this batch, or of a clone of it, stood:
    /// [`RecordOffsets::cursor`]) on, without walking the records before it again.
    pub(crate) fn iter_at(&self, cursor: RecordCursor) -> RecordRefs<'_> {
        RecordRefs {
            data: self.section(),
            cursor,
        }
    }

    /// The offsets of the records from `from` (a cursor as for [`iter_at`](Self::iter_at);
    /// `None` is the first record) on, each with where it starts: for finding where a poll
    /// stops inside a batch. Each step reads only the record's length and deltas (checking
    /// that they fit the batch and are in order), not its key, value and headers: their
    /// parse comes when the records are iterated.
    pub(crate) fn offsets(&self, from: Option<RecordCursor>) -> RecordOffsets<'_> {
        RecordOffsets {
            data: self.section(),
            cursor: from.unwrap_or_else(|| self.cursor()),
        }
    }

    /// The buffer the records live in: the decompressed section, or the stored batch.
    fn section(&self) -> &Bytes {
        self.decompressed.as_ref().unwrap_or(&self.data)
    }

    fn cursor(&self) -> RecordCursor {
        RecordCursor {
            position: if self.decompressed.is_some() {
                0
            } else {
                HEADER_LEN.min(self.data.len())
            },
            left: self.header.record_count,
            base_offset: self.header.base_offset,
            first_timestamp: self.first_timestamp(),
            log_append_time: match self.timestamp_type() {
                TimestampType::CreateTime => None,
                TimestampType::LogAppendTime => Some(self.header.max_timestamp),
            },
            last_offset_delta: self.header.last_offset_delta,
            next_min_delta: 0,
        }
    }

    /// [`validate_records`](Self::validate_records) with the error a reader reports.
    pub(crate) fn check_records(&self) -> Result<()> {
        self.validate_records().map_err(|e| Error::InvalidBatch {
            base_offset: self.header.base_offset,
            reason: match e {
                DecodeError::Corrupt(reason) => reason,
                DecodeError::Torn { .. } => "records end early".into(),
            },
        })
    }

    /// Walks every record without allocating (a compressed batch was decompressed by
    /// [`decode`](Self::decode)), checking that the records section parses exactly. Used by
    /// recovery, so that every batch kept after a crash is readable, and by consumers.
    pub(crate) fn validate_records(&self) -> Result<(), DecodeError> {
        let section = self.section();
        let mut cursor = self.cursor();
        while cursor.left > 0 {
            let raw = cursor.parse_next(section)?;
            cursor.advance(&raw);
        }
        if cursor.position != section.len() {
            return Err(DecodeError::corrupt(format!(
                "{} bytes after the last record",
                section.len() - cursor.position
            )));
        }
        Ok(())
    }
}

/// The fields of one record, as byte ranges into its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Positions are `u32` (a records section is at most `MAX_BATCH_BYTES` long), which keeps
/// a record view small enough to pass around in registers rather than by `memcpy`.
struct RawRecord {
    offset_delta: u32,
    /// Bytes the record takes, its length prefix included.
    size: u32,
    header_count: u32,
    timestamp_delta: i64,
    key: Span,
    value: Span,
    headers: (u32, u32),
}

/// Where a key or a value lies in its batch: `start..end`, or [`Span::NULL`] for a null
/// one. A plain pair rather than an `Option`, so that a parsed record has no discriminant
/// to pack. With `Option<(u32, u32)>` the compiler stored a pair as two 32-bit halves and
/// reloaded it at once as one 64-bit word, which the CPU cannot forward from its store
/// buffer: a third of the samples of a `poll` loop's record parsing sat on that reload, and
/// the loop took 33.3 ns per record against 30.5 ns with `Span` (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// A null field: `start > end`, which no field's range has, so [`get`](Self::get)
    /// answers `None` for it with the same bounds check as for any other range.
    const NULL: Span = Span { start: 1, end: 0 };

    /// The field's bytes in `data`; `None` for a null field.
    #[inline(always)]
    fn get(self, data: &[u8]) -> Option<&[u8]> {
        data.get(self.start as usize..self.end as usize)
    }

    /// The field as a zero-copy slice of `data`; `None` for a null field.
    fn slice(self, data: &Bytes) -> Option<Bytes> {
        self.get(data)
            .map(|_| data.slice(self.start as usize..self.end as usize))
    }
}

/// Where the next record of a batch starts, and what it must satisfy. Meaningful only for
/// the batch (or a clone of it) whose iteration gave it: elsewhere, reads through it are
/// still bounds-checked, and fail as a corrupt batch does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordCursor {
    position: usize,
    left: u32,
    base_offset: u64,
    first_timestamp: i64,
    /// The batch's append time, which every record takes, for a `LogAppendTime` batch.
    log_append_time: Option<i64>,
    last_offset_delta: u32,
    next_min_delta: u64,
}

/// A record parsed up to its offset delta, by [`RecordCursor::parse_head`].
struct Head<'b> {
    /// At the field after the offset delta.
    c: Cursor<'b>,
    /// Bytes of the length prefix.
    n: usize,
    body: &'b [u8],
    timestamp_delta: i64,
    offset_delta: u64,
}

/// A cursor over a byte slice whose every read is bounds-checked. Ranges it returns are
/// relative to `origin`.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    origin: usize,
}

fn varint_err(e: VarintError) -> DecodeError {
    match e {
        VarintError::Truncated => DecodeError::corrupt("record ends inside a varint"),
        VarintError::Overlong => DecodeError::corrupt("overlong varint"),
    }
}

impl Cursor<'_> {
    #[inline(always)]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = varint::get_u64(self.buf.get(self.pos..).unwrap_or_default()).map_err(varint_err)?;
        self.pos += n;
        Ok(v)
    }
    #[inline(always)]
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let (v, n) = varint::get_i64(self.buf.get(self.pos..).unwrap_or_default()).map_err(varint_err)?;
        self.pos += n;
        Ok(v)
    }
    #[inline(always)]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = self
            .buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| DecodeError::corrupt("record ends early"))?;
        self.pos += 1;
        Ok(b)
    }
    /// Skips `len` bytes, returning their range.
    #[inline(always)]
    fn take(&mut self, len: u64) -> Result<(usize, usize), DecodeError> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| DecodeError::corrupt(format!("field of {len} bytes runs past the record")))?;
        let range = (self.origin + self.pos, self.origin + end);
        self.pos = end;
        Ok(range)
    }
    #[inline(always)]
    fn nullable(&mut self) -> Result<Option<(usize, usize)>, DecodeError> {
        match self.i64()? {
            -1 => Ok(None),
            len if len < 0 => Err(DecodeError::corrupt(format!("negative length {len}"))),
            len => self.take(len as u64).map(Some),
        }
    }
}

/// Reads the fields of one record for [`RecordCursor::parse_fast`]: every read is
/// bounds-checked, and any failure is `None`, with no reason to build.
struct FieldReader<'a> {
    /// The record, its length prefix included.
    buf: &'a [u8],
    pos: usize,
}

impl FieldReader<'_> {
    #[inline(always)]
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        let (v, n) = varint::get_u64(self.buf.get(self.pos..)?).ok()?;
        self.pos += n;
        Some(v)
    }

    #[inline(always)]
    fn i64(&mut self) -> Option<i64> {
        let (v, n) = varint::get_i64(self.buf.get(self.pos..)?).ok()?;
        self.pos += n;
        Some(v)
    }

    /// A length-prefixed field that may be null (length -1), as a span of the batch in
    /// which the record starts at `base`.
    #[inline(always)]
    fn nullable(&mut self, base: usize) -> Option<Span> {
        match self.i64()? {
            -1 => Some(Span::NULL),
            len => {
                let (s, e) = self.take(u64::try_from(len).ok()?)?;
                // `parse_fast` checked that the batch's positions fit a u32.
                Some(Span {
                    start: (base + s) as u32,
                    end: (base + e) as u32,
                })
            }
        }
    }

    /// Skips `len` bytes, returning their range in the record.
    #[inline(always)]
    fn take(&mut self, len: u64) -> Option<(usize, usize)> {
        let start = self.pos;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > self.buf.len() {
            return None;
        }
        self.pos = end;
        Some((start, end))
    }
}

impl RecordCursor {
    /// Parses the framing of the record at the cursor in `batch` (headers included, so that
    /// a record either decodes whole or not at all) without moving the cursor.
    ///
    /// A record that [`parse_fast`](Self::parse_fast) accepts is parsed by it alone; any
    /// other is parsed again by [`parse_slow`](Self::parse_slow), which names what is wrong.
    #[inline(always)]
    fn parse_next(&self, batch: &[u8]) -> Result<RawRecord, DecodeError> {
        match self.parse_fast(batch) {
            Some(raw) => Ok(raw),
            None => self.parse_slow(batch),
        }
    }

    /// [`parse_slow`](Self::parse_slow)'s checks, with no error to build: `Some` exactly
    /// where it answers `Ok`, with the same record (checked by a property test), `None`
    /// otherwise. Carrying a reason through each field read cost a `poll` loop 59 of its
    /// 301 instructions per record, and 22% more time (BENCHMARKS.md).
    #[inline(always)]
    fn parse_fast(&self, batch: &[u8]) -> Option<RawRecord> {
        if batch.len() > u32::MAX as usize {
            return None;
        }
        let (mut r, timestamp_delta, offset_delta) = self.head_fast(batch)?;
        let size = r.buf.len();
        let key = r.nullable(self.position)?;
        let value = r.nullable(self.position)?;
        let header_count = r.u64()?;
        let headers_start = r.pos;
        for _ in 0..header_count {
            let name_len = r.u64()?;
            let (s, e) = r.take(name_len)?;
            std::str::from_utf8(r.buf.get(s..e)?).ok()?;
            let value_len = r.u64()?;
            r.take(value_len)?;
        }
        if r.pos != size {
            return None;
        }
        // Every position lies inside `batch`, whose length fits a u32 (checked above), and
        // each header takes at least one byte: the casts are exact.
        Some(RawRecord {
            offset_delta: offset_delta as u32,
            size: size as u32,
            header_count: header_count as u32,
            timestamp_delta,
            key,
            value,
            headers: ((self.position + headers_start) as u32, (self.position + r.pos) as u32),
        })
    }

    /// [`parse_head`](Self::parse_head)'s checks, with no error to build, as
    /// [`parse_fast`](Self::parse_fast) makes `parse_next`'s: the record (its length prefix
    /// included) in a reader at the field after the offset delta, the timestamp delta and
    /// the offset delta.
    #[inline(always)]
    fn head_fast<'b>(&self, batch: &'b [u8]) -> Option<(FieldReader<'b>, i64, u64)> {
        let rest = batch.get(self.position..)?;
        let (body_len, n) = varint::get_u64(rest).ok()?;
        let size = n.checked_add(usize::try_from(body_len).ok()?)?;
        let mut r = FieldReader {
            buf: rest.get(..size)?,
            pos: n,
        };
        let _attributes = r.u8()?;
        let timestamp_delta = r.i64()?;
        let offset_delta = r.u64()?;
        if offset_delta < self.next_min_delta || offset_delta > u64::from(self.last_offset_delta) {
            return None;
        }
        Some((r, timestamp_delta, offset_delta))
    }

    /// [`parse_next`](Self::parse_next) for a record [`parse_fast`](Self::parse_fast)
    /// refused, with the reason it is refused.
    #[cold]
    #[inline(never)]
    fn parse_slow(&self, batch: &[u8]) -> Result<RawRecord, DecodeError> {
        let Head {
            mut c,
            n,
            body,
            timestamp_delta,
            offset_delta,
        } = self.parse_head(batch)?;
        let key = c.nullable()?;
        let value = c.nullable()?;
        let header_count = c.u64()?;
        let headers_start = c.origin + c.pos;
        for _ in 0..header_count {
            let name_len = c.u64()?;
            let (s, e) = c.take(name_len)?;
            if std::str::from_utf8(batch.get(s..e).unwrap_or_default()).is_err() {
                return Err(DecodeError::corrupt("header name is not UTF-8"));
            }
            let value_len = c.u64()?;
            c.take(value_len)?;
        }
        if c.pos != body.len() {
            return Err(DecodeError::corrupt("record length does not match its fields"));
        }
        // Every position lies inside `batch`, whose length is checked against u32 once, and
        // each header takes at least one byte: the casts below are exact.
        if batch.len() > u32::MAX as usize {
            return Err(DecodeError::corrupt("records section longer than 4 GiB"));
        }
        let range = |r: Option<(usize, usize)>| {
            r.map_or(Span::NULL, |(s, e)| Span {
                start: s as u32,
                end: e as u32,
            })
        };
        Ok(RawRecord {
            offset_delta: offset_delta as u32,
            size: (n + body.len()) as u32,
            header_count: header_count as u32,
            timestamp_delta,
            key: range(key),
            value: range(value),
            headers: (headers_start as u32, (c.origin + c.pos) as u32),
        })
    }

    /// Parses the record at the cursor up to its offset delta (its length prefix, the
    /// attributes and the timestamp delta before it), checking that the delta is in order.
    #[inline(always)]
    fn parse_head<'b>(&self, batch: &'b [u8]) -> Result<Head<'b>, DecodeError> {
        let rest = batch.get(self.position..).unwrap_or_default();
        let (body_len, n) = varint::get_u64(rest).map_err(varint_err)?;
        let body = usize::try_from(body_len)
            .ok()
            .and_then(|len| rest.get(n..n.checked_add(len)?))
            .ok_or_else(|| DecodeError::corrupt(format!("record length {body_len} runs past the batch")))?;
        let mut c = Cursor {
            buf: body,
            pos: 0,
            origin: self.position + n,
        };
        let _attributes = c.u8()?;
        let timestamp_delta = c.i64()?;
        let offset_delta = c.u64()?;
        if offset_delta < self.next_min_delta || offset_delta > u64::from(self.last_offset_delta) {
            return Err(DecodeError::corrupt(format!(
                "offset delta {offset_delta} is out of order or past the last offset delta {}",
                self.last_offset_delta
            )));
        }
        Ok(Head {
            c,
            n,
            body,
            timestamp_delta,
            offset_delta,
        })
    }

    #[inline]
    fn advance(&mut self, raw: &RawRecord) {
        self.step_over(raw.size as usize, u64::from(raw.offset_delta));
    }

    /// Moves the cursor past a record of `size` bytes (its length prefix included) with
    /// offset delta `offset_delta`, returning the record's offset. Both come from a parse of
    /// the record at the cursor: it lies inside the batch, and the delta fits a u32.
    #[inline(always)]
    fn step_over(&mut self, size: usize, offset_delta: u64) -> u64 {
        self.position += size;
        self.left -= 1;
        self.next_min_delta = offset_delta + 1;
        self.base_offset + offset_delta
    }

    /// The next record, `None` at the end; after an error the iteration ends.
    ///
    /// Calls [`parse_fast`](Self::parse_fast) itself rather than through
    /// [`parse_next`](Self::parse_next): through it, the compiler moved the record via a
    /// `Result` on the stack in halves and reloaded it whole, a failed store forward that made
    /// a `poll` loop 20% slower (BENCHMARKS.md, "A record parse that carries no error").
    #[inline(always)]
    fn next_raw(&mut self, batch: &[u8]) -> Option<Result<RawRecord>> {
        if self.left == 0 {
            return None;
        }
        match self.parse_fast(batch) {
            Some(raw) => {
                self.advance(&raw);
                Some(Ok(raw))
            }
            None => Some(self.next_slow(batch)),
        }
    }

    /// [`next_raw`](Self::next_raw) for a record [`parse_fast`](Self::parse_fast) refused.
    #[cold]
    #[inline(never)]
    fn next_slow(&mut self, batch: &[u8]) -> Result<RawRecord> {
        match self.parse_slow(batch) {
            Ok(raw) => {
                self.advance(&raw);
                Ok(raw)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Steps over the record at the cursor, parsing only up to its offset delta, and
    /// returns its offset; `None` at the end; after an error the walk ends.
    #[inline(always)]
    fn skip_next(&mut self, batch: &[u8]) -> Option<Result<u64>> {
        if self.left == 0 {
            return None;
        }
        match self.head_fast(batch) {
            Some((record, _, offset_delta)) => Some(Ok(self.step_over(record.buf.len(), offset_delta))),
            None => Some(self.skip_slow(batch)),
        }
    }

    /// [`skip_next`](Self::skip_next) for a record [`head_fast`](Self::head_fast) refused.
    #[cold]
    #[inline(never)]
    fn skip_slow(&mut self, batch: &[u8]) -> Result<u64> {
        match self.parse_head(batch) {
            Ok(head) => Ok(self.step_over(head.n + head.body.len(), head.offset_delta)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Ends the iteration, with the error a reader reports for `e`.
    #[cold]
    fn fail(&mut self, e: DecodeError) -> Error {
        self.left = 0;
        let reason = match e {
            DecodeError::Corrupt(reason) => reason,
            DecodeError::Torn { .. } => "record ends early".into(),
        };
        Error::InvalidBatch {
            base_offset: self.base_offset,
            reason,
        }
    }

    fn record_ref<'a>(&self, data: &'a Bytes, raw: RawRecord) -> RecordRef<'a> {
        RecordRef {
            data,
            raw,
            offset: self.base_offset + u64::from(raw.offset_delta),
            timestamp: self
                .log_append_time
                .unwrap_or_else(|| self.first_timestamp.wrapping_add(raw.timestamp_delta)),
        }
    }
}

/// A record borrowed from a [`RecordBatch`], from [`RecordBatch::iter`].
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    data: &'a Bytes,
    raw: RawRecord,
    offset: u64,
    timestamp: i64,
}

impl<'a> RecordRef<'a> {
    /// The record's offset in its partition.
    #[must_use]
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The key, if any.
    #[must_use]
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.raw.key.get(self.data)
    }

    /// The value; `None` is a tombstone.
    #[must_use]
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.raw.value.get(self.data)
    }

    /// The headers, in order, as `(name, value)`.
    #[must_use]
    #[inline]
    pub fn headers(&self) -> HeaderRefs<'a> {
        let (pos, end) = self.raw.headers;
        HeaderRefs {
            batch: self.data,
            pos: pos as usize,
            end: end as usize,
            left: u64::from(self.raw.header_count),
        }
    }

    /// An owned copy whose payloads are zero-copy slices of the batch.
    #[must_use]
    pub fn to_log_record(&self) -> LogRecord {
        let mut headers = Vec::new();
        let mut refs = self.headers();
        while let Some(((ns, ne), (vs, ve))) = refs.next_ranges() {
            let name = String::from_utf8_lossy(self.data.get(ns..ne).unwrap_or_default()).into_owned();
            headers.push(Header {
                name,
                value: self.data.slice(vs..ve),
            });
        }
        LogRecord {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.raw.key.slice(self.data),
            value: self.raw.value.slice(self.data),
            headers,
        }
    }
}

/// Iterator over a record's headers as `(name, value)`, from [`RecordRef::headers`].
#[derive(Debug, Clone)]
pub struct HeaderRefs<'a> {
    batch: &'a [u8],
    pos: usize,
    end: usize,
    left: u64,
}

impl HeaderRefs<'_> {
    /// The next header's name and value as ranges of the batch. The record's parse
    /// validated every header, so a failure cannot happen here; it would end the iteration
    /// rather than panic.
    fn next_ranges(&mut self) -> Option<((usize, usize), (usize, usize))> {
        if self.left == 0 {
            return None;
        }
        let mut c = Cursor {
            buf: self.batch.get(self.pos..self.end)?,
            pos: 0,
            origin: self.pos,
        };
        let name_len = c.u64().ok()?;
        let name = c.take(name_len).ok()?;
        let value_len = c.u64().ok()?;
        let value = c.take(value_len).ok()?;
        self.pos = value.1;
        self.left -= 1;
        Some((name, value))
    }
}

impl<'a> Iterator for HeaderRefs<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let ((ns, ne), (vs, ve)) = self.next_ranges()?;
        let batch: &'a [u8] = self.batch;
        Some((std::str::from_utf8(batch.get(ns..ne)?).ok()?, batch.get(vs..ve)?))
    }
}

/// Iterator over borrowed records, from [`RecordBatch::iter`].
#[derive(Debug, Clone)]
pub struct RecordRefs<'a> {
    data: &'a Bytes,
    cursor: RecordCursor,
}

impl<'a> Iterator for RecordRefs<'a> {
    type Item = Result<RecordRef<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.cursor.next_raw(self.data)?;
        Some(raw.map(|raw| self.cursor.record_ref(self.data, raw)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.cursor.left as usize))
    }
}

/// Iterator over the offsets of a batch's records, from [`RecordBatch::offsets`].
#[derive(Debug, Clone)]
pub(crate) struct RecordOffsets<'a> {
    data: &'a Bytes,
    cursor: RecordCursor,
}

impl RecordOffsets<'_> {
    /// Where the walk stands: the next record it steps over, for
    /// [`RecordBatch::iter_at`].
    pub(crate) fn cursor(&self) -> RecordCursor {
        self.cursor
    }
}

impl Iterator for RecordOffsets<'_> {
    type Item = Result<u64>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.cursor.skip_next(self.data)
    }
}

/// Iterator over owned records, from [`RecordBatch::records`].
#[derive(Debug, Clone)]
pub struct Records {
    data: Bytes,
    cursor: RecordCursor,
}

impl Iterator for Records {
    type Item = Result<LogRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.cursor.next_raw(&self.data)?;
        Some(raw.map(|raw| self.cursor.record_ref(&self.data, raw).to_log_record()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.cursor.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::new()
                .key("k1")
                .value("v1")
                .header("h", "x")
                .header("h", "y")
                .timestamp(1_000),
            Record::new().timestamp(990), // no key, tombstone
            Record::new().key(Bytes::new()).value(Bytes::new()).timestamp(1_005),
        ]
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn encode_one(records: &[Record], base: u64) -> Bytes {
        encode_with(records, base, Compression::None)
    }

    fn encode_with(records: &[Record], base: u64, compression: Compression) -> Bytes {
        let options = EncodeOptions {
            compression,
            timestamp_type: TimestampType::CreateTime,
        };
        encode_opts(records, base, options)
    }

    fn encode_opts(records: &[Record], base: u64, options: EncodeOptions) -> Bytes {
        let mut out = Vec::new();
        encode(records, 5, 1 << 20, options, &mut EncodeScratch::default(), &mut out).unwrap();
        set_base_offset(&mut out, base);
        Bytes::from(out)
    }

    /// Replaces the records section of `batch` and fixes its length and CRC.
    fn with_section(batch: &[u8], section: &[u8]) -> Bytes {
        let mut out = batch[..HEADER_LEN].to_vec();
        out.extend_from_slice(section);
        let length = (out.len() - LOG_OVERHEAD) as u32;
        out[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&length.to_le_bytes());
        fix_crc(&mut out);
        Bytes::from(out)
    }

    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32fast::hash(&batch[CRC_START..]);
        batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }

    fn sample_expected(base: u64) -> Vec<LogRecord> {
        vec![
            LogRecord {
                offset: base,
                timestamp: 1_000,
                key: Some("k1".into()),
                value: Some("v1".into()),
                headers: vec![Header::new("h", "x"), Header::new("h", "y")],
            },
            LogRecord {
                offset: base + 1,
                timestamp: 990,
                key: None,
                value: None,
                headers: vec![],
            },
            LogRecord {
                offset: base + 2,
                timestamp: 1_005,
                key: Some(Bytes::new()),
                value: Some(Bytes::new()),
                headers: vec![],
            },
        ]
    }

    #[test]
    fn round_trip_every_field() {
        let data = encode_one(&sample(), 40);
        let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
        assert_eq!(batch.base_offset(), 40);
        assert_eq!(batch.last_offset(), 42);
        assert_eq!(batch.record_count(), 3);
        assert_eq!(batch.first_timestamp(), 1_000);
        assert_eq!(batch.max_timestamp(), 1_005);
        assert_eq!(batch.size_bytes(), data.len());
        assert_eq!(batch.producer_id(), -1);
        assert_eq!(batch.producer_epoch(), -1);
        assert_eq!(batch.base_sequence(), -1);
        assert_eq!(batch.compression(), Some(Compression::None));
        assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
        batch.validate_records().unwrap();
        let got: Vec<LogRecord> = batch.records().collect::<Result<_>>().unwrap();
        assert_eq!(
            got,
            vec![
                LogRecord {
                    offset: 40,
                    timestamp: 1_000,
                    key: Some("k1".into()),
                    value: Some("v1".into()),
                    headers: vec![Header::new("h", "x"), Header::new("h", "y")],
                },
                LogRecord {
                    offset: 41,
                    timestamp: 990,
                    key: None,
                    value: None,
                    headers: vec![]
                },
                LogRecord {
                    offset: 42,
                    timestamp: 1_005,
                    key: Some(Bytes::new()),
                    value: Some(Bytes::new()),
                    headers: vec![]
                },
            ]
        );
    }

    #[test]
    fn missing_timestamp_takes_now() {
        let data = encode_one(&[Record::new().value("a")], 0);
        let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
        assert_eq!(batch.records().next().unwrap().unwrap().timestamp, 5);
    }

    #[test]
    fn a_negative_timestamp_is_refused_before_writing() {
        let mut scratch = EncodeScratch::default();
        for codec in CODECS {
            for timestamp_type in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
                let opts = EncodeOptions {
                    compression: codec,
                    timestamp_type,
                };
                let mut out = vec![7u8];
                let records = [
                    Record::new().value("a").timestamp(3),
                    Record::new().value("b").timestamp(-1),
                ];
                let err = encode(&records, 0, 1 << 20, opts, &mut scratch, &mut out).unwrap_err();
                assert!(
                    matches!(err, Error::InvalidTimestamp { timestamp: -1 }),
                    "{codec:?}: {err:?}"
                );
                assert_eq!(out, [7], "{codec:?}");
            }
        }
    }

    #[test]
    fn too_large_is_refused_before_writing() {
        let mut scratch = EncodeScratch::default();
        let opts = EncodeOptions::default();
        let mut out = vec![7u8];
        let err = encode(
            &[Record::new().value(vec![0u8; 2000])],
            0,
            1024,
            opts,
            &mut scratch,
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(err, Error::RecordTooLarge { size, max: 1024 } if size > 2000));
        assert_eq!(out, [7]);
        assert!(matches!(
            encode::<Record>(&[], 0, 1024, opts, &mut scratch, &mut out),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn every_codec_round_trips_every_field() {
        let mut scratch = EncodeScratch::default();
        for codec in CODECS {
            let mut out = Vec::new();
            let options = EncodeOptions {
                compression: codec,
                timestamp_type: TimestampType::CreateTime,
            };
            // Twice through one scratch: reuse must not leak the previous batch.
            for base in [40, 90] {
                out.clear();
                let info = encode(&sample(), 5, 1 << 20, options, &mut scratch, &mut out).unwrap();
                assert_eq!(
                    (info.record_count, info.max_timestamp, info.max_timestamp_delta),
                    (3, 1_005, 2)
                );
                set_base_offset(&mut out, base);
                let data = Bytes::from(out.clone());
                let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
                assert_eq!(batch.compression(), Some(codec), "{codec:?}");
                assert_eq!(batch.base_offset(), base);
                assert_eq!(batch.last_offset(), base + 2);
                assert_eq!(batch.record_count(), 3);
                assert_eq!(batch.first_timestamp(), 1_000);
                assert_eq!(batch.max_timestamp(), 1_005);
                assert_eq!(batch.size_bytes(), data.len());
                assert_eq!(batch.as_bytes(), &data);
                assert_eq!(
                    batch.crc(),
                    u32::from_le_bytes(data[OFF_CRC..OFF_CRC + 4].try_into().unwrap())
                );
                assert_eq!(batch.producer_id(), -1);
                assert_eq!(batch.producer_epoch(), -1);
                assert_eq!(batch.base_sequence(), -1);
                assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
                batch.validate_records().unwrap();
                let got: Vec<LogRecord> = batch.records().collect::<Result<_>>().unwrap();
                assert_eq!(got, sample_expected(base), "{codec:?}");
                let borrowed: Vec<LogRecord> = batch
                    .iter()
                    .map(|r| r.map(|r| r.to_log_record()))
                    .collect::<Result<_>>()
                    .unwrap();
                assert_eq!(borrowed, got);
                let first = batch.iter().next().unwrap().unwrap();
                assert_eq!(
                    first.headers().collect::<Vec<_>>(),
                    [("h", &b"x"[..]), ("h", &b"y"[..])]
                );
                // The header fields stay uncompressed: the same as without a codec, but
                // for the length, the CRC and the codec bits.
                let plain = encode_with(&sample(), base, Compression::None);
                assert_eq!(data[..OFF_LENGTH], plain[..OFF_LENGTH]);
                assert_eq!(data[OFF_MAGIC], plain[OFF_MAGIC]);
                assert_eq!(data[OFF_LAST_DELTA..HEADER_LEN], plain[OFF_LAST_DELTA..HEADER_LEN]);
                assert_eq!(le_u16(&data, OFF_ATTRIBUTES), codec.bits());
            }
        }
    }

    #[test]
    fn compressible_records_shrink_with_every_codec() {
        let records: Vec<Record> = (0..200)
            .map(|i| {
                Record::new()
                    .key(format!("user-{}", i % 7))
                    .value(format!(r#"{{"event":"click","page":"/home","n":{i}}}"#))
            })
            .collect();
        let plain = encode_with(&records, 0, Compression::None).len();
        for codec in &CODECS[1..] {
            let size = encode_with(&records, 0, *codec).len();
            assert!(size * 3 < plain, "{codec:?}: {size} of {plain}");
        }
    }

    #[test]
    fn incompressible_records_stay_compressed() {
        // Compression may make a batch larger; it is stored compressed all the same.
        let records = [Record::new().value(vec![0xA5u8; 1]).timestamp(1)];
        for codec in CODECS {
            let data = encode_with(&records, 0, codec);
            let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
            assert_eq!(batch.compression(), Some(codec));
            assert_eq!(
                batch.records().next().unwrap().unwrap().value.as_deref(),
                Some(&[0xA5u8][..])
            );
        }
    }

    /// Bytes no codec can compress (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn compressed_size_limits_apply_stored_and_uncompressed() {
        let mut scratch = EncodeScratch::default();
        // 3000 zero bytes compress far below 1024, but a reader would refuse to decompress
        // them within the limit, so the batch is refused.
        let zeros = [Record::new().value(vec![0u8; 3000])];
        // 954 random bytes make a 1020-byte batch; the codecs' framing takes it past 1024.
        let random = [Record::new().value(noise(954))];
        let mut plain = Vec::new();
        encode(&random, 0, 1024, EncodeOptions::default(), &mut scratch, &mut plain).unwrap();
        assert_eq!(plain.len(), 1020);
        for codec in &CODECS[1..] {
            let options = EncodeOptions {
                compression: *codec,
                timestamp_type: TimestampType::CreateTime,
            };
            let mut out = vec![7u8];
            let err = encode(&zeros, 0, 1024, options, &mut scratch, &mut out).unwrap_err();
            assert!(
                matches!(err, Error::RecordTooLarge { size, max: 1024 } if size > 3000),
                "{codec:?}: {err}"
            );
            assert_eq!(out, [7]);
            let err = encode(&random, 0, 1024, options, &mut scratch, &mut out).unwrap_err();
            assert!(
                matches!(err, Error::RecordTooLarge { size, max: 1024 } if size > 1024),
                "{codec:?}: {err}"
            );
            assert_eq!(out, [7]);
            // And with room for the framing it is stored, compressed.
            encode(&random, 0, 2048, options, &mut scratch, &mut out).unwrap();
            let data = Bytes::from(out.split_off(1));
            let batch = RecordBatch::decode(&data, 2048, true).unwrap();
            assert_eq!(batch.compression(), Some(*codec));
            assert!(batch.size_bytes() > 1020);
            batch.validate_records().unwrap();
        }
    }

    #[test]
    fn every_flipped_byte_of_a_compressed_batch_is_detected() {
        for codec in &CODECS[1..] {
            let data = encode_with(&sample(), 7, *codec);
            for i in 8..data.len() {
                let mut bad = data.to_vec();
                bad[i] ^= 0x40;
                let bad = Bytes::from(bad);
                assert!(
                    RecordBatch::decode(&bad, 1 << 20, true).is_err(),
                    "{codec:?}: flip at byte {i} went unnoticed"
                );
                // Without the CRC, the flip is caught by the decompressor or the record
                // parser, or yields other bytes — but never a panic.
                if let Ok(batch) = RecordBatch::decode(&bad, 1 << 20, false) {
                    let _ = batch.validate_records();
                    for r in batch.iter() {
                        let _ = r.map(|r| r.to_log_record());
                    }
                }
            }
        }
    }

    #[test]
    fn every_truncation_of_a_compressed_batch_is_torn() {
        for codec in &CODECS[1..] {
            let data = encode_with(&sample(), 0, *codec);
            for len in 0..data.len() {
                assert!(
                    matches!(
                        RecordBatch::decode(&data.slice(..len), 1 << 20, true),
                        Err(DecodeError::Torn { .. })
                    ),
                    "{codec:?} truncated to {len}"
                );
            }
        }
    }

    #[test]
    fn corrupt_compressed_payload_is_corrupt_not_a_panic() {
        for codec in &CODECS[1..] {
            let good = encode_with(&sample(), 0, *codec);
            for section in [&b""[..], b"\x00", b"garbage that is not compressed at all", &[0xFF; 64]] {
                let bad = with_section(&good, section);
                match RecordBatch::decode(&bad, 1 << 20, true) {
                    Err(DecodeError::Corrupt(_)) => {}
                    Ok(batch) => assert!(batch.validate_records().is_err(), "{codec:?}: {section:?}"),
                    Err(e) => panic!("{codec:?}: {e:?}"),
                }
            }
            // A valid stream of the wrong records fails validation.
            let other = encode_with(&[Record::new().value("only one")], 0, *codec);
            let bad = with_section(&good, &other[HEADER_LEN..]);
            let batch = RecordBatch::decode(&bad, 1 << 20, true).unwrap();
            assert!(batch.validate_records().is_err());
            assert!(batch.records().any(|r| r.is_err()));
        }
        let good = encode_with(&sample(), 0, Compression::Gzip);
        let mut trailing = good[HEADER_LEN..].to_vec();
        trailing.push(0);
        assert!(matches!(
            RecordBatch::decode(&with_section(&good, &trailing), 1 << 20, true),
            Err(DecodeError::Corrupt(reason)) if reason == "bytes after the gzip stream"
        ));
        let mut unknown = encode_one(&sample(), 0).to_vec();
        unknown[OFF_ATTRIBUTES] |= 5;
        fix_crc(&mut unknown);
        assert!(matches!(
            RecordBatch::decode(&Bytes::from(unknown), 1 << 20, true),
            Err(DecodeError::Corrupt(reason)) if reason.contains("codec 5")
        ));
    }

    fn is_bomb_error(r: Result<RecordBatch, DecodeError>) -> bool {
        match r {
            Err(DecodeError::Corrupt(reason)) => reason.contains("more than the maximum batch size 1048576"),
            _ => false,
        }
    }

    #[test]
    fn decompression_bombs_are_refused() {
        const LIMIT: usize = 1 << 20;
        let zeros = vec![0u8; 64 << 20];
        let good = |codec| encode_with(&sample(), 0, codec);

        // zstd with its content size declared: refused before allocating.
        let z = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(z.len() < 64 << 10);
        let r = RecordBatch::decode(&with_section(&good(Compression::Zstd), &z), LIMIT, true);
        assert!(
            matches!(&r, Err(DecodeError::Corrupt(reason))
            if reason == "zstd records decompress to 67108864 bytes, more than the maximum batch size 1048576"),
            "{r:?}"
        );

        // zstd without a content size: decompression stops at the limit.
        let mut streaming = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        streaming.include_contentsize(false).unwrap();
        streaming.write_all(&zeros).unwrap();
        let z = streaming.finish().unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&z).unwrap(), None);
        let r = RecordBatch::decode(&with_section(&good(Compression::Zstd), &z), LIMIT, true);
        assert!(
            matches!(&r, Err(DecodeError::Corrupt(reason))
            if reason == "zstd records decompress to more than the maximum batch size 1048576"),
            "{r:?}"
        );

        // gzip: bounded streaming.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&zeros[..4 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        let r = RecordBatch::decode(&with_section(&good(Compression::Gzip), &gz), LIMIT, true);
        assert!(is_bomb_error(r));

        // snappy and lz4 state the length first: a lie is refused before allocating, and
        // a true large length too.
        let mut snappy = Vec::new();
        varint::put_u64(&mut snappy, 64 << 20);
        snappy.extend_from_slice(&[0; 16]);
        assert!(is_bomb_error(RecordBatch::decode(
            &with_section(&good(Compression::Snappy), &snappy),
            LIMIT,
            true
        )));
        let snappy = snap::raw::Encoder::new().compress_vec(&zeros[..2 << 20]).unwrap();
        assert!(is_bomb_error(RecordBatch::decode(
            &with_section(&good(Compression::Snappy), &snappy),
            LIMIT,
            true
        )));
        let mut lz4 = (64u32 << 20).to_le_bytes().to_vec();
        lz4.extend_from_slice(&[0; 16]);
        assert!(is_bomb_error(RecordBatch::decode(
            &with_section(&good(Compression::Lz4), &lz4),
            LIMIT,
            true
        )));
        let lz4 = lz4_flex::block::compress_prepend_size(&zeros[..2 << 20]);
        assert!(is_bomb_error(RecordBatch::decode(
            &with_section(&good(Compression::Lz4), &lz4),
            LIMIT,
            true
        )));

        // With the format's limit (as readers and recovery decode stored batches), a
        // declared length the input cannot expand to is refused before it is allocated...
        let lie = |codec| {
            move |r: Result<RecordBatch, DecodeError>| {
                matches!(&r, Err(DecodeError::Corrupt(reason))
                    if reason == &format!("{codec} records declare 67108864 bytes from 16 compressed bytes, more than the format can expand to"))
            }
        };
        let mut snappy = Vec::new();
        varint::put_u64(&mut snappy, 64 << 20);
        snappy.extend_from_slice(&[0; 12]);
        assert_eq!(snappy.len(), 16);
        let r = RecordBatch::decode(
            &with_section(&good(Compression::Snappy), &snappy),
            MAX_BATCH_BYTES,
            true,
        );
        assert!(lie("snappy")(r));
        let mut lz4 = (64u32 << 20).to_le_bytes().to_vec();
        lz4.extend_from_slice(&[0; 16]);
        let r = RecordBatch::decode(&with_section(&good(Compression::Lz4), &lz4), MAX_BATCH_BYTES, true);
        assert!(lie("lz4")(r));
        // ...while the densest real input of each codec (zeros) still decompresses: the
        // bound never refuses what a compressor can produce. (Zeros are no records, so the
        // records fail to parse later; here only the decompression is checked.)
        let not_a_lie = |r: &Result<RecordBatch, DecodeError>| !matches!(r, Err(DecodeError::Corrupt(reason)) if reason.contains("expand"));
        for (codec, section) in [
            (
                Compression::Snappy,
                snap::raw::Encoder::new().compress_vec(&zeros[..8 << 20]).unwrap(),
            ),
            (
                Compression::Lz4,
                lz4_flex::block::compress_prepend_size(&zeros[..8 << 20]),
            ),
            (Compression::Zstd, zstd::bulk::compress(&zeros, 3).unwrap()),
        ] {
            let batch = with_section(&good(codec), &section);
            let r = RecordBatch::decode(&batch, MAX_BATCH_BYTES, true);
            assert!(not_a_lie(&r), "{codec:?}: {r:?}");
            assert!(
                decompress(codec, &section, MAX_BATCH_BYTES).is_ok_and(|out| out.iter().all(|&b| b == 0)),
                "{codec:?}"
            );
        }

        // A declared length that undersells the data is caught too.
        let mut lz4 = lz4_flex::block::compress_prepend_size(&[7u8; 5000]);
        lz4[..4].copy_from_slice(&100u32.to_le_bytes());
        assert!(RecordBatch::decode(&with_section(&good(Compression::Lz4), &lz4), LIMIT, true).is_err());
    }

    #[test]
    fn read_bounded_stays_within_its_limit() {
        for (len, hint) in [(0, 0), (1, 0), (5000, 0), (5000, 5000), (5000, 10), (1 << 16, 1 << 30)] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let out = read_bounded(Compression::Gzip, &data[..], 1 << 16, hint).unwrap();
            assert_eq!(out, data);
            assert!(out.capacity() <= 1 << 16);
        }
        let data = vec![1u8; (1 << 16) + 1];
        assert!(read_bounded(Compression::Gzip, &data[..], 1 << 16, 0).is_err());
        assert!(read_bounded(Compression::Gzip, &data[..], 1 << 16, 1 << 16).is_err());
    }

    #[test]
    fn log_append_time_overrides_every_timestamp() {
        let options = EncodeOptions {
            compression: Compression::None,
            timestamp_type: TimestampType::LogAppendTime,
        };
        for codec in CODECS {
            let mut out = Vec::new();
            let records = [
                Record::new().value("a").timestamp(1),
                Record::new().value("b"),
                Record::new().value("c").timestamp(i64::MAX),
            ];
            let options = EncodeOptions {
                compression: codec,
                ..options
            };
            let info = encode(
                &records,
                5_000,
                1 << 20,
                options,
                &mut EncodeScratch::default(),
                &mut out,
            )
            .unwrap();
            assert_eq!((info.max_timestamp, info.max_timestamp_delta), (5_000, 0));
            let data = Bytes::from(out);
            let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
            assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
            assert_eq!((batch.first_timestamp(), batch.max_timestamp()), (5_000, 5_000));
            assert_eq!(le_u16(&data, OFF_ATTRIBUTES), TIMESTAMP_TYPE_BIT | codec.bits());
            batch.validate_records().unwrap();
            let stamps: Vec<i64> = batch.records().map(|r| r.unwrap().timestamp).collect();
            assert_eq!(stamps, [5_000; 3]);
            let stamps: Vec<i64> = batch.iter().map(|r| r.unwrap().timestamp()).collect();
            assert_eq!(stamps, [5_000; 3]);
        }

        // Readers take max_timestamp whatever the deltas say (as Kafka).
        let mut data = encode_one(&sample(), 0).to_vec();
        data[OFF_ATTRIBUTES] |= TIMESTAMP_TYPE_BIT as u8;
        fix_crc(&mut data);
        let batch = RecordBatch::decode(&Bytes::from(data), 1 << 20, true).unwrap();
        assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
        let stamps: Vec<i64> = batch.records().map(|r| r.unwrap().timestamp).collect();
        assert_eq!(stamps, [1_005; 3]);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let data = encode_one(&sample(), 7);
        for i in 0..data.len() {
            let mut bad = data.to_vec();
            bad[i] ^= 0x40;
            let bad = Bytes::from(bad);
            let decoded = RecordBatch::decode(&bad, 1 << 20, true);
            if i < 8 {
                // The base offset is outside the CRC by design; the log checks it against
                // the expected offset.
                assert_eq!(decoded.unwrap().base_offset(), 7 ^ (0x40u64 << (8 * i)));
            } else {
                assert!(decoded.is_err(), "flip at byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn every_truncation_is_torn() {
        let data = encode_one(&sample(), 0);
        for len in 0..data.len() {
            match RecordBatch::decode(&data.slice(..len), 1 << 20, true) {
                Err(DecodeError::Torn { .. }) => {}
                other => panic!("truncated to {len}: {other:?}"),
            }
        }
    }

    /// A batch forged with a matching CRC: the walk by lengths stops with the reader's
    /// error at the first record whose length or offset delta is wrong, and ends there.
    #[test]
    fn the_walk_by_lengths_stops_at_a_forged_record() {
        let good = encode_one(&sample(), 40);
        let section = &good[HEADER_LEN..];
        let first = RecordBatch::decode(&good, 1 << 20, true).unwrap();
        let mut walk = first.offsets(None);
        walk.next();
        let second = walk.cursor().position - HEADER_LEN;
        // The second record's offset delta (after its length, attributes and timestamp
        // delta, one byte each here) set back to 0; then its length running past the batch.
        let mut behind = section.to_vec();
        assert_eq!(behind[second + 3], 1, "offset delta 1");
        behind[second + 3] = 0;
        let mut long = section.to_vec();
        long[second] = 0x7e;
        for (forged, reason) in [(behind, "out of order"), (long, "runs past the batch")] {
            let data = with_section(&good, &forged);
            let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
            let mut walk = batch.offsets(None);
            assert_eq!(walk.next().map(Result::unwrap), Some(40));
            match walk.next() {
                Some(Err(Error::InvalidBatch {
                    base_offset: 40,
                    reason: r,
                })) => {
                    assert!(r.contains(reason), "{r}");
                }
                other => panic!("{reason}: {other:?}"),
            }
            assert!(walk.next().is_none(), "{reason}");
        }
    }

    #[test]
    fn declared_length_is_bounded() {
        let mut data = encode_one(&sample(), 0).to_vec();
        data[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(BatchHeader::parse(&data), Err(DecodeError::Corrupt(_))));
    }

    proptest! {
        // A fixed seed keeps runs reproducible (as the other decoders' proptests); failures
        // print the minimal case.
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xba7c_4ed0),
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let data = Bytes::from(bytes);
            if let Ok(batch) = RecordBatch::decode(&data, 1 << 16, false) {
                let _ = batch.validate_records();
                for r in batch.records() { let _ = r; }
                for o in batch.offsets(None) { let _ = o; }
            }
        }

        #[test]
        fn random_compressed_sections_never_panic(
            codec in 1usize..5,
            section in proptest::collection::vec(any::<u8>(), 0..512),
            keep in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let codec = CODECS[codec];
            let limit = 1 << 16;
            let _ = decompress(codec, &section, limit);
            // A valid stream with its end replaced by noise.
            let good = encode_with(&sample(), 0, codec);
            let mut mangled = good[HEADER_LEN..].to_vec();
            mangled.truncate(keep.index(mangled.len() + 1));
            mangled.extend_from_slice(&tail);
            for data in [with_section(&good, &section), with_section(&good, &mangled)] {
                if let Ok(batch) = RecordBatch::decode(&data, limit, true) {
                    let _ = batch.validate_records();
                    for r in batch.records() { let _ = r; }
                    for o in batch.offsets(None) { let _ = o; }
                }
            }
        }

        #[test]
        fn random_records_round_trip(
            recs in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                 proptest::collection::vec(("[a-z]{0,5}", proptest::collection::vec(any::<u8>(), 0..8)), 0..3),
                 0..=i64::MAX),
                1..20)
        ) {
            let records: Vec<Record> = recs.iter().map(|(k, v, hs, ts)| {
                let mut r = Record::new().timestamp(*ts);
                r.key = k.clone().map(Bytes::from);
                r.value = v.clone().map(Bytes::from);
                for (n, hv) in hs { r = r.header(n.clone(), hv.clone()); }
                r
            }).collect();
            for codec in CODECS {
                check_round_trip(&records, codec)?;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xfa57_0a5e),
            cases: 1024,
            ..ProptestConfig::default()
        })]

        /// `parse_fast` accepts exactly the records `parse_slow` does, with the same fields,
        /// and `head_fast` exactly those `parse_head` does: on valid batches, and on batches
        /// with a few bytes changed or cut off (a CRC forged to match, or checks switched
        /// off, would let such bytes reach the parse).
        #[test]
        fn the_fast_record_parse_agrees_with_the_slow_one(
            recs in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                 proptest::collection::vec(("[a-z]{0,5}", proptest::collection::vec(any::<u8>(), 0..8)), 0..3)),
                1..10),
            changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            framing in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6, any::<u8>()), 0..3),
            keep in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let records: Vec<Record> = recs.iter().map(|(k, v, hs)| {
                let mut r = Record::new().timestamp(1_700_000_000_000);
                r.key = k.clone().map(Bytes::from);
                r.value = v.clone().map(Bytes::from);
                for (n, hv) in hs { r = r.header(n.clone(), hv.clone()); }
                r
            }).collect();
            let data = encode_one(&records, 3);
            let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
            let mut bytes = data.to_vec();
            let section = bytes.len() - HEADER_LEN;
            // Where each record starts: damage aimed at its framing (the length, attributes,
            // deltas and key length in its first bytes) reaches the checks past the length
            // prefix, which damage anywhere mostly does not.
            let mut starts = Vec::new();
            let mut walk = batch.cursor();
            while walk.left > 0 {
                starts.push(walk.position);
                let Ok(raw) = walk.parse_slow(&bytes) else { break };
                walk.advance(&raw);
            }
            for (at, b) in &changes {
                bytes[HEADER_LEN + at.index(section)] = *b;
            }
            for (record, offset, b) in &framing {
                if let Some(byte) = bytes.get_mut(starts[record.index(starts.len())] + offset) {
                    *byte = *b;
                }
            }
            let damaged = !changes.is_empty() || !framing.is_empty();
            // Some damaged batches are also cut short; an intact one is kept whole.
            if let Some(keep) = keep.filter(|_| damaged) {
                bytes.truncate(HEADER_LEN + keep.index(section + 1));
            }
            let mut cursor = batch.cursor();
            let mut parsed = 0;
            while cursor.left > 0 {
                let slow = cursor.parse_slow(&bytes);
                prop_assert_eq!(cursor.parse_fast(&bytes), slow.clone().ok());
                // The walk that reads only up to the offset delta.
                let head = cursor.parse_head(&bytes).map(|h| (h.n + h.body.len(), h.timestamp_delta, h.offset_delta));
                let fast = cursor.head_fast(&bytes).map(|(r, ts, delta)| (r.buf.len(), ts, delta));
                prop_assert_eq!(fast, head.ok());
                let Ok(raw) = slow else { break };
                cursor.advance(&raw);
                parsed += 1;
            }
            if !damaged {
                prop_assert_eq!(parsed, records.len());
            }
        }
    }

    fn check_round_trip(records: &[Record], codec: Compression) -> std::result::Result<(), TestCaseError> {
        {
            let data = encode_with(records, 3, codec);
            let batch = RecordBatch::decode(&data, 1 << 20, true).unwrap();
            prop_assert_eq!(batch.compression(), Some(codec));
            batch.validate_records().unwrap();
            let got: Vec<LogRecord> = batch.records().collect::<Result<_>>().unwrap();
            prop_assert_eq!(got.len(), records.len());
            let borrowed: Vec<LogRecord> = batch
                .iter()
                .map(|r| r.map(|r| r.to_log_record()))
                .collect::<Result<_>>()
                .unwrap();
            prop_assert_eq!(&borrowed, &got);
            // The walk by lengths gives every offset, and iterating from where it stood
            // before each step gives that record and the rest.
            let mut walk = batch.offsets(None);
            for (i, g) in got.iter().enumerate() {
                let from_here: Vec<LogRecord> = batch
                    .iter_at(walk.cursor())
                    .map(|r| r.map(|r| r.to_log_record()))
                    .collect::<Result<_>>()
                    .unwrap();
                prop_assert_eq!(&from_here[..], &got[i..]);
                prop_assert_eq!(walk.next().map(Result::unwrap), Some(g.offset));
            }
            prop_assert!(walk.next().is_none());
            for (r, g) in batch.iter().zip(&got) {
                let r = r.unwrap();
                prop_assert_eq!((r.offset(), r.timestamp()), (g.offset, g.timestamp));
                prop_assert_eq!(r.key(), g.key.as_deref());
                prop_assert_eq!(r.value(), g.value.as_deref());
                let headers: Vec<(&str, &[u8])> =
                    g.headers.iter().map(|h| (h.name.as_str(), h.value.as_ref())).collect();
                prop_assert_eq!(r.headers().collect::<Vec<_>>(), headers);
            }
            for (i, (g, r)) in got.iter().zip(records).enumerate() {
                prop_assert_eq!(g.offset, 3 + i as u64);
                prop_assert_eq!(g.timestamp, r.timestamp.unwrap());
                prop_assert_eq!(&g.key, &r.key);
                prop_assert_eq!(&g.value, &r.value);
                prop_assert_eq!(&g.headers, &r.headers);
            }
        }
        Ok(())
    }
}
