//! [`Broker`]: one data directory of topics, each a set of partition logs.
//!
//! # Directory
//! ```text
//! DATA/
//!   LOCK                        exclusive lock (File::try_lock) while a Broker has it open
//!   meta/topics                 the topic table (format below), replaced atomically
//!   offsets/                    the committed-offset table (see the `offsets` module)
//!   <topic>-<partition>/        one PartitionLog each (see PartitionLog)
//! ```
//!
//! # `meta/topics` format
//! ```text
//! pos  size  field
//!   0     4  magic     b"BRKM"
//!   4     2  version   u16 = 2
//!   6     2  reserved, 0
//!   8     4  length    u32: bytes of payload
//!  12     4  crc       CRC-32 of the payload
//!  16     …  payload   bincode 2 (standard config) of the topic list
//! ```
//! Each entry of the list: name, partition count, the settings, and (from version 2) the
//! topic's [`TopicId`]. A version 1 table (no ids) is read with every id unknown; a writable
//! open gives its topics ids and writes the table as version 2 — one way: a build from
//! before topic ids refuses the directory from then on (`UnsupportedVersion`).
//! Little-endian. The file is replaced atomically (tmp, fdatasync, rename, directory
//! fsync), so after a crash it holds the topic table before or after the change, never a mix.
//! Creating a topic writes the table after its partition directories exist (and after any
//! committed offsets left under its name are deleted, the deletion synced whatever the
//! offsets durability); deleting one writes the table before removing them and its
//! committed offsets; open removes partition directories and
//! committed offsets of partitions the table does not name (the leftovers of an
//! interrupted create or delete), so a recreated topic never inherits the old one's offsets.
//! A directory without a table is new: open refuses one holding a directory named like a
//! partition, which cannot be a leftover.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::config::{Durability, LogConfig};
use crate::error::{Error, Result};
use crate::group::coordinator::Coordinator;
use crate::offsets::{DEFAULT_COMPACT_BYTES, OffsetStore};
use crate::record::TimestampType;
use crate::storage::checkpoint;
use crate::storage::io::{OsFs, Vfs};
use crate::storage::log::{CutHook, DirLock, LOG_START_FILE, RECOVERY_POINT_FILE, lock_dir};
use crate::storage::retention::{RetentionChecker, Stopping};
use crate::topic::{CleanupPolicy, TopicConfig, TopicId, validate_topic_name};
use crate::{PartitionLog, TopicPartition};

const META_DIR: &str = "meta";
const TOPICS_FILE: &str = "topics";
const META_MAGIC: &[u8; 4] = b"BRKM";
const META_VERSION: u16 = 2;
/// The versions of `meta/topics` this build reads: 1 had no topic ids.
const META_VERSIONS: [u16; 2] = [1, META_VERSION];
/// Largest topic table read; far above any real one (10,000 topics of long names).
const MAX_META_BYTES: u64 = 64 << 20;

/// A topic as stored in `meta/topics`: plain values, so the file format does not follow
/// changes to the public config types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredTopic {
    #[serde(deserialize_with = "checkpoint::owned_str")]
    pub(crate) name: String,
    partitions: u32,
    segment_bytes: u64,
    segment_ms: Option<u64>,
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
    max_message_bytes: u32,
    /// 0 CreateTime, 1 LogAppendTime.
    timestamp_type: u8,
    /// 0 Delete, 1 Compact.
    cleanup_policy: u8,
    /// [`TopicId::UNKNOWN`]'s 0 for a topic read from a version 1 table.
    id: u128,
}

/// A topic as a version 1 table stored it: [`StoredTopic`] without the id.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StoredTopicV1 {
    #[serde(deserialize_with = "checkpoint::owned_str")]
    name: String,
    partitions: u32,
    segment_bytes: u64,
    segment_ms: Option<u64>,
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
    max_message_bytes: u32,
    timestamp_type: u8,
    cleanup_policy: u8,
}

impl From<StoredTopicV1> for StoredTopic {
    fn from(t: StoredTopicV1) -> Self {
        StoredTopic {
            name: t.name,
            partitions: t.partitions,
            segment_bytes: t.segment_bytes,
            segment_ms: t.segment_ms,
            retention_bytes: t.retention_bytes,
            retention_ms: t.retention_ms,
            max_message_bytes: t.max_message_bytes,
            timestamp_type: t.timestamp_type,
            cleanup_policy: t.cleanup_policy,
            id: TopicId::UNKNOWN.as_u128(),
        }
    }
}

fn millis(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl StoredTopic {
    fn new(name: &str, id: TopicId, config: &TopicConfig) -> Self {
        StoredTopic {
            id: id.as_u128(),
            name: name.to_owned(),
            partitions: config.partitions,
            segment_bytes: config.segment_bytes,
            segment_ms: millis(config.segment_ms),
            retention_bytes: config.retention_bytes,
            retention_ms: millis(config.retention_ms),
            max_message_bytes: config.max_message_bytes,
            timestamp_type: u8::from(config.timestamp_type == TimestampType::LogAppendTime),
            cleanup_policy: u8::from(config.cleanup_policy == CleanupPolicy::Compact),
        }
    }

    /// The topic's configuration, as open gives it to the topic.
    pub(crate) fn config(&self) -> TopicConfig {
        TopicConfig::with_partitions(self.partitions)
            .segment_bytes(self.segment_bytes)
            .segment_ms(self.segment_ms.map(Duration::from_millis))
            .retention_bytes(self.retention_bytes)
            .retention_ms(self.retention_ms.map(Duration::from_millis))
            .max_message_bytes(self.max_message_bytes)
            .timestamp_type(if self.timestamp_type == 1 {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            })
            .cleanup_policy(if self.cleanup_policy == 1 {
                CleanupPolicy::Compact
            } else {
                CleanupPolicy::Delete
            })
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_META_BYTES as usize }>()
}

/// The bytes of a `meta/topics` file listing `topics`.
pub(crate) fn encode_topics(topics: &[StoredTopic]) -> Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(topics, bincode_config()).map_err(|e| Error::InvalidArgument {
        reason: format!("cannot encode the topic table: {e}"),
    })?;
    Ok(checkpoint::frame(META_MAGIC, META_VERSION, &payload))
}

/// A topic table's payload framed as a `meta/topics` file: for the fuzz targets, which
/// cannot compute the checksum themselves, to reach the payload decoder.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn frame_topics(payload: &[u8]) -> Vec<u8> {
    checkpoint::frame(META_MAGIC, META_VERSION, payload)
}

/// Decodes a `meta/topics` file's bytes (`path` names it in errors); a version 1 table's
/// topics come with [`TopicId::UNKNOWN`].
pub(crate) fn decode_topics(path: &Path, bytes: &[u8]) -> Result<Vec<StoredTopic>> {
    let (version, payload) = checkpoint::unframe(path, bytes, META_MAGIC, &META_VERSIONS)?;
    let corrupt = |e: bincode::error::DecodeError| {
        Error::corrupt(
            path,
            checkpoint::FRAME_HEADER as u64,
            format!("cannot decode the topic table: {e}"),
        )
    };
    let (topics, used): (Vec<StoredTopic>, usize) = if version == 1 {
        let (v1, used): (Vec<StoredTopicV1>, usize) =
            bincode::serde::decode_from_slice(payload, bincode_config()).map_err(corrupt)?;
        (v1.into_iter().map(StoredTopic::from).collect(), used)
    } else {
        bincode::serde::decode_from_slice(payload, bincode_config()).map_err(corrupt)?
    };
    if used != payload.len() {
        return Err(Error::corrupt(path, 0, "trailing bytes after the topic table"));
    }
    Ok(topics)
}

/// One open topic: its configuration and its partition logs.
#[derive(Debug)]
pub(crate) struct Topic {
    pub name: String,
    pub id: TopicId,
    /// Replaced by [`Broker::alter_topic_config`]; its partition count is the one the topic
    /// was created with (`partitions` holds the current one).
    config: RwLock<TopicConfig>,
    /// Grown only through [`add_partitions`](Topic::add_partitions).
    partitions: RwLock<Vec<Arc<PartitionLog>>>,
    /// `partitions.len()`, read without the lock by every send that routes a record.
    count: AtomicU32,
}

impl Topic {
    pub fn partition(&self, partition: u32) -> Result<Arc<PartitionLog>> {
        let partitions = self.partitions.read();
        partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| Error::InvalidPartition {
                topic: self.name.clone(),
                partition,
                partitions: partitions.len() as u32,
            })
    }

    pub fn partition_count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// The topic's settings now, with its current partition count.
    pub fn config(&self) -> TopicConfig {
        self.config.read().clone().partition_count(self.partition_count())
    }

    /// Every partition's log, in order.
    pub fn partition_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.partitions.read().clone()
    }

    fn new(name: String, id: TopicId, config: TopicConfig, logs: Vec<Arc<PartitionLog>>) -> Topic {
        Topic {
            name,
            id,
            config: RwLock::new(config),
            count: AtomicU32::new(logs.len() as u32),
            partitions: RwLock::new(logs),
        }
    }

    fn add_partitions(&self, logs: Vec<Arc<PartitionLog>>) {
        let mut partitions = self.partitions.write();
        partitions.extend(logs);
        // Published after the logs: a sender that sees the new count finds its log.
        self.count.store(partitions.len() as u32, Ordering::Release);
    }
}

/// Per-partition facts, from [`Broker::describe_topic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition number.
    pub partition: u32,
    /// First offset still stored.
    pub log_start_offset: u64,
    /// Offset the next record will get (Kafka's log end offset). It counts `Buffered`
    /// records still in the partition's write buffer, which consumers cannot read yet:
    /// [`Consumer::end_offsets`](crate::Consumer::end_offsets) and group lag use the
    /// readable end, as Kafka's consumers use the high watermark.
    pub log_end_offset: u64,
    /// Bytes of its segment files.
    pub size_bytes: u64,
}

/// A topic's configuration and partitions, from [`Broker::describe_topic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// The id of this creation of the topic ([`TopicId::UNKNOWN`] on a read-only broker of
    /// a directory whose table predates ids).
    pub id: TopicId,
    /// Its configuration (`partitions` is the current count).
    pub config: TopicConfig,
    /// One entry per partition, in order.
    pub partitions: Vec<PartitionDescription>,
}

/// Builds a [`Broker`] with non-default settings.
///
/// # Examples
/// ```
/// use brooklet::{Broker, TopicConfig};
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::builder().auto_create_topics(Some(TopicConfig::with_partitions(3))).open(dir.path())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BrokerBuilder {
    auto_create: Option<TopicConfig>,
    vfs: Arc<dyn Vfs>,
    offsets_durability: Durability,
    offsets_compact_bytes: u64,
    retention_check_interval: Option<Duration>,
    offsets_retention: Option<Duration>,
    damage_policy: DamagePolicy,
    mapped_writes: bool,
}

/// What [`BrokerBuilder::open`] does with a partition whose open finds damage: records that
/// were synced (below its recovery point) no longer read back as written — a bit flip, a
/// lost block, a cut file. See `RELIABILITY.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DamagePolicy {
    /// The open fails with the damage's [`Error::Corrupt`] (which names the file, the byte,
    /// the first lost offset and the way out), and nothing is cut: the default, as a
    /// database refuses to start on a damaged log rather than serve it.
    #[default]
    FailOpen,
    /// The broker opens, and each damaged partition is *offline* (as a Kafka partition
    /// whose log directory failed): its records read back up to the damage (a read there
    /// is the damage's error; a consumer's poll reports it once, then has nothing from that
    /// partition until a seek, while its other partitions go on), every write to it — a send routed there, `truncate_to`,
    /// `delete_records_before`, retention — fails with the damage's error, and its files
    /// stay as they are. The other partitions work as ever. [`Broker::damaged_partitions`] lists them;
    /// the way back is the error's (accept the loss, and reopen), or deleting the topic. A
    /// partition with no segment file left at all cannot be read and still fails the open.
    Offline,
}

/// Kafka's `log.retention.check.interval.ms` default: 5 minutes.
const DEFAULT_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(300);

impl Default for BrokerBuilder {
    fn default() -> Self {
        BrokerBuilder {
            auto_create: None,
            vfs: Arc::new(OsFs),
            offsets_durability: Durability::Written,
            offsets_compact_bytes: DEFAULT_COMPACT_BYTES,
            retention_check_interval: Some(DEFAULT_RETENTION_CHECK_INTERVAL),
            offsets_retention: None,
            damage_policy: DamagePolicy::FailOpen,
            mapped_writes: false,
        }
    }
}

impl BrokerBuilder {
    /// Create unknown topics on first use with this configuration (Kafka's
    /// `auto.create.topics.enable`). Default = `None`: sending to an unknown topic is an
    /// [`Error::UnknownTopic`].
    #[must_use]
    pub fn auto_create_topics(mut self, config: Option<TopicConfig>) -> Self {
        self.auto_create = config;
        self
    }

    /// Do all partition and metadata I/O through `vfs` (e.g. a
    /// [`FaultFs`](crate::io::FaultFs) in tests). Default = the OS file system.
    #[must_use]
    pub fn vfs(mut self, vfs: Arc<dyn Vfs>) -> Self {
        self.vfs = vfs;
        self
    }

    /// How durable a consumer's commit is before it returns. Default =
    /// [`Durability::Written`] (survives a crash of the process; a commit costs a few
    /// microseconds). [`Durability::Synced`] survives power loss; concurrent commits share
    /// fsyncs.
    #[must_use]
    pub fn offsets_durability(mut self, durability: Durability) -> Self {
        self.offsets_durability = durability;
        self
    }

    /// How much the committed-offset log grows before it is snapshotted and its old
    /// segments deleted; the table's footprint on disk stays below about twice this plus
    /// one snapshot. Default = 16 MiB. At least 64 KiB.
    #[must_use]
    pub fn offsets_compact_bytes(mut self, bytes: u64) -> Self {
        self.offsets_compact_bytes = bytes;
        self
    }

    /// How often a thread of the broker applies retention (`retention.ms`, `retention.bytes`)
    /// to every partition, as Kafka's `log.retention.check.interval.ms`. An append applies it
    /// at each segment roll; this check is what deletes the expired segments of a partition
    /// nobody writes to any more. Default = 5 minutes (Kafka's). `None`: no thread; retention
    /// runs only at rolls and when [`PartitionLog::enforce_retention`] is called. The thread
    /// stops when the last clone of the broker is dropped. As in Kafka's checks, a partition
    /// whose newest record is older than `retention.ms` is emptied (its active segment too);
    /// its offsets go on from where they were.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use brooklet::Broker;
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::builder().retention_check_interval(Some(Duration::from_secs(30))).open(dir.path())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn retention_check_interval(mut self, interval: Option<Duration>) -> Self {
        self.retention_check_interval = interval;
        self
    }

    /// How long a consumer group stays empty before its committed offsets are deleted
    /// (Kafka's `offsets.retention.minutes`): checked by the retention thread (see
    /// [`retention_check_interval`](Self::retention_check_interval)), counted from when its
    /// last member left or was evicted, or, for a group no member joined since the broker
    /// opened (one that only `assign` consumers commit for, or one from before a restart),
    /// from its newest commit. A group with members keeps its offsets however old they are,
    /// and so does an `assign` consumer with auto-commit that keeps polling: its auto-commit
    /// commits a position that did not move again once half the retention has passed.
    /// Default = `None`: offsets are kept until [`delete_group`](Broker::delete_group), as
    /// an embedded log keeps what it was given until told otherwise (Kafka's default is 7
    /// days; a consumer of an expired group starts from `auto_offset_reset`).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use brooklet::Broker;
    /// let dir = tempfile::tempdir()?;
    /// let week = Duration::from_secs(7 * 24 * 3600);
    /// let broker = Broker::builder().offsets_retention(Some(week)).open(dir.path())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn offsets_retention(mut self, retention: Option<Duration>) -> Self {
        self.offsets_retention = retention;
        self
    }

    /// What open does with a damaged partition; see [`DamagePolicy`]. Default =
    /// [`DamagePolicy::FailOpen`].
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, DamagePolicy};
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::builder().damage_policy(DamagePolicy::Offline).open(dir.path())?;
    /// assert!(broker.damaged_partitions().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn damage_policy(mut self, policy: DamagePolicy) -> Self {
        self.damage_policy = policy;
        self
    }

    /// Writes every partition's active segment through a shared memory map
    /// ([`LogConfig::mapped_writes`]): sends of one small record at a time make no system
    /// call. Default = `false`. Read that setting's trade-off first: a writable map turns
    /// some disk failures, and another process shrinking a segment file, into `SIGBUS`.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, ProducerConfig, ProducerRecord, TopicConfig};
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::builder().mapped_writes(true).open(dir.path())?;
    /// broker.create_topic("clicks", TopicConfig::with_partitions(1))?;
    /// let producer = broker.producer(ProducerConfig::default());
    /// let sent = producer.send(ProducerRecord::new("clicks").value("one"))?;
    /// assert_eq!(sent.offset, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn mapped_writes(mut self, mapped: bool) -> Self {
        self.mapped_writes = mapped;
        self
    }

    /// Opens (or creates) the data directory `dir`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad auto-create config or offsets setting, or a zero
    /// `retention_check_interval` or `offsets_retention`; [`Error::Locked`] if another
    /// broker has the directory open; [`Error::Io`] if it cannot be read or created;
    /// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] for an unreadable topic table,
    /// or `Corrupt` for a missing one in a directory holding a subdirectory named like a
    /// partition (`<topic>-<number>`), which open would otherwise take for a leftover and
    /// remove; any error of opening a partition log (with [`DamagePolicy::Offline`], a
    /// partition's damage leaves it offline instead).
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Broker> {
        Broker::open_inner(dir.as_ref(), self, None)
    }
}

#[derive(Debug)]
struct BrokerInner {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    auto_create: Option<TopicConfig>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Consumer groups: membership and assignment (in memory).
    coordinator: Coordinator,
    /// Committed offsets (durable).
    offsets: OffsetStore,
    /// Serializes admin changes and the topic table writes.
    admin: Mutex<()>,
    /// [`BrokerBuilder::offsets_retention`] (`None` on a read-only broker, which expires
    /// nothing).
    offsets_retention: Option<Duration>,
    /// Opened with [`Broker::open_read_only`]: no lock, every write refused.
    read_only: bool,
    /// [`BrokerBuilder::mapped_writes`], for every partition log it opens.
    mapped_writes: bool,
    _lock: Option<DirLock>,
    /// Kept last: dropped after the partitions, so their clean close finds the directory.
    _temp: Option<tempfile::TempDir>,
}

impl BrokerInner {
    /// The log configuration of a partition of a topic with `config`, with this broker's
    /// own settings for its partition logs ([`BrokerBuilder::mapped_writes`]).
    fn log_config(&self, config: &TopicConfig) -> LogConfig {
        config.log_config().mapped_writes(self.mapped_writes)
    }
}

/// An open data directory of topics. Cheap to clone (`Arc` inside), `Send + Sync`:
/// producers and consumers made from it may live on any thread.
///
/// Dropping the last clone closes every partition cleanly; [`close`](Self::close) does the
/// same and returns what failed.
///
/// # Examples
/// ```
/// use brooklet::{Broker, TopicConfig};
/// let broker = Broker::temporary()?; // a real broker in a temp dir, deleted on drop
/// broker.create_topic("orders", TopicConfig::with_partitions(3))?;
/// assert_eq!(broker.list_topics(), ["orders"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Broker {
    /// Declared before `inner`, so dropped first: the last handle stops and joins the
    /// retention thread (which may hold `inner` during a pass) before the directory closes.
    _retention: Option<Arc<RetentionChecker>>,
    inner: Arc<BrokerInner>,
}

impl Broker {
    /// Opens (or creates) the data directory `dir` with default settings.
    ///
    /// # Errors
    /// As [`BrokerBuilder::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Broker> {
        BrokerBuilder::default().open(dir)
    }

    /// Opens the data directory `dir` for reading only, while an application may hold it
    /// (and write to it) in another process: the way to inspect a live directory, as the
    /// `brooklet` command-line tool does.
    ///
    /// It takes no lock, runs no recovery and writes nothing (no directory, file, checkpoint
    /// or marker is created, changed or removed). The topic table and the committed offsets
    /// are read as they are at open ([`refresh_topics`](Self::refresh_topics) reads the
    /// table again, for topics, partitions and settings changed since;
    /// [`refresh_offsets`](Self::refresh_offsets) the offsets, for commits since); each partition serves only complete, checksum-valid batches and picks up new
    /// ones as the writer appends them (see [`PartitionLog::open_read_only`]); where the
    /// writer closed cleanly and the batches stop being valid before the end it recorded,
    /// a read there is [`Error::Corrupt`], not a shorter log. A consumer on
    /// it follows a live topic like `tail -f`: as no append in this process can wake it,
    /// its `poll` re-checks the files every 50 ms while it waits.
    ///
    /// Every write — creating, growing or deleting a topic, sending, committing, resetting or
    /// deleting a group — fails with [`Error::ReadOnly`]. Consumer groups still coordinate
    /// members of this process in memory, but cannot commit.
    ///
    /// # Errors
    /// [`Error::Io`] if `dir` holds no readable topic table (it is not a data directory) or a
    /// partition cannot be read; [`Error::Corrupt`] or [`Error::UnsupportedVersion`] for an
    /// unreadable topic table or offsets snapshot.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, Error, ProducerConfig, ProducerRecord, TopicConfig};
    /// let dir = tempfile::tempdir()?;
    /// let writer = Broker::open(dir.path())?;
    /// writer.create_topic("orders", TopicConfig::with_partitions(1))?;
    /// let reader = Broker::open_read_only(dir.path())?; // no lock: works beside the writer
    /// writer.producer(ProducerConfig::default()).send(ProducerRecord::new("orders").value("o-1"))?;
    /// assert_eq!(reader.describe_topic("orders")?.partitions[0].log_end_offset, 1);
    /// assert!(matches!(reader.delete_topic("orders"), Err(Error::ReadOnly { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Broker> {
        let dir = dir.as_ref();
        let vfs: Arc<dyn Vfs> = Arc::new(OsFs);
        let stored = read_existing_table(&*vfs, &dir.join(META_DIR).join(TOPICS_FILE))?;
        let topics = open_topics(dir, &stored, |path, config| {
            PartitionLog::open_read_only_with_vfs(path, config, Arc::clone(&vfs))
        })?;
        let offsets = OffsetStore::open_read_only(dir, Arc::clone(&vfs))?;
        Ok(Broker {
            _retention: None,
            inner: Arc::new(BrokerInner {
                dir: dir.to_path_buf(),
                vfs,
                auto_create: None,
                topics: RwLock::new(topics),
                coordinator: Coordinator::default(),
                offsets,
                admin: Mutex::new(()),
                offsets_retention: None,
                read_only: true,
                mapped_writes: false,
                _lock: None,
                _temp: None,
            }),
        })
    }

    /// Whether the broker was opened with [`open_read_only`](Self::open_read_only).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// `Err(ReadOnly)` for a read-only broker.
    pub(crate) fn check_writable(&self, what: impl FnOnce() -> String) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::ReadOnly { what: what() });
        }
        Ok(())
    }

    /// A builder for non-default settings.
    #[must_use]
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// A broker in a fresh temporary directory that is deleted when the last clone is
    /// dropped: the one-liner for unit tests, with the same semantics as a real one.
    ///
    /// # Errors
    /// [`Error::Io`] if the temporary directory cannot be created.
    pub fn temporary() -> Result<Broker> {
        let temp = tempfile::Builder::new()
            .prefix("brooklet-")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory", std::env::temp_dir(), e))?;
        let dir = temp.path().to_path_buf();
        Broker::open_inner(&dir, BrokerBuilder::default(), Some(temp))
    }

    fn open_inner(dir: &Path, builder: BrokerBuilder, temp: Option<tempfile::TempDir>) -> Result<Broker> {
        if let Some(config) = &builder.auto_create {
            config.validate()?;
        }
        if builder.offsets_compact_bytes < 64 << 10 {
            return Err(Error::config("offsets_compact_bytes", "must be at least 64 KiB"));
        }
        if builder.retention_check_interval == Some(Duration::ZERO) {
            return Err(Error::config(
                "retention_check_interval",
                "must be longer than zero (None: no retention thread)",
            ));
        }
        if builder.offsets_retention == Some(Duration::ZERO) {
            return Err(Error::config(
                "offsets_retention",
                "must be longer than zero (None: committed offsets are kept)",
            ));
        }
        if builder.offsets_retention.is_some() && builder.retention_check_interval.is_none() {
            return Err(Error::config(
                "offsets_retention",
                "is applied by the retention thread, which retention_check_interval(None) turns off",
            ));
        }
        let vfs = builder.vfs;
        let meta_dir = dir.join(META_DIR);
        if !meta_dir.exists()
            && let Some(file) = [RECOVERY_POINT_FILE, LOG_START_FILE]
                .into_iter()
                .find(|f| dir.join(f).exists())
        {
            // Checked before anything is created there: a data directory made inside a
            // partition directory (`--dir data/orders-0`) would mix its files into the
            // partition's.
            return Err(Error::InvalidArgument {
                reason: format!(
                    "{} holds {file}: it is a partition's directory, not a data directory (its parent is)",
                    dir.display()
                ),
            });
        }
        vfs.create_dir_all(&meta_dir)
            .map_err(|e| Error::io("create directory", &meta_dir, e))?;
        // Make the data directory's and meta/'s own entries durable.
        checkpoint::sync_parent(&*vfs, dir)?;
        checkpoint::sync_parent(&*vfs, &meta_dir)?;
        let lock = lock_dir(dir)?;
        let topics_path = meta_dir.join(TOPICS_FILE);
        let mut stored = match checkpoint::read_small_file(&*vfs, &topics_path, MAX_META_BYTES)? {
            Some(bytes) => decode_topics(&topics_path, &bytes)?,
            None => {
                // A new data directory. No create or delete runs before the table exists, so
                // a directory named like a partition is nobody's leftover: it is data this
                // broker must not remove below (someone else's, or topics whose table was lost).
                if let Some((path, ..)) = partition_dirs(dir)?.first() {
                    return Err(Error::corrupt(
                        &topics_path,
                        0,
                        format!(
                            "the topic table is missing, but {} is named like a partition directory: \
                             not a new data directory, or one that lost its table",
                            path.display()
                        ),
                    ));
                }
                checkpoint::write_atomic(&*vfs, &topics_path, &encode_topics(&[])?)?;
                Vec::new()
            }
        };
        if stored.iter().any(|t| t.id == TopicId::UNKNOWN.as_u128()) {
            // A version 1 table: its topics get ids, written (as version 2) before anything
            // else changes; a table that does not check out is refused below as it is.
            checked_configs(&topics_path, &stored)?;
            for t in stored.iter_mut().filter(|t| t.id == TopicId::UNKNOWN.as_u128()) {
                t.id = TopicId::generate().as_u128();
            }
            checkpoint::write_atomic(&*vfs, &topics_path, &encode_topics(&stored)?)?;
        }
        remove_unlisted_partitions(dir, &stored)?;
        let topics = open_topics(dir, &stored, |path, config| {
            let config = config.mapped_writes(builder.mapped_writes);
            let opened = PartitionLog::open_owned(path, config.clone(), Arc::clone(&vfs));
            if let Ok(log) = &opened
                && !log.recovery_report().clean_shutdown
            {
                // Until its groups' commits past its end are lowered (below): an open that
                // fails before then must not leave it closed cleanly, or the next one would
                // not lower them.
                log.hold_clean_close(true);
            }
            match opened {
                Err(damage @ Error::Corrupt { .. }) if builder.damage_policy == DamagePolicy::Offline => {
                    tracing::error!(dir = %path.display(), error = %damage, "partition offline: its open found damage");
                    // Read as a reader would; if even that fails, the open fails as by default.
                    PartitionLog::open_damaged(path, config, Arc::clone(&vfs), damage.duplicate()).map_err(|_| damage)
                }
                opened => opened,
            }
        })?;
        let offsets = OffsetStore::open(
            dir,
            Arc::clone(&vfs),
            builder.offsets_durability,
            builder.offsets_compact_bytes,
        )?;
        remove_unlisted_offsets(&offsets, &stored)?;
        lower_offsets_past_log_ends(&offsets, &topics)?;
        let inner = Arc::new(BrokerInner {
            dir: dir.to_path_buf(),
            vfs,
            auto_create: builder.auto_create,
            topics: RwLock::new(topics),
            coordinator: Coordinator::default(),
            offsets,
            admin: Mutex::new(()),
            offsets_retention: builder.offsets_retention,
            read_only: false,
            mapped_writes: builder.mapped_writes,
            _lock: Some(lock),
            _temp: temp,
        });
        for topic in inner.topics.read().values() {
            for (p, log) in topic.partition_logs().iter().enumerate() {
                let tp = TopicPartition::new(&topic.name, p as u32);
                log.set_cut_hook(lower_offsets_on_cut(&inner, tp, log));
            }
        }
        let offsets_retention = builder.offsets_retention;
        let retention = builder.retention_check_interval.and_then(|interval| {
            let weak = Arc::downgrade(&inner);
            RetentionChecker::start(interval, move |stopping| {
                retention_pass(&weak, offsets_retention, stopping)
            })
            .map_err(|e| tracing::warn!(error = %e, "no retention thread: idle partitions keep expired segments"))
            .ok()
            .map(Arc::new)
        });
        Ok(Broker {
            _retention: retention,
            inner,
        })
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Creates a topic with `config.partitions()` partitions.
    ///
    /// A new topic never inherits the records or committed offsets of an earlier topic of
    /// the same name (Kafka ties offsets to a topic id): any a failed
    /// [`delete_topic`](Self::delete_topic) left behind are deleted before the topic is
    /// published.
    ///
    /// # Errors
    /// [`Error::InvalidTopicName`], [`Error::InvalidConfig`], [`Error::TopicExists`], or an
    /// I/O error deleting such offsets, creating its partitions or writing the topic table
    /// (the topic is not created then); [`Error::ReadOnly`] on a read-only broker.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.check_writable(|| format!("create topic {name:?}"))?;
        validate_topic_name(name)?;
        config.validate()?;
        let _admin = self.inner.admin.lock();
        if self.inner.topics.read().contains_key(name) {
            return Err(Error::TopicExists { topic: name.to_owned() });
        }
        // No commit can add offsets for the name until the topic is published: commits
        // check, under the offsets lock, that the partition exists.
        self.inner.offsets.delete_topic(name)?;
        // Nor its records: a delete that failed after writing the table left directories.
        remove_unlisted_partitions(&self.inner.dir, &self.stored_topics())?;
        let logs = self.open_partitions(name, &config, 0..config.partitions)?;
        let topic = Arc::new(Topic::new(name.to_owned(), TopicId::generate(), config, logs));
        let mut table = self.stored_topics();
        table.push(StoredTopic::new(name, topic.id, &topic.config()));
        self.write_table(&table)?;
        self.inner.topics.write().insert(name.to_owned(), topic);
        self.topic_changed(name);
        Ok(())
    }

    /// Creates the topic unless it exists. Returns whether it was created.
    ///
    /// # Errors
    /// As [`create_topic`](Self::create_topic), except [`Error::TopicExists`].
    pub fn create_topic_if_not_exists(&self, name: &str, config: TopicConfig) -> Result<bool> {
        match self.create_topic(name, config) {
            Ok(()) => Ok(true),
            Err(Error::TopicExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The names of all topics, sorted.
    #[must_use]
    pub fn list_topics(&self) -> Vec<String> {
        self.inner.topics.read().keys().cloned().collect()
    }

    /// A topic's configuration and, per partition, its offsets and size.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`].
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.topic(name)?;
        let logs = topic.partition_logs();
        Ok(TopicDescription {
            name: topic.name.clone(),
            id: topic.id,
            config: topic.config().partition_count(logs.len() as u32),
            partitions: (0u32..)
                .zip(&logs)
                .map(|(partition, log)| {
                    // The end first: on a read-only broker it refreshes from the files, which
                    // moves the start too (the writer's retention).
                    let log_end_offset = log.log_end_offset();
                    PartitionDescription {
                        partition,
                        log_start_offset: log.log_start_offset(),
                        log_end_offset,
                        size_bytes: log.size_bytes(),
                    }
                })
                .collect(),
        })
    }

    /// Re-reads the topic table of a [read-only broker](Self::open_read_only), which
    /// otherwise keeps the one it opened with: topics the writer created since are opened,
    /// partitions it added appear (groups of this process rebalance over them), settings it
    /// altered show in [`describe_topic`](Self::describe_topic), and topics it deleted go
    /// (their consumers get [`Error::UnknownTopic`], as on the writer's broker). As Kafka
    /// clients refresh their metadata, a long-lived reader calls this now and then; the CLI's
    /// `consume --follow` does, every second. A writable broker's table is its own: this
    /// does nothing there.
    ///
    /// A topic deleted and created again under its name between two refreshes is told apart
    /// by its [`TopicId`]: the old one is deleted here and the new one opened, and consumers
    /// of the old one's partitions read the new one's, as they would on the writer's broker.
    /// (A topic this broker opened from a table written before topics had ids, whose id it
    /// does not know, is told apart by its partition directories instead: they were
    /// replaced.) Not seen: commits made since open (see
    /// [`refresh_offsets`](Self::refresh_offsets)).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Corrupt`] or [`Error::UnsupportedVersion`] reading the table
    /// (nothing changes then), or opening a new topic's or partition's files.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, TopicConfig};
    /// let dir = tempfile::tempdir()?;
    /// let writer = Broker::open(dir.path())?;
    /// let reader = Broker::open_read_only(dir.path())?;
    /// writer.create_topic("orders", TopicConfig::with_partitions(2))?;
    /// assert!(reader.list_topics().is_empty());
    /// reader.refresh_topics()?;
    /// assert_eq!(reader.list_topics(), ["orders"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh_topics(&self) -> Result<()> {
        if !self.inner.read_only {
            return Ok(());
        }
        let mut changed = Vec::new();
        // Groups rebalance over what changed, also if opening a later topic failed.
        let result = (|| -> Result<()> {
            let _admin = self.inner.admin.lock();
            // Topics whose id this broker does not know (opened from a version 1 table) are
            // told from a topic created again by their partition directories, checked before
            // the table is read: one replaced by then (deleted, perhaps made again) means the
            // table read next lists that topic only as created again, if at all.
            let replaced: Vec<String> = self
                .inner
                .topics
                .read()
                .values()
                .filter(|t| t.id == TopicId::UNKNOWN && t.partition_logs().iter().any(|l| l.dir_replaced()))
                .map(|t| t.name.clone())
                .collect();
            let path = self.table_path();
            let stored = read_existing_table(&*self.inner.vfs, &path)?;
            let configs = checked_configs(&path, &stored)?;
            let open = |name: &str, p: u32, config: &TopicConfig| {
                PartitionLog::open_read_only_with_vfs(
                    &partition_dir(&self.inner.dir, name, p),
                    config.log_config(),
                    Arc::clone(&self.inner.vfs),
                )
                .map(Arc::new)
            };
            let current: Vec<(String, Arc<Topic>)> = self
                .inner
                .topics
                .read()
                .iter()
                .map(|(name, topic)| (name.clone(), Arc::clone(topic)))
                .collect();
            // Gone from the table, or deleted and created again (another id): the old topic
            // is deleted for this broker's producers and consumers; a new one opens below.
            let (current, gone): (Vec<_>, Vec<_>) = current.into_iter().partition(|(name, topic)| {
                stored
                    .iter()
                    .any(|t| &t.name == name && TopicId(t.id).may_be(topic.id) && !replaced.contains(name))
            });
            for (name, topic) in &gone {
                self.inner.topics.write().remove(name);
                for log in topic.partition_logs() {
                    log.mark_deleted();
                }
                changed.push(name.clone());
            }
            for (t, config) in stored.iter().zip(configs) {
                match current.iter().find(|(name, _)| *name == t.name) {
                    Some((_, topic)) => {
                        let have = topic.partition_count();
                        if t.partitions > have {
                            let logs = (have..t.partitions)
                                .map(|p| open(&t.name, p, &config))
                                .collect::<Result<Vec<_>>>()?;
                            topic.add_partitions(logs);
                            changed.push(t.name.clone());
                        }
                        *topic.config.write() = config;
                    }
                    None => {
                        let logs = (0..t.partitions)
                            .map(|p| open(&t.name, p, &config))
                            .collect::<Result<Vec<_>>>()?;
                        let topic = Arc::new(Topic::new(t.name.clone(), TopicId(t.id), config, logs));
                        self.inner.topics.write().insert(t.name.clone(), topic);
                        changed.push(t.name.clone());
                    }
                }
            }
            Ok(())
        })();
        for name in changed {
            self.topic_changed(&name);
        }
        result
    }

    /// The partitions open left offline for damage ([`DamagePolicy::Offline`]), each with
    /// the damage's error (which names the file and the way out). Empty with the default
    /// policy, which fails the open instead.
    #[must_use]
    pub fn damaged_partitions(&self) -> Vec<(TopicPartition, Error)> {
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        topics
            .iter()
            .flat_map(|t| {
                (0u32..)
                    .zip(t.partition_logs())
                    .filter_map(|(p, log)| log.damage().map(|d| (TopicPartition::new(&t.name, p), d.duplicate())))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Makes everything stored so far durable, as a database's checkpoint does: every
    /// partition's records (`Buffered` ones written out first) and every committed offset
    /// are fsynced, whatever durability they were written with. Records a
    /// [`Producer`](crate::Producer) still holds (async batches not yet written) are the
    /// producer's to [`flush`](crate::Producer::flush) first.
    ///
    /// Dropping the last handle of a broker syncs and closes every partition too, but it
    /// can only log a failure (through `tracing`). Call this before, where the application
    /// must learn that its data did not reach the disk. A partition left offline by
    /// [`DamagePolicy::Offline`] takes no writes, so it has nothing to sync and is skipped.
    ///
    /// # Errors
    /// The first failure, after trying every partition and the offsets:
    /// [`Error::Io`] if a write or fsync fails (a failed fsync poisons that partition,
    /// as it does for a `Synced` append), [`Error::Poisoned`] for a partition an earlier
    /// fsync failure poisoned; [`Error::ReadOnly`] on a read-only broker.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, Durability, ProducerConfig, ProducerRecord, TopicConfig};
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::open(dir.path())?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(2))?;
    /// let producer = broker.producer(ProducerConfig::default().durability(Durability::Written));
    /// for i in 0..100 {
    ///     producer.send(ProducerRecord::new("orders").key(format!("user-{i}")).value("placed"))?;
    /// }
    /// // One fsync per partition for the 100 records, instead of one per send with `Synced`.
    /// broker.flush()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        self.check_writable(|| "flush the broker".to_string())?;
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        let mut first_error = None;
        for log in topics.iter().flat_map(|t| t.partition_logs()) {
            // A topic deleted meanwhile has nothing left to make durable.
            if log.damage().is_none()
                && let Err(e) = log.flush()
                && !log.is_deleted()
            {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.inner.offsets.flush() {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Closes the data directory and reports how that went, as `sqlite3_close` does: what
    /// dropping the last handle does too, but a drop can only log a failure (through
    /// `tracing`). Every partition is flushed, synced and marked closed cleanly (so the next
    /// open runs no recovery scan), the committed offsets likewise, and the directory's lock
    /// is released: the directory can be opened again at once, in this process or another.
    /// A [`PartitionLog`] still held from [`partition_log`](Self::partition_log) is closed
    /// too (its appends fail from then on).
    ///
    /// The broker closes only with its last handle. Drop (or [`close`](crate::Consumer::close)) its
    /// consumers and drop its producers and clones first (a producer's
    /// [`close`](crate::Producer::close) sends what it holds, but the producer still holds the
    /// broker until it is dropped).
    ///
    /// # Errors
    /// [`Error::InUse`] while other handles of the broker are alive: this handle is dropped
    /// after a [`flush`](Self::flush) (whose failure is returned instead), and the
    /// directory closes with the last of them.
    /// Otherwise the first failure of a partition's or of the offsets' close
    /// ([`Error::Io`], [`Error::Poisoned`]): that log is left to recover at the next open,
    /// the others are closed, and the lock is released all the same. A read-only broker's
    /// close only drops this handle (it writes nothing and holds no lock).
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition};
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::open(dir.path())?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(1))?;
    /// let producer = broker.producer(ProducerConfig::default());
    /// producer.send(ProducerRecord::new("orders").value("placed"))?;
    /// drop(producer);
    /// broker.close()?;
    /// let reopened = Broker::open(dir.path())?; // the lock is free, and no recovery runs
    /// let log = reopened.partition_log(&TopicPartition::new("orders", 0))?;
    /// assert!(log.recovery_report().clean_shutdown);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) -> Result<()> {
        if self.inner.read_only {
            return Ok(());
        }
        let others = Arc::strong_count(&self.inner) - 1;
        let flushed = if others > 0 { self.flush() } else { Ok(()) };
        let Broker { _retention, inner } = self;
        // The last handle stops and joins the retention thread here, as its drop would.
        drop(_retention);
        let path = inner.dir.clone();
        // Exactly one of handles closed or dropped at once gets it: a close that does not
        // says so, and the one that does (or the last drop) closes.
        let Some(inner) = Arc::into_inner(inner) else {
            flushed?;
            return Err(Error::InUse {
                path,
                handles: others.max(1),
            });
        };
        let mut first_error = flushed.err();
        let topics: Vec<Arc<Topic>> = inner.topics.read().values().cloned().collect();
        for log in topics.iter().flat_map(|t| t.partition_logs()) {
            if let Err(e) = log.shutdown()
                && !log.is_deleted()
            {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = inner.offsets.close() {
            first_error.get_or_insert(e);
        }
        drop(topics);
        // The lock goes with the rest (a temporary directory too).
        drop(inner);
        first_error.map_or(Ok(()), Err)
    }

    /// Re-reads the committed offsets of a [read-only broker](Self::open_read_only), which
    /// otherwise keeps those it opened with: [`describe_group`](Self::describe_group),
    /// [`committed_offset`](Self::committed_offset) and its consumers' `committed` then show
    /// the writer's commits since (a lag monitor beside an application calls this before
    /// each look). It reads the offsets snapshot and log again, as an open does. A writable
    /// broker's table is its own: this does nothing there.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Corrupt`] or [`Error::UnsupportedVersion`] reading the offsets
    /// (the table read before stays).
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, OffsetAndMetadata, TopicConfig, TopicPartition};
    /// use std::collections::BTreeMap;
    /// let dir = tempfile::tempdir()?;
    /// let writer = Broker::open(dir.path())?;
    /// writer.create_topic("orders", TopicConfig::with_partitions(1))?;
    /// let reader = Broker::open_read_only(dir.path())?;
    /// let tp = TopicPartition::new("orders", 0);
    /// let mut consumer = writer.consumer(brooklet::ConsumerConfig::group("billing"))?;
    /// consumer.assign(&[tp.clone()])?;
    /// consumer.commit_offsets(&BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(0))]))?;
    /// assert_eq!(reader.committed_offset("billing", &tp), None);
    /// reader.refresh_offsets()?;
    /// assert_eq!(reader.committed_offset("billing", &tp).map(|o| o.offset), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh_offsets(&self) -> Result<()> {
        if !self.inner.read_only {
            return Ok(());
        }
        self.inner.offsets.reload_read_only()
    }

    /// Grows a topic to `partitions` partitions (Kafka allows only growth: keyed records
    /// map to new partitions afterwards, as in Kafka).
    ///
    /// # Errors
    /// [`Error::UnknownTopic`]; [`Error::InvalidConfig`] if `partitions` is not more than
    /// the current count or above the maximum; an I/O error; [`Error::ReadOnly`] on a
    /// read-only broker.
    pub fn add_partitions(&self, name: &str, partitions: u32) -> Result<()> {
        self.check_writable(|| format!("add partitions to topic {name:?}"))?;
        let _admin = self.inner.admin.lock();
        let topic = self.topic(name)?;
        let current = topic.partition_count();
        if partitions <= current {
            return Err(Error::config(
                "partitions",
                format!("topic {name:?} has {current} partitions; the count can only grow"),
            ));
        }
        let grown = topic.config().partition_count(partitions);
        grown.validate()?;
        let logs = self.open_partitions(name, &grown, current..partitions)?;
        let mut table = self.stored_topics();
        if let Some(t) = table.iter_mut().find(|t| t.name == name) {
            t.partitions = partitions;
        }
        self.write_table(&table)?;
        topic.add_partitions(logs);
        self.topic_changed(name);
        Ok(())
    }

    /// Changes a topic's settings while it is in use, as Kafka's
    /// `kafka-configs --alter --entity-type topics` (`incrementalAlterConfigs`). `config`
    /// replaces every setting at once; start from the current ones to change a few (as the
    /// example does). The partition count cannot change here (see
    /// [`add_partitions`](Self::add_partitions)): `config`'s must be the topic's.
    ///
    /// The new settings are written to the topic table first (atomically, as at creation),
    /// then applied to the live partitions, each at its next use, as in Kafka: the
    /// message-size limit and timestamp type at the next append (producers see the new
    /// limit at their next send; a record `send_async` queued before that the new limit
    /// refuses fails alone, with [`Error::RecordTooLarge`], when its batch is written,
    /// and the others are stored; a `send_batch` running as the limit drops may fail with
    /// it after writing some of its records, as after an I/O error);
    /// `segment_bytes` and `segment_ms` at the next roll check (an active segment already
    /// past a lowered `segment_bytes` rolls at the next append); retention at the next
    /// retention check ([`BrokerBuilder::retention_check_interval`]) or segment roll. Stored records are
    /// never rewritten: a lowered `max_message_bytes` does not touch batches already stored,
    /// and a topic switched to LogAppendTime keeps the create times of earlier records.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`]; [`Error::InvalidConfig`] for a bad setting or another
    /// partition count (nothing changes); an I/O error writing the topic table (nothing
    /// changes; if only the directory sync after the rename failed, the new settings are in
    /// effect at the next open); [`Error::ReadOnly`] on a read-only broker.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, TopicConfig};
    /// use std::time::Duration;
    ///
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(3))?;
    /// // Keep a week of orders from now on.
    /// let week = Duration::from_secs(7 * 24 * 3600);
    /// let config = broker.describe_topic("orders")?.config.retention_ms(Some(week));
    /// broker.alter_topic_config("orders", config)?;
    /// let want = TopicConfig::with_partitions(3).retention_ms(Some(week));
    /// assert_eq!(broker.describe_topic("orders")?.config, want);
    /// // Or by Kafka's names, as `kafka-configs --add-config` takes them:
    /// let config = broker.describe_topic("orders")?.config.set("retention.bytes", "1073741824")?;
    /// broker.alter_topic_config("orders", config)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.check_writable(|| format!("alter the configuration of topic {name:?}"))?;
        config.validate()?;
        let _admin = self.inner.admin.lock();
        let topic = self.topic(name)?;
        let current = topic.partition_count();
        if config.partitions() != current {
            return Err(Error::config(
                "partitions",
                format!(
                    "topic {name:?} has {current} partitions, the new configuration {}; \
                     alter_topic_config keeps the count (add_partitions grows it)",
                    config.partitions()
                ),
            ));
        }
        let mut table = self.stored_topics();
        if let Some(t) = table.iter_mut().find(|t| t.name == name) {
            *t = StoredTopic::new(name, topic.id, &config);
        }
        self.write_table(&table)?;
        let log_config = self.inner.log_config(&config);
        *topic.config.write() = config;
        for log in topic.partition_logs() {
            log.set_config(log_config.clone())?;
        }
        Ok(())
    }

    /// Deletes a topic and its files. Producers and consumers still using it get
    /// [`Error::UnknownTopic`] from then on.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`]; an I/O error replacing the topic table (the topic is left
    /// as it was), or syncing it into place, deleting its committed offsets or removing
    /// files (the topic is deleted by then, gone from the table; open, or creating a topic
    /// of that name again, finishes the removal); [`Error::ReadOnly`] on a read-only broker.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_writable(|| format!("delete topic {name:?}"))?;
        let _admin = self.inner.admin.lock();
        let topic = self.topic(name)?;
        let table: Vec<StoredTopic> = self.stored_topics().into_iter().filter(|t| t.name != name).collect();
        let path = self.table_path();
        checkpoint::replace(&*self.inner.vfs, &path, &encode_topics(&table)?)?;
        // The next open reads the new table whatever fails from here (its directory sync
        // included) and removes the topic's files: no record may be acknowledged into them.
        self.inner.topics.write().remove(name);
        let logs = topic.partition_logs();
        for log in &logs {
            // Producers may still hold these logs: closed, they write nothing more here.
            log.mark_deleted();
        }
        let count = logs.len() as u32;
        drop(logs);
        drop(topic);
        self.topic_changed(name);
        checkpoint::sync_parent(&*self.inner.vfs, &path)?;
        self.inner.offsets.delete_topic(name)?;
        for p in 0..count {
            let dir = partition_dir(&self.inner.dir, name, p);
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("delete partition directory", &dir, e))?;
        }
        self.inner
            .vfs
            .sync_dir(&self.inner.dir)
            .map_err(|e| Error::io("sync directory", &self.inner.dir, e))
    }

    /// Rebalances the groups subscribed to `topic`.
    fn topic_changed(&self, topic: &str) {
        self.inner
            .coordinator
            .topic_changed(topic, &|t| self.partition_count(t));
    }

    /// The partition count of `topic`, if it exists.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topic(topic).ok().map(|t| t.partition_count())
    }

    /// Ok if `tp` exists (and its topic is not being deleted).
    pub(crate) fn check_partition(&self, tp: &TopicPartition) -> Result<()> {
        if self.partition_log(tp)?.is_deleted() {
            return Err(Error::UnknownTopic {
                topic: tp.topic.clone(),
            });
        }
        Ok(())
    }

    pub(crate) fn coordinator(&self) -> &Coordinator {
        &self.inner.coordinator
    }

    pub(crate) fn offsets(&self) -> &OffsetStore {
        &self.inner.offsets
    }

    /// With [`offsets_retention`](BrokerBuilder::offsets_retention), the commit time (ms
    /// since the epoch) before which an auto-commit commits a position again even if it did
    /// not move: half the retention ago, so that a running consumer's offsets never expire
    /// (Kafka's auto-commit commits every position at every interval). `None` without
    /// retention.
    pub(crate) fn auto_commit_refresh_before(&self) -> Option<i64> {
        self.inner.offsets_retention.map(|retention| {
            let half = i64::try_from((retention / 2).as_millis()).unwrap_or(i64::MAX);
            crate::record::now_ms().saturating_sub(half)
        })
    }

    /// The open topic `name`, creating it first if auto-create is on.
    pub(crate) fn topic_or_create(&self, name: &str) -> Result<Arc<Topic>> {
        match self.topic(name) {
            Err(Error::UnknownTopic { .. }) => {
                // A name that can never exist says so, rather than "unknown".
                validate_topic_name(name)?;
                match self.inner.auto_create.clone() {
                    Some(config) => {
                        self.create_topic_if_not_exists(name, config)?;
                        self.topic(name)
                    }
                    None => Err(Error::UnknownTopic { topic: name.to_owned() }),
                }
            }
            other => other,
        }
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic { topic: name.to_owned() })
    }

    /// The log of one partition.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] or [`Error::InvalidPartition`].
    pub fn partition_log(&self, tp: &TopicPartition) -> Result<Arc<PartitionLog>> {
        self.topic(&tp.topic)?.partition(tp.partition)
    }

    fn open_partitions(
        &self,
        name: &str,
        config: &TopicConfig,
        range: std::ops::Range<u32>,
    ) -> Result<Vec<Arc<PartitionLog>>> {
        range
            .map(|p| {
                let log = Arc::new(PartitionLog::open_owned(
                    &partition_dir(&self.inner.dir, name, p),
                    self.inner.log_config(config),
                    Arc::clone(&self.inner.vfs),
                )?);
                log.set_cut_hook(lower_offsets_on_cut(&self.inner, TopicPartition::new(name, p), &log));
                Ok(log)
            })
            .collect()
    }

    fn stored_topics(&self) -> Vec<StoredTopic> {
        self.inner
            .topics
            .read()
            .values()
            .map(|t| StoredTopic::new(&t.name, t.id, &t.config()))
            .collect()
    }

    fn table_path(&self) -> PathBuf {
        self.inner.dir.join(META_DIR).join(TOPICS_FILE)
    }

    fn write_table(&self, table: &[StoredTopic]) -> Result<()> {
        checkpoint::write_atomic(&*self.inner.vfs, &self.table_path(), &encode_topics(table)?)
    }
}

/// The topic table at `path`, which must exist.
fn read_existing_table(vfs: &dyn Vfs, path: &Path) -> Result<Vec<StoredTopic>> {
    match checkpoint::read_small_file(vfs, path, MAX_META_BYTES)? {
        Some(bytes) => decode_topics(path, &bytes),
        None => Err(Error::io(
            "open the topic table (is this a brooklet data directory?)",
            path,
            std::io::ErrorKind::NotFound.into(),
        )),
    }
}

/// Each topic's configuration from the table at `table`, every entry checked first. A
/// table whose checksum holds was written by a broker, which validated every name and
/// config; anything else (a hand-edited or foreign file) is refused before a single
/// directory is made for it — e.g. `../x`, or u32::MAX partitions.
fn checked_configs(table: &Path, stored: &[StoredTopic]) -> Result<Vec<TopicConfig>> {
    let mut seen = BTreeSet::new();
    stored
        .iter()
        .map(|t| {
            let invalid = |reason: String| Error::corrupt(table, 0, format!("topic {:?}: {reason}", t.name));
            validate_topic_name(&t.name).map_err(|e| invalid(e.to_string()))?;
            if t.timestamp_type > 1 || t.cleanup_policy > 1 {
                return Err(invalid("unknown timestamp type or cleanup policy".into()));
            }
            let config = t.config();
            config.validate().map_err(|e| invalid(e.to_string()))?;
            if !seen.insert(t.name.as_str()) {
                return Err(invalid("listed twice".into()));
            }
            Ok(config)
        })
        .collect()
}

/// Opens every partition of the topics in the table with `open_log` (writable or read-only).
fn open_topics(
    dir: &Path,
    stored: &[StoredTopic],
    open_log: impl Fn(&Path, LogConfig) -> Result<PartitionLog>,
) -> Result<BTreeMap<String, Arc<Topic>>> {
    let configs = checked_configs(&dir.join(META_DIR).join(TOPICS_FILE), stored)?;
    let mut topics = BTreeMap::new();
    for (t, config) in stored.iter().zip(configs) {
        let logs = (0..t.partitions)
            .map(|p| open_log(&partition_dir(dir, &t.name, p), config.log_config()).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        topics.insert(
            t.name.clone(),
            Arc::new(Topic::new(t.name.clone(), TopicId(t.id), config, logs)),
        );
    }
    Ok(topics)
}

/// `DATA/<topic>-<partition>`.
fn partition_dir(dir: &Path, topic: &str, partition: u32) -> PathBuf {
    dir.join(format!("{topic}-{partition}"))
}

/// The directories in `dir` named like a partition's (`<topic>-<partition>`), sorted, with
/// their topic and partition.
fn partition_dirs(dir: &Path) -> Result<Vec<(PathBuf, String, u32)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list directory", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        // Only the name brooklet writes (`orders-1`, never `orders-01` or `orders-+1`): a
        // directory named otherwise is not a partition's, whatever number it parses to.
        let Ok(partition) = partition.parse::<u32>() else {
            continue;
        };
        if name != format!("{topic}-{partition}") || validate_topic_name(topic).is_err() || !entry.path().is_dir() {
            continue;
        }
        found.push((entry.path(), topic.to_owned(), partition));
    }
    found.sort();
    Ok(found)
}

/// One pass of the retention thread: retention applied to every partition of the broker
/// `inner` points to. `false` once the broker is gone, or closing (`stopping`): the pass
/// ends at the next partition then, so that a close does not wait for all of them.
fn retention_pass(inner: &Weak<BrokerInner>, offsets_retention: Option<Duration>, stopping: &Stopping<'_>) -> bool {
    let Some(inner) = inner.upgrade() else {
        return false;
    };
    let logs: Vec<Arc<PartitionLog>> = inner.topics.read().values().flat_map(|t| t.partition_logs()).collect();
    // An offline partition's files stay as they are.
    for log in logs.into_iter().filter(|log| log.damage().is_none()) {
        // The broker is closing: the rest waits for its next open's first pass.
        if stopping.requested() {
            return false;
        }
        // A topic deleted meanwhile: its files are going anyway.
        if let Err(e) = log.enforce_retention()
            && !log.is_deleted()
        {
            tracing::warn!(dir = %log.dir().display(), error = %e, "retention check failed");
        }
    }
    if stopping.requested() {
        return false;
    }
    if let Some(retention) = offsets_retention {
        expire_offsets(&inner, retention);
    }
    true
}

/// Deletes the committed offsets of every group without members that has been idle for
/// `retention` (see [`BrokerBuilder::offsets_retention`]).
fn expire_offsets(inner: &BrokerInner, retention: Duration) {
    let cutoff = crate::record::now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let counts = |t: &str| inner.topics.read().get(t).map(|t| t.partition_count());
    for group in inner.offsets.groups() {
        let idle = |emptied_at: Option<i64>| {
            // Commits not yet synced count: the deletion would remove them too.
            let newest = inner.offsets.newest_commit(&group).unwrap_or(i64::MIN);
            newest.max(emptied_at.unwrap_or(i64::MIN)) < cutoff
        };
        let delete = || inner.offsets.delete_where(&group, |_| true);
        match inner.coordinator.expire_if_idle(&group, &counts, idle, delete) {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(group = %group, offsets = deleted, "deleted the committed offsets of a group idle past offsets_retention")
            }
            Err(e) => tracing::warn!(group = %group, error = %e, "offsets retention failed"),
        }
    }
}

/// Removes `<topic>-<partition>` directories the topic table does not list: what an
/// interrupted create (directories made, table not yet written) or delete (table written,
/// directories not yet removed) left behind. Other entries are left alone.
fn remove_unlisted_partitions(dir: &Path, topics: &[StoredTopic]) -> Result<()> {
    for (path, topic, partition) in partition_dirs(dir)? {
        let listed = topics.iter().any(|t| t.name == topic && partition < t.partitions);
        if !listed {
            tracing::warn!(dir = %path.display(), "removing a partition directory the topic table does not list");
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove partition directory", &path, e))?;
        }
    }
    Ok(())
}

/// Deletes committed offsets of partitions the topic table does not list: what a
/// `delete_topic` interrupted between its table write and its offset tombstones (a crash,
/// a write error) left behind. A topic created again under the name must not inherit them.
fn remove_unlisted_offsets(offsets: &OffsetStore, topics: &[StoredTopic]) -> Result<()> {
    let counts: BTreeMap<&str, u32> = topics.iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    let removed = offsets.delete_matching(|_, tp| counts.get(tp.topic.as_str()).is_none_or(|&n| tp.partition >= n))?;
    if removed > 0 {
        tracing::warn!(
            offsets = removed,
            "removed committed offsets of partitions the topic table does not list"
        );
    }
    Ok(())
}

/// Lowers committed offsets past the log end of a partition that was not closed cleanly
/// to that end: what a power loss leaves when a group's commit survived but the tail of
/// the records it had read did not (they were not synced yet). New records get those
/// offsets, and the group, resuming past the end, would skip them; from the end it reads
/// them all. A cleanly closed partition lost nothing, so a commit past its end is the
/// application's (Kafka takes any offset; the consumer's `auto_offset_reset` handles it),
/// and an offline partition keeps its offsets (the damage hides its end). Such a partition
/// was opened with [`PartitionLog::hold_clean_close`], so that an open failing before this
/// leaves it for the next open to see as not closed cleanly; this releases it.
fn lower_offsets_past_log_ends(offsets: &OffsetStore, topics: &BTreeMap<String, Arc<Topic>>) -> Result<()> {
    let lowered = offsets.lower_past(|tp| {
        let log = topics.get(tp.topic.as_str())?.partition(tp.partition).ok()?;
        (log.damage().is_none() && !log.recovery_report().clean_shutdown).then(|| log.log_end_offset())
    })?;
    if lowered > 0 {
        tracing::warn!(
            offsets = lowered,
            "lowered committed offsets past their partition's end to it: the log lost records the group had read (a power loss before they were synced)"
        );
    }
    // Done (and synced): the partitions may close cleanly again.
    for topic in topics.values() {
        for log in topic.partition_logs() {
            log.hold_clean_close(false);
        }
    }
    Ok(())
}

/// The hook `log`, partition `tp` of a broker, runs after a truncation: every group's
/// committed offset of `tp` past the end the cut left is lowered to it (see
/// [`PartitionLog::truncate_to`]). Not if the topic was deleted meanwhile (checked under
/// the offset table's lock, which the deletion takes to remove the topic's offsets after
/// marking its logs deleted): the commits under the name may be a new topic's.
fn lower_offsets_on_cut(inner: &Arc<BrokerInner>, tp: TopicPartition, log: &Arc<PartitionLog>) -> CutHook {
    let inner = Arc::downgrade(inner);
    let log = Arc::downgrade(log);
    Box::new(move |end| {
        let Some(inner) = inner.upgrade() else {
            // The broker is gone (the application still holds the log): the next open
            // lowers them, if the log still ends below them, as after a crash.
            if let Some(log) = log.upgrade() {
                log.hold_clean_close(true);
            }
            return Ok(());
        };
        let live = || log.upgrade().is_some_and(|l| !l.is_deleted());
        let lowered = inner.offsets.lower_past(|p| (*p == tp && live()).then_some(end))?;
        if lowered > 0 {
            tracing::warn!(partition = %tp, end, offsets = lowered, "lowered committed offsets past the truncated log's end to it");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_table_round_trips_and_rejects_damage() {
        let table = vec![StoredTopic::new(
            "orders",
            TopicId::generate(),
            &TopicConfig::with_partitions(3).retention_bytes(Some(10)),
        )];
        let bytes = encode_topics(&table).unwrap();
        let path = Path::new("meta/topics");
        assert_eq!(decode_topics(path, &bytes).unwrap(), table);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_topics(path, &bad).is_err(), "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert!(decode_topics(path, &bytes[..len]).is_err(), "cut at {len}");
        }
        let mut newer = bytes.clone();
        newer[4] = 3;
        assert!(matches!(
            decode_topics(path, &newer),
            Err(Error::UnsupportedVersion {
                found: 3,
                supported: 2,
                ..
            })
        ));
    }

    /// The bytes of a version 1 table (before topic ids) listing `topics`.
    fn v1_table(topics: &[StoredTopic]) -> Vec<u8> {
        let v1: Vec<StoredTopicV1> = topics
            .iter()
            .map(|t| StoredTopicV1 {
                name: t.name.clone(),
                partitions: t.partitions,
                segment_bytes: t.segment_bytes,
                segment_ms: t.segment_ms,
                retention_bytes: t.retention_bytes,
                retention_ms: t.retention_ms,
                max_message_bytes: t.max_message_bytes,
                timestamp_type: t.timestamp_type,
                cleanup_policy: t.cleanup_policy,
            })
            .collect();
        let payload = bincode::serde::encode_to_vec(&v1, bincode_config()).unwrap();
        checkpoint::frame(META_MAGIC, 1, &payload)
    }

    /// A data directory written before topics had ids opens with its topics and records; a
    /// read-only open sees the ids as unknown, a writable one gives each topic an id, kept
    /// from then on, and writes the table as version 2.
    #[test]
    fn a_version_1_topic_table_opens_and_its_topics_get_ids() {
        let dir = tempfile::tempdir().unwrap();
        {
            let broker = Broker::open(dir.path()).unwrap();
            broker.create_topic("a", TopicConfig::with_partitions(2)).unwrap();
            broker
                .create_topic("b", TopicConfig::default().retention_bytes(Some(1 << 20)))
                .unwrap();
            let producer = broker.producer(crate::ProducerConfig::default());
            producer
                .send(crate::ProducerRecord::new("a").partition(1).value("x"))
                .unwrap();
        }
        let table = dir.path().join(META_DIR).join(TOPICS_FILE);
        let stored = decode_topics(&table, &std::fs::read(&table).unwrap()).unwrap();
        let mut v1 = stored.clone();
        v1.iter_mut().for_each(|t| t.id = 0);
        std::fs::write(&table, v1_table(&stored)).unwrap();
        assert_eq!(decode_topics(&table, &std::fs::read(&table).unwrap()).unwrap(), v1);

        let reader = Broker::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.describe_topic("a").unwrap().id, TopicId::UNKNOWN);
        drop(reader);
        let ids = |broker: &Broker| ["a", "b"].map(|t| broker.describe_topic(t).unwrap().id);
        let broker = Broker::open(dir.path()).unwrap();
        let given = ids(&broker);
        assert!(given.iter().all(|id| *id != TopicId::UNKNOWN) && given[0] != given[1]);
        let d = broker.describe_topic("b").unwrap();
        assert_eq!(d.config, TopicConfig::default().retention_bytes(Some(1 << 20)));
        assert_eq!(broker.describe_topic("a").unwrap().partitions[1].log_end_offset, 1);
        drop(broker);
        let bytes = std::fs::read(&table).unwrap();
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), META_VERSION);
        assert_eq!(ids(&Broker::open(dir.path()).unwrap()), given);
        assert_eq!(ids(&Broker::open_read_only(dir.path()).unwrap()), given);
    }

    /// A read-only broker opened on a version 1 table knows its topics' ids as unknown. A
    /// topic deleted and created again after that must still be told from the old one,
    /// whether a writable open gave the topics ids meanwhile (the new one's id, known, was
    /// taken for the unknown old one's) or the table stayed version 1: by the partition
    /// directories the reader holds, which were replaced. The reader went on with the old
    /// topic's files and never saw the new records.
    #[test]
    fn a_reader_of_a_version_1_table_tells_a_topic_created_again_from_the_old_one() {
        let value = |broker: &Broker, topic: &str, v: &str| {
            let producer = broker.producer(crate::ProducerConfig::default());
            producer
                .send(crate::ProducerRecord::new(topic).partition(0).value(v.to_owned()))
                .unwrap();
        };
        let end = |broker: &Broker, topic: &str| broker.describe_topic(topic).unwrap().partitions[0].log_end_offset;
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join(META_DIR).join(TOPICS_FILE);
        let as_v1 = || {
            let stored = decode_topics(&table, &std::fs::read(&table).unwrap()).unwrap();
            std::fs::write(&table, v1_table(&stored)).unwrap();
        };
        {
            let broker = Broker::open(dir.path()).unwrap();
            for topic in ["upgraded", "v1", "kept"] {
                broker.create_topic(topic, TopicConfig::default()).unwrap();
                value(&broker, topic, "old");
            }
        }
        as_v1();
        let reader = Broker::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.describe_topic("upgraded").unwrap().id, TopicId::UNKNOWN);

        // A writable open gives ids; then a topic is deleted and created again.
        let writer = Broker::open(dir.path()).unwrap();
        writer.delete_topic("upgraded").unwrap();
        writer.create_topic("upgraded", TopicConfig::default()).unwrap();
        for v in ["new0", "new1"] {
            value(&writer, "upgraded", v);
        }
        value(&writer, "kept", "more");
        reader.refresh_topics().unwrap();
        assert_eq!(end(&reader, "upgraded"), 2);
        assert_eq!(
            reader.describe_topic("upgraded").unwrap().id,
            writer.describe_topic("upgraded").unwrap().id
        );
        // A topic that stayed is the same topic, its records followed.
        assert_eq!(reader.describe_topic("kept").unwrap().id, TopicId::UNKNOWN);
        assert_eq!(end(&reader, "kept"), 2);
        drop(writer);

        // A writer that keeps the table at version 1 (an older build): no id to compare.
        as_v1();
        let reader = Broker::open_read_only(dir.path()).unwrap();
        let writer = Broker::open(dir.path()).unwrap();
        writer.delete_topic("v1").unwrap();
        writer.create_topic("v1", TopicConfig::default()).unwrap();
        for v in ["new0", "new1", "new2"] {
            value(&writer, "v1", v);
        }
        drop(writer);
        as_v1();
        reader.refresh_topics().unwrap();
        assert_eq!(end(&reader, "v1"), 3);
        assert_eq!(end(&reader, "kept"), 2);
    }

    /// A checksummed table the broker could never have written (a hand edit) is refused at
    /// open, naming the file, before any partition directory is made.
    #[test]
    fn open_refuses_a_checksummed_table_with_impossible_configs() {
        let valid = StoredTopic::new("t", TopicId::generate(), &TopicConfig::with_partitions(2));
        let cases = [
            StoredTopic {
                partitions: u32::MAX,
                ..valid.clone()
            },
            StoredTopic {
                partitions: 0,
                ..valid.clone()
            },
            StoredTopic {
                cleanup_policy: 1,
                ..valid.clone()
            },
            StoredTopic {
                timestamp_type: 7,
                ..valid.clone()
            },
            StoredTopic {
                segment_bytes: 0,
                ..valid.clone()
            },
            StoredTopic {
                name: "../t".into(),
                ..valid.clone()
            },
        ];
        for (i, bad) in cases.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            drop(Broker::open(dir.path()).unwrap());
            let table = dir.path().join(META_DIR).join(TOPICS_FILE);
            std::fs::write(&table, encode_topics(&[bad]).unwrap()).unwrap();
            match Broker::open(dir.path()) {
                Err(Error::Corrupt { path, .. }) => assert_eq!(path, table, "case {i}"),
                other => panic!("case {i}: {other:?}"),
            }
            assert!(
                !dir.path().join("t-0").exists(),
                "case {i}: a partition directory was made"
            );
        }
        // A duplicate name too.
        let dir = tempfile::tempdir().unwrap();
        drop(Broker::open(dir.path()).unwrap());
        let table = dir.path().join(META_DIR).join(TOPICS_FILE);
        std::fs::write(&table, encode_topics(&[valid.clone(), valid]).unwrap()).unwrap();
        assert!(matches!(Broker::open(dir.path()), Err(Error::Corrupt { .. })));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn stored_topic() -> impl Strategy<Value = StoredTopic> {
        (
            ("[a-zA-Z0-9._-]{1,20}", any::<u32>(), any::<u64>(), any::<Option<u64>>()),
            (any::<Option<u64>>(), any::<Option<u64>>(), any::<u32>(), 0u8..2, 0u8..2),
            any::<u128>(),
        )
            .prop_map(
                |(
                    (name, partitions, segment_bytes, segment_ms),
                    (retention_bytes, retention_ms, max_message_bytes, timestamp_type, cleanup_policy),
                    id,
                )| StoredTopic {
                    id,
                    name,
                    partitions,
                    segment_bytes,
                    segment_ms,
                    retention_bytes,
                    retention_ms,
                    max_message_bytes,
                    timestamp_type,
                    cleanup_policy,
                },
            )
    }

    proptest! {
        // A fixed seed keeps runs reproducible; failures print the minimal case.
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7091_c5a1),
            ..ProptestConfig::default()
        })]

        /// Arbitrary bytes as a `meta/topics` file or as its payload behind a valid frame:
        /// never a panic, and a table that decodes re-encodes to a file that decodes the same.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let path = Path::new("meta/topics");
            for file in [bytes.clone(), frame_topics(&bytes)] {
                if let Ok(table) = decode_topics(path, &file) {
                    for t in &table {
                        let _ = t.config();
                    }
                    let again = encode_topics(&table).unwrap();
                    prop_assert_eq!(decode_topics(path, &again).unwrap(), table);
                    prop_assert!(again.len() <= file.len());
                }
            }
        }

        /// Tables round-trip, and the frame's CRC refuses every single-byte change and every cut.
        #[test]
        fn tables_round_trip_and_flips_are_refused(
            table in proptest::collection::vec(stored_topic(), 0..5),
            flip in 1u8..=255,
        ) {
            let path = Path::new("meta/topics");
            let bytes = encode_topics(&table).unwrap();
            prop_assert_eq!(decode_topics(path, &bytes).unwrap(), table);
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                prop_assert!(decode_topics(path, &bad).is_err(), "flip at {}", i);
            }
            for len in 0..bytes.len() {
                prop_assert!(decode_topics(path, &bytes[..len]).is_err(), "cut at {}", len);
            }
        }
    }
}
