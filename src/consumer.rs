//! [`Consumer`]: reads records from partitions it is assigned, by itself ([`Consumer::assign`])
//! or as a member of a consumer group ([`Consumer::subscribe`]), and commits how far it got.
//!
//! # Poll
//! [`Consumer::poll`] returns up to `max_poll_records` records from the consumer's
//! partitions, visiting them in turn (a rotating start, so no partition starves), in offset
//! order within each. It returns as soon as any record is there; with none it blocks until
//! an append to one of its partitions wakes it (a per-consumer signal registered with each
//! partition log: a brief spin, then a park — no sleeping loops), a rebalance needs it, or
//! the timeout passes. A consumer of a [read-only broker](Broker::open_read_only), whose
//! partitions another process appends to, instead re-checks the files every 50 ms while
//! it waits: no append in this process can wake it.
//!
//! One read of a partition takes up to `max_partition_fetch_bytes` of whole batches; what a poll
//! does not return of them is kept for the next polls (as Kafka's fetcher keeps a fetch's
//! records), which take it without reading or decompressing it again. A seek, a truncation
//! of the log, or a log start moved past the position drops what was kept.
//!
//! # Stopping a blocked poll
//! A consumer is used from one thread; another thread stops it through a [`WakeupHandle`]
//! (Kafka's `consumer.wakeup()`): the `poll` blocked at that moment, or else the next one,
//! returns [`Error::Wakeup`] at once, having consumed nothing, and the consumer's thread
//! can then close it — a clean shutdown without short poll timeouts and a flag.
//!
//! # Positions and commits
//! A partition's *position* is the next offset `poll` returns. A newly assigned partition
//! starts at the group's committed offset, or where `auto_offset_reset` says if there is
//! none (or if it is outside the log, e.g. removed by retention). [`Consumer::commit`]
//! stores the positions in the broker's committed-offset table, atomically for all
//! partitions of one call. Group commits are fenced: only the current owner of a partition
//! may commit it ([`Error::CommitFailed`] otherwise).
//!
//! # Decisions where Kafka leaves room
//! - Rebalances are incremental (see the group coordinator): `on_partitions_revoked` gets
//!   only the partitions that move away, `on_partitions_assigned` only the new ones.
//! - A group member may commit only the partitions it owns now (Kafka's classic protocol
//!   takes a commit of any partition from a member of the current generation): a member
//!   that lost a partition cannot move its committed offset, whatever it still holds.
//! - A consumer with a `group_id` that uses [`assign`](Consumer::assign) may commit only
//!   while the group has no subscribed members (Kafka's rule for standalone consumers). So
//!   may one that called [`unsubscribe`](Consumer::unsubscribe): it is no member any more.
//! - `commit_async` writes at once but never waits for an fsync; its callback runs on the
//!   consumer's thread at the next `poll`, `commit`, `commit_offsets` or `close`, once the
//!   commit has the broker's offsets durability. Before partitions go to another member (a
//!   revoke, a leave) the consumer waits for that durability, so a `commit_async` in
//!   `on_partitions_revoked` is where the next owner starts, as Kafka's (whose coordinator
//!   handles a member's requests in order).
//! - Dropping a consumer closes it (Kafka has no drop): it commits if auto-commit is on and
//!   runs `on_partitions_revoked` — except while its thread unwinds from a panic.
//! - Partitions of a deleted topic are passed to `on_partitions_revoked` at the member's
//!   next poll (their positions can no longer be committed), even if a topic of the same
//!   name was created since; the new topic's partitions are then assigned afresh.
//! - A partition of a topic deleted and created again starts over in the new topic at the
//!   committed offset (dropped with the old topic) or `auto_offset_reset`, for members and
//!   `assign` consumers alike: the old position counts records of another log.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::group::assignor::{Assignor, RangeAssignor};
use crate::group::coordinator::{JoinRequest, MemberHandle, PollStep};
use crate::offsets::OffsetAndMetadata;
use crate::record::batch::RecordCursor;
use crate::record::{Header, HeaderRefs, LogRecord, RecordBatch, RecordRef, RecordRefs, TimestampType};
use crate::storage::notify::Signal;
use crate::storage::segment::SpareBuffer;
use crate::{PartitionLog, TopicPartition};

/// How often a consumer of a read-only broker ([`Broker::open_read_only`]) re-reads its
/// partitions' files while `poll` waits: another process appends there, so no in-process
/// append wakes it. Consumers of a writable broker never sleep-poll.
const READ_ONLY_RECHECK: Duration = Duration::from_millis(50);

/// Where a consumer starts in a partition for which its group has no committed offset
/// (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The oldest record still stored.
    Earliest,
    /// The end: only records appended from now on (Kafka's default).
    #[default]
    Latest,
    /// No default: `poll` fails with [`Error::NoCommittedOffset`].
    None,
}

/// Which records a consumer sees (Kafka's `isolation.level`). Reserved for transactions:
/// brooklet has none yet, so both levels see every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record.
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions (today: every record).
    ReadCommitted,
}

/// Settings of a [`Consumer`]. Defaults follow Kafka's consumer.
///
/// # Examples
/// ```
/// use brooklet::{ConsumerConfig, OffsetReset, StickyAssignor};
/// use std::time::Duration;
/// let config = ConsumerConfig::group("analytics")
///     .auto_offset_reset(OffsetReset::Earliest)
///     .max_poll_records(100)
///     .enable_auto_commit(false)
///     .assignor(StickyAssignor);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    group_id: Option<String>,
    client_id: String,
    auto_offset_reset: OffsetReset,
    max_poll_records: usize,
    max_poll_interval: Duration,
    enable_auto_commit: bool,
    auto_commit_interval: Duration,
    isolation: IsolationLevel,
    assignor: Arc<dyn Assignor>,
    max_partition_fetch_bytes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            client_id: "consumer".to_owned(),
            auto_offset_reset: OffsetReset::Latest,
            max_poll_records: 500,
            max_poll_interval: Duration::from_secs(300),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            isolation: IsolationLevel::ReadUncommitted,
            assignor: Arc::new(RangeAssignor),
            max_partition_fetch_bytes: 1 << 20,
        }
    }
}

impl ConsumerConfig {
    /// A consumer in group `group_id`, with defaults otherwise.
    #[must_use]
    pub fn group(group_id: impl Into<String>) -> Self {
        ConsumerConfig::default().group_id(Some(group_id.into()))
    }

    /// The group (Kafka's `group.id`). Without one the consumer can only
    /// [`assign`](Consumer::assign) and cannot commit. Default = `None`.
    #[must_use]
    pub fn group_id(mut self, group_id: Option<String>) -> Self {
        self.group_id = group_id;
        self
    }

    /// A name for the member ids and descriptions. Default = `"consumer"`.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Where to start without a committed offset. Default = [`OffsetReset::Latest`].
    #[must_use]
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Most records one `poll` returns. Default = 500.
    #[must_use]
    pub fn max_poll_records(mut self, records: usize) -> Self {
        self.max_poll_records = records;
        self
    }

    /// Longest time between the end of one `poll` and the start of the next before the
    /// group evicts the member. Default = 5 minutes. As in Kafka, a member past it has left
    /// the group: its commits fail with [`Error::CommitFailed`](crate::Error::CommitFailed)
    /// and its next `poll` joins again. At least 1 ms, as Kafka's `max.poll.interval.ms`.
    #[must_use]
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// Commit positions automatically: at a `poll` once `auto_commit_interval` has passed
    /// since the last one, before partitions are revoked, and at close. Default = `true`.
    #[must_use]
    pub fn enable_auto_commit(mut self, enable: bool) -> Self {
        self.enable_auto_commit = enable;
        self
    }

    /// See [`enable_auto_commit`](Self::enable_auto_commit). Default = 5 s.
    #[must_use]
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.auto_commit_interval = interval;
        self
    }

    /// Reserved for transactions. Default = [`IsolationLevel::ReadUncommitted`].
    #[must_use]
    pub fn isolation(mut self, isolation: IsolationLevel) -> Self {
        self.isolation = isolation;
        self
    }

    /// How the group divides partitions. Default = [`RangeAssignor`](crate::RangeAssignor)
    /// (as Kafka). The group uses its oldest member's assignor.
    #[must_use]
    pub fn assignor(mut self, assignor: impl Assignor + 'static) -> Self {
        self.assignor = Arc::new(assignor);
        self
    }

    /// About how many bytes one read of one partition fetches: Kafka's
    /// `max.partition.fetch.bytes`, with its default. There is no counterpart of Kafka's
    /// per-request `fetch.max.bytes`: a poll has no byte limit across partitions
    /// (`max_poll_records` bounds it). A batch larger than this is still returned whole.
    /// Default = 1 MiB.
    ///
    /// What a poll read and did not return is kept for the next polls (as Kafka's fetcher
    /// keeps fetched records), so a consumer holds up to about this much per assigned
    /// partition between polls.
    #[must_use]
    pub fn max_partition_fetch_bytes(mut self, bytes: usize) -> Self {
        self.max_partition_fetch_bytes = bytes;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if let Some(g) = &self.group_id
            && (g.is_empty() || g.len() > 255 || g.chars().any(char::is_control))
        {
            return Err(Error::config(
                "group_id",
                format!("{g:?} must be 1 to 255 bytes without control characters"),
            ));
        }
        if self.client_id.is_empty() || self.client_id.len() > 255 || self.client_id.chars().any(char::is_control) {
            return Err(Error::config(
                "client_id",
                "must be 1 to 255 bytes without control characters",
            ));
        }
        if self.max_poll_records == 0 {
            return Err(Error::config("max_poll_records", "must be at least 1"));
        }
        if self.max_poll_interval < Duration::from_millis(1) {
            return Err(Error::config(
                "max_poll_interval",
                format!(
                    "{:?} must be at least 1 ms (as Kafka's max.poll.interval.ms): a shorter one \
                     passes before a member that just joined first polls",
                    self.max_poll_interval
                ),
            ));
        }
        if self.auto_commit_interval.is_zero() {
            return Err(Error::config("auto_commit_interval", "must be positive"));
        }
        if self.max_partition_fetch_bytes == 0 {
            return Err(Error::config("max_partition_fetch_bytes", "must be positive"));
        }
        Ok(())
    }
}

/// A record as a consumer receives it: where it is stored and what it holds. Keys, values
/// and header values are zero-copy slices of the bytes read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    topic: Arc<str>,
    partition: u32,
    timestamp_type: TimestampType,
    record: LogRecord,
}

impl ConsumerRecord {
    /// The topic.
    #[must_use]
    #[inline]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    #[must_use]
    #[inline]
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Topic and partition together.
    #[must_use]
    #[inline]
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }

    /// The offset in the partition.
    #[must_use]
    #[inline]
    pub fn offset(&self) -> u64 {
        self.record.offset
    }

    /// Milliseconds since the Unix epoch (the producer's, or the append time).
    #[must_use]
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp
    }

    /// Whose clock [`timestamp`](Self::timestamp) is (Kafka's `timestampType()`): the
    /// producer's ([`TimestampType::CreateTime`]) or the log's at append
    /// ([`TimestampType::LogAppendTime`], the topic's setting when the record was stored).
    #[must_use]
    #[inline]
    pub fn timestamp_type(&self) -> TimestampType {
        self.timestamp_type
    }

    /// The key, if any.
    #[must_use]
    #[inline]
    pub fn key(&self) -> Option<&[u8]> {
        self.record.key.as_deref()
    }

    /// The value; `None` for a tombstone.
    #[must_use]
    #[inline]
    pub fn value(&self) -> Option<&[u8]> {
        self.record.value.as_deref()
    }

    /// The key as shared bytes.
    #[must_use]
    #[inline]
    pub fn key_bytes(&self) -> Option<&Bytes> {
        self.record.key.as_ref()
    }

    /// The value as shared bytes.
    #[must_use]
    #[inline]
    pub fn value_bytes(&self) -> Option<&Bytes> {
        self.record.value.as_ref()
    }

    /// The headers, in order.
    #[must_use]
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.record.headers
    }

    /// The stored record without its topic and partition.
    #[must_use]
    #[inline]
    pub fn into_log_record(self) -> LogRecord {
        self.record
    }
}

/// A record borrowed from a [`ConsumerRecords`]: no allocation, no reference counting.
/// [`to_owned`](Self::to_owned) gives a [`ConsumerRecord`].
#[derive(Debug, Clone, Copy)]
pub struct ConsumerRecordRef<'a> {
    topic: &'a Arc<str>,
    partition: u32,
    timestamp_type: TimestampType,
    record: RecordRef<'a>,
}

impl<'a> ConsumerRecordRef<'a> {
    /// The topic.
    #[must_use]
    #[inline]
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// The partition.
    #[must_use]
    #[inline]
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Topic and partition together.
    #[must_use]
    #[inline]
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&**self.topic, self.partition)
    }

    /// The offset in the partition.
    #[must_use]
    #[inline]
    pub fn offset(&self) -> u64 {
        self.record.offset()
    }

    /// Milliseconds since the Unix epoch (the producer's, or the append time).
    #[must_use]
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp()
    }

    /// Whose clock [`timestamp`](Self::timestamp) is, as [`ConsumerRecord::timestamp_type`].
    #[must_use]
    #[inline]
    pub fn timestamp_type(&self) -> TimestampType {
        self.timestamp_type
    }

    /// The key, if any.
    #[must_use]
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key()
    }

    /// The value; `None` for a tombstone.
    #[must_use]
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.record.value()
    }

    /// The headers, in order, as `(name, value)` pairs.
    #[must_use]
    #[inline]
    pub fn headers(&self) -> HeaderRefs<'a> {
        self.record.headers()
    }

    /// An owned copy (the payloads stay zero-copy slices of the read buffer).
    #[must_use]
    pub fn to_owned(&self) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::clone(self.topic),
            partition: self.partition,
            timestamp_type: self.timestamp_type,
            record: self.record.to_log_record(),
        }
    }
}

/// The records of one partition in one poll: a stored batch and the range of its records
/// that belong to the poll (checked when the poll read them).
#[derive(Debug, Clone)]
struct Chunk {
    topic: Arc<str>,
    partition: u32,
    batch: RecordBatch,
    /// First offset to return; records of the batch before it are skipped.
    from: u64,
    /// Where the record at `from` starts, when the poll knew it: iteration starts there
    /// instead of walking (and skipping) the records before it.
    start: Option<RecordCursor>,
    /// How many records to return from `from` on.
    count: usize,
}

/// What one [`Consumer::poll`] returned: whole stored batches, shared with the read buffer
/// (no per-record allocation), and which of their records belong to the poll. Every
/// record was checked during the poll. Iterate by reference for borrowed
/// [`ConsumerRecordRef`]s, or by value for owned [`ConsumerRecord`]s.
#[derive(Debug, Clone, Default)]
pub struct ConsumerRecords {
    chunks: Vec<Chunk>,
    len: usize,
}

impl ConsumerRecords {
    /// How many records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, partition by partition, in offset order within each.
    #[must_use]
    pub fn iter(&self) -> RecordsIter<'_> {
        RecordsIter {
            chunks: self.chunks.iter(),
            current: None,
        }
    }

    /// The partitions that have records here.
    #[must_use]
    pub fn partitions(&self) -> BTreeSet<TopicPartition> {
        self.chunks
            .iter()
            .map(|c| TopicPartition::new(&*c.topic, c.partition))
            .collect()
    }

    /// The records of one partition.
    pub fn records_for<'a>(&'a self, tp: &'a TopicPartition) -> impl Iterator<Item = ConsumerRecordRef<'a>> + 'a {
        self.iter()
            .filter(move |r| r.partition == tp.partition && **r.topic == *tp.topic)
    }

    /// Every record, owned.
    #[must_use]
    pub fn to_vec(&self) -> Vec<ConsumerRecord> {
        self.iter().map(|r| r.to_owned()).collect()
    }
}

/// The chunk being iterated: its batch's records and how many are left to return.
#[derive(Debug, Clone)]
struct ChunkCursor<'a> {
    chunk: &'a Chunk,
    records: RecordRefs<'a>,
    left: usize,
    timestamp_type: TimestampType,
}

/// The iterator of [`ConsumerRecords::iter`].
#[derive(Debug, Clone)]
pub struct RecordsIter<'a> {
    chunks: std::slice::Iter<'a, Chunk>,
    current: Option<ChunkCursor<'a>>,
}

impl<'a> Iterator for RecordsIter<'a> {
    type Item = ConsumerRecordRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(cur) = &mut self.current
                && cur.left > 0
            {
                for record in cur.records.by_ref() {
                    match record {
                        Ok(record) if record.offset() >= cur.chunk.from => {
                            cur.left -= 1;
                            return Some(ConsumerRecordRef {
                                topic: &cur.chunk.topic,
                                partition: cur.chunk.partition,
                                timestamp_type: cur.timestamp_type,
                                record,
                            });
                        }
                        Ok(_) => {}
                        // Only a batch whose CRC matches but whose records do not parse —
                        // forged, not damaged (see `fetch_partition`) — gets here.
                        Err(e) => {
                            tracing::error!(topic = %cur.chunk.topic, partition = cur.chunk.partition, error = %e, "a checksummed batch does not parse; its remaining records are skipped");
                            break;
                        }
                    }
                }
                cur.left = 0;
            }
            let chunk = self.chunks.next()?;
            self.current = Some(ChunkCursor {
                chunk,
                records: chunk
                    .start
                    .map_or_else(|| chunk.batch.iter(), |at| chunk.batch.iter_at(at)),
                left: chunk.count,
                timestamp_type: chunk.batch.timestamp_type(),
            });
        }
    }
}

impl IntoIterator for ConsumerRecords {
    type Item = ConsumerRecord;
    type IntoIter = std::vec::IntoIter<ConsumerRecord>;
    fn into_iter(self) -> Self::IntoIter {
        self.to_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a ConsumerRecords {
    type Item = ConsumerRecordRef<'a>;
    type IntoIter = RecordsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Called when a group member's partitions change (Kafka's `ConsumerRebalanceListener`).
/// Every method runs on the consumer's thread, inside `poll` (or `unsubscribe`, `close`,
/// drop), with the consumer at hand. A panic in a callback goes on to the caller of `poll`;
/// the consumer keeps its listener and stays usable, and its poll has ended as far as the
/// group is concerned (it is evicted if it does not poll again within
/// `max_poll_interval`). As in Kafka, which raises a callback's exception after completing
/// the rebalance, the partitions a panicking `on_partitions_revoked` or `on_partitions_lost`
/// was told of are let go of first: they move on to their new owner. A callback's time
/// inside `poll` counts against `max_poll_interval`, as Kafka's rebalance timeout bounds
/// it: a member stuck in one is evicted, and its commits there fail from then on.
///
/// # Examples
/// ```
/// use brooklet::{Consumer, RebalanceListener, TopicPartition};
/// struct CommitOnRevoke;
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
///         // Still the owner here: commit what was processed before the partitions move.
///         if let Err(e) = consumer.commit() {
///             eprintln!("commit before revoking {partitions:?} failed: {e}");
///         }
///     }
/// }
/// ```
pub trait RebalanceListener: Send {
    /// Before `partitions` are taken away: the place to commit. The consumer still owns
    /// them, so commits succeed. Called at a rebalance that moves them, and — as Kafka's
    /// "also called when the consumer is being closed" — for every owned partition when the
    /// consumer unsubscribes, closes or is dropped (not while its thread unwinds from a
    /// panic).
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// After `partitions` were given to this consumer; positions are not resolved yet, so
    /// a `seek` here decides where reading starts. Called only when partitions were added
    /// (Kafka's cooperative protocol also calls it, with an empty list, after a rebalance
    /// that gave this member nothing new).
    fn on_partitions_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// When the member was evicted and `partitions` may already belong to others: commits
    /// for them fail. Called at the evicted member's next poll, or when it unsubscribes or
    /// closes before that. By default calls
    /// [`on_partitions_revoked`](Self::on_partitions_revoked), as Kafka.
    fn on_partitions_lost(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(consumer, partitions);
    }
}

/// The callback of [`Consumer::commit_async`].
type CommitCallback = Box<dyn FnOnce(Result<()>) + Send>;

/// A written `commit_async`: the offsets log end to sync, and the positions it committed.
type AsyncCommit = (u64, Vec<(TopicPartition, u64)>);

struct Subscription {
    topics: Vec<String>,
    member: MemberHandle,
    listener: Option<Box<dyn RebalanceListener>>,
    generation: u64,
}

struct Part {
    log: Arc<PartitionLog>,
    topic: Arc<str>,
    position: Option<u64>,
    /// The last offset committed (or found committed) by this consumer.
    committed: Option<u64>,
    paused: bool,
    /// The position at which this consumer was told of an offline partition's damage
    /// ([`PartitionLog::damage`]): polls there return nothing for it, as a Kafka consumer's
    /// do for a partition with no leader, instead of the same error at every poll. A seek
    /// elsewhere re-arms it.
    damage_reported_at: Option<u64>,
    /// Batches a poll read but did not return all of, from the one holding the position
    /// on (as Kafka's fetcher keeps a fetch's records for the next polls): the next poll
    /// starts there instead of reading (and checking, and decompressing) them again. At
    /// most one read's worth (`max_partition_fetch_bytes`).
    fetched: Kept,
    /// The log's truncation epoch before `fetched` was read: a truncation since may have
    /// removed some of them.
    fetched_epoch: u64,
    /// The log's [`cut_epoch`](PartitionLog::cut_epoch) when `position` was last known
    /// valid: a truncation since may have cut the log below it.
    cut_epoch: u64,
}

impl Part {
    /// Moves the position by the application's choice (a seek), or drops it (`None`): the
    /// damage, if any, is reported again when a read reaches it.
    fn move_to(&mut self, position: Option<u64>) {
        self.move_to_as_of(position, self.log.cut_epoch());
    }

    /// [`move_to`](Self::move_to) a position known valid as of the log's truncation epoch
    /// `epoch` (read before the position was worked out): a truncation after it is checked
    /// at the next poll.
    fn move_to_as_of(&mut self, position: Option<u64>, epoch: u64) {
        self.cut_epoch = epoch;
        self.position = position;
        self.damage_reported_at = None;
        self.fetched = Kept::default();
    }

    /// Moves the position to the offset `to` computes from the log (a seek to its start or
    /// end, a reset) and returns it.
    fn move_to_computed(&mut self, to: impl FnOnce(&PartitionLog) -> u64) -> u64 {
        let epoch = self.log.cut_epoch();
        let position = to(&self.log);
        self.move_to_as_of(Some(position), epoch);
        position
    }

    /// Moves the position back to `offset`, the first record of this partition that a poll
    /// returned and the application never got (see [`Iter`]'s drop). Unlike a seek, the
    /// truncations and the damage seen so far still apply; the kept batches go, as their
    /// resume point is past `offset`.
    fn rewind(&mut self, offset: u64) {
        if self.position.is_some_and(|p| offset < p) {
            self.position = Some(offset);
            self.fetched = Kept::default();
        }
    }

    /// The position, checked against the truncations since it was last: one past the end
    /// a truncation left moves back to that end, the first offset whose record changed, as
    /// a Kafka consumer resets to the offset its log diverged at (KIP-320) — unless
    /// `policy` is [`OffsetReset::None`]: then the position stays, and the error says so
    /// (until a seek). One atomic load when the log was not truncated.
    fn check_cuts(&mut self, tp: &TopicPartition, position: u64, policy: OffsetReset) -> Result<u64> {
        let epoch = self.log.cut_epoch();
        let Some(end) = self.cut_end() else {
            return Ok(position);
        };
        if end >= position {
            self.cut_epoch = epoch;
            return Ok(position);
        }
        if policy == OffsetReset::None {
            return Err(Error::LogTruncated {
                partition: tp.clone(),
                position,
                end,
            });
        }
        tracing::warn!(partition = %tp, position, end, "the log was truncated below the position; resuming at its new end");
        self.move_to_as_of(Some(end), epoch);
        Ok(end)
    }

    /// The position to commit: never past the end a truncation not yet seen by a poll
    /// left, which would make the group skip the records written there next.
    fn committable(&self, position: u64) -> u64 {
        self.cut_end().map_or(position, |end| position.min(end))
    }

    /// The lowest log end the truncations since `cut_epoch` left, if any, as the offset to
    /// read on from: never below the log start. A truncation that restarted the log empty
    /// at its start (the batch holding the cut straddled it), or a history of truncations
    /// too short to tell, says 0 — every record may have changed — and the first offset
    /// that can hold a record is the log start, where the next records go: from 0, the
    /// read would be out of range, and `auto_offset_reset` `Latest` would skip them.
    fn cut_end(&self) -> Option<u64> {
        self.log
            .lowest_cut_since(self.cut_epoch)
            .map(|end| end.max(self.log.log_start_offset()))
    }

    /// The batches kept from earlier polls, if they still start with the one holding
    /// `position` and the log was not truncated nor its start moved past `position` since
    /// (else none: the poll reads from the log).
    fn take_fetched(&mut self, position: u64) -> Kept {
        let fetched = std::mem::take(&mut self.fetched);
        let valid = fetched
            .batches
            .front()
            .is_some_and(|b| b.base_offset() <= position && position <= b.last_offset())
            && self.log.truncation_epoch() == self.fetched_epoch
            && position >= self.log.log_start_offset();
        if valid { fetched } else { Kept::default() }
    }
}

/// Batches read but not returned all of, oldest first, and where the first goes on.
#[derive(Debug, Default)]
struct Kept {
    batches: VecDeque<RecordBatch>,
    /// Where the first batch, partly returned, goes on: the offset of its next record and
    /// where that record starts, so the next poll neither walks the records before it again
    /// nor makes the application's iteration do so (one record per poll through a batch of
    /// n used to cost a walk of n/2 records, twice).
    resume: Option<(u64, RecordCursor)>,
}

/// Interrupts a [`Consumer`]'s `poll` from another thread; from
/// [`Consumer::wakeup_handle`]. `Clone + Send + Sync`, and usable after the consumer is
/// gone (it then does nothing).
#[derive(Debug, Clone)]
pub struct WakeupHandle {
    signal: Arc<Signal>,
    requested: Arc<AtomicBool>,
}

impl WakeupHandle {
    /// Makes the consumer's `poll` that is blocked now — or, if none is, its next `poll` —
    /// return [`Error::Wakeup`] at once, as Kafka's `consumer.wakeup()` makes it throw
    /// `WakeupException`. The interrupted call consumes nothing: positions stay where they
    /// were, and the records it would have returned come with a later poll. Several
    /// wakeups before a poll interrupt it once. [`Consumer::iter`] ends instead of
    /// yielding the error.
    pub fn wakeup(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.signal.notify();
    }
}

/// Reads records from topics, alone or in a consumer group. `Send`, used from one thread
/// at a time (as Kafka's consumer). Dropping it does what [`close`](Consumer::close) does
/// (Kafka has no drop; brooklet chose to close), so a thread that panics gives its
/// partitions back — but while unwinding from a panic it neither commits nor runs the
/// rebalance listener.
///
/// # Examples
/// ```
/// use brooklet::{Broker, ConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig};
/// use std::time::Duration;
///
/// let broker = Broker::temporary()?;
/// broker.create_topic("orders", TopicConfig::with_partitions(3))?;
/// let producer = broker.producer(ProducerConfig::default());
/// producer.send(ProducerRecord::new("orders").key("user-1").value("42.5"))?;
///
/// let mut consumer = broker.consumer(ConsumerConfig::group("analytics").auto_offset_reset(OffsetReset::Earliest))?;
/// consumer.subscribe(&["orders"])?;
/// let records = consumer.poll(Duration::from_secs(5))?;
/// assert_eq!(records.len(), 1);
/// for record in &records {
///     assert_eq!(record.value(), Some(&b"42.5"[..]));
/// }
/// consumer.commit()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer {
    broker: Broker,
    config: ConsumerConfig,
    signal: Arc<Signal>,
    /// Set by a [`WakeupHandle`]; taken by the poll it interrupts.
    wakeup: Arc<AtomicBool>,
    subscription: Option<Subscription>,
    parts: BTreeMap<TopicPartition, Part>,
    rotation: usize,
    last_auto_commit: Instant,
    async_pending: VecDeque<(CommitCallback, Result<AsyncCommit>)>,
    /// An error of a poll that also returned records: the partition and the position it
    /// failed at, reported by the next poll unless that partition was moved or unassigned
    /// since (then it no longer applies, and Kafka drops it as stale).
    pending_error: Option<(TopicPartition, u64, Error)>,
    /// The last fetch's read buffer, reused by the next fetch once the records the
    /// application got from it are dropped (one buffer per consumer, at most
    /// `max_partition_fetch_bytes`).
    spare: SpareBuffer,
    closed: bool,
}

impl Broker {
    /// Opens a consumer; see [`Consumer`] and [`ConsumerConfig`]. (Defined here, beside the
    /// consumer, as [`Broker::producer`] is beside the producer: the broker knows neither.)
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad config.
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::new(self.clone(), config)
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("member_id", &self.member_id())
            .field("assignment", &self.parts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) fn new(broker: Broker, config: ConsumerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Consumer {
            broker,
            config,
            signal: Signal::new(),
            wakeup: Arc::new(AtomicBool::new(false)),
            subscription: None,
            parts: BTreeMap::new(),
            rotation: 0,
            last_auto_commit: Instant::now(),
            async_pending: VecDeque::new(),
            pending_error: None,
            spare: SpareBuffer::default(),
            closed: false,
        })
    }

    /// The consumer's settings.
    #[must_use]
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// A handle another thread uses to interrupt this consumer's `poll` (Kafka's
    /// `consumer.wakeup()`, which Rust's ownership puts on a handle: the consumer itself is
    /// used by one thread). See [`WakeupHandle::wakeup`].
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, ConsumerConfig, Error, TopicConfig};
    /// use std::time::Duration;
    ///
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(1))?;
    /// let mut consumer = broker.consumer(ConsumerConfig::group("billing"))?;
    /// consumer.subscribe(&["orders"])?;
    /// let wakeup = consumer.wakeup_handle();
    /// let worker = std::thread::spawn(move || {
    ///     loop {
    ///         match consumer.poll(Duration::from_secs(3600)) {
    ///             Ok(records) => { /* process, commit */ }
    ///             Err(Error::Wakeup) => break, // asked to stop
    ///             Err(e) => return Err(e),
    ///         }
    ///     }
    ///     consumer.close() // commits (auto-commit) and leaves the group
    /// });
    /// std::thread::sleep(Duration::from_millis(50));
    /// wakeup.wakeup(); // e.g. from a shutdown handler
    /// worker.join().expect("worker")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn wakeup_handle(&self) -> WakeupHandle {
        WakeupHandle {
            signal: Arc::clone(&self.signal),
            requested: Arc::clone(&self.wakeup),
        }
    }

    fn group_id(&self) -> Option<&str> {
        self.config.group_id.as_deref()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed { what: "consumer" });
        }
        Ok(())
    }

    /// Joins the consumer's group subscribed to `topics` (replacing any earlier
    /// subscription or assignment). Partitions arrive at the next `poll`. Topics that do not
    /// exist yet are assigned once they are created. A consumer already subscribed stays the
    /// same member, as in Kafka: its partitions of topics it still subscribes to keep their
    /// positions, those of dropped topics are revoked at the next `poll`, and the same
    /// topics again cause no rebalance.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a `group_id` or for an empty list;
    /// [`Error::InvalidTopicName`].
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<()> {
        self.subscribe_inner(topics, None)
    }

    /// As [`subscribe`](Self::subscribe), with a listener told of partition changes.
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_with_listener<S: AsRef<str>>(
        &mut self,
        topics: &[S],
        listener: impl RebalanceListener + 'static,
    ) -> Result<()> {
        self.subscribe_inner(topics, Some(Box::new(listener)))
    }

    fn subscribe_inner<S: AsRef<str>>(
        &mut self,
        topics: &[S],
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<()> {
        self.check_open()?;
        let Some(group) = self.config.group_id.clone() else {
            return Err(Error::InvalidArgument {
                reason: "subscribe needs a group_id; use assign() to read partitions without a group".into(),
            });
        };
        if topics.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "subscribe to at least one topic (or call unsubscribe)".into(),
            });
        }
        let mut names: Vec<String> = Vec::with_capacity(topics.len());
        for t in topics {
            crate::topic::validate_topic_name(t.as_ref())?;
            names.push(t.as_ref().to_owned());
        }
        names.sort();
        names.dedup();
        let broker = self.broker.clone();
        if let Some(sub) = self.subscription.as_mut()
            && sub
                .member
                .group
                .resubscribe(&sub.member.member_id, &names, &|t| broker.partition_count(t))
        {
            sub.topics = names;
            sub.listener = listener;
            return Ok(());
        }
        self.unsubscribe();
        let member = broker
            .coordinator()
            .join(self.join_request(&group, names.clone()), &|t| broker.partition_count(t));
        self.subscription = Some(Subscription {
            topics: names,
            member,
            listener,
            generation: 0,
        });
        Ok(())
    }

    fn join_request(&self, group: &str, topics: Vec<String>) -> JoinRequest {
        JoinRequest {
            group: group.to_owned(),
            client_id: self.config.client_id.clone(),
            topics,
            assignor: Arc::clone(&self.config.assignor),
            signal: Arc::clone(&self.signal),
            max_poll_interval: self.config.max_poll_interval,
        }
    }

    /// Reads exactly `partitions`, without group management (replacing any subscription
    /// or earlier assignment). Positions start at the committed offsets (with a group) or
    /// where `auto_offset_reset` says; as Kafka's `assign`, a partition that was already
    /// assigned (and not by a subscription) keeps its position and pause state. If a
    /// partition's topic is deleted, `poll` reports
    /// [`Error::UnknownTopic`] until a topic of that name is created again; the consumer then
    /// reads the new topic from the committed offset or `auto_offset_reset` (the old
    /// position is dropped).
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] or [`Error::InvalidPartition`] for a partition that does not exist.
    pub fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.check_open()?;
        let logs = partitions
            .iter()
            .map(|tp| self.broker.partition_log(tp).map(|log| (tp.clone(), log)))
            .collect::<Result<Vec<_>>>()?;
        if self.subscription.is_some() {
            self.unsubscribe();
        } else {
            if let Err(e) = self.auto_commit_all() {
                tracing::warn!(error = %e, "auto-commit before a new assignment failed");
            }
            // What stays keeps its position (the same log: not a topic created again since).
            let dropped: Vec<TopicPartition> = self
                .parts
                .iter()
                .filter(|(tp, part)| !logs.iter().any(|(t, log)| t == *tp && Arc::ptr_eq(log, &part.log)))
                .map(|(tp, _)| tp.clone())
                .collect();
            self.remove_parts(&dropped);
        }
        for (tp, log) in logs {
            if !self.parts.contains_key(&tp) {
                self.add_part(tp, log);
            }
        }
        Ok(())
    }

    /// Leaves the group or drops the manual assignment, as Kafka's `unsubscribe`: with
    /// auto-commit on (and a `group_id`) the positions are committed first — also those of
    /// a manual assignment, as Kafka's `assign` commits the old assignment before replacing
    /// it — and then a group member runs its listener's `on_partitions_revoked` for every
    /// partition it owns (`on_partitions_lost` if it was evicted meanwhile), where a
    /// listener with auto-commit off commits. The consumer keeps its configuration and can
    /// subscribe again. A failed auto-commit is logged; the consumer leaves anyway.
    pub fn unsubscribe(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::warn!(error = %e, "auto-commit while leaving the group failed");
        }
    }

    /// Commits the positions if auto-commit is on, runs the listener's revoke (or lost)
    /// callback for a member's partitions, then drops every partition and leaves the group.
    /// While the thread is unwinding from a panic neither the commit nor the listener runs:
    /// the thread has not processed what it polled, and committing would lose those
    /// records. The group is left even if the commit fails; its error is returned.
    fn release_all(&mut self) -> Result<()> {
        let all: Vec<TopicPartition> = self.parts.keys().cloned().collect();
        let panicking = std::thread::panicking();
        let result = self.auto_commit_all();
        let mut listener_panic = None;
        if !panicking
            && !all.is_empty()
            && let Some(sub) = &self.subscription
        {
            // As Kafka's consumer when it leaves: still the owner, so the listener's commits
            // succeed; an evicted member's partitions may be with others already.
            let member = sub.member.group.is_member(&sub.member.member_id);
            // A panicking listener must not keep the member in the group: leave first.
            listener_panic = std::panic::catch_unwind(AssertUnwindSafe(|| {
                if member {
                    self.with_listener(|l, c| l.on_partitions_revoked(c, &all));
                } else {
                    self.with_listener(|l, c| l.on_partitions_lost(c, &all));
                }
            }))
            .err();
        }
        self.await_async_commits();
        // What the listener left assigned (it may have unsubscribed itself).
        let all: Vec<TopicPartition> = self.parts.keys().cloned().collect();
        self.remove_parts(&all);
        if let Some(sub) = self.subscription.take() {
            let broker = self.broker.clone();
            let group = &sub.member.group;
            group.leave(&sub.member.member_id, &|t| broker.partition_count(t));
            // The last member of a group that never committed: nothing of it is kept.
            // (Commits not yet synced count: `newest_commit` sees them.)
            broker
                .coordinator()
                .forget_if_unused(group, || broker.offsets().newest_commit(&group.name).is_some());
        }
        if let Some(panic) = listener_panic {
            std::panic::resume_unwind(panic);
        }
        result
    }

    /// The auto-commit of a consumer giving its partitions up (a new assignment, leaving):
    /// every changed position, if auto-commit is on and there is a group — but not while
    /// the thread unwinds from a panic (it has not processed what it polled).
    fn auto_commit_all(&mut self) -> Result<()> {
        if !self.config.enable_auto_commit || self.config.group_id.is_none() || std::thread::panicking() {
            return Ok(());
        }
        let all: Vec<TopicPartition> = self.parts.keys().cloned().collect();
        self.commit_parts(&all)
    }

    fn add_part(&mut self, tp: TopicPartition, log: Arc<PartitionLog>) {
        log.watchers().add(&self.signal);
        let topic: Arc<str> = Arc::from(tp.topic.as_str());
        self.parts.insert(
            tp,
            Part {
                log,
                topic,
                position: None,
                committed: None,
                paused: false,
                damage_reported_at: None,
                fetched: Kept::default(),
                fetched_epoch: 0,
                cut_epoch: 0,
            },
        );
    }

    fn remove_parts(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(part) = self.parts.remove(tp) {
                part.log.watchers().remove(&self.signal);
            }
        }
    }

    /// The partitions this consumer reads now.
    #[must_use]
    pub fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.parts.keys().cloned().collect()
    }

    /// The topics of the current subscription (empty if none).
    #[must_use]
    pub fn subscription(&self) -> Vec<String> {
        self.subscription.as_ref().map(|s| s.topics.clone()).unwrap_or_default()
    }

    /// The member id the group gave this consumer, while subscribed.
    #[must_use]
    pub fn member_id(&self) -> Option<&str> {
        self.subscription.as_ref().map(|s| s.member.member_id.as_str())
    }

    /// The group generation this consumer last synced with (0 before its first poll).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.subscription.as_ref().map_or(0, |s| s.generation)
    }

    /// Returns up to `max_poll_records` records, blocking up to `timeout` until one is
    /// there. Rebalances are handled here: listener callbacks run on this thread first.
    ///
    /// # Errors
    /// [`Error::NoCommittedOffset`] for a partition without a position when
    /// `auto_offset_reset` is `None`; [`Error::OffsetOutOfRange`] when a position falls
    /// outside the log and `auto_offset_reset` is `None`; [`Error::LogTruncated`] when a
    /// [`PartitionLog::truncate_to`] cut the log below a position and `auto_offset_reset`
    /// is `None` (with a policy, the position moves back to the end the cut left, so the
    /// records written there next are read); [`Error::UnknownTopic`] for a
    /// manually assigned partition whose topic was deleted (until it is created again), and
    /// [`Error::InvalidPartition`] for one whose topic was created again with fewer
    /// partitions (until partitions are added up to it; the others are read meanwhile);
    /// [`Error::Corrupt`] or [`Error::Io`] from the log (a partition left offline by
    /// [`DamagePolicy::Offline`](crate::DamagePolicy::Offline) reports its damage once when a
    /// read reaches it, and again only after a seek; its polls there return nothing for it
    /// in between, as a Kafka consumer's do for a partition with no leader);
    /// [`Error::Closed`] after `close`;
    /// [`Error::Wakeup`] when a [`WakeupHandle`] interrupted it (nothing consumed);
    /// [`Error::NotSubscribed`] at once for a consumer with neither a subscription nor an
    /// assignment (as Kafka). As in Kafka, records already read from other partitions in the
    /// same poll are returned first, and the error comes from the next poll: no record is
    /// skipped because another partition failed. (Not if the failed partition was seeked or
    /// unassigned in between: then the error no longer applies and is dropped, as Kafka
    /// drops a stale fetch.) A poll stops reading at the failed partition, so until the
    /// application seeks past the damage (or pauses or unassigns the partition), the
    /// partitions after it in the poll's rotation get fewer reads: as with Kafka, whose
    /// consumer throws at a corrupt record until it is seeked past.
    pub fn poll(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        self.check_open()?;
        if let Some((tp, position, e)) = self.pending_error.take()
            && self.parts.get(&tp).is_some_and(|p| p.position == Some(position))
        {
            return Err(e);
        }
        if self.subscription.is_none() && self.parts.is_empty() {
            return Err(Error::NotSubscribed {
                group: self.config.group_id.clone(),
            });
        }
        let deadline = Instant::now().checked_add(timeout);
        self.run_async_callbacks();
        self.maybe_auto_commit();
        // A panic of the rebalance listener propagates to the caller, but the poll still
        // ends in the group: a member left "in poll" would never be evicted if the caller
        // catches the panic and stops polling.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.poll_loop(deadline)));
        if let Some(sub) = &self.subscription {
            sub.member.group.end_poll(&sub.member.member_id);
        }
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn poll_loop(&mut self, deadline: Option<Instant>) -> Result<ConsumerRecords> {
        let mut out = ConsumerRecords::default();
        // Whether this poll already read again at once after a reset (once is enough: a
        // reset moves every out-of-range position in one fetch; a log whose bounds keep
        // moving under it must not keep the poll past its deadline).
        let mut reread = false;
        loop {
            // Take the signal before reading: an append (or a wakeup) after this point
            // raises it again.
            self.signal.take();
            if self.wakeup.swap(false, Ordering::SeqCst) {
                return Err(Error::Wakeup);
            }
            let next_check = self.sync_group()?;
            self.follow_recreated();
            self.resolve_positions()?;
            let reset = self.fetch(&mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
            if reset && !reread {
                // A position was reset (out of range): read at the new one now, before the
                // deadline check, instead of waiting for an append that may never come.
                reread = true;
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(out);
            }
            let far = now + Duration::from_secs(3600);
            // A read-only broker's logs grow by another process's appends, which raise no
            // signal here: re-check the files every READ_ONLY_RECHECK.
            let recheck = self.broker.is_read_only().then(|| now + READ_ONLY_RECHECK);
            let wake = [deadline, next_check, recheck]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(far);
            self.signal.wait_until(wake);
        }
    }

    /// Heartbeat and rebalance handling. Returns when a peer's poll deadline passes.
    fn sync_group(&mut self) -> Result<Option<Instant>> {
        self.revoke_deleted();
        let broker = self.broker.clone();
        let counts = |t: &str| broker.partition_count(t);
        loop {
            let Some(sub) = &self.subscription else {
                return Ok(None);
            };
            let group = Arc::clone(&sub.member.group);
            let member_id = sub.member.member_id.clone();
            match group.begin_poll(&member_id, &counts) {
                PollStep::Evicted => {
                    let lost: Vec<TopicPartition> = self.parts.keys().cloned().collect();
                    let panic = if lost.is_empty() {
                        None
                    } else {
                        self.with_listener_caught(|l, c| l.on_partitions_lost(c, &lost))
                    };
                    self.remove_parts(&lost);
                    // Raised once the lost partitions are gone: the next poll joins again.
                    if let Some(panic) = panic {
                        std::panic::resume_unwind(panic);
                    }
                    let Some(sub) = self.subscription.as_ref() else {
                        return Ok(None);
                    };
                    // The listener subscribed again: that joined already (a second join
                    // would leave a member nobody polls, holding partitions until evicted).
                    if sub.member.member_id != member_id {
                        continue;
                    }
                    let topics = sub.topics.clone();
                    let group_id = group.name.clone();
                    tracing::warn!(group = %group_id, member = %member_id, "member was evicted; rejoining");
                    let member = broker.coordinator().join(self.join_request(&group_id, topics), &counts);
                    if let Some(sub) = self.subscription.as_mut() {
                        sub.member = member;
                        sub.generation = 0;
                    }
                }
                PollStep::Member {
                    generation,
                    revoke,
                    to_claim,
                    next_check,
                } => {
                    if !revoke.is_empty() {
                        if self.config.enable_auto_commit
                            && let Err(e) = self.commit_parts(&revoke)
                        {
                            tracing::warn!(error = %e, "auto-commit before revoking partitions failed");
                        }
                        let panic = self.listener_in_poll(|l, c| l.on_partitions_revoked(c, &revoke));
                        self.await_async_commits();
                        self.remove_parts(&revoke);
                        group.release(&member_id, &revoke);
                        // Raised once the partitions are released (as Kafka raises a callback's
                        // exception after completing the revocation): kept, they would never
                        // reach their new owner while this member polls on.
                        if let Some(panic) = panic {
                            std::panic::resume_unwind(panic);
                        }
                    }
                    if to_claim {
                        let (claimed, _complete) = group.claim(&member_id);
                        let mut added = Vec::with_capacity(claimed.len());
                        for tp in claimed {
                            match broker.partition_log(&tp) {
                                Ok(log) => {
                                    self.add_part(tp.clone(), log);
                                    added.push(tp);
                                }
                                // Deleted meanwhile: give it back; the coordinator rebalances it away.
                                Err(e) => {
                                    tracing::debug!(partition = %tp, error = %e, "skipping a vanished partition");
                                    group.release(&member_id, std::slice::from_ref(&tp));
                                }
                            }
                        }
                        if !added.is_empty()
                            && let Some(panic) = self.listener_in_poll(|l, c| l.on_partitions_assigned(c, &added))
                        {
                            std::panic::resume_unwind(panic);
                        }
                    }
                    // A callback that outlasted `max_poll_interval` got the member evicted:
                    // handled now (lost, rejoin), before this poll reads partitions that have
                    // moved on. (Not if the listener left or joined again itself.)
                    let same_member = self
                        .subscription
                        .as_ref()
                        .is_some_and(|s| s.member.member_id == member_id);
                    if same_member && !group.is_member(&member_id) {
                        continue;
                    }
                    if let Some(sub) = self.subscription.as_mut() {
                        sub.generation = generation;
                    }
                    return Ok(next_check);
                }
            }
        }
    }

    /// Revokes a member's partitions whose topic was deleted — and perhaps created again
    /// since its last poll: the old logs are gone whatever the coordinator's target says.
    /// They are passed to `on_partitions_revoked` (brooklet's choice, as for any partition
    /// a rebalance takes away; their positions cannot be committed any more), dropped and
    /// released, so the member claims a recreated topic's partitions afresh.
    fn revoke_deleted(&mut self) {
        let Some(sub) = &self.subscription else { return };
        let deleted: Vec<TopicPartition> = self
            .parts
            .iter()
            .filter(|(_, p)| p.log.is_deleted())
            .map(|(tp, _)| tp.clone())
            .collect();
        if deleted.is_empty() {
            return;
        }
        let (group, member_id) = (Arc::clone(&sub.member.group), sub.member.member_id.clone());
        tracing::debug!(group = %group.name, member = %member_id, partitions = ?deleted, "revoking partitions of a deleted topic");
        let panic = self.listener_in_poll(|l, c| l.on_partitions_revoked(c, &deleted));
        self.remove_parts(&deleted);
        group.release(&member_id, &deleted);
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
    }

    fn with_listener(&mut self, call: impl FnOnce(&mut dyn RebalanceListener, &mut Consumer)) {
        if let Some(panic) = self.with_listener_caught(call) {
            std::panic::resume_unwind(panic);
        }
    }

    /// [`with_listener_caught`](Self::with_listener_caught) for a callback `poll` runs: its
    /// time counts as out of poll for the member's `max_poll_interval` (see the
    /// coordinator's liveness rules), so that a member stuck in its listener is evicted as
    /// one stuck between polls is.
    fn listener_in_poll(
        &mut self,
        call: impl FnOnce(&mut dyn RebalanceListener, &mut Consumer),
    ) -> Option<Box<dyn std::any::Any + Send>> {
        let member = self
            .subscription
            .as_ref()
            .map(|s| (Arc::clone(&s.member.group), s.member.member_id.clone()));
        let paused = member.as_ref().is_some_and(|(group, id)| group.pause_poll(id));
        let panic = self.with_listener_caught(call);
        if paused && let Some((group, id)) = member {
            let broker = self.broker.clone();
            group.resume_poll(&id, &|t| broker.partition_count(t));
        }
        panic
    }

    /// [`with_listener`](Self::with_listener), returning the callback's panic instead of
    /// raising it: for a hand-over that must be completed (partitions released or dropped)
    /// before the panic goes on to the caller.
    fn with_listener_caught(
        &mut self,
        call: impl FnOnce(&mut dyn RebalanceListener, &mut Consumer),
    ) -> Option<Box<dyn std::any::Any + Send>> {
        let sub = self.subscription.as_mut()?;
        let member = sub.member.member_id.clone();
        let mut listener = sub.listener.take()?;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| call(listener.as_mut(), &mut *self)));
        // Put it back unless the callback replaced the subscription (and its listener) —
        // also after a panic, which then goes on to the caller of `poll`.
        if let Some(sub) = self.subscription.as_mut()
            && sub.member.member_id == member
            && sub.listener.is_none()
        {
            sub.listener = Some(listener);
        }
        outcome.err()
    }

    /// Makes a manually assigned partition whose topic was deleted and created again read
    /// the new topic, as Kafka's consumer, which finds partitions by name: the new log is
    /// swapped in and the position found afresh — the group's committed offset, which the
    /// delete dropped, else `auto_offset_reset`. (Brooklet's choice: the old position is not
    /// kept, as it counts records of another log.) While the topic does not exist, the
    /// partition stays and `poll` reports [`Error::UnknownTopic`].
    fn follow_recreated(&mut self) {
        if self.subscription.is_some() {
            return; // `revoke_deleted` handles a member's partitions.
        }
        for (tp, part) in &mut self.parts {
            if !part.log.is_deleted() {
                continue;
            }
            let Ok(log) = self.broker.partition_log(tp) else {
                continue;
            };
            if log.is_deleted() {
                continue;
            }
            tracing::info!(partition = %tp, "the assigned partition's topic was created again; reading the new one");
            if !part.paused {
                part.log.watchers().remove(&self.signal);
                log.watchers().add(&self.signal);
            }
            part.log = log;
            part.move_to(None);
            part.committed = None;
        }
    }

    /// Gives every partition without a position one: the committed offset, else the reset.
    fn resolve_positions(&mut self) -> Result<()> {
        let unresolved: Vec<TopicPartition> = self
            .parts
            .iter()
            .filter(|(_, p)| p.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in unresolved {
            // Read before the committed offset, which reflects (was lowered by) every
            // truncation counted in it; a later one, whose hook may not have lowered it yet
            // (or failed to), is checked against the position at the fetch.
            let Some(settled) = self.parts.get(&tp).map(|p| p.log.settled_cut_epoch()) else {
                continue;
            };
            let committed = self
                .group_id()
                .and_then(|g| self.broker.offsets().get(g, &tp))
                .map(|om| om.offset);
            let Some(part) = self.parts.get_mut(&tp) else { continue };
            // A position from the reset is within the log as it is after every truncation
            // so far.
            part.cut_epoch = part.log.cut_epoch();
            let (start, end) = (part.log.log_start_offset(), part.log.visible_end_offset());
            let position = match committed {
                Some(c) if (start..=end).contains(&c) => {
                    part.cut_epoch = settled;
                    c
                }
                Some(c) => reset(self.config.auto_offset_reset, start, end).ok_or_else(|| Error::OffsetOutOfRange {
                    requested: c,
                    start,
                    end,
                    partition: Some(tp.clone()),
                })?,
                None => reset(self.config.auto_offset_reset, start, end).ok_or_else(|| Error::NoCommittedOffset {
                    group: self.config.group_id.clone(),
                    partition: tp.clone(),
                })?,
            };
            part.position = Some(position);
            part.committed = committed;
        }
        Ok(())
    }

    /// Reads from the unpaused partitions in turn until `max_poll_records` are in `out`.
    /// A partition that fails leaves its position alone; the error is returned now if
    /// nothing was read, else kept for the next poll. Returns whether a position out of
    /// range was reset by `auto_offset_reset` (its records are read by the next fetch).
    fn fetch(&mut self, out: &mut ConsumerRecords) -> Result<bool> {
        let max = self.config.max_poll_records;
        let count = self.parts.len();
        if count == 0 {
            return Ok(false);
        }
        self.rotation = (self.rotation + 1) % count;
        let reset_policy = self.config.auto_offset_reset;
        let fetch_bytes = self.config.max_partition_fetch_bytes;
        let subscribed = self.subscription.is_some();
        let mut parts: Vec<(&TopicPartition, &mut Part)> = self.parts.iter_mut().collect();
        parts.rotate_left(self.rotation);
        let mut failure = None;
        let mut reset = false;
        for (tp, part) in parts {
            if out.len() >= max {
                break;
            }
            if part.paused {
                continue;
            }
            let Some(position) = part.position else { continue };
            if part.damage_reported_at == Some(position) {
                continue;
            }
            if part.log.is_deleted() {
                if subscribed {
                    // Revoked at the next sync_group (`revoke_deleted`).
                    continue;
                }
                // A topic created again (`follow_recreated` swaps its log in) with fewer
                // partitions has none of this number: that, not a missing topic.
                let error = match self.broker.partition_count(&tp.topic) {
                    Some(partitions) if partitions <= tp.partition => Error::InvalidPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        partitions,
                    },
                    _ => Error::UnknownTopic {
                        topic: tp.topic.clone(),
                    },
                };
                failure = Some((tp.clone(), position, error));
                break;
            }
            let position = match part.check_cuts(tp, position, reset_policy) {
                Ok(position) => position,
                Err(e) => {
                    failure = Some((tp.clone(), position, e));
                    break;
                }
            };
            let mark = (out.chunks.len(), out.len);
            match fetch_partition(part, tp.partition, position, fetch_bytes, max, &mut self.spare, out) {
                Ok(next) => part.position = Some(next),
                Err(e) => {
                    // Nothing of a failed partition is returned.
                    out.chunks.truncate(mark.0);
                    out.len = mark.1;
                    if part.log.damage().is_some() && matches!(e, Error::Corrupt { .. }) {
                        part.damage_reported_at = Some(position);
                    }
                    match handle_fetch_error(e, tp, part, reset_policy) {
                        Some(e) => {
                            failure = Some((tp.clone(), position, e));
                            break;
                        }
                        None => reset = true,
                    }
                }
            }
        }
        match failure {
            Some((_, _, e)) if out.is_empty() => Err(e),
            Some(failure) => {
                self.pending_error = Some(failure);
                Ok(reset)
            }
            None => Ok(reset),
        }
    }

    /// An iterator that polls forever (as `for msg in consumer` in the Kafka tutorials),
    /// yielding each record or the error of a failed poll. It ends when a
    /// [`WakeupHandle`] wakes the consumer (the way to stop the loop from another thread).
    ///
    /// A record counts as consumed once it is yielded, as with kafka-python's consumer
    /// iterator: leaving the loop early (a `break`, a `?`) moves the positions back to the
    /// first record of the last poll that the loop did not get, so a
    /// [`commit`](Self::commit) after it, or the auto-commit at close, covers only the
    /// records the loop got, and the next `poll` returns the rest.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, ConsumerConfig, OffsetReset, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition};
    ///
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(1))?;
    /// let producer = broker.producer(ProducerConfig::default());
    /// for i in 0..10 {
    ///     producer.send(ProducerRecord::new("orders").value(format!("order-{i}")))?;
    /// }
    /// let mut consumer = broker.consumer(ConsumerConfig::group("billing").auto_offset_reset(OffsetReset::Earliest))?;
    /// consumer.subscribe(&["orders"])?;
    /// for record in consumer.iter() {
    ///     let record = record?;
    ///     if record.offset() == 2 {
    ///         break; // offsets 0 to 2 are consumed; 3 to 9 are not
    ///     }
    /// }
    /// consumer.commit()?;
    /// assert_eq!(consumer.position(&TopicPartition::new("orders", 0))?, 3);
    /// # Ok::<(), brooklet::Error>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_> {
        Iter {
            consumer: self,
            buffer: VecDeque::new(),
            idle_timeout: None,
        }
    }

    /// An iterator that ends once no record arrives for `idle`: the loop for a program
    /// that should stop when the topic runs dry. A [`WakeupHandle`] ends it too. Leaving
    /// it early consumes only the records it yielded, as [`iter`](Self::iter)'s.
    pub fn iter_until_idle(&mut self, idle: Duration) -> Iter<'_> {
        Iter {
            consumer: self,
            buffer: VecDeque::new(),
            idle_timeout: Some(idle),
        }
    }

    fn part(&self, tp: &TopicPartition) -> Result<&Part> {
        self.parts
            .get(tp)
            .ok_or_else(|| Error::NotAssigned { partition: tp.clone() })
    }

    fn part_mut(&mut self, tp: &TopicPartition) -> Result<&mut Part> {
        self.parts
            .get_mut(tp)
            .ok_or_else(|| Error::NotAssigned { partition: tp.clone() })
    }

    /// The next offset `poll` returns for `tp` (resolving it from the committed offset or
    /// the reset policy if no record was read yet — as in Kafka, with every other partition
    /// that has no position).
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; as [`poll`](Self::poll) for resolving the position.
    pub fn position(&mut self, tp: &TopicPartition) -> Result<u64> {
        if let Some(position) = self.part(tp)?.position {
            return Ok(position);
        }
        self.resolve_positions()?;
        self.part(tp)?
            .position
            .ok_or_else(|| Error::NotAssigned { partition: tp.clone() })
    }

    /// Makes the next `poll` that reads `tp` read it from `offset`. An offset outside the
    /// log is handled then, as Kafka does: by `auto_offset_reset`, or an error if it is
    /// `None`. A poll that fills `max_poll_records` from other partitions first does not
    /// read `tp`; if records reach `offset` before a poll does, the offset is inside the
    /// log by then and is read, not reset.
    ///
    /// # Errors
    /// [`Error::NotAssigned`].
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        self.part_mut(tp)?.move_to(Some(offset));
        Ok(())
    }

    /// Seeks each of `partitions` to its log start offset.
    ///
    /// # Errors
    /// [`Error::NotAssigned`] (no partition is moved then).
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_each(partitions, |log| log.log_start_offset())
    }

    /// Seeks each of `partitions` to its end: the offset the next readable record gets
    /// (Kafka's high watermark; `Buffered` records not yet written are not counted).
    ///
    /// # Errors
    /// [`Error::NotAssigned`] (no partition is moved then).
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_each(partitions, |log| log.visible_end_offset())
    }

    fn seek_each(&mut self, partitions: &[TopicPartition], to: impl Fn(&PartitionLog) -> u64) -> Result<()> {
        for tp in partitions {
            self.part(tp)?;
        }
        for tp in partitions {
            self.part_mut(tp)?.move_to_computed(&to);
        }
        Ok(())
    }

    /// The first readable offset of each partition (Kafka's `beginningOffsets`): its log
    /// start, which retention and `delete_records_before` move up. Any partitions, assigned
    /// or not.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] or [`Error::InvalidPartition`].
    pub fn beginning_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, u64>> {
        self.offsets_of(partitions, |log| {
            // A read-only broker's log start moves with the writer's retention and deletions:
            // a refresh picks it up, as `visible_end_offset` does for the end.
            log.refresh_quietly();
            log.log_start_offset()
        })
    }

    /// The end of each partition (Kafka's `endOffsets`, the high watermark): the offset
    /// the next readable record will get, so a consumer whose position is there has read
    /// everything stored so far. Any partitions, assigned or not.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] or [`Error::InvalidPartition`].
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, ConsumerConfig, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition};
    ///
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(2))?;
    /// let producer = broker.producer(ProducerConfig::default());
    /// producer.send(ProducerRecord::new("orders").partition(1).value("o-1"))?;
    /// let consumer = broker.consumer(ConsumerConfig::default())?;
    /// let all = [TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)];
    /// let ends = consumer.end_offsets(&all)?;
    /// assert_eq!(ends.values().copied().collect::<Vec<_>>(), [0, 1]);
    /// assert_eq!(consumer.beginning_offsets(&all)?.values().copied().collect::<Vec<_>>(), [0, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn end_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, u64>> {
        self.offsets_of(partitions, PartitionLog::visible_end_offset)
    }

    fn offsets_of(
        &self,
        partitions: &[TopicPartition],
        offset: impl Fn(&PartitionLog) -> u64,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        partitions
            .iter()
            .map(|tp| Ok((tp.clone(), offset(&*self.broker.partition_log(tp)?))))
            .collect()
    }

    /// For each partition, the first offset whose timestamp is at or after the given one
    /// (Kafka's `offsetsForTimes`); `None` where every record is older.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] or [`Error::InvalidPartition`]; a read error.
    pub fn offsets_for_times(
        &self,
        timestamps: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Option<u64>>> {
        timestamps
            .iter()
            .map(|(tp, ts)| {
                let log = self.broker.partition_log(tp)?;
                Ok((tp.clone(), log.offset_for_timestamp(*ts)?))
            })
            .collect()
    }

    /// Stops returning records of `partitions` until [`resume`](Self::resume); they stay
    /// assigned and their positions are kept.
    ///
    /// # Errors
    /// [`Error::NotAssigned`] (nothing is paused then).
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.set_paused(partitions, true)
    }

    /// Undoes [`pause`](Self::pause).
    ///
    /// # Errors
    /// [`Error::NotAssigned`] (nothing is resumed then).
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.set_paused(partitions, false)
    }

    fn set_paused(&mut self, partitions: &[TopicPartition], paused: bool) -> Result<()> {
        for tp in partitions {
            self.part(tp)?;
        }
        let signal = Arc::clone(&self.signal);
        for tp in partitions {
            let part = self.part_mut(tp)?;
            if part.paused != paused {
                // A paused partition's appends must not wake a blocked poll.
                if paused {
                    part.log.watchers().remove(&signal);
                } else {
                    part.log.watchers().add(&signal);
                }
            }
            part.paused = paused;
        }
        Ok(())
    }

    /// The paused partitions.
    #[must_use]
    pub fn paused(&self) -> BTreeSet<TopicPartition> {
        self.parts
            .iter()
            .filter(|(_, p)| p.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// The group's committed offset for `tp` (by any member), if any.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a `group_id`.
    pub fn committed(&self, tp: &TopicPartition) -> Result<Option<OffsetAndMetadata>> {
        let group = self.require_group()?;
        Ok(self.broker.offsets().get(group, tp))
    }

    /// How many records of `tp` lie between this consumer's position and the visible end
    /// (visible end − position: Kafka's high watermark minus position, its `records-lag`).
    /// A position below the log start (retention deleted records before they were read,
    /// and the next poll resets it) counts the deleted records too, as Kafka's does.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; as [`position`](Self::position).
    pub fn lag(&mut self, tp: &TopicPartition) -> Result<u64> {
        let position = self.position(tp)?;
        Ok(self.part(tp)?.log.visible_end_offset().saturating_sub(position))
    }

    fn require_group(&self) -> Result<&str> {
        self.group_id().ok_or_else(|| Error::InvalidArgument {
            reason: "committed offsets need a consumer with a group_id".into(),
        })
    }

    /// Commits the position of every assigned partition (what `poll` has returned),
    /// synchronously and atomically. As Kafka's `commitSync`, every position is written,
    /// also one that did not move since the last commit (so a commit stores it again after
    /// an admin deleted or reset the group's offsets); only auto-commit skips unchanged
    /// positions (but commits them again before half of
    /// [`offsets_retention`](crate::BrokerBuilder::offsets_retention) passes, so that a
    /// running consumer's offsets do not expire). Partitions of a deleted topic are left out.
    ///
    /// # Errors
    /// [`Error::CommitFailed`] if the member was evicted or lost a partition (nothing is
    /// committed then); [`Error::RecordTooLarge`] if the commit, one batch of the
    /// committed-offset log (about 50 bytes per partition plus its metadata), passes that
    /// log's batch limit: half of [`offsets_compact_bytes`](crate::BrokerBuilder::offsets_compact_bytes),
    /// at least 64 KiB and at most 1 MiB (nothing is committed then);
    /// [`Error::InvalidArgument`] without a `group_id`; an I/O error;
    /// [`Error::ReadOnly`] on a [read-only broker](Broker::open_read_only);
    /// [`Error::Closed`] after `close`.
    pub fn commit(&mut self) -> Result<()> {
        self.check_open()?;
        self.run_async_callbacks();
        let all: Vec<TopicPartition> = self.parts.keys().cloned().collect();
        let offsets = self.positions(&all, false);
        self.commit_list(&offsets, true, true).map(|_| ())
    }

    /// The auto-commit: commits the positions of `partitions` that changed.
    fn commit_parts(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let offsets = self.positions(partitions, true);
        self.commit_list(&offsets, true, true).map(|_| ())
    }

    /// The positions of `partitions` (those that have one, of a topic not deleted). With
    /// `only_changed`, without those this consumer committed durably that the offset table
    /// still holds (an admin may have deleted or reset them since) — unless, with offsets
    /// retention, that commit is older than half the retention: committed again, it keeps
    /// a running consumer's offsets from expiring, as Kafka's auto-commit (which commits
    /// every position at every interval) does.
    fn positions(&self, partitions: &[TopicPartition], only_changed: bool) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        let group = self.group_id();
        let refresh_before = self.broker.auto_commit_refresh_before();
        partitions
            .iter()
            .filter_map(|tp| {
                let part = self.parts.get(tp)?;
                let position = part.committable(part.position?);
                if part.log.is_deleted() {
                    return None;
                }
                let unchanged = only_changed
                    && part.committed == Some(position)
                    && group.and_then(|g| self.broker.offsets().get(g, tp)).is_some_and(|om| {
                        om.offset == position && refresh_before.is_none_or(|t| om.commit_timestamp >= t)
                    });
                (!unchanged).then(|| (tp.clone(), OffsetAndMetadata::new(position)))
            })
            .collect()
    }

    /// Commits explicit offsets (the next offset to read, with optional metadata) for any
    /// partitions the consumer may commit, atomically. Like [`commit`](Self::commit) (and
    /// Kafka's `commitSync`), it first runs the callbacks of earlier
    /// [`commit_async`](Self::commit_async) calls.
    ///
    /// Offsets are stored as given, as Kafka stores them: one past the partition's log end
    /// too (and it stays past the end across a clean reopen). A consumer that starts from a
    /// committed offset outside the log applies its `auto_offset_reset`; a
    /// [`truncate_to`](PartitionLog::truncate_to) of the partition lowers every committed
    /// offset past the end it leaves to that end.
    ///
    /// # Errors
    /// As [`commit`](Self::commit); [`Error::InvalidArgument`] for metadata over 4,096 bytes;
    /// [`Error::UnknownTopic`] or [`Error::InvalidPartition`] for a partition that does not
    /// exist (nothing is committed then).
    pub fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        self.check_open()?;
        self.run_async_callbacks();
        let list: Vec<(TopicPartition, OffsetAndMetadata)> =
            offsets.iter().map(|(tp, om)| (tp.clone(), om.clone())).collect();
        self.commit_list(&list, true, false).map(|_| ())
    }

    /// Commits the positions as [`commit`](Self::commit) does, without waiting for an
    /// fsync; `callback` gets the outcome on this thread at the next `poll`, `commit`,
    /// `commit_offsets` or `close`, once the commit has the broker's offsets durability.
    pub fn commit_async(&mut self, callback: impl FnOnce(Result<()>) + Send + 'static) {
        let result = self.check_open().and_then(|()| {
            let all: Vec<TopicPartition> = self.parts.keys().cloned().collect();
            let offsets = self.positions(&all, false);
            let end = self.commit_list(&offsets, false, true)?;
            Ok((end, offsets.into_iter().map(|(tp, om)| (tp, om.offset)).collect()))
        });
        self.async_pending.push_back((Box::new(callback), result));
    }

    /// Checks fencing, writes the commit and records what was committed. With `wait`, the
    /// commit has the offsets durability on return; without, the returned log end must be
    /// synced before the commit is reported (see `run_async_callbacks`). `positions` says
    /// `offsets` are the consumer's positions (from [`positions`](Self::positions)), which
    /// a commit never stores past the end a truncation left (see [`Part::committable`]);
    /// the application's explicit offsets are stored as given.
    fn commit_list(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        wait: bool,
        positions: bool,
    ) -> Result<u64> {
        let group = self.require_group()?.to_owned();
        if offsets.is_empty() {
            return Ok(0);
        }
        // The fencing check and the write happen under the group's lock, so no rebalance,
        // eviction or join can slip in between.
        let parts = &self.parts;
        let valid = |tp: &TopicPartition, offset: u64| {
            self.broker.check_partition(tp)?;
            // Positions read before a truncation this consumer has not polled since, and
            // written after it lowered the group's commits past its end (it takes the
            // offsets lock this runs under), would be past that end: capped here again.
            Ok(match parts.get(tp) {
                Some(part) if positions => part.committable(offset),
                _ => offset,
            })
        };
        let counts = |t: &str| self.broker.partition_count(t);
        let end = match &self.subscription {
            Some(sub) => sub.member.group.commit_fenced(
                &sub.member.member_id,
                offsets,
                self.broker.offsets(),
                &valid,
                &counts,
            )?,
            None => {
                self.broker
                    .coordinator()
                    .commit_standalone(&group, offsets, self.broker.offsets(), &valid, &counts)?
            }
        };
        if wait {
            self.broker.offsets().wait_durable(end)?;
            self.mark_committed(offsets.iter().map(|(tp, om)| (tp, om.offset)));
        }
        Ok(end)
    }

    fn mark_committed<'a>(&mut self, offsets: impl Iterator<Item = (&'a TopicPartition, u64)>) {
        for (tp, offset) in offsets {
            if let Some(part) = self.parts.get_mut(tp) {
                part.committed = Some(offset);
            }
        }
    }

    /// Gives the `commit_async` commits written so far the offsets durability, which puts
    /// them in the offset table (`Synced` offsets reach it only then), without running their
    /// callbacks: called before partitions go to another member, which starts at the
    /// committed offsets — so a `commit_async` in `on_partitions_revoked` counts as a
    /// commit there does. A failure is left to the callbacks, which wait again.
    fn await_async_commits(&self) {
        let end = self
            .async_pending
            .iter()
            .filter_map(|(_, result)| result.as_ref().ok().map(|(end, _)| *end))
            .max();
        if let Some(end) = end
            && let Err(e) = self.broker.offsets().wait_durable(end)
        {
            tracing::debug!(error = %e, "syncing commit_async commits before a hand-over failed");
        }
    }

    fn run_async_callbacks(&mut self) {
        while let Some((callback, result)) = self.async_pending.pop_front() {
            let outcome = result.and_then(|(end, offsets)| {
                self.broker.offsets().wait_durable(end)?;
                // Only now is the commit durable: auto-commits may skip these positions.
                self.mark_committed(offsets.iter().map(|(tp, o)| (tp, *o)));
                Ok(())
            });
            callback(outcome);
        }
    }

    fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || self.config.group_id.is_none() {
            return;
        }
        if self.last_auto_commit.elapsed() < self.config.auto_commit_interval {
            return;
        }
        self.last_auto_commit = Instant::now();
        let all: Vec<TopicPartition> = self.parts.keys().cloned().collect();
        if let Err(e) = self.commit_parts(&all) {
            tracing::warn!(error = %e, "auto-commit failed");
        }
    }

    /// Runs pending `commit_async` callbacks and leaves the group as
    /// [`unsubscribe`](Self::unsubscribe) does: commits first if auto-commit is on, then runs
    /// the listener's `on_partitions_revoked` for the partitions it owns (as Kafka's
    /// `close`), and then the callbacks of `commit_async` calls that listener made.
    /// Dropping the consumer does the same, except while the thread unwinds from a panic
    /// (then neither the commit nor the listener runs).
    ///
    /// # Errors
    /// The error of the final auto-commit, if it failed (the consumer is closed anyway).
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.run_async_callbacks();
        let result = self.release_all();
        // The revoke listener may have called `commit_async`: no later call will report it.
        self.run_async_callbacks();
        self.closed = true;
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // A panic of the rebalance listener is logged, not raised from `drop` (the consumer
        // has left its group by then).
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.shutdown())) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "closing a consumer failed"),
            Err(_) => tracing::error!("the rebalance listener panicked while the consumer was dropped"),
        }
    }
}

/// Reads records of one partition from `position` into `out` until it holds `max`: first
/// from the batches an earlier poll kept ([`Part::take_fetched`]), then, if they run out
/// first, from the log. What this poll leaves of the batches goes back to the part for the
/// next one. Returns the next position; on error `out` may hold part of the partition's
/// records (the caller drops them).
///
/// A batch taken whole is parsed once, when the application iterates: the read verified its
/// CRC-32, and every batch that passes it was written by brooklet's encoder (or survived
/// recovery's full parse), so its records parse. Only with `verify_checksums(false)` is
/// each batch parsed here first. A partly taken batch is walked record by record to find
/// its range, reading only each record's length and deltas. (A batch forged with a
/// matching CRC but unparsable records would be cut short during iteration, with an error
/// logged: never a panic, never garbage.)
fn fetch_partition(
    part: &mut Part,
    partition: u32,
    position: u64,
    max_bytes: usize,
    max: usize,
    spare: &mut SpareBuffer,
    out: &mut ConsumerRecords,
) -> Result<u64> {
    let crc_checked = part.log.config().verify_checksums;
    let mut kept = part.take_fetched(position);
    let mut next = kept.take(&part.topic, partition, position, max, crc_checked, out)?;
    if kept.batches.is_empty() && out.len < max {
        let epoch = part.log.truncation_epoch();
        kept = match part.log.read_into(next, max_bytes, spare) {
            Ok(read) => Kept {
                batches: read.into(),
                resume: None,
            },
            // The kept records come first, as from a read of them that stopped before the
            // failure; the next poll reads at `next` and reports it (else they would be
            // dropped with an error that is not theirs, or a reset moving from `position`).
            Err(_) if next > position => return Ok(next),
            Err(e) => return Err(e),
        };
        next = kept.take(&part.topic, partition, next, max, crc_checked, out)?;
        part.fetched_epoch = epoch;
    }
    // A read-only log's files are another process's, which may truncate them unseen here:
    // its batches are read afresh each poll.
    if !part.log.is_read_only() {
        part.fetched = kept;
    }
    Ok(next)
}

impl Kept {
    /// Moves the records of the batches from offset `next` on into `out`, front batch first,
    /// until it holds `max`; a batch not taken to its end stays at the front, with where it
    /// goes on in `resume`. Returns the offset after the last record taken.
    fn take(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        mut next: u64,
        max: usize,
        crc_checked: bool,
        out: &mut ConsumerRecords,
    ) -> Result<u64> {
        while out.len < max {
            let Some(batch) = self.batches.pop_front() else { break };
            let batch_end = batch.last_offset().saturating_add(1);
            if batch_end <= next {
                continue;
            }
            let whole = batch.record_count() as usize;
            let resumed = self
                .resume
                .take()
                .filter(|(at, _)| *at == next && batch.base_offset() < next);
            if !crc_checked {
                batch.check_records()?;
            }
            let (from, start, count) = if batch.base_offset() >= next && out.len + whole <= max {
                next = batch_end;
                (batch.base_offset(), None, whole)
            } else {
                // From where the last poll stopped in this batch, else from its first record,
                // reading only each record's length and deltas: the records are parsed when
                // iterated, as those of a batch returned whole are.
                let mut records = batch.offsets(resumed.map(|(_, at)| at));
                let (mut first, mut count) = (None, 0usize);
                loop {
                    let at = records.cursor();
                    let Some(offset) = records.next() else { break };
                    let offset = offset?;
                    if offset < next {
                        continue;
                    }
                    first.get_or_insert((offset, at));
                    count += 1;
                    next = offset + 1;
                    if out.len + count >= max {
                        break;
                    }
                }
                if out.len + count < max {
                    next = next.max(batch_end);
                }
                if next < batch_end {
                    self.resume = Some((next, records.cursor()));
                }
                match first {
                    Some((offset, at)) => (offset, Some(at), count),
                    None => (next, None, 0),
                }
            };
            let rest = (next < batch_end).then(|| batch.clone());
            if count > 0 {
                out.chunks.push(Chunk {
                    topic: Arc::clone(topic),
                    partition,
                    batch,
                    from,
                    start,
                    count,
                });
                out.len += count;
            }
            if let Some(rest) = rest {
                self.batches.push_front(rest);
                break;
            }
        }
        Ok(next)
    }
}

/// Handles a partition's fetch error: an out-of-range position past the end a truncation
/// left moves back to it (a read-only log learns of its writer's truncations in the read);
/// another out-of-range position is reset by `policy` (and is no error); anything else is
/// returned. `Latest` is the visible end, as when a position
/// is first resolved: the error's end is the log end, which counts `Buffered` records not
/// readable yet, and resetting there would skip them.
fn handle_fetch_error(e: Error, tp: &TopicPartition, part: &mut Part, policy: OffsetReset) -> Option<Error> {
    // A read-only log learns of its writer's truncations in a read: a position past the end
    // one left moves back to it (or fails with `LogTruncated`), as before a read.
    if let Error::OffsetOutOfRange { requested, .. } = e {
        match part.check_cuts(tp, requested, policy) {
            Ok(to) if to < requested => return None,
            Err(truncated) => return Some(truncated),
            Ok(_) => {}
        }
    }
    match e {
        Error::OffsetOutOfRange {
            requested, start, end, ..
        } if policy == OffsetReset::None => Some(Error::OffsetOutOfRange {
            requested,
            start,
            end,
            partition: Some(tp.clone()),
        }),
        Error::OffsetOutOfRange { requested, start, .. } => {
            let to = part.move_to_computed(|log| match policy {
                OffsetReset::Latest => log.visible_end_offset(),
                _ => start,
            });
            tracing::warn!(partition = %tp, requested, reset_to = to, "position out of range; resetting");
            None
        }
        e => Some(e),
    }
}

fn reset(policy: OffsetReset, start: u64, end: u64) -> Option<u64> {
    match policy {
        OffsetReset::Earliest => Some(start),
        OffsetReset::Latest => Some(end),
        OffsetReset::None => None,
    }
}

/// The iterator of [`Consumer::iter`] and [`Consumer::iter_until_idle`]. Dropping it moves
/// the positions back to the first record of the last poll it did not yield.
#[derive(Debug)]
pub struct Iter<'a> {
    consumer: &'a mut Consumer,
    buffer: VecDeque<ConsumerRecord>,
    idle_timeout: Option<Duration>,
}

impl Drop for Iter<'_> {
    /// The records of the last poll that were not yielded were not consumed: each
    /// partition's position goes back to the first of them.
    fn drop(&mut self) {
        let mut first: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for record in &self.buffer {
            first.entry(record.topic_partition()).or_insert(record.offset());
        }
        for (tp, offset) in first {
            if let Some(part) = self.consumer.parts.get_mut(&tp) {
                part.rewind(offset);
            }
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<ConsumerRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Some(Ok(r));
            }
            let timeout = self.idle_timeout.unwrap_or(Duration::from_secs(3600));
            match self.consumer.poll(timeout) {
                Ok(records) if records.is_empty() && self.idle_timeout.is_some() => return None,
                Ok(records) => self.buffer.extend(records),
                Err(Error::Wakeup) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProducerConfig, ProducerRecord, TopicConfig};

    /// A group whose last member left without committing anything is forgotten by the
    /// coordinator, as Kafka drops an empty group without offsets: an application that makes
    /// a group per session (as Kafka's console consumer does) grew the coordinator's map by
    /// one entry per group for good, though no listing showed them. A group with offsets
    /// stays, to tell offsets retention when it emptied.
    #[test]
    fn an_empty_group_without_offsets_is_forgotten() -> Result<()> {
        let broker = Broker::temporary()?;
        broker.create_topic("t", TopicConfig::with_partitions(1))?;
        for i in 0..30 {
            let group = format!("session-{i}");
            let mut c = broker.consumer(ConsumerConfig::group(&group).enable_auto_commit(false))?;
            c.subscribe(&["t"])?;
            c.poll(Duration::from_millis(1))?;
            match i % 3 {
                0 => c.close()?,
                1 => c.unsubscribe(),
                _ => drop(c),
            }
            assert!(broker.coordinator().existing(&group).is_none(), "{group} is still held");
        }
        let mut a = broker.consumer(ConsumerConfig::group("shared").enable_auto_commit(false))?;
        let mut b = broker.consumer(ConsumerConfig::group("shared").enable_auto_commit(false))?;
        a.subscribe(&["t"])?;
        b.subscribe(&["t"])?;
        a.close()?;
        assert!(
            broker.coordinator().existing("shared").is_some(),
            "forgotten with a member"
        );
        b.close()?;
        assert!(broker.coordinator().existing("shared").is_none());
        // Auto-commit at close commits the position: the group has offsets and stays.
        let mut kept = broker.consumer(ConsumerConfig::group("kept"))?;
        kept.subscribe(&["t"])?;
        kept.poll(Duration::from_millis(1))?;
        kept.close()?;
        assert_eq!(
            broker
                .committed_offset("kept", &TopicPartition::new("t", 0))
                .map(|o| o.offset),
            Some(0)
        );
        assert!(broker.coordinator().existing("kept").is_some());
        Ok(())
    }

    /// A commit whose positions were read before a truncation and written after the
    /// truncation lowered the group's commits (the truncation ran on another thread
    /// between the two steps of `commit`) stores the end the cut left, not the position
    /// past it: the group resumes there and reads the records sent next. It used to store
    /// the position, past the cut, and the group skipped them.
    #[test]
    fn a_commit_of_positions_read_before_a_truncation_is_capped_at_the_cut() -> Result<()> {
        let broker = Broker::temporary()?;
        broker.create_topic("t", TopicConfig::with_partitions(1))?;
        let tp = TopicPartition::new("t", 0);
        let producer = broker.producer(ProducerConfig::default());
        for i in 0..10 {
            producer.send(ProducerRecord::new("t").partition(0).value(format!("v{i}")))?;
        }
        let mut c = broker.consumer(
            ConsumerConfig::group("g")
                .auto_offset_reset(OffsetReset::Earliest)
                .enable_auto_commit(false),
        )?;
        c.assign(std::slice::from_ref(&tp))?;
        let mut read = 0;
        while read < 10 {
            read += c.poll(Duration::from_millis(100))?.len();
        }
        let offsets = c.positions(std::slice::from_ref(&tp), false);
        assert_eq!(offsets, [(tp.clone(), OffsetAndMetadata::new(10))]);
        assert_eq!(broker.partition_log(&tp)?.truncate_to(5)?, 5);
        c.commit_list(&offsets, true, true)?;
        assert_eq!(broker.committed_offset("g", &tp).map(|o| o.offset), Some(5));
        Ok(())
    }
}
