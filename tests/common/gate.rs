//! A file system whose next segment fsync, once armed, waits for the test to release it: a
//! slow disk under the test's control, for races around a `Synced` write's fsync.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use brooklet::io::{FaultFs, OpenMode, Vfs, VfsFile};

/// One pause point for [`GateFs`]: the next `.log` fsync blocks until released.
#[derive(Default)]
pub struct Gate {
    /// (armed, entered, released)
    pub state: std::sync::Mutex<(bool, bool, bool)>,
    pub changed: std::sync::Condvar,
}

impl Gate {
    /// Waits until `what` holds of the state.
    pub fn wait_until(&self, what: impl Fn(&(bool, bool, bool)) -> bool) {
        let mut s = self.state.lock().unwrap();
        while !what(&s) {
            s = self.changed.wait(s).unwrap();
        }
    }

    /// Changes the state and wakes the waiters.
    pub fn set(&self, f: impl FnOnce(&mut (bool, bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    /// Holds the next `.log` fsync at the gate.
    pub fn arm(&self) {
        self.set(|s| s.0 = true);
    }

    /// Waits until an fsync is held at the gate.
    pub fn wait_entered(&self) {
        self.wait_until(|s| s.1);
    }

    /// Lets the held fsync (and every later one) through.
    pub fn release(&self) {
        self.set(|s| s.2 = true);
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

/// `FaultFs` whose next segment fsync, once armed, waits for the test to release it.
#[derive(Debug, Clone)]
pub struct GateFs {
    pub inner: FaultFs,
    pub gate: Arc<Gate>,
}

#[derive(Debug)]
struct GateFile {
    inner: Box<dyn VfsFile>,
    is_log: bool,
    gate: Arc<Gate>,
}

impl VfsFile for GateFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> std::io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn file_size(&self) -> std::io::Result<u64> {
        self.inner.file_size()
    }
    fn sync_data(&self) -> std::io::Result<()> {
        let armed = self.is_log && {
            let mut s = self.gate.state.lock().unwrap();
            std::mem::replace(&mut s.0, false)
        };
        if armed {
            self.gate.set(|s| s.1 = true);
            self.gate.wait_until(|s| s.2);
        }
        self.inner.sync_data()
    }
}

impl Vfs for GateFs {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(GateFile {
            inner: self.inner.open(path, mode)?,
            is_log: path.extension().is_some_and(|e| e == "log"),
            gate: Arc::clone(&self.gate),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        self.inner.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
}

/// [`GateFs`] whose gate holds only an fsync of the committed-offsets log (under `offsets/`
/// in the data directory): the partitions' own fsyncs pass.
#[derive(Debug, Clone)]
pub struct OffsetsGateFs(pub GateFs);

impl Vfs for OffsetsGateFs {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(GateFile {
            inner: self.0.inner.open(path, mode)?,
            is_log: path.extension().is_some_and(|e| e == "log")
                && path.components().any(|c| c.as_os_str() == "offsets"),
            gate: Arc::clone(&self.0.gate),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        self.0.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.0.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.0.sync_dir(path)
    }
}
