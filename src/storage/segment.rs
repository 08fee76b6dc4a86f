//! A segment: one `.log` file of batches and its two indexes, named by base offset.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::index::{Extent, OFFSET_ENTRY, SegmentIndex};
use super::io::{OpenMode, Vfs, VfsFile};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::record::RecordBatch;
use crate::record::batch::{BatchHeader, DecodeError, HEADER_LEN, MAX_BATCH_BYTES};

/// Extension of a segment's batch file.
pub(crate) const LOG_SUFFIX: &str = "log";
/// Extension of a segment's offset index.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// Extension of a segment's time index.
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `dir/{base:020}.{suffix}`.
pub(crate) fn segment_path(dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// The base offset encoded in a segment file name, if `path` is one with `suffix`.
pub(crate) fn parse_segment_name(path: &Path, suffix: &str) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Where a scan of a segment stopped because the bytes were not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanError {
    pub position: u64,
    pub reason: String,
}

/// The result of walking a segment's batches from the start.
#[derive(Debug)]
pub(crate) struct Scan {
    pub index: SegmentIndex,
    /// Bytes of valid batches from the start of the file.
    pub valid_len: u64,
    /// Offset after the last valid record.
    pub next_offset: u64,
    pub batches: u64,
    pub file_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub error: Option<ScanError>,
}

impl Scan {
    /// The extent of the log the scan's index describes: the valid batches.
    pub fn extent(&self) -> Extent {
        Extent {
            log_len: self.valid_len,
            next_offset: self.next_offset,
        }
    }
}

/// How far [`Segment::scan_into`] got.
#[derive(Debug)]
pub(crate) struct ScanProgress {
    /// File position after the last valid batch.
    pub valid_len: u64,
    /// Offset after the last valid record.
    pub next_offset: u64,
    /// Batches validated by this call.
    pub batches: u64,
    pub file_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub error: Option<ScanError>,
}

/// Whole batches read from a segment.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// File position of the first batch.
    pub position: u64,
    pub batches: Vec<RecordBatch>,
}

/// Bytes read per call while scanning.
const SCAN_CHUNK: usize = 1 << 20;
/// The first read of a scan: each next one doubles, up to [`SCAN_CHUNK`]. A read-only reader
/// rescans the active segment's tail at every refresh, and behind a writer with mapped
/// writes the file goes on in zeros well past the last batch: a small first read keeps
/// from reading a whole chunk of them each time.
const SCAN_FIRST_CHUNK: usize = 16 << 10;

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub log: Box<dyn VfsFile>,
    pub log_path: PathBuf,
    /// Bytes of the `.log` that readers may read: whole batches handed to the OS.
    pub size: AtomicU64,
    /// The indexes; `None` for a sealed segment until first used, and again once
    /// [`unload_index`](Self::unload_index) dropped them.
    index: RwLock<Option<SegmentIndex>>,
    /// Whether the loaded indexes are what the index files on disk hold (loaded from
    /// them, or written to them since): only then may they be dropped, to be loaded
    /// again. Changed under the index lock.
    index_on_disk: AtomicBool,
    /// The segment's largest timestamp, as its indexes said when they were unloaded.
    unloaded_max_timestamp: Mutex<Option<i64>>,
    /// When the indexes were last asked for (a tick of the log's), for dropping the
    /// least recently used.
    last_used: AtomicU64,
    limits: Limits,
    /// Opened by a read-only log: indexes rebuilt from the log stay in memory, never
    /// written back.
    read_only: bool,
    /// Its log was deleted ([`retire`](Self::retire)): its paths may belong to another
    /// segment now, so index files are neither loaded nor written; a missing index is
    /// rebuilt in memory from the open `.log`. Set under the index lock.
    retired: AtomicBool,
}

impl Segment {
    /// Opens (or creates) the segment's `.log`.
    pub fn open(vfs: &dyn Vfs, dir: &Path, base_offset: u64, create: bool, limits: Limits) -> Result<Segment> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let mode = if create {
            OpenMode::Truncate
        } else {
            OpenMode::ReadWriteCreate
        };
        let log = vfs
            .open(&log_path, mode)
            .map_err(|e| Error::io("open segment", &log_path, e))?;
        let size = if create {
            0
        } else {
            log.file_size().map_err(|e| Error::io("stat segment", &log_path, e))?
        };
        Ok(Segment {
            base_offset,
            log,
            log_path,
            size: AtomicU64::new(size),
            index: RwLock::new(None),
            index_on_disk: AtomicBool::new(false),
            unloaded_max_timestamp: Mutex::new(None),
            last_used: AtomicU64::new(0),
            limits,
            read_only: false,
            retired: AtomicBool::new(false),
        })
    }

    /// Opens an existing segment's `.log` for reading only (a read-only log): nothing is
    /// created, and indexes rebuilt from the log are never written. Its readable size starts
    /// at `size` (the caller knows how much of the file is whole batches).
    pub fn open_read_only(vfs: &dyn Vfs, dir: &Path, base_offset: u64, limits: Limits) -> io::Result<Segment> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = vfs.open(&log_path, OpenMode::Read)?;
        let size = log.file_size()?;
        Ok(Segment {
            base_offset,
            log,
            log_path,
            size: AtomicU64::new(size),
            index: RwLock::new(None),
            index_on_disk: AtomicBool::new(false),
            unloaded_max_timestamp: Mutex::new(None),
            last_used: AtomicU64::new(0),
            limits,
            read_only: true,
            retired: AtomicBool::new(false),
        })
    }

    /// Creates a new, empty segment at `base_offset` (replacing any file of that name) with
    /// empty indexes, and makes its name durable.
    pub fn create_empty(vfs: &dyn Vfs, dir: &Path, base_offset: u64, limits: Limits) -> Result<Arc<Segment>> {
        let segment = Segment::open(vfs, dir, base_offset, true, limits)?;
        segment.set_index(SegmentIndex::new());
        vfs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
        Ok(Arc::new(segment))
    }

    pub fn index_path(&self) -> PathBuf {
        self.log_path.with_extension(INDEX_SUFFIX)
    }

    pub fn time_index_path(&self) -> PathBuf {
        self.log_path.with_extension(TIME_INDEX_SUFFIX)
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Installs indexes (for the active segment, and after a scan).
    pub fn set_index(&self, index: SegmentIndex) {
        let mut slot = self.index.write();
        *slot = Some(index);
        self.index_on_disk.store(false, Ordering::Release);
    }

    /// Whether the indexes are in memory.
    pub fn index_loaded(&self) -> bool {
        self.index.read().is_some()
    }

    /// The largest index file of this segment that is read: the configured
    /// `index_max_bytes`, or more for a segment with more batches. A segment's index has at
    /// most one entry per batch (the time index too, whose extra entries clean closes add
    /// each carry a newer batch), so files written under a larger `index_max_bytes`, or grown
    /// by many closes, stay loadable instead of being refused and rebuilt at every open.
    pub fn index_files_max_bytes(&self) -> u64 {
        self.limits
            .index_max_bytes
            .max(self.size() / HEADER_LEN as u64 * OFFSET_ENTRY as u64)
    }

    /// For a read-only log's segment that was its last, indexed in memory as it was
    /// scanned, and is now sealed (the next one begins at `next_offset`): installs its index
    /// files instead, if they describe it and `still_ours` (asked after they were read)
    /// holds, so that they may be unloaded and loaded again. Returns whether it did; files
    /// missing, invalid or unreadable leave the indexes in memory as they are.
    pub fn adopt_index_files(&self, vfs: &dyn Vfs, next_offset: u64, still_ours: impl FnOnce() -> bool) -> bool {
        let mut slot = self.index.write();
        if self.retired.load(Ordering::Acquire) {
            return false;
        }
        let max_bytes = self.index_files_max_bytes();
        match SegmentIndex::load_files(
            vfs,
            &self.index_path(),
            &self.time_index_path(),
            self.size(),
            Some(next_offset),
            max_bytes,
        ) {
            Ok(Some(index)) if still_ours() => {
                *slot = Some(index);
                self.index_on_disk.store(true, Ordering::Release);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(segment = %self.log_path.display(), error = %e, "could not read the index files of a sealed segment");
                false
            }
        }
    }

    /// Whether the indexes are in memory, without waiting: `false` while another thread
    /// holds them for writing (loading, changing or unloading them).
    pub fn index_loaded_now(&self) -> bool {
        self.index.try_read().is_some_and(|slot| slot.is_some())
    }

    /// Records that the loaded indexes were just written to their files whole (a sealed
    /// segment's), so that they may be unloaded. Call right after the write, as long as
    /// nothing changes them again.
    pub fn index_written(&self) {
        let _slot = self.index.write();
        self.index_on_disk.store(true, Ordering::Release);
    }

    /// Notes that the indexes are being used at `tick`.
    pub fn touch_index(&self, tick: u64) {
        self.last_used.store(tick, Ordering::Relaxed);
    }

    /// The tick of the last use of the indexes.
    pub fn index_last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Drops the loaded indexes if their files on disk hold the same (so loading them
    /// again reads those files, not the whole log) and nobody is using them at this
    /// moment; the next use loads them again. Only for a sealed segment: the caller never
    /// passes the active one, whose indexes the writer changes (and which are never on
    /// disk between its appends). Returns whether it dropped them.
    pub fn unload_index(&self) -> bool {
        let Some(mut slot) = self.index.try_write() else {
            return false;
        };
        if !self.index_on_disk.load(Ordering::Acquire) {
            return false;
        }
        match slot.take() {
            Some(index) => {
                *self.unloaded_max_timestamp.lock() = Some(index.max_timestamp);
                self.index_on_disk.store(false, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// The segment's largest timestamp when known without loading its indexes: from the
    /// loaded ones, or as recorded when they were unloaded.
    pub fn known_max_timestamp(&self) -> Option<i64> {
        let slot = self.index.read();
        match &*slot {
            Some(index) => Some(index.max_timestamp),
            None => *self.unloaded_max_timestamp.lock(),
        }
    }

    /// Marks the segment's files as no longer its own (its log was deleted, or the segment
    /// was removed by retention or a truncation, and a new segment may take its paths):
    /// from when this returns, it never loads or writes an index file. Waits for an index
    /// load or rebuild in progress.
    pub fn retire(&self) {
        let _slot = self.index.write();
        self.retired.store(true, Ordering::Release);
    }

    /// Whether index files may be written back: not by a read-only log, nor once retired.
    /// Call with the index lock.
    fn writes_index_files(&self) -> bool {
        !self.read_only && !self.retired.load(Ordering::Acquire)
    }

    /// Mutable access to the loaded index (the writer's, for the active segment).
    pub fn with_index_mut<T>(&self, f: impl FnOnce(&mut SegmentIndex) -> T) -> Option<T> {
        let mut slot = self.index.write();
        self.index_on_disk.store(false, Ordering::Release);
        slot.as_mut().map(f)
    }

    /// The indexes, loading them from their files, or rebuilding them from the log when the
    /// files are missing, invalid, or describe another extent of the log than its current
    /// size and `next_offset` (an older version); rebuilt ones are written back, best
    /// effort. `next_offset` says where the segment ends (the next segment's base offset),
    /// if known; it is asked only when the index is not loaded yet. `still_ours` is asked
    /// after files were loaded by path: `false` (the directory now names another log's, see
    /// [`HeldDir`](super::io::HeldDir)) discards them, and the indexes are rebuilt from this
    /// segment's own open `.log`.
    pub fn index(
        &self,
        vfs: &dyn Vfs,
        next_offset: impl FnOnce() -> Option<u64>,
        still_ours: impl FnOnce() -> bool,
    ) -> Result<MappedRwLockReadGuard<'_, SegmentIndex>> {
        {
            let guard = self.index.read();
            if let Ok(loaded) = RwLockReadGuard::try_map(guard, Option::as_ref) {
                return Ok(loaded);
            }
        }
        let next_offset = next_offset();
        {
            let mut slot = self.index.write();
            if slot.is_none() {
                let (index_path, time_path) = (self.index_path(), self.time_index_path());
                let retired = self.retired.load(Ordering::Acquire);
                let max_bytes = self.index_files_max_bytes();
                let loaded = if retired {
                    None
                } else {
                    SegmentIndex::load_files(vfs, &index_path, &time_path, self.size(), next_offset, max_bytes)?
                };
                // Files of a log that replaced this one at its path are not this segment's,
                // however well they describe it.
                let foreign = loaded.is_some() && !still_ours();
                let (index, on_disk) = match loaded.filter(|_| !foreign) {
                    Some(index) => (index, true),
                    None => {
                        if !retired && !foreign {
                            tracing::warn!(segment = %self.log_path.display(), "rebuilt missing or invalid index files");
                        }
                        self.rebuilt_index(vfs)?
                    }
                };
                *slot = Some(index);
                self.index_on_disk.store(on_disk, Ordering::Release);
            }
            // Read on without letting go of the lock, so that no unload comes in between.
            let guard = RwLockWriteGuard::downgrade(slot);
            RwLockReadGuard::try_map(guard, Option::as_ref)
                .map_err(|_| Error::corrupt(&self.log_path, 0, "segment index missing right after its load"))
        }
    }

    /// Walks every batch from the start of the file, validating framing, checksum, records
    /// and offsets (the first must be the segment's base offset, each next one contiguous),
    /// and rebuilds the indexes on the way. Stops at the first invalid byte.
    pub fn scan(&self) -> Result<Scan> {
        let mut index = SegmentIndex::new();
        let progress = self.scan_into(0, self.base_offset, &mut index)?;
        Ok(Scan {
            index,
            valid_len: progress.valid_len,
            next_offset: progress.next_offset,
            batches: progress.batches,
            file_len: progress.file_len,
            error: progress.error,
        })
    }

    /// Validates the batches from file position `start`, where a batch with base offset
    /// `next_offset` begins, to the end of the file (or the first invalid byte), adding them
    /// to `index`. A read-only log follows a live writer with this: the first invalid byte
    /// may be a batch still being written, so it simply stops there.
    pub fn scan_into(&self, start: u64, next_offset: u64, index: &mut SegmentIndex) -> Result<ScanProgress> {
        let interval = self.limits.index_interval;
        let file_len = self
            .log
            .file_size()
            .map_err(|e| Error::io("stat segment", &self.log_path, e))?;
        let mut scan = ScanProgress {
            valid_len: start,
            next_offset,
            batches: 0,
            file_len,
            error: None,
        };
        let mut buf = Bytes::new();
        let mut buf_start = start;
        let mut chunk = SCAN_FIRST_CHUNK;
        let fail = |scan: &mut ScanProgress, reason: String| {
            scan.error = Some(ScanError {
                position: scan.valid_len,
                reason,
            });
        };
        while scan.valid_len < file_len {
            let pos = scan.valid_len;
            let at = (pos - buf_start) as usize;
            let parsed = buf.get(at..).map(BatchHeader::parse);
            let header = match parsed {
                Some(Ok(h)) if at + h.size <= buf.len() => h,
                Some(Err(DecodeError::Corrupt(reason))) => {
                    let zeros = buf
                        .get(at..)
                        .is_some_and(|rest| rest.iter().take(HEADER_LEN).all(|&b| b == 0));
                    let reason = if zeros {
                        // Not damage in itself: what a writer with mapped writes leaves past
                        // its last batch when it stops without closing, or a write a power
                        // loss lost after the file had grown.
                        "zeros past the last batch (space allocated ahead of writes, or a write that never reached the disk)".into()
                    } else {
                        reason
                    };
                    fail(&mut scan, reason);
                    break;
                }
                // Not enough bytes in the buffer: read more from here, or the file ends.
                _ => {
                    let needed = match parsed {
                        Some(Ok(h)) => h.size,
                        Some(Err(DecodeError::Torn { needed: Some(n) })) => n,
                        _ => HEADER_LEN,
                    };
                    if file_len - pos < needed as u64 {
                        fail(
                            &mut scan,
                            format!("torn write: {} bytes remain, a batch needs {needed}", file_len - pos),
                        );
                        break;
                    }
                    // Where the buffer does not even hold the next header, that first: past
                    // the last batch of a log written through a map the file holds zeros,
                    // and a reader following the writer meets them at every refresh.
                    let len = if matches!(parsed, Some(Ok(_))) {
                        let len = (file_len - pos).min(chunk.max(needed) as u64) as usize;
                        chunk = (chunk * 2).min(SCAN_CHUNK);
                        len
                    } else {
                        needed.min(HEADER_LEN)
                    };
                    let mut fresh = vec![0; len];
                    match self.log.read_exact_at(&mut fresh, pos) {
                        Ok(()) => {}
                        // Shorter than when it was measured: cut under a read-only reader by
                        // the writer's `truncate_to`. Stop here, as at a batch still being
                        // written; the reader follows the cut at a later refresh.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            fail(
                                &mut scan,
                                format!(
                                    "the file was cut while it was read: it ends before {}",
                                    pos + len as u64
                                ),
                            );
                            break;
                        }
                        Err(e) => return Err(Error::io("read segment", &self.log_path, e)),
                    }
                    buf = Bytes::from(fresh);
                    buf_start = pos;
                    continue;
                }
            };
            // Stored batches are decompressed up to the format's limit, not the configured
            // one: a batch whose CRC holds is never cut for exceeding a limit lowered since
            // it was written (see `LogConfig::max_batch_bytes`).
            let check = RecordBatch::decode(&buf.slice(at..), MAX_BATCH_BYTES, true).and_then(|b| {
                b.validate_records()?;
                Ok(b)
            });
            if let Err(e) = check {
                fail(&mut scan, decode_reason(e));
                break;
            }
            if header.base_offset != scan.next_offset {
                let reason = format!(
                    "batch has base offset {}, expected {}",
                    header.base_offset, scan.next_offset
                );
                fail(&mut scan, reason);
                break;
            }
            let (Ok(relative), Ok(position), Ok(max_rel)) = (
                u32::try_from(header.base_offset - self.base_offset),
                u32::try_from(pos),
                u32::try_from(header.last_offset() - self.base_offset),
            ) else {
                fail(&mut scan, "batch lies past what a segment can address".into());
                break;
            };
            // The record holding the max timestamp is not known without decoding; the
            // batch's last offset is a safe stand-in (every record up to it is ≤ max).
            index.on_batch(
                relative,
                position,
                header.size as u64,
                header.max_timestamp,
                max_rel,
                interval,
            );
            scan.valid_len += header.size as u64;
            scan.next_offset = header.next_offset();
            scan.batches += 1;
        }
        Ok(scan)
    }

    /// Whether every byte of the file from `start` to `end` is zero (read 16 KiB at a time;
    /// a file shorter than `end` counts only what it holds).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read.
    pub fn is_zero_from(&self, start: u64, end: u64) -> Result<bool> {
        // No larger than what is checked, nor than a scan's first read: an open must not
        // allocate more than the file can justify.
        let size = end.saturating_sub(start).min(SCAN_FIRST_CHUNK as u64) as usize;
        let mut buf = vec![0u8; size];
        let mut pos = start;
        while pos < end {
            let want = (end - pos).min(size as u64) as usize;
            let chunk = buf.get_mut(..want).unwrap_or_default();
            let n = self
                .log
                .read_at(chunk, pos)
                .map_err(|e| Error::io("read segment", &self.log_path, e))?;
            if n == 0 {
                break;
            }
            if chunk.get(..n).is_some_and(|read| read.iter().any(|&b| b != 0)) {
                return Ok(false);
            }
            pos += n as u64;
        }
        Ok(true)
    }

    /// Reads whole batches from `pos`, where a batch with base offset `expected` starts (an
    /// index entry, or the segment start), skipping those that end before `target`, up to
    /// `max_bytes` (but always the first batch, however large), checking their CRCs if
    /// `verify`. Reads never pass `size`.
    ///
    /// Base offsets and lengths sit outside the CRC, so every batch walked must continue the
    /// offsets from `expected` and end inside `size`; anything else is reported as corrupt
    /// rather than served (or skipped as if the log ended there).
    /// An empty result has `position == size`.
    ///
    /// The read buffer comes from `spare` when the last one it kept is no longer used.
    pub fn fetch(
        &self,
        mut pos: u64,
        mut expected: u64,
        target: u64,
        max_bytes: usize,
        verify: bool,
        spare: &mut SpareBuffer,
    ) -> Result<Fetched> {
        let size = self.size();
        loop {
            if pos >= size {
                return Ok(Fetched {
                    position: size,
                    batches: Vec::new(),
                });
            }
            let want = (size - pos).min(max_bytes.max(HEADER_LEN) as u64) as usize;
            let Some(buf) = self.read_bytes(pos, want, Some(&mut *spare))? else {
                return Ok(Fetched {
                    position: size,
                    batches: Vec::new(),
                });
            };
            // Walk the headers to the batch holding the target.
            let mut at = 0usize;
            let first = loop {
                let header = match buf.get(at..).map(BatchHeader::parse) {
                    Some(Ok(h)) => h,
                    Some(Err(DecodeError::Torn { .. })) | None => break None,
                    Some(Err(DecodeError::Corrupt(reason))) => {
                        return Err(Error::corrupt(&self.log_path, pos + at as u64, reason));
                    }
                };
                if header.base_offset != expected {
                    return Err(Error::corrupt(
                        &self.log_path,
                        pos + at as u64,
                        format!("batch has base offset {}, expected {expected}", header.base_offset),
                    ));
                }
                // The length is outside the CRC too: a batch skipped for running past the
                // buffer must still end inside the segment, or the walk would jump past
                // `size` and answer as if the log ended here.
                if pos + at as u64 + header.size as u64 > size {
                    return Err(Error::corrupt(
                        &self.log_path,
                        pos + at as u64,
                        "batch runs past the end of the segment",
                    ));
                }
                if header.next_offset() > target {
                    break Some(header);
                }
                at += header.size;
                expected = header.next_offset();
                if at >= buf.len() {
                    break None;
                }
            };
            let Some(first) = first else {
                if at == 0 {
                    // Not even a header fits below `size`: the visible bytes end mid-batch.
                    return Err(Error::corrupt(
                        &self.log_path,
                        pos,
                        "segment ends inside a batch header",
                    ));
                }
                pos += at as u64;
                continue;
            };
            if at + first.size > buf.len() {
                if at > 0 {
                    pos += at as u64;
                    continue;
                }
                // The first batch is larger than `max_bytes` (it ends inside the segment,
                // checked above): return it alone.
                let Some(whole) = self.read_bytes(pos, first.size, None)? else {
                    return Ok(Fetched {
                        position: size,
                        batches: Vec::new(),
                    });
                };
                return self.decode_all(&whole, pos, verify);
            }
            return self.decode_all(&buf.slice(at..), pos + at as u64, verify);
        }
    }

    /// Rebuilds the indexes from the log, replacing whatever was loaded (used when an index
    /// entry turned out not to point at the batch it names).
    pub fn rebuild_index(&self, vfs: &dyn Vfs) -> Result<()> {
        let mut slot = self.index.write();
        tracing::warn!(segment = %self.log_path.display(), "rebuilt an index that did not match its log");
        let (index, on_disk) = self.rebuilt_index(vfs)?;
        *slot = Some(index);
        self.index_on_disk.store(on_disk, Ordering::Release);
        Ok(())
    }

    /// The indexes of a sealed segment rebuilt from its log, written back (best effort)
    /// where this segment may write index files and the scan covered the whole file: an
    /// index of a scan stopped by bad bytes describes less than the file, so it would never
    /// be loaded; it is kept in memory for this process only. Returns the indexes and
    /// whether their files now hold them. Call with the index lock.
    fn rebuilt_index(&self, vfs: &dyn Vfs) -> Result<(SegmentIndex, bool)> {
        let scan = self.scan()?;
        let whole = scan.error.is_none() && scan.valid_len == self.size();
        let extent = scan.extent();
        let mut index = scan.index;
        // The last time entry carries the segment's max timestamp (retention and time
        // lookups read it from the file).
        index.add_time_entry();
        let mut on_disk = false;
        if whole && self.writes_index_files() {
            match index.write_files(vfs, &self.index_path(), &self.time_index_path(), extent, false) {
                Ok(()) => on_disk = true,
                Err(e) => tracing::warn!(error = %e, "could not write rebuilt index files"),
            }
        }
        Ok((index, on_disk))
    }

    /// Decodes every complete batch at the front of `buf` (which starts at file position
    /// `pos`), checking each one's CRC if `verify`; a partial batch at the end is left out,
    /// and so is everything from a damaged batch on when batches come before it (the read
    /// that starts at the damaged batch fails with it).
    fn decode_all(&self, buf: &Bytes, pos: u64, verify: bool) -> Result<Fetched> {
        let mut batches = Vec::new();
        let mut at = 0usize;
        while at < buf.len() {
            // The format's limit, as in `scan_into`: what recovery keeps, readers read.
            match RecordBatch::decode(&buf.slice(at..), MAX_BATCH_BYTES, verify) {
                Ok(batch) => {
                    // A base offset lies outside the CRC, so damage to one shows here, as a
                    // break in the offsets: the batches before it are returned, as for any
                    // damage below, and the read that starts at it (whose header walk checks
                    // its base offset) reports it. (The first batch's was checked by that walk.)
                    if batches.last().is_some_and(|prev: &RecordBatch| {
                        prev.last_offset().checked_add(1) != Some(batch.base_offset())
                    }) {
                        break;
                    }
                    at += batch.size_bytes();
                    batches.push(batch);
                }
                // The batches before a damaged one are returned, as Kafka's fetch returns
                // the records before a corrupt one: the read starting at the damaged batch
                // reports it.
                Err(_) if !batches.is_empty() => break,
                Err(e) => return Err(Error::corrupt(&self.log_path, pos + at as u64, decode_reason(e))),
            }
        }
        Ok(Fetched { position: pos, batches })
    }

    /// Reads `len` bytes at `pos`: into a buffer from `spare`, kept there for the next read,
    /// or (`None`) a buffer of its own. `None` if the file is shorter (it was truncated
    /// under us).
    fn read_bytes(&self, pos: u64, len: usize, mut spare: Option<&mut SpareBuffer>) -> Result<Option<Bytes>> {
        let mut buf = match &mut spare {
            Some(spare) => spare.take(len),
            None => BytesMut::zeroed(len),
        };
        match self.log.read_exact_at(&mut buf, pos) {
            Ok(()) => {
                let bytes = buf.freeze();
                if let Some(spare) = spare {
                    spare.keep(&bytes);
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(Error::io("read segment", &self.log_path, e)),
        }
    }
}

/// The buffer of a reader's last read, to read into again once nothing borrows from it.
///
/// A fetch's batches are zero-copy slices of its read buffer, handed to the caller. A
/// reader that fetches again (a consumer's next `poll`) after dropping them can reuse the
/// buffer: no allocation, no zero-filling, no page faults for a fresh 1 MiB. Only one
/// buffer is kept per `SpareBuffer` (a consumer has one, whatever its partitions): the
/// last read of at most the fetch size (a batch larger than the fetch size gets a buffer
/// of its own that is not kept). A read reuses it only if it needs at least half of it,
/// so a small read never pins a large allocation in the records it returns.
#[derive(Debug, Default)]
pub(crate) struct SpareBuffer(Option<Bytes>);

impl SpareBuffer {
    /// A buffer of `len` initialized bytes: the kept one if nothing else holds it and
    /// `len` is between half its capacity and its capacity (only bytes it never held are
    /// zeroed), else a new zeroed one.
    fn take(&mut self, len: usize) -> BytesMut {
        match self.0.take().map(Bytes::try_into_mut) {
            Some(Ok(mut buf)) if buf.capacity() >= len && buf.capacity() / 2 <= len => {
                if buf.len() >= len {
                    buf.truncate(len);
                } else {
                    buf.resize(len, 0);
                }
                buf
            }
            _ => BytesMut::zeroed(len),
        }
    }

    fn keep(&mut self, buf: &Bytes) {
        self.0 = Some(buf.clone());
    }
}

fn decode_reason(e: DecodeError) -> String {
    match e {
        DecodeError::Corrupt(reason) => reason,
        DecodeError::Torn { needed: Some(n) } => format!("torn write: batch of {n} bytes is incomplete"),
        DecodeError::Torn { needed: None } => "torn write: incomplete batch header".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffer_is_reused_only_when_nothing_else_holds_it() {
        let mut spare = SpareBuffer::default();
        let mut first = spare.take(1000);
        assert_eq!(first.len(), 1000);
        first.fill(7);
        let first = first.freeze();
        spare.keep(&first);
        let ptr = first.as_ptr();
        // The caller still holds the last read: a new buffer, zeroed.
        let second = spare.take(1000);
        assert_ne!(second.as_ptr(), ptr);
        assert!(second.iter().all(|&b| b == 0));
        drop(second);
        // Kept again and released by the caller: the same memory, not zeroed again.
        spare.keep(&first);
        drop(first);
        let third = spare.take(600);
        assert_eq!(third.as_ptr(), ptr);
        assert_eq!(third.len(), 600);
        assert!(third.iter().all(|&b| b == 7));
        let third = third.freeze();
        spare.keep(&third);
        drop(third);
        // Growing within the capacity zeroes only the bytes not handed out last time.
        let fourth = spare.take(1000);
        assert_eq!(fourth.as_ptr(), ptr);
        assert!(fourth[..600].iter().all(|&b| b == 7));
        assert!(fourth[600..].iter().all(|&b| b == 0));
        let fourth = fourth.freeze();
        spare.keep(&fourth);
        drop(fourth);
        // A read needing less than half of it gets its own small buffer (a small record
        // kept by the application must not pin the large one).
        let small = spare.take(400);
        assert_ne!(small.as_ptr(), ptr);
        assert_eq!(small.len(), 400);
        assert!(small.capacity() < 1000);
    }

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/d");
        let p = segment_path(dir, 42, LOG_SUFFIX);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_segment_name(&p, LOG_SUFFIX), Some(42));
        assert_eq!(parse_segment_name(&p, INDEX_SUFFIX), None);
        assert_eq!(parse_segment_name(Path::new("/d/42.log"), LOG_SUFFIX), None);
        assert_eq!(
            parse_segment_name(Path::new("/d/0000000000000000004x.log"), LOG_SUFFIX),
            None
        );
    }
}
