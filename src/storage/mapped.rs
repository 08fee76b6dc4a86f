//! Writes through a shared memory map of the active segment
//! ([`LogConfig::mapped_writes`](crate::LogConfig::mapped_writes)): the crate's only
//! `unsafe` code.
//!
//! A store into a `MAP_SHARED` map of a file lands in the page cache, as a `write(2)` of
//! the same bytes would: it outlives the process, readers see it through `pread`, and
//! `fdatasync` of the file writes it to disk. It only costs no system call. The writer
//! keeps two rules that make the map safe to store into:
//!
//! - **Only below the file's end.** A store past the end of the file raises `SIGBUS`. The
//!   writer stores only below an end it extended the file to itself ([`allocate`]), and
//!   forgets that end (and drops the map) before any change of the file's length.
//! - **Only into allocated blocks.** A store into a hole would make the page fault allocate
//!   a block, and on a full disk that is `SIGBUS` too. [`allocate`] reserves the blocks
//!   (`fallocate(2)` mode 0) before the end is raised; where it fails the log writes with
//!   `write(2)` instead, which reports `ENOSPC` as an error.
//!
//! What remains is what every user of a writable map accepts (LMDB's `MDB_WRITEMAP`,
//! RocksDB's `allow_mmap_writes`): another process that shrinks the file, or an I/O error
//! when a page that was written back and evicted is faulted in again, raises `SIGBUS`; and
//! on a copy-on-write file system (btrfs, ZFS, XFS with shared extents) allocated blocks do
//! not guarantee that rewriting a page needs none, so a full disk can too. Hence an opt-in.

use std::fs::File;
use std::io;

/// A writable shared map of the first `len` bytes of a segment file (which may be shorter:
/// only the part below its end may be stored into).
pub(crate) struct WriteMap {
    map: memmap2::MmapMut,
}

impl std::fmt::Debug for WriteMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteMap").field("len", &self.map.len()).finish()
    }
}

impl WriteMap {
    /// Maps `len` bytes of `file` from its start, shared and writable.
    ///
    /// # Errors
    /// Any error of `mmap(2)` (e.g. no address space for `len` on a 32-bit target), or a
    /// `len` that does not fit in `usize`.
    pub(crate) fn new(file: &File, len: u64) -> io::Result<WriteMap> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: memmap2 marks mapping unsafe because the mapped bytes may change under a
        // Rust reference (another process writing the file) or vanish (the file shrinking:
        // SIGBUS). This map is only ever stored into, through `write_at`'s short-lived
        // `&mut` slice of bytes no one reads through the map; the segment file belongs to
        // the one writer that holds the data directory's lock; and that writer stores only
        // below an end it extended the file to itself and drops the map before it changes
        // the file's length (the module's rules). Readers read the file with `pread`, never
        // through this map.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file)? };
        Ok(WriteMap { map })
    }

    /// The length mapped.
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Copies `bytes` to position `pos`; `false` (and nothing stored) when they do not fit
    /// in the map.
    pub(crate) fn write_at(&mut self, pos: u64, bytes: &[u8]) -> bool {
        let Ok(start) = usize::try_from(pos) else {
            return false;
        };
        let Some(end) = start.checked_add(bytes.len()) else {
            return false;
        };
        match self.map.get_mut(start..end) {
            Some(target) => {
                target.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// Allocates disk blocks for `offset..offset + len` of `file` and extends the file to
/// cover them if it is shorter (`fallocate(2)` mode 0), so that stores through a map below
/// the new end neither fault past the end of the file nor need a block.
///
/// # Errors
/// Any error of `fallocate(2)`: `ENOSPC`, or `EOPNOTSUPP` where the file system cannot
/// allocate (the caller writes with `write(2)` then); `Unsupported` outside Linux.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{FallocateFlags, fallocate};
        fallocate(file, FallocateFlags::empty(), offset, len).map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stores_below_the_allocated_end_reach_the_file_and_others_are_refused() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("seg");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut map = WriteMap::new(&file, 8192)?;
        allocate(&file, 0, 4096)?;
        assert_eq!(file.metadata()?.len(), 4096);
        assert!(map.write_at(10, b"hello"));
        // Past the map: refused, nothing stored.
        assert!(!map.write_at(8190, b"abc"));
        assert!(!map.write_at(u64::MAX, b"a"));
        drop(map);
        file.set_len(15)?;
        let mut text = Vec::new();
        std::fs::File::open(&path)?.read_to_end(&mut text)?;
        let mut expected = vec![0u8; 10];
        expected.extend_from_slice(b"hello");
        assert_eq!(text, expected);
        Ok(())
    }
}
