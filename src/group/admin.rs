//! Group administration on the [`Broker`] (Kafka's `kafka-consumer-groups`): list groups,
//! describe one with its lag, reset its offsets, delete it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::group::coordinator::{LiveGroup, MemberDescription};
use crate::offsets::OffsetAndMetadata;
use crate::topic::TopicPartition;

/// Where [`Broker::reset_offsets`] moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Each partition's log start offset (`--to-earliest`).
    Earliest,
    /// Each partition's log end offset (`--to-latest`).
    Latest,
    /// This offset, clamped into each partition's log (`--to-offset`).
    Offset(u64),
    /// The first offset with a timestamp at or after this one (ms since the epoch), or the
    /// log end if every record is older (`--to-datetime`).
    Timestamp(i64),
}

/// A group's state. `Empty` and `Stable` are Kafka's states; `Rebalancing` stands for
/// Kafka's `PreparingRebalance` and `CompletingRebalance` (`Assigning` and `Reconciling`
/// in the KIP-848 protocol). There is no `Dead`: describing a group with neither members
/// nor committed offsets is [`Error::UnknownGroup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; only committed offsets.
    Empty,
    /// Members, and every partition is with its assigned member.
    Stable,
    /// Members, and partitions are still moving to their new owners.
    Rebalancing,
}

/// One partition's row in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset, if any.
    pub committed: Option<OffsetAndMetadata>,
    /// The partition's end as consumers see it: the offset the next readable record gets
    /// (Kafka's high watermark).
    pub log_end_offset: u64,
    /// `log_end_offset − committed` (`None` without a committed offset, as Kafka shows `-`).
    pub lag: Option<u64>,
    /// The member that owns it now, if any.
    pub owner: Option<String>,
}

/// What [`Broker::describe_group`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group: String,
    /// Empty, stable or rebalancing.
    pub state: GroupState,
    /// The current generation (0 for a group that never had members in this process).
    pub generation: u64,
    /// The assignor in use (the oldest member's); `None` while the group has no members.
    pub assignor: Option<String>,
    /// The members, by member id.
    pub members: Vec<MemberDescription>,
    /// Every partition of the subscribed topics and every partition with a committed
    /// offset, sorted.
    pub partitions: Vec<GroupPartition>,
    /// How long the last completed rebalance took, from its trigger until every member
    /// owned exactly its assignment.
    pub last_rebalance: Option<Duration>,
}

impl GroupDescription {
    /// The sum of the lags of all partitions with a committed offset.
    #[must_use]
    pub fn total_lag(&self) -> u64 {
        self.partitions.iter().filter_map(|p| p.lag).sum()
    }
}

impl Broker {
    /// The groups that have members or committed offsets, sorted.
    #[must_use]
    pub fn list_groups(&self) -> Vec<String> {
        let mut groups: BTreeSet<String> = self.offsets().groups().into_iter().collect();
        groups.extend(self.coordinator().active_groups());
        groups.into_iter().collect()
    }

    /// The committed offset of `group` for `tp`, if any.
    #[must_use]
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        self.offsets().get(group, tp)
    }

    /// Members, assignment, generation and, per partition, committed offset, log end and lag.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`] for a group with neither members nor committed offsets.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, ConsumerConfig, OffsetReset, TopicConfig, TopicPartition};
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(2))?;
    /// let mut c = broker.consumer(ConsumerConfig::group("g").auto_offset_reset(OffsetReset::Earliest))?;
    /// c.subscribe(&["orders"])?;
    /// c.poll(std::time::Duration::from_millis(10))?;
    /// let d = broker.describe_group("g")?;
    /// assert_eq!(d.members.len(), 1);
    /// assert_eq!(d.partitions.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let live = self
            .coordinator()
            .existing(group)
            .map(|g| g.describe(&|t| self.partition_count(t)))
            .unwrap_or_default();
        let committed = self.offsets().group(group);
        if live.members.is_empty() && committed.is_empty() {
            return Err(Error::UnknownGroup {
                group: group.to_owned(),
            });
        }
        let LiveGroup {
            generation,
            assignor,
            members,
            owners,
            rebalancing,
            last_rebalance,
            topics,
        } = live;
        let mut tps: BTreeSet<TopicPartition> = committed.keys().cloned().collect();
        for t in &topics {
            for p in 0..self.partition_count(t).unwrap_or(0) {
                tps.insert(TopicPartition::new(t.clone(), p));
            }
        }
        let partitions = tps
            .into_iter()
            .map(|tp| {
                let log_end_offset = self.partition_log(&tp).map_or(0, |l| l.visible_end_offset());
                let committed = committed.get(&tp).cloned();
                GroupPartition {
                    lag: committed.as_ref().map(|c| log_end_offset.saturating_sub(c.offset)),
                    owner: owners.get(&tp).cloned(),
                    committed,
                    log_end_offset,
                    partition: tp,
                }
            })
            .collect();
        let state = if members.is_empty() {
            GroupState::Empty
        } else if rebalancing {
            GroupState::Rebalancing
        } else {
            GroupState::Stable
        };
        Ok(GroupDescription {
            group: group.to_owned(),
            state,
            generation,
            assignor,
            members,
            partitions,
            last_rebalance,
        })
    }

    /// Moves a group's committed offsets — for every partition of `topic`, or without one,
    /// every partition the group has committed — and returns the new offsets. Only for a
    /// group without members, as Kafka.
    ///
    /// # Errors
    /// [`Error::GroupNotEmpty`]; [`Error::UnknownTopic`]; a read or commit error;
    /// [`Error::ReadOnly`] on a read-only broker.
    pub fn reset_offsets(
        &self,
        group: &str,
        to: OffsetSpec,
        topic: Option<&str>,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        self.check_writable(|| format!("reset the offsets of group {group:?}"))?;
        self.coordinator().while_empty(group, &|t| self.partition_count(t), || {
            self.reset_offsets_locked(group, to, topic)
        })
    }

    /// The offsets [`reset_offsets`](Self::reset_offsets) would set now, changing nothing
    /// (Kafka's `kafka-consumer-groups --reset-offsets` without `--execute`). Works on a
    /// read-only broker too. The logs may move before a reset is applied, so the reset
    /// computes its offsets again.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`]; a read error.
    ///
    /// # Examples
    /// ```
    /// use brooklet::{Broker, OffsetSpec, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition};
    /// let broker = Broker::temporary()?;
    /// broker.create_topic("orders", TopicConfig::with_partitions(1))?;
    /// broker.producer(ProducerConfig::default()).send(ProducerRecord::new("orders").value("a"))?;
    /// let plan = broker.plan_reset_offsets("analytics", OffsetSpec::Latest, Some("orders"))?;
    /// assert_eq!(plan[&TopicPartition::new("orders", 0)], 1);
    /// assert_eq!(broker.committed_offset("analytics", &TopicPartition::new("orders", 0)), None);
    /// # Ok::<(), brooklet::Error>(())
    /// ```
    pub fn plan_reset_offsets(
        &self,
        group: &str,
        to: OffsetSpec,
        topic: Option<&str>,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        let tps: Vec<TopicPartition> = match topic {
            Some(t) => {
                let n = self
                    .partition_count(t)
                    .ok_or_else(|| Error::UnknownTopic { topic: t.to_owned() })?;
                (0..n).map(|p| TopicPartition::new(t, p)).collect()
            }
            None => self
                .offsets()
                .group(group)
                .into_keys()
                .filter(|tp| self.partition_log(tp).is_ok())
                .collect(),
        };
        let mut moved = BTreeMap::new();
        for tp in tps {
            let log = self.partition_log(&tp)?;
            // The start may pass the visible end: `delete_records_before` may move it up to
            // the next offset, past `Buffered` records not written out yet.
            let start = log.log_start_offset();
            let end = log.visible_end_offset().max(start);
            let offset = match to {
                OffsetSpec::Earliest => start,
                OffsetSpec::Latest => end,
                OffsetSpec::Offset(o) => o.clamp(start, end),
                OffsetSpec::Timestamp(ts) => log.offset_for_timestamp(ts)?.unwrap_or(end),
            };
            moved.insert(tp, offset);
        }
        Ok(moved)
    }

    fn reset_offsets_locked(
        &self,
        group: &str,
        to: OffsetSpec,
        topic: Option<&str>,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        let moved = self.plan_reset_offsets(group, to, topic)?;
        let list: Vec<(TopicPartition, OffsetAndMetadata)> = moved
            .iter()
            .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
            .collect();
        // Capped again at the log's end under the offset table's lock, which a truncation's
        // lowering of the commits takes too: a truncation since the plan, whose lowering
        // ran before this commit, must not be undone by it.
        let stored = std::cell::RefCell::new(moved);
        self.offsets().commit(group, &list, true, &|tp, offset| {
            self.check_partition(tp)?;
            let log = self.partition_log(tp)?;
            let capped = offset.min(log.visible_end_offset().max(log.log_start_offset()));
            stored.borrow_mut().insert(tp.clone(), capped);
            Ok(capped)
        })?;
        Ok(stored.into_inner())
    }

    /// Deletes a group's committed offsets and state. Only for a group without members: the
    /// check, the deletion and forgetting the group happen under the group's lock, so a
    /// consumer subscribing at the same moment either joins before (and the delete is
    /// refused, nothing deleted) or joins a fresh group afterwards.
    ///
    /// # Errors
    /// [`Error::GroupNotEmpty`] (nothing is deleted then); [`Error::UnknownGroup`] for a
    /// group with neither members nor committed offsets (as
    /// [`describe_group`](Self::describe_group)); an I/O error; [`Error::ReadOnly`] on a
    /// read-only broker.
    pub fn delete_group(&self, group: &str) -> Result<()> {
        self.check_writable(|| format!("delete group {group:?}"))?;
        let deleted = self
            .coordinator()
            .delete_if_empty(group, &|t| self.partition_count(t), || {
                self.offsets().delete_where(group, |_| true)
            })?;
        // Without members (else it was refused) and without offsets, the group is what
        // `describe_group` calls unknown, whatever state of it the coordinator still held.
        if deleted == 0 {
            return Err(Error::UnknownGroup {
                group: group.to_owned(),
            });
        }
        Ok(())
    }
}
