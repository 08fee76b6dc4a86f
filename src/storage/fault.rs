//! A [`Vfs`] that injects I/O errors and simulates power loss, for tests.
//!
//! [`FaultFs`] passes every operation through to the real file system and keeps, beside it,
//! a model of what is *durable*:
//!
//! - a file's content is durable as of its last successful `sync_data`; writes and
//!   truncations since then are pending;
//! - a directory entry (a created, renamed or removed name) is durable once its directory
//!   was synced with `sync_dir`.
//!
//! [`FaultFs::power_loss`] rewrites the real directory to one crash state the model allows:
//! names that were never made durable disappear, renames that were not synced are undone, and
//! each file keeps its durable content, optionally plus an in-order prefix of its pending
//! writes with the last one torn. Afterwards every call through this `FaultFs` (and through
//! files opened from it) fails with `EIO`, as if the machine had stopped; reopen the
//! directory with [`OsFs`](super::io::OsFs) or a new `FaultFs`.
//!
//! Errors are injected by [`FaultFs::inject`]: fail the Nth write, sync, rename, truncate or removal
//! with `ENOSPC` or `EIO`, once or from then on. A failed write first writes half of its
//! buffer, as a real short write may.
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use brooklet::{Durability, LogConfig, PartitionLog, Record};
//! use brooklet::io::{FaultFs, OsFs, PowerLoss};
//!
//! let dir = tempfile::tempdir()?;
//! let fs = FaultFs::new();
//! let log = PartitionLog::open_with_vfs(dir.path(), LogConfig::default(), Arc::new(fs.clone()))?;
//! log.append(&[Record::new().value("kept")], Durability::Synced)?;
//! log.append(&[Record::new().value("lost")], Durability::Written)?;
//! fs.power_loss(PowerLoss::DropUnsynced);
//! drop(log); // the "machine" is off: the clean shutdown fails quietly
//!
//! let log = PartitionLog::open(dir.path(), LogConfig::default())?;
//! assert_eq!(log.log_end_offset(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::io::{OpenMode, OsFs, Vfs, VfsFile};

/// `ENOSPC`: no space left on device.
pub const ENOSPC: i32 = 28;
/// `EIO`: input/output error.
pub const EIO: i32 = 5;

/// The class of operation a [`Fault`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `write_all_at` on any file.
    Write,
    /// `sync_data` on a file or `sync_dir`.
    Sync,
    /// `rename`.
    Rename,
    /// `set_len`.
    SetLen,
    /// `preallocate` (a hint: the log carries on without the reservation).
    Preallocate,
    /// `remove_file`.
    Remove,
}

/// An error to inject: the `nth` operation of class `op` (counted from 1, from when the
/// fault is injected) fails with the OS error `errno`; with `forever`, so does every later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which operations it applies to.
    pub op: FaultOp,
    /// The first failing operation, counted from 1.
    pub nth: u64,
    /// The raw OS error, e.g. [`ENOSPC`] or [`EIO`].
    pub errno: i32,
    /// Keep failing after the first failure.
    pub forever: bool,
}

/// What [`FaultFs::power_loss`] keeps of the writes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Every unsynced write and truncation is lost.
    DropUnsynced,
    /// Per file, a pseudo-random in-order prefix of the unsynced writes survives, the last of
    /// them cut at a pseudo-random byte (a torn write). The same seed gives the same state.
    Torn {
        /// Seed of the choice.
        seed: u64,
    },
}

#[derive(Debug, Clone)]
enum Pending {
    Write { pos: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Node {
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

fn apply(content: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { pos, data } => {
            let pos = *pos as usize;
            if content.len() < pos + data.len() {
                content.resize(pos + data.len(), 0);
            }
            if let Some(slot) = content.get_mut(pos..pos + data.len()) {
                slot.copy_from_slice(data);
            }
        }
        Pending::SetLen(len) => content.resize(*len as usize, 0),
    }
}

#[derive(Debug, Default)]
struct State {
    crashed: bool,
    faults: Vec<(Fault, u64)>,
    counts: HashMap<FaultOp, u64>,
    nodes: HashMap<u64, Node>,
    names: HashMap<PathBuf, u64>,
    durable_names: HashMap<PathBuf, u64>,
    next_id: u64,
}

impl State {
    /// Counts an operation and returns the error to inject, if any.
    fn check(&mut self, op: FaultOp) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let count = self.counts.entry(op).or_insert(0);
        *count += 1;
        let count = *count;
        for (fault, installed_at) in &self.faults {
            if fault.op == op {
                let n = count - installed_at;
                if n == fault.nth || (fault.forever && n > fault.nth) {
                    return Err(io::Error::from_raw_os_error(fault.errno));
                }
            }
        }
        Ok(())
    }

    fn alive(&self) -> io::Result<()> {
        if self.crashed {
            Err(io::Error::from_raw_os_error(EIO))
        } else {
            Ok(())
        }
    }
}

/// A fault-injecting, power-loss-simulating [`Vfs`] over the real file system. Clones share
/// one model, so a test keeps a clone to drive the one it hands to the log.
#[derive(Clone, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFs").finish_non_exhaustive()
    }
}

impl FaultFs {
    /// A new model; files already on disk count as durable when first opened.
    #[must_use]
    pub fn new() -> Self {
        FaultFs::default()
    }

    /// Installs a fault. Its `nth` counts operations from now.
    pub fn inject(&self, fault: Fault) {
        let mut s = self.state.lock();
        let now = s.counts.get(&fault.op).copied().unwrap_or(0);
        s.faults.push((fault, now));
    }

    /// Removes every injected fault ("the disk has space again").
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// How many operations of a class were attempted so far (failed ones included).
    #[must_use]
    pub fn count(&self, op: FaultOp) -> u64 {
        self.state.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// Simulates a power loss: rewrites the real files to a crash state (see the module
    /// docs) and makes every later operation through this model fail with `EIO`.
    ///
    /// Errors of the real file system while rewriting are ignored; a test that needs them
    /// would see them at reopen.
    pub fn power_loss(&self, mode: PowerLoss) {
        let mut s = self.state.lock();
        s.crashed = true;
        let mut rng = match mode {
            PowerLoss::DropUnsynced => None,
            PowerLoss::Torn { seed } => Some(SplitMix(seed)),
        };
        // Names that are not durable disappear (a durable name re-pointed by an unsynced
        // rename is rewritten below).
        for (path, id) in &s.names {
            if s.durable_names.get(path) != Some(id) {
                let _ = std::fs::remove_file(path);
            }
        }
        let mut durable: Vec<(PathBuf, u64)> = s.durable_names.iter().map(|(p, i)| (p.clone(), *i)).collect();
        durable.sort();
        for (path, id) in durable {
            let Some(node) = s.nodes.get(&id) else { continue };
            let mut content = node.durable.clone();
            if let Some(rng) = rng.as_mut()
                && !node.pending.is_empty()
            {
                let keep = (rng.next() % (node.pending.len() as u64 + 1)) as usize;
                for (i, op) in node.pending.iter().take(keep).enumerate() {
                    match op {
                        Pending::Write { pos, data } if i + 1 == keep => {
                            let cut = (rng.next() % (data.len() as u64 + 1)) as usize;
                            apply(
                                &mut content,
                                &Pending::Write {
                                    pos: *pos,
                                    data: data.get(..cut).unwrap_or_default().to_vec(),
                                },
                            );
                        }
                        op => apply(&mut content, op),
                    }
                }
            }
            let _ = std::fs::write(&path, &content);
        }
    }

    /// Looks up (or starts tracking) the node behind `path`.
    fn node_for(&self, path: &Path, mode: OpenMode) -> io::Result<u64> {
        let mut s = self.state.lock();
        s.alive()?;
        if let Some(&id) = s.names.get(path) {
            if mode == OpenMode::Truncate
                && let Some(node) = s.nodes.get_mut(&id)
            {
                node.pending.push(Pending::SetLen(0));
            }
            return Ok(id);
        }
        let existing = match std::fs::read(path) {
            Ok(content) => Some(content),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let id = s.next_id;
        s.next_id += 1;
        let mut node = Node::default();
        match existing {
            Some(content) => {
                node.durable = content;
                if mode == OpenMode::Truncate {
                    node.pending.push(Pending::SetLen(0));
                }
                s.durable_names.insert(path.to_path_buf(), id);
            }
            None if mode == OpenMode::Read => return Err(io::ErrorKind::NotFound.into()),
            None => {}
        }
        s.nodes.insert(id, node);
        s.names.insert(path.to_path_buf(), id);
        Ok(id)
    }
}

impl Vfs for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let id = self.node_for(path, mode)?;
        let inner = OsFs.open(path, mode)?;
        Ok(Box::new(FaultFile {
            inner,
            id,
            state: Arc::clone(&self.state),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.state.lock().alive()?;
        OsFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.state.lock().alive()?;
        OsFs.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(FaultOp::Remove)?;
        OsFs.remove_file(path)?;
        s.names.remove(path);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(FaultOp::Rename)?;
        OsFs.rename(from, to)?;
        if let Some(id) = s.names.remove(from) {
            s.names.insert(to.to_path_buf(), id);
        }
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(FaultOp::Sync)?;
        OsFs.sync_dir(path)?;
        let in_dir = |p: &PathBuf| p.parent() == Some(path);
        s.durable_names.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable_names.extend(now);
        Ok(())
    }
}

struct FaultFile {
    inner: Box<dyn VfsFile>,
    id: u64,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for FaultFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFile")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl VfsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.state.lock().alive()?;
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        let result = s.check(FaultOp::Write);
        let written = if result.is_ok() {
            buf
        } else {
            buf.get(..buf.len() / 2).unwrap_or_default()
        };
        if s.crashed {
            return result;
        }
        self.inner.write_all_at(written, pos)?;
        if let Some(node) = s.nodes.get_mut(&self.id) {
            node.pending.push(Pending::Write {
                pos,
                data: written.to_vec(),
            });
        }
        result
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(FaultOp::SetLen)?;
        self.inner.set_len(len)?;
        if let Some(node) = s.nodes.get_mut(&self.id) {
            node.pending.push(Pending::SetLen(len));
        }
        Ok(())
    }
    fn file_size(&self) -> io::Result<u64> {
        self.state.lock().alive()?;
        self.inner.file_size()
    }
    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        // Reserving blocks changes no content, so there is nothing to lose in a power loss.
        self.state.lock().check(FaultOp::Preallocate)?;
        self.inner.preallocate(offset, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(FaultOp::Sync)?;
        self.inner.sync_data()?;
        if let Some(node) = s.nodes.get_mut(&self.id) {
            let pending = std::mem::take(&mut node.pending);
            for op in &pending {
                apply(&mut node.durable, op);
            }
        }
        Ok(())
    }
}

/// splitmix64: a tiny deterministic generator, so crash states replay from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
