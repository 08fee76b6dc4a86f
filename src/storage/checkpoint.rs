//! Small checkpoint files: the recovery point, the log start offset and the clean-shutdown
//! marker of a partition.
//!
//! # Format
//! ```text
//! pos  size  field
//!   0     4  magic     b"BRKC"
//!   4     2  version   u16 = 1
//!   6     2  count     u16: number of u64 values that follow
//!   8  8×n   values    u64 each
//!   …     4  crc       CRC-32 of every byte before it
//! ```
//! Little-endian. A file is replaced atomically: written to `NAME.tmp`, `fdatasync`'d,
//! renamed over `NAME`, and the directory synced — so a crash leaves either the old or the
//! new content, and a torn or garbage file fails its CRC instead of yielding a wrong offset.

use std::io;
use std::path::{Path, PathBuf};

use super::io::{OpenMode, Vfs};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"BRKC";
const VERSION: u16 = 1;
/// Checkpoints are tiny; a bigger file is garbage, and is not read whole.
const MAX_VALUES: usize = 16;

/// Encodes `values` as a checkpoint file's bytes.
fn encode(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 8 * values.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(values.len() as u16).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a checkpoint file's bytes; `Err(reason)` for anything but a valid file.
fn decode(bytes: &[u8]) -> Result<Vec<u64>, CheckpointError> {
    let field = |at: usize, n: usize| {
        bytes
            .get(at..at + n)
            .ok_or(CheckpointError::Corrupt("file is too short".into()))
    };
    if field(0, 4)? != MAGIC {
        return Err(CheckpointError::Corrupt("bad magic".into()));
    }
    let version = u16::from_le_bytes(field(4, 2)?.try_into().unwrap_or_default());
    if version != VERSION {
        return Err(CheckpointError::Version(u32::from(version)));
    }
    let count = usize::from(u16::from_le_bytes(field(6, 2)?.try_into().unwrap_or_default()));
    if count > MAX_VALUES || bytes.len() != 12 + 8 * count {
        return Err(CheckpointError::Corrupt(format!(
            "length {} does not match {count} values",
            bytes.len()
        )));
    }
    let body = field(0, 8 + 8 * count)?;
    let stored = u32::from_le_bytes(field(8 + 8 * count, 4)?.try_into().unwrap_or_default());
    if crc32fast::hash(body) != stored {
        return Err(CheckpointError::Corrupt("checksum mismatch".into()));
    }
    Ok((0..count)
        .map(|i| {
            u64::from_le_bytes(
                body.get(8 + 8 * i..16 + 8 * i)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or_default(),
            )
        })
        .collect())
}

enum CheckpointError {
    Corrupt(String),
    Version(u32),
}

/// Reads a checkpoint file. `Ok(None)` when it does not exist.
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::Corrupt`] when it is not a valid checkpoint
/// with `expected` values, [`Error::UnsupportedVersion`] for a newer format.
pub(crate) fn read(vfs: &dyn Vfs, path: &Path, expected: usize) -> Result<Option<Vec<u64>>> {
    let Some(buf) = read_small_file(vfs, path, 12 + 8 * MAX_VALUES as u64)? else {
        return Ok(None);
    };
    match decode(&buf) {
        Ok(values) if values.len() == expected => Ok(Some(values)),
        Ok(values) => Err(Error::corrupt(
            path,
            0,
            format!("expected {expected} values, found {}", values.len()),
        )),
        Err(CheckpointError::Corrupt(reason)) => Err(Error::corrupt(path, 0, reason)),
        Err(CheckpointError::Version(found)) => Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: u32::from(VERSION),
        }),
    }
}

/// Replaces a checkpoint file atomically (tmp, fdatasync, rename, sync dir).
///
/// # Errors
/// [`Error::Io`] naming the step that failed; the old file is then still in place.
pub(crate) fn write(vfs: &dyn Vfs, path: &Path, values: &[u64]) -> Result<()> {
    write_atomic(vfs, path, &encode(values))
}

/// Replaces the file at `path` with `bytes` atomically: `NAME.tmp`, fdatasync, rename over
/// `NAME`, sync the directory. A crash leaves the old or the new content.
///
/// # Errors
/// [`Error::Io`] naming the step that failed; the old file is then still in place, unless
/// only the directory sync failed (the new content is in place, but may not survive a
/// power loss).
pub(crate) fn write_atomic(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> Result<()> {
    replace(vfs, path, bytes)?;
    sync_parent(vfs, path)
}

/// The first steps of [`write_atomic`]: `NAME.tmp`, fdatasync, rename over `NAME`. The new
/// content is then what a reader (or the next open) finds, but its name is durable only
/// once [`sync_parent`] has run.
///
/// # Errors
/// [`Error::Io`] naming the step that failed; the old file is then still in place.
pub(crate) fn replace(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let file = vfs
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| Error::io("create file", &tmp, e))?;
    file.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write file", &tmp, e))?;
    file.sync_data().map_err(|e| Error::io("sync file", &tmp, e))?;
    drop(file);
    vfs.rename(&tmp, path).map_err(|e| Error::io("rename file", path, e))
}

/// Reads a whole file of at most `max` bytes. `Ok(None)` when it does not exist.
///
/// # Errors
/// [`Error::Io`] if it cannot be read; [`Error::Corrupt`] if it is larger than `max`.
pub(crate) fn read_small_file(vfs: &dyn Vfs, path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let file = match vfs.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open file", path, e)),
    };
    let len = file.file_size().map_err(|e| Error::io("read file", path, e))?;
    if len > max {
        return Err(Error::corrupt(
            path,
            0,
            format!("file of {len} bytes is larger than the maximum {max}"),
        ));
    }
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| Error::io("read file", path, e))?;
    Ok(Some(buf))
}

/// Removes a file (if present) and makes the removal durable.
///
/// # Errors
/// [`Error::Io`] if the removal or the directory sync fails.
pub(crate) fn remove(vfs: &dyn Vfs, path: &Path) -> Result<()> {
    match vfs.remove_file(path) {
        Ok(()) => sync_parent(vfs, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove file", path, e)),
    }
}

/// Syncs the directory holding `path`.
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub(crate) fn sync_parent(vfs: &dyn Vfs, path: &Path) -> Result<()> {
    // A relative path of one component ("data") has the empty path as its parent.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    vfs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))
}

/// `NAME.tmp` beside `NAME`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Deserializes a `String` of a [`frame`]d payload by borrowing it from the payload first
/// (`#[serde(deserialize_with = "checkpoint::owned_str")]`), so that a length read from the
/// file is checked against the bytes present before anything is allocated: bincode's owned
/// decoding allocates the length a file claims first, up to the decoder's limit.
pub(crate) fn owned_str<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    <&'de str as serde::Deserialize<'de>>::deserialize(d).map(str::to_owned)
}

/// Bytes of a [`frame`] header.
pub(crate) const FRAME_HEADER: usize = 16;

/// Frames `payload` for a metadata file (the topic table, the offsets snapshot):
/// ```text
/// pos  size  field
///   0     4  magic     four bytes naming the file kind
///   4     2  version   u16
///   6     2  reserved, 0
///   8     4  length    u32: bytes of payload
///  12     4  crc       CRC-32 of the payload
///  16     …  payload
/// ```
/// Little-endian. Payloads above `u32::MAX` bytes are refused by the callers' limits.
pub(crate) fn frame(magic: &[u8; 4], version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a [`frame`]d file's header and checksum and returns its version, one of
/// `versions` (oldest to newest), and its payload.
///
/// # Errors
/// [`Error::UnsupportedVersion`] for another version (naming the newest as supported);
/// [`Error::Corrupt`] (naming `path`) for anything else that is not a valid frame of `magic`.
pub(crate) fn unframe<'a>(path: &Path, bytes: &'a [u8], magic: &[u8; 4], versions: &[u16]) -> Result<(u16, &'a [u8])> {
    let corrupt = |reason: &str| Error::corrupt(path, 0, reason);
    let (head, payload) = bytes
        .split_at_checked(FRAME_HEADER)
        .ok_or_else(|| corrupt("file is too short"))?;
    let u16_at = |at: usize| {
        head.get(at..at + 2)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u16::from_le_bytes)
    };
    let u32_at = |at: usize| {
        head.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    if head.get(..4) != Some(magic.as_slice()) {
        return Err(corrupt("bad magic"));
    }
    let found = u16_at(4);
    if !versions.contains(&found) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: u32::from(found),
            supported: u32::from(versions.last().copied().unwrap_or_default()),
        });
    }
    if u16_at(6) != 0 {
        return Err(corrupt("reserved header bytes are not zero"));
    }
    if u32_at(8) as usize != payload.len() {
        return Err(corrupt("length does not match the file"));
    }
    if crc32fast::hash(payload) != u32_at(12) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok((found, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::OsFs;

    #[test]
    fn round_trip_and_every_flip_detected() {
        let bytes = encode(&[7, u64::MAX]);
        assert_eq!(decode(&bytes).ok(), Some(vec![7, u64::MAX]));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn atomic_write_then_read() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", ".", e))?;
        let path = dir.path().join("recovery-point");
        assert_eq!(read(&OsFs, &path, 1)?, None);
        write(&OsFs, &path, &[42])?;
        write(&OsFs, &path, &[43])?;
        assert_eq!(read(&OsFs, &path, 1)?, Some(vec![43]));
        assert!(!tmp_path(&path).exists());
        std::fs::write(&path, b"garbage").map_err(|e| Error::io("write", &path, e))?;
        assert!(matches!(read(&OsFs, &path, 1), Err(Error::Corrupt { .. })));
        let mut newer = encode(&[1]);
        newer[4] = 9;
        std::fs::write(&path, newer).map_err(|e| Error::io("write", &path, e))?;
        assert!(matches!(
            read(&OsFs, &path, 1),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
        Ok(())
    }
}
