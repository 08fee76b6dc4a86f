//! The sparse offset index (`.index`) and time index (`.timeindex`) of a segment.
//!
//! Both live in memory as sorted vectors and are written to their files when a segment is
//! sealed and at clean shutdown; a sealed segment's are loaded when first used and may be
//! unloaded again (see `LOADED_SEALED_INDEXES` in the log). Like Kafka's, they are caches of what the `.log` says and are
//! rebuilt from it when missing or invalid (and always after an unclean shutdown, for the
//! segments recovery scans). Unlike Kafka's, each file carries its entry count and a CRC, so
//! a torn or truncated file (a sealed segment's index is written without fsync) is detected
//! and rebuilt instead of silently answering from a prefix. Each file also records the
//! extent of the `.log` it describes — its exact length and the offset after its last
//! record — and is refused unless that matches the segment as it is: a power loss can
//! revert an index file rewritten without fsync to an older version that is well-formed
//! but describes less of the log (say, without the segment's newest record, whose timestamp
//! retention and time lookups need).
//!
//! # File formats
//! ```text
//! .index                                   .timeindex
//! pos size field                           pos size field
//!   0   4  magic b"BRKI"                     0   4  magic b"BRKT"
//!   4   2  version u16 = 2                   4   2  version u16 = 2
//!   6   2  reserved, 0                       6   2  reserved, 0
//!   8   4  CRC-32 of bytes 12..end           8   4  CRC-32 of bytes 12..end
//!  12   8  .log length u64                  12   8  .log length u64
//!  20   8  next offset u64                  20   8  next offset u64
//!  28   4  entry count u32                  28   4  entry count u32
//!  32   …  entries, 8 bytes each:           32   …  entries, 12 bytes each:
//!          relative offset u32                      max timestamp so far i64
//!          byte position   u32                      relative offset of that timestamp u32
//! ```
//! Little-endian. The `.log` length is the size in bytes of the segment's `.log` the
//! entries were taken from, and the next offset the offset after its last record (the
//! segment's base offset when it is empty). An offset entry `(r, p)` says a batch with
//! base offset `base + r` starts at byte `p` of the `.log`. A time entry `(t, r)` says
//! every record at offsets `≤ base + r` has a timestamp `≤ t`. Entries are strictly
//! increasing in both fields.
//!
//! Version 1 (a 16-byte header without the extent) is not read: such a file is refused and
//! rebuilt from the log, as any invalid one.

use super::io::{OpenMode, Vfs};
use crate::bytes_le::{le_u16, le_u32, le_u64};
use crate::error::{Error, Result};
use std::io;
use std::path::Path;

const OFFSET_MAGIC: &[u8; 4] = b"BRKI";
const TIME_MAGIC: &[u8; 4] = b"BRKT";
const VERSION: u16 = 2;
const FILE_HEADER: usize = 32;
/// Position of the CRC in the header, and of the first byte it covers.
const CRC_AT: usize = 8;
const CRC_START: usize = 12;
/// Size of one `.index` entry.
pub(crate) const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// One `.index` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One `.timeindex` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// What an index file describes: the extent of its segment's `.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// Exact size of the `.log` in bytes.
    pub log_len: u64,
    /// The offset after the last record of the `.log`.
    pub next_offset: u64,
}

/// The in-memory indexes of one segment, and the running state that decides when the next
/// entry is due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Largest timestamp in the segment, `i64::MIN` when empty.
    pub max_timestamp: i64,
    /// Relative offset of the record holding `max_timestamp`.
    pub max_timestamp_relative: u32,
    bytes_since_entry: u64,
}

impl SegmentIndex {
    pub fn new() -> Self {
        SegmentIndex {
            max_timestamp: i64::MIN,
            ..SegmentIndex::default()
        }
    }

    /// Records a batch appended at `position`; adds index entries when `interval` bytes have
    /// passed since the last one (as Kafka's `index.interval.bytes`).
    pub fn on_batch(
        &mut self,
        relative_base: u32,
        position: u32,
        size: u64,
        max_ts: i64,
        max_ts_relative: u32,
        interval: u32,
    ) {
        if max_ts > self.max_timestamp {
            self.max_timestamp = max_ts;
            self.max_timestamp_relative = max_ts_relative;
        }
        if self.bytes_since_entry >= u64::from(interval) {
            self.offsets.push(OffsetEntry {
                relative_offset: relative_base,
                position,
            });
            self.bytes_since_entry = 0;
            self.add_time_entry();
        }
        self.bytes_since_entry += size;
    }

    /// Adds a time entry for the segment's max timestamp so far, if it grew since the last
    /// one. Called on entry boundaries and when the segment is sealed or closed, so that the
    /// last time entry always carries the segment's largest timestamp after a clean close.
    pub fn add_time_entry(&mut self) {
        let grew = self.times.last().is_none_or(|t| self.max_timestamp > t.timestamp);
        let forward = self
            .times
            .last()
            .is_none_or(|t| self.max_timestamp_relative >= t.relative_offset);
        if self.max_timestamp != i64::MIN && grew && forward {
            self.times.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.max_timestamp_relative,
            });
        }
    }

    /// Where to start scanning for `relative_offset`: the last indexed batch at or before it,
    /// or the segment start (relative offset 0 at position 0).
    pub fn lookup(&self, relative_offset: u32) -> OffsetEntry {
        let i = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1)
            .and_then(|i| self.offsets.get(i))
            .copied()
            .unwrap_or(OffsetEntry {
                relative_offset: 0,
                position: 0,
            })
    }

    /// Relative offset from which a search for the first timestamp `≥ timestamp` must scan:
    /// every record at or before the returned offset is older. `None`: scan from the start.
    pub fn time_lookup(&self, timestamp: i64) -> Option<u32> {
        let i = self.times.partition_point(|e| e.timestamp < timestamp);
        i.checked_sub(1)
            .and_then(|i| self.times.get(i))
            .map(|e| e.relative_offset)
    }

    pub fn is_full(&self, max_entries: usize) -> bool {
        self.offsets.len() >= max_entries
    }

    /// Writes both index files of a segment whose `.log` has `extent`, `fdatasync`'d when
    /// `sync` (at clean shutdown, which then trusts them; elsewhere they are caches,
    /// validated and rebuilt if lost).
    pub fn write_files(
        &self,
        vfs: &dyn Vfs,
        index_path: &Path,
        time_path: &Path,
        extent: Extent,
        sync: bool,
    ) -> Result<()> {
        let (offsets, times) = self.encode(extent);
        write_file(vfs, index_path, &offsets, sync)?;
        write_file(vfs, time_path, &times, sync)
    }

    /// The bytes of the `.index` and `.timeindex` files of these entries, describing a
    /// `.log` of `extent`.
    pub fn encode(&self, extent: Extent) -> (Vec<u8>, Vec<u8>) {
        let mut entries = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY);
        for e in &self.offsets {
            entries.extend_from_slice(&e.relative_offset.to_le_bytes());
            entries.extend_from_slice(&e.position.to_le_bytes());
        }
        let offsets = framed(OFFSET_MAGIC, extent, self.offsets.len(), &entries);
        entries.clear();
        for e in &self.times {
            entries.extend_from_slice(&e.timestamp.to_le_bytes());
            entries.extend_from_slice(&e.relative_offset.to_le_bytes());
        }
        (offsets, framed(TIME_MAGIC, extent, self.times.len(), &entries))
    }

    /// Loads both index files of a segment whose `.log` is `log_len` bytes and, when known,
    /// ends before `next_offset`, checking their structure and that they describe exactly
    /// that `.log`. `Ok(None)` when either is missing or invalid: rebuild from the log.
    pub fn load_files(
        vfs: &dyn Vfs,
        index_path: &Path,
        time_path: &Path,
        log_len: u64,
        next_offset: Option<u64>,
        max_bytes: u64,
    ) -> Result<Option<Self>> {
        let (Some(raw_offsets), Some(raw_times)) = (
            read_file(vfs, index_path, max_bytes)?,
            read_file(vfs, time_path, max_bytes)?,
        ) else {
            return Ok(None);
        };
        Ok(Self::decode(&raw_offsets, &raw_times, log_len, next_offset))
    }

    /// Loads both index files as [`decode_recorded`](Self::decode_recorded) decodes them:
    /// `Ok(None)` when either is missing or invalid.
    pub fn load_files_recorded(
        vfs: &dyn Vfs,
        index_path: &Path,
        time_path: &Path,
        max_bytes: u64,
    ) -> Result<Option<(Extent, Self)>> {
        let (Some(raw_offsets), Some(raw_times)) = (
            read_file(vfs, index_path, max_bytes)?,
            read_file(vfs, time_path, max_bytes)?,
        ) else {
            return Ok(None);
        };
        Ok(Self::decode_recorded(&raw_offsets, &raw_times))
    }

    /// Decodes the bytes of a segment's `.index` and `.timeindex` files (the segment's
    /// `.log` being `log_len` bytes and, when known, ending before `next_offset`), checking
    /// their structure: `None` when either is invalid or describes another extent of the
    /// `.log` (an older version of the file). Entries that are returned are strictly
    /// increasing (the time index's relative offsets non-decreasing) and point inside the log.
    pub fn decode(raw_offsets: &[u8], raw_times: &[u8], log_len: u64, next_offset: Option<u64>) -> Option<Self> {
        let (extent, index) = Self::decode_recorded(raw_offsets, raw_times)?;
        let describes_the_log = extent.log_len == log_len && next_offset.is_none_or(|next| extent.next_offset == next);
        describes_the_log.then_some(index)
    }

    /// Decodes index files as [`decode`](Self::decode) does, for whatever extent of the
    /// `.log` they record (both must record the same): that extent and the entries, which
    /// point inside it. For tools that tell a stale index (another extent) from a damaged one.
    pub fn decode_recorded(raw_offsets: &[u8], raw_times: &[u8]) -> Option<(Extent, Self)> {
        let (extent, offset_body) = body(raw_offsets, OFFSET_MAGIC, OFFSET_ENTRY)?;
        let (time_extent, time_body) = body(raw_times, TIME_MAGIC, TIME_ENTRY)?;
        if extent != time_extent {
            return None;
        }
        let log_len = extent.log_len;
        let offsets: Vec<OffsetEntry> = offset_body
            .chunks_exact(OFFSET_ENTRY)
            .map(|c| OffsetEntry {
                relative_offset: le_u32(c, 0),
                position: le_u32(c, 4),
            })
            .collect();
        let times: Vec<TimeEntry> = time_body
            .chunks_exact(TIME_ENTRY)
            .map(|c| TimeEntry {
                timestamp: le_u64(c, 0) as i64,
                relative_offset: le_u32(c, 8),
            })
            .collect();
        let offsets_ok = offsets
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.relative_offset < b.relative_offset && a.position < b.position))
            && offsets.last().is_none_or(|e| u64::from(e.position) < log_len);
        let times_ok = times
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.timestamp < b.timestamp && a.relative_offset <= b.relative_offset));
        if !offsets_ok || !times_ok {
            return None;
        }
        let (max_timestamp, max_timestamp_relative) =
            times.last().map_or((i64::MIN, 0), |t| (t.timestamp, t.relative_offset));
        let index = SegmentIndex {
            offsets,
            times,
            max_timestamp,
            max_timestamp_relative,
            bytes_since_entry: 0,
        };
        Some((extent, index))
    }

    /// Sets the bytes counted since the last entry, after loading an index whose segment
    /// continues to be appended to.
    pub fn set_bytes_since_entry(&mut self, bytes: u64) {
        self.bytes_since_entry = bytes;
    }
}

/// An index file's bytes: the header (magic, version, CRC, extent, count) then `entries`.
fn framed(magic: &[u8; 4], extent: Extent, count: usize, entries: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(FILE_HEADER + entries.len());
    buf.extend_from_slice(magic);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes()); // the CRC, below
    buf.extend_from_slice(&extent.log_len.to_le_bytes());
    buf.extend_from_slice(&extent.next_offset.to_le_bytes());
    buf.extend_from_slice(&(count as u32).to_le_bytes());
    buf.extend_from_slice(entries);
    let crc = crc32fast::hash(buf.get(CRC_START..).unwrap_or_default());
    if let Some(slot) = buf.get_mut(CRC_AT..CRC_START) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    buf
}

/// The extent and entries of an index file, if its header is valid (version 2, reserved
/// bytes zero, as the checkpoint file's), its length matches the entry count, and the CRC
/// matches the bytes after it.
fn body<'a>(raw: &'a [u8], magic: &[u8; 4], entry: usize) -> Option<(Extent, &'a [u8])> {
    let (head, body) = raw.split_at_checked(FILE_HEADER)?;
    let count = le_u32(head, 28) as usize;
    let ok = head.get(..4) == Some(magic.as_slice())
        && le_u16(head, 4) == VERSION
        && le_u16(head, 6) == 0
        && count.checked_mul(entry) == Some(body.len())
        && raw
            .get(CRC_START..)
            .is_some_and(|covered| crc32fast::hash(covered) == le_u32(head, CRC_AT));
    let extent = Extent {
        log_len: le_u64(head, 12),
        next_offset: le_u64(head, 20),
    };
    ok.then_some((extent, body))
}

/// Reads a whole index file; `None` if it is missing or larger than `max_bytes` (the
/// configured `index_max_bytes` plus room for the time index's wider entries), which a valid
/// one never is, or if it ends before the length taken first (another process, a writer
/// recovering or rebuilding it, truncated it to rewrite it): the caller rebuilds from the
/// log, as for any invalid file, instead of failing the read.
fn read_file(vfs: &dyn Vfs, path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>> {
    let file = match vfs.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open index", path, e)),
    };
    let len = file.file_size().map_err(|e| Error::io("read index", path, e))?;
    if len > FILE_HEADER as u64 + max_bytes / OFFSET_ENTRY as u64 * TIME_ENTRY as u64 {
        return Ok(None);
    }
    let mut buf = vec![0; len as usize];
    match file.read_exact_at(&mut buf, 0) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io("read index", path, e)),
    }
}

fn write_file(vfs: &dyn Vfs, path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let file = vfs
        .open(path, OpenMode::Truncate)
        .map_err(|e| Error::io("create index", path, e))?;
    file.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write index", path, e))?;
    if sync {
        file.sync_data().map_err(|e| Error::io("sync index", path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::{OsFs, VfsFile};
    use std::path::PathBuf;

    fn sample() -> SegmentIndex {
        let mut idx = SegmentIndex::new();
        // 10 batches of 1000 bytes, 10 records each, timestamps rising by 10 per batch.
        for b in 0..10u32 {
            idx.on_batch(b * 10, b * 1000, 1000, 100 + i64::from(b) * 10, b * 10 + 9, 2500);
        }
        idx
    }

    #[test]
    fn entries_every_interval_and_lookups() {
        let idx = sample();
        // bytes_since reaches 3000 ≥ 2500 before batches 3, 6 and 9.
        assert_eq!(
            idx.offsets,
            vec![
                OffsetEntry {
                    relative_offset: 30,
                    position: 3000
                },
                OffsetEntry {
                    relative_offset: 60,
                    position: 6000
                },
                OffsetEntry {
                    relative_offset: 90,
                    position: 9000
                },
            ]
        );
        assert_eq!(idx.lookup(0).position, 0);
        assert_eq!(idx.lookup(29).position, 0);
        assert_eq!(
            idx.lookup(30),
            OffsetEntry {
                relative_offset: 30,
                position: 3000
            }
        );
        assert_eq!(idx.lookup(75).position, 6000);
        assert_eq!(idx.lookup(u32::MAX).position, 9000);
        assert_eq!(idx.max_timestamp, 190);
        assert_eq!(idx.time_lookup(100), None);
        assert_eq!(idx.time_lookup(131), Some(39));
        assert_eq!(idx.time_lookup(1_000), Some(99));
    }

    #[test]
    fn files_round_trip_and_garbage_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", ".", e))?;
        let (ip, tp) = (dir.path().join("0.index"), dir.path().join("0.timeindex"));
        let extent = Extent {
            log_len: 10_000,
            next_offset: 100,
        };
        let load = |log_len, next| SegmentIndex::load_files(&OsFs, &ip, &tp, log_len, next, 1 << 20);
        assert_eq!(load(10_000, Some(100))?, None);
        let mut idx = sample();
        idx.add_time_entry();
        idx.write_files(&OsFs, &ip, &tp, extent, true)?;
        let loaded = load(10_000, Some(100))?.ok_or(Error::InvalidArgument { reason: "none".into() })?;
        assert_eq!(loaded.offsets, idx.offsets);
        assert_eq!(loaded.times, idx.times);
        assert_eq!(loaded.max_timestamp, 190);
        assert_eq!(load(10_000, None)?, Some(loaded));
        // Files that describe another extent of the log (an older version) are refused.
        assert_eq!(load(10_001, Some(100))?, None);
        assert_eq!(load(9_999, None)?, None);
        assert_eq!(load(10_000, Some(101))?, None);
        // An entry pointing past the log is invalid.
        idx.write_files(
            &OsFs,
            &ip,
            &tp,
            Extent {
                log_len: 9_000,
                ..extent
            },
            true,
        )?;
        assert_eq!(load(9_000, None)?, None);
        // The two files must describe the same extent.
        idx.write_files(&OsFs, &ip, &tp, extent, true)?;
        let (_, other_time) = idx.encode(Extent {
            next_offset: 99,
            ..extent
        });
        std::fs::write(&tp, other_time).map_err(|e| Error::io("w", &tp, e))?;
        assert_eq!(load(10_000, None)?, None);
        std::fs::write(&ip, b"BRKI\x02\x00\x00\x00garbage").map_err(|e| Error::io("w", &ip, e))?;
        assert_eq!(load(10_000, Some(100))?, None);
        // A torn time index (a valid prefix of entries) fails its count and CRC.
        idx.write_files(&OsFs, &ip, &tp, extent, true)?;
        let full = std::fs::read(&tp).map_err(|e| Error::io("r", &tp, e))?;
        for len in 0..full.len() {
            std::fs::write(&tp, &full[..len]).map_err(|e| Error::io("w", &tp, e))?;
            assert_eq!(load(10_000, Some(100))?, None, "cut at {len}");
        }
        Ok(())
    }

    /// The OS file system, except that a file opened for reading is cut to nothing right
    /// after its length is taken: as another process rewriting the index files (with
    /// `OpenMode::Truncate`) does between a reader's `stat` and its read.
    #[derive(Debug)]
    struct CutAfterStat;

    #[derive(Debug)]
    struct CutFile(Box<dyn VfsFile>, PathBuf);

    impl VfsFile for CutFile {
        fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
            self.0.read_at(buf, pos)
        }
        fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
            self.0.write_all_at(buf, pos)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
        fn file_size(&self) -> io::Result<u64> {
            let len = self.0.file_size()?;
            std::fs::OpenOptions::new().write(true).open(&self.1)?.set_len(0)?;
            Ok(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
    }

    impl Vfs for CutAfterStat {
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
            let file = OsFs.open(path, mode)?;
            Ok(match mode {
                OpenMode::Read => Box::new(CutFile(file, path.to_path_buf())),
                _ => file,
            })
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            OsFs.create_dir_all(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
            OsFs.read_dir(path)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            OsFs.remove_file(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            OsFs.rename(from, to)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            OsFs.sync_dir(path)
        }
    }

    /// Index files are caches: one that gets shorter while it is read (rewritten by another
    /// process: a writer recovering or rebuilding it while a read-only log loads it) is
    /// rebuilt from the log like any invalid one, not an I/O error failing the read.
    #[test]
    fn an_index_file_cut_while_it_is_read_is_rebuilt() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", ".", e))?;
        let (ip, tp) = (dir.path().join("0.index"), dir.path().join("0.timeindex"));
        let extent = Extent {
            log_len: 10_000,
            next_offset: 100,
        };
        let idx = sample();
        idx.write_files(&OsFs, &ip, &tp, extent, false)?;
        let loaded = SegmentIndex::load_files(&CutAfterStat, &ip, &tp, 10_000, Some(100), 1 << 20)?;
        assert_eq!(loaded, None);
        idx.write_files(&OsFs, &ip, &tp, extent, false)?;
        let recorded = SegmentIndex::load_files_recorded(&CutAfterStat, &ip, &tp, 1 << 20)?;
        assert_eq!(recorded, None);
        Ok(())
    }

    #[test]
    fn version_1_files_are_refused() {
        let idx = sample();
        let extent = Extent {
            log_len: 10_000,
            next_offset: 100,
        };
        let (offsets, times) = idx.encode(extent);
        // The version-1 layout of the same entries: 16-byte header, CRC of the entries.
        let v1 = |magic: &[u8], body: &[u8], count: usize| {
            let mut f = magic.to_vec();
            f.extend_from_slice(&1u16.to_le_bytes());
            f.extend_from_slice(&0u16.to_le_bytes());
            f.extend_from_slice(&(count as u32).to_le_bytes());
            f.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
            f.extend_from_slice(body);
            f
        };
        let old_offsets = v1(OFFSET_MAGIC, &offsets[FILE_HEADER..], idx.offsets.len());
        let old_times = v1(TIME_MAGIC, &times[FILE_HEADER..], idx.times.len());
        assert!(SegmentIndex::decode(&offsets, &times, 10_000, Some(100)).is_some());
        assert_eq!(SegmentIndex::decode(&old_offsets, &old_times, 10_000, None), None);
        assert_eq!(SegmentIndex::decode(&old_offsets, &times, 10_000, None), None);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Whether loaded entries keep the loader's promises.
    fn promises_hold(idx: &SegmentIndex, log_len: u64) -> bool {
        idx.offsets
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
            && idx.offsets.last().is_none_or(|e| u64::from(e.position) < log_len)
            && idx
                .times
                .windows(2)
                .all(|w| w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset)
    }

    /// A valid index: strictly increasing entries below `log_len`.
    fn valid_index() -> impl Strategy<Value = (SegmentIndex, u64)> {
        (
            proptest::collection::btree_set(any::<u32>(), 0..40),
            proptest::collection::btree_set(any::<i64>(), 0..40),
            proptest::collection::vec(any::<u32>(), 40),
            any::<u32>(),
        )
            .prop_map(|(offsets, stamps, positions, extra)| {
                let mut positions: Vec<u32> = positions.into_iter().take(offsets.len()).collect();
                positions.sort_unstable();
                positions.dedup();
                let mut idx = SegmentIndex::new();
                idx.offsets = offsets
                    .iter()
                    .zip(&positions)
                    .map(|(&relative_offset, &position)| OffsetEntry {
                        relative_offset,
                        position,
                    })
                    .collect();
                // Relative offsets of time entries only need to be non-decreasing.
                let mut rel = 0u32;
                idx.times = stamps
                    .iter()
                    .map(|&timestamp| {
                        rel = rel.saturating_add(extra % 3);
                        TimeEntry {
                            timestamp,
                            relative_offset: rel,
                        }
                    })
                    .collect();
                let (max_timestamp, max_timestamp_relative) = idx
                    .times
                    .last()
                    .map_or((i64::MIN, 0), |t| (t.timestamp, t.relative_offset));
                idx.max_timestamp = max_timestamp;
                idx.max_timestamp_relative = max_timestamp_relative;
                let log_len = idx.offsets.last().map_or(0, |e| u64::from(e.position) + 1) + u64::from(extra % 5);
                (idx, log_len)
            })
    }

    proptest! {
        // A fixed seed keeps runs reproducible; failures print the minimal case.
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x1dec_0de5),
            ..ProptestConfig::default()
        })]

        /// Arbitrary bytes, as files or as entries behind a valid header and CRC: never a
        /// panic; refused, or loaded with every promise kept.
        #[test]
        fn random_files_never_panic(
            a in proptest::collection::vec(any::<u8>(), 0..200),
            b in proptest::collection::vec(any::<u8>(), 0..200),
            log_len in any::<u64>(),
        ) {
            if let Some(idx) = SegmentIndex::decode(&a, &b, log_len, None) {
                prop_assert!(promises_hold(&idx, log_len));
            }
            let mut framed = SegmentIndex::new();
            framed.offsets = a
                .chunks_exact(OFFSET_ENTRY)
                .map(|c| OffsetEntry { relative_offset: le_u32(c, 0), position: le_u32(c, 4) })
                .collect();
            framed.times = b
                .chunks_exact(TIME_ENTRY)
                .map(|c| TimeEntry { timestamp: le_u64(c, 0) as i64, relative_offset: le_u32(c, 8) })
                .collect();
            let (oa, tb) = framed.encode(Extent { log_len, next_offset: 0 });
            match SegmentIndex::decode(&oa, &tb, log_len, Some(0)) {
                Some(idx) => {
                    prop_assert!(promises_hold(&idx, log_len));
                    prop_assert_eq!((&idx.offsets, &idx.times), (&framed.offsets, &framed.times));
                }
                None => prop_assert!(!promises_hold(&framed, log_len)),
            }
        }

        /// Valid indexes round-trip through their files; every single-byte change of a file
        /// is refused, the reserved header bytes included.
        #[test]
        fn valid_files_round_trip_and_flips_are_refused(
            (idx, log_len) in valid_index(),
            flip in 1u8..=255,
        ) {
            let extent = Extent { log_len, next_offset: u64::from(flip) };
            let (offsets, times) = idx.encode(extent);
            prop_assert_eq!(SegmentIndex::decode(&offsets, &times, log_len, Some(extent.next_offset)), Some(idx.clone()));
            // Another extent of the log: an older version of the files, refused.
            prop_assert_eq!(SegmentIndex::decode(&offsets, &times, log_len + 1, None), None);
            prop_assert_eq!(SegmentIndex::decode(&offsets, &times, log_len, Some(extent.next_offset + 1)), None);
            for (file, is_offsets) in [(&offsets, true), (&times, false)] {
                for i in 0..file.len() {
                    let mut bad = file.clone();
                    bad[i] ^= flip;
                    let loaded = if is_offsets {
                        SegmentIndex::decode(&bad, &times, log_len, Some(extent.next_offset))
                    } else {
                        SegmentIndex::decode(&offsets, &bad, log_len, Some(extent.next_offset))
                    };
                    prop_assert_eq!(loaded, None, "flip at {} of {}", i, if is_offsets { "offsets" } else { "times" });
                }
                for len in 0..file.len() {
                    let cut = &file[..len];
                    let loaded = if is_offsets {
                        SegmentIndex::decode(cut, &times, log_len, Some(extent.next_offset))
                    } else {
                        SegmentIndex::decode(&offsets, cut, log_len, Some(extent.next_offset))
                    };
                    prop_assert_eq!(loaded, None, "cut at {}", len);
                }
            }
        }
    }
}
