//! The I/O seam: every file operation of the storage engine goes through [`Vfs`].
//!
//! [`OsFs`] is the real file system. [`FaultFs`](super::fault::FaultFs) wraps it to inject
//! errors and to simulate power loss, so that tests (ours and applications') can prove what
//! survives. The seam is deliberately narrow: positional reads and writes, `set_len`,
//! `fdatasync`, a block reservation hint, and the directory operations the log needs.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A file opened through a [`Vfs`]. Positional I/O only, so one handle serves concurrent
/// readers and the single writer without a shared cursor.
pub trait VfsFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    ///
    /// # Errors
    /// Any I/O error of the underlying file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `pos`.
    ///
    /// # Errors
    /// Any I/O error; on error an unknown prefix of `buf` may have been written.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;

    /// Truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    /// Any I/O error of the underlying file.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The file's current length.
    ///
    /// # Errors
    /// Any I/O error of the underlying file.
    fn file_size(&self) -> io::Result<u64>;

    /// Flushes the file's data (and the metadata needed to read it) to stable storage:
    /// `fdatasync(2)`.
    ///
    /// # Errors
    /// Any I/O error. After a failed sync the kernel may have dropped the dirty pages, so
    /// the caller must not assume a retry makes them durable.
    fn sync_data(&self) -> io::Result<()>;

    /// Reserves disk blocks for `len` bytes from `offset` without changing the file's
    /// length (`fallocate(2)` with `FALLOC_FL_KEEP_SIZE` on Linux), so later writes there
    /// do not allocate blocks one page at a time. A hint: nothing may depend on it, and the
    /// default does nothing. Blocks reserved past the end are released by a
    /// [`set_len`](Self::set_len) to the current length.
    ///
    /// # Errors
    /// Any I/O error, e.g. `EOPNOTSUPP` where the file system cannot reserve blocks; callers
    /// treat it as "not reserved".
    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// The operating system's file under this one, for writes that bypass
    /// [`write_all_at`](Self::write_all_at) through a shared memory map
    /// ([`LogConfig::mapped_writes`](crate::LogConfig::mapped_writes)). The default, `None`,
    /// keeps every write on this trait: a wrapper such as [`FaultFs`](super::fault::FaultFs)
    /// sees them all, and mapped writes are then not used. Only [`OsFs`]'s files answer.
    fn os_file(&self) -> Option<&File> {
        None
    }

    /// Reads exactly `buf.len()` bytes at `pos`.
    ///
    /// # Errors
    /// [`io::ErrorKind::UnexpectedEof`] if the file ends first, or any I/O error.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = buf.get_mut(n..).unwrap_or_default();
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// How [`Vfs::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-only; the file must exist.
    Read,
    /// Read and write; created empty if missing.
    ReadWriteCreate,
    /// Read and write; truncated to zero length, created if missing.
    Truncate,
}

/// The file-system operations the storage engine uses.
///
/// Implementations (and their [`VfsFile`]s) report every failure as an [`io::Error`] and
/// must not panic, as a SQLite VFS reports errors through its return codes. The engine is
/// written for errors, not unwinding: a panic leaves the call that hit it half done — a
/// group-commit round still marked running, a `Synced` batch whose records are never
/// reported — and other threads waiting on that partition may then wait forever.
/// [`FaultFs`](super::fault::FaultFs) shows how to fail an operation instead.
pub trait Vfs: Send + Sync + Debug {
    /// Opens (or creates, per `mode`) the file at `path`.
    ///
    /// # Errors
    /// Any I/O error, e.g. [`io::ErrorKind::NotFound`] for a missing file in `Read` mode.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>>;

    /// Creates a directory and its parents.
    ///
    /// # Errors
    /// Any I/O error.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The paths of the entries of a directory, in no particular order.
    ///
    /// # Errors
    /// Any I/O error.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;

    /// Removes a file.
    ///
    /// # Errors
    /// Any I/O error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Renames a file, replacing `to` if it exists.
    ///
    /// # Errors
    /// Any I/O error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the directory's entries (created, renamed and removed files) durable.
    ///
    /// # Errors
    /// Any I/O error.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// A directory held open to tell whether its path still names it: not if it was deleted,
/// or replaced by a new directory of that name (a topic deleted and created again).
/// Holding it keeps its inode from being freed, so a new directory cannot be given the same
/// inode number and pass for it. The one file-system call outside [`Vfs`]: it reads no
/// data, only the directory's identity, and where it cannot tell it answers "not replaced".
#[derive(Debug)]
pub(crate) struct HeldDir {
    _handle: File,
    id: (u64, u64),
}

impl HeldDir {
    /// Holds the directory at `path`; `None` if it cannot be opened.
    pub(crate) fn open(path: &Path) -> Option<HeldDir> {
        use std::os::unix::fs::MetadataExt;
        let handle = File::open(path).ok()?;
        let meta = handle.metadata().ok()?;
        Some(HeldDir {
            id: (meta.dev(), meta.ino()),
            _handle: handle,
        })
    }

    /// Whether `path` no longer names the held directory: gone, or another directory.
    pub(crate) fn replaced(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(meta) => (meta.dev(), meta.ino()) != self.id,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile(File);

impl VfsFile for OsFile {
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
        self.0.metadata().map(|m| m.len())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    #[cfg(target_os = "linux")]
    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::{FallocateFlags, fallocate};
        fallocate(&self.0, FallocateFlags::KEEP_SIZE, offset, len).map_err(io::Error::from)
    }
    fn os_file(&self) -> Option<&File> {
        Some(&self.0)
    }
}

impl Vfs for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWriteCreate => options.read(true).write(true).create(true),
            OpenMode::Truncate => options.read(true).write(true).create(true).truncate(true),
        };
        Ok(Box::new(OsFile(options.open(path)?)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect()
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}
