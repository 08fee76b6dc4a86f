//! [`PartitionLog`]: one partition's ordered, append-only log of record batches.
//!
//! # Directory
//! ```text
//! <dir>/
//!   LOCK                              exclusive lock (File::try_lock), held while open;
//!                                     only by a standalone log (a broker's partitions
//!                                     are covered by the data directory's LOCK)
//!   00000000000000000000.log          batches (see crate::record::batch)
//!   00000000000000000000.index        sparse offset index   (see index)
//!   00000000000000000000.timeindex    time index
//!   …one triple per segment, named by its base offset…
//!   recovery-point                    checkpoint: offset below which all is synced
//!   log-start-offset                  checkpoint: first offset still readable
//!   clean-shutdown                    checkpoint: [end offset, active base, active size]
//!   truncations                       checkpoint: [cuts started, cuts finished, end the
//!                                     last cut left, cuts settled], which read-only
//!                                     readers follow
//! ```
//!
//! # Crash safety, argued case by case
//! - **Torn or lost tail.** A crash can leave the last batches partly written or filled with
//!   garbage (the file size reached disk before the data). Without a valid `clean-shutdown`
//!   marker, open scans every segment from the one holding the recovery point, validates each
//!   batch's length, CRC, records and offsets, truncates at the first invalid byte, deletes
//!   any later segment, and reports what it dropped ([`RecoveryReport`]).
//! - **Acknowledged data.** `Synced` appends return only after `fdatasync` of every segment
//!   written since the last sync, and of the directory when a segment was created; so the
//!   scan finds them intact. `Written` data survives a process crash (page cache).
//! - **Checkpoints** are replaced atomically and checksummed (see `checkpoint`): a crash
//!   leaves the old or the new value, never garbage.
//! - **Clean open.** The marker records the end offset and the active segment's size; it is
//!   trusted only if the size still matches, and removed (durably) before the first append,
//!   so a later crash is never mistaken for a clean stop.
//! - **Retention** persists the new log start offset before deleting files; open finishes an
//!   interrupted deletion; a deletion that fails is retried by the next retention check.
//!   **Truncation** first lowers and persists the recovery point to the new end and counts
//!   the truncation as begun in the `truncations` file, then deletes later segments highest
//!   first, then cuts and syncs the segment holding the cut, then counts it as finished:
//!   a crash midway leaves a prefix of the old log, never a hole (see
//!   [`PartitionLog::truncate_to`]), and the next open counts it as finished. A failure
//!   after its first deletion poisons the log. Read-only readers follow finished ones.
//! - **Failed fsync.** After `fdatasync` fails the kernel may have dropped the dirty pages, so
//!   the log is poisoned: appends and flushes return [`Error::Poisoned`] until it is reopened
//!   and has recovered from what is really on disk. A failed `write` is rolled back (the file
//!   is cut back to its previous length) and the log stays usable.
//!
//! # Concurrency
//! Appends serialize on one mutex. A read inside the visible log does not take it: it sees
//! batches up to an end offset published (release/acquire) after the bytes reach the OS, and
//! reads with `pread`. (A read of an offset outside the log start and the visible end takes
//! it briefly, to report or check the log end, and so may wait for an append, a roll or a
//! truncation in progress; a reader that loads or rebuilds a sealed segment's index holds
//! that segment's index lock meanwhile.)
//! `Synced` appends share fsyncs (group commit, leader/follower): a caller whose records are
//! not yet synced either leads a round — it takes the sync turn, collects everything written
//! so far, fsyncs it and publishes the synced end — or, while another round is running,
//! waits for that round to finish (on a condition variable, not behind the sync mutex) and
//! then checks again: its records are covered if they were written before the round
//! collected, otherwise the next round covers them with all that was written meanwhile.
//! Before a round starts it gathers: the senders the previous round released are busy
//! writing their next records, so the first caller waits briefly (at most half the last
//! fsync, at most 500 µs) until as many callers have come as were syncing concurrently, and
//! the caller that completes that count leads the round at once — nobody is woken to start
//! it, and the released senders join this round instead of the one after. A lone caller
//! never waits. Callers already covered never wait for a later round.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::record::now_ms;

use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock};

use super::checkpoint;
use super::index::{Extent, OFFSET_ENTRY, SegmentIndex};
use super::io::{HeldDir, OsFs, Vfs};
use super::mapped::{self, WriteMap};
use super::notify::Watchers;
use super::segment::{
    Fetched, INDEX_SUFFIX, LOG_SUFFIX, Segment, SpareBuffer, TIME_INDEX_SUFFIX, parse_segment_name, segment_path,
};
use crate::config::{Durability, Limits, LogConfig};
use crate::error::{Error, Result};
use crate::record::batch::{self, EncodeOptions, EncodeScratch, EncodedInfo};
use crate::record::{Compression, Record, RecordBatch, TimestampType};

const LOCK_FILE: &str = "LOCK";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// `[started, finished, end, settled]`: how many truncations the writer began and
/// completed, the end the last one left, and how many of them the owner's hook ran for (a
/// broker's committed offsets lowered). Absent until the first truncation. A read-only
/// reader whose view predates a finished one reloads the segment list (see
/// [`PartitionLog::refresh`]).
const TRUNCATIONS_FILE: &str = "truncations";

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// Largest timestamp in the batch: the append time when the log uses
    /// [`LogAppendTime`](crate::record::TimestampType::LogAppendTime).
    pub max_timestamp: i64,
    /// The time of the append, ms since the epoch: the timestamp of records appended
    /// without one.
    pub append_time: i64,
    /// Size of the batch as stored (compressed, if it is), in bytes.
    pub size_bytes: usize,
    /// The timestamp type the batch was stored with: the log's at the time of the append
    /// (it can change, see [`PartitionLog::set_config`]).
    pub timestamp_type: TimestampType,
}

/// How [`PartitionLog::append_with`] appends a batch.
///
/// # Examples
/// ```
/// use brooklet::{AppendOptions, Compression, Durability, LogConfig, PartitionLog, Record};
/// let dir = tempfile::tempdir()?;
/// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
/// let options = AppendOptions { durability: Durability::Written, compression: Compression::Zstd };
/// log.append_with(&[Record::new().value("a"), Record::new().value("b")], options)?;
/// let batch = &log.read(0, 1 << 20)?[0];
/// assert_eq!(batch.compression(), Some(Compression::Zstd));
/// assert_eq!(batch.records().count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOptions {
    /// How far the batch must get before the call returns. Default = `Written`.
    pub durability: Durability,
    /// Codec for the batch's records (Kafka's `compression.type`). Default = none. The
    /// batch header stays uncompressed; see [`record::batch`](crate::record::batch) for the
    /// framing of each codec.
    pub compression: Compression,
}

/// What open found and did. After a clean shutdown it scanned nothing for recovery (see
/// [`clean_shutdown`](Self::clean_shutdown)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A valid clean-shutdown marker was found, so no recovery scan ran: the counters below
    /// are 0. If the active segment's index files were missing or invalid, open still read
    /// that one segment to rebuild them (and treated the shutdown as unclean if that read
    /// did not end at the marker's end offset).
    pub clean_shutdown: bool,
    /// Segments whose batches were scanned and validated.
    pub segments_scanned: usize,
    /// Batches validated by the scan.
    pub batches_scanned: u64,
    /// Bytes validated by the scan.
    pub bytes_scanned: u64,
    /// Where the log was cut, if the scan found an invalid batch.
    pub truncation: Option<Truncation>,
    /// Base offsets of segments deleted because they followed the cut or lay below the log
    /// start offset.
    pub segments_deleted: Vec<u64>,
    /// Offset after the last record, after recovery.
    pub log_end_offset: u64,
}

/// A cut made by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file that was cut.
    pub path: PathBuf,
    /// Its new length: the first invalid byte.
    pub position: u64,
    /// Bytes removed from that file.
    pub bytes_removed: u64,
    /// Why the bytes at `position` were invalid.
    pub reason: String,
    /// Every byte removed was zero: no batch was cut, only space past the last one. That is
    /// what a writer with [`LogConfig::mapped_writes`] leaves after every crash (the file
    /// is extended ahead of its writes), so it is logged at info level, not as a warning.
    /// Without mapped writes it can also be writes a power loss lost after the file had
    /// grown (unsynced records, which `Synced` never acknowledged).
    pub zeros_only: bool,
}

/// Counters of the fsyncs a log ran, from [`PartitionLog::sync_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// fsync rounds (each syncs every segment written since the previous one).
    pub syncs: u64,
    /// Total time spent in them.
    pub sync_time: std::time::Duration,
}

/// What [`PartitionLog::enforce_retention`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Base offsets of the deleted segments.
    pub segments_deleted: Vec<u64>,
    /// Bytes freed.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
}

/// Who leads the current group-commit round, how many rounds have finished, and how many
/// callers sync concurrently (to gather a round).
#[derive(Debug, Default)]
struct Rounds {
    /// A caller is running a round (it holds, or is about to take, the sync turn).
    leading: bool,
    /// Rounds finished so far, successfully or not.
    finished: u64,
    /// Callers in `sync_through` whose records were not synced when they came.
    inside: u64,
    /// The most callers inside at once since the last round collected: how many callers
    /// sync concurrently, so how many the next round should gather.
    peak: u64,
    /// Such callers that came, ever.
    arrivals: u64,
    /// `arrivals` when the last round collected.
    collected_at: u64,
    /// The latest time the round being gathered starts (set by its first caller); `None`
    /// while no round is being gathered.
    gather_until: Option<Instant>,
    /// Callers parked on `round_done` (the end of a round wakes them only if there are any).
    sleepers: u64,
}

/// The longest the first caller of a round waits for the others to gather into it.
const MAX_GATHER: Duration = Duration::from_micros(500);

/// The longest a group-commit caller yields its CPU in a loop before it parks, and the
/// longest fsync for which callers yield at all (see [`PartitionLog::await_round`]).
const MAX_YIELD: Duration = Duration::from_micros(250);

/// The lead of a group-commit round: dropping it ends the round, counts the leader out of
/// the callers inside, and wakes the followers.
struct RoundLead<'a>(&'a PartitionLog);

impl Drop for RoundLead<'_> {
    fn drop(&mut self) {
        let mut rounds = self.0.rounds();
        rounds.leading = false;
        rounds.finished = rounds.finished.wrapping_add(1);
        self.0.rounds_finished.store(rounds.finished, Ordering::Release);
        rounds.inside = rounds.inside.saturating_sub(1);
        // Read under the lock: a caller parks only after seeing, under it, that the round
        // it waits for has not finished, so none parked after this reading can miss it.
        let parked = rounds.sleepers > 0;
        drop(rounds);
        if parked {
            self.0.round_done.notify_all();
        }
    }
}

/// What one group-commit round must fsync.
struct Unsynced {
    sealed: Vec<Arc<Segment>>,
    active: Arc<Segment>,
    /// Every record below this is covered.
    end: u64,
    dir_dirty: bool,
}

/// How many sealed segments of a log may have their indexes in memory at once (the
/// active segment's are always in memory). A segment's indexes take about 20 bytes per
/// 4 KiB of log, so without a bound a reader going through the whole log would keep 0.5%
/// of its size in memory for good; with it, at most this many segments' worth (about 5 MiB
/// each at the default 1 GiB segments). Readers at a few places in the log each keep
/// theirs loaded; one more load unloads the least recently used.
pub(crate) const LOADED_SEALED_INDEXES: usize = 4;

/// How many recent truncations [`Cuts`] remembers. A waiter older than all of them is
/// treated as cut (it gets an error, never a false success).
const MAX_CUTS: usize = 64;

/// The active segment reserves disk blocks ahead of its writes once it holds this much, and
/// at least this much at a time (up to [`LogConfig::preallocate_bytes`]): small partitions
/// never reserve, and a growing one reserves in steps that a batch rarely outgrows.
const RESERVE_MIN: u64 = 1024 * 1024;
/// With [`LogConfig::mapped_writes`], the least the active segment's file is extended by
/// ahead of its writes (each extension is one `fallocate(2)`).
const MAP_STEP_MIN: u64 = 64 * 1024;

/// The log ends that recent truncations left, so that a `Synced` append whose fsync waited
/// behind a truncation can tell whether its offsets were cut (and possibly reused).
#[derive(Debug, Default)]
struct Cuts {
    /// `(epoch after the truncation, log end it left)`, oldest first.
    recent: std::collections::VecDeque<(u64, u64)>,
    /// A writer's: what its `truncations` file holds, `[started, finished, end, settled]`
    /// (after a failed write of it, the higher counts it may hold).
    persisted: [u64; 4],
}

impl Cuts {
    /// Records a truncation that made the epoch `epoch` and left the log ending at `end`.
    fn record(&mut self, epoch: u64, end: u64) {
        if self.recent.len() == MAX_CUTS {
            self.recent.pop_front();
        }
        self.recent.push_back((epoch, end));
    }

    /// The lowest log end any truncation after `epoch` left (`current` is the epoch now);
    /// `None` if there was none. If the history no longer reaches back to `epoch`, 0: every
    /// offset may have been cut.
    fn lowest_end_since(&self, epoch: u64, current: u64) -> Option<u64> {
        if epoch >= current {
            return None;
        }
        let oldest = self.recent.front().map_or(current, |(e, _)| *e);
        if epoch.saturating_add(1) < oldest {
            return Some(0);
        }
        self.recent
            .iter()
            .filter(|(e, _)| *e > epoch)
            .map(|(_, end)| *end)
            .min()
    }
}

/// What a read-only log makes of a read that found less than its view of the files
/// promised ([`PartitionLog::explain_short_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShortRead {
    /// A truncation of the writer's was followed since the read began: read again.
    Followed,
    /// The writer is cutting the files, or cut them since the refresh: an empty answer,
    /// until a later read follows the cut.
    CutNotFollowed,
    /// No truncation explains it: damage, as for a writable log.
    Unexplained,
}

/// The append side: only touched under `PartitionLog::writer`.
#[derive(Debug)]
struct Writer {
    active: Arc<Segment>,
    /// Encoded batches not yet handed to the OS; they start at `active.size()`.
    buffer: Vec<u8>,
    /// Offset the next record gets.
    next_offset: u64,
    /// Sealed segments written since the last sync.
    unsynced_sealed: Vec<Arc<Segment>>,
    /// Segments retention took out of the log (they are below the log start) whose files
    /// a failed deletion left, oldest first: the next retention check deletes them before
    /// anything else.
    undeleted: Vec<Arc<Segment>>,
    /// A segment file was created since the last directory sync.
    dir_dirty: bool,
    /// When the active segment got its first append in this process (for `segment_ms`).
    active_since: Option<Instant>,
    /// Reused by compressed appends: records are encoded here, then compressed into `buffer`.
    scratch: EncodeScratch,
    /// The settings the writer follows (appends, rolls, retention): a copy of the log's
    /// `config`, replaced together with it by [`PartitionLog::set_config`], so the append
    /// path reads them under the lock it already holds.
    config: LogConfig,
    /// End of the disk blocks reserved ahead of the active segment's writes
    /// ([`LogConfig::preallocate_bytes`]); 0 when none are known to be. Reset whenever the
    /// active segment changes or its file is cut. Past the length at an unclean open: a
    /// writer that did not close may have left some. With
    /// [`LogConfig::mapped_writes`], the end the file was extended to (zeros past the last
    /// batch, which a seal or close cuts off).
    reserved_end: u64,
    /// With [`LogConfig::mapped_writes`]: the active segment's map and how far stores into
    /// it may go. Dropped (`None`) before anything changes the file's length.
    mapped: Option<MappedTail>,
    /// Mapping the active segment failed (e.g. no address space, or `vm.max_map_count`
    /// reached): it is written with `write(2)`, and not mapped again until the active
    /// segment changes or its file is cut.
    map_failed: bool,
}

/// The active segment's shared map ([`LogConfig::mapped_writes`]).
#[derive(Debug)]
struct MappedTail {
    /// The segment mapped: a map of any other (a sealed or deleted one) is not used.
    segment: Arc<Segment>,
    map: WriteMap,
    /// The end the writer extended the file to, with its blocks allocated: stores go only
    /// below it (see `mapped`).
    end: u64,
}

impl Writer {
    /// Forgets the reservation and the map: call before anything changes the active
    /// segment's file length, and whenever the active segment changes.
    fn forget_reserved(&mut self) {
        self.mapped = None;
        self.map_failed = false;
        self.reserved_end = 0;
    }
}

/// One partition's log: segments of record batches with offset and time indexes.
///
/// `PartitionLog` is `Send + Sync`: share it with `Arc` and append and read from any thread.
/// Dropping it closes it cleanly (errors are logged); call [`close`](Self::close) to see them.
///
/// # Examples
/// ```
/// use brooklet::{Durability, LogConfig, PartitionLog, Record};
///
/// let dir = tempfile::tempdir()?;
/// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
/// let info = log.append(&[Record::new().key("user-1").value("clicked")], Durability::Written)?;
/// assert_eq!((info.base_offset, log.log_end_offset()), (0, 1));
/// for batch in log.read(0, 1 << 20)? {
///     for record in batch.records() {
///         let record = record?;
///         assert_eq!(record.value.as_deref(), Some(&b"clicked"[..]));
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    /// The current settings (see [`PartitionLog::set_config`]); the writer keeps a copy.
    /// Read by copying out: no lock is held across this one.
    config: RwLock<LogConfig>,
    /// `config`'s effective batch limit, read by every producer send without a lock.
    max_batch_bytes: AtomicU32,
    /// `config.verify_checksums`, read by every fetch without a lock.
    verify_checksums: AtomicBool,
    vfs: Arc<dyn Vfs>,
    _lock: Option<DirLock>,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// Counts uses of sealed segments' indexes, for unloading the least recently used.
    index_ticks: AtomicU64,
    writer: Mutex<Writer>,
    /// The group-commit turn; it also guards the history of recent truncations.
    sync_lock: Mutex<Cuts>,
    /// Group-commit coordination: whether a round is running. Never held across an fsync.
    /// (A std mutex and condvars: a finished round wakes every follower at once, where
    /// parking_lot's `notify_all` wakes them one after another as each releases the mutex.)
    rounds: std::sync::Mutex<Rounds>,
    /// Signalled when a round finishes and callers are parked on it.
    round_done: std::sync::Condvar,
    /// `Rounds::finished`, for callers waiting without the lock.
    rounds_finished: AtomicU64,
    /// How long the last fsync round took, in nanoseconds (bounds the gathering).
    last_sync_nanos: AtomicU64,
    /// Truncations so far (the truncation epoch). Bumped under both the writer lock and the
    /// sync turn, so an append reads, under the writer lock, the epoch it happened in.
    truncations: AtomicU64,
    /// Truncations whose cut readers see: bumped once the log's end, segment sizes and
    /// segment list no longer reach the records cut (after `truncations`, which moves
    /// first, for `Synced` appends). A reader that read this before a read knows the read
    /// saw no record cut by a truncation counted in it.
    cuts_seen: AtomicU64,
    /// A read-only log's: the writer's finished truncations (its `truncations` file) that
    /// its view of the segments reflects (see [`PartitionLog::refresh`]), and the
    /// truncation epoch here after the last was followed: once the writer's hook ran for
    /// them (`settled`), the epoch is settled here too. Both changed under the writer lock.
    followed_cuts: AtomicU64,
    followed_epoch: AtomicU64,
    log_start: AtomicU64,
    /// Bytes of the segments in `Writer::undeleted`, counted by `size_bytes`.
    undeleted_bytes: AtomicU64,
    /// The value in the `recovery-point` file (written under the sync turn only); after a
    /// failed write of it, the higher of the values it may hold.
    recovery_point: AtomicU64,
    /// A sync after a roll could not persist the recovery point: the next sync retries.
    recovery_point_behind: AtomicBool,
    /// Records below this are in the OS and readable.
    visible_end: AtomicU64,
    /// Records below this are synced.
    synced_end: AtomicU64,
    syncs: AtomicU64,
    sync_nanos: AtomicU64,
    poisoned: AtomicBool,
    closed: AtomicBool,
    deleted: AtomicBool,
    recovery: RecoveryReport,
    /// Consumers to wake when records become visible.
    watchers: Watchers,
    /// Opened with [`PartitionLog::open_read_only`]: every write fails with
    /// [`Error::ReadOnly`], and the visible end follows the files (see [`PartitionLog::refresh`]).
    read_only: bool,
    /// A read-only log's directory, held to tell when its path names another directory
    /// (see [`PartitionLog::refresh`]); `None` for a writable log.
    held_dir: Option<HeldDir>,
    /// The damage a writable open found, for a partition a broker opened read-only instead
    /// ([`DamagePolicy::Offline`](crate::DamagePolicy::Offline)): every write fails with it.
    damage: Option<Error>,
    /// What the log's owner runs after each truncation.
    on_cut: OnCut,
    /// A close leaves no clean-shutdown marker while set (see
    /// [`hold_clean_close`](Self::hold_clean_close)).
    clean_close_held: AtomicBool,
    /// Held across a whole [`truncate_to`](Self::truncate_to), the cut and the owner's
    /// hook, so that hooks run in the order of their cuts; holds the lowest end a cut left
    /// whose hook failed, which the next truncation's hook is run with (it still owes it).
    truncating: Mutex<Option<u64>>,
    /// The truncation epoch up to which every truncation's hook has run (see
    /// [`settled_cut_epoch`](Self::settled_cut_epoch)).
    cuts_settled: AtomicU64,
}

/// What a log's owner runs after a [`PartitionLog::truncate_to`], with the log end it left:
/// a broker lowers its groups' committed offsets past that end to it.
pub(crate) type CutHook = Box<dyn Fn(u64) -> Result<()> + Send + Sync>;

/// A log's [`CutHook`], set once.
#[derive(Default)]
struct OnCut(std::sync::OnceLock<CutHook>);

impl std::fmt::Debug for OnCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "OnCut(set)"
        } else {
            "OnCut(none)"
        })
    }
}

/// A directory's held lock file: unlocked explicitly when dropped.
///
/// The lock (`flock`) belongs to the open file, which a child process this one spawns
/// shares from its fork until its `exec` closes it (the descriptor is close-on-exec). Only
/// closing our descriptor would leave the directory locked for that moment, so a reopen
/// right after a close could fail with [`Error::Locked`] while another thread spawns a
/// process; unlocking releases it for every descriptor at once.
#[derive(Debug)]
pub(crate) struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        // An unlock that fails leaves the lock to the close that follows.
        let _ = self.0.unlock();
    }
}

/// Takes the directory's lock file, failing at once if it is held.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock(file)),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io("lock directory", &path, e)),
    }
}

/// What an open found, to build a [`PartitionLog`] from.
struct Opening {
    dir: PathBuf,
    config: LogConfig,
    vfs: Arc<dyn Vfs>,
    lock: Option<DirLock>,
    segments: BTreeMap<u64, Arc<Segment>>,
    active: Arc<Segment>,
    next_offset: u64,
    active_since: Option<Instant>,
    log_start: u64,
    recovery_point: u64,
    recovery: RecoveryReport,
}

impl PartitionLog {
    /// The log over what an open found: writable, or read-only (then `read_only` and no lock).
    fn assemble(o: Opening, read_only: bool) -> PartitionLog {
        // A writer that did not close (killed, or its close failed) may have left blocks
        // reserved past the active segment's end: an end just past its length makes the
        // first seal or close give them back (a write past it reserves anew).
        let reserved_end = if o.recovery.clean_shutdown || read_only {
            0
        } else {
            o.active.size().saturating_add(1)
        };
        PartitionLog {
            max_batch_bytes: AtomicU32::new(o.config.effective_max_batch_bytes()),
            verify_checksums: AtomicBool::new(o.config.verify_checksums),
            config: RwLock::new(o.config.clone()),
            vfs: o.vfs,
            _lock: o.lock,
            segments: RwLock::new(o.segments),
            index_ticks: AtomicU64::new(0),
            writer: Mutex::new(Writer {
                active: o.active,
                buffer: Vec::new(),
                next_offset: o.next_offset,
                unsynced_sealed: Vec::new(),
                undeleted: Vec::new(),
                dir_dirty: false,
                active_since: o.active_since,
                scratch: EncodeScratch::default(),
                reserved_end,
                mapped: None,
                map_failed: false,
                config: o.config,
            }),
            sync_lock: Mutex::new(Cuts::default()),
            rounds: std::sync::Mutex::new(Rounds::default()),
            round_done: std::sync::Condvar::new(),
            rounds_finished: AtomicU64::new(0),
            last_sync_nanos: AtomicU64::new(0),
            truncations: AtomicU64::new(0),
            cuts_seen: AtomicU64::new(0),
            followed_cuts: AtomicU64::new(0),
            followed_epoch: AtomicU64::new(0),
            log_start: AtomicU64::new(o.log_start),
            undeleted_bytes: AtomicU64::new(0),
            recovery_point: AtomicU64::new(o.recovery_point),
            recovery_point_behind: AtomicBool::new(false),
            visible_end: AtomicU64::new(o.next_offset),
            synced_end: AtomicU64::new(o.next_offset),
            syncs: AtomicU64::new(0),
            sync_nanos: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            recovery: o.recovery,
            watchers: Watchers::default(),
            read_only,
            held_dir: None,
            damage: None,
            on_cut: OnCut::default(),
            clean_close_held: AtomicBool::new(false),
            truncating: Mutex::new(None),
            cuts_settled: AtomicU64::new(0),
            dir: o.dir,
        }
    }

    /// Opens the partition log in `dir`, creating the directory if needed, and recovers it
    /// if it was not closed cleanly.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad `config`; [`Error::Locked`] if the directory is open
    /// elsewhere (in this process or another); [`Error::Io`] if it cannot be read or written;
    /// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] for an unreadable checkpoint;
    /// [`Error::Corrupt`] if, after a crash, records below the recovery point (synced) are
    /// damaged: recovery does not cut synced records, and the error names the way to accept
    /// the loss (removing the `recovery-point` file).
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        Self::open_with_vfs(dir, config, Arc::new(OsFs))
    }

    /// Opens the log doing all file I/O through `vfs` (the lock file excepted), e.g. a
    /// [`FaultFs`](crate::io::FaultFs) in tests.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_vfs(dir: impl AsRef<Path>, config: LogConfig, vfs: Arc<dyn Vfs>) -> Result<Self> {
        Self::open_inner(dir.as_ref(), config, vfs, true)
    }

    /// Opens a partition whose exclusive access is guaranteed by its owner (the broker
    /// holds the data directory's lock), so it takes no lock of its own.
    pub(crate) fn open_owned(dir: &Path, config: LogConfig, vfs: Arc<dyn Vfs>) -> Result<Self> {
        Self::open_inner(dir, config, vfs, false)
    }

    fn open_inner(dir: &Path, config: LogConfig, vfs: Arc<dyn Vfs>, take_lock: bool) -> Result<Self> {
        config.validate()?;
        let dir = dir.to_path_buf();
        vfs.create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        // The directory's own entry must be durable too, or a power loss can take the whole
        // partition with it.
        checkpoint::sync_parent(&*vfs, &dir)?;
        let lock = if take_lock { Some(lock_dir(&dir)?) } else { None };
        let opened = Opened::load(&*vfs, &dir, &config)?;
        let Opened {
            segments,
            next_offset,
            log_start,
            recovery_point,
            recovery,
            active_since,
        } = opened;
        let active = segments
            .values()
            .next_back()
            .cloned()
            .ok_or_else(|| Error::corrupt(&dir, 0, "no active segment after open"))?;
        match recovery.truncation.as_ref() {
            Some(cut) if cut.zeros_only => tracing::info!(
                dir = %dir.display(),
                file = %cut.path.display(),
                position = cut.position,
                bytes_removed = cut.bytes_removed,
                "recovery cut the zeros past the last batch (space allocated ahead of writes)"
            ),
            Some(cut) => tracing::warn!(
                dir = %dir.display(),
                file = %cut.path.display(),
                position = cut.position,
                bytes_removed = cut.bytes_removed,
                reason = %cut.reason,
                "recovery truncated the log"
            ),
            None => {}
        }
        let truncations = settle_truncations(&*vfs, &dir, next_offset)?;
        let mut log = PartitionLog::assemble(
            Opening {
                dir,
                config,
                vfs,
                lock,
                segments,
                active,
                next_offset,
                active_since,
                log_start,
                recovery_point,
                recovery,
            },
            false,
        );
        log.sync_lock.get_mut().persisted = truncations;
        Ok(log)
    }

    /// Opens the log in `dir` for reading only, alongside a writer that may be appending to it
    /// in another process (or in this one, through another `PartitionLog`).
    ///
    /// It takes no lock, runs no recovery and writes nothing: no directory, checkpoint,
    /// marker or index file is created, changed or removed. It serves only complete batches
    /// whose checksum, records and offsets are valid: at open, and whenever a read reaches
    /// the end it knows ([`refresh`](Self::refresh)), it validates the new bytes of the last
    /// segment batch by batch and stops at the first one that is not (yet) whole; it moves to
    /// the next segment once the writer has created it. Sealed segments are trusted as the
    /// writer left them (as a clean open does); indexes missing from disk are rebuilt in
    /// memory only.
    ///
    /// It follows a writer's [`truncate_to`](Self::truncate_to) at its next refresh (see
    /// [`refresh`](Self::refresh)). What it does not follow: the truncation a writer's
    /// recovery makes after a crash, which cuts only bytes that were never a valid batch (a
    /// reader never served them), or, after a power loss, records the reader's own process
    /// lost with it. Nor a directory deleted, or replaced by a new one of the same name (a topic
    /// deleted and created again): it serves what its open files held and sees no more,
    /// taking the new files neither for more of its log nor for damage to it (a read-only
    /// [`Broker`](crate::Broker)'s `refresh_topics` opens the new topic). Every write — append, flush, retention, truncation — fails with
    /// [`Error::ReadOnly`]; dropping it writes nothing.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad `config`; [`Error::Io`] if the directory or a
    /// segment cannot be read (e.g. it does not exist: nothing is created);
    /// [`Error::Corrupt`] if it holds no segment or an unreadable checkpoint.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Durability, Error, LogConfig, PartitionLog, Record};
    /// let dir = tempfile::tempdir()?;
    /// let writer = PartitionLog::open(dir.path(), LogConfig::default())?;
    /// let reader = PartitionLog::open_read_only(dir.path(), LogConfig::default())?;
    /// writer.append(&[Record::new().value("a")], Durability::Written)?;
    /// assert_eq!(reader.read(0, 1 << 20)?.len(), 1); // picked up at the end it knew
    /// assert!(matches!(reader.append(&[Record::new()], Durability::Written), Err(Error::ReadOnly { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        Self::open_read_only_with_vfs(dir.as_ref(), config, Arc::new(OsFs))
    }

    /// Opens, read-only, a partition whose writable open failed with `damage`, leaving its
    /// files as they are: it reads up to the damage, as a read-only open does (a read there
    /// is the damage's error), and every write fails with `damage`.
    pub(crate) fn open_damaged(dir: &Path, config: LogConfig, vfs: Arc<dyn Vfs>, damage: Error) -> Result<Self> {
        let mut log = Self::open_read_only_with_vfs(dir, config, vfs)?;
        log.damage = Some(damage);
        Ok(log)
    }

    /// The damage that keeps this partition from taking writes: `Some` only for a partition
    /// a broker opened with [`DamagePolicy::Offline`](crate::DamagePolicy::Offline) after its
    /// open found damage (the error names the file and what to do).
    #[must_use]
    pub fn damage(&self) -> Option<&Error> {
        self.damage.as_ref()
    }

    pub(crate) fn open_read_only_with_vfs(dir: &Path, config: LogConfig, vfs: Arc<dyn Vfs>) -> Result<Self> {
        config.validate()?;
        let dir = dir.to_path_buf();
        let limits = config.limits();
        // Held before anything is read by path: if the directory is replaced after this,
        // the first refresh knows.
        let held_dir = HeldDir::open(&dir);
        // Read before the listing: a truncation finished after it is followed by a refresh.
        let followed = read_truncations(&*vfs, &dir).map_or(0, |[_, finished, ..]| finished);
        let (mut log_start, segments) = Self::open_listed_segments(&*vfs, &dir, limits)?;
        let active = segments
            .values()
            .next_back()
            .cloned()
            .ok_or_else(|| Error::corrupt(&dir, 0, "the partition has no segment file"))?;
        if let Some(first) = segments.keys().next() {
            log_start = log_start.max(*first);
        }
        // The last segment is validated (and indexed in memory) by the first refresh.
        active.size.store(0, Ordering::Release);
        active.set_index(SegmentIndex::new());
        let next_offset = active.base_offset;
        let mut log = PartitionLog::assemble(
            Opening {
                dir,
                config,
                vfs,
                lock: None,
                segments,
                active,
                next_offset,
                active_since: None,
                log_start,
                recovery_point: 0,
                recovery: RecoveryReport::default(),
            },
            true,
        );
        log.held_dir = held_dir;
        log.followed_cuts = AtomicU64::new(followed);
        log.refresh_with(false)?;
        Ok(log)
    }

    /// For a read-only open: the log start and the segments the directory lists (less
    /// those wholly below the log start), each opened. A listed segment may be gone by the
    /// time it is opened — the writer's retention deleted it, even the last one when its
    /// retention check sealed an expired active segment — so if none of them could be
    /// opened, the directory is listed again: the writer creates the next segment before it
    /// deletes the old ones, so a new listing finds it. Only a directory that lists no
    /// segment at all, or whose segments vanish listing after listing, has none.
    fn open_listed_segments(vfs: &dyn Vfs, dir: &Path, limits: Limits) -> Result<(u64, BTreeMap<u64, Arc<Segment>>)> {
        /// Listings tried before giving up on a directory whose segments keep vanishing.
        const ATTEMPTS: usize = 16;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let entries = vfs.read_dir(dir).map_err(|e| Error::io("list directory", dir, e))?;
            let mut bases = segment_bases(&entries);
            let log_start = read_log_start(vfs, dir)?;
            // Segments wholly below the log start are being (or were to be) deleted by retention.
            while let [_, second, ..] = bases[..] {
                if second > log_start {
                    break;
                }
                bases.remove(0);
            }
            let mut segments = BTreeMap::new();
            for &base in &bases {
                match Segment::open_read_only(vfs, dir, base, limits) {
                    Ok(segment) => {
                        segments.insert(base, Arc::new(segment));
                    }
                    // Retention by the writer deleted it after we listed it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("open segment", segment_path(dir, base, LOG_SUFFIX), e)),
                }
            }
            if !segments.is_empty() || bases.is_empty() || attempt == ATTEMPTS {
                return Ok((log_start, segments));
            }
        }
    }

    /// Whether the log was opened with [`open_read_only`](Self::open_read_only).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// How many truncations ([`truncate_to`](Self::truncate_to)) this log has had whose
    /// cut readers see. A reader that keeps batches reads it before its read, and checks
    /// it did not change since before using them again: else they may hold cut records.
    pub(crate) fn truncation_epoch(&self) -> u64 {
        self.cuts_seen.load(Ordering::Acquire)
    }

    /// The truncation epoch for [`lowest_cut_since`](Self::lowest_cut_since): a reader
    /// reads it when it knows its position valid, before reading on from there.
    pub(crate) fn cut_epoch(&self) -> u64 {
        self.truncations.load(Ordering::Acquire)
    }

    /// The lowest log end a truncation left since `epoch` (from
    /// [`cut_epoch`](Self::cut_epoch)), or `None` if there was none: one atomic load then.
    /// If the log's memory of truncations (the last 64) no longer reaches back to
    /// `epoch`, 0: any offset may have been cut.
    pub(crate) fn lowest_cut_since(&self, epoch: u64) -> Option<u64> {
        let current = self.truncations.load(Ordering::Acquire);
        if epoch >= current {
            return None;
        }
        // A truncation records its end under this lock when it bumps the epoch, so every
        // one counted in `current` is in the history now.
        self.sync_lock.lock().lowest_end_since(epoch, current)
    }

    /// The truncation epoch (as [`cut_epoch`](Self::cut_epoch)) up to which every
    /// truncation's hook has run: what the owner keeps about offsets of this log (a
    /// broker's committed offsets, which its hook lowers), read after this, reflects every
    /// truncation counted in it. A truncation after it — its hook still running, or failed
    /// — may have cut below such an offset: a reader that takes one checks it against the
    /// truncations since this epoch, with [`lowest_cut_since`](Self::lowest_cut_since).
    pub(crate) fn settled_cut_epoch(&self) -> u64 {
        self.cuts_settled.load(Ordering::Acquire)
    }

    /// Sets what runs after each truncation (once; later calls are ignored).
    pub(crate) fn set_cut_hook(&self, hook: CutHook) {
        let _ = self.on_cut.0.set(hook);
    }

    /// While `held`, a close syncs everything as usual but leaves no clean-shutdown marker,
    /// so the next open still finds the log not closed cleanly: for an owner with work
    /// that open must redo if it was not done — a broker lowering the committed offsets
    /// past the end of a log that was not closed cleanly, which an open that failed before
    /// it would otherwise leave undone for good.
    pub(crate) fn hold_clean_close(&self, held: bool) {
        self.clean_close_held.store(held, Ordering::Release);
    }

    /// For a read-only log: picks up what the writer appended since the last refresh — the
    /// complete, valid batches after the known end of the last segment, then those of any
    /// segment the writer rolled to — and the writer's current log start offset. Reads at
    /// the known end and [`log_end_offset`](Self::log_end_offset) call it. A no-op for a
    /// writable log.
    ///
    /// A reader that fell behind the writer's retention (the segment after its end deleted,
    /// the log start past it) jumps to the writer's segment at the log start, as a Kafka
    /// follower does; reads below the log start are then [`Error::OffsetOutOfRange`]. The
    /// segments wholly below the log start are dropped, so that their deleted files are not
    /// held open.
    ///
    /// A truncation the writer finished since ([`truncate_to`](Self::truncate_to), which
    /// counts it in the `truncations` file) is followed, as a Kafka follower truncates to its
    /// leader: the segments are listed again and the last one scanned from its start, and if
    /// the cut left the log below this view's end, the end moves down to it and consumers
    /// past it move back to it (as after a truncation in this process). Which offset the cut
    /// left is known when one truncation finished since the last refresh; after several,
    /// any may have been cut, and consumers move back to the log start. Committed offsets
    /// loaded once the writer's broker lowered them past the cuts (recorded in the same file)
    /// are taken as they are. A read that finds the files shorter than it knew (an empty
    /// answer below the end, a missing segment, bytes that are not a batch) refreshes by
    /// itself and reads again if that followed a cut; while a cut is under way it answers
    /// empty rather than report damage. Until the next refresh, a reader serves what its
    /// view of the files holds, as any reader that read before the cut got. A truncation a
    /// writer that crashed or failed midway left unfinished is followed once the next
    /// writable open finishes it.
    ///
    /// # Errors
    /// [`Error::Io`] if a segment or checkpoint cannot be read; [`Error::Corrupt`] for an
    /// unreadable log-start checkpoint. Bytes that are not a valid batch are not an error
    /// while a writer may be writing them: the visible end stops before them. But where
    /// the writer closed the log cleanly, its clean-shutdown marker says how far the last
    /// segment goes; valid batches that stop short of that are damage, reported as
    /// [`Error::Corrupt`] (a writable open would fail the same read), not a shorter log.
    /// Likewise valid batches that stop below the writer's recovery point (records it has
    /// synced), at or above its log start: [`Error::Corrupt`], as a writable open would
    /// fail. (Below the log start, the segments were deleted by retention: not damage.)
    pub fn refresh(&self) -> Result<()> {
        self.refresh_with(true)
    }

    /// [`refresh`](Self::refresh); with `fail_on_damage` false (at open, so that the rest
    /// of a damaged directory stays readable), damage short of the clean end is logged
    /// instead of returned: the next read at the end reports it.
    fn refresh_with(&self, fail_on_damage: bool) -> Result<()> {
        if !self.read_only {
            return Ok(());
        }
        // Read before the scan: whatever the scan then finds was written before the marker
        // (a writer that opens again removes the marker before it writes anything), and
        // before the recovery point (the writer syncs records before it raises the point,
        // and lowers the point before it cuts records).
        let marker = self.clean_shutdown_marker();
        let recovery_point = self.persisted_recovery_point();
        let mut truncations = read_truncations(&*self.vfs, &self.dir);
        // Lock order as in `cut_to`.
        let mut cuts = self.cut_to_follow(truncations).is_some().then(|| self.sync_lock.lock());
        let mut w = self.writer.lock();
        // Checked after each read by path: a directory that is still ours then was ours
        // when the read was made (a replaced one never comes back).
        let mut replaced = self.dir_replaced();
        let mut cut = None;
        if let Some(cuts) = cuts.as_mut()
            && !replaced
        {
            // Again under the locks: a concurrent refresh may have followed it meanwhile.
            truncations = read_truncations(&*self.vfs, &self.dir);
            cut = self.cut_to_follow(truncations);
            if let Some((finished, end)) = cut {
                self.follow_cut(&mut w, cuts, end)?;
                self.followed_cuts.store(finished, Ordering::Release);
                self.followed_epoch
                    .store(self.truncations.load(Ordering::Acquire), Ordering::Release);
            }
        }
        drop(cuts);
        // Committed offsets a reader loads now were lowered past the cuts followed, once the
        // writer's hook ran for them (a value read earlier is at most the current one).
        if let Some([.., settled]) = truncations
            && settled >= self.followed_cuts.load(Ordering::Acquire)
        {
            self.cuts_settled
                .fetch_max(self.followed_epoch.load(Ordering::Acquire), Ordering::AcqRel);
        }
        loop {
            let active = Arc::clone(&w.active);
            let (start, next) = (active.size(), w.next_offset);
            let progress = active
                .with_index_mut(|index| active.scan_into(start, next, index))
                .ok_or_else(|| Error::corrupt(&active.log_path, 0, "read-only tail segment has no index"))??;
            if progress.valid_len > start {
                active.size.store(progress.valid_len, Ordering::Release);
                w.next_offset = progress.next_offset;
            }
            // The writer creates the next segment only after writing every batch of this
            // one, so once it exists at our end, this segment is complete.
            let base = w.next_offset;
            if base == active.base_offset || replaced {
                break;
            }
            let limits = self.config.read().limits();
            let segment = match Segment::open_read_only(&*self.vfs, &self.dir, base, limits) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match self.segment_past_retention(&active, base)? {
                        Some(s) => s,
                        None => break,
                    }
                }
                Err(e) => return Err(Error::io("open segment", segment_path(&self.dir, base, LOG_SUFFIX), e)),
            };
            if self.dir_replaced() {
                replaced = true;
                break;
            }
            // After a jump past retention, the end is the segment's base (past `base`); only
            // once the segment is known to be this log's.
            w.next_offset = segment.base_offset;
            segment.size.store(0, Ordering::Release);
            segment.set_index(SegmentIndex::new());
            let segment = Arc::new(segment);
            // Under its own base: after a jump, that is past `base`.
            self.segments.write().insert(segment.base_offset, Arc::clone(&segment));
            // Sealed now, with the index files the writer wrote before it rolled: take those
            // for the indexes scanned into memory, so that they may be unloaded as any sealed
            // segment's (else a reader following a writer keeps every segment's).
            if active.adopt_index_files(&*self.vfs, segment.base_offset, || !self.dir_replaced()) {
                self.unload_cold_indexes(segment.base_offset);
            }
            w.active = segment;
        }
        // Read after the scan: retention persists a new log start before it deletes
        // segments, so a segment the scan found deleted lies below this.
        let start = read_log_start(&*self.vfs, &self.dir)?;
        if replaced || self.dir_replaced() {
            // Deleted, or replaced by a new directory of the name (a topic deleted and
            // created again): what the paths name now is not this log's — neither more of
            // it nor damage to it. What its own open files held is served; no more.
            self.publish_read_only_end(w.next_offset);
            return Ok(());
        }
        if let Some(&[end, base, size]) = marker.as_deref()
            && base == w.active.base_offset
            && w.active.size() < size
            && self.clean_shutdown_marker() == marker
            && self.no_cut_raced(cut.is_some(), truncations)
            && !self.dir_replaced()
        {
            let damage = Error::corrupt(
                &w.active.log_path,
                w.active.size(),
                format!(
                    "the log was closed cleanly at offset {end} with {size} bytes in this segment, but its batches \
                     stop being valid at offset {} (byte {})",
                    w.next_offset,
                    w.active.size()
                ),
            );
            if fail_on_damage {
                return Err(damage);
            }
            tracing::warn!(error = %damage, "read-only log: damaged before its clean end");
        } else if let Some(point) = recovery_point
            && w.next_offset < point
            // A reader that fell behind the writer's retention finds the segment after its
            // own deleted: the records from its end on are below the log start, not damaged.
            && w.next_offset >= start
            && self.persisted_recovery_point() == recovery_point
            && self.no_cut_raced(cut.is_some(), truncations)
            && !self.dir_replaced()
        {
            let damage = vouched_damage(
                &self.dir,
                &w.active.log_path,
                w.active.size(),
                point,
                w.next_offset,
                "the next bytes are not a valid batch",
            );
            if fail_on_damage {
                return Err(damage);
            }
            tracing::warn!(error = %damage, "read-only log: damaged below its recovery point");
        }
        self.log_start.fetch_max(start.min(w.next_offset), Ordering::AcqRel);
        self.forget_segments_below(start);
        self.publish_read_only_end(w.next_offset);
        Ok(())
    }

    /// For a read-only log: a truncation the writer finished that its view does not reflect
    /// yet, as (the writer's count of finished truncations, the end it left — or 0 when
    /// more than one finished since, and any offset may have been cut). `None` while one is
    /// in progress: the refresh after it finishes follows it.
    fn cut_to_follow(&self, truncations: Option<[u64; 4]>) -> Option<(u64, u64)> {
        let [started, finished, end, _] = truncations?;
        let followed = self.followed_cuts.load(Ordering::Acquire);
        if started != finished || finished == followed {
            return None;
        }
        Some((finished, if finished == followed + 1 { end } else { 0 }))
    }

    /// Whether no truncation of the writer's ran during a refresh that read its
    /// `truncations` file as `before` at its start and `followed` one or not: else the
    /// files may be shorter than the marker or recovery point read before said, and a
    /// later refresh follows the cut — not damage.
    fn no_cut_raced(&self, followed: bool, before: Option<[u64; 4]>) -> bool {
        let counts = |t: Option<[u64; 4]>| t.map(|[started, finished, ..]| (started, finished));
        !followed && counts(read_truncations(&*self.vfs, &self.dir)) == counts(before)
    }

    /// A read-only log takes a truncation of the writer's, as a Kafka follower truncates to
    /// its leader: it lists the segments again and scans the last one from its start, as
    /// an open does, then swaps them in. If the cut left the log below this view's end, it
    /// counts as a truncation here: the end is lowered to it, and consumers past it move
    /// back to it (see [`truncate_to`](Self::truncate_to)). Call with the sync turn.
    ///
    /// # Errors
    /// As [`open_read_only`](Self::open_read_only) for the segments listed; the view is
    /// then left as it was.
    fn follow_cut(&self, w: &mut Writer, cuts: &mut Cuts, cut_end: u64) -> Result<()> {
        let limits = self.config.read().limits();
        let (_, segments) = Self::open_listed_segments(&*self.vfs, &self.dir, limits)?;
        let active = segments
            .values()
            .next_back()
            .cloned()
            .ok_or_else(|| Error::corrupt(&self.dir, 0, "the partition has no segment file"))?;
        let mut index = SegmentIndex::new();
        let progress = active.scan_into(0, active.base_offset, &mut index)?;
        active.size.store(progress.valid_len, Ordering::Release);
        active.set_index(index);
        // A cut begun since the truncation followed may have left the files shorter still.
        let cut_end = cut_end.min(progress.next_offset);
        tracing::info!(dir = %self.dir.display(), end = cut_end, "read-only log: the writer truncated the log");
        if cut_end < w.next_offset {
            self.note_cut(cuts, cut_end);
            self.visible_end.fetch_min(cut_end, Ordering::AcqRel);
            self.synced_end.fetch_min(cut_end, Ordering::AcqRel);
        }
        *self.segments.write() = segments;
        // Readers no longer reach the records cut.
        self.cuts_seen.fetch_add(1, Ordering::AcqRel);
        w.active = active;
        w.next_offset = progress.next_offset;
        Ok(())
    }

    /// A read-only log's end is `end`: its readers may read up to it.
    fn publish_read_only_end(&self, end: u64) {
        self.synced_end.store(end, Ordering::Release);
        if self.visible_end.swap(end, Ordering::AcqRel) != end {
            self.watchers.notify_all();
        }
    }

    /// Whether a read-only log's directory path now names no directory or another one
    /// (false where that cannot be told).
    pub(crate) fn dir_replaced(&self) -> bool {
        self.held_dir.as_ref().is_some_and(|d| d.replaced(&self.dir))
    }

    /// For a read-only log whose next segment (at `next`, after `active`) is gone: the
    /// segment to go on from if the writer's retention deleted it, that is if the log start
    /// is past `next` (the writer persists a new log start before it deletes a segment). The
    /// records from `next` up to the returned segment's base are below the log start, so the
    /// reader jumps over them, as a Kafka follower that fell behind the leader's log start
    /// does; reads there are then [`Error::OffsetOutOfRange`]. The segment returned is the
    /// last one at or below the log start. `None` if the log start is not past `next` (the
    /// writer has not rolled yet), or if no such segment is left (a later refresh looks
    /// again).
    fn segment_past_retention(&self, active: &Segment, next: u64) -> Result<Option<Segment>> {
        let start = read_log_start(&*self.vfs, &self.dir)?;
        if start <= next {
            return Ok(None);
        }
        let entries = self
            .vfs
            .read_dir(&self.dir)
            .map_err(|e| Error::io("list directory", &self.dir, e))?;
        let mut bases = segment_bases(&entries);
        bases.retain(|&base| base > active.base_offset);
        // Only a segment at or below the log start: if every one is above it, the log start
        // lies in `active`'s own tail (raised there by `delete_records_before`, nothing
        // deleted) whose records the scan has not reached yet, or retention moved on since
        // it was read. Either way the next refresh goes on from `next`.
        let Some(&base) = bases.iter().rev().find(|&&b| b <= start) else {
            return Ok(None);
        };
        let limits = self.config.read().limits();
        match Segment::open_read_only(&*self.vfs, &self.dir, base, limits) {
            Ok(segment) => Ok(Some(segment)),
            // Deleted meanwhile too: the next refresh looks again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open segment", segment_path(&self.dir, base, LOG_SUFFIX), e)),
        }
    }

    /// Drops a read-only log's segments wholly below `start` (those whose successor begins
    /// at or below it): the writer's retention deleted their files, which this log would
    /// otherwise hold open (their disk space not freed) for as long as it lives. The last
    /// segment is never dropped.
    fn forget_segments_below(&self, start: u64) {
        let mut segments = self.segments.write();
        let below: Vec<u64> = segments
            .keys()
            .zip(segments.keys().skip(1))
            .take_while(|&(_, &next)| next <= start)
            .map(|(&base, _)| base)
            .collect();
        for base in below {
            segments.remove(&base);
        }
    }

    /// The clean-shutdown marker `[end, active base, active size]`, if there is a readable
    /// one (a read-only log's view of whether the writer closed cleanly).
    fn clean_shutdown_marker(&self) -> Option<Vec<u64>> {
        checkpoint::read(&*self.vfs, &self.dir.join(CLEAN_SHUTDOWN_FILE), 3)
            .ok()
            .flatten()
    }

    /// The writer's persisted recovery point, if there is a readable one (a read-only log's
    /// view of how far the writer has synced).
    fn persisted_recovery_point(&self) -> Option<u64> {
        checkpoint::read(&*self.vfs, &self.dir.join(RECOVERY_POINT_FILE), 1)
            .ok()
            .flatten()
            .and_then(|v| v.first().copied())
    }

    /// [`refresh`](Self::refresh) for getters that cannot fail: a failure is logged and
    /// the previous end kept.
    pub(crate) fn refresh_quietly(&self) {
        if self.read_only
            && let Err(e) = self.refresh()
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "read-only log: could not pick up new batches");
        }
    }

    /// The directory of this log.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's current configuration: the one it was opened with, or the last given to
    /// [`set_config`](Self::set_config).
    #[must_use]
    pub fn config(&self) -> LogConfig {
        self.config.read().clone()
    }

    /// The largest batch an append takes now, in bytes (`config().effective_max_batch_bytes()`,
    /// read without a lock).
    pub(crate) fn max_batch_bytes(&self) -> usize {
        self.max_batch_bytes.load(Ordering::Acquire) as usize
    }

    /// Changes the log's settings while it is open (as Kafka applies a topic's altered
    /// configuration to its live logs). Each takes effect at its next use: the batch limit,
    /// timestamp type, index interval and write buffer at the next append; `verify_checksums`
    /// at the next read; `segment_bytes`,
    /// `segment_ms` and the index size at the next append's roll check (a segment already
    /// past a lowered `segment_bytes` is rolled then); retention at the next roll or
    /// [`enforce_retention`](Self::enforce_retention). Stored batches are never rewritten,
    /// and nothing is persisted here: a log opened again gets the configuration its opener
    /// gives (a broker keeps its topics' settings in its topic table).
    ///
    /// A poisoned or closed log takes the change too (it writes nothing with it until it is
    /// reopened, but what reports its configuration should not fall behind the broker's).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad `config` (nothing changes); [`Error::ReadOnly`] for
    /// a log opened read-only.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Durability, LogConfig, PartitionLog, Record};
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
    /// log.append(&[Record::new().value("kept until retention says")], Durability::Written)?;
    /// log.set_config(log.config().retention_ms(Some(Duration::from_secs(3600))))?;
    /// assert_eq!(log.config(), LogConfig::default().retention_ms(Some(Duration::from_secs(3600))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        // A damaged partition's broker is writable: its settings follow the topic's.
        if self.read_only && self.damage.is_none() {
            return Err(Error::ReadOnly {
                what: format!("change the configuration of partition log {}", self.dir.display()),
            });
        }
        let mut w = self.writer.lock();
        self.max_batch_bytes
            .store(config.effective_max_batch_bytes(), Ordering::Release);
        self.verify_checksums.store(config.verify_checksums, Ordering::Release);
        *self.config.write() = config.clone();
        w.config = config;
        Ok(())
    }

    /// What open found: whether the last shutdown was clean, what was scanned and cut.
    #[must_use]
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The first offset still stored (advanced by retention and
    /// [`delete_records_before`](Self::delete_records_before)).
    #[must_use]
    pub fn log_start_offset(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// The offset the next appended record will get. Includes `Buffered` records that are
    /// not yet readable.
    #[must_use]
    pub fn log_end_offset(&self) -> u64 {
        self.refresh_quietly();
        self.writer.lock().next_offset
    }

    /// Records below this offset are readable (handed to the OS). For a read-only log, the
    /// end found by a [`refresh`](Self::refresh), which this runs first.
    #[must_use]
    pub fn visible_end_offset(&self) -> u64 {
        self.refresh_quietly();
        self.visible_end.load(Ordering::Acquire)
    }

    /// Records below this offset are known to be on stable storage.
    #[must_use]
    pub fn synced_end_offset(&self) -> u64 {
        self.synced_end.load(Ordering::Acquire)
    }

    /// Total bytes of the log's segment files (buffered bytes excluded), counting the files
    /// of segments retention could not delete yet (see
    /// [`enforce_retention`](Self::enforce_retention)).
    #[must_use]
    pub fn size_bytes(&self) -> u64 {
        self.segments_bytes() + self.undeleted_bytes.load(Ordering::Acquire)
    }

    /// Bytes of the segments in the log (without those retention could not delete yet).
    fn segments_bytes(&self) -> u64 {
        self.segments.read().values().map(|s| s.size()).sum()
    }

    /// Number of segments, the active one included.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }

    /// How many group-commit fsync rounds ran since open, and their total duration. With
    /// many threads appending `Synced`, rounds < appends is group commit at work.
    #[must_use]
    pub fn sync_stats(&self) -> SyncStats {
        SyncStats {
            syncs: self.syncs.load(Ordering::Relaxed),
            sync_time: std::time::Duration::from_nanos(self.sync_nanos.load(Ordering::Relaxed)),
        }
    }

    fn check_writable(&self) -> Result<()> {
        if let Some(damage) = &self.damage {
            return Err(damage.duplicate());
        }
        if self.read_only {
            return Err(Error::ReadOnly {
                what: format!("write to partition log {}", self.dir.display()),
            });
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned { path: self.dir.clone() });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument {
                reason: format!("partition log {} is closed", self.dir.display()),
            });
        }
        Ok(())
    }

    fn poison(&self, err: Error) -> Error {
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(dir = %self.dir.display(), error = %err, "the files may not match what the log holds (a failed fsync, or an interrupted truncation); it refuses writes until reopened");
        err
    }

    /// Appends `records` as one batch and returns the offsets they got. The call returns
    /// once the batch has reached `durability` (see [`Durability`]).
    ///
    /// Records without a timestamp are stamped with the current time; when the log's
    /// [`LogConfig::timestamp_type`] is `LogAppendTime`, every record is.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty slice, or for a closed log (a broker's
    /// partition of a deleted topic); [`Error::OffsetOverflow`] if the
    /// records' offsets would pass `u64::MAX` (nothing is written); [`Error::RecordTooLarge`] if the
    /// batch exceeds `max_batch_bytes` and [`Error::InvalidTimestamp`] if a record's
    /// timestamp is negative (nothing is written either way); [`Error::Io`] if the write
    /// fails (it is rolled back, the log stays usable) or the fsync fails (the log is then
    /// poisoned); [`Error::Poisoned`] after an earlier failed fsync; for a `Synced` append,
    /// [`Error::Truncated`] if a concurrent [`truncate_to`](Self::truncate_to) removed its
    /// records before they were synced; [`Error::ReadOnly`] for a log opened with
    /// [`open_read_only`](Self::open_read_only).
    pub fn append(&self, records: &[Record], durability: Durability) -> Result<AppendInfo> {
        self.append_with(
            records,
            AppendOptions {
                durability,
                compression: Compression::None,
            },
        )
    }

    /// Appends `records` as one batch, compressed with `options.compression`, and returns
    /// the offsets they got once the batch has reached `options.durability`. Otherwise as
    /// [`append`](Self::append). The records section is encoded into a buffer the log
    /// keeps, then compressed; an uncompressed append takes no extra copy.
    ///
    /// # Errors
    /// As [`append`](Self::append). A compressed batch must fit `max_batch_bytes` both as
    /// stored and uncompressed, else
    /// [`Error::RecordTooLarge`]; a compressor failure is [`Error::InvalidArgument`].
    pub fn append_with(&self, records: &[Record], options: AppendOptions) -> Result<AppendInfo> {
        let (info, epoch) = self.append_in_epoch(records, options)?;
        if options.durability == Durability::Synced {
            self.sync_through(info.last_offset + 1, Some(epoch))?;
        }
        Ok(info)
    }

    /// As [`append_with`](Self::append_with), and also returns the truncation epoch the
    /// append happened in, for a later [`sync_through`](Self::sync_through).
    pub(crate) fn append_in_epoch<R: AsRef<Record>>(
        &self,
        records: &[R],
        options: AppendOptions,
    ) -> Result<(AppendInfo, u64)> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        let epoch = self.truncations.load(Ordering::Acquire);
        // A `Synced` append is written like a `Written` one; the caller syncs it after
        // releasing the writer lock.
        let info = self.append_locked(&mut w, records, options)?;
        Ok((info, epoch))
    }

    fn append_locked<R: AsRef<Record>>(
        &self,
        w: &mut Writer,
        records: &[R],
        options: AppendOptions,
    ) -> Result<AppendInfo> {
        let AppendOptions {
            durability,
            compression,
        } = options;
        let batch_start = w.buffer.len();
        let append_time = now_ms();
        let timestamp_type = w.config.timestamp_type;
        let Writer {
            buffer,
            scratch,
            config,
            ..
        } = w;
        let encoded: EncodedInfo = batch::encode(
            records,
            append_time,
            config.effective_max_batch_bytes() as usize,
            EncodeOptions {
                compression,
                timestamp_type,
            },
            scratch,
            buffer,
        )?;
        let size = w.buffer.len() - batch_start;
        let count = u64::from(encoded.record_count);
        if w.next_offset.checked_add(count).is_none() {
            // The batch's last offset and the next offset after it must fit in u64.
            w.buffer.truncate(batch_start);
            return Err(Error::OffsetOverflow {
                dir: self.dir.clone(),
                next_offset: w.next_offset,
                records: count,
            });
        }
        if self.needs_roll(w, batch_start, size, encoded.record_count)
            && let Err(e) = self.roll(w, batch_start)
        {
            // Whatever the roll got to, the new batch is the buffer's last `size` bytes:
            // remove exactly those (earlier buffered batches stay for a later write).
            let keep = w.buffer.len() - size;
            w.buffer.truncate(keep);
            return Err(e);
        }
        // After a roll the batch is all that is left in the buffer.
        let batch_start = w.buffer.len() - size;
        let position = w.active.size() + batch_start as u64;
        let base_offset = w.next_offset;
        if let Some(bytes) = w.buffer.get_mut(batch_start..) {
            batch::set_base_offset(bytes, base_offset);
        }
        let last_offset = base_offset + u64::from(encoded.record_count) - 1;
        if (durability != Durability::Buffered || w.buffer.len() >= w.config.write_buffer_bytes)
            && let Err(e) = self.write_buffer(w)
        {
            w.buffer.truncate(batch_start);
            return Err(e);
        }
        // The batch is accepted: index it and advance the end. `needs_roll` guarantees the
        // relative offsets and the position fit in u32.
        let relative = (base_offset - w.active.base_offset) as u32;
        let interval = w.config.index_interval_bytes;
        w.active.with_index_mut(|index| {
            index.on_batch(
                relative,
                position as u32,
                size as u64,
                encoded.max_timestamp,
                relative + encoded.max_timestamp_delta,
                interval,
            );
        });
        w.next_offset = last_offset + 1;
        if w.buffer.is_empty() {
            self.publish_visible(w.next_offset);
        }
        if w.active_since.is_none() {
            w.active_since = Some(Instant::now());
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: encoded.max_timestamp,
            append_time,
            size_bytes: size,
            timestamp_type,
        })
    }

    /// Whether the batch of `size` bytes at `batch_start` in the buffer must go to a new
    /// segment: the active one would pass `segment_bytes`, its index is full, its relative
    /// offsets would overflow, or it is older than `segment_ms`. An empty segment never rolls.
    fn needs_roll(&self, w: &Writer, batch_start: usize, size: usize, record_count: u32) -> bool {
        let position = w.active.size() + batch_start as u64;
        if position == 0 {
            return false;
        }
        let max_entries = w.config.index_max_bytes as usize / OFFSET_ENTRY;
        let last_relative = w.next_offset + u64::from(record_count) - 1 - w.active.base_offset;
        position + size as u64 > w.config.segment_bytes
            || last_relative > u64::from(u32::MAX)
            || w.active.with_index_mut(|i| i.is_full(max_entries)).unwrap_or(false)
            || matches!((w.config.segment_ms, w.active_since), (Some(max), Some(since)) if since.elapsed() >= max)
    }

    /// Writes the first `prefix` bytes of the buffer (the batches before the one being
    /// appended) to the active segment, seals it, and starts a new one at `next_offset`;
    /// then applies retention.
    fn roll(&self, w: &mut Writer, prefix: usize) -> Result<()> {
        self.seal_active(w, prefix)?;
        if let Err(e) = self.retain_locked(w) {
            tracing::warn!(error = %e, "retention after a roll failed");
        }
        Ok(())
    }

    /// [`roll`](Self::roll) without the retention.
    fn seal_active(&self, w: &mut Writer, prefix: usize) -> Result<()> {
        if prefix > 0 {
            let rest = w.buffer.split_off(prefix);
            let written = self.write_buffer(w);
            let mut buffer = std::mem::replace(&mut w.buffer, rest);
            if let Err(e) = written {
                buffer.append(&mut w.buffer);
                w.buffer = buffer;
                return Err(e);
            }
            self.publish_visible(w.next_offset);
        }
        let old = Arc::clone(&w.active);
        self.release_reserved(w)?;
        let extent = Extent {
            log_len: old.size(),
            next_offset: w.next_offset,
        };
        match old.with_index_mut(|index| {
            index.add_time_entry();
            index.write_files(&*self.vfs, &old.index_path(), &old.time_index_path(), extent, false)
        }) {
            // Sealed: nothing changes its indexes any more, and their files hold them.
            Some(Ok(())) => old.index_written(),
            // Index files are caches: a failure here costs a rebuild later, not data.
            Some(Err(e)) => tracing::warn!(error = %e, "could not write index files of a sealed segment"),
            None => {}
        }
        let segment = Arc::new(Segment::open(
            &*self.vfs,
            &self.dir,
            w.next_offset,
            true,
            w.config.limits(),
        )?);
        segment.set_index(SegmentIndex::new());
        self.segments.write().insert(segment.base_offset, Arc::clone(&segment));
        // The sealed segment's indexes were the writer's: they count among the loaded ones
        // now, so a writer alone does not keep every segment's in memory.
        self.unload_cold_indexes(segment.base_offset);
        w.unsynced_sealed.push(old);
        w.active = segment;
        w.forget_reserved();
        w.dir_dirty = true;
        w.active_since = None;
        Ok(())
    }

    /// Hands the buffer to the OS at the end of the active segment. On failure the file is
    /// cut back to its previous length (or, if even that fails, the log is poisoned) and
    /// the buffer is kept.
    fn write_buffer(&self, w: &mut Writer) -> Result<()> {
        if w.buffer.is_empty() {
            return Ok(());
        }
        let position = w.active.size();
        let end = position + w.buffer.len() as u64;
        if w.config.mapped_writes && self.write_mapped(w, position, end) {
            w.active.size.store(end, Ordering::Release);
            w.buffer.clear();
            return Ok(());
        }
        if end > w.reserved_end {
            self.reserve_ahead(w, position, end);
        }
        if let Err(e) = w.active.log.write_all_at(&w.buffer, position) {
            let err = Error::io("append to segment", &w.active.log_path, e);
            // The cut gives back the reserved blocks too.
            w.forget_reserved();
            if let Err(undo) = w.active.log.set_len(position) {
                return Err(self.poison(Error::io("roll back a failed append", &w.active.log_path, undo)));
            }
            return Err(err);
        }
        w.active.size.store(end, Ordering::Release);
        w.buffer.clear();
        Ok(())
    }

    /// Stores the buffer at `position..end` of the active segment through its map
    /// ([`LogConfig::mapped_writes`]), first extending the file with allocated blocks past
    /// `end` if it is not that long yet. `false`, with nothing stored, where that cannot be
    /// done (no OS file under the `Vfs`, no map, the extension failed, `end` past the map):
    /// the caller writes with `write(2)` then.
    fn write_mapped(&self, w: &mut Writer, position: u64, end: u64) -> bool {
        let Some(file) = w.active.log.os_file().filter(|_| !w.map_failed) else {
            return false;
        };
        let current = w.mapped.as_ref().filter(|m| Arc::ptr_eq(&m.segment, &w.active));
        // A map of this segment made before `segment_bytes` was raised is too short for a
        // write past it: map again (the end the file was extended to still holds).
        let too_short = current.is_some_and(|m| end > m.map.len() && w.config.segment_bytes > m.map.len());
        if current.is_none() || too_short {
            let extended = current.map_or(0, |m| m.end);
            w.mapped = None;
            match WriteMap::new(file, w.config.segment_bytes) {
                Ok(map) => {
                    w.mapped = Some(MappedTail {
                        segment: Arc::clone(&w.active),
                        map,
                        end: extended,
                    });
                }
                Err(e) => {
                    tracing::warn!(file = %w.active.log_path.display(), error = %e, "could not map the active segment; writing it with write(2)");
                    w.map_failed = true;
                    return false;
                }
            }
        }
        let Some(tail) = w.mapped.as_mut() else {
            return false;
        };
        if end > tail.end {
            let limit = tail.map.len();
            if end > limit {
                return false;
            }
            let ahead = position.clamp(MAP_STEP_MIN, w.config.preallocate_bytes.max(MAP_STEP_MIN));
            let target = end.saturating_add(ahead).min(limit);
            // From here the file may be longer than its batches: a seal or close cuts it
            // back, even if the allocation fails halfway.
            w.reserved_end = w.reserved_end.max(target);
            if let Err(e) = mapped::allocate(file, position, target - position) {
                tracing::debug!(file = %w.active.log_path.display(), error = %e, "could not extend the active segment for mapped writes; writing with write(2)");
                return false;
            }
            tail.end = target;
        }
        tail.map.write_at(position, &w.buffer)
    }

    /// Reserves disk blocks ahead of a write of `position..end` in the active segment (see
    /// [`LogConfig::preallocate_bytes`]): as much again as the segment holds (at least
    /// [`RESERVE_MIN`]) up to the configured maximum, never past `segment_bytes` unless
    /// the write itself goes further. A segment under `RESERVE_MIN` reserves nothing. A
    /// failed reservation is only a slower write: it is logged, and not retried before the
    /// write passes the end it asked for.
    fn reserve_ahead(&self, w: &mut Writer, position: u64, end: u64) {
        let max = w.config.preallocate_bytes;
        if max == 0 || position < RESERVE_MIN {
            return;
        }
        let ahead = position.max(RESERVE_MIN).min(max);
        let target = (end + ahead).min(w.config.segment_bytes).max(end);
        if let Err(e) = w.active.log.preallocate(position, target - position) {
            tracing::debug!(file = %w.active.log_path.display(), error = %e, "could not reserve blocks ahead of the log");
        }
        w.reserved_end = target;
    }

    /// Gives back the blocks reserved past the active segment's end (a cut to its own
    /// length), before it is sealed or closed. Where the file stays no longer than its
    /// batches, a failure costs disk space, not data: logged.
    ///
    /// # Errors
    /// [`Error::Io`] if the cut fails and leaves the file longer than its batches (the
    /// zeros of [`LogConfig::mapped_writes`]): a sealed segment must end at its last batch.
    /// The reservation is then kept, so a later seal or close tries again.
    ///
    /// Returns whether the file's length changed (it held such zeros).
    fn release_reserved(&self, w: &mut Writer) -> Result<bool> {
        let size = w.active.size();
        w.mapped = None;
        let mut cut = false;
        if w.reserved_end > size {
            let longer = w.active.log.file_size().map_or(true, |len| len > size);
            match w.active.log.set_len(size) {
                Ok(()) => cut = longer,
                Err(e) if longer => {
                    return Err(Error::io(
                        "cut the zeros past a segment's last batch",
                        &w.active.log_path,
                        e,
                    ));
                }
                Err(e) => {
                    tracing::warn!(file = %w.active.log_path.display(), error = %e, "could not release the blocks reserved past a segment's end");
                }
            }
        }
        w.forget_reserved();
        Ok(cut)
    }

    /// Makes every record below `target` durable, sharing the fsync with concurrent callers
    /// (group commit). Returns whether this call ran the fsync (`false`: another caller's
    /// covered it).
    ///
    /// `epoch` is the truncation epoch the records were appended in
    /// ([`append_in_epoch`](Self::append_in_epoch)); `None` syncs whatever the log holds
    /// (a flush).
    ///
    /// # Errors
    /// [`Error::Truncated`] if a truncation since `epoch` cut the log below `target`: the
    /// records were removed (and their offsets perhaps reused) before they were synced.
    pub(crate) fn sync_through(&self, target: u64, epoch: Option<u64>) -> Result<bool> {
        if self.synced_in_epoch(target, epoch) {
            return Ok(false);
        }
        let mut rounds = self.rounds();
        rounds.inside += 1;
        rounds.arrivals += 1;
        rounds.peak = rounds.peak.max(rounds.inside);
        loop {
            if self.synced_in_epoch(target, epoch) {
                rounds.inside = rounds.inside.saturating_sub(1);
                return Ok(false);
            }
            if self.poisoned.load(Ordering::Acquire) {
                // A failed fsync: no round can succeed, so none is gathered or waited for.
                rounds.inside = rounds.inside.saturating_sub(1);
                return Err(Error::Poisoned { path: self.dir.clone() });
            }
            if rounds.leading {
                // Follow the running round: wait for it to finish, then check again (it
                // covered the records if they were written before it collected what to sync).
                rounds = self.await_round(rounds, None);
                continue;
            }
            // Gather the next round: callers covered by the last round are writing their
            // next records now. Until as many callers have come since that round collected
            // as were syncing concurrently (or, at the latest, half the last fsync after the
            // first of them came), wait; the caller that completes the round leads it, so no
            // one is woken to start it. A lone caller never waits.
            let want = rounds.collected_at.saturating_add(rounds.peak);
            if rounds.arrivals >= want {
                break;
            }
            let now = Instant::now();
            let until = *rounds.gather_until.get_or_insert_with(|| {
                let last = Duration::from_nanos(self.last_sync_nanos.load(Ordering::Relaxed));
                now + (last / 2).min(MAX_GATHER)
            });
            if now >= until {
                break;
            }
            rounds = self.await_round(rounds, Some(until));
        }
        rounds.leading = true;
        rounds.gather_until = None;
        rounds.collected_at = rounds.arrivals;
        rounds.peak = rounds.inside;
        drop(rounds);
        // Ends the round even if the sync unwinds, so followers never wait forever.
        let _lead = RoundLead(self);
        self.sync_round(target, epoch)
    }

    /// Waits in [`sync_through`](Self::sync_through) until the round that is running (or
    /// the next one, while it is being gathered) finishes, or until `deadline`, and returns
    /// the state's lock for the caller to look again; it may also return early.
    ///
    /// The caller first yields its CPU in a loop (`sched_yield`) for up to twice the last
    /// fsync, and parks on the condition variable only if the round has not finished by
    /// then; where the last fsync took longer than [`MAX_YIELD`], it parks at once. A parked
    /// thread woken by another costs tens of microseconds on a VM whose idle vCPUs halt
    /// (measured here: ~70 µs for a round's seven followers, as long as the fsync itself),
    /// where a yielding one sees the round end at once and lends its CPU to whoever can use
    /// it meanwhile. RocksDB's write thread does the same (`enable_write_thread_adaptive_yield`,
    /// up to 100 µs of yielding before it blocks). The cost: a waiting caller keeps its CPU
    /// busy for at most [`MAX_YIELD`] per round when nothing else wants it.
    fn await_round<'a>(
        &'a self,
        mut rounds: std::sync::MutexGuard<'a, Rounds>,
        deadline: Option<Instant>,
    ) -> std::sync::MutexGuard<'a, Rounds> {
        let seen = rounds.finished;
        let last = Duration::from_nanos(self.last_sync_nanos.load(Ordering::Relaxed));
        if !last.is_zero() && last <= MAX_YIELD {
            drop(rounds);
            let started = Instant::now();
            let mut until = started + (last * 2).min(MAX_YIELD);
            if let Some(deadline) = deadline {
                until = until.min(deadline);
            }
            while self.rounds_finished.load(Ordering::Acquire) == seen && Instant::now() < until {
                std::thread::yield_now();
            }
            rounds = self.rounds();
        }
        if rounds.finished != seen || deadline.is_some_and(|d| Instant::now() >= d) {
            return rounds;
        }
        rounds.sleepers += 1;
        rounds = match deadline {
            None => self.round_done.wait(rounds).unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.round_done.wait_timeout(rounds, left) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                }
            }
        };
        rounds.sleepers -= 1;
        rounds
    }

    /// The group-commit state. Its lock is never held across a panic-free section that
    /// could poison it, but a poisoned lock is recovered anyway (the state stays valid).
    fn rounds(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether every record below `target` is synced and, if `epoch` is given, no
    /// truncation happened since it (else the offsets below `target` may have been cut and
    /// reused; [`sync_round`](Self::sync_round) then checks under the sync turn). The synced
    /// end is read before the epoch: a synced end published after a truncation makes that
    /// truncation's epoch visible too.
    fn synced_in_epoch(&self, target: u64, epoch: Option<u64>) -> bool {
        self.synced_end.load(Ordering::Acquire) >= target
            && epoch.is_none_or(|e| self.truncations.load(Ordering::Acquire) == e)
    }

    /// One group-commit round, led by the caller: under the sync turn, checks that no
    /// truncation cut the records below `target`, then (unless they are synced already)
    /// collects everything written so far and fsyncs it. Returns whether it fsynced.
    fn sync_round(&self, target: u64, epoch: Option<u64>) -> Result<bool> {
        let cuts = self.sync_lock.lock();
        if let Some(epoch) = epoch
            && let Some(end) = cuts.lowest_end_since(epoch, self.truncations.load(Ordering::Acquire))
            && end < target
        {
            return Err(Error::Truncated {
                dir: self.dir.clone(),
                offset: end,
            });
        }
        if self.synced_end.load(Ordering::Acquire) >= target {
            return Ok(false);
        }
        self.check_writable()?;
        // Collect under the writer lock, fsync after releasing it: appends go on meanwhile.
        let (unsynced, unwritten) = self.take_unsynced(&mut self.writer.lock())?;
        let end = unsynced.end;
        self.sync_unsynced(unsynced)?;
        match unwritten {
            // Buffered records failed to reach the OS; the caller's are synced if they are below.
            Some(err) if end < target => Err(err),
            _ => Ok(true),
        }
    }

    /// Hands `Buffered` records to the OS (no fsync), making them visible to readers: what
    /// a `Buffered` producer's flush does for the partitions it wrote.
    ///
    /// # Errors
    /// As a failed write of [`append`](Self::append) (the records stay buffered).
    pub(crate) fn write_buffered(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if w.buffer.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        self.write_buffer(&mut w)?;
        self.publish_visible(w.next_offset);
        Ok(())
    }

    /// Publishes `end` as the visible end and wakes the consumers watching this log.
    fn publish_visible(&self, end: u64) {
        self.visible_end.store(end, Ordering::Release);
        self.watchers.notify_all();
    }

    /// The consumers to wake when records become visible here.
    pub(crate) fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// Marks the log as belonging to a deleted topic: it is closed (appends fail) and
    /// never again opens a file by path — no index file is loaded or written back (its
    /// segments are retired), and its drop writes nothing — so removing its directory is
    /// safe even while others still hold it, and a topic recreated at the same path is never
    /// touched by it. Reads through it still serve what it held, from its open `.log`
    /// files (indexes it has not loaded are rebuilt from them, in memory). Waits for an
    /// append, sync or index load in progress to finish.
    pub(crate) fn mark_deleted(&self) {
        let _turn = self.sync_lock.lock();
        let _w = self.writer.lock();
        self.deleted.store(true, Ordering::Release);
        self.closed.store(true, Ordering::Release);
        for segment in self.segments.read().values() {
            segment.retire();
        }
    }

    /// Whether [`mark_deleted`](Self::mark_deleted) was called.
    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Writes the buffer and takes what the next sync must cover. Call with the sync turn.
    ///
    /// If the buffer's write fails (and is rolled back), what was written before it is
    /// still taken, and the write's error returned beside it: a round syncs those records
    /// for the callers they belong to, and fails only those whose records stayed buffered.
    /// A write whose rollback failed (the log is poisoned) is an error.
    fn take_unsynced(&self, w: &mut Writer) -> Result<(Unsynced, Option<Error>)> {
        let mut unwritten = None;
        if !w.buffer.is_empty() {
            match self.write_buffer(w) {
                Ok(()) => self.publish_visible(w.next_offset),
                Err(e) if self.poisoned.load(Ordering::Acquire) => return Err(e),
                Err(e) => unwritten = Some(e),
            }
        }
        // With records still buffered, the visible end is where the written ones end.
        let end = if unwritten.is_some() {
            self.visible_end.load(Ordering::Acquire)
        } else {
            w.next_offset
        };
        let unsynced = Unsynced {
            sealed: std::mem::take(&mut w.unsynced_sealed),
            active: Arc::clone(&w.active),
            end,
            dir_dirty: std::mem::take(&mut w.dir_dirty),
        };
        Ok((unsynced, unwritten))
    }

    /// fdatasyncs what [`take_unsynced`](Self::take_unsynced) took and publishes the synced
    /// end; then, if a segment was sealed (or an earlier attempt failed), moves the
    /// recovery point there. A failed sync poisons the log. Call with the sync turn.
    ///
    /// The recovery point is an optimisation (a stale one only means more to scan at the
    /// next unclean open), and the records are durable once the synced end is published:
    /// a failure to persist it is logged and retried at the next sync, never reported as
    /// the sync's failure (a `Synced` producer would retry, and duplicate, durable records).
    fn sync_unsynced(&self, u: Unsynced) -> Result<()> {
        let (end, sealed) = (u.end, !u.sealed.is_empty());
        self.sync_files(u)?;
        if sealed || self.recovery_point_behind.load(Ordering::Acquire) {
            match self.persist_recovery_point(end) {
                Ok(()) => self.recovery_point_behind.store(false, Ordering::Release),
                Err(e) => {
                    self.recovery_point_behind.store(true, Ordering::Release);
                    tracing::warn!(dir = %self.dir.display(), error = %e, "could not move the recovery point (the records are synced); the next sync retries");
                }
            }
        }
        Ok(())
    }

    /// The fsyncs of [`sync_unsynced`](Self::sync_unsynced), and the synced end published
    /// after them. A failed sync poisons the log. Call with the sync turn.
    fn sync_files(&self, u: Unsynced) -> Result<()> {
        let started = Instant::now();
        for segment in u.sealed.iter().chain(std::iter::once(&u.active)) {
            segment
                .log
                .sync_data()
                .map_err(|e| self.poison(Error::io("sync segment", &segment.log_path, e)))?;
        }
        if u.dir_dirty {
            self.vfs
                .sync_dir(&self.dir)
                .map_err(|e| self.poison(Error::io("sync directory", &self.dir, e)))?;
        }
        self.synced_end.store(u.end, Ordering::Release);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.sync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.last_sync_nanos.store(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// Writes any `Buffered` records to the OS and syncs everything to stable storage.
    ///
    /// # Errors
    /// [`Error::Io`] if a write or fsync fails (a failed fsync poisons the log);
    /// [`Error::Poisoned`] after an earlier failed fsync; [`Error::ReadOnly`] for a log
    /// opened read-only.
    pub fn flush(&self) -> Result<()> {
        let end = self.log_end_offset();
        self.sync_through(end, None)?;
        // Nothing to sync (e.g. an empty log) still must reject a poisoned log.
        self.check_writable()
    }

    /// Reads whole batches starting with the one that holds `offset`, up to about
    /// `max_bytes` (at least one batch, however large). Batches never span segments, so a
    /// read at a segment's end returns that segment's last batches only; call again from the
    /// next offset. The first batch may start before `offset`: skip its earlier records.
    ///
    /// Returns an empty vector at the visible end of the log, and from there up to the log
    /// end: records appended `Buffered` and not yet handed to the OS are not readable (as a
    /// Kafka fetch past the high watermark returns nothing); see
    /// [`visible_end_offset`](Self::visible_end_offset).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `offset` is below the log start or past the log end;
    /// [`Error::Corrupt`] if the stored bytes fail validation (with `verify_checksums`, the
    /// default, every batch's CRC is checked): as a Kafka fetch does, a read returns the
    /// valid batches before a damaged one, and the read that starts at the damaged batch
    /// fails; [`Error::Io`] if the read fails.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Vec<RecordBatch>> {
        self.read_into(offset, max_bytes, &mut SpareBuffer::default())
    }

    /// As [`read`](Self::read), reading into `spare`'s buffer when the caller has dropped
    /// what the last read returned (a consumer's polls).
    ///
    /// A read does not take the writer lock, so a [`truncate_to`](Self::truncate_to) may
    /// cut the segment it reads, and new appends fill it again, between its index lookup
    /// and its `pread`: the bytes at the position it looked up are then other batches, and
    /// the walk finds them not continuing its offsets. That is not damage: a read that
    /// fails with [`Error::Corrupt`] while a truncation was made reads again (only once per
    /// truncation, so real damage is still reported).
    pub(crate) fn read_into(&self, offset: u64, max_bytes: usize, spare: &mut SpareBuffer) -> Result<Vec<RecordBatch>> {
        self.again_if_cut(|| self.read_once(offset, max_bytes, spare))
    }

    /// Runs `read` (a read of the log without the writer lock) and runs it again while it
    /// fails with [`Error::Corrupt`] and a truncation it may have missed has been made
    /// since (see [`read_into`](Self::read_into)): once per such truncation.
    fn again_if_cut<T>(&self, mut read: impl FnMut() -> Result<T>) -> Result<T> {
        // The truncations a read may have missed are those not yet in place for readers
        // when it starts (`cuts_seen`), whatever it finds next; each bumps `truncations`
        // first.
        let mut seen = self.cuts_seen.load(Ordering::Acquire);
        loop {
            let followed = self.cuts_seen.load(Ordering::Acquire);
            match read() {
                Err(Error::Corrupt { .. }) if self.truncations.load(Ordering::Acquire) != seen => {
                    seen = self.truncations.load(Ordering::Acquire);
                }
                // A read-only log's files may have been cut by the writer since its view
                // of them was taken: read again once it follows the cut.
                Err(e @ Error::Corrupt { .. }) if self.read_only => {
                    if self.explain_short_read(followed)? != ShortRead::Followed {
                        return Err(e);
                    }
                }
                result => return result,
            }
        }
    }

    /// For a read-only log whose read found less than its view promised (an empty answer
    /// below its end, a missing segment, bytes that are not a batch), given the followed
    /// truncations (`cuts_seen`) the read started with: refreshes, and says whether a
    /// truncation of the writer's explains it.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    fn explain_short_read(&self, followed: u64) -> Result<ShortRead> {
        self.refresh()?;
        if self.cuts_seen.load(Ordering::Acquire) != followed {
            return Ok(ShortRead::Followed);
        }
        // Begun and not finished, or finished since the refresh read the file.
        Ok(match read_truncations(&*self.vfs, &self.dir) {
            Some([started, finished, ..])
                if started != finished || finished != self.followed_cuts.load(Ordering::Acquire) =>
            {
                ShortRead::CutNotFollowed
            }
            _ => ShortRead::Unexplained,
        })
    }

    /// One attempt of [`read_into`](Self::read_into).
    fn read_once(&self, offset: u64, max_bytes: usize, spare: &mut SpareBuffer) -> Result<Vec<RecordBatch>> {
        // The writer's truncations a read-only view followed, before this read used it.
        let followed = self.cuts_seen.load(Ordering::Acquire);
        if self.read_only && offset >= self.visible_end.load(Ordering::Acquire) {
            self.refresh()?;
        }
        let start = self.log_start.load(Ordering::Acquire);
        let visible = self.visible_end.load(Ordering::Acquire);
        if offset < start || offset > visible {
            let end = self.log_end_offset();
            if offset < start || offset > end {
                return Err(Error::OffsetOutOfRange {
                    requested: offset,
                    start,
                    end,
                    partition: None,
                });
            }
        }
        if offset >= visible {
            return Ok(Vec::new());
        }
        let Some(segment) = self.segment_for(offset) else {
            // Retention deleted the segment since the start was read: out of range now, not
            // "at the end" (an empty answer would make a consumer wait a poll for nothing).
            let start = self.log_start.load(Ordering::Acquire);
            if offset < start {
                return Err(Error::OffsetOutOfRange {
                    requested: offset,
                    start,
                    end: self.log_end_offset(),
                    partition: None,
                });
            }
            return Ok(Vec::new());
        };
        let fetched = self.fetch_from(&segment, offset, max_bytes, spare);
        let short = match &fetched {
            Ok(fetched) => fetched.batches.is_empty(),
            Err(e) => matches!(e, Error::Corrupt { .. }),
        };
        if self.read_only && short {
            match self.explain_short_read(followed)? {
                ShortRead::Followed => return self.read_once(offset, max_bytes, spare),
                // The files are being cut: nothing to read here until the cut is followed,
                // at a later read.
                ShortRead::CutNotFollowed => return Ok(Vec::new()),
                ShortRead::Unexplained => {}
            }
        }
        let fetched = fetched?;
        if fetched.batches.is_empty() && self.is_sealed(&segment) {
            self.check_gap(&segment, offset)?;
        }
        Ok(fetched.batches)
    }

    /// After a sealed `segment` held no batch at `offset`, below the visible end: the next
    /// segment starts past `offset`, so a segment file is missing (damage, as a lost block
    /// is) — `Error::Corrupt`, not an empty answer, which a consumer would take for the end
    /// of the log and wait at forever. Unless retention or a truncation changed the log
    /// meanwhile (the offset is below the new start, or the segment is the last now).
    fn check_gap(&self, segment: &Segment, offset: u64) -> Result<()> {
        let next = self
            .segments
            .read()
            .range(segment.base_offset.saturating_add(1)..)
            .next()
            .map(|(base, _)| *base);
        let Some(next) = next else { return Ok(()) };
        if offset < self.log_start.load(Ordering::Acquire) || offset >= self.visible_end.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(Error::corrupt(
            &segment.log_path,
            segment.size(),
            format!(
                "offsets {offset} to {} are missing: this segment ends before them and the next one starts at {next} \
                 (a segment file is gone)",
                next.saturating_sub(1)
            ),
        ))
    }

    /// Fetches the batches of `segment` from the one holding `offset`, starting at the index
    /// entry at or before it. Should the walk from an index entry of a sealed segment find
    /// bytes that do not continue the entry's offsets, the index is rebuilt from the log and
    /// the fetch retried once, so a bad index never makes good data unreadable. (The active
    /// segment's index is the writer's own, never loaded stale.)
    fn fetch_from(&self, segment: &Segment, offset: u64, max_bytes: usize, spare: &mut SpareBuffer) -> Result<Fetched> {
        let mut attempt = || -> Result<Fetched> {
            let entry = self.index_of(segment)?.lookup((offset - segment.base_offset) as u32);
            let expected = segment.base_offset + u64::from(entry.relative_offset);
            let verify = self.verify_checksums.load(Ordering::Acquire);
            segment.fetch(u64::from(entry.position), expected, offset, max_bytes, verify, spare)
        };
        match attempt() {
            Err(Error::Corrupt { .. }) if self.is_sealed(segment) => {
                segment.rebuild_index(&*self.vfs)?;
                attempt()
            }
            result => result,
        }
    }

    fn is_sealed(&self, segment: &Segment) -> bool {
        self.segments
            .read()
            .keys()
            .next_back()
            .is_some_and(|&last| last > segment.base_offset)
    }

    /// The segment holding `offset`: the one with the largest base offset at or below it.
    fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        self.segments
            .read()
            .range(..=offset)
            .next_back()
            .map(|(_, s)| Arc::clone(s))
    }

    /// The segment's indexes, loaded (or rebuilt) if need be; a sealed segment ends where
    /// the next one starts. A load first unloads the least recently used indexes of other
    /// sealed segments beyond [`LOADED_SEALED_INDEXES`].
    fn index_of<'a>(&self, segment: &'a Segment) -> Result<MappedRwLockReadGuard<'a, SegmentIndex>> {
        segment.touch_index(self.index_ticks.fetch_add(1, Ordering::Relaxed));
        if !segment.index_loaded() {
            self.unload_cold_indexes(segment.base_offset);
        }
        segment.index(
            &*self.vfs,
            || {
                self.segments
                    .read()
                    .range(segment.base_offset.saturating_add(1)..)
                    .next()
                    .map(|(base, _)| *base)
            },
            // Checked after the load: a directory still ours then was ours when its index
            // files were read (a replaced one never comes back).
            || !self.dir_replaced(),
        )
    }

    /// Unloads the least recently used indexes of sealed segments (other than `keep`'s)
    /// until at most `LOADED_SEALED_INDEXES - 1` stay loaded, making room for `keep`'s.
    /// Skips indexes in use at this moment, and those whose files do not hold them (see
    /// [`Segment::unload_index`]): those stay loaded.
    fn unload_cold_indexes(&self, keep: u64) {
        let mut loaded: Vec<Arc<Segment>> = {
            let map = self.segments.read();
            let active = map.keys().next_back().copied();
            map.values()
                // Without waiting under the map for a load in progress (it may scan a whole
                // segment): a segment locked now could not be unloaded anyway.
                .filter(|s| Some(s.base_offset) != active && s.base_offset != keep && s.index_loaded_now())
                .map(Arc::clone)
                .collect()
        };
        let Some(mut excess) = (loaded.len() + 1).checked_sub(LOADED_SEALED_INDEXES) else {
            return;
        };
        loaded.sort_by_key(|s| s.index_last_used());
        for segment in loaded {
            if excess == 0 {
                break;
            }
            if segment.unload_index() {
                excess -= 1;
            }
        }
    }

    /// The largest timestamp in `segment`, without loading its indexes when it is known.
    fn max_timestamp_of(&self, segment: &Segment) -> Result<i64> {
        match segment.known_max_timestamp() {
            Some(ts) => Ok(ts),
            None => Ok(self.index_of(segment)?.max_timestamp),
        }
    }

    /// The first offset whose timestamp is `≥ timestamp` (Kafka's `ListOffsets`), or `None`
    /// if every record is older. Uses the time index to skip segments and batches.
    ///
    /// Only the records a read can return are searched: from the log start (not the
    /// earlier records of the batch holding it) to the visible end (not `Buffered` records
    /// still in memory, as Kafka's `ListOffsets` stops at the high watermark). So the answer
    /// is a readable offset, or `None`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::Io`] from reading the segments it searches.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        // A truncation may cut a segment it reads, as for `read`.
        self.again_if_cut(|| self.offset_for_timestamp_once(timestamp))
    }

    /// One attempt of [`offset_for_timestamp`](Self::offset_for_timestamp).
    fn offset_for_timestamp_once(&self, timestamp: i64) -> Result<Option<u64>> {
        let start = self.log_start.load(Ordering::Acquire);
        let visible = self.visible_end.load(Ordering::Acquire);
        let segments: Vec<Arc<Segment>> = {
            let map = self.segments.read();
            let first = map.range(..=start).next_back().map_or(0, |(b, _)| *b);
            map.range(first..).map(|(_, s)| Arc::clone(s)).collect()
        };
        for segment in segments {
            if self.max_timestamp_of(&segment)? < timestamp {
                continue;
            }
            let from = self
                .index_of(&segment)?
                .time_lookup(timestamp)
                .map_or(segment.base_offset, |r| segment.base_offset + u64::from(r))
                .max(start);
            let mut offset = from;
            while offset < visible {
                let batches = self
                    .fetch_from(&segment, offset, 1 << 20, &mut SpareBuffer::default())?
                    .batches;
                let Some(last) = batches.last() else { break };
                let next = last.last_offset() + 1;
                for batch in batches.iter().filter(|b| b.max_timestamp() >= timestamp) {
                    for record in batch.records() {
                        let record = record?;
                        if record.offset >= offset && record.offset < visible && record.timestamp >= timestamp {
                            return Ok(Some(record.offset));
                        }
                    }
                }
                offset = next;
            }
        }
        Ok(None)
    }

    /// Deletes whole segments beyond `retention_bytes` or older than `retention_ms`, and
    /// those wholly below the log start (as Kafka, whatever the limits: a segment that
    /// [`delete_records_before`](Self::delete_records_before) moved the start past while it
    /// was active), and advances the log start offset. The active segment goes only by age,
    /// as in Kafka's retention check: when its newest record is older than `retention_ms`,
    /// it is sealed and deleted, leaving an empty log (start = end) whose next record starts
    /// a new segment at the same offset. Runs after every roll (without sealing the active
    /// segment), and a broker's retention thread runs it for every partition (see
    /// [`BrokerBuilder::retention_check_interval`](crate::BrokerBuilder::retention_check_interval));
    /// call it to apply time retention to an idle log of your own.
    ///
    /// Size retention follows Kafka: a segment goes only if the log stays at or above
    /// `retention_bytes` without it, so the log may exceed the limit by up to one segment.
    ///
    /// A segment whose files cannot be deleted (the call fails with the error) is out of
    /// the log all the same — its records are below the log start — but its files stay
    /// counted in [`size_bytes`](Self::size_bytes), and the next retention check deletes
    /// them before anything else.
    ///
    /// # Errors
    /// [`Error::Io`] if the log start offset cannot be persisted or a file not deleted;
    /// [`Error::Poisoned`] after a failed fsync; [`Error::ReadOnly`] for a log opened
    /// read-only.
    pub fn enforce_retention(&self) -> Result<RetentionReport> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        // As Kafka's retention check: an active segment whose newest record is past
        // `retention_ms` is sealed, so that it can go too (an idle partition empties in
        // time; its next record starts a new segment at the same offset).
        if let Some(age) = w.config.retention_ms
            && w.next_offset > w.active.base_offset
            && self.older_than(&w.active, age, now_ms())?
        {
            let buffered = w.buffer.len();
            self.seal_active(&mut w, buffered)?;
        }
        self.retain_locked(&mut w)
    }

    /// Whether every record of `segment` is older than `age` at `now` (its largest
    /// timestamp, as Kafka's `retention.ms`).
    fn older_than(&self, segment: &Segment, age: Duration, now: i64) -> Result<bool> {
        let max_ts = self.max_timestamp_of(segment)?;
        Ok(max_ts < now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
    }

    fn retain_locked(&self, w: &mut Writer) -> Result<RetentionReport> {
        let (max_bytes, max_age) = (w.config.retention_bytes, w.config.retention_ms);
        let now = now_ms();
        let log_start = self.log_start_offset();
        let mut new_start = log_start;
        // The sealed segments (all but the last, the active one), each with the base of the
        // segment after it.
        let candidates: Vec<(Arc<Segment>, u64)> = {
            let map = self.segments.read();
            map.values()
                .zip(map.keys().skip(1))
                .map(|(s, &next)| (Arc::clone(s), next))
                .collect()
        };
        let mut total = self.segments_bytes();
        let mut doomed = Vec::new();
        for (segment, next_base) in candidates {
            let size = segment.size();
            // Nothing in it is readable any more (Kafka's log-start-offset breach): the active
            // segment `delete_records_before` emptied, sealed since.
            let below_start = next_base <= log_start;
            let by_size = max_bytes.is_some_and(|max| total.saturating_sub(size) >= max);
            let by_age = || max_age.map_or(Ok(false), |age| self.older_than(&segment, age, now));
            if !(below_start || by_size || by_age()?) {
                break;
            }
            total -= size;
            new_start = new_start.max(next_base);
            doomed.push(segment);
        }
        self.delete_segments_below(w, new_start, doomed)
    }

    /// Persists `new_start` as the log start offset, takes the `doomed` segments (all below
    /// it) out of the log, then deletes their files and those of segments an earlier
    /// deletion left.
    fn delete_segments_below(
        &self,
        w: &mut Writer,
        new_start: u64,
        doomed: Vec<Arc<Segment>>,
    ) -> Result<RetentionReport> {
        if new_start > self.log_start_offset() {
            checkpoint::write(&*self.vfs, &self.dir.join(LOG_START_FILE), &[new_start])?;
            self.log_start.store(new_start, Ordering::Release);
        }
        if !doomed.is_empty() {
            let mut map = self.segments.write();
            for segment in &doomed {
                map.remove(&segment.base_offset);
            }
        }
        // A reader still holding one must not write its index files by path.
        doomed.iter().for_each(|s| s.retire());
        w.unsynced_sealed
            .retain(|s| !doomed.iter().any(|d| d.base_offset == s.base_offset));
        let doomed_bytes: u64 = doomed.iter().map(|s| s.size()).sum();
        self.undeleted_bytes.fetch_add(doomed_bytes, Ordering::AcqRel);
        w.undeleted.extend(doomed);
        let mut report = RetentionReport {
            log_start_offset: new_start,
            ..RetentionReport::default()
        };
        let removed = self.remove_undeleted(w, &mut report);
        if !report.segments_deleted.is_empty() {
            self.vfs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("sync directory", &self.dir, e))?;
            tracing::info!(dir = %self.dir.display(), segments = report.segments_deleted.len(), bytes = report.bytes_deleted, log_start_offset = new_start, "retention deleted segments");
        }
        removed.map(|()| report)
    }

    /// Deletes the files of the segments in `w.undeleted`, oldest first, noting each in
    /// `report`. A deletion that fails stops there: that segment and those after it stay
    /// listed, for the next retention check to try again. (Their offsets are below the log
    /// start, which never goes back while the log is open, so no segment created later
    /// owns their paths; and should the process stop first, open deletes every segment
    /// wholly below the log start.)
    fn remove_undeleted(&self, w: &mut Writer, report: &mut RetentionReport) -> Result<()> {
        let mut deleted = 0;
        let mut result = Ok(());
        for segment in &w.undeleted {
            if let Err(e) = remove_segment_files(&*self.vfs, &self.dir, segment.base_offset) {
                result = Err(e);
                break;
            }
            deleted += 1;
            self.undeleted_bytes.fetch_sub(segment.size(), Ordering::AcqRel);
            report.bytes_deleted += segment.size();
            report.segments_deleted.push(segment.base_offset);
        }
        w.undeleted.drain(..deleted);
        result
    }

    /// Advances the log start offset to `offset` (Kafka's `DeleteRecords`): records below
    /// it are no longer readable, and segments wholly below it are deleted (the active
    /// segment once a roll seals it). `Buffered` records below `offset` are written out
    /// first, so the start never passes the visible end. Returns the new log start offset
    /// (unchanged if `offset` is not past it).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `offset` is past the log end; [`Error::Io`] if the
    /// new start cannot be persisted or a segment not deleted; [`Error::Poisoned`] after a
    /// failed fsync; [`Error::ReadOnly`] for a log opened read-only.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64> {
        let mut w = self.writer.lock();
        // A closed log (e.g. of a deleted topic, whose path may now hold a new one) must not
        // touch its directory.
        self.check_writable()?;
        let start = self.log_start_offset();
        if offset > w.next_offset {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                start,
                end: w.next_offset,
                partition: None,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        // Records below the new start that are still buffered go to the OS first: the start
        // never passes the visible end (readers and consumers resolve positions in
        // `start..=visible end`), as Kafka's DeleteRecords never passes the high watermark.
        if offset > self.visible_end_offset() {
            self.write_buffer(&mut w)?;
            self.publish_visible(w.next_offset);
        }
        let doomed: Vec<Arc<Segment>> = {
            let map = self.segments.read();
            let bases: Vec<u64> = map.keys().copied().collect();
            bases
                .windows(2)
                .filter(|pair| matches!(pair, [_, next] if *next <= offset))
                .filter_map(|pair| pair.first().and_then(|b| map.get(b)).cloned())
                .collect()
        };
        self.delete_segments_below(&mut w, offset, doomed)
            .map(|r| r.log_start_offset)
    }

    /// Removes every record at or after `offset`, so that the log ends at `offset` or, if
    /// `offset` falls inside a batch, at the start of that batch (batches are never split).
    /// Returns the new log end offset. The cut is synced before the call returns.
    ///
    /// Nothing readable stays when `offset` is at or below the log start (or the batch
    /// holding it starts below the log start): the log is left empty, ending where it starts,
    /// as Kafka's log truncates fully. Unlike Kafka, which then starts the log at `offset`,
    /// the log start never moves back: an offset below it was given to a record once, and is
    /// not given to another.
    ///
    /// The offsets past the new end will be given to new records. So that no reader takes
    /// those for records it already read (and skips them), as Kafka's consumers detect a
    /// truncation of their partition's log (KIP-320): for a [`Broker`](crate::Broker)'s log,
    /// every group's committed offset past the new end is lowered to it, synced, before the
    /// call returns; and a [`Consumer`](crate::Consumer) whose position is past it moves
    /// back to it at its next poll (or reports [`Error::LogTruncated`], per its
    /// `auto_offset_reset`). A read-only reader of the directory, in this process or another,
    /// follows the cut at its next refresh ([`refresh`](Self::refresh)), and so do its
    /// consumers.
    ///
    /// # Crash safety
    /// The steps, and what a crash (or power loss) right after each leaves at the next open:
    /// 1. The recovery point is lowered to at most the new end, and persisted; so is the
    ///    truncation's start, counted in the `truncations` file. No data file has changed
    ///    yet: the whole log survives, and the next open scans from the segment holding the
    ///    new end.
    /// 2. The segments after the one holding the cut are deleted, highest base offset first,
    ///    and the directory is synced. A crash in between leaves the old log without some of
    ///    its last segments — a prefix of it, never one with a hole, since recovery scans
    ///    (and checks the offsets of) every segment from the lowered recovery point on.
    /// 3. The segment holding the cut is cut, and synced. A crash before the sync leaves it
    ///    at its old or its new length, both prefixes of the old log; after it, the log ends
    ///    at the new end.
    /// 4. The truncation is counted as finished in the `truncations` file, which read-only
    ///    readers follow. After a crash before this, the next open counts it as finished,
    ///    at the end it recovered.
    ///
    /// So a crash before the call returns leaves the old log cut somewhere at or after the new
    /// end (at a batch boundary), and every record below the new end that was synced
    /// survives. A failure in steps 2 to 4 poisons the log (its files no longer match its
    /// memory): it refuses writes until reopened. A `Synced` append whose records the cut
    /// removed before its fsync was acknowledged fails with [`Error::Truncated`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] if no stored batch holds `offset` (damage, or a segment file
    /// shortened under the log: nothing is cut); [`Error::Io`] if a write, truncation,
    /// deletion or sync fails; [`Error::Poisoned`] after an earlier failed fsync (or a failed
    /// step 2 or 3); [`Error::ReadOnly`] for a log opened read-only. For a broker's log,
    /// also the error of lowering the committed offsets: the cut is made then, and the next
    /// `truncate_to` — to the same offset, or to the log end, which cuts nothing — lowers
    /// them again, to the lowest end a cut whose lowering failed left; until then a
    /// consumer does not take a committed offset past that end for its position.
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        // One truncation at a time, hook included: the hooks run in the order of the cuts.
        let mut owed = self.truncating.lock();
        let end = self.cut_to(offset)?;
        if let Some(hook) = self.on_cut.0.get() {
            let lower_to = owed.map_or(end, |o| o.min(end));
            if let Err(e) = hook(lower_to) {
                *owed = Some(lower_to);
                return Err(e);
            }
            *owed = None;
            self.persist_settled();
        }
        // No other truncation runs now: every one so far has had its hook run.
        self.cuts_settled
            .store(self.truncations.load(Ordering::Acquire), Ordering::Release);
        Ok(end)
    }

    /// [`truncate_to`](Self::truncate_to) but for the owner's hook.
    fn cut_to(&self, offset: u64) -> Result<u64> {
        // Lock order as in `sync_round`: a group-commit round must not publish a synced
        // end past the cut.
        let mut cuts = self.sync_lock.lock();
        let mut w = self.writer.lock();
        self.check_writable()?;
        let start = self.log_start_offset();
        // Below the start, every record is at or after `offset`: all go, as from the start.
        let offset = offset.max(start);
        if offset >= w.next_offset {
            return Ok(w.next_offset);
        }
        self.write_buffer(&mut w)?;
        self.publish_visible(w.next_offset);
        let target = self
            .segment_for(offset)
            .ok_or_else(|| Error::corrupt(&self.dir, 0, "no segment holds the offset"))?;
        // Find the batch holding `offset`: its start is the cut.
        let fetched = self.fetch_from(&target, offset, 1, &mut SpareBuffer::default())?;
        // Below the end, some batch of `target` holds `offset`; none means its file lost
        // bytes under the log (cut outside it): cutting anywhere would leave a hole.
        let Some(cut_batch) = fetched.batches.first() else {
            return Err(Error::corrupt(
                &target.log_path,
                fetched.position,
                format!("no batch holds offset {offset}: the segment file ends before it"),
            ));
        };
        let (cut, new_end) = (fetched.position, cut_batch.base_offset());
        if new_end < start {
            // The batch holding `offset` straddles the log start: nothing readable stays
            // before the cut, so the log restarts empty at its start offset.
            return self.restart_empty_at(&mut w, &mut cuts, start);
        }
        let later: Vec<Arc<Segment>> = self
            .segments
            .read()
            .range(target.base_offset + 1..)
            .map(|(_, s)| Arc::clone(s))
            .collect();
        // Step 1: nothing is destroyed yet, so a failure here leaves the log usable.
        self.lower_recovery_point(new_end)?;
        self.persist_truncation(&mut cuts, new_end, false)?;
        // Readers stop at the new end from now on, whatever happens next, and `Synced`
        // appends waiting for the sync turn learn that their records past it are gone.
        self.note_cut(&mut cuts, new_end);
        self.visible_end.store(new_end, Ordering::Release);
        self.synced_end.fetch_min(new_end, Ordering::AcqRel);
        target.size.fetch_min(cut, Ordering::AcqRel);
        {
            let mut map = self.segments.write();
            for s in &later {
                map.remove(&s.base_offset);
            }
        }
        // Readers no longer reach the records cut.
        self.cuts_seen.fetch_add(1, Ordering::AcqRel);
        // A reader still holding one must not write index files at paths that a segment
        // created later with the same base offset will own.
        later.iter().for_each(|s| s.retire());
        // Before any file changes length: no store goes through the old map from here on,
        // even if what follows fails and leaves the log poisoned.
        w.forget_reserved();
        let destroyed = || -> Result<()> {
            // Step 2: highest first, so that a crash midway leaves a prefix of the log.
            for s in later.iter().rev() {
                remove_segment_files(&*self.vfs, &self.dir, s.base_offset)?;
            }
            if !later.is_empty() {
                self.vfs
                    .sync_dir(&self.dir)
                    .map_err(|e| Error::io("sync directory", &self.dir, e))?;
            }
            // Step 3.
            target
                .log
                .set_len(cut)
                .map_err(|e| Error::io("truncate segment", &target.log_path, e))?;
            target
                .log
                .sync_data()
                .map_err(|e| Error::io("sync segment", &target.log_path, e))?;
            // Rebuild the target's index from what is left: it becomes the active segment.
            target.set_index(target.scan()?.index);
            Ok(())
        };
        destroyed().map_err(|e| self.poison(e))?;
        w.unsynced_sealed.retain(|s| s.base_offset < target.base_offset);
        w.active = target;
        w.forget_reserved();
        w.next_offset = new_end;
        w.active_since = None;
        // Step 4. The files and memory agree already; a failure still poisons, as the
        // truncation is not recorded as finished for readers until the next open.
        self.persist_truncation(&mut cuts, new_end, true)
            .map_err(|e| self.poison(e))?;
        Ok(new_end)
    }

    /// Deletes every segment and continues with an empty one at `base`, the persisted log
    /// start offset (Kafka's truncate-fully-and-start-at).
    ///
    /// # Crash safety
    /// The steps, and what a crash right after each leaves at the next open:
    /// 1. The recovery point is lowered to at most `base`, and persisted: the whole log
    ///    survives.
    /// 2. The segments are deleted, highest base offset first, and the directory is synced.
    ///    A crash in between leaves the first few segments: open recovers them from the
    ///    lowered recovery point, drops those wholly below the log start, and if what is left
    ///    ends below `base`, restarts empty at `base`. So the result is an empty log at
    ///    `base`, or the old log cut somewhere at or after `base` — never a hole.
    /// 3. The new, empty segment is created at `base` and its name synced. A crash before
    ///    that leaves no segment file, which open turns into an empty log at the persisted
    ///    log start — `base`, the same result as completing.
    ///
    /// A failure after the first deletion poisons the log.
    fn restart_empty_at(&self, w: &mut Writer, cuts: &mut Cuts, base: u64) -> Result<u64> {
        self.lower_recovery_point(base)?;
        self.persist_truncation(cuts, 0, false)?;
        // Every record goes, whatever its offset.
        self.note_cut(cuts, 0);
        self.visible_end.store(base, Ordering::Release);
        self.synced_end.fetch_min(base, Ordering::AcqRel);
        let all: Vec<Arc<Segment>> = std::mem::take(&mut *self.segments.write()).into_values().collect();
        // Readers no longer reach the records cut.
        self.cuts_seen.fetch_add(1, Ordering::AcqRel);
        all.iter().for_each(|s| s.retire());
        let created = || -> Result<Arc<Segment>> {
            for s in all.iter().rev() {
                remove_segment_files(&*self.vfs, &self.dir, s.base_offset)?;
            }
            self.vfs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("sync directory", &self.dir, e))?;
            Segment::create_empty(&*self.vfs, &self.dir, base, w.config.limits())
        };
        let segment = created().map_err(|e| self.poison(e))?;
        self.segments.write().insert(base, Arc::clone(&segment));
        w.active = segment;
        w.forget_reserved();
        w.unsynced_sealed.clear();
        w.dir_dirty = false;
        w.next_offset = base;
        w.active_since = None;
        self.synced_end.store(base, Ordering::Release);
        self.persist_truncation(cuts, 0, true).map_err(|e| self.poison(e))?;
        Ok(base)
    }

    /// Starts a new truncation epoch whose cut left the log ending at `end`. Call with the
    /// writer lock and the sync turn (`cuts`).
    fn note_cut(&self, cuts: &mut Cuts, end: u64) {
        let epoch = self.truncations.fetch_add(1, Ordering::AcqRel) + 1;
        cuts.record(epoch, end);
    }

    /// Persists `min(recovery point, end)` as the recovery point, if that lowers it. Call
    /// with the sync turn.
    fn lower_recovery_point(&self, end: u64) -> Result<()> {
        if self.recovery_point.load(Ordering::Acquire) > end {
            self.persist_recovery_point(end)?;
        }
        Ok(())
    }

    /// Records in the `truncations` file, for read-only readers, that a truncation leaving
    /// the log ending at `end` begins (before anything is cut) or has `finished`. Call with
    /// the sync turn.
    fn persist_truncation(&self, cuts: &mut Cuts, end: u64, finished: bool) -> Result<()> {
        let [started, done, _, settled] = cuts.persisted;
        let next = if !finished {
            [started + 1, done, end, settled]
        } else if self.on_cut.0.get().is_none() {
            // No hook to run: settled with it.
            [started, started, end, started]
        } else {
            [started, started, end, settled]
        };
        self.write_truncations(cuts, next)
    }

    /// Records in the `truncations` file that the owner's hook ran for every truncation
    /// finished so far, if it does not say so yet. A failure is logged: readers then keep
    /// checking committed offsets against those truncations (at worst, duplicates).
    fn persist_settled(&self) {
        let mut cuts = self.sync_lock.lock();
        let [started, finished, end, settled] = cuts.persisted;
        if settled < finished
            && let Err(e) = self.write_truncations(&mut cuts, [started, finished, end, finished])
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not record that a truncation's hook ran");
        }
    }

    /// Replaces the `truncations` file with `next`. Call with the sync turn.
    fn write_truncations(&self, cuts: &mut Cuts, next: [u64; 4]) -> Result<()> {
        let written = checkpoint::write(&*self.vfs, &self.dir.join(TRUNCATIONS_FILE), &next);
        // A failed write may still have replaced the file: the counts kept are the higher.
        let old = cuts.persisted;
        cuts.persisted = [next[0].max(old[0]), next[1].max(old[1]), next[2], next[3].max(old[3])];
        written
    }

    /// Writes the recovery-point checkpoint. Call with the sync turn.
    ///
    /// A failed write may still have renamed the new value into place (only the directory
    /// sync after it failed), and the next directory sync makes it durable: the file holds
    /// the old value or the new one, so the higher of the two is kept as what it may hold,
    /// for [`lower_recovery_point`](Self::lower_recovery_point) to lower.
    fn persist_recovery_point(&self, value: u64) -> Result<()> {
        if let Err(e) = checkpoint::write(&*self.vfs, &self.dir.join(RECOVERY_POINT_FILE), &[value]) {
            self.recovery_point.fetch_max(value, Ordering::AcqRel);
            return Err(e);
        }
        self.recovery_point.store(value, Ordering::Release);
        Ok(())
    }

    /// Flushes and syncs everything, writes the indexes and checkpoints, and leaves a
    /// clean-shutdown marker so that the next open runs no recovery scan (see
    /// [`RecoveryReport::clean_shutdown`]).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`]: the marker is then not written, and the next
    /// open recovers by scanning. The log counts as closed either way (dropping it does not
    /// retry).
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// Closes once: the first call marks the log closed whatever happens next, so a close
    /// that failed is not retried by `Drop` into leaving a marker the failure should prevent.
    ///
    /// Also [`Broker::close`](crate::Broker::close)'s, on logs the application may still
    /// hold after the directory's lock is released: once closed, the log never again opens
    /// an index file by path (its segments are retired, as a deleted topic's are), since a
    /// new owner of the directory may be changing them; reads through it go on from its
    /// open `.log` files.
    pub(crate) fn shutdown(&self) -> Result<()> {
        if self.read_only {
            // A reader writes nothing, not even at close.
            self.closed.store(true, Ordering::Release);
            return Ok(());
        }
        // A truncation in progress finishes first, its hook included (which may hold the
        // clean-shutdown marker back until the committed offsets are lowered).
        let _truncating = self.truncating.lock();
        let result = self.close_files();
        // Outside the map's lock: a retire waits for an index load in progress.
        let segments: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        for segment in segments {
            segment.retire();
        }
        result
    }

    /// [`shutdown`](Self::shutdown)'s writes. Call with the truncation lock.
    fn close_files(&self) -> Result<()> {
        let _turn = self.sync_lock.lock();
        let mut w = self.writer.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned { path: self.dir.clone() });
        }
        let (unsynced, unwritten) = self.take_unsynced(&mut w)?;
        if let Some(err) = unwritten {
            return Err(err);
        }
        // The recovery point is persisted below, where a failure fails the close.
        self.sync_files(unsynced)?;
        if self.release_reserved(&mut w)? {
            // The zeros past the last batch were cut (mapped writes): durably, so that the
            // length the clean-shutdown marker records is the one a power loss leaves.
            w.active
                .log
                .sync_data()
                .map_err(|e| Error::io("sync segment", &w.active.log_path, e))?;
        }
        let active = &w.active;
        let extent = Extent {
            log_len: active.size(),
            next_offset: w.next_offset,
        };
        if let Some(result) = active.with_index_mut(|index| {
            index.add_time_entry();
            index.write_files(
                &*self.vfs,
                &active.index_path(),
                &active.time_index_path(),
                extent,
                true,
            )
        }) {
            result?;
        }
        self.persist_recovery_point(w.next_offset)?;
        if self.clean_close_held.load(Ordering::Acquire) {
            // The owner's work for an unclean open is not done: the next open redoes it.
            return Ok(());
        }
        checkpoint::write(
            &*self.vfs,
            &self.dir.join(CLEAN_SHUTDOWN_FILE),
            &[w.next_offset, active.base_offset, active.size()],
        )
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.shutdown() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "partition log was not closed cleanly");
        }
    }
}

/// The `truncations` file's `[started, finished, end, settled]`, if there is a readable one.
fn read_truncations(vfs: &dyn Vfs, dir: &Path) -> Option<[u64; 4]> {
    checkpoint::read(vfs, &dir.join(TRUNCATIONS_FILE), 4)
        .ok()
        .flatten()
        .and_then(|v| v.try_into().ok())
}

/// At a writable open: records a truncation that was begun but not finished (the writer
/// crashed, or its log was poisoned, midway) as finished, with `end` (the end this open
/// recovered, below which nothing was cut) as the end it left, so that read-only readers
/// reload; an unreadable file is replaced the same way. Its hook (a broker lowering
/// committed offsets) is not known to have run: the settled count stays. Returns what the
/// file holds.
///
/// # Errors
/// [`Error::Io`] if the file cannot be replaced.
fn settle_truncations(vfs: &dyn Vfs, dir: &Path, end: u64) -> Result<[u64; 4]> {
    let path = dir.join(TRUNCATIONS_FILE);
    let next = match checkpoint::read(vfs, &path, 4) {
        Ok(None) => return Ok([0; 4]),
        Ok(Some(v)) => match v[..] {
            [started, finished, last, settled] if started == finished => return Ok([started, finished, last, settled]),
            [started, finished, _, settled] => {
                let n = started.max(finished);
                [n, n, end, settled]
            }
            _ => [0, 0, end, 0],
        },
        Err(e) => {
            tracing::warn!(error = %e, "replacing an unreadable truncations file");
            [0, 0, end, 0]
        }
    };
    checkpoint::write(vfs, &path, &next)?;
    Ok(next)
}

/// The log start offset in `dir`'s checkpoint (0 without one).
fn read_log_start(vfs: &dyn Vfs, dir: &Path) -> Result<u64> {
    Ok(checkpoint::read(vfs, &dir.join(LOG_START_FILE), 1)?.map_or(0, |v| v.first().copied().unwrap_or(0)))
}

fn remove_segment_files(vfs: &dyn Vfs, dir: &Path, base: u64) -> Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment_path(dir, base, suffix);
        match vfs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("delete segment file", &path, e)),
        }
    }
    Ok(())
}

/// The state open builds before the log exists.
struct Opened {
    segments: BTreeMap<u64, Arc<Segment>>,
    next_offset: u64,
    log_start: u64,
    /// The value the `recovery-point` file holds after open.
    recovery_point: u64,
    recovery: RecoveryReport,
    active_since: Option<Instant>,
}

/// The base offsets of the segment `.log` files among `entries`, sorted.
fn segment_bases(entries: &[PathBuf]) -> Vec<u64> {
    let mut bases: Vec<u64> = entries
        .iter()
        .filter_map(|p| parse_segment_name(p, LOG_SUFFIX))
        .collect();
    bases.sort_unstable();
    bases
}

impl Opened {
    fn load(vfs: &dyn Vfs, dir: &Path, config: &LogConfig) -> Result<Opened> {
        let limits = config.limits();
        let mut recovery = RecoveryReport::default();
        let entries = vfs.read_dir(dir).map_err(|e| Error::io("list directory", dir, e))?;
        let mut bases = segment_bases(&entries);
        // Leftovers of interrupted work: temp files, and indexes whose log is gone.
        for path in &entries {
            let orphan = [INDEX_SUFFIX, TIME_INDEX_SUFFIX]
                .iter()
                .any(|s| parse_segment_name(path, s).is_some_and(|b| bases.binary_search(&b).is_err()));
            if orphan || path.extension().is_some_and(|e| e == "tmp") {
                vfs.remove_file(path)
                    .map_err(|e| Error::io("remove leftover file", path, e))?;
            }
        }
        let log_start =
            checkpoint::read(vfs, &dir.join(LOG_START_FILE), 1)?.map_or(0, |v| v.first().copied().unwrap_or(0));
        let recovery_point = checkpoint::read(vfs, &dir.join(RECOVERY_POINT_FILE), 1)?.and_then(|v| v.first().copied());
        let vouched = Vouched {
            log_start,
            recovery_point: recovery_point.unwrap_or(0),
        };
        let marker = match checkpoint::read(vfs, &dir.join(CLEAN_SHUTDOWN_FILE), 3) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable clean-shutdown marker");
                None
            }
        };

        // Finish an interrupted retention: drop segments wholly below the log start.
        while let [first, second, ..] = bases[..] {
            if second > log_start {
                break;
            }
            remove_segment_files(vfs, dir, first)?;
            recovery.segments_deleted.push(first);
            bases.remove(0);
        }
        let mut segments = BTreeMap::new();
        for &base in &bases {
            segments.insert(base, Arc::new(Segment::open(vfs, dir, base, false, limits)?));
        }
        if segments.is_empty() {
            // A new log, or one whose segments were all deleted (e.g. by a restart-empty that
            // a crash interrupted, which lowered the recovery point to the log start first):
            // an empty log at the persisted log start. Unless the recovery point vouches for
            // records from the log start on: then they were lost, which is damage.
            if vouched.lost_from(log_start) {
                return Err(vouched_damage(
                    dir,
                    &segment_path(dir, log_start, LOG_SUFFIX),
                    0,
                    vouched.recovery_point,
                    log_start,
                    "no segment file is left",
                ));
            }
            segments.insert(log_start, Segment::create_empty(vfs, dir, log_start, limits)?);
            recovery.clean_shutdown = marker.is_some() || recovery_point.is_none();
            recovery.log_end_offset = log_start;
            checkpoint::remove(vfs, &dir.join(CLEAN_SHUTDOWN_FILE))?;
            let recovery_point = Self::clamp_recovery_point(vfs, dir, recovery_point, log_start)?;
            return Ok(Opened {
                segments,
                next_offset: log_start,
                log_start,
                recovery_point,
                recovery,
                active_since: None,
            });
        }

        let clean_end = Self::clean_end(vfs, &segments, marker.as_deref())?;
        let (next_offset, persisted_point) = match clean_end {
            Some(end) => {
                recovery.clean_shutdown = true;
                (end, recovery_point)
            }
            None => {
                let end = Self::recover(vfs, dir, config, &mut segments, vouched, &mut recovery)?;
                (end, Some(end))
            }
        };
        // The marker must be gone before the first append, so a later crash is never taken
        // for a clean stop.
        checkpoint::remove(vfs, &dir.join(CLEAN_SHUTDOWN_FILE))?;
        let mut next_offset = next_offset;
        let mut log_start = log_start;
        if log_start > next_offset {
            // Recovery cut below a persisted log start: start afresh there (Kafka's
            // truncate-fully-and-start-at).
            for (base, _) in std::mem::take(&mut segments) {
                remove_segment_files(vfs, dir, base)?;
                recovery.segments_deleted.push(base);
            }
            segments.insert(log_start, Segment::create_empty(vfs, dir, log_start, limits)?);
            next_offset = log_start;
        } else if let Some(first) = segments.keys().next() {
            log_start = log_start.max(*first);
        }
        recovery.log_end_offset = next_offset;
        let recovery_point = Self::clamp_recovery_point(vfs, dir, persisted_point, next_offset)?;
        Ok(Opened {
            segments,
            next_offset,
            log_start,
            recovery_point,
            recovery,
            active_since: None,
        })
    }

    /// Lowers a persisted recovery point above the recovered log `end` to `end`, durably, and
    /// returns the recovery point now on disk (0 when there is none). A point past the end
    /// would make a later open trust, without scanning, segments written after this one.
    fn clamp_recovery_point(vfs: &dyn Vfs, dir: &Path, persisted: Option<u64>, end: u64) -> Result<u64> {
        match persisted {
            Some(point) if point > end => {
                checkpoint::write(vfs, &dir.join(RECOVERY_POINT_FILE), &[end])?;
                Ok(end)
            }
            Some(point) => Ok(point),
            None => Ok(0),
        }
    }

    /// After a clean shutdown: the end offset, with the active segment's indexes loaded.
    /// `None` if there is no valid marker, or it does not match the files.
    fn clean_end(vfs: &dyn Vfs, segments: &BTreeMap<u64, Arc<Segment>>, marker: Option<&[u64]>) -> Result<Option<u64>> {
        let (Some(&[end, active_base, active_size]), Some(active)) = (marker, segments.values().next_back()) else {
            return Ok(None);
        };
        if active.base_offset != active_base || active.size() != active_size || end < active_base {
            return Ok(None);
        }
        let index = match SegmentIndex::load_files(
            vfs,
            &active.index_path(),
            &active.time_index_path(),
            active_size,
            Some(end),
            active.index_files_max_bytes(),
        )? {
            Some(index) => index,
            None => {
                let scan = active.scan()?;
                if scan.error.is_some() || scan.next_offset != end {
                    return Ok(None);
                }
                scan.index
            }
        };
        let mut index = index;
        let last = index.offsets.last().map_or(0, |e| u64::from(e.position));
        index.set_bytes_since_entry(active_size - last);
        active.set_index(index);
        Ok(Some(end))
    }

    /// Scans from the segment holding `recovery_point` to the end, cutting at the first
    /// invalid byte. Returns the end offset.
    ///
    /// Records from the log start to the recovery point were synced (or closed cleanly), so
    /// invalid bytes among them, a gap, or an end below the point is damage, not a write the
    /// crash interrupted: recovery refuses to cut there (it would delete the intact records
    /// after the damage too) and fails with [`Error::Corrupt`] instead, saying how to
    /// accept the loss (see [`vouched_damage`]). It checks before it changes any file.
    fn recover(
        vfs: &dyn Vfs,
        dir: &Path,
        config: &LogConfig,
        segments: &mut BTreeMap<u64, Arc<Segment>>,
        vouched: Vouched,
        report: &mut RecoveryReport,
    ) -> Result<u64> {
        let recovery_point = vouched.recovery_point;
        let first = segments
            .range(..=recovery_point)
            .next_back()
            .or_else(|| segments.iter().next())
            .map(|(b, _)| *b);
        let to_scan: Vec<Arc<Segment>> = segments
            .range(first.unwrap_or(0)..)
            .map(|(_, s)| Arc::clone(s))
            .collect();
        let mut expected: Option<u64> = None;
        let mut next_offset = 0;
        let mut cut_from: Option<u64> = None;
        for (i, segment) in to_scan.iter().enumerate() {
            if expected.is_some_and(|e| e != segment.base_offset) {
                // A gap or overlap between segments: keep what precedes it.
                report.truncation = Some(Truncation {
                    path: segment.log_path.clone(),
                    position: 0,
                    bytes_removed: segment.size(),
                    reason: format!(
                        "segment starts at offset {}, expected {}",
                        segment.base_offset, next_offset
                    ),
                    zeros_only: false,
                });
                cut_from = Some(segment.base_offset);
                break;
            }
            let scan = segment.scan()?;
            let extent = scan.extent();
            report.segments_scanned += 1;
            report.batches_scanned += scan.batches;
            report.bytes_scanned += scan.valid_len;
            next_offset = scan.next_offset;
            expected = Some(scan.next_offset);
            let index = scan.index;
            if vouched.lost_from(scan.next_offset) {
                // Checked before this segment or its index files change.
                if let Some(err) = &scan.error {
                    return Err(vouched_damage(
                        dir,
                        &segment.log_path,
                        err.position,
                        recovery_point,
                        scan.next_offset,
                        &err.reason,
                    ));
                }
                if let Some(next) = to_scan.get(i + 1)
                    && next.base_offset != scan.next_offset
                {
                    return Err(vouched_damage(
                        dir,
                        &next.log_path,
                        0,
                        recovery_point,
                        scan.next_offset,
                        &format!("the next segment starts at offset {}", next.base_offset),
                    ));
                }
                if i + 1 == to_scan.len() {
                    return Err(vouched_damage(
                        dir,
                        &segment.log_path,
                        scan.valid_len,
                        recovery_point,
                        scan.next_offset,
                        "the last segment ends there",
                    ));
                }
            }
            if let Some(err) = scan.error {
                // Read before the cut: whether it removes only zeros.
                let zeros_only = segment.is_zero_from(scan.valid_len, scan.file_len)?;
                segment
                    .log
                    .set_len(scan.valid_len)
                    .map_err(|e| Error::io("truncate segment", &segment.log_path, e))?;
                segment.size.store(scan.valid_len, Ordering::Release);
                report.truncation = Some(Truncation {
                    path: segment.log_path.clone(),
                    position: err.position,
                    bytes_removed: scan.file_len - scan.valid_len,
                    reason: err.reason,
                    zeros_only,
                });
                cut_from = Some(segment.base_offset + 1);
            }
            segment
                .log
                .sync_data()
                .map_err(|e| Error::io("sync segment", &segment.log_path, e))?;
            let is_last = cut_from.is_some() || segments.keys().next_back() == Some(&segment.base_offset);
            if is_last {
                segment.set_index(index);
            } else {
                let mut sealed = index;
                sealed.add_time_entry();
                // Index files are caches: failing to write one costs a rebuild later, not
                // the open.
                let written = sealed.write_files(vfs, &segment.index_path(), &segment.time_index_path(), extent, false);
                segment.set_index(sealed);
                match written {
                    Ok(()) => segment.index_written(),
                    Err(e) => {
                        tracing::warn!(segment = %segment.log_path.display(), error = %e, "could not write rebuilt index files");
                    }
                }
            }
            if cut_from.is_some() {
                break;
            }
        }
        if let Some(from) = cut_from {
            let later: Vec<u64> = segments.range(from..).map(|(b, _)| *b).collect();
            for base in later {
                segments.remove(&base);
                remove_segment_files(vfs, dir, base)?;
                report.segments_deleted.push(base);
            }
        }
        if segments.is_empty() {
            // Every segment was invalid from its first byte: start over at the first base.
            let base = first.unwrap_or(0);
            segments.insert(base, Segment::create_empty(vfs, dir, base, config.limits())?);
            next_offset = base;
        }
        vfs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
        checkpoint::write(vfs, &dir.join(RECOVERY_POINT_FILE), &[next_offset])?;
        Ok(next_offset)
    }
}

/// What a recovery may not cut: the records from the log start to the recovery point.
#[derive(Debug, Clone, Copy)]
struct Vouched {
    log_start: u64,
    recovery_point: u64,
}

impl Vouched {
    /// Whether valid records ending at `end` would lose vouched ones: `end` is below the
    /// recovery point, and some records from the log start on are below it too. (A crash
    /// midway through a restart at the log start leaves the point at the log start with
    /// older segments still there: nothing vouched is lost when they go.)
    fn lost_from(self, end: u64) -> bool {
        end < self.recovery_point && self.log_start < self.recovery_point
    }
}

/// The error for invalid bytes (at `position` of `path`, after the valid records end at
/// offset `valid_end`) below the recovery point: records there were synced, so this is
/// damage, and recovery does not repair it by cutting. The way out it names — removing
/// the recovery-point file, after which the next open scans from the first segment and
/// cuts at the damage — deletes every record from `valid_end` on, so it is the
/// operator's decision, as `pg_resetwal` is PostgreSQL's.
fn vouched_damage(dir: &Path, path: &Path, position: u64, recovery_point: u64, valid_end: u64, reason: &str) -> Error {
    Error::corrupt(
        path,
        position,
        format!(
            "damaged below the recovery point: records below offset {recovery_point} were synced, but they stop \
             being valid at offset {valid_end} ({reason}). Recovery does not cut synced records. Restore the \
             partition from a copy, or accept losing every record from offset {valid_end} on by removing {} and \
             opening again",
            dir.join(RECOVERY_POINT_FILE).display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::storage::io::{OpenMode, VfsFile};

    /// The OS file system, except that opening `target` first runs `hook` (once).
    struct HookFs {
        target: PathBuf,
        hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl std::fmt::Debug for HookFs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HookFs").field("target", &self.target).finish()
        }
    }

    impl Vfs for HookFs {
        fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn VfsFile>> {
            if path == self.target {
                let hook = self.hook.lock().take();
                if let Some(hook) = hook {
                    hook();
                }
            }
            OsFs.open(path, mode)
        }
        fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
            OsFs.create_dir_all(path)
        }
        fn read_dir(&self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
            OsFs.read_dir(path)
        }
        fn remove_file(&self, path: &Path) -> std::io::Result<()> {
            OsFs.remove_file(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            OsFs.rename(from, to)
        }
        fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
            OsFs.sync_dir(path)
        }
    }

    /// How many sealed segments have their indexes in memory.
    fn loaded_sealed(log: &PartitionLog) -> usize {
        let map = log.segments.read();
        map.values().rev().skip(1).filter(|s| s.index_loaded()).count()
    }

    /// Record `i` of a numbered log: key `i`, a 200-byte value, timestamp `1_000 + i`.
    fn numbered(i: u64) -> Record {
        Record::new()
            .key(i.to_string())
            .value(vec![7u8; 200])
            .timestamp(1_000 + i as i64)
    }

    /// Appends numbered records `0..n`, one per batch.
    fn append_numbered(log: &PartitionLog, n: u64) {
        for i in 0..n {
            log.append(&[numbered(i)], Durability::Written).unwrap();
        }
    }

    /// A log in a fresh directory with 4 KiB segments (about 17 numbered records each)
    /// holding numbered records `0..n`.
    fn numbered_log(n: u64) -> (tempfile::TempDir, LogConfig, PartitionLog) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default().segment_bytes(4096).index_interval_bytes(512);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        append_numbered(&log, n);
        (dir, config, log)
    }

    /// Reads every record from the start, checking each offset and key.
    fn read_numbered(log: &PartitionLog, n: u64, mut after_each_read: impl FnMut()) {
        let mut next = 0u64;
        while next < n {
            let batches = log.read(next, 1024).unwrap();
            for batch in &batches {
                for r in batch.records() {
                    let r = r.unwrap();
                    assert_eq!(r.offset, next);
                    assert_eq!(r.key.as_deref(), Some(next.to_string().as_bytes()));
                    next += 1;
                }
            }
            after_each_read();
        }
        assert_eq!(next, n);
    }

    /// A writer, and a reader going through a long log, keep at most
    /// `LOADED_SEALED_INDEXES` sealed segments' indexes in memory: the rest are unloaded
    /// and loaded again from their files when used, with the same answers.
    #[test]
    fn only_a_few_sealed_segments_keep_their_indexes_in_memory() {
        let (dir, config, log) = numbered_log(400);
        let segments = log.segments.read().len();
        assert!(segments > 20, "{segments} segments");
        // Each roll unloads the coldest beyond the bound.
        assert_eq!(loaded_sealed(&log), LOADED_SEALED_INDEXES - 1);
        let mut most = 0;
        read_numbered(&log, 400, || most = most.max(loaded_sealed(&log)));
        assert_eq!(most, LOADED_SEALED_INDEXES);
        // Time lookups and retention by age answer from what unloaded indexes recorded.
        for ts in [0, 1_000, 1_057, 1_399] {
            assert_eq!(
                log.offset_for_timestamp(ts).unwrap(),
                Some((ts - 1_000).max(0) as u64),
                "{ts}"
            );
        }
        assert_eq!(log.offset_for_timestamp(1_400).unwrap(), None);
        assert!(loaded_sealed(&log) <= LOADED_SEALED_INDEXES);
        log.close().unwrap();
        // After a reopen, the same from the index files.
        let log = PartitionLog::open(dir.path(), config).unwrap();
        assert_eq!(loaded_sealed(&log), 0);
        let mut most = 0;
        read_numbered(&log, 400, || most = most.max(loaded_sealed(&log)));
        assert_eq!(most, LOADED_SEALED_INDEXES);
        assert_eq!(log.offset_for_timestamp(1_201).unwrap(), Some(201));
        // Appends after all that still index the active segment: a read inside it starts at
        // the record asked for.
        append_numbered(&log, 3);
        let end = log.log_end_offset();
        let batches = log.read(end - 1, 1024).unwrap();
        assert_eq!(batches.first().map(RecordBatch::base_offset), Some(end - 1));
    }

    /// Readers at different places, a writer rolling segments and time lookups, all at
    /// once, load and unload indexes under each other: every read still returns exactly
    /// the records asked for, and none waits for another for good.
    #[test]
    fn indexes_unloaded_under_concurrent_readers_and_a_writer_read_back_exactly() {
        let (_dir, _, log) = numbered_log(300);
        std::thread::scope(|s| {
            for reader in 0..4u64 {
                let log = &log;
                s.spawn(move || {
                    for round in 0..20u64 {
                        // Each reader starts somewhere else each round.
                        let mut next = (reader * 71 + round * 13) % 300;
                        let end = (next + 120).min(300);
                        while next < end {
                            for batch in log.read(next, 1024).unwrap() {
                                for r in batch.records() {
                                    let r = r.unwrap();
                                    if r.offset >= next {
                                        assert_eq!(r.offset, next);
                                        assert_eq!(r.key.as_deref(), Some(next.to_string().as_bytes()));
                                        next += 1;
                                    }
                                }
                            }
                        }
                        // Each of the six threads may be loading one at this moment.
                        assert!(loaded_sealed(log) <= LOADED_SEALED_INDEXES + 6);
                    }
                });
            }
            s.spawn(|| {
                for i in 0..200u64 {
                    let ts = 1_000 + (i * 37 % 300) as i64;
                    assert_eq!(log.offset_for_timestamp(ts).unwrap(), Some((ts - 1_000) as u64));
                }
            });
            s.spawn(|| {
                for i in 300..500u64 {
                    assert_eq!(log.append(&[numbered(i)], Durability::Written).unwrap().base_offset, i);
                }
            });
        });
        read_numbered(&log, 500, || {});
        assert!(loaded_sealed(&log) <= LOADED_SEALED_INDEXES);
    }

    /// Indexes whose files do not hold them (a read-only log rebuilds missing ones in
    /// memory only) are never unloaded: loading them again would read the whole segment.
    #[test]
    fn indexes_not_on_disk_stay_loaded() {
        let (dir, config, log) = numbered_log(100);
        log.close().unwrap();
        for path in std::fs::read_dir(dir.path()).unwrap() {
            let path = path.unwrap().path();
            if path
                .extension()
                .is_some_and(|e| e == INDEX_SUFFIX || e == TIME_INDEX_SUFFIX)
            {
                std::fs::remove_file(path).unwrap();
            }
        }
        let reader = PartitionLog::open_read_only(dir.path(), config).unwrap();
        let sealed = reader.segments.read().len() - 1;
        assert!(sealed > LOADED_SEALED_INDEXES, "{sealed} sealed segments");
        read_numbered(&reader, 100, || {});
        assert_eq!(loaded_sealed(&reader), sealed);
    }

    /// A load of one segment's indexes that takes long (files read slowly, or a whole
    /// segment scanned to rebuild them) holds only that segment's index lock: a reader
    /// loading another segment's meanwhile must not wait for it while holding the segment
    /// map, which would leave the writer's roll (and, behind it, every read) waiting too.
    #[test]
    fn a_slow_index_load_does_not_hold_up_the_writers_roll() {
        let (dir, config, log) = numbered_log(100);
        log.close().unwrap();
        let (in_tx, in_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let fs = Arc::new(HookFs {
            target: segment_path(dir.path(), 0, INDEX_SUFFIX),
            hook: Mutex::new(Some(Box::new(move || {
                in_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            }))),
        });
        let log = PartitionLog::open_with_vfs(dir.path(), config, fs).unwrap();
        let bases: Vec<u64> = log.segments.read().keys().copied().collect();
        assert!(bases.len() > 3, "{bases:?}");
        let (rolled_tx, rolled_rx) = mpsc::channel::<()>();
        let log = &log;
        let rolled = std::thread::scope(|s| {
            // Loads segment 0's indexes, held up in the middle.
            let slow = s.spawn(move || log.read(0, 1024).unwrap());
            in_rx.recv().unwrap();
            // Loads another sealed segment's meanwhile.
            let other = s.spawn(|| log.read(bases[2], 1024).unwrap());
            std::thread::sleep(Duration::from_millis(200));
            let segments = log.segment_count();
            s.spawn(move || {
                while log.segment_count() == segments {
                    append_numbered(log, 1);
                }
                rolled_tx.send(()).unwrap();
            });
            let rolled = rolled_rx.recv_timeout(Duration::from_secs(5)).is_ok();
            go_tx.send(()).unwrap();
            slow.join().unwrap();
            other.join().unwrap();
            rolled
        });
        assert!(rolled, "the writer's roll waited for another segment's index load");
    }

    /// A read-only log following a writer reads each segment as its tail, indexing it in
    /// memory; once the writer sealed it (writing its index files), it is a sealed segment
    /// like any other: a reader following a writer for weeks keeps at most
    /// `LOADED_SEALED_INDEXES` of them in memory, not one per segment it followed.
    #[test]
    fn a_read_only_log_following_a_writer_keeps_only_a_few_sealed_indexes() {
        let (dir, config, writer) = numbered_log(1);
        let reader = PartitionLog::open_read_only(dir.path(), config).unwrap();
        for i in 1..400u64 {
            writer.append(&[numbered(i)], Durability::Written).unwrap();
            reader.refresh().unwrap();
        }
        assert_eq!(reader.log_end_offset(), 400);
        let sealed = reader.segments.read().len() - 1;
        assert!(sealed > 20, "{sealed} sealed segments");
        assert!(
            loaded_sealed(&reader) <= LOADED_SEALED_INDEXES,
            "{} of {sealed} sealed segments keep their indexes",
            loaded_sealed(&reader)
        );
        read_numbered(&reader, 400, || {});
        for ts in [0, 1_000, 1_057, 1_399] {
            assert_eq!(
                reader.offset_for_timestamp(ts).unwrap(),
                Some((ts - 1_000).max(0) as u64)
            );
        }
        assert!(loaded_sealed(&reader) <= LOADED_SEALED_INDEXES);
    }

    /// A reader whose scan of its last segment stopped short (the writer was still writing
    /// it) finds no segment at its end; if meanwhile the writer filled that segment, raised
    /// the log start into its tail with `delete_records_before` (no file deleted) and
    /// rolled, the reader has not fallen behind retention: the records from the log start
    /// to the end of that segment are still stored, and it must serve them, not jump past
    /// them to the next segment.
    #[test]
    fn a_reader_does_not_jump_past_records_above_a_log_start_raised_inside_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default().segment_bytes(4096);
        let writer = Arc::new(PartitionLog::open(dir.path(), config.clone()).unwrap());
        let value = vec![7u8; 200];
        for _ in 0..5 {
            writer
                .append(&[Record::new().value(value.clone())], Durability::Written)
                .unwrap();
        }
        let (at_end_tx, at_end) = mpsc::channel::<()>();
        let (done_tx, done) = mpsc::channel::<()>();
        let fs = Arc::new(HookFs {
            target: segment_path(dir.path(), 5, LOG_SUFFIX),
            hook: Mutex::new(None),
        });
        let reader = PartitionLog::open_read_only_with_vfs(dir.path(), config, fs.clone()).unwrap();
        assert_eq!(reader.log_end_offset(), 5);
        // The next refresh, having scanned the segment to offset 5, looks for a segment
        // there: the writer goes on meanwhile, on its own thread.
        *fs.hook.lock() = Some(Box::new(move || {
            at_end_tx.send(()).unwrap();
            done.recv().unwrap();
        }));
        let writing = {
            let writer = Arc::clone(&writer);
            let value = value.clone();
            std::thread::spawn(move || {
                at_end.recv().unwrap();
                while writer.segment_count() < 2 {
                    writer
                        .append(&[Record::new().value(value.clone())], Durability::Written)
                        .unwrap();
                }
                assert_eq!(writer.delete_records_before(7).unwrap(), 7);
                done_tx.send(()).unwrap();
            })
        };
        reader.refresh().unwrap();
        writing.join().unwrap();
        let end = writer.log_end_offset();
        assert!(end > 8, "the writer rolled past offset 7");
        let mut read = Vec::new();
        let mut offset = reader.log_start_offset().max(7);
        while offset < reader.log_end_offset() {
            let batches = reader.read(offset, 1 << 20).unwrap();
            let Some(last) = batches.last() else { break };
            read.extend(batches.iter().map(RecordBatch::base_offset));
            offset = last.last_offset() + 1;
        }
        assert_eq!(read, (7..end).collect::<Vec<_>>());
    }

    /// A reader at the end of its segment looks for the next one; if its directory is
    /// replaced right then (a topic deleted and created again) by a log whose start is past
    /// the reader's end, the new log's segment looks like the one the writer's retention
    /// left, and the reader jumped its end there before it saw that the directory is no
    /// longer its own: its end became the new log's segment's base, offsets it never had.
    #[test]
    fn a_reader_whose_directory_is_replaced_while_it_looks_for_its_next_segment_keeps_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let config = LogConfig::default().segment_bytes(4096);
        let value = vec![7u8; 200];
        let old = PartitionLog::open(&path, config.clone()).unwrap();
        for _ in 0..5 {
            old.append(&[Record::new().value(value.clone())], Durability::Written)
                .unwrap();
        }
        old.close().unwrap();
        let fs = Arc::new(HookFs {
            target: segment_path(&path, 5, LOG_SUFFIX),
            hook: Mutex::new(None),
        });
        let reader = PartitionLog::open_read_only_with_vfs(&path, config.clone(), fs.clone()).unwrap();
        assert_eq!(reader.log_end_offset(), 5);
        // The refresh finds no segment at 5: meanwhile the directory is replaced by a log
        // whose start is past 5, with a segment at or below its start.
        let (new_path, new_config) = (path.clone(), config.clone());
        let replaced_start = Arc::new(Mutex::new(None));
        let start = Arc::clone(&replaced_start);
        *fs.hook.lock() = Some(Box::new(move || {
            std::fs::remove_dir_all(&new_path).unwrap();
            let new = PartitionLog::open(&new_path, new_config).unwrap();
            while new.segment_count() < 3 {
                new.append(&[Record::new().value(vec![8u8; 200])], Durability::Written)
                    .unwrap();
            }
            let end = new.log_end_offset();
            new.delete_records_before(end - 1).unwrap();
            *start.lock() = Some(new.log_start_offset());
            new.close().unwrap();
        }));
        reader.refresh().unwrap();
        assert!(replaced_start.lock().is_some_and(|start| start > 5));
        assert_eq!(reader.log_end_offset(), 5);
        let batches = reader.read(0, 1 << 20).unwrap();
        assert_eq!(
            batches.iter().map(RecordBatch::base_offset).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert!(
            batches
                .iter()
                .all(|b| b.records().all(|r| r.unwrap().value.unwrap() == value))
        );
        assert!(reader.read(5, 1 << 20).unwrap().is_empty());
    }

    /// The writer's retention check seals and deletes an expired active segment: the
    /// partition's only segment goes, and a new, empty one takes over at the end. A
    /// read-only open that listed the directory just before must not take the vanished
    /// segment for a partition without segments (`Corrupt`, so that a CLI reading beside a
    /// running application fails): it finds the new segment, an empty log at the writer's
    /// end.
    #[test]
    fn a_read_only_open_racing_the_deletion_of_the_writers_only_segment_finds_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default().retention_ms(Some(Duration::from_secs(3600)));
        let writer = Arc::new(PartitionLog::open(dir.path(), config.clone()).unwrap());
        let expired = now_ms() - 7_200_000;
        for _ in 0..5 {
            writer
                .append(&[Record::new().value("v").timestamp(expired)], Durability::Written)
                .unwrap();
        }
        // Listed, then deleted before the reader opens it.
        let fs = Arc::new(HookFs {
            target: segment_path(dir.path(), 0, LOG_SUFFIX),
            hook: Mutex::new(None),
        });
        let (checked_tx, checked) = mpsc::channel();
        let check = Arc::clone(&writer);
        *fs.hook.lock() = Some(Box::new(move || {
            checked_tx.send(check.enforce_retention().unwrap()).unwrap();
        }));
        let reader = PartitionLog::open_read_only_with_vfs(dir.path(), config, fs).unwrap();
        assert_eq!(checked.recv().unwrap().segments_deleted, vec![0]);
        assert_eq!((reader.log_start_offset(), reader.log_end_offset()), (5, 5));
        assert!(reader.read(5, 1 << 20).unwrap().is_empty());
        assert_eq!(
            writer
                .append(&[Record::new().value("w")], Durability::Written)
                .unwrap()
                .base_offset,
            5
        );
        let batches = reader.read(5, 1 << 20).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::base_offset).collect::<Vec<_>>(), [5]);
    }

    /// The OS file system, except that the first read of a segment `.log` by a thread
    /// named `paused-reader` says so on `paused` and waits for `resume` before reading, and
    /// that reads of segment `.log` files are counted.
    #[derive(Debug, Default)]
    struct PausedReadFs {
        paused: Mutex<Option<mpsc::Sender<()>>>,
        resume: Mutex<Option<mpsc::Receiver<()>>>,
        log_reads: AtomicU64,
    }

    #[derive(Debug)]
    struct PausedReadFile {
        inner: Box<dyn VfsFile>,
        fs: Arc<PausedReadFs>,
    }

    impl VfsFile for PausedReadFile {
        fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
            self.fs.log_reads.fetch_add(1, Ordering::Relaxed);
            if std::thread::current().name() == Some("paused-reader") {
                let paused = self.fs.paused.lock().take();
                if let Some(paused) = paused {
                    paused.send(()).unwrap();
                    let resume = self.fs.resume.lock().take().unwrap();
                    resume.recv().unwrap();
                }
            }
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
            self.inner.sync_data()
        }
    }

    #[derive(Debug)]
    struct PausedReadVfs(Arc<PausedReadFs>);

    impl Vfs for PausedReadVfs {
        fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn VfsFile>> {
            let inner = OsFs.open(path, mode)?;
            if parse_segment_name(path, LOG_SUFFIX).is_some() {
                return Ok(Box::new(PausedReadFile {
                    inner,
                    fs: Arc::clone(&self.0),
                }));
            }
            Ok(inner)
        }
        fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
            OsFs.create_dir_all(path)
        }
        fn read_dir(&self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
            OsFs.read_dir(path)
        }
        fn remove_file(&self, path: &Path) -> std::io::Result<()> {
            OsFs.remove_file(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            OsFs.rename(from, to)
        }
        fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
            OsFs.sync_dir(path)
        }
    }

    /// Runs `read` on a thread that pauses at its first read of a segment file, in a log
    /// of 40 numbered records with an index entry at every batch; meanwhile truncates the
    /// log to 10 and appends 40 new records (keys `new-10`…, 333-byte values, another batch
    /// size than the old ones, timestamp 5,000), then lets the read go on. Returns its result.
    fn race_a_truncation<T: Send + 'static>(read: impl FnOnce(&PartitionLog) -> T + Send + 'static) -> T {
        let dir = tempfile::tempdir().unwrap();
        let (paused_tx, paused) = mpsc::channel();
        let (resume, resume_rx) = mpsc::channel();
        let fs = Arc::new(PausedReadFs {
            paused: Mutex::new(Some(paused_tx)),
            resume: Mutex::new(Some(resume_rx)),
            log_reads: AtomicU64::new(0),
        });
        let config = LogConfig::default().index_interval_bytes(1);
        let log = Arc::new(PartitionLog::open_with_vfs(dir.path(), config, Arc::new(PausedReadVfs(fs))).unwrap());
        append_numbered(&log, 40);
        let reader = {
            let log = Arc::clone(&log);
            std::thread::Builder::new()
                .name("paused-reader".into())
                .spawn(move || read(&log))
                .unwrap()
        };
        // The reader has its position (from the index) and the segment's size.
        paused.recv().unwrap();
        assert_eq!(log.truncate_to(10).unwrap(), 10);
        for i in 10..50 {
            let new = Record::new()
                .key(format!("new-{i}"))
                .value(vec![9u8; 333])
                .timestamp(5_000);
            assert_eq!(log.append(&[new], Durability::Written).unwrap().base_offset, i);
        }
        resume.send(()).unwrap();
        reader.join().unwrap()
    }

    /// A read that looked up its position in the segment before a truncation cut the
    /// segment, and read its bytes after new records were appended at the cut, found other
    /// batches than its index entry named. It reported `Error::Corrupt` (damage, naming the
    /// segment file) for an intact log; it reads again instead, and returns the records
    /// the log now holds at the offset.
    #[test]
    fn a_read_racing_a_truncation_and_new_appends_is_not_reported_as_corrupt() {
        let batches = race_a_truncation(|log| log.read(30, 1 << 20)).unwrap();
        let first = batches.first().unwrap().records().next().unwrap().unwrap();
        assert_eq!(first.offset, 30);
        assert_eq!(first.key.as_deref(), Some(&b"new-30"[..]));
    }

    /// The same race for a time lookup: it answers from the log as the truncation and the
    /// new appends left it, not with `Error::Corrupt`.
    #[test]
    fn a_time_lookup_racing_a_truncation_and_new_appends_is_not_reported_as_corrupt() {
        assert_eq!(
            race_a_truncation(|log| log.offset_for_timestamp(1_030)).unwrap(),
            Some(10)
        );
    }

    /// Each clean close adds a time entry for the active segment's newest record when no
    /// index entry has covered it yet, so a segment closed and reopened many times holds more
    /// time entries than offset entries. Open capped the time index by `index_max_bytes`
    /// alone and, past it, rebuilt both files by reading the whole active segment, at every
    /// clean open from then on; the cap is now the segment's own (one entry per batch at
    /// most), as for a sealed segment's files.
    #[test]
    fn a_clean_open_takes_the_time_index_that_many_closes_grew() {
        // No offset entries (the interval is never reached); at most 8 (64 bytes, the least
        // allowed) by the configured cap.
        let config = LogConfig::default().index_max_bytes(64).index_interval_bytes(1 << 20);
        let dir = tempfile::tempdir().unwrap();
        let mut reads = Vec::new();
        for records in 1..=12u64 {
            let fs = Arc::new(PausedReadFs::default());
            let log = PartitionLog::open_with_vfs(dir.path(), config.clone(), Arc::new(PausedReadVfs(Arc::clone(&fs))))
                .unwrap();
            assert!(log.recovery_report().clean_shutdown);
            assert_eq!(log.recovery_report().log_end_offset, records - 1);
            reads.push(fs.log_reads.load(Ordering::Relaxed));
            log.append(&[numbered(records - 1)], Durability::Written).unwrap();
            read_numbered(&log, records, || {});
            log.close().unwrap();
        }
        assert_eq!(reads, [0; 12], "reads of the .log at each open");
    }

    /// `verify_checksums` changed by `set_config` applies to the next read, in segments
    /// already open too. It was fixed in each segment when the segment was opened, so a
    /// log switched to checking went on serving unchecked bytes until reopened.
    #[test]
    fn verify_checksums_set_while_open_applies_to_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default().verify_checksums(false);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        append_numbered(&log, 3);
        // A byte of record 0's value (200 bytes after the 61-byte batch header and the
        // record's first few bytes), which no parse checks: only the CRC can tell.
        let path = dir.path().join("00000000000000000000.log");
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[100], 7);
        bytes[100] = 8;
        std::fs::write(&path, &bytes).unwrap();

        let first_value = |log: &PartitionLog| -> Result<Vec<u8>> {
            let batches = log.read(0, 1 << 20)?;
            let record = batches[0].records().next().unwrap()?;
            Ok(record.value.unwrap().to_vec())
        };
        let flipped = |value: Vec<u8>| (value.len(), value.iter().filter(|&&b| b == 8).count());
        assert_eq!(flipped(first_value(&log).unwrap()), (200, 1));
        log.set_config(config.clone().verify_checksums(true)).unwrap();
        match first_value(&log) {
            Err(Error::Corrupt { path: at, position, .. }) => assert_eq!((at, position), (path.clone(), 0)),
            other => panic!("{other:?}"),
        }
        log.set_config(config).unwrap();
        assert_eq!(flipped(first_value(&log).unwrap()), (200, 1));
    }
}
