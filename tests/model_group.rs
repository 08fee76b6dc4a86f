//! A model-based test of consumer groups: random sequences of operations on 1 to 4
//! subscribed members of 1 or 2 groups (range, roundrobin or sticky: all members of a group
//! use the same assignor) over 1 or 2 topics of 1 to 4 partitions (grown up to 6), and on
//! up to 2 `assign` readers (of a group or of none), all driven from one thread — every
//! `poll` has a zero timeout, so nothing depends on the clock — and applied both to a real
//! [`Broker`] and to a plain model of what the docs promise:
//!
//! - the coordinator's incremental protocol (`src/group/coordinator.rs`): a rebalance
//!   recomputes every member's target at once; at its next poll a member revokes what its
//!   target no longer holds (auto-committing it first, if auto-commit is on) and takes the
//!   partitions of its target that nobody owns; the group is `Stable` once every member
//!   owns exactly its target, `Rebalancing` until then;
//! - the assignors as `src/group/assignor.rs` documents them: range's consecutive runs and
//!   roundrobin's circular deal (both written out here from the docs), sticky's balance,
//!   its round-robin start and its stickiness (the most partitions kept that a balanced
//!   assignment can keep);
//! - positions (`src/consumer.rs`): a newly owned partition starts at the group's committed
//!   offset, or where `auto_offset_reset` says if there is none or it is past the log end;
//!   every poll continues exactly where the previous one ended, with the records produced
//!   there; `seek`, `seek_to_beginning`, `seek_to_end` move the position;
//! - commits: `commit()` stores every position; `commit_offsets` only partitions the member
//!   owns now, else `CommitFailed` and nothing changes; an `assign` reader of a group commits
//!   only while the group has no members; auto-commit (its interval an hour, so only the
//!   hand-overs commit: revoke, unsubscribe, close, drop) stores the positions given up;
//! - what survives a clean reopen of the broker: the committed offsets (members join again).
//!
//! After every operation the broker must equal the model: `list_groups`, every
//! `describe_group` (state, members with owned and target partitions, assignor, every
//! partition's committed offset, end, lag and owner, the generation moving exactly when a
//! rebalance happened), and every consumer's assignment, positions, lags and committed
//! offsets. At-least-once follows: what a member consumed and did not commit is delivered
//! again to the partition's next owner, and what was committed never is.
//!
//! CI runs a modest number of cases (debug build); `BROOKLET_MODEL_CASES=n` runs more and
//! `BROOKLET_MODEL_SEED=n` another fixed seed, e.g.
//! `BROOKLET_MODEL_CASES=2000 cargo test --release --test model_group -- --nocapture`.
//! A failure prints the shrunk sequence of operations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use brooklet::{
    Assignor, Broker, Consumer, ConsumerConfig, ConsumerRecords, Error, GroupState, MemberDescription,
    MemberSubscription, OffsetAndMetadata, OffsetReset, Producer, ProducerConfig, ProducerRecord, RangeAssignor,
    RoundRobinAssignor, StickyAssignor, TopicConfig, TopicPartition,
};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};

const TOPICS: [&str; 2] = ["orders", "payments"];
const GROUPS: [&str; 2] = ["billing", "audit"];
/// Client ids: member ids start with them, so member-id order is not join order.
const CLIENTS: [&str; 3] = ["m", "c", "x"];
/// Member slots and `assign` reader slots.
const SLOTS: usize = 4;
const READERS: usize = 2;
/// `add_partitions` grows a topic up to this many partitions.
const MAX_PARTITIONS: u32 = 6;
/// Records a reader's poll returns at most.
const READER_MAX_RECORDS: usize = 3;
/// Only the hand-overs auto-commit: no case runs this long.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(3600);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Range,
    RoundRobin,
    Sticky,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Range => "range",
            Kind::RoundRobin => "roundrobin",
            Kind::Sticky => "sticky",
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `count` records to one partition, one `send` each or one `send_batch`.
    Produce {
        topic: u8,
        partition: u8,
        count: u8,
        batch: bool,
    },
    /// An empty slot: a new consumer of group `group` subscribes to the topics of the mask
    /// `topics`. An unsubscribed one subscribes again (a new member); a subscribed one
    /// subscribes to the mask's topics (the same member: a rebalance only if they differ).
    Join {
        slot: u8,
        group: u8,
        topics: u8,
        client: u8,
        auto_commit: bool,
        earliest: bool,
        max_records: u8,
    },
    /// `close` (0), `unsubscribe` (1, the consumer is kept) or drop (2).
    Leave {
        slot: u8,
        how: u8,
    },
    /// One poll of one member (zero timeout).
    Poll {
        slot: u8,
    },
    /// Every member polls in turn, until the group is stable.
    Settle,
    /// `commit()`: every position.
    Commit {
        slot: u8,
    },
    /// `commit_offsets` of one partition (and perhaps a second): refused unless the member
    /// owns them all. `at` picks an offset in `0..=end + 1` (one past the end too).
    CommitOffsets {
        slot: u8,
        topic: u8,
        partition: u8,
        at: u8,
        second: Option<(u8, u8)>,
    },
    /// `seek` (0, to an offset in `0..=end`), `seek_to_beginning` (1) or `seek_to_end` (2)
    /// of one partition: refused with `NotAssigned` unless the member owns it.
    Seek {
        slot: u8,
        topic: u8,
        partition: u8,
        how: u8,
        at: u8,
    },
    /// Grows a topic by one or two partitions (refused at the maximum).
    AddPartitions {
        topic: u8,
        two: bool,
    },
    /// An `assign` reader (group 0: none; 1, 2: a group) of the mask's partitions of one
    /// topic: a new consumer if `fresh` or there is none, else the reader's consumer
    /// assigned again (partitions it keeps keep their positions).
    Assign {
        reader: u8,
        group: u8,
        topic: u8,
        partitions: u8,
        earliest: bool,
        fresh: bool,
    },
    ReaderPoll {
        reader: u8,
    },
    /// A reader's `commit()`: refused while its group has members.
    ReaderCommit {
        reader: u8,
    },
    /// Every consumer closed (dropped), the broker closed and opened again, the members
    /// that were subscribed subscribe again (new consumers, same settings).
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS as u8;
    let reader = 0..READERS as u8;
    prop_oneof![
        5 => (any::<u8>(), any::<u8>(), 1u8..=8, any::<bool>())
            .prop_map(|(topic, partition, count, batch)| Op::Produce { topic, partition, count, batch }),
        4 => (slot.clone(), any::<u8>(), 1u8..=3, 0..CLIENTS.len() as u8, any::<bool>(), any::<bool>(), 1u8..=4)
            .prop_map(|(slot, group, topics, client, auto_commit, earliest, max_records)| Op::Join {
                slot,
                group,
                topics,
                client,
                auto_commit,
                earliest,
                max_records
            }),
        2 => (slot.clone(), 0u8..3).prop_map(|(slot, how)| Op::Leave { slot, how }),
        5 => slot.clone().prop_map(|slot| Op::Poll { slot }),
        3 => Just(Op::Settle),
        2 => slot.clone().prop_map(|slot| Op::Commit { slot }),
        3 => (slot.clone(), any::<u8>(), any::<u8>(), any::<u8>(), proptest::option::of((any::<u8>(), any::<u8>())))
            .prop_map(|(slot, topic, partition, at, second)| Op::CommitOffsets { slot, topic, partition, at, second }),
        2 => (slot.clone(), any::<u8>(), any::<u8>(), 0u8..3, any::<u8>())
            .prop_map(|(slot, topic, partition, how, at)| Op::Seek { slot, topic, partition, how, at }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(topic, two)| Op::AddPartitions { topic, two }),
        1 => (reader.clone(), 0u8..3, any::<u8>(), any::<u8>(), any::<bool>(), any::<bool>())
            .prop_map(|(reader, group, topic, partitions, earliest, fresh)| Op::Assign {
                reader,
                group,
                topic,
                partitions,
                earliest,
                fresh
            }),
        2 => reader.clone().prop_map(|reader| Op::ReaderPoll { reader }),
        1 => reader.prop_map(|reader| Op::ReaderCommit { reader }),
        1 => Just(Op::Reopen),
    ]
}

/// The case's topics (initial partition counts) and groups (their assignors).
#[derive(Debug, Clone)]
struct Setup {
    partitions: Vec<u32>,
    kinds: Vec<Kind>,
}

fn setup() -> impl Strategy<Value = Setup> {
    let kind = prop_oneof![Just(Kind::Range), Just(Kind::RoundRobin), Just(Kind::Sticky)];
    (
        proptest::collection::vec(1u32..=4, 1..=TOPICS.len()),
        proptest::collection::vec(kind, 1..=GROUPS.len()),
    )
        .prop_map(|(partitions, kinds)| Setup { partitions, kinds })
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

/// A subscribed (or unsubscribed, but kept) member.
#[derive(Debug, Clone)]
struct MemberModel {
    group: usize,
    client: &'static str,
    auto_commit: bool,
    earliest: bool,
    max_records: usize,
    /// Subscribed topics, sorted; empty while unsubscribed.
    topics: Vec<String>,
    /// The member id the coordinator gave it, while subscribed.
    id: Option<String>,
    /// Partitions it owns, with its position in each.
    owned: BTreeMap<TopicPartition, u64>,
    /// The generation it synced with at its last poll (0 before its first poll).
    generation: u64,
}

#[derive(Debug, Clone)]
struct ReaderModel {
    group: Option<usize>,
    earliest: bool,
    parts: BTreeMap<TopicPartition, u64>,
}

#[derive(Debug, Default)]
struct GroupModel {
    committed: BTreeMap<TopicPartition, u64>,
    /// The current generation's assignment, by member id.
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    /// Whether a rebalance happened since the last check.
    rebalanced: bool,
    /// The generation the last check saw, while the group had members.
    generation: Option<u64>,
    /// Per partition, the offset up to which the group's members had delivered records.
    delivered: BTreeMap<TopicPartition, u64>,
}

struct Model {
    /// Per topic, per partition, the records' (key, value).
    topics: Vec<Vec<Vec<(String, String)>>>,
    kinds: Vec<Kind>,
    groups: Vec<GroupModel>,
    members: Vec<Option<MemberModel>>,
    readers: Vec<Option<ReaderModel>>,
    produced: u64,
}

impl Model {
    fn end(&self, tp: &TopicPartition) -> u64 {
        let t = TOPICS.iter().position(|t| *t == tp.topic).expect("a known topic");
        self.topics[t][tp.partition as usize].len() as u64
    }

    fn tp(&self, topic: u8, partition: u8) -> TopicPartition {
        let t = usize::from(topic) % self.topics.len();
        let p = usize::from(partition) % self.topics[t].len();
        TopicPartition::new(TOPICS[t], p as u32)
    }

    /// A partition for an operation of the member in `slot`: for an even `partition`, one
    /// it owns (if any), else any partition.
    fn member_tp(&self, slot: usize, topic: u8, partition: u8) -> TopicPartition {
        let owned: Vec<&TopicPartition> = self.members[slot].iter().flat_map(|m| m.owned.keys()).collect();
        if partition.is_multiple_of(2) && !owned.is_empty() {
            return owned[usize::from(partition / 2) % owned.len()].clone();
        }
        self.tp(topic, partition / 2)
    }

    fn counts(&self) -> BTreeMap<String, u32> {
        self.topics
            .iter()
            .enumerate()
            .map(|(t, parts)| (TOPICS[t].to_owned(), parts.len() as u32))
            .collect()
    }

    /// Where a newly owned or assigned partition starts: the committed offset if it is in
    /// the log, else the reset (the log start is always 0 here).
    fn start_position(&self, group: Option<usize>, tp: &TopicPartition, earliest: bool) -> u64 {
        let end = self.end(tp);
        match group.and_then(|g| self.groups[g].committed.get(tp)) {
            Some(&c) if c <= end => c,
            _ if earliest => 0,
            _ => end,
        }
    }

    fn subscribed(&self, group: usize) -> Vec<&MemberModel> {
        let mut members: Vec<&MemberModel> = self
            .members
            .iter()
            .flatten()
            .filter(|m| m.group == group && m.id.is_some())
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members
    }

    fn owner(&self, group: usize, tp: &TopicPartition) -> Option<String> {
        self.subscribed(group)
            .into_iter()
            .find(|m| m.owned.contains_key(tp))
            .and_then(|m| m.id.clone())
    }

    fn stable(&self, group: usize) -> bool {
        let target = &self.groups[group].target;
        self.subscribed(group).iter().all(|m| {
            let want = target
                .get(m.id.as_deref().unwrap_or_default())
                .cloned()
                .unwrap_or_default();
            m.owned.keys().cloned().collect::<BTreeSet<_>>() == want
        })
    }

    /// A new generation: every member's target from the group's assignor, given each
    /// member's previous target as what it owned.
    fn rebalance(&mut self, group: usize) {
        bump(&STATS.rebalances, 1);
        let subs: Vec<MemberSubscription> = self
            .subscribed(group)
            .into_iter()
            .map(|m| {
                let id = m.id.clone().expect("subscribed");
                MemberSubscription {
                    owned: self.groups[group]
                        .target
                        .get(&id)
                        .map(|t| t.iter().cloned().collect())
                        .unwrap_or_default(),
                    member_id: id,
                    topics: m.topics.clone(),
                }
            })
            .collect();
        let counts = self.counts();
        let partitions: BTreeMap<String, u32> = counts
            .into_iter()
            .filter(|(t, _)| subs.iter().any(|s| s.topics.contains(t)))
            .collect();
        let target = expected_assignment(self.kinds[group], &subs, &partitions);
        let g = &mut self.groups[group];
        g.target = target;
        g.rebalanced = true;
    }
}

/// What the group's assignor must give: range and roundrobin as their docs spell them out;
/// sticky's result checked against its documented properties.
fn expected_assignment(
    kind: Kind,
    subs: &[MemberSubscription],
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> =
        subs.iter().map(|s| (s.member_id.clone(), BTreeSet::new())).collect();
    match kind {
        Kind::Range => {
            // Per topic, the subscribed members in member-id order get consecutive runs:
            // `P / M` each, one more for the first `P % M`.
            for (topic, &count) in partitions {
                let members: Vec<&str> = subs
                    .iter()
                    .filter(|s| s.topics.contains(topic))
                    .map(|s| s.member_id.as_str())
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let m = members.len() as u32;
                let mut next = 0;
                for (i, id) in members.iter().enumerate() {
                    let len = count / m + u32::from((i as u32) < count % m);
                    let mine = out.get_mut(*id).expect("a member");
                    mine.extend((next..next + len).map(|p| TopicPartition::new(topic.as_str(), p)));
                    next += len;
                }
            }
        }
        Kind::RoundRobin => round_robin(subs, partitions, &mut out),
        Kind::Sticky => {
            let got = StickyAssignor.assign(subs, partitions);
            for (id, tps) in got {
                let mine = out
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("sticky: unknown member {id}"));
                let len = tps.len();
                mine.extend(tps);
                assert_eq!(mine.len(), len, "sticky gave {id} a partition twice");
            }
            check_sticky(subs, partitions, &out);
        }
    }
    out
}

/// All partitions by topic then partition, dealt in turn to the members in member-id
/// order, round in a circle, skipping members not subscribed to the partition's topic.
fn round_robin(
    subs: &[MemberSubscription],
    partitions: &BTreeMap<String, u32>,
    out: &mut BTreeMap<String, BTreeSet<TopicPartition>>,
) {
    let mut cursor = 0;
    for (topic, &count) in partitions {
        for p in 0..count {
            let n = subs.len();
            let Some(i) = (0..n)
                .map(|k| (cursor + k) % n)
                .find(|&i| subs[i].topics.contains(topic))
            else {
                continue;
            };
            out.get_mut(&subs[i].member_id)
                .expect("a member")
                .insert(TopicPartition::new(topic.as_str(), p));
            cursor = i + 1;
        }
    }
}

/// Sticky's documented properties: every partition of a subscribed topic to exactly one
/// member subscribed to it; when all members subscribe to the same topics, counts differ by
/// at most one, the result is round-robin's when nobody owned anything, and as many
/// partitions stay with their previous owner as a balanced assignment can keep.
fn check_sticky(
    subs: &[MemberSubscription],
    partitions: &BTreeMap<String, u32>,
    got: &BTreeMap<String, BTreeSet<TopicPartition>>,
) {
    let mut seen = BTreeSet::new();
    for s in subs {
        for tp in &got[&s.member_id] {
            assert!(
                s.topics.contains(&tp.topic),
                "sticky gave {tp} to {} (not subscribed)",
                s.member_id
            );
            assert!(seen.insert(tp.clone()), "sticky gave {tp} twice");
        }
    }
    let all: BTreeSet<TopicPartition> = partitions
        .iter()
        .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.as_str(), p)))
        .collect();
    assert_eq!(seen, all, "sticky: every partition assigned once");
    let Some(first) = subs.first() else { return };
    if subs.iter().any(|s| s.topics != first.topics) {
        return;
    }
    let sizes: Vec<usize> = got.values().map(BTreeSet::len).collect();
    let (min, max) = (
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0),
    );
    assert!(max - min <= 1, "sticky is not balanced: {got:?}");
    if subs.iter().all(|s| s.owned.is_empty()) {
        let mut rr: BTreeMap<String, BTreeSet<TopicPartition>> =
            subs.iter().map(|s| (s.member_id.clone(), BTreeSet::new())).collect();
        round_robin(subs, partitions, &mut rr);
        assert_eq!(
            got, &rr,
            "sticky without previous owners must give round-robin's result"
        );
        return;
    }
    // The most a balanced assignment keeps: each member keeps up to its quota (q, or q + 1
    // for r of them) of what it owned that is still assignable.
    let (q, r) = (all.len() / subs.len(), all.len() % subs.len());
    let still: Vec<usize> = subs
        .iter()
        .map(|s| s.owned.iter().filter(|tp| all.contains(*tp)).count())
        .collect();
    let best = still.iter().map(|&k| k.min(q)).sum::<usize>() + still.iter().filter(|&&k| k > q).count().min(r);
    let kept: usize = subs
        .iter()
        .map(|s| s.owned.iter().filter(|tp| got[&s.member_id].contains(*tp)).count())
        .sum();
    assert_eq!(
        kept, best,
        "sticky kept {kept} partitions where {best} could stay: {subs:?} -> {got:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Statistics (printed at the end, so a run shows what it exercised)
// ---------------------------------------------------------------------------------------

struct Stats {
    ops: AtomicU64,
    records: AtomicU64,
    redelivered: AtomicU64,
    rebalances: AtomicU64,
    revoked: AtomicU64,
    commits: AtomicU64,
    refused: AtomicU64,
    settles: AtomicU64,
    reopens: AtomicU64,
    seeks: AtomicU64,
}

static STATS: Stats = Stats {
    ops: AtomicU64::new(0),
    records: AtomicU64::new(0),
    redelivered: AtomicU64::new(0),
    rebalances: AtomicU64::new(0),
    revoked: AtomicU64::new(0),
    commits: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    settles: AtomicU64::new(0),
    reopens: AtomicU64::new(0),
    seeks: AtomicU64::new(0),
};

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// The real broker
// ---------------------------------------------------------------------------------------

struct Live {
    dir: tempfile::TempDir,
    broker: Option<Broker>,
    producer: Option<Producer>,
    members: Vec<Option<Consumer>>,
    readers: Vec<Option<Consumer>>,
}

impl Live {
    fn open(&mut self) {
        let broker = Broker::open(self.dir.path()).expect("open the broker");
        self.producer = Some(broker.producer(ProducerConfig::default()));
        self.broker = Some(broker);
    }

    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("the broker is open")
    }

    fn member_config(&self, m: &MemberModel, kind: Kind) -> ConsumerConfig {
        let config = ConsumerConfig::group(GROUPS[m.group])
            .client_id(m.client)
            .enable_auto_commit(m.auto_commit)
            .auto_commit_interval(AUTO_COMMIT_INTERVAL)
            .auto_offset_reset(if m.earliest {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            })
            .max_poll_records(m.max_records);
        match kind {
            Kind::Range => config.assignor(RangeAssignor),
            Kind::RoundRobin => config.assignor(RoundRobinAssignor),
            Kind::Sticky => config.assignor(StickyAssignor),
        }
    }
}

/// Checks what a poll returned against the positions `parts` (updated): per partition the
/// records from the position on, in order, as produced; at most `max` in all; some if any
/// partition has records past its position (the poll has a zero timeout, and returns as
/// soon as any record is there).
fn check_records(
    model: &Model,
    records: &ConsumerRecords,
    parts: &mut BTreeMap<TopicPartition, u64>,
    max: usize,
    delivered: Option<&mut BTreeMap<TopicPartition, u64>>,
    what: &str,
) {
    assert!(
        records.len() <= max,
        "{what}: {} records, max_poll_records {max}",
        records.len()
    );
    // Per partition, the first offset returned and the position after the last.
    let mut returned: BTreeMap<TopicPartition, (u64, u64)> = BTreeMap::new();
    for r in records.iter() {
        let tp = r.topic_partition();
        let Some(position) = parts.get_mut(&tp) else {
            panic!("{what}: a record of {tp}, which the consumer does not have");
        };
        assert_eq!(r.offset(), *position, "{what}: {tp}'s next record");
        let t = TOPICS.iter().position(|t| *t == tp.topic).expect("known topic");
        let (key, value) = &model.topics[t][tp.partition as usize]
            .get(r.offset() as usize)
            .unwrap_or_else(|| panic!("{what}: {tp} offset {} was never produced", r.offset()));
        assert_eq!(
            (r.key(), r.value()),
            (Some(key.as_bytes()), Some(value.as_bytes())),
            "{what}: {tp} offset {}",
            r.offset()
        );
        *position += 1;
        returned.entry(tp).or_insert((r.offset(), 0)).1 = *position;
    }
    bump(&STATS.records, records.len() as u64);
    if records.is_empty() {
        for (tp, &position) in parts.iter() {
            assert!(
                position >= model.end(tp),
                "{what}: nothing returned, but {tp} has records from {position} to {}",
                model.end(tp)
            );
        }
    }
    if let Some(delivered) = delivered {
        for (tp, (first, after)) in returned {
            let before = delivered.entry(tp).or_insert(0);
            if first < *before {
                bump(&STATS.redelivered, 1);
            }
            *before = (*before).max(after);
        }
    }
}

fn commit_failed<T: std::fmt::Debug>(result: &Result<T, Error>, group: &str, what: &str) {
    assert!(
        matches!(result, Err(Error::CommitFailed { group: g, .. }) if g == group),
        "{what}: expected CommitFailed for {group}, got {result:?}"
    );
    bump(&STATS.refused, 1);
}

/// The model's half of a member's poll: revoke what the target no longer holds (with
/// auto-commit, its positions are committed first), then take what the target holds and
/// nobody owns.
fn model_sync(model: &mut Model, slot: usize) {
    let Some(mut m) = model.members[slot].take() else {
        return;
    };
    let Some(id) = m.id.clone() else {
        model.members[slot] = Some(m);
        return;
    };
    let g = m.group;
    let target = model.groups[g].target.get(&id).cloned().unwrap_or_default();
    let revoke: Vec<TopicPartition> = m.owned.keys().filter(|tp| !target.contains(*tp)).cloned().collect();
    for tp in revoke {
        let position = m.owned.remove(&tp).expect("owned");
        bump(&STATS.revoked, 1);
        if m.auto_commit {
            model.groups[g].committed.insert(tp, position);
        }
    }
    if target.iter().any(|tp| !m.owned.contains_key(tp)) {
        for tp in target {
            if !m.owned.contains_key(&tp) && model.owner(g, &tp).is_none() {
                let position = model.start_position(Some(g), &tp, m.earliest);
                m.owned.insert(tp, position);
            }
        }
    }
    model.members[slot] = Some(m);
}

fn member_poll(live: &mut Live, model: &mut Model, slot: usize, what: &str) {
    let Some(consumer) = live.members[slot].as_mut() else {
        return;
    };
    let subscribed = model.members[slot].as_ref().is_some_and(|m| m.id.is_some());
    let result = consumer.poll(Duration::ZERO);
    if !subscribed {
        assert!(
            matches!(result, Err(Error::NotSubscribed { .. })),
            "{what}: poll of an unsubscribed consumer: {result:?}"
        );
        return;
    }
    model_sync(model, slot);
    let records = result.unwrap_or_else(|e| panic!("{what}: poll: {e:?}"));
    let mut m = model.members[slot].take().expect("a member");
    // The poll synced with the group's current generation (a poll starts no rebalance).
    m.generation = live
        .broker()
        .describe_group(GROUPS[m.group])
        .unwrap_or_else(|e| panic!("{what}: describe_group: {e:?}"))
        .generation;
    let mut delivered = std::mem::take(&mut model.groups[m.group].delivered);
    check_records(model, &records, &mut m.owned, m.max_records, Some(&mut delivered), what);
    model.groups[m.group].delivered = delivered;
    model.members[slot] = Some(m);
}

/// The member in `slot` leaves (close, unsubscribe or drop): with auto-commit its
/// positions are committed first; its partitions are free at once.
fn model_leave(model: &mut Model, slot: usize) {
    let Some(m) = model.members[slot].as_mut() else { return };
    if m.id.is_none() {
        return;
    }
    let g = m.group;
    let owned = std::mem::take(&mut m.owned);
    let auto_commit = m.auto_commit;
    m.id = None;
    m.topics.clear();
    if auto_commit {
        model.groups[g].committed.extend(owned);
    }
    model.rebalance(g);
}

fn topics_of(model: &Model, mask: u8) -> Vec<String> {
    let n = model.topics.len();
    let mut topics: Vec<String> = (0..n)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| TOPICS[i].to_owned())
        .collect();
    if topics.is_empty() {
        topics.push(TOPICS[0].to_owned());
    }
    topics
}

fn join(live: &mut Live, model: &mut Model, slot: usize, m: MemberModel, topics: Vec<String>) {
    let g = m.group;
    if live.members[slot].is_none() {
        let config = live.member_config(&m, model.kinds[g]);
        live.members[slot] = Some(live.broker().consumer(config).expect("consumer"));
    }
    let consumer = live.members[slot].as_mut().expect("a consumer");
    consumer.subscribe(&topics).expect("subscribe");
    let id = consumer.member_id().expect("a member id").to_owned();
    assert!(
        model.members.iter().flatten().all(|o| o.id.as_deref() != Some(&id)),
        "member id {id} given twice"
    );
    model.members[slot] = Some(MemberModel {
        topics,
        id: Some(id),
        owned: BTreeMap::new(),
        generation: 0,
        ..m
    });
    model.rebalance(g);
}

fn apply(live: &mut Live, model: &mut Model, op: &Op, what: &str) {
    bump(&STATS.ops, 1);
    match *op {
        Op::Produce {
            topic,
            partition,
            count,
            batch,
        } => {
            let tp = model.tp(topic, partition);
            let t = usize::from(topic) % model.topics.len();
            let end = model.end(&tp);
            let mut records = Vec::new();
            for i in 0..u64::from(count) {
                model.produced += 1;
                let key = format!("k{}-{}", tp.partition, end + i);
                let value = format!("v{}", model.produced);
                records.push(
                    ProducerRecord::new(TOPICS[t])
                        .partition(tp.partition)
                        .key(key.clone())
                        .value(value.clone()),
                );
                model.topics[t][tp.partition as usize].push((key, value));
            }
            let producer = live.producer.as_ref().expect("a producer");
            let offsets: Vec<(u32, u64)> = if batch {
                let sent = producer.send_batch(&records).expect("send_batch");
                sent.iter().map(|m| (m.partition, m.offset)).collect()
            } else {
                records
                    .into_iter()
                    .map(|r| producer.send(r).map(|m| (m.partition, m.offset)).expect("send"))
                    .collect()
            };
            let want: Vec<(u32, u64)> = (0..u64::from(count)).map(|i| (tp.partition, end + i)).collect();
            assert_eq!(offsets, want, "{what}: where the records went");
        }
        Op::Join {
            slot,
            group,
            topics,
            client,
            auto_commit,
            earliest,
            max_records,
        } => {
            let slot = usize::from(slot);
            let topics = topics_of(model, topics);
            match model.members[slot].clone() {
                None => {
                    let m = MemberModel {
                        group: usize::from(group) % model.groups.len(),
                        client: CLIENTS[usize::from(client) % CLIENTS.len()],
                        auto_commit,
                        earliest,
                        max_records: usize::from(max_records),
                        topics: Vec::new(),
                        id: None,
                        owned: BTreeMap::new(),
                        generation: 0,
                    };
                    join(live, model, slot, m, topics);
                }
                Some(m) if m.id.is_none() => join(live, model, slot, m, topics),
                Some(m) => {
                    // Subscribing again: the same member; a rebalance only if the topics differ.
                    let consumer = live.members[slot].as_mut().expect("a consumer");
                    consumer.subscribe(&topics).expect("subscribe again");
                    assert_eq!(consumer.member_id(), m.id.as_deref(), "{what}: the same member");
                    if topics != m.topics {
                        model.members[slot].as_mut().expect("a member").topics = topics;
                        model.rebalance(m.group);
                    }
                }
            }
        }
        Op::Leave { slot, how } => {
            let slot = usize::from(slot);
            if live.members[slot].is_none() {
                return;
            }
            model_leave(model, slot);
            match how {
                0 => {
                    let consumer = live.members[slot].take().expect("a consumer");
                    consumer.close().unwrap_or_else(|e| panic!("{what}: close: {e:?}"));
                    model.members[slot] = None;
                }
                1 => live.members[slot].as_mut().expect("a consumer").unsubscribe(),
                _ => {
                    live.members[slot] = None;
                    model.members[slot] = None;
                }
            }
        }
        Op::Poll { slot } => member_poll(live, model, usize::from(slot), what),
        Op::Settle => {
            bump(&STATS.settles, 1);
            for _round in 0..3 {
                if (0..model.groups.len()).all(|g| model.stable(g)) {
                    break;
                }
                for slot in 0..SLOTS {
                    if model.members[slot].as_ref().is_some_and(|m| m.id.is_some()) {
                        member_poll(live, model, slot, what);
                    }
                }
            }
            for g in 0..model.groups.len() {
                assert!(model.stable(g), "{what}: the model of group {g} did not settle");
                check_partitioned(live, model, g, what);
            }
        }
        Op::Commit { slot } => {
            let slot = usize::from(slot);
            let Some(consumer) = live.members[slot].as_mut() else {
                return;
            };
            consumer.commit().unwrap_or_else(|e| panic!("{what}: commit: {e:?}"));
            let m = model.members[slot].as_ref().expect("a member");
            let (g, owned) = (m.group, m.owned.clone());
            bump(&STATS.commits, 1);
            model.groups[g].committed.extend(owned);
        }
        Op::CommitOffsets {
            slot,
            topic,
            partition,
            at,
            second,
        } => {
            let slot = usize::from(slot);
            let Some(consumer) = live.members[slot].as_mut() else {
                return;
            };
            let m = model.members[slot].as_ref().expect("a member");
            if m.id.is_none() {
                return; // Not a member: a standalone commit (the readers cover those).
            }
            let mut offsets = BTreeMap::new();
            for (topic, partition) in std::iter::once((topic, partition)).chain(second) {
                let tp = model.member_tp(slot, topic, partition);
                let offset = u64::from(at) % (model.end(&tp) + 2);
                offsets.insert(tp, offset);
            }
            let request: BTreeMap<TopicPartition, OffsetAndMetadata> = offsets
                .iter()
                .map(|(tp, &o)| (tp.clone(), OffsetAndMetadata::new(o)))
                .collect();
            let result = consumer.commit_offsets(&request);
            if offsets.keys().all(|tp| m.owned.contains_key(tp)) {
                result.unwrap_or_else(|e| panic!("{what}: commit_offsets of owned partitions: {e:?}"));
                bump(&STATS.commits, 1);
                let g = m.group;
                model.groups[g].committed.extend(offsets);
            } else {
                commit_failed(&result, GROUPS[m.group], what);
            }
        }
        Op::Seek {
            slot,
            topic,
            partition,
            how,
            at,
        } => {
            let slot = usize::from(slot);
            let Some(consumer) = live.members[slot].as_mut() else {
                return;
            };
            let tp = model.member_tp(slot, topic, partition);
            let end = model.end(&tp);
            let offset = u64::from(at) % (end + 1);
            let result = match how {
                0 => consumer.seek(&tp, offset),
                1 => consumer.seek_to_beginning(std::slice::from_ref(&tp)),
                _ => consumer.seek_to_end(std::slice::from_ref(&tp)),
            };
            let m = model.members[slot].as_mut().expect("a member");
            match m.owned.get_mut(&tp) {
                Some(position) => {
                    result.unwrap_or_else(|e| panic!("{what}: seek: {e:?}"));
                    bump(&STATS.seeks, 1);
                    *position = match how {
                        0 => offset,
                        1 => 0,
                        _ => end,
                    };
                }
                None => assert!(
                    matches!(&result, Err(Error::NotAssigned { partition }) if *partition == tp),
                    "{what}: seek of a partition not owned: {result:?}"
                ),
            }
        }
        Op::AddPartitions { topic, two } => {
            let t = usize::from(topic) % model.topics.len();
            let count = model.topics[t].len() as u32;
            if count >= MAX_PARTITIONS {
                let result = live.broker().add_partitions(TOPICS[t], count);
                assert!(
                    matches!(result, Err(Error::InvalidConfig { .. })),
                    "{what}: add_partitions to the same count: {result:?}"
                );
                return;
            }
            let total = (count + 1 + u32::from(two)).min(MAX_PARTITIONS);
            live.broker()
                .add_partitions(TOPICS[t], total)
                .unwrap_or_else(|e| panic!("{what}: add_partitions: {e:?}"));
            model.topics[t].resize(total as usize, Vec::new());
            for g in 0..model.groups.len() {
                if model
                    .subscribed(g)
                    .iter()
                    .any(|m| m.topics.iter().any(|x| x == TOPICS[t]))
                {
                    model.rebalance(g);
                }
            }
        }
        Op::Assign {
            reader,
            group,
            topic,
            partitions,
            earliest,
            fresh,
        } => {
            let r = usize::from(reader);
            let t = usize::from(topic) % model.topics.len();
            let tps: Vec<TopicPartition> = (0..model.topics[t].len() as u32)
                .filter(|p| partitions & (1 << p) != 0)
                .map(|p| TopicPartition::new(TOPICS[t], p))
                .collect();
            if fresh || live.readers[r].is_none() {
                let g = match group {
                    0 => None,
                    g => Some(usize::from(g - 1) % model.groups.len()),
                };
                let config = ConsumerConfig::default()
                    .group_id(g.map(|g| GROUPS[g].to_owned()))
                    .client_id("reader")
                    .enable_auto_commit(false)
                    .auto_offset_reset(if earliest {
                        OffsetReset::Earliest
                    } else {
                        OffsetReset::Latest
                    })
                    .max_poll_records(READER_MAX_RECORDS);
                live.readers[r] = Some(live.broker().consumer(config).expect("a reader"));
                model.readers[r] = Some(ReaderModel {
                    group: g,
                    earliest,
                    parts: BTreeMap::new(),
                });
            }
            let consumer = live.readers[r].as_mut().expect("a reader");
            consumer
                .assign(&tps)
                .unwrap_or_else(|e| panic!("{what}: assign: {e:?}"));
            let reader = model.readers[r].as_ref().expect("a reader");
            let mut parts = BTreeMap::new();
            for tp in tps {
                let position = match reader.parts.get(&tp) {
                    Some(&kept) => kept,
                    None => model.start_position(reader.group, &tp, reader.earliest),
                };
                parts.insert(tp, position);
            }
            model.readers[r].as_mut().expect("a reader").parts = parts;
        }
        Op::ReaderPoll { reader } => {
            let r = usize::from(reader);
            let Some(consumer) = live.readers[r].as_mut() else {
                return;
            };
            let result = consumer.poll(Duration::ZERO);
            let mut reader = model.readers[r].take().expect("a reader");
            if reader.parts.is_empty() {
                assert!(
                    matches!(result, Err(Error::NotSubscribed { .. })),
                    "{what}: poll without an assignment: {result:?}"
                );
            } else {
                let records = result.unwrap_or_else(|e| panic!("{what}: reader poll: {e:?}"));
                check_records(model, &records, &mut reader.parts, READER_MAX_RECORDS, None, what);
            }
            model.readers[r] = Some(reader);
        }
        Op::ReaderCommit { reader } => {
            let r = usize::from(reader);
            let Some(consumer) = live.readers[r].as_mut() else {
                return;
            };
            let result = consumer.commit();
            let reader = model.readers[r].as_ref().expect("a reader");
            match reader.group {
                None => assert!(
                    matches!(result, Err(Error::InvalidArgument { .. })),
                    "{what}: commit without a group: {result:?}"
                ),
                Some(_) if reader.parts.is_empty() => {
                    result.unwrap_or_else(|e| panic!("{what}: commit of nothing: {e:?}"));
                }
                Some(g) if !model.subscribed(g).is_empty() => commit_failed(&result, GROUPS[g], what),
                Some(g) => {
                    result.unwrap_or_else(|e| panic!("{what}: standalone commit: {e:?}"));
                    bump(&STATS.commits, 1);
                    let parts = reader.parts.clone();
                    model.groups[g].committed.extend(parts);
                }
            }
        }
        Op::Reopen => {
            bump(&STATS.reopens, 1);
            // Consumers closed in slot order (each a leave), readers, then the broker.
            let mut rejoin = Vec::new();
            for slot in 0..SLOTS {
                if let Some(m) = model.members[slot].clone()
                    && m.id.is_some()
                {
                    rejoin.push((slot, m.clone()));
                }
                model_leave(model, slot);
                model.members[slot] = None;
                live.members[slot] = None;
            }
            live.readers.iter_mut().for_each(|r| *r = None);
            model.readers.iter_mut().for_each(|r| *r = None);
            live.producer = None;
            live.broker = None;
            live.open();
            for g in &mut model.groups {
                g.generation = None;
                g.target.clear();
            }
            for (slot, m) in rejoin {
                let topics = m.topics.clone();
                join(live, model, slot, m, topics);
            }
        }
    }
}

/// A stable group's members own every partition of the subscribed topics, each once.
fn check_partitioned(live: &Live, model: &Model, g: usize, what: &str) {
    if model.subscribed(g).is_empty() {
        return;
    }
    let d = live
        .broker()
        .describe_group(GROUPS[g])
        .unwrap_or_else(|e| panic!("{what}: describe_group {}: {e:?}", GROUPS[g]));
    assert_eq!(d.state, GroupState::Stable, "{what}: {} after settling", GROUPS[g]);
    let mut owned = BTreeSet::new();
    for m in &d.members {
        for tp in &m.owned {
            assert!(owned.insert(tp.clone()), "{what}: {tp} owned twice");
        }
        assert_eq!(m.owned, m.target, "{what}: {} owns its target", m.member_id);
    }
    let topics: BTreeSet<&String> = d.members.iter().flat_map(|m| m.topics.iter()).collect();
    let all: BTreeSet<TopicPartition> = topics
        .into_iter()
        .flat_map(|t| {
            let n = model.counts()[t];
            (0..n).map(move |p| TopicPartition::new(t.as_str(), p))
        })
        .collect();
    assert_eq!(owned, all, "{what}: {}'s members own every partition once", GROUPS[g]);
}

/// A row of `describe_group`'s partitions: committed offset, end, lag, owner.
type PartitionRow = (TopicPartition, Option<u64>, u64, Option<u64>, Option<String>);

/// The broker and every consumer against the model.
fn check(live: &mut Live, model: &mut Model, what: &str) {
    let broker = live.broker().clone();
    let groups: Vec<String> = (0..model.groups.len())
        .filter(|&g| !model.subscribed(g).is_empty() || !model.groups[g].committed.is_empty())
        .map(|g| GROUPS[g].to_owned())
        .collect();
    let mut listed = broker.list_groups();
    listed.sort();
    let mut want = groups.clone();
    want.sort();
    assert_eq!(listed, want, "{what}: list_groups");
    for (g, &name) in GROUPS.iter().enumerate().take(model.groups.len()) {
        let members = model.subscribed(g);
        let described = broker.describe_group(name);
        let gm = &model.groups[g];
        if members.is_empty() && gm.committed.is_empty() {
            assert!(
                matches!(&described, Err(Error::UnknownGroup { group }) if group == name),
                "{what}: describe_group {name} (no members, no offsets): {described:?}"
            );
            model.groups[g].generation = None;
            model.groups[g].rebalanced = false;
            continue;
        }
        let d = described.unwrap_or_else(|e| panic!("{what}: describe_group {name}: {e:?}"));
        let state = if members.is_empty() {
            GroupState::Empty
        } else if model.stable(g) {
            GroupState::Stable
        } else {
            GroupState::Rebalancing
        };
        assert_eq!(d.state, state, "{what}: {name}'s state");
        let want_members: Vec<MemberDescription> = members
            .iter()
            .map(|m| {
                let id = m.id.clone().expect("subscribed");
                MemberDescription {
                    client_id: m.client.to_owned(),
                    topics: m.topics.clone(),
                    owned: m.owned.keys().cloned().collect(),
                    target: gm
                        .target
                        .get(&id)
                        .map(|t| t.iter().cloned().collect())
                        .unwrap_or_default(),
                    member_id: id,
                }
            })
            .collect();
        assert_eq!(d.members, want_members, "{what}: {name}'s members");
        if !members.is_empty() {
            assert_eq!(
                d.assignor.as_deref(),
                Some(model.kinds[g].name()),
                "{what}: {name}'s assignor"
            );
        }
        let mut tps: BTreeSet<TopicPartition> = gm.committed.keys().cloned().collect();
        let counts = model.counts();
        for m in &members {
            for t in &m.topics {
                tps.extend((0..counts[t]).map(|p| TopicPartition::new(t.as_str(), p)));
            }
        }
        let got: Vec<PartitionRow> = d
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition.clone(),
                    p.committed.as_ref().map(|c| c.offset),
                    p.log_end_offset,
                    p.lag,
                    p.owner.clone(),
                )
            })
            .collect();
        let want: Vec<PartitionRow> = tps
            .into_iter()
            .map(|tp| {
                let end = model.end(&tp);
                let committed = gm.committed.get(&tp).copied();
                let owner = model.owner(g, &tp);
                (tp, committed, end, committed.map(|c| end.saturating_sub(c)), owner)
            })
            .collect();
        assert_eq!(got, want, "{what}: {name}'s partitions (committed, end, lag, owner)");
        let rebalanced = gm.rebalanced;
        let previous = gm.generation;
        if members.is_empty() {
            model.groups[g].generation = None;
        } else {
            if let Some(previous) = previous {
                if rebalanced {
                    assert!(
                        d.generation > previous,
                        "{what}: {name} rebalanced, generation {}",
                        d.generation
                    );
                } else {
                    assert_eq!(
                        d.generation, previous,
                        "{what}: {name}'s generation without a rebalance"
                    );
                }
            }
            model.groups[g].generation = Some(d.generation);
        }
        model.groups[g].rebalanced = false;
    }
    for slot in 0..SLOTS {
        let (Some(consumer), Some(m)) = (live.members[slot].as_mut(), model.members[slot].as_ref()) else {
            assert!(
                live.members[slot].is_none() && model.members[slot].is_none(),
                "{what}: slot {slot}"
            );
            continue;
        };
        assert_eq!(consumer.member_id(), m.id.as_deref(), "{what}: slot {slot}'s member id");
        assert_eq!(consumer.subscription(), m.topics, "{what}: slot {slot}'s subscription");
        if m.id.is_some() {
            assert_eq!(consumer.generation(), m.generation, "{what}: slot {slot}'s generation");
        }
        let owned: BTreeSet<TopicPartition> = m.owned.keys().cloned().collect();
        assert_eq!(consumer.assignment(), owned, "{what}: slot {slot}'s assignment");
        for (tp, &position) in &m.owned {
            assert_eq!(
                consumer.position(tp).ok(),
                Some(position),
                "{what}: slot {slot}'s position in {tp}"
            );
            let lag = model.end(tp) - position.min(model.end(tp));
            assert_eq!(consumer.lag(tp).ok(), Some(lag), "{what}: slot {slot}'s lag in {tp}");
            let committed = consumer.committed(tp).expect("committed").map(|c| c.offset);
            assert_eq!(
                committed,
                model.groups[m.group].committed.get(tp).copied(),
                "{what}: {tp} committed"
            );
        }
    }
    for r in 0..READERS {
        let (Some(consumer), Some(reader)) = (live.readers[r].as_mut(), model.readers[r].as_ref()) else {
            continue;
        };
        let parts: BTreeSet<TopicPartition> = reader.parts.keys().cloned().collect();
        assert_eq!(consumer.assignment(), parts, "{what}: reader {r}'s assignment");
        for (tp, &position) in &reader.parts {
            assert_eq!(
                consumer.position(tp).ok(),
                Some(position),
                "{what}: reader {r}'s position in {tp}"
            );
        }
    }
}

fn run_case(setup: &Setup, ops: &[Op]) {
    let mut live = Live {
        dir: tempfile::tempdir().expect("temp dir"),
        broker: None,
        producer: None,
        members: (0..SLOTS).map(|_| None).collect(),
        readers: (0..READERS).map(|_| None).collect(),
    };
    live.open();
    for (t, &n) in setup.partitions.iter().enumerate() {
        live.broker()
            .create_topic(TOPICS[t], TopicConfig::with_partitions(n))
            .expect("create a topic");
    }
    let mut model = Model {
        topics: setup.partitions.iter().map(|&n| vec![Vec::new(); n as usize]).collect(),
        kinds: setup.kinds.clone(),
        groups: setup.kinds.iter().map(|_| GroupModel::default()).collect(),
        members: vec![None; SLOTS],
        readers: vec![None; READERS],
        produced: 0,
    };
    for (i, op) in ops.iter().enumerate() {
        let what = format!("after op {i} {op:?}");
        apply(&mut live, &mut model, op, &what);
        check(&mut live, &mut model, &what);
    }
}

#[test]
fn consumer_groups_follow_the_model() {
    let cases = env_u64("BROOKLET_MODEL_CASES", 48);
    let seed = env_u64("BROOKLET_MODEL_SEED", 0x6709_0b5e);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: u32::try_from(cases).unwrap_or(u32::MAX),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    });
    let started = std::time::Instant::now();
    let strategy = (setup(), proptest::collection::vec(op(), 30..=80));
    let result = runner.run(&strategy, |(setup, ops)| {
        run_case(&setup, &ops);
        Ok(())
    });
    eprintln!(
        "model_group: {cases} cases (seed {seed:#x}) in {:.1?}: {} ops, {} records polled ({} polls \
         delivering again what a group had delivered), {} rebalances, {} partitions revoked, {} settles, \
         {} commits, {} commits refused, {} seeks, {} reopens",
        started.elapsed(),
        STATS.ops.load(Ordering::Relaxed),
        STATS.records.load(Ordering::Relaxed),
        STATS.redelivered.load(Ordering::Relaxed),
        STATS.rebalances.load(Ordering::Relaxed),
        STATS.revoked.load(Ordering::Relaxed),
        STATS.settles.load(Ordering::Relaxed),
        STATS.commits.load(Ordering::Relaxed),
        STATS.refused.load(Ordering::Relaxed),
        STATS.seeks.load(Ordering::Relaxed),
        STATS.reopens.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
