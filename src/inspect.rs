//! Offline inspection of the files of a data directory (what `brooklet dump-log` and
//! `brooklet verify` print): every batch of a segment file with its checksum status, and a
//! check of every segment and index of a directory. Reads only; never writes or locks.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::record::batch::{self, BatchHeader, DecodeError, MAX_BATCH_BYTES};
use crate::record::{Compression, RecordBatch};
use crate::storage::index::SegmentIndex;
use crate::storage::io::OsFs;
use crate::storage::segment::{INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, parse_segment_name, segment_path};

/// One batch of a segment file, from [`dump_segment`].
#[derive(Debug, Clone)]
pub struct BatchInfo {
    /// Byte position of the batch in the file.
    pub position: u64,
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// Records it holds.
    pub record_count: u32,
    /// Timestamp of its first record (`None` if the batch could not be decoded).
    pub first_timestamp: Option<i64>,
    /// Largest timestamp in it.
    pub max_timestamp: i64,
    /// Its codec (`None` if the batch could not be decoded).
    pub compression: Option<Compression>,
    /// Size as stored, in bytes.
    pub size_bytes: usize,
    /// Whether its CRC-32 matches.
    pub crc_ok: bool,
    /// What is wrong with it, if anything: a bad checksum, records that do not parse, or a
    /// base offset that does not continue the previous batch.
    pub problem: Option<String>,
    /// The decoded batch, for printing its records (`None` if it could not be decoded).
    pub batch: Option<RecordBatch>,
}

/// Every batch of one segment file, from [`dump_segment`].
#[derive(Debug, Clone)]
pub struct SegmentDump {
    /// The file.
    pub path: PathBuf,
    /// The base offset in its name, if it is named as a segment.
    pub base_offset: Option<u64>,
    /// Its length in bytes.
    pub file_len: u64,
    /// The batches that could be framed, in file order.
    pub batches: Vec<BatchInfo>,
    /// Where and why the walk stopped before the end of the file (a torn tail, or bytes that
    /// do not frame a batch).
    pub stopped: Option<(u64, String)>,
    /// How many bytes of zeros end the file after its last batch (then `stopped` is
    /// `None`): space a writer with mapped writes
    /// ([`LogConfig::mapped_writes`](crate::LogConfig::mapped_writes)) allocated ahead of
    /// its writes, in the active segment of a log being written or not closed since. The
    /// next open cuts them. Not damage in the last segment; [`verify_partition`] reports
    /// them in any other.
    pub zero_tail: u64,
}

impl SegmentDump {
    /// Whether every byte of the file is a valid batch with contiguous offsets.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.stopped.is_none() && self.batches.iter().all(|b| b.problem.is_none())
    }

    /// The offset after the last framed batch (the base offset for an empty file).
    #[must_use]
    pub fn next_offset(&self) -> Option<u64> {
        self.batches
            .last()
            .map(|b| b.last_offset.saturating_add(1))
            .or(self.base_offset)
    }
}

/// Reads a segment (`.log`) file and describes each batch: offsets, record count,
/// timestamps, codec, size, and whether its checksum and records are valid. A batch with a
/// bad checksum is reported and the walk goes on (its length still frames the next one);
/// bytes that do not frame a batch stop it ([`SegmentDump::stopped`]).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read.
///
/// # Examples
/// ```
/// use brooklet::{Durability, LogConfig, PartitionLog, Record};
/// let dir = tempfile::tempdir()?;
/// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
/// log.append(&[Record::new().value("a"), Record::new().value("b")], Durability::Written)?;
/// let dump = brooklet::inspect::dump_segment(&dir.path().join("00000000000000000000.log"))?;
/// assert!(dump.is_ok());
/// assert_eq!((dump.batches[0].base_offset, dump.batches[0].record_count), (0, 2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn dump_segment(path: &Path) -> Result<SegmentDump> {
    let bytes = Bytes::from(std::fs::read(path).map_err(|e| Error::io("read segment", path, e))?);
    let base_offset = parse_segment_name(path, LOG_SUFFIX);
    let mut dump = SegmentDump {
        path: path.to_path_buf(),
        base_offset,
        file_len: bytes.len() as u64,
        batches: Vec::new(),
        stopped: None,
        zero_tail: 0,
    };
    let mut pos = 0usize;
    let mut expected = base_offset;
    while pos < bytes.len() {
        let rest = bytes.slice(pos..);
        if rest.iter().all(|&b| b == 0) {
            dump.zero_tail = rest.len() as u64;
            break;
        }
        let header = match BatchHeader::parse(&rest) {
            Ok(h) if h.size <= rest.len() => h,
            Ok(h) => {
                dump.stopped = Some((
                    pos as u64,
                    format!("torn write: {} bytes remain, the batch needs {}", rest.len(), h.size),
                ));
                break;
            }
            Err(DecodeError::Torn { .. }) => {
                dump.stopped = Some((
                    pos as u64,
                    format!("torn write: {} bytes remain, too few for a batch header", rest.len()),
                ));
                break;
            }
            Err(DecodeError::Corrupt(reason)) => {
                dump.stopped = Some((pos as u64, reason));
                break;
            }
        };
        let whole = rest.slice(..header.size);
        let crc = batch::check_crc(&whole);
        let decoded = RecordBatch::decode(&whole, MAX_BATCH_BYTES, false);
        let mut problem = match (&crc, &decoded) {
            (Err(e), _) | (Ok(()), Err(e)) => Some(reason(e.clone())),
            (Ok(()), Ok(b)) => b.validate_records().err().map(reason),
        };
        if problem.is_none()
            && let Some(exp) = expected
            && header.base_offset != exp
        {
            problem = Some(format!("base offset {}, expected {exp}", header.base_offset));
        }
        let batch = decoded.ok();
        dump.batches.push(BatchInfo {
            position: pos as u64,
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            record_count: header.record_count,
            first_timestamp: batch.as_ref().map(RecordBatch::first_timestamp),
            max_timestamp: header.max_timestamp,
            compression: batch.as_ref().and_then(RecordBatch::compression),
            size_bytes: header.size,
            crc_ok: crc.is_ok(),
            problem,
            batch,
        });
        expected = Some(header.next_offset());
        pos += header.size;
    }
    Ok(dump)
}

fn reason(e: DecodeError) -> String {
    match e {
        DecodeError::Corrupt(reason) => reason,
        DecodeError::Torn { .. } => "torn write: the batch is incomplete".into(),
    }
}

/// One damaged file found by [`verify_partition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// Byte position of the damage, when it has one.
    pub position: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// What [`verify_partition`] found in one partition directory.
#[derive(Debug, Clone, Default)]
pub struct PartitionCheck {
    /// Segment files checked.
    pub segments: usize,
    /// Index files checked (offset and time indexes).
    pub indexes: usize,
    /// Batches whose checksum and records were checked.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes of segment files read, less the zeros past a mapped writer's last batch
    /// ([`SegmentDump::zero_tail`]).
    pub bytes: u64,
    /// Every damaged file (empty when all is well).
    pub damage: Vec<Damage>,
}

/// The segment (`.log`) files of a partition directory, sorted by base offset.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be listed.
pub fn segment_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_segment_name(&e.path(), LOG_SUFFIX))
        .collect();
    bases.sort_unstable();
    Ok(bases.into_iter().map(|b| segment_path(dir, b, LOG_SUFFIX)).collect())
}

/// Checks every segment of a partition directory — each batch's framing, checksum, records
/// and offsets, contiguous across segments — and every index file present against the
/// batches it points at. A missing index file is not damage (open rebuilds it), nor is a
/// valid one that describes another extent of the log (an older version, which open also
/// rebuilds); an invalid one is. A segment file that cannot be read is damage too, and the
/// check goes on with the next one. `on_segment` is called after each segment with its size
/// in bytes (for progress).
///
/// # Errors
/// [`Error::Io`] if the directory cannot be listed.
pub fn verify_partition(dir: &Path, on_segment: &mut dyn FnMut(&Path, u64)) -> Result<PartitionCheck> {
    let mut check = PartitionCheck::default();
    let mut expected: Option<u64> = None;
    let files = segment_files(dir)?;
    let last = files.len().saturating_sub(1);
    for (i, path) in files.into_iter().enumerate() {
        check.segments += 1;
        let dump = match dump_segment(&path) {
            Ok(dump) => dump,
            // A file that cannot be read (EIO from a bad sector, a permission) is damage to
            // report beside the rest, not a reason to stop checking.
            Err(Error::Io { source, .. }) => {
                check.damage.push(Damage {
                    path: path.clone(),
                    position: None,
                    reason: format!("cannot be read: {source}"),
                });
                expected = None;
                on_segment(&path, std::fs::metadata(&path).map_or(0, |m| m.len()));
                continue;
            }
            Err(e) => return Err(e),
        };
        // The zeros a mapped writer allocated ahead are not data.
        check.bytes += dump.file_len - dump.zero_tail;
        check.batches += dump.batches.len() as u64;
        check.records += dump.batches.iter().map(|b| u64::from(b.record_count)).sum::<u64>();
        if let (Some(exp), Some(base)) = (expected, dump.base_offset)
            && exp != base
        {
            check.damage.push(Damage {
                path: path.clone(),
                position: Some(0),
                reason: format!("segment starts at offset {base}, the previous one ends at {exp}"),
            });
        }
        for b in &dump.batches {
            if let Some(problem) = &b.problem {
                check.damage.push(Damage {
                    path: path.clone(),
                    position: Some(b.position),
                    reason: format!("batch at offset {}: {problem}", b.base_offset),
                });
            }
        }
        if let Some((position, reason)) = &dump.stopped {
            check.damage.push(Damage {
                path: path.clone(),
                position: Some(*position),
                reason: reason.clone(),
            });
        }
        if dump.zero_tail > 0 && i != last {
            // A sealed segment ends at its last batch: an open would cut the zeros and every
            // segment after them.
            check.damage.push(Damage {
                path: path.clone(),
                position: Some(dump.file_len - dump.zero_tail),
                reason: format!(
                    "{} bytes of zeros after the last batch of a segment that is not the last",
                    dump.zero_tail
                ),
            });
        }
        check_indexes(&dump, &mut check);
        expected = dump.next_offset();
        on_segment(&path, dump.file_len);
    }
    Ok(check)
}

/// Checks a segment's index files, if present, against its batches.
fn check_indexes(dump: &SegmentDump, check: &mut PartitionCheck) {
    let Some(base) = dump.base_offset else { return };
    let (index_path, time_path) = (
        dump.path.with_extension(INDEX_SUFFIX),
        dump.path.with_extension(TIME_INDEX_SUFFIX),
    );
    let present = [&index_path, &time_path].iter().filter(|p| p.exists()).count();
    check.indexes += present;
    if present == 0 {
        return;
    }
    let mut damage = |path: &Path, reason: String| {
        check.damage.push(Damage {
            path: path.to_path_buf(),
            position: None,
            reason,
        });
    };
    if present == 1 {
        let missing = if index_path.exists() { &time_path } else { &index_path };
        damage(
            missing,
            "index file missing while its pair exists (open rebuilds both)".into(),
        );
        return;
    }
    // Far above any index a segment can have (the default limit is 10 MiB).
    let loaded = SegmentIndex::load_files_recorded(&OsFs, &index_path, &time_path, 1 << 30);
    let index = match loaded {
        Ok(Some((extent, index))) => {
            if extent.log_len != dump.file_len || Some(extent.next_offset) != dump.next_offset() {
                // Files of an older extent of the log: the active segment's of a running (or
                // crashed) log, or a sealed one's reverted by a power loss. Open rebuilds
                // them; they are not damage.
                return;
            }
            index
        }
        Ok(None) => {
            damage(&index_path, "invalid index files (open rebuilds them)".into());
            return;
        }
        Err(e) => {
            damage(&index_path, format!("unreadable index files: {e}"));
            return;
        }
    };
    for entry in &index.offsets {
        // The batches are in file order: a binary search (a linear one per entry made a
        // segment of many small batches take minutes).
        let at = dump
            .batches
            .binary_search_by_key(&u64::from(entry.position), |b| b.position)
            .ok()
            .and_then(|i| dump.batches.get(i));
        let want = base.saturating_add(u64::from(entry.relative_offset));
        if at.is_none_or(|b| b.base_offset != want) {
            damage(
                &index_path,
                format!(
                    "entry for offset {want} points at byte {}, where no batch with that offset starts (open rebuilds it)",
                    entry.position
                ),
            );
            return;
        }
    }
    let end = dump.next_offset().unwrap_or(base);
    if let Some(t) = index
        .times
        .iter()
        .find(|t| base.saturating_add(u64::from(t.relative_offset)) >= end.max(base.saturating_add(1)))
    {
        damage(
            &time_path,
            format!(
                "entry names offset {}, past the segment's end {end}",
                base.saturating_add(u64::from(t.relative_offset))
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, LogConfig, PartitionLog, Record};

    /// A segment of many small batches (one record each, as `Producer::send` writes them)
    /// with an index entry at every batch: verify finds every entry's batch. (Each entry's
    /// batch is found by a binary search; a linear search per entry took minutes for one
    /// full segment of small batches. That is a cost, measured by hand, not asserted here.)
    #[test]
    fn verify_checks_every_index_entry_of_a_segment_of_many_small_batches() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default().index_interval_bytes(1);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let batches = 40_000u64;
        for i in 0..batches {
            log.append(&[Record::new().value(format!("v{i}"))], Durability::Buffered)
                .unwrap();
        }
        // Roll, so that the segment is sealed with its index files written.
        let log = {
            log.close().unwrap();
            PartitionLog::open(dir.path(), config.segment_bytes(4096)).unwrap()
        };
        log.append(&[Record::new().value("last")], Durability::Written).unwrap();
        log.close().unwrap();
        let segment = segment_path(dir.path(), 0, LOG_SUFFIX);
        let dump = dump_segment(&segment).unwrap();
        assert_eq!(dump.batches.len() as u64, batches);
        let check = verify_partition(dir.path(), &mut |_, _| {}).unwrap();
        assert_eq!(check.damage, Vec::new());
        assert_eq!((check.segments, check.indexes, check.batches), (2, 4, batches + 1));
    }
}
