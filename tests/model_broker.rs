//! A model-based test of the broker's admin surface and committed offsets: random sequences
//! of operations — create (and create-if-not-exists), delete and recreate topics, add
//! partitions, produce, commit explicit offsets (with metadata, past the log end too),
//! reset and delete group offsets, `delete_records_before` and `truncate_to` through the
//! broker's partition logs (also through a handle kept after its topic was deleted, or
//! after the broker closed), long-lived `assign` readers that poll and commit their
//! positions, a subscribed member that makes its group non-empty, clean reopens, read-only
//! opens beside the writer and after it, and a long-lived read-only broker that refreshes —
//! applied both to a real [`Broker`] and to a plain model of what the docs promise. After every operation the broker (topics,
//! partition counts, start and end offsets, every group's committed offsets with their
//! metadata and commit times, group descriptions and lags) must equal the model.
//!
//! The committed-offset log is opened with the smallest compaction threshold (64 KiB) and
//! commits carry metadata of up to 4 KiB, so snapshots and the deletion of covered offsets
//! segments happen during a sequence; topics have 4 KiB segments, so `delete_records_before`
//! and `truncate_to` cross segment boundaries.
//!
//! CI runs a modest number of cases (debug build); `BROOKLET_MODEL_CASES=n` runs more and
//! `BROOKLET_MODEL_SEED=n` another fixed seed, e.g.
//! `BROOKLET_MODEL_CASES=2000 cargo test --release --test model_broker -- --nocapture`.
//! A failure prints the shrunk sequence of operations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brooklet::{
    Broker, Consumer, ConsumerConfig, Durability, Error, GroupState, MAX_METADATA_BYTES, OffsetAndMetadata,
    OffsetReset, OffsetSpec, PartitionLog, Producer, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition,
};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};

const TOPICS: [&str; 3] = ["orders", "payments", "audit.log"];
const GROUPS: [&str; 3] = ["billing", "analytics", "audit-trail"];
/// The smallest offsets compaction threshold the builder takes.
const COMPACT_BYTES: u64 = 64 << 10;
/// The smallest segment a topic may have: a few records each.
const SEGMENT_BYTES: u64 = 4096;
/// Record timestamps: `TS_BASE + n` for the `n`th record of a case, so they increase.
const TS_BASE: i64 = 1_700_000_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

/// An offset chosen relative to a partition's log when the operation runs.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Start,
    End,
    /// Somewhere in `start..end` (the start if the log is empty).
    Inside(u16),
    /// `end + 1 + n`: past the log's end.
    Past(u8),
    /// Just below the log start (0 if it is 0).
    BelowStart,
}

/// A commit's metadata string.
#[derive(Debug, Clone, Copy)]
enum Meta {
    Empty,
    /// A short string with a non-ASCII character (its length counts in bytes).
    Short(u8),
    /// 2,000 to 4,096 bytes: these make the offsets log reach its compaction threshold.
    Long(u16),
    /// 4,097 bytes: refused, nothing committed.
    TooLong,
}

impl Meta {
    fn text(self) -> String {
        match self {
            Meta::Empty => String::new(),
            Meta::Short(n) => format!("batch-{n}-é"),
            Meta::Long(n) => "L".repeat(2000 + usize::from(n) % (MAX_METADATA_BYTES - 1999)),
            Meta::TooLong => "x".repeat(MAX_METADATA_BYTES + 1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Spec {
    Earliest,
    Latest,
    Offset(Pick),
    /// A timestamp among (and just around) those the case's records carry.
    Timestamp(u16),
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        topic: usize,
        partitions: u32,
        if_not_exists: bool,
    },
    Delete {
        topic: usize,
    },
    /// Grows the topic by `extra` partitions (0: the same count, refused).
    AddPartitions {
        topic: usize,
        extra: u32,
    },
    /// `count` records to one partition (sometimes one that does not exist), one `send`
    /// each (`batch` 0) or one `send_batch` (1), or one `send_batch` that also sends every
    /// other record to the next partition (2).
    Produce {
        topic: u8,
        partition: u8,
        count: u8,
        batch: u8,
        size: u16,
    },
    /// Explicit offsets through an `assign` consumer of the group (a new assignment, or
    /// the consumer's previous one kept), `repeat` times (a busy committer: the offsets
    /// log reaches its compaction threshold).
    Commit {
        group: usize,
        reassign: bool,
        repeat: u8,
        entries: Vec<(u8, u8, Pick, Meta)>,
    },
    Reset {
        group: usize,
        to: Spec,
        topic: Option<usize>,
    },
    DeleteGroup {
        group: usize,
    },
    DeleteRecords {
        topic: u8,
        partition: u8,
        at: Pick,
    },
    Truncate {
        topic: u8,
        partition: u8,
        at: Pick,
    },
    /// A fresh `assign` consumer of the group resumes one partition: its position is the
    /// committed offset if that is inside the log, else where `earliest` says; a poll
    /// returns the records from there; then optionally `commit()` (the positions).
    Resume {
        group: usize,
        topic: u8,
        partition: u8,
        earliest: bool,
        commit: bool,
    },
    /// The group's long-lived reader (an `assign` consumer of one partition, kept across
    /// operations until a reopen; `mode` 1: replaced by a new consumer; 2: assigned a
    /// partition again — the same one, of the same topic, keeps its position) polls and may commit its
    /// position before or after the poll (`commit` 1 or 2): across truncations (it moves
    /// back to the cut, and never commits past it), `delete_records_before` (a position
    /// below the start resets), and its topic deleted (`UnknownTopic`) and created again
    /// (it reads the new topic from the committed offset or the reset).
    Read {
        group: usize,
        topic: u8,
        partition: u8,
        earliest: bool,
        mode: u8,
        commit: u8,
    },
    /// Keeps a handle on a partition's log (`Broker::partition_log`) for [`Op::UseGrabbed`].
    Grab {
        topic: u8,
        partition: u8,
    },
    /// `truncate_to` or `delete_records_before` through the handle kept: as through the
    /// broker while its topic lives, refused once it was deleted (also if created again).
    UseGrabbed {
        truncate: bool,
        at: Pick,
    },
    /// The broker closed while the application holds a partition's log, which it then
    /// truncates; the broker opened again.
    TruncateDetached {
        topic: u8,
        partition: u8,
        at: Pick,
    },
    /// A subscribed member joins the group (one at most per group, kept until it leaves or
    /// a reopen): while it is there, the group's offsets are the member's to commit —
    /// `reset_offsets` and `delete_group` are refused with `GroupNotEmpty`, an `assign`
    /// consumer's commit with `CommitFailed`.
    Join {
        group: usize,
        topic: u8,
    },
    /// The member polls (claiming every partition of its topic) and commits explicit
    /// offsets for all of them.
    MemberCommit {
        group: usize,
        at: Pick,
        meta: Meta,
    },
    /// The member closes: the group is empty again.
    Leave {
        group: usize,
    },
    /// Every handle dropped (a clean close), then `Broker::open` again.
    Reopen,
    /// `Broker::open_read_only` beside the open writer.
    ReadOnlyBeside,
    /// The writer closed, the directory opened read-only, then writable again.
    ReadOnlyClosed,
    /// A long-lived read-only broker: opened, or refreshed (topics and offsets).
    Follow {
        reopen: bool,
    },
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        2 => Just(Pick::Start),
        3 => Just(Pick::End),
        4 => any::<u16>().prop_map(Pick::Inside),
        2 => (0u8..3).prop_map(Pick::Past),
        1 => Just(Pick::BelowStart),
    ]
}

fn meta() -> impl Strategy<Value = Meta> {
    prop_oneof![
        2 => Just(Meta::Empty),
        6 => any::<u8>().prop_map(Meta::Short),
        6 => any::<u16>().prop_map(Meta::Long),
        1 => Just(Meta::TooLong),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        Just(Spec::Earliest),
        Just(Spec::Latest),
        pick().prop_map(Spec::Offset),
        any::<u16>().prop_map(Spec::Timestamp),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let topic = 0..TOPICS.len();
    let group = 0..GROUPS.len();
    prop_oneof![
        6 => (topic.clone(), 1u32..=4, any::<bool>()).prop_map(|(topic, partitions, if_not_exists)| Op::Create {
            topic,
            partitions,
            if_not_exists
        }),
        3 => topic.clone().prop_map(|topic| Op::Delete { topic }),
        2 => (topic.clone(), 0u32..=2).prop_map(|(topic, extra)| Op::AddPartitions { topic, extra }),
        10 => (any::<u8>(), any::<u8>(), 1u8..=4, 0u8..3, 0u16..700).prop_map(
            |(topic, partition, count, batch, size)| Op::Produce {
                topic,
                partition,
                count,
                batch,
                size
            }
        ),
        9 => (
            group.clone(),
            any::<bool>(),
            prop_oneof![5 => Just(1u8), 1 => 2u8..=30],
            proptest::collection::vec((any::<u8>(), any::<u8>(), pick(), meta()), 0..4)
        )
            .prop_map(|(group, reassign, repeat, entries)| Op::Commit {
                group,
                reassign,
                repeat,
                entries
            }),
        3 => (group.clone(), spec(), proptest::option::of(topic.clone()))
            .prop_map(|(group, to, topic)| Op::Reset { group, to, topic }),
        1 => group.clone().prop_map(|group| Op::DeleteGroup { group }),
        5 => (any::<u8>(), any::<u8>(), pick()).prop_map(|(topic, partition, at)| Op::DeleteRecords {
            topic,
            partition,
            at
        }),
        6 => (any::<u8>(), any::<u8>(), pick()).prop_map(|(topic, partition, at)| Op::Truncate {
            topic,
            partition,
            at
        }),
        4 => (group.clone(), any::<u8>(), any::<u8>(), any::<bool>(), any::<bool>()).prop_map(
            |(group, topic, partition, earliest, commit)| Op::Resume {
                group,
                topic,
                partition,
                earliest,
                commit
            }
        ),
        8 => (
            group.clone(),
            (any::<u8>(), any::<u8>()),
            any::<bool>(),
            prop_oneof![6 => Just(0u8), 1 => Just(1u8), 2 => Just(2u8)],
            0u8..3
        )
            .prop_map(|(group, (topic, partition), earliest, mode, commit)| Op::Read {
                group,
                topic,
                partition,
                earliest,
                mode,
                commit
            }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(topic, partition)| Op::Grab { topic, partition }),
        3 => (any::<bool>(), pick()).prop_map(|(truncate, at)| Op::UseGrabbed { truncate, at }),
        1 => (any::<u8>(), any::<u8>(), pick()).prop_map(|(topic, partition, at)| Op::TruncateDetached {
            topic,
            partition,
            at
        }),
        2 => (group.clone(), any::<u8>()).prop_map(|(group, topic)| Op::Join { group, topic }),
        3 => (group.clone(), pick(), meta()).prop_map(|(group, at, meta)| Op::MemberCommit { group, at, meta }),
        2 => group.clone().prop_map(|group| Op::Leave { group }),
        2 => Just(Op::Reopen),
        1 => Just(Op::ReadOnlyBeside),
        1 => Just(Op::ReadOnlyClosed),
        2 => any::<bool>().prop_map(|reopen| Op::Follow { reopen }),
    ]
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct PartModel {
    start: u64,
    end: u64,
    /// Offset → (timestamp, base offset of its batch), for the offsets in `start..end`.
    records: BTreeMap<u64, (i64, u64)>,
}

impl PartModel {
    fn resolve(&self, pick: Pick) -> u64 {
        match pick {
            Pick::Start => self.start,
            Pick::End => self.end,
            Pick::Inside(x) if self.end > self.start => self.start + u64::from(x) % (self.end - self.start),
            Pick::Inside(_) => self.start,
            Pick::Past(n) => self.end + 1 + u64::from(n),
            Pick::BelowStart => self.start.saturating_sub(1),
        }
    }
}

/// A committed offset as the model expects it. `at` (the commit time) is learnt from the
/// broker right after the commit (checked to lie within the call) and must never change
/// until the next commit of that partition: a lowering keeps it, a reopen keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Committed {
    offset: u64,
    metadata: String,
    at: i64,
}

#[derive(Debug, Default)]
struct Model {
    topics: BTreeMap<String, Vec<PartModel>>,
    groups: BTreeMap<String, BTreeMap<TopicPartition, Committed>>,
    /// Records produced so far in the case: the next record's timestamp is `TS_BASE + this`.
    produced: i64,
    /// How many times each topic name was created: a reader tells a topic created again
    /// from the one it was assigned.
    creations: BTreeMap<String, u64>,
    /// The long-lived readers of [`Op::Read`], by group.
    readers: BTreeMap<usize, ReaderModel>,
    /// The subscribed member of [`Op::Join`] of each group that has one: its topic.
    members: BTreeMap<usize, &'static str>,
}

/// What the model knows of a long-lived reader.
#[derive(Debug, Clone)]
struct ReaderModel {
    tp: TopicPartition,
    /// The creation of the topic it reads (see [`Model::creations`]).
    creation: u64,
    earliest: bool,
    /// Its position, once resolved (from the committed offset or the reset).
    position: Option<u64>,
    /// The lowest end the truncations of its partition left since its last poll: its next
    /// poll moves a position past that (or past the log start, if that is higher now)
    /// back to it, and a commit before then stores no position past it.
    cut: Option<u64>,
}

impl ReaderModel {
    /// A reader just assigned `tp`: no position resolved yet, no cut seen.
    fn new(tp: TopicPartition, creation: u64, earliest: bool) -> Self {
        ReaderModel {
            tp,
            creation,
            earliest,
            position: None,
            cut: None,
        }
    }

    /// The position as its next poll or commit takes it, given the log start now.
    fn position(&self, start: u64) -> Option<u64> {
        let position = self.position?;
        Some(self.cut.map_or(position, |cut| position.min(cut.max(start))))
    }
}

impl Model {
    fn part(&self, tp: &TopicPartition) -> Option<&PartModel> {
        self.topics.get(&tp.topic)?.get(tp.partition as usize)
    }

    fn part_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartModel> {
        self.topics.get_mut(&tp.topic)?.get_mut(tp.partition as usize)
    }

    /// The topic an operation names: one time in six any name (which may not exist), else
    /// one that exists, half of those times the first, so that operations meet on it.
    fn topic(&self, raw: u8) -> &'static str {
        let existing: Vec<&'static str> = TOPICS.into_iter().filter(|t| self.topics.contains_key(*t)).collect();
        match raw % 6 {
            _ if existing.is_empty() => TOPICS[usize::from(raw / 6) % TOPICS.len()],
            0 => TOPICS[usize::from(raw / 6) % TOPICS.len()],
            1 | 2 => existing[0],
            _ => existing[usize::from(raw / 6) % existing.len()],
        }
    }

    /// The partition of `topic` an operation names: one time in eight the one after the
    /// last (which does not exist), else one that exists, half of those times the first.
    fn partition(&self, topic: &str, raw: u8) -> TopicPartition {
        let count = self.topics.get(topic).map_or(1, Vec::len) as u32;
        let partition = match raw % 8 {
            0 => count,
            1..=4 => 0,
            _ => u32::from(raw / 8) % count,
        };
        TopicPartition::new(topic, partition)
    }

    fn set_commit(&mut self, group: &str, tp: TopicPartition, committed: Committed) {
        self.groups.entry(group.to_owned()).or_default().insert(tp, committed);
    }

    fn drop_empty_groups(&mut self) {
        self.groups.retain(|_, offsets| !offsets.is_empty());
    }
}

/// Counts of what the runs exercised, printed at the end (`--nocapture`).
#[derive(Default)]
struct Stats {
    ops: AtomicU64,
    commits: AtomicU64,
    commits_past_end: AtomicU64,
    lowered: AtomicU64,
    truncations_cutting: AtomicU64,
    starts_moved: AtomicU64,
    recreated: AtomicU64,
    reopens: AtomicU64,
    cases_with_snapshot: AtomicU64,
    cases: AtomicU64,
    /// Reader polls that moved back to a cut, reset below the start, switched to a topic
    /// created again, or found their topic deleted.
    reader_moved_back: AtomicU64,
    reader_reset: AtomicU64,
    reader_switched: AtomicU64,
    reader_unknown: AtomicU64,
    stale_refused: AtomicU64,
    detached: AtomicU64,
    reader_reassigned: AtomicU64,
}

static STATS: Stats = Stats {
    ops: AtomicU64::new(0),
    commits: AtomicU64::new(0),
    commits_past_end: AtomicU64::new(0),
    lowered: AtomicU64::new(0),
    truncations_cutting: AtomicU64::new(0),
    starts_moved: AtomicU64::new(0),
    recreated: AtomicU64::new(0),
    reopens: AtomicU64::new(0),
    cases_with_snapshot: AtomicU64::new(0),
    cases: AtomicU64::new(0),
    reader_moved_back: AtomicU64::new(0),
    reader_reset: AtomicU64::new(0),
    reader_switched: AtomicU64::new(0),
    reader_unknown: AtomicU64::new(0),
    stale_refused: AtomicU64::new(0),
    detached: AtomicU64::new(0),
    reader_reassigned: AtomicU64::new(0),
};

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// The real broker
// ---------------------------------------------------------------------------------------

struct Live {
    dir: tempfile::TempDir,
    durability: Durability,
    broker: Option<Broker>,
    producer: Option<Producer>,
    /// One `assign` consumer per group, kept across operations (until a reopen).
    consumers: BTreeMap<usize, Consumer>,
    /// The long-lived readers of [`Op::Read`], by group.
    readers: BTreeMap<usize, Consumer>,
    /// The subscribed members of [`Op::Join`], by group.
    members: BTreeMap<usize, Consumer>,
    /// The log handle of [`Op::Grab`], with its topic's creation (see [`Model::creations`]).
    grabbed: Option<(TopicPartition, u64, Arc<PartitionLog>)>,
    /// The long-lived read-only broker of [`Op::Follow`]: it follows the writer, its
    /// truncations included.
    follower: Option<Broker>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Live {
    fn open(&mut self) {
        let broker = Broker::builder()
            .offsets_durability(self.durability)
            .offsets_compact_bytes(COMPACT_BYTES)
            .retention_check_interval(None)
            .open(self.dir.path())
            .expect("open the broker");
        self.producer = Some(broker.producer(ProducerConfig::default()));
        self.broker = Some(broker);
    }

    fn close(&mut self) {
        self.grabbed = None;
        self.members.clear();
        self.consumers.clear();
        self.readers.clear();
        self.producer = None;
        self.broker = None;
    }

    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("the broker is open")
    }

    fn producer(&self) -> &Producer {
        self.producer.as_ref().expect("the producer is open")
    }

    fn consumer(&mut self, group: usize) -> &mut Consumer {
        if !self.consumers.contains_key(&group) {
            let consumer = self
                .broker()
                .consumer(ConsumerConfig::group(GROUPS[group]).enable_auto_commit(false))
                .expect("consumer");
            self.consumers.insert(group, consumer);
        }
        self.consumers.get_mut(&group).expect("just inserted")
    }
}

fn unknown_topic(result: &Result<impl std::fmt::Debug, Error>, topic: &str, what: &str) {
    assert!(
        matches!(result, Err(Error::UnknownTopic { topic: t }) if t == topic),
        "{what}: expected UnknownTopic {topic:?}, got {result:?}"
    );
}

/// The error an operation on a partition the model does not have must give: `None` if it
/// exists.
fn missing_partition(model: &Model, tp: &TopicPartition) -> Option<&'static str> {
    match model.topics.get(&tp.topic) {
        None => Some("UnknownTopic"),
        Some(parts) if tp.partition as usize >= parts.len() => Some("InvalidPartition"),
        Some(_) => None,
    }
}

fn expect_missing<T: std::fmt::Debug>(result: &Result<T, Error>, want: &str, what: &str) {
    let ok = match want {
        "UnknownTopic" => matches!(result, Err(Error::UnknownTopic { .. })),
        "InvalidPartition" => matches!(result, Err(Error::InvalidPartition { .. })),
        _ => false,
    };
    assert!(ok, "{what}: expected {want}, got {result:?}");
}

fn apply(live: &mut Live, model: &mut Model, op: &Op) {
    bump(&STATS.ops, 1);
    match op {
        Op::Create {
            topic,
            partitions,
            if_not_exists,
        } => {
            let name = TOPICS[*topic];
            let config = TopicConfig::with_partitions(*partitions).segment_bytes(SEGMENT_BYTES);
            let exists = model.topics.contains_key(name);
            if *if_not_exists {
                let created = live.broker().create_topic_if_not_exists(name, config);
                assert_eq!(created.ok(), Some(!exists), "create_topic_if_not_exists {name}");
            } else {
                let result = live.broker().create_topic(name, config);
                if exists {
                    assert!(
                        matches!(&result, Err(Error::TopicExists { topic }) if topic == name),
                        "create {name}: {result:?}"
                    );
                } else {
                    assert!(result.is_ok(), "create {name}: {result:?}");
                }
            }
            if !exists {
                let creations = model.creations.entry(name.to_owned()).or_default();
                if *creations > 0 {
                    bump(&STATS.recreated, 1);
                }
                *creations += 1;
                // A new topic starts empty at offset 0, whatever a topic of the name held.
                model
                    .topics
                    .insert(name.to_owned(), vec![PartModel::default(); *partitions as usize]);
            }
        }
        Op::Delete { topic } => {
            let name = TOPICS[*topic];
            let result = live.broker().delete_topic(name);
            if model.topics.remove(name).is_some() {
                assert!(result.is_ok(), "delete {name}: {result:?}");
                // Deleting a topic drops its committed offsets in every group (README,
                // "Committed offsets").
                for offsets in model.groups.values_mut() {
                    offsets.retain(|tp, _| tp.topic != name);
                }
                model.drop_empty_groups();
            } else {
                unknown_topic(&result, name, "delete");
            }
        }
        Op::AddPartitions { topic, extra } => {
            let name = TOPICS[*topic];
            let current = model.topics.get(name).map_or(0, Vec::len) as u32;
            let result = live.broker().add_partitions(name, current.max(1) + extra);
            match model.topics.get_mut(name) {
                None => unknown_topic(&result, name, "add_partitions"),
                Some(_) if *extra == 0 => {
                    assert!(
                        matches!(result, Err(Error::InvalidConfig { .. })),
                        "add_partitions to the same count: {result:?}"
                    );
                }
                Some(parts) => {
                    assert!(result.is_ok(), "add_partitions {name}: {result:?}");
                    parts.resize((current + extra) as usize, PartModel::default());
                }
            }
        }
        Op::Produce {
            topic,
            partition,
            count,
            batch,
            size,
        } => {
            let name = model.topic(*topic);
            let tp = model.partition(name, *partition);
            // `batch` 2: every other record goes to the next partition (one batch each).
            let count_now = model.topics.get(name).map_or(1, Vec::len) as u32;
            let next = TopicPartition::new(name, (tp.partition + 1) % count_now);
            let targets: Vec<TopicPartition> = (0..*count)
                .map(|i| {
                    if *batch == 2 && i % 2 == 1 {
                        next.clone()
                    } else {
                        tp.clone()
                    }
                })
                .collect();
            let records: Vec<ProducerRecord> = (0i64..)
                .zip(&targets)
                .map(|(i, target)| {
                    ProducerRecord::new(name)
                        .partition(target.partition)
                        .key(format!("k{i}"))
                        .value(vec![b'v'; usize::from(*size)])
                        .timestamp(TS_BASE + model.produced + i)
                })
                .collect();
            let placed: Result<Vec<(u32, u64)>, Error> = if *batch > 0 {
                live.producer()
                    .send_batch(&records)
                    .map(|m| m.iter().map(|r| (r.partition, r.offset)).collect())
            } else {
                // One batch per record; a failure stops at the first (none can fail
                // otherwise here).
                records
                    .iter()
                    .map(|r| live.producer().send(r.clone()).map(|m| (m.partition, m.offset)))
                    .collect()
            };
            if let Some(want) = targets.iter().find_map(|t| missing_partition(model, t)) {
                // A routing error: nothing of the call is stored.
                expect_missing(&placed, want, &format!("produce to {targets:?}"));
                return;
            }
            let placed = placed.unwrap_or_else(|e| panic!("produce to {targets:?}: {e:?}"));
            let mut want = Vec::new();
            let mut bases: BTreeMap<u32, u64> = BTreeMap::new();
            for (i, target) in (0i64..).zip(&targets) {
                let ts = TS_BASE + model.produced + i;
                let part = model.part_mut(target).expect("checked");
                // A send_batch writes one batch per partition.
                let base = *bases.entry(target.partition).or_insert(part.end);
                let offset = part.end;
                part.records
                    .insert(offset, (ts, if *batch > 0 { base } else { offset }));
                part.end += 1;
                want.push((target.partition, offset));
            }
            assert_eq!(placed, want, "partitions and offsets of the records sent");
            model.produced += i64::from(*count);
        }
        Op::Commit {
            group,
            reassign,
            repeat,
            entries,
        } => {
            for round in 0..*repeat {
                commit(live, model, *group, *reassign, (round, *repeat > 1), entries);
            }
        }
        Op::Reset { group, to, topic } => reset(live, model, *group, *to, *topic),
        Op::DeleteGroup { group } => {
            let name = GROUPS[*group];
            let result = live.broker().delete_group(name);
            if model.members.contains_key(group) {
                assert!(
                    matches!(&result, Err(Error::GroupNotEmpty { group, members: 1 }) if group == name),
                    "delete_group {name} with a member: {result:?}"
                );
            } else if model.groups.remove(name).is_some() {
                assert!(result.is_ok(), "delete_group {name}: {result:?}");
            } else {
                assert!(
                    matches!(&result, Err(Error::UnknownGroup { group }) if group == name),
                    "delete_group {name} without offsets: {result:?}"
                );
            }
        }
        Op::DeleteRecords { topic, partition, at } => {
            let tp = model.partition(model.topic(*topic), *partition);
            let log = live.broker().partition_log(&tp);
            if let Some(want) = missing_partition(model, &tp) {
                expect_missing(&log, want, &format!("partition_log {tp}"));
                return;
            }
            delete_records(&log.expect("the partition exists"), model, &tp, *at);
        }
        Op::Truncate { topic, partition, at } => {
            let tp = model.partition(model.topic(*topic), *partition);
            let log = live.broker().partition_log(&tp);
            if let Some(want) = missing_partition(model, &tp) {
                expect_missing(&log, want, &format!("partition_log {tp}"));
                return;
            }
            truncate(&log.expect("the partition exists"), model, &tp, *at);
        }
        Op::Grab { topic, partition } => {
            let tp = model.partition(model.topic(*topic), *partition);
            if missing_partition(model, &tp).is_none() {
                let log = live.broker().partition_log(&tp).expect("the partition exists");
                let creation = model.creations.get(&tp.topic).copied().unwrap_or(0);
                live.grabbed = Some((tp, creation, log));
            }
        }
        Op::UseGrabbed { truncate: cut, at } => {
            let Some((tp, creation, log)) = live.grabbed.clone() else {
                return;
            };
            if model.topics.contains_key(&tp.topic) && model.creations.get(&tp.topic) == Some(&creation) {
                if *cut {
                    truncate(&log, model, &tp, *at);
                } else {
                    delete_records(&log, model, &tp, *at);
                }
            } else {
                // The log of a deleted topic is closed: it refuses, and touches neither the
                // files nor the committed offsets of a topic of that name created since.
                let result = if *cut {
                    log.truncate_to(0)
                } else {
                    log.delete_records_before(0)
                };
                assert!(
                    matches!(result, Err(Error::InvalidArgument { .. })),
                    "{tp} through the log of a deleted topic: {result:?}"
                );
                bump(&STATS.stale_refused, 1);
            }
        }
        Op::TruncateDetached { topic, partition, at } => {
            let tp = model.partition(model.topic(*topic), *partition);
            if missing_partition(model, &tp).is_some() {
                return;
            }
            // The application still holds a partition's log when its broker closes, and
            // truncates it then: the committed offsets past the cut are lowered at the next
            // open (the log closes without its clean-shutdown marker).
            let log = live.broker().partition_log(&tp).expect("the partition exists");
            live.close();
            model.readers.clear();
            model.members.clear();
            truncate(&log, model, &tp, *at);
            drop(log);
            live.open();
            bump(&STATS.detached, 1);
        }
        Op::Resume {
            group,
            topic,
            partition,
            earliest,
            commit,
        } => resume(live, model, *group, model.topic(*topic), *partition, *earliest, *commit),
        Op::Read {
            group,
            topic,
            partition,
            earliest,
            mode,
            commit,
        } => read(live, model, *group, (*topic, *partition), *earliest, *mode, *commit),
        Op::Join { group, topic } => {
            if model.members.contains_key(group) {
                return;
            }
            let topic = model.topic(*topic);
            let mut member = live
                .broker()
                .consumer(
                    ConsumerConfig::group(GROUPS[*group])
                        .enable_auto_commit(false)
                        .auto_offset_reset(OffsetReset::Earliest)
                        .max_poll_interval(Duration::from_secs(3600)),
                )
                .expect("consumer");
            member.subscribe(&[topic]).expect("subscribe");
            member.poll(Duration::ZERO).expect("the member's first poll");
            live.members.insert(*group, member);
            model.members.insert(*group, topic);
        }
        Op::MemberCommit { group, at, meta } => member_commit(live, model, *group, *at, *meta),
        Op::Leave { group } => {
            if let Some(member) = live.members.remove(group) {
                member.close().expect("the member leaves");
            }
            model.members.remove(group);
        }
        Op::Reopen => {
            live.close();
            model.readers.clear();
            model.members.clear();
            live.open();
            bump(&STATS.reopens, 1);
        }
        Op::ReadOnlyBeside => {
            let reader = Broker::open_read_only(live.dir.path()).expect("open read-only beside the writer");
            check(&reader, model, "read-only beside the writer");
            check_read_only_refuses(&reader);
        }
        Op::ReadOnlyClosed => {
            live.close();
            model.readers.clear();
            model.members.clear();
            {
                let reader = Broker::open_read_only(live.dir.path()).expect("open read-only");
                check(&reader, model, "read-only after close");
                check_read_only_refuses(&reader);
            }
            live.open();
            bump(&STATS.reopens, 1);
        }
        Op::Follow { reopen } => {
            if *reopen || live.follower.is_none() {
                live.follower = None;
                live.follower = Some(Broker::open_read_only(live.dir.path()).expect("open the follower"));
            } else if let Some(follower) = &live.follower {
                follower.refresh_topics().expect("refresh_topics");
                follower.refresh_offsets().expect("refresh_offsets");
            }
            if let Some(follower) = &live.follower {
                check(follower, model, "the follower after a refresh");
            }
        }
    }
}

fn delete_records(log: &PartitionLog, model: &mut Model, tp: &TopicPartition, at: Pick) {
    let part = model.part_mut(tp).expect("the partition exists");
    let offset = part.resolve(at);
    let result = log.delete_records_before(offset);
    if offset > part.end {
        assert!(
            matches!(result, Err(Error::OffsetOutOfRange { .. })),
            "delete_records_before({offset}) of {tp} ending at {}: {result:?}",
            part.end
        );
    } else if offset <= part.start {
        assert_eq!(result.ok(), Some(part.start), "delete_records_before({offset}) of {tp}");
    } else {
        assert_eq!(result.ok(), Some(offset), "delete_records_before({offset}) of {tp}");
        part.start = offset;
        part.records = part.records.split_off(&offset);
        bump(&STATS.starts_moved, 1);
    }
    // Committed offsets are not moved (Kafka's DeleteRecords does not touch them either; a
    // consumer below the start applies its auto_offset_reset).
}

fn truncate(log: &PartitionLog, model: &mut Model, tp: &TopicPartition, at: Pick) {
    let part = model.part_mut(tp).expect("the partition exists");
    let offset = part.resolve(at).max(part.start);
    // Batches are never split: the log ends at the start of the batch holding the offset;
    // if that batch starts below the log start, the log is left empty at its start (which
    // never moves back).
    let new_end = if offset >= part.end {
        part.end
    } else {
        part.records[&offset].1.max(part.start)
    };
    let result = log.truncate_to(part.resolve(at));
    assert_eq!(
        result.ok(),
        Some(new_end),
        "truncate_to({offset}) of {tp}: model {part:?}"
    );
    let cut = new_end < part.end;
    if cut {
        bump(&STATS.truncations_cutting, 1);
    }
    part.end = new_end;
    part.records.retain(|o, _| *o < new_end);
    // Every group's committed offset past the new end is lowered to it, metadata and
    // commit time kept (PartitionLog::truncate_to) — also when nothing was cut.
    for offsets in model.groups.values_mut() {
        if let Some(c) = offsets.get_mut(tp)
            && c.offset > new_end
        {
            c.offset = new_end;
            bump(&STATS.lowered, 1);
        }
    }
    // A reader past the cut goes back to it (at its next poll; a commit before that never
    // stores a position past it).
    let creation = model.creations.get(&tp.topic).copied().unwrap_or(0);
    for reader in model.readers.values_mut() {
        if &reader.tp == tp && reader.creation == creation && reader.position.is_some() && cut {
            reader.cut = Some(reader.cut.map_or(new_end, |c| c.min(new_end)));
        }
    }
}

fn member_commit(live: &mut Live, model: &mut Model, group: usize, at: Pick, meta: Meta) {
    let name = GROUPS[group];
    let (Some(member), Some(topic)) = (live.members.get_mut(&group), model.members.get(&group)) else {
        return;
    };
    member.poll(Duration::ZERO).expect("the member polls");
    let tps: Vec<TopicPartition> = (0..model.topics.get(*topic).map_or(0, Vec::len) as u32)
        .map(|p| TopicPartition::new(*topic, p))
        .collect();
    // One member: after a poll it owns every partition of its topic.
    assert_eq!(
        member.assignment().into_iter().collect::<Vec<_>>(),
        tps,
        "{name}'s member's assignment"
    );
    let member_id = member.member_id().map(str::to_owned);
    let described = live
        .broker
        .as_ref()
        .expect("open")
        .describe_group(name)
        .expect("describe_group");
    let owners: Vec<(TopicPartition, Option<String>)> = described
        .partitions
        .iter()
        .filter(|p| p.partition.topic == *topic)
        .map(|p| (p.partition.clone(), p.owner.clone()))
        .collect();
    let want: Vec<(TopicPartition, Option<String>)> = tps.iter().map(|tp| (tp.clone(), member_id.clone())).collect();
    assert_eq!(owners, want, "{name}'s owners after its member's poll");
    assert_eq!(
        described.state,
        GroupState::Stable,
        "{name}'s state after its member's poll"
    );
    let metadata = meta.text();
    let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = tps
        .iter()
        .map(|tp| {
            let offset = model.part(tp).map_or(0, |p| p.resolve(at));
            (tp.clone(), OffsetAndMetadata::new(offset).metadata(metadata.clone()))
        })
        .collect();
    let before = now_ms();
    let result = member.commit_offsets(&offsets);
    let after = now_ms();
    if metadata.len() > MAX_METADATA_BYTES && !offsets.is_empty() {
        assert!(
            matches!(result, Err(Error::InvalidArgument { .. })),
            "{name}'s member commits: {result:?}"
        );
        return;
    }
    assert!(result.is_ok(), "{name}'s member commits {offsets:?}: {result:?}");
    for (tp, om) in offsets {
        let stored = live
            .broker()
            .committed_offset(name, &tp)
            .unwrap_or_else(|| panic!("{name}'s member's commit of {tp} is not there"));
        assert_eq!(
            (stored.offset, stored.metadata.as_str()),
            (om.offset, om.metadata.as_str())
        );
        assert!((before..=after).contains(&stored.commit_timestamp));
        bump(&STATS.commits, 1);
        model.set_commit(
            name,
            tp,
            Committed {
                offset: om.offset,
                metadata: om.metadata,
                at: stored.commit_timestamp,
            },
        );
    }
}

fn commit(
    live: &mut Live,
    model: &mut Model,
    group: usize,
    reassign: bool,
    (round, repeated): (u8, bool),
    entries: &[(u8, u8, Pick, Meta)],
) {
    let name = GROUPS[group];
    let mut offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
    for (topic, partition, at, meta) in entries {
        let tp = model.partition(model.topic(*topic), *partition);
        let offset = model.part(&tp).map_or(0, |p| p.resolve(*at));
        let mut metadata = meta.text();
        if repeated && !metadata.is_empty() && metadata.len() <= MAX_METADATA_BYTES {
            // A busy committer with the longest metadata: each round a new value.
            metadata = char::from(b'a' + round % 26).to_string().repeat(MAX_METADATA_BYTES);
        }
        offsets.insert(tp, OffsetAndMetadata::new(offset).metadata(metadata));
    }
    let existing: Vec<TopicPartition> = offsets
        .keys()
        .filter(|tp| missing_partition(model, tp).is_none())
        .cloned()
        .collect();
    let had_consumer = live.consumers.contains_key(&group);
    let consumer = live.consumer(group);
    if reassign || !had_consumer {
        consumer.assign(&existing).expect("assign existing partitions");
    }
    let before = now_ms();
    let result = consumer.commit_offsets(&offsets);
    let after = now_ms();
    if model.members.contains_key(&group) && !offsets.is_empty() {
        // An `assign` consumer commits only to a group without members.
        assert!(
            matches!(&result, Err(Error::CommitFailed { group, .. }) if group == name),
            "commit {offsets:?} for {name}, which has a member: {result:?}"
        );
        return;
    }
    let too_long = offsets.values().any(|om| om.metadata.len() > MAX_METADATA_BYTES);
    let missing = offsets.keys().find_map(|tp| missing_partition(model, tp));
    if too_long || missing.is_some() {
        // Atomic: nothing of the commit is stored.
        let typed = if too_long {
            matches!(result, Err(Error::InvalidArgument { .. }))
                || matches!(result, Err(Error::UnknownTopic { .. } | Error::InvalidPartition { .. }))
        } else {
            matches!(result, Err(Error::UnknownTopic { .. } | Error::InvalidPartition { .. }))
        };
        assert!(typed, "commit {offsets:?} for {name}: {result:?}");
        return;
    }
    assert!(result.is_ok(), "commit {offsets:?} for {name}: {result:?}");
    bump(&STATS.commits, 1);
    for (tp, om) in offsets {
        let end = model.part(&tp).map_or(0, |p| p.end);
        if om.offset > end {
            // Explicit offsets are stored as given, past the end too (Kafka takes any
            // offset; the consumer's auto_offset_reset handles it).
            bump(&STATS.commits_past_end, 1);
        }
        let stored = consumer
            .committed(&tp)
            .expect("committed")
            .unwrap_or_else(|| panic!("{name}'s commit of {tp} is not there"));
        assert_eq!(
            (stored.offset, stored.metadata.as_str()),
            (om.offset, om.metadata.as_str()),
            "{name}'s commit of {tp}"
        );
        assert!(
            (before..=after).contains(&stored.commit_timestamp),
            "{name}'s commit of {tp} at {} outside {before}..={after}",
            stored.commit_timestamp
        );
        model.set_commit(
            name,
            tp,
            Committed {
                offset: om.offset,
                metadata: om.metadata,
                at: stored.commit_timestamp,
            },
        );
    }
}

fn reset(live: &mut Live, model: &mut Model, group: usize, to: Spec, topic: Option<usize>) {
    let name = GROUPS[group];
    let topic = topic.map(|t| TOPICS[t]);
    let tps: Vec<TopicPartition> = match topic {
        Some(t) => (0..model.topics.get(t).map_or(0, Vec::len) as u32)
            .map(|p| TopicPartition::new(t, p))
            .collect(),
        None => model
            .groups
            .get(name)
            .map(|g| g.keys().filter(|tp| model.part(tp).is_some()).cloned().collect())
            .unwrap_or_default(),
    };
    let ts = |x: u16| TS_BASE - 1 + i64::from(x) % (model.produced + 3);
    let spec = match to {
        Spec::Earliest => OffsetSpec::Earliest,
        Spec::Latest => OffsetSpec::Latest,
        // An offset picked against the first partition (clamped into each).
        Spec::Offset(at) => OffsetSpec::Offset(tps.first().and_then(|tp| model.part(tp)).map_or(0, |p| p.resolve(at))),
        Spec::Timestamp(x) => OffsetSpec::Timestamp(ts(x)),
    };
    let mut want: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    for tp in &tps {
        let p = model.part(tp).expect("listed from the model");
        let offset = match spec {
            OffsetSpec::Earliest => p.start,
            OffsetSpec::Latest => p.end,
            OffsetSpec::Offset(o) => o.clamp(p.start, p.end),
            OffsetSpec::Timestamp(t) => p
                .records
                .iter()
                .find(|(_, (rt, _))| *rt >= t)
                .map_or(p.end, |(o, _)| *o),
        };
        want.insert(tp.clone(), offset);
    }
    let plan = live.broker().plan_reset_offsets(name, spec, topic);
    let before = now_ms();
    let result = live.broker().reset_offsets(name, spec, topic);
    let after = now_ms();
    let has_member = model.members.contains_key(&group);
    if has_member {
        // Only for a group without members, as Kafka (the plan works all the same).
        assert!(
            matches!(&result, Err(Error::GroupNotEmpty { group, members: 1 }) if group == name),
            "reset_offsets of {name} with a member: {result:?}"
        );
    }
    if let Some(t) = topic
        && !model.topics.contains_key(t)
    {
        if !has_member {
            unknown_topic(&result, t, "reset_offsets");
        }
        unknown_topic(&plan, t, "plan_reset_offsets");
        return;
    }
    if has_member {
        assert_eq!(
            plan.ok().as_ref(),
            Some(&want),
            "plan_reset_offsets({name}, {spec:?}, {topic:?})"
        );
        return;
    }
    assert_eq!(
        plan.ok().as_ref(),
        Some(&want),
        "plan_reset_offsets({name}, {spec:?}, {topic:?})"
    );
    assert_eq!(
        result.ok().as_ref(),
        Some(&want),
        "reset_offsets({name}, {spec:?}, {topic:?})"
    );
    for (tp, offset) in want {
        let stored = live
            .broker()
            .committed_offset(name, &tp)
            .unwrap_or_else(|| panic!("{name}'s reset of {tp} is not there"));
        assert!(
            (before..=after).contains(&stored.commit_timestamp),
            "reset of {tp} committed at {} outside {before}..={after}",
            stored.commit_timestamp
        );
        model.set_commit(
            name,
            tp,
            Committed {
                offset,
                metadata: String::new(),
                at: stored.commit_timestamp,
            },
        );
    }
}

/// What a poll from `from` returned (offset, timestamp): something if the model holds
/// records from there, and exactly the model's first records from there.
fn check_polled(got: &[(u64, i64)], part: &PartModel, from: u64, what: &str) {
    let stored: Vec<(u64, i64)> = part.records.range(from..).map(|(o, (ts, _))| (*o, *ts)).collect();
    assert!(!got.is_empty() || stored.is_empty(), "{what}: nothing, model {part:?}");
    assert_eq!(got, &stored[..got.len().min(stored.len())], "{what}");
}

/// A consumer of `group` without auto-commit, starting from the earliest or the latest
/// offset where the group has none.
fn group_consumer(live: &Live, group: &str, earliest: bool) -> Consumer {
    let reset = if earliest {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    live.broker()
        .consumer(
            ConsumerConfig::group(group)
                .enable_auto_commit(false)
                .auto_offset_reset(reset),
        )
        .expect("consumer")
}

fn resume(live: &mut Live, model: &mut Model, group: usize, topic: &str, partition: u8, earliest: bool, commit: bool) {
    let name = GROUPS[group];
    let tp = model.partition(topic, partition);
    let mut consumer = group_consumer(live, name, earliest);
    let assigned = consumer.assign(std::slice::from_ref(&tp));
    let Some(part) = model.part(&tp) else {
        expect_missing(
            &assigned,
            missing_partition(model, &tp).unwrap_or("?"),
            &format!("assign {tp}"),
        );
        return;
    };
    assert!(assigned.is_ok(), "assign {tp}: {assigned:?}");
    let committed = model.groups.get(name).and_then(|g| g.get(&tp)).map(|c| c.offset);
    let want = match committed {
        Some(c) if (part.start..=part.end).contains(&c) => c,
        _ if earliest => part.start,
        _ => part.end,
    };
    let position = consumer.position(&tp);
    assert_eq!(
        position.ok(),
        Some(want),
        "{name} resuming {tp} (committed {committed:?}), model {part:?}"
    );
    let records = consumer
        .poll(Duration::from_millis(if want < part.end { 5_000 } else { 0 }))
        .unwrap_or_else(|e| panic!("{name} polling {tp}: {e:?}"));
    let got: Vec<(u64, i64)> = records.iter().map(|r| (r.offset(), r.timestamp())).collect();
    check_polled(&got, part, want, &format!("{name} polling {tp} from {want}"));
    if commit {
        let position = consumer.position(&tp).expect("position");
        assert_eq!(
            position,
            want + got.len() as u64,
            "{name}'s position in {tp} after the poll"
        );
        let before = now_ms();
        let result = consumer.commit();
        if model.members.contains_key(&group) {
            assert!(
                matches!(result, Err(Error::CommitFailed { .. })),
                "{name}'s assign consumer commits beside a member: {result:?}"
            );
            return;
        }
        result.expect("commit the position");
        let after = now_ms();
        let stored = live
            .broker()
            .committed_offset(name, &tp)
            .unwrap_or_else(|| panic!("{name}'s commit of {tp} is not there"));
        assert!((before..=after).contains(&stored.commit_timestamp));
        assert_eq!((stored.offset, stored.metadata.as_str()), (position, ""));
        bump(&STATS.commits, 1);
        model.set_commit(
            name,
            tp,
            Committed {
                offset: position,
                metadata: String::new(),
                at: stored.commit_timestamp,
            },
        );
    }
}

fn read(
    live: &mut Live,
    model: &mut Model,
    group: usize,
    (topic, partition): (u8, u8),
    earliest: bool,
    mode: u8,
    commit: u8,
) {
    let name = GROUPS[group];
    if mode == 2
        && let (Some(consumer), Some(reader)) = (live.readers.get_mut(&group), model.readers.get(&group))
    {
        // The reader assigned one partition again: the same partition of the same topic
        // keeps its position (and the truncations it has yet to see), as Kafka's `assign`.
        let tp = model.partition(model.topic(topic), partition);
        let assigned = consumer.assign(std::slice::from_ref(&tp));
        if let Some(want) = missing_partition(model, &tp) {
            // Refused: the assignment stays as it was.
            expect_missing(&assigned, want, &format!("assign {tp}"));
            return;
        }
        assert!(assigned.is_ok(), "assign {tp}: {assigned:?}");
        let creation = model.creations.get(&tp.topic).copied().unwrap_or(0);
        if reader.tp != tp || reader.creation != creation {
            bump(&STATS.reader_reassigned, 1);
            let earliest = reader.earliest;
            model.readers.insert(group, ReaderModel::new(tp, creation, earliest));
        }
    }
    if mode == 1 || !model.readers.contains_key(&group) {
        live.readers.remove(&group);
        model.readers.remove(&group);
        let tp = model.partition(model.topic(topic), partition);
        let mut consumer = group_consumer(live, name, earliest);
        let assigned = consumer.assign(std::slice::from_ref(&tp));
        if let Some(want) = missing_partition(model, &tp) {
            expect_missing(&assigned, want, &format!("assign {tp}"));
            return;
        }
        assert!(assigned.is_ok(), "assign {tp}: {assigned:?}");
        live.readers.insert(group, consumer);
        let creation = model.creations.get(&tp.topic).copied().unwrap_or(0);
        model.readers.insert(group, ReaderModel::new(tp, creation, earliest));
    }
    let mut reader = model.readers.get(&group).cloned().expect("a reader");
    let consumer = live.readers.get_mut(&group).expect("a reader");
    let tp = reader.tp.clone();
    let creation = model.creations.get(&tp.topic).copied().unwrap_or(0);
    let current = model.topics.contains_key(&tp.topic) && reader.creation == creation;
    let commit_position = |consumer: &mut Consumer, model: &mut Model, position: Option<u64>, current: bool| {
        let before = now_ms();
        let result = consumer.commit();
        let after = now_ms();
        if model.members.contains_key(&group) && current && position.is_some() {
            assert!(
                matches!(result, Err(Error::CommitFailed { .. })),
                "{name}'s reader commits beside a member: {result:?}"
            );
            return;
        }
        result.unwrap_or_else(|e| panic!("{name}'s reader commits: {e:?}"));
        let stored = consumer.committed(&tp).expect("committed");
        match position {
            // Only the position in the log the reader reads now: one of a deleted topic
            // is left out (the topic may exist again: it is another log).
            Some(position) if current => {
                let stored = stored.unwrap_or_else(|| panic!("{name}'s reader's commit of {tp} is not there"));
                assert_eq!(
                    (stored.offset, stored.metadata.as_str()),
                    (position, ""),
                    "{name}'s reader's commit of {tp}"
                );
                assert!((before..=after).contains(&stored.commit_timestamp));
                bump(&STATS.commits, 1);
                model.set_commit(
                    name,
                    tp.clone(),
                    Committed {
                        offset: position,
                        metadata: String::new(),
                        at: stored.commit_timestamp,
                    },
                );
            }
            _ => {
                let want = model.groups.get(name).and_then(|g| g.get(&tp));
                assert_eq!(
                    stored.map(|s| s.offset),
                    want.map(|c| c.offset),
                    "{name}'s reader committed nothing of {tp}"
                );
            }
        }
    };
    if commit == 1 {
        let start = model.part(&tp).map_or(0, |p| p.start);
        commit_position(consumer, model, reader.position(start), current);
    }
    let Some(parts) = model.topics.get(&tp.topic) else {
        let polled = consumer.poll(Duration::ZERO);
        unknown_topic(
            &polled.map(|r| r.len()),
            &tp.topic,
            &format!("{name}'s reader polling {tp}"),
        );
        bump(&STATS.reader_unknown, 1);
        return;
    };
    let Some(part) = parts.get(tp.partition as usize).cloned() else {
        // The topic was created again without this partition: what the reader does then
        // is not said; it is replaced at its next read.
        live.readers.remove(&group);
        model.readers.remove(&group);
        return;
    };
    if reader.creation != creation {
        // A topic created again: the reader switches to the new log, from the committed
        // offset or the reset.
        reader.creation = creation;
        reader.position = None;
        reader.cut = None;
        bump(&STATS.reader_switched, 1);
    }
    let reset = if reader.earliest { part.start } else { part.end };
    let committed = model.groups.get(name).and_then(|g| g.get(&tp)).map(|c| c.offset);
    if reader.position(part.start) < reader.position {
        bump(&STATS.reader_moved_back, 1);
    }
    let mut position = reader.position(part.start).unwrap_or(match committed {
        Some(c) if (part.start..=part.end).contains(&c) => c,
        _ => reset,
    });
    if !(part.start..=part.end).contains(&position) {
        position = reset;
        bump(&STATS.reader_reset, 1);
    }
    let timeout = Duration::from_millis(if position < part.end { 5_000 } else { 0 });
    let records = consumer
        .poll(timeout)
        .unwrap_or_else(|e| panic!("{name}'s reader polling {tp} from {position}: {e:?}"));
    let got: Vec<(u64, i64)> = records.iter().map(|r| (r.offset(), r.timestamp())).collect();
    drop(records);
    check_polled(
        &got,
        &part,
        position,
        &format!("{name}'s reader polling {tp} from {position} ({reader:?})"),
    );
    position += got.len() as u64;
    assert_eq!(
        consumer.position(&tp).ok(),
        Some(position),
        "{name}'s reader's position in {tp}"
    );
    reader.position = Some(position);
    reader.cut = None;
    if commit == 2 {
        commit_position(consumer, model, reader.position, true);
    }
    model.readers.insert(group, reader);
}

fn check_read_only_refuses(reader: &Broker) {
    let refused = |r: Result<(), Error>, what: &str| {
        assert!(
            matches!(r, Err(Error::ReadOnly { .. })),
            "{what} on a read-only broker: {r:?}"
        );
    };
    refused(reader.create_topic("fresh", TopicConfig::default()), "create_topic");
    refused(reader.delete_topic(TOPICS[0]), "delete_topic");
    refused(reader.delete_group(GROUPS[0]), "delete_group");
    refused(
        reader.reset_offsets(GROUPS[0], OffsetSpec::Earliest, None).map(|_| ()),
        "reset_offsets",
    );
}

/// The broker (writer or reader) equals the model: topics, partitions, offsets, groups.
fn check(broker: &Broker, model: &Model, when: &str) {
    check_with(broker, model, when, &BTreeMap::new());
}

/// [`check`] of the writer's broker, where the groups of `members` have a subscribed
/// member (to the topic given).
fn check_writer(live: &Live, model: &Model, when: &str) {
    let members: BTreeMap<&str, &str> = model.members.iter().map(|(g, t)| (GROUPS[*g], *t)).collect();
    check_with(live.broker(), model, when, &members);
}

fn check_with(broker: &Broker, model: &Model, when: &str, members: &BTreeMap<&str, &str>) {
    let names: Vec<String> = model.topics.keys().cloned().collect();
    assert_eq!(broker.list_topics(), names, "{when}: list_topics");
    for name in TOPICS {
        let described = broker.describe_topic(name);
        let Some(parts) = model.topics.get(name) else {
            unknown_topic(&described, name, &format!("{when}: describe_topic"));
            continue;
        };
        let d = described.unwrap_or_else(|e| panic!("{when}: describe_topic {name}: {e:?}"));
        assert_eq!(d.config.partitions() as usize, parts.len(), "{when}: {name}'s config");
        let got: Vec<(u32, u64, u64)> = d
            .partitions
            .iter()
            .map(|p| (p.partition, p.log_start_offset, p.log_end_offset))
            .collect();
        let want: Vec<(u32, u64, u64)> = (0u32..).zip(parts).map(|(i, p)| (i, p.start, p.end)).collect();
        assert_eq!(got, want, "{when}: {name}'s partitions (number, start, end)");
    }
    let groups: BTreeSet<String> = model
        .groups
        .keys()
        .cloned()
        .chain(members.keys().map(|g| (*g).to_owned()))
        .collect();
    assert_eq!(
        broker.list_groups(),
        groups.into_iter().collect::<Vec<_>>(),
        "{when}: list_groups"
    );
    let no_offsets = BTreeMap::new();
    for name in GROUPS {
        let described = broker.describe_group(name);
        let member_topic = members.get(name).copied();
        let offsets = match (model.groups.get(name), member_topic) {
            (Some(offsets), _) => offsets,
            (None, Some(_)) => &no_offsets,
            (None, None) => {
                assert!(
                    matches!(&described, Err(Error::UnknownGroup { group }) if group == name),
                    "{when}: describe_group {name} without offsets: {described:?}"
                );
                for tp in model.topics.keys().map(|t| TopicPartition::new(t.as_str(), 0)) {
                    assert_eq!(broker.committed_offset(name, &tp), None, "{when}: {name} {tp}");
                }
                continue;
            }
        };
        let d = described.unwrap_or_else(|e| panic!("{when}: describe_group {name}: {e:?}"));
        if member_topic.is_some() {
            assert_ne!(d.state, GroupState::Empty, "{when}: {name}'s state");
            assert_eq!(d.members.len(), 1, "{when}: {name}'s members");
        } else {
            assert_eq!(d.state, GroupState::Empty, "{when}: {name}'s state");
            assert!(d.members.is_empty(), "{when}: {name}'s members");
        }
        let got: Vec<(TopicPartition, Option<Committed>, u64, Option<u64>)> = d
            .partitions
            .iter()
            .map(|p| {
                let c = p.committed.as_ref().map(|c| Committed {
                    offset: c.offset,
                    metadata: c.metadata.clone(),
                    at: c.commit_timestamp,
                });
                (p.partition.clone(), c, p.log_end_offset, p.lag)
            })
            .collect();
        // Every partition with a committed offset, and every partition of the member's topic.
        let mut tps: BTreeSet<TopicPartition> = offsets.keys().cloned().collect();
        if let Some(topic) = member_topic {
            for p in 0..model.topics.get(topic).map_or(0, Vec::len) as u32 {
                tps.insert(TopicPartition::new(topic, p));
            }
        }
        let want: Vec<(TopicPartition, Option<Committed>, u64, Option<u64>)> = tps
            .into_iter()
            .map(|tp| {
                let end = model.part(&tp).map_or(0, |p| p.end);
                let c = offsets.get(&tp).cloned();
                let lag = c.as_ref().map(|c| end.saturating_sub(c.offset));
                (tp, c, end, lag)
            })
            .collect();
        assert_eq!(got, want, "{when}: describe_group {name}");
        for (tp, c) in offsets {
            let stored = broker.committed_offset(name, tp);
            assert_eq!(
                stored.map(|s| (s.offset, s.metadata, s.commit_timestamp)),
                Some((c.offset, c.metadata.clone(), c.at)),
                "{when}: committed_offset {name} {tp}"
            );
        }
    }
}

fn run_case(synced_offsets: bool, ops: &[Op]) {
    let mut live = Live {
        dir: tempfile::tempdir().expect("temp dir"),
        durability: if synced_offsets {
            Durability::Synced
        } else {
            Durability::Written
        },
        broker: None,
        producer: None,
        consumers: BTreeMap::new(),
        readers: BTreeMap::new(),
        members: BTreeMap::new(),
        grabbed: None,
        follower: None,
    };
    live.open();
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        apply(&mut live, &mut model, op);
        let when = format!("after op {i} {op:?}");
        check_writer(&live, &model, &when);
        for (group, consumer) in &live.consumers {
            for (tp, c) in model.groups.get(GROUPS[*group]).into_iter().flatten() {
                let stored = consumer.committed(tp).expect("committed");
                assert_eq!(
                    stored.map(|s| s.offset),
                    Some(c.offset),
                    "{when}: consumer.committed {tp}"
                );
            }
        }
    }
    if snapshot_exists(live.dir.path()) {
        bump(&STATS.cases_with_snapshot, 1);
    }
    bump(&STATS.cases, 1);
    // A last clean reopen: everything survives it.
    live.close();
    model.members.clear();
    live.follower = None;
    live.open();
    check(live.broker(), &model, "after the final reopen");
}

fn snapshot_exists(dir: &Path) -> bool {
    dir.join("offsets").join("snapshot").exists()
}

#[test]
fn broker_admin_and_committed_offsets_follow_the_model() {
    let cases = env_u64("BROOKLET_MODEL_CASES", 48);
    let seed = env_u64("BROOKLET_MODEL_SEED", 0x6d0d_e1b0);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: u32::try_from(cases).unwrap_or(u32::MAX),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    });
    let started = std::time::Instant::now();
    let strategy = (any::<bool>(), proptest::collection::vec(op(), 20..=60));
    let result = runner.run(&strategy, |(synced, ops)| {
        run_case(synced, &ops);
        Ok(())
    });
    eprintln!(
        "model_broker: {cases} cases (seed {seed:#x}) in {:.1?}: {} ops, {} commits ({} past the log end), \
         {} offsets lowered by truncations, {} truncations that cut, {} log starts moved, \
         {} topics recreated, {} reopens, {} cases with an offsets snapshot; readers: {} moved back to a cut, \
         {} reset below the start, {} switched to a topic created again, {} found their topic deleted, \
         {} assigned another partition; {} writes through a deleted topic's log refused, \
         {} truncations after the broker closed",
        started.elapsed(),
        STATS.ops.load(Ordering::Relaxed),
        STATS.commits.load(Ordering::Relaxed),
        STATS.commits_past_end.load(Ordering::Relaxed),
        STATS.lowered.load(Ordering::Relaxed),
        STATS.truncations_cutting.load(Ordering::Relaxed),
        STATS.starts_moved.load(Ordering::Relaxed),
        STATS.recreated.load(Ordering::Relaxed),
        STATS.reopens.load(Ordering::Relaxed),
        STATS.cases_with_snapshot.load(Ordering::Relaxed),
        STATS.reader_moved_back.load(Ordering::Relaxed),
        STATS.reader_reset.load(Ordering::Relaxed),
        STATS.reader_switched.load(Ordering::Relaxed),
        STATS.reader_unknown.load(Ordering::Relaxed),
        STATS.reader_reassigned.load(Ordering::Relaxed),
        STATS.stale_refused.load(Ordering::Relaxed),
        STATS.detached.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
