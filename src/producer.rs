//! [`Producer`]: publishes records to topics, as Kafka's producer does, in-process.
//!
//! # Routing
//! A record with an explicit partition goes there; a keyed record goes to
//! `(murmur2(key) & 0x7fffffff) % partitions` (Kafka's Java client, so a key lands on the
//! same partition number in Kafka); a keyless one follows the configured
//! [`Partitioner`] (sticky by default).
//!
//! # Sending
//! - [`send`](Producer::send) blocks until the record is stored at the producer's
//!   [`Durability`] and returns its [`RecordMetadata`]. `Synced` senders on many threads
//!   share fsyncs (group commit): the append happens under the partition's lock, the fsync
//!   wait after it is released.
//! - [`send_async`](Producer::send_async) returns a [`Delivery`] at once. Records
//!   accumulate per partition and are written as one batch when `batch_size` bytes are
//!   reached or `linger` has passed (a background thread), on [`flush`](Producer::flush),
//!   or when the producer is closed or its last clone dropped. Every record's outcome
//!   reaches its `Delivery` (or callback); nothing is dropped silently. As in Kafka, the
//!   outcomes of one partition's records are reported in the order they were sent (one
//!   callback at a time), whichever thread wrote their batches. Unlike Kafka's `send`, the
//!   call that fills a batch writes it on its own thread (one `write(2)`, no fsync). With
//!   `Synced`, the producer's background thread then fsyncs it and reports its records
//!   (as Kafka's sender thread waits for `acks`): `send_async` never waits for an fsync,
//!   the next batches are written while one runs, and one fsync covers every batch
//!   written before it.
//! - [`send_batch`](Producer::send_batch) writes many records with one lock acquisition and
//!   one write per partition.
//!
//! One producer keeps the order of its records within a partition, whichever of these
//! calls sent them: a blocking send first writes the partition's pending async records.
//!
//! # Size limits
//! A batch is never larger than the topic's `max_message_bytes`: the accumulator closes a
//! batch before it would pass it, and a batch refused as too large is split, so only a
//! record that alone exceeds the limit fails, with [`Error::RecordTooLarge`], and nothing of
//! it is written. [`send_async`](Producer::send_async) refuses such a record at once,
//! before it joins a batch, so that it never fails the records batched with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::broker::{Broker, Topic};
use crate::config::Durability;
use crate::error::{Error, Result};
use crate::partitioner::{DefaultPartitioner, Partitioner};
use crate::record::{Compression, IntoPayload, Record};
use crate::storage::log::{AppendOptions, PartitionLog};

/// A record addressed to a topic (and optionally a partition): Kafka's `ProducerRecord`.
///
/// The topic name is held as an `Arc<str>`, as Java shares one `String` among the records
/// of a topic: [`new`](Self::new) takes a `&str` or `String` (one allocation), or an
/// `Arc<str>` that many records share (none). Key and value are [`Bytes`], shared the same
/// way. Sending many records to one topic, make the name an `Arc<str>` once and clone it:
/// creating and dropping such a record then allocates and frees nothing but its key and
/// value.
///
/// # Examples
/// ```
/// use brooklet::ProducerRecord;
/// use std::sync::Arc;
///
/// let r = ProducerRecord::new("orders").key("user-1").value(r#"{"amount": 42.5}"#).header("source", "api");
/// assert_eq!(r.topic(), "orders");
///
/// // Many records, one topic name.
/// let topic: Arc<str> = Arc::from("orders");
/// let batch: Vec<ProducerRecord> =
///     (0..3).map(|i| ProducerRecord::new(Arc::clone(&topic)).value(format!("event {i}"))).collect();
/// assert!(batch.iter().all(|r| r.topic() == "orders"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    topic: Arc<str>,
    partition: Option<u32>,
    record: Record,
}

/// The record without its address, for code that takes any `AsRef<Record>`.
impl AsRef<Record> for ProducerRecord {
    fn as_ref(&self) -> &Record {
        &self.record
    }
}

impl ProducerRecord {
    /// A record for `topic` (a `&str`, `String` or shared `Arc<str>`; a `&String` needs
    /// `.as_str()`), with no key, value or headers yet.
    #[inline]
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            record: Record::new(),
        }
    }

    /// Sends to this partition, bypassing the partitioner.
    #[must_use]
    #[inline]
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the key (it picks the partition, and orders records of one key).
    ///
    /// Any [`IntoPayload`](crate::IntoPayload): a `String`, a `Vec<u8>` or a `Bytes` is
    /// taken without a copy; a borrowed `&str` or `&[u8]` (`.key(name.as_str())`) is copied.
    #[must_use]
    #[inline]
    pub fn key(mut self, key: impl IntoPayload) -> Self {
        self.record = self.record.key(key);
        self
    }

    /// Sets the value; without one the record is a tombstone. It takes what
    /// [`key`](Self::key) takes.
    #[must_use]
    #[inline]
    pub fn value(mut self, value: impl IntoPayload) -> Self {
        self.record = self.record.value(value);
        self
    }

    /// Appends a header.
    #[must_use]
    #[inline]
    pub fn header(mut self, name: impl Into<String>, value: impl IntoPayload) -> Self {
        self.record = self.record.header(name, value);
        self
    }

    /// Sets the timestamp (ms since the epoch); without one, the send time is used (for an
    /// async send, the time of the call, however long the record then lingers).
    #[must_use]
    #[inline]
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.record = self.record.timestamp(ms);
        self
    }

    /// The topic.
    #[must_use]
    #[inline]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The record's key, value, headers and timestamp.
    #[must_use]
    #[inline]
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Wraps an existing [`Record`] for `topic`.
    #[inline]
    pub fn from_record(topic: impl Into<Arc<str>>, record: Record) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            record,
        }
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordMetadata {
    /// The topic (shared by every record sent to it: cloning the metadata or its topic
    /// copies no string, as with [`ConsumerRecord::topic`](crate::ConsumerRecord)).
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset in the partition.
    pub offset: u64,
    /// The stored timestamp (the append time for a LogAppendTime topic).
    pub timestamp: i64,
}

/// Settings of a [`Producer`].
///
/// # Examples
/// ```
/// use brooklet::{Compression, Durability, ProducerConfig};
/// use std::time::Duration;
/// let config = ProducerConfig::default()
///     .durability(Durability::Synced)
///     .linger(Duration::from_millis(2))
///     .compression(Compression::Lz4);
/// ```
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    durability: Durability,
    batch_size: usize,
    linger: Duration,
    compression: Compression,
    partitioner: Arc<dyn Partitioner>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            durability: Durability::Written,
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            partitioner: Arc::new(DefaultPartitioner::new()),
        }
    }
}

impl ProducerConfig {
    /// When a send counts as done (Kafka's `acks`). Default = `Written` (like `acks=1`:
    /// survives a crash of the process, not of the machine). Kafka's producer defaults to
    /// `acks=all` since 3.0, which replication makes cheap; without replicas its equivalent
    /// here is `Synced`, an fsync per send (shared by concurrent senders), so choose it
    /// where a power loss must not lose acknowledged records.
    ///
    /// With `Buffered` (like `acks=0`) a send returns once its record is in the partition's
    /// in-memory write buffer, which consumers cannot read yet. The producer's background
    /// thread writes the buffer out to the OS a [`linger`](Self::linger) after the first
    /// record it left there (as Kafka's producer sends even `acks=0` records after
    /// `linger.ms`); [`Producer::flush`], `close` and a full buffer write it out at once.
    /// Until then a crash of the process loses those records.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Bytes of records after which a partition's async batch is written (Kafka's
    /// `batch.size`). Default = 16 KiB.
    #[must_use]
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// How long an async batch may wait for more records (Kafka's `linger.ms`), and
    /// `Buffered` records in a partition's write buffer before they are written out.
    /// Default = 5 ms (Kafka 4's default). [`Duration::MAX`] (or any linger too long to add
    /// to the clock) means never by time: batches are written when full, on flush or close.
    #[must_use]
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Compression of each batch (Kafka's `compression.type`). Default = none.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// How keyless records (and, for custom ones, all records) pick a partition.
    /// Default = [`DefaultPartitioner`] (key hash, sticky for keyless).
    #[must_use]
    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> Self {
        self.partitioner = partitioner;
        self
    }
}

/// Counters of a producer (shared by its clones), from [`Producer::metrics`].
///
/// `records_sent` counts what reached a partition's log; `errors` counts records whose
/// send reported an error. A record can be in both: a `Synced` record written whose fsync
/// failed, or, when a [`send_batch`](Producer::send_batch) fails on one partition, its
/// records already written to others (the call reports every record of it failed).
/// Records refused by a [`TypedProducer`](crate::TypedProducer) because they did not
/// encode never reach the producer and are in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerMetrics {
    /// Records written to their partition's log.
    pub records_sent: u64,
    /// Encoded batch bytes written.
    pub bytes_sent: u64,
    /// Batches written.
    pub batches: u64,
    /// Records whose send reported an error (through `send`'s result, a [`Delivery`] or a
    /// callback).
    pub errors: u64,
    /// fsync rounds this producer's `Synced` sends ran (group commit makes this smaller
    /// than the number of sends).
    pub fsyncs: u64,
    /// Time spent waiting for those fsyncs.
    pub fsync_time: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
}

type Callback = Box<dyn FnOnce(Result<RecordMetadata>) + Send>;

/// How an async send reports its outcome.
enum Notify {
    /// Through the [`Delivery`] handle `enqueue` returns.
    Handle,
    /// By calling back.
    Callback(Callback),
}

/// Where the records of one written batch went, in the order they were queued.
#[derive(Debug)]
struct Stored {
    topic: Arc<str>,
    partition: u32,
    /// Offset and timestamp per record written (the batch's records but `refused`).
    placed: Vec<(u64, i64)>,
    /// Records of the batch not written (index in the batch, in order, and why): those a
    /// `max_message_bytes` lowered after they were queued no longer takes, refused alone,
    /// and, when a write failed after part of the batch was written, those from it on.
    refused: Vec<(usize, Error)>,
}

impl Stored {
    /// The outcome once the fsync of the records written failed with `e`: each fails with
    /// it, and each refused record keeps its own error.
    fn unsynced(&self, e: &Error) -> Stored {
        let mut own = self.refused.iter().peekable();
        let refused = (0..self.placed.len() + self.refused.len())
            .map(|i| match own.next_if(|(r, _)| *r == i) {
                Some((_, error)) => (i, error.duplicate()),
                None => (i, e.duplicate()),
            })
            .collect();
        Stored {
            topic: Arc::clone(&self.topic),
            partition: self.partition,
            placed: Vec::new(),
            refused,
        }
    }

    fn metadata(&self, index: usize) -> Option<RecordMetadata> {
        let before = self.refused.iter().take_while(|(i, _)| *i < index).count();
        self.placed
            .get(index - before)
            .map(|&(offset, timestamp)| RecordMetadata {
                topic: Arc::clone(&self.topic),
                partition: self.partition,
                offset,
                timestamp,
            })
    }
}

/// The outcome of one batch of async sends, shared by the deliveries of its records (as
/// Kafka's producer shares one result per batch among its records' futures): one
/// allocation and one wake-up per batch, not per record.
#[derive(Debug, Default)]
struct BatchOutcome {
    result: Mutex<Option<Result<Arc<Stored>>>>,
    ready: Condvar,
}

impl BatchOutcome {
    fn failed(error: Error) -> Arc<BatchOutcome> {
        Arc::new(BatchOutcome {
            result: Mutex::new(Some(Err(error))),
            ready: Condvar::new(),
        })
    }

    fn publish(&self, result: Result<Arc<Stored>>) {
        *self.result.lock() = Some(result);
        self.ready.notify_all();
    }
}

/// One record's outcome in a published batch result.
fn outcome_of(result: &Result<Arc<Stored>>, index: usize) -> Result<RecordMetadata> {
    match result {
        Ok(stored) => {
            if let Some((_, e)) = stored.refused.iter().find(|(i, _)| *i == index) {
                return Err(e.duplicate());
            }
            stored.metadata(index).ok_or_else(|| Error::InvalidArgument {
                reason: format!(
                    "no record {index} in the batch stored in {}-{}",
                    stored.topic, stored.partition
                ),
            })
        }
        Err(e) => Err(e.duplicate()),
    }
}

/// The outcome of a [`Producer::send_async`], to wait on.
#[derive(Debug)]
pub struct Delivery {
    batch: Arc<BatchOutcome>,
    /// The record's place in its batch.
    index: usize,
}

impl Delivery {
    /// Blocks until the record is stored (at the producer's durability) or has failed.
    ///
    /// # Errors
    /// The error that failed the record's batch, e.g. [`Error::RecordTooLarge`],
    /// [`Error::UnknownTopic`], [`Error::Io`].
    pub fn wait(self) -> Result<RecordMetadata> {
        let mut result = self.batch.result.lock();
        loop {
            if let Some(outcome) = result.as_ref() {
                return outcome_of(outcome, self.index);
            }
            self.batch.ready.wait(&mut result);
        }
    }

    /// The outcome if it is already known, without blocking (the same outcome each time
    /// it is asked).
    #[must_use]
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.batch
            .result
            .lock()
            .as_ref()
            .map(|outcome| outcome_of(outcome, self.index))
    }
}

/// Records waiting to be written to one partition.
#[derive(Default)]
struct Pending {
    records: Vec<Record>,
    /// The outcome the records' [`Delivery`] handles wait on (made for the first of them).
    outcome: Option<Arc<BatchOutcome>>,
    /// Callbacks, each with its record's index in `records`.
    callbacks: Vec<(usize, Callback)>,
    /// The records' [`estimated_size`]s, summed.
    bytes: usize,
    since: Option<Instant>,
}

/// Records of one `send_batch` bound for one partition, borrowed from the input.
struct Group<'a> {
    queue: Arc<PartitionQueue>,
    records: GroupRecords<'a>,
    /// The records' [`estimated_size`]s, summed.
    estimated: usize,
}

enum GroupRecords<'a> {
    /// The whole input, in order (one partition: the common case, which then builds no
    /// per-record list at all).
    All(&'a [ProducerRecord]),
    /// Some of the input: each record with its position in it.
    Some {
        records: Vec<&'a ProducerRecord>,
        indexes: Vec<usize>,
    },
}

struct TopicQueues {
    topic: Arc<Topic>,
    partitions: Vec<Option<Arc<PartitionQueue>>>,
}

/// The outcome of a written batch, to hand to its deliveries and callbacks once the
/// partition lock is released (see [`Reports`]).
struct Written {
    result: Result<Arc<Stored>>,
    outcome: Option<Arc<BatchOutcome>>,
    callbacks: Vec<(usize, Callback)>,
    /// A `Synced` batch's fsync, still to run: its records are reported once it is done.
    sync: Option<SyncPoint>,
}

/// Where a written `Synced` batch ends, for the fsync that makes it durable. The fsync runs
/// outside the partition's lock, when the batch is reported ([`PartitionQueue::report`]),
/// so the writes of later batches are not held up by it and one fsync covers every batch
/// written before it started (group commit).
#[derive(Debug, Clone, Copy)]
struct SyncPoint {
    /// The offset after the batch's last record.
    end: u64,
    /// The truncation epoch its records were appended in (see [`Shared::sync`]).
    epoch: u64,
    /// How many of its records were written (they fail if the fsync does).
    records: u64,
}

impl Written {
    /// Runs the batch's pending fsync, if any: a failure becomes the outcome of every record
    /// written, as if its write had failed (a record refused before the write keeps its
    /// own error).
    fn synced(mut self, queue: &PartitionQueue, counters: &Counters) -> Written {
        if let Some(point) = self.sync.take()
            && let Ok(stored) = &self.result
            && let Err(e) = sync_log(counters, queue, point.end, point.epoch)
        {
            counters.errors.fetch_add(point.records, Ordering::Relaxed);
            self.result = if stored.refused.is_empty() {
                Err(e)
            } else {
                Ok(Arc::new(stored.unsynced(&e)))
            };
        }
        self
    }

    /// Publishes the outcome to the deliveries, then calls the callbacks. A callback that
    /// panics is reported (tracing, error) and the others still run, as Kafka's producer
    /// catches a callback's exception.
    fn run(self) {
        let Written {
            result,
            outcome,
            callbacks,
            // Run by `synced`, which `report` calls first.
            sync: _,
        } = self;
        if let Some(outcome) = outcome {
            outcome.publish(match &result {
                Ok(stored) => Ok(Arc::clone(stored)),
                Err(e) => Err(e.duplicate()),
            });
        }
        for (index, callback) in callbacks {
            run_callback(callback, outcome_of(&result, index));
        }
    }
}

/// Runs a `send_with_callback` callback with its record's outcome. A panic is caught and
/// reported (tracing, error level), as Kafka's producer catches a callback's exception, so
/// that it neither reaches the thread that happened to complete the record nor stops the
/// other callbacks.
fn run_callback(callback: Callback, outcome: Result<RecordMetadata>) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(outcome))).is_err() {
        tracing::error!("a send_with_callback callback panicked");
    }
}

/// The written batches of one partition whose outcomes are still to be reported, in the
/// order they were written (queued under the partition's `pending` lock, which orders the
/// appends), and who reports them.
///
/// One thread at a time reports a partition's batches, oldest first, so its callbacks run
/// one at a time in the order the records were sent, as Kafka guarantees, whichever thread
/// wrote each batch: a thread that queues a batch while another reports leaves it to that
/// one. A callback that sends to its own partition thus queues behind itself instead of
/// deadlocking.
#[derive(Default)]
struct Reports {
    waiting: std::collections::VecDeque<Written>,
    /// A thread is reporting `waiting`.
    running: bool,
    /// Batches queued here so far.
    queued: u64,
    /// Batches whose outcomes have been reported (deliveries and callbacks done).
    reported: u64,
}

thread_local! {
    /// The producers (each by its [`Shared`]'s address) whose batches this thread is
    /// reporting (running callbacks), innermost last: a flush or send of one of them there
    /// cannot wait for its reports, its own caller's among them. Another producer's it can,
    /// as any thread can (a callback forwarding to a dead-letter producer and flushing it).
    static REPORTING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether this thread is reporting batches of `shared`'s producer (inside one of its
/// callbacks, perhaps).
fn reporting(shared: &Shared) -> bool {
    let id = std::ptr::from_ref(shared) as usize;
    REPORTING.with(|r| r.borrow().contains(&id))
}

/// Marks this thread as reporting batches of a producer while alive.
struct ReportingGuard;

impl ReportingGuard {
    fn enter(shared: &Shared) -> ReportingGuard {
        let id = std::ptr::from_ref(shared) as usize;
        REPORTING.with(|r| r.borrow_mut().push(id));
        ReportingGuard
    }
}

impl Drop for ReportingGuard {
    fn drop(&mut self) {
        REPORTING.with(|r| r.borrow_mut().pop());
    }
}

struct PartitionQueue {
    log: Arc<PartitionLog>,
    /// Bytes sent by blocking sends since the partitioner last moved on.
    sticky_bytes: std::sync::atomic::AtomicUsize,
    /// The topic's name, shared by every [`RecordMetadata`] of this partition.
    topic: Arc<str>,
    partition: u32,
    pending: Mutex<Pending>,
    /// Outcomes of written batches still to be reported, in write order.
    reports: Mutex<Reports>,
    /// Signalled as batches are reported, for [`flush`](Producer::flush).
    reported: Condvar,
    /// Batches queued in `reports` and not reported yet (changed under its lock): read
    /// without a lock by a blocking send, which has nothing to wait for when it is 0.
    unreported: AtomicU64,
    /// When this producer first left `Buffered` records in the log's write buffer since
    /// the linger thread last wrote it out: the linger thread writes them out a `linger`
    /// later, so that consumers see them (see [`ProducerConfig::durability`]).
    buffered_since: Mutex<Option<Instant>>,
    /// `buffered_since` is set (changed under its lock): read without the lock by each
    /// `Buffered` append, which has nothing to note while it is.
    buffered_noted: AtomicBool,
}

struct Shared {
    broker: Broker,
    config: ProducerConfig,
    /// Per topic name: the topic these queues belong to (a deleted and recreated topic is a
    /// new `Topic`, so its stale queues are replaced) and one queue per partition.
    queues: RwLock<BTreeMap<String, TopicQueues>>,
    /// Queues taken out of `queues` (their topic deleted) that a thread is still completing.
    /// They move here under `queues`' write lock and leave once completed and their callbacks
    /// run, so `flush` (which reads both, in that order) never misses a record sent before it.
    retiring: Mutex<Vec<Arc<PartitionQueue>>>,
    counters: Counters,
    closed: AtomicBool,
    /// Wakes the linger thread when a batch starts or the producer closes.
    wake: Condvar,
    /// How many times the linger thread was woken (a batch started, a `Synced` batch
    /// written): it sleeps only if this did not change since it began scanning the queues
    /// (else it scans again), so a batch started while it scans is not left for its next
    /// idle round.
    wake_lock: Mutex<u64>,
    /// The linger thread was started: `Synced` async batches are synced and reported there.
    linger_alive: AtomicBool,
}

/// Closes the producer when the last clone drops.
struct Handle {
    shared: Arc<Shared>,
    linger_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = close(&self.shared, &self.linger_thread) {
            tracing::warn!(error = %e, "producer closed with an error");
        }
    }
}

/// Publishes records to the broker's topics. `Clone + Send + Sync`; clones share one
/// accumulator and one set of counters. Dropping the last clone (or [`close`](Self::close))
/// writes everything still pending.
///
/// A producer holds its [`Broker`] open (it keeps a clone): drop every producer before
/// expecting the broker's directory to be closed and unlocked.
///
/// A callback that holds a clone of its own producer (forwarding failures to a dead-letter
/// topic, say) keeps the producer alive until it has run: until then, dropping the
/// application's clones closes nothing. Its batch is written within the `linger`; with a
/// [`linger`](ProducerConfig::linger) of [`Duration::MAX`] it would wait for `batch_size`,
/// so call [`close`](Self::close) (or [`flush`](Self::flush)) rather than rely on the drop.
///
/// # Examples
/// ```
/// use brooklet::{Broker, ProducerConfig, ProducerRecord, TopicConfig};
/// let broker = Broker::temporary()?;
/// broker.create_topic("orders", TopicConfig::with_partitions(3))?;
/// let producer = broker.producer(ProducerConfig::default());
/// let meta = producer.send(ProducerRecord::new("orders").key("user-1").value("42.5"))?;
/// println!("stored at {}/{}@{}", meta.topic, meta.partition, meta.offset);
/// let pending = producer.send_async(ProducerRecord::new("orders").key("user-2").value("7"));
/// producer.flush()?;
/// assert_eq!(&*pending.wait()?.topic, "orders");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.handle.shared.config)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A producer writing to this broker's topics.
    #[must_use]
    pub fn producer(&self, config: ProducerConfig) -> Producer {
        let shared = Arc::new(Shared {
            broker: self.clone(),
            config,
            queues: RwLock::new(BTreeMap::new()),
            retiring: Mutex::new(Vec::new()),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            wake: Condvar::new(),
            wake_lock: Mutex::new(0),
            linger_alive: AtomicBool::new(true),
        });
        let thread_shared = Arc::clone(&shared);
        let linger_thread = std::thread::Builder::new()
            .name("brooklet-linger".into())
            .spawn(move || linger_loop(&thread_shared))
            .map_err(|e| {
                shared.linger_alive.store(false, Ordering::Release);
                tracing::warn!(error = %e, "no linger thread: async batches wait for batch_size or flush");
            })
            .ok();
        Producer {
            handle: Arc::new(Handle {
                shared,
                linger_thread: Mutex::new(linger_thread),
            }),
        }
    }
}

impl Producer {
    /// Sends one record and blocks until it is stored at the configured durability.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] (unless the broker auto-creates topics);
    /// [`Error::InvalidPartition`]; [`Error::RecordTooLarge`] or [`Error::InvalidTimestamp`]
    /// (nothing written); [`Error::Io`] or [`Error::Poisoned`] from the partition; [`Error::Truncated`] if a
    /// `Synced` send's record was removed by a truncation before its fsync; [`Error::Closed`];
    /// [`Error::ReadOnly`] on a [read-only broker](Broker::open_read_only).
    pub fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        let shared = &self.handle.shared;
        let result = (|| {
            // Checked again under the partition's lock (a close may come in between); this
            // one keeps a closed producer from auto-creating the record's topic, as
            // `send_async` and `send_batch` check before routing too.
            shared.check_open()?;
            let queue = shared.queue_for(&record)?;
            let durability = shared.config.durability;
            let mut epoch = u64::MAX;
            let info = {
                let mut pending = queue.pending.lock();
                shared.check_open()?;
                // The pending records' outcomes go to their own deliveries, not this send.
                shared.write_pending(&queue, &mut pending);
                // The batches written before this record and not reported yet: reported
                // before it.
                let before = queue.unreported_before();
                let info = shared.append(
                    &queue,
                    std::slice::from_ref(&record.record),
                    durability.min_written(),
                    &mut epoch,
                );
                drop(pending);
                // Also what a `Synced` send_async left to the linger thread (perhaps busy
                // elsewhere), and what another thread is reporting: this record's outcome
                // comes after theirs (as Kafka's `send().get()`), unless this is one of this producer's callbacks.
                if let Some(before) = before {
                    queue.report(shared);
                    if !reporting(shared) {
                        queue.wait_reported_through(before);
                    }
                }
                info?
            };
            shared.note_sent(&queue, info.size_bytes);
            if durability == Durability::Synced {
                shared.sync(&queue, info.last_offset + 1, epoch)?;
            }
            Ok(RecordMetadata {
                topic: Arc::clone(&queue.topic),
                partition: queue.partition,
                offset: info.base_offset,
                timestamp: info.max_timestamp,
            })
        })();
        if result.is_err() {
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Queues a record and returns without waiting for it to be stored; wait on the
    /// [`Delivery`] for the outcome. Routing errors (unknown topic, bad partition) are
    /// delivered through it too, as are a record too large alone and one with a negative
    /// timestamp, which are refused before they join a batch.
    ///
    /// Memory stays bounded without a `buffer.memory`: the call whose record fills its
    /// partition's batch ([`ProducerConfig::batch_size`], or the topic's message size limit)
    /// writes that batch itself before it returns (the `pwrite`; a `Synced` batch's fsync is
    /// left to the producer's background thread). Where Kafka's `send` blocks for up to
    /// `max.block.ms` once its buffer is full, a fast sender here is slowed by doing the
    /// writes, and a producer holds at most one unwritten batch per partition.
    pub fn send_async(&self, record: ProducerRecord) -> Delivery {
        match self.handle.shared.enqueue(record, Notify::Handle) {
            Some(delivery) => delivery,
            // `enqueue` returns a handle for every `Notify::Handle`; this is never reached.
            None => Delivery {
                batch: BatchOutcome::failed(Error::InvalidArgument {
                    reason: "the record was queued without a delivery handle".into(),
                }),
                index: 0,
            },
        }
    }

    /// Queues a record; `callback` runs with its outcome, on the thread that writes the
    /// batch or on one still reporting an earlier batch of the same partition (with
    /// [`Durability::Synced`], usually the producer's background thread, which fsyncs the
    /// batch first): callbacks of one partition run one at a time, in the order their
    /// records were sent (as Kafka's).
    /// Keep it short. The batch's [`Delivery`] handles are completed before its callbacks
    /// run. A callback that panics is caught and reported through `tracing` (error level);
    /// the batch's other records are still completed.
    ///
    /// A record refused at once (producer closed, topic unknown or deleted, partition out of
    /// range, record too large alone) gets its callback at once, on the sending thread,
    /// ahead of earlier records' callbacks still to run — as Kafka's producer reports errors
    /// it finds in `send` itself.
    ///
    /// A callback may send (even with a blocking [`send`](Self::send)), flush, close, or drop
    /// the producer's last clone. A [`flush`](Self::flush) of this producer inside its
    /// callback writes what is pending without waiting for other callbacks (it may be one of
    /// them); a flush of another producer there waits as anywhere else. A callback must
    /// not wait for a later record of its partition ([`Delivery::wait`]) nor for a thread
    /// that is flushing this producer: those wait for it. Nor, as in Kafka (whose callbacks
    /// run on its one sender thread), should it wait for records that other threads sent:
    /// the thread running it may be the producer's background thread, which writes lingering
    /// batches and syncs `Synced` ones. A record it sent itself to another partition it may
    /// wait for once its batch is written: after a [`flush`](Self::flush) (inside a
    /// callback it writes and syncs without waiting for other callbacks) or when the record
    /// filled it.
    ///
    /// A blocking [`send`](Self::send) or [`send_batch`](Self::send_batch) returns after
    /// the outcomes of the records sent before it to the same partitions have been reported
    /// (as Kafka's `send().get()`), except inside a callback of the same producer.
    pub fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) {
        let _ = self.handle.shared.enqueue(record, Notify::Callback(Box::new(callback)));
    }

    /// Sends many records, one write per partition (more if a partition's records pass the
    /// topic's `max_message_bytes`), and blocks until all are stored. Returns where each
    /// record went, in the order given, as a [`BatchMetadata`] (one compact entry per record;
    /// a [`RecordMetadata`] per record on demand).
    ///
    /// The records are borrowed, as `Write::write_all` borrows its bytes: the call copies
    /// them into the log and leaves them to the caller (to reuse, or to hand to a
    /// dead-letter topic after an error). Resending the whole slice after an error
    /// duplicates the records of partitions written before it, as retrying a Kafka batch
    /// without idempotence would.
    ///
    /// # Errors
    /// As [`send`](Self::send); a closed producer refuses even an empty slice with
    /// [`Error::Closed`]. A routing error, a record too large alone
    /// ([`Error::RecordTooLarge`]) or one with a negative timestamp
    /// ([`Error::InvalidTimestamp`]) is found before anything is written: nothing of the call
    /// is stored then. On a later error (I/O), records of partitions already written stay
    /// written (their offsets are lost to the caller, as with a failed Kafka batch).
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, ProducerConfig, ProducerRecord, TopicConfig};
    /// use std::sync::Arc;
    ///
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("events", TopicConfig::with_partitions(2))?;
    /// let producer = broker.producer(ProducerConfig::default());
    /// let topic: Arc<str> = Arc::from("events");
    /// let batch: Vec<ProducerRecord> = (0..100)
    ///     .map(|i| ProducerRecord::new(Arc::clone(&topic)).key(format!("user-{}", i % 7)).value(format!("click {i}")))
    ///     .collect();
    /// let metas = producer.send_batch(&batch)?;
    /// assert_eq!(metas.len(), 100);
    /// let first = metas.get(0).expect("100 records were sent");
    /// let eighth = metas.get(7).expect("100 records were sent");
    /// // Per key, offsets grow in the order given.
    /// assert!(eighth.partition != first.partition || eighth.offset > first.offset);
    /// # Ok::<(), brooklet::Error>(())
    /// ```
    pub fn send_batch(&self, records: &[ProducerRecord]) -> Result<BatchMetadata> {
        let count = records.len() as u64;
        let result = self.send_batch_inner(records);
        if result.is_err() {
            self.handle.shared.counters.errors.fetch_add(count, Ordering::Relaxed);
        }
        result
    }

    fn send_batch_inner(&self, records: &[ProducerRecord]) -> Result<BatchMetadata> {
        let shared = &self.handle.shared;
        // Checked again under each partition's lock (a close may come in between); this one
        // refuses a call with nothing to write, which takes no lock.
        shared.check_open()?;
        let total = records.len();
        // Routed and checked before anything is written: a routing error, a record too
        // large alone or one with a negative timestamp fails the whole call (else the records
        // before it would be stored while the call reports them failed).
        let groups = shared.group_by_partition(records)?;
        let durability = shared.config.durability;
        let mut to_sync = Vec::new();
        // Per partition, the batches written before this call's records.
        let mut before = Vec::new();
        // Every record's entry, by its position in the input (each group fills its own).
        let mut out = BatchMetadata {
            topics: Vec::new(),
            records: Vec::with_capacity(total),
        };
        for group in groups {
            let mut epoch = u64::MAX;
            let infos = {
                let mut pending = group.queue.pending.lock();
                shared.check_open()?;
                // The pending records' outcomes go to their own deliveries.
                shared.write_pending(&group.queue, &mut pending);
                let unreported = group.queue.unreported_before();
                let infos = match &group.records {
                    GroupRecords::All(records) => shared.append_split(
                        &group.queue,
                        records,
                        group.estimated,
                        durability.min_written(),
                        &mut epoch,
                    ),
                    GroupRecords::Some { records, .. } => shared.append_split(
                        &group.queue,
                        records,
                        group.estimated,
                        durability.min_written(),
                        &mut epoch,
                    ),
                };
                drop(pending);
                // As `send`: earlier records' outcomes, including a `Synced` batch left to
                // the linger thread, are reported before this call returns.
                if let Some(unreported) = unreported {
                    group.queue.report(shared);
                    before.push((Arc::clone(&group.queue), unreported));
                }
                infos?
            };
            if let Some(last) = infos.last().map(|(_, info)| info.last_offset) {
                to_sync.push((Arc::clone(&group.queue), last + 1, epoch));
            }
            shared.note_sent(&group.queue, infos.iter().map(|(_, info)| info.size_bytes).sum());
            // A batch went out on this partition: a sticky partitioner moves on (as Kafka's
            // does when a batch is sent), so keyless `send_batch` calls spread.
            shared.config.partitioner.on_new_batch(
                &group.queue.topic,
                group.queue.log_partitions(&shared.broker),
                group.queue.partition,
            );
            let topic = out.topic_index(&group.queue.topic);
            let partition = group.queue.partition;
            let entry = |offset, timestamp| Placed {
                topic,
                partition,
                offset,
                timestamp,
            };
            match group.records {
                // The whole input in order: the entries as they come.
                GroupRecords::All(records) => {
                    out.records.reserve(records.len());
                    for_each_placed(records, &infos, |offset, timestamp| {
                        out.records.push(entry(offset, timestamp));
                    });
                }
                GroupRecords::Some { records, indexes } => {
                    // Every position is filled once the groups have all been written (the
                    // first group sizes the list; the rest find it sized).
                    out.records.resize(total, Placed::default());
                    let mut indexes = indexes.into_iter();
                    for_each_placed(&records, &infos, |offset, timestamp| {
                        if let Some(slot) = indexes.next().and_then(|i| out.records.get_mut(i)) {
                            *slot = entry(offset, timestamp);
                        }
                    });
                }
            }
        }
        if !reporting(shared) {
            for (queue, before) in before {
                queue.wait_reported_through(before);
            }
        }
        if durability == Durability::Synced {
            for (queue, end, epoch) in to_sync {
                shared.sync(&queue, end, epoch)?;
            }
        }
        Ok(out)
    }

    /// Writes every queued record and waits until they are stored, and (as Kafka's
    /// `flush`) until every record sent before the call, from any clone or thread, has
    /// completed: its [`Delivery`] is done and its callback has run. With
    /// [`Durability::Buffered`] it also hands the partitions' buffered records to the OS
    /// (no fsync), so consumers can read everything sent before it. Inside one of this
    /// producer's callbacks it only writes (see [`send_with_callback`](Self::send_with_callback));
    /// inside another producer's it waits as anywhere else.
    ///
    /// # Errors
    /// The first error writing a pending batch (each record's own outcome also reaches its
    /// `Delivery`).
    pub fn flush(&self) -> Result<()> {
        self.handle.shared.flush_all()
    }

    /// Flushes, stops the linger thread, and refuses further sends with
    /// [`Error::Closed`]. Other clones are closed too. Dropping the last clone does the same.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn close(&self) -> Result<()> {
        close(&self.handle.shared, &self.handle.linger_thread)
    }

    /// The producer's counters.
    #[must_use]
    pub fn metrics(&self) -> ProducerMetrics {
        let c = &self.handle.shared.counters;
        ProducerMetrics {
            records_sent: c.records.load(Ordering::Relaxed),
            bytes_sent: c.bytes.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsync_time: Duration::from_nanos(c.fsync_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Where `records`, appended as the batches `infos` (`(index of first record, info)`, in
/// order, covering every record but those refused alone), went: calls `place(offset,
/// stored timestamp)` per record written, in order. (Plain loops rather than an iterator:
/// a `flat_map` gives `Vec::extend` no size, and collecting one cost a `send_batch` of
/// small records about a tenth of its instructions.)
///
/// A record's stored timestamp is the append time in a batch stored as LogAppendTime, else the
/// record's own (or the append time when it had none, which `max_timestamp` equals for a
/// batch of one; for larger batches the append time is the batch's "now"). Async records
/// never lack one here: `send_async` stamps them when they are sent.
fn for_each_placed<R: AsRef<Record>>(
    records: &[R],
    infos: &[(usize, crate::AppendInfo)],
    mut place: impl FnMut(u64, i64),
) {
    for (first, info) in infos {
        // A batch holds its records from `first` on: its offsets say how many (a record
        // refused alone between two batches is in neither).
        let count = usize::try_from(info.last_offset - info.base_offset + 1).unwrap_or(usize::MAX);
        let batch = records
            .get(*first..first.saturating_add(count).min(records.len()))
            .unwrap_or_default();
        if info.timestamp_type == crate::record::TimestampType::LogAppendTime {
            for offset in (info.base_offset..).take(batch.len()) {
                place(offset, info.max_timestamp);
            }
        } else {
            for (offset, record) in (info.base_offset..).zip(batch) {
                place(offset, record.as_ref().timestamp_ms().unwrap_or(info.append_time));
            }
        }
    }
}

/// Where each record of one [`Producer::send_batch`] was stored, in the order given.
///
/// Kafka's produce response reports a base offset per partition, and the client derives
/// each record's metadata from it; this keeps one compact entry per record (partition,
/// offset, timestamp) and the batch's topic names once, and makes a [`RecordMetadata`] when
/// asked ([`get`](Self::get), [`iter`](Self::iter)). Sending many records thus takes no
/// reference on a topic name per record.
///
/// # Examples
/// ```
/// use brooklet::{Broker, ProducerConfig, ProducerRecord, TopicConfig};
/// let broker = Broker::temporary()?;
/// broker.create_topic("events", TopicConfig::with_partitions(1))?;
/// let producer = broker.producer(ProducerConfig::default());
/// let sent = producer.send_batch(&[
///     ProducerRecord::new("events").value("a"),
///     ProducerRecord::new("events").value("b"),
/// ])?;
/// assert_eq!(sent.len(), 2);
/// let second = sent.get(1).expect("two records were sent");
/// assert_eq!((&*second.topic, second.partition, second.offset), ("events", 0, 1));
/// let offsets: Vec<u64> = sent.iter().map(|m| m.offset).collect();
/// assert_eq!(offsets, [0, 1]);
/// # Ok::<(), brooklet::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchMetadata {
    /// The batch's distinct topic names.
    topics: Vec<Arc<str>>,
    /// One entry per record, in the order given.
    records: Vec<Placed>,
}

/// Where one record went: an index into [`BatchMetadata::topics`], and the rest of its
/// [`RecordMetadata`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Placed {
    topic: u32,
    partition: u32,
    offset: u64,
    timestamp: i64,
}

impl BatchMetadata {
    /// How many records were sent.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch was empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The metadata of the `index`th record sent; `None` past the end.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<RecordMetadata> {
        self.records.get(index).and_then(|p| self.metadata(p))
    }

    /// Every record's metadata, in the order the records were given.
    pub fn iter(&self) -> BatchMetadataIter<'_> {
        BatchMetadataIter {
            batch: self,
            records: self.records.iter(),
        }
    }

    /// Every record's metadata, in the order the records were given, as a `Vec`.
    #[must_use]
    pub fn to_vec(&self) -> Vec<RecordMetadata> {
        self.iter().collect()
    }

    fn metadata(&self, p: &Placed) -> Option<RecordMetadata> {
        Some(RecordMetadata {
            topic: Arc::clone(self.topics.get(p.topic as usize)?),
            partition: p.partition,
            offset: p.offset,
            timestamp: p.timestamp,
        })
    }

    /// The index of `topic` in `topics`, adding it if new.
    fn topic_index(&mut self, topic: &Arc<str>) -> u32 {
        match self.topics.iter().position(|t| Arc::ptr_eq(t, topic) || **t == **topic) {
            Some(i) => i as u32,
            None => {
                self.topics.push(Arc::clone(topic));
                (self.topics.len() - 1) as u32
            }
        }
    }
}

impl<'a> IntoIterator for &'a BatchMetadata {
    type Item = RecordMetadata;
    type IntoIter = BatchMetadataIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for BatchMetadata {
    type Item = RecordMetadata;
    type IntoIter = std::vec::IntoIter<RecordMetadata>;
    fn into_iter(self) -> Self::IntoIter {
        self.to_vec().into_iter()
    }
}

/// The records' metadata, from [`BatchMetadata::iter`].
#[derive(Debug, Clone)]
pub struct BatchMetadataIter<'a> {
    batch: &'a BatchMetadata,
    records: std::slice::Iter<'a, Placed>,
}

impl Iterator for BatchMetadataIter<'_> {
    type Item = RecordMetadata;

    fn next(&mut self) -> Option<RecordMetadata> {
        let placed = self.records.next()?;
        self.batch.metadata(placed)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

impl ExactSizeIterator for BatchMetadataIter<'_> {}

impl Durability {
    /// The durability of the write done under the partition lock: `Synced` writes first
    /// and syncs after the lock is released (group commit).
    fn min_written(self) -> Durability {
        match self {
            Durability::Synced => Durability::Written,
            other => other,
        }
    }
}

impl Shared {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed { what: "producer" })
        } else {
            Ok(())
        }
    }

    /// The queue of the partition `record` goes to.
    ///
    /// Once this producer has sent to a partition, its queue is found in the producer's own
    /// map alone: the topic it holds is live as long as the queue's log is not marked
    /// deleted (a deleted or recreated topic marks every old log), and its partition count
    /// is read from it, so added partitions are seen. Otherwise the broker is asked, which
    /// also auto-creates and reports an unknown topic.
    fn queue_for(&self, record: &ProducerRecord) -> Result<Arc<PartitionQueue>> {
        let mut routed = None;
        // The partitioner (the application's code, perhaps) runs outside the map's lock.
        let known = self.queues.read().get(&*record.topic).map(|q| Arc::clone(&q.topic));
        if let Some(known) = known {
            // A routing error here is left to the broker's answer below (this topic may
            // be a deleted one, with another partition count).
            if let Ok(partition) = self.route(known.partition_count(), record) {
                if let Some(queues) = self.queues.read().get(&*record.topic)
                    && Arc::ptr_eq(&queues.topic, &known)
                    && let Some(Some(queue)) = queues.partitions.get(partition as usize)
                    && !queue.log.is_deleted()
                {
                    return Ok(Arc::clone(queue));
                }
                routed = Some((known, partition));
            }
        }
        let topic = self.broker.topic_or_create(&record.topic).inspect_err(|e| {
            if matches!(e, Error::UnknownTopic { .. }) {
                self.forget_deleted_topics();
            }
        })?;
        let partition = match routed {
            // Routed on this very topic: keep the partitioner's choice (it may keep state).
            Some((routed_on, partition)) if Arc::ptr_eq(&routed_on, &topic) => partition,
            _ => self.route(topic.partition_count(), record)?,
        };
        self.queue(&topic, partition)
    }

    /// Routes `records` and groups them by partition, keeping their order within each group
    /// (one group per partition, however the topics interleave), borrowing them. Each topic
    /// is resolved once. Every record is routed before anything is written, so a routing
    /// error writes nothing; each group's lists are allocated once at their final size, and
    /// a batch for a single partition (the common case) is the input slice itself.
    fn group_by_partition<'a>(&self, records: &'a [ProducerRecord]) -> Result<Vec<Group<'a>>> {
        /// One group as the records are routed: each is checked against its partition's
        /// limit on the way, one pass over the records (which a large batch brings in from
        /// memory).
        struct Tally {
            queue: Arc<PartitionQueue>,
            max_batch: usize,
            count: usize,
            /// The records' [`estimated_size`]s, summed.
            estimated: usize,
        }
        let mut queues: Vec<Tally> = Vec::new();
        // Per record: the index of its group; filled only once a second group appears (a
        // batch for one partition, the common case, needs none).
        let mut group_of_record: Vec<usize> = Vec::new();
        // Per topic seen: the topic and, per partition, the index of its group.
        let mut topics: Vec<(Arc<Topic>, Vec<Option<usize>>)> = Vec::new();
        let mut current = 0;
        // The previous record's topic name: records sharing one `Arc<str>` skip comparing.
        let mut previous: Option<&Arc<str>> = None;
        for (i, record) in records.iter().enumerate() {
            let same_topic = previous.is_some_and(|p| Arc::ptr_eq(p, &record.topic));
            previous = Some(&record.topic);
            if !same_topic && topics.get(current).is_none_or(|(t, _)| *t.name != *record.topic) {
                current = match topics.iter().position(|(t, _)| *t.name == *record.topic) {
                    Some(seen) => seen,
                    None => {
                        let topic = self.broker.topic_or_create(&record.topic).inspect_err(|e| {
                            if matches!(e, Error::UnknownTopic { .. }) {
                                self.forget_deleted_topics();
                            }
                        })?;
                        let slots = vec![None; topic.partition_count() as usize];
                        topics.push((topic, slots));
                        topics.len() - 1
                    }
                };
            }
            let Some((topic, group_of)) = topics.get_mut(current) else {
                continue;
            };
            // The partition count as the batch started (a batch routes on one snapshot
            // of the topic, as Kafka's producer routes on one metadata version).
            let partition = self.route(group_of.len() as u32, record)?;
            let slot = group_of.get(partition as usize).copied().flatten();
            let g = match slot {
                Some(g) => g,
                None => {
                    let queue = self.queue(topic, partition)?;
                    queues.push(Tally {
                        max_batch: queue.max_batch(),
                        queue,
                        count: 0,
                        estimated: 0,
                    });
                    if let Some(slot) = group_of.get_mut(partition as usize) {
                        *slot = Some(queues.len() - 1);
                    }
                    queues.len() - 1
                }
            };
            if let Some(tally) = queues.get_mut(g) {
                tally.estimated += check_record(&record.record, tally.max_batch, self.config.compression)?;
                tally.count += 1;
            }
            if !group_of_record.is_empty() || g != 0 {
                if group_of_record.is_empty() {
                    // The records before this one all went to the first group.
                    group_of_record.reserve_exact(records.len());
                    group_of_record.resize(i, 0);
                }
                group_of_record.push(g);
            }
        }
        if queues.len() == 1
            && let Some(Tally { queue, estimated, .. }) = queues.pop()
        {
            // One partition: the input as it is.
            return Ok(vec![Group {
                queue,
                records: GroupRecords::All(records),
                estimated,
            }]);
        }
        let mut groups: Vec<Group> = queues
            .into_iter()
            .map(|tally| Group {
                queue: tally.queue,
                records: GroupRecords::Some {
                    records: Vec::with_capacity(tally.count),
                    indexes: Vec::with_capacity(tally.count),
                },
                estimated: tally.estimated,
            })
            .collect();
        for (i, (record, g)) in records.iter().zip(group_of_record).enumerate() {
            if let Some(Group {
                records: GroupRecords::Some { records, indexes },
                ..
            }) = groups.get_mut(g)
            {
                records.push(record);
                indexes.push(i);
            }
        }
        Ok(groups)
    }

    /// The partition for `record` in a topic of `partitions` partitions: explicit, or the
    /// partitioner's choice.
    #[inline]
    fn route(&self, partitions: u32, record: &ProducerRecord) -> Result<u32> {
        let partition = match record.partition {
            Some(p) => p,
            None => self.config.partitioner.partition(
                &record.topic,
                record.record.key_bytes().map(|k| k.as_ref()),
                record.record.value_bytes().map(|v| v.as_ref()),
                partitions,
            ),
        };
        if partition >= partitions {
            return Err(invalid_partition(&record.topic, partition, partitions));
        }
        Ok(partition)
    }

    fn queue(&self, topic: &Arc<Topic>, partition: u32) -> Result<Arc<PartitionQueue>> {
        if let Some(queues) = self.queues.read().get(&topic.name)
            && Arc::ptr_eq(&queues.topic, topic)
            && let Some(Some(queue)) = queues.partitions.get(partition as usize)
        {
            return Ok(Arc::clone(queue));
        }
        let log = topic.partition(partition)?;
        let mut stale = Vec::new();
        let queue = self.queue_slot(topic, partition, log, &mut stale);
        self.complete_retired(stale);
        queue
    }

    /// Completes queues retired from `queues` (moved to `retiring` under its write lock):
    /// the records they still hold get `UnknownTopic` (their logs are marked deleted), never
    /// dropped with their queues; then they leave `retiring` (or, while another thread still
    /// reports their batches, once it is done).
    fn complete_retired(&self, stale: Vec<Arc<PartitionQueue>>) {
        if stale.is_empty() {
            return;
        }
        for old in &stale {
            let _ = self.write_pending(old, &mut old.pending.lock());
            old.report(self);
        }
        // A queue whose batches another thread is still reporting (it runs their callbacks,
        // one at a time) stays until that thread is done, so that a flush still waits for
        // them; `forget_deleted_topics` lets it go then.
        self.retiring
            .lock()
            .retain(|q| !stale.iter().any(|old| Arc::ptr_eq(old, q)) || !q.is_done());
    }

    /// The queue of `partition` of `topic` (created with `log` if missing), under the
    /// map's write lock. Queues of a deleted incarnation of the topic are moved to `stale`
    /// and `retiring`, for [`complete_retired`](Self::complete_retired).
    fn queue_slot(
        &self,
        topic: &Arc<Topic>,
        partition: u32,
        log: Arc<PartitionLog>,
        stale: &mut Vec<Arc<PartitionQueue>>,
    ) -> Result<Arc<PartitionQueue>> {
        let mut all = self.queues.write();
        // No queue is created after close (which sets `closed` under this lock), so close's
        // last flush sees every queue.
        self.check_open()?;
        // Routed on a topic deleted meanwhile (its partitioner ran while another thread
        // deleted it, and perhaps created it again): it must not replace the queues of the
        // topic now of that name. `delete_topic` marks every log before a topic of that name
        // can be created again, so one checked under this lock cannot replace a newer one.
        if log.is_deleted() {
            return Err(Error::UnknownTopic {
                topic: topic.name.clone(),
            });
        }
        let queues = all.entry(topic.name.clone()).or_insert_with(|| TopicQueues {
            topic: Arc::clone(topic),
            partitions: Vec::new(),
        });
        if !Arc::ptr_eq(&queues.topic, topic) {
            // The topic was deleted and created again: its old queues are stale.
            let old = std::mem::replace(
                queues,
                TopicQueues {
                    topic: Arc::clone(topic),
                    partitions: Vec::new(),
                },
            );
            let old: Vec<_> = old.partitions.into_iter().flatten().collect();
            self.retiring.lock().extend(old.iter().cloned());
            stale.extend(old);
        }
        if queues.partitions.len() <= partition as usize {
            queues.partitions.resize(partition as usize + 1, None);
        }
        let slot = queues.partitions.get_mut(partition as usize);
        if let Some(Some(queue)) = slot.as_deref() {
            return Ok(Arc::clone(queue));
        }
        let queue = Arc::new(PartitionQueue {
            log,
            topic: Arc::from(topic.name.as_str()),
            partition,
            sticky_bytes: std::sync::atomic::AtomicUsize::new(0),
            pending: Mutex::new(Pending::default()),
            reports: Mutex::new(Reports::default()),
            reported: Condvar::new(),
            unreported: AtomicU64::new(0),
            buffered_since: Mutex::new(None),
            buffered_noted: AtomicBool::new(false),
        });
        if let Some(slot) = slot {
            *slot = Some(Arc::clone(&queue));
        }
        Ok(queue)
    }

    /// Drops the queues of deleted topics, first completing what they still held (with
    /// `UnknownTopic`: their logs are marked deleted), so that the producer no longer holds
    /// the deleted partitions' files open: a deleted topic's disk space is freed while the
    /// producer lives. Run by the linger thread, and by a send that finds a topic unknown.
    /// A sender still holding one of these queues gets `UnknownTopic` from it (its log is
    /// marked deleted), never a record stranded in it.
    fn forget_deleted_topics(&self) {
        // Retired queues left to the threads reporting them, now done.
        self.retiring.lock().retain(|q| !q.is_done());
        // Only once every partition is marked: `delete_topic` marks them one after another,
        // and a queue retired before its log is marked could still take a record (senders
        // check their own queue's log) that nobody would then complete.
        let is_deleted = |q: &TopicQueues| {
            let mut queues = q.partitions.iter().flatten().peekable();
            queues.peek().is_some() && queues.all(|p| p.log.is_deleted())
        };
        if !self.queues.read().values().any(is_deleted) {
            return;
        }
        let mut stale = Vec::new();
        let mut all = self.queues.write();
        all.retain(|_, q| {
            if is_deleted(q) {
                stale.extend(q.partitions.drain(..).flatten());
                return false;
            }
            true
        });
        self.retiring.lock().extend(stale.iter().cloned());
        drop(all);
        self.complete_retired(stale);
    }

    /// Every partition queue, for flushing: those in the map and those being retired.
    fn all_queues(&self) -> Vec<Arc<PartitionQueue>> {
        let all = self.queues.read();
        let mut queues: Vec<_> = all
            .values()
            .flat_map(|q| q.partitions.iter().flatten().cloned())
            .collect();
        queues.extend(self.retiring.lock().iter().cloned());
        queues
    }

    /// Appends one batch; lowers `epoch` to the truncation epoch it was appended in, for the
    /// `Synced` fsync after it (see [`sync`](Self::sync)).
    fn append<R: AsRef<Record>>(
        &self,
        queue: &PartitionQueue,
        records: &[R],
        durability: Durability,
        epoch: &mut u64,
    ) -> Result<crate::AppendInfo> {
        if queue.log.is_deleted() {
            return Err(queue.unknown_topic());
        }
        let options = AppendOptions {
            durability,
            compression: self.config.compression,
        };
        let (info, appended_in) = queue
            .log
            .append_in_epoch(records, options)
            // A delete racing this append closes the log under it.
            .map_err(|e| queue.deleted_or(e))?;
        *epoch = (*epoch).min(appended_in);
        if durability == Durability::Buffered {
            self.note_buffered(queue);
        }
        self.counters.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(info.size_bytes as u64, Ordering::Relaxed);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        Ok(info)
    }

    /// Notes that `queue`'s log holds `Buffered` records of this producer, for the linger
    /// thread to write out a `linger` after the first of them.
    fn note_buffered(&self, queue: &PartitionQueue) {
        // Set, it stays set until the linger thread clears it, then writes the buffer out:
        // a record appended before that write is in it. (One appended after the write
        // finds the flag cleared, the log's lock ordering the two.)
        if queue.buffered_noted.load(Ordering::Acquire) {
            return;
        }
        let mut since = queue.buffered_since.lock();
        if since.is_none() {
            *since = Some(Instant::now());
            queue.buffered_noted.store(true, Ordering::Release);
            drop(since);
            self.wake_linger();
        }
    }

    /// Appends `records`, whose [`estimated_size`]s sum to `estimated`, in as few batches
    /// as the size limit allows: a batch refused as too large is split in half and retried,
    /// so only a record too large alone fails, and its error ends the call. Returns `(index
    /// of the batch's first record, info)` per batch written; lowers `epoch` as
    /// [`append`](Self::append) does.
    fn append_split<R: AsRef<Record>>(
        &self,
        queue: &PartitionQueue,
        records: &[R],
        estimated: usize,
        durability: Durability,
        epoch: &mut u64,
    ) -> Result<Vec<(usize, crate::AppendInfo)>> {
        let mut out = Vec::new();
        self.append_split_into(queue, records, Some(estimated), durability, epoch, None, 0, &mut out)?;
        Ok(out)
    }

    /// Appends `records` as [`append_split`](Self::append_split) does (`estimated`, if
    /// known, saves a pass to size them), adding `base` to every index it reports and
    /// pushing the batches written to `out` as it goes: after an error, `out` still says
    /// which records were written before it (always a prefix of `records`, with
    /// `refused`). With `refused`, a record too large alone is put there (its index, and
    /// the error) and the others are written.
    #[allow(clippy::too_many_arguments)]
    fn append_split_into<R: AsRef<Record>>(
        &self,
        queue: &PartitionQueue,
        records: &[R],
        estimated: Option<usize>,
        durability: Durability,
        epoch: &mut u64,
        mut refused: Option<&mut Vec<(usize, Error)>>,
        base: usize,
        out: &mut Vec<(usize, crate::AppendInfo)>,
    ) -> Result<()> {
        let max = queue.max_batch();
        let chunks = match estimated {
            // What `size_chunks` would find, without its pass over the records.
            Some(bytes) if records.len() <= 1 || crate::record::batch::HEADER_LEN + bytes <= max => vec![records],
            _ => size_chunks(records, max),
        };
        let mut start = base;
        for chunk in chunks {
            match self.append(queue, chunk, durability, epoch) {
                Ok(info) => out.push((start, info)),
                Err(Error::RecordTooLarge { .. }) if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    for (offset, part) in [(0, a), (a.len(), b)] {
                        let inner = refused.as_deref_mut();
                        self.append_split_into(queue, part, None, durability, epoch, inner, start + offset, out)?;
                    }
                }
                Err(e @ Error::RecordTooLarge { .. }) if let Some(refused) = refused.as_deref_mut() => {
                    refused.push((start, e));
                }
                Err(e) => return Err(e),
            }
            start += chunk.len();
        }
        Ok(())
    }

    /// fsyncs `queue`'s log through `end`, counting the round if this call ran it. `epoch`
    /// is the lowest truncation epoch the records were appended in: if a truncation since
    /// then cut them, this fails with [`Error::Truncated`]; if the topic was deleted before
    /// they were synced, with [`Error::UnknownTopic`].
    fn sync(&self, queue: &PartitionQueue, end: u64, epoch: u64) -> Result<()> {
        sync_log(&self.counters, queue, end, epoch)
    }

    /// Whether `Synced` async batches leave their fsync to the linger thread (see
    /// [`write_pending`](Self::write_pending)), so that the `send_async` call that fills a
    /// batch only writes it. Without a linger thread, that call fsyncs.
    fn defers_sync(&self) -> bool {
        self.config.durability == Durability::Synced && self.linger_alive.load(Ordering::Acquire)
    }

    /// Wakes the linger thread to look at the queues again: a batch started, a written one
    /// waits to be synced and reported, or the producer closed.
    fn wake_linger(&self) {
        let mut started = self.wake_lock.lock();
        *started = started.wrapping_add(1);
        self.wake.notify_one();
    }

    /// Queues `record` for its partition; returns its [`Delivery`] for `Notify::Handle`.
    fn enqueue(&self, mut record: ProducerRecord, notify: Notify) -> Option<Delivery> {
        let refuse = |e: Error, notify: Notify| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            match notify {
                Notify::Handle => Some(Delivery {
                    batch: BatchOutcome::failed(e),
                    index: 0,
                }),
                Notify::Callback(callback) => {
                    run_callback(callback, Err(e));
                    None
                }
            }
        };
        let queue = match self.check_open().and_then(|()| self.queue_for(&record)) {
            Ok(queue) => queue,
            Err(e) => return refuse(e, notify),
        };
        // A record too large alone, or with a negative timestamp, is refused at once, as
        // Kafka's `send` checks a record's size before batching it. Queued, it would share
        // its batch's one outcome with the records around it: the estimate below keeps such a
        // record out of other records' batches only uncompressed, and a compressed one that
        // fits uncompressed but not compressed failed its whole batch, whose other records
        // were partly stored.
        if let Err(e) = check_record(&record.record, queue.max_batch(), self.config.compression) {
            return refuse(e, notify);
        }
        // Stamped now, as Kafka's `send` stamps a record without a timestamp: its batch may be
        // written a linger (or a flush) later, and the write's time is not when it was sent.
        if record.record.timestamp_ms().is_none() {
            record.record = record.record.timestamp(crate::record::now_ms());
        }
        let size = estimated_size(&record.record);
        let mut pending = queue.pending.lock();
        // Checked again under the partition lock: close's last flush takes this lock after
        // setting `closed`, so a record pushed here is either flushed by it or refused. A
        // queue whose topic was deleted meanwhile takes nothing more: once the topic is
        // recreated, its old queues are drained one last time and forgotten.
        if let Err(e) = self.check_open() {
            drop(pending);
            return refuse(e, notify);
        }
        if queue.log.is_deleted() {
            drop(pending);
            return refuse(queue.unknown_topic(), notify);
        }
        let mut wrote = false;
        // A batch was completed here: the partitioner is told once the lock is released.
        let mut filled = false;
        if pending.bytes > 0 && pending.bytes + size > queue.max_batch() {
            // Close the batch before it would pass the topic's limit. That completes it as
            // reaching `batch_size` does: a `batch_size` above the limit is never reached,
            // and a sticky partitioner told only then would never move on.
            wrote |= self.write_pending(&queue, &mut pending).is_some();
            filled = true;
        }
        let first = pending.records.is_empty();
        let index = pending.records.len();
        pending.records.push(record.record);
        let delivery = match notify {
            Notify::Handle => Some(Delivery {
                batch: Arc::clone(pending.outcome.get_or_insert_with(Arc::default)),
                index,
            }),
            Notify::Callback(callback) => {
                pending.callbacks.push((index, callback));
                None
            }
        };
        pending.bytes += size;
        if pending.bytes >= self.config.batch_size {
            wrote |= self.write_pending(&queue, &mut pending).is_some();
            filled = true;
        } else if first {
            pending.since = Some(Instant::now());
            self.wake_linger();
        }
        drop(pending);
        if wrote {
            // Each record's outcome goes to its delivery or callback; nothing else to report.
            // A `Synced` batch is reported once synced, by the linger thread: this call
            // returns without waiting for the fsync, and the next batches are written while
            // it runs (as Kafka's sender thread, not `send`, waits for acks). Not from one of
            // this producer's callbacks, perhaps on its linger thread: it may wait for this
            // record.
            if self.defers_sync() && !reporting(self) {
                self.wake_linger();
            } else {
                queue.report(self);
            }
        }
        // Outside the partition's lock, as `partition`: the partitioner may send again. Its
        // panic reaches the caller, but only once the batch written above has been reported
        // (else its deliveries would wait for the next write).
        if filled && let Err(panic) = self.on_new_batch(&queue) {
            std::panic::resume_unwind(panic);
        }
        delivery
    }

    /// Tells the partitioner a batch of `queue` was written, catching its panic (user code)
    /// so that the caller can first finish what it must.
    fn on_new_batch(&self, queue: &PartitionQueue) -> std::thread::Result<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.config
                .partitioner
                .on_new_batch(&queue.topic, queue.log_partitions(&self.broker), queue.partition);
        }))
    }

    /// Writes a partition's pending records as one batch (split if too large) and queues
    /// its outcome in the partition's [`Reports`]; the caller runs
    /// [`report`](PartitionQueue::report) once it has released the partition lock (so a
    /// callback may send again), or leaves that to the linger thread. A `Synced` batch is
    /// fsynced by whoever reports it, outside the lock, before its records are reported.
    /// Returns `None` if nothing was pending, else whether the batch was written, and for
    /// `Synced` where it ends (a caller that must know it is durable syncs through it).
    fn write_pending(&self, queue: &PartitionQueue, pending: &mut Pending) -> Option<Result<Option<SyncPoint>>> {
        if pending.records.is_empty() {
            return None;
        }
        let records = std::mem::take(&mut pending.records);
        let outcome = pending.outcome.take();
        let callbacks = std::mem::take(&mut pending.callbacks);
        // The records' estimated sizes, summed as they were queued.
        let estimated = std::mem::take(&mut pending.bytes);
        pending.since = None;
        let durability = self.config.durability;
        let mut epoch = u64::MAX;
        // Each record fit alone when it was queued, but `alter_topic_config` may have lowered
        // the limit since: a record the log now refuses alone fails alone, as at its send,
        // and the others are written (else the batch would fail after writing the records
        // before it). Refused in order, so `refused` is sorted by index.
        let mut refused = Vec::new();
        let mut infos = Vec::new();
        let mut result = self
            .append_split_into(
                queue,
                &records,
                Some(estimated),
                durability.min_written(),
                &mut epoch,
                Some(&mut refused),
                0,
                &mut infos,
            )
            .map(|()| std::mem::take(&mut infos));
        // A write that failed after some of the batch was written (it went out as several
        // batches) or refused: those records are in the log, so they are reported stored
        // (or keep their own refusal), and only the records from the failed write on fail
        // with its error (they are not in the log).
        if let Err(e) = &result
            && !(infos.is_empty() && refused.is_empty())
        {
            let done = infos
                .iter()
                .map(|(first, info)| first + usize::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0))
                .chain(refused.iter().map(|(i, _)| i + 1))
                .max()
                .unwrap_or(0);
            refused.extend((done..records.len()).map(|i| (i, e.duplicate())));
            result = Ok(std::mem::take(&mut infos));
        }
        let sync = match &result {
            Ok(infos) if durability == Durability::Synced => infos.last().map(|(_, last)| SyncPoint {
                end: last.last_offset + 1,
                epoch,
                records: records.len().saturating_sub(refused.len()) as u64,
            }),
            _ => None,
        };
        // Where each record went, unless nobody is left to ask: no callbacks, and every
        // delivery handle of the batch dropped (no new one can appear: the batch left
        // `pending` under its lock).
        let asked = !callbacks.is_empty() || outcome.as_ref().is_some_and(|o| Arc::strong_count(o) > 1);
        let failed = match &result {
            Ok(_) => refused.len(),
            Err(_) => records.len(),
        };
        if failed > 0 {
            self.counters.errors.fetch_add(failed as u64, Ordering::Relaxed);
        }
        let result = result.map(|infos| {
            Arc::new(Stored {
                topic: Arc::clone(&queue.topic),
                partition: queue.partition,
                placed: if asked {
                    let mut placed = Vec::with_capacity(records.len());
                    for_each_placed(&records, &infos, |offset, timestamp| placed.push((offset, timestamp)));
                    placed
                } else {
                    Vec::new()
                },
                refused,
            })
        });
        let stored = match &result {
            Ok(stored) => stored.refused.first().map_or(Ok(sync), |(_, e)| Err(e.duplicate())),
            Err(e) => Err(e.duplicate()),
        };
        queue.queue_report(Written {
            result,
            outcome,
            callbacks,
            sync,
        });
        Some(stored)
    }

    /// Counts bytes sent to a partition; after `batch_size` of them, tells the partitioner a
    /// batch is complete, so sticky keyless routing moves on for blocking sends too.
    fn note_sent(&self, queue: &PartitionQueue, bytes: usize) {
        let total = queue.sticky_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total >= self.config.batch_size {
            queue.sticky_bytes.store(0, Ordering::Relaxed);
            self.config
                .partitioner
                .on_new_batch(&queue.topic, queue.log_partitions(&self.broker), queue.partition);
        }
    }

    /// Writes every partition's pending records, then (as Kafka's `flush`) waits until every
    /// batch written before, by any thread, has been reported: deliveries completed and
    /// callbacks run. Called from one of this producer's callbacks it does not wait (it may
    /// be one of those).
    fn flush_all(&self) -> Result<()> {
        let queues = self.all_queues();
        let mut first_error = None;
        for queue in &queues {
            let written = self.write_pending(queue, &mut queue.pending.lock());
            let wrote = written.is_some();
            let sync = match written {
                Some(Ok(sync)) => sync,
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                    None
                }
                None => None,
            };
            // Also reports what a thread that failed before reporting left queued, and
            // what the linger thread has not reported yet.
            queue.report(self);
            // The batch is synced once reported (waited for below), but perhaps by another
            // thread: syncing through it here too (a no-op once done) gives its error.
            if let Some(point) = sync
                && let Err(e) = self.sync(queue, point.end, point.epoch)
            {
                first_error.get_or_insert(e);
            }
            // The flush completed a batch: a sticky partitioner moves on, as it does when
            // `batch_size` or the linger closes one (else keyless records sent and flushed
            // a few at a time would all go to one partition). Flush also runs in close and
            // drop, so a panicking user partitioner is reported, as the linger thread does.
            if wrote && self.on_new_batch(queue).is_err() {
                tracing::error!(topic = %queue.topic, "the partitioner's on_new_batch panicked");
            }
            // `Buffered` records (this producer's or not) sit in the log's buffer, unseen by
            // consumers until something writes it out: after a flush they are readable, as a
            // Kafka producer's flush hands even `acks=0` records to the broker. A deleted
            // topic's log has nothing more to give.
            if self.config.durability == Durability::Buffered
                && !queue.log.is_deleted()
                && let Err(e) = queue.log.write_buffered()
            {
                first_error.get_or_insert(queue.deleted_or(e));
            }
        }
        if !reporting(self) {
            for queue in &queues {
                queue.wait_reported();
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl PartitionQueue {
    /// `e`, or [`Error::UnknownTopic`] if the topic was deleted: a delete racing a write or
    /// an fsync closes the log under it, which the log reports as a closed log.
    fn deleted_or(&self, e: Error) -> Error {
        if self.log.is_deleted() { self.unknown_topic() } else { e }
    }

    /// What a send to this partition's topic gets once the topic was deleted.
    fn unknown_topic(&self) -> Error {
        Error::UnknownTopic {
            topic: self.topic.to_string(),
        }
    }

    /// The largest batch the partition takes now (the topic's `max_message_bytes`, which
    /// [`Broker::alter_topic_config`] may change while the producer runs).
    fn max_batch(&self) -> usize {
        self.log.max_batch_bytes()
    }

    /// Queues a written batch's outcome. Call under the `pending` lock, right after the
    /// append, so the queue's order is the write order.
    fn queue_report(&self, written: Written) {
        let mut reports = self.reports.lock();
        reports.waiting.push_back(written);
        reports.queued += 1;
        self.unreported.fetch_add(1, Ordering::Release);
    }

    /// Reports the queued batches in order, unless another thread (or this one, further up
    /// the stack: a callback that sent) is reporting them already. A `Synced` batch is
    /// fsynced first (the first fsync covers the batches queued behind it too).
    fn report(&self, shared: &Shared) {
        let mut reports = self.reports.lock();
        if reports.running || reports.waiting.is_empty() {
            return;
        }
        reports.running = true;
        let _reporting = ReportingGuard::enter(shared);
        while let Some(written) = reports.waiting.pop_front() {
            parking_lot::MutexGuard::unlocked(&mut reports, || written.synced(self, &shared.counters).run());
            reports.reported += 1;
            self.unreported.fetch_sub(1, Ordering::Release);
            self.reported.notify_all();
        }
        reports.running = false;
    }

    /// Whether nothing is pending here and every batch written has been reported.
    fn is_done(&self) -> bool {
        if !self.pending.lock().records.is_empty() {
            return false;
        }
        let reports = self.reports.lock();
        reports.reported == reports.queued
    }

    /// Waits until every batch queued so far has been reported.
    fn wait_reported(&self) {
        let target = self.queued();
        self.wait_reported_through(target);
    }

    /// How many batches have been queued here so far.
    fn queued(&self) -> u64 {
        self.reports.lock().queued
    }

    /// How many batches have been queued here so far, if any of them is still to be
    /// reported, else `None` (one atomic load: the common case for a blocking send). Call
    /// under the `pending` lock, so that no batch is queued meanwhile.
    fn unreported_before(&self) -> Option<u64> {
        if self.unreported.load(Ordering::Acquire) == 0 {
            return None;
        }
        Some(self.queued())
    }

    /// Waits until the first `target` batches queued here have been reported.
    fn wait_reported_through(&self, target: u64) {
        let mut reports = self.reports.lock();
        while reports.reported < target {
            self.reported.wait(&mut reports);
        }
    }

    fn log_partitions(&self, broker: &Broker) -> u32 {
        broker.topic(&self.topic).map_or(1, |t| t.partition_count())
    }
}

/// A record's encoded size, rounded up: payloads, header names and values, plus the most
/// its varints and fixed fields can take.
fn estimated_size(record: &Record) -> usize {
    let headers: usize = record.headers().iter().map(|h| h.name.len() + h.value.len() + 20).sum();
    record.key_bytes().map_or(0, Bytes::len) + record.value_bytes().map_or(0, Bytes::len) + headers + 40
}

/// Most that [`single_record_batch_len`](crate::record::batch::single_record_batch_len)
/// exceeds [`estimated_size`] by: the batch header, the body's length varint (≤ 10 bytes),
/// attributes and the two zero deltas (3), the key and value lengths and the header count
/// (≤ 10 each), less the 40 `estimated_size` adds. (Each header's two lengths take at most
/// the 20 bytes `estimated_size` counts for them.)
const SINGLE_BATCH_SLACK: usize = crate::record::batch::HEADER_LEN + 10 + 3 + 30 - 40;

/// `Err(InvalidTimestamp)` if `record` has a negative timestamp, `Err(RecordTooLarge)` if
/// it alone exceeds the partition's batch limit, with the size the log would report for
/// it; else its [`estimated_size`]. With `compression` the limit applies to the compressed
/// batch too, which incompressible bytes make a little larger than the records: a record
/// near the limit is then compressed to size it.
#[inline]
fn check_record(record: &Record, max_batch: usize, compression: Compression) -> Result<usize> {
    // The cheap bound clears the usual record; only one near the limit is sized exactly.
    let estimated = estimated_size(record);
    let bound = estimated + SINGLE_BATCH_SLACK;
    let bound = match compression {
        Compression::None => bound,
        // The codecs' worst growth (snappy's 32 + n/6 is the largest), rounded up.
        _ => bound + bound / 5 + 64,
    };
    if bound <= max_batch && record.timestamp_ms().is_none_or(|ts| ts >= 0) {
        return Ok(estimated);
    }
    check_record_closely(record, max_batch, compression).map(|()| estimated)
}

/// The error for a record routed to `partition` of a topic with `partitions`.
#[cold]
fn invalid_partition(topic: &str, partition: u32, partitions: u32) -> Error {
    Error::InvalidPartition {
        topic: topic.to_string(),
        partition,
        partitions,
    }
}

/// [`check_record`] for a record that has a negative timestamp or may be too large.
#[cold]
fn check_record_closely(record: &Record, max_batch: usize, compression: Compression) -> Result<()> {
    if let Some(timestamp) = record.timestamp_ms().filter(|ts| *ts < 0) {
        return Err(Error::InvalidTimestamp { timestamp });
    }
    let size = crate::record::batch::single_record_batch_len(record);
    if size > max_batch {
        return Err(Error::RecordTooLarge { size, max: max_batch });
    }
    if compression != Compression::None {
        // Encoded as the log would (a single record's deltas, and so its size, do not
        // depend on the clock); any other failure is the write's to report.
        let options = crate::record::batch::EncodeOptions {
            compression,
            timestamp_type: crate::record::TimestampType::CreateTime,
        };
        if let Err(e @ Error::RecordTooLarge { .. }) = crate::record::batch::encode(
            std::slice::from_ref(record),
            0,
            max_batch,
            options,
            &mut crate::record::batch::EncodeScratch::default(),
            &mut Vec::new(),
        ) {
            return Err(e);
        }
    }
    Ok(())
}

/// Splits `records` into runs whose estimated batch size stays within `max` (a single
/// record larger than `max` is a run of its own, refused by the log).
fn size_chunks<R: AsRef<Record>>(records: &[R], max: usize) -> Vec<&[R]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, crate::record::batch::HEADER_LEN);
    for (i, record) in records.iter().enumerate() {
        let size = estimated_size(record.as_ref());
        if i > start && bytes + size > max {
            chunks.extend(records.get(start..i));
            start = i;
            bytes = crate::record::batch::HEADER_LEN;
        }
        bytes += size;
    }
    chunks.extend(records.get(start..));
    chunks
}

/// fsyncs `queue`'s log through `end` (see [`Shared::sync`]), counting the round in
/// `counters` if this call ran it.
fn sync_log(counters: &Counters, queue: &PartitionQueue, end: u64, epoch: u64) -> Result<()> {
    let started = Instant::now();
    if queue
        .log
        .sync_through(end, Some(epoch))
        // A delete closes the log: records it had not synced yet are lost with the topic.
        .map_err(|e| queue.deleted_or(e))?
    {
        counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counters.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
    Ok(())
}

fn close(shared: &Arc<Shared>, thread: &Mutex<Option<JoinHandle<()>>>) -> Result<()> {
    let result = shared.flush_all();
    {
        let _queues = shared.queues.write();
        shared.closed.store(true, Ordering::Release);
    }
    {
        let _guard = shared.wake_lock.lock();
        shared.wake.notify_all();
    }
    // Taken out before the join, not joined under the lock: a callback on the linger thread
    // that closes the producer meanwhile must not wait for this lock while we wait for it.
    let handle = thread.lock().take();
    if let Some(handle) = handle {
        // The last clone may be dropped by a callback the linger thread runs: it is not
        // joined then (joining itself would panic), and exits once this returns.
        if handle.thread().id() != std::thread::current().id() {
            let _ = handle.join();
        }
    }
    // Anything queued while closing.
    let late = shared.flush_all();
    result.and(late)
}

/// Writes out `queue`'s log buffer if this producer's `Buffered` records have waited there
/// a `linger`; else lowers `next_due` to when they will have. The records' sends succeeded
/// already: an error here (the next append or flush meets it too) is only logged.
fn write_out_buffered(queue: &PartitionQueue, linger: Duration, next_due: &mut Option<Instant>) {
    {
        let mut since = queue.buffered_since.lock();
        // A linger too long to add to the clock never expires, as for async batches.
        match since.and_then(|since| since.checked_add(linger)) {
            Some(due) if due <= Instant::now() => {
                *since = None;
                queue.buffered_noted.store(false, Ordering::Release);
            }
            Some(due) => {
                *next_due = Some(next_due.map_or(due, |d| d.min(due)));
                return;
            }
            None => return,
        }
    }
    // Cleared first: records buffered from now on are noted again, and written out by
    // this write or a later one.
    if !queue.log.is_deleted()
        && let Err(e) = queue.log.write_buffered()
    {
        tracing::warn!(topic = %queue.topic, partition = queue.partition, error = %e, "could not write out buffered records");
    }
}

/// Writes batches whose linger has passed, and `Buffered` records that have waited a
/// linger; sleeps until the next one is due.
fn linger_loop(shared: &Shared) {
    let linger = shared.config.linger;
    loop {
        let started = *shared.wake_lock.lock();
        let mut next_due: Option<Instant> = None;
        let queues = shared.all_queues();
        for queue in queues {
            write_out_buffered(&queue, linger, &mut next_due);
            let mut pending = queue.pending.lock();
            // A linger too long to add to the clock (Kafka allows up to `Long.MAX_VALUE`
            // ms) never expires: such batches wait for `batch_size`, a flush or close.
            if let Some(due) = pending.since.and_then(|since| since.checked_add(linger)) {
                if due <= Instant::now() {
                    let _ = shared.write_pending(&queue, &mut pending);
                    drop(pending);
                    queue.report(shared);
                    // Outside the partition's lock (the partitioner may send again). A user
                    // partitioner that panics must not end the linger thread (every later
                    // async batch would wait for a flush): reported, and carried on.
                    if shared.on_new_batch(&queue).is_err() {
                        tracing::error!(topic = %queue.topic, "the partitioner's on_new_batch panicked");
                    }
                    continue;
                } else {
                    next_due = Some(next_due.map_or(due, |d: Instant| d.min(due)));
                }
            }
            drop(pending);
            // `Synced` batches written by `send_async` calls, left here to sync and report.
            queue.report(shared);
        }
        shared.forget_deleted_topics();
        let mut guard = shared.wake_lock.lock();
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        if *guard != started {
            // A batch started during the scan, perhaps in a queue already scanned.
            continue;
        }
        match next_due {
            Some(due) => {
                shared.wake.wait_until(&mut guard, due);
            }
            None => {
                shared.wake.wait_for(&mut guard, Duration::from_millis(100));
            }
        }
    }
}
