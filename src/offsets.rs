//! The committed-offset table (Kafka's `__consumer_offsets`): for each (group, topic,
//! partition) the offset a group has committed, with a metadata string and the commit time.
//!
//! # Storage: an internal log plus snapshots
//! ```text
//! DATA/offsets/
//!   log/        a PartitionLog (same format, recovery and durability as a topic's partition)
//!   snapshot    the whole table as of a log offset, replaced atomically
//! ```
//! A commit (amortized O(1): the commit that crosses the snapshot threshold also writes the
//! snapshot, O(table)) appends **one batch** holding one record per committed partition — key
//! `(group, topic, partition)`, value `(offset, commit time, metadata)`, a tombstone (no
//! value) for a deletion — and then updates the in-memory table. One batch per commit makes
//! a multi-partition commit atomic: its CRC covers all of it, so a torn write loses the whole
//! commit and never half of it, and never yields a garbage offset. The append is as durable
//! as the broker's offsets [`Durability`] (default `Written`; `Synced` shares fsyncs between
//! committing threads).
//!
//! The footprint stays bounded: once the log has grown by `compact_bytes` since the last
//! snapshot, the log is synced, the table is written to `snapshot` (temp file, fsync,
//! rename, directory fsync) together with the log offset it covers, and the log segments
//! below that offset are deleted. Open loads the snapshot and replays the log from the
//! offset it covers. A crash between any two of those steps leaves a snapshot and a log that
//! together hold every commit: the old snapshot and the whole log, or the new snapshot and
//! a log that still reaches past its offset.
//!
//! # Key and value encoding (inside the log's records)
//! ```text
//! key:   u8 version = 1 | u16 group length | group | u16 topic length | topic | u32 partition
//! value: u64 offset | i64 commit time (ms) | u32 metadata length | metadata (UTF-8)
//! ```
//! Little-endian. Every length is checked against the bytes present before anything is
//! read or allocated.
//!
//! # Snapshot payload
//! A [`frame`](crate::storage::checkpoint) of magic `BRKO`, version 1, around bincode 2
//! (standard configuration) of `(covered log offset, [(group, topic, partition, offset,
//! commit time, metadata)])`. An entry holds only what a commit writes (a group and a topic
//! of at most 65,535 bytes, metadata of at most 4,096); a snapshot with another is refused.

use crate::record::now_ms;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::config::{Durability, LogConfig};
use crate::error::{Error, Result};
use crate::record::{Record, RecordBatch};
use crate::storage::checkpoint;
use crate::storage::io::Vfs;
use crate::{PartitionLog, TopicPartition};

const OFFSETS_DIR: &str = "offsets";
const LOG_DIR: &str = "log";
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"BRKO";
const SNAPSHOT_VERSION: u16 = 1;
const KEY_VERSION: u8 = 1;
/// Largest snapshot payload written or read: far above any real table (millions of
/// committed partitions).
const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
/// Largest snapshot file read: the largest payload and its frame (a payload the encoder
/// takes must be readable back).
const MAX_SNAPSHOT_FILE_BYTES: u64 = MAX_SNAPSHOT_BYTES + checkpoint::FRAME_HEADER as u64;
/// Longest metadata string a commit may carry (Kafka's `offset.metadata.max.bytes`).
pub const MAX_METADATA_BYTES: usize = 4096;
/// Default log growth between snapshots.
pub(crate) const DEFAULT_COMPACT_BYTES: u64 = 16 << 20;

/// A committed offset: the next offset the group will read, an application string, and
/// when it was committed.
///
/// # Examples
/// ```
/// use brooklet::OffsetAndMetadata;
/// let o = OffsetAndMetadata::new(42).metadata("batch-7");
/// assert_eq!((o.offset, o.metadata.as_str()), (42, "batch-7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The next offset to consume (Kafka's convention: last processed + 1).
    pub offset: u64,
    /// Free-form application data stored with the offset (at most 4,096 bytes).
    pub metadata: String,
    /// Milliseconds since the Unix epoch when it was committed (0 until committed).
    pub commit_timestamp: i64,
}

impl OffsetAndMetadata {
    /// An offset with empty metadata.
    #[must_use]
    pub fn new(offset: u64) -> Self {
        OffsetAndMetadata {
            offset,
            metadata: String::new(),
            commit_timestamp: 0,
        }
    }

    /// Sets the metadata string.
    #[must_use]
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

pub(crate) type GroupOffsets = BTreeMap<TopicPartition, OffsetAndMetadata>;

/// Checks a partition a commit names, under the offset table's write lock, and gives the
/// offset to store for the one the committer asked (see [`OffsetStore::commit`]).
pub(crate) type CommitCheck<'a> = dyn Fn(&TopicPartition, u64) -> Result<u64> + 'a;

/// The table: in memory for reads, on disk as log + snapshot.
#[derive(Debug)]
pub(crate) struct OffsetStore {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    log: PartitionLog,
    durability: Durability,
    compact_bytes: u64,
    table: RwLock<BTreeMap<String, GroupOffsets>>,
    /// Serializes appends with table updates (so the table follows log order) and snapshots.
    write: Mutex<WriteState>,
    /// With `Synced` offsets: the changes of commits appended but not yet synced, in log
    /// order, each with the log end its batch reached. The table shows a commit only once
    /// it is durable, so a commit whose fsync failed is never served as committed. Pushed
    /// under `write`; applied, oldest first, by whoever sees them synced.
    pending: Mutex<VecDeque<(u64, Vec<Change>)>>,
}

/// One change to the table: set (`Some`) or remove (`None`) a group's offset of a partition.
type Change = (String, TopicPartition, Option<OffsetAndMetadata>);

/// Applies `changes` to `table`, in order.
fn apply_changes(table: &mut BTreeMap<String, GroupOffsets>, changes: Vec<Change>) {
    for (group, tp, change) in changes {
        apply_change(table, group, tp, change);
    }
}

/// Sets (`Some`) or removes (`None`) `group`'s offset of `tp`; a group left with no offsets
/// is dropped.
fn apply_change(
    table: &mut BTreeMap<String, GroupOffsets>,
    group: String,
    tp: TopicPartition,
    change: Option<OffsetAndMetadata>,
) {
    match change {
        Some(om) => {
            table.entry(group).or_default().insert(tp, om);
        }
        None => {
            if let Some(g) = table.get_mut(&group) {
                g.remove(&tp);
                if g.is_empty() {
                    table.remove(&group);
                }
            }
        }
    }
}

#[derive(Debug)]
struct WriteState {
    /// Log size right after the last snapshot.
    bytes_at_snapshot: u64,
}

impl OffsetStore {
    /// Opens (or creates) `DATA/offsets`, loads the snapshot and replays the log after it.
    pub fn open(data_dir: &Path, vfs: Arc<dyn Vfs>, durability: Durability, compact_bytes: u64) -> Result<Self> {
        let dir = data_dir.join(OFFSETS_DIR);
        vfs.create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        checkpoint::sync_parent(&*vfs, &dir)?;
        let segment_bytes = (compact_bytes / 2).clamp(64 << 10, 64 << 20);
        let config = LogConfig::default().segment_bytes(segment_bytes);
        let log = PartitionLog::open_owned(&dir.join(LOG_DIR), config, Arc::clone(&vfs))?;
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let (mut covered, entries) = match checkpoint::read_small_file(&*vfs, &snapshot_path, MAX_SNAPSHOT_FILE_BYTES)?
        {
            Some(bytes) => decode_snapshot(&snapshot_path, &bytes)?,
            // Segments are deleted only after a snapshot covers them: a log that no longer
            // starts at 0 without a snapshot has lost commits, and carrying on with a
            // partial table would silently move groups to `auto_offset_reset`.
            None if log.log_start_offset() > 0 => {
                return Err(Error::corrupt(
                    &snapshot_path,
                    0,
                    format!(
                        "the offsets snapshot is missing but the offsets log starts at {}",
                        log.log_start_offset()
                    ),
                ));
            }
            None => (0, Vec::new()),
        };
        // Compaction writes the snapshot before it trims the log, so the log never starts
        // past what the snapshot covers but by damage (an older snapshot put back): the
        // commits in between are lost, and replaying from the log's start would silently
        // move their groups back. Refused, as a read-only open refuses it.
        if covered < log.log_start_offset() {
            return Err(Error::corrupt(
                &snapshot_path,
                0,
                format!(
                    "the offsets snapshot covers offset {covered} but the offsets log starts at {}: \
                     the commits in between are lost",
                    log.log_start_offset()
                ),
            ));
        }
        let mut table = table_of(entries);
        let store = OffsetStore {
            dir,
            vfs,
            durability,
            compact_bytes,
            table: RwLock::new(BTreeMap::new()),
            write: Mutex::new(WriteState { bytes_at_snapshot: 0 }),
            pending: Mutex::new(VecDeque::new()),
            log,
        };
        let end = store.log.log_end_offset();
        if covered > end {
            // The log lost records the snapshot already holds (damage, not a crash: the log
            // is synced before every snapshot). New commits must not land below the covered
            // offset, where the next open would skip them.
            tracing::warn!(
                snapshot = covered,
                log_end = end,
                "offsets log ends before its snapshot; re-anchoring"
            );
            store.write_snapshot(&table, end)?;
            covered = end;
        }
        replay(&store.log, covered, &mut table)?;
        *store.table.write() = table;
        store.write.lock().bytes_at_snapshot = store.log.size_bytes();
        Ok(store)
    }

    /// For a store opened with [`open_read_only`](Self::open_read_only): reads the snapshot
    /// and the log again, as an open would, and takes the table they give (the writer may
    /// have committed, snapshotted and deleted segments since). On error the table stays.
    pub fn reload_read_only(&self) -> Result<()> {
        let data_dir = self.dir.parent().unwrap_or(&self.dir);
        let fresh = OffsetStore::open_read_only(data_dir, Arc::clone(&self.vfs))?;
        *self.table.write() = fresh.table.into_inner();
        Ok(())
    }

    /// Reads `DATA/offsets` without writing anything (for a read-only broker): the
    /// snapshot, then the log after it, opened read-only. The writer may snapshot and delete
    /// log segments meanwhile; a snapshot older than the log's start, or a segment gone
    /// before it was opened, means that happened, and the load starts over.
    pub fn open_read_only(data_dir: &Path, vfs: Arc<dyn Vfs>) -> Result<Self> {
        let dir = data_dir.join(OFFSETS_DIR);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snapshot = match checkpoint::read_small_file(&*vfs, &snapshot_path, MAX_SNAPSHOT_FILE_BYTES)? {
                Some(bytes) => Some(decode_snapshot(&snapshot_path, &bytes)?),
                None => None,
            };
            let loaded =
                PartitionLog::open_read_only_with_vfs(&dir.join(LOG_DIR), LogConfig::default(), Arc::clone(&vfs))
                    .and_then(|log| {
                        let covered = snapshot.as_ref().map_or(0, |(c, _)| *c);
                        if log.log_start_offset() > covered {
                            return Err(Error::corrupt(
                                &snapshot_path,
                                0,
                                format!(
                                    "the offsets snapshot covers offset {covered} but the offsets log starts at {}",
                                    log.log_start_offset()
                                ),
                            ));
                        }
                        let mut table = table_of(snapshot.map(|(_, e)| e).unwrap_or_default());
                        replay(&log, covered, &mut table)?;
                        Ok((log, table))
                    });
            match loaded {
                Ok((log, table)) => {
                    return Ok(OffsetStore {
                        dir,
                        vfs,
                        durability: Durability::Written,
                        compact_bytes: DEFAULT_COMPACT_BYTES,
                        table: RwLock::new(table),
                        write: Mutex::new(WriteState { bytes_at_snapshot: 0 }),
                        pending: Mutex::new(VecDeque::new()),
                        log,
                    });
                }
                // A concurrent snapshot moved the log's start: read both again.
                Err(Error::Corrupt { .. } | Error::OffsetOutOfRange { .. } | Error::Io { .. }) if attempt < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The committed offset of `tp` for `group`.
    pub fn get(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        self.table.read().get(group).and_then(|g| g.get(tp)).cloned()
    }

    /// Every committed offset of `group`.
    pub fn group(&self, group: &str) -> GroupOffsets {
        self.table.read().get(group).cloned().unwrap_or_default()
    }

    /// When `group` last committed (ms since the epoch): its newest commit in the table or
    /// among those not yet synced (`Synced` offsets), which reach the table only then but
    /// are commits all the same. `None` if it has none.
    pub fn newest_commit(&self, group: &str) -> Option<i64> {
        // Pending first, held while the table is read (the lock order of `apply_synced`).
        let pending = self.pending.lock();
        let pending_newest = pending
            .iter()
            .flat_map(|(_, changes)| changes)
            .filter(|(g, _, _)| g == group)
            .filter_map(|(_, _, change)| change.as_ref().map(|om| om.commit_timestamp))
            .max();
        let table_newest = self
            .table
            .read()
            .get(group)
            .and_then(|offsets| offsets.values().map(|om| om.commit_timestamp).max());
        table_newest.max(pending_newest)
    }

    /// The groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.table.read().keys().cloned().collect()
    }

    /// Commits `offsets` for `group` atomically (one batch); stamps the commit time. With
    /// `wait`, returns once the commit has the configured durability; without, the caller
    /// passes the returned log end to [`wait_durable`](Self::wait_durable) later.
    ///
    /// `valid` is asked about every partition and its offset under the table's write lock,
    /// and gives the offset to store: so a commit cannot slip in after a topic's deletion
    /// dropped its offsets, nor store an offset past the end a truncation left after the
    /// truncation lowered the commits past it ([`lower_past`](Self::lower_past), which
    /// takes the lock too).
    pub fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        wait: bool,
        valid: &CommitCheck<'_>,
    ) -> Result<u64> {
        if offsets.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut keys = Vec::with_capacity(offsets.len());
        for (tp, om) in offsets {
            if om.metadata.len() > MAX_METADATA_BYTES {
                return Err(Error::InvalidArgument {
                    reason: format!(
                        "commit metadata for {tp} is {} bytes; the maximum is {MAX_METADATA_BYTES}",
                        om.metadata.len()
                    ),
                });
            }
            keys.push(encode_key(group, tp)?);
        }
        self.append(wait, false, || {
            let mut records = Vec::with_capacity(offsets.len());
            let mut changes: Vec<Change> = Vec::with_capacity(offsets.len());
            for ((tp, om), key) in offsets.iter().zip(keys) {
                let offset = valid(tp, om.offset)?;
                records.push(Record::new().key(key).value(encode_value(offset, now, &om.metadata)));
                let om = OffsetAndMetadata {
                    offset,
                    metadata: om.metadata.clone(),
                    commit_timestamp: now,
                };
                changes.push((group.to_owned(), tp.clone(), Some(om)));
            }
            Ok((records, changes))
        })
    }

    /// Removes the offsets of `group` for which `doomed` holds (tombstones in one batch).
    /// Commits not yet durable count too: their tombstones follow them in the log.
    pub fn delete_where(&self, group: &str, doomed: impl Fn(&TopicPartition) -> bool) -> Result<usize> {
        self.delete_matching(|g, tp| g == group && doomed(tp))
    }

    /// Drops every group's offsets for `topic` (the topic was deleted, or is created again),
    /// as [`delete_matching`](Self::delete_matching) does, and syncs the offsets log whatever the offsets durability.
    ///
    /// The sync (which also covers tombstones an earlier call wrote but did not sync) is
    /// what lets `create_topic` write its synced topic table next: without it a power loss
    /// could keep the new topic and lose the tombstones, handing it the old topic's offsets.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        self.delete_matching(|_, tp| tp.topic == topic)?;
        self.log.flush()
    }

    /// Removes, in every group, the offsets for which `doomed(group, partition)` holds, as
    /// one batch of tombstones, or several where they do not fit in one (a failure or crash
    /// between those leaves some removed: deleting again removes the rest, and open does so
    /// for a deleted topic's); returns how many. What counts is the table as it will be
    /// once the commits not yet durable (`Synced` offsets) are applied: a pending commit is
    /// removed too (its tombstone follows it in the log), a pending removal is not counted
    /// again.
    pub fn delete_matching(&self, doomed: impl Fn(&str, &TopicPartition) -> bool) -> Result<usize> {
        let mut count = 0;
        self.append(true, true, || {
            // Pending first, held while the table is read (the lock order of `apply_synced`):
            // a commit moved from one to the other in between would be seen in neither.
            let pending = self.pending.lock();
            let mut live: BTreeSet<(String, TopicPartition)> = BTreeSet::new();
            for (group, offsets) in self.table.read().iter() {
                for tp in offsets.keys().filter(|tp| doomed(group, tp)) {
                    live.insert((group.clone(), tp.clone()));
                }
            }
            for (_, changes) in pending.iter() {
                for (group, tp, change) in changes {
                    if doomed(group, tp) {
                        let key = (group.clone(), tp.clone());
                        if change.is_some() {
                            live.insert(key);
                        } else {
                            live.remove(&key);
                        }
                    }
                }
            }
            let records = live
                .iter()
                .map(|(group, tp)| encode_key(group, tp).map(|k| Record::new().key(k)))
                .collect::<Result<Vec<_>>>()?;
            count = live.len();
            Ok((records, live.into_iter().map(|(g, tp)| (g, tp, None)).collect()))
        })?;
        Ok(count)
    }

    /// Lowers, in every group, each committed offset past `limit(partition)` to that limit
    /// (its metadata and commit time kept), and syncs the offsets log whatever the offsets
    /// durability; returns how many. For a partition whose log now ends below offsets that
    /// groups committed (a truncation, or a power loss that took the log's unsynced tail):
    /// new records will get the offsets past its end, and a group resuming there would skip
    /// them. What counts is the table as it will be once the commits not yet durable are
    /// applied, as for [`delete_matching`](Self::delete_matching).
    pub fn lower_past(&self, limit: impl Fn(&TopicPartition) -> Option<u64>) -> Result<usize> {
        let mut count = 0;
        self.append(true, true, || {
            // Pending first, held while the table is read (the lock order of `apply_synced`).
            let pending = self.pending.lock();
            let mut live: BTreeMap<(String, TopicPartition), OffsetAndMetadata> = BTreeMap::new();
            for (group, offsets) in self.table.read().iter() {
                for (tp, om) in offsets.iter().filter(|(tp, _)| limit(tp).is_some()) {
                    live.insert((group.clone(), tp.clone()), om.clone());
                }
            }
            for (_, changes) in pending.iter() {
                for (group, tp, change) in changes.iter().filter(|(_, tp, _)| limit(tp).is_some()) {
                    let key = (group.clone(), tp.clone());
                    match change {
                        Some(om) => live.insert(key, om.clone()),
                        None => live.remove(&key),
                    };
                }
            }
            let lowered: Vec<(String, TopicPartition, OffsetAndMetadata)> = live
                .into_iter()
                .filter_map(|((group, tp), mut om)| {
                    let max = limit(&tp)?;
                    (om.offset > max).then(|| {
                        om.offset = max;
                        (group, tp, om)
                    })
                })
                .collect();
            let records = lowered
                .iter()
                .map(|(group, tp, om)| {
                    let value = encode_value(om.offset, om.commit_timestamp, &om.metadata);
                    encode_key(group, tp).map(|k| Record::new().key(k).value(value))
                })
                .collect::<Result<Vec<_>>>()?;
            count = lowered.len();
            Ok((
                records,
                lowered.into_iter().map(|(g, tp, om)| (g, tp, Some(om))).collect(),
            ))
        })?;
        if count > 0 {
            self.log.flush()?;
        }
        Ok(count)
    }

    /// Appends the records `prepare` returns (called under the write lock, so no other
    /// commit comes between; the commits not yet durable are in `pending`) as one batch
    /// (see `divisible` below), snapshotting if the log has grown enough;
    /// with `wait`, then waits for the configured durability. Their changes reach the table
    /// in log order, once the batch has the configured durability: at once for `Written`
    /// (or `Buffered`), after the fsync for `Synced`. Returns the log end the append
    /// reached (0 if `prepare` returned no records: nothing is appended).
    ///
    /// `prepare` returns one change per record, in the same order. A commit is one batch
    /// (atomic), refused whole if too large for one; `divisible` records (a deletion's
    /// tombstones, each meaningful alone) too many for one batch are written as several.
    fn append(
        &self,
        wait: bool,
        divisible: bool,
        prepare: impl FnOnce() -> Result<(Vec<Record>, Vec<Change>)>,
    ) -> Result<u64> {
        if self.log.is_read_only() {
            return Err(Error::ReadOnly {
                what: "write committed offsets".into(),
            });
        }
        let end = {
            let mut state = self.write.lock();
            let (records, changes) = prepare()?;
            if records.is_empty() {
                return Ok(0);
            }
            let level = match self.durability {
                Durability::Synced => Durability::Written,
                other => other,
            };
            let end = self.append_pieces(&records, changes, level, divisible)?;
            if self.log.size_bytes() >= state.bytes_at_snapshot.saturating_add(self.compact_bytes)
                && let Err(e) = self.compact(&mut state)
            {
                // The commit itself is written; a failed snapshot only postpones reclaiming
                // space (the next commit tries again) and must not report the commit failed.
                tracing::warn!(error = %e, "offsets snapshot failed; the log keeps growing until one succeeds");
            }
            end
        };
        if wait {
            self.wait_durable(end)?;
        }
        Ok(end)
    }

    /// Appends `records` as one batch and hands their `changes` (one per record) on to the
    /// table: at once, or for `Synced` offsets once synced (`pending`). If the batch is too
    /// large for the log and the records are `divisible`, appends each half the same way
    /// instead, so a failure part-way leaves the table matching the log. Returns the log
    /// end reached. Called under the write lock.
    fn append_pieces(
        &self,
        records: &[Record],
        mut changes: Vec<Change>,
        level: Durability,
        divisible: bool,
    ) -> Result<u64> {
        match self.log.append(records, level) {
            Ok(info) => {
                let end = info.last_offset + 1;
                if self.durability == Durability::Synced {
                    self.pending.lock().push_back((end, changes));
                } else {
                    apply_changes(&mut self.table.write(), changes);
                }
                Ok(end)
            }
            Err(Error::RecordTooLarge { .. }) if divisible && records.len() > 1 => {
                let half = records.len() / 2;
                let (head, tail) = records.split_at(half);
                let rest = changes.split_off(half.min(changes.len()));
                self.append_pieces(head, changes, level, divisible)?;
                self.append_pieces(tail, rest, level, divisible)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until the commits below log offset `end` have the configured durability
    /// (an fsync shared with other committers for `Synced`; nothing to do otherwise), and
    /// shows the commits that have it in the table.
    pub fn wait_durable(&self, end: u64) -> Result<()> {
        if self.durability == Durability::Synced && end > 0 {
            // Outside the write lock, so committing threads share fsyncs.
            self.log.sync_through(end, None)?;
            self.apply_synced();
        }
        Ok(())
    }

    /// Closes the store's log as [`PartitionLog::close`] does (for [`Broker::close`]): the
    /// offsets committed so far are synced, and the next open runs no recovery scan.
    ///
    /// [`Broker::close`]: crate::Broker::close
    pub(crate) fn close(&self) -> Result<()> {
        self.log.shutdown()
    }

    /// Syncs every commit appended so far (whatever the offsets durability), and shows the
    /// `Synced` ones waiting for an fsync in the table.
    pub fn flush(&self) -> Result<()> {
        self.log.flush()?;
        self.apply_synced();
        Ok(())
    }

    /// Applies to the table, oldest first, the pending commits that are synced now.
    fn apply_synced(&self) {
        let synced = self.log.synced_end_offset();
        let mut pending = self.pending.lock();
        if pending.front().is_none_or(|(end, _)| *end > synced) {
            return;
        }
        let mut table = self.table.write();
        while pending.front().is_some_and(|(end, _)| *end <= synced) {
            if let Some((_, changes)) = pending.pop_front() {
                apply_changes(&mut table, changes);
            }
        }
    }

    /// Writes a snapshot of the table and deletes the log segments it covers.
    fn compact(&self, state: &mut WriteState) -> Result<()> {
        self.log.flush()?;
        // Everything is synced: the snapshot must hold every commit below `covered`.
        self.apply_synced();
        let covered = self.log.log_end_offset();
        self.write_snapshot(&self.table.read(), covered)?;
        self.log.delete_records_before(covered)?;
        state.bytes_at_snapshot = self.log.size_bytes();
        tracing::debug!(covered, bytes = state.bytes_at_snapshot, "offsets snapshot written");
        Ok(())
    }

    fn write_snapshot(&self, table: &BTreeMap<String, GroupOffsets>, covered: u64) -> Result<()> {
        let entries: Vec<SnapshotEntry> = table
            .iter()
            .flat_map(|(group, offsets)| {
                offsets.iter().map(move |(tp, om)| SnapshotEntry {
                    group: group.clone(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: om.offset,
                    commit_timestamp: om.commit_timestamp,
                    metadata: om.metadata.clone(),
                })
            })
            .collect();
        checkpoint::write_atomic(
            &*self.vfs,
            &self.dir.join(SNAPSHOT_FILE),
            &encode_snapshot(covered, &entries)?,
        )
    }

    /// Bytes on disk: log segments plus the snapshot.
    #[cfg(test)]
    pub fn size_bytes(&self) -> u64 {
        let snapshot = std::fs::metadata(self.dir.join(SNAPSHOT_FILE)).map_or(0, |m| m.len());
        self.log.size_bytes() + snapshot
    }
}

/// The table a snapshot's entries describe.
fn table_of(entries: Vec<SnapshotEntry>) -> BTreeMap<String, GroupOffsets> {
    let mut table: BTreeMap<String, GroupOffsets> = BTreeMap::new();
    for e in entries {
        table.entry(e.group).or_default().insert(
            TopicPartition::new(e.topic, e.partition),
            OffsetAndMetadata {
                offset: e.offset,
                metadata: e.metadata,
                commit_timestamp: e.commit_timestamp,
            },
        );
    }
    table
}

/// Applies the commits of `log` from offset `covered` (what the snapshot holds) to its end.
fn replay(log: &PartitionLog, covered: u64, table: &mut BTreeMap<String, GroupOffsets>) -> Result<()> {
    let end = log.log_end_offset();
    let mut offset = covered.max(log.log_start_offset());
    while offset < end {
        let batches = log.read(offset, 1 << 20)?;
        if batches.is_empty() {
            break;
        }
        for batch in &batches {
            offset = apply_batch(table, log.dir(), batch, offset)?;
        }
    }
    Ok(())
}

/// Applies the commits in `batch` (one batch of the offsets log in `log_dir`) at offsets
/// `from` and above to `table`; returns the offset after the batch.
pub(crate) fn apply_batch(
    table: &mut BTreeMap<String, GroupOffsets>,
    log_dir: &Path,
    batch: &RecordBatch,
    from: u64,
) -> Result<u64> {
    for record in batch.iter() {
        let record = record?;
        if record.offset() < from {
            continue;
        }
        apply(table, log_dir, record.offset(), record.key(), record.value())?;
    }
    Ok(batch.last_offset().saturating_add(1))
}

/// One committed offset in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapshotEntry {
    #[serde(deserialize_with = "checkpoint::owned_str")]
    pub group: String,
    #[serde(deserialize_with = "checkpoint::owned_str")]
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub commit_timestamp: i64,
    #[serde(deserialize_with = "checkpoint::owned_str")]
    pub metadata: String,
}

fn snapshot_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_SNAPSHOT_BYTES as usize }>()
}

/// The bytes of a snapshot file holding `entries` and covering the log below `covered`.
pub(crate) fn encode_snapshot(covered: u64, entries: &[SnapshotEntry]) -> Result<Vec<u8>> {
    let payload =
        bincode::serde::encode_to_vec((covered, entries), snapshot_config()).map_err(|e| Error::InvalidArgument {
            reason: format!("cannot encode the offsets snapshot: {e}"),
        })?;
    Ok(checkpoint::frame(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, &payload))
}

/// A snapshot file's payload framed as one: for the fuzz targets, which cannot compute the
/// checksum themselves, to reach the payload decoder.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn frame_snapshot(payload: &[u8]) -> Vec<u8> {
    checkpoint::frame(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, payload)
}

/// Decodes a snapshot file's bytes (`path` names it in errors): the log offset it covers
/// and its entries, each one a commit could have written (metadata of at most
/// [`MAX_METADATA_BYTES`], a group and a topic a log key holds); any other is `Corrupt`.
pub(crate) fn decode_snapshot(path: &Path, bytes: &[u8]) -> Result<(u64, Vec<SnapshotEntry>)> {
    let payload = checkpoint::unframe(path, bytes, SNAPSHOT_MAGIC, &[SNAPSHOT_VERSION])?.1;
    let (decoded, used): ((u64, Vec<SnapshotEntry>), usize) =
        bincode::serde::decode_from_slice(payload, snapshot_config()).map_err(|e| {
            Error::corrupt(
                path,
                checkpoint::FRAME_HEADER as u64,
                format!("cannot decode the offsets snapshot: {e}"),
            )
        })?;
    if used != payload.len() {
        return Err(Error::corrupt(path, 0, "trailing bytes after the offsets snapshot"));
    }
    // Only what a commit writes: an entry the log's key or value could not hold would be
    // taken now and break the log once written there (a lowering writes it back).
    if let Some(e) = decoded.1.iter().find(|e| {
        e.metadata.len() > MAX_METADATA_BYTES
            || e.group.len() > usize::from(u16::MAX)
            || e.topic.len() > usize::from(u16::MAX)
    }) {
        return Err(Error::corrupt(
            path,
            checkpoint::FRAME_HEADER as u64,
            format!(
                "an offsets snapshot entry no commit writes (group {} bytes, topic {} bytes, metadata {} bytes)",
                e.group.len(),
                e.topic.len(),
                e.metadata.len()
            ),
        ));
    }
    Ok(decoded)
}

/// The log record key of `group`'s offset for `tp`.
pub(crate) fn encode_key(group: &str, tp: &TopicPartition) -> Result<Bytes> {
    let too_long = |what: &str| Error::InvalidArgument {
        reason: format!("{what} is longer than 65,535 bytes"),
    };
    let group_len = u16::try_from(group.len()).map_err(|_| too_long("the group id"))?;
    let topic_len = u16::try_from(tp.topic.len()).map_err(|_| too_long("the topic name"))?;
    let mut key = Vec::with_capacity(9 + group.len() + tp.topic.len());
    key.push(KEY_VERSION);
    key.extend_from_slice(&group_len.to_le_bytes());
    key.extend_from_slice(group.as_bytes());
    key.extend_from_slice(&topic_len.to_le_bytes());
    key.extend_from_slice(tp.topic.as_bytes());
    key.extend_from_slice(&tp.partition.to_le_bytes());
    Ok(Bytes::from(key))
}

/// The log record value of a commit.
pub(crate) fn encode_value(offset: u64, commit_timestamp: i64, metadata: &str) -> Bytes {
    let mut value = Vec::with_capacity(20 + metadata.len());
    value.extend_from_slice(&offset.to_le_bytes());
    value.extend_from_slice(&commit_timestamp.to_le_bytes());
    value.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    value.extend_from_slice(metadata.as_bytes());
    Bytes::from(value)
}

/// A bounds-checked reader over untrusted bytes.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }
    fn string(&mut self, len: usize) -> Option<String> {
        self.take(len)
            .and_then(|s| std::str::from_utf8(s).ok())
            .map(str::to_owned)
    }
}

/// Decodes a log record key: `None` unless it is exactly one valid key.
pub(crate) fn decode_key(key: &[u8]) -> Option<(String, TopicPartition)> {
    let mut c = Cursor(key);
    if c.array::<1>()? != [KEY_VERSION] {
        return None;
    }
    let group_len = usize::from(u16::from_le_bytes(c.array()?));
    let group = c.string(group_len)?;
    let topic_len = usize::from(u16::from_le_bytes(c.array()?));
    let topic = c.string(topic_len)?;
    let partition = u32::from_le_bytes(c.array()?);
    c.0.is_empty().then(|| (group, TopicPartition::new(topic, partition)))
}

/// Decodes a log record value: `None` unless it is exactly one valid value (metadata of at
/// most [`MAX_METADATA_BYTES`], as every commit writes).
pub(crate) fn decode_value(value: &[u8]) -> Option<OffsetAndMetadata> {
    let mut c = Cursor(value);
    let offset = u64::from_le_bytes(c.array()?);
    let commit_timestamp = i64::from_le_bytes(c.array()?);
    let len = u32::from_le_bytes(c.array()?) as usize;
    if len > MAX_METADATA_BYTES {
        return None;
    }
    let metadata = c.string(len)?;
    c.0.is_empty().then_some(OffsetAndMetadata {
        offset,
        metadata,
        commit_timestamp,
    })
}

/// Applies one log record to the table.
fn apply(
    table: &mut BTreeMap<String, GroupOffsets>,
    log_dir: &Path,
    offset: u64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<()> {
    let bad = |what: &str| Error::corrupt(log_dir, offset, format!("offsets record {offset}: {what}"));
    let (group, tp) = key.and_then(decode_key).ok_or_else(|| bad("undecodable key"))?;
    let change = match value {
        Some(v) => Some(decode_value(v).ok_or_else(|| bad("undecodable value"))?),
        None => None,
    };
    apply_change(table, group, tp, change);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::OsFs;

    fn open(dir: &Path, compact: u64) -> OffsetStore {
        OffsetStore::open(dir, Arc::new(OsFs), Durability::Written, compact).unwrap()
    }

    /// `Synced` commits reach the table in log order whoever waits first: a later commit's
    /// wait applies the earlier one before it, and the earlier one's wait, coming last,
    /// does not bring its older value back. Before a wait, a commit is not in the table.
    #[test]
    fn synced_commits_reach_the_table_in_log_order_once_durable() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", ".", e))?;
        let store = OffsetStore::open(dir.path(), Arc::new(OsFs), Durability::Synced, 1 << 30)?;
        let tp = TopicPartition::new("t", 0);
        let ok = |_: &TopicPartition, offset: u64| Ok(offset);
        let commit = |offset| store.commit("g", &[(tp.clone(), OffsetAndMetadata::new(offset))], false, &ok);
        let first = commit(1)?;
        let second = commit(2)?;
        assert_eq!(store.get("g", &tp), None, "shown before it is durable");
        store.wait_durable(second)?;
        assert_eq!(store.get("g", &tp).map(|o| o.offset), Some(2));
        store.wait_durable(first)?;
        assert_eq!(store.get("g", &tp).map(|o| o.offset), Some(2));
        // A deletion covers a commit not yet durable (here, of a partition not yet in the
        // table): its tombstone follows it.
        let other = TopicPartition::new("u", 0);
        store.commit("g", &[(other.clone(), OffsetAndMetadata::new(3))], false, &ok)?;
        assert_eq!(store.delete_where("g", |t| t.topic == "u")?, 1);
        assert_eq!(store.get("g", &other), None);
        drop(store);
        let store = OffsetStore::open(dir.path(), Arc::new(OsFs), Durability::Synced, 1 << 30)?;
        assert_eq!(store.get("g", &other), None);
        assert_eq!(store.get("g", &tp).map(|o| o.offset), Some(2));
        Ok(())
    }

    /// Protects: a deletion removes a `Synced` commit that becomes durable while the
    /// deletion looks for what to remove. The deletion read the table, let go of it, then
    /// read the pending commits; a commit moved from pending to the table in between (by
    /// its committer's `wait_durable`) was in neither: no tombstone, and the group's offset
    /// outlived `delete_group` (or a deleted topic's outlived `delete_topic`), on disk too.
    #[test]
    fn a_deletion_removes_a_commit_made_durable_while_it_runs() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", ".", e))?;
        let store = OffsetStore::open(dir.path(), Arc::new(OsFs), Durability::Synced, 1 << 30)?;
        let tp = TopicPartition::new("t", 0);
        store.commit("g", &[(tp.clone(), OffsetAndMetadata::new(5))], false, &|_, o| Ok(o))?;
        store.log.flush()?;
        // The committer's `apply_synced`, held at its first step (pending locked) until the
        // deletion is under way.
        let mut pending = store.pending.lock();
        let deleted = std::thread::scope(|s| {
            let deletion = s.spawn(|| store.delete_where("g", |_| true));
            while !store.write.is_locked() {
                std::thread::yield_now();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut table = store.table.write();
            while let Some((_, changes)) = pending.pop_front() {
                apply_changes(&mut table, changes);
            }
            drop(table);
            drop(pending);
            deletion.join().map_err(|_| Error::InvalidArgument {
                reason: "the deletion panicked".into(),
            })
        })??;
        assert_eq!(deleted, 1);
        assert_eq!(store.get("g", &tp), None);
        drop(store);
        let store = OffsetStore::open(dir.path(), Arc::new(OsFs), Durability::Synced, 1 << 30)?;
        assert_eq!(store.get("g", &tp), None);
        Ok(())
    }

    #[test]
    fn keys_and_values_round_trip_and_reject_damage() {
        let tp = TopicPartition::new("orders", 7);
        let key = encode_key("analytics", &tp).unwrap();
        assert_eq!(decode_key(&key), Some(("analytics".to_owned(), tp)));
        let value = encode_value(42, 1_700, "meta");
        let om = decode_value(&value).unwrap();
        assert_eq!(
            (om.offset, om.commit_timestamp, om.metadata.as_str()),
            (42, 1_700, "meta")
        );
        for cut in 0..key.len() {
            assert_eq!(decode_key(&key[..cut]), None, "key cut at {cut}");
        }
        for cut in 0..value.len() {
            assert_eq!(decode_value(&value[..cut]), None, "value cut at {cut}");
        }
        let mut huge = value.to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_value(&huge), None);
        // Metadata up to the commit limit reads back; one byte more is not a value any
        // commit writes.
        let longest = "m".repeat(MAX_METADATA_BYTES);
        let om = decode_value(&encode_value(1, 2, &longest)).unwrap();
        assert_eq!(om.metadata, longest);
        assert_eq!(decode_value(&encode_value(1, 2, &format!("{longest}m"))), None);
    }

    #[test]
    fn commits_survive_reopen_and_snapshots_bound_the_footprint() {
        let dir = tempfile::tempdir().unwrap();
        let tp = |p| TopicPartition::new("t", p);
        {
            let store = open(dir.path(), 64 << 10);
            for i in 0..20_000u64 {
                store
                    .commit(
                        "g",
                        &[(tp((i % 4) as u32), OffsetAndMetadata::new(i))],
                        true,
                        &|_, o| Ok(o),
                    )
                    .unwrap();
            }
            store
                .commit(
                    "h",
                    &[(tp(0), OffsetAndMetadata::new(5).metadata("x"))],
                    true,
                    &|_, o| Ok(o),
                )
                .unwrap();
            assert_eq!(store.delete_where("h", |_| true).unwrap(), 1);
            // 20,000 commits of ~70 bytes are ~1.4 MB of log; snapshots keep it near 64 KiB.
            assert!(store.size_bytes() < 256 << 10, "{} bytes", store.size_bytes());
        }
        let store = open(dir.path(), 64 << 10);
        assert_eq!(store.groups(), ["g"]);
        let g = store.group("g");
        let got: Vec<u64> = (0..4).map(|p| g[&tp(p)].offset).collect();
        assert_eq!(got, [19_996, 19_997, 19_998, 19_999]);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = SnapshotEntry> {
        (
            "[a-z0-9._-]{0,12}",
            "[a-zA-Z0-9._-]{1,12}",
            any::<u32>(),
            any::<u64>(),
            any::<i64>(),
            ".{0,8}",
        )
            .prop_map(
                |(group, topic, partition, offset, commit_timestamp, metadata)| SnapshotEntry {
                    group,
                    topic,
                    partition,
                    offset,
                    commit_timestamp,
                    metadata,
                },
            )
    }

    proptest! {
        // A fixed seed keeps runs reproducible; failures print the minimal case.
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x0ff5_e7ab),
            ..ProptestConfig::default()
        })]

        /// Arbitrary bytes as a key, a value, a snapshot file or a snapshot payload: never a
        /// panic, and whatever decodes encodes back to exactly those bytes (keys and values)
        /// or to a snapshot that decodes the same.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some((group, tp)) = decode_key(&bytes) {
                let again = encode_key(&group, &tp).unwrap();
                prop_assert_eq!(again.as_ref(), &bytes[..]);
            }
            if let Some(om) = decode_value(&bytes) {
                let again = encode_value(om.offset, om.commit_timestamp, &om.metadata);
                prop_assert_eq!(again.as_ref(), &bytes[..]);
            }
            let path = Path::new("snapshot");
            for file in [bytes.clone(), frame_snapshot(&bytes)] {
                if let Ok((covered, entries)) = decode_snapshot(path, &file) {
                    let again = encode_snapshot(covered, &entries).unwrap();
                    prop_assert_eq!(decode_snapshot(path, &again).unwrap(), (covered, entries));
                }
            }
        }

        /// Keys and values round-trip, and every cut of one is refused (no checksum guards
        /// them: the offsets log's batch CRC does).
        #[test]
        fn keys_and_values_round_trip(e in entry()) {
            let tp = TopicPartition::new(e.topic.clone(), e.partition);
            let key = encode_key(&e.group, &tp).unwrap();
            prop_assert_eq!(decode_key(&key), Some((e.group.clone(), tp)));
            let value = encode_value(e.offset, e.commit_timestamp, &e.metadata);
            let om = decode_value(&value).unwrap();
            prop_assert_eq!((om.offset, om.commit_timestamp, om.metadata), (e.offset, e.commit_timestamp, e.metadata));
            for cut in 0..key.len() {
                prop_assert_eq!(decode_key(&key[..cut]), None);
            }
            for cut in 0..value.len() {
                prop_assert_eq!(decode_value(&value[..cut]), None);
            }
            let mut longer = key.to_vec();
            longer.push(0);
            prop_assert_eq!(decode_key(&longer), None);
        }

        /// Snapshots round-trip, and the frame's CRC refuses every single-byte change and
        /// every cut.
        #[test]
        fn snapshots_round_trip_and_flips_are_refused(
            covered in any::<u64>(),
            entries in proptest::collection::vec(entry(), 0..6),
            flip in 1u8..=255,
        ) {
            let path = Path::new("snapshot");
            let bytes = encode_snapshot(covered, &entries).unwrap();
            prop_assert_eq!(decode_snapshot(path, &bytes).unwrap(), (covered, entries));
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                prop_assert!(decode_snapshot(path, &bad).is_err(), "flip at {}", i);
            }
            for len in 0..bytes.len() {
                prop_assert!(decode_snapshot(path, &bytes[..len]).is_err(), "cut at {}", len);
            }
        }
    }
}
